"""The blocking POP3 server: one thread per connection at a time.

The session decides what to answer and :func:`~._loop.serve_session` how
to batch it; this module only moves bytes between sockets and that loop:

* one connection thread runs Python at a time: it holds the server's run
  token except while it waits (for its client, in a login delay, in a
  backend or authenticator call that may block), which keeps the threads
  from trading the GIL at every system call (see :meth:`Server._init_io`);
* the accept loop waits on the listening socket and on a wake-up socket
  pair (so :meth:`Server.shutdown` returns at once), and hands each client
  to a daemon thread of its own: an idle one that served an earlier
  client if there is one (a thread started per connection costs CPU and
  thread switches every time), else a new one; a thread left idle for
  :data:`IDLE_THREAD_SECONDS` ends;
* over ``max_connections``, a client gets ``-ERR [SYS/TEMP] too many
  connections`` and is closed (with implicit TLS it is just closed: a
  plaintext line would be garbage to a TLS client);
* each write (``sendall``) finishes before the loop pulls the next action
  from the session, so memory per connection stays bounded;
* the idle timeout is the socket timeout while waiting for a command;
  sends are bounded by it too, so a client that stops reading cannot hold
  a thread forever; TLS handshakes have their own ``handshake_timeout``;
* every way out of a connection (EOF, reset, timeout, failed handshake,
  shutdown) ends in ``session.connection_lost()``, which releases the
  maildrop lock without UPDATE.  Only QUIT deletes.  The socket is then
  closed as :func:`~._loop.closing` decides.

Example::

    from pop3proto.adapters.sync import MaildirBackend, Server, UsersFile

    with Server(MaildirBackend("/var/mail/alice"), UsersFile("users"), port=1110) as server:
        server.serve_forever()      # Ctrl-C, or server.shutdown() from another thread
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Generator
from types import TracebackType
from typing import Any

from .._seam import Call, CallResult, Send, Sleep, StartTLS
from ..mailstore._base import MaildropBackend
from ..mailstore._users import Authenticator
from ._admission import ACCEPT_RESOURCE_ERRORS, REFUSALS, AcceptBackoff, Ticket, Verdict
from ._base import ServerBase, format_peer, no_delay
from ._config import ServerConfig, busy_response
from ._loop import (
    LINGER_LIMIT,
    LINGER_READ,
    RECV_SIZE,
    Closing,
    LoopAnswer,
    LoopRequest,
    closing,
    serve_session,
)

__all__ = ["IDLE_THREAD_SECONDS", "Server", "serve"]

log = logging.getLogger("pop3proto.server")

#: How long a connection thread waits for the next client before it ends.
IDLE_THREAD_SECONDS = 30.0


class _Worker:
    """A connection thread, and how the accept loop hands it a client."""

    __slots__ = ("client", "wake")

    def __init__(self, client: _Client | None) -> None:
        self.client = client
        # Released by the accept loop with the next client (or None: end).
        self.wake = threading.Lock()
        self.wake.acquire()


class _Client:
    """The current socket of one connection (replaced when TLS starts)."""

    __slots__ = ("address", "done", "sock", "thread", "ticket", "timeout")

    def __init__(self, sock: socket.socket, address: Any, ticket: Ticket) -> None:
        self.sock = sock
        self.address = address
        self.ticket = ticket
        #: The thread serving it (set by that thread).
        self.thread: threading.Thread | None = None
        #: Set once the connection is closed and forgotten.
        self.done = threading.Event()
        #: The socket's timeout as last set by :meth:`settimeout`.
        self.timeout: float | None = None

    def settimeout(self, seconds: float) -> None:
        """``sock.settimeout(seconds)``, skipped when it is already set:
        each call is a system call, and most reads keep the idle timeout."""
        if seconds != self.timeout:
            self.sock.settimeout(seconds)
            self.timeout = seconds

    def interrupt(self) -> None:
        """Evict: end the read (or handshake) under way.  Shutting the
        descriptor's read side only, from the accept thread, is safe under
        TLS too; the session can still write its last line."""
        with contextlib.suppress(OSError):
            socket.socket.shutdown(self.sock, socket.SHUT_RD)


class Server(ServerBase):
    """A blocking, thread-per-connection POP3 server.

    Args:
        backend: the :class:`pop3proto.adapters.server.MaildropBackend`.
        authenticator: the :class:`pop3proto.adapters.server.Authenticator`.
        host, port: where to listen (port ``0`` picks a free one; see
            :attr:`server_address`).  The socket is bound and listening when
            the constructor returns.
        ssl_context: a server-side :class:`ssl.SSLContext`.  Enables STLS
            (RFC 2595), or implicit TLS with *implicit_tls*.
        implicit_tls: TLS from the first byte (port 995, RFC 8314 §3).
        config: the :class:`pop3proto.adapters.server.ServerConfig`;
            ``tls_available`` is set from *ssl_context* and *implicit_tls*.
        max_connections: concurrent sessions; more are refused.
        handshake_timeout: seconds allowed for a TLS handshake.
        linger: after the server itself closes a session (QUIT, too many
            errors, timeout), how long to drain what the client still sends
            so that the last reply is not destroyed by a TCP reset.
        backlog: the listen queue length.
        trust_loopback: treat clients on a loopback address as local (the
            default plaintext policy lets them log in without TLS).  Turn it
            off behind a proxy on the same host, where every client looks
            local.
    """

    offloads = True

    def _init_io(self) -> None:
        """Bind and listen."""
        if self.sock is not None:
            self._listener = self.sock
        else:
            infos = socket.getaddrinfo(
                self.host, self.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
            family, _, _, _, address = infos[0]
            self._listener = socket.create_server(address, family=family, backlog=self.backlog)
        self._wake_r, self._wake_w = socket.socketpair()
        self._lock = threading.Lock()
        # The run token: which connection thread may run Python now.
        #
        # Every thread of a thread-per-connection server that is not
        # waiting wants the GIL, and each system call a thread makes (a
        # Maildir read is an open, an fstat, a read and a close) releases
        # it: with twenty sessions ready to run, each release handed the
        # GIL to another thread and back, a futex wait and wake every time,
        # and most of the server's CPU went to that (benchmarks/README.md:
        # 8.6 ms per session with 20 connections against 2.9 ms with 2).
        # So a connection thread holds this lock while it runs its session
        # and gives it up wherever it waits: for the client (a read, a write
        # the kernel did not take at once, a TLS handshake), in a failed
        # login's delay, and in a backend or authenticator call that may
        # block, which the session hands to the runtime as it does on the
        # event-loop servers (the login check, open(), messages(), commit(),
        # command hooks).  A PBKDF2 check or a slow database still holds up
        # only its own session.  The iterators of open_message()/top() and
        # close() run with the token, as they run on the loop of the other
        # servers: they must be quick.  (Two tokens measured slower than
        # one: 291 against 304 sessions/s.)
        self._token = threading.Lock()
        self._clients: set[_Client] = set()
        # Threads waiting for a client, the most recently idle last.
        self._idle: list[_Worker] = []
        self._shutdown_requested = False
        self._stopped = threading.Event()
        self._stopped.set()
        self._closed = False

    # -- public API ---------------------------------------------------------

    @property
    def server_address(self) -> tuple[str, int]:
        """``(host, port)`` the server listens on."""
        name = self._listener.getsockname()
        return str(name[0]), int(name[1])

    @property
    def active_connections(self) -> int:
        """Sessions being served right now."""
        with self._lock:
            return self.admission.count

    def serve_forever(self) -> None:
        """Accept connections until :meth:`shutdown` is called."""
        if self._closed:
            raise RuntimeError("the server is closed")
        self._stopped.clear()
        backoff = AcceptBackoff()
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(self._listener, selectors.EVENT_READ)
                selector.register(self._wake_r, selectors.EVENT_READ)
                while not self._shutdown_requested:
                    for key, _ in selector.select():
                        if key.fileobj is self._wake_r:
                            break
                        delay = self._accept(backoff)
                        if delay:
                            # Out of descriptors or memory: retrying at once
                            # would only spin; wait, unless shut down.
                            select.select([self._wake_r], [], [], delay)
        finally:
            self._stopped.set()

    def start(self) -> threading.Thread:
        """Run :meth:`serve_forever` in a daemon thread; return it."""
        thread = threading.Thread(target=self.serve_forever, name="pop3proto-accept", daemon=True)
        thread.start()
        return thread

    def shutdown(self, timeout: float | None = 5.0) -> None:
        """Stop accepting, abandon open sessions (no UPDATE: nothing is
        deleted, locks are released) and wait up to *timeout* seconds for
        their threads.  Safe to call more than once and from any thread
        except a connection's own."""
        self._shutdown_requested = True
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        self._stopped.wait(timeout)
        with self._lock:
            clients = list(self._clients)
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.wake.release()  # with no client: the thread ends
        for client in clients:
            # The base-class shutdown acts on the descriptor only, so it is
            # safe on an SSLSocket another thread is reading from; the
            # reader then sees end-of-stream and abandons its session.
            with contextlib.suppress(OSError):
                socket.socket.shutdown(client.sock, socket.SHUT_RDWR)
        for client in clients:
            if client.thread is not threading.current_thread():
                client.done.wait(timeout)

    def server_close(self) -> None:
        """Close the listening socket (after :meth:`shutdown`)."""
        if not self._closed:
            self._closed = True
            for sock in (self._listener, self._wake_r, self._wake_w):
                sock.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown()
        self.server_close()

    def __repr__(self) -> str:
        host, port = self.server_address if not self._closed else ("-", 0)
        return f"<Server {host}:{port} active={self.active_connections}>"

    # -- accepting ------------------------------------------------------------

    def _accept(self, backoff: AcceptBackoff) -> float:
        """Accept one connection; the seconds to wait before the next
        accept (``0``: at once)."""
        try:
            sock, address = self._listener.accept()
        except OSError as exc:
            if exc.errno in ACCEPT_RESOURCE_ERRORS:
                delay, tell = backoff.failed()
                if tell:
                    log.warning("accept failed: %s; backing off", exc)
                return delay
            log.debug("accept failed: %s", exc)  # ECONNABORTED...: keep serving
            return 0.0
        failures = backoff.succeeded()
        if failures:
            log.warning("accept works again after %d failures", failures)
        no_delay(sock)
        ip, peer = format_peer(address)
        with self._lock:
            decision = self._admit(ip, peer, time.monotonic())
            ticket = decision.ticket
            worker = None
            if ticket is not None:
                client = _Client(sock, address, ticket)
                self._clients.add(client)
                if self._idle:
                    worker = self._idle.pop()
        if ticket is None:
            self._refuse(sock, decision.verdict)
            return 0.0
        if worker is not None:
            worker.client = client
            worker.wake.release()
        else:
            threading.Thread(
                target=self._work, args=(_Worker(client),), name="pop3proto-connection", daemon=True
            ).start()
        return 0.0

    def _work(self, worker: _Worker) -> None:
        """A connection thread: serve the client it was started for, then
        each client the accept loop hands it, until idle for
        :data:`IDLE_THREAD_SECONDS` or told to end."""
        while True:
            client = worker.client
            if client is None:
                return
            worker.client = None
            client.thread = thread = threading.current_thread()
            thread.name = f"pop3proto-{format_peer(client.address)[1]}"
            try:
                self._serve_client(client, client.address)
            finally:
                client.done.set()
            with self._lock:
                if self._shutdown_requested:
                    return
                self._idle.append(worker)
            if not worker.wake.acquire(timeout=IDLE_THREAD_SECONDS):
                with self._lock:
                    if worker in self._idle:
                        self._idle.remove(worker)
                        return
                # Handed a client (or the end) just as the wait expired:
                # the release is made or coming.
                worker.wake.acquire()  # pragma: no cover - a race of microseconds

    def _refuse(self, sock: socket.socket, verdict: Verdict) -> None:
        try:
            if not self.implicit_tls:
                # A fresh socket's send buffer is empty: this cannot block
                # the accept loop for long.
                sock.settimeout(1.0)
                sock.sendall(busy_response(REFUSALS[verdict]))
        except OSError:  # pragma: no cover - the refused client is gone already
            pass
        finally:
            sock.close()

    # -- one connection -------------------------------------------------------

    def _start_tls(self, client: _Client) -> ssl.SSLSocket:
        assert self.ssl_context is not None
        client.settimeout(self.handshake_timeout)
        tls_sock = self.ssl_context.wrap_socket(
            client.sock, server_side=True, do_handshake_on_connect=False
        )
        # wrap_socket detached the plain socket (its timeout goes with it):
        # an eviction must shut the descriptor down through the new one.
        client.sock = tls_sock
        client.ticket.evict = client.interrupt
        try:
            # Checked after the hook is set: an eviction either sees the
            # hook or is seen here (the accept thread flags, then reads it).
            if client.ticket.evicted:
                raise OSError("evicted before the TLS handshake")
            tls_sock.do_handshake()
        finally:
            client.ticket.evict = None
        client.settimeout(self.config.idle_timeout)
        return tls_sock

    def _serve_client(self, client: _Client, address: Any) -> None:
        ip, peer = format_peer(address)
        session = self._new_session(ip, peer)
        loop = serve_session(session, lambda: self._logged_in(client.ticket))
        try:
            if self.implicit_tls:
                self._start_tls(client)
            client.settimeout(self.config.idle_timeout)
            self._run(client, loop)
        except (OSError, ssl.SSLError) as exc:
            log.debug("connection from %s ended: %s", peer, exc)
        except Exception:
            log.exception("unexpected error serving %s", peer)
        finally:
            loop.close()
            session.connection_lost()
            how = closing(
                session.stats.reason, abandoned=self._shutdown_requested, linger=self.linger
            )
            self._close(client.sock, how)
            with self._lock:
                self._clients.discard(client)
                client.ticket.release()

    def _logged_in(self, ticket: Ticket) -> None:
        with self._lock:
            ticket.logged_in()

    def _receive(self, client: _Client) -> bytes | None:
        """A read within the idle timeout and the admission deadlines;
        ``None`` when one expired or the connection was evicted."""
        ticket = client.ticket
        sock = client.sock
        ticket.evict = client.interrupt
        try:
            # After the hook is set (see _start_tls): an eviction is seen.
            timeout = ticket.receive_timeout(self.config.idle_timeout, time.monotonic())
            if not timeout > 0:
                return None
            client.settimeout(timeout)
            data = sock.recv(RECV_SIZE)
        except TimeoutError:
            return None
        except OSError:
            if ticket.evicted:
                return None
            raise
        finally:
            ticket.evict = None
            client.settimeout(self.config.idle_timeout)  # sends: the idle timeout
        if ticket.evicted:
            return None
        ticket.received(data, time.monotonic())
        return data

    def _run(self, client: _Client, loop: Generator[LoopRequest, LoopAnswer, None]) -> None:
        """Perform what the loop asks until it ends (see :mod:`._loop`),
        holding the run token (see :meth:`_init_io`) except while this
        thread waits: for the client, in a sleep, or in a call that may
        block."""
        token = self._token
        answer: LoopAnswer = None
        token.acquire()
        try:
            while True:
                try:
                    request = loop.send(answer)
                except StopIteration:
                    return
                answer = None
                if type(request) is Send:
                    self._send(client, request.data)
                    continue
                token.release()
                try:
                    if type(request) is Call:
                        answer = _perform(request)
                    elif type(request) is StartTLS:
                        self._start_tls(client)
                    elif type(request) is Sleep:
                        self._sleep(request.seconds)
                    else:
                        if self._shutdown_requested:
                            return
                        answer = self._receive(client)
                        if self._shutdown_requested:
                            return
                finally:
                    token.acquire()
        finally:
            token.release()

    def _send(self, client: _Client, data: bytes) -> None:
        """Write all of *data*, keeping the run token only while the kernel
        takes the octets at once.

        A plain socket with a timeout is non-blocking underneath, so one
        ``write`` takes what fits in its send buffer without waiting (and
        without the ``poll`` that ``send`` makes first on such a socket);
        the rest, if any, is written with ``sendall`` after the token is
        released, so a client that stops reading holds up only its own
        thread.  A TLS socket always releases the token (its writes may
        need to wait for the peer)."""
        sock = client.sock
        sent = 0
        if type(sock) is socket.socket and client.timeout:
            with contextlib.suppress(BlockingIOError):
                sent = os.write(sock.fileno(), data)
            if sent == len(data):
                return
        token = self._token
        token.release()
        try:
            sock.sendall(memoryview(data)[sent:] if sent else data)
        finally:
            token.acquire()

    def _sleep(self, seconds: float) -> None:
        """A failed login's delay, in this connection's thread only; cut
        short by a shutdown (checked every 50 ms)."""
        deadline = time.monotonic() + seconds
        while not self._shutdown_requested:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, 0.05))

    def _close(self, sock: socket.socket, how: Closing) -> None:
        try:
            if how is Closing.LINGER:
                # Half-close, then drain what the client still sends (see
                # Closing.LINGER).  The base-class calls act on the
                # descriptor itself, under TLS too: what is drained is
                # thrown away.
                socket.socket.shutdown(sock, socket.SHUT_WR)
                sock.settimeout(self.linger)
                drained = 0
                while drained < LINGER_LIMIT:
                    chunk = socket.socket.recv(sock, LINGER_READ)
                    if not chunk:
                        break
                    drained += len(chunk)
        except OSError:
            pass
        finally:
            # A blocking socket has nothing left unsent once sendall has
            # returned: aborting and closing are the same here.
            sock.close()


def _perform(call: Call) -> CallResult:
    """Make *call* here (the connection's own thread, without the run
    token) and report what it returned or raised."""
    try:
        return CallResult(call.fn(*call.args))
    except Exception as exc:
        return CallResult(error=exc)


def serve(
    backend: MaildropBackend,
    authenticator: Authenticator,
    *,
    host: str = "127.0.0.1",
    port: int = 1110,
    ssl_context: ssl.SSLContext | None = None,
    implicit_tls: bool = False,
    config: ServerConfig | None = None,
    max_connections: int = 100,
    handshake_timeout: float = 30.0,
    trust_loopback: bool = True,
) -> None:
    """Serve POP3 until interrupted (Ctrl-C); see :class:`Server`."""
    with Server(
        backend,
        authenticator,
        host=host,
        port=port,
        ssl_context=ssl_context,
        implicit_tls=implicit_tls,
        config=config,
        max_connections=max_connections,
        handshake_timeout=handshake_timeout,
        trust_loopback=trust_loopback,
    ) as server:
        host_shown, port_shown = server.server_address
        log.info("serving POP3 on %s port %d", host_shown, port_shown)
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever()

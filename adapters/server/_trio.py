"""The trio POP3 server: one task per connection.

The session decides what to answer and :func:`~._loop.serve_session` how
to batch it; this module only moves bytes between trio streams and that
loop, with the options of the blocking server (:mod:`._sync`) and of the
asyncio one (:mod:`._asyncio`):

* :meth:`Server.serve` binds like the blocking server (the first address
  :func:`socket.getaddrinfo` gives for *host*), reports the bound
  ``(host, port)`` through ``task_status.started()`` (so
  ``address = await nursery.start(server.serve)`` works) and runs its own
  accept loop, which admits each connection as it is accepted
  (:mod:`._admission`: the TLS handshake counts, and waits out of
  descriptors back off); each connection is a :class:`trio.abc.Stream`
  in a task of the server's nursery;
* each write is an ``await stream.send_all()`` that finishes before the
  loop pulls the next action from the session, so a client that stops
  reading stalls its own session and memory per connection stays bounded;
* the idle timeout bounds every receive and every send
  (:func:`trio.move_on_after`);
* STLS wraps the stream in ``trio.SSLStream(stream, ctx, server_side=True)``
  and runs ``do_handshake()`` within ``handshake_timeout``; implicit TLS
  does the same before the greeting;
* a client refused at accept (see :mod:`._admission`) gets ``-ERR
  [SYS/TEMP] too many connections`` and is closed (with implicit TLS it is
  just closed: a plaintext line would be garbage to a TLS client);
* every way out of a connection (EOF, reset, timeout, failed handshake,
  :meth:`Server.shutdown`, cancellation of the nursery) ends in
  ``session.connection_lost()``, which releases the maildrop lock without
  UPDATE.  Only QUIT deletes.  The stream is then closed as
  :func:`~._loop.closing` decides.

Like the asyncio server, the session's maildrop and authenticator calls that
may block run in worker threads (``worker_threads`` at once), or on the loop
when a backend writes them ``async def``: a slow password hash holds up
only its own connection.

On a plain TCP connection the bytes move through the socket itself rather
than through the stream's layers, with the checkpoints trio's stream would
make (a receive checks cancellation first and always yields; a write that
the kernel takes at once does not wait).  Those layers were much of what
a session cost trio more than asyncio (``benchmarks/README.md``).

Example::

    import trio
    from pop3proto.adapters.trio import Server

    async def main():
        server = Server(backend, authenticator, port=1110)
        async with trio.open_nursery() as nursery:
            host, port = await nursery.start(server.serve)
            ...                     # server.shutdown() ends server.serve()

    trio.run(main)
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import math
import os
import socket
import ssl
from collections.abc import Generator
from typing import Any

import outcome  # trio's own dependency
import trio  # type: ignore[import-untyped, unused-ignore]

from .._seam import Call, CallResult, Send, Sleep, StartTLS
from ..mailstore._base import AsyncMaildropBackend, MaildropBackend
from ..mailstore._users import Authenticator
from ._admission import ACCEPT_RESOURCE_ERRORS, REFUSALS, AcceptBackoff, Ticket
from ._base import ServerBase, format_peer
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
from ._threads import ThreadPool

__all__ = ["Server", "serve"]

log = logging.getLogger("pop3proto.server")

#: Whether a plain TCP stream's socket is read and written directly (see
#: the module docstring): where a socket's descriptor is a file descriptor
#: for ``os.read`` and ``os.write``, that is on POSIX.
_RAW_IO = os.name == "posix"

#: ``socket.TCP_NOTSENT_LOWAT`` where the platform has it, and a limit on
#: unsent octets that no send buffer reaches (the kernel's own default).
_NOTSENT_LOWAT: int | None = getattr(socket, "TCP_NOTSENT_LOWAT", None)
_NO_LOWAT = 2**31 - 1

# What a broken or closed transport raises.
_STREAM_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


class _Stalled(Exception):
    """The client did not read our replies (or finish a handshake) in time."""


class _Connection:
    """The stream of one client (replaced when TLS starts).

    While :meth:`Server._run` runs, every send and receive is bounded by
    one cancel scope per connection (:attr:`scope`) whose deadline is moved
    before each of them: cheaper than a new ``move_on_after`` each time.
    :attr:`waiting` says which of them was under way when it expired.
    After a timeout, each send gets a scope of its own."""

    __slots__ = ("scope", "stream", "ticket", "timeout", "waiting")

    def __init__(self, stream: trio.abc.Stream, timeout: float, ticket: Ticket) -> None:
        self.stream = stream
        self.timeout = timeout
        self.ticket = ticket
        self.scope: trio.CancelScope | None = None
        self.waiting = ""

    async def send(self, data: bytes) -> None:
        """Send *data*, within the idle timeout."""
        out: bytes | memoryview = data
        stream = self.stream
        if _RAW_IO and type(stream) is trio.SocketStream:
            # What the kernel takes at once goes out without trio's
            # send_all (two schedule points and a conflict check per call);
            # only the rest waits for the socket, as asyncio's transports do.
            # Reads keep theirs, so a session still yields to the others.
            try:
                sent = os.write(stream.socket.fileno(), data)
            except BlockingIOError:
                sent = 0
            if sent == len(data):
                return
            out = memoryview(data)[sent:]
        scope = self.scope
        if scope is not None:
            self.waiting = "send"
            scope.deadline = trio.current_time() + self.timeout
            await stream.send_all(out)
            return
        with trio.move_on_after(self.timeout) as own:
            await stream.send_all(out)
        # Only the last words after an idle timeout get here: one short
        # line, which stalls only if the client's window is exactly full.
        if own.cancelled_caught:  # pragma: no cover
            raise _Stalled("send timed out")

    async def receive(self) -> bytes:
        """Some bytes (``b""`` at end of stream), within the idle timeout
        and the admission deadlines (inside :attr:`scope` only; an eviction
        cancels it)."""
        scope = self.scope
        assert scope is not None
        self.waiting = "receive"
        ticket = self.ticket
        now = trio.current_time()
        scope.deadline = now + ticket.receive_timeout(self.timeout, now)
        ticket.evict = scope.cancel
        stream = self.stream
        data: bytes | bytearray
        try:
            if _RAW_IO and type(stream) is trio.SocketStream:
                data = await _receive_plain(stream.socket)
            else:
                data = await stream.receive_some(RECV_SIZE)
        finally:
            ticket.evict = None
        data = data if isinstance(data, bytes) else bytes(data)
        ticket.received(data, trio.current_time())
        return data


async def _receive_plain(sock: trio.socket.SocketType, size: int = RECV_SIZE) -> bytes:
    """``SocketStream.receive_some(size)`` on the socket itself, with
    the same checkpoints (cancellation is checked first; data already
    there is returned after a schedule point that cannot cancel, so it is
    never lost) without the stream's and the socket's wrapper layers.
    Errors are :class:`OSError` (which the server treats as a broken
    stream, as it does trio's own)."""
    await trio.lowlevel.checkpoint_if_cancelled()
    fd = sock.fileno()
    try:
        data = os.read(fd, size)
    except BlockingIOError:
        while True:
            await trio.lowlevel.wait_readable(sock)
            try:
                return os.read(fd, size)
            except BlockingIOError:  # pragma: no cover - a spurious wake-up
                continue
    await trio.lowlevel.cancel_shielded_checkpoint()
    return data


def _wait_for_thread(raise_cancel: Any) -> Any:
    """A session waiting for a worker thread is not interrupted by
    cancellation: it gets the call's value, and releases what the call
    acquired (a locked maildrop) on its way out."""
    return trio.lowlevel.Abort.FAILED


class Server(ServerBase):
    """A trio POP3 server.

    Args:
        backend: the :class:`pop3proto.adapters.server.MaildropBackend` (or
            an ``AsyncMaildropBackend``).
        authenticator: the :class:`pop3proto.adapters.server.Authenticator`.
        host, port: where to listen (port ``0`` picks a free one; see
            :attr:`server_address` and :meth:`serve`).  Only the first
            address *host* resolves to is bound.
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
            off behind a proxy on the same host.
        worker_threads: the most backend and authenticator calls run at
            once in worker threads (checking a password, opening, listing
            and committing a maildrop), so that none of them blocks the
            event loop; calls beyond it wait their turn.  Backend methods
            written ``async def`` are awaited on the loop instead.

    Run it with ``await nursery.start(server.serve)``; :meth:`shutdown` (or
    cancelling the nursery) stops it and abandons every session (no UPDATE:
    nothing is deleted, locks are released).  A server serves once.
    """

    offloads = True
    awaits = True

    def _init_io(self) -> None:
        self._pool: ThreadPool | None = None
        self._listener: trio.SocketListener | None = None
        self._address: tuple[str, int] | None = None
        self._scope: trio.CancelScope | None = None
        self._started = False
        self._closing = False

    # -- public API ---------------------------------------------------------

    @property
    def server_address(self) -> tuple[str, int]:
        """``(host, port)`` the server listens on (once :meth:`serve` has
        started)."""
        if self._address is None:
            raise RuntimeError("the server is not started")
        return self._address

    @property
    def listeners(self) -> list[trio.SocketListener]:
        """The listener while serving (one), else an empty list."""
        if self._listener is None or self._closing:
            return []
        return [self._listener]

    @property
    def active_connections(self) -> int:
        """Connections open right now, counted from accept."""
        return self.admission.count

    async def serve(
        self, *, task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Bind, listen, report ``(host, port)`` to *task_status* and serve
        until :meth:`shutdown` or cancellation; then abandon every session
        and return."""
        if self._started:
            raise RuntimeError("a server serves once")
        self._started = True
        sock = self.sock
        if sock is None:
            infos = await trio.socket.getaddrinfo(
                self.host, self.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
            family, _, _, _, address = infos[0]
            sock = socket.create_server(address, family=family, backlog=self.backlog)
        name = sock.getsockname()
        self._address = (str(name[0]), int(name[1]))
        listener = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
        self._listener = listener
        log.info("serving POP3 on %s port %d", *self._address)
        try:
            with trio.CancelScope() as scope:
                self._scope = scope
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._accept_loop, listener, nursery)
                    task_status.started(self._address)
                    if self._closing:  # shutdown() came first
                        scope.cancel()
        finally:
            self._closing = True
            # Every session has ended, so no call is running any more.
            pool, self._pool = self._pool, None
            if pool is not None:
                pool.shutdown()
            await trio.aclose_forcefully(listener)

    def shutdown(self) -> None:
        """Stop listening and abandon every open session (no UPDATE);
        :meth:`serve` returns once they are all gone.  Idempotent."""
        self._closing = True
        if self._scope is not None:
            self._scope.cancel()

    def __repr__(self) -> str:
        where = "-"
        if self._address is not None and not self._closing:
            where = "{}:{}".format(*self._address)
        return f"<Server {where} active={self.admission.count}>"

    # -- one connection -------------------------------------------------------

    async def _accept_loop(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        """Accept and admit connections until cancelled."""
        backoff = AcceptBackoff()
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                if exc.errno not in ACCEPT_RESOURCE_ERRORS:  # pragma: no cover
                    raise
                # Out of descriptors or memory: wait, or spin.
                delay, tell = backoff.failed()
                if tell:
                    log.warning("accept failed: %s; backing off", exc)
                await trio.sleep(delay)
                continue
            failures = backoff.succeeded()
            if failures:
                log.warning("accept works again after %d failures", failures)
            try:
                ip, peer = format_peer(stream.socket.getpeername())
            except OSError:  # pragma: no cover - reset before we got to it
                await trio.aclose_forcefully(stream)
                continue
            decision = self._admit(ip, peer, trio.current_time())
            ticket = decision.ticket
            if ticket is None:
                nursery.start_soon(self._refuse, stream, REFUSALS[decision.verdict])
            else:
                nursery.start_soon(self._handle, stream, ip, peer, ticket)

    async def _handle(self, stream: trio.SocketStream, ip: str, peer: str, ticket: Ticket) -> None:
        current: trio.abc.Stream = stream
        if _NOTSENT_LOWAT is not None:
            # trio's streams keep at most 16 KiB unsent in the kernel (less
            # latency for interactive traffic); a POP3 server writes replies
            # in batches of up to FLUSH_SIZE and bounds its own memory, so
            # it leaves the send buffer as asyncio and the blocking server
            # do (a batch need not wait for the client to read the last).
            with contextlib.suppress(OSError):
                stream.setsockopt(socket.IPPROTO_TCP, _NOTSENT_LOWAT, _NO_LOWAT)
        try:
            if self.implicit_tls:
                wrapped = await self._handshake(stream, peer, ticket)
                if wrapped is None:
                    return
                current = wrapped
            await self._serve_client(current, ip, peer, ticket)
        finally:
            ticket.release()
            # A served session has closed its stream already (_close).
            if stream.socket.fileno() != -1:
                await trio.aclose_forcefully(current)

    async def _tls_wrap(
        self, stream: trio.abc.Stream, ticket: Ticket
    ) -> trio.SSLStream[trio.abc.Stream]:
        assert self.ssl_context is not None
        if ticket.evicted:  # in a burst, before it started
            raise _Stalled("evicted before the TLS handshake")
        tls = trio.SSLStream(stream, self.ssl_context, server_side=True)
        with trio.move_on_after(self.handshake_timeout) as scope:
            ticket.evict = scope.cancel
            try:
                await tls.do_handshake()
            finally:
                ticket.evict = None
        if scope.cancelled_caught:
            raise _Stalled("TLS handshake timed out or evicted")
        return tls

    async def _handshake(
        self, stream: trio.SocketStream, peer: str, ticket: Ticket
    ) -> trio.abc.Stream | None:
        try:
            return await self._tls_wrap(stream, ticket)
        except (*_STREAM_ERRORS, _Stalled) as exc:
            log.debug("TLS handshake with %s failed: %s", peer, exc)
            return None

    async def _refuse(self, stream: trio.SocketStream, text: str) -> None:
        with trio.move_on_after(1.0):
            try:
                if not self.implicit_tls:
                    await stream.send_all(busy_response(text))
            except _STREAM_ERRORS:  # pragma: no cover - the refused client is gone already
                pass
        await trio.aclose_forcefully(stream)

    async def _serve_client(
        self, stream: trio.abc.Stream, ip: str, peer: str, ticket: Ticket
    ) -> None:
        session = self._new_session(ip, peer)
        conn = _Connection(stream, self.config.idle_timeout, ticket)
        loop = serve_session(session, ticket.logged_in)
        try:
            await self._run(conn, loop)
        except (*_STREAM_ERRORS, _Stalled) as exc:
            log.debug("connection from %s ended: %s", peer, exc)
        except Exception:
            log.exception("unexpected error serving %s", peer)
        finally:
            # Cancellation (shutdown(), or the nursery being cancelled)
            # comes through here too: no UPDATE, the lock is released.
            loop.close()
            session.connection_lost()
            how = closing(session.stats.reason, abandoned=self._closing, linger=self.linger)
            await self._close(conn, how)

    async def _run(self, conn: _Connection, loop: Generator[LoopRequest, LoopAnswer, None]) -> None:
        """Perform what the loop asks until it ends (see :mod:`._loop`)."""
        with trio.CancelScope() as scope:
            conn.scope = scope
            try:
                await self._steps(conn, loop)
            finally:
                conn.scope = None
        if scope.cancelled_caught:
            # The idle timeout expired (see _Connection).
            if conn.waiting != "receive":
                raise _Stalled("send timed out")
            # Tell the loop (a receive answered None): it sends the
            # session's last words, each send with a timeout of its own.
            await self._steps(conn, loop, None)

    async def _steps(
        self,
        conn: _Connection,
        loop: Generator[LoopRequest, LoopAnswer, None],
        answer: LoopAnswer = None,
    ) -> None:
        while True:
            try:
                request = loop.send(answer)
            except StopIteration:
                return
            answer = None
            if type(request) is Send:
                await conn.send(request.data)
            elif type(request) is Call:
                answer = await self._perform(request)
            elif type(request) is Sleep:
                # A login's delay is not the client's silence.
                assert conn.scope is not None
                conn.scope.deadline = math.inf
                await trio.sleep(request.seconds)
            elif type(request) is StartTLS:
                # Nothing is buffered above the socket: plaintext sent after
                # STLS stays in the kernel and breaks the handshake (no
                # injection, RFC 2595 §4).  Only the handshake timeout
                # applies to the handshake.
                assert conn.scope is not None
                conn.scope.deadline = math.inf
                conn.stream = await self._tls_wrap(conn.stream, conn.ticket)
            else:
                answer = await conn.receive()

    async def _perform(self, call: Call) -> CallResult:
        """Run *call* in a worker thread (or await it, if native); see
        :mod:`._loop`.  Cancellation waits for the thread to finish."""
        try:
            if inspect.iscoroutinefunction(call.fn):
                return CallResult(await call.fn(*call.args))
            pool = self._pool
            if pool is None:
                pool = self._pool = ThreadPool(self.worker_threads)
            token = trio.lowlevel.current_trio_token()
            task = trio.lowlevel.current_task()

            def report(value: Any, error: BaseException | None) -> None:
                # In the worker thread.  The task waits for this (see
                # _wait_for_thread), so the run cannot be over yet.
                result = outcome.Value(value) if error is None else outcome.Error(error)
                token.run_sync_soon(trio.lowlevel.reschedule, task, result)

            pool.submit(call.fn, call.args, report)
            return CallResult(await trio.lowlevel.wait_task_rescheduled(_wait_for_thread))
        except Exception as exc:
            return CallResult(error=exc)

    async def _close(self, conn: _Connection, how: Closing) -> None:
        stream = conn.stream
        closed = False
        try:
            if how is Closing.ABORT:
                return
            if how is Closing.LINGER:
                # See Closing.LINGER (TLS has no half-close: drain only).
                with trio.move_on_after(self.linger):
                    if isinstance(stream, trio.abc.HalfCloseableStream):
                        await stream.send_eof()
                    drained = 0
                    chunk: bytes | bytearray
                    while drained < LINGER_LIMIT:
                        if _RAW_IO and type(stream) is trio.SocketStream:
                            chunk = await _receive_plain(stream.socket, LINGER_READ)
                        else:
                            chunk = await stream.receive_some(LINGER_READ)
                        if not chunk:
                            break
                        drained += len(chunk)
            with trio.move_on_after(max(self.linger, 1.0)) as scope:
                await stream.aclose()
            closed = not scope.cancelled_caught
        except _STREAM_ERRORS:
            pass
        finally:
            if not closed:
                await trio.aclose_forcefully(stream)


async def serve(
    backend: MaildropBackend | AsyncMaildropBackend,
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
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve POP3 until cancelled (``trio.run(serve, ...)`` via
    :func:`functools.partial`, Ctrl-C); see :class:`Server`.  Reports the
    bound ``(host, port)`` through *task_status*."""
    server = Server(
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
    )
    await server.serve(task_status=task_status)

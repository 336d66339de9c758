"""The asyncio POP3 server: one task per connection.

The session decides what to answer and :func:`~._loop.serve_session` how
to batch it; this module only moves bytes between asyncio streams and that
loop, with the options of the blocking server (:mod:`._sync`):

* the listening socket is made like the blocking server's (the first address
  :func:`socket.getaddrinfo` gives for *host*); the server's own accept
  task admits each connection as it is accepted (:mod:`._admission`: the
  TLS handshake counts, and waits out of descriptors back off) and runs it
  in a task of its own, which makes the streams (and does the implicit-TLS
  handshake) with :meth:`asyncio.loop.connect_accepted_socket`;
* replies are written through the :class:`asyncio.StreamWriter`, and
  whenever the transport is at its high-water mark ``await writer.drain()``
  is called before the loop pulls the next action from the session, so a
  client that stops reading stalls its own session instead of making the
  server buffer a whole message (memory per connection stays bounded by
  the loop's batch, the transport's high-water mark and one chunk);
* the idle timeout bounds every read and every stalled drain, so a client
  that stops reading cannot hold a session forever;
* STLS upgrades with :meth:`asyncio.StreamWriter.start_tls`, which needs
  Python 3.11: on 3.10, STLS is not offered (``tls_available=False``);
  implicit TLS works everywhere;
* a client refused at accept (see :mod:`._admission`) gets ``-ERR
  [SYS/TEMP] too many connections`` and is closed (with implicit TLS it is
  just closed: a plaintext line would be garbage to a TLS client);
* every way out of a connection (EOF, reset, timeout, failed handshake,
  :meth:`Server.close`, cancellation) ends in ``session.connection_lost()``,
  which releases the maildrop lock without UPDATE.  Only QUIT deletes.  The
  transport is then closed as :func:`~._loop.closing` decides.

The session's maildrop and authenticator calls that may block (checking a
password, opening, listing and committing a maildrop) run in worker threads
(``worker_threads`` at once), or on the loop when a backend writes them
``async def``: a slow password hash holds up only its own connection.
Reading a message runs on the loop (a Maildir read is a page-cache copy).

Example::

    import asyncio
    from pop3proto.adapters.asyncio import Server

    async def main():
        async with Server(backend, authenticator, port=1110) as server:
            await server.serve_forever()    # until cancelled or server.close()

    asyncio.run(main())
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import socket
import ssl
import sys
from collections.abc import Awaitable, Generator
from types import TracebackType
from typing import Any, TypeVar

from .._seam import Call, CallResult, Send, Sleep, StartTLS
from ..mailstore._base import AsyncMaildropBackend, MaildropBackend
from ..mailstore._users import Authenticator
from ._admission import ACCEPT_RESOURCE_ERRORS, REFUSALS, AcceptBackoff, Ticket
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
    discard_call,
    serve_session,
)
from ._threads import ThreadPool

__all__ = ["Server", "serve", "STLS_SUPPORTED"]

log = logging.getLogger("pop3proto.server")

T = TypeVar("T")

#: Whether this Python can upgrade a stream to TLS (STLS): 3.11 and later.
STLS_SUPPORTED = sys.version_info >= (3, 11)

if sys.version_info >= (3, 11):

    async def _within(aw: Awaitable[T], delay: float) -> T:
        async with asyncio.timeout(delay):
            return await aw

else:  # pragma: no cover - Python 3.10

    async def _within(aw: Awaitable[T], delay: float) -> T:
        return await asyncio.wait_for(aw, delay)


def _settle(
    future: asyncio.Future[Any],
    call: Call,
    pool: ThreadPool,
    value: Any,
    error: BaseException | None,
) -> None:
    """On the loop: hand a worker thread's outcome to the session waiting
    for it, or, if that session was abandoned meanwhile (``close()``),
    release what the call acquired, in a worker thread again (releasing
    may block too)."""
    if future.cancelled():
        if error is None and call.discard is not None:
            try:
                pool.submit(discard_call, (call, [value]), _ignore)
            except RuntimeError:
                # The pool is shut down (the server is closed): here, then,
                # rather than leave a maildrop locked.
                discard_call(call, [value])
        return
    if error is None:
        future.set_result(value)
    else:
        future.set_exception(error)


def _ignore(value: Any, error: BaseException | None) -> None:
    """The report of a discard (which logs its own errors)."""


class _SendStalled(Exception):
    """The client did not read our replies for a whole idle timeout."""


def _take_buffered(reader: asyncio.StreamReader) -> bytes:
    """Bytes the reader holds that nobody has read yet.

    After ``+OK`` to STLS they were sent in plaintext before the handshake;
    ``start_tls`` would hand them out as if they had come over TLS (the
    CVE-2011-0411 injection).  :class:`asyncio.StreamReader` has no public
    way to ask, so this takes them from its ``_buffer`` (CPython's
    implementation; with no such attribute nothing is found).
    """
    buffer = getattr(reader, "_buffer", None)
    if not buffer:
        return b""
    data = bytes(buffer)
    buffer.clear()
    return data


class _Connection:
    """The streams of one client, and its admission ticket."""

    __slots__ = ("reader", "ticket", "timeout", "writer")

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        timeout: float,
        ticket: Ticket,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.timeout = timeout
        self.ticket = ticket

    def must_drain(self) -> bool:
        """Whether a write has to wait on ``drain()``: when the transport
        holds its high-water mark or more (``drain()`` would block) or is
        closing (``drain()`` raises, or lets the loop run the connection's
        end).  Otherwise ``drain()`` would return at once, and skipping it
        saves a timeout and two coroutines per write."""
        transport = self.writer.transport
        if transport.is_closing():
            return True
        try:
            high = transport.get_write_buffer_limits()[1]
        except (AttributeError, NotImplementedError):  # pragma: no cover - other event loops
            return True
        return bool(transport.get_write_buffer_size() >= high)

    async def drain(self) -> None:
        """Wait until the transport wants more, but not forever (a slow
        client, or one not reading at all).  Raises if the peer is gone."""
        try:
            await _within(self.writer.drain(), self.timeout)
        except asyncio.TimeoutError:
            raise _SendStalled from None


class Server(ServerBase):
    """An asyncio POP3 server.

    Args:
        backend: the :class:`pop3proto.adapters.server.MaildropBackend` (or
            an ``AsyncMaildropBackend``).
        authenticator: the :class:`pop3proto.adapters.server.Authenticator`.
        host, port: where to listen (port ``0`` picks a free one; see
            :attr:`server_address`).  Like the blocking server, only the
            first address *host* resolves to is bound.
        ssl_context: a server-side :class:`ssl.SSLContext`.  Enables STLS
            (RFC 2595; Python 3.11+, see :data:`STLS_SUPPORTED`), or
            implicit TLS with *implicit_tls*.
        implicit_tls: TLS from the first byte (port 995, RFC 8314 §3).
        config: the :class:`pop3proto.adapters.server.ServerConfig`;
            ``tls_available`` is set from *ssl_context*, *implicit_tls* and
            the Python version.
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

    Nothing is bound until :meth:`start` (or ``async with``, or
    :meth:`serve_forever`).  :meth:`close` stops listening and abandons
    every session (no UPDATE: nothing is deleted, locks are released);
    :meth:`wait_closed` waits until they are all gone.
    """

    stls_supported = STLS_SUPPORTED
    offloads = True
    awaits = True

    def _init_io(self) -> None:
        stls_wanted = self.ssl_context is not None and not self.implicit_tls
        if stls_wanted and not STLS_SUPPORTED:  # pragma: no cover
            log.warning("STLS needs Python 3.11 or later; it is not offered")
        self._listener: socket.socket | None = None
        self._accepting: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False
        self._stopped: asyncio.Event | None = None
        # Created on first use (a loop-less constructor), shut down in
        # wait_closed().
        self._pool: ThreadPool | None = None

    # -- public API ---------------------------------------------------------

    async def start(self) -> None:
        """Bind, listen and start accepting connections."""
        if self._listener is not None or self._closing:
            raise RuntimeError("the server was already started")
        loop = asyncio.get_running_loop()
        if self.sock is not None:
            listener = self.sock
        else:
            infos = await loop.getaddrinfo(
                self.host, self.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
            family, _, _, _, address = infos[0]
            listener = socket.create_server(address, family=family, backlog=self.backlog)
        listener.setblocking(False)
        self._listener = listener
        self._stopped = asyncio.Event()
        self._accepting = loop.create_task(self._accept_loop(listener))

    @property
    def server_address(self) -> tuple[str, int]:
        """``(host, port)`` the server listens on (after :meth:`start`)."""
        if self._listener is None:
            raise RuntimeError("the server is not started")
        name = self._listener.getsockname()
        return str(name[0]), int(name[1])

    @property
    def sockets(self) -> tuple[Any, ...]:
        """The listening socket (one) while serving; empty before and after."""
        if self._listener is None or self._closing:
            return ()
        return (self._listener,)

    @property
    def active_connections(self) -> int:
        """Connections open right now, counted from accept."""
        return self.admission.count

    @property
    def is_serving(self) -> bool:
        """Whether the server accepts connections."""
        return self._listener is not None and not self._closing

    async def serve_forever(self) -> None:
        """Start if needed, then serve until :meth:`close` is called (returns)
        or this task is cancelled (the server is then closed)."""
        if self._listener is None:
            await self.start()
        assert self._stopped is not None
        try:
            await self._stopped.wait()
        finally:
            self.close()
            await self.wait_closed()

    def close(self) -> None:
        """Stop listening and abandon every open session (no UPDATE).

        Safe to call more than once; see :meth:`wait_closed`.
        """
        if self._closing:
            return
        self._closing = True
        if self._accepting is not None:
            self._accepting.cancel()
        elif self._listener is not None:  # pragma: no cover - closed while starting
            self._listener.close()
        if self._stopped is not None:
            self._stopped.set()
        for task in list(self._tasks):
            task.cancel()

    async def wait_closed(self) -> None:
        """Wait until the sessions abandoned by :meth:`close` have ended."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        accepting = self._accepting
        if accepting is not None:
            await asyncio.gather(accepting, return_exceptions=True)
        pool, self._pool = self._pool, None
        if pool is not None:
            # Calls in flight finish in their threads (no waiting here).
            pool.shutdown()

    async def __aenter__(self) -> Server:
        if self._listener is None:
            await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
        await self.wait_closed()

    def __repr__(self) -> str:
        where = "-"
        if self._listener is not None and not self._closing:
            host, port = self.server_address
            where = f"{host}:{port}"
        return f"<Server {where} active={self.admission.count}>"

    # -- one connection -------------------------------------------------------

    async def _accept_loop(self, listener: socket.socket) -> None:
        """Accept and admit connections until cancelled (:meth:`close`)."""
        loop = asyncio.get_running_loop()
        backoff = AcceptBackoff()
        try:
            while True:
                try:
                    sock, address = await loop.sock_accept(listener)
                except OSError as exc:
                    if exc.errno in ACCEPT_RESOURCE_ERRORS:
                        # Out of descriptors or memory: wait, or spin.
                        delay, tell = backoff.failed()
                        if tell:
                            log.warning("accept failed: %s; backing off", exc)
                        await asyncio.sleep(delay)
                    else:  # pragma: no cover - ECONNABORTED...: keep serving
                        log.debug("accept failed: %s", exc)
                    continue
                failures = backoff.succeeded()
                if failures:
                    log.warning("accept works again after %d failures", failures)
                no_delay(sock)
                self._admit_client(sock, address)
        finally:
            listener.close()

    def _admit_client(self, sock: socket.socket, address: Any) -> None:
        ip, peer = format_peer(address)
        decision = self._admit(ip, peer, asyncio.get_running_loop().time())
        ticket = decision.ticket
        if ticket is None:
            # A fresh socket's send buffer is empty: one non-blocking send.
            with contextlib.suppress(OSError):
                if not self.implicit_tls:
                    sock.send(busy_response(REFUSALS[decision.verdict]))
            sock.close()
            return
        task = asyncio.get_running_loop().create_task(self._handle(sock, peer, ticket))
        self._tasks.add(task)

    async def _handle(self, sock: socket.socket, peer: str, ticket: Ticket) -> None:
        task = asyncio.current_task()
        assert task is not None
        try:
            streams = await self._open(sock, peer, ticket, task)
            if streams is not None:
                await self._serve_client(*streams, ticket)
        except asyncio.CancelledError:
            # close() (or the loop shutting down) abandoned the session; the
            # cleanup is done.
            pass
        finally:
            ticket.release()
            self._tasks.discard(task)

    async def _open(
        self, sock: socket.socket, peer: str, ticket: Ticket, task: asyncio.Task[Any]
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """The streams of *sock*, after the implicit-TLS handshake (which
        an eviction interrupts); ``None`` if it failed."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=RECV_SIZE)
        # A connected-callback makes the protocol server-side (what
        # StreamWriter.start_tls asks for STLS) and hands over its writer.
        made: list[asyncio.StreamWriter] = []
        protocol = asyncio.StreamReaderProtocol(reader, lambda _, w: made.append(w))
        implicit = self.ssl_context if self.implicit_tls else None
        if ticket.evicted and implicit:  # in a burst, before its handshake
            sock.close()
            return None
        if implicit:
            # Only a handshake is an idle wait.  A plaintext connection
            # evicted here is told so at its first read, like one evicted
            # in a burst before its task ran.
            ticket.evict = task.cancel
        try:
            await loop.connect_accepted_socket(
                lambda: protocol,
                sock,
                ssl=implicit,
                ssl_handshake_timeout=self.handshake_timeout if implicit else None,
            )
        except (OSError, asyncio.TimeoutError, asyncio.CancelledError) as exc:
            sock.close()
            if isinstance(exc, asyncio.CancelledError) and not ticket.evicted:
                raise
            log.debug("TLS handshake with %s failed: %s", peer, exc or type(exc).__name__)
            return None
        finally:
            ticket.evict = None
        return reader, made[0]

    async def _serve_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ticket: Ticket
    ) -> None:
        ip, peer = format_peer(writer.get_extra_info("peername"))
        session = self._new_session(ip, peer)
        conn = _Connection(reader, writer, self.config.idle_timeout, ticket)
        loop = serve_session(session, ticket.logged_in)
        try:
            await self._run(conn, loop)
        except (OSError, _SendStalled, asyncio.TimeoutError, asyncio.IncompleteReadError) as exc:
            log.debug("connection from %s ended: %s", peer, exc or type(exc).__name__)
        except Exception:
            log.exception("unexpected error serving %s", peer)
        finally:
            # Cancellation (close(), or the loop shutting down) comes
            # through here too: no UPDATE, the lock is released.
            loop.close()
            session.connection_lost()
            how = closing(session.stats.reason, abandoned=self._closing, linger=self.linger)
            await self._close(conn, how)

    async def _run(self, conn: _Connection, loop: Generator[LoopRequest, LoopAnswer, None]) -> None:
        """Perform what the loop asks until it ends (see :mod:`._loop`)."""
        reader, writer = conn.reader, conn.writer
        answer: LoopAnswer = None
        while True:
            try:
                request = loop.send(answer)
            except StopIteration:
                return
            answer = None
            if type(request) is Send:
                writer.write(request.data)
                if conn.must_drain():
                    await conn.drain()
            elif type(request) is Call:
                answer = await self._perform(request)
            elif type(request) is Sleep:
                await asyncio.sleep(request.seconds)
            elif type(request) is StartTLS:
                leftover = _take_buffered(reader)
                if leftover:
                    answer = leftover  # no handshake: the session drops us
                else:
                    await self._start_tls(conn)
            else:
                if self._closing:
                    return
                answer = await self._receive(conn)

    async def _receive(self, conn: _Connection) -> bytes | None:
        """A read within the idle timeout and the admission deadlines;
        ``None`` when one expired or the connection was evicted."""
        loop = asyncio.get_running_loop()
        ticket = conn.ticket
        timeout = ticket.receive_timeout(conn.timeout, loop.time())
        if not timeout > 0:
            return None
        task = asyncio.current_task()
        assert task is not None
        ticket.evict = task.cancel
        try:
            data = await _within(conn.reader.read(RECV_SIZE), timeout)
        except asyncio.TimeoutError:
            return None
        except asyncio.CancelledError:
            if not ticket.evicted or self._closing:
                raise
            if sys.version_info >= (3, 11):
                task.uncancel()
            return None
        finally:
            ticket.evict = None
        ticket.received(data, loop.time())
        return data

    async def _perform(self, call: Call) -> CallResult:
        """Run *call* off the loop (or await it, if native); see :mod:`._loop`."""
        try:
            if inspect.iscoroutinefunction(call.fn):
                return CallResult(await call.fn(*call.args))
            pool = self._pool
            if pool is None:
                pool = self._pool = ThreadPool(self.worker_threads)
            loop = asyncio.get_running_loop()
            future: asyncio.Future[Any] = loop.create_future()

            def report(value: Any, error: BaseException | None) -> None:
                # In the worker thread.
                try:
                    loop.call_soon_threadsafe(_settle, future, call, pool, value, error)
                except RuntimeError:
                    # The loop is closed: nobody waits for the value.
                    if error is None:
                        discard_call(call, [value])

            pool.submit(call.fn, call.args, report)
            return CallResult(await future)
        except Exception as exc:
            return CallResult(error=exc)

    async def _start_tls(self, conn: _Connection) -> None:
        context = self.ssl_context
        assert context is not None
        if sys.version_info >= (3, 11):
            await conn.writer.start_tls(context, ssl_handshake_timeout=self.handshake_timeout)
        else:  # pragma: no cover - STLS is not offered on 3.10
            raise RuntimeError("STLS needs Python 3.11")

    async def _close(self, conn: _Connection, how: Closing) -> None:
        writer = conn.writer
        transport = writer.transport
        if how is Closing.ABORT:
            transport.abort()
            return
        try:
            if how is Closing.LINGER:
                with contextlib.suppress(asyncio.TimeoutError):
                    await _within(self._linger(conn), self.linger)
            writer.close()
            await _within(writer.wait_closed(), max(self.linger, 1.0))
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
            pass
        finally:
            transport.abort()  # a no-op once closed; else drops what is unsent

    async def _linger(self, conn: _Connection) -> None:
        # See Closing.LINGER: half-close (plaintext only: TLS has no
        # half-close), then drain.
        writer = conn.writer
        if writer.can_write_eof():
            writer.write_eof()
        drained = 0
        while drained < LINGER_LIMIT:
            chunk = await conn.reader.read(LINGER_READ)
            if not chunk:
                break
            drained += len(chunk)


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
) -> None:
    """Serve POP3 until cancelled (``asyncio.run(serve(...))``, Ctrl-C);
    see :class:`Server`."""
    async with Server(
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
        await server.serve_forever()

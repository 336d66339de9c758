"""The async client API, shared by the asyncio and trio clients.

:class:`AsyncClientBase` has every method of the blocking
:class:`pop3proto.adapters.sync.Client` as a coroutine, and the request loop
that runs :class:`~._core.ClientCore` operations with ``await``; a flavour
(:mod:`._asyncio`, :mod:`._trio`) only supplies how to connect, send,
receive, start TLS and close.

Behaviour common to the async clients:

* **Timeouts** apply to each network step (a write, a read, a TLS
  handshake), as socket timeouts do in the blocking client: a slow but
  steady 1 GB download does not time out.  Writing to the caller's sink is
  not timed.
* **Cancellation** (and a timeout) is thrown into the running core
  operation, which keeps the session in step: if a command was being sent
  the session is over (the engine is marked with ``send_failed()``; every
  later call raises :class:`ProtocolViolation` "the connection can no
  longer be used"), while a cancelled read or sink write leaves it usable:
  the replies still owed are read and dropped by the next call.
* **One operation at a time**: calls from several tasks are serialised by a
  lock.  Calling the client from inside its own sink raises
  :class:`RuntimeError` (it would deadlock).
* **Sinks** (:meth:`~AsyncClientBase.retrieve_into`) may be a file object
  with a synchronous ``write`` or an asynchronous one (``await
  f.write(...)``, as in aiofiles or :func:`trio.open_file`), or a callable,
  plain or ``async``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any, Protocol, TypeVar

import pop3proto
from pop3proto import State

from .._seam import Deliver, Operation, Receive, Send, StartTLS
from ._batch import RetrieveBatch
from ._core import ClientCore, Listing, MailboxStatus
from ._errors import ConnectionLost, TLSUnavailable
from ._options import TLSMode

__all__ = ["AsyncClientBase", "RetrievedMessages", "Writable", "Sink"]

T = TypeVar("T")
_C = TypeVar("_C", bound="AsyncClientBase")

_SESSION_STATES = (State.AUTHORIZATION, State.USER_OK, State.TRANSACTION)
_RECEIVE = Receive()


class Writable(Protocol):
    """Anything with a ``write(bytes)`` method; the result may be awaitable
    (an async file) or not (a regular binary file)."""

    def write(self, data: bytes, /) -> object: ...


#: What :meth:`AsyncClientBase.retrieve_into` accepts: a file object with a
#: plain or async ``write``, or a callable (plain or async) taking the chunk.
Sink = Writable | Callable[[bytes], object]


def _sink_function(fileobj: Sink) -> Callable[[bytes], object]:
    write = getattr(fileobj, "write", None)
    if callable(write):
        return write  # type: ignore[no-any-return]
    if callable(fileobj):
        return fileobj
    raise TypeError(
        "the sink must have a write() method (a file, sync or async) or be callable, "
        f"not {type(fileobj).__name__}"
    )


async def _deliver(sink: Callable[[bytes], object] | None, data: bytes) -> None:
    if sink is None:  # pragma: no cover - only streaming operations deliver
        raise RuntimeError("message data arrived with no sink")
    result = sink(data)
    if inspect.isawaitable(result):
        await result


class AsyncClientBase:
    """The async client API, shared by the asyncio and trio clients.

    Every method mirrors the blocking :class:`pop3proto.adapters.sync.Client`
    (same names, arguments, results and exceptions) as a coroutine; see the
    module docstring for timeouts, cancellation and sinks.  A flavour
    supplies :meth:`connect`, :meth:`_perform` (Send, Receive, StartTLS),
    :meth:`_close`, :meth:`_current_task` and a lock.

    As an async context manager the client connects on entry (unless
    already connected); a normal exit sends QUIT (committing deletions) and
    an exit by exception only closes the connection, so nothing marked
    deleted is removed (RFC 1939 §6).  When nothing was marked deleted, the
    normal exit closes right after sending QUIT, without waiting for a
    reply that would confirm nothing.
    """

    host: str
    port: int | None
    tls_mode: TLSMode

    def __init__(self, core: ClientCore, lock: AbstractAsyncContextManager[Any]) -> None:
        self._core = core
        self._lock = lock
        self._owner: object = None
        self._opened = False  # connect() was called
        self._closed = False

    # -- what a flavour supplies ------------------------------------------

    async def connect(self: _C) -> _C:  # pragma: no cover - abstract
        """Open the connection: read the greeting, start TLS as configured."""
        raise NotImplementedError

    async def _perform(self, request: Send | Receive | StartTLS) -> bytes | None:
        raise NotImplementedError  # pragma: no cover - abstract

    async def _close(self, *, graceful: bool) -> None:
        raise NotImplementedError  # pragma: no cover - abstract

    def _current_task(self) -> object:
        raise NotImplementedError  # pragma: no cover - abstract

    def _is_open(self) -> bool:
        raise NotImplementedError  # pragma: no cover - abstract

    # -- the runner ---------------------------------------------------------

    async def _run(self, op: Operation[T], sink: Callable[[bytes], object] | None = None) -> T:
        """Drive one core operation, performing its requests with ``await``."""
        try:
            if not self._is_open():
                # Before connect() the core would only say "call greet()";
                # after a close, nothing must reach the engine.
                raise self._not_open()
            task = self._current_task()
            if self._owner is task and task is not None:
                raise RuntimeError(
                    "the client was used from inside one of its own operations (a sink or "
                    "callback must not call the client it is fed by)"
                )
            async with self._lock:
                self._owner = task
                try:
                    request = op.send(None)
                    while True:
                        try:
                            if isinstance(request, Deliver):
                                await _deliver(sink, request.data)
                                answer = None
                            else:
                                answer = await self._perform(request)
                        except BaseException as exc:
                            # Cancellation, timeouts, resets, a failing sink:
                            # the core decides whether the session survives
                            # (a failed Send ends it) and re-raises.
                            request = op.throw(exc)
                        else:
                            request = op.send(answer)
                except StopIteration as done:
                    result: T = done.value
                    return result
                finally:
                    self._owner = None
        finally:
            op.close()

    async def _feed(self, batch: RetrieveBatch) -> bool:
        """Read once straight into *batch* when all it waits for is bytes
        (:meth:`RetrieveBatch.wants_bytes`), as the blocking client does:
        no operation, no request round trips.  Under the lock, like any
        operation; ``False`` (nothing read) when the batch wants more than
        bytes or the client is busy or closed, and :meth:`_run` of the
        batch's next step must go on."""
        if self._owner is not None or not self._is_open() or not batch.wants_bytes():
            return False
        async with self._lock:
            # Another task may have run an operation while we waited.
            if not self._is_open() or not batch.wants_bytes():
                return False
            self._owner = self._current_task()
            try:
                data = await self._perform(_RECEIVE)
            finally:
                self._owner = None
            assert data is not None  # a Receive answers bytes
            batch.feed(data)
        return True

    def _take_buffered(self, batch: RetrieveBatch) -> tuple[int, bytes] | None:
        """A message of *batch* already received, taken without the lock:
        only when no operation is running (none can start meanwhile, as
        nothing here awaits), so the core is ours."""
        if self._owner is not None or not self._is_open():
            return None
        return batch.take_buffered()

    # -- state --------------------------------------------------------------

    @property
    def core(self) -> ClientCore:
        """The I/O-free client this one drives."""
        return self._core

    @property
    def greeting(self) -> pop3proto.Greeting | None:
        """The server's greeting."""
        return self._core.greeting

    @property
    def tls(self) -> bool:
        """Whether the connection is encrypted."""
        return self._core.tls

    @property
    def state(self) -> State:
        """The session state (``State.TRANSACTION`` once logged in)."""
        return self._core.state

    # -- setup helpers for the flavours ---------------------------------------

    def _begin_connect(self) -> None:
        if self._opened or self._closed:
            raise RuntimeError("connect() may be called once, on a client not yet closed")
        self._opened = True

    async def _negotiate(self, starttls: bool) -> None:
        """Read the greeting and, for ``tls="starttls"``, upgrade."""
        await self._run(self._core.greet(capa=True))
        if starttls:
            caps = await self._run(self._core.capabilities())
            if caps.entries and not caps.stls:
                raise TLSUnavailable(
                    f"{self.host or 'the server'} does not offer STLS; use tls='implicit' or "
                    "tls='none'",
                    command="STLS",
                )
            await self._run(self._core.starttls(capa=True))

    def _not_open(self) -> ConnectionLost:
        if not self._opened:
            return ConnectionLost(
                "the client is not connected yet: use 'async with' or 'await client.connect()'"
            )
        return ConnectionLost("the client is closed")

    # -- commands -------------------------------------------------------------

    async def capabilities(self, *, refresh: bool = False) -> pop3proto.Capabilities:
        """The server's capabilities (CAPA, cached; RFC 2449 §5)."""
        return await self._run(self._core.capabilities(refresh=refresh))

    async def login(
        self,
        user: str,
        password: str,
        *,
        mechanism: str | None = None,
        allow_insecure: bool = False,
    ) -> str:
        """Log in with the strongest method offered; return its name.

        SCRAM-SHA-256 > SCRAM-SHA-1 > CRAM-MD5 > PLAIN > LOGIN > APOP >
        USER/PASS.  Refuses (:class:`InsecureAuthenticationRefused`) to
        expose the password on an unencrypted link to a non-loopback host
        unless *allow_insecure*.  See :meth:`ClientCore.login`.
        """
        return await self._run(
            self._core.login(user, password, mechanism=mechanism, allow_insecure=allow_insecure)
        )

    async def login_oauth2(
        self,
        user: str,
        token: str,
        *,
        mechanism: str | None = None,
        allow_insecure: bool = False,
    ) -> str:
        """Log in with an OAuth 2.0 access token; return the mechanism used.

        OAUTHBEARER if offered, else XOAUTH2; long tokens go after the
        server's empty challenge (RFC 5034 §4); a refusal's JSON error is
        summarised in the :class:`AuthenticationFailed`.  See
        :meth:`ClientCore.login_oauth2`.
        """
        return await self._run(
            self._core.login_oauth2(user, token, mechanism=mechanism, allow_insecure=allow_insecure)
        )

    async def authenticate(
        self, mechanism: pop3proto.SaslClientMechanism, *, allow_insecure: bool = False
    ) -> None:
        """Log in with a SASL mechanism object (e.g. ``XOAuth2Client``)."""
        await self._run(self._core.authenticate(mechanism, allow_insecure=allow_insecure))

    async def stat(self) -> MailboxStatus:
        """STAT: message count and total size."""
        return await self._run(self._core.stat())

    async def list(self) -> dict[int, int]:
        """LIST: message number -> size in octets."""
        return await self._run(self._core.list())

    async def listing(self, *, uids: bool = True, status: bool = False) -> Listing:
        """LIST, and UIDL and STAT if asked, in one round trip with
        PIPELINING (see :meth:`ClientCore.listing`)."""
        return await self._run(self._core.listing(uids=uids, status=status))

    async def size(self, number: int) -> int:
        """``LIST n``: one message's size in octets."""
        return await self._run(self._core.size(number))

    async def uidl(self) -> dict[int, str]:
        """UIDL: message number -> unique-id."""
        return await self._run(self._core.uidl())

    async def uid(self, number: int) -> str:
        """``UIDL n``: one message's unique-id."""
        return await self._run(self._core.uid(number))

    async def retrieve(self, number: int) -> bytes:
        """RETR: the message, byte for byte as stored (dot-unstuffed)."""
        buffer = bytearray()
        await self._run(self._core.retrieve(number), buffer.extend)
        return bytes(buffer)

    async def retrieve_into(self, number: int, fileobj: Sink) -> int:
        """RETR streamed into *fileobj*; return the octets written.

        *fileobj* is anything with ``write(bytes)``, synchronous (a binary
        file, :class:`io.BytesIO`) or asynchronous (``await
        fileobj.write(chunk)``: aiofiles, :func:`trio.open_file`), or a
        callable taking each chunk, plain or ``async``.  Memory stays
        bounded by the receive size, however large the message.
        """
        write = _sink_function(fileobj)
        return await self._run(self._core.retrieve(number), write)

    def retrieve_many(
        self, numbers: Iterable[int], *, window: int | None = None
    ) -> RetrievedMessages:
        """Yield ``(number, message)`` for each of *numbers*, in order
        (``async for``).

        Pipelined when the server advertises PIPELINING (at most *window*
        RETRs in flight, default the client's), one at a time otherwise.  A
        ``-ERR`` for a message raises (ending the iteration); leaving the
        loop early is fine: the replies still owed are read and dropped by
        the next command.  Other commands may be used inside the loop (see
        :class:`~pop3proto.adapters.client._batch.RetrieveBatch` for the cost).
        """
        return RetrievedMessages(self, self._core.retrieve_many(numbers, window=window))

    async def retrieve_many_into(
        self,
        numbers: Iterable[int],
        sink: Callable[[int, bytes], object],
        *,
        window: int | None = None,
    ) -> int:
        """Stream each message of *numbers* into ``sink(number, chunk)``.

        Pipelined like :meth:`retrieve_many`, but memory stays bounded: the
        chunks of one message come in order and contiguously, and after its
        last chunk ``sink(number, b"")`` marks its end (other chunks are
        never empty).  *sink* may be a plain or an ``async`` function.
        Returns how many messages were delivered.
        """
        batch = self._core.retrieve_many(numbers, window=window)
        count = 0
        try:
            while True:
                ready = self._take_buffered(batch)
                if ready is None and await self._feed(batch):
                    continue
                if ready is not None:
                    number, data = ready
                    if data:
                        result = sink(number, data)
                        if inspect.isawaitable(result):
                            await result
                else:
                    done = await self._run(
                        batch.next(), lambda data: sink(batch.current or 0, data)
                    )
                    if done is None:
                        return count
                    number = done
                result = sink(number, b"")
                if inspect.isawaitable(result):
                    await result
                count += 1
        finally:
            batch.abandon()

    async def top(self, number: int, lines: int) -> bytes:
        """TOP: the headers and the first *lines* body lines."""
        buffer = bytearray()
        await self._run(self._core.top(number, lines), buffer.extend)
        return bytes(buffer)

    async def delete(self, number: int) -> None:
        """DELE: mark a message deleted (removed at :meth:`quit`)."""
        await self._run(self._core.delete(number))

    async def delete_many(self, numbers: Iterable[int], *, window: int | None = None) -> None:
        """DELE several messages, pipelined when possible."""
        await self._run(self._core.delete_many(numbers, window=window))

    async def reset(self) -> None:
        """RSET: unmark every message marked deleted."""
        await self._run(self._core.reset())

    async def noop(self) -> None:
        """NOOP: keep the session alive."""
        await self._run(self._core.noop())

    async def utf8(self) -> None:
        """UTF8 (RFC 6856): switch to UTF-8 mode before logging in."""
        await self._run(self._core.utf8())

    async def quit(self) -> bool:
        """QUIT and close; return whether deletions were committed.

        Raises :class:`ConnectionLost` with ``outcome_unknown=True`` if the
        server closed before replying.
        """
        try:
            return await self._run(self._core.quit())
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        """Close the connection without QUIT: nothing is deleted.

        Waits briefly for an orderly close (at most 2 seconds), then aborts
        the connection.  Safe to call more than once.
        """
        await self._close(graceful=True)

    async def close(self) -> None:
        """The same as :meth:`aclose` (the blocking client's name)."""
        await self._close(graceful=True)

    async def __aenter__(self: _C) -> _C:
        if not self._opened:
            await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None and self._is_open() and self._core.state in _SESSION_STATES:
            if self._core.marked:
                await self.quit()
                return
            # Nothing to commit: QUIT's reply would confirm nothing, so
            # close without waiting for it (as the blocking Client does).
            try:
                await self._run(self._core.quit_without_reply())
            finally:
                await self.aclose()
            return
        await self._close(graceful=exc_type is None)

    def __repr__(self) -> str:
        if not self._opened:
            status = "not connected"
        elif not self._is_open():
            status = "closed"
        else:
            status = self._core.state.name
        tls = " tls" if self._is_open() and self.tls else ""
        where = self.host if self.port is None else f"{self.host}:{self.port}"
        return f"<{type(self).__name__} {where} {status}{tls}>"


class RetrievedMessages:
    """The async iterator of :meth:`AsyncClientBase.retrieve_many`.

    Yields ``(number, message)``.  Breaking out of the loop (or calling
    :meth:`aclose`, or leaving ``async with``) abandons the batch: the
    replies still owed are read and dropped by the client's next command.
    The underlying :class:`~pop3proto.adapters.client._batch.RetrieveBatch` is
    :attr:`batch` (its ``window`` tells whether the RETRs are pipelined).
    """

    def __init__(self, client: AsyncClientBase, batch: RetrieveBatch) -> None:
        self._client = client
        self._batch = batch
        self._finished = False

    @property
    def batch(self) -> RetrieveBatch:
        """The I/O-free batch being run."""
        return self._batch

    def __aiter__(self) -> RetrievedMessages:
        return self

    async def __anext__(self) -> tuple[int, bytes]:
        if self._finished:
            raise StopAsyncIteration
        client = self._client
        try:
            while True:
                ready = client._take_buffered(self._batch)
                if ready is not None:
                    return ready
                # All the next reply lacks is bytes: read them directly.
                if not await client._feed(self._batch):
                    break
            buffer = bytearray()
            number = await client._run(self._batch.next(), buffer.extend)
        except BaseException:
            self._finish()
            raise
        if number is None:
            self._finish()
            raise StopAsyncIteration
        return number, bytes(buffer)

    def _finish(self) -> None:
        self._finished = True
        self._batch.abandon()

    async def aclose(self) -> None:
        """Stop here; the rest of the batch is abandoned."""
        self._finish()

    async def __aenter__(self) -> RetrievedMessages:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._finish()

    def __del__(self) -> None:
        # A loop left with "break": abandon at once, so the next command
        # drops the replies still owed instead of keeping them.
        self._batch.abandon()

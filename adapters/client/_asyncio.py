"""The asyncio POP3 client.

:class:`Client` is :class:`pop3proto.adapters.sync.Client` with ``await``:
the same methods, arguments, results and typed exceptions, over
:func:`asyncio.open_connection` streams::

    from pop3proto.adapters.asyncio import Client

    async with Client("pop.example.org") as client:       # STLS on port 110
        await client.login("alice", "secret")
        async for number, message in client.retrieve_many(await client.list()):
            ...

Like the blocking client, all protocol logic is
:class:`~._core.ClientCore`'s; the methods, the request loop and the rules
for timeouts, cancellation and sinks come from :class:`~._async.AsyncClientBase`,
shared with the trio client.  This module only performs the core's requests
(see :mod:`pop3proto.adapters._seam`) over asyncio streams.

asyncio specifics: STLS needs :meth:`asyncio.StreamWriter.start_tls`, which
is Python 3.11+.  On 3.10 (:data:`STLS_SUPPORTED` false) ``tls="starttls"``
raises :class:`NotImplementedError` from the constructor, before anything is
sent; implicit TLS (``tls="implicit"``, port 995) works everywhere.  Network
errors propagate as they are (:class:`OSError`, :class:`TimeoutError`).
"""

from __future__ import annotations

import asyncio
import ssl
import sys
from collections.abc import Awaitable
from typing import Final, TypeVar

import pop3proto

from .._seam import Receive, Send, StartTLS
from ._async import AsyncClientBase
from ._base import DEFAULT_WINDOW, is_loopback
from ._core import ClientCore
from ._errors import ProtocolViolation
from ._options import TLSMode, check_timeout, resolve_tls

__all__ = ["Client", "STLS_SUPPORTED", "TLSMode"]

T = TypeVar("T")

#: Whether STLS works on this Python (:meth:`asyncio.StreamWriter.start_tls`
#: is 3.11+).  Implicit TLS works everywhere.
STLS_SUPPORTED: Final = sys.version_info >= (3, 11)

_RECV_SIZE: Final = 65536
# The StreamReader buffers up to twice this before pausing the socket.
_STREAM_LIMIT: Final = 1 << 16
# How long closing waits for the peer (a TLS close, a FIN) before aborting.
_CLOSE_GRACE: Final = 2.0


if sys.version_info >= (3, 11):

    async def _within(aw: Awaitable[T], delay: float | None) -> T:
        if delay is None:
            return await aw
        scope = asyncio.timeout(delay)
        try:
            async with scope:
                result = await aw
        except TimeoutError:
            if scope.expired():
                raise TimeoutError(f"no progress for {delay:g} s") from None
            raise  # pragma: no cover - the call's own ETIMEDOUT, from the kernel
        return result

else:  # pragma: no cover - Python 3.10

    async def _within(aw: Awaitable[T], delay: float | None) -> T:
        if delay is None:
            return await aw
        try:
            return await asyncio.wait_for(aw, delay)
        except asyncio.TimeoutError as exc:
            # 3.10's asyncio.TimeoutError is not the builtin TimeoutError.
            raise TimeoutError(f"no progress for {delay:g} s") from exc


def _unread(reader: asyncio.StreamReader) -> int:
    """Octets the reader holds that were not read yet.

    After ``+OK`` to STLS they came in plaintext before the handshake; the
    reader would hand them out after it as if they were encrypted (the
    RFC 2595 §4 response injection).  The engine checks what we read; this
    looks at what CPython's StreamReader keeps in its private buffer.
    """
    buffer = getattr(reader, "_buffer", None)
    return len(buffer) if buffer else 0


class Client(AsyncClientBase):
    """A modern asyncio POP3 client: typed, TLS by default, pipelined.

    Args:
        host: the server.
        port: default 995 with ``tls="implicit"``, else 110.
        tls: ``"starttls"`` (upgrade with STLS and refuse to go on without
            it, raising :class:`TLSUnavailable`; Python 3.11+), ``"implicit"``
            (TLS from the first byte, RFC 8314 §3) or ``"none"``.  The
            default is ``"implicit"`` for port 995 and ``"starttls"``
            otherwise.
        ssl_context: for TLS; default ``ssl.create_default_context()``
            (certificate and host name verified).
        server_hostname: the name to verify the certificate against
            (default *host*).
        timeout: seconds allowed for each network step: connecting, each
            write, each read, each TLS handshake (default 60; ``None``
            waits forever).
        window: RETRs kept in flight by :meth:`retrieve_many` when the
            server advertises PIPELINING.
        source_address: ``(host, port)`` to bind locally
            (``local_addr`` of :func:`asyncio.open_connection`).

    Nothing happens until :meth:`connect` (or ``async with``), which
    connects, reads the greeting and, with ``"starttls"``, upgrades the
    connection.  Errors are :class:`POP3Error` subclasses; network errors
    and timeouts (:class:`OSError`, :class:`TimeoutError`) propagate as
    they are.
    """

    def __init__(
        self,
        host: str,
        port: int | None = None,
        *,
        tls: TLSMode | None = None,
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        timeout: float | None = 60.0,
        window: int = DEFAULT_WINDOW,
        source_address: tuple[str, int] | None = None,
    ) -> None:
        tls, port = resolve_tls(tls, port)
        check_timeout(timeout)
        if tls == "starttls" and not STLS_SUPPORTED:  # pragma: no cover - Python 3.10
            raise NotImplementedError(
                "STLS over asyncio needs Python 3.11 or later (StreamWriter.start_tls); "
                "use tls='implicit' (port 995), the trio adapter, or upgrade Python"
            )
        self.host = host
        self.port = port
        self.tls_mode = tls
        self.timeout = timeout
        self._context = ssl_context
        self._server_hostname = server_hostname or host
        self._source_address = source_address
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        super().__init__(ClientCore(host, tls=tls == "implicit", window=window), asyncio.Lock())

    # -- state --------------------------------------------------------------

    @property
    def reader(self) -> asyncio.StreamReader | None:
        """The stream reader, or ``None`` before connecting and once closed."""
        return self._reader

    @property
    def writer(self) -> asyncio.StreamWriter | None:
        """The stream writer (its transport is TLS once TLS is on), or
        ``None`` before connecting and once closed."""
        return self._writer

    def _is_open(self) -> bool:
        return self._writer is not None

    def _current_task(self) -> object:
        return asyncio.current_task()

    def _ssl_context(self) -> ssl.SSLContext:
        if self._context is None:
            self._context = ssl.create_default_context()
        return self._context

    # -- connecting -----------------------------------------------------------

    async def connect(self) -> Client:
        """Connect, read the greeting and, with ``tls="starttls"``, upgrade
        to TLS; return the client.  Called by ``async with``; call it once.
        On failure the connection is closed and the error raised."""
        self._begin_connect()
        implicit = self.tls_mode == "implicit"
        try:
            if implicit:
                opening = asyncio.open_connection(
                    self.host,
                    self.port,
                    ssl=self._ssl_context(),
                    server_hostname=self._server_hostname,
                    ssl_handshake_timeout=self.timeout,
                    local_addr=self._source_address,
                    limit=_STREAM_LIMIT,
                )
            else:
                opening = asyncio.open_connection(
                    self.host, self.port, local_addr=self._source_address, limit=_STREAM_LIMIT
                )
            reader, writer = await _within(opening, self.timeout)
        except BaseException:
            self._closed = True
            raise
        self._reader, self._writer = reader, writer
        peer = writer.get_extra_info("peername")
        # A TCP peer is (host, port, ...); anything else keeps the verdict
        # on the host name.
        if isinstance(peer, tuple) and peer:  # pragma: no branch
            self._core.loopback = is_loopback(str(peer[0]))
        try:
            await self._negotiate(self.tls_mode == "starttls")
        except BaseException:
            await self._close(graceful=False)
            raise
        return self

    # -- performing requests --------------------------------------------------

    async def _perform(self, request: Send | Receive | StartTLS) -> bytes | None:
        reader, writer = self._reader, self._writer
        if reader is None or writer is None:
            raise self._not_open()
        if isinstance(request, Receive):
            return await _within(reader.read(_RECV_SIZE), self.timeout)
        if isinstance(request, Send):
            writer.write(request.data)
            await _within(writer.drain(), self.timeout)
            return None
        await self._start_tls(reader, writer)
        return None

    async def _start_tls(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if _unread(reader):
            error = pop3proto.RemoteProtocolError(
                "the server sent data after +OK to STLS, before the TLS handshake "
                "(response injection, RFC 2595 §4)"
            )
            raise ProtocolViolation(f"STLS: {error}", error=error, command="STLS")
        if sys.version_info >= (3, 11):
            # No await between the check above and here: the transport is
            # paused and switched to TLS before any later byte is read.
            await _within(
                writer.start_tls(self._ssl_context(), server_hostname=self._server_hostname),
                self.timeout,
            )
        else:  # pragma: no cover - refused by the constructor
            raise NotImplementedError("STLS over asyncio needs Python 3.11 or later")

    async def _close(self, *, graceful: bool) -> None:
        writer = self._writer
        self._reader = self._writer = None
        self._closed = True
        if writer is None:
            return
        if not graceful:
            writer.transport.abort()
            return
        writer.close()
        grace = _CLOSE_GRACE if self.timeout is None else min(self.timeout, _CLOSE_GRACE)
        try:
            await _within(writer.wait_closed(), grace)
        except OSError:  # a reset, an unfinished TLS close, TimeoutError
            writer.transport.abort()
        except BaseException:
            writer.transport.abort()
            raise

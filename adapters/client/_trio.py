"""The trio POP3 client, over any :class:`trio.abc.Stream`.

:class:`Client` has the methods of :class:`pop3proto.adapters.sync.Client`
as coroutines (they come from :class:`~._async.AsyncClientBase`, shared with
the asyncio client), and runs them over a trio stream: a TCP connection
made by :func:`connect`, a :class:`trio.SSLStream`, or anything else that
implements :class:`trio.abc.Stream`, such as the in-memory streams of
:mod:`trio.testing`::

    from pop3proto.adapters.trio import connect

    async with await connect("pop.example.org") as client:   # STLS on 110
        await client.login("alice", "secret")
        async for number, message in client.retrieve_many(await client.list()):
            ...

    client = Client.from_stream(stream, tls="starttls", server_hostname="pop.example.org")
    async with client:                  # reads the greeting, upgrades
        ...

TLS: implicit TLS wraps the stream in :class:`trio.SSLStream` before the
greeting; STLS wraps the existing stream after ``+OK`` and runs
``do_handshake()``.  The TLS streams are made with ``https_compatible=True``:
POP3 frames its own replies (the engine notices a truncated one), so a
server closing TCP without a TLS close_notify is an ordinary end of stream,
as with the standard library's ``ssl`` module.

Timeouts use :func:`trio.fail_after` around each network step (so they
raise :class:`trio.TooSlowError`); cancellation follows the rules of the
module docstring of :mod:`._async` (a cancelled send ends the session, a
cancelled read does not).  Transport errors propagate as trio raises them
(:class:`trio.BrokenResourceError`, :class:`trio.ClosedResourceError`,
:class:`OSError`).
"""

from __future__ import annotations

import contextlib
import math
import socket
import ssl
from typing import Any, Final

import trio  # type: ignore[import-untyped, unused-ignore]

from .._seam import Receive, Send, StartTLS
from ._async import AsyncClientBase
from ._base import DEFAULT_WINDOW, is_loopback
from ._core import ClientCore
from ._options import TLSMode, check_timeout, resolve_tls

__all__ = ["Client", "connect", "TLSMode"]

_RECV_SIZE: Final = 65536
# How long a graceful close may take before the stream is closed forcefully.
_CLOSE_GRACE: Final = 2.0


def _tls_mode(tls: TLSMode | bool, stream: Any) -> TLSMode:
    if tls is True:
        mode: TLSMode = "implicit"
    elif tls is False:
        mode = "none"
    elif tls in ("implicit", "starttls", "none"):
        mode = tls
    else:
        raise ValueError(f"tls must be a bool or 'implicit', 'starttls', 'none', not {tls!r}")
    if isinstance(stream, trio.SSLStream):
        if mode == "starttls":
            raise ValueError("tls='starttls' on a stream that is already a trio.SSLStream")
        mode = "implicit"
    return mode


def _peer_is_loopback(stream: Any) -> bool | None:
    """Whether the socket under *stream* (through ``transport_stream``
    layers) is connected to this machine; ``None`` if there is no socket."""
    for _ in range(8):
        if stream is None:
            return None
        sock = getattr(stream, "socket", None)
        if sock is not None:
            if getattr(sock, "family", None) == getattr(socket, "AF_UNIX", object()):
                return True
            try:
                peer = sock.getpeername()
            except OSError:
                return None
            return is_loopback(str(peer[0])) if isinstance(peer, tuple) and peer else None
        stream = getattr(stream, "transport_stream", None)
    return None  # pragma: no cover - eight layers deep: a cycle, or no socket worth finding


class Client(AsyncClientBase):
    """A modern trio POP3 client over a :class:`trio.abc.Stream`.

    Make one with :func:`connect` (TCP) or :meth:`from_stream` (any stream);
    the constructor is the same as :meth:`from_stream`.

    Args:
        stream: the transport, connected to the server and not read yet.
        tls: ``False`` / ``"none"``: plaintext; ``True`` / ``"implicit"``:
            TLS from the first byte (the stream is wrapped in
            :class:`trio.SSLStream` unless it already is one); ``"starttls"``:
            upgrade with STLS after the greeting and refuse to go on without
            it (:class:`TLSUnavailable`).  A :class:`trio.SSLStream` always
            counts as TLS.
        server_hostname: the name to verify the certificate against (and to
            name the server in messages).
        ssl_context: for TLS; default ``ssl.create_default_context()``.
        timeout: seconds allowed for each network step (each send, each
            receive, each TLS handshake; default 60, ``None`` waits
            forever); exceeding it raises :class:`trio.TooSlowError`.
        window: RETRs kept in flight by :meth:`retrieve_many` when the
            server advertises PIPELINING.
        loopback: whether the peer is on this machine (then a password may
            be sent without TLS).  ``None`` asks the socket under the stream
            for its peer address, else judges *server_hostname*.

    Nothing is read until :meth:`connect` (or ``async with``), which reads
    the greeting after any TLS handshake and does STLS if asked.
    """

    def __init__(
        self,
        stream: trio.abc.Stream,
        *,
        tls: TLSMode | bool = False,
        server_hostname: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        timeout: float | None = 60.0,
        window: int = DEFAULT_WINDOW,
        loopback: bool | None = None,
    ) -> None:
        mode = _tls_mode(tls, stream)
        check_timeout(timeout)
        already_tls = isinstance(stream, trio.SSLStream)
        wraps = mode == "starttls" or (mode == "implicit" and not already_tls)
        if wraps and not server_hostname and (ssl_context is None or ssl_context.check_hostname):
            # Found out only after STLS was sent, this would end the session.
            raise ValueError("server_hostname is needed to verify the server's certificate")
        self.host = server_hostname or ""
        self.port = None
        self.tls_mode = mode
        self.timeout = timeout
        self._context = ssl_context
        self._server_hostname = server_hostname
        self._stream: trio.abc.Stream | None = stream
        if loopback is None:
            loopback = _peer_is_loopback(stream)
        core = ClientCore(self.host, tls=mode == "implicit", loopback=loopback, window=window)
        super().__init__(core, trio.Lock())

    @classmethod
    def from_stream(
        cls,
        stream: trio.abc.Stream,
        *,
        tls: TLSMode | bool = False,
        server_hostname: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        timeout: float | None = 60.0,
        window: int = DEFAULT_WINDOW,
        loopback: bool | None = None,
    ) -> Client:
        """A client over *stream*; see the class docstring for the arguments.

        Nothing is read until :meth:`connect` or ``async with``."""
        return cls(
            stream,
            tls=tls,
            server_hostname=server_hostname,
            ssl_context=ssl_context,
            timeout=timeout,
            window=window,
            loopback=loopback,
        )

    # -- state --------------------------------------------------------------

    @property
    def stream(self) -> trio.abc.Stream | None:
        """The stream (a :class:`trio.SSLStream` once TLS is on), or ``None``
        once closed."""
        return self._stream

    def _is_open(self) -> bool:
        return self._opened and self._stream is not None

    def _current_task(self) -> object:
        return trio.lowlevel.current_task()

    def _ssl_context(self) -> ssl.SSLContext:
        if self._context is None:
            self._context = ssl.create_default_context()
        return self._context

    def _deadline(self) -> contextlib.AbstractContextManager[object]:
        return trio.fail_after(math.inf if self.timeout is None else self.timeout)  # type: ignore[no-any-return, unused-ignore]

    # -- connecting -----------------------------------------------------------

    async def connect(self) -> Client:
        """Do the TLS handshake (implicit TLS), read the greeting and, with
        ``tls="starttls"``, upgrade; return the client.  Called by ``async
        with``; call it once.  On failure the stream is closed."""
        self._begin_connect()
        try:
            if self.tls_mode == "implicit":
                await self._handshake()
            await self._negotiate(self.tls_mode == "starttls")
        except BaseException:
            await self._close(graceful=False)
            raise
        return self

    async def _handshake(self) -> None:
        """Wrap the stream in TLS (unless it is already) and handshake."""
        stream = self._stream
        if stream is None:  # pragma: no cover - _perform and connect() checked it
            raise self._not_open()
        if not isinstance(stream, trio.SSLStream):
            stream = trio.SSLStream(
                stream,
                self._ssl_context(),
                server_hostname=self._server_hostname,
                https_compatible=True,
            )
            self._stream = stream
        with self._deadline():
            await stream.do_handshake()

    # -- performing requests --------------------------------------------------

    async def _perform(self, request: Send | Receive | StartTLS) -> bytes | None:
        stream = self._stream
        if stream is None or not self._opened:
            raise self._not_open()
        if isinstance(request, StartTLS):
            await self._handshake()
            return None
        with self._deadline():
            if isinstance(request, Receive):
                data = await stream.receive_some(_RECV_SIZE)
                # Memory streams hand out bytearrays; the core wants bytes.
                return data if type(data) is bytes else bytes(data)
            await stream.send_all(request.data)
        return None

    async def _close(self, *, graceful: bool) -> None:
        stream = self._stream
        self._stream = None
        self._closed = True
        if stream is None:
            return
        if not graceful:
            await trio.aclose_forcefully(stream)
            return
        with trio.move_on_after(_CLOSE_GRACE):
            # Cancelled or not, aclose() leaves the stream closed.
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                await stream.aclose()


async def connect(
    host: str,
    port: int | None = None,
    *,
    tls: TLSMode | None = None,
    ssl_context: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    timeout: float | None = 60.0,
    window: int = DEFAULT_WINDOW,
) -> Client:
    """Connect to a POP3 server over TCP and return a ready :class:`Client`.

    The arguments are those of the blocking client: *port* defaults to 995
    with ``tls="implicit"``, else 110; *tls* defaults to ``"implicit"`` for
    port 995 and ``"starttls"`` otherwise; *server_hostname* defaults to
    *host*; *timeout* bounds the TCP connection and then every network step.
    The greeting is read (after the TLS handshake for implicit TLS) and
    STLS done before this returns.  Use it as ``async with await
    connect(...) as client:``.
    """
    mode, port = resolve_tls(tls, port)
    check_timeout(timeout)
    with trio.fail_after(math.inf if timeout is None else timeout):
        stream = await trio.open_tcp_stream(host, port)
    try:
        client = Client(
            stream,
            tls=mode,
            server_hostname=server_hostname or host,
            ssl_context=ssl_context,
            timeout=timeout,
            window=window,
        )
        client.host = host
        client.port = port
        client.core.host = host
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise
    await client.connect()
    return client

"""The modern blocking client: :class:`Client`, a runner over a blocking socket.

All protocol logic is :class:`~._core.ClientCore`'s; :class:`Client` only
performs the core's requests with socket calls (see :mod:`._core` for the
rules a runner keeps).  The public face is :mod:`pop3proto.adapters.sync`.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import IO, TypeVar

import pop3proto
from pop3proto import State

from .._seam import Deliver, Operation, Receive, Request, Send, StartTLS
from ._base import DEFAULT_WINDOW, is_loopback
from ._core import ClientCore, Listing, MailboxStatus
from ._errors import ConnectionLost, TLSUnavailable
from ._options import TLSMode, resolve_tls

__all__ = ["Client"]

T = TypeVar("T")

# What retrieve_many() reads at once while replies stream in (a whole
# window of small messages is up to 4 MiB).
_BULK_RECV = 256 << 10


class Client:
    """A modern blocking POP3 client: typed, TLS by default, pipelined.

    Args:
        host: the server.
        port: default 995 with ``tls="implicit"``, else 110.
        tls: ``"starttls"`` (upgrade with STLS and refuse to go on without
            it, raising :class:`TLSUnavailable`), ``"implicit"`` (TLS from
            the first byte, RFC 8314 §3) or ``"none"``.  The default is
            ``"implicit"`` for port 995 and ``"starttls"`` otherwise.
        ssl_context: for TLS; default ``ssl.create_default_context()``
            (certificate and host name verified).
        server_hostname: the name to verify the certificate against
            (default *host*).
        timeout: seconds for every socket operation (default 60; ``None``
            blocks forever; 0 is refused, as in ``poplib``).
        window: RETRs kept in flight by :meth:`retrieve_many` when the
            server advertises PIPELINING.
        source_address: passed to :func:`socket.create_connection`.

    Connecting reads the greeting and, with ``"starttls"``, upgrades the
    connection, all in the constructor.  As a context manager, a normal exit
    sends QUIT (committing deletions) and an exit by exception only closes
    the socket, so nothing marked deleted is removed (RFC 1939 §6).  When
    nothing was marked deleted, the normal exit closes right after sending
    QUIT: its reply would confirm nothing, and waiting for it would cost a
    round trip.

    Errors are :class:`POP3Error` subclasses; socket errors and timeouts
    (:class:`OSError`, :class:`TimeoutError`) propagate as they are.
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
        if timeout is not None and timeout <= 0:
            raise ValueError("timeout must be positive or None (non-blocking is not supported)")
        self.host = host
        self.port = port
        self.tls_mode: TLSMode = tls
        self._context = ssl_context
        self._server_hostname = server_hostname or host
        self._sock: socket.socket | None = socket.create_connection(
            (host, port), timeout, source_address
        )
        try:
            peer = self._sock.getpeername()[0]
            self._core = ClientCore(
                host,
                tls=tls == "implicit",
                loopback=is_loopback(str(peer)),
                window=window,
            )
            if tls == "implicit":
                self._sock = self._ssl_context().wrap_socket(
                    self._sock, server_hostname=self._server_hostname
                )
            self._run(self._core.greet(capa=True))
            if tls == "starttls":
                caps = self._run(self._core.capabilities())
                if caps.entries and not caps.stls:
                    raise TLSUnavailable(
                        f"{host} does not offer STLS; use tls='implicit' or tls='none'",
                        command="STLS",
                    )
                self._run(self._core.starttls(capa=True))
        except BaseException:
            self.close()
            raise

    # -- plumbing ---------------------------------------------------------

    def _ssl_context(self) -> ssl.SSLContext:
        if self._context is None:
            self._context = ssl.create_default_context()
        return self._context

    def _perform(self, request: Request, sink: Callable[[bytes], object] | None) -> bytes | None:
        sock = self._sock
        if sock is None:
            raise ConnectionLost("the client is closed")
        # Deliver first: a retrieval asks for it once per message piece.
        if isinstance(request, Deliver):
            if sink is None:  # pragma: no cover - only streaming ops deliver
                raise RuntimeError("message data arrived with no sink")
            sink(request.data)
        elif isinstance(request, Receive):
            return sock.recv(65536)
        elif isinstance(request, Send):
            sock.sendall(request.data)
        elif isinstance(request, StartTLS):
            self._sock = self._ssl_context().wrap_socket(
                sock, server_hostname=self._server_hostname
            )
        else:  # pragma: no cover
            raise TypeError(f"unknown request {request!r}")
        return None

    def _run(self, op: Operation[T], sink: Callable[[bytes], object] | None = None) -> T:
        """Drive one core operation with blocking socket calls."""
        try:
            request = op.send(None)
            while True:
                try:
                    answer = self._perform(request, sink)
                except BaseException as exc:
                    # Let the core judge whether the session survives.
                    request = op.throw(exc)
                else:
                    request = op.send(answer)
        except StopIteration as done:
            result: T = done.value
            return result
        finally:
            op.close()

    # -- state --------------------------------------------------------------

    @property
    def core(self) -> ClientCore:
        """The I/O-free client this one drives."""
        return self._core

    @property
    def sock(self) -> socket.socket | None:
        """The socket (an :class:`ssl.SSLSocket` once TLS is on), or ``None``
        once closed."""
        return self._sock

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

    # -- commands -------------------------------------------------------------

    def capabilities(self, *, refresh: bool = False) -> pop3proto.Capabilities:
        """The server's capabilities (CAPA, cached; RFC 2449 §5)."""
        return self._run(self._core.capabilities(refresh=refresh))

    def login(
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
        return self._run(
            self._core.login(user, password, mechanism=mechanism, allow_insecure=allow_insecure)
        )

    def login_oauth2(
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
        return self._run(
            self._core.login_oauth2(user, token, mechanism=mechanism, allow_insecure=allow_insecure)
        )

    def authenticate(
        self, mechanism: pop3proto.SaslClientMechanism, *, allow_insecure: bool = False
    ) -> None:
        """Log in with a SASL mechanism object (e.g. ``XOAuth2Client``)."""
        self._run(self._core.authenticate(mechanism, allow_insecure=allow_insecure))

    def stat(self) -> MailboxStatus:
        """STAT: message count and total size."""
        return self._run(self._core.stat())

    def list(self) -> dict[int, int]:
        """LIST: message number -> size in octets."""
        return self._run(self._core.list())

    def listing(self, *, uids: bool = True, status: bool = False) -> Listing:
        """LIST, and UIDL and STAT if asked, in one round trip with
        PIPELINING (see :meth:`ClientCore.listing`)."""
        return self._run(self._core.listing(uids=uids, status=status))

    def size(self, number: int) -> int:
        """``LIST n``: one message's size in octets."""
        return self._run(self._core.size(number))

    def uidl(self) -> dict[int, str]:
        """UIDL: message number -> unique-id."""
        return self._run(self._core.uidl())

    def uid(self, number: int) -> str:
        """``UIDL n``: one message's unique-id."""
        return self._run(self._core.uid(number))

    def retrieve(self, number: int) -> bytes:
        """RETR: the message, byte for byte as stored (dot-unstuffed)."""
        buffer = bytearray()
        self._run(self._core.retrieve(number), buffer.extend)
        return bytes(buffer)

    def retrieve_into(self, number: int, fileobj: IO[bytes]) -> int:
        """RETR streamed into *fileobj* (anything with ``write(bytes)``);
        return the octets written.  Memory stays bounded by the receive
        size, however large the message."""
        return self._run(self._core.retrieve(number), fileobj.write)

    def retrieve_many(
        self, numbers: Iterable[int], *, window: int | None = None
    ) -> Iterator[tuple[int, bytes]]:
        """Yield ``(number, message)`` for each of *numbers*, in order.

        Pipelined when the server advertises PIPELINING (at most *window*
        RETRs in flight, default the client's), one at a time otherwise.  A
        ``-ERR`` for a message raises (ending the iteration); leaving the
        loop early is fine: the replies still owed are read and dropped by
        the next command.  Other commands may be used inside the loop (see
        :class:`~pop3proto.adapters.client._batch.RetrieveBatch` for the cost).
        """
        batch = self._core.retrieve_many(numbers, window=window)
        try:
            while True:
                # Replies already received need no request round trips.
                sock = self._sock
                if sock is not None:
                    ready = batch.take_all_buffered()
                    if ready:
                        for item in ready:
                            yield item
                            if self._sock is None:
                                break  # closed meanwhile: hand out no more
                        continue
                if sock is not None and batch.wants_bytes():
                    batch.feed(sock.recv(_BULK_RECV))
                    continue
                pieces: list[bytes] = []
                number = self._run(batch.next(), pieces.append)
                if number is None:
                    return
                # Usually one piece: no copy then.
                yield number, pieces[0] if len(pieces) == 1 else b"".join(pieces)
        finally:
            batch.abandon()

    def retrieve_many_into(
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
        never empty).  Returns how many messages were delivered.
        """
        batch = self._core.retrieve_many(numbers, window=window)
        count = 0
        try:
            while True:
                ready = batch.take_buffered() if self._sock is not None else None
                if ready is not None:
                    number, data = ready
                    if data:
                        sink(number, data)
                else:
                    done = self._run(batch.next(), lambda data: sink(batch.current or 0, data))
                    if done is None:
                        return count
                    number = done
                sink(number, b"")
                count += 1
        finally:
            batch.abandon()

    def top(self, number: int, lines: int) -> bytes:
        """TOP: the headers and the first *lines* body lines."""
        buffer = bytearray()
        self._run(self._core.top(number, lines), buffer.extend)
        return bytes(buffer)

    def delete(self, number: int) -> None:
        """DELE: mark a message deleted (removed at :meth:`quit`)."""
        self._run(self._core.delete(number))

    def delete_many(self, numbers: Iterable[int], *, window: int | None = None) -> None:
        """DELE several messages, pipelined when possible."""
        self._run(self._core.delete_many(numbers, window=window))

    def reset(self) -> None:
        """RSET: unmark every message marked deleted."""
        self._run(self._core.reset())

    def noop(self) -> None:
        """NOOP: keep the session alive."""
        self._run(self._core.noop())

    def utf8(self) -> None:
        """UTF8 (RFC 6856): switch to UTF-8 mode before logging in."""
        self._run(self._core.utf8())

    def quit(self) -> bool:
        """QUIT and close; return whether deletions were committed.

        Raises :class:`ConnectionLost` with ``outcome_unknown=True`` if the
        server closed before replying.
        """
        try:
            return self._run(self._core.quit())
        finally:
            self.close()

    def close(self) -> None:
        """Close the connection without QUIT: nothing is deleted."""
        sock, self._sock = self._sock, None
        if sock is None:
            return
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # the server may have closed first
        finally:
            sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if (
            exc_type is None
            and self._sock is not None
            and self._core.state in (State.AUTHORIZATION, State.USER_OK, State.TRANSACTION)
        ):
            if self._core.marked:
                self.quit()
                return
            try:
                self._run(self._core.quit_without_reply())
            finally:
                self.close()
            return
        self.close()

    def __repr__(self) -> str:
        status = "closed" if self._sock is None else self._core.state.name
        tls = " tls" if self._sock is not None and self.tls else ""
        return f"<Client {self.host}:{self.port} {status}{tls}>"

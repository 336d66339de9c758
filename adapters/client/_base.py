"""One client session's state, and the plumbing every operation stands on.

:class:`CoreBase` is the part of :class:`~._core.ClientCore` that the
other parts need: the engine connection and the session state; reading the
next event (end of stream becomes :class:`ConnectionLost`, a malformed reply
:class:`ProtocolViolation`); sending commands (a failed send ends the
session, RFC 2449 §6.6 needs replies matched to commands); settling the
replies that abandoned operations still owe; streaming a message body as
:class:`~.._seam.Deliver` requests; and the session-setup operations
(greeting, CAPA, STLS) that logging in and retrieving both rely on.  The
login strategy (:mod:`._login`), the pipelined batch (:mod:`._batch`) and
the TRANSACTION commands (:mod:`._core`) build on it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Final, Protocol

import pop3proto
from pop3proto import State

from .._seam import Deliver, Operation, Receive, Send, StartTLS
from ._errors import ConnectionLost, POP3Error, ProtocolViolation, TLSUnavailable, raise_for_err

__all__ = [
    "CoreBase",
    "PendingBatch",
    "is_loopback",
    "check_number",
    "build_command",
    "DEFAULT_WINDOW",
    "MAX_WINDOW",
    "WINDOW_BYTES",
    "ASSUMED_SIZE",
]

#: How many commands :meth:`ClientCore.retrieve_many` and ``delete_many``
#: keep unanswered when the server advertises PIPELINING.  Commands are
#: tiny (1,024 RETRs are about 13 KB, within any socket buffer), so the
#: count is generous and :data:`WINDOW_BYTES` is what bounds a batch.
DEFAULT_WINDOW: Final = 1024
#: The largest window accepted (a larger one is lowered to it).
MAX_WINDOW: Final = 1024
#: How many octets of replies :meth:`ClientCore.retrieve_many` keeps owed,
#: by the LIST sizes: a mailbox of small messages goes out in one burst, one
#: of large messages stays bounded (it is also the most a batch holds in
#: memory when another command must read the replies in flight first).
WINDOW_BYTES: Final = 4 << 20
#: The size a message counts for when no LIST told it: 64 in flight.
ASSUMED_SIZE: Final = 64 << 10

# A refused Connection.send puts the engine in the ERROR state for good, and
# calling stat() before login() should not cost the caller the connection, so
# the core asks Connection.can_send first, with a stand-in event of the
# command it is about to send when it does not hold the real one yet.
_PROBES: Final[dict[str, pop3proto.Command]] = {
    "USER": pop3proto.User("probe"),
    "AUTH": pop3proto.Auth("PLAIN"),
    "CAPA": pop3proto.Capa(),
    "STLS": pop3proto.Stls(),
    "DELE": pop3proto.Dele(1),
    "QUIT": pop3proto.Quit(),
    "RETR": pop3proto.Retr(1),
}

_EMPTY_CAPABILITIES: Final = pop3proto.Capabilities(())


Event = pop3proto.Event


def is_loopback(host: str) -> bool:
    """Whether *host* names this machine: ``localhost`` or a loopback address.

    Used to decide whether a password may cross an unencrypted link: on the
    loopback interface it never leaves the machine.  Host names other than
    ``localhost`` are not resolved (an adapter that knows the peer address
    should pass that instead).
    """
    name = host.strip().rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    try:
        address = ipaddress.ip_address(name.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def check_number(value: object, what: str, minimum: int = 1) -> int:
    """*value*, checked to be an int (not a bool) of at least *minimum*."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{what} must be >= {minimum}, got {value}")
    return value


def build_command(factory: Callable[[], pop3proto.Command]) -> pop3proto.Command:
    """Construct a command, turning the engine's argument checks into ValueError."""
    try:
        return factory()
    except pop3proto.LocalProtocolError as exc:
        # The messages name the field, never its value, so no secret leaks.
        raise ValueError(str(exc)) from None


class PendingBatch(Protocol):
    """What the core asks of a :class:`~._batch.RetrieveBatch` that may
    still have replies in flight when another operation begins.

    A protocol rather than the class itself: the batch module builds on
    this one, so this one does not import it.
    """

    abandoned: bool

    @property
    def in_flight(self) -> bool: ...

    def abandon(self) -> None: ...

    def _settle(self) -> Operation[None]: ...


class CoreBase:
    """The session state, the plumbing and the set-up operations of
    :class:`~._core.ClientCore` (see there for the arguments)."""

    def __init__(
        self,
        host: str = "",
        *,
        tls: bool = False,
        loopback: bool | None = None,
        window: int = DEFAULT_WINDOW,
        max_command_size: int = 255,
    ) -> None:
        check_number(window, "window")
        self.host = host
        self.loopback = is_loopback(host) if loopback is None else loopback
        self.window = min(window, MAX_WINDOW)
        self._max_command = max_command_size
        self._conn = pop3proto.Connection(
            pop3proto.CLIENT, tls=tls, max_command_size=max_command_size
        )
        self._eof = False
        # CAPA answered -ERR since the last TLS start (RFC 2449 §5: probe).
        self._no_capa = False
        # CAPA sent by greet()/starttls() and its reply not read yet.
        self._capa_pending = False
        # A DELE was sent and no RSET has answered +OK since: QUIT commits.
        self._marked = False
        self._batch: PendingBatch | None = None
        # Message sizes from the last LIST (fixed for the session, RFC 1939
        # §5): they size the pipelining window in octets.
        self._sizes: dict[int, int] = {}

    # ------------------------------------------------------------------
    # State
    # ------------------------------------------------------------------

    @property
    def conn(self) -> pop3proto.Connection:
        """The underlying engine connection (read it; do not send on it)."""
        return self._conn

    @property
    def state(self) -> State:
        """The session state (``State.TRANSACTION`` once logged in)."""
        return self._conn.state

    @property
    def greeting(self) -> pop3proto.Greeting | None:
        """The server's greeting, once :meth:`greet` has run."""
        return self._conn.greeting

    @property
    def tls(self) -> bool:
        """Whether the transport is TLS (implicit, or after :meth:`starttls`)."""
        return self._conn.tls

    @property
    def secure(self) -> bool:
        """Whether a password may be sent: TLS is on or the peer is loopback."""
        return self._conn.tls or self.loopback

    @property
    def known_capabilities(self) -> pop3proto.Capabilities | None:
        """The capabilities of the last CAPA reply, without asking; ``None``
        if none was received since the session (or TLS) started."""
        return self._conn.capabilities

    def abort(self) -> None:
        """Mark the session unusable (e.g. after a runner-level failure that
        was not thrown into an operation); every later operation raises."""
        if self._conn.state not in (State.CLOSED, State.ERROR):
            self._conn.send_failed()

    # ------------------------------------------------------------------
    # Plumbing shared by the operations
    # ------------------------------------------------------------------

    def _event(self, command: str) -> Operation[Event | None]:
        """The next event, reading as needed; ``None`` stands for PAUSED."""
        conn = self._conn
        while True:
            try:
                event = conn.next_event()
            except pop3proto.RemoteProtocolError as exc:
                raise self._broken(command, exc) from exc
            if event is pop3proto.NEED_DATA:
                data = yield Receive()
                if not isinstance(data, bytes):
                    raise TypeError("a runner must answer Receive with bytes")
                if not data:
                    self._eof = True
                conn.receive_data(data)
                continue
            if event is pop3proto.PAUSED:
                return None
            assert isinstance(event, pop3proto.Event)
            return event

    def _broken(self, command: str, exc: pop3proto.RemoteProtocolError) -> POP3Error:
        """Our error for a RemoteProtocolError from the engine."""
        if self._eof:
            return ConnectionLost(
                f"{command}: connection closed in the middle of a reply", command=command
            )
        return ProtocolViolation(
            f"{command}: server broke the protocol: {exc}", error=exc, command=command
        )

    def _reply(self, command: str) -> Operation[Event]:
        """The next event, which must exist; EOF becomes ConnectionLost."""
        return self._accept((yield from self._event(command)), command)

    def _accept(self, event: Event | None, command: str) -> Event:
        """*event* as :meth:`_reply` returns it (or raises instead)."""
        if event is None:  # pragma: no cover - the operations never let it happen
            raise RuntimeError(f"{command}: the engine is waiting for the client")
        if isinstance(event, pop3proto.ConnectionClosed):
            raise ConnectionLost(
                f"{command}: the server closed the connection",
                outcome_unknown=event.outcome_unknown,
                command=command,
            )
        return event

    def _send(self, *events: Event) -> Operation[None]:
        try:
            data = self._conn.send_all(events)
        except pop3proto.LocalProtocolError as exc:  # pragma: no cover - _begin asked can_send
            raise ProtocolViolation(f"can't send: {exc}", error=exc) from exc
        try:
            yield Send(data)
        except BaseException:
            # Some of the bytes may have gone out: the peer's view of the
            # session is unknown (RFC 2449 §6.6 needs replies matched to
            # commands), so the session is over.
            self._conn.send_failed()
            raise

    def _begin(
        self,
        keyword: str,
        *,
        batch: PendingBatch | None = None,
        command: pop3proto.Command | None = None,
    ) -> Operation[None]:
        """Get ready to send a command: settle any earlier, abandoned work and
        check that *keyword* may be sent now."""
        if self._capa_pending:
            # The CAPA sent with the greeting is answered first (RFC 2449
            # §6.6 keeps replies in order); the engine records what it says.
            self._check_usable(keyword)
            yield from self._capa_reply()
        current = self._batch
        if current is not None and current is not batch:
            if keyword == "QUIT" or current.abandoned:
                current.abandon()
                self._batch = None
            elif current.in_flight:
                # Another command while RETRs are in flight: its reply comes
                # after theirs (RFC 2449 §6.6), so read those now and keep
                # them for the batch.
                yield from current._settle()
        self._check_usable(keyword)
        yield from self._drain()
        self._check_usable(keyword)
        state = self._conn.state
        probe = command if command is not None else _PROBES[keyword]
        if not self._conn.can_send(probe):
            error = pop3proto.LocalProtocolError(
                f"{keyword} is not allowed in the {state.name} state"
            )
            raise ProtocolViolation(str(error), error=error, command=keyword) from error

    def _check_usable(self, keyword: str) -> None:
        state = self._conn.state
        if state is State.ERROR:
            error = pop3proto.LocalProtocolError("the connection is in the ERROR state")
            raise ProtocolViolation(
                f"{keyword}: the connection can no longer be used", error=error, command=keyword
            ) from error
        if state is State.CLOSED:
            raise ConnectionLost(f"{keyword}: the connection is closed", command=keyword)
        if state is State.AWAIT_GREETING and keyword != "GREETING":
            error = pop3proto.LocalProtocolError("the greeting has not been read yet")
            raise ProtocolViolation(
                f"{keyword}: call greet() first", error=error, command=keyword
            ) from error

    def _drain(self) -> Operation[None]:
        """Read and discard replies still owed for commands whose operation
        was abandoned (a timeout, a failing sink, a batch not iterated to
        its end), so that the next reply is ours."""
        conn = self._conn
        while conn.outstanding:
            event = yield from self._event("draining earlier replies")
            if event is None:
                # The engine waits for us with replies owed only in an AUTH
                # exchange left half-way (after +OK to STLS nothing is owed,
                # and STLS cannot be pipelined).  RFC 5034 §4: "*" cancels;
                # the server answers -ERR.
                yield from self._send(pop3proto.SaslCancel())
                continue
            if isinstance(event, pop3proto.ConnectionClosed):
                return

    def _simple(
        self, command: pop3proto.Command, label: str, *, login: bool = False
    ) -> Operation[Event]:
        """Send one command and return its final, positive reply."""
        yield from self._begin(command.keyword, command=command)
        yield from self._send(command)
        event = yield from self._reply(label)
        if isinstance(event, pop3proto.Err):
            raise_for_err(event, label, login=login)
        return event

    def _stream(self, label: str) -> Operation[int]:
        total = 0
        next_event = self._conn.next_event
        while True:
            # Straight from the engine while it has events (with pipelined
            # replies it usually does); through _reply, which reads and
            # turns errors into ours, only when it needs more.
            try:
                event = next_event()
            except pop3proto.RemoteProtocolError as exc:  # pragma: no cover - see below
                # A body breaks only at EOF, and EOF is read (and reported)
                # by _event; kept so that an engine error is never raw.
                raise self._broken(label, exc) from exc
            if event is pop3proto.NEED_DATA:
                event = yield from self._reply(label)
            if isinstance(event, pop3proto.MessageData):
                # The engine emits no empty piece; the check keeps a sink
                # from ever seeing b"".
                if event.data:  # pragma: no branch
                    total += len(event.data)
                    yield Deliver(event.data)
                continue
            assert isinstance(event, pop3proto.MessageEnd), event
            return total

    # ------------------------------------------------------------------
    # Operations: session setup
    # ------------------------------------------------------------------

    def greet(self, *, capa: bool = False) -> Operation[pop3proto.Greeting]:
        """Read the server's greeting (RFC 1939 §4).

        A negative greeting is raised through :func:`raise_for_err` (e.g.
        ``-ERR [SYS/TEMP]`` -> :class:`TemporaryFailure`); EOF before it is
        :class:`ConnectionLost`.

        With *capa*, CAPA is sent the moment the greeting is read, and its
        reply is read by the next operation (:meth:`capabilities`, or any
        other first): every client asks it before logging in, and this way
        the question is on the wire before the caller's next step.  It is
        a single command, not a pipeline: nothing is known yet of
        PIPELINING (RFC 2449 §6.6).
        """
        self._check_usable("GREETING")
        if self._conn.state is not State.AWAIT_GREETING:
            raise RuntimeError("the greeting was already read")
        event = yield from self._reply("greeting")
        if isinstance(event, pop3proto.Err):
            raise_for_err(event, "greeting")
        assert isinstance(event, pop3proto.Greeting)
        if capa:
            yield from self._ask_capabilities()
        return event

    def _ask_capabilities(self) -> Operation[None]:
        """Send CAPA without waiting: :meth:`_capa_reply` reads the reply."""
        yield from self._begin("CAPA")
        yield from self._send(pop3proto.Capa())
        self._capa_pending = True

    def _capa_reply(self) -> Operation[pop3proto.Capabilities]:
        """Read the reply to a CAPA sent ahead."""
        event = yield from self._reply("CAPA")
        self._capa_pending = False
        if isinstance(event, pop3proto.Err):
            self._no_capa = True
            return _EMPTY_CAPABILITIES
        assert isinstance(event, pop3proto.CapaOk)
        self._no_capa = False
        return event.capabilities

    def capabilities(self, *, refresh: bool = False) -> Operation[pop3proto.Capabilities]:
        """The server's capabilities (RFC 2449 §5), asking CAPA if needed.

        The answer is cached until TLS starts (RFC 2595 §4 forgets it) or
        *refresh* is true (RFC 2449 §5: they may change after login).  A
        server that answers CAPA with ``-ERR`` has none to tell: an empty
        :class:`pop3proto.Capabilities` is returned and CAPA is not asked
        again (unless *refresh*).
        """
        if self._capa_pending:
            # Asked with the greeting (or after TLS): as fresh as can be.
            self._check_usable("CAPA")
            return (yield from self._capa_reply())
        if not refresh:
            known = self._conn.capabilities
            if known is not None:
                return known
            if self._no_capa:
                return _EMPTY_CAPABILITIES
        yield from self._ask_capabilities()
        return (yield from self._capa_reply())

    def starttls(self, *, capa: bool = False) -> Operation[None]:
        """Upgrade the connection with STLS (RFC 2595 §4).

        Sends STLS, and on ``+OK`` yields :class:`StartTLS` for the runner to
        do the handshake.  Bytes that arrive between the ``+OK`` and the
        handshake are an injection attempt and raise
        :class:`ProtocolViolation`.  Cached capabilities are forgotten; the
        next :meth:`capabilities` asks again (STLS often unlocks PLAIN or
        USER).  ``-ERR`` raises :class:`TLSUnavailable`.  With *capa*, CAPA
        is sent again as soon as TLS is up, as :meth:`greet` does.
        """
        if self._conn.tls:
            raise TLSUnavailable("TLS is already active", command="STLS")
        if self._conn.utf8:
            # RFC 6856 §2.1: clients MUST NOT send STLS after UTF8.
            raise TLSUnavailable("STLS is not allowed after UTF8", command="STLS")
        yield from self._begin("STLS")
        yield from self._send(pop3proto.Stls())
        event = yield from self._reply("STLS")
        if isinstance(event, pop3proto.Err):
            code = f"[{event.code}] " if event.code is not None else ""
            raise TLSUnavailable(
                f"the server refused STLS: -ERR {code}{event.text}".rstrip(),
                response=event,
                command="STLS",
            )
        # The engine is now TLS_PENDING; asking for an event runs its check
        # that nothing followed the +OK (RFC 2595 §4, response injection).
        paused = yield from self._event("STLS")
        if paused is not None:  # pragma: no cover - the engine raises instead
            raise RuntimeError("unexpected event before TLS started")
        try:
            yield StartTLS()
        except BaseException:
            # The handshake failed or was abandoned half-way: the transport
            # is in an unknown state (RFC 2595 §4 says close).
            self.abort()
            raise
        try:
            self._conn.tls_established()
        except pop3proto.ProtocolError as exc:  # pragma: no cover - checked by _event above
            # The engine is TLS_PENDING with nothing buffered (the injection
            # check ran), and only we feed it; kept so its error is never raw.
            raise ProtocolViolation(f"STLS: {exc}", error=exc, command="STLS") from exc
        self._no_capa = False
        if capa:
            yield from self._ask_capabilities()

"""The I/O-free POP3 client shared by the blocking, asyncio and trio clients.

:class:`ClientCore` holds one client-role :class:`pop3proto.Connection` and
offers every client action as an *operation*: a generator that yields the
requests of :mod:`._io` (:class:`~._io.Send`, :class:`~._io.Receive`,
:class:`~._io.StartTLS`, :class:`~._io.Deliver`) and returns the typed result.
What the client *does* (choosing a login method, refusing to leak a password,
pipelining a batch of RETRs within a window, mapping ``-ERR`` replies to
exceptions) is written once, here; an adapter only performs the requests.

Writing a runner
----------------
A runner drives one operation to completion with its own I/O::

    def run(op, sink=None):
        try:
            request = op.send(None)
            while True:
                try:
                    answer = perform(request, sink)
                except BaseException as exc:
                    # Throw failures back in: the core then knows whether
                    # the session is still in step (a failed Send or
                    # StartTLS breaks it, a timed-out Receive or a failing
                    # sink does not).  Operations re-raise it.
                    request = op.throw(exc)
                    continue
                request = op.send(answer)
        except StopIteration as done:
            return done.value                  # the operation's result

    def perform(request, sink):
        if isinstance(request, Send):
            sock.sendall(request.data)
        elif isinstance(request, Receive):
            return sock.recv(65536)            # b"" at end of stream
        elif isinstance(request, StartTLS):
            sock = ctx.wrap_socket(sock, server_hostname=core.host)
        else:  # Deliver: message octets for the caller's sink
            sink(request.data)
        return None

An asyncio or trio runner is the same loop with ``await`` in ``perform``
(``writer.write`` + ``drain``, ``reader.read``, ``start_tls``; or
``send_all``, ``receive_some``, ``trio.SSLStream``).  Streaming operations
(:meth:`ClientCore.retrieve`, :meth:`ClientCore.top`,
:meth:`RetrieveBatch.next`) are the only ones that yield ``Deliver``.

The rules a runner must keep:

* Answer :class:`~._io.Receive` with the bytes read (any amount, at least
  one octet) or ``b""`` at end of stream, and every other request with
  ``None``.
* :class:`~._io.Send` means "write all of it"; commands are tiny and the
  core never has more than *window* of them unanswered, so a blocking write
  cannot deadlock against a server that is blocked writing replies
  (RFC 2449 §6.6).
* If performing a request raises (timeout, reset, cancellation, a sink that
  fails), throw the exception into the operation with ``op.throw(exc)``.
  If a runner abandons an operation instead, it should ``op.close()`` it;
  either way the core recovers: replies still owed are read and discarded
  by the next operation.
* Exceptions that operations raise are those of :mod:`._errors`, plus
  :class:`ValueError` / :class:`TypeError` for bad arguments (raised before
  anything is sent) and :class:`RuntimeError` for using the client while a
  :meth:`ClientCore.retrieve_many` batch is in flight.

Operations never run concurrently on one core: run one to completion (or
abandon it) before starting the next.
"""

from __future__ import annotations

import ipaddress
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final, NoReturn

import pop3proto
from pop3proto import State

from ._errors import (
    AuthenticationFailed,
    CommandFailed,
    ConnectionLost,
    InsecureAuthenticationRefused,
    LoginDelay,
    MailboxInUse,
    PermanentFailure,
    POP3Error,
    ProtocolViolation,
    TemporaryFailure,
    TLSUnavailable,
)
from ._seam import Deliver, Operation, Receive, Send, StartTLS

__all__ = [
    "ClientCore",
    "RetrieveBatch",
    "MailboxStatus",
    "raise_for_err",
    "is_loopback",
    "DEFAULT_WINDOW",
    "LOGIN_PREFERENCE",
    "SAFE_WITHOUT_TLS",
]

#: How many RETR commands :meth:`ClientCore.retrieve_many` keeps unanswered
#: when the server advertises PIPELINING.
DEFAULT_WINDOW: Final = 64
_MAX_WINDOW: Final = 1024

#: Login methods, strongest first, as :meth:`ClientCore.login` tries them
#: (SASL names; then ``"APOP"`` and ``"USER"``).
LOGIN_PREFERENCE: Final = ("SCRAM-SHA-256", "SCRAM-SHA-1", "CRAM-MD5", "PLAIN", "LOGIN")

#: Methods that may run on an unencrypted link to a remote host: neither the
#: password nor anything an active attacker can turn into it goes on the
#: wire.  PLAIN, LOGIN and USER/PASS send the password itself; APOP's
#: MD5(timestamp + password) lets a man in the middle who picks the timestamp
#: recover the password (Leurent 2007, which is why fetchmail checks APOP
#: timestamps); bearer tokens (XOAUTH2, OAUTHBEARER) are passwords too.
#: CRAM-MD5 (an HMAC) and SCRAM only expose a passive eavesdropper to an
#: offline dictionary attack.
SAFE_WITHOUT_TLS: Final = frozenset({"SCRAM-SHA-256", "SCRAM-SHA-1", "CRAM-MD5"})

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


@dataclass(frozen=True, slots=True)
class MailboxStatus:
    """The reply to STAT (RFC 1939 §5): messages not marked deleted.

    Attributes:
        count: how many messages the maildrop holds.
        size: their total size in octets (as the server counts it; RFC
            6856 §2.1 lets it be approximate).
    """

    count: int
    size: int


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


def raise_for_err(err: pop3proto.Err, command: str, *, login: bool = False) -> NoReturn:
    """Raise the :mod:`._errors` exception for a ``-ERR`` reply to *command*.

    The extended response code decides (RFC 2449 §8: unknown lower levels are
    ignored, so ``[SYS/TEMP/X]`` is ``[SYS/TEMP]``): ``IN-USE`` ->
    :class:`MailboxInUse`, ``LOGIN-DELAY`` -> :class:`LoginDelay`,
    ``SYS/TEMP`` -> :class:`TemporaryFailure`, ``SYS/PERM`` ->
    :class:`PermanentFailure`, ``AUTH`` -> :class:`AuthenticationFailed`.
    Without one of those, a reply to a login command (*login* true) is an
    :class:`AuthenticationFailed` and anything else a :class:`CommandFailed`.

    *command* names what failed in the message (``"RETR 3"``, ``"PASS"``);
    it must not contain secrets.
    """
    known = err.code.known if err.code is not None else None
    cls: type[POP3Error]
    if known == "IN-USE":
        cls = MailboxInUse
    elif known == "LOGIN-DELAY":
        cls = LoginDelay
    elif known == "SYS/TEMP":
        cls = TemporaryFailure
    elif known == "SYS/PERM":
        cls = PermanentFailure
    elif known == "AUTH" or login:
        cls = AuthenticationFailed
    else:
        cls = CommandFailed
    code = f"[{err.code}] " if err.code is not None else ""
    raise cls(f"{command} failed: -ERR {code}{err.text}".rstrip(), response=err, command=command)


def _check_number(value: object, what: str, minimum: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{what} must be >= {minimum}, got {value}")
    return value


def _build(factory: Callable[[], pop3proto.Command]) -> pop3proto.Command:
    """Construct a command, turning the engine's argument checks into ValueError."""
    try:
        return factory()
    except pop3proto.LocalProtocolError as exc:
        # The messages name the field, never its value, so no secret leaks.
        raise ValueError(str(exc)) from None


class ClientCore:
    """One POP3 client session, without I/O.

    Args:
        host: the server's name, used for the TLS ``server_hostname`` by
            runners and, unless *loopback* is given, to decide whether the
            link stays on this machine.
        tls: the transport is already TLS (implicit TLS, RFC 8314 §3).
        loopback: whether the peer is on a loopback address; ``None`` means
            :func:`is_loopback` of *host*.  Adapters that know the connected
            peer address should pass the verdict for that address.
        window: the default number of unanswered RETRs in
            :meth:`retrieve_many` when the server advertises PIPELINING.
        max_command_size: the longest command line sent (RFC 2449 §4: 255).

    Every ``-ERR`` that ends an operation is raised through
    :func:`raise_for_err`.  Operations check the session state before
    sending, so calling one at the wrong time raises
    :class:`ProtocolViolation` (wrapping a :class:`pop3proto.LocalProtocolError`)
    and leaves the session usable.
    """

    def __init__(
        self,
        host: str = "",
        *,
        tls: bool = False,
        loopback: bool | None = None,
        window: int = DEFAULT_WINDOW,
        max_command_size: int = 255,
    ) -> None:
        _check_number(window, "window")
        self.host = host
        self.loopback = is_loopback(host) if loopback is None else loopback
        self.window = min(window, _MAX_WINDOW)
        self._max_command = max_command_size
        self._conn = pop3proto.Connection(
            pop3proto.CLIENT, tls=tls, max_command_size=max_command_size
        )
        self._eof = False
        # CAPA answered -ERR since the last TLS start (RFC 2449 §5: probe).
        self._no_capa = False
        self._batch: RetrieveBatch | None = None

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
            data = b"".join(self._conn.send(event) for event in events)
        except pop3proto.LocalProtocolError as exc:
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
        batch: RetrieveBatch | None = None,
        command: pop3proto.Command | None = None,
    ) -> Operation[None]:
        """Get ready to send a command: settle any earlier, abandoned work and
        check that *keyword* may be sent now."""
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
                if conn.state is State.SASL:
                    # RFC 5034 §4: "*" cancels; the server answers -ERR.
                    yield from self._send(pop3proto.SaslCancel())
                    continue
                # TLS_PENDING: the handshake was abandoned; nothing sane remains.
                self.abort()
                error = pop3proto.LocalProtocolError("STLS was accepted but TLS never started")
                raise ProtocolViolation(str(error), error=error)
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

    # ------------------------------------------------------------------
    # Operations: session setup
    # ------------------------------------------------------------------

    def greet(self) -> Operation[pop3proto.Greeting]:
        """Read the server's greeting (RFC 1939 §4).

        A negative greeting is raised through :func:`raise_for_err` (e.g.
        ``-ERR [SYS/TEMP]`` -> :class:`TemporaryFailure`); EOF before it is
        :class:`ConnectionLost`.
        """
        self._check_usable("GREETING")
        if self._conn.state is not State.AWAIT_GREETING:
            raise RuntimeError("the greeting was already read")
        event = yield from self._reply("greeting")
        if isinstance(event, pop3proto.Err):
            raise_for_err(event, "greeting")
        assert isinstance(event, pop3proto.Greeting)
        return event

    def capabilities(self, *, refresh: bool = False) -> Operation[pop3proto.Capabilities]:
        """The server's capabilities (RFC 2449 §5), asking CAPA if needed.

        The answer is cached until TLS starts (RFC 2595 §4 forgets it) or
        *refresh* is true (RFC 2449 §5: they may change after login).  A
        server that answers CAPA with ``-ERR`` has none to tell: an empty
        :class:`pop3proto.Capabilities` is returned and CAPA is not asked
        again (unless *refresh*).
        """
        if not refresh:
            known = self._conn.capabilities
            if known is not None:
                return known
            if self._no_capa:
                return _EMPTY_CAPABILITIES
        yield from self._begin("CAPA")
        yield from self._send(pop3proto.Capa())
        event = yield from self._reply("CAPA")
        if isinstance(event, pop3proto.Err):
            self._no_capa = True
            return _EMPTY_CAPABILITIES
        assert isinstance(event, pop3proto.CapaOk)
        self._no_capa = False
        return event.capabilities

    def starttls(self) -> Operation[None]:
        """Upgrade the connection with STLS (RFC 2595 §4).

        Sends STLS, and on ``+OK`` yields :class:`StartTLS` for the runner to
        do the handshake.  Bytes that arrive between the ``+OK`` and the
        handshake are an injection attempt and raise
        :class:`ProtocolViolation`.  Cached capabilities are forgotten; the
        next :meth:`capabilities` asks again (STLS often unlocks PLAIN or
        USER).  ``-ERR`` raises :class:`TLSUnavailable`.
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
        except pop3proto.ProtocolError as exc:
            raise ProtocolViolation(f"STLS: {exc}", error=exc, command="STLS") from exc
        self._no_capa = False

    # ------------------------------------------------------------------
    # Operations: logging in
    # ------------------------------------------------------------------

    def login_methods(
        self, capabilities: pop3proto.Capabilities, *, allow_insecure: bool = False
    ) -> list[str]:
        """The methods :meth:`login` would try, strongest first.

        SASL mechanisms the server advertises, in :data:`LOGIN_PREFERENCE`
        order; then ``"APOP"`` if the greeting carries a timestamp
        (RFC 1939 §7); then ``"USER"`` if advertised, if CAPA told nothing,
        or as the last resort.  Unless the link is :attr:`secure` or
        *allow_insecure* is true, only :data:`SAFE_WITHOUT_TLS` methods
        remain.  Pure: sends nothing.
        """
        offered = capabilities.sasl
        methods: list[str] = [name for name in LOGIN_PREFERENCE if name in offered]
        greeting = self._conn.greeting
        if greeting is not None and greeting.timestamp is not None:
            methods.append("APOP")
        if capabilities.user or not capabilities.entries or not methods:
            methods.append("USER")
        if not (self.secure or allow_insecure):
            methods = [name for name in methods if name in SAFE_WITHOUT_TLS]
        return methods

    def login(
        self,
        user: str,
        password: str,
        *,
        mechanism: str | None = None,
        allow_insecure: bool = False,
    ) -> Operation[str]:
        """Log in with the strongest method the server offers; return its name.

        Asks CAPA first if the capabilities are not known.  The order is
        :data:`LOGIN_PREFERENCE` (SCRAM-SHA-256, SCRAM-SHA-1, CRAM-MD5,
        PLAIN, LOGIN), then APOP, then USER/PASS; see :meth:`login_methods`.
        *mechanism* (``"USER"``, ``"APOP"`` or a SASL name) forces one
        method, advertised or not.

        Without TLS to a host that is not loopback, methods that expose the
        password (PLAIN, LOGIN, USER/PASS, and APOP, whose MD5 digest an
        active attacker can break) are refused with
        :class:`InsecureAuthenticationRefused` before anything is sent,
        unless *allow_insecure* is true (RFC 2595 §2.3, RFC 8314 §5).

        If a method fails with a plain ``-ERR`` (no response code: perhaps
        the mechanism is not set up for this account), the next one is
        tried.  A reply with a code ends the attempt at once: ``[AUTH]``
        means the credentials themselves are wrong (RFC 3206 §5), so trying
        them again elsewhere only adds failed logins; ``[IN-USE]``,
        ``[LOGIN-DELAY]`` and ``[SYS/...]`` are raised as their own classes.
        A SASL server that fails to prove itself (SCRAM) also ends it.
        """
        if not isinstance(user, str) or not isinstance(password, str):
            raise TypeError("user and password must be str")
        if not user or not password:
            raise ValueError("user and password must not be empty")
        if self._conn.state is not State.AUTHORIZATION:
            yield from self._begin("USER")  # raises the right error
        capabilities = yield from self.capabilities()
        if mechanism is not None:
            method = mechanism.upper()
            if method not in ("USER", "APOP", *LOGIN_PREFERENCE):
                raise ValueError(
                    f"unknown login method {mechanism!r}; use authenticate() for other SASL "
                    "mechanisms"
                )
            if not (self.secure or allow_insecure or method in SAFE_WITHOUT_TLS):
                raise InsecureAuthenticationRefused(
                    f"{method} would expose the password on an unencrypted link to "
                    f"{self.host or 'the server'}; use TLS or pass allow_insecure=True",
                    command="login",
                )
            methods = [method]
        else:
            methods = self.login_methods(capabilities, allow_insecure=allow_insecure)
            if not methods:
                offered = self.login_methods(capabilities, allow_insecure=True)
                raise InsecureAuthenticationRefused(
                    "every login method the server offers ("
                    + ", ".join(offered)
                    + ") would expose the password on an unencrypted link to "
                    f"{self.host or 'the server'}; use TLS or pass allow_insecure=True",
                    command="login",
                )
        failure: AuthenticationFailed | None = None
        for method in methods:
            if failure is not None and self._conn.state is not State.AUTHORIZATION:
                raise failure
            try:
                if method == "USER":
                    yield from self._user_pass(user, password)
                elif method == "APOP":
                    yield from self._apop(user, password)
                else:
                    cls = pop3proto.CLIENT_MECHANISMS[method]
                    mech = cls(user, password)  # type: ignore[call-arg]
                    yield from self._sasl(mech, capabilities)
            except ConnectionLost as exc:
                if failure is not None:
                    # RFC 1939 §4: the server may close after a failed login.
                    raise failure from exc
                raise
            except AuthenticationFailed as exc:
                if exc.response is None or exc.code is not None or len(methods) == 1:
                    raise
                failure = exc
                continue
            return method
        assert failure is not None
        raise failure

    def authenticate(
        self, mechanism: pop3proto.SaslClientMechanism, *, allow_insecure: bool = False
    ) -> Operation[None]:
        """Log in with a ready-made SASL mechanism object (RFC 5034), e.g.
        :class:`pop3proto.XOAuth2Client` with an OAuth token.

        Only :data:`SAFE_WITHOUT_TLS` mechanisms run on an unencrypted link to
        a remote host unless *allow_insecure* is true.  The initial response
        goes on the AUTH line when the server advertised SASL and it fits in
        the command limit (RFC 5034 §4), else after the server's empty
        challenge.
        """
        if not (self.secure or allow_insecure or mechanism.name in SAFE_WITHOUT_TLS):
            raise InsecureAuthenticationRefused(
                f"{mechanism.name} would expose credentials on an unencrypted link to "
                f"{self.host or 'the server'}; use TLS or pass allow_insecure=True",
                command="login",
            )
        if self._conn.state is not State.AUTHORIZATION:
            yield from self._begin("AUTH")
        capabilities = yield from self.capabilities()
        yield from self._sasl(mechanism, capabilities)

    def _sasl(
        self, mech: pop3proto.SaslClientMechanism, capabilities: pop3proto.Capabilities
    ) -> Operation[None]:
        label = f"AUTH {mech.name}"
        yield from self._begin("AUTH")
        initial: bytes | None = None
        # RFC 5034 §4: an initial response only if SASL was advertised, and
        # only if the AUTH line stays within the command limit.
        if "SASL" in capabilities:
            initial = mech.initial_response()
            if initial is not None and not pop3proto.fits_initial_response(
                mech.name, initial, self._max_command
            ):
                initial = None
        yield from self._send(pop3proto.Auth(mech.name, initial))
        distrust: str | None = None
        while True:
            event = yield from self._event(label)
            if isinstance(event, pop3proto.SaslChallenge):
                try:
                    answer = mech.respond(event.data)
                except pop3proto.SaslError as exc:
                    distrust = str(exc)
                    yield from self._send(pop3proto.SaslCancel())
                    continue
                yield from self._send(pop3proto.SaslResponse(answer))
                continue
            if isinstance(event, pop3proto.Ok):
                if distrust is None and mech.complete:
                    return
                # +OK although the mechanism is not done (e.g. SCRAM without
                # the server signature): the server did not prove itself, so
                # the session must not be used (RFC 5802 §5.1).
                self.abort()
                raise AuthenticationFailed(
                    f"{label}: the server reported success without completing the exchange"
                    + (f" ({distrust})" if distrust else ""),
                    command=label,
                )
            if isinstance(event, pop3proto.Err):
                if distrust is not None:
                    # No response attached: the -ERR only answers our "*",
                    # and login() must not fall back to a weaker method for
                    # a server that failed to prove itself.
                    raise AuthenticationFailed(
                        f"{label}: the server failed verification: {distrust}", command=label
                    )
                raise_for_err(event, label, login=True)
            if isinstance(event, pop3proto.ConnectionClosed):
                # Only after an earlier failed login (the engine reports EOF
                # with AUTH unanswered as an error otherwise); login() turns
                # it into that failure.
                raise ConnectionLost(f"{label}: the server closed the connection", command=label)
            raise ProtocolViolation(  # pragma: no cover - the engine frames AUTH replies
                f"{label}: unexpected {type(event).__name__}",
                error=pop3proto.RemoteProtocolError("unexpected event"),
                command=label,
            )

    def _check_credential(self, keyword: str, value: str, what: str) -> None:
        if len(keyword) + 1 + len(value.encode("utf-8")) + 2 > self._max_command:
            raise ValueError(
                f"the {what} is too long for the {self._max_command}-octet command limit "
                "(RFC 2449 §4)"
            )

    def _ensure_utf8_credentials(self, *values: str) -> Operation[None]:
        """RFC 6856 §2.2: non-ASCII user names and passwords only after UTF8
        or with ``UTF8 USER``; switch UTF8 on if the server offers it."""
        if all(v.isascii() for v in values) or self._conn.utf8:
            return
        caps = self._conn.capabilities
        if caps is not None and caps.utf8_user:
            return
        if caps is not None and caps.utf8:
            yield from self._simple(pop3proto.Utf8(), "UTF8")
            return
        raise ValueError(
            "non-ASCII user names and passwords need a server that offers UTF8 (RFC 6856 §2.2)"
        )

    def _user_pass(self, user: str, password: str) -> Operation[None]:
        self._check_credential("USER", user, "user name")
        self._check_credential("PASS", password, "password")
        command = _build(lambda: pop3proto.User(user))
        _build(lambda: pop3proto.Pass(password))
        yield from self._ensure_utf8_credentials(user, password)
        yield from self._simple(command, "USER", login=True)
        yield from self._simple(pop3proto.Pass(password), "PASS", login=True)

    def _apop(self, user: str, password: str) -> Operation[None]:
        greeting = self._conn.greeting
        timestamp = greeting.timestamp if greeting is not None else None
        if timestamp is None:
            raise AuthenticationFailed(
                "APOP: the greeting carries no timestamp (RFC 1939 §7)", command="APOP"
            )
        digest = pop3proto.apop_digest(timestamp, password)
        self._check_credential("APOP", f"{user} {digest}", "user name")
        command = _build(lambda: pop3proto.Apop(user, digest))
        yield from self._ensure_utf8_credentials(user)
        yield from self._simple(command, "APOP", login=True)

    # ------------------------------------------------------------------
    # Operations: TRANSACTION
    # ------------------------------------------------------------------

    def stat(self) -> Operation[MailboxStatus]:
        """STAT (RFC 1939 §5): the count and total size of the messages."""
        event = yield from self._simple(pop3proto.Stat(), "STAT")
        assert isinstance(event, pop3proto.StatOk)
        return MailboxStatus(event.count, event.size)

    def list(self) -> Operation[dict[int, int]]:
        """LIST (RFC 1939 §5): message number -> size in octets."""
        event = yield from self._simple(pop3proto.List(), "LIST")
        assert isinstance(event, pop3proto.ListOk)
        return dict(event.sizes)

    def size(self, number: int) -> Operation[int]:
        """``LIST n``: the size of one message, in octets."""
        _check_number(number, "message number")
        event = yield from self._simple(pop3proto.List(number), f"LIST {number}")
        assert isinstance(event, pop3proto.ListEntryOk)
        return event.size

    def uidl(self) -> Operation[dict[int, str]]:
        """UIDL (RFC 1939 §7): message number -> unique-id."""
        event = yield from self._simple(pop3proto.Uidl(), "UIDL")
        assert isinstance(event, pop3proto.UidlOk)
        return dict(event.uids)

    def uid(self, number: int) -> Operation[str]:
        """``UIDL n``: the unique-id of one message."""
        _check_number(number, "message number")
        event = yield from self._simple(pop3proto.Uidl(number), f"UIDL {number}")
        assert isinstance(event, pop3proto.UidlEntryOk)
        return event.uid

    def retrieve(self, number: int) -> Operation[int]:
        """RETR (RFC 1939 §5): stream message *number* as :class:`Deliver`
        requests; return its size in octets.

        The octets are the message exactly as stored: dot-unstuffed, CRLF
        line ends, ending with the CRLF before the terminator.  Memory stays
        bounded by the receive size whatever the message size.
        """
        _check_number(number, "message number")
        return (yield from self._body(pop3proto.Retr(number), f"RETR {number}"))

    def top(self, number: int, lines: int) -> Operation[int]:
        """``TOP n lines`` (RFC 1939 §7): stream the headers and the first
        *lines* body lines as :class:`Deliver` requests; return the octets."""
        _check_number(number, "message number")
        _check_number(lines, "line count", minimum=0)
        return (yield from self._body(pop3proto.Top(number, lines), f"TOP {number} {lines}"))

    def _body(self, command: pop3proto.Command, label: str) -> Operation[int]:
        event = yield from self._simple(command, label)
        assert isinstance(event, pop3proto.MessageStart)
        return (yield from self._stream(label))

    def _stream(self, label: str) -> Operation[int]:
        total = 0
        next_event = self._conn.next_event
        while True:
            # Straight from the engine while it has events (with pipelined
            # replies it usually does); through _reply, which reads and
            # turns errors into ours, only when it needs more.
            try:
                event = next_event()
            except pop3proto.RemoteProtocolError as exc:
                raise self._broken(label, exc) from exc
            if event is pop3proto.NEED_DATA:
                event = yield from self._reply(label)
            if isinstance(event, pop3proto.MessageData):
                if event.data:
                    total += len(event.data)
                    yield Deliver(event.data)
                continue
            assert isinstance(event, pop3proto.MessageEnd), event
            return total

    def retrieve_many(self, numbers: Iterable[int], *, window: int | None = None) -> RetrieveBatch:
        """Prepare a pipelined retrieval of *numbers*, in order.

        Returns a :class:`RetrieveBatch`; run ``batch.next()`` until it
        returns ``None``.  Nothing is sent until then.  With PIPELINING
        advertised (RFC 2449 §6.6) up to *window* (default: the core's
        :attr:`window`) RETRs are outstanding at once; otherwise one at a time.
        """
        return RetrieveBatch(self, numbers, self.window if window is None else window)

    def delete(self, number: int) -> Operation[None]:
        """DELE (RFC 1939 §5): mark a message deleted; removed only at
        :meth:`quit` (the UPDATE state)."""
        _check_number(number, "message number")
        yield from self._simple(pop3proto.Dele(number), f"DELE {number}")

    def delete_many(self, numbers: Iterable[int], *, window: int | None = None) -> Operation[None]:
        """DELE each of *numbers*, pipelined like :meth:`retrieve_many`.

        Every reply is read; if any was ``-ERR`` the first one is raised
        once all are in (the others stay marked).
        """
        todo = [_check_number(n, "message number") for n in numbers]
        if not todo:
            return
        yield from self._begin("DELE")
        caps = yield from self.capabilities()
        width = self.window if window is None else _check_number(window, "window")
        width = min(width, _MAX_WINDOW) if caps.pipelining else 1
        pending: deque[int] = deque()
        first_error: tuple[pop3proto.Err, int] | None = None
        index = 0
        while index < len(todo) or pending:
            if index < len(todo) and len(pending) <= width // 2:
                chunk = todo[index : index + width - len(pending)]
                index += len(chunk)
                yield from self._send(*(pop3proto.Dele(n) for n in chunk))
                pending.extend(chunk)
            number = pending[0]
            event = yield from self._reply(f"DELE {number}")
            pending.popleft()
            if isinstance(event, pop3proto.Err) and first_error is None:
                first_error = (event, number)
        if first_error is not None:
            raise_for_err(first_error[0], f"DELE {first_error[1]}")

    def reset(self) -> Operation[None]:
        """RSET (RFC 1939 §5): unmark every message marked deleted."""
        yield from self._simple(pop3proto.Rset(), "RSET")

    def noop(self) -> Operation[None]:
        """NOOP (RFC 1939 §5): keep the session alive."""
        yield from self._simple(pop3proto.Noop(), "NOOP")

    def utf8(self) -> Operation[None]:
        """UTF8 (RFC 6856 §2): switch to UTF-8 mode (AUTHORIZATION only;
        STLS is impossible afterwards)."""
        yield from self._simple(pop3proto.Utf8(), "UTF8")

    def quit(self) -> Operation[bool]:
        """QUIT (RFC 1939 §6); return whether deletions were committed.

        ``True`` when QUIT from TRANSACTION got ``+OK`` (the marked messages
        are gone); ``False`` from AUTHORIZATION (nothing to commit) or when
        the server answered ``-ERR`` ("some deleted messages not removed").
        If the connection closes before the reply, whether anything was
        removed is unknown: :class:`ConnectionLost` with
        ``outcome_unknown=True``.  An unfinished :meth:`retrieve_many` batch
        is abandoned (its remaining replies are read and dropped).
        """
        yield from self._begin("QUIT")
        from_transaction = self._conn.state is State.TRANSACTION
        yield from self._send(pop3proto.Quit())
        event = yield from self._event("QUIT")
        if isinstance(event, pop3proto.ConnectionClosed):
            if event.outcome_unknown:
                raise ConnectionLost(
                    "QUIT: the connection closed before the reply; whether the marked "
                    "messages were removed is unknown",
                    outcome_unknown=True,
                    command="QUIT",
                )
            return False
        return from_transaction and isinstance(event, pop3proto.Ok)


class RetrieveBatch:
    """A pipelined RETR of several messages (RFC 2449 §6.6), I/O-free.

    Made by :meth:`ClientCore.retrieve_many`.  Run :meth:`next` repeatedly:
    each run streams the next message's octets as :class:`Deliver` requests
    and returns its number, or returns ``None`` when every message is done.
    :attr:`current` is the number whose octets are being delivered.  Before
    each run a runner may call :meth:`take_buffered`, which returns a
    message whose reply has already been received, with no requests.

    Flow control: the first run sends up to *window* RETRs in one
    :class:`Send`; whenever no more than three quarters of the window are
    outstanding, the batch tops it up, again in one write, and it does so before
    returning a message so that the server keeps sending while the caller
    works.  The client therefore never has more than *window* short
    commands unanswered: its writes always fit in the socket buffers, so it
    cannot block writing while the server blocks writing a reply the client
    has not read yet.  Without PIPELINING the window is 1 and nothing is
    sent ahead.

    Other operations may run between two :meth:`next` runs.  With RETRs in
    flight, their replies precede the new command's, so the core first
    reads them and keeps them in memory for the following runs (bounded by
    the window, but whole messages); to delete as you go without that cost,
    collect the numbers and use :meth:`ClientCore.delete_many` afterwards.

    A ``-ERR`` for one message is raised from that run (via
    :func:`raise_for_err`); the batch stays usable and the next run goes on
    with the next message.  Any other exception abandons the batch, as does
    :meth:`abandon`; the core then reads and discards the replies still
    owed before its next operation.
    """

    def __init__(self, core: ClientCore, numbers: Iterable[int], window: int) -> None:
        self._core = core
        self._numbers = [_check_number(n, "message number") for n in numbers]
        self._requested = min(_check_number(window, "window"), _MAX_WINDOW)
        self._window = 1
        self._index = 0
        self._pending: deque[int] = deque()
        # Replies read ahead by _settle(): (number, body or -ERR).
        self._ready: deque[tuple[int, bytes | pop3proto.Err]] = deque()
        # The first pieces of the reply to _pending[0] when take_buffered()
        # ran out of received data in its body (its +OK was taken).
        self._partial: list[bytes] | None = None
        self._started = False
        self._done = False
        self.abandoned = False
        self.current: int | None = None

    @property
    def numbers(self) -> tuple[int, ...]:
        """The message numbers, in the order they are retrieved."""
        return tuple(self._numbers)

    @property
    def window(self) -> int:
        """The effective window: the requested one with PIPELINING, else 1
        (meaningful once the first :meth:`next` has started)."""
        return self._window

    @property
    def outstanding(self) -> int:
        """How many RETRs are sent and not yet answered."""
        return len(self._pending)

    @property
    def in_flight(self) -> bool:
        """Whether replies are still owed to this batch."""
        return bool(self._pending)

    @property
    def done(self) -> bool:
        """Whether every message has been handled."""
        return self._done

    def abandon(self) -> None:
        """Give up on the rest of the batch; the core drains what is owed."""
        if not self._done:
            self.abandoned = True
            self._ready.clear()
            self._partial = None
            if self._core._batch is self:
                self._core._batch = None

    def next(self) -> Operation[int | None]:
        """Deliver the next message; return its number, or ``None`` at the end."""
        if self.abandoned:
            raise RuntimeError("this retrieve_many() batch was abandoned")
        if self._done:
            return None
        core = self._core
        try:
            if not self._started:
                yield from core._begin("RETR", batch=self)
                caps = yield from core.capabilities()
                self._window = self._requested if caps.pipelining else 1
                self._started = True
                core._batch = self
            if self._ready:
                number, item = self._ready.popleft()
                self.current = number
                self._check_finished()
                if isinstance(item, pop3proto.Err):
                    raise_for_err(item, f"RETR {number}")
                if item:
                    yield Deliver(item)
                return number
            if self._check_finished():
                return None
            if not self._pending:
                # Settle whatever an abandoned operation left unanswered
                # before pipelining after it.
                yield from core._begin("RETR", batch=self)
            if self._wants_more():
                yield from self._fill()
            number = self._pending[0]
            self.current = number
            label = f"RETR {number}"
            partial, self._partial = self._partial, None
            if partial is None:
                event = yield from core._reply(label)
                if isinstance(event, pop3proto.Err):
                    self._pending.popleft()
                    self._check_finished()
                    raise_for_err(event, label)
                assert isinstance(event, pop3proto.MessageStart)
            else:
                # take_buffered() took the +OK and these pieces.
                for piece in partial:
                    yield Deliver(piece)
            yield from core._stream(label)
            self._pending.popleft()
            if self._window > 1 and self._wants_more():
                # Keep the server busy while the caller handles this message.
                yield from self._fill()
            self._check_finished()
            return number
        except POP3Error as exc:
            if exc.response is None or isinstance(exc, ConnectionLost):
                self.abandon()
            raise
        except BaseException:
            self.abandon()
            raise

    def take_buffered(self) -> tuple[int, bytes] | None:
        """The next message, if what was already received holds its whole
        reply and no top-up is due; otherwise ``None``, and :meth:`next`
        (which reads and writes) must run.

        It does no I/O and runs no generator: with a full pipe most replies
        are in the receive buffer already, and a runner that asks here first
        saves the request round trips of :meth:`next` for them.  A ``-ERR``
        for the message raises as from :meth:`next`.  A reply cut short by
        the end of the received data is kept for :meth:`next` to finish.
        """
        if (
            self._partial is not None
            or self._ready
            or not self._pending
            or not self._started
            or self.abandoned
            or self._core._batch is not self
            or self._wants_more()
        ):
            return None
        core = self._core
        next_event = core._conn.next_event
        number = self._pending[0]
        try:
            event = next_event()
            if event is pop3proto.NEED_DATA:
                return None
            self.current = number
            if type(event) is not pop3proto.MessageStart:
                label = f"RETR {number}"
                event = core._accept(event if isinstance(event, pop3proto.Event) else None, label)
                if isinstance(event, pop3proto.Err):
                    self._pending.popleft()
                    self._check_finished()
                    raise_for_err(event, label)
                raise AssertionError(f"{label}: unexpected {event!r}")  # pragma: no cover
            pieces: list[bytes] = []
            while True:
                event = next_event()
                if type(event) is pop3proto.MessageData:
                    pieces.append(event.data)
                elif type(event) is pop3proto.MessageEnd:
                    break
                elif event is pop3proto.NEED_DATA:
                    self._partial = pieces
                    return None
                else:  # pragma: no cover - the engine sends nothing else in a body
                    raise AssertionError(f"RETR {number}: unexpected {event!r} in a body")
        except pop3proto.RemoteProtocolError as exc:
            self.abandon()
            raise core._broken(f"RETR {number}", exc) from exc
        except POP3Error as exc:
            if exc.response is None or isinstance(exc, ConnectionLost):
                self.abandon()
            raise
        except BaseException:  # pragma: no cover - as in next()
            self.abandon()
            raise
        self._pending.popleft()
        self._check_finished()
        return number, pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def _check_finished(self) -> bool:
        if self._pending or self._ready or self._index < len(self._numbers):
            return False
        self._done = True
        if self._core._batch is self:
            self._core._batch = None
        return True

    def _wants_more(self) -> bool:
        # Top up at three quarters, not half: on a slow link each top-up
        # costs a round trip before its replies flow, and the commands are
        # tiny, so a fuller pipe is nearly free.
        return self._index < len(self._numbers) and len(self._pending) <= self._window * 3 // 4

    def _fill(self) -> Operation[None]:
        pending = self._pending
        remaining = len(self._numbers) - self._index
        if not self._wants_more():
            return
        count = min(remaining, self._window - len(pending))
        chunk = self._numbers[self._index : self._index + count]
        self._index += count
        yield from self._core._send(*(pop3proto.Retr(n) for n in chunk))
        pending.extend(chunk)

    def _settle(self) -> Operation[None]:
        """Read every reply in flight and keep it for later runs."""
        core = self._core
        try:
            while self._pending:
                number = self._pending[0]
                label = f"RETR {number}"
                partial, self._partial = self._partial, None
                if partial is None:
                    event = yield from core._reply(label)
                    if isinstance(event, pop3proto.Err):
                        self._ready.append((number, event))
                        self._pending.popleft()
                        continue
                    assert isinstance(event, pop3proto.MessageStart)
                # take_buffered() may have taken the +OK and a first part.
                body = bytearray(b"".join(partial or ()))
                while True:
                    event = yield from core._reply(label)
                    if isinstance(event, pop3proto.MessageData):
                        body += event.data
                        continue
                    assert isinstance(event, pop3proto.MessageEnd), event
                    break
                self._ready.append((number, bytes(body)))
                self._pending.popleft()
        except BaseException:
            self.abandon()
            raise

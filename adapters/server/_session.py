"""The I/O-free POP3 server session shared by every server adapter.

:class:`ServerSession` decides what a POP3 server *does*: it owns a server
:class:`pop3proto.Connection`, answers each command event (RFC 1939 §§4-7,
RFC 2449 CAPA, RFC 2595 STLS, RFC 5034 AUTH, RFC 6856 UTF8/LANG), opens and
locks the maildrop after authentication and applies deletions only in the
UPDATE state.  It never touches a socket: bytes go in with
:meth:`~ServerSession.receive` and come out as *actions*.

How an adapter drives a session
-------------------------------
::

    session = ServerSession(backend, authenticator, config,
                            tls=implicit_tls, is_loopback=is_loopback_address(peer_ip),
                            peer=f"{peer_ip}:{peer_port}")
    send(session.greeting())
    while not session.closed:
        for action in session.actions():       # pull one at a time
            if isinstance(action, SendBytes):
                send(action.data)               # await it: backpressure
            elif isinstance(action, StartTLS):
                wrap the transport in TLS (server_side=True); on failure
                call session.connection_lost() and stop
                session.tls_started()
            elif isinstance(action, Close):
                close the transport
        if session.closed:
            break
        data = receive(timeout=session.idle_timeout)
        if timed out:
            for action in session.timed_out(): perform it (SendBytes, Close)
            break
        session.receive(data)                   # b"" at end of stream
    # on any transport error, and in a finally block:
    session.connection_lost()                   # idempotent

Rules of the seam:

* :meth:`~ServerSession.actions` is a generator that processes the
  commands already received, in order (RFC 2449 §6.6: pipelined commands
  are answered one after another), and stops when it needs more bytes.
  Message bodies (RETR, TOP) are streamed from the maildrop: the status
  line goes out with as much of the body as fits in
  ``ServerConfig.chunk_size`` (a small message, terminator included, is a
  single :class:`SendBytes`), and each further chunk is produced only when
  the adapter asks for the next action, so an adapter that finishes each
  send before pulling the next action never holds much more than one
  chunk of a message in memory.
* :class:`StartTLS` is always the last action of a batch.  Call
  :meth:`~ServerSession.tls_started` once the handshake is done, before
  reading again.
* :class:`Close` is always the last action; the session is then
  :attr:`~ServerSession.closed`.  Close the transport after sending every
  :class:`SendBytes` before it.
* :meth:`~ServerSession.connection_lost` (end of stream, reset, failed TLS
  handshake, server shutdown) and :meth:`~ServerSession.timed_out` end the
  session **without** UPDATE: the maildrop lock is released and nothing is
  deleted (RFC 1939 §3, §6).  Abandoning an :meth:`actions` generator in
  the middle of a body is fine: closing it (or letting it be collected)
  closes the message being read.

Policy choices (each one documented where it is made):

* Plaintext logins (USER/PASS, SASL PLAIN and LOGIN) are refused, and not
  advertised, unless the connection is TLS or loopback
  (``ServerConfig.allow_plaintext_auth=None``, RFC 5034 §4, RFC 2595 §2.3).
* USER is answered ``+OK`` for any name (no user enumeration, RFC 1939
  §13); every failed login gets the same ``-ERR [AUTH] authentication
  failed`` (RFC 3206 §5).  After ``max_auth_failures`` failures the server
  closes (RFC 1939 §4 allows it).
* An idle timeout sends ``-ERR disconnected for inactivity``
  before closing.  RFC 1939 §3 says the server closes "without ... sending
  any response", but real servers (Dovecot, WildDuck) send one, the engine's
  client role understands it, and it tells a human what happened.  No
  message is removed either way.
* ``EXPIRE 0`` (RFC 2449 §6.7), when configured, removes the messages
  retrieved in full by RETR, at UPDATE only.
"""

from __future__ import annotations

import dataclasses
import hmac
import ipaddress
import itertools
import logging
import os
import re
import secrets
import socket
import ssl
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import pop3proto
from pop3proto import (
    NEED_DATA,
    PAUSED,
    SERVER,
    Apop,
    Auth,
    BadCommand,
    Capa,
    Capabilities,
    CapaOk,
    Command,
    Connection,
    ConnectionClosed,
    Dele,
    Err,
    Event,
    Greeting,
    Lang,
    LangOk,
    List,
    ListEntryOk,
    ListOk,
    MessageData,
    MessageEnd,
    MessageStart,
    Noop,
    Ok,
    Pass,
    Quit,
    RemoteProtocolError,
    Retr,
    Rset,
    SaslCancel,
    SaslChallenge,
    SaslResponse,
    Stat,
    State,
    StatOk,
    Stls,
    Top,
    Uidl,
    UidlEntryOk,
    UidlOk,
    User,
    Utf8,
)

from ..mailstore._base import Maildrop, MaildropBackend, MaildropError, MaildropInUse, MessageInfo
from ..mailstore._users import Authenticator

__all__ = [
    "ServerBase",
    "Action",
    "Close",
    "SendBytes",
    "ServerConfig",
    "ServerSession",
    "SessionStats",
    "StartTLS",
    "SUPPORTED_MECHANISMS",
    "busy_response",
    "is_loopback_address",
]

log = logging.getLogger("pop3proto.server")


# ---------------------------------------------------------------------------
# Actions
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendBytes:
    """Write ``data`` to the client, all of it, before pulling the next action."""

    data: bytes


@dataclass(frozen=True, slots=True)
class StartTLS:
    """Wrap the transport in TLS as the *server* (``server_side=True``), then
    call :meth:`ServerSession.tls_started` (RFC 2595 §4)."""


@dataclass(frozen=True, slots=True)
class Close:
    """Close the transport; the session is over."""


#: What :meth:`ServerSession.actions` yields.
Action = SendBytes | StartTLS | Close


# ---------------------------------------------------------------------------
# Configuration and statistics
# ---------------------------------------------------------------------------

#: The SASL mechanisms the session can run (RFC 4616, draft-murchison-sasl-login,
#: RFC 2195, RFC 7677), strongest first.
SUPPORTED_MECHANISMS: tuple[str, ...] = ("SCRAM-SHA-256", "CRAM-MD5", "PLAIN", "LOGIN")
# Mechanisms that send the password itself.
_PLAINTEXT_MECHANISMS = frozenset({"PLAIN", "LOGIN"})


@dataclass
class SessionStats:
    """What a session did; logged (and passed to the ``on_session_end``
    hook) when it ends.  Never holds credentials.

    Fields:
        peer: the client's address, as the adapter gave it.
        user: the authenticated user, or ``None``.
        tls: whether the session ended on a TLS transport.
        commands: commands received (well formed or not).
        bytes_received / bytes_sent: octets in and out, at the POP3 level.
        retrieved: messages sent in full by RETR.
        deleted: messages removed in UPDATE.
        auth_failures: failed authentication attempts.
        reason: why the session ended (``"quit"``, ``"eof"``,
            ``"timeout"``, ``"protocol error"``, ``"too many bad commands"``,
            ``"too many authentication failures"``, ``"connection lost"``,
            ``"I/O error"``).
    """

    peer: str = ""
    user: str | None = None
    tls: bool = False
    commands: int = 0
    bytes_received: int = 0
    bytes_sent: int = 0
    retrieved: int = 0
    deleted: int = 0
    auth_failures: int = 0
    reason: str = ""


def _default_hostname() -> str:
    return socket.gethostname()


@dataclass(frozen=True)
class ServerConfig:
    """Server-wide settings, shared by every connection.

    Per-connection facts (implicit TLS, a loopback peer, the peer's address)
    are arguments of :class:`ServerSession` instead, so one frozen config
    serves every connection.

    Fields:
        hostname: the host part of the APOP timestamp ``<...@hostname>``.
        greeting: the greeting text before the timestamp.
        allow_plaintext_auth: ``True``/``False`` to allow or refuse
            USER/PASS, SASL PLAIN and LOGIN everywhere; ``None`` (the
            default) allows them only over TLS or from a loopback address
            (RFC 5034 §4: servers SHOULD by default refuse plaintext
            mechanisms without TLS).
        tls_available: STLS can be offered (the adapter has a server TLS
            context).  It is offered only before TLS and before UTF8.
        apop: put an APOP timestamp in the greeting and accept APOP.
        sasl_mechanisms: the SASL mechanisms offered, from
            :data:`SUPPORTED_MECHANISMS`, in the order advertised.
        idle_timeout: seconds of client silence before the adapter calls
            :meth:`ServerSession.timed_out`.  RFC 1939 §3: at least 10
            minutes (600, the default); smaller values are accepted for
            tests and special deployments.
        max_bad_commands: unknown, malformed or out-of-state commands
            tolerated; the last one is answered ``-ERR`` and the connection
            closed.
        max_auth_failures: failed logins per connection before closing.
        expire: advertise ``EXPIRE n`` or ``EXPIRE NEVER`` (RFC 2449 §6.7);
            ``0`` also removes retrieved messages at UPDATE.
        login_delay: advertise ``LOGIN-DELAY n`` (RFC 2449 §6.5).  Not
            enforced by the session.
        implementation: the ``IMPLEMENTATION`` text (RFC 2449 §6.9), or
            ``None`` to omit it.
        chunk_size: the largest body piece per :class:`SendBytes`.
        strict_user: the engine's ``strict_user`` (only PASS or QUIT may
            follow USER).
        on_session_end: called with the :class:`SessionStats` when a session
            ends (after the log line).
    """

    hostname: str = field(default_factory=_default_hostname)
    greeting: str = "POP3 server ready"
    allow_plaintext_auth: bool | None = None
    tls_available: bool = False
    apop: bool = True
    sasl_mechanisms: tuple[str, ...] = SUPPORTED_MECHANISMS
    idle_timeout: float = 600.0
    max_bad_commands: int = 20
    max_auth_failures: int = 3
    expire: int | Literal["NEVER"] | None = None
    login_delay: int | None = None
    implementation: str | None = f"pop3proto {pop3proto.__version__}"
    chunk_size: int = 65536
    strict_user: bool = True
    on_session_end: Callable[[SessionStats], None] | None = None

    def __post_init__(self) -> None:
        mechanisms = tuple(m.upper() for m in self.sasl_mechanisms)
        unknown = [m for m in mechanisms if m not in SUPPORTED_MECHANISMS]
        if unknown:
            raise ValueError(f"unsupported SASL mechanisms: {', '.join(unknown)}")
        object.__setattr__(self, "sasl_mechanisms", mechanisms)
        if not self.idle_timeout > 0:
            raise ValueError("idle_timeout must be positive")
        for name in ("max_bad_commands", "max_auth_failures", "chunk_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        expire = self.expire
        if (
            expire is not None
            and expire != "NEVER"
            and (isinstance(expire, bool) or not isinstance(expire, int) or expire < 0)
        ):
            raise ValueError("expire must be None, 'NEVER' or a number of days >= 0")
        if self.login_delay is not None and self.login_delay < 0:
            raise ValueError("login_delay must be >= 0")
        if self.implementation is not None and not (
            self.implementation.strip()
            and self.implementation.isascii()
            and self.implementation.isprintable()
        ):
            raise ValueError("implementation must be non-empty printable ASCII")
        if not (self.greeting.isascii() and self.greeting.isprintable()) or "<" in self.greeting:
            raise ValueError("greeting must be printable ASCII without '<'")


# ---------------------------------------------------------------------------
# Helpers for adapters
# ---------------------------------------------------------------------------


def is_loopback_address(host: str) -> bool:
    """Whether *host* (an IP address string, maybe with an IPv6 zone) is a
    loopback address, including IPv4-mapped ``::ffff:127.x.y.z``."""
    try:
        addr = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped.is_loopback
    return addr.is_loopback


def busy_response(text: str = "too many connections") -> bytes:
    """A negative greeting ``-ERR [SYS/TEMP] text`` for a connection the
    server will not serve (over its connection cap); close after sending.

    RFC 1939 §4 expects a positive greeting, but a ``-ERR`` one with a
    ``SYS/TEMP`` code (RFC 3206 §4) tells the client to retry later, and
    the engine's client role reports it as an :class:`~pop3proto.Err`.
    """
    return Connection(SERVER).send(Err(text, pop3proto.SYS_TEMP))


_timestamp_counter = itertools.count(1)
_HOST_RE = re.compile(r"[^A-Za-z0-9.\-]")


def _apop_timestamp(hostname: str) -> str:
    # RFC 1939 §7: a msg-id that MUST be different for each greeting: the
    # process id, a counter and 64 random bits make it unique and
    # unpredictable (predictability would allow precomputed replies).
    host = _HOST_RE.sub("", hostname) or "localhost"
    return f"<{os.getpid()}.{next(_timestamp_counter)}.{secrets.token_hex(8)}@{host}>"


_AUTH_FAILED = "authentication failed"


class _Stop(Exception):
    """Internal: a handler closed the session."""


# ---------------------------------------------------------------------------
# The session
# ---------------------------------------------------------------------------


class ServerSession:
    """One POP3 server session, I/O-free; see the module docstring.

    Args:
        backend: opens the user's maildrop after authentication.
        authenticator: checks credentials.
        config: server-wide settings (default ``ServerConfig()``).
        tls: the transport is already TLS (implicit TLS, RFC 8314 §3).
        is_loopback: the client connects from a loopback address (see
            :func:`is_loopback_address`); with the default policy this
            allows plaintext logins without TLS.
        peer: the client's address, for the session-end log line.
    """

    def __init__(
        self,
        backend: MaildropBackend,
        authenticator: Authenticator,
        config: ServerConfig | None = None,
        *,
        tls: bool = False,
        is_loopback: bool = False,
        peer: str = "",
    ) -> None:
        """See the class docstring."""
        self.config = config if config is not None else ServerConfig()
        self.backend = backend
        self.authenticator = authenticator
        self.is_loopback = is_loopback
        self.stats = SessionStats(peer=peer, tls=tls)
        self._conn = Connection(SERVER, tls=tls, strict_user=self.config.strict_user)
        self._timestamp: str | None = None
        self._greeted = False
        self._closed = False
        self._eof = False
        self._pending_user: str | None = None
        self._mechanism: pop3proto.SaslServerMechanism | None = None
        self._maildrop: Maildrop | None = None
        self._messages: Sequence[MessageInfo] = ()
        self._deleted: set[int] = set()
        self._retrieved: set[int] = set()
        self._bad_commands = 0

    # -- properties --------------------------------------------------------

    @property
    def connection(self) -> Connection:
        """The engine connection (read it; do not feed or send on it)."""
        return self._conn

    @property
    def state(self) -> State:
        """The engine's session state."""
        return self._conn.state

    @property
    def closed(self) -> bool:
        """Whether the session is over (after :class:`Close`,
        :meth:`connection_lost` or :meth:`timed_out`)."""
        return self._closed

    @property
    def tls(self) -> bool:
        """Whether the transport is TLS."""
        return self._conn.tls

    @property
    def user(self) -> str | None:
        """The authenticated user, once in TRANSACTION."""
        return self.stats.user

    @property
    def idle_timeout(self) -> float:
        """Seconds of client silence the adapter allows (``config.idle_timeout``)."""
        return self.config.idle_timeout

    @property
    def timestamp(self) -> str | None:
        """The APOP timestamp of this session's greeting, if any."""
        return self._timestamp

    @property
    def plaintext_allowed(self) -> bool:
        """Whether USER/PASS, PLAIN and LOGIN are allowed right now."""
        allow = self.config.allow_plaintext_auth
        if allow is None:
            return self.is_loopback or self._conn.tls
        return allow

    @property
    def mechanisms(self) -> tuple[str, ...]:
        """The SASL mechanisms allowed (and advertised) right now."""
        plaintext = self.plaintext_allowed
        return tuple(
            m for m in self.config.sasl_mechanisms if plaintext or m not in _PLAINTEXT_MECHANISMS
        )

    def capabilities(self) -> Capabilities:
        """What CAPA answers now (RFC 2449 §5): only what works right now.

        Capabilities of the AUTHORIZATION state (USER, SASL, UTF8) are
        announced in TRANSACTION too, as RFC 2449 §5 requires; STLS only
        in AUTHORIZATION, before TLS and before UTF8 (RFC 2595 §4,
        RFC 6856 §2.1).
        """
        config = self.config
        items: list[str | tuple[str, ...]] = [
            "TOP",
            "UIDL",
            "PIPELINING",
            "RESP-CODES",
            "AUTH-RESP-CODE",
        ]
        if self.plaintext_allowed:
            items.append("USER")
        mechanisms = self.mechanisms
        if mechanisms:
            items.append(("SASL", *mechanisms))
        conn = self._conn
        if (
            config.tls_available
            and not conn.tls
            and not conn.utf8
            and conn.state in (State.AUTHORIZATION, State.USER_OK)
        ):
            items.append("STLS")
        items.append("UTF8")
        items.append("LANG")
        if config.expire is not None:
            items.append(("EXPIRE", str(config.expire)))
        if config.login_delay is not None:
            items.append(("LOGIN-DELAY", str(config.login_delay)))
        if config.implementation is not None:
            items.append(("IMPLEMENTATION", *config.implementation.split()))
        return Capabilities.build(*items)

    # -- the adapter API ---------------------------------------------------

    def greeting(self) -> bytes:
        """The greeting to send first (``+OK text <timestamp>``).

        Each call on a new session makes a new, unique APOP timestamp
        (RFC 1939 §7).  Call it exactly once, before anything else.
        """
        if self._greeted:
            raise RuntimeError("greeting() was already called")
        self._greeted = True
        text = self.config.greeting
        if self.config.apop:
            self._timestamp = _apop_timestamp(self.config.hostname)
            text = f"{text} {self._timestamp}"
        data = self._conn.send(Greeting(text))
        self.stats.bytes_sent += len(data)
        return data

    def receive(self, data: bytes) -> None:
        """Feed bytes from the client; ``b""`` means it closed its side.

        Then pull :meth:`actions`.  Bytes after the end are ignored.
        """
        if self._closed or self._eof:
            return
        if not data:
            self._eof = True
        self.stats.bytes_received += len(data)
        self._conn.receive_data(data)

    def actions(self) -> Generator[Action, None, None]:
        """Process the commands received so far; yield what to do.

        Stops when more input is needed, after :class:`StartTLS` and after
        :class:`Close`.  See the module docstring for the rules.
        """
        if not self._greeted:
            raise RuntimeError("send greeting() first")
        conn = self._conn
        while not self._closed:
            try:
                event = conn.next_event()
            except RemoteProtocolError as exc:
                # An injection attempt after STLS or an oversize SASL line:
                # nothing sensible can be answered; drop the connection
                # without UPDATE.
                log.info("protocol error from %s: %s", self.stats.peer or "client", exc)
                self._end("protocol error")
                yield Close()
                return
            if event is NEED_DATA or event is PAUSED:
                return
            if type(event) is Retr:
                # The bulk of a busy server's commands: straight to it.
                self.stats.commands += 1
                try:
                    yield from self._retr(event)
                except _Stop:
                    yield Close()
                    return
                continue
            if isinstance(event, ConnectionClosed):
                # RFC 1939 §6: no QUIT, no UPDATE.
                self._end("eof")
                yield Close()
                return
            assert isinstance(event, Event)
            if isinstance(event, Command):
                self.stats.commands += 1
            try:
                yield from self._dispatch(event)
            except _Stop:
                yield Close()
                return

    def tls_started(self) -> None:
        """The TLS handshake after :class:`StartTLS` succeeded.

        The session is in a fresh AUTHORIZATION state: capabilities are
        recomputed (STLS disappears; USER and PLAIN may appear).  If the
        engine finds plaintext bytes buffered from before the handshake, the
        session ends instead (check :attr:`closed`).
        """
        try:
            self._conn.tls_established()
        except pop3proto.ProtocolError as exc:
            # Plaintext bytes arrived before the handshake: possible
            # injection (RFC 2595 §4).  The session is then closed.
            log.info("protocol error from %s: %s", self.stats.peer or "client", exc)
            self._end("protocol error")
            return
        self.stats.tls = True

    def timed_out(self) -> list[Action]:
        """The client was idle for :attr:`idle_timeout` seconds.

        Ends the session without UPDATE and returns the actions to perform:
        a ``-ERR`` line when one can be sent (not in the middle of a SASL
        exchange or a TLS handshake), then :class:`Close`.
        """
        if self._closed:
            return []
        out: list[Action] = []
        conn = self._conn
        if (
            self._greeted
            and conn.state in (State.AUTHORIZATION, State.USER_OK, State.TRANSACTION)
            and not conn.outstanding
        ):
            out.append(self._send(Err("disconnected for inactivity")))
        self._end("timeout")
        out.append(Close())
        return out

    def connection_lost(self) -> None:
        """The transport failed or closed: end without UPDATE.  Idempotent."""
        self._end("connection lost")

    # -- internals: sending and ending -------------------------------------

    def _send(self, event: Event) -> SendBytes:
        data = self._conn.send(event)
        self.stats.bytes_sent += len(data)
        return SendBytes(data)

    def _release(self) -> None:
        maildrop, self._maildrop = self._maildrop, None
        if maildrop is not None:
            try:
                maildrop.close()
            except Exception:  # the session must end whatever the backend does
                log.exception("error while releasing a maildrop")

    def _end(self, reason: str) -> None:
        """End the session (idempotent): release the maildrop without
        UPDATE unless a QUIT already committed, log one line, call the hook."""
        if self._closed:
            return
        self._closed = True
        self._mechanism = None
        self._release()
        if self._conn.state not in (State.CLOSED, State.ERROR):
            self._conn.send(ConnectionClosed())
        stats = self.stats
        stats.reason = reason
        log.info(
            "session end: peer=%s user=%s reason=%s tls=%s commands=%d received=%d "
            "sent=%d retrieved=%d deleted=%d auth_failures=%d",
            stats.peer or "-",
            stats.user or "-",
            reason,
            stats.tls,
            stats.commands,
            stats.bytes_received,
            stats.bytes_sent,
            stats.retrieved,
            stats.deleted,
            stats.auth_failures,
        )
        hook = self.config.on_session_end
        if hook is not None:
            try:
                hook(stats)
            except Exception:
                log.exception("on_session_end hook failed")

    def _close_after(self, event: Event, reason: str) -> Iterator[Action]:
        """Send *event* (the reply owed), then end the session."""
        yield self._send(event)
        self._end(reason)
        raise _Stop

    # -- dispatch ------------------------------------------------------------

    def _dispatch(self, event: Event) -> Iterator[Action]:
        # The engine already checked that each command is legal in the
        # current state (RFC 1939 §3); what is left is what it means.
        if isinstance(event, BadCommand):
            return self._bad_command(event)
        if isinstance(event, (SaslResponse, SaslCancel)):
            return self._sasl_line(event)
        if isinstance(event, User):
            return self._user(event)
        if isinstance(event, Pass):
            return self._pass(event)
        if isinstance(event, Apop):
            return self._apop(event)
        if isinstance(event, Auth):
            return self._auth(event)
        if isinstance(event, Stls):
            return self._stls()
        if isinstance(event, Capa):
            return iter([self._send(CapaOk(self.capabilities(), "Capability list follows"))])
        if isinstance(event, Utf8):
            # RFC 6856 §2: UTF-8 mode.  Messages are served as stored.
            return iter([self._send(Ok("UTF8 enabled"))])
        if isinstance(event, Lang):
            return iter([self._send(self._lang(event))])
        if isinstance(event, Quit):
            return self._quit()
        if isinstance(event, Stat):
            count, size = self._totals()
            return iter([self._send(StatOk(count, size))])
        if isinstance(event, List):
            return iter([self._send(self._list(event))])
        if isinstance(event, Uidl):
            return iter([self._send(self._uidl(event))])
        if isinstance(event, Retr):
            return self._retr(event)
        if isinstance(event, Top):
            return self._top(event)
        if isinstance(event, Dele):
            return iter([self._send(self._dele(event))])
        if isinstance(event, Rset):
            # RFC 1939 §5: unmark every message marked as deleted.
            self._deleted.clear()
            count, size = self._totals()
            return iter([self._send(Ok(f"maildrop has {count} messages ({size} octets)"))])
        if isinstance(event, Noop):
            return iter([self._send(Ok())])
        # Anything else the engine might grow: refuse rather than guess.
        return iter([self._send(Err("command not implemented"))])

    def _bad_command(self, event: BadCommand) -> Iterator[Action]:
        if self._mechanism is not None:
            # A line inside AUTH that is neither base64 nor "*": the
            # exchange is over (RFC 5034 §4, answered -ERR).
            self._mechanism = None
        self._bad_commands += 1
        reason = event.reason[:200]
        if self._bad_commands >= self.config.max_bad_commands:
            yield from self._close_after(
                Err(f"{reason}; too many bad commands, closing"), "too many bad commands"
            )
        yield self._send(Err(reason))

    # -- AUTHORIZATION ------------------------------------------------------

    def _auth_failure(self) -> Iterator[Action]:
        self.stats.auth_failures += 1
        reply = Err(_AUTH_FAILED, pop3proto.AUTH)
        if self.stats.auth_failures >= self.config.max_auth_failures:
            yield from self._close_after(reply, "too many authentication failures")
        yield self._send(reply)

    def _plaintext_refused(self) -> Err:
        # RFC 5034 §4 / RFC 2595 §2.3: no cleartext passwords without TLS.
        return Err("plaintext authentication disallowed without TLS", pop3proto.AUTH)

    def _user(self, event: User) -> Iterator[Action]:
        if not self.plaintext_allowed:
            yield self._send(self._plaintext_refused())
            return
        # RFC 1939 §13: +OK whatever the name, so USER reveals nothing.
        self._pending_user = event.name
        yield self._send(Ok("send PASS"))

    def _pass(self, event: Pass) -> Iterator[Action]:
        user, self._pending_user = self._pending_user, None
        if user is None or not self.plaintext_allowed:  # pragma: no cover - engine order
            yield self._send(self._plaintext_refused())
            return
        if not self._check_password(user, event.password):
            yield from self._auth_failure()
            return
        yield from self._login(user)

    def _check_password(self, user: str, password: str) -> bool:
        try:
            return bool(self.authenticator.check_password(user, password))
        except Exception:
            log.exception("authenticator failed")
            return False

    def _apop(self, event: Apop) -> Iterator[Action]:
        timestamp = self._timestamp
        if timestamp is None:  # the engine refuses APOP without one
            yield self._send(Err("APOP not available"))
            return
        try:
            secret = self.authenticator.get_secret(event.name)
        except Exception:
            log.exception("authenticator failed")
            secret = None
        # RFC 1939 §7: MD5(timestamp + secret).  An unknown user costs the
        # same digest and comparison as a wrong one.
        expected = pop3proto.apop_digest(
            timestamp, secret if secret is not None else secrets.token_hex(16)
        )
        matches = hmac.compare_digest(expected.encode("ascii"), event.digest.encode("ascii"))
        if not matches or secret is None:
            yield from self._auth_failure()
            return
        yield from self._login(event.name)

    def _make_mechanism(self, name: str) -> pop3proto.SaslServerMechanism:
        auth = self.authenticator
        if name == "PLAIN":
            return pop3proto.PlainServer(self._check_password)
        if name == "LOGIN":
            return pop3proto.LoginServer(self._check_password)
        if name == "CRAM-MD5":
            # RFC 2195 §2: a unique msg-id-like challenge.
            challenge = _apop_timestamp(self.config.hostname)
            return pop3proto.CramMD5Server(auth.get_secret, challenge=challenge)
        assert name == "SCRAM-SHA-256"
        return pop3proto.ScramServer(auth.scram_credentials)

    def _auth(self, event: Auth) -> Iterator[Action]:
        name = event.mechanism
        if name not in self.config.sasl_mechanisms:
            yield self._send(Err("unsupported authentication mechanism"))
            return
        if name in _PLAINTEXT_MECHANISMS and not self.plaintext_allowed:
            yield self._send(self._plaintext_refused())
            return
        mechanism = self._make_mechanism(name)
        if mechanism.server_first and event.initial_response is not None:
            # RFC 5034 §4: an initial response to a mechanism without a
            # client-first step is answered -ERR.
            yield self._send(Err(f"{name} does not take an initial response"))
            return
        self._mechanism = mechanism
        yield from self._sasl_step(event.initial_response)

    def _sasl_line(self, event: SaslResponse | SaslCancel) -> Iterator[Action]:
        if isinstance(event, SaslCancel):
            # RFC 5034 §4: "*" cancels; the server MUST answer -ERR.
            self._mechanism = None
            yield self._send(Err("authentication cancelled"))
            return
        yield from self._sasl_step(event.data)

    def _sasl_step(self, response: bytes | None) -> Iterator[Action]:
        mechanism = self._mechanism
        assert mechanism is not None
        try:
            challenge = mechanism.step(response)
        except (pop3proto.SaslError, ValueError):
            # The reason (bad proof, malformed message) stays private: the
            # client gets the same answer as for a wrong password.
            self._mechanism = None
            yield from self._auth_failure()
            return
        if challenge is not None:
            yield self._send(SaslChallenge(challenge))
            return
        self._mechanism = None
        user = mechanism.authenticated_user
        assert user is not None
        yield from self._login(user)

    def _login(self, user: str) -> Iterator[Action]:
        """Credentials are good: lock and open the maildrop (RFC 1939 §4)."""
        try:
            maildrop = self.backend.open(user)
        except MaildropInUse:
            # RFC 2449 §8.1.2: credentials fine, maildrop busy.
            yield self._send(Err("maildrop already locked", pop3proto.IN_USE))
            return
        except (MaildropError, OSError) as exc:
            log.error("cannot open the maildrop of %s: %s", user, exc)
            yield self._send(Err("unable to open maildrop", pop3proto.SYS_TEMP))
            return
        try:
            messages = list(maildrop.messages())
        except Exception:
            log.exception("cannot list the maildrop of %s", user)
            maildrop.close()
            yield self._send(Err("unable to open maildrop", pop3proto.SYS_TEMP))
            return
        self._maildrop = maildrop
        self._messages = messages
        self._deleted = set()
        self._retrieved = set()
        self.stats.user = user
        count, size = self._totals()
        yield self._send(Ok(f"maildrop has {count} messages ({size} octets)"))

    def _stls(self) -> Iterator[Action]:
        # The engine refuses STLS when TLS is active, after UTF8 and with
        # bytes pipelined after it (the CVE-2011-0411 class).
        if not self.config.tls_available:
            yield self._send(Err("TLS not available"))
            return
        self._pending_user = None
        yield self._send(Ok("Begin TLS negotiation now"))
        yield StartTLS()

    def _lang(self, event: Lang) -> Ok | Err | LangOk:
        # RFC 6856 §3, with English as the only language.
        if event.language is None:
            return LangOk((("en", "English"),), "Language listing follows")
        wanted = event.language.lower()
        if wanted == "*" or wanted.split("-", 1)[0] == "en":
            return Ok("en Language unchanged")
        return Err("unsupported language")

    # -- TRANSACTION --------------------------------------------------------

    def _totals(self) -> tuple[int, int]:
        sizes = [m.size for i, m in enumerate(self._messages) if i not in self._deleted]
        return len(sizes), sum(sizes)

    def _lookup(self, number: int) -> tuple[int, Err | None]:
        """Message number -> 0-based index, or the -ERR to send.

        RFC 1939 §5: numbers are fixed for the session (DELE never
        renumbers), and a message marked deleted may not be referenced.
        """
        index = number - 1
        if not 0 <= index < len(self._messages):
            return index, Err("no such message")
        if index in self._deleted:
            return index, Err("message already deleted")
        return index, None

    def _list(self, event: List) -> ListOk | ListEntryOk | Err:
        if event.number is None:
            sizes = {i + 1: m.size for i, m in enumerate(self._messages) if i not in self._deleted}
            count, size = self._totals()
            return ListOk(sizes, f"{count} messages ({size} octets)")
        index, error = self._lookup(event.number)
        if error is not None:
            return error
        return ListEntryOk(event.number, self._messages[index].size)

    def _uidl(self, event: Uidl) -> UidlOk | UidlEntryOk | Err:
        if event.number is None:
            uids = {i + 1: m.uid for i, m in enumerate(self._messages) if i not in self._deleted}
            return UidlOk(uids)
        index, error = self._lookup(event.number)
        if error is not None:
            return error
        return UidlEntryOk(event.number, self._messages[index].uid)

    def _dele(self, event: Dele) -> Ok | Err:
        index, error = self._lookup(event.number)
        if error is not None:
            return error
        # Only marked: removal happens in UPDATE (RFC 1939 §6).
        self._deleted.add(index)
        return Ok(f"message {event.number} deleted")

    def _retr(self, event: Retr) -> Iterator[Action]:
        index = event.number - 1
        messages = self._messages
        if not 0 <= index < len(messages) or index in self._deleted:
            _, error = self._lookup(event.number)
            assert error is not None
            return iter((self._send(error),))
        maildrop = self._maildrop
        assert maildrop is not None
        start = _retr_start(messages[index].size)
        return self._stream(maildrop.open_message, index, start, retrieval=True)

    def _top(self, event: Top) -> Iterator[Action]:
        index, error = self._lookup(event.number)
        if error is not None:
            yield self._send(error)
            return
        maildrop = self._maildrop
        assert maildrop is not None
        lines = event.lines
        yield from self._stream(
            lambda i: maildrop.top(i, lines), index, MessageStart("top of message follows")
        )

    def _stream(
        self,
        opener: Callable[[int], Iterator[bytes]],
        index: int,
        start: MessageStart,
        *,
        retrieval: bool = False,
    ) -> Generator[Action, None, bool]:
        """Stream a body: -ERR if it cannot even start, else +OK, data, ".".

        The status line and as much of the body as fits in ``chunk_size``
        octets go out as one :class:`SendBytes` (with the terminator too
        when the whole body fits: one action for a small message); a larger
        body continues in pieces of at most ``chunk_size``, each read only
        when the adapter asks for the next action.  With *retrieval* (RETR),
        the message counts as retrieved once the adapter asks for the
        action after the terminator.

        Returns whether the whole body was sent.
        """
        chunks: Iterator[bytes] | None = None
        try:
            chunks = opener(index)
            chunk = next(chunks, None)
        except OSError as exc:
            log.error("cannot read a message: %s", exc)
            _close_iterator(chunks)
            yield self._send(Err("unable to read message", pop3proto.SYS_TEMP))
            return False
        send = self._conn.send
        stats = self.stats
        limit = self.config.chunk_size
        parts: list[bytes] = []
        try:
            head = send(start)
            parts.append(head)
            total = len(head)
            # Gather the status line and the leading chunks that fit.
            while chunk is not None and total + len(chunk) <= limit:
                data = send(MessageData(chunk if type(chunk) is bytes else bytes(chunk)))
                parts.append(data)
                total += len(data)
                chunk = next(chunks, None)
            if chunk is None:
                parts.append(send(_MESSAGE_END))
                data = b"".join(parts)
                stats.bytes_sent += len(data)
                yield SendBytes(data)
                if retrieval:
                    self._retrieved.add(index)
                    stats.retrieved += 1
                return True
            data = b"".join(parts) if len(parts) > 1 else head
            parts = []
            stats.bytes_sent += len(data)
            yield SendBytes(data)
            while chunk is not None:
                for offset in range(0, len(chunk), limit):
                    # (A whole-bytes slice is the chunk itself, not a copy.)
                    piece = chunk[offset : offset + limit]
                    data = send(MessageData(piece if type(piece) is bytes else bytes(piece)))
                    stats.bytes_sent += len(data)
                    yield SendBytes(data)
                chunk = next(chunks, None)
        except OSError as exc:
            # Half a body is on the wire and no -ERR can follow a +OK:
            # the only honest thing left is to drop the connection, without
            # UPDATE (after what was gathered, as if sent piece by piece).
            log.error("error while reading a message: %s", exc)
            if parts:
                data = b"".join(parts)
                stats.bytes_sent += len(data)
                yield SendBytes(data)
            self._end("I/O error")
            raise _Stop from None
        finally:
            _close_iterator(chunks)
        yield self._send(_MESSAGE_END)
        if retrieval:
            self._retrieved.add(index)
            stats.retrieved += 1
        return True

    # -- QUIT and UPDATE ------------------------------------------------------

    def _quit(self) -> Iterator[Action]:
        maildrop = self._maildrop
        if maildrop is None:
            # RFC 1939 §4: QUIT in AUTHORIZATION, no UPDATE.
            yield from self._close_after(Ok("bye"), "quit")
            return
        # RFC 1939 §6: the UPDATE state.  Remove what was marked (and, with
        # EXPIRE 0, what was retrieved), release the lock, then answer.
        doomed = set(self._deleted)
        if self.config.expire == 0:
            doomed |= self._retrieved
        ok = True
        if doomed:
            try:
                ok = bool(maildrop.commit(frozenset(doomed)))
            except Exception:
                log.exception("commit failed for %s", self.stats.user)
                ok = False
        if ok:
            self.stats.deleted = len(doomed)
        self._release()
        if ok:
            reply: Ok | Err = Ok(f"bye ({len(doomed)} messages deleted)")
        else:
            reply = Err("some deleted messages not removed", pop3proto.SYS_TEMP)
        yield from self._close_after(reply, "quit")


_MESSAGE_END = MessageEnd()
# "+OK <size> octets" openers by size (events are immutable): a maildrop
# of similar messages builds each one once.
_RETR_STARTS: dict[int, MessageStart] = {}


def _retr_start(size: int) -> MessageStart:
    start = _RETR_STARTS.get(size)
    if start is None:
        if len(_RETR_STARTS) >= 4096:
            _RETR_STARTS.clear()
        start = _RETR_STARTS[size] = MessageStart(f"{size} octets")
    return start


def _close_iterator(chunks: Iterator[bytes] | None) -> None:
    close = getattr(chunks, "close", None)
    if close is not None:
        try:
            close()
        except Exception:
            log.exception("error while closing a message stream")


class ServerBase:
    """What the blocking, asyncio and trio servers share before any I/O:
    their options, checked, and the session config derived from them.

    A server subclasses it with its I/O layer's state in :meth:`_init_io`,
    so that all three take the same arguments (see each ``Server``'s
    docstring) from one place.  STLS is offered (``tls_available``) when
    there is a TLS context, TLS is not implicit, and the I/O layer can start
    TLS mid-stream (:attr:`stls_supported`: asyncio needs Python 3.11).
    """

    #: Whether this I/O layer can start TLS in the middle of a stream (STLS).
    stls_supported: ClassVar[bool] = True

    def __init__(
        self,
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
        linger: float = 1.0,
        backlog: int = 128,
        trust_loopback: bool = True,
    ) -> None:
        """Check the arguments; see the class docstring."""
        if implicit_tls and ssl_context is None:
            raise ValueError("implicit_tls needs an ssl_context")
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        if not handshake_timeout > 0:
            raise ValueError("handshake_timeout must be positive")
        stls = ssl_context is not None and not implicit_tls and self.stls_supported
        base = config if config is not None else ServerConfig()
        self.config = dataclasses.replace(base, tls_available=stls)
        self.backend = backend
        self.authenticator = authenticator
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self.implicit_tls = implicit_tls
        self.max_connections = max_connections
        self.handshake_timeout = handshake_timeout
        self.linger = linger
        self.backlog = backlog
        self.trust_loopback = trust_loopback
        self._init_io()

    def _init_io(self) -> None:
        """Set up the I/O layer's own state (the blocking server binds here)."""

"""What a POP3 server is configured with, and what it reports.

* :class:`ServerConfig`: the server-wide settings every session reads.
* :class:`SessionStats` and :class:`EndReason`: what a session did and why
  it ended (logged, and passed to the ``on_session_end`` hook).
* :data:`SUPPORTED_MECHANISMS`: the SASL mechanisms a session can run.
* Policy helpers for the runtime loops: :func:`is_loopback_address` (the
  default plaintext policy trusts loopback peers) and
  :func:`busy_response` (the refusal over the connection cap).
"""

from __future__ import annotations

import enum
import ipaddress
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import pop3proto
from pop3proto import SERVER, Connection, Err
from pop3proto.sasl import OAuthDenial

__all__ = [
    "ExtensionCommand",
    "ExtensionReply",
    "EndReason",
    "ServerConfig",
    "SessionStats",
    "SUPPORTED_MECHANISMS",
    "DEFAULT_MECHANISMS",
    "AUTHENTICATOR_CREDENTIALS",
    "TokenVerifier",
    "busy_response",
    "is_loopback_address",
]

#: What an :class:`pop3proto.adapters.server.Authenticator` can
#: verify, in the engine registry's words (:attr:`pop3proto.Mechanism.server_credential`):
#: a password (``check_password``), a shared secret (``get_secret``) and
#: SCRAM-SHA-256 keys (``scram_credentials``).
AUTHENTICATOR_CREDENTIALS: frozenset[str] = frozenset({"password", "secret", "scram-sha-256"})

#: The credential kinds with a builder: the authenticator's, and those the
#: server derives (SCRAM-SHA-1 keys from a shared secret; a bearer token,
#: checked by ``ServerConfig.token_verifier``).
_VERIFIABLE: frozenset[str] = AUTHENTICATOR_CREDENTIALS | {"scram-sha-1", "token"}

#: The SASL mechanisms the session can run, strongest first: every entry of
#: the engine's registry (SCRAM-SHA-256, SCRAM-SHA-1, CRAM-MD5, OAUTHBEARER,
#: XOAUTH2, PLAIN, LOGIN).
SUPPORTED_MECHANISMS: tuple[str, ...] = tuple(
    name for name, entry in pop3proto.MECHANISMS.items() if entry.server_credential in _VERIFIABLE
)

#: The default of ``ServerConfig.sasl_mechanisms``: all but SCRAM-SHA-1,
#: which adds nothing where SCRAM-SHA-256 is offered (opt in for clients
#: that know only SHA-1).  OAUTHBEARER and XOAUTH2 are advertised only when
#: a ``token_verifier`` is configured.
DEFAULT_MECHANISMS: tuple[str, ...] = tuple(m for m in SUPPORTED_MECHANISMS if m != "SCRAM-SHA-1")


class TokenVerifier(Protocol):
    """Checks an OAuth 2.0 bearer token (XOAUTH2, OAUTHBEARER; RFC 7628).

    Called with the user named in the SASL message and the token.  Returns
    the identity to log in as (usually *user*; a verifier may map the
    token's subject to a maildrop), or an :class:`pop3proto.sasl.OAuthDenial`
    whose fields fill the JSON error challenge the client is sent before the
    ``-ERR`` (RFC 7628 §3.2.2).  It must never log the token.  An exception
    counts as a denial (and is logged without the token).  It is called
    where the authenticator is: in a worker thread for the asyncio and trio
    servers, so a slow verifier holds up only its own session.
    """

    def __call__(self, user: str, token: str) -> str | OAuthDenial: ...


class EndReason(str, enum.Enum):
    """Why a session ended: :attr:`SessionStats.reason`.

    A ``str`` (``EndReason.QUIT == "quit"``) that prints as its value, so
    the session-end log line and the hook's users read plain words.  How a
    runtime closes the transport after each one is decided in one place,
    :func:`pop3proto.adapters.server._loop.closing`.
    """

    #: The client sent QUIT (after UPDATE, if it had logged in).
    QUIT = "quit"
    #: The client closed its side without QUIT (RFC 1939 §6: no UPDATE).
    EOF = "eof"
    #: The client was silent for ``idle_timeout`` seconds.
    TIMEOUT = "timeout"
    #: Input nothing sensible can answer (bytes pipelined after STLS, an
    #: oversize SASL line, which gets a ``-ERR`` first): the connection is
    #: dropped.
    PROTOCOL_ERROR = "protocol error"
    #: ``max_bad_commands`` reached.
    TOO_MANY_BAD_COMMANDS = "too many bad commands"
    #: ``max_auth_failures`` reached.
    TOO_MANY_AUTH_FAILURES = "too many authentication failures"
    #: The transport failed or closed under the session, or the server
    #: abandoned it (shutdown).
    CONNECTION_LOST = "connection lost"
    #: The maildrop failed in the middle of a message: half a body is on
    #: the wire and no -ERR can follow a +OK, so the connection is dropped.
    IO_ERROR = "I/O error"

    def __str__(self) -> str:
        return str(self.value)


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
        reason: why the session ended, an :class:`EndReason` (a ``str``:
            ``"quit"``, ``"eof"``, ``"timeout"``...); ``""`` before.
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


#: What an :class:`ExtensionCommand` handler returns: ``Ok``/``Err`` (a
#: status line), or for a multi-line command ``(text, body)``: ``+OK text``
#: then *body* (octets with CRLF line ends; dot-stuffed by the engine).
ExtensionReply = pop3proto.Ok | pop3proto.Err | tuple[str, bytes]


@dataclass(frozen=True)
class ExtensionCommand:
    """How the application answers a command the session does not know
    (a vendor command like ``XOIP``, an extension; RFC 2449 §3).

    Fields:
        handler: ``handler(session, event)`` with the
            :class:`~._session.ServerSession` (read its ``state``, ``user``,
            ``tls``) and the :class:`pop3proto.Extension` event (its
            ``arguments``); returns an :data:`ExtensionReply`.  It runs like
            a backend call: in a worker thread on the event-loop servers.
            An exception is answered ``-ERR [SYS/TEMP]`` (and logged).  The
            command is accepted in AUTHORIZATION and TRANSACTION: refuse it
            in the handler where it makes no sense.
        multiline: a positive reply carries a body (``(text, body)``).
        capability: the CAPA entry advertising it (``"XOIP"`` or
            ``("X-VENDOR", "arg")``), or ``None``.
    """

    handler: Callable[[Any, pop3proto.Extension], ExtensionReply]
    multiline: bool = False
    capability: str | tuple[str, ...] | None = None


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
            :data:`SUPPORTED_MECHANISMS`, in the order advertised (default
            :data:`DEFAULT_MECHANISMS`).  Naming OAUTHBEARER or XOAUTH2
            needs a *token_verifier*; by default they are offered exactly
            when one is configured.
        token_verifier: checks OAuth 2.0 bearer tokens (a
            :class:`TokenVerifier`), or ``None``: no token logins.
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
        chunk_size: the largest body piece per ``Send`` action.
        strict_user: the engine's ``strict_user`` (only PASS or QUIT may
            follow USER).
        on_session_end: called with the :class:`SessionStats` when a session
            ends (after the log line).
        commands: keyword -> :class:`ExtensionCommand`, the commands the
            application answers itself (CAPA lists their capabilities).

    Connection admission (applied by the servers from accept; see
    :mod:`pop3proto.adapters.server._admission`):
        max_preauth_per_ip: connections not yet logged in from one address
            (TLS handshakes included); more are refused.  ``None``: no limit.
        max_sessions_per_ip: logged-in sessions from one address (Dovecot's
            ``mail_max_userip_connections`` is 10 per user and address); an
            address holding this many gets no new connection.  ``None``: no
            limit.
        line_timeout: seconds a command line may take from its first octet
            to its line end, however the octets trickle in.
        login_timeout: seconds from accept to a successful login (TLS
            handshake included), however active the client is.

    Authentication failures (SECURITY.md "Authentication failures"; see
    :mod:`~._penalties`), shared by all connections of one server:

        auth_failure_delay: seconds each failed login waits before its
            ``-ERR`` (2, like Dovecot); ``0`` turns off the delay and the
            penalties (tests do).
        auth_penalty_max: the cap of the penalty, which doubles the delay
            for each recent failure from the client's address or on the
            account (15 s).  A correct password waits the penalty too.
        auth_penalty_reset: seconds without a failure after which an
            address or an account starts afresh (900).
        auth_penalty_entries: the most addresses, and accounts, remembered
            (least recently failed forgotten first).
    """

    hostname: str = field(default_factory=_default_hostname)
    greeting: str = "POP3 server ready"
    allow_plaintext_auth: bool | None = None
    tls_available: bool = False
    apop: bool = True
    sasl_mechanisms: tuple[str, ...] = DEFAULT_MECHANISMS
    token_verifier: TokenVerifier | None = field(default=None, repr=False)
    idle_timeout: float = 600.0
    max_bad_commands: int = 20
    max_auth_failures: int = 3
    expire: int | Literal["NEVER"] | None = None
    login_delay: int | None = None
    implementation: str | None = f"pop3proto {pop3proto.__version__}"
    chunk_size: int = 65536
    strict_user: bool = True
    on_session_end: Callable[[SessionStats], None] | None = None
    commands: Mapping[str, ExtensionCommand] = field(default_factory=dict)
    # -- connection admission (SECURITY.md "Connection admission") --
    max_preauth_per_ip: int | None = 10
    max_sessions_per_ip: int | None = 10
    line_timeout: float = 60.0
    login_timeout: float = 120.0
    # -- Authentication failures (SECURITY.md "Authentication failures") --
    auth_failure_delay: float = 2.0
    auth_penalty_max: float = 15.0
    auth_penalty_reset: float = 900.0
    auth_penalty_entries: int = 100_000

    def __post_init__(self) -> None:
        commands: dict[str, ExtensionCommand] = {}
        for name, command in self.commands.items():
            try:
                keyword = pop3proto.Extension(name).name
            except pop3proto.LocalProtocolError as exc:
                raise ValueError(f"command {name!r}: {exc}") from None
            commands[keyword] = command
        object.__setattr__(self, "commands", commands)
        mechanisms = tuple(m.upper() for m in self.sasl_mechanisms)
        unknown = [m for m in mechanisms if m not in SUPPORTED_MECHANISMS]
        if unknown:
            raise ValueError(f"unsupported SASL mechanisms: {', '.join(unknown)}")
        # The default list names the token mechanisms too, offered only
        # with a verifier; a list naming them otherwise is a mistake.
        if self.token_verifier is None and mechanisms != DEFAULT_MECHANISMS:
            tokens = [m for m in mechanisms if pop3proto.MECHANISMS[m].server_credential == "token"]
            if tokens:
                raise ValueError(f"{', '.join(tokens)} need a token_verifier")
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
        self._check_auth_failures()
        self._check_admission()

    def _check_auth_failures(self) -> None:
        """The authentication-failure fields (one message per mistake)."""
        delay, cap = self.auth_failure_delay, self.auth_penalty_max
        if not 0 <= delay <= 3600:
            raise ValueError("auth_failure_delay must be between 0 and 3600 seconds")
        if not delay <= cap <= 3600:
            raise ValueError("auth_penalty_max must be between auth_failure_delay and 3600 seconds")
        if not self.auth_penalty_reset > 0:
            raise ValueError("auth_penalty_reset must be positive")
        if self.auth_penalty_entries < 1:
            raise ValueError("auth_penalty_entries must be at least 1")

    def _check_admission(self) -> None:
        for name in ("max_preauth_per_ip", "max_sessions_per_ip"):
            limit = getattr(self, name)
            if limit is not None and (isinstance(limit, bool) or limit < 1):
                raise ValueError(f"{name} must be None (no limit) or at least 1")
        for name in ("line_timeout", "login_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")


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

"""The events: what a POP3 peer says, as typed, immutable values.

Every event is a frozen, slotted dataclass validated on construction, so a
value that exists is one that can go on the wire: constructing an event with
a bad field raises :class:`~pop3proto.LocalProtocolError` at once, not later
when it is sent.

There are three families:

* **Commands** (client -> server): one class per RFC 1939/2449/2595/5034/6856
  command, named after it (:class:`User`, :class:`Retr`, ...), plus
  :class:`Extension` for commands the engine does not know (``LAST``,
  ``RPOP``, ``XTND ...``) and :class:`BadCommand`, which the *server* role
  emits for a line it cannot accept so the application can answer ``-ERR``
  and carry on (RFC 1939 §3).
* **SASL continuation lines** (RFC 5034 §4): :class:`SaslChallenge`
  (server -> client), :class:`SaslResponse` and :class:`SaslCancel`
  (client -> server).
* **Responses** (server -> client) live in :mod:`pop3proto._response_events`:
  the greeting, ``+OK``/``-ERR``, the typed payloads and the streamed
  message body.  This module holds their base, :class:`Response`.

:class:`ConnectionClosed` reports that the connection is over, and why
(:class:`CloseReason`): the session ended, the peer closed, or you did.

``-ERR`` is an ordinary event (:class:`Err`), never an exception.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import ClassVar, TypeVar

from ._errors import LocalProtocolError
from ._responses import ResponseCode
from ._util import check_number, check_text, check_token

__all__ = [
    "Event",
    "Command",
    "Response",
    "User",
    "Pass",
    "Apop",
    "Auth",
    "Stat",
    "List",
    "Retr",
    "Dele",
    "Noop",
    "Rset",
    "Quit",
    "Top",
    "Uidl",
    "Last",
    "Capa",
    "Stls",
    "Utf8",
    "Lang",
    "Extension",
    "BadCommand",
    "SaslChallenge",
    "SaslResponse",
    "SaslCancel",
    "ConnectionClosed",
    "CloseReason",
    "KNOWN_COMMANDS",
]


class Event:
    """Base class of every event."""

    __slots__ = ()


class Command(Event):
    """Base class of the commands a client sends.

    ``keyword`` is the command word on the wire (upper case); ``secret``
    says that the parameters may hold a credential (a user name counts: it
    is half of one), so a refused line is never shown.
    """

    __slots__ = ()
    keyword: ClassVar[str] = ""
    secret: ClassVar[bool] = False


#: Keyword -> event class of every command the engine knows (filled by
#: :func:`_known`; the command table in ``_commands`` has a spec for each).
KNOWN_COMMANDS: dict[str, type[Command]] = {}

_C = TypeVar("_C", bound=type[Command])


def _known(cls: _C) -> _C:
    """Register a command class under its keyword."""
    KNOWN_COMMANDS[cls.keyword] = cls
    return cls


class Response(Event):
    """Base class of the lines a server sends (status lines and payloads)."""

    __slots__ = ()


def _check_bytes(value: object, what: str) -> bytes:
    # Exact bytes only: a bytearray would let the caller mutate an event
    # after it was validated (and h11 learned to return exact bytes too).
    if type(value) is not bytes:
        raise LocalProtocolError(f"{what} must be bytes, not {type(value).__name__}")
    return value


def _check_code(value: object) -> ResponseCode | None:
    if value is not None and not isinstance(value, ResponseCode):
        raise LocalProtocolError(f"code must be a ResponseCode or None, not {type(value).__name__}")
    return value


# ---------------------------------------------------------------------------
# Commands (RFC 1939 §§4-7, RFC 2449 §5, RFC 2595 §4, RFC 5034 §4, RFC 6856)
# ---------------------------------------------------------------------------


@_known
@dataclass(frozen=True, slots=True)
class User(Command):
    """``USER name`` (RFC 1939 §7).

    Fields:
        name: the mailbox name; one parameter, printable, no whitespace.
            Non-ASCII names may be sent only in UTF-8 mode or when the server
            advertised ``UTF8 USER`` (RFC 6856 §2.2); the connection checks.
    """

    keyword: ClassVar[str] = "USER"
    secret: ClassVar[bool] = True
    name: str

    def __post_init__(self) -> None:
        check_token(self.name, "USER name")


@_known
@dataclass(frozen=True, slots=True)
class Pass(Command):
    """``PASS string`` (RFC 1939 §7).

    Fields:
        password: everything after ``PASS SP`` up to CRLF.  RFC 1939 lets the
            server treat spaces as part of the password, so spaces (even
            leading ones) are kept, never trimmed.  Must not be empty.

    The password never appears in ``repr()``.
    """

    keyword: ClassVar[str] = "PASS"
    secret: ClassVar[bool] = True
    password: str = field(repr=False)

    def __post_init__(self) -> None:
        check_text(self.password, "PASS argument")
        if not self.password:
            raise LocalProtocolError("PASS needs a non-empty argument")
        if not self.password.isprintable():
            raise LocalProtocolError("PASS argument must be printable")


_HEX32 = re.compile(r"[0-9a-f]{32}\Z")


@_known
@dataclass(frozen=True, slots=True)
class Apop(Command):
    """``APOP name digest`` (RFC 1939 §7).

    Fields:
        name: the mailbox name (as for :class:`User`).
        digest: 32 lower-case hex digits: MD5 of the greeting's timestamp
            followed by the shared secret (see :func:`pop3proto.apop_digest`).
    """

    keyword: ClassVar[str] = "APOP"
    secret: ClassVar[bool] = True
    name: str
    digest: str

    def __post_init__(self) -> None:
        check_token(self.name, "APOP name")
        if not isinstance(self.digest, str) or not _HEX32.match(self.digest):
            raise LocalProtocolError("APOP digest must be 32 lower-case hex digits")


_MECH = re.compile(r"[A-Z0-9_-]{1,20}\Z")


@_known
@dataclass(frozen=True, slots=True)
class Auth(Command):
    """``AUTH mechanism [initial-response]`` (RFC 5034 §4).

    Fields:
        mechanism: the SASL mechanism name, 1-20 characters of
            ``A-Z 0-9 - _`` (RFC 4422 §3.1); given in any case, stored upper.
        initial_response: the decoded client-first data, or ``None`` for no
            initial response.  ``b""`` is sent as ``=`` (an empty initial
            response).  The whole command must fit in 255 octets; if it would
            not, send it without one and answer the server's empty challenge
            with it (:func:`pop3proto.fits_initial_response` tells).
    """

    keyword: ClassVar[str] = "AUTH"
    secret: ClassVar[bool] = True
    mechanism: str
    initial_response: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.mechanism, str):
            raise LocalProtocolError("AUTH mechanism must be str")
        upper = self.mechanism.upper()
        if not upper.isascii() or not _MECH.match(upper):
            raise LocalProtocolError(
                "AUTH mechanism must be 1-20 characters of A-Z, 0-9, '-' and '_'"
            )
        object.__setattr__(self, "mechanism", upper)
        if self.initial_response is not None:
            _check_bytes(self.initial_response, "AUTH initial_response")


@_known
@dataclass(frozen=True, slots=True)
class Stat(Command):
    """``STAT`` (RFC 1939 §5): ask for the message count and total size."""

    keyword: ClassVar[str] = "STAT"


@_known
@dataclass(frozen=True, slots=True)
class List(Command):
    """``LIST [msg]`` (RFC 1939 §5).

    Fields:
        number: a message number (>= 1) for a one-line :class:`ListEntryOk`
            reply, or ``None`` for the multi-line :class:`ListOk` scan listing.
    """

    keyword: ClassVar[str] = "LIST"
    number: int | None = None

    def __post_init__(self) -> None:
        if self.number is not None:
            check_number(self.number, "LIST message number")


@_known
@dataclass(frozen=True, slots=True)
class Retr(Command):
    """``RETR msg`` (RFC 1939 §5).

    Fields:
        number: the message number (>= 1).  A positive reply is streamed as
            :class:`MessageStart`, :class:`MessageData`..., :class:`MessageEnd`.
    """

    keyword: ClassVar[str] = "RETR"
    number: int

    def __post_init__(self) -> None:
        check_number(self.number, "RETR message number")


@_known
@dataclass(frozen=True, slots=True)
class Dele(Command):
    """``DELE msg`` (RFC 1939 §5): mark a message deleted.

    Fields:
        number: the message number (>= 1).  Nothing is removed until QUIT
            ends a TRANSACTION (the UPDATE state).
    """

    keyword: ClassVar[str] = "DELE"
    number: int

    def __post_init__(self) -> None:
        check_number(self.number, "DELE message number")


@_known
@dataclass(frozen=True, slots=True)
class Noop(Command):
    """``NOOP`` (RFC 1939 §5)."""

    keyword: ClassVar[str] = "NOOP"


@_known
@dataclass(frozen=True, slots=True)
class Rset(Command):
    """``RSET`` (RFC 1939 §5): unmark every message marked deleted."""

    keyword: ClassVar[str] = "RSET"


@_known
@dataclass(frozen=True, slots=True)
class Quit(Command):
    """``QUIT`` (RFC 1939 §§4, 6).

    From AUTHORIZATION it just ends the session; from TRANSACTION it enters
    UPDATE, where the server removes the marked messages.
    """

    keyword: ClassVar[str] = "QUIT"


@_known
@dataclass(frozen=True, slots=True)
class Top(Command):
    """``TOP msg n`` (RFC 1939 §7).

    Fields:
        number: the message number (>= 1).
        lines: how many body lines to send after the headers (>= 0).
    """

    keyword: ClassVar[str] = "TOP"
    number: int
    lines: int

    def __post_init__(self) -> None:
        check_number(self.number, "TOP message number")
        check_number(self.lines, "TOP line count", minimum=0)


@_known
@dataclass(frozen=True, slots=True)
class Uidl(Command):
    """``UIDL [msg]`` (RFC 1939 §7).

    Fields:
        number: a message number for a one-line :class:`UidlEntryOk`, or
            ``None`` for the multi-line :class:`UidlOk` listing.
    """

    keyword: ClassVar[str] = "UIDL"
    number: int | None = None

    def __post_init__(self) -> None:
        if self.number is not None:
            check_number(self.number, "UIDL message number")


@_known
@dataclass(frozen=True, slots=True)
class Last(Command):
    """``LAST`` (RFC 1081; removed by RFC 1725): answered by :class:`LastOk`.

    Asks for the highest message number accessed in this session.  Old
    clients (fetchmail among them) use it to skip mail already read when a
    server has no UIDL; a server that does not know it answers ``-ERR``.
    """

    keyword: ClassVar[str] = "LAST"


@_known
@dataclass(frozen=True, slots=True)
class Capa(Command):
    """``CAPA`` (RFC 2449 §5): answered by :class:`CapaOk`."""

    keyword: ClassVar[str] = "CAPA"


@_known
@dataclass(frozen=True, slots=True)
class Stls(Command):
    """``STLS`` (RFC 2595 §4): after ``+OK`` the connection pauses for TLS."""

    keyword: ClassVar[str] = "STLS"


@_known
@dataclass(frozen=True, slots=True)
class Utf8(Command):
    """``UTF8`` (RFC 6856 §2): switch the session to UTF-8 mode."""

    keyword: ClassVar[str] = "UTF8"


@_known
@dataclass(frozen=True, slots=True)
class Lang(Command):
    """``LANG [range]`` (RFC 6856 §3).

    Fields:
        language: a language range such as ``de`` or ``*`` to switch the
            language of response text (a one-line :class:`Ok` reply), or
            ``None`` to list the available languages (:class:`LangOk`).
    """

    keyword: ClassVar[str] = "LANG"
    language: str | None = None

    def __post_init__(self) -> None:
        if self.language is not None:
            check_token(self.language, "LANG range")
            if not self.language.isascii():
                raise LocalProtocolError("LANG range must be ASCII")


_KEYWORD = re.compile(r"[A-Za-z0-9][!-~]{2,3}\Z")


@dataclass(frozen=True, slots=True)
class Extension(Command):
    """A command the engine has no class for (``LAST``, ``RPOP``, ``XTND``...).

    A client sends one for a command the engine has no class for.  A server
    receives one only for the keywords its application registered
    (``Connection(SERVER, extension_commands=...)``); any other unknown
    keyword arrives as :class:`BadCommand`.  The engine does not know what
    the command does, so it changes no state.

    Fields:
        name: the keyword, 3-4 printable ASCII characters (RFC 2449 §3),
            stored upper-case.
        arguments: the parameters, each printable with no whitespace.
        multiline: whether a positive reply carries a multi-line body; if so
            the body is delivered as :class:`MessageStart`,
            :class:`MessageData`..., :class:`MessageEnd`.
    """

    name: str
    arguments: tuple[str, ...] = ()
    multiline: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _KEYWORD.match(self.name):
            raise LocalProtocolError("command keyword must be 3-4 printable ASCII characters")
        name = self.name.upper()
        if name in KNOWN_COMMANDS:
            # The server would parse it as the real command and the two
            # sides' states would drift apart; use the command's class.
            raise LocalProtocolError(f"{name} has its own event class; use it, not Extension")
        object.__setattr__(self, "name", name)
        if isinstance(self.arguments, (str, bytes)) or not isinstance(
            self.arguments, (tuple, list)
        ):
            raise LocalProtocolError("Extension arguments must be a sequence of str")
        args = tuple(self.arguments)
        for arg in args:
            check_token(arg, "command argument")
        object.__setattr__(self, "arguments", args)
        if not isinstance(self.multiline, bool):
            raise LocalProtocolError("multiline must be bool")


@dataclass(frozen=True, slots=True, repr=False)
class BadCommand(Command):
    """A line the *server* role could not accept as a command.

    The server application must answer it with :class:`Err` (RFC 1939 §3:
    "an unknown, unimplemented or malformed command" gets ``-ERR``); the
    session then carries on in the same state.  Never sent by a client.

    Fields:
        line: the raw line as received, without its CRLF (truncated to the
            command-line limit when it was too long).
        reason: a short explanation, suitable for the ``-ERR`` text.
        command: the parsed command when the line was well formed but not
            allowed now (e.g. ``STAT`` in AUTHORIZATION), else ``None``.
    """

    line: bytes
    reason: str
    command: Command | None = None

    def __repr__(self) -> str:
        # The line may hold a password (a refused PASS, a malformed AUTH
        # initial response or SASL line): show it only for commands that
        # carry no secret, as Pass and SaslResponse hide theirs.
        keyword = self.line.split(b" ", 1)[0].upper().decode("ascii", "replace")
        cls = KNOWN_COMMANDS.get(keyword)
        if cls is not None and not cls.secret:
            shown = repr(self.line[:60])
        else:
            shown = f"<{len(self.line)} octets hidden>"
        return f"BadCommand(line={shown}, reason={self.reason!r}, command={self.command!r})"

    def __post_init__(self) -> None:
        _check_bytes(self.line, "BadCommand line")
        check_text(self.reason, "BadCommand reason")
        if self.command is not None and (
            not isinstance(self.command, Command) or isinstance(self.command, BadCommand)
        ):
            raise LocalProtocolError("BadCommand command must be a parsed Command or None")


# ---------------------------------------------------------------------------
# SASL continuation lines (RFC 5034 §4)
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SaslChallenge(Response):
    """A server challenge ``+ base64`` during AUTH.

    Fields:
        data: the decoded challenge; ``b""`` is the empty challenge ``+ ``.
        malformed: set by a client that received a challenge that is not
            valid base64; ``data`` then holds the raw octets, and the only
            legal answer is :class:`SaslCancel` (RFC 5034 §4).  A server
            cannot send a malformed challenge.
    """

    data: bytes
    malformed: bool = False

    def __post_init__(self) -> None:
        _check_bytes(self.data, "SaslChallenge data")
        if not isinstance(self.malformed, bool):
            raise LocalProtocolError("malformed must be bool")


@dataclass(frozen=True, slots=True)
class SaslResponse(Event):
    """A client response line (base64 on the wire) during AUTH.

    Fields:
        data: the decoded response; ``b""`` is sent as an empty line.
    """

    data: bytes = field(repr=False)

    def __post_init__(self) -> None:
        _check_bytes(self.data, "SaslResponse data")


@dataclass(frozen=True, slots=True)
class SaslCancel(Event):
    """The client's ``*`` line: abandon the AUTH exchange (RFC 5034 §4).

    The server must answer with :class:`Err`.
    """


class CloseReason(enum.Enum):
    """Why a connection is closed: the :attr:`ConnectionClosed.reason` field."""

    #: The session ended by the protocol: the reply to QUIT was sent
    #: (server) or received (client), or the server refused the session
    #: (a ``-ERR`` greeting, or an unsolicited ``-ERR`` before closing).
    #: The transport may still be open: it is yours to close.
    SESSION_ENDED = "SESSION_ENDED"
    #: The peer closed the transport (``receive_data(b"")``) while the
    #: session was still going.
    PEER_CLOSED = "PEER_CLOSED"
    #: You closed it: you passed a :class:`ConnectionClosed` to ``send()``.
    LOCAL_CLOSED = "LOCAL_CLOSED"

    def __repr__(self) -> str:
        return f"CloseReason.{self.name}"


@dataclass(frozen=True, slots=True)
class ConnectionClosed(Event):
    """The connection is over; nothing more will be parsed.

    ``next_event()`` returns it once the connection reaches
    ``State.CLOSED``, and from then on returns an equal event on every call,
    forever (as h11 does): a loop that drains events must stop on it, not
    only on ``NEED_DATA``/``PAUSED``.  *reason* says which of the three ways
    the connection ended; it is fixed when the state becomes CLOSED (an EOF
    that follows the reply to QUIT does not change it).

    On the **client**: ``SESSION_ENDED`` right after the reply to QUIT (or a
    ``-ERR`` greeting) was received, before any TCP close; ``PEER_CLOSED``
    when the server closed the transport first (after a failed login, say,
    or in the middle of QUIT with *outcome_unknown* set).

    On the **server**: ``SESSION_ENDED`` once the reply to QUIT (or a
    ``-ERR`` greeting) has been sent: close the transport;
    ``PEER_CLOSED`` when the client went away without QUIT (RFC 1939 §6:
    then nothing may be removed from the maildrop).

    Either role may also *send* one (``send(ConnectionClosed())`` returns
    ``b""``) to say it is closing; later events then have ``LOCAL_CLOSED``.

    Fields:
        reason: a :class:`CloseReason`; ``PEER_CLOSED`` by default.
        outcome_unknown: ``True`` when the client sent QUIT from TRANSACTION
            and the connection closed before any reply: whether the server
            removed the marked messages is unknown (CONFORMANCE.md §2.6).
    """

    reason: CloseReason = CloseReason.PEER_CLOSED
    outcome_unknown: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.reason, CloseReason):
            raise LocalProtocolError("reason must be a CloseReason")
        if not isinstance(self.outcome_unknown, bool):
            raise LocalProtocolError("outcome_unknown must be bool")

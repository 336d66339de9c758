"""The command table: what the engine knows about each POP3 command, in one place.

Theory of operation
-------------------
Every command the engine knows has one :class:`CommandSpec` in
:data:`COMMANDS`.  It holds, for both roles, every fact about the command
that is not a transition of the session state:

* **Wire form** (RFC 2449 §3: ``keyword *(SP param) CRLF``): the keyword,
  how the server role turns the parameters into the event (``parse``) and
  how the client role turns the event's fields back into parameters
  (``params``).
* **Where it is legal**: the states that allow it (RFC 1939 §§4-7, RFC 2449
  §5, RFC 2595 §4, RFC 5034 §4, RFC 6856 §§2-3), whether it must end a
  pipelined batch (STLS, AUTH and QUIT change what the next line means:
  RFC 2449 §6.6, RFC 2595 §4, RFC 5034 §4), whether it is a login attempt,
  and any precondition on the session (``check``), which both roles apply:
  the client before sending, the server on receipt.
* **The shape of the reply** (a :class:`~pop3proto._replies.Reply`): a
  status line, a one-line payload, a multi-line listing, a streamed body or
  a SASL exchange, with the parser the client role reads it with and the
  mode it switches on.
  The server role writes each response event with the writer that
  :data:`pop3proto._writers.WRITERS` has for its type, and the reply's
  ``events`` say which events may answer the command.

The roles look everything up here, by the event's type (client) or the
keyword (server); no other module tests for a particular command class.
How a command moves the session is the one thing kept elsewhere, in the
transition tables of :mod:`pop3proto._state`, which only a few commands
appear in.  So adding a command is one :class:`CommandSpec` here plus its
event class in :mod:`pop3proto._events` (and a transition, if it has one).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

from ._errors import LocalProtocolError
from ._events import (
    Apop,
    Auth,
    BadCommand,
    Capa,
    Command,
    Dele,
    Event,
    Extension,
    Lang,
    Last,
    List,
    Noop,
    Pass,
    Quit,
    Retr,
    Rset,
    Stat,
    Stls,
    Top,
    Uidl,
    User,
    Utf8,
)
from ._readers import BadLine
from ._replies import (
    BODY,
    CAPA_LISTING,
    ERR_ONLY,
    LANG_LISTING,
    LANG_SWITCH,
    LAST,
    LIST_ENTRY,
    LIST_LISTING,
    SASL_EXCHANGE,
    STAT,
    STATUS,
    UIDL_ENTRY,
    UIDL_LISTING,
    UTF8_SWITCH,
    Reply,
)
from ._response_events import Greeting
from ._state import AUTHORIZATION, EXTENSION, TRANSACTION, USER_OK, State
from .sasl._codec import sasl_b64decode, sasl_b64encode

__all__ = [
    "CommandSpec",
    "COMMANDS",
    "BY_TYPE",
    "BY_KEYWORD",
    "EXTENSION_SPEC",
    "BAD_COMMAND_SPEC",
    "ALLOWED",
    "spec_of",
    "keyword_of",
    "allowed",
    "parse_command",
    "command_from_line",
    "parse_sasl_line",
    "write_command",
    "command_arguments",
    "command_keyword",
]


# ---------------------------------------------------------------------------
# Preconditions
# ---------------------------------------------------------------------------


class SessionView(Protocol):
    """What a precondition may look at (the connection's shared core)."""

    @property
    def tls(self) -> bool: ...

    @property
    def utf8(self) -> bool: ...

    @property
    def greeting(self) -> Greeting | None: ...

    def utf8_credentials_allowed(self) -> bool: ...


#: A precondition: the reason the command is refused now, or ``None``.
Check = Callable[[Any, SessionView], "str | None"]


def _check_stls(cmd: Stls, session: SessionView) -> str | None:
    if session.tls:
        return "TLS is already active"
    if session.utf8:
        # RFC 6856 §2.1: STLS after UTF8 is a protocol violation.
        return "STLS is not allowed after UTF8"
    return None


def _check_credentials(cmd: User | Pass | Apop, session: SessionView) -> str | None:
    # RFC 6856 §2.2: UTF-8 user names and passwords once UTF8 mode is on,
    # or before it if the server advertised "UTF8 USER".  (A server role
    # refuses them earlier, when it parses the line.)
    text = cmd.password if type(cmd) is Pass else cmd.name  # type: ignore[union-attr]
    if not text.isascii() and not session.utf8_credentials_allowed():
        return "non-ASCII credentials need UTF8 mode or a 'UTF8 USER' capability"
    return None


def _check_apop(cmd: Apop, session: SessionView) -> str | None:
    # RFC 1939 §7: APOP needs the timestamp of the greeting.
    greeting = session.greeting
    if greeting is None or greeting.timestamp is None:
        return "APOP is not available"
    return _check_credentials(cmd, session)


# ---------------------------------------------------------------------------
# Parameters: parsing (server role) and formatting (client role)
# ---------------------------------------------------------------------------

Params = list[bytes]


def _no_params(event: type[Command]) -> Callable[[Params, bool], Command]:
    def parse(params: Params, allow_utf8: bool) -> Command:
        if params:
            raise BadLine(f"{event.keyword} takes no arguments")
        return event()

    return parse


def _number(arg: bytes, what: str, *, minimum: int = 1) -> int:
    # RFC 1939 §3: message numbers are decimal; we refuse signs, spaces,
    # underscores and leading zeros that int() would quietly accept
    # ("LIST +1", "LIST 01").  Twenty digits is far beyond any maildrop and
    # keeps int() cheap on hostile input.
    if not arg.isdigit() or len(arg) > 20 or (len(arg) > 1 and arg[:1] == b"0"):
        raise BadLine(f"invalid {what}")
    value = int(arg)
    if value < minimum:
        raise BadLine(f"invalid {what}")
    return value


def _utf8_arg(arg: bytes, what: str, allow_utf8: bool) -> str:
    if arg.isascii():
        return arg.decode("ascii")
    if not allow_utf8:
        raise BadLine(f"non-ASCII {what} needs UTF8 mode")
    try:
        value = arg.decode("utf-8")
    except UnicodeDecodeError:
        raise BadLine(f"{what} is not valid UTF-8") from None
    if not value.isprintable():
        raise BadLine(f"control characters in {what}")
    return value


def _parse_user(params: Params, allow_utf8: bool) -> Command:
    if len(params) != 1:
        raise BadLine("USER takes one argument")
    return User(_utf8_arg(params[0], "user name", allow_utf8))


def _parse_apop(params: Params, allow_utf8: bool) -> Command:
    if len(params) != 2:
        raise BadLine("APOP takes a name and a digest")
    # RFC 1939 §7 says lower-case hex; upper case is harmless to accept.
    return Apop(_utf8_arg(params[0], "user name", allow_utf8), params[1].decode().lower())


def _parse_auth(params: Params, allow_utf8: bool) -> Command:
    if len(params) not in (1, 2):
        raise BadLine("AUTH takes a mechanism and an optional initial response")
    initial: bytes | None = None
    if len(params) == 2:
        # RFC 5034 §4: "=" is an empty initial response.
        initial = b"" if params[1] == b"=" else _b64(params[1])
    return Auth(params[0].decode("ascii"), initial)


def _optional_number(event: type[List] | type[Uidl]) -> Callable[[Params, bool], Command]:
    def parse(params: Params, allow_utf8: bool) -> Command:
        if len(params) > 1:
            raise BadLine(f"{event.keyword} takes at most one argument")
        return event(_number(params[0], "message number") if params else None)

    return parse


def _one_number(event: type[Retr] | type[Dele]) -> Callable[[Params, bool], Command]:
    def parse(params: Params, allow_utf8: bool) -> Command:
        if len(params) != 1:
            raise BadLine(f"{event.keyword} takes one argument")
        return event(_number(params[0], "message number"))

    return parse


def _parse_top(params: Params, allow_utf8: bool) -> Command:
    if len(params) != 2:
        raise BadLine("TOP takes a message number and a line count")
    return Top(_number(params[0], "message number"), _number(params[1], "line count", minimum=0))


def _parse_lang(params: Params, allow_utf8: bool) -> Command:
    if len(params) > 1:
        raise BadLine("LANG takes at most one argument")
    return Lang(params[0].decode("ascii") if params else None)


def _parse_pass(params: Params, allow_utf8: bool) -> Command:
    # RFC 1939 §7: the argument is the rest of the line, spaces included
    # (the spec's rest_of_line), so params is that one string or nothing.
    if not params:
        raise BadLine("PASS needs an argument")
    password = _utf8_arg(params[0], "password", allow_utf8)
    if not password.isprintable():
        raise BadLine("control characters in password")
    return Pass(password)


def _b64(data: bytes) -> bytes:
    try:
        return sasl_b64decode(data)
    except ValueError:
        raise BadLine("invalid base64") from None


def _none(cmd: Command) -> tuple[str, ...]:
    return ()


def _optional(value: object) -> tuple[str, ...]:
    return () if value is None else (str(value),)


# ---------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class CommandSpec:
    """Everything the engine knows about one command.

    Fields:
        event: the event class (its ``keyword`` is the wire keyword).
        kind: the name the state tables use: the keyword, or ``EXTENSION``.
        states: the states in which the command is legal (strict mode).
        parse: server role: the parameters (the line split at single
            spaces, keyword removed) -> the event; raises ``BadLine``.
            ``None`` for the pseudo-commands a server never parses.
        params: client role: the event -> its parameters, in wire order.
        reply: the shape of the reply, or a function of the command when
            it depends on the parameters (``LIST`` vs ``LIST n``).
        ends_batch: nothing may be pipelined after it: the meaning of the
            next line depends on its reply.
        login: part of a login (USER, PASS, APOP, AUTH): a refused one still
            fails as that command, so both roles move the same way (see the
            server role).
        authenticates: its ``+OK`` logs in; after its ``-ERR`` the server
            may close the connection (RFC 1939 §4), so anything pipelined
            behind it is moot.
        closes: the session ends with its reply, so an end of stream after
            it is the expected end (RFC 1939 §6).
        check: a precondition on the session, both roles.
        rest_of_line: the one parameter is the rest of the line, spaces
            included (PASS, RFC 1939 §7), not a list of words.
        utf8_params: the parameters may be UTF-8: they are credentials
            (RFC 6856 §2.2); every other command's are ASCII.
    """

    event: type[Command]
    kind: str
    states: frozenset[State]
    parse: Callable[[Params, bool], Command] | None
    params: Callable[[Any], tuple[str, ...]]
    reply: Reply | Callable[[Any], Reply]
    ends_batch: bool = False
    login: bool = False
    authenticates: bool = False
    closes: bool = False
    check: Check | None = None
    rest_of_line: bool = False
    utf8_params: bool = False

    @property
    def keyword(self) -> str:
        """The wire keyword (``""`` for :class:`Extension`, which has its own)."""
        return self.event.keyword

    def reply_to(self, cmd: Command) -> Reply:
        """The shape of the reply to *cmd*."""
        reply = self.reply
        return reply if type(reply) is Reply else reply(cmd)  # type: ignore[operator]


_A = frozenset({AUTHORIZATION})
_U = frozenset({USER_OK})
_T = frozenset({TRANSACTION})
_AT = _A | _T

#: The commands the engine knows, by RFC.
COMMANDS: Final[tuple[CommandSpec, ...]] = (
    # RFC 1939 §7 (AUTHORIZATION).  The states after USER are USER_OK's:
    # RFC 1939 only describes PASS or QUIT after a successful USER.
    CommandSpec(
        User,
        "USER",
        _A,
        _parse_user,
        lambda c: (c.name,),
        STATUS,
        login=True,
        check=_check_credentials,
        utf8_params=True,
    ),
    CommandSpec(
        Pass,
        "PASS",
        _U,
        _parse_pass,
        lambda c: (c.password,),
        STATUS,
        login=True,
        authenticates=True,
        check=_check_credentials,
        rest_of_line=True,
        utf8_params=True,
    ),
    CommandSpec(
        Apop,
        "APOP",
        _A,
        _parse_apop,
        lambda c: (c.name, c.digest),
        STATUS,
        login=True,
        authenticates=True,
        check=_check_apop,
        utf8_params=True,
    ),
    # RFC 1939 §§5-7 (TRANSACTION).
    CommandSpec(Stat, "STAT", _T, _no_params(Stat), _none, STAT),
    CommandSpec(
        List,
        "LIST",
        _T,
        _optional_number(List),
        lambda c: _optional(c.number),
        lambda c: LIST_LISTING if c.number is None else LIST_ENTRY,
    ),
    CommandSpec(Retr, "RETR", _T, _one_number(Retr), lambda c: (str(c.number),), BODY),
    CommandSpec(Dele, "DELE", _T, _one_number(Dele), lambda c: (str(c.number),), STATUS),
    CommandSpec(Noop, "NOOP", _T, _no_params(Noop), _none, STATUS),
    CommandSpec(Rset, "RSET", _T, _no_params(Rset), _none, STATUS),
    CommandSpec(Top, "TOP", _T, _parse_top, lambda c: (str(c.number), str(c.lines)), BODY),
    CommandSpec(
        Uidl,
        "UIDL",
        _T,
        _optional_number(Uidl),
        lambda c: _optional(c.number),
        lambda c: UIDL_LISTING if c.number is None else UIDL_ENTRY,
    ),
    # RFC 1081: the highest message number accessed (removed by RFC 1725).
    CommandSpec(Last, "LAST", _T, _no_params(Last), _none, LAST),
    # RFC 1939 §§4, 6: QUIT everywhere but in a SASL exchange.
    CommandSpec(
        Quit,
        "QUIT",
        _A | _U | _T,
        _no_params(Quit),
        _none,
        STATUS,
        ends_batch=True,
        closes=True,
    ),
    # RFC 2449 §5.
    CommandSpec(Capa, "CAPA", _AT, _no_params(Capa), _none, CAPA_LISTING),
    # RFC 2595 §4.
    CommandSpec(
        Stls, "STLS", _A, _no_params(Stls), _none, STATUS, ends_batch=True, check=_check_stls
    ),
    # RFC 5034 §4.
    CommandSpec(
        Auth,
        "AUTH",
        _A,
        _parse_auth,
        lambda c: (),
        SASL_EXCHANGE,
        ends_batch=True,
        login=True,
        authenticates=True,
    ),
    # RFC 6856 §§2-3.
    CommandSpec(Utf8, "UTF8", _A, _no_params(Utf8), _none, UTF8_SWITCH),
    CommandSpec(
        Lang,
        "LANG",
        _AT,
        _parse_lang,
        lambda c: _optional(c.language),
        lambda c: LANG_LISTING if c.language is None else LANG_SWITCH,
    ),
)


#: Commands the engine has no class for (client role only): legal wherever
#: commands are, they change no state, and their reply is a status line or,
#: when the caller says so, a body.
EXTENSION_SPEC: Final = CommandSpec(
    Extension,
    EXTENSION,
    _A | _U | _T,
    None,
    lambda c: c.arguments,
    lambda c: BODY if c.multiline else STATUS,
)

#: What the server role hands over for a line it cannot accept.
BAD_COMMAND_SPEC: Final = CommandSpec(BadCommand, "BAD", frozenset(), None, _none, ERR_ONLY)

BY_TYPE: Final[Mapping[type[Event], CommandSpec]] = {
    spec.event: spec for spec in (*COMMANDS, EXTENSION_SPEC, BAD_COMMAND_SPEC)
}
BY_KEYWORD: Final[Mapping[bytes, CommandSpec]] = {
    spec.keyword.encode("ascii"): spec for spec in COMMANDS
}

#: state -> the kinds legal in it (strict mode), derived from the table.
ALLOWED: Final[Mapping[State, frozenset[str]]] = {
    state: frozenset(spec.kind for spec in (*COMMANDS, EXTENSION_SPEC) if state in spec.states)
    for state in (AUTHORIZATION, USER_OK, TRANSACTION)
}

# With strict_user=False, USER_OK allows what AUTHORIZATION does (a second
# USER replaces the name; CAPA, UTF8 or LANG may come between USER and
# PASS: RFC 1939's "immediately" is ambiguous), and PASS, but not STLS:
# once a name went out in plaintext, TLS comes too late for it.
_LENIENT_USER_OK: Final = (ALLOWED[AUTHORIZATION] - {"STLS"}) | {"PASS"}


def allowed(spec: CommandSpec, state: State, *, strict_user: bool) -> bool:
    """Whether the command of *spec* is legal in *state*."""
    if state is USER_OK and not strict_user:
        return spec.kind in _LENIENT_USER_OK
    return state in spec.states


def spec_of(cmd: Command) -> CommandSpec:
    """The spec of *cmd*.  Events are looked up by their exact type, as
    h11 does: the event classes are not meant to be subclassed."""
    spec = BY_TYPE.get(type(cmd))
    if spec is None:
        raise LocalProtocolError(f"a client sends commands, not {type(cmd).__name__}")
    return spec


def keyword_of(cmd: Command) -> str:
    """The keyword of *cmd* on the wire (an Extension's own name)."""
    return cmd.name if isinstance(cmd, Extension) else cmd.keyword


command_keyword = keyword_of


# ---------------------------------------------------------------------------
# Command lines: server role
# ---------------------------------------------------------------------------


def parse_command(line: bytes, *, allow_utf8: bool, extensions: bool = False) -> Command:
    """Parse one command line (without CRLF) as RFC 2449 §3 defines it.

    ``command = keyword *(SP param) CRLF``; keywords are case-insensitive,
    one SP separates parameters.  PASS is the exception: its argument is the
    rest of the line, spaces included (RFC 1939 §7).  A keyword the table
    does not know is refused, or with *extensions* becomes an
    :class:`Extension` (what a client may send).

    Raises :class:`BadLine` with a reason for the ``-ERR`` text.
    """
    if b"\x00" in line or b"\r" in line or b"\n" in line:
        raise BadLine("control characters in command")
    keyword, sp, rest = line.partition(b" ")
    keyword = keyword.upper()
    if not keyword:
        raise BadLine("empty command")
    spec = BY_KEYWORD.get(keyword)
    if spec is not None and spec.rest_of_line:
        params = [rest] if rest else []
    else:
        params = rest.split(b" ") if sp else []
        if b"" in params:
            raise BadLine("empty parameter (extra space)")
        for param in params:
            if param.isalnum():
                continue  # ASCII letters and digits: printable (the usual case)
            if param.isascii():
                if not param.decode("ascii").isprintable():
                    raise BadLine("control characters in parameter")
            elif spec is None or not spec.utf8_params:
                # Only credentials may be non-ASCII (RFC 6856 §2.2).
                raise BadLine("non-ASCII parameter")
        if spec is None:
            if not extensions:
                raise BadLine("unknown command")
            try:
                return Extension(keyword.decode("ascii"), tuple(p.decode() for p in params))
            except (LocalProtocolError, UnicodeDecodeError):
                raise BadLine("unknown command") from None
    assert spec.parse is not None  # every spec in BY_KEYWORD parses
    try:
        return spec.parse(params, allow_utf8)
    except LocalProtocolError as exc:
        # The event constructors validate too (e.g. a bad AUTH mechanism).
        raise BadLine(str(exc)) from None
    except UnicodeDecodeError:
        raise BadLine("non-ASCII parameter") from None


def command_from_line(line: bytes | str, *, utf8: bool = True) -> Command:
    """The command event a command line stands for (public API).

    *line* is one line without its CRLF, parsed as the server role parses
    what it receives (RFC 2449 §3; PASS takes the rest of the line, RFC 1939
    §7), so a client that is given commands as text (``poplib``'s
    ``_shortcmd("RETR 1")``) sends exactly what a server will read back.  A
    keyword the engine does not know becomes an :class:`Extension`.  *utf8*
    allows UTF-8 credentials (RFC 6856 §2.2); ``str`` is encoded as UTF-8.

    Raises :class:`LocalProtocolError` saying what is wrong.
    """
    data = line.encode("utf-8") if isinstance(line, str) else line
    try:
        return parse_command(data, allow_utf8=utf8, extensions=True)
    except BadLine as exc:
        raise LocalProtocolError(exc.reason) from None


def parse_sasl_line(line: bytes) -> bytes | None:
    """Parse a client's SASL response line (RFC 5034 §4).

    Returns the decoded data, or ``None`` for the cancel line ``*``.  ``=``
    is only an *initial* response; here it is invalid base64.
    """
    if line == b"*":
        return None
    return _b64(line)


# ---------------------------------------------------------------------------
# Command lines: client role
# ---------------------------------------------------------------------------


def command_arguments(cmd: Command) -> list[str]:
    """The parameters of *cmd*, as strings, in wire order."""
    return list(spec_of(cmd).params(cmd))


def _line(data: bytes, limit: int, what: str) -> bytes:
    line = data + b"\r\n"
    if len(line) > limit:
        raise LocalProtocolError(
            f"{what} would be {len(line)} octets; the limit is {limit} including CRLF"
        )
    return line


def write_command(cmd: Command, limit: int) -> bytes:
    """``keyword *(SP param) CRLF`` (RFC 2449 §3), at most *limit* octets."""
    form = _NUMBERED.get(type(cmd))
    if form is not None:
        # The commands sent once per message, formatted directly (and the
        # error's wording built only for an error: a pipelined burst
        # writes thousands of these).
        line: bytes = form % cmd.number + b"\r\n"  # type: ignore[attr-defined]
        if len(line) <= limit:
            return line
        return _line(line[:-2], limit, f"{cmd.keyword} command")
    if isinstance(cmd, Auth):
        parts = [b"AUTH", cmd.mechanism.encode("ascii")]
        if cmd.initial_response is not None:
            # RFC 5034 §4: an empty initial response is sent as "=".
            parts.append(sasl_b64encode(cmd.initial_response) or b"=")
        data = b" ".join(parts)
        if len(data) + 2 > limit:
            raise LocalProtocolError(
                "AUTH with this initial response exceeds the command limit; send AUTH "
                "without it and answer the server's empty challenge with it (RFC 5034 §4)"
            )
        return data + b"\r\n"
    words = [keyword_of(cmd), *spec_of(cmd).params(cmd)]
    what = "PASS command" if isinstance(cmd, Pass) else f"{words[0]} command"
    return _line(" ".join(words).encode("utf-8"), limit, what)


_NUMBERED: Final[dict[type[Command], bytes]] = {Retr: b"RETR %d", Dele: b"DELE %d"}


def sasl_line(data: bytes) -> bytes:
    """A client's SASL response line (RFC 5034 §4)."""
    return sasl_b64encode(data) + b"\r\n"

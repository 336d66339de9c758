"""The :class:`Connection`: one POP3 session, either role, bytes in and out.

Theory of operation
-------------------
A connection is three things:

1. A :class:`~pop3proto._state.SessionState`, shared by both roles, that
   says which commands are legal and how replies move the session.
2. A FIFO of *outstanding* commands.  The client appends when it sends and
   pops when the final reply arrives; the FIFO tells it how to frame each
   reply (``+OK`` to RETR opens a body, ``+OK`` to DELE does not) and is
   all that RFC 2449 PIPELINING needs.  The server holds at most one: it
   hands the application one command and then reports :data:`PAUSED` until
   the reply has been sent, so pipelined input waits in the buffer and is
   never lost (RFC 2197 §4.2).
3. A receive buffer and a parser for what the peer sends: status lines,
   listings and streamed bodies for the client; command lines and SASL
   lines for the server.

``next_event()`` returns an event, :data:`NEED_DATA` (feed more bytes with
``receive_data``) or :data:`PAUSED` (it is your move: the server owes a
reply, the client owes a SASL response, or TLS must be started).  ``send()``
validates an event against the state and returns the bytes to write.

A peer that breaks the protocol raises :class:`RemoteProtocolError` from
``next_event``; asking ``send`` for something illegal raises
:class:`LocalProtocolError`.  Either way the connection is then in
``State.ERROR`` and refuses to go on.
"""

from __future__ import annotations

import re
from collections import deque
from typing import Final, cast

from ._buffer import LineTooLong, ReceiveBuffer
from ._capabilities import Capabilities
from ._errors import LocalProtocolError, RemoteProtocolError
from ._events import (
    Apop,
    Auth,
    BadCommand,
    Capa,
    CapaOk,
    Command,
    ConnectionClosed,
    Dele,
    Err,
    Event,
    Extension,
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
    Response,
    Retr,
    Rset,
    SaslCancel,
    SaslChallenge,
    SaslResponse,
    Stat,
    StatOk,
    Stls,
    Top,
    Uidl,
    UidlEntryOk,
    UidlOk,
    User,
    Utf8,
)
from ._readers import (
    BadLine,
    BodyReader,
    find_block_end,
    parse_capa_block,
    parse_command,
    parse_lang_block,
    parse_list_block,
    parse_sasl_line,
    parse_status,
    parse_uidl_block,
    raw_status_text,
)

# The states as module constants: ``State.X`` is an attribute lookup on an
# Enum class (~75 ns in CPython 3.11), and the hot paths test several per event.
from ._state import (
    AWAIT_GREETING,
    CLOSED,
    ERROR,
    EXTENSION,
    GREETING,
    SASL,
    TLS_PENDING,
    UPDATE,
    SessionState,
    State,
)
from ._writers import (
    BodyWriter,
    command_keyword,
    write_command,
    write_entry,
    write_multiline,
    write_status,
)
from .sasl._codec import sasl_b64decode, sasl_b64encode

__all__ = ["Connection", "CLIENT", "SERVER", "NEED_DATA", "PAUSED", "Role"]


class _Sentinel:
    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name

    def __reduce__(self) -> str:
        return self._name


class Role(_Sentinel):
    """The type of :data:`CLIENT` and :data:`SERVER`."""

    __slots__ = ()


class _NeedData(_Sentinel):
    __slots__ = ()


class _Paused(_Sentinel):
    __slots__ = ()


#: The client role: sends commands, receives responses.
CLIENT: Final = Role("CLIENT")
#: The server role: receives commands, sends responses.
SERVER: Final = Role("SERVER")
#: ``next_event()`` needs more bytes from the peer.
NEED_DATA: Final = _NeedData("NEED_DATA")
#: ``next_event()`` cannot go on until the application acts (see module doc).
PAUSED: Final = _Paused("PAUSED")

_BAD = "BAD"  # state-table kind of a BadCommand: it changes nothing
_AUTH_KEYWORDS = frozenset({b"USER", b"PASS", b"APOP", b"AUTH"})

# What a server may answer to each command (the client reads the same map
# the other way round, to know how to frame a positive reply).
_SINGLE: Final = (Ok, Err)


def _kind(cmd: Command) -> str:
    """The state-table kind of *cmd*: its keyword, EXTENSION or BAD."""
    kind = _KINDS.get(type(cmd))
    if kind is None:
        if isinstance(cmd, Extension):
            kind = EXTENSION
        elif isinstance(cmd, BadCommand):
            kind = _BAD
        else:
            kind = cmd.keyword
        _KINDS[type(cmd)] = kind
    return kind


# Command class -> kind, filled on first use (one dict lookup per command
# instead of a chain of isinstance calls; classes never change kind).  The
# hot paths read it inline, ``_KINDS.get(type(cmd)) or _kind(cmd)``.
_KINDS: dict[type[Command], str] = {}


def _projection(state: State, kind: str) -> State:
    """The state once a command of *kind* sent in *state* succeeds: where a
    pipelining client expects to be when it sends the next command."""
    key = (state, kind)
    projected = _PROJECTIONS.get(key)
    if projected is None:
        projected = SessionState.after_reply(SessionState.after_start(state, kind), kind, True)
        _PROJECTIONS[key] = projected
    return projected


# (state, kind) -> _projection(), filled from the state tables on first use.
_PROJECTIONS: dict[tuple[State, str], State] = {}

# Commands a client may send with no check beyond state and pipelining.
_PLAIN_COMMANDS: Final = frozenset(
    {Stat, List, Retr, Dele, Noop, Rset, Top, Uidl, Capa, Quit, Lang, Utf8}
)

# Commands whose positive reply is a body (the client's fast path).
_BODY_COMMANDS: Final = frozenset({Retr, Top})

# Commands whose final reply implies nothing beyond the state table (no
# mode switch, no failed login).
_PLAIN_FINISH: Final = frozenset({Stat, List, Retr, Dele, Noop, Rset, Top, Uidl, Capa, User})

# A status text the fast path cannot take as is (see _client_line).
_NOT_PRINTABLE: Final = re.compile(rb"[^\x20-\x7e]").search

# Commands whose possible replies do not depend on their fields.
_EXPECTED_BY_TYPE: dict[type[Command], tuple[type[Response], ...]] = {
    Retr: (MessageStart, Err),
    Top: (MessageStart, Err),
    Stat: (StatOk, Err),
    Capa: (CapaOk, Err),
}


def _expected(cmd: Command) -> tuple[type[Response], ...]:
    """The response types a server may send for *cmd*."""
    fixed = _EXPECTED_BY_TYPE.get(type(cmd))
    if fixed is not None:
        return fixed
    if isinstance(cmd, List):
        return (ListOk, Err) if cmd.number is None else (ListEntryOk, Err)
    if isinstance(cmd, Uidl):
        return (UidlOk, Err) if cmd.number is None else (UidlEntryOk, Err)
    if isinstance(cmd, Lang) and cmd.language is None:
        return (LangOk, Err)
    if isinstance(cmd, Extension) and cmd.multiline:
        return (MessageStart, Err)
    if isinstance(cmd, Auth):
        return (SaslChallenge, Ok, Err)
    if isinstance(cmd, BadCommand):
        return (Err,)
    return _SINGLE


def _credential_text(cmd: User | Pass | Apop) -> str:
    return cmd.password if isinstance(cmd, Pass) else cmd.name


def _decode_utf8(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def _two_numbers(text: str, what: str) -> tuple[int, int]:
    parts = text.split(" ")
    if len(parts) < 2 or not all(p.isascii() and p.isdecimal() for p in parts[:2]):
        raise ValueError(f"malformed {what} reply {text[:40]!r}")
    return int(parts[0]), int(parts[1])


class Connection:
    """One POP3 session, in the client or the server role.

    Args:
        our_role: :data:`CLIENT` or :data:`SERVER`.
        tls: ``True`` when the transport is already TLS (implicit TLS on
            port 995, RFC 8314 §3): STLS is then refused.
        strict_user: when true (the default) only PASS or QUIT may follow a
            successful USER; when false a second USER, CAPA, etc. may come
            between (checklist §1).
        bare_lf: accept a bare LF as a line end from the peer (a lenient
            option for broken peers; CRLF only by default, which is also the
            boundary the STLS injection check uses).
        lenient_end: client only: cope with servers that end a body
            without a CRLF before the terminating dot (``last line.CRLF``,
            node-pop3#27) or with a dot line missing its LF (``CRLF . CR``,
            cyrus-imapd#4717).  Neither can be told from ordinary text
            until the server falls silent, so the client holds such a tail
            back and the adapter calls :meth:`peer_idle` when nothing has
            arrived for a while; the body then ends there.
        allow_unadvertised_pipelining: client only: allow several
            outstanding commands although the server's last CAPA did not
            list PIPELINING (RFC 2449 §6.6 says a client pipelines only if
            it did).
        max_command_size: the longest command line, CRLF included (RFC 2449
            §4: 255).  The client refuses to send longer ones; the server
            answers longer ones with a :class:`BadCommand` and discards the
            rest of the line.
        max_status_size: the longest status line.  The server refuses to
            send more than this (default 512, RFC 2449 §4); the client raises
            on a longer one received (default 8 KiB, generous on purpose).
        max_sasl_size: the longest SASL line received (RFC 5034 sets none;
            default 64 KiB).
        max_listing_size: client only: the largest multi-line listing
            (LIST, UIDL, CAPA, LANG) accepted, in octets (default 64 MiB).
            Message bodies stream and need no limit.
    """

    def __init__(
        self,
        our_role: Role,
        *,
        tls: bool = False,
        strict_user: bool = True,
        bare_lf: bool = False,
        lenient_end: bool = False,
        allow_unadvertised_pipelining: bool = False,
        max_command_size: int = 255,
        max_status_size: int | None = None,
        max_sasl_size: int = 65536,
        max_listing_size: int = 64 * 1024 * 1024,
    ) -> None:
        if our_role is not CLIENT and our_role is not SERVER:
            raise ValueError(f"expected CLIENT or SERVER, not {our_role!r}")
        for name, value in (
            ("max_command_size", max_command_size),
            ("max_sasl_size", max_sasl_size),
            ("max_listing_size", max_listing_size),
        ):
            if value < 8:
                raise ValueError(f"{name} must be at least 8")
        self.our_role: Final = our_role
        self._client = our_role is CLIENT
        self._session = SessionState(strict_user=strict_user)
        self._buf = ReceiveBuffer()
        self._eof = False
        self._tls = bool(tls)
        self._utf8 = False
        self._lang = False
        self._bare_lf = bare_lf
        self._lenient_end = lenient_end
        self._idle = False
        self._allow_pipelining = allow_unadvertised_pipelining
        self._pipelining = allow_unadvertised_pipelining  # ... or advertised
        self._max_command = max_command_size
        if max_status_size is None:
            max_status_size = 8192 if self._client else 512
        self._max_status = max_status_size
        self._max_sasl = max_sasl_size
        self._max_listing = max_listing_size
        self._greeting: Greeting | None = None
        self._capabilities: Capabilities | None = None
        # Client: every command sent and not yet finally answered.
        self._queue: deque[Command] = deque()
        self._projected = AWAIT_GREETING
        self._sasl_owed = False  # client owes a SASL response
        self._sasl_malformed = False  # ... and it must be a cancel
        self._block: Command | None = None  # client reading a listing for it
        self._block_text = ""
        self._block_scan = 0
        self._body: BodyReader | None = None  # the reader, while in a body
        self._reader: BodyReader | None = None
        self._end_pending = False
        self._auth_failed = False
        # The last event can_send() approved and its bytes: send() of that
        # very event right after reuses them instead of checking twice.
        # Anything that may change the answer clears it.
        self._prepared: tuple[Event, bytes] | None = None
        # Server: the command being answered, whether a reply is owed now,
        # and the body being written.
        self._current: Command | None = None
        self._owed = False
        self._sasl_expect = False
        self._sasl_cancelled = False
        self._writer: BodyWriter | None = None
        self._discarding = False

    # ------------------------------------------------------------------
    # Properties
    # ------------------------------------------------------------------

    @property
    def their_role(self) -> Role:
        """The peer's role."""
        return SERVER if self._client else CLIENT

    @property
    def state(self) -> State:
        """The session state, as of the last reply sent or received."""
        return self._session.state

    @property
    def outstanding(self) -> tuple[Command, ...]:
        """Commands sent (client) or received (server) but not yet answered."""
        if self._client:
            return tuple(self._queue)
        return () if self._current is None else (self._current,)

    @property
    def capabilities(self) -> Capabilities | None:
        """The capabilities of the last CAPA reply received (client) or
        sent (server); forgotten when TLS starts (RFC 2595 §4)."""
        return self._capabilities

    @property
    def greeting(self) -> Greeting | None:
        """The server's greeting, once received (client) or sent (server)."""
        return self._greeting

    @property
    def tls(self) -> bool:
        """Whether the transport is TLS (implicit, or after STLS)."""
        return self._tls

    @property
    def utf8(self) -> bool:
        """Whether UTF8 mode is on (RFC 6856 §2)."""
        return self._utf8

    @property
    def lang(self) -> bool:
        """Whether a LANG command succeeded: response text is UTF-8 (RFC 6856 §3)."""
        return self._lang

    # ------------------------------------------------------------------
    # Input
    # ------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Add bytes received from the peer; ``b""`` means the peer closed.

        Nothing is parsed here; call :meth:`next_event` to get events.
        """
        if data:
            if self._eof:
                raise RuntimeError("received data after the end of the stream")
            self._buf.append(data if type(data) is bytes else bytes(data))
            self._idle = False
        else:
            self._eof = True

    def next_event(self) -> Event | _NeedData | _Paused:
        """Parse the next event from the buffered bytes.

        Returns an event, :data:`NEED_DATA` or :data:`PAUSED`.  Raises
        :class:`RemoteProtocolError` when the peer broke the protocol.
        """
        if self._session.state is ERROR:
            raise RemoteProtocolError("can't receive events: the connection is in the ERROR state")
        self._prepared = None
        try:
            if self._client:
                return self._client_next()
            return self._server_next()
        except RemoteProtocolError:
            self._session.error()
            raise
        except LocalProtocolError as exc:
            # An event built from the peer's bytes failed validation (say,
            # message number 0): the peer's fault, not ours.
            self._session.error()
            raise RemoteProtocolError(str(exc)) from None
        except LineTooLong:  # pragma: no cover - converted where raised
            self._session.error()
            raise RemoteProtocolError("line too long") from None

    def tls_established(self) -> None:
        """The TLS handshake after ``+OK`` to STLS has completed.

        The session starts afresh in AUTHORIZATION: cached capabilities are
        forgotten (RFC 2595 §4) and no byte received before the handshake may
        be used (checklist §7), so the buffer must be empty.
        """
        self._prepared = None
        try:
            self._session.tls_established()
        except LocalProtocolError:
            self._session.error()
            raise
        if self._buf:
            self._session.error()
            raise RemoteProtocolError(
                "plaintext bytes arrived before TLS was established: possible injection"
            )
        self._tls = True
        self._capabilities = None
        self._pipelining = self._allow_pipelining
        self._projected = self._session.state

    def peer_idle(self) -> None:
        """Tell the engine the peer has sent nothing for a while.

        Only matters to a client built with ``lenient_end=True`` that is in
        the middle of a body whose received data ends like a broken
        terminator (see the constructor); the next :meth:`next_event` then
        ends the body.  Otherwise it does nothing.
        """
        self._idle = True

    def send_failed(self) -> None:
        """Tell the engine that writing bytes from :meth:`send` failed.

        The connection can no longer be trusted to be in step with the peer,
        so it enters the ERROR state.
        """
        self._session.error()

    # ------------------------------------------------------------------
    # Output
    # ------------------------------------------------------------------

    def can_send(self, event: Event) -> bool:
        """Whether :meth:`send` would accept *event* now (client role).

        Unlike ``send``, a "no" costs nothing: the connection does not enter
        the ERROR state, so an adapter can ask before it commits (say,
        whether a command is legal in the current state).  For the server
        role, use ``send`` directly: a server's replies follow from the
        command it received.
        """
        if not self._client:
            raise RuntimeError("can_send() is for the client role")
        if self._session.state is ERROR:
            return False
        try:
            data = self._client_prepare(event)
        except LocalProtocolError:
            return False
        self._prepared = (event, data)
        return True

    def send(self, event: Event) -> bytes:
        """Serialize *event* and return the bytes to write to the peer.

        Raises :class:`LocalProtocolError` (and enters ERROR) if the event is
        not legal now.
        """
        if self._session.state is ERROR:
            raise LocalProtocolError("can't send: the connection is in the ERROR state")
        try:
            if self._client:
                return self._client_send(event)
            return self._server_send(event)
        except LocalProtocolError:
            self._session.error()
            raise

    # ------------------------------------------------------------------
    # Helpers shared by both roles
    # ------------------------------------------------------------------

    def _decode(self, data: bytes) -> str:
        # Checklist §9 REC: ASCII until UTF8 or LANG succeeds, then UTF-8;
        # bad octets become U+FFFD, never a protocol error.
        if self._utf8 or self._lang:
            return data.decode("utf-8", "replace")
        return data.decode("ascii", "replace")

    def _utf8_credentials_allowed(self) -> bool:
        # RFC 6856 §2.2: UTF-8 user names and passwords once UTF8 mode is on,
        # or before it if the server advertised "UTF8 USER".
        caps = self._capabilities
        return self._utf8 or (caps is not None and caps.utf8_user)

    # ------------------------------------------------------------------
    # Client role
    # ------------------------------------------------------------------

    def _client_send(self, event: Event) -> bytes:
        prepared = self._prepared
        self._prepared = None
        if prepared is not None and prepared[0] is event:
            data = prepared[1]
        else:
            data = self._client_prepare(event)
        if type(event) not in _PLAIN_COMMANDS:
            if isinstance(event, ConnectionClosed):
                # We are closing our end (h11 lets you "send" this too).
                self._session.close()
                return data
            if isinstance(event, (SaslResponse, SaslCancel)):
                self._sasl_owed = False
                self._sasl_malformed = False
                return data
        command = cast(Command, event)
        kind = _KINDS.get(type(command)) or _kind(command)
        queue = self._queue
        queue.append(command)
        if len(queue) == 1:
            self._session.start(kind)
        self._projected = _projection(self._projected, kind)
        return data

    def _client_prepare(self, event: Event) -> bytes:
        """Check that *event* may be sent now and serialize it; changes
        nothing, so :meth:`can_send` can ask too."""
        # The commands sent over and over (RETR, DELE, LIST, ...) need only
        # the checks that every command needs.
        plain = type(event) in _PLAIN_COMMANDS
        if not plain:
            if isinstance(event, ConnectionClosed):
                return b""
            if isinstance(event, (SaslResponse, SaslCancel)):
                if not self._sasl_owed:
                    raise LocalProtocolError("there is no SASL challenge to answer")
                if self._sasl_malformed and not isinstance(event, SaslCancel):
                    raise LocalProtocolError(
                        "the challenge was not valid base64: cancel with SaslCancel (RFC 5034 §4)"
                    )
                if isinstance(event, SaslCancel):
                    return b"*\r\n"
                return sasl_b64encode(event.data) + b"\r\n"
            if not isinstance(event, Command) or isinstance(event, BadCommand):
                raise LocalProtocolError(f"a client sends commands, not {type(event).__name__}")
        event = cast(Command, event)
        state = self._session.state
        if state is AWAIT_GREETING:
            raise LocalProtocolError("wait for the server's greeting before sending commands")
        if state is CLOSED:
            raise LocalProtocolError("the connection is closed")
        queue = self._queue
        if queue:
            last = queue[-1]
            if isinstance(last, (Stls, Auth, Quit)):
                # RFC 2449 §6.6 / RFC 2595 §4 / RFC 5034 §4.
                raise LocalProtocolError(
                    f"{last.keyword} must end a pipelined batch: "
                    f"wait for its reply before {command_keyword(event)}"
                )
            if not self._pipelining:
                raise LocalProtocolError(
                    "the server did not advertise PIPELINING: wait for each reply "
                    "(or pass allow_unadvertised_pipelining=True)"
                )
        projected = self._projected
        if not self._session.allowed(_kind(event), projected):
            raise LocalProtocolError(
                f"{command_keyword(event)} is not allowed in the {projected.name} state"
            )
        if not plain:
            self._check_special(event)
        return write_command(event, self._max_command)

    def _check_special(self, event: Command) -> None:
        """The checks only STLS, APOP, USER and PASS need."""
        if isinstance(event, Stls):
            if self._tls:
                raise LocalProtocolError("STLS: TLS is already active")
            if self._utf8:
                raise LocalProtocolError("STLS is not allowed after UTF8 (RFC 6856 §2.1)")
        elif isinstance(event, Apop) and (
            self._greeting is None or self._greeting.timestamp is None
        ):
            raise LocalProtocolError("APOP: the greeting carried no timestamp")
        if (
            isinstance(event, (User, Pass, Apop))
            and not _credential_text(event).isascii()
            and not self._utf8_credentials_allowed()
        ):
            raise LocalProtocolError(
                "non-ASCII credentials need UTF8 mode or a 'UTF8 USER' capability (RFC 6856 §2.2)"
            )

    def _client_next(self) -> Event | _NeedData | _Paused:
        state = self._session.state
        if state is CLOSED:
            return ConnectionClosed()
        if state is TLS_PENDING:
            self._check_no_injection()
            return PAUSED
        if self._end_pending:
            self._end_pending = False
            return self._finish(_MESSAGE_END, True)
        if self._body is not None:
            return self._read_body()
        if self._block is not None:
            return self._read_block()
        if self._sasl_owed:
            return PAUSED
        limit = self._max_sasl if state is SASL else self._max_status
        try:
            line = self._buf.extract_line(limit, bare_lf=self._bare_lf)
        except LineTooLong:
            raise RemoteProtocolError(f"reply line longer than {limit} octets") from None
        if line is None:
            if self._eof:
                return self._client_eof()
            return NEED_DATA
        try:
            return self._client_line(line)
        except ValueError as exc:
            raise RemoteProtocolError(str(exc)) from None

    def _check_no_injection(self) -> None:
        if self._buf:
            # RFC 2595 §4 / checklist §7: the server may send nothing after
            # its +OK until TLS is up; bytes here were injected by someone.
            raise RemoteProtocolError(
                "data followed +OK to STLS before TLS started: possible response injection"
            )

    def _client_line(self, line: bytes) -> Event | _NeedData:
        session = self._session
        if session.state is AWAIT_GREETING:
            ok, code, text = parse_status(line, self._decode)
            if ok:
                greeting = Greeting(raw_status_text(line, self._decode))
                self._greeting = greeting
                session.reply(GREETING, True)
                self._projected = session.state
                return greeting
            session.reply(GREETING, False)
            return Err(text, code)
        if not self._queue:
            if line.startswith(b"-ERR"):
                # Dovecot and WildDuck send "-ERR Disconnected for
                # inactivity." and close (against RFC 1939 §3); report it as
                # an Err and expect EOF.
                _, code, text = parse_status(line, self._decode)
                session.close()
                return Err(text, code)
            raise RemoteProtocolError(
                f"unexpected reply with no command outstanding: {line[:40]!r}"
            )
        head = self._queue[0]
        if (
            type(head) in _BODY_COMMANDS
            and (line == b"+OK" or line[:4] == b"+OK ")
            and line[4:5] != b"["
            and _NOT_PRINTABLE(line, 4) is None
        ):
            # The reply a mailbox download is made of, +OK to RETR or TOP:
            # printable ASCII text with no response code reads the same in
            # every mode, so parse_status below has nothing to add.
            self._body = self._start_body()
            return _message_start(line[4:].decode("ascii"))
        if session.state is SASL and line[:1] == b"+" and line[:3] != b"+OK":
            # RFC 5034 §4: continue-req = "+" SP [base64] CRLF.  A bare "+"
            # is tolerated as an empty challenge (checklist §8).
            if len(line) > 1 and line[1:2] != b" ":
                raise ValueError(f"malformed SASL challenge {line[:40]!r}")
            self._sasl_owed = True
            try:
                data = sasl_b64decode(line[2:])
            except ValueError:
                # RFC 5034 §4: a client that cannot decode a challenge MUST
                # cancel with "*"; the event says so and send() enforces it.
                self._sasl_malformed = True
                return _trusted(SaslChallenge, data=bytes(line[2:]), malformed=True)
            return SaslChallenge(data)
        decode = self._decode
        if isinstance(head, (Utf8, Lang)) and line.startswith(b"+OK"):
            # RFC 6856 §3: the new language applies "starting with the
            # response to the LANG command" (likewise UTF8 mode).
            decode = _decode_utf8
        ok, code, text = parse_status(line, decode)
        if not ok:
            return self._finish(Err(text, code), False)
        if isinstance(head, Stat):
            count, size = _two_numbers(text, "STAT")
            return self._finish(StatOk(count, size), True)
        if isinstance(head, (List, Uidl)) and head.number is not None:
            number, _, value = text.partition(" ")
            if isinstance(head, List):
                n, size = _two_numbers(text, "LIST")
                return self._finish(ListEntryOk(n, size), True)
            uid = value.split(" ", 1)[0]
            if not (number.isascii() and number.isdecimal() and uid):
                raise ValueError(f"malformed UIDL reply {text[:40]!r}")
            return self._finish(_trusted_uidl_entry(int(number), uid), True)
        expected = _expected(head)
        if MessageStart in expected:
            self._body = self._start_body()
            return MessageStart(text, code)
        if expected[0] in (ListOk, UidlOk, CapaOk, LangOk):
            self._block = head
            # Listings have no code field: keep the text verbatim.
            self._block_text = raw_status_text(line, decode)
            self._block_scan = 0
            return self._read_block()
        return self._finish(Ok(text, code), True)

    def _start_body(self) -> BodyReader:
        # One reader serves every body of the connection: it is back at a
        # line start whenever a body ends.
        reader = self._reader
        if reader is None:
            reader = self._reader = BodyReader(bare_lf=self._bare_lf, sloppy_end=self._lenient_end)
        reader.at_line_start = True
        return reader

    def _read_block(self) -> Event | _NeedData:
        buf = self._buf
        end, consumed = find_block_end(
            buf.data, max(self._block_scan - 4, 0), bare_lf=self._bare_lf
        )
        if end < 0 or consumed > self._max_listing:
            if len(buf) > self._max_listing or consumed > self._max_listing:
                raise RemoteProtocolError(
                    f"multi-line reply larger than {self._max_listing} octets"
                )
            if self._eof:
                raise RemoteProtocolError("connection closed in the middle of a multi-line reply")
            self._block_scan = len(buf)
            return NEED_DATA
        block = buf.consume(consumed, end)
        head = self._block
        text = self._block_text
        self._block = None
        try:
            event: Event
            if isinstance(head, List):
                event = _trusted(
                    ListOk, sizes=parse_list_block(block, bare_lf=self._bare_lf), text=text
                )
            elif isinstance(head, Uidl):
                event = _trusted(
                    UidlOk, uids=parse_uidl_block(block, bare_lf=self._bare_lf), text=text
                )
            elif isinstance(head, Capa):
                caps = Capabilities.from_lines(
                    parse_capa_block(block, self._decode, bare_lf=self._bare_lf)
                )
                self._capabilities = caps
                self._pipelining = self._allow_pipelining or caps.pipelining
                event = _trusted(CapaOk, capabilities=caps, text=text)
            else:
                event = _trusted(
                    LangOk,
                    languages=parse_lang_block(block, bare_lf=self._bare_lf),
                    text=text,
                )
        except ValueError as exc:
            raise RemoteProtocolError(str(exc)) from None
        return self._finish(event, True)

    def _read_body(self) -> Event | _NeedData:
        assert self._body is not None
        buf = self._buf
        if not buf:
            if self._eof:
                raise RemoteProtocolError("connection closed in the middle of a message body")
            return NEED_DATA
        if self._idle and self._lenient_end:
            # The server fell silent on a held-back tail that a correct
            # server would have completed: take it as the terminator.
            held = buf.peek()
            if held in (b".\r\n", b".\r", b".\n"):
                # "last line.CRLF": the last line lacked its CRLF.
                buf.clear()
                self._body = None
                return self._finish(_MESSAGE_END, True)
            if held in (b"\r\n.\r", b"\n.\r"):
                # "CRLF . CR": the terminator lacked its LF.
                buf.clear()
                self._body = None
                self._end_pending = True
                return _message_data(held[:-2])
        body = self._body
        unterminated = False
        if len(self._queue) > 1:
            # Pipelined: later replies may sit behind this body in the
            # buffer; take out just this body if its end is there.
            ends = body.find_end(buf.data)
            if ends is None:
                unterminated = True
            else:
                body_end, consumed, stuffed, done = ends
                out = buf.consume(consumed, body_end)
                if stuffed:
                    out = body.unstuff(out)
                else:
                    body.took_plain(done)
                if not done:
                    return _message_data(out)
                self._body = None
                if out:
                    self._end_pending = True
                    return _message_data(out)
                return self._finish(_MESSAGE_END, True)
        out, leftover, done = body.feed(buf.take_all(), unterminated=unterminated)
        if leftover:
            buf.prepend(leftover)
        if done:
            self._body = None
            if out:
                self._end_pending = True
                return _message_data(out)
            return self._finish(_MESSAGE_END, True)
        if out:
            return _message_data(out)
        if self._eof:
            raise RemoteProtocolError("connection closed in the middle of a message body")
        return NEED_DATA

    def _finish(self, event: Event, ok: bool) -> Event:
        """The final reply to the head of the queue has arrived."""
        session = self._session
        queue = self._queue
        head = queue.popleft()
        session.reply(_KINDS.get(type(head)) or _kind(head), ok)
        if type(head) in _PLAIN_FINISH:
            self._auth_failed = False
        else:
            self._finish_special(head, ok)
        if queue:
            following = queue[0]
            session.start(_KINDS.get(type(following)) or _kind(following))
        else:
            self._projected = session.state
        return event

    def _finish_special(self, head: Command, ok: bool) -> None:
        """What a final reply to a command that changes modes implies."""
        self._auth_failed = not ok and isinstance(head, (Pass, Apop, Auth))
        if ok:
            if isinstance(head, Utf8):
                self._utf8 = True
            elif isinstance(head, Lang) and head.language is not None:
                self._lang = True
            elif isinstance(head, Stls):
                self._check_no_injection()

    def _client_eof(self) -> Event:
        if self._buf:
            raise RemoteProtocolError("connection closed in the middle of a reply line")
        session = self._session
        if not self._queue or self._auth_failed:
            # RFC 1939 §4: after a failed authentication the server may
            # close; anything pipelined after it is moot.
            self._queue.clear()
            session.close()
            return ConnectionClosed()
        if isinstance(self._queue[0], Quit):
            unknown = session.state is UPDATE
            self._queue.clear()
            session.close()
            return ConnectionClosed(outcome_unknown=unknown)
        raise RemoteProtocolError(
            f"connection closed with {len(self._queue)} command(s) unanswered"
        )

    # ------------------------------------------------------------------
    # Server role
    # ------------------------------------------------------------------

    def _server_next(self) -> Event | _NeedData | _Paused:
        state = self._session.state
        if state is CLOSED:
            return ConnectionClosed()
        if state is AWAIT_GREETING:
            return PAUSED
        if state is TLS_PENDING:
            if self._buf:
                raise RemoteProtocolError(
                    "plaintext data arrived after STLS before TLS started: "
                    "possible command injection"
                )
            return PAUSED
        if self._owed or self._writer is not None:
            return PAUSED
        if self._current is not None and not self._sasl_expect:  # pragma: no cover
            return PAUSED
        buf = self._buf
        end = b"\n" if self._bare_lf else b"\r\n"
        if self._discarding:
            idx = buf.find(end)
            if idx < 0:
                self._discard_all_but_cr()
                return self._server_eof_or_need()
            buf.consume(idx + len(end))
            self._discarding = False
        sasl = self._sasl_expect
        limit = self._max_sasl if sasl else self._max_command
        try:
            line = buf.extract_line(limit, bare_lf=self._bare_lf)
        except LineTooLong:
            if sasl:
                raise RemoteProtocolError(f"SASL line longer than {limit} octets") from None
            # Answer -ERR at once and skip the rest of the line, so memory
            # stays bounded however long the line is (checklist §3).
            head = buf.consume(limit - 2)
            idx = buf.find(end)
            if idx >= 0:
                buf.consume(idx + len(end))
            else:
                self._discard_all_but_cr()
                self._discarding = True
            return self._server_bad(BadCommand(head, "command line too long"))
        if line is None:
            return self._server_eof_or_need()
        if sasl:
            self._sasl_expect = False
            self._owed = True
            try:
                data = parse_sasl_line(line)
            except BadLine as exc:
                self._sasl_cancelled = True
                return BadCommand(line, exc.reason)
            if data is None:
                self._sasl_cancelled = True
                return SaslCancel()
            return SaslResponse(data)
        try:
            cmd = parse_command(line, allow_utf8=self._utf8_credentials_allowed())
        except BadLine as exc:
            return self._server_bad(BadCommand(line, exc.reason, exc.command))
        kind = _kind(cmd)
        session = self._session
        if not session.allowed(kind):
            return self._server_bad(
                BadCommand(line, f"{cmd.keyword} is not allowed in the {state.name} state", cmd)
            )
        if isinstance(cmd, Stls):
            if self._tls:
                return self._server_bad(BadCommand(line, "TLS is already active", cmd))
            if self._utf8:
                return self._server_bad(BadCommand(line, "STLS is not allowed after UTF8", cmd))
            if buf:
                # Checklist §7, the CVE-2011-0411 class: bytes pipelined
                # after STLS were sent in plaintext and must never run.
                raise RemoteProtocolError("data pipelined after STLS: possible command injection")
        elif isinstance(cmd, Apop) and (self._greeting is None or self._greeting.timestamp is None):
            return self._server_bad(BadCommand(line, "APOP is not available", cmd))
        session.start(kind)
        self._current = cmd
        self._owed = True
        return cmd

    def _discard_all_but_cr(self) -> None:
        """Drop the rest of an overlong line, except a final CR: it may be
        the first half of the CRLF that ends it, and the command after it
        must not be lost (RFC 2197 §4.2)."""
        buf = self._buf
        if not self._bare_lf and buf.data.endswith(b"\r"):
            buf.consume(len(buf) - 1)
        else:
            buf.clear()

    def _server_bad(self, event: BadCommand) -> BadCommand:
        self._current = event
        self._owed = True
        return event

    def _server_eof_or_need(self) -> Event | _NeedData:
        if self._eof:
            # RFC 1939 §6: a connection that ends without QUIT never enters
            # UPDATE; the application must not remove anything.
            self._session.close()
            self._current = None
            return ConnectionClosed()
        return NEED_DATA

    def _check_text(self, text: str) -> None:
        # RFC 6856 §2.1: outside UTF-8 mode the server MUST NOT send raw
        # non-ASCII; after LANG, response text is UTF-8 (§3).
        if not text.isascii() and not (self._utf8 or self._lang):
            raise LocalProtocolError("non-ASCII response text needs UTF8 or LANG mode")

    def _server_send(self, event: Event) -> bytes:
        session = self._session
        if isinstance(event, ConnectionClosed):
            session.close()
            return b""
        if not isinstance(event, Response):
            raise LocalProtocolError(f"a server sends responses, not {type(event).__name__}")
        if session.state is CLOSED:
            raise LocalProtocolError("the connection is closed")
        limit = self._max_status
        if session.state is AWAIT_GREETING:
            if isinstance(event, Greeting):
                self._check_text(event.text)
                data = write_status(True, None, event.text, limit)
                self._greeting = event
                session.reply(GREETING, True)
                return data
            if isinstance(event, Err):
                self._check_text(event.text)
                data = write_status(False, event.code, event.text, limit)
                session.reply(GREETING, False)
                return data
            raise LocalProtocolError("the first thing a server sends is the greeting")
        writer = self._writer
        if writer is not None:
            if isinstance(event, MessageData):
                return writer.data(event.data)
            if isinstance(event, MessageEnd):
                self._writer = None
                self._server_done(True)
                return writer.end()
            raise LocalProtocolError(
                f"send MessageData or MessageEnd to finish the body, not {type(event).__name__}"
            )
        current = self._current
        if current is None or not self._owed:
            if isinstance(event, Err) and current is None:
                # An unsolicited -ERR before closing (e.g. on an idle
                # timeout); RFC 1939 §3 prefers silence, real servers don't.
                self._check_text(event.text)
                data = write_status(False, event.code, event.text, limit)
                session.close()
                return data
            raise LocalProtocolError(
                "no command is waiting for a reply"
                if current is None
                else "wait for the client's SASL response"
            )
        expected = (Err,) if self._sasl_cancelled else _expected(current)
        if not isinstance(event, expected):
            names = " or ".join(t.__name__ for t in expected)
            what = "a cancelled AUTH" if self._sasl_cancelled else _kind(current)
            raise LocalProtocolError(
                f"the reply to {what} must be {names}, not {type(event).__name__}"
            )
        if isinstance(event, SaslChallenge):
            if event.malformed:
                raise LocalProtocolError("a server cannot send a malformed SaslChallenge")
            self._owed = False
            self._sasl_expect = True
            return b"+ " + sasl_b64encode(event.data) + b"\r\n"
        if isinstance(event, (Ok, Err, MessageStart)):
            if not (isinstance(event, Ok) and isinstance(current, (Utf8, Lang))):
                # RFC 6856 §3: the new language (or UTF-8 mode) applies
                # from the +OK to LANG/UTF8 itself, so that one may be UTF-8.
                self._check_text(event.text)
            data = write_status(not isinstance(event, Err), event.code, event.text, limit)
            if isinstance(event, MessageStart):
                self._writer = BodyWriter()
                return data
        elif isinstance(event, StatOk):
            data = write_status(True, None, f"{event.count} {event.size}", limit)
        elif isinstance(event, (ListEntryOk, UidlEntryOk)):
            data = write_entry(event, limit)
        else:
            assert isinstance(event, (ListOk, UidlOk, CapaOk, LangOk))
            self._check_text(event.text)
            if isinstance(event, CapaOk):
                for line in event.capabilities.to_lines():
                    self._check_text(line)
                self._capabilities = event.capabilities
            data = write_multiline(event, limit)
        self._server_done(not isinstance(event, Err))
        return data

    def _server_done(self, ok: bool) -> None:
        current = self._current
        assert current is not None
        kind = _kind(current)
        session = self._session
        if isinstance(current, BadCommand):
            # A USER/PASS/APOP/AUTH we refuse, malformed (a non-ASCII PASS)
            # or unwelcome (a second USER on a strict server), still fails
            # as that command: the client cannot tell why and moves as for
            # any -ERR to it (a failed USER or PASS clears the USER, RFC
            # 1939 §7), so we must too or the two sides drift apart.  Any
            # other refused command changes nothing (RFC 1939 §3).
            keyword = current.line.split(b" ", 1)[0].upper()
            if keyword in _AUTH_KEYWORDS:
                kw = keyword.decode("ascii")
                session.state = session.after_reply(
                    session.after_start(session.state, kw), kw, False
                )
        else:
            session.reply(kind, ok)
        if ok:
            if isinstance(current, Utf8):
                self._utf8 = True
            elif isinstance(current, Lang) and current.language is not None:
                self._lang = True
        self._current = None
        self._owed = False
        self._sasl_cancelled = False


def _trusted(cls: type[Event], **fields: object) -> Event:
    """Build an event from already-validated parser output.

    The parsers check what they produce; re-validating a 200,000-entry
    listing in ``__post_init__`` would halve LIST throughput.
    """
    event = object.__new__(cls)
    for name, value in fields.items():
        object.__setattr__(event, name, value)
    return event


# The events of a message body, built without the dataclass __init__: a
# frozen dataclass sets each field through object.__setattr__ and then
# validates, where the slot's own descriptor is a single C call, and the
# parser has already checked what it hands over.  MessageEnd has no field,
# so one instance serves every body.
_MESSAGE_END: Final = MessageEnd()
_new_event = object.__new__
_set_data = MessageData.__dict__["data"].__set__
_set_text = MessageStart.__dict__["text"].__set__
_set_code = MessageStart.__dict__["code"].__set__


def _message_data(data: bytes) -> MessageData:
    event: MessageData = _new_event(MessageData)
    _set_data(event, data)
    return event


def _message_start(text: str) -> MessageStart:
    """``+OK text`` to RETR/TOP: *text* checked, no response code."""
    event: MessageStart = _new_event(MessageStart)
    _set_text(event, text)
    _set_code(event, None)
    return event


def _trusted_uidl_entry(number: int, uid: str) -> Event:
    if number < 1 or not uid.isascii() or not uid.isprintable():
        raise ValueError("malformed UIDL reply")
    return _trusted(UidlEntryOk, number=number, uid=uid)

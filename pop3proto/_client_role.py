"""The client role: commands out, the server's replies in.

Theory of operation
-------------------
The client keeps a FIFO of the commands it sent that are not finally
answered yet, each with the shape of its reply from the command table
(:mod:`pop3proto._commands`).  The head of the FIFO says how to frame what
arrives: ``+OK`` to RETR opens a body, ``+OK`` to DELE does not, ``+`` in a
SASL exchange is a challenge.  That FIFO is all RFC 2449 PIPELINING needs:
sending several commands is just appending several.

State changes follow replies, never commands (RFC 2449 §6.6): a command
"starts" in the state table when it reaches the head of the FIFO, and its
final reply moves the session.  To check a command at the moment it is
*sent*, the client keeps a projection: the state the session will be in if
everything before it succeeds.  A command the projection forbids is
refused, so a pipelined ``USER, PASS, STAT`` is fine while ``STAT`` alone
in AUTHORIZATION is not.

Replies are parsed from the receive buffer as they complete: a status line
(held to ``max_status_size``), a listing (parsed whole, held to
``max_listing_size``) or a body (streamed as :class:`MessageData` pieces,
dot-unstuffed by a :class:`~pop3proto._readers.BodyReader`, so memory is
bounded by what one read delivers).  With pipelined replies the buffer may
hold many bodies at once; the reader then takes out exactly one body per
step instead of re-splitting everything behind it, which would be
quadratic.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable
from typing import Final

from ._buffer import LineTooLong
from ._commands import (
    BAD_COMMAND_SPEC,
    BY_TYPE,
    CommandSpec,
    allowed,
    keyword_of,
    sasl_line,
    write_command,
)
from ._core import RoleCore
from ._errors import LocalProtocolError, RemoteProtocolError
from ._events import (
    CloseReason,
    Command,
    ConnectionClosed,
    Event,
    SaslCancel,
    SaslChallenge,
    SaslResponse,
)
from ._readers import (
    BodyReader,
    find_block_end,
    parse_status,
    raw_status_text,
    trusted,
)
from ._replies import Effect, Framing, Reply
from ._response_events import Err, Greeting, MessageData, MessageEnd, MessageStart, Ok
from ._sentinels import NEED_DATA, PAUSED, NeedData, Paused
from ._state import (
    AWAIT_GREETING,
    CLOSED,
    ERROR,
    GREETING,
    REPLY_TRANSITIONS,
    SASL,
    START_TRANSITIONS,
    TLS_PENDING,
    TRANSACTION,
    UPDATE,
    SessionState,
    State,
)
from .sasl._codec import sasl_b64decode

__all__ = ["ClientRole"]

_BODY: Final = Framing.BODY
PEER_CLOSED: Final = CloseReason.PEER_CLOSED
LOCAL_CLOSED: Final = CloseReason.LOCAL_CLOSED
_LINE: Final = Framing.LINE
_LISTING: Final = Framing.LISTING
_SASL: Final = Framing.SASL

# A status text the short cut for +OK to RETR/TOP cannot take as it is.
_NOT_PRINTABLE: Final = re.compile(rb"[^\x20-\x7e]").search
# What next_messages() searches for: a line that starts with a dot, and the
# terminator (RFC 1939 §3).
_FIND_DOT_LINE: Final = re.compile(rb"\r\n\.").search
_FIND_TERM: Final = re.compile(rb"\r\n\.\r\n").search
# Dot-unstuffing (RFC 1939 §3) of lines after the first: one substitution
# (faster than splitting at each dot line and joining).
_UNSTUFF: Final = re.compile(rb"\r\n\.").sub
# The commands whose positive reply in TRANSACTION starts and ends without
# moving the session (RETR, TOP, ...): next_messages() may take their
# replies in bulk, as _finish() would have left everything as it was.
_STAYS: Final = frozenset(
    kind
    for kind in ("RETR", "TOP")
    if (TRANSACTION, kind) not in START_TRANSITIONS
    and (TRANSACTION, kind, True) not in REPLY_TRANSITIONS
)


def _decode_utf8(data: bytes) -> str:
    return data.decode("utf-8", "replace")


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

#: A sent command and the shape of its reply, as the FIFO holds them.
_Sent = tuple[Command, CommandSpec, Reply]


class ClientRole(RoleCore):
    """The client half of :class:`pop3proto.Connection`."""

    __slots__ = (
        "allow_pipelining",
        "auth_failed",
        "block",
        "block_scan",
        "block_text",
        "body",
        "end_pending",
        "lenient_end",
        "max_listing",
        "pipelining",
        "prepared",
        "projected",
        "queue",
        "reader",
        "sasl_malformed",
        "sasl_owed",
    )

    def __init__(
        self,
        *,
        lenient_end: bool,
        allow_unadvertised_pipelining: bool,
        max_listing_size: int,
        **options: object,
    ) -> None:
        super().__init__(**options)  # type: ignore[arg-type]
        # Every command sent and not yet finally answered.
        self.queue: deque[_Sent] = deque()
        self.projected = AWAIT_GREETING
        self.allow_pipelining = allow_unadvertised_pipelining
        self.pipelining = allow_unadvertised_pipelining  # ... or advertised
        self.lenient_end = lenient_end
        self.max_listing = max_listing_size
        # The last event can_send() approved, with what send() needs of it:
        # send() of that very event right after reuses them instead of
        # checking twice.  Anything that may change the answer clears it.
        self.prepared: tuple[Event, bytes, _Sent | None] | None = None
        self.sasl_owed = False  # we owe a SASL response
        self.sasl_malformed = False  # ... and it must be a cancel
        self.block: Reply | None = None  # reading a listing of this shape
        self.block_text = ""
        self.block_scan = 0
        self.body: BodyReader | None = None  # the reader, while in a body
        self.reader: BodyReader | None = None
        self.end_pending = False
        self.auth_failed = False

    @property
    def outstanding(self) -> tuple[Command, ...]:
        return tuple(sent[0] for sent in self.queue)

    def tls_established(self) -> None:
        self.prepared = None
        super().tls_established()
        self.pipelining = self.allow_pipelining
        self.projected = self.session.state

    def apply(self, effect: Effect, event: Event) -> None:
        super().apply(effect, event)
        if effect is Effect.CAPABILITIES:
            # RFC 2449 §6.6: pipeline only if the server says it can.
            caps = self.capabilities
            assert caps is not None
            self.pipelining = self.allow_pipelining or caps.pipelining

    # ------------------------------------------------------------------
    # Output
    # ------------------------------------------------------------------

    def can_send(self, event: Event) -> bool:
        if self.session.state is ERROR:
            return False
        try:
            data, sent = self.prepare(event)
        except LocalProtocolError:
            return False
        self.prepared = (event, data, sent)
        return True

    def send(self, event: Event) -> bytes:
        prepared = self.prepared
        self.prepared = None
        if prepared is not None and prepared[0] is event:
            data, sent = prepared[1], prepared[2]
        else:
            data, sent = self.prepare(event)
        if sent is None:
            if type(event) is ConnectionClosed:
                # We are closing our end (h11 lets you "send" this too).
                self.close(LOCAL_CLOSED)
            else:
                self.sasl_owed = False
                self.sasl_malformed = False
            return data
        queue = self.queue
        queue.append(sent)
        kind = sent[1].kind
        if len(queue) == 1:
            self.session.start(kind)
        self.projected = _projection(self.projected, kind)
        return data

    def send_all(self, events: Iterable[Event]) -> bytes:
        """:meth:`send` of each event in turn, the bytes joined.

        A pipelined burst (RFC 2449 §6.6) is many commands of one type:
        after the first is accepted, the next one of the same type needs
        no check again when nothing the checks read has changed (it ends
        no batch, has no precondition, its reply shape is fixed and it
        leaves the projected state where it was), so it is only written
        and queued.
        """
        out: list[bytes] = []
        append = out.append
        queue = self.queue
        limit = self.max_command
        same: type[Event] | None = None
        sent: _Sent | None = None
        for event in events:
            if type(event) is same and sent is not None:
                data = write_command(event, limit)  # type: ignore[arg-type]
                queue.append((event, sent[1], sent[2]))  # type: ignore[arg-type]
                append(data)
                continue
            before = self.projected
            append(self.send(event))
            same = None
            if queue and queue[-1][0] is event:
                sent = queue[-1]
                spec, reply = sent[1], sent[2]
                if (
                    self.pipelining
                    and not spec.ends_batch
                    and spec.check is None
                    and spec.reply is reply
                    and self.projected is before
                ):
                    same = type(event)
        return b"".join(out)

    def prepare(self, event: Event) -> tuple[bytes, _Sent | None]:
        """Check that *event* may be sent now and serialize it; changes
        nothing, so :meth:`can_send` can ask too.  Returns the bytes and,
        for a command, what the FIFO will hold."""
        spec = BY_TYPE.get(type(event))
        if spec is None:
            return self._prepare_other(event), None
        if spec is BAD_COMMAND_SPEC:
            raise LocalProtocolError("a client sends commands, not BadCommand")
        cmd: Command = event  # type: ignore[assignment]
        session = self.session
        state = session.state
        if state is AWAIT_GREETING:
            raise LocalProtocolError("wait for the server's greeting before sending commands")
        if state is CLOSED:
            raise LocalProtocolError("the connection is closed")
        queue = self.queue
        if queue:
            last = queue[-1][1]
            if last.ends_batch:
                # RFC 2449 §6.6 / RFC 2595 §4 / RFC 5034 §4.
                raise LocalProtocolError(
                    f"{last.keyword} must end a pipelined batch: "
                    f"wait for its reply before {keyword_of(cmd)}"
                )
            if not self.pipelining:
                raise LocalProtocolError(
                    "the server did not advertise PIPELINING: wait for each reply "
                    "(or pass allow_unadvertised_pipelining=True)"
                )
        projected = self.projected
        if not allowed(spec, projected, strict_user=session.strict_user):
            raise LocalProtocolError(
                f"{keyword_of(cmd)} is not allowed in the {projected.name} state"
            )
        check = spec.check
        if check is not None:
            reason = check(cmd, self)
            if reason is not None:
                raise LocalProtocolError(reason)
        reply = spec.reply
        if type(reply) is not Reply:
            reply = reply(cmd)  # type: ignore[operator]
        return write_command(cmd, self.max_command), (cmd, spec, reply)

    def _prepare_other(self, event: Event) -> bytes:
        """The events a client sends that are not commands."""
        kind = type(event)
        if kind is SaslResponse or kind is SaslCancel:
            if not self.sasl_owed:
                raise LocalProtocolError("there is no SASL challenge to answer")
            if kind is SaslCancel:
                return b"*\r\n"
            if self.sasl_malformed:
                raise LocalProtocolError(
                    "the challenge was not valid base64: cancel with SaslCancel (RFC 5034 §4)"
                )
            return sasl_line(event.data)  # type: ignore[attr-defined]
        if kind is ConnectionClosed:
            return b""
        raise LocalProtocolError(f"a client sends commands, not {kind.__name__}")

    # ------------------------------------------------------------------
    # Input
    # ------------------------------------------------------------------

    def next_event(self) -> Event | NeedData | Paused:
        self.prepared = None
        state = self.session.state
        if state is CLOSED:
            return self.closed_event()
        if state is TLS_PENDING:
            self._check_no_injection()
            return PAUSED
        if self.end_pending:
            self.end_pending = False
            return self._finish(_MESSAGE_END, True)
        if self.body is not None:
            return self._read_body()
        if self.block is not None:
            return self._read_block()
        if self.sasl_owed:
            return PAUSED
        limit = self.max_sasl if state is SASL else self.max_status
        try:
            line = self.buf.extract_line(limit, bare_lf=self.bare_lf)
        except LineTooLong:
            raise RemoteProtocolError(f"reply line longer than {limit} octets") from None
        if line is None:
            if self.eof:
                return self._eof()
            return NEED_DATA
        try:
            return self._line(line)
        except ValueError as exc:
            raise RemoteProtocolError(str(exc)) from None

    def next_messages(self, limit: int) -> list[bytes]:
        """Whole RETR/TOP replies at the head of the FIFO, as message bytes.

        A short cut for a pipelined download, where the buffer holds many
        complete replies: each is taken out with a few C-level searches and
        one copy, and no event object.  It stops, leaving everything else to
        :meth:`next_event`, at the first reply that is not a body, is not
        all buffered, or has a status line the ``+OK`` short cut of
        :meth:`_line` would not take as it is (a response code, text that
        is not printable ASCII, ``-ERR``).  Never in lenient modes (bare LF,
        sloppy ends), whose framing needs the streaming reader.

        The verdicts are :meth:`next_event`'s: the status line is held to
        the same limit, the first ``CRLF . CRLF`` ends a body, a stuffed dot
        is removed exactly where the streaming reader removes it, and the
        session moves through :meth:`_finish` as for a
        :class:`MessageEnd`.  So the result does not depend on how the
        bytes were split, and the bytes are those the events would carry,
        joined.
        """
        self.prepared = None
        queue = self.queue
        if (
            not queue
            or queue[0][2].framing is not _BODY
            or self.body is not None
            or self.end_pending
            or self.bare_lf
            or self.lenient_end
            or self.session.state is not TRANSACTION
            or not self.buf
        ):
            return []
        data = self.buf.data
        size = len(data)
        max_status = self.max_status
        startswith = data.startswith
        find = data.find
        out: list[bytes] = []
        append = out.append
        pos = 0
        checked: Reply | None = None  # a reply shape already found fit
        with memoryview(data) as view:
            for _, spec, reply in queue:
                if len(out) >= limit or pos >= size:
                    break
                if reply is not checked:
                    if (
                        reply.framing is not _BODY
                        or reply.effect is not None
                        or spec.kind not in _STAYS
                    ):
                        break
                    checked = reply
                # The status line: as _line's short cut takes it.
                eol = find(b"\r\n", pos, pos + max_status)
                if eol < 0 or not startswith(b"+OK", pos):
                    break
                if eol > pos + 3 and (
                    data[pos + 3] != 0x20
                    or data[pos + 4] == 0x5B  # "[": a response code
                    or _NOT_PRINTABLE(data, pos + 4, eol) is not None
                ):
                    break
                # The body starts at a line start: search from the status
                # line's CRLF so that a leading dot is found too.
                first = _FIND_DOT_LINE(data, eol)
                if first is None:
                    break
                dot = first.start()
                if startswith(b"\r\n", dot + 3):
                    # The first dot line is the terminator: nothing stuffed.
                    pos = dot + 5
                    append(bytes(view[eol + 2 : dot + 2]) if dot > eol else b"")
                else:
                    term = _FIND_TERM(data, dot)
                    if term is None:
                        break
                    pos = term.end()
                    # Each dot after a CRLF goes, the first line's too
                    # (skipped here: the substitution sees no CRLF before it).
                    start = eol + 3 if dot == eol else eol + 2
                    append(_UNSTUFF(b"\r\n", view[start : term.start() + 2]))
        if out:
            # What _finish() does for each MessageEnd, at once: these
            # replies move no state and have no effect (_STAYS), so only
            # the next command's start is left.
            self.buf.discard(pos)
            popleft = queue.popleft
            for _ in out:
                popleft()
            self.auth_failed = False
            if queue:
                self.session.start(queue[0][1].kind)
            else:
                self.projected = self.session.state
        return out

    def _check_no_injection(self) -> None:
        if self.buf:
            # RFC 2595 §4: the server may send nothing after its +OK until
            # TLS is up; bytes here were injected by someone on the path.
            raise RemoteProtocolError(
                "data followed +OK to STLS before TLS started: possible response injection"
            )

    def _line(self, line: bytes) -> Event | NeedData:
        session = self.session
        if session.state is AWAIT_GREETING:
            return self._greeting(line)
        if not self.queue:
            if line.startswith(b"-ERR"):
                # Dovecot and WildDuck send "-ERR Disconnected for
                # inactivity." and close (against RFC 1939 §3); report it as
                # an Err and expect EOF.
                _, code, text = parse_status(line, self.decode)
                session.close()
                return Err(text, code)
            raise RemoteProtocolError(
                f"unexpected reply with no command outstanding: {line[:40]!r}"
            )
        reply = self.queue[0][2]
        framing = reply.framing
        if (
            framing is _BODY
            and (line == b"+OK" or line[:4] == b"+OK ")
            and line[4:5] != b"["
            and _NOT_PRINTABLE(line, 4) is None
        ):
            # The reply a mailbox download is made of, +OK to RETR or TOP:
            # printable ASCII text with no response code reads the same in
            # every mode, so parse_status below has nothing to add.
            self.body = self._start_body()
            return _message_start(line[4:].decode("ascii"))
        if framing is _SASL and line[:1] == b"+" and line[:3] != b"+OK":
            return self._challenge(line)
        decode = self.decode
        if reply.utf8_text and line.startswith(b"+OK"):
            decode = _decode_utf8
        ok, code, text = parse_status(line, decode)
        if not ok:
            return self._finish(Err(text, code), False)
        if framing is _LINE:
            assert reply.read is not None
            return self._finish(reply.read(text, self.queue[0][0]), True)
        if framing is _BODY:
            self.body = self._start_body()
            return MessageStart(text, code)
        if framing is _LISTING:
            self.block = reply
            # Listings have no code field: keep the text verbatim.
            self.block_text = raw_status_text(line, decode)
            self.block_scan = 0
            return self._read_block()
        return self._finish(Ok(text, code), True)

    def _greeting(self, line: bytes) -> Event:
        session = self.session
        ok, code, text = parse_status(line, self.decode)
        if ok:
            greeting = Greeting(raw_status_text(line, self.decode))
            self.greeting = greeting
            session.reply(GREETING, True)
            self.projected = session.state
            return greeting
        session.reply(GREETING, False)
        return Err(text, code)

    def _challenge(self, line: bytes) -> Event:
        # RFC 5034 §4: continue-req = "+" SP [base64] CRLF.  A bare "+" is
        # tolerated as an empty challenge (some servers send it).
        if len(line) > 1 and line[1:2] != b" ":
            raise ValueError(f"malformed SASL challenge {line[:40]!r}")
        self.sasl_owed = True
        try:
            data = sasl_b64decode(line[2:])
        except ValueError:
            # RFC 5034 §4: a client that cannot decode a challenge MUST
            # cancel with "*"; the event says so and send() enforces it.
            self.sasl_malformed = True
            return trusted(SaslChallenge, data=bytes(line[2:]), malformed=True)
        return SaslChallenge(data)

    def _start_body(self) -> BodyReader:
        # One reader serves every body of the connection: it is back at a
        # line start whenever a body ends.
        reader = self.reader
        if reader is None:
            reader = self.reader = BodyReader(bare_lf=self.bare_lf, sloppy_end=self.lenient_end)
        reader.at_line_start = True
        return reader

    def _read_block(self) -> Event | NeedData:
        buf = self.buf
        limit = self.max_listing
        end, consumed = find_block_end(buf.data, max(self.block_scan - 4, 0), bare_lf=self.bare_lf)
        if end < 0 or consumed > limit:
            if len(buf) > limit or consumed > limit:
                raise RemoteProtocolError(f"multi-line reply larger than {limit} octets")
            if self.eof:
                raise RemoteProtocolError("connection closed in the middle of a multi-line reply")
            self.block_scan = len(buf)
            return NEED_DATA
        block = buf.consume(consumed, end)
        reply = self.block
        assert reply is not None and reply.read is not None
        self.block = None
        try:
            event = reply.read(block, self.block_text, self.bare_lf, self.decode)
        except ValueError as exc:
            raise RemoteProtocolError(str(exc)) from None
        return self._finish(event, True)

    def _read_body(self) -> Event | NeedData:
        body = self.body
        assert body is not None
        buf = self.buf
        if not buf:
            if self.eof:
                raise RemoteProtocolError("connection closed in the middle of a message body")
            return NEED_DATA
        if self.idle and self.lenient_end:
            # The server fell silent on a held-back tail that a correct
            # server would have completed: take it as the terminator.
            held = buf.peek()
            if held in (b".\r\n", b".\r", b".\n"):
                # "last line.CRLF": the last line lacked its CRLF.
                buf.clear()
                self.body = None
                return self._finish(_MESSAGE_END, True)
            if held in (b"\r\n.\r", b"\n.\r"):
                # "CRLF . CR": the terminator lacked its LF.
                buf.clear()
                self.body = None
                self.end_pending = True
                return _message_data(held[:-2])
        unterminated = False
        if len(self.queue) > 1:
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
                self.body = None
                if out:
                    self.end_pending = True
                    return _message_data(out)
                return self._finish(_MESSAGE_END, True)
        out, leftover, done = body.feed(buf.take_all(), unterminated=unterminated)
        if leftover:
            buf.prepend(leftover)
        if done:
            self.body = None
            if out:
                self.end_pending = True
                return _message_data(out)
            return self._finish(_MESSAGE_END, True)
        if out:
            return _message_data(out)
        if self.eof:
            raise RemoteProtocolError("connection closed in the middle of a message body")
        return NEED_DATA

    def _finish(self, event: Event, ok: bool) -> Event:
        """The final reply to the head of the FIFO has arrived."""
        session = self.session
        queue = self.queue
        _, spec, reply = queue.popleft()
        session.reply(spec.kind, ok)
        self.auth_failed = not ok and spec.authenticates
        if ok:
            effect = reply.effect
            if effect is not None:
                self.apply(effect, event)
            if session.state is TLS_PENDING:
                self._check_no_injection()
        if queue:
            session.start(queue[0][1].kind)
        else:
            self.projected = session.state
        return event

    def _eof(self) -> Event:
        if self.buf:
            raise RemoteProtocolError("connection closed in the middle of a reply line")
        session = self.session
        queue = self.queue
        if not queue or self.auth_failed:
            # RFC 1939 §4: after a failed authentication the server may
            # close; anything pipelined after it is moot.
            queue.clear()
            return self.close(PEER_CLOSED)
        if queue[0][1].closes:
            # QUIT was sent: from TRANSACTION, whether the server removed
            # the marked messages is unknown (RFC 1939 §6).
            unknown = session.state is UPDATE
            queue.clear()
            return self.close(PEER_CLOSED, outcome_unknown=unknown)
        raise RemoteProtocolError(f"connection closed with {len(queue)} command(s) unanswered")


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

"""The server role: commands in, replies out.

Theory of operation
-------------------
The server hands the application one command at a time.  After each one
:meth:`ServerRole.next_event` reports :data:`PAUSED` until the final reply
has been sent, so pipelined commands wait in the receive buffer, in order,
and none is lost (RFC 2449 §6.6, RFC 2197 §4.2).  The command being answered
comes with the shape of its reply from the command table
(:mod:`pop3proto._commands`), which says which response events may answer
it; each event is written by its writer in :data:`pop3proto._writers.WRITERS`.

Keywords the application declared (``Connection(extension_commands=...)``)
come as :class:`Extension` events, answered like any command (a status
line, or a body when declared multi-line); they change no state.

A line that is not an acceptable command (unknown, malformed, too long, or
not allowed in this state) becomes a :class:`BadCommand` that the
application answers with ``-ERR`` (RFC 1939 §3), and the session goes on.
Only what would desynchronise the two sides raises
:class:`RemoteProtocolError`: plaintext bytes pipelined after STLS (the
CVE-2011-0411 class of command injection, RFC 2595 §4), a SASL line over
its limit.
"""

from __future__ import annotations

from typing import Final

from ._buffer import LineTooLong
from ._commands import (
    BAD_COMMAND_SPEC,
    BY_KEYWORD,
    BY_TYPE,
    allowed,
    parse_command,
    parse_sasl_line,
)
from ._core import RoleCore
from ._errors import LocalProtocolError, RemoteProtocolError
from ._events import (
    BadCommand,
    CloseReason,
    Command,
    ConnectionClosed,
    Event,
    Extension,
    Response,
    SaslCancel,
    SaslChallenge,
    SaslResponse,
)
from ._readers import BadLine
from ._replies import ERR_ONLY, Framing, Reply
from ._response_events import CapaOk, Err, Greeting, MessageData, MessageEnd, MessageStart, Ok
from ._sentinels import NEED_DATA, PAUSED, NeedData, Paused
from ._state import AWAIT_GREETING, CLOSED, ERROR, GREETING, TLS_PENDING, SessionState, State
from ._writers import WRITERS, BodyWriter

__all__ = ["ServerRole"]

_BODY: Final = Framing.BODY
PEER_CLOSED: Final = CloseReason.PEER_CLOSED
LOCAL_CLOSED: Final = CloseReason.LOCAL_CLOSED


class ServerRole(RoleCore):
    """The server half of :class:`pop3proto.Connection`."""

    __slots__ = (
        "current",
        "discarding",
        "extensions",
        "owed",
        "reply",
        "sasl_cancelled",
        "sasl_expect",
        "writer",
    )

    def __init__(self, *, extension_commands: dict[str, bool], **options: object) -> None:
        super().__init__(**options)  # type: ignore[arg-type]
        #: Extension keyword -> whether a positive reply has a body.
        self.extensions = extension_commands
        # The command being answered and the shape of its reply; whether a
        # reply is owed now; the body being written.
        self.current: Command | None = None
        self.reply: Reply = ERR_ONLY
        self.owed = False
        self.sasl_expect = False  # the next line is a SASL response
        self.sasl_cancelled = False  # ... and it cancelled the exchange
        self.writer: BodyWriter | None = None
        self.discarding = False  # skipping the rest of an overlong line

    @property
    def outstanding(self) -> tuple[Command, ...]:
        return () if self.current is None else (self.current,)

    # ------------------------------------------------------------------
    # Input
    # ------------------------------------------------------------------

    def next_event(self) -> Event | NeedData | Paused:
        state = self.session.state
        if state is CLOSED:
            return self.closed_event()
        if state is AWAIT_GREETING:
            return PAUSED
        if state is TLS_PENDING:
            if self.buf:
                raise RemoteProtocolError(
                    "plaintext data arrived after STLS before TLS started: "
                    "possible command injection"
                )
            return PAUSED
        if self.owed or self.writer is not None:
            return PAUSED
        # A command is current only while its reply is owed (PAUSED above)
        # or while the SASL response it asked for is awaited.
        assert self.current is None or self.sasl_expect
        buf = self.buf
        end = b"\n" if self.bare_lf else b"\r\n"
        if self.discarding:
            idx = buf.find(end)
            if idx < 0:
                self._discard_all_but_cr()
                return self._eof_or_need()
            buf.consume(idx + len(end))
            self.discarding = False
        sasl = self.sasl_expect
        limit = self.max_sasl if sasl else self.max_command
        try:
            line = buf.extract_line(limit, bare_lf=self.bare_lf)
        except LineTooLong:
            if sasl:
                raise RemoteProtocolError(f"SASL line longer than {limit} octets") from None
            # Answer -ERR at once and skip the rest of the line, so memory
            # stays bounded however long the line is.
            head = buf.consume(limit - 2)
            idx = buf.find(end)
            if idx >= 0:
                buf.consume(idx + len(end))
            else:
                self._discard_all_but_cr()
                self.discarding = True
            return self._bad(BadCommand(head, "command line too long"))
        if line is None:
            return self._eof_or_need()
        if sasl:
            return self._sasl_line(line)
        extensions = self.extensions
        try:
            cmd = parse_command(
                line, allow_utf8=self.utf8_credentials_allowed(), extensions=bool(extensions)
            )
        except BadLine as exc:
            return self._bad(BadCommand(line, exc.reason, exc.command))
        if type(cmd) is Extension:
            # Only the keywords the application answers; the reply shape
            # (a body or not) is the application's declaration.
            multiline = extensions.get(cmd.name)
            if multiline is None:
                return self._bad(BadCommand(line, "unknown command"))
            if multiline:
                cmd = Extension(cmd.name, cmd.arguments, multiline=True)
        spec = BY_TYPE[type(cmd)]
        session = self.session
        if not allowed(spec, state, strict_user=session.strict_user):
            return self._bad(
                BadCommand(line, f"{cmd.keyword} is not allowed in the {state.name} state", cmd)
            )
        check = spec.check
        if check is not None:
            reason = check(cmd, self)
            if reason is not None:
                return self._bad(BadCommand(line, reason, cmd))
        kind = spec.kind
        if buf and _starts_tls(state, kind):
            # RFC 2595 §4, the CVE-2011-0411 class: bytes pipelined after
            # STLS were sent in plaintext and must never run.
            raise RemoteProtocolError("data pipelined after STLS: possible command injection")
        session.start(kind)
        self.current = cmd
        self.reply = spec.reply_to(cmd)
        self.owed = True
        return cmd

    def _sasl_line(self, line: bytes) -> Event:
        self.sasl_expect = False
        self.owed = True
        try:
            data = parse_sasl_line(line)
        except BadLine as exc:
            self.sasl_cancelled = True
            return BadCommand(line, exc.reason)
        if data is None:
            self.sasl_cancelled = True
            return SaslCancel()
        return SaslResponse(data)

    def _discard_all_but_cr(self) -> None:
        """Drop the rest of an overlong line, except a final CR: it may be
        the first half of the CRLF that ends it, and the command after it
        must not be lost (RFC 2197 §4.2)."""
        buf = self.buf
        if not self.bare_lf and buf.data.endswith(b"\r"):
            buf.consume(len(buf) - 1)
        else:
            buf.clear()

    def _bad(self, event: BadCommand) -> BadCommand:
        self.current = event
        self.reply = ERR_ONLY
        self.owed = True
        return event

    def _eof_or_need(self) -> Event | NeedData:
        if self.eof:
            # RFC 1939 §6: a connection that ends without QUIT never enters
            # UPDATE; the application must not remove anything.
            self.current = None
            return self.close(PEER_CLOSED)
        return NEED_DATA

    # ------------------------------------------------------------------
    # Output
    # ------------------------------------------------------------------

    def _check_text(self, text: str) -> None:
        # RFC 6856 §2.1: outside UTF-8 mode the server MUST NOT send raw
        # non-ASCII; after LANG, response text is UTF-8 (§3).
        if not text.isascii() and not (self.utf8 or self.lang):
            raise LocalProtocolError("non-ASCII response text needs UTF8 or LANG mode")

    def can_send(self, event: Event) -> bool:
        if self.session.state is ERROR:
            return False
        try:
            self._prepare(event)
        except LocalProtocolError:
            return False
        return True

    def _prepare(self, event: Event) -> bytes:
        """Check that *event* may be sent now and serialize it if it is a
        status line (``b""`` for what the body writer or a close produces).
        Changes nothing, so :meth:`can_send` asks the very same questions
        :meth:`send` does."""
        writer = self.writer
        kind = type(event)
        if writer is not None and (kind is MessageData or kind is MessageEnd):
            return b""  # the hot path: a body going out
        if kind is ConnectionClosed:
            return b""
        if not isinstance(event, Response):
            raise LocalProtocolError(f"a server sends responses, not {kind.__name__}")
        session = self.session
        if session.state is CLOSED:
            raise LocalProtocolError("the connection is closed")
        limit = self.max_status
        if session.state is AWAIT_GREETING:
            if not isinstance(event, (Greeting, Err)):
                raise LocalProtocolError("the first thing a server sends is the greeting")
            self._check_text(event.text)
            return WRITERS[type(event)](event, limit)
        if writer is not None:
            raise LocalProtocolError(
                f"send MessageData or MessageEnd to finish the body, not {kind.__name__}"
            )
        current = self.current
        if current is None or not self.owed:
            if isinstance(event, Err) and current is None:
                # An unsolicited -ERR before closing (e.g. on an idle
                # timeout); RFC 1939 §3 prefers silence, real servers don't.
                self._check_text(event.text)
                return WRITERS[type(event)](event, limit)
            raise LocalProtocolError(
                "no command is waiting for a reply"
                if current is None
                else "wait for the client's SASL response"
            )
        reply = ERR_ONLY if self.sasl_cancelled else self.reply
        if not isinstance(event, reply.events):
            names = " or ".join(t.__name__ for t in reply.events)
            what = "a cancelled AUTH" if self.sasl_cancelled else _kind_of(current)
            raise LocalProtocolError(f"the reply to {what} must be {names}, not {kind.__name__}")
        text = getattr(event, "text", None)
        if text is not None and not (reply.utf8_text and isinstance(event, Ok)):
            # The +OK to LANG/UTF8 itself may be in the new mode already.
            self._check_text(text)
        if isinstance(event, CapaOk):
            for line in event.capabilities.to_lines():
                self._check_text(line)
        return WRITERS[type(event)](event, limit)

    def send(self, event: Event) -> bytes:
        writer = self.writer
        if writer is not None:
            # The hot path, a body going out: what _prepare would allow at
            # once (it returns b"" for these two without a check).
            if type(event) is MessageData:
                return writer.data(event.data)
            if type(event) is MessageEnd:
                self.writer = None
                self._done(True, event)
                return writer.end()
        data = self._prepare(event)
        session = self.session
        if type(event) is ConnectionClosed:
            self.close(LOCAL_CLOSED)
            return b""
        if session.state is AWAIT_GREETING:
            if isinstance(event, Greeting):
                self.greeting = event
            session.reply(GREETING, isinstance(event, Greeting))
            return data
        if self.current is None:
            session.close()  # after an unsolicited -ERR (see _prepare)
            return data
        if isinstance(event, SaslChallenge):
            self.owed = False
            self.sasl_expect = True
        elif isinstance(event, MessageStart):
            self.writer = BodyWriter()
        else:
            self._done(not isinstance(event, Err), event)
        return data

    def _done(self, ok: bool, event: Event) -> None:
        """The final reply to the current command went out."""
        current = self.current
        assert current is not None
        session = self.session
        if type(current) is BadCommand:
            # A USER/PASS/APOP/AUTH we refuse, malformed (a non-ASCII PASS)
            # or unwelcome (a second USER on a strict server), still fails
            # as that command: the client cannot tell why and moves as for
            # any -ERR to it (a failed USER or PASS clears the USER, RFC
            # 1939 §7), so we must too or the two sides drift apart.  Any
            # other refused command changes nothing (RFC 1939 §3).
            spec = BY_KEYWORD.get(current.line.split(b" ", 1)[0].upper())
            if spec is not None and spec.login:
                kind = spec.kind
                session.state = session.after_reply(
                    session.after_start(session.state, kind), kind, False
                )
        else:
            session.reply(BY_TYPE[type(current)].kind, ok)
            effect = self.reply.effect
            if ok and effect is not None:
                self.apply(effect, event)
        self.current = None
        self.reply = ERR_ONLY
        self.owed = False
        self.sasl_cancelled = False


def _starts_tls(state: State, kind: str) -> bool:
    """Whether a command of *kind*, answered ``+OK``, starts TLS (asked of
    every pipelined command: the answer is looked up once per pair)."""
    key = (state, kind)
    starts = _STARTS_TLS.get(key)
    if starts is None:
        after = SessionState.after_start(state, kind)
        starts = _STARTS_TLS[key] = SessionState.after_reply(after, kind, True) is TLS_PENDING
    return starts


#: (state, command kind) -> whether ``+OK`` to it starts TLS (a fact of the
#: transition tables, which never change: a bounded set of pairs).
_STARTS_TLS: dict[tuple[State, str], bool] = {}


def _kind_of(cmd: Command) -> str:
    return BY_TYPE.get(type(cmd), BAD_COMMAND_SPEC).kind

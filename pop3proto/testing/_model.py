"""A reference model of an RFC 1939 maildrop session, and the protocol a
server under test follows.

:class:`MaildropModel` knows what a correct server answers to each command
of one session on a :class:`Mailbox`; :func:`run_script` drives a
:class:`ServerUnderTest` with command lines in given chunks and checks every
reply against it.  No hypothesis here: the property tests that generate
scripts are in :mod:`pop3proto.testing._properties`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from .._commands import command_from_line
from .._errors import LocalProtocolError
from .._events import (
    BadCommand,
    Capa,
    Command,
    Dele,
    List,
    Noop,
    Pass,
    Quit,
    Retr,
    Rset,
    Stat,
    Top,
    Uidl,
    User,
)

__all__ = [
    "Mailbox",
    "ServerUnderTest",
    "ServerFactory",
    "MaildropModel",
    "Mismatch",
    "Step",
    "run_script",
]


@dataclass(frozen=True)
class Mailbox:
    """One user's maildrop, as a server under test must serve it.

    Fields:
        user, password: the credentials that open it (USER/PASS).
        messages: each message exactly as RETR must return it (CRLF line
            ends, ending with CRLF, or empty), in message-number order.
    """

    user: str = "alice"
    password: str = "secret"
    messages: tuple[bytes, ...] = ()

    def size(self, number: int) -> int:
        """The octet count of message *number* (1-based), RFC 1939 §5."""
        return len(self.messages[number - 1])


class ServerUnderTest(Protocol):
    """One session of the server being tested, driven with bytes.

    This is all :func:`~pop3proto.testing.check_server` needs; wrap a
    sans-I/O server in a few lines (``pop3proto.adapters.testing`` does it
    for the bundled ``ServerSession``).
    """

    def start(self) -> bytes:
        """Open the session; return what the server sends first (the greeting)."""
        ...

    def receive(self, data: bytes) -> bytes:
        """Bytes from the client (never empty); return every byte the server
        writes in response (possibly nothing, e.g. for a partial line)."""
        ...

    @property
    def closed(self) -> bool:
        """Whether the server has closed the connection (after QUIT, or by
        its own policy)."""
        ...

    def close(self) -> None:
        """The client went away without QUIT (EOF), or the test is over."""
        ...


#: Given the mailbox a test wants served, return a function that opens one
#: session on it; sessions opened from the same function share the store
#: (the checker opens a second one to see what QUIT removed).
ServerFactory = Callable[[Mailbox], Callable[[], ServerUnderTest]]


class Mismatch(AssertionError):
    """The server under test answered differently from the reference model."""


@dataclass
class MaildropModel:
    """The state of an RFC 1939 session on *mailbox*, as a correct server
    sees it: the state, the USER given, the messages marked deleted, the
    unique-ids seen so far (they must never change), and whether the
    deletions were committed (only by ``+OK`` to QUIT in TRANSACTION)."""

    mailbox: Mailbox
    state: str = "AUTHORIZATION"  # or USER_OK, TRANSACTION, CLOSED
    user: str | None = None
    deleted: set[int] = field(default_factory=set)
    uids: dict[int, str] = field(default_factory=dict)
    committed: bool = False

    def live(self, number: int | None) -> bool:
        return (
            number is not None
            and 1 <= number <= len(self.mailbox.messages)
            and number not in self.deleted
        )

    def remaining(self) -> tuple[bytes, ...]:
        """The messages the store must hold after the session."""
        gone = self.deleted if self.committed else set()
        return tuple(m for n, m in enumerate(self.mailbox.messages, 1) if n not in gone)

    def multiline(self, cmd: Command) -> bool:
        """Whether a ``+OK`` to *cmd* is followed by a multi-line block."""
        if isinstance(cmd, (Retr, Top, Capa)):
            return True
        return isinstance(cmd, (List, Uidl)) and cmd.number is None

    def check(self, cmd: Command, ok: bool, first: str, block: list[bytes] | None) -> None:
        """Check the reply to *cmd* (*ok*, the status text *first*, the
        unstuffed lines of a multi-line *block*) and move the model."""
        mailbox = self.mailbox
        state = self.state

        def want(expected: bool) -> None:
            if ok is not expected:
                raise Mismatch(f"{_show(cmd)} in {state}: expected {'+OK' if expected else '-ERR'}")

        if isinstance(cmd, Quit):
            want(True)
            self.committed = state == "TRANSACTION"
            self.state = "CLOSED"
        elif isinstance(cmd, Capa):
            pass  # either answer is legal (RFC 2449 is an extension)
        elif state in ("AUTHORIZATION", "USER_OK"):
            if isinstance(cmd, User) and state == "AUTHORIZATION":
                # Either answer is legal (a server may hide which users exist).
                self.state, self.user = ("USER_OK", cmd.name) if ok else (state, None)
            elif isinstance(cmd, Pass) and state == "USER_OK":
                right = self.user == mailbox.user and cmd.password == mailbox.password
                want(right)
                self.state = "TRANSACTION" if right else "AUTHORIZATION"
            else:
                want(False)
        elif isinstance(cmd, Stat):
            want(True)
            live = [n for n in range(1, len(mailbox.messages) + 1) if self.live(n)]
            expected = f"{len(live)} {sum(mailbox.size(n) for n in live)}"
            if first.split()[:2] != expected.split():
                raise Mismatch(f"STAT: expected '+OK {expected}', got '+OK {first}'")
        elif isinstance(cmd, (List, Uidl, Retr, Top, Dele)):
            number = cmd.number
            if number is None:  # LIST or UIDL of the whole maildrop
                assert isinstance(cmd, (List, Uidl))
                want(True)
                self._listing(cmd, block or [])
                return
            want(self.live(number))
            if not ok:
                return
            if isinstance(cmd, Dele):
                self.deleted.add(number)
            elif isinstance(cmd, (List, Uidl)):
                self._entry(cmd, number, first.split()[:2])
            else:
                self._body(cmd, number, block or [])
        elif isinstance(cmd, Noop):
            want(True)
        elif isinstance(cmd, Rset):
            want(True)
            self.deleted.clear()
        else:
            want(False)

    def _listing(self, cmd: List | Uidl, block: list[bytes]) -> None:
        seen = []
        for line in block:
            parts = line.decode("latin-1").split()
            if len(parts) < 2 or not parts[0].isdigit():
                raise Mismatch(f"{_show(cmd)}: malformed listing line {line!r}")
            seen.append(int(parts[0]))
            self._entry(cmd, int(parts[0]), parts[:2])
        live = [n for n in range(1, len(self.mailbox.messages) + 1) if self.live(n)]
        if seen != live:
            raise Mismatch(f"{_show(cmd)}: listed messages {seen}, expected {live}")

    def _entry(self, cmd: List | Uidl, number: int, parts: list[str]) -> None:
        if len(parts) != 2 or parts[0] != str(number) or not self.live(number):
            raise Mismatch(f"{_show(cmd)}: bad entry {' '.join(parts)!r} for message {number}")
        if isinstance(cmd, List):
            if parts[1] != str(self.mailbox.size(number)):
                raise Mismatch(
                    f"LIST: message {number} has {self.mailbox.size(number)} octets, "
                    f"listed as {parts[1]}"
                )
            return
        uid = parts[1]
        known = self.uids.setdefault(number, uid)
        if known != uid:
            raise Mismatch(f"UIDL: message {number} changed unique-id {known!r} -> {uid!r}")
        if list(self.uids.values()).count(uid) > 1:
            raise Mismatch(f"UIDL: unique-id {uid!r} given to two messages")

    def _body(self, cmd: Retr | Top, number: int, block: list[bytes]) -> None:
        body = b"".join(line + b"\r\n" for line in block)
        message = self.mailbox.messages[number - 1]
        if isinstance(cmd, Retr):
            if body != message:
                raise Mismatch(f"RETR {number}: body differs: got {body!r}, expected {message!r}")
            return
        # TOP: the headers, the blank line and at most n body lines: a
        # prefix of the message that holds at least the header section.
        end = message.find(b"\r\n\r\n")
        header = len(message) if end < 0 else end + 4
        if not message.startswith(body) or len(body) < header:
            raise Mismatch(f"TOP {number} {cmd.lines}: {body!r} is not a prefix with the headers")


@dataclass(frozen=True)
class Step:
    """One command of a script: the raw *line* (without CRLF) sent in
    *chunks* (the pieces the client writes)."""

    line: bytes
    chunks: tuple[bytes, ...]


def _show(cmd: Command) -> str:
    return "PASS" if isinstance(cmd, Pass) else type(cmd).__name__.upper()


def _parse(line: bytes) -> Command:
    try:
        return command_from_line(line, utf8=False)
    except LocalProtocolError as exc:
        return BadCommand(line, str(exc))


class _Reader:
    """Replies out of what the server wrote, checked against the grammar."""

    def __init__(self) -> None:
        self.buf = b""

    def status(self) -> tuple[bool, str]:
        line = self._line("a status line")
        if line.startswith(b"+OK") and line[3:4] in (b"", b" "):
            return True, line[4:].decode("utf-8", "replace")
        if line.startswith(b"-ERR") and line[4:5] in (b"", b" "):
            return False, line[5:].decode("utf-8", "replace")
        raise Mismatch(f"not a status line: {line!r}")

    def block(self) -> list[bytes]:
        lines = []
        while (line := self._line("the rest of a multi-line reply")) != b".":
            lines.append(line[1:] if line.startswith(b".") else line)
        return lines

    def _line(self, what: str) -> bytes:
        end = self.buf.find(b"\r\n")
        if end < 0:
            raise Mismatch(f"expected {what}, have only {self.buf!r}")
        line, self.buf = self.buf[:end], self.buf[end + 2 :]
        return line


def run_script(
    connect: Callable[[], ServerUnderTest], mailbox: Mailbox, script: Sequence[Step]
) -> MaildropModel:
    """Run one session: greet, send every step, check every reply against
    the model; stop early if the server closes after a ``-ERR``.  Then open
    a second session to check the store kept exactly what it should.
    Raises :class:`Mismatch` at the first difference."""
    model = MaildropModel(mailbox)
    _session(connect, model, script)
    # RFC 1939 §6: deletions happen on QUIT from TRANSACTION, never on a
    # dropped connection; a fresh session must see exactly the rest.
    after = MaildropModel(Mailbox(mailbox.user, mailbox.password, model.remaining()))
    lines = [f"USER {mailbox.user}".encode(), f"PASS {mailbox.password}".encode(), b"STAT"]
    lines += [f"RETR {n}".encode() for n in range(1, len(after.mailbox.messages) + 1)]
    lines.append(b"QUIT")
    try:
        _session(connect, after, [Step(line, (line + b"\r\n",)) for line in lines])
    except Mismatch as exc:
        raise Mismatch(f"in a new session after that one, the maildrop is wrong: {exc}") from None
    return model


def _session(
    connect: Callable[[], ServerUnderTest], model: MaildropModel, script: Sequence[Step]
) -> None:
    server = connect()
    try:
        reader = _Reader()
        reader.buf = server.start()
        if not reader.status()[0]:
            raise Mismatch("the greeting is -ERR")
        for step in script:
            if server.closed:
                break
            cmd = _parse(step.line)
            for chunk in step.chunks:
                reader.buf += server.receive(chunk)
            ok, first = reader.status()
            block = reader.block() if ok and model.multiline(cmd) else None
            if reader.buf:
                raise Mismatch(f"{_show(cmd)}: extra bytes after the reply: {reader.buf!r}")
            model.check(cmd, ok, first, block)
            if model.state == "CLOSED":
                if not server.closed:
                    raise Mismatch("the server did not close after answering QUIT")
                break
            if server.closed and ok:
                raise Mismatch(f"the server closed after +OK to {_show(cmd)}")
    finally:
        server.close()

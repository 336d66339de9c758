"""A scripted fake server that answers from a :class:`Mailbox`, with faults,
for testing a client.  It runs the engine's SERVER role, so its replies are
well-formed by construction; the faults make them hard to consume."""

from __future__ import annotations

from .._capabilities import Capabilities
from .._connection import NEED_DATA, PAUSED, SERVER, Connection
from .._events import (
    BadCommand,
    Capa,
    ConnectionClosed,
    Dele,
    Event,
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
from .._response_events import (
    CapaOk,
    Err,
    Greeting,
    ListEntryOk,
    ListOk,
    MessageData,
    MessageEnd,
    MessageStart,
    Ok,
    StatOk,
    UidlEntryOk,
    UidlOk,
)
from ._model import Mailbox

__all__ = ["FakeServer"]


class FakeServer:
    """An RFC 1939 server for one session on *mailbox* (a ``ServerUnderTest``).

    Args:
        mailbox: what it serves; ``DELE`` takes effect on ``QUIT`` only.
        cut_at: close the connection once this many octets have been sent
            (the reply in flight is cut there), or ``None``.
        odd: answer in odd but legal ways: empty status texts, response
            codes on ``+OK``, bodies in one-octet pieces, extra capabilities,
            no APOP timestamp.
    """

    def __init__(self, mailbox: Mailbox, *, cut_at: int | None = None, odd: bool = False) -> None:
        self.mailbox = mailbox
        self.cut_at = cut_at
        self.odd = odd
        self.conn = Connection(SERVER)
        self.sent = 0
        self.user: str | None = None
        self.deleted: set[int] = set()
        self.removed: set[int] = set()
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def start(self) -> bytes:
        text = "" if self.odd else "POP3 ready <1.2@fake.example>"
        return self._out(self.conn.send(Greeting(text)))

    def receive(self, data: bytes) -> bytes:
        if self._closed:
            return b""
        self.conn.receive_data(data)
        out = bytearray()
        while not self._closed:
            event = self.conn.next_event()
            if event is NEED_DATA or event is PAUSED:
                break
            if isinstance(event, ConnectionClosed):
                self._closed = True
                break
            for reply in self._answer(event):
                out += self.conn.send(reply)
            if self.conn.state.name == "CLOSED":
                self._closed = True
        return self._out(bytes(out))

    def close(self) -> None:
        self._closed = True

    def _out(self, data: bytes) -> bytes:
        if self.cut_at is not None and self.sent + len(data) >= self.cut_at:
            data = data[: max(self.cut_at - self.sent, 0)]
            self._closed = True
        self.sent += len(data)
        return data

    def _text(self, text: str) -> str:
        return "" if self.odd else text

    def _live(self, number: int | None) -> bool:
        n = len(self.mailbox.messages)
        return number is not None and 1 <= number <= n and number not in self.deleted

    def _answer(self, event: Event) -> list[Event]:
        box = self.mailbox
        live = [n for n in range(1, len(box.messages) + 1) if n not in self.deleted]
        if isinstance(event, BadCommand):
            return [Err(self._text("unknown command"))]
        if isinstance(event, Capa):
            extra = ("X-ODD", "1") if self.odd else ("IMPLEMENTATION", "fake")
            return [CapaOk(Capabilities.build("USER", "UIDL", "TOP", extra))]
        if isinstance(event, User):
            self.user = event.name
            return [Ok(self._text("send PASS"))]
        if isinstance(event, Pass):
            good = self.user == box.user and event.password == box.password
            return [Ok(self._text("logged in")) if good else Err("[AUTH] wrong")]
        if isinstance(event, Quit):
            if self.conn.state.name == "UPDATE":
                self.removed = set(self.deleted)
            return [Ok(self._text("bye"))]
        if isinstance(event, Stat):
            return [StatOk(len(live), sum(box.size(n) for n in live))]
        if isinstance(event, List):
            if event.number is None:
                return [ListOk({n: box.size(n) for n in live}, self._text("scan listing"))]
            if self._live(event.number):
                return [ListEntryOk(event.number, box.size(event.number))]
        elif isinstance(event, Uidl):
            if event.number is None:
                return [UidlOk({n: f"u{n}" for n in live})]
            if self._live(event.number):
                return [UidlEntryOk(event.number, f"u{event.number}")]
        elif isinstance(event, (Retr, Top)):
            if self._live(event.number):
                body = box.messages[event.number - 1]
                if isinstance(event, Top):
                    end = body.find(b"\r\n\r\n")
                    head = len(body) if end < 0 else end + 4
                    lines = body[head:].splitlines(keepends=True)[: event.lines]
                    body = body[:head] + b"".join(lines)
                pieces = [body[i : i + 1] for i in range(len(body))] if self.odd else [body]
                start = MessageStart(self._text(f"{len(body)} octets"))
                return [start, *(MessageData(p) for p in pieces if p), MessageEnd()]
        elif isinstance(event, Dele):
            if self._live(event.number):
                self.deleted.add(event.number)
                return [Ok(self._text("deleted"))]
        elif isinstance(event, Rset):
            self.deleted.clear()
            return [Ok()]
        elif isinstance(event, Noop):
            return [Ok()]
        return [Err(self._text("no such message"))]

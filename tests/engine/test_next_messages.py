"""``Connection.next_messages``: whole RETR/TOP replies in bulk, with the
verdicts of ``next_event`` however the bytes are split."""

from __future__ import annotations

import re
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pop3proto import (
    CLIENT,
    NEED_DATA,
    SERVER,
    Capa,
    Connection,
    ConnectionClosed,
    Dele,
    Err,
    LocalProtocolError,
    MessageData,
    MessageEnd,
    MessageStart,
    Noop,
    Pass,
    Quit,
    RemoteProtocolError,
    Retr,
    State,
    Top,
    User,
)


def stuffed(message: bytes) -> bytes:
    """*message* (CRLF lines, ending in CRLF or empty) as a reply body on the wire."""
    return re.sub(rb"(?m)^\.", b"..", message) + b".\r\n"


def logged_in(**options: bool) -> Connection:
    """A client in TRANSACTION whose server advertised PIPELINING."""
    conn = Connection(CLIENT, **options)  # type: ignore[arg-type]
    conn.receive_data(b"+OK ready\r\n")
    conn.next_event()
    conn.send(Capa())
    conn.receive_data(b"+OK\r\nPIPELINING\r\n.\r\n")
    conn.next_event()
    conn.send(User("u"))
    conn.send(Pass("p"))
    conn.receive_data(b"+OK\r\n+OK\r\n")
    conn.next_event()
    conn.next_event()
    assert conn.state is State.TRANSACTION
    return conn


class Reader:
    """Collects the replies of one connection, each body joined into bytes;
    with *bulk*, next_messages() is asked first whenever a reply begins."""

    def __init__(self, conn: Connection, *, bulk: bool = False, limit: int = 1 << 30) -> None:
        self.conn = conn
        self.bulk = bulk
        self.limit = limit
        self.body: list[bytes] | None = None
        self.seen: list[object] = []

    def read(self) -> list[object]:
        """Read what is buffered; return every reply seen so far."""
        conn = self.conn
        while True:
            if self.bulk and self.body is None:
                self.seen.extend(conn.next_messages(self.limit))
            event = conn.next_event()
            if event is NEED_DATA:
                return self.seen
            if isinstance(event, MessageStart):
                self.body = []
            elif isinstance(event, MessageData):
                assert self.body is not None
                self.body.append(event.data)
            elif isinstance(event, MessageEnd):
                assert self.body is not None
                self.seen.append(b"".join(self.body))
                self.body = None
            else:
                self.seen.append(event)
                if isinstance(event, ConnectionClosed):
                    return self.seen


def by_events(conn: Connection) -> list[object]:
    """Every reply next_event() can tell from what is buffered."""
    return Reader(conn).read()


MESSAGES = [
    b"",
    b"plain\r\n",
    b".\r\n",
    b"..\r\n",
    b".leading dot\r\nsecond\r\n",
    b"a\r\n.\r\nb\r\n.x\r\n",
    b"Subject: x\r\n\r\nbody\r\n" * 3,
    b"\r\n",
]


def test_takes_every_whole_reply_in_one_call() -> None:
    conn = logged_in()
    for n in range(1, len(MESSAGES) + 1):
        conn.send(Retr(n))
    conn.send(Top(1, 0))
    conn.receive_data(
        b"".join(b"+OK %d octets\r\n" % len(m) + stuffed(m) for m in MESSAGES)
        + b"+OK\r\n"
        + stuffed(b"head\r\n")
    )
    assert conn.next_messages() == [*MESSAGES, b"head\r\n"]
    assert conn.outstanding == ()
    assert conn.state is State.TRANSACTION
    assert conn.next_event() is NEED_DATA
    # The session goes on as after next_event()'s MessageEnd.
    conn.send(Noop())
    conn.receive_data(b"+OK\r\n")
    assert conn.next_event().__class__.__name__ == "Ok"


def test_limit_and_what_stops_it() -> None:
    conn = logged_in()
    for n in (1, 2, 3, 4, 5):
        conn.send(Retr(n))
    conn.send(Dele(1))
    conn.send(Quit())
    conn.receive_data(
        b"+OK\r\none\r\n.\r\n"
        b"+OK\r\ntwo\r\n.\r\n"
        b"+OK [IN-USE] coded\r\nthree\r\n.\r\n"
        b"-ERR no such message\r\n"
        b"+OK caf\xc3\xa9\r\nfive\r\n.\r\n"
        b"+OK\r\n+OK bye\r\n"
    )
    assert conn.next_messages(1) == [b"one\r\n"]
    assert conn.next_messages() == [b"two\r\n"]
    # A response code goes through next_event(), as does -ERR.
    assert conn.next_messages() == []
    assert isinstance(conn.next_event(), MessageStart)
    assert conn.next_messages() == []  # in the middle of a body
    assert conn.next_event() == MessageData(b"three\r\n")
    assert conn.next_event() == MessageEnd()
    assert conn.next_messages() == []
    assert isinstance(conn.next_event(), Err)
    # Text that is not printable ASCII too.
    assert conn.next_messages() == []
    rest = by_events(conn)
    assert rest[0] == b"five\r\n"
    assert [type(event).__name__ for event in rest[1:]] == ["Ok", "Ok", "ConnectionClosed"]


def test_other_replies_are_not_taken() -> None:
    conn = logged_in()
    conn.send(Dele(1))
    conn.send(Retr(1))
    conn.receive_data(b"+OK\r\n+OK\r\n.\r\n")
    assert conn.next_messages() == []
    assert conn.next_event().__class__.__name__ == "Ok"
    assert conn.next_messages() == [b""]


def test_the_last_body_before_quit_starts_update() -> None:
    conn = logged_in()
    conn.send(Retr(1))
    conn.send(Quit())
    conn.receive_data(b"+OK\r\nx\r\n.\r\n")
    assert conn.next_messages() == [b"x\r\n"]
    # QUIT is now the command being answered: UPDATE (RFC 1939 §6).
    assert conn.state is State.UPDATE


def test_stops_short_of_an_incomplete_reply() -> None:
    conn = logged_in()
    conn.send(Retr(1))
    conn.send(Retr(2))
    for part in (b"+OK", b" x\r\n", b"a\r\n..b\r", b"\n.", b"\r\n+OK\r\n"):
        assert conn.next_messages() == []
        conn.receive_data(part)
    assert conn.next_messages() == [b"a\r\n.b\r\n"]
    conn.receive_data(b".")
    assert conn.next_messages() == []
    conn.receive_data(b"\r\n")
    assert conn.next_messages() == [b""]


def test_status_line_limit_holds() -> None:
    conn = Connection(CLIENT, max_status_size=16)
    conn.receive_data(b"+OK\r\n")
    conn.next_event()
    conn.send(User("u"))
    conn.receive_data(b"+OK\r\n")
    conn.next_event()
    conn.send(Pass("p"))
    conn.receive_data(b"+OK\r\n")
    conn.next_event()
    conn.send(Retr(1))
    # 16 octets with the CRLF is the limit: taken.
    conn.receive_data(b"+OK 1234567890\r\nx\r\n.\r\n")
    assert conn.next_messages() == [b"x\r\n"]
    conn.send(Retr(2))
    conn.receive_data(b"+OK 12345678901\r\nx\r\n.\r\n")
    assert conn.next_messages() == []
    with pytest.raises(RemoteProtocolError, match="longer than 16"):
        conn.next_event()
    assert conn.state is State.ERROR
    with pytest.raises(RemoteProtocolError, match="ERROR state"):
        conn.next_messages()


@pytest.mark.parametrize("option", ["bare_lf", "lenient_end"])
def test_lenient_modes_leave_it_to_next_event(option: str) -> None:
    conn = logged_in(**{option: True})
    conn.send(Retr(1))
    conn.receive_data(b"+OK\r\nx\r\n.\r\n")
    assert conn.next_messages() == []
    assert by_events(conn) == [b"x\r\n"]


def test_nothing_outside_transaction_or_without_a_body() -> None:
    conn = Connection(CLIENT)
    assert conn.next_messages() == []
    conn.receive_data(b"+OK hi\r\n")
    assert conn.next_messages() == []
    conn.next_event()
    conn = logged_in()
    conn.send(Retr(1))
    assert conn.next_messages() == []  # nothing received yet


def test_misuse() -> None:
    with pytest.raises(LocalProtocolError, match="client role"):
        Connection(SERVER).next_messages()
    with pytest.raises(ValueError, match="at least 1"):
        logged_in().next_messages(0)


REPLIES = st.one_of(
    st.lists(st.sampled_from([b"", b".", b"..", b"x", b".x", b"abc def", b"\t"]), max_size=5).map(
        lambda lines: ("ok", b"".join(line + b"\r\n" for line in lines))
    ),
    st.just(("err", b"")),
    st.just(("code", b"y\r\n")),
)


@settings(max_examples=300, deadline=None)
@given(
    replies=st.lists(REPLIES, min_size=1, max_size=8),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=6),
    limit=st.integers(min_value=1, max_value=4),
)
def test_same_as_next_event_however_split(
    replies: list[tuple[str, bytes]], cuts: list[int], limit: int
) -> None:
    wire = b""
    for kind, message in replies:
        if kind == "err":
            wire += b"-ERR no\r\n"
        elif kind == "code":
            wire += b"+OK [X] y\r\n" + stuffed(message)
        else:
            wire += b"+OK\r\n" + stuffed(message)
    plain, bulk = logged_in(), logged_in()
    for conn in (plain, bulk):
        for n in range(1, len(replies) + 1):
            conn.send(Retr(n))
        conn.send(Quit())
    wire += b"+OK bye\r\n"
    points = sorted({0, len(wire), *(c % (len(wire) + 1) for c in cuts)})
    readers = Reader(plain), Reader(bulk, bulk=True, limit=limit)
    for start, end in pairwise(points):
        for reader in readers:
            reader.conn.receive_data(wire[start:end])
            reader.read()
    assert readers[1].seen == readers[0].seen
    assert bulk.state is plain.state is State.CLOSED

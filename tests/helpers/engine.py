"""Driving the engine by hand: one connection, or a client and a server joined.

* :func:`get_all_events`, :func:`receive_and_get`, :func:`feed_in_chunks` and
  :func:`normalize_data_events` pull events out of one connection;
  :func:`events_through_wait` and :func:`feed_through_wait` keep the
  NEED_DATA or PAUSED that ends them.
* :func:`new_client`, :func:`client_tx`, :func:`new_server`, :func:`server_tx`
  and friends drive one connection by hand to a known state, with the typed
  :class:`Options` of :class:`Connection`.
* :func:`expected_body` and :func:`expected_received`: what the peer receives
  for what a server sent.
* :class:`ConnectionPair` joins a client and a server: :meth:`~ConnectionPair.send`
  checks that the events received are the events sent (message bodies compared
  as the concatenation of their ``MessageData``, because chunking carries no
  meaning); :meth:`~ConnectionPair.command` and :meth:`~ConnectionPair.reply`
  just carry the bytes across.  :func:`login` drives a pair to TRANSACTION.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from itertools import pairwise
from typing import TYPE_CHECKING, Literal, TypedDict

from pop3proto import (
    CLIENT,
    NEED_DATA,
    PAUSED,
    SERVER,
    BadCommand,
    Capa,
    Capabilities,
    CapaOk,
    CloseReason,
    Connection,
    ConnectionClosed,
    Err,
    Event,
    Greeting,
    MessageData,
    MessageEnd,
    MessageStart,
    Ok,
    Pass,
    Role,
    State,
    User,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack


#: What next_event() gives once the reply to QUIT (or a -ERR greeting) has
#: ended the session, and once the peer closed the transport.
ENDED = ConnectionClosed(CloseReason.SESSION_ENDED)
PEER_CLOSED = ConnectionClosed(CloseReason.PEER_CLOSED)
LOCAL = ConnectionClosed(CloseReason.LOCAL_CLOSED)

#: A realistic Dovecot greeting; Dovecot's APOP timestamp is
#: ``<pid.count.time.random@host>``.
DOVECOT_GREETING = Greeting("Dovecot ready. <4a27.2.5e8f3b21.Q2h1Y2sNCg==@mail.example.org>")

#: What ``CAPA`` returns on a stock Dovecot 2.3 before STLS.
DOVECOT_CAPABILITIES = Capabilities.build(
    "CAPA",
    "TOP",
    "UIDL",
    "RESP-CODES",
    "PIPELINING",
    "AUTH-RESP-CODE",
    "STLS",
    "USER",
    ("SASL", "PLAIN", "LOGIN"),
)


# ---------------------------------------------------------------------------
# Pulling events out of one connection
# ---------------------------------------------------------------------------


def get_all_events(conn: Connection) -> list[Event]:
    """Every event available now, up to NEED_DATA or PAUSED.

    A :class:`ConnectionClosed` is included and ends the list (in CLOSED the
    engine would return it forever).
    """
    got: list[Event] = []
    while True:
        event = conn.next_event()
        if event is NEED_DATA or event is PAUSED:
            return got
        assert isinstance(event, Event), f"next_event returned {event!r}"
        got.append(event)
        if isinstance(event, ConnectionClosed):
            return got


def events_through_wait(conn: Connection) -> list[object]:
    """Every event, up to and including the NEED_DATA, PAUSED or
    :class:`ConnectionClosed` that ends them, for tests that assert on how
    the stream stops (unlike :func:`get_all_events`)."""
    out: list[object] = []
    while True:
        ev = conn.next_event()
        out.append(ev)
        if ev is NEED_DATA or ev is PAUSED or isinstance(ev, ConnectionClosed):
            return out


def feed_through_wait(conn: Connection, data: bytes) -> list[object]:
    """Receive *data* (nothing if empty: EOF is ``receive_data(b"")``) and
    return :func:`events_through_wait`."""
    if data:
        conn.receive_data(data)
    return events_through_wait(conn)


def receive_and_get(conn: Connection, data: bytes) -> list[Event]:
    """Feed *data* (``b""`` is EOF) and return :func:`get_all_events`."""
    conn.receive_data(data)
    return get_all_events(conn)


def chunks_at(data: bytes, splits: Iterable[int]) -> list[bytes]:
    """Cut *data* at the given offsets (any order, duplicates and out-of-range
    offsets ignored) into non-empty chunks."""
    cuts = sorted({s for s in splits if 0 < s < len(data)})
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in pairwise(bounds) if b > a]


def feed_in_chunks(conn: Connection, data: bytes, splits: Iterable[int]) -> list[Event]:
    """Feed *data* cut at *splits*, collecting the events after each chunk."""
    got: list[Event] = []
    for chunk in chunks_at(data, splits):
        got.extend(receive_and_get(conn, chunk))
        if got and isinstance(got[-1], ConnectionClosed):
            break
    return got


def normalize_data_events(events: Iterable[Event]) -> list[Event]:
    """Merge adjacent :class:`MessageData` events and drop empty ones.

    Body chunk boundaries depend only on how the bytes arrived, so two event
    streams are "the same" when they agree after this.
    """
    out: list[Event] = []
    for event in events:
        if isinstance(event, MessageData):
            if not event.data:
                continue
            if out and isinstance(out[-1], MessageData):
                out[-1] = MessageData(out[-1].data + event.data)
                continue
        out.append(event)
    return out


def interesting_splits(data: bytes) -> list[int]:
    """Offsets that cut through the patterns that matter (CONFORMANCE.md §3.8):
    ``\\r|\\n``, ``\\r\\n|.``, ``\\r\\n.|\\r\\n``, ``.|\\r``, plus every offset
    inside a ``CRLF . CRLF`` terminator."""
    found: set[int] = set()
    for pattern, offsets in (
        (b"\r\n", (1, 2)),
        (b"\r\n.\r\n", (1, 2, 3, 4)),
        (b".\r", (1,)),
        (b"\n.", (1,)),
    ):
        start = data.find(pattern)
        while start >= 0:
            found.update(start + o for o in offsets)
            start = data.find(pattern, start + 1)
    return sorted(s for s in found if 0 < s < len(data))


# ---------------------------------------------------------------------------
# One connection, driven by hand
# ---------------------------------------------------------------------------


class Options(TypedDict, total=False):
    """The keyword arguments of :class:`Connection`, so helpers can pass them on typed."""

    tls: bool
    strict_user: bool
    bare_lf: bool
    lenient_end: bool
    allow_unadvertised_pipelining: bool
    max_command_size: int
    max_status_size: int | None
    max_sasl_size: int
    max_listing_size: int


#: The APOP timestamp of RFC 1939 §7's example.
TIMESTAMP = "<1896.697170952@dbc.mtview.ca.us>"
#: The user the tests log in as, and the password she has everywhere.
USER = "alice"
PASSWORD = "correct horse"
#: The greeting the hand-driven connections use, as text and as a line.
GREETING_TEXT = "POP3 server ready " + TIMESTAMP
GREETING_LINE = b"+OK " + GREETING_TEXT.encode() + b"\r\n"


def new_client(greeting: bytes = GREETING_LINE, **kw: Unpack[Options]) -> Connection:
    """A client that has received *greeting* (in AUTHORIZATION unless it was ``-ERR``)."""
    conn = Connection(CLIENT, **kw)
    evs = feed_through_wait(conn, greeting)
    assert isinstance(evs[0], Greeting), evs
    return conn


def ask(conn: Connection, cmd: Event, data: bytes) -> list[object]:
    """Client: send *cmd*, receive *data*, return the events through the wait."""
    conn.send(cmd)
    return feed_through_wait(conn, data)


def client_tx(**kw: Unpack[Options]) -> Connection:
    """A client logged in with USER/PASS, in TRANSACTION."""
    conn = new_client(**kw)
    assert isinstance(ask(conn, User("mrose"), b"+OK\r\n")[0], Ok)
    assert isinstance(ask(conn, Pass("secret"), b"+OK\r\n")[0], Ok)
    assert conn.state is State.TRANSACTION
    return conn


def pipelining_client(**kw: Unpack[Options]) -> Connection:
    """A client in AUTHORIZATION that has learnt from CAPA that it may pipeline."""
    conn = new_client(**kw)
    ask(conn, Capa(), b"+OK\r\nPIPELINING\r\nUSER\r\n.\r\n")
    assert conn.capabilities is not None and conn.capabilities.pipelining
    return conn


def new_server(text: str = GREETING_TEXT, **kw: Unpack[Options]) -> Connection:
    """A server that has sent the greeting *text*, in AUTHORIZATION."""
    conn = Connection(SERVER, **kw)
    assert conn.send(Greeting(text)) == b"+OK " + text.encode() + b"\r\n"
    assert conn.state is State.AUTHORIZATION
    return conn


def first(conn: Connection, data: bytes) -> object:
    """Receive *data*, return the first event (a server's command, mostly)."""
    return feed_through_wait(conn, data)[0]


def server_tx(**kw: Unpack[Options]) -> Connection:
    """A server that accepted USER/PASS, in TRANSACTION."""
    conn = new_server(**kw)
    assert first(conn, b"USER mrose\r\n") == User("mrose")
    conn.send(Ok())
    assert first(conn, b"PASS secret\r\n") == Pass("secret")
    conn.send(Ok())
    assert conn.state is State.TRANSACTION
    return conn


def bad_server_line(line: bytes, state: str = "TRANSACTION") -> BadCommand:
    """Feed *line* to a server in *state* (TRANSACTION or AUTHORIZATION): it must
    be a :class:`BadCommand` whose ``-ERR`` changes no state; return it."""
    conn = server_tx() if state == "TRANSACTION" else new_server()
    ev = first(conn, line)
    assert isinstance(ev, BadCommand), ev
    before = conn.state
    conn.send(Err(ev.reason))
    assert conn.state is before
    return ev


def eof(conn: Connection) -> list[object]:
    """Receive EOF, return the events through the wait."""
    conn.receive_data(b"")
    return events_through_wait(conn)


def body_of(evs: Iterable[object]) -> bytes:
    """The concatenated :class:`MessageData` among *evs*."""
    return b"".join(e.data for e in evs if isinstance(e, MessageData))


def merged(evs: Sequence[object]) -> list[object]:
    """Drop NEED_DATA and join adjacent MessageData (their boundaries carry no meaning)."""
    out: list[object] = []
    for ev in evs:
        if ev is NEED_DATA:
            continue
        if isinstance(ev, MessageData) and out and isinstance(out[-1], MessageData):
            out[-1] = MessageData(out[-1].data + ev.data)
        else:
            out.append(ev)
    return out


# ---------------------------------------------------------------------------
# What the peer receives for what was sent
# ---------------------------------------------------------------------------


_BARE_LF = re.compile(rb"(?<!\r)\n")


def expected_body(sent: bytes) -> bytes:
    """The body a client receives for the body a server sent.

    The rule (CONFORMANCE.md §3.2 and §3.3: lines end with CRLF, and so does
    the last line of a body): every bare LF goes out as CRLF (RFC 1939 §11 counts
    a stored LF as two octets), so no dot after a bare LF can be mistaken
    by either a strict or a lenient client; then a body that does not end
    with CRLF gets one: a lone CR at the end gets the LF that completes it,
    anything else gets CRLF appended.  An empty body stays empty.
    """
    body = _BARE_LF.sub(b"\r\n", sent)
    if not body or body.endswith(b"\r\n"):
        return body
    if body.endswith(b"\r"):
        return body + b"\n"
    return body + b"\r\n"


def expected_received(sent: Sequence[Event]) -> list[Event]:
    """What the peer should get for *sent* (server -> client): bodies obey
    :func:`expected_body`, everything else is received as sent."""
    out: list[Event] = []
    body: bytearray | None = None
    for event in sent:
        if isinstance(event, MessageStart):
            out.append(event)
            body = bytearray()
        elif isinstance(event, MessageData) and body is not None:
            body += event.data
        elif isinstance(event, MessageEnd) and body is not None:
            data = expected_body(bytes(body))
            if data:
                out.append(MessageData(data))
            out.append(event)
            body = None
        elif isinstance(event, ConnectionClosed):
            out.append(ConnectionClosed())
        else:
            out.append(event)
    return out


# ---------------------------------------------------------------------------
# A client and a server, joined
# ---------------------------------------------------------------------------


class ConnectionPair:
    """A client :class:`Connection` and a server :class:`Connection` whose
    output is fed to each other (h11's ``ConnectionPair``).

    Two ways to drive it: :meth:`send` checks that what one side sends is
    what the other receives; :meth:`command` and :meth:`reply` just carry the
    bytes across and return the receiver's events up to the wait, for tests
    that assert on those themselves.  With *greeting* the server greets at
    once (and the client must receive it); without, the server still owes it.
    """

    def __init__(
        self,
        *,
        client_kwargs: Options | None = None,
        server_kwargs: Options | None = None,
        greeting: Greeting | Err | None = None,
    ) -> None:
        self.client = Connection(CLIENT, **(client_kwargs or {}))
        self.server = Connection(SERVER, **(server_kwargs or {}))
        self.conn: dict[Role, Connection] = {CLIENT: self.client, SERVER: self.server}
        if greeting is not None:
            assert self.reply(greeting)[0] == greeting

    @staticmethod
    def other(role: Role) -> Role:
        return SERVER if role is CLIENT else CLIENT

    @property
    def states(self) -> tuple[State, State]:
        """``(client.state, server.state)``."""
        return self.client.state, self.server.state

    def assert_in_step(self) -> State:
        """Both sides agree on the session state; return it."""
        client_state, server_state = self.states
        assert client_state is server_state, f"client {client_state!r} != server {server_state!r}"
        return client_state

    def deliver(self, role: Role, data: bytes) -> list[Event]:
        """Feed bytes *role* produced to the other side; return its events.

        ``b""`` is delivered as EOF.
        """
        return receive_and_get(self.conn[self.other(role)], data)

    def send(
        self,
        role: Role,
        events: Event | Sequence[Event],
        expect: Literal["match"] | Event | Sequence[Event] = "match",
    ) -> bytes:
        """Send *events* from *role*, feed the bytes to the other side and
        check what it gets.

        ``expect="match"`` means "what was sent", with the body rule of
        :func:`expected_received`.  A :class:`ConnectionClosed` sent becomes
        EOF for the receiver.  Returns the bytes that went on the wire.
        """
        sent = [events] if isinstance(events, Event) else list(events)
        sender = self.conn[role]
        data = b""
        closed = False
        for event in sent:
            data += sender.send(event)
            if isinstance(event, ConnectionClosed):
                closed = True
        receiver = self.conn[self.other(role)]
        if data:
            receiver.receive_data(data)
        if closed:
            receiver.receive_data(b"")
        got = get_all_events(receiver)
        if expect == "match":
            wanted = expected_received(sent) if role is SERVER else list(sent)
        elif isinstance(expect, Event):
            wanted = [expect]
        else:
            wanted = list(expect)
        if (
            expect == "match"
            and receiver.state is State.CLOSED
            and not (wanted and isinstance(wanted[-1], ConnectionClosed))
        ):
            # A reply that ends the session (to QUIT, a -ERR greeting, an
            # unsolicited -ERR) is followed by ConnectionClosed at once.
            wanted.append(ENDED)
        assert normalize_data_events(got) == normalize_data_events(wanted), (
            f"sent {sent!r} as {data!r}, received {got!r}"
        )
        return data

    def command(self, cmd: Event) -> list[object]:
        """The client sends *cmd*; return the server's events through the wait."""
        return feed_through_wait(self.server, self.client.send(cmd))

    def reply(self, *responses: Event) -> list[object]:
        """The server sends *responses*; return the client's events through the wait."""
        data = b"".join(self.server.send(r) for r in responses)
        return feed_through_wait(self.client, data)

    def send_batch(self, commands: Sequence[Event]) -> bytes:
        """The client sends several commands at once (pipelining); the bytes
        are fed to the server but no event is pulled yet."""
        data = b"".join(self.client.send(cmd) for cmd in commands)
        self.server.receive_data(data)
        return data

    def tls_established(self) -> None:
        """Both sides finished the TLS handshake after ``+OK`` to STLS."""
        assert self.states == (State.TLS_PENDING, State.TLS_PENDING)
        self.client.tls_established()
        self.server.tls_established()
        assert self.states == (State.AUTHORIZATION, State.AUTHORIZATION)


def login(
    pair: ConnectionPair,
    *,
    greeting: Greeting = DOVECOT_GREETING,
    capa: bool = False,
    pipelining: bool = False,
    user: str = USER,
    password: str = PASSWORD,
) -> None:
    """Drive *pair* from the greeting to TRANSACTION with USER/PASS.

    The server sends *greeting* unless the pair was built with one.  With
    ``capa`` (implied by ``pipelining``) the client first asks CAPA and the
    server answers Dovecot's list, with or without PIPELINING; with
    ``pipelining`` USER and PASS then go out as one batch (RFC 2449 §6.6).
    """
    if pair.server.state is State.AWAIT_GREETING:
        assert pair.server.next_event() is PAUSED  # the server owes the greeting
        pair.send(SERVER, greeting)
    assert pair.assert_in_step() is State.AUTHORIZATION
    if capa or pipelining:
        pair.send(CLIENT, Capa())
        caps = DOVECOT_CAPABILITIES
        if not pipelining:
            caps = Capabilities(tuple(e for e in caps.entries if e[0] != "PIPELINING"))
        pair.send(SERVER, CapaOk(caps))
        assert pair.client.capabilities == caps
    if pipelining:
        pair.send_batch([User(user), Pass(password)])
        assert get_all_events(pair.server) == [User(user)]
        pair.send(SERVER, Ok())
        assert get_all_events(pair.server) == [Pass(password)]
        assert pair.assert_in_step() is State.USER_OK
        pair.send(SERVER, Ok("Logged in."))
    else:
        pair.send(CLIENT, User(user))
        pair.send(SERVER, Ok())
        assert pair.assert_in_step() is State.USER_OK
        pair.send(CLIENT, Pass(password))
        pair.send(SERVER, Ok("Logged in."))
    assert pair.assert_in_step() is State.TRANSACTION
    assert pair.client.outstanding == () and pair.server.outstanding == ()

"""Test helpers for pop3proto, in the style of h11's ``tests/helpers.py``: the
one home of everything more than one test module uses (fixtures are in
``conftest.py``).  No test module imports another.

* :func:`get_all_events`, :func:`receive_and_get`, :func:`feed_in_chunks` and
  :func:`normalize_data_events` pull events out of one connection;
  :func:`events_through_wait` and :func:`feed_through_wait` keep the
  NEED_DATA or PAUSED that ends them.
* :func:`new_client`, :func:`client_tx`, :func:`new_server`, :func:`server_tx`
  and friends drive one connection by hand to a known state, with the typed
  :class:`Options` of :class:`Connection`.
* :class:`ConnectionPair` joins a client and a server: :meth:`~ConnectionPair.send`
  checks that the events received are the events sent (message bodies compared
  as the concatenation of their ``MessageData``, because chunking carries no
  meaning); :meth:`~ConnectionPair.command` and :meth:`~ConnectionPair.reply`
  just carry the bytes across.  :func:`login` drives a pair to TRANSACTION.
* :func:`run_client_transcript` / :func:`run_server_transcript` replay a
  recorded byte stream into one role, chunked at given offsets, answering as
  a real peer would; the split-invariance properties compare their results.
* :class:`FakeSession` is a POP3 server on ``Connection(SERVER)`` over an
  in-memory maildrop, configured by :class:`FakeConfig` to misbehave as the
  client tests need; :class:`ThreadedServer` serves it on 127.0.0.1.
* :func:`run_exchange` drives a SASL client and server mechanism against each
  other through the base64 framing; :func:`secret_free` checks that an
  exception and its chain quote no secret.
* Hypothesis strategies for valid field values, bodies and server replies.
"""

from __future__ import annotations

import contextlib
import functools
import re
import socket
import ssl
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from itertools import pairwise
from typing import TYPE_CHECKING, Any, Literal, TypedDict

from hypothesis import strategies as st

import pop3proto
from pop3proto import (
    CLIENT,
    NEED_DATA,
    PAUSED,
    SERVER,
    Auth,
    BadCommand,
    Capa,
    Capabilities,
    CapaOk,
    Command,
    Connection,
    ConnectionClosed,
    Err,
    Event,
    Greeting,
    Lang,
    LangOk,
    List,
    ListEntryOk,
    ListOk,
    MessageData,
    MessageEnd,
    MessageStart,
    Ok,
    Pass,
    ProtocolError,
    Quit,
    ResponseCode,
    Retr,
    Role,
    SaslCancel,
    SaslChallenge,
    SaslClientMechanism,
    SaslResponse,
    SaslServerMechanism,
    Stat,
    State,
    StatOk,
    Stls,
    Top,
    Uidl,
    UidlEntryOk,
    UidlOk,
    User,
    sasl_b64decode,
    sasl_b64encode,
)
from pop3proto.adapters.client._mechanisms import LOGIN_PREFERENCE

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = [
    # Pulling events out of one connection
    "chunks_at",
    "events_through_wait",
    "feed_in_chunks",
    "feed_through_wait",
    "get_all_events",
    "interesting_splits",
    "normalize_data_events",
    "receive_and_get",
    # One connection, driven by hand
    "GREETING_LINE",
    "GREETING_TEXT",
    "PASSWORD",
    "TIMESTAMP",
    "Options",
    "ask",
    "bad_server_line",
    "body_of",
    "client_tx",
    "eof",
    "first",
    "merged",
    "new_client",
    "new_server",
    "pipelining_client",
    "server_tx",
    # What the peer receives, a client and a server joined, transcripts
    "DOVECOT_CAPABILITIES",
    "DOVECOT_GREETING",
    "ConnectionPair",
    "TranscriptResult",
    "expected_body",
    "expected_received",
    "login",
    "run_client_transcript",
    "run_server_transcript",
    "standard_reply",
    # A fake POP3 server for the client tests
    "FAKE_MESSAGES",
    "FakeConfig",
    "FakeSession",
    "ThreadedServer",
    "serve",
    # SASL exchanges
    "PASSWORDS",
    "RFC2195_CHALLENGE",
    "check_password",
    "get_password",
    "run_exchange",
    "secret_free",
    "wire",
    # Hypothesis strategies
    "ASCII_TEXT",
    "BODY_PIECES",
    "KNOWN_KEYWORDS",
    "UNICODE_TEXT",
    "bodies",
    "capabilities",
    "chunkings",
    "extension_names",
    "message_numbers",
    "message_replies",
    "optional_codes",
    "passwords",
    "replies_for",
    "response_codes",
    "sizes",
    "status_texts",
    "tokens",
    "uids",
]

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
#: The password alice has everywhere in the tests.
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
            wanted.append(ConnectionClosed())
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
    user: str = "alice",
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


# ---------------------------------------------------------------------------
# Replaying transcripts into one role
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TranscriptResult:
    """What one replay produced: the events (normalised), every byte the
    connection sent, the final state and the protocol error raised, if any."""

    events: list[Event]
    sent: bytes
    state: State
    error: type[ProtocolError] | None


_CLIENT_COMMAND_STATES = (State.AUTHORIZATION, State.USER_OK, State.TRANSACTION)


def _replay(
    conn: Connection,
    data: bytes,
    splits: Iterable[int],
    *,
    eof: bool,
    pump: Callable[[], None],
    closed: Callable[[], bool],
) -> type[ProtocolError] | None:
    """Feed *data* to *conn* cut at *splits* (then EOF if *eof*), calling *pump*
    first and after each chunk, until *closed*; return the ProtocolError raised."""
    try:
        pump()
        for chunk in chunks_at(data, splits):
            if closed():
                break
            conn.receive_data(chunk)
            pump()
        if eof and not closed():
            conn.receive_data(b"")
            pump()
    except ProtocolError as exc:
        return type(exc)
    return None


def run_client_transcript(
    steps: Sequence[Sequence[Event]],
    server_bytes: bytes,
    splits: Iterable[int] = (),
    *,
    eof: bool = True,
    **conn_kwargs: object,
) -> TranscriptResult:
    """Replay *server_bytes* into a fresh client, cut at *splits*.

    *steps* are what the client sends, in order: each is a batch of commands
    (sent together, so a batch of several is pipelining) sent as soon as the
    client is idle, or a single :class:`SaslResponse` / :class:`SaslCancel`
    sent when the client owes one.  With *eof* the stream ends with EOF.
    """
    conn = Connection(CLIENT, **conn_kwargs)  # type: ignore[arg-type]
    pending: deque[Sequence[Event]] = deque(steps)
    events: list[Event] = []
    sent = bytearray()
    closed = False

    def is_sasl(step: Sequence[Event]) -> bool:
        return isinstance(step[0], (SaslResponse, SaslCancel))

    def pump() -> None:
        nonlocal closed
        while not closed:
            if (
                pending
                and not is_sasl(pending[0])
                and not conn.outstanding
                and conn.state in _CLIENT_COMMAND_STATES
            ):
                for command in pending.popleft():
                    sent.extend(conn.send(command))
            event = conn.next_event()
            if event is NEED_DATA:
                return
            if event is PAUSED:
                if conn.state is State.SASL and pending and is_sasl(pending[0]):
                    for response in pending.popleft():
                        sent.extend(conn.send(response))
                    continue
                return
            assert isinstance(event, Event)
            events.append(event)
            closed = isinstance(event, ConnectionClosed)

    error = _replay(conn, server_bytes, splits, eof=eof, pump=pump, closed=lambda: closed)
    return TranscriptResult(normalize_data_events(events), bytes(sent), conn.state, error)


#: The message :func:`standard_reply` serves: dot lines first, in the middle
#: and last, an empty line, bare CR and LF, 8-bit octets.
STANDARD_BODY = (
    b".first line is a dot line\r\n"
    b"Subject: test\r\n"
    b"\r\n"
    b".\r\n"
    b"..\r\n"
    b"...\r\n"
    b".x\r\n"
    b"bare\rcr and bare\nlf \xff\xfe\r\n"
    b"."
)


def standard_reply(event: Event) -> list[Event]:
    """A deterministic, valid server reply to each received event."""
    if isinstance(event, (BadCommand, SaslCancel)):
        return [Err("[SYS/PERM] no" if isinstance(event, SaslCancel) else "unknown command")]
    if isinstance(event, Auth):
        return [SaslChallenge(b"")] if event.initial_response is None else [Ok("Logged in.")]
    if isinstance(event, SaslResponse):
        return [Ok("Logged in.")] if event.data else [SaslChallenge(b"more?")]
    if isinstance(event, Stat):
        return [StatOk(2, 1234)]
    if isinstance(event, List):
        if event.number is None:
            return [ListOk({1: 700, 2: 534}, "2 messages")]
        return [ListEntryOk(event.number, 700)]
    if isinstance(event, Uidl):
        if event.number is None:
            return [UidlOk({1: "000000015a3b1c2d", 2: "!~uid.with.dots~"})]
        return [UidlEntryOk(event.number, "000000015a3b1c2d")]
    if isinstance(event, (Retr, Top)):
        return [MessageStart("message follows"), MessageData(STANDARD_BODY), MessageEnd()]
    if isinstance(event, Capa):
        return [CapaOk(DOVECOT_CAPABILITIES)]
    if isinstance(event, Lang) and event.language is None:
        return [LangOk((("en", "English"), ("de", "Deutsch")), "Language listing follows:")]
    if isinstance(event, Pass):
        return [Err("[AUTH] Authentication failed.")] if event.password == "wrong" else [Ok()]
    if isinstance(event, (Quit, Stls)):
        return [Ok("Logging out." if isinstance(event, Quit) else "Begin TLS negotiation now.")]
    assert isinstance(event, Command), event
    return [Ok()]


def run_server_transcript(
    client_bytes: bytes,
    splits: Iterable[int] = (),
    *,
    greeting: Greeting = DOVECOT_GREETING,
    responder: Callable[[Event], Sequence[Event]] = standard_reply,
    eof: bool = True,
    **conn_kwargs: object,
) -> TranscriptResult:
    """Replay *client_bytes* into a fresh server, cut at *splits*; the server
    greets first and answers every event with *responder*."""
    conn = Connection(SERVER, **conn_kwargs)  # type: ignore[arg-type]
    assert conn.next_event() is PAUSED
    sent = bytearray(conn.send(greeting))
    events: list[Event] = []
    closed = False

    def pump() -> None:
        nonlocal closed
        while not closed:
            event = conn.next_event()
            if event is NEED_DATA or event is PAUSED:
                return
            assert isinstance(event, Event)
            events.append(event)
            if isinstance(event, ConnectionClosed):
                closed = True
                return
            for reply in responder(event):
                sent.extend(conn.send(reply))

    error = _replay(conn, client_bytes, splits, eof=eof, pump=pump, closed=lambda: closed)
    return TranscriptResult(events, bytes(sent), conn.state, error)


# ---------------------------------------------------------------------------
# A fake POP3 server for the client tests
# ---------------------------------------------------------------------------
# FakeSession is a server built on Connection(SERVER) over an in-memory
# maildrop, transport-free, with switches for the misbehaviours the clients
# must survive.  ThreadedServer serves it on 127.0.0.1 for the socket tests.

#: The fake server's default maildrop: every dot-stuffing hazard (dot lines
#: first, last and alone), an empty message, no final CRLF (the server appends
#: one), 8-bit octets, bare CR and LF.
FAKE_MESSAGES = [
    b"Subject: one\r\n\r\nhello\r\n",
    b".starts with a dot\r\n..two dots\r\n.\r\n...\r\nend\r\n",
    b"Subject: three\r\n\r\nno final line end",
    b"",
    b"Subject: five\r\n\r\n\xff\xfe 8-bit \r\nbare\rcr and bare\nlf\r\n.",
]


@dataclass
class FakeConfig:
    """What the fake server offers and how it misbehaves."""

    messages: list[bytes] = field(default_factory=lambda: list(FAKE_MESSAGES))
    users: dict[str, str] = field(default_factory=lambda: {"alice": PASSWORD})
    greeting: str = GREETING_TEXT
    capa: bool = True
    pipelining: bool = True
    stls: bool = False
    user_command: bool = True
    utf8: bool = False
    sasl: tuple[str, ...] = LOGIN_PREFERENCE
    auth_error: str = "[AUTH] Authentication failed"
    #: Sent instead of +OK for correct credentials (e.g. "[IN-USE] locked").
    login_error: str | None = None
    close_after_auth_failure: bool = False
    #: Replace the SCRAM server signature / skip it and answer +OK at once.
    scram_tamper: bool = False
    scram_skip_final: bool = False
    #: Close without answering QUIT from TRANSACTION.
    quit_no_reply: bool = False
    quit_error: bool = False
    #: Raw bytes sent right after the +OK to STLS (a response injection).
    after_stls: bytes = b""
    implicit_tls: bool = False
    chunk: int = 65536


class FakeSession:
    """One server-side POP3 session over an in-memory maildrop."""

    def __init__(self, config: FakeConfig | None = None) -> None:
        self.config = config = config or FakeConfig()
        self.conn = pop3proto.Connection(pop3proto.SERVER, tls=config.implicit_tls)
        self.commands: list[pop3proto.Event] = []
        self.deleted: set[int] = set()
        self.committed: list[int] | None = None
        self.closing = False
        self.tls_requested = False
        self.authenticated: str | None = None
        self.auth_attempts = 0
        self._user: str | None = None
        self._mech: pop3proto.SaslServerMechanism | None = None

    # -- transport interface -------------------------------------------------

    def greeting(self) -> bytes:
        assert self.conn.next_event() is pop3proto.PAUSED
        return self.conn.send(pop3proto.Greeting(self.config.greeting))

    def receive(self, data: bytes) -> Iterator[bytes]:
        """Feed client bytes (b"" = EOF); yield the bytes to send back."""
        conn = self.conn
        conn.receive_data(data)
        while not self.closing:
            event = conn.next_event()
            if event is pop3proto.NEED_DATA:
                return
            if event is pop3proto.PAUSED:
                if conn.state is State.TLS_PENDING:
                    self.tls_requested = True
                return
            if isinstance(event, pop3proto.ConnectionClosed):
                self.closing = True
                return
            assert isinstance(event, pop3proto.Event)
            self.commands.append(event)
            for reply in self.handle(event):
                if isinstance(reply, bytes):
                    yield reply
                else:
                    yield conn.send(reply)

    def tls_established(self) -> None:
        assert self.tls_requested
        self.tls_requested = False
        self.conn.tls_established()

    # -- the mailbox -------------------------------------------------------------

    def live(self, number: int) -> bool:
        return 1 <= number <= len(self.config.messages) and number not in self.deleted

    def capabilities(self) -> pop3proto.Capabilities:
        cfg = self.config
        items: list[str | tuple[str, ...]] = ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE"]
        if cfg.user_command:
            items.append("USER")
        if cfg.pipelining:
            items.append("PIPELINING")
        if cfg.stls and not self.conn.tls:
            items.append("STLS")
        if cfg.sasl:
            items.append(("SASL", *cfg.sasl))
        if cfg.utf8:
            items.append("UTF8")
        return pop3proto.Capabilities.build(*items)

    def _mechanism(self, name: str) -> pop3proto.SaslServerMechanism:
        users = self.config.users

        def check(user: str, password: str) -> bool:
            return users.get(user) == password

        if name == "PLAIN":
            return pop3proto.PlainServer(check)
        if name == "LOGIN":
            return pop3proto.LoginServer(check)
        if name == "CRAM-MD5":
            return pop3proto.CramMD5Server(users.get)
        hash_name = "sha1" if name == "SCRAM-SHA-1" else "sha256"
        creds = {u: pop3proto.scram_credentials(p, hash_name=hash_name) for u, p in users.items()}
        return pop3proto.ScramServer(creds.get, hash_name=hash_name)

    def _logged_in(self, user: str) -> list[Any]:
        if self.config.login_error is not None:
            return [pop3proto.Err(self.config.login_error)]
        self.authenticated = user
        return [pop3proto.Ok("Logged in.")]

    def _auth_failed(self) -> list[Any]:
        if self.config.close_after_auth_failure:
            self.closing = True
        return [pop3proto.Err(self.config.auth_error)]

    def _sasl_step(self, data: bytes | None) -> list[Any]:
        mech = self._mech
        assert mech is not None
        try:
            challenge = mech.step(data)
        except pop3proto.SaslError:
            self._mech = None
            return self._auth_failed()
        if challenge is None:
            self._mech = None
            assert mech.authenticated_user is not None
            return self._logged_in(mech.authenticated_user)
        if challenge.startswith(b"v="):
            if self.config.scram_skip_final:
                self._mech = None
                return self._logged_in("alice")
            if self.config.scram_tamper:
                challenge = b"v=" + pop3proto.sasl_b64encode(b"\0" * 32)
        return [pop3proto.SaslChallenge(challenge)]

    def handle(self, event: pop3proto.Event) -> Iterable[Any]:
        """The replies to one received event (events or raw bytes)."""
        cfg = self.config
        if isinstance(event, pop3proto.BadCommand):
            return [pop3proto.Err(event.reason)]
        if isinstance(event, pop3proto.SaslCancel):
            self._mech = None
            return [pop3proto.Err("cancelled")]
        if isinstance(event, pop3proto.SaslResponse):
            return self._sasl_step(event.data)
        if isinstance(event, pop3proto.Capa):
            return [pop3proto.CapaOk(self.capabilities())] if cfg.capa else [pop3proto.Err("?")]
        if isinstance(event, pop3proto.Stls):
            if not cfg.stls:
                return [pop3proto.Err("no TLS here")]
            return (
                [pop3proto.Ok("Begin TLS"), cfg.after_stls]
                if cfg.after_stls
                else [pop3proto.Ok("Begin TLS")]
            )
        if isinstance(event, pop3proto.Utf8):
            return [pop3proto.Ok("UTF8 on")] if cfg.utf8 else [pop3proto.Err("no")]
        if isinstance(event, pop3proto.User):
            if not cfg.user_command:
                return [pop3proto.Err("USER disabled")]
            self._user = event.name
            return [pop3proto.Ok("send PASS")]
        if isinstance(event, pop3proto.Pass):
            self.auth_attempts += 1
            if self._user is not None and cfg.users.get(self._user) == event.password:
                return self._logged_in(self._user)
            return self._auth_failed()
        if isinstance(event, pop3proto.Apop):
            self.auth_attempts += 1
            secret = cfg.users.get(event.name)
            ts = pop3proto.Greeting(cfg.greeting).timestamp
            if secret is not None and ts and pop3proto.apop_digest(ts, secret) == event.digest:
                return self._logged_in(event.name)
            return self._auth_failed()
        if isinstance(event, pop3proto.Auth):
            self.auth_attempts += 1
            if event.mechanism not in cfg.sasl:
                return [pop3proto.Err("unsupported mechanism")]
            self._mech = self._mechanism(event.mechanism)
            return self._sasl_step(event.initial_response)
        if isinstance(event, pop3proto.Quit):
            if self.conn.state is State.UPDATE:
                if cfg.quit_no_reply:
                    self.closing = True
                    return []
                if cfg.quit_error:
                    self.closing = True
                    return [pop3proto.Err("some deleted messages not removed")]
                self.committed = sorted(self.deleted)
            self.closing = True
            return [pop3proto.Ok("bye")]
        return self._transaction(event)

    def _transaction(self, event: pop3proto.Event) -> Iterable[Any]:
        msgs = self.config.messages
        live = [n for n in range(1, len(msgs) + 1) if n not in self.deleted]
        if isinstance(event, pop3proto.Stat):
            return [pop3proto.StatOk(len(live), sum(len(msgs[n - 1]) for n in live))]
        if isinstance(event, pop3proto.Noop):
            return [pop3proto.Ok()]
        if isinstance(event, pop3proto.Rset):
            self.deleted.clear()
            return [pop3proto.Ok("reset")]
        if isinstance(event, pop3proto.List) and event.number is None:
            return [pop3proto.ListOk({n: len(msgs[n - 1]) for n in live})]
        if isinstance(event, pop3proto.Uidl) and event.number is None:
            return [pop3proto.UidlOk({n: f"uid-{n:04d}" for n in live})]
        number = getattr(event, "number", None)
        assert isinstance(number, int), event
        if not self.live(number):
            return [pop3proto.Err("no such message")]
        body = msgs[number - 1]
        if isinstance(event, pop3proto.List):
            return [pop3proto.ListEntryOk(number, len(body))]
        if isinstance(event, pop3proto.Uidl):
            return [pop3proto.UidlEntryOk(number, f"uid-{number:04d}")]
        if isinstance(event, pop3proto.Dele):
            self.deleted.add(number)
            return [pop3proto.Ok("deleted")]
        if isinstance(event, pop3proto.Top):
            head, sep, rest = body.partition(b"\r\n\r\n")
            lines = rest.split(b"\r\n")[: event.lines] if sep else []
            body = head + sep + b"\r\n".join(lines) + (b"\r\n" if lines else b"")
        assert isinstance(event, (pop3proto.Retr, pop3proto.Top)), event
        return self._stream(body)

    def _stream(self, body: bytes) -> Iterator[Any]:
        # Lazily, so that a 20 MB message is never copied whole.
        yield pop3proto.MessageStart(f"{len(body)} octets")
        step = self.config.chunk
        for i in range(0, len(body), step):
            yield pop3proto.MessageData(body[i : i + step])
        yield pop3proto.MessageEnd()


class ThreadedServer:
    """A POP3 server thread on 127.0.0.1:0 serving :class:`FakeSession` s.

    Connections are served one after another, each with a fresh session of
    *config* (copied).  ``sessions`` keeps them for inspection; exceptions in
    the thread are kept in ``errors``.  Use as a context manager: the thread
    is joined and every socket closed on exit.
    """

    def __init__(
        self,
        config: FakeConfig | None = None,
        *,
        tls_context: ssl.SSLContext | None = None,
        handler: Callable[[socket.socket, ThreadedServer], None] | None = None,
    ) -> None:
        self.config = config or FakeConfig()
        self.tls_context = tls_context
        self.handler = handler
        self.sessions: list[FakeSession] = []
        self.errors: list[BaseException] = []
        self.received = bytearray()
        self.active: socket.socket | None = None
        self._stop = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.port: int = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, name="fake-pop3", daemon=True)

    def __enter__(self) -> ThreadedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        active = self.active
        if active is not None:
            # Unblock a handler waiting on a client the test left open.
            with contextlib.suppress(OSError):
                active.shutdown(socket.SHUT_RDWR)
        self.thread.join(10)
        self.listener.close()
        assert not self.thread.is_alive(), "the server thread did not stop"

    @property
    def session(self) -> FakeSession:
        return self.sessions[-1]

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            sock.settimeout(10)
            self.active = sock
            try:
                if self.handler is not None:
                    self.handler(sock, self)
                else:
                    self._session(sock)
            except Exception as exc:  # the client may abort on purpose
                self.errors.append(exc)
            finally:
                self.active = None
                sock.close()

    def _wrap(self, sock: socket.socket) -> socket.socket:
        assert self.tls_context is not None
        return self.tls_context.wrap_socket(sock, server_side=True)

    def _session(self, sock: socket.socket) -> None:
        session = FakeSession(replace(self.config))
        self.sessions.append(session)
        conn = sock
        try:
            if session.config.implicit_tls:
                conn = self._wrap(sock)
            conn.sendall(session.greeting())
            while not session.closing:
                data = conn.recv(65536)
                self.received += data
                for chunk in session.receive(data):
                    conn.sendall(chunk)
                if session.tls_requested:
                    conn = self._wrap(conn)
                    session.tls_established()
                if not data:
                    break
        finally:
            if conn is not sock:
                conn.close()


def serve(config: FakeConfig | None = None, **kwargs: Any) -> ThreadedServer:
    """A :class:`ThreadedServer` for *config*, to use in a ``with`` block."""
    return ThreadedServer(config, **kwargs)


# ---------------------------------------------------------------------------
# SASL exchanges, without a connection
# ---------------------------------------------------------------------------


def wire(data: bytes) -> bytes:
    """Send *data* through the SASL base64 framing, as the engine would."""
    return sasl_b64decode(sasl_b64encode(data))


def run_exchange(
    client: SaslClientMechanism,
    server: SaslServerMechanism,
    *,
    send_initial_response: bool = True,
    tamper_challenge: Callable[[int, bytes], bytes] | None = None,
    tamper_response: Callable[[int, bytes], bytes] | None = None,
) -> list[tuple[str, bytes]]:
    """Drive a full POP3 AUTH exchange; return the transcript.

    Exceptions from either side propagate.  The tamper hooks get the
    0-based index of the challenge/response and may replace it.
    """
    transcript: list[tuple[str, bytes]] = []
    ir = client.initial_response()
    if send_initial_response and ir is not None and not server.server_first:
        transcript.append(("C", ir))
        challenge = server.step(wire(ir))
    else:
        challenge = server.step(None)
    index = 0
    while challenge is not None:
        if tamper_challenge is not None:
            challenge = tamper_challenge(index, challenge)
        transcript.append(("S", challenge))
        response = client.respond(wire(challenge))
        if tamper_response is not None:
            response = tamper_response(index, response)
        transcript.append(("C", response))
        challenge = server.step(wire(response))
        index += 1
    return transcript


#: The users the SASL tests know (tim's password is RFC 2195's example).
PASSWORDS = {"tim": "tanstaaftanstaaf", "alice": PASSWORD}
#: RFC 2195's example CRAM-MD5 challenge (its digest with tim's password is
#: ``b913a602c7eda7a495b4e6e7334d3890``).
RFC2195_CHALLENGE = "<1896.697170952@postoffice.reston.mci.net>"


def check_password(user: str, password: str) -> bool:
    return PASSWORDS.get(user) == password


def get_password(user: str) -> str | None:
    return PASSWORDS.get(user)


def secret_free(exc: BaseException, *secrets: str) -> None:
    """Assert no secret shows up in *exc*, its repr, or its chained exceptions."""
    seen: BaseException | None = exc
    while seen is not None:
        for text in (str(seen), repr(seen)):
            for secret in secrets:
                assert secret not in text
        seen = seen.__cause__ or seen.__context__


# ---------------------------------------------------------------------------
# Hypothesis strategies for valid field values and events
# ---------------------------------------------------------------------------

#: Characters allowed in status text outside UTF-8 mode: ASCII except NUL,
#: CR and LF (they would end or corrupt the line, RFC 1939 §3).
ASCII_TEXT = st.characters(min_codepoint=1, max_codepoint=0x7F, exclude_characters="\r\n")
#: Characters allowed after UTF8/LANG.  Lone surrogates are excluded: they
#: cannot be encoded, and events refuse them (test_surrogates_refused_...).
UNICODE_TEXT = st.characters(exclude_categories=["Cs"], exclude_characters="\r\n\x00")
_VCHAR = st.characters(min_codepoint=0x21, max_codepoint=0x7E)

#: Every keyword the engine has a command class for.
KNOWN_KEYWORDS = frozenset(
    {"USER", "PASS", "APOP", "AUTH", "STAT", "LIST", "RETR", "DELE", "NOOP", "RSET", "QUIT"}
    | {"TOP", "UIDL", "CAPA", "STLS", "UTF8", "LANG"}
)


@functools.cache
def status_texts(*, utf8: bool = False, max_size: int = 40) -> st.SearchStrategy[str]:
    """Status-line text that round-trips: it must not itself start with
    ``[`` (the peer would read a response code, RFC 2449 §6.4)."""
    return st.text(UNICODE_TEXT if utf8 else ASCII_TEXT, max_size=max_size).filter(
        lambda t: not t.startswith("[")
    )


#: One command parameter: ``1*VCHAR`` (RFC 2449 §3).
tokens = st.text(_VCHAR, min_size=1, max_size=40)
#: A unique-id: 1-70 characters in 0x21-0x7E (RFC 1939 §7).
uids = st.text(_VCHAR, min_size=1, max_size=70)
#: A PASS argument: printable ASCII, spaces anywhere (RFC 1939 §7).
passwords = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=60)
#: Message numbers: small ones, and anything up to the 20 digits the server
#: parses.
message_numbers = st.one_of(st.integers(1, 30), st.integers(1, 10**20 - 1))
#: Counts and sizes (>= 0).
sizes = st.one_of(st.integers(0, 10**6), st.integers(0, 10**30))
#: Extension keywords the engine does not know (3-4 characters).
extension_names = st.text(
    st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_!~"),
    min_size=3,
    max_size=4,
).filter(lambda n: n[0].isalnum() and n.upper() not in KNOWN_KEYWORDS)

_RCHAR = st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="/]")
response_codes: st.SearchStrategy[ResponseCode] = st.one_of(
    st.sampled_from(
        [ResponseCode(("IN-USE",)), ResponseCode(("SYS", "TEMP")), ResponseCode(("AUTH",))]
    ),
    st.lists(st.text(_RCHAR, min_size=1, max_size=10), min_size=1, max_size=3).map(
        lambda levels: ResponseCode(tuple(levels))
    ),
)
optional_codes = st.none() | response_codes

_CAP_TAG = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="."),
    min_size=1,
    max_size=20,
)
_CAP_ENTRY = st.one_of(
    st.tuples(_CAP_TAG, st.lists(st.text(_VCHAR, min_size=1, max_size=20), max_size=4).map(tuple)),
    st.sampled_from(
        [
            ("PIPELINING", ()),
            ("STLS", ()),
            ("USER", ()),
            ("TOP", ()),
            ("UIDL", ()),
            ("SASL", ("PLAIN", "LOGIN")),
            ("UTF8", ("USER",)),
            ("LANG", ()),
            ("LOGIN-DELAY", ("900",)),
            ("EXPIRE", ("NEVER",)),
        ]
    ),
)
#: Valid capability lists (to send).
capabilities = st.lists(_CAP_ENTRY, max_size=8).map(lambda e: Capabilities(tuple(e)))

#: Pieces that make message bodies interesting (CONFORMANCE.md §3.2 and §3.3).
BODY_PIECES = (
    b".",
    b"..",
    b"...",
    b".x",
    b"\r\n",
    b"\r",
    b"\n",
    b"x",
    b" ",
    b"\r\n.\r\n",
    b"\r\n.",
    b".\r",
    b"\n.\n",
    b"\x00",
    b"\xff",
)
#: Arbitrary message bodies, and bodies built from :data:`BODY_PIECES`.
bodies = st.one_of(
    st.binary(max_size=120),
    st.lists(st.sampled_from(BODY_PIECES), max_size=40).map(b"".join),
)


def chunkings(data: bytes) -> st.SearchStrategy[list[bytes]]:
    """Ways to cut *data* into chunks (empty chunks included)."""
    return st.lists(st.integers(0, len(data)), max_size=8).map(
        lambda cuts: [data[a:b] for a, b in pairwise([0, *sorted(cuts), len(data)])]
    )


def _body_reply(body: bytes, chunks: list[bytes], start: MessageStart) -> list[Event]:
    return [start, *(MessageData(c) for c in chunks), MessageEnd()]


def message_replies(
    *, utf8: bool = False, body_fix: Callable[[bytes], bytes] | None = None
) -> st.SearchStrategy[list[Event]]:
    """``MessageStart``, the body in random chunks, ``MessageEnd``.

    *body_fix*, if given, rewrites each generated body."""
    body_strategy = bodies if body_fix is None else bodies.map(body_fix)
    return body_strategy.flatmap(
        lambda body: st.builds(
            _body_reply,
            st.just(body),
            chunkings(body),
            st.builds(MessageStart, status_texts(utf8=utf8), optional_codes),
        )
    )


def _reply_shape(event: Event) -> str:
    """Which kind of reply *event* needs (CONFORMANCE.md §6.3)."""
    if isinstance(event, (BadCommand, SaslCancel)):
        return "err"
    if isinstance(event, Stat):
        return "stat"
    if isinstance(event, (List, Uidl)):
        kind = "list" if isinstance(event, List) else "uidl"
        return kind if event.number is None else kind + "-entry"
    if isinstance(event, (Retr, Top)):
        return "message"
    if isinstance(event, Capa):
        return "capa"
    if isinstance(event, Lang) and event.language is None:
        return "lang-list"
    if isinstance(event, (Auth, SaslResponse)):
        return "sasl"
    assert isinstance(event, Command), event
    return "ok"


def replies_for(
    event: Event,
    *,
    utf8: bool = False,
    body_fix: Callable[[bytes], bytes] | None = None,
) -> st.SearchStrategy[list[Event]]:
    """A random valid server reply to *event* (CONFORMANCE.md §6.3).

    ``-ERR`` is always possible; :class:`BadCommand` and :class:`SaslCancel`
    get nothing else.  For :class:`Auth` / :class:`SaslResponse` the reply is
    one step of the exchange: a challenge, ``+OK`` or ``-ERR``.  *utf8* says
    whether non-ASCII text may be sent; *body_fix* rewrites bodies.
    """
    return _replies(_reply_shape(event), utf8, body_fix)


def _one(event: Event) -> list[Event]:
    return [event]


@functools.cache
def _replies(
    shape: str, utf8: bool, body_fix: Callable[[bytes], bytes] | None
) -> st.SearchStrategy[list[Event]]:
    # Built once per shape: building strategies costs more than drawing.
    text = status_texts(utf8=utf8)
    err: st.SearchStrategy[list[Event]] = st.builds(Err, text, optional_codes).map(_one)
    if shape == "err":
        return err
    ok: st.SearchStrategy[list[Event]]
    if shape == "stat":
        ok = st.builds(StatOk, sizes, sizes).map(_one)
    elif shape == "list-entry":
        ok = st.builds(ListEntryOk, message_numbers, sizes).map(_one)
    elif shape == "uidl-entry":
        ok = st.builds(UidlEntryOk, message_numbers, uids).map(_one)
    elif shape == "list":
        ok = st.builds(ListOk, st.dictionaries(message_numbers, sizes, max_size=8), text).map(_one)
    elif shape == "uidl":
        ok = st.builds(UidlOk, st.dictionaries(message_numbers, uids, max_size=8), text).map(_one)
    elif shape == "message":
        ok = message_replies(utf8=utf8, body_fix=body_fix)
    elif shape == "capa":
        ok = st.builds(CapaOk, capabilities, text).map(_one)
    elif shape == "lang-list":
        # RFC 6856 §3.2: descriptions are UTF-8 in any mode; tags are ASCII.
        tags = tokens.filter(lambda t: not t.startswith("."))
        ok = st.builds(
            LangOk,
            st.lists(st.tuples(tags, st.text(UNICODE_TEXT, max_size=20)), max_size=5).map(tuple),
            text,
        ).map(_one)
    elif shape == "sasl":
        ok = st.one_of(
            st.builds(SaslChallenge, st.binary(max_size=60)).map(_one),
            st.builds(Ok, text, optional_codes).map(_one),
        )
    else:
        ok = st.builds(Ok, text, optional_codes).map(_one)
    return st.one_of(ok, err)

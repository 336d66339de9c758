"""Edge cases from the conformance checklist, section 10 (/work/shared/pop3-conformance.md).

Every bullet of §10 has at least one test here; each test's docstring names the
§10 heading (and, where useful, the section of the checklist or RFC that says
what the right answer is).  Tests marked ``xfail(strict=True)`` would expose engine
bugs still open; the last section holds regression tests for the engine bugs these
tests found.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TYPE_CHECKING, TypedDict

import pytest

from pop3proto import (
    CLIENT,
    IN_USE,
    NEED_DATA,
    PAUSED,
    SERVER,
    SYS_TEMP,
    Apop,
    Auth,
    BadCommand,
    Capa,
    Capabilities,
    CapaOk,
    Command,
    Connection,
    ConnectionClosed,
    Dele,
    Err,
    Event,
    Greeting,
    Lang,
    LangOk,
    List,
    ListEntryOk,
    ListOk,
    LocalProtocolError,
    MessageData,
    MessageEnd,
    MessageStart,
    Noop,
    Ok,
    Pass,
    Quit,
    RemoteProtocolError,
    ResponseCode,
    Retr,
    Rset,
    SaslCancel,
    SaslChallenge,
    SaslResponse,
    Stat,
    State,
    StatOk,
    Stls,
    Top,
    Uidl,
    UidlEntryOk,
    UidlOk,
    User,
    Utf8,
    fits_initial_response,
    sasl_b64encode,
)
from tests.helpers import events_through_wait as events
from tests.helpers import feed_through_wait as feed

if TYPE_CHECKING:
    from typing_extensions import Unpack

TIMESTAMP = "<1896.697170952@dbc.mtview.ca.us>"
GREETING = b"+OK POP3 server ready " + TIMESTAMP.encode() + b"\r\n"


# ---------------------------------------------------------------------------
# Small local helpers
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


def eof(conn: Connection) -> list[object]:
    conn.receive_data(b"")
    return events(conn)


def body_of(evs: list[object]) -> bytes:
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


def new_client(greeting: bytes = GREETING, **kw: Unpack[Options]) -> Connection:
    conn = Connection(CLIENT, **kw)
    evs = feed(conn, greeting)
    assert isinstance(evs[0], Greeting), evs
    return conn


def client_tx(**kw: Unpack[Options]) -> Connection:
    conn = new_client(**kw)
    conn.send(User("mrose"))
    assert isinstance(feed(conn, b"+OK\r\n")[0], Ok)
    conn.send(Pass("secret"))
    assert isinstance(feed(conn, b"+OK\r\n")[0], Ok)
    assert conn.state is State.TRANSACTION
    return conn


def ask(conn: Connection, cmd: Event, data: bytes) -> list[object]:
    """Client: send *cmd*, receive *data*, return the events."""
    conn.send(cmd)
    return feed(conn, data)


def new_server(text: str = "POP3 server ready " + TIMESTAMP, **kw: Unpack[Options]) -> Connection:
    conn = Connection(SERVER, **kw)
    conn.send(Greeting(text))
    assert conn.state is State.AUTHORIZATION
    return conn


def server_tx(**kw: Unpack[Options]) -> Connection:
    conn = new_server(**kw)
    assert feed(conn, b"USER mrose\r\n")[0] == User("mrose")
    conn.send(Ok())
    assert feed(conn, b"PASS secret\r\n")[0] == Pass("secret")
    conn.send(Ok())
    assert conn.state is State.TRANSACTION
    return conn


def first(conn: Connection, data: bytes) -> object:
    """Server: receive *data*, return the first event."""
    return feed(conn, data)[0]


class Pair:
    """A client and a server wired together (no I/O)."""

    def __init__(
        self,
        greeting: str = "POP3 server ready " + TIMESTAMP,
        client: Options | None = None,
        server: Options | None = None,
    ) -> None:
        self.client = Connection(CLIENT, **(client or {}))
        self.server = Connection(SERVER, **(server or {}))
        assert self.reply(Greeting(greeting))[0] == Greeting(greeting)

    def command(self, cmd: Event) -> list[object]:
        return feed(self.server, self.client.send(cmd))

    def reply(self, *responses: Event) -> list[object]:
        data = b"".join(self.server.send(r) for r in responses)
        return feed(self.client, data)


def bad_server_line(line: bytes, state: str = "TRANSACTION") -> BadCommand:
    conn = server_tx() if state == "TRANSACTION" else new_server()
    ev = first(conn, line)
    assert isinstance(ev, BadCommand), ev
    before = conn.state
    conn.send(Err(ev.reason))
    assert conn.state is before
    return ev


# ---------------------------------------------------------------------------
# §10 Split invariance
# ---------------------------------------------------------------------------

SPLIT_COMMANDS = [
    User("mrose"),
    Pass("secret"),
    Stat(),
    List(),
    Uidl(),
    Retr(1),
    Top(1, 0),
    Capa(),
    List(2),
    Uidl(2),
    Dele(1),
    Quit(),
]
SPLIT_WIRE = (
    GREETING + b"+OK\r\n+OK maildrop has 2 messages\r\n+OK 2 320\r\n"
    b"+OK\r\n1 120\r\n2 200\r\n.\r\n"
    b"+OK\r\n1 whqtswO00WBw418f9t5JxYwZ\r\n2 QhdPYR:00WBw1Ph7x7\r\n.\r\n"
    b"+OK 120 octets\r\n..\r\n...\r\n....\r\n..x\r\nbody\r\n\r\n..\r\n.\r\n"
    b"+OK\r\nSubject: hi\r\n\r\n.\r\n"
    b"+OK\r\nTOP\r\nPIPELINING\r\n.\r\n"
    b"+OK 2 200\r\n+OK 2 QhdPYR:00WBw1Ph7x7\r\n"
    b"-ERR [SYS/TEMP] try later\r\n+OK bye\r\n"
)


def run_client(chunks: list[bytes], **kw: Unpack[Options]) -> list[object]:
    """Feed *chunks*; send every SPLIT_COMMAND (pipelined) once the greeting is in."""
    options: Options = {"allow_unadvertised_pipelining": True, **kw}
    conn = Connection(CLIENT, **options)
    out: list[object] = []
    for chunk in [*(c for c in chunks if c), b""]:
        conn.receive_data(chunk)
        while True:
            ev = conn.next_event()
            if ev is NEED_DATA:
                break
            out.append(ev)
            if isinstance(ev, Greeting):
                for cmd in SPLIT_COMMANDS:
                    conn.send(cmd)
            if isinstance(ev, ConnectionClosed):
                return merged(out)
    raise AssertionError("no ConnectionClosed")


CLIENT_REFERENCE = run_client([SPLIT_WIRE])


def test_split_reference_transcript_is_what_we_think() -> None:
    """§10 Split invariance: the reference run itself is right (so split tests mean something)."""
    evs = CLIENT_REFERENCE
    assert evs[0] == Greeting("POP3 server ready " + TIMESTAMP)
    assert evs[3] == StatOk(2, 320)
    assert evs[4] == ListOk({1: 120, 2: 200})
    assert evs[5] == UidlOk({1: "whqtswO00WBw418f9t5JxYwZ", 2: "QhdPYR:00WBw1Ph7x7"})
    assert evs[6:9] == [
        MessageStart("120 octets"),
        MessageData(b".\r\n..\r\n...\r\n.x\r\nbody\r\n\r\n.\r\n"),
        MessageEnd(),
    ]
    assert evs[9:12] == [MessageStart(), MessageData(b"Subject: hi\r\n\r\n"), MessageEnd()]
    assert isinstance(evs[12], CapaOk) and evs[12].capabilities.pipelining
    assert evs[13:15] == [ListEntryOk(2, 200), UidlEntryOk(2, "QhdPYR:00WBw1Ph7x7")]
    assert evs[15] == Err("try later", SYS_TEMP)
    assert evs[16:] == [Ok("bye"), ConnectionClosed()]


def test_split_every_single_byte_boundary_client() -> None:
    """§10 Split invariance: every 2-chunk split of a client transcript gives the same events.

    This includes the splits the checklist singles out: ``\\r|\\n``, ``\\r\\n.|\\r\\n``
    and ``.|\\r`` all occur in SPLIT_WIRE.
    """
    for i in range(len(SPLIT_WIRE) + 1):
        assert run_client([SPLIT_WIRE[:i], SPLIT_WIRE[i:]]) == CLIENT_REFERENCE, i


def test_split_one_byte_at_a_time_client() -> None:
    """§10 Split invariance: one byte at a time."""
    chunks = [SPLIT_WIRE[i : i + 1] for i in range(len(SPLIT_WIRE))]
    assert run_client(chunks) == CLIENT_REFERENCE


def test_split_random_chunks_client() -> None:
    """§10 Split invariance: random chunk sizes (seeded)."""
    rng = random.Random(1939)
    for _ in range(200):
        chunks, i = [], 0
        while i < len(SPLIT_WIRE):
            n = rng.randint(1, 12)
            chunks.append(SPLIT_WIRE[i : i + n])
            i += n
        assert run_client(chunks) == CLIENT_REFERENCE


def test_split_every_two_cuts_in_a_body() -> None:
    """§10 Split invariance: all three-chunk splits around ``\\r\\n.\\r\\n`` and stuffed dots."""
    wire = GREETING + b"+OK\r\n+OK\r\n+OK\r\n..\r\n.x\r\n\r\n..\r\n.\r\n+OK bye\r\n"
    cmds = [User("a"), Pass("b"), Retr(1), Quit()]

    def run(chunks: list[bytes]) -> list[object]:
        conn = Connection(CLIENT, allow_unadvertised_pipelining=True)
        out: list[object] = []
        for chunk in [*(c for c in chunks if c), b""]:
            conn.receive_data(chunk)
            while (ev := conn.next_event()) is not NEED_DATA:
                out.append(ev)
                if isinstance(ev, Greeting):
                    for cmd in cmds:
                        conn.send(cmd)
                if isinstance(ev, ConnectionClosed):
                    return merged(out)
        raise AssertionError

    ref = run([wire])
    assert ref[4] == MessageData(b".\r\nx\r\n\r\n.\r\n")
    start = len(GREETING)
    for i in range(start, len(wire)):
        for j in range(i, len(wire) + 1):
            assert run([wire[:i], wire[i:j], wire[j:]]) == ref, (i, j)


def test_split_bare_lf_mode_client() -> None:
    """§10 Split invariance also holds in lenient bare-LF mode."""
    wire = SPLIT_WIRE.replace(b"\r\n", b"\n")
    ref = run_client([wire], bare_lf=True)
    assert ref[6:9] == [
        MessageStart("120 octets"),
        MessageData(b".\n..\n...\n.x\nbody\n\n.\n"),
        MessageEnd(),
    ]
    assert ref[4] == ListOk({1: 120, 2: 200})
    for i in range(len(wire) + 1):
        assert run_client([wire[:i], wire[i:]], bare_lf=True) == ref, i


SERVER_WIRE = (
    b"CAPA\r\nUSER mrose\r\nPASS  pass word\r\nSTAT\r\nLIST\r\nXYZZY 1\r\n"
    b"RETR 1\r\nAUTH PLAIN\r\nTOP 1 0\r\nQUIT\r\n"
)


def serve(chunks: list[bytes]) -> tuple[list[object], bytes]:
    """A scripted server application; returns (events, bytes sent)."""
    conn = Connection(SERVER)
    sent = [conn.send(Greeting("ready"))]
    out: list[object] = []
    for chunk in [*(c for c in chunks if c), b""]:
        conn.receive_data(chunk)
        while True:
            ev = conn.next_event()
            if ev is NEED_DATA:
                break
            if ev is PAUSED:
                raise AssertionError("the application always answers")
            out.append(ev)
            if isinstance(ev, ConnectionClosed):
                return out, b"".join(sent)
            if isinstance(ev, BadCommand):
                sent.append(conn.send(Err(ev.reason)))
            elif isinstance(ev, Capa):
                sent.append(conn.send(CapaOk(Capabilities.build("USER", "PIPELINING"))))
            elif isinstance(ev, Stat):
                sent.append(conn.send(StatOk(1, 5)))
            elif isinstance(ev, List):
                sent.append(conn.send(ListOk({1: 5})))
            elif isinstance(ev, (Retr, Top)):
                for r in (MessageStart(), MessageData(b".a\r\n"), MessageEnd()):
                    sent.append(conn.send(r))
            else:
                sent.append(conn.send(Ok()))
    raise AssertionError("no ConnectionClosed")


SERVER_REFERENCE = serve([SERVER_WIRE])


def test_split_server_reference() -> None:
    """§10 Split invariance (server): the reference run."""
    evs, _ = SERVER_REFERENCE
    assert evs[:5] == [Capa(), User("mrose"), Pass(" pass word"), Stat(), List()]
    assert isinstance(evs[5], BadCommand) and evs[5].line == b"XYZZY 1"
    assert evs[6] == Retr(1)
    # AUTH in TRANSACTION is refused; TOP and QUIT still run (nothing lost, RFC 2197 §4.2).
    assert isinstance(evs[7], BadCommand) and evs[7].command == Auth("PLAIN")
    assert evs[8:] == [Top(1, 0), Quit(), ConnectionClosed()]


def test_split_every_boundary_server() -> None:
    """§10 Split invariance (server): every 2-chunk split and one byte at a time."""
    for i in range(len(SERVER_WIRE) + 1):
        assert serve([SERVER_WIRE[:i], SERVER_WIRE[i:]]) == SERVER_REFERENCE, i
    bytewise = [SERVER_WIRE[i : i + 1] for i in range(len(SERVER_WIRE))]
    assert serve(bytewise) == SERVER_REFERENCE


# ---------------------------------------------------------------------------
# §10 Framing
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "wire"),
    [(b".", b".."), (b"..", b"..."), (b"...", b"...."), (b".x", b"..x")],
)
def test_framing_dot_lines_round_trip(line: bytes, wire: bytes) -> None:
    """§10 Framing: lines ``.``, ``..``, ``...``, ``.x`` are stuffed by the server and
    unstuffed by the client (RFC 1939 §3)."""
    pair = Pair()
    pair.command(User("a"))
    pair.reply(Ok())
    pair.command(Pass("b"))
    pair.reply(Ok())
    pair.command(Retr(1))
    head = pair.server.send(MessageStart())
    data = pair.server.send(MessageData(b"a\r\n" + line + b"\r\nb\r\n"))
    assert data == b"a\r\n" + wire + b"\r\nb\r\n"
    end = pair.server.send(MessageEnd())
    assert end == b".\r\n"
    evs = feed(pair.client, head + data + end)
    assert body_of(evs) == b"a\r\n" + line + b"\r\nb\r\n"
    assert isinstance(evs[-2], MessageEnd)


def test_framing_unstuffed_dot_x_from_a_sloppy_server() -> None:
    """§10 Framing / §3: a server that forgot to stuff ``.x``: the client follows the RFC
    and strips the dot (poplib would keep it); the engine does not offer the poplib mode."""
    conn = client_tx()
    evs = ask(conn, Retr(1), b"+OK\r\n.x\r\n\r\n.\r\n")
    assert body_of(evs) == b"x\r\n\r\n"


@pytest.mark.parametrize(
    ("body", "wire"),
    [
        (b".\r\nmiddle\r\n", b"..\r\nmiddle\r\n.\r\n"),  # dot line first
        (b"middle\r\n.\r\n", b"middle\r\n..\r\n.\r\n"),  # dot line last
        (b".\r\n", b"..\r\n.\r\n"),  # the only line is a dot
    ],
)
def test_framing_dot_line_first_or_last(body: bytes, wire: bytes) -> None:
    """§10 Framing: a dot line first or last in the body, both directions."""
    srv = server_tx()
    first(srv, b"RETR 1\r\n")
    out = srv.send(MessageStart()) + srv.send(MessageData(body)) + srv.send(MessageEnd())
    assert out == b"+OK\r\n" + wire
    conn = client_tx()
    evs = ask(conn, Retr(1), out)
    assert body_of(evs) == body
    assert isinstance(evs[-2], MessageEnd) and conn.outstanding == ()


@pytest.mark.parametrize(
    ("body", "terminator"),
    [
        (b"no final CRLF", b"\r\n.\r\n"),
        (b"ends in a lone CR\r", b"\n.\r\n"),
        (b"ends properly\r\n", b".\r\n"),
    ],
)
def test_framing_server_completes_missing_final_crlf(body: bytes, terminator: bytes) -> None:
    """§10 Framing: a message with no final CRLF, or ending in a lone ``\\r``: the server
    appends the line end so the terminator is on its own line (§3, fetchmail FAQ S2)."""
    srv = server_tx()
    first(srv, b"RETR 1\r\n")
    srv.send(MessageStart())
    assert srv.send(MessageData(body)) == body
    assert srv.send(MessageEnd()) == terminator
    conn = client_tx()
    evs = ask(conn, Retr(1), b"+OK\r\n" + body + terminator)
    received = body_of(evs)
    assert received.endswith(b"\r\n") and received.rstrip(b"\r\n") == body.rstrip(b"\r\n")


def test_framing_client_waits_for_a_body_without_final_crlf() -> None:
    """§10 Framing / real-world deviations (Exchange 2000, node-pop3#27): a body whose
    terminator is not on its own line never ends; EOF then is a clean RemoteProtocolError."""
    conn = client_tx()
    evs = ask(conn, Retr(1), b"+OK\r\nabc.\r\n")
    assert evs[-1] is NEED_DATA and not any(isinstance(e, MessageEnd) for e in evs)
    conn.receive_data(b"")
    with pytest.raises(RemoteProtocolError):
        conn.next_event()
    assert conn.state is State.ERROR


def test_framing_empty_message() -> None:
    """§10 Framing: an empty message is ``+OK`` then ``.``: no MessageData at all."""
    srv = server_tx()
    first(srv, b"RETR 1\r\n")
    assert srv.send(MessageStart()) + srv.send(MessageEnd()) == b"+OK\r\n.\r\n"
    conn = client_tx()
    assert ask(conn, Retr(1), b"+OK\r\n.\r\n") == [MessageStart(), MessageEnd(), NEED_DATA]


@pytest.mark.parametrize(
    ("cmd", "reply"),
    [
        (List(), ListOk({})),
        (Uidl(), UidlOk({})),
        (Capa(), CapaOk(Capabilities(()))),
        (Lang(), LangOk(())),
    ],
)
def test_framing_empty_listings(cmd: Event, reply: Event) -> None:
    """§10 Framing: empty LIST, UIDL and CAPA (and bare LANG) are ``+OK`` then ``.``."""
    pair = Pair()
    if not isinstance(cmd, (Capa, Lang)):
        pair.command(User("a"))
        pair.reply(Ok())
        pair.command(Pass("b"))
        pair.reply(Ok())
    assert pair.command(cmd)[0] == cmd
    assert pair.server.send(reply) == b"+OK\r\n.\r\n"
    assert feed(pair.client, b"+OK\r\n.\r\n") == [reply, NEED_DATA]


def test_framing_bare_lf_status_line_strict_client() -> None:
    """§10 Framing: bare LF in strict mode is no line end; when the CRLF comes, the LF
    inside the line is a RemoteProtocolError."""
    conn = client_tx()
    assert ask(conn, Noop(), b"+OK\n") == [NEED_DATA]
    conn.receive_data(b"+OK\r\n")
    with pytest.raises(RemoteProtocolError):
        conn.next_event()


def test_framing_bare_lf_status_line_lenient_client() -> None:
    """§10 Framing: with bare_lf=True a bare LF ends a line."""
    conn = client_tx(bare_lf=True)
    assert ask(conn, Noop(), b"+OK done\n") == [Ok("done"), NEED_DATA]


@pytest.mark.parametrize("bare_lf", [False, True])
def test_framing_bare_cr_and_cr_cr_lf_status_lines_are_refused(bare_lf: bool) -> None:
    """§10 Framing: a bare CR, or ``\\r\\r\\n``, in a status line is a RemoteProtocolError in
    both modes (the engine's choice: CR is never text)."""
    for wire in (b"+OK a\rb\r\n", b"+OK a\r\r\n"):
        conn = client_tx(bare_lf=bare_lf)
        conn.send(Noop())
        conn.receive_data(wire)
        with pytest.raises(RemoteProtocolError):
            conn.next_event()


@pytest.mark.parametrize("bare_lf", [False, True])
def test_framing_bare_cr_and_cr_cr_lf_in_a_body_are_data(bare_lf: bool) -> None:
    """§10 Framing: in a body, bare CR and ``\\r\\r\\n`` are message octets, in both modes."""
    conn = client_tx(bare_lf=bare_lf)
    evs = ask(conn, Retr(1), b"+OK\r\na\rb\r\nc\r\r\n.\r\n")
    assert body_of(evs) == b"a\rb\r\nc\r\r\n"
    assert isinstance(evs[-2], MessageEnd)


def test_framing_bare_lf_in_a_body_strict_vs_lenient() -> None:
    """§10 Framing: bare LF in a body.  Strict: just data (no unstuffing after LF).
    Lenient: LF ends a line, so ``\\n..`` is unstuffed."""
    wire = b"+OK\r\na\n..b\r\n.\r\n"
    assert body_of(ask(client_tx(), Retr(1), wire)) == b"a\n..b\r\n"
    assert body_of(ask(client_tx(bare_lf=True), Retr(1), wire)) == b"a\n.b\r\n"


def test_framing_dot_lf_terminator() -> None:
    """§10 Framing: a ``.\\n`` terminator ends the body only with bare_lf=True."""
    conn = client_tx(bare_lf=True)
    evs = ask(conn, Retr(1), b"+OK\r\nabc\n.\n")
    assert evs == [MessageStart(), MessageData(b"abc\n"), MessageEnd(), NEED_DATA]
    strict = client_tx()
    evs = ask(strict, Retr(1), b"+OK\r\nabc\n.\n")
    assert not any(isinstance(e, MessageEnd) for e in evs)
    # The lenient listing terminator too.
    conn = client_tx(bare_lf=True)
    assert ask(conn, List(), b"+OK\n1 5\n.\n")[0] == ListOk({1: 5})
    assert ask(conn, List(), b"+OK\n.\n")[0] == ListOk({})


def test_framing_dot_cr_without_lf_needs_a_timeout() -> None:
    """§10 Framing: ``.\\r`` with no ``\\n`` (Cyrus 3.4.6): the body so far is delivered,
    then NEED_DATA, so the application's timeout can fire; EOF is a clean error."""
    conn = client_tx()
    evs = ask(conn, Retr(1), b"+OK\r\nabc\r\n.\r")
    # The possible terminator "\r\n.\r" is held back until the next octet decides.
    assert evs == [MessageStart(), MessageData(b"abc"), NEED_DATA]
    assert conn.next_event() is NEED_DATA
    evs = feed(conn, b"\n")
    assert merged(evs) == [MessageData(b"\r\n"), MessageEnd()]
    conn = client_tx()
    ask(conn, Retr(1), b"+OK\r\nabc\r\n.\r")
    conn.receive_data(b"")
    with pytest.raises(RemoteProtocolError):
        conn.next_event()


def test_framing_bare_lf_and_cr_in_commands_strict() -> None:
    """§10 Framing (server): strict mode needs CRLF; a bare LF or CR inside a line makes it
    a BadCommand, and nothing before CRLF is executed."""
    srv = new_server()
    assert feed(srv, b"CAPA\n") == [NEED_DATA]
    ev = first(srv, b"CAPA\r\n")
    assert isinstance(ev, BadCommand) and ev.line == b"CAPA\nCAPA"
    srv.send(Err())
    for line in (b"CAPA\rX\r\n", b"CAPA\r\r\n"):
        ev = first(srv, line)
        assert isinstance(ev, BadCommand), line
        srv.send(Err())
    assert srv.state is State.AUTHORIZATION


def test_framing_bare_lf_commands_lenient() -> None:
    """§10 Framing (server): with bare_lf=True, ``\\n`` ends a command; ``\\r\\r\\n`` still
    leaves a CR in the line, which is refused."""
    srv = new_server(bare_lf=True)
    assert first(srv, b"CAPA\n") == Capa()
    srv.send(CapaOk(Capabilities.build("TOP")))
    assert first(srv, b"CAPA\r\n") == Capa()
    srv.send(CapaOk(Capabilities.build("TOP")))
    assert isinstance(first(srv, b"CAPA\r\r\n"), BadCommand)


def test_framing_server_eof_with_a_partial_command() -> None:
    """§10 Framing: a command without its CRLF (or ending in a lone CR) at EOF never runs."""
    for tail in (b"QUIT", b"QUIT\r"):
        srv = server_tx()
        assert feed(srv, tail) == [NEED_DATA]
        srv.receive_data(b"")
        assert events(srv) == [ConnectionClosed()]
        assert srv.state is State.CLOSED


def test_framing_nul_bytes() -> None:
    """§10 Framing: NUL bytes.  In a command: BadCommand.  In a status line:
    RemoteProtocolError.  In a body: data."""
    assert "control" in bad_server_line(b"USER a\x00b\r\n", "AUTHORIZATION").reason
    conn = client_tx()
    conn.send(Noop())
    conn.receive_data(b"+OK a\x00b\r\n")
    with pytest.raises(RemoteProtocolError):
        conn.next_event()
    assert body_of(ask(client_tx(), Retr(1), b"+OK\r\na\x00b\r\n.\r\n")) == b"a\x00b\r\n"


def test_framing_8bit_bytes_before_utf8() -> None:
    """§10 Framing: 8-bit bytes before UTF8.  Status text: U+FFFD, never an error (§9 REC).
    Body: passed through.  Commands: non-ASCII parameters are refused (§9)."""
    conn = client_tx()
    assert ask(conn, Noop(), b"+OK caf\xc3\xa9 \xff\r\n")[0] == Ok("caf\ufffd\ufffd \ufffd")
    assert body_of(ask(conn, Retr(1), b"+OK\r\n\xe9t\xe9\r\n.\r\n")) == b"\xe9t\xe9\r\n"
    assert "non-ASCII" in bad_server_line(b"USER caf\xc3\xa9\r\n", "AUTHORIZATION").reason
    assert isinstance(bad_server_line(b"LIST \xb9\r\n"), BadCommand)


# ---------------------------------------------------------------------------
# §10 Lengths
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(("size", "accepted"), [(254, True), (255, True), (256, False)])
def test_lengths_command_on_the_server(size: int, accepted: bool) -> None:
    """§10 Lengths: commands of 254/255/256 octets (CRLF included; RFC 2449 §4: 255)."""
    srv = new_server()
    line = b"USER " + b"u" * (size - 7) + b"\r\n"
    assert len(line) == size
    ev = first(srv, line + b"CAPA\r\n")
    if accepted:
        assert ev == User("u" * (size - 7))
        srv.send(Err())
    else:
        assert isinstance(ev, BadCommand)
        assert ev.reason == "command line too long"
        assert ev.line == line[:253] and ev.command is None
        srv.send(Err())
    # The line after it is intact either way.
    assert first(srv, b"") == Capa()


@pytest.mark.parametrize(("size", "accepted"), [(254, True), (255, True), (256, False)])
def test_lengths_command_on_client_send(size: int, accepted: bool) -> None:
    """§10 Lengths: the client refuses to send a command over 255 octets."""
    conn = new_client()
    name = "u" * (size - 7)
    if accepted:
        assert len(conn.send(User(name))) == size
    else:
        with pytest.raises(LocalProtocolError):
            conn.send(User(name))
        assert conn.state is State.ERROR


def test_lengths_overlong_command_split_anywhere() -> None:
    """§10 Lengths: the 256-octet verdict does not depend on how the line arrives."""
    line = b"USER " + b"u" * 249 + b"\r\n"
    # The split between CR and LF is the engine bug in the next test.
    for i in [*range(len(line) - 1), len(line)]:
        srv = new_server()
        evs = feed(srv, line[:i])
        rest = line[i:]
        if evs == [NEED_DATA]:
            evs, rest = feed(srv, rest), b""
        assert isinstance(evs[0], BadCommand), i
        assert evs[0].reason == "command line too long"
        srv.send(Err())
        ev = feed(srv, rest + b"NOOP\r\n")[0]
        assert isinstance(ev, BadCommand) and ev.command == Noop(), i


def test_lengths_overlong_command_crlf_split_keeps_next_command() -> None:
    """§10 Lengths + §6 (server input must never be lost, RFC 2197 §4.2): the command after
    an overlong line must run however the overlong line's CRLF is split."""
    srv = new_server()
    ev = first(srv, b"U" * 300 + b"\r")
    assert isinstance(ev, BadCommand)
    srv.send(Err())
    assert events(srv) == [NEED_DATA]
    assert first(srv, b"\nCAPA\r\n") == Capa()


@pytest.mark.parametrize(("size", "ok"), [(511, True), (512, True), (513, False)])
def test_lengths_reply_line_client(size: int, ok: bool) -> None:
    """§10 Lengths: reply lines of 511/512/513 octets with max_status_size=512."""
    conn = client_tx(max_status_size=512)
    line = b"+OK " + b"t" * (size - 6) + b"\r\n"
    assert len(line) == size
    conn.send(Noop())
    conn.receive_data(line)
    if ok:
        assert conn.next_event() == Ok("t" * (size - 6))
    else:
        with pytest.raises(RemoteProtocolError):
            conn.next_event()


def test_lengths_reply_line_client_limit_holds_however_split() -> None:
    """§10 Lengths: the 513-octet verdict is reached at any split (h11 #182)."""
    line = b"+OK " + b"t" * 507 + b"\r\n"
    for i in range(len(line) + 1):
        conn = client_tx(max_status_size=512)
        conn.send(Noop())
        conn.receive_data(line[:i])
        try:
            ev = conn.next_event()
        except RemoteProtocolError:
            continue
        assert ev is NEED_DATA, i
        conn.receive_data(line[i:])
        with pytest.raises(RemoteProtocolError):
            conn.next_event()


@pytest.mark.parametrize(("size", "ok"), [(511, True), (512, True), (513, False)])
def test_lengths_reply_line_server(size: int, ok: bool) -> None:
    """§10 Lengths: the server refuses to send a status line over 512 octets (the default)."""
    srv = server_tx()
    first(srv, b"NOOP\r\n")
    text = "t" * (size - 6)
    if ok:
        assert len(srv.send(Ok(text))) == size
    else:
        with pytest.raises(LocalProtocolError):
            srv.send(Ok(text))


def test_lengths_capa_line_over_512() -> None:
    """§10 Lengths: a CAPA line over 512 octets.  The client tolerates it (listing limit,
    not line limit); a server cannot build one (RFC 2449 §5)."""
    long_line = "X-LONG " + " ".join(["param"] * 100)
    assert len(long_line) > 512
    conn = new_client(max_status_size=512)
    evs = ask(conn, Capa(), b"+OK\r\n" + long_line.encode() + b"\r\nTOP\r\n.\r\n")
    assert isinstance(evs[0], CapaOk), evs
    caps = evs[0].capabilities
    assert caps.get("X-LONG") == ("param",) * 100 and caps.top
    with pytest.raises(LocalProtocolError):
        Capabilities.build(("X-LONG", *(["param"] * 100)))


def test_lengths_100kb_data_line() -> None:
    """§10 Lengths: a 100 KB data line in a body streams through, in both roles, and is
    delivered before its line end arrives (no line limit on bodies, §3)."""
    line = bytes(range(33, 127)) * 1100  # ~103 KB, no CR/LF
    srv = server_tx()
    first(srv, b"RETR 1\r\n")
    wire = srv.send(MessageStart()) + srv.send(MessageData(line + b"\r\n")) + srv.send(MessageEnd())
    conn = client_tx(max_status_size=512)
    conn.send(Retr(1))
    streamed: list[object] = []
    for i in range(0, len(wire), 10_000):
        conn.receive_data(wire[i : i + 10_000])
        streamed += events(conn)
    assert body_of(streamed) == line + b"\r\n"
    # Data came out before the end: streaming, not buffering.
    assert sum(isinstance(e, MessageData) for e in streamed) > 5
    assert isinstance(streamed[-2], MessageEnd)


def test_lengths_10kb_sasl_challenge_and_response() -> None:
    """§10 Lengths: a 10 KB SASL challenge (and response): no line limit applies (RFC 5034 §4)."""
    blob = bytes(range(256)) * 40  # 10 KB
    pair = Pair()
    assert pair.command(Auth("X-BIG")) == [Auth("X-BIG"), PAUSED]
    assert pair.reply(SaslChallenge(blob)) == [SaslChallenge(blob), PAUSED]
    assert pair.command(SaslResponse(blob)) == [SaslResponse(blob), PAUSED]
    assert pair.reply(Ok()) == [Ok(), NEED_DATA]
    assert pair.client.state is pair.server.state is State.TRANSACTION


def test_lengths_sasl_line_limit_is_configurable() -> None:
    """§10 Lengths: the SASL limit is separate and configurable; past it is a peer error."""
    srv = new_server(max_sasl_size=64)
    first(srv, b"AUTH PLAIN\r\n")
    srv.send(SaslChallenge(b""))
    srv.receive_data(b"A" * 100 + b"\r\n")
    with pytest.raises(RemoteProtocolError):
        srv.next_event()
    conn = new_client(max_sasl_size=64)
    conn.send(Auth("PLAIN"))
    conn.receive_data(b"+ " + b"A" * 100 + b"\r\n")
    with pytest.raises(RemoteProtocolError):
        conn.next_event()


@pytest.mark.parametrize(("mech", "size"), [("XOAUTH2", 255), ("X-OAUTH2", 256)])
def test_lengths_auth_initial_response_past_255(mech: str, size: int) -> None:
    """§10 Lengths / §8: an AUTH whose initial response pushes it past 255 octets is a
    LocalProtocolError, and fits_initial_response says so beforehand."""
    ir = b"x" * 180  # 240 base64 characters
    assert len(b"AUTH " + mech.encode() + b" " + sasl_b64encode(ir) + b"\r\n") == size
    conn = new_client()
    if size <= 255:
        assert fits_initial_response(mech, ir)
        assert len(conn.send(Auth(mech, ir))) == 255
    else:
        assert not fits_initial_response(mech, ir)
        with pytest.raises(LocalProtocolError, match="initial response"):
            conn.send(Auth(mech, ir))
        # The fallback: no initial response, send it after the empty challenge.
        conn = new_client()
        assert conn.send(Auth(mech)) == b"AUTH X-OAUTH2\r\n"
        assert feed(conn, b"+ \r\n") == [SaslChallenge(b""), PAUSED]
        assert conn.send(SaslResponse(ir)) == sasl_b64encode(ir) + b"\r\n"


# ---------------------------------------------------------------------------
# §10 Status lines
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        (b"+OK", Ok()),
        (b"+OK ", Ok()),
        (b"+OK  two spaces", Ok(" two spaces")),
        (b"+OK[IN-USE]", Ok("", IN_USE)),
        (b"+OK [SYS/TEMP] fine", Ok("fine", SYS_TEMP)),
        (b"-ERR", Err()),
        (b"-ERR ", Err()),
        (b"-ERR [SYS/TEMP/FOO/BAR] x", Err("x", ResponseCode(("SYS", "TEMP", "FOO", "BAR")))),
        (b"-ERR [", Err("[")),
        (b"-ERR []", Err("[]")),
        (b"-ERR [IN-USE]no space", Err("no space", IN_USE)),
        (b"-ERR [XFOO] unknown code", Err("unknown code", ResponseCode(("XFOO",)))),
    ],
)
def test_status_lines_accepted(wire: bytes, expected: object) -> None:
    """§10 Status lines: bare ``+OK``, trailing space, glued and unknown codes (§4)."""
    conn = client_tx()
    assert ask(conn, Noop(), wire + b"\r\n") == [expected, NEED_DATA]
    assert conn.state is State.TRANSACTION


def test_status_line_unknown_lower_levels_are_ignored() -> None:
    """§10 Status lines / §4: ``[SYS/TEMP/FOO/BAR]`` means SYS/TEMP; ``[XFOO]`` means nothing."""
    conn = client_tx()
    ev = ask(conn, Noop(), b"-ERR [SYS/TEMP/FOO/BAR] x\r\n")[0]
    assert isinstance(ev, Err) and ev.code is not None, ev
    assert ev.code.known == "SYS/TEMP" and ev.code.matches(SYS_TEMP)
    ev = ask(conn, Noop(), b"-ERR [XFOO] x\r\n")[0]
    assert isinstance(ev, Err) and ev.code is not None, ev
    assert ev.code.known is None


@pytest.mark.parametrize(
    "wire", [b"+ok", b"+OKAY", b"+Ok fine", b"-err no", b"-ERROR", b"+YES", b"OK", b"* 1", b""]
)
def test_status_lines_refused(wire: bytes) -> None:
    """§10 Status lines: ``+ok``, ``+OKAY`` and unknown status words are RemoteProtocolError
    (status indicators MUST be upper case, §3)."""
    conn = client_tx()
    conn.send(Noop())
    conn.receive_data(wire + b"\r\n")
    with pytest.raises(RemoteProtocolError):
        conn.next_event()
    assert conn.state is State.ERROR


def test_status_codes_on_ok_round_trip() -> None:
    """§10 Status lines: codes on ``+OK`` (and on a body's ``+OK``) survive a round trip."""
    pair = Pair()
    pair.command(User("a"))
    assert pair.reply(Ok("hi", IN_USE)) == [Ok("hi", IN_USE), NEED_DATA]
    pair.command(Pass("b"))
    pair.reply(Ok())
    pair.command(Retr(1))
    evs = pair.reply(MessageStart("x", ResponseCode(("X-NOTE",))), MessageEnd())
    assert evs[0] == MessageStart("x", ResponseCode(("X-NOTE",)))


# ---------------------------------------------------------------------------
# §10 Greeting
# ---------------------------------------------------------------------------


def test_greeting_err_then_eof() -> None:
    """§10 Greeting: a ``-ERR`` greeting is an Err event, then CLOSED; EOF is ConnectionClosed."""
    conn = Connection(CLIENT)
    assert feed(conn, b"-ERR go away\r\n") == [Err("go away"), ConnectionClosed()]
    assert conn.state is State.CLOSED and conn.greeting is None
    conn.receive_data(b"")
    assert conn.next_event() == ConnectionClosed()
    with pytest.raises(LocalProtocolError):
        conn.send(User("a"))
    srv = Connection(SERVER)
    assert srv.send(Err("go away")) == b"-ERR go away\r\n"
    assert srv.state is State.CLOSED
    assert srv.next_event() == ConnectionClosed()


def test_greeting_err_keeps_its_response_code() -> None:
    """§10 Greeting / §4: ``-ERR [SYS/TEMP]`` as a greeting keeps its code like any -ERR."""
    pair_server = Connection(SERVER)
    wire = pair_server.send(Err("busy", SYS_TEMP))
    assert wire == b"-ERR [SYS/TEMP] busy\r\n"
    conn = Connection(CLIENT)
    assert feed(conn, wire)[0] == Err("busy", SYS_TEMP)


@pytest.mark.parametrize(
    ("text", "timestamp"),
    [
        ("POP3 ready " + TIMESTAMP, TIMESTAMP),
        ("POP3 ready", None),  # no <>
        ("ready <1@a> <2@b>", None),  # two of them
        ("ready <>", None),
        ("ready <a b@c>", None),
        ("ready <1@a", None),  # unclosed
    ],
)
def test_greeting_timestamps(text: str, timestamp: str | None) -> None:
    """§10 Greeting: no ``<…>``, two, ``<>``, ``<a b@c>``, unclosed ``<``: no timestamp,
    so APOP is unavailable on both sides (§3 REC)."""
    conn = new_client(b"+OK " + text.encode() + b"\r\n")
    assert conn.greeting == Greeting(text)
    assert conn.greeting.timestamp == timestamp
    srv = new_server(text)
    digest = "c4c9334bac560ecc979e58001b3e22fb"
    if timestamp is None:
        with pytest.raises(LocalProtocolError, match="APOP"):
            conn.send(Apop("mrose", digest))
        ev = first(srv, b"APOP mrose " + digest.encode() + b"\r\n")
        assert isinstance(ev, BadCommand) and ev.command == Apop("mrose", digest)
    else:
        assert conn.send(Apop("mrose", digest)) == b"APOP mrose " + digest.encode() + b"\r\n"
        assert first(srv, b"APOP mrose " + digest.encode() + b"\r\n") == Apop("mrose", digest)


def test_greeting_eof_before_greeting() -> None:
    """§10 Greeting: EOF before the greeting is a plain ConnectionClosed for the client;
    a partial greeting line at EOF is a RemoteProtocolError."""
    conn = Connection(CLIENT)
    assert eof(conn) == [ConnectionClosed()]
    assert conn.state is State.CLOSED
    conn = Connection(CLIENT)
    conn.receive_data(b"+OK hal")
    conn.receive_data(b"")
    with pytest.raises(RemoteProtocolError):
        conn.next_event()


def test_greeting_client_sends_before_greeting() -> None:
    """§10 Greeting: the client may not send first (LocalProtocolError); a server that
    receives a command before greeting keeps it until the greeting is sent (PAUSED)."""
    conn = Connection(CLIENT)
    with pytest.raises(LocalProtocolError):
        conn.send(Capa())
    srv = Connection(SERVER)
    assert feed(srv, b"CAPA\r\n") == [PAUSED]
    assert srv.next_event() is PAUSED
    with pytest.raises(LocalProtocolError):
        Connection(SERVER).send(Ok("not a greeting"))
    srv.send(Greeting("hi"))
    assert srv.next_event() == Capa()


def test_greeting_unsolicited_err_then_close() -> None:
    """§10 Greeting: ``-ERR Disconnected for inactivity.`` (Dovecot, WildDuck) with nothing
    outstanding: an Err event, CLOSED, then ConnectionClosed at EOF."""
    conn = client_tx()
    assert feed(conn, b"-ERR Disconnected for inactivity.\r\n") == [
        Err("Disconnected for inactivity."),
        ConnectionClosed(),
    ]
    assert conn.state is State.CLOSED
    conn.receive_data(b"")
    assert conn.next_event() == ConnectionClosed()
    srv = server_tx()
    assert srv.send(Err("Disconnected for inactivity.")) == (
        b"-ERR Disconnected for inactivity.\r\n"
    )
    assert srv.state is State.CLOSED


def test_greeting_unsolicited_ok_is_an_error() -> None:
    """§10 Greeting / real-world (FTGate answered +OK twice): an extra ``+OK`` with nothing
    outstanding is reported cleanly as a RemoteProtocolError."""
    conn = client_tx()
    conn.send(Noop())
    conn.receive_data(b"+OK\r\n+OK again\r\n")
    assert conn.next_event() == Ok()
    with pytest.raises(RemoteProtocolError):
        conn.next_event()


def test_eof_in_the_middle_of_a_body_or_listing() -> None:
    """§10 Greeting: EOF in the middle of a body (or listing, or a reply line) is a
    RemoteProtocolError for the client."""
    for cmd, wire in (
        (Retr(1), b"+OK\r\npartial\r\n"),
        (Retr(1), b"+OK\r\n"),
        (List(), b"+OK\r\n1 5\r\n"),
        (Noop(), b"+OK hal"),
        (Stat(), b""),
    ):
        conn = client_tx()
        ask(conn, cmd, wire)
        conn.receive_data(b"")
        with pytest.raises(RemoteProtocolError):
            events(conn)
        assert conn.state is State.ERROR


def test_eof_in_the_middle_of_a_sasl_exchange() -> None:
    """§10 Greeting: EOF in a SASL exchange.  Client: RemoteProtocolError (AUTH unanswered).
    Server: ConnectionClosed, never UPDATE."""
    conn = new_client()
    conn.send(Auth("PLAIN"))
    assert feed(conn, b"+ \r\n") == [SaslChallenge(b""), PAUSED]
    conn.send(SaslResponse(b"\0a\0b"))
    conn.receive_data(b"")
    with pytest.raises(RemoteProtocolError):
        conn.next_event()
    srv = new_server()
    first(srv, b"AUTH PLAIN\r\n")
    srv.send(SaslChallenge(b""))
    assert srv.state is State.SASL
    assert feed(srv, b"AAA") == [NEED_DATA]
    srv.receive_data(b"")
    assert events(srv) == [ConnectionClosed()]
    assert srv.state is State.CLOSED


# ---------------------------------------------------------------------------
# §10 Arguments
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        b"LIST 0",
        b"LIST -1",
        b"LIST +1",
        b"LIST 01",
        b"LIST 1 2",
        b"LIST 1x",
        b"LIST  1",
        b"LIST 1 ",
        b"LIST\t1",
        b"LIST 1\t",
        b"LIST 999999999999999999999",  # 21 digits
        b"LIST \xd9\xa1",  # ARABIC-INDIC DIGIT ONE
        b"LIST 1_0",
    ],
)
def test_arguments_bad_message_numbers(line: bytes) -> None:
    """§10 Arguments: ``LIST 0``, ``-1``, ``+1``, ``01``, ``1 2``, ``1x``, double space,
    trailing space, TAB: all BadCommand, state unchanged, next command runs."""
    srv = server_tx()
    ev = first(srv, line + b"\r\nSTAT\r\n")
    assert isinstance(ev, BadCommand) and ev.line == line
    srv.send(Err(ev.reason))
    assert srv.state is State.TRANSACTION
    assert first(srv, b"") == Stat()


def test_arguments_huge_message_number() -> None:
    """§10 Arguments: ``LIST 99999999999999999999`` must give -ERR, not a crash.  The engine
    hands the application the number (it alone knows the maildrop), which answers Err."""
    pair = Pair()
    pair.command(User("a"))
    pair.reply(Ok())
    pair.command(Pass("b"))
    pair.reply(Ok())
    evs = feed(pair.server, b"LIST 99999999999999999999\r\n")
    assert evs[0] == List(99999999999999999999)
    pair.client.send(List(99999999999999999999))
    assert pair.reply(Err("no such message")) == [Err("no such message"), NEED_DATA]


@pytest.mark.parametrize(
    ("line", "event"),
    [
        (b"list", List()),
        (b"LiSt 1", List(1)),
        (b"uidl", Uidl()),
        (b"retr 2", Retr(2)),
        (b"top 1 0", Top(1, 0)),
        (b"TOP 1 99999", Top(1, 99999)),
        (b"dele 1", Dele(1)),
        (b"Stat", Stat()),
    ],
)
def test_arguments_mixed_case_keywords(line: bytes, event: object) -> None:
    """§10 Arguments: keywords are case-insensitive (§3); ``TOP m 0`` and n larger than
    the body are the application's business."""
    assert first(server_tx(), line + b"\r\n") == event


@pytest.mark.parametrize(
    "line", [b"LISTS", b"", b" LIST", b"TOP 1", b"TOP 1 -1", b"TOP 1 x", b"TOP 1 0 0", b"RETR"]
)
def test_arguments_malformed_commands(line: bytes) -> None:
    """§10 Arguments: a 5-letter keyword, an empty line, ``TOP m`` and ``TOP m -1``."""
    assert isinstance(bad_server_line(line + b"\r\n"), BadCommand)


def test_arguments_client_cannot_build_bad_arguments() -> None:
    """§10 Arguments (client side): the same mistakes cannot even be expressed."""
    for make in (
        lambda: List(0),
        lambda: List(-1),
        lambda: Top(1, -1),
        lambda: Retr(0),
        lambda: Pass(""),
        lambda: User(""),
        lambda: User("a b"),
    ):
        with pytest.raises(LocalProtocolError):
            make()


@pytest.mark.parametrize(
    ("line", "password"),
    [(b"PASS a b", "a b"), (b"PASS  x", " x"), (b"PASS x ", "x "), (b"pass   ", "  ")],
)
def test_arguments_pass_keeps_spaces(line: bytes, password: str) -> None:
    """§10 Arguments: PASS takes the rest of the line, spaces (even leading ones) included
    (RFC 1939 §7); the client writes it back the same way."""
    srv = new_server()
    first(srv, b"USER mrose\r\n")
    srv.send(Ok())
    assert first(srv, line + b"\r\n") == Pass(password)
    conn = new_client()
    ask(conn, User("mrose"), b"+OK\r\n")
    assert conn.send(Pass(password)) == b"PASS " + password.encode() + b"\r\n"


@pytest.mark.parametrize("line", [b"PASS", b"PASS "])
def test_arguments_pass_without_argument(line: bytes) -> None:
    """§10 Arguments: PASS with no argument is a BadCommand.  Its -ERR counts as a failed
    PASS (§1 table: "-ERR → AUTH; USER_OK cleared"), as the client sees it too, so both
    sides stay in step."""
    srv = new_server()
    first(srv, b"USER mrose\r\n")
    srv.send(Ok())
    ev = first(srv, line + b"\r\n")
    assert isinstance(ev, BadCommand) and ev.command is None
    srv.send(Err())
    assert srv.state is State.AUTHORIZATION


@pytest.mark.parametrize(
    ("line", "after"),
    [
        ("PASS pässword".encode(), State.AUTHORIZATION),  # malformed PASS: fails as a PASS
        (b"APOP mrose xyz", State.AUTHORIZATION),  # malformed APOP (lenient USER_OK)
        (b"CAPA x", State.USER_OK),  # malformed CAPA: nothing to undo
    ],
)
def test_arguments_malformed_auth_command_in_user_ok(line: bytes, after: State) -> None:
    """§10 Arguments / §1: a malformed USER/PASS/APOP/AUTH fails as that command would
    (the client cannot tell "malformed" from "refused"), so both sides agree."""
    srv = new_server(strict_user=False)
    first(srv, b"USER mrose\r\n")
    srv.send(Ok())
    ev = first(srv, line + b"\r\n")
    assert isinstance(ev, BadCommand) and ev.command is None
    srv.send(Err())
    assert srv.state is after


@pytest.mark.parametrize("line", [b"USER", b"USER ", b"USER a b"])
def test_arguments_user_without_argument(line: bytes) -> None:
    """§10 Arguments: USER with no argument (one server answered +OK) is a BadCommand."""
    ev = bad_server_line(line + b"\r\n", "AUTHORIZATION")
    assert ev.command is None


# ---------------------------------------------------------------------------
# §10 State
# ---------------------------------------------------------------------------

# The checklist's §1 table, written out independently of pop3proto._state.
ALL_LINES: dict[str, tuple[bytes, object]] = {
    "USER": (b"USER mrose", User("mrose")),
    "PASS": (b"PASS secret", Pass("secret")),
    "APOP": (b"APOP mrose c4c9334bac560ecc979e58001b3e22fb", None),
    "AUTH": (b"AUTH PLAIN", Auth("PLAIN")),
    "STAT": (b"STAT", Stat()),
    "LIST": (b"LIST", List()),
    "LIST n": (b"LIST 1", List(1)),
    "RETR": (b"RETR 1", Retr(1)),
    "DELE": (b"DELE 1", Dele(1)),
    "NOOP": (b"NOOP", Noop()),
    "RSET": (b"RSET", Rset()),
    "QUIT": (b"QUIT", Quit()),
    "TOP": (b"TOP 1 0", Top(1, 0)),
    "UIDL": (b"UIDL", Uidl()),
    "UIDL n": (b"UIDL 1", Uidl(1)),
    "CAPA": (b"CAPA", Capa()),
    "STLS": (b"STLS", Stls()),
    "UTF8": (b"UTF8", Utf8()),
    "LANG": (b"LANG", Lang()),
    "LANG x": (b"LANG en", Lang("en")),
}
LEGAL = {
    "AUTHORIZATION": {"USER", "APOP", "AUTH", "STLS", "CAPA", "UTF8", "LANG", "LANG x", "QUIT"},
    "USER_OK": {"PASS", "QUIT"},
    "TRANSACTION": {
        "STAT",
        "LIST",
        "LIST n",
        "RETR",
        "DELE",
        "NOOP",
        "RSET",
        "TOP",
        "UIDL",
        "UIDL n",
        "CAPA",
        "LANG",
        "LANG x",
        "QUIT",
    },
}


def server_in(state: str) -> Connection:
    if state == "TRANSACTION":
        return server_tx()
    srv = new_server()
    if state == "USER_OK":
        first(srv, b"USER mrose\r\n")
        srv.send(Ok())
    assert srv.state.name == state
    return srv


@pytest.mark.parametrize("state", sorted(LEGAL))
@pytest.mark.parametrize("name", sorted(ALL_LINES))
def test_state_every_command_in_every_state(state: str, name: str) -> None:
    """§10 State: every command in every state.  Illegal ones give a BadCommand carrying the
    parsed command; -ERR to it changes no state (RFC 1939 §3), except that a refused
    USER/APOP/AUTH after a successful USER clears it, as the client's own table does
    (RFC 1939 §7; the engine keeps both sides in step); the session carries on."""
    line, cmd = ALL_LINES[name]
    if cmd is None:
        cmd = Apop("mrose", "c4c9334bac560ecc979e58001b3e22fb")
    srv = server_in(state)
    ev = first(srv, line + b"\r\n")
    if name in LEGAL[state]:
        assert ev == cmd
        assert srv.outstanding == (cmd,)
    else:
        assert isinstance(ev, BadCommand)
        assert ev.command == cmd and ev.line == line
        # A BadCommand may only be answered with Err.
        other = server_in(state)
        first(other, line + b"\r\n")
        with pytest.raises(LocalProtocolError):
            other.send(Ok())
        srv.send(Err(ev.reason))
        clears_user = state == "USER_OK" and name in ("USER", "APOP", "AUTH")
        assert srv.state.name == ("AUTHORIZATION" if clears_user else state)
        assert srv.outstanding == ()
        assert first(srv, b"QUIT\r\n") == Quit()


@pytest.mark.parametrize("cmd", [Noop(), Stat(), Rset()])
def test_state_transaction_commands_in_authorization(cmd: Command) -> None:
    """§10 State: NOOP, STAT or RSET in AUTHORIZATION: BadCommand (server),
    LocalProtocolError (client)."""
    conn = new_client()
    with pytest.raises(LocalProtocolError, match="AUTHORIZATION"):
        conn.send(cmd)
    ev = first(new_server(), cmd.keyword.encode() + b"\r\n")
    assert isinstance(ev, BadCommand) and ev.command == cmd


def test_state_pass_without_user() -> None:
    """§10 State: PASS without USER."""
    with pytest.raises(LocalProtocolError):
        new_client().send(Pass("x"))
    ev = bad_server_line(b"PASS x\r\n", "AUTHORIZATION")
    assert ev.command == Pass("x")


def test_state_pass_after_failed_pass() -> None:
    """§10 State / §1: a failed PASS clears USER_OK, so another PASS is refused."""
    pair = Pair()
    pair.command(User("a"))
    pair.reply(Ok())
    pair.command(Pass("wrong"))
    assert pair.reply(Err("[AUTH] no")) == [Err("no", ResponseCode(("AUTH",))), NEED_DATA]
    assert pair.client.state is pair.server.state is State.AUTHORIZATION
    ev = first(pair.server, b"PASS again\r\n")
    assert isinstance(ev, BadCommand)


def test_state_user_user_strict() -> None:
    """§10 State: USER→USER is refused in strict mode (the default).  The refusal
    clears the first USER, as -ERR to USER does in the client's table (RFC 1939 §7), so
    a lenient client and a strict server stay in step: PASS is now out of place and a
    new USER starts over."""
    srv = server_in("USER_OK")
    ev = first(srv, b"USER other\r\n")
    assert isinstance(ev, BadCommand) and ev.command == User("other")
    srv.send(Err())
    assert srv.state is State.AUTHORIZATION
    assert isinstance(first(srv, b"PASS secret\r\n"), BadCommand)
    srv.send(Err())
    assert first(srv, b"USER other\r\n") == User("other")
    conn = new_client()
    ask(conn, User("a"), b"+OK\r\n")
    with pytest.raises(LocalProtocolError):
        conn.send(User("b"))


def test_state_user_user_lenient() -> None:
    """§10 State: with strict_user=False a second USER replaces the name (§1 REC)."""
    pair = Pair(client={"strict_user": False}, server={"strict_user": False})
    pair.command(User("a"))
    pair.reply(Ok())
    assert pair.command(User("b"))[0] == User("b")
    pair.reply(Ok())
    assert pair.client.state is pair.server.state is State.USER_OK
    pair.command(User("c"))
    pair.reply(Err())
    assert pair.client.state is pair.server.state is State.AUTHORIZATION


@pytest.mark.parametrize("strict", [True, False])
def test_state_user_capa_pass(strict: bool) -> None:
    """§10 State: USER→CAPA→PASS.  Strict: CAPA is refused but USER_OK survives, so PASS
    still works.  Lenient: CAPA is answered and PASS works."""
    pair = Pair(client={"strict_user": strict}, server={"strict_user": strict})
    pair.command(User("a"))
    pair.reply(Ok())
    if strict:
        lone = new_client()
        ask(lone, User("a"), b"+OK\r\n")
        with pytest.raises(LocalProtocolError):
            lone.send(Capa())
        ev = first(pair.server, b"CAPA\r\n")
        assert isinstance(ev, BadCommand)
        pair.server.send(Err())
    else:
        assert pair.command(Capa())[0] == Capa()
        assert isinstance(pair.reply(CapaOk(Capabilities.build("USER")))[0], CapaOk)
    assert pair.server.state is State.USER_OK
    assert pair.command(Pass("b"))[0] == Pass("b")
    pair.reply(Ok())
    assert pair.client.state is pair.server.state is State.TRANSACTION


def test_state_apop_without_timestamp() -> None:
    """§10 State: APOP when the greeting had no timestamp: client LocalProtocolError,
    server BadCommand."""
    digest = "c4c9334bac560ecc979e58001b3e22fb"
    with pytest.raises(LocalProtocolError):
        new_client(b"+OK ready\r\n").send(Apop("mrose", digest))
    ev = first(new_server("ready"), b"APOP mrose " + digest.encode() + b"\r\n")
    assert isinstance(ev, BadCommand) and "APOP" in ev.reason


def test_state_second_auth_after_success() -> None:
    """§10 State: a second AUTH after a successful one (RFC 5034 §4)."""
    pair = Pair()
    pair.command(Auth("PLAIN", b"\0a\0b"))
    pair.reply(Ok())
    assert pair.client.state is State.TRANSACTION
    with pytest.raises(LocalProtocolError):
        pair.client.send(Auth("PLAIN", b"\0a\0b"))
    ev = first(pair.server, b"AUTH PLAIN AGEAYg==\r\n")
    assert isinstance(ev, BadCommand) and ev.command == Auth("PLAIN", b"\0a\0b")


def test_state_stls_in_transaction() -> None:
    """§10 State: STLS in TRANSACTION (RFC 2595 §4: AUTHORIZATION only)."""
    with pytest.raises(LocalProtocolError):
        client_tx().send(Stls())
    ev = bad_server_line(b"STLS\r\n")
    assert ev.command == Stls()


def test_state_stls_twice() -> None:
    """§10 State: STLS a second time, after TLS is up: refused on both sides."""
    pair = Pair()
    pair.command(Stls())
    pair.reply(Ok("Begin TLS"))
    pair.client.tls_established()
    pair.server.tls_established()
    assert pair.client.tls and pair.server.tls
    with pytest.raises(LocalProtocolError, match="TLS"):
        pair.client.send(Stls())
    ev = first(pair.server, b"STLS\r\n")
    assert isinstance(ev, BadCommand) and "TLS" in ev.reason


def test_state_stls_after_utf8() -> None:
    """§10 State: STLS after UTF8 (RFC 6856 §2.1)."""
    pair = Pair()
    pair.command(Utf8())
    pair.reply(Ok())
    assert pair.client.utf8 and pair.server.utf8
    with pytest.raises(LocalProtocolError, match="UTF8"):
        pair.client.send(Stls())
    ev = first(pair.server, b"STLS\r\n")
    assert isinstance(ev, BadCommand) and "UTF8" in ev.reason


def test_state_stls_over_implicit_tls() -> None:
    """§10 State: STLS over implicit TLS (tls=True, port 995)."""
    conn = new_client(tls=True)
    assert conn.tls
    with pytest.raises(LocalProtocolError):
        conn.send(Stls())
    ev = first(new_server(tls=True), b"STLS\r\n")
    assert isinstance(ev, BadCommand) and ev.command == Stls()


def test_state_utf8_in_transaction() -> None:
    """§10 State: UTF8 in TRANSACTION (RFC 6856 §2: AUTHORIZATION only)."""
    with pytest.raises(LocalProtocolError):
        client_tx().send(Utf8())
    assert bad_server_line(b"UTF8\r\n").command == Utf8()


def test_state_quit_in_authorization_vs_transaction() -> None:
    """§10 State: QUIT in AUTHORIZATION closes without UPDATE; in TRANSACTION it enters
    UPDATE first (RFC 1939 §6)."""
    pair = Pair()
    assert pair.command(Quit())[0] == Quit()
    assert pair.server.state is State.AUTHORIZATION
    pair.reply(Ok("bye"))
    assert pair.client.state is pair.server.state is State.CLOSED
    pair = Pair()
    pair.command(User("a"))
    pair.reply(Ok())
    pair.command(Pass("b"))
    pair.reply(Ok())
    pair.command(Quit())
    assert pair.server.state is State.UPDATE
    assert pair.client.state is State.UPDATE
    pair.reply(Ok("bye"))
    assert pair.client.state is pair.server.state is State.CLOSED


# ---------------------------------------------------------------------------
# §10 Deletion (the parts the engine owns)
# ---------------------------------------------------------------------------


def test_deletion_dele_replies() -> None:
    """§10 Deletion: DELE is a one-line reply; a second DELE's -ERR is an ordinary Err."""
    pair = Pair()
    pair.command(User("a"))
    pair.reply(Ok())
    pair.command(Pass("b"))
    pair.reply(Ok())
    assert pair.command(Dele(1))[0] == Dele(1)
    assert pair.reply(Ok("message 1 deleted")) == [Ok("message 1 deleted"), NEED_DATA]
    pair.command(Dele(1))
    assert pair.reply(Err("message 1 already deleted"))[0] == Err("message 1 already deleted")
    assert pair.client.state is pair.server.state is State.TRANSACTION


@pytest.mark.parametrize("cmd", [Retr(1), Top(1, 0), List(1), Uidl(1), Dele(1)])
def test_deletion_commands_on_a_deleted_message(cmd: Event) -> None:
    """§10 Deletion: RETR, TOP, LIST n, UIDL n (and DELE) on a deleted message get -ERR;
    a -ERR to RETR/TOP has no body, so the next reply is framed correctly."""
    pair = Pair()
    pair.command(User("a"))
    pair.reply(Ok())
    pair.command(Pass("b"))
    pair.reply(Ok())
    pair.command(Dele(1))
    pair.reply(Ok())
    pair.command(cmd)
    assert pair.reply(Err("message 1 already deleted")) == [
        Err("message 1 already deleted"),
        NEED_DATA,
    ]
    pair.command(Noop())
    assert pair.reply(Ok()) == [Ok(), NEED_DATA]


def test_deletion_listings_are_not_renumbered() -> None:
    """§10 Deletion: STAT after DELE drops the count; LIST and UIDL skip the deleted
    number without renumbering (§2); RSET is a plain +OK."""
    pair = Pair()
    pair.command(User("a"))
    pair.reply(Ok())
    pair.command(Pass("b"))
    pair.reply(Ok())
    pair.command(Dele(1))
    pair.reply(Ok())
    pair.command(Stat())
    assert pair.reply(StatOk(1, 200))[0] == StatOk(1, 200)
    pair.command(List())
    assert pair.reply(ListOk({2: 200}))[0] == ListOk({2: 200})
    pair.command(Uidl())
    assert pair.reply(UidlOk({2: "QhdPYR:00WBw1Ph7x7"}))[0] == UidlOk({2: "QhdPYR:00WBw1Ph7x7"})
    pair.command(Rset())
    assert pair.reply(Ok("maildrop has 2 messages"))[0] == Ok("maildrop has 2 messages")


def test_deletion_err_to_quit() -> None:
    """§10 Deletion: ``-ERR`` to QUIT (some deleted messages not removed) still closes."""
    pair = Pair()
    pair.command(User("a"))
    pair.reply(Ok())
    pair.command(Pass("b"))
    pair.reply(Ok())
    pair.command(Quit())
    evs = pair.reply(Err("some deleted messages not removed"))
    assert evs == [Err("some deleted messages not removed"), ConnectionClosed()]
    assert pair.client.state is pair.server.state is State.CLOSED


def test_deletion_eof_after_quit_from_transaction() -> None:
    """§10 Deletion / §2: QUIT sent from TRANSACTION, then EOF before any reply: the
    outcome is unknown.  From AUTHORIZATION nothing could have been deleted."""
    conn = client_tx()
    conn.send(Quit())
    assert eof(conn) == [ConnectionClosed(outcome_unknown=True)]
    conn = new_client()
    conn.send(Quit())
    assert eof(conn) == [ConnectionClosed(outcome_unknown=False)]


def test_deletion_dropped_connection_never_enters_update() -> None:
    """§10 Deletion: a dropped connection deletes nothing: the server goes from
    TRANSACTION straight to CLOSED, never UPDATE (RFC 1939 §6)."""
    srv = server_tx()
    first(srv, b"DELE 1\r\n")
    srv.send(Ok())
    assert eof(srv) == [ConnectionClosed()]
    assert srv.state is State.CLOSED


# ---------------------------------------------------------------------------
# §10 UIDL
# ---------------------------------------------------------------------------


def test_uidl_70_and_71_characters_server() -> None:
    """§10 UIDL: a 70-character uid is sent; 71 is refused (RFC 1939 §7: 1-70 characters)."""
    srv = server_tx()
    first(srv, b"UIDL 1\r\n")
    assert srv.send(UidlEntryOk(1, "u" * 70)) == b"+OK 1 " + b"u" * 70 + b"\r\n"
    with pytest.raises(LocalProtocolError):
        UidlEntryOk(1, "u" * 71)
    with pytest.raises(LocalProtocolError):
        UidlOk({1: "u" * 71})


def test_uidl_70_and_71_characters_client() -> None:
    """§10 UIDL: the client tolerates a 71-character uid (documented: received uids are any
    printable ASCII token), in the one-line and the listing form, without crashing."""
    conn = client_tx()
    for n in (70, 71):
        uid = "u" * n
        ev = ask(conn, Uidl(1), b"+OK 1 " + uid.encode() + b"\r\n")[0]
        assert isinstance(ev, UidlEntryOk) and (ev.number, ev.uid) == (1, uid)
        got = ask(conn, Uidl(), b"+OK\r\n1 " + uid.encode() + b"\r\n.\r\n")[0]
        assert isinstance(got, UidlOk) and got.uids == {1: uid}
    assert conn.state is State.TRANSACTION


def test_uidl_uid_with_space_is_uid_plus_trailing_text() -> None:
    """§10 UIDL: a uid with SP cannot be told from trailing text; trailing text is ignored."""
    conn = client_tx()
    assert ask(conn, Uidl(1), b"+OK 1 abc def\r\n")[0] == UidlEntryOk(1, "abc")
    ev = ask(conn, Uidl(), b"+OK\r\n1 abc def\r\n2 xyz\r\n.\r\n")[0]
    assert ev == UidlOk({1: "abc", 2: "xyz"})


@pytest.mark.parametrize(
    "wire", [b"+OK 1 ab\x7fc\r\n", b"+OK 1 ab\xe9c\r\n", b"+OK 1\r\n", b"+OK 0 abc\r\n"]
)
def test_uidl_bad_entry(wire: bytes) -> None:
    """§10 UIDL: a uid containing 0x7F (or 8-bit, or none, or message 0) is refused cleanly."""
    conn = client_tx()
    conn.send(Uidl(1))
    conn.receive_data(wire)
    with pytest.raises(RemoteProtocolError):
        conn.next_event()


@pytest.mark.parametrize(
    "listing", [b"1 ab\x7fc\r\n", b"1 ab\xe9c\r\n", b"1 a\r\n1 b\r\n", b"0 a\r\n", b"1\r\n"]
)
def test_uidl_bad_listing(listing: bytes) -> None:
    """§10 UIDL: 0x7F, 8-bit, duplicate message numbers, number 0, missing uid."""
    conn = client_tx()
    conn.send(Uidl())
    conn.receive_data(b"+OK\r\n" + listing + b".\r\n")
    with pytest.raises(RemoteProtocolError):
        conn.next_event()


@pytest.mark.parametrize("listing", [b"1 a\rb\r\n", b"1 a\r\r\n"])
def test_uidl_uid_with_bare_cr_is_refused(listing: bytes) -> None:
    """§10 UIDL (and Framing: bare CR, ``\\r\\r\\n``): a uid is 0x21-0x7E (RFC 1939 §7);
    one containing CR must be refused, as it is when another line has trailing text."""
    conn = client_tx()
    conn.send(Uidl())
    conn.receive_data(b"+OK\r\n" + listing + b".\r\n")
    with pytest.raises(RemoteProtocolError):
        conn.next_event()


def test_uidl_duplicate_uids_are_allowed() -> None:
    """§10 UIDL: identical messages may share a uid (RFC 1939 §7); both directions."""
    pair = Pair()
    pair.command(User("a"))
    pair.reply(Ok())
    pair.command(Pass("b"))
    pair.reply(Ok())
    pair.command(Uidl())
    assert pair.reply(UidlOk({1: "same", 2: "same"}))[0] == UidlOk({1: "same", 2: "same"})


# ---------------------------------------------------------------------------
# §10 Pipelining and STLS
# ---------------------------------------------------------------------------


def pipelining_client() -> Connection:
    conn = new_client()
    ask(conn, Capa(), b"+OK\r\nPIPELINING\r\nUSER\r\n.\r\n")
    assert conn.capabilities is not None and conn.capabilities.pipelining
    return conn


def test_pipelining_user_failing_mid_batch() -> None:
    """§10 Pipelining: USER fails mid-batch; PASS and STAT still get their own replies, in
    AUTHORIZATION (RFC 2449 §6.6: state follows replies)."""
    conn = pipelining_client()
    wire = b"".join(conn.send(c) for c in (User("nobody"), Pass("x"), Stat()))
    assert wire == b"USER nobody\r\nPASS x\r\nSTAT\r\n"
    assert len(conn.outstanding) == 3
    evs = feed(conn, b"-ERR no such user\r\n-ERR no USER\r\n-ERR not in TRANSACTION\r\n")
    assert evs == [Err("no such user"), Err("no USER"), Err("not in TRANSACTION"), NEED_DATA]
    assert conn.state is State.AUTHORIZATION and conn.outstanding == ()
    # The server side of the same batch, arriving in one segment.
    srv = new_server()
    srv.receive_data(wire)
    ev = srv.next_event()
    assert ev == User("nobody") and srv.next_event() is PAUSED
    srv.send(Err("no such user"))
    ev = srv.next_event()
    assert isinstance(ev, BadCommand) and ev.command == Pass("x")
    srv.send(Err())
    assert isinstance(srv.next_event(), BadCommand)
    srv.send(Err())
    assert srv.state is State.AUTHORIZATION


def test_pipelining_replies_split_across_chunks() -> None:
    """§10 Pipelining: replies split across chunks anywhere still match their commands."""
    wire = b"+OK\r\n+OK\r\n+OK 2 320\r\n+OK\r\n1 120\r\n2 200\r\n.\r\n+OK 120 octets\r\nhi\r\n.\r\n"
    expected = None
    for i in range(len(wire) + 1):
        conn = pipelining_client()
        for cmd in (User("a"), Pass("b"), Stat(), List(), Retr(1)):
            conn.send(cmd)
        evs = merged(feed(conn, wire[:i]) + feed(conn, wire[i:]))
        if expected is None:
            expected = evs
            assert evs[2:4] == [StatOk(2, 320), ListOk({1: 120, 2: 200})]
        assert evs == expected, i


def test_pipelining_commands_after_quit_refused() -> None:
    """§10 Pipelining: QUIT must be last; after QUIT's reply the session is over."""
    conn = pipelining_client()
    conn.send(Quit())
    with pytest.raises(LocalProtocolError, match="QUIT"):
        conn.send(Noop())
    conn = pipelining_client()
    ask(conn, Quit(), b"+OK bye\r\n")
    assert conn.state is State.CLOSED
    with pytest.raises(LocalProtocolError):
        conn.send(Capa())


def test_pipelining_stls_and_auth_end_a_batch() -> None:
    """§10 Pipelining / §6: STLS and AUTH must end a batch."""
    for last in (Stls(), Auth("PLAIN")):
        conn = pipelining_client()
        conn.send(last)
        with pytest.raises(LocalProtocolError, match="batch"):
            conn.send(Capa())


def test_stls_injection_server() -> None:
    """§10 Pipelining and STLS: ``STLS\\r\\nUSER x\\r\\n`` in one segment is a
    RemoteProtocolError, and USER is never emitted (CVE-2011-0411 class, §7)."""
    srv = new_server()
    srv.receive_data(b"STLS\r\nUSER x\r\n")
    with pytest.raises(RemoteProtocolError):
        srv.next_event()
    assert srv.state is State.ERROR
    with pytest.raises(RemoteProtocolError):
        srv.next_event()


def test_stls_injection_server_after_ok() -> None:
    """§10 Pipelining and STLS: plaintext arriving after the ``+OK`` and before the
    handshake is refused, by next_event and by tls_established."""
    srv = new_server()
    assert first(srv, b"STLS\r\n") == Stls()
    srv.send(Ok("Begin TLS negotiation"))
    assert srv.state is State.TLS_PENDING and srv.next_event() is PAUSED
    srv.receive_data(b"USER x\r\n")
    with pytest.raises(RemoteProtocolError):
        srv.next_event()
    srv = new_server()
    first(srv, b"STLS\r\n")
    srv.send(Ok())
    srv.receive_data(b"U")
    with pytest.raises(RemoteProtocolError):
        srv.tls_established()
    assert srv.state is State.ERROR


def test_stls_response_injection_client() -> None:
    """§10 Pipelining and STLS: ``+OK\\r\\n+OK forged\\r\\n`` after STLS: the client aborts."""
    conn = new_client()
    conn.send(Stls())
    conn.receive_data(b"+OK\r\n+OK forged\r\n")
    with pytest.raises(RemoteProtocolError):
        conn.next_event()
    assert conn.state is State.ERROR
    # The forged line may also arrive in a later segment.
    conn = new_client()
    assert ask(conn, Stls(), b"+OK Begin TLS\r\n") == [Ok("Begin TLS"), PAUSED]
    conn.receive_data(b"+OK forged\r\n")
    with pytest.raises(RemoteProtocolError):
        conn.next_event()
    conn = new_client()
    ask(conn, Stls(), b"+OK Begin TLS\r\n")
    conn.receive_data(b"+")
    with pytest.raises(RemoteProtocolError):
        conn.tls_established()


# ---------------------------------------------------------------------------
# §10 SASL
# ---------------------------------------------------------------------------


def sasl_server(line: bytes = b"AUTH PLAIN\r\n") -> Connection:
    srv = new_server()
    assert isinstance(first(srv, line), Auth)
    srv.send(SaslChallenge(b""))
    return srv


@pytest.mark.parametrize("reply", [Ok(), SaslChallenge(b"more"), MessageStart()])
def test_sasl_cancel_must_be_answered_with_err(reply: Event) -> None:
    """§10 SASL: ``*`` cancels; the server MUST answer -ERR and nothing else."""
    srv = sasl_server()
    assert first(srv, b"*\r\n") == SaslCancel()
    with pytest.raises(LocalProtocolError):
        srv.send(reply)


def test_sasl_cancel_round_trip() -> None:
    """§10 SASL: ``*`` then ``-ERR``: both sides back in AUTHORIZATION, as if AUTH never
    happened (RFC 5034 §4)."""
    pair = Pair()
    pair.command(Auth("CRAM-MD5"))
    assert pair.reply(SaslChallenge(b"<1.2@host>")) == [SaslChallenge(b"<1.2@host>"), PAUSED]
    assert pair.client.send(SaslCancel()) == b"*\r\n"
    assert feed(pair.server, b"*\r\n") == [SaslCancel(), PAUSED]
    assert pair.reply(Err("cancelled")) == [Err("cancelled"), NEED_DATA]
    assert pair.client.state is pair.server.state is State.AUTHORIZATION
    assert pair.command(Capa())[0] == Capa()


def test_sasl_equals_initial_vs_later_response() -> None:
    """§10 SASL: ``=`` is an empty *initial* response; later it is invalid base64."""
    conn = new_client()
    assert conn.send(Auth("PLAIN", b"")) == b"AUTH PLAIN =\r\n"
    assert first(new_server(), b"AUTH PLAIN =\r\n") == Auth("PLAIN", b"")
    srv = sasl_server()
    ev = first(srv, b"=\r\n")
    assert isinstance(ev, BadCommand) and ev.line == b"="
    with pytest.raises(LocalProtocolError):
        srv.send(SaslChallenge(b""))
    srv = sasl_server()
    first(srv, b"=\r\n")
    srv.send(Err("invalid base64"))
    assert srv.state is State.AUTHORIZATION
    # The empty *later* response is an empty line.
    srv = sasl_server()
    assert first(srv, b"\r\n") == SaslResponse(b"")


@pytest.mark.parametrize("line", [b"=AAA", b"AAA=BBBB", b"AA AA", b"AAA", b"AB==\x00"])
def test_sasl_bad_base64_response(line: bytes) -> None:
    """§10 SASL: bad base64 (``=AAA``, inner space, ...) in a response: BadCommand, Err only."""
    srv = sasl_server()
    ev = first(srv, line + b"\r\n")
    assert isinstance(ev, BadCommand)
    srv.send(Err())
    assert srv.state is State.AUTHORIZATION


@pytest.mark.parametrize("line", [b"AUTH PLAIN =AAA", b"AUTH PLAIN AAA=BBBB", b"AUTH PLAIN AA AA"])
def test_sasl_bad_base64_initial_response(line: bytes) -> None:
    """§10 SASL: bad base64 (or an inner space) in the initial response: BadCommand."""
    ev = bad_server_line(line + b"\r\n", "AUTHORIZATION")
    assert ev.line == line


def test_sasl_bad_base64_challenge_lets_the_client_cancel() -> None:
    """§10 SASL / §8 / RFC 5034 §4: "If the client cannot Base64 decode any of the server's
    challenges, it MUST cancel the authentication using the '*' response"."""
    conn = new_client()
    conn.send(Auth("PLAIN"))
    conn.receive_data(b"+ =AAA\r\n")
    ev = conn.next_event()  # must not raise
    assert ev == SaslChallenge(b"=AAA", malformed=True)
    assert conn.next_event() is PAUSED
    other = new_client()
    other.send(Auth("PLAIN"))
    feed(other, b"+ =AAA\r\n")
    with pytest.raises(LocalProtocolError, match="SaslCancel"):
        other.send(SaslResponse(b"x"))
    assert conn.send(SaslCancel()) == b"*\r\n"
    assert feed(conn, b"-ERR cancelled\r\n")[0] == Err("cancelled")
    assert conn.state is State.AUTHORIZATION


def test_sasl_plus_without_space() -> None:
    """§10 SASL: a bare ``+`` is tolerated as an empty challenge (§8 lenient option);
    ``+x`` is malformed."""
    conn = new_client()
    assert ask(conn, Auth("PLAIN"), b"+\r\n") == [SaslChallenge(b""), PAUSED]
    conn = new_client()
    conn.send(Auth("PLAIN"))
    conn.receive_data(b"+AAAA\r\n")
    with pytest.raises(RemoteProtocolError):
        conn.next_event()


def test_sasl_ok_with_data() -> None:
    """§10 SASL: ``+OK`` may carry no SASL data (RFC 5034 §4); the engine treats any text
    as ordinary status text and enters TRANSACTION."""
    conn = new_client()
    evs = ask(conn, Auth("PLAIN", b"\0a\0b"), b"+OK dGVzdA==\r\n")
    assert evs == [Ok("dGVzdA=="), NEED_DATA]
    assert conn.state is State.TRANSACTION


def test_sasl_initial_response_for_a_server_first_mechanism() -> None:
    """§10 SASL: an initial response for a server-first mechanism: the engine hands it to
    the application, which answers -ERR (RFC 5034 §4)."""
    pair = Pair()
    assert pair.command(Auth("CRAM-MD5", b"x"))[0] == Auth("CRAM-MD5", b"x")
    assert pair.server.state is State.SASL
    assert pair.reply(Err("no initial response allowed"))[0] == Err("no initial response allowed")
    assert pair.client.state is pair.server.state is State.AUTHORIZATION


@pytest.mark.parametrize("state", ["AUTHORIZATION", "TRANSACTION"])
def test_sasl_plus_line_outside_auth(state: str) -> None:
    """§10 SASL: a ``+ `` line outside AUTH is a RemoteProtocolError."""
    conn = new_client() if state == "AUTHORIZATION" else client_tx()
    conn.send(Capa())
    conn.receive_data(b"+ AAAA\r\n")
    with pytest.raises(RemoteProtocolError):
        conn.next_event()


def test_sasl_server_cannot_challenge_outside_auth() -> None:
    """§10 SASL (server side of the same rule): a SaslChallenge answers only AUTH."""
    srv = server_tx()
    first(srv, b"NOOP\r\n")
    with pytest.raises(LocalProtocolError):
        srv.send(SaslChallenge(b""))


# ---------------------------------------------------------------------------
# §10 Invariants: client and server agree after every reply (fuzzed)
# ---------------------------------------------------------------------------

DIGEST = "c4c9334bac560ecc979e58001b3e22fb"
CHOICES = {
    State.AUTHORIZATION: [
        User("mrose"),
        Apop("mrose", DIGEST),
        Auth("PLAIN", b"\0a\0b"),
        Stls(),
        Capa(),
        Utf8(),
        Lang(),
        Lang("en"),
        Quit(),
    ],
    State.USER_OK: [Pass("secret"), Quit()],
    State.TRANSACTION: [
        Stat(),
        List(),
        List(1),
        Retr(1),
        Dele(1),
        Noop(),
        Rset(),
        Top(1, 0),
        Uidl(),
        Uidl(1),
        Capa(),
        Lang(),
        Lang("*"),
        Quit(),
    ],
}


def positive(cmd: Event) -> list[Event]:
    if isinstance(cmd, Stat):
        return [StatOk(1, 12)]
    if isinstance(cmd, List):
        return [ListOk({1: 12})] if cmd.number is None else [ListEntryOk(1, 12)]
    if isinstance(cmd, Uidl):
        return [UidlOk({1: "u1"})] if cmd.number is None else [UidlEntryOk(1, "u1")]
    if isinstance(cmd, (Retr, Top)):
        return [MessageStart("12 octets"), MessageData(b".a\r\n..\r\nb"), MessageEnd()]
    if isinstance(cmd, Capa):
        return [CapaOk(Capabilities.build("TOP", ("SASL", "PLAIN")))]
    if isinstance(cmd, Lang) and cmd.language is None:
        return [LangOk((("en", "English"), ("de", "")))]
    return [Ok("done")]


def test_invariant_client_and_server_agree_fuzzed() -> None:
    """§10 Invariants: fuzzing a client against a server, both views of the state agree
    after every reply, and every event sent is the event received."""
    for seed in range(150):
        rng = random.Random(seed)
        pair = Pair()
        for _ in range(25):
            state = pair.client.state
            if state is State.CLOSED:
                break
            options = [
                c
                for c in CHOICES[state]
                if not (isinstance(c, Stls) and (pair.client.tls or pair.client.utf8))
            ]
            cmd = rng.choice(options)
            assert pair.command(cmd) == [cmd, PAUSED], seed
            replies: list[Event] = positive(cmd) if rng.random() < 0.7 else [Err("no")]
            evs = merged(pair.reply(*replies))
            if isinstance(replies[0], MessageStart):
                replies = [replies[0], MessageData(b".a\r\n..\r\nb\r\n"), replies[2]]
            expected = merged(replies)
            assert evs[: len(expected)] == expected, seed
            assert pair.client.state is pair.server.state, (seed, cmd)
            if pair.client.state is State.TLS_PENDING:
                pair.client.tls_established()
                pair.server.tls_established()
                assert pair.client.capabilities is pair.server.capabilities is None
            assert pair.client.utf8 == pair.server.utf8
            assert pair.client.lang == pair.server.lang


# ---------------------------------------------------------------------------
# §10 Real-world deviations (tolerated, or reported cleanly)
# ---------------------------------------------------------------------------


def test_real_world_wrong_list_sizes_do_not_matter() -> None:
    """§10 Real-world (Exchange, OpenMail): the client never uses sizes for framing."""
    conn = client_tx()
    assert ask(conn, List(1), b"+OK 1 10\r\n")[0] == ListEntryOk(1, 10)
    evs = ask(conn, Retr(1), b"+OK 10 octets\r\n" + b"x" * 5000 + b"\r\n.\r\n")
    assert len(body_of(evs)) == 5002


def test_real_world_top_without_header_separator() -> None:
    """§10 Arguments / real-world: a TOP reply with no header/body separator, or one that
    ignores n, is streamed as it is."""
    conn = client_tx()
    evs = ask(conn, Top(1, 0), b"+OK\r\nSubject: x\r\nbody line\r\n.\r\n")
    assert body_of(evs) == b"Subject: x\r\nbody line\r\n"


def test_real_world_busy_errors_without_codes() -> None:
    """§10 Real-world: lock errors without codes: Err with code None and the raw text."""
    conn = new_client()
    ask(conn, User("a"), b"+OK\r\n")
    ev = ask(conn, Pass("b"), b"-ERR unable to lock maildrop\r\n")[0]
    assert ev == Err("unable to lock maildrop") and ev.code is None


def test_real_world_no_capa_after_stls() -> None:
    """§10 Real-world (Indy#427): after STLS the client has no capabilities until it asks
    again, and a CAPA error afterwards is just an Err."""
    conn = new_client()
    ask(conn, Capa(), b"+OK\r\nSTLS\r\nPIPELINING\r\n.\r\n")
    ask(conn, Stls(), b"+OK\r\n")
    conn.tls_established()
    assert conn.capabilities is None
    assert ask(conn, Capa(), b"-ERR unknown command\r\n")[0] == Err("unknown command")
    assert conn.capabilities is None


def test_real_world_server_sends_bare_ok() -> None:
    """§10 Real-world (RFC 1957): ``+OK`` with no text is legal; the engine sends it bare."""
    srv = server_tx()
    first(srv, b"NOOP\r\n")
    assert srv.send(Ok()) == b"+OK\r\n"


def test_real_world_bare_auth_is_refused_by_the_server() -> None:
    """§10 Real-world: a bare ``AUTH`` (legacy mechanism listing) gets a BadCommand."""
    assert bad_server_line(b"AUTH\r\n", "AUTHORIZATION").command is None


# ---------------------------------------------------------------------------
# Regression tests for engine bugs found while writing these tests
# ---------------------------------------------------------------------------


def test_body_ending_in_bare_lf_is_terminated_for_a_strict_client() -> None:
    """§10 Framing / §3: the server must end the content with CRLF before the terminator;
    a default server and a default client must stay in step.  (The engine sends a
    stored bare LF as CRLF, as RFC 1939 §11 counts it.)"""
    pair = Pair()
    pair.command(User("a"))
    pair.reply(Ok())
    pair.command(Pass("b"))
    pair.reply(Ok())
    pair.command(Retr(1))
    evs = pair.reply(MessageStart(), MessageData(b"abc\n"), MessageEnd())
    assert evs[-2:] == [MessageEnd(), NEED_DATA]
    assert body_of(evs) == b"abc\r\n"
    assert pair.client.outstanding == () and pair.server.outstanding == ()


def test_listing_with_one_empty_line_is_malformed() -> None:
    """§10 Framing: an empty LIST is ``+OK`` then ``.``; a LIST whose one line is empty is
    malformed (RFC 1939 §5: ``msg SP size``), like one with two empty lines."""
    conn = client_tx()
    conn.send(List())
    conn.receive_data(b"+OK\r\n\r\n.\r\n")
    with pytest.raises(RemoteProtocolError):
        conn.next_event()


def test_strict_list_with_bare_lf_is_refused() -> None:
    """§10 Framing: bare LF violates the RFC; in strict mode it must not make the client
    silently lose message 2 (``1 10\\n2 20`` is not one entry with trailing text)."""
    conn = client_tx()
    conn.send(List())
    conn.receive_data(b"+OK\r\n1 10\n2 20\r\n.\r\n")
    with pytest.raises(RemoteProtocolError):
        conn.next_event()


def test_list_entry_with_message_number_zero() -> None:
    """§10 Arguments (client side): message number 0 in a LIST reply is the peer's fault."""
    conn = client_tx()
    conn.send(List(1))
    conn.receive_data(b"+OK 0 200\r\n")
    with pytest.raises(RemoteProtocolError):
        conn.next_event()
    assert conn.state is State.ERROR

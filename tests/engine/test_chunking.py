"""Chunk boundaries carry no meaning: every split of a transcript gives the same
events, in both roles (CONFORMANCE.md §3.8).

A client transcript and a server transcript are run once whole, checked, and
then again cut at every offset, at every pair of offsets around a body's
terminator, one byte at a time and in random chunks.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from pop3proto import (
    CLIENT,
    NEED_DATA,
    PAUSED,
    SERVER,
    SYS_TEMP,
    Auth,
    BadCommand,
    Capa,
    Capabilities,
    CapaOk,
    Connection,
    ConnectionClosed,
    Dele,
    Err,
    Greeting,
    List,
    ListEntryOk,
    ListOk,
    MessageData,
    MessageEnd,
    MessageStart,
    Ok,
    Pass,
    Quit,
    Retr,
    Stat,
    StatOk,
    Top,
    Uidl,
    UidlEntryOk,
    UidlOk,
    User,
)
from tests.helpers import (
    ENDED,
    GREETING_LINE,
    TIMESTAMP,
    Options,
    merged,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack


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
    GREETING_LINE + b"+OK\r\n+OK maildrop has 2 messages\r\n+OK 2 320\r\n"
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
    """The reference run itself gives the right events, so the split tests mean something."""
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
    assert evs[16:] == [Ok("bye"), ENDED]


def test_split_every_single_byte_boundary_client() -> None:
    """Every 2-chunk split of a client transcript gives the same events."""
    # SPLIT_WIRE holds the cuts that matter most: \r|\n, \r\n.|\r\n and .|\r.
    for i in range(len(SPLIT_WIRE) + 1):
        assert run_client([SPLIT_WIRE[:i], SPLIT_WIRE[i:]]) == CLIENT_REFERENCE, i


def test_split_one_byte_at_a_time_client() -> None:
    """One byte at a time gives the client the same events."""
    chunks = [SPLIT_WIRE[i : i + 1] for i in range(len(SPLIT_WIRE))]
    assert run_client(chunks) == CLIENT_REFERENCE


def test_split_random_chunks_client() -> None:
    """Random chunk sizes (seeded) give the client the same events."""
    rng = random.Random(1939)
    for _ in range(200):
        chunks, i = [], 0
        while i < len(SPLIT_WIRE):
            n = rng.randint(1, 12)
            chunks.append(SPLIT_WIRE[i : i + n])
            i += n
        assert run_client(chunks) == CLIENT_REFERENCE


def test_split_every_two_cuts_in_a_body() -> None:
    """Every 3-chunk split around ``\\r\\n.\\r\\n`` and stuffed dots gives the same events."""
    wire = GREETING_LINE + b"+OK\r\n+OK\r\n+OK\r\n..\r\n.x\r\n\r\n..\r\n.\r\n+OK bye\r\n"
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
    start = len(GREETING_LINE)
    for i in range(start, len(wire)):
        for j in range(i, len(wire) + 1):
            assert run([wire[:i], wire[i:j], wire[j:]]) == ref, (i, j)


def test_split_bare_lf_mode_client() -> None:
    """Split invariance holds in bare-LF mode too."""
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
    """The server's reference run gives the right events, refused commands included."""
    evs, _ = SERVER_REFERENCE
    assert evs[:5] == [Capa(), User("mrose"), Pass(" pass word"), Stat(), List()]
    assert isinstance(evs[5], BadCommand) and evs[5].line == b"XYZZY 1"
    assert evs[6] == Retr(1)
    # AUTH in TRANSACTION is refused; TOP and QUIT still run (nothing lost, RFC 2197 §4.2).
    assert isinstance(evs[7], BadCommand) and evs[7].command == Auth("PLAIN")
    assert evs[8:] == [Top(1, 0), Quit(), ENDED]


def test_split_every_boundary_server() -> None:
    """Every 2-chunk split, and one byte at a time, gives the server the same events."""
    for i in range(len(SERVER_WIRE) + 1):
        assert serve([SERVER_WIRE[:i], SERVER_WIRE[i:]]) == SERVER_REFERENCE, i
    bytewise = [SERVER_WIRE[i : i + 1] for i in range(len(SERVER_WIRE))]
    assert serve(bytewise) == SERVER_REFERENCE

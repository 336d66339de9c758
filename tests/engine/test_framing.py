"""Line ends, dot-stuffing and the end of a body, through both roles
(CONFORMANCE.md §3.1, §3.2 and §3.3).

The pure readers and writers have their own tests in ``test_readers_writers``;
these drive whole connections, including the real-world deviations a client
must survive.
"""

from __future__ import annotations

import pytest

from pop3proto import (
    NEED_DATA,
    BadCommand,
    Capa,
    Capabilities,
    CapaOk,
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
    Noop,
    Ok,
    RemoteProtocolError,
    Retr,
    State,
    Top,
    Uidl,
    UidlOk,
)
from tests.helpers import (
    GREETING_TEXT,
    ConnectionPair,
    ask,
    bad_server_line,
    body_of,
    client_tx,
    first,
    login,
    merged,
    new_server,
    server_tx,
)
from tests.helpers import events_through_wait as events
from tests.helpers import feed_through_wait as feed


@pytest.mark.parametrize(
    ("line", "wire"),
    [(b".", b".."), (b"..", b"..."), (b"...", b"...."), (b".x", b"..x")],
)
def test_framing_dot_lines_round_trip(line: bytes, wire: bytes) -> None:
    """Lines ``.``, ``..``, ``...`` and ``.x`` are stuffed by the server and unstuffed by the
    client (CONFORMANCE.md §3.2)."""
    pair = ConnectionPair(greeting=Greeting(GREETING_TEXT))
    login(pair, user="a", password="b")
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
    """An unstuffed ``.x`` from a sloppy server loses its dot, as RFC 1939 §3 says
    (CONFORMANCE.md §3.2)."""
    # poplib would keep the dot; the engine offers no poplib mode.
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
    """A dot line first, last or alone in a body is stuffed and unstuffed (CONFORMANCE.md §3.2)."""
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
    """A body without a final CRLF, or ending in a lone CR, gets its line end before the
    terminator (CONFORMANCE.md §3.3)."""
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
    """A terminator not on its own line ends nothing; EOF then is a RemoteProtocolError
    (CONFORMANCE.md §3.3)."""
    conn = client_tx()
    evs = ask(conn, Retr(1), b"+OK\r\nabc.\r\n")
    assert evs[-1] is NEED_DATA and not any(isinstance(e, MessageEnd) for e in evs)
    conn.receive_data(b"")
    with pytest.raises(RemoteProtocolError):
        conn.next_event()
    assert conn.state is State.ERROR


def test_framing_empty_message() -> None:
    """An empty message is ``+OK`` then ``.``, with no MessageData."""
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
    """Empty LIST, UIDL and CAPA replies, and a bare LANG's, are ``+OK`` then ``.``."""
    pair = ConnectionPair(greeting=Greeting(GREETING_TEXT))
    if not isinstance(cmd, (Capa, Lang)):
        login(pair, user="a", password="b")
    assert pair.command(cmd)[0] == cmd
    assert pair.server.send(reply) == b"+OK\r\n.\r\n"
    assert feed(pair.client, b"+OK\r\n.\r\n") == [reply, NEED_DATA]


def test_framing_bare_lf_status_line_strict_client() -> None:
    """A strict client takes no bare LF for a line end; inside a status line it is a
    RemoteProtocolError (CONFORMANCE.md §3.1)."""
    conn = client_tx()
    assert ask(conn, Noop(), b"+OK\n") == [NEED_DATA]
    conn.receive_data(b"+OK\r\n")
    with pytest.raises(RemoteProtocolError):
        conn.next_event()


def test_framing_bare_lf_status_line_lenient_client() -> None:
    """With bare_lf=True a bare LF ends a status line (CONFORMANCE.md §3.1)."""
    conn = client_tx(bare_lf=True)
    assert ask(conn, Noop(), b"+OK done\n") == [Ok("done"), NEED_DATA]


@pytest.mark.parametrize("bare_lf", [False, True])
def test_framing_bare_cr_and_cr_cr_lf_status_lines_are_refused(bare_lf: bool) -> None:
    """A bare CR or ``\\r\\r\\n`` in a status line is a RemoteProtocolError in both modes
    (CONFORMANCE.md §3.6)."""
    for wire in (b"+OK a\rb\r\n", b"+OK a\r\r\n"):
        conn = client_tx(bare_lf=bare_lf)
        conn.send(Noop())
        conn.receive_data(wire)
        with pytest.raises(RemoteProtocolError):
            conn.next_event()


@pytest.mark.parametrize("bare_lf", [False, True])
def test_framing_bare_cr_and_cr_cr_lf_in_a_body_are_data(bare_lf: bool) -> None:
    """A bare CR and ``\\r\\r\\n`` in a body are message octets in both modes."""
    conn = client_tx(bare_lf=bare_lf)
    evs = ask(conn, Retr(1), b"+OK\r\na\rb\r\nc\r\r\n.\r\n")
    assert body_of(evs) == b"a\rb\r\nc\r\r\n"
    assert isinstance(evs[-2], MessageEnd)


def test_framing_bare_lf_in_a_body_strict_vs_lenient() -> None:
    """A bare LF in a body is data when strict and a line end with bare_lf=True, so ``\\n..`` is
    unstuffed then."""
    wire = b"+OK\r\na\n..b\r\n.\r\n"
    assert body_of(ask(client_tx(), Retr(1), wire)) == b"a\n..b\r\n"
    assert body_of(ask(client_tx(bare_lf=True), Retr(1), wire)) == b"a\n.b\r\n"


def test_framing_dot_lf_terminator() -> None:
    """``.\\n`` ends a body or a listing only with bare_lf=True (CONFORMANCE.md §3.3)."""
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
    """``\\r\\n.\\r`` without its LF (Cyrus 3.4.6) is held back until the next octet; EOF then
    is a RemoteProtocolError (CONFORMANCE.md §3.3)."""
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
    """A strict server needs CRLF: a bare LF or CR in a command line makes it a BadCommand
    (CONFORMANCE.md §3.1)."""
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
    """With bare_lf=True a server ends a command at ``\\n``, yet refuses the CR that
    ``\\r\\r\\n`` leaves in the line."""
    srv = new_server(bare_lf=True)
    assert first(srv, b"CAPA\n") == Capa()
    srv.send(CapaOk(Capabilities.build("TOP")))
    assert first(srv, b"CAPA\r\n") == Capa()
    srv.send(CapaOk(Capabilities.build("TOP")))
    assert isinstance(first(srv, b"CAPA\r\r\n"), BadCommand)


def test_framing_server_eof_with_a_partial_command() -> None:
    """A command without its CRLF, or ending in a lone CR, at EOF never runs."""
    for tail in (b"QUIT", b"QUIT\r"):
        srv = server_tx()
        assert feed(srv, tail) == [NEED_DATA]
        srv.receive_data(b"")
        assert events(srv) == [ConnectionClosed()]
        assert srv.state is State.CLOSED


def test_framing_nul_bytes() -> None:
    """NUL is a BadCommand in a command, a RemoteProtocolError in a status line and data in a
    body."""
    assert "control" in bad_server_line(b"USER a\x00b\r\n", "AUTHORIZATION").reason
    conn = client_tx()
    conn.send(Noop())
    conn.receive_data(b"+OK a\x00b\r\n")
    with pytest.raises(RemoteProtocolError):
        conn.next_event()
    assert body_of(ask(client_tx(), Retr(1), b"+OK\r\na\x00b\r\n.\r\n")) == b"a\x00b\r\n"


def test_framing_8bit_bytes_before_utf8() -> None:
    """Before UTF8, 8-bit status text becomes U+FFFD, bodies pass through and non-ASCII
    parameters are refused (CONFORMANCE.md §10.1, §3.4)."""
    conn = client_tx()
    assert ask(conn, Noop(), b"+OK caf\xc3\xa9 \xff\r\n")[0] == Ok("caf\ufffd\ufffd \ufffd")
    assert body_of(ask(conn, Retr(1), b"+OK\r\n\xe9t\xe9\r\n.\r\n")) == b"\xe9t\xe9\r\n"
    assert "non-ASCII" in bad_server_line(b"USER caf\xc3\xa9\r\n", "AUTHORIZATION").reason
    assert isinstance(bad_server_line(b"LIST \xb9\r\n"), BadCommand)


def test_body_ending_in_bare_lf_is_terminated_for_a_strict_client() -> None:
    """A body ending in a bare LF goes out ending in CRLF, so a strict client sees the
    terminator (CONFORMANCE.md §3.3, §9.2)."""
    # A regression: the engine sends a stored bare LF as CRLF, as RFC 1939 §11 counts it.
    pair = ConnectionPair(greeting=Greeting(GREETING_TEXT))
    login(pair, user="a", password="b")
    pair.command(Retr(1))
    evs = pair.reply(MessageStart(), MessageData(b"abc\n"), MessageEnd())
    assert evs[-2:] == [MessageEnd(), NEED_DATA]
    assert body_of(evs) == b"abc\r\n"
    assert pair.client.outstanding == () and pair.server.outstanding == ()


def test_listing_with_one_empty_line_is_malformed() -> None:
    """A LIST whose one line is empty is malformed, unlike an empty LIST (RFC 1939 §5)."""
    conn = client_tx()
    conn.send(List())
    conn.receive_data(b"+OK\r\n\r\n.\r\n")
    with pytest.raises(RemoteProtocolError):
        conn.next_event()


def test_strict_list_with_bare_lf_is_refused() -> None:
    """A strict client refuses a bare LF in a listing rather than lose message 2 to it
    (CONFORMANCE.md §3.1)."""
    conn = client_tx()
    conn.send(List())
    conn.receive_data(b"+OK\r\n1 10\n2 20\r\n.\r\n")
    with pytest.raises(RemoteProtocolError):
        conn.next_event()


def test_real_world_wrong_list_sizes_do_not_matter() -> None:
    """Wrong sizes in LIST (Exchange, OpenMail) do not matter: the client never frames by size
    (CONFORMANCE.md §9.2)."""
    conn = client_tx()
    assert ask(conn, List(1), b"+OK 1 10\r\n")[0] == ListEntryOk(1, 10)
    evs = ask(conn, Retr(1), b"+OK 10 octets\r\n" + b"x" * 5000 + b"\r\n.\r\n")
    assert len(body_of(evs)) == 5002


def test_real_world_top_without_header_separator() -> None:
    """A TOP reply without a header separator, or one that ignores n, is streamed as it is."""
    conn = client_tx()
    evs = ask(conn, Top(1, 0), b"+OK\r\nSubject: x\r\nbody line\r\n.\r\n")
    assert body_of(evs) == b"Subject: x\r\nbody line\r\n"

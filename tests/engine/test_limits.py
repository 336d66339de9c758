"""Length limits on commands, status lines, listings, body and SASL lines, in both
roles (CONFORMANCE.md §3.5)."""

from __future__ import annotations

import pytest

from pop3proto import (
    NEED_DATA,
    PAUSED,
    Auth,
    BadCommand,
    Capa,
    Capabilities,
    CapaOk,
    Err,
    Greeting,
    LocalProtocolError,
    MessageData,
    MessageEnd,
    MessageStart,
    Noop,
    Ok,
    RemoteProtocolError,
    Retr,
    SaslChallenge,
    SaslResponse,
    State,
    User,
    fits_initial_response,
    sasl_b64encode,
)
from tests.helpers import (
    GREETING_TEXT,
    ConnectionPair,
    ask,
    body_of,
    client_tx,
    first,
    new_client,
    new_server,
    server_tx,
)
from tests.helpers import events_through_wait as events
from tests.helpers import feed_through_wait as feed


@pytest.mark.parametrize(("size", "accepted"), [(254, True), (255, True), (256, False)])
def test_lengths_command_on_the_server(size: int, accepted: bool) -> None:
    """A server accepts commands of 254 and 255 octets and refuses 256, CRLF included (RFC 2449
    §4)."""
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
    """The client refuses to send a command over 255 octets."""
    conn = new_client()
    name = "u" * (size - 7)
    if accepted:
        assert len(conn.send(User(name))) == size
    else:
        with pytest.raises(LocalProtocolError):
            conn.send(User(name))
        assert conn.state is State.ERROR


def test_lengths_overlong_command_split_anywhere() -> None:
    """The verdict on a 256-octet command does not depend on how the line arrives."""
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
    """The command after an overlong line runs however that line's CRLF is split (RFC 2197 §4.2)."""
    srv = new_server()
    ev = first(srv, b"U" * 300 + b"\r")
    assert isinstance(ev, BadCommand)
    srv.send(Err())
    assert events(srv) == [NEED_DATA]
    assert first(srv, b"\nCAPA\r\n") == Capa()


@pytest.mark.parametrize(("size", "ok"), [(511, True), (512, True), (513, False)])
def test_lengths_reply_line_client(size: int, ok: bool) -> None:
    """With max_status_size=512 a client accepts reply lines of 511 and 512 octets and refuses
    513."""
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
    """The verdict on a 513-octet reply line is the same at any split (h11 #182)."""
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
    """The server refuses to send a status line over 512 octets (its default)."""
    srv = server_tx()
    first(srv, b"NOOP\r\n")
    text = "t" * (size - 6)
    if ok:
        assert len(srv.send(Ok(text))) == size
    else:
        with pytest.raises(LocalProtocolError):
            srv.send(Ok(text))


def test_lengths_capa_line_over_512() -> None:
    """A client tolerates a CAPA line over 512 octets; a server cannot build one (RFC 2449 §5)."""
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
    """A 100 KB body line streams through both roles, delivered before its line end arrives."""
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
    """A 10 KB SASL challenge and response pass: no line limit applies (RFC 5034 §4)."""
    blob = bytes(range(256)) * 40  # 10 KB
    pair = ConnectionPair(greeting=Greeting(GREETING_TEXT))
    assert pair.command(Auth("X-BIG")) == [Auth("X-BIG"), PAUSED]
    assert pair.reply(SaslChallenge(blob)) == [SaslChallenge(blob), PAUSED]
    assert pair.command(SaslResponse(blob)) == [SaslResponse(blob), PAUSED]
    assert pair.reply(Ok()) == [Ok(), NEED_DATA]
    assert pair.client.state is pair.server.state is State.TRANSACTION


def test_lengths_sasl_line_limit_is_configurable() -> None:
    """The SASL line limit is separate and configurable; past it is a RemoteProtocolError."""
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
    """An AUTH line pushed past 255 octets by its initial response is refused, as
    fits_initial_response says beforehand (CONFORMANCE.md §7.3)."""
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

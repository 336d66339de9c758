"""How a session ends, in both roles: a negative greeting, an unsolicited reply, EOF
anywhere, and QUIT (CONFORMANCE.md §2.6)."""

from __future__ import annotations

import pytest

from pop3proto import (
    CLIENT,
    NEED_DATA,
    PAUSED,
    SERVER,
    SYS_TEMP,
    Auth,
    CloseReason,
    Connection,
    ConnectionClosed,
    Err,
    Greeting,
    List,
    LocalProtocolError,
    Noop,
    Ok,
    Quit,
    RemoteProtocolError,
    Retr,
    SaslChallenge,
    SaslResponse,
    Stat,
    State,
    User,
)
from tests.helpers import (
    ENDED,
    GREETING_TEXT,
    ConnectionPair,
    ask,
    client_tx,
    eof,
    first,
    login,
    new_client,
    new_server,
    server_tx,
)
from tests.helpers import events_through_wait as events
from tests.helpers import feed_through_wait as feed


def test_greeting_err_then_eof() -> None:
    """A ``-ERR`` greeting is an Err, then CLOSED; EOF is ConnectionClosed."""
    conn = Connection(CLIENT)
    assert feed(conn, b"-ERR go away\r\n") == [Err("go away"), ENDED]
    assert conn.state is State.CLOSED and conn.greeting is None
    conn.receive_data(b"")
    assert conn.next_event() == ENDED
    with pytest.raises(LocalProtocolError):
        conn.send(User("a"))
    srv = Connection(SERVER)
    assert srv.send(Err("go away")) == b"-ERR go away\r\n"
    assert srv.state is State.CLOSED
    assert srv.next_event() == ENDED


def test_greeting_err_keeps_its_response_code() -> None:
    """A ``-ERR [SYS/TEMP]`` greeting keeps its code like any -ERR (CONFORMANCE.md §4.1)."""
    pair_server = Connection(SERVER)
    wire = pair_server.send(Err("busy", SYS_TEMP))
    assert wire == b"-ERR [SYS/TEMP] busy\r\n"
    conn = Connection(CLIENT)
    assert feed(conn, wire)[0] == Err("busy", SYS_TEMP)


def test_greeting_eof_before_greeting() -> None:
    """EOF before the greeting is a ConnectionClosed; in a partial greeting it is a
    RemoteProtocolError."""
    conn = Connection(CLIENT)
    assert eof(conn) == [ConnectionClosed()]
    assert conn.state is State.CLOSED
    conn = Connection(CLIENT)
    conn.receive_data(b"+OK hal")
    conn.receive_data(b"")
    with pytest.raises(RemoteProtocolError):
        conn.next_event()


def test_greeting_unsolicited_err_then_close() -> None:
    """An -ERR with nothing outstanding (Dovecot's idle logout) is an Err, then CLOSED
    (CONFORMANCE.md §9.7)."""
    conn = client_tx()
    assert feed(conn, b"-ERR Disconnected for inactivity.\r\n") == [
        Err("Disconnected for inactivity."),
        ENDED,
    ]
    assert conn.state is State.CLOSED
    conn.receive_data(b"")
    assert conn.next_event() == ENDED
    srv = server_tx()
    assert srv.send(Err("Disconnected for inactivity.")) == (
        b"-ERR Disconnected for inactivity.\r\n"
    )
    assert srv.state is State.CLOSED


def test_greeting_unsolicited_ok_is_an_error() -> None:
    """An extra ``+OK`` with nothing outstanding (FTGate) is a RemoteProtocolError."""
    conn = client_tx()
    conn.send(Noop())
    conn.receive_data(b"+OK\r\n+OK again\r\n")
    assert conn.next_event() == Ok()
    with pytest.raises(RemoteProtocolError):
        conn.next_event()


def test_eof_in_the_middle_of_a_body_or_listing() -> None:
    """EOF in the middle of a body, a listing or a reply line is a RemoteProtocolError for the
    client."""
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
    """EOF in a SASL exchange is a RemoteProtocolError for the client, a ConnectionClosed
    without UPDATE for the server."""
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


def test_deletion_err_to_quit() -> None:
    """-ERR to QUIT (some deleted messages not removed) still closes (CONFORMANCE.md §9.6)."""
    pair = ConnectionPair(greeting=Greeting(GREETING_TEXT))
    login(pair, user="a", password="b")
    pair.command(Quit())
    evs = pair.reply(Err("some deleted messages not removed"))
    assert evs == [Err("some deleted messages not removed"), ENDED]
    assert pair.client.state is pair.server.state is State.CLOSED


def test_deletion_eof_after_quit_from_transaction() -> None:
    """EOF before QUIT's reply leaves the outcome unknown from TRANSACTION, not from
    AUTHORIZATION."""
    conn = client_tx()
    conn.send(Quit())
    assert eof(conn) == [ConnectionClosed(outcome_unknown=True)]
    conn = new_client()
    conn.send(Quit())
    assert eof(conn) == [ConnectionClosed(outcome_unknown=False)]


def test_deletion_dropped_connection_never_enters_update() -> None:
    """A dropped connection goes from TRANSACTION to CLOSED, never UPDATE (RFC 1939 §6)."""
    srv = server_tx()
    first(srv, b"DELE 1\r\n")
    srv.send(Ok())
    assert eof(srv) == [ConnectionClosed()]
    assert srv.state is State.CLOSED


# ---------------------------------------------------------------------------
# ConnectionClosed.reason, and how it repeats
# ---------------------------------------------------------------------------


def test_reason_after_quit_is_session_ended_on_both_sides_before_any_eof() -> None:
    """The client reaches CLOSED on the +OK to QUIT, before the TCP close: the
    event says the session ended, not that the peer closed."""
    pair = ConnectionPair(greeting=Greeting(GREETING_TEXT))
    login(pair, user="a", password="b")
    pair.command(Quit())
    evs = pair.reply(Ok("bye"))
    assert evs[-1] == ConnectionClosed(CloseReason.SESSION_ENDED)
    assert pair.server.next_event() == ConnectionClosed(CloseReason.SESSION_ENDED)
    # The EOF that follows changes nothing: the reason is fixed at CLOSED.
    pair.client.receive_data(b"")
    pair.server.receive_data(b"")
    for _ in range(3):
        assert pair.client.next_event() == ENDED
        assert pair.server.next_event() == ENDED


@pytest.mark.parametrize("role", ["client", "server"])
def test_reason_after_eof_is_peer_closed_and_repeats(role: str) -> None:
    conn = client_tx() if role == "client" else server_tx()
    conn.receive_data(b"")
    assert conn.next_event() == ConnectionClosed(CloseReason.PEER_CLOSED)
    assert conn.next_event() == ConnectionClosed(CloseReason.PEER_CLOSED)


@pytest.mark.parametrize("role", ["client", "server"])
def test_reason_after_sending_connection_closed_is_local(role: str) -> None:
    conn = client_tx() if role == "client" else server_tx()
    conn.send(ConnectionClosed())
    conn.receive_data(b"")
    assert conn.next_event() == ConnectionClosed(CloseReason.LOCAL_CLOSED)
    assert conn.next_event() == ConnectionClosed(CloseReason.LOCAL_CLOSED)


def test_outcome_unknown_repeats_with_the_event() -> None:
    conn = client_tx()
    conn.send(Quit())
    wanted = ConnectionClosed(CloseReason.PEER_CLOSED, outcome_unknown=True)
    assert eof(conn) == [wanted]
    assert conn.next_event() == wanted


def test_reason_is_validated() -> None:
    with pytest.raises(LocalProtocolError, match="CloseReason"):
        ConnectionClosed("PEER_CLOSED")  # type: ignore[arg-type]
    assert repr(CloseReason.PEER_CLOSED) == "CloseReason.PEER_CLOSED"

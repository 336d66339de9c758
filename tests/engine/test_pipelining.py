"""Pipelining: commands sent without waiting, replies matched to them in order, and
the commands that must end a batch (CONFORMANCE.md §6.1, §6.2)."""

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
    List,
    ListOk,
    LocalProtocolError,
    Noop,
    Ok,
    Pass,
    Quit,
    Retr,
    Stat,
    State,
    StatOk,
    Stls,
    User,
)
from tests.helpers import (
    ask,
    merged,
    new_client,
    new_server,
    pipelining_client,
)
from tests.helpers import feed_through_wait as feed

# ---------------------------------------------------------------------------
# The client: only with PIPELINING, checked against the projected state (CONFORMANCE.md §6.1)
# ---------------------------------------------------------------------------


def test_pipelining_refused_without_capability() -> None:
    conn = new_client()
    conn.send(Capa())
    with pytest.raises(LocalProtocolError, match="PIPELINING"):
        conn.send(User("a"))
    # A CAPA without PIPELINING does not help either.
    conn = new_client()
    ask(conn, Capa(), b"+OK\r\nUSER\r\n.\r\n")
    conn.send(User("a"))
    with pytest.raises(LocalProtocolError, match="PIPELINING"):
        conn.send(Pass("b"))


def test_pipelining_with_capability() -> None:
    conn = pipelining_client()
    data = conn.send(User("a")) + conn.send(Pass("b")) + conn.send(Stat()) + conn.send(List())
    assert data == b"USER a\r\nPASS b\r\nSTAT\r\nLIST\r\n"
    assert conn.outstanding == (User("a"), Pass("b"), Stat(), List())
    # State follows replies, not commands.
    assert conn.state is State.AUTHORIZATION
    evs = feed(conn, b"+OK\r\n+OK\r\n+OK 1 5\r\n+OK\r\n1 5\r\n.\r\n")
    assert evs == [Ok(), Ok(), StatOk(1, 5), ListOk({1: 5}), NEED_DATA]
    assert conn.state is State.TRANSACTION and conn.outstanding == ()


def test_pipelining_state_follows_each_reply() -> None:
    conn = pipelining_client()
    for cmd in (User("a"), Pass("b"), Stat()):
        conn.send(cmd)
    conn.receive_data(b"+OK\r\n")
    assert conn.next_event() == Ok()
    assert conn.state is State.USER_OK
    conn.receive_data(b"+OK\r\n")
    assert conn.next_event() == Ok()
    assert conn.state is State.TRANSACTION
    assert conn.outstanding == (Stat(),)


def test_allow_unadvertised_pipelining() -> None:
    conn = new_client(allow_unadvertised_pipelining=True)
    assert conn.send(Capa()) + conn.send(User("a")) == b"CAPA\r\nUSER a\r\n"
    assert feed(conn, b"+OK\r\n.\r\n+OK\r\n") == [CapaOk(Capabilities(())), Ok(), NEED_DATA]
    assert conn.state is State.USER_OK


def test_pipelining_uses_the_projected_state() -> None:
    """A command is checked against the state its predecessors would reach on +OK."""
    conn = pipelining_client()
    conn.send(User("a"))
    conn.send(Pass("b"))
    assert conn.send(Retr(1)) == b"RETR 1\r\n"  # legal once PASS succeeds
    conn = pipelining_client()
    conn.send(User("a"))
    with pytest.raises(LocalProtocolError, match="USER_OK"):
        conn.send(Stat())


# ---------------------------------------------------------------------------
# Batches through both roles
# ---------------------------------------------------------------------------


def test_pipelining_user_failing_mid_batch() -> None:
    """USER failing mid-batch leaves PASS and STAT their own -ERR, in AUTHORIZATION on both
    sides (RFC 2449 §6.6)."""
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
    """Pipelined replies split anywhere still match their commands."""
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
    """Nothing may follow QUIT, and after its reply the session is over."""
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
    """STLS and AUTH end a batch."""
    for last in (Stls(), Auth("PLAIN")):
        conn = pipelining_client()
        conn.send(last)
        with pytest.raises(LocalProtocolError, match="batch"):
            conn.send(Capa())

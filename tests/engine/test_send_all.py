"""``Connection.send_all``: ``send`` of each event, with the same verdicts,
whatever the mix of commands (its short cut for runs of one type must
never let through what ``send`` refuses)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pop3proto import (
    CLIENT,
    SERVER,
    Capa,
    CloseReason,
    Command,
    Connection,
    ConnectionClosed,
    Dele,
    Greeting,
    List,
    LocalProtocolError,
    Noop,
    Ok,
    Pass,
    Quit,
    Retr,
    Stat,
    State,
    Stls,
    Top,
    Uidl,
    User,
)


def client(state: str, *, pipelining: bool) -> Connection:
    conn = Connection(CLIENT, allow_unadvertised_pipelining=pipelining)
    conn.receive_data(b"+OK ready\r\n")
    conn.next_event()
    if state == "TRANSACTION":
        conn.send(User("u"))
        conn.receive_data(b"+OK\r\n")
        conn.next_event()
        conn.send(Pass("p"))
        conn.receive_data(b"+OK\r\n")
        conn.next_event()
    return conn


COMMANDS = st.sampled_from(
    [
        Retr(1),
        Retr(2),
        Retr(10**240),  # too long for the command limit
        Top(1, 0),
        Dele(1),
        Stat(),
        List(),
        Uidl(),
        Noop(),
        Capa(),
        Stls(),
        User("x"),
        Pass("y"),
        Quit(),
    ]
)


@settings(max_examples=400, deadline=None)
@given(
    commands=st.lists(COMMANDS, max_size=8),
    state=st.sampled_from(["AUTHORIZATION", "TRANSACTION"]),
    pipelining=st.booleans(),
)
def test_same_verdicts_as_send(commands: list[Command], state: str, pipelining: bool) -> None:
    one, many = client(state, pipelining=pipelining), client(state, pipelining=pipelining)
    sent = b""
    refused: Exception | None = None
    for command in commands:
        try:
            sent += one.send(command)
        except LocalProtocolError as exc:
            refused = exc
            break
    if refused is not None:
        with pytest.raises(LocalProtocolError, match=str(refused)[:20]):
            many.send_all(commands)
        assert many.state is one.state is State.ERROR
        return
    assert many.send_all(commands) == sent
    assert many.outstanding == one.outstanding
    assert many.state is one.state


def test_a_burst_is_checked_once_and_queued_whole() -> None:
    conn = client("TRANSACTION", pipelining=True)
    data = conn.send_all([Retr(n) for n in range(1, 1001)] + [Quit()])
    assert data == b"".join(b"RETR %d\r\n" % n for n in range(1, 1001)) + b"QUIT\r\n"
    assert len(conn.outstanding) == 1001
    # Nothing may follow QUIT (it ends a batch), in the same call or later.
    with pytest.raises(LocalProtocolError, match="must end a pipelined batch"):
        client("TRANSACTION", pipelining=True).send_all([Retr(1), Quit(), Retr(2)])


def test_without_pipelining_the_second_of_a_run_is_refused() -> None:
    conn = client("TRANSACTION", pipelining=False)
    with pytest.raises(LocalProtocolError, match="PIPELINING"):
        conn.send_all([Retr(1), Retr(2)])
    assert conn.state is State.ERROR
    with pytest.raises(LocalProtocolError, match="ERROR state"):
        conn.send_all([Noop()])


def test_server_role_sends_each() -> None:
    conn = Connection(SERVER)
    assert conn.send_all([Greeting("hi")]) == b"+OK hi\r\n"
    conn.receive_data(b"QUIT\r\n")
    conn.next_event()
    assert conn.send_all([Ok("x")]) == b"+OK x\r\n"
    assert conn.send_all([]) == b""


def test_events_that_are_not_commands() -> None:
    conn = client("TRANSACTION", pipelining=True)
    closing = ConnectionClosed(CloseReason.LOCAL_CLOSED)
    assert conn.send_all([Retr(1), closing]) == b"RETR 1\r\n"
    assert conn.state is State.CLOSED

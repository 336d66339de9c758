"""Connection.can_send: ask whether send() would accept an event, at no cost."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import pop3proto as p


def _client(*, strict_user: bool = True) -> p.Connection:
    conn = p.Connection(p.CLIENT, strict_user=strict_user)
    conn.receive_data(b"+OK ready\r\n")
    assert isinstance(conn.next_event(), p.Greeting)
    return conn


def test_a_refusal_leaves_the_connection_usable() -> None:
    conn = _client()
    assert not conn.can_send(p.Stat())  # STAT before login (RFC 1939 §5)
    assert conn.state is p.State.AUTHORIZATION
    assert conn.can_send(p.User("alice"))
    assert conn.send(p.User("alice")) == b"USER alice\r\n"


def test_it_agrees_with_send_in_user_ok() -> None:
    conn = _client()
    conn.send(p.User("alice"))
    conn.receive_data(b"+OK\r\n")
    conn.next_event()
    assert not conn.can_send(p.Capa())  # strict: only PASS or QUIT (CONFORMANCE.md §2.5)
    assert conn.can_send(p.Pass("secret"))
    lenient = _client(strict_user=False)
    lenient.send(p.User("alice"))
    lenient.receive_data(b"+OK\r\n")
    lenient.next_event()
    assert lenient.can_send(p.Capa())


def test_it_sees_pipelining_and_batch_ends() -> None:
    conn = _client()
    conn.send(p.Capa())
    assert not conn.can_send(p.Noop())  # no PIPELINING advertised yet
    conn.receive_data(b"+OK\r\nPIPELINING\r\n.\r\n")
    conn.next_event()
    conn.send(p.Quit())
    assert not conn.can_send(p.Capa())  # QUIT ends a batch


def test_error_and_closed_states() -> None:
    conn = _client()
    with pytest.raises(p.LocalProtocolError):
        conn.send(p.Stat())
    assert conn.state is p.State.ERROR
    assert not conn.can_send(p.Quit())
    closed = _client()
    closed.send(p.ConnectionClosed())
    assert not closed.can_send(p.Quit())


def _server_after(line: bytes) -> p.Connection:
    conn = p.Connection(p.SERVER)
    conn.send(p.Greeting("ready"))
    conn.receive_data(line)
    assert isinstance(conn.next_event(), p.Command)
    return conn


def test_server_greeting() -> None:
    conn = p.Connection(p.SERVER)
    assert not conn.can_send(p.Ok())  # the greeting comes first
    assert not conn.can_send(p.Greeting("caf\u00e9"))  # raw 8-bit outside UTF8 mode
    assert conn.can_send(p.Greeting("ready")) and conn.can_send(p.Err("busy"))
    assert conn.state is p.State.AWAIT_GREETING


def test_server_reply_must_fit_the_command() -> None:
    conn = _server_after(b"CAPA\r\n")
    assert not conn.can_send(p.StatOk(1, 2))
    assert not conn.can_send(p.User("x"))  # a command is not a reply
    assert not conn.can_send(p.MessageData(b"x"))  # no body is being sent
    assert not conn.can_send(p.Ok("x" * 600))  # over max_status_size
    assert conn.can_send(p.Err("no"))
    assert conn.state is p.State.AUTHORIZATION  # asking changed nothing
    assert conn.can_send(p.CapaOk(p.Capabilities.build("USER")))
    conn.send(p.CapaOk(p.Capabilities.build("USER")))
    assert not conn.can_send(p.Ok())  # nothing is waiting for a reply
    assert conn.can_send(p.Err("idle too long"))  # unsolicited -ERR before closing


def test_server_body_and_close() -> None:
    conn = _server_after(b"USER a\r\n")
    conn.send(p.Ok())
    conn.receive_data(b"PASS b\r\n")
    conn.next_event()
    conn.send(p.Ok())
    conn.receive_data(b"RETR 1\r\n")
    conn.next_event()
    assert conn.can_send(p.MessageStart()) and not conn.can_send(p.MessageData(b"x"))
    conn.send(p.MessageStart())
    assert conn.can_send(p.MessageData(b".x\r\n")) and conn.can_send(p.MessageEnd())
    assert not conn.can_send(p.Ok())
    assert conn.send(p.MessageData(b".x\r\n")) == b"..x\r\n"
    assert conn.can_send(p.ConnectionClosed())
    conn.send(p.ConnectionClosed())
    assert not conn.can_send(p.Ok())


def test_server_error_state() -> None:
    conn = _server_after(b"STAT\r\n")  # STAT before login: a BadCommand
    with pytest.raises(p.LocalProtocolError):
        conn.send(p.StatOk(0, 0))
    assert conn.state is p.State.ERROR
    assert not conn.can_send(p.Err("no"))


_SERVER_INPUTS = [b"", b"CAPA\r\n", b"USER a\r\n", b"STAT\r\n", b"AUTH PLAIN\r\n", b"LIST\r\n"]
_REPLIES = [
    p.Ok(),
    p.Err("no"),
    p.Ok("caf\u00e9"),
    p.Greeting("hi"),
    p.StatOk(1, 2),
    p.ListOk({1: 2}),
    p.CapaOk(p.Capabilities.build("USER")),
    p.SaslChallenge(b""),
    p.MessageStart(),
    p.MessageData(b"x"),
    p.MessageEnd(),
    p.ConnectionClosed(),
    p.User("x"),
]


@given(
    greet=st.booleans(),
    line=st.sampled_from(_SERVER_INPUTS),
    replies=st.lists(st.sampled_from(_REPLIES), max_size=4),
)
def test_server_can_send_agrees_with_send(greet: bool, line: bytes, replies: list[p.Event]) -> None:
    """Whatever the state, can_send() says yes exactly when send() succeeds,
    and a "no" leaves the connection as it was."""
    conn = p.Connection(p.SERVER)
    if greet:
        conn.send(p.Greeting("ready"))
        conn.receive_data(line)
        conn.next_event()
    for event in replies:
        before = conn.state
        verdict = conn.can_send(event)
        assert conn.state is before
        try:
            conn.send(event)
        except p.LocalProtocolError:
            assert not verdict, event
            return
        assert verdict, event

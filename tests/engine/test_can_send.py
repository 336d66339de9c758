"""Connection.can_send: ask whether send() would accept an event, at no cost."""

from __future__ import annotations

import pytest

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


def test_server_role_has_no_can_send() -> None:
    with pytest.raises(RuntimeError):
        p.Connection(p.SERVER).can_send(p.Ok())

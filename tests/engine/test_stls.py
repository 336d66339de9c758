"""STLS and implicit TLS in both roles, and the plaintext that must not cross the
handshake (CONFORMANCE.md §8.1, §8.2 and §8.3)."""

from __future__ import annotations

import pytest

from pop3proto import (
    PAUSED,
    BadCommand,
    Capa,
    Err,
    Greeting,
    LocalProtocolError,
    Ok,
    RemoteProtocolError,
    State,
    Stls,
    Utf8,
)
from tests.helpers import (
    GREETING_TEXT,
    ConnectionPair,
    ask,
    bad_server_line,
    client_tx,
    first,
    new_client,
    new_server,
)


def test_stls_in_transaction() -> None:
    """STLS in TRANSACTION is refused by both roles (RFC 2595 §4)."""
    with pytest.raises(LocalProtocolError):
        client_tx().send(Stls())
    ev = bad_server_line(b"STLS\r\n")
    assert ev.command == Stls()


def test_stls_twice() -> None:
    """STLS after TLS is up is refused by both roles."""
    pair = ConnectionPair(greeting=Greeting(GREETING_TEXT))
    pair.command(Stls())
    pair.reply(Ok("Begin TLS"))
    pair.client.tls_established()
    pair.server.tls_established()
    assert pair.client.tls and pair.server.tls
    with pytest.raises(LocalProtocolError, match="TLS"):
        pair.client.send(Stls())
    ev = first(pair.server, b"STLS\r\n")
    assert isinstance(ev, BadCommand) and "TLS" in ev.reason


def test_stls_after_utf8() -> None:
    """STLS after UTF8 is refused by both roles (RFC 6856 §2.1)."""
    pair = ConnectionPair(greeting=Greeting(GREETING_TEXT))
    pair.command(Utf8())
    pair.reply(Ok())
    assert pair.client.utf8 and pair.server.utf8
    with pytest.raises(LocalProtocolError, match="UTF8"):
        pair.client.send(Stls())
    ev = first(pair.server, b"STLS\r\n")
    assert isinstance(ev, BadCommand) and "UTF8" in ev.reason


def test_stls_over_implicit_tls() -> None:
    """STLS over implicit TLS (tls=True) is refused by both roles (CONFORMANCE.md §8.3)."""
    conn = new_client(tls=True)
    assert conn.tls
    with pytest.raises(LocalProtocolError):
        conn.send(Stls())
    ev = first(new_server(tls=True), b"STLS\r\n")
    assert isinstance(ev, BadCommand) and ev.command == Stls()


def test_stls_injection_server() -> None:
    """``STLS\\r\\nUSER x\\r\\n`` in one segment is a RemoteProtocolError and USER never comes
    out."""
    srv = new_server()
    srv.receive_data(b"STLS\r\nUSER x\r\n")
    with pytest.raises(RemoteProtocolError):
        srv.next_event()
    assert srv.state is State.ERROR
    with pytest.raises(RemoteProtocolError):
        srv.next_event()


def test_stls_injection_server_after_ok() -> None:
    """Plaintext after the ``+OK`` to STLS is refused by next_event and by tls_established."""
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
    """A client aborts on any byte after the ``+OK`` to STLS, in the same segment or a later one."""
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


def test_real_world_no_capa_after_stls() -> None:
    """After STLS the client knows no capabilities until it asks again, and a CAPA -ERR is just
    an Err (CONFORMANCE.md §5.4)."""
    conn = new_client()
    ask(conn, Capa(), b"+OK\r\nSTLS\r\nPIPELINING\r\n.\r\n")
    ask(conn, Stls(), b"+OK\r\n")
    conn.tls_established()
    assert conn.capabilities is None
    assert ask(conn, Capa(), b"-ERR unknown command\r\n")[0] == Err("unknown command")
    assert conn.capabilities is None

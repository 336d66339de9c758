"""The SASL exchange of AUTH in both roles: challenges, responses, ``*`` and base64
(RFC 5034 §4, CONFORMANCE.md §7.3).  The mechanisms themselves are tested in
tests/sasl."""

from __future__ import annotations

import pytest

from pop3proto import (
    NEED_DATA,
    PAUSED,
    Auth,
    BadCommand,
    Capa,
    Connection,
    Err,
    Event,
    Greeting,
    LocalProtocolError,
    MessageStart,
    Ok,
    RemoteProtocolError,
    SaslCancel,
    SaslChallenge,
    SaslResponse,
    State,
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
    server_tx,
)
from tests.helpers import feed_through_wait as feed


def sasl_server(line: bytes = b"AUTH PLAIN\r\n") -> Connection:
    srv = new_server()
    assert isinstance(first(srv, line), Auth)
    srv.send(SaslChallenge(b""))
    return srv


@pytest.mark.parametrize("reply", [Ok(), SaslChallenge(b"more"), MessageStart()])
def test_sasl_cancel_must_be_answered_with_err(reply: Event) -> None:
    """``*`` cancels, and the server may answer it only with -ERR."""
    srv = sasl_server()
    assert first(srv, b"*\r\n") == SaslCancel()
    with pytest.raises(LocalProtocolError):
        srv.send(reply)


def test_sasl_cancel_round_trip() -> None:
    """``*`` then -ERR puts both sides back in AUTHORIZATION, as if AUTH never happened."""
    pair = ConnectionPair(greeting=Greeting(GREETING_TEXT))
    pair.command(Auth("CRAM-MD5"))
    assert pair.reply(SaslChallenge(b"<1.2@host>")) == [SaslChallenge(b"<1.2@host>"), PAUSED]
    assert pair.client.send(SaslCancel()) == b"*\r\n"
    assert feed(pair.server, b"*\r\n") == [SaslCancel(), PAUSED]
    assert pair.reply(Err("cancelled")) == [Err("cancelled"), NEED_DATA]
    assert pair.client.state is pair.server.state is State.AUTHORIZATION
    assert pair.command(Capa())[0] == Capa()


def test_sasl_equals_initial_vs_later_response() -> None:
    """``=`` is an empty initial response but invalid later, where an empty response is an empty
    line."""
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
    """A response in bad base64 is a BadCommand, answerable only with Err."""
    srv = sasl_server()
    ev = first(srv, line + b"\r\n")
    assert isinstance(ev, BadCommand)
    srv.send(Err())
    assert srv.state is State.AUTHORIZATION


@pytest.mark.parametrize("line", [b"AUTH PLAIN =AAA", b"AUTH PLAIN AAA=BBBB", b"AUTH PLAIN AA AA"])
def test_sasl_bad_base64_initial_response(line: bytes) -> None:
    """An initial response in bad base64, or with an inner space, is a BadCommand."""
    ev = bad_server_line(line + b"\r\n", "AUTHORIZATION")
    assert ev.line == line


def test_sasl_bad_base64_challenge_lets_the_client_cancel() -> None:
    """A challenge the client cannot decode arrives marked malformed, and the only answer is
    ``*`` (RFC 5034 §4)."""
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
    """A bare ``+`` is an empty challenge; ``+x`` is malformed."""
    conn = new_client()
    assert ask(conn, Auth("PLAIN"), b"+\r\n") == [SaslChallenge(b""), PAUSED]
    conn = new_client()
    conn.send(Auth("PLAIN"))
    conn.receive_data(b"+AAAA\r\n")
    with pytest.raises(RemoteProtocolError):
        conn.next_event()


def test_sasl_ok_with_data() -> None:
    """``+OK`` carries no SASL data: its text is status text, and the client enters TRANSACTION."""
    conn = new_client()
    evs = ask(conn, Auth("PLAIN", b"\0a\0b"), b"+OK dGVzdA==\r\n")
    assert evs == [Ok("dGVzdA=="), NEED_DATA]
    assert conn.state is State.TRANSACTION


def test_sasl_initial_response_for_a_server_first_mechanism() -> None:
    """An initial response for a server-first mechanism reaches the application, which answers
    -ERR."""
    pair = ConnectionPair(greeting=Greeting(GREETING_TEXT))
    assert pair.command(Auth("CRAM-MD5", b"x"))[0] == Auth("CRAM-MD5", b"x")
    assert pair.server.state is State.SASL
    assert pair.reply(Err("no initial response allowed"))[0] == Err("no initial response allowed")
    assert pair.client.state is pair.server.state is State.AUTHORIZATION


@pytest.mark.parametrize("state", ["AUTHORIZATION", "TRANSACTION"])
def test_sasl_plus_line_outside_auth(state: str) -> None:
    """A ``+ `` line outside AUTH is a RemoteProtocolError."""
    conn = new_client() if state == "AUTHORIZATION" else client_tx()
    conn.send(Capa())
    conn.receive_data(b"+ AAAA\r\n")
    with pytest.raises(RemoteProtocolError):
        conn.next_event()


def test_sasl_server_cannot_challenge_outside_auth() -> None:
    """A server may send a SaslChallenge only to answer AUTH."""
    srv = server_tx()
    first(srv, b"NOOP\r\n")
    with pytest.raises(LocalProtocolError):
        srv.send(SaslChallenge(b""))

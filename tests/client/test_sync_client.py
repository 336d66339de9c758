"""sync.Client over real sockets on 127.0.0.1 against a threaded fake server.

:class:`~tests.helpers.ThreadedServer` serves :class:`~tests.helpers.FakeSession`
on an ephemeral port, one connection after another, doing STLS and implicit
TLS with ``trustme`` certificates.
"""

from __future__ import annotations

import hashlib
import socket
import ssl
import time
import tracemalloc

import pytest

import pop3proto
from pop3proto import State
from pop3proto.adapters.client._batch import RetrieveBatch
from pop3proto.adapters.client._errors import ConnectionLost, ProtocolViolation, TLSUnavailable
from pop3proto.adapters.sync import (
    AuthenticationFailed,
    Client,
    CommandFailed,
    InsecureAuthenticationRefused,
    MailboxStatus,
    POP3Error,
)
from tests.helpers import (
    FAKE_MESSAGES,
    PASSWORD,
    FakeConfig,
    ThreadedServer,
    expected_body,
    serve,
)

# ---------------------------------------------------------------------------
# Plain, STLS, implicit TLS
# ---------------------------------------------------------------------------


def test_plain_session_end_to_end() -> None:
    with serve() as server, Client("127.0.0.1", server.port, tls="none", timeout=10) as client:
        assert client.greeting == pop3proto.Greeting(server.config.greeting)
        assert not client.tls
        # Loopback: password methods are allowed, the strongest is picked.
        assert client.login("alice", PASSWORD) == "SCRAM-SHA-256"
        sizes = {n: len(m) for n, m in enumerate(FAKE_MESSAGES, 1)}
        assert client.stat() == MailboxStatus(len(FAKE_MESSAGES), sum(sizes.values()))
        assert client.list() == sizes
        assert client.uidl() == {n: f"uid-{n:04d}" for n in sizes}
        listing = client.listing(status=True)
        assert listing.sizes == sizes and listing.uids == client.uidl()
        assert listing.status == client.stat()
        assert client.size(1) == sizes[1] and client.uid(2) == "uid-0002"
        for number, message in enumerate(FAKE_MESSAGES, 1):
            assert client.retrieve(number) == expected_body(message)
        assert client.top(1, 0) == b"Subject: one\r\n\r\n"
        client.noop()
        client.delete(2)
        client.reset()
        client.delete(3)
        assert client.state is State.TRANSACTION
    assert server.session.committed == [3]
    assert client.sock is None


def test_starttls_is_the_default_and_verifies_the_certificate(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    config = FakeConfig(stls=True, sasl=("PLAIN",))
    with serve(config, tls_context=server_context) as server:
        with Client("127.0.0.1", server.port, ssl_context=client_context, timeout=10) as client:
            assert client.tls_mode == "starttls" and client.tls
            assert isinstance(client.sock, ssl.SSLSocket)
            assert client.capabilities().sasl == ("PLAIN",)
            assert client.login("alice", PASSWORD) == "PLAIN"
            assert client.retrieve(2) == expected_body(FAKE_MESSAGES[1])
        assert server.session.conn.tls
        assert server.received.startswith(b"CAPA\r\nSTLS\r\n")
        # After the handshake nothing was sent in the clear.
        assert PASSWORD.encode() not in bytes(server.received)


def test_starttls_checks_the_host_name(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    config = FakeConfig(stls=True)
    with (
        serve(config, tls_context=server_context) as server,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        Client(
            "127.0.0.1",
            server.port,
            ssl_context=client_context,
            server_hostname="pop.example.org",
            timeout=10,
        )


def test_starttls_required_but_not_offered(client_context: ssl.SSLContext) -> None:
    with serve(FakeConfig(stls=False)) as server, pytest.raises(TLSUnavailable):
        Client("127.0.0.1", server.port, tls="starttls", ssl_context=client_context, timeout=10)
    assert server.received == b"CAPA\r\n"


def test_implicit_tls(server_context: ssl.SSLContext, client_context: ssl.SSLContext) -> None:
    config = FakeConfig(implicit_tls=True, sasl=("LOGIN",), greeting="hi")
    with (
        serve(config, tls_context=server_context) as server,
        Client(
            "localhost", server.port, tls="implicit", ssl_context=client_context, timeout=10
        ) as client,
    ):
        assert client.tls and isinstance(client.sock, ssl.SSLSocket)
        assert client.login("alice", PASSWORD) == "LOGIN"
        assert [b for _, b in client.retrieve_many([1, 2])] == [
            expected_body(FAKE_MESSAGES[0]),
            expected_body(FAKE_MESSAGES[1]),
        ]
    # Nothing was marked, so the exit did not wait for QUIT's reply: the
    # server has handled it once its thread is joined.
    assert server.session.committed == []


def test_untrusted_certificate_is_refused(server_context: ssl.SSLContext) -> None:
    config = FakeConfig(implicit_tls=True)
    with (
        serve(config, tls_context=server_context) as server,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        Client("127.0.0.1", server.port, tls="implicit", timeout=10)


def test_password_refused_without_tls_to_a_remote_host() -> None:
    # The peer is loopback, so pretend otherwise the way an adapter would
    # see a remote peer: the core's loopback verdict.
    with (
        serve(FakeConfig(sasl=("PLAIN",), greeting="hi")) as server,
        Client("127.0.0.1", server.port, tls="none", timeout=10) as client,
    ):
        client.core.loopback = False
        with pytest.raises(InsecureAuthenticationRefused):
            client.login("alice", PASSWORD)
        assert client.login("alice", PASSWORD, allow_insecure=True) == "PLAIN"
    assert server.received.startswith(b"CAPA\r\nAUTH PLAIN")


# ---------------------------------------------------------------------------
# Streaming and pipelining
# ---------------------------------------------------------------------------


class HashSink:
    """A file-like sink that keeps only a digest and a length."""

    def __init__(self) -> None:
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        return len(data)


def big_message(size: int) -> bytes:
    line = b".dotted line that the server must stuff " + b"x" * 40 + b"\r\n"
    body = b"Subject: big\r\n\r\n" + line * (size // len(line))
    return body + b"..\r\n.\r\n"


def test_retrieve_into_streams_with_bounded_memory() -> None:
    message = big_message(20 * 1024 * 1024)
    expected = hashlib.sha256(message).hexdigest()
    config = FakeConfig(messages=[message], sasl=(), greeting="hi")
    with serve(config) as server, Client("127.0.0.1", server.port, tls="none") as client:
        client.login("alice", PASSWORD)
        sink = HashSink()
        tracemalloc.start()
        try:
            octets = client.retrieve_into(1, sink)  # type: ignore[arg-type]
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert octets == sink.size == len(message)
    assert sink.digest.hexdigest() == expected
    assert peak < 5 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"


@pytest.mark.parametrize("pipelining", [True, False])
def test_retrieve_many_over_sockets(pipelining: bool) -> None:
    # Large enough that the server blocks writing while the client still
    # has RETRs to send: the bounded window must prevent a deadlock.
    messages = [b"Subject: %d\r\n\r\n" % n + b".x\r\n" * (150_000 + n) for n in range(12)]
    config = FakeConfig(messages=messages, pipelining=pipelining, sasl=(), greeting="hi")
    with serve(config) as server, Client("127.0.0.1", server.port, tls="none", window=4) as client:
        client.login("alice", PASSWORD)
        got = list(client.retrieve_many(range(1, 13)))
    assert [n for n, _ in got] == list(range(1, 13))
    assert all(body == messages[n - 1] for n, body in got)
    retrs = bytes(server.received).count(b"RETR")
    assert retrs == 12


def test_retrieve_many_into_sink_marks_message_ends() -> None:
    config = FakeConfig(sasl=(), greeting="hi", chunk=7)
    with serve(config) as server, Client("127.0.0.1", server.port, tls="none") as client:
        client.login("alice", PASSWORD)
        calls: list[tuple[int, bytes]] = []
        assert client.retrieve_many_into([2, 4, 1], lambda n, data: calls.append((n, data))) == 3
    bodies: dict[int, bytes] = {}
    ends = []
    for number, data in calls:
        if data:
            assert number not in ends
            bodies[number] = bodies.get(number, b"") + data
        else:
            ends.append(number)
    assert ends == [2, 4, 1]
    assert bodies == {2: expected_body(FAKE_MESSAGES[1]), 1: expected_body(FAKE_MESSAGES[0])}


def test_retrieve_many_error_among_replies_read_ahead() -> None:
    """A -ERR among replies read ahead (another command ran mid-batch) is
    raised in its turn, after the messages before it, in bulk or not."""
    config = FakeConfig(sasl=(), greeting="hi")
    with serve(config) as server, Client("127.0.0.1", server.port, tls="none") as client:
        client.login("alice", PASSWORD)
        messages = client.retrieve_many([1, 2, 42, 3])
        assert next(messages) == (1, expected_body(FAKE_MESSAGES[0]))
        client.noop()  # reads every reply still owed to the batch first
        assert next(messages) == (2, expected_body(FAKE_MESSAGES[1]))
        with pytest.raises(CommandFailed) as failed:
            next(messages)
        assert failed.value.response == pop3proto.Err("no such message")
        client.noop()  # the session goes on
        assert client.retrieve(3) == expected_body(FAKE_MESSAGES[2])


def test_leaving_retrieve_many_early_then_more_commands() -> None:
    config = FakeConfig(messages=[b"m%d\r\n" % n for n in range(30)], sasl=(), greeting="hi")
    with serve(config) as server, Client("127.0.0.1", server.port, tls="none") as client:
        client.login("alice", PASSWORD)
        for number, _body in client.retrieve_many(range(1, 31), window=8):
            if number == 3:
                break
        assert client.retrieve(10) == b"m9\r\n"
        for number, _ in client.retrieve_many([5, 6]):
            client.delete(number)
        assert client.quit() is True
    assert server.session.committed == [5, 6]


def test_retrieve_many_after_close_takes_nothing_more(monkeypatch: pytest.MonkeyPatch) -> None:
    """Replies already received are not handed out once the client is
    closed, not even those the runner took from the batch in bulk."""
    asked: list[int] = []
    take = RetrieveBatch.take_all_buffered

    def spy(self: RetrieveBatch) -> list[tuple[int, bytes]]:
        taken = take(self)
        asked.append(len(taken))
        return taken

    monkeypatch.setattr(RetrieveBatch, "take_all_buffered", spy)
    config = FakeConfig(messages=[b"m%d\r\n" % n for n in range(10)], sasl=(), greeting="hi")
    with serve(config) as server, Client("127.0.0.1", server.port, tls="none") as client:
        client.login("alice", PASSWORD)
        messages = client.retrieve_many(range(1, 11), window=8)
        assert next(messages) == (1, b"m0\r\n")
        assert next(messages)[0] == 2
        assert any(asked)  # the fast path is used while open...
        asked.clear()
        client.close()
        with pytest.raises(ConnectionLost, match="closed"):
            next(messages)
        assert not asked  # ... and not once closed


def test_byte_for_byte_including_dot_lines() -> None:
    tricky = [
        b".\r\n",
        b"..\r\n...\r\n.x\r\n",
        b"line\r\n.\r\nafter terminator-looking line\r\n",
        b"\r\n.\r\n\r\n",
        bytes(range(256)) + b"\r\n",
    ]
    config = FakeConfig(messages=tricky, sasl=(), greeting="hi", chunk=3)
    with serve(config) as server, Client("127.0.0.1", server.port, tls="none") as client:
        client.login("alice", PASSWORD)
        for number, message in enumerate(tricky, 1):
            assert client.retrieve(number) == expected_body(message)
        assert [b for _, b in client.retrieve_many(range(1, 6))] == [
            expected_body(m) for m in tricky
        ]


# ---------------------------------------------------------------------------
# Errors and the end of the session
# ---------------------------------------------------------------------------


def test_context_manager_exit_by_exception_does_not_commit() -> None:
    with (
        serve(FakeConfig(sasl=(), greeting="hi")) as server,
        pytest.raises(KeyError),
        Client("127.0.0.1", server.port, tls="none") as client,
    ):
        client.login("alice", PASSWORD)
        client.delete(1)
        raise KeyError("boom")
    assert server.session.deleted == {1}
    assert server.session.committed is None  # no QUIT, no UPDATE (RFC 1939 §6)


def test_context_manager_exit_without_deletions_does_not_wait_for_quit() -> None:
    """Nothing marked: QUIT is sent and the socket closed at once (its
    reply confirms nothing); with a deletion the exit waits for the +OK."""
    with serve(FakeConfig(sasl=(), greeting="hi")) as server:
        with Client("127.0.0.1", server.port, tls="none") as client:
            client.login("alice", PASSWORD)
            sock = client.sock
        assert client.sock is None and sock is not None and sock.fileno() == -1
    assert server.received.endswith(b"QUIT\r\n")
    assert server.session.committed == []
    with serve(FakeConfig(sasl=(), greeting="hi")) as server:
        with Client("127.0.0.1", server.port, tls="none") as client:
            client.login("alice", PASSWORD)
            client.delete(2)
        # Waited: the commit is known before the server's thread ends.
        assert server.session.committed == [2]


def test_errors_are_typed() -> None:
    with (
        serve(FakeConfig(sasl=(), greeting="hi")) as server,
        Client("127.0.0.1", server.port, tls="none") as client,
    ):
        with pytest.raises(AuthenticationFailed) as auth:
            client.login("alice", "wrong")
        assert "wrong" not in str(auth.value)
        client.login("alice", PASSWORD)
        with pytest.raises(CommandFailed) as failed:
            client.retrieve(42)
        assert isinstance(failed.value, POP3Error)
        assert failed.value.response == pop3proto.Err("no such message")
        with pytest.raises(ProtocolViolation):
            client.utf8()  # AUTHORIZATION only
        client.noop()


def test_quit_without_reply_is_outcome_unknown() -> None:
    config = FakeConfig(sasl=(), greeting="hi", quit_no_reply=True)
    with serve(config) as server:
        client = Client("127.0.0.1", server.port, tls="none")
        client.login("alice", PASSWORD)
        client.delete(1)
        with pytest.raises(ConnectionLost) as info:
            client.quit()
        assert info.value.outcome_unknown
        assert client.sock is None


def test_timeouts() -> None:
    def silent(sock: socket.socket, server: ThreadedServer) -> None:
        sock.sendall(b"+OK hi\r\n")
        server._stop.wait(5)

    with pytest.raises(ValueError):
        Client("127.0.0.1", 1, timeout=0)
    with serve(handler=silent) as server:
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            Client("127.0.0.1", server.port, tls="starttls", timeout=0.3)
        assert time.monotonic() - start < 3
        server._stop.set()
    with serve() as server, Client("127.0.0.1", server.port, tls="none") as client:
        assert client.sock is not None and client.sock.gettimeout() == 60.0


def test_repr_and_close_are_safe() -> None:
    with serve() as server:
        client = Client("127.0.0.1", server.port, tls="none")
        assert "AUTHORIZATION" in repr(client)
        client.close()
        client.close()
        assert "closed" in repr(client)
        with pytest.raises(ConnectionLost):
            client.capabilities(refresh=True)

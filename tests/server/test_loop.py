"""The loop every server runs (adapters/server/_loop.py): I/O-free, then the
three runtimes checked against its closing policy over real sockets."""

from __future__ import annotations

import logging
import time
from collections.abc import Generator

import pytest

from pop3proto.adapters._seam import Receive, Send, StartTLS
from pop3proto.adapters.mailstore._memory import MemoryBackend
from pop3proto.adapters.mailstore._users import DictAuthenticator
from pop3proto.adapters.server import _loop
from pop3proto.adapters.server._config import EndReason, ServerConfig, SessionStats
from pop3proto.adapters.server._loop import (
    FLUSH_SIZE,
    Closing,
    LoopRequest,
    closing,
    serve_session,
)
from pop3proto.adapters.server._session import ServerSession
from tests.helpers import (
    PASSWORD,
    RUNTIMES,
    USER,
    FlakyBackend,
    FlakyMaildrop,
    read_to_eof,
    recv_until,
    running_server,
)

Loop = Generator[LoopRequest, "bytes | None", None]
BIG = b"Subject: big\r\n\r\n" + b"".join(b"line %06d of a long body\r\n" % i for i in range(12000))
LOGIN = f"USER {USER}\r\nPASS {PASSWORD}\r\n".encode()


def make_session(backend: object = None, **config: object) -> ServerSession:
    store = (
        backend if backend is not None else MemoryBackend({USER: [b"Subject: a\n\nbody\n", BIG]})
    )
    return ServerSession(
        store,  # type: ignore[arg-type]
        DictAuthenticator({USER: PASSWORD}),
        ServerConfig(hostname="test.example", **config),  # type: ignore[arg-type]
        is_loopback=True,
    )


def started(session: ServerSession) -> Loop:
    """A loop past its greeting, waiting for the first read."""
    loop = serve_session(session)
    greeting = next(loop)
    assert isinstance(greeting, Send) and greeting.data.startswith(b"+OK ")
    assert loop.send(None) == Receive()
    return loop


def writes_until_read(loop: Loop, data: bytes) -> list[bytes]:
    """Answer the pending read with *data*; the writes up to the next read."""
    writes = []
    request = loop.send(data)
    while not isinstance(request, Receive):
        assert isinstance(request, Send), request
        writes.append(request.data)
        request = loop.send(None)
    return writes


# ---------------------------------------------------------------------------
# The loop, I/O-free
# ---------------------------------------------------------------------------


def test_greeting_goes_out_before_the_first_read() -> None:
    """The greeting is the first write, then the loop reads."""
    session = make_session()
    started(session)
    assert session.stats.bytes_sent > 0 and not session.closed


def test_replies_to_pipelined_commands_go_out_in_one_write() -> None:
    """The replies to a batch of pipelined commands are joined into one write."""
    loop = started(make_session())
    writes = writes_until_read(loop, LOGIN + b"STAT\r\nLIST\r\nNOOP\r\n")
    assert len(writes) == 1
    replies = writes[0]
    assert replies.startswith(b"+OK send PASS\r\n+OK maildrop has 2 messages (")
    assert b"\r\n+OK 2 " in replies and b"\r\n1 20\r\n2 " in replies
    assert replies.endswith(b"\r\n.\r\n+OK\r\n")


def test_a_long_body_goes_out_in_writes_of_flush_size() -> None:
    """A body longer than FLUSH_SIZE is written each time FLUSH_SIZE octets are gathered."""
    loop = started(make_session())
    writes_until_read(loop, LOGIN)
    writes = writes_until_read(loop, b"RETR 2\r\n")
    assert len(writes) >= len(BIG) // FLUSH_SIZE
    assert all(len(w) >= FLUSH_SIZE for w in writes[:-1])
    assert all(len(w) < 2 * FLUSH_SIZE for w in writes)
    wire = b"".join(writes)
    assert wire.startswith(b"+OK %d octets\r\n" % len(BIG)) and wire.endswith(b"\r\n.\r\n")
    assert len(wire) == len(f"+OK {len(BIG)} octets\r\n") + len(BIG) + 3


def test_stls_reply_is_written_before_the_handshake() -> None:
    """+OK to STLS is written, then TLS is asked for; the session then runs over TLS."""
    session = make_session(tls_available=True)
    loop = started(session)
    request = loop.send(b"CAPA\r\nSTLS\r\n")
    assert isinstance(request, Send) and request.data.endswith(b"+OK Begin TLS negotiation now\r\n")
    assert loop.send(None) == StartTLS()
    assert loop.send(None) == Receive()
    assert session.tls and session.stats.tls and not session.closed


def test_plaintext_buffered_before_the_handshake_ends_the_session() -> None:
    """Octets found instead of a handshake after STLS end the session (RFC 2595 §4)."""
    session = make_session(tls_available=True)
    loop = started(session)
    assert isinstance(loop.send(b"STLS\r\n"), Send)
    assert loop.send(None) == StartTLS()
    with pytest.raises(StopIteration):
        loop.send(b"USER injected\r\n")
    assert session.closed and not session.tls
    assert session.stats.reason == EndReason.PROTOCOL_ERROR


def test_idle_timeout_writes_the_last_word_and_ends() -> None:
    """A read answered None (the idle timeout) writes the session's -ERR and ends the loop."""
    session = make_session()
    loop = started(session)
    last = loop.send(None)
    assert last == Send(b"-ERR disconnected for inactivity\r\n")
    with pytest.raises(StopIteration):
        loop.send(None)
    assert session.closed and session.stats.reason == "timeout"


def test_loop_ends_after_quit() -> None:
    """After QUIT the loop writes the reply and ends without reading again."""
    session = make_session()
    loop = started(session)
    writes_until_read(loop, LOGIN)
    request = loop.send(b"DELE 1\r\nQUIT\r\n")
    assert isinstance(request, Send) and request.data.endswith(b"+OK bye (1 messages deleted)\r\n")
    with pytest.raises(StopIteration):
        loop.send(None)
    assert session.stats.reason is EndReason.QUIT


def test_closing_the_loop_mid_body_closes_the_message(monkeypatch: pytest.MonkeyPatch) -> None:
    """A runtime that stops in the middle of a body (a failed write) closes the message read."""
    monkeypatch.setattr(_loop, "FLUSH_SIZE", 100)
    maildrop = FlakyMaildrop()
    session = make_session(FlakyBackend(maildrop), chunk_size=100)
    loop = started(session)
    writes_until_read(loop, LOGIN)
    request = loop.send(b"RETR 1\r\n")
    assert isinstance(request, Send) and request.data.startswith(b"+OK")
    assert maildrop.chunks_read < 10 and maildrop.stream_closed == 0
    loop.close()
    assert maildrop.stream_closed == 1
    session.connection_lost()
    assert maildrop.closed and maildrop.committed is None


# ---------------------------------------------------------------------------
# The closing policy
# ---------------------------------------------------------------------------

#: The specification: how the transport is closed after each end reason.
CLOSINGS = {
    EndReason.QUIT: Closing.LINGER,
    EndReason.TIMEOUT: Closing.LINGER,
    EndReason.TOO_MANY_BAD_COMMANDS: Closing.LINGER,
    EndReason.TOO_MANY_AUTH_FAILURES: Closing.LINGER,
    EndReason.EOF: Closing.CLOSE,
    EndReason.PROTOCOL_ERROR: Closing.CLOSE,
    EndReason.CONNECTION_LOST: Closing.ABORT,
    EndReason.IO_ERROR: Closing.ABORT,
}


def test_every_end_reason_has_a_closing() -> None:
    """Each end reason maps to its close; linger 0 closes instead; shutting down aborts."""
    assert set(CLOSINGS) == set(EndReason)
    for reason, how in CLOSINGS.items():
        assert closing(reason, abandoned=False, linger=1.0) is how, reason
        assert closing(reason.value, abandoned=False, linger=1.0) is how, reason
        unlingered = Closing.CLOSE if how is Closing.LINGER else how
        assert closing(reason, abandoned=False, linger=0.0) is unlingered, reason
        assert closing(reason, abandoned=True, linger=1.0) is Closing.ABORT, reason


def test_end_reasons_read_as_plain_words() -> None:
    """An EndReason equals, prints, formats and logs as its plain-word value."""
    assert EndReason.QUIT == "quit" and EndReason("I/O error") is EndReason.IO_ERROR
    assert str(EndReason.IO_ERROR) == "I/O error" and f"{EndReason.EOF}" == "eof"
    record = logging.LogRecord("x", logging.INFO, "", 0, "reason=%s", (EndReason.EOF,), None)
    assert record.getMessage() == "reason=eof"  # as the session-end log line reads
    assert SessionStats().reason == ""


# ---------------------------------------------------------------------------
# Every runtime follows the policy (a test that fails if one drifts)
# ---------------------------------------------------------------------------

#: Long enough that a lingering server is plainly still there.
LINGER = 30.0


def _ended(stats: list[SessionStats], timeout: float = 10.0) -> SessionStats:
    deadline = time.monotonic() + timeout
    while not stats and time.monotonic() < deadline:
        time.sleep(0.005)
    assert len(stats) == 1, stats
    return stats[0]


@pytest.mark.parametrize("kind", RUNTIMES)
@pytest.mark.parametrize("ending", ["quit", "timeout"])
def test_runtimes_linger_after_closing_first(kind: str, ending: str) -> None:
    """After QUIT or the idle timeout a runtime half-closes and drains while the client stays."""
    ended: list[SessionStats] = []
    config = ServerConfig(on_session_end=ended.append, idle_timeout=0.3)
    backend = MemoryBackend({USER: [b"Subject: a\n\nbody\n"]})
    with running_server(kind, backend, config=config, linger=LINGER) as running:
        sock = running.connect()
        try:
            recv_until(sock, lambda data: data.endswith(b"\r\n"))
            if ending == "quit":
                sock.sendall(b"QUIT\r\n")
            data = read_to_eof(sock)  # the server's half-close
            assert data.startswith(b"+OK bye" if ending == "quit" else b"-ERR disconnected")
            assert _ended(ended).reason == ending
            time.sleep(0.3)
            assert running.active == 1, "the server did not linger"
        finally:
            sock.close()
        running.wait_idle()  # the drain sees the client's end


@pytest.mark.parametrize("kind", RUNTIMES)
def test_runtimes_drop_at_once_after_a_maildrop_error(kind: str) -> None:
    """After the maildrop fails mid-body a runtime closes at once, with no lingering close."""
    ended: list[SessionStats] = []
    config = ServerConfig(on_session_end=ended.append, chunk_size=100)
    with running_server(
        kind, FlakyBackend(FlakyMaildrop(fail_after=3)), config=config, linger=LINGER
    ) as running:
        sock = running.connect()
        try:
            sock.sendall(LOGIN + b"RETR 1\r\n")
            data = read_to_eof(sock)
            assert not data.endswith(b"\r\n.\r\n")
            assert _ended(ended).reason is EndReason.IO_ERROR
            running.wait_idle(timeout=LINGER / 3)  # while the client still holds its socket
        finally:
            sock.close()


def test_a_session_that_failed_to_start_still_ends() -> None:
    """Closing a loop that never started ends its session as lost, without UPDATE."""
    session = make_session()
    loop = serve_session(session)
    loop.close()
    session.connection_lost()
    assert session.closed and session.stats.reason == "connection lost"


def test_on_login_is_called_before_the_reply_that_says_so() -> None:
    """The connection counts as a session before the client can know it
    logged in: a newcomer must never evict it (SECURITY.md "Connection
    admission")."""
    calls: list[bool] = []
    session = make_session()
    loop = serve_session(session, lambda: calls.append(session.user is not None))
    assert isinstance(next(loop), Send)
    assert loop.send(None) == Receive()
    request = loop.send(f"USER {USER}\r\n".encode())
    assert isinstance(request, Send) and not calls  # USER alone is no login
    assert loop.send(None) == Receive()
    request = loop.send(f"PASS {PASSWORD}\r\nNOOP\r\n".encode())
    assert isinstance(request, Send) and b"+OK" in request.data
    assert calls == [True]
    assert loop.send(None) == Receive()
    request = loop.send(b"NOOP\r\n")
    assert calls == [True]  # once
    loop.close()


def test_on_login_before_a_large_flush() -> None:
    """Replies over FLUSH_SIZE go out mid-batch: the login is noted first."""
    calls: list[str] = []
    session = make_session()
    loop = serve_session(session, lambda: calls.append("login"))
    next(loop)
    assert loop.send(None) == Receive()
    request = loop.send(LOGIN + b"RETR 2\r\n")
    assert isinstance(request, Send) and len(request.data) >= FLUSH_SIZE
    assert calls == ["login"]
    loop.close()

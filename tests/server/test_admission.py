"""Connection admission on the three servers (SECURITY.md "Connection admission").

Each test would fail on a server that counted connections only after the
TLS handshake, refused newcomers when idle unauthenticated connections
filled the pool, had no per-address limits, or let a trickle of octets
extend the idle timer.  Small limits and short deadlines keep them quick;
the assertions leave wide margins for a busy machine.
"""

from __future__ import annotations

import errno
import logging
import poplib
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any

import pytest

from pop3proto.adapters.mailstore._memory import MemoryBackend
from pop3proto.adapters.server._config import ServerConfig
from pop3proto.adapters.server._sync import Server as SyncServer
from tests.helpers import (
    CLIENT_TIMEOUT,
    PASSWORD,
    RUNTIMES,
    read_to_eof,
    recv_until,
    running_server,
)

USER = "alice"


def backend() -> MemoryBackend:
    return MemoryBackend({USER: [b"Subject: hi\r\n\r\nhello\r\n"]})


def wait_for(predicate: Callable[[], bool], what: str, limit: float = 10.0) -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def connect(address: tuple[str, int], source: str = "127.0.0.1") -> socket.socket:
    return socket.create_connection(address, timeout=CLIENT_TIMEOUT, source_address=(source, 0))


def greeted(sock: socket.socket) -> bytes:
    return recv_until(sock, lambda d: d.endswith(b"\r\n"))


def log_in(address: tuple[str, int], source: str = "127.0.0.1") -> poplib.POP3:
    """A normal session: greeting, USER/PASS (loopback: plaintext allowed), STAT."""
    pop = poplib.POP3(address[0], address[1], timeout=CLIENT_TIMEOUT)
    pop.user(USER)
    pop.pass_(PASSWORD)
    assert pop.stat()[0] == 1
    return pop


def connect_waiting(running: Any) -> socket.socket:
    """Connect, then wait until every connection not logged in waits (for a
    command, or in its TLS handshake).  A newcomer evicts the oldest
    *waiting* connection first (one in the middle of a command is passed
    over), so on a loaded machine a connection whose thread has not reached
    its wait yet would be passed over for a younger one, and "the oldest"
    would not be the one asked.  The new connection's own ticket must be
    there too: ``connect()`` returns once the kernel has queued it, maybe
    before the server accepted it, and a burst accepted together would
    start waiting in any order."""
    admission = running.server.admission
    before = set(admission._preauth)
    sock = connect(running.address)
    deadline = time.monotonic() + CLIENT_TIMEOUT
    while True:
        tickets = list(admission._preauth)
        if any(t not in before for t in tickets) and all(t.evict is not None for t in tickets):
            return sock
        assert time.monotonic() < deadline, "a connection never started waiting"
        time.sleep(0.002)


@pytest.mark.parametrize("kind", RUNTIMES)
def test_idle_preauth_connections_do_not_keep_a_user_out(kind: str) -> None:
    """Item 1: with the pool full of idle connections that never log in,
    a newcomer evicts the oldest and logs in; sessions are never evicted."""
    with running_server(kind, backend(), max_connections=4) as running:
        idle = [connect_waiting(running) for _ in range(12)]
        try:
            for sock in idle[-4:]:
                assert greeted(sock).startswith(b"+OK")
            # The oldest eight were told and closed, one by one.
            for sock in idle[:8]:
                assert read_to_eof(sock).endswith(b"-ERR disconnected for inactivity\r\n")
            pop = log_in(running.address)
            # The logged-in session holds its slot against more newcomers.
            more = [connect_waiting(running) for _ in range(6)]
            for sock in more[-3:]:
                assert greeted(sock).startswith(b"+OK")
            assert pop.noop().startswith(b"+OK")
            pop.quit()
            for sock in more:
                sock.close()
        finally:
            for sock in idle:
                sock.close()
        running.wait_idle()


@pytest.mark.parametrize("kind", RUNTIMES)
def test_tls_handshakes_count_from_accept(
    kind: str, server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    """Item 2: silent connections to the implicit-TLS port hold slots
    (counted before any handshake) and the oldest is evicted, in the middle
    of its handshake, for a real client."""
    with running_server(
        kind,
        backend(),
        max_connections=3,
        ssl_context=server_context,
        implicit_tls=True,
        handshake_timeout=60.0,
    ) as running:
        silent = [connect_waiting(running) for _ in range(3)]
        try:
            wait_for(lambda: running.active == 3, "three silent connections counted")
            started = time.monotonic()
            pop = poplib.POP3_SSL(*running.address, context=client_context, timeout=CLIENT_TIMEOUT)
            pop.user(USER)
            pop.pass_(PASSWORD)
            assert pop.stat()[0] == 1
            pop.quit()
            # Evicted mid-handshake: closed (maybe with a TLS alert), no
            # plaintext line, long before the handshake timeout.
            assert b"-ERR" not in read_to_eof(silent[0])
            assert time.monotonic() - started < 10.0
            wait_for(lambda: running.active == 2, "the evicted and the served one gone")
        finally:
            for sock in silent:
                sock.close()
        running.wait_idle()


@pytest.mark.parametrize("kind", RUNTIMES)
def test_implicit_tls_handshake_times_out(kind: str, server_context: ssl.SSLContext) -> None:
    """Item 2: a connection that never starts its handshake is closed after
    the handshake timeout and stops counting."""
    with running_server(
        kind, backend(), ssl_context=server_context, implicit_tls=True, handshake_timeout=0.5
    ) as running:
        with connect(running.address) as sock:
            wait_for(lambda: running.active == 1, "the silent connection counted")
            started = time.monotonic()
            assert read_to_eof(sock, limit=20.0) == b""
            assert time.monotonic() - started < 10.0
        running.wait_idle()


@pytest.mark.parametrize("kind", RUNTIMES)
def test_stls_handshake_times_out(
    kind: str, server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    """Item 2: a client that sends STLS and then nothing is closed after
    the handshake timeout, not after the idle timeout."""
    if kind == "asyncio":
        from pop3proto.adapters.server._asyncio import STLS_SUPPORTED

        if not STLS_SUPPORTED:  # pragma: no cover - Python 3.10
            pytest.skip("STLS needs Python 3.11 on asyncio")
    config = ServerConfig(idle_timeout=60.0)
    with running_server(
        kind, backend(), config=config, ssl_context=server_context, handshake_timeout=0.5
    ) as running:
        with connect(running.address) as sock:
            assert greeted(sock).startswith(b"+OK")
            sock.sendall(b"STLS\r\n")
            assert greeted(sock).startswith(b"+OK")
            started = time.monotonic()
            read_to_eof(sock, limit=20.0)
            assert time.monotonic() - started < 10.0
        running.wait_idle()


@pytest.mark.parametrize("kind", RUNTIMES)
def test_per_address_limits(kind: str) -> None:
    """Item 1: per-address limits on unauthenticated connections and on
    logged-in sessions; another address is unaffected."""
    config = ServerConfig(max_preauth_per_ip=2, max_sessions_per_ip=1)
    refusal = b"-ERR [SYS/TEMP] too many connections from your address\r\n"
    with running_server(kind, backend(), config=config) as running:
        first, second = connect(running.address), connect(running.address)
        try:
            for sock in (first, second):
                assert greeted(sock).startswith(b"+OK")
            with connect(running.address) as third:
                assert read_to_eof(third) == refusal
            with connect(running.address, source="127.0.0.2") as other:
                assert greeted(other).startswith(b"+OK")
            first.close()
            second.close()
            wait_for(lambda: running.active == 0, "the pre-auth connections to end")
            pop = log_in(running.address)
            try:
                with connect(running.address) as extra:
                    assert read_to_eof(extra) == refusal
            finally:
                pop.quit()
        finally:
            first.close()
            second.close()
        running.wait_idle()


@pytest.mark.parametrize("kind", RUNTIMES)
def test_a_trickle_cannot_extend_a_command_line(kind: str) -> None:
    """The line deadline: one octet every 0.1 s, never a line end, is cut
    off after line_timeout although the idle timer keeps being reset."""
    config = ServerConfig(idle_timeout=30.0, line_timeout=0.6)
    with running_server(kind, backend(), config=config) as running:
        with connect(running.address) as sock:
            assert greeted(sock).startswith(b"+OK")
            started = time.monotonic()
            reply = b""
            sock.settimeout(0.1)
            while time.monotonic() - started < 10.0:
                try:
                    sock.send(b"N")
                    reply += sock.recv(100)
                except TimeoutError:
                    continue
                except OSError:
                    break
                if reply.endswith(b"\r\n"):
                    break
            elapsed = time.monotonic() - started
            assert reply == b"-ERR disconnected for inactivity\r\n"
            assert elapsed < 8.0
        running.wait_idle()


@pytest.mark.parametrize("kind", RUNTIMES)
def test_login_must_complete_within_the_login_timeout(kind: str) -> None:
    """The total pre-auth deadline: a client busy with NOOPs that never logs
    in is cut off after login_timeout; a logged-in session is not."""
    config = ServerConfig(idle_timeout=30.0, login_timeout=0.8)
    with running_server(kind, backend(), config=config) as running:
        with connect(running.address) as sock:
            assert greeted(sock).startswith(b"+OK")
            started = time.monotonic()
            replies = b""
            while time.monotonic() - started < 10.0:
                try:
                    sock.sendall(b"NOOP\r\n")
                except OSError:
                    break
                line = greeted(sock)
                replies += line
                if line.startswith(b"-ERR disconnected") or not line:
                    break
                time.sleep(0.1)
            assert replies.endswith(b"-ERR disconnected for inactivity\r\n")
            assert time.monotonic() - started < 8.0
        pop = log_in(running.address)
        time.sleep(1.2)  # past the login timeout, well inside the idle timeout
        assert pop.noop().startswith(b"+OK")
        pop.quit()
        running.wait_idle()


class _ExhaustedListener:
    """A listening socket whose accept() fails with EMFILE *failures* times."""

    def __init__(self, sock: socket.socket, failures: int) -> None:
        self.sock = sock
        self.failures = failures
        self.calls = 0

    def fileno(self) -> int:
        return self.sock.fileno()

    def accept(self) -> tuple[socket.socket, Any]:
        self.calls += 1
        if self.calls <= self.failures:
            raise OSError(errno.EMFILE, "Too many open files")
        return self.sock.accept()

    def getsockname(self) -> Any:
        return self.sock.getsockname()

    def close(self) -> None:
        self.sock.close()


def test_accept_out_of_descriptors_backs_off(caplog: pytest.LogCaptureFixture) -> None:
    """EMFILE from accept: the blocking server waits (doubling) instead of
    spinning, logs the episode once, then serves the pending client."""
    server = SyncServer(backend(), _auth(), port=0)
    listener = _ExhaustedListener(server._listener, failures=4)
    server._listener = listener  # type: ignore[assignment]
    thread = server.start()
    try:
        with caplog.at_level(logging.WARNING, logger="pop3proto.server"):
            started = time.monotonic()
            with connect(server.server_address) as sock:
                assert greeted(sock).startswith(b"+OK")
            elapsed = time.monotonic() - started
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
    assert listener.calls == 5  # four failures, then the accept: no spinning
    assert elapsed >= 0.05 + 0.1 + 0.2  # the waits between retries
    messages = [r.getMessage() for r in caplog.records]
    assert sum("backing off" in m for m in messages) == 1
    assert any("accept works again after 4 failures" in m for m in messages)


def _auth() -> Any:
    from pop3proto.adapters.mailstore._users import DictAuthenticator

    return DictAuthenticator({USER: PASSWORD})


def test_config_validation() -> None:
    for bad in (
        {"max_preauth_per_ip": 0},
        {"max_sessions_per_ip": 0},
        {"max_sessions_per_ip": True},
        {"line_timeout": 0},
        {"login_timeout": -1.0},
    ):
        with pytest.raises(ValueError, match=next(iter(bad))):
            ServerConfig(**bad)  # type: ignore[arg-type]
    config = ServerConfig(max_preauth_per_ip=None, max_sessions_per_ip=None)
    assert config.max_preauth_per_ip is None and config.line_timeout == 60.0


def test_asyncio_accept_out_of_descriptors_backs_off(caplog: pytest.LogCaptureFixture) -> None:
    """EMFILE from accept: the asyncio server's own accept loop waits
    (doubling) instead of spinning, and logs the episode once."""
    import asyncio

    from pop3proto.adapters.server._asyncio import Server as AsyncioServer

    calls = 0

    async def main() -> bytes:
        nonlocal calls
        loop = asyncio.get_running_loop()
        real = loop.sock_accept

        async def exhausted(sock: socket.socket) -> tuple[socket.socket, Any]:
            nonlocal calls
            calls += 1
            if calls <= 4:
                raise OSError(errno.EMFILE, "Too many open files")
            return await real(sock)

        loop.sock_accept = exhausted  # type: ignore[method-assign]
        async with AsyncioServer(backend(), _auth(), port=0) as server:
            address = server.server_address
            reader, writer = await asyncio.open_connection(*address)
            greeting = await asyncio.wait_for(reader.readline(), CLIENT_TIMEOUT)
            writer.close()
            return greeting

    with caplog.at_level(logging.WARNING, logger="pop3proto.server"):
        started = time.monotonic()
        greeting = asyncio.run(main())
        elapsed = time.monotonic() - started
    assert greeting.startswith(b"+OK")
    assert 5 <= calls <= 6  # four failures, the accept, the next wait: no spinning
    assert elapsed >= 0.05 + 0.1 + 0.2
    messages = [r.getMessage() for r in caplog.records]
    assert sum("backing off" in m for m in messages) == 1
    assert any("accept works again after 4 failures" in m for m in messages)


def test_trio_accept_out_of_descriptors_backs_off(caplog: pytest.LogCaptureFixture) -> None:
    """EMFILE from accept: the trio server's accept loop waits (doubling)
    instead of spinning, and logs the episode once."""
    import trio

    from pop3proto.adapters.server._trio import Server as TrioServer

    class Exhausted:
        def __init__(self, listener: Any) -> None:
            self.listener = listener
            self.calls = 0

        async def accept(self) -> Any:
            self.calls += 1
            if self.calls <= 4:
                raise OSError(errno.EMFILE, "Too many open files")
            return await self.listener.accept()

    async def main() -> tuple[bytes, int]:
        server = TrioServer(backend(), _auth(), port=0)
        sock = socket.create_server(("127.0.0.1", 0))
        listener = Exhausted(trio.SocketListener(trio.socket.from_stdlib_socket(sock)))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server._accept_loop, listener, nursery)  # type: ignore[arg-type]
            stream = await trio.open_tcp_stream(*sock.getsockname()[:2])
            with trio.fail_after(CLIENT_TIMEOUT):
                greeting = await stream.receive_some(100)
            await stream.aclose()
            nursery.cancel_scope.cancel()
        return bytes(greeting), listener.calls

    with caplog.at_level(logging.WARNING, logger="pop3proto.server"):
        started = time.monotonic()
        greeting, calls = trio.run(main)
        elapsed = time.monotonic() - started
    assert greeting.startswith(b"+OK")
    assert 5 <= calls <= 6
    assert elapsed >= 0.05 + 0.1 + 0.2
    messages = [r.getMessage() for r in caplog.records]
    assert sum("backing off" in m for m in messages) == 1
    assert any("accept works again after 4 failures" in m for m in messages)

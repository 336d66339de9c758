"""The asyncio and trio servers (adapters/server/_asyncio.py, _trio.py)
over real sockets.

Every behavioural test runs on both servers (the ``flavor`` fixture) and most
on both maildrop backends.  The client is the stdlib :mod:`poplib` (or a raw
socket), run in a worker thread (``asyncio.to_thread`` /
``trio.to_thread.run_sync``) while the server runs in the event loop of the
test: ``asyncio.run`` or ``trio.run`` inside ordinary test functions, so no
pytest plugin is needed.  Servers listen on 127.0.0.1 port 0; certificates
come from ``trustme``.
"""

from __future__ import annotations

import asyncio
import contextlib
import poplib
import socket
import ssl
import threading
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import trio

from pop3proto.adapters.mailstore._maildir import MaildirBackend
from pop3proto.adapters.mailstore._memory import MemoryBackend
from pop3proto.adapters.mailstore._users import DictAuthenticator
from pop3proto.adapters.server import _asyncio as _asyncio_server
from pop3proto.adapters.server._asyncio import Server as AsyncioServer
from pop3proto.adapters.server._config import ServerConfig, SessionStats, busy_response
from pop3proto.adapters.server._trio import Server as TrioServer
from tests.helpers import CLIENT_TIMEOUT, PASSWORD, expected_body, make_maildir, poplib_body

T = TypeVar("T")

AUTH = DictAuthenticator({"alice": PASSWORD})
MESSAGES = [
    b"Subject: one\nFrom: a@example.org\n\nbody one\n",
    b"Subject: two\n\n.starts with a dot\n..two dots\n.\nend without newline",
    b"Subject: three\r\n\r\n" + b"".join(b"line %d\r\n" % i for i in range(200)),
]


def read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


# ---------------------------------------------------------------------------
# Running a server in an event loop and a client in a thread
# ---------------------------------------------------------------------------


class Handle:
    """What a client thread knows about the server under test."""

    def __init__(self, server: AsyncioServer | TrioServer) -> None:
        self.server = server
        self.address = server.server_address

    @property
    def active(self) -> int:
        return self.server.active_connections

    def wait_idle(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while self.server.active_connections and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self.server.active_connections == 0

    def pop(self) -> poplib.POP3:
        return poplib.POP3(self.address[0], self.address[1], timeout=CLIENT_TIMEOUT)


def run_asyncio(backend: Any, client: Callable[[Handle], T], **kwargs: Any) -> T:
    async def main() -> T:
        async with AsyncioServer(backend, AUTH, port=0, **kwargs) as server:
            result = await asyncio.to_thread(client, Handle(server))
        assert server.active_connections == 0
        return result

    return asyncio.run(main())


def run_trio(backend: Any, client: Callable[[Handle], T], **kwargs: Any) -> T:
    async def main() -> T:
        server = TrioServer(backend, AUTH, port=0, **kwargs)
        async with trio.open_nursery() as nursery:
            address = await nursery.start(server.serve)
            assert address == server.server_address
            result = await trio.to_thread.run_sync(client, Handle(server))
            server.shutdown()
        assert server.active_connections == 0
        return result

    return trio.run(main)


Runner = Callable[..., Any]


@pytest.fixture(params=["asyncio", "trio"])
def flavor(request: pytest.FixtureRequest) -> Runner:
    """Run ``client(handle)`` in a thread against a server; return its result."""
    return run_asyncio if request.param == "asyncio" else run_trio


def need_stls(flavor: Runner) -> None:
    """STLS on asyncio needs StreamWriter.start_tls (Python 3.11+)."""
    if flavor is run_asyncio and not _asyncio_server.STLS_SUPPORTED:
        pytest.skip("asyncio STLS needs Python 3.11")


class Store:
    """A maildrop backend plus a way to look at what it still holds."""

    def __init__(self, kind: str, tmp_path: Path) -> None:
        self.kind = kind
        if kind == "memory":
            self.memory = MemoryBackend({"alice": MESSAGES})
            self.backend: MemoryBackend | MaildirBackend = self.memory
            self.uids = ["m1", "m2", "m3"]
            return
        path = tmp_path / "alice"
        self.maildir, self.uids = make_maildir(path, MESSAGES)
        # A small chunk size: bodies stream in many pieces.
        self.backend = MaildirBackend(path, chunk_size=7)

    def remaining(self) -> list[int]:
        """Which of MESSAGES (0-based) are still stored."""
        if self.kind == "memory":
            stored = self.memory.messages("alice")
            return [i for i, m in enumerate(MESSAGES) if m in stored]
        keys = set(self.maildir.keys())
        return [i for i, uid in enumerate(self.uids) if uid in keys]

    def unlocked(self) -> bool:
        try:
            self.backend.open("alice").close()
        except Exception:
            return False
        return True


@pytest.fixture(params=["memory", "maildir"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    return Store(request.param, tmp_path)


# ---------------------------------------------------------------------------
# Sessions
# ---------------------------------------------------------------------------


def test_full_session(flavor: Runner, store: Store) -> None:
    ended: list[SessionStats] = []

    def client(h: Handle) -> None:
        pop = h.pop()
        try:
            assert pop.getwelcome().startswith(b"+OK POP3 server ready <")
            caps = pop.capa()
            assert "USER" in caps and "PIPELINING" in caps and "STLS" not in caps
            pop.user("alice")
            pop.pass_(PASSWORD)
            count, size = pop.stat()
            assert count == 3 and size == sum(len(expected_body(m)) for m in MESSAGES)
            _, listing, _ = pop.list()
            sizes = {int(n): int(s) for n, s in (line.split() for line in listing)}
            assert sizes == {i: len(expected_body(m)) for i, m in enumerate(MESSAGES, 1)}
            _, uid_lines, _ = pop.uidl()
            assert [line.split()[1].decode() for line in uid_lines] == store.uids
            for number, message in enumerate(MESSAGES, 1):
                _, lines, octets = pop.retr(number)
                assert poplib_body(lines) == expected_body(message)  # byte for byte
                assert octets == sizes[number]
            _, top_lines, _ = pop.top(2, 1)
            assert poplib_body(top_lines) == b"Subject: two\r\n\r\n.starts with a dot\r\n"
            assert pop.dele(1).startswith(b"+OK")
            assert pop.noop() == b"+OK"
            assert pop.quit() == b"+OK bye (1 messages deleted)"
        finally:
            pop.close()
        h.wait_idle()

    flavor(store.backend, client, config=ServerConfig(on_session_end=ended.append))
    assert store.remaining() == [1, 2]
    assert store.unlocked()
    [stats] = ended
    assert stats.reason == "quit" and stats.user == "alice"
    assert stats.retrieved == 3 and stats.deleted == 1 and not stats.tls
    assert stats.peer.startswith("127.0.0.1:")


def test_apop_utf8_and_wrong_password(flavor: Runner) -> None:
    def client(h: Handle) -> None:
        pop = h.pop()
        try:
            assert pop.utf8().startswith(b"+OK")
            with pytest.raises(poplib.error_proto, match=r"\[AUTH\] authentication failed"):
                pop.apop("alice", "wrong")
            pop.apop("alice", PASSWORD)
            assert pop.stat()[0] == 1
            pop.quit()
        finally:
            pop.close()

    flavor(MemoryBackend({"alice": [b"m\n"]}), client)


def test_dropped_connection_deletes_nothing(flavor: Runner, store: Store) -> None:
    def client(h: Handle) -> None:
        pop = h.pop()
        pop.user("alice")
        pop.pass_(PASSWORD)
        pop.dele(1)
        pop.dele(2)
        pop.retr(3)
        pop.sock.close()  # no QUIT
        pop.file.close()
        h.wait_idle()
        assert store.remaining() == [0, 1, 2]
        # The lock was released: a new session works and sees everything.
        pop = h.pop()
        try:
            pop.user("alice")
            pop.pass_(PASSWORD)
            assert pop.stat()[0] == 3
            pop.quit()
        finally:
            pop.close()

    flavor(store.backend, client)
    assert store.remaining() == [0, 1, 2]


def test_in_use(flavor: Runner) -> None:
    def client(h: Handle) -> None:
        first, second = h.pop(), h.pop()
        try:
            first.user("alice")
            first.pass_(PASSWORD)
            second.user("alice")
            with pytest.raises(poplib.error_proto, match=r"\[IN-USE\]"):
                second.pass_(PASSWORD)
            first.quit()
            second.user("alice")
            second.pass_(PASSWORD)
            second.quit()
        finally:
            first.close()
            second.close()

    flavor(MemoryBackend({"alice": [b"m\n"]}), client)


def test_pipelined_commands_answered_in_order(flavor: Runner, store: Store) -> None:
    sizes = [len(expected_body(m)) for m in MESSAGES]
    stuffed = [expected_body(m).replace(b"\r\n.", b"\r\n..") for m in MESSAGES]
    stuffed = [b".." + s[1:] if s.startswith(b".") else s for s in stuffed]
    commands = (
        b"USER alice\r\nPASS " + PASSWORD.encode() + b"\r\n"
        b"STAT\r\nLIST 2\r\nUIDL 3\r\nRETR 2\r\nRETR 1\r\nDELE 3\r\nNOOP\r\nBOGUS\r\n"
        b"RETR 3\r\nRSET\r\nQUIT\r\n"
    )
    expected = (
        b"+OK send PASS\r\n"
        b"+OK maildrop has 3 messages (%d octets)\r\n"
        b"+OK 3 %d\r\n"
        b"+OK 2 %d\r\n"
        b"+OK 3 %s\r\n"
        b"+OK %d octets\r\n%s.\r\n"
        b"+OK %d octets\r\n%s.\r\n"
        b"+OK message 3 deleted\r\n"
        b"+OK\r\n"
        b"-ERR unknown command\r\n"
        b"-ERR message already deleted\r\n"
        b"+OK maildrop has 3 messages (%d octets)\r\n"
        b"+OK bye (0 messages deleted)\r\n"
    ) % (
        sum(sizes),
        sum(sizes),
        sizes[1],
        store.uids[2].encode(),
        sizes[1],
        stuffed[1],
        sizes[0],
        stuffed[0],
        sum(sizes),
    )

    def client(h: Handle) -> bytes:
        with socket.create_connection(h.address, timeout=CLIENT_TIMEOUT) as sock:
            sock.sendall(commands)  # all at once, before even the greeting
            return read_all(sock)

    data = flavor(store.backend, client)
    greeting, _, rest = data.partition(b"\r\n")
    assert greeting.startswith(b"+OK POP3 server ready <")
    assert rest == expected
    assert store.remaining() == [0, 1, 2]


# ---------------------------------------------------------------------------
# TLS
# ---------------------------------------------------------------------------


def test_stls(
    flavor: Runner,
    store: Store,
    server_context: ssl.SSLContext,
    client_context: ssl.SSLContext,
) -> None:
    need_stls(flavor)
    ended: list[SessionStats] = []

    def client(h: Handle) -> None:
        pop = h.pop()
        try:
            caps = pop.capa()
            assert "STLS" in caps and "USER" not in caps
            with pytest.raises(poplib.error_proto, match="plaintext authentication disallowed"):
                pop.user("alice")
            pop.stls(client_context)
            assert isinstance(pop.sock, ssl.SSLSocket)
            caps = pop.capa()
            assert "STLS" not in caps and "USER" in caps and "PLAIN" in caps["SASL"]
            pop.user("alice")
            pop.pass_(PASSWORD)
            _, lines, _ = pop.retr(3)
            assert poplib_body(lines) == expected_body(MESSAGES[2])
            pop.dele(3)
            pop.quit()
        finally:
            pop.close()
        h.wait_idle()

    flavor(
        store.backend,
        client,
        ssl_context=server_context,
        trust_loopback=False,  # behave as for a remote client
        config=ServerConfig(on_session_end=ended.append),
    )
    assert store.remaining() == [0, 1]
    assert ended[0].tls and ended[0].reason == "quit"


def test_implicit_tls(
    flavor: Runner,
    store: Store,
    server_context: ssl.SSLContext,
    client_context: ssl.SSLContext,
) -> None:
    def client(h: Handle) -> None:
        # A client that is not speaking TLS at all does not hurt the server.
        with socket.create_connection(h.address, timeout=CLIENT_TIMEOUT) as sock:
            sock.sendall(b"USER alice\r\n" * 100)
            reply = b""
            with contextlib.suppress(OSError):  # a reset is fine too
                reply = read_all(sock)
            assert b"+OK" not in reply
        pop = poplib.POP3_SSL(
            "127.0.0.1", h.address[1], context=client_context, timeout=CLIENT_TIMEOUT
        )
        try:
            caps = pop.capa()
            assert "STLS" not in caps and "USER" in caps
            pop.user("alice")
            pop.pass_(PASSWORD)
            _, lines, _ = pop.retr(2)
            assert poplib_body(lines) == expected_body(MESSAGES[1])
            pop.dele(2)
            pop.quit()
        finally:
            pop.close()
        h.wait_idle()

    flavor(
        store.backend,
        client,
        ssl_context=server_context,
        implicit_tls=True,
        trust_loopback=False,
    )
    assert store.remaining() == [0, 2]


def test_stls_injection_is_dropped(flavor: Runner, server_context: ssl.SSLContext) -> None:
    need_stls(flavor)

    def client(h: Handle) -> bytes:
        with socket.create_connection(h.address, timeout=CLIENT_TIMEOUT) as sock:
            assert sock.recv(1024).startswith(b"+OK")
            sock.sendall(b"STLS\r\nUSER alice\r\nPASS " + PASSWORD.encode() + b"\r\n")
            return read_all(sock)

    data = flavor(MemoryBackend({"alice": [b"m\n"]}), client, ssl_context=server_context)
    # Closed without running USER: in one segment (the usual case) the
    # engine refuses at once; had TCP split it, the plaintext would have
    # broken the handshake.
    assert data in (b"", b"+OK Begin TLS negotiation now\r\n")


@pytest.mark.skipif(not _asyncio_server.STLS_SUPPORTED, reason="asyncio STLS needs 3.11")
def test_asyncio_stls_plaintext_left_in_reader_is_dropped(
    monkeypatch: pytest.MonkeyPatch, server_context: ssl.SSLContext
) -> None:
    # Bytes that reach the StreamReader after the read that delivered STLS
    # (a second TCP segment) must not be handed out as if they came over
    # TLS.  Which read gets them is a matter of timing, so the reader is
    # made to hold some when STLS is answered.
    ended: list[SessionStats] = []
    real = _asyncio_server._take_buffered

    def take(reader: asyncio.StreamReader) -> bytes:
        assert real(reader) == b""
        return b"USER alice\r\n"

    monkeypatch.setattr(_asyncio_server, "_take_buffered", take)

    def client(h: Handle) -> bytes:
        with socket.create_connection(h.address, timeout=CLIENT_TIMEOUT) as sock:
            assert sock.recv(1024).startswith(b"+OK")
            sock.sendall(b"STLS\r\n")
            return read_all(sock)

    config = ServerConfig(on_session_end=ended.append)
    data = run_asyncio(MemoryBackend(), client, ssl_context=server_context, config=config)
    assert data == b"+OK Begin TLS negotiation now\r\n"
    assert ended[0].reason == "protocol error" and not ended[0].tls


def test_failed_stls_handshake(flavor: Runner, server_context: ssl.SSLContext) -> None:
    need_stls(flavor)
    ended: list[SessionStats] = []

    def client(h: Handle) -> None:
        with socket.create_connection(h.address, timeout=CLIENT_TIMEOUT) as sock:
            file = sock.makefile("rb")
            assert file.readline().startswith(b"+OK")
            sock.sendall(b"STLS\r\n")
            assert file.readline() == b"+OK Begin TLS negotiation now\r\n"
            sock.sendall(b"this is no TLS ClientHello\r\n" * 20)
            with contextlib.suppress(OSError):
                while file.read(4096):  # an alert, then the end
                    pass
            file.close()
        h.wait_idle()
        pop = h.pop()  # the server is fine
        pop.quit()
        pop.close()

    config = ServerConfig(on_session_end=ended.append)
    flavor(MemoryBackend(), client, ssl_context=server_context, config=config)
    assert [s.reason for s in ended] == ["connection lost", "quit"]
    assert not ended[0].tls


def test_commands_after_quit_do_not_destroy_its_reply(flavor: Runner) -> None:
    # More is pipelined after QUIT than the server reads before closing: a
    # plain close would answer the unread bytes with a reset, which can
    # destroy "+OK bye" in flight.  The lingering close drains them.
    def client(h: Handle) -> bytes:
        with socket.create_connection(h.address, timeout=CLIENT_TIMEOUT) as sock:
            login = b"USER alice\r\nPASS " + PASSWORD.encode() + b"\r\nQUIT\r\n"
            sock.sendall(login + b"NOOP\r\n" * 20_000)  # 120 KB
            return read_all(sock)

    data = flavor(MemoryBackend({"alice": [b"m\n"]}), client)
    assert data.endswith(
        b"+OK maildrop has 1 messages (3 octets)\r\n+OK bye (0 messages deleted)\r\n"
    )


def test_take_buffered() -> None:
    async def main() -> None:
        reader = asyncio.StreamReader()
        assert _asyncio_server._take_buffered(reader) == b""
        reader.feed_data(b"CAPA\r\nUSER x\r\n")
        assert _asyncio_server._take_buffered(reader) == b"CAPA\r\nUSER x\r\n"
        reader.feed_data(b"NOOP\r\n")
        assert await reader.read(100) == b"NOOP\r\n"

    asyncio.run(main())


# ---------------------------------------------------------------------------
# Limits
# ---------------------------------------------------------------------------


def test_connection_cap(flavor: Runner) -> None:
    def client(h: Handle) -> None:
        first = h.pop()
        try:
            # Logged in: a session is never evicted for a newcomer.
            first.user("alice")
            first.pass_(PASSWORD)
            with socket.create_connection(h.address, timeout=CLIENT_TIMEOUT) as sock:
                assert read_all(sock) == b"-ERR [SYS/TEMP] too many connections\r\n"
            assert h.active == 1
            first.quit()
        finally:
            first.close()
        h.wait_idle()
        again = h.pop()
        again.quit()
        again.close()

    flavor(MemoryBackend(), client, max_connections=1)


def test_connection_cap_implicit_tls(
    flavor: Runner, server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    def client(h: Handle) -> None:
        first = poplib.POP3_SSL(
            "127.0.0.1", h.address[1], context=client_context, timeout=CLIENT_TIMEOUT
        )
        try:
            first.user("alice")
            first.pass_(PASSWORD)
            # Counted from accept, the refusal comes before any handshake:
            # the connection is closed, with no plaintext line (RFC 8314).
            with socket.create_connection(h.address, timeout=CLIENT_TIMEOUT) as raw:
                assert read_all(raw) == b""
            first.quit()
        finally:
            first.close()

    flavor(
        MemoryBackend(),
        client,
        max_connections=1,
        ssl_context=server_context,
        implicit_tls=True,
    )


def test_idle_timeout(flavor: Runner) -> None:
    backend = MemoryBackend({"alice": [b"x\n", b"y\n"]})

    def client(h: Handle) -> None:
        with socket.create_connection(h.address, timeout=CLIENT_TIMEOUT) as sock:
            file = sock.makefile("rb")
            assert file.readline().startswith(b"+OK")
            sock.sendall(b"USER alice\r\nPASS " + PASSWORD.encode() + b"\r\nDELE 1\r\n")
            for _ in range(3):
                assert file.readline().startswith(b"+OK")
            started = time.monotonic()
            assert file.readline() == b"-ERR disconnected for inactivity\r\n"
            assert file.readline() == b""
            assert 0.1 < time.monotonic() - started < 4
            file.close()
        h.wait_idle()

    flavor(backend, client, config=ServerConfig(idle_timeout=0.2))
    assert backend.messages("alice") == [b"x\n", b"y\n"]
    assert not backend.is_locked("alice")


def test_client_that_never_reads_keeps_memory_bounded(flavor: Runner) -> None:
    # A 20 MB message to a client that reads nothing: the session is pulled
    # only as fast as the transport drains, so the server holds a few
    # chunks, not the message; after the idle timeout it gives up.
    big = b"".join(b"%07d .dotted line of a big message\n" % i for i in range(560_000))
    assert len(big) > 20_000_000
    backend = MemoryBackend({"alice": [big]})
    ended: list[SessionStats] = []

    def client(h: Handle) -> int:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.settimeout(CLIENT_TIMEOUT)
            sock.connect(h.address)
            file = sock.makefile("rb")
            assert file.readline().startswith(b"+OK")
            sock.sendall(b"USER alice\r\nPASS " + PASSWORD.encode() + b"\r\n")
            assert file.readline().startswith(b"+OK")
            assert file.readline().startswith(b"+OK")
            tracemalloc.start()
            try:
                sock.sendall(b"RETR 1\r\n")
                time.sleep(0.6)  # the server fills every buffer, then stalls
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            h.wait_idle(timeout=5)  # the send times out after idle_timeout
            return peak

    peak = flavor(
        backend, client, config=ServerConfig(idle_timeout=1.0, on_session_end=ended.append)
    )
    assert peak < 2_000_000, f"the server allocated {peak} bytes"
    [stats] = ended
    assert stats.reason == "connection lost"
    assert 0 < stats.bytes_sent < 12_000_000  # kernel buffers hold the rest
    assert not backend.is_locked("alice")
    assert backend.messages("alice") == [big]


# ---------------------------------------------------------------------------
# Life cycle
# ---------------------------------------------------------------------------


def test_asyncio_shutdown_abandons_sessions(tmp_path: Path) -> None:
    store = Store("maildir", tmp_path)
    logged_in = threading.Event()
    closed = threading.Event()

    def client(address: tuple[str, int]) -> None:
        pop = poplib.POP3(address[0], address[1], timeout=CLIENT_TIMEOUT)
        try:
            pop.user("alice")
            pop.pass_(PASSWORD)
            pop.dele(1)
            logged_in.set()
            assert closed.wait(5)
            with pytest.raises((poplib.error_proto, OSError)):
                pop.stat()
        finally:
            pop.close()

    async def main() -> tuple[str, int]:
        server = AsyncioServer(store.backend, AUTH, port=0)
        assert server.sockets == () and not server.is_serving
        with pytest.raises(RuntimeError):
            server.server_address  # noqa: B018
        await server.start()
        with pytest.raises(RuntimeError):
            await server.start()
        assert server.is_serving and len(server.sockets) == 1
        address = server.server_address
        assert repr(server) == f"<Server 127.0.0.1:{address[1]} active=0>"
        serving = asyncio.create_task(server.serve_forever())
        thread = asyncio.create_task(asyncio.to_thread(client, address))
        while not logged_in.is_set():
            await asyncio.sleep(0.01)
        assert server.active_connections == 1
        server.close()
        await serving  # returns once close() is called
        await server.wait_closed()
        assert server.active_connections == 0
        assert store.remaining() == [0, 1, 2] and store.unlocked()
        closed.set()
        await thread
        return address

    address = asyncio.run(main())
    with pytest.raises(OSError):
        socket.create_connection(address, timeout=1)


def test_asyncio_serve_forever_cancelled_closes() -> None:
    async def main() -> None:
        server = AsyncioServer(MemoryBackend(), AUTH, port=0)
        task = asyncio.create_task(server.serve_forever())
        while not server.is_serving:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not server.is_serving and server.sockets == ()

    asyncio.run(main())


def test_trio_shutdown_abandons_sessions(tmp_path: Path) -> None:
    store = Store("maildir", tmp_path)

    async def main() -> tuple[str, int]:
        server = TrioServer(store.backend, AUTH, port=0)
        assert server.listeners == []
        with pytest.raises(RuntimeError):
            server.server_address  # noqa: B018
        async with trio.open_nursery() as nursery:
            address = await nursery.start(server.serve)
            assert len(server.listeners) == 1
            assert repr(server) == f"<Server 127.0.0.1:{address[1]} active=0>"
            with pytest.raises(RuntimeError):
                await server.serve()

            def client() -> poplib.POP3:
                pop = poplib.POP3(address[0], address[1], timeout=CLIENT_TIMEOUT)
                pop.user("alice")
                pop.pass_(PASSWORD)
                pop.dele(1)
                return pop

            pop = await trio.to_thread.run_sync(client)
            assert server.active_connections == 1
            server.shutdown()
        try:
            assert server.active_connections == 0 and server.listeners == []
            assert store.remaining() == [0, 1, 2] and store.unlocked()
            with pytest.raises((poplib.error_proto, OSError)):
                pop.stat()
        finally:
            pop.close()
        return address

    address = trio.run(main)
    with pytest.raises(OSError):
        socket.create_connection(address, timeout=1)


def test_trio_cancelled_nursery_abandons_sessions() -> None:
    backend = MemoryBackend({"alice": [b"m\n"]})

    async def main() -> None:
        with trio.move_on_after(5):
            async with trio.open_nursery() as nursery:
                address = await nursery.start(_trio_serve_function, backend)

                def client() -> poplib.POP3:
                    pop = poplib.POP3(address[0], address[1], timeout=CLIENT_TIMEOUT)
                    pop.user("alice")
                    pop.pass_(PASSWORD)
                    pop.dele(1)
                    return pop

                pop = await trio.to_thread.run_sync(client)
                assert backend.is_locked("alice")
                nursery.cancel_scope.cancel()
        pop.close()
        assert not backend.is_locked("alice")
        assert backend.messages("alice") == [b"m\n"]

    trio.run(main)


def test_closed_before_serving() -> None:
    async def trio_main() -> None:
        server = TrioServer(MemoryBackend(), AUTH, port=0)
        server.shutdown()
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve)  # reports its address, then returns
        assert server.listeners == []

    trio.run(trio_main)

    async def asyncio_main() -> None:
        server = AsyncioServer(MemoryBackend(), AUTH, port=0)
        server.close()
        with pytest.raises(RuntimeError):
            await server.start()
        await server.wait_closed()

    asyncio.run(asyncio_main())


async def _trio_serve_function(
    backend: MemoryBackend, *, task_status: Any = trio.TASK_STATUS_IGNORED
) -> None:
    from pop3proto.adapters.server._trio import serve

    await serve(backend, AUTH, port=0, task_status=task_status)


def test_asyncio_serve_function() -> None:
    async def main() -> None:
        task = asyncio.create_task(
            _asyncio_server.serve(MemoryBackend({"alice": [b"m\n"]}), AUTH, port=0)
        )
        await asyncio.sleep(0.1)
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


@pytest.mark.parametrize("cls", [AsyncioServer, TrioServer])
def test_arguments(cls: type[AsyncioServer] | type[TrioServer]) -> None:
    with pytest.raises(ValueError):
        cls(MemoryBackend(), AUTH, port=0, implicit_tls=True)
    with pytest.raises(ValueError):
        cls(MemoryBackend(), AUTH, port=0, max_connections=0)
    with pytest.raises(ValueError):
        cls(MemoryBackend(), AUTH, port=0, handshake_timeout=0)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server = cls(MemoryBackend(), AUTH, ssl_context=ctx)
    assert server.config.tls_available == (cls is TrioServer or _asyncio_server.STLS_SUPPORTED)
    server = cls(MemoryBackend(), AUTH, ssl_context=ctx, implicit_tls=True)
    assert not server.config.tls_available
    assert repr(server) == "<Server - active=0>"


def test_busy_response_matches_blocking_server() -> None:
    assert busy_response() == b"-ERR [SYS/TEMP] too many connections\r\n"

"""The blocking server (adapters/server/_sync.py) over real sockets.

The client is the stdlib :mod:`poplib`, so these tests also check that the
server interoperates with a client written independently of the engine.
Servers listen on 127.0.0.1 port 0; certificates come from ``trustme``.
"""

from __future__ import annotations

import mailbox
import poplib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pop3proto.adapters.mailstore._maildir import MaildirBackend
from pop3proto.adapters.mailstore._memory import MemoryBackend
from pop3proto.adapters.mailstore._users import DictAuthenticator
from pop3proto.adapters.server._config import ServerConfig
from pop3proto.adapters.server._sync import Server
from tests.helpers import PASSWORD, expected_body, make_maildir, poplib_body

MESSAGES = [
    b"Subject: one\nFrom: a@example.org\n\nbody one\n",
    b"Subject: two\n\n.starts with a dot\n..two dots\n.\nend without newline",
    b"Subject: three\r\n\r\n" + b"".join(b"line %d\r\n" % i for i in range(200)),
]


@pytest.fixture
def maildir(tmp_path: Path) -> tuple[Path, mailbox.Maildir, list[str]]:
    path = tmp_path / "alice"
    md, keys = make_maildir(path, MESSAGES)
    return path, md, keys


AUTH = DictAuthenticator({"alice": PASSWORD})


@pytest.fixture
def start() -> Iterator[Callable[..., Server]]:
    """Start servers in background threads; shut them all down after."""
    running: list[tuple[Server, threading.Thread]] = []

    def make(backend: Any, **kwargs: Any) -> Server:
        kwargs.setdefault("port", 0)
        server = Server(backend, AUTH, **kwargs)
        running.append((server, server.start()))
        return server

    yield make
    for server, thread in running:
        server.shutdown()
        server.server_close()
        thread.join(5)
        assert not thread.is_alive()
        assert server.active_connections == 0


def wait_idle(server: Server, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while server.active_connections and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.active_connections == 0


def test_plain_session(start: Callable[..., Server], maildir: Any) -> None:
    path, md, keys = maildir
    server = start(MaildirBackend(path, chunk_size=7))
    host, port = server.server_address
    pop = poplib.POP3(host, port, timeout=5)
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
        _, uid_lines, _ = pop.uidl()
        uids = [line.split()[1].decode() for line in uid_lines]
        assert uids == keys
        for number, message in enumerate(MESSAGES, 1):
            _, lines, octets = pop.retr(number)
            # Byte for byte the stored message with CRLF line endings.
            assert poplib_body(lines) == expected_body(message)
            assert octets == sizes[number] == len(expected_body(message))
        _, top_lines, _ = pop.top(2, 1)
        assert poplib_body(top_lines) == b"Subject: two\r\n\r\n.starts with a dot\r\n"
        assert pop.dele(1).startswith(b"+OK")
        assert pop.noop() == b"+OK"
        assert pop.quit().startswith(b"+OK")
    finally:
        pop.close()
    assert sorted(md.keys()) == sorted(keys[1:])


def test_apop_and_utf8(start: Callable[..., Server], maildir: Any) -> None:
    server = start(MaildirBackend(maildir[0]))
    pop = poplib.POP3(*server.server_address, timeout=5)
    try:
        assert pop.utf8().startswith(b"+OK")
        pop.apop("alice", PASSWORD)
        assert pop.stat()[0] == 3
        pop.quit()
    finally:
        pop.close()


def test_wrong_password(start: Callable[..., Server], maildir: Any) -> None:
    server = start(MaildirBackend(maildir[0]))
    pop = poplib.POP3(*server.server_address, timeout=5)
    try:
        pop.user("alice")
        with pytest.raises(poplib.error_proto, match=r"\[AUTH\] authentication failed"):
            pop.pass_("wrong")
        pop.user("alice")
        pop.pass_(PASSWORD)
        pop.quit()
    finally:
        pop.close()


def test_stls(
    start: Callable[..., Server],
    maildir: Any,
    server_context: ssl.SSLContext,
    client_context: ssl.SSLContext,
) -> None:
    path, md, keys = maildir
    # trust_loopback=False: behave as for a remote client.
    server = start(MaildirBackend(path), ssl_context=server_context, trust_loopback=False)
    pop = poplib.POP3("127.0.0.1", server.server_address[1], timeout=5)
    try:
        caps = pop.capa()
        assert "STLS" in caps and "USER" not in caps
        assert caps["SASL"] == ["SCRAM-SHA-256", "CRAM-MD5"]
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
    assert sorted(md.keys()) == sorted(keys[:2])


def test_implicit_tls(
    start: Callable[..., Server],
    maildir: Any,
    server_context: ssl.SSLContext,
    client_context: ssl.SSLContext,
) -> None:
    server = start(
        MaildirBackend(maildir[0]),
        ssl_context=server_context,
        implicit_tls=True,
        trust_loopback=False,
    )
    pop = poplib.POP3_SSL("127.0.0.1", server.server_address[1], context=client_context, timeout=5)
    try:
        caps = pop.capa()
        assert "STLS" not in caps and "USER" in caps
        pop.user("alice")
        pop.pass_(PASSWORD)
        _, lines, _ = pop.retr(2)
        assert poplib_body(lines) == expected_body(MESSAGES[1])
        pop.quit()
    finally:
        pop.close()


def test_stls_injection_is_dropped(
    start: Callable[..., Server], maildir: Any, server_context: ssl.SSLContext
) -> None:
    server = start(MaildirBackend(maildir[0]), ssl_context=server_context)
    with socket.create_connection(server.server_address, timeout=5) as sock:
        assert sock.recv(1024).startswith(b"+OK")
        sock.sendall(b"STLS\r\nUSER alice\r\nPASS " + PASSWORD.encode() + b"\r\n")
        data = b""
        while chunk := sock.recv(1024):
            data += chunk
        # Closed without running USER: in one segment (the usual case) the
        # engine refuses at once; had TCP split it, the plaintext would
        # have broken the TLS handshake.
        assert data in (b"", b"+OK Begin TLS negotiation now\r\n")


def test_dropped_connection_deletes_nothing(start: Callable[..., Server], maildir: Any) -> None:
    path, md, keys = maildir
    server = start(MaildirBackend(path))
    pop = poplib.POP3(*server.server_address, timeout=5)
    pop.user("alice")
    pop.pass_(PASSWORD)
    pop.dele(1)
    pop.dele(2)
    pop.sock.close()  # no QUIT
    pop.file.close()
    wait_idle(server)
    assert sorted(md.keys()) == sorted(keys)
    # The lock was released: a new session works and sees everything.
    pop = poplib.POP3(*server.server_address, timeout=5)
    try:
        pop.user("alice")
        pop.pass_(PASSWORD)
        assert pop.stat()[0] == 3
        pop.quit()
    finally:
        pop.close()


def test_in_use(start: Callable[..., Server], maildir: Any) -> None:
    server = start(MaildirBackend(maildir[0]))
    first = poplib.POP3(*server.server_address, timeout=5)
    second = poplib.POP3(*server.server_address, timeout=5)
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


def test_connection_cap(start: Callable[..., Server]) -> None:
    server = start(MemoryBackend({"alice": [b"x\n"]}), max_connections=1)
    first = poplib.POP3(*server.server_address, timeout=5)
    try:
        # Logged in: a session is never evicted for a newcomer.
        first.user("alice")
        first.pass_(PASSWORD)
        with socket.create_connection(server.server_address, timeout=5) as sock:
            data = b""
            while chunk := sock.recv(1024):
                data += chunk
        assert data == b"-ERR [SYS/TEMP] too many connections\r\n"
        assert server.active_connections == 1
        first.quit()
    finally:
        first.close()
    wait_idle(server)
    again = poplib.POP3(*server.server_address, timeout=5)
    again.quit()
    again.close()


def test_idle_timeout(start: Callable[..., Server]) -> None:
    backend = MemoryBackend({"alice": [b"x\n", b"y\n"]})
    server = start(backend, config=ServerConfig(idle_timeout=0.2))
    with socket.create_connection(server.server_address, timeout=5) as sock:
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
    wait_idle(server)
    assert backend.messages("alice") == [b"x\n", b"y\n"]
    assert not backend.is_locked("alice")


def test_shutdown_abandons_sessions(maildir: Any) -> None:
    path, md, keys = maildir
    backend = MaildirBackend(path)
    server = Server(backend, AUTH, port=0)
    thread = server.start()
    address = server.server_address
    pop = poplib.POP3(*address, timeout=5)
    try:
        pop.user("alice")
        pop.pass_(PASSWORD)
        pop.dele(1)
        server.shutdown()
        thread.join(5)
        assert not thread.is_alive() and server.active_connections == 0
        assert sorted(md.keys()) == sorted(keys)
        backend.open("alice").close()  # the lock was released
        with pytest.raises((poplib.error_proto, OSError)):
            pop.stat()
    finally:
        pop.close()
        server.server_close()
    with pytest.raises(OSError):
        socket.create_connection(address, timeout=1)


def test_context_manager_and_arguments(maildir: Any) -> None:
    with pytest.raises(ValueError):
        Server(MemoryBackend(), AUTH, port=0, implicit_tls=True)
    with pytest.raises(ValueError):
        Server(MemoryBackend(), AUTH, port=0, max_connections=0)
    with Server(MemoryBackend({"alice": [b"m\n"]}), AUTH, port=0) as server:
        host, port = server.server_address
        assert host == "127.0.0.1" and port > 0
        server.start()
        pop = poplib.POP3(host, port, timeout=5)
        pop.user("alice")
        pop.pass_(PASSWORD)
        assert pop.retr(1)[1] == [b"m"]
        pop.quit()
        pop.close()
    with pytest.raises(OSError):
        socket.create_connection((host, port), timeout=1)


# ---------------------------------------------------------------------------
# Connection threads are reused
# ---------------------------------------------------------------------------


def _connection_threads(server: Server) -> list[threading.Thread]:
    """The live threads the server started for connections."""
    return [t for t in threading.enumerate() if getattr(t, "_target", None) == server._work]


def _wait_threads_idle(server: Server, count: int) -> None:
    """Wait until *count* connection threads wait for a client (a thread
    goes back to waiting just after its connection is counted out)."""
    deadline = time.monotonic() + 10
    while len(server._idle) != count and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(server._idle) == count


def _one_session(server: Server) -> None:
    pop = poplib.POP3(*server.server_address, timeout=5)
    pop.user("alice")
    pop.pass_(PASSWORD)
    assert pop.stat()[0] == len(MESSAGES)
    pop.quit()


def test_an_idle_connection_thread_serves_the_next_client(
    start: Callable[..., Server],
) -> None:
    server = start(MemoryBackend({"alice": MESSAGES}))
    for _ in range(5):
        _one_session(server)
        _wait_threads_idle(server, 1)
    # One after another: the thread of the first serves them all.
    assert len(_connection_threads(server)) == 1
    # Two at once need two threads; both stay for the next clients.
    first = poplib.POP3(*server.server_address, timeout=5)
    assert first.getwelcome().startswith(b"+OK")
    _one_session(server)
    first.quit()
    _wait_threads_idle(server, 2)
    assert len(_connection_threads(server)) == 2
    for _ in range(3):
        _one_session(server)
        _wait_threads_idle(server, 2)
    assert len(_connection_threads(server)) == 2


def test_an_idle_connection_thread_ends(
    start: Callable[..., Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("pop3proto.adapters.server._sync.IDLE_THREAD_SECONDS", 0.2)
    server = start(MemoryBackend({"alice": MESSAGES}))
    _one_session(server)
    deadline = time.monotonic() + 10
    while _connection_threads(server) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _connection_threads(server) == []
    # ... and a new one serves the next client.
    _one_session(server)


def test_shutdown_ends_idle_connection_threads(start: Callable[..., Server]) -> None:
    server = start(MemoryBackend({"alice": MESSAGES}))
    _one_session(server)
    _wait_threads_idle(server, 1)
    threads = _connection_threads(server)
    assert len(threads) == 1
    server.shutdown()
    threads[0].join(5)
    assert not threads[0].is_alive()

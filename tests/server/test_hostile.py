"""Hostile peers and inputs, against the engine and the three servers.

* The engine fuzz harness (``tests/fuzz/fuzz_engine.py``): its seeds, every
  finding of the coverage-guided runs turned into a regression input, and a
  short random run with a fixed seed.
* The blocking, asyncio and trio servers (in this process) against: a
  client sending 100 MB with no line end (and 100 MB inside a SASL
  exchange); 10,000 pipelined commands at once (good ones, and bad ones);
  one byte per second with a short idle timeout (slowloris); 1,000 idle
  connections; a client that never reads a 50 MB message; STLS command
  injection; the malformed commands of CONFORMANCE.md §3.4, non-ASCII and
  NUL octets, bad SASL base64, overlong arguments and overflowing numbers.
  Each test asserts the outcome (a clear ``-ERR`` where the RFC allows
  one, the session going on, or a disconnect) and, where it is about
  memory, a bound measured with :mod:`tracemalloc` on the server's
  allocations; where a well-behaved client runs meanwhile, its session time
  is compared with the same session without the attack.
* The blocking client against a forged response after STLS.

Set ``POP3PROTO_FIGURES=file`` to collect the figures (see :func:`tests.helpers.figure`).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import poplib
import random
import resource
import socket
import ssl
import statistics
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from pop3proto.adapters import sync as sync_client
from pop3proto.adapters.client._asyncio import STLS_SUPPORTED as ASYNCIO_STLS
from pop3proto.adapters.mailstore._maildir import MaildirBackend
from pop3proto.adapters.mailstore._memory import MemoryBackend
from pop3proto.adapters.mailstore._users import DictAuthenticator
from pop3proto.adapters.server._config import ServerConfig, SessionStats
from tests.helpers import (
    PASSWORD,
    RUNTIMES,
    figure,
    lock_is_free,
    maildir_state,
    make_maildir,
    read_to_eof,
    recv_until,
    running_server,
)

BOB_PASSWORD = "bob's password"
AUTH = DictAuthenticator({"alice": PASSWORD, "bob": BOB_PASSWORD})
GOOD_MESSAGES = [
    b"Subject: %d\r\n\r\n" % i + b"".join(b"line %d\r\n" % j for j in range(100)) for i in range(5)
]
MB = 1 << 20


def serve(kind: str, store: Any, **kwargs: Any) -> contextlib.AbstractContextManager[Any]:
    """:func:`running_server` with alice and bob as users, and the servers'
    default lingering close (the last -ERR survives a client still sending)."""
    kwargs.setdefault("linger", 1.0)
    return running_server(kind, store, AUTH, **kwargs)


def backend() -> MemoryBackend:
    return MemoryBackend(
        {
            "alice": [b"Subject: a\r\n\r\nmessage one\r\n", b"two\r\n", b"three\r\n"],
            "bob": GOOD_MESSAGES,
        }
    )


# ---------------------------------------------------------------------------
# The engine fuzz harness
# ---------------------------------------------------------------------------


def _load_harness() -> Any:
    path = Path(__file__).parents[1] / "fuzz" / "fuzz_engine.py"
    spec = importlib.util.spec_from_file_location("pop3proto_fuzz_engine", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


harness = _load_harness()

#: Inputs found by the coverage-guided runs (see tests/fuzz/README.md), kept
#: so that they never come back.  Each entry: (what it found, the input).
FUZZ_REGRESSIONS: list[tuple[str, bytes]] = []


@pytest.mark.parametrize("data", harness.SEEDS, ids=lambda d: d[:2].hex())
def test_fuzz_seeds(data: bytes) -> None:
    harness.run_one(data)


def test_fuzz_regressions() -> None:
    for _, data in FUZZ_REGRESSIONS:
        harness.run_one(data)


def test_fuzz_smoke() -> None:
    """A short run of the pure-Python driver (fixed seed, ~1 s)."""
    rng = random.Random(20240601)
    pool = list(harness.SEEDS)
    for _ in range(2500):
        data = (
            harness.random_input(rng)
            if rng.random() < 0.4
            else harness.mutate(rng.choice(pool), rng)
        )
        harness.run_one(data)
        if rng.random() < 0.05:
            pool.append(data)


def test_fuzz_harness_catches_non_protocol_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    """The harness's rule has teeth: any other exception escapes."""
    import pop3proto

    def broken(self: Any) -> Any:
        raise IndexError("boom")

    monkeypatch.setattr(pop3proto.Connection, "next_event", broken)
    with pytest.raises(IndexError):
        harness.run_one(harness.SEEDS[0])


# ---------------------------------------------------------------------------
# Helpers for the server tests
# ---------------------------------------------------------------------------


def good_session(address: tuple[str, int]) -> float:
    """A well-behaved client's whole session (as bob); its duration."""
    start = time.perf_counter()
    pop = poplib.POP3(address[0], address[1], timeout=30)
    try:
        pop.user("bob")
        pop.pass_(BOB_PASSWORD)
        count, _ = pop.stat()
        pop.list()
        for n in range(1, count + 1):
            pop.retr(n)
        pop.quit()
    finally:
        pop.close()
    return time.perf_counter() - start


def good_sessions(address: tuple[str, int], rounds: int = 5) -> float:
    """The median of *rounds* sessions."""
    return statistics.median(good_session(address) for _ in range(rounds))


def check_speed(name: str, kind: str, baseline: float, attacked: float, **extra: Any) -> None:
    figure(
        name,
        runtime=kind,
        good_session_ms=round(baseline * 1000, 2),
        good_session_under_attack_ms=round(attacked * 1000, 2),
        **extra,
    )
    # "Normal speed": generous, the machine is shared with the attacker
    # (and maybe a fuzzer).
    assert attacked < max(20 * baseline, baseline + 1.0), (baseline, attacked)


def login(sock: socket.socket, user: str = "alice", password: str = PASSWORD) -> None:
    greeting = recv_until(sock, lambda d: d.endswith(b"\r\n"))
    assert greeting.startswith(b"+OK"), greeting
    sock.sendall(f"USER {user}\r\nPASS {password}\r\n".encode())
    replies = recv_until(sock, lambda d: d.count(b"\r\n") >= 2)
    assert replies.startswith(b"+OK") and b"\r\n+OK" in replies, replies


@contextlib.contextmanager
def traced() -> Iterator[Callable[[], int]]:
    """tracemalloc on; yields a function giving the peak (bytes) since it
    was started."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    try:
        yield lambda: tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


class Attacker(threading.Thread):
    """Runs *attack(stop_event)* in a thread; errors are re-raised by join()."""

    def __init__(self, attack: Callable[[threading.Event], Any]) -> None:
        super().__init__(daemon=True)
        self.attack = attack
        self.stop_event = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.attack(self.stop_event)
        except BaseException as exc:
            self.error = exc

    def finish(self, timeout: float = 60) -> Any:
        self.stop_event.set()
        self.join(timeout)
        assert not self.is_alive(), "the attacker did not finish"
        if self.error is not None:
            raise self.error
        return self.result


# ---------------------------------------------------------------------------
# 100 MB with no line end
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", RUNTIMES)
def test_100mb_without_line_end(kind: str) -> None:
    """-ERR at once, the rest of the line discarded as it arrives (memory
    bounded), the session goes on after the CRLF; others unaffected."""
    block = memoryview(b"A" * MB)

    def attack(stop: threading.Event) -> tuple[int, bytes]:
        with socket.create_connection(address, timeout=30) as sock:
            recv_until(sock, lambda d: d.endswith(b"\r\n"))
            sock.sendall(block)
            first = recv_until(sock, lambda d: d.endswith(b"\r\n"), limit=5)
            assert first == b"-ERR command line too long\r\n", first
            sent = MB
            while sent < 100 * MB or not stop.is_set():
                sock.sendall(block)
                sent += MB
            sock.sendall(b"\r\nCAPA\r\n")
            reply = recv_until(sock, lambda d: d.endswith(b"\r\n.\r\n"))
            return sent, reply

    with serve(kind, backend()) as running:
        address = running.address
        baseline = good_sessions(address)
        with traced() as peak:
            attacker = Attacker(attack)
            started = time.perf_counter()
            attacker.start()
            attacked = good_sessions(address)
            sent, reply = attacker.finish()
            elapsed = time.perf_counter() - started
            used = peak()
    assert reply.startswith(b"+OK Capability list follows\r\n"), reply[:80]
    assert used < 4 * MB, f"{used} bytes allocated while receiving {sent} bytes"
    check_speed(
        "100MB-no-line-end",
        kind,
        baseline,
        attacked,
        sent_mb=sent // MB,
        seconds=round(elapsed, 2),
        peak_alloc_kb=used // 1024,
    )


@pytest.mark.parametrize("kind", RUNTIMES)
def test_100mb_in_a_sasl_exchange_is_cut_off(kind: str) -> None:
    """An endless SASL line: the connection is dropped at the SASL limit
    (64 KiB), long before 100 MB; nothing grows."""
    block = memoryview(b"A" * MB)

    def attack(stop: threading.Event) -> tuple[int, bytes]:
        sent = 0
        with socket.create_connection(address, timeout=30) as sock:
            recv_until(sock, lambda d: d.endswith(b"\r\n"))
            sock.sendall(b"AUTH PLAIN\r\n")
            assert recv_until(sock, lambda d: d.endswith(b"\r\n")) == b"+ \r\n"
            try:
                while sent < 100 * MB:
                    sock.sendall(block)
                    sent += MB
            except OSError:  # EPIPE / ECONNRESET: the server hung up
                return sent, b""
            sock.shutdown(socket.SHUT_WR)
            return sent, read_to_eof(sock)

    with serve(kind, backend()) as running:
        address = running.address
        with traced() as peak:
            attacker = Attacker(attack)
            attacker.start()
            sent, reply = attacker.finish()
            used = peak()
        running.wait_idle()
    # Dropped at the limit; or (also acceptable) the AUTH ended with -ERR
    # and the rest of the line discarded like an overlong command.
    assert sent < 100 * MB or reply.startswith(b"-ERR"), "an endless SASL line was accepted"
    assert used < 4 * MB
    figure(
        "100MB-sasl-line", runtime=kind, sent_before_cut_mb=sent // MB, peak_alloc_kb=used // 1024
    )


@pytest.mark.parametrize("kind", RUNTIMES)
def test_overlong_sasl_line_gets_err_before_close(kind: str) -> None:
    """RFC 5034 §4 lets the server end the AUTH with -ERR, as it does for
    bad base64: a SASL line over 64 KiB gets one before the close."""
    with serve(kind, backend()) as running, running.connect() as sock:
        recv_until(sock, lambda d: d.endswith(b"\r\n"))
        sock.sendall(b"AUTH PLAIN\r\n")
        assert recv_until(sock, lambda d: d.endswith(b"\r\n")) == b"+ \r\n"
        with contextlib.suppress(OSError):
            sock.sendall(b"A" * (70 * 1024) + b"\r\n")
        assert read_to_eof(sock).startswith(b"-ERR")


# ---------------------------------------------------------------------------
# 10,000 pipelined commands
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", RUNTIMES)
def test_10000_pipelined_commands(kind: str) -> None:
    """All answered, in order (RFC 2449 §6.6), in bounded memory."""
    count = 10_000
    commands = b"".join(b"LIST %d\r\n" % (i % 3 + 1) for i in range(count))
    sizes = {1: 27, 2: 5, 3: 7}
    expected = b"".join(b"+OK %d %d\r\n" % (i % 3 + 1, sizes[i % 3 + 1]) for i in range(count))

    with serve(kind, backend()) as running:
        baseline = good_sessions(running.address)
        with running.connect() as sock:
            login(sock)
            with traced() as peak:
                sender = Attacker(lambda stop: sock.sendall(commands))
                started = time.perf_counter()
                sender.start()
                got = recv_until(sock, lambda d: len(d) >= len(expected), limit=60)
                elapsed = time.perf_counter() - started
                sender.finish()
                used = peak()
            attacked = good_sessions(running.address)
            sock.sendall(b"QUIT\r\n")
            assert recv_until(sock, lambda d: d.endswith(b"\r\n")).startswith(b"+OK")
    assert got == expected
    assert used < 4 * MB, used
    check_speed(
        "10000-pipelined",
        kind,
        baseline,
        attacked,
        commands_per_s=round(count / elapsed),
        peak_alloc_kb=used // 1024,
    )


@pytest.mark.parametrize("kind", RUNTIMES)
def test_10000_pipelined_bad_commands_are_cut_off(kind: str) -> None:
    """The bad-command limit (20 by default) ends it with a clear -ERR."""
    with serve(kind, backend()) as running, running.connect() as sock:
        recv_until(sock, lambda d: d.endswith(b"\r\n"))
        # Read while sending: the server closes with 10,000 lines unread,
        # and the reset that causes may destroy what the client has not
        # read yet.
        reader = Attacker(lambda stop: read_to_eof(sock))
        reader.start()
        with contextlib.suppress(OSError):
            sock.sendall(b"BOGUS command\r\n" * 10_000)
        data = reader.finish()
        running.wait_idle()
    lines = data.split(b"\r\n")
    assert lines[:19] == [b"-ERR unknown command"] * 19
    assert lines[19] == b"-ERR unknown command; too many bad commands, closing"
    assert lines[20:] == [b""]
    figure("10000-pipelined-bad", runtime=kind, answered=19 + 1)


# ---------------------------------------------------------------------------
# Slowloris
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", RUNTIMES)
def test_slowloris_one_byte_per_second(kind: str) -> None:
    """Slower than the idle timeout: -ERR and closed; others unaffected."""
    config = ServerConfig(idle_timeout=0.5)

    def attack(stop: threading.Event) -> tuple[bytes, float]:
        with socket.create_connection(address, timeout=30) as sock:
            recv_until(sock, lambda d: d.endswith(b"\r\n"))
            started = time.monotonic()
            data = b""
            for byte in b"USER alice\r\n":
                try:
                    sock.sendall(bytes([byte]))
                except OSError:
                    break
                chunk = recv_until(sock, lambda d: d.endswith(b"\r\n"), limit=1.0)
                data += chunk
                if chunk:
                    break
            return data + read_to_eof(sock), time.monotonic() - started

    with serve(kind, backend(), config=config) as running:
        address = running.address
        baseline = good_sessions(address)
        attacker = Attacker(attack)
        attacker.start()
        attacked = good_sessions(address)
        data, elapsed = attacker.finish()
        running.wait_idle()
    assert data == b"-ERR disconnected for inactivity\r\n"
    assert elapsed < 3
    check_speed("slowloris", kind, baseline, attacked, cut_after_s=round(elapsed, 2))


# ---------------------------------------------------------------------------
# 1,000 idle connections
# ---------------------------------------------------------------------------


def _raise_fd_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < wanted:  # pragma: no cover
        pytest.skip("cannot raise the file descriptor limit")


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")  # pragma: no cover


@pytest.mark.parametrize("kind", RUNTIMES)
def test_1000_idle_connections(kind: str) -> None:
    """1,000 connections that say nothing after the greeting, held side by
    side with a well-behaved client; all cleaned up when they go.  (The
    idle timeout that ends such connections with -ERR is the slowloris
    test's.)"""
    count = 1000
    _raise_fd_limit(2 * count + 200)
    # All from one address: the per-address limit is lifted here (the
    # admission tests cover it).
    config = ServerConfig(max_preauth_per_ip=None)
    with serve(kind, backend(), max_connections=2 * count, config=config) as running:
        baseline = good_sessions(running.address)
        rss_before = _rss_kib()
        idle: list[socket.socket] = []
        try:
            opened = time.perf_counter()
            for _ in range(count):
                sock = running.connect()
                idle.append(sock)
                assert recv_until(sock, lambda d: d.endswith(b"\r\n")).startswith(b"+OK")
            opened = time.perf_counter() - opened
            assert running.active == count
            rss_during = _rss_kib()
            attacked = good_sessions(running.address)
            deadline = time.monotonic() + 5  # the last good session ends
            while running.active > count and time.monotonic() < deadline:
                time.sleep(0.01)
            assert running.active == count
        finally:
            for sock in idle:
                sock.close()
        running.wait_idle()
    check_speed(
        "1000-idle-connections",
        kind,
        baseline,
        attacked,
        open_all_s=round(opened, 2),
        rss_growth_kib_per_connection=round((rss_during - rss_before) / count, 1),
    )


# ---------------------------------------------------------------------------
# A client that never reads
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_maildir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Maildir with one 50 MB message (written once for the module)."""
    path = tmp_path_factory.mktemp("big") / "alice"
    line = b"%08d .a dotted line of a very big message, padded to 64 octets...\n"
    body = b"".join(line % i for i in range(50 * MB // 64 + 1))
    make_maildir(path, [b"Subject: big\n\n" + body])
    return path


@pytest.mark.parametrize("kind", RUNTIMES)
def test_client_that_never_reads_a_50mb_message(kind: str, big_maildir: Path) -> None:
    """RETR of 50 MB to a client that reads nothing: the server holds a few
    chunks, not the message, and gives up after the idle timeout."""
    ended: list[SessionStats] = []
    config = ServerConfig(idle_timeout=1.5, on_session_end=ended.append)
    before = maildir_state(big_maildir)
    with (
        serve(kind, MaildirBackend(big_maildir), config=config) as running,
        socket.socket() as sock,
    ):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(30)
        sock.connect(running.address)
        login(sock)
        with traced() as peak:
            sock.sendall(b"RETR 1\r\n")
            time.sleep(0.8)  # every buffer fills, then the server stalls
            used = peak()
        running.wait_idle(timeout=10)  # the stalled send times out
    assert used < 3 * MB, f"the server allocated {used} bytes"
    [stats] = ended
    assert stats.reason in ("connection lost", "I/O error", "timeout"), stats.reason
    assert 0 < stats.bytes_sent < 20 * MB
    assert maildir_state(big_maildir) == before and lock_is_free(big_maildir)
    figure(
        "never-reading-client-50MB",
        runtime=kind,
        peak_alloc_kb=used // 1024,
        sent_before_giving_up_mb=round(stats.bytes_sent / MB, 1),
    )


@pytest.mark.parametrize("kind", RUNTIMES)
def test_a_client_that_never_reads_holds_up_no_one_else(kind: str) -> None:
    """While one client's RETR of 8 MB is stalled (it reads nothing, the
    buffers are full and the server's write waits), another client logs in
    and is answered at once: the blocking server's connection thread gives
    up its run token while its write waits."""
    store = MemoryBackend({"alice": [(b"x" * 78 + b"\r\n") * (8 * MB // 80)], "bob": [b"hi\r\n"]})
    config = ServerConfig(idle_timeout=30)
    with serve(kind, store, config=config) as running, socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(30)
        sock.connect(running.address)
        login(sock)
        sock.sendall(b"RETR 1\r\n")
        time.sleep(0.5)  # every buffer fills, then the server's write waits
        started = time.monotonic()
        host, port = running.address
        pop = poplib.POP3(host, port, timeout=10)
        pop.user("bob")
        pop.pass_(BOB_PASSWORD)
        assert pop.stat()[0] == 1
        pop.quit()
        assert time.monotonic() - started < 5.0
        sock.close()
        running.wait_idle(timeout=10)


# ---------------------------------------------------------------------------
# STLS injection
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", RUNTIMES)
def test_stls_command_injection_is_refused(kind: str, server_context: ssl.SSLContext) -> None:
    """``STLS\\r\\nUSER x\\r\\n`` in one segment (CVE-2011-0411 class): the
    connection is dropped; USER never runs in plaintext."""
    ended: list[SessionStats] = []
    config = ServerConfig(on_session_end=ended.append)
    with serve(kind, backend(), ssl_context=server_context, config=config) as running:
        with running.connect() as sock:
            recv_until(sock, lambda d: d.endswith(b"\r\n"))
            sock.sendall(b"STLS\r\nUSER alice\r\nPASS " + PASSWORD.encode() + b"\r\n")
            data = read_to_eof(sock)
        running.wait_idle()
    assert data in (b"", b"+OK Begin TLS negotiation now\r\n"), data
    [stats] = ended
    assert stats.user is None and stats.reason in ("protocol error", "connection lost")


@pytest.mark.parametrize("kind", RUNTIMES)
def test_plaintext_after_stls_ok_is_never_a_command(
    kind: str, server_context: ssl.SSLContext
) -> None:
    """After ``+OK`` to STLS, plaintext is fed to the TLS handshake (which
    fails), never to the command parser."""
    if kind == "asyncio" and not ASYNCIO_STLS:
        pytest.skip("STLS over asyncio needs Python 3.11")
    ended: list[SessionStats] = []
    config = ServerConfig(on_session_end=ended.append)
    with serve(kind, backend(), ssl_context=server_context, config=config) as running:
        with running.connect() as sock:
            recv_until(sock, lambda d: d.endswith(b"\r\n"))
            sock.sendall(b"STLS\r\n")
            ok = recv_until(sock, lambda d: d.endswith(b"\r\n"))
            assert ok == b"+OK Begin TLS negotiation now\r\n"
            with contextlib.suppress(OSError):
                sock.sendall(b"USER alice\r\nPASS " + PASSWORD.encode() + b"\r\n")
            data = read_to_eof(sock)
        running.wait_idle()
    assert not data.startswith(b"+OK"), data  # at most a TLS alert
    [stats] = ended
    assert stats.user is None and not stats.tls


def _fake_stls_server(reply: bytes) -> tuple[tuple[str, int], threading.Thread, list[bytes]]:
    """A server that offers STLS and answers it with *reply*; records what
    the client sent afterwards."""
    listener = socket.create_server(("127.0.0.1", 0))
    received: list[bytes] = []

    def run() -> None:
        with listener:
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(5)
                conn.sendall(b"+OK ready <1.2@example.org>\r\n")
                data = recv_until(conn, lambda d: b"STLS\r\n" in d or d.endswith(b"CAPA\r\n"))
                if data.endswith(b"CAPA\r\n"):
                    conn.sendall(b"+OK\r\nSTLS\r\nUSER\r\nSASL PLAIN\r\n.\r\n")
                    data += recv_until(conn, lambda d: b"STLS\r\n" in d)
                conn.sendall(reply)
                received.append(data + read_to_eof(conn, limit=3))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return listener.getsockname()[:2], thread, received


def test_client_refuses_response_injection_after_stls() -> None:
    """``+OK\\r\\n+OK forged\\r\\n`` after STLS: the modern client raises and
    sends nothing more (no TLS, no credentials)."""
    address, thread, received = _fake_stls_server(b"+OK begin TLS\r\n+OK forged\r\n")
    with pytest.raises(sync_client.ProtocolViolation, match="injection"):
        sync_client.Client(address[0], address[1], tls="starttls", timeout=5)
    thread.join(10)
    assert received == [b"CAPA\r\nSTLS\r\n"]


def test_poplib_compat_refuses_response_injection_after_stls() -> None:
    address, thread, received = _fake_stls_server(b"+OK begin TLS\r\n+OK forged\r\n")
    pop = sync_client.POP3(address[0], address[1], timeout=5)
    try:
        with pytest.raises(sync_client.error_proto):
            pop.stls(ssl.create_default_context())
        with pytest.raises(sync_client.error_proto):
            pop.user("alice")  # the session is unusable, nothing is sent
    finally:
        pop.close()
    thread.join(10)
    assert received == [b"CAPA\r\nSTLS\r\n"]


@pytest.mark.parametrize("runtime", ["asyncio", "trio"])
def test_async_clients_refuse_response_injection_after_stls(runtime: str) -> None:
    if runtime == "asyncio" and not ASYNCIO_STLS:
        pytest.skip("STLS over asyncio needs Python 3.11")
    from pop3proto.adapters import asyncio as aio_client
    from pop3proto.adapters import trio as trio_client

    address, thread, received = _fake_stls_server(b"+OK begin TLS\r\n+OK forged\r\n")
    if runtime == "asyncio":

        async def amain() -> None:
            client = aio_client.Client(address[0], address[1], tls="starttls", timeout=5)
            with pytest.raises(aio_client.ProtocolViolation, match="injection"):
                await client.connect()

        asyncio.run(amain())
    else:

        async def tmain() -> None:
            with pytest.raises(trio_client.ProtocolViolation, match="injection"):
                await trio_client.connect(
                    address[0], address[1], tls="starttls", server_hostname="localhost", timeout=5
                )

        trio.run(tmain)
    thread.join(10)
    assert received == [b"CAPA\r\nSTLS\r\n"]


def test_client_facing_an_endless_status_line() -> None:
    """A hostile server sending 100 MB with no line end: the client gives
    up at its status-line limit (8 KiB), holding no more than that."""
    listener = socket.create_server(("127.0.0.1", 0))
    sent = [0]
    first, block = b"+OK " + b"A" * (MB - 4), b"A" * MB  # allocated before tracing

    def run() -> None:
        with listener:
            conn, _ = listener.accept()
            with conn, contextlib.suppress(OSError):
                conn.sendall(first)
                sent[0] += MB
                while sent[0] < 100 * MB:
                    conn.sendall(block)
                    sent[0] += MB

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    host, port = listener.getsockname()[:2]
    with traced() as peak:
        with pytest.raises(sync_client.ProtocolViolation, match="longer than"):
            sync_client.Client(host, port, tls="none", timeout=10)
        used = peak()
    thread.join(10)
    assert sent[0] < 100 * MB
    assert used < 4 * MB, used
    figure("client-endless-status-line", peak_alloc_kb=used // 1024, server_sent_mb=sent[0] // MB)


# ---------------------------------------------------------------------------
# Malformed commands through a real server
# ---------------------------------------------------------------------------

#: Lines answered -ERR in AUTHORIZATION (CONFORMANCE.md §2.2 and §3.4;
#: non-ASCII and NUL octets; overlong arguments).
BAD_IN_AUTHORIZATION: tuple[bytes, ...] = (
    b"",
    b" ",
    b"  ",
    b"\t",
    b"USER",
    b"user",
    b"USER a b",
    b"USER  alice",
    b"USER alice ",
    b"USER\talice",
    b"USER " + b"a" * 300,
    b"USER \xff\xfe",
    b"USER al\x00ice",
    b"USER \xc3\xa9l\xc3\xa8ve",
    b"PASS",
    b"PASS " + PASSWORD.encode(),
    b"APOP",
    b"APOP alice",
    b"APOP alice c4c9334bac560ecc979e58001b3e22fb extra",
    b"APOP alice C4C9334BAC560ECC979E58001B3E22FB",
    b"AUTH",
    b"AUTH PLAIN =AAA",
    b"AUTH PLAIN AAA=BBB",
    b"AUTH PLAIN a b",
    b"AUTH " + b"M" * 30,
    b"AUTH NOSUCH",
    b"STAT",
    b"NOOP",
    b"RSET",
    b"LIST",
    b"RETR 1",
    b"DELE 1",
    b"TOP 1 1",
    b"UIDL",
    b"QUI",
    b"QUITT",
    b"QUIT now",
    b"CAPA please",
    b"STLS",
    b"LANG xx-bogus",
    b"LANG a b",
    b"XTND XMIT",
    b"\x00",
    b"\x00\x00\x00\x00",
    b"\xff" * 10,
    b"\xe2\x80\xa8",
    b"\x1b[31mUSER alice",
    b"X" * 254,
    b"X" * 256,
    b"X" * 100_000,
)

#: Lines answered -ERR in TRANSACTION (message 1 is deleted first).
BAD_IN_TRANSACTION: tuple[bytes, ...] = (
    b"LIST 0",
    b"LIST -1",
    b"LIST +1",
    b"LIST 01",
    b"LIST 1 2",
    b"LIST 1x",
    b"LIST  2",
    b"LIST 2 ",
    b"LIST\t2",
    b"LIST 1_0",
    b"LIST 0x1",
    b"LIST 1e3",
    b"LIST \xd9\xa2",  # ARABIC-INDIC DIGIT TWO: decimal to str.isdecimal()
    b"LIST \xef\xbc\x92",  # FULLWIDTH DIGIT TWO
    b"LIST 4",
    b"LIST 99999999999999999999",
    b"LIST 18446744073709551617",
    b"LIST 340282366920938463463374607431768211457",
    b"LIST " + b"9" * 300,
    b"RETR",
    b"RETR 1",  # deleted
    b"RETR 0",
    b"RETR 99999999999999999999999999",
    b"DELE 1",  # deleted twice
    b"DELE 2 2",
    b"TOP 1 0",  # deleted
    b"TOP 2",
    b"TOP 2 -1",
    b"TOP 2 x",
    b"TOP 2 +1",
    b"TOP 2 1_0",
    b"UIDL 1",  # deleted
    b"UIDL 0",
    b"UIDL 9",
    b"STAT 1",
    b"NOOP x",
    b"RSET now",
    b"USER alice",
    b"PASS " + PASSWORD.encode(),
    b"APOP alice c4c9334bac560ecc979e58001b3e22fb",
    b"AUTH PLAIN",
    b"STLS",
    b"UTF8",
    b"LANG xx-bogus",
    b"RETR \x00",
    b"LIST \xff",
    b"\x00",
    b"X" * 100_000,
)

#: SASL responses answered -ERR (RFC 5034 §4: bad base64, cancel).
BAD_SASL_LINES: tuple[tuple[bytes, bytes], ...] = (
    (b"AUTH PLAIN", b"=AAA"),
    (b"AUTH PLAIN", b"AAA=BBB"),
    (b"AUTH PLAIN", b"QUFB QUFB"),
    (b"AUTH PLAIN", b"QUFB\x00"),
    (b"AUTH PLAIN", b"\xff\xfe"),
    (b"AUTH PLAIN", b"*"),
    (b"AUTH LOGIN", b"not base64!"),
    (b"AUTH LOGIN", b"QQ"),
    (b"AUTH CRAM-MD5", b"===="),
)


def _ask(sock: socket.socket, line: bytes) -> bytes:
    sock.sendall(line + b"\r\n")
    return recv_until(sock, lambda d: d.endswith(b"\r\n"))


@pytest.mark.parametrize("kind", RUNTIMES)
def test_malformed_commands_get_err_and_the_session_goes_on(kind: str) -> None:
    config = ServerConfig(max_bad_commands=10_000)
    tried = 0
    store = backend()
    with serve(kind, store, config=config) as running, running.connect() as sock:
        recv_until(sock, lambda d: d.endswith(b"\r\n"))
        for line in BAD_IN_AUTHORIZATION:
            reply = _ask(sock, line)
            assert reply.startswith(b"-ERR") and reply.count(b"\r\n") == 1, (line[:40], reply)
            tried += 1
        for auth, response in BAD_SASL_LINES:
            challenge = _ask(sock, auth)
            assert challenge.startswith(b"+ "), (auth, challenge)
            reply = _ask(sock, response)
            assert reply.startswith(b"-ERR") and reply.count(b"\r\n") == 1, (response, reply)
            tried += 1
        sock.sendall(b"CAPA\r\n")
        assert recv_until(sock, lambda d: d.endswith(b"\r\n.\r\n")).startswith(b"+OK")
        assert _ask(sock, b"USER alice").startswith(b"+OK")
        assert _ask(sock, b"PASS " + PASSWORD.encode()).startswith(b"+OK")
        assert _ask(sock, b"DELE 1").startswith(b"+OK")
        for line in BAD_IN_TRANSACTION:
            reply = _ask(sock, line)
            assert reply.startswith(b"-ERR") and reply.count(b"\r\n") == 1, (line[:40], reply)
            tried += 1
        assert _ask(sock, b"STAT") == b"+OK 2 12\r\n"
        assert _ask(sock, b"QUIT") == b"+OK bye (1 messages deleted)\r\n"
    assert store.messages("alice") == [b"two\r\n", b"three\r\n"]
    figure("malformed-commands", runtime=kind, inputs=tried)


def test_top_with_a_huge_line_count_is_not_a_crash() -> None:
    """``TOP 2 <30 digits>``: a legal request for the whole message, or -ERR
    (overflow); never a crash or a hang."""
    with serve("sync", backend()) as running, running.connect() as sock:
        login(sock)
        reply = _ask(sock, b"TOP 2 " + b"9" * 30)
        if reply.startswith(b"+OK"):
            reply += recv_until(sock, lambda d: d.endswith(b"\r\n.\r\n"))
            assert reply.endswith(b"two\r\n.\r\n")
        else:
            assert reply.startswith(b"-ERR")
        assert _ask(sock, b"NOOP") == b"+OK\r\n"


@pytest.mark.parametrize("kind", RUNTIMES)
def test_auth_failures_close_with_a_clear_err(kind: str) -> None:
    with serve(kind, backend()) as running, running.connect() as sock:
        recv_until(sock, lambda d: d.endswith(b"\r\n"))
        sock.sendall(b"USER alice\r\nPASS x\r\n" * 3 + b"USER alice\r\n")
        data = read_to_eof(sock)
    assert data == b"+OK send PASS\r\n-ERR [AUTH] authentication failed\r\n" * 3


# ---------------------------------------------------------------------------
# Latency of the blocking server
# ---------------------------------------------------------------------------


def test_blocking_server_has_no_nagle_delay() -> None:
    """Five small RETRs take a few ms.  (Found here: the blocking server
    used to send each reply piece with its own sendall() with Nagle on, so
    every RETR waited for the client's delayed ACK, ~40 ms on Linux: 220 ms
    for this session.  It now gathers replies like the async servers.)"""
    with serve("sync", backend()) as running:
        elapsed = good_sessions(running.address, rounds=3)
    assert elapsed < 0.1, f"a 5-message session took {elapsed * 1000:.0f} ms"

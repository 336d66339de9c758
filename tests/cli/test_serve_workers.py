"""``pop3proto serve --workers N``: N processes on the same listeners,
each client address served by one of them (so the per-address limits
hold), the Maildir lock holding across them, a clean stop on SIGTERM and
SIGINT, and one per usable core by default."""

from __future__ import annotations

import contextlib
import os
import poplib
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pop3proto.adapters.cli._workers import route
from pop3proto.adapters.server import hash_password
from tests.cli.test_cli import _LISTENING, CLI, ServeProcess
from tests.helpers import make_maildir

HOST = "127.0.0.1"
PASSWORD = "workers pass"


def children_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry))
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize(
    ("runtime", "signum"),
    [("asyncio", signal.SIGTERM), ("trio", signal.SIGINT), ("sync", signal.SIGTERM)],
)
def test_workers_share_listeners_and_locks(runtime: str, signum: int, tmp_path: Path) -> None:
    server = ServeProcess(
        [*users_and_mail(tmp_path), "--runtime", runtime, "--workers", "2"], tmp_path, listeners=1
    )
    try:
        port = server.addresses[0][1]
        workers = wait_for_children(server.proc.pid, 2)
        # Two client addresses that two different workers serve.
        here = next(f"127.0.0.{n}" for n in range(1, 64) if route(f"127.0.0.{n}", 2) == 0)
        there = next(f"127.0.0.{n}" for n in range(1, 64) if route(f"127.0.0.{n}", 2) == 1)

        def login(source: str, user: str) -> poplib.POP3:
            pop = FromAddress(source, port)
            pop.user(user)
            return pop

        # Alice holds her maildrop in one worker; the other worker's
        # attempts are told [IN-USE]: the flock holds across processes.
        holder = login(here, "alice")
        holder.pass_(PASSWORD)
        holder_pid = serving_pid(holder.sock, workers)
        for _ in range(4):
            other = login(there, "alice")
            assert serving_pid(other.sock, workers) != holder_pid
            with pytest.raises(poplib.error_proto, match=r"\[IN-USE\]"):
                other.pass_(PASSWORD)
            other.quit()
            for source in (here, there):
                bob = login(source, "bob")
                bob.pass_(PASSWORD)
                assert bob.stat()[0] == 3
                bob.quit()
        holder.dele(1)
        holder.quit()
        again = login(there, "alice")
        again.pass_(PASSWORD)
        assert again.stat()[0] == 2
        again.quit()
    finally:
        workers = children_of(server.proc.pid)
        code = server.stop(signum)
    assert code == 0, server.log()
    assert server.log().count("listening on") == 1
    assert server.log().count("stopped") == 1
    for pid in workers:
        assert not os.path.exists(f"/proc/{pid}") or "Z" in Path(f"/proc/{pid}/stat").read_text()


def test_workers_listen_error_is_reported(tmp_path: Path) -> None:
    users = tmp_path / "users"
    users.write_text("alice:x\n")
    users.chmod(0o600)
    done = subprocess.run(
        [
            *(sys.executable, "-m", "pop3proto.adapters.cli", "serve", "--maildir", str(tmp_path)),
            *("--users", str(users), "--listen", "192.0.2.1:1", "--workers", "2"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "cannot listen on" in done.stderr


class FromAddress(poplib.POP3):
    """A :class:`poplib.POP3` connecting from a given loopback address."""

    def __init__(self, source: str, port: int) -> None:
        self.source = source
        super().__init__(HOST, port, timeout=10)

    def _create_socket(self, timeout: float) -> socket.socket:
        return socket.create_connection(
            (self.host, self.port), timeout, source_address=(self.source, 0)
        )


def users_and_mail(tmp_path: Path) -> list[str]:
    root = tmp_path / "mail"
    for user in ("alice", "bob"):
        make_maildir(root / user, [b"Subject: hi\n\nhello\n"] * 3)
    users = tmp_path / "users"
    users.write_text(
        "".join(f"{u}:{hash_password(PASSWORD, iterations=1000)}\n" for u in ("alice", "bob"))
    )
    users.chmod(0o600)
    return ["--maildir-root", str(root), "--users", str(users), "--listen", f"{HOST}:0"]


def wait_for_children(pid: int, count: int) -> list[int]:
    deadline = time.monotonic() + 30
    while len(children_of(pid)) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    found = children_of(pid)
    assert len(found) == count
    return found


def _hex_address(field: str) -> tuple[str, int]:
    host, port = field.split(":")
    return socket.inet_ntoa(bytes.fromhex(host)[::-1]), int(port, 16)


def serving_pid(client: socket.socket, candidates: list[int]) -> int:
    """The process (of *candidates*) holding the server's end of *client*'s
    IPv4 connection, found through /proc/net/tcp and each one's open files."""
    mine = client.getsockname()
    server = client.getpeername()
    inode = None
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if _hex_address(fields[1]) == server and _hex_address(fields[2]) == mine:
                inode = fields[9]
    assert inode is not None
    owners = []
    for pid in candidates:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                    owners.append(pid)
    assert len(owners) == 1, owners
    return owners[0]


def greeted(source: str, port: int) -> tuple[socket.socket, bytes]:
    """A connection from *source*, and the first line the server sent."""
    client = socket.create_connection((HOST, port), timeout=10, source_address=(source, 0))
    line = b""
    while not line.endswith(b"\n"):
        chunk = client.recv(1024)
        if not chunk:
            break
        line += chunk
    return client, line


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="routing by address: Linux")
@pytest.mark.parametrize("runtime", ["asyncio", "trio", "sync"])
def test_each_address_is_served_by_one_worker(runtime: str, tmp_path: Path) -> None:
    """Every connection from one address goes to the same worker (the one
    route() names), so --max-preauth-per-ip holds for the whole server:
    on one shared socket the third connection from an address would often
    reach the other worker and be let in."""
    server = ServeProcess(
        [*users_and_mail(tmp_path), "--runtime", runtime, "--workers", "2",
         "--max-preauth-per-ip", "2"],
        tmp_path,
        listeners=1,
    )  # fmt: skip
    clients: list[socket.socket] = []
    try:
        port = server.addresses[0][1]
        workers = wait_for_children(server.proc.pid, 2)
        sources = [f"127.0.0.{n}" for n in range(1, 9)]
        assert {route(ip, 2) for ip in sources} == {0, 1}
        pid_of: dict[str, int] = {}
        for ip in sources:
            for _ in range(2):
                client, line = greeted(ip, port)
                clients.append(client)
                assert line.startswith(b"+OK"), line
                pid = serving_pid(client, workers)
                assert pid_of.setdefault(ip, pid) == pid
            for _ in range(3):
                extra, line = greeted(ip, port)
                extra.close()
                assert line.startswith(b"-ERR [SYS/TEMP] too many connections from your"), line
        # The addresses are split between the workers as route() says.
        by_route = {
            index: {pid_of[ip] for ip in sources if route(ip, 2) == index} for index in (0, 1)
        }
        assert all(len(pids) == 1 for pids in by_route.values())
        assert by_route[0] != by_route[1]
    finally:
        for client in clients:
            client.close()
        code = server.stop()
    assert code == 0, server.log()


#: ``python -m pop3proto.adapters.cli ...`` on the given CPUs only.
PINNED = (
    "import os, runpy, sys; os.sched_setaffinity(0, {cpus}); "
    "runpy.run_module('pop3proto.adapters.cli', run_name='__main__', alter_sys=True)"
)


def start_serve(
    args: list[str], tmp_path: Path, cpus: set[int] | None = None
) -> tuple[subprocess.Popen[bytes], Path]:
    """``pop3proto serve`` (on *cpus* only, if given) once it listens."""
    log = tmp_path / "serve.log"
    command = [*CLI, "serve", *args, "--auth-failure-delay", "0"]
    if cpus is not None:
        # Set in the child itself: no preexec_fn in this threaded process.
        command[1:3] = ["-c", PINNED.format(cpus=sorted(cpus))]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=out
        )
    deadline = time.monotonic() + 30
    while not _LISTENING.search(log.read_text()):
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.02)
    return proc, log


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="no CPU affinity")
def test_the_default_is_one_worker_per_usable_core(tmp_path: Path) -> None:
    cpus = sorted(os.sched_getaffinity(0))
    cases = [(set(cpus[:1]), 0)] + ([(set(cpus[:2]), 2)] if len(cpus) >= 2 else [])
    for index, (allowed, children) in enumerate(cases):
        folder = tmp_path / str(index)
        folder.mkdir()
        proc, log = start_serve(users_and_mail(folder), folder, allowed)
        try:
            if children:
                wait_for_children(proc.pid, children)
                assert f"starting {children} workers" in log.read_text()
            else:
                # One core: served in this process, nothing forked.
                time.sleep(0.3)
                assert children_of(proc.pid) == []
                assert "workers" not in log.read_text()
            listening = _LISTENING.search(log.read_text())
            assert listening is not None
            pop = poplib.POP3(HOST, int(listening.group(2)), timeout=10)
            pop.user("bob")
            pop.pass_(PASSWORD)
            assert pop.stat()[0] == 3
            pop.quit()
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0, log.read_text()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_1_forks_nothing(tmp_path: Path) -> None:
    server = ServeProcess([*users_and_mail(tmp_path), "--workers", "1"], tmp_path, listeners=1)
    try:
        time.sleep(0.3)
        assert children_of(server.proc.pid) == []
    finally:
        assert server.stop() == 0
    assert "workers" not in server.log()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_lost_worker_stops_the_others(tmp_path: Path) -> None:
    """A worker killed from outside would leave its addresses unserved:
    the others stop too, and the server exits with the failure."""
    server = ServeProcess(
        [*users_and_mail(tmp_path), "--workers", "3", "--runtime", "sync"], tmp_path, listeners=1
    )
    try:
        workers = wait_for_children(server.proc.pid, 3)
        os.kill(workers[1], signal.SIGKILL)
        code = server.proc.wait(30)
    finally:
        server.stop()
    assert code == 128 + signal.SIGKILL
    assert (
        f"(pid {workers[1]}) ended with status {128 + signal.SIGKILL}: stopping the others"
        in server.log()
    )
    assert "a worker process failed (exit status 137)" in server.log()
    for pid in workers:
        assert not os.path.exists(f"/proc/{pid}") or "Z" in Path(f"/proc/{pid}/stat").read_text()


@pytest.mark.parametrize("runtime", ["asyncio", "trio", "sync"])
def test_a_stop_signal_right_after_start_stops_every_worker(runtime: str, tmp_path: Path) -> None:
    """SIGTERM as soon as the first worker announces the listener, before
    the others may handle signals: they still stop, cleanly."""
    for attempt in range(3):
        folder = tmp_path / str(attempt)
        folder.mkdir()
        proc, log = start_serve(
            [*users_and_mail(folder), "--runtime", runtime, "--workers", "4"], folder
        )
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(30) == 0, log.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert log.read_text().count("stopped") == 1

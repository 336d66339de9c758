"""``pop3proto serve --workers N``: N processes on the same listening
sockets, the Maildir lock holding across them, a clean stop on SIGTERM
and SIGINT."""

from __future__ import annotations

import os
import poplib
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pop3proto.adapters.server import hash_password
from tests.cli.test_cli import ServeProcess
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
    root = tmp_path / "mail"
    for user in ("alice", "bob"):
        make_maildir(root / user, [b"Subject: hi\n\nhello\n"] * 3)
    users = tmp_path / "users"
    users.write_text(
        "".join(f"{u}:{hash_password(PASSWORD, iterations=1000)}\n" for u in ("alice", "bob"))
    )
    users.chmod(0o600)
    server = ServeProcess(
        [
            "--maildir-root", str(root), "--users", str(users), "--listen", f"{HOST}:0",
            "--runtime", runtime, "--workers", "2",
        ],
        tmp_path,
        listeners=1,
    )  # fmt: skip
    try:
        port = server.addresses[0][1]
        deadline = time.monotonic() + 30
        while len(children_of(server.proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(children_of(server.proc.pid)) == 2
        # Alice holds her maildrop in one worker; every other attempt, in
        # whichever worker the kernel hands it to, is told [IN-USE].
        holder = poplib.POP3(HOST, port, timeout=10)
        holder.user("alice")
        holder.pass_(PASSWORD)
        for _ in range(8):
            other = poplib.POP3(HOST, port, timeout=10)
            other.user("alice")
            with pytest.raises(poplib.error_proto, match=r"\[IN-USE\]"):
                other.pass_(PASSWORD)
            other.quit()
            bob = poplib.POP3(HOST, port, timeout=10)
            bob.user("bob")
            bob.pass_(PASSWORD)
            assert bob.stat()[0] == 3
            bob.quit()
        holder.dele(1)
        holder.quit()
        again = poplib.POP3(HOST, port, timeout=10)
        again.user("alice")
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

"""Fault injection against the three servers over real sockets.

Each test runs the blocking, asyncio and trio servers (in a background
thread of this process, or in a subprocess where the process itself is
killed) over a :class:`MaildirBackend` in a temporary directory, and checks
the Maildir itself afterwards: file names and contents, nothing left in
``tmp/``, the lock free.

* The connection is cut at every byte offset of a recorded client session
  that marks messages deleted (login, LIST, DELE 1, DELE 3, RETR 2, no
  QUIT): the Maildir is unchanged every time.  Every offset on all three
  servers (it is cheap), with a clean end of stream (the server has run
  every complete command first) and with a TCP reset.
* The connection is cut after QUIT went out, at several moments: either
  both marked messages are gone or neither, never one, never a damaged file.
* A server process killed with SIGKILL in the middle of UPDATE (a backend
  that sleeps between unlinks, injected by a launcher script) leaves a
  Maildir that a restarted server serves correctly.

Set ``POP3PROTO_FIGURES`` to a file name to have the measured figures
appended to it (JSON lines, see :func:`tests.helpers.figure`);
``SECURITY.md`` quotes them.
"""

from __future__ import annotations

import poplib
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pop3proto.adapters.mailstore._maildir import MaildirBackend
from tests.helpers import (
    CLIENT_TIMEOUT,
    PASSWORD,
    RUNTIMES,
    USER,
    Running,
    figure,
    lock_is_free,
    maildir_state,
    make_maildir,
    poplib_body,
    read_to_eof,
    recv_until,
    running_server,
)

# ---------------------------------------------------------------------------
# Helpers of this module
# ---------------------------------------------------------------------------


def reset(sock: socket.socket) -> None:
    """Close with a TCP RST (SO_LINGER on, zero timeout)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def messages(count: int, size: int = 300) -> list[bytes]:
    """*count* distinct messages of about *size* octets, LF line ends."""
    out = []
    for i in range(count):
        body = b"".join(b"line %d of message %d\n" % (j, i) for j in range(size // 24 + 1))
        out.append(b"Subject: message %d\nFrom: a@example.org\n\n" % i + body)
    return out


# ---------------------------------------------------------------------------
# Cutting a session that marked messages deleted
# ---------------------------------------------------------------------------

#: login, LIST, DELE 1, DELE 3, RETR 2 (pipelined; no QUIT).
TRANSCRIPT = (
    f"USER {USER}\r\nPASS {PASSWORD}\r\n".encode() + b"LIST\r\nDELE 1\r\nDELE 3\r\nRETR 2\r\n"
)


@pytest.fixture
def maildir(tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    path = tmp_path / USER
    make_maildir(path, messages(4))
    return path, maildir_state(path)


def _cut_session(running: Running, offset: int, how: str) -> bytes:
    sock = running.connect()
    try:
        greeting = recv_until(sock, lambda d: d.endswith(b"\r\n"))
        assert greeting.startswith(b"+OK")
        sock.sendall(TRANSCRIPT[:offset])
        if how == "eof":
            # A clean end of stream: the server first runs every complete
            # command it received (DELE included), then sees the end.
            sock.shutdown(socket.SHUT_WR)
            return read_to_eof(sock)
        reset(sock)
        return b""
    finally:
        sock.close()


def _check_cut(running: Running, path: Path, before: dict[str, bytes]) -> None:
    running.wait_idle()
    assert maildir_state(path) == before
    assert lock_is_free(path)


@pytest.mark.parametrize("kind", RUNTIMES)
@pytest.mark.parametrize("how", ["eof", "reset"])
def test_cut_at_every_offset_deletes_nothing(
    maildir: tuple[Path, dict[str, bytes]], kind: str, how: str
) -> None:
    path, before = maildir
    start = time.monotonic()
    with running_server(kind, MaildirBackend(path)) as running:
        for offset in range(len(TRANSCRIPT) + 1):
            replies = _cut_session(running, offset, how)
            _check_cut(running, path, before)
            if how == "eof" and offset == len(TRANSCRIPT):
                # The marks really were made before the cut.
                assert replies.count(b"+OK message") == 2 and replies.endswith(b".\r\n")
    figure(
        "cut-every-offset",
        runtime=kind,
        how=how,
        offsets=len(TRANSCRIPT) + 1,
        seconds=round(time.monotonic() - start, 2),
    )


# ---------------------------------------------------------------------------
# Cutting after QUIT
# ---------------------------------------------------------------------------

#: When the client goes away after sending QUIT: at once (reset), after
#: reading part of the replies, or after a half-close.
QUIT_CUTS = ("reset-now", "reset-after-greeting-bytes", "reset-mid-replies", "eof")


def _quit_then_cut(running: Running, cut: str, rounds: int) -> bytes:
    sock = running.connect()
    try:
        recv_until(sock, lambda d: d.endswith(b"\r\n"))
        sock.sendall(TRANSCRIPT + b"QUIT\r\n")
        if cut == "reset-now":
            reset(sock)
            return b""
        if cut == "reset-after-greeting-bytes":
            sock.recv(1 + rounds % 7)
            reset(sock)
            return b""
        if cut == "reset-mid-replies":
            recv_until(sock, lambda d: len(d) > 40 + 13 * rounds)
            reset(sock)
            return b""
        sock.shutdown(socket.SHUT_WR)
        return read_to_eof(sock)
    finally:
        sock.close()


@pytest.mark.parametrize("kind", RUNTIMES)
def test_cut_after_quit_is_all_or_nothing(tmp_path: Path, kind: str) -> None:
    outcomes = {"all": 0, "none": 0}
    for rounds in range(6):
        for cut in QUIT_CUTS:
            path = tmp_path / f"{cut}-{rounds}"
            _, keys = make_maildir(path, messages(4))
            before = maildir_state(path)
            with running_server(kind, MaildirBackend(path)) as running:
                replies = _quit_then_cut(running, cut, rounds)
                running.wait_idle()
            after = maildir_state(path)
            assert lock_is_free(path)
            # Never partial, never a damaged file.
            gone = {keys[0], keys[2]}
            if after == before:
                outcomes["none"] += 1
            else:
                assert after == {k: v for k, v in before.items() if k not in gone}, (
                    cut,
                    sorted(after),
                )
                outcomes["all"] += 1
            if cut == "eof":
                assert replies.endswith(b"+OK bye (2 messages deleted)\r\n")
                assert after != before
    figure("cut-after-quit", runtime=kind, **outcomes)


# ---------------------------------------------------------------------------
# SIGKILL in the middle of UPDATE
# ---------------------------------------------------------------------------

LAUNCHER = textwrap.dedent(
    """
    import asyncio, functools, os, sys, time

    from pop3proto.adapters.mailstore._maildir import MaildirBackend, MaildirMaildrop
    from pop3proto.adapters.mailstore._users import DictAuthenticator

    kind, root, progress, delay = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    auth = DictAuthenticator({"alice": "correct horse"})


    class SlowMaildrop(MaildirMaildrop):
        # Removes one message at a time, slowly, saying which it removed.
        def commit(self, deleted):
            ok = True
            for index in sorted(deleted):
                time.sleep(delay)
                ok = MaildirMaildrop.commit(self, {index}) and ok
                with open(progress, "a") as f:
                    f.write(f"{index}\\n")
            return ok


    class SlowBackend(MaildirBackend):
        def open(self, user):
            maildrop = super().open(user)
            if delay > 0:
                maildrop.__class__ = SlowMaildrop
            return maildrop


    backend = SlowBackend(root)


    def ready(port):
        print(f"READY {port}", flush=True)


    if kind == "sync":
        from pop3proto.adapters.server._sync import Server

        server = Server(backend, auth, port=0, linger=0)
        ready(server.server_address[1])
        server.serve_forever()
    elif kind == "asyncio":
        from pop3proto.adapters.server._asyncio import Server

        async def main():
            async with Server(backend, auth, port=0, linger=0) as server:
                ready(server.server_address[1])
                await server.serve_forever()

        asyncio.run(main())
    else:
        import trio
        from pop3proto.adapters.server._trio import Server

        async def main():
            server = Server(backend, auth, port=0, linger=0)
            async with trio.open_nursery() as nursery:
                address = await nursery.start(server.serve)
                ready(address[1])

        trio.run(main)
    """
)


class ServerProcess:
    """A server in a subprocess, started from the launcher script."""

    def __init__(self, tmp_path: Path, kind: str, root: Path, delay: float) -> None:
        script = tmp_path / "launcher.py"
        script.write_text(LAUNCHER)
        self.progress = tmp_path / f"progress-{time.monotonic_ns()}"
        self.progress.touch()
        self.proc = subprocess.Popen(
            [sys.executable, str(script), kind, str(root), str(self.progress), str(delay)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.startswith("READY "), line
        self.port = int(line.split()[1])

    def removed(self) -> int:
        return len(self.progress.read_text().split())

    def rss_kib(self) -> int:
        """The server process's resident set size (VmRSS), in KiB."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise AssertionError("no VmRSS")  # pragma: no cover

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


def _session(port: int, commands: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=CLIENT_TIMEOUT)
    recv_until(sock, lambda d: d.endswith(b"\r\n"))
    sock.sendall(commands)
    return sock


@pytest.mark.parametrize("kind", RUNTIMES)
def test_sigkill_during_update_leaves_a_servable_maildir(tmp_path: Path, kind: str) -> None:
    count, doomed = 12, 8
    path = tmp_path / USER
    _, keys = make_maildir(path, messages(count))
    before = maildir_state(path)
    server = ServerProcess(tmp_path, kind, path, delay=0.15)
    try:
        login = f"USER {USER}\r\nPASS {PASSWORD}\r\n".encode()
        dele = b"".join(b"DELE %d\r\n" % n for n in range(1, doomed + 1))
        sock = _session(server.port, login + dele + b"QUIT\r\n")
        deadline = time.monotonic() + 10
        while server.removed() < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        server.kill()  # in the middle of UPDATE
        sock.close()
    finally:
        server.kill()
    removed = server.removed()
    assert 3 <= removed < doomed, removed
    after = maildir_state(path)
    # Only marked messages may be gone (the first ones, in order), and every
    # file left is intact.
    assert set(after) == set(keys[removed:])
    assert all(after[k] == before[k] for k in after)
    assert lock_is_free(path)  # the kernel dropped the dead process's flock

    # A restarted server serves what is left, correctly.
    restarted = ServerProcess(tmp_path, kind, path, delay=0)
    try:
        pop = poplib.POP3("127.0.0.1", restarted.port, timeout=CLIENT_TIMEOUT)
        try:
            pop.user(USER)
            pop.pass_(PASSWORD)
            assert pop.stat()[0] == count - removed
            _, uids, _ = pop.uidl()
            assert [u.split()[1].decode() for u in uids] == keys[removed:]
            for number, key in enumerate(keys[removed:], 1):
                _, lines, octets = pop.retr(number)
                expected = before[key].replace(b"\n", b"\r\n")
                assert poplib_body(lines) == expected
                assert octets == len(expected)
            assert pop.quit().startswith(b"+OK")
        finally:
            pop.close()
    finally:
        restarted.kill()
    figure("sigkill-during-update", runtime=kind, marked=doomed, removed_before_kill=removed)

"""``fetch`` bounds what a hostile server can make it store or how long it
can keep it busy (issue 14, item 8): a size cap per message and a total
deadline per message."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pop3proto.adapters.cli import main
from pop3proto.adapters.cli._account import Account
from pop3proto.adapters.cli._fetch import FetchOptions, FetchResult, summary_line

Body = Callable[[socket.socket], None]


class LyingServer:
    """A POP3 server whose LIST says one thing and whose RETR does another."""

    def __init__(self, sizes: dict[int, int], bodies: dict[int, Body]) -> None:
        self.sizes = sizes
        self.bodies = bodies
        self.sent = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:  # closed before any client came (fetch gave up first)
            return
        with conn, contextlib.suppress(OSError):
            conn.sendall(b"+OK liar ready\r\n")
            buffer = b""
            while True:
                while b"\r\n" not in buffer:
                    data = conn.recv(4096)
                    if not data:
                        return
                    buffer += data
                line, buffer = buffer.split(b"\r\n", 1)
                verb, _, arg = line.decode().partition(" ")
                verb = verb.upper()
                if verb == "LIST":
                    rows = "".join(f"{n} {s}\r\n" for n, s in self.sizes.items())
                    conn.sendall(f"+OK\r\n{rows}.\r\n".encode())
                elif verb == "UIDL":
                    rows = "".join(f"{n} uid-{n}\r\n" for n in self.sizes)
                    conn.sendall(f"+OK\r\n{rows}.\r\n".encode())
                elif verb == "RETR":
                    conn.sendall(b"+OK\r\n")
                    self.bodies[int(arg)](conn)
                    conn.sendall(b".\r\n")
                elif verb == "QUIT":
                    conn.sendall(b"+OK bye\r\n")
                    return
                elif verb in ("USER", "PASS", "NOOP"):
                    conn.sendall(b"+OK\r\n")
                else:  # CAPA and the rest
                    conn.sendall(b"-ERR not here\r\n")

    def close(self) -> None:
        # shutdown() wakes a thread still blocked in accept() (close() alone
        # may not, on Linux), so the join below cannot wait out its timeout.
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self.thread.join(30)


@contextlib.contextmanager
def lying(sizes: dict[int, int], bodies: dict[int, Body]) -> Iterator[LyingServer]:
    server = LyingServer(sizes, bodies)
    try:
        yield server
    finally:
        server.close()


def small(conn: socket.socket) -> None:
    conn.sendall(b"Subject: ok\r\n\r\nfine\r\n")


def flood(server_box: list[LyingServer]) -> Body:
    def body(conn: socket.socket) -> None:
        line = b"x" * 1022 + b"\r\n"
        chunk = line * 1024  # 1 MiB
        for _ in range(100):  # 100 MiB, unless cut off
            conn.sendall(chunk)
            server_box[0].sent += len(chunk)

    return body


def trickle(seconds: float, count: int) -> Body:
    def body(conn: socket.socket) -> None:
        for _ in range(count):
            conn.sendall(b"y")
            time.sleep(seconds)
        conn.sendall(b"\r\n")

    return body


def run_fetch(port: int, dest: Path, *extra: str, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setenv("LIAR_PASSWORD", "pw")
    return main(
        [
            "fetch", f"pop3://alice@127.0.0.1:{port}", "--no-tls", "--to", str(dest),
            "--password-env", "LIAR_PASSWORD", "-q", *extra,
        ]
    )  # fmt: skip


def stored(dest: Path) -> list[bytes]:
    return [p.read_bytes() for p in sorted((dest / "new").iterdir())]


def test_a_message_far_over_its_list_size_is_cut_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """LIST says 20 octets, the server streams 100 MiB: cut off after twice
    the size plus 64 KiB, exit 6, the messages before it kept."""
    box: list[LyingServer] = []
    with lying({1: 22, 2: 20}, {1: small, 2: flood(box)}) as server:
        box.append(server)
        code = run_fetch(server.port, tmp_path / "Maildir", monkeypatch=monkeypatch)
    err = capsys.readouterr().err
    assert code == 6, err
    assert "message 2: the server sent more than 65576 octets (LIST said 20)" in err
    assert err.count("\n") == 1
    assert stored(tmp_path / "Maildir") == [b"Subject: ok\n\nfine\n"]
    assert server.sent < 50 << 20  # the connection was dropped, not read to the end


def test_max_size_skips_and_caps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--max-size: a message listed larger is skipped (warning, exit 1); one
    that grows past it in transit is cut off (exit 6)."""
    with lying({1: 22, 2: 5000}, {1: small, 2: small}) as server:
        code = run_fetch(server.port, tmp_path / "a", "--max-size", "1K", monkeypatch=monkeypatch)
    err = capsys.readouterr().err
    assert code == 1, err
    assert "message 2 skipped: 5000 octets, over --max-size 1024" in err
    assert stored(tmp_path / "a") == [b"Subject: ok\n\nfine\n"]
    result = FetchResult(listed=2, new=1, stored=[1], skipped=[2])
    account = Account("pop3", "alice", "127.0.0.1", server.port)
    line = summary_line(result, FetchOptions(account, "pw", str(tmp_path / "a")))
    assert "1 stored" in line and "1 skipped (over --max-size)" in line
    box: list[LyingServer] = []
    with lying({1: 20}, {1: flood(box)}) as server:
        box.append(server)
        code = run_fetch(server.port, tmp_path / "b", "--max-size", "100", monkeypatch=monkeypatch)
    assert code == 6
    assert "more than 100 octets" in capsys.readouterr().err
    assert stored(tmp_path / "b") == []


def test_a_trickled_body_cannot_stretch_the_deadline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A byte every 0.3 s keeps each read inside --timeout 1 for ever; the
    message's total deadline (1 s + 20 octets at 16 KiB/s) still ends it."""
    with lying({1: 20}, {1: trickle(0.3, 100)}) as server:
        started = time.monotonic()
        code = run_fetch(
            server.port, tmp_path / "Maildir", "--timeout", "1", monkeypatch=monkeypatch
        )
        elapsed = time.monotonic() - started
    err = capsys.readouterr().err
    assert code == 4, err
    assert "message 1 (20 octets) not received within 1.0 s" in err
    assert elapsed < 15  # the trickle alone would take 30 s
    assert stored(tmp_path / "Maildir") == []


def test_message_timeout_is_the_deadline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with lying({1: 20}, {1: trickle(0.2, 100)}) as server:
        code = run_fetch(
            server.port,
            tmp_path / "Maildir",
            "--timeout",
            "30",
            "--message-timeout",
            "0.5",
            monkeypatch=monkeypatch,
        )
    assert code == 4
    assert "not received within 0.5 s (--message-timeout)" in capsys.readouterr().err


def test_a_plain_timeout_is_still_a_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A server that stops dead is --timeout's business (exit 4, "timed out")."""
    with lying({1: 20}, {1: trickle(2.0, 1)}) as server:
        code = run_fetch(
            server.port,
            tmp_path / "Maildir",
            "--timeout",
            "0.5",
            "--message-timeout",
            "60",
            monkeypatch=monkeypatch,
        )
    assert code == 4
    err = capsys.readouterr().err
    assert "timed out" in err and "--message-timeout" not in err


def test_octet_counts() -> None:
    from pop3proto.adapters.cli._common import octet_count

    assert octet_count("500") == 500
    assert octet_count("512K") == 512 << 10
    assert octet_count("25m") == 25 << 20
    assert octet_count("1GB") == 1 << 30
    for bad in ("", "0", "-1", "1.5M", "K", "12T"):
        with pytest.raises(Exception, match="must be a size"):
            octet_count(bad)

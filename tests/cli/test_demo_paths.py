"""``pop3proto demo``: where its certificate comes from, and how it reports trouble.

The happy runs are in test_cli.py; these check the fallbacks one by one
(no trustme, no or a broken ``openssl``), a server that does not start,
the scratch directory, and that a mismatch is reported as a failure.
"""

from __future__ import annotations

import io
import os
import socket
import ssl
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import pop3proto
from pop3proto.adapters.cli import _demo
from pop3proto.adapters.cli._common import CLIError
from pop3proto.adapters.cli._demo import make_certificate
from tests.helpers import FakeConfig, FakeSession, ThreadedServer


def no_trustme(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "trustme", None)  # import trustme -> ImportError


def only_on_path(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    monkeypatch.setenv("PATH", str(folder))


def test_trustme_missing_gives_no_certificate_when_asked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--tls trustme without trustme importable makes no certificate (the demo goes plaintext)."""
    no_trustme(monkeypatch)
    assert make_certificate(str(tmp_path), "trustme") is None


def test_auto_falls_back_from_trustme_to_openssl(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--tls auto without trustme uses the openssl command; the client then trusts it."""
    if not any(os.access(Path(d) / "openssl", os.X_OK) for d in os.get_exec_path()):
        pytest.skip("no openssl command")
    no_trustme(monkeypatch)
    made = make_certificate(str(tmp_path), "auto")
    assert made is not None
    assert "openssl" in made.source
    assert made.client.verify_mode == ssl.CERT_REQUIRED
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(made.pem)  # key and certificate in one file


def test_no_openssl_command_gives_no_certificate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without trustme and without openssl on PATH, auto makes no certificate."""
    no_trustme(monkeypatch)
    only_on_path(monkeypatch, tmp_path / "empty")
    assert make_certificate(str(tmp_path), "auto") is None
    assert make_certificate(str(tmp_path), "openssl") is None


def test_failing_openssl_command_gives_no_certificate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An openssl command that fails leaves the demo without a certificate, not crashed."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "openssl"
    fake.write_text("#!/bin/sh\necho 'openssl: broken' >&2\nexit 1\n")
    fake.chmod(0o755)
    only_on_path(monkeypatch, bin_dir)
    assert make_certificate(str(tmp_path), "openssl") is None
    assert not (tmp_path / "server.pem").exists()


def test_server_that_does_not_start_is_reported_with_its_error(tmp_path: Path) -> None:
    """If ``pop3proto serve`` exits at once, the demo says so with the server's own message."""
    log = tmp_path / "serve.log"
    with pytest.raises(CLIError, match="the demo server did not start") as info:
        _demo._ServeProcess(["--maildir", str(tmp_path / "missing"), "--users", "u"], str(log))
    assert "no such directory" in str(info.value)


def test_scratch_directory_off_a_small_dev_shm(monkeypatch: pytest.MonkeyPatch) -> None:
    """A /dev/shm too small for the sample maildrop is not used; the usual temp dir is."""

    class Tiny:
        f_bavail = 1
        f_frsize = 4096

    monkeypatch.setattr(os, "statvfs", lambda path: Tiny())
    path = _demo._scratch_dir()
    try:
        assert not path.startswith("/dev/shm")
        assert os.path.isdir(path)
    finally:
        os.rmdir(path)


def test_keep_prints_and_keeps_the_directory(capsys: pytest.CaptureFixture[str]) -> None:
    """--keep leaves the scratch directory and prints where it is."""
    with _demo._workdir(keep=True) as path:
        Path(path, "marker").write_text("x")
    try:
        assert capsys.readouterr().out == f"kept {path}\n"
        assert Path(path, "marker").exists()
    finally:
        Path(path, "marker").unlink()
        os.rmdir(path)


class NoUidl(FakeSession):
    def handle(self, event: pop3proto.Event) -> Iterable[Any]:
        if isinstance(event, pop3proto.Uidl):
            return [pop3proto.Err("no UIDL")]
        return super().handle(event)


@contextmanager
def demo_like_server(messages: list[bytes], password: str) -> Iterator[int]:
    """A fake server with the demo's user, without UIDL; yields its port."""
    config = FakeConfig(messages=messages, users={"demo": password})

    def handler(sock: socket.socket, server: ThreadedServer) -> None:
        session = NoUidl(config)
        sock.sendall(session.greeting())
        while not session.closing:
            data = sock.recv(65536)
            for chunk in session.receive(data):
                sock.sendall(chunk)
            if not data:
                break

    with ThreadedServer(handler=handler) as server:
        yield server.port


def test_every_kind_of_mismatch_is_a_problem(tmp_path: Path) -> None:
    """Differing bytes, a differing Maildir copy and a refetch that finds mail are each found."""
    served = [b"Subject: one\r\n\r\nserved\r\n", b"Subject: two\r\n\r\nserved\r\n"]
    expected = [b"Subject: one\r\n\r\nserved\r\n", b"Subject: two\r\n\r\nOTHER\r\n"]
    out = io.StringIO()
    with demo_like_server(served, "pw") as port:
        problems = _demo._fetch_three_ways(
            port, "pw", None, expected, [b"not what was served\n"] * 2, str(tmp_path),
            "sync", out,
        )  # fmt: skip
    assert problems == [
        "pipelined: messages [2] differ",
        "one at a time: messages [2] differ",
        "the Maildir copy differs",
        "the second fetch found new messages",
    ]
    assert "WITHOUT TLS" in out.getvalue()


def test_a_problem_fails_the_demo(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Any problem found makes the demo print FAILED and exit 1, after stopping its server."""
    seen: list[int] = []

    def one_problem(port: int, *args: Any) -> list[str]:
        seen.append(port)
        return ["something differs"]

    monkeypatch.setattr(_demo, "_fetch_three_ways", one_problem)
    assert _demo.run_demo(messages=2, big_mb=1, runtime="sync", tls="none") == 1
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == "FAILED: something differs"
    assert len(seen) == 1

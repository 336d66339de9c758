"""``pop3proto serve``: its option errors, verbosity and listen failures.

Errors found before serving starts are checked in-process through
:func:`main` (the ``pop3proto`` logger it sets up is put back afterwards);
anything that serves runs ``pop3proto serve`` as a child process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import poplib
import re
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from pop3proto.adapters.cli import main
from tests.helpers import PASSWORD

CLI = [sys.executable, "-m", "pop3proto.adapters.cli"]
HOST = "127.0.0.1"
START_TIMEOUT = 30.0


@pytest.fixture(autouse=True)
def _restore_the_pop3proto_logger() -> Iterator[None]:
    """serve installs its own handler and level on the "pop3proto" logger; undo it."""
    logger = logging.getLogger("pop3proto")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved


def served_folder(tmp_path: Path, mode: int = 0o600) -> list[str]:
    """A Maildir with one message and a users file; the serve arguments for them."""
    for sub in ("cur", "new", "tmp"):
        (tmp_path / "md" / sub).mkdir(parents=True, exist_ok=True)
    (tmp_path / "md" / "new" / "1.M1P1.host").write_bytes(b"Subject: hi\n\nhello\n")
    users = tmp_path / "users"
    users.write_text(f"alice:{PASSWORD}\n")
    users.chmod(mode)
    return ["--maildir", str(tmp_path / "md"), "--users", str(users)]


def serve_error(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """Run ``serve`` in-process; return its exit status and its one error line."""
    code = main(["serve", *args])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("pop3proto serve: error: ")]
    assert len(lines) == 1, err
    return code, lines[0]


# ---------------------------------------------------------------------------
# Refused before serving
# ---------------------------------------------------------------------------


def test_tls_key_without_certificate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--tls-key alone is a usage error (exit 2)."""
    code, line = serve_error(capsys, *served_folder(tmp_path), "--tls-key", "key.pem")
    assert code == 2
    assert line.endswith("--tls-key needs --tls-cert")


def test_missing_certificate_or_key_file_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], ca: trustme.CA
) -> None:
    """A --tls-cert or --tls-key that does not exist is named in the usage error."""
    cert = tmp_path / "cert.pem"
    ca.issue_cert(HOST).cert_chain_pems[0].write_to_path(str(cert))
    missing = tmp_path / "nowhere.pem"
    for tls in (["--tls-cert", str(missing)], ["--tls-cert", str(cert), "--tls-key", str(missing)]):
        code, line = serve_error(capsys, *served_folder(tmp_path), *tls)
        assert code == 2
        assert line.endswith(f"cannot read {missing}: No such file or directory")


def test_certificate_file_that_holds_no_certificate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A --tls-cert that is not PEM is a usage error saying the certificate cannot be loaded."""
    bogus = tmp_path / "bogus.pem"
    bogus.write_text("not a certificate\n")
    code, line = serve_error(capsys, *served_folder(tmp_path), "--tls-cert", str(bogus))
    assert code == 2
    assert "cannot load the TLS certificate/key" in line


def test_users_file_with_a_bad_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A users file line without a password field is a usage error naming the line."""
    args = served_folder(tmp_path)
    (tmp_path / "users").write_text("alice:secret\njust-a-name\n")
    code, line = serve_error(capsys, *args)
    assert code == 2
    assert "bad users file" in line and "users:2" in line
    assert "secret" not in line


def test_trio_runtime_without_trio(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--runtime trio without trio installed says how to install it."""
    monkeypatch.setitem(sys.modules, "trio", None)  # import trio -> ImportError
    code, line = serve_error(capsys, *served_folder(tmp_path), "--runtime", "trio")
    assert code == 2
    assert "pip install 'pop3proto[trio]'" in line


@pytest.mark.parametrize(("flag", "level"), [("-v", logging.DEBUG), ("-q", logging.WARNING)])
def test_verbosity_sets_the_log_level(
    flag: str, level: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """-v logs connection detail (DEBUG), -q warnings only; set before anything can fail."""
    serve_error(capsys, flag, "--maildir", str(tmp_path / "missing"), "--users", "u")
    assert logging.getLogger("pop3proto").level == level


# ---------------------------------------------------------------------------
# Serving (child processes)
# ---------------------------------------------------------------------------

_LISTENING = re.compile(r"listening on \S+:(\d+) \(")


@contextlib.contextmanager
def serving(args: list[str], log_path: Path) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """``pop3proto serve`` in a child; yields its port once it listens."""
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [*CLI, "serve", "--listen", f"{HOST}:0", "--auth-failure-delay", "0", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while (match := _LISTENING.search(log_path.read_text())) is None:
                assert proc.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, "serve did not start"
                time.sleep(0.02)
            yield int(match.group(1)), proc
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(30)


def reset_after_greeting(port: int) -> None:
    """Connect, read the greeting, and reset the connection (SO_LINGER 0)."""
    with socket.create_connection((HOST, port), timeout=10) as sock:
        assert sock.recv(100).startswith(b"+OK")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


@pytest.mark.parametrize("flag", ["-v", "-q"])
def test_verbosity_of_a_running_server(flag: str, tmp_path: Path) -> None:
    """-v adds why connections ended, -q drops session lines; a loose users file is warned of."""
    args = [*served_folder(tmp_path, mode=0o644), "--runtime", "sync", flag]
    log_path = tmp_path / "serve.log"
    with serving(args, log_path) as (port, proc):
        pop = poplib.POP3(HOST, port, timeout=10)
        pop.user("alice")
        pop.pass_(PASSWORD)
        pop.quit()
        reset_after_greeting(port)
        if flag == "-v":
            # Both lines are written by the connection threads: wait for them
            # (with -q nothing is, and waiting would prove nothing).
            deadline = time.monotonic() + START_TIMEOUT
            while not re.search(
                r"session end:(.|\n)*connection from \S+ ended", log_path.read_text()
            ):
                assert time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    log = log_path.read_text()
    assert "is readable by other users; chmod 600 it" in log
    assert "SIGINT: stopping" not in log if flag == "-q" else "SIGINT: stopping" in log
    assert ("session end:" in log) == (flag == "-v")
    assert (re.search(r"connection from \S+ ended", log) is not None) == (flag == "-v")
    assert "Traceback" not in log


@pytest.mark.parametrize("runtime", ["asyncio", "trio"])
def test_listen_error(runtime: str, tmp_path: Path) -> None:
    """An address already in use ends serve with the network exit code (4), as one line."""
    with contextlib.closing(socket.socket()) as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [*CLI, "serve", *served_folder(tmp_path), "--listen", f"{HOST}:{port}",
             "--runtime", runtime],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert done.returncode == 4, done.stderr
    assert f"cannot listen on {HOST}:{port}" in done.stderr
    assert "Traceback" not in done.stderr
    assert os.path.exists(tmp_path / "md" / "new" / "1.M1P1.host")

"""End-to-end tests of the ``pop3proto`` command line (``serve``, ``fetch``, ``demo``).

``serve`` runs as a subprocess under each runtime and is checked with the
stdlib ``poplib`` and with ``curl`` (skipped when curl is missing, unless
the ``CI`` environment variable is set).  ``fetch`` runs as a subprocess
against our own server (in a thread of this process, so that the test can
slow it down or look at its Maildir) and against Dovecot (``tests/dovecot.py``).
A few in-process tests pin down the pieces whose failures are hard to
provoke from outside: the streaming CRLF/mboxrd conversion and the recovery
of a message stored but not yet recorded.

Every port is chosen by the kernel (port 0); nothing is fixed.
"""

from __future__ import annotations

import contextlib
import json
import os
import poplib
import random
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pop3proto.adapters.cli import CLIError, describe_error, main, parse_address
from pop3proto.adapters.cli._account import Account, parse_url
from pop3proto.adapters.cli._fetch import FetchOptions, fetch
from pop3proto.adapters.cli._statefile import StateFile
from pop3proto.adapters.mailstore import _destinations
from pop3proto.adapters.mailstore._destinations import (
    LineEndConverter,
    MboxDestination,
    StorageError,
    read_mboxrd,
)
from pop3proto.adapters.mailstore._maildir import MaildirBackend, MaildirMaildrop
from pop3proto.adapters.mailstore._users import DictAuthenticator
from pop3proto.adapters.server._asyncio import STLS_SUPPORTED
from tests.dovecot import (
    TEST_MESSAGES,
    DovecotServer,
)
from tests.helpers import (
    PASSWORD,
    USER,
    expected_body,
    make_maildir,
    running_server,
)

trustme = pytest.importorskip("trustme")

HOST = "127.0.0.1"
CLI = [sys.executable, "-m", "pop3proto.adapters.cli"]
START_TIMEOUT = 60.0  # bounds a hang; a loaded machine starts slowly

#: Stored messages (LF line ends, as Maildir files usually are).
MESSAGES: tuple[bytes, ...] = (
    b"From: bob@example.org\nTo: alice@example.org\nSubject: hello\n\nHello Alice.\n",
    b"Subject: dots\n\n.\n..\n.leading dot\n...\nmiddle\n. dot space\n.\n",
    "Subject: 8bit\nContent-Type: text/plain; charset=utf-8\n\n"
    "Gr\u00fc\u00dfe aus K\u00f6ln \u65e5\u672c\u8a9e \U0001f4ec\n".encode(),
    b"Return-Path: <bounce@example.org>\nSubject: from lines\n\nFrom here\n>From there\n"
    b">>From everywhere\nFrom\nFromage\n",
    b"Subject: big\n\n" + b"".join(b"line %06d %s\n" % (n, b"x" * 32) for n in range(6000)),
    b"Subject: last\n\nbye\n",
)


def maildir_messages(path: Path) -> list[bytes]:
    """The messages of a Maildir, in delivery order (our names carry a counter)."""
    files = [p for sub in ("new", "cur") for p in (path / sub).iterdir()]
    files.sort(key=lambda p: (p.stat().st_mtime_ns, p.name))
    return [p.read_bytes() for p in files]


def state_uids(path: Path) -> list[str]:
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return []
    return [uid for uids in data["accounts"].values() for uid in uids]


@dataclass
class TLSFiles:
    ca: Path
    cert: Path
    key: Path

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(self.cert), str(self.key))
        return context


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    folder = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    issued = ca.issue_cert(HOST, "localhost")
    files = TLSFiles(folder / "ca.pem", folder / "cert.pem", folder / "key.pem")
    ca.cert_pem.write_to_path(str(files.ca))
    issued.cert_chain_pems[0].write_to_path(str(files.cert))
    for extra in issued.cert_chain_pems[1:]:
        extra.write_to_path(str(files.cert), append=True)
    issued.private_key_pem.write_to_path(str(files.key))
    return files


def users_file(folder: Path) -> Path:
    path = folder / "users"
    path.write_text(f"# test users\n{USER}:{PASSWORD}\nbob:{{PLAIN}}bob pass\n")
    path.chmod(0o600)
    return path


def curl_or_skip() -> str:
    found = shutil.which("curl")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("curl is missing (CI is set: run `bash .ci/install-peers`)")
        pytest.skip("curl is not installed")
    return found


# ---------------------------------------------------------------------------
# serve
# ---------------------------------------------------------------------------

_LISTENING = re.compile(r"listening on (\[[^\]]+\]|[^\s:]+):(\d+) \(([^)]*)\)")


class ServeProcess:
    """``pop3proto serve`` in a subprocess; stderr goes to a file we read."""

    def __init__(self, args: Sequence[str], folder: Path, listeners: int) -> None:
        self.log_path = folder / "serve.log"
        self._log = self.log_path.open("wb")
        if "--auth-failure-delay" not in args:
            # Failed logins cost nothing in tests (see tests/conftest.py).
            args = [*args, "--auth-failure-delay", "0"]
        if "--workers" not in args:
            # The default forks one worker per core: two, whatever the
            # machine, keeps that path under test at a bounded cost.
            args = [*args, "--workers", "2"]
        self.proc = subprocess.Popen(
            [*CLI, "serve", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
        )
        self.addresses: list[tuple[str, int, str]] = []
        deadline = time.monotonic() + START_TIMEOUT
        while len(self.addresses) < listeners:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited with {self.proc.returncode}: {self.log()}")
            if time.monotonic() > deadline:
                self.stop(signal.SIGKILL)
                raise AssertionError(f"serve did not start: {self.log()}")
            time.sleep(0.02)
            self.addresses = [
                (m.group(1), int(m.group(2)), m.group(3)) for m in _LISTENING.finditer(self.log())
            ]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def port(self, mode: str) -> int:
        return next(port for _, port, m in self.addresses if m == mode)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        try:
            code = self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self._log.close()
        return code


@pytest.mark.parametrize("runtime", ["asyncio", "trio", "sync"])
def test_serve(runtime: str, tmp_path: Path, tls_files: TLSFiles) -> None:
    if runtime == "asyncio" and not STLS_SUPPORTED:
        pytest.skip("STLS over asyncio needs Python 3.11")
    maildir = tmp_path / "Maildir"
    _, keys = make_maildir(maildir, MESSAGES)
    files = [maildir / "new" / key for key in keys]
    server = ServeProcess(
        [
            "--maildir", str(maildir), "--users", str(users_file(tmp_path)),
            "--listen", f"{HOST}:0", "--tls-listen", f"{HOST}:0",
            "--tls-cert", str(tls_files.cert), "--tls-key", str(tls_files.key),
            "--runtime", runtime, "--idle-timeout", "30",
        ],
        tmp_path,
        listeners=2,
    )  # fmt: skip
    try:
        plain = server.port("STLS offered")
        implicit = server.port("implicit TLS")
        expected = [expected_body(m) for m in MESSAGES]

        # -- poplib, plaintext on loopback (allowed by the default policy) --
        pop = poplib.POP3(HOST, plain, timeout=10)
        pop.user(USER)
        pop.pass_(PASSWORD)
        assert pop.stat() == (len(MESSAGES), sum(len(e) for e in expected))
        _, listing, _ = pop.list()
        assert [line.split() for line in listing] == [
            [str(n).encode(), str(len(e)).encode()] for n, e in enumerate(expected, 1)
        ]
        _, uidl, _ = pop.uidl()
        uids = {int(n): uid.decode() for n, uid in (line.split() for line in uidl)}
        assert uids == {n: f.name for n, f in enumerate(files, 1)}
        for number, want in enumerate(expected, 1):
            _, lines, _ = pop.retr(number)
            assert b"\r\n".join(lines) + b"\r\n" == want
        # A QUIT-committed deletion removes exactly that file.
        pop.dele(len(MESSAGES))
        pop.quit()
        assert not files[-1].exists()

        # -- poplib with STLS, and implicit TLS --
        pop = poplib.POP3(HOST, plain, timeout=10)
        pop.stls(context=tls_files.client_context())
        pop.user(USER)
        pop.pass_(PASSWORD)
        assert b"\r\n".join(pop.retr(2)[1]) + b"\r\n" == expected[1]
        pop.quit()
        pops = poplib.POP3_SSL(HOST, implicit, context=tls_files.client_context(), timeout=10)
        pops.user(USER)
        pops.pass_(PASSWORD)
        assert pops.stat()[0] == len(MESSAGES) - 1
        pops.quit()

        # -- curl, when installed --
        if shutil.which("curl") or os.environ.get("CI"):
            curl = curl_or_skip()
            base = f"pop3://{USER}:{PASSWORD.replace(' ', '%20')}@{HOST}:{plain}"

            def run_curl(*args: str) -> bytes:
                done = subprocess.run(
                    [curl, "-sS", "--max-time", "20", *args],
                    capture_output=True,
                    check=True,
                    timeout=30,
                )
                return done.stdout

            listed = run_curl(f"{base}/")
            assert listed == b"".join(
                b"%d %d\r\n" % (n, len(e)) for n, e in enumerate(expected[:-1], 1)
            )
            for number in (1, 2, 4, 5):
                assert run_curl(f"{base}/{number}") == expected[number - 1]
            assert run_curl("-X", "UIDL", f"{base}/") == b"".join(
                b"%d %s\r\n" % (n, f.name.encode()) for n, f in enumerate(files[:-1], 1)
            )
            # STLS, certificate verified against the test CA.
            secure = run_curl("--ssl-reqd", "--cacert", str(tls_files.ca), f"{base}/3")
            assert secure == expected[2]

        # -- a session that marks deletions but never sends QUIT --
        pending = poplib.POP3(HOST, plain, timeout=10)
        pending.user(USER)
        pending.pass_(PASSWORD)
        pending.dele(1)
        pending.dele(2)
        assert pending.noop().startswith(b"+OK")
    finally:
        code = server.stop(signal.SIGTERM)
    with contextlib.suppress(OSError):
        pending.close()
    log = server.log()
    assert code == 0, log
    # Nothing the unfinished session marked was removed.
    assert [f.exists() for f in files] == [True] * (len(files) - 1) + [False]
    assert "Traceback" not in log
    assert PASSWORD not in log and "bob pass" not in log
    sessions = [line for line in log.splitlines() if "session end:" in line]
    assert len(sessions) >= 4
    assert any("user=alice" in s and "reason=quit" in s and "deleted=1" in s for s in sessions)
    assert any("user=alice" in s and "deleted=0" in s and "reason=quit" not in s for s in sessions)
    assert all(re.search(r"commands=\d+ received=\d+ sent=\d+", s) for s in sessions)


def test_serve_usage_errors(tmp_path: Path) -> None:
    users = users_file(tmp_path)
    maildir = tmp_path / "md"
    make_maildir(maildir, MESSAGES[:1])
    cases = [
        (["--maildir", str(tmp_path / "missing"), "--users", str(users)], "no such directory"),
        (["--maildir", str(maildir), "--users", str(tmp_path / "nope")], "users file"),
        (["--maildir", str(maildir), "--users", str(users), "--tls-listen", "127.0.0.1:0"],
         "--tls-listen needs --tls-cert"),
    ]  # fmt: skip
    for args, message in cases:
        done = subprocess.run(
            [*CLI, "serve", *args], capture_output=True, text=True, timeout=30, check=False
        )
        assert done.returncode == 2, done.stderr
        assert message in done.stderr
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def test_serve_listen_error(tmp_path: Path) -> None:
    maildir = tmp_path / "md"
    make_maildir(maildir, MESSAGES[:1])
    with contextlib.closing(socket.socket()) as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [*CLI, "serve", "--maildir", str(maildir), "--users", str(users_file(tmp_path)),
             "--listen", f"{HOST}:{port}", "--runtime", "sync"],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
    assert done.returncode == 4, done.stderr
    assert f"cannot listen on {HOST}:{port}" in done.stderr
    assert "Traceback" not in done.stderr


def test_serve_per_user_limits_and_idle_timeout(tmp_path: Path) -> None:
    root = tmp_path / "mail"
    _, alice = make_maildir(root / USER, MESSAGES[:2])
    server = ServeProcess(
        ["--maildir-root", str(root), "--users", str(users_file(tmp_path)),
         "--listen", f"{HOST}:0", "--runtime", "trio", "--max-connections", "1",
         "--idle-timeout", "1"],
        tmp_path,
        listeners=1,
    )  # fmt: skip
    try:
        port = server.port("no TLS")
        first = poplib.POP3(HOST, port, timeout=10)
        first.user("bob")
        first.pass_("bob pass")
        assert first.stat() == (0, 0)  # bob's Maildir is created, empty
        assert (root / "bob" / "new").is_dir()
        with pytest.raises(poplib.error_proto, match=r"SYS/TEMP"):
            poplib.POP3(HOST, port, timeout=10)  # over --max-connections
        time.sleep(1.5)  # --idle-timeout 1: the server gives up on bob
        with pytest.raises((poplib.error_proto, OSError)):
            first.noop()
        first.close()
        # The session counts until the server has closed its side too.
        deadline = time.monotonic() + 10
        while True:
            try:
                second = poplib.POP3(HOST, port, timeout=10)
                break
            except poplib.error_proto:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        second.user(USER)
        second.pass_(PASSWORD)
        assert second.stat()[0] == len(alice)
        second.quit()
    finally:
        code = server.stop()
    assert code == 0
    assert "reason=timeout" in server.log()


# ---------------------------------------------------------------------------
# fetch against our server
# ---------------------------------------------------------------------------


class SlowBackend(MaildirBackend):
    """A Maildir backend that takes *delay* seconds before each message, so
    that a test can kill a fetch part-way whatever the disk speed."""

    def __init__(self, root: Path, delay: float) -> None:
        super().__init__(root)
        self.delay = delay

    def open(self, user: str) -> MaildirMaildrop:
        maildrop = super().open(user)
        original = maildrop.open_message
        delay = self.delay

        def slow(index: int) -> Iterator[bytes]:
            time.sleep(delay)
            return original(index)

        maildrop.open_message = slow  # type: ignore[method-assign]
        return maildrop


# The server the fetch tests fetch from: asyncio, as `pop3proto serve` runs
# by default, where it can do STLS (Python 3.11+), else trio.
FETCH_SERVER = "asyncio" if STLS_SUPPORTED else "trio"


@dataclass
class Served:
    maildir: Path
    plain: int
    implicit: int
    tls: TLSFiles

    def url(self, scheme: str = "pop3", user: str = USER) -> str:
        port = self.implicit if scheme == "pop3s" else self.plain
        return f"{scheme}://{user}@{HOST}:{port}"

    def fetch_options(self, dest: Path) -> FetchOptions:
        """An in-process fetch of alice's mail into *dest*, quietly, without fsync."""
        return FetchOptions(
            account=Account("pop3", USER, HOST, self.plain),
            password=PASSWORD,
            destination=str(dest),
            cafile=str(self.tls.ca),
            durable=False,
            progress=False,
        )


@contextlib.contextmanager
def serving(
    folder: Path, tls: TLSFiles, messages: Sequence[bytes], delay: float = 0.0
) -> Iterator[Served]:
    maildir = folder / "served"
    make_maildir(maildir, messages)
    backend = SlowBackend(maildir, delay) if delay else MaildirBackend(maildir)
    common: dict[str, Any] = {
        "backend": backend,
        "auth": DictAuthenticator({USER: PASSWORD}),
        "ssl_context": tls.server_context(),
        "linger": 1.0,
    }
    with (
        running_server(FETCH_SERVER, **common) as plain,
        running_server(FETCH_SERVER, implicit_tls=True, **common) as implicit,
    ):
        yield Served(maildir, plain.address[1], implicit.address[1], tls)


@pytest.fixture
def served(tmp_path: Path, tls_files: TLSFiles) -> Iterator[Served]:
    with serving(tmp_path, tls_files, MESSAGES) as server:
        yield server


def run_fetch(
    *args: str, password: str = PASSWORD, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TEST_POP3_PASSWORD": password}
    return subprocess.run(
        [*CLI, "fetch", *args, "--password-env", "TEST_POP3_PASSWORD"],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


def test_fetch_maildir(served: Served, tmp_path: Path) -> None:
    dest = tmp_path / "inbox"
    done = run_fetch(served.url(), "--cafile", str(served.tls.ca), "--to", str(dest))
    assert done.returncode == 0, done.stderr
    assert maildir_messages(dest) == list(MESSAGES)
    assert all(",P3=" in p.name for p in (dest / "new").iterdir())
    summary = done.stderr.strip().splitlines()
    assert len(summary) == 1 and "6 stored" in summary[0], done.stderr
    state = Path(f"{dest}.uidl")
    assert sorted(state_uids(state)) == sorted(p.name for p in (served.maildir / "new").iterdir())
    # Nothing new: nothing fetched.
    again = run_fetch(served.url(), "--cafile", str(served.tls.ca), "--to", str(dest))
    assert again.returncode == 0 and "0 to fetch" in again.stderr
    # One new message on the server: exactly that one is fetched.
    make_maildir(served.maildir, [b"Subject: new\n\nnews\n"], start=1_800_000_000)
    third = run_fetch(served.url("pop3s"), "--cafile", str(served.tls.ca), "--to", str(dest))
    assert third.returncode == 0 and "1 stored" in third.stderr, third.stderr
    assert maildir_messages(dest) == [*MESSAGES, b"Subject: new\n\nnews\n"]
    # --all fetches everything again.
    everything = run_fetch(
        served.url(), "--no-tls", "--all", "--limit", "2", "--to", str(dest), "-q"
    )
    assert everything.returncode == 0 and everything.stderr == ""
    assert maildir_messages(dest)[-2:] == list(MESSAGES[:2])


def test_fetch_mbox(served: Served, tmp_path: Path) -> None:
    dest = tmp_path / "mail" / "inbox.mbox"
    first = run_fetch(
        served.url("pop3s"), "--cafile", str(served.tls.ca), "--to", str(dest), "--limit", "4"
    )
    assert first.returncode == 0, first.stderr
    second = run_fetch(served.url("pop3s"), "--cafile", str(served.tls.ca), "--to", str(dest))
    assert second.returncode == 0 and "2 stored" in second.stderr, second.stderr
    data = dest.read_bytes()
    assert read_mboxrd(data) == list(MESSAGES)
    from_lines = [line for line in data.split(b"\n") if line.startswith(b"From ")]
    assert len(from_lines) == len(MESSAGES)
    assert from_lines[3].startswith(b"From bounce@example.org ")
    assert all(line.startswith(b"From MAILER-DAEMON ") for i, line in enumerate(from_lines)
               if i != 3)  # fmt: skip
    # mboxrd quoting of message 4, exactly.
    assert b"\n>From here\n>>From there\n>>>From everywhere\nFrom\nFromage\n\n" in data
    assert not Path(f"{dest}.uidl.intent").exists()


def _by_date_and_name(path: Path) -> tuple[int, str]:
    return path.stat().st_mtime_ns, path.name


def test_fetch_delete(served: Served, tmp_path: Path) -> None:
    dest = tmp_path / "inbox"
    # In the server's order (by date, then name; names alone misorder
    # "M18458" before "M2380" when the microseconds differ in length).
    before = sorted((served.maildir / "new").iterdir(), key=_by_date_and_name)
    done = run_fetch(served.url(), "--cafile", str(served.tls.ca), "--to", str(dest),
                     "--limit", "3", "--delete")  # fmt: skip
    assert done.returncode == 0 and "3 deleted" in done.stderr, done.stderr
    after = sorted((served.maildir / "new").iterdir(), key=_by_date_and_name)
    assert after == before[3:]
    assert maildir_messages(dest) == list(MESSAGES[:3])
    # The rest, and an unrelated message that appears meanwhile.
    make_maildir(served.maildir, [b"Subject: late\n\nlate\n"], start=1_800_000_000)
    done = run_fetch(served.url(), "--cafile", str(served.tls.ca), "--to", str(dest), "--delete")
    assert done.returncode == 0 and "4 deleted" in done.stderr, done.stderr
    assert list((served.maildir / "new").iterdir()) == []
    assert maildir_messages(dest) == [*MESSAGES, b"Subject: late\n\nlate\n"]
    # Unique-ids of deleted messages are forgotten on the next run.
    run_fetch(served.url(), "--cafile", str(served.tls.ca), "--to", str(dest))
    assert state_uids(Path(f"{dest}.uidl")) == []


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_fetch_errors(served: Served, tmp_path: Path) -> None:
    dest = str(tmp_path / "inbox")
    ca = str(served.tls.ca)
    wrong = run_fetch(served.url(), "--cafile", ca, "--to", dest, password="wrong")
    assert wrong.returncode == 3
    line = one_line_error(wrong)
    assert line.startswith("pop3proto fetch: error: authentication failed") and "wrong" not in line
    # The default trust store does not know the test CA.
    untrusted = run_fetch(served.url("pop3s"), "--to", dest)
    assert untrusted.returncode == 5
    assert "certificate verification failed" in one_line_error(untrusted)
    untrusted = run_fetch(served.url(), "--to", dest)
    assert untrusted.returncode == 5
    with contextlib.closing(socket.socket()) as unused:
        unused.bind((HOST, 0))
        port = unused.getsockname()[1]
    refused = run_fetch(f"pop3://{USER}@{HOST}:{port}", "--cafile", ca, "--to", dest)
    assert refused.returncode == 4
    assert "connection failed" in one_line_error(refused)
    for args in (["ftp://a@b", "--to", dest], [f"pop3://{USER}:pw@{HOST}", "--to", dest],
                 [served.url("pop3s"), "--no-tls", "--to", dest]):  # fmt: skip
        usage = run_fetch(*args)
        assert usage.returncode == 2
        one_line_error(usage)
    no_password = subprocess.run(
        [*CLI, "fetch", served.url(), "--to", dest],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert no_password.returncode == 2
    assert "no password" in one_line_error(no_password)
    # Nothing was stored by any of these.
    assert not (tmp_path / "inbox" / "new").exists() or not list((tmp_path / "inbox/new").iterdir())


def test_fetch_password_file_and_auth(served: Served, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text(PASSWORD + "\n")
    done = subprocess.run(
        [*CLI, "fetch", served.url(), "--password-file", str(secret), "--cafile",
         str(served.tls.ca), "--auth", "plain", "--to", str(tmp_path / "inbox")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert maildir_messages(tmp_path / "inbox") == list(MESSAGES)


def test_fetch_local_storage_errors(served: Served, tmp_path: Path) -> None:
    """A destination or state file that cannot be used exits 7, naming the file."""
    ca = str(served.tls.ca)
    state = tmp_path / "garbage.uidl"
    state.write_text("not json\n")
    garbage = run_fetch(served.url(), "--cafile", ca, "--to", str(tmp_path / "a"),
                        "--state", str(state))  # fmt: skip
    assert garbage.returncode == 7
    assert one_line_error(garbage) == (
        f"pop3proto fetch: error: the state file {state} is not a pop3proto state file "
        "(move it away to start afresh)"
    )
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / "new").write_text("a file where the Maildir's new/ should be")
    maildir = run_fetch(served.url(), "--cafile", ca, "--to", str(blocked))
    assert maildir.returncode == 7
    line = one_line_error(maildir)
    assert line.startswith(f"pop3proto fetch: error: cannot create the Maildir {blocked}/new: ")
    assert "network" not in line and "@" not in line


def test_mbox_locked_by_another_program(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An mbox that another process keeps locked fails the store with that reason."""
    path = tmp_path / "box.mbox"
    path.write_bytes(b"")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR); "
         "fcntl.lockf(fd, fcntl.LOCK_EX); print('locked', flush=True); sys.stdin.read()",
         str(path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdin is not None and holder.stdout is not None
    try:
        assert holder.stdout.readline().strip() == "locked"
        monkeypatch.setattr(_destinations, "_MBOX_LOCK_WAIT", 0.2)
        destination = MboxDestination(str(path), durable=False, intent_path=str(tmp_path / "i"))
        try:
            writer = destination.begin("a@b", "uid1")
            writer.write(b"Subject: x\r\n\r\nbody\r\n")
            with pytest.raises(StorageError) as info:
                destination.store(writer)
        finally:
            destination.close()
    finally:
        holder.stdin.close()
        holder.wait(10)
    assert str(info.value) == f"the mbox {path} stays locked by another program"
    assert isinstance(info.value, OSError)
    assert describe_error(info.value, "alice@example.org:110") == (7, str(info.value))
    assert path.read_bytes() == b""


def big_mailbox(count: int) -> list[bytes]:
    rng = random.Random(5)
    messages = []
    for n in range(count):
        lines = b"".join(
            b"%s%d %s\n" % (rng.choice([b"", b".", b"From "]), n, b"y" * rng.randint(0, 90))
            for _ in range(rng.randint(5, 400))
        )
        messages.append(b"Subject: %d\n\n" % n + lines)
    return messages


@pytest.mark.parametrize("kind", ["maildir", "mbox"])
def test_fetch_killed_and_resumed(kind: str, tmp_path: Path, tls_files: TLSFiles) -> None:
    messages = big_mailbox(120)
    dest = tmp_path / ("inbox.mbox" if kind == "mbox" else "inbox")
    state = Path(f"{dest}.uidl")
    with serving(tmp_path, tls_files, messages, delay=0.004) as server:
        args = [server.url(), "--cafile", str(tls_files.ca), "--to", str(dest)]
        env = {**os.environ, "TEST_POP3_PASSWORD": PASSWORD}
        proc = subprocess.Popen(
            [*CLI, "fetch", *args, "--password-env", "TEST_POP3_PASSWORD"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while len(state_uids(state)) < 5 and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.002)
        # Somewhere in the next message or two: in the middle of a body, of
        # a store or of a state update.
        time.sleep(random.uniform(0, 0.02))
        proc.kill()
        proc.wait()
        assert proc.stderr is not None
        proc.stderr.close()
        recorded = len(state_uids(state))
        assert 5 <= recorded < len(messages)
        # The rerun fetches exactly what is missing.
        done = run_fetch(*args)
        assert done.returncode == 0, done.stderr
        assert len(state_uids(state)) == len(messages)
        match = re.search(r"(\d+) stored", done.stderr)
        assert match is not None, done.stderr
        found = re.search(r"(\d+) found stored by an interrupted run", done.stderr)
        # Stored now, plus at most one stored by the killed run but not
        # recorded: together exactly the messages not recorded before.
        recovered = int(found.group(1)) if found else 0
        assert recovered <= 1
        assert int(match.group(1)) + recovered == len(messages) - recorded, done.stderr
    if kind == "mbox":
        got = read_mboxrd(dest.read_bytes())
        assert not Path(f"{dest}.uidl.intent").exists()
    else:
        got = maildir_messages(dest)
    assert sorted(got) == sorted(messages)  # every message, exactly once
    assert got == messages  # and in order


def test_fetch_progress_bar_on_a_terminal(served: Served, tmp_path: Path) -> None:
    import pty

    controller, terminal = pty.openpty()
    env = {**os.environ, "TEST_POP3_PASSWORD": PASSWORD, "COLUMNS": "100"}
    try:
        done = subprocess.run(
            [*CLI, "fetch", served.url(), "--cafile", str(served.tls.ca), "--to",
             str(tmp_path / "inbox"), "--password-env", "TEST_POP3_PASSWORD"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=terminal, env=env,
            timeout=60, check=False,
        )  # fmt: skip
        os.close(terminal)
        output = b""
        with contextlib.suppress(OSError):
            while chunk := os.read(controller, 65536):
                output += chunk
    finally:
        os.close(controller)
    assert done.returncode == 0, output
    text = output.decode()
    assert re.search(r"\r\[#+\] 6/6 msgs .* ETA", text), text
    assert "6 stored" in text


#: Runs the command in its arguments with SIGINT ignored, as a shell starts a
#: background job or a CI runner may start its steps: the disposition
#: survives exec, so the command starts with SIGINT ignored in this process.
SIGINT_IGNORED = [
    sys.executable,
    "-c",
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
    "os.execv(sys.argv[1], sys.argv[1:])",
]


def interrupt_fetch(
    tmp_path: Path, tls_files: TLSFiles, signum: int, code: int, *, prefix: Sequence[str] = ()
) -> None:
    """Start a fetch (after *prefix*), send *signum* after 3 messages, check
    that it exits with *code* at once and leaves a consistent destination."""
    messages = big_mailbox(60)
    dest = tmp_path / "inbox"
    state = Path(f"{dest}.uidl")
    with serving(tmp_path, tls_files, messages, delay=0.01) as server:
        env = {**os.environ, "TEST_POP3_PASSWORD": PASSWORD}
        proc = subprocess.Popen(
            [*prefix, *CLI, "fetch", server.url(), "--cafile", str(tls_files.ca), "--to",
             str(dest), "--delete", "--password-env", "TEST_POP3_PASSWORD"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while len(state_uids(state)) < 3 and time.monotonic() < deadline:
            time.sleep(0.005)
        proc.send_signal(signum)
        try:
            _, stderr = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:  # it ignored the signal: do not leave it behind
                proc.kill()
                proc.communicate()
    assert proc.returncode == code, stderr
    word = "interrupted" if signum == signal.SIGINT else "terminated"
    assert stderr.splitlines()[-1] == f"pop3proto fetch: {word}", stderr
    assert "Traceback" not in stderr
    stored = maildir_messages(dest)
    assert 3 <= len(stored) < len(messages)
    assert stored == messages[: len(stored)]
    # No QUIT: --delete removed nothing from the server.
    assert len(list((server.maildir / "new").iterdir())) == len(messages)


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_fetch_interrupted_by_signal(
    signum: int, code: int, tmp_path: Path, tls_files: TLSFiles
) -> None:
    interrupt_fetch(tmp_path, tls_files, signum, code)


def test_fetch_stops_on_sigint_even_if_started_with_it_ignored(
    tmp_path: Path, tls_files: TLSFiles
) -> None:
    """A fetch whose parent ignores SIGINT still stops on SIGINT, with exit 130."""
    interrupt_fetch(tmp_path, tls_files, signal.SIGINT, 130, prefix=SIGINT_IGNORED)


# ---------------------------------------------------------------------------
# In-process: recovery of a message stored but not recorded
# ---------------------------------------------------------------------------


class Crash(BaseException):
    """Stands for kill -9 at a precise point."""


@pytest.mark.parametrize("kind", ["maildir", "mbox"])
def test_stored_but_not_recorded_is_not_duplicated(
    kind: str, served: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = tmp_path / ("inbox.mbox" if kind == "mbox" else "inbox")
    options = served.fetch_options(dest)
    real_add = StateFile.add
    calls = []

    def crashing_add(self: StateFile, account: str, uid: str) -> None:
        calls.append(uid)
        if len(calls) == 3:
            raise Crash  # the third message is stored, its UID not recorded
        real_add(self, account, uid)

    # The in-process fetch settles its own intent on the way out, which a
    # killed process cannot do: skip that to leave the state of a kill.
    monkeypatch.setattr(StateFile, "add", crashing_add)
    monkeypatch.setattr(MboxDestination, "recorded", lambda self: None)
    monkeypatch.setattr(MboxDestination, "resolve_intent", lambda self, is_recorded: None)
    with pytest.raises(Crash):
        fetch(options)
    monkeypatch.undo()
    assert len(state_uids(Path(f"{dest}.uidl"))) == 2
    if kind == "mbox":
        assert Path(f"{dest}.uidl.intent").exists()
    result = fetch(options)
    assert len(result.stored) == len(MESSAGES) - 3
    assert result.recovered == [3]
    if kind == "maildir":
        assert maildir_messages(dest) == list(MESSAGES)
    else:
        assert read_mboxrd(dest.read_bytes()) == list(MESSAGES)
        assert not Path(f"{dest}.uidl.intent").exists()
    assert len(state_uids(Path(f"{dest}.uidl"))) == len(MESSAGES)


def test_partial_mbox_append_is_truncated(
    served: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = tmp_path / "inbox.mbox"
    options = served.fetch_options(dest)
    fetch(FetchOptions(**{**options.__dict__, "limit": 4}))
    size = dest.stat().st_size
    real_write = _destinations._write_all
    writes = []

    def dying_write(fd: int, data: bytes) -> None:
        # Calls: the intent file, the separator + From line, then the body.
        writes.append(len(data))
        if len(writes) == 3:
            real_write(fd, data[: len(data) // 2])
            raise Crash
        real_write(fd, data)

    monkeypatch.setattr(_destinations, "_write_all", dying_write)
    monkeypatch.setattr(MboxDestination, "resolve_intent", lambda self, is_recorded: None)
    with pytest.raises(Crash):
        fetch(options)
    monkeypatch.undo()
    assert dest.stat().st_size > size  # half a message is in the mbox
    result = fetch(options)  # truncates it, then fetches it again
    assert dest.stat().st_size > size
    assert read_mboxrd(dest.read_bytes()) == list(MESSAGES)
    assert len(result.stored) == 2


# ---------------------------------------------------------------------------
# fetch against Dovecot
# ---------------------------------------------------------------------------


def test_fetch_from_dovecot(
    dovecot: DovecotServer, dovecot_mailbox: list[bytes], tmp_path: Path
) -> None:
    dest = tmp_path / "from-dovecot"
    url = f"pop3://{dovecot.user}@{dovecot.host}:{dovecot.pop3_port}"
    args = [url, "--cafile", str(dovecot.ca_cert_path), "--to", str(dest)]
    done = run_fetch(*args, password=dovecot.password)
    assert done.returncode == 0, done.stderr
    assert maildir_messages(dest) == list(TEST_MESSAGES)
    again = run_fetch(*args, password=dovecot.password)
    assert again.returncode == 0 and "0 to fetch" in again.stderr, again.stderr


# ---------------------------------------------------------------------------
# demo
# ---------------------------------------------------------------------------


def test_demo() -> None:
    done = subprocess.run([*CLI, "demo"], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK: all 301 messages verified" in done.stdout
    assert "with STLS" in done.stdout
    assert done.stdout.count("server log: ") == 4


@pytest.mark.parametrize(("tls", "runtime"), [("openssl", "trio"), ("none", "sync")])
def test_demo_fallbacks(tls: str, runtime: str) -> None:
    if tls == "openssl" and shutil.which("openssl") is None:
        pytest.skip("no openssl command")
    done = subprocess.run(
        [*CLI, "demo", "--tls", tls, "--runtime", runtime, "--messages", "20", "--big-mb", "1"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert ("WITHOUT TLS" in done.stdout) == (tls == "none")


# ---------------------------------------------------------------------------
# Small pieces
# ---------------------------------------------------------------------------


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in ([], ["serve"], ["fetch"], ["demo"]):
        with pytest.raises(SystemExit) as exit_info:
            main([*argv, "--help"])
        assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "exit codes:" in text and "mboxrd" in text and "--maildir-root" in text
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--users", "x"])
    assert exit_info.value.code == 2


def test_parse_helpers() -> None:
    assert parse_address("127.0.0.1:0") == ("127.0.0.1", 0)
    assert parse_address("[::1]:110") == ("::1", 110)
    for bad in ("localhost", "::1:110", "host:99999", "host:x"):
        with pytest.raises(Exception, match=r"\S"):
            parse_address(bad)
    account = parse_url("pop3s://alice%40example.org@[::1]")
    assert (account.user, account.host, account.port) == ("alice@example.org", "::1", 995)
    assert account.key == "alice@example.org@[::1]"
    assert parse_url("pop3://bob;AUTH=cram-md5@h:1110").mechanism == "CRAM-MD5"
    assert parse_url("pop3://bob;auth=*@h").mechanism is None
    for bad in ("http://a@b", "pop3://a:pw@b", "pop3://b", "pop3://a@b/x", "pop3://a;AUTH=X@b"):
        with pytest.raises(CLIError):
            parse_url(bad)


def _reference(data: bytes, mboxrd: bool) -> bytes:
    out = data.replace(b"\r\n", b"\n")
    if mboxrd:
        out = re.sub(rb"(?m)^(>*From )", rb">\1", out)
    return out


@pytest.mark.parametrize("mboxrd", [False, True])
def test_line_end_converter_any_split(mboxrd: bool) -> None:
    rng = random.Random(11)
    pieces = [b"\r\n", b"\r", b"\n", b"From ", b">", b">From ", b"Fro", b"m ", b"x", b"From"]
    for _ in range(400):
        data = b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 30)))
        converter = LineEndConverter(mboxrd=mboxrd)
        out = bytearray()
        position = 0
        while position < len(data):
            step = rng.randint(1, 4)
            out += converter.feed(data[position : position + step])
            position += step
        out += converter.end()
        assert bytes(out) == _reference(data, mboxrd), data


def test_mbox_round_trip(tmp_path: Path) -> None:
    """Random messages through the mbox writer and back through read_mboxrd."""
    rng = random.Random(7)
    pieces = [b"\r\n", b"\r", b"From ", b">From ", b">>From x", b"text", b"\r\nFrom \r\n", b" "]
    sent = [b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 40))) for _ in range(60)]
    sent += [b"", b"From ", b"no line end", b"\r"]
    path = tmp_path / "box.mbox"
    path.write_bytes(b"From someone Mon Jan  1 00:00:00 2024\nold message, no final blank line\n")
    destination = MboxDestination(str(path), durable=False, intent_path=str(tmp_path / "intent"))
    try:
        for index, message in enumerate(sent):
            writer = destination.begin("a@b", f"uid{index}")
            position = 0
            while position < len(message):
                step = rng.randint(1, 5)
                writer.write(message[position : position + step])
                position += step
            destination.store(writer)
            destination.recorded()
    finally:
        destination.close()
    got = read_mboxrd(path.read_bytes())
    assert got[0] == b"old message, no final blank line\n"
    for message, stored in zip(sent, got[1:], strict=True):
        want = message.replace(b"\r\n", b"\n")
        assert stored == (want if want.endswith(b"\n") else want + b"\n"), message


def test_serve_admission_flags(tmp_path: Path) -> None:
    """``serve --max-preauth-per-ip``, ``--login-timeout``: a second
    connection from the address is refused, the first is dropped when it
    has not logged in in time (SECURITY.md "Connection admission")."""
    root = tmp_path / "mail"
    make_maildir(root / USER, MESSAGES[:1])
    server = ServeProcess(
        ["--maildir-root", str(root), "--users", str(users_file(tmp_path)),
         "--listen", f"{HOST}:0", "--runtime", "asyncio", "--max-preauth-per-ip", "1",
         "--login-timeout", "1", "--line-timeout", "30", "--handshake-timeout", "5"],
        tmp_path,
        listeners=1,
    )  # fmt: skip
    try:
        port = server.port("no TLS")
        with socket.create_connection((HOST, port), timeout=10) as first:
            assert first.recv(100).startswith(b"+OK")
            with pytest.raises(poplib.error_proto, match=r"from your address"):
                poplib.POP3(HOST, port, timeout=10)
            started = time.monotonic()
            first.settimeout(10)
            assert first.recv(100) == b"-ERR disconnected for inactivity\r\n"
            assert time.monotonic() - started < 8
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--max-preauth-per-ip", "-1"),
        ("--max-sessions-per-ip", "ten"),
        ("--line-timeout", "0"),
        ("--login-timeout", "inf"),
        ("--handshake-timeout", "-5"),
    ],
)
def test_serve_admission_flags_are_checked(
    flag: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--maildir", ".", "--users", "users", flag, value])
    assert exit_info.value.code == 2
    assert flag in capsys.readouterr().err

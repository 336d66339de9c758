"""``pop3proto serve`` options for exposed servers (issue 14, items 6 and 9):
``--no-trust-loopback`` and ``--user``."""

from __future__ import annotations

import os
import poplib
import pwd
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from pop3proto.adapters.cli import CLIError
from tests.cli.test_cli import HOST, ServeProcess, users_file
from tests.cli.test_serve_workers import children_of
from tests.helpers import PASSWORD, USER, make_maildir

RUNTIMES = ["asyncio", "trio", "sync"]
MESSAGES = [b"Subject: one\r\n\r\nfirst\r\n"]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_no_trust_loopback_refuses_plaintext_from_loopback(runtime: str, tmp_path: Path) -> None:
    """Behind a same-host proxy every client looks local: the flag makes
    loopback clients follow the remote policy (no USER/PASS without TLS)."""
    make_maildir(tmp_path / "Maildir", MESSAGES)
    args = ["--maildir", str(tmp_path / "Maildir"), "--users", str(users_file(tmp_path))]
    args += ["--listen", f"{HOST}:0", "--runtime", runtime]
    server = ServeProcess([*args, "--no-trust-loopback"], tmp_path, listeners=1)
    try:
        pop = poplib.POP3(HOST, server.port("no TLS"), timeout=10)
        try:
            assert "USER" not in pop.capa()
            with pytest.raises(poplib.error_proto, match="plaintext authentication disallowed"):
                pop.user(USER)
                pop.pass_(PASSWORD)
        finally:
            pop.close()
    finally:
        assert server.stop() == 0
    # Without the flag, loopback is trusted (the default, unchanged).
    server = ServeProcess(args, tmp_path, listeners=1)
    try:
        pop = poplib.POP3(HOST, server.port("no TLS"), timeout=10)
        pop.user(USER)
        pop.pass_(PASSWORD)
        assert pop.stat()[0] == 1
        pop.quit()
    finally:
        assert server.stop() == 0


def _uid_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[2])  # the effective uid
    raise AssertionError("no Uid line")  # pragma: no cover


@pytest.mark.skipif(os.geteuid() != 0 or not Path("/proc/self/status").exists(), reason="root")
@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_user_drops_root_once_bound(
    runtime: str, workers: int, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """--user: the server reads mail as that user, not as root.  With
    several workers, the processes that serve do; their parent, which
    only waits for them and passes signals on, stays root (as Dovecot's
    master does): once it dropped its rights it could no longer signal a
    worker that has not yet dropped its own."""
    nobody = pwd.getpwnam("nobody")
    # pytest's tmp_path sits in a directory only root may enter.
    shared = Path(tempfile.mkdtemp(prefix="pop3proto-user-"))
    shared.chmod(0o755)
    request.addfinalizer(lambda: shutil.rmtree(shared, ignore_errors=True))
    maildir = shared / "Maildir"
    make_maildir(maildir, MESSAGES)
    for folder, _, names in os.walk(maildir):
        os.chown(folder, nobody.pw_uid, nobody.pw_gid)
        for name in names:
            os.chown(os.path.join(folder, name), nobody.pw_uid, nobody.pw_gid)
    args = ["--maildir", str(maildir), "--users", str(users_file(tmp_path))]
    args += ["--listen", f"{HOST}:0", "--runtime", runtime, "--user", "nobody"]
    server = ServeProcess([*args, "--workers", str(workers)], tmp_path, listeners=1)
    try:
        deadline = time.monotonic() + 30
        serving = [server.proc.pid] if workers == 1 else children_of(server.proc.pid)
        while (
            len(serving) < workers or any(_uid_of(pid) != nobody.pw_uid for pid in serving)
        ) and time.monotonic() < deadline:
            time.sleep(0.02)
            serving = [server.proc.pid] if workers == 1 else children_of(server.proc.pid)
        assert [_uid_of(pid) for pid in serving] == [nobody.pw_uid] * workers
        pop = poplib.POP3(HOST, server.port("no TLS"), timeout=10)
        pop.user(USER)
        pop.pass_(PASSWORD)
        assert pop.retr(1)[1] == [b"Subject: one", b"", b"first"]
        pop.quit()
    finally:
        assert server.stop() == 0
    assert "running as nobody" in server.log()


def test_user_errors_are_usage_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    from pop3proto.adapters.cli._serve import _RunAs

    with pytest.raises(CLIError, match="no such user") as info:
        _RunAs.parse("no-such-user-here")
    assert info.value.code == 2
    with pytest.raises(CLIError, match="no such group"):
        _RunAs.parse("nobody:no-such-group-here")
    run_as = _RunAs.parse("nobody:nogroup" if _has_group("nogroup") else "nobody")
    assert run_as.uid == pwd.getpwnam("nobody").pw_uid
    me = pwd.getpwuid(os.geteuid()).pw_name
    assert _RunAs.parse(me).uid == os.geteuid()
    _RunAs.parse(me).switch()  # already that user: nothing to do
    monkeypatch.setattr(os, "geteuid", lambda: 12345)
    with pytest.raises(CLIError, match="started as root"):
        _RunAs.parse("nobody")


def _has_group(name: str) -> bool:
    import grp

    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True

"""``fetch --oauth2-token-env/--oauth2-token-cmd`` against ``serve
--oauth2-verify-cmd``, on each server runtime; the token never on argv,
in a log or in an error."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from pop3proto.adapters.cli._common import CLIError
from pop3proto.adapters.cli._oauth2 import command_verifier, token_from_command, token_from_env
from pop3proto.sasl import OAuthDenial
from tests.cli.test_cli import (
    CLI,
    HOST,
    MESSAGES,
    ServeProcess,
    TLSFiles,
    maildir_messages,
    users_file,
)
from tests.cli.test_cli import (
    tls_files as tls_files_fixture,
)
from tests.helpers import USER, make_maildir

# Shared with test_cli (module-scoped: one CA for the module).
tls_files = tls_files_fixture

SHORT = "ya29.a0short"
LONG = "EwBwA8l6BAAU" + "Zx9" * 500  # > 255 octets: the two-line exchange

VERIFY = textwrap.dedent(
    f"""\
    import json, os, sys
    token = sys.stdin.readline().strip()
    user = os.environ["POP3PROTO_OAUTH2_USER"]
    with open(sys.argv[1], "a") as log:
        log.write(" ".join(sys.argv[2:]) + "|" + user + "\\n")
    if user == {USER!r} and token in ({SHORT!r}, {LONG!r}):
        sys.exit(0)
    print(json.dumps({{"status": "invalid_token", "scope": "https://mail.example/pop"}}))
    sys.exit(1)
    """
)


@pytest.fixture
def verify_cmd(tmp_path: Path) -> tuple[str, Path]:
    script = tmp_path / "verify.py"
    script.write_text(VERIFY)
    calls = tmp_path / "verify.calls"
    return f"{sys.executable} {script} {calls} check", calls


def serve(tmp_path: Path, tls: TLSFiles, runtime: str, verify: str) -> ServeProcess:
    maildir = tmp_path / "served"
    make_maildir(maildir, MESSAGES[:3])
    return ServeProcess(
        [
            "--maildir", str(maildir), "--users", str(users_file(tmp_path)),
            "--tls-listen", f"{HOST}:0", "--tls-cert", str(tls.cert), "--tls-key", str(tls.key),
            "--runtime", runtime, "--idle-timeout", "30", "--oauth2-verify-cmd", verify, "-v",
        ],
        tmp_path,
        listeners=1,
    )  # fmt: skip


def fetch(
    port: int, dest: Path, tls: TLSFiles, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "fetch", f"pop3s://{USER}@{HOST}:{port}", "--cafile", str(tls.ca),
         "--to", str(dest), *args],
        capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=60,
        check=False,
    )  # fmt: skip


@pytest.fixture(params=["sync", "asyncio", "trio"])
def served(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    tls_files: TLSFiles,
    verify_cmd: tuple[str, Path],
) -> Iterator[tuple[ServeProcess, Path]]:
    process = serve(tmp_path, tls_files, request.param, verify_cmd[0])
    try:
        yield process, verify_cmd[1]
    finally:
        assert process.stop() == 0, process.log()


@pytest.mark.parametrize("token", [SHORT, LONG], ids=["one-line", "two-line"])
def test_fetch_with_token_command(
    served: tuple[ServeProcess, Path], tmp_path: Path, tls_files: TLSFiles, token: str
) -> None:
    process, calls = served
    dest = tmp_path / "inbox"
    # As a user's refresh tool would: the token comes from a file, so it is
    # on no command line (fetch's, the shell's or cat's).
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    done = fetch(process.port("implicit TLS"), dest, tls_files, "--oauth2-token-cmd",
                 f"cat {token_file}")  # fmt: skip
    assert done.returncode == 0, done.stderr + process.log()
    assert maildir_messages(dest) == list(MESSAGES[:3])
    assert "3 stored" in done.stderr
    # The verify command got the token on stdin, never as an argument.
    assert calls.read_text() == f"check|{USER}\n"
    log = process.log()
    assert "OAUTHBEARER" not in log or token not in log
    assert token not in log and token not in done.stderr


def test_fetch_with_token_env_and_refusal(
    served: tuple[ServeProcess, Path], tmp_path: Path, tls_files: TLSFiles
) -> None:
    process, _ = served
    port = process.port("implicit TLS")
    ok = fetch(port, tmp_path / "a", tls_files, "--oauth2-token-env", "TOK", env={"TOK": LONG})
    assert ok.returncode == 0, ok.stderr
    refused = fetch(
        port, tmp_path / "b", tls_files, "--oauth2-token-env", "TOK", env={"TOK": "s3cr3t-stale"}
    )
    assert refused.returncode == 3, refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1, refused.stderr
    assert "token refused: status invalid_token, scope https://mail.example/pop" in lines[0]
    assert "s3cr3t" not in refused.stderr and "s3cr3t" not in process.log()


def test_plain_server_does_not_offer_tokens(tmp_path: Path, tls_files: TLSFiles) -> None:
    maildir = tmp_path / "served"
    make_maildir(maildir, MESSAGES[:1])
    process = ServeProcess(
        ["--maildir", str(maildir), "--users", str(users_file(tmp_path)),
         "--tls-listen", f"{HOST}:0", "--tls-cert", str(tls_files.cert),
         "--tls-key", str(tls_files.key), "--runtime", "sync"],
        tmp_path,
        listeners=1,
    )  # fmt: skip
    try:
        done = fetch(process.port("implicit TLS"), tmp_path / "x", tls_files,
                     "--oauth2-token-cmd", f"echo {SHORT}")  # fmt: skip
    finally:
        process.stop()
    assert done.returncode == 3
    assert "offers no OAuth 2.0 mechanism" in done.stderr


# ---------------------------------------------------------------------------
# The pieces, in process
# ---------------------------------------------------------------------------


def test_token_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOK", f"  {SHORT}\n")
    assert token_from_env("TOK") == SHORT
    monkeypatch.delenv("TOK")
    with pytest.raises(CLIError, match="not set") as info:
        token_from_env("TOK")
    assert info.value.code == 2
    assert token_from_command(f"echo {SHORT}") == SHORT
    for command, reason in [
        ("exit 7", "exit status 7"),
        ("true", "empty token"),
        ("printf 'a b'", "did not print one access token"),
        ("printf 'one\\ntwo'", "did not print one access token"),
        ("printf '\\377'", "non-ASCII"),
    ]:
        with pytest.raises(CLIError, match=reason) as info:
            token_from_command(command)
        assert info.value.code == 3


def test_fetch_option_errors(tmp_path: Path) -> None:
    env = {**os.environ, "TOK": SHORT}
    for extra in (["--auth", "PLAIN"], []):
        url = f"pop3s://{USER}{';AUTH=PLAIN' if not extra else ''}@{HOST}:1"
        done = subprocess.run(
            [*CLI, "fetch", url, "--to", str(tmp_path / "x"), "--oauth2-token-env", "TOK", *extra],
            capture_output=True, text=True, env=env, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 2 and "OAuth 2.0 token" in done.stderr, done.stderr
    both = subprocess.run(
        [*CLI, "fetch", f"pop3s://{USER}@{HOST}:1", "--to", str(tmp_path / "x"),
         "--oauth2-token-env", "TOK", "--password-env", "TOK"],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert both.returncode == 2 and "not allowed with" in both.stderr


def test_command_verifier_conventions(tmp_path: Path) -> None:
    script = tmp_path / "v.sh"
    script.write_text(
        'read tok\n'
        'case "$tok" in\n'
        '  good) exit 0 ;;\n'
        '  mapped) echo "box-$POP3PROTO_OAUTH2_USER"; exit 0 ;;\n'
        '  json) echo \'{"status":"insufficient_scope","scope":"pop"}\'; exit 1 ;;\n'
        '  slow) sleep 5 ;;\n'
        '  *) echo "nope"; exit 1 ;;\n'
        'esac\n'
    )  # fmt: skip
    verify = command_verifier(f"sh {script}", timeout=0.5)
    assert verify("alice", "good") == "alice"
    assert verify("alice", "mapped") == "box-alice"
    assert verify("alice", "json") == OAuthDenial("insufficient_scope", "pop")
    assert verify("alice", "bad") == OAuthDenial()
    assert verify("alice", "slow") == OAuthDenial()

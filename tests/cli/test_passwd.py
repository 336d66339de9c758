"""``pop3proto passwd``: a hashed users-file entry, password never on argv
(issue 14, item 5)."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from pop3proto.adapters.cli import main
from pop3proto.adapters.cli._passwd import read_new_password
from pop3proto.adapters.mailstore._users import UsersFile


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def run(monkeypatch: pytest.MonkeyPatch, argv: list[str], stdin: str) -> int:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    return main(["passwd", *argv])


def test_adds_and_changes_users_keeping_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    users = tmp_path / "users"
    users.write_text("# our users\ncarol:{PLAIN}carol pw\n")
    users.chmod(0o640)
    assert run(monkeypatch, ["--users", str(users), "alice"], "correct horse\n") == 0
    assert "added alice" in capsys.readouterr().err
    fast = ["--scheme", "pbkdf2", "--iterations", "1000"]
    assert run(monkeypatch, ["--users", str(users), *fast, "bob"], "bob pw\r\n") == 0
    assert run(monkeypatch, ["--users", str(users), "alice"], "new pw\n") == 0
    assert "changed the password of alice" in capsys.readouterr().err
    text = users.read_text()
    assert text.startswith("# our users\ncarol:{PLAIN}carol pw\nalice:{SCRAM-SHA-256}4096$")
    assert "bob:{PBKDF2-SHA256}1000$" in text
    assert "new pw" not in text and "bob pw" not in text
    auth = UsersFile(users)
    assert auth.check_password("alice", "new pw")
    assert not auth.check_password("alice", "correct horse")
    assert auth.check_password("bob", "bob pw")
    assert auth.check_password("carol", "carol pw")
    # Never wider than 0600, and no temporary file left behind.
    assert stat.S_IMODE(users.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["users"]


def test_creates_a_private_file_and_prints_without_users(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    users = tmp_path / "new-users"
    assert run(monkeypatch, ["--users", str(users), "alice"], "pw") == 0
    assert stat.S_IMODE(users.stat().st_mode) == 0o600
    assert run(monkeypatch, ["dave"], "dave pw\n") == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("dave:{SCRAM-SHA-256}")
    path = tmp_path / "printed"
    path.write_text(line + "\n")
    assert UsersFile(path).check_password("dave", "dave pw")


@pytest.mark.parametrize(
    ("argv", "stdin", "message"),
    [
        (["a:b"], "pw\n", "must not contain ':'"),
        (["#a"], "pw\n", "nor start with '#'"),
        ([" a"], "pw\n", "start or end with a space"),
        (["a\x1bb"], "pw\n", "control characters"),
        (["alice"], "\n", "must not be empty"),
        (["alice"], "x\u2028root:owned\n", "control characters"),
        (["alice"], "x\x0cy\n", "control characters"),
    ],
)
def test_refuses_what_the_file_could_not_hold(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    stdin: str,
    message: str,
) -> None:
    users = tmp_path / "users"
    assert run(monkeypatch, ["--users", str(users), *argv], stdin) == 2
    err = capsys.readouterr().err
    assert err.startswith("pop3proto passwd: error: ") and message in err
    assert err.count("\n") == 1
    assert not users.exists()


def test_refuses_to_edit_a_broken_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    users = tmp_path / "users"
    users.write_text("alice:pw\nalice:other\n")
    assert run(monkeypatch, ["--users", str(users), "bob"], "pw\n") == 2
    assert "already defined on line 1; not changed" in capsys.readouterr().err
    assert users.read_text() == "alice:pw\nalice:other\n"
    users.write_bytes(b"alice:\xff\n")
    assert run(monkeypatch, ["--users", str(users), "bob"], "pw\n") == 2
    assert "not valid UTF-8" in capsys.readouterr().err


def test_unwritable_directory_is_a_storage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    users = tmp_path / "missing-dir" / "users"
    assert run(monkeypatch, ["--users", str(users), "bob"], "pw\n") == 7
    assert "cannot write beside" in capsys.readouterr().err
    assert run(monkeypatch, ["--users", str(tmp_path), "bob"], "pw\n") == 7


def test_prompt_asks_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = iter(["one", "one", "one", "two"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    assert read_new_password(from_stdin=False, stdin=_Tty()) == "one"
    with pytest.raises(Exception, match="the two passwords differ"):
        read_new_password(from_stdin=False, stdin=_Tty())

    def eof(prompt: str = "") -> str:
        raise EOFError

    monkeypatch.setattr("getpass.getpass", eof)
    with pytest.raises(Exception, match="no password given"):
        read_new_password(from_stdin=False, stdin=_Tty())
    # --stdin reads stdin even from a terminal.
    assert read_new_password(from_stdin=True, stdin=_Tty("piped\n")) == "piped"


def test_the_console_command_from_outside(tmp_path: Path) -> None:
    """As a user runs it: the password on stdin, never on the command line."""
    users = tmp_path / "users"
    done = subprocess.run(
        [sys.executable, "-m", "pop3proto.adapters.cli", "passwd", "--users", str(users), "eve"],
        input="s3cret pw\n",
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert UsersFile(users).check_password("eve", "s3cret pw")


def test_closed_stdin_and_a_file_without_a_final_newline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", None)
    assert main(["passwd", "alice"]) == 2
    assert "stdin is closed" in capsys.readouterr().err
    users = tmp_path / "users"
    users.write_text("carol:pw")  # no newline at the end
    assert run(monkeypatch, ["--users", str(users), "bob"], "bob pw\n") == 0
    assert users.read_text().startswith("carol:pw\nbob:{SCRAM-SHA-256}")


def test_a_failed_rename_leaves_the_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    users = tmp_path / "users"
    users.write_text("carol:pw\n")

    def refuse(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)
    assert run(monkeypatch, ["--users", str(users), "bob"], "bob pw\n") == 7
    assert "No space left on device" in capsys.readouterr().err
    assert users.read_text() == "carol:pw\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["users"]

"""The account URL and the password of ``pop3proto fetch`` (adapters/cli/_account.py)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from pop3proto.adapters.cli import EXIT_USAGE, CLIError, _account
from pop3proto.adapters.cli._account import Account, parse_url, read_password

ACCOUNT = Account("pop3", "alice", "pop.example.org", 110)


class Terminal(io.StringIO):
    """A stdin that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_parse_url_defaults_and_round_trip() -> None:
    """Ports default by scheme, RFC 2384's +APOP means APOP, and str() gives the URL back."""
    account = parse_url("pop3s://bob%40example.org;AUTH=%2BAPOP@[2001:db8::1]")
    assert account == Account("pop3s", "bob@example.org", "2001:db8::1", 995, "APOP")
    assert account.hostport == "[2001:db8::1]:995"
    assert str(account) == "pop3s://bob%40example.org@[2001:db8::1]:995"
    assert parse_url("POP3://bob@Host.Example/").key == "bob@host.example"
    assert parse_url("pop3://bob@host").port == 110


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("pop3://bob@host:99999", "invalid port"),
        ("pop3://bob@host?x=1", "unexpected path or query"),
        ("pop3://bob@:110", "must name the host"),
        ("pop3://bob;X=1@host", "unknown URL parameter ;X=1"),
        ("pop3://bob;AUTH=@host", "unknown URL parameter"),
        ("pop3://;AUTH=PLAIN@host", "user name in the URL is empty"),
        ("pop3://bob;AUTH=GSSAPI@host", "unknown login method 'GSSAPI'"),
    ],
)
def test_parse_url_refuses(url: str, message: str) -> None:
    """Each malformed URL is a usage error that says what is wrong."""
    with pytest.raises(CLIError, match=message) as info:
        parse_url(url)
    assert info.value.code == EXIT_USAGE


def test_password_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """--password-env reads the variable and refuses one unset or empty."""
    monkeypatch.setenv("P3", "s3cret")
    assert read_password(env="P3", file=None, account=ACCOUNT) == "s3cret"
    monkeypatch.setenv("P3", "")
    with pytest.raises(CLIError, match="P3 is empty"):
        read_password(env="P3", file=None, account=ACCOUNT)
    monkeypatch.delenv("P3")
    with pytest.raises(CLIError, match="P3 is not set"):
        read_password(env="P3", file=None, account=ACCOUNT)


def test_password_from_a_file(tmp_path: Path) -> None:
    """--password-file takes the first line and refuses a missing, non-UTF-8 or empty one."""
    good = tmp_path / "good"
    good.write_bytes("s\u00e9cret \r\nsecond line\n".encode())
    assert read_password(env=None, file=str(good), account=ACCOUNT) == "s\u00e9cret "
    latin = tmp_path / "latin"
    latin.write_bytes(b"s\xe9cret\n")
    empty = tmp_path / "empty"
    empty.write_bytes(b"\nsecond\n")
    for path, message in [
        (tmp_path / "missing", "cannot read the password file"),
        (latin, "is not UTF-8"),
        (empty, "starts with an empty line"),
    ]:
        with pytest.raises(CLIError, match=message) as info:
            read_password(env=None, file=str(path), account=ACCOUNT)
        assert info.value.code == EXIT_USAGE
        assert "cret" not in str(info.value)


def test_password_prompt_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without an option the password is asked on a terminal, and refused when empty."""
    with pytest.raises(CLIError, match="no password: use --password-env"):
        read_password(env=None, file=None, account=ACCOUNT, stdin=io.StringIO())
    prompts: list[str] = []

    def answer(prompt: str) -> str:
        prompts.append(prompt)
        return "typed"

    monkeypatch.setattr(_account.getpass, "getpass", answer)
    assert read_password(env=None, file=None, account=ACCOUNT, stdin=Terminal()) == "typed"
    assert prompts == ["Password for alice@pop.example.org: "]

    def end_of_input(prompt: str) -> str:
        raise EOFError

    monkeypatch.setattr(_account.getpass, "getpass", end_of_input)
    with pytest.raises(CLIError, match="no password given"):
        read_password(env=None, file=None, account=ACCOUNT, stdin=Terminal())

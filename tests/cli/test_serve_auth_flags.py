"""``pop3proto serve``'s authentication-failure flags (SECURITY.md
"Authentication failures"): secure defaults, clear errors, and the secret
that keys the SCRAM salts."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import pop3proto
from pop3proto.adapters.cli import _serve, _workers, main
from tests.cli.test_serve_options import serve_error, served_folder


@pytest.fixture(autouse=True)
def _restore_the_pop3proto_logger() -> Iterator[None]:
    logger = logging.getLogger("pop3proto")
    saved = logger.handlers[:], logger.level, logger.propagate
    yield
    logger.handlers[:], logger.level, logger.propagate = saved


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """What ``serve`` would serve, instead of serving it (in this process:
    one worker, whatever the machine's cores)."""
    specs: list[Any] = []
    monkeypatch.setattr(_workers, "usable_cores", lambda: 1)
    monkeypatch.setattr(_serve, "_serve_in", lambda runtime, spec: specs.append(spec))
    return specs


def salt_of(spec: Any, user: str) -> bytes:
    creds: pop3proto.ScramCredentials = spec.authenticator.scram_credentials(user)
    return creds.salt


def test_the_defaults_are_the_secure_ones(tmp_path: Path, started: list[Any]) -> None:
    assert main(["serve", *served_folder(tmp_path)]) == 0
    config = started[0].config
    assert (config.auth_failure_delay, config.auth_penalty_max) == (2.0, 15.0)
    assert config.auth_penalty_reset == 900.0


def test_the_flags_reach_the_config(tmp_path: Path, started: list[Any]) -> None:
    args = ["--auth-failure-delay", "0.5", "--auth-penalty-max", "4", "--auth-penalty-reset", "60"]
    assert main(["serve", *served_folder(tmp_path), *args]) == 0
    config = started[0].config
    assert (config.auth_failure_delay, config.auth_penalty_max) == (0.5, 4.0)
    assert config.auth_penalty_reset == 60.0


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--auth-failure-delay", "20"], "--auth-penalty-max must be between --auth-failure-delay"),
        (["--auth-penalty-max", "7200"], "--auth-penalty-max must be between"),
        (["--auth-failure-delay", "4000", "--auth-penalty-max", "4000"], "--auth-failure-delay"),
    ],
)
def test_inconsistent_values_name_the_flags(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    started: list[Any],
    args: list[str],
    expected: str,
) -> None:
    code, line = serve_error(capsys, *served_folder(tmp_path), *args)
    assert code == 2
    assert expected in line
    assert "auth_" not in line
    assert not started


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--auth-failure-delay", "-1"),
        ("--auth-failure-delay", "nan"),
        ("--auth-penalty-max", "inf"),
        ("--auth-penalty-reset", "0"),
    ],
)
def test_bad_numbers_are_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str
) -> None:
    with pytest.raises(SystemExit) as raised:
        main(["serve", *served_folder(tmp_path), flag, value])
    assert raised.value.code == 2
    assert flag in capsys.readouterr().err


def test_a_secret_file_keys_the_salts(
    tmp_path: Path, started: list[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"0123456789abcdef0123456789abcdef\n")
    secret.chmod(0o600)
    folder = served_folder(tmp_path)
    assert main(["serve", *folder, "--auth-secret-file", str(secret)]) == 0
    # The users file changes; with the secret, the salts do not.
    Path(folder[-1]).write_text(f"alice:{'x' * 12}\nbob:other\n")
    assert main(["serve", *folder, "--auth-secret-file", str(secret)]) == 0
    assert main(["serve", *folder]) == 0
    first, second, without = started
    assert salt_of(first, "ghost") == salt_of(second, "ghost") != salt_of(without, "ghost")
    assert "secret file" not in capsys.readouterr().err
    secret.chmod(0o644)
    assert main(["serve", *folder, "--auth-secret-file", str(secret)]) == 0
    assert "the secret file" in capsys.readouterr().err


def test_a_short_or_missing_secret_file_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], started: list[Any]
) -> None:
    short = tmp_path / "short"
    short.write_bytes(b"tiny\n")
    code, line = serve_error(capsys, *served_folder(tmp_path), "--auth-secret-file", str(short))
    assert code == 2
    assert "holds 4 bytes, at least 16 needed" in line
    missing = tmp_path / "missing"
    code, line = serve_error(capsys, *served_folder(tmp_path), "--auth-secret-file", str(missing))
    assert code == 2
    assert f"--auth-secret-file: cannot read {missing}" in line
    assert not started

"""Bad input on the command line: one clear line and the documented exit
code, never a traceback or a damaged file (issue 14, item 12)."""

from __future__ import annotations

import ssl
import time
from pathlib import Path

import pytest
import trustme

from pop3proto.adapters.cli import main
from pop3proto.adapters.mailstore._memory import MemoryBackend
from tests.cli.test_fetch_limits import lying, small
from tests.helpers import PASSWORD, USER
from tests.helpers.servers import running_server


def one_error_line(capsys: pytest.CaptureFixture[str], command: str) -> str:
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"pop3proto {command}: error: "), err
    return lines[0]


def fetch(*argv: str, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setenv("CLI_ERR_PASSWORD", PASSWORD)
    return main(["fetch", *argv, "--password-env", "CLI_ERR_PASSWORD", "-q"])


def test_an_unclosed_ipv6_bracket_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code = fetch("pop3://alice@[::1", "--to", str(tmp_path / "m"), monkeypatch=monkeypatch)
    assert code == 2
    assert "Invalid IPv6 URL" in one_error_line(capsys, "fetch")


def test_to_an_existing_file_that_is_not_an_mbox_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A mistyped --to naming some other file leaves it untouched."""
    notes = tmp_path / "notes.txt"
    notes.write_bytes(b"my precious notes\n")
    with lying({1: 22}, {1: small}) as server:
        url = f"pop3://alice@127.0.0.1:{server.port}"
        code = fetch(url, "--no-tls", "--to", str(notes), monkeypatch=monkeypatch)
    assert code == 2
    line = one_error_line(capsys, "fetch")
    assert "not an mbox" in line and str(notes) in line
    assert notes.read_bytes() == b"my precious notes\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_to_an_existing_mbox_still_appends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    box = tmp_path / "inbox"  # no .mbox suffix: an existing mbox is recognised
    box.write_bytes(b"From a@b Thu Jan  1 00:00:00 1970\nSubject: old\n\nold\n\n")
    with lying({1: 22}, {1: small}) as server:
        url = f"pop3://alice@127.0.0.1:{server.port}"
        assert fetch(url, "--no-tls", "--to", str(box), monkeypatch=monkeypatch) == 0
    assert box.read_bytes().count(b"\nFrom ") == 1
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    with lying({1: 22}, {1: small}) as server:
        url = f"pop3://alice@127.0.0.1:{server.port}"
        assert fetch(url, "--no-tls", "--to", str(empty), monkeypatch=monkeypatch) == 0
    assert empty.read_bytes().startswith(b"From ")
    assert fetch("pop3://a@h", "--to", "/dev/null", monkeypatch=monkeypatch) == 2
    assert "not a directory, an mbox" in one_error_line(capsys, "fetch")


@pytest.mark.parametrize("method", ["USER", "PLAIN", "LOGIN"])
def test_a_refused_plaintext_login_exits_5(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    method: str,
) -> None:
    """The server's plaintext policy (here: loopback not trusted) is a
    security refusal (exit 5), not a wrong password (exit 3)."""
    backend = MemoryBackend({USER: [b"Subject: x\r\n\r\nx\r\n"]})
    with running_server("sync", backend, trust_loopback=False) as srv:
        url = f"pop3://{USER}@127.0.0.1:{srv.address[1]}"
        code = fetch(url, "--no-tls", "--auth", method, "--to", str(tmp_path / "m"),
                     monkeypatch=monkeypatch)  # fmt: skip
    assert code == 5
    line = one_error_line(capsys, "fetch")
    assert "refuses plaintext logins without TLS" in line and "drop --no-tls" in line


def test_a_wrong_password_still_exits_3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    backend = MemoryBackend({USER: []})
    with running_server("sync", backend) as srv:
        url = f"pop3://{USER}@127.0.0.1:{srv.address[1]}"
        monkeypatch.setenv("WRONG", "not the password")
        code = main(["fetch", url, "--no-tls", "--auth", "USER", "--to", str(tmp_path / "m"),
                     "--password-env", "WRONG", "-q"])  # fmt: skip
    assert code == 3
    assert "authentication failed" in one_error_line(capsys, "fetch")


def test_pop3_to_an_implicit_tls_port_fails_fast_with_a_hint(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    server_context: ssl.SSLContext,
) -> None:
    """The TLS port waits for a ClientHello, the client for a greeting: the
    greeting wait is short, and the error says what to do."""
    # The default greeting wait is 10 s; 2 s keeps the test short.
    monkeypatch.setattr("pop3proto.adapters.cli._fetch.GREETING_TIMEOUT", 2.0, raising=False)
    backend = MemoryBackend({USER: []})
    with running_server("sync", backend, ssl_context=server_context, implicit_tls=True) as srv:
        port = srv.address[1]
        started = time.monotonic()
        code = fetch(f"pop3://{USER}@127.0.0.1:{port}", "--to", str(tmp_path / "m"),
                     "--timeout", "45", monkeypatch=monkeypatch)  # fmt: skip
        elapsed = time.monotonic() - started
    assert code == 4
    assert f"use pop3s://127.0.0.1:{port}" in one_error_line(capsys, "fetch")
    assert elapsed < 30  # not --timeout's 45 s


def test_pop3s_to_a_plain_port_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with lying({1: 22}, {1: small}) as server:
        code = fetch(f"pop3s://alice@127.0.0.1:{server.port}", "--to", str(tmp_path / "m"),
                     monkeypatch=monkeypatch)  # fmt: skip
    assert code == 5
    assert f"use pop3://127.0.0.1:{server.port}" in one_error_line(capsys, "fetch")


def _serve(tmp_path: Path, capsys: pytest.CaptureFixture[str], *tls: str) -> str:
    (tmp_path / "Maildir").mkdir(exist_ok=True)
    users = tmp_path / "users"
    users.write_text(f"{USER}:{PASSWORD}\n")
    code = main(["serve", "--maildir", str(tmp_path / "Maildir"), "--users", str(users), *tls])
    assert code == 2
    return one_error_line(capsys, "serve")


def test_serve_certificate_errors_say_which_file_and_what(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], ca: trustme.CA
) -> None:
    issued = ca.issue_cert("localhost")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    other_key = tmp_path / "other.pem"
    ca.issue_cert("elsewhere").private_key_pem.write_to_path(str(other_key))
    missing = tmp_path / "missing.pem"

    line = _serve(tmp_path, capsys, "--tls-cert", str(missing))
    assert line.endswith(f"--tls-cert: cannot read {missing}: No such file or directory")
    line = _serve(tmp_path, capsys, "--tls-cert", str(cert))
    assert f"--tls-cert {cert} holds no private key; give the key with --tls-key" in line
    assert "PEM lib" not in line
    line = _serve(tmp_path, capsys, "--tls-cert", str(cert), "--tls-key", str(other_key))
    assert "the private key does not belong to the certificate" in line
    line = _serve(tmp_path, capsys, "--tls-cert", str(cert), "--tls-key", str(cert))
    assert f"no PEM private key in {cert}" in line
    line = _serve(tmp_path, capsys, "--tls-cert", str(tmp_path))
    assert "Is a directory" in line
    (tmp_path / "bad-key.pem").write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n")
    line = _serve(tmp_path, capsys, "--tls-cert", str(cert), "--tls-key",
                  str(tmp_path / "bad-key.pem"))  # fmt: skip
    assert "not a usable PEM certificate and private key" in line

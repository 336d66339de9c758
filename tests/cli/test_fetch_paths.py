"""``pop3proto fetch``: option errors, and servers that lack UIDL, refuse a
message or die half-way.

Option errors go through :func:`main` in-process; the rest calls
:func:`fetch` against the fake server of ``tests/helpers``, taught here
to misbehave, on 127.0.0.1 (where the password may go without TLS).
"""

from __future__ import annotations

import hashlib
import io
import json
import socket
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import pop3proto
from pop3proto.adapters.cli import main
from pop3proto.adapters.cli._account import parse_url
from pop3proto.adapters.cli._common import CLIError
from pop3proto.adapters.cli._fetch import FetchOptions, fetch, summary_line
from pop3proto.adapters.client._errors import ConnectionLost
from pop3proto.adapters.mailstore._destinations import StorageError, read_mboxrd
from tests.helpers import FAKE_MESSAGES, PASSWORD, FakeConfig, FakeSession, ThreadedServer

HOST = "127.0.0.1"
ENV = "TEST_FETCH_PASSWORD"


class OddSession(FakeSession):
    """The fake server, with UIDL refused, some RETRs refused, or one cut short."""

    no_uidl = False
    refused: frozenset[int] = frozenset()
    cut: int | None = None

    def handle(self, event: pop3proto.Event) -> Iterable[Any]:
        if isinstance(event, pop3proto.Uidl) and self.no_uidl:
            return [pop3proto.Err("UIDL not supported")]
        if isinstance(event, pop3proto.Retr) and event.number in self.refused:
            return [pop3proto.Err("message locked by another session")]
        if isinstance(event, pop3proto.Retr) and event.number == self.cut:
            # Half a body, then the connection goes away.
            self.closing = True
            return [b"+OK 1000 octets\r\nSubject: half\r\n\r\nthe first ha"]
        return super().handle(event)


@contextmanager
def odd_server(config: FakeConfig | None = None, **switches: Any) -> Iterator[int]:
    """A :class:`ThreadedServer` of :class:`OddSession` s; yields its port."""

    def handler(sock: socket.socket, server: ThreadedServer) -> None:
        session = OddSession(config or FakeConfig())
        for name, value in switches.items():
            setattr(session, name, value)
        server.sessions.append(session)
        sock.sendall(session.greeting())
        while not session.closing:
            data = sock.recv(65536)
            for chunk in session.receive(data):
                sock.sendall(chunk)
            if not data:
                break

    with ThreadedServer(handler=handler) as server:
        yield server.port


def options(port: int, dest: Path, user: str = "alice", **kwargs: Any) -> FetchOptions:
    return FetchOptions(
        account=parse_url(f"pop3://{user}@{HOST}:{port}"),
        password=PASSWORD,
        destination=str(dest),
        tls="none",
        durable=False,
        progress=False,
        timeout=10,
        **kwargs,
    )


def stored(maildir: Path) -> list[bytes]:
    return sorted(p.read_bytes() for sub in ("new", "cur") for p in (maildir / sub).iterdir())


def lf(message: bytes) -> bytes:
    """A fake-server message as fetch stores it: CRLF -> LF, ending with a line end."""
    data = message if message.endswith(b"\r\n") or not message else message + b"\r\n"
    return data.replace(b"\r\n", b"\n")


# ---------------------------------------------------------------------------
# Options refused before connecting
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--insecure-auth"], "--insecure-auth only makes sense with --no-tls"),
        (["--cafile", "/nonexistent/ca.pem"], "--cafile /nonexistent/ca.pem: no such file"),
    ],
)
def test_option_errors(
    extra: list[str],
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Contradictory or impossible options are usage errors (exit 2), before any connection."""
    monkeypatch.setenv(ENV, PASSWORD)
    url = "pop3://alice@192.0.2.1:1"  # TEST-NET: never reached
    code = main(["fetch", url, "--to", str(tmp_path / "md"), "--password-env", ENV, *extra])
    assert code == 2
    assert capsys.readouterr().err.strip() == f"pop3proto fetch: error: {message}"
    assert not (tmp_path / "md").exists()


def test_cafile_that_holds_no_certificate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A --cafile that is not PEM is a usage error (exit 2), before any connection."""
    bogus = tmp_path / "ca.pem"
    bogus.write_text("not a certificate\n")
    monkeypatch.setenv(ENV, PASSWORD)
    url = "pop3s://alice@192.0.2.1:1"
    code = main(["fetch", url, "--to", str(tmp_path / "md"), "--password-env", ENV,
                 "--cafile", str(bogus)])  # fmt: skip
    assert code == 2
    assert f"cannot load --cafile {bogus}" in capsys.readouterr().err


def test_state_file_in_a_directory_that_cannot_exist(tmp_path: Path) -> None:
    """A --state below a plain file is a StorageError before anything is fetched."""
    (tmp_path / "file").write_bytes(b"")
    opts = options(1, tmp_path / "md", state_path=str(tmp_path / "file" / "state.uidl"))
    with pytest.raises(StorageError, match="cannot create the directory of the state file"):
        fetch(opts)


def test_non_ascii_user_to_a_server_without_utf8(tmp_path: Path) -> None:
    """RFC 6856 §2.2: a user name the server cannot take is a usage error naming the account."""
    with (
        odd_server(FakeConfig(utf8=False)) as port,
        pytest.raises(CLIError, match="cannot log in as j\u00f6rg@127\\.0\\.0\\.1") as info,
    ):
        fetch(options(port, tmp_path / "md", user="j%C3%B6rg", mechanism="USER"))
    assert info.value.code == 2
    assert PASSWORD not in str(info.value)


# ---------------------------------------------------------------------------
# Odd servers
# ---------------------------------------------------------------------------


def test_server_without_uidl_is_fetched_whole_every_time(tmp_path: Path) -> None:
    """Without UIDL (RFC 1939 §7 makes it optional) every run fetches everything, and says so."""
    maildir = tmp_path / "md"
    with odd_server(no_uidl=True) as port:
        opts = options(port, maildir)
        first = fetch(opts)
        second = fetch(opts)
    assert first.uidl is False and second.uidl is False
    assert first.stored == second.stored == list(range(1, len(FAKE_MESSAGES) + 1))
    assert stored(maildir) == sorted(2 * [lf(m) for m in FAKE_MESSAGES])
    assert all(",P3=" not in p.name for p in (maildir / "new").iterdir())
    assert "no UIDL: fetched without memory" in summary_line(second, opts)


def test_a_refused_message_is_reported_and_the_rest_stored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A -ERR to one RETR skips that message with a warning; the run goes on and exits 1."""
    maildir = tmp_path / "md"
    monkeypatch.setenv(ENV, PASSWORD)
    with odd_server(refused=frozenset({2})) as port:
        code = main(["fetch", f"pop3://alice@{HOST}:{port}", "--to", str(maildir),
                     "--password-env", ENV, "--no-tls", "--no-fsync"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1
    assert "warning: RETR 2 failed: -ERR message locked by another session" in err
    assert "1 failed" in err
    want = [lf(m) for n, m in enumerate(FAKE_MESSAGES, 1) if n != 2]
    assert stored(maildir) == sorted(want)
    state = json.loads((tmp_path / "md.uidl").read_text())
    assert sorted(state["accounts"][f"alice@{HOST}"]) == [
        f"uid-{n:04d}" for n in range(1, len(FAKE_MESSAGES) + 1) if n != 2
    ]


def test_connection_lost_half_way_through_a_message(tmp_path: Path) -> None:
    """A body cut by the server is not stored (no temporary left); the ones before it are."""
    maildir = tmp_path / "md"
    with odd_server(cut=2) as port, pytest.raises(ConnectionLost):
        fetch(options(port, maildir, window=1))
    assert stored(maildir) == [lf(FAKE_MESSAGES[0])]
    assert list((maildir / "tmp").iterdir()) == []


def test_interrupted_append_of_another_account_is_recorded_for_it(tmp_path: Path) -> None:
    """An mbox append an interrupted run left for another account is recorded under that account."""
    mbox = tmp_path / "inbox.mbox"
    appended = b"From MAILER-DAEMON Mon Jan  1 00:00:00 2024\nSubject: old\n\nold mail\n\n"
    mbox.write_bytes(appended)
    intent = {
        "account": "bob@elsewhere.example", "uid": "bob-1", "offset": 0,
        "length": len(appended), "sha256": hashlib.sha256(appended).hexdigest(),
        "head": appended[: appended.index(b"\n") + 1].decode("latin-1"),
    }  # fmt: skip
    Path(f"{mbox}.uidl.intent").write_text(json.dumps(intent))
    out = io.StringIO()
    with odd_server() as port:
        result = fetch(options(port, mbox), out=out)
    state = json.loads(Path(f"{mbox}.uidl").read_text())["accounts"]
    assert state["bob@elsewhere.example"] == ["bob-1"]
    assert result.recovered == []  # nothing of alice's
    assert len(read_mboxrd(mbox.read_bytes())) == 1 + len(FAKE_MESSAGES)

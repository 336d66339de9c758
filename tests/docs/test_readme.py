"""The README's promises: its code runs, and its state diagram is current."""

from __future__ import annotations

import poplib
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pop3proto._diagram import mermaid
from pop3proto.adapters.server import Authenticator, MaildropBackend
from pop3proto.adapters.sync import DictAuthenticator, MemoryBackend, Server
from tests.helpers import RUNTIMES, running_server

README = Path(__file__).resolve().parents[2] / "README.md"


def _blocks(kind: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def _block_with(text: str) -> str:
    [block] = [b for b in _blocks("python") if text in b]
    return block


def test_every_python_block_compiles() -> None:
    for block in _blocks("python"):
        compile(block, str(README), "exec")


def test_python_blocks_pass_mypy_strict(tmp_path: Path) -> None:
    """Every Python block type-checks under ``mypy --strict``, as a user's
    own file would: the sentinels narrow, events need no casts."""
    blocks = _blocks("python")
    files = []
    for i, block in enumerate(blocks):
        path = tmp_path / f"readme_block_{i}.py"
        path.write_text(block, encoding="utf-8")
        files.append(str(path))
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", *files],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{len(blocks)} source files" in proc.stdout


def test_tour_runs() -> None:
    """Every assert in the README's tour holds (the tour is executed)."""
    exec(compile(_block_with("client = p.Connection(p.CLIENT)"), str(README), "exec"), {})


def test_testing_guide_runs() -> None:
    """The downstream test in the testing guide is short and passes."""
    block = _block_with("check_server(session_factory(my_backend)")
    assert len([line for line in block.splitlines() if line.strip()]) < 20
    exec(compile(block, str(README), "exec"), {})


def test_poplib_migration_line_imports() -> None:
    namespace: dict[str, Any] = {}
    exec(_block_with("as poplib"), namespace)
    assert namespace["poplib"].POP3 is not None


def test_selectors_adapter_downloads_every_message() -> None:
    """The 'wrapping the engine' example is a working adapter: run it against
    the project's server, with and without PIPELINING-sized mailboxes."""
    namespace: dict[str, Any] = {}
    exec(compile(_block_with("def fetch_all("), str(README), "exec"), namespace)
    messages = [
        b"Subject: one\r\n\r\n.a line starting with a dot\r\n",
        b"Subject: two\r\n\r\n" + b"x" * 70 + b"\r\n" * 5000,
        b"Subject: three\r\n\r\n..\r\n.\r\n",
    ]
    backend = MemoryBackend({"alice": list(messages)})
    with Server(backend, DictAuthenticator({"alice": "pw"}), port=0) as server:
        server.start()
        host, port = server.server_address
        got = namespace["fetch_all"](host, port, "alice", "pw")
    assert got == dict(enumerate(messages, start=1))


def test_state_diagram_is_generated_from_the_table() -> None:
    """The README's diagram equals `python -m pop3proto._diagram` output."""
    [diagram] = _blocks("mermaid")
    assert diagram == mermaid()


def test_quickstart_has_exactly_two_commands() -> None:
    [quickstart] = _blocks("sh")
    commands = [line for line in quickstart.splitlines() if line.strip()]
    assert len(commands) == 2
    assert "pytest" in commands[1]


# ---------------------------------------------------------------------------
# The "writing a backend" guide: the SQLite example, against poplib
# ---------------------------------------------------------------------------


def _sqlite_example() -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "readme_sqlite"}
    exec(compile(_block_with("class SQLiteBackend"), str(README), "exec"), namespace)
    return namespace


@pytest.mark.parametrize("kind", RUNTIMES)
def test_sqlite_example_serves_poplib(kind: str, tmp_path: Path) -> None:
    example = _sqlite_example()
    path = str(tmp_path / "mail.db")
    backend, users = example["SQLiteBackend"](path), example["SQLiteUsers"](path)
    # They satisfy the public protocols (checked without narrowing the types).
    assert all(isinstance(o, p) for o, p in ((backend, MaildropBackend), (users, Authenticator)))
    users.add("alice@example.org", "alice", "s3cret", iterations=1000)
    messages = [b"Subject: one\n\nfirst\n.dot\n", b"Subject: two\r\n\r\nsecond\r\n"]
    for message in messages:
        backend.deliver("alice", message)
    with running_server(kind, backend, users) as running:
        host, port = running.address

        def login() -> poplib.POP3:
            pop = poplib.POP3(host, port, timeout=10)
            pop.user("alice@example.org")
            pop.pass_("s3cret")
            return pop

        # CAPA offers what a store of hashes can verify: no SCRAM, no APOP.
        pop = poplib.POP3(host, port, timeout=10)
        assert "SASL" in pop.capa() and pop.capa()["SASL"] == ["PLAIN", "LOGIN"]
        assert b"<" not in pop.getwelcome()  # no APOP timestamp
        pop.quit()

        pop = login()
        served = [b"Subject: one\r\n\r\nfirst\r\n.dot\r\n", messages[1]]  # CRLF line ends
        assert pop.stat() == (2, sum(len(m) for m in served))
        assert pop.list()[1] == [b"1 %d" % len(served[0]), b"2 %d" % len(served[1])]
        assert pop.retr(1)[1] == [b"Subject: one", b"", b"first", b".dot"]
        assert pop.top(2, 0)[1] == [b"Subject: two", b""]
        # A second session on the same mailbox: the credentials are fine,
        # the maildrop is locked.
        second = poplib.POP3(host, port, timeout=10)
        second.user("alice@example.org")
        with pytest.raises(poplib.error_proto, match=r"\[IN-USE\]"):
            second.pass_("s3cret")
        second.close()
        # Deleted, then the connection dropped without QUIT: nothing removed.
        pop.dele(1)
        pop.close()
        running.wait_idle()

        pop = login()
        assert pop.stat()[0] == 2
        pop.dele(1)
        assert pop.quit().startswith(b"+OK")
        running.wait_idle()

        pop = login()
        assert pop.stat()[0] == 1
        assert pop.retr(1)[1] == [b"Subject: two", b"", b"second"]
        pop.quit()
        # Wrong password and unknown users: -ERR [AUTH].
        pop = poplib.POP3(host, port, timeout=10)
        pop.user("alice@example.org")
        with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
            pop.pass_("wrong")
        pop.close()

"""The README's promises: its code runs, and its state diagram is current."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from pop3proto._diagram import mermaid
from pop3proto.adapters.sync import DictAuthenticator, MemoryBackend, Server

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

"""The package as a user meets it after the README's install, from outside the repository."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

USER_CODE = """\
import asyncio

import pop3proto
from pop3proto.adapters import asyncio as pop3_asyncio
from pop3proto.adapters.sync import POP3, Client, DictAuthenticator, MemoryBackend, Server


def count(host: str) -> int:
    with Client(host, 110) as client:
        client.login("alice", "secret")
        return len(client.list())


def legacy(host: str) -> bytes:
    pop = POP3(host)
    return pop.user("alice")


async def main(host: str) -> int:
    async with pop3_asyncio.Client(host) as client:
        await client.login("alice", "secret")
        return len(await client.list())


def engine() -> bytes:
    conn = pop3proto.Connection(pop3proto.CLIENT)
    return conn.send(pop3proto.Retr(1))


server = Server(MemoryBackend({"alice": [b"hi\\n"]}), DictAuthenticator({"alice": "s"}), port=0)
server.server_close()
print(asyncio, engine)
"""


def mypy_strict(tmp_path: Path, code: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "user.py").write_text(code, encoding="utf-8")
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "user.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_user_code_type_checks_under_mypy_strict(tmp_path: Path) -> None:
    """A user's file that imports the engine and the adapters passes mypy --strict."""
    result = mypy_strict(tmp_path, USER_CODE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success" in result.stdout


def test_mypy_sees_the_adapters_types(tmp_path: Path) -> None:
    """mypy finds the adapters' real signatures, so a wrong call is an error."""
    result = mypy_strict(tmp_path, USER_CODE + 'Client(110, "alice")\n')
    assert result.returncode == 1
    assert 'Argument 1 to "Client" has incompatible type "int"' in result.stdout


def test_adapters_import_from_the_repository_root() -> None:
    """From the repository root, the local pop3proto/ has the adapters too."""
    result = subprocess.run(
        [sys.executable, "-c", "import pop3proto.adapters.sync, pop3proto.adapters.cli"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr

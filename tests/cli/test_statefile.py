"""The fetch state file: unique-ids per account, a lock, atomic rewrites (cli/_statefile.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pop3proto.adapters.cli import EXIT_FAILURE, EXIT_USAGE, CLIError
from pop3proto.adapters.cli._statefile import StateFile, default_state_path
from pop3proto.adapters.mailstore._destinations import StorageError


def test_default_state_path() -> None:
    """The state file sits beside the destination as DEST.uidl; the root is refused."""
    assert default_state_path("/srv/mail/inbox/") == "/srv/mail/inbox.uidl"
    with pytest.raises(CLIError) as info:
        default_state_path("/")
    assert info.value.code == EXIT_USAGE


def test_round_trip(tmp_path: Path) -> None:
    """What one run records, the next run loads, per account and in order."""
    path = tmp_path / "inbox.uidl"
    state = StateFile(str(path), durable=True)
    state.load()  # no file yet: empty
    assert state.uids("a@h") == set()
    state.add("a@h", "u1")
    state.replace("b@h", ["x", "y"])
    state.save()
    assert json.loads(path.read_text()) == {
        "version": 1,
        "accounts": {"a@h": ["u1"], "b@h": ["x", "y"]},
    }
    again = StateFile(str(path), durable=False)
    again.load()
    assert again.has("a@h", "u1") and not again.has("a@h", "x")
    assert again.uids("b@h") == {"x", "y"}


def test_one_fetch_at_a_time(tmp_path: Path) -> None:
    """A second lock on the same state file fails until the first is released."""
    first = StateFile(str(tmp_path / "s.uidl"), durable=False)
    second = StateFile(str(tmp_path / "s.uidl"), durable=False)
    first.lock()
    try:
        with pytest.raises(CLIError, match="another pop3proto fetch") as info:
            second.lock()
        assert info.value.code == EXIT_FAILURE
    finally:
        first.unlock()
        first.unlock()  # idempotent
    second.lock()
    second.unlock()


def test_storage_errors(tmp_path: Path) -> None:
    """A state file that cannot be locked, read, parsed or written is a StorageError."""
    nowhere = StateFile(str(tmp_path / "missing" / "s.uidl"), durable=False)
    with pytest.raises(StorageError, match="cannot create the lock file"):
        nowhere.lock()
    with pytest.raises(StorageError, match="cannot write the state file"):
        nowhere.save()
    with pytest.raises(StorageError, match="cannot read the state file"):
        StateFile(str(tmp_path), durable=False).load()  # a directory
    stale = tmp_path / "old.uidl"
    stale.write_text('{"version": 0, "accounts": {}}')
    with pytest.raises(StorageError, match="is not a pop3proto state file"):
        StateFile(str(stale), durable=False).load()

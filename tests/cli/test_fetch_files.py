"""``fetch`` writes its state, intent and lock files without following a
planted link (issue 14, item 7)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pop3proto.adapters.cli._statefile import StateFile
from pop3proto.adapters.mailstore._destinations import MboxDestination, StorageError, write_atomic

VICTIM = b"precious data that must not be overwritten\n"


def victim(tmp_path: Path) -> Path:
    path = tmp_path / "victim"
    path.write_bytes(VICTIM)
    return path


def test_state_save_does_not_write_through_a_planted_temp_link(tmp_path: Path) -> None:
    """The old fixed name DEST.uidl.tmp, planted as a link, is left alone."""
    target = victim(tmp_path)
    state_path = tmp_path / "inbox.uidl"
    (tmp_path / "inbox.uidl.tmp").symlink_to(target)
    state = StateFile(str(state_path), durable=False)
    state.lock()
    try:
        state.add("a@h", "u1")
    finally:
        state.unlock()
    assert target.read_bytes() == VICTIM
    assert '"u1"' in state_path.read_text()
    assert not state_path.is_symlink()


def test_two_atomic_writes_never_share_a_temporary_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each write creates its own file (O_EXCL), never an existing one."""
    seen: list[tuple[str, int]] = []
    real_open = os.open

    def spy(path: str, flags: int, mode: int = 0o777, **kw: object) -> int:
        seen.append((os.fspath(path), flags))
        return real_open(path, flags, mode, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", spy)
    write_atomic(str(tmp_path / "f"), b"one", durable=False)
    write_atomic(str(tmp_path / "f"), b"two", durable=False)
    temps = [(p, f) for p, f in seen if p.endswith(".tmp")]
    assert len(temps) == 2 and temps[0][0] != temps[1][0]
    for _, flags in temps:
        assert flags & os.O_EXCL and flags & os.O_NOFOLLOW and flags & os.O_CREAT
    assert (tmp_path / "f").read_bytes() == b"two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_mbox_intent_does_not_write_through_a_planted_temp_link(tmp_path: Path) -> None:
    target = victim(tmp_path)
    intent = tmp_path / "inbox.mbox.uidl.intent"
    Path(f"{intent}.tmp").symlink_to(target)
    dest = MboxDestination(str(tmp_path / "inbox.mbox"), durable=False, intent_path=str(intent))
    try:
        writer = dest.begin("a@h", "u1")
        writer.write(b"Subject: x\r\n\r\nbody\r\n")
        dest.store(writer)
    finally:
        dest.close()
    assert target.read_bytes() == VICTIM
    assert b"body" in (tmp_path / "inbox.mbox").read_bytes()


def test_a_planted_lock_link_is_refused(tmp_path: Path) -> None:
    """DEST.uidl.lock as a link to a file elsewhere: not created, not opened."""
    elsewhere = tmp_path / "not-to-be-created"
    (tmp_path / "inbox.uidl.lock").symlink_to(elsewhere)
    state = StateFile(str(tmp_path / "inbox.uidl"), durable=False)
    with pytest.raises(StorageError, match="cannot create the lock file"):
        state.lock()
    assert not elsewhere.exists()


def test_stale_temporary_files_are_swept_under_the_lock(tmp_path: Path) -> None:
    """A run killed between create and rename leaves a temp file; the next
    run removes it (and nothing else)."""
    stale = tmp_path / "inbox.uidl.0123456789abcdef.tmp"
    stale.write_bytes(b"{}")
    stale_intent = tmp_path / "inbox.uidl.intent.fedcba9876543210.tmp"
    stale_intent.write_bytes(b"{}")
    other = tmp_path / "inbox.uidl.notours.tmp"
    other.write_bytes(b"keep")
    state = StateFile(str(tmp_path / "inbox.uidl"), durable=False)
    state.lock()
    state.unlock()
    assert not stale.exists() and not stale_intent.exists()
    assert other.read_bytes() == b"keep"

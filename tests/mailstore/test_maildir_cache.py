"""The Maildir size/UID cache is bounded (issue 14, item 10): it holds the
messages that are there, and at most ``cache_size`` entries in all, the
Maildirs opened least recently dropped first."""

from __future__ import annotations

import mailbox
from collections.abc import Iterator
from pathlib import Path

import pytest

from pop3proto.adapters.mailstore._maildir import MaildirBackend


def entries(backend: MaildirBackend) -> int:
    return sum(len(v) for v in backend._infos.values())  # type: ignore[attr-defined]


def test_messages_delivered_and_deleted_leave_the_cache(tmp_path: Path) -> None:
    """600 messages delivered and deleted, 100 at a time, as a POP3
    client with --delete does: the cache holds what is there, no more."""
    md = mailbox.Maildir(str(tmp_path / "box"), create=True)
    backend = MaildirBackend(tmp_path / "box")
    for _ in range(6):
        for n in range(100):
            md.add(b"Subject: %d\n\nbody\n" % n)
        drop = backend.open("u")
        try:
            assert len(drop.messages()) == 100
            assert drop.commit(set(range(100)))
        finally:
            drop.close()
        assert entries(backend) <= 100
    drop = backend.open("u")
    drop.close()
    assert entries(backend) == 0


def test_the_cache_is_capped_least_recently_used_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = MaildirBackend(tmp_path, per_user=True, cache_size=25)
    for user in ("ann", "bob", "cat"):
        md = mailbox.Maildir(str(tmp_path / user), create=True)
        for n in range(10):
            md.add(b"Subject: %d\n\n%s\n" % (n, user.encode()))
    for user in ("ann", "bob", "cat", "ann"):
        backend.open(user).close()
        assert entries(backend) <= 25
    # ann (just now) and cat stay; bob, the least recently used, went.
    assert sorted(backend._infos) == [str(tmp_path / "ann"), str(tmp_path / "cat")]  # type: ignore[attr-defined]
    # A cached Maildir counts no size again.
    import pop3proto.adapters.mailstore._maildir as module

    counted: list[int] = []
    real = module.normalized_size

    def counting(chunks: Iterator[bytes]) -> int:
        counted.append(1)
        return real(chunks)

    monkeypatch.setattr(module, "normalized_size", counting)
    backend.open("ann").close()
    assert counted == []
    backend.open("bob").close()
    assert len(counted) == 10


def test_one_maildir_larger_than_the_cap_is_cached_in_part(tmp_path: Path) -> None:
    md = mailbox.Maildir(str(tmp_path / "box"), create=True)
    for n in range(30):
        md.add(b"Subject: %d\n\nx\n" % n)
    backend = MaildirBackend(tmp_path / "box", cache_size=10)
    drop = backend.open("u")
    try:
        assert len(drop.messages()) == 30
    finally:
        drop.close()
    assert entries(backend) == 10
    with pytest.raises(ValueError, match="cache_size"):
        MaildirBackend(tmp_path, cache_size=-1)

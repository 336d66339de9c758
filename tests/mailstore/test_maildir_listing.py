"""A Maildir whose ``new/`` and ``cur/`` have not changed since its last
listing is not listed again (one ``lstat`` per message saved per login),
and every change a mail agent can make is seen at the next login."""

from __future__ import annotations

import mailbox
import os
import time
from pathlib import Path

import pytest

import pop3proto.adapters.mailstore._maildir as module
from pop3proto.adapters.mailstore._maildir import MaildirBackend


class Listings:
    """Counts the full listings the backend makes."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        real = MaildirBackend._list

        def counting(backend: MaildirBackend, path: str) -> list[object]:
            self.count += 1
            return real(backend, path)  # type: ignore[return-value]

        monkeypatch.setattr(MaildirBackend, "_list", counting)


@pytest.fixture
def listings(monkeypatch: pytest.MonkeyPatch) -> Listings:
    return Listings(monkeypatch)


@pytest.fixture
def later(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if each login came a minute after the latest change (which a
    test cannot wait for): the directories count as settled."""
    monkeypatch.setattr(module, "SETTLED_NS", -60_000_000_000)


def deliver(root: Path, count: int) -> mailbox.Maildir:
    md = mailbox.Maildir(str(root), create=True)  # root must not exist yet
    for n in range(count):
        md.add(b"Subject: %d\n\nbody %d\n" % (n, n))
    return md


def uids(backend: MaildirBackend) -> list[str]:
    drop = backend.open("u")
    try:
        return [info.uid for info in drop.messages()]
    finally:
        drop.close()


def tick() -> None:
    """Let the file system's clock move on: a change made within the
    granularity of its timestamps (a few ms on Linux) could keep the
    directory's mtime, which is what SETTLED_NS guards against outside
    tests."""
    time.sleep(0.05)


def test_an_unchanged_maildir_is_not_listed_again(
    tmp_path: Path, listings: Listings, later: None
) -> None:
    deliver(tmp_path / "box", 5)
    backend = MaildirBackend(tmp_path / "box")
    first = uids(backend)
    assert len(first) == 5 and listings.count == 1
    assert uids(backend) == first
    assert uids(backend) == first
    assert listings.count == 1


def test_every_change_is_seen_at_the_next_login(
    tmp_path: Path, listings: Listings, later: None
) -> None:
    md = deliver(tmp_path / "box", 3)
    backend = MaildirBackend(tmp_path / "box")
    assert len(uids(backend)) == 3
    tick()
    md.add(b"Subject: new\n\nnew\n")  # a delivery to new/
    assert len(uids(backend)) == 4
    tick()
    key = next(iter(md.keys()))
    message = md[key]
    message.set_subdir("cur")
    message.add_flag("S")
    md[key] = message  # moved to cur/ and renamed, as a mail reader does
    after_move = uids(backend)
    assert len(after_move) == 4
    tick()
    drop = backend.open("u")
    try:
        assert drop.commit({0})  # a deletion through POP3
    finally:
        drop.close()
    assert len(uids(backend)) == 3
    tick()
    md.remove(next(iter(md.keys())))  # a deletion by another agent
    assert len(uids(backend)) == 2
    # Listed after each change; the login that committed came after none.
    assert listings.count == 5


def test_a_maildir_changed_just_before_its_listing_is_listed_again(
    tmp_path: Path, listings: Listings
) -> None:
    """Without the minute's wait, the directories changed within
    SETTLED_NS of the listing: it is not trusted for the next login."""
    deliver(tmp_path / "box", 2)
    backend = MaildirBackend(tmp_path / "box")
    uids(backend)
    uids(backend)
    assert listings.count == 2


def test_a_directory_whose_times_were_set_back_is_listed_again(
    tmp_path: Path, listings: Listings
) -> None:
    """A copy that restores old mtimes (rsync -t) still changes the
    directories' ctime, which the kernel alone sets: not trusted."""
    deliver(tmp_path / "box", 2)
    old = time.time() - 3600
    for sub in ("new", "cur"):
        os.utime(tmp_path / "box" / sub, (old, old))
    backend = MaildirBackend(tmp_path / "box")
    uids(backend)
    uids(backend)
    assert listings.count == 2


@pytest.mark.parametrize("cache_size", [0, 3])
def test_no_listing_is_kept_beyond_the_cache(
    tmp_path: Path, listings: Listings, later: None, cache_size: int
) -> None:
    """cache_size 0 turns the reuse off; a Maildir with more messages than
    the cache holds keeps no listing either (its memory stays bounded)."""
    deliver(tmp_path / "box", 5)
    backend = MaildirBackend(tmp_path / "box", cache_size=cache_size)
    assert len(uids(backend)) == 5
    assert len(uids(backend)) == 5
    assert listings.count == 2
    assert backend._listings == {}  # type: ignore[attr-defined]


def test_a_listing_leaves_with_its_maildir_from_the_cache(
    tmp_path: Path, listings: Listings, later: None
) -> None:
    for user in ("ann", "bob"):
        deliver(tmp_path / user, 3)
    backend = MaildirBackend(tmp_path, per_user=True, cache_size=4)
    for user in ("ann", "bob"):
        backend.open(user).close()
    # bob's scan pushed ann out of the cache: her listing went too.
    assert sorted(backend._listings) == [str(tmp_path / "bob")]  # type: ignore[attr-defined]
    backend.open("ann").close()
    assert listings.count == 3

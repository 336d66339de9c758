"""Maildrops for the server tests: real Maildirs in a temporary directory,
inspected afterwards, and a maildrop that fails on purpose.

* :func:`make_maildir` fills a Maildir the way a delivery agent would;
  :func:`message_file` finds a message's file, :func:`maildir_state` reads
  them all back (and checks that ``tmp/`` is empty), :func:`lock_is_free`
  says whether a session still holds the Maildir's lock.
* :class:`FlakyBackend` hands out a :class:`FlakyMaildrop`, whose commit
  and reads fail as a test asks.
* :class:`EveryMethodAuthenticator`: a mixed user store offering every
  login method, to test each path against each storage form.
* :func:`count_key_derivations`: records the iterations of every PBKDF2
  call, to show that unknown users cost what known ones do.
"""

from __future__ import annotations

import fcntl
import hashlib
import mailbox
import os
from collections.abc import Iterator, Sequence
from collections.abc import Set as AbstractSet
from pathlib import Path

import pytest

from pop3proto.adapters.mailstore._base import MaildropError, MessageInfo
from pop3proto.adapters.mailstore._maildir import LOCK_FILE_NAME
from pop3proto.adapters.mailstore._users import DictAuthenticator

# ---------------------------------------------------------------------------
# Real Maildirs
# ---------------------------------------------------------------------------


def make_maildir(
    path: Path, messages: Sequence[bytes], *, start: int = 1_700_000_000
) -> tuple[mailbox.Maildir, list[str]]:
    """A Maildir at *path* (created, parents too, if missing) holding
    *messages* in this POP3 order.

    Each message is added with :mod:`mailbox`, as a delivery agent would,
    and its file dated *start* + its index, in seconds (the server numbers
    messages by date); a later delivery into the same Maildir passes a
    larger *start*.  Returns the Maildir and the messages' keys (their
    unique names, which the server uses as unique-ids), in order.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    md = mailbox.Maildir(str(path), create=True)
    keys = []
    for index, message in enumerate(messages):
        key = md.add(message)
        stamp = (start + index) * 10**9
        os.utime(message_file(md, key), ns=(stamp, stamp))
        keys.append(key)
    return md, keys


def message_file(md: mailbox.Maildir, key: str) -> Path:
    """Where the message *key* of *md* is now (in ``new/`` or ``cur/``)."""
    return Path(md._path, md._lookup(key))  # type: ignore[attr-defined]


def maildir_state(path: Path) -> dict[str, bytes]:
    """``{unique name: content}`` of every message in new/ and cur/; asserts
    that tmp/ is empty (no half-written file)."""
    found: dict[str, bytes] = {}
    for sub in ("new", "cur"):
        for entry in sorted((path / sub).iterdir()):
            if entry.name.startswith("."):
                continue
            found[entry.name.split(":", 1)[0]] = entry.read_bytes()
    leftovers = [e.name for e in (path / "tmp").iterdir()]
    assert not leftovers, f"files left in tmp/: {leftovers}"
    return found


def lock_is_free(path: Path) -> bool:
    """Whether no session holds the Maildir's flock."""
    lock = path / LOCK_FILE_NAME
    if not lock.exists():
        return True
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


# ---------------------------------------------------------------------------
# A maildrop that fails on purpose
# ---------------------------------------------------------------------------


class FlakyMaildrop:
    """A maildrop whose commit fails (partially) and whose reads can fail."""

    def __init__(self, *, commit_ok: bool = True, fail_after: int | None = None) -> None:
        self.commit_ok = commit_ok
        self.fail_after = fail_after
        self.committed: set[int] | None = None
        self.closed = False
        self.chunks_read = 0
        self.stream_closed = 0

    def messages(self) -> Sequence[MessageInfo]:
        return [MessageInfo(10 * 100, "u1"), MessageInfo(5, "u2")]

    def open_message(self, index: int) -> Iterator[bytes]:
        if index == 1:
            raise OSError("gone")
        return self._gen()

    def _gen(self) -> Iterator[bytes]:
        try:
            for i in range(10):
                if self.fail_after is not None and i >= self.fail_after:
                    raise OSError("disk error")
                self.chunks_read += 1
                yield b"x" * 98 + b"\r\n"
        finally:
            self.stream_closed += 1

    def top(self, index: int, lines: int) -> Iterator[bytes]:
        return self.open_message(index)

    def commit(self, deleted: AbstractSet[int]) -> bool:
        self.committed = set(deleted)
        return self.commit_ok

    def close(self) -> None:
        self.closed = True


class FlakyBackend:
    """A backend that hands out one :class:`FlakyMaildrop`, or fails to open it."""

    def __init__(self, maildrop: FlakyMaildrop | None = None, error: bool = False) -> None:
        self.maildrop = maildrop or FlakyMaildrop()
        self.error = error

    def open(self, user: str) -> FlakyMaildrop:
        if self.error:
            raise MaildropError("broken")
        return self.maildrop


# ---------------------------------------------------------------------------
# A mixed user store that claims every method
# ---------------------------------------------------------------------------


class EveryMethodAuthenticator(DictAuthenticator):
    """A :class:`DictAuthenticator` that claims to verify every credential
    kind, whatever its users are stored as.

    A real mixed store offers only what works for every user (its
    ``credentials()`` is the intersection); this one offers everything, so
    that a test can drive each login path against each storage form and see
    the per-user verdicts (a hashed user failing SCRAM, say).
    """

    def credentials(self) -> frozenset[str]:
        return frozenset({"password", "secret", "scram-sha-256"})


# ---------------------------------------------------------------------------
# Key-derivation work
# ---------------------------------------------------------------------------


def count_key_derivations(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Patch :func:`hashlib.pbkdf2_hmac` to append each call's iteration
    count to the returned list (clear it between measurements); the real
    function still runs, so the results are unchanged."""
    work: list[int] = []
    real = hashlib.pbkdf2_hmac

    def counting(name: str, password: bytes, salt: bytes, iterations: int, *a: object) -> bytes:
        work.append(iterations)
        return real(name, password, salt, iterations, *a)  # type: ignore[arg-type]

    monkeypatch.setattr(hashlib, "pbkdf2_hmac", counting)
    return work

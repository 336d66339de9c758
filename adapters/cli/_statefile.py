"""The fetch state file: the unique-ids already stored, per account.

``pop3proto fetch`` downloads only messages whose UIDL unique-id (RFC 1939
§7) it has not stored before.  :class:`StateFile` remembers them in a JSON
file beside the destination (``DEST.uidl``, see :func:`default_state_path`),
keyed by account (``user@host``: ``pop3://`` and ``pop3s://`` reach the
same maildrop).  After each message is durably stored, its unique-id is
added and the file rewritten atomically (temporary file, fsync,
:func:`os.replace`, fsync of the directory), so an interruption at any
point never loses a message; the destination finds one stored but not yet
recorded (see :mod:`pop3proto.adapters.mailstore._destinations`).  A lock
file keeps two fetches from writing the same destination at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterable
from typing import Final

from ..mailstore._destinations import TEMP_NAME_RE, StorageError, storage_error, write_atomic
from ._common import EXIT_FAILURE, EXIT_USAGE, CLIError

__all__ = ["StateFile", "default_state_path"]

_STATE_VERSION: Final = 1


def default_state_path(destination: str) -> str:
    """``DEST.uidl`` beside the destination."""
    absolute = os.path.abspath(destination)
    if absolute == os.path.dirname(absolute):
        raise CLIError(f"--to {destination}: cannot store mail in the root directory", EXIT_USAGE)
    return absolute.rstrip(os.sep) + ".uidl"


class StateFile:
    """The unique-ids already stored, per account, in a JSON file.

    ``{"version": 1, "accounts": {"user@host": ["uid", ...]}}``.
    :meth:`lock` takes an exclusive :func:`fcntl.flock` on ``FILE.lock`` so
    that two fetches never write the same destination at once.
    """

    def __init__(self, path: str, *, durable: bool) -> None:
        self.path = path
        self.durable = durable
        self._accounts: dict[str, dict[str, None]] = {}
        self._lock_fd: int | None = None

    def lock(self) -> None:
        """Take the lock or raise :class:`CLIError` if another fetch holds it."""
        try:
            # O_NOFOLLOW: a link planted as the lock file would otherwise
            # make us create (or open) a file wherever it points.
            fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            raise storage_error("cannot create the lock file", exc) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise CLIError(
                f"another pop3proto fetch is writing with the state file {self.path}",
                EXIT_FAILURE,
            ) from None
        self._lock_fd = fd
        self._sweep()

    def _sweep(self) -> None:
        # Temporary files of a run killed between create and rename (of
        # the state file or the intent file); only ours, under the lock.
        directory, base = os.path.split(self.path)
        with contextlib.suppress(OSError):
            for name in os.listdir(directory or "."):
                for stem in (base, f"{base}.intent"):
                    rest = name[len(stem) :] if name.startswith(stem) else ""
                    if rest and TEMP_NAME_RE.fullmatch(rest):
                        with contextlib.suppress(OSError):
                            os.unlink(os.path.join(directory, name))

    def unlock(self) -> None:
        """Release the lock (idempotent)."""
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            os.close(fd)

    def load(self) -> None:
        """Read the file (a missing file is an empty state)."""
        try:
            with open(self.path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise storage_error("cannot read the state file", exc) from None
        try:
            data = json.loads(raw.decode("utf-8"))
            if data.get("version") != _STATE_VERSION:
                raise ValueError("unknown version")
            accounts = data["accounts"]
            self._accounts = {
                str(key): {str(uid): None for uid in uids} for key, uids in accounts.items()
            }
        except (ValueError, KeyError, TypeError, AttributeError):
            raise StorageError(
                f"the state file {self.path} is not a pop3proto state file (move it away to "
                "start afresh)"
            ) from None

    def has(self, account: str, uid: str) -> bool:
        """Whether *uid* is recorded for *account*."""
        return uid in self._accounts.get(account, ())

    def uids(self, account: str) -> set[str]:
        """The unique-ids stored for *account*."""
        return set(self._accounts.get(account, ()))

    def replace(self, account: str, uids: Iterable[str]) -> None:
        """Set *account*'s unique-ids (in memory; see :meth:`save`)."""
        self._accounts[account] = dict.fromkeys(uids)

    def add(self, account: str, uid: str) -> None:
        """Record *uid* for *account* and save at once."""
        self._accounts.setdefault(account, {})[uid] = None
        self.save()

    def save(self) -> None:
        """Rewrite the file atomically (and durably with ``--fsync``)."""
        data = {
            "version": _STATE_VERSION,
            "accounts": {k: list(v) for k, v in self._accounts.items()},
        }
        text = json.dumps(data, indent=0, ensure_ascii=True) + "\n"
        try:
            write_atomic(self.path, text.encode("ascii"), durable=self.durable)
        except OSError as exc:
            raise storage_error("cannot write the state file", exc) from None

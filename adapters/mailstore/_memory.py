"""Maildrops kept in memory: :class:`MemoryBackend`, for tests and embedding.

See :mod:`._base` for the protocols it implements.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import NamedTuple

from ._base import DEFAULT_CHUNK, MaildropInUse, MessageInfo, check_chunk_size
from ._crlf import normalized_whole, top_of

__all__ = ["MemoryBackend", "MemoryMaildrop"]


class _Stored(NamedTuple):
    uid: str
    data: bytes  # as delivered
    wire: bytes  # as served: CRLF line ends, ending on a line end
    info: MessageInfo


class MemoryMaildrop:
    """One opened in-memory maildrop; see :class:`Maildrop`.  Created by
    :meth:`MemoryBackend.open`."""

    def __init__(self, backend: MemoryBackend, user: str, snapshot: list[_Stored]) -> None:
        """Wrap a locked snapshot (use :meth:`MemoryBackend.open`)."""
        self._backend = backend
        self.user = user
        self._snapshot = snapshot
        self._infos = [m.info for m in snapshot]
        self._open = True

    def messages(self) -> Sequence[MessageInfo]:
        """See :meth:`Maildrop.messages`."""
        return list(self._infos)

    def _chunks(self, data: bytes) -> Iterator[bytes]:
        size = self._backend.chunk_size
        for start in range(0, len(data), size):
            yield data[start : start + size]

    def open_message(self, index: int) -> Iterator[bytes]:
        """See :meth:`Maildrop.open_message`: the message as converted when
        it was added, in pieces of at most ``chunk_size`` octets."""
        wire = self._snapshot[index].wire
        if len(wire) <= self._backend.chunk_size:
            return iter((wire,) if wire else ())
        return self._chunks(wire)

    def top(self, index: int, lines: int) -> Iterator[bytes]:
        """See :meth:`Maildrop.top`."""
        return top_of(self.open_message(index), lines)

    def commit(self, deleted: AbstractSet[int]) -> bool:
        """See :meth:`Maildrop.commit`."""
        uids = {self._snapshot[i].uid for i in deleted}
        self._backend._remove(self.user, uids)
        return True

    def close(self) -> None:
        """Release the in-process lock."""
        if self._open:
            self._open = False
            self._backend._release(self.user)


class MemoryBackend:
    """Maildrops kept in memory: ``{user: [message bytes, ...]}``.

    Messages may use LF or CRLF line endings; they are served with CRLF.
    Each message is converted (and sized) once, when it is added, and kept
    in both forms (as delivered for :meth:`messages`, as served for RETR).
    Each message gets a unique-id ``m<n>`` from a counter when it is added,
    so ids are never reused.  Unknown users get an empty maildrop.  The
    lock is in-process (sessions per user, under a :class:`threading.Lock`).
    With *shared_sessions*, several sessions may hold one maildrop at once
    (see :class:`~._maildir.MaildirBackend`); off by default (RFC 1939 §8).
    """

    def __init__(
        self,
        mailboxes: Mapping[str, Iterable[bytes]] | None = None,
        *,
        chunk_size: int = DEFAULT_CHUNK,
        shared_sessions: bool = False,
    ) -> None:
        """See the class docstring."""
        self.shared_sessions = shared_sessions
        self.chunk_size = check_chunk_size(chunk_size)
        self._lock = threading.Lock()
        self._counter = itertools.count(1)
        self._boxes: dict[str, list[_Stored]] = {}
        self._locked: dict[str, int] = {}  # user -> sessions holding it
        for user, messages in (mailboxes or {}).items():
            for message in messages:
                self.add(user, message)

    def add(self, user: str, message: bytes) -> str:
        """Deliver *message* to *user*; return its unique-id."""
        if not isinstance(message, bytes):
            raise TypeError("message must be bytes")
        # Converted once here rather than at every RETR (and sized once
        # rather than at every login).
        wire = normalized_whole(message)
        with self._lock:
            uid = f"m{next(self._counter)}"
            stored = _Stored(uid, message, wire, MessageInfo(len(wire), uid))
            self._boxes.setdefault(user, []).append(stored)
        return uid

    def messages(self, user: str) -> list[bytes]:
        """The messages currently stored for *user* (as stored)."""
        with self._lock:
            return [m.data for m in self._boxes.get(user, [])]

    def is_locked(self, user: str) -> bool:
        """Whether a session holds *user*'s maildrop."""
        with self._lock:
            return user in self._locked

    def open(self, user: str) -> MemoryMaildrop:
        """Lock and snapshot *user*'s maildrop; see :class:`MaildropBackend`."""
        with self._lock:
            if user in self._locked and not self.shared_sessions:
                raise MaildropInUse("maildrop already locked")
            self._locked[user] = self._locked.get(user, 0) + 1
            snapshot = list(self._boxes.get(user, []))
        return MemoryMaildrop(self, user, snapshot)

    def try_open(self, user: str) -> MemoryMaildrop | None:
        """:meth:`open`, which is always quick (see
        :class:`~._base.MaildropBackend`); ``None`` from a subclass that
        overrides :meth:`open`, which may not be."""
        if type(self).open is not MemoryBackend.open:
            return None
        return self.open(user)

    def _remove(self, user: str, uids: set[str]) -> None:
        with self._lock:
            box = self._boxes.get(user, [])
            self._boxes[user] = [m for m in box if m.uid not in uids]

    def _release(self, user: str) -> None:
        with self._lock:
            left = self._locked.pop(user, 1) - 1
            if left:
                self._locked[user] = left

    def __repr__(self) -> str:
        return f"<MemoryBackend users={len(self._boxes)}>"

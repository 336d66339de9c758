"""Maildrop backends for the POP3 server: where the messages come from.

A POP3 session sees a *maildrop*: a snapshot of messages taken when the
session authenticates (RFC 1939 §4 numbers them 1..n at that moment), each
with a size and a unique-id, that can be streamed out and, at the end of a
successful session, have some of its messages removed (the UPDATE state,
RFC 1939 §6).  Two small protocols describe that:

* :class:`Maildrop`: one opened, locked maildrop.  Messages are addressed by
  their **0-based index** in :meth:`Maildrop.messages` (the session adds 1
  for the POP3 message number).
* :class:`MaildropBackend`: ``open(user)`` returns a locked
  :class:`Maildrop`, or raises :class:`MaildropInUse` when another session
  (in this process or another one) holds it.

Message octets are always served with CRLF line endings, and the size
reported is the number of octets actually streamed (RFC 1939 §11: a store
that keeps LF-only text counts each LF as two octets).  A stored message
that does not end with a line end is served with a CRLF appended (the
server must end the content with CRLF before the terminating ".", checklist
§3), and that CRLF is counted, so that a LIST size always equals what RETR
delivers (RFC 6856 §2.1).

Two implementations:

* :class:`MaildirBackend`: a Maildir (``new/``, ``cur/``, ``tmp/``, the
  layout the stdlib :mod:`mailbox` module writes), either one shared
  maildrop or one per user below a root.  Messages stream from disk in
  chunks, never read whole; the lock is an :func:`fcntl.flock` on a
  ``.pop3proto.lock`` file inside the Maildir, so it also excludes other
  server processes.  POSIX only.
* :class:`MemoryBackend`: messages kept in memory, for tests and embedding.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import itertools
import logging
import os
import re
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import NamedTuple, Protocol, runtime_checkable

__all__ = [
    "MaildropError",
    "MaildropInUse",
    "MessageInfo",
    "Maildrop",
    "MaildropBackend",
    "CrlfNormalizer",
    "normalized_chunks",
    "maildir_uid",
    "top_of",
    "MaildirBackend",
    "MaildirMaildrop",
    "MemoryBackend",
    "MemoryMaildrop",
    "LOCK_FILE_NAME",
]

log = logging.getLogger("pop3proto.server")

#: Name of the lock file :class:`MaildirBackend` creates inside a Maildir.
LOCK_FILE_NAME = ".pop3proto.lock"

_DEFAULT_CHUNK = 65536


class MaildropError(Exception):
    """The maildrop cannot be opened or used (a system problem: the session
    answers ``-ERR [SYS/TEMP]``)."""


class MaildropInUse(MaildropError):
    """Another session holds the maildrop's lock (``-ERR [IN-USE]``,
    RFC 2449 §8.1.2)."""


class MessageInfo(NamedTuple):
    """What the session needs to know about one message without reading it.

    Fields:
        size: the exact number of octets the message streams as (CRLF line
            endings, before dot-stuffing; RFC 1939 §11).
        uid: its unique-id: 1-70 characters in 0x21-0x7E, stable across
            sessions and never reused for another message (RFC 1939 §7).
    """

    size: int
    uid: str


@runtime_checkable
class Maildrop(Protocol):
    """One opened (and locked) maildrop; see the module docstring.

    Message indexes are 0-based positions in :meth:`messages`.  Every method
    may raise :class:`OSError` on an I/O failure.
    """

    def messages(self) -> Sequence[MessageInfo]:
        """The messages as of the moment the maildrop was opened, in order.

        The list never changes during the session: mail delivered meanwhile
        shows up in the next session, and deletions only happen in
        :meth:`commit`.
        """
        ...

    def open_message(self, index: int) -> Iterator[bytes]:
        """Stream message *index* as chunks of CRLF-terminated octets.

        The chunks, concatenated, are exactly ``messages()[index].size``
        octets.  Closing the iterator early (``.close()`` on a generator)
        releases whatever it holds open.
        """
        ...

    def top(self, index: int, lines: int) -> Iterator[bytes]:
        """Stream the header of message *index*, the blank line after it and
        the first *lines* lines of its body (RFC 1939 §7 TOP)."""
        ...

    def commit(self, deleted: AbstractSet[int]) -> bool:
        """Remove the messages at the *deleted* indexes (the UPDATE state).

        Returns ``False`` if some could not be removed (the session then
        answers ``-ERR [SYS/TEMP] some deleted messages not removed``,
        RFC 1939 §6).  Messages not listed are never touched.
        """
        ...

    def close(self) -> None:
        """Release the lock.  Idempotent; nothing is removed."""
        ...


@runtime_checkable
class MaildropBackend(Protocol):
    """Opens users' maildrops."""

    def open(self, user: str) -> Maildrop:
        """Open and lock the maildrop of *user* (an authenticated name).

        Raises :class:`MaildropInUse` if it is locked by another session and
        :class:`MaildropError` if it cannot be opened.
        """
        ...


# ---------------------------------------------------------------------------
# Line-end normalisation, shared by both backends
# ---------------------------------------------------------------------------


class CrlfNormalizer:
    """Turns bare LFs into CRLF across chunk boundaries (RFC 1939 §11).

    Feed the stored octets chunk by chunk; :meth:`feed` returns the octets to
    send and :meth:`end` whatever completes the final line.  A CR that is
    not followed by LF is kept as it is (it is not a line end; the engine
    dot-stuffs only after LF).  :meth:`count` measures a chunk without
    building the converted copy, with the same result as ``len(feed(...))``.
    """

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last = b""  # last stored octet seen, b"" before any

    def feed(self, chunk: bytes) -> bytes:
        """Convert one stored chunk."""
        if not chunk:
            return b""
        out = _crlf(chunk)
        if chunk[0] == 0x0A and self._last == b"\r":
            # The CR ending the previous chunk already pairs with this LF.
            out = out[1:]
        self._last = chunk[-1:]
        return out

    def count(self, chunk: bytes) -> int:
        """``len(self.feed(chunk))``, without the copy."""
        if not chunk:
            return 0
        if b"\r" not in chunk:
            extra = chunk.count(b"\n")
        elif _FIND_BARE_LF(chunk) is None:
            extra = 0  # CRLF throughout
        else:
            extra = chunk.count(b"\n") - chunk.count(b"\r\n")
        if chunk[0] == 0x0A and self._last == b"\r":
            extra -= 1
        self._last = chunk[-1:]
        return len(chunk) + extra

    def end(self) -> bytes:
        """The octets that end the message on a line end (``b""`` if it
        already does, or if it is empty)."""
        if self._last in (b"", b"\n"):
            return b""
        if self._last == b"\r":
            return b"\n"
        return b"\r\n"


def _crlf(data: bytes) -> bytes:
    """*data* with every bare LF turned into CRLF (a CR before an LF in an
    earlier chunk is the caller's business).

    Maildir files usually hold LF-only text, sometimes CRLF text: both are
    recognised with one-octet scans before anything is copied.
    """
    if b"\r" not in data:
        # No CR at all: every LF is bare (and no LF at all: nothing to do;
        # bytes.replace then returns *data* itself).
        return data.replace(b"\n", b"\r\n")
    if _FIND_BARE_LF(data) is None:
        return data  # already CRLF throughout
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


# An LF with no CR before it: a compiled regex that starts with the literal
# LF scans about twice as fast as bytes.count(b"\r\n") on CRLF text.
_FIND_BARE_LF = re.compile(rb"\n(?<!\r\n)").search


def _normalized_whole(data: bytes) -> bytes:
    """A whole stored message with CRLF line ends, ending on a line end:
    ``b"".join(normalized_chunks([data]))`` in one go."""
    out = _crlf(data)
    if out and out[-1] != 0x0A:
        out += b"\n" if out[-1] == 0x0D else b"\r\n"
    return out


def normalized_chunks(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Stream *chunks* of stored octets with CRLF line endings, ending on a
    line end; see :class:`CrlfNormalizer`."""
    norm = CrlfNormalizer()
    for chunk in chunks:
        out = norm.feed(chunk)
        if out:
            yield out
    tail = norm.end()
    if tail:
        yield tail


def _normalized_size(chunks: Iterable[bytes]) -> int:
    norm = CrlfNormalizer()
    total = sum(norm.count(chunk) for chunk in chunks)
    return total + len(norm.end())


def top_of(chunks: Iterator[bytes], lines: int) -> Iterator[bytes]:
    """Cut a CRLF-normalised message stream for ``TOP msg lines``.

    RFC 1939 §7: the header, the blank line that ends it, then *lines* lines
    of the body (the whole message if the body is shorter; all of it if
    there is no blank line at all).  Streams: only line ends are looked for,
    so a huge header line costs no memory.  *chunks* is closed (if it can
    be) when the cut is reached.
    """
    if lines < 0:
        raise ValueError("lines must be >= 0")
    in_body = False
    body_lines = 0
    line_len = 0  # octets of the current line seen in earlier chunks
    try:
        for chunk in chunks:
            pos = 0
            while True:
                lf = chunk.find(b"\n", pos)
                if lf < 0:
                    line_len += len(chunk) - pos
                    break
                length = line_len + lf - pos  # octets before this LF
                line_len = 0
                pos = lf + 1
                if not in_body:
                    # In normalised input every LF follows a CR, so the empty
                    # line that ends the header is exactly CR LF.
                    if length <= 1:
                        in_body = True
                        if lines == 0:
                            yield chunk[:pos]
                            return
                else:
                    body_lines += 1
                    if body_lines >= lines:
                        yield chunk[:pos]
                        return
            yield chunk
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()


def _by_mtime_and_name(item: tuple[int, str, str, int]) -> tuple[int, str]:
    return item[0], item[1]


def _check_chunk_size(chunk_size: int) -> int:
    if chunk_size < 1:
        raise ValueError("chunk_size must be at least 1")
    return chunk_size


# ---------------------------------------------------------------------------
# Maildir
# ---------------------------------------------------------------------------


def maildir_uid(unique: str) -> str:
    """The POP3 unique-id for a Maildir unique name (the part before ':').

    RFC 1939 §7 allows 1-70 characters in 0x21-0x7E.  Maildir unique names
    usually qualify as they are (``1700000000.M1P2Q3.host``) and are then
    used verbatim, which keeps UIDs readable and stable across restarts;
    any other name (too long, or with spaces, non-ASCII or control
    characters) is replaced by the SHA-256 of its bytes in hex (64
    characters), which is just as stable.
    """
    if 1 <= len(unique) <= 70 and all("\x21" <= c <= "\x7e" for c in unique):
        return unique
    raw = os.fsencode(unique)
    return hashlib.sha256(raw).hexdigest()


class _MaildirEntry(NamedTuple):
    unique: str
    path: str
    stored: int  # octets in the file when it was listed
    info: MessageInfo  # CRLF octets and unique-id


class _FileStream:
    """The octets of an open file with CRLF line ends, chunk by chunk (what
    :func:`normalized_chunks` over the file's chunks yields), starting with
    chunks already read.  Owns the descriptor: it is closed at the end, by
    :meth:`close` or when the stream is dropped."""

    __slots__ = ("_fd", "_norm", "_pending", "_size")

    def __init__(self, fd: int, size: int, pending: list[bytes]) -> None:
        self._fd = fd
        self._size = size
        self._pending = pending
        self._norm = CrlfNormalizer()

    def __iter__(self) -> _FileStream:
        return self

    def __next__(self) -> bytes:
        norm = self._norm
        pending = self._pending
        while True:
            if pending:
                chunk = pending.pop(0)
            else:
                fd = self._fd
                if fd < 0:
                    raise StopIteration
                chunk = os.read(fd, self._size)
                if not chunk:
                    self.close()
                    tail = norm.end()
                    if tail:
                        return tail
                    raise StopIteration
            out = norm.feed(chunk)
            if out:
                return out

    def close(self) -> None:
        """Close the file (idempotent)."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    def __del__(self) -> None:
        if getattr(self, "_fd", -1) >= 0:
            self.close()


class MaildirMaildrop:
    """One opened Maildir; see :class:`Maildrop`.  Created by
    :meth:`MaildirBackend.open`."""

    def __init__(
        self,
        path: str,
        lock_fd: int,
        entries: list[_MaildirEntry],
        *,
        chunk_size: int,
        colon: str,
    ) -> None:
        """Wrap an already locked Maildir (use :meth:`MaildirBackend.open`)."""
        self.path = path
        self._lock_fd: int | None = lock_fd
        self._entries = entries
        self._chunk_size = chunk_size
        self._colon = colon
        # The backend caches each file's MessageInfo (size and unique-id)
        # by file identity, so a login computes neither.
        self._infos = [e.info for e in entries]

    def messages(self) -> Sequence[MessageInfo]:
        """See :meth:`Maildrop.messages`."""
        return list(self._infos)

    def _find(self, entry: _MaildirEntry) -> str:
        # Another agent (a MUA sharing the Maildir) may have moved the file
        # from new/ to cur/ or changed its flags; both keep the unique name.
        for sub in ("cur", "new"):
            folder = os.path.join(self.path, sub)
            try:
                names = os.listdir(folder)
            except FileNotFoundError:
                continue
            for name in names:
                if name.split(self._colon, 1)[0] == entry.unique:
                    return os.path.join(folder, name)
        raise FileNotFoundError(errno.ENOENT, "message vanished from the Maildir", entry.path)

    def _resolve(self, index: int) -> str:
        entry = self._entries[index]
        if os.path.exists(entry.path):
            return entry.path
        return self._find(entry)

    def _open(self, index: int) -> int:
        # Open where the scan saw the file, and look for it only if it is no
        # longer there (no stat before every open).
        entry = self._entries[index]
        try:
            return os.open(entry.path, os.O_RDONLY)
        except FileNotFoundError:
            pass
        return os.open(self._find(entry), os.O_RDONLY)

    def open_message(self, index: int) -> Iterator[bytes]:
        """See :meth:`Maildrop.open_message`; streams from disk.

        A file that fits in one read (``chunk_size``) is read, converted and
        closed at once and comes out as a single chunk; a larger one streams
        chunk by chunk from the open file.
        """
        fd = self._open(index)
        size = self._chunk_size
        try:
            first = os.read(fd, size)
            if first and not len(first) == self._entries[index].stored < size:
                second = os.read(fd, size)
            else:
                # Empty, or a short read of exactly the size the listing
                # saw: the end of the file (a file that grew since gives
                # more octets, one that shrank a shorter read: then the
                # next read says where the end is).
                second = b""
        except BaseException:
            os.close(fd)
            raise
        if not second:
            os.close(fd)
            return iter((_normalized_whole(first),) if first else ())
        return _FileStream(fd, size, [first, second])

    def top(self, index: int, lines: int) -> Iterator[bytes]:
        """See :meth:`Maildrop.top`."""
        return top_of(self.open_message(index), lines)

    def commit(self, deleted: AbstractSet[int]) -> bool:
        """See :meth:`Maildrop.commit`: unlink the marked files.

        A file that is already gone counts as removed.  The directories are
        fsync'ed afterwards so that the removal survives a crash.
        """
        ok = True
        for index in sorted(deleted):
            try:
                path = self._resolve(index)
            except FileNotFoundError:
                continue
            try:
                os.unlink(path)
            except FileNotFoundError:
                continue
            except OSError as exc:
                log.warning("could not remove %s: %s", path, exc.strerror)
                ok = False
        if deleted:
            for sub in ("new", "cur"):
                try:
                    fd = os.open(os.path.join(self.path, sub), os.O_RDONLY)
                except OSError:
                    continue
                try:
                    os.fsync(fd)
                except OSError:
                    pass
                finally:
                    os.close(fd)
        return ok

    def close(self) -> None:
        """Release the flock (closing the descriptor releases it)."""
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            os.close(fd)

    def __repr__(self) -> str:
        return f"<MaildirMaildrop {self.path!r} messages={len(self._entries)}>"


class MaildirBackend:
    """Maildrops stored as Maildirs (``new/``, ``cur/``, ``tmp/``).

    Args:
        root: with ``per_user=False`` (the default) the one Maildir every
            user sees; with ``per_user=True`` a directory holding one Maildir
            per user, ``root/<user>``.
        per_user: see *root*.  User names that could escape the root (empty,
            containing ``/`` or NUL, or starting with ``.``) are refused.
        create: create a missing Maildir (and its sub-directories) on open,
            as :class:`mailbox.Maildir` does with ``create=True``.
        chunk_size: how many octets to read from disk at a time.
        colon: the separator between a Maildir file's unique name and its
            info (``:`` on POSIX, as in :mod:`mailbox`).

    Messages are listed from ``new/`` and ``cur/`` (files whose name starts
    with ``.`` are skipped, as Maildir readers do), sorted by modification
    time (the delivery time) and then by name.  Their unique-ids come from
    the unique part of the file name (:func:`maildir_uid`), so they stay the
    same across sessions, restarts and moves from ``new/`` to ``cur/``.
    Sizes are counted once, by streaming the file, and cached with the
    unique-id by ``(unique name, stored size, mtime)`` for the life of the
    backend.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        per_user: bool = False,
        create: bool = True,
        chunk_size: int = _DEFAULT_CHUNK,
        colon: str = ":",
    ) -> None:
        """See the class docstring."""
        self.root = os.fspath(root)
        self.per_user = per_user
        self.create = create
        self.chunk_size = _check_chunk_size(chunk_size)
        if len(colon) != 1:
            raise ValueError("colon must be a single character")
        self.colon = colon
        # (unique name, stored size, mtime) -> MessageInfo
        self._infos: dict[tuple[str, int, int], MessageInfo] = {}
        self._infos_lock = threading.Lock()

    def path_for(self, user: str) -> str:
        """The Maildir that *user* gets."""
        if not self.per_user:
            return self.root
        if not user or user.startswith(".") or "/" in user or "\0" in user or os.sep in user:
            raise MaildropError("user name not usable as a Maildir name")
        return os.path.join(self.root, user)

    def _ensure(self, path: str) -> None:
        subs = ("cur", "new", "tmp")
        missing = [sub for sub in subs if not os.path.isdir(os.path.join(path, sub))]
        if not missing:
            return
        if not self.create:
            raise MaildropError("no Maildir for this user")
        for sub in missing:
            os.makedirs(os.path.join(path, sub), mode=0o700, exist_ok=True)

    def open(self, user: str) -> MaildirMaildrop:
        """Lock and snapshot the Maildir of *user*; see :class:`MaildropBackend`."""
        path = self.path_for(user)
        try:
            self._ensure(path)
            fd = os.open(os.path.join(path, LOCK_FILE_NAME), os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise MaildropError(f"cannot open the Maildir: {exc.strerror}") from exc
        try:
            # Non-blocking: a second session must get -ERR [IN-USE] at once
            # (RFC 1939 §8 and RFC 2449 §8.1.2), not hang.  flock locks
            # belong to the open file description, so this also excludes
            # other threads of this process, which open their own.
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise MaildropInUse("maildrop already locked") from None
        except OSError as exc:
            os.close(fd)
            raise MaildropError(f"cannot lock the Maildir: {exc.strerror}") from exc
        try:
            entries = self._scan(path)
        except OSError as exc:
            os.close(fd)
            raise MaildropError(f"cannot read the Maildir: {exc.strerror}") from exc
        except BaseException:
            os.close(fd)
            raise
        return MaildirMaildrop(path, fd, entries, chunk_size=self.chunk_size, colon=self.colon)

    def _scan(self, path: str) -> list[_MaildirEntry]:
        found: list[tuple[int, str, str, int]] = []
        colon = self.colon
        for sub in ("new", "cur"):
            folder = os.path.join(path, sub)
            with os.scandir(folder) as it:
                for entry in it:
                    name = entry.name
                    if name.startswith("."):
                        continue
                    try:
                        if not entry.is_file(follow_symlinks=False):
                            continue
                        st = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue  # removed while we looked
                    found.append((st.st_mtime_ns, name.split(colon, 1)[0], entry.path, st.st_size))
        found.sort(key=_by_mtime_and_name)
        cache = self._infos
        with self._infos_lock:
            infos = [cache.get((unique, stored, mtime)) for mtime, unique, _, stored in found]
        entries: list[_MaildirEntry] = []
        for (mtime, unique, file_path, stored_size), info in zip(found, infos, strict=True):
            if info is None:
                try:
                    info = self._info(unique, file_path, stored_size, mtime)
                except FileNotFoundError:
                    continue
            entries.append(_MaildirEntry(unique, file_path, stored_size, info))
        return entries

    def _info(self, unique: str, path: str, stored_size: int, mtime: int) -> MessageInfo:
        """Count the CRLF size of a file not in the cache yet; cache it with
        the file's unique-id."""
        with open(path, "rb") as f:
            size = _normalized_size(iter(lambda: f.read(self.chunk_size), b""))
        info = MessageInfo(size, maildir_uid(unique))
        with self._infos_lock:
            self._infos[(unique, stored_size, mtime)] = info
        return info

    def __repr__(self) -> str:
        return f"<MaildirBackend {self.root!r} per_user={self.per_user}>"


# ---------------------------------------------------------------------------
# In memory
# ---------------------------------------------------------------------------


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
    lock is in-process (a set of users, under a :class:`threading.Lock`).
    """

    def __init__(
        self,
        mailboxes: Mapping[str, Iterable[bytes]] | None = None,
        *,
        chunk_size: int = _DEFAULT_CHUNK,
    ) -> None:
        """See the class docstring."""
        self.chunk_size = _check_chunk_size(chunk_size)
        self._lock = threading.Lock()
        self._counter = itertools.count(1)
        self._boxes: dict[str, list[_Stored]] = {}
        self._locked: set[str] = set()
        for user, messages in (mailboxes or {}).items():
            for message in messages:
                self.add(user, message)

    def add(self, user: str, message: bytes) -> str:
        """Deliver *message* to *user*; return its unique-id."""
        if not isinstance(message, bytes):
            raise TypeError("message must be bytes")
        # Converted once here rather than at every RETR (and sized once
        # rather than at every login).
        wire = _normalized_whole(message)
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
            if user in self._locked:
                raise MaildropInUse("maildrop already locked")
            self._locked.add(user)
            snapshot = list(self._boxes.get(user, []))
        return MemoryMaildrop(self, user, snapshot)

    def _remove(self, user: str, uids: set[str]) -> None:
        with self._lock:
            box = self._boxes.get(user, [])
            self._boxes[user] = [m for m in box if m.uid not in uids]

    def _release(self, user: str) -> None:
        with self._lock:
            self._locked.discard(user)

    def __repr__(self) -> str:
        return f"<MemoryBackend users={len(self._boxes)}>"

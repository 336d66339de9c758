"""Maildrops stored as Maildirs: :class:`MaildirBackend`.

A Maildir (``new/``, ``cur/``, ``tmp/``, the layout the stdlib
:mod:`mailbox` module writes), either one shared maildrop or one per user
below a root.  Messages stream from disk in chunks, never read whole, with
CRLF line ends (:mod:`._crlf`); the lock is an :func:`fcntl.flock` on a
``.pop3proto.lock`` file inside the Maildir, so it also excludes other
server processes.  POSIX only.  See :mod:`._base` for the protocols it
implements.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import logging
import os
import stat
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from collections.abc import Set as AbstractSet
from typing import NamedTuple

from ._base import DEFAULT_CHUNK, MaildropError, MaildropInUse, MessageInfo, check_chunk_size
from ._crlf import CrlfNormalizer, normalized_size, normalized_whole, top_of

__all__ = ["MaildirBackend", "MaildirMaildrop", "maildir_uid", "LOCK_FILE_NAME"]

log = logging.getLogger("pop3proto.server")

#: Name of the lock file :class:`MaildirBackend` creates inside a Maildir.
LOCK_FILE_NAME = ".pop3proto.lock"
#: How many message sizes :class:`MaildirBackend` caches by default.
DEFAULT_CACHE_SIZE = 100_000

_CacheKey = tuple[str, int, int]  # (unique name, stored size, mtime)
# What new/ and cur/ looked like when they were listed: for each, (st_dev,
# st_ino, st_mtime_ns, st_ctime_ns).
_Stamp = tuple[tuple[int, int, int, int], ...]
#: A listing is reused only if both directories were last changed at least
#: this long before it was taken: a file system that keeps timestamps in
#: whole seconds (or two, FAT) could otherwise give a delivery made just
#: after the listing the very mtime the directory already had.
SETTLED_NS = 3_000_000_000
_Ident = tuple[int, int, int]  # (st_dev, st_ino, st_uid) of a listed file


def _by_mtime_and_name(item: tuple[int, str, str, int, _Ident]) -> tuple[int, str]:
    return item[0], item[1]


# Never follow a link, never block on a FIFO planted in the Maildir.
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK


def _open_listed(path: str, ident: _Ident) -> int:
    """Open the message file *path* without following a link, and check the
    open file: a regular file, and either the very file the scan listed
    (same device and inode) or one that a mail agent rewrote in its place,
    as :mod:`mailbox` does when flags change (same device and owner, no
    other name).  A symbolic link, a FIFO, a hard link or a file of another
    owner put in its place since (by whoever can write the Maildir, also
    through a linked ``cur/``) is refused, so that the server never reads a
    file from outside the Maildir with its own rights."""
    fd = os.open(path, _OPEN_FLAGS)
    try:
        st = os.fstat(fd)
        dev, ino, uid = ident
        same = (st.st_dev, st.st_ino) == (dev, ino)
        rewritten = st.st_dev == dev and st.st_uid == uid and st.st_nlink == 1
        if not stat.S_ISREG(st.st_mode) or not (same or rewritten):
            raise OSError(errno.EPERM, "not the file listed at login", path)
        # O_NONBLOCK stays set: it only kept a FIFO from blocking the open,
        # and reads of a regular file ignore it (Linux, the BSDs), so
        # clearing it would cost two system calls per message for nothing.
    except BaseException:
        os.close(fd)
        raise
    return fd


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
    ident: _Ident  # (st_dev, st_ino, st_uid) when it was listed


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
        pending = self._pending
        if pending:
            chunk = pending.pop(0)
        else:
            fd = self._fd
            if fd < 0:
                raise StopIteration
            chunk = os.read(fd, self._size)
            if not chunk:
                self.close()
                tail = self._norm.end()
                if tail:
                    return tail
                raise StopIteration
        # Every chunk here holds at least one octet, and converting one
        # never yields nothing, so each call returns a non-empty piece.
        return self._norm.feed(chunk)

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
            return _open_listed(entry.path, entry.ident)
        except FileNotFoundError:
            pass
        return _open_listed(self._find(entry), entry.ident)

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
            return iter((normalized_whole(first),) if first else ())
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
            except FileNotFoundError:  # pragma: no cover - removed between the look-up and here
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
                except OSError:  # pragma: no cover - some file systems cannot sync directories
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
        shared_sessions: let several sessions open one Maildir at once
            (what Dovecot calls ``pop3_lock_session = no``).  Off by
            default: RFC 1939 §8 asks for an exclusive lock.  When on, the
            flock is shared, so such sessions still exclude (and are
            excluded by) an exclusive session of another server; each sees
            its own snapshot, and a message another session removed first
            counts as removed at commit.
        cache_size: the most message sizes cached (default 100,000, about
            60 MiB with the listings kept beside them; 0 turns the cache,
            and the reuse of listings, off).

    Messages are listed from ``new/`` and ``cur/`` (files whose name starts
    with ``.`` are skipped, as Maildir readers do), sorted by modification
    time (the delivery time) and then by name.  Their unique-ids come from
    the unique part of the file name (:func:`maildir_uid`), so they stay the
    same across sessions, restarts and moves from ``new/`` to ``cur/``.
    Sizes are counted once, by streaming the file, and cached with the
    unique-id by ``(unique name, stored size, mtime)``.  The cache holds the
    messages found by the latest scan of each Maildir (a message deleted or
    changed drops out at the next login), and at most *cache_size* entries
    in all: the Maildirs opened least recently are dropped first.  With its
    sizes, each Maildir keeps its latest listing: a login to a Maildir whose
    ``new/`` and ``cur/`` have not changed since (same mtime and ctime, both
    older than :data:`SETTLED_NS` when it was listed) reuses it and makes no
    ``lstat`` per message.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        per_user: bool = False,
        create: bool = True,
        chunk_size: int = DEFAULT_CHUNK,
        colon: str = ":",
        shared_sessions: bool = False,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        """See the class docstring."""
        self.shared_sessions = shared_sessions
        self.root = os.fspath(root)
        self.per_user = per_user
        self.create = create
        self.chunk_size = check_chunk_size(chunk_size)
        if len(colon) != 1:
            raise ValueError("colon must be a single character")
        self.colon = colon
        if cache_size < 0:
            raise ValueError("cache_size must be >= 0")
        self.cache_size = cache_size
        # Maildir path -> {(unique name, stored size, mtime): MessageInfo},
        # least recently scanned first.
        self._infos: OrderedDict[str, dict[_CacheKey, MessageInfo]] = OrderedDict()
        self._cached = 0
        # Maildir path -> (stamp of new/ and cur/, entries) of its latest
        # scan, kept while the path is in _infos (see _scan).
        self._listings: dict[str, tuple[_Stamp, list[_MaildirEntry]]] = {}
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
        lock_path = os.path.join(path, LOCK_FILE_NAME)
        # A Maildir served before has its lock file, and the scan below
        # looks at new/ and cur/ anyway: only a Maildir seen for the first
        # time (or one that lost a directory) is checked, and created,
        # sub-directory by sub-directory.  A login then costs four system
        # calls in the worker thread instead of seven.
        try:
            fd = os.open(lock_path, os.O_RDWR)
        except FileNotFoundError:
            fd = -1
        except OSError as exc:
            raise MaildropError(f"cannot open the Maildir: {exc.strerror}") from exc
        if fd < 0:
            return self._open_new(path, lock_path)
        try:
            return self._lock_and_scan(path, fd)
        except FileNotFoundError:
            # new/ or cur/ is gone (_lock_and_scan closed the lock file).
            return self._open_new(path, lock_path)

    def try_open(self, user: str) -> MaildirMaildrop | None:
        """Open *user*'s Maildir if its latest listing can be reused, else
        return ``None``; see :class:`MaildropBackend`.

        That costs the lock file's ``open``, a non-blocking ``flock`` and
        two ``lstat`` calls, the kind of work a message read makes, so the
        event-loop servers make it on the loop.  A Maildir not listed
        before, or changed since, is left to :meth:`open` (in a worker
        thread): a scan may read thousands of files.  A subclass that
        overrides :meth:`open` gets ``None`` always.
        """
        if type(self).open is not MaildirBackend.open:
            return None
        path = self.path_for(user)
        with self._infos_lock:
            if path not in self._listings:
                return None
        try:
            fd = os.open(os.path.join(path, LOCK_FILE_NAME), os.O_RDWR)
        except OSError:
            return None  # open() finds out what is wrong
        self._lock(fd)
        try:
            entries = self._reused(path, self._stamp(path))
        except (OSError, MaildropError):
            entries = None  # open() again finds out
        if entries is None:
            os.close(fd)
            return None
        return MaildirMaildrop(path, fd, entries, chunk_size=self.chunk_size, colon=self.colon)

    def _open_new(self, path: str, lock_path: str) -> MaildirMaildrop:
        try:
            self._ensure(path)
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise MaildropError(f"cannot open the Maildir: {exc.strerror}") from exc
        try:
            return self._lock_and_scan(path, fd)
        except FileNotFoundError as exc:  # pragma: no cover - removed again at once
            raise MaildropError(f"cannot read the Maildir: {exc.strerror}") from exc

    def _lock_and_scan(self, path: str, fd: int) -> MaildirMaildrop:
        """Lock the open lock file *fd* and list the Maildir; *fd* is
        closed if that fails (FileNotFoundError: new/ or cur/ is missing)."""
        self._lock(fd)
        # Listing fails with ENOENT when new/ or cur/ is missing, otherwise
        # only with EACCES (a Maildir of another user: not when the tests
        # run as root) or EIO, or when interrupted; either way the lock
        # must not leak.
        try:
            entries = self._scan(path)
        except FileNotFoundError:
            os.close(fd)
            raise
        except OSError as exc:  # pragma: no cover - see above
            os.close(fd)
            raise MaildropError(f"cannot read the Maildir: {exc.strerror}") from exc
        except BaseException:
            os.close(fd)
            raise
        return MaildirMaildrop(path, fd, entries, chunk_size=self.chunk_size, colon=self.colon)

    def _lock(self, fd: int) -> None:
        """Lock the open lock file *fd*, or close it and raise."""
        try:
            # Non-blocking: a second session must get -ERR [IN-USE] at once
            # (RFC 1939 §8 and RFC 2449 §8.1.2), not hang.  flock locks
            # belong to the open file description, so this also excludes
            # other threads of this process, which open their own.
            mode = fcntl.LOCK_SH if self.shared_sessions else fcntl.LOCK_EX
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise MaildropInUse("maildrop already locked") from None
        except OSError as exc:  # pragma: no cover - ENOLCK and the like, from NFS
            os.close(fd)
            raise MaildropError(f"cannot lock the Maildir: {exc.strerror}") from exc

    def _scan(self, path: str) -> list[_MaildirEntry]:
        """The messages of the Maildir at *path*, in order.

        A Maildir's files are never changed in place: delivering, moving,
        renaming and removing a message all change the entries of ``new/``
        or ``cur/``, and with them the directory's mtime and ctime.  So when
        neither directory changed since the previous scan, that scan's
        listing is still the truth, and the login costs two ``lstat`` calls
        instead of one per message (Dovecot skips its rescans the same
        way).  A listing is kept only when both directories had settled
        (:data:`SETTLED_NS`) before it was taken, and only while the
        Maildir's sizes are cached (*cache_size* ``0`` keeps none).
        """
        started = time.time_ns()
        stamp = self._stamp(path)
        reused = self._reused(path, stamp)
        if reused is not None:
            return reused
        entries = self._list(path)
        settled = all(started - max(s[2], s[3]) >= SETTLED_NS for s in stamp)
        if settled:
            with self._infos_lock:
                # Only a listing whose every size is cached: what is kept
                # stays within cache_size.
                if len(self._infos.get(path, ())) == len(entries):
                    self._listings[path] = (stamp, list(entries))
        return entries

    @staticmethod
    def _stamp(path: str) -> _Stamp:
        """What changes when a message comes or goes: ``new/``'s and
        ``cur/``'s device, inode, mtime and ctime."""
        stamps = []
        for sub in ("new", "cur"):
            # new/ or cur/ replaced by a link would list (and serve) the
            # files of another directory.
            st = os.lstat(os.path.join(path, sub))
            if stat.S_ISLNK(st.st_mode):
                raise MaildropError(f"{sub}/ of the Maildir is a symbolic link; not served")
            stamps.append((st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns))
        return tuple(stamps)

    def _reused(self, path: str, stamp: _Stamp) -> list[_MaildirEntry] | None:
        """The latest listing of *path*, if it was taken at *stamp*."""
        with self._infos_lock:
            listed = self._listings.get(path)
            if listed is None or listed[0] != stamp:
                return None
            self._infos.move_to_end(path)
            return list(listed[1])

    def _list(self, path: str) -> list[_MaildirEntry]:
        found: list[tuple[int, str, str, int, _Ident]] = []
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
                    except FileNotFoundError:  # pragma: no cover - a race with a remover
                        continue  # removed while we looked
                    found.append(
                        (
                            st.st_mtime_ns,
                            name.split(colon, 1)[0],
                            entry.path,
                            st.st_size,
                            (st.st_dev, st.st_ino, st.st_uid),
                        )
                    )
        found.sort(key=_by_mtime_and_name)
        with self._infos_lock:
            # Taken out: what this scan does not find again is forgotten.
            cache = self._infos.pop(path, {})
            self._listings.pop(path, None)
            self._cached -= len(cache)
        fresh: dict[_CacheKey, MessageInfo] = {}
        entries: list[_MaildirEntry] = []
        for mtime, unique, file_path, stored_size, ident in found:
            key = (unique, stored_size, mtime)
            info = cache.get(key)
            if info is None:
                try:
                    info = self._info(unique, file_path, ident)
                except OSError:
                    # Removed, or replaced (by a link, say) since it was
                    # listed: as if it had not been there.
                    continue
            if len(fresh) < self.cache_size:
                fresh[key] = info
            entries.append(_MaildirEntry(unique, file_path, stored_size, info, ident))
        self._remember(path, fresh)
        return entries

    def _remember(self, path: str, fresh: dict[_CacheKey, MessageInfo]) -> None:
        with self._infos_lock:
            if fresh:
                self._infos[path] = fresh
                self._cached += len(fresh)
            while self._cached > self.cache_size:
                # The least recently scanned Maildir goes first (never the
                # one just stored: it holds at most cache_size entries).
                gone, dropped = self._infos.popitem(last=False)
                self._listings.pop(gone, None)
                self._cached -= len(dropped)

    def _info(self, unique: str, path: str, ident: _Ident) -> MessageInfo:
        """Count the CRLF size of a file not in the cache yet."""
        with open(_open_listed(path, ident), "rb") as f:
            size = normalized_size(iter(lambda: f.read(self.chunk_size), b""))
        return MessageInfo(size, maildir_uid(unique))

    def __repr__(self) -> str:
        return f"<MaildirBackend {self.root!r} per_user={self.per_user}>"

"""Local mail destinations: a Maildir or an mbox that fetched mail is stored in.

:class:`MaildirDestination` and :class:`MboxDestination` take one message at a
time as it arrives (``begin``, ``write`` on the returned writer, ``store``)
and make it durable; ``pop3proto fetch`` drives them.

Messages are stored as the server sent them (the engine has already removed
the dot-stuffing), with every CRLF turned into LF by :class:`LineEndConverter`,
which is what Maildir and mbox readers expect; a lone CR or LF is kept.

* **Maildir**: the message is written to ``tmp/``, fsync'ed, renamed into
  ``new/`` and the directory fsync'ed.  The file name follows the usual
  ``TIME.MUSECPPIDQN.HOST`` pattern plus ``,P3=HASH``, where HASH is the
  first 24 hex digits of SHA-256 over ``"user@host\\nUID"``: a message
  stored but not yet recorded by the fetcher is found again by it
  (:meth:`MaildirDestination.already_stored`).
* **mbox** (mboxrd): ``From SENDER DATE`` (SENDER from ``Return-Path``,
  else ``MAILER-DAEMON``; DATE the UTC arrival time as :func:`time.asctime`
  writes it), the message with one ``>`` added in front of every line that
  matches ``^>*From `` (so that readers can undo it exactly, see
  :func:`read_mboxrd`), a LF if the message did not end with one, then an
  empty line.  If the mbox does not already end with an empty line, LFs are
  added first so that the ``From`` line follows one.  The message is
  received into a temporary spool first and appended with the mbox locked
  (:func:`fcntl.lockf`), then fsync'ed.  Each append is announced first in
  an *intent* file (offset, length and SHA-256 of what is about to be
  appended): after an interruption, :meth:`MboxDestination.resolve_intent`
  reports a complete append that was not recorded, and truncates away a
  partial one (a prefix of ours at the end of the file, with no other
  message after it).

Failures are :class:`StorageError`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Final, Literal

__all__ = [
    "StorageError",
    "storage_error",
    "write_atomic",
    "TEMP_NAME_RE",
    "LineEndConverter",
    "read_mboxrd",
    "destination_kind",
    "MaildirDestination",
    "MboxDestination",
    "Destination",
    "Writer",
]

_CHUNK: Final = 1 << 16
_SPOOL_IN_MEMORY: Final = 8 << 20
_MARKER_LEN: Final = 24
_MARKER_RE: Final = re.compile(rf",P3=([0-9a-f]{{{_MARKER_LEN}}})(?:,|$)")
# Maildir readers delete stray tmp/ files after 36 hours; ours too.
_TMP_MAX_AGE: Final = 36 * 3600
_MBOX_LOCK_WAIT: Final = 30.0


class StorageError(OSError):
    """A destination, or a file kept beside it, cannot be written or read.

    An :class:`OSError`, so that code that handles I/O failures handles it
    too; ``str(exc)`` is the whole message and names the file and the reason.
    ``pop3proto fetch`` exits with code 7 (local storage) for it.
    """


def storage_error(what: str, exc: OSError) -> StorageError:
    """A :class:`StorageError` saying *what* failed, with *exc*'s file and reason."""
    name = f" {exc.filename}" if exc.filename else ""
    return StorageError(f"{what}{name}: {exc.strerror or exc}")


# ---------------------------------------------------------------------------
# Line ends and mboxrd quoting
# ---------------------------------------------------------------------------

_FROM_QUOTE: Final = re.compile(rb"^(>*From )", re.MULTILINE)
# A line start that may still turn out to be ">*From " once more octets come.
_UNDECIDED: Final = re.compile(rb">*(?:F(?:r(?:o(?:m)?)?)?)?")


class LineEndConverter:
    """Streams message octets with CRLF -> LF, optionally mboxrd-quoted.

    Feed chunks split anywhere; concatenating what :meth:`feed` and
    :meth:`end` return gives ``data.replace(b"\\r\\n", b"\\n")`` and, with
    *mboxrd*, one more ``>`` in front of each line matching ``^>*From ``.
    Memory stays bounded: only a trailing CR, or the first few octets of a
    line whose start is still undecided, are held back.
    """

    __slots__ = ("_mboxrd", "_midline", "_pending")

    def __init__(self, *, mboxrd: bool = False) -> None:
        self._mboxrd = mboxrd
        self._pending = b""
        # mboxrd only: the held-back/next octets continue a line whose start
        # has already been written (and quoted if it had to be).
        self._midline = False

    def feed(self, chunk: bytes) -> bytes:
        """Convert one chunk; return what can be written now."""
        data = self._pending + chunk if self._pending else chunk
        self._pending = b""
        if not data:
            return b""
        if not self._mboxrd:
            if data.endswith(b"\r"):
                # Maybe the first half of a CRLF split across chunks.
                self._pending = b"\r"
                data = data[:-1]
            return data.replace(b"\r\n", b"\n")
        out: list[bytes] = []
        start = 0
        if self._midline:
            newline = data.find(b"\n")
            if newline < 0:
                if data.endswith(b"\r"):
                    self._pending = b"\r"
                    data = data[:-1]
                return data
            out.append(data[: newline + 1].replace(b"\r\n", b"\n"))
            start = newline + 1
            self._midline = False
        last = data.rfind(b"\n", start)
        if last >= 0:
            lines = data[start : last + 1].replace(b"\r\n", b"\n")
            out.append(_FROM_QUOTE.sub(rb">\1", lines))
            start = last + 1
        rest = data[start:]
        if rest:
            if _UNDECIDED.fullmatch(rest):
                self._pending = rest
            else:
                if _FROM_QUOTE.match(rest):
                    out.append(b">")
                if rest.endswith(b"\r"):
                    self._pending = b"\r"
                    rest = rest[:-1]
                out.append(rest)
                self._midline = True
        return b"".join(out)

    def end(self) -> bytes:
        """What is still held back (a lone CR, or an unfinished line start
        that cannot be a ``From`` line any more)."""
        rest, self._pending = self._pending, b""
        self._midline = False
        return rest


def read_mboxrd(data: bytes) -> list[bytes]:
    """Split an mboxrd file into its messages, undoing the quoting.

    The inverse of what :func:`fetch` appends (a helper for tests and for
    checking a fetch): each message loses its ``From`` line, one ``>`` from
    lines matching ``^>+From `` and the empty line that ends it.
    """
    messages: list[bytes] = []
    current: list[bytes] | None = None
    # Only LF ends a line (a lone CR does not, as when the mbox was written).
    pieces = data.split(b"\n")
    lines = [piece + b"\n" for piece in pieces[:-1]]
    if pieces[-1]:
        lines.append(pieces[-1])
    for line in lines:
        if line.startswith(b"From "):
            if current is not None:
                messages.append(_finish_mbox_message(current))
            current = []
            continue
        if current is None:
            continue  # garbage before the first From line
        if re.match(rb">+From ", line):
            line = line[1:]
        current.append(line)
    if current is not None:
        messages.append(_finish_mbox_message(current))
    return messages


def _finish_mbox_message(lines: list[bytes]) -> bytes:
    if lines and lines[-1] == b"\n":
        lines = lines[:-1]
    return b"".join(lines)


# ---------------------------------------------------------------------------
# Durable little files
# ---------------------------------------------------------------------------


def _fsync_dir(path: str) -> None:
    fd = os.open(path or ".", os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - not on the local file systems tests run on
        pass  # some file systems cannot sync directories; nothing better to do
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


#: ``write_atomic``'s temporary files: ``PATH.<16 hex digits>.tmp``.
TEMP_NAME_RE: Final = re.compile(r"\.[0-9a-f]{16}\.tmp")


def write_atomic(path: str, data: bytes, *, durable: bool) -> None:
    """Replace *path* by *data*: write a temporary file, fsync, rename, fsync
    the directory.

    The temporary file has a fresh random name (``PATH.<hex>.tmp``) and is
    created with ``O_EXCL | O_NOFOLLOW``: a file or link planted under any
    name beside *path* is never opened, so nothing is written through it.
    """
    while True:
        tmp = f"{path}.{secrets.token_hex(8)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            break
        except FileExistsError:  # pragma: no cover - 64 random bits collided
            continue
    try:
        try:
            _write_all(fd, data)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        _fsync_dir(os.path.dirname(path))


# ---------------------------------------------------------------------------
# Destinations
# ---------------------------------------------------------------------------


def destination_kind(path: str) -> Literal["maildir", "mbox"]:
    """``"mbox"`` for a name ending in ``.mbox`` or an existing non-directory,
    else ``"maildir"``."""
    if path.lower().endswith(".mbox"):
        return "mbox"
    if os.path.exists(path) and not os.path.isdir(path):
        return "mbox"
    return "maildir"


def _marker(account: str, uid: str) -> str:
    digest = hashlib.sha256(f"{account}\n{uid}".encode("utf-8", "surrogatepass")).hexdigest()
    return digest[:_MARKER_LEN]


class Writer:
    """One message being received into a destination."""

    def __init__(self, account: str, uid: str | None) -> None:
        self.account = account
        self.uid = uid
        self.size = 0  # octets received (before conversion)

    def write(self, data: bytes) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError


class _MaildirWriter(Writer):
    def __init__(self, account: str, uid: str | None, tmp_path: str, name: str) -> None:
        super().__init__(account, uid)
        self.tmp_path = tmp_path
        self.name = name
        self.converter = LineEndConverter()
        try:
            fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            raise storage_error("cannot create a message file", exc) from None
        self.file: IO[bytes] | None = os.fdopen(fd, "wb")

    def write(self, data: bytes) -> None:
        assert self.file is not None
        self.size += len(data)
        try:
            self.file.write(self.converter.feed(data))
        except OSError as exc:
            raise storage_error("cannot write the message file", exc) from None

    def finish(self, durable: bool) -> None:
        file, self.file = self.file, None
        assert file is not None
        try:
            with file:
                file.write(self.converter.end())
                file.flush()
                if durable:
                    os.fsync(file.fileno())
        except OSError as exc:
            raise storage_error("cannot write the message file", exc) from None

    def abort(self) -> None:
        file, self.file = self.file, None
        if file is not None:
            with contextlib.suppress(OSError):
                file.close()
        with contextlib.suppress(OSError):
            os.unlink(self.tmp_path)


class MaildirDestination:
    """A Maildir (``cur``, ``new``, ``tmp``), created if missing."""

    kind: Final = "maildir"

    def __init__(self, path: str, *, durable: bool) -> None:
        self.path = path
        self.durable = durable
        self._counter = 0
        host = socket.gethostname() or "localhost"
        # The usual Maildir escapes for '/' and ':', and ',' which separates
        # our marker field.
        self._host = host.replace("/", r"\057").replace(":", r"\072").replace(",", r"\054")
        try:
            for sub in ("cur", "new", "tmp"):
                os.makedirs(os.path.join(path, sub), mode=0o700, exist_ok=True)
        except OSError as exc:
            raise storage_error("cannot create the Maildir", exc) from None
        self._clean_tmp()

    def _clean_tmp(self) -> None:
        tmp = os.path.join(self.path, "tmp")
        now = time.time()
        with contextlib.suppress(OSError), os.scandir(tmp) as entries:
            for entry in entries:
                if _MARKER_RE.search(entry.name) is None:
                    continue
                with contextlib.suppress(OSError):
                    if now - entry.stat().st_mtime > _TMP_MAX_AGE:
                        os.unlink(entry.path)

    def resolve_intent(self, is_recorded: Callable[[str, str], bool]) -> tuple[str, str] | None:
        """Nothing to resolve: Maildir deliveries are found by their marker."""
        return None

    def already_stored(self, account: str, uids: Iterable[str]) -> set[str]:
        """Which of *uids* are in ``new/`` or ``cur/`` already (stored by an
        interrupted run before it could record them)."""
        wanted = {_marker(account, uid): uid for uid in uids}
        if not wanted:
            return set()
        found: set[str] = set()
        for sub in ("new", "cur"):
            try:
                names = os.listdir(os.path.join(self.path, sub))
            except OSError as exc:
                raise storage_error("cannot read the Maildir", exc) from None
            for name in names:
                match = _MARKER_RE.search(name.split(":", 1)[0])
                if match is not None and match.group(1) in wanted:
                    found.add(wanted[match.group(1)])
        return found

    def begin(self, account: str, uid: str | None) -> _MaildirWriter:
        """Start receiving one message into ``tmp/``."""
        now = time.time()
        self._counter += 1
        name = f"{int(now)}.M{int(now % 1 * 1e6)}P{os.getpid()}Q{self._counter}.{self._host}"
        if uid is not None:
            name += f",P3={_marker(account, uid)}"
        return _MaildirWriter(account, uid, os.path.join(self.path, "tmp", name), name)

    def store(self, writer: Writer) -> None:
        """Make the message durable and visible: fsync, rename into ``new/``."""
        assert isinstance(writer, _MaildirWriter)
        writer.finish(self.durable)
        target = os.path.join(self.path, "new", writer.name)
        try:
            os.rename(writer.tmp_path, target)
            if self.durable:
                _fsync_dir(os.path.join(self.path, "new"))
        except OSError as exc:
            writer.abort()
            raise storage_error("cannot move the message into new/", exc) from None

    def recorded(self) -> None:
        """The message stored last is in the state file (nothing to do)."""

    def close(self) -> None:
        """Nothing is held open."""

    @property
    def description(self) -> str:
        """For messages: the path and kind."""
        return f"{self.path} (Maildir)"


class _MboxWriter(Writer):
    def __init__(self, account: str, uid: str | None, directory: str) -> None:
        super().__init__(account, uid)
        self.converter = LineEndConverter(mboxrd=True)
        # Closed by abort(), once the message is appended or given up.
        self.spool: IO[bytes] | None = tempfile.SpooledTemporaryFile(  # noqa: SIM115
            max_size=_SPOOL_IN_MEMORY, dir=directory
        )
        self.length = 0
        self.last = b""
        self.header = bytearray()  # the first octets, for Return-Path

    def _put(self, data: bytes) -> None:
        if not data:
            return
        assert self.spool is not None
        if len(self.header) < _CHUNK:
            self.header += data[: _CHUNK - len(self.header)]
        try:
            self.spool.write(data)
        except OSError as exc:
            raise storage_error("cannot spool the message", exc) from None
        self.length += len(data)
        self.last = data[-1:]

    def write(self, data: bytes) -> None:
        self.size += len(data)
        self._put(self.converter.feed(data))

    def finish(self) -> None:
        self._put(self.converter.end())
        if self.last != b"\n":
            self._put(b"\n")  # a message must end with a line end in an mbox
        self._put(b"\n")  # the empty line before the next From line

    def sender(self) -> str:
        head = bytes(self.header)
        end = head.find(b"\n\n")
        if end >= 0:
            head = head[:end]
        # Header names are case-insensitive; '>' quoting cannot apply here.
        match = re.search(rb"(?im)^return-path:[ \t]*<?([^<>\s]*)>?", head)
        if match is None or not match.group(1):
            return "MAILER-DAEMON"
        return match.group(1).decode("latin-1")

    def chunks(self) -> Iterator[bytes]:
        assert self.spool is not None
        self.spool.seek(0)
        while chunk := self.spool.read(_CHUNK):
            yield chunk

    def abort(self) -> None:
        spool, self.spool = self.spool, None
        if spool is not None:
            with contextlib.suppress(OSError):
                spool.close()


class MboxDestination:
    """An mbox file (mboxrd), created if missing; see the module docstring."""

    kind: Final = "mbox"

    def __init__(self, path: str, *, durable: bool, intent_path: str) -> None:
        self.path = path
        self.durable = durable
        self.intent_path = intent_path
        directory = os.path.dirname(os.path.abspath(path))
        self.directory = directory
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        except OSError as exc:
            raise storage_error("cannot open the mbox", exc) from None

    def close(self) -> None:
        """Close the mbox."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    @property
    def description(self) -> str:
        """For messages: the path and kind."""
        return f"{self.path} (mbox)"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # fcntl locks are what MDAs and MUAs use for mboxes; wait a while
        # for a mail reader that is rewriting the file.
        deadline = time.monotonic() + _MBOX_LOCK_WAIT
        while True:
            try:
                fcntl.lockf(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except (BlockingIOError, PermissionError):
                if time.monotonic() > deadline:
                    raise StorageError(
                        f"the mbox {self.path} stays locked by another program"
                    ) from None
                time.sleep(0.1)
            except OSError as exc:  # pragma: no cover - ENOLCK and the like, from NFS
                raise storage_error("cannot lock the mbox", exc) from None
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                fcntl.lockf(self._fd, fcntl.LOCK_UN)

    def _read_at(self, offset: int, length: int) -> bytes:
        return os.pread(self._fd, length, offset)

    def _digest(self, offset: int, length: int) -> str:
        digest = hashlib.sha256()
        position, end = offset, offset + length
        while position < end:
            chunk = self._read_at(position, min(_CHUNK, end - position))
            if not chunk:  # pragma: no cover - the caller checked the size under the lock
                break
            digest.update(chunk)
            position += len(chunk)
        return digest.hexdigest()

    def already_stored(self, account: str, uids: Iterable[str]) -> set[str]:
        """Nothing: an mbox append in progress is found by :meth:`resolve_intent`."""
        return set()

    def begin(self, account: str, uid: str | None) -> _MboxWriter:
        """Start receiving one message into a spool."""
        return _MboxWriter(account, uid, self.directory)

    def _separator(self, size: int) -> bytes:
        # A From line must follow an empty line (or start the file).
        if size == 0:
            return b""
        tail = self._read_at(max(0, size - 2), 2)
        if tail == b"\n\n" or (size == 1 and tail == b"\n"):
            return b""
        return b"\n" if tail.endswith(b"\n") else b"\n\n"

    def store(self, writer: Writer) -> None:
        """Append the spooled message under the lock, announcing it first in
        the intent file; fsync."""
        assert isinstance(writer, _MboxWriter)
        writer.finish()
        from_line = f"From {writer.sender()} {time.asctime(time.gmtime())}\n".encode("latin-1")
        try:
            with self._locked():
                offset = os.fstat(self._fd).st_size
                head = self._separator(offset) + from_line
                digest = hashlib.sha256(head)
                for chunk in writer.chunks():
                    digest.update(chunk)
                length = len(head) + writer.length
                if writer.uid is not None:
                    intent = {
                        "account": writer.account,
                        "uid": writer.uid,
                        "offset": offset,
                        "length": length,
                        "sha256": digest.hexdigest(),
                        "head": head.decode("latin-1"),
                    }
                    write_atomic(
                        self.intent_path,
                        json.dumps(intent).encode("ascii"),
                        durable=self.durable,
                    )
                _write_all(self._fd, head)
                for chunk in writer.chunks():
                    _write_all(self._fd, chunk)
                if self.durable:
                    os.fsync(self._fd)
        except StorageError:
            raise  # from _locked(), worded already
        except OSError as exc:
            raise storage_error("cannot append to the mbox", exc) from None
        finally:
            writer.abort()

    def recorded(self) -> None:
        """The message appended last is in the state file: drop the intent."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.intent_path)

    def resolve_intent(self, is_recorded: Callable[[str, str], bool]) -> tuple[str, str] | None:
        """Settle an append announced by an interrupted run.

        Returns ``(account, uid)`` if that message is completely in the
        mbox but not recorded yet (``is_recorded(account, uid)`` is false):
        record it.  Else ``None``: it is recorded already (the run stopped
        just before removing the intent), or it will be fetched again; a
        partial copy at the very end of the file is truncated away.
        """
        try:
            with open(self.intent_path, "rb") as f:
                intent = json.loads(f.read().decode("ascii"))
            account, uid = str(intent["account"]), str(intent["uid"])
            offset, length = int(intent["offset"]), int(intent["length"])
            expected, head = str(intent["sha256"]), str(intent["head"]).encode("latin-1")
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            self.recorded()
            return None
        if is_recorded(account, uid):
            self.recorded()
            return None
        result: tuple[str, str] | None = None
        with self._locked():
            size = os.fstat(self._fd).st_size
            tail = b""
            if offset < size < offset + length:
                tail = self._read_at(offset, size - offset)
            if size >= offset + length and self._digest(offset, length) == expected:
                result = (account, uid)
            elif size == offset:
                pass  # nothing of it reached the file
            elif head.startswith(tail) or (
                tail.startswith(head) and b"\nFrom " not in tail[len(head) - 1 :]
            ):
                # A prefix of ours, and nothing after it: mboxrd quoting
                # means no line of ours but the first starts with "From ".
                os.ftruncate(self._fd, offset)
                if self.durable:
                    os.fsync(self._fd)
                print(
                    f"pop3proto fetch: removed a partial message from the end of {self.path} "
                    "(interrupted run); it is fetched again",
                    file=sys.stderr,
                )
            else:
                print(
                    f"pop3proto fetch: warning: {self.path} changed after an interrupted "
                    f"append at offset {offset}; a message may appear twice or truncated there",
                    file=sys.stderr,
                )
        self.recorded()
        return result


Destination = MaildirDestination | MboxDestination

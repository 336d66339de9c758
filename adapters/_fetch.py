"""``pop3proto fetch``: download mail into a Maildir or an mbox.

The command (see ``pop3proto fetch --help``) logs in with the blocking
:class:`~pop3proto.adapters.sync.Client`, lists the maildrop, picks the
messages whose UIDL unique-id it has not stored before and retrieves them
in one pipelined batch (:meth:`Client.retrieve_many_into`), streaming each
one to disk as it arrives.  :func:`fetch` is the same thing as a function
(the demo uses it).

Storage
-------
Messages are stored as the server sent them (the engine has already
removed the dot-stuffing), with every CRLF turned into LF, which is what
Maildir and mbox readers expect; a lone CR or LF is kept.

* **Maildir**: the message is written to ``tmp/``, fsync'ed, renamed into
  ``new/`` and the directory fsync'ed.  The file name follows the usual
  ``TIME.MUSECPPIDQN.HOST`` pattern plus ``,P3=HASH``, where HASH is the
  first 24 hex digits of SHA-256 over ``"user@host\\nUID"``.
* **mbox** (mboxrd): ``From SENDER DATE`` (SENDER from ``Return-Path``,
  else ``MAILER-DAEMON``; DATE the UTC arrival time as :func:`time.asctime`
  writes it), the message with one ``>`` added in front of every line that
  matches ``^>*From `` (so that readers can undo it exactly), a LF if the
  message did not end with one, then an empty line.  If the mbox does not
  already end with an empty line, LFs are added first so that the ``From``
  line follows one.  The message is received into a temporary spool first
  and appended with the mbox locked (:func:`fcntl.lockf`), then fsync'ed.

Crash safety
------------
The state file (``DEST.uidl`` by default) maps each account
(``user@host``) to the unique-ids already stored.  After each message
is durably stored, its unique-id is added and the file rewritten
atomically (temporary file, fsync, :func:`os.replace`, fsync of the
directory).  So an interruption at any point (Ctrl-C, ``kill -9``, a lost
connection; with ``--fsync``, the default, also a power cut) never loses a
message: one stored but not recorded yet is recognised on the next run,
also without duplicating it:

* in a Maildir by the ``,P3=HASH`` in its file name (looked up in ``new/``
  and ``cur/``);
* in an mbox by an *intent* file (``DEST.uidl.intent``), written
  atomically before each append with the offset, length and SHA-256 of
  what is about to be appended.  On the next run a complete append is
  recorded, and a partial one (a prefix of ours at the end of the file,
  with no other message after it) is truncated away and fetched again.

Deletion (``--delete``) is sent only for messages stored and recorded, and
the server removes them only when QUIT succeeds at the end of the run; an
interrupted run deletes nothing (RFC 1939 §6).

Servers without UIDL
--------------------
If ``UIDL`` is answered ``-ERR``, messages cannot be told apart across
sessions: every run fetches every message (or the first ``--limit``), and
the state file is not used.  Combine with ``--delete``.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import getpass
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import ssl
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from types import FrameType
from typing import IO, Any, Final, Literal
from urllib.parse import quote, unquote, urlsplit

from .cli import (
    EXIT_FAILURE,
    EXIT_LOCAL,
    EXIT_OK,
    EXIT_USAGE,
    LOGIN_METHODS,
    CLIError,
    Terminated,
    describe_error,
)
from .client._base import DEFAULT_WINDOW
from .client._errors import CommandFailed, POP3Error
from .sync import Client, TLSMode

__all__ = [
    "Account",
    "parse_url",
    "LineEndConverter",
    "FetchOptions",
    "FetchResult",
    "fetch",
    "run_fetch_command",
    "destination_kind",
    "default_state_path",
    "read_mboxrd",
]

_CHUNK: Final = 1 << 16
_SPOOL_IN_MEMORY: Final = 8 << 20
_STATE_VERSION: Final = 1
_MARKER_LEN: Final = 24
_MARKER_RE: Final = re.compile(rf",P3=([0-9a-f]{{{_MARKER_LEN}}})(?:,|$)")
# Maildir readers delete stray tmp/ files after 36 hours; ours too.
_TMP_MAX_AGE: Final = 36 * 3600
_MBOX_LOCK_WAIT: Final = 30.0

# ---------------------------------------------------------------------------
# The account URL and the password
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Account:
    """Where to fetch from: ``pop3[s]://USER@HOST[:PORT]``.

    Attributes:
        scheme: ``"pop3"`` or ``"pop3s"``.
        user: the user name (percent-decoded).
        host: the host name or address (IPv6 without brackets).
        port: the port (110 for pop3, 995 for pop3s by default).
        mechanism: a login method named in the URL (``;AUTH=MECH``), or None.
    """

    scheme: str
    user: str
    host: str
    port: int
    mechanism: str | None = None

    @property
    def hostport(self) -> str:
        """``host:port`` (IPv6 hosts in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def key(self) -> str:
        """The account's name in the state file: ``user@host``.

        Without the port: ``pop3://`` and ``pop3s://`` (110 and 995) reach
        the same maildrop, whose unique-ids do not depend on the way in.
        """
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.user}@{host.lower()}"

    def __str__(self) -> str:
        return f"{self.scheme}://{quote(self.user, safe='')}@{self.hostport}"


def parse_url(url: str) -> Account:
    """Parse ``pop3://USER@HOST[:PORT]`` or ``pop3s://...`` (RFC 2384 style).

    ``;AUTH=MECH`` after the user name picks a login method (``*`` = any).
    A password in the URL is refused: command lines are visible to other
    users of the machine.  Raises :class:`CLIError` (usage) when invalid.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("pop3", "pop3s"):
        raise CLIError(
            f"unsupported URL {url!r}: use pop3://USER@HOST[:PORT] or pop3s://USER@HOST[:PORT]",
            EXIT_USAGE,
        )
    if parts.password is not None:
        raise CLIError(
            "do not put the password in the URL (other users can see command lines); use "
            "--password-env, --password-file or the prompt",
            EXIT_USAGE,
        )
    if not parts.username:
        raise CLIError(f"the URL must name the user: {scheme}://USER@HOST", EXIT_USAGE)
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise CLIError(f"unexpected path or query in {url!r}", EXIT_USAGE)
    host = parts.hostname
    if not host:
        raise CLIError(f"the URL must name the host: {scheme}://USER@HOST", EXIT_USAGE)
    try:
        port = parts.port
    except ValueError:
        raise CLIError(f"invalid port in {url!r}", EXIT_USAGE) from None
    user_part, _, params = parts.username.partition(";")
    mechanism: str | None = None
    if params:
        name, eq, value = params.partition("=")
        if name.lower() != "auth" or not eq or not value:
            raise CLIError(f"unknown URL parameter ;{params}", EXIT_USAGE)
        value = unquote(value).upper()
        if value == "+APOP":  # RFC 2384's name for APOP
            value = "APOP"
        if value != "*":  # "*": any method
            if value not in LOGIN_METHODS:
                raise CLIError(
                    f"unknown login method {value!r} in the URL; use one of "
                    + ", ".join(LOGIN_METHODS),
                    EXIT_USAGE,
                )
            mechanism = value
    user = unquote(user_part)
    if not user:
        raise CLIError("the user name in the URL is empty", EXIT_USAGE)
    if port is None:
        port = 995 if scheme == "pop3s" else 110
    return Account(scheme, user, host, port, mechanism)


def read_password(
    *, env: str | None, file: str | None, account: Account, stdin: IO[str] | None = None
) -> str:
    """The password from ``--password-env``, ``--password-file`` or a prompt.

    The prompt (:func:`getpass.getpass`) is used only when stdin is a
    terminal; otherwise, with neither option, :class:`CLIError` is raised.
    """
    if env is not None:
        value = os.environ.get(env)
        if value is None:
            raise CLIError(f"--password-env: the environment variable {env} is not set", EXIT_USAGE)
        if not value:
            raise CLIError(f"--password-env: the environment variable {env} is empty", EXIT_USAGE)
        return value
    if file is not None:
        try:
            with open(file, encoding="utf-8") as f:
                line = f.readline()
        except OSError as exc:
            raise CLIError(
                f"cannot read the password file {file}: {exc.strerror}", EXIT_USAGE
            ) from None
        except UnicodeDecodeError:
            raise CLIError(f"the password file {file} is not UTF-8", EXIT_USAGE) from None
        value = line.rstrip("\r\n")
        if not value:
            raise CLIError(f"the password file {file} starts with an empty line", EXIT_USAGE)
        return value
    tty = stdin if stdin is not None else sys.stdin
    if tty is None or not tty.isatty():
        raise CLIError(
            "no password: use --password-env VAR or --password-file FILE (or run on a "
            "terminal to be prompted)",
            EXIT_USAGE,
        )
    try:
        value = getpass.getpass(f"Password for {account.key}: ")
    except EOFError:
        value = ""
    if not value:
        raise CLIError("no password given", EXIT_USAGE)
    return value


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
    except OSError:
        pass  # some file systems cannot sync directories; nothing better to do
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _write_atomic(path: str, data: bytes, *, durable: bool) -> None:
    """Replace *path* by *data*: write a temporary file, fsync, rename, fsync
    the directory.  The temporary name is fixed: callers hold the state lock."""
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        _write_all(fd, data)
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    if durable:
        _fsync_dir(os.path.dirname(path))


class LocalError(CLIError):
    """The destination or the state file cannot be written (exit code 7)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_LOCAL)


def _local(what: str, exc: OSError) -> LocalError:
    name = f" {exc.filename}" if exc.filename else ""
    return LocalError(f"{what}{name}: {exc.strerror or exc}")


# ---------------------------------------------------------------------------
# The state file
# ---------------------------------------------------------------------------


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
            fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise _local("cannot create the lock file", exc) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise CLIError(
                f"another pop3proto fetch is writing with the state file {self.path}",
                EXIT_FAILURE,
            ) from None
        self._lock_fd = fd

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
            raise _local("cannot read the state file", exc) from None
        try:
            data = json.loads(raw.decode("utf-8"))
            if data.get("version") != _STATE_VERSION:
                raise ValueError("unknown version")
            accounts = data["accounts"]
            self._accounts = {
                str(key): {str(uid): None for uid in uids} for key, uids in accounts.items()
            }
        except (ValueError, KeyError, TypeError, AttributeError):
            raise LocalError(
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
            _write_atomic(self.path, text.encode("ascii"), durable=self.durable)
        except OSError as exc:
            raise _local("cannot write the state file", exc) from None


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


def default_state_path(destination: str) -> str:
    """``DEST.uidl`` beside the destination."""
    absolute = os.path.abspath(destination)
    if absolute == os.path.dirname(absolute):
        raise CLIError(f"--to {destination}: cannot store mail in the root directory", EXIT_USAGE)
    return absolute.rstrip(os.sep) + ".uidl"


def _marker(account: str, uid: str) -> str:
    digest = hashlib.sha256(f"{account}\n{uid}".encode("utf-8", "surrogatepass")).hexdigest()
    return digest[:_MARKER_LEN]


class _Writer:
    """One message being received into a destination."""

    def __init__(self, account: str, uid: str | None) -> None:
        self.account = account
        self.uid = uid
        self.size = 0  # octets received (before conversion)

    def write(self, data: bytes) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError


class _MaildirWriter(_Writer):
    def __init__(self, account: str, uid: str | None, tmp_path: str, name: str) -> None:
        super().__init__(account, uid)
        self.tmp_path = tmp_path
        self.name = name
        self.converter = LineEndConverter()
        try:
            fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            raise _local("cannot create a message file", exc) from None
        self.file: IO[bytes] | None = os.fdopen(fd, "wb")

    def write(self, data: bytes) -> None:
        assert self.file is not None
        self.size += len(data)
        try:
            self.file.write(self.converter.feed(data))
        except OSError as exc:
            raise _local("cannot write the message file", exc) from None

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
            raise _local("cannot write the message file", exc) from None

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
            raise _local("cannot create the Maildir", exc) from None
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
                raise _local("cannot read the Maildir", exc) from None
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

    def store(self, writer: _Writer) -> None:
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
            raise _local("cannot move the message into new/", exc) from None

    def recorded(self) -> None:
        """The message stored last is in the state file (nothing to do)."""

    def close(self) -> None:
        """Nothing is held open."""

    @property
    def description(self) -> str:
        """For messages: the path and kind."""
        return f"{self.path} (Maildir)"


class _MboxWriter(_Writer):
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
            raise _local("cannot spool the message", exc) from None
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
            raise _local("cannot open the mbox", exc) from None

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
                    raise LocalError(
                        f"the mbox {self.path} stays locked by another program"
                    ) from None
                time.sleep(0.1)
            except OSError as exc:
                raise _local("cannot lock the mbox", exc) from None
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
            if not chunk:
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

    def store(self, writer: _Writer) -> None:
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
                    _write_atomic(
                        self.intent_path,
                        json.dumps(intent).encode("ascii"),
                        durable=self.durable,
                    )
                _write_all(self._fd, head)
                for chunk in writer.chunks():
                    _write_all(self._fd, chunk)
                if self.durable:
                    os.fsync(self._fd)
        except OSError as exc:
            raise _local("cannot append to the mbox", exc) from None
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


# ---------------------------------------------------------------------------
# Progress
# ---------------------------------------------------------------------------


def _format_bytes(count: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} GB"  # pragma: no cover


def _format_duration(seconds: float) -> str:
    seconds = max(0, int(seconds + 0.5))
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    """A one-line progress bar on a terminal: messages, octets, rate, ETA."""

    def __init__(self, stream: IO[str], messages: int, octets: int, *, enabled: bool) -> None:
        self.stream = stream
        self.messages = messages
        self.octets = max(octets, 1)
        self.enabled = enabled and messages > 0
        self.done_messages = 0
        self.done_octets = 0
        self.start = time.monotonic()
        self._last_draw = 0.0
        self._width = 0

    def add(self, octets: int) -> None:
        """Octets received."""
        self.done_octets += octets
        self._maybe_draw()

    def message_done(self) -> None:
        """One more message stored."""
        self.done_messages += 1
        self._maybe_draw()

    def _maybe_draw(self) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last_draw >= 0.1:
            self._last_draw = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        elapsed = max(now - self.start, 1e-6)
        rate = self.done_octets / elapsed
        left = max(self.octets - self.done_octets, 0)
        eta = _format_duration(left / rate) if rate > 0 else "-:--"
        text = (
            f" {self.done_messages}/{self.messages} msgs  "
            f"{_format_bytes(self.done_octets)}/{_format_bytes(self.octets)}  "
            f"{_format_bytes(rate)}/s  ETA {eta}"
        )
        columns = shutil.get_terminal_size((80, 24)).columns
        bar_width = max(10, min(40, columns - len(text) - 4))
        filled = int(bar_width * min(self.done_octets / self.octets, 1.0))
        line = f"[{'#' * filled}{'.' * (bar_width - filled)}]{text}"[: columns - 1]
        pad = " " * max(0, self._width - len(line))
        self._width = len(line)
        self.stream.write(f"\r{line}{pad}")
        self.stream.flush()

    def finish(self) -> None:
        """Draw the final state and end the line."""
        if self.enabled:
            self._draw(time.monotonic())
            self.stream.write("\n")
            self.stream.flush()


# ---------------------------------------------------------------------------
# fetch
# ---------------------------------------------------------------------------


@dataclass
class FetchOptions:
    """What :func:`fetch` does; the command line builds one from its options.

    Attributes mirror the ``pop3proto fetch`` options; *ssl_context*, when
    given, replaces the context built from *cafile*; *progress* ``None``
    shows the bar only when *out* is a terminal.
    """

    account: Account
    password: str
    destination: str
    kind: Literal["maildir", "mbox"] | None = None
    state_path: str | None = None
    tls: TLSMode | None = None
    cafile: str | None = None
    ssl_context: ssl.SSLContext | None = None
    mechanism: str | None = None
    insecure_auth: bool = False
    fetch_all: bool = False
    delete: bool = False
    limit: int | None = None
    durable: bool = True
    timeout: float = 60.0
    window: int = DEFAULT_WINDOW
    progress: bool | None = None
    quiet: bool = False


@dataclass
class FetchResult:
    """What :func:`fetch` did.

    Attributes:
        listed: messages in the maildrop.
        new: messages selected for retrieval (after ``--limit``).
        stored: message numbers stored this run, in order.
        recovered: numbers found already stored by an interrupted run.
        failed: numbers whose RETR got ``-ERR``.
        octets: octets received (as the server sent them).
        deleted: messages removed by the server (0 unless ``--delete``
            and QUIT succeeded).
        uidl: whether the server supports UIDL.
        elapsed: seconds from connecting to QUIT.
        login_method: how the client logged in.
        tls: whether the session was encrypted.
    """

    listed: int = 0
    new: int = 0
    stored: list[int] = field(default_factory=list)
    recovered: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    octets: int = 0
    deleted: int = 0
    uidl: bool = True
    elapsed: float = 0.0
    login_method: str = ""
    tls: bool = False


def _client_context(options: FetchOptions) -> ssl.SSLContext | None:
    if options.ssl_context is not None:
        return options.ssl_context
    if options.cafile is None:
        return None  # the client's default: system CAs, host name checked
    try:
        return ssl.create_default_context(cafile=options.cafile)
    except (OSError, ssl.SSLError) as exc:
        raise CLIError(
            f"cannot load --cafile {options.cafile}: {getattr(exc, 'strerror', None) or exc}",
            EXIT_USAGE,
        ) from None


def _open_destination(options: FetchOptions, state_path: str) -> Destination:
    kind = options.kind or destination_kind(options.destination)
    if kind == "mbox":
        return MboxDestination(
            options.destination, durable=options.durable, intent_path=f"{state_path}.intent"
        )
    return MaildirDestination(options.destination, durable=options.durable)


def fetch(options: FetchOptions, *, out: IO[str] | None = None) -> FetchResult:
    """Download new messages as *options* says; see the module docstring.

    Raises :class:`CLIError` for local problems and the client's exceptions
    (:class:`POP3Error`, :class:`OSError`) for network and server ones.
    Whatever happens, what was stored stays stored and recorded.
    """
    stream = out if out is not None else sys.stderr
    account = options.account
    key = account.key
    state_path = options.state_path or default_state_path(options.destination)
    tls: TLSMode = options.tls or ("implicit" if account.scheme == "pop3s" else "starttls")
    context = _client_context(options) if tls != "none" else None
    result = FetchResult()
    state = StateFile(state_path, durable=options.durable)
    state_dir = os.path.dirname(state_path)
    try:
        os.makedirs(state_dir, mode=0o700, exist_ok=True)
    except OSError as exc:
        raise _local("cannot create the directory of the state file", exc) from None
    state.lock()
    destination: Destination | None = None
    writer: _Writer | None = None
    progress: Progress | None = None
    started = time.monotonic()
    try:
        state.load()
        destination = _open_destination(options, state_path)
        # An mbox append that an interrupted run announced but did not record.
        settled = destination.resolve_intent(state.has)
        settled_uids: set[str] = set()
        if settled is not None:
            state.add(*settled)
            if settled[0] == key:
                settled_uids.add(settled[1])
        with Client(
            account.host,
            account.port,
            tls=tls,
            ssl_context=context,
            timeout=options.timeout,
            window=options.window,
        ) as client:
            try:
                result.login_method = client.login(
                    account.user,
                    options.password,
                    mechanism=options.mechanism or account.mechanism,
                    allow_insecure=options.insecure_auth,
                )
            except ValueError as exc:
                # Credentials the protocol cannot carry (too long, or
                # non-ASCII to a server without UTF8); the message names
                # the problem, never the value.
                raise CLIError(f"cannot log in as {key}: {exc}", EXIT_USAGE) from None
            result.tls = client.tls
            sizes = client.list()
            numbers = sorted(sizes)
            result.listed = len(numbers)
            uids: dict[int, str] | None
            try:
                uids = client.uidl()
            except CommandFailed:
                uids = None
            result.uidl = uids is not None
            if uids is not None:
                on_server = set(uids.values())
                seen = state.uids(key)
                # Forget what the server no longer has (unique-ids are never
                # reused, RFC 1939 §7), so the file does not grow for ever.
                kept = seen & on_server
                unseen = {uids[n] for n in numbers if n in uids and uids[n] not in seen}
                found = destination.already_stored(key, unseen)
                if found or kept != seen:
                    state.replace(key, [*sorted(kept), *sorted(found)])
                    state.save()
                seen = kept | found
                recovered = found | (settled_uids & on_server)
                result.recovered = [n for n in numbers if uids.get(n) in recovered]
                if options.fetch_all:
                    todo = list(numbers)
                else:
                    todo = [n for n in numbers if uids.get(n) not in seen]
            else:
                todo = list(numbers)
            if options.limit is not None:
                todo = todo[: options.limit]
            result.new = len(todo)
            show = options.progress
            if show is None:
                show = stream.isatty() and not options.quiet
            progress = Progress(stream, len(todo), sum(sizes[n] for n in todo), enabled=show)

            current: list[_Writer | None] = [None]

            def sink(number: int, chunk: bytes) -> None:
                active = current[0]
                if active is None:
                    uid = uids.get(number) if uids is not None else None
                    active = destination.begin(key, uid)
                    current[0] = active
                if chunk:
                    active.write(chunk)
                    result.octets += len(chunk)
                    assert progress is not None
                    progress.add(len(chunk))
                    return
                # The end of the message: store it, then record it.
                current[0] = None
                try:
                    destination.store(active)
                except BaseException:
                    active.abort()
                    raise
                if active.uid is not None:
                    state.add(key, active.uid)
                    destination.recorded()
                result.stored.append(number)
                assert progress is not None
                progress.message_done()

            remaining = todo
            try:
                while remaining:
                    try:
                        client.retrieve_many_into(remaining, sink)
                        remaining = []
                    except POP3Error as exc:
                        # A -ERR for one message (it vanished, or cannot be
                        # read right now): note it and go on with the rest.
                        command = exc.command or ""
                        if exc.response is None or not command.startswith("RETR "):
                            raise
                        number = int(command.split()[1])
                        result.failed.append(number)
                        print(f"pop3proto fetch: warning: {exc}", file=stream)
                        remaining = remaining[remaining.index(number) + 1 :]
                        current[0] = None
            finally:
                writer = current[0]
                progress.finish()
            if options.delete:
                doomed = sorted({*result.stored, *result.recovered})
                client.delete_many(doomed)
            committed = client.quit()
            if options.delete and committed:
                result.deleted = len({*result.stored, *result.recovered})
    finally:
        if writer is not None:
            writer.abort()
        if destination is not None:
            with contextlib.suppress(CLIError, OSError):
                # A store interrupted half-way is settled now rather than
                # on the next run.
                settled = destination.resolve_intent(state.has)
                if settled is not None:
                    state.add(*settled)
            destination.close()
        state.unlock()
        result.elapsed = time.monotonic() - started
    return result


def summary_line(result: FetchResult, options: FetchOptions) -> str:
    """The one-line report printed after a fetch."""
    stored = len(result.stored)
    rate = result.octets / result.elapsed if result.elapsed > 0 else 0.0
    who = f"{options.account.user}@{options.account.hostport}"
    parts = [
        f"{who}: {result.listed} listed, {result.new} to fetch, {stored} stored "
        f"({_format_bytes(result.octets)} in {result.elapsed:.2f} s, {_format_bytes(rate)}/s)"
    ]
    if result.recovered:
        parts.append(f"{len(result.recovered)} found stored by an interrupted run")
    if options.delete:
        parts.append(f"{result.deleted} deleted")
    if result.failed:
        parts.append(f"{len(result.failed)} failed")
    if not result.uidl:
        parts.append("no UIDL: fetched without memory")
    kind = options.kind or destination_kind(options.destination)
    return "; ".join(parts) + f" -> {options.destination} ({kind})"


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


def run_fetch_command(args: argparse.Namespace) -> int:
    """``pop3proto fetch``: build :class:`FetchOptions` from *args* and run."""
    account = parse_url(args.url)
    tls: TLSMode
    if account.scheme == "pop3s":
        if args.no_tls or args.starttls:
            raise CLIError("--starttls and --no-tls apply to pop3:// URLs only", EXIT_USAGE)
        tls = "implicit"
    else:
        tls = "none" if args.no_tls else "starttls"
    if args.insecure_auth and tls != "none":
        raise CLIError("--insecure-auth only makes sense with --no-tls", EXIT_USAGE)
    if args.cafile is not None and not os.path.isfile(args.cafile):
        raise CLIError(f"--cafile {args.cafile}: no such file", EXIT_USAGE)
    password = read_password(env=args.password_env, file=args.password_file, account=account)
    options = FetchOptions(
        account=account,
        password=password,
        destination=args.to,
        state_path=args.state,
        tls=tls,
        cafile=args.cafile,
        mechanism=args.auth,
        insecure_auth=args.insecure_auth,
        fetch_all=args.fetch_all,
        delete=args.delete,
        limit=args.limit,
        durable=args.fsync,
        timeout=args.timeout,
        quiet=args.quiet,
    )
    previous: Any = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        result = fetch(options)
    except (POP3Error, OSError) as exc:
        # Name the server in the message (the exceptions do not).
        code, message = describe_error(exc, f"{account.user}@{account.hostport}")
        raise CLIError(message, code) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    if not args.quiet:
        print(f"pop3proto fetch: {summary_line(result, options)}", file=sys.stderr)
    return EXIT_FAILURE if result.failed else EXIT_OK

"""``pop3proto passwd``: add a user to a users file, or change a password.

The password is read from a prompt (twice, without echo) or, with
``--stdin`` or when stdin is not a terminal, from the first line of stdin;
never from the command line, which other users of the machine can see.
It is stored hashed (:func:`~pop3proto.adapters.sync.hash_password`), by
default as ``{SCRAM-SHA-256}`` so that SCRAM logins work too.

The users file is rewritten atomically: a new file with a unique name is
created beside it (``O_EXCL``, mode 0600), written, fsync'ed and renamed
over the old one, so a reader (a running ``serve``) sees the old or the new
file, never half of one.  The rest of the file (comments, other users) is
kept as it was.  Without ``--users`` the entry is printed on stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import os
import sys
import tempfile
import unicodedata
from typing import IO

from ..mailstore._users import UsersFile, hash_password
from ._common import EXIT_LOCAL, EXIT_OK, EXIT_USAGE, CLIError, usage_error

__all__ = ["run_passwd_command", "read_new_password", "check_user_name", "set_user"]

_SCHEMES = {"scram": "SCRAM-SHA-256", "pbkdf2": "PBKDF2-SHA256"}


def _control(text: str) -> bool:
    return any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in text)


def check_user_name(name: str) -> None:
    """Raise a usage :class:`CLIError` unless *name* can be a users-file name."""
    if not name or name != name.strip():
        usage_error("the user name must not be empty or start or end with a space")
    if ":" in name or name.startswith("#") or _control(name):
        usage_error("the user name must not contain ':' or control characters, nor start with '#'")


def read_new_password(*, from_stdin: bool, stdin: IO[str] | None = None) -> str:
    """The new password: the first line of stdin, or asked twice at a prompt."""
    source = stdin if stdin is not None else sys.stdin
    if from_stdin or source is None or not source.isatty():
        if source is None:
            usage_error("no password: stdin is closed")
        line = source.readline()
        password = line[:-1] if line.endswith("\n") else line
        if password.endswith("\r"):
            password = password[:-1]
    else:
        try:
            password = getpass.getpass("New password: ")
            again = getpass.getpass("Again: ")
        except EOFError:
            usage_error("no password given")
        if password != again:
            usage_error("the two passwords differ")
    if not password:
        usage_error("the password must not be empty")
    if _control(password):
        usage_error("the password must not contain control characters")
    return password


def set_user(path: str, name: str, stored: str) -> bool:
    """Put ``name:stored`` in the users file *path* (created if missing),
    replacing the line that defines *name*; return whether it was new.

    The file must be a valid users file already (it is not repaired).
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
            st = os.fstat(f.fileno())
        # Keep the owner; never widen the mode beyond 0600.
        mode = st.st_mode & 0o600 or 0o600
        owner: tuple[int, int] | None = (st.st_uid, st.st_gid)
    except FileNotFoundError:
        data, mode, owner = b"", 0o600, None
    except OSError as exc:
        raise CLIError(f"cannot read the users file {path}: {exc.strerror}", EXIT_LOCAL) from None
    try:
        text = data.decode("utf-8")
        UsersFile._parse_text(text, path)
    except UnicodeDecodeError:
        raise CLIError(f"{path}: not valid UTF-8; not changed", EXIT_USAGE) from None
    except ValueError as exc:
        raise CLIError(f"{exc}; not changed", EXIT_USAGE) from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    entry = f"{name}:{stored}"
    new = True
    for i, line in enumerate(lines):
        if line.lstrip().startswith("#"):
            continue
        key, sep, _ = line.partition(":")
        if sep and key.strip() == name:
            lines[i] = entry
            new = False
    if new:
        lines.append(entry)
    _replace(path, ("\n".join(lines) + "\n").encode("utf-8"), mode, owner)
    return new


def _replace(path: str, data: bytes, mode: int, owner: tuple[int, int] | None) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path)
    try:
        # mkstemp: a unique name opened with O_EXCL, mode 0600; a link
        # planted under a guessable name cannot redirect the write.
        fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise CLIError(f"cannot write beside {path}: {exc.strerror}", EXIT_LOCAL) from None
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            if owner is not None and os.geteuid() == 0:
                os.fchown(f.fileno(), *owner)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise CLIError(f"cannot write the users file {path}: {exc.strerror}", EXIT_LOCAL) from None


def run_passwd_command(args: argparse.Namespace) -> int:
    """``pop3proto passwd``: see the module docstring."""
    check_user_name(args.user)
    password = read_new_password(from_stdin=args.stdin)
    # The arguments are valid by now (argparse checked the scheme and the
    # iterations, read_new_password the password): this cannot fail.
    stored = hash_password(password, scheme=_SCHEMES[args.scheme], iterations=args.iterations)
    if args.users is None:
        print(f"{args.user}:{stored}")
        return EXIT_OK
    new = set_user(args.users, args.user, stored)
    what = "added" if new else "changed the password of"
    print(f"pop3proto passwd: {what} {args.user} in {args.users}", file=sys.stderr)
    return EXIT_OK

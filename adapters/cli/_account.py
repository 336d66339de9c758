"""Whom ``pop3proto fetch`` logs in as: the account URL and the password.

:func:`parse_url` reads ``pop3[s]://USER@HOST[:PORT]`` (RFC 2384 style, with
``;AUTH=MECH`` to pick a login method) into an :class:`Account`;
:func:`read_password` takes the password from an environment variable, the
first line of a file or a terminal prompt, never from the URL or the
command line, which other users of the machine can see.
"""

from __future__ import annotations

import getpass
import os
import sys
from dataclasses import dataclass
from typing import IO
from urllib.parse import quote, unquote, urlsplit

from ..client._mechanisms import LOGIN_METHODS
from ._common import EXIT_USAGE, CLIError

__all__ = ["Account", "parse_url", "read_password"]


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
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - validated here, read below
    except ValueError as exc:
        # "Invalid IPv6 URL", a bad port, ...: one line, not a traceback.
        raise CLIError(f"invalid port or host in {url!r}: {exc}", EXIT_USAGE) from None
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
    port = parts.port
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

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
Maildir and mbox readers expect; a lone CR or LF is kept.  How a Maildir
and an mbox (mboxrd) are written is
:mod:`pop3proto.adapters.mailstore._destinations`; the state file is
:mod:`._statefile`, the account URL and password :mod:`._account`, the
progress line :mod:`._progress`.

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
import os
import ssl
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Literal

from ..client._base import DEFAULT_WINDOW
from ..client._errors import CommandFailed, POP3Error
from ..client._options import TLSMode
from ..client._sync import Client
from ..mailstore._destinations import (
    Destination,
    MaildirDestination,
    MboxDestination,
    Writer,
    destination_kind,
    storage_error,
)
from ._account import Account, parse_url, read_password
from ._common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    CLIError,
    describe_error,
    signals_raise,
)
from ._progress import Progress, format_bytes
from ._statefile import StateFile, default_state_path

__all__ = ["FetchOptions", "FetchResult", "fetch", "summary_line", "run_fetch_command"]


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
    #: Log in with an OAuth 2.0 token instead of *password*: called once per
    #: connection, it returns the access token (``--oauth2-token-*``).
    oauth2_token: Callable[[], str] | None = None


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

    Raises :class:`CLIError` for bad options, :class:`StorageError` (an
    :class:`OSError`) when the destination or the state file cannot be
    written, and the client's exceptions (:class:`POP3Error`,
    :class:`OSError`) for network and server ones.
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
        raise storage_error("cannot create the directory of the state file", exc) from None
    state.lock()
    destination: Destination | None = None
    writer: Writer | None = None
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
                if options.oauth2_token is not None:
                    result.login_method = client.login_oauth2(
                        account.user,
                        options.oauth2_token(),
                        allow_insecure=options.insecure_auth,
                    )
                else:
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

            current: list[Writer | None] = [None]

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
        f"({format_bytes(result.octets)} in {result.elapsed:.2f} s, {format_bytes(rate)}/s)"
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


def run_fetch_command(args: argparse.Namespace) -> int:
    """``pop3proto fetch``: build :class:`FetchOptions` from *args* and run."""
    # Ctrl-C and SIGTERM end a fetch with exit 130 and 143 (what is stored
    # stays stored and recorded at any point), whatever handlers this
    # process inherited.
    with signals_raise(sigterm=True):
        return _run_fetch(args)


def _token_source(args: argparse.Namespace) -> Callable[[], str] | None:
    """How to get the token for each connection, or ``None`` for a password."""
    variable: str | None = getattr(args, "oauth2_token_env", None)
    command: str | None = getattr(args, "oauth2_token_cmd", None)
    if variable is None and command is None:
        return None
    from ._oauth2 import token_from_command, token_from_env

    if variable is not None:
        token_from_env(variable)  # fail early, before anything is opened
        return lambda: token_from_env(variable)
    assert command is not None
    return lambda: token_from_command(command)


def _run_fetch(args: argparse.Namespace) -> int:
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
    oauth2_token = _token_source(args)
    if oauth2_token is not None:
        if args.auth is not None or account.mechanism is not None:
            raise CLIError(
                "--auth and ;AUTH= choose a password method; with an OAuth 2.0 token the "
                "mechanism is OAUTHBEARER, else XOAUTH2, as the server offers",
                EXIT_USAGE,
            )
        password = ""
    else:
        password = read_password(env=args.password_env, file=args.password_file, account=account)
    options = FetchOptions(
        account=account,
        password=password,
        oauth2_token=oauth2_token,
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
    try:
        result = fetch(options)
    except (POP3Error, OSError) as exc:
        # Name the server in the message (the exceptions do not).
        code, message = describe_error(exc, f"{account.user}@{account.hostport}")
        raise CLIError(message, code) from None
    if not args.quiet:
        print(f"pop3proto fetch: {summary_line(result, options)}", file=sys.stderr)
    return EXIT_FAILURE if result.failed else EXIT_OK

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
import itertools
import os
import re
import ssl
import stat
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Final, Literal

from ..client._base import DEFAULT_WINDOW
from ..client._errors import AuthenticationFailed, CommandFailed, POP3Error
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
    EXIT_NETWORK,
    EXIT_OK,
    EXIT_SERVER,
    EXIT_TLS,
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
    max_size: int | None = None
    message_timeout: float | None = None


@dataclass
class FetchResult:
    """What :func:`fetch` did.

    Attributes:
        listed: messages in the maildrop.
        new: messages selected for retrieval (after ``--limit``).
        stored: message numbers stored this run, in order.
        recovered: numbers found already stored by an interrupted run.
        failed: numbers whose RETR got ``-ERR``.
        skipped: numbers not fetched because LIST gave them more than
            ``max_size`` octets.
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
    skipped: list[int] = field(default_factory=list)
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


#: How far a message may outgrow its LIST size before the transfer is cut:
#: twice the size (a server that counts LF line ends sends up to one more
#: octet per line) plus 64 KiB.
SIZE_MARGIN_FACTOR: Final = 2
SIZE_MARGIN_OCTETS: Final = 64 * 1024
#: The slowest transfer rate a message's default deadline allows for
#: (octets per second), on top of ``--timeout``.
MIN_RATE: Final = 16 * 1024


# How servers word a refused plaintext login: ours, Dovecot's ("Plaintext
# authentication disallowed on non-secure (SSL/TLS) connections"), and
# RFC 3206's [AUTH] texts that mention encryption.
_PLAINTEXT_REFUSED: Final = re.compile(r"plain ?text|\bssl\b|\btls\b|encrypt|secure", re.I)


def size_cap(listed: int, max_size: int | None) -> int:
    """The most octets accepted for a message LIST gave *listed* octets."""
    cap = listed * SIZE_MARGIN_FACTOR + SIZE_MARGIN_OCTETS
    return cap if max_size is None else min(cap, max_size)


def message_deadline(listed: int, options: FetchOptions) -> float:
    """Seconds a message of *listed* octets may take in all."""
    if options.message_timeout is not None:
        return options.message_timeout
    return options.timeout + listed / MIN_RATE


def _deadline_error(number: int, listed: int, options: FetchOptions) -> CLIError:
    allowed = message_deadline(listed, options)
    return CLIError(
        f"message {number} ({listed} octets) not received within {allowed:.1f} s "
        "(--message-timeout); stopped, the message is not stored",
        EXIT_NETWORK,
    )


#: How long a plain connection waits for the greeting: a POP3 server greets
#: at once, and a TLS port (``pop3://`` to 995 by mistake) never does.
GREETING_TIMEOUT: Final = 10.0


def _connect(options: FetchOptions, tls: TLSMode, context: ssl.SSLContext | None) -> Client:
    account = options.account
    wait = options.timeout if tls == "implicit" else min(options.timeout, GREETING_TIMEOUT)
    try:
        client = Client(
            account.host,
            account.port,
            tls=tls,
            ssl_context=context,
            timeout=wait,
            window=options.window,
        )
    except TimeoutError:
        if tls == "implicit":
            raise
        raise CLIError(
            f"no POP3 greeting or reply from {account.hostport} within {wait:g} s; if it "
            f"is an implicit-TLS port (POP3S, like 995), use pop3s://{account.hostport}",
            EXIT_NETWORK,
        ) from None
    except ssl.SSLError as exc:
        if tls != "implicit" or "WRONG_VERSION_NUMBER" not in str(exc.reason):
            raise
        raise CLIError(
            f"TLS error ({account.hostport}): {exc.reason}; if it is a plain POP3 port "
            f"(like 110), use pop3://{account.hostport}",
            EXIT_TLS,
        ) from None
    _set_timeout(client, options.timeout)
    return client


def _set_timeout(client: Client, seconds: float) -> None:
    sock = client.sock
    if sock is not None:
        sock.settimeout(max(seconds, 0.001))


def _check_mbox(path: str) -> None:
    """Refuse an existing file that is not an mbox: appending to it would
    corrupt whatever it is (a mistyped ``--to``)."""
    try:
        st = os.stat(path)
    except OSError:
        return  # created by MboxDestination, or its error says why not
    if not stat.S_ISREG(st.st_mode):
        raise CLIError(f"--to {path}: not a directory, an mbox or a new file name", EXIT_USAGE)
    if st.st_size == 0:
        return
    try:
        with open(path, "rb") as f:
            head = f.read(5)
    except OSError as exc:
        raise CLIError(f"--to {path}: cannot read it: {exc.strerror}", EXIT_USAGE) from None
    # An mbox starts with a From line (a first append cut short leaves a
    # prefix of one, which the intent file then settles).
    if not b"From ".startswith(head):
        raise CLIError(
            f"--to {path}: an existing file that is not an mbox (it does not start with "
            "'From '); not appending to it",
            EXIT_USAGE,
        )


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
    if (options.kind or destination_kind(options.destination)) == "mbox":
        _check_mbox(options.destination)  # before anything is created beside it
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
        with _connect(options, tls, context) as client:
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
            except AuthenticationFailed as exc:
                # A server refusing a plaintext login on an unencrypted
                # link is a security policy, not a wrong password (exit 5).
                if client.tls or not _PLAINTEXT_REFUSED.search(exc.text or ""):
                    raise
                raise CLIError(
                    f"the server refuses plaintext logins without TLS ({exc}); drop --no-tls "
                    "to use STLS, use pop3s://, or --auth SCRAM-SHA-256 or CRAM-MD5",
                    EXIT_TLS,
                ) from None
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
            if options.max_size is not None:
                # Too big by the server's own count: not fetched at all.
                result.skipped = [n for n in todo if sizes[n] > options.max_size]
                for number in result.skipped:
                    print(
                        f"pop3proto fetch: warning: message {number} skipped: "
                        f"{sizes[number]} octets, over --max-size {options.max_size}",
                        file=stream,
                    )
                todo = [n for n in todo if sizes[n] <= options.max_size]
            if options.limit is not None:
                todo = todo[: options.limit]
            result.new = len(todo)
            show = options.progress
            if show is None:
                show = stream.isatty() and not options.quiet
            progress = Progress(stream, len(todo), sum(sizes[n] for n in todo), enabled=show)

            current: list[Writer | None] = [None]
            following = dict(itertools.pairwise(todo))
            # When the message being received must be complete (monotonic).
            deadline = [0.0]

            def arm(number: int | None) -> None:
                # Each message gets a total deadline, enforced through the
                # socket timeout: a server trickling a byte just inside
                # --timeout cannot stretch it.
                if number is None:
                    return
                allowed = message_deadline(sizes[number], options)
                deadline[0] = time.monotonic() + allowed
                _set_timeout(client, min(options.timeout, allowed))

            def sink(number: int, chunk: bytes) -> None:
                active = current[0]
                if active is None:
                    uid = uids.get(number) if uids is not None else None
                    active = destination.begin(key, uid)
                    current[0] = active
                if chunk:
                    cap = size_cap(sizes[number], options.max_size)
                    if active.size + len(chunk) > cap:
                        raise CLIError(
                            f"message {number}: the server sent more than {cap} octets "
                            f"(LIST said {sizes[number]}); stopped, the message is not stored",
                            EXIT_SERVER,
                        )
                    left = deadline[0] - time.monotonic()
                    if left <= 0:
                        raise _deadline_error(number, sizes[number], options)
                    _set_timeout(client, min(options.timeout, left))
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
                arm(following.get(number))

            remaining = todo
            try:
                while remaining:
                    arm(remaining[0])
                    try:
                        client.retrieve_many_into(remaining, sink)
                        remaining = []
                    except TimeoutError:
                        if time.monotonic() < deadline[0] - 0.05:
                            raise  # --timeout, not the message's deadline
                        done = {*result.stored, *result.failed}
                        number = next(n for n in remaining if n not in done)
                        raise _deadline_error(number, sizes[number], options) from None
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
            _set_timeout(client, options.timeout)
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
    if result.skipped:
        parts.append(f"{len(result.skipped)} skipped (over --max-size)")
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
        max_size=args.max_size,
        message_timeout=args.message_timeout,
    )
    try:
        result = fetch(options)
    except (POP3Error, OSError) as exc:
        # Name the server in the message (the exceptions do not).
        code, message = describe_error(exc, f"{account.user}@{account.hostport}")
        raise CLIError(message, code) from None
    if not args.quiet:
        print(f"pop3proto fetch: {summary_line(result, options)}", file=sys.stderr)
    return EXIT_FAILURE if result.failed or result.skipped else EXIT_OK

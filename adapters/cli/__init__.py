"""The ``pop3proto`` command line: ``serve``, ``fetch``, ``passwd`` and ``demo``.

Run it as ``pop3proto COMMAND ...`` (the console script) or
``python -m pop3proto.adapters.cli COMMAND ...``; ``--help`` on each command
documents its options.  Only the standard library is needed (plus ``trio``
for ``serve --runtime trio``).

Exit codes (the same for every command):

====  ====================================================================
0     success
1     failure not covered below (e.g. ``demo`` found a mismatch, some
      messages could not be retrieved or were skipped as over
      ``--max-size``, another ``fetch`` holds the lock)
2     usage: bad arguments, unreadable users file, certificate or
      password file, no password available
3     authentication failed (wrong user name or password)
4     network: cannot resolve, connect or listen; connection lost; timeout
      (``--timeout``, or a message not received within ``--message-timeout``)
5     TLS or security: certificate verification or handshake failed, no
      STLS offered, or the password would have crossed an unencrypted link
6     the server refused (``-ERR`` other than a failed login: mailbox in
      use, temporary failure, ...) or broke the protocol (e.g. sent a
      message far larger than its LIST size, or over ``--max-size``)
7     local storage: the destination Maildir/mbox or state file could not
      be written
130   interrupted (Ctrl-C); 143: terminated (SIGTERM) during ``fetch``
====  ====================================================================

``serve`` exits 0 when stopped by SIGINT or SIGTERM.  Errors are printed as
one line, ``pop3proto COMMAND: error: ...``, never as a traceback (``-v``
adds detail to the log of ``serve`` only).

This module holds the parser and :func:`main`; each command is a module of
its own (:mod:`._serve`, :mod:`._fetch`, :mod:`._passwd`, :mod:`._demo`), imported only when
it runs, and what they share (errors, exit codes, argument types) is in
:mod:`._common`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

import pop3proto

from ..client._errors import POP3Error
from ..client._mechanisms import LOGIN_METHODS
from ._common import (
    EXIT_AUTH,
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_LOCAL,
    EXIT_NETWORK,
    EXIT_OK,
    EXIT_SERVER,
    EXIT_TERMINATED,
    EXIT_TLS,
    EXIT_USAGE,
    PROG,
    CLIError,
    Terminated,
    describe_error,
    limit_or_none,
    non_negative_float,
    octet_count,
    one_line,
    parse_address,
    positive_float,
    positive_int,
)

__all__ = [
    "main",
    "build_parser",
    "CLIError",
    "EXIT_OK",
    "EXIT_FAILURE",
    "EXIT_USAGE",
    "EXIT_AUTH",
    "EXIT_NETWORK",
    "EXIT_TLS",
    "EXIT_SERVER",
    "EXIT_LOCAL",
    "EXIT_INTERRUPTED",
    "EXIT_TERMINATED",
    "LOGIN_METHODS",
    "Terminated",
    "describe_error",
    "parse_address",
]

# ---------------------------------------------------------------------------
# The parser
# ---------------------------------------------------------------------------

_MAIN_EPILOG = """\
exit codes:
  0 success; 1 other failure; 2 usage (bad arguments or files);
  3 authentication failed; 4 network (connect, listen, lost, timeout);
  5 TLS or security (certificate, no STLS, unencrypted password);
  6 server refused or broke the protocol; 7 local storage error;
  130 interrupted (Ctrl-C); 143 terminated (SIGTERM) during fetch

Run "pop3proto COMMAND --help" for each command's options.
"""

_SERVE_DESCRIPTION = """\
Serve Maildirs over POP3 (RFC 1939, with CAPA, PIPELINING, UIDL, TOP, STLS,
SASL and UTF8).  Every user of the users file logs in with the password
stored there; plaintext methods (USER/PASS, SASL PLAIN and LOGIN) are only
offered over TLS or to clients on a loopback address unless
--allow-plaintext-auth is given.

Each listener's address is printed on stderr once it is bound, as
"listening on HOST:PORT (MODE)" (port 0 picks a free port).  Each session
ends with one log line on stderr: peer, user, why it ended, TLS, commands,
octets received and sent, messages retrieved and deleted.  Passwords are
never logged.

SIGINT or SIGTERM stops the server (exit 0): it stops listening and
abandons open sessions; a session that has not sent QUIT deletes nothing
(RFC 1939 section 6), so no message is removed that was not committed.
"""

_SERVE_EPILOG = """\
users file: one "name:password" per line ('#' comments); the password may
be stored as {PLAIN}secret, {PBKDF2-SHA256}... or {SCRAM-SHA-256}...
("pop3proto passwd --users FILE USER" adds one).  Keep it mode 0600.

examples:
  pop3proto serve --maildir ~/Maildir --users users.txt
  pop3proto serve --maildir-root /srv/mail --users users.txt \\
      --listen 0.0.0.0:110 --tls-listen 0.0.0.0:995 \\
      --tls-cert cert.pem --tls-key key.pem
"""

_FETCH_DESCRIPTION = """\
Download mail from a POP3 server into a Maildir or an mbox, like fetchmail
or getmail.  Only messages not fetched before are downloaded (their UIDL
unique-ids are remembered in a state file beside the destination), in one
pipelined stream when the server offers PIPELINING.

TLS: pop3s:// is TLS from the first byte (port 995); pop3:// upgrades with
STLS (port 110) and refuses to go on without it unless --no-tls.  The
server certificate is verified against the system CAs or --cafile.
"""

_FETCH_EPILOG = """\
what is stored:
  Messages are stored exactly as the server sent them (dot-unstuffed), with
  each CRLF line end turned into LF; a lone CR or LF is kept as it is.
  Maildir (--to DIR, created if missing): one file per message in DIR/new,
    written in DIR/tmp, fsync'ed, then renamed into new/.
  mbox (--to FILE ending in .mbox, or any existing file): mboxrd format.
    Each message is appended as a "From SENDER DATE" line (SENDER from the
    Return-Path header, else MAILER-DAEMON; DATE the UTC arrival time in
    asctime format), then the message with ">" added in front of every line
    matching ^>*"From ", then a LF if the message did not end with one,
    then an empty line.  Reading it back removes one ">" from lines matching
    ^>+"From " and the final empty line.  The mbox is locked (fcntl) while
    a message is appended, then fsync'ed.

state file (default DEST.uidl, or --state FILE):
  JSON: the UIDL unique-ids already stored, per account (user@host; the
  port is left out: pop3:// and pop3s:// reach the same maildrop).
  It is rewritten atomically (temp file, fsync, rename) after each stored
  message: a message is stored first and its unique-id recorded next, so
  an interruption (even kill -9) loses nothing.  It duplicates nothing
  either: Maildir file names carry a hash of the account and unique-id, and
  an mbox append is announced in DEST.uidl.intent first, so a message
  stored but not yet recorded is found on the next run.  Unique-ids no
  longer on the server are forgotten (RFC 1939 never reuses them).
  Servers without UIDL: every message is fetched on every run (use
  --delete); the state file is not used.

size and time limits: a message may be at most twice its LIST size plus
64 KiB (and at most --max-size); a server that sends more is cut off and
fetch exits 6.  Each message must arrive within --message-timeout (by
default --timeout plus 1 s per 16 KiB listed), however slowly the server
trickles it; else fetch exits 4.  Messages listed over --max-size are
skipped with a warning (exit 1).  What was stored before stays stored.

--delete: messages are marked deleted (DELE) only once stored and recorded,
and removed by the server only when QUIT succeeds at the end of the run.

password: --password-env VAR, --password-file FILE (first line), or a
prompt when stdin is a terminal.  Never put it in the URL.

examples:
  pop3proto fetch pop3s://alice@pop.example.org --to ~/Maildir
  POP3_PASSWORD=... pop3proto fetch pop3://alice@localhost:1110 \\
      --password-env POP3_PASSWORD --to inbox.mbox --delete
"""

_PASSWD_DESCRIPTION = """\
Add USER to a users file, or change USER's password, stored hashed.  The
password is asked twice at a prompt, or read from the first line of stdin
(--stdin, or when stdin is not a terminal); never from the command line.
The file is rewritten atomically and kept mode 0600; comments and other
users are kept.

examples:
  pop3proto passwd --users users.txt alice
  printf '%s\\n' "$PASSWORD" | pop3proto passwd --users users.txt --stdin bob
"""

_DEMO_DESCRIPTION = """\
Show the client and server at work with no set-up and no network beyond
the loopback interface: generate a sample maildrop in a temporary directory
(a few hundred messages with dot-lines, 8-bit UTF-8 text and one
multi-megabyte message), serve it on 127.0.0.1 with STLS and a throw-away
certificate, fetch everything back with the pipelined client and one
message at a time, store it into a Maildir with the fetch code, verify every
byte and report the speeds.  Exits 0 if every byte matched.
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``pop3proto`` command."""
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="pop3proto: a POP3 server, a mail fetcher and a demo, on the "
        "sans-I/O pop3proto engine.",
        epilog=_MAIN_EPILOG,
        formatter_class=formatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {pop3proto.__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    # -- serve --------------------------------------------------------------
    serve = commands.add_parser(
        "serve",
        help="serve Maildirs over POP3",
        description=_SERVE_DESCRIPTION,
        epilog=_SERVE_EPILOG,
        formatter_class=formatter,
    )
    store = serve.add_mutually_exclusive_group(required=True)
    store.add_argument(
        "--maildir", metavar="DIR", help="one Maildir that every user of the users file sees"
    )
    store.add_argument(
        "--maildir-root",
        metavar="DIR",
        help="a directory with one Maildir per user, DIR/USER (created on first login)",
    )
    serve.add_argument(
        "--users", metavar="FILE", required=True, help="the users file (name:password lines)"
    )
    serve.add_argument(
        "--listen",
        metavar="HOST:PORT",
        type=parse_address,
        action="append",
        help="a plain POP3 listener (repeatable; default 127.0.0.1:1110 unless "
        "--tls-listen is given; port 0 = any free port); offers STLS with --tls-cert",
    )
    serve.add_argument(
        "--tls-listen",
        metavar="HOST:PORT",
        type=parse_address,
        action="append",
        default=[],
        help="an implicit-TLS (POP3S, RFC 8314) listener (repeatable; needs --tls-cert)",
    )
    serve.add_argument(
        "--tls-cert", metavar="FILE", help="PEM certificate chain; enables STLS on --listen"
    )
    serve.add_argument(
        "--tls-key", metavar="FILE", help="PEM private key (default: in the --tls-cert file)"
    )
    serve.add_argument(
        "--runtime",
        choices=("asyncio", "trio", "sync"),
        default="asyncio",
        help="the I/O runtime: asyncio (default), trio (needs trio installed) or sync "
        "(a thread per connection)",
    )
    serve.add_argument(
        "--allow-plaintext-auth",
        action="store_true",
        help="offer USER/PASS, PLAIN and LOGIN without TLS to remote clients too "
        "(default: only over TLS or on loopback)",
    )
    serve.add_argument(
        "--oauth2-verify-cmd",
        metavar="CMD",
        help="offer OAUTHBEARER and XOAUTH2, checking each token with CMD (run with /bin/sh; "
        "token on stdin, user in $POP3PROTO_OAUTH2_USER; exit 0 accepts, its first output "
        "line naming the user if not empty; otherwise refuses, a JSON object on stdout "
        "filling the error)",
    )
    serve.add_argument(
        "--no-trust-loopback",
        dest="trust_loopback",
        action="store_false",
        help="treat clients on a loopback address like remote ones (no plaintext login "
        "without TLS); use it behind a TLS terminator or proxy on the same host",
    )
    serve.add_argument(
        "--user",
        metavar="USER[:GROUP]",
        help="when started as root: switch to this user (and its groups, or GROUP) once "
        "the listeners are bound, so that mail is read without root's rights",
    )
    serve.add_argument(
        "--idle-timeout",
        metavar="SECONDS",
        type=positive_float,
        default=600.0,
        help="close sessions idle this long (default 600, RFC 1939's minimum)",
    )
    serve.add_argument(
        "--workers",
        metavar="N",
        type=positive_int,
        default=None,
        help="serve with N processes on the same listeners, each client address always "
        "served by the same one (so the per-address limits and penalties hold); the "
        "Maildir locks hold across processes; 1 serves in this process "
        "(default: one per usable core)",
    )
    serve.add_argument(
        "--max-connections",
        metavar="N",
        type=positive_int,
        default=100,
        help="connections per listener, counted from accept (TLS handshakes included), "
        "shared out between the --workers; "
        "when full, the oldest idle connection not logged in is dropped for a newcomer, "
        "else it gets -ERR [SYS/TEMP] (default 100)",
    )
    # -- connection admission (SECURITY.md "Connection admission") --
    serve.add_argument(
        "--max-preauth-per-ip",
        metavar="N",
        type=limit_or_none,
        default=10,
        help="connections not yet logged in from one address; 0: no limit (default 10)",
    )
    serve.add_argument(
        "--max-sessions-per-ip",
        metavar="N",
        type=limit_or_none,
        default=10,
        help="logged-in sessions from one address; 0: no limit (default 10)",
    )
    serve.add_argument(
        "--line-timeout",
        metavar="SECONDS",
        type=positive_float,
        default=60.0,
        help="a command line must be complete this long after its first octet (default 60)",
    )
    serve.add_argument(
        "--login-timeout",
        metavar="SECONDS",
        type=positive_float,
        default=120.0,
        help="a client must log in this long after connecting (default 120)",
    )
    serve.add_argument(
        "--handshake-timeout",
        metavar="SECONDS",
        type=positive_float,
        default=30.0,
        help="a TLS handshake (implicit TLS or STLS) must finish this long after it "
        "starts (default 30)",
    )
    # -- authentication failures (SECURITY.md "Authentication failures") --
    serve.add_argument(
        "--auth-failure-delay",
        metavar="SECONDS",
        type=non_negative_float,
        default=2.0,
        help="hold each failed login's -ERR this long, doubled for each recent failure "
        "from the client's address or on the account; 0 turns delay and penalties off "
        "(default 2)",
    )
    serve.add_argument(
        "--auth-penalty-max",
        metavar="SECONDS",
        type=non_negative_float,
        default=15.0,
        help="the longest a login waits, a correct one included (default 15)",
    )
    serve.add_argument(
        "--auth-penalty-reset",
        metavar="SECONDS",
        type=positive_float,
        default=900.0,
        help="forget an address's or an account's failures after this long without "
        "one (default 900)",
    )
    serve.add_argument(
        "--auth-secret-file",
        metavar="FILE",
        help="a file of at least 16 secret bytes keying the SCRAM salts of users stored "
        "in plaintext and of unknown names (default: a key derived from the users file, "
        "so the salts change when it does)",
    )
    verbosity = serve.add_mutually_exclusive_group()
    verbosity.add_argument(
        "-v", "--verbose", action="store_true", help="also log connection-level detail"
    )
    verbosity.add_argument(
        "-q", "--quiet", action="store_true", help="log warnings only (no session lines)"
    )
    serve.set_defaults(handler=_cmd_serve)

    # -- fetch --------------------------------------------------------------
    fetch = commands.add_parser(
        "fetch",
        help="download new mail into a Maildir or mbox",
        description=_FETCH_DESCRIPTION,
        epilog=_FETCH_EPILOG,
        formatter_class=formatter,
    )
    fetch.add_argument(
        "url",
        metavar="URL",
        help="pop3://USER@HOST[:PORT] or pop3s://USER@HOST[:PORT] (percent-encode '@' "
        "in USER as %%40; ';AUTH=MECH' after USER is the same as --auth MECH)",
    )
    fetch.add_argument(
        "--to",
        metavar="DEST",
        required=True,
        help="a Maildir directory (created if missing), or an mbox file: a name ending in "
        ".mbox, or an existing file",
    )
    secret = fetch.add_mutually_exclusive_group()
    secret.add_argument(
        "--password-env", metavar="VAR", help="read the password from environment variable VAR"
    )
    secret.add_argument(
        "--password-file", metavar="FILE", help="read the password from the first line of FILE"
    )
    secret.add_argument(
        "--oauth2-token-env",
        metavar="VAR",
        help="log in with the OAuth 2.0 access token in environment variable VAR "
        "(OAUTHBEARER, else XOAUTH2)",
    )
    secret.add_argument(
        "--oauth2-token-cmd",
        metavar="CMD",
        help="log in with the OAuth 2.0 access token CMD prints (run with /bin/sh once per "
        "connection; OAUTHBEARER, else XOAUTH2)",
    )
    tls = fetch.add_mutually_exclusive_group()
    tls.add_argument(
        "--starttls",
        action="store_true",
        help="upgrade pop3:// with STLS and fail without it (the default for pop3://)",
    )
    tls.add_argument(
        "--no-tls",
        action="store_true",
        help="pop3:// without TLS; the password is then only sent with CRAM-MD5/SCRAM, or "
        "on loopback, unless --insecure-auth",
    )
    fetch.add_argument(
        "--insecure-auth",
        action="store_true",
        help="with --no-tls: allow USER/PASS, PLAIN, LOGIN and APOP to a remote host",
    )
    fetch.add_argument(
        "--cafile",
        metavar="FILE",
        help="trust the CA certificates in FILE (PEM) instead of the system's",
    )
    fetch.add_argument(
        "--auth",
        metavar="MECH",
        type=str.upper,
        choices=LOGIN_METHODS,
        help=f"use this login method only: {', '.join(LOGIN_METHODS[:-1])} "
        f"or {LOGIN_METHODS[-1]} (default: the strongest offered)",
    )
    fetch.add_argument(
        "--all",
        dest="fetch_all",
        action="store_true",
        help="fetch every message, including those fetched before",
    )
    fetch.add_argument(
        "--delete",
        action="store_true",
        help="delete the messages from the server once stored (committed by QUIT)",
    )
    fetch.add_argument(
        "--limit", metavar="N", type=positive_int, help="fetch at most N messages this run"
    )
    fetch.add_argument(
        "--state", metavar="FILE", help="the UIDL state file (default: DEST.uidl beside DEST)"
    )
    fetch.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=positive_float,
        default=60.0,
        help="network timeout for each operation (default 60)",
    )
    fetch.add_argument(
        "--max-size",
        metavar="SIZE",
        type=octet_count,
        help="skip messages LIST says are larger than SIZE (octets, or 512K, 25M, 1G) and "
        "cut a transfer that grows past it (default: no limit beyond twice the LIST size "
        "plus 64K)",
    )
    fetch.add_argument(
        "--message-timeout",
        metavar="SECONDS",
        type=positive_float,
        help="the longest one message may take in all, however the server paces it "
        "(default: --timeout plus 1 s per 16 KiB of its LIST size)",
    )
    fetch.add_argument(
        "--fsync",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="fsync each stored message and state update (default; --no-fsync is faster "
        "and still safe against kill, but not against a power cut)",
    )
    fetch.add_argument(
        "-q", "--quiet", action="store_true", help="no progress bar and no summary line"
    )
    fetch.set_defaults(handler=_cmd_fetch)

    # -- passwd ---------------------------------------------------------------
    passwd = commands.add_parser(
        "passwd",
        help="add a user to a users file or change a password (stored hashed)",
        description=_PASSWD_DESCRIPTION,
        formatter_class=formatter,
    )
    passwd.add_argument("user", metavar="USER", help="the user name")
    passwd.add_argument(
        "--users",
        metavar="FILE",
        help="the users file to update (created mode 0600 if missing); without it the "
        "entry is printed on stdout",
    )
    passwd.add_argument(
        "--scheme",
        choices=("scram", "pbkdf2"),
        default="scram",
        help="scram: {SCRAM-SHA-256} (default; SCRAM and password logins); pbkdf2: "
        "{PBKDF2-SHA256} (password logins only)",
    )
    passwd.add_argument(
        "--iterations",
        metavar="N",
        type=positive_int,
        help="the work factor (default 4096 for scram, 600000 for pbkdf2)",
    )
    passwd.add_argument(
        "--stdin",
        action="store_true",
        help="read the password from the first line of stdin (the default when stdin "
        "is not a terminal; else it is asked twice)",
    )
    passwd.set_defaults(handler=_cmd_passwd)

    # -- demo -----------------------------------------------------------------
    demo = commands.add_parser(
        "demo",
        help="generate, serve, fetch and verify a sample maildrop on loopback",
        description=_DEMO_DESCRIPTION,
        formatter_class=formatter,
    )
    demo.add_argument(
        "--messages",
        metavar="N",
        type=positive_int,
        default=300,
        help="how many ordinary messages to generate (default 300)",
    )
    demo.add_argument(
        "--big-mb",
        metavar="MB",
        type=positive_int,
        default=4,
        help="size of the one large message, in MiB (default 4)",
    )
    demo.add_argument(
        "--runtime",
        choices=("asyncio", "trio", "sync"),
        default="asyncio",
        help="the server's I/O runtime (default asyncio)",
    )
    demo.add_argument(
        "--tls",
        choices=("auto", "trustme", "openssl", "none"),
        default="auto",
        help="where the throw-away certificate comes from: trustme if importable, else "
        "the openssl command, else none (plaintext on loopback); default auto",
    )
    demo.add_argument(
        "--keep", action="store_true", help="keep the temporary directory and print its path"
    )
    demo.set_defaults(handler=_cmd_demo)
    return parser


# ---------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (see the module docstring)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    prefix = f"{PROG} {args.command}"
    try:
        return handler(args)
    except KeyboardInterrupt:
        print(f"{prefix}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Terminated:
        print(f"{prefix}: terminated", file=sys.stderr)
        return EXIT_TERMINATED
    except (CLIError, POP3Error, OSError, pop3proto.ProtocolError) as exc:
        code, message = describe_error(exc)
        print(f"{prefix}: error: {one_line(message)}", file=sys.stderr)
        return code


# The command modules are imported when their command runs: ``fetch``
# starts without the server modules, and ``--help`` without either.


def _cmd_serve(args: argparse.Namespace) -> int:
    from ._serve import run_serve_command

    return run_serve_command(args)


def _cmd_fetch(args: argparse.Namespace) -> int:
    from ._fetch import run_fetch_command

    return run_fetch_command(args)


def _cmd_passwd(args: argparse.Namespace) -> int:
    from ._passwd import run_passwd_command

    return run_passwd_command(args)


def _cmd_demo(args: argparse.Namespace) -> int:
    from ._demo import run_demo_command

    return run_demo_command(args)

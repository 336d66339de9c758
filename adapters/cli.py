"""The ``pop3proto`` command line: ``serve``, ``fetch`` and ``demo``.

Run it as ``pop3proto COMMAND ...`` (the console script) or
``python -m pop3proto.adapters.cli COMMAND ...``; ``--help`` on each command
documents its options.  Only the standard library is needed (plus ``trio``
for ``serve --runtime trio``).

Exit codes (the same for every command):

====  ====================================================================
0     success
1     failure not covered below (e.g. ``demo`` found a mismatch, some
      messages could not be retrieved, another ``fetch`` holds the lock)
2     usage: bad arguments, unreadable users file, certificate or
      password file, no password available
3     authentication failed (wrong user name or password)
4     network: cannot resolve, connect or listen; connection lost; timeout
5     TLS or security: certificate verification or handshake failed, no
      STLS offered, or the password would have crossed an unencrypted link
6     the server refused (``-ERR`` other than a failed login: mailbox in
      use, temporary failure, ...) or broke the protocol
7     local storage: the destination Maildir/mbox or state file could not
      be written
130   interrupted (Ctrl-C); 143: terminated (SIGTERM) during ``fetch``
====  ====================================================================

``serve`` exits 0 when stopped by SIGINT or SIGTERM.  Errors are printed as
one line, ``pop3proto COMMAND: error: ...``, never as a traceback (``-v``
adds detail to the log of ``serve`` only).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import ssl
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, NoReturn

import pop3proto

from .client._errors import (
    AuthenticationFailed,
    ConnectionLost,
    InsecureAuthenticationRefused,
    POP3Error,
    TLSUnavailable,
)

# The server modules are imported when ``serve`` runs, so that ``fetch``
# starts without them.
if TYPE_CHECKING:
    from ._maildrop import MaildropBackend
    from ._session import ServerConfig
    from ._users import Authenticator

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

EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1
EXIT_USAGE: Final = 2
EXIT_AUTH: Final = 3
EXIT_NETWORK: Final = 4
EXIT_TLS: Final = 5
EXIT_SERVER: Final = 6
EXIT_LOCAL: Final = 7
EXIT_INTERRUPTED: Final = 130
EXIT_TERMINATED: Final = 143

PROG: Final = "pop3proto"

#: The login methods ``fetch --auth`` accepts (those the client can force).
LOGIN_METHODS: Final = (
    "USER",
    "APOP",
    "PLAIN",
    "LOGIN",
    "CRAM-MD5",
    "SCRAM-SHA-1",
    "SCRAM-SHA-256",
)

log = logging.getLogger("pop3proto.cli")


class CLIError(Exception):
    """A user-facing error: printed as one line, mapped to an exit code.

    Attributes:
        code: the process exit code (one of the ``EXIT_*`` constants).
    """

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.code = code


class Terminated(BaseException):
    """SIGTERM arrived (raised from the signal handler, like KeyboardInterrupt)."""


def _one_line(text: str) -> str:
    return " ".join(text.split())


def describe_error(exc: BaseException, where: str = "") -> tuple[int, str]:
    """The exit code and one-line message for an error a command let escape.

    *where* names the peer (``"alice@pop.example.org:995"``) for messages
    about the connection.  Never includes a password: the client exceptions
    never hold one, and socket errors do not either.
    """
    at = f" ({where})" if where else ""
    if isinstance(exc, CLIError):
        return exc.code, str(exc)
    if isinstance(exc, InsecureAuthenticationRefused):
        return EXIT_TLS, (
            f"refusing to send the password over an unencrypted connection{at}; use "
            "pop3s:// or STLS (the default), or add --insecure-auth if you accept the risk"
        )
    if isinstance(exc, TLSUnavailable):
        if exc.response is not None:
            what = f"the server refused STLS: -ERR {exc.text or ''}".rstrip()
        else:
            what = "the server does not offer STLS"
        return EXIT_TLS, f"{what}{at}; use pop3s:// for implicit TLS, or --no-tls"
    if isinstance(exc, AuthenticationFailed):
        return EXIT_AUTH, f"authentication failed{at}: {exc}"
    if isinstance(exc, ConnectionLost):
        return EXIT_NETWORK, f"connection lost{at}: {exc}"
    if isinstance(exc, POP3Error):
        return EXIT_SERVER, f"server error{at}: {exc}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = exc.verify_message or exc.reason or str(exc)
        return EXIT_TLS, (
            f"TLS certificate verification failed{at}: {reason} "
            "(use --cafile FILE to trust a private CA)"
        )
    if isinstance(exc, ssl.SSLError):
        return EXIT_TLS, f"TLS error{at}: {exc.reason or exc}"
    if isinstance(exc, socket.gaierror):
        return EXIT_NETWORK, f"cannot resolve the host name{at}: {exc.strerror or exc}"
    if isinstance(exc, TimeoutError):
        return EXIT_NETWORK, f"timed out{at}"
    if isinstance(exc, ConnectionError):
        return EXIT_NETWORK, f"connection failed{at}: {exc.strerror or exc}"
    if isinstance(exc, OSError):
        return EXIT_NETWORK, f"network error{at}: {exc.strerror or exc}"
    if isinstance(exc, pop3proto.ProtocolError):
        return EXIT_SERVER, f"protocol error{at}: {exc}"
    return EXIT_FAILURE, f"{type(exc).__name__}: {exc}"


# ---------------------------------------------------------------------------
# Argument types
# ---------------------------------------------------------------------------


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPV6]:PORT`` -> ``(host, port)``; port 0 = any free port."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise argparse.ArgumentTypeError(f"put IPv6 addresses in brackets: [{host}]:{port_text}")
    if not (port_text.isascii() and port_text.isdigit()) or int(port_text) > 65535:
        raise argparse.ArgumentTypeError(f"invalid port {port_text!r} (0-65535)")
    return host, int(port_text)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text!r}")
    return value


def _positive_int(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, not {text!r}")
    return int(text)


def _format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


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
(see pop3proto.adapters._users.hash_password).  Keep it mode 0600.

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

--delete: messages are marked deleted (DELE) only once stored and recorded,
and removed by the server only when QUIT succeeds at the end of the run.

password: --password-env VAR, --password-file FILE (first line), or a
prompt when stdin is a terminal.  Never put it in the URL.

examples:
  pop3proto fetch pop3s://alice@pop.example.org --to ~/Maildir
  POP3_PASSWORD=... pop3proto fetch pop3://alice@localhost:1110 \\
      --password-env POP3_PASSWORD --to inbox.mbox --delete
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
        "--idle-timeout",
        metavar="SECONDS",
        type=_positive_float,
        default=600.0,
        help="close sessions idle this long (default 600, RFC 1939's minimum)",
    )
    serve.add_argument(
        "--max-connections",
        metavar="N",
        type=_positive_int,
        default=100,
        help="concurrent sessions per listener; more get -ERR [SYS/TEMP] (default 100)",
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
        help="use this login method only: USER, APOP, PLAIN, LOGIN, CRAM-MD5, SCRAM-SHA-1 "
        "or SCRAM-SHA-256 (default: the strongest offered)",
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
        "--limit", metavar="N", type=_positive_int, help="fetch at most N messages this run"
    )
    fetch.add_argument(
        "--state", metavar="FILE", help="the UIDL state file (default: DEST.uidl beside DEST)"
    )
    fetch.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=_positive_float,
        default=60.0,
        help="network timeout for each operation (default 60)",
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
        type=_positive_int,
        default=300,
        help="how many ordinary messages to generate (default 300)",
    )
    demo.add_argument(
        "--big-mb",
        metavar="MB",
        type=_positive_int,
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
        print(f"{prefix}: error: {_one_line(message)}", file=sys.stderr)
        return code


def _usage_error(message: str) -> NoReturn:
    raise CLIError(message, EXIT_USAGE)


# ---------------------------------------------------------------------------
# fetch and demo (their code lives in helper modules)
# ---------------------------------------------------------------------------


def _cmd_fetch(args: argparse.Namespace) -> int:
    from ._fetch import run_fetch_command

    return run_fetch_command(args)


def _cmd_demo(args: argparse.Namespace) -> int:
    from ._demo import run_demo

    return run_demo(
        messages=args.messages,
        big_mb=args.big_mb,
        runtime=args.runtime,
        tls=args.tls,
        keep=args.keep,
    )


# ---------------------------------------------------------------------------
# serve
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Listener:
    host: str
    port: int
    implicit_tls: bool


@dataclass
class _ServeSpec:
    """Everything the runtime-specific loops need to build their servers."""

    backend: MaildropBackend
    authenticator: Authenticator
    config: ServerConfig
    ssl_context: ssl.SSLContext | None
    listeners: list[_Listener]
    max_connections: int

    def server_kwargs(self, listener: _Listener) -> dict[str, Any]:
        return {
            "host": listener.host,
            "port": listener.port,
            "ssl_context": self.ssl_context,
            "implicit_tls": listener.implicit_tls,
            "config": self.config,
            "max_connections": self.max_connections,
        }


def _announce(listener: _Listener, address: tuple[str, int], stls: bool) -> None:
    if listener.implicit_tls:
        mode = "implicit TLS"
    elif stls:
        mode = "STLS offered"
    else:
        mode = "no TLS"
    # Printed, not logged: scripts and tests read it, whatever the log level.
    print(f"listening on {_format_address(*address)} ({mode})", file=sys.stderr, flush=True)


def _listen_error(listener: _Listener, exc: OSError) -> CLIError:
    where = _format_address(listener.host, listener.port)
    return CLIError(f"cannot listen on {where}: {exc.strerror or exc}", EXIT_NETWORK)


def _setup_logging(args: argparse.Namespace) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    root = logging.getLogger("pop3proto")
    root.handlers[:] = [handler]
    root.propagate = False
    if args.verbose:
        root.setLevel(logging.DEBUG)
    elif args.quiet:
        root.setLevel(logging.WARNING)
    else:
        root.setLevel(logging.INFO)


def _server_tls_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    if args.tls_key and not args.tls_cert:
        _usage_error("--tls-key needs --tls-cert")
    if args.tls_listen and not args.tls_cert:
        _usage_error("--tls-listen needs --tls-cert (and --tls-key)")
    if not args.tls_cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(args.tls_cert, args.tls_key)
    except FileNotFoundError as exc:
        raise CLIError(f"cannot read {exc.filename}: {exc.strerror}", EXIT_USAGE) from None
    except (ssl.SSLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise CLIError(f"cannot load the TLS certificate/key: {reason}", EXIT_USAGE) from None
    return context


def _cmd_serve(args: argparse.Namespace) -> int:
    from ._maildrop import MaildirBackend
    from ._session import ServerConfig
    from ._users import UsersFile

    _setup_logging(args)
    ssl_context = _server_tls_context(args)
    if args.maildir is not None:
        path, per_user = args.maildir, False
    else:
        path, per_user = args.maildir_root, True
    if not os.path.isdir(path):
        flag = "--maildir" if not per_user else "--maildir-root"
        _usage_error(f"{flag} {path}: no such directory")
    try:
        authenticator = UsersFile(args.users)
    except OSError as exc:
        raise CLIError(
            f"cannot read the users file {args.users}: {exc.strerror}", EXIT_USAGE
        ) from None
    except ValueError as exc:
        raise CLIError(f"bad users file: {exc}", EXIT_USAGE) from None
    try:
        mode = os.stat(args.users).st_mode
    except OSError:
        mode = 0
    if mode & 0o077:
        log.warning("the users file %s is readable by other users; chmod 600 it", args.users)
    config = ServerConfig(
        allow_plaintext_auth=True if args.allow_plaintext_auth else None,
        idle_timeout=args.idle_timeout,
    )
    # The default plain listener only when no listener at all is given: a
    # TLS-only server must be possible.
    plain = args.listen or ([] if args.tls_listen else [("127.0.0.1", 1110)])
    listeners = [_Listener(h, p, False) for h, p in plain]
    listeners += [_Listener(h, p, True) for h, p in args.tls_listen]
    spec = _ServeSpec(
        backend=MaildirBackend(path, per_user=per_user),
        authenticator=authenticator,
        config=config,
        ssl_context=ssl_context,
        listeners=listeners,
        max_connections=args.max_connections,
    )
    if args.runtime == "asyncio":
        import asyncio

        asyncio.run(_serve_asyncio(spec))
    elif args.runtime == "trio":
        try:
            import trio  # type: ignore[import-untyped, unused-ignore]  # noqa: F401
        except ImportError:
            raise CLIError(
                "--runtime trio needs trio: pip install 'pop3proto[trio]'", EXIT_USAGE
            ) from None
        _serve_trio(spec)
    else:
        _serve_sync(spec)
    print("stopped", file=sys.stderr, flush=True)
    return EXIT_OK


def _log_stop(signum: int, active: int) -> None:
    name = signal.Signals(signum).name if signum else "signal"
    if active:
        log.info(
            "%s: stopping; abandoning %d open session(s) without UPDATE (nothing they "
            "marked deleted is removed)",
            name,
            active,
        )
    else:
        log.info("%s: stopping", name)


async def _serve_asyncio(spec: _ServeSpec) -> None:
    import asyncio

    from ._asyncio_server import STLS_SUPPORTED, Server

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    received: list[int] = []

    def on_signal(signum: int) -> None:
        received.append(signum)
        stop.set()

    # Installed before anything is announced, so that a signal sent as soon
    # as the address is printed is never lost.
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    servers: list[Server] = []
    try:
        for listener in spec.listeners:
            server = Server(spec.backend, spec.authenticator, **spec.server_kwargs(listener))
            try:
                await server.start()
            except OSError as exc:
                raise _listen_error(listener, exc) from None
            servers.append(server)
            stls = spec.ssl_context is not None and STLS_SUPPORTED
            _announce(listener, server.server_address, stls)
        await stop.wait()
        _log_stop(received[0] if received else 0, sum(s.active_connections for s in servers))
    finally:
        for server in servers:
            server.close()
        for server in servers:
            await server.wait_closed()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def _first_error(exc: BaseException) -> BaseException:
    """The first leaf of a (possibly nested) exception group."""
    while True:
        inner = getattr(exc, "exceptions", None)
        if not inner:
            return exc
        exc = inner[0]


def _serve_trio(spec: _ServeSpec) -> None:
    import trio  # type: ignore[import-untyped, unused-ignore]

    from ._trio_server import Server

    async def run() -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                servers: list[Server] = []
                for listener in spec.listeners:
                    server = Server(
                        spec.backend, spec.authenticator, **spec.server_kwargs(listener)
                    )
                    try:
                        address = await nursery.start(server.serve)
                    except OSError as exc:
                        raise _listen_error(listener, exc) from None
                    servers.append(server)
                    _announce(listener, address, spec.ssl_context is not None)
                signum = 0
                async for received in signals:
                    signum = received
                    break
                _log_stop(signum, sum(s.active_connections for s in servers))
                for server in servers:
                    server.shutdown()

    try:
        trio.run(run)
    except CLIError:
        raise
    except BaseException as exc:
        # Newer trio versions wrap failures of nursery tasks in groups.
        leaf = _first_error(exc)
        if leaf is exc:
            raise
        raise leaf from None


def _serve_sync(spec: _ServeSpec) -> None:
    from ._sync_server import Server

    stop = threading.Event()
    received: list[int] = []

    def on_signal(signum: int, frame: object) -> None:
        received.append(signum)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    servers: list[Server] = []
    try:
        for listener in spec.listeners:
            try:
                server = Server(spec.backend, spec.authenticator, **spec.server_kwargs(listener))
            except OSError as exc:
                raise _listen_error(listener, exc) from None
            servers.append(server)
            server.start()
            _announce(listener, server.server_address, spec.ssl_context is not None)
        # A timed wait, so that the signal handler gets to run promptly on
        # every platform.
        while not stop.wait(0.5):
            pass
        _log_stop(received[0] if received else 0, sum(s.active_connections for s in servers))
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)


if __name__ == "__main__":
    # Run the copy of this module imported under its package name, so that
    # the helper modules (which import CLIError from it) share its classes.
    import importlib

    sys.exit(importlib.import_module(f"{__spec__.parent}.cli").main())

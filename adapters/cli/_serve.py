"""``pop3proto serve``: serve Maildirs over POP3 until SIGINT or SIGTERM.

:func:`run_serve_command` builds the server configuration from the options
(see ``pop3proto serve --help``) and runs one server per listener on the
chosen runtime: asyncio, trio or blocking threads.  Each runtime loop installs
its own SIGINT and SIGTERM handling, announces every listener on stderr as
``listening on HOST:PORT (MODE)`` once it is bound, and on a signal stops
listening and abandons the open sessions (which delete nothing without QUIT,
RFC 1939 §6).  The server modules are imported only here, when ``serve``
runs.

With ``--workers N`` (default: one per usable core) the parent binds the
listeners and forks N such processes (:mod:`._workers`): each client
address is always served by the same worker, so the per-address limits and
penalties of each worker's server hold for the whole; ``--max-connections``
is shared out between them.  ``--workers 1`` serves in this process,
without forking.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import socket
import ssl
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from ._common import EXIT_NETWORK, EXIT_OK, EXIT_USAGE, CLIError, format_address, usage_error

if TYPE_CHECKING:
    from ..mailstore._base import MaildropBackend
    from ..mailstore._users import Authenticator
    from ..server._config import ServerConfig, TokenVerifier

__all__ = ["run_serve_command"]

log = logging.getLogger("pop3proto.cli")


@dataclass(frozen=True)
class _Listener:
    host: str
    port: int
    implicit_tls: bool
    #: Bound by the parent of ``--workers`` processes, shared by them.
    sock: socket.socket | None = None


@dataclass
class _ServeSpec:
    """Everything the runtime-specific loops need to build their servers."""

    backend: MaildropBackend
    authenticator: Authenticator
    config: ServerConfig
    ssl_context: ssl.SSLContext | None
    listeners: list[_Listener]
    max_connections: int
    trust_loopback: bool = True
    handshake_timeout: float = 30.0
    run_as: _RunAs | None = None
    #: Do not announce the listeners (every ``--workers`` process but one).
    quiet: bool = False
    #: Called once the runtime handles SIGINT and SIGTERM (a worker lets
    #: them in then).
    ready: Callable[[], None] | None = None

    def server_kwargs(self, listener: _Listener) -> dict[str, Any]:
        return {
            "host": listener.host,
            "port": listener.port,
            "ssl_context": self.ssl_context,
            "implicit_tls": listener.implicit_tls,
            "config": self.config,
            "max_connections": self.max_connections,
            "trust_loopback": self.trust_loopback,
            "handshake_timeout": self.handshake_timeout,
            "sock": listener.sock,
        }

    def bound(self) -> None:
        """Every listener is bound (and the signals are handled): drop root's
        rights if ``--user`` says so."""
        if self.ready is not None:
            self.ready()
        if self.run_as is not None:
            self.run_as.switch()


@dataclass(frozen=True)
class _RunAs:
    """``serve --user USER[:GROUP]``: whom to become once the ports are bound."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]

    @classmethod
    def parse(cls, spec: str) -> _RunAs:
        import grp
        import pwd

        name, _, group = spec.partition(":")
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            usage_error(f"--user {spec}: no such user")
        gid = entry.pw_gid
        if group:
            try:
                gid = grp.getgrnam(group).gr_gid
            except KeyError:
                usage_error(f"--user {spec}: no such group")
            groups: tuple[int, ...] = (gid,)
        else:
            groups = tuple(os.getgrouplist(name, gid))
        if os.geteuid() != 0 and os.geteuid() != entry.pw_uid:
            usage_error("--user needs serve to be started as root")
        return cls(name, entry.pw_uid, gid, groups)

    def switch(self) -> None:
        if os.geteuid() == self.uid:
            return
        # Imported while root can still read the interpreter's files: the
        # asyncio server starts its thread pool only at the first login (and
        # a server on an inherited ``--workers`` socket resolves no address
        # through it before then).
        import concurrent.futures.thread  # noqa: F401

        # Groups first: once the uid is dropped they cannot be changed.
        os.setgroups(list(self.groups))
        os.setgid(self.gid)
        os.setuid(self.uid)
        log.info("running as %s (uid %d, gid %d)", self.name, self.uid, self.gid)


def _announce(listener: _Listener, address: tuple[str, int], stls: bool) -> None:
    if listener.implicit_tls:
        mode = "implicit TLS"
    elif stls:
        mode = "STLS offered"
    else:
        mode = "no TLS"
    # Printed, not logged: scripts and tests read it, whatever the log level.
    print(f"listening on {format_address(*address)} ({mode})", file=sys.stderr, flush=True)


def _listen_error(listener: _Listener, exc: OSError) -> CLIError:
    where = format_address(listener.host, listener.port)
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
        usage_error("--tls-key needs --tls-cert")
    if args.tls_listen and not args.tls_cert:
        usage_error("--tls-listen needs --tls-cert (and --tls-key)")
    if not args.tls_cert:
        return None
    contents: dict[str, bytes] = {}
    for flag, path in (("--tls-cert", args.tls_cert), ("--tls-key", args.tls_key)):
        if path is None:
            continue
        try:
            with open(path, "rb") as f:
                contents[flag] = f.read()
        except OSError as exc:
            usage_error(f"{flag}: cannot read {path}: {exc.strerror or exc}")
    if args.tls_key is None and b"PRIVATE KEY-----" not in contents["--tls-cert"]:
        usage_error(
            f"cannot load the TLS certificate/key: --tls-cert {args.tls_cert} holds no "
            "private key; give the key with --tls-key FILE"
        )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(args.tls_cert, args.tls_key)
    except (ssl.SSLError, OSError) as exc:
        # OpenSSL's reasons ("PEM lib") name no file and no fix.
        reason = str(getattr(exc, "reason", None) or exc)
        files = args.tls_cert + (f" and --tls-key {args.tls_key}" if args.tls_key else "")
        if "KEY_VALUES_MISMATCH" in reason.upper():
            what = "the private key does not belong to the certificate"
        elif b"CERTIFICATE-----" not in contents["--tls-cert"]:
            what = f"no PEM certificate in {args.tls_cert}"
        elif b"PRIVATE KEY-----" not in contents.get("--tls-key", contents["--tls-cert"]):
            what = f"no PEM private key in {args.tls_key}"
        else:
            what = f"not a usable PEM certificate and private key ({reason})"
        usage_error(f"cannot load the TLS certificate/key: --tls-cert {files}: {what}")
    return context


def _token_verifier(args: argparse.Namespace) -> TokenVerifier | None:
    # XOAUTH2 and OAUTHBEARER are offered only with a verifier: the users
    # file holds no tokens.
    command: str | None = getattr(args, "oauth2_verify_cmd", None)
    if command is None:
        return None
    from ._oauth2 import command_verifier

    return command_verifier(command)


#: ServerConfig field names that are serve flags, in its error messages.
_AUTH_FIELD = re.compile(r"\bauth_(?:failure_delay|penalty_max|penalty_reset)\b")
#: The shortest --auth-secret-file worth the name.
_MIN_SECRET = 16


def _auth_secret(path: str | None) -> bytes | None:
    """The contents of ``--auth-secret-file`` (a final line end dropped),
    or ``None`` without one."""
    if path is None:
        return None
    try:
        with open(path, "rb") as f:
            secret = f.read().rstrip(b"\r\n")
            mode = os.fstat(f.fileno()).st_mode
    except OSError as exc:
        usage_error(f"--auth-secret-file: cannot read {path}: {exc.strerror or exc}")
    if len(secret) < _MIN_SECRET:
        usage_error(
            f"--auth-secret-file {path}: holds {len(secret)} bytes, at least {_MIN_SECRET} "
            "needed (e.g. head -c 32 /dev/urandom > FILE)"
        )
    if mode & 0o077:
        log.warning("the secret file %s is readable by other users; chmod 600 it", path)
    return secret


def run_serve_command(args: argparse.Namespace) -> int:
    """``pop3proto serve``: listen until SIGINT or SIGTERM; return the exit status."""
    from ..mailstore._maildir import MaildirBackend
    from ..mailstore._users import UsersFile
    from ..server._config import ServerConfig

    _setup_logging(args)
    ssl_context = _server_tls_context(args)
    if args.maildir is not None:
        path, per_user = args.maildir, False
    else:
        path, per_user = args.maildir_root, True
    if not os.path.isdir(path):
        flag = "--maildir" if not per_user else "--maildir-root"
        usage_error(f"{flag} {path}: no such directory")
    secret = _auth_secret(getattr(args, "auth_secret_file", None))
    try:
        authenticator = UsersFile(args.users, secret=secret)
    except OSError as exc:
        raise CLIError(
            f"cannot read the users file {args.users}: {exc.strerror}", EXIT_USAGE
        ) from None
    except ValueError as exc:
        raise CLIError(f"bad users file: {exc}", EXIT_USAGE) from None
    try:
        mode = os.stat(args.users).st_mode
    except OSError:  # pragma: no cover - removed since it was read just above
        mode = 0
    if mode & 0o077:
        log.warning("the users file %s is readable by other users; chmod 600 it", args.users)
    run_as = _RunAs.parse(args.user) if getattr(args, "user", None) else None
    try:
        config = ServerConfig(
            allow_plaintext_auth=True if args.allow_plaintext_auth else None,
            idle_timeout=args.idle_timeout,
            token_verifier=_token_verifier(args),
            # -- authentication failures --
            auth_failure_delay=getattr(args, "auth_failure_delay", 2.0),
            auth_penalty_max=getattr(args, "auth_penalty_max", 15.0),
            auth_penalty_reset=getattr(args, "auth_penalty_reset", 900.0),
            # -- connection admission (SECURITY.md "Connection admission") --
            max_preauth_per_ip=args.max_preauth_per_ip or None,
            max_sessions_per_ip=args.max_sessions_per_ip or None,
            line_timeout=args.line_timeout,
            login_timeout=args.login_timeout,
        )
    except ValueError as exc:
        # The config's words are its field names: say the flags.
        usage_error(_AUTH_FIELD.sub(lambda m: "--" + m.group(0).replace("_", "-"), str(exc)))
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
        handshake_timeout=args.handshake_timeout,
        trust_loopback=getattr(args, "trust_loopback", True),
        run_as=run_as,
    )
    if args.runtime == "trio":
        try:
            import trio  # type: ignore[import-untyped, unused-ignore]  # noqa: F401
        except ImportError:
            raise CLIError(
                "--runtime trio needs trio: pip install 'pop3proto[trio]'", EXIT_USAGE
            ) from None
    workers = getattr(args, "workers", None)
    if workers is None:
        from ._workers import usable_cores

        workers = usable_cores()
    if workers > 1:
        status = _fork_workers(spec, workers, args.runtime)
        if status != EXIT_OK:
            raise CLIError(f"a worker process failed (exit status {status})", status)
    else:
        _serve_in(args.runtime, spec)
    print("stopped", file=sys.stderr, flush=True)
    return EXIT_OK


def _serve_in(runtime: str, spec: _ServeSpec) -> None:
    if runtime == "asyncio":
        import asyncio

        asyncio.run(_serve_asyncio(spec))
    elif runtime == "trio":
        _serve_trio(spec)
    else:
        _serve_sync(spec)


def _fork_workers(spec: _ServeSpec, workers: int, runtime: str) -> int:
    """``--workers N``: bind every listener here (N sockets each, routed by
    client address where the kernel can; see :mod:`._workers`), then fork
    N processes, each serving its own share: its sockets and its part of
    ``--max-connections``.  Return the worst exit status once all have
    stopped."""
    from . import _workers

    listeners_of: list[list[_Listener]] = [[] for _ in range(workers)]
    for listener in spec.listeners:
        try:
            sockets, reason = _workers.open_listener(listener.host, listener.port, workers)
        except OSError as exc:
            for opened in {lst.sock for mine in listeners_of for lst in mine}:
                if opened is not None:
                    opened.close()
            raise _listen_error(listener, exc) from None
        if reason is not None:
            where = format_address(listener.host, listener.port)
            log.warning(
                "%s: %s; the %d workers share one socket, so the per-address limits "
                'and penalties hold per worker (SECURITY.md "Several worker processes")',
                where,
                reason,
                workers,
            )
        port = sockets[0].getsockname()[1]
        for index, sock in enumerate(sockets):
            listeners_of[index].append(replace(listener, port=port, sock=sock))
    shares = _workers.split_limit(spec.max_connections, workers)

    def serve(index: int) -> int:
        # Only the first worker announces the listeners (once).
        mine = replace(
            spec,
            listeners=listeners_of[index],
            max_connections=shares[index],
            quiet=index > 0,
            ready=_workers.worker_ready,
        )
        try:
            _serve_in(runtime, mine)
        except CLIError as exc:
            print(f"pop3proto serve: error: {exc}", file=sys.stderr, flush=True)
            return exc.code
        return EXIT_OK

    def stray(index: int, pid: int, status: int) -> None:
        log.error(
            "worker %d (pid %d) ended with status %d: stopping the others", index, pid, status
        )

    log.info("starting %d workers", workers)
    return _workers.run_workers(
        [[lst.sock for lst in mine if lst.sock is not None] for mine in listeners_of],
        serve,
        on_stray=stray,
    )


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

    from ..server._asyncio import STLS_SUPPORTED, Server

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
            if not spec.quiet:
                _announce(listener, server.server_address, stls)
        spec.bound()
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

    from ..server._trio import Server

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
                    if not spec.quiet:
                        _announce(listener, address, spec.ssl_context is not None)
                spec.bound()
                signum = 0
                # The receiver never ends: the loop is left by the break.
                async for received in signals:  # pragma: no branch
                    signum = received
                    break
                _log_stop(signum, sum(s.active_connections for s in servers))
                for server in servers:
                    server.shutdown()

    try:
        trio.run(run)
    except CLIError:  # pragma: no cover - trio < 0.25 (strict groups off by default)
        raise
    except BaseException as exc:
        # Newer trio versions wrap failures of nursery tasks in groups.
        leaf = _first_error(exc)
        if leaf is exc:  # pragma: no cover - trio < 0.25, or an error outside the nursery
            raise
        raise leaf from None


def _serve_sync(spec: _ServeSpec) -> None:
    from ..server._sync import Server

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
            if not spec.quiet:
                _announce(listener, server.server_address, spec.ssl_context is not None)
        spec.bound()
        # A timed wait, so that the signal handler gets to run promptly on
        # every platform.
        while not stop.is_set():
            stop.wait(0.5)
        _log_stop(received[0] if received else 0, sum(s.active_connections for s in servers))
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)

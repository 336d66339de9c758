"""Server throughput: complete POP3 sessions per second under concurrent load.

Each server runs in a process of its own (so the load generator does not
share its GIL) and is driven by an asyncio load generator that keeps
``--concurrency`` connections busy for ``--duration`` seconds (after a
``--warmup``).  One *session* is::

    greeting, USER, PASS, then one pipelined batch: STAT, RETR 1 .. RETR n, QUIT

against a maildrop of ``--messages`` messages of ``--size`` octets (50 x
4 KB by default, stored with LF line ends as Maildir files usually are).
The greeting and the login go through the engine's client role; the
replies to the batch are compared byte for byte with the expected status
lines and dot-stuffed bodies; a session counts only if it is complete and
correct.  Connection ``i`` always logs in as user ``user<i>``, whose
maildrop nobody else locks.  Besides sessions/s, each server's CPU time
per session is reported (user + system, and the system part alone).

Servers measured:

* ``asyncio-*``, ``trio-*``, ``blocking-*``: this project's servers
  (``pop3proto.adapters``) on a ``MemoryBackend`` or a per-user
  ``MaildirBackend``;
* ``dovecot-maildir``: Dovecot 2.3 from Debian (``.ci/install-peers``) on
  per-user Maildirs, configured as in ``tests/dovecot.py`` (needs root);
* ``twisted-memory``: ``twisted.mail.pop3.POP3`` with an in-memory
  ``IMailbox``.  When this interpreter has no Twisted, it is installed
  with pip into a throw-away virtual environment for the run (never a
  dependency of the project); skipped with a note if that fails.
* ``asyncio2-maildir``: the asyncio server in two worker processes, each
  on its own socket of one ``SO_REUSEPORT`` group that routes connections
  by source address (what ``pop3proto serve --workers 2`` runs on Linux);
  its CPU figure counts both.  The load comes from one loopback address
  per concurrent session (127.0.0.1, 127.0.0.2, ...) for every server, so
  that the routing spreads it.

Run: ``python benchmarks/servers.py`` (``--quick`` for a short run,
``--only asyncio-maildir,dovecot-maildir`` for a subset, ``--profile
asyncio-maildir`` to print a cProfile of that server process under load,
with ``--profile-clock cpu`` to count CPU time rather than wall-clock time;
``--in-process`` to time our sessions without sockets or servers).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import functools
import grp
import importlib
import io
import ipaddress
import operator
import os
import pstats
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pop3proto
from pop3proto import (
    CLIENT,
    NEED_DATA,
    Connection,
    Greeting,
    Ok,
    Pass,
    User,
)

HOST = "127.0.0.1"
PASSWORD = "bench-password"
OURS = ("asyncio", "trio", "blocking")
ALL_SERVERS = (
    "asyncio-memory",
    "asyncio-maildir",
    "asyncio2-maildir",
    "trio-memory",
    "trio-maildir",
    "blocking-memory",
    "blocking-maildir",
    "twisted-memory",
    "dovecot-maildir",
)


# ---------------------------------------------------------------------------
# The mail
# ---------------------------------------------------------------------------


def make_messages(count: int, size: int) -> list[bytes]:
    """*count* distinct messages of about *size* octets, LF line ends, with
    the odd line starting with a dot (so dot-stuffing is exercised)."""
    messages = []
    for n in range(count):
        header = (
            f"From: sender{n}@example.org\nTo: user@example.org\n"
            f"Subject: benchmark message {n}\nMessage-ID: <bench{n}@example.org>\n\n"
        ).encode()
        lines = [header]
        total = len(header)
        i = 0
        while total < size:
            dot = b"." if i % 25 == 7 else b""
            line = dot + b"%04d %04d the quick brown fox jumps over the lazy dog 0123456789\n" % (
                n,
                i,
            )
            lines.append(line)
            total += len(line)
            i += 1
        messages.append(b"".join(lines))
    return messages


def crlf(message: bytes) -> bytes:
    return message.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def users(count: int) -> list[str]:
    return [f"user{i}" for i in range(count)]


def write_maildirs(
    root: Path, names: Sequence[str], messages: Sequence[bytes], owner: tuple[int, int] | None
) -> None:
    """One Maildir per user under *root* (``root/<user>/{cur,new,tmp}``)."""
    for user in names:
        box = root / user
        for sub in ("", "cur", "new", "tmp"):
            (box / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
            if owner is not None:
                os.chown(box / sub, *owner)
        for index, message in enumerate(messages):
            path = box / "cur" / f"{1_700_000_000 + index}.M{index}P1.bench:2,"
            path.write_bytes(message)
            os.utime(path, (1_700_000_000 + index, 1_700_000_000 + index))
            if owner is not None:
                os.chown(path, *owner)
    if owner is not None:
        os.chown(root, *owner)
    # Mail is delivered some time before its owner logs in: let the
    # directories' timestamps settle, so that a server may trust a listing
    # it made (our Maildir backend's SETTLED_NS; Dovecot has such a rule).
    from pop3proto.adapters.mailstore._maildir import SETTLED_NS

    time.sleep(SETTLED_NS / 1e9 + 0.1)


# ---------------------------------------------------------------------------
# Server processes (this script re-run with --serve)
# ---------------------------------------------------------------------------


def _announce(port: int) -> None:
    print(f"PORT {port}", flush=True)


def serve_ours(kind: str, backend_kind: str, root: str, n_users: int, n: int, size: int) -> None:
    """Run one of our servers until SIGTERM."""
    from pop3proto.adapters.server import (
        DictAuthenticator,
        MaildirBackend,
        MaildropBackend,
        MemoryBackend,
        ServerConfig,
    )

    names = users(n_users)
    backend: MaildropBackend
    if backend_kind == "memory":
        messages = make_messages(n, size)
        backend = MemoryBackend({user: messages for user in names})
    else:
        backend = MaildirBackend(root, per_user=True, create=False)
    auth = DictAuthenticator({user: PASSWORD for user in names})
    options: dict[str, Any] = {
        "host": HOST,
        "port": 0,
        # Every connection comes from 127.0.0.1: the per-address limits
        # (10 by default) would refuse half of the 20; Dovecot's own limit
        # is per user and address, and each connection here has its user.
        "config": ServerConfig(max_preauth_per_ip=None, max_sessions_per_ip=None),
        "max_connections": 10_000,
    }
    if kind == "asyncio2":
        # Two worker processes, each client address routed to one of them,
        # as ``pop3proto serve --workers 2`` runs them.
        from pop3proto.adapters.cli._workers import open_listener

        listeners, unrouted = open_listener(HOST, 0, 2)
        if unrouted:
            print(f"asyncio2: {unrouted}: the workers share one socket", file=sys.stderr)
        _announce(listeners[0].getsockname()[1])
        relay_to = os.fork()  # the parent relays SIGTERM and reaps the worker
        options["sock"] = listeners[0] if relay_to else listeners[-1]
        for other in listeners:
            if other is not options["sock"]:
                other.close()
        kind = "asyncio"
    else:
        relay_to = 0
    if kind == "asyncio":
        from pop3proto.adapters.asyncio import Server as AsyncioServer

        async def main_asyncio() -> None:
            async with AsyncioServer(backend, auth, **options) as server:
                loop = asyncio.get_running_loop()

                def on_term() -> None:
                    if relay_to:
                        os.kill(relay_to, signal.SIGTERM)
                    server.close()

                loop.add_signal_handler(signal.SIGTERM, on_term)
                if "sock" not in options:
                    _announce(server.server_address[1])
                await server.serve_forever()

        asyncio.run(main_asyncio())
        if relay_to:
            # Reaped, so that its CPU time counts in this process's children's.
            os.waitpid(relay_to, 0)
    elif kind == "trio":
        import trio  # type: ignore[import-untyped, unused-ignore]

        from pop3proto.adapters.trio import Server as TrioServer

        async def main_trio() -> None:
            server = TrioServer(backend, auth, **options)
            async with trio.open_nursery() as nursery:
                _, port = await nursery.start(server.serve)
                _announce(port)
                with trio.open_signal_receiver(signal.SIGTERM) as signals:
                    async for _ in signals:
                        server.shutdown()
                        break

        trio.run(main_trio)
    else:
        from pop3proto.adapters.sync import Server as BlockingServer

        server = BlockingServer(backend, auth, **options)
        signal.signal(
            signal.SIGTERM,
            lambda *_: threading.Thread(target=server.shutdown, daemon=True).start(),
        )
        _announce(server.server_address[1])
        server.serve_forever()
        server.server_close()


def serve_twisted(n_users: int, n: int, size: int) -> None:
    """Twisted's POP3 server with an in-memory mailbox per user, until SIGTERM."""
    # Imported by name: Twisted is optional, and its API is used untyped.
    checkers: Any = importlib.import_module("twisted.cred.checkers")
    portal: Any = importlib.import_module("twisted.cred.portal")
    protocol: Any = importlib.import_module("twisted.internet.protocol")
    pop3: Any = importlib.import_module("twisted.mail.pop3")
    implementer: Any = importlib.import_module("zope.interface").implementer
    reactor: Any = importlib.import_module("twisted.internet.reactor")

    messages = make_messages(n, size)
    sizes = [len(crlf(m)) for m in messages]

    @implementer(pop3.IMailbox)
    class Mailbox:
        def __init__(self) -> None:
            self.deleted: set[int] = set()

        def listMessages(self, i: int | None = None) -> Any:
            if i is None:
                return [0 if k in self.deleted else s for k, s in enumerate(sizes)]
            return sizes[i]

        def getMessage(self, i: int) -> io.BytesIO:
            return io.BytesIO(messages[i])

        def getUidl(self, i: int) -> bytes:
            return b"uid%d" % i

        def deleteMessage(self, i: int) -> None:
            self.deleted.add(i)

        def undeleteMessages(self) -> None:
            self.deleted.clear()

        def sync(self) -> None:
            pass

    @implementer(portal.IRealm)
    class Realm:
        def requestAvatar(self, avatar_id: Any, mind: Any, *interfaces: Any) -> Any:
            return pop3.IMailbox, Mailbox(), lambda: None

    checker = checkers.InMemoryUsernamePasswordDatabaseDontUse(
        **{user: PASSWORD.encode() for user in users(n_users)}
    )
    the_portal = portal.Portal(Realm(), [checker])

    factory = protocol.ServerFactory()
    factory.noisy = False

    def build_protocol(addr: Any) -> Any:
        proto = pop3.POP3()
        proto.portal = the_portal
        proto.factory = factory
        return proto

    factory.buildProtocol = build_protocol
    port = reactor.listenTCP(0, factory, backlog=128, interface=HOST)
    reactor.callWhenRunning(_announce, port.getHost().port)
    reactor.run()  # stops on SIGTERM


def child_main(args: argparse.Namespace) -> None:
    kind = args.serve
    profile = None
    if args.profile_out:
        # "cpu": this thread's CPU time, so that time spent waiting for the
        # CPU on a busy machine is not charged to whatever was running
        # (a wall-clock profile blames socket sends, after which the kernel
        # often switches to the load generator).  Each reading is a system
        # call, which inflates the share of small Python functions.
        timer = time.thread_time if args.profile_clock == "cpu" else time.perf_counter
        profile = cProfile.Profile(timer)
    if profile is not None:
        profile.enable()
    try:
        if kind == "twisted":
            serve_twisted(args.users, args.messages, args.size)
        else:
            serve_ours(kind, args.backend, args.root, args.users, args.messages, args.size)
    finally:
        if profile is not None:
            profile.disable()
            profile.dump_stats(args.profile_out)


# ---------------------------------------------------------------------------
# Dovecot
# ---------------------------------------------------------------------------


def find_dovecot() -> str | None:
    found = shutil.which("dovecot")
    if found:
        return found
    for candidate in ("/usr/sbin/dovecot", "/usr/local/sbin/dovecot"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def dovecot_config(tmp: Path, port: int, root: Path) -> str:
    """A minimal Dovecot 2.3 configuration in the manner of tests/dovecot.py
    (static userdb as nobody, {PLAIN} passwd-file, no auth failure delay,
    mail_fsync=never), with one Maildir per user and no TLS."""
    return f"""\
protocols = pop3
listen = {HOST}
base_dir = {tmp / "run"}
state_dir = {tmp / "state"}
instance_name = pop3proto-bench-{os.getpid()}
log_path = {tmp / "dovecot.log"}
info_log_path = {tmp / "dovecot.log"}
default_internal_user = dovecot
default_login_user = dovenull
shutdown_clients = yes
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {tmp / "passwd"}
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={root}/%u mail=maildir:{root}/%u
}}
first_valid_uid = 1
mail_fsync = never
pop3_uidl_format = %08Xu%08Xv
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    address = {HOST}
    port = {port}
  }}
}}
service imap-login {{
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
"""


@contextlib.contextmanager
def run_dovecot(n_users: int, messages: Sequence[bytes]) -> Iterator[tuple[int, int]]:
    def fill(root: Path, owner: tuple[int, int]) -> list[str]:
        write_maildirs(root, users(n_users), messages, owner)
        return users(n_users)

    with dovecot_on_maildirs(fill, PASSWORD) as running:
        yield running


@contextlib.contextmanager
def dovecot_on_maildirs(
    fill: Callable[[Path, tuple[int, int]], Sequence[str]], password: str
) -> Iterator[tuple[int, int]]:
    """Run Dovecot on the Maildirs that ``fill(root, owner)`` writes (one
    per user, ``root/<user>``, owned by *owner*: nobody) and yield
    ``(port, master pid)``; every user it returns gets *password*.  Raises
    :class:`Skip` when Dovecot cannot run here (used by clients.py too)."""
    binary = find_dovecot()
    if binary is None:
        raise Skip("dovecot is not installed (bash .ci/install-peers)")
    if os.geteuid() != 0:
        raise Skip("Dovecot needs root here (it switches to 'nobody' for mail)")
    try:
        owner = (pwd.getpwnam("nobody").pw_uid, grp.getgrnam("nogroup").gr_gid)
        pwd.getpwnam("dovecot")
        pwd.getpwnam("dovenull")
    except KeyError as exc:
        raise Skip(f"a system user or group is missing: {exc}") from None
    tmp = Path(tempfile.mkdtemp(prefix="p3bench-dc-"))
    proc: subprocess.Popen[bytes] | None = None
    try:
        tmp.chmod(0o755)
        (tmp / "state").mkdir()
        root = tmp / "mail"
        root.mkdir()
        names = fill(root, owner)
        passwd = tmp / "passwd"
        passwd.write_text("".join(f"{u}:{{PLAIN}}{password}\n" for u in names))
        passwd.chmod(0o644)
        port = free_port()
        config = tmp / "dovecot.conf"
        config.write_text(dovecot_config(tmp, port, root))
        proc = subprocess.Popen(
            [binary, "-F", "-c", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_for_port(port, proc)
        yield port, proc.pid  # start_new_session: the master leads a session
    finally:
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with status {proc.returncode}")
        try:
            with socket.create_connection((HOST, port), timeout=1.0) as sock:
                sock.recv(100)
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {HOST}:{port}") from None
            time.sleep(0.05)


# ---------------------------------------------------------------------------
# The load generator
# ---------------------------------------------------------------------------


class Skip(Exception):
    """A server that cannot be measured here (the reason is printed)."""


class SessionFailed(Exception):
    pass


@dataclass(frozen=True)
class Workload:
    """What one session sends and must receive."""

    count: int
    sizes: tuple[int, ...]  # octets of each message as RETR delivers it
    stuffed: tuple[bytes, ...]  # each body as it must appear on the wire
    batch: bytes  # STAT, RETR 1..n, QUIT

    @classmethod
    def of(cls, messages: Sequence[bytes]) -> Workload:
        bodies = [crlf(m) for m in messages]
        stuffed = []
        for body in bodies:
            wire = body.replace(b"\r\n.", b"\r\n..")
            stuffed.append(b"." + wire if wire.startswith(b".") else wire)
        count = len(messages)
        batch = b"STAT\r\n" + b"".join(b"RETR %d\r\n" % i for i in range(1, count + 1))
        return cls(count, tuple(map(len, bodies)), tuple(stuffed), batch + b"QUIT\r\n")

    @property
    def reply_octets(self) -> int:
        """About how many octets the batch's replies take (the status
        lines' wording differs between servers)."""
        return sum(map(len, self.stuffed)) + 64 * (self.count + 2)

    def check(self, data: bytes | bytearray, end: int | None = None) -> int:
        """Check the replies to the batch in ``data[:end]``, byte for byte;
        return the message octets."""
        if end is None:
            end = len(data)
        if not data.startswith(b"+OK %d %d" % (self.count, sum(self.sizes)), 0, end):
            raise SessionFailed(f"STAT: {bytes(data[:40])!r}")
        pos = data.index(b"\r\n", 0, end) + 2
        for number, body in enumerate(self.stuffed, 1):
            if not data.startswith(b"+OK", pos, end):
                raise SessionFailed(f"RETR {number}: {bytes(data[pos : pos + 40])!r}")
            pos = data.index(b"\r\n", pos, end) + 2
            if not data.startswith(body, pos, end) or not data.startswith(
                b".\r\n", pos + len(body), end
            ):
                raise SessionFailed(f"RETR {number}: wrong body")
            pos += len(body) + 3
        if not data.startswith(b"+OK", pos, end) or data.find(b"\r\n", pos, end) != end - 2:
            raise SessionFailed(f"QUIT: {bytes(data[pos : pos + 40])!r}")
        return sum(self.sizes)


class _SessionProtocol(asyncio.Protocol):
    """One session as an asyncio protocol (no streams: the load generator
    shares the machine's cores with the server measured, so it should cost
    as little as possible without changing the load).

    The greeting and the login go through the engine's client role; once
    PASS is accepted the batch is written, and every octet after that is
    kept, unread, until the server closes after QUIT.  ``done`` gets those
    octets, or the exception that ended the session early.
    """

    def __init__(self, user: str, work: Workload, done: asyncio.Future[bytes]) -> None:
        self.user = user
        self.work = work
        self.done = done
        self.conn = Connection(CLIENT)
        self.step = 0  # 0 greeting, 1 USER, 2 PASS, 3 the batch's replies
        self.chunks: list[bytes] = []
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def _fail(self, exc: Exception) -> None:
        if not self.done.done():
            self.done.set_exception(exc)
        assert self.transport is not None
        self.transport.abort()

    def data_received(self, data: bytes) -> None:
        if self.step == 3:
            self.chunks.append(data)
            return
        conn = self.conn
        transport = self.transport
        assert transport is not None
        try:
            conn.receive_data(data)
            while self.step < 3:
                event = conn.next_event()
                if event is NEED_DATA:
                    return
                if self.step == 0:
                    if not isinstance(event, Greeting):
                        raise SessionFailed("no greeting")
                    transport.write(conn.send(User(self.user)))
                elif self.step == 1:
                    if not isinstance(event, Ok):
                        raise SessionFailed("USER refused")
                    transport.write(conn.send(Pass(PASSWORD)))
                else:
                    if not isinstance(event, Ok):
                        raise SessionFailed(f"PASS refused: {event}")
                    transport.write(self.work.batch)
                self.step += 1
        except (SessionFailed, pop3proto.ProtocolError) as exc:
            self._fail(exc)

    def eof_received(self) -> bool:
        return False  # the transport closes; connection_lost() follows

    def connection_lost(self, exc: Exception | None) -> None:
        if self.done.done():
            return
        if exc is not None:
            self.done.set_exception(exc)
        elif self.step < 3:
            self.done.set_exception(SessionFailed("closed during the login"))
        else:
            self.done.set_result(b"".join(self.chunks))


async def one_session(host: str, port: int, user: str, work: Workload, source: str) -> int:
    """One complete session; returns the message octets received.

    The connection comes from the loopback address *source*.  The
    greeting and the login go through the engine's client role; the
    batch is sent as precomputed bytes and its replies, read until the
    server closes after QUIT, are checked against the expected wire bytes
    (the engine's body parser would cost the load generator about as much
    CPU as the server spends).
    """
    loop = asyncio.get_running_loop()
    done: asyncio.Future[bytes] = loop.create_future()
    transport, _ = await loop.create_connection(
        lambda: _SessionProtocol(user, work, done), host, port, local_addr=(source, 0)
    )
    try:
        return work.check(await done)
    finally:
        transport.close()


@dataclass
class Result:
    name: str
    sessions: int = 0
    errors: int = 0
    seconds: float = 0.0
    octets: int = 0
    client_cpu: float = 0.0  # load generator CPU seconds per second
    server_cpu: float | None = None  # server CPU seconds per second
    server_system: float = 0.0  # of which in the kernel (system time)
    first_error: str = ""

    @property
    def rate(self) -> float:
        return self.sessions / self.seconds if self.seconds else 0.0

    @property
    def cpu_ms(self) -> float | None:
        """Server CPU milliseconds per session."""
        if self.server_cpu is None or not self.sessions:
            return None
        return self.server_cpu * self.seconds / self.sessions * 1000

    @property
    def system_ms(self) -> float | None:
        """Of :attr:`cpu_ms`, the milliseconds spent in the kernel."""
        if self.server_cpu is None or not self.sessions:
            return None
        return self.server_system * self.seconds / self.sessions * 1000


class _Meter:
    """The load generator's and the server's CPU time over the measured
    seconds, into a :class:`Result`."""

    def __init__(self, server_cpu: CpuProbe | None) -> None:
        self.server_cpu = server_cpu
        self.cpu0 = time.process_time()
        self.server0 = server_cpu() if server_cpu else (0.0, 0.0)

    def stop(self, result: Result, duration: float) -> None:
        result.client_cpu = (time.process_time() - self.cpu0) / duration
        if self.server_cpu is not None:
            (user0, system0), (user1, system1) = self.server0, self.server_cpu()
            result.server_cpu = (user1 - user0 + system1 - system0) / duration
            result.server_system = (system1 - system0) / duration
        result.seconds = duration


async def generate_load(
    name: str,
    port: int,
    concurrency: int,
    work: Workload,
    warmup: float,
    duration: float,
    server_cpu: CpuProbe | None = None,
    sources: int | None = None,
) -> Result:
    """Keep *concurrency* sessions going; count those that end in the
    *duration* seconds after *warmup*.  Session slot *i* connects from
    127.0.0.(1 + *i* mod *sources*); *sources* defaults to one address per
    slot."""
    result = Result(name)
    names = users(concurrency)
    loop = asyncio.get_running_loop()
    t0 = loop.time() + warmup
    t1 = t0 + duration

    async def worker(user: str, source: str) -> None:
        while loop.time() < t1:
            try:
                octets = await one_session(HOST, port, user, work, source)
            except (OSError, SessionFailed, pop3proto.ProtocolError) as exc:
                if t0 <= loop.time() <= t1:
                    result.errors += 1
                    result.first_error = result.first_error or repr(exc)
                await asyncio.sleep(0.01)
                continue
            if t0 <= loop.time() <= t1:
                result.sessions += 1
                result.octets += octets

    tasks = [
        asyncio.create_task(worker(u, source))
        for u, source in zip(names, source_addresses(concurrency, sources), strict=True)
    ]
    await asyncio.sleep(warmup)
    meter = _Meter(server_cpu)
    await asyncio.sleep(max(0.0, t1 - loop.time()))
    meter.stop(result, duration)
    # Sessions still running finish (uncounted); a stuck one is cancelled.
    _, pending = await asyncio.wait(tasks, timeout=30)
    for task in pending:
        task.cancel()
    return result


class _Slot:
    """One session slot of :func:`generate_load_lean`: a connection, where
    its session is (0 greeting, 1 USER, 2 PASS, 3 the batch's replies), and
    the buffer its replies are read into.

    The buffer is allocated once and reused by every session of the slot:
    a fresh 256 KiB ``bytes`` per ``recv`` and a join per session made the
    allocator grow and trim its heap about once a session, and the page
    faults that follow cost the load generator kernel time that the server
    measured, on the same two cores, could have used."""

    __slots__ = ("buf", "filled", "sock", "source", "step", "user", "view")

    def __init__(self, user: str, source: str, capacity: int) -> None:
        self.user = user
        self.source = source
        self.sock: socket.socket | None = None
        self.step = 0
        self.buf = bytearray(capacity)
        self.view = memoryview(self.buf)
        self.filled = 0  # octets of this step's replies in buf

    def grow(self) -> None:
        """Double the buffer (a server whose replies are longer than
        expected)."""
        self.view.release()
        self.buf.extend(bytes(len(self.buf)))
        self.view = memoryview(self.buf)


def source_addresses(concurrency: int, sources: int | None) -> list[str]:
    """The loopback address each of *concurrency* session slots connects
    from: one each (127.0.0.1 and up) by default, so that address routing
    (``asyncio2``) spreads the load as many clients would; or *sources*
    addresses taken in turn."""
    spread = concurrency if sources is None else sources
    return [str(ipaddress.IPv4Address(HOST) + i % spread) for i in range(concurrency)]


def generate_load_lean(
    name: str,
    port: int,
    concurrency: int,
    work: Workload,
    warmup: float,
    duration: float,
    server_cpu: CpuProbe | None = None,
    sources: int | None = None,
) -> Result:
    """:func:`generate_load`'s sessions, driven by one selector loop.

    The same sessions from the same addresses, checked the same way; only
    the login replies are checked for ``+OK`` rather than parsed by the
    engine.  Without asyncio's transports, futures and tasks it costs
    about half the CPU per session, which the server measured can use:
    both share the machine's two cores.
    """
    import selectors

    result = Result(name)
    sel = selectors.DefaultSelector()
    capacity = work.reply_octets + 65536
    slots = [
        _Slot(user, source, capacity)
        for user, source in zip(
            users(concurrency), source_addresses(concurrency, sources), strict=True
        )
    ]
    logins = {
        slot.user: (f"USER {slot.user}\r\n".encode(), f"PASS {PASSWORD}\r\n".encode())
        for slot in slots
    }
    batch = work.batch
    now = time.monotonic()
    t0 = now + warmup
    t1 = t0 + duration
    retry: list[tuple[float, _Slot]] = []  # (when, slot) after a failure
    meter: _Meter | None = None

    def start(slot: _Slot) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.bind((slot.source, 0))
        sock.connect_ex((HOST, port))  # EINPROGRESS; the greeting says it is up
        slot.sock, slot.step, slot.filled = sock, 0, 0
        sel.register(sock, selectors.EVENT_READ, slot)

    def finish(slot: _Slot, error: BaseException | None) -> None:
        sock = slot.sock
        assert sock is not None
        sel.unregister(sock)
        sock.close()
        slot.sock = None
        at = time.monotonic()
        counted = t0 <= at <= t1
        if error is None:
            try:
                octets = work.check(slot.buf, slot.filled)
            except SessionFailed as exc:
                error = exc
            else:
                if counted:
                    result.sessions += 1
                    result.octets += octets
        if error is not None:
            if counted:
                result.errors += 1
                result.first_error = result.first_error or repr(error)
            if at < t1:
                retry.append((at + 0.01, slot))
            return
        if at < t1:
            start(slot)

    def readable(slot: _Slot) -> None:
        sock = slot.sock
        assert sock is not None
        if slot.filled == len(slot.buf):
            slot.grow()
        try:
            n = sock.recv_into(slot.view[slot.filled :])
        except OSError as exc:
            finish(slot, exc)
            return
        if slot.step == 3:
            if n:
                slot.filled += n
            else:
                finish(slot, None)  # the server closed after QUIT
            return
        if not n:
            finish(slot, SessionFailed("closed during the login"))
            return
        slot.filled += n
        buf, end = slot.buf, slot.filled
        if not buf.endswith(b"\r\n", 0, end):
            return  # the rest of the reply is on its way
        slot.filled = 0
        if not buf.startswith(b"+OK", 0, end):
            what = ("greeting", "USER", "PASS")[slot.step]
            finish(slot, SessionFailed(f"{what}: {bytes(buf[: min(end, 40)])!r}"))
            return
        user_line, pass_line = logins[slot.user]
        sock.send((user_line, pass_line, batch)[slot.step])  # short: fits the buffer
        slot.step += 1

    for slot in slots:
        start(slot)
    while True:
        now = time.monotonic()
        if meter is None and now >= t0:
            meter = _Meter(server_cpu)
        if meter is not None and now >= t1:
            break
        if retry and retry[0][0] <= now:
            _, slot = retry.pop(0)
            start(slot)
        timeout = min((t0 if meter is None else t1) - now, 0.01 if retry else 1.0)
        for key, _ in sel.select(max(timeout, 0.0)):
            readable(key.data)
    meter.stop(result, duration)
    # Sessions still running finish (uncounted); a stuck one is dropped.
    deadline = time.monotonic() + 30
    while sel.get_map() and time.monotonic() < deadline:
        for key, _ in sel.select(1.0):
            readable(key.data)
    for slot in slots:
        if slot.sock is not None:
            sel.unregister(slot.sock)
            slot.sock.close()
    sel.close()
    return result


def _proc_cpu(pid: int) -> tuple[int, float, float]:
    """(session id, user seconds, system seconds) of *pid*, reaped children
    included (utime + cutime, stime + cstime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    user = (int(fields[11]) + int(fields[13])) / ticks
    system = (int(fields[12]) + int(fields[14])) / ticks
    return int(fields[3]), user, system


#: A probe: (user, system) CPU seconds used so far by the server.
CpuProbe = Callable[[], tuple[float, float]]


def _children(pid: int) -> list[int]:
    """The live child processes of *pid* (Linux ``/proc/<pid>/task/*/children``)."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                found += map(int, Path(f"/proc/{pid}/task/{task}/children").read_text().split())
    return found


def process_cpu(pid: int) -> CpuProbe:
    """CPU seconds used by *pid* so far, by its live child processes (the
    second worker of ``asyncio2``) and by the children it reaped."""

    def probe() -> tuple[float, float]:
        total_user = total_system = 0.0
        for each in (pid, *_children(pid)):
            try:
                _, user, system = _proc_cpu(each)
            except (OSError, ValueError, IndexError):
                continue
            total_user += user
            total_system += system
        return total_user, total_system

    return probe


def session_cpu(sid: int) -> CpuProbe:
    """CPU seconds used so far by every process of session *sid* (Dovecot's
    master, its long-lived services and, through the reaping parents'
    cutime/cstime, its finished per-connection processes)."""

    def probe() -> tuple[float, float]:
        total_user = total_system = 0.0
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                session, user, system = _proc_cpu(int(entry))
            except (OSError, ValueError, IndexError):
                continue
            if session == sid:
                total_user += user
                total_system += system
        return total_user, total_system

    return probe


def run_load(
    name: str,
    port: int,
    args: argparse.Namespace,
    work: Workload,
    server_cpu: CpuProbe | None,
) -> Result:
    if getattr(args, "loadgen", "lean") == "lean":
        return generate_load_lean(
            name, port, args.concurrency, work, args.warmup, args.duration, server_cpu
        )
    return asyncio.run(
        generate_load(
            name,
            port,
            args.concurrency,
            work,
            args.warmup,
            args.duration,
            server_cpu,
        )
    )


# ---------------------------------------------------------------------------
# Driving each server
# ---------------------------------------------------------------------------


def twisted_python(tmp: Path) -> str:
    """A Python that imports Twisted: this one, or a throw-away virtual
    environment made for the run (Twisted is a comparison peer, never a
    dependency of the project)."""
    try:
        importlib.import_module("twisted.mail.pop3")
        return sys.executable
    except ImportError:
        pass
    venv = tmp / "twisted-venv"
    python = venv / "bin" / "python"
    if not python.exists():
        print("installing Twisted into a throw-away venv ...", file=sys.stderr, flush=True)
        try:
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            subprocess.run(
                [str(python), "-m", "pip", "install", "-q", "twisted"],
                check=True,
                stdout=subprocess.DEVNULL,
            )
        except (OSError, subprocess.CalledProcessError) as exc:
            raise Skip(f"Twisted could not be installed: {exc}") from None
    return str(python)


def start_child(
    kind: str,
    backend: str,
    root: Path,
    args: argparse.Namespace,
    profile_out: str | None,
    python: str = sys.executable,
) -> tuple[subprocess.Popen[str], int]:
    command = [
        python,
        str(Path(__file__).resolve()),
        "--profile-clock",
        args.profile_clock,
        "--serve",
        kind,
        "--backend",
        backend,
        "--root",
        str(root),
        "--users",
        str(args.concurrency),
        "--messages",
        str(args.messages),
        "--size",
        str(args.size),
    ]
    if profile_out:
        command += ["--profile-out", profile_out]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("PORT "):
        proc.kill()
        raise RuntimeError(f"{kind} server did not start (said {line!r})")
    return proc, int(line.split()[1])


def stop_child(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def measure(name: str, args: argparse.Namespace, messages: Sequence[bytes], tmp: Path) -> Result:
    work = Workload.of(messages)
    kind, backend = name.split("-")
    if kind == "dovecot":
        with run_dovecot(args.concurrency, messages) as (port, sid):
            return run_load(name, port, args, work, session_cpu(sid))
    python = twisted_python(tmp) if kind == "twisted" else sys.executable
    root = tmp / "maildirs"
    if backend == "maildir" and not root.exists():
        write_maildirs(root, users(args.concurrency), messages, None)
    profile_out = str(tmp / f"{name}.prof") if args.profile == name else None
    proc, port = start_child(kind, backend, root, args, profile_out, python)
    try:
        result = run_load(name, port, args, work, process_cpu(proc.pid))
    finally:
        stop_child(proc)
    if profile_out:
        print_profile(name, profile_out, args.profile_lines, args.profile_sort)
    return result


def in_process(args: argparse.Namespace, messages: Sequence[bytes]) -> None:
    """``--in-process``: our sessions driven directly, without sockets.

    The same session as the load generator's (login, then the pipelined
    batch, checked byte for byte) fed to a ``ServerSession`` in this
    process, on each backend: what the code shared by our three servers
    costs per session, independently of the machine's load, of the
    adapters and of the kernel.  Prints the best and the median CPU time
    per session over batches of 20 sessions.
    """
    from pop3proto.adapters._seam import Send
    from pop3proto.adapters.server import (
        DictAuthenticator,
        MaildirBackend,
        MaildropBackend,
        MemoryBackend,
        ServerConfig,
        ServerSession,
    )

    work = Workload.of(messages)
    user = "user0"
    auth = DictAuthenticator({user: PASSWORD})
    config = ServerConfig()
    login = [f"USER {user}\r\n".encode(), f"PASS {PASSWORD}\r\n".encode()]
    batch = 20
    print(f"in process, no sockets: CPU ms per session (best / median batch of {batch})")
    with tempfile.TemporaryDirectory(prefix="p3bench-") as tmp:
        write_maildirs(Path(tmp), [user], messages, None)
        backends: dict[str, MaildropBackend] = {
            "memory": MemoryBackend({user: messages}),
            "maildir": MaildirBackend(tmp, per_user=True, create=False),
        }
        for name, backend in backends.items():

            def one(backend: MaildropBackend = backend) -> bytes:
                session = ServerSession(backend, auth, config, is_loopback=True, peer="-")
                session.greeting()
                for line in login:
                    session.receive(line)
                    for _ in session.actions():
                        pass
                session.receive(work.batch)
                actions = session.actions()
                return b"".join([a.data for a in actions if isinstance(a, Send)])

            work.check(one())
            times: list[float] = []
            start = time.process_time()
            while time.process_time() - start < args.warmup + args.duration:
                t0 = time.process_time()
                for _ in range(batch):
                    one()
                if t0 - start >= args.warmup:
                    times.append((time.process_time() - t0) / batch * 1000)
            times.sort()
            print(f"  {name:<8} {times[0]:6.3f} / {times[len(times) // 2]:6.3f}")


#: Where a profiled function lives -> the layer it belongs to.
_LAYERS = (
    ("adapters/server/_asyncio.py", "asyncio adapter"),
    ("adapters/server/_trio.py", "trio adapter"),
    ("adapters/server/_sync.py", "blocking adapter"),
    ("adapters/server/_loop.py", "server loop (adapters/server/_loop.py)"),
    ("adapters/server/", "session (adapters/server/)"),
    ("adapters/mailstore/_users.py", "authenticator (adapters/mailstore/_users.py)"),
    ("adapters/mailstore/", "maildrop (adapters/mailstore/)"),
    ("/pop3proto/", "engine (pop3proto/)"),
    ("/asyncio/", "asyncio library"),
    ("/trio/", "trio library"),
    ("/selectors.py", "asyncio library"),
)


def _layer(filename: str, function: str) -> str:
    for needle, layer in _LAYERS:
        if needle in filename:
            return layer
    if filename == "~":
        if "socket" in function or "epoll" in function or "select" in function:
            return "socket calls (kernel)"
        return "C built-ins called by the above"
    return "other"


def print_profile(name: str, path: str, lines: int, sort: str = "tottime") -> None:
    """Own time by layer, then the top functions by own time.

    The time of a C built-in (``bytes.replace``, ``open``...) is charged to
    the layers of its callers, in proportion; socket and poll calls are a
    layer of their own."""
    stats = pstats.Stats(path)
    raw: dict[tuple[str, int, str], tuple[Any, ...]] = stats.stats  # type: ignore[attr-defined]
    layers: dict[str, float] = {}
    total = 0.0
    for (filename, _, function), (_, _, tottime, _, callers) in raw.items():
        total += tottime
        layer = _layer(filename, function)
        if layer != "C built-ins called by the above" or not callers:
            layers[layer] = layers.get(layer, 0.0) + tottime
            continue
        shares = {caller: entry[2] for caller, entry in callers.items()}
        weight = sum(shares.values()) or 1.0
        for (caller_file, _, caller_function), share in shares.items():
            caller_layer = _layer(caller_file, caller_function)
            layers[caller_layer] = layers.get(caller_layer, 0.0) + tottime * share / weight
    print(f"\n--- cProfile of the {name} server process: own time by layer ---")
    for layer, seconds in sorted(layers.items(), key=lambda item: -item[1]):
        if seconds / total >= 0.0005:
            print(f"{seconds / total:6.1%}  {layer}")
    out = io.StringIO()
    stats = pstats.Stats(path, stream=out)
    stats.strip_dirs().sort_stats(sort).print_stats(lines)
    print(f"--- the top {lines} functions by {sort} ---")
    print(out.getvalue())


def report(
    results: Sequence[Result], skipped: dict[str, str], medians: dict[str, float] | None = None
) -> None:
    """The table (the best round of each server), then the targets: each
    ratio of best rounds, and of median rounds when there were several
    (the lower median of an even count)."""
    print()
    header = (
        f"{'server':<18} {'sessions/s':>10} {'MB/s':>6} {'errors':>6} "
        f"{'server CPU':>10} {'CPU ms/session':>14} {'(kernel)':>8} {'loadgen CPU':>11}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        server_cpu = "-" if r.server_cpu is None else f"{r.server_cpu:.0%}"
        cpu_ms = "-" if r.cpu_ms is None else f"{r.cpu_ms:.2f}"
        system_ms = "-" if r.system_ms is None else f"{r.system_ms:.2f}"
        print(
            f"{r.name:<18} {r.rate:>10.1f} {r.octets / r.seconds / 1e6:>6.1f} {r.errors:>6} "
            f"{server_cpu:>10} {cpu_ms:>14} {system_ms:>8} {r.client_cpu:>11.0%}"
        )
        if r.first_error:
            print(f"    first error: {r.first_error}")
    for name, reason in skipped.items():
        print(f"{name:<18} skipped: {reason}")
    rates = {r.name: r.rate for r in results if r.sessions}
    if medians is not None:
        print()
        print("median sessions/s over the rounds:")
        for r in results:
            print(f"  {r.name:<18} {medians[r.name]:>10.1f}")

    def ratio(a: str, b: str, rates: dict[str, float] = rates) -> float | None:
        if a in rates and b in rates and rates[b]:
            return rates[a] / rates[b]
        return None

    print()
    checks: list[tuple[str, float | None, Callable[[float], bool], str]] = [
        (
            "asyncio-maildir / dovecot-maildir",
            ratio("asyncio-maildir", "dovecot-maildir"),
            lambda x: x >= 2.0,
            ">= 2.0",
        ),
        (
            "asyncio-memory / twisted-memory",
            ratio("asyncio-memory", "twisted-memory"),
            lambda x: x >= 1.2,
            ">= 1.2",
        ),
    ]
    checks += [
        (
            "asyncio-maildir / dovecot-maildir (#13)",
            ratio("asyncio-maildir", "dovecot-maildir"),
            lambda x: x >= 4.0,
            ">= 4.0",
        ),
        (
            "asyncio2-maildir / asyncio-maildir",
            ratio("asyncio2-maildir", "asyncio-maildir"),
            lambda x: x >= 1.6,
            ">= 1.6",
        ),
    ]
    # Issue 13: blocking within 30% of asyncio, trio within 15%.
    for kind, floor in (("trio", 0.85), ("blocking", 0.7)):
        for backend in ("memory", "maildir"):
            checks.append(
                (
                    f"{kind}-{backend} / asyncio-{backend}",
                    ratio(f"{kind}-{backend}", f"asyncio-{backend}"),
                    functools.partial(operator.le, floor),
                    f">= {floor}",
                )
            )
    for label, value, ok, target in checks:
        if value is None:
            continue
        verdict = "ok" if ok(value) else "MISSED"
        line = f"{label:<40} {value:5.2f}  (target {target}: {verdict})"
        if medians is not None:
            a, b = label.split(" (")[0].split(" / ")
            median = ratio(a, b, medians)
            if median is not None:
                line += f"; median {median:5.2f} ({'ok' if ok(median) else 'MISSED'})"
        print(line)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before measuring")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent connections")
    parser.add_argument("--messages", type=int, default=50, help="messages per maildrop")
    parser.add_argument("--size", type=int, default=4096, help="octets per message")
    parser.add_argument("--only", default="", help="comma-separated server names")
    parser.add_argument("--quick", action="store_true", help="3 s per server, 1 s warm-up")
    parser.add_argument(
        "--rounds", type=int, default=1, help="measure every server this often, keep the best"
    )
    parser.add_argument("--profile", default="", help="a server name to cProfile")
    parser.add_argument("--profile-lines", type=int, default=25)
    parser.add_argument(
        "--profile-sort",
        choices=("tottime", "cumulative", "ncalls"),
        default="tottime",
        help="how --profile orders the functions it lists",
    )
    parser.add_argument(
        "--profile-clock",
        choices=("wall", "cpu"),
        default="wall",
        help="what --profile measures: wall-clock time, or the server thread's CPU time",
    )
    parser.add_argument(
        "--loadgen",
        choices=("lean", "asyncio"),
        default="lean",
        help="the load generator: one selector loop (lean), or asyncio protocols, "
        "which cost the shared machine about twice the CPU per session",
    )
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="drive our ServerSession directly, without sockets or servers: CPU ms "
        "per session of the code every server shares (engine, session, maildrop)",
    )
    # Internal: run one server in this process.
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--backend", default="memory", help=argparse.SUPPRESS)
    parser.add_argument("--root", default="", help=argparse.SUPPRESS)
    parser.add_argument("--users", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--profile-out", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        child_main(args)
        return
    if args.quick:
        args.duration, args.warmup = 3.0, 1.0
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(ALL_SERVERS)
    unknown = [n for n in names if n not in ALL_SERVERS]
    if unknown:
        parser.error(f"unknown servers: {', '.join(unknown)}; choose from {', '.join(ALL_SERVERS)}")
    messages = make_messages(args.messages, args.size)
    if args.in_process:
        print(
            f"pop3proto {pop3proto.__version__}, Python {sys.version.split()[0]}; "
            f"{args.messages} x {args.size} octets per session, "
            f"{args.warmup:g} s warm-up + {args.duration:g} s per backend"
        )
        in_process(args, messages)
        return
    print(
        f"pop3proto {pop3proto.__version__}, Python {sys.version.split()[0]}, "
        f"{os.cpu_count()} CPUs; {args.concurrency} connections, "
        f"{args.messages} x {args.size} octets per session, "
        f"{args.warmup:g} s warm-up + {args.duration:g} s per server"
    )
    runs: dict[str, list[Result]] = {}
    skipped: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="p3bench-") as tmp:
        for round_number in range(1, args.rounds + 1):
            if args.rounds > 1:
                print(f" round {round_number} of {args.rounds}")
            for name in names:
                if name in skipped:
                    continue
                print(f"  {name} ...", end="", flush=True)
                try:
                    result = measure(name, args, messages, Path(tmp))
                except Skip as exc:
                    skipped[name] = str(exc)
                    print(f" skipped: {exc}")
                    continue
                cpu_ms = "" if result.cpu_ms is None else f", {result.cpu_ms:.2f} CPU ms/session"
                print(f" {result.rate:.1f} sessions/s{cpu_ms}", flush=True)
                runs.setdefault(name, []).append(result)
    # Rounds interleave the servers, so a burst of load from elsewhere on
    # the machine hurts one round of each rather than all rounds of one.
    results = [max(runs[name], key=lambda r: r.rate) for name in names if name in runs]
    medians = {
        name: sorted(r.rate for r in runs[name])[(len(runs[name]) - 1) // 2] for name in runs
    }
    report(results, skipped, medians if args.rounds > 1 else None)


if __name__ == "__main__":
    main()

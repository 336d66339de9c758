"""Client throughput: download a whole mailbox with three blocking clients.

Clients measured (each logs in with USER/PASS, retrieves every message
once, in order, and sends QUIT; nothing is deleted):

* ``poplib``: the standard library's ``poplib.POP3``, ``retr(n)`` per message;
* ``drop-in``: ``pop3proto.adapters.sync.POP3`` (the poplib-compatible
  class), ``retr(n)`` per message;
* ``retrieve_many``: ``pop3proto.adapters.sync.Client.retrieve_many``
  (RETRs pipelined when the server offers PIPELINING).

and, as a yardstick only, ``floor``: a bare socket loop that sends
``RETR n`` and reads until the terminator, parsing nothing.  No client that
waits for each reply before the next command (as ``poplib`` and the drop-in
must) can beat it, so ``floor`` over ``poplib`` is the most such a client
could gain on that server.

Mailboxes: (a) 2,000 x 4 KB and (b) 5 x 20 MB, from three local servers,
each in a process of its own so that it does not share the client's GIL:

* ``static``: a server in this script that answers from replies built in
  memory beforehand (thread per connection, one ``sendall`` per batch of
  commands): about the least a server can cost per command;
* ``dovecot``: Dovecot 2.3 from Debian (``.ci/install-peers``) on Maildirs,
  configured like ``benchmarks/servers.py`` (needs root; skipped otherwise);
* ``asyncio``: this project's ``pop3proto serve --runtime asyncio`` on
  Maildirs.

Then (c): the 2,000 x 4 KB mailbox again through a delay-line proxy (in
this script) that holds every chunk for 5 ms in each direction (10 ms round
trip), in front of Dovecot (``static`` when Dovecot is not available).

Finally the peak memory of ``Client.retrieve_into(n, open(os.devnull, "wb"))``
on a single 100 MB message is measured: ``tracemalloc``'s peak (Python
allocations) and the process's RSS growth above its baseline (``VmHWM``,
measured in a fresh child process so earlier runs do not inflate it).

Run: ``python benchmarks/clients.py`` (``--quick`` for a smaller run,
``--repeat N`` for the best of N runs per client, ``--servers static,asyncio``
for a subset, ``--no-delay`` to skip (c)).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import poplib
import queue
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pop3proto.adapters import sync as p3sync

PASSWORD = "benchpass"
DELAY = 0.005  # one-way delay of the proxy, seconds


# -- mailboxes ----------------------------------------------------------------


def make_message(size: int, seed: int) -> bytes:
    """A CRLF message of exactly *size* octets (76-column lines, some dotted)."""
    head = (
        f"From: bench@example.org\r\nTo: user@example.org\r\n"
        f"Subject: message {seed}\r\nMessage-ID: <{seed}@bench>\r\n\r\n"
    ).encode()
    line = (b"." + b"abcdefghij" * 7 + b"01234\r\n") if seed % 2 else (b"x" * 76 + b"\r\n")
    body_len = size - len(head)
    body = (line * (body_len // len(line) + 1))[:body_len]
    if body_len >= 2:
        body = body[:-2] + b"\r\n"
    return head + body


def write_maildir(root: Path, user: str, count: int, size: int) -> None:
    box = root / user
    for sub in ("new", "cur", "tmp"):
        (box / sub).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (box / "cur" / f"{1_700_000_000 + i}.M{i}P1.bench:2,S").write_bytes(make_message(size, i))


@contextlib.contextmanager
def pop3_server(root: Path, users: list[str]) -> Iterator[int]:
    users_file = root.parent / "users.txt"
    users_file.write_text("".join(f"{u}:{PASSWORD}\n" for u in users))
    users_file.chmod(0o600)
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "pop3proto.adapters.cli", "serve",
            "--maildir-root", str(root), "--users", str(users_file),
            "--listen", "127.0.0.1:0", "--runtime", "asyncio",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        port = 0
        for line in proc.stderr:
            match = re.search(r"listening on [^ ]*:(\d+)", line)
            if match:
                port = int(match.group(1))
                break
        if not port:
            raise RuntimeError(f"server did not start (exit {proc.wait()})")
        # keep draining the per-session log lines so the pipe never fills
        stderr = proc.stderr
        threading.Thread(target=lambda: [None for _ in stderr], daemon=True).start()
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def dot_stuff(message: bytes) -> bytes:
    """*message* (CRLF lines) as a RETR reply body on the wire, terminator included."""
    stuffed = re.sub(rb"(?m)^\.", b"..", message)
    return stuffed + (b"" if stuffed.endswith(b"\r\n") else b"\r\n") + b".\r\n"


class StaticMailbox:
    """Every reply of one user's mailbox, built before the first command."""

    def __init__(self, count: int, size: int) -> None:
        messages = [make_message(size, i) for i in range(count)]
        self.retr = {
            b"%d" % (i + 1): b"+OK %d octets\r\n" % len(m) + dot_stuff(m)
            for i, m in enumerate(messages)
        }
        self.stat = b"+OK %d %d\r\n" % (count, sum(map(len, messages)))
        self.list = (
            b"+OK\r\n"
            + b"".join(b"%d %d\r\n" % (i + 1, len(m)) for i, m in enumerate(messages))
            + b".\r\n"
        )


STATIC_CAPA = b"+OK\r\nUSER\r\nPIPELINING\r\nTOP\r\nUIDL\r\n.\r\n"


def static_session(conn: socket.socket, boxes: dict[bytes, StaticMailbox]) -> None:
    """Answer one connection: each batch of complete command lines read gets
    its replies in one ``sendall``.  USER picks the mailbox; PASS is not
    checked (nothing here is secret)."""
    box: StaticMailbox | None = None
    pending = b""
    with conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.sendall(b"+OK static POP3 server ready\r\n")
        while True:
            data = conn.recv(65536)
            if not data:
                return
            *lines, pending = (pending + data).split(b"\r\n")
            out: list[bytes] = []
            for line in lines:
                keyword, _, arg = line.partition(b" ")
                keyword = keyword.upper()
                reply = b"-ERR no\r\n"
                if keyword == b"RETR" and box is not None and arg in box.retr:
                    reply = box.retr[arg]
                elif keyword == b"USER" and arg in boxes:
                    box = boxes[arg]
                    reply = b"+OK\r\n"
                elif keyword in (b"PASS", b"NOOP"):
                    reply = b"+OK\r\n"
                elif keyword == b"CAPA":
                    reply = STATIC_CAPA
                elif keyword == b"STAT" and box is not None:
                    reply = box.stat
                elif keyword == b"LIST" and box is not None and not arg:
                    reply = box.list
                elif keyword == b"QUIT":
                    conn.sendall(b"".join([*out, b"+OK bye\r\n"]))
                    return
                out.append(reply)
            if out:
                conn.sendall(b"".join(out))


def static_server_main(spec: str) -> None:
    """The --static-server child: ``user=count:size,...``; prints its port."""
    boxes = {}
    for item in spec.split(","):
        user, _, shape = item.partition("=")
        count, _, size = shape.partition(":")
        boxes[user.encode()] = StaticMailbox(int(count), int(size))
    listener = socket.create_server(("127.0.0.1", 0))
    print(f"PORT {listener.getsockname()[1]}", flush=True)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=static_session, args=(conn, boxes), daemon=True).start()


@contextlib.contextmanager
def static_server(boxes: dict[str, tuple[int, int]]) -> Iterator[int]:
    spec = ",".join(f"{user}={count}:{size}" for user, (count, size) in boxes.items())
    proc = subprocess.Popen(
        [sys.executable, __file__, "--static-server", spec],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"static server did not start (exit {proc.wait()})")
        yield int(line.split()[1])
    finally:
        proc.kill()
        proc.wait()


class Unavailable(Exception):
    """A server that cannot run here (the reason is printed)."""


@contextlib.contextmanager
def dovecot_server(boxes: dict[str, tuple[int, int]]) -> Iterator[int]:
    """Dovecot on one Maildir per user, configured as in benchmarks/servers.py."""
    import servers  # the sibling script: its Dovecot configuration and runner

    def fill(root: Path, owner: tuple[int, int]) -> list[str]:
        for user, (count, size) in boxes.items():
            write_maildir(root, user, count, size)
        for dirpath, _, files in os.walk(root):
            os.chown(dirpath, *owner)
            for name in files:
                os.chown(os.path.join(dirpath, name), *owner)
        return list(boxes)

    with contextlib.ExitStack() as stack:
        try:
            port, _ = stack.enter_context(servers.dovecot_on_maildirs(fill, PASSWORD))
        except servers.Skip as exc:
            raise Unavailable(str(exc)) from None
        for user in boxes:
            # Dovecot indexes a Maildir on first access: not part of a run.
            run_many(port, user)
        yield port


@contextlib.contextmanager
def asyncio_server(boxes: dict[str, tuple[int, int]]) -> Iterator[int]:
    tmp = Path(tempfile.mkdtemp(prefix="pop3-clients-"))
    try:
        root = tmp / "mail"
        for user, (count, size) in boxes.items():
            write_maildir(root, user, count, size)
        with pop3_server(root, list(boxes)) as port:
            yield port
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


SERVERS: dict[
    str, Callable[[dict[str, tuple[int, int]]], contextlib.AbstractContextManager[int]]
] = {
    "static": static_server,
    "dovecot": dovecot_server,
    "asyncio": asyncio_server,
}


# -- delay-line proxy -----------------------------------------------------------


class DelayProxy:
    """A TCP proxy that delivers every chunk *delay* seconds after reading it,
    in order, in each direction (one reader and one writer thread per way)."""

    def __init__(self, target_port: int, delay: float) -> None:
        self.target_port = target_port
        self.delay = delay
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._pipe(client, upstream)
            self._pipe(upstream, client)

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        line: queue.SimpleQueue[tuple[float, bytes]] = queue.SimpleQueue()

        def reader() -> None:
            while True:
                try:
                    data = src.recv(262144)
                except OSError:
                    data = b""
                line.put((time.monotonic() + self.delay, data))
                if not data:
                    return

        def writer() -> None:
            while True:
                due, data = line.get()
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                if not data:
                    with contextlib.suppress(OSError):
                        dst.shutdown(socket.SHUT_WR)
                    return
                try:
                    dst.sendall(data)
                except OSError:
                    return

        threading.Thread(target=reader, daemon=True).start()
        threading.Thread(target=writer, daemon=True).start()

    def close(self) -> None:
        self.listener.close()


# -- clients ----------------------------------------------------------------------


def run_poplib(port: int, user: str) -> tuple[int, int]:
    conn = poplib.POP3("127.0.0.1", port, timeout=120)
    conn.user(user)
    conn.pass_(PASSWORD)
    count, _ = conn.stat()
    octets = 0
    for n in range(1, count + 1):
        _, lines, _ = conn.retr(n)
        octets += sum(map(len, lines)) + 2 * len(lines)
    conn.quit()
    return count, octets


def run_dropin(port: int, user: str) -> tuple[int, int]:
    conn = p3sync.POP3("127.0.0.1", port, timeout=120)
    conn.user(user)
    conn.pass_(PASSWORD)
    count, _ = conn.stat()
    octets = 0
    for n in range(1, count + 1):
        _, lines, _ = conn.retr(n)
        octets += sum(map(len, lines)) + 2 * len(lines)
    conn.quit()
    return count, octets


def run_many(port: int, user: str, window: int | None = None) -> tuple[int, int]:
    kwargs: dict[str, Any] = {} if window is None else {"window": window}
    with p3sync.Client("127.0.0.1", port, tls="none", timeout=120, **kwargs) as client:
        client.login(user, PASSWORD, allow_insecure=True)
        numbers = sorted(client.list())
        count = octets = 0
        for _, data in client.retrieve_many(numbers):
            count += 1
            octets += len(data)
    return count, octets


def run_floor(port: int, user: str) -> tuple[int, int]:
    """The yardstick: one RETR per round trip, reading up to the terminator
    and parsing nothing (no unstuffing, no lines); octets are the stuffed
    body without the terminator, so the count check below is skipped."""
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        reader = sock.makefile("rb")
        reader.readline()
        sock.sendall(f"USER {user}\r\n".encode())
        reader.readline()
        sock.sendall(f"PASS {PASSWORD}\r\n".encode())
        reader.readline()
        sock.sendall(b"STAT\r\n")
        count = int(reader.readline().split()[1])
        octets = 0
        for n in range(1, count + 1):
            sock.sendall(b"RETR %d\r\n" % n)
            reader.readline()
            tail = b""
            while not tail.endswith(b"\r\n.\r\n"):
                data = reader.read1(65536)
                octets += len(data)
                tail = tail[-4:] + data[-5:]
            octets -= 3
        sock.sendall(b"QUIT\r\n")
        reader.readline()
    return count, octets


def run_floor_pipelined(port: int, user: str, window: int = 64) -> tuple[int, int]:
    """The pipelined yardstick: RETRs kept *window* deep like retrieve_many,
    replies counted by their terminators and otherwise not parsed (in a
    dot-stuffed reply "CRLF . CRLF" is always a terminator).  The most any
    pipelining client could get from that server."""
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        reader = sock.makefile("rb")
        reader.readline()
        sock.sendall(f"USER {user}\r\nPASS {PASSWORD}\r\nSTAT\r\n".encode())
        reader.readline()
        reader.readline()
        count = int(reader.readline().split()[1])
        sent = done = octets = 0
        tail = b""
        while done < count:
            if sent < count and sent - done <= window * 3 // 4:
                more = min(count - sent, window - (sent - done))
                sock.sendall(b"".join(b"RETR %d\r\n" % n for n in range(sent + 1, sent + more + 1)))
                sent += more
            data = reader.read1(262144)
            if not data:
                raise ConnectionError("server closed the connection")
            octets += len(data)
            # A terminator may straddle two reads: look at the seam too.
            seam = tail + data
            done += seam.count(b"\r\n.\r\n")
            tail = seam[-4:]
        sock.sendall(b"QUIT\r\n")
        reader.readline()
    return count, octets


CLIENTS: dict[str, Callable[[int, str], tuple[int, int]]] = {
    "poplib": run_poplib,
    "drop-in": run_dropin,
    "retrieve_many": run_many,
    "floor": run_floor,
    "floor, pipelined": run_floor_pipelined,
}
# Yardsticks: their octet counts include dot-stuffing, so only the message
# count is checked, and they are not part of the whole-run totals.
REFERENCE = {"floor", "floor, pipelined"}


@dataclass
class Result:
    client: str
    messages: int
    octets: int
    seconds: float


def measure(
    port: int,
    user: str,
    expect: tuple[int, int],
    repeat: int,
    clients: dict[str, Callable[[int, str], tuple[int, int]]] = CLIENTS,
) -> list[Result]:
    """Each client's best time over *repeat* runs, interleaved (poplib,
    drop-in, ..., poplib, drop-in, ...) so that a slow spell of a shared
    machine does not fall on one client only."""
    best = dict.fromkeys(clients, float("inf"))
    for _ in range(repeat):
        for name, func in clients.items():
            start = time.perf_counter()
            got = func(port, user)
            best[name] = min(best[name], time.perf_counter() - start)
            ok = got[0] == expect[0] if name in REFERENCE else got == expect
            if not ok:
                raise AssertionError(f"{name}: got {got}, expected {expect} (messages, octets)")
    return [Result(name, expect[0], expect[1], seconds) for name, seconds in best.items()]


def report(title: str, results: list[Result]) -> None:
    base = results[0].seconds
    print(f"\n{title}")
    print(f"  {'client':<16} {'seconds':>8} {'MB/s':>9} {'msg/s':>9} {'vs poplib':>10}")
    for r in results:
        mbps = r.octets / r.seconds / 1e6
        print(
            f"  {r.client:<16} {r.seconds:8.3f} {mbps:9.1f} {r.messages / r.seconds:9.1f}"
            f" {base / r.seconds:9.2f}x"
        )
    sys.stdout.flush()


def report_total(title: str, runs: list[list[Result]]) -> None:
    """The whole job, (a) then (b): summed seconds per client."""
    totals: dict[str, float] = {}
    for results in runs:
        for r in results:
            if r.client not in REFERENCE:
                totals[r.client] = totals.get(r.client, 0.0) + r.seconds
    base = totals["poplib"]
    print(f"\n{title}")
    for name, seconds in totals.items():
        print(f"  {name:<16} {seconds:8.3f} {'':>9} {'':>9} {base / seconds:9.2f}x")
    sys.stdout.flush()


# -- memory of retrieve_into -------------------------------------------------------


def rss_kib(field: str) -> int:
    """A /proc/self/status field in KiB (VmHWM: peak RSS of this process image;
    unlike ru_maxrss it is not inherited from the parent across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def memory_child(port: int, user: str) -> None:
    import tracemalloc

    base_rss = rss_kib("VmHWM")
    with p3sync.Client("127.0.0.1", port, tls="none", timeout=120) as client:
        client.login(user, PASSWORD, allow_insecure=True)
        client.noop()
        rss_before = rss_kib("VmHWM")
        tracemalloc.start()
        with open(os.devnull, "wb") as sink:
            start = time.perf_counter()
            octets = client.retrieve_into(1, sink)
            seconds = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        rss_after = rss_kib("VmHWM")
    print(
        f"  octets {octets:,} in {seconds:.2f} s (under tracemalloc)\n"
        f"  tracemalloc peak {peak / 2**20:.2f} MiB;"
        f" peak RSS growth {(rss_after - rss_before) / 1024:.2f} MiB"
        f" (baseline {base_rss / 1024:.1f} MiB after imports, {rss_before / 1024:.1f} MiB"
        f" after login)"
    )


def measure_memory(port: int, user: str, size: int) -> None:
    print(f"\nretrieve_into(1, devnull) of one {size / 1e6:.0f} MB message (fresh process)")
    sys.stdout.flush()
    subprocess.run([sys.executable, __file__, "--memory-child", str(port), user], check=True)


# -- main ----------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller mailboxes")
    parser.add_argument("--repeat", type=int, default=1, help="best of N runs (default 1)")
    parser.add_argument(
        "--servers",
        default=",".join(SERVERS),
        help="comma-separated subset of: " + ", ".join(SERVERS),
    )
    parser.add_argument("--no-delay", action="store_true", help="skip (c), the delay line")
    parser.add_argument("--memory-child", nargs=2, metavar=("PORT", "USER"), help=argparse.SUPPRESS)
    parser.add_argument("--static-server", metavar="SPEC", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(int(args.memory_child[0]), args.memory_child[1])
        return
    if args.static_server:
        static_server_main(args.static_server)
        return
    chosen = [name.strip() for name in args.servers.split(",") if name.strip()]
    for name in chosen:
        if name not in SERVERS:
            parser.error(f"unknown server {name!r}; choose from {', '.join(SERVERS)}")

    if args.quick:
        boxes = {"small": (500, 4096), "large": (3, 5_000_000)}
        huge = 20_000_000
    else:
        boxes = {"small": (2000, 4096), "large": (5, 20_000_000)}
        huge = 100_000_000
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; best of {args.repeat}")
    available: list[str] = []
    for name in chosen:
        try:
            with SERVERS[name](boxes) as port:
                available.append(name)
                runs = []
                for user, title in (
                    ("small", "(a) {} x {} B, loopback, server: {}"),
                    ("large", "(b) {} x {} B, loopback, server: {}"),
                ):
                    count, size = boxes[user]
                    results = measure(port, user, (count, count * size), args.repeat)
                    report(title.format(count, size, name), results)
                    runs.append(results)
                report_total(f"(a) + (b), the whole job, server: {name}", runs)
        except Unavailable as exc:
            print(f"\nserver {name}: skipped: {exc}")
    if not args.no_delay:
        name = "dovecot" if "dovecot" in available else "static"
        count, size = boxes["small"]
        with SERVERS[name]({"small": boxes["small"]}) as port:
            proxy = DelayProxy(port, DELAY)
            try:
                title = (
                    f"(c) {count} x {size} B through a {DELAY * 1000:.0f} ms one-way delay,"
                    f" server: {name} (one run each)"
                )
                clients = {k: v for k, v in CLIENTS.items() if k not in REFERENCE}
                report(title, measure(proxy.port, "small", (count, count * size), 1, clients))
            finally:
                proxy.close()
    with static_server({"huge": (1, huge)}) as port:
        measure_memory(port, "huge", huge)


if __name__ == "__main__":
    main()

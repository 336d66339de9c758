"""Client throughput: download a whole mailbox with three blocking clients.

Clients measured (each logs in with USER/PASS, retrieves every message
once, in order, and sends QUIT; nothing is deleted):

* ``poplib``: the standard library's ``poplib.POP3``, ``retr(n)`` per message;
* ``drop-in``: ``pop3proto.adapters.sync.POP3`` (the poplib-compatible
  class), ``retr(n)`` per message;
* ``retrieve_many``: ``pop3proto.adapters.sync.Client.retrieve_many``
  (RETRs pipelined when the server offers PIPELINING).

Mailboxes: (a) 2,000 x 4 KB and (b) 5 x 20 MB, served by this project's
asyncio server (``pop3proto serve --runtime asyncio --maildir-root``) in a
process of its own, so that it does not share the client's GIL.  The same
three clients are also run through a delay-line proxy (in this script)
that holds every chunk for 5 ms in each direction (10 ms round trip),
against a smaller mailbox of 200 x 4 KB (poplib needs one round trip per
message there, so 2,000 messages would take ~20 s per run for it alone).

Finally the peak memory of ``Client.retrieve_into(n, open(os.devnull, "wb"))``
on a single 100 MB message is measured: ``tracemalloc``'s peak (Python
allocations) and the process's RSS growth above its baseline (``VmHWM``,
measured in a fresh child process so earlier runs do not inflate it).

Run: ``python benchmarks/clients.py`` (``--quick`` for a smaller run,
``--repeat N`` for the best of N runs per client).
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
        octets += sum(len(x) for x in lines) + 2 * len(lines)
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
        octets += sum(len(x) for x in lines) + 2 * len(lines)
    conn.quit()
    return count, octets


def run_many(port: int, user: str, window: int | None = None) -> tuple[int, int]:
    kwargs = {} if window is None else {"window": window}
    with p3sync.Client("127.0.0.1", port, tls="none", timeout=120, **kwargs) as client:
        client.login(user, PASSWORD, allow_insecure=True)
        numbers = sorted(client.list())
        count = octets = 0
        for _, data in client.retrieve_many(numbers):
            count += 1
            octets += len(data)
    return count, octets


CLIENTS: dict[str, Callable[[int, str], tuple[int, int]]] = {
    "poplib": run_poplib,
    "drop-in": run_dropin,
    "retrieve_many": run_many,
}


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
    results = []
    for name, func in clients.items():
        best = float("inf")
        for _ in range(repeat):
            start = time.perf_counter()
            got = func(port, user)
            best = min(best, time.perf_counter() - start)
            if got != expect:
                raise AssertionError(f"{name}: got {got}, expected {expect} (messages, octets)")
        results.append(Result(name, expect[0], expect[1], best))
    return results


def report(title: str, results: list[Result]) -> None:
    base = results[0].seconds
    print(f"\n{title}")
    print(f"  {'client':<14} {'seconds':>8} {'MB/s':>9} {'msg/s':>9} {'vs poplib':>10}")
    for r in results:
        mbps = r.octets / r.seconds / 1e6
        print(
            f"  {r.client:<14} {r.seconds:8.3f} {mbps:9.1f} {r.messages / r.seconds:9.1f}"
            f" {base / r.seconds:9.2f}x"
        )
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
    parser.add_argument("--memory-child", nargs=2, metavar=("PORT", "USER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(int(args.memory_child[0]), args.memory_child[1])
        return

    if args.quick:
        boxes = {"small": (500, 4096), "large": (3, 5_000_000), "delay": (50, 4096)}
        huge = 20_000_000
    else:
        boxes = {"small": (2000, 4096), "large": (5, 20_000_000), "delay": (200, 4096)}
        huge = 100_000_000
    tmp = Path(tempfile.mkdtemp(prefix="pop3-clients-"))
    try:
        root = tmp / "mail"
        for user, (count, size) in boxes.items():
            write_maildir(root, user, count, size)
        write_maildir(root, "huge", 1, huge)
        print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; server: asyncio, Maildir")
        with pop3_server(root, [*boxes, "huge"]) as port:
            for user, title in (
                ("small", "(a) {} x {} B, loopback"),
                ("large", "(b) {} x {} B, loopback"),
            ):
                count, size = boxes[user]
                report(
                    title.format(count, size),
                    measure(port, user, (count, count * size), args.repeat),
                )
            proxy = DelayProxy(port, DELAY)
            try:
                count, size = boxes["delay"]
                title = f"(c) {count} x {size} B through a {DELAY * 1000:.0f} ms one-way delay"
                clients = {
                    **CLIENTS,
                    "  window=64": lambda p, u: run_many(p, u, window=64),
                }
                report(title, measure(proxy.port, "delay", (count, count * size), 1, clients))
            finally:
                proxy.close()
            measure_memory(port, "huge", huge)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

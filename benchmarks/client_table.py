"""The client-side table: poplib / drop-in / ``retrieve_many`` / the limit / the wire.

One run prints, for each scenario, the seconds of four clients downloading
the same mailbox from a static server that replays precomputed replies
(``clients.py``'s, in a process of its own, so the server is never the
bottleneck):

* ``poplib``: the standard library, ``retr(n)`` per message;
* ``drop-in``: ``pop3proto.adapters.sync.POP3``, ``retr(n)`` per message;
* ``retrieve_many``: ``pop3proto.adapters.sync.Client.retrieve_many`` over
  the LIST numbers (pipelined: the server advertises PIPELINING);
* ``limit``: :func:`run_limit`, the issue's yardstick: a raw client that
  sends every RETR at once and cuts each reply out with ``bytes.find``
  (no unstuffing, no checks): the practical limit;
* ``wire``: :func:`run_wire`, as ``limit`` but cutting nothing out: it
  counts the replies' terminators at C speed, so it only receives the
  bytes.  No client that hands over messages can come near it; it shows
  what the receiving alone costs.

Scenarios: 2,000 x 4 KB and 5 x 20 MB on loopback; 200 x 4 KB and
1,000 x 4 KB through a delay line of 5 ms each way.  The delay line is an
in-process-style proxy (``clients.DelayProxy``) run in a child process of
its own, holding every chunk for 5 ms in each direction (``tc netem`` needs
a network namespace and root, which CI machines may not give).

Timings start after the imports; the import times are printed apart
(``python -X importtime``, the median of several fresh interpreters).  The
peak RSS growth of poplib and the drop-in on 5 x 20 MB, and of
``Client.retrieve_into`` on one 100 MB message, are each measured in a fresh
process.

Run: ``python benchmarks/client_table.py`` (``--repeat N``: N runs per
client, interleaved, after one untimed run each; ``--quick``: smaller
mailboxes).  A shared machine is noisy, so each row is printed twice: the
best of the N runs (the least disturbed: what the code costs) and their
median (what a run is likely to see), each ratio of the same statistic
from the same run.  The peak RSS rows give the lowest, median and highest
of five fresh processes.  The issue's targets are judged at the end on
both statistics, so that a target met only by the best runs shows as such.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import clients
from clients import PASSWORD, run_dropin, run_many, run_poplib

DELAY = 0.005


def _login_raw(sock: socket.socket, user: str) -> tuple[int, bytes]:
    """Log in on a raw connection with one write (USER, PASS and STAT);
    returns the message count and what was read after STAT's reply."""
    buf = b""

    def line() -> bytes:
        nonlocal buf
        while (end := buf.find(b"\r\n")) < 0:
            buf += sock.recv(65536)
        text, buf = buf[:end], buf[end + 2 :]
        return text

    line()
    sock.sendall(f"USER {user}\r\nPASS {PASSWORD}\r\nSTAT\r\n".encode())
    line(), line()
    return int(line().split()[1]), buf


def run_limit(port: int, user: str) -> tuple[int, int]:
    """The limit as the issue defines it: log in, send every RETR in one
    write, and cut each reply (status line and body, still dot-stuffed)
    out with ``bytes.find``.

    Written to be as fast as such a loop gets: one receive buffer that
    grows in place (``bytearray``), each search starting where the
    previous one stopped, and one copy per reply (through a
    ``memoryview``, into exact ``bytes``).
    """
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        count, buf = _login_raw(sock, user)
        sock.sendall(b"".join(b"RETR %d\r\n" % n for n in range(1, count + 1)))
        data = bytearray(buf)
        replies: list[bytes] = []
        start = scanned = 0  # the next reply starts at start; no terminator before scanned
        while len(replies) < count:
            # In a dot-stuffed stream CRLF "." CRLF only ever ends a reply.
            end = data.find(b"\r\n.\r\n", max(scanned - 4, start))
            if end < 0:
                more = sock.recv(1 << 20)
                if not more:
                    raise ConnectionError("server closed the connection")
                if start:
                    # A copy of what is left (a reply begun), not a del: a
                    # bytearray whose front was cut copies itself whenever
                    # it grows, and a 20 MB reply grows it twenty times.
                    data = data[start:]
                data += more
                scanned, start = len(data) - len(more), 0
                continue
            replies.append(bytes(memoryview(data)[start : end + 2]))
            start = scanned = end + 5
        sock.sendall(b"QUIT\r\n")
    return count, 0


def run_wire(port: int, user: str) -> tuple[int, int]:
    """Receiving alone: log in, send every RETR in one write, count
    terminators; nothing is cut out."""
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        count, buf = _login_raw(sock, user)
        sock.sendall(b"".join(b"RETR %d\r\n" % n for n in range(1, count + 1)))
        done, tail, data = 0, b"", buf
        while True:
            seam = tail + data
            done += seam.count(b"\r\n.\r\n")
            tail = seam[-4:]
            if done >= count:
                break
            data = sock.recv(1 << 20)
            if not data:
                raise ConnectionError("server closed the connection")
        sock.sendall(b"QUIT\r\n")
    return count, 0


CLIENTS: dict[str, Callable[[int, str], tuple[int, int]]] = {
    "poplib": run_poplib,
    "drop-in": run_dropin,
    "retrieve_many": run_many,
    "limit": run_limit,
    "wire": run_wire,
}


def proxy_main(target: int) -> None:
    proxy = clients.DelayProxy(target, DELAY)
    print(f"PORT {proxy.port}", flush=True)
    sys.stdin.read()  # until the parent goes


@contextlib.contextmanager
def delay_line(target: int) -> Iterator[int]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--proxy", str(target)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        yield int(proc.stdout.readline().split()[1])
    finally:
        proc.kill()
        proc.wait()


def run_times(port: int, user: str, count: int, repeat: int) -> dict[str, list[float]]:
    """Each client's seconds over *repeat* runs, interleaved (poplib,
    drop-in, ..., poplib, ...) so that a slow spell of a shared machine
    falls on all of them; one untimed run of each first (the delay line's
    first connection and the server's first session cost extra)."""
    times: dict[str, list[float]] = {name: [] for name in CLIENTS}
    for func in CLIENTS.values():
        func(port, user)
    for _ in range(repeat):
        for name, func in CLIENTS.items():
            start = time.perf_counter()
            got = func(port, user)
            times[name].append(time.perf_counter() - start)
            if got[0] != count:
                raise AssertionError(f"{name}: {got[0]} messages, expected {count}")
    return times


STATISTICS: dict[str, Callable[[list[float]], float]] = {
    "best": min,
    "median": statistics.median,
}


def rss_child(name: str, port: int, user: str) -> None:
    before = clients.rss_kib("VmHWM")
    CLIENTS[name](port, user)
    grown = (clients.rss_kib("VmHWM") - before) / 1024
    print(f"{grown:.1f}")


def rss_of(name: str, port: int, user: str) -> float:
    out = subprocess.run(
        [sys.executable, __file__, "--rss-child", name, str(port), user],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return float(out.split()[-1])


def import_ms(module: str, runs: int = 9) -> float:
    """Median cumulative ``-X importtime`` of *module*, in ms."""
    times = []
    for _ in range(runs):
        err = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", f"import {module}"],
            capture_output=True,
            text=True,
            check=True,
            cwd="/",
        ).stderr
        times.append(int(err.strip().splitlines()[-1].split("|")[1]) / 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--proxy", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--rss-child", nargs=3, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.proxy:
        return proxy_main(options.proxy)
    if options.rss_child:
        name, port, user = options.rss_child
        return rss_child(name, int(port), user)

    big = 2 << 20 if options.quick else 20 << 20
    rows = [
        ("2,000 x 4 KB, loopback", "small", 2000, 4096, False),
        (f"5 x {big >> 20} MB, loopback", "big", 5, big, False),
        ("200 x 4 KB, 5 ms one-way delay", "s200", 200, 4096, True),
        ("1,000 x 4 KB, 5 ms one-way delay", "s1000", 1000, 4096, True),
    ]
    boxes = {user: (count, size) for _, user, count, size, _ in rows}
    boxes["huge"] = (1, (10 << 20) if options.quick else (100 << 20))
    print(
        f"Python {sys.version.split()[0]}, {options.repeat} runs per client (1 for 1,000"
        f" messages through the delay line), {os.cpu_count()} CPUs"
    )
    print("\nimport time (median of 9 fresh interpreters, -X importtime, ms)")
    for module in ("poplib", "pop3proto", "pop3proto.adapters.sync"):
        print(f"  {module:<26} {import_ms(module):7.1f}")
    with contextlib.suppress(subprocess.CalledProcessError):
        print(f"  {'h11':<26} {import_ms('h11'):7.1f}")

    header = f"  {'scenario':<42}" + "".join(f"{n:>22}" for n in CLIENTS)
    ratios: dict[tuple[str, str, str], float] = {}  # (user, client, statistic)
    with clients.static_server(boxes) as port:
        print("\nseconds (and x poplib): best and median of the runs")
        print(header)
        for title, user, count, _, delayed in rows:
            with delay_line(port) if delayed else contextlib.nullcontext(port) as target:
                repeat = 1 if delayed and count >= 1000 else options.repeat
                times = run_times(target, user, count, repeat)
            for stat, func in STATISTICS.items():
                values = {name: func(runs) for name, runs in times.items()}
                base = values["poplib"]
                for name, seconds in values.items():
                    ratios[user, name, stat] = base / seconds
                cells = "".join(f"{f'{v:.3f} s ({base / v:.1f}x)':>22}" for v in values.values())
                label = f"{title} [{stat}]" if repeat > 1 else f"{title} [1 run]"
                print(f"  {label:<42}{cells}", flush=True)
                if repeat == 1:
                    break
        print(
            f"\npeak RSS growth on 5 x {big >> 20} MB (5 fresh processes each:"
            " lowest / median / highest, MiB)"
        )
        peaks: dict[str, list[float]] = {}
        for _ in range(5):
            for name in ("poplib", "drop-in", "retrieve_many"):
                peaks.setdefault(name, []).append(rss_of(name, port, "big"))
        for name, mibs in peaks.items():
            print(
                f"  {name:<16} {min(mibs):8.1f} {statistics.median(mibs):8.1f} {max(mibs):8.1f}",
                flush=True,
            )
        clients.measure_memory(port, "huge", boxes["huge"][1])
    print("\ntargets (best runs / median runs)")
    for user, name, want, what in TARGETS:
        found = [ratios.get((user, name, stat)) for stat in STATISTICS]
        shown = " / ".join("-" if g is None else f"{g:.1f}x" for g in found)
        judged = ["-" if g is None else "met" if g >= want else "NOT met" for g in found]
        print(f"  {what:<52} {shown:>14}   {' / '.join(judged)}")
    # The 9x is meant as 90% of the limit: poplib's time depends on
    # the round trips of the moment, the limit's on the same machine.  The
    # share of the wire is shown, not judged: it cuts out no message.
    for yardstick, judging in (("limit", True), ("wire", False)):
        got = [
            ratios["small", "retrieve_many", stat] / ratios["small", yardstick, stat]
            for stat in STATISTICS
        ]
        shown = " / ".join(f"{g:.0%}" for g in got)
        verdicts = (
            " / ".join("met" if g >= 0.9 else "NOT met" for g in got) if judging else "(shown)"
        )
        what = f"retrieve_many >= 90% of the {yardstick} on 2,000 x 4 KB"
        print(f"  {what:<52} {shown:>14}   {verdicts}")
    worst = {name: max(mibs) for name, mibs in peaks.items()}
    mids = {name: statistics.median(mibs) for name, mibs in peaks.items()}
    for stat, figures in (("highest", worst), ("median", mids)):
        verdict = "met" if figures["drop-in"] <= figures["poplib"] else "NOT met"
        print(
            f"  {f'drop-in peak RSS <= poplib on 5 x {big >> 20} MB ({stat})':<52}"
            f" {figures['drop-in']:.1f} vs {figures['poplib']:.1f} MiB   {verdict}"
        )


#: (row, client, at least this many times poplib's speed, as the issue says)
TARGETS = [
    ("small", "drop-in", 1.3, "drop-in >= 1.3x poplib on 2,000 x 4 KB"),
    ("small", "retrieve_many", 9.0, "retrieve_many >= 9x poplib on 2,000 x 4 KB"),
    ("s200", "retrieve_many", 40.0, "retrieve_many >= 40x on 200 x 4 KB @ 5 ms"),
    ("s1000", "retrieve_many", 120.0, "retrieve_many >= 120x on 1,000 x 4 KB @ 5 ms"),
]


if __name__ == "__main__":
    main()

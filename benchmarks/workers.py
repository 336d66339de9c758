"""``pop3proto serve --workers``: sessions a second with one worker and with
several, clients spread over many loopback addresses or all from one.

Each worker serves the client addresses routed to it (SECURITY.md "Several
worker processes"), so the load comes from ``--sources`` addresses
(127.0.0.1, 127.0.0.2, ...; round robin, one per connection): with one
address, one worker serves everything.  The load is ``benchmarks/servers.py``'s
(its lean load generator, workload and Maildirs): ``--concurrency`` sessions at
once (20), each USER/PASS, STAT, ``--messages`` pipelined RETRs of
``--size`` octets (50 x 4 KB) and QUIT, ``--users`` users (20) each with a
Maildir; the server is the ``pop3proto serve`` command (asyncio runtime),
with the per-address limits off so that the one-address row is not refused.
Each row is the median of ``--runs`` runs of ``--duration`` seconds, with
the server's CPU (all its processes) and the busiest worker's share of the
workers' CPU time (50% for two evenly loaded workers, 100% for one)::

    python benchmarks/workers.py [--workers 2] [--runs 3] [--duration 5]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import servers  # benchmarks/servers.py: the load generator

_LISTENING = re.compile(r"listening on [^\s]+:(\d+)")


def start_serve(root: Path, users: Path, workers: int, runtime: str) -> tuple[Any, int]:
    log = root.parent / f"serve-{workers}.log"
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "pop3proto.adapters.cli", "serve",
            "--maildir-root", str(root), "--users", str(users),
            "--listen", f"{servers.HOST}:0", "--runtime", runtime,
            "--workers", str(workers), "--max-connections", "1000",
            "--max-preauth-per-ip", "0", "--max-sessions-per-ip", "0", "--quiet",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
        start_new_session=True,  # its CPU: every process of the session
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not (match := _LISTENING.search(log.read_text())):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"serve did not start: {log.read_text()}")
        time.sleep(0.05)
    time.sleep(0.5)  # every worker up
    return proc, int(match.group(1))


def worker_cpu(parent: int) -> dict[int, float]:
    """CPU seconds used so far by each worker process (child) of *parent*;
    ``{parent: ...}`` itself when it has none (one worker)."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == parent or int(entry) == parent:
                found[int(entry)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    if len(found) > 1:
        del found[parent]
    return found


def measure(
    name: str, args: argparse.Namespace, workers: int, sources: int, tmp: Path
) -> tuple[list[servers.Result], list[float]]:
    """The runs' results, and the busiest worker's share of the workers'
    CPU time in each run."""
    results = []
    busiest = []
    for _ in range(args.runs):
        proc, port = start_serve(tmp / "mail", tmp / "users", workers, args.runtime)
        try:
            before = worker_cpu(proc.pid)
            results.append(
                servers.generate_load_lean(
                    name,
                    port,
                    args.concurrency,
                    args.work,
                    1.0,
                    args.duration,
                    servers.session_cpu(proc.pid),
                    sources,
                )
            )
            used = [t - before.get(pid, 0.0) for pid, t in worker_cpu(proc.pid).items()]
            busiest.append(max(used) / sum(used) if sum(used) else 1.0)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    return results, busiest


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--runtime", default="asyncio", choices=["asyncio", "trio", "sync"])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--messages", type=int, default=50)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--sources", type=int, default=20)
    args = parser.parse_args(argv)
    messages = servers.make_messages(args.messages, args.size)
    args.work = servers.Workload.of(messages)
    rows: list[tuple[str, float, float | None, float, int]] = []
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        names = servers.users(args.users)
        servers.write_maildirs(tmp / "mail", names, messages, None)
        (tmp / "users").write_text("".join(f"{u}:{servers.PASSWORD}\n" for u in names))
        (tmp / "users").chmod(0o600)
        cases = [
            (f"1 worker, {args.sources} addresses", 1, args.sources),
            (f"{args.workers} workers, {args.sources} addresses", args.workers, args.sources),
            (f"{args.workers} workers, 1 address", args.workers, 1),
        ]
        for name, workers, sources in cases:
            results, busiest = measure(name, args, workers, sources, tmp)
            rate = statistics.median(r.rate for r in results)
            cpus = [r.server_cpu for r in results if r.server_cpu is not None]
            errors = sum(r.errors for r in results)
            share = statistics.median(busiest)
            rows.append((name, rate, statistics.median(cpus) if cpus else None, share, errors))
            print(f"{name}: {[round(r.rate, 1) for r in results]}", file=sys.stderr, flush=True)
    print(f"\n{args.runtime} server, median of {args.runs} x {args.duration:g} s\n")
    print(
        "| | sessions/s | server CPU (cores) | busiest worker's CPU share | errors | vs 1 worker |"
    )
    print("|---|---|---|---|---|---|")
    for name, rate, cpu, share, errors in rows:
        shown = f"{cpu:.2f}" if cpu is not None else "-"
        print(
            f"| {name} | {rate:.1f} | {shown} | {share:.0%} | {errors} "
            f"| {rate / rows[0][1]:.2f} x |"
        )


if __name__ == "__main__":
    main()

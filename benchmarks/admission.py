"""Does a normal session still get in while idle or silent connections pile up?

Runs ``pop3proto serve`` (each runtime in turn, default limits, open files
capped at 1,024 as on a stock system) and measures from a separate process:

* **idle**: ``--idle`` connections (default 300) that read the greeting and
  then say nothing, spread over loopback addresses 127.0.0.2... (ten per
  address, the default per-address limit), then a normal session
  (greeting, USER, PASS, STAT, QUIT) on the plaintext port: its time, and
  how many of the idle connections the server still holds (the others
  were dropped, oldest first, for newer ones);
* **flood**: ``--flood`` connections (default 1,100) to the implicit-TLS
  port that never start a handshake, then a normal session on each port:
  their times, the server's memory (VmRSS) before and at the peak of the
  flood, and the lines the server logged meanwhile.

SECURITY.md ("Connection admission") quotes the results::

    python benchmarks/admission.py [--runtimes sync,asyncio,trio] [--idle 300] [--flood 1100]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import poplib
import re
import resource
import select
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trustme

PASSWORD = "a normal password"
_LISTENING = re.compile(r"listening on (\S+):(\d+) \(([^)]*)\)")


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


class Serve:
    """``pop3proto serve`` in a subprocess with 1,024 open files at most."""

    def __init__(self, folder: Path, runtime: str, cert: Path, key: Path) -> None:
        self.log_path = folder / f"serve-{runtime}.log"
        log = self.log_path.open("wb")

        def limit_files() -> None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))

        self.proc = subprocess.Popen(
            [
                sys.executable, "-m", "pop3proto.adapters.cli", "serve",
                "--maildir-root", str(folder / "mail"), "--users", str(folder / "users"),
                "--listen", "127.0.0.1:0", "--tls-listen", "127.0.0.1:0",
                "--tls-cert", str(cert), "--tls-key", str(key), "--runtime", runtime,
                # One process: its memory is what is measured, and it holds
                # every connection slot.
                "--workers", "1",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
            preexec_fn=limit_files,
        )  # fmt: skip
        self.ports: dict[str, int] = {}
        deadline = time.monotonic() + 60
        while len(self.ports) < 2:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"serve did not start: {self.log()}")
            time.sleep(0.05)
            self.ports = {m.group(3): int(m.group(2)) for m in _LISTENING.finditer(self.log())}
        self.plain = self.ports["STLS offered"]
        self.tls = self.ports["implicit TLS"]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_lines(self) -> int:
        return len(self.log().splitlines())

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def normal_session(port: int, context: ssl.SSLContext | None = None) -> float:
    """Seconds for greeting, USER, PASS, STAT and QUIT (``inf`` if it failed)."""
    started = time.perf_counter()
    try:
        if context is None:
            pop = poplib.POP3("127.0.0.1", port, timeout=10)
        else:
            pop = poplib.POP3_SSL("127.0.0.1", port, context=context, timeout=10)
        pop.user("alice")
        pop.pass_(PASSWORD)
        pop.stat()
        pop.quit()
    except (OSError, poplib.error_proto) as exc:
        print(f"    normal session failed: {exc}")
        return float("inf")
    return time.perf_counter() - started


def source(i: int) -> str:
    """Ten connections per loopback address, from 127.0.0.2 on."""
    n = 2 + i // 10
    return f"127.0.{n // 250}.{n % 250 + 2}" if n >= 250 else f"127.0.0.{n}"


def open_many(port: int, count: int, greet: bool) -> list[socket.socket]:
    socks = []
    for i in range(count):
        address = (source(i), 0)
        sock = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=address)
        if greet:
            with contextlib.suppress(OSError):
                sock.recv(200)
        socks.append(sock)
    return socks


def still_open(socks: list[socket.socket]) -> int:
    """How many the server has not closed (no EOF, no reset, no -ERR)."""
    poller = select.poll()
    for sock in socks:
        poller.register(sock, select.POLLIN)
    return len(socks) - len(poller.poll(0))


def run(runtime: str, folder: Path, cert: Path, key: Path, client_ctx: ssl.SSLContext,
        idle: int, flood: int) -> dict[str, float]:  # fmt: skip
    server = Serve(folder, runtime, cert, key)
    try:
        time.sleep(0.5)
        figures: dict[str, float] = {"rss_start_mib": rss_kib(server.proc.pid) / 1024}
        figures["login_quiet_ms"] = normal_session(server.plain) * 1000
        socks = open_many(server.plain, idle, greet=True)
        time.sleep(0.5)
        figures["login_idle_ms"] = normal_session(server.plain) * 1000
        figures["idle_held"] = still_open(socks)
        for sock in socks:
            sock.close()
        time.sleep(1.0)
        lines_before = server.log_lines()
        rss_before = rss_kib(server.proc.pid)
        started = time.perf_counter()
        socks = open_many(server.tls, flood, greet=False)
        figures["flood_open_s"] = time.perf_counter() - started
        time.sleep(0.5)
        figures["login_flood_tls_ms"] = normal_session(server.tls, client_ctx) * 1000
        figures["login_flood_plain_ms"] = normal_session(server.plain) * 1000
        figures["flood_held"] = still_open(socks)
        figures["rss_before_mib"] = rss_before / 1024
        figures["rss_flood_mib"] = rss_kib(server.proc.pid) / 1024
        figures["log_lines"] = server.log_lines() - lines_before
        for sock in socks:
            sock.close()
    finally:
        server.stop()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runtimes", default="sync,asyncio,trio")
    parser.add_argument("--idle", type=int, default=300)
    parser.add_argument("--flood", type=int, default=1100)
    args = parser.parse_args()
    # The flood needs more descriptors than the server has.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4 * args.flood)), hard))
    ca = trustme.CA()
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        leaf = ca.issue_cert("127.0.0.1", "localhost")
        cert, key = folder / "cert.pem", folder / "key.pem"
        cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
        key.write_bytes(leaf.private_key_pem.bytes())
        users = folder / "users"
        users.write_text(f"alice:{PASSWORD}\n")
        users.chmod(0o600)
        for sub in ("cur", "new", "tmp"):
            os.makedirs(folder / "mail" / "alice" / sub)
        (folder / "mail" / "alice" / "new" / "1.msg").write_bytes(b"Subject: hi\n\nhello\n")
        print(f"{args.idle} idle connections, then a flood of {args.flood} silent TLS connections")
        print("(default limits: --max-connections 100, 10 per address; 1,024 open files)\n")
        for runtime in args.runtimes.split(","):
            f = run(runtime, folder, cert, key, client_ctx, args.idle, args.flood)
            print(f"{runtime}:")
            print(
                f"  idle: {f['idle_held']:.0f} of {args.idle} held; normal login "
                f"{f['login_idle_ms']:.1f} ms (quiet server: {f['login_quiet_ms']:.1f} ms)"
            )
            print(
                f"  flood: {f['flood_held']:.0f} of {args.flood} held (opened in "
                f"{f['flood_open_s']:.2f} s); normal login over TLS "
                f"{f['login_flood_tls_ms']:.1f} ms, plaintext {f['login_flood_plain_ms']:.1f} ms"
            )
            print(
                f"  RSS: {f['rss_start_mib']:.1f} MiB at start, {f['rss_before_mib']:.1f} before "
                f"the flood, {f['rss_flood_mib']:.1f} during; {f['log_lines']:.0f} log lines"
            )


if __name__ == "__main__":
    main()

"""How fast can one address guess one account's password?

Runs our server (each runtime in turn, in this process, on 127.0.0.1) with
the default failure delay and penalties (SECURITY.md "Authentication
failures"), and an attacker of ``--connections`` concurrent connections
from one address, each sending ``USER alice`` / ``PASS guess`` as fast as
the answers come and reconnecting when the server closes after
``max_auth_failures``.  It counts the answers (each one a guess learned)
over ``--seconds``, then logs in with the right password and times it.
``--no-delay`` runs the same with ``auth_failure_delay=0`` (what the
server did before the delay existed).  SECURITY.md quotes the results::

    python benchmarks/auth_guessing.py [--seconds 60] [--connections 20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

from pop3proto.adapters.server import DictAuthenticator, MemoryBackend, ServerConfig

PASSWORD = "the right one"


@contextlib.contextmanager
def running(kind: str, config: ServerConfig) -> Iterator[tuple[str, int]]:
    """A *kind* server with one user, alice, in a background thread."""
    backend = MemoryBackend({"alice": [b"Subject: x\r\n\r\nx\r\n"]})
    auth = DictAuthenticator({"alice": PASSWORD})
    kwargs: dict[str, Any] = {"port": 0, "config": config, "max_connections": 1000}
    box: dict[str, Any] = {}
    ready = threading.Event()
    if kind == "blocking":
        from pop3proto.adapters.sync import Server as SyncServer

        server = SyncServer(backend, auth, **kwargs)
        thread = server.start()
        try:
            yield server.server_address
        finally:
            server.shutdown(1)
            server.server_close()
            thread.join(5)
        return
    if kind == "asyncio":
        from pop3proto.adapters.asyncio import Server as AsyncioServer

        async def amain() -> None:
            async with AsyncioServer(backend, auth, **kwargs) as srv:
                box["address"] = srv.server_address
                box["loop"] = asyncio.get_running_loop()
                box["stop"] = stop = asyncio.Event()
                ready.set()
                await stop.wait()

        thread = threading.Thread(target=asyncio.run, args=(amain(),), daemon=True)

        def stop() -> None:
            box["loop"].call_soon_threadsafe(box["stop"].set)

    else:
        import trio

        from pop3proto.adapters.trio import Server as TrioServer

        async def tmain() -> None:
            srv = TrioServer(backend, auth, **kwargs)
            async with trio.open_nursery() as nursery:
                await nursery.start(srv.serve)
                box["address"] = srv.server_address
                box["server"] = srv
                box["token"] = trio.lowlevel.current_trio_token()
                ready.set()

        thread = threading.Thread(target=trio.run, args=(tmain,), daemon=True)

        def stop() -> None:
            trio.from_thread.run_sync(box["server"].shutdown, trio_token=box["token"])

    thread.start()
    ready.wait(10)
    try:
        yield box["address"]
    finally:
        stop()
        thread.join(10)


def read_line(sock: socket.socket, buffer: bytearray) -> bytes:
    while b"\r\n" not in buffer:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed")
        buffer += chunk
    line, _, rest = bytes(buffer).partition(b"\r\n")
    buffer[:] = rest
    return line


def attacker(address: tuple[str, int], until: float, counts: list[int], index: int) -> None:
    """Guess until *until*; ``counts[index]`` is the answers received."""
    guess = 0
    while time.monotonic() < until:
        try:
            with socket.create_connection(address, timeout=60) as sock:
                buffer = bytearray()
                if not read_line(sock, buffer).startswith(b"+OK"):
                    time.sleep(0.05)  # refused: over a connection limit
                    continue
                while time.monotonic() < until:
                    guess += 1
                    sock.sendall(f"USER alice\r\nPASS guess-{index}-{guess}\r\n".encode())
                    read_line(sock, buffer)  # +OK send PASS
                    reply = read_line(sock, buffer)
                    if time.monotonic() > until:
                        break  # answered after the window: not counted
                    counts[index] += 1
                    assert reply.startswith(b"-ERR"), reply
        except (ConnectionError, OSError):
            continue  # the server closed after max_auth_failures


def right_password_time(address: tuple[str, int]) -> tuple[bool, float]:
    with socket.create_connection(address, timeout=60) as sock:
        buffer = bytearray()
        read_line(sock, buffer)
        started = time.monotonic()
        sock.sendall(f"USER alice\r\nPASS {PASSWORD}\r\n".encode())
        read_line(sock, buffer)
        ok = read_line(sock, buffer).startswith(b"+OK")
        return ok, time.monotonic() - started


def measure(kind: str, config: ServerConfig, seconds: float, connections: int) -> None:
    with running(kind, config) as address:
        counts = [0] * connections
        until = time.monotonic() + seconds
        threads = [
            threading.Thread(target=attacker, args=(address, until, counts, i), daemon=True)
            for i in range(connections)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(seconds + 60)
        ok, took = right_password_time(address)
    total = sum(counts)
    print(
        f"{kind:8}: {total:7,} guesses in {seconds:.0f} s = {total / seconds:9,.2f} guesses/s; "
        f"then the right password: {'+OK' if ok else 'REFUSED'} after {took:.1f} s",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--runtimes", default="asyncio,trio,blocking")
    parser.add_argument("--no-delay", action="store_true", help="auth_failure_delay=0")
    args = parser.parse_args()
    if args.no_delay:
        config = ServerConfig(auth_failure_delay=0, auth_penalty_max=0)
    else:
        config = ServerConfig()
    print(
        f"one address, one account, {args.connections} connections, "
        f"auth_failure_delay={config.auth_failure_delay}, "
        f"auth_penalty_max={config.auth_penalty_max}"
    )
    for kind in args.runtimes.split(","):
        measure(kind, config, args.seconds, args.connections)


if __name__ == "__main__":
    main()

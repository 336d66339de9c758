"""Engine throughput: streamed RETR bodies and big LIST/UIDL listings.

Feeds the *client* role of the engine, in 64 KiB chunks as a socket would
deliver them:

* a 100 MB dot-stuffed RETR body of ordinary mail (a dot-line every ~20
  lines), reported in MB/s of message data;
* a 200,000-entry LIST and UIDL listing, reported in entries/s;
* 2,000 pipelined RETR replies of 4 KB each, as a mailbox download is
  made of: the client role sending the commands and reading the replies,
  and the server role reading the commands and writing the replies,
  reported in messages/s (this is where per-message costs show);

and measures the stdlib ``poplib`` parsing the very same bytes in the same
run (its ``_getlongresp`` reading from an in-memory file, then ``int()`` on
every LIST entry, as a poplib user must), plus the floor of one bulk
``bytes.split`` and ``map(int)``.

Run: ``python benchmarks/engine.py`` (``--quick`` for a smaller run).
"""

from __future__ import annotations

import argparse
import io
import poplib
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pop3proto

CHUNK = 64 * 1024


def make_body(size: int) -> bytes:
    """Ordinary mail: ~75-octet lines, a line starting with '.' every 20."""
    line = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod t\r\n"
    dot = b".. a stuffed line that starts with a dot in the message itself......\r\n"
    block = line * 19 + dot
    return block * (size // len(block) + 1)


def best_of(n: int, fn: Callable[[], float]) -> float:
    return min(fn() for _ in range(n))


def client_in_transaction(command: pop3proto.Command) -> pop3proto.Connection:
    conn = pop3proto.Connection(pop3proto.CLIENT)
    conn.receive_data(b"+OK ready\r\n")
    conn.next_event()
    conn.send(pop3proto.User("u"))
    conn.receive_data(b"+OK\r\n")
    conn.next_event()
    conn.send(pop3proto.Pass("p"))
    conn.receive_data(b"+OK\r\n")
    conn.next_event()
    conn.send(command)
    return conn


def engine_body(wire: bytes, expected_len: int) -> float:
    conn = client_in_transaction(pop3proto.Retr(1))
    chunks = [wire[i : i + CHUNK] for i in range(0, len(wire), CHUNK)]
    received = 0
    t0 = time.perf_counter()
    receive = conn.receive_data
    next_event = conn.next_event
    MessageData = pop3proto.MessageData
    for chunk in chunks:
        receive(chunk)
        while True:
            ev = next_event()
            if type(ev) is MessageData:
                received += len(ev.data)
            elif ev is pop3proto.NEED_DATA:
                break
    t1 = time.perf_counter()
    assert received == expected_len, (received, expected_len)
    return t1 - t0


def poplib_longresp(wire: bytes) -> tuple[float, list[bytes]]:
    # A POP3 with no socket: its private reader, fed from memory.
    client: Any = poplib.POP3.__new__(poplib.POP3)
    client._debugging = 0
    client.file = io.BufferedReader(io.BytesIO(wire), CHUNK)
    t0 = time.perf_counter()
    _, lines, _ = client._getlongresp()
    return time.perf_counter() - t0, lines


def engine_listing(wire: bytes, command: pop3proto.Command, n: int) -> float:
    conn = client_in_transaction(command)
    chunks = [wire[i : i + CHUNK] for i in range(0, len(wire), CHUNK)]
    t0 = time.perf_counter()
    result = None
    for chunk in chunks:
        conn.receive_data(chunk)
        ev = conn.next_event()
        if ev is not pop3proto.NEED_DATA:
            result = ev
    t1 = time.perf_counter()
    assert isinstance(result, (pop3proto.ListOk, pop3proto.UidlOk))
    mapping = result.sizes if isinstance(result, pop3proto.ListOk) else result.uids
    assert len(mapping) == n
    return t1 - t0


def small_message() -> bytes:
    """About 4 KB of ordinary mail, no dot-lines."""
    return (b"x" * 70 + b"\r\n") * 56


def client_pipelined(n: int) -> float:
    """Send n RETRs at once, then read the n replies (64 KiB chunks)."""
    conn = pop3proto.Connection(pop3proto.CLIENT, allow_unadvertised_pipelining=True)
    conn.receive_data(b"+OK ready\r\n")
    conn.next_event()
    conn.send(pop3proto.User("u"))
    conn.receive_data(b"+OK\r\n")
    conn.next_event()
    conn.send(pop3proto.Pass("p"))
    conn.receive_data(b"+OK\r\n")
    conn.next_event()
    wire = (b"+OK\r\n" + small_message() + b".\r\n") * n
    chunks = [wire[i : i + CHUNK] for i in range(0, len(wire), CHUNK)]
    send, receive, next_event = conn.send, conn.receive_data, conn.next_event
    MessageEnd, NEED_DATA, Retr = pop3proto.MessageEnd, pop3proto.NEED_DATA, pop3proto.Retr
    ends = 0
    t0 = time.perf_counter()
    for i in range(1, n + 1):
        send(Retr(i))
    for chunk in chunks:
        receive(chunk)
        while True:
            ev = next_event()
            if ev is NEED_DATA:
                break
            if type(ev) is MessageEnd:
                ends += 1
    t1 = time.perf_counter()
    assert ends == n, ends
    return t1 - t0


def server_pipelined(n: int) -> float:
    """Read n pipelined RETRs and write the n replies."""
    conn = pop3proto.Connection(pop3proto.SERVER)
    conn.send(pop3proto.Greeting("ready"))
    for line in (b"USER u\r\n", b"PASS p\r\n"):
        conn.receive_data(line)
        conn.next_event()
        conn.send(pop3proto.Ok())
    conn.receive_data(b"".join(b"RETR %d\r\n" % i for i in range(1, n + 1)))
    body = small_message()
    send, next_event = conn.send, conn.next_event
    start, end = pop3proto.MessageStart(), pop3proto.MessageEnd()
    data = pop3proto.MessageData(body)
    out = 0
    t0 = time.perf_counter()
    for _ in range(n):
        next_event()
        out += len(send(start)) + len(send(data)) + len(send(end))
    t1 = time.perf_counter()
    assert out > n * len(body)
    return t1 - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 MB body, 20,000 entries")
    parser.add_argument("--repeat", type=int, default=3, help="best of N runs (default 3)")
    args = parser.parse_args()
    size = 10_000_000 if args.quick else 100_000_000
    n = 20_000 if args.quick else 200_000

    body = make_body(size)
    stuffed = body.replace(b"\r\n.", b"\r\n..")
    if stuffed.startswith(b"."):
        stuffed = b"." + stuffed
    wire = b"+OK message follows\r\n" + stuffed + b".\r\n"
    # Deliver the status line with the first chunk, as a socket would.
    mb = len(body) / 1e6
    print(f"python {sys.version.split()[0]}, body {mb:.0f} MB, chunks of {CHUNK} octets")

    t = best_of(args.repeat, lambda: engine_body(wire, len(body)))
    print(f"RETR body  pop3proto : {mb / t:8.0f} MB/s")
    t_pop, lines = min((poplib_longresp(wire) for _ in range(args.repeat)), key=lambda r: r[0])
    assert sum(len(x) + 2 for x in lines) == len(body)
    print(f"RETR body  poplib    : {mb / t_pop:8.0f} MB/s   (pop3proto is {t_pop / t:.1f}x)")

    listing = b"".join(b"%d %d\r\n" % (i, 1000 + i * 7 % 100000) for i in range(1, n + 1))
    list_wire = b"+OK\r\n" + listing + b".\r\n"
    t = best_of(args.repeat, lambda: engine_listing(list_wire, pop3proto.List(), n))
    print(f"LIST       pop3proto : {n / t / 1e6:8.2f} M entries/s")

    def poplib_list() -> float:
        t_read, lines = poplib_longresp(list_wire)
        t0 = time.perf_counter()
        sizes = {}
        for line in lines:
            num, octets = line.split()
            sizes[int(num)] = int(octets)
        return t_read + time.perf_counter() - t0

    t_pop = best_of(args.repeat, poplib_list)
    print(
        f"LIST       poplib    : {n / t_pop / 1e6:8.2f} M entries/s"
        f"   (pop3proto is {t_pop / t:.1f}x)"
    )

    def bulk_floor() -> float:
        t0 = time.perf_counter()
        fields = listing.split()
        dict(zip(map(int, fields[0::2]), map(int, fields[1::2]), strict=True))
        return time.perf_counter() - t0

    t_floor = best_of(args.repeat, bulk_floor)
    print(f"LIST       bulk floor: {n / t_floor / 1e6:8.2f} M entries/s   (one split + map(int))")

    uidl = b"".join(b"%d %032x\r\n" % (i, i * 2654435761) for i in range(1, n + 1))
    uidl_wire = b"+OK\r\n" + uidl + b".\r\n"
    t = best_of(args.repeat, lambda: engine_listing(uidl_wire, pop3proto.Uidl(), n))
    print(f"UIDL       pop3proto : {n / t / 1e6:8.2f} M entries/s")

    def poplib_uidl() -> float:
        t_read, lines = poplib_longresp(uidl_wire)
        t0 = time.perf_counter()
        uids = {}
        for line in lines:
            num, uid = line.split()
            uids[int(num)] = uid.decode()
        return t_read + time.perf_counter() - t0

    t_pop = best_of(args.repeat, poplib_uidl)
    print(
        f"UIDL       poplib    : {n / t_pop / 1e6:8.2f} M entries/s"
        f"   (pop3proto is {t_pop / t:.1f}x)"
    )

    messages = 2_000
    t = best_of(args.repeat * 3, lambda: client_pipelined(messages))
    print(
        f"RETR x{messages} client : {messages / t / 1e3:8.1f} k messages/s"
        f"   ({t / messages * 1e6:.1f} us each, 4 KB, pipelined)"
    )
    t = best_of(args.repeat * 3, lambda: server_pipelined(messages))
    print(
        f"RETR x{messages} server : {messages / t / 1e3:8.1f} k messages/s"
        f"   ({t / messages * 1e6:.1f} us each)"
    )


if __name__ == "__main__":
    main()

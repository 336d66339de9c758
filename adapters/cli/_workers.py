"""``pop3proto serve --workers N``: N server processes on the same listeners,
each client address always served by the same process.

Why route by address: the server's connection admission (``max_preauth_per_ip``,
``max_sessions_per_ip``) and its authentication-failure penalties count per
client address, and each process keeps its own counts.  On one listening
socket shared by N processes the kernel hands each connection to whichever
process accepts first, so one address's connections spread over all of them
and every per-address limit would hold N times over.  Instead, on Linux,
each listener is N ``SO_REUSEPORT`` sockets (one per worker, joined in
worker order) with a classic BPF program attached to the group
(``SO_ATTACH_REUSEPORT_CBPF``) that picks the socket from the source
address: an IPv4 address, or an IPv6 address's /64 network (the unit the
penalties count, see ``_penalties.address_key``).  The same address always
lands on the same worker, so its limits and penalties hold exactly.

Where the program cannot be attached (not Linux, an old kernel, a
sandbox), the workers share one listening socket and one warning line
says that the per-address limits then hold per worker (SECURITY.md
"Several worker processes").

The parent binds everything before forking (so ``--user`` can drop root's
rights in the workers), forwards SIGINT and SIGTERM to them, and stops them
all when one of them ends: a lost worker would leave its share of the
addresses unserved (or, once its socket closes, re-routed by the kernel).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import struct
import sys
from collections.abc import Callable, Sequence

__all__ = [
    "attach_router",
    "exit_status",
    "open_listener",
    "route",
    "router_program",
    "run_workers",
    "split_limit",
    "usable_cores",
    "worker_ready",
]

# -- classic BPF (linux/filter.h, linux/bpf_common.h) -------------------------

_LD_W_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS: A = 32-bit word at k
_LD_B_ABS = 0x30  # BPF_LD | BPF_B | BPF_ABS: A = byte at k
_RSH_K = 0x74  # BPF_ALU | BPF_RSH | BPF_K: A >>= k
_MUL_K = 0x24  # BPF_ALU | BPF_MUL | BPF_K: A *= k
_MOD_K = 0x94  # BPF_ALU | BPF_MOD | BPF_K: A %= k
_XOR_X = 0xAC  # BPF_ALU | BPF_XOR | BPF_X: A ^= X
_JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K: pc += (A == k) ? jt : jf
_JA = 0x05  # BPF_JMP | BPF_JA: pc += k
_TAX = 0x07  # BPF_MISC | BPF_TAX: X = A
_RET_A = 0x16  # BPF_RET | BPF_A: return A

#: SKF_NET_OFF: loads at this (negative) offset read the network header,
#: wherever the packet's data pointer is (past the TCP header, here).
_NET = -0x100000
#: SO_ATTACH_REUSEPORT_CBPF (asm-generic/socket.h; the same on every Linux
#: architecture but a few that this module does not try).
SO_ATTACH_REUSEPORT_CBPF = 51
#: Knuth's multiplicative hash constant (2**32 / golden ratio): neighbouring
#: addresses (10.0.0.1, 10.0.0.2) land on unrelated workers.
_GOLDEN = 0x9E3779B1
_MASK = 0xFFFFFFFF
#: The prefix of an IPv4-mapped IPv6 address (::ffff:0:0/96).
_MAPPED = bytes(10) + b"\xff\xff"


def router_program(workers: int) -> list[tuple[int, int, int, int]]:
    """The classic BPF program that returns, for a TCP SYN, the index of the
    worker serving its source address: ``route(address, workers)``.

    Each instruction is ``(code, jt, jf, k)``.  IPv4: the source address
    (header bytes 12-15); IPv6: the two words of the source's /64 network
    (bytes 8-15), xored.  The word is then multiplied by :data:`_GOLDEN`,
    its high half folded into the low one, and taken modulo *workers*.
    """
    if workers < 1:
        raise ValueError("workers must be at least 1")
    return [
        (_LD_B_ABS, 0, 0, _NET + 0),  # 0: version and header length
        (_RSH_K, 0, 0, 4),  # 1: the version
        (_JEQ_K, 2, 0, 6),  # 2: IPv6? to 5
        (_LD_W_ABS, 0, 0, _NET + 12),  # 3: IPv4 source
        (_JA, 0, 0, 4),  # 4: to 9
        (_LD_W_ABS, 0, 0, _NET + 8),  # 5: IPv6 source, first word of the /64
        (_TAX, 0, 0, 0),  # 6
        (_LD_W_ABS, 0, 0, _NET + 12),  # 7: its second word (xored below)
        (_XOR_X, 0, 0, 0),  # 8: A = w1 ^ w2
        (_MUL_K, 0, 0, _GOLDEN),  # 9
        (_TAX, 0, 0, 0),  # 10
        (_RSH_K, 0, 0, 16),  # 11
        (_XOR_X, 0, 0, 0),  # 12: A = h ^ (h >> 16)
        (_MOD_K, 0, 0, workers),  # 13
        (_RET_A, 0, 0, 0),  # 14
    ]


def _fold(word: int, workers: int) -> int:
    h = (word * _GOLDEN) & _MASK
    return (h ^ (h >> 16)) % workers


def route(ip: str, workers: int) -> int:
    """The worker (0 to *workers* - 1) that :func:`router_program` picks for
    connections from *ip*: what the tests check the kernel against."""
    packed = socket.inet_pton(socket.AF_INET6 if ":" in ip else socket.AF_INET, ip)
    if packed[:12] == _MAPPED:
        # An IPv4 client of a dual-stack socket: its packets are IPv4.
        packed = packed[12:]
    if len(packed) == 4:
        return _fold(struct.unpack("!I", packed)[0], workers)
    first, second = struct.unpack("!II", packed[:8])
    return _fold(first ^ second, workers)


class _SockFilter(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_uint16),
        ("jt", ctypes.c_uint8),
        ("jf", ctypes.c_uint8),
        ("k", ctypes.c_uint32),
    ]


class _SockFprog(ctypes.Structure):
    _fields_ = [
        ("len", ctypes.c_ushort),
        ("filter", ctypes.POINTER(_SockFilter)),
    ]


def attach_router(sock: socket.socket, workers: int) -> None:
    """Attach :func:`router_program` to the ``SO_REUSEPORT`` group of *sock*
    (the group's sockets in the order they started listening are workers
    0, 1, ...).  Raises :class:`OSError` where the kernel refuses it."""
    program = router_program(workers)
    filters = (_SockFilter * len(program))(
        *(_SockFilter(code, jt, jf, k & _MASK) for code, jt, jf, k in program)
    )
    fprog = _SockFprog(len(program), filters)
    # The kernel copies the program during the call: the buffers need only
    # outlive it.
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, bytes(fprog))


# -- binding -----------------------------------------------------------------


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the system
    has one, else every core): the default number of workers."""
    getaffinity: Callable[[int], set[int]] | None = getattr(os, "sched_getaffinity", None)
    if getaffinity is not None:
        return max(1, len(getaffinity(0)))
    return max(1, os.cpu_count() or 1)  # pragma: no cover - not Linux


def split_limit(total: int, workers: int) -> list[int]:
    """*total* (``--max-connections``) shared out: each worker gets
    ``total // workers``, the first ``total % workers`` one more, so the
    shares add up to *total*; a share is never below 1 (with fewer
    connections than workers, the whole server admits *workers*)."""
    share, extra = divmod(total, workers)
    return [max(1, share + (index < extra)) for index in range(workers)]


def open_listener(
    host: str, port: int, workers: int, *, backlog: int = 1024
) -> tuple[list[socket.socket], str | None]:
    """Bind *host*:*port* for *workers* processes: the listening socket of
    each worker, in worker order, and ``None``; or, where connections
    cannot be routed by address, the one socket they all share (listed
    *workers* times) and the reason.  Raises :class:`OSError` if the
    address cannot be bound."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, address = infos[0]
    if not hasattr(socket, "SO_REUSEPORT") or not sys.platform.startswith("linux"):
        reason = "SO_REUSEPORT routing needs Linux"  # pragma: no cover - Linux runs the tests
    else:
        if address[1]:
            # SO_REUSEPORT would let these sockets join another server's
            # group on the port (one started by the same user, e.g. this
            # command run twice) and share its connections: a socket
            # without it finds the port in use first.
            socket.create_server(address, family=family).close()
        first = socket.create_server(address, family=family, backlog=backlog, reuse_port=True)
        try:
            # Attached while the group holds one socket: a kernel that
            # refuses it is known before the others are bound.
            attach_router(first, workers)
        except OSError as exc:
            first.close()
            reason = f"cannot attach the routing program ({exc.strerror or exc})"
        else:
            sockets = [first]
            try:
                # The group's order is the order the sockets start
                # listening: worker i's socket is index i.
                bound = first.getsockname()  # the port chosen, if 0 was asked
                for _ in range(workers - 1):
                    sockets.append(
                        socket.create_server(bound, family=family, backlog=backlog, reuse_port=True)
                    )
            except OSError:
                for sock in sockets:
                    sock.close()
                raise
            return sockets, None
    shared = socket.create_server(address, family=family, backlog=backlog)
    return [shared] * workers, reason


# -- the processes -------------------------------------------------------------

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def exit_status(wait_status: int) -> int:
    """A child's exit code from its wait status; a signal's death as the
    shell says it, 128 + the signal's number."""
    code = os.waitstatus_to_exitcode(wait_status)
    return 128 - code if code < 0 else code


def run_workers(
    listeners_of: Sequence[Sequence[socket.socket]],
    serve: Callable[[int], int],
    *,
    on_stray: Callable[[int, int, int], None],
) -> int:
    """Fork one worker per entry of *listeners_of* (worker *i* serves the
    sockets ``listeners_of[i]``); in the parent, supervise them and return
    the worst exit status.  A worker never returns: it runs ``serve(i)``
    and leaves the process with its result (``os._exit``, so that nothing
    of the parent's, such as a test runner, runs on in it).

    Each worker closes the sockets that are not its own, so that a
    listening socket belongs to one process and goes with it; the parent
    closes them all once every worker runs.  SIGINT and SIGTERM sent to
    the parent are sent on to every worker, which stops cleanly; they stay
    blocked in a worker until its runtime handles them (see
    :func:`worker_ready`), so an early one is neither lost nor fatal.
    When one worker ends, the others are told to stop (SIGTERM):
    *on_stray(index, pid, status)* is called first if no stop signal came.
    """
    every = {sock.fileno(): sock for socks in listeners_of for sock in socks}
    children: dict[int, int] = {}  # pid: index
    stopping: list[int] = []

    def forward(signum: int, frame: object) -> None:
        stopping.append(signum)
        for pid in children:
            with contextlib.suppress(ProcessLookupError):  # already gone
                os.kill(pid, signum)

    # Blocked across the forks: a signal is handled by the parent's
    # forwarder, or by a worker's runtime, never by a default handler in a
    # half-started worker (nor by the forwarder's copy in a worker).
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    previous = {s: signal.signal(s, forward) for s in _STOP_SIGNALS}
    try:
        for index, mine in enumerate(listeners_of):
            try:
                pid = os.fork()
            except OSError:
                # No orphans: the workers already started stop with it.
                forward(signal.SIGTERM, None)
                for started in children:
                    os.waitpid(started, 0)
                for signum, handler in previous.items():
                    signal.signal(signum, handler)
                raise
            if pid == 0:  # pragma: no cover - measured in the worker, not here
                _worker(index, serve, [s for s in every.values() if s not in mine])
            children[pid] = index
    finally:
        for sock in every.values():
            sock.close()  # the workers accept; the parent only waits
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    worst = 0
    try:
        while children:
            pid, status = os.wait()
            if pid not in children:  # pragma: no cover - not one of ours
                continue
            index = children.pop(pid)
            code = exit_status(status)
            worst = max(worst, code)
            if not stopping:
                on_stray(index, pid, code)
                forward(signal.SIGTERM, None)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return worst


def worker_ready() -> None:  # pragma: no cover - runs in the forked worker
    """In a worker: its runtime handles SIGINT and SIGTERM now; let them in."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)


def _ignore(signum: int, frame: object) -> None:  # pragma: no cover - in a worker
    """A stop signal that came after the runtime stopped handling them."""


def _worker(
    index: int, serve: Callable[[int], int], others: list[socket.socket]
) -> None:  # pragma: no cover - runs in the forked worker (coverage follows exec, not fork)
    code = 1
    try:
        # Ignored, under the runtime's own handlers: a signal arriving
        # twice (from a terminal to the process group, and forwarded by the
        # parent) cannot kill a worker that is already stopping.  A handler
        # that does nothing, not SIG_IGN: setting SIG_IGN would discard a
        # stop signal already pending (blocked) for the runtime.
        for signum in _STOP_SIGNALS:
            signal.signal(signum, _ignore)
        for sock in others:
            sock.close()
        code = serve(index)
        signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)

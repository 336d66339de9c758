"""``pop3proto serve --workers``' routing and bookkeeping
(``adapters/cli/_workers.py``), in this process: no worker is forked here
(``tests/cli/test_serve_workers.py`` runs the real thing)."""

from __future__ import annotations

import errno
import os
import signal
import socket
import sys
from collections import Counter
from typing import Any

import pytest

from pop3proto.adapters.cli import _serve, _workers
from pop3proto.adapters.cli._serve import _Listener, _ServeSpec

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="routing by address needs Linux"
)


def accepted_by(sockets: list[socket.socket], source: str, port: int, host: str) -> int:
    """Connect from *source* to *host*:*port*; the index of the listening
    socket that got the connection (each is polled once it is queued)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as client:
        client.bind((source, 0))
        client.connect((host, port))
        found = []
        for index, listener in enumerate(sockets):
            listener.settimeout(0)
            try:
                conn, _ = listener.accept()
            except BlockingIOError:
                continue
            conn.close()
            found.append(index)
        assert len(found) == 1, found
        return found[0]


@linux_only
@pytest.mark.parametrize("workers", [2, 3, 5])
def test_the_kernel_routes_each_address_where_route_says(workers: int) -> None:
    """The attached program and :func:`route` agree, for every source
    address tried, and every worker gets some of them (127.0.0.0/8 is all
    loopback on Linux: any of it can be a client's source)."""
    sockets, reason = _workers.open_listener("127.0.0.1", 0, workers)
    try:
        assert reason is None
        assert len({s.fileno() for s in sockets}) == workers
        port = sockets[0].getsockname()[1]
        assert all(s.getsockname()[1] == port for s in sockets)
        sources = [f"127.0.{b}.{c}" for b in (0, 7) for c in range(1, 41)]
        served = {ip: accepted_by(sockets, ip, port, "127.0.0.1") for ip in sources}
        assert served == {ip: _workers.route(ip, workers) for ip in sources}
        # Twice: the same address, the same worker.
        assert all(accepted_by(sockets, ip, port, "127.0.0.1") == served[ip] for ip in sources[:8])
        counts = Counter(served.values())
        assert set(counts) == set(range(workers))
        assert min(counts.values()) >= len(sources) // workers // 3
    finally:
        for s in sockets:
            s.close()


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@linux_only
@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback")
def test_ipv6_clients_are_routed_by_their_64() -> None:
    sockets, reason = _workers.open_listener("::1", 0, 3)
    try:
        assert reason is None
        port = sockets[0].getsockname()[1]
        for _ in range(4):
            assert accepted_by(sockets, "::1", port, "::1") == _workers.route("::1", 3)
    finally:
        for s in sockets:
            s.close()


def test_route_counts_an_ipv6_address_by_its_64_and_a_mapped_one_as_ipv4() -> None:
    for workers in (2, 3, 7):
        assert _workers.route("2001:db8:1:2::1", workers) == _workers.route(
            "2001:db8:1:2:ffff:ffff:ffff:ffff", workers
        )
        assert _workers.route("::ffff:192.0.2.7", workers) == _workers.route("192.0.2.7", workers)
    # Different /64 networks are spread like IPv4 addresses.
    spread = {_workers.route(f"2001:db8:0:{n:x}::1", 4) for n in range(64)}
    assert spread == {0, 1, 2, 3}
    assert {_workers.route(f"10.0.0.{n}", 1) for n in range(50)} == {0}


def test_the_program_is_checked() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        _workers.router_program(0)
    program = _workers.router_program(4)
    assert program[-2] == (0x94, 0, 0, 4)  # A %= 4
    assert program[-1] == (0x16, 0, 0, 0)  # return A


@linux_only
def test_without_routing_the_workers_share_one_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(sock: socket.socket, workers: int) -> None:
        raise OSError(errno.EPERM, os.strerror(errno.EPERM))

    monkeypatch.setattr(_workers, "attach_router", refuse)
    sockets, reason = _workers.open_listener("127.0.0.1", 0, 3)
    try:
        assert reason == "cannot attach the routing program (Operation not permitted)"
        assert len(sockets) == 3
        assert sockets[0] is sockets[1] is sockets[2]
        # Not a SO_REUSEPORT socket: nobody else can join it.
        assert not sockets[0].getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
    finally:
        sockets[0].close()


@linux_only
def test_a_bind_error_leaves_no_socket_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[socket.socket] = []
    real = socket.create_server

    def create_server(*args: Any, **kwargs: Any) -> socket.socket:
        if len(made) == 2:
            raise OSError(errno.EADDRINUSE, "taken")
        made.append(real(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(socket, "create_server", create_server)
    with pytest.raises(OSError, match="taken"):
        _workers.open_listener("127.0.0.1", 0, 4)
    assert [s.fileno() for s in made] == [-1, -1]


@linux_only
def test_a_port_another_server_listens_on_is_in_use() -> None:
    """Not joined: another group on the port (the same command started
    twice) would share its connections with this one."""
    sockets, _ = _workers.open_listener("127.0.0.1", 0, 2)
    try:
        port = sockets[0].getsockname()[1]
        with pytest.raises(OSError) as info:
            _workers.open_listener("127.0.0.1", port, 2)
        assert info.value.errno == errno.EADDRINUSE
    finally:
        for s in sockets:
            s.close()
    # Free again: bound, and routed.
    again, reason = _workers.open_listener("127.0.0.1", port, 2)
    assert reason is None and [s.getsockname()[1] for s in again] == [port, port]
    for s in again:
        s.close()


def test_max_connections_is_shared_out() -> None:
    assert _workers.split_limit(100, 2) == [50, 50]
    assert _workers.split_limit(101, 3) == [34, 34, 33]
    assert _workers.split_limit(7, 1) == [7]
    # Fewer connections than workers: one each.
    assert _workers.split_limit(2, 4) == [1, 1, 1, 1]
    for total in range(1, 40):
        for workers in range(1, 9):
            shares = _workers.split_limit(total, workers)
            assert sum(shares) == max(total, workers)
            assert max(shares) - min(shares) <= 1


def test_usable_cores_follows_the_affinity() -> None:
    if hasattr(os, "sched_getaffinity"):
        assert _workers.usable_cores() == len(os.sched_getaffinity(0))
    else:  # pragma: no cover - not Linux
        assert _workers.usable_cores() == (os.cpu_count() or 1)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork")
def test_a_failed_fork_leaves_no_worker_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    """The second fork fails: the first worker (here a pretend one) is
    stopped and reaped, the handlers restored and the sockets closed."""
    killed: list[tuple[int, int]] = []
    reaped: list[int] = []
    forks = iter([4242])

    def fork() -> int:
        for pid in forks:
            return pid
        raise OSError(errno.EAGAIN, "Resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", fork)
    monkeypatch.setattr(os, "kill", lambda pid, signum: killed.append((pid, signum)))

    def waitpid(pid: int, options: int) -> tuple[int, int]:
        reaped.append(pid)
        return pid, 0

    monkeypatch.setattr(os, "waitpid", waitpid)
    before = signal.getsignal(signal.SIGTERM)
    a, b = socket.socket(), socket.socket()
    with pytest.raises(OSError, match="temporarily"):
        _workers.run_workers([[a], [b]], lambda index: 0, on_stray=lambda *args: None)
    assert killed == [(4242, signal.SIGTERM)] and reaped == [4242]
    assert signal.getsignal(signal.SIGTERM) is before
    assert a.fileno() == b.fileno() == -1


def test_a_worker_killed_by_a_signal_is_a_failure() -> None:
    assert _workers.exit_status(0) == 0
    assert _workers.exit_status(3 << 8) == 3
    assert _workers.exit_status(signal.SIGKILL) == 128 + signal.SIGKILL


# ---------------------------------------------------------------------------
# What each worker gets: _fork_workers, its forks replaced by calls
# ---------------------------------------------------------------------------


def spec_for(listeners: list[_Listener], max_connections: int) -> _ServeSpec:
    return _ServeSpec(
        backend=None,  # type: ignore[arg-type]
        authenticator=None,  # type: ignore[arg-type]
        config=None,  # type: ignore[arg-type]
        ssl_context=None,
        listeners=listeners,
        max_connections=max_connections,
    )


def run_unforked(
    monkeypatch: pytest.MonkeyPatch, spec: _ServeSpec, workers: int
) -> tuple[int, list[_ServeSpec], list[list[socket.socket]]]:
    """_fork_workers with each worker served in turn, here."""
    served: list[_ServeSpec] = []
    handed: list[list[socket.socket]] = []

    def serve_in(runtime: str, spec: _ServeSpec) -> None:
        served.append(spec)

    def run_workers(listeners_of: list[list[socket.socket]], serve: Any, **kwargs: Any) -> int:
        handed.extend(listeners_of)
        statuses = [serve(index) for index in range(len(listeners_of))]
        for sock in {s for socks in listeners_of for s in socks}:
            sock.close()
        return max(statuses)

    monkeypatch.setattr(_serve, "_serve_in", serve_in)
    monkeypatch.setattr(_workers, "run_workers", run_workers)
    status = _serve._fork_workers(spec, workers, "asyncio")
    return status, served, handed


@linux_only
def test_each_worker_gets_its_sockets_and_its_share(monkeypatch: pytest.MonkeyPatch) -> None:
    plain, tls = _Listener("127.0.0.1", 0, False), _Listener("127.0.0.1", 0, True)
    status, served, handed = run_unforked(monkeypatch, spec_for([plain, tls], 101), 3)
    assert status == 0
    assert [s.max_connections for s in served] == [34, 34, 33]
    assert [s.quiet for s in served] == [False, True, True]
    assert all(s.ready is _workers.worker_ready for s in served)
    for index, spec in enumerate(served):
        assert [lst.implicit_tls for lst in spec.listeners] == [False, True]
        assert [lst.sock for lst in spec.listeners] == handed[index]
    # One port per listener, one socket per worker on it.
    for position in range(2):
        ports = {spec.listeners[position].port for spec in served}
        assert len(ports) == 1 and ports != {0}
        assert len({id(spec.listeners[position].sock) for spec in served}) == 3


@linux_only
def test_without_routing_one_warning_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse(sock: socket.socket, workers: int) -> None:
        raise OSError(errno.ENOPROTOOPT, os.strerror(errno.ENOPROTOOPT))

    monkeypatch.setattr(_workers, "attach_router", refuse)
    with caplog.at_level("WARNING", logger="pop3proto.cli"):
        status, served, _ = run_unforked(
            monkeypatch, spec_for([_Listener("127.0.0.1", 0, False)], 100), 2
        )
    assert status == 0
    assert served[0].listeners[0].sock is served[1].listeners[0].sock
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert "cannot attach the routing program" in warnings[0]
    assert "per-address limits and penalties hold per worker" in warnings[0]


@linux_only
def test_a_listen_error_closes_the_listeners_already_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    opened: list[socket.socket] = []
    real = _workers.open_listener

    def open_listener(host: str, port: int, workers: int) -> Any:
        sockets, reason = real(host, port, workers)
        opened.extend(sockets)
        return sockets, reason

    monkeypatch.setattr(_workers, "open_listener", open_listener)
    good = _Listener("127.0.0.1", 0, False)
    bad = _Listener("192.0.2.1", 1, False)  # TEST-NET-1: not this host's
    with pytest.raises(_serve.CLIError, match=r"cannot listen on 192\.0\.2\.1:1"):
        _serve._fork_workers(spec_for([good, bad], 100), 2, "asyncio")
    assert len(opened) == 2
    assert all(s.fileno() == -1 for s in opened)


def test_a_worker_reports_its_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def fail(runtime: str, spec: _ServeSpec) -> None:
        raise _serve.CLIError("cannot start TLS", 5)

    def run_workers(listeners_of: list[list[socket.socket]], serve: Any, **kwargs: Any) -> int:
        for sock in {s for socks in listeners_of for s in socks}:
            sock.close()
        return int(serve(0))

    monkeypatch.setattr(_serve, "_serve_in", fail)
    monkeypatch.setattr(_workers, "run_workers", run_workers)
    spec = spec_for([_Listener("127.0.0.1", 0, False)], 10)
    assert _serve._fork_workers(spec, 2, "trio") == 5
    assert "pop3proto serve: error: cannot start TLS" in capsys.readouterr().err

"""The asyncio and trio POP3 clients (adapters/client/_async.py, _asyncio.py, _trio.py).

Both clients run against every server of the project: the blocking one
(adapters/server/_sync.py) and, when they import, the asyncio and trio ones.
Each server runs in a background thread (with its own event loop for the
async ones) on 127.0.0.1 port 0, so any client can talk to any server; TLS
(STLS and implicit) uses ``trustme`` certificates.  The trio client is also
driven over ``trio.testing`` memory streams against a scripted fake server
task (``FakeSession`` from ``tests.helpers``), with no network at all.

Event loops are started with ``asyncio.run`` / ``trio.run`` inside plain
test functions: no pytest plugin is needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import socket
import ssl
import textwrap
import threading
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest
import trio
import trio.testing

import pop3proto
from pop3proto import State
from pop3proto.adapters import asyncio as aio_public
from pop3proto.adapters import trio as trio_public
from pop3proto.adapters.client import _asyncio as asyncio_runner
from pop3proto.adapters.client import _trio as trio_runner
from pop3proto.adapters.client._async import AsyncClientBase
from pop3proto.adapters.client._asyncio import Client as AsyncioClient
from pop3proto.adapters.client._base import DEFAULT_WINDOW
from pop3proto.adapters.client._errors import (
    AuthenticationFailed,
    CommandFailed,
    ConnectionLost,
    InsecureAuthenticationRefused,
    POP3Error,
    ProtocolViolation,
    TLSUnavailable,
)
from pop3proto.adapters.client._trio import Client as TrioClient
from pop3proto.adapters.client._trio import connect as trio_connect
from pop3proto.adapters.mailstore._memory import MemoryBackend
from pop3proto.adapters.mailstore._users import DictAuthenticator
from pop3proto.adapters.server._sync import Server as SyncServer
from pop3proto.adapters.sync import MailboxStatus
from tests.helpers import (
    FAKE_MESSAGES,
    PASSWORD,
    FakeConfig,
    FakeSession,
    expected_body,
)

try:
    from pop3proto.adapters.server._asyncio import Server as AsyncioServer
except Exception:  # pragma: no cover - the teammate's module is not there yet
    AsyncioServer = None  # type: ignore[assignment, misc]
try:
    from pop3proto.adapters.server._trio import Server as TrioServer
except Exception:  # pragma: no cover
    TrioServer = None  # type: ignore[assignment, misc]

T = TypeVar("T")

TIMEOUT = 10.0


#: A multi-megabyte message; a third of its lines start with a dot.
BIG = b"Subject: big\r\n\r\n" + b"".join(
    (b"." if i % 3 == 0 else b"") + b"line %07d %s\r\n" % (i, b"y" * 70) for i in range(40_000)
)
MESSAGES = [
    b"Subject: one\r\nFrom: a@example.org\r\n\r\nbody one\r\n",
    b"Subject: dots\r\n\r\n.starts with a dot\r\n..two dots\r\n.\r\n...\r\nno final newline",
    b"Subject: bare LF\n\nline\n.\n..\n",
    b"",
    BIG,
]
EXPECTED = [expected_body(m) for m in MESSAGES]
BIG_NUMBER = len(MESSAGES)


def new_backend() -> MemoryBackend:
    return MemoryBackend({"alice": MESSAGES})


def authenticator() -> DictAuthenticator:
    return DictAuthenticator({"alice": PASSWORD})


# ---------------------------------------------------------------------------
# Certificates
# ---------------------------------------------------------------------------


# ---------------------------------------------------------------------------
# The two client flavours
# ---------------------------------------------------------------------------


class Flavor:
    """What a test needs to know about one async library."""

    name = ""
    timeout_error: type[BaseException] = TimeoutError

    def run(self, fn: Callable[[], Awaitable[T]]) -> T:
        raise NotImplementedError

    async def open(self, host: str, port: int, **kwargs: Any) -> AsyncClientBase:
        """A connected client (greeting read, TLS started as asked)."""
        raise NotImplementedError

    async def cancel_after(self, seconds: float, fn: Callable[[], Awaitable[object]]) -> bool:
        """Run *fn*, cancelling it after *seconds*; whether it was cancelled."""
        raise NotImplementedError

    async def sleep(self, seconds: float) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        return self.name


class AsyncioFlavor(Flavor):
    name = "asyncio"

    def run(self, fn: Callable[[], Awaitable[T]]) -> T:
        async def main() -> T:
            return await fn()

        return asyncio.run(main())

    async def open(self, host: str, port: int, **kwargs: Any) -> AsyncClientBase:
        kwargs.setdefault("timeout", TIMEOUT)
        return await AsyncioClient(host, port, **kwargs).connect()

    async def cancel_after(self, seconds: float, fn: Callable[[], Awaitable[object]]) -> bool:
        async def call() -> None:
            await fn()

        try:
            await asyncio.wait_for(call(), seconds)
        except asyncio.TimeoutError:  # TimeoutError from 3.11 on
            return True
        return False

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class TrioFlavor(Flavor):
    name = "trio"
    timeout_error = trio.TooSlowError

    def run(self, fn: Callable[[], Awaitable[T]]) -> T:
        async def main() -> T:
            return await fn()

        result: T = trio.run(main)
        return result

    async def open(self, host: str, port: int, **kwargs: Any) -> AsyncClientBase:
        kwargs.setdefault("timeout", TIMEOUT)
        return await trio_connect(host, port, **kwargs)

    async def cancel_after(self, seconds: float, fn: Callable[[], Awaitable[object]]) -> bool:
        with trio.move_on_after(seconds) as scope:
            await fn()
        return bool(scope.cancelled_caught)

    async def sleep(self, seconds: float) -> None:
        await trio.sleep(seconds)


FLAVORS = [AsyncioFlavor(), TrioFlavor()]


def skip_without_asyncio_stls(*parties: object) -> None:
    """Skip where asyncio would have to do STLS on Python 3.10: it has no
    StreamWriter.start_tls before 3.11, and both asyncio adapters say so
    (test_asyncio_stls_needs_python_3_11 checks that they do)."""
    if not asyncio_runner.STLS_SUPPORTED and any(
        party == "asyncio" or isinstance(party, AsyncioFlavor) for party in parties
    ):
        pytest.skip("STLS over asyncio needs Python 3.11")


@pytest.fixture(params=FLAVORS, ids=str)
def flavor(request: pytest.FixtureRequest) -> Flavor:
    result: Flavor = request.param
    return result


# ---------------------------------------------------------------------------
# The servers, each in a thread of its own
# ---------------------------------------------------------------------------

SERVER_KINDS = ["sync", "asyncio", "trio"]


@pytest.fixture(params=SERVER_KINDS)
def server_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    if kind == "asyncio" and AsyncioServer is None:
        pytest.skip("adapters/_asyncio_server.py does not import")
    if kind == "trio" and TrioServer is None:
        pytest.skip("adapters/_trio_server.py does not import")
    return kind


@contextlib.contextmanager
def running_server(kind: str, backend: MemoryBackend, **kwargs: Any) -> Iterator[tuple[str, int]]:
    """Serve *backend* on 127.0.0.1:0 with the *kind* server; yield its address."""
    kwargs = {"port": 0, "linger": 0.05, **kwargs}
    auth = authenticator()
    if kind == "sync":
        server = SyncServer(backend, auth, **kwargs)
        server.start()
        try:
            yield server.server_address
        finally:
            server.shutdown()
            server.server_close()
        return
    started = threading.Event()
    box: dict[str, Any] = {}

    async def asyncio_main() -> None:
        async with AsyncioServer(backend, auth, **kwargs) as server:
            box["address"] = server.server_address
            box["stop"] = stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            box["stopper"] = lambda: loop.call_soon_threadsafe(stop.set)
            started.set()
            await stop.wait()

    async def trio_main() -> None:
        server = TrioServer(backend, auth, **kwargs)
        token = trio.lowlevel.current_trio_token()
        box["stopper"] = lambda: token.run_sync_soon(server.shutdown)
        async with trio.open_nursery() as nursery:
            box["address"] = await nursery.start(server.serve)
            started.set()

    def target() -> None:
        try:
            if kind == "asyncio":
                asyncio.run(asyncio_main())
            else:
                trio.run(trio_main)
        except BaseException as exc:  # pragma: no cover - reported below
            box["error"] = exc
        finally:
            started.set()

    thread = threading.Thread(target=target, name=f"{kind}-server", daemon=True)
    thread.start()
    started.wait(10)
    if "error" in box:  # pragma: no cover
        raise box["error"]
    try:
        yield box["address"]
    finally:
        box["stopper"]()
        thread.join(10)
        assert not thread.is_alive(), "the server thread did not stop"
        if "error" in box:  # pragma: no cover
            raise box["error"]


# ---------------------------------------------------------------------------
# Sinks
# ---------------------------------------------------------------------------


class AsyncFile:
    """An async file-like sink (``await f.write(chunk)``) that keeps a hash
    and a length only, unless *keep*."""

    def __init__(self, keep: bool = True) -> None:
        self.keep = keep
        self.data = bytearray()
        self.size = 0
        self.writes = 0
        self.largest = 0

    async def write(self, data: bytes) -> int:
        await asyncio.sleep(0) if _in_asyncio() else await trio.lowlevel.checkpoint()
        self.writes += 1
        self.size += len(data)
        self.largest = max(self.largest, len(data))
        if self.keep:
            self.data += data
        return len(data)


def _in_asyncio() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


# ---------------------------------------------------------------------------
# Every client against every server
# ---------------------------------------------------------------------------


def test_full_session(flavor: Flavor, server_kind: str) -> None:
    backend = new_backend()

    async def main() -> None:
        client = await flavor.open(host, port, tls="none")
        async with client:
            assert await client.login("alice", PASSWORD) == "SCRAM-SHA-256"
            assert client.state is State.TRANSACTION
            assert not client.tls
            assert await client.stat() == MailboxStatus(
                len(EXPECTED), sum(len(e) for e in EXPECTED)
            )
            assert await client.list() == {n: len(e) for n, e in enumerate(EXPECTED, 1)}
            assert await client.size(2) == len(EXPECTED[1])
            uids = await client.uidl()
            assert sorted(uids) == list(range(1, len(EXPECTED) + 1))
            assert await client.uid(3) == uids[3]
            listing = await client.listing()
            assert (listing.sizes, listing.uids, listing.status) == (
                await client.list(),
                uids,
                None,
            )
            assert await client.capabilities() is await client.capabilities()
            # Byte for byte, dot lines and all.
            for number, expected in enumerate(EXPECTED, 1):
                assert await client.retrieve(number) == expected
            assert await client.top(1, 0) == b"Subject: one\r\nFrom: a@example.org\r\n\r\n"
            # Sinks: async file, sync file, plain callback, async callback.
            async_file = AsyncFile()
            assert await client.retrieve_into(BIG_NUMBER, async_file) == len(BIG)
            assert async_file.data == BIG
            sync_file = io.BytesIO()
            assert await client.retrieve_into(BIG_NUMBER, sync_file) == len(BIG)
            assert sync_file.getvalue() == BIG
            chunks: list[bytes] = []
            assert await client.retrieve_into(2, chunks.append) == len(EXPECTED[1])
            assert b"".join(chunks) == EXPECTED[1]
            received = bytearray()

            async def callback(data: bytes) -> None:
                received.extend(data)

            await client.retrieve_into(1, callback)
            assert received == EXPECTED[0]
            # Pipelined (PIPELINING is advertised) and one at a time.
            pipelined = client.retrieve_many(range(1, len(EXPECTED) + 1))
            assert [item async for item in pipelined] == list(enumerate(EXPECTED, 1))
            assert pipelined.batch.window == DEFAULT_WINDOW
            single = client.retrieve_many([3, 1], window=1)
            assert [item async for item in single] == [(3, EXPECTED[2]), (1, EXPECTED[0])]
            assert single.batch.window == 1
            streamed: dict[int, bytearray] = {}

            async def into(number: int, data: bytes) -> None:
                streamed.setdefault(number, bytearray()).extend(data)

            assert await client.retrieve_many_into([2, BIG_NUMBER], into) == 2
            assert streamed == {2: EXPECTED[1], BIG_NUMBER: BIG}
            # Delete, check, reset, delete again, commit.
            await client.delete(1)
            with pytest.raises(CommandFailed) as info:
                await client.retrieve(1)
            assert info.value.response is not None
            await client.reset()
            assert await client.retrieve(1) == EXPECTED[0]
            await client.delete_many([1, 2])
            await client.noop()
            assert await client.quit() is True
        assert client.state is State.CLOSED
        assert "closed" in repr(client)

    with running_server(server_kind, backend) as (host, port):
        flavor.run(main)
    assert backend.messages("alice") == MESSAGES[2:]


@pytest.mark.parametrize("mechanism", ["USER", "SCRAM-SHA-256", "CRAM-MD5", "PLAIN"])
def test_login_mechanisms(flavor: Flavor, server_kind: str, mechanism: str) -> None:
    async def main() -> None:
        async with await flavor.open(host, port, tls="none") as client:
            assert await client.login("alice", PASSWORD, mechanism=mechanism) == mechanism
            assert (await client.stat()).count == len(MESSAGES)

    with running_server(server_kind, new_backend()) as (host, port):
        flavor.run(main)


def test_wrong_password(flavor: Flavor, server_kind: str) -> None:
    async def main() -> None:
        async with await flavor.open(host, port, tls="none") as client:
            with pytest.raises(AuthenticationFailed) as info:
                await client.login("alice", "wrong")
            assert info.value.code is not None and info.value.code.known == "AUTH"
            assert "wrong" not in str(info.value)
            # [AUTH] to SCRAM may mean "cannot verify SCRAM here": PLAIN,
            # which sends the password itself, gave the verdict.
            assert "tried SCRAM-SHA-256, PLAIN" in str(info.value)
            # Still in step (two failures of three): the right password works.
            assert await client.login("alice", PASSWORD) == "SCRAM-SHA-256"

    with running_server(server_kind, new_backend()) as (host, port):
        flavor.run(main)


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
def test_tls(
    flavor: Flavor,
    server_kind: str,
    mode: str,
    server_context: ssl.SSLContext,
    client_context: ssl.SSLContext,
) -> None:
    if mode == "starttls":
        skip_without_asyncio_stls(flavor, server_kind)
    backend = new_backend()

    async def main() -> None:
        client = await flavor.open(host, port, tls=mode, ssl_context=client_context)
        async with client:
            assert client.tls
            # The server does not trust loopback here: PLAIN is only allowed
            # because the link is really encrypted.
            assert await client.login("alice", PASSWORD, mechanism="PLAIN") == "PLAIN"
            assert await client.retrieve(2) == EXPECTED[1]
            sink = AsyncFile()
            await client.retrieve_into(BIG_NUMBER, sink)
            assert sink.data == BIG
            await client.delete(1)
        assert client.state is State.CLOSED

    with running_server(
        server_kind,
        backend,
        ssl_context=server_context,
        implicit_tls=mode == "implicit",
        trust_loopback=False,
    ) as (host, port):
        flavor.run(main)
    assert backend.messages("alice") == MESSAGES[1:]


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
def test_untrusted_certificate_is_refused(
    flavor: Flavor, mode: str, server_context: ssl.SSLContext
) -> None:
    if mode == "starttls":
        skip_without_asyncio_stls(flavor)

    async def main() -> None:
        # The default context verifies against the system CAs: trustme's
        # test CA is not one of them.
        with pytest.raises((ssl.SSLCertVerificationError, trio.BrokenResourceError)) as info:
            await flavor.open(host, port, tls=mode)
        error = info.value
        if isinstance(error, trio.BrokenResourceError):
            assert isinstance(error.__cause__, ssl.SSLCertVerificationError)

    with running_server(
        "sync", new_backend(), ssl_context=server_context, implicit_tls=mode == "implicit"
    ) as (host, port):
        flavor.run(main)


def test_cancel_a_retrieve_midway(flavor: Flavor, server_kind: str) -> None:
    """Cancelled while the body streams in: the next command reads and drops
    the rest, so the session stays in step."""

    async def main() -> None:
        async with await flavor.open(host, port, tls="none") as client:
            await client.login("alice", PASSWORD)
            got: list[int] = []

            async def stuck_sink(data: bytes) -> None:
                got.append(len(data))
                if sum(got) > 200_000:
                    await flavor.sleep(3600)

            cancelled = await flavor.cancel_after(
                0.3, lambda: client.retrieve_into(BIG_NUMBER, stuck_sink)
            )
            assert cancelled
            assert 200_000 < sum(got) < len(BIG)
            assert client.core.conn.outstanding  # the rest of the body is owed
            await client.noop()
            assert await client.retrieve(2) == EXPECTED[1]
            assert await client.retrieve(BIG_NUMBER) == BIG
            # Also when the cancellation hits a read (the sink never blocks).
            await flavor.cancel_after(0.001, lambda: client.retrieve(BIG_NUMBER))
            assert await client.uid(1)
            assert await client.retrieve(1) == EXPECTED[0]

    with running_server(server_kind, new_backend()) as (host, port):
        flavor.run(main)


class CountingFile:
    """A synchronous file-like sink that keeps nothing."""

    def __init__(self) -> None:
        self.size = 0
        self.writes = 0
        self.largest = 0

    def write(self, data: bytes) -> int:
        self.writes += 1
        self.size += len(data)
        self.largest = max(self.largest, len(data))
        return len(data)


@pytest.mark.parametrize("sink_kind", ["async", "sync"])
def test_memory_stays_bounded(flavor: Flavor, sink_kind: str) -> None:
    huge = BIG * 4  # about 13.6 MB
    backend = MemoryBackend({"alice": [huge]})

    async def main() -> tuple[int, int]:
        async with await flavor.open(host, port, tls="none") as client:
            await client.login("alice", PASSWORD)
            sink = AsyncFile(keep=False) if sink_kind == "async" else CountingFile()
            tracemalloc.start()
            try:
                size = await client.retrieve_into(1, sink)
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            assert size == sink.size == len(huge)
            assert sink.largest <= 65536
            return peak, sink.writes

    with running_server("sync", backend) as (host, port):
        peak, writes = flavor.run(main)
    assert writes > 100
    # The server runs in this process too; both stay far below the message.
    assert peak < len(huge) // 5, f"peak {peak} for a {len(huge)}-octet message"


def test_starttls_not_offered(flavor: Flavor) -> None:
    skip_without_asyncio_stls(flavor)

    async def main() -> None:
        with pytest.raises(TLSUnavailable) as info:
            await flavor.open(host, port, tls="starttls")
        assert "STLS" in str(info.value)

    with running_server("sync", new_backend()) as (host, port):
        flavor.run(main)


def test_exit_by_exception_commits_nothing(flavor: Flavor) -> None:
    backend = new_backend()

    async def main() -> None:
        with pytest.raises(ZeroDivisionError):
            async with await flavor.open(host, port, tls="none") as client:
                await client.login("alice", PASSWORD)
                await client.delete(1)
                1 / 0  # noqa: B018
        assert client.state is State.TRANSACTION  # no QUIT was sent

    with running_server("sync", backend) as (host, port):
        flavor.run(main)
        deadline = time.monotonic() + 5
        while backend.is_locked("alice") and time.monotonic() < deadline:
            time.sleep(0.01)
    assert backend.messages("alice") == MESSAGES


def test_concurrent_tasks_are_serialised(flavor: Flavor) -> None:
    async def main() -> None:
        async with await flavor.open(host, port, tls="none") as client:
            await client.login("alice", PASSWORD)
            results: dict[int, bytes] = {}

            async def fetch(number: int) -> None:
                results[number] = await client.retrieve(number)

            if isinstance(flavor, AsyncioFlavor):
                await asyncio.gather(*(fetch(n) for n in (1, 2, BIG_NUMBER, 3)))
            else:
                async with trio.open_nursery() as nursery:
                    for n in (1, 2, BIG_NUMBER, 3):
                        nursery.start_soon(fetch, n)
            assert results == {n: EXPECTED[n - 1] for n in (1, 2, 3, BIG_NUMBER)}

            # A sink that calls its own client is refused, and the session
            # survives.
            async def reentrant(data: bytes) -> None:
                await client.noop()

            with pytest.raises(RuntimeError, match="inside one of its own operations"):
                await client.retrieve_into(BIG_NUMBER, reentrant)
            assert await client.retrieve(2) == EXPECTED[1]

    with running_server("sync", new_backend()) as (host, port):
        flavor.run(main)


def test_retrieve_many_beside_another_task(flavor: Flavor) -> None:
    """Messages already received are taken without the lock, but only while
    no other task's operation is running: both tasks see correct replies."""

    async def main() -> None:
        async with await flavor.open(host, port, tls="none") as client:
            await client.login("alice", PASSWORD)
            numbers = [1, BIG_NUMBER, 2, 3] * 8
            got: list[tuple[int, bytes]] = []
            pokes = 0

            async def iterate() -> None:
                async for number, message in client.retrieve_many(numbers, window=8):
                    got.append((number, message))
                    await pause()

            async def poke() -> None:
                nonlocal pokes
                for _ in range(30):
                    await client.noop()
                    pokes += 1
                    await pause()

            if isinstance(flavor, AsyncioFlavor):
                pause = functools.partial(asyncio.sleep, 0)
                await asyncio.gather(iterate(), poke())
            else:
                pause = functools.partial(trio.sleep, 0)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(iterate)
                    nursery.start_soon(poke)
            assert got == [(n, EXPECTED[n - 1]) for n in numbers]
            assert pokes == 30
            assert client.core.conn.outstanding == ()

            # While an operation runs (here: pretended), what was received
            # is its to read, even replies owed to the batch.
            messages = client.retrieve_many([1, 2, 3], window=8)
            assert await messages.__anext__() == (1, EXPECTED[0])
            assert messages.batch.take_buffered() is not None
            client._owner = object()
            assert client._take_buffered(messages.batch) is None
            client._owner = None
            assert await messages.__anext__() == (3, EXPECTED[2])

    with running_server("sync", new_backend()) as (host, port):
        flavor.run(main)


def test_retrieve_many_reads_straight_into_the_batch(
    flavor: Flavor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the next reply only lacks bytes, the iterator reads them
    itself (no operation, no request round trips), as the blocking client
    does; the messages are the same, in order, streamed or whole."""
    # Enough octets that the replies arrive over many reads.
    line = b".dotted line\r\n" + b"y" * 70 + b"\r\n"
    many = [b"Subject: %d\r\n\r\n" % n + line * (n % 50) for n in range(300)]
    expected = [expected_body(m) for m in many]
    direct: list[bool] = []
    feed = AsyncClientBase._feed

    async def spy(self: AsyncClientBase, batch: Any) -> bool:
        done = await feed(self, batch)
        direct.append(done)
        return done

    monkeypatch.setattr(AsyncClientBase, "_feed", spy)

    async def main() -> None:
        async with await flavor.open(host, port, tls="none") as client:
            await client.login("alice", PASSWORD)
            numbers = list(range(1, len(many) + 1))
            got = [item async for item in client.retrieve_many(numbers)]
            assert got == list(zip(numbers, expected, strict=True))
            assert any(direct)
            direct.clear()
            parts: dict[int, bytearray] = {}
            ends: list[int] = []

            def sink(number: int, data: bytes) -> None:
                if data:
                    parts.setdefault(number, bytearray()).extend(data)
                else:
                    ends.append(number)

            assert await client.retrieve_many_into(numbers, sink) == len(numbers)
            assert ends == numbers
            assert [bytes(parts.get(n, b"")) for n in numbers] == expected
            assert any(direct)
            # Busy (another operation is pretended to run) or closed: no
            # direct read, the batch's own step goes on.
            messages = client.retrieve_many(numbers[:3])
            assert await messages.__anext__() == (1, expected[0])
            client._owner = object()
            assert await client._feed(messages.batch) is False
            client._owner = None
            await messages.aclose()

    with running_server("sync", MemoryBackend({"alice": many})) as (host, port):
        flavor.run(main)


def test_leaving_retrieve_many_early(flavor: Flavor) -> None:
    async def main() -> None:
        async with await flavor.open(host, port, tls="none") as client:
            await client.login("alice", PASSWORD)
            async for number, message in client.retrieve_many([BIG_NUMBER, 1, 2, 3]):
                assert (number, message) == (BIG_NUMBER, BIG)
                break
            assert client.core.conn.outstanding  # replies still owed are dropped...
            assert await client.uidl()  # ... by the next command
            messages = client.retrieve_many([1, 99, 2])
            assert await messages.__anext__() == (1, EXPECTED[0])
            with pytest.raises(CommandFailed, match="RETR 99"):
                await messages.__anext__()
            with pytest.raises(StopAsyncIteration):
                await messages.__anext__()
            async with client.retrieve_many([3, 2]) as again:
                assert [n async for n, _ in again] == [3, 2]
            await messages.aclose()
            assert await client.retrieve(3) == EXPECTED[2]

    with running_server("sync", new_backend()) as (host, port):
        flavor.run(main)


def test_usage_errors(flavor: Flavor) -> None:
    async def main() -> None:
        client = await flavor.open(host, port, tls="none")
        with pytest.raises(RuntimeError, match="once"):
            await client.connect()
        with pytest.raises(ProtocolViolation, match="STAT"):
            await client.stat()  # before login: refused, nothing sent
        with pytest.raises(TypeError, match="write"):
            await client.retrieve_into(1, object())  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            await client.retrieve(0)
        await client.login("alice", PASSWORD)
        assert await client.retrieve(1) == EXPECTED[0]
        await client.aclose()
        await client.close()  # the blocking client's name; closing twice is fine
        with pytest.raises(ConnectionLost, match="closed"):
            await client.noop()
        assert client.state is State.TRANSACTION  # refused before the engine

    with running_server("sync", new_backend()) as (host, port):
        flavor.run(main)


# ---------------------------------------------------------------------------
# asyncio specifics
# ---------------------------------------------------------------------------


@pytest.mark.skipif(
    not asyncio_runner.STLS_SUPPORTED, reason="the default tls='starttls' needs Python 3.11"
)
def test_asyncio_arguments_and_lifecycle() -> None:
    with pytest.raises(ValueError, match="tls"):
        AsyncioClient("localhost", tls="ssl")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout"):
        AsyncioClient("localhost", timeout=0)
    with pytest.raises(ValueError):
        AsyncioClient("localhost", window=0)
    assert AsyncioClient("localhost", 995).tls_mode == "implicit"
    assert AsyncioClient("localhost").port == 110
    client = AsyncioClient("localhost", 1234, tls="none")
    assert repr(client) == "<Client localhost:1234 not connected>"
    assert client.reader is None and client.writer is None

    async def main() -> None:
        with pytest.raises(ConnectionLost, match="not connected"):
            await client.noop()

    asyncio.run(main())


def test_asyncio_same_loop_server_and_stream_properties() -> None:
    if AsyncioServer is None:  # pragma: no cover
        pytest.skip("adapters/_asyncio_server.py does not import")
    backend = new_backend()

    async def main() -> None:
        async with AsyncioServer(backend, authenticator(), port=0, linger=0.05) as server:
            host, port = server.server_address
            async with AsyncioClient(host, port, tls="none", timeout=TIMEOUT) as client:
                assert client.writer is not None and client.reader is not None
                assert "AUTHORIZATION" in repr(client)
                assert client.greeting is not None and client.greeting.timestamp
                await client.login("alice", PASSWORD, mechanism="USER")
                await client.delete(2)
            assert client.writer is None

    asyncio.run(main())
    assert backend.messages("alice") == [MESSAGES[0], *MESSAGES[2:]]


def test_asyncio_cancelled_send_ends_the_session() -> None:
    """A write that is cancelled may have sent part of a command: the engine
    is marked and every later call fails clearly instead of misreading."""

    async def main() -> None:
        async with await AsyncioFlavor().open(host, port, tls="none") as client:
            await client.login("alice", PASSWORD)
            assert isinstance(client, AsyncioClient)
            writer = client.writer
            assert writer is not None

            async def never() -> None:
                await asyncio.sleep(3600)

            writer.drain = never  # type: ignore[method-assign]
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(client.noop(), 0.2)
            assert client.state is State.ERROR
            with pytest.raises(ProtocolViolation, match="can no longer be used"):
                await client.stat()

    with running_server("sync", new_backend()) as (host, port):
        asyncio.run(main())


class _ScriptedAsyncioServer:
    """A FakeSession over asyncio streams that can stall mid-reply."""

    def __init__(self, config: FakeConfig | None = None, stall_at: int | None = None) -> None:
        self.session = FakeSession(config)
        self.stall_at = stall_at
        self.stalled = asyncio.Event()
        self.resume = asyncio.Event()
        self.sent = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = self.session
        try:
            await self.send(writer, session.greeting())
            while not session.closing:
                data = await reader.read(65536)
                for out in session.receive(data):
                    await self.send(writer, out)
                if not data:
                    break
        finally:
            writer.close()

    async def send(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        stall = self.stall_at
        if stall is not None and self.sent < stall <= self.sent + len(data):
            cut = stall - self.sent
            writer.write(data[:cut])
            await writer.drain()
            self.sent += cut
            data = data[cut:]
            self.stall_at = None
            self.stalled.set()
            await self.resume.wait()
        writer.write(data)
        await writer.drain()
        self.sent += len(data)


def test_asyncio_read_timeout_mid_body_keeps_step() -> None:
    messages = [b"Subject: x\r\n\r\n" + b"z" * 200_000 + b"\r\n", b"second\r\n"]

    async def main() -> None:
        fake = _ScriptedAsyncioServer(FakeConfig(messages=messages))
        server = await asyncio.start_server(fake.handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            client = AsyncioClient("127.0.0.1", port, tls="none", timeout=TIMEOUT)
            async with client:
                await client.login("alice", PASSWORD, mechanism="USER")
                fake.stall_at = fake.sent + 50_000
                client.timeout = 0.3
                with pytest.raises(TimeoutError, match="no progress"):
                    await client.retrieve(1)
                assert fake.stalled.is_set()
                assert client.state is State.TRANSACTION
                client.timeout = TIMEOUT
                fake.resume.set()
                assert await client.retrieve(2) == b"second\r\n"
                assert await client.retrieve(1) == messages[0]

    asyncio.run(main())


def test_asyncio_stls_refuses_plaintext_left_in_the_reader() -> None:
    """Bytes buffered by the StreamReader when TLS is about to start were
    sent in plaintext: they must not be read later as if encrypted."""

    async def main() -> None:
        client = AsyncioClient("127.0.0.1", 110, tls="none")
        reader = asyncio.StreamReader()
        reader.feed_data(b"+OK injected\r\n")
        with pytest.raises(ProtocolViolation, match="injection") as info:
            await client._start_tls(reader, None)  # type: ignore[arg-type]
        assert isinstance(info.value.error, pop3proto.RemoteProtocolError)
        assert asyncio_runner._unread(asyncio.StreamReader()) == 0

    asyncio.run(main())


def test_asyncio_connect_failure() -> None:
    async def main() -> None:
        with socket_closed() as port:
            client = AsyncioClient("127.0.0.1", port, tls="none", timeout=5)
            with pytest.raises(OSError):
                await client.connect()
            assert "closed" in repr(client)

    asyncio.run(main())


@contextlib.contextmanager
def socket_closed() -> Iterator[int]:
    """A local port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    yield port


# ---------------------------------------------------------------------------
# trio specifics, over memory streams against a scripted server task
# ---------------------------------------------------------------------------


class TrioFakeServer:
    """Serves one :class:`FakeSession` over a trio stream.

    Records the most RETR commands that arrived in one read (pipelining),
    does STLS / implicit TLS with *server_context*, can stall after
    *stall_at* octets of output until :attr:`resume` is set, and can stop
    reading once logged in (*freeze_after_login*).
    """

    def __init__(
        self,
        stream: Any,
        config: FakeConfig | None = None,
        *,
        server_context: ssl.SSLContext | None = None,
        stall_at: int | None = None,
        freeze_after_login: bool = False,
    ) -> None:
        self.stream = stream
        self.session = FakeSession(config)
        self.server_context = server_context
        self.stall_at = stall_at
        self.freeze_after_login = freeze_after_login
        self.die_at_stall = False
        self.stalled = trio.Event()
        self.resume = trio.Event()
        self.sent = 0
        self.most_retrs_at_once = 0
        self.error: BaseException | None = None

    async def run(self) -> None:
        session = self.session
        try:
            if session.config.implicit_tls:
                await self._tls()
            await self._send(session.greeting())
            while not session.closing:
                if self.freeze_after_login and session.authenticated:
                    await trio.sleep_forever()
                data = bytes(await self.stream.receive_some(65536))
                self.most_retrs_at_once = max(self.most_retrs_at_once, data.count(b"RETR "))
                # All the replies to what arrived in one write: so the bytes
                # a hostile server injects after +OK to STLS come with it.
                replies = b"".join(session.receive(data))
                if replies:
                    await self._send(replies)
                if session.tls_requested:
                    await self._tls()
                    session.tls_established()
                if not data:
                    break
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self.error = exc
        finally:
            await trio.aclose_forcefully(self.stream)

    async def _tls(self) -> None:
        assert self.server_context is not None
        self.stream = trio.SSLStream(
            self.stream, self.server_context, server_side=True, https_compatible=True
        )
        await self.stream.do_handshake()

    async def _send(self, data: bytes) -> None:
        stall = self.stall_at
        if stall is not None and self.sent < stall <= self.sent + len(data):
            cut = stall - self.sent
            await self.stream.send_all(data[:cut])
            self.sent += cut
            data = data[cut:]
            self.stall_at = None
            self.stalled.set()
            if self.die_at_stall:
                await self.stream.aclose()
                self.session.closing = True
                return
            await self.resume.wait()
        await self.stream.send_all(data)
        self.sent += len(data)


Body = Callable[[Any, TrioFakeServer], Awaitable[None]]


def run_with_fake_server(
    body: Body, config: FakeConfig | None = None, *, lockstep: bool = False, **kwargs: Any
) -> TrioFakeServer:
    """trio.run *body(client_stream, server)* against a fake server task."""
    box: dict[str, TrioFakeServer] = {}

    async def main() -> None:
        pair = trio.testing.lockstep_stream_pair if lockstep else trio.testing.memory_stream_pair
        client_stream, server_stream = pair()
        server = box["server"] = TrioFakeServer(server_stream, config, **kwargs)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.run)
            with trio.fail_after(TIMEOUT):
                await body(client_stream, server)
            nursery.cancel_scope.cancel()

    trio.run(main)
    return box["server"]


def test_trio_memory_stream_session() -> None:
    async def body(stream: Any, server: TrioFakeServer) -> None:
        client = TrioClient.from_stream(stream, server_hostname="pop.example", loopback=True)
        assert repr(client) == "<Client pop.example not connected>"
        async with client:
            assert client.stream is stream
            assert await client.login("alice", "correct horse") == "SCRAM-SHA-256"
            for number, sent in enumerate(FAKE_MESSAGES, 1):
                assert await client.retrieve(number) == expected_body(sent)
            numbers = list(range(1, len(FAKE_MESSAGES) + 1))
            messages = client.retrieve_many(numbers)
            got = [item async for item in messages]
            assert got == [(n, expected_body(FAKE_MESSAGES[n - 1])) for n in numbers]
            assert messages.batch.window == DEFAULT_WINDOW
            await client.delete(2)
            await client.delete(4)
            assert await client.quit() is True
        assert client.stream is None
        assert "closed" in repr(client)

    server = run_with_fake_server(body)
    assert server.session.committed == [2, 4]
    assert server.most_retrs_at_once == len(FAKE_MESSAGES)  # pipelined in one write


def test_trio_without_pipelining_one_retr_at_a_time() -> None:
    async def body(stream: Any, server: TrioFakeServer) -> None:
        async with TrioClient.from_stream(stream, loopback=True) as client:
            await client.login("alice", "correct horse")
            numbers = list(range(1, len(FAKE_MESSAGES) + 1))
            messages = client.retrieve_many(numbers)
            got = [n async for n, _ in messages]
            assert got == numbers
            assert messages.batch.window == 1

    server = run_with_fake_server(body, FakeConfig(pipelining=False))
    assert server.most_retrs_at_once == 1


@pytest.mark.parametrize("mechanism", ["USER", "CRAM-MD5", "PLAIN", "APOP"])
def test_trio_memory_stream_logins(mechanism: str) -> None:
    async def body(stream: Any, server: TrioFakeServer) -> None:
        async with TrioClient.from_stream(stream, loopback=True) as client:
            assert await client.login("alice", "correct horse", mechanism=mechanism) == mechanism
            assert server.session.authenticated == "alice"

    run_with_fake_server(body)


def test_trio_insecure_login_is_refused_before_sending() -> None:
    async def body(stream: Any, server: TrioFakeServer) -> None:
        async with TrioClient.from_stream(stream, server_hostname="pop.example") as client:
            assert not client.core.secure  # a memory stream has no peer address
            with pytest.raises(InsecureAuthenticationRefused):
                await client.login("alice", "correct horse", mechanism="PLAIN")
            assert server.session.auth_attempts == 0
            # SCRAM exposes nothing: allowed without TLS.
            assert await client.login("alice", "correct horse") == "SCRAM-SHA-256"

    run_with_fake_server(body)


def test_trio_starttls_over_memory_streams(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    async def body(stream: Any, server: TrioFakeServer) -> None:
        client = TrioClient.from_stream(
            stream, tls="starttls", server_hostname="localhost", ssl_context=client_context
        )
        async with client:
            assert client.tls
            assert isinstance(client.stream, trio.SSLStream)
            assert await client.login("alice", "correct horse", mechanism="PLAIN") == "PLAIN"
            assert await client.retrieve(1) == expected_body(FAKE_MESSAGES[0])

    run_with_fake_server(body, FakeConfig(stls=True), server_context=server_context)


def test_trio_implicit_tls_over_memory_streams(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    async def body(stream: Any, server: TrioFakeServer) -> None:
        client = TrioClient.from_stream(
            stream, tls=True, server_hostname="localhost", ssl_context=client_context
        )
        assert client.tls_mode == "implicit" and client.tls
        async with client:
            assert await client.login("alice", "correct horse", mechanism="USER") == "USER"

    run_with_fake_server(body, FakeConfig(implicit_tls=True), server_context=server_context)


def test_trio_stls_injection_is_refused(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    async def body(stream: Any, server: TrioFakeServer) -> None:
        client = TrioClient.from_stream(
            stream, tls="starttls", server_hostname="localhost", ssl_context=client_context
        )
        with pytest.raises(ProtocolViolation):
            await client.connect()
        assert client.stream is None  # closed on failure

    config = FakeConfig(stls=True, after_stls=b"+OK injected\r\n")
    run_with_fake_server(body, config, server_context=server_context)


def test_trio_starttls_refused() -> None:
    async def body(stream: Any, server: TrioFakeServer) -> None:
        client = TrioClient.from_stream(stream, tls="starttls", server_hostname="localhost")
        with pytest.raises(TLSUnavailable):
            await client.connect()

    run_with_fake_server(body)


def test_trio_read_timeout_mid_body_keeps_step() -> None:
    messages = [b"Subject: x\r\n\r\n" + b"z" * 200_000 + b"\r\n", b"second\r\n"]

    async def body(stream: Any, server: TrioFakeServer) -> None:
        async with TrioClient.from_stream(stream, loopback=True, timeout=TIMEOUT) as client:
            await client.login("alice", "correct horse", mechanism="USER")
            server.stall_at = server.sent + 50_000
            client.timeout = 0.3
            with pytest.raises(trio.TooSlowError):
                await client.retrieve(1)
            assert server.stalled.is_set()
            assert client.state is State.TRANSACTION
            client.timeout = TIMEOUT
            server.resume.set()
            assert await client.retrieve(2) == b"second\r\n"
            assert await client.retrieve(1) == messages[0]

    run_with_fake_server(body, FakeConfig(messages=messages))


def test_trio_server_dying_mid_body_is_connection_lost() -> None:
    async def body(stream: Any, server: TrioFakeServer) -> None:
        async with TrioClient.from_stream(stream, loopback=True) as client:
            await client.login("alice", "correct horse", mechanism="USER")
            server.stall_at = server.sent + 10
            server.die_at_stall = True
            with pytest.raises(ConnectionLost, match="RETR 1"):
                await client.retrieve(1)
            with pytest.raises(POP3Error):
                await client.noop()

    run_with_fake_server(body)


def test_trio_cancelled_send_ends_the_session() -> None:
    async def body(stream: Any, server: TrioFakeServer) -> None:
        async with TrioClient.from_stream(stream, loopback=True) as client:
            await client.login("alice", "correct horse", mechanism="USER")
            # The server no longer reads: with a lockstep stream the write
            # of NOOP blocks until it is cancelled.
            with trio.move_on_after(0.2) as scope:
                await client.noop()
            assert scope.cancelled_caught
            assert client.state is State.ERROR
            with pytest.raises(ProtocolViolation, match="can no longer be used"):
                await client.stat()

    run_with_fake_server(body, lockstep=True, freeze_after_login=True)


def test_trio_arguments() -> None:
    stream, _ = trio.testing.memory_stream_pair()
    with pytest.raises(ValueError, match="tls"):
        TrioClient(stream, tls="ssl")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout"):
        TrioClient(stream, timeout=-1)
    client = TrioClient.from_stream(stream, tls="none")
    assert client.tls_mode == "none" and client.port is None
    assert TrioClient(stream, tls="starttls", server_hostname="h").tls_mode == "starttls"
    with pytest.raises(ValueError, match="server_hostname"):
        TrioClient(stream, tls="starttls")
    unchecked = ssl.create_default_context()
    unchecked.check_hostname = False
    assert TrioClient(stream, tls=True, ssl_context=unchecked).tls_mode == "implicit"

    async def main() -> None:
        with pytest.raises(ConnectionLost, match="not connected"):
            await client.noop()
        with pytest.raises(trio.TooSlowError):
            # Nobody answers: the greeting never comes.
            await TrioClient(trio.testing.memory_stream_pair()[0], timeout=0.05).connect()

    trio.run(main)


def test_trio_connect_helper_defaults() -> None:
    async def main() -> None:
        with socket_closed() as port, pytest.raises(OSError):
            await trio_connect("127.0.0.1", port, tls="none", timeout=5)
        with pytest.raises(ValueError, match="tls"):
            await trio_connect("127.0.0.1", 1, tls="bogus")  # type: ignore[arg-type]

    trio.run(main)


def test_trio_same_nursery_server(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    if TrioServer is None:  # pragma: no cover
        pytest.skip("adapters/_trio_server.py does not import")
    backend = new_backend()

    async def main() -> None:
        server = TrioServer(backend, authenticator(), port=0, ssl_context=server_context)
        async with trio.open_nursery() as nursery:
            host, port = await nursery.start(server.serve)
            client = await trio_connect(host, port, ssl_context=client_context, timeout=TIMEOUT)
            async with client:  # STLS by default
                assert client.tls and client.port == port
                assert client.core.loopback  # the socket's peer address
                assert await client.login("alice", PASSWORD) == "SCRAM-SHA-256"
                await client.delete(1)
            server.shutdown()

    trio.run(main)
    assert backend.messages("alice") == MESSAGES[1:]


# ---------------------------------------------------------------------------
# The public modules
# ---------------------------------------------------------------------------


def _docstring_example(doc: str | None) -> str:
    assert doc is not None
    start = doc.index("::\n\n") + 4
    lines = []
    for line in doc[start:].splitlines():
        if line and not line.startswith("    "):
            break
        lines.append(line)
    return textwrap.dedent("\n".join(lines))


@pytest.mark.parametrize("module", [aio_public, trio_public], ids=["asyncio", "trio"])
def test_public_module(module: Any, capsys: pytest.CaptureFixture[str]) -> None:
    for name in module.__all__:
        assert getattr(module, name) is not None, name
    assert issubclass(module.AuthenticationFailed, POP3Error)
    assert module.Client.retrieve_into.__doc__
    # Inside the adapters, "asyncio" and "trio" are the real libraries.
    assert asyncio_runner.asyncio is asyncio
    assert trio_runner.trio is trio
    if module is trio_public and TrioServer is None:  # pragma: no cover
        pytest.skip("adapters/_trio_server.py does not import")
    exec(compile(_docstring_example(module.__doc__), module.__name__, "exec"), {})
    out = capsys.readouterr().out
    assert "logged in with SCRAM-SHA-256" in out
    assert "Hello, Alice!" in out
    assert out.rstrip().endswith("[]")


def test_methods_mirror_the_blocking_client() -> None:
    import inspect

    from pop3proto.adapters.sync import Client as SyncClient

    public = {
        name
        for name, value in vars(SyncClient).items()
        if not name.startswith("_") and callable(value)
    }
    for cls in (AsyncioClient, TrioClient):
        for name in public:
            ours = getattr(cls, name)
            if name == "close":
                continue
            theirs = getattr(SyncClient, name)
            assert inspect.signature(ours).parameters.keys() == (
                inspect.signature(theirs).parameters.keys()
            ), name
            if name != "retrieve_many":
                assert inspect.iscoroutinefunction(ours), name


@pytest.mark.skipif(asyncio_runner.STLS_SUPPORTED, reason="Python 3.10 only")
def test_asyncio_stls_needs_python_3_11() -> None:
    """On 3.10 the asyncio client refuses STLS at once, saying what to do instead."""
    with pytest.raises(NotImplementedError, match=r"Python 3\.11"):
        AsyncioClient("localhost", 110, tls="starttls")
    assert AsyncioClient("localhost", 995).tls_mode == "implicit"

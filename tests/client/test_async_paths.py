"""The asyncio and trio clients (and the blocking one) on their less common paths.

The trio client runs over ``trio.testing`` memory streams against the fake
server of ``tests/helpers`` (:class:`FakeSession`), which makes what
arrives when exact; the asyncio and blocking clients talk TCP to the same
fake server in a thread (:class:`ThreadedServer`).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest
import trio
import trio.testing

import pop3proto
from pop3proto import State
from pop3proto.adapters.client._asyncio import Client as AsyncioClient
from pop3proto.adapters.client._errors import ConnectionLost
from pop3proto.adapters.client._sync import Client as SyncClient
from pop3proto.adapters.client._trio import Client as TrioClient
from pop3proto.adapters.client._trio import connect as trio_connect
from tests.helpers import (
    FAKE_MESSAGES,
    PASSWORD,
    FakeConfig,
    FakeSession,
    ThreadedServer,
    expected_body,
    serve,
)

T = TypeVar("T")
HOST = "127.0.0.1"
TIMEOUT = 30.0


async def fake_server(stream: trio.abc.Stream, session: FakeSession) -> None:
    """Serve *session* on *stream* until it is over (or the client hangs up)."""
    try:
        await stream.send_all(session.greeting())
        while not session.closing:
            data = await stream.receive_some(65536)
            # All the replies to what was received, in one write: the client
            # then finds them all in its next read.
            reply = b"".join(session.receive(bytes(data)))
            if reply:
                await stream.send_all(reply)
            if not data:
                break
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass  # the client closed its end
    finally:
        await stream.aclose()


def run_trio(config: FakeConfig, body: Callable[[TrioClient], Awaitable[T]]) -> T:
    """Run *body* with a connected trio client over a memory stream."""

    async def main() -> T:
        ours, theirs = trio.testing.memory_stream_pair()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(fake_server, theirs, FakeSession(config))
            client = TrioClient(ours, server_hostname="pop.example.org", loopback=True)
            async with client:
                return await body(client)

    result: T = trio.run(main)
    return result


# ---------------------------------------------------------------------------
# Commands through the async faces
# ---------------------------------------------------------------------------


def test_trio_authenticate_with_a_mechanism_object() -> None:
    """authenticate() runs a ready-made SASL mechanism (RFC 5034) through the async client."""

    async def body(client: TrioClient) -> tuple[State, int]:
        await client.authenticate(pop3proto.PlainClient("alice", PASSWORD))
        return client.state, (await client.stat()).count

    assert run_trio(FakeConfig(sasl=("PLAIN",)), body) == (State.TRANSACTION, len(FAKE_MESSAGES))


def test_trio_utf8_then_a_non_ascii_login() -> None:
    """RFC 6856: utf8() switches the session to UTF-8 before logging in."""

    async def body(client: TrioClient) -> bool:
        await client.utf8()
        return client.core.conn.utf8

    assert run_trio(FakeConfig(utf8=True), body) is True


@pytest.mark.parametrize("asynchronous", [True, False])
def test_retrieve_many_into_takes_replies_already_received(asynchronous: bool) -> None:
    """RFC 2449 §6.6: replies already received are handed to the sink at once, each followed by
    its end mark, with a plain or an async sink alike."""
    messages = [b"Subject: %d\r\n\r\nbody %d\r\n" % (n, n) for n in range(1, 41)]
    messages[20] = b""  # an empty message: only its end mark
    got: dict[int, bytearray] = {}
    ends: list[int] = []

    def plain_sink(number: int, chunk: bytes) -> None:
        if chunk:
            got.setdefault(number, bytearray()).extend(chunk)
        else:
            ends.append(number)

    async def async_sink(number: int, chunk: bytes) -> None:
        await trio.lowlevel.checkpoint()
        plain_sink(number, chunk)

    async def body(client: TrioClient) -> int:
        await client.login("alice", PASSWORD)
        sink = async_sink if asynchronous else plain_sink
        return await client.retrieve_many_into(range(1, 41), sink)

    assert run_trio(FakeConfig(messages=messages), body) == 40
    assert ends == list(range(1, 41))
    assert {n: bytes(b) for n, b in got.items()} == {
        n: messages[n - 1] for n in range(1, 41) if messages[n - 1]
    }


# ---------------------------------------------------------------------------
# Closed by another task in the middle of an operation
# ---------------------------------------------------------------------------


def test_trio_client_closed_by_another_task_mid_retrieve() -> None:
    """A client closed by another task while an operation waits fails that operation with
    ConnectionLost, not an error from a closed stream."""

    async def body(client: TrioClient) -> None:
        await client.login("alice", PASSWORD)
        in_sink = trio.Event()
        closed = trio.Event()

        async def sink(chunk: bytes) -> None:
            in_sink.set()
            await closed.wait()

        async def closer() -> None:
            await in_sink.wait()
            await client.aclose()
            closed.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(closer)
            with pytest.raises(ConnectionLost, match="closed"):
                await client.retrieve_into(5, sink)
        assert client.stream is None

    config = FakeConfig(messages=[b"x" * 200_000] * 5, chunk=1000)
    run_trio(config, body)


def test_asyncio_client_closed_by_another_task_mid_retrieve() -> None:
    """The asyncio client, closed by another task while an operation waits, fails that
    operation with ConnectionLost."""
    config = FakeConfig(messages=[b"x" * 2_000_000])

    async def main() -> None:
        with serve(config) as server:
            client = AsyncioClient(HOST, server.port, tls="none", timeout=TIMEOUT)
            await client.connect()
            await client.login("alice", PASSWORD)
            in_sink = asyncio.Event()
            closed = asyncio.Event()

            async def sink(chunk: bytes) -> None:
                in_sink.set()
                await closed.wait()

            async def closer() -> None:
                await in_sink.wait()
                await client.aclose()
                closed.set()

            task = asyncio.create_task(closer())
            with pytest.raises(ConnectionLost, match="closed"):
                await client.retrieve_into(1, sink)
            await task
            assert client.writer is None

    asyncio.run(main())


def test_asyncio_client_without_a_timeout() -> None:
    """timeout=None waits for the server as long as it takes; a session works as usual."""

    async def main() -> tuple[int, bytes]:
        with serve() as server:
            async with AsyncioClient(HOST, server.port, tls="none", timeout=None) as client:
                await client.login("alice", PASSWORD)
                return (await client.stat()).count, await client.retrieve(1)

    assert asyncio.run(main()) == (len(FAKE_MESSAGES), expected_body(FAKE_MESSAGES[0]))


# ---------------------------------------------------------------------------
# The trio client's streams
# ---------------------------------------------------------------------------


def test_trio_ssl_stream_counts_as_implicit_tls(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    """A stream that is already a trio.SSLStream is TLS whatever tls= says, and cannot STLS."""

    async def main() -> tuple[str, bool, int]:
        ours, theirs = trio.testing.memory_stream_pair()
        tls_ours = trio.SSLStream(ours, client_context, server_hostname="localhost")
        tls_theirs = trio.SSLStream(theirs, server_context, server_side=True)
        with pytest.raises(ValueError, match="starttls"):
            TrioClient(tls_ours, tls="starttls", server_hostname="localhost")
        client = TrioClient(tls_ours, tls="none", server_hostname="localhost", loopback=False)
        config = FakeConfig(implicit_tls=True)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(fake_server, tls_theirs, FakeSession(config))
            async with client:
                await client.login("alice", PASSWORD)  # allowed: the link is TLS
                count = (await client.stat()).count
                return client.tls_mode, client.tls, count

    assert trio.run(main) == ("implicit", True, len(FAKE_MESSAGES))


def test_trio_unix_socket_is_loopback_and_unconnected_socket_is_judged_by_name() -> None:
    """A Unix-domain peer is this machine; a socket with no peer leaves it to the host name."""

    async def main() -> tuple[bool, bool, bool]:
        a, b = socket.socketpair(socket.AF_UNIX)
        unix = trio.SocketStream(trio.socket.from_stdlib_socket(a))
        tcp = trio.socket.socket()
        unconnected = trio.SocketStream(tcp)
        try:
            return (
                TrioClient(unix, server_hostname="pop.example.org").core.loopback,
                TrioClient(unconnected, server_hostname="pop.example.org").core.loopback,
                TrioClient(unconnected, server_hostname="localhost").core.loopback,
            )
        finally:
            await unix.aclose()
            await unconnected.aclose()
            b.close()

    assert trio.run(main) == (True, False, True)


def test_trio_connect_with_bad_arguments_closes_what_it_opened() -> None:
    """connect() refusing an argument after the TCP connection is made closes that connection."""

    async def main() -> bytes:
        listeners = await trio.open_tcp_listeners(0, host=HOST)
        port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:

            async def accept_one() -> bytes:
                stream = await listeners[0].accept()
                with trio.fail_after(TIMEOUT):
                    data = await stream.receive_some(100)
                await stream.aclose()
                return bytes(data)

            seen: list[bytes] = []

            async def record() -> None:
                seen.append(await accept_one())

            nursery.start_soon(record)
            with pytest.raises(ValueError, match="window"):
                await trio_connect(HOST, port, tls="none", window=0)
        for listener in listeners:
            await listener.aclose()
        return seen[0]

    assert trio.run(main) == b""  # the server saw the connection closed, unused


# ---------------------------------------------------------------------------
# The blocking client
# ---------------------------------------------------------------------------


def test_sync_authenticate_with_a_mechanism_object() -> None:
    """The blocking client's authenticate() runs a ready-made SASL mechanism (RFC 5034)."""
    with serve(FakeConfig(sasl=("PLAIN",))) as server:
        with SyncClient(HOST, server.port, tls="none", timeout=TIMEOUT) as client:
            client.authenticate(pop3proto.PlainClient("alice", PASSWORD))
            assert client.state is State.TRANSACTION
            assert client.stat().count == len(FAKE_MESSAGES)
        assert server.session.authenticated == "alice"


def test_asyncio_close_waits_only_briefly_for_a_tls_peer_that_never_answers(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    """Closing a TLS connection whose server never answers the close waits at most the
    client's timeout (here lowered once connected), then drops the connection."""
    release = threading.Event()

    def silent_after_greeting(sock: socket.socket, server: ThreadedServer) -> None:
        tls = server_context.wrap_socket(sock, server_side=True)
        tls.sendall(b"+OK ready\r\n")
        release.wait(TIMEOUT)  # never reads, so never answers the close
        tls.close()

    async def main() -> float:
        with serve(handler=silent_after_greeting) as server:
            client = AsyncioClient(
                HOST, server.port, tls="implicit", ssl_context=client_context,
                server_hostname="localhost", timeout=TIMEOUT,
            )  # fmt: skip
            await client.connect()
            client.timeout = 0.3
            started = time.monotonic()
            try:
                await client.aclose()
            finally:
                release.set()
            assert client.writer is None
            return time.monotonic() - started

    assert asyncio.run(main()) < TIMEOUT / 2

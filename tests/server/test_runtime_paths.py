"""The three server runtimes (blocking, asyncio, trio) on their rare paths:
a backend bug, closing while a session runs, a client that resets while
the server lingers, implicit TLS over the connection limit, a handshake
that never comes, and the ``serve()`` entry point stopped by Ctrl-C.

The server runs in an event loop or in threads of the test; the client is
the stdlib :mod:`poplib` or a raw socket, in a worker thread for the
event-loop servers.  Every wait has a generous deadline that only bounds
a hang.
"""

from __future__ import annotations

import asyncio
import logging
import poplib
import re
import signal
import socket
import ssl
import struct
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
import trio

from pop3proto.adapters.mailstore._memory import MemoryBackend, MemoryMaildrop
from pop3proto.adapters.mailstore._users import DictAuthenticator
from pop3proto.adapters.server._asyncio import Server as AsyncioServer
from pop3proto.adapters.server._sync import Server as SyncServer
from pop3proto.adapters.server._trio import Server as TrioServer

T = TypeVar("T")
PASSWORD = "correct horse"
AUTH = DictAuthenticator({"alice": PASSWORD})
HOST = "127.0.0.1"
DEADLINE = 30.0
MESSAGES = [b"Subject: one\n\nfirst\n", b"Subject: two\n\nsecond\n"]


def wait_for(condition: Callable[[], bool], what: str) -> None:
    """Poll *condition* until true; fail after :data:`DEADLINE` seconds."""
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


# ---------------------------------------------------------------------------
# One runner per runtime: a server on 127.0.0.1:0, *client* in a thread
# ---------------------------------------------------------------------------

Server = AsyncioServer | TrioServer | SyncServer


def run_asyncio(backend: Any, client: Callable[[Server], T], **kwargs: Any) -> T:
    async def main() -> T:
        async with AsyncioServer(backend, AUTH, port=0, **kwargs) as server:
            return await asyncio.to_thread(client, server)

    return asyncio.run(main())


def run_trio(backend: Any, client: Callable[[Server], T], **kwargs: Any) -> T:
    async def main() -> T:
        server = TrioServer(backend, AUTH, port=0, **kwargs)
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve)
            result = await trio.to_thread.run_sync(client, server)
            server.shutdown()
        return result

    return trio.run(main)


def run_sync(backend: Any, client: Callable[[Server], T], **kwargs: Any) -> T:
    with SyncServer(backend, AUTH, port=0, **kwargs) as server:
        thread = server.start()
        try:
            return client(server)
        finally:
            server.shutdown()
            thread.join(DEADLINE)


RUNNERS = {"asyncio": run_asyncio, "trio": run_trio, "sync": run_sync}


def pop(server: Server) -> poplib.POP3:
    host, port = server.server_address
    client = poplib.POP3(host, port, timeout=DEADLINE)
    client.user("alice")
    client.pass_(PASSWORD)
    return client


# ---------------------------------------------------------------------------
# All runtimes
# ---------------------------------------------------------------------------


class BuggyBackend(MemoryBackend):
    """A backend with a bug: reading message 2 raises RuntimeError."""

    def open(self, user: str) -> MemoryMaildrop:
        maildrop = super().open(user)
        original = maildrop.open_message

        def open_message(index: int) -> Iterator[bytes]:
            if index == 1:
                return self._bug()
            return original(index)

        maildrop.open_message = open_message  # type: ignore[method-assign]
        return maildrop

    @staticmethod
    def _bug() -> Iterator[bytes]:
        # A generator: it fails when read, after the +OK has gone out.
        yield from ()
        raise RuntimeError("backend bug")


@pytest.mark.parametrize("runtime", sorted(RUNNERS))
def test_a_backend_bug_drops_that_session_only(
    runtime: str, caplog: pytest.LogCaptureFixture
) -> None:
    """An exception the session does not expect is logged with its traceback; that
    connection is dropped and deletes nothing, and the server goes on serving."""

    def client(server: Server) -> bytes:
        first = pop(server)
        first.dele(1)
        with pytest.raises((poplib.error_proto, OSError)):
            first.retr(2)
        first.close()
        second = pop(server)
        assert second.stat()[0] == 2  # nothing was deleted
        _, lines, _ = second.retr(1)
        second.quit()
        return b"\r\n".join(lines)

    backend = BuggyBackend({"alice": MESSAGES})
    with caplog.at_level(logging.ERROR, "pop3proto.server"):
        assert RUNNERS[runtime](backend, client) == b"Subject: one\r\n\r\nfirst"
    [record] = [r for r in caplog.records if "unexpected error serving" in r.getMessage()]
    assert record.exc_info is not None and "backend bug" in str(record.exc_info[1])


# ---------------------------------------------------------------------------
# The blocking server
# ---------------------------------------------------------------------------


def test_sync_server_closed_cannot_serve_again() -> None:
    """A closed blocking server refuses serve_forever(); closing twice is harmless."""
    server = SyncServer(MemoryBackend(), AUTH, port=0)
    server.server_close()
    server.server_close()
    with pytest.raises(RuntimeError, match="closed"):
        server.serve_forever()
    assert repr(server) == "<Server -:0 active=0>"


def test_sync_implicit_tls_over_the_limit_is_closed_without_a_line(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> None:
    """RFC 8314: over max_connections an implicit-TLS client is closed, not sent plaintext."""

    def client(server: Server) -> bytes:
        host, port = server.server_address
        with socket.create_connection((host, port), timeout=DEADLINE) as raw:
            held = client_context.wrap_socket(raw, server_hostname="localhost")
            assert held.recv(100).startswith(b"+OK")
            # Logged in: a session is never evicted for a newcomer.
            held.sendall(b"USER alice\r\nPASS " + PASSWORD.encode() + b"\r\n")
            replies = b""
            while replies.count(b"\r\n") < 2:
                replies += held.recv(100)
            assert replies.count(b"+OK") == 2
            wait_for(lambda: server.active_connections == 1, "the first session")
            with socket.create_connection((host, port), timeout=DEADLINE) as second:
                return second.recv(100)

    got = run_sync(
        MemoryBackend({"alice": MESSAGES}),
        client,
        ssl_context=server_context,
        implicit_tls=True,
        max_connections=1,
    )
    assert got == b""


def test_sync_client_reset_while_the_server_lingers() -> None:
    """A client that resets after QUIT's reply, while the server drains before closing, ends
    the session cleanly: it stops counting and the server goes on."""

    def client(server: Server) -> int:
        host, port = server.server_address
        with socket.create_connection((host, port), timeout=DEADLINE) as sock:
            reader = sock.makefile("rb")
            assert reader.readline().startswith(b"+OK")
            sock.sendall(b"QUIT\r\n")
            assert reader.readline().startswith(b"+OK")
            reader.close()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        wait_for(lambda: server.active_connections == 0, "the session to end")
        again = pop(server)
        count = again.stat()[0]
        again.quit()
        return count

    assert run_sync(MemoryBackend({"alice": MESSAGES}), client, linger=DEADLINE) == 2


_SERVE_SCRIPT = textwrap.dedent(
    """
    import logging, sys
    from pop3proto.adapters.sync import DictAuthenticator, MemoryBackend, serve
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    serve(MemoryBackend({"alice": [b"Subject: hi\\n\\nhello\\n"]}),
          DictAuthenticator({"alice": "pw"}), port=0)
    print("returned", file=sys.stderr, flush=True)
    """
)


def test_sync_serve_runs_until_ctrl_c(tmp_path: Any) -> None:
    """serve() serves until Ctrl-C, then shuts down and returns normally."""
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", _SERVE_SCRIPT], stderr=log, stdout=subprocess.DEVNULL
        )
        try:
            found: list[re.Match[str]] = []

            def started() -> bool:
                match = re.search(r"serving POP3 on \S+ port (\d+)", log_path.read_text())
                found[:] = [match] if match else []
                return bool(found) or proc.poll() is not None

            wait_for(started, "serve() to listen")
            assert found, log_path.read_text()
            client = poplib.POP3(HOST, int(found[0].group(1)), timeout=DEADLINE)
            client.user("alice")
            client.pass_("pw")
            assert client.stat() == (1, len(b"Subject: hi\r\n\r\nhello\r\n"))
            client.quit()
            proc.send_signal(signal.SIGINT)
            assert proc.wait(DEADLINE) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert log_path.read_text().rstrip().endswith("returned")


# ---------------------------------------------------------------------------
# The asyncio server
# ---------------------------------------------------------------------------


def test_asyncio_context_manager_on_a_started_server() -> None:
    """``async with`` on a server already started uses it as it is."""

    async def main() -> tuple[int, int]:
        server = AsyncioServer(MemoryBackend({"alice": MESSAGES}), AUTH, port=0)
        await server.start()
        before = server.server_address
        async with server as same:
            assert same is server and server.server_address == before
            count = await asyncio.to_thread(lambda: pop(server).stat()[0])
        return before[1], count

    port, count = asyncio.run(main())
    assert port > 0 and count == 2


class ClosingAuthenticator(DictAuthenticator):
    """Closes the server while the first login is being checked (in a
    worker thread: the close runs on the loop, and the check goes on after
    the session was abandoned, opening the maildrop for nobody)."""

    server: AsyncioServer | None = None
    loop: asyncio.AbstractEventLoop | None = None

    def check_password(self, user: str, password: str) -> bool:
        assert self.server is not None and self.loop is not None
        self.loop.call_soon_threadsafe(self.server.close)
        time.sleep(0.3)  # the session is cancelled meanwhile
        return super().check_password(user, password)


def test_asyncio_server_closed_from_inside_a_session() -> None:
    """close() called by code running in a session ends that session too, without UPDATE."""
    auth = ClosingAuthenticator({"alice": PASSWORD})
    backend = MemoryBackend({"alice": MESSAGES})

    async def main() -> None:
        server = AsyncioServer(backend, auth, port=0)
        auth.server = server
        auth.loop = asyncio.get_running_loop()
        await server.start()

        def client() -> None:
            host, port = server.server_address
            conn = poplib.POP3(host, port, timeout=DEADLINE)
            conn.user("alice")
            with pytest.raises((poplib.error_proto, OSError)):
                conn.pass_(PASSWORD)
                conn.dele(1)
                conn.quit()
            conn.close()

        await asyncio.to_thread(client)
        await server.wait_closed()
        assert not server.is_serving
        assert server.active_connections == 0

    asyncio.run(main())
    # The maildrop the abandoned login opened in its thread is released.
    deadline = time.monotonic() + 10
    while backend.is_locked("alice") and time.monotonic() < deadline:
        time.sleep(0.01)
    maildrop = backend.open("alice")
    assert len(maildrop.messages()) == 2
    maildrop.close()


# ---------------------------------------------------------------------------
# The trio server
# ---------------------------------------------------------------------------


def test_trio_implicit_tls_handshake_that_never_comes(
    server_context: ssl.SSLContext, caplog: pytest.LogCaptureFixture
) -> None:
    """A client that connects to an implicit-TLS port and says nothing is dropped after the
    handshake timeout, and the server goes on."""

    def client(server: Server) -> bytes:
        host, port = server.server_address
        with socket.create_connection((host, port), timeout=DEADLINE) as silent:
            try:
                return silent.recv(100)
            except ConnectionResetError:
                return b""

    with caplog.at_level(logging.DEBUG, "pop3proto.server"):
        got = run_trio(
            MemoryBackend({"alice": MESSAGES}),
            client,
            ssl_context=server_context,
            implicit_tls=True,
            handshake_timeout=0.2,
        )
    assert got == b""
    assert "TLS handshake timed out" in caplog.text


@pytest.fixture(autouse=True)
def _no_leftover_signal_handlers() -> Iterator[None]:
    """The runtimes must leave SIGINT as they found it."""
    before = signal.getsignal(signal.SIGINT)
    yield
    assert signal.getsignal(signal.SIGINT) == before

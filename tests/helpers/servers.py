"""Our server, run for a test: I/O-free against our client core, or on a
socket in each runtime.

* :class:`SessionPair` runs :class:`ClientCore` operations against a
  :class:`ServerSession` in memory, the adapters' counterpart of the
  engine's :class:`~tests.helpers.ConnectionPair`.
* :func:`running_server` runs the blocking, asyncio or trio server (one of
  :data:`RUNTIMES`) on 127.0.0.1 in a background thread;
  :func:`recv_until` and :func:`read_to_eof` read from it over a plain socket,
  :func:`poplib_body` turns what :mod:`poplib` read back into octets.
* :func:`figure` records a measured figure: set ``POP3PROTO_FIGURES`` to a
  file name to have them appended to it (JSON lines); ``SECURITY.md``
  quotes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Collection, Generator, Iterator
from typing import Any

import trio

from pop3proto import State
from pop3proto.adapters._seam import Call, CallResult, Deliver, Receive, Send, StartTLS
from pop3proto.adapters.client._core import ClientCore
from pop3proto.adapters.client._errors import AuthenticationFailed
from pop3proto.adapters.mailstore._base import MaildropBackend
from pop3proto.adapters.mailstore._users import DictAuthenticator
from pop3proto.adapters.server._asyncio import Server as AsyncioServer
from pop3proto.adapters.server._config import ServerConfig
from pop3proto.adapters.server._session import ServerSession
from pop3proto.adapters.server._sync import Server as SyncServer

from .engine import PASSWORD, USER

#: The three runtimes every server test runs on.
RUNTIMES = ("sync", "asyncio", "trio")
#: The users :func:`running_server` knows unless told otherwise.
_USERS = DictAuthenticator({USER: PASSWORD})
#: How long a test's socket waits for the server before giving up.
CLIENT_TIMEOUT = 10.0


# ---------------------------------------------------------------------------
# I/O-free: our client core against our server session
# ---------------------------------------------------------------------------


class SessionPair:
    """A :class:`ClientCore` whose operations run against a :class:`ServerSession`.

    :meth:`run` performs an operation's requests in memory: a ``Send`` goes
    to the session and its answers wait in ``inbox``; a ``Receive`` gets
    all of them at once.  Every byte the client sent is kept in ``sent``.
    *client_loopback* is what the core believes about the link, *is_loopback*
    what the session does, so the two policies can be tested apart.
    """

    def __init__(
        self,
        backend: MaildropBackend,
        auth: DictAuthenticator,
        *,
        config: ServerConfig | None = None,
        is_loopback: bool = True,
        client_loopback: bool = True,
    ) -> None:
        self.session = ServerSession(
            backend, auth, config or ServerConfig(), is_loopback=is_loopback
        )
        self.core = ClientCore("mail.example.org", tls=False, loopback=client_loopback)
        self.inbox = bytearray(self.session.greeting())
        self.sent = bytearray()

    def run(self, op: Generator[Any, bytes | None, Any]) -> Any:
        """Perform the requests of the core operation *op*; return its result."""
        try:
            request = op.send(None)
            while True:
                answer: bytes | None = None
                if isinstance(request, Send):
                    self.sent += request.data
                    self.session.receive(request.data)
                    for action in self.session.actions():
                        if isinstance(action, Send):
                            self.inbox += action.data
                elif isinstance(request, Receive):
                    answer = bytes(self.inbox) if self.inbox else b""
                    self.inbox.clear()
                else:
                    assert isinstance(request, Deliver), request
                    assert not isinstance(request, StartTLS)
                request = op.send(answer)
        except StopIteration as done:
            return done.value
        finally:
            op.close()

    def login(self, user: str, password: str, method: str) -> bool:
        """Greet and log in with *method*; whether the session is now in TRANSACTION."""
        self.run(self.core.greet())
        try:
            self.run(self.core.login(user, password, mechanism=method))
        except AuthenticationFailed:
            return False
        return self.core.state is State.TRANSACTION


# ---------------------------------------------------------------------------
# On a socket: the three runtimes in a background thread
# ---------------------------------------------------------------------------


class Running:
    """A server running in a background thread."""

    def __init__(self, kind: str, server: Any) -> None:
        self.kind = kind
        self.server = server
        self.address: tuple[str, int] = server.server_address

    @property
    def active(self) -> int:
        return int(self.server.active_connections)

    def wait_idle(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.server.active_connections and time.monotonic() < deadline:
            time.sleep(0.005)
        assert self.server.active_connections == 0, f"{self.active} sessions still open"

    def connect(self, timeout: float = CLIENT_TIMEOUT) -> socket.socket:
        return socket.create_connection(self.address, timeout=timeout)


@contextlib.contextmanager
def running_server(kind: str, backend: Any, auth: Any = _USERS, **kwargs: Any) -> Iterator[Running]:
    """Run a *kind* server ("sync", "asyncio", "trio") on 127.0.0.1, port 0,
    in a background thread; stop it (and check it stopped) on exit."""
    kwargs.setdefault("port", 0)
    kwargs.setdefault("linger", 0.0)
    if kind == "sync":
        server = SyncServer(backend, auth, **kwargs)
        thread = server.start()
        try:
            yield Running(kind, server)
        finally:
            server.shutdown()
            server.server_close()
            thread.join(10)
        assert not thread.is_alive()
        return
    box: dict[str, Any] = {}
    ready = threading.Event()

    if kind == "asyncio":

        async def amain() -> None:
            async with AsyncioServer(backend, auth, **kwargs) as server:
                box["server"] = server
                box["loop"] = asyncio.get_running_loop()
                box["stop"] = stop = asyncio.Event()
                ready.set()
                await stop.wait()

        def run() -> None:
            try:
                asyncio.run(amain())
            except BaseException as exc:  # reported by the test thread
                box["error"] = exc
            finally:
                ready.set()

        def stop() -> None:
            box["loop"].call_soon_threadsafe(box["stop"].set)

    elif kind == "trio":
        from pop3proto.adapters.server._trio import Server as TrioServer

        async def tmain() -> None:
            server = TrioServer(backend, auth, **kwargs)
            async with trio.open_nursery() as nursery:
                await nursery.start(server.serve)
                box["server"] = server
                box["token"] = trio.lowlevel.current_trio_token()
                ready.set()

        def run() -> None:
            try:
                trio.run(tmain)
            except BaseException as exc:
                box["error"] = exc
            finally:
                ready.set()

        def stop() -> None:
            trio.from_thread.run_sync(box["server"].shutdown, trio_token=box["token"])

    else:  # pragma: no cover
        raise ValueError(kind)
    thread = threading.Thread(target=run, name=f"{kind}-server", daemon=True)
    thread.start()
    ready.wait(10)
    if "error" in box:
        raise box["error"]
    try:
        yield Running(kind, box["server"])
    finally:
        if "server" in box:
            stop()
        thread.join(15)
    assert not thread.is_alive(), f"the {kind} server did not stop"
    if "error" in box:
        raise box["error"]


def recv_until(
    sock: socket.socket, predicate: Callable[[bytes], bool], limit: float = 10.0
) -> bytes:
    """Read until *predicate(data)* holds or the peer closes."""
    data = b""
    deadline = time.monotonic() + limit
    while not predicate(data):
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        if not chunk:
            break
        data += chunk
    return data


def read_to_eof(sock: socket.socket, limit: float = 10.0) -> bytes:
    """Everything until the peer closes (a reset counts as the end)."""
    data = b""
    deadline = time.monotonic() + limit
    try:
        while time.monotonic() < deadline:
            sock.settimeout(max(deadline - time.monotonic(), 0.01))
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    return data


def poplib_body(lines: list[bytes]) -> bytes:
    """:mod:`poplib`'s RETR or TOP lines (CRLF removed, unstuffed) back to octets."""
    return b"".join(line + b"\r\n" for line in lines)


def figure(name: str, **values: Any) -> None:
    """Record a measured figure (appended to ``$POP3PROTO_FIGURES``)."""
    path = os.environ.get("POP3PROTO_FIGURES")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"figure": name, **values}) + "\n")


def drive_session(
    session: ServerSession,
    fail: Collection[str] = (),
    calls: list[str] | None = None,
) -> bytes:
    """Run an offloading session's actions as a runtime would, answering
    each :class:`Call` (or, for the names in *fail*, an error as if the
    runtime could not run it); return what it sent.  The name of each call
    is appended to *calls*."""
    actions = session.actions()
    out = b""
    answer: CallResult | None = None
    while True:
        try:
            action = actions.send(answer)
        except StopIteration:
            return out
        answer = None
        if isinstance(action, Call):
            name = getattr(action.fn, "__name__", "?")
            if calls is not None:
                calls.append(name)
            if name in fail:
                answer = CallResult(error=OSError("database down"))
            else:
                try:
                    value = action.fn(*action.args)
                    if inspect.iscoroutine(value):  # a native async backend
                        value = asyncio.run(value)
                    answer = CallResult(value)
                except Exception as exc:  # as the runtimes do
                    answer = CallResult(error=exc)
        elif isinstance(action, Send):
            out += action.data

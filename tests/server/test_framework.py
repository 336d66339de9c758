"""The server as a framework: the public API, truthful login methods,
identities handed to the backend, and calls kept off the event loop.

* ``pop3proto.adapters.server.__all__`` is exactly its public names, and
  what a user implements is shown under that public home by ``help()``.
* An authenticator's :meth:`credentials` decides what is offered: a store
  of PBKDF2 hashes offers USER, PLAIN and LOGIN only (no SCRAM, CRAM-MD5 or
  APOP timestamp), so our client's defaults (``Client.login()``,
  ``pop3proto fetch``) log in to it; a hash-only authenticator that does not
  say so is logged in to by the client's fallback.
* ``check_password`` may return an :class:`Identity`: the backend's
  ``open()`` gets it (mailbox key, login, authzid).
* With ``offload=True`` the session yields a :class:`Call` for each
  call that may block, and the asyncio and trio servers run them in worker
  threads or await native ``async def`` backends; the blocking server
  refuses those.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import pydoc
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import trustme

import pop3proto
import pop3proto.adapters.server as public
from pop3proto.adapters import sync as sync_client
from pop3proto.adapters.asyncio import Server as AsyncioServer
from pop3proto.adapters.server import (
    Call,
    DictAuthenticator,
    ExtensionCommand,
    ExtensionReply,
    Identity,
    MaildirBackend,
    Maildrop,
    MaildropBackend,
    MaildropInUse,
    MemoryBackend,
    MessageInfo,
    Send,
    ServerConfig,
    ServerSession,
    UsersFile,
    hash_password,
)
from pop3proto.adapters.sync import Server as SyncServer
from tests.helpers import RUNTIMES, drive_session, make_maildir, running_server

PASSWORD = "correct horse battery"
MESSAGE = b"Subject: hi\r\n\r\nhello\r\n"


def hashed(password: str = PASSWORD) -> str:
    return hash_password(password, iterations=1000)


# ---------------------------------------------------------------------------
# The public module
# ---------------------------------------------------------------------------


def test_all_is_exactly_the_public_names() -> None:
    names = {n for n in vars(public) if not n.startswith("_") and n != "annotations"}
    assert set(public.__all__) == names
    assert len(public.__all__) == len(set(public.__all__))


@pytest.mark.parametrize(
    "name", ["MaildropBackend", "Maildrop", "Authenticator", "Identity", "MaildropInUse"]
)
def test_what_a_user_implements_lives_in_the_public_module(name: str) -> None:
    assert getattr(public, name).__module__ == "pop3proto.adapters.server"


def test_help_of_the_servers_names_the_public_protocols() -> None:
    text = pydoc.render_doc(SyncServer)
    assert "pop3proto.adapters.server.MaildropBackend" in text
    assert "mailstore._base" not in text and "mailstore._users" not in text


# ---------------------------------------------------------------------------
# Authentication that tells the truth
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        ({"a": PASSWORD}, {"password", "secret", "scram-sha-256"}),
        ({"a": hash_password(PASSWORD, scheme="SCRAM-SHA-256")}, {"password", "scram-sha-256"}),
        ({"a": hashed()}, {"password"}),
        ({"a": PASSWORD, "b": hashed()}, {"password"}),  # what works for every user
        ({}, {"password", "secret", "scram-sha-256"}),
    ],
)
def test_credentials_follow_the_stored_forms(stored: dict[str, str], expected: set[str]) -> None:
    assert DictAuthenticator(stored).credentials() == expected


def greet_and_capa(auth: Any) -> tuple[pop3proto.Greeting, pop3proto.Capabilities, ServerSession]:
    session = ServerSession(MemoryBackend({"alice": [MESSAGE]}), auth, is_loopback=True)
    client = pop3proto.Connection(pop3proto.CLIENT)
    client.receive_data(session.greeting())
    greeting = client.next_event()
    assert isinstance(greeting, pop3proto.Greeting)
    session.receive(client.send(pop3proto.Capa()))
    for action in session.actions():
        assert isinstance(action, Send)
        client.receive_data(action.data)
    capa = client.next_event()
    assert isinstance(capa, pop3proto.CapaOk)
    return greeting, capa.capabilities, session


@pytest.mark.parametrize(
    ("stored", "sasl", "apop"),
    [
        (PASSWORD, ("SCRAM-SHA-256", "CRAM-MD5", "PLAIN", "LOGIN"), True),
        (
            hash_password(PASSWORD, scheme="SCRAM-SHA-256"),
            ("SCRAM-SHA-256", "PLAIN", "LOGIN"),
            False,
        ),
        (hashed(), ("PLAIN", "LOGIN"), False),
    ],
)
def test_capa_and_apop_follow_the_credentials(
    stored: str, sasl: tuple[str, ...], apop: bool
) -> None:
    greeting, caps, _ = greet_and_capa(DictAuthenticator({"alice": stored}))
    assert tuple(caps.sasl) == sasl
    assert caps.user
    assert (greeting.timestamp is not None) is apop


def run_lines(session: ServerSession, *lines: bytes) -> bytes:
    for line in lines:
        session.receive(line)
    out = b""
    for action in session.actions():
        assert isinstance(action, Send)
        out += action.data
    return out


def test_methods_not_offered_are_refused() -> None:
    _, _, session = greet_and_capa(DictAuthenticator({"alice": hashed()}))
    assert run_lines(session, b"AUTH SCRAM-SHA-256\r\n").startswith(b"-ERR unsupported")
    # Without "password" there is no USER either (a store of SCRAM keys
    # only, as a custom authenticator may have).

    class ScramOnly(DictAuthenticator):
        def credentials(self) -> frozenset[str]:
            return frozenset({"scram-sha-256"})

    _, caps, session = greet_and_capa(ScramOnly({"alice": PASSWORD}))
    assert not caps.user and tuple(caps.sasl) == ("SCRAM-SHA-256",)
    assert run_lines(session, b"USER alice\r\n").startswith(b"-ERR USER/PASS not available")


@pytest.mark.parametrize("kind", RUNTIMES)
def test_hashed_users_log_in_with_client_defaults(kind: str) -> None:
    backend = MemoryBackend({"alice": [MESSAGE]})
    with running_server(kind, backend, DictAuthenticator({"alice": hashed()})) as running:
        host, port = running.address
        with sync_client.Client(host, port, tls="none", timeout=10) as client:
            assert client.login("alice", PASSWORD) == "PLAIN"
            assert client.stat().count == 1
        with (
            sync_client.Client(host, port, tls="none", timeout=10) as client,
            pytest.raises(sync_client.AuthenticationFailed),
        ):
            client.login("alice", "wrong")


class HashOnlyLegacy:
    """A custom authenticator of PBKDF2 hashes that does not say what it
    can verify (no ``credentials()``): the server offers everything, and
    the client's fallback still logs in."""

    def __init__(self) -> None:
        self._store = DictAuthenticator({"alice": hashed()})

    def check_password(self, user: str, password: str) -> bool:
        return self._store.check_password(user, password)

    def get_secret(self, user: str) -> str | None:
        return None

    def scram_credentials(self, user: str) -> pop3proto.ScramCredentials | None:
        return None


def test_client_falls_back_from_scram_to_plain_on_a_hash_only_store() -> None:
    backend = MemoryBackend({"alice": [MESSAGE]})
    with running_server("sync", backend, HashOnlyLegacy()) as running:
        host, port = running.address
        with sync_client.Client(host, port, tls="none", timeout=10) as client:
            assert "SCRAM-SHA-256" in client.capabilities().sasl
            assert client.login("alice", PASSWORD) == "PLAIN"
        with (
            sync_client.Client(host, port, tls="none", timeout=10) as client,
            pytest.raises(sync_client.AuthenticationFailed, match="tried SCRAM-SHA-256, PLAIN"),
        ):
            client.login("alice", "wrong")


def test_fetch_defaults_work_with_a_hashed_users_file(
    tmp_path: Path, ca: trustme.CA, server_context: Any
) -> None:
    users = tmp_path / "users"
    users.write_text(f"alice:{hash_password(PASSWORD)}\n")  # the defaults: 600,000 rounds
    cafile = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(cafile))
    dest = tmp_path / "inbox"
    backend = MemoryBackend({"alice": [MESSAGE, MESSAGE]})
    with running_server(
        "asyncio", backend, UsersFile(users), ssl_context=server_context, implicit_tls=True
    ) as running:
        port = running.address[1]
        done = subprocess.run(
            [
                *(sys.executable, "-m", "pop3proto.adapters.cli", "fetch"),
                *(f"pop3s://alice@localhost:{port}", "--cafile", str(cafile)),
                *("--to", str(dest), "--password-env", "TEST_PW"),
            ],
            capture_output=True,
            text=True,
            env={**os.environ, "TEST_PW": PASSWORD},
            timeout=120,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    assert len(list((dest / "new").iterdir())) == 2


# ---------------------------------------------------------------------------
# Identities
# ---------------------------------------------------------------------------


class RecordingBackend(MemoryBackend):
    def __init__(self, mail: dict[str, list[bytes]]) -> None:
        super().__init__(mail)
        self.opened: list[Identity] = []

    def open(self, user: str) -> Any:
        assert isinstance(user, Identity)
        self.opened.append(user)
        return super().open(user)


class MappingAuthenticator(DictAuthenticator):
    """Logins ``name@example.org`` map to mailbox ``box-name``."""

    def check_password(self, user: str, password: str) -> bool | Identity:  # type: ignore[override]
        local = user.partition("@")[0]
        if not super().check_password(local, password):
            return False
        return Identity(f"box-{local}", login=user)


def test_check_password_chooses_the_mailbox() -> None:
    backend = RecordingBackend({"box-alice": [MESSAGE]})
    auth = MappingAuthenticator({"alice": PASSWORD})
    with running_server("sync", backend, auth) as running:
        host, port = running.address
        for mechanism in ("USER", "PLAIN"):
            with sync_client.Client(host, port, tls="none", timeout=10) as client:
                client.login("alice@example.org", PASSWORD, mechanism=mechanism)
                assert client.stat().count == 1
            running.wait_idle()  # the with-exit does not wait for QUIT's reply
    assert [(i.mailbox, i.login, i.authzid) for i in backend.opened] == [
        ("box-alice", "alice@example.org", ""),
    ] * 2


def test_identity_of_a_plain_login_with_an_authzid() -> None:
    backend = RecordingBackend({"alice": [MESSAGE]})
    session = ServerSession(backend, DictAuthenticator({"alice": PASSWORD}), is_loopback=True)
    session.greeting()
    response = pop3proto.PlainClient("alice", PASSWORD, authzid="alice").initial_response()
    assert response is not None
    import base64

    out = run_lines(session, b"AUTH PLAIN " + base64.b64encode(response) + b"\r\n")
    assert out.startswith(b"+OK")
    [identity] = backend.opened
    assert (identity.mailbox, identity.login, identity.authzid) == ("alice", "alice", "")
    assert repr(identity) == "Identity('alice', login='alice', authzid='')"
    with pytest.raises(ValueError):
        Identity("")


# ---------------------------------------------------------------------------
# Calls that may block: offloaded, or awaited natively
# ---------------------------------------------------------------------------


def test_an_offloading_session_yields_calls() -> None:
    backend = MemoryBackend({"alice": [MESSAGE]})
    # A hashed password is no quick check (tests/server/test_quick_calls.py
    # has the logins made without a call).
    users = {"alice": hash_password(PASSWORD, iterations=1000)}
    session = ServerSession(backend, DictAuthenticator(users), is_loopback=True, offload=True)
    session.greeting()
    session.receive(b"USER alice\r\nPASS " + PASSWORD.encode() + b"\r\nDELE 1\r\nQUIT\r\n")
    calls: list[str] = []
    out = drive_session(session, calls=calls)
    # The login decision (opening and listing the maildrop with it), then
    # the commit: one call each.
    assert calls == ["_login_check", "commit"]
    assert out.endswith(b"+OK bye (1 messages deleted)\r\n")
    assert backend.messages("alice") == []


class FailingOpen(MemoryBackend):
    def __init__(self, error: Exception) -> None:
        super().__init__({"alice": [MESSAGE]})
        self.error = error

    def open(self, user: str) -> Any:
        raise self.error


class FailingList(MemoryBackend):
    def open(self, user: str) -> Any:
        maildrop = super().open(user)
        maildrop.messages = lambda: 1 / 0  # type: ignore[method-assign, assignment, return-value]
        return maildrop


@pytest.mark.parametrize("offload", [False, True])
@pytest.mark.parametrize(
    ("backend", "fail", "reply"),
    [
        (MemoryBackend({"alice": [MESSAGE]}), "_login_check", b"-ERR [AUTH]"),
        (FailingOpen(OSError("database down")), "", b"-ERR [SYS/TEMP]"),
        (FailingOpen(RuntimeError("backend bug")), "", b"-ERR [SYS/TEMP]"),
        (FailingOpen(MaildropInUse("busy")), "", b"-ERR [IN-USE]"),
        (FailingList(), "", b"-ERR [SYS/TEMP]"),
    ],
)
def test_a_call_that_raised(backend: Any, fail: str, reply: bytes, offload: bool) -> None:
    if fail and not offload:
        return  # only the runtime can fail to run a call
    # Hashed: a plain password would be checked without a call to fail.
    users = {"alice": hash_password(PASSWORD, iterations=1000)}
    session = ServerSession(backend, DictAuthenticator(users), is_loopback=True, offload=offload)
    session.greeting()
    session.receive(b"USER alice\r\nPASS " + PASSWORD.encode() + b"\r\n")
    assert drive_session(session, {fail}).splitlines()[-1].startswith(reply)
    if isinstance(backend, FailingList):
        assert not backend.is_locked("alice")


class AsyncBackend:
    """A native asyncio backend: ``open`` and ``commit`` are coroutines."""

    def __init__(self) -> None:
        self.inner = MemoryBackend({"alice": [MESSAGE, MESSAGE]})
        self.loops: list[Any] = []

    async def open(self, user: str) -> Any:
        self.loops.append(asyncio.get_running_loop())  # on the loop, not a thread
        await asyncio.sleep(0)
        return _AsyncCommit(self.inner.open(user))


class _AsyncCommit:
    def __init__(self, inner: Maildrop) -> None:
        self.inner = inner

    def messages(self) -> Sequence[MessageInfo]:
        return self.inner.messages()

    def open_message(self, index: int) -> Any:
        return self.inner.open_message(index)

    def top(self, index: int, lines: int) -> Any:
        return self.inner.top(index, lines)

    async def commit(self, deleted: Any) -> bool:
        await asyncio.sleep(0)
        return self.inner.commit(deleted)

    def close(self) -> None:
        self.inner.close()


def test_native_async_backend_is_awaited_on_the_loop() -> None:
    backend = AsyncBackend()
    assert inspect.iscoroutinefunction(backend.open)
    with running_server("asyncio", backend, DictAuthenticator({"alice": PASSWORD})) as running:
        host, port = running.address
        with sync_client.Client(host, port, tls="none", timeout=10) as client:
            client.login("alice", PASSWORD)
            client.delete(1)
    assert len(backend.loops) == 1
    assert len(backend.inner.messages("alice")) == 1


def test_blocking_server_refuses_a_native_async_backend() -> None:
    backend: Any = AsyncBackend()
    with pytest.raises(TypeError, match="asyncio or trio"):
        SyncServer(backend, DictAuthenticator({}), port=0)
    with pytest.raises(ValueError):
        AsyncioServer(MemoryBackend(), DictAuthenticator({}), worker_threads=0)
    assert isinstance(MemoryBackend(), MaildropBackend)


# ---------------------------------------------------------------------------
# The command hook
# ---------------------------------------------------------------------------


def _xoip(session: ServerSession, event: pop3proto.Extension) -> ExtensionReply:
    if len(event.arguments) != 1:
        return pop3proto.Err("usage: XOIP address")
    return pop3proto.Ok(f"noted {event.arguments[0]} for {session.user or 'nobody'}")


def _xlst(session: ServerSession, event: pop3proto.Extension) -> ExtensionReply:
    return ("listing follows", b"one\r\n.two\r\n")


def _xbad(session: ServerSession, event: pop3proto.Extension) -> ExtensionReply:
    raise RuntimeError("boom")


HOOKED = ServerConfig(
    commands={
        "xoip": ExtensionCommand(_xoip, capability="XOIP"),
        "XLST": ExtensionCommand(_xlst, multiline=True, capability=("X-LIST", "1")),
        "XEMP": ExtensionCommand(lambda s, e: pop3proto.Ok("empty"), multiline=True),
        "XBAD": ExtensionCommand(_xbad),
        "XTYP": ExtensionCommand(lambda s, e: "nonsense"),  # type: ignore[arg-type, return-value]
        "XTUP": ExtensionCommand(lambda s, e: ("not declared multiline", b"")),
    }
)


@pytest.mark.parametrize("offload", [False, True])
def test_extension_commands_are_answered_by_the_application(offload: bool) -> None:
    session = ServerSession(
        MemoryBackend({"alice": [MESSAGE]}),
        DictAuthenticator({"alice": PASSWORD}),
        HOOKED,
        is_loopback=True,
        offload=offload,
    )
    session.greeting()
    session.receive(
        b"CAPA\r\nXOIP 192.0.2.1\r\nXOIP\r\nxlst\r\nXEMP\r\nXBAD\r\nXTYP\r\nXTUP\r\nXNOP\r\n"
    )
    out = drive_session(session, set())
    assert b"XOIP\r\n" in out and b"X-LIST 1\r\n" in out
    tail = out[out.index(b"\r\n.\r\n") + 5 :]
    assert tail == (
        b"+OK noted 192.0.2.1 for nobody\r\n"
        b"-ERR usage: XOIP address\r\n"
        b"+OK listing follows\r\none\r\n..two\r\n.\r\n"
        b"+OK empty\r\n.\r\n"
        b"-ERR [SYS/TEMP] command failed\r\n"
        b"-ERR [SYS/TEMP] command failed\r\n"
        b"-ERR [SYS/TEMP] command failed\r\n"
        b"-ERR unknown command\r\n"
    )
    # In TRANSACTION too, where the handler sees who is logged in.
    session.receive(b"USER alice\r\nPASS " + PASSWORD.encode() + b"\r\nXOIP 192.0.2.2\r\n")
    assert drive_session(session, set()).endswith(b"+OK noted 192.0.2.2 for alice\r\n")


def test_extension_command_names_are_checked() -> None:
    with pytest.raises(ValueError, match="XO"):
        ServerConfig(commands={"XO": ExtensionCommand(_xoip)})
    with pytest.raises(ValueError, match="STAT"):
        ServerConfig(commands={"STAT": ExtensionCommand(_xoip)})
    with pytest.raises(ValueError, match="server option"):
        pop3proto.Connection(pop3proto.CLIENT, extension_commands={"XOIP": False})
    with pytest.raises(ValueError, match="XO"):
        pop3proto.Connection(pop3proto.SERVER, extension_commands={"XO": False})


@pytest.mark.parametrize("kind", ["asyncio", "trio"])
def test_extension_command_over_a_socket(kind: str) -> None:
    backend = MemoryBackend({"alice": [MESSAGE]})
    auth = DictAuthenticator({"alice": PASSWORD})
    with running_server(kind, backend, auth, config=HOOKED) as running:
        with sync_client.Client(*running.address, tls="none", timeout=10) as client:
            assert "XOIP" in client.capabilities()
        sock = running.connect()
        sock.sendall(b"XOIP 198.51.100.7\r\nXBAD\r\nQUIT\r\n")
        data = b""
        while not data.endswith(b"+OK bye\r\n"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        sock.close()
    assert b"+OK noted 198.51.100.7 for nobody\r\n-ERR [SYS/TEMP] command failed\r\n" in data


# ---------------------------------------------------------------------------
# Sessions that share a maildrop (off by default)
# ---------------------------------------------------------------------------


def _two_sessions(backend: MaildropBackend, user: str) -> tuple[Any, Any]:
    auth = DictAuthenticator({user: PASSWORD})
    with running_server("sync", backend, auth) as running:
        first = sync_client.Client(*running.address, tls="none", timeout=10)
        second = sync_client.Client(*running.address, tls="none", timeout=10)
        with first, second:
            first.login(user, PASSWORD)
            try:
                second.login(user, PASSWORD)
            except sync_client.MailboxInUse as exc:
                return first.stat().count, exc
            # Both see the snapshot; both delete message 1; both commit.
            counts = (first.stat().count, second.stat().count)
            first.delete(1)
            second.delete(1)
        return counts, None


@pytest.mark.parametrize("store", ["memory", "maildir"])
def test_shared_sessions(store: str, tmp_path: Path) -> None:
    def backend(shared: bool) -> Any:
        if store == "memory":
            return MemoryBackend({"alice": [MESSAGE, MESSAGE]}, shared_sessions=shared)
        path = tmp_path / f"maildir-{shared}"
        make_maildir(path, [MESSAGE, MESSAGE])
        return MaildirBackend(path, shared_sessions=shared)

    # The default: RFC 1939 §8's exclusive lock.
    count, refused = _two_sessions(backend(False), "alice")
    assert count == 2 and isinstance(refused, sync_client.MailboxInUse)
    shared = backend(True)
    counts, refused = _two_sessions(shared, "alice")
    assert counts == (2, 2) and refused is None
    # Both removed the same first message: one removed, no error.
    auth = DictAuthenticator({"alice": PASSWORD})
    with running_server("sync", shared, auth) as running:
        client = sync_client.Client(*running.address, tls="none", timeout=10)
        with client:
            client.login("alice", PASSWORD)
            assert client.stat().count == 1


class SlowCheck(DictAuthenticator):
    def __init__(self, users: dict[str, str]) -> None:
        super().__init__(users)
        self.started = threading.Event()
        self.finished = threading.Event()

    def check_password(self, user: str, password: str) -> bool:
        self.started.set()
        time.sleep(0.5)
        try:
            return super().check_password(user, password)
        finally:
            self.finished.set()


@pytest.mark.parametrize("kind", ["asyncio", "trio"])
def test_a_login_abandoned_by_shutdown_releases_its_maildrop(kind: str) -> None:
    backend = MemoryBackend({"alice": [MESSAGE]})
    auth = SlowCheck({"alice": PASSWORD})
    with running_server(kind, backend, auth) as running:
        sock = running.connect()
        sock.sendall(b"USER alice\r\nPASS " + PASSWORD.encode() + b"\r\n")
        assert auth.started.wait(10)
        # Leaving the block shuts the server down while the check runs.
    sock.close()
    assert auth.finished.wait(10)
    # The worker thread opens the maildrop after the check, then gives it
    # up (asyncio: Call.discard; trio waits for the thread and hands the
    # result to the session, which releases it as it ends).
    time.sleep(0.3)
    assert not backend.is_locked("alice")
    assert backend.messages("alice") == [MESSAGE]


class AsyncOpenFails:
    def __init__(self, error: Exception) -> None:
        self.error = error

    async def open(self, user: str) -> Any:
        raise self.error


class AsyncMessages(MemoryBackend):
    """A blocking ``open``, an ``async def messages`` (failing on request)."""

    def __init__(self, fail: bool) -> None:
        super().__init__({"alice": [MESSAGE]})
        self.fail = fail

    def open(self, user: str) -> Any:
        maildrop = super().open(user)
        inner = maildrop.messages

        async def messages() -> Any:
            if self.fail:
                raise OSError("listing failed")
            return inner()

        maildrop.messages = messages  # type: ignore[method-assign, assignment]
        return maildrop


@pytest.mark.parametrize(
    ("backend", "reply"),
    [
        (AsyncOpenFails(MaildropInUse("busy")), b"-ERR [IN-USE]"),
        (AsyncOpenFails(OSError("down")), b"-ERR [SYS/TEMP]"),
        (AsyncMessages(fail=True), b"-ERR [SYS/TEMP]"),
        (AsyncMessages(fail=False), b"+OK"),
    ],
)
def test_native_async_open_and_messages_in_the_session(backend: Any, reply: bytes) -> None:
    session = ServerSession(
        backend, DictAuthenticator({"alice": PASSWORD}), is_loopback=True, offload=True
    )
    session.greeting()
    session.receive(b"USER alice\r\nPASS " + PASSWORD.encode() + b"\r\n")
    assert drive_session(session, set()).splitlines()[-1].startswith(reply)
    if isinstance(backend, AsyncMessages) and backend.fail:
        assert not backend.is_locked("alice")


class TrioBackend:
    def __init__(self) -> None:
        self.inner = MemoryBackend({"alice": [MESSAGE]})

    async def open(self, user: str) -> Any:
        import trio

        await trio.sleep(0)
        return self.inner.open(user)


def test_native_trio_backend() -> None:
    backend = TrioBackend()
    with running_server("trio", backend, DictAuthenticator({"alice": PASSWORD})) as running:
        client = sync_client.Client(*running.address, tls="none", timeout=10)
        with client:
            client.login("alice", PASSWORD)
            assert client.stat().count == 1


def test_discarding_an_abandoned_call_logs_its_errors(caplog: pytest.LogCaptureFixture) -> None:
    from pop3proto.adapters.server._loop import discard_call

    def broken(value: object) -> None:
        raise RuntimeError("cannot close")

    discard_call(Call(print, (), broken), ["value"])
    discard_call(Call(print, (), broken), [])  # nothing came back: nothing to do
    assert [r.message for r in caplog.records] == [
        "error while discarding the result of an abandoned call"
    ]

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
    CallResult,
    DictAuthenticator,
    Identity,
    Maildrop,
    MaildropBackend,
    MemoryBackend,
    MessageInfo,
    Send,
    ServerSession,
    UsersFile,
    hash_password,
)
from pop3proto.adapters.sync import Server as SyncServer
from tests.helpers import RUNTIMES, running_server

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
    session = ServerSession(
        backend, DictAuthenticator({"alice": PASSWORD}), is_loopback=True, offload=True
    )
    session.greeting()
    session.receive(b"USER alice\r\nPASS " + PASSWORD.encode() + b"\r\nDELE 1\r\nQUIT\r\n")
    calls: list[str] = []
    out = b""
    actions = session.actions()
    answer: CallResult | None = None
    while True:
        try:
            action = actions.send(answer)
        except StopIteration:
            break
        answer = None
        if isinstance(action, Call):
            calls.append(getattr(action.fn, "__name__", "?"))
            answer = CallResult(action.fn(*action.args))
        elif isinstance(action, Send):
            out += action.data
    # The login decision, open, messages and commit: each one a call.
    assert calls == ["password", "open", "messages", "commit"]
    assert out.endswith(b"+OK bye (1 messages deleted)\r\n")
    assert backend.messages("alice") == []


def drive(session: ServerSession, fail: set[str]) -> bytes:
    """Run the session's actions, answering each call (or, for the names
    in *fail*, an error as if the runtime could not run it)."""
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
            if name in fail:
                answer = CallResult(error=OSError("database down"))
            else:
                answer = CallResult(action.fn(*action.args))
        elif isinstance(action, Send):
            out += action.data


@pytest.mark.parametrize(
    ("fail", "reply"),
    [("password", b"-ERR [AUTH]"), ("open", b"-ERR [SYS/TEMP]"), ("messages", b"-ERR [SYS/TEMP]")],
)
def test_a_call_that_raised(fail: str, reply: bytes) -> None:
    session = ServerSession(
        MemoryBackend({"alice": [MESSAGE]}),
        DictAuthenticator({"alice": PASSWORD}),
        is_loopback=True,
        offload=True,
    )
    session.greeting()
    session.receive(b"USER alice\r\nPASS " + PASSWORD.encode() + b"\r\n")
    assert drive(session, {fail}).splitlines()[-1].startswith(reply)


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

"""The I/O-free server when its backend or authenticator fails, and the
loop policy's odd ends, driven with bytes only.

A :class:`ServerSession` is joined to a client-role engine, as in
test_session.py, so every reply is also checked to be valid POP3.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from collections.abc import Set as AbstractSet
from typing import Any

import pytest

import pop3proto
from pop3proto import CLIENT, NEED_DATA, PAUSED, Connection, Event, State
from pop3proto.adapters._seam import Close, Receive, Send
from pop3proto.adapters.mailstore._base import MessageInfo
from pop3proto.adapters.mailstore._memory import MemoryBackend
from pop3proto.adapters.mailstore._users import DictAuthenticator
from pop3proto.adapters.server import _transaction
from pop3proto.adapters.server._base import format_peer
from pop3proto.adapters.server._config import ServerConfig, SessionStats
from pop3proto.adapters.server._loop import serve_session
from pop3proto.adapters.server._session import ServerSession

PASSWORD = "correct horse"
MESSAGE = b"Subject: hi\r\n\r\nhello\r\n"


class Joined:
    """A ServerSession whose output feeds a client engine."""

    def __init__(
        self,
        backend: Any = None,
        authenticator: Any = None,
        config: ServerConfig | None = None,
        **kwargs: Any,
    ) -> None:
        self.session = ServerSession(
            backend if backend is not None else MemoryBackend({"alice": [MESSAGE]}),
            authenticator if authenticator is not None else DictAuthenticator({"alice": PASSWORD}),
            config if config is not None else ServerConfig(hostname="test.example"),
            **{"is_loopback": True, **kwargs},
        )
        self.client = Connection(CLIENT)
        self.closed = False
        self.client.receive_data(self.session.greeting())
        self.events()

    def events(self) -> list[Event]:
        got: list[Event] = []
        while True:
            event = self.client.next_event()
            if event is NEED_DATA or event is PAUSED:
                return got
            if isinstance(event, pop3proto.ConnectionClosed):
                return got  # (and again at every call: the session is over)
            assert isinstance(event, Event)
            got.append(event)

    def send(self, command: Event) -> list[Event]:
        self.session.receive(self.client.send(command))
        for action in self.session.actions():
            if isinstance(action, Send):
                self.client.receive_data(action.data)
            elif isinstance(action, Close):
                self.closed = True
        return self.events()

    def one(self, command: Event) -> Event:
        [event] = self.send(command)
        return event

    def login(self) -> None:
        assert isinstance(self.one(pop3proto.User("alice")), pop3proto.Ok)
        assert isinstance(self.one(pop3proto.Pass(PASSWORD)), pop3proto.Ok)
        assert self.client.state is State.TRANSACTION


class Maildrop:
    """A one-message maildrop whose methods fail as told."""

    def __init__(self, **failures: BaseException) -> None:
        self.failures = failures
        self.closed = False

    def _maybe_fail(self, name: str) -> None:
        if name in self.failures:
            raise self.failures[name]

    def messages(self) -> Sequence[MessageInfo]:
        self._maybe_fail("messages")
        return [MessageInfo(len(MESSAGE), "u1")]

    def open_message(self, index: int) -> Iterator[bytes]:
        return self._chunks()

    def _chunks(self) -> Iterator[bytes]:
        failures = self.failures

        class Chunks:
            def __init__(self) -> None:
                self.left = [MESSAGE]

            def __iter__(self) -> Chunks:
                return self

            def __next__(self) -> bytes:
                if not self.left:
                    raise StopIteration
                return self.left.pop()

            def close(self) -> None:
                if "stream_close" in failures:
                    raise failures["stream_close"]

        return Chunks()

    def top(self, index: int, lines: int) -> Iterator[bytes]:
        return self.open_message(index)

    def commit(self, deleted: AbstractSet[int]) -> bool:
        self._maybe_fail("commit")
        return True

    def close(self) -> None:
        self.closed = True
        self._maybe_fail("close")


class Backend:
    def __init__(self, maildrop: Maildrop) -> None:
        self.maildrop = maildrop

    def open(self, user: str) -> Maildrop:
        return self.maildrop


class BrokenAuthenticator:
    """An authenticator whose store is down."""

    def check_password(self, user: str, password: str) -> bool:
        raise RuntimeError("users database unreachable")

    def get_secret(self, user: str) -> str | None:
        raise RuntimeError("users database unreachable")

    def scram_credentials(self, user: str) -> pop3proto.ScramCredentials | None:
        return None


# ---------------------------------------------------------------------------
# The backend or the authenticator fails
# ---------------------------------------------------------------------------


def test_maildrop_that_cannot_list_its_messages(caplog: pytest.LogCaptureFixture) -> None:
    """A maildrop failing to list gets -ERR [SYS/TEMP] at PASS, is released, and is logged."""
    maildrop = Maildrop(messages=RuntimeError("index corrupt"))
    joined = Joined(Backend(maildrop))
    joined.one(pop3proto.User("alice"))
    with caplog.at_level(logging.ERROR, "pop3proto.server"):
        reply = joined.one(pop3proto.Pass(PASSWORD))
    assert reply == pop3proto.Err("unable to open maildrop", pop3proto.SYS_TEMP)
    assert maildrop.closed
    assert joined.client.state is State.AUTHORIZATION
    assert "cannot list the maildrop of alice" in caplog.text


def test_commit_that_raises_is_a_partial_failure(caplog: pytest.LogCaptureFixture) -> None:
    """RFC 1939 §6: an UPDATE the backend fails is -ERR [SYS/TEMP]; the lock is still released."""
    maildrop = Maildrop(commit=OSError("read-only file system"))
    joined = Joined(Backend(maildrop))
    joined.login()
    joined.one(pop3proto.Dele(1))
    with caplog.at_level(logging.ERROR, "pop3proto.server"):
        reply = joined.one(pop3proto.Quit())
    assert reply == pop3proto.Err("some deleted messages not removed", pop3proto.SYS_TEMP)
    assert maildrop.closed and joined.closed
    assert "commit failed for alice" in caplog.text


def test_release_that_raises_still_ends_the_session(caplog: pytest.LogCaptureFixture) -> None:
    """A maildrop whose close() raises is logged; QUIT still gets its +OK and the session ends."""
    maildrop = Maildrop(close=OSError("lock file gone"))
    joined = Joined(Backend(maildrop))
    joined.login()
    with caplog.at_level(logging.ERROR, "pop3proto.server"):
        assert isinstance(joined.one(pop3proto.Quit()), pop3proto.Ok)
    assert joined.closed and joined.session.closed
    assert "error while releasing a maildrop" in caplog.text


def test_message_stream_whose_close_raises(caplog: pytest.LogCaptureFixture) -> None:
    """A message stream failing to close is logged; the message was sent whole all the same."""
    joined = Joined(Backend(Maildrop(stream_close=OSError("bad descriptor"))))
    joined.login()
    with caplog.at_level(logging.ERROR, "pop3proto.server"):
        events = joined.send(pop3proto.Retr(1))
    assert b"".join(e.data for e in events if isinstance(e, pop3proto.MessageData)) == MESSAGE
    assert isinstance(events[-1], pop3proto.MessageEnd)
    assert "error while closing a message stream" in caplog.text


def test_authenticator_that_raises_refuses_the_login(caplog: pytest.LogCaptureFixture) -> None:
    """A failing user store refuses USER/PASS and APOP like a wrong password, and is logged."""
    joined = Joined(authenticator=BrokenAuthenticator())
    with caplog.at_level(logging.ERROR, "pop3proto.server"):
        joined.one(pop3proto.User("alice"))
        first = joined.one(pop3proto.Pass(PASSWORD))
        greeting = joined.client.greeting
        assert greeting is not None and greeting.timestamp is not None
        digest = pop3proto.apop_digest(greeting.timestamp, PASSWORD)
        second = joined.one(pop3proto.Apop("alice", digest))
    assert isinstance(first, pop3proto.Err) and isinstance(second, pop3proto.Err)
    assert first.code == second.code == pop3proto.AUTH
    assert caplog.text.count("authenticator failed") == 2
    assert joined.client.state is State.AUTHORIZATION


def test_session_end_hook_that_raises_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    """A failing on_session_end hook is logged; the session still ends cleanly."""
    seen: list[SessionStats] = []

    def hook(stats: SessionStats) -> None:
        seen.append(stats)
        raise RuntimeError("metrics server down")

    joined = Joined(config=ServerConfig(hostname="test.example", on_session_end=hook))
    with caplog.at_level(logging.ERROR, "pop3proto.server"):
        assert isinstance(joined.one(pop3proto.Quit()), pop3proto.Ok)
    assert joined.closed
    assert [s.reason for s in seen] == ["quit"]
    assert "on_session_end hook failed" in caplog.text


def test_retr_start_cache_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cache of RETR status lines is emptied when full, and the reply is still right."""
    full = {size: pop3proto.MessageStart(f"{size} octets") for size in range(10_000, 14_096)}
    monkeypatch.setattr(_transaction, "_RETR_STARTS", full)
    joined = Joined()
    joined.login()
    events = joined.send(pop3proto.Retr(1))
    assert events[0] == pop3proto.MessageStart(f"{len(MESSAGE)} octets")
    assert list(full) == [len(MESSAGE)]


# ---------------------------------------------------------------------------
# Properties, configuration, addresses
# ---------------------------------------------------------------------------


def test_session_properties_report_what_it_was_given() -> None:
    """The session exposes its engine, idle timeout and loopback verdict."""
    joined = Joined(config=ServerConfig(hostname="h", idle_timeout=42.0), is_loopback=True)
    session = joined.session
    assert session.connection.our_role is pop3proto.SERVER
    assert session.connection.state is State.AUTHORIZATION
    assert session.idle_timeout == 42.0
    assert session.is_loopback is True
    assert Joined(is_loopback=False).session.is_loopback is False


def test_capa_without_any_sasl_mechanism_has_no_sasl_line() -> None:
    """RFC 2449 §6.3: with no mechanism to offer, CAPA leaves SASL out."""
    joined = Joined(config=ServerConfig(hostname="h", sasl_mechanisms=()))
    reply = joined.one(pop3proto.Capa())
    assert isinstance(reply, pop3proto.CapaOk)
    assert "SASL" not in reply.capabilities
    assert reply.capabilities.user


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"login_delay": -1}, "login_delay must be >= 0"),
        ({"greeting": "ready <x@y>"}, "greeting must be printable ASCII without '<'"),
        ({"greeting": "caf\u00e9"}, "greeting must be printable ASCII"),
    ],
)
def test_config_refuses_bad_values(kwargs: dict[str, Any], message: str) -> None:
    """A negative LOGIN-DELAY or a greeting that would break the APOP timestamp is refused."""
    with pytest.raises(ValueError, match=message):
        ServerConfig(**kwargs)


def test_format_peer_of_a_non_ip_address() -> None:
    """A peer that is not (host, port), such as a Unix socket path, is shown as it is."""
    assert format_peer("/run/pop3.sock") == ("", "/run/pop3.sock")
    assert format_peer(("::1", 110, 0, 0)) == ("::1", "[::1]:110")


# ---------------------------------------------------------------------------
# The loop policy
# ---------------------------------------------------------------------------


def test_idle_timeout_in_the_middle_of_auth_sends_no_err_line() -> None:
    """RFC 5034 §4: a timeout while a SASL answer is awaited just closes (an -ERR would be read
    as the AUTH result)."""
    session = ServerSession(
        MemoryBackend({"alice": [MESSAGE]}),
        DictAuthenticator({"alice": PASSWORD}),
        ServerConfig(hostname="h"),
        is_loopback=True,
    )
    loop = serve_session(session)
    greeting = loop.send(None)
    assert isinstance(greeting, Send) and greeting.data.startswith(b"+OK")
    assert isinstance(next(loop), Receive)
    challenge = loop.send(b"AUTH PLAIN\r\n")
    assert challenge == Send(b"+ \r\n")
    assert isinstance(next(loop), Receive)
    with pytest.raises(StopIteration):
        loop.send(None)  # the idle timeout
    assert session.closed
    assert session.stats.reason == "timeout"


def test_end_of_stream_ends_the_loop_without_a_word() -> None:
    """EOF from the client ends the session: no reply, no UPDATE."""
    session = ServerSession(
        MemoryBackend({"alice": [MESSAGE]}), DictAuthenticator({}), ServerConfig(hostname="h")
    )
    loop = serve_session(session)
    assert isinstance(loop.send(None), Send)
    assert isinstance(next(loop), Receive)
    with pytest.raises(StopIteration):
        loop.send(b"")
    assert session.closed

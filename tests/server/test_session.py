"""The I/O-free server session (adapters/server/_session.py), driven with bytes only.

Every test joins a :class:`ServerSession` to a client-role
:class:`pop3proto.Connection`: what the session emits is fed to the client
engine, so each reply is also checked to be valid POP3 for the command it
answers.  No sockets, no threads.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pytest

import pop3proto
from pop3proto import (
    CLIENT,
    NEED_DATA,
    PAUSED,
    Apop,
    Auth,
    Capa,
    CapaOk,
    Command,
    Connection,
    ConnectionClosed,
    Dele,
    Err,
    Event,
    Lang,
    LangOk,
    List,
    ListEntryOk,
    ListOk,
    MessageData,
    MessageEnd,
    MessageStart,
    Noop,
    Ok,
    Pass,
    Quit,
    Retr,
    Rset,
    SaslCancel,
    SaslChallenge,
    SaslResponse,
    Stat,
    State,
    StatOk,
    Stls,
    Top,
    Uidl,
    UidlEntryOk,
    UidlOk,
    User,
    Utf8,
)
from pop3proto.adapters._seam import Close, Send, Sleep, StartTLS
from pop3proto.adapters.mailstore._memory import MemoryBackend
from pop3proto.adapters.mailstore._users import DictAuthenticator, hash_password
from pop3proto.adapters.server._config import (
    ServerConfig,
    SessionStats,
    busy_response,
    is_loopback_address,
)
from pop3proto.adapters.server._penalties import AuthPenalties
from pop3proto.adapters.server._session import _HANDLERS, Action, ServerSession
from tests.helpers import (
    PASSWORD,
    EveryMethodAuthenticator,
    FlakyBackend,
    FlakyMaildrop,
    expected_body,
)

MSG1 = b"Subject: one\r\nFrom: a@example.org\r\n\r\nbody one\r\n"
# LF-only, dot lines, no final newline: sizes must still match RETR octets.
MSG2 = b"Subject: two\n\n.leading dot\n..two dots\nline 2\nline 3\nno newline at end"
MSG3 = b"Subject: three\r\n\r\n" + b"x" * 300 + b"\r\n"


def make_backend(**kwargs: object) -> MemoryBackend:
    return MemoryBackend({"alice": [MSG1, MSG2, MSG3]}, **kwargs)  # type: ignore[arg-type]


def make_auth() -> DictAuthenticator:
    return EveryMethodAuthenticator(
        {
            "alice": PASSWORD,
            "hashed": hash_password(PASSWORD, iterations=1000),
            "scrammed": hash_password(PASSWORD, scheme="SCRAM-SHA-256"),
        }
    )


class Harness:
    """A ServerSession joined to a client Connection."""

    def __init__(
        self,
        backend: MemoryBackend | None = None,
        config: ServerConfig | None = None,
        *,
        auth: DictAuthenticator | None = None,
        tls: bool = False,
        is_loopback: bool = True,
        allow_pipelining: bool = False,
        penalties: AuthPenalties | None = None,
        ip: str = "",
    ) -> None:
        self.backend = backend if backend is not None else make_backend()
        self.session = ServerSession(
            self.backend,
            auth if auth is not None else make_auth(),
            config if config is not None else ServerConfig(hostname="test.example"),
            tls=tls,
            is_loopback=is_loopback,
            peer="192.0.2.1:1234",
            penalties=penalties,
            ip=ip,
        )
        self.client = Connection(CLIENT, tls=tls, allow_unadvertised_pipelining=allow_pipelining)
        self.actions: list[Action] = []
        self.closed = False
        self.tls_requested = False
        #: The seconds of each Sleep action (a failed login's delay).
        self.slept: list[float] = []
        self.client.receive_data(self.session.greeting())
        self.greeting = self.events()[0]

    def events(self) -> list[Event]:
        got: list[Event] = []
        while True:
            event = self.client.next_event()
            if event is NEED_DATA or event is PAUSED:
                return got
            assert isinstance(event, Event)
            got.append(event)
            if isinstance(event, ConnectionClosed):
                return got

    def pump(self, *, feed_client: bool = True) -> list[Event]:
        self.output = bytearray()
        for action in self.session.actions():
            self.actions.append(action)
            if isinstance(action, Send):
                assert not self.closed, "bytes after Close"
                self.output += action.data
                if feed_client:
                    self.client.receive_data(action.data)
            elif isinstance(action, StartTLS):
                self.tls_requested = True
            elif isinstance(action, Sleep):
                assert not self.closed, "a Sleep after Close"
                self.slept.append(action.seconds)
            else:
                assert isinstance(action, Close)
                self.closed = True
                if feed_client:
                    self.client.receive_data(b"")
        return self.events() if feed_client else []

    def exchange(self, data: bytes) -> bytes:
        """Raw bytes in, raw bytes out (the client engine is left out)."""
        self.session.receive(data)
        self.pump(feed_client=False)
        return bytes(self.output)

    def raw(self, data: bytes) -> list[Event]:
        self.session.receive(data)
        return self.pump()

    def send(self, *commands: Event) -> list[Event]:
        data = b"".join(self.client.send(c) for c in commands)
        return self.raw(data)

    def one(self, command: Event) -> Event:
        events = self.send(command)
        if self.closed and events and isinstance(events[-1], ConnectionClosed):
            events.pop()
        assert len(events) == 1, events
        return events[0]

    def login(self, user: str = "alice", password: str = PASSWORD) -> None:
        assert self.one(User(user)) == Ok("send PASS")
        reply = self.one(Pass(password))
        assert isinstance(reply, Ok), reply
        assert self.client.state is State.TRANSACTION

    def retr(self, number: int) -> bytes:
        events = self.send(Retr(number))
        assert isinstance(events[0], MessageStart), events
        assert isinstance(events[-1], MessageEnd)
        return b"".join(e.data for e in events if isinstance(e, MessageData))

    def sasl(self, mechanism: pop3proto.SaslClientMechanism, *, ir: bool = True) -> Event:
        initial = mechanism.initial_response() if ir else None
        events = self.send(Auth(mechanism.name, initial))
        while events and isinstance(events[-1], SaslChallenge):
            events = self.send(SaslResponse(mechanism.respond(events[-1].data)))
        assert len(events) == 1, events
        return events[0]

    def tls_handshake(self) -> None:
        assert self.tls_requested
        self.tls_requested = False
        self.client.tls_established()
        self.session.tls_started()


def code(event: Event) -> str | None:
    assert isinstance(event, (Ok, Err))
    return None if event.code is None else str(event.code)


# ---------------------------------------------------------------------------
# Greeting and helpers
# ---------------------------------------------------------------------------


def test_greeting_has_unique_apop_timestamp() -> None:
    a, b = Harness(), Harness()
    assert a.client.greeting is not None and b.client.greeting is not None
    ts_a, ts_b = a.client.greeting.timestamp, b.client.greeting.timestamp
    assert ts_a and ts_b and ts_a != ts_b
    assert ts_a.endswith("@test.example>")
    assert a.session.timestamp == ts_a


def test_greeting_without_apop() -> None:
    h = Harness(config=ServerConfig(apop=False))
    assert h.client.greeting is not None and h.client.greeting.timestamp is None


def test_greeting_twice_is_an_error() -> None:
    h = Harness()
    with pytest.raises(RuntimeError):
        h.session.greeting()


def test_actions_before_greeting_is_an_error() -> None:
    session = ServerSession(make_backend(), make_auth())
    with pytest.raises(RuntimeError):
        list(session.actions())


def test_busy_response() -> None:
    assert busy_response() == b"-ERR [SYS/TEMP] too many connections\r\n"
    client = Connection(CLIENT)
    client.receive_data(busy_response("go away"))
    event = client.next_event()
    assert isinstance(event, Err) and "go away" in event.text
    assert client.state is State.CLOSED


def test_busy_response_code_is_parsed_by_the_client() -> None:
    client = Connection(CLIENT)
    client.receive_data(busy_response("go away"))
    assert client.next_event() == Err("go away", pop3proto.SYS_TEMP)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", True),
        ("127.9.9.9", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("192.0.2.1", False),
        ("::ffff:192.0.2.1", False),
        ("fe80::1%eth0", False),
        ("localhost", False),
        ("", False),
    ],
)
def test_is_loopback_address(host: str, expected: bool) -> None:
    assert is_loopback_address(host) is expected


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        ServerConfig(sasl_mechanisms=("GSSAPI",))
    with pytest.raises(ValueError):
        ServerConfig(idle_timeout=0)
    with pytest.raises(ValueError):
        ServerConfig(max_bad_commands=0)
    with pytest.raises(ValueError):
        ServerConfig(expire=-1)
    with pytest.raises(ValueError):
        ServerConfig(implementation="bad\ttext")
    assert ServerConfig(sasl_mechanisms=("plain",)).sasl_mechanisms == ("PLAIN",)
    assert ServerConfig().idle_timeout >= 600  # RFC 1939 §3


# ---------------------------------------------------------------------------
# A whole session, every RFC 1939 command
# ---------------------------------------------------------------------------


def test_full_session() -> None:
    h = Harness()
    h.login()
    assert h.session.user == "alice"
    sizes = [len(expected_body(m)) for m in (MSG1, MSG2, MSG3)]
    assert h.one(Stat()) == StatOk(3, sum(sizes))
    listing = h.one(List())
    assert isinstance(listing, ListOk)
    assert dict(listing.sizes) == {1: sizes[0], 2: sizes[1], 3: sizes[2]}
    assert h.one(List(2)) == ListEntryOk(2, sizes[1])
    uidl = h.one(Uidl())
    assert isinstance(uidl, UidlOk) and len(set(uidl.uids.values())) == 3
    assert h.one(Uidl(3)) == UidlEntryOk(3, uidl.uids[3])
    for number, message in enumerate((MSG1, MSG2, MSG3), 1):
        assert h.retr(number) == expected_body(message)
    assert h.one(Noop()) == Ok()
    assert h.one(Dele(1)) == Ok("message 1 deleted")
    reply = h.one(Quit())
    assert isinstance(reply, Ok) and "1 messages deleted" in reply.text
    assert h.events() == [] or h.closed
    assert h.closed and h.session.closed
    assert h.backend.messages("alice") == [MSG2, MSG3]
    assert not h.backend.is_locked("alice")
    assert isinstance(h.actions[-1], Close)


def test_list_sizes_equal_retr_octets() -> None:
    """RFC 1939 §11 / RFC 6856 §2.1: LIST size == octets RETR delivers."""
    odd = [b"", b"\n", b"\r", b"a\rb\nc\r\n", b".\n.\n..\n", b"no newline", b"x\r"]
    backend = MemoryBackend({"alice": [MSG1, MSG2, MSG3, *odd]}, chunk_size=3)
    h = Harness(backend)
    h.login()
    listing = h.one(List())
    assert isinstance(listing, ListOk)
    for number, size in listing.sizes.items():
        assert len(h.retr(number)) == size, number


def test_top() -> None:
    h = Harness()
    h.login()

    def top(number: int, lines: int) -> bytes:
        events = h.send(Top(number, lines))
        assert isinstance(events[0], MessageStart) and isinstance(events[-1], MessageEnd)
        return b"".join(e.data for e in events if isinstance(e, MessageData))

    assert top(2, 0) == b"Subject: two\r\n\r\n"
    assert top(2, 2) == b"Subject: two\r\n\r\n.leading dot\r\n..two dots\r\n"
    assert top(2, 100) == expected_body(MSG2)
    assert top(1, 1) == MSG1


def test_deletion_semantics() -> None:
    h = Harness()
    h.login()
    size1 = len(expected_body(MSG1))
    total = sum(len(expected_body(m)) for m in (MSG1, MSG2, MSG3))
    assert h.one(Dele(1)) == Ok("message 1 deleted")
    # RFC 1939 §5: any reference to a deleted message is an error.
    for command in (Dele(1), Retr(1), Top(1, 0), List(1), Uidl(1)):
        reply = h.one(command)
        assert reply == Err("message already deleted"), command
    assert h.one(Stat()) == StatOk(2, total - size1)
    listing = h.one(List())
    uidl = h.one(Uidl())
    # Numbers never shift: 2 and 3 keep theirs.
    assert isinstance(listing, ListOk) and list(listing.sizes) == [2, 3]
    assert isinstance(uidl, UidlOk) and list(uidl.uids) == [2, 3]
    assert h.retr(2) == expected_body(MSG2)
    reply = h.one(Rset())
    assert isinstance(reply, Ok) and "3 messages" in reply.text
    assert h.one(Stat()) == StatOk(3, total)
    assert h.retr(1) == MSG1
    for bad in (Retr(4), Dele(99), List(4), Top(4, 1), Uidl(4)):
        assert h.one(bad) == Err("no such message")
    h.one(Dele(3))
    h.one(Quit())
    assert h.backend.messages("alice") == [MSG1, MSG2]


def test_rset_then_quit_deletes_nothing() -> None:
    h = Harness()
    h.login()
    h.one(Dele(1))
    h.one(Dele(2))
    h.one(Rset())
    assert h.one(Quit()) == Ok("bye (0 messages deleted)")
    assert len(h.backend.messages("alice")) == 3


@pytest.mark.parametrize("how", ["eof", "connection_lost", "timed_out"])
def test_disconnect_deletes_nothing(how: str) -> None:
    """RFC 1939 §6: only QUIT from TRANSACTION enters UPDATE."""
    h = Harness()
    h.login()
    h.one(Dele(1))
    h.one(Dele(2))
    if how == "eof":
        events = h.raw(b"")
        assert h.closed and events == [ConnectionClosed()]
        assert h.session.stats.reason == "eof"
    elif how == "connection_lost":
        h.session.connection_lost()
        h.session.connection_lost()  # idempotent
        assert list(h.session.actions()) == []
    else:
        actions = h.session.timed_out()
        assert isinstance(actions[-1], Close)
        assert isinstance(actions[0], Send)
        assert actions[0].data == b"-ERR disconnected for inactivity\r\n"
        assert h.session.timed_out() == []
    assert h.session.closed
    assert len(h.backend.messages("alice")) == 3
    assert not h.backend.is_locked("alice")
    # The next session sees the same messages with the same UIDs.
    h2 = Harness(h.backend)
    h2.login()
    assert h2.one(Stat()) == StatOk(3, sum(len(expected_body(m)) for m in (MSG1, MSG2, MSG3)))


def test_quit_in_authorization() -> None:
    h = Harness()
    assert h.one(Quit()) == Ok("bye")
    assert h.closed and h.session.stats.reason == "quit"
    # Anything after QUIT is ignored.
    h.session.receive(b"NOOP\r\n")
    assert list(h.session.actions()) == []


def test_commands_pipelined_after_quit_are_not_run() -> None:
    h = Harness()
    h.login()
    out = h.exchange(b"DELE 1\r\nQUIT\r\nDELE 2\r\nQUIT\r\n")
    assert out == b"+OK message 1 deleted\r\n+OK bye (1 messages deleted)\r\n"
    assert h.closed
    assert h.backend.messages("alice") == [MSG2, MSG3]


def test_quit_partial_failure() -> None:
    backend = FlakyBackend(FlakyMaildrop(commit_ok=False))
    h = Harness(backend)  # type: ignore[arg-type]
    h.login()
    h.one(Dele(1))
    reply = h.one(Quit())
    assert reply == Err("some deleted messages not removed", pop3proto.SYS_TEMP)
    assert backend.maildrop.committed == {0}
    assert backend.maildrop.closed and h.closed


def test_maildrop_open_error() -> None:
    h = Harness(FlakyBackend(error=True))  # type: ignore[arg-type]
    h.one(User("alice"))
    reply = h.one(Pass(PASSWORD))
    assert reply == Err("unable to open maildrop", pop3proto.SYS_TEMP)
    assert h.client.state is State.AUTHORIZATION


def test_message_unreadable_before_start() -> None:
    h = Harness(FlakyBackend())  # type: ignore[arg-type]
    h.login()
    assert h.one(Retr(2)) == Err("unable to read message", pop3proto.SYS_TEMP)
    assert not h.closed


def test_message_read_error_mid_body_drops_connection() -> None:
    maildrop = FlakyMaildrop(fail_after=3)
    h = Harness(FlakyBackend(maildrop))  # type: ignore[arg-type]
    h.login()
    h.one(Dele(2))
    h.session.receive(h.client.send(Retr(1)))
    for _action in h.session.actions():
        pass
    assert h.session.closed and h.session.stats.reason == "I/O error"
    assert maildrop.committed is None and maildrop.closed
    assert maildrop.stream_closed == 1


def test_body_is_streamed_lazily() -> None:
    """Each chunk is read only when the adapter pulls the next action."""
    maildrop = FlakyMaildrop()
    h = Harness(FlakyBackend(maildrop), ServerConfig(chunk_size=40))  # type: ignore[arg-type]
    h.login()
    h.session.receive(h.client.send(Retr(1)))
    actions = h.session.actions()
    first = next(actions)
    assert isinstance(first, Send) and first.data.startswith(b"+OK")
    assert maildrop.chunks_read == 1
    pieces = [next(actions) for _ in range(3)]  # one 100-octet chunk in 40-octet pieces
    assert [len(p.data) for p in pieces if isinstance(p, Send)] == [40, 40, 20]
    assert maildrop.chunks_read == 1
    # An adapter that stops pulling (connection dropped) closes the stream.
    actions.close()  # type: ignore[attr-defined]
    assert maildrop.stream_closed == 1
    h.session.connection_lost()
    assert maildrop.closed and maildrop.committed is None


# ---------------------------------------------------------------------------
# Locking
# ---------------------------------------------------------------------------


def test_in_use() -> None:
    backend = make_backend()
    first = Harness(backend)
    first.login()
    second = Harness(backend)
    second.one(User("alice"))
    reply = second.one(Pass(PASSWORD))
    assert reply == Err("maildrop already locked", pop3proto.IN_USE)
    assert second.client.state is State.AUTHORIZATION
    first.one(Quit())
    second.login()


# ---------------------------------------------------------------------------
# Authentication
# ---------------------------------------------------------------------------


def test_wrong_password_and_unknown_user_look_the_same() -> None:
    h = Harness(config=ServerConfig(max_auth_failures=10))
    assert h.one(User("nobody")) == Ok("send PASS")  # no user enumeration
    unknown = h.one(Pass(PASSWORD))
    h.one(User("alice"))
    wrong = h.one(Pass("wrong"))
    assert unknown == wrong == Err("authentication failed", pop3proto.AUTH)
    assert h.client.state is State.AUTHORIZATION
    h.login()


def test_hashed_users_can_log_in_with_user_pass() -> None:
    for user in ("hashed", "scrammed"):
        h = Harness()
        h.login(user)


def test_auth_failure_limit_closes() -> None:
    h = Harness(config=ServerConfig(max_auth_failures=2))
    h.one(User("alice"))
    h.one(Pass("nope"))
    assert not h.closed
    h.one(User("alice"))
    events = h.send(Pass("nope"))
    assert events[0] == Err("authentication failed", pop3proto.AUTH)
    assert h.closed and h.session.stats.reason == "too many authentication failures"
    assert h.session.stats.auth_failures == 2


def test_apop() -> None:
    h = Harness(config=ServerConfig(max_auth_failures=10))
    ts = h.session.timestamp
    assert ts is not None
    assert h.one(Apop("alice", pop3proto.apop_digest(ts, "wrong"))) == Err(
        "authentication failed", pop3proto.AUTH
    )
    assert h.one(Apop("nobody", pop3proto.apop_digest(ts, PASSWORD))) == Err(
        "authentication failed", pop3proto.AUTH
    )
    # Hashed users have no shared secret.
    assert isinstance(h.one(Apop("hashed", pop3proto.apop_digest(ts, PASSWORD))), Err)
    reply = h.one(Apop("alice", pop3proto.apop_digest(ts, PASSWORD)))
    assert isinstance(reply, Ok) and h.client.state is State.TRANSACTION


def test_apop_works_off_loopback() -> None:
    """APOP never sends the secret, so it is not a plaintext method."""
    h = Harness(is_loopback=False)
    ts = h.session.timestamp
    assert ts is not None
    assert isinstance(h.one(Apop("alice", pop3proto.apop_digest(ts, PASSWORD))), Ok)


def test_apop_refused_when_disabled() -> None:
    h = Harness(config=ServerConfig(apop=False))
    h.session.receive(b"APOP alice " + b"0" * 32 + b"\r\n")
    actions = list(h.session.actions())
    assert actions == [Send(b"-ERR APOP is not available\r\n")]


def client_mechanisms(
    user: str = "alice", password: str = PASSWORD
) -> list[pop3proto.SaslClientMechanism]:
    return [
        pop3proto.PlainClient(user, password),
        pop3proto.LoginClient(user, password),
        pop3proto.CramMD5Client(user, password),
        pop3proto.ScramClient(user, password),
    ]


@pytest.mark.parametrize("index", range(4))
@pytest.mark.parametrize("ir", [True, False])
def test_sasl_success(index: int, ir: bool) -> None:
    h = Harness()
    mechanism = client_mechanisms()[index]
    reply = h.sasl(mechanism, ir=ir)
    assert isinstance(reply, Ok), reply
    assert h.client.state is State.TRANSACTION
    if mechanism.name != "LOGIN" or not ir:
        assert mechanism.complete
    assert h.one(Stat()) == StatOk(3, sum(len(expected_body(m)) for m in (MSG1, MSG2, MSG3)))


@pytest.mark.parametrize("index", range(4))
def test_sasl_wrong_password(index: int) -> None:
    h = Harness()
    mechanism = client_mechanisms(password="wrong")[index]
    reply = h.sasl(mechanism, ir=mechanism.name not in ("CRAM-MD5", "LOGIN"))
    assert reply == Err("authentication failed", pop3proto.AUTH)
    assert h.client.state is State.AUTHORIZATION
    assert not h.backend.is_locked("alice")


@pytest.mark.parametrize("index", range(4))
def test_sasl_unknown_user(index: int) -> None:
    h = Harness()
    mechanism = client_mechanisms(user="nobody")[index]
    reply = h.sasl(mechanism, ir=mechanism.name not in ("CRAM-MD5", "LOGIN"))
    assert reply == Err("authentication failed", pop3proto.AUTH)


def test_scram_with_stored_keys() -> None:
    h = Harness()
    assert isinstance(h.sasl(pop3proto.ScramClient("scrammed", PASSWORD)), Ok)
    h2 = Harness()
    # Only a PBKDF2 hash: SCRAM and CRAM-MD5 cannot work, PLAIN can.
    assert isinstance(h2.sasl(pop3proto.ScramClient("hashed", PASSWORD)), Err)
    assert isinstance(h2.sasl(pop3proto.CramMD5Client("hashed", PASSWORD), ir=False), Err)
    assert isinstance(h2.sasl(pop3proto.PlainClient("hashed", PASSWORD)), Ok)


def test_sasl_in_use() -> None:
    backend = make_backend()
    Harness(backend).login()
    h = Harness(backend)
    reply = h.sasl(pop3proto.ScramClient("alice", PASSWORD))
    assert reply == Err("maildrop already locked", pop3proto.IN_USE)
    assert h.client.state is State.AUTHORIZATION


def test_server_first_mechanism_refuses_initial_response() -> None:
    """RFC 5034 §4."""
    h = Harness()
    assert h.one(Auth("CRAM-MD5", b"alice 0123")) == Err(
        "CRAM-MD5 does not take an initial response"
    )
    assert h.client.state is State.AUTHORIZATION


def test_sasl_cancel_and_bad_base64() -> None:
    h = Harness()
    events = h.send(Auth("LOGIN"))
    assert events == [SaslChallenge(b"Username:")]
    assert h.one(SaslCancel()) == Err("authentication cancelled")
    assert h.client.state is State.AUTHORIZATION
    # A line that is not base64 ends the exchange with -ERR too.
    h.send(Auth("LOGIN"))
    out = h.exchange(b"not base64!\r\n")
    assert out.startswith(b"-ERR ")
    assert h.session.state is State.AUTHORIZATION
    assert h.exchange(b"USER alice\r\n") == b"+OK send PASS\r\n"


def test_unsupported_mechanism() -> None:
    h = Harness(config=ServerConfig(sasl_mechanisms=("SCRAM-SHA-256",)))
    assert h.one(Auth("PLAIN", b"\0alice\0" + PASSWORD.encode())) == Err(
        "unsupported authentication mechanism"
    )
    assert h.one(Auth("GSSAPI")) == Err("unsupported authentication mechanism")


def test_plain_authzid() -> None:
    h = Harness()
    assert isinstance(h.sasl(pop3proto.PlainClient("alice", PASSWORD, authzid="bob")), Err)
    assert isinstance(h.sasl(pop3proto.PlainClient("alice", PASSWORD, authzid="alice")), Ok)


def test_eof_during_sasl() -> None:
    h = Harness()
    h.send(Auth("LOGIN"))
    # No -ERR can be sent in the middle of an exchange: just close.
    actions = h.session.timed_out()
    assert actions == [Close()]


# ---------------------------------------------------------------------------
# Plaintext policy, CAPA and STLS
# ---------------------------------------------------------------------------


def capa(h: Harness) -> pop3proto.Capabilities:
    reply = h.one(Capa())
    assert isinstance(reply, CapaOk)
    return reply.capabilities


def test_plaintext_refused_off_loopback() -> None:
    h = Harness(is_loopback=False)
    refused = Err("plaintext authentication disallowed without TLS", pop3proto.AUTH)
    assert h.one(User("alice")) == refused
    assert h.one(Auth("PLAIN", b"\0alice\0" + PASSWORD.encode())) == refused
    assert h.one(Auth("LOGIN")) == refused
    caps = capa(h)
    assert not caps.user
    assert caps.sasl == ("SCRAM-SHA-256", "CRAM-MD5")
    assert not caps.stls  # no TLS context
    # Non-plaintext mechanisms still work.
    assert isinstance(h.sasl(pop3proto.ScramClient("alice", PASSWORD)), Ok)


def test_plaintext_policy_overrides() -> None:
    h = Harness(config=ServerConfig(allow_plaintext_auth=True), is_loopback=False)
    assert capa(h).user
    h.login()
    h = Harness(config=ServerConfig(allow_plaintext_auth=False), is_loopback=True)
    assert not capa(h).user
    assert isinstance(h.one(User("alice")), Err)


def test_capa_truthful_before_and_after_stls() -> None:
    config = ServerConfig(tls_available=True, hostname="test.example")
    h = Harness(config=config, is_loopback=False)
    caps = capa(h)
    assert caps.stls and not caps.user and "PLAIN" not in caps.sasl
    for tag in ("TOP", "UIDL", "PIPELINING", "RESP-CODES", "AUTH-RESP-CODE", "UTF8", "LANG"):
        assert tag in caps, tag
    assert caps.get("IMPLEMENTATION") == ("pop3proto", pop3proto.__version__)
    events = h.send(Stls())
    assert events == [Ok("Begin TLS negotiation now")]
    assert isinstance(h.actions[-1], StartTLS)
    assert h.client.state is State.TLS_PENDING
    h.tls_handshake()
    assert h.session.tls and h.session.stats.tls
    caps = capa(h)
    assert not caps.stls and caps.user
    assert caps.sasl == ("SCRAM-SHA-256", "CRAM-MD5", "PLAIN", "LOGIN")
    assert h.exchange(b"STLS\r\n").startswith(b"-ERR ")  # the engine refuses a second STLS
    h.login()
    caps = capa(h)
    # AUTHORIZATION capabilities are announced in TRANSACTION too (RFC 2449 §5).
    assert caps.user and caps.sasl and not caps.stls


def test_stls_not_available() -> None:
    h = Harness()
    assert not capa(h).stls
    assert h.one(Stls()) == Err("TLS not available")
    assert h.client.state is State.AUTHORIZATION


def test_implicit_tls() -> None:
    h = Harness(config=ServerConfig(tls_available=True), tls=True, is_loopback=False)
    caps = capa(h)
    assert not caps.stls and caps.user
    assert h.exchange(b"STLS\r\n") == b"-ERR TLS is already active\r\n"
    h.login()


def test_stls_injection_is_not_executed() -> None:
    """CONFORMANCE.md §8.2: bytes pipelined after STLS never run."""
    h = Harness(config=ServerConfig(tls_available=True), is_loopback=False)
    h.raw(b"STLS\r\nUSER alice\r\nPASS " + PASSWORD.encode() + b"\r\n")
    assert h.closed and not h.tls_requested
    assert h.session.stats.reason == "protocol error"
    assert h.session.user is None


def test_plaintext_before_handshake_closes() -> None:
    h = Harness(config=ServerConfig(tls_available=True), is_loopback=False)
    h.send(Stls())
    h.session.receive(b"USER alice\r\n")
    h.session.tls_started()
    assert h.session.closed and h.session.stats.reason == "protocol error"


def test_capa_extensions_when_configured() -> None:
    config = ServerConfig(expire=0, login_delay=900, implementation=None)
    caps = capa(Harness(config=config))
    assert caps.expire == 0 and caps.login_delay == 900
    assert "IMPLEMENTATION" not in caps
    assert capa(Harness(config=ServerConfig(expire="NEVER"))).expire_never
    caps = capa(Harness())
    assert caps.expire is None and caps.login_delay is None


def test_expire_zero_removes_retrieved_messages_at_update_only() -> None:
    config = ServerConfig(expire=0)
    h = Harness(config=config)
    h.login()
    h.retr(2)
    h.session.connection_lost()
    assert len(h.backend.messages("alice")) == 3
    h = Harness(h.backend, config)
    h.login()
    h.retr(2)
    h.send(Top(3, 0))  # TOP is not a retrieval
    h.one(Quit())
    assert h.backend.messages("alice") == [MSG1, MSG3]


def test_utf8_and_lang() -> None:
    h = Harness(config=ServerConfig(tls_available=True), is_loopback=False)
    assert h.one(Utf8()) == Ok("UTF8 enabled")
    assert h.client.utf8
    assert not capa(h).stls  # RFC 6856 §2.1: no STLS after UTF8
    langs = h.one(Lang())
    assert isinstance(langs, LangOk) and langs.languages == (("en", "English"),)
    assert h.one(Lang("de")) == Err("unsupported language")
    assert h.one(Lang("en-US")) == Ok("en Language unchanged")
    assert h.one(Lang("*")) == Ok("en Language unchanged")


# ---------------------------------------------------------------------------
# Bad commands, pipelining, protocol errors
# ---------------------------------------------------------------------------


def test_bad_commands_get_err_and_a_limit() -> None:
    h = Harness(config=ServerConfig(max_bad_commands=3))
    assert h.exchange(b"FOO\r\n").startswith(b"-ERR ")
    assert h.exchange(b"STAT\r\n") == b"-ERR STAT is not allowed in the AUTHORIZATION state\r\n"
    assert not h.closed
    out = h.exchange(b"RETR 1\r\n")
    assert out.startswith(b"-ERR ") and b"too many bad commands" in out
    assert out.count(b"\r\n") == 1
    assert h.closed and h.session.stats.reason == "too many bad commands"


def test_every_bad_command_is_answered() -> None:
    h = Harness()
    lines = [b"", b"FOO", b"LIST", b"PASS x", b"USER", b"TOP 1", b"X" * 300, b"RETR 1"]
    out = h.exchange(b"".join(line + b"\r\n" for line in lines))
    replies = out.split(b"\r\n")[:-1]
    assert len(replies) == len(lines)
    assert all(r.startswith(b"-ERR ") for r in replies)
    assert h.session.stats.commands == len(lines)
    assert not h.closed


def test_pipelined_input_is_processed_in_order() -> None:
    h = Harness()
    assert capa(h).pipelining
    batch: list[Command] = [
        User("alice"),
        Pass(PASSWORD),
        Stat(),
        List(),
        Retr(1),
        Dele(1),
        Retr(1),
        Uidl(2),
        Quit(),
    ]
    events = h.send(*batch)
    kinds = [type(e).__name__ for e in events if not isinstance(e, MessageData)]
    assert kinds == [
        "Ok",
        "Ok",
        "StatOk",
        "ListOk",
        "MessageStart",
        "MessageEnd",
        "Ok",
        "Err",
        "UidlEntryOk",
        "Ok",
        "ConnectionClosed",
    ]
    assert h.backend.messages("alice") == [MSG2, MSG3]


def test_pipelined_failure_mid_batch() -> None:
    """RFC 2449 §6.6: a failed PASS leaves STAT to be answered in AUTHORIZATION."""
    h = Harness(allow_pipelining=True)
    events = h.send(User("alice"), Pass("wrong"), Stat())
    assert [type(e) for e in events] == [Ok, Err, Err]


def test_input_split_byte_by_byte() -> None:
    h = Harness()
    data = f"USER alice\r\nPASS {PASSWORD}\r\nRETR 2\r\nQUIT\r\n".encode()
    out = b""
    for i in range(len(data)):
        out += h.exchange(data[i : i + 1])
    whole = Harness()
    assert out.replace(b"\r\n", b"\n").count(b"\n") > 10
    assert out == whole.exchange(data)
    assert expected_body(MSG2).replace(b"\n.", b"\n..") in out
    assert h.closed


def test_overlong_sasl_line_closes() -> None:
    h = Harness()
    h.send(Auth("LOGIN"))
    h.raw(b"A" * 70000)
    assert h.closed and h.session.stats.reason == "protocol error"


# ---------------------------------------------------------------------------
# The dispatch table
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Novel(Command):
    """A command event the session has no handler for."""


class QuietNoop(Noop):
    """A subclass of an event the session handles."""


def hand_over(monkeypatch: pytest.MonkeyPatch, kind: type[Event], instead: Event) -> None:
    """Make the engine hand out *instead* wherever it would hand out a *kind*."""
    real = Connection.next_event

    def next_event(self: Connection) -> object:
        event = real(self)
        return instead if type(event) is kind else event

    monkeypatch.setattr(Connection, "next_event", next_event)


def test_every_command_class_has_a_handler() -> None:
    """Every command class the engine hands a server has an entry in the table."""
    commands = {
        cls
        for cls in (getattr(pop3proto, name) for name in pop3proto.__all__)
        if isinstance(cls, type) and issubclass(cls, Command)
    }
    # A server gets Extension only for the keywords ServerConfig.commands
    # declares (else BadCommand); it has its handler too.
    assert commands - set(_HANDLERS) == {Command}
    assert {ConnectionClosed, SaslResponse, SaslCancel} <= set(_HANDLERS)


def test_command_without_a_handler_is_not_implemented(monkeypatch: pytest.MonkeyPatch) -> None:
    """A command with no entry in the table gets -ERR command not implemented."""
    h = Harness()
    h.login()
    hand_over(monkeypatch, Noop, Novel())
    assert h.one(Noop()) == Err("command not implemented")
    assert not h.closed and h.session.stats.commands == 3
    monkeypatch.undo()
    assert h.one(Stat()) == StatOk(3, sum(len(expected_body(m)) for m in (MSG1, MSG2, MSG3)))


def test_event_subclass_is_answered_as_its_base(monkeypatch: pytest.MonkeyPatch) -> None:
    """An event of a subclass is answered by its nearest base class's handler."""
    h = Harness()
    h.login()
    hand_over(monkeypatch, Noop, QuietNoop())
    assert h.one(Noop()) == Ok()


# ---------------------------------------------------------------------------
# Logging and the session-end hook
# ---------------------------------------------------------------------------


def test_session_end_log_and_hook(caplog: pytest.LogCaptureFixture) -> None:
    ended: list[SessionStats] = []
    h = Harness(config=ServerConfig(on_session_end=ended.append))
    with caplog.at_level(logging.INFO, logger="pop3proto.server"):
        h.one(User("alice"))
        h.one(Pass("hunter2-wrong"))
        h.sasl(pop3proto.PlainClient("alice", "plain-secret-wrong"))
        h.login()
        h.retr(1)
        h.one(Dele(1))
        h.one(Quit())
    assert len(ended) == 1
    stats = ended[0]
    assert stats.user == "alice" and stats.reason == "quit"
    assert stats.retrieved == 1 and stats.deleted == 1 and stats.auth_failures == 2
    assert stats.commands == 8 and stats.bytes_sent > len(MSG1)
    lines = [r.getMessage() for r in caplog.records if r.name == "pop3proto.server"]
    assert len([line for line in lines if line.startswith("session end")]) == 1
    text = "\n".join(lines)
    assert "user=alice" in text and "reason=quit" in text and "deleted=1" in text
    for secret in (PASSWORD, "hunter2", "plain-secret"):
        assert secret not in text


def test_tls_requested_is_last_action() -> None:
    h = Harness(config=ServerConfig(tls_available=True))
    h.session.receive(b"STLS\r\n")
    actions = list(h.session.actions())
    assert [type(a) for a in actions] == [Send, StartTLS]
    assert h.session.state is State.TLS_PENDING


def test_last_is_refused_as_not_implemented() -> None:
    """LAST (RFC 1081, removed by RFC 1725) gets -ERR; the session goes on."""
    h = Harness()
    h.login()
    assert h.one(pop3proto.Last()) == Err("command not implemented")
    assert not h.closed
    assert h.one(Stat()) == StatOk(3, sum(len(expected_body(m)) for m in (MSG1, MSG2, MSG3)))

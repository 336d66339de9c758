"""ClientCore, driven without sockets.

:class:`MemoryRunner` performs a core operation's requests against a
:class:`~tests.helpers.FakeSession` in memory, delivering the server's bytes in
small chunks so that every reply is split at odd places, and records what the
client wrote.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

import pop3proto
from pop3proto import State
from pop3proto.adapters._seam import Deliver, Receive, Send, StartTLS
from pop3proto.adapters.client._base import is_loopback
from pop3proto.adapters.client._core import ClientCore, MailboxStatus
from pop3proto.adapters.client._errors import (
    AuthenticationFailed,
    CommandFailed,
    ConnectionLost,
    InsecureAuthenticationRefused,
    LoginDelay,
    MailboxInUse,
    PermanentFailure,
    POP3Error,
    ProtocolViolation,
    TemporaryFailure,
    TLSUnavailable,
    raise_for_err,
)
from pop3proto.adapters.client._mechanisms import (
    LOGIN_METHODS,
    LOGIN_PREFERENCE,
    SAFE_WITHOUT_TLS,
)
from tests.helpers import (
    FAKE_MESSAGES,
    GREETING_TEXT,
    PASSWORD,
    FakeConfig,
    FakeSession,
    OperationRunner,
    expected_body,
)

# ---------------------------------------------------------------------------
# An in-memory runner
# ---------------------------------------------------------------------------


class MemoryRunner(OperationRunner):
    """Performs a core's requests against a :class:`FakeSession` in memory.

    The server's bytes reach the client *chunk* octets at a time.  Records
    every Send (``sends``), the most commands ever outstanding at once, and
    the requests seen.
    """

    def __init__(self, session: FakeSession, core: ClientCore, *, chunk: int = 5) -> None:
        self.session = session
        self.core = core
        self.chunk = chunk
        self.to_client = bytearray(session.greeting())
        self.sends: list[bytes] = []
        self.max_outstanding = 0
        self.kinds: list[str] = []

    def perform(self, request: Any, sink: Callable[[bytes], object] | None) -> bytes | None:
        self.kinds.append(type(request).__name__)
        if isinstance(request, Send):
            self.sends.append(request.data)
            self.max_outstanding = max(self.max_outstanding, len(self.core.conn.outstanding))
            for piece in self.session.receive(request.data):
                self.to_client += piece
            return None
        if isinstance(request, Receive):
            if self.to_client:
                data = bytes(self.to_client[: self.chunk])
                del self.to_client[: self.chunk]
                return data
            if self.session.closing:
                return b""
            raise AssertionError("the client waits for a reply the server will never send")
        if isinstance(request, StartTLS):
            self.session.tls_established()
            return None
        assert isinstance(request, Deliver)
        assert sink is not None
        sink(request.data)
        return None

    def sent_commands(self) -> list[bytes]:
        return [line for data in self.sends for line in data.split(b"\r\n") if line]


def connect(
    config: FakeConfig | None = None,
    *,
    host: str = "pop.example.org",
    tls: bool = True,
    chunk: int = 5,
    **core_kwargs: Any,
) -> tuple[ClientCore, MemoryRunner, FakeSession]:
    """A core that has read the greeting of a fresh fake session."""
    config = config or FakeConfig()
    config.implicit_tls = tls
    session = FakeSession(config)
    core = ClientCore(host, tls=tls, **core_kwargs)
    runner = MemoryRunner(session, core, chunk=chunk)
    greeting = runner.run(core.greet())
    assert greeting == pop3proto.Greeting(config.greeting)
    return core, runner, session


def logged_in(
    config: FakeConfig | None = None, **kwargs: Any
) -> tuple[ClientCore, MemoryRunner, FakeSession]:
    core, runner, session = connect(config, **kwargs)
    runner.run(core.login("alice", PASSWORD))
    assert core.state is State.TRANSACTION
    return core, runner, session


# ---------------------------------------------------------------------------
# Login method selection
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sasl", "greeting", "expected"),
    [
        (LOGIN_PREFERENCE, GREETING_TEXT, "SCRAM-SHA-256"),
        (("PLAIN", "SCRAM-SHA-1", "LOGIN"), GREETING_TEXT, "SCRAM-SHA-1"),
        (("LOGIN", "CRAM-MD5", "PLAIN"), GREETING_TEXT, "CRAM-MD5"),
        (("LOGIN", "PLAIN"), GREETING_TEXT, "PLAIN"),
        (("LOGIN",), GREETING_TEXT, "LOGIN"),
        ((), GREETING_TEXT, "APOP"),
        ((), "POP3 ready", "USER"),
        ((), "two stamps <a@b> <c@d>", "USER"),
    ],
)
def test_login_picks_the_strongest_method(
    sasl: tuple[str, ...], greeting: str, expected: str
) -> None:
    core, runner, session = connect(FakeConfig(sasl=sasl, greeting=greeting))
    assert runner.run(core.login("alice", PASSWORD)) == expected
    assert core.state is State.TRANSACTION
    assert session.authenticated == "alice"
    assert session.auth_attempts == 1
    # CAPA first, then exactly one login method.
    assert isinstance(session.commands[0], pop3proto.Capa)


def test_scram_sends_the_initial_response_on_the_auth_line() -> None:
    core, runner, session = connect(FakeConfig(sasl=("SCRAM-SHA-256",)))
    runner.run(core.login("alice", PASSWORD))
    auth = session.commands[1]
    assert isinstance(auth, pop3proto.Auth)
    assert auth.initial_response is not None and auth.initial_response.startswith(b"n,,n=alice")


def test_without_capa_the_initial_response_waits_for_the_empty_challenge() -> None:
    core, runner, session = connect(FakeConfig(capa=False, sasl=("PLAIN",)))
    assert runner.run(core.login("alice", PASSWORD, mechanism="PLAIN")) == "PLAIN"
    auth = session.commands[1]
    assert auth == pop3proto.Auth("PLAIN", None)  # RFC 5034 §4: no SASL capability seen


def test_capa_error_falls_back_to_apop_then_user() -> None:
    core, runner, _ = connect(FakeConfig(capa=False))
    assert runner.run(core.login("alice", PASSWORD)) == "APOP"
    core, runner, _ = connect(FakeConfig(capa=False, greeting="hi"))
    assert runner.run(core.login("alice", PASSWORD)) == "USER"
    assert core.known_capabilities is None


def test_explicit_mechanism_is_used_even_if_weaker() -> None:
    core, runner, session = connect()
    assert runner.run(core.login("alice", PASSWORD, mechanism="login")) == "LOGIN"
    assert [type(c).__name__ for c in session.commands[:2]] == ["Capa", "Auth"]
    with pytest.raises(ValueError, match="unknown login method"):
        runner.run(connect()[0].login("alice", PASSWORD, mechanism="GSSAPI"))
    for token_mechanism in ("XOAUTH2", "oauthbearer"):
        with pytest.raises(ValueError, match=r"OAuth 2\.0 token, not a password; use login_oauth2"):
            runner.run(connect()[0].login("alice", PASSWORD, mechanism=token_mechanism))


def test_login_facts_agree() -> None:
    """fetch --auth offers the methods login() can force; the TLS-free ones are among them."""
    assert sorted(LOGIN_METHODS) == sorted({"USER", "APOP", *LOGIN_PREFERENCE})
    assert SAFE_WITHOUT_TLS.issubset(LOGIN_PREFERENCE)


def test_login_methods_is_pure() -> None:
    core, runner, session = connect(tls=False, host="pop.example.org")
    caps = runner.run(core.capabilities())
    assert core.login_methods(caps) == ["SCRAM-SHA-256", "SCRAM-SHA-1", "CRAM-MD5"]
    assert core.login_methods(caps, allow_insecure=True) == [*LOGIN_PREFERENCE, "APOP", "USER"]
    assert len(session.commands) == 1


# ---------------------------------------------------------------------------
# Refusing to expose passwords
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("sasl", [("PLAIN", "LOGIN"), ()])
def test_insecure_password_methods_are_refused_before_sending(sasl: tuple[str, ...]) -> None:
    core, runner, _session = connect(FakeConfig(sasl=sasl), tls=False)
    sent_before = list(runner.sends)
    with pytest.raises(InsecureAuthenticationRefused, match="unencrypted"):
        runner.run(core.login("alice", PASSWORD))
    # Only CAPA went out: no USER, PASS, APOP or AUTH.
    assert runner.sends[len(sent_before) :] == [b"CAPA\r\n"]
    assert all(PASSWORD.encode() not in data for data in runner.sends)
    assert core.state is State.AUTHORIZATION  # still usable
    assert runner.run(core.login("alice", PASSWORD, allow_insecure=True)) in ("PLAIN", "APOP")


def test_challenge_response_methods_are_allowed_without_tls() -> None:
    core, runner, _ = connect(FakeConfig(sasl=("PLAIN", "CRAM-MD5")), tls=False)
    assert runner.run(core.login("alice", PASSWORD)) == "CRAM-MD5"
    assert all(PASSWORD.encode() not in data for data in runner.sends)


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN", "USER", "APOP"])
def test_explicit_weak_mechanism_is_refused_without_tls(mechanism: str) -> None:
    core, runner, session = connect(tls=False)
    with pytest.raises(InsecureAuthenticationRefused):
        runner.run(core.login("alice", PASSWORD, mechanism=mechanism))
    assert session.auth_attempts == 0


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "[::1]", "127.9.9.9"])
def test_loopback_counts_as_secure(host: str) -> None:
    core, runner, _ = connect(FakeConfig(sasl=("PLAIN",)), tls=False, host=host)
    assert core.secure
    assert runner.run(core.login("alice", PASSWORD)) == "PLAIN"


def test_peer_address_overrides_the_host_name() -> None:
    core, runner, _ = connect(
        FakeConfig(sasl=("PLAIN",)), tls=False, host="localhost", loopback=False
    )
    with pytest.raises(InsecureAuthenticationRefused):
        runner.run(core.login("alice", PASSWORD))


def test_bearer_tokens_are_passwords_too() -> None:
    core, runner, _ = connect(tls=False)
    with pytest.raises(InsecureAuthenticationRefused):
        runner.run(core.authenticate(pop3proto.XOAuth2Client("alice", "token")))


# ---------------------------------------------------------------------------
# Authentication failures
# ---------------------------------------------------------------------------


def test_auth_code_goes_straight_to_a_password_method_then_stops() -> None:
    # [AUTH] to SCRAM-SHA-256 may mean "cannot verify SCRAM for this user":
    # the next try is PLAIN (skipping SCRAM-SHA-1, CRAM-MD5), whose [AUTH]
    # is the verdict.  Two failed logins, not five.
    core, runner, session = connect()
    with pytest.raises(AuthenticationFailed) as info:
        runner.run(core.login("alice", "wrong"))
    assert info.value.code == pop3proto.AUTH
    assert session.auth_attempts == 2
    assert [c.mechanism for c in session.commands if isinstance(c, pop3proto.Auth)] == [
        "SCRAM-SHA-256",
        "PLAIN",
    ]
    assert "tried SCRAM-SHA-256, PLAIN" in str(info.value)
    assert "wrong" not in str(info.value)


def test_auth_code_to_a_password_method_is_a_verdict() -> None:
    core, runner, session = connect(FakeConfig(sasl=("PLAIN", "LOGIN")))
    with pytest.raises(AuthenticationFailed) as info:
        runner.run(core.login("alice", "wrong"))
    assert session.auth_attempts == 1
    assert "tried" not in str(info.value)  # one method: the server's own words


def test_auth_code_without_a_password_method_left_is_raised() -> None:
    # Only challenge-response methods on offer: nothing can give a verdict,
    # so the first [AUTH] is raised, naming what was tried.
    config = FakeConfig(sasl=("SCRAM-SHA-256", "CRAM-MD5"), user_command=False, greeting="hi")
    core, runner, session = connect(config)
    with pytest.raises(AuthenticationFailed) as info:
        runner.run(core.login("alice", "wrong"))
    assert session.auth_attempts == 1
    assert info.value.code == pop3proto.AUTH


def test_hashed_store_login_falls_back_to_plain(monkeypatch: pytest.MonkeyPatch) -> None:
    # A server that advertises SCRAM but cannot verify it answers [AUTH]:
    # the right password then works with PLAIN.
    core, runner, session = connect(FakeConfig(sasl=("SCRAM-SHA-256", "PLAIN")))
    monkeypatch.setattr(session, "_mechanism", _failing_scram(session._mechanism))
    assert runner.run(core.login("alice", PASSWORD)) == "PLAIN"
    assert session.auth_attempts == 2


def test_plain_err_falls_back_to_the_next_method() -> None:
    # No code: perhaps the mechanism is not set up for the account.
    core, runner, session = connect(FakeConfig(auth_error="Authentication failed"))
    with pytest.raises(AuthenticationFailed) as info:
        runner.run(core.login("alice", "wrong"))
    assert session.auth_attempts == len(LOGIN_PREFERENCE) + 2  # + APOP + USER/PASS
    assert info.value.response == pop3proto.Err("Authentication failed")


def test_fallback_reaches_a_working_method(monkeypatch: pytest.MonkeyPatch) -> None:
    config = FakeConfig(auth_error="nope", sasl=("SCRAM-SHA-256", "PLAIN"))
    core, runner, session = connect(config)
    # SCRAM "fails" for this account, PLAIN works.
    monkeypatch.setattr(session, "_mechanism", _failing_scram(session._mechanism))
    assert runner.run(core.login("alice", PASSWORD)) == "PLAIN"
    assert session.auth_attempts == 2


def _failing_scram(
    original: Callable[[str], pop3proto.SaslServerMechanism],
) -> Callable[[str], pop3proto.SaslServerMechanism]:
    def make(name: str) -> pop3proto.SaslServerMechanism:
        if name.startswith("SCRAM"):
            return pop3proto.PlainServer(lambda u, p: False)
        return original(name)

    return make


def test_server_closing_after_failed_pass_is_authentication_failed() -> None:
    config = FakeConfig(sasl=(), greeting="hi", auth_error="bad", close_after_auth_failure=True)
    core, runner, _ = connect(config)
    with pytest.raises(AuthenticationFailed):
        runner.run(core.login("alice", "wrong"))
    with pytest.raises(ConnectionLost):
        runner.run(core.capabilities(refresh=True))


def test_server_closing_before_the_fallback_is_authentication_failed() -> None:
    config = FakeConfig(auth_error="bad", close_after_auth_failure=True)
    core, runner, session = connect(config)
    with pytest.raises(AuthenticationFailed) as info:
        runner.run(core.login("alice", "wrong"))
    assert info.value.response == pop3proto.Err("bad")
    assert session.auth_attempts == 1


@pytest.mark.parametrize(
    ("error", "cls"),
    [
        ("[IN-USE] Mailbox locked", MailboxInUse),
        ("[LOGIN-DELAY] wait", LoginDelay),
        ("[SYS/TEMP] try later", TemporaryFailure),
        ("[SYS/PERM/DISK] broken", PermanentFailure),
        ("[AUTH] expired", AuthenticationFailed),
    ],
)
def test_login_errors_by_response_code(error: str, cls: type[POP3Error]) -> None:
    core, runner, session = connect(FakeConfig(login_error=error))
    with pytest.raises(cls) as info:
        runner.run(core.login("alice", PASSWORD))
    assert type(info.value) is cls
    assert info.value.response is not None and info.value.code is not None
    # A code other than [AUTH] never triggers the fallback; [AUTH] to the
    # first method (SCRAM) leads to one password-sending method.
    assert session.auth_attempts == (2 if cls is AuthenticationFailed else 1)


def test_scram_server_with_a_bad_signature_is_not_trusted() -> None:
    core, runner, session = connect(FakeConfig(sasl=("SCRAM-SHA-256", "PLAIN"), scram_tamper=True))
    with pytest.raises(AuthenticationFailed, match="verification"):
        runner.run(core.login("alice", PASSWORD))
    # The client cancelled with "*" and did not downgrade to PLAIN.
    assert isinstance(session.commands[-1], pop3proto.SaslCancel)
    assert session.auth_attempts == 1


def test_scram_server_skipping_its_signature_ends_the_session() -> None:
    core, runner, _ = connect(FakeConfig(sasl=("SCRAM-SHA-1",), scram_skip_final=True))
    with pytest.raises(AuthenticationFailed, match="without completing"):
        runner.run(core.login("alice", PASSWORD))
    assert core.state is State.ERROR
    with pytest.raises(ProtocolViolation):
        runner.run(core.stat())


def test_non_ascii_password_switches_utf8_on() -> None:
    config = FakeConfig(sasl=(), greeting="hi", utf8=True, users={"alice": "pässword"})
    core, runner, session = connect(config)
    assert runner.run(core.login("alice", "pässword")) == "USER"
    assert [type(c).__name__ for c in session.commands] == ["Capa", "Utf8", "User", "Pass"]
    core, runner, _ = connect(FakeConfig(sasl=(), greeting="hi", users={"alice": "pässword"}))
    with pytest.raises(ValueError, match="UTF8"):
        runner.run(core.login("alice", "pässword"))
    assert core.state is State.AUTHORIZATION


def test_credentials_with_line_breaks_never_reach_the_wire() -> None:
    core, runner, _session = connect(FakeConfig(sasl=(), greeting="hi"))
    with pytest.raises(ValueError):
        runner.run(core.login("alice\r\nDELE 1", PASSWORD))
    with pytest.raises(ValueError):
        runner.run(core.login("alice", "x\r\nDELE 1"))
    assert runner.sent_commands() == [b"CAPA"]


# ---------------------------------------------------------------------------
# STLS
# ---------------------------------------------------------------------------


def test_starttls_flow_forgets_and_refetches_capabilities() -> None:
    core, runner, session = connect(FakeConfig(stls=True), tls=False)
    caps = runner.run(core.capabilities())
    assert caps.stls
    runner.run(core.starttls())
    assert core.tls and session.conn.tls
    assert "StartTLS" in runner.kinds
    assert core.known_capabilities is None  # RFC 2595 §4
    caps = runner.run(core.capabilities())
    assert not caps.stls
    assert runner.run(core.login("alice", PASSWORD)) == "SCRAM-SHA-256"
    assert runner.sent_commands()[:3] == [b"CAPA", b"STLS", b"CAPA"]


def test_starttls_refused_is_tls_unavailable() -> None:
    core, runner, _ = connect(FakeConfig(stls=False), tls=False)
    with pytest.raises(TLSUnavailable) as info:
        runner.run(core.starttls())
    assert info.value.response == pop3proto.Err("no TLS here")
    assert core.state is State.AUTHORIZATION


def test_starttls_response_injection_is_refused() -> None:
    config = FakeConfig(stls=True, after_stls=b"+OK forged\r\n")
    core, runner, _ = connect(config, tls=False, chunk=4096)
    with pytest.raises(ProtocolViolation, match="injection"):
        runner.run(core.starttls())
    assert "StartTLS" not in runner.kinds
    assert core.state is State.ERROR


def test_starttls_twice_or_on_tls_is_refused_locally() -> None:
    core, runner, _ = connect(tls=True)
    with pytest.raises(TLSUnavailable, match="already"):
        runner.run(core.starttls())


def test_failed_handshake_ends_the_session() -> None:
    core, runner, session = connect(FakeConfig(stls=True), tls=False)

    def boom() -> None:
        raise OSError("handshake failed")

    session.tls_established = boom  # type: ignore[method-assign]
    with pytest.raises(OSError, match="handshake"):
        runner.run(core.starttls())
    assert core.state is State.ERROR


# ---------------------------------------------------------------------------
# Transaction commands and error mapping
# ---------------------------------------------------------------------------


def test_typed_results() -> None:
    core, runner, _ = logged_in(chunk=3)
    sizes = {n: len(m) for n, m in enumerate(FAKE_MESSAGES, 1)}
    assert runner.run(core.stat()) == MailboxStatus(len(FAKE_MESSAGES), sum(sizes.values()))
    assert runner.run(core.list()) == sizes
    assert runner.run(core.uidl()) == {n: f"uid-{n:04d}" for n in sizes}
    assert runner.run(core.size(2)) == sizes[2]
    assert runner.run(core.uid(3)) == "uid-0003"
    for number, message in enumerate(FAKE_MESSAGES, 1):
        octets, body = runner.collect(core.retrieve(number))
        assert body == expected_body(message)
        assert octets == len(body)
    _, head = runner.collect(core.top(1, 0))
    assert head == b"Subject: one\r\n\r\n"
    runner.run(core.noop())
    runner.run(core.delete(1))
    assert runner.run(core.stat()).count == len(FAKE_MESSAGES) - 1
    runner.run(core.reset())
    assert runner.run(core.stat()).count == len(FAKE_MESSAGES)


def test_command_failed_carries_the_response() -> None:
    core, runner, _ = logged_in()
    with pytest.raises(CommandFailed) as info:
        runner.collect(core.retrieve(99))
    assert info.value.response == pop3proto.Err("no such message")
    assert info.value.code is None and info.value.command == "RETR 99"
    runner.run(core.noop())  # still usable


@pytest.mark.parametrize(
    ("text", "login", "cls"),
    [
        ("[IN-USE] x", False, MailboxInUse),
        ("[in-use] x", False, MailboxInUse),
        ("[LOGIN-DELAY/600] x", True, LoginDelay),
        ("[SYS/TEMP] x", False, TemporaryFailure),
        ("[SYS/TEMP/FOO/BAR] x", True, TemporaryFailure),
        ("[SYS/PERM] x", False, PermanentFailure),
        ("[AUTH] x", False, AuthenticationFailed),
        ("[SYS] x", True, AuthenticationFailed),
        ("[XFOO] x", False, CommandFailed),
        ("[UTF8] x", False, CommandFailed),
        ("plain", False, CommandFailed),
        ("plain", True, AuthenticationFailed),
    ],
)
def test_raise_for_err(text: str, login: bool, cls: type[POP3Error]) -> None:
    code, rest = pop3proto._responses.split_response_code(text)
    err = pop3proto.Err(rest, code)
    with pytest.raises(cls) as info:
        raise_for_err(err, "CMD", login=login)
    assert type(info.value) is cls
    assert info.value.response is err and info.value.command == "CMD"
    assert info.value.text == rest


def test_wrong_state_raises_without_breaking_the_session() -> None:
    core, runner, _ = connect()
    with pytest.raises(ProtocolViolation) as info:
        runner.run(core.stat())
    assert isinstance(info.value.error, pop3proto.LocalProtocolError)
    assert core.state is State.AUTHORIZATION
    runner.run(core.login("alice", PASSWORD))
    with pytest.raises(ProtocolViolation):
        runner.run(core.utf8())
    assert runner.run(core.stat()).count == len(FAKE_MESSAGES)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("localhost", True),
        ("LOCALHOST.", True),
        ("127.0.0.1", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("10.0.0.1", False),
        ("pop.example.org", False),
        ("localhost.example.org", False),
        ("", False),
    ],
)
def test_is_loopback(host: str, expected: bool) -> None:
    assert is_loopback(host) is expected


# ---------------------------------------------------------------------------
# Pipelined retrieval
# ---------------------------------------------------------------------------


def many_messages(count: int) -> list[bytes]:
    return [
        b"Subject: %d\r\n\r\n" % n + b".dot line\r\n" * (n % 3) + b"x" * n for n in range(count)
    ]


def test_retrieve_many_pipelines_within_the_window() -> None:
    messages = many_messages(40)
    core, runner, _session = logged_in(FakeConfig(messages=messages), chunk=7)
    first = len(runner.sends)
    batch = core.retrieve_many(range(1, 41), window=8)
    got = []
    while True:
        data = bytearray()
        number = runner.run(batch.next(), data.extend)
        if number is None:
            break
        got.append((number, bytes(data)))
    assert [n for n, _ in got] == list(range(1, 41))
    assert [body for _, body in got] == [expected_body(m) for m in messages]
    assert batch.window == 8 and batch.done
    # One write fills the window, refills top it up in single writes, and
    # never more than 8 commands are outstanding.
    retr_sends = [s for s in runner.sends[first:] if s.startswith(b"RETR")]
    assert retr_sends[0].count(b"RETR") == 8
    assert all(s.count(b"\r\n") == s.count(b"RETR") for s in retr_sends)
    assert runner.max_outstanding == 8
    assert len(retr_sends) < 40
    assert sum(s.count(b"RETR") for s in retr_sends) == 40
    assert core.conn.outstanding == ()


def drain_batch(core: ClientCore, runner: MemoryRunner, numbers: list[int]) -> list[int]:
    batch = core.retrieve_many(numbers)
    got = []
    while (number := runner.run(batch.next(), lambda data: None)) is not None:
        got.append(number)
    return got


def test_small_messages_with_list_sizes_go_out_in_one_burst() -> None:
    """The window is counted in octets by the LIST sizes: 300 small
    messages are one write of 300 RETRs (beyond the old 64-command window)."""
    messages = many_messages(300)
    core, runner, _ = logged_in(FakeConfig(messages=messages), chunk=4096)
    sizes = runner.run(core.list())
    first = len(runner.sends)
    assert drain_batch(core, runner, sorted(sizes)) == list(range(1, 301))
    retr_sends = [s for s in runner.sends[first:] if s.startswith(b"RETR")]
    assert [s.count(b"RETR") for s in retr_sends] == [300]


def test_large_messages_stay_within_the_byte_window() -> None:
    """Messages of 1 MiB by LIST: at most WINDOW_BYTES of replies are owed."""
    from pop3proto.adapters.client._base import WINDOW_BYTES

    messages = [b"Subject: big\r\n\r\n" + b"y" * (1 << 20) for _ in range(12)]
    core, runner, _ = logged_in(FakeConfig(messages=messages), chunk=1 << 16)
    sizes = runner.run(core.list())
    assert drain_batch(core, runner, sorted(sizes)) == list(range(1, 13))
    per_message = max(sizes.values())
    assert runner.max_outstanding == WINDOW_BYTES // per_message == 3


def test_without_list_sizes_the_window_assumes_a_size() -> None:
    """No LIST: each message counts ASSUMED_SIZE, so 64 RETRs go out first."""
    from pop3proto.adapters.client._base import ASSUMED_SIZE, WINDOW_BYTES

    messages = many_messages(100)
    core, runner, _ = logged_in(FakeConfig(messages=messages), chunk=4096)
    first = len(runner.sends)
    assert drain_batch(core, runner, list(range(1, 101))) == list(range(1, 101))
    retr_sends = [s for s in runner.sends[first:] if s.startswith(b"RETR")]
    assert retr_sends[0].count(b"RETR") == WINDOW_BYTES // ASSUMED_SIZE == 64


def test_retrieve_many_without_pipelining_is_one_at_a_time() -> None:
    messages = many_messages(10)
    core, runner, _ = logged_in(FakeConfig(messages=messages, pipelining=False))
    first = len(runner.sends)
    batch = core.retrieve_many([3, 1, 2], window=16)
    assert runner.collect(batch.next()) == (3, expected_body(messages[2]))
    assert batch.window == 1 and not batch.in_flight  # nothing sent ahead
    assert runner.collect(batch.next()) == (1, expected_body(messages[0]))
    assert runner.collect(batch.next()) == (2, expected_body(messages[1]))
    assert runner.run(batch.next()) is None
    assert runner.sends[first:] == [b"RETR 3\r\n", b"RETR 1\r\n", b"RETR 2\r\n"]
    assert runner.max_outstanding == 1


def test_retrieve_many_error_for_one_message_then_goes_on() -> None:
    core, runner, _ = logged_in()
    batch = core.retrieve_many([1, 99, 2])
    assert runner.collect(batch.next())[0] == 1
    with pytest.raises(CommandFailed):
        runner.collect(batch.next())
    assert runner.collect(batch.next()) == (2, expected_body(FAKE_MESSAGES[1]))
    assert runner.run(batch.next()) is None


def test_commands_inside_a_pipelined_batch_settle_it_first() -> None:
    messages = many_messages(12)
    core, runner, session = logged_in(FakeConfig(messages=messages))
    batch = core.retrieve_many(range(1, 13), window=4)
    seen = []
    while True:
        number, body = runner.collect(batch.next())
        if number is None:
            break
        assert body == expected_body(messages[number - 1])
        seen.append(number)
        runner.run(core.delete(number))  # interleaved with RETRs in flight
    assert seen == list(range(1, 13))
    assert session.deleted == set(range(1, 13))
    assert runner.run(core.quit()) is True
    assert session.committed == list(range(1, 13))


def test_abandoned_batch_is_drained_by_the_next_command() -> None:
    core, runner, _ = logged_in(FakeConfig(messages=many_messages(20)))
    batch = core.retrieve_many(range(1, 21), window=8)
    assert runner.collect(batch.next())[0] == 1
    assert batch.in_flight
    batch.abandon()
    assert runner.run(core.stat()).count == 20
    assert core.conn.outstanding == ()
    with pytest.raises(RuntimeError, match="abandoned"):
        runner.run(batch.next())


def test_quit_abandons_an_unfinished_batch() -> None:
    core, runner, session = logged_in(FakeConfig(messages=many_messages(20)))
    batch = core.retrieve_many(range(1, 21), window=8)
    runner.collect(batch.next())
    runner.run(core.delete(1))
    assert runner.run(core.quit()) is True
    assert session.committed == [1]


def run_batch(runner: MemoryRunner, batch: Any) -> tuple[list[tuple[int, bytes]], int, int]:
    """Run a batch the way the runners do: take_buffered() first, next()
    when it says no.  Returns (messages, how many came from take_buffered,
    how many times it left a reply half taken for next())."""
    got: list[tuple[int, bytes]] = []
    fast = handed_over = 0
    while True:
        ready = batch.take_buffered()
        if ready is not None:
            got.append(ready)
            fast += 1
            continue
        handed_over += batch._partial is not None
        number, body = runner.collect(batch.next())
        if number is None:
            return got, fast, handed_over
        got.append((number, body))


def run_until_half_taken(runner: MemoryRunner, batch: Any) -> list[tuple[int, bytes]]:
    """Run a batch until take_buffered() leaves a reply half taken."""
    got: list[tuple[int, bytes]] = []
    while not batch.done:
        ready = batch.take_buffered()
        if ready is not None:
            got.append(ready)
        elif batch._partial is not None:
            return got
        else:
            got.append(runner.collect(batch.next()))
    raise AssertionError("no reply was cut by the end of a read")


@pytest.mark.parametrize("chunk", [3, 7, 100, 65536])
def test_take_buffered_and_next_read_the_same_messages(chunk: int) -> None:
    """RFC 2449 §6.6 pipelining: messages taken straight from what was
    received, or through next(), or half and half, are the same octets."""
    messages = many_messages(40)
    core, runner, _ = logged_in(FakeConfig(messages=messages), chunk=chunk)
    batch = core.retrieve_many(range(1, 41), window=8)
    got, fast, handed_over = run_batch(runner, batch)
    assert got == [(n, expected_body(messages[n - 1])) for n in range(1, 41)]
    assert batch.done and core.conn.outstanding == ()
    if chunk == 65536:
        assert fast > 20  # most replies were already received
    if chunk == 100:
        assert handed_over > 0  # replies cut by the end of a read


def test_take_buffered_leaves_a_half_read_reply_to_another_command() -> None:
    """A reply half taken by take_buffered() is finished by _settle() when
    another command comes first (its reply follows the RETRs')."""
    messages = many_messages(12)
    core, runner, session = logged_in(FakeConfig(messages=messages), chunk=100)
    batch = core.retrieve_many(range(1, 13), window=6)
    got = run_until_half_taken(runner, batch)
    runner.run(core.delete(1))
    assert batch._partial is None  # settled: the reply is kept whole
    rest, _, _ = run_batch(runner, batch)
    numbers = [n for n, _ in got] + [n for n, _ in rest]
    assert sorted(set(numbers)) == numbers == list(range(1, 13))
    assert all(body == expected_body(messages[n - 1]) for n, body in rest)
    assert session.deleted == {1}


def test_take_buffered_raises_for_err_and_goes_on() -> None:
    core, runner, _ = logged_in(chunk=65536)
    batch = core.retrieve_many([1, 99, 2])
    assert runner.collect(batch.next()) == (1, expected_body(FAKE_MESSAGES[0]))
    with pytest.raises(CommandFailed, match="RETR 99"):
        batch.take_buffered()
    assert batch.take_buffered() == (2, expected_body(FAKE_MESSAGES[1]))
    assert batch.take_buffered() is None
    assert runner.run(batch.next()) is None and batch.done


def test_take_buffered_hands_out_settled_replies_and_their_errors() -> None:
    """Replies read ahead by another command come out of take_buffered(),
    a -ERR among them raised in its turn."""
    core, runner, _ = logged_in(chunk=7)
    batch = core.retrieve_many([1, 99, 2])
    assert runner.collect(batch.next())[0] == 1
    runner.run(core.noop())  # its reply follows the RETRs': they are settled
    assert not batch.in_flight
    with pytest.raises(CommandFailed, match="RETR 99"):
        batch.take_buffered()
    assert batch.take_buffered() == (2, expected_body(FAKE_MESSAGES[1]))
    assert batch.done


def test_take_buffered_turns_a_broken_reply_into_protocol_violation() -> None:
    core, runner, session = logged_in(FakeConfig(messages=many_messages(3)), chunk=65536)
    real = session.receive

    def receive(data: bytes) -> Iterator[bytes]:
        out = b"".join(real(data))
        if data.startswith(b"RETR"):
            # The second reply is garbage.
            out = out[: out.index(b"\r\n.\r\n") + 5] + b"garbage\r\n"
        yield out

    session.receive = receive  # type: ignore[method-assign]
    batch = core.retrieve_many([1, 2, 3])
    assert runner.collect(batch.next())[0] == 1
    with pytest.raises(ProtocolViolation, match="RETR 2"):
        batch.take_buffered()
    assert batch.abandoned


def test_abandoning_a_half_read_reply_drains_it() -> None:
    core, runner, _ = logged_in(FakeConfig(messages=many_messages(12)), chunk=100)
    batch = core.retrieve_many(range(1, 13), window=6)
    run_until_half_taken(runner, batch)
    assert batch.in_flight
    batch.abandon()
    assert batch.take_buffered() is None
    assert runner.run(core.stat()).count == 12
    assert core.conn.outstanding == ()


def run_batch_feeding(runner: MemoryRunner, batch: Any) -> tuple[list[tuple[int, bytes]], int]:
    """Run a batch the way the blocking client does: take_buffered(), then
    read and feed() while wants_bytes(), next() otherwise.  Returns the
    messages and how many reads were fed."""
    got: list[tuple[int, bytes]] = []
    fed = 0
    while True:
        ready = batch.take_buffered()
        if ready is not None:
            got.append(ready)
            continue
        if batch.wants_bytes():
            batch.feed(runner.perform(Receive(), None))
            fed += 1
            continue
        number, body = runner.collect(batch.next())
        if number is None:
            return got, fed
        got.append((number, body))


@pytest.mark.parametrize("chunk", [3, 100, 4096])
def test_feeding_a_batch_reads_the_same_messages(chunk: int) -> None:
    """Replies gathered by feed() and taken whole are the octets next()
    streams, however the reads cut them."""
    messages = many_messages(60)
    core, runner, _ = logged_in(FakeConfig(messages=messages), chunk=chunk)
    sizes = runner.run(core.list())
    batch = core.retrieve_many(sorted(sizes), window=16)
    got, fed = run_batch_feeding(runner, batch)
    assert got == [(n, expected_body(messages[n - 1])) for n in range(1, 61)]
    assert batch.done and core.conn.outstanding == ()
    if chunk < 4096:
        assert fed > 0  # replies cut by the end of a read were fed whole
    assert not batch.wants_bytes()


def test_large_messages_stream_instead_of_being_gathered() -> None:
    messages = [b"Subject: big\r\n\r\n" + b"y" * (300 << 10) for _ in range(3)]
    core, runner, _ = logged_in(FakeConfig(messages=messages), chunk=1 << 16)
    runner.run(core.list())
    batch = core.retrieve_many([1, 2, 3])
    assert runner.collect(batch.next())[0] == 1
    assert not batch.wants_bytes()  # 300 KiB by LIST: next() streams it
    got, fed = run_batch_feeding(runner, batch)
    assert [n for n, _ in got] == [2, 3] and fed == 0


def test_feed_at_end_of_stream_ends_the_feeding() -> None:
    core, runner, _ = logged_in(FakeConfig(messages=many_messages(4)), chunk=10)
    batch = core.retrieve_many([1, 2, 3, 4])
    assert runner.collect(batch.next())[0] == 1
    assert batch.wants_bytes()
    with pytest.raises(TypeError, match="bytes"):
        batch.feed(bytearray(b"x"))  # type: ignore[arg-type]
    batch.feed(b"")
    assert not batch.wants_bytes()
    with pytest.raises(ConnectionLost):
        while batch.take_buffered() is not None:
            pass
        runner.collect(batch.next())


def test_delete_many_pipelines_and_reports_the_first_error() -> None:
    core, runner, session = logged_in(FakeConfig(messages=many_messages(10)))
    with pytest.raises(CommandFailed, match="DELE 42"):
        runner.run(core.delete_many([1, 2, 42, 3, 43], window=4))
    assert session.deleted == {1, 2, 3}
    assert any(s.count(b"DELE") > 1 for s in runner.sends)


def test_failing_sink_leaves_the_session_usable() -> None:
    core, runner, _ = logged_in(chunk=3)

    def sink(data: bytes) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        runner.run(core.retrieve(2), sink)
    assert core.conn.outstanding  # the rest of the body is still owed
    assert runner.run(core.uid(1)) == "uid-0001"


def test_interrupted_receive_is_recovered_but_failed_send_is_not() -> None:
    core, runner, _session = logged_in(chunk=2)
    op = core.noop()
    assert isinstance(op.send(None), Send)
    runner.perform(Send(b"NOOP\r\n"), None)  # the server got it
    assert isinstance(op.send(None), Receive)
    with pytest.raises(TimeoutError):
        op.throw(TimeoutError("timed out"))
    assert runner.run(core.stat()).count == len(FAKE_MESSAGES)  # drained the NOOP reply
    op = core.noop()
    assert isinstance(op.send(None), Send)
    with pytest.raises(BrokenPipeError):
        op.throw(BrokenPipeError())
    assert core.state is State.ERROR
    with pytest.raises(ProtocolViolation):
        runner.run(core.noop())


# ---------------------------------------------------------------------------
# QUIT and the end of the connection
# ---------------------------------------------------------------------------


def test_quit_reports_whether_deletions_were_committed() -> None:
    core, runner, session = logged_in()
    runner.run(core.delete(2))
    assert runner.run(core.quit()) is True
    assert session.committed == [2]
    with pytest.raises(ConnectionLost):
        runner.run(core.noop())

    core, runner, _ = connect()
    assert runner.run(core.quit()) is False  # from AUTHORIZATION

    core, runner, _ = logged_in(FakeConfig(quit_error=True))
    assert runner.run(core.quit()) is False


def test_quit_without_reply_is_outcome_unknown() -> None:
    core, runner, _ = logged_in(FakeConfig(quit_no_reply=True))
    runner.run(core.delete(1))
    with pytest.raises(ConnectionLost) as info:
        runner.run(core.quit())
    assert info.value.outcome_unknown


def test_eof_in_the_middle_of_a_body_is_connection_lost() -> None:
    core, runner, session = logged_in(chunk=4096)
    runner.run(core.noop())
    # The server dies half-way through the reply.
    original = session.receive

    def truncated(data: bytes) -> Iterator[bytes]:
        out = b"".join(original(data))
        session.closing = True
        yield out[:-9]

    session.receive = truncated  # type: ignore[method-assign]
    with pytest.raises(ConnectionLost, match="middle"):
        runner.collect(core.retrieve(1))


def test_negative_greeting_and_eof_before_greeting() -> None:
    session = FakeSession()
    core = ClientCore("h")
    runner = MemoryRunner(session, core)
    runner.to_client = bytearray(b"-ERR [SYS/TEMP] maintenance\r\n")
    session.closing = True
    with pytest.raises(TemporaryFailure):
        runner.run(core.greet())
    core = ClientCore("h")
    runner = MemoryRunner(FakeSession(), core)
    runner.to_client = bytearray()
    runner.session.closing = True
    with pytest.raises(ConnectionLost):
        runner.run(core.greet())


def test_garbage_reply_is_a_protocol_violation() -> None:
    core, runner, session = logged_in()

    def garbage(data: bytes) -> Iterator[bytes]:
        yield b"+ continuation outside AUTH\r\n"

    session.receive = garbage  # type: ignore[method-assign]
    with pytest.raises(ProtocolViolation) as info:
        runner.run(core.noop())
    assert isinstance(info.value.error, pop3proto.RemoteProtocolError)
    assert isinstance(info.value.__cause__, pop3proto.RemoteProtocolError)


def test_operations_before_the_greeting_are_refused() -> None:
    core = ClientCore("h")
    runner = MemoryRunner(FakeSession(), core)
    with pytest.raises(ProtocolViolation, match="greet"):
        runner.run(core.noop())


def test_argument_validation() -> None:
    core, runner, _ = logged_in()
    with pytest.raises(ValueError):
        runner.run(core.retrieve(0))
    with pytest.raises(TypeError):
        runner.run(core.retrieve("1"))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        core.retrieve_many([1, -1])
    with pytest.raises(ValueError):
        ClientCore("h", window=0)
    runner.run(core.noop())

"""ClientCore's error and fallback paths, driven with bytes and no sockets.

:class:`Wire` performs a core operation's requests against either the fake
server of ``tests/helpers`` (:class:`FakeSession`) or a scripted one that
answers each command line with canned bytes, so that a test can make the
server say exactly the odd thing it is about.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import pop3proto
from pop3proto import State
from pop3proto.adapters._seam import Deliver, Receive, Send, StartTLS
from pop3proto.adapters.client._core import ClientCore
from pop3proto.adapters.client._errors import (
    AuthenticationFailed,
    CommandFailed,
    ConnectionLost,
    ProtocolViolation,
    TLSUnavailable,
)
from tests.helpers import (
    FAKE_MESSAGES,
    PASSWORD,
    FakeConfig,
    FakeSession,
    OperationRunner,
    expected_body,
)


class Wire(OperationRunner):
    """Performs a core's requests against a server that answers each Send.

    ``answer(data)`` gets the bytes the client wrote and returns the
    server's bytes; it sets ``closed`` when the server closes.  ``sent`` keeps
    everything the client wrote; ``timeouts`` makes that many Receives
    raise TimeoutError first (as a runner with a deadline would).
    """

    def __init__(self, core: ClientCore, answer: Callable[[bytes], bytes], first: bytes) -> None:
        self.core = core
        self.answer = answer
        self.to_client = bytearray(first)
        self.closed = False
        self.sent = bytearray()
        self.timeouts = 0

    def perform(self, request: Any, sink: Callable[[bytes], object] | None) -> bytes | None:
        if isinstance(request, Send):
            self.sent += request.data
            if not self.closed:
                self.to_client += self.answer(request.data)
            return None
        if isinstance(request, Receive):
            if self.timeouts:
                self.timeouts -= 1
                raise TimeoutError("no progress")
            if self.to_client:
                data = bytes(self.to_client)
                self.to_client.clear()
                return data
            if self.closed:
                return b""
            raise AssertionError("the client waits for a reply the server will never send")
        if isinstance(request, StartTLS):
            return None
        assert isinstance(request, Deliver)
        assert sink is not None
        sink(request.data)
        return None

    def lines(self) -> list[bytes]:
        return bytes(self.sent).split(b"\r\n")[:-1]


def fake(
    config: FakeConfig | None = None, *, tls: bool = True
) -> tuple[ClientCore, Wire, FakeSession]:
    """A core that has read the greeting of a :class:`FakeSession`."""
    config = config or FakeConfig()
    config.implicit_tls = tls
    session = FakeSession(config)
    core = ClientCore("pop.example.org", tls=tls)

    def answer(data: bytes) -> bytes:
        reply = b"".join(session.receive(data))
        wire.closed = session.closing
        return reply

    wire = Wire(core, answer, session.greeting())
    wire.run(core.greet())
    return core, wire, session


def scripted(
    replies: dict[bytes, bytes | None],
    *,
    greeting: bytes = b"+OK ready\r\n",
    tls: bool = True,
    default: bytes = b"+OK\r\n",
) -> tuple[ClientCore, Wire]:
    """A core that has read *greeting* from a server answering each command
    line from *replies* (by whole line, else by keyword), else *default*."""
    core = ClientCore("pop.example.org", tls=tls)

    def answer(data: bytes) -> bytes:
        out = bytearray()
        for line in data.split(b"\r\n")[:-1]:
            keyword = line.split(b" ", 1)[0]
            reply = replies.get(line, replies.get(keyword, default))
            if reply is None:
                wire.closed = True
                break
            out += reply
        return bytes(out)

    wire = Wire(core, answer, greeting)
    wire.run(core.greet())
    return core, wire


def logged_in_fake(config: FakeConfig | None = None) -> tuple[ClientCore, Wire, FakeSession]:
    core, wire, session = fake(config)
    wire.run(core.login("alice", PASSWORD))
    assert core.state is State.TRANSACTION
    return core, wire, session


# ---------------------------------------------------------------------------
# Logging in
# ---------------------------------------------------------------------------


def test_login_methods_leave_out_user_when_capa_offers_sasl_without_it() -> None:
    """RFC 2449 §6.8: a CAPA without USER and with a SASL mechanism offers only that mechanism."""
    core, _ = scripted({}, greeting=b"+OK no timestamp\r\n")
    caps = pop3proto.Capabilities.build(("SASL", "SCRAM-SHA-256"), "TOP")
    assert core.login_methods(caps) == ["SCRAM-SHA-256"]


@pytest.mark.parametrize(
    ("user", "password", "error"),
    [(b"alice", PASSWORD, TypeError), ("alice", None, TypeError), ("", PASSWORD, ValueError),
     ("alice", "", ValueError)],
)  # fmt: skip
def test_login_checks_its_arguments_before_sending(user: Any, password: Any, error: type) -> None:
    """login() refuses non-str or empty credentials before a byte is sent."""
    core, wire = scripted({})
    with pytest.raises(error):
        wire.run(core.login(user, password))
    assert wire.sent == b""
    assert core.state is State.AUTHORIZATION


def test_login_when_logged_in_is_refused_and_the_session_goes_on() -> None:
    """A second login() in TRANSACTION is a local ProtocolViolation; the session goes on."""
    core, wire, _ = logged_in_fake()
    before = len(wire.sent)
    with pytest.raises(ProtocolViolation, match="TRANSACTION"):
        wire.run(core.login("alice", PASSWORD))
    assert len(wire.sent) == before
    assert wire.run(core.stat()).count == len(FAKE_MESSAGES)


def test_connection_closed_at_the_only_login_attempt_is_connection_lost() -> None:
    """The server closing on the only login attempt is ConnectionLost, not a login failure."""
    core, wire = scripted({b"CAPA": b"-ERR\r\n", b"USER": None})
    with pytest.raises(ConnectionLost) as info:
        wire.run(core.login("alice", PASSWORD))
    assert not isinstance(info.value, AuthenticationFailed)
    assert wire.lines() == [b"CAPA", b"USER alice"]


def test_authenticate_runs_a_ready_made_mechanism() -> None:
    """authenticate() logs in with a SASL mechanism object, then refuses a second time."""
    core, wire, session = fake(FakeConfig(sasl=("PLAIN",)))
    wire.run(core.authenticate(pop3proto.PlainClient("alice", PASSWORD)))
    assert core.state is State.TRANSACTION
    assert session.authenticated == "alice"
    with pytest.raises(ProtocolViolation):
        wire.run(core.authenticate(pop3proto.PlainClient("alice", PASSWORD)))
    assert wire.run(core.stat()).count == len(FAKE_MESSAGES)


def test_initial_response_too_long_for_the_auth_line_follows_the_empty_challenge() -> None:
    """RFC 5034 §4: an initial response too long for the AUTH line waits for the "+ " challenge."""
    password = "p" * 200
    core, wire, session = fake(FakeConfig(sasl=("PLAIN",), users={"alice": password}))
    assert wire.run(core.login("alice", password)) == "PLAIN"
    auth = [line for line in wire.lines() if line.startswith(b"AUTH")]
    assert auth == [b"AUTH PLAIN"]
    assert session.authenticated == "alice"


def test_user_name_too_long_for_a_command_is_refused_before_sending() -> None:
    """RFC 2449 §4: a USER line over 255 octets is a ValueError and never sent."""
    core, wire = scripted({b"CAPA": b"-ERR\r\n"})
    with pytest.raises(ValueError, match="too long") as info:
        wire.run(core.login("a" * 300, PASSWORD, mechanism="USER"))
    assert "a" * 300 not in str(info.value)
    assert not any(line.startswith(b"USER") for line in wire.lines())


def test_utf8_user_capability_lets_non_ascii_credentials_through_without_utf8() -> None:
    """RFC 6856 §2.2: "UTF8 USER" allows a UTF-8 user name without the UTF8 command."""
    capa = b"+OK\r\nUSER\r\nUTF8 USER\r\n.\r\n"
    core, wire = scripted({b"CAPA": capa})
    wire.run(core.login("j\u00f6rg", PASSWORD, mechanism="USER"))
    assert core.state is State.TRANSACTION
    assert wire.lines()[1:] == ["USER j\u00f6rg".encode(), f"PASS {PASSWORD}".encode()]


def test_forced_apop_without_a_greeting_timestamp_fails_before_sending() -> None:
    """RFC 1939 §7: APOP needs the greeting's timestamp; without it nothing is sent."""
    core, wire = scripted({b"CAPA": b"-ERR\r\n"}, greeting=b"+OK no timestamp\r\n")
    with pytest.raises(AuthenticationFailed, match="timestamp"):
        wire.run(core.login("alice", PASSWORD, mechanism="APOP"))
    assert wire.lines() == [b"CAPA"]


class _BadName(pop3proto.SaslClientMechanism):
    name = "X-TOKEN-FOR-THE-MAIL-SERVER"  # RFC 4422 §3.1: at most 20 characters

    def _first_message(self) -> bytes | None:
        return b"token"

    def _next(self, challenge: bytes) -> bytes:
        return b""


def test_mechanism_with_an_invalid_name_is_a_value_error() -> None:
    """A custom mechanism whose name AUTH cannot carry is a ValueError; nothing is sent."""
    core, wire, _ = fake()
    sent = len(wire.sent)
    with pytest.raises(ValueError, match="AUTH mechanism"):
        wire.run(core.authenticate(_BadName()))
    assert not any(line.startswith(b"AUTH") for line in wire.lines()[sent:])
    assert wire.run(core.login("alice", PASSWORD)) == "SCRAM-SHA-256"


class _TokenStoreDown(pop3proto.LoginClient):
    def _next(self, challenge: bytes) -> bytes:
        raise RuntimeError("token store unavailable")


def test_abandoned_sasl_exchange_is_cancelled_before_the_next_command() -> None:
    """RFC 5034 §4: an AUTH left half-way is cancelled with "*" before the next command goes out."""
    core, wire, session = fake(FakeConfig(sasl=("LOGIN", "PLAIN")))
    with pytest.raises(RuntimeError, match="token store"):
        wire.run(core.authenticate(_TokenStoreDown("alice", PASSWORD)))
    assert core.state is State.SASL
    assert wire.run(core.login("alice", PASSWORD, mechanism="PLAIN")) == "PLAIN"
    assert wire.lines()[-3:-1] == [b"AUTH LOGIN", b"*"]
    assert isinstance(session.commands[-2], pop3proto.SaslCancel)
    assert session.authenticated == "alice"


# ---------------------------------------------------------------------------
# Plumbing and session set-up
# ---------------------------------------------------------------------------


def test_runner_answering_receive_with_a_str_is_a_type_error() -> None:
    """The seam's contract: Receive is answered with bytes; anything else is a TypeError."""
    core = ClientCore("h")
    op = core.greet()
    assert isinstance(op.send(None), Receive)
    with pytest.raises(TypeError, match="bytes"):
        op.send("+OK hi\r\n")  # type: ignore[arg-type]


def test_greeting_is_read_once() -> None:
    """greet() a second time is a RuntimeError, not a read of the next reply."""
    core, wire = scripted({})
    with pytest.raises(RuntimeError, match="already read"):
        wire.run(core.greet())
    assert wire.sent == b""


def test_capa_refused_is_remembered() -> None:
    """RFC 2449 §5: after CAPA got -ERR, capabilities() answers empty without asking again."""
    core, wire = scripted({b"CAPA": b"-ERR not here\r\n"})
    assert wire.run(core.capabilities()).entries == ()
    assert wire.run(core.capabilities()).entries == ()
    assert wire.lines() == [b"CAPA"]
    assert wire.run(core.capabilities(refresh=True)).entries == ()
    assert wire.lines() == [b"CAPA", b"CAPA"]


def test_stls_after_utf8_is_refused_locally() -> None:
    """RFC 6856 §2.1: clients must not send STLS after UTF8; nothing is sent."""
    core, wire = scripted({b"CAPA": b"+OK\r\nUTF8\r\nSTLS\r\n.\r\n"}, tls=False)
    wire.run(core.utf8())
    with pytest.raises(TLSUnavailable, match="UTF8"):
        wire.run(core.starttls())
    assert wire.lines() == [b"UTF8"]


def test_abort_leaves_a_closed_session_closed() -> None:
    """abort() on a session that already ended keeps it CLOSED (not ERROR)."""
    core, wire = scripted({b"QUIT": b"+OK bye\r\n"})
    assert wire.run(core.quit()) is False
    assert core.state is State.CLOSED
    core.abort()
    assert core.state is State.CLOSED
    core, wire = scripted({})
    core.abort()
    assert core.state is State.ERROR


def test_quit_closed_without_reply_from_authorization_commits_nothing() -> None:
    """RFC 1939 §6: QUIT before login deletes nothing, so a close instead of +OK is just False."""
    core, wire = scripted({b"QUIT": None})
    assert wire.run(core.quit()) is False
    assert core.state is State.CLOSED


def test_timed_out_quit_then_close_reports_the_connection_lost() -> None:
    """A QUIT whose reply timed out is settled by the next call, which finds the server gone."""
    core, wire, _ = logged_in_fake(FakeConfig(quit_no_reply=True))
    wire.timeouts = 1
    with pytest.raises(TimeoutError):
        wire.run(core.quit())
    with pytest.raises(ConnectionLost, match="closed"):
        wire.run(core.noop())
    assert core.state is State.CLOSED
    assert wire.lines()[-1] == b"QUIT"


def test_delete_many_of_nothing_sends_nothing() -> None:
    """delete_many([]) is a no-op: not even CAPA."""
    core, wire = scripted({})
    wire.run(core.delete_many([]))
    assert wire.sent == b""


# ---------------------------------------------------------------------------
# The pipelined batch
# ---------------------------------------------------------------------------


def test_batch_reports_its_numbers_and_outstanding_commands() -> None:
    """RFC 2449 §6.6: a batch keeps its order and counts the RETRs in flight."""
    core, wire, _ = logged_in_fake()
    batch = core.retrieve_many([3, 1, 2], window=8)
    assert batch.numbers == (3, 1, 2)
    assert batch.outstanding == 0
    assert wire.collect(batch.next()) == (3, expected_body(FAKE_MESSAGES[2]))
    assert batch.outstanding == 2
    assert wire.collect(batch.next())[0] == 1
    assert wire.collect(batch.next())[0] == 2
    assert batch.outstanding == 0
    assert wire.run(batch.next()) is None


def test_empty_batch_ends_at_once() -> None:
    """retrieve_many([]) returns None on the first next() and sends nothing."""
    core, wire, _ = logged_in_fake()
    before = len(wire.sent)
    batch = core.retrieve_many([])
    assert wire.run(batch.next()) is None
    assert batch.done
    assert len(wire.sent) == before


def test_replies_settled_by_another_command_keep_errors_and_empty_messages() -> None:
    """Replies read ahead for another command keep a -ERR (raised in turn) and an empty message."""
    core, wire, _ = logged_in_fake()
    batch = core.retrieve_many([1, 99, 4, 2], window=8)
    assert wire.collect(batch.next()) == (1, expected_body(FAKE_MESSAGES[0]))
    wire.run(core.noop())  # its reply follows the three RETRs in flight
    assert not batch.in_flight
    with pytest.raises(CommandFailed, match="RETR 99"):
        wire.collect(batch.next())
    delivered: list[bytes] = []
    assert wire.run(batch.next(), delivered.append) == 4
    assert delivered == []  # an empty message delivers nothing
    assert wire.collect(batch.next()) == (2, expected_body(FAKE_MESSAGES[1]))
    assert wire.run(batch.next()) is None


def test_failing_sink_abandons_the_batch_and_the_session_goes_on() -> None:
    """A sink that raises abandons the batch; the next command drains what is owed."""
    core, wire, _ = logged_in_fake()
    batch = core.retrieve_many([1, 2, 3], window=8)

    def sink(data: bytes) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        wire.run(batch.next(), sink)
    assert batch.abandoned
    assert wire.run(core.uid(2)) == "uid-0002"
    assert core.conn.outstanding == ()
    with pytest.raises(RuntimeError, match="abandoned"):
        wire.run(batch.next())


def test_a_finished_batch_leaves_a_newer_batch_in_charge() -> None:
    """An older batch finishing from read-ahead replies leaves the newer one in charge."""
    messages = [b"Subject: %d\r\n\r\nbody %d\r\n" % (n, n) for n in range(1, 7)]
    core, wire, _ = logged_in_fake(FakeConfig(messages=messages))
    first = core.retrieve_many([1, 2], window=8)
    assert wire.collect(first.next())[0] == 1
    second = core.retrieve_many([3, 4, 5], window=8)
    assert wire.collect(second.next())[0] == 3  # settles the first batch's RETR 2
    assert wire.collect(first.next()) == (2, messages[1])
    assert first.done
    wire.run(core.noop())  # must settle the second batch's RETRs first
    assert wire.collect(second.next()) == (4, messages[3])
    assert wire.collect(second.next()) == (5, messages[4])
    assert wire.run(second.next()) is None


def test_connection_lost_while_settling_abandons_the_batch() -> None:
    """The server closing with RETRs unanswered fails the command settling them, and the batch."""
    capa = b"+OK\r\nUSER\r\nPIPELINING\r\n.\r\n"
    core, wire = scripted({b"CAPA": capa, b"RETR 1": b"+OK\r\nhello\r\n.\r\n", b"RETR 2": None})
    wire.run(core.login("alice", PASSWORD))
    batch = core.retrieve_many([1, 2, 3], window=8)
    assert wire.collect(batch.next()) == (1, b"hello\r\n")
    with pytest.raises(ConnectionLost):
        wire.run(core.noop())
    assert batch.abandoned

"""Round trips from connect to the first RETR (RFC 2449 §6.6), counted.

A round trip is a wait: the client asks for bytes after it sent something
(or, for the greeting, before it sent anything).  The runner here records
every request; the count is asserted, nothing is timed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import pop3proto
from pop3proto.adapters._seam import Deliver, Receive, Send, StartTLS
from pop3proto.adapters.client._core import ClientCore, Listing, MailboxStatus
from pop3proto.adapters.client._errors import AuthenticationFailed, POP3Error, TemporaryFailure
from tests.helpers import PASSWORD, FakeConfig, FakeSession, OperationRunner


class WaitCounter(OperationRunner):
    """Answers requests from an in-memory fake server, whole replies per
    read, and records the writes and the waits between them."""

    def __init__(self, session: FakeSession) -> None:
        self.session = session
        self.to_client = bytearray(session.greeting())
        self.log: list[tuple[str, bytes]] = []  # ("send", data) / ("wait", b"")
        self.sent_since_wait = True  # the greeting is waited for

    @property
    def waits(self) -> int:
        return sum(kind == "wait" for kind, _ in self.log)

    @property
    def writes(self) -> list[bytes]:
        return [data for kind, data in self.log if kind == "send"]

    def perform(self, request: Any, sink: Callable[[bytes], object] | None) -> bytes | None:
        if isinstance(request, Send):
            self.log.append(("send", request.data))
            for piece in self.session.receive(request.data):
                self.to_client += piece
            self.sent_since_wait = True
            return None
        if isinstance(request, Receive):
            # Reading what is already there is no wait; asking after a
            # write for its reply is.
            if self.sent_since_wait:
                self.log.append(("wait", b""))
                self.sent_since_wait = False
            data = bytes(self.to_client)
            self.to_client.clear()
            assert data or self.session.closing, "the client waits for a reply never sent"
            return data
        if isinstance(request, StartTLS):
            self.session.tls_established()
            return None
        assert isinstance(request, Deliver) and sink is not None
        sink(request.data)
        return None


def to_first_retr(config: FakeConfig, *, listing: bool) -> tuple[WaitCounter, ClientCore]:
    """Connect, greet (CAPA sent with it), log in, list, and take the first
    message of a pipelined batch, as a mail fetcher does."""
    session = FakeSession(config)
    core = ClientCore("localhost", tls=False)
    runner = WaitCounter(session)
    runner.run(core.greet(capa=True))
    assert runner.run(core.login("alice", PASSWORD)) == "USER"
    if listing:
        result = runner.run(core.listing())
        numbers = sorted(result.sizes)
    else:
        numbers = sorted(runner.run(core.list()))
    batch = core.retrieve_many(numbers)
    number, body = runner.collect(batch.next())
    assert number == 1 and body
    return runner, core


# No SASL and no APOP timestamp in the greeting: USER/PASS it is.
USER_ONLY: dict[str, Any] = {"sasl": (), "greeting": "POP3 ready"}


def test_pipelining_server_four_round_trips_to_the_first_message() -> None:
    runner, _ = to_first_retr(FakeConfig(**USER_ONLY), listing=True)
    # greeting | CAPA | USER+PASS | LIST+UIDL | RETR burst
    assert runner.waits == 5
    writes = runner.writes
    assert writes[0] == b"CAPA\r\n"
    assert writes[1] == b"USER alice\r\nPASS " + PASSWORD.encode() + b"\r\n"
    assert writes[2] == b"LIST\r\nUIDL\r\n"
    assert writes[3].startswith(b"RETR 1\r\nRETR 2\r\n")
    # CAPA left right after the greeting: nothing was waited for between.
    assert runner.log[:2] == [("wait", b""), ("send", b"CAPA\r\n")]


def test_without_pipelining_every_command_waits() -> None:
    config = FakeConfig(pipelining=False, **USER_ONLY)
    runner, _ = to_first_retr(config, listing=True)
    # greeting | CAPA | USER | PASS | LIST | UIDL | RETR
    assert runner.waits == 7
    assert all(data.count(b"\r\n") == 1 for data in runner.writes)


def test_list_alone_is_one_round_trip_too() -> None:
    runner, _ = to_first_retr(FakeConfig(**USER_ONLY), listing=False)
    assert runner.waits == 5


def test_no_capa_before_a_negative_greeting() -> None:
    session = FakeSession(FakeConfig(**USER_ONLY))
    session.greeting = lambda: b"-ERR [SYS/TEMP] busy\r\n"  # type: ignore[method-assign]
    core = ClientCore("localhost")
    runner = WaitCounter(session)
    with pytest.raises(TemporaryFailure):
        runner.run(core.greet(capa=True))
    assert runner.writes == []


def test_sasl_and_stls_are_never_pipelined() -> None:
    """AUTH waits for each challenge and STLS for its +OK (RFC 2595 §4,
    RFC 5034 §4): each write holds one line, and CAPA is asked again
    after TLS before anything else."""
    config = FakeConfig(stls=True, sasl=("PLAIN",))
    session = FakeSession(config)
    core = ClientCore("pop.example.org", tls=False)
    runner = WaitCounter(session)
    runner.run(core.greet(capa=True))
    assert runner.run(core.capabilities()).stls
    runner.run(core.starttls(capa=True))
    assert runner.run(core.login("alice", PASSWORD)) == "PLAIN"
    assert all(data.count(b"\r\n") == 1 for data in runner.writes)
    assert [data.split()[0] for data in runner.writes] == [b"CAPA", b"STLS", b"CAPA", b"AUTH"]


def test_a_failed_pipelined_user_reports_user() -> None:
    session = FakeSession(FakeConfig(**USER_ONLY))
    real = session.receive

    def receive(data: bytes) -> Any:
        if data.startswith(b"USER "):
            # A server that refuses the name; PASS then comes without USER.
            yield b"-ERR no such mailbox\r\n"
            data = data[data.index(b"\r\n") + 2 :]
        yield from real(data)

    session.receive = receive  # type: ignore[method-assign]
    core = ClientCore("localhost")
    runner = WaitCounter(session)
    runner.run(core.greet(capa=True))
    with pytest.raises(AuthenticationFailed, match="USER failed: -ERR no such mailbox"):
        runner.run(core.login("alice", PASSWORD))
    assert b"PASS" in runner.writes[1]  # sent with USER, answered -ERR
    assert core.state is pop3proto.State.AUTHORIZATION
    assert core.conn.outstanding == ()


def test_a_wrong_password_reports_pass() -> None:
    config = FakeConfig(users={"alice": "other"}, **USER_ONLY)
    session = FakeSession(config)
    core = ClientCore("localhost")
    runner = WaitCounter(session)
    runner.run(core.greet(capa=True))
    with pytest.raises(AuthenticationFailed, match="PASS"):
        runner.run(core.login("alice", PASSWORD))
    assert core.conn.outstanding == ()


def test_capa_sent_ahead_is_read_by_whatever_comes_first() -> None:
    """A command other than CAPA first: the CAPA reply is read before its
    own, and the capabilities are known without asking again."""
    session = FakeSession(FakeConfig(**USER_ONLY))
    core = ClientCore("localhost")
    runner = WaitCounter(session)
    runner.run(core.greet(capa=True))
    assert runner.run(core.quit()) is False
    assert core.known_capabilities is not None and core.known_capabilities.pipelining
    assert runner.writes == [b"CAPA\r\n", b"QUIT\r\n"]


def test_capa_refused_ahead_counts_as_none() -> None:
    session = FakeSession(FakeConfig(capa=False, **USER_ONLY))
    core = ClientCore("localhost")
    runner = WaitCounter(session)
    runner.run(core.greet(capa=True))
    assert runner.run(core.capabilities()) == pop3proto.Capabilities(())
    # Not asked again; USER/PASS then go one at a time.
    runner.run(core.login("alice", PASSWORD))
    assert runner.writes[1:] == [b"USER alice\r\n", b"PASS " + PASSWORD.encode() + b"\r\n"]


def test_listing_with_status_and_without_uids() -> None:
    session = FakeSession(FakeConfig(**USER_ONLY))
    core = ClientCore("localhost")
    runner = WaitCounter(session)
    runner.run(core.greet(capa=True))
    runner.run(core.login("alice", PASSWORD))
    before = runner.waits
    result = runner.run(core.listing(uids=False, status=True))
    assert runner.waits == before + 1
    assert runner.writes[-1] == b"LIST\r\nSTAT\r\n"
    count = len(session.config.messages)
    assert result == Listing(result.sizes, None, MailboxStatus(count, sum(result.sizes.values())))
    assert sorted(result.sizes) == list(range(1, count + 1))
    full = runner.run(core.listing())
    assert full.uids is not None and sorted(full.uids) == sorted(full.sizes)
    assert full.status is None


def test_listing_reads_every_reply_before_raising() -> None:
    session = FakeSession(FakeConfig(**USER_ONLY))
    real = session.receive

    def receive(data: bytes) -> Any:
        if data.startswith(b"LIST\r\n"):
            yield b"-ERR [SYS/TEMP] index busy\r\n"
            yield from real(data[len(b"LIST\r\n") :])
            return
        yield from real(data)

    session.receive = receive  # type: ignore[method-assign]
    core = ClientCore("localhost")
    runner = WaitCounter(session)
    runner.run(core.greet(capa=True))
    runner.run(core.login("alice", PASSWORD))
    with pytest.raises(POP3Error, match="LIST"):
        runner.run(core.listing())
    assert core.conn.outstanding == ()
    assert runner.run(core.stat()).count == len(session.config.messages)


def test_quit_without_reply_only_when_nothing_is_marked() -> None:
    session = FakeSession(FakeConfig(**USER_ONLY))
    core = ClientCore("localhost")
    runner = WaitCounter(session)
    runner.run(core.greet(capa=True))
    runner.run(core.login("alice", PASSWORD))
    runner.run(core.delete(1))
    assert core.marked
    with pytest.raises(RuntimeError, match="marked deleted"):
        runner.run(core.quit_without_reply())
    runner.run(core.reset())
    assert not core.marked
    runner.run(core.delete_many([1, 2]))
    assert core.marked
    runner.run(core.reset())
    waits = runner.waits
    runner.run(core.quit_without_reply())
    assert runner.writes[-1] == b"QUIT\r\n" and runner.waits == waits  # no wait
    assert session.closing

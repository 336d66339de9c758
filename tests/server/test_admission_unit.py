"""The I/O-free admission bookkeeping (:mod:`pop3proto.adapters.server._admission`)."""

from __future__ import annotations

import errno

import pytest

from pop3proto.adapters.server._admission import (
    ACCEPT_RESOURCE_ERRORS,
    REFUSALS,
    AcceptBackoff,
    Admission,
    AdmissionLimits,
    RefusalLog,
    Ticket,
    Verdict,
)


def idle(ticket: Ticket, log: list[str], name: str) -> None:
    """Mark *ticket* as waiting, its eviction noted in *log*."""
    ticket.evict = lambda: log.append(name)


def test_admits_up_to_the_cap_then_evicts_the_oldest_idle_preauth() -> None:
    admission = Admission(AdmissionLimits(max_connections=3, max_preauth_per_ip=None))
    evicted: list[str] = []
    tickets = []
    for i in range(3):
        decision = admission.admit(f"10.0.0.{i}", float(i))
        assert decision.verdict is Verdict.ADMIT and decision.ticket is not None
        tickets.append(decision.ticket)
    # The oldest is busy (not waiting): the next oldest idle one goes.
    idle(tickets[1], evicted, "second")
    idle(tickets[2], evicted, "third")
    decision = admission.admit("10.0.0.9", 5.0)
    assert decision.verdict is Verdict.EVICT
    assert decision.victim is tickets[1] and tickets[1].evicted and evicted == ["second"]
    assert tickets[1].evict is None
    assert admission.count == 3
    # The victim's runtime releases it later: no double count.
    tickets[1].release()
    assert admission.count == 3


def test_logged_in_sessions_are_never_evicted() -> None:
    admission = Admission(AdmissionLimits(max_connections=2, max_sessions_per_ip=None))
    a = admission.admit("10.0.0.1", 0.0).ticket
    b = admission.admit("10.0.0.2", 0.0).ticket
    assert a is not None and b is not None
    a.logged_in()
    b.logged_in()
    idle(a, [], "a")
    idle(b, [], "b")
    assert admission.preauth == 0
    decision = admission.admit("10.0.0.3", 1.0)
    assert decision.verdict is Verdict.REFUSE_FULL and decision.ticket is None
    assert REFUSALS[decision.verdict] == "too many connections"
    a.release()
    assert admission.admit("10.0.0.3", 2.0).verdict is Verdict.ADMIT


def test_a_burst_evicts_the_oldest_even_before_it_waits() -> None:
    """Connections accepted in a burst have not started waiting yet: the
    oldest is evicted all the same, and stops at its next wait."""
    admission = Admission(AdmissionLimits(max_connections=2))
    first = admission.admit("10.0.0.1", 0.0).ticket
    assert first is not None and admission.admit("10.0.0.1", 0.0).ticket is not None
    decision = admission.admit("10.0.0.2", 0.0)
    assert decision.verdict is Verdict.EVICT and decision.victim is first
    assert first.evicted and first.receive_timeout(600.0, 0.0) == 0.0
    assert admission.count == 2


def test_per_ip_limits() -> None:
    admission = Admission(AdmissionLimits(max_preauth_per_ip=2, max_sessions_per_ip=1))
    first = admission.admit("10.0.0.1", 0.0).ticket
    second = admission.admit("10.0.0.1", 0.0).ticket
    assert first is not None and second is not None
    refused = admission.admit("10.0.0.1", 0.0)
    assert refused.verdict is Verdict.REFUSE_IP
    assert REFUSALS[refused.verdict] == "too many connections from your address"
    assert admission.admit("10.0.0.2", 0.0).verdict is Verdict.ADMIT  # another address
    # A login moves the connection from the pre-auth count to the sessions
    # count: a pre-auth slot frees, but the address now holds its one session.
    first.logged_in()
    first.logged_in()  # idempotent
    assert admission.admit("10.0.0.1", 0.0).verdict is Verdict.REFUSE_IP
    first.release()
    first.release()  # idempotent
    third = admission.admit("10.0.0.1", 0.0).ticket
    assert third is not None
    second.release()
    third.release()
    assert admission.count == 1  # 10.0.0.2's
    third.logged_in()  # after release: nothing to count
    assert admission.count == 1 and admission.preauth == 1


def test_line_deadline_cannot_be_extended_by_a_trickle() -> None:
    admission = Admission(AdmissionLimits(line_timeout=10.0, login_timeout=1000.0))
    ticket = admission.admit("10.0.0.1", 0.0).ticket
    assert ticket is not None
    assert ticket.receive_timeout(600.0, 0.0) == 600.0  # between lines: the idle timeout
    ticket.received(b"U", 1.0)
    assert ticket.receive_timeout(600.0, 1.0) == 10.0
    for now in (2.0, 5.0, 9.0):
        ticket.received(b"S", now)  # a trickle does not move the line's start
    assert ticket.receive_timeout(600.0, 9.0) == pytest.approx(2.0)
    assert ticket.receive_timeout(600.0, 12.0) == 0.0
    ticket.received(b"ER a\r\n", 10.0)  # the line completes
    assert ticket.receive_timeout(600.0, 10.0) == 600.0
    ticket.received(b"NOOP\r\nST", 20.0)  # a complete line, then a new one starts
    assert ticket.receive_timeout(600.0, 25.0) == pytest.approx(5.0)
    ticket.received(b"", 26.0)  # end of stream: nothing changes
    assert ticket.receive_timeout(600.0, 26.0) == pytest.approx(4.0)


def test_login_deadline_counts_from_accept_until_login() -> None:
    admission = Admission(AdmissionLimits(line_timeout=1000.0, login_timeout=30.0))
    ticket = admission.admit("10.0.0.1", 100.0).ticket
    assert ticket is not None
    ticket.received(b"NOOP\r\n", 110.0)
    assert ticket.receive_timeout(600.0, 120.0) == pytest.approx(10.0)
    assert ticket.receive_timeout(600.0, 131.0) == 0.0
    ticket.logged_in()
    assert ticket.receive_timeout(600.0, 131.0) == 600.0


def test_accept_backoff_doubles_and_logs_once_per_episode() -> None:
    assert {errno.EMFILE, errno.ENFILE} <= ACCEPT_RESOURCE_ERRORS
    backoff = AcceptBackoff(first=0.05, most=0.3)
    waits = [backoff.failed() for _ in range(5)]
    assert [d for d, _ in waits] == [0.05, 0.1, 0.2, 0.3, 0.3]
    assert [tell for _, tell in waits] == [True, False, False, False, False]
    assert backoff.succeeded() == 5
    assert backoff.succeeded() == 0
    assert backoff.failed() == (0.05, True)


def test_refusal_log_sums_refusals() -> None:
    log = RefusalLog(every=10.0)
    assert log.refused(0.0) == 1
    assert [log.refused(t) for t in (1.0, 2.0, 3.0)] == [0, 0, 0]
    assert log.refused(10.0) == 4
    assert log.refused(11.0) == 0

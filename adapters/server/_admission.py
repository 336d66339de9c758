"""Who gets a connection slot, and for how long: I/O-free bookkeeping.

The blocking, asyncio and trio servers admit connections the same way;
the decisions are written here once, and each runtime only wires them in
(it passes its own clock's ``now`` in seconds, and acts on what it is told):

* :class:`Admission` counts every connection **from accept**, TLS
  handshake included, so silent handshakes cannot exhaust descriptors or
  memory behind the cap's back.  :meth:`Admission.admit` decides for a new
  connection: admitted, admitted after evicting the **oldest idle
  unauthenticated** connection (the pool is full: the newcomer is more
  likely a real user than a connection that has said nothing since), or
  refused (its address is over a per-IP limit, or every slot holds a
  logged-in or busy session).  Per-IP limits count unauthenticated
  connections (``max_preauth_per_ip``) and logged-in sessions
  (``max_sessions_per_ip``, checked at accept: a client already holding
  that many sessions gets no new connection).
* A :class:`Ticket` per connection carries its deadlines: besides the idle
  timeout, a command line must complete within ``line_timeout`` seconds of
  its first octet, and a client must log in within ``login_timeout``
  seconds of accept.  Neither is moved by the octets a client trickles in,
  unlike the idle timer (RFC 1939 §3 asks only for an inactivity timer of
  at least 10 minutes; these bound what a slowloris client can hold).
* :class:`AcceptBackoff` paces the accept loop when ``accept()`` fails for
  want of resources (``EMFILE``, ``ENFILE``, ``ENOBUFS``, ``ENOMEM``):
  waits that double up to a second, and one log line per episode instead
  of one per failed call.
"""

from __future__ import annotations

import enum
import errno
import math
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = [
    "ACCEPT_RESOURCE_ERRORS",
    "AcceptBackoff",
    "Admission",
    "AdmissionLimits",
    "Decision",
    "REFUSALS",
    "RefusalLog",
    "Ticket",
    "Verdict",
]

#: ``accept()`` errors that mean the process or system is out of a
#: resource: retrying at once only spins.
ACCEPT_RESOURCE_ERRORS: frozenset[int] = frozenset(
    {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
)


class Ticket:
    """One admitted connection: its address, phase and deadlines.

    The runtime sets :attr:`evict` to a callable that interrupts the
    connection while it waits idle (for a handshake to progress or for a
    command), and back to ``None`` when it stops waiting.  Only
    unauthenticated connections are evicted, waiting ones first;
    :attr:`evicted` then says why the wait ended, and a connection evicted
    while not waiting stops at its next wait (:meth:`receive_timeout`
    is then ``0``).
    """

    __slots__ = (
        "_admission",
        "_released",
        "accepted",
        "authenticated",
        "evict",
        "evicted",
        "ip",
        "line_started",
    )

    def __init__(self, admission: Admission, ip: str, now: float) -> None:
        self._admission = admission
        self.ip = ip
        #: When the connection was accepted (the runtime's clock).
        self.accepted = now
        #: Whether its session has logged in.
        self.authenticated = False
        #: When the first octet of the command line being received came,
        #: or ``None`` between lines.
        self.line_started: float | None = None
        #: Interrupts the connection's current idle wait (set by the runtime).
        self.evict: Callable[[], object] | None = None
        #: Whether it was evicted for a newcomer.
        self.evicted = False
        self._released = False

    def receive_timeout(self, idle_timeout: float, now: float) -> float:
        """Seconds the next read may wait: the idle timeout, cut short by
        the line deadline and, before login, the login deadline.  ``0``
        when a deadline has passed (the runtime then answers the read with
        a timeout at once)."""
        if self.evicted:
            return 0.0
        limits = self._admission.limits
        timeout = idle_timeout
        if self.line_started is not None:
            timeout = min(timeout, self.line_started + limits.line_timeout - now)
        if not self.authenticated:
            timeout = min(timeout, self.accepted + limits.login_timeout - now)
        return max(timeout, 0.0)

    def received(self, data: bytes, now: float) -> None:
        """Note octets read at *now*: a line started by them starts its
        line deadline; a line completed ends it."""
        if not data:
            return
        end = data.rfind(b"\n")
        if end == -1:
            if self.line_started is None:
                self.line_started = now
        elif end == len(data) - 1:
            self.line_started = None
        else:
            self.line_started = now

    def logged_in(self) -> None:
        """The session has authenticated: it leaves the pre-auth pool and
        its login deadline no longer applies."""
        self._admission._logged_in(self)

    def release(self) -> None:
        """The connection is closed: free its slot.  Idempotent."""
        self._admission._release(self)


class Verdict(enum.Enum):
    """What :meth:`Admission.admit` decided."""

    #: A slot was free.
    ADMIT = "admit"
    #: Admitted; :attr:`Decision.victim` was evicted to make room.
    EVICT = "evict"
    #: The address is over a per-IP limit.
    REFUSE_IP = "refuse-ip"
    #: Every slot holds a logged-in or busy connection.
    REFUSE_FULL = "refuse-full"


#: The text of the ``-ERR [SYS/TEMP]`` line for each refusal (plaintext
#: connections only: an implicit-TLS client is just closed).
REFUSALS: dict[Verdict, str] = {
    Verdict.REFUSE_IP: "too many connections from your address",
    Verdict.REFUSE_FULL: "too many connections",
}


@dataclass(frozen=True)
class Decision:
    """The outcome of :meth:`Admission.admit`.

    Fields:
        verdict: the :class:`Verdict`.
        ticket: the new connection's :class:`Ticket`, or ``None`` if refused.
        victim: the connection evicted for it (already told, through its
            ``evict`` callable), or ``None``.
    """

    verdict: Verdict
    ticket: Ticket | None = None
    victim: Ticket | None = None


@dataclass(frozen=True)
class AdmissionLimits:
    """The limits :class:`Admission` enforces (see the module docstring).

    Fields:
        max_connections: connections at once, from accept.
        max_preauth_per_ip: unauthenticated connections per address, or
            ``None`` for no limit.
        max_sessions_per_ip: logged-in sessions per address (checked at
            accept), or ``None``.
        line_timeout: seconds a command line may take from its first octet.
        login_timeout: seconds from accept to a successful login.
    """

    max_connections: int = 100
    max_preauth_per_ip: int | None = 10
    max_sessions_per_ip: int | None = 10
    line_timeout: float = 60.0
    login_timeout: float = 120.0


class Admission:
    """The connection slots of one server; not thread-safe (the blocking
    server holds a lock around it)."""

    def __init__(self, limits: AdmissionLimits) -> None:
        self.limits = limits
        # Insertion order is accept order: the first idle one is the oldest.
        self._preauth: dict[Ticket, None] = {}
        self._count = 0
        self._preauth_by_ip: dict[str, int] = {}
        self._sessions_by_ip: dict[str, int] = {}

    @property
    def count(self) -> int:
        """Connections holding a slot."""
        return self._count

    @property
    def preauth(self) -> int:
        """Unauthenticated connections holding a slot."""
        return len(self._preauth)

    def admit(self, ip: str, now: float) -> Decision:
        """Decide for a connection accepted from *ip* at *now*."""
        limits = self.limits
        if _over(self._preauth_by_ip.get(ip, 0), limits.max_preauth_per_ip) or _over(
            self._sessions_by_ip.get(ip, 0), limits.max_sessions_per_ip
        ):
            return Decision(Verdict.REFUSE_IP)
        victim = None
        if self._count >= limits.max_connections:
            # The oldest waiting one; else (a burst of connections not yet
            # started) the oldest, which stops at its next wait.
            victim = next((t for t in self._preauth if t.evict is not None), None)
            if victim is None:
                victim = next(iter(self._preauth), None)
                if victim is None:
                    return Decision(Verdict.REFUSE_FULL)
            evict = victim.evict
            victim.evicted = True
            # The victim's slot is freed now, not when its runtime gets to
            # closing it: the newcomer takes it.
            self._release(victim)
            if evict is not None:
                evict()
        ticket = Ticket(self, ip, now)
        self._count += 1
        self._preauth[ticket] = None
        self._preauth_by_ip[ip] = self._preauth_by_ip.get(ip, 0) + 1
        return Decision(Verdict.EVICT if victim else Verdict.ADMIT, ticket, victim)

    def _logged_in(self, ticket: Ticket) -> None:
        if ticket.authenticated or ticket._released:
            return
        ticket.authenticated = True
        self._preauth.pop(ticket, None)
        _decrement(self._preauth_by_ip, ticket.ip)
        self._sessions_by_ip[ticket.ip] = self._sessions_by_ip.get(ticket.ip, 0) + 1

    def _release(self, ticket: Ticket) -> None:
        if ticket._released:
            return
        ticket._released = True
        ticket.evict = None
        self._count -= 1
        if ticket.authenticated:
            _decrement(self._sessions_by_ip, ticket.ip)
        else:
            self._preauth.pop(ticket, None)
            _decrement(self._preauth_by_ip, ticket.ip)


def _over(count: int, limit: int | None) -> bool:
    return limit is not None and count >= limit


def _decrement(counts: dict[str, int], ip: str) -> None:
    left = counts[ip] - 1
    if left:
        counts[ip] = left
    else:
        del counts[ip]


@dataclass
class AcceptBackoff:
    """Paces an accept loop through resource exhaustion (see the module
    docstring).  :meth:`failed` gives the seconds to wait and whether to
    log; :meth:`succeeded` ends the episode."""

    first: float = 0.05
    most: float = 1.0
    _delay: float = field(default=0.0, repr=False)
    _failures: int = field(default=0, repr=False)

    def failed(self) -> tuple[float, bool]:
        """A resource error: ``(seconds to wait, log it)``; only the first
        failure of an episode is logged."""
        self._failures += 1
        self._delay = self.first if self._delay == 0.0 else min(self._delay * 2, self.most)
        return self._delay, self._failures == 1

    def succeeded(self) -> int:
        """An accept worked: the failures of the episode that ends (``0``
        if none), to log once."""
        failures, self._failures, self._delay = self._failures, 0, 0.0
        return failures


class RefusalLog:
    """Keeps refusals from flooding the log: :meth:`refused` returns how
    many refusals to report now (the first at once, then a sum at most
    every *every* seconds), or ``0`` to stay quiet."""

    def __init__(self, every: float = 10.0) -> None:
        self.every = every
        self._pending = 0
        self._next = -math.inf

    def refused(self, now: float) -> int:
        """Count one refusal at *now*; the number to log, or ``0``."""
        self._pending += 1
        if now < self._next:
            return 0
        count, self._pending = self._pending, 0
        self._next = now + self.every
        return count

"""What a failed login costs: the failure delay and the growing penalties.

A server that answers a wrong password at once lets one address try
thousands of passwords a second.  :class:`AuthPenalties` is the server's
memory of recent failures, shared by every connection of one server (one
process: with ``pop3proto serve --workers N`` each worker keeps its own, and
each client address always reaches the same worker; SECURITY.md "Several
worker processes"),
and it decides how long each answer to a credential check is held back:

* Every failed login waits ``auth_failure_delay`` seconds (2, like
  Dovecot's ``auth_failure_delay``) before its ``-ERR``.
* Each recent failure from the client's address, and each recent failure
  on the account named, doubles that, up to ``auth_penalty_max`` (15 s):
  with *n* the larger of the two counts, an answer waits
  ``min(auth_failure_delay * 2**n, auth_penalty_max)``.  IPv6 addresses
  count by their /64 network (one host usually holds a whole /64).
* A correct password waits the same penalty when *n* > 0 (none when
  *n* = 0), so a client that gives up early on an answer learns nothing
  sooner than a patient one: guessing gets no faster.  A success clears
  the account's count, never the address's (else logging in to one's own
  account would wipe the address's record between guesses at others).
* A count is forgotten ``auth_penalty_reset`` seconds after its last
  failure (900 s), and each table holds at most ``auth_penalty_entries``
  keys, the least recently failed dropped first, so memory stays bounded
  whatever an attacker sends.

Only the wait is decided here; the session holds its answer for that long
with the seam's :class:`~pop3proto.adapters._seam.Sleep`, which each
runtime performs without holding up other connections (on the event loop,
or in the connection's own thread).  Sessions already logged in never
wait: they make no credential checks.

This module does no I/O: the clock is injected (``time.monotonic`` by
default) and a lock makes it safe to share between the blocking server's
threads.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["AuthPenalties", "address_key"]


def address_key(ip: str) -> str:
    """The key an address counts under: the address itself, or for IPv6
    its /64 network (an IPv4-mapped address counts as its IPv4 address)."""
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return ip
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.IPv6Network((addr, 64), strict=False))
    return str(addr)


@dataclass
class _Count:
    failures: int
    last: float


class _Table:
    """Failure counts by key, forgotten after *reset* seconds, at most
    *limit* keys (least recently failed dropped first)."""

    def __init__(self, limit: int, reset: float) -> None:
        self._counts: OrderedDict[str, _Count] = OrderedDict()
        self._limit = limit
        self._reset = reset

    def __len__(self) -> int:
        return len(self._counts)

    def failures(self, key: str, now: float) -> int:
        count = self._counts.get(key)
        if count is None:
            return 0
        if now - count.last >= self._reset:
            del self._counts[key]
            return 0
        return count.failures

    def add(self, key: str, now: float) -> None:
        failures = self.failures(key, now)
        self._counts[key] = _Count(failures + 1, now)
        self._counts.move_to_end(key)
        while len(self._counts) > self._limit:
            self._counts.popitem(last=False)

    def clear(self, key: str) -> None:
        self._counts.pop(key, None)


class AuthPenalties:
    """The failure counts of one server; see the module docstring.

    Args:
        failure_delay: seconds every failed login waits (``0``: no delay
            and no penalties).
        penalty_max: the most any answer waits.
        reset: seconds after its last failure that a count is forgotten.
        entries: the most keys each table (addresses, accounts) holds.
        clock: seconds from any fixed point, never going back
            (``time.monotonic``; tests pass their own).
    """

    def __init__(
        self,
        *,
        failure_delay: float = 2.0,
        penalty_max: float = 15.0,
        reset: float = 900.0,
        entries: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """See the class docstring."""
        if not failure_delay >= 0:
            raise ValueError("failure_delay must be >= 0")
        if not penalty_max >= failure_delay:
            raise ValueError("penalty_max must be >= failure_delay")
        if not reset > 0:
            raise ValueError("reset must be positive")
        if entries < 1:
            raise ValueError("entries must be at least 1")
        self.failure_delay = failure_delay
        self.penalty_max = penalty_max
        self._clock = clock
        self._addresses = _Table(entries, reset)
        self._accounts = _Table(entries, reset)
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        """Whether failures cost anything (``failure_delay > 0``)."""
        return self.failure_delay > 0

    def sizes(self) -> tuple[int, int]:
        """How many (addresses, accounts) are remembered now."""
        with self._lock:
            return len(self._addresses), len(self._accounts)

    def _wait(self, failures: int) -> float:
        # 2 ** failures overflows a float long after the cap is reached.
        return min(self.failure_delay * 2.0 ** min(failures, 64), self.penalty_max)

    def failures(self, ip: str, account: str | None) -> int:
        """The recent failures that count for *ip* and *account* now (the
        larger of the two counts)."""
        with self._lock:
            return self._failures(ip, account, self._clock())

    def penalty(self, ip: str, account: str | None) -> float:
        """How long a correct password from *ip* for *account* waits now."""
        if not self.enabled:
            return 0.0
        with self._lock:
            failures = self._failures(ip, account, self._clock())
        return self._wait(failures) if failures else 0.0

    def succeeded(self, ip: str, account: str | None) -> float:
        """A correct password from *ip* for *account*: the seconds to hold
        the ``+OK`` (the current penalty); clears the account's count."""
        if not self.enabled:
            return 0.0
        with self._lock:
            failures = self._failures(ip, account, self._clock())
            if account is not None:
                self._accounts.clear(account)
        return self._wait(failures) if failures else 0.0

    def failed(self, ip: str, account: str | None) -> float:
        """A failed login from *ip* for *account* (``None`` when no name
        was given): the seconds to hold the ``-ERR``; counts the failure."""
        if not self.enabled:
            return 0.0
        with self._lock:
            now = self._clock()
            failures = self._failures(ip, account, now)
            self._addresses.add(address_key(ip), now)
            if account is not None:
                self._accounts.add(account, now)
        return self._wait(failures)

    def _failures(self, ip: str, account: str | None, now: float) -> int:
        by_address = self._addresses.failures(address_key(ip), now)
        by_account = self._accounts.failures(account, now) if account is not None else 0
        return max(by_address, by_account)

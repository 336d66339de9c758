"""No server lets a backend or an authenticator hold up other sessions.

The event-loop servers must not block their loop; the blocking server runs
one connection thread at a time (its run token) and must give the token up
around such calls.

A logged-in session sends NOOPs while, at the same time, four other
clients fail logins for an unknown user (each one a PBKDF2 derivation of
600,000 rounds, the ``hash_password`` default) and another session logs in
to a maildrop whose ``open()`` takes a second (a large maildrop being
scanned).  Run on the loop (or with the run token held), each of those
would hold every NOOP for its whole length; run in worker threads (or
without the token), the NOOPs stay fast.  The assertion
is a ratio, robust on a busy machine: the median NOOP round trip is under
a fifth of the fastest slow operation measured at the same time.
"""

from __future__ import annotations

import statistics
import threading
import time
from typing import Any

import pytest

from pop3proto.adapters import sync as sync_client
from pop3proto.adapters.server import DictAuthenticator, MemoryBackend, hash_password
from tests.helpers import running_server

PASSWORD = "correct horse battery"
OPEN_DELAY = 1.0
MESSAGE = b"Subject: hi\r\n\r\nhello\r\n"


class SlowOpenBackend(MemoryBackend):
    """``open("big")`` takes :data:`OPEN_DELAY` seconds (a blocking scan)."""

    def open(self, user: str) -> Any:
        if user == "big":
            time.sleep(OPEN_DELAY)
        return super().open(user)


def authenticator() -> DictAuthenticator:
    return DictAuthenticator(
        {
            "alice": PASSWORD,
            "big": PASSWORD,
            # Unknown users cost what the most expensive stored user costs.
            "carol": hash_password(PASSWORD),
        }
    )


def _fail_logins(address: tuple[str, int], stop: threading.Event, times: list[float]) -> None:
    while not stop.is_set():
        with sync_client.Client(*address, tls="none", timeout=60) as client:
            started = time.perf_counter()
            with pytest.raises(sync_client.AuthenticationFailed):
                client.login("nobody", "x", mechanism="USER")
            times.append(time.perf_counter() - started)


def _open_big(address: tuple[str, int], stop: threading.Event, times: list[float]) -> None:
    while not stop.is_set():
        with sync_client.Client(*address, tls="none", timeout=60) as client:
            started = time.perf_counter()
            client.login("big", PASSWORD, mechanism="USER")
            times.append(time.perf_counter() - started)


@pytest.mark.parametrize("kind", ["sync", "asyncio", "trio"])
def test_noop_stays_fast_while_others_hash_and_open(kind: str) -> None:
    backend = SlowOpenBackend({"alice": [MESSAGE], "big": [MESSAGE] * 100})
    with running_server(kind, backend, authenticator()) as running:
        address = running.address
        with sync_client.Client(*address, tls="none", timeout=60) as alice:
            alice.login("alice", PASSWORD, mechanism="USER")
            alice.noop()
            stop = threading.Event()
            failures: list[float] = []
            opens: list[float] = []
            threads = [
                threading.Thread(target=_fail_logins, args=(address, stop, failures))
                for _ in range(4)
            ]
            threads.append(threading.Thread(target=_open_big, args=(address, stop, opens)))
            for thread in threads:
                thread.start()
            noops: list[float] = []
            try:
                # Sample while the slow operations are under way: at least
                # two of each finished, and at least 40 NOOPs.
                deadline = time.monotonic() + 120
                while (len(failures) < 8 or len(opens) < 2 or len(noops) < 40) and (
                    time.monotonic() < deadline
                ):
                    started = time.perf_counter()
                    alice.noop()
                    noops.append(time.perf_counter() - started)
                    time.sleep(0.01)
            finally:
                stop.set()
                for thread in threads:
                    thread.join(120)
    assert len(failures) >= 8 and len(opens) >= 2, (len(failures), len(opens))
    slowest_allowed = min(statistics.median(failures), min(opens)) / 5
    assert min(opens) >= OPEN_DELAY
    assert statistics.median(noops) < slowest_allowed, (
        f"NOOP median {statistics.median(noops) * 1000:.1f} ms; failed login median "
        f"{statistics.median(failures) * 1000:.0f} ms; open {min(opens) * 1000:.0f} ms"
    )


class FailingCommitBackend(MemoryBackend):
    """Every maildrop's ``commit()`` raises, as a broken disk would."""

    def open(self, user: str) -> Any:
        maildrop = super().open(user)

        def commit(deleted: Any) -> bool:
            raise OSError("disk on fire")

        maildrop.commit = commit  # type: ignore[method-assign]
        return maildrop


@pytest.mark.parametrize("kind", ["sync", "asyncio", "trio"])
def test_a_handed_over_call_that_raises_is_answered(kind: str) -> None:
    """What a call made outside the session raised comes back to it: a
    failed commit is ``-ERR [SYS/TEMP]``, and nothing is deleted."""
    backend = FailingCommitBackend({"alice": [MESSAGE, MESSAGE]})
    with running_server(kind, backend, authenticator()) as running:
        with sync_client.Client(*running.address, tls="none", timeout=60) as alice:
            alice.login("alice", PASSWORD, mechanism="USER")
            alice.delete(1)
            assert alice.quit() is False
        running.wait_idle()
    assert len(backend.open("alice").messages()) == 2

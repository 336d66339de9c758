"""Failed logins cost an attacker time (issue 14, item 3; SECURITY.md
"Authentication failures").

The bookkeeping (:class:`AuthPenalties`) is tested with an injected clock;
the session's use of it by the seconds of its ``Sleep`` actions, exactly;
the runtimes by orderings and generous lower bounds, so that a busy
machine cannot fail them.
"""

from __future__ import annotations

import threading
import time

import pytest

from pop3proto import Apop, Auth, Err, Ok, Pass, SaslCancel, SaslChallenge, User, apop_digest
from pop3proto.adapters._seam import Send, Sleep
from pop3proto.adapters.mailstore._memory import MemoryBackend
from pop3proto.adapters.server._config import ServerConfig
from pop3proto.adapters.server._loop import serve_session
from pop3proto.adapters.server._penalties import AuthPenalties, address_key
from pop3proto.adapters.server._session import ServerSession
from pop3proto.sasl import PlainClient, ScramClient, ScramSha1Client
from tests.helpers import PASSWORD, RUNTIMES, read_to_eof, recv_until, running_server
from tests.helpers.stores import count_key_derivations
from tests.server.test_session import Harness, make_auth, make_backend


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def penalties(clock: Clock | None = None, **kwargs: float) -> AuthPenalties:
    return AuthPenalties(clock=clock or Clock(), **kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------
# The bookkeeping
# ---------------------------------------------------------------------------


def test_the_delay_doubles_with_each_recent_failure_up_to_the_cap() -> None:
    p = penalties()
    waits = [p.failed("192.0.2.1", "alice") for _ in range(6)]
    assert waits == [2.0, 4.0, 8.0, 15.0, 15.0, 15.0]


def test_failures_are_forgotten_after_a_quiet_period() -> None:
    clock = Clock()
    p = penalties(clock, reset=900.0)
    for _ in range(3):
        p.failed("192.0.2.1", "alice")
    clock.now += 899.0
    assert p.penalty("192.0.2.1", "alice") == 15.0  # three remembered
    assert p.failures("192.0.2.1", "alice") == 3
    clock.now += 900.0
    assert p.penalty("192.0.2.1", "alice") == 0.0
    assert p.failed("192.0.2.1", "alice") == 2.0
    assert p.failures("192.0.2.1", "alice") == 1
    # A failure in the quiet period starts the period again.
    clock.now += 600.0
    p.failed("192.0.2.1", "alice")
    clock.now += 600.0
    assert p.failures("192.0.2.1", "alice") == 2


def test_address_and_account_count_apart_and_the_larger_wins() -> None:
    p = penalties()
    for user in ("alice", "bob", "carol"):
        p.failed("192.0.2.1", user)
    # Another account from the guessing address: its three failures count.
    assert p.penalty("192.0.2.1", "dave") == 15.0
    # The guessed account from another address: one failure each.
    assert p.penalty("198.51.100.7", "alice") == 4.0
    # Neither: nothing.
    assert p.penalty("198.51.100.7", "dave") == 0.0
    # No account named (a malformed SASL exchange): the address counts.
    assert p.failed("192.0.2.1", None) == 15.0


def test_a_success_waits_the_penalty_and_clears_only_the_account() -> None:
    p = penalties()
    p.failed("192.0.2.1", "alice")
    p.failed("192.0.2.1", "alice")
    assert p.succeeded("192.0.2.1", "alice") == 8.0
    assert p.failures("198.51.100.7", "alice") == 0
    # The address keeps its record: logging in to one's own account does
    # not wipe it between guesses at others.
    assert p.failures("192.0.2.1", "mallory") == 2
    assert p.succeeded("198.51.100.7", "alice") == 0.0


def test_ipv6_counts_by_slash_64_and_mapped_ipv4_as_ipv4() -> None:
    assert address_key("2001:db8::1") == address_key("2001:db8::ffff:2") == "2001:db8::/64"
    assert address_key("2001:db8:0:1::1") == "2001:db8:0:1::/64"
    assert address_key("::ffff:192.0.2.1") == "192.0.2.1"
    assert address_key("fe80::1%eth0") == "fe80::/64"
    assert address_key("") == ""
    p = penalties()
    p.failed("2001:db8::1", None)
    assert p.penalty("2001:db8::2", None) == 4.0
    assert p.penalty("2001:db8:0:1::2", None) == 0.0


def test_memory_is_bounded_least_recently_failed_first() -> None:
    p = penalties(entries=100)
    for i in range(10_000):
        p.failed(f"10.0.{i // 256}.{i % 256}", f"user{i}")
    assert p.sizes() == (100, 100)
    assert p.failures("10.0.0.0", "user0") == 0  # the oldest went first
    assert p.failures("10.0.39.15", "user9999") == 1


def test_no_delay_means_no_bookkeeping() -> None:
    p = penalties(failure_delay=0, penalty_max=0)
    assert not p.enabled
    assert p.failed("192.0.2.1", "alice") == 0.0
    assert p.succeeded("192.0.2.1", "alice") == 0.0
    assert p.penalty("192.0.2.1", "alice") == 0.0
    assert p.sizes() == (0, 0)


def test_threads_share_one_record() -> None:
    p = AuthPenalties()
    start = threading.Barrier(8)

    def fail() -> None:
        start.wait()
        for _ in range(500):
            p.failed("192.0.2.1", "alice")

    threads = [threading.Thread(target=fail) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert p.failures("192.0.2.1", "alice") == 4000


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"failure_delay": -1.0}, "failure_delay"),
        ({"failure_delay": float("nan")}, "failure_delay"),
        ({"failure_delay": 3.0, "penalty_max": 2.0}, "penalty_max"),
        ({"reset": 0.0}, "reset"),
        ({"entries": 0}, "entries"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AuthPenalties(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"auth_failure_delay": -1.0}, "auth_failure_delay"),
        ({"auth_failure_delay": float("inf")}, "auth_failure_delay"),
        ({"auth_failure_delay": 5.0, "auth_penalty_max": 2.0}, "auth_penalty_max"),
        ({"auth_penalty_max": 7200.0}, "auth_penalty_max"),
        ({"auth_penalty_reset": 0.0}, "auth_penalty_reset"),
        ({"auth_penalty_reset": float("nan")}, "auth_penalty_reset"),
        ({"auth_penalty_entries": 0}, "auth_penalty_entries"),
    ],
)
def test_bad_config_fields_are_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ServerConfig(**kwargs)  # type: ignore[arg-type]


def test_the_defaults_are_the_secure_ones() -> None:
    config = ServerConfig()
    assert config.auth_failure_delay == 2.0
    assert config.auth_penalty_max == 15.0
    assert config.auth_penalty_reset == 900.0
    assert config.auth_penalty_entries == 100_000


# ---------------------------------------------------------------------------
# The session: each verdict held for exactly what the record says
# ---------------------------------------------------------------------------


def harness(p: AuthPenalties, ip: str = "192.0.2.1") -> Harness:
    return Harness(penalties=p, ip=ip)


def wrong_pass(h: Harness, user: str = "alice") -> None:
    assert h.one(User(user)) == Ok("send PASS")
    assert isinstance(h.one(Pass("wrong")), Err)


@pytest.mark.auth_delay
def test_a_session_of_its_own_waits_the_default_delay() -> None:
    """Without a server's record, a session keeps its own, from its config."""
    h = Harness()
    wrong_pass(h)
    wrong_pass(h)
    assert h.slept == [2.0, 4.0]
    # The Sleep comes before the -ERR it holds.
    kinds = [type(a) for a in h.actions[-2:]]
    assert kinds == [Sleep, Send]


def test_sessions_of_one_server_share_the_record() -> None:
    p = penalties()
    slept = []
    for _ in range(4):
        h = harness(p)
        wrong_pass(h)
        slept += h.slept
    assert slept == [2.0, 4.0, 8.0, 15.0]


def test_a_correct_password_waits_the_penalty_then_logs_in() -> None:
    p = penalties()
    h = harness(p)
    wrong_pass(h)
    wrong_pass(h)
    good = harness(p)
    good.login()
    assert good.slept == [8.0]
    # The account starts afresh; the address does not.
    assert p.failures("198.51.100.7", "alice") == 0
    assert p.failures("192.0.2.1", "bob") == 2
    # A first login that nobody failed before waits nothing.
    fresh = harness(p, ip="198.51.100.7")
    fresh.login()
    assert fresh.slept == []


def test_the_account_counts_whichever_address_guesses() -> None:
    p = penalties()
    for i in range(3):
        wrong_pass(harness(p, ip=f"203.0.113.{i}"))
    h = harness(p, ip="198.51.100.7")
    wrong_pass(h)
    assert h.slept == [15.0]
    # An unknown name counts like a known one (nothing to enumerate).
    for _ in range(2):
        wrong_pass(harness(p, ip="198.51.100.8"), user="nobody-here")
    assert p.failures("198.51.100.9", "nobody-here") == 2


def test_every_login_method_counts_on_the_account_it_names() -> None:
    p = penalties()
    plain = harness(p, ip="203.0.113.1")
    assert isinstance(plain.sasl(PlainClient("alice", "wrong")), Err)
    scram = harness(p, ip="203.0.113.2")
    assert isinstance(scram.sasl(ScramClient("alice", "wrong")), Err)
    apop = harness(p, ip="203.0.113.3")
    timestamp = apop.session.timestamp
    assert timestamp is not None
    assert isinstance(apop.one(Apop("alice", apop_digest(timestamp, "wrong"))), Err)
    assert (plain.slept, scram.slept, apop.slept) == ([2.0], [4.0], [8.0])
    assert p.failures("198.51.100.7", "alice") == 3


def test_challenges_and_refusals_are_not_held() -> None:
    """Only a verdict on credentials waits: a SASL challenge, or a refusal
    that checked nothing, goes out at once."""
    p = penalties()
    p.failed("192.0.2.1", "alice")
    h = harness(p)
    mech = ScramClient("alice", PASSWORD)
    events = h.send(Auth(mech.name, mech.initial_response()))
    assert isinstance(events[-1], SaslChallenge)
    assert h.slept == []
    assert isinstance(h.one(SaslCancel()), Err)
    assert isinstance(h.one(Auth("NOT-A-MECH")), Err)
    assert h.slept == []


def test_the_loop_writes_earlier_replies_before_a_sleep() -> None:
    """Pipelined commands before a failed PASS are answered before its
    delay starts; only the -ERR waits."""
    session = ServerSession(
        make_backend(),
        make_auth(),
        ServerConfig(hostname="t"),
        is_loopback=True,
        penalties=penalties(),
    )
    loop = serve_session(session)
    assert next(loop).data.startswith(b"+OK")  # type: ignore[union-attr]
    loop.send(None)  # the first Receive
    request = loop.send(b"UTF8\r\nUSER alice\r\nPASS wrong\r\n")
    assert isinstance(request, Send)
    assert request.data == b"+OK UTF8 enabled\r\n+OK send PASS\r\n"
    request = loop.send(None)
    assert request == Sleep(2.0)
    request = loop.send(None)
    assert isinstance(request, Send) and request.data.startswith(b"-ERR [AUTH]")
    loop.close()


# ---------------------------------------------------------------------------
# The runtimes: the delay is real, shared, and holds up no one else
# ---------------------------------------------------------------------------

BASE = 0.25


def timed_login(address: tuple[str, int], password: str) -> tuple[bytes, float]:
    """Log in as alice on a new connection; the last reply and how long the
    PASS took to answer."""
    import socket

    with socket.create_connection(address, timeout=30) as sock:
        recv_until(sock, lambda d: d.endswith(b"\r\n"))
        sock.sendall(b"USER alice\r\n")
        recv_until(sock, lambda d: d.endswith(b"\r\n"))
        started = time.monotonic()
        sock.sendall(f"PASS {password}\r\n".encode())
        reply = recv_until(sock, lambda d: d.endswith(b"\r\n"), limit=30)
        return reply, time.monotonic() - started


@pytest.fixture
def delayed() -> ServerConfig:
    return ServerConfig(auth_failure_delay=BASE, auth_penalty_max=10 * BASE)


@pytest.mark.auth_delay
@pytest.mark.parametrize("kind", RUNTIMES)
def test_failures_wait_longer_each_time_and_so_does_the_right_password(
    kind: str, delayed: ServerConfig
) -> None:
    with running_server(kind, MemoryBackend({"alice": []}), config=delayed) as running:
        first, t1 = timed_login(running.address, "wrong")
        second, t2 = timed_login(running.address, "wrong")
        good, t3 = timed_login(running.address, PASSWORD)
    assert first.startswith(b"-ERR [AUTH]") and second.startswith(b"-ERR [AUTH]")
    assert good.startswith(b"+OK")
    # BASE, then 2 x BASE (one failure before), then 4 x BASE for the
    # correct password (two before); lower bounds only.
    assert t1 >= 0.8 * BASE
    assert t2 >= 1.6 * BASE
    assert t3 >= 3.2 * BASE


@pytest.mark.auth_delay
@pytest.mark.parametrize("kind", RUNTIMES)
def test_a_flood_of_bad_logins_does_not_slow_a_logged_in_user(kind: str) -> None:
    """While six connections wait out their failures, a logged-in session's
    commands are answered at once: every NOOP before any -ERR."""
    import socket

    config = ServerConfig(auth_failure_delay=1.5, auth_penalty_max=3.0)
    with (
        running_server(kind, MemoryBackend({"alice": []}), config=config) as running,
        socket.create_connection(running.address, timeout=30) as user,
    ):
        recv_until(user, lambda d: d.endswith(b"\r\n"))
        user.sendall(f"USER alice\r\nPASS {PASSWORD}\r\n".encode())
        assert recv_until(user, lambda d: d.count(b"\r\n") == 2).count(b"+OK") == 2
        flood = [socket.create_connection(running.address, timeout=30) for _ in range(6)]
        try:
            for sock in flood:
                recv_until(sock, lambda d: d.endswith(b"\r\n"))
                sock.sendall(b"USER alice\r\nPASS wrong\r\n")
            for sock in flood:
                assert recv_until(sock, lambda d: d.endswith(b"\r\n")) == b"+OK send PASS\r\n"
            started = time.monotonic()
            noops = []
            for _ in range(5):
                user.sendall(b"NOOP\r\n")
                assert recv_until(user, lambda d: d.endswith(b"\r\n")) == b"+OK\r\n"
                noops.append(time.monotonic())
            errs = []
            for sock in flood:
                reply = recv_until(sock, lambda d: d.endswith(b"\r\n"), limit=30)
                assert reply.startswith(b"-ERR [AUTH]"), reply
                errs.append(time.monotonic())
        finally:
            for sock in flood:
                sock.close()
        user.sendall(b"QUIT\r\n")
        read_to_eof(user)
    assert max(noops) < min(errs)
    assert min(errs) - started >= 1.0  # the flood really was held


# ---------------------------------------------------------------------------
# SCRAM-SHA-1: the salts of everyone survive a restart
# ---------------------------------------------------------------------------

_FIRST = """
import base64, json, sys
from pop3proto.adapters.mailstore._memory import MemoryBackend
from pop3proto.adapters.mailstore._users import UsersFile
from pop3proto.adapters.server import ServerConfig, ServerSession
config = ServerConfig(hostname="t", sasl_mechanisms=("SCRAM-SHA-1", "SCRAM-SHA-256"),
                      auth_failure_delay=0, auth_penalty_max=0)
out = {}
for mech in ("SCRAM-SHA-1", "SCRAM-SHA-256"):
    for user in ("plain", "ghost"):
        s = ServerSession(MemoryBackend({}), UsersFile(sys.argv[1]), config, is_loopback=True)
        s.greeting()
        first = base64.b64encode(f"n,,n={user},r=abcdefgh".encode()).decode()
        s.receive(f"AUTH {mech} {first}\\r\\n".encode())
        reply = b"".join(a.data for a in s.actions())
        text = base64.b64decode(reply[2:]).decode()
        out[mech + " " + user] = dict(p.split("=", 1) for p in text.split(","))
print(json.dumps(out))
"""


def server_firsts(path: object) -> dict[str, dict[str, str]]:
    import json
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _FIRST, str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    result: dict[str, dict[str, str]] = json.loads(done.stdout)
    return result


def test_scram_salts_and_iterations_are_the_same_after_a_restart(tmp_path: object) -> None:
    """Two server processes one after the other (a restart): a known user's
    and an unknown name's salts stay, under SHA-1 as under SHA-256, and an
    unknown name shows the iteration count a known user does."""
    from pathlib import Path

    path = Path(str(tmp_path)) / "users"
    path.write_text("plain:plain pw\n")
    before, after = server_firsts(path), server_firsts(path)
    assert before.keys() == after.keys() and len(before) == 4
    for key in before:
        assert before[key]["s"] == after[key]["s"], key
    for mech in ("SCRAM-SHA-1", "SCRAM-SHA-256"):
        assert before[f"{mech} ghost"]["i"] == before[f"{mech} plain"]["i"] == "4096"
        assert before[f"{mech} ghost"]["s"] != before[f"{mech} plain"]["s"]
    assert before["SCRAM-SHA-1 plain"]["s"] != before["SCRAM-SHA-256 plain"]["s"]


def scram_lookup_costs(
    monkeypatch: pytest.MonkeyPatch, lookup: object, users: list[str]
) -> dict[str, int]:
    work = count_key_derivations(monkeypatch)
    costs = {}
    for user in users:
        for _ in range(2):  # the second time too: nothing is cached
            work.clear()
            lookup(user)  # type: ignore[operator]
            costs[f"{user} {_}"] = sum(work)
    return costs


def test_every_scram_lookup_costs_one_derivation(monkeypatch: pytest.MonkeyPatch) -> None:
    """A user stored in plaintext, one stored with SCRAM keys, one stored as
    PBKDF2 and an unknown name: the same key-derivation work for SCRAM's
    first message, asked once or twice, SHA-1 and SHA-256 alike."""
    from pop3proto.adapters.mailstore._users import DictAuthenticator, hash_password

    auth = DictAuthenticator(
        {
            "plain": "plain pw",
            "scram": hash_password("s", scheme="SCRAM-SHA-256", iterations=4096),
            "pbkdf2": hash_password("p", iterations=1000),
        }
    )
    users = ["plain", "scram", "pbkdf2", "nobody-here"]
    sha256 = scram_lookup_costs(monkeypatch, auth.scram_credentials, users)
    assert set(sha256.values()) == {4096}, sha256
    sha1 = scram_lookup_costs(monkeypatch, auth.scram_sha1_credentials, ["plain", "nobody-here"])
    assert set(sha1.values()) == {4096}, sha1


@pytest.mark.auth_delay
@pytest.mark.parametrize("kind", RUNTIMES)
def test_a_shutdown_does_not_wait_out_a_delay(kind: str) -> None:
    """A server stopping while a failed login waits 30 s stops at once."""
    import socket

    config = ServerConfig(auth_failure_delay=30.0, auth_penalty_max=30.0)
    sock = None
    try:
        with running_server(kind, MemoryBackend({"alice": []}), config=config) as running:
            sock = socket.create_connection(running.address, timeout=30)
            recv_until(sock, lambda d: d.endswith(b"\r\n"))
            sock.sendall(b"USER alice\r\nPASS wrong\r\n")
            assert recv_until(sock, lambda d: d.endswith(b"\r\n")) == b"+OK send PASS\r\n"
            time.sleep(0.3)  # the PASS is being held now
            stopping = time.monotonic()
        assert time.monotonic() - stopping < 15.0
    finally:
        if sock is not None:
            sock.close()


def test_a_success_without_an_account_clears_nothing() -> None:
    p = penalties()
    p.failed("192.0.2.1", None)
    assert p.succeeded("192.0.2.1", None) == 4.0
    assert p.failures("192.0.2.1", None) == 1


class SecretsOnly:
    """An authenticator of the application's own: shared secrets only, no
    SCRAM-SHA-1 keys of its own (the server derives them)."""

    def credentials(self) -> frozenset[str]:
        return frozenset({"password", "secret"})

    def check_password(self, user: str, password: str) -> bool:
        return user == "alice" and password == PASSWORD

    def get_secret(self, user: str) -> str | None:
        return PASSWORD if user == "alice" else None

    def scram_credentials(self, user: str) -> None:
        return None


def sha1_first(user: str) -> dict[str, str]:
    config = ServerConfig(hostname="t", sasl_mechanisms=("SCRAM-SHA-1",))
    h = Harness(config=config, auth=SecretsOnly())  # type: ignore[arg-type]
    mech = ScramSha1Client(user, "wrong")
    events = h.send(Auth(mech.name, mech.initial_response()))
    assert isinstance(events[-1], SaslChallenge)
    return dict(p.split("=", 1) for p in events[-1].data.decode().split(","))


def test_an_authenticator_without_sha1_keys_gets_them_derived_and_decoys() -> None:
    config = ServerConfig(hostname="t", sasl_mechanisms=("SCRAM-SHA-1",))
    h = Harness(config=config, auth=SecretsOnly())  # type: ignore[arg-type]
    assert isinstance(h.sasl(ScramSha1Client("alice", PASSWORD)), Ok)
    known, unknown = sha1_first("alice"), sha1_first("nobody-here")
    assert known["i"] == unknown["i"] == "4096"
    # Stable while the server runs, for the unknown name too.
    assert sha1_first("nobody-here")["s"] == unknown["s"] != known["s"]
    refused = Harness(config=config, auth=SecretsOnly())  # type: ignore[arg-type]
    assert isinstance(refused.sasl(ScramSha1Client("nobody-here", PASSWORD)), Err)

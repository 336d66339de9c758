"""Credentials: constant-time checks, APOP timestamps, plaintext policy, leaks.

* Every password and digest check goes through :func:`hmac.compare_digest`
  (``secrets.compare_digest`` is the same function): with it patched to
  answer "equal", a wrong password logs in, and with "different", the right
  one does not, for USER/PASS (plain, PBKDF2 and SCRAM-stored users), APOP,
  and AUTH PLAIN, LOGIN, CRAM-MD5 and SCRAM-SHA-256, on the server, and the
  client's check of the SCRAM server signature.  So no ``==`` decides.
* Unknown users cost the same key derivation as known hashed ones.
* APOP timestamps (and CRAM-MD5 challenges) are unique per greeting:
  10,000 greetings, 10,000 distinct timestamps, each with 64 random bits.
* No plaintext authentication before TLS off loopback by default: the
  session with ``is_loopback=False`` and the three servers with
  ``trust_loopback=False`` refuse USER, AUTH PLAIN and AUTH LOGIN and do
  not advertise them; the client core refuses to send them to a remote
  host without TLS.
* No secret in logs, exception messages or reprs: full sessions (USER/PASS,
  APOP, AUTH PLAIN, LOGIN, CRAM-MD5, SCRAM-SHA-256; right and wrong
  passwords) on the server and the clients, with every logger at DEBUG, the
  ``poplib``-compatible debug output on, and the repr of every event both
  engines produced, scanned for the passwords and their base64 forms.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import pop3proto
from pop3proto import State
from pop3proto.adapters import sync as sync_client
from pop3proto.adapters._seam import Send
from pop3proto.adapters.client._errors import InsecureAuthenticationRefused
from pop3proto.adapters.mailstore._memory import MemoryBackend
from pop3proto.adapters.mailstore._users import DictAuthenticator, hash_password
from pop3proto.adapters.server._config import ServerConfig
from pop3proto.adapters.server._session import ServerSession
from tests.helpers import (
    RUNTIMES,
    EveryMethodAuthenticator,
    SessionPair,
    read_to_eof,
    recv_until,
    running_server,
)

PASSWORD = "Tr0ub4dor&3 secret"
WRONG = "wrong-Pa55word!"
SECRETS = (PASSWORD, WRONG)


_STORES = {
    "alice": PASSWORD,
    "hashed": hash_password(PASSWORD, iterations=1000),
    "scram": hash_password(PASSWORD, scheme="SCRAM-SHA-256"),
}


def stores() -> dict[str, str]:
    """Three users, one per storage form."""
    return dict(_STORES)


def users() -> DictAuthenticator:
    return EveryMethodAuthenticator(stores())


def mailboxes() -> MemoryBackend:
    return MemoryBackend({name: [b"Subject: x\r\n\r\nhello\r\n"] for name in stores()})


def session_pair(**kwargs: Any) -> SessionPair:
    """Our client core against a session serving :func:`mailboxes` to :func:`users`."""
    return SessionPair(mailboxes(), users(), **kwargs)


#: (method, user): every login path and every storage form it supports.
LOGIN_PATHS = [
    ("USER", "alice"),
    ("USER", "hashed"),
    ("USER", "scram"),
    ("APOP", "alice"),
    ("PLAIN", "alice"),
    ("PLAIN", "hashed"),
    ("LOGIN", "scram"),
    ("CRAM-MD5", "alice"),
    ("SCRAM-SHA-256", "alice"),
    ("SCRAM-SHA-256", "scram"),
]


@pytest.mark.parametrize(("method", "user"), LOGIN_PATHS)
def test_logins_work(method: str, user: str) -> None:
    assert session_pair().login(user, PASSWORD, method)
    assert not session_pair().login(user, WRONG, method)


@pytest.fixture
def compare_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[bool | None], list]]:
    """Patch compare_digest (both names); ``set_answer(True/False/None)``
    forces its answer (None: the real one).  Returns the recorded calls."""
    real = hmac.compare_digest
    calls: list[tuple[Any, Any]] = []
    answer: list[bool | None] = [None]

    def fake(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b) if answer[0] is None else answer[0]

    monkeypatch.setattr(hmac, "compare_digest", fake)
    monkeypatch.setattr(secrets, "compare_digest", fake)

    def set_answer(value: bool | None) -> list[tuple[Any, Any]]:
        answer[0] = value
        calls.clear()
        return calls

    yield set_answer


@pytest.mark.parametrize(("method", "user"), LOGIN_PATHS)
def test_compare_digest_decides(
    method: str, user: str, compare_calls: Callable[[bool | None], list]
) -> None:
    calls = compare_calls(True)
    assert session_pair().login(user, WRONG, method), (
        "a wrong password was not checked by compare_digest"
    )
    assert calls
    calls = compare_calls(False)
    assert not session_pair().login(user, PASSWORD, method), "the right password passed anyway"
    assert calls


def test_apop_compares_the_digest_sent(compare_calls: Callable[[bool | None], list]) -> None:
    calls = compare_calls(None)
    pair = session_pair()
    pair.run(pair.core.greet())
    timestamp = pair.session.timestamp
    assert timestamp is not None
    digest = pop3proto.apop_digest(timestamp, WRONG)
    pair.session.receive(f"APOP alice {digest}\r\n".encode())
    out = b"".join(a.data for a in pair.session.actions() if isinstance(a, Send))
    assert out.startswith(b"-ERR [AUTH]")
    expected = pop3proto.apop_digest(timestamp, PASSWORD).encode()
    assert (expected, digest.encode()) in calls


def test_unknown_users_cost_the_same_key_derivation(monkeypatch: pytest.MonkeyPatch) -> None:
    """RFC 1939 §13: an unknown user costs what the most expensive known
    user costs, so timing does not tell which users exist."""
    derivations: list[int] = []
    real = hashlib.pbkdf2_hmac

    def counting(name: str, password: bytes, salt: bytes, iterations: int, *a: Any) -> bytes:
        derivations.append(iterations)
        return real(name, password, salt, iterations, *a)

    monkeypatch.setattr(hashlib, "pbkdf2_hmac", counting)
    auth = users()
    assert not auth.check_password("hashed", WRONG)
    known = list(derivations)
    derivations.clear()
    assert not auth.check_password("nobody", WRONG)
    assert derivations and max(derivations) >= max(known), (known, derivations)


# ---------------------------------------------------------------------------
# APOP timestamps
# ---------------------------------------------------------------------------

_TIMESTAMP = re.compile(r"^<(\d+)\.(\d+)\.([0-9a-f]{16})@example\.org>$")


def test_apop_timestamps_unique_per_greeting() -> None:
    """RFC 1939 §7: the timestamp MUST be different each time the server
    greets; each also carries 64 random bits (unpredictable)."""
    config = ServerConfig(hostname="example.org")
    backend, auth = MemoryBackend(), users()
    stamps = []
    for _ in range(10_000):
        session = ServerSession(backend, auth, config)
        greeting = session.greeting()
        stamp = session.timestamp
        assert stamp is not None and stamp.encode() in greeting
        assert pop3proto.parse_greeting_timestamp(greeting[4:-2].decode()) == stamp
        stamps.append(stamp)
    assert len(set(stamps)) == len(stamps)
    randoms = [_TIMESTAMP.match(s).group(3) for s in stamps]  # type: ignore[union-attr]
    assert len(set(randoms)) == len(randoms)


def test_cram_md5_challenges_unique() -> None:
    challenges = set()
    backend, auth = MemoryBackend(), users()
    for _ in range(1000):
        session = ServerSession(backend, auth, is_loopback=True)
        session.greeting()
        session.receive(b"AUTH CRAM-MD5\r\n")
        [action] = list(session.actions())
        assert isinstance(action, Send) and action.data.startswith(b"+ ")
        challenges.add(base64.b64decode(action.data[2:-2]))
    assert len(challenges) == 1000


# ---------------------------------------------------------------------------
# No plaintext authentication before TLS off loopback
# ---------------------------------------------------------------------------


def _answers(session: ServerSession, data: bytes) -> bytes:
    session.receive(data)
    return b"".join(a.data for a in session.actions() if isinstance(a, Send))


def test_session_refuses_plaintext_off_loopback_by_default() -> None:
    session = ServerSession(mailboxes(), users())  # default config, not loopback, no TLS
    assert session.config.allow_plaintext_auth is None
    session.greeting()
    capa = _answers(session, b"CAPA\r\n")
    assert b"\r\nUSER\r\n" not in capa
    sasl = re.search(rb"\r\nSASL ([^\r]*)\r\n", capa)
    assert sasl is not None and set(sasl.group(1).split()) == {b"SCRAM-SHA-256", b"CRAM-MD5"}
    plain = base64.b64encode(b"\0alice\0" + PASSWORD.encode())
    for line in (b"USER alice", b"AUTH PLAIN " + plain, b"AUTH PLAIN", b"AUTH LOGIN"):
        reply = _answers(session, line + b"\r\n")
        assert reply.startswith(b"-ERR [AUTH] plaintext authentication disallowed"), line
    assert session.state is State.AUTHORIZATION and session.user is None
    # The same session over TLS allows them.
    tls = ServerSession(mailboxes(), users(), tls=True)
    tls.greeting()
    assert _answers(tls, b"USER alice\r\n").startswith(b"+OK")


@pytest.mark.parametrize("kind", RUNTIMES)
def test_servers_refuse_plaintext_when_loopback_is_not_trusted(kind: str) -> None:
    with running_server(kind, mailboxes(), users(), trust_loopback=False) as running:
        with running.connect() as sock:
            recv_until(sock, lambda d: d.endswith(b"\r\n"))
            sock.sendall(b"CAPA\r\n")
            capa = recv_until(sock, lambda d: d.endswith(b"\r\n.\r\n"))
            assert b"\r\nUSER\r\n" not in capa and b"PLAIN" not in capa and b"LOGIN" not in capa
            sock.sendall(f"USER alice\r\nPASS {PASSWORD}\r\nAUTH PLAIN\r\nQUIT\r\n".encode())
            replies = read_to_eof(sock).split(b"\r\n")
        assert replies[0].startswith(b"-ERR [AUTH] plaintext authentication disallowed")
        assert replies[1].startswith(b"-ERR")  # PASS without USER
        assert replies[2].startswith(b"-ERR [AUTH] plaintext authentication disallowed")
        assert replies[3].startswith(b"+OK")


@pytest.mark.parametrize("method", ["USER", "PLAIN", "LOGIN", "APOP"])
def test_client_refuses_plaintext_to_a_remote_host(method: str) -> None:
    """The client core, on a link that is neither TLS nor loopback."""
    pair = session_pair(client_loopback=False, is_loopback=True)
    pair.run(pair.core.greet())
    with pytest.raises(InsecureAuthenticationRefused):
        pair.run(pair.core.login("alice", PASSWORD, mechanism=method))
    assert PASSWORD.encode() not in pair.sent
    assert b"PASS" not in pair.sent and b"AUTH" not in pair.sent and b"APOP" not in pair.sent


# ---------------------------------------------------------------------------
# No secret in logs, exception messages or reprs
# ---------------------------------------------------------------------------


def secret_forms(password: str) -> list[bytes]:
    """The password and the encodings it travels in."""
    raw = password.encode()
    forms = [raw, raw.hex().encode(), base64.b64encode(raw)]
    for user in (b"alice", b"hashed", b"scram"):
        for blob in (b"\0" + user + b"\0" + raw, user + b"\0" + user + b"\0" + raw):
            forms.append(base64.b64encode(blob))
    return forms


def assert_no_secret(text: str | bytes, where: str) -> None:
    data = text.encode("utf-8", "backslashreplace") if isinstance(text, str) else text
    for password in SECRETS:
        for form in secret_forms(password):
            assert form not in data, f"{form!r} ({password!r}) found in {where}"
        # Also a repr()'d form (bytes reprs escape nothing here, but be safe).
        assert repr(password).encode() not in data, where


@pytest.fixture
def recorded_events(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every event any Connection produced or was given."""
    seen: list[object] = []
    real_send, real_next = pop3proto.Connection.send, pop3proto.Connection.next_event

    def send(self: pop3proto.Connection, event: pop3proto.Event) -> bytes:
        seen.append(event)
        return real_send(self, event)

    def next_event(self: pop3proto.Connection) -> Any:
        event = real_next(self)
        seen.append(event)
        return event

    monkeypatch.setattr(pop3proto.Connection, "send", send)
    monkeypatch.setattr(pop3proto.Connection, "next_event", next_event)
    return seen


CLIENT_METHODS = ("USER", "APOP", "PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-256")


@pytest.mark.parametrize("kind", RUNTIMES)
def test_no_secret_in_logs_errors_or_reprs(
    kind: str,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    recorded_events: list[object],
) -> None:
    caplog.set_level(logging.DEBUG)
    logging.getLogger().setLevel(logging.DEBUG)
    texts: list[tuple[str, str]] = []
    stats: list[object] = []
    auth = users()
    config = ServerConfig(on_session_end=stats.append)
    with running_server(kind, mailboxes(), auth, config=config) as running:
        host, port = running.address
        texts.append(("server repr", repr(running.server)))
        # The modern client: every method, right and wrong password.
        for method in CLIENT_METHODS:
            for password in (WRONG, PASSWORD):
                with sync_client.Client(host, port, tls="none", timeout=10) as client:
                    texts.append(("client repr", repr(client)))
                    try:
                        client.login("alice", password, mechanism=method)
                    except sync_client.POP3Error as exc:
                        assert password == WRONG
                        texts.append(("exception", f"{exc!s} {exc!r} {exc.args!r}"))
                    else:
                        assert password == PASSWORD
                        texts.append(("client repr", repr(client)))
                        client.stat()
                # The with-exit does not wait for QUIT's reply: the next
                # login to alice waits until the server has let her go.
                running.wait_idle()
        # The poplib-compatible client, with its debug output on.
        logins: list[Callable[[sync_client.POP3, str], object]] = [
            lambda pop, password: (pop.user("alice"), pop.pass_(password)),
            lambda pop, password: pop.apop("alice", password),
            lambda pop, password: pop.auth("PLAIN", initial_response=f"\0alice\0{password}"),
        ]
        for password in (WRONG, PASSWORD):
            for log_in in logins:
                pop = sync_client.POP3(host, port, timeout=10)
                pop.set_debuglevel(2)
                try:
                    log_in(pop, password)
                    pop.quit()
                except sync_client.error_proto as exc:
                    texts.append(("exception", f"{exc!s} {exc!r}"))
                finally:
                    pop.close()
        running.wait_idle()
    captured = capsys.readouterr()
    assert "*cmd*" in captured.out  # the debug output was on
    texts += [("stdout", captured.out), ("stderr", captured.err)]
    texts += [("log", f"{r.getMessage()} {r.exc_text or ''}") for r in caplog.records]
    texts += [("session stats", repr(s)) for s in stats]
    texts.append(("authenticator repr", repr(auth)))
    assert any("session end" in t for _, t in texts)  # the logs were captured
    events = [e for e in recorded_events if isinstance(e, pop3proto.Event)]
    assert any(isinstance(e, pop3proto.Pass) for e in events)
    assert any(isinstance(e, pop3proto.SaslResponse) for e in events)
    texts += [("event repr", repr(e)) for e in events]
    for where, text in texts:
        assert_no_secret(text, where)


@pytest.mark.parametrize(
    "line",
    [
        b"PASS " + PASSWORD.encode(),  # PASS without USER
        b"PASS " + PASSWORD.encode() + b"\x01",  # control character
        b"AUTH PLAIN " + base64.b64encode(b"\0alice\0" + PASSWORD.encode()) + b"!",
    ],
)
def test_refused_credentials_do_not_show_in_bad_command_repr(line: bytes) -> None:
    # Found here: BadCommand's repr used to show the raw line, password and all.
    conn = pop3proto.Connection(pop3proto.SERVER)
    conn.send(pop3proto.Greeting("ready <1.2@example.org>"))
    conn.receive_data(line + b"\r\n")
    event = conn.next_event()
    assert isinstance(event, pop3proto.BadCommand)
    assert_no_secret(repr(event), "repr(BadCommand)")


def test_malformed_sasl_response_does_not_show_in_repr() -> None:
    conn = pop3proto.Connection(pop3proto.SERVER)
    conn.send(pop3proto.Greeting("ready"))
    conn.receive_data(b"AUTH LOGIN\r\n")
    assert isinstance(conn.next_event(), pop3proto.Auth)
    conn.send(pop3proto.SaslChallenge(b"Password:"))
    conn.receive_data(base64.b64encode(PASSWORD.encode()) + b"!\r\n")
    event = conn.next_event()
    assert isinstance(event, pop3proto.BadCommand)
    assert_no_secret(repr(event), "repr(BadCommand)")


def test_engine_errors_do_not_quote_credentials() -> None:
    """Refused credentials (CR/LF/NUL, too long, non-ASCII) raise without
    quoting them."""
    client = pop3proto.Connection(pop3proto.CLIENT)
    client.receive_data(b"+OK ready <1.2@example.org>\r\n")
    client.next_event()
    for bad in (
        lambda: pop3proto.Pass(PASSWORD + "\r\nDELE 1"),
        lambda: pop3proto.Pass(PASSWORD + "\0"),
        lambda: pop3proto.SaslResponse(PASSWORD),  # type: ignore[arg-type]
        lambda: pop3proto.Auth("PLAIN", PASSWORD),  # type: ignore[arg-type]
        lambda: pop3proto.User(PASSWORD),
        lambda: pop3proto.Apop("alice", PASSWORD),
    ):
        with pytest.raises((pop3proto.ProtocolError, TypeError, ValueError)) as info:
            bad()
        assert_no_secret(f"{info.value!s} {info.value!r}", "exception")
    fresh = pop3proto.Connection(pop3proto.CLIENT, max_command_size=32)
    fresh.receive_data(b"+OK ready\r\n")
    fresh.next_event()
    fresh.send(pop3proto.User("alice"))
    fresh.receive_data(b"+OK\r\n")
    fresh.next_event()
    with pytest.raises(pop3proto.LocalProtocolError) as too_long:
        fresh.send(pop3proto.Pass(PASSWORD * 3))
    assert_no_secret(f"{too_long.value!s} {too_long.value!r}", "exception")


def test_users_file_errors_do_not_quote_passwords(tmp_path: Any) -> None:
    from pop3proto.adapters.mailstore._users import UsersFile

    bad = "{PBKDF2-SHA256}x$" + base64.b64encode(PASSWORD.encode()).decode() + "$y"
    with pytest.raises(ValueError) as info:
        DictAuthenticator({"alice": bad})
    assert_no_secret(str(info.value), "DictAuthenticator error")
    path = tmp_path / "users"
    path.write_bytes(b"alice:" + PASSWORD.encode() + b"\xff\n")
    with pytest.raises(ValueError) as info2:
        UsersFile(path)
    assert_no_secret(str(info2.value), "UsersFile error")

"""PLAIN (RFC 4616) and LOGIN, both sides (pop3proto.sasl._plain)."""

from __future__ import annotations

import pytest

from pop3proto.sasl import (
    LoginClient,
    LoginServer,
    PlainClient,
    PlainServer,
    SaslAuthenticationFailed,
    SaslError,
    SaslServerVerificationFailed,
)
from tests.helpers import check_password, run_exchange

# ---------------------------------------------------------------------------
# PLAIN (RFC 4616)
# ---------------------------------------------------------------------------


def test_plain_rfc4616_messages() -> None:
    # RFC 4616 §4 examples.
    assert PlainClient("tim", "tanstaaftanstaaf").initial_response() == b"\0tim\0tanstaaftanstaaf"
    assert PlainClient("Kurt", "xipj3plmq", "Ursel").initial_response() == b"Ursel\0Kurt\0xipj3plmq"


def test_plain_success() -> None:
    client = PlainClient("tim", "tanstaaftanstaaf")
    server = PlainServer(check_password)
    transcript = run_exchange(client, server)
    assert transcript == [("C", b"\0tim\0tanstaaftanstaaf")]
    assert server.authenticated_user == "tim"
    assert client.complete


@pytest.mark.parametrize(
    ("user", "password"), [("tim", "wrong"), ("nobody", "tanstaaftanstaaf"), ("tim", "")]
)
def test_plain_failure(user: str, password: str) -> None:
    server = PlainServer(check_password)
    with pytest.raises(SaslAuthenticationFailed):
        server.step(f"\0{user}\0{password}".encode())
    assert server.authenticated_user is None
    with pytest.raises(SaslError):
        server.step(b"\0tim\0tanstaaftanstaaf")  # the object is spent


@pytest.mark.parametrize(
    "message",
    [b"", b"tim", b"\0tim", b"\0tim\0pw\0x", b"\0\0pw", b"\0tim\0\xff\xfe", b"\0tim\0\x07"],
)
def test_plain_malformed(message: bytes) -> None:
    with pytest.raises(SaslAuthenticationFailed):
        PlainServer(lambda u, p: True).step(message)


def test_plain_server_saslpreps_credentials() -> None:
    seen: list[tuple[str, str]] = []

    def check(user: str, password: str) -> bool:
        seen.append((user, password))
        return True

    server = PlainServer(check)
    assert server.step("\0\u2168\0I\u00adX".encode()) is None
    assert seen == [("IX", "IX")]
    assert server.authenticated_user == "IX"


def test_plain_authzid() -> None:
    server = PlainServer(check_password)
    with pytest.raises(SaslAuthenticationFailed):
        server.step(b"alice\0tim\0tanstaaftanstaaf")  # default: authzid must be authcid
    server = PlainServer(check_password)
    assert server.step(b"tim\0tim\0tanstaaftanstaaf") is None
    assert server.authenticated_user == "tim"

    server = PlainServer(check_password, authorize=lambda authz, authc: authc == "tim")
    run_exchange(PlainClient("tim", "tanstaaftanstaaf", authzid="alice"), server)
    assert server.authenticated_user == "alice"


def test_plain_client_validation() -> None:
    for args in [("", "pw"), ("u", ""), ("u\0", "pw"), ("u", "p\0w"), ("u", "pw", "a\0")]:
        with pytest.raises(ValueError):
            PlainClient(*args)


def test_plain_client_rejects_extra_challenge() -> None:
    client = PlainClient("tim", "pw")
    client.initial_response()
    with pytest.raises(SaslServerVerificationFailed):
        client.respond(b"unexpected")
    assert not client.complete
    with pytest.raises(SaslError):
        client.respond(b"")


# ---------------------------------------------------------------------------
# LOGIN
# ---------------------------------------------------------------------------


def test_login_success() -> None:
    client = LoginClient("alice", "correct horse")
    server = LoginServer(check_password)
    assert client.initial_response() is None
    transcript = run_exchange(client, server)
    assert transcript == [
        ("S", b"Username:"),
        ("C", b"alice"),
        ("S", b"Password:"),
        ("C", b"correct horse"),
    ]
    assert server.authenticated_user == "alice"
    assert client.complete


def test_login_client_answers_by_order_not_text() -> None:
    client = LoginClient("alice", "pw")
    assert client.respond(b"Password:") == b"alice"  # odd server prompts
    assert not client.complete
    assert client.respond(b"") == b"pw"
    assert client.complete
    with pytest.raises(SaslServerVerificationFailed):
        client.respond(b"Username:")


def test_login_failure() -> None:
    with pytest.raises(SaslAuthenticationFailed):
        run_exchange(LoginClient("alice", "wrong"), LoginServer(check_password))
    with pytest.raises(SaslAuthenticationFailed):
        run_exchange(LoginClient("mallory", "correct horse"), LoginServer(check_password))


def test_login_server_accepts_username_as_initial_response() -> None:
    server = LoginServer(check_password)
    assert server.step(b"alice") == b"Password:"
    assert server.step(b"correct horse") is None
    assert server.authenticated_user == "alice"

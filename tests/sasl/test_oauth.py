"""XOAUTH2 and OAUTHBEARER (RFC 7628), both sides (pop3proto.sasl._oauth)."""

from __future__ import annotations

import json

import pytest

from pop3proto.sasl import (
    OAuthBearerClient,
    OAuthBearerServer,
    OAuthDenial,
    SaslAuthenticationFailed,
    SaslServerVerificationFailed,
    XOAuth2Client,
    XOAuth2Server,
)
from tests.helpers import run_exchange, secret_free

TOKENS = {"alice@example.com": "ya29.good-token"}


def check_token(user: str, token: str) -> bool:
    return TOKENS.get(user) == token


# ---------------------------------------------------------------------------
# XOAUTH2
# ---------------------------------------------------------------------------


def test_xoauth2_message_format() -> None:
    client = XOAuth2Client("alice@example.com", "ya29.tok")
    assert client.initial_response() == b"user=alice@example.com\x01auth=Bearer ya29.tok\x01\x01"


def test_xoauth2_success() -> None:
    client = XOAuth2Client("alice@example.com", "ya29.good-token")
    server = XOAuth2Server(check_token)
    assert len(run_exchange(client, server)) == 1
    assert server.authenticated_user == "alice@example.com"
    assert client.complete and client.error_challenge is None


def test_xoauth2_deferred() -> None:
    client = XOAuth2Client("alice@example.com", "ya29.good-token")
    server = XOAuth2Server(check_token)
    run_exchange(client, server, send_initial_response=False)
    assert server.authenticated_user == "alice@example.com"


def test_xoauth2_failure_error_challenge() -> None:
    client = XOAuth2Client("alice@example.com", "ya29.stale")
    server = XOAuth2Server(check_token)
    ir = client.initial_response()
    assert ir is not None
    challenge = server.step(ir)
    assert challenge is not None
    assert json.loads(challenge)["status"] == "401"
    assert client.respond(challenge) == b""  # Google: answer the error with an empty line
    assert client.error_challenge == challenge
    assert not client.complete
    with pytest.raises(SaslAuthenticationFailed) as info:
        server.step(b"")
    secret_free(info.value, "ya29.stale")
    with pytest.raises(SaslServerVerificationFailed):
        client.respond(challenge)


@pytest.mark.parametrize(
    "message",
    [
        b"user=alice@example.com\x01auth=Bearer ya29.good-token\x01",  # one ^A short
        b"user=alice@example.com\x01auth=Basic ya29.good-token\x01\x01",
        b"user=alice@example.com\x01auth=Bearer \x01\x01",
        b"auth=Bearer ya29.good-token\x01\x01",
        b"user=\x01auth=Bearer ya29.good-token\x01\x01",
        b"user=a\x01user=b\x01auth=Bearer t\x01\x01",
        b"junk\x01\x01",
        b"\x01",
    ],
)
def test_xoauth2_malformed(message: bytes) -> None:
    with pytest.raises(SaslAuthenticationFailed):
        XOAuth2Server(lambda u, t: True).step(message)


def test_xoauth2_auth_scheme_case_insensitive() -> None:
    server = XOAuth2Server(check_token)
    assert server.step(b"user=alice@example.com\x01auth=bearer ya29.good-token\x01\x01") is None


# ---------------------------------------------------------------------------
# OAUTHBEARER (RFC 7628)
# ---------------------------------------------------------------------------


def test_oauthbearer_message_format() -> None:
    client = OAuthBearerClient(
        "user@example.com",
        "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==",
        host="server.example.com",
        port=143,
    )
    # RFC 7628 §4.1 (the example's client response).
    assert client.initial_response() == (
        b"n,a=user@example.com,\x01host=server.example.com\x01port=143\x01"
        b"auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01"
    )
    plain = OAuthBearerClient("a,b", "tok")
    assert plain.initial_response() == b"n,a=a=2Cb,\x01auth=Bearer tok\x01\x01"


def test_oauthbearer_success() -> None:
    client = OAuthBearerClient("alice@example.com", "ya29.good-token", host="pop.example.com")
    server = OAuthBearerServer(check_token)
    run_exchange(client, server)
    assert server.authenticated_user == "alice@example.com"
    assert client.complete


def test_oauthbearer_failure_error_challenge() -> None:
    client = OAuthBearerClient("alice@example.com", "ya29.stale")
    server = OAuthBearerServer(check_token)
    challenge = server.step(client.initial_response())
    assert challenge is not None
    assert json.loads(challenge) == {"status": "invalid_token", "schemes": "bearer"}
    assert client.respond(challenge) == b"\x01"  # RFC 7628 §3.2.3
    assert not client.complete
    with pytest.raises(SaslAuthenticationFailed):
        server.step(b"\x01")


def test_oauthbearer_failure_through_exchange() -> None:
    with pytest.raises(SaslAuthenticationFailed):
        run_exchange(OAuthBearerClient("alice@example.com", "bad"), OAuthBearerServer(check_token))


@pytest.mark.parametrize(
    "message",
    [
        b"n,,\x01auth=Bearer ya29.good-token\x01\x01",  # no authzid: no user to check
        b"p=tls-unique,a=alice@example.com,\x01auth=Bearer t\x01\x01",
        b"n,a=alice@example.com\x01auth=Bearer t\x01\x01",
        b"n,a=alice@example.com,\x01auth=Bearer t\x01",
        b"n,a=alice@example.com,\x01\x01",
        b"n,a=alice@example.com,\x01auth=Bearer t\x01au th=x\x01\x01",
        b"n,a=bad=escape,\x01auth=Bearer t\x01\x01",
        b"n,a=alice@example.com,x,\x01auth=Bearer t\x01\x01",
        b"n,a=alice@example.com,\x01auth=Basic dXNlcg==\x01\x01",  # not a bearer token
        b"\x01",
    ],
)
def test_oauthbearer_malformed(message: bytes) -> None:
    with pytest.raises(SaslAuthenticationFailed):
        OAuthBearerServer(lambda u, t: True).step(message)


def test_oauthbearer_client_rejects_second_error() -> None:
    client = OAuthBearerClient("alice@example.com", "tok")
    client.initial_response()
    assert client.error_challenge is None
    client.respond(b'{"status":"invalid_token"}')
    assert client.error_challenge == b'{"status":"invalid_token"}'
    with pytest.raises(SaslServerVerificationFailed):
        client.respond(b"again")


def test_oauth_client_validation() -> None:
    with pytest.raises(ValueError):
        XOAuth2Client("user\x01auth=Bearer evil", "tok")
    with pytest.raises(ValueError):
        XOAuth2Client("user", "")
    with pytest.raises(ValueError):
        OAuthBearerClient("user", "tok\x01")
    with pytest.raises(ValueError):
        OAuthBearerClient("user", "tok", port=70000)
    with pytest.raises(ValueError):
        OAuthBearerClient("user", "tok", host="h\x01")


# ---------------------------------------------------------------------------
# What a token check may answer, and the error challenge (OAuthDenial)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("server_cls", [XOAuth2Server, OAuthBearerServer])
def test_token_check_may_name_the_identity(server_cls: type[XOAuth2Server]) -> None:
    client_cls = XOAuth2Client if server_cls is XOAuth2Server else OAuthBearerClient
    server = server_cls(lambda user, token: "mailbox-7" if token == "t" else False)
    run_exchange(client_cls("alice@example.com", "t"), server)
    assert server.authenticated_user == "mailbox-7"


@pytest.mark.parametrize("server_cls", [XOAuth2Server, OAuthBearerServer])
def test_token_check_empty_identity_fails(server_cls: type[XOAuth2Server]) -> None:
    server = server_cls(lambda user, token: "")
    message = (
        b"user=a\x01auth=Bearer t\x01\x01"
        if server_cls is XOAuth2Server
        else b"n,a=a,\x01auth=Bearer t\x01\x01"
    )
    with pytest.raises(SaslAuthenticationFailed):
        server.step(message)
    assert server.authenticated_user is None


@pytest.mark.parametrize(
    ("server_cls", "client_cls", "default_status"),
    [
        (XOAuth2Server, XOAuth2Client, "401"),
        (OAuthBearerServer, OAuthBearerClient, "invalid_token"),
    ],
)
def test_denial_sets_the_error_challenge(
    server_cls: type[XOAuth2Server], client_cls: type[XOAuth2Client], default_status: str
) -> None:
    denial = OAuthDenial(scope="https://mail.google.com/", openid_configuration="https://x/.wk")
    server = server_cls(lambda user, token: denial)
    client = client_cls("alice@example.com", "s3cr3t")
    challenge = server.step(client.initial_response())
    assert challenge is not None
    assert json.loads(challenge) == {
        "status": default_status,
        "schemes": "bearer",
        "scope": "https://mail.google.com/",
        "openid-configuration": "https://x/.wk",
    }
    assert b"s3cr3t" not in challenge
    client.respond(challenge)
    parsed = OAuthDenial.from_challenge(challenge)
    assert parsed == OAuthDenial(default_status, "https://mail.google.com/", "https://x/.wk")
    assert parsed.describe() == (
        f"status {default_status}, scope https://mail.google.com/, see https://x/.wk"
    )
    with pytest.raises(SaslAuthenticationFailed):
        server.step(b"")


def test_denial_status_overrides_the_default() -> None:
    server = OAuthBearerServer(lambda user, token: OAuthDenial(status="insufficient_scope"))
    challenge = server.step(b"n,a=a,\x01auth=Bearer t\x01\x01")
    assert challenge == b'{"status":"insufficient_scope","schemes":"bearer"}'


@pytest.mark.parametrize(
    "fields",
    [{"status": ""}, {"scope": "a\nb"}, {"openid_configuration": "\x1b[2J"}],
)
def test_denial_validation(fields: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        OAuthDenial(**fields)


@pytest.mark.parametrize(
    ("challenge", "expected"),
    [
        (
            b'{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}',
            OAuthDenial("401", "https://mail.google.com/"),
        ),
        (b'{"status":401}', OAuthDenial("401")),
        (b'{"status":"\\u001b[31m","scope":true,"extra":"x"}', OAuthDenial()),
        (b"{}", OAuthDenial()),
        (b"[1, 2]", None),
        (b"not json", None),
        (b"\xff\xfe", None),
    ],
)
def test_denial_from_challenge(challenge: bytes, expected: OAuthDenial | None) -> None:
    assert OAuthDenial.from_challenge(challenge) == expected


def test_denial_describe_without_status() -> None:
    assert OAuthDenial().describe() == "status unknown"

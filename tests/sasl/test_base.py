"""The exchange contract both halves share, errors, reprs and secrets (pop3proto.sasl._base)."""

from __future__ import annotations

import pytest

from pop3proto._errors import ProtocolError
from pop3proto.sasl import (
    CramMD5Client,
    CramMD5Server,
    LoginClient,
    LoginServer,
    OAuthBearerClient,
    PlainClient,
    PlainServer,
    SaslAuthenticationFailed,
    SaslClientMechanism,
    SaslError,
    SaslServerVerificationFailed,
    ScramClient,
    ScramServer,
    XOAuth2Client,
    fits_initial_response,
    scram_credentials,
)
from tests.helpers import (
    RFC2195_CHALLENGE,
    check_password,
    get_password,
    run_exchange,
    secret_free,
)

# ---------------------------------------------------------------------------
# Deferred initial response contract (RFC 5034 §4, RFC 4422 §5)
# ---------------------------------------------------------------------------


def test_deferred_initial_response_after_initial_response_call() -> None:
    client = PlainClient("tim", "tanstaaftanstaaf")
    server = PlainServer(check_password)
    ir = client.initial_response()
    assert ir is not None
    assert not fits_initial_response("PLAIN", ir, limit=10)  # pretend it did not fit
    transcript = run_exchange(client, server, send_initial_response=False)
    assert transcript == [("S", b""), ("C", ir)]
    assert server.authenticated_user == "tim"


def test_deferred_initial_response_without_initial_response_call() -> None:
    client = PlainClient("tim", "tanstaaftanstaaf")
    server = PlainServer(check_password)
    assert server.step(None) == b""
    response = client.respond(b"")
    assert response == b"\0tim\0tanstaaftanstaaf"
    assert server.step(response) is None
    assert client.complete


def test_initial_response_is_stable_and_must_come_first() -> None:
    client = ScramClient("user", "pencil", nonce="abc")
    assert client.initial_response() == client.initial_response() == b"n,,n=user,r=abc"
    client.respond(b"")
    with pytest.raises(SaslError):
        client.initial_response()


def test_non_empty_first_challenge_without_initial_response_is_rejected() -> None:
    # The caller never asked for the initial response, so it cannot have
    # been sent; a non-empty first challenge is a server error.
    client = ScramClient("user", "pencil", nonce="abc")
    with pytest.raises(SaslServerVerificationFailed, match="before the client-first"):
        client.respond(b"r=abcsrv,s=QSXCR+Q6sek8bf92,i=16")


@pytest.mark.parametrize("hash_name", ["sha1", "sha256"])
def test_scram_deferred_initial_response(hash_name: str) -> None:
    creds = scram_credentials("pencil", hash_name=hash_name, iterations=4096)
    server = ScramServer(lambda u: creds if u == "user" else None, hash_name=hash_name)
    client = ScramClient("user", "pencil", hash_name=hash_name)
    transcript = run_exchange(client, server, send_initial_response=False)
    assert [side for side, _ in transcript] == ["S", "C", "S", "C", "S", "C"]
    assert transcript[0] == ("S", b"")
    assert transcript[1][1].startswith(b"n,,n=user,r=")
    assert server.authenticated_user == "user"
    assert client.complete


def test_server_step_none_only_first() -> None:
    server = PlainServer(check_password)
    assert server.step(None) == b""
    with pytest.raises(SaslError):
        server.step(None)


# ---------------------------------------------------------------------------
# Exception hierarchy, reprs, secrets, single use
# ---------------------------------------------------------------------------


def test_exception_hierarchy() -> None:
    assert issubclass(SaslAuthenticationFailed, SaslError)
    assert issubclass(SaslServerVerificationFailed, SaslError)
    assert not issubclass(SaslError, ProtocolError)


SECRET = "Sup3rS3cretValue"


@pytest.mark.parametrize(
    "client",
    [
        PlainClient("bob", SECRET),
        PlainClient("bob", SECRET, authzid="alice"),
        LoginClient("bob", SECRET),
        CramMD5Client("bob", SECRET),
        ScramClient("bob", SECRET),
        ScramClient("bob", SECRET, hash_name="sha1"),
        XOAuth2Client("bob", SECRET),
        OAuthBearerClient("bob", SECRET, host="h", port=1),
    ],
    ids=lambda c: type(c).__name__,
)
def test_client_repr_hides_secret(client: SaslClientMechanism) -> None:
    text = repr(client)
    assert SECRET not in text
    assert "bob" in text and client.name in text
    client.initial_response()
    assert SECRET not in repr(client)


def test_server_reprs_hide_secrets() -> None:
    server = PlainServer(lambda u, p: p == SECRET)
    server.step(f"\0bob\0{SECRET}".encode())
    assert SECRET not in repr(server) and "bob" in repr(server)
    creds = scram_credentials(SECRET, iterations=16)
    scram = ScramServer(lambda u: creds)
    run_exchange(ScramClient("bob", SECRET), scram)
    assert SECRET not in repr(scram)
    assert creds.stored_key.hex() not in repr(scram)


@pytest.mark.parametrize(
    "message",
    [
        b"\0bob\0" + SECRET.encode() + b"\xff",  # invalid UTF-8 next to the secret
        b"\0bob\0" + SECRET.encode() + b"\x07",  # SASLprep-prohibited
        b"\0bob\0" + SECRET.encode(),  # simply wrong
    ],
)
def test_plain_failures_do_not_leak(message: bytes) -> None:
    server = PlainServer(lambda u, p: False)
    with pytest.raises(SaslAuthenticationFailed) as info:
        server.step(message)
    secret_free(info.value, SECRET, "\\xff", "0xff")
    assert info.value.__context__ is None


def test_login_and_cram_failures_do_not_leak() -> None:
    with pytest.raises(SaslAuthenticationFailed) as info:
        run_exchange(LoginClient("bob", SECRET), LoginServer(lambda u, p: False))
    secret_free(info.value, SECRET)
    server = LoginServer(lambda u, p: False)
    server.step(None)
    server.step(b"bob")
    with pytest.raises(SaslAuthenticationFailed) as info:
        server.step(SECRET.encode() + b"\xc3")
    secret_free(info.value, SECRET, "0xc3")
    assert info.value.__context__ is None
    with pytest.raises(SaslAuthenticationFailed) as info:
        run_exchange(CramMD5Client("bob", SECRET), CramMD5Server(lambda u: SECRET + "x"))
    secret_free(info.value, SECRET)


def test_client_unencodable_password_error_does_not_leak() -> None:
    with pytest.raises(ValueError) as info:
        PlainClient("bob", SECRET + "\ud800")
    secret_free(info.value, SECRET, "\ud800")
    assert info.value.__context__ is None


def test_exchange_objects_are_single_use() -> None:
    server = CramMD5Server(get_password, challenge=RFC2195_CHALLENGE)
    server.step(None)
    server.step(b"tim b913a602c7eda7a495b4e6e7334d3890")
    with pytest.raises(SaslError):
        server.step(b"again")


def test_mechanism_without_fields_has_a_plain_repr() -> None:
    """The base class shows no fields unless a mechanism lists safe ones."""

    class Bare(PlainClient):
        def _safe_fields(self):  # type: ignore[no-untyped-def]
            return super(PlainClient, self)._safe_fields()

    text = repr(Bare("alice", "secret"))
    assert "secret" not in text and "Bare" in text


# ---------------------------------------------------------------------------
# GS2 saslname escaping (RFC 5802 §5.1)
# ---------------------------------------------------------------------------


def test_unescape_rejects_comma() -> None:
    from pop3proto.sasl._base import _unescape_saslname

    assert _unescape_saslname("a=2Cb=3D") == "a,b="
    assert _unescape_saslname("a,b") is None
    assert _unescape_saslname("a=") is None

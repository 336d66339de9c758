"""CRAM-MD5 (RFC 2195), both sides (pop3proto.sasl._cram)."""

from __future__ import annotations

import pytest

from pop3proto.sasl import (
    CramMD5Client,
    CramMD5Server,
    SaslAuthenticationFailed,
    SaslServerVerificationFailed,
)
from tests.helpers import (
    RFC2195_CHALLENGE,
    get_password,
    run_exchange,
)


def test_cram_md5_rfc2195_vector() -> None:
    client = CramMD5Client("tim", "tanstaaftanstaaf")
    assert client.initial_response() is None
    assert not client.complete
    response = client.respond(RFC2195_CHALLENGE.encode())
    assert response == b"tim b913a602c7eda7a495b4e6e7334d3890"
    assert client.complete

    server = CramMD5Server(get_password, challenge=RFC2195_CHALLENGE)
    assert server.server_first
    assert server.step(None) == RFC2195_CHALLENGE.encode()
    assert server.step(response) is None
    assert server.authenticated_user == "tim"


def test_cram_md5_random_challenge_round_trip() -> None:
    server = CramMD5Server(get_password)
    transcript = run_exchange(CramMD5Client("alice", "correct horse"), server)
    challenge = transcript[0][1]
    assert challenge.startswith(b"<") and challenge.endswith(b"@pop3proto>")
    assert CramMD5Server(get_password).step(None) != challenge  # random per instance
    assert server.authenticated_user == "alice"


def test_cram_md5_uppercase_hex_digest_accepted() -> None:
    server = CramMD5Server(get_password, challenge=RFC2195_CHALLENGE)
    server.step(None)
    assert server.step(b"tim B913A602C7EDA7A495B4E6E7334D3890") is None


@pytest.mark.parametrize(("user", "password"), [("tim", "wrong"), ("nobody", "tanstaaftanstaaf")])
def test_cram_md5_failure(user: str, password: str) -> None:
    with pytest.raises(SaslAuthenticationFailed):
        run_exchange(CramMD5Client(user, password), CramMD5Server(get_password))


@pytest.mark.parametrize(
    "response",
    [b"", b"tim", b" b913a602c7eda7a495b4e6e7334d3890", b"tim b913", b"tim " + b"g" * 32],
)
def test_cram_md5_malformed(response: bytes) -> None:
    server = CramMD5Server(get_password, challenge=RFC2195_CHALLENGE)
    server.step(None)
    with pytest.raises(SaslAuthenticationFailed):
        server.step(response)


def test_cram_md5_rejects_initial_response() -> None:
    # Even a response that would be correct for the challenge is refused
    # when it comes as an initial response: CRAM-MD5 is server-first.
    server = CramMD5Server(get_password, challenge=RFC2195_CHALLENGE)
    with pytest.raises(SaslAuthenticationFailed, match="initial response"):
        server.step(b"tim b913a602c7eda7a495b4e6e7334d3890")


def test_cram_md5_client_rejects_empty_or_second_challenge() -> None:
    with pytest.raises(SaslServerVerificationFailed):
        CramMD5Client("tim", "pw").respond(b"")
    client = CramMD5Client("tim", "pw")
    client.respond(b"<1@x>")
    with pytest.raises(SaslServerVerificationFailed):
        client.respond(b"<2@x>")

"""SCRAM-SHA-1 (RFC 5802) and SCRAM-SHA-256 (RFC 7677), both sides (pop3proto.sasl._scram)."""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pop3proto.sasl import (
    CramMD5Server,
    SaslAuthenticationFailed,
    SaslServerVerificationFailed,
    ScramClient,
    ScramCredentials,
    ScramServer,
    ScramSha1Client,
    ScramSha1Server,
    ScramSha256Client,
    ScramSha256Server,
    scram_credentials,
)
from tests.helpers import run_exchange, secret_free

SCRAM_VECTORS = {
    # RFC 5802 §5
    "sha1": (
        "fyko+d2lbbFgONRv9qkxdawL",
        "3rfcNHYJY1ZVvWVs7j",
        b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
        b"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
        b"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
        b"v=rmF9pqV8S7suAoZWja4dJRkFsKQ=",
    ),
    # RFC 7677 §3
    "sha256": (
        "rOprNGfwEbeRWgbNEkqO",
        "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
        b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
        b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
        b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
        b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
        b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
    ),
}


def _salt_of(server_first: bytes) -> bytes:
    return base64.b64decode(server_first.split(b",s=")[1].split(b",")[0])


@pytest.mark.parametrize("hash_name", ["sha1", "sha256"])
def test_scram_client_rfc_vector(hash_name: str) -> None:
    cnonce, _, client_first, server_first, client_final, server_final = SCRAM_VECTORS[hash_name]
    client = ScramClient("user", "pencil", hash_name=hash_name, nonce=cnonce)
    assert client.name == {"sha1": "SCRAM-SHA-1", "sha256": "SCRAM-SHA-256"}[hash_name]
    assert client.initial_response() == client_first
    assert client.respond(server_first) == client_final
    assert not client.complete
    assert client.respond(server_final) == b""
    assert client.complete


@pytest.mark.parametrize("hash_name", ["sha1", "sha256"])
def test_scram_server_rfc_vector(hash_name: str) -> None:
    _, snonce, client_first, server_first, client_final, server_final = SCRAM_VECTORS[hash_name]
    creds = scram_credentials(
        "pencil", hash_name=hash_name, salt=_salt_of(server_first), iterations=4096
    )
    server = ScramServer(
        lambda u: creds if u == "user" else None, hash_name=hash_name, nonce=snonce
    )
    assert server.step(None) == b""
    assert server.step(client_first) == server_first
    assert server.step(client_final) == server_final
    assert server.authenticated_user is None  # not before the final empty line
    assert server.step(b"") is None
    assert server.authenticated_user == "user"


@pytest.mark.parametrize("hash_name", ["sha1", "sha256"])
def test_scram_round_trip(hash_name: str) -> None:
    creds = scram_credentials("s3cr\u00e9t", hash_name=hash_name)
    server = ScramServer(lambda u: creds if u == "user" else None, hash_name=hash_name)
    client = ScramClient("user", "s3cr\u00e9t", hash_name=hash_name)
    transcript = run_exchange(client, server)
    assert [side for side, _ in transcript] == ["C", "S", "C", "S", "C"]
    assert transcript[-1] == ("C", b"")
    assert server.authenticated_user == "user"
    assert client.complete


def _scram_pair(
    password: str = "pencil", user: str = "user", hash_name: str = "sha256"
) -> tuple[ScramClient, ScramServer]:
    creds = scram_credentials("pencil", hash_name=hash_name, salt=b"0123456789abcdef")
    server = ScramServer(lambda u: creds if u == "user" else None, hash_name=hash_name)
    return ScramClient(user, password, hash_name=hash_name), server


def test_scram_wrong_password() -> None:
    client, server = _scram_pair(password="pencil2")
    with pytest.raises(SaslAuthenticationFailed) as info:
        run_exchange(client, server)
    assert server.authenticated_user is None
    secret_free(info.value, "pencil2")


def test_scram_unknown_user_indistinguishable_from_wrong_password() -> None:
    failures = {}
    server_firsts = {}
    for label, user, password in [("wrong", "user", "x"), ("unknown", "ghost", "x")]:
        for attempt in range(2):
            client, server = _scram_pair(password=password, user=user)
            server_first = server.step(client.initial_response())
            assert server_first is not None
            server_firsts[label, attempt] = server_first
            client_final = client.respond(server_first)
            with pytest.raises(SaslAuthenticationFailed) as info:
                server.step(client_final)
            failures[label] = str(info.value)
    assert failures["wrong"] == failures["unknown"]
    # The fake salt for an unknown user is stable across attempts (a fresh
    # random salt each time would give the user's absence away) and looks
    # like a real one; the iteration count matches the real users'.
    assert _salt_of(server_firsts["unknown", 0]) == _salt_of(server_firsts["unknown", 1])
    assert len(_salt_of(server_firsts["unknown", 0])) == 16
    assert server_firsts["unknown", 0].endswith(b",i=4096")


def test_scram_tampered_proof() -> None:
    client, server = _scram_pair()

    def flip_proof(index: int, response: bytes) -> bytes:
        if index == 0:
            head, proof = response.rsplit(b",p=", 1)
            raw = bytearray(base64.b64decode(proof))
            raw[0] ^= 1
            return head + b",p=" + base64.b64encode(bytes(raw))
        return response

    with pytest.raises(SaslAuthenticationFailed):
        run_exchange(client, server, tamper_response=flip_proof)


def test_scram_tampered_server_signature() -> None:
    client, server = _scram_pair()

    def flip_signature(index: int, challenge: bytes) -> bytes:
        if index == 1:
            raw = bytearray(base64.b64decode(challenge[2:]))
            raw[-1] ^= 0x80
            return b"v=" + base64.b64encode(bytes(raw))
        return challenge

    with pytest.raises(SaslServerVerificationFailed):
        run_exchange(client, server, tamper_challenge=flip_signature)
    assert not client.complete


def test_scram_server_signature_from_other_password_rejected() -> None:
    # An impostor server that does not know the real credentials.
    client = ScramClient("user", "pencil")
    impostor = ScramServer(lambda u: scram_credentials("other"))
    server_first = impostor.step(client.initial_response())
    assert server_first is not None
    client_final = client.respond(server_first)
    with pytest.raises(SaslAuthenticationFailed):
        impostor.step(client_final)
    with pytest.raises(SaslServerVerificationFailed):
        client.respond(b"v=" + base64.b64encode(b"\0" * 32))


def test_scram_ok_without_server_final_is_not_complete() -> None:
    # A server that says +OK right after client-final has not proven itself.
    client, server = _scram_pair()
    server_first = server.step(client.initial_response())
    assert server_first is not None
    client.respond(server_first)
    assert not client.complete


def test_scram_server_error_attribute() -> None:
    client = ScramClient("user", "pencil", nonce="abc")
    client.initial_response()
    client.respond(b"r=abcdef,s=QSXCR+Q6sek8bf92,i=4096")
    with pytest.raises(SaslServerVerificationFailed, match="invalid-proof"):
        client.respond(b"e=invalid-proof")


@pytest.mark.parametrize(
    "server_first",
    [
        b"r=abc,s=QSXCR+Q6sek8bf92,i=4096",  # server added no nonce
        b"r=xyzdef,s=QSXCR+Q6sek8bf92,i=4096",  # does not start with ours
        b"r=abc\x7f,s=QSXCR+Q6sek8bf92,i=4096",
        b"r=abcdef,s=QSXCR+Q6sek8bf9,i=4096",  # bad base64 salt
        b"r=abcdef,s=QSXCR+Q6sek8bf92,i=0",
        b"r=abcdef,s=QSXCR+Q6sek8bf92,i=04096",
        b"r=abcdef,s=QSXCR+Q6sek8bf92,i=-1",
        b"r=abcdef,s=QSXCR+Q6sek8bf92,i=10000001",
        b"r=abcdef,s=QSXCR+Q6sek8bf92,i=99999999999999999999",
        b"r=abcdef,s=QSXCR+Q6sek8bf92,i=\xd9\xa4",  # Arabic-Indic digit
        b"r=abcdef,s=QSXCR+Q6sek8bf92",
        b"m=ext,r=abcdef,s=QSXCR+Q6sek8bf92,i=4096",
        b"s=QSXCR+Q6sek8bf92,r=abcdef,i=4096",
        b"r=abcdef,,s=QSXCR+Q6sek8bf92,i=4096",
        b"\xff",
        b"garbage",
    ],
)
def test_scram_client_rejects_bad_server_first(server_first: bytes) -> None:
    client = ScramClient("user", "pencil", nonce="abc")
    client.initial_response()
    with pytest.raises(SaslServerVerificationFailed):
        client.respond(server_first)


def test_scram_client_names_mandatory_extension() -> None:
    client = ScramClient("user", "pencil", nonce="abc")
    client.initial_response()
    with pytest.raises(SaslServerVerificationFailed, match="mandatory"):
        client.respond(b"m=ext,r=abcdef,s=QSXCR+Q6sek8bf92,i=4096")


def test_scram_client_accepts_extensions_and_max_iterations_bound() -> None:
    client = ScramClient("user", "pencil", nonce="abc")
    client.initial_response()
    out = client.respond(b"r=abcdef,s=QSXCR+Q6sek8bf92,i=1,x=future-extension")
    assert out.startswith(b"c=biws,r=abcdef,p=")


@pytest.mark.parametrize("server_final", [b"", b"x=1", b"v=###", b"v=AAAA", b"v"])
def test_scram_client_rejects_bad_server_final(server_final: bytes) -> None:
    client = ScramClient("user", "pencil", nonce="abc")
    client.initial_response()
    client.respond(b"r=abcdef,s=QSXCR+Q6sek8bf92,i=16")
    with pytest.raises(SaslServerVerificationFailed):
        client.respond(server_final)


def test_scram_client_rejects_challenge_after_completion() -> None:
    client, server = _scram_pair()
    run_exchange(client, server)
    with pytest.raises(SaslServerVerificationFailed):
        client.respond(b"more")


def test_scram_username_escaping() -> None:
    user = "a=b,c"
    creds = scram_credentials("pw", iterations=16)
    seen: list[str] = []

    def lookup(name: str) -> ScramCredentials | None:
        seen.append(name)
        return creds

    client = ScramClient(user, "pw", nonce="n0nce")
    assert client.initial_response() == b"n,,n=a=3Db=2Cc,r=n0nce"
    server = ScramServer(lookup)
    run_exchange(client, server)
    assert seen == ["a=b,c"]
    assert server.authenticated_user == "a=b,c"


def test_scram_username_saslprep() -> None:
    client = ScramClient("I\u00adX", "pw", nonce="n")
    assert client.initial_response() == b"n,,n=IX,r=n"


def test_scram_password_saslprep_equivalence() -> None:
    # RFC 5802 §2.2: Normalize(password) is SASLprep, so "I\u00adX" == "IX".
    creds = scram_credentials("IX", iterations=16)
    server = ScramServer(lambda u: creds)
    run_exchange(ScramClient("user", "I\u00adX"), server)
    assert server.authenticated_user == "user"


@given(
    st.text(min_size=1, max_size=12).filter(lambda s: "\0" not in s),
    st.text(max_size=12),
)
@settings(max_examples=40, deadline=None)
def test_scram_round_trip_any_text(user: str, password: str) -> None:
    creds = scram_credentials(password, iterations=16)
    server = ScramServer(lambda u: creds)
    client = ScramClient(user, password)
    run_exchange(client, server)
    assert server.authenticated_user is not None
    assert client.complete


@pytest.mark.parametrize(
    "client_first",
    [
        b"p=tls-unique,,n=user,r=abc",  # channel binding requested
        b"x,,n=user,r=abc",
        b"n,,n=user",
        b"n,,r=abc,n=user",
        b"n,,m=ext,n=user,r=abc",
        b"n,,n=,r=abc",
        b"n,,n=us=er,r=abc",  # bad escape (RFC 5802 §5.1: MUST fail)
        b"n,,n=us=2Xer,r=abc",
        b"n,,n=user,r=a,bc",
        b"n,,n=user,r=",
        b"n,,n=u\0ser,r=abc",
        b"n,a=,n=user,r=abc",
        b"n,b=x,n=user,r=abc",
        b"n,a=admin,n=user,r=abc",  # authzid differs from authcid
        b"n",
        b"\xff\xfe",
    ],
)
def test_scram_server_rejects_bad_client_first(client_first: bytes) -> None:
    server = ScramServer(lambda u: scram_credentials("pencil", iterations=16))
    with pytest.raises(SaslAuthenticationFailed):
        server.step(client_first)


def test_scram_server_accepts_y_flag_and_own_authzid() -> None:
    creds = scram_credentials("pencil", iterations=16)
    for header in (b"y,,", b"n,a=user,"):
        server = ScramServer(lambda u: creds, nonce="srv")
        out = server.step(header + b"n=user,r=abc")
        assert out is not None and out.startswith(b"r=abcsrv,")


@pytest.mark.parametrize(
    "mutate",
    [
        lambda m: m.replace(b"c=biws", b"c=eSws"),  # c= is not our gs2 header
        lambda m: m.replace(b"c=biws", b"c=biws="),
        lambda m: m.replace(b",r=abc", b",r=abX"),
        lambda m: m.split(b",p=")[0],
        lambda m: m + b"=",
        lambda m: m[:-4] + b"AA==",  # proof of the wrong length
        lambda m: b"r=" + m,
        lambda m: b"\xff" + m,
    ],
)
def test_scram_server_rejects_bad_client_final(mutate: Callable[[bytes], bytes]) -> None:
    creds = scram_credentials("pencil", iterations=16)
    server = ScramServer(lambda u: creds, nonce="srv")
    client = ScramClient("user", "pencil", nonce="abc")
    server_first = server.step(client.initial_response())
    assert server_first is not None
    good = client.respond(server_first)
    with pytest.raises(SaslAuthenticationFailed):
        server.step(mutate(good))


def _forged_client_final(
    password: str,
    server_first: bytes,
    first_bare: bytes,
    binding: bytes,
    nonce: bytes | None = None,
) -> bytes:
    """A client-final with a *valid* proof over an arbitrary c= value (RFC 5802 §3)."""
    import hashlib
    import hmac

    attrs = dict(item.split(b"=", 1) for item in server_first.split(b","))
    salted = hashlib.pbkdf2_hmac(
        "sha256", password.encode(), base64.b64decode(attrs[b"s"]), int(attrs[b"i"])
    )
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    stored_key = hashlib.sha256(client_key).digest()
    nonce = attrs[b"r"] if nonce is None else nonce
    without_proof = b"c=" + base64.b64encode(binding) + b",r=" + nonce
    auth_message = first_bare + b"," + server_first + b"," + without_proof
    signature = hmac.digest(stored_key, auth_message, "sha256")
    proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
    return without_proof + b",p=" + base64.b64encode(proof)


def test_scram_forged_helper_matches_client() -> None:
    creds = scram_credentials("pencil", iterations=16)
    server = ScramServer(lambda u: creds, nonce="srv")
    server_first = server.step(b"n,,n=user,r=abc")
    assert server_first is not None
    final = _forged_client_final("pencil", server_first, b"n=user,r=abc", b"n,,")
    assert server.step(final) is not None  # a correct forgery is accepted ...


def test_scram_server_checks_channel_binding_even_with_valid_proof() -> None:
    # ... but c= must repeat the GS2 header of client-first (RFC 5802 §6):
    # here the client said "y" (it supports channel binding) and then claims
    # "n" in c=, a downgrade the server must catch even with a valid proof.
    creds = scram_credentials("pencil", iterations=16)
    server = ScramServer(lambda u: creds, nonce="srv")
    server_first = server.step(b"y,,n=user,r=abc")
    assert server_first is not None
    final = _forged_client_final("pencil", server_first, b"n=user,r=abc", b"n,,")
    with pytest.raises(SaslAuthenticationFailed, match="binding"):
        server.step(final)


def test_scram_server_checks_nonce_even_with_valid_proof() -> None:
    # A replayed/altered nonce must be refused by the nonce check itself,
    # not only because it happens to change the proof.
    creds = scram_credentials("pencil", iterations=16)
    server = ScramServer(lambda u: creds, nonce="srv")
    server_first = server.step(b"n,,n=user,r=abc")
    assert server_first is not None
    final = _forged_client_final("pencil", server_first, b"n=user,r=abc", b"n,,", b"abcother")
    with pytest.raises(SaslAuthenticationFailed, match="nonce"):
        server.step(final)


def test_scram_server_rejects_data_after_server_final() -> None:
    client, server = _scram_pair()
    server_first = server.step(client.initial_response())
    assert server_first is not None
    server_final = server.step(client.respond(server_first))
    assert server_final is not None and server_final.startswith(b"v=")
    with pytest.raises(SaslAuthenticationFailed):
        server.step(b"unexpected")


def test_scram_class_dispatch_and_validation() -> None:
    assert type(ScramClient("u", "p")) is ScramSha256Client
    assert type(ScramClient("u", "p", hash_name="sha1")) is ScramSha1Client
    assert isinstance(ScramSha1Client("u", "p"), ScramClient)
    assert ScramSha1Client("u", "p").name == "SCRAM-SHA-1"
    assert type(ScramServer(lambda u: None, hash_name="sha1")) is ScramSha1Server
    assert type(ScramServer(lambda u: None)) is ScramSha256Server
    with pytest.raises(ValueError):
        ScramClient("u", "p", hash_name="md5")
    with pytest.raises(ValueError):
        ScramSha1Client("u", "p", hash_name="sha256")
    with pytest.raises(ValueError):
        ScramServer(lambda u: None, hash_name="sha512")
    with pytest.raises(ValueError):
        ScramClient("u", "p", nonce="a,b")
    with pytest.raises(ValueError):
        ScramClient("u", "p", nonce="")
    with pytest.raises(ValueError):
        ScramClient("", "p")
    with pytest.raises(ValueError):
        ScramServer(lambda u: None, nonce="sp ace")
    with pytest.raises(ValueError):
        ScramSha1Server(lambda u: None, hash_name="sha256")
    with pytest.raises(ValueError):
        CramMD5Server(lambda u: None, challenge="")


def test_scram_server_refuses_credentials_for_other_hash() -> None:
    creds = scram_credentials("pencil", hash_name="sha1", iterations=16)
    server = ScramServer(lambda u: creds, hash_name="sha256")
    with pytest.raises(ValueError):
        server.step(b"n,,n=user,r=abc")


def test_scram_credentials() -> None:
    a = scram_credentials("pencil", iterations=16)
    b = scram_credentials("pencil", iterations=16)
    assert a.salt != b.salt and len(a.salt) == 16  # random salt
    assert len(a.stored_key) == 32 and len(a.server_key) == 32
    c = scram_credentials("pencil", hash_name="sha1", salt=a.salt, iterations=16)
    assert len(c.stored_key) == 20
    for bad in (0, 10_000_001):
        with pytest.raises(ValueError):
            scram_credentials("pencil", iterations=bad)
    with pytest.raises(ValueError):
        scram_credentials("pencil", salt=b"")
    with pytest.raises(ValueError):
        ScramCredentials(salt=b"s", iterations=0, stored_key=b"x" * 32, server_key=b"y" * 32)
    with pytest.raises(ValueError):
        ScramCredentials(salt=b"s", iterations=1, stored_key=b"x" * 7, server_key=b"y" * 7)
    text = repr(a)
    assert a.stored_key.hex() not in text and repr(a.stored_key) not in text
    assert repr(a.server_key) not in text


@pytest.mark.parametrize("hash_name", ["sha1", "sha256"])
def test_scram_server_refuses_client_final_without_proof_last(hash_name: str) -> None:
    """RFC 5802 §7: client-final-message ends with the proof attribute."""
    _, snonce, client_first, server_first, client_final, _ = SCRAM_VECTORS[hash_name]
    creds = scram_credentials(
        "pencil", hash_name=hash_name, salt=_salt_of(server_first), iterations=4096
    )
    server = ScramServer(
        lambda u: creds if u == "user" else None, hash_name=hash_name, nonce=snonce
    )
    server.step(None)
    server.step(client_first)
    with pytest.raises(SaslAuthenticationFailed):
        server.step(client_final + b",x=extra")

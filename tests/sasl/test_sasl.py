"""Tests for pop3proto.sasl and pop3proto._apop: APOP, strict base64, SASLprep, the mechanisms."""

from __future__ import annotations

import base64
import binascii
import json
import stringprep
import sys
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pop3proto._apop import apop_digest, parse_greeting_timestamp
from pop3proto._errors import ProtocolError
from pop3proto.sasl import (
    CLIENT_MECHANISMS,
    SERVER_MECHANISMS,
    CramMD5Client,
    CramMD5Server,
    LoginClient,
    LoginServer,
    OAuthBearerClient,
    OAuthBearerServer,
    PlainClient,
    PlainServer,
    SaslAuthenticationFailed,
    SaslClientMechanism,
    SaslError,
    SaslServerMechanism,
    SaslServerVerificationFailed,
    ScramClient,
    ScramCredentials,
    ScramServer,
    ScramSha1Client,
    ScramSha1Server,
    ScramSha256Client,
    ScramSha256Server,
    XOAuth2Client,
    XOAuth2Server,
    fits_initial_response,
    sasl_b64decode,
    sasl_b64encode,
    saslprep,
    scram_credentials,
)
from pop3proto.sasl._codec import _check_strict_base64

# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def wire(data: bytes) -> bytes:
    """Send *data* through the SASL base64 framing, as the engine would."""
    return sasl_b64decode(sasl_b64encode(data))


def run_exchange(
    client: SaslClientMechanism,
    server: SaslServerMechanism,
    *,
    send_initial_response: bool = True,
    tamper_challenge: Callable[[int, bytes], bytes] | None = None,
    tamper_response: Callable[[int, bytes], bytes] | None = None,
) -> list[tuple[str, bytes]]:
    """Drive a full POP3 AUTH exchange; return the transcript.

    Exceptions from either side propagate.  The tamper hooks get the
    0-based index of the challenge/response and may replace it.
    """
    transcript: list[tuple[str, bytes]] = []
    ir = client.initial_response()
    if send_initial_response and ir is not None and not server.server_first:
        transcript.append(("C", ir))
        challenge = server.step(wire(ir))
    else:
        challenge = server.step(None)
    index = 0
    while challenge is not None:
        if tamper_challenge is not None:
            challenge = tamper_challenge(index, challenge)
        transcript.append(("S", challenge))
        response = client.respond(wire(challenge))
        if tamper_response is not None:
            response = tamper_response(index, response)
        transcript.append(("C", response))
        challenge = server.step(wire(response))
        index += 1
    return transcript


PASSWORDS = {"tim": "tanstaaftanstaaf", "alice": "correct horse"}


def check_password(user: str, password: str) -> bool:
    return PASSWORDS.get(user) == password


def get_password(user: str) -> str | None:
    return PASSWORDS.get(user)


def secret_free(exc: BaseException, *secrets: str) -> None:
    """Assert no secret shows up in *exc*, its repr, or its chained exceptions."""
    seen: BaseException | None = exc
    while seen is not None:
        for text in (str(seen), repr(seen)):
            for secret in secrets:
                assert secret not in text
        seen = seen.__cause__ or seen.__context__


# ---------------------------------------------------------------------------
# APOP (RFC 1939 §7)
# ---------------------------------------------------------------------------


def test_apop_digest_rfc1939_vector() -> None:
    assert (
        apop_digest("<1896.697170952@dbc.mtview.ca.us>", "tanstaaf")
        == "c4c9334bac560ecc979e58001b3e22fb"
    )


def test_apop_digest_depends_on_both_inputs() -> None:
    base = apop_digest("<1@x>", "secret")
    assert apop_digest("<2@x>", "secret") != base
    assert apop_digest("<1@x>", "secreT") != base
    assert len(base) == 32 and base == base.lower()


def test_apop_digest_utf8_secret() -> None:
    import hashlib

    expected = hashlib.md5("<1@x>pässwörd".encode()).hexdigest()
    assert apop_digest("<1@x>", "pässwörd") == expected


def test_apop_digest_unencodable_secret_is_not_quoted() -> None:
    with pytest.raises(ValueError) as info:
        apop_digest("<1@x>", "ab\ud800cd")
    secret_free(info.value, "\ud800", "ab")
    assert info.value.__context__ is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "POP3 server ready <1896.697170952@dbc.mtview.ca.us>",
            "<1896.697170952@dbc.mtview.ca.us>",
        ),
        ("Dovecot ready. <1a2b.3c4d@host>", "<1a2b.3c4d@host>"),
        ("+OK Dovecot ready. <1a2b.3c4d@host>", "<1a2b.3c4d@host>"),
        ("<a@b> trailing text", "<a@b>"),
        ("> stray closer first <a@b>", "<a@b>"),
        ("<a@b>>", "<a@b>"),
        ("POP3 ready", None),
        ("", None),
        ("two <a@b> <c@d>", None),
        ("<>", None),
        ("<a b@c>", None),
        ("<a@b", None),
        ("unclosed < and <a@b>", None),
        ("<<a@b>", None),
        ("<a<b@c>", None),
        ("<nodomain>", None),
        ("<a\t@b>", None),
        ("<a\x00@b>", None),
        ("<a@b\x7f>", None),
        ("<a@b\u00a0c>", None),
        ("<\u00e9t\u00e9@host>", None),
    ],
)
def test_parse_greeting_timestamp(text: str, expected: str | None) -> None:
    assert parse_greeting_timestamp(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<" * 1_000_000, None),
        ("<@" * 500_000, None),
        ("@<" * 500_000, None),
        ("<@>" * 333_333, None),
        (">" * 1_000_000, None),
        ("<" + "a" * 1_000_000, None),
        ("<" + "a" * 1_000_000 + "@b>", "<" + "a" * 1_000_000 + "@b>"),
        ("x" * 1_000_000 + "<1@h>", "<1@h>"),
    ],
    ids=["lt", "lt-at", "at-lt", "triples", "gt", "unclosed", "long-valid", "late"],
)
def test_parse_greeting_timestamp_huge_adversarial(text: str, expected: str | None) -> None:
    # Linear-time by construction; this just has to finish (no timing assert).
    assert parse_greeting_timestamp(text) == expected


# ---------------------------------------------------------------------------
# Strict base64 (RFC 5034 §4)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "encoded"),
    [
        (b"", b""),
        (b"f", b"Zg=="),
        (b"fo", b"Zm8="),
        (b"foo", b"Zm9v"),
        (b"foob", b"Zm9vYg=="),
        (b"fooba", b"Zm9vYmE="),
        (b"foobar", b"Zm9vYmFy"),  # RFC 4648 §10 test vectors
        (b"\xff\xfe\xfd", b"//79"),
    ],
)
def test_b64_vectors(raw: bytes, encoded: bytes) -> None:
    assert sasl_b64encode(raw) == encoded
    assert sasl_b64decode(encoded) == raw


def test_b64_encode_no_newline_on_long_input() -> None:
    out = sasl_b64encode(b"x" * 10_000)
    assert b"\n" not in out and len(out) == 4 * ((10_000 + 2) // 3)


@pytest.mark.parametrize(
    "bad",
    [
        b"=AAA",
        b"AAA=BBB",
        b"AAA=BBBB",
        b"A A=",
        b"AAAA ",
        b" AAAA",
        b"AAAA\r\n",
        b"AA\nAA",
        b"AAA",
        b"AA",
        b"A",
        b"AAAAA",
        b"====",
        b"A===",
        b"AA=",
        b"AA=A",
        b"AAA==",
        b"AA==AA==",
        b"=",
        b"Zg-_",  # URL-safe alphabet is not SASL base64
        b"Zg\x00=",
        b"\xc3\xa9AAA",
        "é".encode("latin-1") * 4,
        b"AB==",  # non-zero pad bits (RFC 4648 §3.5)
        b"AAB=",
        b"Zh==",
    ],
)
def test_b64_decode_rejects(bad: bytes) -> None:
    with pytest.raises(ValueError) as info:
        sasl_b64decode(bad)
    # A plain ValueError, not binascii.Error, and not a ProtocolError.
    assert type(info.value) is ValueError
    assert not isinstance(info.value, ProtocolError)


def test_b64_decode_accepts_buffer_types() -> None:
    assert sasl_b64decode(bytearray(b"Zm9v")) == b"foo"
    assert sasl_b64decode(memoryview(b"Zm9vYg==")) == b"foob"


@given(st.binary(max_size=600))
def test_b64_round_trip(data: bytes) -> None:
    encoded = sasl_b64encode(data)
    assert encoded == base64.b64encode(data)
    assert sasl_b64decode(encoded) == data


@given(st.binary(max_size=200))
def test_b64_decode_only_raises_value_error(data: bytes) -> None:
    try:
        decoded = sasl_b64decode(data)
    except ValueError as exc:
        assert type(exc) is ValueError
    else:
        # Anything accepted is the one canonical spelling of its bytes.
        assert sasl_b64encode(decoded) == data


_B64ISH = st.text(alphabet="AZaz09+/=  \n-", max_size=16).map(lambda s: s.encode("ascii"))


@given(_B64ISH)
def test_b64_decode_is_exactly_canonical_base64(data: bytes) -> None:
    try:
        sasl_b64decode(data)
        accepted = True
    except ValueError:
        accepted = False
    try:
        canonical = base64.b64encode(base64.b64decode(data, validate=True)) == data
    except binascii.Error:
        canonical = False
    assert accepted == canonical


def _strict_mode_accepts(data: bytes) -> bool:
    if sys.version_info >= (3, 11):
        try:
            binascii.a2b_base64(data, strict_mode=True)
        except binascii.Error:
            return False
        return True
    pytest.skip("binascii strict_mode needs Python 3.11")  # pragma: no cover


@given(_B64ISH)
def test_own_check_agrees_with_binascii_strict_mode(data: bytes) -> None:
    # The hand-written validation is all Python 3.10 gets; it must accept a
    # subset of what strict_mode accepts, the difference being only the
    # non-zero pad bits that it additionally rejects.
    try:
        _check_strict_base64(data)
        ours = True
    except ValueError:
        ours = False
    theirs = _strict_mode_accepts(data)
    if ours:
        assert theirs
    elif theirs:
        assert sasl_b64encode(binascii.a2b_base64(data)) != data


def test_b64_decode_large_input() -> None:
    data = bytes(range(256)) * 4000
    assert sasl_b64decode(sasl_b64encode(data)) == data
    with pytest.raises(ValueError):
        sasl_b64decode(sasl_b64encode(data)[:-4] + b"A=A=")


# ---------------------------------------------------------------------------
# SASLprep (RFC 4013)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given_text", "expected"),
    [
        ("I\u00adX", "IX"),  # RFC 4013 §3 #1: SOFT HYPHEN mapped to nothing
        ("user", "user"),  # #2
        ("USER", "USER"),  # #3: case preserved
        ("\u00aa", "a"),  # #4: NFKC
        ("\u2168", "IX"),  # #5: NFKC
        ("a\u00a0b", "a b"),  # C.1.2 space mapped to SPACE
        ("a\u1680b", "a b"),  # OGHAM SPACE MARK: C.1.2, and NFKC alone keeps it
        ("a\u200bb", "ab"),  # ZERO WIDTH SPACE is in B.1
        ("\u0627\u0628", "\u0627\u0628"),  # pure RandALCat is fine
        ("\u0627 1 \u0628", "\u0627 1 \u0628"),  # neutral chars inside are fine
        ("", ""),
    ],
)
def test_saslprep_maps(given_text: str, expected: str) -> None:
    assert saslprep(given_text) == expected


@pytest.mark.parametrize(
    "bad",
    [
        "\u0007",  # RFC 4013 §3 #6: prohibited C.2.1
        "\u0627\u0031",  # #7: RandALCat must end the string
        "\u0031\u0627",
        "\u0627a\u0628",  # RandALCat and LCat mixed
        "a\u0085b",  # C.2.2
        "\ue000",  # C.3 private use
        "\ufdd0",  # C.4 non-character
        "\ud800",  # C.5 surrogate
        "\ufff9",  # C.6
        "\u2ff0",  # C.7
        "\u200e",  # C.8
        "\U000e0001",  # C.9
    ],
)
def test_saslprep_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        saslprep(bad)
    with pytest.raises(ValueError):
        saslprep(bad, allow_unassigned=True)


def test_saslprep_unassigned_only_for_queries() -> None:
    unassigned = "\u0221"  # assigned in Unicode 4.0, unassigned in 3.2 (A.1)
    assert stringprep.in_table_a1(unassigned)
    with pytest.raises(ValueError):
        saslprep("x" + unassigned)
    assert saslprep("x" + unassigned, allow_unassigned=True) == "x" + unassigned


def test_saslprep_error_does_not_quote_input() -> None:
    with pytest.raises(ValueError) as info:
        saslprep("hunter2\u0007")
    secret_free(info.value, "hunter2", "\u0007", "U+0007", "7")


@given(st.text(max_size=30))
def test_saslprep_only_raises_value_error(text: str) -> None:
    try:
        out = saslprep(text, allow_unassigned=True)
    except ValueError:
        return
    for ch in out:
        assert not stringprep.in_table_b1(ch)
        assert not stringprep.in_table_c21_c22(ch)


# ---------------------------------------------------------------------------
# fits_initial_response (RFC 5034 §4)
# ---------------------------------------------------------------------------


def test_fits_initial_response_boundary() -> None:
    ir = b"x" * 180  # 240 base64 characters
    # "AUTH " + 7 + " " + 240 + CRLF = 255
    assert fits_initial_response("M" * 7, ir)
    assert not fits_initial_response("M" * 8, ir)
    assert len(b"AUTH " + b"M" * 7 + b" " + sasl_b64encode(ir) + b"\r\n") == 255


def test_fits_initial_response_empty_and_none() -> None:
    assert fits_initial_response("PLAIN", b"", limit=len("AUTH PLAIN =\r\n"))
    assert not fits_initial_response("PLAIN", b"", limit=len("AUTH PLAIN =\r\n") - 1)
    assert fits_initial_response("CRAM-MD5", None, limit=len("AUTH CRAM-MD5\r\n"))
    assert not fits_initial_response("CRAM-MD5", None, limit=len("AUTH CRAM-MD5\r\n") - 1)


@given(st.binary(max_size=400), st.sampled_from(["PLAIN", "SCRAM-SHA-256", "X"]))
def test_fits_initial_response_matches_encoding(ir: bytes, mech: str) -> None:
    line = b"AUTH " + mech.encode() + b" " + (sasl_b64encode(ir) or b"=") + b"\r\n"
    assert fits_initial_response(mech, ir) == (len(line) <= 255)


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


# ---------------------------------------------------------------------------
# CRAM-MD5 (RFC 2195)
# ---------------------------------------------------------------------------

RFC2195_CHALLENGE = "<1896.697170952@postoffice.reston.mci.net>"


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


# ---------------------------------------------------------------------------
# SCRAM (RFC 5802, RFC 7677)
# ---------------------------------------------------------------------------

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


def test_unescape_rejects_comma() -> None:
    from pop3proto.sasl._base import _unescape_saslname

    assert _unescape_saslname("a=2Cb=3D") == "a,b="
    assert _unescape_saslname("a,b") is None
    assert _unescape_saslname("a=") is None


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


# ---------------------------------------------------------------------------
# XOAUTH2 and OAUTHBEARER (RFC 7628)
# ---------------------------------------------------------------------------

TOKENS = {"alice@example.com": "ya29.good-token"}


def check_token(user: str, token: str) -> bool:
    return TOKENS.get(user) == token


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
# Registries, names, reprs, exception hierarchy
# ---------------------------------------------------------------------------


def test_registries() -> None:
    expected = {"PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256", "XOAUTH2"}
    expected.add("OAUTHBEARER")
    assert set(CLIENT_MECHANISMS) == expected
    assert set(SERVER_MECHANISMS) == expected
    for name, client_cls in CLIENT_MECHANISMS.items():
        assert client_cls.name == name
        assert issubclass(client_cls, SaslClientMechanism)
    for name, server_cls in SERVER_MECHANISMS.items():
        assert server_cls.name == name
        assert issubclass(server_cls, SaslServerMechanism)
    assert [n for n, c in SERVER_MECHANISMS.items() if c.server_first] == ["CRAM-MD5"]
    # Registry classes construct with (username, secret) for every client.
    assert CLIENT_MECHANISMS["SCRAM-SHA-1"] is ScramSha1Client
    assert SERVER_MECHANISMS["SCRAM-SHA-256"] is ScramSha256Server


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


def test_mechanism_without_fields_has_a_plain_repr() -> None:
    """The base class shows no fields unless a mechanism lists safe ones."""

    class Bare(PlainClient):
        def _safe_fields(self):  # type: ignore[no-untyped-def]
            return super(PlainClient, self)._safe_fields()

    text = repr(Bare("alice", "secret"))
    assert "secret" not in text and "Bare" in text

"""Strict base64 and the initial-response size rule, RFC 5034 §4 (pop3proto.sasl._codec)."""

from __future__ import annotations

import base64
import binascii
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pop3proto._errors import ProtocolError
from pop3proto.sasl import (
    fits_initial_response,
    sasl_b64decode,
    sasl_b64encode,
)
from pop3proto.sasl._codec import _check_strict_base64

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

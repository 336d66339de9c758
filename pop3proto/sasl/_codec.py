"""The byte encodings of authentication data: strict base64, secret-safe UTF-8.

RFC 5034 §4 carries every SASL message as one line of base64 and requires
both peers to refuse anything else; the engine uses :func:`sasl_b64decode`
and :func:`sasl_b64encode` for the ``AUTH`` initial response and for the
``+`` challenge and response lines, the SCRAM mechanisms for the base64
attributes inside their messages.  :func:`fits_initial_response` is RFC 5034
§4's rule for when an initial response may ride on the ``AUTH`` line.

``_utf8`` encodes text that may be secret (a password, a token, an APOP
secret) without ever quoting it in the error; the mechanisms and APOP share
it.  This module imports nothing from the rest of the package: the engine
and APOP depend on it without depending on any mechanism.
"""

from __future__ import annotations

import binascii
import sys
from typing import Final

__all__ = ["sasl_b64encode", "sasl_b64decode", "fits_initial_response"]


def _utf8(text: str, what: str) -> bytes:
    """UTF-8 encode *text*, never quoting its content in the error."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        pass
    # Raised outside the except block, so that the UnicodeEncodeError (whose
    # message quotes the offending character, maybe part of a password) is
    # not even kept as __context__.
    raise ValueError(f"{what} is not valid Unicode text")


# ---------------------------------------------------------------------------
# Base64 (RFC 5034 §4, RFC 4648 §4)
# ---------------------------------------------------------------------------

_B64_ALPHABET: Final = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_B64_VALUE: Final = {c: i for i, c in enumerate(_B64_ALPHABET)}


def sasl_b64encode(data: bytes) -> bytes:
    """Encode *data* as standard base64 (RFC 4648 §4) with padding and no newline.

    ``b""`` encodes to ``b""``; the engine, not this function, decides whether
    an empty *initial response* is written as ``=`` (RFC 5034 §4).
    """
    return binascii.b2a_base64(data, newline=False)


def _check_strict_base64(data: bytes) -> None:
    """Raise ValueError unless *data* is canonical, padded base64.

    This is the whole validation on every Python version; on 3.11+ the
    decoder additionally runs with ``strict_mode=True`` as a second line of
    defence.  All operations are C-level (``translate``, slicing), so the
    check is linear and fast on large challenges.
    """
    n = len(data)
    if n % 4:
        raise ValueError("base64 length is not a multiple of 4")
    if n == 0:
        return
    pad = 2 if data.endswith(b"==") else 1 if data.endswith(b"=") else 0
    body = data[: n - pad]
    # Any "=" left in the body is misplaced padding ("=AAA", "AAA=BBB",
    # "===="); anything else outside the alphabet is a bad character (spaces,
    # newlines, "-", "_", 8-bit bytes).
    if body.translate(None, _B64_ALPHABET):
        raise ValueError("invalid base64 character or misplaced padding")
    if pad:
        # RFC 4648 §3.5: the bits below the last full octet must be zero.
        # Rejecting non-zero pad bits makes the encoding canonical, so every
        # byte string has exactly one accepted spelling.
        unused_bits_mask = 0x0F if pad == 2 else 0x03
        if _B64_VALUE[body[-1]] & unused_bits_mask:
            raise ValueError("non-zero base64 padding bits")


def sasl_b64decode(data: bytes | bytearray | memoryview) -> bytes:
    """Decode one SASL line of base64, strictly.

    RFC 5034 §4 requires both peers to reject characters outside the base64
    alphabet and misplaced padding.  Accepted: only ``A-Z a-z 0-9 + /`` with
    correct trailing ``=`` padding, a length that is a multiple of 4, and zero
    pad bits.  Rejected, with a plain :class:`ValueError`: ``=AAA``,
    ``AAA=BBB``, ``A A=``, missing padding, ``====``, non-ASCII bytes,
    embedded CR/LF.  ``b""`` decodes to ``b""``.

    The ``=`` spelling of an empty initial response is *not* accepted here:
    it is legal only as the AUTH argument, which the engine handles.  Any
    bytes-like object is accepted (a slice of a receive buffer, say).
    """
    if not isinstance(data, bytes):
        data = bytes(data)  # bytearray / memoryview from a receive buffer
    _check_strict_base64(data)
    try:
        if sys.version_info >= (3, 11):
            return binascii.a2b_base64(data, strict_mode=True)
        return binascii.a2b_base64(data)  # pragma: no cover - Python 3.10
    except binascii.Error:  # pragma: no cover - unreachable after the check
        raise ValueError("invalid base64") from None


# ---------------------------------------------------------------------------
# Initial response size (RFC 5034 §4)
# ---------------------------------------------------------------------------


def fits_initial_response(mechanism: str, initial_response: bytes | None, limit: int = 255) -> bool:
    """Whether ``AUTH SP mechanism [SP initial-response] CRLF`` fits in *limit* octets.

    The initial response is counted as its base64 encoding, or as the single
    ``=`` that stands for an empty one.  RFC 5034 §4 (with RFC 2449 §4's
    255-octet command limit, CRLF included): a client whose initial response
    does not fit must omit it and send it after the server's empty challenge.
    With *initial_response* ``None`` the result says whether the bare
    ``AUTH mechanism`` command fits.
    """
    size = len(b"AUTH ") + len(mechanism.encode("utf-8")) + len(b"\r\n")
    if initial_response is not None:
        encoded = 1 if not initial_response else 4 * ((len(initial_response) + 2) // 3)
        size += 1 + encoded
    return size <= limit

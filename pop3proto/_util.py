"""Small validation helpers shared by the event classes and the parsers."""

from __future__ import annotations

from ._errors import LocalProtocolError

__all__ = [
    "check_text",
    "check_token",
    "check_number",
    "is_ascii",
]

# Octets that may never appear inside a protocol line: they would end the
# line early (CR, LF) or truncate it in C-based peers (NUL).  Refusing them on
# the way out is what stops argument injection (poplib's CVE-style bug).
_FORBIDDEN = ("\r", "\n", "\x00")


def is_ascii(s: str) -> bool:
    """True if every character of *s* is 7-bit ASCII."""
    return s.isascii()


def check_text(value: object, what: str) -> str:
    """Validate free text that goes on a status line.

    Text may contain spaces and (in UTF-8 or LANG mode) non-ASCII, but never
    CR, LF or NUL.
    """
    if not isinstance(value, str):
        raise LocalProtocolError(f"{what} must be str, not {type(value).__name__}")
    for ch in _FORBIDDEN:
        if ch in value:
            raise LocalProtocolError(f"{what} must not contain CR, LF or NUL")
    _check_encodable(value, what)
    return value


def _check_encodable(value: str, what: str) -> None:
    # Lone surrogates pass every str check but cannot be sent as UTF-8.
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise LocalProtocolError(f"{what} is not encodable as UTF-8") from None


def check_token(value: object, what: str, *, allow_empty: bool = False) -> str:
    """Validate one command parameter: RFC 2449 §3 ``param = 1*VCHAR``.

    No whitespace and no control characters; non-ASCII printable characters
    are accepted here (UTF-8 credentials, RFC 6856 §2.2) and the connection
    decides whether the session allows them.
    """
    if not isinstance(value, str):
        raise LocalProtocolError(f"{what} must be str, not {type(value).__name__}")
    if not value:
        if allow_empty:
            return value
        raise LocalProtocolError(f"{what} must not be empty")
    if not value.isprintable() or " " in value or "\u00a0" in value:
        raise LocalProtocolError(
            f"{what} must be printable with no whitespace or control characters"
        )
    _check_encodable(value, what)
    return value


def check_number(value: object, what: str, *, minimum: int = 1) -> int:
    """Validate a message number (>= 1) or a line count (>= 0)."""
    # bool is an int subclass; True as a message number is surely a bug.
    if not isinstance(value, int) or isinstance(value, bool):
        raise LocalProtocolError(f"{what} must be int, not {type(value).__name__}")
    if value < minimum:
        raise LocalProtocolError(f"{what} must be >= {minimum}, got {value}")
    return value

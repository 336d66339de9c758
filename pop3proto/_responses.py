"""Extended response codes: ``-ERR [SYS/TEMP] ...`` (RFC 2449 §8, RFC 3206, RFC 6856 §5).

RFC 2449 §3 lets the text of a status line start with a bracketed,
hierarchical, case-insensitive code::

    resp-code  = "[" resp-level *("/" resp-level) "]"
    resp-level = 1*rchar
    rchar      = printable ASCII except "/" and "]"

This module holds the value type (:class:`ResponseCode`), the codes defined
so far, and two pure helpers the engine uses on every status line: one that
splits a received text into ``(code, rest)`` and one that builds the text to
send.  Nothing here does I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ._errors import LocalProtocolError

__all__ = [
    "ResponseCode",
    "IN_USE",
    "LOGIN_DELAY",
    "SYS_TEMP",
    "SYS_PERM",
    "AUTH",
    "UTF8",
    "split_response_code",
    "format_status_text",
]

# rchar (RFC 2449 §3): %x21-2E / %x30-5C / %x5E-7F.  The RFC's upper bound
# 0x7F is DEL, a control character, which contradicts its own comment
# "printable ASCII"; we follow the comment and stop at 0x7E.  "[" (0x5B) *is*
# an rchar, so "[[X]" is the one-level code "[X".
_RCHAR = r"[\x21-\x2e\x30-\x5c\x5e-\x7e]"
_LEVEL_RE = re.compile(_RCHAR + "+")
# A whole code at the start of a text.  "/" and "]" are excluded from rchar,
# so every character has exactly one way to match: the regex runs in linear
# time whatever the input (no ReDoS on hostile status lines).
_CODE_AT_START_RE = re.compile(r"\[(" + _RCHAR + r"+(?:/" + _RCHAR + r"+)*)\]")

# Characters that would break the status line apart on the wire (RFC 1939 §3:
# a response is one line ended by CRLF).  NUL is refused as in commands.
_FORBIDDEN_IN_TEXT = ("\r", "\n", "\x00")


@dataclass(frozen=True, slots=True)
class ResponseCode:
    """An extended response code such as ``SYS/TEMP`` (RFC 2449 §8).

    ``levels`` holds the hierarchy, most general first, upper-cased (codes
    are case-insensitive, RFC 2449 §8), so equality and hashing ignore case:
    ``ResponseCode(("sys", "temp")) == SYS_TEMP``.  A list is accepted and
    stored as a tuple.

    Invalid levels (none at all, an empty level, or a character outside
    printable ASCII, "/" or "]") raise :class:`LocalProtocolError`.  Use
    :meth:`parse` to build one from its ``"SYS/TEMP"`` spelling and
    :func:`split_response_code` for text received from a peer.
    """

    levels: tuple[str, ...]

    def __post_init__(self) -> None:
        levels = self.levels
        # A bare string is iterable and would silently become one level per
        # character; point the caller at parse() instead.
        if isinstance(levels, str):
            raise LocalProtocolError(
                f"ResponseCode levels must be a tuple of strings, not {levels!r}; "
                "use ResponseCode.parse() for the 'A/B' form"
            )
        if not isinstance(levels, (tuple, list)):
            raise LocalProtocolError(
                f"ResponseCode levels must be a tuple of strings, not {type(levels).__name__}"
            )
        if not levels:
            raise LocalProtocolError("a response code needs at least one level")
        for level in levels:
            if not isinstance(level, str) or _LEVEL_RE.fullmatch(level) is None:
                raise LocalProtocolError(
                    f"invalid response code level {level!r}: expected one or more "
                    "printable ASCII characters other than '/' and ']' (RFC 2449 §3)"
                )
        # Validated as ASCII above, so str.upper() cannot change lengths or
        # map a non-ASCII letter onto an ASCII one.
        object.__setattr__(self, "levels", tuple(level.upper() for level in levels))

    @classmethod
    def parse(cls, code: str) -> ResponseCode:
        """Build a code from its slash-separated form, without brackets.

        ``ResponseCode.parse("sys/temp").levels == ("SYS", "TEMP")``.  Raises
        :class:`LocalProtocolError` if *code* is not a valid code (this is for
        values the application supplies; received text goes through
        :func:`split_response_code`, which never raises).
        """
        if not isinstance(code, str):
            raise LocalProtocolError(f"response code must be a str, not {type(code).__name__}")
        return cls(tuple(code.split("/")))

    def __str__(self) -> str:
        """The wire form without brackets, e.g. ``"SYS/TEMP"``."""
        return "/".join(self.levels)

    def matches(self, other: ResponseCode | str) -> bool:
        """Whether this code is *other* or a more detailed form of it.

        True when *other*'s levels are a prefix of this code's levels, case
        insensitively: ``[SYS/TEMP/FOO]`` matches ``"SYS/TEMP"`` and
        ``"SYS"`` but not ``"SYS/PERM"``.  This is how RFC 2449 §8's rule
        "clients MUST ignore unknown hierarchical detail" is applied.  A
        string *other* is parsed with :meth:`parse` (so an invalid one raises
        :class:`LocalProtocolError`).
        """
        prefix = (
            other.levels if isinstance(other, ResponseCode) else ResponseCode.parse(other).levels
        )
        return self.levels[: len(prefix)] == prefix

    @property
    def known(self) -> str | None:
        """The most specific registered code this code denotes, or ``None``.

        One of ``"IN-USE"``, ``"LOGIN-DELAY"`` (RFC 2449 §8.1), ``"SYS/TEMP"``,
        ``"SYS/PERM"``, ``"AUTH"`` (RFC 3206 §4-5), ``"UTF8"`` (RFC 6856 §5).
        Extra lower levels are ignored (``SYS/TEMP/FOO`` -> ``"SYS/TEMP"``);
        a code that is only a prefix of a known one (``SYS``) or is wholly
        unknown (``XFOO``) gives ``None``, and the reply should then be
        handled like one without a code (RFC 2449 §8).
        """
        for code in _KNOWN:
            if self.matches(code):
                return str(code)
        return None


#: ``[IN-USE]``: credentials fine, maildrop busy; retry later (RFC 2449 §8.1.2).
IN_USE = ResponseCode(("IN-USE",))
#: ``[LOGIN-DELAY]``: logged in too recently; wait (RFC 2449 §8.1.1).
LOGIN_DELAY = ResponseCode(("LOGIN-DELAY",))
#: ``[SYS/TEMP]``: temporary system problem; retry quietly (RFC 3206 §4).
SYS_TEMP = ResponseCode(("SYS", "TEMP"))
#: ``[SYS/PERM]``: system problem needing intervention (RFC 3206 §4).
SYS_PERM = ResponseCode(("SYS", "PERM"))
#: ``[AUTH]``: a problem with the credentials themselves (RFC 3206 §5).
AUTH = ResponseCode(("AUTH",))
#: ``[UTF8]``: the message needs UTF-8 mode (RFC 6856 §5).
UTF8 = ResponseCode(("UTF8",))

# No known code is a prefix of another, so the order only matters for speed.
_KNOWN: tuple[ResponseCode, ...] = (SYS_TEMP, SYS_PERM, IN_USE, LOGIN_DELAY, AUTH, UTF8)


def split_response_code(text: str) -> tuple[ResponseCode | None, str]:
    """Split received status text into ``(code, rest)``.

    *text* is what follows ``+OK``/``-ERR`` and its single space (or
    directly follows the status word, as in ``+OK[IN-USE]``).  If it starts
    with a well-formed ``[...]`` code (RFC 2449 §3: only at the very start),
    the code is returned with the rest of the text, one leading space
    removed; no space after ``]`` is also legal.  Anything malformed, such as
    an unclosed ``[``, ``[]``, ``[A//B]``, ``[A B]`` or control characters,
    gives ``(None, text)`` unchanged, so the reply is treated as having no
    code.  Never raises, and runs in time linear in ``len(text)``.
    """
    # Cheap exit for the common case of a plain text.
    if not text.startswith("["):
        return None, text
    match = _CODE_AT_START_RE.match(text)
    if match is None:
        return None, text
    # The regex enforces the same level grammar as ResponseCode.__post_init__,
    # so this constructor call cannot raise on peer data.
    code = ResponseCode(tuple(match.group(1).split("/")))
    rest = text[match.end() :]
    if rest.startswith(" "):
        rest = rest[1:]
    return code, rest


def format_status_text(code: ResponseCode | None, text: str) -> str:
    """Build the status text to send after ``+OK``/``-ERR`` and a space.

    Gives ``"[SYS/TEMP] text"``, just ``"[IN-USE]"`` when *text* is empty, or
    *text* unchanged when *code* is ``None``.  Raises
    :class:`LocalProtocolError` if *text* contains CR, LF or NUL, which
    would split or corrupt the line (RFC 1939 §3).

    Note: without a code, a *text* that itself starts with a valid ``[...]``
    will be read back as a code by a client that saw RESP-CODES (RFC 2449
    §6.4 promises that such text is a code); avoid sending one.
    """
    if code is not None and not isinstance(code, ResponseCode):
        raise LocalProtocolError(f"code must be a ResponseCode or None, not {type(code).__name__}")
    if not isinstance(text, str):
        raise LocalProtocolError(f"status text must be a str, not {type(text).__name__}")
    for char in _FORBIDDEN_IN_TEXT:
        if char in text:
            raise LocalProtocolError(f"status text must not contain {char!r}: {text!r}")
    if code is None:
        return text
    if not text:
        return f"[{code}]"
    return f"[{code}] {text}"

"""The CAPA capability list (RFC 2449 §5-6, RFC 2595 §4, RFC 3206 §6, RFC 6856 §2-3).

A CAPA reply is ``+OK`` followed by one capability per line, ended by ``.``::

    capability = capa-tag *(SP param) CRLF   ;512 octets maximum
    capa-tag   = 1*cchar                     ;printable ASCII, excluding "."
    param      = 1*VCHAR

:class:`Capabilities` keeps every line, in order, as ``(tag, params)``.  It
is strict when an application builds one to send, and tolerant when it is
parsed from a server's reply (:meth:`Capabilities.from_lines` never raises),
because real servers send sloppy whitespace and clients MUST ignore what
they do not understand (RFC 2449 §9).
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable
from dataclasses import dataclass

from ._errors import LocalProtocolError

__all__ = ["Capabilities"]

# cchar (RFC 2449 §3) is %x21-2D / %x2F-7F.  0x7F is DEL, not printable as the
# RFC's own comment says it should be, so we stop at 0x7E.  Excluding "." from
# the whole tag (not just its first character) also guarantees that no line
# we send can be mistaken for the "." terminator or need dot-stuffing.
_TAG_RE = re.compile(r"[\x21-\x2d\x2f-\x7e]+")

# RFC 2449 §5: each capability line is at most 512 octets including CRLF.
_MAX_LINE_OCTETS = 510

# Tags and keyword parameters (USER, NEVER, SASL mechanism names) are ASCII,
# so compare them with ASCII-only case folding: str.upper() would map e.g.
# U+017F LATIN SMALL LETTER LONG S onto "S" and let "STL\u017f" pass for "STLS".
_ASCII_UPPER = str.maketrans(string.ascii_lowercase, string.ascii_uppercase)

# Numbers in LOGIN-DELAY and EXPIRE are parsed only up to this many digits.
# Longer ones are nonsense (10**18 seconds is 3e10 years) and, past 4300
# digits, int() raises ValueError under CPython's int_max_str_digits guard;
# from_lines keeps over-long lines, so this input is reachable.
_MAX_DIGITS = 18


def _upper(value: str) -> str:
    return value.translate(_ASCII_UPPER)


def _parse_number(param: str) -> int | None:
    # isdigit() alone accepts non-ASCII digits such as "\u0661" and int() also
    # accepts "+5", " 5" and "1_000"; RFC 2449 §6.5/§6.7 mean plain decimal.
    if param.isascii() and param.isdigit() and len(param) <= _MAX_DIGITS:
        return int(param)
    return None


def _check_param(tag: str, param: object) -> None:
    if not isinstance(param, str):
        raise LocalProtocolError(
            f"parameters of capability {tag!r} must be str, not {type(param).__name__}"
        )
    # isprintable() is False for every control character (C0, DEL, C1) and for
    # every Unicode space or line separator except U+0020 itself, so together
    # with the SP test this rejects exactly what str.split() would split on or
    # what could break the line.  Non-ASCII printable text is allowed because
    # after UTF8 or LANG the server may send UTF-8 (RFC 6856 §2.1, §3).
    if not param or " " in param or not param.isprintable():
        raise LocalProtocolError(
            f"invalid parameter {param!r} for capability {tag!r}: parameters must be "
            "non-empty and printable, without spaces or control characters (RFC 2449 §3)"
        )


@dataclass(frozen=True, slots=True)
class Capabilities:
    """A server's capability list, as sent in reply to CAPA (RFC 2449 §5).

    ``entries`` holds one ``(tag, params)`` pair per capability line, in the
    order received or to be sent.  Tags are kept exactly as given; every
    lookup (``in``, :meth:`get` and the typed properties) is
    case-insensitive, as RFC 2449 §5 requires.  Unknown tags are kept too,
    so nothing the server said is lost.

    Constructing one directly validates it for sending and raises
    :class:`LocalProtocolError` if a tag is empty, is not printable ASCII
    without spaces or contains "." (RFC 2449 §3 ``cchar``; a leading "."
    would also look like the terminator), if a parameter is empty or
    contains spaces or control characters, or if a line would exceed 510
    octets (512 with CRLF, RFC 2449 §5).  Lists are accepted and stored as
    tuples.  Received replies go through :meth:`from_lines`, which never
    validates and never raises.
    """

    entries: tuple[tuple[str, tuple[str, ...]], ...]

    def __post_init__(self) -> None:
        raw = self.entries
        if not isinstance(raw, (tuple, list)):
            raise LocalProtocolError(
                f"entries must be a tuple of (tag, params) pairs, not {type(raw).__name__}"
            )
        entries: list[tuple[str, tuple[str, ...]]] = []
        for entry in raw:
            if not isinstance(entry, (tuple, list)) or len(entry) != 2:
                raise LocalProtocolError(f"each entry must be a (tag, params) pair, not {entry!r}")
            tag, params = entry
            if not isinstance(tag, str) or _TAG_RE.fullmatch(tag) is None:
                raise LocalProtocolError(
                    f"invalid capability tag {tag!r}: expected one or more printable "
                    "ASCII characters other than space and '.' (RFC 2449 §3, §5)"
                )
            # A bare string is iterable and would silently become one
            # parameter per character.
            if not isinstance(params, (tuple, list)):
                raise LocalProtocolError(
                    f"parameters of capability {tag!r} must be a tuple of str, "
                    f"not {type(params).__name__}"
                )
            for param in params:
                _check_param(tag, param)
            params = tuple(params)
            # Params are printable (no surrogates), so encoding cannot fail.
            octets = len(tag) + sum(1 + len(p.encode("utf-8")) for p in params)
            if octets > _MAX_LINE_OCTETS:
                raise LocalProtocolError(
                    f"capability line for {tag!r} is {octets} octets; the limit is "
                    f"{_MAX_LINE_OCTETS} plus CRLF (RFC 2449 §5)"
                )
            entries.append((tag, params))
        object.__setattr__(self, "entries", tuple(entries))

    @classmethod
    def from_lines(cls, lines: Iterable[str]) -> Capabilities:
        """Parse the lines of a received CAPA reply.

        *lines* are the capability lines already decoded, without CRLF,
        dot-unstuffed and without the terminator.  Each line is split on
        whitespace with :meth:`str.split`, which tolerates the double spaces
        and tabs of sloppy servers; blank lines are skipped.  Nothing is
        validated (over-long lines are kept; the engine enforces line
        limits), so this never raises on odd content, unlike the stdlib
        ``poplib`` which can fail on such replies.
        """
        entries = tuple((parts[0], tuple(parts[1:])) for line in lines if (parts := line.split()))
        # Bypass __post_init__: its checks are for what *we* send, and a
        # server's oddities must not turn into exceptions here.
        self = object.__new__(cls)
        object.__setattr__(self, "entries", entries)
        return self

    @classmethod
    def build(cls, *items: str | tuple[str, ...] | list[str]) -> Capabilities:
        """Build a validated capability list, for servers.

        Each item is a tag alone or a sequence ``(tag, *params)``::

            Capabilities.build("TOP", "UIDL", ("SASL", "PLAIN", "LOGIN"), "PIPELINING")

        A string item is a tag and may not contain spaces.  Raises
        :class:`LocalProtocolError` like the constructor.
        """
        entries: list[tuple[str, tuple[str, ...]]] = []
        for item in items:
            if isinstance(item, str):
                entries.append((item, ()))
            elif isinstance(item, (tuple, list)) and item:
                entries.append((item[0], tuple(item[1:])))
            else:
                raise LocalProtocolError(
                    f"capability must be a tag or a non-empty (tag, *params) sequence, not {item!r}"
                )
        return cls(tuple(entries))

    def to_lines(self) -> list[str]:
        """The capability lines to send, without CRLF or the terminator.

        No line needs dot-stuffing: validated tags never contain ".".
        """
        return [" ".join((tag, *params)) for tag, params in self.entries]

    def __contains__(self, tag: object) -> bool:
        """Whether a capability with this tag is present (case-insensitive)."""
        return isinstance(tag, str) and self.get(tag) is not None

    def get(self, tag: str) -> tuple[str, ...] | None:
        """The parameters of the first entry with *tag* (case-insensitive).

        ``None`` if there is no such entry; ``()`` if it has no parameters.
        """
        wanted = _upper(tag)
        for entry_tag, params in self.entries:
            if _upper(entry_tag) == wanted:
                return params
        return None

    def as_dict(self) -> dict[str, list[str]]:
        """The shape the stdlib's ``poplib.POP3.capa()`` returns.

        Maps each tag, **as given** (not upper-cased, as ``poplib`` does), to
        a list of its parameters.  As in ``poplib``, if a tag appears on more
        than one line the last one wins; :meth:`get` returns the first.
        """
        return {tag: list(params) for tag, params in self.entries}

    # -- typed views (RFC 2449 §6; missing or malformed means absent) --------

    @property
    def top(self) -> bool:
        """TOP command available (RFC 2449 §6.1)."""
        return "TOP" in self

    @property
    def user(self) -> bool:
        """USER/PASS available, possibly not for every user (RFC 2449 §6.2)."""
        return "USER" in self

    @property
    def uidl(self) -> bool:
        """UIDL command available (RFC 2449 §6.8)."""
        return "UIDL" in self

    @property
    def pipelining(self) -> bool:
        """The server accepts pipelined commands (RFC 2449 §6.6).

        ``PIPELINE``, which some servers advertise instead, counts too
        (CONFORMANCE.md §3.9): the misspelling cannot mean anything else,
        and pipelining a server that does not support it costs only speed.
        """
        return "PIPELINING" in self or "PIPELINE" in self

    @property
    def resp_codes(self) -> bool:
        """Any status text starting with "[" is a response code (RFC 2449 §6.4)."""
        return "RESP-CODES" in self

    @property
    def auth_resp_code(self) -> bool:
        """The server sends the ``[AUTH]`` response code (RFC 3206 §6)."""
        return "AUTH-RESP-CODE" in self

    @property
    def stls(self) -> bool:
        """STLS is allowed right now (RFC 2595 §4)."""
        return "STLS" in self

    @property
    def lang(self) -> bool:
        """LANG command available (RFC 6856 §3)."""
        return "LANG" in self

    @property
    def utf8(self) -> bool:
        """UTF8 command available (RFC 6856 §2)."""
        return "UTF8" in self

    @property
    def utf8_user(self) -> bool:
        """``UTF8 USER``: UTF-8 user names and passwords accepted (RFC 6856 §2.2)."""
        params = self.get("UTF8")
        return params is not None and any(_upper(p) == "USER" for p in params)

    @property
    def sasl(self) -> tuple[str, ...]:
        """SASL mechanism names, upper-cased; ``()`` without SASL (RFC 2449 §6.3).

        Mechanism names are case-sensitive upper-case ASCII (RFC 4422 §3.1),
        so lower-case spellings from sloppy servers are normalised.
        """
        params = self.get("SASL")
        return () if params is None else tuple(_upper(p) for p in params)

    @property
    def login_delay(self) -> int | None:
        """Minimum seconds between logins (RFC 2449 §6.5), or ``None``.

        ``None`` when LOGIN-DELAY is absent or its value is not a plain
        decimal number.  In AUTHORIZATION this is the largest possible value;
        in TRANSACTION the one that applies to this user.
        """
        params = self.get("LOGIN-DELAY")
        return _parse_number(params[0]) if params else None

    @property
    def login_delay_per_user(self) -> bool:
        """``LOGIN-DELAY n USER``: the delay varies per user (RFC 2449 §6.5)."""
        params = self.get("LOGIN-DELAY")
        return params is not None and any(_upper(p) == "USER" for p in params[1:])

    @property
    def expire(self) -> int | None:
        """Minimum days mail is kept on the server (RFC 2449 §6.7), or ``None``.

        ``0`` means mail may not be left on the server at all.  ``None`` when
        EXPIRE is absent, is ``NEVER`` (see :attr:`expire_never`) or has a
        malformed value.
        """
        params = self.get("EXPIRE")
        return _parse_number(params[0]) if params else None

    @property
    def expire_never(self) -> bool:
        """``EXPIRE NEVER``: the server never deletes mail itself (RFC 2449 §6.7)."""
        params = self.get("EXPIRE")
        return params is not None and len(params) > 0 and _upper(params[0]) == "NEVER"

    @property
    def expire_per_user(self) -> bool:
        """``EXPIRE n USER``: the policy varies per user (RFC 2449 §6.7)."""
        params = self.get("EXPIRE")
        return params is not None and any(_upper(p) == "USER" for p in params[1:])

    @property
    def implementation(self) -> str | None:
        """The IMPLEMENTATION text, parameters joined by spaces (RFC 2449 §6.9).

        Informational only: clients MUST NOT change behaviour because of it.
        """
        params = self.get("IMPLEMENTATION")
        return None if params is None else " ".join(params)

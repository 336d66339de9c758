"""Parsers: bytes from the peer -> events.

The client role parses status lines, the payloads of one-line replies,
multi-line listings and message bodies; the ``read_*`` functions are the
readers the command table (:mod:`pop3proto._commands`) names for each
reply shape.  Command lines, which the server role parses, are the command
table's too: each command parses its own parameters.  These functions are
pure: they raise :class:`ValueError` (or :class:`BadLine` for a command
line) and the connection decides whether that is a ``RemoteProtocolError``
or a :class:`BadCommand`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

from ._capabilities import Capabilities
from ._events import Command, Event
from ._response_events import (
    CapaOk,
    LangOk,
    LastOk,
    ListEntryOk,
    ListOk,
    StatOk,
    UidlEntryOk,
    UidlOk,
)
from ._responses import ResponseCode, split_response_code

__all__ = [
    "BadLine",
    "BodyReader",
    "Decoder",
    "find_block_end",
    "parse_capa_block",
    "parse_lang_block",
    "parse_list_block",
    "parse_status",
    "raw_status_text",
    "parse_uidl_block",
    "split_block",
    "read_stat",
    "read_last",
    "read_list_entry",
    "read_uidl_entry",
    "read_list_listing",
    "read_uidl_listing",
    "read_capa_listing",
    "read_lang_listing",
    "trusted",
]

Decoder = Callable[[bytes], str]
_AnyStr = TypeVar("_AnyStr", str, bytes)


# ---------------------------------------------------------------------------
# Status lines (client role)
# ---------------------------------------------------------------------------


def parse_status(line: bytes, decode: Decoder) -> tuple[bool, ResponseCode | None, str]:
    """Parse ``+OK [code] text`` / ``-ERR [code] text``.

    RFC 1939 §3: the status indicators are upper case and followed by
    nothing, or by a space and text.  ``+OKAY`` and ``+ok`` are not status
    lines.  We tolerate one deviation seen in the wild: a response code glued
    to the status (``+OK[IN-USE]``), which RFC 2449 §8's ``resp-code`` makes
    unambiguous.
    """
    if line.startswith(b"+OK"):
        ok, rest = True, line[3:]
    elif line.startswith(b"-ERR"):
        ok, rest = False, line[4:]
    else:
        raise ValueError(f"expected +OK or -ERR, got {_show(line)}")
    if rest:
        if rest[:1] == b" ":
            rest = rest[1:]
        elif rest[:1] != b"[":
            raise ValueError(f"malformed status line {_show(line)}")
    if b"\x00" in rest or b"\r" in rest or b"\n" in rest:
        raise ValueError("status line contains CR, LF or NUL")
    code, text = split_response_code(decode(rest))
    return ok, code, text


def raw_status_text(line: bytes, decode: Decoder) -> str:
    """The whole text of a status line already checked by :func:`parse_status`,
    response code included, for events that have no ``code`` field (the
    greeting, listings) and must keep the text verbatim."""
    rest = line[3:] if line.startswith(b"+OK") else line[4:]
    return decode(rest[1:] if rest[:1] == b" " else rest)


def _show(line: bytes, limit: int = 40) -> str:
    """A short, safe rendering of received bytes for error messages."""
    shown = repr(line[:limit])
    return shown + ("..." if len(line) > limit else "")


# ---------------------------------------------------------------------------
# Multi-line blocks (client role)
# ---------------------------------------------------------------------------


def find_block_end(data: bytes | bytearray, start: int, *, bare_lf: bool) -> tuple[int, int]:
    """Find the terminator of a multi-line block.

    *data* starts right after the ``+OK`` line, so the block is empty when it
    starts with ``.CRLF``; otherwise the terminator is ``CRLF . CRLF``
    (RFC 1939 §3), of which the first CRLF ends the last line.  Returns
    ``(block_end, consumed)``: the block is ``data[:block_end]``, its lines
    *with* their line ends (so ``b""`` is no line at all and ``b"\r\n"`` is
    one empty line), and ``consumed`` octets belong to the reply.
    ``(-1, -1)`` if the terminator has not arrived; *start* is where to
    resume searching.
    """
    if data[:3] == b".\r\n":
        return 0, 3
    if bare_lf:
        if data[:2] == b".\n":
            return 0, 2
        best = (-1, -1)
        for term in (b"\n.\r\n", b"\n.\n"):
            idx = data.find(term, start)
            if idx >= 0 and (best[0] < 0 or idx < best[0]):
                best = (idx + 1, idx + len(term))
        return best
    idx = data.find(b"\r\n.\r\n", start)
    if idx < 0:
        return -1, -1
    return idx + 2, idx + 5


def _lines_of(block: bytes, bare_lf: bool) -> bytes:
    """A block without its last line end, CRLF turned into LF if lenient."""
    if bare_lf:
        return block.replace(b"\r\n", b"\n")[:-1]
    return block[:-2]


def split_block(block: bytes, *, bare_lf: bool) -> list[bytes]:
    """Split a block (lines with their line ends) into dot-unstuffed lines."""
    if not block:
        return []
    lines = _lines_of(block, bare_lf).split(b"\n" if bare_lf else b"\r\n")
    # RFC 1939 §3: a line starting with "." had one prepended.
    return [ln[1:] if ln[:1] == b"." else ln for ln in lines]


def _fast_pairs(
    text: _AnyStr, sep: _AnyStr, space: _AnyStr, marker: _AnyStr
) -> tuple[list[_AnyStr], list[_AnyStr]] | None:
    """Split ``a SP b`` lines into two lists, or ``None`` if any line is not
    exactly two non-empty fields separated by one space.

    Every line end becomes `` marker `` so that one ``split`` yields fields
    in threes (first, second, marker); a line with a missing or extra field
    shifts the markers out of place, which one ``count`` over the marker
    slots detects.  All of it runs at C speed.
    """
    # Count the single octet, not CRLF (a one-octet count is the cheaper
    # scan); a stray bare LF only makes the count disagree and sends us to
    # the slow path, which judges the line properly.
    nlines = text.count(marker) + 1
    fields = text.replace(sep, space + marker + space).split(space)
    if len(fields) != 3 * nlines - 1 or fields[2::3].count(marker) != nlines - 1:
        return None
    firsts, seconds = fields[0::3], fields[1::3]
    return firsts, seconds


def parse_list_block(block: bytes, *, bare_lf: bool = False) -> dict[int, int]:
    """Parse a scan listing (``msg SP size`` lines, RFC 1939 §5).

    This is the hot path for a 200,000-entry LIST, so the common case is done
    in bulk (see :func:`_fast_pairs`), then ``int`` over all fields at C
    speed.  Anything unusual (text after the size, which RFC 1939 §5 tells
    clients to ignore) falls back to a line-by-line parse.
    """
    if not block:
        return {}
    sep = b"\n" if bare_lf else b"\r\n"
    block = _lines_of(block, bare_lf)
    pairs = _fast_pairs(block, sep, b" ", b"\n")
    result: dict[int, int] | None = None
    nlines = 0
    if pairs is not None and block.translate(None, b" \r\n").isdigit():
        nlines = len(pairs[0])
        try:
            result = dict(zip(map(int, pairs[0]), map(int, pairs[1]), strict=True))
        except ValueError:  # an empty field or a stray CR
            result = None
    if result is None:
        result = {}
        lines = block.split(sep)
        nlines = len(lines)
        for line in lines:
            # RFC 1939 §5: "msg SP size", anything after the size ignored.
            parts = line.split(b" ", 2)
            if len(parts) < 2 or not parts[0].isdigit() or not parts[1].isdigit():
                raise ValueError(f"malformed scan listing line {_show(line)}")
            result[int(parts[0])] = int(parts[1])
    if len(result) != nlines:
        raise ValueError("scan listing repeats a message number")
    if 0 in result:
        raise ValueError("scan listing contains message number 0")
    return result


# Octets a unique-id listing consists of: printable ASCII, SP, CR, LF.
_LISTING_OCTETS = bytes(range(0x20, 0x7F)) + b"\r\n"


def parse_uidl_block(block: bytes, *, bare_lf: bool = False) -> dict[int, str]:
    """Parse a unique-id listing (``msg SP uid`` lines, RFC 1939 §7).

    Unique-ids are printable ASCII without spaces.  Text after the uid is
    tolerated and ignored (some servers append it), as for LIST.  The common
    case is parsed in bulk, as in :func:`parse_list_block`.
    """
    if not block:
        return {}
    block = _lines_of(block, bare_lf)
    if block.translate(None, _LISTING_OCTETS):
        raise ValueError("unique-id listing contains control or non-ASCII octets")
    sep = b"\n" if bare_lf else b"\r\n"
    pairs = _fast_pairs(block, sep, b" ", b"\n")
    result: dict[int, str] | None = None
    nlines = 0
    if pairs is not None and b"".join(pairs[0]).isdigit() and all(pairs[1]):
        nlines = len(pairs[0])
        # Decode all unique-ids in one go rather than one call per entry.
        joined = b"\n".join(pairs[1])
        uids = joined.decode("ascii").split("\n")
        if b"\r" in joined:  # a stray CR inside a uid: let the slow path refuse it
            pairs = None
        try:
            if pairs is not None:
                result = dict(zip(map(int, pairs[0]), uids, strict=True))
        except ValueError:  # an empty message number
            result = None
    if result is None:
        result = {}
        text_lines = block.decode("ascii").split(sep.decode())
        nlines = len(text_lines)
        for line in text_lines:
            parts = line.split(" ")
            if len(parts) < 2 or not parts[0].isdecimal() or not parts[1]:
                raise ValueError(f"malformed unique-id listing line {line[:40]!r}")
            if "\r" in parts[1] or "\n" in parts[1]:
                raise ValueError("unique-id contains control characters")
            result[int(parts[0])] = parts[1]
    if len(result) != nlines:
        raise ValueError("unique-id listing repeats a message number")
    if 0 in result:
        raise ValueError("unique-id listing contains message number 0")
    return result


def parse_capa_block(block: bytes, decode: Decoder, *, bare_lf: bool = False) -> list[str]:
    """The lines of a CAPA reply, decoded."""
    return [decode(line) for line in split_block(block, bare_lf=bare_lf)]


def parse_lang_block(block: bytes, *, bare_lf: bool = False) -> tuple[tuple[str, str], ...]:
    """The ``tag [SP description]`` lines of a bare LANG reply (RFC 6856 §3)."""
    result = []
    for line in split_block(block, bare_lf=bare_lf):
        # RFC 6856 §3: descriptions are "in the language itself, using the
        # UTF-8 charset", whatever the mode.
        tag, _, desc = line.decode("utf-8", "replace").partition(" ")
        if not tag:
            raise ValueError("empty language tag in LANG listing")
        result.append((tag, desc))
    return tuple(result)


# ---------------------------------------------------------------------------
# Reply payloads (client role): the readers of the command table
# ---------------------------------------------------------------------------


def trusted(cls: type[Event], **fields: object) -> Event:
    """Build an event from already-validated parser output.

    The parsers check what they produce, so the entries of a listing are
    not validated a second time in ``__post_init__`` (benchmarks/engine.py
    measures what that saves on a large LIST).
    """
    event = object.__new__(cls)
    for name, value in fields.items():
        object.__setattr__(event, name, value)
    return event


def _two_numbers(text: str, what: str) -> tuple[int, int]:
    parts = text.split(" ")
    if len(parts) < 2 or not all(p.isascii() and p.isdecimal() for p in parts[:2]):
        raise ValueError(f"malformed {what} reply {text[:40]!r}")
    return int(parts[0]), int(parts[1])


def read_stat(text: str, command: object = None) -> StatOk:
    """``+OK count size`` (RFC 1939 §5); text after the size is ignored."""
    count, size = _two_numbers(text, "STAT")
    return StatOk(count, size)


def read_last(text: str, command: object = None) -> LastOk:
    """``+OK nn`` (RFC 1081); text after the number is ignored."""
    number = text.split(" ", 1)[0]
    if not (number.isascii() and number.isdecimal()):
        raise ValueError(f"malformed LAST reply {text[:40]!r}")
    return LastOk(int(number))


def _asked(command: object) -> int | None:
    """The message number a ``LIST n`` / ``UIDL n`` command asked about."""
    number = getattr(command, "number", None)
    return number if isinstance(number, int) else None


def read_list_entry(text: str, command: object = None) -> ListEntryOk:
    """``+OK msg size`` (RFC 1939 §5).

    Lenient (CONFORMANCE.md §3.9): ``+OK size`` alone, from servers that
    leave out the message number, is read as the size of the message asked
    about.
    """
    asked = _asked(command)
    parts = text.split(" ")
    if asked is not None and (len(parts) == 1 or not parts[1]):
        size = parts[0]
        if size.isascii() and size.isdecimal():
            return ListEntryOk(asked, int(size))
    number, size_ = _two_numbers(text, "LIST")
    return ListEntryOk(number, size_)


def read_uidl_entry(text: str, command: object = None) -> Event:
    """``+OK msg uid`` (RFC 1939 §7); text after the unique-id is ignored.

    Lenient (CONFORMANCE.md §3.9): ``+OK uid`` alone, from servers that
    leave out the message number, is read as the unique-id of the message
    asked about.  The unique-id must still be printable ASCII.
    """
    asked = _asked(command)
    number, _, value = text.partition(" ")
    uid = value.split(" ", 1)[0]
    if asked is not None and not uid and number:
        number, uid = str(asked), number
    if not (number.isascii() and number.isdecimal() and uid):
        raise ValueError(f"malformed UIDL reply {text[:40]!r}")
    n = int(number)
    if n < 1 or not uid.isascii() or not uid.isprintable():
        raise ValueError("malformed UIDL reply")
    return trusted(UidlEntryOk, number=n, uid=uid)


def read_list_listing(block: bytes, text: str, bare_lf: bool, decode: Decoder) -> Event:
    """The scan listing of bare LIST."""
    return trusted(ListOk, sizes=parse_list_block(block, bare_lf=bare_lf), text=text)


def read_uidl_listing(block: bytes, text: str, bare_lf: bool, decode: Decoder) -> Event:
    """The unique-id listing of bare UIDL."""
    return trusted(UidlOk, uids=parse_uidl_block(block, bare_lf=bare_lf), text=text)


def read_capa_listing(block: bytes, text: str, bare_lf: bool, decode: Decoder) -> Event:
    """The capability list of CAPA (RFC 2449 §5)."""
    caps = Capabilities.from_lines(parse_capa_block(block, decode, bare_lf=bare_lf))
    return trusted(CapaOk, capabilities=caps, text=text)


def read_lang_listing(block: bytes, text: str, bare_lf: bool, decode: Decoder) -> Event:
    """The language list of bare LANG (RFC 6856 §3)."""
    return trusted(LangOk, languages=parse_lang_block(block, bare_lf=bare_lf), text=text)


# ---------------------------------------------------------------------------
# Message bodies (client role)
# ---------------------------------------------------------------------------


class BodyReader:
    """Dot-unstuffs a RETR/TOP body as it streams in (RFC 1939 §3).

    Theory of operation: a body is a sequence of lines; a line that starts
    with ``.`` had one ``.`` prepended by the server, and the line that is
    exactly ``.`` ends the body.  Both rules are about the start of a line,
    so in a chunk every interesting spot is a line end followed by ``.``.
    We look at each chunk as if the previous line end were glued in front of
    it (when the chunk starts a line) and split it at every ``CRLF .`` in one
    C-level pass.  Joining the pieces back with ``CRLF`` removes exactly the
    stuffed dots; a piece that itself starts with ``CRLF`` marks the line
    ``.``, the terminator.  (A compiled regex that starts with a literal
    splits a chunk faster than ``bytes.replace`` or ``bytes.find`` loops
    scan it; benchmarks/engine.py measures the body rate.)

    A chunk can end in the middle of the pattern (``\\r``, ``\\r\\n``,
    ``\\r\\n.``, ``\\r\\n.\\r``); those at most four octets are held back
    in the receive buffer until more data shows what they are.  Data handed
    out therefore never depends on how the bytes were split.

    In lenient mode (``bare_lf``) a bare LF also ends a line, so the pattern
    becomes ``LF .`` and the terminators ``LF . CRLF`` / ``LF . LF``.
    """

    __slots__ = ("at_line_start", "bare_lf", "tails")

    def __init__(self, *, bare_lf: bool, sloppy_end: bool = False) -> None:
        self.at_line_start = True
        self.bare_lf = bare_lf
        # With sloppy_end, a trailing "X.CRLF" or "X.CR" is held back too: it
        # may be a terminator glued to a last line that lacks its CRLF, which
        # only the peer's silence can tell (see Connection.peer_idle).
        self.tails: tuple[bytes, ...]
        if sloppy_end:
            self.tails = _LENIENT_SLOPPY_TAILS if bare_lf else _STRICT_SLOPPY_TAILS
        else:
            self.tails = _LENIENT_TAILS if bare_lf else _STRICT_TAILS

    def find_end(self, data: bytes | bytearray) -> tuple[int, int, bool, bool] | None:
        """How much of *data* belongs to this body, if that can be told in
        one scan.

        Returns ``(body_end, consumed, stuffed, done)``: the body's octets
        are ``data[:body_end]``, *consumed* octets of *data* are used up,
        *stuffed* says whether those octets hold a line that starts with a
        dot, so that :meth:`unstuff` is needed (when false they are the
        message as it is), and *done* whether the terminator was among
        them.  Without the terminator, the octets can be told only when no
        line in *data* starts with a dot (a tail that may begin one is left
        for later); otherwise ``None``, and :meth:`feed` must take *data*
        (it knows then that no terminator is in it).

        With pipelined replies the buffer may hold many bodies; finding the
        end first lets the connection take just this one out, instead of
        splitting (and copying) all of them for each body, which would be
        quadratic.  The line "." cannot be content (it would have been
        stuffed to ".."), so the first match is the terminator.
        """
        lead = self.at_line_start and data[:1] == b"."
        if lead:
            # An empty body: the terminator is the very first line.
            if data[:3] == b".\r\n":
                return 0, 3, False, True
            if self.bare_lf and data[:2] == b".\n":
                return 0, 2, False, True
        if self.bare_lf:
            match = _FIND_TERM_LF(data)
            if match is None:
                return None
            return match.start() + 1, match.end(), True, True
        # Most mail has no line that starts with a dot: then the first
        # "CRLF ." is the terminator, and one search finds it.
        first = _FIND_DOT_LINE(data)
        if first is None:
            if lead:
                return None
            # A large body, or its first part: nothing to unstuff.
            end = len(data) - _partial_tail(data, self.tails)
            return (end, end, False, False) if end > 0 else None
        start = first.start()
        if not lead and data[start + 3 : start + 5] == b"\r\n":
            return start + 2, start + 5, False, True
        match = _FIND_TERM_CRLF(data, start)
        if match is None:
            return None
        return match.start() + 2, match.end(), True, True

    def unstuff(self, body: bytes) -> bytes:
        """Dot-unstuff a whole body located by :meth:`find_end`."""
        nl = b"\n" if self.bare_lf else b"\r\n"
        if self.at_line_start and body[:1] == b".":
            body = body[1:]
        self.at_line_start = True
        return nl.join((_SPLIT_LF if self.bare_lf else _SPLIT_CRLF)(body))

    def took_plain(self, done: bool) -> None:
        """:meth:`find_end` octets that needed no unstuffing were taken
        (never none at all, unless the terminator was among them)."""
        self.at_line_start = done

    def feed(self, data: bytes, *, unterminated: bool = False) -> tuple[bytes, bytes, bool]:
        """Process buffered *data*.

        Returns ``(body_octets, leftover, finished)``: the unstuffed octets to
        deliver, the octets to put back in the buffer (a held-back tail, or
        what follows the terminator), and whether the terminator was seen.
        *unterminated* says that :meth:`find_end` has already found no
        terminator in *data*, which spares looking for one again.
        """
        bare_lf = self.bare_lf
        if not bare_lf and not unterminated and not (self.at_line_start and data[:1] == b"."):
            # The usual case, one search: with no "CRLF ." in the chunk there
            # is nothing to unstuff and no terminator, and when the first
            # one is the terminator, nothing before it was stuffed.
            first = _FIND_DOT_LINE(data)
            if first is None:
                keep = _partial_tail(data, self.tails)
                if not keep:
                    self.at_line_start = False
                    return data, b"", False
                if keep == len(data):
                    return b"", data, False
                self.at_line_start = False
                return data[:-keep], data[-keep:], False
            start = first.start()
            if data[start + 3 : start + 5] == b"\r\n":
                self.at_line_start = True
                return data[: start + 2], data[start + 5 :], True
        nl = b"\n" if bare_lf else b"\r\n"
        prefix = len(nl) if self.at_line_start else 0
        if prefix:
            data = nl + data
        split = _SPLIT_LF if bare_lf else _SPLIT_CRLF
        # The terminator is the first "CRLF . CRLF" (lenient: "LF . LF" or
        # "LF . CRLF"): the line "." cannot be content, it would have been
        # stuffed to "..".
        pieces = split(data)
        if not bare_lf and len(pieces) <= len(data) >> 8:
            # A few dot lines: look at each piece, rather than scan the
            # chunk a second time (a look costs about what scanning 256
            # octets does).  Every piece after the first followed
            # "CRLF ."; one that starts with CRLF was the line ".", the
            # terminator, and so was an empty piece with more after it (its
            # CRLF was taken by the next split point: "CRLF . CRLF ." on the
            # wire, a pipelined reply that starts with a dot).
            last = len(pieces) - 1
            for i in range(1, last + 1):
                piece = pieces[i]
                if piece[:2] == b"\r\n":
                    leftover = b"\r\n.".join([piece[2:], *pieces[i + 1 :]])
                elif not piece and i < last:
                    leftover = b"." + b"\r\n.".join(pieces[i + 1 :])
                else:
                    continue
                self.at_line_start = True
                return (nl.join(pieces[:i]) + nl)[prefix:], leftover, True
        elif not unterminated:
            # Many (mail where every line starts with a dot exists): one
            # search at C speed, not a Python step per stuffed line.
            match = (_FIND_TERM_LF if bare_lf else _FIND_TERM_CRLF)(data)
            if match is not None:
                body = nl.join(split(data[: match.start() + len(nl)]))
                self.at_line_start = True
                return body[prefix:], data[match.end() :], True
        keep = _partial_tail(data, self.tails)
        tail = b""
        if keep:
            if len(data) - keep <= prefix:
                # Nothing deliverable yet (e.g. the chunk is just ".").
                return b"", data[prefix:], False
            tail = data[-keep:]
            if tail.startswith(nl + b"."):
                # The tail holds the last split point: undo that split.
                pieces.pop()
            else:
                pieces[-1] = pieces[-1][:-keep]
        self.at_line_start = False
        out = nl.join(pieces)
        return (out[prefix:] if prefix else out), tail, False


_FIND_TERM_CRLF = re.compile(rb"\r\n\.\r\n").search
_FIND_DOT_LINE = re.compile(rb"\r\n\.").search
_FIND_TERM_LF = re.compile(rb"\n\.\r?\n").search
_SPLIT_CRLF = re.compile(rb"\r\n\.").split
_SPLIT_LF = re.compile(rb"\n\.").split
_STRICT_TAILS = (b"\r\n.\r", b"\r\n.", b"\r\n", b"\r")
_LENIENT_TAILS = (b"\n.\r", b"\n.", b"\n")
# Longest first: each tuple is tried in order and the first match wins.
_STRICT_SLOPPY_TAILS = (b"\r\n.\r", b".\r\n", b"\r\n.", b".\r", b"\r\n", b"\r")
_LENIENT_SLOPPY_TAILS = (b"\n.\r", b".\r\n", b"\n.", b".\r", b".\n", b"\n")


def _partial_tail(data: bytes | bytearray, tails: tuple[bytes, ...]) -> int:
    """How many trailing octets could be the start of ``CRLF .`` (or of
    the terminator ``CRLF . CRLF``), given the tails to look for."""
    for tail in tails:
        if data.endswith(tail):
            return len(tail)
    return 0


# ---------------------------------------------------------------------------
# Command lines (server role): the reason a line is refused
# ---------------------------------------------------------------------------


class BadLine(Exception):
    """A command line the server cannot accept (internal).

    ``command`` is set when the line parsed but is not acceptable now.
    """

    def __init__(self, reason: str, command: Command | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.command = command

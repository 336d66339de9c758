"""Reading a ``poplib`` multi-line reply in bulk, with ``poplib``'s results.

``poplib`` reads a multi-line reply one ``readline()`` and one trip through
a Python loop per line.  :func:`read_lines` takes what the socket's buffered
reader already holds (:meth:`io.BufferedReader.peek`, so one ``recv`` per
buffer, and nothing after the terminator is consumed), splits it at C speed
and finds the terminator with ``bytes.find``; per-line Python work is left
for the rare lines that need it (dot-stuffed lines, lone-LF line ends).

:func:`read_reply` comes first: the common case of a reply to one command
at a time, whole in the buffer after one ``recv`` and ending with the
terminator, is read status line and all in one pass (no search for the
terminator, one split); anything else falls back to :func:`read_lines`.
A large reply's list of lines grows through the capacities ``poplib``'s
appends give it (:func:`_extend`), so that peak memory is ``poplib``'s.

The result is what ``poplib._getlongresp`` returns for the same bytes:
lines without their line ends, only ``..`` lines unstuffed, ``octets``
counting each line with its line end, less one per unstuffed dot, and
``error_proto("line too long")`` / ``error_proto("-ERR EOF")`` where
``poplib`` raises them.
"""

from __future__ import annotations

import re
import sys

from ._errors import error_proto

# Not typing.TYPE_CHECKING: the drop-in's import must not pay for typing
# (type checkers treat any name TYPE_CHECKING as true).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Final


__all__ = ["read_lines", "read_reply", "poplib_line"]

_TERMINATOR = b"\r\n.\r\n"
# read_reply()'s searches: a line starting with a dot, a "." line.  Compiled
# on first use, so that importing the drop-in stays cheap.
_dot_searches: list[Any] = []


def poplib_line(raw: bytes) -> bytes:
    """One line as ``poplib._getline`` returns it: CRLF stripped; for a line
    ending in a lone LF, a leading CR stripped as well (its "LF CR" case)."""
    if raw[-2:] == b"\r\n":
        return raw[:-2]
    if raw[:1] == b"\r":
        return raw[1:-1]
    return raw[:-1]


def _slow(region: bytes, lines: list[bytes], maxline: int) -> tuple[int, bool]:
    """Lines with lone LFs (or a partial last line at EOF), one by one as
    ``poplib`` does.  Returns (octets, terminated)."""
    octets = 0
    start = 0
    size = len(region)
    while start < size:
        end = region.find(b"\n", start)
        end = size if end < 0 else end + 1
        raw = region[start:end]
        start = end
        if len(raw) > maxline:
            raise error_proto("line too long")
        line = poplib_line(raw)
        if line == b".":
            return octets, True
        o = len(raw)
        if line[:2] == b"..":
            o -= 1
            line = line[1:]
        octets += o
        lines.append(line)
    return octets, False


# A list's size in memory: this plus one pointer per slot allocated.
_EMPTY_LIST: Final = [].__sizeof__()
_SLOT: Final = 8 if sys.maxsize > 2**32 else 4
# CPython's lists count their allocated slots in __sizeof__ (3.10 to 3.13).
_SIZED: Final = ([None] * 8).__sizeof__() == _EMPTY_LIST + 8 * _SLOT


def _extend(lines: list[bytes], parts: list[bytes]) -> None:
    """``lines += parts``, growing *lines* through the very capacities that
    appending one line at a time (``poplib``) goes through.

    A list grows by about an eighth each time it is full; extending by
    many at once lands on other capacities.  For a large message the
    allocator then sees a list of a size it has not seen (the previous
    message's list, freed, set its threshold for mapping memory apart), and
    may copy it from the heap into a mapping near the end, holding both for
    a moment: peak memory above ``poplib``'s by the whole list.
    """
    if not _SIZED:  # pragma: no cover - a Python whose lists do not report their slots
        lines += parts
        return
    start = 0
    size = len(parts)
    room = (lines.__sizeof__() - _EMPTY_LIST) // _SLOT - len(lines)
    while size - start > room:
        # Fill the list (no growth), then append one: the growth poplib's
        # append makes.  (Extending by more would size the list otherwise,
        # and an empty list extended is sized exactly.)
        lines += parts[start : start + room]
        lines.append(parts[start + room])
        start += room + 1
        room = (lines.__sizeof__() - _EMPTY_LIST) // _SLOT - len(lines)
    lines += parts[start:] if start else parts


def _fast(complete: bytes, lines: list[bytes], maxline: int) -> int | None:
    """Complete CRLF-ended lines with no terminator among them: unstuff
    and split at C speed; returns octets, or ``None`` (nothing done) if a
    lone LF ends a line, which only :func:`_slow` reads as ``poplib`` does."""
    body = complete
    stuffed = 0
    if body[:2] == b"..":
        body = body[1:]
        stuffed = 1
    if b"\r\n.." in body:
        unstuffed = body.replace(b"\r\n..", b"\r\n.")
        stuffed += len(body) - len(unstuffed)
        body = unstuffed
    parts = body.split(b"\r\n")
    parts.pop()  # after the last CRLF
    if body.count(b"\n") != len(parts):
        return None
    # poplib's limit is on the line as received (stuffed, with its CRLF).
    if (
        len(complete) > maxline - 2
        and max(map(len, parts)) + 3 > maxline
        and max(map(len, complete.split(b"\r\n"))) + 2 > maxline
    ):
        raise error_proto("line too long")
    _extend(lines, parts)
    return len(complete) - stuffed


def read_reply(file: Any, maxline: int) -> tuple[bytes, list[bytes], int] | None:
    """The common case of a whole multi-line reply, status line included:
    ``(status, lines, octets)`` as ``poplib`` would return them, or ``None``
    (nothing consumed) when the case is not the common one.

    The common case is what a server sends to one command at a time: the
    reader's buffer (one ``recv``) holds exactly one reply, ending with the
    terminator; every line ends with CRLF; the status line starts with
    ``+`` and no line is overlong.  The terminator is then at the end (an
    ``endswith``, no search), one search tells whether any line starts
    with a dot (no unstuffing and no early terminator to look for
    otherwise) and one ``splitlines`` cuts the lines, whose lengths show
    any lone CR or LF.  Everything else (a reply
    over several buffers, bytes after the terminator, a lone LF, ``-ERR``,
    a line over *maxline*) returns ``None`` for the general path, which
    reads it exactly as ``poplib`` does.
    """
    data: bytes = file.peek(1)
    # poplib's limit counts the line end: the status line's LF is within
    # the first *maxline* octets.
    eol = data.find(b"\n", 0, maxline)
    if eol < 1 or data[0] != 0x2B or data[eol - 1] != 0x0D or not data.endswith(_TERMINATOR):
        return None
    size = len(data)
    # The body is data[eol + 1 : size - 3]: the terminator's CRLF before
    # its dot ends the last line (or the status line: an empty body).
    # poplib stops at the first "." line and unstuffs "..", nothing else.
    # (A regular expression finds a two-octet string faster than find().)
    stuffed = 0
    if not _dot_searches:
        _dot_searches[:] = (re.compile(rb"\n\.").search, re.compile(rb"\n\.\r\n").search)
    dot_line, dot_only_line = _dot_searches
    dot = dot_line(data, eol)
    if dot is not None and dot.start() < size - 4:
        if dot_only_line(data, eol, size - 3) is not None:
            return None
        if b"\n.." in data:
            # (Faster than replace() when most lines are stuffed.)
            unstuffed = b"\n.".join(data.split(b"\n.."))
            stuffed = size - len(unstuffed)
            data = unstuffed
    # One split cuts the status line, every line and the terminator line.
    # It also splits at a lone CR or LF, where poplib does not (CR) or
    # cuts differently (LF): then the octets between the lines are not
    # two per line, and the general path takes the reply.
    lines = data.splitlines()
    lengths = list(map(len, lines))
    if sum(lengths) != len(data) - 2 * len(lines):
        return None
    # poplib's limit is on the line as received (stuffed, with its CRLF).
    if size > maxline and max(lengths) + 2 + (stuffed > 0) > maxline:
        return None
    file.read(size)
    resp = lines[0]
    del lines[0], lines[-1]
    return resp, lines, size - eol - 4 - stuffed


def read_lines(file: Any, maxline: int) -> tuple[list[bytes], int]:
    """Read the lines of a multi-line reply (its status line already read)
    from *file*, a buffered binary reader, up to and including the ``.``
    line; return ``(lines, octets)`` as ``poplib`` would."""
    lines: list[bytes] = []
    octets = 0
    carry = b""  # a line begun in an earlier buffer, already consumed
    while True:
        data = file.peek(1)
        if not data:
            if carry:
                # poplib returns the unterminated last line before EOF.
                more, done = _slow(carry, lines, maxline)
                octets += more
                if done:
                    return lines, octets
            raise error_proto("-ERR EOF")
        text = carry + data if carry else data
        last = text.rfind(b"\n") + 1
        if not last:
            if len(text) > maxline:
                raise error_proto("line too long")
            file.read(len(data))
            carry = text
            continue
        region = text[:last]
        # The terminator is a "." line: at the start, or after a CRLF.  An
        # earlier one ended by a lone LF would show as a lone LF in front.
        if region[:3] == b".\r\n":
            cut = 0
        else:
            cut = region.find(_TERMINATOR)
            cut = -1 if cut < 0 else cut + 2
        complete = region if cut < 0 else region[:cut]
        fast = _fast(complete, lines, maxline) if complete else 0
        if fast is None:
            more, done = _slow(region, lines, maxline)
            octets += more
            if done:
                # Consume exactly through the terminator line.
                file.read(_terminator_end(region) - len(carry))
                return lines, octets
        else:
            octets += fast
            if cut >= 0:
                file.read(cut + 3 - len(carry))
                return lines, octets
        file.read(len(data))
        carry = text[last:]
        if len(carry) > maxline:
            raise error_proto("line too long")


def _terminator_end(region: bytes) -> int:
    """Offset just past the first line of *region* that ``poplib`` reads as
    the terminator (``.`` with CRLF, LF or the "LF CR" ending)."""
    start = 0
    while True:
        end = region.find(b"\n", start) + 1
        if poplib_line(region[start:end]) == b".":
            return end
        start = end

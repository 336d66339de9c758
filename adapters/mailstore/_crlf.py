"""CRLF line ends for stored messages, and the cut for TOP.

POP3 serves message octets with CRLF line ends (RFC 1939 §11), while
stores (Maildir files, most of all) usually keep LF-only text.  Every
backend converts with the functions here, which also make a message end
on a line end and measure the converted size without building it, so that
a LIST size always equals what RETR delivers.  :func:`top_of` cuts a
converted stream for ``TOP msg n`` (RFC 1939 §7).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

__all__ = [
    "CrlfNormalizer",
    "normalized_chunks",
    "normalized_whole",
    "normalized_size",
    "top_of",
]


class CrlfNormalizer:
    """Turns bare LFs into CRLF across chunk boundaries (RFC 1939 §11).

    Feed the stored octets chunk by chunk; :meth:`feed` returns the octets to
    send and :meth:`end` whatever completes the final line.  A CR that is
    not followed by LF is kept as it is (it is not a line end; the engine
    dot-stuffs only after LF).  :meth:`count` measures a chunk without
    building the converted copy, with the same result as ``len(feed(...))``.
    """

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last = b""  # last stored octet seen, b"" before any

    def feed(self, chunk: bytes) -> bytes:
        """Convert one stored chunk."""
        if not chunk:
            return b""
        out = _crlf(chunk)
        if chunk[0] == 0x0A and self._last == b"\r":
            # The CR ending the previous chunk already pairs with this LF.
            out = out[1:]
        self._last = chunk[-1:]
        return out

    def count(self, chunk: bytes) -> int:
        """``len(self.feed(chunk))``, without the copy."""
        if not chunk:
            return 0
        if b"\r" not in chunk:
            extra = chunk.count(b"\n")
        elif _FIND_BARE_LF(chunk) is None:
            extra = 0  # CRLF throughout
        else:
            extra = chunk.count(b"\n") - chunk.count(b"\r\n")
        if chunk[0] == 0x0A and self._last == b"\r":
            extra -= 1
        self._last = chunk[-1:]
        return len(chunk) + extra

    def end(self) -> bytes:
        """The octets that end the message on a line end (``b""`` if it
        already does, or if it is empty)."""
        if self._last in (b"", b"\n"):
            return b""
        if self._last == b"\r":
            return b"\n"
        return b"\r\n"


def _crlf(data: bytes) -> bytes:
    """*data* with every bare LF turned into CRLF (a CR before an LF in an
    earlier chunk is the caller's business).

    Maildir files usually hold LF-only text, sometimes CRLF text: both are
    recognised with one-octet scans before anything is copied.
    """
    if b"\r" not in data:
        # No CR at all: every LF is bare (and no LF at all: nothing to do;
        # bytes.replace then returns *data* itself).
        return data.replace(b"\n", b"\r\n")
    if _FIND_BARE_LF(data) is None:
        return data  # already CRLF throughout
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


# An LF with no CR before it: a compiled regex that starts with the literal
# LF scans about twice as fast as bytes.count(b"\r\n") on CRLF text.
_FIND_BARE_LF = re.compile(rb"\n(?<!\r\n)").search


def normalized_whole(data: bytes) -> bytes:
    """A whole stored message with CRLF line ends, ending on a line end:
    ``b"".join(normalized_chunks([data]))`` in one go."""
    out = _crlf(data)
    if out and out[-1] != 0x0A:
        out += b"\n" if out[-1] == 0x0D else b"\r\n"
    return out


def normalized_chunks(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Stream *chunks* of stored octets with CRLF line endings, ending on a
    line end; see :class:`CrlfNormalizer`."""
    norm = CrlfNormalizer()
    for chunk in chunks:
        out = norm.feed(chunk)
        if out:
            yield out
    tail = norm.end()
    if tail:
        yield tail


def normalized_size(chunks: Iterable[bytes]) -> int:
    """The size of *chunks* as :func:`normalized_chunks` serves them, without
    building the converted copy."""
    norm = CrlfNormalizer()
    total = sum(norm.count(chunk) for chunk in chunks)
    return total + len(norm.end())


def top_of(chunks: Iterator[bytes], lines: int) -> Iterator[bytes]:
    """Cut a CRLF-normalised message stream for ``TOP msg lines``.

    RFC 1939 §7: the header, the blank line that ends it, then *lines* lines
    of the body (the whole message if the body is shorter; all of it if
    there is no blank line at all).  Streams: only line ends are looked for,
    so a huge header line costs no memory.  *chunks* is closed (if it can
    be) when the cut is reached.
    """
    if lines < 0:
        raise ValueError("lines must be >= 0")
    in_body = False
    body_lines = 0
    line_len = 0  # octets of the current line seen in earlier chunks
    try:
        for chunk in chunks:
            pos = 0
            while True:
                lf = chunk.find(b"\n", pos)
                if lf < 0:
                    line_len += len(chunk) - pos
                    break
                length = line_len + lf - pos  # octets before this LF
                line_len = 0
                pos = lf + 1
                if not in_body:
                    # In normalised input every LF follows a CR, so the empty
                    # line that ends the header is exactly CR LF.
                    if length <= 1:
                        in_body = True
                        if lines == 0:
                            yield chunk[:pos]
                            return
                else:
                    body_lines += 1
                    if body_lines >= lines:
                        yield chunk[:pos]
                        return
            yield chunk
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()

"""The receive buffer: where bytes from the peer wait to be parsed.

Two properties matter, both learned from h11:

* **No quadratic rescans.**  When a line is incomplete we remember how far we
  already looked for its end, so a line arriving one byte at a time costs
  O(n), not O(n^2) (h11's ``_receivebuffer.py`` does the same).
* **Limits hold however the bytes are split** (h11 #182).  A line is too long
  as soon as the buffer holds more octets than the limit allows *without* a
  line end, and equally when a line end arrives beyond the limit, so the
  verdict never depends on chunk boundaries.

Everything handed out is exact ``bytes``, never a ``bytearray``.
"""

from __future__ import annotations

__all__ = ["ReceiveBuffer", "LineTooLong"]


class LineTooLong(Exception):
    """A line exceeded its limit (internal; the connection converts it)."""


class ReceiveBuffer:
    """A growable byte buffer with line extraction."""

    __slots__ = ("_data", "_fast", "_scanned")

    def __init__(self) -> None:
        self._data = bytearray()
        # A chunk that arrived while the buffer was empty, kept as is: a
        # streamed body then reaches the parser without any copy.  Every
        # other operation merges it into _data first.
        self._fast: bytes | None = None
        # How many leading octets are known to contain no line end.
        self._scanned = 0

    def __len__(self) -> int:
        return len(self._data) + (len(self._fast) if self._fast is not None else 0)

    def __bool__(self) -> bool:
        return bool(self._data) or self._fast is not None

    def append(self, data: bytes) -> None:
        """Add bytes received from the peer (non-empty, exact bytes)."""
        if self._fast is None and not self._data:
            self._fast = data
        else:
            self._merge()
            self._data += data

    def _merge(self) -> None:
        if self._fast is not None:
            self._data += self._fast
            self._fast = None

    def clear(self) -> None:
        """Drop everything (used when discarding an overlong line)."""
        self._fast = None
        self._data.clear()
        self._scanned = 0

    @property
    def data(self) -> bytearray:
        """The buffered octets themselves (read them; do not modify)."""
        if self._fast is not None:
            self._merge()
        return self._data

    def take_all(self) -> bytes:
        """Remove and return everything buffered."""
        fast = self._fast
        if fast is not None and not self._data:
            self._fast = None
            return fast
        self._merge()
        data = bytes(self._data)
        self._data.clear()
        self._scanned = 0
        return data

    def peek(self) -> bytes:
        """Everything buffered, without removing it."""
        self._merge()
        return bytes(self._data)

    def startswith(self, prefix: bytes) -> bool:
        """Whether the buffer starts with *prefix* (compared as far as held)."""
        self._merge()
        return self._data[: len(prefix)] == prefix[: len(self._data)]

    def consume(self, n: int, keep: int | None = None) -> bytes:
        """Remove the first *n* octets; return them (or their first *keep*)."""
        if self._fast is not None:
            self._merge()
        # One copy through a memoryview; ``bytes(bytearray[:n])`` makes two.
        with memoryview(self._data) as view:
            data = bytes(view[: n if keep is None else keep])
        # Deleting a prefix of a bytearray is O(1) in CPython (it moves the
        # start pointer), so this does not make parsing quadratic.
        del self._data[:n]
        self._scanned = 0
        return data

    def discard(self, n: int) -> None:
        """Remove the first *n* octets (already read through :attr:`data`)."""
        del self._data[:n]
        self._scanned = 0

    def prepend(self, data: bytes) -> None:
        """Put back octets in front (a body parser's held-back tail)."""
        self._merge()
        self._data[:0] = data
        self._scanned = 0

    def find(self, needle: bytes, start: int = 0) -> int:
        """``bytearray.find`` on the buffered octets."""
        self._merge()
        return self._data.find(needle, start)

    def extract_line(self, max_size: int, *, bare_lf: bool) -> bytes | None:
        """Remove and return one line without its end-of-line octets.

        A line ends with CRLF, or also with a bare LF when *bare_lf* is true
        (a lenient option for real servers, CONFORMANCE.md §3.1).  Returns ``None``
        when no complete line is buffered.  *max_size* counts the line end,
        as RFC 1939/2449 do ("255 octets, including the terminating CRLF").

        Raises :class:`LineTooLong` as soon as the limit is certainly
        exceeded.
        """
        fast = self._fast
        if fast is not None and not self._data and not bare_lf:
            # A status line at the head of a fresh chunk (often with a whole
            # body behind it): cut it off without copying the chunk into
            # the bytearray, so the body stays a zero-copy chunk too.
            idx = fast.find(b"\r\n", 0, max_size)
            if idx >= 0:
                rest = fast[idx + 2 :]
                self._fast = rest or None
                return fast[:idx]
        if fast is not None:
            self._merge()
        data = self._data
        if bare_lf:
            idx = data.find(b"\n", self._scanned)
            end = idx + 1
        else:
            # Resume one octet back: the CR of a CRLF may have been the last
            # octet we scanned.
            idx = data.find(b"\r\n", max(self._scanned - 1, 0))
            end = idx + 2
        if idx < 0:
            self._scanned = len(data)
            # The earliest this line could end: the next octet, if it is the
            # LF of a CRLF whose CR we hold (or any LF when bare LF counts);
            # otherwise two octets from now.
            n = len(data)
            earliest = n + 1 if bare_lf or data.endswith(b"\r") else n + 2
            if earliest > max_size:
                raise LineTooLong
            return None
        if end > max_size:
            raise LineTooLong
        with memoryview(data) as view:
            line = bytes(view[:idx])
        del data[:end]
        self._scanned = 0
        if bare_lf and line.endswith(b"\r"):
            line = line[:-1]
        return line

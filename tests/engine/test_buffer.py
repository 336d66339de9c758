"""Unit tests for pop3proto._buffer.ReceiveBuffer.

Two properties matter (h11 #182, CONFORMANCE.md §3.5 and §3.8): a line limit
gives the same verdict however the bytes are split, and everything handed out
is exact ``bytes``.
"""

from __future__ import annotations

import itertools

import pytest

from pop3proto._buffer import LineTooLong, ReceiveBuffer


def filled(*chunks: bytes) -> ReceiveBuffer:
    buf = ReceiveBuffer()
    for chunk in chunks:
        buf.append(chunk)
    return buf


def assert_exact_bytes(value: object) -> None:
    assert type(value) is bytes, type(value)


# ---------------------------------------------------------------------------
# Basic container behaviour (with the zero-copy first chunk and without)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "chunks", [(b"hello world",), (b"hello", b" world"), (b"h", b"ello w", b"orld")]
)
def test_len_bool_peek(chunks: tuple[bytes, ...]) -> None:
    buf = filled(*chunks)
    assert len(buf) == 11 and buf
    peeked = buf.peek()
    assert peeked == b"hello world"
    assert_exact_bytes(peeked)
    assert len(buf) == 11  # peek removes nothing


def test_empty_buffer() -> None:
    buf = ReceiveBuffer()
    assert len(buf) == 0 and not buf
    assert buf.peek() == b"" and buf.take_all() == b""
    assert buf.extract_line(10, bare_lf=False) is None
    assert buf.find(b"x") == -1


@pytest.mark.parametrize("chunks", [(b"abc\r\n",), (b"ab", b"c\r\n")])
def test_take_all(chunks: tuple[bytes, ...]) -> None:
    buf = filled(*chunks)
    data = buf.take_all()
    assert data == b"abc\r\n"
    assert_exact_bytes(data)
    assert not buf and len(buf) == 0


def test_take_all_returns_the_first_chunk_itself() -> None:
    """The zero-copy path: a chunk that arrived into an empty buffer comes back as is."""
    chunk = b"x" * 100
    buf = filled(chunk)
    assert buf.take_all() is chunk


def test_clear() -> None:
    for chunks in ((b"abc",), (b"a", b"bc")):
        buf = filled(*chunks)
        buf.clear()
        assert not buf and buf.peek() == b""
        buf.append(b"new\r\n")
        assert buf.extract_line(10, bare_lf=False) == b"new"


def test_data_property_is_the_whole_buffer() -> None:
    buf = filled(b"ab", b"cd")
    assert bytes(buf.data) == b"abcd"
    buf = filled(b"abcd")
    assert bytes(buf.data) == b"abcd"
    assert len(buf) == 4


def test_startswith() -> None:
    buf = filled(b"+O")
    assert buf.startswith(b"+OK")  # compared as far as held
    assert not buf.startswith(b"-ERR")
    buf.append(b"K\r\n")
    assert buf.startswith(b"+OK") and buf.startswith(b"+OK\r\n")
    assert not buf.startswith(b"+OKAY")
    assert ReceiveBuffer().startswith(b"anything")


@pytest.mark.parametrize("chunks", [(b"0123456789",), (b"01234", b"56789")])
def test_consume(chunks: tuple[bytes, ...]) -> None:
    buf = filled(*chunks)
    head = buf.consume(3)
    assert head == b"012"
    assert_exact_bytes(head)
    assert buf.consume(5, 2) == b"34"  # removes 5, returns the first 2
    assert buf.peek() == b"89"


def test_prepend() -> None:
    buf = filled(b"\n rest")
    buf.prepend(b"held\r")
    assert buf.extract_line(20, bare_lf=False) == b"held"
    assert buf.peek() == b" rest"
    buf = ReceiveBuffer()
    buf.prepend(b".")
    buf.append(b"\r\n")
    assert buf.peek() == b".\r\n"


def test_find() -> None:
    buf = filled(b"ab\r\n", b"cd\r\n")
    assert buf.find(b"\r\n") == 2
    assert buf.find(b"\r\n", 3) == 6
    assert filled(b"xyz").find(b"z") == 2


# ---------------------------------------------------------------------------
# Line extraction
# ---------------------------------------------------------------------------


def test_extract_lines_strict() -> None:
    buf = filled(b"one\r\ntwo\r\nthr")
    first = buf.extract_line(100, bare_lf=False)
    assert first == b"one"
    assert_exact_bytes(first)
    assert buf.extract_line(100, bare_lf=False) == b"two"
    assert buf.extract_line(100, bare_lf=False) is None
    buf.append(b"ee\r\n")
    assert buf.extract_line(100, bare_lf=False) == b"three"
    assert not buf


def test_extract_line_strict_ignores_bare_lf_and_cr() -> None:
    buf = filled(b"a\nb\rc\r\r\n")
    assert buf.extract_line(100, bare_lf=False) == b"a\nb\rc\r"


def test_extract_line_lenient() -> None:
    buf = filled(b"a\nb\r\nc\r\r\nd")
    assert buf.extract_line(100, bare_lf=True) == b"a"
    assert buf.extract_line(100, bare_lf=True) == b"b"
    assert buf.extract_line(100, bare_lf=True) == b"c\r"  # only one CR is stripped
    assert buf.extract_line(100, bare_lf=True) is None
    assert buf.peek() == b"d"


def test_crlf_split_between_chunks_is_found() -> None:
    """The scan resumes one octet back, so a CR at the end of one chunk still pairs
    with the LF at the start of the next."""
    buf = filled(b"abc\r")
    assert buf.extract_line(100, bare_lf=False) is None
    buf.append(b"\nxyz")
    assert buf.extract_line(100, bare_lf=False) == b"abc"
    assert buf.peek() == b"xyz"


def test_incremental_scan_one_byte_at_a_time() -> None:
    line = b"x" * 300 + b"\r\n"
    buf = ReceiveBuffer()
    for i in range(len(line) - 1):
        buf.append(line[i : i + 1])
        assert buf.extract_line(1000, bare_lf=False) is None
    buf.append(b"\n")
    assert buf.extract_line(1000, bare_lf=False) == b"x" * 300


def verdict(chunks: list[bytes], limit: int, bare_lf: bool) -> bytes | str:
    """Feed *chunks*, extracting after each; the line, or "too long"."""
    buf = ReceiveBuffer()
    for chunk in chunks:
        buf.append(chunk)
        try:
            line = buf.extract_line(limit, bare_lf=bare_lf)
        except LineTooLong:
            return "too long"
        if line is not None:
            return line
    raise AssertionError("no verdict")


def splits(data: bytes, parts: int) -> list[list[bytes]]:
    out = []
    for cuts in itertools.combinations(range(1, len(data)), parts - 1):
        bounds = (0, *cuts, len(data))
        out.append([data[a:b] for a, b in itertools.pairwise(bounds)])
    return out


@pytest.mark.parametrize("limit", [8, 13])
@pytest.mark.parametrize(("bare_lf", "ending"), [(False, b"\r\n"), (True, b"\r\n"), (True, b"\n")])
@pytest.mark.parametrize("delta", [-2, -1, 0, 1, 2])
def test_limit_at_exact_boundary_however_split(
    limit: int, bare_lf: bool, ending: bytes, delta: int
) -> None:
    """A line of limit-2..limit+2 octets (line end included) gets the same verdict at every
    2- and 3-chunk split; the limit counts the line end (RFC 2449 §4)."""
    size = limit + delta
    content = b"y" * (size - len(ending))
    data = content + ending + b"next\r\n"
    expected: bytes | str = content if size <= limit else "too long"
    for chunks in [[data], *splits(data, 2), *splits(data, 3)]:
        assert verdict(chunks, limit, bare_lf) == expected, chunks


def test_limit_is_reached_without_any_line_end() -> None:
    """Too long is known as soon as the buffer holds more than the limit allows."""
    buf = filled(b"x" * 8)
    assert buf.extract_line(10, bare_lf=False) is None  # 8 + CRLF = 10 still fits
    buf.append(b"x")
    with pytest.raises(LineTooLong):
        buf.extract_line(10, bare_lf=False)
    buf = filled(b"x" * 8 + b"\r")
    assert buf.extract_line(10, bare_lf=False) is None  # the LF may come next
    buf = filled(b"x" * 9)
    assert buf.extract_line(10, bare_lf=True) is None  # a bare LF would fit
    buf.append(b"x")
    with pytest.raises(LineTooLong):
        buf.extract_line(10, bare_lf=True)


def test_long_line_after_a_short_one() -> None:
    buf = filled(b"ok\r\n" + b"z" * 50)
    assert buf.extract_line(10, bare_lf=False) == b"ok"
    with pytest.raises(LineTooLong):
        buf.extract_line(10, bare_lf=False)


def test_bytearray_and_memoryview_never_leak() -> None:
    """Every value handed out is exact bytes, whatever was appended."""
    buf = ReceiveBuffer()
    buf.append(b"ab\r\ncd\r\nef")
    buf.append(b"gh")
    for value in (
        buf.extract_line(100, bare_lf=False),
        buf.consume(2),
        buf.peek(),
        buf.take_all(),
    ):
        assert_exact_bytes(value)

"""Unit tests for the pure parsers (pop3proto._readers) and serializers (pop3proto._writers).

Section references are to CONFORMANCE.md.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from pop3proto import (
    IN_USE,
    SYS_TEMP,
    Apop,
    Auth,
    Capa,
    Capabilities,
    CapaOk,
    Dele,
    Extension,
    Lang,
    LangOk,
    List,
    ListEntryOk,
    ListOk,
    LocalProtocolError,
    Noop,
    Pass,
    Quit,
    Retr,
    Rset,
    Stat,
    Stls,
    Top,
    Uidl,
    UidlEntryOk,
    UidlOk,
    User,
    Utf8,
)
from pop3proto._commands import (
    command_arguments,
    command_keyword,
    parse_command,
    parse_sasl_line,
    write_command,
)
from pop3proto._readers import (
    BadLine,
    BodyReader,
    find_block_end,
    parse_capa_block,
    parse_lang_block,
    parse_list_block,
    parse_status,
    parse_uidl_block,
    split_block,
)
from pop3proto._writers import (
    BodyWriter,
    write_entry,
    write_multiline,
    write_status,
)

DIGEST = "c4c9334bac560ecc979e58001b3e22fb"


def ascii_decode(data: bytes) -> str:
    return data.decode("ascii", "replace")


# ---------------------------------------------------------------------------
# parse_status
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"+OK", (True, None, "")),
        (b"+OK ", (True, None, "")),
        (b"+OK hello  world ", (True, None, "hello  world ")),
        (b"-ERR", (False, None, "")),
        (b"-ERR [IN-USE] busy", (False, IN_USE, "busy")),
        (b"+OK[SYS/TEMP]x", (True, SYS_TEMP, "x")),
        (b"-ERR [", (False, None, "[")),
        (b"-ERR [] x", (False, None, "[] x")),
    ],
)
def test_parse_status(line: bytes, expected: tuple[object, ...]) -> None:
    assert parse_status(line, ascii_decode) == expected


@pytest.mark.parametrize(
    "line", [b"+ok", b"+OKAY", b"-ERROR", b"+OK\tx", b"OK", b"", b"+OK a\x00", b"+OK a\rb"]
)
def test_parse_status_refuses(line: bytes) -> None:
    with pytest.raises(ValueError):
        parse_status(line, ascii_decode)


def test_parse_status_uses_the_decoder_and_shortens_errors() -> None:
    assert parse_status("+OK é".encode(), lambda b: b.decode("utf-8")) == (True, None, "é")
    with pytest.raises(ValueError) as info:
        parse_status(b"garbage" * 20, ascii_decode)
    assert str(info.value).endswith("...")
    assert len(str(info.value)) < 80


# ---------------------------------------------------------------------------
# Multi-line blocks
# ---------------------------------------------------------------------------
# A block is the listing's lines *with* their line ends (so b"" is no line at
# all and b"\r\n" is one empty line); find_block_end says where it ends.


@pytest.mark.parametrize(
    ("data", "bare_lf", "expected"),
    [
        (b".\r\n", False, (0, 3)),
        (b".\r\nnext", True, (0, 3)),
        (b".\nnext", True, (0, 2)),
        (b".\n", False, (-1, -1)),
        (b"\r\n.\r\n", False, (2, 5)),  # one empty line, not an empty block
        (b"\n.\n", True, (1, 3)),
        (b"1 2\r\n.\r\n", False, (5, 8)),
        (b"1 2\r\n.\r", False, (-1, -1)),
        (b"1 2\r\n3 4\r\n.\r\n+OK", False, (10, 13)),
        (b"1 2\n.\n", True, (4, 6)),
        (b"1 2\r\n.\n", True, (5, 7)),
        (b"1 2\n.\r\n", True, (4, 7)),
        (b"1 2\n.\n3 4\r\n.\r\n", True, (4, 6)),  # the earliest terminator wins
        (b"1 2\r\n.\r\n3 4\n.\n", True, (5, 8)),
        (b"1 2\n", True, (-1, -1)),
    ],
)
def test_find_block_end(data: bytes, bare_lf: bool, expected: tuple[int, int]) -> None:
    assert find_block_end(data, 0, bare_lf=bare_lf) == expected


def test_find_block_end_resumes_from_start() -> None:
    data = b"1 2\r\n.\r\n"
    assert find_block_end(data, 3, bare_lf=False) == (5, 8)
    assert find_block_end(data, 4, bare_lf=False) == (-1, -1)  # start past the CRLF
    assert find_block_end(bytearray(data), 0, bare_lf=False) == (5, 8)


@pytest.mark.parametrize(
    ("block", "bare_lf", "lines"),
    [
        (b"", False, []),
        (b"\r\n", False, [b""]),
        (b"a\r\n..b\r\n.c\r\n", False, [b"a", b".b", b"c"]),
        (b"a\n..b\r\n\r\n", True, [b"a", b".b", b""]),
        (b"a\nb\r\n", False, [b"a\nb"]),
    ],
)
def test_split_block(block: bytes, bare_lf: bool, lines: list[bytes]) -> None:
    assert split_block(block, bare_lf=bare_lf) == lines


@pytest.mark.parametrize(
    ("block", "bare_lf", "expected"),
    [
        (b"", False, {}),
        (b"1 120\r\n2 200\r\n", False, {1: 120, 2: 200}),  # fast path
        (b"1 120\n2 200\n", True, {1: 120, 2: 200}),
        (b"1 120\r\n2 200\r\n", True, {1: 120, 2: 200}),
        (b"1 120 octets\r\n2 200\r\n", False, {1: 120, 2: 200}),  # text after the size
        (b"3 0\r\n7 10\r\n", False, {3: 0, 7: 10}),  # non-contiguous, size 0
        (b"99999999999999999999 1\r\n", False, {99999999999999999999: 1}),
    ],
)
def test_parse_list_block(block: bytes, bare_lf: bool, expected: dict[int, int]) -> None:
    assert parse_list_block(block, bare_lf=bare_lf) == expected


@pytest.mark.parametrize(
    "block",
    [
        b"1 1\r\n1 2\r\n",  # duplicate number (fast path)
        b"1 1 x\r\n1 2\r\n",  # duplicate number (slow path)
        b"0 1\r\n",  # number 0 (fast path)
        b"0 1 x\r\n",  # number 0 (slow path)
        b"1\r\n",
        b"1 x\r\n",
        b"x 1\r\n",
        b"1 1\r\n 2\r\n",  # an empty field sends the fast path to the slow one
        b"1 1\r\n\r\n2 2\r\n",
        b"\r\n",  # one empty line
        b"1 -1\r\n",
        b"1 \xb9\r\n",
        b"1  120\r\n",  # RFC 1939 §5: exactly one SP
        b"1\t120\r\n",
        b"1 10\n2 20\r\n",  # a bare LF in strict mode is not a line end
    ],
)
def test_parse_list_block_refuses(block: bytes) -> None:
    with pytest.raises(ValueError):
        parse_list_block(block)


def test_parse_list_block_large_fast_path() -> None:
    block = b"".join(b"%d %d\r\n" % (n, n * 7) for n in range(1, 20001))
    assert parse_list_block(block) == {n: n * 7 for n in range(1, 20001)}


@pytest.mark.parametrize(
    ("block", "bare_lf", "expected"),
    [
        (b"", False, {}),
        (b"1 whqtswO00WBw418f9t5JxYwZ\r\n2 QhdPYR:00WBw1Ph7x7\r\n", False, None),
        (b"1 a\n2 b\n", True, {1: "a", 2: "b"}),
        (b"1 a trailing text\r\n2 b\r\n", False, {1: "a", 2: "b"}),
        (b"1 same\r\n2 same\r\n", False, {1: "same", 2: "same"}),
        (b"1 " + b"u" * 71 + b"\r\n", False, {1: "u" * 71}),  # tolerated on receipt
    ],
)
def test_parse_uidl_block(block: bytes, bare_lf: bool, expected: dict[int, str] | None) -> None:
    if expected is None:
        expected = {1: "whqtswO00WBw418f9t5JxYwZ", 2: "QhdPYR:00WBw1Ph7x7"}
    assert parse_uidl_block(block, bare_lf=bare_lf) == expected


@pytest.mark.parametrize(
    "block",
    [
        b"1 a\x7f\r\n",
        b"1 a\tb\r\n",
        b"1 \xe9\r\n",
        b"1 a\x00\r\n",
        b"1 a\r\n1 b\r\n",  # duplicate (fast path)
        b"1 a x\r\n1 b\r\n",  # duplicate (slow path)
        b"0 a\r\n",
        b"0 a x\r\n",
        b"1\r\n",
        b"1 \r\n",
        b"x a\r\n",
        b" a\r\n",
        b"\r\n",
        b"1 a\r\n b\r\n",  # an empty number sends the fast path to the slow one
        b"1 a\rb\r\n2 c d\r\n",  # CR inside a uid (slow path)
        b"1 a\n2 b\r\n",  # LF inside a uid in strict mode
    ],
)
def test_parse_uidl_block_refuses(block: bytes) -> None:
    with pytest.raises(ValueError):
        parse_uidl_block(block)


@pytest.mark.parametrize("block", [b"1 a\rb\r\n", b"1 a\r\r\n"])
def test_parse_uidl_block_refuses_cr_in_a_uid_on_the_fast_path(block: bytes) -> None:
    """RFC 1939 §7: a unique-id is 0x21-0x7E.  ``1 a\\rb`` next to a line with trailing
    text is refused (slow path); alone it must be refused too: the verdict may not depend
    on the other lines."""
    with pytest.raises(ValueError):
        parse_uidl_block(block)


def test_parse_capa_and_lang_blocks() -> None:
    assert parse_capa_block(b"TOP\r\nSASL PLAIN\r\n..X\r\n", ascii_decode) == [
        "TOP",
        "SASL PLAIN",
        ".X",
    ]
    assert parse_capa_block(b"TOP\nUSER\n", ascii_decode, bare_lf=True) == ["TOP", "USER"]
    assert parse_capa_block("IMPLEMENTATION Dö\r\n".encode(), ascii_decode) == [
        "IMPLEMENTATION D\ufffd\ufffd"
    ]
    block = b"en English\r\nde\r\nen-boont English Boontling\r\n"
    assert parse_lang_block(block) == (
        ("en", "English"),
        ("de", ""),
        ("en-boont", "English Boontling"),
    )
    # RFC 6856 §3: descriptions are UTF-8 whatever the mode; bad octets never raise.
    assert parse_lang_block("es Español\r\n".encode() + b"xx \xff\r\n") == (
        ("es", "Español"),
        ("xx", "\ufffd"),
    )
    assert parse_lang_block(b"") == ()
    assert parse_lang_block(b"en\n", bare_lf=True) == (("en", ""),)
    with pytest.raises(ValueError, match="tag"):
        parse_lang_block(b"en\r\n English\r\n")


# ---------------------------------------------------------------------------
# BodyReader
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        # (chunks fed one after another, leftovers carried) -> [(body, finished)...]
        ([b"abc\r\n.\r\nrest"], [(b"abc\r\n", b"rest", True)]),
        ([b".\r\n"], [(b"", b"", True)]),
        ([b"..\r\n"], [(b".", b"\r\n", False)]),
        ([b"."], [(b"", b".", False)]),
        ([b"xyz"], [(b"xyz", b"", False)]),
        ([b"abc\r\n."], [(b"abc", b"\r\n.", False)]),
        ([b"abc\r\n.\r"], [(b"abc", b"\r\n.\r", False)]),
        ([b"abc\r"], [(b"abc", b"\r", False)]),
        # "CRLF . CRLF ." : a pipelined reply that starts with a dot follows the end.
        ([b"a\r\n.\r\n.x"], [(b"a\r\n", b".x", True)]),
        ([b"a\r\n..b\r\n...\r\n.\r\n"], [(b"a\r\n.b\r\n..\r\n", b"", True)]),
    ],
)
def test_body_reader_strict(chunks: list[bytes], expected: list[tuple[bytes, bytes, bool]]) -> None:
    reader = BodyReader(bare_lf=False)
    for chunk, want in zip(chunks, expected, strict=True):
        assert reader.feed(chunk) == want


def test_body_reader_continues_after_a_held_tail() -> None:
    reader = BodyReader(bare_lf=False)
    body, left, done = reader.feed(b"..\r\n")
    assert (body, left, done) == (b".", b"\r\n", False)
    assert not reader.at_line_start
    assert reader.feed(left + b".\r\n") == (b"\r\n", b"", True)
    assert reader.at_line_start


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"a\n.\nrest", (b"a\n", b"rest", True)),
        (b"a\n.\r\nrest", (b"a\n", b"rest", True)),
        (b"a\r\n.\r\n", (b"a\r\n", b"", True)),
        (b"a\n.\r\n.x", (b"a\n", b".x", True)),  # "LF . CR LF ." in lenient mode
        (b"a\n..b\n", (b"a\n.b", b"\n", False)),
        (b"a\n.", (b"a", b"\n.", False)),
        (b"a\n.\r", (b"a", b"\n.\r", False)),
    ],
)
def test_body_reader_lenient(data: bytes, expected: tuple[bytes, bytes, bool]) -> None:
    assert BodyReader(bare_lf=True).feed(data) == expected


@pytest.mark.parametrize(
    ("bare_lf", "data", "expected"),
    [
        (False, b"abc.\r\n", (b"abc", b".\r\n", False)),
        (False, b"abc.\r", (b"abc", b".\r", False)),
        (True, b"abc.\n", (b"abc", b".\n", False)),
        (True, b"abc.\r\n", (b"abc", b".\r\n", False)),
    ],
)
def test_body_reader_sloppy_end_holds_back_more(
    bare_lf: bool, data: bytes, expected: tuple[bytes, bytes, bool]
) -> None:
    assert BodyReader(bare_lf=bare_lf, sloppy_end=True).feed(data) == expected
    # Without sloppy_end only a real terminator prefix is held back.
    body, left, _ = BodyReader(bare_lf=bare_lf).feed(data)
    assert body + left == data and len(left) <= 2


def run_reader(
    wire: bytes, chunks: list[int], *, bare_lf: bool = False, pipelined: bool = False
) -> tuple[bytes, bytes]:
    """Drive a BodyReader the way the connection does: feed() what is
    buffered (leftovers are put back), or, with replies queued behind the
    body (*pipelined*), find_end() on the buffer first and feed() only what
    it cannot tell."""
    reader = BodyReader(bare_lf=bare_lf)
    pending = b""
    out = b""
    pos = 0
    for size in [*chunks, len(wire)]:
        pending += wire[pos : pos + size]
        pos += size
        while pending:
            found = reader.find_end(pending) if pipelined else None
            if found is None:
                body, pending, done = reader.feed(pending, unterminated=pipelined)
            else:
                body_end, consumed, stuffed, done = found
                body, pending = pending[:body_end], pending[consumed:]
                if stuffed:
                    body = reader.unstuff(body)
                else:
                    reader.took_plain(done)
            out += body
            if done:
                return out, pending + wire[pos:]
            if found is None:
                break  # all fed but a tail that more data must explain
    raise AssertionError("no terminator")


LINES = st.lists(
    st.sampled_from([b"", b".", b"..", b"...", b".x", b"x.", b"abc", b"a\rb", b"\x00\xff"]),
    max_size=8,
)


@given(lines=LINES, sizes=st.lists(st.integers(1, 7), max_size=20))
def test_body_writer_reader_round_trip(lines: list[bytes], sizes: list[int]) -> None:
    """CONFORMANCE.md §3.2 and §3.8: stuffing then unstuffing is the identity for
    CRLF bodies, however the wire is chunked."""
    body = b"".join(line + b"\r\n" for line in lines)
    writer = BodyWriter()
    wire = writer.data(body) + writer.end() + b"+OK next\r\n"
    got, rest = run_reader(wire, sizes)
    assert got == body
    assert rest == b"+OK next\r\n"


@given(
    lines=st.lists(
        st.sampled_from([b"x" * 300, b"." + b"y" * 300, b"z" * 299 + b".", b"", b"."]),
        max_size=10,
    ),
    sizes=st.lists(st.integers(100, 4000), max_size=5),
    after=st.sampled_from([b"+OK next\r\n", b".x\r\n", b"\r\n", b""]),
)
# "CRLF . CRLF ." behind a stuffed line, in one chunk:
@example(lines=[b"." + b"y" * 300] + [b"x" * 300] * 3, sizes=[], after=b".x\r\n")
def test_body_reader_long_lines_few_dot_lines(
    lines: list[bytes], sizes: list[int], after: bytes
) -> None:
    """Chunks of long lines with a few dot lines take the look-at-each-piece
    path (the other tests' chunks are too short for it); whatever follows
    the terminator is left as it was, even a line that starts with a dot."""
    body = b"".join(line + b"\r\n" for line in lines)
    writer = BodyWriter()
    wire = writer.data(body) + writer.end() + after
    assert run_reader(wire, sizes) == (body, after)
    assert run_reader(wire, sizes, pipelined=True) == (body, after)


@given(lines=LINES, sizes=st.lists(st.integers(1, 9), max_size=20))
def test_body_reader_pipelined_path_is_split_invariant(
    lines: list[bytes], sizes: list[int]
) -> None:
    """CONFORMANCE.md §3.8: find_end and feed(unterminated=True), as the connection
    uses them for pipelined replies, read the body however the wire is cut."""
    body = b"".join(line + b"\r\n" for line in lines)
    writer = BodyWriter()
    wire = writer.data(body) + writer.end() + b"+OK next\r\n"
    assert run_reader(wire, sizes, pipelined=True) == (body, b"+OK next\r\n")


@given(lines=LINES, bare_lf=st.booleans())
def test_body_reader_find_end_agrees_with_feed(lines: list[bytes], bare_lf: bool) -> None:
    """The pipelined path (find_end, then unstuff only when told) and the
    streaming path (feed) read the same body and stop at the same octet."""
    body = b"".join(line + b"\r\n" for line in lines)
    writer = BodyWriter()
    wire = writer.data(body) + writer.end() + b"+OK next\r\n"
    reader = BodyReader(bare_lf=bare_lf)
    found = reader.find_end(wire)
    assert found is not None
    body_end, reply_end, stuffed, done = found
    assert done
    got = reader.unstuff(wire[:body_end]) if stuffed else wire[:body_end]
    assert got == body
    assert wire[reply_end:] == b"+OK next\r\n"
    if not stuffed:
        assert not got.startswith(b".") and b"\n." not in got
    assert run_reader(wire, [], bare_lf=bare_lf) == (body, b"+OK next\r\n")


@given(lines=LINES, sizes=st.lists(st.integers(1, 7), max_size=20))
def test_body_with_bare_lf_goes_out_as_crlf(lines: list[bytes], sizes: list[int]) -> None:
    """A stored bare LF is sent as CRLF (RFC 1939 §11 counts it as two octets), so the
    strict and the lenient client both read the CRLF form."""
    body = b"".join(line.replace(b"\r", b"") + b"\n" for line in lines)
    writer = BodyWriter()
    wire = writer.data(body) + writer.end()
    for bare_lf in (False, True):
        got, rest = run_reader(wire, sizes, bare_lf=bare_lf)
        assert got == body.replace(b"\n", b"\r\n") and rest == b""


# ---------------------------------------------------------------------------
# BodyWriter
# ---------------------------------------------------------------------------


def test_body_writer_stuffs_across_chunks() -> None:
    writer = BodyWriter()
    assert writer.data(b".first\r\n") == b"..first\r\n"
    assert writer.data(b"") == b""  # an empty chunk changes nothing
    assert writer.data(b".x") == b"..x"  # the previous chunk ended a line
    assert writer.data(b".y\r") == b".y\r"  # mid-line: no stuffing
    assert writer.data(b"\n.z\r\n") == b"\n..z\r\n"
    assert writer.end() == b".\r\n"


def test_body_writer_bare_lf_cannot_smuggle_a_terminator() -> None:
    """greenmail#1049: a bare LF followed by ``.`` must not end the body early for a
    lenient client; the engine sends bare LF as CRLF and stuffs the dot."""
    writer = BodyWriter()
    assert writer.data(b"a\n.\r\nb\r\n") == b"a\r\n..\r\nb\r\n"
    # A CRLF split across chunks is not doubled.
    writer = BodyWriter()
    assert writer.data(b"a\r") + writer.data(b"\n.b\n") == b"a\r\n..b\r\n"
    assert writer.end() == b".\r\n"


@pytest.mark.parametrize(
    ("chunks", "end"),
    [([], b".\r\n"), ([b"x\r\n"], b".\r\n"), ([b"x"], b"\r\n.\r\n"), ([b"x\r"], b"\n.\r\n")],
)
def test_body_writer_end(chunks: list[bytes], end: bytes) -> None:
    """CONFORMANCE.md §3.3: a body without a final CRLF gets one before the terminator."""
    writer = BodyWriter()
    for chunk in chunks:
        writer.data(chunk)
    assert writer.end() == end


def test_body_writer_random_chunking_matches_one_shot() -> None:
    rng = random.Random(2449)
    alphabet = [b".", b"\r", b"\n", b"a", b"\r\n", b"\r\n."]
    for _ in range(300):
        body = b"".join(rng.choice(alphabet) for _ in range(rng.randint(0, 15)))
        one = BodyWriter()
        expected = one.data(body) + one.end()
        writer = BodyWriter()
        out, i = b"", 0
        while i < len(body):
            n = rng.randint(1, 4)
            out += writer.data(body[i : i + n])
            i += n
        assert out + writer.end() == expected, body


# ---------------------------------------------------------------------------
# parse_command / parse_sasl_line
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "command"),
    [
        (b"STAT", Stat()),
        (b"noop", Noop()),
        (b"RSET", Rset()),
        (b"QUIT", Quit()),
        (b"CAPA", Capa()),
        (b"STLS", Stls()),
        (b"utf8", Utf8()),
        (b"USER mrose", User("mrose")),
        (b"PASS  two  spaces ", Pass(" two  spaces ")),
        (b"LIST", List()),
        (b"LIST 7", List(7)),
        (b"UIDL 7", Uidl(7)),
        (b"RETR 1", Retr(1)),
        (b"DELE 2", Dele(2)),
        (b"TOP 1 0", Top(1, 0)),
        (
            b"APOP mrose C4C9334BAC560ECC979E58001B3E22FB",
            Apop("mrose", "c4" + "c9334bac560ecc979e58001b3e22fb"),
        ),
        (b"AUTH plain", Auth("PLAIN")),
        (b"AUTH PLAIN =", Auth("PLAIN", b"")),
        (b"AUTH PLAIN dGVzdA==", Auth("PLAIN", b"test")),
        (b"LANG", Lang()),
        (b"LANG *", Lang("*")),
    ],
)
def test_parse_command(line: bytes, command: object) -> None:
    assert parse_command(line, allow_utf8=False) == command


@pytest.mark.parametrize(
    ("line", "allow_utf8", "reason"),
    [
        (b"", False, "empty command"),
        (b" STAT", False, "empty command"),
        (b"STAT\x00", False, "control characters in command"),
        (b"STAT\r", False, "control characters in command"),
        (b"ST\nAT", False, "control characters in command"),
        (b"PASS", False, "PASS needs an argument"),
        (b"PASS a\x01", False, "control characters in password"),
        ("PASS é".encode(), False, "non-ASCII password needs UTF8 mode"),
        (b"PASS \xff", True, "password is not valid UTF-8"),
        (b"PASS \xc2\x85", True, "control characters in password"),
        (b"LIST  1", False, "empty parameter (extra space)"),
        (b"LIST 1 ", False, "empty parameter (extra space)"),
        (b"LIST \x7f", False, "control characters in parameter"),
        (b"LIST \xb9", False, "non-ASCII parameter"),
        (b"STAT 1", False, "STAT takes no arguments"),
        (b"USER", False, "USER takes one argument"),
        (b"LIST 1 2", False, "LIST takes at most one argument"),
        (b"UIDL 1 2", False, "UIDL takes at most one argument"),
        (b"RETR", False, "RETR takes one argument"),
        (b"DELE 1 2", False, "DELE takes one argument"),
        (b"TOP 1", False, "TOP takes a message number and a line count"),
        (b"TOP 1 -1", False, "invalid line count"),
        (b"RETR 0", False, "invalid message number"),
        (b"RETR 01", False, "invalid message number"),
        (b"RETR 123456789012345678901", False, "invalid message number"),
        (b"APOP a", False, "APOP takes a name and a digest"),
        (b"APOP a xyz", False, "APOP digest must be 32 lower-case hex digits"),
        (b"APOP a \xff", False, "non-ASCII parameter"),
        ("USER jös".encode(), False, "non-ASCII user name needs UTF8 mode"),
        (b"AUTH", False, "AUTH takes a mechanism and an optional initial response"),
        (b"AUTH PLAIN =AAA", False, "invalid base64"),
        (b"AUTH P!", False, "AUTH mechanism must be 1-20 characters of A-Z, 0-9, '-' and '_'"),
        (b"LANG a b", False, "LANG takes at most one argument"),
        (b"XTND", False, "unknown command"),
    ],
)
def test_parse_command_refuses(line: bytes, allow_utf8: bool, reason: str) -> None:
    with pytest.raises(BadLine) as info:
        parse_command(line, allow_utf8=allow_utf8)
    assert info.value.reason == reason
    assert info.value.command is None


def test_parse_command_utf8_credentials() -> None:
    assert parse_command("USER jös".encode(), allow_utf8=True) == User("jös")
    assert parse_command("PASS pä ss".encode(), allow_utf8=True) == Pass("pä ss")
    assert parse_command("APOP jös ".encode() + b"0" * 32, allow_utf8=True) == Apop("jös", "0" * 32)
    with pytest.raises(BadLine, match="UTF-8"):
        parse_command(b"USER \xff", allow_utf8=True)


def test_bad_line_carries_reason_and_command() -> None:
    exc = BadLine("STAT is not allowed", Stat())
    assert str(exc) == "STAT is not allowed" and exc.command == Stat()


@pytest.mark.parametrize(
    ("line", "result"), [(b"*", None), (b"", b""), (b"dGVzdA==", b"test"), (b"AAAA", b"\0\0\0")]
)
def test_parse_sasl_line(line: bytes, result: bytes | None) -> None:
    assert parse_sasl_line(line) == result


@pytest.mark.parametrize("line", [b"=", b"=AAA", b"AAA=BBBB", b"AA AA", b"**", b"AAA"])
def test_parse_sasl_line_refuses(line: bytes) -> None:
    with pytest.raises(BadLine, match="base64"):
        parse_sasl_line(line)


# ---------------------------------------------------------------------------
# Writers
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "wire"),
    [
        (User("mrose"), b"USER mrose\r\n"),
        (Pass(" a b "), b"PASS  a b \r\n"),
        (
            Apop("mrose", "c4c9334bac560ecc979e58001b3e22fb"),
            b"APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\n",
        ),
        (Auth("plain"), b"AUTH PLAIN\r\n"),
        (Auth("PLAIN", b""), b"AUTH PLAIN =\r\n"),
        (Auth("PLAIN", b"\0test\0test"), b"AUTH PLAIN AHRlc3QAdGVzdA==\r\n"),
        (Stat(), b"STAT\r\n"),
        (List(), b"LIST\r\n"),
        (List(3), b"LIST 3\r\n"),
        (Retr(3), b"RETR 3\r\n"),
        (Dele(3), b"DELE 3\r\n"),
        (Top(3, 0), b"TOP 3 0\r\n"),
        (Uidl(), b"UIDL\r\n"),
        (Uidl(3), b"UIDL 3\r\n"),
        (Lang(), b"LANG\r\n"),
        (Lang("de"), b"LANG de\r\n"),
        (Utf8(), b"UTF8\r\n"),
        (Extension("xtnd", ("XLST", "Subject")), b"XTND XLST Subject\r\n"),
        (User("jös"), "USER jös\r\n".encode()),
    ],
)
def test_write_command(command: object, wire: bytes) -> None:
    assert write_command(command, 255) == wire  # type: ignore[arg-type]


def test_write_command_limits() -> None:
    assert len(write_command(User("u" * 248), 255)) == 255
    with pytest.raises(LocalProtocolError, match="256 octets"):
        write_command(User("u" * 249), 255)
    with pytest.raises(LocalProtocolError, match="PASS command"):
        write_command(Pass("p" * 300), 255)
    with pytest.raises(LocalProtocolError, match="initial response"):
        write_command(Auth("PLAIN", b"x" * 200), 255)
    assert write_command(Auth("PLAIN", b"x" * 200), 512).startswith(b"AUTH PLAIN eHh4")


def test_command_arguments_and_keyword() -> None:
    assert command_arguments(Top(1, 2)) == ["1", "2"]
    assert command_arguments(Extension("XLST")) == []
    assert command_arguments(Extension("X-ME", ("a", "b"))) == ["a", "b"]
    assert command_arguments(Noop()) == []
    assert command_arguments(Retr(3)) == ["3"]
    assert command_arguments(Dele(12)) == ["12"]
    assert command_keyword(Extension("xlst")) == "XLST"
    assert command_keyword(Retr(1)) == "RETR"


@pytest.mark.parametrize(
    ("ok", "code", "text", "wire"),
    [
        (True, None, "", b"+OK\r\n"),
        (True, None, "hi", b"+OK hi\r\n"),
        (False, None, "", b"-ERR\r\n"),
        (False, IN_USE, "", b"-ERR [IN-USE]\r\n"),
        (False, SYS_TEMP, "later", b"-ERR [SYS/TEMP] later\r\n"),
        (True, None, "café", "+OK café\r\n".encode()),
    ],
)
def test_write_status(ok: bool, code: object, text: str, wire: bytes) -> None:
    assert write_status(ok, code, text, 512) == wire  # type: ignore[arg-type]


def test_write_status_limit() -> None:
    assert len(write_status(True, None, "x" * 506, 512)) == 512
    with pytest.raises(LocalProtocolError, match="513 octets"):
        write_status(True, None, "x" * 507, 512)


@pytest.mark.parametrize(
    ("event", "wire"),
    [
        (ListOk({}), b"+OK\r\n.\r\n"),
        (ListOk({1: 120, 3: 0}, "2 messages"), b"+OK 2 messages\r\n1 120\r\n3 0\r\n.\r\n"),
        (UidlOk({1: "a", 2: "a"}), b"+OK\r\n1 a\r\n2 a\r\n.\r\n"),
        (
            CapaOk(Capabilities.build("TOP", ("SASL", "PLAIN"))),
            b"+OK\r\nTOP\r\nSASL PLAIN\r\n.\r\n",
        ),
        (LangOk((("en", "English"), ("de", ""))), b"+OK\r\nen English\r\nde\r\n.\r\n"),
        (LangOk((("es", "Español"),), "x"), "+OK x\r\nes Español\r\n.\r\n".encode()),
    ],
)
def test_write_multiline(event: object, wire: bytes) -> None:
    assert write_multiline(event, 512) == wire  # type: ignore[arg-type]


def test_write_entry() -> None:
    assert write_entry(ListEntryOk(2, 200), 512) == b"+OK 2 200\r\n"
    assert write_entry(UidlEntryOk(2, "QhdPYR:00WBw1Ph7x7"), 512) == b"+OK 2 QhdPYR:00WBw1Ph7x7\r\n"
    with pytest.raises(LocalProtocolError):
        write_entry(UidlEntryOk(2, "u" * 70), 16)


def test_body_reader_find_end_on_an_empty_lenient_body() -> None:
    """Pipelined replies: an empty body whose terminator is ``.LF`` (bare_lf)."""
    from pop3proto._readers import BodyReader

    reader = BodyReader(bare_lf=True)
    assert reader.find_end(b".\n+OK next\r\n") == (0, 2, False, True)
    assert reader.find_end(b".\r\n") == (0, 3, False, True)
    assert BodyReader(bare_lf=False).find_end(b".\nmore") is None


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        # No line starts with a dot: the body needs no unstuffing.
        (b"a\r\nb\r\n.\r\n+OK", (6, 9, False, True)),
        (b".\r\n", (0, 3, False, True)),
        # A stuffed line before the terminator, or as the first line.
        (b"a\r\n..b\r\n.\r\n", (8, 11, True, True)),
        (b"..a\r\n.\r\n", (5, 8, True, True)),
        # No terminator and no dot line: the octets are the message's, but
        # for a tail that may start the terminator.
        (b"abc", (3, 3, False, False)),
        (b"abc\r\n", (3, 3, False, False)),
        (b"abc\r", (3, 3, False, False)),
        # Left to feed(): a dot line, or nothing that can be told yet.
        (b"a\r\n..b\r\n", None),
        (b"a\r\n.", None),
        (b".abc", None),
        (b"\r\n", None),
    ],
)
def test_body_reader_find_end_says_whether_to_unstuff(
    data: bytes, expected: tuple[int, int, bool, bool] | None
) -> None:
    """CONFORMANCE.md §3.2: only a body with a dot-started line needs unstuffing."""
    assert BodyReader(bare_lf=False).find_end(data) == expected


def test_body_reader_chunk_with_a_stuffed_line_and_no_terminator() -> None:
    """A long chunk with one stuffed line and no terminator is unstuffed, not ended."""
    reader = BodyReader(bare_lf=False)
    reader.at_line_start = False
    out, leftover, done = reader.feed(b"x" * 1000 + b"\r\n..y" + b"z" * 1000 + b"\r\n")
    assert (out, done) == (b"x" * 1000 + b"\r\n.y" + b"z" * 1000, False)
    assert leftover == b"\r\n"

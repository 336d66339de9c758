"""The drop-in's bulk reader of multi-line replies gives exactly what
``poplib._getlongresp`` gives for the same bytes, however they are
buffered: lines, octets, and the error (``line too long``, ``-ERR EOF``).
"""

from __future__ import annotations

import io
import poplib as std_poplib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pop3proto.adapters import sync as our_poplib
from pop3proto.adapters.client import _poplib, _poplib_body


def outcome(cls: Any, data: bytes, buffer_size: int, maxline: int) -> tuple[Any, ...]:
    """Read one multi-line reply from *data* with *cls*'s _getlongresp."""
    pop = cls.__new__(cls)
    pop._debugging = 0
    pop.file = io.BufferedReader(io.BytesIO(data), buffer_size=buffer_size)  # type: ignore[arg-type]
    module = std_poplib if cls is std_poplib.POP3 else _poplib
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(module, "_MAXLINE", maxline)
        try:
            result = pop._getlongresp()
        except Exception as exc:  # compared below
            return ("raised", type(exc).__name__, exc.args)
    # What is left unread must be the same too (the next reply).
    return ("returned", result, pop.file.read())


PIECES = [b"a", b"bc", b".", b"..", b"\r", b"\n", b"\r\n", b".\r\n", b"\r\n.\r\n", b"x" * 40]


@settings(max_examples=400, deadline=None)
@given(
    body=st.lists(st.sampled_from(PIECES), max_size=40).map(b"".join),
    buffer_size=st.sampled_from([1, 2, 3, 5, 8, 64, 8192]),
    maxline=st.sampled_from([8, 30, 2048]),
)
def test_bulk_reader_matches_poplib(body: bytes, buffer_size: int, maxline: int) -> None:
    data = b"+OK\r\n" + body
    theirs = outcome(std_poplib.POP3, data, buffer_size, maxline)
    ours = outcome(our_poplib.POP3, data, buffer_size, maxline)
    assert ours == theirs


@pytest.mark.parametrize(
    "body",
    [
        b"line\r\n..stuffed\r\n.\r\nNEXT",
        b"..first\r\nplain\r\n.\r\n",
        b".\r\nNEXT",
        b"one\ntwo\r\n\r.\nNEXT",
        b"one\r\ntwo\n.\nNEXT",
        b"a" * 3000 + b"\r\n.\r\n",
        b"a" * 100 + b"\r\n" + b"b" * 3000,
        b"short\r\n" + b"c" * 3000 + b"\r\n.\r\n",
        b"cut at eof",
        b"hi.",
        b"",
        b"x\r\n" * 5000 + b".\r\nNEXT",
    ],
)
@pytest.mark.parametrize("buffer_size", [4, 8192])
def test_bulk_reader_examples(body: bytes, buffer_size: int) -> None:
    data = b"+OK\r\n" + body
    theirs = outcome(std_poplib.POP3, data, buffer_size, 2048)
    ours = outcome(our_poplib.POP3, data, buffer_size, 2048)
    assert ours == theirs


# The whole-reply short cut (read_reply) is taken when the buffer ends with
# the terminator, as a reply to one command at a time does; these draw such
# replies (any status line, any body before "CRLF . CRLF") so that both the
# short cut and each of its ways back to the general reader are compared.
STATUS = [b"+OK", b"+OK 12 octets", b"+", b"+ abc", b"-ERR no", b"+OK\r", b"+OK x\ny", b"", b"."]
WHOLE_PIECES = [*PIECES, b"..", b"\r\n..", b"\r\n.x", b"\r", b"\n.", b"y" * 30]


@settings(max_examples=600, deadline=None)
@given(
    status=st.sampled_from(STATUS),
    body=st.lists(st.sampled_from(WHOLE_PIECES), max_size=30).map(b"".join),
    buffer_size=st.sampled_from([3, 64, 8192]),
    maxline=st.sampled_from([8, 30, 2048]),
)
def test_whole_reply_matches_poplib(
    status: bytes, body: bytes, buffer_size: int, maxline: int
) -> None:
    data = status + b"\r\n" + body + b"\r\n.\r\n"
    theirs = outcome(std_poplib.POP3, data, buffer_size, maxline)
    ours = outcome(our_poplib.POP3, data, buffer_size, maxline)
    assert ours == theirs


@pytest.mark.parametrize(
    "data",
    [
        b"+OK\r\n.\r\n",
        b"+OK 5\r\nabc\r\n.\r\n",
        b"+OK\r\n..a\r\n...\r\n..\r\n.x\r\nb\r\n.\r\n",
        b"+OK\r\n.x\r\n.\r\n",
        b"+OK\r\na\r\n.\r\nb\r\n.\r\n",
        b"+OK\r\na\nb\r\n.\r\n",
        b"+OK\r\na\rb\r\n.\r\n",
        b"+OK\r\n" + b"z" * 2046 + b"\r\n.\r\n",
        b"+OK\r\n" + b"z" * 2047 + b"\r\n.\r\n",
        b"+OK\r\n.." + b"z" * 2044 + b"\r\n.\r\n",
        b"+OK\r\n.." + b"z" * 2045 + b"\r\n.\r\n",
        b"+OK\r\n.." + b"z" * 2045 + b"\r\n" + b"y" * 2047 + b"\r\n.\r\n",
        b"+OK " + b"s" * 2046 + b"\r\n.\r\n",
        b"-ERR no\r\n.\r\n",
    ],
)
def test_whole_reply_examples(data: bytes) -> None:
    theirs = outcome(std_poplib.POP3, data, 8192, 2048)
    ours = outcome(our_poplib.POP3, data, 8192, 2048)
    assert ours == theirs


def test_whole_reply_is_the_short_cut() -> None:
    """A whole reply in the buffer is read by read_reply, not line by line."""
    data = b"+OK 9 octets\r\n..a\r\nb\r\n.\r\n"
    file = io.BufferedReader(io.BytesIO(data))
    assert _poplib_body.read_reply(file, 2048) == (b"+OK 9 octets", [b".a", b"b"], 7)
    assert file.read() == b""
    # Not the common case: nothing is consumed and the caller falls back.
    for other in (data + b"NEXT", b"+OK\r\na\nb\r\n.\r\n", b"+OK\r\n.\r\n.\r\n"):
        file = io.BufferedReader(io.BytesIO(other))
        assert _poplib_body.read_reply(file, 2048) is None
        assert file.read() == other


def test_sasl_flag_after_a_whole_reply() -> None:
    """A multi-line reply read by the short cut sets the SASL flag as
    _getresp does (a "+ " status line is a challenge)."""
    for status, owed in ((b"+ abc", True), (b"+OK", False)):
        pop = our_poplib.POP3.__new__(our_poplib.POP3)
        pop._debugging = 0
        pop._sasl_owed = not owed
        pop.file = io.BufferedReader(io.BytesIO(status + b"\r\nx\r\n.\r\n"))  # type: ignore[arg-type]
        assert pop._getlongresp() == (status, [b"x"], 3)
        assert pop._sasl_owed is owed


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=300), max_size=60))
def test_extend_grows_the_list_as_appending_does(chunks: list[int]) -> None:
    """_extend gives the list appending line by line gives, down to its
    allocated size (so a large message's list is sized as poplib's)."""
    appended: list[bytes] = []
    extended: list[bytes] = []
    count = 0
    for size in chunks:
        part = [b"%d" % (count + i) for i in range(size)]
        count += size
        for line in part:
            appended.append(line)
        _poplib_body._extend(extended, list(part))
    assert extended == appended
    assert extended.__sizeof__() == appended.__sizeof__()


def test_large_reply_list_sized_as_poplibs() -> None:
    """A reply over many buffers: the lines list is poplib's, allocation
    included (peak memory on a large message is at most poplib's)."""
    data = b"+OK\r\n" + b"".join(b"line %d\r\n" % i for i in range(20_000)) + b".\r\nNEXT"
    results = []
    for cls in (std_poplib.POP3, our_poplib.POP3):
        kind, result, rest = outcome(cls, data, 8192, 2048)
        assert kind == "returned" and rest == b"NEXT"
        results.append(result[1])
    theirs, ours = results
    assert ours == theirs
    assert ours.__sizeof__() == theirs.__sizeof__()

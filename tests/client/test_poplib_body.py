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
from pop3proto.adapters.client import _poplib


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

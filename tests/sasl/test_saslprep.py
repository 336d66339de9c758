"""SASLprep, RFC 4013 (pop3proto.sasl._saslprep)."""

from __future__ import annotations

import stringprep
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pop3proto.sasl import (
    saslprep,
)
from pop3proto.sasl._saslprep import _saslprep_steps
from tests.helpers import secret_free


@pytest.mark.parametrize(
    ("given_text", "expected"),
    [
        ("I\u00adX", "IX"),  # RFC 4013 §3 #1: SOFT HYPHEN mapped to nothing
        ("user", "user"),  # #2
        ("USER", "USER"),  # #3: case preserved
        ("\u00aa", "a"),  # #4: NFKC
        ("\u2168", "IX"),  # #5: NFKC
        ("a\u00a0b", "a b"),  # C.1.2 space mapped to SPACE
        ("a\u1680b", "a b"),  # OGHAM SPACE MARK: C.1.2, and NFKC alone keeps it
        ("a\u200bb", "ab"),  # ZERO WIDTH SPACE is in B.1
        ("\u0627\u0628", "\u0627\u0628"),  # pure RandALCat is fine
        ("\u0627 1 \u0628", "\u0627 1 \u0628"),  # neutral chars inside are fine
        ("", ""),
    ],
)
def test_saslprep_maps(given_text: str, expected: str) -> None:
    assert saslprep(given_text) == expected


@pytest.mark.parametrize(
    "bad",
    [
        "\u0007",  # RFC 4013 §3 #6: prohibited C.2.1
        "\u0627\u0031",  # #7: RandALCat must end the string
        "\u0031\u0627",
        "\u0627a\u0628",  # RandALCat and LCat mixed
        "a\u0085b",  # C.2.2
        "\ue000",  # C.3 private use
        "\ufdd0",  # C.4 non-character
        "\ud800",  # C.5 surrogate
        "\ufff9",  # C.6
        "\u2ff0",  # C.7
        "\u200e",  # C.8
        "\U000e0001",  # C.9
    ],
)
def test_saslprep_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        saslprep(bad)
    with pytest.raises(ValueError):
        saslprep(bad, allow_unassigned=True)


def test_saslprep_unassigned_only_for_queries() -> None:
    unassigned = "\u0221"  # assigned in Unicode 4.0, unassigned in 3.2 (A.1)
    assert stringprep.in_table_a1(unassigned)
    with pytest.raises(ValueError):
        saslprep("x" + unassigned)
    assert saslprep("x" + unassigned, allow_unassigned=True) == "x" + unassigned


def test_saslprep_error_does_not_quote_input() -> None:
    with pytest.raises(ValueError) as info:
        saslprep("hunter2\u0007")
    secret_free(info.value, "hunter2", "\u0007", "U+0007", "7")


@given(st.text(max_size=30))
def test_saslprep_only_raises_value_error(text: str) -> None:
    try:
        out = saslprep(text, allow_unassigned=True)
    except ValueError:
        return
    for ch in out:
        assert not stringprep.in_table_b1(ch)
        assert not stringprep.in_table_c21_c22(ch)


def _outcome(prep: Callable[[str], str], text: str) -> tuple[str, str]:
    try:
        return "ok", prep(text)
    except ValueError as exc:
        return "error", str(exc)


@given(st.text(alphabet=st.characters(max_codepoint=0x7F), max_size=40), st.booleans())
def test_the_ascii_fast_path_agrees_with_the_steps(text: str, allow_unassigned: bool) -> None:
    # saslprep() returns printable ASCII as it is without the RFC 4013
    # steps; every ASCII string (controls and DEL too) must come out of
    # both the same, or be refused by both with the same message.
    assert _outcome(lambda t: saslprep(t, allow_unassigned=allow_unassigned), text) == _outcome(
        lambda t: _saslprep_steps(t, allow_unassigned=allow_unassigned), text
    )


def test_printable_ascii_is_returned_as_it_is() -> None:
    text = "".join(map(chr, range(0x20, 0x7F)))
    assert saslprep(text) is text
    assert _saslprep_steps(text, allow_unassigned=False) == text

"""SASLprep (RFC 4013): the stringprep profile (RFC 3454) for names and passwords.

Two peers that prepare a user name or a password the same way agree on it
however its characters were typed or composed.  PLAIN and LOGIN servers
prepare what they receive as a query (RFC 4616 §2); SCRAM prepares both
sides, falling back to the raw string where SASLprep refuses (see
``_prep_or_raw``).
"""

from __future__ import annotations

import stringprep
import unicodedata
from collections.abc import Callable
from typing import Final

__all__ = ["saslprep"]


# RFC 4013 §2.3 prohibited output, with the table names used in messages.
# The messages name only the table, never the character or its position,
# because saslprep() is applied to passwords.
_PROHIBITED: Final[tuple[tuple[Callable[[str], bool], str], ...]] = (
    (stringprep.in_table_c12, "non-ASCII space (C.1.2)"),
    (stringprep.in_table_c21, "ASCII control character (C.2.1)"),
    (stringprep.in_table_c22, "non-ASCII control character (C.2.2)"),
    (stringprep.in_table_c3, "private use character (C.3)"),
    (stringprep.in_table_c4, "non-character code point (C.4)"),
    (stringprep.in_table_c5, "surrogate code point (C.5)"),
    (stringprep.in_table_c6, "character inappropriate for plain text (C.6)"),
    (stringprep.in_table_c7, "character inappropriate for canonical representation (C.7)"),
    (stringprep.in_table_c8, "change display property or deprecated character (C.8)"),
    (stringprep.in_table_c9, "tagging character (C.9)"),
)


def saslprep(s: str, *, allow_unassigned: bool = False) -> str:
    """Prepare *s* with the SASLprep profile (RFC 4013) of stringprep.

    Steps, in the order RFC 3454 §3 prescribes:

    1. map (RFC 4013 §2.1): characters of table B.1 are removed, non-ASCII
       spaces (C.1.2) become U+0020;
    2. normalize with NFKC (§2.2), using the Unicode 3.2 data stringprep is
       defined against;
    3. reject prohibited output (§2.3): C.1.2, C.2.1, C.2.2, C.3 to C.9;
    4. apply the bidirectional rules of RFC 3454 §6 (§2.4);
    5. reject unassigned code points (A.1) unless *allow_unassigned*
       (RFC 3454 §7: "stored strings" must not contain them, "queries" may).

    Raises :class:`ValueError` when the output is prohibited.  The message
    names the rule, not the character, since *s* may be a password.
    """
    if s.isascii() and s.isprintable():
        # Printable ASCII (U+0020-U+007E), what nearly every user name and
        # password is, comes out unchanged: no character of it is mapped
        # (B.1 and C.1.2 are non-ASCII), NFKC leaves it alone, and none is
        # prohibited, unassigned or right-to-left.  The steps below would
        # cost a login about a hundred table look-ups to say so.
        return s
    return _saslprep_steps(s, allow_unassigned=allow_unassigned)


def _saslprep_steps(s: str, *, allow_unassigned: bool) -> str:
    """:func:`saslprep` step by step, for any string."""
    # Step 1: mapping.
    mapped = "".join(
        " " if stringprep.in_table_c12(ch) else ch for ch in s if not stringprep.in_table_b1(ch)
    )
    # Step 2: normalization, with Unicode 3.2 as RFC 3454 §2 requires (the
    # current database would normalize some later characters differently).
    out = unicodedata.ucd_3_2_0.normalize("NFKC", mapped)

    # Steps 3 and 5: prohibited and unassigned code points.
    has_randal = has_l = False
    for ch in out:
        for in_table, label in _PROHIBITED:
            if in_table(ch):
                raise ValueError(f"SASLprep: prohibited {label}")
        if not allow_unassigned and stringprep.in_table_a1(ch):
            raise ValueError("SASLprep: unassigned code point (A.1)")
        if stringprep.in_table_d1(ch):
            has_randal = True
        elif stringprep.in_table_d2(ch):
            has_l = True

    # Step 4: RFC 3454 §6.  A string with any RandALCat character must not
    # contain LCat characters, and must begin and end with RandALCat.
    if has_randal:
        if has_l:
            raise ValueError("SASLprep: mixes right-to-left and left-to-right text")
        if not (stringprep.in_table_d1(out[0]) and stringprep.in_table_d1(out[-1])):
            raise ValueError(
                "SASLprep: right-to-left text must start and end with a right-to-left character"
            )
    return out


def _prep_or_raw(text: str, *, allow_unassigned: bool) -> str:
    """SASLprep *text*, falling back to the unprepared string if that fails.

    Used where both peers are this module (SCRAM): SASLprep's tables are
    frozen at Unicode 3.2, so strict "stored" preparation would reject every
    later character (most emoji, for a start), and an unusable password is
    worse than an unprepared one.  Applying the same fallback on both sides
    keeps them in agreement, and preparing an already prepared string is a
    no-op, so a server may prepare again what a client sent.
    """
    try:
        return saslprep(text, allow_unassigned=allow_unassigned)
    except ValueError:
        return text

"""APOP (RFC 1939 §7): the greeting's timestamp and the digest over it.

APOP is POP3's own shared-secret login, older than SASL and separate from
it: the server puts a msg-id style timestamp in its greeting and the client
answers ``APOP name digest`` with the MD5 of that timestamp followed by the
secret.  The engine parses the timestamp out of every greeting (see
:class:`~pop3proto.Greeting`); computing and checking the digest is up to
the client and the server.
"""

from __future__ import annotations

import hashlib

from .sasl._codec import _utf8

__all__ = ["apop_digest", "parse_greeting_timestamp"]


def apop_digest(timestamp: str, secret: str) -> str:
    """Return the APOP digest for *timestamp* and *secret*.

    RFC 1939 §7: the lowercase hex MD5 of the greeting's timestamp (angle
    brackets included) immediately followed by the shared secret, both
    UTF-8 encoded.

    >>> apop_digest("<1896.697170952@dbc.mtview.ca.us>", "tanstaaf")
    'c4c9334bac560ecc979e58001b3e22fb'
    """
    data = _utf8(timestamp, "timestamp") + _utf8(secret, "secret")
    # MD5 is mandated by the protocol; usedforsecurity=False keeps APOP usable
    # on FIPS-restricted builds, where a plain md5() call would be refused.
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def parse_greeting_timestamp(text: str) -> str | None:
    """Extract the APOP timestamp from a ``+OK`` greeting's text, or ``None``.

    RFC 1939 §7 puts a msg-id style timestamp such as
    ``<1896.697170952@dbc.mtview.ca.us>`` in the greeting.  Only an
    unambiguous one is accepted: the text must contain exactly one ``<``,
    closed by a later ``>``, and the part between them must be non-empty
    printable ASCII containing ``@`` and no space.  Anything else (no
    timestamp, two of them, ``<>``, ``<a b@c>``, an unclosed ``<``, control
    characters) gives ``None``, so the caller falls back to another method
    instead of computing a digest over a guess.

    The scan uses only ``str.find`` and ``str`` predicates, so it is linear in
    the length of *text* whatever the input (no regular expression, hence no
    backtracking on adversarial input such as ``"<<<<..."``).
    """
    start = text.find("<")
    if start < 0:
        return None
    # A second "<" anywhere (a nested one, a second timestamp, a stray one)
    # makes the choice ambiguous: refuse rather than guess.
    if text.find("<", start + 1) >= 0:
        return None
    end = text.find(">", start + 1)
    if end < 0:
        return None
    inner = text[start + 1 : end]
    if "@" not in inner or " " in inner:
        return None
    # RFC 1939 §7 calls it a msg-id (RFC 822 §6): printable ASCII.  A
    # non-ASCII timestamp would have been decoded by a guess, and the digest
    # over a wrongly decoded timestamp would silently fail.
    if not (inner.isascii() and inner.isprintable()):
        return None
    return text[start : end + 1]

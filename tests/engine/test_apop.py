"""APOP (RFC 1939 §7): the digest and the greeting timestamp (pop3proto._apop)."""

from __future__ import annotations

import pytest

from pop3proto import (
    Apop,
    BadCommand,
    Greeting,
    LocalProtocolError,
)
from pop3proto._apop import apop_digest, parse_greeting_timestamp
from tests.helpers import (
    TIMESTAMP,
    first,
    new_client,
    new_server,
    secret_free,
)


def test_apop_digest_rfc1939_vector() -> None:
    assert (
        apop_digest("<1896.697170952@dbc.mtview.ca.us>", "tanstaaf")
        == "c4c9334bac560ecc979e58001b3e22fb"
    )


def test_apop_digest_depends_on_both_inputs() -> None:
    base = apop_digest("<1@x>", "secret")
    assert apop_digest("<2@x>", "secret") != base
    assert apop_digest("<1@x>", "secreT") != base
    assert len(base) == 32 and base == base.lower()


def test_apop_digest_utf8_secret() -> None:
    import hashlib

    expected = hashlib.md5("<1@x>pässwörd".encode()).hexdigest()
    assert apop_digest("<1@x>", "pässwörd") == expected


def test_apop_digest_unencodable_secret_is_not_quoted() -> None:
    with pytest.raises(ValueError) as info:
        apop_digest("<1@x>", "ab\ud800cd")
    secret_free(info.value, "\ud800", "ab")
    assert info.value.__context__ is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "POP3 server ready <1896.697170952@dbc.mtview.ca.us>",
            "<1896.697170952@dbc.mtview.ca.us>",
        ),
        ("Dovecot ready. <1a2b.3c4d@host>", "<1a2b.3c4d@host>"),
        ("+OK Dovecot ready. <1a2b.3c4d@host>", "<1a2b.3c4d@host>"),
        ("<a@b> trailing text", "<a@b>"),
        ("> stray closer first <a@b>", "<a@b>"),
        ("<a@b>>", "<a@b>"),
        ("POP3 ready", None),
        ("", None),
        ("two <a@b> <c@d>", None),
        ("<>", None),
        ("<a b@c>", None),
        ("<a@b", None),
        ("unclosed < and <a@b>", None),
        ("<<a@b>", None),
        ("<a<b@c>", None),
        ("<nodomain>", None),
        ("<a\t@b>", None),
        ("<a\x00@b>", None),
        ("<a@b\x7f>", None),
        ("<a@b\u00a0c>", None),
        ("<\u00e9t\u00e9@host>", None),
    ],
)
def test_parse_greeting_timestamp(text: str, expected: str | None) -> None:
    assert parse_greeting_timestamp(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<" * 1_000_000, None),
        ("<@" * 500_000, None),
        ("@<" * 500_000, None),
        ("<@>" * 333_333, None),
        (">" * 1_000_000, None),
        ("<" + "a" * 1_000_000, None),
        ("<" + "a" * 1_000_000 + "@b>", "<" + "a" * 1_000_000 + "@b>"),
        ("x" * 1_000_000 + "<1@h>", "<1@h>"),
    ],
    ids=["lt", "lt-at", "at-lt", "triples", "gt", "unclosed", "long-valid", "late"],
)
def test_parse_greeting_timestamp_huge_adversarial(text: str, expected: str | None) -> None:
    # Linear-time by construction; this just has to finish (no timing assert).
    assert parse_greeting_timestamp(text) == expected


# -- APOP needs a timestamp in the greeting (CONFORMANCE.md §3.7) ------------------


@pytest.mark.parametrize(
    ("text", "timestamp"),
    [
        ("POP3 ready " + TIMESTAMP, TIMESTAMP),
        ("POP3 ready", None),  # no <>
        ("ready <1@a> <2@b>", None),  # two of them
        ("ready <>", None),
        ("ready <a b@c>", None),
        ("ready <1@a", None),  # unclosed
    ],
)
def test_greeting_timestamps(text: str, timestamp: str | None) -> None:
    """A greeting with no ``<…>``, two, ``<>``, ``<a b@c>`` or an unclosed ``<`` has no
    timestamp, so both roles refuse APOP (CONFORMANCE.md §3.7)."""
    conn = new_client(b"+OK " + text.encode() + b"\r\n")
    assert conn.greeting == Greeting(text)
    assert conn.greeting.timestamp == timestamp
    srv = new_server(text)
    digest = "c4c9334bac560ecc979e58001b3e22fb"
    if timestamp is None:
        with pytest.raises(LocalProtocolError, match="APOP"):
            conn.send(Apop("mrose", digest))
        ev = first(srv, b"APOP mrose " + digest.encode() + b"\r\n")
        assert isinstance(ev, BadCommand) and ev.command == Apop("mrose", digest)
    else:
        assert conn.send(Apop("mrose", digest)) == b"APOP mrose " + digest.encode() + b"\r\n"
        assert first(srv, b"APOP mrose " + digest.encode() + b"\r\n") == Apop("mrose", digest)


def test_apop_without_timestamp() -> None:
    """APOP without a greeting timestamp: LocalProtocolError in the client, BadCommand in the
    server."""
    digest = "c4c9334bac560ecc979e58001b3e22fb"
    with pytest.raises(LocalProtocolError):
        new_client(b"+OK ready\r\n").send(Apop("mrose", digest))
    ev = first(new_server("ready"), b"APOP mrose " + digest.encode() + b"\r\n")
    assert isinstance(ev, BadCommand) and "APOP" in ev.reason

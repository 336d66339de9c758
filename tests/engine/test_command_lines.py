"""pop3proto.command_from_line: command text -> the event a server reads back."""

from __future__ import annotations

import pytest

import pop3proto as p


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("RETR 1", p.Retr(1)),
        (b"retr 1", p.Retr(1)),
        ("PASS two words", p.Pass("two words")),
        ("LIST", p.List()),
        (
            "APOP mrose C4C9334BAC560ECC979E58001B3E22FB",
            p.Apop("mrose", "c4c9334bac560ecc979e58001b3e22fb"),
        ),
        ("USER jürgen", p.User("jürgen")),
        ("XTND XMIT a", p.Extension("XTND", ("XMIT", "a"))),
        ("xlst", p.Extension("XLST")),
        ("last", p.Last()),
    ],
)
def test_lines_become_their_events(line: str | bytes, expected: p.Command) -> None:
    """Known keywords give their event, others an Extension; PASS keeps its spaces."""
    assert p.command_from_line(line) == expected


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("RETR one", "invalid message number"),
        ("RETR 01", "invalid message number"),
        ("USER two words", "USER takes one argument"),
        ("NOOP\r\nDELE 1", "control characters in command"),
        ("LIST  1", "empty parameter (extra space)"),
        ("TOOLONG", "unknown command"),
        ("", "empty command"),
    ],
)
def test_bad_lines_say_why(line: str, reason: str) -> None:
    """What the server role would refuse raises LocalProtocolError with its reason."""
    with pytest.raises(p.LocalProtocolError) as info:
        p.command_from_line(line)
    assert str(info.value) == reason


def test_utf8_credentials_only_when_allowed() -> None:
    """utf8=False refuses a non-ASCII user name, as a server outside UTF8 mode does."""
    with pytest.raises(p.LocalProtocolError, match="needs UTF8 mode"):
        p.command_from_line("USER jürgen", utf8=False)

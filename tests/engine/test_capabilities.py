"""Tests for the CAPA capability list (RFC 2449 §5-6, RFC 2595 §4, RFC 6856 §2-3)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pop3proto._capabilities import Capabilities
from pop3proto._errors import LocalProtocolError

DOVECOT = [
    "CAPA",
    "TOP",
    "UIDL",
    "RESP-CODES",
    "PIPELINING",
    "AUTH-RESP-CODE",
    "STLS",
    "USER",
    "SASL PLAIN LOGIN",
]

RFC2449_EXAMPLE = [
    "TOP",
    "USER",
    "SASL CRAM-MD5 KERBEROS_V4",
    "RESP-CODES",
    "LOGIN-DELAY 900",
    "PIPELINING",
    "EXPIRE 60",
    "UIDL",
    "IMPLEMENTATION Shlemazle-Plotz-v302",
]


def test_dovecot_every_property() -> None:
    caps = Capabilities.from_lines(DOVECOT)
    assert caps.entries == (
        ("CAPA", ()),
        ("TOP", ()),
        ("UIDL", ()),
        ("RESP-CODES", ()),
        ("PIPELINING", ()),
        ("AUTH-RESP-CODE", ()),
        ("STLS", ()),
        ("USER", ()),
        ("SASL", ("PLAIN", "LOGIN")),
    )
    assert caps.top is True
    assert caps.user is True
    assert caps.uidl is True
    assert caps.pipelining is True
    assert caps.resp_codes is True
    assert caps.auth_resp_code is True
    assert caps.stls is True
    assert caps.lang is False
    assert caps.utf8 is False
    assert caps.utf8_user is False
    assert caps.sasl == ("PLAIN", "LOGIN")
    assert caps.login_delay is None
    assert caps.login_delay_per_user is False
    assert caps.expire is None
    assert caps.expire_never is False
    assert caps.expire_per_user is False
    assert caps.implementation is None
    assert "CAPA" in caps
    assert "capa" in caps
    assert "LANG" not in caps
    assert caps.get("SASL") == ("PLAIN", "LOGIN")
    assert caps.get("TOP") == ()
    assert caps.get("EXPIRE") is None
    assert caps.as_dict() == {
        "CAPA": [],
        "TOP": [],
        "UIDL": [],
        "RESP-CODES": [],
        "PIPELINING": [],
        "AUTH-RESP-CODE": [],
        "STLS": [],
        "USER": [],
        "SASL": ["PLAIN", "LOGIN"],
    }
    assert caps.to_lines() == DOVECOT


def test_rfc2449_example() -> None:
    caps = Capabilities.from_lines(RFC2449_EXAMPLE)
    assert caps.top and caps.user and caps.resp_codes and caps.pipelining and caps.uidl
    assert not caps.stls
    assert caps.sasl == ("CRAM-MD5", "KERBEROS_V4")
    assert caps.login_delay == 900
    assert caps.login_delay_per_user is False
    assert caps.expire == 60
    assert caps.expire_never is False
    assert caps.expire_per_user is False
    assert caps.implementation == "Shlemazle-Plotz-v302"
    assert caps.to_lines() == RFC2449_EXAMPLE
    # A server building the same list gets the same object.
    built = Capabilities.build(
        "TOP",
        "USER",
        ("SASL", "CRAM-MD5", "KERBEROS_V4"),
        "RESP-CODES",
        ["LOGIN-DELAY", "900"],
        "PIPELINING",
        ("EXPIRE", "60"),
        "UIDL",
        ("IMPLEMENTATION", "Shlemazle-Plotz-v302"),
    )
    assert built == caps


@pytest.mark.parametrize(
    ("line", "expire", "never", "per_user"),
    [
        ("EXPIRE NEVER", None, True, False),
        ("EXPIRE never", None, True, False),
        ("EXPIRE 0", 0, False, False),
        ("EXPIRE 30 USER", 30, False, True),
        ("EXPIRE NEVER USER", None, True, True),
        ("EXPIRE 30 user", 30, False, True),
        ("EXPIRE", None, False, False),
        ("EXPIRE soon", None, False, False),
        ("EXPIRE -1", None, False, False),
        ("EXPIRE +5", None, False, False),
        ("EXPIRE 1_0", None, False, False),
        ("EXPIRE \u0661\u0662", None, False, False),
        ("EXPIRE USER", None, False, False),
    ],
)
def test_expire(line: str, expire: int | None, never: bool, per_user: bool) -> None:
    caps = Capabilities.from_lines([line])
    assert caps.expire == expire
    assert caps.expire_never is never
    assert caps.expire_per_user is per_user


def test_expire_absent() -> None:
    caps = Capabilities.from_lines(["TOP"])
    assert caps.expire is None
    assert not caps.expire_never
    assert not caps.expire_per_user


@pytest.mark.parametrize(
    ("line", "delay", "per_user"),
    [
        ("LOGIN-DELAY 900 USER", 900, True),
        ("LOGIN-DELAY 900", 900, False),
        ("login-delay 0900 user", 900, True),
        ("LOGIN-DELAY abc", None, False),
        ("LOGIN-DELAY abc USER", None, True),
        ("LOGIN-DELAY", None, False),
        ("LOGIN-DELAY USER", None, False),
        ("LOGIN-DELAY 9.5", None, False),
    ],
)
def test_login_delay(line: str, delay: int | None, per_user: bool) -> None:
    caps = Capabilities.from_lines([line])
    assert caps.login_delay == delay
    assert caps.login_delay_per_user is per_user


def test_huge_numbers_do_not_crash() -> None:
    # Past 4300 digits int() raises ValueError (CPython int_max_str_digits).
    caps = Capabilities.from_lines(["LOGIN-DELAY " + "9" * 10_000, "EXPIRE " + "1" * 5000])
    assert caps.login_delay is None
    assert caps.expire is None
    assert Capabilities.from_lines(["EXPIRE " + "9" * 18]).expire == 10**18 - 1
    assert Capabilities.from_lines(["EXPIRE " + "9" * 19]).expire is None


def test_lower_case_tags() -> None:
    caps = Capabilities.from_lines(["top", "Uidl", "sasl plain cram-md5", "stls", "utf8 user"])
    assert caps.top and caps.uidl and caps.stls and caps.utf8 and caps.utf8_user
    assert caps.sasl == ("PLAIN", "CRAM-MD5")
    assert "TOP" in caps and "ToP" in caps
    assert caps.get("SASL") == ("plain", "cram-md5")  # params kept as given
    # Tags are kept as given, like poplib.
    assert caps.as_dict() == {
        "top": [],
        "Uidl": [],
        "sasl": ["plain", "cram-md5"],
        "stls": [],
        "utf8": ["user"],
    }


def test_case_folding_is_ascii_only() -> None:
    # "\u017f".upper() == "S": a non-ASCII tag must not pass for STLS.
    caps = Capabilities.from_lines(["STL\u017f", "\u0131mplementation x"])
    assert not caps.stls
    assert "STLS" not in caps
    assert caps.implementation is None


def test_tabs_and_double_spaces() -> None:
    caps = Capabilities.from_lines(["SASL  PLAIN\tLOGIN ", "\tTOP", "  ", "", "EXPIRE\t\t30  USER"])
    assert caps.entries == (
        ("SASL", ("PLAIN", "LOGIN")),
        ("TOP", ()),
        ("EXPIRE", ("30", "USER")),
    )
    assert caps.expire == 30 and caps.expire_per_user


def test_empty_capa() -> None:
    for caps in (Capabilities.from_lines([]), Capabilities(()), Capabilities.build()):
        assert caps.entries == ()
        assert caps.to_lines() == []
        assert caps.as_dict() == {}
        assert not caps.top and not caps.user and not caps.stls
        assert caps.sasl == ()
        assert caps.login_delay is None and caps.expire is None
        assert caps.implementation is None
        assert "TOP" not in caps


def test_implementation_with_spaces() -> None:
    caps = Capabilities.from_lines(["IMPLEMENTATION  Foo  POP3 server   v1.2 "])
    assert caps.implementation == "Foo POP3 server v1.2"
    assert Capabilities.from_lines(["IMPLEMENTATION"]).implementation == ""
    built = Capabilities.build(("IMPLEMENTATION", "Foo", "POP3", "server"))
    assert built.to_lines() == ["IMPLEMENTATION Foo POP3 server"]
    assert built.implementation == "Foo POP3 server"


def test_utf8_and_lang() -> None:
    caps = Capabilities.from_lines(["UTF8 USER", "LANG"])
    assert caps.utf8 and caps.utf8_user and caps.lang
    plain = Capabilities.from_lines(["UTF8"])
    assert plain.utf8 and not plain.utf8_user and not plain.lang
    assert not Capabilities.from_lines(["USER"]).utf8_user


def test_unknown_tags_preserved() -> None:
    lines = ["X-FOO bar baz", "TOP", "XTND XMIT"]
    caps = Capabilities.from_lines(lines)
    assert caps.get("x-foo") == ("bar", "baz")
    assert caps.as_dict()["XTND"] == ["XMIT"]
    assert caps.to_lines() == lines


def test_duplicates_get_first_as_dict_last() -> None:
    caps = Capabilities.from_lines(["SASL PLAIN", "sasl LOGIN", "SASL CRAM-MD5"])
    assert caps.get("SASL") == ("PLAIN",)
    assert caps.sasl == ("PLAIN",)
    assert caps.as_dict() == {"SASL": ["CRAM-MD5"], "sasl": ["LOGIN"]}


def test_contains_non_str() -> None:
    caps = Capabilities.from_lines(DOVECOT)
    assert 1 not in caps
    assert None not in caps
    assert b"TOP" not in caps


def test_from_lines_tolerates_odd_content() -> None:
    # Nothing here is valid for sending, but parsing received data never raises.
    lines = [".HIDDEN", "A.B c", "X " + "y" * 2000, "TAG \x00\x01", "\u00e9t\u00e9 \u00e0"]
    caps = Capabilities.from_lines(iter(lines))
    assert [tag for tag, _ in caps.entries] == [".HIDDEN", "A.B", "X", "TAG", "\u00e9t\u00e9"]
    assert caps.get("x") == ("y" * 2000,)


PROPERTIES = (
    "top",
    "user",
    "uidl",
    "pipelining",
    "resp_codes",
    "auth_resp_code",
    "stls",
    "lang",
    "utf8",
    "utf8_user",
    "sasl",
    "login_delay",
    "login_delay_per_user",
    "expire",
    "expire_never",
    "expire_per_user",
    "implementation",
)


@given(st.lists(st.text()))
def test_from_lines_never_raises(lines: list[str]) -> None:
    caps = Capabilities.from_lines(lines)
    assert len(caps.entries) == sum(1 for line in lines if line.split())
    # Every accessor is total on received data.
    caps.as_dict()
    caps.to_lines()
    for name in PROPERTIES:
        getattr(caps, name)


# -- validation on construction ----------------------------------------------


@pytest.mark.parametrize(
    "entries",
    [
        ((".", ()),),
        ((".TOP", ()),),
        (("A.B", ()),),
        (("", ()),),
        (("TO P", ()),),
        (("TOP\r\n", ()),),
        (("T\x7f", ()),),
        (("\u00e9", ()),),
        (("SASL", ("PLAIN\r\nDELE 1",)),),
        (("SASL", ("PLAIN\n",)),),
        (("SASL", ("PLAIN\r",)),),
        (("SASL", ("PL\x00AIN",)),),
        (("SASL", ("PL\tAIN",)),),
        (("SASL", ("PLAIN LOGIN",)),),
        (("SASL", ("",)),),
        (("SASL", ("\u00a0",)),),
        (("SASL", ("\u2028",)),),
        (("SASL", ("\x85",)),),
        (("SASL", "PLAIN"),),
        (("SASL", (1,)),),
        ((1, ()),),
        (("TOP",),),
        (("TOP", (), ()),),
        ("TOP",),
    ],
)
def test_constructor_rejects(entries: object) -> None:
    with pytest.raises(LocalProtocolError):
        Capabilities(entries)  # type: ignore[arg-type]


def test_constructor_rejects_non_sequence() -> None:
    with pytest.raises(LocalProtocolError):
        Capabilities({"TOP": ()})  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError):
        Capabilities(None)  # type: ignore[arg-type]


def test_line_length_limit() -> None:
    # 510 octets + CRLF = 512 is the limit (RFC 2449 §5).
    ok = Capabilities.build(("IMPLEMENTATION", "x" * (510 - len("IMPLEMENTATION "))))
    assert len(ok.to_lines()[0]) == 510
    with pytest.raises(LocalProtocolError):
        Capabilities.build(("IMPLEMENTATION", "x" * (511 - len("IMPLEMENTATION "))))
    with pytest.raises(LocalProtocolError):
        Capabilities.build(("X", *(["y"] * 300)))  # 600 octets
    with pytest.raises(LocalProtocolError):
        Capabilities.build("T" * 511)
    # Octets, not characters: 2-octet UTF-8 characters count twice.
    Capabilities.build(("IMPLEMENTATION", "\u00e9" * 247))  # 15 + 494 = 509 octets
    with pytest.raises(LocalProtocolError):
        Capabilities.build(("IMPLEMENTATION", "\u00e9" * 248))  # 511 octets


def test_constructor_accepts_lists() -> None:
    caps = Capabilities([["SASL", ["PLAIN", "LOGIN"]], ("TOP", [])])  # type: ignore[arg-type]
    assert caps.entries == (("SASL", ("PLAIN", "LOGIN")), ("TOP", ()))
    assert isinstance(caps.entries, tuple)
    assert all(isinstance(e, tuple) and isinstance(e[1], tuple) for e in caps.entries)
    hash(caps)


def test_constructor_accepts_utf8_params() -> None:
    caps = Capabilities((("IMPLEMENTATION", ("S\u00fc\u00dfe-POP3", "\u2603")),))
    assert caps.to_lines() == ["IMPLEMENTATION S\u00fc\u00dfe-POP3 \u2603"]


@pytest.mark.parametrize("item", [(), [], ("SASL", "PL AIN"), ("SASL\r\n",), "TOP UIDL", 5])
def test_build_rejects(item: object) -> None:
    with pytest.raises(LocalProtocolError):
        Capabilities.build(item)  # type: ignore[arg-type]


def test_frozen() -> None:
    caps = Capabilities.build("TOP")
    with pytest.raises(AttributeError):
        caps.entries = ()  # type: ignore[misc]


# -- round trip --------------------------------------------------------------

TAG_CHARS = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) != ".")
tags_st = st.text(alphabet=TAG_CHARS, min_size=1, max_size=20)
params_st = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp")),
    min_size=1,
    max_size=15,
)
entries_st = st.lists(
    st.tuples(tags_st, st.lists(params_st, max_size=8).map(tuple)), max_size=12
).map(tuple)


@given(entries_st)
def test_round_trip(entries: tuple[tuple[str, tuple[str, ...]], ...]) -> None:
    caps = Capabilities(entries)
    lines = caps.to_lines()
    assert all(len(line.encode("utf-8")) <= 510 for line in lines)
    assert not any(line.startswith(".") for line in lines)
    assert Capabilities.from_lines(lines) == caps
    again = Capabilities.from_lines(lines)
    assert again.entries == entries
    assert hash(again) == hash(caps)


@pytest.mark.parametrize(
    ("line", "pipelining"), [("PIPELINING", True), ("PIPELINE", True), ("PIPE", False)]
)
def test_pipeline_spelling_counts_as_pipelining(line: str, pipelining: bool) -> None:
    """CONFORMANCE.md §3.9: some servers advertise PIPELINE."""
    assert Capabilities.from_lines(["TOP", line]).pipelining is pipelining

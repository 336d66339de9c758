"""Event validation (pop3proto._events, pop3proto._util).

Every event is validated on construction: a bad field type or value raises
LocalProtocolError at once (never TypeError/ValueError, never later at send
time).  Secrets never appear in repr().
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import cast

import pytest

from pop3proto import (
    IN_USE,
    Apop,
    Auth,
    BadCommand,
    Capa,
    Capabilities,
    CapaOk,
    Command,
    ConnectionClosed,
    Dele,
    Err,
    Event,
    Extension,
    Greeting,
    Lang,
    LangOk,
    Last,
    LastOk,
    List,
    ListEntryOk,
    ListOk,
    LocalProtocolError,
    MessageData,
    MessageEnd,
    MessageStart,
    Noop,
    Ok,
    Pass,
    Quit,
    Response,
    Retr,
    Rset,
    SaslCancel,
    SaslChallenge,
    SaslResponse,
    Stat,
    StatOk,
    Stls,
    Top,
    Uidl,
    UidlEntryOk,
    UidlOk,
    User,
    Utf8,
)
from pop3proto._util import check_number, check_text, check_token, is_ascii

DIGEST = "c4c9334bac560ecc979e58001b3e22fb"

# ---------------------------------------------------------------------------
# Valid construction and normalisation
# ---------------------------------------------------------------------------

VALID: list[Event] = [
    User("mrose"),
    User("jös"),  # non-ASCII is allowed here; the connection decides (RFC 6856 §2.2)
    Pass(" pass word "),
    Apop("mrose", DIGEST),
    Auth("PLAIN"),
    Auth("SCRAM-SHA-256", b""),
    Stat(),
    List(),
    List(1),
    Retr(1),
    Dele(1),
    Noop(),
    Rset(),
    Quit(),
    Top(1, 0),
    Uidl(),
    Uidl(99999999999999999999),
    Capa(),
    Stls(),
    Utf8(),
    Lang(),
    Lang("*"),
    Extension("XLST"),
    Last(),
    LastOk(0),
    BadCommand(b"XX", "unknown command"),
    BadCommand(b"STAT", "not now", Stat()),
    SaslChallenge(b""),
    SaslResponse(b"\0a\0b"),
    SaslCancel(),
    Greeting(""),
    Greeting("ready <1@x>"),
    Ok(),
    Ok("x", IN_USE),
    Err(),
    Err("x", IN_USE),
    StatOk(0, 0),
    ListOk({}),
    ListOk({1: 0}, "text"),
    ListEntryOk(1, 0),
    UidlOk({1: "u" * 70}),
    UidlEntryOk(1, "!~"),
    CapaOk(Capabilities(())),
    LangOk(()),
    LangOk((("en", ""),)),
    MessageStart(),
    MessageStart("120 octets", IN_USE),
    MessageData(b""),
    MessageEnd(),
    ConnectionClosed(),
    ConnectionClosed(outcome_unknown=True),
]


@pytest.mark.parametrize("event", VALID, ids=repr)
def test_valid_events_are_frozen_and_hashable_where_possible(event: Event) -> None:
    assert isinstance(event, Event)
    # Event is a base class; every concrete event is a dataclass.
    fields = dataclasses.fields(event)  # type: ignore[arg-type]
    if fields:
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(event, fields[0].name, getattr(event, fields[0].name))
    assert event == dataclasses.replace(event)  # type: ignore[type-var]
    assert not hasattr(event, "__dict__")  # slotted


def test_event_families() -> None:
    for cmd in (User("a"), Stat(), Extension("XLST"), BadCommand(b"x", "y")):
        assert isinstance(cmd, Command) and not isinstance(cmd, Response)
    for resp in (Ok(), Greeting(), SaslChallenge(b""), MessageData(b"")):
        assert isinstance(resp, Response) and not isinstance(resp, Command)
    for other in (SaslResponse(b""), SaslCancel(), ConnectionClosed()):
        assert not isinstance(other, (Command, Response))


def test_keywords() -> None:
    assert [c.keyword for c in (User, Pass, Apop, Auth, Stat, List, Retr, Dele)] == [
        "USER",
        "PASS",
        "APOP",
        "AUTH",
        "STAT",
        "LIST",
        "RETR",
        "DELE",
    ]
    assert [c.keyword for c in (Noop, Rset, Quit, Top, Uidl, Capa, Stls, Utf8, Lang)] == [
        "NOOP",
        "RSET",
        "QUIT",
        "TOP",
        "UIDL",
        "CAPA",
        "STLS",
        "UTF8",
        "LANG",
    ]


def test_normalisation() -> None:
    assert Auth("scram-sha-1").mechanism == "SCRAM-SHA-1"
    # Lists where the fields want tuples, on purpose: the events normalise them.
    ext = Extension("xtnd", cast("tuple[str, ...]", ["XLST", "Subject"]))
    assert ext.name == "XTND" and ext.arguments == ("XLST", "Subject")
    assert ListOk({2: 5, 1: 3}).sizes == {2: 5, 1: 3}
    assert list(ListOk({2: 5, 1: 3}).sizes) == [2, 1]  # listing order kept
    assert type(UidlOk({1: "a"}).uids) is dict
    langs = LangOk(cast("tuple[tuple[str, str], ...]", [["en", "English"]]))
    assert langs.languages == (("en", "English"),)


def test_greeting_timestamp() -> None:
    assert Greeting("POP3 ready <1896.697170952@dbc.mtview.ca.us>").timestamp == (
        "<1896.697170952@dbc.mtview.ca.us>"
    )
    for text in ("ready", "<a@b> <c@d>", "<>", "<a b@c>", "<a@b", "<ab>"):
        assert Greeting(text).timestamp is None, text


def test_repr_hides_secrets() -> None:
    """Passwords and SASL data never appear in repr() (logs)."""
    assert "hunter2" not in repr(Pass("hunter2"))
    assert repr(Pass("hunter2")) == "Pass()"
    assert "hunter2" not in repr(SaslResponse(b"\0user\0hunter2"))
    assert repr(SaslResponse(b"\0user\0hunter2")) == "SaslResponse()"
    assert "hunter2" not in repr(Auth("PLAIN", b"\0user\0hunter2"))
    assert repr(Auth("PLAIN", b"x")) == "Auth(mechanism='PLAIN')"
    # ... while equality still sees them.
    assert Pass("a") != Pass("b") and SaslResponse(b"a") != SaslResponse(b"b")


# ---------------------------------------------------------------------------
# Invalid construction
# ---------------------------------------------------------------------------

# Each entry builds an event from bad fields on purpose; the wrong types are what
# is tested, hence the ``type: ignore`` comments.
INVALID: list[tuple[str, Callable[[], object]]] = [
    ("User int", lambda: User(1)),  # type: ignore[arg-type]
    ("User empty", lambda: User("")),
    ("User space", lambda: User("a b")),
    ("User tab", lambda: User("a\tb")),
    ("User CRLF", lambda: User("a\r\nQUIT")),
    ("User NUL", lambda: User("a\x00")),
    ("User NBSP", lambda: User("a\u00a0b")),
    ("User line separator", lambda: User("a\u2028b")),
    ("Pass bytes", lambda: Pass(b"x")),  # type: ignore[arg-type]
    ("Pass empty", lambda: Pass("")),
    ("Pass CRLF", lambda: Pass("x\r\nDELE 1")),
    ("Pass NUL", lambda: Pass("x\x00")),
    ("Pass tab", lambda: Pass("x\ty")),
    ("Apop upper digest", lambda: Apop("a", DIGEST.upper())),
    ("Apop short digest", lambda: Apop("a", DIGEST[:-1])),
    ("Apop digest newline", lambda: Apop("a", DIGEST + "\n")),
    ("Apop digest None", lambda: Apop("a", None)),  # type: ignore[arg-type]
    ("Apop bad name", lambda: Apop("a b", DIGEST)),
    ("Auth int", lambda: Auth(1)),  # type: ignore[arg-type]
    ("Auth empty", lambda: Auth("")),
    ("Auth bad char", lambda: Auth("PL@IN")),
    ("Auth too long", lambda: Auth("A" * 21)),
    ("Auth non-ASCII", lambda: Auth("PLAİN")),
    ("Auth str response", lambda: Auth("PLAIN", "x")),  # type: ignore[arg-type]
    ("Auth bytearray response", lambda: Auth("PLAIN", bytearray(b"x"))),  # type: ignore[arg-type]
    ("List 0", lambda: List(0)),
    ("List negative", lambda: List(-1)),
    ("List str", lambda: List("1")),  # type: ignore[arg-type]
    ("List bool", lambda: List(True)),
    ("List float", lambda: List(1.0)),  # type: ignore[arg-type]
    ("Retr 0", lambda: Retr(0)),
    ("Dele None", lambda: Dele(None)),  # type: ignore[arg-type]
    ("Top negative lines", lambda: Top(1, -1)),
    ("Top 0", lambda: Top(0, 1)),
    ("Top bool lines", lambda: Top(1, False)),
    ("Uidl 0", lambda: Uidl(0)),
    ("Lang empty", lambda: Lang("")),
    ("Lang space", lambda: Lang("en us")),
    ("Lang non-ASCII", lambda: Lang("fr-ç")),
    ("Lang int", lambda: Lang(1)),  # type: ignore[arg-type]
    ("Extension short", lambda: Extension("XT")),
    ("Extension long", lambda: Extension("XTNDX")),
    ("Extension bad first char", lambda: Extension("-XTN")),
    ("Extension space", lambda: Extension("X Y")),
    ("Extension non-ASCII", lambda: Extension("XTñ")),
    ("Extension int", lambda: Extension(1)),  # type: ignore[arg-type]
    ("Extension bad arg", lambda: Extension("XTND", ("a b",))),
    ("Extension empty arg", lambda: Extension("XTND", ("",))),
    ("Extension int arg", lambda: Extension("XTND", (1,))),  # type: ignore[arg-type]
    ("Extension multiline int", lambda: Extension("XTND", (), 1)),  # type: ignore[arg-type]
    ("BadCommand str line", lambda: BadCommand("XX", "r")),  # type: ignore[arg-type]
    ("BadCommand bytearray", lambda: BadCommand(bytearray(b"XX"), "r")),  # type: ignore[arg-type]
    ("BadCommand reason CRLF", lambda: BadCommand(b"XX", "r\r\n")),
    ("BadCommand reason bytes", lambda: BadCommand(b"XX", b"r")),  # type: ignore[arg-type]
    ("SaslChallenge str", lambda: SaslChallenge("x")),  # type: ignore[arg-type]
    ("SaslResponse str", lambda: SaslResponse("x")),  # type: ignore[arg-type]
    ("SaslResponse memoryview", lambda: SaslResponse(memoryview(b"x"))),  # type: ignore[arg-type]
    ("Greeting bytes", lambda: Greeting(b"hi")),  # type: ignore[arg-type]
    ("Greeting LF", lambda: Greeting("hi\nthere")),
    ("Ok CR", lambda: Ok("a\rb")),
    ("Ok NUL", lambda: Ok("a\x00")),
    ("Ok str code", lambda: Ok("x", "IN-USE")),  # type: ignore[arg-type]
    ("Err None text", lambda: Err(None)),  # type: ignore[arg-type]
    ("Err str code", lambda: Err("x", "SYS/TEMP")),  # type: ignore[arg-type]
    ("StatOk negative", lambda: StatOk(-1, 0)),
    ("StatOk float", lambda: StatOk(1, 1.5)),  # type: ignore[arg-type]
    ("StatOk bool", lambda: StatOk(True, 0)),
    ("ListOk list", lambda: ListOk([(1, 2)])),  # type: ignore[arg-type]
    ("ListOk number 0", lambda: ListOk({0: 1})),
    ("ListOk str key", lambda: ListOk({"1": 1})),  # type: ignore[dict-item]
    ("ListOk negative size", lambda: ListOk({1: -1})),
    ("ListOk str size", lambda: ListOk({1: "1"})),  # type: ignore[dict-item]
    ("ListOk text CRLF", lambda: ListOk({}, "a\r\n")),
    ("ListEntryOk 0", lambda: ListEntryOk(0, 1)),
    ("ListEntryOk negative size", lambda: ListEntryOk(1, -1)),
    ("UidlOk None", lambda: UidlOk(None)),  # type: ignore[arg-type]
    ("UidlOk 71", lambda: UidlOk({1: "u" * 71})),
    ("UidlOk empty uid", lambda: UidlOk({1: ""})),
    ("UidlOk space", lambda: UidlOk({1: "a b"})),
    ("UidlOk DEL", lambda: UidlOk({1: "a\x7f"})),
    ("UidlOk non-ASCII", lambda: UidlOk({1: "é"})),
    ("UidlOk int uid", lambda: UidlOk({1: 5})),  # type: ignore[dict-item]
    ("UidlOk text bytes", lambda: UidlOk({}, b"")),  # type: ignore[arg-type]
    ("UidlEntryOk 71", lambda: UidlEntryOk(1, "u" * 71)),
    ("UidlEntryOk 0", lambda: UidlEntryOk(0, "a")),
    ("CapaOk dict", lambda: CapaOk({"TOP": []})),  # type: ignore[arg-type]
    ("CapaOk text LF", lambda: CapaOk(Capabilities(()), "\n")),
    ("LangOk dot tag", lambda: LangOk(((".en", ""),))),
    ("LangOk empty tag", lambda: LangOk((("", "x"),))),
    ("LangOk space tag", lambda: LangOk((("e n", "x"),))),
    ("LangOk desc CRLF", lambda: LangOk((("en", "a\r\nb"),))),
    ("LangOk desc int", lambda: LangOk((("en", 1),))),  # type: ignore[arg-type]
    ("LangOk text CR", lambda: LangOk((), "\r")),
    ("MessageStart CR", lambda: MessageStart("\r")),
    ("MessageStart code", lambda: MessageStart("", 1)),  # type: ignore[arg-type]
    ("MessageData str", lambda: MessageData("x")),  # type: ignore[arg-type]
    ("MessageData bytearray", lambda: MessageData(bytearray())),  # type: ignore[arg-type]
]


@pytest.mark.parametrize("make", [m for _, m in INVALID], ids=[n for n, _ in INVALID])
def test_invalid_fields_raise_local_protocol_error(make: Callable[[], object]) -> None:
    with pytest.raises(LocalProtocolError):
        make()


INVALID_LATER: list[tuple[str, Callable[[], object]]] = [
    # Found while writing these tests; the engine now validates them.
    ("LangOk None", lambda: LangOk(None)),  # type: ignore[arg-type]
    ("LangOk str", lambda: LangOk("en")),  # type: ignore[arg-type]
    ("LangOk 1-tuple", lambda: LangOk((("en",),))),  # type: ignore[arg-type]
    ("LangOk 3-tuple", lambda: LangOk((("en", "x", "y"),))),  # type: ignore[arg-type]
    ("LangOk str pair", lambda: LangOk(("en",))),  # type: ignore[arg-type]
    ("Extension arguments None", lambda: Extension("XTND", None)),  # type: ignore[arg-type]
    ("Extension arguments str", lambda: Extension("XTND", "XLST")),  # type: ignore[arg-type]
    ("Extension known keyword", lambda: Extension("stat")),
    ("Extension known keyword AUTH", lambda: Extension("AUTH", ("PLAIN",))),
    ("BadCommand command str", lambda: BadCommand(b"x", "r", "Stat")),  # type: ignore[arg-type]
    ("BadCommand command nested", lambda: BadCommand(b"x", "r", BadCommand(b"y", "r"))),
    ("ConnectionClosed str", lambda: ConnectionClosed("yes")),  # type: ignore[arg-type]
    ("ConnectionClosed int", lambda: ConnectionClosed(1)),  # type: ignore[arg-type]
    ("SaslChallenge malformed int", lambda: SaslChallenge(b"", 1)),  # type: ignore[arg-type]
    ("Ok lone surrogate", lambda: Ok("\udc80")),
    ("User lone surrogate", lambda: User("a\udc80")),
]


@pytest.mark.parametrize("make", [m for _, m in INVALID_LATER], ids=[n for n, _ in INVALID_LATER])
def test_invalid_fields_found_later_raise_local_protocol_error(make: Callable[[], object]) -> None:
    """The events module promises: "constructing an event with a bad field raises
    LocalProtocolError at once" (no TypeError/ValueError, nothing silently accepted)."""
    with pytest.raises(LocalProtocolError):
        make()


def test_malformed_challenge_flag() -> None:
    """A client reports an undecodable challenge as SaslChallenge(malformed=True)."""
    assert SaslChallenge(b"=AAA", malformed=True).malformed
    assert not SaslChallenge(b"").malformed
    assert SaslChallenge(b"x", malformed=True) != SaslChallenge(b"x")


# ---------------------------------------------------------------------------
# _util helpers
# ---------------------------------------------------------------------------


def test_util_is_ascii() -> None:
    assert is_ascii("") and is_ascii("USER a\x7f")
    assert not is_ascii("é")


def test_util_check_text() -> None:
    assert check_text("any text é", "x") == "any text é"
    assert check_text("", "x") == ""
    for bad in ("\r", "\n", "\x00"):
        with pytest.raises(LocalProtocolError, match="CR, LF or NUL"):
            check_text("a" + bad, "x")
    with pytest.raises(LocalProtocolError, match="must be str, not int"):
        check_text(1, "x")


def test_util_check_token() -> None:
    assert check_token("jös", "x") == "jös"
    assert check_token("", "x", allow_empty=True) == ""
    with pytest.raises(LocalProtocolError, match="empty"):
        check_token("", "x")
    for bad in ("a b", "a\tb", "a\u00a0b", "a\x7f", "a\u2028"):
        with pytest.raises(LocalProtocolError, match="printable"):
            check_token(bad, "x")
    with pytest.raises(LocalProtocolError, match="must be str"):
        check_token(b"a", "x")


def test_util_check_number() -> None:
    assert check_number(1, "n") == 1
    assert check_number(0, "n", minimum=0) == 0
    with pytest.raises(LocalProtocolError, match=">= 1, got 0"):
        check_number(0, "n")
    for bad in (True, 1.0, "1", None):
        with pytest.raises(LocalProtocolError, match="must be int"):
            check_number(bad, "n")


# ---------------------------------------------------------------------------
# What a client cannot even build (CONFORMANCE.md §3.4)
# ---------------------------------------------------------------------------


def test_arguments_client_cannot_build_bad_arguments() -> None:
    """Bad message numbers and empty or spaced credentials cannot even be built as events."""
    for make in (
        lambda: List(0),
        lambda: List(-1),
        lambda: Top(1, -1),
        lambda: Retr(0),
        lambda: Pass(""),
        lambda: User(""),
        lambda: User("a b"),
    ):
        with pytest.raises(LocalProtocolError):
            make()

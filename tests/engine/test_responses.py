"""Extended response codes (RFC 2449 §8, RFC 3206, RFC 6856 §5), and status lines as a
client connection reads them (CONFORMANCE.md §3.6, §4)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pop3proto import (
    NEED_DATA,
    Err,
    Greeting,
    MessageEnd,
    MessageStart,
    Noop,
    Ok,
    Pass,
    RemoteProtocolError,
    Retr,
    State,
    User,
)
from pop3proto._errors import LocalProtocolError
from pop3proto._responses import (
    AUTH,
    IN_USE,
    LOGIN_DELAY,
    SYS_PERM,
    SYS_TEMP,
    UTF8,
    ResponseCode,
    format_status_text,
    split_response_code,
)
from tests.helpers import (
    GREETING_TEXT,
    ConnectionPair,
    ask,
    client_tx,
    first,
    new_client,
    server_tx,
)

# rchar (RFC 2449 §3), minus DEL.
RCHARS = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in "/]")
levels_st = st.lists(st.text(alphabet=RCHARS, min_size=1, max_size=12), min_size=1, max_size=5)
codes_st = levels_st.map(lambda levels: ResponseCode(tuple(levels)))
# Anything that can legally follow a status word on one line.
line_text_st = st.text().filter(lambda t: not any(c in t for c in "\r\n\x00"))


# -- ResponseCode ------------------------------------------------------------


def test_constants() -> None:
    assert IN_USE.levels == ("IN-USE",)
    assert LOGIN_DELAY.levels == ("LOGIN-DELAY",)
    assert SYS_TEMP.levels == ("SYS", "TEMP")
    assert SYS_PERM.levels == ("SYS", "PERM")
    assert AUTH.levels == ("AUTH",)
    assert UTF8.levels == ("UTF8",)


def test_parse_upper_cases_and_str() -> None:
    code = ResponseCode.parse("sys/temp")
    assert code.levels == ("SYS", "TEMP")
    assert str(code) == "SYS/TEMP"
    assert code == SYS_TEMP
    assert hash(code) == hash(SYS_TEMP)


def test_constructor_upper_cases_and_accepts_list() -> None:
    code = ResponseCode(["in-use"])  # type: ignore[arg-type]
    assert code.levels == ("IN-USE",)
    assert isinstance(code.levels, tuple)
    assert code == IN_USE


def test_frozen() -> None:
    with pytest.raises(AttributeError):
        SYS_TEMP.levels = ("X",)  # type: ignore[misc]


@pytest.mark.parametrize(
    "levels",
    [(), ("",), ("A", ""), ("A B",), ("A/B",), ("A]",), ("\x7f",), ("\t",), ("é",), ("A\r\n",)],
)
def test_constructor_rejects_invalid_levels(levels: tuple[str, ...]) -> None:
    with pytest.raises(LocalProtocolError):
        ResponseCode(levels)


def test_constructor_rejects_bare_string_and_non_str() -> None:
    with pytest.raises(LocalProtocolError, match="parse"):
        ResponseCode("SYS")  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError):
        ResponseCode((1,))  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError):
        ResponseCode(None)  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["", "/", "A/", "/A", "A//B", "[SYS/TEMP]", "A B", "SYS]"])
def test_parse_rejects_invalid(text: str) -> None:
    with pytest.raises(LocalProtocolError):
        ResponseCode.parse(text)


def test_parse_rejects_non_str() -> None:
    with pytest.raises(LocalProtocolError):
        ResponseCode.parse(b"SYS")  # type: ignore[arg-type]


def test_open_bracket_is_a_legal_rchar() -> None:
    # "[" is 0x5B, inside rchar's %x30-5C range.
    assert ResponseCode.parse("[X").levels == ("[X",)
    assert split_response_code("[[X] t") == (ResponseCode(("[X",)), "t")


def test_matches_prefix_case_insensitive() -> None:
    code = ResponseCode.parse("SYS/TEMP/FOO")
    assert code.matches("SYS/TEMP")
    assert code.matches("sys")
    assert code.matches(SYS_TEMP)
    assert code.matches("Sys/Temp/Foo")
    assert not code.matches(SYS_PERM)
    assert not code.matches("SYS/TEMP/FOO/BAR")
    assert not code.matches("SYSX")
    assert not SYS_TEMP.matches("SYS/TEMP/FOO")
    with pytest.raises(LocalProtocolError):
        code.matches("SYS//TEMP")


@pytest.mark.parametrize(
    ("text", "known"),
    [
        ("IN-USE", "IN-USE"),
        ("in-use", "IN-USE"),
        ("LOGIN-DELAY", "LOGIN-DELAY"),
        ("SYS/TEMP", "SYS/TEMP"),
        ("sys/perm", "SYS/PERM"),
        ("SYS/TEMP/FOO", "SYS/TEMP"),
        ("SYS/TEMP/FOO/BAR", "SYS/TEMP"),
        ("AUTH", "AUTH"),
        ("AUTH/EXPIRED", "AUTH"),
        ("UTF8", "UTF8"),
        ("SYS", None),
        ("SYS/OTHER", None),
        ("XFOO", None),
        ("IN-USE-X", None),
        ("FOO/IN-USE", None),
    ],
)
def test_known(text: str, known: str | None) -> None:
    assert ResponseCode.parse(text).known == known


# -- split_response_code: CONFORMANCE.md §4.1 ---------------------------------


def test_split_sys_temp_with_unknown_lower_levels() -> None:
    # -ERR [SYS/TEMP/FOO/BAR] ...
    code, rest = split_response_code("[SYS/TEMP/FOO/BAR] try later")
    assert code is not None
    assert code.levels == ("SYS", "TEMP", "FOO", "BAR")
    assert code.known == "SYS/TEMP"
    assert code.matches(SYS_TEMP)
    assert rest == "try later"


def test_split_unclosed_bracket() -> None:
    # -ERR [
    assert split_response_code("[") == (None, "[")
    assert split_response_code("[SYS/TEMP oops") == (None, "[SYS/TEMP oops")


def test_split_empty_brackets() -> None:
    # -ERR []
    assert split_response_code("[]") == (None, "[]")
    assert split_response_code("[] text") == (None, "[] text")


def test_split_no_space_after_status_word() -> None:
    # "+OK[IN-USE]": the engine hands over "[IN-USE]".
    assert split_response_code("[IN-USE]") == (IN_USE, "")


def test_split_no_space_after_bracket() -> None:
    assert split_response_code("[IN-USE]busy") == (IN_USE, "busy")


def test_split_removes_only_one_space() -> None:
    assert split_response_code("[IN-USE]  two") == (IN_USE, " two")
    assert split_response_code("[IN-USE] ") == (IN_USE, "")


def test_split_code_on_ok_reply() -> None:
    # Codes are legal on +OK too (RFC 2449 §8 "+OK" or "-ERR").
    code, rest = split_response_code("[UTF8] UTF-8 mode enabled")
    assert code == UTF8
    assert rest == "UTF-8 mode enabled"


def test_split_case_insensitive() -> None:
    code, rest = split_response_code("[sys/Perm] disk on fire")
    assert code == SYS_PERM
    assert code is not None and str(code) == "SYS/PERM"
    assert rest == "disk on fire"


def test_split_unknown_code_is_still_parsed() -> None:
    code, rest = split_response_code("[X-FOO/BAR] hello")
    assert code == ResponseCode(("X-FOO", "BAR"))
    assert code is not None and code.known is None
    assert rest == "hello"


@pytest.mark.parametrize(
    "text",
    [
        "[A B] text",
        "[A//B] text",
        "[/A] text",
        "[A/] text",
        "[A\tB]",
        "[A\x00B]",
        "[A\x7fB]",
        "[\u00e9] text",
        " [IN-USE] leading space",
        "x[IN-USE] not at start",
        "",
        "plain text",
    ],
)
def test_split_malformed_or_absent(text: str) -> None:
    assert split_response_code(text) == (None, text)


def test_split_only_first_bracket_group() -> None:
    assert split_response_code("[IN-USE] [SYS/TEMP]") == (IN_USE, "[SYS/TEMP]")


def test_split_large_unclosed_input_is_fast() -> None:
    # No "]" in 1 MB of rchars: must stay linear (a backtracking regex would not).
    text = "[" + "A/" * 500_000
    assert split_response_code(text) == (None, text)


@given(st.text())
def test_split_never_raises(text: str) -> None:
    code, rest = split_response_code(text)
    if code is None:
        assert rest == text
    else:
        assert text.upper().startswith("[" + str(code) + "]")
        assert text.endswith(rest)


# -- format_status_text ------------------------------------------------------


def test_format() -> None:
    assert format_status_text(SYS_TEMP, "text") == "[SYS/TEMP] text"
    assert format_status_text(IN_USE, "") == "[IN-USE]"
    assert format_status_text(None, "text") == "text"
    assert format_status_text(None, "") == ""
    assert format_status_text(ResponseCode.parse("sys/temp/x"), "t") == "[SYS/TEMP/X] t"


@pytest.mark.parametrize("text", ["a\r\nb", "a\n", "\r", "a\x00b"])
def test_format_rejects_line_breaking_text(text: str) -> None:
    with pytest.raises(LocalProtocolError):
        format_status_text(SYS_TEMP, text)
    with pytest.raises(LocalProtocolError):
        format_status_text(None, text)


def test_format_rejects_bad_types() -> None:
    with pytest.raises(LocalProtocolError):
        format_status_text("SYS/TEMP", "x")  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError):
        format_status_text(None, b"x")  # type: ignore[arg-type]


@given(codes_st, line_text_st.filter(lambda t: not t.startswith(("[", " "))))
def test_round_trip(code: ResponseCode, text: str) -> None:
    assert split_response_code(format_status_text(code, text)) == (code, text)
    assert split_response_code(format_status_text(None, text)) == (None, text)


@given(codes_st, line_text_st)
def test_round_trip_with_code_any_text(code: ResponseCode, text: str) -> None:
    # With a code present, even text starting with "[" or spaces survives.
    assert split_response_code(format_status_text(code, text)) == (code, text)


@given(levels_st)
def test_parse_str_round_trip(levels: list[str]) -> None:
    code = ResponseCode(tuple(levels))
    assert ResponseCode.parse(str(code)) == code
    assert code.levels == tuple(level.upper() for level in levels)
    assert code.matches(code)
    assert code.matches(ResponseCode(code.levels[:1]))


# -- status lines as a client connection reads them (CONFORMANCE.md §3.6, §4) --------


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        (b"+OK", Ok()),
        (b"+OK ", Ok()),
        (b"+OK  two spaces", Ok(" two spaces")),
        (b"+OK[IN-USE]", Ok("", IN_USE)),
        (b"+OK [SYS/TEMP] fine", Ok("fine", SYS_TEMP)),
        (b"-ERR", Err()),
        (b"-ERR ", Err()),
        (b"-ERR [SYS/TEMP/FOO/BAR] x", Err("x", ResponseCode(("SYS", "TEMP", "FOO", "BAR")))),
        (b"-ERR [", Err("[")),
        (b"-ERR []", Err("[]")),
        (b"-ERR [IN-USE]no space", Err("no space", IN_USE)),
        (b"-ERR [XFOO] unknown code", Err("unknown code", ResponseCode(("XFOO",)))),
    ],
)
def test_status_lines_accepted(wire: bytes, expected: object) -> None:
    """Bare ``+OK``, a trailing space, glued and unknown codes are accepted
    (CONFORMANCE.md §3.6, §4.1)."""
    conn = client_tx()
    assert ask(conn, Noop(), wire + b"\r\n") == [expected, NEED_DATA]
    assert conn.state is State.TRANSACTION


def test_status_line_unknown_lower_levels_are_ignored() -> None:
    """``[SYS/TEMP/FOO/BAR]`` means SYS/TEMP and ``[XFOO]`` no known code (CONFORMANCE.md §4.2)."""
    conn = client_tx()
    ev = ask(conn, Noop(), b"-ERR [SYS/TEMP/FOO/BAR] x\r\n")[0]
    assert isinstance(ev, Err) and ev.code is not None, ev
    assert ev.code.known == "SYS/TEMP" and ev.code.matches(SYS_TEMP)
    ev = ask(conn, Noop(), b"-ERR [XFOO] x\r\n")[0]
    assert isinstance(ev, Err) and ev.code is not None, ev
    assert ev.code.known is None


@pytest.mark.parametrize(
    "wire", [b"+ok", b"+OKAY", b"+Ok fine", b"-err no", b"-ERROR", b"+YES", b"OK", b"* 1", b""]
)
def test_status_lines_refused(wire: bytes) -> None:
    """``+ok``, ``+OKAY`` and unknown status words are a RemoteProtocolError
    (CONFORMANCE.md §3.6)."""
    conn = client_tx()
    conn.send(Noop())
    conn.receive_data(wire + b"\r\n")
    with pytest.raises(RemoteProtocolError):
        conn.next_event()
    assert conn.state is State.ERROR


def test_status_codes_on_ok_round_trip() -> None:
    """Codes on ``+OK``, a body's included, survive a round trip (CONFORMANCE.md §4.1)."""
    pair = ConnectionPair(greeting=Greeting(GREETING_TEXT))
    pair.command(User("a"))
    assert pair.reply(Ok("hi", IN_USE)) == [Ok("hi", IN_USE), NEED_DATA]
    pair.command(Pass("b"))
    pair.reply(Ok())
    pair.command(Retr(1))
    evs = pair.reply(MessageStart("x", ResponseCode(("X-NOTE",))), MessageEnd())
    assert evs[0] == MessageStart("x", ResponseCode(("X-NOTE",)))


def test_real_world_busy_errors_without_codes() -> None:
    """A lock error without a code is an Err with no code and the raw text (CONFORMANCE.md §4.4)."""
    conn = new_client()
    ask(conn, User("a"), b"+OK\r\n")
    ev = ask(conn, Pass("b"), b"-ERR unable to lock maildrop\r\n")[0]
    assert ev == Err("unable to lock maildrop") and ev.code is None


def test_real_world_server_sends_bare_ok() -> None:
    """The server sends a text-less ``+OK`` bare, which is legal (RFC 1957)."""
    srv = server_tx()
    first(srv, b"NOOP\r\n")
    assert srv.send(Ok()) == b"+OK\r\n"

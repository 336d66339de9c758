"""The command table (pop3proto._commands): one spec per command, used by both roles."""

from __future__ import annotations

import pytest

import pop3proto as p
from pop3proto import (
    NEED_DATA,
    BadCommand,
    Dele,
    Err,
    Greeting,
    List,
    Ok,
    Pass,
    Retr,
    Stat,
    State,
    Top,
    Uidl,
    User,
)
from pop3proto._commands import (
    ALLOWED,
    BAD_COMMAND_SPEC,
    BY_KEYWORD,
    BY_TYPE,
    COMMANDS,
    EXTENSION_SPEC,
    command_arguments,
    parse_command,
    spec_of,
    write_command,
)
from pop3proto._events import KNOWN_COMMANDS
from pop3proto._readers import BadLine
from pop3proto._replies import Framing
from pop3proto._state import EXTENSION
from tests.helpers import (
    GREETING_TEXT,
    ConnectionPair,
    ask,
    bad_server_line,
    client_tx,
    first,
    login,
    new_client,
    new_server,
    server_tx,
)
from tests.helpers import feed_through_wait as feed

# One instance of every command the engine knows, with parameters where it takes any.
SAMPLES: list[p.Command] = [
    p.User("alice"),
    p.Pass("pass word"),
    p.Apop("alice", "c4c9334bac560ecc979e58001b3e22fb"),
    p.Auth("PLAIN", b"\x00alice\x00secret"),
    p.Stat(),
    p.List(),
    p.List(3),
    p.Retr(1),
    p.Dele(2),
    p.Noop(),
    p.Rset(),
    p.Quit(),
    p.Top(1, 0),
    p.Uidl(),
    p.Uidl(7),
    p.Last(),
    p.Capa(),
    p.Stls(),
    p.Utf8(),
    p.Lang(),
    p.Lang("de"),
]


def test_every_known_command_class_has_one_spec() -> None:
    """The event model's known commands and the table list the same classes."""
    assert {spec.event for spec in COMMANDS} == set(KNOWN_COMMANDS.values())
    assert len(COMMANDS) == len(KNOWN_COMMANDS)
    assert {spec.keyword for spec in COMMANDS} == set(KNOWN_COMMANDS)
    assert set(BY_KEYWORD) == {kw.encode() for kw in KNOWN_COMMANDS}


def test_samples_cover_the_table() -> None:
    """The samples below exercise every spec of the table."""
    assert {type(cmd) for cmd in SAMPLES} == {spec.event for spec in COMMANDS}


@pytest.mark.parametrize("cmd", SAMPLES, ids=repr)
def test_what_the_client_writes_the_server_parses(cmd: p.Command) -> None:
    """write_command and parse_command are inverses for every command."""
    line = write_command(cmd, 255)
    assert line.endswith(b"\r\n")
    assert parse_command(line[:-2], allow_utf8=False) == cmd


@pytest.mark.parametrize("kind", [p.Retr, p.Dele])
def test_numbered_command_at_and_over_the_limit(kind: type[p.Retr] | type[p.Dele]) -> None:
    """A message number long enough to break the command limit (255 octets
    with CRLF, RFC 2449 §4) is refused by the writer, never sent cut; one
    octet less is written whole."""
    keyword = kind.keyword
    at_limit = 10 ** (255 - len(keyword) - 1 - 2 - 1)  # digits fill the line
    line = write_command(kind(at_limit), 255)
    assert len(line) == 255 and line == f"{keyword} {at_limit}\r\n".encode()
    with pytest.raises(
        p.LocalProtocolError, match=rf"^{keyword} command would be 256 octets; the limit is 255"
    ):
        write_command(kind(at_limit * 10), 255)


@pytest.mark.parametrize("cmd", SAMPLES, ids=repr)
def test_reply_shape_is_a_fact_of_the_command(cmd: p.Command) -> None:
    """Bodies for RETR/TOP, listings for argument-less LIST/UIDL/CAPA/LANG."""
    reply = spec_of(cmd).reply_to(cmd)
    expected = {
        p.Retr: Framing.BODY,
        p.Top: Framing.BODY,
        p.Capa: Framing.LISTING,
        p.Auth: Framing.SASL,
        p.Stat: Framing.LINE,
        p.Last: Framing.LINE,
    }.get(type(cmd))
    if isinstance(cmd, (p.List, p.Uidl)):
        expected = Framing.LISTING if cmd.number is None else Framing.LINE
    if isinstance(cmd, p.Lang):
        expected = Framing.LISTING if cmd.language is None else Framing.STATUS
    assert reply.framing is (expected or Framing.STATUS)
    assert p.Err in reply.events


def test_batch_enders_and_logins() -> None:
    """STLS, AUTH and QUIT end a pipelined batch; USER/PASS/APOP/AUTH are logins."""
    assert {s.keyword for s in COMMANDS if s.ends_batch} == {"STLS", "AUTH", "QUIT"}
    assert {s.keyword for s in COMMANDS if s.login} == {"USER", "PASS", "APOP", "AUTH"}
    assert {s.keyword for s in COMMANDS if s.authenticates} == {"PASS", "APOP", "AUTH"}
    assert {s.keyword for s in COMMANDS if s.closes} == {"QUIT"}
    # The classes that hide a refused line are the logins.
    assert {kw for kw, cls in KNOWN_COMMANDS.items() if cls.secret} == {
        s.keyword for s in COMMANDS if s.login
    }


def test_extension_and_bad_command_specs() -> None:
    """Extension is legal wherever commands are; BadCommand nowhere, answered -ERR only."""
    assert EXTENSION_SPEC.kind == EXTENSION
    for kinds in ALLOWED.values():
        assert EXTENSION in kinds
    assert BAD_COMMAND_SPEC.states == frozenset()
    assert BAD_COMMAND_SPEC.reply_to(p.BadCommand(b"X", "x")).events == (p.Err,)
    assert command_arguments(p.Extension("XTND", ("a", "b"))) == ["a", "b"]
    assert (
        spec_of(p.Extension("XLST", multiline=True))
        .reply_to(p.Extension("XLST", multiline=True))
        .framing
        is Framing.BODY
    )


def test_spec_of_refuses_what_is_not_a_command() -> None:
    """A SASL line or a response has no command spec."""
    assert BY_TYPE.get(p.SaslResponse) is None
    with pytest.raises(p.LocalProtocolError, match="a client sends commands, not SaslCancel"):
        spec_of(p.SaslCancel())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"PASS", "PASS needs an argument"),
        (b"PASS a\x7fb", "control characters in password"),
        (b"XYZZY 1", "unknown command"),
        (b"XYZZY \xc3\xa9", "non-ASCII parameter"),
        (b"AUTH \xc3\xa9", "non-ASCII parameter"),
        (b"STAT x", "STAT takes no arguments"),
    ],
)
def test_parse_command_reasons(line: bytes, reason: str) -> None:
    """Each refused line says why, for the -ERR text."""
    with pytest.raises(BadLine) as info:
        parse_command(line, allow_utf8=True)
    assert info.value.reason == reason


# ---------------------------------------------------------------------------
# Command syntax and arguments, as the server reads them (CONFORMANCE.md §3.4)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [
        b"LIST 0",
        b"LIST -1",
        b"LIST +1",
        b"LIST 01",
        b"LIST 1 2",
        b"LIST 1x",
        b"LIST  1",
        b"LIST 1 ",
        b"LIST\t1",
        b"LIST 1\t",
        b"LIST 999999999999999999999",  # 21 digits
        b"LIST \xd9\xa1",  # ARABIC-INDIC DIGIT ONE
        b"LIST 1_0",
    ],
)
def test_arguments_bad_message_numbers(line: bytes) -> None:
    """``LIST 0``, ``-1``, ``+1``, ``01``, ``1 2``, ``1x``, doubled or trailing spaces and TABs
    are BadCommands that change no state."""
    srv = server_tx()
    ev = first(srv, line + b"\r\nSTAT\r\n")
    assert isinstance(ev, BadCommand) and ev.line == line
    srv.send(Err(ev.reason))
    assert srv.state is State.TRANSACTION
    assert first(srv, b"") == Stat()


def test_arguments_huge_message_number() -> None:
    """``LIST 99999999999999999999`` reaches the application, which answers -ERR: no crash."""
    pair = ConnectionPair(greeting=Greeting(GREETING_TEXT))
    login(pair, user="a", password="b")
    evs = feed(pair.server, b"LIST 99999999999999999999\r\n")
    assert evs[0] == List(99999999999999999999)
    pair.client.send(List(99999999999999999999))
    assert pair.reply(Err("no such message")) == [Err("no such message"), NEED_DATA]


@pytest.mark.parametrize(
    ("line", "event"),
    [
        (b"list", List()),
        (b"LiSt 1", List(1)),
        (b"uidl", Uidl()),
        (b"retr 2", Retr(2)),
        (b"top 1 0", Top(1, 0)),
        (b"TOP 1 99999", Top(1, 99999)),
        (b"dele 1", Dele(1)),
        (b"Stat", Stat()),
    ],
)
def test_arguments_mixed_case_keywords(line: bytes, event: object) -> None:
    """Keywords are case-insensitive; ``TOP m 0`` and a large n are the application's business."""
    assert first(server_tx(), line + b"\r\n") == event


@pytest.mark.parametrize(
    "line", [b"LISTS", b"", b" LIST", b"TOP 1", b"TOP 1 -1", b"TOP 1 x", b"TOP 1 0 0", b"RETR"]
)
def test_arguments_malformed_commands(line: bytes) -> None:
    """A 5-letter keyword, an empty line, ``TOP m`` and ``TOP m -1`` are BadCommands."""
    assert isinstance(bad_server_line(line + b"\r\n"), BadCommand)


@pytest.mark.parametrize(
    ("line", "password"),
    [(b"PASS a b", "a b"), (b"PASS  x", " x"), (b"PASS x ", "x "), (b"pass   ", "  ")],
)
def test_arguments_pass_keeps_spaces(line: bytes, password: str) -> None:
    """PASS takes the rest of the line, leading spaces too, and the client writes it back the
    same (RFC 1939 §7)."""
    srv = new_server()
    first(srv, b"USER mrose\r\n")
    srv.send(Ok())
    assert first(srv, line + b"\r\n") == Pass(password)
    conn = new_client()
    ask(conn, User("mrose"), b"+OK\r\n")
    assert conn.send(Pass(password)) == b"PASS " + password.encode() + b"\r\n"


@pytest.mark.parametrize("line", [b"PASS", b"PASS "])
def test_arguments_pass_without_argument(line: bytes) -> None:
    """PASS with no argument is a BadCommand whose -ERR counts as a failed PASS, as the client
    sees it (CONFORMANCE.md §2.4)."""
    srv = new_server()
    first(srv, b"USER mrose\r\n")
    srv.send(Ok())
    ev = first(srv, line + b"\r\n")
    assert isinstance(ev, BadCommand) and ev.command is None
    srv.send(Err())
    assert srv.state is State.AUTHORIZATION


@pytest.mark.parametrize(
    ("line", "after"),
    [
        ("PASS pässword".encode(), State.AUTHORIZATION),  # malformed PASS: fails as a PASS
        (b"APOP mrose xyz", State.AUTHORIZATION),  # malformed APOP (lenient USER_OK)
        (b"CAPA x", State.USER_OK),  # malformed CAPA: nothing to undo
    ],
)
def test_arguments_malformed_auth_command_in_user_ok(line: bytes, after: State) -> None:
    """A malformed USER, PASS, APOP or AUTH fails as that command would, so both roles agree
    (CONFORMANCE.md §2.4)."""
    srv = new_server(strict_user=False)
    first(srv, b"USER mrose\r\n")
    srv.send(Ok())
    ev = first(srv, line + b"\r\n")
    assert isinstance(ev, BadCommand) and ev.command is None
    srv.send(Err())
    assert srv.state is after


@pytest.mark.parametrize("line", [b"USER", b"USER ", b"USER a b"])
def test_arguments_user_without_argument(line: bytes) -> None:
    """USER with no argument, or two, is a BadCommand."""
    ev = bad_server_line(line + b"\r\n", "AUTHORIZATION")
    assert ev.command is None


def test_real_world_bare_auth_is_refused_by_the_server() -> None:
    """A bare ``AUTH`` (a legacy mechanism listing) is a BadCommand."""
    assert bad_server_line(b"AUTH\r\n", "AUTHORIZATION").command is None


def test_last_both_roles() -> None:
    """LAST (RFC 1081): the client reads +OK nn as LastOk, the server writes it back."""
    pair = ConnectionPair()
    login(pair)
    assert pair.command(p.Last()) == [p.Last(), p.PAUSED]
    assert pair.reply(p.LastOk(3)) == [p.LastOk(3), p.NEED_DATA]
    assert pair.client.state is pair.server.state is p.State.TRANSACTION
    pair.command(p.Last())
    assert pair.reply(p.Err("unknown command")) == [p.Err("unknown command"), p.NEED_DATA]


@pytest.mark.parametrize(
    ("line", "expected"),
    [(b"+OK 0\r\n", p.LastOk(0)), (b"+OK 12 accessed\r\n", p.LastOk(12))],
)
def test_last_reply_is_read_as_a_number(line: bytes, expected: p.LastOk) -> None:
    """+OK nn, text after the number ignored."""
    conn = client_tx()
    conn.send(p.Last())
    conn.receive_data(line)
    assert conn.next_event() == expected


def test_last_reply_without_a_number_is_a_protocol_error() -> None:
    """+OK with no number is not a LAST reply."""
    conn = client_tx()
    conn.send(p.Last())
    conn.receive_data(b"+OK none\r\n")
    with pytest.raises(p.RemoteProtocolError, match="malformed LAST reply"):
        conn.next_event()


def test_last_only_in_transaction() -> None:
    """LAST is a TRANSACTION command."""
    with pytest.raises(p.LocalProtocolError, match="LAST is not allowed in the AUTHORIZATION"):
        new_client().send(p.Last())

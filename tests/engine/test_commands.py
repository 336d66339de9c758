"""The command table (pop3proto._commands): one spec per command, used by both roles."""

from __future__ import annotations

import pytest

import pop3proto as p
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
    assert spec_of(p.Extension("LAST", multiline=True)).reply_to(
        p.Extension("LAST", multiline=True)
    ).framing is Framing.BODY


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

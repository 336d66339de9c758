"""The session state tables (pop3proto._state), exercised through real client/server pairs.

The expected tables below are written out from the checklist (§0, §1, §7, §8 of
/work/shared/pop3-conformance.md), not copied from the engine, and compared with
it; then every transition is driven through a real CLIENT and SERVER pair, and
both must agree on the resulting state.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pop3proto import (
    CLIENT,
    SERVER,
    Apop,
    Auth,
    Capa,
    Connection,
    ConnectionClosed,
    Err,
    Greeting,
    Lang,
    LocalProtocolError,
    Noop,
    Ok,
    Pass,
    Quit,
    SaslChallenge,
    SaslResponse,
    Stat,
    State,
    Stls,
    User,
    Utf8,
)
from pop3proto._commands import ALLOWED, BY_KEYWORD, allowed
from pop3proto._diagram import mermaid
from pop3proto._state import (
    EXTENSION,
    GREETING,
    REPLY_TRANSITIONS,
    START_TRANSITIONS,
    TLS_TRANSITIONS,
    SessionState,
)
from tests.helpers import events_through_wait as events

ROOT = Path(__file__).resolve().parents[2]
A, U, S, T = State.AUTHORIZATION, State.USER_OK, State.SASL, State.TRANSACTION
TLS, UPD, CL = State.TLS_PENDING, State.UPDATE, State.CLOSED

# -- the checklist's transitions, written out independently -------------------

EXPECTED_REPLY = {
    (State.AWAIT_GREETING, GREETING, True): A,
    (State.AWAIT_GREETING, GREETING, False): CL,
    (A, "USER", True): U,
    (U, "USER", True): U,  # lenient mode only: a second USER replaces the name
    (U, "USER", False): A,
    (U, "PASS", True): T,
    (U, "PASS", False): A,
    (A, "APOP", True): T,
    (U, "APOP", True): T,  # lenient mode only
    (U, "APOP", False): A,
    (S, "AUTH", True): T,
    (S, "AUTH", False): A,
    (A, "STLS", True): TLS,
    (A, "QUIT", True): CL,
    (A, "QUIT", False): CL,
    (U, "QUIT", True): CL,
    (U, "QUIT", False): CL,
    (UPD, "QUIT", True): CL,
    (UPD, "QUIT", False): CL,
}
EXPECTED_START = {(A, "AUTH"): S, (U, "AUTH"): S, (T, "QUIT"): UPD}
EXPECTED_ALLOWED = {
    A: {"USER", "APOP", "AUTH", "STLS", "CAPA", "UTF8", "LANG", "QUIT", EXTENSION},
    U: {"PASS", "QUIT", EXTENSION},
    T: {"STAT", "LIST", "RETR", "DELE", "NOOP", "RSET", "TOP", "UIDL", "CAPA", "LANG", "QUIT"}
    | {EXTENSION},
}


def test_reply_table_matches_the_checklist() -> None:
    assert REPLY_TRANSITIONS == EXPECTED_REPLY


def test_start_and_tls_tables_match_the_checklist() -> None:
    assert START_TRANSITIONS == EXPECTED_START
    assert TLS_TRANSITIONS == {TLS: A}


def test_allowed_table_matches_the_checklist() -> None:
    assert {state: set(kinds) for state, kinds in ALLOWED.items()} == EXPECTED_ALLOWED
    lenient = {
        spec.kind for spec in BY_KEYWORD.values() if allowed(spec, U, strict_user=False)
    }
    assert lenient | {EXTENSION} == {
        "USER",
        "PASS",
        "APOP",
        "AUTH",
        "CAPA",
        "UTF8",
        "LANG",
        "QUIT",
        EXTENSION,
    }


# -- driving a pair -----------------------------------------------------------


class Pair:
    def __init__(self, strict_user: bool = True, greeting: object = None) -> None:
        self.client = Connection(CLIENT, strict_user=strict_user)
        self.server = Connection(SERVER, strict_user=strict_user)
        self.reply(greeting or Greeting("ready <1.2@host>"))

    def command(self, cmd: object) -> object:
        self.server.receive_data(self.client.send(cmd))  # type: ignore[arg-type]
        ev = self.server.next_event()
        assert ev == cmd
        return ev

    def reply(self, *responses: object) -> list[object]:
        data = b"".join(self.server.send(r) for r in responses)  # type: ignore[arg-type]
        self.client.receive_data(data)
        return events(self.client)

    def agree(self) -> State:
        assert self.client.state is self.server.state
        return self.client.state


def reach(state: State, strict_user: bool = True) -> Pair:
    pair = Pair(strict_user)
    if state in (U, T, UPD):
        pair.command(User("mrose"))
        pair.reply(Ok())
    if state in (T, UPD):
        pair.command(Pass("secret"))
        pair.reply(Ok())
    assert pair.agree() is (T if state is UPD else state)
    return pair


DIGEST = "c4c9334bac560ecc979e58001b3e22fb"
# (source state as the table names it, kind) -> (state to reach first, command, strict_user)
HOW = {
    (A, "USER"): (A, User("a"), True),
    (U, "USER"): (U, User("b"), False),
    (U, "PASS"): (U, Pass("p"), True),
    (A, "APOP"): (A, Apop("a", DIGEST), True),
    (U, "APOP"): (U, Apop("a", DIGEST), False),
    (S, "AUTH"): (A, Auth("PLAIN", b"\0a\0p"), True),
    (A, "STLS"): (A, Stls(), True),
    (A, "QUIT"): (A, Quit(), True),
    (U, "QUIT"): (U, Quit(), True),
    (UPD, "QUIT"): (T, Quit(), True),
}


@pytest.mark.parametrize(
    ("key", "dst"),
    [(k, v) for k, v in EXPECTED_REPLY.items() if k[1] != GREETING],
    ids=lambda x: "-".join(str(getattr(p, "name", p)) for p in x) if isinstance(x, tuple) else "",
)
def test_every_reply_transition_through_a_pair(key: tuple[State, str, bool], dst: State) -> None:
    """Each REPLY transition, driven by a real client+server; both sides agree."""
    src, kind, ok = key
    start, cmd, strict = HOW[(src, kind)]
    pair = reach(start, strict)
    pair.command(cmd)
    # START transitions apply as soon as the command is the one being answered.
    assert pair.agree() is src
    evs = pair.reply(Ok("fine") if ok else Err("no"))
    assert evs[0] == (Ok("fine") if ok else Err("no"))
    assert pair.agree() is dst
    if dst is CL:
        assert isinstance(evs[-1], ConnectionClosed)
        assert pair.server.next_event() == ConnectionClosed()


@pytest.mark.parametrize("ok", [True, False])
def test_greeting_transitions_through_a_pair(ok: bool) -> None:
    pair = Pair(greeting=Greeting("hi") if ok else Err("go away"))
    assert pair.agree() is (A if ok else CL)


def test_auth_from_user_ok_in_lenient_mode() -> None:
    """(USER_OK, AUTH) -> SASL: a lenient server lets AUTH replace a pending USER."""
    for ok, dst in ((True, T), (False, A)):
        pair = reach(U, strict_user=False)
        pair.command(Auth("PLAIN"))
        assert pair.agree() is S
        assert pair.reply(SaslChallenge(b""))[0] == SaslChallenge(b"")
        pair.server.receive_data(pair.client.send(SaslResponse(b"\0a\0p")))
        assert pair.server.next_event() == SaslResponse(b"\0a\0p")
        pair.reply(Ok() if ok else Err())
        assert pair.agree() is dst


def test_tls_transition_through_a_pair() -> None:
    pair = reach(A)
    pair.command(Stls())
    pair.reply(Ok())
    assert pair.agree() is TLS
    pair.client.tls_established()
    pair.server.tls_established()
    assert pair.agree() is A


@pytest.mark.parametrize(
    ("state", "cmd", "reply"),
    [
        (A, User("a"), Err()),
        (A, Apop("a", DIGEST), Err()),
        (A, Stls(), Err()),
        (A, Auth("PLAIN", b"x"), None),
        (A, Utf8(), Ok()),
        (A, Lang("en"), Ok()),
        (A, Capa(), Err()),
        (T, Stat(), Err()),
        (T, Noop(), Ok()),
        (T, Capa(), Err()),
        (T, Lang("en"), Ok()),
    ],
    ids=repr,
)
def test_replies_without_a_transition_change_nothing(
    state: State, cmd: object, reply: object
) -> None:
    """RFC 1939 §3: anything not in the table (e.g. -ERR to USER) leaves the state alone;
    a failed AUTH behaves as if it had never been sent (RFC 5034 §4)."""
    pair = reach(state)
    pair.command(cmd)
    pair.reply(reply or Err())
    assert pair.agree() is state


def test_states_agree_after_every_reply_of_a_pipelined_batch() -> None:
    """Client state follows replies one by one, as the server's does (RFC 2449 §6.6)."""
    client = Connection(CLIENT, allow_unadvertised_pipelining=True)
    server = Connection(SERVER)
    client.receive_data(server.send(Greeting("hi")))
    client.next_event()
    server.receive_data(b"".join(client.send(c) for c in (User("a"), Pass("b"), Stat(), Quit())))
    for reply in (Ok(), Err(), Err(), Ok()):
        server.next_event()
        client.receive_data(server.send(reply))
        client.next_event()
        assert client.state is server.state
    assert client.state is CL


def test_lenient_client_and_strict_server_agree_after_a_refused_second_user() -> None:
    """Checklist §10 invariant: "the client's and server's view of the state agree after
    every reply".  The strict server refuses the second USER and keeps USER_OK (no state
    change, RFC 1939 §3); the client applies "-ERR to USER -> AUTHORIZATION" (§1)."""
    client = Connection(CLIENT, strict_user=False)
    server = Connection(SERVER)
    client.receive_data(server.send(Greeting("hi")))
    client.next_event()
    for cmd, reply in ((User("a"), Ok()), (User("b"), Err("one USER only"))):
        server.receive_data(client.send(cmd))
        server.next_event()
        client.receive_data(server.send(reply))
        client.next_event()
    assert client.state is server.state


# -- SessionState API ------------------------------------------------------------


def test_session_state_defaults() -> None:
    session = SessionState()
    assert session.state is State.AWAIT_GREETING and session.strict_user


def test_command_table_allowed() -> None:
    """The command table's allowed(): strict and lenient USER_OK, terminal states."""

    def ok(keyword: bytes, state: State, strict: bool = True) -> bool:
        return allowed(BY_KEYWORD[keyword], state, strict_user=strict)

    assert not ok(b"USER", State.AWAIT_GREETING)  # AWAIT_GREETING allows nothing
    assert ok(b"USER", A)
    assert not ok(b"STAT", A)
    assert ok(b"STAT", T)
    assert not ok(b"CAPA", U)
    assert not ok(b"QUIT", State.CLOSED)
    assert ok(b"CAPA", U, strict=False) and ok(b"USER", U, strict=False)
    assert not ok(b"STLS", U, strict=False) and not ok(b"STAT", U, strict=False)
    assert not ok(b"CAPA", State.ERROR, strict=False)


def test_session_state_transitions() -> None:
    assert SessionState.after_start(A, "AUTH") is S
    assert SessionState.after_start(A, "USER") is A
    assert SessionState.after_reply(U, "PASS", True) is T
    assert SessionState.after_reply(T, "STAT", True) is T
    session = SessionState()
    session.reply(GREETING, True)
    assert session.state is A
    session.start("AUTH")
    assert session.state is S
    session.reply("AUTH", False)
    assert session.state is A
    session.reply("STLS", True)
    session.tls_established()
    assert session.state is A


def test_session_state_tls_established_only_when_pending() -> None:
    session = SessionState()
    session.reply(GREETING, True)
    with pytest.raises(LocalProtocolError, match="AUTHORIZATION"):
        session.tls_established()
    assert session.state is A


def test_session_state_close_and_error() -> None:
    session = SessionState()
    session.close()
    assert session.state is CL
    session.error()
    assert session.state is State.ERROR
    session.close()  # ERROR is terminal: close() does not hide it
    assert session.state is State.ERROR


def test_state_repr_and_values() -> None:
    assert repr(State.TRANSACTION) == "State.TRANSACTION"
    assert {s.value for s in State} == {s.name for s in State}
    assert len(State) == 9


# -- the diagram ---------------------------------------------------------------


def diagram_edges(text: str) -> dict[tuple[str, str], str]:
    edges = {}
    for line in text.splitlines():
        m = re.fullmatch(r"    (\w+) --> (\w+): (.+)", line)
        if m:
            edges[(m.group(1), m.group(2))] = m.group(3)
    return edges


@pytest.fixture(scope="module")
def diagram_output() -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "pop3proto._diagram"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env=env,
        timeout=60,
    )
    return proc.stdout


def test_diagram_script_prints_mermaid(diagram_output: str) -> None:
    assert diagram_output == mermaid()
    lines = diagram_output.splitlines()
    assert lines[0] == "stateDiagram-v2"
    assert "    [*] --> AWAIT_GREETING" in lines
    assert "    CLOSED --> [*]" in lines


def test_diagram_contains_every_transition(diagram_output: str) -> None:
    edges = diagram_edges(diagram_output)
    for (src, kind, ok), dst in EXPECTED_REPLY.items():
        if src is dst:
            continue  # a self-loop is not drawn
        label = edges[(src.name, dst.name)]
        word = "greeting" if kind == GREETING else kind
        assert re.search(rf"\b{word}\b", label), (src, kind, ok, label)
        # Either the outcome is shown, or both outcomes lead here and were merged.
        outcome = f"{word} {'+OK' if ok else '-ERR'}"
        merged = (src, kind, not ok) in EXPECTED_REPLY and EXPECTED_REPLY[
            (src, kind, not ok)
        ] is dst
        assert outcome in label or merged, label
    for (src, kind), dst in EXPECTED_START.items():
        assert kind in edges[(src.name, dst.name)]
    assert "TLS" in edges[("TLS_PENDING", "AUTHORIZATION")]
    # Nothing drawn that the tables do not have.
    drawn = set(edges)
    expected = {(s.name, d.name) for (s, _, _), d in EXPECTED_REPLY.items() if s is not d}
    expected |= {(s.name, d.name) for (s, _), d in EXPECTED_START.items()}
    expected |= {("TLS_PENDING", "AUTHORIZATION")}
    assert drawn == expected


def test_diagram_notes_list_allowed_commands(diagram_output: str) -> None:
    notes = {
        m.group(1): set(m.group(2).split(", "))
        for m in re.finditer(r"note right of (\w+): (.+)", diagram_output)
    }
    assert notes["USER_OK"] >= {"PASS", "QUIT"}
    assert notes["AUTHORIZATION"] >= {"USER", "APOP", "AUTH", "STLS", "CAPA", "UTF8", "LANG"}
    assert "STAT" in notes["TRANSACTION"] and "USER" not in notes["TRANSACTION"]

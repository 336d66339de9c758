"""The session states (CONFORMANCE.md §2): the tables of pop3proto._state and the
command table's "allowed" column, then every rule driven through real client/server pairs.

The expected tables are written out here from the RFCs' rules, not copied from
the engine, and compared with it; then every transition is driven through a
real CLIENT and SERVER pair, and both must agree on the resulting state.
"""

from __future__ import annotations

import random

import pytest

from pop3proto import (
    CLIENT,
    NEED_DATA,
    PAUSED,
    SERVER,
    Apop,
    Auth,
    BadCommand,
    Capa,
    Capabilities,
    CapaOk,
    Command,
    Connection,
    ConnectionClosed,
    Dele,
    Err,
    Event,
    Greeting,
    Lang,
    LangOk,
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
    ResponseCode,
    Retr,
    Rset,
    SaslChallenge,
    SaslResponse,
    Stat,
    State,
    StatOk,
    Stls,
    Top,
    Uidl,
    UidlEntryOk,
    UidlOk,
    User,
    Utf8,
)
from pop3proto._commands import ALLOWED, BY_KEYWORD, allowed
from pop3proto._state import (
    EXTENSION,
    GREETING,
    REPLY_TRANSITIONS,
    START_TRANSITIONS,
    TLS_TRANSITIONS,
    SessionState,
)
from tests.helpers import (
    ENDED,
    GREETING_TEXT,
    ConnectionPair,
    ask,
    bad_server_line,
    client_tx,
    first,
    login,
    merged,
    new_client,
    new_server,
    server_tx,
)
from tests.helpers import feed_through_wait as feed

A, U, S, T = State.AUTHORIZATION, State.USER_OK, State.SASL, State.TRANSACTION
TLS, UPD, CL = State.TLS_PENDING, State.UPDATE, State.CLOSED

# -- CONFORMANCE.md §2.2, §2.3 and §2.4, written out independently -------------

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
    | {"LAST", EXTENSION},
}


def test_reply_table_matches_the_rfcs() -> None:
    """Every reply moves the session as CONFORMANCE.md §2.3 and §2.4 say."""
    assert REPLY_TRANSITIONS == EXPECTED_REPLY


def test_start_and_tls_tables_match_the_rfcs() -> None:
    """AUTH, QUIT in TRANSACTION and the TLS handshake move the state (CONFORMANCE.md §2.3)."""
    assert START_TRANSITIONS == EXPECTED_START
    assert TLS_TRANSITIONS == {TLS: A}


def test_allowed_table_matches_the_rfcs() -> None:
    """Each state allows the commands CONFORMANCE.md §2.2 and §2.5 list."""
    assert {state: set(kinds) for state, kinds in ALLOWED.items()} == EXPECTED_ALLOWED
    lenient = {spec.kind for spec in BY_KEYWORD.values() if allowed(spec, U, strict_user=False)}
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


def reach(state: State, strict_user: bool = True) -> ConnectionPair:
    pair = ConnectionPair(
        client_kwargs={"strict_user": strict_user},
        server_kwargs={"strict_user": strict_user},
        greeting=Greeting("ready <1.2@host>"),
    )
    if state in (U, T, UPD):
        pair.send(CLIENT, User("mrose"))
        pair.reply(Ok())
    if state in (T, UPD):
        pair.send(CLIENT, Pass("secret"))
        pair.reply(Ok())
    assert pair.assert_in_step() is (T if state is UPD else state)
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
    pair.send(CLIENT, cmd)
    # START transitions apply as soon as the command is the one being answered.
    assert pair.assert_in_step() is src
    evs = pair.reply(Ok("fine") if ok else Err("no"))
    assert evs[0] == (Ok("fine") if ok else Err("no"))
    assert pair.assert_in_step() is dst
    if dst is CL:
        assert isinstance(evs[-1], ConnectionClosed)
        assert pair.server.next_event() == ENDED


@pytest.mark.parametrize("ok", [True, False])
def test_greeting_transitions_through_a_pair(ok: bool) -> None:
    pair = ConnectionPair(greeting=Greeting("hi") if ok else Err("go away"))
    assert pair.assert_in_step() is (A if ok else CL)


def test_auth_from_user_ok_in_lenient_mode() -> None:
    """(USER_OK, AUTH) -> SASL: a lenient server lets AUTH replace a pending USER."""
    for ok, dst in ((True, T), (False, A)):
        pair = reach(U, strict_user=False)
        pair.send(CLIENT, Auth("PLAIN"))
        assert pair.assert_in_step() is S
        assert pair.reply(SaslChallenge(b""))[0] == SaslChallenge(b"")
        pair.server.receive_data(pair.client.send(SaslResponse(b"\0a\0p")))
        assert pair.server.next_event() == SaslResponse(b"\0a\0p")
        pair.reply(Ok() if ok else Err())
        assert pair.assert_in_step() is dst


def test_tls_transition_through_a_pair() -> None:
    pair = reach(A)
    pair.send(CLIENT, Stls())
    pair.reply(Ok())
    assert pair.assert_in_step() is TLS
    pair.client.tls_established()
    pair.server.tls_established()
    assert pair.assert_in_step() is A


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
    state: State, cmd: Command, reply: Response | None
) -> None:
    """RFC 1939 §3: anything not in the table (e.g. -ERR to USER) leaves the state alone;
    a failed AUTH behaves as if it had never been sent (RFC 5034 §4)."""
    pair = reach(state)
    pair.send(CLIENT, cmd)
    pair.reply(reply or Err())
    assert pair.assert_in_step() is state


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
    """CONFORMANCE.md §2.3: the client's and the server's view of the state agree after
    every reply.  The strict server refuses the second USER and keeps USER_OK (no state
    change, RFC 1939 §3); the client forgets the USER on -ERR (CONFORMANCE.md §2.4)."""
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


# -- the greeting comes first ------------------------------------------------


def test_greeting_client_sends_before_greeting() -> None:
    """Before the greeting the client may send nothing, and the server holds a command back
    (PAUSED) until it has greeted."""
    conn = Connection(CLIENT)
    with pytest.raises(LocalProtocolError):
        conn.send(Capa())
    srv = Connection(SERVER)
    assert feed(srv, b"CAPA\r\n") == [PAUSED]
    assert srv.next_event() is PAUSED
    with pytest.raises(LocalProtocolError):
        Connection(SERVER).send(Ok("not a greeting"))
    srv.send(Greeting("hi"))
    assert srv.next_event() == Capa()


# -- every command in every state, and the rules between USER and PASS -------


# The command table of CONFORMANCE.md §2.2 again, written out independently of
# pop3proto._commands, as command lines for a server.
ALL_LINES: dict[str, tuple[bytes, object]] = {
    "USER": (b"USER mrose", User("mrose")),
    "PASS": (b"PASS secret", Pass("secret")),
    "APOP": (b"APOP mrose c4c9334bac560ecc979e58001b3e22fb", None),
    "AUTH": (b"AUTH PLAIN", Auth("PLAIN")),
    "STAT": (b"STAT", Stat()),
    "LIST": (b"LIST", List()),
    "LIST n": (b"LIST 1", List(1)),
    "RETR": (b"RETR 1", Retr(1)),
    "DELE": (b"DELE 1", Dele(1)),
    "NOOP": (b"NOOP", Noop()),
    "RSET": (b"RSET", Rset()),
    "QUIT": (b"QUIT", Quit()),
    "TOP": (b"TOP 1 0", Top(1, 0)),
    "UIDL": (b"UIDL", Uidl()),
    "UIDL n": (b"UIDL 1", Uidl(1)),
    "CAPA": (b"CAPA", Capa()),
    "STLS": (b"STLS", Stls()),
    "UTF8": (b"UTF8", Utf8()),
    "LANG": (b"LANG", Lang()),
    "LANG x": (b"LANG en", Lang("en")),
}


LEGAL = {
    "AUTHORIZATION": {"USER", "APOP", "AUTH", "STLS", "CAPA", "UTF8", "LANG", "LANG x", "QUIT"},
    "USER_OK": {"PASS", "QUIT"},
    "TRANSACTION": {
        "STAT",
        "LIST",
        "LIST n",
        "RETR",
        "DELE",
        "NOOP",
        "RSET",
        "TOP",
        "UIDL",
        "UIDL n",
        "CAPA",
        "LANG",
        "LANG x",
        "QUIT",
    },
}


def server_in(state: str) -> Connection:
    if state == "TRANSACTION":
        return server_tx()
    srv = new_server()
    if state == "USER_OK":
        first(srv, b"USER mrose\r\n")
        srv.send(Ok())
    assert srv.state.name == state
    return srv


@pytest.mark.parametrize("state", sorted(LEGAL))
@pytest.mark.parametrize("name", sorted(ALL_LINES))
def test_state_every_command_in_every_state(state: str, name: str) -> None:
    """Every command in every state: an illegal one is a BadCommand whose -ERR changes nothing
    but a pending USER (CONFORMANCE.md §2.2, §2.4)."""
    line, cmd = ALL_LINES[name]
    if cmd is None:
        cmd = Apop("mrose", "c4c9334bac560ecc979e58001b3e22fb")
    srv = server_in(state)
    ev = first(srv, line + b"\r\n")
    if name in LEGAL[state]:
        assert ev == cmd
        assert srv.outstanding == (cmd,)
    else:
        assert isinstance(ev, BadCommand)
        assert ev.command == cmd and ev.line == line
        # A BadCommand may only be answered with Err.
        other = server_in(state)
        first(other, line + b"\r\n")
        with pytest.raises(LocalProtocolError):
            other.send(Ok())
        srv.send(Err(ev.reason))
        clears_user = state == "USER_OK" and name in ("USER", "APOP", "AUTH")
        assert srv.state.name == ("AUTHORIZATION" if clears_user else state)
        assert srv.outstanding == ()
        assert first(srv, b"QUIT\r\n") == Quit()


@pytest.mark.parametrize("cmd", [Noop(), Stat(), Rset()])
def test_state_transaction_commands_in_authorization(cmd: Command) -> None:
    """NOOP, STAT and RSET in AUTHORIZATION: BadCommand in the server, LocalProtocolError in the
    client (CONFORMANCE.md §2.2)."""
    conn = new_client()
    with pytest.raises(LocalProtocolError, match="AUTHORIZATION"):
        conn.send(cmd)
    ev = first(new_server(), cmd.keyword.encode() + b"\r\n")
    assert isinstance(ev, BadCommand) and ev.command == cmd


def test_state_pass_without_user() -> None:
    """PASS without USER is refused by both roles."""
    with pytest.raises(LocalProtocolError):
        new_client().send(Pass("x"))
    ev = bad_server_line(b"PASS x\r\n", "AUTHORIZATION")
    assert ev.command == Pass("x")


def test_state_pass_after_failed_pass() -> None:
    """A failed PASS clears USER_OK, so another PASS is refused (CONFORMANCE.md §2.4)."""
    pair = ConnectionPair(greeting=Greeting(GREETING_TEXT))
    pair.command(User("a"))
    pair.reply(Ok())
    pair.command(Pass("wrong"))
    assert pair.reply(Err("[AUTH] no")) == [Err("no", ResponseCode(("AUTH",))), NEED_DATA]
    assert pair.client.state is pair.server.state is State.AUTHORIZATION
    ev = first(pair.server, b"PASS again\r\n")
    assert isinstance(ev, BadCommand)


def test_state_user_user_strict() -> None:
    """A strict server refuses a second USER and forgets the first, as the client does on -ERR
    (CONFORMANCE.md §2.4, §2.5)."""
    srv = server_in("USER_OK")
    ev = first(srv, b"USER other\r\n")
    assert isinstance(ev, BadCommand) and ev.command == User("other")
    srv.send(Err())
    assert srv.state is State.AUTHORIZATION
    assert isinstance(first(srv, b"PASS secret\r\n"), BadCommand)
    srv.send(Err())
    assert first(srv, b"USER other\r\n") == User("other")
    conn = new_client()
    ask(conn, User("a"), b"+OK\r\n")
    with pytest.raises(LocalProtocolError):
        conn.send(User("b"))


def test_state_user_user_lenient() -> None:
    """With strict_user=False a second USER replaces the name (CONFORMANCE.md §2.5)."""
    pair = ConnectionPair(
        client_kwargs={"strict_user": False},
        server_kwargs={"strict_user": False},
        greeting=Greeting(GREETING_TEXT),
    )
    pair.command(User("a"))
    pair.reply(Ok())
    assert pair.command(User("b"))[0] == User("b")
    pair.reply(Ok())
    assert pair.client.state is pair.server.state is State.USER_OK
    pair.command(User("c"))
    pair.reply(Err())
    assert pair.client.state is pair.server.state is State.AUTHORIZATION


@pytest.mark.parametrize("strict", [True, False])
def test_state_user_capa_pass(strict: bool) -> None:
    """Between USER and PASS a CAPA is refused, USER_OK surviving, when strict and answered when
    lenient (CONFORMANCE.md §2.5)."""
    pair = ConnectionPair(
        client_kwargs={"strict_user": strict},
        server_kwargs={"strict_user": strict},
        greeting=Greeting(GREETING_TEXT),
    )
    pair.command(User("a"))
    pair.reply(Ok())
    if strict:
        lone = new_client()
        ask(lone, User("a"), b"+OK\r\n")
        with pytest.raises(LocalProtocolError):
            lone.send(Capa())
        ev = first(pair.server, b"CAPA\r\n")
        assert isinstance(ev, BadCommand)
        pair.server.send(Err())
    else:
        assert pair.command(Capa())[0] == Capa()
        assert isinstance(pair.reply(CapaOk(Capabilities.build("USER")))[0], CapaOk)
    assert pair.server.state is State.USER_OK
    assert pair.command(Pass("b"))[0] == Pass("b")
    pair.reply(Ok())
    assert pair.client.state is pair.server.state is State.TRANSACTION


def test_state_second_auth_after_success() -> None:
    """A second AUTH after a successful one is refused by both roles (RFC 5034 §4)."""
    pair = ConnectionPair(greeting=Greeting(GREETING_TEXT))
    pair.command(Auth("PLAIN", b"\0a\0b"))
    pair.reply(Ok())
    assert pair.client.state is State.TRANSACTION
    with pytest.raises(LocalProtocolError):
        pair.client.send(Auth("PLAIN", b"\0a\0b"))
    ev = first(pair.server, b"AUTH PLAIN AGEAYg==\r\n")
    assert isinstance(ev, BadCommand) and ev.command == Auth("PLAIN", b"\0a\0b")


def test_state_utf8_in_transaction() -> None:
    """UTF8 in TRANSACTION is refused by both roles (RFC 6856 §2)."""
    with pytest.raises(LocalProtocolError):
        client_tx().send(Utf8())
    assert bad_server_line(b"UTF8\r\n").command == Utf8()


def test_state_quit_in_authorization_vs_transaction() -> None:
    """QUIT in AUTHORIZATION closes without UPDATE; in TRANSACTION it enters UPDATE first
    (RFC 1939 §6)."""
    pair = ConnectionPair(greeting=Greeting(GREETING_TEXT))
    assert pair.command(Quit())[0] == Quit()
    assert pair.server.state is State.AUTHORIZATION
    pair.reply(Ok("bye"))
    assert pair.client.state is pair.server.state is State.CLOSED
    pair = ConnectionPair(greeting=Greeting(GREETING_TEXT))
    login(pair, user="a", password="b")
    pair.command(Quit())
    assert pair.server.state is State.UPDATE
    assert pair.client.state is State.UPDATE
    pair.reply(Ok("bye"))
    assert pair.client.state is pair.server.state is State.CLOSED


# -- both roles agree, whatever happens (CONFORMANCE.md §2.3) ------------------


CHOICES = {
    State.AUTHORIZATION: [
        User("mrose"),
        Apop("mrose", DIGEST),
        Auth("PLAIN", b"\0a\0b"),
        Stls(),
        Capa(),
        Utf8(),
        Lang(),
        Lang("en"),
        Quit(),
    ],
    State.USER_OK: [Pass("secret"), Quit()],
    State.TRANSACTION: [
        Stat(),
        List(),
        List(1),
        Retr(1),
        Dele(1),
        Noop(),
        Rset(),
        Top(1, 0),
        Uidl(),
        Uidl(1),
        Capa(),
        Lang(),
        Lang("*"),
        Quit(),
    ],
}


def positive(cmd: Event) -> list[Event]:
    if isinstance(cmd, Stat):
        return [StatOk(1, 12)]
    if isinstance(cmd, List):
        return [ListOk({1: 12})] if cmd.number is None else [ListEntryOk(1, 12)]
    if isinstance(cmd, Uidl):
        return [UidlOk({1: "u1"})] if cmd.number is None else [UidlEntryOk(1, "u1")]
    if isinstance(cmd, (Retr, Top)):
        return [MessageStart("12 octets"), MessageData(b".a\r\n..\r\nb"), MessageEnd()]
    if isinstance(cmd, Capa):
        return [CapaOk(Capabilities.build("TOP", ("SASL", "PLAIN")))]
    if isinstance(cmd, Lang) and cmd.language is None:
        return [LangOk((("en", "English"), ("de", "")))]
    return [Ok("done")]


def test_invariant_client_and_server_agree_fuzzed() -> None:
    """Fuzzed against each other, a client and a server agree on the state after every reply and
    receive what was sent (CONFORMANCE.md §2.3)."""
    for seed in range(150):
        rng = random.Random(seed)
        pair = ConnectionPair(greeting=Greeting(GREETING_TEXT))
        for _ in range(25):
            state = pair.client.state
            if state is State.CLOSED:
                break
            options = [
                c
                for c in CHOICES[state]
                if not (isinstance(c, Stls) and (pair.client.tls or pair.client.utf8))
            ]
            cmd = rng.choice(options)
            assert pair.command(cmd) == [cmd, PAUSED], seed
            replies: list[Event] = positive(cmd) if rng.random() < 0.7 else [Err("no")]
            evs = merged(pair.reply(*replies))
            if isinstance(replies[0], MessageStart):
                replies = [replies[0], MessageData(b".a\r\n..\r\nb\r\n"), replies[2]]
            expected = merged(replies)
            assert evs[: len(expected)] == expected, seed
            assert pair.client.state is pair.server.state, (seed, cmd)
            if pair.client.state is State.TLS_PENDING:
                pair.client.tls_established()
                pair.server.tls_established()
                assert pair.client.capabilities is pair.server.capabilities is None
            assert pair.client.utf8 == pair.server.utf8
            assert pair.client.lang == pair.server.lang

"""Lockstep fuzzing: a client and a server engine talking to each other.

Hypothesis drives a client :class:`~pop3proto.Connection` and a server
:class:`~pop3proto.Connection` joined by a :class:`ConnectionPair`.  At each
step the client sends a random batch of commands (pipelined when PIPELINING
was advertised), or tries an illegal one, or one side closes; the server
answers every command it receives with a random valid reply of the expected
type (CONFORMANCE.md §6.3), including multi-step AUTH exchanges
with challenges and ``*`` cancel, and STLS followed by ``tls_established()``.

An independent model, written from the rules of CONFORMANCE.md §2.2, §2.3,
§6.1 and §8.1, predicts which sends are legal, which commands the server must
report as :class:`BadCommand`, and the session state after every reply.
After every complete response the client, the server and the model must
agree on the state (CONFORMANCE.md §2.3), every event received must be
the event sent, and nothing but :class:`ProtocolError` may escape.
"""

from __future__ import annotations

import copy
import functools
from collections import deque
from dataclasses import dataclass, field

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

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
    ConnectionClosed,
    Dele,
    Err,
    Event,
    Extension,
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
    ProtocolError,
    Quit,
    RemoteProtocolError,
    Response,
    ResponseCode,
    Retr,
    Rset,
    SaslCancel,
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
from tests.helpers import (
    ENDED,
    ConnectionPair,
    expected_received,
    extension_names,
    get_all_events,
    login,
    normalize_data_events,
    passwords,
    replies_for,
    status_texts,
    tokens,
)

#: The lockstep runs are cheap: three times the profile's example count.
LOCKSTEP_EXAMPLES = settings().max_examples * 3

A = State.AUTHORIZATION
U = State.USER_OK
T = State.TRANSACTION

# ---------------------------------------------------------------------------
# The model (CONFORMANCE.md §2.2, §2.3, §6.1 and §8.1), independent of pop3proto._state
# ---------------------------------------------------------------------------

_AUTHORIZATION_COMMANDS = (User, Apop, Auth, Stls, Capa, Utf8, Lang, Quit, Extension)
_USER_OK_STRICT = (Pass, Quit, Extension)
# CONFORMANCE.md §2.5: the lenient mode lets a second USER replace the name and
# other AUTHORIZATION commands come between USER and PASS (not STLS).
_USER_OK_LENIENT = (User, Pass, Apop, Auth, Capa, Utf8, Lang, Quit, Extension)
_TRANSACTION_COMMANDS = (Stat, List, Retr, Dele, Noop, Rset, Top, Uidl, Capa, Lang, Quit, Extension)
_BATCH_ENDERS = (Stls, Auth, Quit)  # RFC 2449 §6.6, RFC 2595 §4, RFC 5034 §4


def allowed_types(state: State, *, strict_user: bool) -> tuple[type[Command], ...]:
    """CONFORMANCE.md §2.2: the command classes legal in *state*."""
    if state is A:
        return _AUTHORIZATION_COMMANDS
    if state is U:
        return _USER_OK_STRICT if strict_user else _USER_OK_LENIENT
    if state is T:
        return _TRANSACTION_COMMANDS
    return ()


def allowed_in(state: State, command: Command, *, strict_user: bool) -> bool:
    return isinstance(command, allowed_types(state, strict_user=strict_user))


def after_start(state: State, command: Command) -> State:
    """The state once *command* is the one being answered."""
    if isinstance(command, Auth) and state in (A, U):
        return State.SASL  # what follows are SASL lines (RFC 5034 §4)
    if isinstance(command, Quit) and state is T:
        return State.UPDATE  # RFC 1939 §6
    return state


def after_reply(state: State, command: Command, ok: bool) -> State:
    """CONFORMANCE.md §2.3 and §2.4: the state after each reply."""
    if isinstance(command, Quit) and state in (A, U, State.UPDATE):
        return State.CLOSED
    if isinstance(command, User):
        if ok and state in (A, U):
            return U
        if not ok and state is U:
            return A
    if isinstance(command, Pass) and state is U:
        return T if ok else A
    if isinstance(command, Apop) and state in (A, U):
        return T if ok else A
    if isinstance(command, Auth) and state is State.SASL:
        return T if ok else A
    if isinstance(command, Stls) and ok and state is A:
        return State.TLS_PENDING
    return state


def _credential(command: Command) -> str | None:
    if isinstance(command, (User, Apop)):
        return command.name
    if isinstance(command, Pass):
        return command.password
    return None


@dataclass
class Model:
    """What both sides should believe."""

    strict_user: bool
    tls: bool
    unadvertised_pipelining: bool
    state: State = State.AWAIT_GREETING
    projected: State = State.AWAIT_GREETING
    timestamp: bool = False
    utf8: bool = False
    lang: bool = False
    capabilities: Capabilities | None = None
    outstanding: deque[Command] = field(default_factory=deque)
    last_auth_failed: bool = False
    server_state: State = State.AWAIT_GREETING

    def credentials_ok(self, command: Command) -> bool:
        """RFC 6856 §2.2: non-ASCII credentials need UTF8 or "UTF8 USER"."""
        text = _credential(command)
        if text is None or text.isascii():
            return True
        caps = self.capabilities
        return self.utf8 or (caps is not None and caps.utf8_user)

    def client_may_send(self, command: Command) -> bool:
        if self.state in (State.AWAIT_GREETING, State.TLS_PENDING, State.CLOSED):
            return False
        if self.outstanding:
            if isinstance(self.outstanding[-1], _BATCH_ENDERS):
                return False
            caps = self.capabilities
            if not self.unadvertised_pipelining and not (caps is not None and caps.pipelining):
                return False
        if not allowed_in(self.projected, command, strict_user=self.strict_user):
            return False
        if isinstance(command, Stls) and (self.tls or self.utf8):
            return False  # RFC 2595 §4 / RFC 6856 §2.1
        if isinstance(command, Apop) and not self.timestamp:
            return False
        return self.credentials_ok(command)

    def server_accepts(self, command: Command) -> bool:
        """Whether the server reports *command* as itself, not BadCommand."""
        if isinstance(command, Extension):
            return False  # unknown to the engine
        if not allowed_in(self.state, command, strict_user=self.strict_user):
            return False
        if isinstance(command, Stls) and (self.tls or self.utf8):
            return False
        if isinstance(command, Apop) and not self.timestamp:
            return False
        return self.credentials_ok(command)

    def refused(self, command: Command) -> State:
        """The server's state after answering -ERR to *command*, which it
        reported as BadCommand: a refused USER/PASS/APOP/AUTH still fails as
        that command (the client cannot tell why, and a failed USER or PASS
        clears the USER, RFC 1939 §7); anything else changes nothing (RFC
        1939 §3)."""
        if isinstance(command, (User, Pass, Apop, Auth)):
            return after_reply(after_start(self.state, command), command, False)
        return self.state

    @property
    def client_state(self) -> State:
        """The client's state: the command at the head of its queue is the
        one being answered, so its START transition already applies."""
        if self.outstanding:
            return after_start(self.state, self.outstanding[0])
        return self.state

    def sent(self, command: Command) -> None:
        self.outstanding.append(command)
        self.projected = after_reply(after_start(self.projected, command), command, True)

    def answered(self, ok: bool, accepted: bool) -> None:
        """The final reply to the head command arrived.  *accepted* is
        whether the server took it as itself (not as BadCommand)."""
        command = self.outstanding.popleft()
        client_next = after_reply(after_start(self.state, command), command, ok)
        self.server_state = client_next if accepted else self.refused(command)
        self.state = client_next
        self.last_auth_failed = not ok and isinstance(command, (Pass, Apop, Auth))
        if ok and isinstance(command, Utf8):
            self.utf8 = True
        if ok and isinstance(command, Lang) and command.language is not None:
            self.lang = True
        if not self.outstanding:
            self.projected = self.state


# ---------------------------------------------------------------------------
# Strategies
# ---------------------------------------------------------------------------

_NUMBERS = st.one_of(st.integers(1, 9), st.integers(1, 10**20 - 1))
_NAMES = st.one_of(tokens, st.sampled_from(["jörg", "ñandú", "用户"]))
_PASSWORDS = st.one_of(passwords, st.sampled_from(["pässword", "mot de passe été"]))
_MECHANISMS = st.sampled_from(["PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-256", "XOAUTH2", "X-1_A"])

COMMANDS: dict[type[Command], st.SearchStrategy[Command]] = {
    User: st.builds(User, _NAMES),
    Pass: st.builds(Pass, _PASSWORDS),
    Apop: st.builds(Apop, _NAMES, st.text("0123456789abcdef", min_size=32, max_size=32)),
    Auth: st.builds(Auth, _MECHANISMS, st.none() | st.binary(max_size=60)),
    Stls: st.just(Stls()),
    Capa: st.just(Capa()),
    Utf8: st.just(Utf8()),
    Lang: st.builds(Lang, st.none() | st.sampled_from(["en", "es", "*", "de-CH"])),
    Quit: st.just(Quit()),
    Stat: st.just(Stat()),
    List: st.builds(List, st.none() | _NUMBERS),
    Uidl: st.builds(Uidl, st.none() | _NUMBERS),
    Retr: st.builds(Retr, _NUMBERS),
    Dele: st.builds(Dele, _NUMBERS),
    Top: st.builds(Top, _NUMBERS, st.integers(0, 50)),
    Noop: st.just(Noop()),
    Rset: st.just(Rset()),
    Extension: st.builds(
        Extension, extension_names, st.lists(tokens, max_size=2).map(tuple), st.booleans()
    ),
}
ALL_COMMANDS = st.sampled_from(list(COMMANDS)).flatmap(lambda cls: COMMANDS[cls])

_CAPA_ENTRIES = st.sampled_from(
    [
        ("PIPELINING", ()),
        ("PIPELINING", ()),
        ("STLS", ()),
        ("USER", ()),
        ("TOP", ()),
        ("UIDL", ()),
        ("RESP-CODES", ()),
        ("SASL", ("PLAIN", "LOGIN")),
        ("UTF8", ("USER",)),
        ("UTF8", ()),
        ("LANG", ()),
        ("X-UNKNOWN", ("a", "b")),
    ]
)
CAPABILITIES = st.lists(_CAPA_ENTRIES, max_size=5).map(lambda e: Capabilities(tuple(e)))

GREETINGS = st.one_of(
    st.builds(Greeting, status_texts()),
    st.just(Greeting("Dovecot ready. <4a27.2.5e8f3b21.Q2h1Y2sNCg==@mail.example.org>")),
    st.just(Greeting("POP3 server ready <1896.697170952@dbc.mtview.ca.us>")),
)

#: One instance of every response type, to probe wrong replies.
PROBES: list[Response] = [
    Ok(),
    Err(),
    StatOk(1, 1),
    ListOk({}),
    ListEntryOk(1, 1),
    UidlOk({}),
    UidlEntryOk(1, "a"),
    CapaOk(Capabilities(())),
    LangOk(()),
    MessageStart(),
    MessageData(b"x"),
    MessageEnd(),
    SaslChallenge(b""),
    Greeting("again"),
]


def expected_reply_types(event: Event, cancelled: bool) -> tuple[type[Response], ...]:
    """CONFORMANCE.md §6.3: which responses fit which received event."""
    if cancelled or isinstance(event, (BadCommand, SaslCancel)):
        return (Err,)
    if isinstance(event, Stat):
        return (StatOk, Err)
    if isinstance(event, (List, Uidl)):
        if event.number is None:
            return (ListOk if isinstance(event, List) else UidlOk, Err)
        return (ListEntryOk if isinstance(event, List) else UidlEntryOk, Err)
    if isinstance(event, (Retr, Top)):
        return (MessageStart, Err)
    if isinstance(event, Capa):
        return (CapaOk, Err)
    if isinstance(event, Lang) and event.language is None:
        return (LangOk, Err)
    if isinstance(event, (Auth, SaslResponse)):
        return (SaslChallenge, Ok, Err)
    return (Ok, Err)


@functools.cache
def _rare(one_in: int) -> st.SearchStrategy[bool]:
    return st.sampled_from([False] * (one_in - 1) + [True])


@functools.cache
def _one_of_types(types: tuple[type[Command], ...]) -> st.SearchStrategy[type[Command]]:
    return st.sampled_from(types)


PROBE_STRATEGY = st.sampled_from(PROBES)
SPECIAL_ACTIONS = st.sampled_from(
    ["illegal"] * 8 + ["illegal-for-real", "server-close", "client-close", "unsolicited-err"]
)
SASL_STEP: st.SearchStrategy[type[Response]] = st.sampled_from([SaslChallenge, Ok, Err])
SASL_FINAL: st.SearchStrategy[type[Response]] = st.sampled_from([Ok, Err])
SASL_DATA = st.binary(max_size=100)
BATCH_SIZES = st.integers(1, 4)


class Done(Exception):
    """The run reached a terminal state (the message says how)."""


# ---------------------------------------------------------------------------
# The driver
# ---------------------------------------------------------------------------


class Lockstep:
    def __init__(
        self,
        data: st.DataObject,
        *,
        strict_user: bool,
        tls: bool,
        unadvertised_pipelining: bool,
        bare_lf: bool,
    ) -> None:
        self.data = data
        self.bare_lf = bare_lf
        self.pair = ConnectionPair(
            client_kwargs={
                "strict_user": strict_user,
                "tls": tls,
                "allow_unadvertised_pipelining": unadvertised_pipelining,
                "bare_lf": bare_lf,
            },
            server_kwargs={"strict_user": strict_user, "tls": tls},
        )
        self.model = Model(strict_user, tls, unadvertised_pipelining)
        self.answered = 0  # replies delivered, for the statistics

    def report(self) -> None:
        """Label the run for ``--hypothesis-show-statistics``."""
        event(f"final state {self.model.state.name}")
        event(f"replies {min(self.answered // 5 * 5, 20)}+")

    def rare(self, one_in: int, label: str) -> bool:
        """True about once in *one_in* draws (and False when shrunk)."""
        return self.data.draw(_rare(one_in), label=label)

    # -- checks ---------------------------------------------------------------

    def check_states(self) -> None:
        client, server = self.pair.states
        assert client is server, f"client {client!r} != server {server!r}"
        assert client is self.model.state, f"engine {client!r} != model {self.model.state!r}"
        assert server is self.model.server_state
        assert self.pair.client.utf8 == self.pair.server.utf8 == self.model.utf8
        assert self.pair.client.lang == self.pair.server.lang == self.model.lang

    def probe_wrong_replies(self, event: Event, cancelled: bool) -> None:
        """A reply of the wrong type is refused (on a copy of the server)."""
        probe = self.data.draw(PROBE_STRATEGY, label="probe")
        if isinstance(probe, expected_reply_types(event, cancelled)):
            return
        with pytest.raises(LocalProtocolError):
            copy.deepcopy(self.pair.server).send(probe)

    def probe_illegal_send(self, command: Command) -> None:
        """An illegal command is refused (on a copy of the client), and
        ``can_send`` says so without harm."""
        assert not self.pair.client.can_send(command)
        clone = copy.deepcopy(self.pair.client)
        with pytest.raises(LocalProtocolError):
            clone.send(command)
        assert clone.state is State.ERROR

    # -- steps ------------------------------------------------------------------

    def greet(self) -> None:
        pair = self.pair
        assert pair.server.next_event() is PAUSED
        if self.rare(16, "negative greeting?"):
            pair.send(SERVER, Err("Too many connections", ResponseCode(("SYS", "TEMP"))))
            assert pair.states == (State.CLOSED, State.CLOSED)
            raise Done("negative greeting")
        greeting = self.data.draw(GREETINGS, label="greeting")
        pair.send(SERVER, greeting)
        self.model.state = self.model.projected = self.model.server_state = A
        self.model.timestamp = greeting.timestamp is not None
        self.check_states()

    def step(self) -> None:
        model = self.model
        if model.state is State.TLS_PENDING:
            self.tls()
            return
        action = "batch"
        if self.rare(6, "something else than a batch?"):
            action = self.data.draw(SPECIAL_ACTIONS, label="action")
        if action == "batch":
            self.batch()
        elif action in ("illegal", "illegal-for-real"):
            command = self.data.draw(ALL_COMMANDS, label="any command")
            assert self.pair.client.can_send(command) == model.client_may_send(command), command
            if model.client_may_send(command):
                self.send_and_serve([command])
            elif action == "illegal":
                self.probe_illegal_send(command)
            else:
                with pytest.raises(LocalProtocolError):
                    self.pair.client.send(command)
                assert self.pair.client.state is State.ERROR
                with pytest.raises(LocalProtocolError):
                    self.pair.client.send(command)
                raise Done("illegal send")
        elif action == "server-close":
            self.server_close()
        elif action == "client-close":
            # The client closes its end (h11 style: "send" ConnectionClosed).
            assert self.pair.client.send(ConnectionClosed()) == b""
            assert self.pair.client.state is State.CLOSED
            self.pair.server.receive_data(b"")
            assert get_all_events(self.pair.server) == [ConnectionClosed()]
            assert self.pair.server.state is State.CLOSED  # never UPDATE (RFC 1939 §6)
            raise Done("client closed")
        else:
            self.unsolicited_err()

    def batch(self) -> None:
        model = self.model
        caps = model.capabilities
        pipelining = model.unadvertised_pipelining or (caps is not None and caps.pipelining)
        size = self.data.draw(BATCH_SIZES, label="batch size") if pipelining else 1
        commands: list[Command] = []
        for _ in range(size):
            shadow = copy.deepcopy(self.model)
            for sent in commands:
                shadow.sent(sent)
            legal = allowed_types(shadow.projected, strict_user=shadow.strict_user)
            types = [cls for cls in COMMANDS if cls is not Quit and issubclass(cls, legal)]
            if issubclass(Quit, legal) and (not types or self.rare(30, "quit?")):
                cls: type[Command] = Quit
            elif types:
                cls = self.data.draw(_one_of_types(tuple(types)), label="command type")
            else:
                break
            command = self.data.draw(COMMANDS[cls], label="command")
            if not commands:
                assert self.pair.client.can_send(command) == shadow.client_may_send(command)
            if not shadow.client_may_send(command):
                if not commands:
                    self.probe_illegal_send(command)  # e.g. STLS under TLS
                break
            commands.append(command)
            if isinstance(command, _BATCH_ENDERS):
                break
        if commands:
            self.send_and_serve(commands)

    def send_and_serve(self, commands: list[Command]) -> None:
        """The client sends *commands* at once; the server answers each."""
        pair, model = self.pair, self.model
        wire = b""
        for command in commands:
            assert model.client_may_send(command), command
            wire += pair.client.send(command)
            model.sent(command)
        pair.server.receive_data(wire)
        assert pair.client.outstanding == tuple(model.outstanding)
        while model.outstanding:
            self.serve_one(model.outstanding[0])
            if model.state is State.CLOSED:
                raise Done("closed by a reply")

    def serve_one(self, command: Command) -> None:
        pair, model = self.pair, self.model
        if self.rare(100, "drop instead of replying?"):
            self.server_close()
        got = get_all_events(pair.server)
        assert len(got) == 1, got
        [event] = got
        accepted = model.server_accepts(command)
        if accepted:
            assert event == command
        else:
            assert isinstance(event, BadCommand), event
            if not model.credentials_ok(command):
                assert event.command is None  # refused while parsing
            elif not isinstance(command, Extension):
                assert event.command == command  # parsed, but not allowed now
        assert pair.server.next_event() is PAUSED  # the server owes a reply
        server_state = after_start(model.state, command) if accepted else model.state
        assert pair.server.state is server_state
        assert pair.client.state is model.client_state
        if isinstance(command, Auth) and accepted:
            self.sasl_exchange(event)
            return
        self.probe_wrong_replies(event, False)
        reply = self.data.draw(
            replies_for(event, utf8=model.utf8 or model.lang),
            label="reply",
        )
        self.deliver_reply(reply)
        ok = not isinstance(reply[0], Err)
        model.answered(ok, accepted)
        if isinstance(reply[0], CapaOk):
            model.capabilities = reply[0].capabilities
            assert pair.client.capabilities == pair.server.capabilities == reply[0].capabilities
        self.settle()

    def sasl_exchange(self, auth: Event) -> None:
        pair, model = self.pair, self.model
        text = status_texts(utf8=model.utf8 or model.lang)
        last: Event = auth
        cancelled = False
        for round_ in range(4):
            self.probe_wrong_replies(last, cancelled)
            if cancelled:
                reply: Response = Err(self.data.draw(text, label="cancel text"))
            else:
                choices = SASL_STEP if round_ < 3 else SASL_FINAL
                kind = self.data.draw(choices, label="sasl reply")
                if kind is SaslChallenge:
                    reply = SaslChallenge(self.data.draw(SASL_DATA, label="challenge"))
                else:
                    final = Ok if kind is Ok else Err
                    reply = final(self.data.draw(text, label="sasl final text"))
            if isinstance(reply, SaslChallenge):
                pair.send(SERVER, reply)
                assert pair.client.next_event() is PAUSED  # the client owes a response
                assert pair.states == (State.SASL, State.SASL)
                self.probe_illegal_send(Noop())
                if self.rare(4, "cancel?"):
                    last = SaslCancel()
                    cancelled = True
                else:
                    last = SaslResponse(self.data.draw(SASL_DATA, label="response"))
                pair.send(CLIENT, last)
                assert pair.server.next_event() is PAUSED
                continue
            self.deliver_reply([reply])
            model.answered(isinstance(reply, Ok), accepted=True)
            self.settle()
            return
        raise AssertionError("unreachable")  # pragma: no cover

    def deliver_reply(self, reply: list[Event]) -> None:
        self.answered += 1
        pair = self.pair
        wire = b"".join(pair.server.send(event) for event in reply)
        got = pair.deliver(SERVER, wire)
        wanted = expected_received(reply)
        if pair.client.state is State.CLOSED:
            wanted.append(ENDED)
        assert normalize_data_events(got) == normalize_data_events(wanted)

    def settle(self) -> None:
        """After a complete response both sides and the model agree (when
        pipelined commands remain, the server is checked once it has read the
        next one, in serve_one)."""
        assert self.pair.client.outstanding == tuple(self.model.outstanding)
        if self.model.outstanding:
            assert self.pair.client.state is self.model.client_state
            assert self.pair.server.state is self.model.server_state
            return
        self.check_states()
        if self.model.state is State.CLOSED:
            assert self.pair.server.next_event() == ENDED
            assert self.pair.client.next_event() == ENDED

    def tls(self) -> None:
        """RFC 2595 §4: +OK to STLS, then TLS on both sides, then a fresh
        AUTHORIZATION without capabilities."""
        pair = self.pair
        assert pair.states == (State.TLS_PENDING, State.TLS_PENDING)
        assert pair.client.next_event() is PAUSED and pair.server.next_event() is PAUSED
        self.probe_illegal_send(Capa())
        injected = copy.deepcopy(pair.client)  # response injection (CONFORMANCE.md §8.2)
        injected.receive_data(b"+OK forged\r\n")
        with pytest.raises(RemoteProtocolError):
            injected.next_event()
        pair.tls_established()
        assert pair.client.tls and pair.server.tls
        assert pair.client.capabilities is None
        self.model.state = self.model.projected = self.model.server_state = A
        self.model.tls = True
        self.model.capabilities = None
        self.check_states()

    def server_close(self) -> None:
        """The server drops the connection, possibly with commands pending."""
        pair, model = self.pair, self.model
        assert pair.server.send(ConnectionClosed()) == b""
        assert pair.server.state is State.CLOSED
        pair.client.receive_data(b"")
        head = model.outstanding[0] if model.outstanding else None
        if head is None or model.last_auth_failed:
            # RFC 1939 §4: after a failed authentication the server may close.
            assert get_all_events(pair.client) == [ConnectionClosed()]
        elif isinstance(head, Quit):
            # CONFORMANCE.md §2.6: QUIT sent from TRANSACTION and no reply: unknown.
            unknown = model.client_state is State.UPDATE
            assert get_all_events(pair.client) == [ConnectionClosed(outcome_unknown=unknown)]
        else:
            with pytest.raises(RemoteProtocolError):
                get_all_events(pair.client)
            assert pair.client.state is State.ERROR
            raise Done("server closed mid-command")
        assert pair.client.state is State.CLOSED
        raise Done("server closed")

    def unsolicited_err(self) -> None:
        """Dovecot's "-ERR Disconnected for inactivity." (CONFORMANCE.md §2.6)."""
        pair, model = self.pair, self.model
        if model.outstanding:
            return
        err = Err(self.data.draw(status_texts(), label="inactivity text"))
        pair.send(SERVER, err, expect=[err, ENDED])
        assert pair.states == (State.CLOSED, State.CLOSED)
        raise Done("unsolicited -ERR")


@settings(max_examples=LOCKSTEP_EXAMPLES)
@given(
    data=st.data(),
    strict_user=st.booleans(),
    tls=st.booleans(),
    unadvertised_pipelining=st.booleans(),
    bare_lf=st.booleans(),
    steps=st.integers(5, 40),
)
def test_lockstep(
    data: st.DataObject,
    strict_user: bool,
    tls: bool,
    unadvertised_pipelining: bool,
    bare_lf: bool,
    steps: int,
) -> None:
    """CONFORMANCE.md §2.3: client, server and model agree on the state
    after every reply; only ProtocolError may escape."""
    run = Lockstep(
        data,
        strict_user=strict_user,
        tls=tls,
        unadvertised_pipelining=unadvertised_pipelining,
        bare_lf=bare_lf,
    )
    try:
        run.greet()
        for _ in range(steps):
            run.step()
    except Done as done:
        event(f"ended: {done}")
    except ProtocolError as exc:  # pragma: no cover - a failure, with context
        raise AssertionError(f"unexpected {type(exc).__name__}: {exc}") from exc
    run.report()


@settings(max_examples=LOCKSTEP_EXAMPLES)
@given(data=st.data(), steps=st.integers(5, 40))
def test_lockstep_pipelined_session(data: st.DataObject, steps: int) -> None:
    """The same lockstep, started with CAPA advertising PIPELINING so that
    most batches are pipelined (RFC 2449 §6.6)."""
    run = Lockstep(data, strict_user=True, tls=False, unadvertised_pipelining=False, bare_lf=False)
    try:
        run.greet()
        run.pair.send(CLIENT, Capa())
        run.model.sent(Capa())
        caps = Capabilities.build("PIPELINING", "USER", ("SASL", "PLAIN"), "STLS", "TOP", "UIDL")
        run.deliver_reply([CapaOk(caps)])
        run.model.answered(True, accepted=True)
        run.model.capabilities = caps
        run.settle()
        for _ in range(steps):
            run.step()
    except Done as done:
        event(f"ended: {done}")
    run.report()


WIRE: dict[type[Command], tuple[Command, bytes]] = {
    User: (User("u"), b"USER u\r\n"),
    Pass: (Pass("p"), b"PASS p\r\n"),
    Apop: (
        Apop("u", "c4c9334bac560ecc979e58001b3e22fb"),
        b"APOP u c4c9334bac560ecc979e58001b3e22fb\r\n",
    ),
    Auth: (Auth("PLAIN"), b"AUTH PLAIN\r\n"),
    Stls: (Stls(), b"STLS\r\n"),
    Capa: (Capa(), b"CAPA\r\n"),
    Utf8: (Utf8(), b"UTF8\r\n"),
    Lang: (Lang("en"), b"LANG en\r\n"),
    Quit: (Quit(), b"QUIT\r\n"),
    Stat: (Stat(), b"STAT\r\n"),
    List: (List(1), b"LIST 1\r\n"),
    Uidl: (Uidl(1), b"UIDL 1\r\n"),
    Retr: (Retr(1), b"RETR 1\r\n"),
    Dele: (Dele(1), b"DELE 1\r\n"),
    Top: (Top(1, 0), b"TOP 1 0\r\n"),
    Noop: (Noop(), b"NOOP\r\n"),
    Rset: (Rset(), b"RSET\r\n"),
    Extension: (Extension("XTND", ("XLST",)), b"XTND XLST\r\n"),
}


@pytest.mark.parametrize("strict_user", [True, False])
@pytest.mark.parametrize("state", [A, U, T])
@pytest.mark.parametrize("cls", list(WIRE), ids=lambda c: c.__name__)
def test_every_command_in_every_state(state: State, cls: type[Command], strict_user: bool) -> None:
    """CONFORMANCE.md §2.2 and §2.4 (a command in the wrong state gets -ERR
    and changes no state): a command in the wrong state is refused by
    the client with LocalProtocolError and, sent raw by a misbehaving
    client, reported by the server as BadCommand, which only -ERR may
    answer and which changes nothing.  In the right state both accept it."""
    command, wire = WIRE[cls]
    pair = ConnectionPair(
        client_kwargs={"strict_user": strict_user}, server_kwargs={"strict_user": strict_user}
    )
    if state is T:
        login(pair, greeting=Greeting("ready <1896.697170952@dbc.mtview.ca.us>"))
    else:
        assert pair.server.next_event() is PAUSED
        pair.send(SERVER, Greeting("ready <1896.697170952@dbc.mtview.ca.us>"))
        if state is U:
            pair.send(CLIENT, User("u"))
            pair.send(SERVER, Ok())
    assert pair.assert_in_step() is state
    legal = allowed_in(state, command, strict_user=strict_user)
    if legal:
        assert pair.client.send(command) == wire
    else:
        with pytest.raises(LocalProtocolError):
            copy.deepcopy(pair.client).send(command)
    [event] = pair.deliver(CLIENT, wire)
    if legal and cls is not Extension:
        assert event == command
        assert pair.server.state is after_start(state, command)
        return
    assert isinstance(event, BadCommand)
    assert event.line == wire[:-2]
    with pytest.raises(LocalProtocolError):
        copy.deepcopy(pair.server).send(Ok())
    pair.server.send(Err(event.reason))
    # Only a refused USER/PASS/APOP/AUTH moves the state: it fails as that
    # command, exactly as the client would see it (RFC 1939 §7).
    refused = Model(strict_user, False, False, state=state).refused(command)
    assert pair.server.state is refused
    assert refused is state or cls in (User, Pass, Apop, Auth)
    assert pair.server.next_event() is NEED_DATA


def test_bad_command_minus_err_keeps_states_in_step() -> None:
    """CONFORMANCE.md §2.3 (the client and the server agree on the state
    after every reply).  Regression (engine bug #12), found by the
    lockstep model: the client validated PASS against the capabilities it had when
    sending; by the time the server read it, a pipelined CAPA had dropped
    ``UTF8 USER``, so the server refused it as BadCommand and stayed in
    USER_OK while the client, seeing -ERR to PASS, went to AUTHORIZATION."""
    pair = ConnectionPair()
    assert pair.server.next_event() is PAUSED
    pair.send(SERVER, Greeting("ready"))
    pair.send(CLIENT, Capa())
    pair.send(SERVER, CapaOk(Capabilities.build("PIPELINING", ("UTF8", "USER"))))
    pair.send_batch([Capa(), User("bob"), Pass("pässword")])
    assert get_all_events(pair.server) == [Capa()]
    pair.send(SERVER, CapaOk(Capabilities.build("PIPELINING")))
    assert get_all_events(pair.server) == [User("bob")]
    pair.send(SERVER, Ok())
    [bad] = get_all_events(pair.server)
    assert isinstance(bad, BadCommand)
    pair.send(SERVER, Err(bad.reason))
    assert pair.assert_in_step() is State.AUTHORIZATION


@pytest.mark.parametrize(
    ("ender", "state"), [(Quit(), T), (Quit(), A), (Stls(), A), (Auth("PLAIN"), A)]
)
@pytest.mark.parametrize("after", [Noop(), Capa(), Quit(), Stat()], ids=repr)
def test_batch_enders(ender: Command, state: State, after: Command) -> None:
    """CONFORMANCE.md §6.1: STLS, AUTH and QUIT must end a pipelined batch, even
    with PIPELINING advertised; the client refuses anything after them."""
    pair = ConnectionPair()
    if state is T:
        login(pair, pipelining=True)
    else:
        assert pair.server.next_event() is PAUSED
        pair.send(SERVER, Greeting("ready"))
        pair.send(CLIENT, Capa())
        pair.send(SERVER, CapaOk(Capabilities.build("PIPELINING", "STLS")))
    pair.client.send(ender)
    with pytest.raises(LocalProtocolError):
        pair.client.send(after)
    assert pair.client.state is State.ERROR


def test_client_cannot_send_before_the_greeting() -> None:
    """CONFORMANCE.md §2.2: the client sending before the greeting."""
    pair = ConnectionPair()
    with pytest.raises(LocalProtocolError):
        pair.client.send(Capa())
    assert pair.client.state is State.ERROR


def test_pipelining_needs_the_capability() -> None:
    """RFC 2449 §6.6: without PIPELINING in the last CAPA the client waits
    for each reply; ``allow_unadvertised_pipelining`` lifts that."""
    pair = ConnectionPair()
    login(pair, capa=True)  # Dovecot's list without PIPELINING
    pair.client.send(Stat())
    with pytest.raises(LocalProtocolError):
        pair.client.send(Noop())
    lenient = ConnectionPair(client_kwargs={"allow_unadvertised_pipelining": True})
    login(lenient)
    lenient.send_batch([Stat(), Noop(), Uidl(1)])
    assert lenient.client.outstanding == (Stat(), Noop(), Uidl(1))

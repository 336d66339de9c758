"""Stateful fuzzing of the server session against a model of RFC 1939.

A Hypothesis :class:`RuleBasedStateMachine` drives a
:class:`~pop3proto.adapters.server._session.ServerSession` over a
:class:`~pop3proto.adapters.mailstore._memory.MemoryBackend` with bytes produced by
a client-role :class:`pop3proto.Connection`, and checks every reply against
:class:`Pop3Model`, a small reference implementation of the RFC 1939
semantics written for this test (it shares no code with the server).

Rules: single commands, legal and illegal (wrong state, unknown message,
deleted message, bad credentials, raw malformed lines the client engine
would refuse to send); pipelined batches delivered in random chunks; SASL
PLAIN with and without an initial response, cancelled or not; RSET; DELE of
deleted messages; QUIT in every state; disconnects at random byte offsets
of a pipelined batch; idle timeouts; mail delivered during a session; a
second session bumping into the lock.

Invariants, after every step:

* a message is removed from the backend only by QUIT from TRANSACTION, and
  only if it was marked (the backend always equals the model's store);
* message numbers never shift (each number keeps its UID and size for the
  whole session: checked on every LIST/UIDL/RETR/TOP);
* LIST sizes equal the octets RETR delivers;
* the client engine and the server engine agree on the state after every
  final reply, and the maildrop lock is released whenever the session ends.

CI runs the ``ci`` Hypothesis profile of ``tests/conftest.py`` (100
examples); ``POP3PROTO_HYPOTHESIS_PROFILE=deep`` runs 5,000.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

import pop3proto
from pop3proto import (
    CLIENT,
    NEED_DATA,
    PAUSED,
    Apop,
    Auth,
    Capa,
    CapaOk,
    Command,
    Connection,
    ConnectionClosed,
    Dele,
    Err,
    Event,
    Extension,
    Lang,
    LangOk,
    List,
    ListEntryOk,
    ListOk,
    MessageData,
    MessageEnd,
    MessageStart,
    Noop,
    Ok,
    Pass,
    Quit,
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
from pop3proto.adapters._seam import Close, Send, StartTLS
from pop3proto.adapters.mailstore._memory import MemoryBackend
from pop3proto.adapters.mailstore._users import DictAuthenticator
from pop3proto.adapters.server._config import ServerConfig
from pop3proto.adapters.server._session import ServerSession
from tests.helpers import BODY_PIECES, PASSWORD, USER, chunks_at, expected_body

MAX_AUTH_FAILURES = 3

#: Message contents: LF-only, CRLF, bare CR, dot lines, no final line end,
#: empty, with and without a header/body separator.
MESSAGES = st.one_of(
    st.lists(st.sampled_from(BODY_PIECES), max_size=12).map(b"".join),
    st.builds(
        lambda head, body: head + b"\r\n\r\n" + body,
        st.sampled_from([b"Subject: x", b"Subject: y\nFrom: z", b""]),
        st.lists(
            st.sampled_from([b"line\r\n", b".dot\r\n", b"..\n", b"x", b"\r\n"]), max_size=8
        ).map(b"".join),
    ),
)


# ---------------------------------------------------------------------------
# The reference model (RFC 1939 §§3-7, 11; RFC 4616 for PLAIN)
# ---------------------------------------------------------------------------


def top_octets(stored: bytes, lines: int) -> bytes:
    """RFC 1939 §7 TOP: the header, the blank line, then *lines* body lines
    (the whole message if it has no blank line)."""
    octets = expected_body(stored)
    parts = octets.split(b"\r\n")[:-1]
    full = [part + b"\r\n" for part in parts]
    for i, part in enumerate(parts):
        if part == b"":
            return b"".join(full[: i + 1 + lines])
    return octets


@dataclass(frozen=True)
class Expect:
    """What the model says the final reply to a command is."""

    kind: str  # ok, err, stat, list, list1, uidl, uidl1, body, capa, lang, challenge
    value: Any = None
    code: str | None = None


OK = Expect("ok")
ERR = Expect("err")


class Pop3Model:
    """RFC 1939 semantics of one server with one user's maildrop.

    ``store`` is the maildrop as the backend must hold it: ``[(uid,
    stored bytes)]`` in delivery order.  A session snapshots it at login;
    numbers are 1-based positions in the snapshot and never change; DELE
    only marks; only QUIT from TRANSACTION removes, and only the marked.
    """

    def __init__(self, store: list[tuple[str, bytes]]) -> None:
        self.store = store
        self.state = "CLOSED"
        self.snapshot: list[tuple[str, bytes]] = []
        self.marked: set[int] = set()
        self.failures = 0
        self.timestamp: str | None = None
        self.sasl = False
        self.user: str | None = None

    # -- session lifecycle -------------------------------------------------

    def connect(self, timestamp: str | None) -> None:
        self.state = "AUTHORIZATION"
        self.snapshot = []
        self.marked = set()
        self.failures = 0
        self.timestamp = timestamp
        self.sasl = False
        self.user = None

    def drop(self) -> None:
        """EOF, timeout or reset: no UPDATE (RFC 1939 §§3, 6)."""
        self.state = "CLOSED"
        self.marked = set()
        self.sasl = False

    # -- commands ----------------------------------------------------------

    def _login(self) -> Expect:
        self.state = "TRANSACTION"
        self.snapshot = list(self.store)
        self.marked = set()
        return OK

    def _auth_failed(self) -> Expect:
        self.failures += 1
        if self.failures >= MAX_AUTH_FAILURES:
            self.drop()  # RFC 1939 §4: the server may close
        return Expect("err", code="AUTH")

    def _plain(self, message: bytes) -> Expect:
        authzid, _, rest = message.partition(b"\x00")
        authcid, _, password = rest.partition(b"\x00")
        if (
            authzid in (b"", USER.encode())
            and authcid == USER.encode()
            and password == PASSWORD.encode()
        ):
            return self._login()
        return self._auth_failed()

    def _number(self, number: int) -> int | None:
        index = number - 1
        if 0 <= index < len(self.snapshot) and index not in self.marked:
            return index
        return None

    def apply(self, command: Command) -> Expect:
        """The final reply to *command* (or the first SASL challenge)."""
        state = self.state
        keyword = command.name if isinstance(command, Extension) else command.keyword
        if state == "AUTHORIZATION":
            if isinstance(command, User):
                self.user = command.name
                self.state = "USER_OK"
                return OK
            if isinstance(command, Apop):
                assert self.timestamp is not None
                good = pop3proto.apop_digest(self.timestamp, PASSWORD)
                if command.name == USER and command.digest == good:
                    return self._login()
                return self._auth_failed()
            if isinstance(command, Auth):
                if command.mechanism != "PLAIN":
                    return ERR
                if command.initial_response is None:
                    self.sasl = True
                    return Expect("challenge", b"")
                return self._plain(command.initial_response)
            if isinstance(command, Capa):
                return Expect("capa")
            if isinstance(command, Lang):
                return Expect("lang") if command.language is None else OK
            if isinstance(command, Utf8):
                return OK
            if isinstance(command, Quit):
                self.state = "CLOSED"
                return OK
            return ERR  # STLS (no TLS configured), unknown, wrong state
        if state == "USER_OK":
            if isinstance(command, Pass):
                self.state = "AUTHORIZATION"
                if self.user == USER and command.password == PASSWORD:
                    return self._login()
                return self._auth_failed()
            if isinstance(command, Quit):
                self.state = "CLOSED"
                return OK
            if keyword in ("USER", "APOP", "AUTH"):
                self.state = "AUTHORIZATION"  # refused: clears the USER
            return ERR
        if state == "TRANSACTION":
            return self._transaction(command)
        raise AssertionError(f"command {command!r} in model state {state}")

    def sasl_line(self, event: SaslResponse | SaslCancel) -> Expect:
        assert self.sasl
        self.sasl = False
        if isinstance(event, SaslCancel):
            return ERR  # RFC 5034 §4: cancelled, not a failure
        return self._plain(event.data)

    def _transaction(self, command: Command) -> Expect:
        live = [i for i in range(len(self.snapshot)) if i not in self.marked]
        if isinstance(command, Stat):
            size = sum(len(expected_body(self.snapshot[i][1])) for i in live)
            return Expect("stat", (len(live), size))
        if isinstance(command, (List, Uidl)):

            def value(i: int) -> object:
                if isinstance(command, List):
                    return len(expected_body(self.snapshot[i][1]))
                return self.snapshot[i][0]

            kind = "list" if isinstance(command, List) else "uidl"
            if command.number is None:
                return Expect(kind, {i + 1: value(i) for i in live})
            index = self._number(command.number)
            if index is None:
                return ERR
            return Expect(kind + "1", (command.number, value(index)))
        if isinstance(command, (Retr, Top)):
            index = self._number(command.number)
            if index is None:
                return ERR
            stored = self.snapshot[index][1]
            if isinstance(command, Retr):
                return Expect("body", expected_body(stored))
            return Expect("body", top_octets(stored, command.lines))
        if isinstance(command, Dele):
            index = self._number(command.number)
            if index is None:
                return ERR
            self.marked.add(index)
            return OK
        if isinstance(command, Noop):
            return OK
        if isinstance(command, Rset):
            self.marked = set()
            return OK
        if isinstance(command, Capa):
            return Expect("capa")
        if isinstance(command, Lang):
            return Expect("lang") if command.language is None else OK
        if isinstance(command, Quit):
            # UPDATE (RFC 1939 §6): remove exactly the marked messages.
            doomed = {self.snapshot[i][0] for i in self.marked}
            self.store[:] = [m for m in self.store if m[0] not in doomed]
            self.state = "CLOSED"
            self.marked = set()
            return OK
        return ERR  # USER, PASS, STLS, UTF8, unknown: wrong state


# ---------------------------------------------------------------------------
# The state machine
# ---------------------------------------------------------------------------


_FINAL = (
    Ok,
    Err,
    StatOk,
    ListOk,
    ListEntryOk,
    UidlOk,
    UidlEntryOk,
    CapaOk,
    LangOk,
    MessageEnd,
)

#: Raw lines a client engine would never send, by model state.  None of
#: them may change the state (the auth keywords in USER_OK would: they are
#: left out there).  Every one must get -ERR.
RAW_BAD_LINES: dict[str, tuple[bytes, ...]] = {
    "common": (
        b"",
        b" ",
        b"FOO",
        b"FOOBAR x",
        b"LIST 0",
        b"LIST -1",
        b"LIST +1",
        b"LIST 01",
        b"LIST 1 2",
        b"LIST 1x",
        b"LIST  1",
        b"LIST 1 ",
        b"LIST\t1",
        b"LIST 99999999999999999999",
        b"LIST 340282366920938463463374607431768211457",
        b"RETR",
        b"TOP 1",
        b"TOP 1 -1",
        b"TOP 1 x",
        b"DELE 1 1",
        b"STAT\x00",
        b"NOOP \xff\xfe",
        b"\xc3\xa9TAT",
        b"\x00\x00\x00",
        b"QUIT now",
        b"CAPA x",
        b"X" * 300,
    ),
    "AUTHORIZATION": (
        b"STAT",
        b"NOOP",
        b"RSET",
        b"LIST",
        b"RETR 1",
        b"DELE 1",
        b"PASS " + PASSWORD.encode(),
        b"USER",
        b"APOP alice",
        b"APOP alice nothex",
        b"AUTH",
        b"AUTH PLAIN ===",
        b"AUTH PLAIN a=b=",
        b"AUTH " + b"P" * 30,
    ),
    "USER_OK": (b"STAT", b"CAPA", b"NOOP", b"RETR 1", b"LANG"),
    "TRANSACTION": (
        b"USER alice",
        b"PASS x",
        b"APOP alice c4c9334bac560ecc979e58001b3e22fb",
        b"AUTH PLAIN",
        b"STLS",
        b"UTF8",
        b"RETR 99999999999999999999999999999999",
        b"TOP 1 99999999999999999999999999999999",
    ),
}


class SessionMachine(RuleBasedStateMachine):
    """See the module docstring."""

    def __init__(self) -> None:
        super().__init__()
        self.backend = MemoryBackend(chunk_size=5)
        self.config = ServerConfig(
            hostname="example.org",
            chunk_size=7,
            max_bad_commands=10**9,
            max_auth_failures=MAX_AUTH_FAILURES,
            idle_timeout=600,
        )
        self.auth = DictAuthenticator({USER: PASSWORD, "bob": "bob's password"})
        self.model = Pop3Model([])
        self.session: ServerSession | None = None
        self.client: Connection | None = None
        self.sessions = 0

    # -- plumbing ------------------------------------------------------------

    def _connect(self) -> None:
        self.session = ServerSession(
            self.backend, self.auth, self.config, is_loopback=True, peer="test"
        )
        self.client = Connection(CLIENT, allow_unadvertised_pipelining=True)
        self.client.receive_data(self.session.greeting())
        greeting = self.client.next_event()
        assert isinstance(greeting, pop3proto.Greeting)
        assert greeting.timestamp == self.session.timestamp
        self.model.connect(greeting.timestamp)
        self.outstanding: deque[Command] = deque()
        self.expect: Expect | None = None
        self.body: bytearray | None = None
        self.to_server: list[bytes] = []
        self.sasl_answers: deque[SaslResponse | SaslCancel] = deque()
        self.sessions += 1
        self._check_states()

    def _ensure_open(self) -> None:
        if self.session is None or self.session.closed:
            self._connect()

    def _check_states(self) -> None:
        """The client and server engines agree on the state.

        With pipelined commands still outstanding the client is already in
        the state the next one *starts* (AUTH: SASL, QUIT in TRANSACTION:
        UPDATE) while the server has not read it yet.
        """
        client, session = self.client, self.session
        assert client is not None and session is not None
        expected = session.state
        pending = client.outstanding
        if pending:
            if isinstance(pending[0], Auth) and expected in (State.AUTHORIZATION, State.USER_OK):
                expected = State.SASL
            elif isinstance(pending[0], Quit) and expected is State.TRANSACTION:
                expected = State.UPDATE
        assert client.state is expected, f"client {client.state} != server {session.state}"

    def _pull(self) -> None:
        """Run the server's actions, feeding each reply to the client."""
        session, client = self.session, self.client
        assert session is not None and client is not None
        for action in session.actions():
            if isinstance(action, Send):
                if client.state not in (State.CLOSED, State.ERROR):
                    client.receive_data(action.data)
                    self._client_events()
            else:
                assert not isinstance(action, StartTLS), "STLS is not configured"
                assert isinstance(action, Close)

    def _client_events(self) -> None:
        client = self.client
        assert client is not None
        while True:
            event = client.next_event()
            if event is NEED_DATA:
                return
            if event is PAUSED:
                assert client.state is State.SASL and self.expect is not None
                assert self.expect.kind == "challenge"
                answer = self.sasl_answers.popleft() if self.sasl_answers else SaslCancel()
                self.to_server.append(client.send(answer))
                self.expect = self.model.sasl_line(answer)
                return
            assert isinstance(event, Event)
            if isinstance(event, ConnectionClosed):
                return
            self._on_event(event)

    def _on_event(self, event: Event) -> None:
        assert self.outstanding, f"event {event!r} with nothing outstanding"
        head = self.outstanding[0]
        if self.expect is None:
            self.expect = self.model.apply(head)
        expect = self.expect
        if isinstance(event, SaslChallenge):
            assert expect.kind == "challenge", (head, expect, event)
            assert event.data == expect.value
            self._check_states()
            return
        if isinstance(event, MessageStart):
            assert expect.kind == "body", (head, expect, event)
            self.body = bytearray()
            return
        if isinstance(event, MessageData):
            assert self.body is not None
            self.body += event.data
            return
        assert isinstance(event, _FINAL), event
        self.outstanding.popleft()
        self.expect = None
        self._check_reply(head, expect, event)
        self._check_states()

    def _check_reply(self, head: Command, expect: Expect, event: Event) -> None:
        where = f"{head!r}: expected {expect}, got {event!r}"
        kind = expect.kind
        if kind == "ok":
            assert isinstance(event, Ok), where
        elif kind == "err":
            assert isinstance(event, Err), where
            if expect.code is not None:
                assert event.code is not None and event.code.known == expect.code, where
        elif kind == "stat":
            assert isinstance(event, StatOk), where
            assert (event.count, event.size) == expect.value, where
        elif kind == "list":
            assert isinstance(event, ListOk) and event.sizes == expect.value, where
        elif kind == "uidl":
            assert isinstance(event, UidlOk) and event.uids == expect.value, where
        elif kind == "list1":
            assert isinstance(event, ListEntryOk), where
            assert (event.number, event.size) == expect.value, where
        elif kind == "uidl1":
            assert isinstance(event, UidlEntryOk), where
            assert (event.number, event.uid) == expect.value, where
        elif kind == "body":
            assert isinstance(event, MessageEnd) and self.body is not None, where
            assert bytes(self.body) == expect.value, where
            if isinstance(head, Retr):
                # LIST size == RETR octets (RFC 1939 §11, RFC 6856 §2.1).
                size = len(expected_body(self.model.snapshot[head.number - 1][1]))
                assert len(self.body) == size, where
            self.body = None
        elif kind == "capa":
            assert isinstance(event, CapaOk), where
            assert event.capabilities.pipelining and event.capabilities.user, where
        elif kind == "lang":
            assert isinstance(event, LangOk), where
        else:  # pragma: no cover
            raise AssertionError(where)

    def _exchange(
        self,
        wire: bytes,
        commands: Sequence[Command],
        cuts: Iterable[int] = (),
        sasl: Sequence[SaslResponse | SaslCancel] = (),
    ) -> None:
        """Deliver *wire* (the batch *commands*, already sent by the client
        engine) to the server in chunks cut at *cuts*; check every reply."""
        client, session = self.client, self.session
        assert client is not None and session is not None
        self.outstanding.extend(commands)
        self.sasl_answers.extend(sasl)
        for chunk in chunks_at(wire, cuts):
            session.receive(chunk)
            self._pull()
        while self.to_server and not session.closed:
            session.receive(self.to_server.pop(0))
            self._pull()
        if session.closed:
            if self.model.state != "CLOSED":
                raise AssertionError(f"server closed; the model is in {self.model.state}")
            if client.state not in (State.CLOSED, State.ERROR):
                client.receive_data(b"")
                self._client_events()
            assert client.state is State.CLOSED
            self.outstanding.clear()
        else:
            assert not self.outstanding, f"unanswered: {list(self.outstanding)}"
            assert self.model.state != "CLOSED"
        self._check_states()

    # -- candidate commands ---------------------------------------------------

    def _candidates(self, data: st.DataObject) -> list[Command]:
        n = len(self.model.snapshot)
        number = data.draw(
            st.one_of(st.integers(1, n + 2), st.just(10**19)), label="message number"
        )
        assert self.session is not None
        timestamp = self.session.timestamp or "<x@y>"
        good = pop3proto.apop_digest(timestamp, PASSWORD)
        plain = b"\x00" + USER.encode() + b"\x00" + PASSWORD.encode()
        return [
            User(USER),
            User("bob"),
            Pass(PASSWORD),
            Pass("wrong password"),
            Apop(USER, good),
            Apop(USER, "0" * 32),
            Auth("PLAIN"),
            Auth("PLAIN", plain),
            Auth("PLAIN", b"\x00alice\x00nope"),
            Auth("X-UNKNOWN"),
            Capa(),
            Lang(),
            Lang("en"),
            Utf8(),
            Stls(),
            Quit(),
            Extension("XTND", ("XMIT",)),
            Stat(),
            List(),
            List(number),
            Uidl(),
            Uidl(number),
            Retr(number),
            Top(number, data.draw(st.integers(0, 4), label="top lines")),
            Dele(number),
            Noop(),
            Rset(),
        ]

    def _draw_batch(
        self,
        data: st.DataObject,
        size: int,
        *,
        allow: Callable[[Command], bool] | None = None,
    ) -> tuple[bytes, list[Command]]:
        """Up to *size* commands the client engine accepts one after the
        other (a pipelined batch when more than one), sent on the client."""
        client = self.client
        assert client is not None
        wire = b""
        batch: list[Command] = []
        for _ in range(size):
            legal = [c for c in self._candidates(data) if client.can_send(c)]
            if allow is not None:
                legal = [c for c in legal if allow(c)]
            if not legal:
                break
            command = data.draw(st.sampled_from(legal), label="command")
            wire += client.send(command)
            batch.append(command)
        return wire, batch

    def _sasl_answers(self, data: st.DataObject) -> list[SaslResponse | SaslCancel]:
        plain = b"\x00" + USER.encode() + b"\x00" + PASSWORD.encode()
        answers: list[SaslResponse | SaslCancel] = [
            SaslResponse(plain),
            SaslResponse(b"\x00alice\x00bad"),
            SaslCancel(),
        ]
        return [data.draw(st.sampled_from(answers), label="SASL answer")]

    # -- rules ----------------------------------------------------------------

    @initialize(messages=st.lists(MESSAGES, max_size=5))
    def deliver_initial_mail(self, messages: list[bytes]) -> None:
        for message in messages:
            uid = self.backend.add(USER, message)
            self.model.store.append((uid, message))
        self._connect()

    @rule(data=st.data())
    def one_command(self, data: st.DataObject) -> None:
        self._ensure_open()
        wire, batch = self._draw_batch(data, 1)
        self._exchange(wire, batch, sasl=self._sasl_answers(data))

    @rule(data=st.data())
    def pipelined_batch(self, data: st.DataObject) -> None:
        """Up to 6 commands at once, delivered in random chunks (RFC 2449 §6.6)."""
        self._ensure_open()
        wire, batch = self._draw_batch(data, data.draw(st.integers(2, 6), label="batch size"))
        cuts = data.draw(st.lists(st.integers(1, max(len(wire), 1)), max_size=6), label="cuts")
        self._exchange(wire, batch, cuts, sasl=self._sasl_answers(data))

    @rule(data=st.data())
    def raw_bad_line(self, data: st.DataObject) -> None:
        """A line the client engine refuses to send: -ERR, no state change."""
        self._ensure_open()
        session = self.session
        assert session is not None
        state = self.model.state
        lines = RAW_BAD_LINES["common"] + RAW_BAD_LINES.get(state, ())
        line = data.draw(st.sampled_from(lines), label="raw line")
        before = session.state
        session.receive(line + b"\r\n")
        replies = b""
        for action in session.actions():
            assert isinstance(action, Send), action
            replies += action.data
        assert replies.startswith(b"-ERR") and replies.count(b"\r\n") == 1, (line, replies)
        assert session.state is before, (line, before, session.state)
        assert not session.closed

    @rule(data=st.data())
    def disconnect_mid_batch(self, data: st.DataObject) -> None:
        """The connection drops at a random byte of a pipelined batch."""
        self._ensure_open()
        session, client = self.session, self.client
        assert session is not None and client is not None
        wire, batch = self._draw_batch(
            data,
            data.draw(st.integers(1, 5), label="batch size"),
            # Without an initial response AUTH would wait for a SASL line.
            allow=lambda c: not (isinstance(c, Auth) and c.initial_response is None),
        )
        cut = data.draw(st.integers(0, len(wire)), label="cut")
        sent = wire[:cut]
        session.receive(sent)
        for _ in session.actions():
            pass
        # The model runs the commands whose line arrived whole.
        for command in batch[: sent.count(b"\r\n")]:
            if self.model.state == "CLOSED":
                break
            self.model.apply(command)
        if not session.closed:
            session.receive(b"")
            for _ in session.actions():
                pass
        assert session.closed
        self.model.drop()
        self.client = None
        self.session = None

    @rule()
    def idle_timeout(self) -> None:
        """RFC 1939 §3: the timer fires; no UPDATE."""
        self._ensure_open()
        session, client = self.session, self.client
        assert session is not None and client is not None
        actions = session.timed_out()
        assert isinstance(actions[-1], Close)
        for action in actions[:-1]:
            assert isinstance(action, Send)
            client.receive_data(action.data)
        client.receive_data(b"")
        events = []
        while (event := client.next_event()) not in (NEED_DATA, PAUSED):
            events.append(event)
            if isinstance(event, ConnectionClosed):
                break
        assert isinstance(events[0], Err) and isinstance(events[-1], ConnectionClosed), events
        assert session.closed and client.state is State.CLOSED
        self.model.drop()

    @rule(message=MESSAGES)
    def new_mail(self, message: bytes) -> None:
        """Mail delivered during a session shows up only in the next one."""
        uid = self.backend.add(USER, message)
        self.model.store.append((uid, message))

    @precondition(lambda self: self.model.state == "TRANSACTION")
    @rule(how=st.sampled_from(["pass", "apop", "plain"]))
    def second_session_is_locked_out(self, how: str) -> None:
        """RFC 1939 §8 / RFC 2449 §8.1.2: -ERR [IN-USE], nothing changes."""
        other = ServerSession(self.backend, self.auth, self.config, is_loopback=True)
        greeting = other.greeting()
        timestamp = other.timestamp
        assert timestamp is not None and timestamp.encode() in greeting
        if how == "pass":
            line = f"USER {USER}\r\nPASS {PASSWORD}\r\n".encode()
        elif how == "apop":
            line = f"APOP {USER} {pop3proto.apop_digest(timestamp, PASSWORD)}\r\n".encode()
        else:
            blob = pop3proto.sasl_b64encode(b"\x00alice\x00" + PASSWORD.encode())
            line = b"AUTH PLAIN " + blob + b"\r\n"
        other.receive(line)
        out = b"".join(a.data for a in other.actions() if isinstance(a, Send))
        assert out.splitlines()[-1].startswith(b"-ERR [IN-USE]"), out
        other.receive(b"")
        list(other.actions())
        assert other.closed and self.backend.is_locked(USER)

    # -- invariants -----------------------------------------------------------

    @invariant()
    def backend_matches_the_model(self) -> None:
        """Nothing removed but by QUIT, and only what was marked."""
        assert self.backend.messages(USER) == [m for _, m in self.model.store]

    @invariant()
    def lock_held_only_in_transaction(self) -> None:
        live = self.session is not None and not self.session.closed
        assert self.backend.is_locked(USER) == (live and self.model.state == "TRANSACTION")

    @invariant()
    def both_engines_agree(self) -> None:
        if self.session is not None and self.client is not None and not self.session.closed:
            self._check_states()
            assert self.model.state == self.session.state.name, (
                self.model.state,
                self.session.state,
            )


TestSessionMachine = SessionMachine.TestCase

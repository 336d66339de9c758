"""Interop: the pop3proto CLIENT engine against a real Dovecot POP3 server.

The server comes from the fixtures in ``tests/dovecot.py`` (installed by
``.ci/install-peers``).  A tiny blocking socket driver, :class:`Driver`, feeds
whatever ``recv()`` returns to ``pop3proto.Connection(CLIENT)`` and writes
what ``send()`` returns: the engine does all the protocol work, so every
assertion below is about what the engine made of Dovecot's real bytes.

The stdlib ``poplib`` is run against the same server as a baseline.
"""

from __future__ import annotations

import poplib
import socket
import ssl
from collections.abc import Iterator

import pytest

import pop3proto
from pop3proto import (
    AUTH,
    CLIENT,
    NEED_DATA,
    PAUSED,
    Apop,
    Auth,
    Capa,
    CapaOk,
    ConnectionClosed,
    CramMD5Client,
    Dele,
    Err,
    Event,
    Extension,
    Greeting,
    List,
    ListEntryOk,
    ListOk,
    LoginClient,
    MessageData,
    MessageEnd,
    MessageStart,
    Noop,
    Ok,
    Pass,
    PlainClient,
    Quit,
    Retr,
    Rset,
    SaslCancel,
    SaslChallenge,
    SaslClientMechanism,
    SaslResponse,
    ScramClient,
    Stat,
    State,
    StatOk,
    Stls,
    Top,
    Uidl,
    UidlEntryOk,
    UidlOk,
    User,
)
from tests.dovecot import (
    TEST_MESSAGES,
    DovecotServer,
    crlf,
)
from tests.helpers import poplib_body

TIMEOUT = 60.0  # bounds a hang; a loaded machine can be slow
RECV_SIZE = 65536

# Index (0-based) of each message in TEST_MESSAGES; POP3 numbers are +1.
PLAIN, DOTS, UTF8, BIG = range(4)


# ---------------------------------------------------------------------------
# The blocking driver
# ---------------------------------------------------------------------------


class Driver:
    """One POP3 client connection: a socket plus a pop3proto CLIENT engine."""

    def __init__(
        self,
        server: DovecotServer,
        *,
        implicit_tls: bool = False,
        recv_size: int = RECV_SIZE,
        **engine_options: object,
    ) -> None:
        self.server = server
        self.recv_size = recv_size
        port = server.pop3s_port if implicit_tls else server.pop3_port
        sock = socket.create_connection((server.host, port), timeout=TIMEOUT)
        if implicit_tls:
            sock = server.ssl_context().wrap_socket(sock, server_hostname=server.tls_hostname)
        self.sock: socket.socket = sock
        self.conn = pop3proto.Connection(CLIENT, tls=implicit_tls, **engine_options)  # type: ignore[arg-type]
        self.eof = False

    # -- plumbing -----------------------------------------------------------

    def state(self) -> State:
        """The engine's state (a call, so that type checkers don't narrow it)."""
        return self.conn.state

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Driver:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def send(self, *events: Event) -> None:
        """Serialize *events* with the engine and write them in one go."""
        data = b"".join(self.conn.send(event) for event in events)
        self.sock.sendall(data)

    def next_event(self) -> object:
        """The engine's next event, reading from the socket as needed."""
        while True:
            event = self.conn.next_event()
            if event is NEED_DATA:
                assert not self.eof, "engine asked for data after EOF"
                try:
                    data = self.sock.recv(self.recv_size)
                except ConnectionResetError:
                    # Dovecot sometimes hangs up with a RST right after its
                    # last reply (e.g. "Too many invalid bad commands."):
                    # everything it sent has arrived, so this is plain EOF.
                    data = b""
                self.eof = not data
                self.conn.receive_data(data)
                continue
            return event

    def expect(self, kind: type[Event]) -> Event:
        event = self.next_event()
        assert isinstance(event, kind), f"expected {kind.__name__}, got {event!r}"
        return event

    # -- conversations ------------------------------------------------------

    def greeting(self) -> Greeting:
        greeting = self.expect(Greeting)
        assert isinstance(greeting, Greeting)
        assert self.state() is State.AUTHORIZATION
        return greeting

    def command(self, event: Event) -> object:
        """Send one command and return the (first) reply event."""
        self.send(event)
        return self.next_event()

    def ok(self, event: Event) -> Event:
        reply = self.command(event)
        assert isinstance(reply, Event) and not isinstance(reply, Err), f"{event!r} -> {reply!r}"
        return reply

    def capa(self) -> pop3proto.Capabilities:
        reply = self.command(Capa())
        assert isinstance(reply, CapaOk), reply
        assert self.conn.capabilities == reply.capabilities
        return reply.capabilities

    def body(self) -> tuple[MessageStart | Err, bytes]:
        """Read one RETR/TOP reply: (MessageStart, octets) or (Err, b"")."""
        start = self.next_event()
        if isinstance(start, Err):
            return start, b""
        assert isinstance(start, MessageStart), start
        chunks: list[bytes] = []
        while True:
            event = self.next_event()
            if isinstance(event, MessageEnd):
                return start, b"".join(chunks)
            assert isinstance(event, MessageData), event
            chunks.append(event.data)

    def retr(self, number: int) -> bytes:
        self.send(Retr(number))
        start, data = self.body()
        assert isinstance(start, MessageStart), f"RETR {number} -> {start!r}"
        return data

    def login(self, user: str | None = None, password: str | None = None) -> None:
        user = self.server.user if user is None else user
        password = self.server.users[user] if password is None else password
        assert isinstance(self.ok(User(user)), Ok)
        assert self.state() is State.USER_OK
        assert isinstance(self.ok(Pass(password)), Ok)
        assert self.state() is State.TRANSACTION

    def sasl(self, mechanism: SaslClientMechanism, *, send_initial_response: bool = True) -> object:
        """Run one AUTH exchange with *mechanism*; return the final reply."""
        initial = mechanism.initial_response() if send_initial_response else None
        self.send(Auth(mechanism.name, initial))
        while True:
            event = self.next_event()
            if not isinstance(event, SaslChallenge):
                return event
            assert self.state() is State.SASL
            assert self.next_event() is PAUSED  # the client owes a response
            self.send(SaslResponse(mechanism.respond(event.data)))

    def starttls(self) -> None:
        reply = self.command(Stls())
        assert isinstance(reply, Ok), reply
        assert self.state() is State.TLS_PENDING
        assert self.next_event() is PAUSED
        self.sock = self.server.ssl_context().wrap_socket(
            self.sock, server_hostname=self.server.tls_hostname
        )
        self.conn.tls_established()
        assert self.state() is State.AUTHORIZATION
        assert self.conn.tls
        assert self.conn.capabilities is None

    def quit(self) -> Ok:
        reply = self.command(Quit())
        assert isinstance(reply, Ok), reply
        assert self.state() is State.CLOSED
        closed = self.next_event()
        assert isinstance(closed, ConnectionClosed), closed
        assert not closed.outcome_unknown
        return reply


@pytest.fixture
def client(dovecot: DovecotServer, dovecot_mailbox: list[bytes]) -> Iterator[Driver]:
    """A fresh connection, greeting already read, mailbox reset."""
    with Driver(dovecot) as driver:
        driver.greeting()
        yield driver


@pytest.fixture
def logged_in(client: Driver) -> Driver:
    client.login()
    return client


def top_of(expected: bytes, lines: int) -> bytes:
    """What TOP returns for a served (CRLF) message: header, blank line, *lines* lines."""
    head, sep, body = expected.partition(b"\r\n\r\n")
    assert sep
    body_lines = body.split(b"\r\n")[:-1]  # expected ends with CRLF
    return head + sep + b"".join(line + b"\r\n" for line in body_lines[:lines])


# ---------------------------------------------------------------------------
# Greeting and capabilities
# ---------------------------------------------------------------------------


def test_greeting_has_apop_timestamp(client: Driver) -> None:
    greeting = client.conn.greeting
    assert isinstance(greeting, Greeting)
    assert greeting.text.startswith("Dovecot")
    ts = greeting.timestamp
    assert ts is not None, greeting.text
    assert ts.startswith("<") and ts.endswith(">") and "@" in ts
    assert ts in greeting.text


def test_capa_before_login(client: Driver) -> None:
    caps = client.capa()
    assert caps.pipelining
    assert caps.uidl
    assert caps.top
    assert caps.user
    assert caps.resp_codes
    assert caps.auth_resp_code
    assert caps.stls
    assert set(caps.sasl) == {
        "PLAIN",
        "LOGIN",
        "CRAM-MD5",
        "SCRAM-SHA-1",
        "SCRAM-SHA-256",
        "XOAUTH2",
        "OAUTHBEARER",
    }
    assert "CAPA" in caps
    # Round trip: what the engine parsed renders back to Dovecot's lines.
    assert pop3proto.Capabilities.from_lines(caps.to_lines()) == caps


def test_capa_after_login_drops_login_capabilities(logged_in: Driver) -> None:
    caps = logged_in.capa()
    assert caps.pipelining and caps.uidl and caps.top and caps.resp_codes
    assert not caps.stls
    assert not caps.sasl


# ---------------------------------------------------------------------------
# Authentication
# ---------------------------------------------------------------------------


def test_user_pass(client: Driver) -> None:
    client.login()
    stat = client.command(Stat())
    assert isinstance(stat, StatOk)
    assert stat.count == len(TEST_MESSAGES)
    client.quit()


def test_user_pass_password_with_space(client: Driver) -> None:
    client.login("bob")  # "pass word!"
    client.quit()


def test_non_ascii_password_refused_without_utf8_capability(
    dovecot: DovecotServer, client: Driver
) -> None:
    # Dovecot 2.3 advertises neither UTF8 nor "UTF8 USER": the engine must
    # refuse to send a non-ASCII PASS (RFC 6856 §2.2) ...
    caps = client.capa()
    assert not caps.utf8 and not caps.utf8_user
    assert isinstance(client.ok(User("carol")), Ok)
    with pytest.raises(pop3proto.LocalProtocolError):
        client.conn.send(Pass(dovecot.users["carol"]))


def test_auth_plain_utf8_password(dovecot: DovecotServer, client: Driver) -> None:
    # ... while SASL carries UTF-8 credentials fine (RFC 4616).
    reply = client.sasl(PlainClient("carol", dovecot.users["carol"]))
    assert isinstance(reply, Ok), reply
    client.quit()


def test_apop(dovecot: DovecotServer, client: Driver) -> None:
    ts = client.conn.greeting.timestamp  # type: ignore[union-attr]
    assert ts is not None
    digest = pop3proto.apop_digest(ts, dovecot.password)
    reply = client.command(Apop(dovecot.user, digest))
    assert isinstance(reply, Ok), reply
    assert client.state() is State.TRANSACTION
    client.quit()


def test_apop_wrong_digest(dovecot: DovecotServer, client: Driver) -> None:
    ts = client.conn.greeting.timestamp  # type: ignore[union-attr]
    assert ts is not None
    reply = client.command(Apop(dovecot.user, pop3proto.apop_digest(ts, "wrong")))
    assert isinstance(reply, Err), reply
    assert client.state() is State.AUTHORIZATION


def test_auth_plain_initial_response(dovecot: DovecotServer, client: Driver) -> None:
    reply = client.sasl(PlainClient(dovecot.user, dovecot.password))
    assert isinstance(reply, Ok), reply
    assert client.state() is State.TRANSACTION
    client.quit()


def test_auth_plain_without_initial_response(dovecot: DovecotServer, client: Driver) -> None:
    mech = PlainClient("bob", dovecot.users["bob"])
    reply = client.sasl(mech, send_initial_response=False)
    assert isinstance(reply, Ok), reply
    assert mech.complete
    assert client.state() is State.TRANSACTION


def test_auth_login(dovecot: DovecotServer, client: Driver) -> None:
    mech = LoginClient(dovecot.user, dovecot.password)
    reply = client.sasl(mech)
    assert isinstance(reply, Ok), reply
    assert mech.complete
    assert client.state() is State.TRANSACTION
    client.quit()


def test_auth_cram_md5(dovecot: DovecotServer, client: Driver) -> None:
    mech = CramMD5Client(dovecot.user, dovecot.password)
    reply = client.sasl(mech)
    assert isinstance(reply, Ok), reply
    assert mech.complete
    assert client.state() is State.TRANSACTION
    client.quit()


@pytest.mark.parametrize("hash_name", ["sha1", "sha256"])
@pytest.mark.parametrize("user", ["alice", "carol"])
def test_auth_scram(dovecot: DovecotServer, client: Driver, hash_name: str, user: str) -> None:
    mech = ScramClient(user, dovecot.users[user], hash_name=hash_name)
    reply = client.sasl(mech)
    assert isinstance(reply, Ok), reply
    assert mech.complete  # Dovecot's server signature was verified
    assert client.state() is State.TRANSACTION
    client.quit()


def test_auth_scram_wrong_password(dovecot: DovecotServer, client: Driver) -> None:
    mech = ScramClient(dovecot.user, "wrong")
    reply = client.sasl(mech)
    assert isinstance(reply, Err), reply
    assert reply.code == AUTH
    assert not mech.complete
    assert client.state() is State.AUTHORIZATION


def test_auth_unsupported_mechanism(client: Driver) -> None:
    # (XOAUTH2 is configured now, for the OAuth 2.0 tests: GSSAPI is not.)
    reply = client.command(Auth("GSSAPI", b"not a ticket"))
    assert isinstance(reply, Err), reply
    assert client.state() is State.AUTHORIZATION
    client.login()


def test_auth_cram_md5_wrong_password(dovecot: DovecotServer, client: Driver) -> None:
    reply = client.sasl(CramMD5Client(dovecot.user, "wrong"))
    assert isinstance(reply, Err), reply
    assert reply.code == AUTH
    assert client.state() is State.AUTHORIZATION


def test_wrong_password_then_right_one(dovecot: DovecotServer, client: Driver) -> None:
    assert isinstance(client.ok(User(dovecot.user)), Ok)
    reply = client.command(Pass("wrong"))
    assert isinstance(reply, Err), reply
    assert reply.code == AUTH
    assert reply.text == "Authentication failed."
    assert client.state() is State.AUTHORIZATION
    # The session goes on: the right password now works.
    client.login()


def test_auth_plain_wrong_password(dovecot: DovecotServer, client: Driver) -> None:
    reply = client.sasl(PlainClient(dovecot.user, "wrong"))
    assert isinstance(reply, Err), reply
    assert reply.code == AUTH
    assert client.state() is State.AUTHORIZATION


def test_sasl_cancel(dovecot: DovecotServer, client: Driver) -> None:
    client.send(Auth("LOGIN"))
    challenge = client.next_event()
    assert isinstance(challenge, SaslChallenge), challenge
    assert client.next_event() is PAUSED
    client.send(SaslCancel())
    reply = client.next_event()
    assert isinstance(reply, Err), reply
    assert client.state() is State.AUTHORIZATION
    client.login()


def test_unknown_command_is_err(client: Driver) -> None:
    reply = client.command(Extension("XYZZ"))
    assert isinstance(reply, Err), reply
    assert client.state() is State.AUTHORIZATION
    client.login()


def test_too_many_bad_commands_before_login(client: Driver) -> None:
    # pop3-login answers 3 unknown commands, refuses the 4th and hangs up.
    for _ in range(3):
        reply = client.command(Extension("XYZZ"))
        assert isinstance(reply, Err) and reply.text == "Unknown command.", reply
    reply = client.command(Extension("XYZZ"))
    assert isinstance(reply, Err) and reply.text == "Too many invalid bad commands.", reply
    closed = client.next_event()
    assert isinstance(closed, ConnectionClosed), closed
    assert client.state() is State.CLOSED


def test_too_many_bad_commands_pipelined_in_transaction(logged_in: Driver) -> None:
    # The pop3 process answers 21 unknown commands, refuses the 22nd and
    # hangs up with 3 more still outstanding: the engine must parse all 22
    # replies and then report the lost commands.
    assert logged_in.capa().pipelining
    logged_in.send(*[Extension("XYZZ", (str(i),)) for i in range(25)])
    for i in range(21):
        reply = logged_in.next_event()
        assert isinstance(reply, Err) and reply.text.startswith("Unknown command"), (i, reply)
    reply = logged_in.next_event()
    assert isinstance(reply, Err) and reply.text == "Too many bad commands.", reply
    # EOF with commands unanswered (and no QUIT or failed login to excuse
    # it) is the server breaking the protocol, as the engine documents.
    with pytest.raises(pop3proto.RemoteProtocolError, match="3 command"):
        logged_in.next_event()
    assert logged_in.state() is State.ERROR


def test_quit_in_authorization(client: Driver) -> None:
    client.quit()


# ---------------------------------------------------------------------------
# Transaction
# ---------------------------------------------------------------------------


def test_stat_list_uidl(logged_in: Driver, dovecot_mailbox: list[bytes]) -> None:
    sizes = {n: len(m) for n, m in enumerate(dovecot_mailbox, 1)}
    stat = logged_in.command(Stat())
    assert stat == StatOk(len(sizes), sum(sizes.values()))

    listing = logged_in.command(List())
    assert isinstance(listing, ListOk), listing
    assert listing.sizes == sizes

    entry = logged_in.command(List(2))
    assert entry == ListEntryOk(2, sizes[2])

    uidl = logged_in.command(Uidl())
    assert isinstance(uidl, UidlOk), uidl
    assert sorted(uidl.uids) == list(sizes)
    uids = list(uidl.uids.values())
    assert len(set(uids)) == len(uids)
    for uid in uids:  # pop3_uidl_format = %08Xu%08Xv
        assert len(uid) == 16 and int(uid, 16) >= 0

    one = logged_in.command(Uidl(3))
    assert one == UidlEntryOk(3, uidl.uids[3])

    missing = logged_in.command(List(99))
    assert isinstance(missing, Err), missing
    assert isinstance(logged_in.command(Noop()), Ok)
    logged_in.quit()


@pytest.mark.parametrize("index", [PLAIN, DOTS, UTF8, BIG], ids=["plain", "dots", "utf8", "5MB"])
def test_retr_byte_for_byte(logged_in: Driver, dovecot_mailbox: list[bytes], index: int) -> None:
    data = logged_in.retr(index + 1)
    assert len(data) == len(dovecot_mailbox[index])
    assert data == dovecot_mailbox[index]
    assert data == crlf(TEST_MESSAGES[index])


def test_retr_all_in_one_session(logged_in: Driver, dovecot_mailbox: list[bytes]) -> None:
    for number, expected in enumerate(dovecot_mailbox, 1):
        assert logged_in.retr(number) == expected
    logged_in.quit()


def test_dot_lines_survive(logged_in: Driver) -> None:
    lines = logged_in.retr(DOTS + 1).split(b"\r\n")
    for line in (b".first line is dotted", b".", b"..", b".x", b"...", b".last line is dotted"):
        assert line in lines
    assert lines[-2] == b".last line is dotted"
    assert lines[-1] == b""


@pytest.mark.parametrize("lines", [0, 1, 3, 1000])
@pytest.mark.parametrize("index", [PLAIN, DOTS, UTF8])
def test_top(logged_in: Driver, dovecot_mailbox: list[bytes], index: int, lines: int) -> None:
    logged_in.send(Top(index + 1, lines))
    start, data = logged_in.body()
    assert isinstance(start, MessageStart), start
    assert data == top_of(dovecot_mailbox[index], lines)


def test_top_big_message_headers(logged_in: Driver, dovecot_mailbox: list[bytes]) -> None:
    logged_in.send(Top(BIG + 1, 2))
    start, data = logged_in.body()
    assert isinstance(start, MessageStart)
    assert data == top_of(dovecot_mailbox[BIG], 2)


def test_retr_missing_message(logged_in: Driver) -> None:
    logged_in.send(Retr(99))
    start, data = logged_in.body()
    assert isinstance(start, Err), start
    assert data == b""
    assert logged_in.state() is State.TRANSACTION


def test_dele_rset_quit(dovecot: DovecotServer, logged_in: Driver) -> None:
    n = len(TEST_MESSAGES)
    assert isinstance(logged_in.ok(Dele(1)), Ok)
    assert logged_in.command(Stat()) == StatOk(n - 1, sum(map(len, map(crlf, TEST_MESSAGES[1:]))))
    assert isinstance(logged_in.command(Dele(1)), Err)  # already deleted
    logged_in.send(Retr(1))
    assert isinstance(logged_in.body()[0], Err)
    listing = logged_in.command(List())
    assert isinstance(listing, ListOk) and 1 not in listing.sizes

    assert isinstance(logged_in.ok(Rset()), Ok)
    stat = logged_in.command(Stat())
    assert isinstance(stat, StatOk) and stat.count == n

    assert isinstance(logged_in.ok(Dele(2)), Ok)
    assert isinstance(logged_in.ok(Dele(4)), Ok)
    logged_in.quit()  # UPDATE: Dovecot expunges 2 and 4
    logged_in.close()

    assert len(dovecot.message_files()) == n - 2
    with Driver(dovecot) as again:
        again.greeting()
        again.login()
        stat = again.command(Stat())
        assert isinstance(stat, StatOk) and stat.count == n - 2
        assert again.retr(1) == crlf(TEST_MESSAGES[PLAIN])
        assert again.retr(2) == crlf(TEST_MESSAGES[UTF8])
        again.quit()


def test_drop_without_quit_deletes_nothing(dovecot: DovecotServer, logged_in: Driver) -> None:
    assert isinstance(logged_in.ok(Dele(1)), Ok)
    logged_in.close()  # no QUIT: no UPDATE state, nothing is expunged
    dovecot.wait_idle()
    assert len(dovecot.message_files()) == len(TEST_MESSAGES)


@pytest.mark.parametrize("recv_size", [1, 7])
def test_tiny_reads(dovecot: DovecotServer, dovecot_mailbox: list[bytes], recv_size: int) -> None:
    """Dovecot's bytes fed to the engine a few at a time give the same results."""
    sizes = {n: len(m) for n, m in enumerate(dovecot_mailbox, 1)}
    with Driver(dovecot, recv_size=recv_size) as drv:
        assert drv.greeting().timestamp is not None
        assert drv.capa().pipelining
        assert isinstance(drv.sasl(CramMD5Client(dovecot.user, dovecot.password)), Ok)
        listing = drv.command(List())
        assert isinstance(listing, ListOk) and listing.sizes == sizes
        uidl = drv.command(Uidl())
        assert isinstance(uidl, UidlOk) and sorted(uidl.uids) == list(sizes)
        for index in (PLAIN, DOTS, UTF8):
            assert drv.retr(index + 1) == dovecot_mailbox[index]
        drv.send(Top(DOTS + 1, 4))
        start, data = drv.body()
        assert isinstance(start, MessageStart) and data == top_of(dovecot_mailbox[DOTS], 4)
        drv.quit()


# ---------------------------------------------------------------------------
# Pipelining
# ---------------------------------------------------------------------------


def test_pipelined_retrs(logged_in: Driver, dovecot_mailbox: list[bytes]) -> None:
    assert logged_in.capa().pipelining
    n = len(dovecot_mailbox)
    batch: list[Event] = [Retr(i) for i in range(1, n + 1)]
    batch += [Stat(), List(), Uidl(), Top(DOTS + 1, 2), Retr(99), Noop(), Retr(PLAIN + 1)]
    logged_in.send(*batch)
    assert len(logged_in.conn.outstanding) == len(batch)
    for expected in dovecot_mailbox:
        start, data = logged_in.body()
        assert isinstance(start, MessageStart)
        assert data == expected
    assert isinstance(logged_in.next_event(), StatOk)
    assert isinstance(logged_in.next_event(), ListOk)
    assert isinstance(logged_in.next_event(), UidlOk)
    start, data = logged_in.body()
    assert isinstance(start, MessageStart) and data == top_of(dovecot_mailbox[DOTS], 2)
    start, _ = logged_in.body()
    assert isinstance(start, Err)
    assert isinstance(logged_in.next_event(), Ok)
    start, data = logged_in.body()
    assert isinstance(start, MessageStart) and data == dovecot_mailbox[PLAIN]
    assert logged_in.conn.outstanding == ()
    logged_in.quit()


def test_pipelined_login_and_delete_all(dovecot: DovecotServer, client: Driver) -> None:
    assert client.capa().pipelining
    client.send(User(dovecot.user), Pass(dovecot.password))
    assert isinstance(client.next_event(), Ok)
    assert isinstance(client.next_event(), Ok)
    assert client.state() is State.TRANSACTION
    assert client.capa().pipelining
    n = len(TEST_MESSAGES)
    client.send(*[Dele(i) for i in range(1, n + 1)], Stat(), Quit())
    for _ in range(n):
        assert isinstance(client.next_event(), Ok)
    assert client.next_event() == StatOk(0, 0)
    assert isinstance(client.next_event(), Ok)
    assert client.state() is State.CLOSED
    assert isinstance(client.next_event(), ConnectionClosed)
    assert dovecot.message_files() == []


def test_many_messages_listing(dovecot: DovecotServer) -> None:
    count = 400
    messages = [
        b"Subject: m%d\n\n" % i + b"line\n" * (i % 7) + (b".\n" if i % 3 == 0 else b"")
        for i in range(count)
    ]
    expected = dovecot.populate(messages)
    with Driver(dovecot) as drv:
        drv.greeting()
        drv.login()
        listing = drv.command(List())
        assert isinstance(listing, ListOk)
        assert listing.sizes == {i: len(m) for i, m in enumerate(expected, 1)}
        uidl = drv.command(Uidl())
        assert isinstance(uidl, UidlOk) and len(uidl.uids) == count
        assert drv.capa().pipelining
        drv.send(*[Retr(i) for i in range(1, count + 1)])
        for want in expected:
            start, data = drv.body()
            assert isinstance(start, MessageStart)
            assert data == want
        drv.quit()


def test_odd_line_ends_and_missing_final_newline(dovecot: DovecotServer) -> None:
    messages = [
        b"Subject: crlf already\r\n\r\nbody\r\n.\r\n",
        b"Subject: no final newline\n\nlast line",
        b"Subject: empty body\n\n",
    ]
    dovecot.populate(messages)
    with Driver(dovecot) as drv:
        drv.greeting()
        drv.login()
        assert drv.retr(1) == messages[0]
        # Dovecot ends the served text with CRLF before the terminator.
        assert drv.retr(2) == crlf(messages[1]) + b"\r\n"
        assert drv.retr(3) == crlf(messages[2])
        drv.quit()


# ---------------------------------------------------------------------------
# TLS
# ---------------------------------------------------------------------------


def test_stls(dovecot: DovecotServer, client: Driver, dovecot_mailbox: list[bytes]) -> None:
    assert client.capa().stls
    client.starttls()
    assert isinstance(client.sock, ssl.SSLSocket)
    caps = client.capa()
    assert not caps.stls  # already under TLS
    assert caps.user and caps.pipelining
    assert "PLAIN" in caps.sasl
    reply = client.sasl(PlainClient(dovecot.user, dovecot.password))
    assert isinstance(reply, Ok), reply
    assert client.retr(DOTS + 1) == dovecot_mailbox[DOTS]
    client.quit()


def test_stls_refused_after_tls(client: Driver) -> None:
    client.starttls()
    # The engine itself refuses a second STLS (RFC 2595 §4).
    with pytest.raises(pop3proto.LocalProtocolError):
        client.conn.send(Stls())


def test_implicit_tls(dovecot: DovecotServer, dovecot_mailbox: list[bytes]) -> None:
    with Driver(dovecot, implicit_tls=True) as drv:
        greeting = drv.greeting()
        assert greeting.timestamp is not None
        assert drv.conn.tls
        caps = drv.capa()
        assert not caps.stls
        assert caps.user and caps.pipelining
        drv.login()
        assert drv.retr(BIG + 1) == dovecot_mailbox[BIG]
        assert drv.retr(UTF8 + 1) == dovecot_mailbox[UTF8]
        drv.quit()


def test_tls_rejects_untrusted_certificate(dovecot: DovecotServer) -> None:
    """The CA really matters: a default context must not accept the server."""
    ctx = ssl.create_default_context()
    with (
        socket.create_connection((dovecot.host, dovecot.pop3s_port), timeout=TIMEOUT) as sock,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        ctx.wrap_socket(sock, server_hostname=dovecot.tls_hostname)


# ---------------------------------------------------------------------------
# poplib baseline
# ---------------------------------------------------------------------------


def _poplib_retr(pop: poplib.POP3, number: int) -> bytes:
    _, lines, _ = pop.retr(number)
    return poplib_body(lines)


def test_poplib_baseline(dovecot: DovecotServer, dovecot_mailbox: list[bytes]) -> None:
    pop = poplib.POP3(dovecot.host, dovecot.pop3_port, timeout=TIMEOUT)
    try:
        caps = pop.capa()
        assert "PIPELINING" in caps and "STLS" in caps
        pop.user(dovecot.user)
        pop.pass_(dovecot.password)
        assert pop.stat() == (len(dovecot_mailbox), sum(map(len, dovecot_mailbox)))
        for number, expected in enumerate(dovecot_mailbox, 1):
            assert _poplib_retr(pop, number) == expected
        # poplib and the engine agree on the listings.
        _, uid_lines, _ = pop.uidl()
        poplib_uids = {int(n): u.decode() for n, u in (line.split() for line in uid_lines)}
        pop.quit()
    finally:
        pop.close()
    with Driver(dovecot) as drv:
        drv.greeting()
        drv.login()
        uidl = drv.command(Uidl())
        assert isinstance(uidl, UidlOk)
        assert uidl.uids == poplib_uids
        drv.quit()


def test_poplib_apop_and_stls(dovecot: DovecotServer, dovecot_mailbox: list[bytes]) -> None:
    pop = poplib.POP3(dovecot.host, dovecot.pop3_port, timeout=TIMEOUT)
    try:
        pop.stls(dovecot.ssl_context())
        pop.apop(dovecot.user, dovecot.password)
        _, lines, _ = pop.top(DOTS + 1, 3)
        assert poplib_body(lines) == top_of(dovecot_mailbox[DOTS], 3)
        pop.quit()
    finally:
        pop.close()


def test_poplib_pop3s(dovecot: DovecotServer, dovecot_mailbox: list[bytes]) -> None:
    pop = poplib.POP3_SSL(
        dovecot.host, dovecot.pop3s_port, context=dovecot.ssl_context(), timeout=TIMEOUT
    )
    try:
        pop.user("bob")
        pop.pass_(dovecot.users["bob"])
        assert _poplib_retr(pop, UTF8 + 1) == dovecot_mailbox[UTF8]
        pop.quit()
    finally:
        pop.close()

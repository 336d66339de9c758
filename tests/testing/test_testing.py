"""pop3proto.testing: the public helpers for testing POP3 code, tested the
way a user meets them (the done-when test, from a fresh venv, is in
test_downstream.py)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable, Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pop3proto as p
from pop3proto.adapters.testing import SessionUnderTest, session_factory
from pop3proto.testing import (
    ConnectionPair,
    FakeServer,
    Mailbox,
    Mismatch,
    ServerUnderTest,
    Step,
    check_client,
    check_server,
    drain,
    run_script,
)
from pop3proto.testing import strategies as pst
from tests.engine.test_api import IO_MODULES, modules_loaded_by

MAILBOX = Mailbox(
    "alice", "pw", (b"Subject: a\r\n\r\n.dot\r\n", b"", b"Subject: b\r\n\r\nx\r\ny\r\n")
)


def steps(*lines: bytes) -> list[Step]:
    return [Step(line, (line + b"\r\n",)) for line in lines]


# ---------------------------------------------------------------------------
# The package itself
# ---------------------------------------------------------------------------


def test_import_is_light() -> None:
    """Part of the engine package: no I/O module, no adapters, and hypothesis
    only once the strategies or a property runner are used."""
    baseline = modules_loaded_by("pass")
    loaded = modules_loaded_by("import pop3proto.testing") - baseline
    assert "pop3proto.testing" in loaded
    assert sorted(set(IO_MODULES) & loaded) == []
    assert not any(m.startswith(("hypothesis", "pop3proto.adapters")) for m in loaded)
    code = "import sys, pop3proto.testing as t; a = 'hypothesis' in sys.modules; t.check_server; "
    code += "print(a, 'hypothesis' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.split() == ["False", "True"], proc.stderr


def test_all_matches_the_module() -> None:
    import pop3proto.testing as t

    assert all(hasattr(t, name) for name in t.__all__)
    with pytest.raises(AttributeError):
        t.no_such_thing  # noqa: B018


def test_drain_stops_after_connection_closed() -> None:
    pair = ConnectionPair()
    pair.transfer(p.SERVER, p.Greeting("hi"))
    pair.transfer(p.CLIENT, p.Quit())
    events = pair.transfer(p.SERVER, p.Ok("bye"))
    assert events == [p.Ok("bye"), p.ConnectionClosed(p.CloseReason.SESSION_ENDED)]
    assert drain(pair.client) == [p.ConnectionClosed(p.CloseReason.SESSION_ENDED)]
    assert pair.other(p.CLIENT) is p.SERVER and pair.other(p.SERVER) is p.CLIENT


def test_connection_pair_options_and_eof() -> None:
    pair = ConnectionPair(server_kwargs={"max_command_size": 16})
    pair.transfer(p.SERVER, p.Greeting("hi"))
    assert pair.deliver(p.CLIENT, b"X" * 20 + b"\r\n")[0] == p.BadCommand(
        b"X" * 14, "command line too long"
    )
    pair.server.send(p.Err("too long"))
    assert pair.transfer(p.CLIENT, p.ConnectionClosed()) == [p.ConnectionClosed()]


# ---------------------------------------------------------------------------
# check_server: the bundled server passes, broken ones fail
# ---------------------------------------------------------------------------


def test_bundled_server_passes() -> None:
    check_server(session_factory(), max_examples=60)


def test_bare_lf_messages_show_a_rewriting_store() -> None:
    """The memory backend serves bare LFs as CRLF: on a mailbox with one,
    the exact-octets check reports it."""
    box = Mailbox("alice", "pw", (b"Subject: a\r\n\r\nbare\nLF\r\n",))
    with pytest.raises(Mismatch, match="STAT"):
        run_script(session_factory()(box), box, steps(b"USER alice", b"PASS pw", b"STAT"))


class _Wrapped:
    def __init__(self, inner: ServerUnderTest) -> None:
        self.inner = inner

    @property
    def closed(self) -> bool:
        return self.inner.closed

    def start(self) -> bytes:
        return self.inner.start()

    def receive(self, data: bytes) -> bytes:
        return self.inner.receive(data)

    def close(self) -> None:
        self.inner.close()


class _CommitsOnDrop(_Wrapped):
    """Applies DELE even when the client goes away without QUIT."""

    def close(self) -> None:
        if not self.inner.closed:
            self.inner.receive(b"QUIT\r\n")
        self.inner.close()


class _WrongSizes(_Wrapped):
    def receive(self, data: bytes) -> bytes:
        return re.sub(
            rb"^(\+OK \d+ )(\d+)", lambda m: m[1] + b"%d" % (int(m[2]) + 1), super().receive(data)
        )


def _broken(cls: type[_Wrapped]) -> object:
    base = session_factory()

    def factory(box: Mailbox) -> Callable[[], ServerUnderTest]:
        connect = base(box)
        return lambda: cls(connect())

    return factory


@pytest.mark.parametrize(
    ("cls", "message"),
    [(_CommitsOnDrop, "maildrop is wrong"), (_WrongSizes, "octets|STAT")],
)
def test_broken_servers_fail(cls: type[_Wrapped], message: str) -> None:
    with pytest.raises(BaseException, match=message):
        check_server(_broken(cls), max_examples=200)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("lines", "reply", "message"),
    [
        ((b"NOOP",), b"+OK\r\n", "expected -ERR"),
        ((b"CAPA",), b"+OK\r\nUSER\r\n", "expected the rest"),
        ((b"CAPA",), b"+OK\r\n.\r\n+OK\r\n", "extra bytes"),
        ((b"CAPA",), b"OK\r\n", "not a status line"),
    ],
)
def test_run_script_reports_bad_replies(
    lines: tuple[bytes, ...], reply: bytes, message: str
) -> None:
    class Fixed(_Wrapped):
        def receive(self, data: bytes) -> bytes:
            return reply

    connect = session_factory()(MAILBOX)
    with pytest.raises(Mismatch, match=message):
        run_script(lambda: Fixed(connect()), MAILBOX, steps(*lines))


def test_run_script_model_checks(tmp_path: object) -> None:
    """A full legal session against the reference fake server and the
    bundled one: the model agrees with both."""
    lines: tuple[bytes, ...] = (b"USER alice", b"PASS pw", b"STAT", b"LIST", b"UIDL")
    lines += (b"LIST 2", b"UIDL 1")
    lines += (b"RETR 1", b"TOP 3 1", b"DELE 2", b"RETR 2", b"RSET", b"DELE 1", b"QUIT")
    model = run_script(session_factory()(MAILBOX), MAILBOX, steps(*lines))
    assert model.committed and model.remaining() == MAILBOX.messages[1:]


def test_greeting_err_and_no_close_after_quit_are_mismatches() -> None:
    class ErrGreeting(_Wrapped):
        def start(self) -> bytes:
            self.inner.start()
            return b"-ERR go away\r\n"

    class StaysOpen(_Wrapped):
        @property
        def closed(self) -> bool:
            return False

    connect = session_factory()(MAILBOX)
    with pytest.raises(Mismatch, match="greeting"):
        run_script(lambda: ErrGreeting(connect()), MAILBOX, steps(b"QUIT"))
    with pytest.raises(Mismatch, match="did not close"):
        run_script(lambda: StaysOpen(connect()), MAILBOX, steps(b"QUIT"))


# ---------------------------------------------------------------------------
# check_client: a client built on the engine against the fake server
# ---------------------------------------------------------------------------


def engine_download(server: ServerUnderTest, user: str, password: str) -> Mapping[int, bytes]:
    """A minimal client on the bare engine, as a user would write one."""
    conn = p.Connection(p.CLIENT)
    conn.receive_data(server.start())

    def events() -> list[p.Event]:
        got: list[p.Event] = []
        while True:
            new = drain(conn)
            got += new
            if (new and isinstance(new[-1], (p.Ok, p.Err, p.StatOk, p.ListOk, p.MessageEnd))) or (
                new and isinstance(new[-1], (p.Greeting, p.ConnectionClosed))
            ):
                return got
            if server.closed:
                conn.receive_data(b"")
                got += drain(conn)
                return got

    def ask(cmd: p.Event) -> list[p.Event]:
        conn.receive_data(server.receive(conn.send(cmd)) or b"")
        return events()

    first = events()
    if not first or not isinstance(first[0], p.Greeting):
        raise ConnectionError("no greeting")
    for cmd in (p.User(user), p.Pass(password)):
        if not isinstance(ask(cmd)[0], p.Ok):
            raise ConnectionError("login failed")
    [listing, *_] = ask(p.List())
    if not isinstance(listing, p.ListOk):
        raise ConnectionError("no listing")
    messages = {}
    for n in listing.sizes:
        got = ask(p.Retr(n))
        if not got or not isinstance(got[-1], p.MessageEnd):
            raise ConnectionError("cut")
        messages[n] = b"".join(e.data for e in got if isinstance(e, p.MessageData))
    ask(p.Quit())
    return messages


def test_engine_client_passes() -> None:
    check_client(engine_download, max_examples=80, errors=(ConnectionError, p.ProtocolError))


def test_a_client_that_returns_partial_data_fails() -> None:
    def sloppy(server: ServerUnderTest, user: str, password: str) -> Mapping[int, bytes]:
        try:
            return engine_download(server, user, password)
        except Exception:
            return {}  # the bug: a cut connection looks like an empty mailbox

    with pytest.raises(AssertionError, match="expected"):
        check_client(sloppy, max_examples=200, errors=(p.ProtocolError,))


def test_a_client_that_fails_without_a_fault_fails() -> None:
    def fragile(server: ServerUnderTest, user: str, password: str) -> Mapping[int, bytes]:
        raise ConnectionError("always")

    with pytest.raises(ConnectionError):
        check_client(fragile, max_examples=20, errors=(ConnectionError,))


def test_fake_server_answers_like_the_model() -> None:
    """The fake server used for clients passes the server check itself."""
    lines: tuple[bytes, ...] = (b"USER alice", b"PASS pw", b"STAT", b"LIST", b"UIDL")
    lines += (b"LIST 2", b"UIDL 1")
    lines += (b"RETR 1", b"TOP 3 1", b"DELE 2", b"RETR 2", b"RSET", b"NOOP", b"XYZ", b"RETR 9")
    lines += (b"LIST 9", b"UIDL 9", b"DELE 9")
    run_script(lambda: FakeServer(MAILBOX), MAILBOX, steps(*lines))
    odd = FakeServer(MAILBOX, odd=True)
    assert odd.start() == b"+OK\r\n"
    assert odd.receive(b"CAPA\r\n").endswith(b"X-ODD 1\r\n.\r\n")
    cut = FakeServer(MAILBOX, cut_at=3)
    assert cut.start() == b"+OK" and cut.closed and cut.receive(b"NOOP\r\n") == b""


def test_fake_server_end_of_stream_and_quit_before_login() -> None:
    """EOF from the client closes the fake server without a reply; QUIT
    before login says goodbye and removes nothing (RFC 1939 §6: no UPDATE
    state without a login)."""
    gone = FakeServer(MAILBOX)
    gone.start()
    assert gone.receive(b"") == b"" and gone.closed
    early = FakeServer(MAILBOX)
    early.start()
    assert early.receive(b"QUIT\r\n").startswith(b"+OK") and early.closed
    assert early.removed == set()
    plain = FakeServer(MAILBOX)  # it offers no STLS, so it refuses one
    plain.start()
    assert plain.receive(b"STLS\r\n").startswith(b"-ERR")


# ---------------------------------------------------------------------------
# The strategies
# ---------------------------------------------------------------------------


@settings(max_examples=200)
@given(cmd=pst.commands())
def test_every_generated_command_round_trips(cmd: p.Command) -> None:
    line = p.Connection  # the serializer is the client role's; parse it back
    del line
    from pop3proto._commands import write_command

    wire = write_command(cmd, 4096)
    assert p.command_from_line(wire[:-2]) == cmd


@given(event=pst.responses())
def test_every_generated_response_is_a_valid_event(event: p.Event) -> None:
    assert isinstance(event, p.Event)


@given(line=pst.almost_valid_command_lines())
def test_almost_valid_command_lines_are_refused(line: bytes) -> None:
    connect = session_factory()(MAILBOX)
    run_script(connect, MAILBOX, steps(b"USER alice", b"PASS pw", line, b"QUIT"))


@given(line=pst.almost_valid_reply_lines())
def test_almost_valid_reply_lines_are_refused_by_the_client(line: bytes) -> None:
    conn = p.Connection(p.CLIENT)
    conn.receive_data(b"+OK hi\r\n")
    drain(conn)
    conn.send(p.Noop()) if False else conn.send(p.Capa())
    conn.receive_data(line)
    with pytest.raises(p.RemoteProtocolError):
        drain(conn)


@given(data=st.data(), box=pst.mailboxes(bare_lf=True))
def test_transcripts_and_chunkings(data: st.DataObject, box: Mailbox) -> None:
    _mailbox, script = data.draw(pst.transcripts())
    for step in script:
        assert b"".join(step.chunks) == step.line + b"\r\n"
    chunks = data.draw(pst.chunkings(b"abcdef"))
    assert b"".join(chunks) == b"abcdef"
    assert all(m == b"" or m.endswith(b"\n") for m in box.messages)


def test_session_under_test_wraps_one_session() -> None:
    connect = session_factory()(MAILBOX)
    server = connect()
    assert isinstance(server, SessionUnderTest)
    assert server.start().startswith(b"+OK")
    assert server.receive(b"QUIT\r\n") == b"+OK Logging out.\r\n" or server.closed
    assert server.closed


@pytest.mark.parametrize(
    ("line", "reply", "message"),
    [
        (b"LIST", b"+OK\r\nbad\r\n.\r\n", "malformed listing"),
        (b"LIST", b"+OK\r\n.\r\n", "listed messages"),
        (b"LIST 2", b"+OK 3 0\r\n", "bad entry"),
        (b"LIST 1", b"+OK 1 999\r\n", "octets"),
        (b"UIDL", b"+OK\r\n1 a\r\n2 a\r\n3 c\r\n.\r\n", "two messages"),
        (b"RETR 1", b"+OK\r\nx\r\n.\r\n", "body differs"),
        (b"TOP 1 0", b"+OK\r\nzzz\r\n.\r\n", "not a prefix"),
    ],
)
def test_model_reports_wrong_payloads(line: bytes, reply: bytes, message: str) -> None:
    class Swap(_Wrapped):
        def receive(self, data: bytes) -> bytes:
            out = self.inner.receive(data)
            return reply if data == line + b"\r\n" else out

    connect = session_factory()(MAILBOX)
    with pytest.raises(Mismatch, match=message):
        run_script(lambda: Swap(connect()), MAILBOX, steps(b"USER alice", b"PASS pw", line))


def test_model_reports_a_changed_unique_id() -> None:
    """The second ``UIDL 1`` names another unique-id: a mismatch (RFC 1939
    §7: a message's unique-id persists across sessions, so surely within one)."""

    class Fickle(_Wrapped):
        asked = 0

        def receive(self, data: bytes) -> bytes:
            out = self.inner.receive(data)
            if data == b"UIDL 1\r\n":
                self.asked += 1
                if self.asked == 2:
                    return b"+OK 1 something-else\r\n"
            return out

    connect = session_factory()(MAILBOX)
    script = steps(b"USER alice", b"PASS pw", b"UIDL 1", b"UIDL 1")
    with pytest.raises(Mismatch, match="changed unique-id"):
        run_script(lambda: Fickle(connect()), MAILBOX, script)


def test_a_server_that_closes_after_ok_is_a_mismatch() -> None:
    class Hangs(_Wrapped):
        answered = False

        @property
        def closed(self) -> bool:
            return self.answered

        def receive(self, data: bytes) -> bytes:
            self.answered = True
            return self.inner.receive(data)

    connect = session_factory()(MAILBOX)
    with pytest.raises(Mismatch, match="closed after \\+OK to USER"):
        run_script(lambda: Hangs(connect()), MAILBOX, steps(b"USER alice", b"NOOP"))


def test_steps_after_the_server_closed_are_not_sent() -> None:
    """After too many failed logins the bundled server closes (with -ERR,
    which is allowed); the rest of the script is not sent."""
    wrong = (b"USER alice", b"PASS wrong") * 3
    model = run_script(session_factory()(MAILBOX), MAILBOX, steps(*wrong, b"USER alice"))
    assert not model.committed


def test_close_reason_fields_are_validated() -> None:
    with pytest.raises(p.LocalProtocolError, match="bool"):
        p.ConnectionClosed(p.CloseReason.PEER_CLOSED, 1)  # type: ignore[arg-type]


@settings(max_examples=50)
@given(data=st.data(), auth=st.sampled_from([p.Auth("PLAIN"), p.SaslResponse(b"x")]))
def test_replies_for_a_sasl_step(data: st.DataObject, auth: p.Event) -> None:
    """Every reply drawn for an AUTH step is one step: a challenge, +OK or
    -ERR (RFC 5034 §4), whatever hypothesis picks, so this shape is always
    exercised (other tests reach it only when they happen to draw AUTH)."""
    replies = data.draw(pst.replies_for(auth))
    assert len(replies) == 1
    assert isinstance(replies[0], (p.SaslChallenge, p.Ok, p.Err))

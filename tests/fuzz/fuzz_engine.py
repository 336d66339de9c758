"""Coverage-guided fuzzing of the pop3proto engine, both roles.

Run with atheris (libFuzzer)::

    pip install atheris
    python tests/fuzz/fuzz_engine.py -max_total_time=1800 -print_final_stats=1 CORPUS_DIR

or, where atheris cannot be installed, with the pure-Python driver (random
structured inputs and mutations of the built-in seeds, no coverage
feedback)::

    python tests/fuzz/fuzz_engine.py --fallback --max-time 600 [--seed N]

The rule checked: whatever bytes arrive, in whatever chunks, the engine only
ever raises a :class:`pop3proto.ProtocolError` subclass (and is then in the
ERROR state); any other exception, an event that is not an event, a loop
that makes no progress or ``can_send()`` saying yes to what ``send()``
refuses is a bug.  See ``tests/fuzz/README.md`` for the input format.

:func:`run_one` is importable (``tests/server/test_hostile.py`` replays findings and
a short random smoke run through it).
"""

from __future__ import annotations

import hashlib
import os
import random
import sys
import time
import traceback
from collections.abc import Callable, Sequence

try:  # atheris is optional: the fallback driver needs nothing.
    # Absent, or present without type information: either way there is nothing to check.
    import atheris  # type: ignore[import-not-found, import-untyped, unused-ignore]
except ImportError:  # pragma: no cover - depends on the machine
    atheris = None

if (
    atheris is not None
    and __name__ == "__main__"
    and "--fallback" not in sys.argv
    and "--replay" not in sys.argv
):
    # Instrument the engine (only it) for coverage feedback.
    with atheris.instrument_imports(include=["pop3proto"]):
        import pop3proto as p
else:
    import pop3proto as p

__all__ = ["SEEDS", "FuzzBug", "run_one", "random_input", "mutate", "fallback_main"]


class FuzzBug(AssertionError):
    """An invariant of the harness failed (not an exception of the engine)."""


# ---------------------------------------------------------------------------
# Input format
# ---------------------------------------------------------------------------
#
#   byte 0   flags: bit0 role (0 client, 1 server), bit1 tls, bit2 strict_user,
#            bit3 bare_lf, bit4 lenient_end, bit5 allow_unadvertised_pipelining,
#            bit6 small limits, bit7 the server prefers -ERR replies
#   byte 1   scenario: which state to start in (see CLIENT_SCENARIOS /
#            SERVER_SCENARIOS, taken modulo their number)
#   rest     operations; each starts with one byte ``op``, kind = op & 3:
#            0  feed the next (op >> 2) + 1 bytes as they are
#            1  (op >> 2) % 8: 0 peer_idle, 1 EOF, 2 tls_established(),
#               3 feed the token TOKENS[next byte], 4 feed CRLF,
#               5 feed ".\r\n", 6 feed "\r\n.\r\n", 7 feed "+OK "
#            2  client: send COMMANDS[op >> 2] if can_send() says yes;
#               server: set the reply selector to op >> 2
#            3  feed bytes([next byte]) * ((op >> 2) * 37 + 1)  (long runs)
#   end      EOF is fed and the events pulled, unless already closed.

TOKENS: tuple[bytes, ...] = (
    b"+OK",
    b"-ERR",
    b"\r\n",
    b".\r\n",
    b"\r\n.\r\n",
    b"+ ",
    b"+",
    b"USER alice",
    b"PASS secret word",
    b"APOP alice c4c9334bac560ecc979e58001b3e22fb",
    b"AUTH PLAIN",
    b"AUTH PLAIN AGFsaWNlAHNlY3JldA==",
    b"AUTH LOGIN =",
    b"STLS",
    b"CAPA",
    b"STAT",
    b"LIST",
    b"LIST 1",
    b"RETR 1",
    b"TOP 1 0",
    b"DELE 1",
    b"UIDL",
    b"UIDL 1",
    b"NOOP",
    b"RSET",
    b"QUIT",
    b"UTF8",
    b"LANG",
    b"LANG *",
    b"[IN-USE]",
    b"[SYS/TEMP]",
    b"[AUTH]",
    b"<1896.697170952@dbc.mtview.ca.us>",
    b"99999999999999999999",
    b"0",
    b"-1",
    b"01",
    b" ",
    b"\t",
    b"\x00",
    b"\xff\xfe",
    b"\xc3\xa9",
    b"=AAA",
    b"AAA=BBB",
    b"*",
    b"..",
    b".",
    b"\r",
    b"\n",
    b"1 120\r\n2 200\r\n.\r\n",
    b"1 uid-one\r\n.\r\n",
    b"PIPELINING\r\nSASL PLAIN LOGIN\r\nSTLS\r\nUTF8 USER\r\n.\r\n",
    b"en English\r\n.\r\n",
    b"+OK 2 320\r\n",
    b"+OK 1 120\r\n",
    b"+OK 1 uid\r\n",
    b"+ PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+\r\n",
    b"-ERR [SYS/TEMP/FOO/BAR] x\r\n",
    b"+OK[IN-USE]\r\n",
    b"XTND XMIT",
)

# Commands a fuzzed client may try to send (only if can_send() allows).
COMMANDS: tuple[p.Event, ...] = (
    p.User("alice"),
    p.Pass("secret word"),
    p.Apop("alice", "c4c9334bac560ecc979e58001b3e22fb"),
    p.Auth("PLAIN"),
    p.Auth("PLAIN", b"\x00alice\x00secret"),
    p.Auth("LOGIN"),
    p.Auth("SCRAM-SHA-256", b"n,,n=alice,r=abc"),
    p.Stat(),
    p.List(),
    p.List(1),
    p.Retr(1),
    p.Top(1, 0),
    p.Top(2, 5),
    p.Dele(1),
    p.Noop(),
    p.Rset(),
    p.Quit(),
    p.Uidl(),
    p.Uidl(2),
    p.Capa(),
    p.Stls(),
    p.Utf8(),
    p.Lang(),
    p.Lang("en"),
    p.Lang("*"),
    p.Extension("XTND", ("XMIT",), multiline=True),
    p.Extension("XLST"),
    p.Last(),
    p.SaslResponse(b"response"),
    p.SaslResponse(b""),
    p.SaslCancel(),
    p.Retr(99999999999999999999),
    p.Dele(2),
)

GREETING_TS = b"+OK POP3 ready <1896.697170952@dbc.mtview.ca.us>\r\n"
LOGIN_REPLIES = b"+OK\r\n+OK logged in\r\n"

# Client scenarios: the greeting, then (command, reply) pairs that set the
# stage, then the commands left outstanding (several = a pipelined batch) and
# the first bytes of their reply.  The fuzzed bytes then go on from there.
ClientScenario = tuple[bytes, tuple[tuple[p.Event, bytes], ...], tuple[p.Event, ...], bytes]
_LOGIN: tuple[tuple[p.Event, bytes], ...] = (
    (p.User("alice"), b"+OK\r\n"),
    (p.Pass("secret"), b"+OK logged in\r\n"),
)


def _auth(*outstanding: p.Event, partial: bytes = b"") -> ClientScenario:
    return (GREETING_TS, (), outstanding, partial)


def _trans(*outstanding: p.Event, partial: bytes = b"") -> ClientScenario:
    return (GREETING_TS, _LOGIN, outstanding, partial)


CLIENT_SCENARIOS: tuple[tuple[str, ClientScenario], ...] = (
    ("await greeting", (b"", (), (), b"")),
    ("authorization", _auth()),
    ("authorization, no timestamp", (b"+OK ready\r\n", (), (), b"")),
    ("USER outstanding", _auth(p.User("alice"))),
    ("APOP outstanding", _auth(p.Apop("a", "0" * 32))),
    ("AUTH outstanding", _auth(p.Auth("PLAIN"))),
    ("AUTH with IR outstanding", _auth(p.Auth("PLAIN", b"\x00a\x00b"))),
    ("SASL, response owed", _auth(p.Auth("LOGIN"), partial=b"+ VXNlcm5hbWU6\r\n")),
    ("STLS outstanding", _auth(p.Stls())),
    ("TLS pending", _auth(p.Stls(), partial=b"+OK go\r\n")),
    ("UTF8 outstanding", _auth(p.Utf8())),
    ("CAPA outstanding", _auth(p.Capa())),
    ("LANG outstanding", _auth(p.Lang())),
    ("LANG x outstanding", _auth(p.Lang("de"))),
    ("PASS outstanding", (GREETING_TS, _LOGIN[:1], (p.Pass("b"),), b"")),
    ("QUIT in authorization", _auth(p.Quit())),
    ("transaction", _trans()),
    ("STAT", _trans(p.Stat())),
    ("LIST", _trans(p.List())),
    ("LIST n", _trans(p.List(1))),
    ("UIDL", _trans(p.Uidl())),
    ("UIDL n", _trans(p.Uidl(1))),
    ("RETR", _trans(p.Retr(1))),
    ("TOP", _trans(p.Top(1, 2))),
    ("in a body", _trans(p.Retr(1), partial=b"+OK follows\r\nSubject: x\r\n\r\n..dot\r\n")),
    ("DELE", _trans(p.Dele(1))),
    ("RSET", _trans(p.Rset())),
    ("NOOP", _trans(p.Noop())),
    ("QUIT in transaction", _trans(p.Quit())),
    ("CAPA in transaction", _trans(p.Capa())),
    ("multi-line extension", _trans(p.Extension("XTND", ("XMIT",), multiline=True))),
    ("pipelined batch", _trans(p.Stat(), p.List(), p.Retr(1), p.Dele(1), p.Uidl())),
    ("pipelined login", _auth(p.User("a"), p.Pass("b"), p.Stat(), p.Quit())),
    ("UTF8 mode", (GREETING_TS, ((p.Utf8(), b"+OK\r\n"),), (p.Capa(),), b"")),
)

# Server scenarios: client bytes fed (and answered with the standard
# replies) before the fuzzed bytes; whether the greeting has a timestamp.
SERVER_SCENARIOS: tuple[tuple[str, bytes, bool | None], ...] = (
    ("before the greeting", b"", False),
    ("authorization", b"", True),
    ("authorization, no timestamp", b"", None),
    ("USER_OK", b"USER alice\r\n", True),
    ("transaction", b"USER alice\r\nPASS secret\r\n", True),
    ("SASL", b"AUTH PLAIN\r\n", True),
    ("SASL round 2", b"AUTH LOGIN\r\ndXNlcg==\r\n", True),
    ("TLS pending", b"STLS\r\n", True),
    ("UTF8 mode", b"UTF8\r\n", True),
    ("LANG mode", b"LANG de\r\n", True),
    ("after CAPA", b"CAPA\r\n", True),
    ("transaction via APOP", b"APOP alice c4c9334bac560ecc979e58001b3e22fb\r\n", True),
    ("in TLS", b"STLS\r\n", True),  # tls_established() called after the +OK
)

_SMALL_LIMITS = {"max_command_size": 16, "max_sasl_size": 24}
_SMALL_CLIENT_LIMITS = {"max_status_size": 40, "max_sasl_size": 24, "max_listing_size": 64}

_BODY_PIECES = (b".", b"..", b"\r\n", b"\n", b"\r", b"x", b"\r\n.\r\n", b".\r", b"\n.\n", b"")


def _server_replies(event: p.Event, selector: int, state: p.State) -> list[p.Event]:
    """A reply the server may legally send to *event*, chosen by *selector*."""
    err: list[p.Event] = [p.Err("no", p.SYS_TEMP if selector & 8 else None)]
    if isinstance(event, (p.BadCommand, p.SaslCancel)):
        return err
    if isinstance(event, p.Quit):
        # -ERR to QUIT only from TRANSACTION ("some messages not removed").
        return err if (selector & 1 and state is p.State.TRANSACTION) else [p.Ok("bye")]
    if selector & 1:
        return err
    if isinstance(event, (p.Auth, p.SaslResponse)):
        return [p.SaslChallenge(b"\x00challenge")] if selector & 2 else [p.Ok("in")]
    if isinstance(event, p.Stat):
        return [p.StatOk(selector, 10**selector)]
    if isinstance(event, p.List):
        if event.number is None:
            return [p.ListOk({i + 1: i * 7 for i in range(selector % 5)}, "listing")]
        return [p.ListEntryOk(event.number, selector)]
    if isinstance(event, p.Uidl):
        if event.number is None:
            return [p.UidlOk({i + 1: f"u{i}" for i in range(selector % 5)})]
        return [p.UidlEntryOk(event.number, "uid~1")]
    if isinstance(event, (p.Retr, p.Top)):
        pieces = [
            p.MessageData(_BODY_PIECES[(selector >> i) % len(_BODY_PIECES)]) for i in range(4)
        ]
        return [p.MessageStart("follows"), *pieces, p.MessageEnd()]
    if isinstance(event, p.Capa):
        return [p.CapaOk(p.Capabilities.build("TOP", "PIPELINING", ("SASL", "PLAIN"), "STLS"))]
    if isinstance(event, p.Lang) and event.language is None:
        return [p.LangOk((("en", "English"), ("de", "Deutsch")))]
    if isinstance(event, p.Lang | p.Utf8) and selector & 4:
        return [p.Ok("\u00e9t\u00e9")]  # UTF-8 allowed from this +OK on
    return [p.Ok()]


class _Ops:
    """Reads the operation stream."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int | None:
        if self.pos >= len(self.data):
            return None
        b = self.data[self.pos]
        self.pos += 1
        return b

    def take(self, n: int) -> bytes:
        out = self.data[self.pos : self.pos + n]
        self.pos += len(out)
        return out


_MAX_EVENTS_PER_PUMP = 100_000


class _Harness:
    def __init__(self, data: bytes) -> None:
        flags = data[0] if data else 0
        self.flags = flags
        self.server = bool(flags & 1)
        self.prefer_err = bool(flags & 128)
        kwargs: dict[str, object] = {
            "tls": bool(flags & 2),
            "strict_user": bool(flags & 4),
            "bare_lf": bool(flags & 8),
        }
        if not self.server:
            kwargs["lenient_end"] = bool(flags & 16)
            kwargs["allow_unadvertised_pipelining"] = bool(flags & 32)
        if flags & 64:
            kwargs.update(_SMALL_LIMITS if self.server else _SMALL_CLIENT_LIMITS)
        scenario = data[1] if len(data) > 1 else 0
        self.selector = 0
        self.fixed_selector: int | None = None
        self.eof = False
        self.closed = False
        self.events = 0
        self.scenario = scenario
        if self.server:
            self.conn = p.Connection(p.SERVER, **kwargs)  # type: ignore[arg-type]
        else:
            if self._needs_pipelining(scenario):
                kwargs["allow_unadvertised_pipelining"] = True
            self.conn = p.Connection(p.CLIENT, **kwargs)  # type: ignore[arg-type]

    def setup(self) -> None:
        """Bring the connection to the scenario's state."""
        if self.server:
            self._setup_server(SERVER_SCENARIOS[self.scenario % len(SERVER_SCENARIOS)])
        else:
            self._setup_client(CLIENT_SCENARIOS[self.scenario % len(CLIENT_SCENARIOS)][1])

    @staticmethod
    def _needs_pipelining(scenario: int) -> bool:
        _, (_, _, outstanding, _) = CLIENT_SCENARIOS[scenario % len(CLIENT_SCENARIOS)]
        return len(outstanding) > 1

    # -- setting the stage (no fuzz data involved) -------------------------

    def _setup_client(self, scenario: ClientScenario) -> None:
        greeting, steps, outstanding, partial = scenario
        conn = self.conn
        if not greeting:
            return
        conn.receive_data(greeting)
        self._pump()
        for command, reply in steps:
            self._client_send(command)
            self._feed(reply)
        if conn.tls and any(isinstance(c, p.Stls) for c in outstanding):
            return  # implicit TLS refuses STLS: start in AUTHORIZATION
        for command in outstanding:
            self._client_send(command)
        self._feed(partial)

    def _setup_server(self, scenario: tuple[str, bytes, bool | None]) -> None:
        name, client_bytes, timestamp = scenario
        conn = self.conn
        if name == "before the greeting":
            return  # the greeting is sent by the first pump
        greeting = "POP3 ready <1.2@host>" if timestamp else "POP3 ready"
        conn.send(p.Greeting(greeting))
        if client_bytes and not (conn.tls and client_bytes.startswith(b"STLS")):
            # Positive replies while setting the stage; SASL ones challenge.
            self.fixed_selector = 2 if name.startswith("SASL") else 0
            conn.receive_data(client_bytes)
            self._pump()
            self.fixed_selector = None
            if name == "in TLS" and conn.state is p.State.TLS_PENDING:
                conn.tls_established()

    # -- running -----------------------------------------------------------

    def _feed(self, data: bytes) -> None:
        if not data or self.eof or self.closed:
            return
        self.conn.receive_data(data)
        self._pump()

    def _feed_eof(self) -> None:
        if self.eof or self.closed:
            return
        self.eof = True
        self.conn.receive_data(b"")
        self._pump()

    def _pump(self) -> None:
        conn = self.conn
        for _ in range(_MAX_EVENTS_PER_PUMP):
            if self.closed:
                return
            event = conn.next_event()
            if event is p.NEED_DATA:
                return
            if event is p.PAUSED:
                if not self._paused():
                    return
                continue
            if not isinstance(event, p.Event):
                raise FuzzBug(f"next_event returned {event!r}")
            self.events += 1
            repr(event)  # reprs must never fail
            if isinstance(event, p.ConnectionClosed):
                if conn.state is not p.State.CLOSED:
                    raise FuzzBug(f"ConnectionClosed in state {conn.state}")
                self.closed = True
                return
            if self.server:
                self._answer(event)
        raise FuzzBug("next_event made no progress")

    def _paused(self) -> bool:
        """Do what a PAUSED connection waits for; return whether to go on."""
        conn = self.conn
        state = conn.state
        if self.server:
            if state is p.State.AWAIT_GREETING:
                conn.send(p.Greeting("ready <3.4@host>"))
                return True
            return False  # TLS_PENDING: an operation calls tls_established()
        if state is p.State.SASL:
            reply: p.Event = p.SaslCancel() if self.selector & 1 else p.SaslResponse(b"x")
            if not conn.can_send(reply):
                reply = p.SaslCancel()
            self._client_send(reply)
            return True
        return False

    def _answer(self, event: p.Event) -> None:
        conn = self.conn
        if self.fixed_selector is not None:
            selector = self.fixed_selector
        else:
            selector = self.selector | (1 if self.prefer_err else 0)
            self.selector = (self.selector * 5 + 3) & 0xFF
        for reply in _server_replies(event, selector, conn.state):
            conn.send(reply)

    def _client_send(self, event: p.Event) -> None:
        conn = self.conn
        if not conn.can_send(event):
            return
        # can_send() said yes: send() must agree.
        try:
            conn.send(event)
        except p.LocalProtocolError as exc:
            raise FuzzBug(f"can_send({event!r}) is True but send() raised {exc!r}") from exc

    def run(self, ops: _Ops) -> None:
        while (op := ops.byte()) is not None and not self.closed:
            kind, arg = op & 3, op >> 2
            if kind == 0:
                self._feed(ops.take(arg + 1))
            elif kind == 1:
                action = arg % 8
                if action == 0:
                    self.conn.peer_idle()
                    self._pump()
                elif action == 1:
                    self._feed_eof()
                elif action == 2:
                    if self.conn.state is p.State.TLS_PENDING:
                        self.conn.tls_established()
                        self._pump()
                elif action == 3:
                    index = ops.byte()
                    self._feed(TOKENS[(index or 0) % len(TOKENS)])
                else:
                    self._feed((b"\r\n", b".\r\n", b"\r\n.\r\n", b"+OK ")[action - 4])
            elif kind == 2:
                if self.server:
                    self.selector = arg
                else:
                    self.selector = arg
                    self._client_send(COMMANDS[arg % len(COMMANDS)])
                    self._pump()
            else:
                fill = ops.byte()
                self._feed(bytes([fill or 0]) * (arg * 37 + 1))
        self._feed_eof()


def run_one(data: bytes) -> None:
    """Run one fuzz input.  Returns normally or raises only what is a bug:
    anything but a :class:`pop3proto.ProtocolError` (after which the
    connection must be in the ERROR state)."""
    harness = _Harness(data)
    try:
        harness.setup()
        harness.run(_Ops(data[2:]))
    except p.ProtocolError:
        if harness.conn.state is not p.State.ERROR:
            raise FuzzBug(
                f"ProtocolError but the state is {harness.conn.state}, not ERROR"
            ) from None


# ---------------------------------------------------------------------------
# Seeds, random inputs and mutations (the fallback driver; also seeds atheris)
# ---------------------------------------------------------------------------


def _feed_op(data: bytes) -> bytes:
    out = bytearray()
    for start in range(0, len(data), 64):
        piece = data[start : start + 64]
        out.append((len(piece) - 1) << 2)
        out += piece
    return bytes(out)


def _seed(flags: int, scenario: int, *parts: bytes) -> bytes:
    return bytes([flags, scenario]) + b"".join(parts)


def _token(index: int) -> bytes:
    return bytes([1 | (3 << 2), index])


def _send(index: int) -> bytes:
    return bytes([2 | (index << 2)])


SEEDS: tuple[bytes, ...] = (
    _seed(0, 0, _feed_op(GREETING_TS), _send(0), _feed_op(b"+OK\r\n"), _send(1)),
    _seed(0, 21, _feed_op(b"+OK 2 messages\r\n1 100\r\n2 200\r\n.\r\n")),
    _seed(0, 22, _feed_op(b"+OK\r\n.x\r\n..\r\n.\r\n"), _send(7)),
    _seed(16, 22, _feed_op(b"+OK\r\nlast line.\r\n"), bytes([1])),
    _seed(0, 11, _feed_op(b"+OK\r\nSASL PLAIN\r\nPIPELINING\r\n.\r\n")),
    _seed(0, 5, _feed_op(b"+ \r\n+ Zm9v\r\n+OK\r\n")),
    _seed(0, 9, _feed_op(b"+OK forged\r\n"), bytes([1 | (2 << 2)])),
    _seed(0, 30, _feed_op(b"+OK 1\r\n+OK 1 1\r\n+OK\r\nx\r\n.\r\n+OK\r\n+OK\r\n1 a\r\n.\r\n")),
    _seed(1, 1, _feed_op(b"USER alice\r\nPASS s\r\nSTAT\r\nLIST\r\nRETR 1\r\nQUIT\r\n")),
    _seed(1, 4, _feed_op(b"LIST 99999999999999999999\r\nTOP 1 -1\r\nDELE 01\r\n")),
    _seed(1, 5, _feed_op(b"=AAA\r\n*\r\nAUTH PLAIN AGEAYg==\r\n")),
    _seed(1, 1, _feed_op(b"STLS\r\nUSER x\r\n")),
    _seed(1, 7, _feed_op(b"USER x\r\n")),
    _seed(65, 1, bytes([3 | (40 << 2), ord("A")]), _feed_op(b"\r\nNOOP\r\n")),
    _seed(9, 4, _feed_op(b"RETR 1\nLIST\n\x00\xff\r\n")),
)


def random_input(rng: random.Random) -> bytes:
    """A structured random input: flags, scenario and a few operations."""
    out = bytearray([rng.randrange(256), rng.randrange(256)])
    for _ in range(rng.randrange(1, 24)):
        kind = rng.randrange(10)
        if kind < 4:
            out += _token(rng.randrange(len(TOKENS)))
        elif kind < 6:
            n = rng.randrange(1, 20)
            alphabet = b"\r\n.+-OKER 0123456789ABCxyz=*\x00\xff\t<>@[]/"
            out.append((n - 1) << 2)
            out += bytes(rng.choice(alphabet) for _ in range(n))
        elif kind == 6:
            out.append(2 | (rng.randrange(64) << 2))
        elif kind == 7:
            out.append(1 | (rng.randrange(8) << 2))
        elif kind == 8:
            out += bytes([3 | (rng.randrange(64) << 2), rng.randrange(256)])
        else:
            out += _feed_op(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40))))
    return bytes(out)


def mutate(data: bytes, rng: random.Random) -> bytes:
    """A small random change to *data* (flip, insert, delete, splice)."""
    buf = bytearray(data)
    for _ in range(rng.randrange(1, 5)):
        choice = rng.randrange(5)
        if choice == 0 and buf:
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
        elif choice == 1:
            buf.insert(rng.randrange(len(buf) + 1), rng.randrange(256))
        elif choice == 2 and len(buf) > 2:
            i = rng.randrange(2, len(buf))
            del buf[i : i + rng.randrange(1, 8)]
        elif choice == 3:
            other = rng.choice(SEEDS)
            i = rng.randrange(len(buf) + 1)
            j = rng.randrange(2, len(other) + 1)
            buf[i:i] = other[2:j]
        elif buf:
            buf[rng.randrange(min(2, len(buf)))] = rng.randrange(256)
    return bytes(buf)


def _report(data: bytes, exc: BaseException, out_dir: str) -> str:
    name = "crash-" + hashlib.sha1(data).hexdigest()[:16]
    path = os.path.join(out_dir, name)
    with open(path, "wb") as f:
        f.write(data)
    print(f"== finding: {type(exc).__name__}: {exc}  (input saved to {path})", flush=True)
    traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stdout)
    return path


def fallback_main(argv: Sequence[str]) -> int:
    """The pure-Python driver: ``--max-time S``, ``--seed N``,
    ``--runs N``, ``--out DIR`` (where findings are saved); ``--replay DIR``
    runs a corpus once instead."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--fallback", action="store_true")
    parser.add_argument("--max-time", type=float, default=60.0)
    parser.add_argument("--runs", type=int, default=0, help="stop after N inputs (0: no limit)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--out", default=".")
    parser.add_argument(
        "--replay", metavar="DIR", help="run every file in DIR once (e.g. a corpus, for coverage)"
    )
    args = parser.parse_args(argv)
    if args.replay:
        names = sorted(os.listdir(args.replay))
        failures = 0
        for name in names:
            with open(os.path.join(args.replay, name), "rb") as f:
                data = f.read()
            try:
                run_one(data)
            except Exception as exc:
                failures += 1
                print(f"{name}: {type(exc).__name__}: {exc}", flush=True)
        print(f"replayed {len(names)} inputs, {failures} findings", flush=True)
        return 1 if failures else 0
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    rng = random.Random(seed)
    print(f"fallback driver: seed={seed} max_time={args.max_time}s", flush=True)
    pool: list[bytes] = list(SEEDS)
    start = time.monotonic()
    runs = 0
    findings: dict[str, str] = {}
    while time.monotonic() - start < args.max_time and not (args.runs and runs >= args.runs):
        data = random_input(rng) if rng.random() < 0.4 else mutate(rng.choice(pool), rng)
        runs += 1
        try:
            run_one(data)
        except Exception as exc:
            key = f"{type(exc).__name__}:{str(exc)[:60]}"
            if key not in findings:
                findings[key] = _report(data, exc, args.out)
            continue
        if len(pool) < 5000 and rng.random() < 0.05:
            pool.append(data)
        if runs % 100_000 == 0:
            elapsed = time.monotonic() - start
            print(f"#{runs} {runs / elapsed:.0f} exec/s findings={len(findings)}", flush=True)
    elapsed = time.monotonic() - start
    print(
        f"done: {runs} executions in {elapsed:.0f}s ({runs / max(elapsed, 1e-9):.0f} exec/s), "
        f"{len(findings)} distinct findings",
        flush=True,
    )
    return 1 if findings else 0


def _write_seeds(directory: str) -> None:
    os.makedirs(directory, exist_ok=True)
    for data in SEEDS:
        name = "seed-" + hashlib.sha1(data).hexdigest()[:16]
        with open(os.path.join(directory, name), "wb") as f:
            f.write(data)


def _atheris_main(argv: list[str]) -> None:  # pragma: no cover - needs atheris
    assert atheris is not None
    corpus = [a for a in argv[1:] if not a.startswith("-")]
    if corpus and not os.path.isfile(corpus[0]):  # a file: reproduce one input
        _write_seeds(corpus[0])
    test_one: Callable[[bytes], None] = run_one
    atheris.Setup(argv, test_one)
    atheris.Fuzz()


if __name__ == "__main__":  # pragma: no cover
    if atheris is None or "--fallback" in sys.argv or "--replay" in sys.argv:
        if atheris is None and "--fallback" not in sys.argv:
            print("atheris is not installed: running the pure-Python fallback driver")
        raise SystemExit(fallback_main([a for a in sys.argv[1:] if not a.startswith("-max")]))
    _atheris_main(sys.argv)

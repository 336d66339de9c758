"""Realistic transcripts, replayed into both roles.

Each transcript is a list of steps.  A ``C`` step is what the client sends: the
client Connection must produce exactly those bytes from the given commands, and
a server Connection fed those bytes must emit exactly those commands.  An ``S``
step is what the server sends: the server Connection must produce exactly those
bytes from the given responses, and a client Connection fed them must emit
exactly those events.  So the client is driven by the server side of the
transcript and the server by the client side, independently.

Sources: RFC 1939 §5, §7 and §10, RFC 2449 §5 and §8, RFC 2595 §4, RFC 5034 §6
and RFC 6856 §3, and Dovecot's greeting, CAPA replies and error texts.
"""

from __future__ import annotations

import base64
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

import pytest

from pop3proto import (
    CLIENT,
    IN_USE,
    NEED_DATA,
    PAUSED,
    SERVER,
    Apop,
    Auth,
    Capa,
    Capabilities,
    CapaOk,
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
    MessageData,
    MessageEnd,
    MessageStart,
    Noop,
    Ok,
    Pass,
    Quit,
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
    apop_digest,
)
from tests.helpers import (
    DOVECOT_CAPABILITIES,
    ENDED,
    Options,
    get_all_events,
    normalize_data_events,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack


class Step(NamedTuple):
    """One step of a transcript: who acts (``C``, ``S``, ``TLS`` or ``CLOSE``),
    the bytes on the wire and the events they stand for."""

    side: str
    wire: bytes = b""
    events: tuple[Event, ...] = ()


def C(wire: bytes, *commands: Event) -> Step:
    return Step("C", wire, commands)


def S(wire: bytes, *responses: Event) -> Step:
    return Step("S", wire, responses)


TLS = Step("TLS")
CLOSE = Step("CLOSE")  # the server closes its end after the last step


def message(size: int, *, dot_lines: Sequence[bytes] = ()) -> bytes:
    """A message of exactly *size* octets (CRLF line ends, before stuffing)."""
    text = b"From: dewey@dbc.mtview.ca.us\r\nSubject: lunch\r\n\r\n"
    text += b"".join(line + b"\r\n" for line in dot_lines)
    filler = size - len(text) - 2
    assert filler >= 0
    text += b"x" * filler + b"\r\n"
    assert len(text) == size
    return text


def stuffed(body: bytes) -> bytes:
    """RFC 1939 §3 byte-stuffing, written independently of the engine."""
    lines = body.split(b"\r\n")
    return b"\r\n".join(b"." + ln if ln.startswith(b".") else ln for ln in lines) + b".\r\n"


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


# ---------------------------------------------------------------------------
# Runners
# ---------------------------------------------------------------------------


def pieces(wire: bytes, chunk: int | None) -> list[bytes]:
    if chunk is None:
        return [wire]
    return [wire[i : i + chunk] for i in range(0, len(wire), chunk)]


def run_client_side(
    steps: list[Step], chunk: int | None = None, **kw: Unpack[Options]
) -> Connection:
    conn = Connection(CLIENT, **kw)
    for step in steps:
        if step[0] == "C":
            _, wire, commands = step
            assert b"".join(conn.send(c) for c in commands) == wire
        elif step[0] == "S":
            _, wire, responses = step
            got: list[Event] = []
            for piece in pieces(wire, chunk):
                conn.receive_data(piece)
                got += get_all_events(conn)
            assert normalize_data_events(got) == list(responses), wire
        elif step[0] == "TLS":
            assert conn.state is State.TLS_PENDING and conn.next_event() is PAUSED
            conn.tls_established()
        else:
            # EOF after the session ended keeps the reason it ended with.
            ended = conn.state is State.CLOSED
            conn.receive_data(b"")
            assert get_all_events(conn) == [ENDED if ended else ConnectionClosed()]
    return conn


def run_server_side(
    steps: list[Step], chunk: int | None = None, **kw: Unpack[Options]
) -> Connection:
    conn = Connection(SERVER, **kw)
    pending: deque[Event] = deque()
    busy = False

    def pull() -> None:
        nonlocal busy
        while pending and not busy:
            ev = conn.next_event()
            if ev is NEED_DATA:
                return
            assert ev == pending.popleft()
            assert conn.next_event() is PAUSED  # one command at a time
            busy = True

    for step in steps:
        if step[0] == "C":
            _, wire, commands = step
            pending.extend(commands)
            for piece in pieces(wire, chunk):
                conn.receive_data(piece)
                pull()
        elif step[0] == "S":
            _, wire, responses = step
            assert b"".join(conn.send(r) for r in responses) == wire
            busy = False
            pull()
        elif step[0] == "TLS":
            assert conn.state is State.TLS_PENDING and conn.next_event() is PAUSED
            conn.tls_established()
        else:
            conn.send(ConnectionClosed())
    assert not pending and not busy
    return conn


def run_both(
    steps: list[Step], *, server: Options | None = None, **client_kw: Unpack[Options]
) -> tuple[Connection, Connection]:
    server_kw: Options = server or {}
    client = run_client_side(steps, **client_kw)
    server_conn = run_server_side(steps, **server_kw)
    # The same transcript, one byte at a time, gives the same result.
    run_client_side(steps, chunk=1, **client_kw)
    run_server_side(steps, chunk=1, **server_kw)
    assert client.state is server_conn.state
    return client, server_conn


# ---------------------------------------------------------------------------
# RFC 1939
# ---------------------------------------------------------------------------

TS = "<1896.697170952@dbc.mtview.ca.us>"
MSG1 = message(120)
MSG2 = message(200, dot_lines=[b".", b"..hidden", b".signature"])
RFC1939_SESSION: list[Step] = [
    S(b"+OK POP3 server ready " + TS.encode() + b"\r\n", Greeting("POP3 server ready " + TS)),
    C(
        b"APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\n",
        Apop("mrose", apop_digest(TS, "tanstaaf")),
    ),
    S(
        b"+OK mrose's maildrop has 2 messages (320 octets)\r\n",
        Ok("mrose's maildrop has 2 messages (320 octets)"),
    ),
    C(b"STAT\r\n", Stat()),
    S(b"+OK 2 320\r\n", StatOk(2, 320)),
    C(b"LIST\r\n", List()),
    S(
        b"+OK 2 messages (320 octets)\r\n1 120\r\n2 200\r\n.\r\n",
        ListOk({1: 120, 2: 200}, "2 messages (320 octets)"),
    ),
    C(b"RETR 1\r\n", Retr(1)),
    S(
        b"+OK 120 octets\r\n" + stuffed(MSG1),
        MessageStart("120 octets"),
        MessageData(MSG1),
        MessageEnd(),
    ),
    C(b"DELE 1\r\n", Dele(1)),
    S(b"+OK message 1 deleted\r\n", Ok("message 1 deleted")),
    C(b"RETR 2\r\n", Retr(2)),
    S(
        b"+OK 200 octets\r\n" + stuffed(MSG2),
        MessageStart("200 octets"),
        MessageData(MSG2),
        MessageEnd(),
    ),
    C(b"DELE 2\r\n", Dele(2)),
    S(b"+OK message 2 deleted\r\n", Ok("message 2 deleted")),
    C(b"QUIT\r\n", Quit()),
    S(
        b"+OK dewey POP3 server signing off (maildrop empty)\r\n",
        Ok("dewey POP3 server signing off (maildrop empty)"),
        ENDED,
    ),
    CLOSE,
]


def test_rfc1939_section10_example_session() -> None:
    """RFC 1939 §10, with made-up messages whose sizes match the LIST (CONFORMANCE.md §9.2:
    the LIST size equals the RETR octets)."""
    assert len(MSG1) + len(MSG2) == 320
    assert b"\r\n..\r\n...hidden\r\n" in stuffed(MSG2)  # the dot lines are stuffed
    client, _ = run_both(RFC1939_SESSION)
    assert client.state is State.CLOSED


RFC1939_COMMANDS: list[Step] = [
    S(b"+OK POP3 server ready\r\n", Greeting("POP3 server ready")),
    # §7 USER / PASS examples
    C(b"USER frated\r\n", User("frated")),
    S(b"-ERR sorry, no mailbox for frated here\r\n", Err("sorry, no mailbox for frated here")),
    C(b"USER mrose\r\n", User("mrose")),
    S(b"+OK mrose is a real hoopy frood\r\n", Ok("mrose is a real hoopy frood")),
    C(b"PASS secret\r\n", Pass("secret")),
    S(b"-ERR maildrop already locked\r\n", Err("maildrop already locked")),
    C(b"USER mrose\r\n", User("mrose")),
    S(b"+OK mrose is a real hoopy frood\r\n", Ok("mrose is a real hoopy frood")),
    C(b"PASS secret\r\n", Pass("secret")),
    S(
        b"+OK mrose's maildrop has 2 messages (320 octets)\r\n",
        Ok("mrose's maildrop has 2 messages (320 octets)"),
    ),
    # §5 examples
    C(b"LIST 2\r\n", List(2)),
    S(b"+OK 2 200\r\n", ListEntryOk(2, 200)),
    C(b"LIST 3\r\n", List(3)),
    S(
        b"-ERR no such message, only 2 messages in maildrop\r\n",
        Err("no such message, only 2 messages in maildrop"),
    ),
    C(b"DELE 1\r\n", Dele(1)),
    S(b"+OK message 1 deleted\r\n", Ok("message 1 deleted")),
    C(b"DELE 1\r\n", Dele(1)),
    S(b"-ERR message 1 already deleted\r\n", Err("message 1 already deleted")),
    C(b"NOOP\r\n", Noop()),
    S(b"+OK\r\n", Ok()),
    C(b"RSET\r\n", Rset()),
    S(b"+OK maildrop has 2 messages (320 octets)\r\n", Ok("maildrop has 2 messages (320 octets)")),
    # §7 TOP and UIDL examples
    C(b"TOP 1 10\r\n", Top(1, 10)),
    S(
        b"+OK\r\nFrom: dewey\r\n\r\nfirst body line\r\n.\r\n",
        MessageStart(),
        MessageData(b"From: dewey\r\n\r\nfirst body line\r\n"),
        MessageEnd(),
    ),
    C(b"TOP 100 3\r\n", Top(100, 3)),
    S(b"-ERR no such message\r\n", Err("no such message")),
    C(b"UIDL\r\n", Uidl()),
    S(
        b"+OK\r\n1 whqtswO00WBw418f9t5JxYwZ\r\n2 QhdPYR:00WBw1Ph7x7\r\n.\r\n",
        UidlOk({1: "whqtswO00WBw418f9t5JxYwZ", 2: "QhdPYR:00WBw1Ph7x7"}),
    ),
    C(b"UIDL 2\r\n", Uidl(2)),
    S(b"+OK 2 QhdPYR:00WBw1Ph7x7\r\n", UidlEntryOk(2, "QhdPYR:00WBw1Ph7x7")),
    C(b"UIDL 3\r\n", Uidl(3)),
    S(
        b"-ERR no such message, only 2 messages in maildrop\r\n",
        Err("no such message, only 2 messages in maildrop"),
    ),
    C(b"QUIT\r\n", Quit()),
    S(
        b"+OK dewey POP3 server signing off (2 messages left)\r\n",
        Ok("dewey POP3 server signing off (2 messages left)"),
        ENDED,
    ),
]


def test_rfc1939_command_examples() -> None:
    """RFC 1939 §5 and §7 examples strung into one session."""
    client, _ = run_both(RFC1939_COMMANDS)
    assert client.state is State.CLOSED


def test_rfc1939_quit_in_authorization() -> None:
    """RFC 1939 §6 example: QUIT before authenticating."""
    steps = [
        S(b"+OK POP3 server ready\r\n", Greeting("POP3 server ready")),
        C(b"QUIT\r\n", Quit()),
        S(
            b"+OK dewey POP3 server signing off\r\n",
            Ok("dewey POP3 server signing off"),
            ENDED,
        ),
        CLOSE,
    ]
    run_both(steps)


# ---------------------------------------------------------------------------
# RFC 2449, RFC 2595
# ---------------------------------------------------------------------------

RFC2449_CAPS = Capabilities.build(
    "TOP",
    "USER",
    ("SASL", "CRAM-MD5", "KERBEROS_V4"),
    "RESP-CODES",
    ("LOGIN-DELAY", "900"),
    "PIPELINING",
    ("EXPIRE", "60"),
    "UIDL",
    ("IMPLEMENTATION", "Shlemazle-Plotz-v302"),
)


def test_rfc2449_capa_and_in_use_examples() -> None:
    """RFC 2449 §5 (CAPA) and §8 ([IN-USE]) examples."""
    steps = [
        S(b"+OK POP3 server ready " + TS.encode() + b"\r\n", Greeting("POP3 server ready " + TS)),
        C(b"CAPA\r\n", Capa()),
        S(
            b"+OK Capability list follows\r\nTOP\r\nUSER\r\nSASL CRAM-MD5 KERBEROS_V4\r\n"
            b"RESP-CODES\r\nLOGIN-DELAY 900\r\nPIPELINING\r\nEXPIRE 60\r\nUIDL\r\n"
            b"IMPLEMENTATION Shlemazle-Plotz-v302\r\n.\r\n",
            CapaOk(RFC2449_CAPS, "Capability list follows"),
        ),
        C(
            b"APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\n",
            Apop("mrose", apop_digest(TS, "tanstaaf")),
        ),
        S(
            b"-ERR [IN-USE] Do you have another POP session running?\r\n",
            Err("Do you have another POP session running?", IN_USE),
        ),
    ]
    client, server = run_both(steps)
    caps = client.capabilities
    assert caps == server.capabilities == RFC2449_CAPS
    assert caps.sasl == ("CRAM-MD5", "KERBEROS_V4") and caps.login_delay == 900
    assert caps.expire == 60 and caps.pipelining and caps.resp_codes
    assert caps.implementation == "Shlemazle-Plotz-v302"
    assert client.state is State.AUTHORIZATION


def test_rfc2595_stls_example() -> None:
    """RFC 2595 §4: STLS, then the TLS handshake; the session restarts in AUTHORIZATION
    with no capabilities cached."""
    steps = [
        S(b"+OK POP3 server ready\r\n", Greeting("POP3 server ready")),
        C(b"CAPA\r\n", Capa()),
        S(b"+OK\r\nSTLS\r\n.\r\n", CapaOk(Capabilities.build("STLS"))),
        C(b"STLS\r\n", Stls()),
        S(b"+OK Begin TLS negotiation\r\n", Ok("Begin TLS negotiation")),
        TLS,
    ]
    client, server = run_both(steps)
    assert client.tls and server.tls
    assert client.capabilities is None and server.capabilities is None


# ---------------------------------------------------------------------------
# RFC 5034 §6
# ---------------------------------------------------------------------------

BLURDY_GREETING = S(
    b"+OK pop.example.com BlurdyBlurp POP3 server ready\r\n",
    Greeting("pop.example.com BlurdyBlurp POP3 server ready"),
)
BLURDY_CAPA_PLAIN = [
    C(b"CAPA\r\n", Capa()),
    S(
        b"+OK List of capabilities follows\r\nSASL PLAIN DIGEST-MD5 GSSAPI ANONYMOUS\r\n"
        b"IMPLEMENTATION BlurdyBlurp POP3 server\r\n.\r\n",
        CapaOk(
            Capabilities.build(
                ("SASL", "PLAIN", "DIGEST-MD5", "GSSAPI", "ANONYMOUS"),
                ("IMPLEMENTATION", "BlurdyBlurp", "POP3", "server"),
            ),
            "List of capabilities follows",
        ),
    ),
]
BLURDY_CAPA_STLS = [
    C(b"CAPA\r\n", Capa()),
    S(
        b"+OK List of capabilities follows\r\nSASL DIGEST-MD5 GSSAPI ANONYMOUS\r\nSTLS\r\n"
        b"IMPLEMENTATION BlurdyBlurp POP3 server\r\n.\r\n",
        CapaOk(
            Capabilities.build(
                ("SASL", "DIGEST-MD5", "GSSAPI", "ANONYMOUS"),
                "STLS",
                ("IMPLEMENTATION", "BlurdyBlurp", "POP3", "server"),
            ),
            "List of capabilities follows",
        ),
    ),
]
BLURDY_STLS = [
    C(b"STLS\r\n", Stls()),
    S(b"+OK Begin TLS negotiation now\r\n", Ok("Begin TLS negotiation now")),
    TLS,
]
TEST_PLAIN = b"test\0test\0test"


def test_rfc5034_plain_with_initial_response() -> None:
    steps = [
        BLURDY_GREETING,
        *BLURDY_CAPA_STLS,
        *BLURDY_STLS,
        *BLURDY_CAPA_PLAIN,
        C(b"AUTH PLAIN dGVzdAB0ZXN0AHRlc3Q=\r\n", Auth("PLAIN", TEST_PLAIN)),
        S(b"+OK Maildrop locked and ready\r\n", Ok("Maildrop locked and ready")),
    ]
    client, _ = run_both(steps)
    assert client.capabilities is not None
    assert client.state is State.TRANSACTION and client.capabilities.sasl[0] == "PLAIN"


def test_rfc5034_plain_without_initial_response() -> None:
    """The server's empty challenge is ``+`` followed by a space (the RFC's note)."""
    steps = [
        BLURDY_GREETING,
        *BLURDY_STLS,
        *BLURDY_CAPA_PLAIN,
        C(b"AUTH PLAIN\r\n", Auth("PLAIN")),
        S(b"+ \r\n", SaslChallenge(b"")),
        C(b"dGVzdAB0ZXN0AHRlc3Q=\r\n", SaslResponse(TEST_PLAIN)),
        S(b"+OK Maildrop locked and ready\r\n", Ok("Maildrop locked and ready")),
    ]
    client, server = run_both(steps)
    assert client.state is server.state is State.TRANSACTION


DIGEST_CHALLENGE = (
    b"cmVhbG09ImVsd29vZC5pbm5vc29mdC5jb20iLG5vbmNlPSJPQTZNRzl0"
    b"RVFHbTJoaCIscW9wPSJhdXRoIixhbGdvcml0aG09bWQ1LXNlc3MsY2hh"
    b"cnNldD11dGYtOA=="
)
DIGEST_RESPONSE = (
    b"Y2hhcnNldD11dGYtOCx1c2VybmFtZT0iY2hyaXMiLHJlYWxtPSJlbHdvb2"
    b"QuaW5ub3NvZnQuY29tIixub25jZT0iT0E2TUc5dEVRR20yaGgiLG5jPTAw"
    b"MDAwMDAxLGNub25jZT0iT0E2TUhYaDZWcVRyUmsiLGRpZ2VzdC11cmk9In"
    b"BvcC9lbHdvb2QuaW5ub3NvZnQuY29tIixyZXNwb25zZT1iMGQ1NmQyZjA1"
    b"NGMyNGI2MjA3MjMyMjEwNjQ2OGRiOSxxb3A9YXV0aA=="
)
DIGEST_RSPAUTH = b"cnNwYXV0aD0wYjk3MTQ2MmNlZjVlOGY5MzBkYjlhMzNiMDJmYzlhMA=="


def test_rfc5034_digest_md5_server_first() -> None:
    """A server-first mechanism, with final server data sent as a challenge and
    answered by an empty line (RFC 5034 §6)."""
    challenge = base64.b64decode(DIGEST_CHALLENGE)
    assert challenge.startswith(b'realm="elwood.innosoft.com"')
    steps = [
        BLURDY_GREETING,
        *BLURDY_CAPA_STLS,
        C(b"AUTH DIGEST-MD5\r\n", Auth("DIGEST-MD5")),
        S(b"+ " + DIGEST_CHALLENGE + b"\r\n", SaslChallenge(challenge)),
        C(DIGEST_RESPONSE + b"\r\n", SaslResponse(base64.b64decode(DIGEST_RESPONSE))),
        S(
            b"+ " + DIGEST_RSPAUTH + b"\r\n",
            SaslChallenge(base64.b64decode(DIGEST_RSPAUTH)),
        ),
        C(b"\r\n", SaslResponse(b"")),
        S(b"+OK Maildrop locked and ready\r\n", Ok("Maildrop locked and ready")),
    ]
    client, _ = run_both(steps)
    assert client.state is State.TRANSACTION and not client.tls


# ---------------------------------------------------------------------------
# RFC 6856 §3 (LANG)
# ---------------------------------------------------------------------------


def test_rfc6856_lang_examples() -> None:
    steps = [
        S(b"+OK POP3 server ready\r\n", Greeting("POP3 server ready")),
        C(b"USER karen\r\n", User("karen")),
        S(b"+OK Hello, karen\r\n", Ok("Hello, karen")),
        C(b"PASS password\r\n", Pass("password")),
        S(
            b"+OK karen's maildrop contains 2 messages (320 octets)\r\n",
            Ok("karen's maildrop contains 2 messages (320 octets)"),
        ),
        C(b"LANG MUL\r\n", Lang("MUL")),
        S(b"-ERR invalid language MUL\r\n", Err("invalid language MUL")),
        C(b"LANG\r\n", Lang()),
        S(
            b"+OK Language listing follows:\r\nen English\r\n"
            b"en-boont English Boontling dialect\r\nde Deutsch\r\nit Italiano\r\n"
            b"es Espanol\r\nsv Svenska\r\n.\r\n",
            LangOk(
                (
                    ("en", "English"),
                    ("en-boont", "English Boontling dialect"),
                    ("de", "Deutsch"),
                    ("it", "Italiano"),
                    ("es", "Espanol"),
                    ("sv", "Svenska"),
                ),
                "Language listing follows:",
            ),
        ),
        C(b"LANG\r\n", Lang()),
        S(
            b"-ERR Server is unable to list languages\r\n",
            Err("Server is unable to list languages"),
        ),
        C(b"LANG es\r\n", Lang("es")),
        S(b"+OK es Idioma cambiado\r\n", Ok("es Idioma cambiado")),
        C(b"LANG uga\r\n", Lang("uga")),
        S(
            b"-ERR es Idioma <<UGA>> no es conocido\r\n",
            Err("es Idioma <<UGA>> no es conocido"),
        ),
        C(b"LANG sv\r\n", Lang("sv")),
        S(b'+OK sv Kommandot "LANG" lyckades\r\n', Ok('sv Kommandot "LANG" lyckades')),
        C(b"LANG *\r\n", Lang("*")),
        S(b"+OK es Idioma cambiado\r\n", Ok("es Idioma cambiado")),
        # From here on response text is UTF-8 (RFC 6856 §3).
        C(b"NOOP\r\n", Noop()),
        S("+OK Operación completada\r\n".encode(), Ok("Operación completada")),
    ]
    client, server = run_both(steps)
    assert client.lang and server.lang and not client.utf8


# ---------------------------------------------------------------------------
# Dovecot
# ---------------------------------------------------------------------------

DOVECOT_CAPA_WIRE = (
    b"+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nAUTH-RESP-CODE\r\n"
    b"STLS\r\nUSER\r\nSASL PLAIN LOGIN\r\n.\r\n"
)
DOVECOT_CAPS_TLS = Capabilities.build(
    "CAPA",
    "TOP",
    "UIDL",
    "RESP-CODES",
    "PIPELINING",
    "AUTH-RESP-CODE",
    "USER",
    ("SASL", "PLAIN", "LOGIN"),
)
DOVECOT_MSG = message(
    300, dot_lines=[b"Hi,", b".", b"see you at noon.", b"-- ", b".sig", b"...more dots"]
)


def test_dovecot_session() -> None:
    """A Dovecot-style session: greeting and CAPA as Dovecot sends them, STLS, CAPA again,
    AUTH PLAIN with an initial response, then a PIPELINING batch (RFC 2449 §6.6)."""
    user = b"\0alice\0correct horse"
    steps = [
        S(b"+OK Dovecot ready.\r\n", Greeting("Dovecot ready.")),
        C(b"CAPA\r\n", Capa()),
        S(DOVECOT_CAPA_WIRE, CapaOk(DOVECOT_CAPABILITIES)),
        C(b"STLS\r\n", Stls()),
        S(b"+OK Begin TLS negotiation now.\r\n", Ok("Begin TLS negotiation now.")),
        TLS,
        C(b"CAPA\r\n", Capa()),
        S(DOVECOT_CAPA_WIRE.replace(b"STLS\r\n", b""), CapaOk(DOVECOT_CAPS_TLS)),
        C(b"AUTH PLAIN " + b64(user) + b"\r\n", Auth("PLAIN", user)),
        S(b"+OK Logged in.\r\n", Ok("Logged in.")),
        C(b"STAT\r\nUIDL\r\nLIST\r\n", Stat(), Uidl(), List()),
        S(b"+OK 2 556\r\n", StatOk(2, 556)),
        S(
            b"+OK\r\n1 000000015f1e0c3b\r\n2 000000025f1e0c3b\r\n.\r\n",
            UidlOk({1: "000000015f1e0c3b", 2: "000000025f1e0c3b"}),
        ),
        S(b"+OK 2 messages:\r\n1 300\r\n2 256\r\n.\r\n", ListOk({1: 300, 2: 256}, "2 messages:")),
        C(b"RETR 1\r\nDELE 1\r\n", Retr(1), Dele(1)),
        S(
            b"+OK 300 octets\r\n" + stuffed(DOVECOT_MSG),
            MessageStart("300 octets"),
            MessageData(DOVECOT_MSG),
            MessageEnd(),
        ),
        S(b"+OK Marked to be deleted.\r\n", Ok("Marked to be deleted.")),
        C(b"QUIT\r\n", Quit()),
        S(
            b"+OK Logging out, messages deleted.\r\n",
            Ok("Logging out, messages deleted."),
            ENDED,
        ),
        CLOSE,
    ]
    client, _ = run_both(steps)
    assert client.state is State.CLOSED and client.tls
    caps = client.capabilities
    assert caps == DOVECOT_CAPS_TLS and not caps.stls and caps.pipelining and caps.auth_resp_code


def test_dovecot_failed_logins_and_inactivity() -> None:
    """Dovecot's ``-ERR [AUTH] Authentication failed.``, the LOGIN mechanism, and the
    unsolicited ``-ERR Disconnected for inactivity.`` before it closes."""
    steps = [
        S(b"+OK Dovecot ready.\r\n", Greeting("Dovecot ready.")),
        C(b"USER alice\r\n", User("alice")),
        S(b"+OK\r\n", Ok()),
        C(b"PASS wrong\r\n", Pass("wrong")),
        S(
            b"-ERR [AUTH] Authentication failed.\r\n",
            Err("Authentication failed.", ResponseCode(("AUTH",))),
        ),
        C(b"AUTH LOGIN\r\n", Auth("LOGIN")),
        S(b"+ VXNlcm5hbWU6\r\n", SaslChallenge(b"Username:")),
        C(b"YWxpY2U=\r\n", SaslResponse(b"alice")),
        S(b"+ UGFzc3dvcmQ6\r\n", SaslChallenge(b"Password:")),
        C(b"d3Jvbmc=\r\n", SaslResponse(b"wrong")),
        S(
            b"-ERR [AUTH] Authentication failed.\r\n",
            Err("Authentication failed.", ResponseCode(("AUTH",))),
        ),
        S(
            b"-ERR Disconnected for inactivity.\r\n",
            Err("Disconnected for inactivity."),
            ENDED,
        ),
        CLOSE,
    ]
    client, server = run_both(steps)
    assert client.state is server.state is State.CLOSED


def test_dovecot_in_use() -> None:
    """Dovecot's lock error after a good password: ``-ERR [IN-USE]`` (RFC 2449 §8.1.2)."""
    steps = [
        S(b"+OK Dovecot ready.\r\n", Greeting("Dovecot ready.")),
        C(b"USER alice\r\n", User("alice")),
        S(b"+OK\r\n", Ok()),
        C(b"PASS secret\r\n", Pass("secret")),
        S(
            b"-ERR [IN-USE] Mailbox is locked by another POP3 session.\r\n",
            Err("Mailbox is locked by another POP3 session.", IN_USE),
        ),
    ]
    client, _ = run_both(steps)
    assert client.state is State.AUTHORIZATION


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64])
def test_rfc1939_session_at_other_chunk_sizes(chunk: int) -> None:
    """CONFORMANCE.md §3.8: split invariance on a real transcript."""
    run_client_side(RFC1939_SESSION, chunk=chunk)
    run_server_side(RFC1939_SESSION, chunk=chunk)

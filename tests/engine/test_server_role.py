"""Unit tests for the server role of :class:`pop3proto.Connection`.

The server parses command lines into events and serializes the application's
responses.  Section references are to CONFORMANCE.md.
"""

from __future__ import annotations

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
    Connection,
    ConnectionClosed,
    Dele,
    Err,
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
    RemoteProtocolError,
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
from tests.helpers import ENDED, LOCAL, TIMESTAMP, first, new_server, server_tx
from tests.helpers import events_through_wait as events
from tests.helpers import feed_through_wait as feed


def answered(conn: Connection, line: bytes, *replies: object) -> bytes:
    """Receive one command line, check it parses, send *replies*, return their bytes."""
    ev = first(conn, line)
    assert not isinstance(ev, BadCommand), ev
    return b"".join(conn.send(r) for r in replies)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------
# Construction, greeting, properties
# ---------------------------------------------------------------------------


def test_roles_and_initial_properties() -> None:
    conn = Connection(SERVER)
    assert conn.our_role is SERVER and conn.their_role is CLIENT
    assert conn.state is State.AWAIT_GREETING
    assert conn.outstanding == () and conn.greeting is None and conn.capabilities is None
    assert Connection(SERVER, tls=True).tls


def test_paused_until_the_greeting_is_sent() -> None:
    conn = Connection(SERVER)
    assert conn.next_event() is PAUSED
    conn.receive_data(b"CAPA\r\n")
    assert conn.next_event() is PAUSED
    conn.send(Greeting("hi " + TIMESTAMP))
    assert conn.greeting == Greeting("hi " + TIMESTAMP)
    assert conn.state is State.AUTHORIZATION
    assert conn.next_event() == Capa()


@pytest.mark.parametrize("event", [Ok(), MessageStart(), StatOk(1, 1), User("a")])
def test_first_thing_sent_must_be_the_greeting(event: object) -> None:
    conn = Connection(SERVER)
    with pytest.raises(LocalProtocolError):
        conn.send(event)  # type: ignore[arg-type]
    assert conn.state is State.ERROR


def test_negative_greeting_closes() -> None:
    conn = Connection(SERVER)
    assert conn.send(Err("[SYS/TEMP] busy")) == b"-ERR [SYS/TEMP] busy\r\n"
    assert conn.state is State.CLOSED
    assert conn.next_event() == ENDED
    with pytest.raises(LocalProtocolError, match="closed"):
        conn.send(Ok())


def test_greeting_text_must_be_ascii() -> None:
    """RFC 6856 §2.1: no raw non-ASCII outside UTF-8 mode, greeting included."""
    for event in (Greeting("héllo"), Err("héllo")):
        with pytest.raises(LocalProtocolError, match="non-ASCII"):
            Connection(SERVER).send(event)


def test_greeting_too_long() -> None:
    with pytest.raises(LocalProtocolError, match="512"):
        Connection(SERVER).send(Greeting("x" * 507))
    assert len(Connection(SERVER).send(Greeting("x" * 506))) == 512
    assert len(Connection(SERVER, max_status_size=1024).send(Greeting("x" * 1000))) == 1006


# ---------------------------------------------------------------------------
# Full session and reply serialization
# ---------------------------------------------------------------------------


def test_full_session_bytes() -> None:
    conn = new_server()
    assert answered(conn, b"CAPA\r\n", CapaOk(Capabilities.build("TOP", ("SASL", "PLAIN")))) == (
        b"+OK\r\nTOP\r\nSASL PLAIN\r\n.\r\n"
    )
    assert conn.capabilities == Capabilities.build("TOP", ("SASL", "PLAIN"))
    assert answered(conn, b"USER mrose\r\n", Ok("mrose is a real hoopy frood")) == (
        b"+OK mrose is a real hoopy frood\r\n"
    )
    assert conn.state is State.USER_OK
    assert answered(conn, b"PASS secret\r\n", Ok("maildrop has 2 messages")) == (
        b"+OK maildrop has 2 messages\r\n"
    )
    assert conn.state is State.TRANSACTION
    assert answered(conn, b"STAT\r\n", StatOk(2, 320)) == b"+OK 2 320\r\n"
    assert answered(conn, b"LIST\r\n", ListOk({1: 120, 2: 200}, "2 messages")) == (
        b"+OK 2 messages\r\n1 120\r\n2 200\r\n.\r\n"
    )
    assert answered(conn, b"LIST 2\r\n", ListEntryOk(2, 200)) == b"+OK 2 200\r\n"
    assert answered(conn, b"UIDL\r\n", UidlOk({1: "whqtswO00WBw418f9t5JxYwZ"})) == (
        b"+OK\r\n1 whqtswO00WBw418f9t5JxYwZ\r\n.\r\n"
    )
    assert answered(conn, b"UIDL 2\r\n", UidlEntryOk(2, "QhdPYR:00WBw1Ph7x7")) == (
        b"+OK 2 QhdPYR:00WBw1Ph7x7\r\n"
    )
    assert (
        answered(
            conn,
            b"RETR 1\r\n",
            MessageStart("120 octets"),
            MessageData(b"Subject: x\r\n\r\n"),
            MessageData(b".hi\r\n"),
            MessageEnd(),
        )
        == b"+OK 120 octets\r\nSubject: x\r\n\r\n..hi\r\n.\r\n"
    )
    assert answered(conn, b"TOP 1 0\r\n", MessageStart(), MessageEnd()) == b"+OK\r\n.\r\n"
    assert answered(conn, b"DELE 1\r\n", Ok("message 1 deleted")) == b"+OK message 1 deleted\r\n"
    assert answered(conn, b"NOOP\r\n", Ok()) == b"+OK\r\n"
    assert answered(conn, b"RSET\r\n", Ok()) == b"+OK\r\n"
    assert answered(conn, b"LANG\r\n", LangOk((("en", "English"), ("de", "")))) == (
        b"+OK\r\nen English\r\nde\r\n.\r\n"
    )
    assert answered(conn, b"RETR 9\r\n", Err("no such message", ResponseCode(("X",)))) == (
        b"-ERR [X] no such message\r\n"
    )
    assert first(conn, b"QUIT\r\n") == Quit()
    assert conn.state is State.UPDATE
    assert conn.next_event() is PAUSED
    assert conn.send(Ok("dewey POP3 server signing off")) == (
        b"+OK dewey POP3 server signing off\r\n"
    )
    assert conn.state is State.CLOSED
    assert conn.next_event() == ENDED


def test_paused_until_each_reply_and_outstanding() -> None:
    """RFC 2449 §6.6: the server processes pipelined commands one at a time; nothing
    after the current command is parsed (or lost) until it is answered."""
    conn = server_tx()
    conn.receive_data(b"STAT\r\nLIST\r\nQUIT\r\n")
    assert conn.next_event() == Stat()
    assert conn.outstanding == (Stat(),)
    assert conn.next_event() is PAUSED
    assert conn.next_event() is PAUSED
    conn.send(StatOk(0, 0))
    assert conn.outstanding == ()
    assert conn.next_event() == List()
    conn.send(ListOk({}))
    assert conn.next_event() == Quit()


def test_paused_while_a_body_is_being_sent() -> None:
    conn = server_tx()
    conn.receive_data(b"RETR 1\r\nNOOP\r\n")
    assert conn.next_event() == Retr(1)
    conn.send(MessageStart())
    assert conn.next_event() is PAUSED
    conn.send(MessageData(b"x\r\n"))
    assert conn.next_event() is PAUSED
    conn.send(MessageEnd())
    assert conn.next_event() == Noop()


# ---------------------------------------------------------------------------
# Which reply fits which command
# ---------------------------------------------------------------------------

ANY_REPLY = [
    Ok(),
    StatOk(1, 1),
    ListOk({1: 1}),
    ListEntryOk(1, 1),
    UidlOk({1: "a"}),
    UidlEntryOk(1, "a"),
    CapaOk(Capabilities.build("TOP")),
    LangOk((("en", ""),)),
    MessageStart(),
    SaslChallenge(b""),
]
FITS: dict[bytes, tuple[str, ...]] = {
    b"STAT": ("StatOk",),
    b"LIST": ("ListOk",),
    b"LIST 1": ("ListEntryOk",),
    b"UIDL": ("UidlOk",),
    b"UIDL 1": ("UidlEntryOk",),
    b"RETR 1": ("MessageStart",),
    b"TOP 1 1": ("MessageStart",),
    b"CAPA": ("CapaOk",),
    b"LANG": ("LangOk",),
    b"LANG en": ("Ok",),
    b"DELE 1": ("Ok",),
    b"NOOP": ("Ok",),
    b"RSET": ("Ok",),
    b"QUIT": ("Ok",),
    b"XXXX": (),  # BadCommand: Err only
}


@pytest.mark.parametrize("line", list(FITS))
@pytest.mark.parametrize("reply", ANY_REPLY, ids=lambda r: type(r).__name__)
def test_reply_types(line: bytes, reply: object) -> None:
    """Stat->StatOk, List()->ListOk, List(n)->ListEntryOk, ...; Err always fits."""
    conn = server_tx()
    first(conn, line + b"\r\n")
    if type(reply).__name__ in FITS[line]:
        assert conn.send(reply)  # type: ignore[arg-type]
    else:
        with pytest.raises(LocalProtocolError, match="must be"):
            conn.send(reply)  # type: ignore[arg-type]
        assert conn.state is State.ERROR
    conn = server_tx()
    first(conn, line + b"\r\n")
    assert conn.send(Err()) == b"-ERR\r\n"
    assert conn.state is State.TRANSACTION or line == b"QUIT"


def test_auth_replies() -> None:
    """AUTH takes SaslChallenge*, then Ok or Err."""
    conn = new_server()
    assert first(conn, b"AUTH PLAIN\r\n") == Auth("PLAIN")
    assert conn.state is State.SASL
    with pytest.raises(LocalProtocolError):
        new_server().send(MessageStart())
    assert conn.send(SaslChallenge(b"")) == b"+ \r\n"
    assert conn.outstanding == (Auth("PLAIN"),)
    # Waiting for the client's response now.
    with pytest.raises(LocalProtocolError, match="SASL response"):
        sasl_waiting_server().send(Ok())
    assert conn.next_event() is NEED_DATA
    assert first(conn, b"AHRlc3QAdGVzdA==\r\n") == SaslResponse(b"\0test\0test")
    assert conn.next_event() is PAUSED
    assert conn.send(SaslChallenge(b"more")) == b"+ bW9yZQ==\r\n"
    assert first(conn, b"\r\n") == SaslResponse(b"")
    assert conn.send(Ok("Logged in.")) == b"+OK Logged in.\r\n"
    assert conn.state is State.TRANSACTION and conn.outstanding == ()


def sasl_waiting_server() -> Connection:
    conn = new_server()
    first(conn, b"AUTH PLAIN\r\n")
    conn.send(SaslChallenge(b""))
    return conn


def test_server_cannot_send_a_malformed_challenge() -> None:
    """SaslChallenge(malformed=True) only reports a bad challenge on the client side."""
    conn = new_server()
    first(conn, b"AUTH PLAIN\r\n")
    with pytest.raises(LocalProtocolError, match="malformed"):
        conn.send(SaslChallenge(b"x", malformed=True))


def test_auth_with_initial_response_and_failure() -> None:
    conn = new_server()
    assert first(conn, b"auth plain AHRlc3QAdGVzdA==\r\n") == Auth("PLAIN", b"\0test\0test")
    assert conn.send(Err("[AUTH] Authentication failed.")) == (
        b"-ERR [AUTH] Authentication failed.\r\n"
    )
    assert conn.state is State.AUTHORIZATION


def test_sasl_cancel_then_err() -> None:
    conn = sasl_waiting_server()
    assert first(conn, b"*\r\n") == SaslCancel()
    assert conn.send(Err("cancelled")) == b"-ERR cancelled\r\n"
    assert conn.state is State.AUTHORIZATION
    # The next AUTH may use the full set of replies again.
    first(conn, b"AUTH PLAIN\r\n")
    assert conn.send(Ok()) == b"+OK\r\n"


def test_sasl_lines_use_the_sasl_limit_not_the_command_limit() -> None:
    conn = sasl_waiting_server()
    blob = b"A" * 4000
    assert first(conn, blob + b"\r\n") == SaslResponse(b"\0" * 3000)


# ---------------------------------------------------------------------------
# Things the server cannot send
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "event", [User("a"), Noop(), SaslResponse(b""), SaslCancel(), BadCommand(b"x", "y")]
)
def test_server_sends_responses_only(event: object) -> None:
    conn = server_tx()
    first(conn, b"NOOP\r\n")
    with pytest.raises(LocalProtocolError, match="responses"):
        conn.send(event)  # type: ignore[arg-type]


def test_no_reply_without_a_command() -> None:
    conn = server_tx()
    with pytest.raises(LocalProtocolError, match="no command"):
        conn.send(Ok())
    assert conn.state is State.ERROR


def test_body_events_only_inside_a_body() -> None:
    for event in (MessageData(b"x"), MessageEnd()):
        conn = server_tx()
        first(conn, b"RETR 1\r\n")
        with pytest.raises(LocalProtocolError):
            conn.send(event)
    conn = server_tx()
    first(conn, b"RETR 1\r\n")
    conn.send(MessageStart())
    with pytest.raises(LocalProtocolError, match="MessageData or MessageEnd"):
        conn.send(Ok())


def test_send_connection_closed_closes() -> None:
    conn = server_tx()
    assert conn.send(ConnectionClosed()) == b""
    assert conn.state is State.CLOSED
    assert conn.next_event() == LOCAL
    with pytest.raises(LocalProtocolError, match="closed"):
        conn.send(Err("bye"))


def test_unsolicited_err_closes() -> None:
    """Dovecot-style ``-ERR Disconnected for inactivity.`` before closing (CONFORMANCE.md §9.7)."""
    conn = server_tx()
    assert conn.send(Err("Disconnected for inactivity.", ResponseCode(("SYS", "TEMP")))) == (
        b"-ERR [SYS/TEMP] Disconnected for inactivity.\r\n"
    )
    assert conn.state is State.CLOSED
    conn = server_tx()
    with pytest.raises(LocalProtocolError, match="non-ASCII"):
        conn.send(Err("Zeitüberschreitung"))


# ---------------------------------------------------------------------------
# Parsing command lines
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "event"),
    [
        (b"APOP mrose C4C9334BAC560ECC979E58001B3E22FB", None),
        (b"LANG", Lang()),
        (b"LANG *", Lang("*")),
        (b"LANG en-boont", Lang("en-boont")),
        (b"CAPA", Capa()),
        (b"UTF8", Utf8()),
        (b"AUTH scram-sha-256", Auth("SCRAM-SHA-256")),
        (b"AUTH PLAIN =", Auth("PLAIN", b"")),
    ],
)
def test_parse_authorization_commands(line: bytes, event: object) -> None:
    conn = new_server()
    got = first(conn, line + b"\r\n")
    if event is None:  # upper-case hex digests are accepted and normalised
        assert got == Apop("mrose", "c4c9334bac560ecc979e58001b3e22fb")
    else:
        assert got == event


@pytest.mark.parametrize(
    "line",
    [
        b"AUTH PL@IN",
        b"AUTH PLAIN a b",
        b"AUTH",
        b"AUTH \xc3\xa9",
        b"LANG a b",
        "LANG é".encode(),
        b"CAPA x",
        b"APOP a",
        "APOP a éé".encode(),
        b"APOP a \xff\xfe",
        b"APOP a 0123",
        b"USER \x7f",
        b"USER a\x01",
        b"STAT\x01",
        b"XTND XLST",
        b"\xff\xfe",
    ],
)
def test_parse_malformed_authorization_commands(line: bytes) -> None:
    conn = new_server()
    ev = first(conn, line + b"\r\n")
    assert isinstance(ev, BadCommand) and ev.line == line and ev.command is None
    assert ev.reason
    assert conn.outstanding == (ev,)
    conn.send(Err(ev.reason))
    assert conn.state is State.AUTHORIZATION and conn.outstanding == ()


@pytest.mark.parametrize(
    "line", [b"STAT x", b"RETR 1 2", b"DELE", b"UIDL 1 2", b"NOOP 1", b"RSET now", b"QUIT x"]
)
def test_parse_malformed_transaction_commands(line: bytes) -> None:
    conn = server_tx()
    ev = first(conn, line + b"\r\n")
    assert isinstance(ev, BadCommand) and ev.command is None


def test_bad_command_must_be_answered_with_err_only() -> None:
    conn = server_tx()
    ev = first(conn, b"XYZZY\r\n")
    assert isinstance(ev, BadCommand) and ev.reason == "unknown command"
    with pytest.raises(LocalProtocolError, match="BAD"):
        conn.send(Ok())


def test_utf8_credentials() -> None:
    """RFC 6856 §2.2: UTF-8 user names and passwords after UTF8, or with ``UTF8 USER``."""
    conn = new_server()
    ev = first(conn, "USER jös\r\n".encode())
    assert isinstance(ev, BadCommand) and "UTF8" in ev.reason
    conn.send(Err())
    first(conn, b"UTF8\r\n")
    assert conn.send(Ok("UTF8 enabled")) == b"+OK UTF8 enabled\r\n"
    assert conn.utf8
    assert first(conn, "USER jös\r\n".encode()) == User("jös")
    conn.send(Ok("hallå"))
    assert first(conn, "PASS pä ss\r\n".encode()) == Pass("pä ss")
    # "UTF8 USER" advertised: allowed before the UTF8 command.
    conn = new_server()
    first(conn, b"CAPA\r\n")
    conn.send(CapaOk(Capabilities.build(("UTF8", "USER"))))
    assert first(conn, "APOP jös c4c9334bac560ecc979e58001b3e22fb\r\n".encode()) == Apop(
        "jös", "c4c9334bac560ecc979e58001b3e22fb"
    )


@pytest.mark.parametrize(
    "line", [b"USER \xff", b"USER a\xc2\x85", b"PASS \xff", b"PASS a\xc2\x85", b"PASS \x7f"]
)
def test_utf8_credentials_must_be_valid(line: bytes) -> None:
    """RFC 6856 §2.2: malformed UTF-8 or control characters are refused."""
    conn = new_server()
    first(conn, b"UTF8\r\n")
    conn.send(Ok())
    if line.startswith(b"PASS"):
        first(conn, b"USER a\r\n")
        conn.send(Ok())
    assert isinstance(first(conn, line + b"\r\n"), BadCommand)


def test_non_ascii_password_before_utf8() -> None:
    conn = new_server()
    first(conn, b"USER a\r\n")
    conn.send(Ok())
    ev = first(conn, "PASS pässword\r\n".encode())
    assert isinstance(ev, BadCommand) and "UTF8" in ev.reason


def test_command_limit_is_configurable() -> None:
    conn = new_server(max_command_size=16)
    assert first(conn, b"USER abcdefghi\r\n") == User("abcdefghi")  # 16 octets
    conn.send(Err())
    ev = first(conn, b"USER abcdefghij\r\n")
    assert isinstance(ev, BadCommand) and ev.line == b"USER abcdefghi"  # the first limit-2 octets


def test_overlong_line_rest_arrives_later() -> None:
    """CONFORMANCE.md §3.5: an overlong line's rest is skipped, however long, in bounded memory."""
    conn = new_server()
    ev = first(conn, b"X" * 1000)
    assert isinstance(ev, BadCommand) and ev.reason == "command line too long"
    conn.send(Err())
    for _ in range(20):
        assert feed(conn, b"Y" * 10_000) == [NEED_DATA]
    assert first(conn, b"Z\r\nCAPA\r\n") == Capa()


def test_overlong_line_then_eof() -> None:
    conn = new_server()
    first(conn, b"X" * 1000)
    conn.send(Err())
    conn.receive_data(b"")
    assert events(conn) == [ConnectionClosed()]


# ---------------------------------------------------------------------------
# UTF8 / LANG text (CONFORMANCE.md §10.2)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reply",
    [
        Ok("café"),
        MessageStart("café"),
        ListOk({}, "café"),
        CapaOk(Capabilities(()), "café"),
    ],
)
def test_non_ascii_text_refused_outside_utf8(reply: object) -> None:
    """RFC 6856 §2.1: outside UTF-8 mode the server MUST NOT send raw non-ASCII."""
    line = {Ok: b"NOOP", MessageStart: b"RETR 1", ListOk: b"LIST", CapaOk: b"CAPA"}[
        type(reply)  # type: ignore[index]
    ]
    conn = server_tx()
    first(conn, line + b"\r\n")
    with pytest.raises(LocalProtocolError, match="non-ASCII"):
        conn.send(reply)  # type: ignore[arg-type]


def test_non_ascii_text_allowed_after_utf8() -> None:
    conn = new_server()
    first(conn, b"UTF8\r\n")
    conn.send(Ok())
    first(conn, b"USER a\r\n")
    assert conn.send(Ok("café")) == "+OK café\r\n".encode()


def test_non_ascii_text_allowed_after_lang() -> None:
    conn = server_tx()
    first(conn, b"LANG de\r\n")
    conn.send(Ok("de Sprache gewechselt"))
    assert conn.lang and not conn.utf8
    first(conn, b"NOOP\r\n")
    assert conn.send(Ok("geändert")) == "+OK geändert\r\n".encode()


def test_failed_lang_or_utf8_changes_nothing() -> None:
    conn = new_server()
    first(conn, b"UTF8\r\n")
    conn.send(Err())
    first(conn, b"LANG xx\r\n")
    conn.send(Err())
    assert not conn.utf8 and not conn.lang
    first(conn, b"CAPA\r\n")
    with pytest.raises(LocalProtocolError):
        conn.send(Err("ü"))


@pytest.mark.parametrize(
    ("line", "text"), [(b"LANG es", "es Idioma cambiado ñ"), (b"UTF8", "UTF-8 aktiviert ✓")]
)
def test_lang_or_utf8_reply_itself_may_be_utf8(line: bytes, text: str) -> None:
    """RFC 6856 §3: "all responses will be in that language, starting with the response to
    the LANG command" (CONFORMANCE.md §10.1: decoding changes from their own reply on)."""
    conn = new_server()
    first(conn, line + b"\r\n")
    assert conn.send(Ok(text)) == ("+OK " + text + "\r\n").encode()


def test_non_ascii_capability_refused_outside_utf8() -> None:
    """RFC 6856 §2.1 / CONFORMANCE.md §10.2: outside UTF-8 mode no raw non-ASCII may be sent, and
    a CAPA line is no exception (the client would decode it as U+FFFD)."""
    conn = new_server()
    first(conn, b"CAPA\r\n")
    with pytest.raises(LocalProtocolError):
        conn.send(CapaOk(Capabilities.build(("IMPLEMENTATION", "Dövecot"))))


# ---------------------------------------------------------------------------
# STLS and TLS
# ---------------------------------------------------------------------------


def test_stls_then_tls_established() -> None:
    conn = new_server()
    first(conn, b"CAPA\r\n")
    conn.send(CapaOk(Capabilities.build("STLS", "USER")))
    first(conn, b"USER a\r\n")
    conn.send(Err())
    assert first(conn, b"STLS\r\n") == Stls()
    assert conn.send(Ok("Begin TLS negotiation now")) == b"+OK Begin TLS negotiation now\r\n"
    assert conn.state is State.TLS_PENDING
    assert conn.next_event() is PAUSED
    conn.tls_established()
    assert conn.state is State.AUTHORIZATION and conn.tls
    assert conn.capabilities is None
    assert conn.next_event() is NEED_DATA
    assert first(conn, b"CAPA\r\n") == Capa()


def test_stls_refused_by_the_application() -> None:
    conn = new_server()
    first(conn, b"STLS\r\n")
    conn.send(Err("not available"))
    assert conn.state is State.AUTHORIZATION and not conn.tls


def test_tls_established_in_the_wrong_state() -> None:
    conn = new_server()
    with pytest.raises(LocalProtocolError):
        conn.tls_established()
    assert conn.state is State.ERROR


def test_unsolicited_err_while_tls_pending() -> None:
    """The application may still give up with an -ERR before the handshake."""
    conn = new_server()
    first(conn, b"STLS\r\n")
    conn.send(Ok())
    assert conn.send(Err("TLS handshake failed")) == b"-ERR TLS handshake failed\r\n"
    assert conn.state is State.CLOSED


# ---------------------------------------------------------------------------
# EOF, ERROR, send_failed
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("setup", ["AUTHORIZATION", "USER_OK", "TRANSACTION"])
def test_eof_closes_without_update(setup: str) -> None:
    conn = server_tx() if setup == "TRANSACTION" else new_server()
    if setup == "USER_OK":
        first(conn, b"USER a\r\n")
        conn.send(Ok())
    conn.receive_data(b"")
    assert conn.next_event() == ConnectionClosed()
    assert conn.state is State.CLOSED
    assert conn.next_event() == ConnectionClosed()


def test_eof_before_greeting_sent() -> None:
    conn = Connection(SERVER)
    conn.receive_data(b"")
    assert conn.next_event() is PAUSED  # the application must still greet (or close)
    conn.send(Greeting("hi"))
    assert conn.next_event() == ConnectionClosed()


def test_error_state_is_terminal() -> None:
    conn = new_server()
    conn.receive_data(b"STLS\r\nCAPA\r\n")
    with pytest.raises(RemoteProtocolError):
        conn.next_event()
    assert conn.state is State.ERROR
    with pytest.raises(RemoteProtocolError, match="ERROR"):
        conn.next_event()
    with pytest.raises(LocalProtocolError, match="ERROR"):
        conn.send(Err())
    with pytest.raises(LocalProtocolError, match="ERROR"):
        conn.send(ConnectionClosed())


def test_send_failed() -> None:
    conn = server_tx()
    first(conn, b"NOOP\r\n")
    conn.send_failed()
    assert conn.state is State.ERROR
    with pytest.raises(LocalProtocolError):
        conn.send(Ok())
    with pytest.raises(RemoteProtocolError):
        conn.next_event()


def test_receive_data_after_eof() -> None:
    conn = server_tx()
    conn.receive_data(b"")
    with pytest.raises(LocalProtocolError, match="after the end"):
        conn.receive_data(b"NOOP\r\n")
    assert conn.state is State.ERROR
    with pytest.raises(TypeError, match="str"):
        conn.receive_data("text")  # type: ignore[arg-type]


def test_receive_data_accepts_bytes_like() -> None:
    conn = server_tx()
    conn.receive_data(bytearray(b"NO"))
    conn.receive_data(memoryview(b"OP\r\n"))
    assert conn.next_event() == Noop()


def test_dele_and_quit_in_update() -> None:
    """RFC 1939 §6: -ERR to QUIT from TRANSACTION still ends the session."""
    conn = server_tx()
    first(conn, b"DELE 1\r\n")
    conn.send(Ok())
    first(conn, b"QUIT\r\n")
    assert conn.state is State.UPDATE
    assert conn.send(Err("some deleted messages not removed")) == (
        b"-ERR some deleted messages not removed\r\n"
    )
    assert conn.state is State.CLOSED


def test_top_and_dele_commands_parse() -> None:
    conn = server_tx()
    assert first(conn, b"TOP 3 10\r\n") == Top(3, 10)
    conn.send(Err())
    assert first(conn, b"DELE 3\r\n") == Dele(3)
    conn.send(Ok())
    assert first(conn, b"RSET\r\n") == Rset()
    conn.send(Ok())
    assert first(conn, b"UIDL\r\n") == Uidl()
    conn.send(UidlOk({}))
    assert first(conn, b"LIST 3\r\n") == List(3)

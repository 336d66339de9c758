"""Unit tests for the client role of :class:`pop3proto.Connection`.

The client sends commands and parses the server's bytes into response events.
Section references are to CONFORMANCE.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

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
    PlainClient,
    Quit,
    RemoteProtocolError,
    Retr,
    Role,
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
    apop_digest,
)
from tests.helpers import (
    ENDED,
    LOCAL,
    TIMESTAMP,
    Options,
    ask,
    client_tx,
    new_client,
    pipelining_client,
)
from tests.helpers import events_through_wait as events
from tests.helpers import feed_through_wait as feed

if TYPE_CHECKING:
    from typing_extensions import Unpack


def capabilities(conn: Connection) -> Capabilities:
    """The capabilities *conn* learnt from CAPA (which the caller has sent)."""
    assert conn.capabilities is not None
    return conn.capabilities


# ---------------------------------------------------------------------------
# Construction and properties
# ---------------------------------------------------------------------------


def test_roles_and_initial_properties() -> None:
    conn = Connection(CLIENT)
    assert conn.our_role is CLIENT and conn.their_role is SERVER
    assert conn.state is State.AWAIT_GREETING
    assert conn.outstanding == () and conn.capabilities is None and conn.greeting is None
    assert (conn.tls, conn.utf8, conn.lang) == (False, False, False)
    assert Connection(CLIENT, tls=True).tls is True


@pytest.mark.parametrize("role", ["CLIENT", None, SERVER.__class__("CLIENT")])
def test_constructor_rejects_anything_but_the_role_sentinels(role: object) -> None:
    with pytest.raises(ValueError):
        Connection(cast(Role, role))  # deliberately not a Role


@pytest.mark.parametrize("name", ["max_command_size", "max_sasl_size", "max_listing_size"])
def test_constructor_rejects_tiny_limits(name: str) -> None:
    with pytest.raises(ValueError, match=name):
        Connection(CLIENT, **cast(Options, {name: 7}))
    Connection(CLIENT, **cast(Options, {name: 8}))


def test_greeting_is_stored() -> None:
    conn = new_client()
    assert conn.greeting == Greeting("POP3 server ready " + TIMESTAMP)
    assert conn.greeting.timestamp == TIMESTAMP
    assert conn.state is State.AUTHORIZATION


def test_greeting_with_code_keeps_it_in_the_text() -> None:
    """A Greeting has no code field: a ``[CODE]`` stays part of its text."""
    conn = new_client(b"+OK [SYS/TEMP] slow today\r\n")
    assert conn.greeting == Greeting("[SYS/TEMP] slow today")


# ---------------------------------------------------------------------------
# Full sessions
# ---------------------------------------------------------------------------


def test_full_user_pass_session() -> None:
    conn = new_client()
    assert conn.send(User("mrose")) == b"USER mrose\r\n"
    assert conn.outstanding == (User("mrose"),)
    assert feed(conn, b"+OK mrose is a real hoopy frood\r\n") == [
        Ok("mrose is a real hoopy frood"),
        NEED_DATA,
    ]
    assert conn.state is State.USER_OK and conn.outstanding == ()
    assert conn.send(Pass("secret")) == b"PASS secret\r\n"
    feed(conn, b"+OK mrose's maildrop has 2 messages (320 octets)\r\n")
    assert conn.state is State.TRANSACTION
    assert ask(conn, Stat(), b"+OK 2 320\r\n") == [StatOk(2, 320), NEED_DATA]
    assert ask(conn, List(), b"+OK 2 messages\r\n1 120\r\n2 200\r\n.\r\n") == [
        ListOk({1: 120, 2: 200}, "2 messages"),
        NEED_DATA,
    ]
    assert ask(conn, List(2), b"+OK 2 200\r\n") == [ListEntryOk(2, 200), NEED_DATA]
    assert ask(conn, Uidl(), b"+OK\r\n1 whqtswO00WBw418f9t5JxYwZ\r\n.\r\n")[0] == UidlOk(
        {1: "whqtswO00WBw418f9t5JxYwZ"}
    )
    assert ask(conn, Uidl(1), b"+OK 1 whqtswO00WBw418f9t5JxYwZ\r\n")[0] == UidlEntryOk(
        1, "whqtswO00WBw418f9t5JxYwZ"
    )
    assert ask(conn, Retr(1), b"+OK 120 octets\r\nSubject: x\r\n\r\nhi\r\n.\r\n") == [
        MessageStart("120 octets"),
        MessageData(b"Subject: x\r\n\r\nhi\r\n"),
        MessageEnd(),
        NEED_DATA,
    ]
    assert conn.send(Top(1, 0)) == b"TOP 1 0\r\n"
    assert feed(conn, b"+OK\r\nSubject: x\r\n\r\n.\r\n")[-2] == MessageEnd()
    assert ask(conn, Dele(1), b"+OK message 1 deleted\r\n")[0] == Ok("message 1 deleted")
    assert ask(conn, Noop(), b"+OK\r\n")[0] == Ok()
    assert ask(conn, Rset(), b"+OK maildrop has 2 messages\r\n")[0] == Ok("maildrop has 2 messages")
    assert conn.send(Quit()) == b"QUIT\r\n"
    assert conn.state is State.UPDATE
    assert feed(conn, b"+OK dewey POP3 server signing off\r\n") == [
        Ok("dewey POP3 server signing off"),
        ENDED,
    ]
    assert conn.state is State.CLOSED
    # CLOSED: ConnectionClosed every time.
    assert conn.next_event() == ENDED
    conn.receive_data(b"")
    assert conn.next_event() == ENDED


def test_full_apop_session() -> None:
    conn = new_client()
    assert conn.greeting is not None and conn.greeting.timestamp is not None
    digest = apop_digest(conn.greeting.timestamp, "tanstaaf")
    assert digest == "c4c9334bac560ecc979e58001b3e22fb"
    assert conn.send(Apop("mrose", digest)) == b"APOP mrose " + digest.encode() + b"\r\n"
    feed(conn, b"+OK maildrop has 1 message (369 octets)\r\n")
    assert conn.state is State.TRANSACTION


def test_full_sasl_plain_session_with_mechanism_helper() -> None:
    """AUTH without an initial response, answered after the empty challenge (RFC 5034 §6)."""
    conn = new_client()
    mech = PlainClient("test", "test", authzid="test")
    assert conn.send(Auth(mech.name)) == b"AUTH PLAIN\r\n"
    assert conn.state is State.SASL
    assert feed(conn, b"+ \r\n") == [SaslChallenge(b""), PAUSED]
    # PAUSED until the client answers; nothing more is parsed meanwhile.
    assert conn.next_event() is PAUSED
    response = mech.initial_response()
    assert response is not None
    assert conn.send(SaslResponse(response)) == b"dGVzdAB0ZXN0AHRlc3Q=\r\n"
    assert conn.next_event() is NEED_DATA
    assert feed(conn, b"+OK Maildrop locked and ready\r\n")[0] == Ok("Maildrop locked and ready")
    assert conn.state is State.TRANSACTION


def test_sasl_empty_response_is_an_empty_line() -> None:
    conn = new_client()
    conn.send(Auth("DIGEST-MD5"))
    feed(conn, b"+ cnNwYXV0aD0w\r\n")
    assert conn.send(SaslResponse(b"")) == b"\r\n"


def test_sasl_failure_returns_to_authorization() -> None:
    conn = new_client()
    conn.send(Auth("PLAIN", b"\0u\0p"))
    ev = feed(conn, b"-ERR [AUTH] Authentication failed.\r\n")[0]
    assert isinstance(ev, Err) and ev.code is not None and ev.code.known == "AUTH"
    assert conn.state is State.AUTHORIZATION
    assert conn.send(User("u")) == b"USER u\r\n"


def test_sasl_cancel() -> None:
    conn = new_client()
    conn.send(Auth("CRAM-MD5"))
    feed(conn, b"+ PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UuZXhhbXBsZS5uZXQ+\r\n")
    assert conn.send(SaslCancel()) == b"*\r\n"
    assert feed(conn, b"-ERR cancelled\r\n")[0] == Err("cancelled")
    assert conn.state is State.AUTHORIZATION


@pytest.mark.parametrize("event", [SaslResponse(b"x"), SaslCancel()])
def test_sasl_line_without_a_challenge_is_refused(event: Event) -> None:
    conn = new_client()
    with pytest.raises(LocalProtocolError, match="challenge"):
        conn.send(event)
    assert conn.state is State.ERROR
    conn = new_client()
    conn.send(Auth("PLAIN"))
    with pytest.raises(LocalProtocolError):
        conn.send(event)


def test_sasl_command_while_a_response_is_owed_is_refused() -> None:
    conn = new_client()
    conn.send(Auth("PLAIN"))
    feed(conn, b"+ \r\n")
    with pytest.raises(LocalProtocolError, match="AUTH"):
        conn.send(Capa())


# ---------------------------------------------------------------------------
# What a client may send
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "event", [Ok(), Err(), Greeting("x"), StatOk(1, 1), MessageEnd(), SaslChallenge(b"")]
)
def test_client_refuses_to_send_responses(event: Event) -> None:
    conn = new_client()
    with pytest.raises(LocalProtocolError, match="commands"):
        conn.send(event)
    assert conn.state is State.ERROR


def test_client_sends_connection_closed_to_close_its_end() -> None:
    """As in h11, "sending" ConnectionClosed closes our end: no bytes, state CLOSED."""
    conn = client_tx()
    assert conn.send(ConnectionClosed()) == b""
    assert conn.state is State.CLOSED
    assert conn.next_event() == LOCAL


def test_client_refuses_to_send_badcommand() -> None:
    with pytest.raises(LocalProtocolError):
        new_client().send(BadCommand(b"XX", "no"))


CLIENT_CMDS = {
    "USER": User("a"),
    "PASS": Pass("b"),
    "APOP": Apop("a", "c4c9334bac560ecc979e58001b3e22fb"),
    "AUTH": Auth("PLAIN"),
    "STAT": Stat(),
    "LIST": List(),
    "RETR": Retr(1),
    "DELE": Dele(1),
    "NOOP": Noop(),
    "RSET": Rset(),
    "QUIT": Quit(),
    "TOP": Top(1, 1),
    "UIDL": Uidl(),
    "CAPA": Capa(),
    "STLS": Stls(),
    "UTF8": Utf8(),
    "LANG": Lang(),
    "XTND": Extension("XTND"),
}
CLIENT_LEGAL = {
    State.AUTHORIZATION: {"USER", "APOP", "AUTH", "STLS", "CAPA", "UTF8", "LANG", "QUIT", "XTND"},
    State.USER_OK: {"PASS", "QUIT", "XTND"},
    State.TRANSACTION: {
        "STAT",
        "LIST",
        "RETR",
        "DELE",
        "NOOP",
        "RSET",
        "TOP",
        "UIDL",
        "CAPA",
        "LANG",
        "QUIT",
        "XTND",
    },
}


def client_in(state: State) -> Connection:
    if state is State.TRANSACTION:
        return client_tx()
    conn = new_client()
    if state is State.USER_OK:
        ask(conn, User("a"), b"+OK\r\n")
    assert conn.state is state
    return conn


@pytest.mark.parametrize("state", list(CLIENT_LEGAL), ids=lambda s: s.name)
@pytest.mark.parametrize("name", sorted(CLIENT_CMDS))
def test_client_command_legality(state: State, name: str) -> None:
    """CONFORMANCE.md §2.2: which command may be sent in which state (client side)."""
    conn = client_in(state)
    cmd = CLIENT_CMDS[name]
    if name in CLIENT_LEGAL[state]:
        assert conn.send(cmd).endswith(b"\r\n")
        assert conn.outstanding == (cmd,)
    else:
        with pytest.raises(LocalProtocolError, match="not allowed"):
            conn.send(cmd)
        assert conn.state is State.ERROR


@pytest.mark.parametrize("state", [State.SASL, State.TLS_PENDING, State.UPDATE, State.CLOSED])
def test_client_sends_nothing_in_the_other_states(state: State) -> None:
    conn = new_client()
    if state is State.SASL:
        conn.send(Auth("PLAIN"))
    elif state is State.TLS_PENDING:
        ask(conn, Stls(), b"+OK\r\n")
    elif state is State.UPDATE:
        conn = client_tx()
        conn.send(Quit())
    else:
        ask(conn, Quit(), b"+OK\r\n")
    assert conn.state is state
    with pytest.raises(LocalProtocolError):
        conn.send(Noop() if state is not State.CLOSED else Capa())


def test_non_ascii_credentials() -> None:
    """CONFORMANCE.md §10.3: UTF-8 credentials only in UTF8 mode or with ``UTF8 USER``."""
    for cmd in (User("jös"), Apop("jös", "c4c9334bac560ecc979e58001b3e22fb")):
        with pytest.raises(LocalProtocolError, match="UTF8"):
            new_client().send(cmd)
    conn = new_client()
    ask(conn, User("a"), b"+OK\r\n")
    with pytest.raises(LocalProtocolError):
        conn.send(Pass("pässword"))
    conn = new_client()
    ask(conn, Capa(), b"+OK\r\nUTF8 USER\r\n.\r\n")
    assert conn.send(User("jös")) == "USER jös\r\n".encode()
    conn = new_client()
    ask(conn, Utf8(), b"+OK\r\n")
    assert conn.send(User("jös")) == "USER jös\r\n".encode()
    feed(conn, b"+OK\r\n")
    assert conn.send(Pass("pä ss")) == "PASS pä ss\r\n".encode()
    # Plain "UTF8" (without USER) does not allow it before the command.
    conn = new_client()
    ask(conn, Capa(), b"+OK\r\nUTF8\r\n.\r\n")
    with pytest.raises(LocalProtocolError):
        conn.send(User("jös"))


def test_eof_after_failed_authentication_is_a_clean_close() -> None:
    """CONFORMANCE.md §2.6: the server may close after a failed PASS; pipelined ones are moot."""
    conn = pipelining_client()
    for cmd in (User("a"), Pass("b"), Stat()):
        conn.send(cmd)
    feed(conn, b"+OK\r\n-ERR [AUTH] bad password\r\n")
    assert conn.outstanding == (Stat(),)
    conn.receive_data(b"")
    assert conn.next_event() == ConnectionClosed()
    assert conn.state is State.CLOSED and conn.outstanding == ()


def test_eof_with_a_command_outstanding_is_an_error() -> None:
    conn = client_tx()
    conn.send(Stat())
    conn.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match="unanswered"):
        conn.next_event()


def test_eof_with_nothing_outstanding_is_a_clean_close() -> None:
    conn = client_tx()
    conn.receive_data(b"")
    assert events(conn) == [ConnectionClosed()]
    assert conn.state is State.CLOSED


# ---------------------------------------------------------------------------
# PAUSED / NEED_DATA, STLS and TLS
# ---------------------------------------------------------------------------


def test_need_data_before_anything_arrives() -> None:
    conn = Connection(CLIENT)
    assert conn.next_event() is NEED_DATA
    conn.receive_data(b"+OK")
    assert conn.next_event() is NEED_DATA
    conn.receive_data(bytearray(b" hi\r"))
    assert conn.next_event() is NEED_DATA
    conn.receive_data(memoryview(b"\n"))
    assert conn.next_event() == Greeting("hi")


def test_stls_pauses_until_tls_established() -> None:
    conn = new_client()
    ask(conn, Capa(), b"+OK\r\nSTLS\r\nUSER\r\n.\r\n")
    assert capabilities(conn).stls
    assert ask(conn, Stls(), b"+OK Begin TLS\r\n") == [Ok("Begin TLS"), PAUSED]
    assert conn.state is State.TLS_PENDING
    assert conn.next_event() is PAUSED
    conn.tls_established()
    assert conn.state is State.AUTHORIZATION and conn.tls
    # RFC 2595 §4: capabilities are forgotten.
    assert conn.capabilities is None
    assert conn.next_event() is NEED_DATA
    assert ask(conn, Capa(), b"+OK\r\nUSER\r\n.\r\n")[0].capabilities.user


def test_stls_refused_keeps_plaintext() -> None:
    conn = new_client()
    assert ask(conn, Stls(), b"-ERR not now\r\n") == [Err("not now"), NEED_DATA]
    assert conn.state is State.AUTHORIZATION and not conn.tls


def test_tls_established_outside_tls_pending() -> None:
    conn = new_client()
    with pytest.raises(LocalProtocolError):
        conn.tls_established()
    assert conn.state is State.ERROR


def test_capabilities_replaced_by_each_capa() -> None:
    conn = new_client()
    ask(conn, Capa(), b"+OK\r\nTOP\r\n.\r\n")
    assert capabilities(conn).top
    ask(conn, Capa(), b"+OK\r\nUIDL\r\n.\r\n")
    assert not capabilities(conn).top and capabilities(conn).uidl
    ask(conn, Capa(), b"-ERR no CAPA\r\n")
    assert capabilities(conn).uidl  # a refused CAPA keeps what we knew


# ---------------------------------------------------------------------------
# UTF8 / LANG decoding (CONFORMANCE.md §10.1)
# ---------------------------------------------------------------------------


def test_text_before_utf8_is_ascii_with_replacement() -> None:
    conn = client_tx()
    assert ask(conn, Noop(), "+OK café\r\n".encode())[0] == Ok("caf\ufffd\ufffd")
    evs = ask(conn, Capa(), "+OK\r\nIMPLEMENTATION Dövecot\r\n.\r\n".encode())
    assert isinstance(evs[0], CapaOk), evs
    assert evs[0].capabilities.implementation == "D\ufffd\ufffdvecot"


def test_text_after_utf8_is_utf8() -> None:
    conn = new_client()
    ask(conn, Utf8(), b"+OK UTF8 enabled\r\n")
    assert conn.utf8 and not conn.lang
    assert ask(conn, User("jös"), "+OK café\r\n".encode())[0] == Ok("café")
    # Bad UTF-8 still never raises.
    assert ask(conn, Pass("x"), b"+OK caf\xe9\r\n")[0] == Ok("caf\ufffd")


def test_utf8_reply_itself_is_decoded_as_utf8() -> None:
    """CONFORMANCE.md §10.1: UTF8 changes decoding from its own reply on; a -ERR to it does not."""
    conn = new_client()
    assert ask(conn, Utf8(), "+OK UTF-8 aktiviert ✓\r\n".encode())[0] == Ok("UTF-8 aktiviert ✓")
    conn = new_client()
    assert ask(conn, Utf8(), "-ERR nö\r\n".encode())[0] == Err("n\ufffd\ufffd")


def test_text_after_lang_is_utf8() -> None:
    conn = new_client()
    assert ask(conn, Lang("sv"), b"+OK sv Kommandot lyckades\r\n")[0] == Ok("sv Kommandot lyckades")
    assert conn.lang and not conn.utf8
    assert ask(conn, Capa(), "-ERR inte tillåtet\r\n".encode())[0] == Err("inte tillåtet")


def test_failed_utf8_or_lang_changes_nothing() -> None:
    conn = new_client()
    ask(conn, Utf8(), b"-ERR no\r\n")
    ask(conn, Lang("uga"), b"-ERR unknown language\r\n")
    assert not conn.utf8 and not conn.lang
    assert ask(conn, Capa(), "-ERR ö\r\n".encode())[0] == Err("\ufffd\ufffd")


def test_bare_lang_listing() -> None:
    conn = new_client()
    evs = ask(conn, Lang(), b"+OK Language listing follows:\r\nen English\r\nde\r\n.\r\n")
    assert evs[0] == LangOk((("en", "English"), ("de", "")), "Language listing follows:")
    assert not conn.lang  # a listing selects nothing
    conn = new_client()
    conn.send(Lang())
    conn.receive_data(b"+OK\r\n en\r\n.\r\n")
    with pytest.raises(RemoteProtocolError, match="tag"):
        conn.next_event()


def test_lang_reply_itself_is_decoded_as_utf8() -> None:
    """RFC 6856 §3: responses are in the new language "starting with the response to the
    LANG command"; CONFORMANCE.md §10.1: UTF8 and LANG change decoding from their own reply on."""
    conn = new_client()
    assert ask(conn, Lang("es"), "+OK es Idioma cambiado ñ\r\n".encode())[0] == Ok(
        "es Idioma cambiado ñ"
    )


def test_lang_listing_descriptions_are_utf8() -> None:
    """RFC 6856 §3: a language listing's description is "in the language itself, using the
    UTF-8 charset", whatever the mode."""
    conn = new_client()
    evs = ask(conn, Lang(), "+OK\r\nes Español\r\n.\r\n".encode())
    assert evs[0] == LangOk((("es", "Español"),))


# ---------------------------------------------------------------------------
# Reply parsing details
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "wire", [b"+OK 1\r\n", b"+OK a b\r\n", b"+OK -1 2\r\n", b"+OK  1 2\r\n", b"+OK \xd9\xa1 2\r\n"]
)
def test_malformed_stat_reply(wire: bytes) -> None:
    conn = client_tx()
    conn.send(Stat())
    conn.receive_data(wire)
    with pytest.raises(RemoteProtocolError, match="STAT"):
        conn.next_event()
    assert conn.state is State.ERROR


@pytest.mark.parametrize("wire", [b"+OK 120\r\n", b"+OK 120 \r\n"])
def test_list_entry_without_the_message_number_is_the_asked_one(wire: bytes) -> None:
    """CONFORMANCE.md §3.9: "+OK size" alone answers for the message asked about."""
    conn = client_tx()
    assert ask(conn, List(1), wire)[0] == ListEntryOk(1, 120)
    assert conn.state is State.TRANSACTION


def test_uidl_entry_without_the_message_number_is_the_asked_one() -> None:
    """CONFORMANCE.md §3.9: "+OK uid" alone answers for the message asked about."""
    conn = client_tx()
    assert ask(conn, Uidl(3), b"+OK whqtswO00WBw418f9t5JxYwZ\r\n")[0] == UidlEntryOk(
        3, "whqtswO00WBw418f9t5JxYwZ"
    )
    assert ask(conn, Uidl(3), b"+OK 3 abc extra\r\n")[0] == UidlEntryOk(3, "abc")


@pytest.mark.parametrize("wire", [b"+OK\r\n", b"+OK 3 \x01\r\n", b"+OK \x01\r\n"])
def test_uidl_entry_empty_or_with_control_octets_is_refused(wire: bytes) -> None:
    """CONFORMANCE.md §3.9: lenient about the number, strict about the uid."""
    conn = client_tx()
    conn.send(Uidl(3))
    conn.receive_data(wire)
    with pytest.raises(RemoteProtocolError, match="UIDL"):
        conn.next_event()


def test_stat_and_list_entry_ignore_text_after_the_numbers() -> None:
    """RFC 1939 §5: text after the size is allowed ("STRONGLY discouraged")."""
    conn = client_tx()
    assert ask(conn, Stat(), b"+OK 2 320 messages\r\n")[0] == StatOk(2, 320)
    assert ask(conn, List(1), b"+OK 1 120 octets\r\n")[0] == ListEntryOk(1, 120)


@pytest.mark.parametrize("wire", [b"+OK 1 x\r\n", b"+OK x 1\r\n", b"+OK x\r\n", b"+OK\r\n"])
def test_malformed_list_entry_reply(wire: bytes) -> None:
    conn = client_tx()
    conn.send(List(1))
    conn.receive_data(wire)
    with pytest.raises(RemoteProtocolError, match="LIST"):
        conn.next_event()


@pytest.mark.parametrize("wire", [b"+OK\r\n1\r\n.\r\n", b"+OK\r\n1 1\r\n1 2\r\n.\r\n"])
def test_malformed_listing(wire: bytes) -> None:
    conn = client_tx()
    conn.send(List())
    conn.receive_data(wire)
    with pytest.raises(RemoteProtocolError):
        conn.next_event()


def test_list_entry_with_message_number_zero() -> None:
    """Message number 0 in a LIST reply is a RemoteProtocolError (CONFORMANCE.md §9.1)."""
    conn = client_tx()
    conn.send(List(1))
    conn.receive_data(b"+OK 0 200\r\n")
    with pytest.raises(RemoteProtocolError):
        conn.next_event()
    assert conn.state is State.ERROR


def test_listing_size_limit() -> None:
    """max_listing_size bounds LIST/UIDL/CAPA/LANG replies, before or at the terminator."""
    for wire in (b"+OK\r\n1 1\r\n2 2\r\n33 3\r\n.\r\n", b"+OK\r\n1 1\r\n2 2\r\n33 3\r\n4 4\r\n"):
        conn = client_tx(max_listing_size=16)
        conn.send(List())
        conn.receive_data(wire)
        with pytest.raises(RemoteProtocolError, match="larger than 16"):
            conn.next_event()
    conn = client_tx(max_listing_size=16)
    assert ask(conn, List(), b"+OK\r\n1 1\r\n22 22\r\n.\r\n")[0] == ListOk({1: 1, 22: 22})


def test_listing_arriving_in_pieces() -> None:
    conn = client_tx()
    conn.send(Uidl())
    for piece in (b"+OK\r\n1 a", b"bc\r\n2 d", b"ef\r\n.", b"\r", b"\n"):
        evs = feed(conn, piece)
    assert evs == [UidlOk({1: "abc", 2: "def"}), NEED_DATA]


def test_status_line_limit_default_is_generous() -> None:
    """CONFORMANCE.md §3.5: the client's status-line limit defaults to 8 KiB."""
    conn = client_tx()
    text = "t" * 8000
    assert ask(conn, Noop(), b"+OK " + text.encode() + b"\r\n")[0] == Ok(text)
    conn.send(Noop())
    conn.receive_data(b"+OK " + b"t" * 8200)
    with pytest.raises(RemoteProtocolError, match="longer than 8192"):
        conn.next_event()


def test_retr_err_has_no_body() -> None:
    conn = client_tx()
    assert ask(conn, Retr(9), b"-ERR no such message\r\n") == [
        Err("no such message"),
        NEED_DATA,
    ]
    assert conn.outstanding == ()


def test_body_followed_by_next_reply_in_same_segment() -> None:
    conn = pipelining_client()
    ask(conn, User("a"), b"+OK\r\n")
    ask(conn, Pass("b"), b"+OK\r\n")
    conn.send(Retr(1))
    conn.send(Dele(1))
    evs = feed(conn, b"+OK\r\nabc\r\n.\r\n+OK deleted\r\n")
    assert evs == [MessageStart(), MessageData(b"abc\r\n"), MessageEnd(), Ok("deleted"), NEED_DATA]


# ---------------------------------------------------------------------------
# Extension commands
# ---------------------------------------------------------------------------


def test_extension_single_line() -> None:
    conn = client_tx()
    assert conn.send(Extension("xlst")) == b"XLST\r\n"
    assert feed(conn, b"+OK 3\r\n") == [Ok("3"), NEED_DATA]
    assert conn.state is State.TRANSACTION
    conn = new_client()
    assert conn.send(Extension("RPOP", ("x",))) == b"RPOP x\r\n"
    assert feed(conn, b"-ERR no RPOP\r\n")[0] == Err("no RPOP")


def test_extension_multiline() -> None:
    conn = client_tx()
    assert conn.send(Extension("XTND", ("XLST", "Subject"), multiline=True)) == (
        b"XTND XLST Subject\r\n"
    )
    assert feed(conn, b"+OK\r\n1 Subject: hi\r\n..dot\r\n.\r\n") == [
        MessageStart(),
        MessageData(b"1 Subject: hi\r\n.dot\r\n"),
        MessageEnd(),
        NEED_DATA,
    ]
    conn.send(Extension("XTND", ("XLST",), multiline=True))
    assert feed(conn, b"-ERR no\r\n") == [Err("no"), NEED_DATA]


def test_extension_changes_no_state_in_user_ok() -> None:
    conn = new_client()
    ask(conn, User("a"), b"+OK\r\n")
    assert ask(conn, Extension("XAUT"), b"+OK\r\n")[0] == Ok()
    assert conn.state is State.USER_OK


# ---------------------------------------------------------------------------
# ERROR state, send_failed, receive_data after EOF
# ---------------------------------------------------------------------------


def test_error_state_after_remote_error() -> None:
    conn = client_tx()
    conn.send(Noop())
    conn.receive_data(b"garbage\r\n")
    with pytest.raises(RemoteProtocolError):
        conn.next_event()
    assert conn.state is State.ERROR
    with pytest.raises(RemoteProtocolError, match="ERROR"):
        conn.next_event()
    with pytest.raises(LocalProtocolError, match="ERROR"):
        conn.send(Noop())


def test_error_state_after_local_error() -> None:
    conn = client_tx()
    with pytest.raises(LocalProtocolError):
        conn.send(User("again"))
    assert conn.state is State.ERROR
    with pytest.raises(RemoteProtocolError):
        conn.next_event()
    with pytest.raises(LocalProtocolError):
        conn.send(Noop())


def test_send_failed() -> None:
    conn = client_tx()
    conn.send(Noop())
    conn.send_failed()
    assert conn.state is State.ERROR
    with pytest.raises(LocalProtocolError):
        conn.send(Noop())
    with pytest.raises(RemoteProtocolError):
        conn.next_event()


def test_receive_data_after_eof() -> None:
    conn = client_tx()
    conn.receive_data(b"")
    conn.receive_data(b"")  # a second EOF is harmless
    with pytest.raises(LocalProtocolError, match="after the end"):
        conn.receive_data(b"+OK\r\n")
    assert conn.state is State.ERROR
    with pytest.raises(TypeError, match="str"):
        conn.receive_data("text")  # type: ignore[arg-type]


def test_closed_state_is_sticky_even_with_data_left() -> None:
    """After QUIT's reply, anything else the server sends is ignored."""
    conn = new_client()
    conn.send(Quit())
    assert feed(conn, b"+OK bye\r\ntrailing junk\r\n") == [Ok("bye"), ENDED]
    assert conn.next_event() == ENDED


@pytest.mark.parametrize("how", ["eof", "unsolicited -ERR", "send ConnectionClosed"])
def test_no_commands_after_the_connection_closed(how: str) -> None:
    """CONFORMANCE.md §2.6 (commands after QUIT or close): nothing may be sent on a CLOSED
    connection."""
    conn = client_tx()
    if how == "eof":
        conn.receive_data(b"")
        assert events(conn) == [ConnectionClosed()]
    elif how == "unsolicited -ERR":
        feed(conn, b"-ERR Disconnected for inactivity.\r\n")
    else:
        conn.send(ConnectionClosed())
    assert conn.state is State.CLOSED
    with pytest.raises(LocalProtocolError):
        conn.send(Noop())


# ---------------------------------------------------------------------------
# lenient_end and peer_idle (node-pop3#27, cyrus-imapd#4717; CONFORMANCE.md §3.3)
# ---------------------------------------------------------------------------


def lenient_retr(wire: bytes, **kw: Unpack[Options]) -> tuple[Connection, list[object]]:
    options: Options = {"lenient_end": True, **kw}
    conn = client_tx(**options)
    return conn, ask(conn, Retr(1), wire)


def test_lenient_end_last_line_without_crlf() -> None:
    """``last line.CRLF``: held back until the peer is idle, then the body ends."""
    conn, evs = lenient_retr(b"+OK\r\nabc.\r\n")
    assert evs == [MessageStart(), MessageData(b"abc"), NEED_DATA]
    assert conn.next_event() is NEED_DATA
    conn.peer_idle()
    assert events(conn) == [MessageEnd(), NEED_DATA]
    assert conn.outstanding == ()


def test_lenient_end_dot_cr_without_lf() -> None:
    """``CRLF . CR`` (Cyrus 3.4.6): the peer's silence completes the terminator."""
    conn, evs = lenient_retr(b"+OK\r\nabc\r\n.\r")
    assert evs == [MessageStart(), MessageData(b"abc"), NEED_DATA]
    conn.peer_idle()
    assert events(conn) == [MessageData(b"\r\n"), MessageEnd(), NEED_DATA]


@pytest.mark.parametrize(
    ("wire", "body"), [(b"+OK\r\nabc.\n", b"abc"), (b"+OK\r\nabc\n.\r", b"abc\n")]
)
def test_lenient_end_with_bare_lf(wire: bytes, body: bytes) -> None:
    conn, evs = lenient_retr(wire, bare_lf=True)
    conn.peer_idle()
    evs += events(conn)
    assert b"".join(e.data for e in evs if isinstance(e, MessageData)) == body
    assert MessageEnd() in evs


def test_lenient_end_more_data_means_it_was_text() -> None:
    """A held-back ``X.CRLF`` followed by more data was an ordinary line."""
    conn, evs = lenient_retr(b"+OK\r\nRegards.\r\n")
    assert evs == [MessageStart(), MessageData(b"Regards"), NEED_DATA]
    conn.peer_idle()
    conn.receive_data(b"more\r\n.\r\n")  # data arrived after all: no longer idle
    assert events(conn) == [MessageData(b".\r\nmore\r\n"), MessageEnd(), NEED_DATA]


def test_peer_idle_on_other_tails_or_strict_clients_does_nothing() -> None:
    conn, _ = lenient_retr(b"+OK\r\nabc\r\n")
    conn.peer_idle()
    assert conn.next_event() is NEED_DATA
    conn = client_tx()
    evs = ask(conn, Retr(1), b"+OK\r\nabc.\r\n")
    conn.peer_idle()
    assert conn.next_event() is NEED_DATA
    conn.receive_data(b".\r\n")
    evs += events(conn)
    assert b"".join(e.data for e in evs if isinstance(e, MessageData)) == b"abc.\r\n"
    assert evs[-2:] == [MessageEnd(), NEED_DATA]


def test_lenient_end_normal_bodies_unchanged() -> None:
    _, evs = lenient_retr(b"+OK\r\n..\r\nx.\r\n.\r\n")
    assert evs == [MessageStart(), MessageData(b".\r\nx.\r\n"), MessageEnd(), NEED_DATA]


# ---------------------------------------------------------------------------
# can_send (what tests/engine/test_can_send.py does not already cover)
# ---------------------------------------------------------------------------


def test_can_send_asking_about_connection_closed_does_not_close() -> None:
    conn = new_client()
    assert conn.can_send(ConnectionClosed())
    assert conn.state is State.AUTHORIZATION and conn.outstanding == ()
    assert conn.send(User("a")) == b"USER a\r\n"


@pytest.mark.parametrize(
    "event", [User("u" * 300), User("jös"), SaslResponse(b""), SaslCancel(), Ok()], ids=repr
)
def test_can_send_false_for_every_kind_of_refusal(event: Event) -> None:
    """Too long, non-ASCII credentials, SASL lines without a challenge, responses."""
    conn = new_client()
    assert conn.can_send(event) is False
    assert conn.state is State.AUTHORIZATION
    assert conn.send(Capa()) == b"CAPA\r\n"


def test_can_send_follows_the_sasl_rules() -> None:
    conn = new_client()
    conn.send(Auth("PLAIN"))
    assert not conn.can_send(SaslResponse(b"x"))  # no challenge yet
    feed(conn, b"+ =AAA\r\n")  # malformed: only a cancel will do (RFC 5034 §4)
    assert not conn.can_send(SaslResponse(b"x"))
    assert conn.can_send(SaslCancel())
    assert conn.send(SaslCancel()) == b"*\r\n"
    assert not conn.can_send(SaslCancel())  # answered already

"""Replies about the maildrop in TRANSACTION, through both roles: deletion and
unique-ids (CONFORMANCE.md §9.1, §9.3)."""

from __future__ import annotations

import pytest

from pop3proto import (
    NEED_DATA,
    Dele,
    Err,
    Event,
    Greeting,
    List,
    ListOk,
    LocalProtocolError,
    Noop,
    Ok,
    RemoteProtocolError,
    Retr,
    Rset,
    Stat,
    State,
    StatOk,
    Top,
    Uidl,
    UidlEntryOk,
    UidlOk,
)
from tests.helpers import (
    GREETING_TEXT,
    ConnectionPair,
    ask,
    client_tx,
    first,
    login,
    server_tx,
)


def test_deletion_dele_replies() -> None:
    """DELE gets a one-line reply; a second DELE's -ERR is an ordinary Err."""
    pair = ConnectionPair(greeting=Greeting(GREETING_TEXT))
    login(pair, user="a", password="b")
    assert pair.command(Dele(1))[0] == Dele(1)
    assert pair.reply(Ok("message 1 deleted")) == [Ok("message 1 deleted"), NEED_DATA]
    pair.command(Dele(1))
    assert pair.reply(Err("message 1 already deleted"))[0] == Err("message 1 already deleted")
    assert pair.client.state is pair.server.state is State.TRANSACTION


@pytest.mark.parametrize("cmd", [Retr(1), Top(1, 0), List(1), Uidl(1), Dele(1)])
def test_deletion_commands_on_a_deleted_message(cmd: Event) -> None:
    """RETR, TOP, LIST n, UIDL n and DELE on a deleted message get an -ERR without a body, and
    the next reply is framed right."""
    pair = ConnectionPair(greeting=Greeting(GREETING_TEXT))
    login(pair, user="a", password="b")
    pair.command(Dele(1))
    pair.reply(Ok())
    pair.command(cmd)
    assert pair.reply(Err("message 1 already deleted")) == [
        Err("message 1 already deleted"),
        NEED_DATA,
    ]
    pair.command(Noop())
    assert pair.reply(Ok()) == [Ok(), NEED_DATA]


def test_deletion_listings_are_not_renumbered() -> None:
    """After DELE, STAT drops the count and LIST and UIDL skip the number without renumbering;
    RSET is a plain +OK."""
    pair = ConnectionPair(greeting=Greeting(GREETING_TEXT))
    login(pair, user="a", password="b")
    pair.command(Dele(1))
    pair.reply(Ok())
    pair.command(Stat())
    assert pair.reply(StatOk(1, 200))[0] == StatOk(1, 200)
    pair.command(List())
    assert pair.reply(ListOk({2: 200}))[0] == ListOk({2: 200})
    pair.command(Uidl())
    assert pair.reply(UidlOk({2: "QhdPYR:00WBw1Ph7x7"}))[0] == UidlOk({2: "QhdPYR:00WBw1Ph7x7"})
    pair.command(Rset())
    assert pair.reply(Ok("maildrop has 2 messages"))[0] == Ok("maildrop has 2 messages")


def test_uidl_70_and_71_characters_server() -> None:
    """A server sends a 70-character uid and refuses 71 (RFC 1939 §7)."""
    srv = server_tx()
    first(srv, b"UIDL 1\r\n")
    assert srv.send(UidlEntryOk(1, "u" * 70)) == b"+OK 1 " + b"u" * 70 + b"\r\n"
    with pytest.raises(LocalProtocolError):
        UidlEntryOk(1, "u" * 71)
    with pytest.raises(LocalProtocolError):
        UidlOk({1: "u" * 71})


def test_uidl_70_and_71_characters_client() -> None:
    """A client accepts a 71-character uid in both forms, as any printable token
    (CONFORMANCE.md §9.3)."""
    conn = client_tx()
    for n in (70, 71):
        uid = "u" * n
        ev = ask(conn, Uidl(1), b"+OK 1 " + uid.encode() + b"\r\n")[0]
        assert isinstance(ev, UidlEntryOk) and (ev.number, ev.uid) == (1, uid)
        got = ask(conn, Uidl(), b"+OK\r\n1 " + uid.encode() + b"\r\n.\r\n")[0]
        assert isinstance(got, UidlOk) and got.uids == {1: uid}
    assert conn.state is State.TRANSACTION


def test_uidl_uid_with_space_is_uid_plus_trailing_text() -> None:
    """Text after a uid is ignored, so a uid with a space loses its tail (CONFORMANCE.md §9.3)."""
    conn = client_tx()
    assert ask(conn, Uidl(1), b"+OK 1 abc def\r\n")[0] == UidlEntryOk(1, "abc")
    ev = ask(conn, Uidl(), b"+OK\r\n1 abc def\r\n2 xyz\r\n.\r\n")[0]
    assert ev == UidlOk({1: "abc", 2: "xyz"})


@pytest.mark.parametrize(
    "wire", [b"+OK 1 ab\x7fc\r\n", b"+OK 1 ab\xe9c\r\n", b"+OK\r\n", b"+OK 0 abc\r\n"]
)
def test_uidl_bad_entry(wire: bytes) -> None:
    """A uid with 0x7F or an 8-bit octet, no uid, or message 0 is a RemoteProtocolError."""
    conn = client_tx()
    conn.send(Uidl(1))
    conn.receive_data(wire)
    with pytest.raises(RemoteProtocolError):
        conn.next_event()


@pytest.mark.parametrize(
    "listing", [b"1 ab\x7fc\r\n", b"1 ab\xe9c\r\n", b"1 a\r\n1 b\r\n", b"0 a\r\n", b"1\r\n"]
)
def test_uidl_bad_listing(listing: bytes) -> None:
    """0x7F, 8-bit octets, duplicate numbers, message 0 or a missing uid in a listing are a
    RemoteProtocolError."""
    conn = client_tx()
    conn.send(Uidl())
    conn.receive_data(b"+OK\r\n" + listing + b".\r\n")
    with pytest.raises(RemoteProtocolError):
        conn.next_event()


@pytest.mark.parametrize("listing", [b"1 a\rb\r\n", b"1 a\r\r\n"])
def test_uidl_uid_with_bare_cr_is_refused(listing: bytes) -> None:
    """A uid containing CR is refused: a uid is 0x21-0x7E (RFC 1939 §7)."""
    conn = client_tx()
    conn.send(Uidl())
    conn.receive_data(b"+OK\r\n" + listing + b".\r\n")
    with pytest.raises(RemoteProtocolError):
        conn.next_event()


def test_uidl_duplicate_uids_are_allowed() -> None:
    """Identical messages may share a uid (RFC 1939 §7)."""
    pair = ConnectionPair(greeting=Greeting(GREETING_TEXT))
    login(pair, user="a", password="b")
    pair.command(Uidl())
    assert pair.reply(UidlOk({1: "same", 2: "same"}))[0] == UidlOk({1: "same", 2: "same"})

"""Interop: pop3proto's ready-made CLIENTS against a real Dovecot POP3 server.

``tests/interop/test_dovecot_engine.py`` drives the bare engine; this file runs the
adapters users actually call: the ``poplib`` drop-in
(:class:`pop3proto.adapters.sync.POP3` / ``POP3_SSL``), the modern blocking
:class:`pop3proto.adapters.sync.Client`, and the asyncio and trio clients.
Every message is compared byte for byte with what the ``dovecot_mailbox``
fixture says Dovecot serves (``crlf`` of the stored message).
"""

from __future__ import annotations

import asyncio
import io
import ssl
from typing import Literal

import pytest
import trio

from pop3proto import State
from pop3proto.adapters import asyncio as pop3_asyncio
from pop3proto.adapters import sync as pop3_sync
from pop3proto.adapters import trio as pop3_trio
from tests.dovecot import (
    TEST_MESSAGES,
    DovecotServer,
)

TIMEOUT = 60.0  # bounds a hang; a loaded machine can be slow

TLS = Literal["starttls", "implicit", "none"]

# Index (0-based) of each message in TEST_MESSAGES; POP3 numbers are +1.
PLAIN, DOTS, UTF8, BIG = range(4)


def _lines(message: bytes) -> list[bytes]:
    """What poplib-style ``retr`` returns: the lines without their CRLF."""
    assert message.endswith(b"\r\n")
    return message[:-2].split(b"\r\n")


def _top(message: bytes, count: int) -> bytes:
    """The headers, the blank line and the first *count* body lines."""
    lines = _lines(message)
    blank = lines.index(b"")
    return b"".join(line + b"\r\n" for line in lines[: blank + 1 + count])


def _maildir_contents(server: DovecotServer) -> list[bytes]:
    return sorted(path.read_bytes() for path in server.message_files())


# ---------------------------------------------------------------------------
# The poplib drop-in
# ---------------------------------------------------------------------------


def _pop3(server: DovecotServer) -> pop3_sync.POP3:
    return pop3_sync.POP3(server.host, server.pop3_port, timeout=TIMEOUT)


def test_poplib_greeting_capa_and_user_pass(
    dovecot: DovecotServer, dovecot_mailbox: list[bytes]
) -> None:
    pop = _pop3(dovecot)
    try:
        welcome = pop.getwelcome()
        assert welcome.startswith(b"+OK")
        assert b"<" in welcome and b"@" in welcome  # APOP timestamp
        caps = pop.capa()
        for tag in ("TOP", "UIDL", "USER", "PIPELINING", "STLS", "SASL"):
            assert tag in caps, caps
        assert "PLAIN" in caps["SASL"]
        assert pop.user(dovecot.user).startswith(b"+OK")
        assert pop.pass_(dovecot.password).startswith(b"+OK")
        count, size = pop.stat()
        assert count == len(dovecot_mailbox)
        assert size == sum(len(m) for m in dovecot_mailbox)
        assert pop.noop().startswith(b"+OK")
        assert pop.quit().startswith(b"+OK")
    finally:
        pop.close()


def test_poplib_apop_list_uidl_retr_top(
    dovecot: DovecotServer, dovecot_mailbox: list[bytes]
) -> None:
    pop = _pop3(dovecot)
    try:
        assert pop.apop(dovecot.user, dovecot.password).startswith(b"+OK")
        resp, listing, _ = pop.list()
        assert resp.startswith(b"+OK")
        assert listing == [b"%d %d" % (i + 1, len(m)) for i, m in enumerate(dovecot_mailbox)]
        assert pop.list(2) == b"+OK 2 %d" % len(dovecot_mailbox[DOTS])
        resp, uid_lines, _ = pop.uidl()
        assert resp.startswith(b"+OK")
        assert [line.split()[0] for line in uid_lines] == [b"1", b"2", b"3", b"4"]
        uids = [line.split()[1] for line in uid_lines]
        assert len(set(uids)) == 4
        assert pop.uidl(3) == b"+OK 3 " + uids[2]
        for number, message in enumerate(dovecot_mailbox, 1):
            resp, lines, _ = pop.retr(number)
            assert resp.startswith(b"+OK")
            assert lines == _lines(message), number
        for number in (PLAIN + 1, DOTS + 1, UTF8 + 1):
            message = dovecot_mailbox[number - 1]
            for count in (0, 2):
                resp, lines, _ = pop.top(number, count)
                assert resp.startswith(b"+OK")
                assert lines == _lines(_top(message, count)), (number, count)
        assert pop.quit().startswith(b"+OK")
    finally:
        pop.close()
    assert _maildir_contents(dovecot) == sorted(TEST_MESSAGES)


def test_poplib_dele_rset_then_dele_quit(
    dovecot: DovecotServer, dovecot_mailbox: list[bytes]
) -> None:
    pop = _pop3(dovecot)
    try:
        pop.user(dovecot.user)
        pop.pass_(dovecot.password)
        assert pop.dele(1).startswith(b"+OK")
        assert pop.stat()[0] == 3
        with pytest.raises(pop3_sync.error_proto):
            pop.retr(1)
        assert pop.rset().startswith(b"+OK")
        assert pop.stat()[0] == 4
        assert pop.retr(1)[1] == _lines(dovecot_mailbox[PLAIN])
        assert pop.dele(2).startswith(b"+OK")
        assert pop.quit().startswith(b"+OK")
    finally:
        pop.close()
    expected = sorted(m for i, m in enumerate(TEST_MESSAGES) if i != DOTS)
    assert _maildir_contents(dovecot) == expected


def test_poplib_stls(dovecot: DovecotServer, dovecot_mailbox: list[bytes]) -> None:
    pop = _pop3(dovecot)
    try:
        assert pop.stls(dovecot.ssl_context()).startswith(b"+OK")
        assert isinstance(pop.sock, ssl.SSLSocket)
        with pytest.raises(pop3_sync.error_proto):
            pop.stls(dovecot.ssl_context())
        assert "STLS" not in pop.capa()
        pop.user(dovecot.user)
        pop.pass_(dovecot.password)
        for number, message in enumerate(dovecot_mailbox, 1):
            assert pop.retr(number)[1] == _lines(message)
        assert pop.quit().startswith(b"+OK")
    finally:
        pop.close()


def test_poplib_pop3_ssl(dovecot: DovecotServer, dovecot_mailbox: list[bytes]) -> None:
    pop = pop3_sync.POP3_SSL(
        dovecot.host, dovecot.pop3s_port, timeout=TIMEOUT, context=dovecot.ssl_context()
    )
    try:
        assert pop.getwelcome().startswith(b"+OK")
        assert isinstance(pop.sock, ssl.SSLSocket)
        with pytest.raises(pop3_sync.error_proto):
            pop.stls()
        pop.apop(dovecot.user, dovecot.password)
        assert pop.stat() == (4, sum(len(m) for m in dovecot_mailbox))
        for number, message in enumerate(dovecot_mailbox, 1):
            assert pop.retr(number)[1] == _lines(message)
        assert pop.quit().startswith(b"+OK")
    finally:
        pop.close()


def test_poplib_wrong_password(dovecot: DovecotServer, dovecot_mailbox: list[bytes]) -> None:
    pop = _pop3(dovecot)
    try:
        pop.user(dovecot.user)
        with pytest.raises(pop3_sync.error_proto):
            pop.pass_("not the password")
    finally:
        pop.close()


# ---------------------------------------------------------------------------
# The modern blocking client
# ---------------------------------------------------------------------------


def _client(server: DovecotServer, tls: TLS = "starttls") -> pop3_sync.Client:
    if tls == "none":
        return pop3_sync.Client(server.host, server.pop3_port, tls="none", timeout=TIMEOUT)
    port = server.pop3s_port if tls == "implicit" else server.pop3_port
    return pop3_sync.Client(
        server.host,
        port,
        tls=tls,
        ssl_context=server.ssl_context(),
        server_hostname=server.tls_hostname,
        timeout=TIMEOUT,
    )


@pytest.mark.parametrize("tls", ["starttls", "implicit", "none"])
def test_client_full_session(
    dovecot: DovecotServer, dovecot_mailbox: list[bytes], tls: TLS
) -> None:
    with _client(dovecot, tls) as client:
        assert client.tls is (tls != "none")
        assert client.state is State.AUTHORIZATION
        client.login(dovecot.user, dovecot.password, allow_insecure=tls == "none")
        assert client.state is State.TRANSACTION
        status = client.stat()
        assert status.count == len(dovecot_mailbox)
        assert status.size == sum(len(m) for m in dovecot_mailbox)
        sizes = client.list()
        assert sizes == {i: len(m) for i, m in enumerate(dovecot_mailbox, 1)}
        assert client.size(4) == len(dovecot_mailbox[BIG])
        uids = client.uidl()
        assert sorted(uids) == [1, 2, 3, 4]
        assert len(set(uids.values())) == 4
        assert client.uid(2) == uids[2]
        for number, message in enumerate(dovecot_mailbox, 1):
            assert client.retrieve(number) == message, number
        sink = io.BytesIO()
        assert client.retrieve_into(BIG + 1, sink) == len(dovecot_mailbox[BIG])
        assert sink.getvalue() == dovecot_mailbox[BIG]
        got = list(client.retrieve_many(sizes))
        assert got == list(enumerate(dovecot_mailbox, 1))
        for number in (PLAIN + 1, DOTS + 1, UTF8 + 1):
            for count in (0, 3):
                assert client.top(number, count) == _top(dovecot_mailbox[number - 1], count)
        client.noop()
        client.delete(1)
        client.reset()
        client.delete(DOTS + 1)
        client.delete(UTF8 + 1)
    assert client.sock is None
    expected = [TEST_MESSAGES[PLAIN], TEST_MESSAGES[BIG]]
    assert _maildir_contents(dovecot) == sorted(expected)


def test_client_retrieve_many_pipelined_small_window(
    dovecot: DovecotServer, dovecot_mailbox: list[bytes]
) -> None:
    with _client(dovecot) as client:
        client.login(dovecot.user, dovecot.password)
        assert client.capabilities().pipelining
        numbers = [4, 2, 1, 3, 2]
        got = list(client.retrieve_many(numbers, window=2))
        assert got == [(n, dovecot_mailbox[n - 1]) for n in numbers]
        chunks: dict[int, bytearray] = {}
        ends: list[int] = []

        def sink(number: int, data: bytes) -> None:
            if data:
                chunks.setdefault(number, bytearray()).extend(data)
            else:
                ends.append(number)

        assert client.retrieve_many_into([1, 2, 3, 4], sink) == 4
        assert ends == [1, 2, 3, 4]
        assert {n: bytes(b) for n, b in chunks.items()} == dict(enumerate(dovecot_mailbox, 1))


@pytest.mark.parametrize(
    ("mechanism", "used"),
    [
        (None, "SCRAM-SHA-256"),
        ("PLAIN", "PLAIN"),
        ("LOGIN", "LOGIN"),
        ("CRAM-MD5", "CRAM-MD5"),
        ("APOP", "APOP"),
        ("USER", "USER"),
    ],
)
def test_client_login_mechanisms(
    dovecot: DovecotServer, dovecot_mailbox: list[bytes], mechanism: str | None, used: str
) -> None:
    with _client(dovecot) as client:
        assert client.login(dovecot.user, dovecot.password, mechanism=mechanism) == used
        assert client.state is State.TRANSACTION
        assert client.retrieve(DOTS + 1) == dovecot_mailbox[DOTS]


def test_client_login_password_with_space(
    dovecot: DovecotServer, dovecot_mailbox: list[bytes]
) -> None:
    for mechanism in ("USER", "PLAIN"):
        with _client(dovecot) as client:
            client.login("bob", dovecot.users["bob"], mechanism=mechanism)
            assert client.stat().count == len(dovecot_mailbox)


def test_client_wrong_password(dovecot: DovecotServer, dovecot_mailbox: list[bytes]) -> None:
    with _client(dovecot) as client, pytest.raises(pop3_sync.AuthenticationFailed):
        client.login(dovecot.user, "not the password", mechanism="PLAIN")


# ---------------------------------------------------------------------------
# asyncio and trio
# ---------------------------------------------------------------------------


@pytest.mark.skipif(not pop3_asyncio.STLS_SUPPORTED, reason="STLS over asyncio needs Python 3.11")
def test_asyncio_client_stls_retrieve_many(
    dovecot: DovecotServer, dovecot_mailbox: list[bytes]
) -> None:
    async def main() -> list[tuple[int, bytes]]:
        client = pop3_asyncio.Client(
            dovecot.host,
            dovecot.pop3_port,
            tls="starttls",
            ssl_context=dovecot.ssl_context(),
            server_hostname=dovecot.tls_hostname,
            timeout=TIMEOUT,
        )
        async with client:
            assert client.tls
            await client.login(dovecot.user, dovecot.password)
            sizes = await client.list()
            got = [item async for item in client.retrieve_many(sizes)]
            assert await client.retrieve(DOTS + 1) == dovecot_mailbox[DOTS]
        return got

    got = asyncio.run(main())
    assert got == list(enumerate(dovecot_mailbox, 1))


def test_trio_client_stls_retrieve_many(
    dovecot: DovecotServer, dovecot_mailbox: list[bytes]
) -> None:
    result: list[tuple[int, bytes]] = []

    async def main() -> None:
        client = await pop3_trio.connect(
            dovecot.host,
            dovecot.pop3_port,
            tls="starttls",
            ssl_context=dovecot.ssl_context(),
            server_hostname=dovecot.tls_hostname,
            timeout=TIMEOUT,
        )
        assert isinstance(client, pop3_trio.Client)
        async with client:
            assert client.tls
            await client.login(dovecot.user, dovecot.password)
            sizes = await client.list()
            result.extend([item async for item in client.retrieve_many(sizes)])
            assert await client.retrieve(UTF8 + 1) == dovecot_mailbox[UTF8]

    trio.run(main)
    assert result == list(enumerate(dovecot_mailbox, 1))

"""The poplib drop-in's error and odd paths, against raw scripted servers.

Where the standard library behaves the same, the test runs both and
compares; where ours deliberately differs (it refuses what would break the
session or leak a secret), it pins our behaviour down.
"""

from __future__ import annotations

import contextlib
import poplib as std_poplib
import socket
import ssl
import struct
from collections.abc import Callable, Iterator
from types import ModuleType

import pytest

from pop3proto.adapters import sync as our_poplib
from tests.helpers import FAKE_MESSAGES, PASSWORD, FakeConfig, ThreadedServer, serve

HOST = "127.0.0.1"
GREETING = b"+OK ready <1.2@host>\r\n"


def scripted(
    replies: Callable[[bytes], bytes | None], greeting: bytes = GREETING
) -> Callable[[socket.socket, ThreadedServer], None]:
    """A raw server: send *greeting*, then answer each command line with
    ``replies(line)``; ``None`` closes the connection."""

    def handler(sock: socket.socket, server: ThreadedServer) -> None:
        sock.sendall(greeting)
        with sock.makefile("rb") as reader:
            while True:
                line = reader.readline()
                if not line:
                    return
                server.received += line
                reply = replies(line.rstrip(b"\r\n"))
                if reply is None:
                    return
                sock.sendall(reply)

    return handler


def table(
    answers: dict[bytes, bytes | None], greeting: bytes = GREETING
) -> Callable[[socket.socket, ThreadedServer], None]:
    """A scripted handler answering by whole line, else by keyword, else ``+OK``."""
    return scripted(
        lambda line: answers.get(line, answers.get(line.split(b" ")[0], b"+OK\r\n")), greeting
    )


@contextlib.contextmanager
def connected(
    answers: dict[bytes, bytes | None], greeting: bytes = GREETING
) -> Iterator[tuple[our_poplib.POP3, ThreadedServer]]:
    """Our POP3 connected to a :func:`table` server; closed afterwards."""
    with serve(handler=table(answers, greeting)) as server:
        pop = our_poplib.POP3(HOST, server.port, timeout=10)
        try:
            yield pop, server
        finally:
            pop.close()


# ---------------------------------------------------------------------------
# Sending
# ---------------------------------------------------------------------------


def test_putline_with_bytes_that_are_not_utf8_is_not_sent() -> None:
    """A raw line the engine cannot read as UTF-8 is refused before it reaches the wire."""
    with connected({}) as (pop, server):
        with pytest.raises(our_poplib.error_proto, match="not valid UTF-8"):
            pop._putline(b"USER \xff\xfe")
        assert pop.user("alice") == b"+OK"
    assert server.received == b"USER alice\r\n"


def test_debug_level_two_masks_a_password_sent_with_putline(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """set_debuglevel(2) shows a line sent straight through _putline, password masked."""
    with connected({}) as (pop, _):
        pop.set_debuglevel(2)
        pop._putline(b"USER alice")
        assert pop._getresp() == b"+OK"
        pop._putline(f"PASS {PASSWORD}".encode())
        assert pop._getresp() == b"+OK"
    out = capsys.readouterr().out
    assert "*put* b'USER alice'" in out
    assert "*put* b'PASS ********'" in out
    assert PASSWORD not in out


def test_failed_send_makes_the_session_unusable() -> None:
    """A send that fails half-way leaves the session out of step: later commands are refused."""
    with connected({}) as (pop, _):
        pop.sock.shutdown(socket.SHUT_WR)
        with pytest.raises(BrokenPipeError):
            pop.user("alice")
        with pytest.raises(our_poplib.error_proto, match="unusable"):
            pop.user("alice")


def test_failed_send_on_the_retr_shortcut_makes_the_session_unusable() -> None:
    """The RETR fast path fails the session on a failed send, like the general path."""
    with connected({}) as (pop, _):
        pop.user("alice")
        pop.pass_(PASSWORD)
        pop.sock.shutdown(socket.SHUT_WR)
        with pytest.raises(BrokenPipeError):
            pop.retr(1)
        with pytest.raises(our_poplib.error_proto, match="unusable"):
            pop.retr(1)


def test_commands_after_quit_are_refused() -> None:
    """After QUIT the session is closed: a command is refused, not sent."""
    with connected({b"QUIT": b"+OK bye\r\n"}) as (pop, server):
        assert pop._shortcmd("QUIT") == b"+OK bye"
        with pytest.raises(our_poplib.error_proto, match="closed"):
            pop.noop()
    assert server.received == b"QUIT\r\n"


def test_reply_read_after_the_session_closed_is_eof() -> None:
    """Bytes a server sends after its +OK to QUIT are not a reply: reading one is -ERR EOF."""
    with connected({b"QUIT": b"+OK bye\r\n+OK more\r\n"}) as (pop, _):
        assert pop._shortcmd("QUIT") == b"+OK bye"
        with pytest.raises(our_poplib.error_proto, match="EOF"):
            pop._getresp()


def test_command_while_a_session_changing_reply_is_unread_is_refused() -> None:
    """After AUTH, STLS or QUIT the next command must wait for the reply (RFC 2449 §6.6)."""
    with connected({b"AUTH": b"+ \r\n"}) as (pop, server):
        pop._putcmd("AUTH PLAIN")
        with pytest.raises(our_poplib.error_proto, match="read the reply"):
            pop._putcmd("NOOP")
        assert pop._getresp() == b"+ "
    assert server.received == b"AUTH PLAIN\r\n"


def test_stls_after_utf8_is_refused_before_sending() -> None:
    """RFC 6856 §2.1: no STLS after UTF8; refused locally, the session goes on."""
    capa = b"+OK\r\nSTLS\r\nUTF8\r\n.\r\n"
    with connected({b"CAPA": capa}) as (pop, server):
        assert pop.utf8() == b"+OK"
        with pytest.raises(our_poplib.error_proto, match="after UTF8"):
            pop.stls()
        assert pop.user("alice") == b"+OK"
    assert b"STLS" not in server.received


def test_apop_command_without_a_timestamp_is_not_sent() -> None:
    """RFC 1939 §7: an APOP sent by hand with no greeting timestamp is refused locally."""
    with connected({}, greeting=b"+OK ready\r\n") as (pop, server):
        with pytest.raises(our_poplib.error_proto, match="APOP not supported"):
            pop._shortcmd("APOP alice " + "0" * 32)
        assert pop.user("alice") == b"+OK"
    assert server.received == b"USER alice\r\n"


def test_non_ascii_user_without_utf8_is_not_sent() -> None:
    """RFC 6856 §2.2: a non-ASCII user name needs UTF8 mode first; nothing is sent."""
    with connected({}) as (pop, server):
        with pytest.raises(our_poplib.error_proto, match="UTF8"):
            pop.user("j\u00f6rg")
        assert pop.utf8() == b"+OK"
        assert pop.user("j\u00f6rg") == b"+OK"
    assert server.received == "UTF8\r\nUSER j\u00f6rg\r\n".encode()


def test_commands_must_be_str() -> None:
    """A command given as bytes is an error_proto, not a crash in the parser."""
    with connected({}) as (pop, server), pytest.raises(our_poplib.error_proto, match="str"):
        pop._shortcmd(b"NOOP")  # type: ignore[arg-type]
    assert server.received == b""


def test_sasl_response_that_is_not_base64_is_not_sent() -> None:
    """RFC 5034 §4: an answer to a challenge must be base64; anything else is refused locally."""
    with connected({b"AUTH": b"+ \r\n", b"*": b"-ERR cancelled\r\n"}) as (pop, server):
        assert pop._shortcmd("AUTH PLAIN") == b"+ "
        with pytest.raises(our_poplib.error_proto, match="base64"):
            pop._shortcmd("not base64!")
        with pytest.raises(our_poplib.error_proto, match="cancelled"):
            pop._shortcmd("*")
    assert server.received == b"AUTH PLAIN\r\n*\r\n"


# ---------------------------------------------------------------------------
# AUTH
# ---------------------------------------------------------------------------


def test_auth_with_a_bytes_initial_response() -> None:
    """auth(initial_response=bytes) puts it on the AUTH line, base64-encoded."""
    with connected({}) as (pop, server):
        assert pop.auth("PLAIN", initial_response=b"\0alice\0pw") == b"+OK"
    assert server.received == b"AUTH PLAIN AGFsaWNlAHB3\r\n"


def test_auth_without_an_authobject_returns_the_first_challenge() -> None:
    """auth(mech) alone sends AUTH and leaves the challenge for the caller to answer."""
    with connected({b"AUTH": b"+ VXNlcm5hbWU6\r\n"}) as (pop, server):
        assert pop.auth("LOGIN") == b"+ VXNlcm5hbWU6"
        assert pop._shortcmd("YWxpY2U=") == b"+OK"
    assert server.received == b"AUTH LOGIN\r\nYWxpY2U=\r\n"


def test_authobject_returning_none_sends_an_empty_response() -> None:
    """An authobject answering None sends the empty response line (RFC 5034 §4)."""
    seen: list[bytes] = []

    def authobject(challenge: bytes) -> None:
        seen.append(challenge)

    with connected({b"AUTH": b"+ \r\n", b"": b"+OK welcome\r\n"}) as (pop, server):
        assert pop.auth("X-EMPTY", authobject) == b"+OK welcome"
    assert seen == [b""]
    assert server.received == b"AUTH X-EMPTY\r\n\r\n"


# ---------------------------------------------------------------------------
# Receiving
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("mod", [std_poplib, our_poplib])
def test_connection_closed_instead_of_a_reply_is_eof(mod: ModuleType) -> None:
    """A server that closes instead of answering gives error_proto('-ERR EOF'), as in poplib."""
    with serve(handler=table({b"USER": None})) as server:
        pop = mod.POP3(HOST, server.port, timeout=10)
        with pytest.raises(mod.error_proto) as info:
            pop.user("alice")
        pop.close()
    assert info.value.args == ("-ERR EOF",)


def test_status_line_cut_by_eof_is_eof() -> None:
    """A status line without its line end, then EOF, is -ERR EOF (not a reply)."""

    def handler(sock: socket.socket, server: ThreadedServer) -> None:
        sock.sendall(GREETING)
        with sock.makefile("rb") as reader:
            reader.readline()
        sock.sendall(b"+OK half")  # and close

    with serve(handler=handler) as server:
        pop = our_poplib.POP3(HOST, server.port, timeout=10)
        with pytest.raises(our_poplib.error_proto, match="EOF"):
            pop.user("alice")
        pop.close()


def test_body_cut_by_eof_is_eof(capsys: pytest.CaptureFixture[str]) -> None:
    """RFC 1939 §3: a body the server never ends is -ERR EOF; debug level 2 shows the reads."""

    def replies(line: bytes) -> bytes | None:
        if line == b"RETR 1":
            return None
        return b"+OK\r\n"

    def handler(sock: socket.socket, server: ThreadedServer) -> None:
        scripted(replies)(sock, server)
        sock.sendall(b"+OK 5000 octets\r\n" + b"x" * 100 + b"\r\n")

    with serve(handler=handler) as server:
        pop = our_poplib.POP3(HOST, server.port, timeout=10)
        pop.user("alice")
        pop.pass_(PASSWORD)
        pop.set_debuglevel(2)
        with pytest.raises(our_poplib.error_proto, match="EOF"):
            pop.retr(1)
        pop.close()
    out = capsys.readouterr().out
    assert "*get* b'xxxxxxxx" in out and "..." in out


def test_longcmd_on_a_single_line_reply_returns_no_lines() -> None:
    """_longcmd on a command with a one-line reply returns no lines (poplib would hang)."""
    with connected({}) as (pop, _):
        assert pop._longcmd("USER alice") == (b"+OK", [], 0)
        assert pop.pass_(PASSWORD) == b"+OK"


@pytest.mark.parametrize("mod", [std_poplib, our_poplib])
def test_longcmd_frames_an_unknown_command_as_multi_line(mod: ModuleType) -> None:
    """An extension sent with _longcmd has its multi-line reply read whole, as in poplib."""
    listing = b"+OK two\r\nfirst\r\n..second\r\n.\r\n"
    with serve(handler=table({b"XTND": listing})) as server:
        pop = mod.POP3(HOST, server.port, timeout=10)
        reply = pop._longcmd("XTND XLIST")
        assert pop.user("alice") == b"+OK"
        pop.close()
    assert reply == (b"+OK two", [b"first", b".second"], 16)


def test_body_with_bare_lf_lines_splits_like_poplib() -> None:
    """Lines ended by a lone LF (which poplib accepts) come back without their line ends."""
    body = b"+OK\nSubject: lf\n\nline one\nline two\n.\n"
    with serve(handler=table({b"RETR": body})) as server:
        results = []
        for mod in (std_poplib, our_poplib):
            pop = mod.POP3(HOST, server.port, timeout=10)
            pop.user("alice")
            pop.pass_(PASSWORD)
            results.append(pop.retr(1))
            pop.close()
    assert results[1] == results[0]
    assert results[1][1] == [b"Subject: lf", b"", b"line one", b"line two"]


def test_stat_from_a_mocked_shortcmd_with_a_bad_reply_is_error_proto() -> None:
    """stat() checks what it parses: a subclass's odd _shortcmd is error_proto, not IndexError."""

    class Mocked(our_poplib.POP3):
        def _shortcmd(self, line: str) -> bytes:
            return b"+OK"

    with serve(handler=table({})) as server:
        pop = Mocked(HOST, server.port, timeout=10)
        with pytest.raises(our_poplib.error_proto, match="malformed STAT"):
            pop.stat()
        pop.close()


# ---------------------------------------------------------------------------
# Closing
# ---------------------------------------------------------------------------


def _reset_on_user(sock: socket.socket, server: ThreadedServer) -> None:
    sock.sendall(GREETING)
    with sock.makefile("rb") as reader:
        reader.readline()
    # SO_LINGER with a zero timeout: close() sends a reset, not a FIN.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


@pytest.mark.parametrize("mod", [std_poplib, our_poplib])
def test_close_after_a_reset_is_quiet(mod: ModuleType) -> None:
    """close() after the server reset the connection ignores ENOTCONN, as poplib does."""
    with serve(handler=_reset_on_user) as server:
        pop = mod.POP3(HOST, server.port, timeout=10)
        with pytest.raises(ConnectionResetError):
            pop.user("alice")
        pop.close()
    assert pop.sock is None and pop.file is None


@pytest.mark.parametrize("mod", [std_poplib, our_poplib])
def test_close_reports_other_socket_errors(mod: ModuleType) -> None:
    """close() on a socket already closed under it raises that error, as poplib does."""
    with serve(handler=table({})) as server:
        pop = mod.POP3(HOST, server.port, timeout=10)
        pop.sock.close()
        with pytest.raises(OSError) as info:
            pop.close()
    assert pop.sock is None
    assert not isinstance(info.value, mod.error_proto)


# ---------------------------------------------------------------------------
# TLS
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("mod", [std_poplib, our_poplib])
def test_stls_not_offered_matches_poplib(mod: ModuleType) -> None:
    """stls() without STLS in CAPA raises the same error_proto as poplib, nothing sent."""
    with serve(FakeConfig(stls=False)) as server:
        pop = mod.POP3(HOST, server.port, timeout=10)
        with pytest.raises(mod.error_proto) as info:
            pop.stls()
        pop.quit()
    assert info.value.args == ("-ERR STLS not supported by server",)
    assert b"STLS" not in server.received


def test_stls_without_a_context_does_not_verify_like_poplib(
    server_context: ssl.SSLContext,
) -> None:
    """stls() with no context accepts a certificate nobody trusts, as poplib's default does."""
    with serve(FakeConfig(stls=True), tls_context=server_context) as server:
        pop = our_poplib.POP3(HOST, server.port, timeout=10)
        assert pop.stls().startswith(b"+OK")
        pop.user("alice")
        pop.pass_(PASSWORD)
        assert pop.stat()[0] == len(FAKE_MESSAGES)
        pop.quit()
    assert server.session.tls_requested is False and server.session.conn.tls


def test_pop3_ssl_without_a_context_does_not_verify_like_poplib(
    server_context: ssl.SSLContext,
) -> None:
    """POP3_SSL with no context accepts a certificate nobody trusts, as poplib's default does."""
    with serve(FakeConfig(implicit_tls=True), tls_context=server_context) as server:
        pop = our_poplib.POP3_SSL(HOST, server.port, timeout=10)
        assert isinstance(pop.sock, ssl.SSLSocket)
        assert pop.context.verify_mode == ssl.CERT_NONE
        pop.user("alice")
        pop.pass_(PASSWORD)
        assert pop.stat()[0] == len(FAKE_MESSAGES)
        pop.quit()

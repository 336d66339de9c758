"""The poplib drop-in's error and odd paths, against raw scripted servers.

Where the standard library behaves the same, the test runs both and
compares; where ours deliberately differs (it refuses what would inject a command
or leak a secret), it pins our behaviour down.
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


@pytest.mark.parametrize("mod", [std_poplib, our_poplib])
def test_putline_sends_raw_bytes_as_poplib(mod: ModuleType) -> None:
    """_putline sends the bytes it is given (not valid UTF-8 here), as poplib does."""
    with serve(handler=table({})) as server:
        pop = mod.POP3(HOST, server.port, timeout=10)
        pop._putline(b"USER \xff\xfe")
        assert pop._getresp() == b"+OK"
        pop.close()
    assert server.received == b"USER \xff\xfe\r\n"


@pytest.mark.parametrize("mod", [std_poplib, our_poplib])
def test_commands_must_be_str_as_poplib(mod: ModuleType) -> None:
    """A command given as bytes is poplib's TypeError; nothing is sent."""
    with serve(handler=table({})) as server:
        pop = mod.POP3(HOST, server.port, timeout=10)
        with pytest.raises(TypeError):
            pop._shortcmd(b"NOOP")
        pop.close()
    assert server.received == b""


@pytest.mark.parametrize("mod", [std_poplib, our_poplib])
def test_failed_send_raises_the_socket_error_as_poplib(mod: ModuleType) -> None:
    with serve(handler=table({})) as server:
        pop = mod.POP3(HOST, server.port, timeout=10)
        pop.sock.shutdown(socket.SHUT_WR)
        with pytest.raises(BrokenPipeError):
            pop.user("alice")
        pop.close()


@pytest.mark.parametrize("mod", [std_poplib, our_poplib])
def test_status_line_cut_by_eof_as_poplib(mod: ModuleType) -> None:
    """A status line without its line end, then EOF: poplib drops its last
    octet and returns it; so do we."""

    def handler(sock: socket.socket, server: ThreadedServer) -> None:
        sock.sendall(GREETING)
        with sock.makefile("rb") as reader:
            reader.readline()
        sock.sendall(b"+OK half")  # and close

    with serve(handler=handler) as server:
        pop = mod.POP3(HOST, server.port, timeout=10)
        assert pop.user("alice") == b"+OK hal"
        pop.close()


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
    assert "*get* b'xxxxxxxx" in out


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

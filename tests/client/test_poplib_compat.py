"""pop3proto.adapters.sync as a drop-in for the standard library's poplib.

Most tests run the same script twice against the same fake server, once with
the real ``poplib`` and once with ``pop3proto.adapters.sync``, and require
identical results (return values, and for exceptions their type name and
arguments).  The documented deviations and the known ``poplib`` bugs are
tested on their own, mostly against a raw scripted server.
"""

from __future__ import annotations

import contextlib
import gc
import io
import poplib as std_poplib
import socket
import ssl
import sys
import warnings
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pytest

import pop3proto
from pop3proto.adapters import sync as our_poplib
from tests.helpers import (
    FAKE_MESSAGES,
    PASSWORD,
    FakeConfig,
    ThreadedServer,
    serve,
)

IMPLEMENTATIONS = [std_poplib, our_poplib]
Result = tuple[Any, ...]


class Recorder:
    """Calls methods, recording results or (exception type name, args)."""

    def __init__(self) -> None:
        self.results: list[Result] = []

    def __call__(self, func: Callable[..., Any], *args: Any) -> Any:
        try:
            value = func(*args)
        except Exception as exc:
            self.results.append(("raised", type(exc).__name__, exc.args))
            return None
        self.results.append(("returned", value))
        return value


def run_both(
    script: Callable[[ModuleType, int, Recorder], None],
    config: FakeConfig | None = None,
    **server_kwargs: Any,
) -> tuple[list[Result], list[Result], ThreadedServer]:
    """Run *script* with the stdlib, then with ours, each on a fresh session."""
    with serve(config, **server_kwargs) as server:
        theirs, ours = Recorder(), Recorder()
        script(std_poplib, server.port, theirs)
        script(our_poplib, server.port, ours)
    return theirs.results, ours.results, server


def full_session(mod: ModuleType, port: int, call: Recorder) -> None:
    pop = mod.POP3("127.0.0.1", port, timeout=10)
    try:
        call(pop.getwelcome)
        call(pop.capa)
        call(pop.user, "alice")
        call(pop.pass_, "wrong")
        call(pop.user, "alice")
        call(pop.pass_, PASSWORD)
        call(pop.stat)
        call(pop.list)
        call(pop.list, 2)
        call(pop.list, "3")
        call(pop.uidl)
        call(pop.uidl, 1)
        for number in range(1, len(FAKE_MESSAGES) + 1):
            call(pop.retr, number)
        call(pop.retr, 99)
        call(pop.top, 1, 0)
        call(pop.top, 2, 1)
        call(pop.top, 5, 100)
        call(pop.dele, 1)
        call(pop.dele, 1)
        call(pop.stat)
        call(pop.rset)
        call(pop.noop)
        call(pop._shortcmd, "NOOP")
        call(pop._longcmd, "LIST")
        call(pop.dele, 4)
        call(pop.quit)
    finally:
        pop.close()


def test_full_session_matches_the_standard_library() -> None:
    theirs, ours, server = run_both(full_session)
    assert ours == theirs
    assert [s.committed for s in server.sessions] == [[4], [4]]
    # Sanity: the script really exercised replies and errors.
    assert ("raised", "error_proto", (b"-ERR no such message",)) in ours
    assert any(r[0] == "returned" and isinstance(r[1], tuple) for r in ours)


def auth_script(mod: ModuleType, port: int, call: Recorder) -> None:
    pop = mod.POP3("127.0.0.1", port, timeout=10)
    try:
        call(pop.utf8)
        call(pop.rpop, "alice")
        call(pop.apop, "alice", "wrong")
        call(pop.apop, "alice", PASSWORD)
        call(pop.stat)
        call(pop.quit)
    finally:
        pop.close()


def test_apop_utf8_rpop_match() -> None:
    theirs, ours, _ = run_both(auth_script, FakeConfig(utf8=True))
    assert ours == theirs
    assert ("returned", (len(FAKE_MESSAGES), sum(map(len, FAKE_MESSAGES)))) in ours


def test_apop_without_timestamp_matches() -> None:
    def script(mod: ModuleType, port: int, call: Recorder) -> None:
        pop = mod.POP3("127.0.0.1", port, timeout=10)
        call(pop.apop, "alice", PASSWORD)
        call(pop.quit)

    theirs, ours, _ = run_both(script, FakeConfig(greeting="no timestamp here"))
    assert (
        ours
        == theirs
        == [
            ("raised", "error_proto", ("-ERR APOP not supported by server",)),
            ("returned", b"+OK bye"),
        ]
    )


def test_capa_not_supported_matches() -> None:
    def script(mod: ModuleType, port: int, call: Recorder) -> None:
        pop = mod.POP3("127.0.0.1", port, timeout=10)
        call(pop.capa)
        call(pop.stls)
        call(pop.quit)

    theirs, ours, _ = run_both(script, FakeConfig(capa=False))
    assert ours == theirs
    assert ours[0] == ("raised", "error_proto", ("-ERR CAPA not supported by server",))


def test_manual_sasl_through_private_helpers_matches() -> None:
    # Real code does XOAUTH2 this way; PLAIN shows the same flow.
    answer = pop3proto.sasl_b64encode(b"\0alice\0" + PASSWORD.encode()).decode()

    def script(mod: ModuleType, port: int, call: Recorder) -> None:
        pop = mod.POP3("127.0.0.1", port, timeout=10)
        call(pop._shortcmd, "AUTH PLAIN")
        call(pop._shortcmd, answer)
        call(pop.stat)
        call(pop.quit)

    theirs, ours, server = run_both(script, FakeConfig(sasl=("PLAIN",)))
    assert ours == theirs
    assert ours[0] == ("returned", b"+ ")
    assert [s.authenticated for s in server.sessions] == ["alice", "alice"]


def test_stls_and_pop3_ssl_match(
    server_context: ssl.SSLContext,
    client_context: ssl.SSLContext,
) -> None:
    def script(mod: ModuleType, port: int, call: Recorder) -> None:
        pop = mod.POP3("127.0.0.1", port, timeout=10)
        call(pop.stls, client_context)
        call(pop.stls, client_context)
        call(lambda: isinstance(pop.sock, ssl.SSLSocket))
        call(pop.capa)
        call(pop.user, "alice")
        call(pop.pass_, PASSWORD)
        call(pop.retr, 2)
        call(pop.quit)

    theirs, ours, _ = run_both(script, FakeConfig(stls=True), tls_context=server_context)
    assert ours == theirs
    assert ours[0] == ("returned", b"+OK Begin TLS")
    assert ours[2] == ("returned", True)

    def ssl_script(mod: ModuleType, port: int, call: Recorder) -> None:
        pop = mod.POP3_SSL("localhost", port, timeout=10, context=client_context)
        call(pop.getwelcome)
        call(pop.stls)
        call(pop.user, "alice")
        call(pop.pass_, PASSWORD)
        call(pop.stat)
        call(pop.quit)

    config = FakeConfig(implicit_tls=True)
    theirs, ours, _ = run_both(ssl_script, config, tls_context=server_context)
    assert ours == theirs
    assert ours[1] == ("raised", "error_proto", ("-ERR TLS session already established",))


# ---------------------------------------------------------------------------
# Module surface
# ---------------------------------------------------------------------------


def test_module_surface_matches() -> None:
    assert our_poplib.__all__ == std_poplib.__all__
    for name in ("POP3_PORT", "POP3_SSL_PORT", "CR", "LF", "CRLF", "_MAXLINE"):
        assert getattr(our_poplib, name) == getattr(std_poplib, name), name
    assert issubclass(our_poplib.error_proto, Exception)
    assert our_poplib.error_proto.__mro__[1] is Exception
    for name in dir(std_poplib.POP3):
        if not name.startswith("__") and name != "auth":
            assert hasattr(our_poplib.POP3, name), name
    namespace: dict[str, Any] = {}
    exec("from pop3proto.adapters.sync import *", namespace)
    assert sorted(k for k in namespace if k != "__builtins__") == sorted(std_poplib.__all__)


def test_constructor_arguments_match() -> None:
    for mod in IMPLEMENTATIONS:
        with pytest.raises(ValueError, match="Non-blocking"):
            mod.POP3("127.0.0.1", 1, timeout=0)
    with serve() as server:
        pop = our_poplib.POP3("127.0.0.1", server.port)
        try:
            assert pop.sock.gettimeout() is None  # the global default
            assert pop.host == "127.0.0.1" and pop.port == server.port
            assert pop.welcome == pop.getwelcome() == b"+OK " + server.config.greeting.encode()
            assert pop.file.readable()
        finally:
            pop.quit()
    # POP3_SSL's signature is the running Python's: keyfile/certfile
    # (deprecated, positional) until 3.11, gone from 3.12.
    for mod in IMPLEMENTATIONS:
        if sys.version_info < (3, 12):
            with pytest.raises(ValueError, match="mutually exclusive"):
                mod.POP3_SSL("localhost", 995, "key.pem", None, 10, ssl.create_default_context())
        else:
            with pytest.raises(TypeError):
                mod.POP3_SSL("localhost", 995, None, None)


# ---------------------------------------------------------------------------
# Debug output
# ---------------------------------------------------------------------------


def debug_script(mod: ModuleType, port: int, call: Recorder) -> None:
    pop = mod.POP3("127.0.0.1", port, timeout=10)
    pop.set_debuglevel(2)
    call(pop.user, "alice")
    call(pop.pass_, PASSWORD)
    call(pop.stat)
    call(pop.list)
    call(pop.quit)


def capture(script: Callable[[ModuleType, int, Recorder], None], mod: ModuleType, port: int) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        script(mod, port, Recorder())
    return out.getvalue()


def test_debug_output_matches_but_masks_the_password() -> None:
    with serve() as server:
        theirs = capture(debug_script, std_poplib, server.port)
        ours = capture(debug_script, our_poplib, server.port)
    assert PASSWORD in theirs
    assert PASSWORD not in ours
    assert "*stat*" in ours and "*get*" in ours and "*put*" in ours and "*resp*" in ours
    assert ours == theirs.replace(PASSWORD, "********")


def test_debug_output_masks_apop_and_sasl_data() -> None:
    ir = pop3proto.sasl_b64encode(b"\0alice\0" + PASSWORD.encode()).decode()
    digest = pop3proto.apop_digest("<1896.697170952@dbc.mtview.ca.us>", PASSWORD)
    with serve(FakeConfig(sasl=("PLAIN",))) as server:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            pop = our_poplib.POP3("127.0.0.1", server.port, timeout=10)
            pop.set_debuglevel(2)
            pop.apop("alice", PASSWORD)
            pop.quit()
            pop = our_poplib.POP3("127.0.0.1", server.port, timeout=10)
            pop.set_debuglevel(1)
            pop._shortcmd(f"AUTH PLAIN {ir}")
            pop.quit()
            pop = our_poplib.POP3("127.0.0.1", server.port, timeout=10)
            pop.set_debuglevel(2)
            pop._shortcmd("AUTH PLAIN")
            pop._shortcmd(ir)
            pop.quit()
    text = out.getvalue()
    assert digest not in text
    assert ir not in text
    assert PASSWORD not in text
    assert "*cmd* 'APOP alice ********'" in text
    assert "*cmd* 'AUTH PLAIN ********'" in text
    assert "*put* b'********'" in text
    assert [s.authenticated for s in server.sessions] == ["alice"] * 3


# ---------------------------------------------------------------------------
# _MAXLINE, read at call time
# ---------------------------------------------------------------------------


@contextlib.contextmanager
def maxline(mod: ModuleType, value: int) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(mod, "_MAXLINE", value)
        yield


def test_maxline_monkeypatch_is_honoured() -> None:
    long_line = b"Subject: long\r\n\r\n" + b"y" * 3000 + b"\r\n"
    config = FakeConfig(messages=[long_line, b"short\r\n"])

    def script(mod: ModuleType, port: int, call: Recorder) -> None:
        pop = mod.POP3("127.0.0.1", port, timeout=10)
        call(pop.user, "alice")
        call(pop.pass_, PASSWORD)
        with maxline(mod, 10):
            call(pop.stat)  # "+OK 2 3026" is 12 octets with CRLF
        pop.close()
        pop = mod.POP3("127.0.0.1", port, timeout=10)
        call(pop.user, "alice")
        call(pop.pass_, PASSWORD)
        call(pop.retr, 1)  # 3002 > 2048
        pop.close()
        pop = mod.POP3("127.0.0.1", port, timeout=10)
        call(pop.user, "alice")
        call(pop.pass_, PASSWORD)
        with maxline(mod, 100_000):
            call(pop.retr, 1)
        call(pop.quit)

    theirs, ours, _ = run_both(script, config)
    assert ours == theirs
    assert ours.count(("raised", "error_proto", ("line too long",))) == 2
    assert ours[-2][0] == "returned" and ours[-2][1][1][-1] == b"y" * 3000


# ---------------------------------------------------------------------------
# Odd replies: what poplib gives, the session goes on
# ---------------------------------------------------------------------------


def scripted(
    replies: Callable[[bytes], bytes | None], greeting: bytes = b"+OK ready <1.2@host>\r\n"
) -> Callable[[socket.socket, ThreadedServer], None]:
    """A raw server: send *greeting*, then answer each command line with
    ``replies(line)``; ``None`` closes the connection."""

    def handler(sock: socket.socket, server: ThreadedServer) -> None:
        sock.sendall(greeting)
        reader = sock.makefile("rb")
        try:
            while True:
                line = reader.readline()
                if not line:
                    return
                server.received += line
                reply = replies(line.rstrip(b"\r\n"))
                if reply is None:
                    return
                sock.sendall(reply)
        finally:
            reader.close()

    return handler


def test_crlf_injection_is_refused_before_sending() -> None:
    with serve(handler=scripted(lambda line: b"+OK\r\n")) as server:
        pop = our_poplib.POP3("127.0.0.1", server.port, timeout=10)
        for bad in ("a\r\nDELE 1", "a\nDELE 1", "a\rb", "a\0b"):
            with pytest.raises(our_poplib.error_proto, match="not sent"):
                pop.user(bad)
            with pytest.raises(our_poplib.error_proto, match="not sent"):
                pop.pass_(bad)
        with pytest.raises(our_poplib.error_proto):
            pop.retr("1\r\nDELE 1")
        with pytest.raises(our_poplib.error_proto):
            pop._putline(b"NOOP\r\nDELE 1")
        assert pop.user("alice") == b"+OK"
        pop.close()
    assert server.received == b"USER alice\r\n"


def test_error_messages_never_contain_the_password() -> None:
    with serve(handler=scripted(lambda line: b"+OK\r\n")) as server:
        pop = our_poplib.POP3("127.0.0.1", server.port, timeout=10)
        with pytest.raises(our_poplib.error_proto) as info:
            pop.pass_("secret\r\nDELE 1")
        assert "secret" not in str(info.value)
        pop.close()


def raw_both(
    replies: Callable[[bytes], bytes | None],
    script: Callable[[ModuleType, int, Recorder], None],
    greeting: bytes = b"+OK ready <1.2@host>\r\n",
) -> tuple[list[Result], list[Result], list[bytes]]:
    """Run *script* with the stdlib, then with ours, against a scripted raw
    server; return both results and what the server received each time."""
    results: list[list[Result]] = []
    received: list[bytes] = []
    with serve(handler=scripted(replies, greeting)) as server:
        for mod in IMPLEMENTATIONS:
            server.received = bytearray()
            call = Recorder()
            script(mod, server.port, call)
            results.append(call.results)
            received.append(bytes(server.received))
    return results[0], results[1], received


def logged_in_script(*calls: tuple[str, tuple[Any, ...]]) -> Callable[..., None]:
    def script(mod: ModuleType, port: int, call: Recorder) -> None:
        pop = mod.POP3("127.0.0.1", port, timeout=10)
        try:
            for name, args in calls:
                call(getattr(pop, name), *args)
        finally:
            pop.close()

    return script


def test_continuation_line_is_success_as_in_poplib() -> None:
    # poplib's rule: a reply starting with "+" is success (test_poplib
    # greets with "+ Hola mundo").
    theirs, ours, _ = raw_both(
        lambda line: b"+ go ahead\r\n",
        logged_in_script(("user", ("alice",)), ("getwelcome", ())),
        greeting=b"+ Hola mundo\r\n",
    )
    assert ours == theirs == [("returned", b"+ go ahead"), ("returned", b"+ Hola mundo")]


def test_odd_replies_give_what_poplib_gives() -> None:
    # "+OK" alone answers everything: STAT, UIDL n and LIST n without
    # their fields, CAPA with odd lines.  Whatever poplib returns or
    # raises, the drop-in returns or raises, and the session goes on.
    capa = b"+OK\r\nTOP\r\nIMPLEMENTATION x  2.0 extra\r\nUSER\r\n.\r\n"

    def replies(line: bytes) -> bytes:
        return capa if line == b"CAPA" else b"+OK\r\n"

    theirs, ours, received = raw_both(
        replies,
        logged_in_script(
            ("stat", ()),
            ("uidl", (1,)),
            ("list", (1,)),
            ("capa", ()),
            ("noop", ()),
        ),
    )
    assert ours == theirs
    assert ours[1:] == [
        ("returned", b"+OK"),
        ("returned", b"+OK"),
        ("returned", {"TOP": [], "IMPLEMENTATION": ["x", "2.0", "extra"], "USER": []}),
        ("returned", b"+OK"),
    ]
    assert received[0] == received[1]


def test_odd_capa_lines_raise_as_in_poplib() -> None:
    capa = b"+OK\r\nTOP\r\n\r\nIMPLEMENTATION caf\xc3\xa9  2.0\r\nUSER\r\n.\r\n"
    theirs, ours, _ = raw_both(lambda line: capa, logged_in_script(("capa", ())))
    assert ours == theirs
    assert ours[0][0] == "raised"


@pytest.mark.parametrize(
    "tail",
    [
        b"+OK\r\nhello\r\n",
        b"+OK\r\nhello\r\n.\r",
        b"+OK\r\nhi.",
        b"+OK\r\nhello\r\n.",
        b"+OK\r\n" + b"x" * 5000,
        b"+OK\r\nhello\r\n\r.\nafter",
        b"+OK\nhello\n..x\n.\n",
    ],
)
def test_eof_and_odd_endings_in_a_body_as_in_poplib(tail: bytes) -> None:
    results = []
    for mod in IMPLEMENTATIONS:

        def handler(sock: socket.socket, server: ThreadedServer) -> None:
            sock.sendall(b"+OK ready\r\n")
            sock.recv(100)  # RETR 1
            sock.sendall(tail)
            sock.shutdown(socket.SHUT_WR)

        with serve(handler=handler) as server:
            call = Recorder()
            logged_in_script(("retr", (1,)))(mod, server.port, call)
            results.append(call.results)
    assert results[1] == results[0]


def test_retr_unstuffs_as_poplib() -> None:
    # A server that forgot to stuff ".x": poplib keeps the dot, and so do we.
    body = b"+OK\r\n..stuffed\r\n.x\r\nplain\r\n.\r\n"
    theirs, ours, _ = raw_both(
        lambda line: body if line == b"RETR 1" else b"+OK\r\n", logged_in_script(("retr", (1,)))
    )
    assert ours == theirs == [("returned", (b"+OK", [b".stuffed", b".x", b"plain"], 21))]


def test_retr_shortcut_and_general_path_agree_and_hooks_still_see_retr() -> None:
    # retr(int) takes a shortcut past the command-string parser; a str
    # number, debugging, or a subclass overriding the plumbing (as poplib
    # code does to log what is sent) must take the general path, and every
    # path must give the same reply.
    body = b"+OK 21 octets\r\n..stuffed\r\nplain\r\n.\r\n"
    sent: list[bytes] = []

    class Logging(our_poplib.POP3):
        def _putline(self, line: bytes) -> None:
            sent.append(line)
            super()._putline(line)

    with serve(
        handler=scripted(lambda line: body if line.startswith(b"RETR") else b"+OK\r\n")
    ) as s:
        results = []
        for cls, which in ((our_poplib.POP3, 1), (our_poplib.POP3, "1"), (Logging, 2)):
            pop = cls("127.0.0.1", s.port, timeout=10)
            pop.user("a")
            pop.pass_("b")
            results.append(pop.retr(which))
            assert pop.noop() == b"+OK"  # in step with the server afterwards
            pop.close()
        received = s.received
    assert results[0] == results[1] == results[2] == (b"+OK 21 octets", [b".stuffed", b"plain"], 17)
    assert sent == [b"USER a", b"PASS b", b"RETR 2", b"NOOP"]
    assert received.count(b"RETR 1\r\n") == 2 and received.count(b"RETR 2\r\n") == 1


def test_bare_lf_lines_are_accepted_like_poplib() -> None:
    body = b"+OK\nline one\nline two\r\n.\n"

    def replies(line: bytes) -> bytes:
        return body if line == b"RETR 1" else b"+OK\n"

    with serve(handler=scripted(replies, greeting=b"+OK hi\n")) as s:
        results = []
        for mod in IMPLEMENTATIONS:
            pop = mod.POP3("127.0.0.1", s.port, timeout=10)
            pop.user("a")
            pop.pass_("b")
            results.append(pop.retr(1))
            pop.close()
    assert results[0] == results[1] == (b"+OK", [b"line one", b"line two"], 19)


def test_whatever_the_caller_asks_is_sent_and_the_server_decides() -> None:
    def replies(line: bytes) -> bytes:
        return b"-ERR no\r\n" if line.startswith((b"STAT", b"RETR")) else b"+OK\r\n"

    theirs, ours, received = raw_both(
        replies,
        logged_in_script(
            ("stat", ()),
            ("retr", ("one",)),
            ("dele", ("foo",)),
            ("user", ("two words",)),
            ("pass_", ("pass word with spaces",)),
        ),
    )
    assert ours == theirs
    assert ours[:2] == [("raised", "error_proto", (b"-ERR no",))] * 2
    assert (
        received[0]
        == received[1]
        == (b"STAT\r\nRETR one\r\nDELE foo\r\nUSER two words\r\nPASS pass word with spaces\r\n")
    )


def test_stls_response_injection_is_refused(
    client_context: ssl.SSLContext,
) -> None:
    def replies(line: bytes) -> bytes:
        if line == b"CAPA":
            return b"+OK\r\nSTLS\r\n.\r\n"
        return b"+OK begin TLS\r\n+OK forged\r\n"

    with serve(handler=scripted(replies)) as server:
        pop = our_poplib.POP3("127.0.0.1", server.port, timeout=10)
        with pytest.raises(our_poplib.error_proto, match="injection"):
            pop.stls(client_context)
        pop.close()


def test_unsolicited_err_then_close() -> None:
    with serve(handler=scripted(lambda line: b"-ERR Disconnected for inactivity.\r\n")) as s:
        for mod in IMPLEMENTATIONS:
            pop = mod.POP3("127.0.0.1", s.port, timeout=10)
            with pytest.raises(mod.error_proto) as info:
                pop.user("alice")
            assert info.value.args == (b"-ERR Disconnected for inactivity.",)
            pop.close()


def greeting_error(mod: ModuleType, port: int) -> tuple[Any, ...]:
    try:
        mod.POP3("127.0.0.1", port, timeout=10)
    except mod.error_proto as exc:
        return exc.args
    raise AssertionError("no error")


def test_negative_greeting_is_error_proto() -> None:
    with serve(handler=scripted(lambda line: None, greeting=b"-ERR [SYS/TEMP] busy\r\n")) as s:
        with warnings.catch_warnings():
            # poplib leaks the socket when the greeting is negative.
            warnings.simplefilter("ignore", ResourceWarning)
            theirs = greeting_error(std_poplib, s.port)
            gc.collect()
        with warnings.catch_warnings():
            warnings.simplefilter("error", ResourceWarning)
            ours = greeting_error(our_poplib, s.port)
            gc.collect()
    assert ours == theirs == (b"-ERR [SYS/TEMP] busy",)


def test_unread_listing_as_poplib() -> None:
    def script(mod: ModuleType, port: int, call: Recorder) -> None:
        pop = mod.POP3("127.0.0.1", port, timeout=10)
        call(pop.user, "alice")
        call(pop.pass_, PASSWORD)
        call(pop._shortcmd, "LIST")  # the listing is left unread
        call(pop.noop)
        pop.close()

    theirs, ours, _ = run_both(script)
    # poplib reads the first listing line as NOOP's reply; so do we.
    assert ours == theirs
    assert ours[3] == ("raised", "error_proto", (b"1 23",))


def test_auth_addition() -> None:
    config = FakeConfig(sasl=("PLAIN", "LOGIN", "CRAM-MD5"))
    with serve(config) as server:
        pop = our_poplib.POP3("127.0.0.1", server.port, timeout=10)
        assert pop.auth("PLAIN", initial_response=f"\0alice\0{PASSWORD}") == b"+OK Logged in."
        pop.quit()
        answers: Iterator[str | bytes] = iter(["alice", PASSWORD.encode()])
        pop = our_poplib.POP3("127.0.0.1", server.port, timeout=10)
        assert pop.auth("LOGIN", lambda challenge: next(answers)) == b"+OK Logged in."
        pop.quit()
        pop = our_poplib.POP3("127.0.0.1", server.port, timeout=10)
        with pytest.raises(our_poplib.error_proto) as info:
            pop.auth("CRAM-MD5", lambda challenge: "*")
        assert info.value.args == (b"-ERR cancelled",)
        with pytest.raises(ValueError):
            pop.auth("PLAIN", lambda c: b"", b"x")
        pop.close()
    assert [s.authenticated for s in server.sessions] == ["alice", "alice", None]


def test_importing_the_drop_in_is_cheap() -> None:
    """The drop-in loads neither the engine, the modern clients, the server
    nor ssl until used (PEP 562), so it costs what poplib costs to import."""
    import json
    import subprocess

    code = (
        "import sys, json, pop3proto.adapters.sync as p; p.POP3; p.error_proto;"
        " print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    loaded = set(json.loads(out))
    assert "pop3proto.adapters.client._poplib" in loaded
    heavy = {"ssl", "pop3proto._events", "pop3proto._connection", "pop3proto.adapters.server"}
    assert loaded & heavy == set()
    assert "pop3proto.adapters.client._sync" not in loaded

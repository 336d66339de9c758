"""A fake POP3 server for the client tests, and a runner without I/O.

:class:`FakeSession` is a POP3 server on ``Connection(SERVER)`` over an
in-memory maildrop, configured by :class:`FakeConfig` to misbehave as the
client tests need; :class:`ThreadedServer` serves it on 127.0.0.1.
:class:`OperationRunner` drives a client core's operations with requests
answered in memory.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import pop3proto
from pop3proto import State
from pop3proto.adapters.client._mechanisms import LOGIN_PREFERENCE

from .engine import GREETING_TEXT, PASSWORD


class OperationRunner:
    """Runs an I/O-free operation (a generator of seam requests) to its end,
    as an adapter's runner does, answering each request with
    :meth:`perform`; an exception from ``perform`` is thrown into the
    operation, as a real runner's I/O errors are."""

    def perform(self, request: Any, sink: Callable[[bytes], object] | None) -> bytes | None:
        raise NotImplementedError

    def run(self, op: Any, sink: Callable[[bytes], object] | None = None) -> Any:
        try:
            request = op.send(None)
            while True:
                try:
                    answer = self.perform(request, sink)
                except Exception as exc:
                    request = op.throw(exc)
                    continue
                request = op.send(answer)
        except StopIteration as done:
            return done.value

    def collect(self, op: Any) -> tuple[Any, bytes]:
        """Run a streaming operation; return (result, delivered octets)."""
        buffer = bytearray()
        result = self.run(op, buffer.extend)
        return result, bytes(buffer)


#: The fake server's default maildrop: every dot-stuffing hazard (dot lines
#: first, last and alone), an empty message, no final CRLF (the server appends
#: one), 8-bit octets, bare CR and LF.
FAKE_MESSAGES = [
    b"Subject: one\r\n\r\nhello\r\n",
    b".starts with a dot\r\n..two dots\r\n.\r\n...\r\nend\r\n",
    b"Subject: three\r\n\r\nno final line end",
    b"",
    b"Subject: five\r\n\r\n\xff\xfe 8-bit \r\nbare\rcr and bare\nlf\r\n.",
]


@dataclass
class FakeConfig:
    """What the fake server offers and how it misbehaves."""

    messages: list[bytes] = field(default_factory=lambda: list(FAKE_MESSAGES))
    users: dict[str, str] = field(default_factory=lambda: {"alice": PASSWORD})
    greeting: str = GREETING_TEXT
    capa: bool = True
    pipelining: bool = True
    stls: bool = False
    user_command: bool = True
    utf8: bool = False
    sasl: tuple[str, ...] = LOGIN_PREFERENCE
    auth_error: str = "[AUTH] Authentication failed"
    #: Sent instead of +OK for correct credentials (e.g. "[IN-USE] locked").
    login_error: str | None = None
    close_after_auth_failure: bool = False
    #: Replace the SCRAM server signature / skip it and answer +OK at once.
    scram_tamper: bool = False
    scram_skip_final: bool = False
    #: Close without answering QUIT from TRANSACTION.
    quit_no_reply: bool = False
    quit_error: bool = False
    #: Raw bytes sent right after the +OK to STLS (a response injection).
    after_stls: bytes = b""
    implicit_tls: bool = False
    chunk: int = 65536


class FakeSession:
    """One server-side POP3 session over an in-memory maildrop."""

    def __init__(self, config: FakeConfig | None = None) -> None:
        self.config = config = config or FakeConfig()
        self.conn = pop3proto.Connection(pop3proto.SERVER, tls=config.implicit_tls)
        self.commands: list[pop3proto.Event] = []
        self.deleted: set[int] = set()
        self.committed: list[int] | None = None
        self.closing = False
        self.tls_requested = False
        self.authenticated: str | None = None
        self.auth_attempts = 0
        self._user: str | None = None
        self._mech: pop3proto.SaslServerMechanism | None = None

    # -- transport interface -------------------------------------------------

    def greeting(self) -> bytes:
        assert self.conn.next_event() is pop3proto.PAUSED
        return self.conn.send(pop3proto.Greeting(self.config.greeting))

    def receive(self, data: bytes) -> Iterator[bytes]:
        """Feed client bytes (b"" = EOF); yield the bytes to send back."""
        conn = self.conn
        conn.receive_data(data)
        while not self.closing:
            event = conn.next_event()
            if event is pop3proto.NEED_DATA:
                return
            if event is pop3proto.PAUSED:
                if conn.state is State.TLS_PENDING:
                    self.tls_requested = True
                return
            if isinstance(event, pop3proto.ConnectionClosed):
                self.closing = True
                return
            assert isinstance(event, pop3proto.Event)
            self.commands.append(event)
            for reply in self.handle(event):
                if isinstance(reply, bytes):
                    yield reply
                else:
                    yield conn.send(reply)

    def tls_established(self) -> None:
        assert self.tls_requested
        self.tls_requested = False
        self.conn.tls_established()

    # -- the mailbox -------------------------------------------------------------

    def live(self, number: int) -> bool:
        return 1 <= number <= len(self.config.messages) and number not in self.deleted

    def capabilities(self) -> pop3proto.Capabilities:
        cfg = self.config
        items: list[str | tuple[str, ...]] = ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE"]
        if cfg.user_command:
            items.append("USER")
        if cfg.pipelining:
            items.append("PIPELINING")
        if cfg.stls and not self.conn.tls:
            items.append("STLS")
        if cfg.sasl:
            items.append(("SASL", *cfg.sasl))
        if cfg.utf8:
            items.append("UTF8")
        return pop3proto.Capabilities.build(*items)

    def _mechanism(self, name: str) -> pop3proto.SaslServerMechanism:
        users = self.config.users

        def check(user: str, password: str) -> bool:
            return users.get(user) == password

        if name == "PLAIN":
            return pop3proto.PlainServer(check)
        if name == "LOGIN":
            return pop3proto.LoginServer(check)
        if name == "CRAM-MD5":
            return pop3proto.CramMD5Server(users.get)
        hash_name = "sha1" if name == "SCRAM-SHA-1" else "sha256"
        creds = {u: pop3proto.scram_credentials(p, hash_name=hash_name) for u, p in users.items()}
        return pop3proto.ScramServer(creds.get, hash_name=hash_name)

    def _logged_in(self, user: str) -> list[Any]:
        if self.config.login_error is not None:
            return [pop3proto.Err(self.config.login_error)]
        self.authenticated = user
        return [pop3proto.Ok("Logged in.")]

    def _auth_failed(self) -> list[Any]:
        if self.config.close_after_auth_failure:
            self.closing = True
        return [pop3proto.Err(self.config.auth_error)]

    def _sasl_step(self, data: bytes | None) -> list[Any]:
        mech = self._mech
        assert mech is not None
        try:
            challenge = mech.step(data)
        except pop3proto.SaslError:
            self._mech = None
            return self._auth_failed()
        if challenge is None:
            self._mech = None
            assert mech.authenticated_user is not None
            return self._logged_in(mech.authenticated_user)
        if challenge.startswith(b"v="):
            if self.config.scram_skip_final:
                self._mech = None
                return self._logged_in("alice")
            if self.config.scram_tamper:
                challenge = b"v=" + pop3proto.sasl_b64encode(b"\0" * 32)
        return [pop3proto.SaslChallenge(challenge)]

    def handle(self, event: pop3proto.Event) -> Iterable[Any]:
        """The replies to one received event (events or raw bytes)."""
        cfg = self.config
        if isinstance(event, pop3proto.BadCommand):
            return [pop3proto.Err(event.reason)]
        if isinstance(event, pop3proto.SaslCancel):
            self._mech = None
            return [pop3proto.Err("cancelled")]
        if isinstance(event, pop3proto.SaslResponse):
            return self._sasl_step(event.data)
        if isinstance(event, pop3proto.Capa):
            return [pop3proto.CapaOk(self.capabilities())] if cfg.capa else [pop3proto.Err("?")]
        if isinstance(event, pop3proto.Stls):
            if not cfg.stls:
                return [pop3proto.Err("no TLS here")]
            return (
                [pop3proto.Ok("Begin TLS"), cfg.after_stls]
                if cfg.after_stls
                else [pop3proto.Ok("Begin TLS")]
            )
        if isinstance(event, pop3proto.Utf8):
            return [pop3proto.Ok("UTF8 on")] if cfg.utf8 else [pop3proto.Err("no")]
        if isinstance(event, pop3proto.User):
            if not cfg.user_command:
                return [pop3proto.Err("USER disabled")]
            self._user = event.name
            return [pop3proto.Ok("send PASS")]
        if isinstance(event, pop3proto.Pass):
            self.auth_attempts += 1
            if self._user is not None and cfg.users.get(self._user) == event.password:
                return self._logged_in(self._user)
            return self._auth_failed()
        if isinstance(event, pop3proto.Apop):
            self.auth_attempts += 1
            secret = cfg.users.get(event.name)
            ts = pop3proto.Greeting(cfg.greeting).timestamp
            if secret is not None and ts and pop3proto.apop_digest(ts, secret) == event.digest:
                return self._logged_in(event.name)
            return self._auth_failed()
        if isinstance(event, pop3proto.Auth):
            self.auth_attempts += 1
            if event.mechanism not in cfg.sasl:
                return [pop3proto.Err("unsupported mechanism")]
            self._mech = self._mechanism(event.mechanism)
            return self._sasl_step(event.initial_response)
        if isinstance(event, pop3proto.Quit):
            if self.conn.state is State.UPDATE:
                if cfg.quit_no_reply:
                    self.closing = True
                    return []
                if cfg.quit_error:
                    self.closing = True
                    return [pop3proto.Err("some deleted messages not removed")]
                self.committed = sorted(self.deleted)
            self.closing = True
            return [pop3proto.Ok("bye")]
        return self._transaction(event)

    def _transaction(self, event: pop3proto.Event) -> Iterable[Any]:
        msgs = self.config.messages
        live = [n for n in range(1, len(msgs) + 1) if n not in self.deleted]
        if isinstance(event, pop3proto.Stat):
            return [pop3proto.StatOk(len(live), sum(len(msgs[n - 1]) for n in live))]
        if isinstance(event, pop3proto.Noop):
            return [pop3proto.Ok()]
        if isinstance(event, pop3proto.Rset):
            self.deleted.clear()
            return [pop3proto.Ok("reset")]
        if isinstance(event, pop3proto.List) and event.number is None:
            return [pop3proto.ListOk({n: len(msgs[n - 1]) for n in live})]
        if isinstance(event, pop3proto.Uidl) and event.number is None:
            return [pop3proto.UidlOk({n: f"uid-{n:04d}" for n in live})]
        number = getattr(event, "number", None)
        assert isinstance(number, int), event
        if not self.live(number):
            return [pop3proto.Err("no such message")]
        body = msgs[number - 1]
        if isinstance(event, pop3proto.List):
            return [pop3proto.ListEntryOk(number, len(body))]
        if isinstance(event, pop3proto.Uidl):
            return [pop3proto.UidlEntryOk(number, f"uid-{number:04d}")]
        if isinstance(event, pop3proto.Dele):
            self.deleted.add(number)
            return [pop3proto.Ok("deleted")]
        if isinstance(event, pop3proto.Top):
            head, sep, rest = body.partition(b"\r\n\r\n")
            lines = rest.split(b"\r\n")[: event.lines] if sep else []
            body = head + sep + b"\r\n".join(lines) + (b"\r\n" if lines else b"")
        assert isinstance(event, (pop3proto.Retr, pop3proto.Top)), event
        return self._stream(body)

    def _stream(self, body: bytes) -> Iterator[Any]:
        # Lazily, so that a 20 MB message is never copied whole.
        yield pop3proto.MessageStart(f"{len(body)} octets")
        step = self.config.chunk
        for i in range(0, len(body), step):
            yield pop3proto.MessageData(body[i : i + step])
        yield pop3proto.MessageEnd()


class ThreadedServer:
    """A POP3 server thread on 127.0.0.1:0 serving :class:`FakeSession` s.

    Connections are served one after another, each with a fresh session of
    *config* (copied).  ``sessions`` keeps them for inspection; exceptions in
    the thread are kept in ``errors``.  Use as a context manager: the thread
    is joined and every socket closed on exit.
    """

    def __init__(
        self,
        config: FakeConfig | None = None,
        *,
        tls_context: ssl.SSLContext | None = None,
        handler: Callable[[socket.socket, ThreadedServer], None] | None = None,
    ) -> None:
        self.config = config or FakeConfig()
        self.tls_context = tls_context
        self.handler = handler
        self.sessions: list[FakeSession] = []
        self.errors: list[BaseException] = []
        self.received = bytearray()
        self.active: socket.socket | None = None
        self._stop = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.port: int = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, name="fake-pop3", daemon=True)

    def __enter__(self) -> ThreadedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        active = self.active
        if active is not None:
            # Unblock a handler waiting on a client the test left open.
            with contextlib.suppress(OSError):
                active.shutdown(socket.SHUT_RDWR)
        self.thread.join(10)
        self.listener.close()
        assert not self.thread.is_alive(), "the server thread did not stop"

    @property
    def session(self) -> FakeSession:
        return self.sessions[-1]

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            sock.settimeout(10)
            self.active = sock
            try:
                if self.handler is not None:
                    self.handler(sock, self)
                else:
                    self._session(sock)
            except Exception as exc:  # the client may abort on purpose
                self.errors.append(exc)
            finally:
                self.active = None
                sock.close()

    def _wrap(self, sock: socket.socket) -> socket.socket:
        assert self.tls_context is not None
        return self.tls_context.wrap_socket(sock, server_side=True)

    def _session(self, sock: socket.socket) -> None:
        session = FakeSession(replace(self.config))
        self.sessions.append(session)
        conn = sock
        try:
            if session.config.implicit_tls:
                conn = self._wrap(sock)
            conn.sendall(session.greeting())
            while not session.closing:
                data = conn.recv(65536)
                self.received += data
                for chunk in session.receive(data):
                    conn.sendall(chunk)
                if session.tls_requested:
                    conn = self._wrap(conn)
                    session.tls_established()
                if not data:
                    break
        finally:
            if conn is not sock:
                conn.close()


def serve(config: FakeConfig | None = None, **kwargs: Any) -> ThreadedServer:
    """A :class:`ThreadedServer` for *config*, to use in a ``with`` block."""
    return ThreadedServer(config, **kwargs)

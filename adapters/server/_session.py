"""The I/O-free POP3 server session shared by every server.

:class:`ServerSession` decides what a POP3 server *does*: it owns a server
:class:`pop3proto.Connection`, answers each command event (RFC 1939 §§4-7,
RFC 2449 CAPA, RFC 2595 STLS, RFC 5034 AUTH, RFC 6856 UTF8/LANG), opens and
locks the maildrop after authentication and applies deletions only in the
UPDATE state.  It never touches a socket: bytes go in with
:meth:`~ServerSession.receive` and come out as *actions*, the seam's
requests (:mod:`pop3proto.adapters._seam`): :class:`Send`,
:class:`StartTLS`, :class:`Close`, and :class:`Sleep` (the wait a failed
login costs, :mod:`._penalties`; perform it without holding up other
connections).  The one loop that drives a session
(gathering its sends into writes, reading between batches, the idle
timeout) is :func:`pop3proto.adapters.server._loop.serve_session`; each
runtime performs what that loop asks.

What a session promises whoever drives it:

* :meth:`~ServerSession.greeting` comes first, exactly once.
* :meth:`~ServerSession.actions` is a generator that processes the
  commands already received, in order (RFC 2449 §6.6: pipelined commands
  are answered one after another), and stops when it needs more bytes.
  Message bodies (RETR, TOP) are streamed from the maildrop: the status
  line goes out with as much of the body as fits in
  ``ServerConfig.chunk_size`` (a small message, terminator included, is a
  single :class:`Send`), and each further chunk is produced only when the
  driver asks for the next action, so a driver that finishes each write
  before pulling the next action never holds much more than one chunk of
  a message in memory.
* :class:`StartTLS` is always the last action of a batch.  Call
  :meth:`~ServerSession.tls_started` once the handshake is done, before
  reading again.
* :class:`Close` is always the last action; the session is then
  :attr:`~ServerSession.closed`.  Close the transport after sending every
  :class:`Send` before it.
* :meth:`~ServerSession.connection_lost` (end of stream, reset, failed TLS
  handshake, server shutdown) and :meth:`~ServerSession.timed_out` end the
  session **without** UPDATE: the maildrop lock is released and nothing is
  deleted (RFC 1939 §3, §6).  Abandoning an :meth:`actions` generator in
  the middle of a body is fine: closing it (or letting it be collected)
  closes the message being read.

Each command is answered by the handler :data:`_HANDLERS` maps its event
class to (the engine has already checked that the command is allowed in
the current state, RFC 1939 §3): answering a new command is one entry
there.  An event with no handler is answered ``-ERR command not
implemented``.  Logins are decided by :mod:`._authorization`; once the
user is in, :mod:`._transaction` answers from the open maildrop.

Policy choices (each one documented where it is made):

* After ``max_auth_failures`` failed logins, and after
  ``max_bad_commands`` bad commands, the server closes (RFC 1939 §4
  allows it).
* An idle timeout sends ``-ERR disconnected for inactivity``
  before closing.  RFC 1939 §3 says the server closes "without ... sending
  any response", but real servers (Dovecot, WildDuck) send one, the engine's
  client role understands it, and it tells a human what happened.  No
  message is removed either way.
* ``EXPIRE 0`` (RFC 2449 §6.7), when configured, removes the messages
  retrieved in full by RETR, at UPDATE only.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import Any, Final, NoReturn, TypeVar, cast

import pop3proto
from pop3proto import (
    NEED_DATA,
    PAUSED,
    SERVER,
    Apop,
    Auth,
    BadCommand,
    Capa,
    Capabilities,
    CapaOk,
    Command,
    Connection,
    ConnectionClosed,
    Dele,
    Err,
    Event,
    Extension,
    Greeting,
    Lang,
    LangOk,
    Last,
    List,
    Noop,
    Ok,
    Pass,
    Quit,
    RemoteProtocolError,
    Retr,
    Rset,
    SaslCancel,
    SaslResponse,
    Stat,
    State,
    Stls,
    Top,
    Uidl,
    User,
    Utf8,
)

from .._seam import Call, CallResult, Close, Send, Sleep, StartTLS
from ..mailstore._base import (
    AsyncMaildropBackend,
    Identity,
    Maildrop,
    MaildropBackend,
)
from ..mailstore._users import Authenticator
from ._authorization import FAILED, Authorization, Failed, LoggedIn, Outcome
from ._config import EndReason, ServerConfig, SessionStats
from ._opening import (
    UNABLE_TO_OPEN,
    Opened,
    discard_opened,
    open_failed,
    open_listed,
    try_open_listed,
)
from ._penalties import AuthPenalties
from ._transaction import MaildropFailed, Transaction

__all__ = ["Action", "ServerSession"]

log = logging.getLogger("pop3proto.server")

#: What :meth:`ServerSession.actions` yields.
Action = Send | StartTLS | Close | Call | Sleep
_T = TypeVar("_T")

_AUTH_FAILED = "authentication failed"


#: The last words to a SASL line over the engine's ``max_sasl_size``.
_SASL_TOO_LONG: Final = b"-ERR SASL line too long, closing\r\n"


class _Stop(Exception):
    """Internal: a handler closed the session (``actions()`` yields
    :class:`Close` for it)."""


class ServerSession:
    """One POP3 server session, I/O-free; see the module docstring.

    Args:
        backend: opens the user's maildrop after authentication.
        authenticator: checks credentials.
        config: server-wide settings (default ``ServerConfig()``).
        tls: the transport is already TLS (implicit TLS, RFC 8314 §3).
        is_loopback: the client connects from a loopback address (see
            :func:`~._config.is_loopback_address`); with the default policy
            this allows plaintext logins without TLS.
        peer: the client's address, for the session-end log line.
        offload: yield a :class:`~pop3proto.adapters._seam.Call` for each
            backend or authenticator call that may block (checking a
            password, opening, listing and committing the maildrop), to be
            answered with a :class:`~pop3proto.adapters._seam.CallResult`
            by ``actions().send()``: what an event-loop driver wants.  A
            login whose check the authenticator says is quick
            (``quick_credentials()``) is checked here instead, and opened
            here too when the backend's ``try_open`` can do it (see
            :mod:`._opening`).  By default (``False``) the session makes
            every call itself, in the driver's thread, and never yields a
            ``Call``.
        penalties: the server's record of failed logins, shared by all its
            sessions (:class:`~._penalties.AuthPenalties`); by default one
            of this session's own, from *config*.  The answer to each
            credential check is held back by a :class:`Sleep` action for
            as long as it decides (SECURITY.md "Authentication failures").
        ip: the client's address, as the penalties count it (give it
            whenever *penalties* is shared: ``""`` counts every client of
            the record as one address).
    """

    def __init__(
        self,
        backend: MaildropBackend | AsyncMaildropBackend,
        authenticator: Authenticator,
        config: ServerConfig | None = None,
        *,
        tls: bool = False,
        is_loopback: bool = False,
        peer: str = "",
        offload: bool = False,
        penalties: AuthPenalties | None = None,
        ip: str = "",
    ) -> None:
        """See the class docstring."""
        self._offload = offload
        self.config = config if config is not None else ServerConfig()
        self._penalties = penalties if penalties is not None else penalties_for(self.config)
        self._ip = ip
        self.backend = backend
        self.authenticator = authenticator
        self.stats = SessionStats(peer=peer, tls=tls)
        self._conn = Connection(
            SERVER,
            tls=tls,
            strict_user=self.config.strict_user,
            extension_commands={n: c.multiline for n, c in self.config.commands.items()},
        )
        self._authorization = Authorization(
            authenticator, self.config, self._conn, is_loopback=is_loopback
        )
        self._greeted = False
        self._closed = False
        self._eof = False
        self._transaction: Transaction | None = None
        self._bad_commands = 0

    # -- properties --------------------------------------------------------

    @property
    def connection(self) -> Connection:
        """The engine connection (read it; do not feed or send on it)."""
        return self._conn

    @property
    def state(self) -> State:
        """The engine's session state."""
        return self._conn.state

    @property
    def closed(self) -> bool:
        """Whether the session is over (after :class:`Close`,
        :meth:`connection_lost` or :meth:`timed_out`)."""
        return self._closed

    @property
    def tls(self) -> bool:
        """Whether the transport is TLS."""
        return self._conn.tls

    @property
    def user(self) -> str | None:
        """The authenticated user, once in TRANSACTION."""
        return self.stats.user

    @property
    def idle_timeout(self) -> float:
        """Seconds of client silence the adapter allows (``config.idle_timeout``)."""
        return self.config.idle_timeout

    @property
    def is_loopback(self) -> bool:
        """Whether the client connects from a loopback address."""
        return self._authorization.is_loopback

    @property
    def timestamp(self) -> str | None:
        """The APOP timestamp of this session's greeting, if any."""
        return self._authorization.timestamp

    @property
    def plaintext_allowed(self) -> bool:
        """Whether USER/PASS, PLAIN and LOGIN are allowed right now."""
        return self._authorization.plaintext_allowed

    @property
    def mechanisms(self) -> tuple[str, ...]:
        """The SASL mechanisms allowed (and advertised) right now."""
        return self._authorization.mechanisms

    def capabilities(self) -> Capabilities:
        """What CAPA answers now (RFC 2449 §5): only what works right now.

        Capabilities of the AUTHORIZATION state (USER, SASL, UTF8) are
        announced in TRANSACTION too, as RFC 2449 §5 requires; STLS only
        in AUTHORIZATION, before TLS and before UTF8 (RFC 2595 §4,
        RFC 6856 §2.1).
        """
        config = self.config
        items: list[str | tuple[str, ...]] = [
            "TOP",
            "UIDL",
            "PIPELINING",
            "RESP-CODES",
            "AUTH-RESP-CODE",
        ]
        if self._authorization.user_pass:
            items.append("USER")
        mechanisms = self.mechanisms
        if mechanisms:
            items.append(("SASL", *mechanisms))
        conn = self._conn
        if (
            config.tls_available
            and not conn.tls
            and not conn.utf8
            and conn.state in (State.AUTHORIZATION, State.USER_OK)
        ):
            items.append("STLS")
        items.append("UTF8")
        items.append("LANG")
        if config.expire is not None:
            items.append(("EXPIRE", str(config.expire)))
        if config.login_delay is not None:
            items.append(("LOGIN-DELAY", str(config.login_delay)))
        if config.implementation is not None:
            items.append(("IMPLEMENTATION", *config.implementation.split()))
        for command in config.commands.values():
            if command.capability is not None:
                items.append(command.capability)
        return Capabilities.build(*items)

    # -- the adapter API ---------------------------------------------------

    def greeting(self) -> bytes:
        """The greeting to send first (``+OK text <timestamp>``).

        Each call on a new session makes a new, unique APOP timestamp
        (RFC 1939 §7).  Call it exactly once, before anything else.
        """
        if self._greeted:
            raise RuntimeError("greeting() was already called")
        self._greeted = True
        data = self._conn.send(Greeting(self._authorization.greeting_text()))
        self.stats.bytes_sent += len(data)
        return data

    def receive(self, data: bytes) -> None:
        """Feed bytes from the client; ``b""`` means it closed its side.

        Then pull :meth:`actions`.  Bytes after the end are ignored.
        """
        if self._closed or self._eof:
            return
        if not data:
            self._eof = True
        self.stats.bytes_received += len(data)
        self._conn.receive_data(data)

    def actions(self) -> Generator[Action, CallResult | None, None]:
        """Process the commands received so far; yield what to do.

        Stops when more input is needed, after :class:`StartTLS` and after
        :class:`Close`.  See the module docstring for the rules; with
        ``offload=True``, answer each :class:`Call` by sending its
        :class:`CallResult`.
        """
        if not self._greeted:
            raise RuntimeError("send greeting() first")
        conn = self._conn
        handlers = _HANDLERS
        while not self._closed:
            in_sasl = conn.state is State.SASL
            try:
                event = conn.next_event()
            except RemoteProtocolError as exc:
                # An injection attempt after STLS or an oversize SASL line:
                # drop the connection without UPDATE.
                log.info("protocol error from %s: %s", self.stats.peer or "client", exc)
                self._end(EndReason.PROTOCOL_ERROR)
                if in_sasl:
                    # RFC 5034 §4 lets the server end an exchange with -ERR;
                    # the engine is in ERROR now and sends nothing more, so
                    # the fixed line is written here.
                    self.stats.bytes_sent += len(_SASL_TOO_LONG)
                    yield Send(_SASL_TOO_LONG)
                yield Close()
                return
            if event is NEED_DATA or event is PAUSED:
                return
            assert isinstance(event, Event)
            handler = handlers.get(type(event)) or _inherited_handler(type(event))
            if isinstance(event, Command):
                self.stats.commands += 1
            try:
                yield from handler(self, event)
            except _Stop:
                yield Close()
                return
            except MaildropFailed:
                self._end(EndReason.IO_ERROR)
                yield Close()
                return

    def tls_started(self) -> None:
        """The TLS handshake after :class:`StartTLS` succeeded.

        The session is in a fresh AUTHORIZATION state: capabilities are
        recomputed (STLS disappears; USER and PLAIN may appear).  If the
        engine finds plaintext bytes buffered from before the handshake, the
        session ends instead (check :attr:`closed`).
        """
        try:
            self._conn.tls_established()
        except pop3proto.ProtocolError as exc:
            # Plaintext bytes arrived before the handshake: possible
            # injection (RFC 2595 §4).  The session is then closed.
            log.info("protocol error from %s: %s", self.stats.peer or "client", exc)
            self._end(EndReason.PROTOCOL_ERROR)
            return
        self.stats.tls = True

    def timed_out(self) -> list[Action]:
        """The client was idle for :attr:`idle_timeout` seconds.

        Ends the session without UPDATE and returns the actions to perform:
        a ``-ERR`` line when one can be sent (not in the middle of a SASL
        exchange or a TLS handshake), then :class:`Close`.
        """
        if self._closed:
            return []
        out: list[Action] = []
        conn = self._conn
        if (
            self._greeted
            and conn.state in (State.AUTHORIZATION, State.USER_OK, State.TRANSACTION)
            and not conn.outstanding
        ):
            out.append(self._send(Err("disconnected for inactivity")))
        self._end(EndReason.TIMEOUT)
        out.append(Close())
        return out

    def connection_lost(self) -> None:
        """The transport failed or closed: end without UPDATE.  Idempotent."""
        self._end(EndReason.CONNECTION_LOST)

    # -- internals: calls that may block, sending and ending -----------------

    def _call(
        self,
        fn: Callable[..., _T],
        *args: Any,
        discard: Callable[[Any], None] | None = None,
        quick: bool = False,
    ) -> Generator[Action, Any, _T]:
        """``fn(*args)``: made here (always when *quick*: the backend or the
        authenticator said it is), or (``offload``) by the driver, which
        answers the yielded :class:`Call` with its :class:`CallResult`
        (*discard* releases the value if the session is gone by then)."""
        if quick or not self._offload:
            return fn(*args)
        result = yield Call(fn, args, discard)
        assert isinstance(result, CallResult), "answer a Call with a CallResult"
        value: _T = result.unwrap()
        return value

    def _send(self, event: Event) -> Send:
        data = self._conn.send(event)
        self.stats.bytes_sent += len(data)
        return Send(data)

    def _release(self) -> None:
        transaction, self._transaction = self._transaction, None
        if transaction is not None:
            transaction.release()

    def _end(self, reason: EndReason) -> None:
        """End the session (idempotent): release the maildrop without
        UPDATE unless a QUIT already committed, log one line, call the hook."""
        if self._closed:
            return
        self._closed = True
        self._authorization.end()
        self._release()
        if self._conn.state not in (State.CLOSED, State.ERROR):
            self._conn.send(ConnectionClosed())
        stats = self.stats
        stats.reason = reason
        log.info(
            "session end: peer=%s user=%s reason=%s tls=%s commands=%d received=%d "
            "sent=%d retrieved=%d deleted=%d auth_failures=%d",
            stats.peer or "-",
            stats.user or "-",
            reason,
            stats.tls,
            stats.commands,
            stats.bytes_received,
            stats.bytes_sent,
            stats.retrieved,
            stats.deleted,
            stats.auth_failures,
        )
        hook = self.config.on_session_end
        if hook is not None:
            try:
                hook(stats)
            except Exception:
                log.exception("on_session_end hook failed")

    def _close_after(self, event: Event, reason: EndReason) -> Iterator[Action]:
        """Send *event* (the reply owed), then end the session."""
        yield self._send(event)
        self._stop(reason)

    def _stop(self, reason: EndReason) -> NoReturn:
        """End the session now; ``actions()`` yields the :class:`Close`."""
        self._end(reason)
        raise _Stop

    # -- the handlers (see _HANDLERS) ---------------------------------------

    def _end_of_stream(self, event: ConnectionClosed) -> NoReturn:
        # RFC 1939 §6: the client closed without QUIT: no UPDATE.
        self._stop(EndReason.EOF)

    def _bad_command(self, event: BadCommand) -> Iterator[Action]:
        self._authorization.bad_line()
        self._bad_commands += 1
        reason = event.reason[:200]
        if self._bad_commands >= self.config.max_bad_commands:
            yield from self._close_after(
                Err(f"{reason}; too many bad commands, closing"),
                EndReason.TOO_MANY_BAD_COMMANDS,
            )
        yield self._send(Err(reason))

    def _not_implemented(self, event: Event) -> Iterator[Action]:
        # Anything else the engine might grow: refuse rather than guess.
        yield self._send(Err("command not implemented"))

    # -- AUTHORIZATION ------------------------------------------------------

    def _authorize(self, outcome: Outcome) -> Iterator[Action]:
        """Act on what :class:`~._authorization.Authorization` decided."""
        if isinstance(outcome, LoggedIn):  # pragma: no cover - via _checked_login
            return self._login(outcome.user)
        if isinstance(outcome, Failed):
            return self._auth_failure()
        return iter((self._send(outcome),))

    def _checked_login(
        self, method: Callable[[Authorization, Any], Outcome], event: Event
    ) -> Generator[Action, Any, None]:
        """A login step that may ask the authenticator (a password hash may
        take half a second): the whole decision is one call, off the loop
        when offloading.  The Authorization is this session's own and the
        session waits for it, so no other thread touches it meanwhile."""
        backend = self.backend
        # With a blocking backend, a good login opens and lists the maildrop
        # in the same call: one trip to a worker thread, not three.  When
        # the authenticator answers this step quickly, the check is made
        # here instead, and so is the opening if the backend can do it
        # quickly (try_open); else the opening alone takes the trip.
        open_too = not inspect.iscoroutinefunction(backend.open)
        quick = self._offload and self._authorization.is_quick(event)
        opener = open_listed if not quick else try_open_listed

        def _login_check() -> tuple[Outcome, Opened | None]:
            outcome = method(self._authorization, event)
            if open_too and isinstance(outcome, LoggedIn):
                return outcome, opener(cast(MaildropBackend, backend), outcome.user)
            return outcome, None

        opened: Opened | None = None
        try:
            outcome, opened = yield from self._call(
                _login_check, discard=_discard_login, quick=quick
            )
        except Exception:
            # The call itself failed (the runtime could not run it): the
            # answer of any failed login, and no exchange left half done.
            log.exception("login check failed")
            self._authorization.bad_line()
            outcome = FAILED
        # SECURITY.md "Authentication failures": the verdict waits (a
        # failure always, a success while penalised), holding up only this
        # connection (and, for a success, the maildrop it just locked).
        penalties, account = self._penalties, self._authorization.attempted
        wait = 0.0
        if isinstance(outcome, LoggedIn):
            wait = penalties.succeeded(self._ip, account or outcome.user.login)
        elif isinstance(outcome, Failed):
            wait = penalties.failed(self._ip, account)
        if wait > 0:
            yield Sleep(wait)
        if isinstance(outcome, LoggedIn):
            yield from self._login(outcome.user, opened)
        else:
            yield from self._authorize(outcome)

    def _auth_failure(self) -> Iterator[Action]:
        self.stats.auth_failures += 1
        reply = Err(_AUTH_FAILED, pop3proto.AUTH)
        if self.stats.auth_failures >= self.config.max_auth_failures:
            yield from self._close_after(reply, EndReason.TOO_MANY_AUTH_FAILURES)
        yield self._send(reply)

    def _login(self, user: Identity, opened: Opened | None = None) -> Generator[Action, Any, None]:
        """Credentials are good: lock and open the maildrop (RFC 1939 §4),
        unless *opened* already did (see :func:`open_listed`)."""
        backend = self.backend
        if opened is None and not inspect.iscoroutinefunction(backend.open):
            # A quick login whose maildrop could not be opened quickly.
            try:
                opened = yield from self._call(
                    open_listed, cast(MaildropBackend, backend), user, discard=discard_opened
                )
            except Exception as exc:  # pragma: no cover - the runtime could not run it
                opened = open_failed(user, exc)
        elif opened is None:
            try:
                # (awaited by the runtime: open is a coroutine function)
                got: object = yield from self._call(backend.open, user)
                opened = cast(Maildrop, got), None
            except Exception as exc:
                opened = open_failed(user, exc)
        if isinstance(opened, Err):
            yield self._send(opened)
            return
        maildrop, messages = opened
        if messages is None:
            try:
                messages = list((yield from self._call(maildrop.messages)))
            except Exception:
                log.exception("cannot list the maildrop of %s", user)
                maildrop.close()
                yield self._send(UNABLE_TO_OPEN)
                return
        self._transaction = transaction = Transaction(
            maildrop,
            messages,
            conn=self._conn,
            stats=self.stats,
            chunk_size=self.config.chunk_size,
        )
        self.stats.user = user.mailbox
        yield self._send(transaction.summary())

    def _stls(self, event: Stls) -> Iterator[Action]:
        # The engine refuses STLS when TLS is active, after UTF8 and with
        # bytes pipelined after it (the CVE-2011-0411 class).
        if not self.config.tls_available:
            yield self._send(Err("TLS not available"))
            return
        self._authorization.tls_starting()
        yield self._send(Ok("Begin TLS negotiation now"))
        yield StartTLS()

    def _capa(self, event: Capa) -> CapaOk:
        return CapaOk(self.capabilities(), "Capability list follows")

    def _utf8(self, event: Utf8) -> Ok:
        # RFC 6856 §2: UTF-8 mode.  Messages are served as stored.
        return Ok("UTF8 enabled")

    def _lang(self, event: Lang) -> Ok | Err | LangOk:
        # RFC 6856 §3, with English as the only language.
        if event.language is None:
            return LangOk((("en", "English"),), "Language listing follows")
        wanted = event.language.lower()
        if wanted == "*" or wanted.split("-", 1)[0] == "en":
            return Ok("en Language unchanged")
        return Err("unsupported language")

    def _noop(self, event: Noop) -> Ok:
        return Ok()

    def _extension(self, event: Extension) -> Generator[Action, Any, None]:
        """A command the application answers (``ServerConfig.commands``)."""
        command = self.config.commands[event.name]
        try:
            reply = yield from self._call(command.handler, self, event)
            if command.multiline and isinstance(reply, Ok):
                reply = (reply.text, b"")
            if isinstance(reply, tuple):
                text, body = reply
                if not command.multiline:
                    raise TypeError(f"{event.name} is not declared multiline")
                out = [self._send(pop3proto.MessageStart(text))]
                if body:
                    out.append(self._send(pop3proto.MessageData(bytes(body))))
                out.append(self._send(pop3proto.MessageEnd()))
                # (joined: the engine took them in order, nothing can fail now)
                yield Send(b"".join(a.data for a in out))
                return
            if not isinstance(reply, (Ok, Err)):
                raise TypeError(f"{event.name} handler returned {type(reply).__name__}")
        except Exception:
            log.exception("the %s command failed", event.name)
            reply = Err("command failed", pop3proto.SYS_TEMP)
        yield self._send(reply)

    # -- TRANSACTION and UPDATE -----------------------------------------------

    def _in_transaction(self) -> Transaction:
        # The engine hands out TRANSACTION commands only after a login.
        transaction = self._transaction
        assert transaction is not None
        return transaction

    def _quit(self, event: Quit) -> Generator[Action, Any, None]:
        transaction = self._transaction
        if transaction is None:
            # RFC 1939 §4: QUIT in AUTHORIZATION, no UPDATE.
            reply: Ok | Err = Ok("bye")
        else:
            # RFC 1939 §6: the UPDATE state.  Remove what was marked,
            # release the lock, then answer.
            doomed = transaction.doomed(expire_retrieved=self.config.expire == 0)
            committed = True
            if doomed:
                try:
                    committed = bool((yield from self._call(transaction.maildrop.commit, doomed)))
                except Exception:
                    log.exception("commit failed for %s", self.stats.user)
                    committed = False
            reply = transaction.updated(doomed, committed=committed)
            self._release()
        yield from self._close_after(reply, EndReason.QUIT)


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def penalties_for(config: ServerConfig) -> AuthPenalties:
    """A new record of failed logins with *config*'s settings."""
    return AuthPenalties(
        failure_delay=config.auth_failure_delay,
        penalty_max=config.auth_penalty_max,
        reset=config.auth_penalty_reset,
        entries=config.auth_penalty_entries,
    )


def _discard_login(result: tuple[Outcome, Opened | None]) -> None:
    """A login check whose session was abandoned: close what it opened."""
    discard_opened(result[1])


# ---------------------------------------------------------------------------
# The dispatch table
# ---------------------------------------------------------------------------

_E = TypeVar("_E", bound=Event)
#: A handler answers one event: it returns (or yields) the session's actions.
Handler = Callable[[ServerSession, Any], Iterable[Action]]


def _reply(method: Callable[[ServerSession, _E], Event]) -> Handler:
    """A handler from a method that returns the one reply to send."""

    def handler(session: ServerSession, event: _E) -> Iterable[Action]:
        return (session._send(method(session, event)),)

    return handler


def _login_step(method: Callable[[Authorization, _E], Outcome]) -> Handler:
    """A handler from an :class:`~._authorization.Authorization` method
    that never asks the authenticator (answered at once)."""

    def handler(session: ServerSession, event: _E) -> Iterable[Action]:
        return session._authorize(method(session._authorization, event))

    return handler


def _checked_login_step(method: Callable[[Authorization, _E], Outcome]) -> Handler:
    """A handler from an :class:`~._authorization.Authorization` method
    that may ask the authenticator (see ``ServerSession._checked_login``)."""

    def handler(session: ServerSession, event: _E) -> Iterable[Action]:
        return session._checked_login(method, event)

    return handler


def _maildrop_step(method: Callable[[Transaction, _E], Iterable[Action]]) -> Handler:
    """A handler from a :class:`~._transaction.Transaction` method."""

    def handler(session: ServerSession, event: _E) -> Iterable[Action]:
        return method(session._in_transaction(), event)

    return handler


#: Event class -> its handler.  The engine only hands out events allowed in
#: the current state (RFC 1939 §3), so a handler needs no state check.
_HANDLERS: dict[type[Event], Handler] = {
    # The end of the client's stream, and lines that are not commands.
    ConnectionClosed: ServerSession._end_of_stream,
    BadCommand: ServerSession._bad_command,
    # AUTHORIZATION (RFC 1939 §4, §7; RFC 5034; RFC 2595).
    User: _login_step(Authorization.user),
    Pass: _checked_login_step(Authorization.password),
    Apop: _checked_login_step(Authorization.apop),
    Auth: _checked_login_step(Authorization.auth),
    SaslResponse: _checked_login_step(Authorization.sasl_line),
    SaslCancel: _login_step(Authorization.sasl_line),
    Stls: ServerSession._stls,
    # Any state (RFC 2449, RFC 6856, RFC 1939 §5-6).
    Capa: _reply(ServerSession._capa),
    Utf8: _reply(ServerSession._utf8),
    Lang: _reply(ServerSession._lang),
    Noop: _reply(ServerSession._noop),
    Quit: ServerSession._quit,
    # TRANSACTION (RFC 1939 §5, §7).
    Stat: _maildrop_step(Transaction.stat),
    List: _maildrop_step(Transaction.list),
    Uidl: _maildrop_step(Transaction.uidl),
    Retr: _maildrop_step(Transaction.retr),
    Top: _maildrop_step(Transaction.top),
    Dele: _maildrop_step(Transaction.dele),
    Rset: _maildrop_step(Transaction.rset),
    # The application's own commands (ServerConfig.commands).
    Extension: ServerSession._extension,
    # RFC 1725 removed LAST; clients that know it fall back on UIDL.
    Last: ServerSession._not_implemented,
}


def _inherited_handler(kind: type[Event]) -> Handler:
    """The handler of the nearest base class of *kind* in the table (an
    event class is looked up exactly first), else "not implemented"."""
    for base in kind.__mro__:
        handler = _HANDLERS.get(base)
        if handler is not None:
            return handler
    return ServerSession._not_implemented

"""The :class:`Connection`: one POP3 session, either role, bytes in and out.

Theory of operation
-------------------
A connection is a small shared core and one of two roles:

1. The core (:mod:`pop3proto._core`): the session state from
   :mod:`pop3proto._state`, shared by both roles, that says how replies
   move the session; the receive buffer; the modes (TLS, UTF-8, LANG), the
   greeting and the capabilities.
2. The role: the client (:mod:`pop3proto._client_role`) sends commands and
   keeps a FIFO of those not yet answered, which tells it how to frame each
   reply and is all RFC 2449 PIPELINING needs; the server
   (:mod:`pop3proto._server_role`) hands over one command at a time and
   reports :data:`PAUSED` until the reply has been sent, so pipelined input
   waits in the buffer and is never lost (RFC 2197 §4.2).

Both roles look every command up in one table (:mod:`pop3proto._commands`):
its parameters, the states that allow it, the shape of its reply.

``next_event()`` returns an event, :data:`NEED_DATA` (feed more bytes with
``receive_data``) or :data:`PAUSED` (it is your move: the server owes a
reply, the client owes a SASL response, or TLS must be started).  ``send()``
validates an event against the state and returns the bytes to write.

A peer that breaks the protocol raises :class:`RemoteProtocolError` from
``next_event``; asking ``send`` for something illegal raises
:class:`LocalProtocolError`.  Either way the connection is then in
``State.ERROR`` and refuses to go on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final, TypeAlias

from ._buffer import LineTooLong
from ._capabilities import Capabilities
from ._client_role import ClientRole
from ._errors import LocalProtocolError, RemoteProtocolError
from ._events import Command, Event, Extension
from ._response_events import Greeting
from ._sentinels import CLIENT, NEED_DATA, PAUSED, SERVER, NeedData, Paused, Role
from ._server_role import ServerRole
from ._state import ERROR, State

__all__ = [
    "Connection",
    "CLIENT",
    "SERVER",
    "NEED_DATA",
    "PAUSED",
    "NeedData",
    "Paused",
    "NextEvent",
    "Role",
]

#: What :meth:`Connection.next_event` returns: an event, :data:`NEED_DATA`
#: or :data:`PAUSED`.  ``NeedData`` and ``Paused`` are one-member enums, so
#: ``if ev is NEED_DATA or ev is PAUSED: ... else: ev.<field>`` type-checks.
NextEvent: TypeAlias = Event | NeedData | Paused


class Connection:
    """One POP3 session, in the client or the server role.

    Args:
        our_role: :data:`CLIENT` or :data:`SERVER`.
        tls: ``True`` when the transport is already TLS (implicit TLS on
            port 995, RFC 8314 §3): STLS is then refused.
        strict_user: when true (the default) only PASS or QUIT may follow a
            successful USER; when false a second USER, CAPA, etc. may come
            between (CONFORMANCE.md §2.5).
        bare_lf: accept a bare LF as a line end from the peer (a lenient
            option for broken peers; CRLF only by default, which is also the
            boundary the STLS injection check uses).
        lenient_end: client only: cope with servers that end a body
            without a CRLF before the terminating dot (``last line.CRLF``,
            node-pop3#27) or with a dot line missing its LF (``CRLF . CR``,
            cyrus-imapd#4717).  Neither can be told from ordinary text
            until the server falls silent, so the client holds such a tail
            back and the adapter calls :meth:`peer_idle` when nothing has
            arrived for a while; the body then ends there.
        allow_unadvertised_pipelining: client only: allow several
            outstanding commands although the server's last CAPA did not
            list PIPELINING (RFC 2449 §6.6 says a client pipelines only if
            it did).
        max_command_size: the longest command line, CRLF included (RFC 2449
            §4: 255).  The client refuses to send longer ones; the server
            answers longer ones with a :class:`BadCommand` and discards the
            rest of the line.
        max_status_size: the longest status line.  The server refuses to
            send more than this (default 512, RFC 2449 §4); the client raises
            on a longer one received (default 8 KiB, generous on purpose).
        max_sasl_size: the longest SASL line received (RFC 5034 sets none;
            default 64 KiB).
        max_listing_size: client only: the largest multi-line listing
            (LIST, UIDL, CAPA, LANG) accepted, in octets (default 64 MiB).
            Message bodies stream and need no limit.
        extension_commands: server only: keywords the application answers
            itself (vendor or extension commands, RFC 2449 §3), each mapped
            to whether a positive reply carries a multi-line body.  They
            arrive as :class:`Extension` events in AUTHORIZATION and
            TRANSACTION and change no state; other unknown keywords remain
            :class:`BadCommand`.
    """

    __slots__ = ("_role", "our_role")

    def __init__(
        self,
        our_role: Role,
        *,
        tls: bool = False,
        strict_user: bool = True,
        bare_lf: bool = False,
        lenient_end: bool = False,
        allow_unadvertised_pipelining: bool = False,
        max_command_size: int = 255,
        max_status_size: int | None = None,
        max_sasl_size: int = 65536,
        max_listing_size: int = 64 * 1024 * 1024,
        extension_commands: Mapping[str, bool] | None = None,
    ) -> None:
        if our_role is not CLIENT and our_role is not SERVER:
            raise ValueError(f"expected CLIENT or SERVER, not {our_role!r}")
        extensions: dict[str, bool] = {}
        if extension_commands:
            if our_role is CLIENT:
                raise ValueError("extension_commands is a server option")
            for name, multiline in extension_commands.items():
                # Validated as the event would be: 3-4 printable ASCII
                # characters, not a command the engine knows.
                try:
                    event = Extension(name, multiline=multiline)
                except LocalProtocolError as exc:
                    raise ValueError(f"extension command {name!r}: {exc}") from None
                extensions[event.name] = multiline
        for name, value in (
            ("max_command_size", max_command_size),
            ("max_sasl_size", max_sasl_size),
            ("max_listing_size", max_listing_size),
        ):
            if value < 8:
                raise ValueError(f"{name} must be at least 8")
        self.our_role: Final = our_role
        shared = {
            "tls": tls,
            "strict_user": strict_user,
            "bare_lf": bare_lf,
            "max_command_size": max_command_size,
            "max_sasl_size": max_sasl_size,
        }
        self._role: ClientRole | ServerRole
        if our_role is CLIENT:
            self._role = ClientRole(
                lenient_end=lenient_end,
                allow_unadvertised_pipelining=allow_unadvertised_pipelining,
                max_listing_size=max_listing_size,
                max_status_size=8192 if max_status_size is None else max_status_size,
                **shared,
            )
        else:
            self._role = ServerRole(
                extension_commands=extensions,
                max_status_size=512 if max_status_size is None else max_status_size,
                **shared,
            )

    # ------------------------------------------------------------------
    # Properties
    # ------------------------------------------------------------------

    @property
    def their_role(self) -> Role:
        """The peer's role."""
        return SERVER if self.our_role is CLIENT else CLIENT

    @property
    def state(self) -> State:
        """The session state, as of the last reply sent or received."""
        return self._role.session.state

    @property
    def outstanding(self) -> tuple[Command, ...]:
        """Commands sent (client) or received (server) but not yet answered."""
        return self._role.outstanding

    @property
    def capabilities(self) -> Capabilities | None:
        """The capabilities of the last CAPA reply received (client) or
        sent (server); forgotten when TLS starts (RFC 2595 §4)."""
        return self._role.capabilities

    @property
    def greeting(self) -> Greeting | None:
        """The server's greeting, once received (client) or sent (server)."""
        return self._role.greeting

    @property
    def tls(self) -> bool:
        """Whether the transport is TLS (implicit, or after STLS)."""
        return self._role.tls

    @property
    def utf8(self) -> bool:
        """Whether UTF8 mode is on (RFC 6856 §2)."""
        return self._role.utf8

    @property
    def lang(self) -> bool:
        """Whether a LANG command succeeded: response text is UTF-8 (RFC 6856 §3)."""
        return self._role.lang

    # ------------------------------------------------------------------
    # Input
    # ------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Add bytes received from the peer; ``b""`` means the peer closed.

        Beware: an empty slice fed by accident *is* the end of the stream
        (as in h11); non-empty data after it raises
        :class:`LocalProtocolError`.  Anything but ``bytes``, ``bytearray``
        or ``memoryview`` raises :class:`TypeError`.  Nothing is parsed
        here; call :meth:`next_event` to get events.
        """
        self._role.receive_data(data)

    def next_event(self) -> NextEvent:
        """Parse the next event from the buffered bytes.

        Returns an event, :data:`NEED_DATA` or :data:`PAUSED` (a
        :data:`NextEvent`).  Once the state is CLOSED it returns an equal
        :class:`ConnectionClosed` on every call, so a drain loop stops on
        that too.  Raises :class:`RemoteProtocolError` when the peer broke
        the protocol.
        """
        role = self._role
        session = role.session
        if session.state is ERROR:
            raise RemoteProtocolError("can't receive events: the connection is in the ERROR state")
        try:
            return role.next_event()
        except RemoteProtocolError:
            session.error()
            raise
        except LocalProtocolError as exc:
            # An event built from the peer's bytes failed validation (say,
            # message number 0): the peer's fault, not ours.
            session.error()
            raise RemoteProtocolError(str(exc)) from None
        except LineTooLong:  # pragma: no cover - converted where raised
            session.error()
            raise RemoteProtocolError("line too long") from None

    def next_messages(self, limit: int = 1 << 30) -> list[bytes]:
        """Client only: take up to *limit* whole message replies at once.

        A short cut for pipelined downloads (RFC 2449 §6.6).  When the
        oldest outstanding commands are RETR or TOP and their whole replies
        are buffered, each plain ``+OK`` reply (no response code, printable
        ASCII text) is taken out and returned as the message's octets,
        exactly as the :class:`MessageData` pieces of :meth:`next_event`
        would carry them, joined; the session moves as if
        :meth:`next_event` had returned each :class:`MessageEnd`.  The
        ``+OK`` text is not reported.

        It stops at the first reply it cannot take whole (not all received,
        a ``-ERR``, a response code, another command's reply, a lenient
        mode): :meth:`next_event` goes on from there, and raises if the
        peer broke the protocol.  So ``[]`` is always a safe answer, and a
        loop of ``next_messages`` then ``next_event`` sees every reply.
        """
        role = self._role
        if not isinstance(role, ClientRole):
            raise LocalProtocolError("next_messages() is for the client role")
        if limit < 1:
            raise ValueError("limit must be at least 1")
        if role.session.state is ERROR:
            raise RemoteProtocolError("can't receive events: the connection is in the ERROR state")
        return role.next_messages(limit)

    def tls_established(self) -> None:
        """The TLS handshake after ``+OK`` to STLS has completed.

        The session starts afresh in AUTHORIZATION: cached capabilities are
        forgotten (RFC 2595 §4) and no byte received before the handshake may
        be used, so the buffer must be empty.
        """
        self._role.tls_established()

    def peer_idle(self) -> None:
        """Tell the engine the peer has sent nothing for a while.

        Only matters to a client built with ``lenient_end=True`` that is in
        the middle of a body whose received data ends like a broken
        terminator (see the constructor); the next :meth:`next_event` then
        ends the body.  Otherwise it does nothing.
        """
        self._role.idle = True

    def send_failed(self) -> None:
        """Tell the engine that writing bytes from :meth:`send` failed.

        The connection can no longer be trusted to be in step with the peer,
        so it enters the ERROR state.
        """
        self._role.session.error()

    # ------------------------------------------------------------------
    # Output
    # ------------------------------------------------------------------

    def can_send(self, event: Event) -> bool:
        """Whether :meth:`send` would accept *event* now, in either role.

        Unlike ``send``, a "no" costs nothing: the connection does not enter
        the ERROR state, so an application can ask before it commits: a
        client whether a command is legal in the current state, a server
        whether a reply fits the command being answered (a typed reply to
        LIST or only ``-ERR``, text that needs UTF8 mode, a status line
        over the limit).  ``False`` in the ERROR state.
        """
        return self._role.can_send(event)

    def send_all(self, events: Iterable[Event]) -> bytes:
        """:meth:`send` each of *events*, in order; return the bytes joined.

        For a pipelined burst (RFC 2449 §6.6): checked as ``send`` checks
        each event, but a run of commands of one type is checked once when
        nothing the checks depend on changes along it (a RETR after a
        RETR in TRANSACTION), which makes a burst of a thousand commands
        several times cheaper.  Raises like ``send`` at the first event
        refused (and enters ERROR; the bytes of the events before it are
        not returned, so the connection cannot be used any more).
        """
        role = self._role
        session = role.session
        if session.state is ERROR:
            raise LocalProtocolError("can't send: the connection is in the ERROR state")
        try:
            if isinstance(role, ClientRole):
                return role.send_all(events)
            return b"".join([role.send(event) for event in events])
        except LocalProtocolError:
            session.error()
            raise

    def send(self, event: Event) -> bytes:
        """Serialize *event* and return the bytes to write to the peer.

        Raises :class:`LocalProtocolError` (and enters ERROR) if the event is
        not legal now.
        """
        role = self._role
        session = role.session
        if session.state is ERROR:
            raise LocalProtocolError("can't send: the connection is in the ERROR state")
        try:
            return role.send(event)
        except LocalProtocolError:
            session.error()
            raise

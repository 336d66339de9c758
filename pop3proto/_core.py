"""What both roles of a connection share.

:class:`RoleCore` holds the session state (:mod:`pop3proto._state`), the
receive buffer, the modes a session switches on (TLS, UTF-8, LANG), the
greeting and the capabilities, and the line limits.  The client role
(:mod:`pop3proto._client_role`) and the server role
(:mod:`pop3proto._server_role`) extend it with what only they need; the
public :class:`pop3proto.Connection` hands each call to its role.
"""

from __future__ import annotations

from ._buffer import ReceiveBuffer
from ._capabilities import Capabilities
from ._errors import LocalProtocolError, RemoteProtocolError
from ._events import CloseReason, ConnectionClosed, Event
from ._replies import Effect
from ._response_events import CapaOk, Greeting
from ._state import SessionState

__all__ = ["RoleCore"]


class RoleCore:
    """The state and helpers shared by the client and the server role.

    The attributes are the connection's; :class:`pop3proto.Connection`
    documents the options they come from.
    """

    __slots__ = (
        "bare_lf",
        "buf",
        "capabilities",
        "closed",
        "eof",
        "greeting",
        "idle",
        "lang",
        "max_command",
        "max_sasl",
        "max_status",
        "session",
        "tls",
        "utf8",
    )

    def __init__(
        self,
        *,
        tls: bool,
        strict_user: bool,
        bare_lf: bool,
        max_command_size: int,
        max_status_size: int,
        max_sasl_size: int,
    ) -> None:
        self.session = SessionState(strict_user=strict_user)
        self.buf = ReceiveBuffer()
        self.eof = False
        self.tls = bool(tls)
        self.utf8 = False
        self.lang = False
        self.bare_lf = bare_lf
        self.max_command = max_command_size
        self.max_status = max_status_size
        self.max_sasl = max_sasl_size
        self.greeting: Greeting | None = None
        self.capabilities: Capabilities | None = None
        # The peer has sent nothing for a while (Connection.peer_idle).
        self.idle = False
        # What next_event() repeats once the state is CLOSED; None until a
        # close with a known cause (EOF, a local close) is recorded.
        self.closed: ConnectionClosed | None = None

    def close(self, reason: CloseReason, *, outcome_unknown: bool = False) -> ConnectionClosed:
        """Enter CLOSED for *reason* and remember the event that says so."""
        self.session.close()
        if self.closed is None:
            self.closed = ConnectionClosed(reason, outcome_unknown)
        return self.closed

    def closed_event(self) -> ConnectionClosed:
        """The event for a CLOSED connection.  A close not recorded by
        :meth:`close` came from a reply (to QUIT, or a ``-ERR`` greeting):
        the session ended by the protocol."""
        closed = self.closed
        if closed is None:
            closed = self.closed = ConnectionClosed(CloseReason.SESSION_ENDED)
        return closed

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Buffer bytes from the peer; ``b""`` is the end of the stream."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"receive_data() takes bytes, not {type(data).__name__}")
        if data:
            if self.eof:
                # An adapter bug, not the peer's: the protocol has no bytes
                # after the end of the stream.
                self.session.error()
                raise LocalProtocolError("received data after the end of the stream")
            self.buf.append(data if type(data) is bytes else bytes(data))
            self.idle = False
        else:
            self.eof = True

    def decode(self, data: bytes) -> str:
        """Received text as ``str``: ASCII until UTF8 or LANG succeeds, then
        UTF-8 (RFC 6856 §§2-3); bad octets become U+FFFD, never an error."""
        if self.utf8 or self.lang:
            return data.decode("utf-8", "replace")
        return data.decode("ascii", "replace")

    def utf8_credentials_allowed(self) -> bool:
        """RFC 6856 §2.2: UTF-8 user names and passwords once UTF8 mode is
        on, or before it if the server advertised ``UTF8 USER``."""
        caps = self.capabilities
        return self.utf8 or (caps is not None and caps.utf8_user)

    def apply(self, effect: Effect, event: Event) -> None:
        """A positive reply with *effect* was sent or received."""
        if effect is Effect.UTF8_MODE:
            self.utf8 = True
        elif effect is Effect.LANG_MODE:
            self.lang = True
        else:
            assert isinstance(event, CapaOk)
            self.capabilities = event.capabilities

    def tls_established(self) -> None:
        """The handshake after ``+OK`` to STLS finished: a fresh session.

        Cached capabilities are forgotten (RFC 2595 §4) and no byte received
        before the handshake may be used, so the buffer must be empty.
        """
        try:
            self.session.tls_established()
        except LocalProtocolError:
            self.session.error()
            raise
        if self.buf:
            self.session.error()
            raise RemoteProtocolError(
                "plaintext bytes arrived before TLS was established: possible injection"
            )
        self.tls = True
        self.capabilities = None

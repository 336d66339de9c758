"""The POP3 session state machine, as data.

Theory of operation
-------------------
RFC 1939 names three states: AUTHORIZATION, TRANSACTION and UPDATE.  A
faithful engine needs a few more (CONFORMANCE.md §2.1): before the greeting,
after a successful USER (waiting for PASS), inside a SASL exchange, between a
successful STLS and the end of the TLS handshake, and the terminal CLOSED and
ERROR.

This module does not know which role it plays.  Both the client and the
server feed it the same three inputs:

* ``start(kind)``: the command of this kind is now the one being answered.
  For a server that is when the command is read; for a pipelining client it
  is when every earlier reply has arrived.  Two commands change state here:
  AUTH enters SASL (what follows are SASL lines, not commands) and QUIT from
  TRANSACTION enters UPDATE (RFC 1939 §6).
* ``reply(kind, ok)``: the final reply to that command was sent/received.
  State changes follow replies, never commands: in a pipelined USER, PASS,
  STAT where PASS fails, STAT is answered in AUTHORIZATION (RFC 2449 §6.6).
* ``tls_established()``: the handshake after ``+OK`` to STLS finished; the
  session is in a fresh AUTHORIZATION (RFC 2595 §4).

The transitions are :data:`START_TRANSITIONS` and :data:`REPLY_TRANSITIONS`.
Anything not in them leaves the state unchanged, which is what RFC 1939 §3
asks of a command answered with ``-ERR``.  Which commands are legal in which
state is a fact about each command, so it lives in the command table
(:data:`pop3proto._commands.ALLOWED` is the view by state).
``python -m pop3proto._diagram`` draws the diagram in the README from both.
"""

from __future__ import annotations

import enum

from ._errors import LocalProtocolError

__all__ = [
    "State",
    "START_TRANSITIONS",
    "REPLY_TRANSITIONS",
    "TLS_TRANSITIONS",
    "GREETING",
    "SessionState",
]


class State(enum.Enum):
    """Where a POP3 session stands.

    AWAIT_GREETING, AUTHORIZATION, TRANSACTION and UPDATE are RFC 1939's
    (plus the wait for the greeting); USER_OK, SASL and TLS_PENDING are the
    sub-states of AUTHORIZATION CONFORMANCE.md §2.1 names; CLOSED and ERROR
    are terminal.
    """

    AWAIT_GREETING = "AWAIT_GREETING"
    AUTHORIZATION = "AUTHORIZATION"
    USER_OK = "USER_OK"
    SASL = "SASL"
    TLS_PENDING = "TLS_PENDING"
    TRANSACTION = "TRANSACTION"
    UPDATE = "UPDATE"
    CLOSED = "CLOSED"
    ERROR = "ERROR"

    def __repr__(self) -> str:
        return f"State.{self.name}"

    # Members are singletons compared by identity, so identity hashing is
    # consistent; Enum's own __hash__ is Python code, and every transition
    # lookup hashes a state.
    __hash__ = object.__hash__


AWAIT_GREETING = State.AWAIT_GREETING
AUTHORIZATION = State.AUTHORIZATION
USER_OK = State.USER_OK
SASL = State.SASL
TLS_PENDING = State.TLS_PENDING
TRANSACTION = State.TRANSACTION
UPDATE = State.UPDATE
CLOSED = State.CLOSED
ERROR = State.ERROR

#: The pseudo-command kind of the greeting, so that the greeting is "the
#: reply to" something like every other status line.
GREETING = "GREETING"
#: Kind of :class:`Extension` commands (unknown to the engine).
EXTENSION = "EXTENSION"

#: (state, command kind) -> state when that command becomes the one being
#: answered.
START_TRANSITIONS: dict[tuple[State, str], State] = {
    (AUTHORIZATION, "AUTH"): SASL,
    (USER_OK, "AUTH"): SASL,
    (TRANSACTION, "QUIT"): UPDATE,
}

#: (state, command kind, positive?) -> state after the final reply.
REPLY_TRANSITIONS: dict[tuple[State, str, bool], State] = {
    (AWAIT_GREETING, GREETING, True): AUTHORIZATION,
    # A negative greeting: the server will close (CONFORMANCE.md §2.6).
    (AWAIT_GREETING, GREETING, False): CLOSED,
    (AUTHORIZATION, "USER", True): USER_OK,
    (USER_OK, "USER", True): USER_OK,
    (USER_OK, "USER", False): AUTHORIZATION,
    # RFC 1939 §7: a failed PASS clears the USER; a good one locks the
    # maildrop and enters TRANSACTION.
    (USER_OK, "PASS", True): TRANSACTION,
    (USER_OK, "PASS", False): AUTHORIZATION,
    (AUTHORIZATION, "APOP", True): TRANSACTION,
    (USER_OK, "APOP", True): TRANSACTION,
    (USER_OK, "APOP", False): AUTHORIZATION,
    # RFC 5034 §4: failure behaves "as if AUTH had never been sent".
    (SASL, "AUTH", True): TRANSACTION,
    (SASL, "AUTH", False): AUTHORIZATION,
    (AUTHORIZATION, "STLS", True): TLS_PENDING,
    # QUIT ends the session whatever the reply; from TRANSACTION a -ERR
    # means some deleted messages were not removed (RFC 1939 §6).
    (AUTHORIZATION, "QUIT", True): CLOSED,
    (AUTHORIZATION, "QUIT", False): CLOSED,
    (USER_OK, "QUIT", True): CLOSED,
    (USER_OK, "QUIT", False): CLOSED,
    (UPDATE, "QUIT", True): CLOSED,
    (UPDATE, "QUIT", False): CLOSED,
}

#: state -> state when the TLS handshake after STLS completes.
TLS_TRANSITIONS: dict[State, State] = {TLS_PENDING: AUTHORIZATION}


class SessionState:
    """The current state plus the three inputs that move it.

    Illegal inputs raise :class:`LocalProtocolError`; the connection turns
    them into the right error for its role.
    """

    __slots__ = ("state", "strict_user")

    def __init__(self, *, strict_user: bool = True) -> None:
        self.state: State = AWAIT_GREETING
        self.strict_user = strict_user

    @staticmethod
    def after_start(state: State, kind: str) -> State:
        """The state once a command of *kind* becomes the one answered."""
        return START_TRANSITIONS.get((state, kind), state)

    @staticmethod
    def after_reply(state: State, kind: str, ok: bool) -> State:
        """The state after the final reply to a command of *kind*."""
        return REPLY_TRANSITIONS.get((state, kind, ok), state)

    def start(self, kind: str) -> None:
        """Apply the START transition for *kind*."""
        self.state = self.after_start(self.state, kind)

    def reply(self, kind: str, ok: bool) -> None:
        """Apply the REPLY transition for *kind*."""
        self.state = self.after_reply(self.state, kind, ok)

    def tls_established(self) -> None:
        """Apply the TLS transition; only legal in TLS_PENDING."""
        try:
            self.state = TLS_TRANSITIONS[self.state]
        except KeyError:
            raise LocalProtocolError(
                f"TLS can only start after +OK to STLS, not in {self.state.name}"
            ) from None

    def close(self) -> None:
        """The connection ended (EOF, or a reply that closes it)."""
        if self.state is not ERROR:
            self.state = CLOSED

    def error(self) -> None:
        """A protocol error: the connection is unusable."""
        self.state = ERROR

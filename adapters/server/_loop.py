"""The one loop that serves a connection, I/O-free, and how it ends.

The blocking, asyncio and trio servers serve a connection the same way;
what they share is written here once, and each runtime only moves bytes:

* :func:`serve_session` is the loop.  It greets, pulls the session's
  actions, gathers the replies into writes of about :data:`FLUSH_SIZE`
  octets (the replies to a batch of pipelined commands go out together;
  a long body goes out in pieces, each written before the next is read
  from the maildrop), reads between batches and handles the idle timeout.
  It yields the seam's requests (:mod:`pop3proto.adapters._seam`) and the
  runtime answers each one:

  - :class:`Send` -> ``None``: write all of ``data`` (under the idle
    timeout: a client that stops reading must not hold the server).
  - :class:`StartTLS` -> ``None`` once the server-side handshake is done
    (within the handshake timeout); or, instead of a handshake, the
    plaintext octets a runtime finds already buffered above the transport
    (they came before the handshake, RFC 2595 §4: the session sees them
    and drops the connection).
  - :class:`Receive` -> some octets, ``b""`` at end of stream, or ``None``
    when the idle timeout expired (the session's ``-ERR`` is then sent and
    the loop ends).
  - :class:`Call` (sessions created with ``offload=True``) -> a
    :class:`CallResult`: the runtime runs the call in a worker thread (or
    awaits it on the loop if it is a coroutine function) and reports what
    it returned or raised.  Replies gathered so far stay queued meanwhile.
  - :class:`Sleep` -> ``None`` after that many seconds, holding up no
    other connection (a failed login's delay).  Replies gathered so far
    are written first: only the answer being held waits.

  The generator returns when the session is over.  Whatever happens (the
  end, a transport error, a timeout on a write, cancellation), the runtime
  then closes the generator and calls ``session.connection_lost()``
  (idempotent: it ends the session without UPDATE if it was not over).

* :func:`closing` decides how the transport is closed after the session
  ended, from its :class:`~._config.EndReason`: a *lingering close* when the
  server closes first with a reply in flight, a plain close when the
  client has gone, and an abort when the transport is broken or the
  server is shutting down.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Generator
from typing import Any

from .._seam import Call, CallResult, Receive, Send, Sleep, StartTLS
from ._config import EndReason
from ._session import ServerSession

__all__ = [
    "Closing",
    "FLUSH_SIZE",
    "LINGER_LIMIT",
    "LINGER_READ",
    "LoopAnswer",
    "LoopRequest",
    "RECV_SIZE",
    "closing",
    "discard_call",
    "serve_session",
]

log = logging.getLogger("pop3proto.server")

#: Replies are gathered up to this many octets before a write: one write for
#: a batch of pipelined commands rather than one per reply, and memory per
#: connection bounded by about this and one chunk of a message.
FLUSH_SIZE = 65536
#: The most octets asked for in one read.
RECV_SIZE = 65536
#: A lingering close drains at most this many octets ...
LINGER_LIMIT = 65536
#: ... this many at a time.
LINGER_READ = 4096

#: What :func:`serve_session` asks the runtime to do.
LoopRequest = Send | StartTLS | Receive | Call | Sleep
#: What the runtime answers (see the module docstring).
LoopAnswer = bytes | CallResult | None

_RECEIVE = Receive()
_START_TLS = StartTLS()


def discard_call(call: Call, box: list[Any]) -> None:
    """The session waiting for *call* was abandoned: hand the value the
    thread put in *box*, if any, to ``call.discard``."""
    if box and call.discard is not None:
        try:
            call.discard(box[0])
        except Exception:
            log.exception("error while discarding the result of an abandoned call")


def serve_session(
    session: ServerSession, on_login: Callable[[], None] | None = None
) -> Generator[LoopRequest, LoopAnswer, None]:
    """Serve *session* until it is over; see the module docstring.

    *on_login* is called once the session has logged in, before the reply
    that says so is written: from then on the connection counts as a
    session, never as an idle pre-auth connection (see :mod:`._admission`).
    """
    out = [session.greeting()]
    queued = len(out[0])
    # Only actions() ends a session (receive() never does), so the loop is
    # left by the returns below, each right after a batch of actions.
    while True:
        actions = session.actions()
        answer: CallResult | None = None
        try:
            while True:
                try:
                    action = actions.send(answer)
                except StopIteration:
                    break
                answer = None
                if type(action) is Send:
                    data = action.data
                    out.append(data)
                    queued += len(data)
                    if queued >= FLUSH_SIZE:
                        if on_login is not None and session.user is not None:
                            on_login()
                            on_login = None
                        yield Send(b"".join(out))
                        out.clear()
                        queued = 0
                elif type(action) is StartTLS:
                    # The +OK goes out in plaintext, before the handshake.
                    if out:
                        yield Send(b"".join(out))
                        out.clear()
                        queued = 0
                    leftover = yield _START_TLS
                    assert not isinstance(leftover, CallResult)
                    if leftover:
                        # Plaintext pipelined after STLS: the session sees
                        # it and drops the connection.
                        session.receive(leftover)
                    else:
                        session.tls_started()
                elif type(action) is Call:
                    result = yield action
                    assert isinstance(result, CallResult)
                    answer = result
                elif type(action) is Sleep:
                    if out:
                        yield Send(b"".join(out))
                        out.clear()
                        queued = 0
                    yield action
                # A Close is the session's last action: the loop then ends.
        finally:
            # If a write failed in the middle of a body, this closes the
            # message being streamed now rather than at collection.
            actions.close()
        if on_login is not None and session.user is not None:
            on_login()
            on_login = None
        if out:
            yield Send(b"".join(out))  # (one part: joined without a copy)
            out.clear()
            queued = 0
        if session.closed:
            return
        received = yield _RECEIVE
        assert not isinstance(received, CallResult)
        if received is None:
            # The idle timeout: the session's last word, then the end.
            last = [a.data for a in session.timed_out() if type(a) is Send]
            if last:
                yield Send(b"".join(last))
            return
        session.receive(received)


class Closing(enum.Enum):
    """How a runtime closes the transport once the session is over."""

    #: Drop it now, with whatever is still unsent: the peer is gone, the
    #: transport is broken, or the server is shutting down.
    ABORT = "abort"
    #: Close it now (what is written still goes out).
    CLOSE = "close"
    #: Half-close, drain what the client still sends (at most
    #: :data:`LINGER_LIMIT` octets, for at most the server's ``linger``
    #: seconds), then close.  When the server closes first, data the client
    #: already sent (a command pipelined after QUIT, say) would make the
    #: kernel answer with a reset that can destroy the last reply in
    #: flight.  TLS has no half-close: a TLS transport only drains.
    LINGER = "linger"


#: The close after each end reason (when the server is not shutting down).
#: Every reason is listed: a new one needs a decision here.
_CLOSING: dict[str, Closing] = {
    # The server closes first with its last reply in flight.
    EndReason.QUIT: Closing.LINGER,
    EndReason.TIMEOUT: Closing.LINGER,
    EndReason.TOO_MANY_BAD_COMMANDS: Closing.LINGER,
    EndReason.TOO_MANY_AUTH_FAILURES: Closing.LINGER,
    # The client closed first, or misbehaved: nothing worth protecting.
    EndReason.EOF: Closing.CLOSE,
    EndReason.PROTOCOL_ERROR: Closing.CLOSE,
    # The transport failed under the session; or the maildrop failed in the
    # middle of a body, which can only be cut (no -ERR can follow a +OK):
    # no reply is in flight, lingering would only hold the connection.
    EndReason.CONNECTION_LOST: Closing.ABORT,
    EndReason.IO_ERROR: Closing.ABORT,
}


def closing(reason: str, *, abandoned: bool, linger: float) -> Closing:
    """How to close after a session that ended for *reason*
    (``session.stats.reason``); *abandoned* when the server is shutting
    down, *linger* the server's ``linger`` seconds (``0``: never linger)."""
    if abandoned:
        return Closing.ABORT
    how = _CLOSING.get(reason, Closing.ABORT)
    if how is Closing.LINGER and not linger > 0:
        return Closing.CLOSE
    return how

"""The seam between I/O-free logic and the I/O layers, for both sides.

What a client or a server *does* is written once, without I/O: the client's
operations (log in with the strongest method offered, pipeline a batch of
RETRs within a window, stream a body into a sink) and the server's session
(answer each command, stream a message out of the maildrop).  Both *yield*
requests, all of them defined here, and an adapter's small *runner*
performs each one with its own I/O (blocking sockets, asyncio streams, trio
streams) and sends the answer back in.  So the logic is tested once and the
three runtimes cannot drift apart.  A client operation looks like this::

    def noop(conn):                      # an "operation"
        yield Send(conn.send(pop3proto.Noop()))
        while True:
            event = conn.next_event()
            if event is pop3proto.NEED_DATA:
                data = yield Receive()   # the runner answers with bytes
                conn.receive_data(data)
                continue
            return event

Requests and the answer each one expects:

* :class:`Send` -> ``None``: write all of ``data`` to the peer (both sides).
* :class:`Receive` -> ``bytes``: read some bytes, ``b""`` at end of stream
  (client operations; the server loop reads between batches of actions).
* :class:`StartTLS` -> ``None``: wrap the transport in TLS now, as the
  client (with the adapter's ``ssl.SSLContext`` and server host name) or as
  the server (``server_side=True``) after ``+OK`` to STLS (RFC 2595 §4).
* :class:`Deliver` -> ``None``: hand a chunk of message data to the user's
  sink (a file object, an async writer or a callback); client only.
* :class:`Close` -> ``None``: close the transport, the session is over;
  server only (a client closes when its caller does).
* :class:`Call` -> :class:`CallResult`: run a call that may block (a
  backend or authenticator method: disk, database, password hashing) where
  it cannot stall other connections, and answer with what it returned or
  raised; server only.  The event-loop servers run it in a worker thread
  (or await it); the blocking server makes it in the connection's own
  thread after giving up its run token, so that only this connection
  waits.
* :class:`Sleep` -> ``None``: wait ``seconds`` before the next action
  without holding up any other connection (on the event loop, or in the
  connection's own thread); server only: a failed login's delay.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = [
    "Send",
    "Receive",
    "StartTLS",
    "Deliver",
    "Close",
    "Call",
    "CallResult",
    "Sleep",
    "Request",
    "Operation",
]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Send:
    """Write ``data`` to the peer, all of it."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Receive:
    """Read at least one byte from the peer; answer ``b""`` at EOF."""


@dataclass(frozen=True, slots=True)
class StartTLS:
    """Start TLS on the transport (after ``+OK`` to STLS), in our role."""


@dataclass(frozen=True, slots=True)
class Deliver:
    """Give ``data`` (message octets) to the caller's sink."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Close:
    """Close the transport; the session is over."""


@dataclass(frozen=True, slots=True)
class Call:
    """Run ``fn(*args)`` off the event loop (a worker thread), or await it
    on the loop if ``fn`` is a coroutine function; answer a
    :class:`CallResult`."""

    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()
    #: Called with the value if it arrives after the session was abandoned
    #: (a shutdown while a worker thread ran the call): releases what the
    #: call acquired, such as a maildrop's lock.
    discard: Callable[[Any], None] | None = None


@dataclass(frozen=True, slots=True)
class CallResult:
    """What a :class:`Call` returned (``value``) or raised (``error``)."""

    value: Any = None
    error: BaseException | None = None

    def unwrap(self) -> Any:
        """The value, or raise the error (in the caller's frame)."""
        if self.error is not None:
            raise self.error
        return self.value


@dataclass(frozen=True, slots=True)
class Sleep:
    """Wait ``seconds`` (>= 0), holding up only this connection."""

    seconds: float


#: What a client operation yields.
Request = Send | Receive | StartTLS | Deliver
#: An I/O-free operation: yields requests, receives their answers, returns T.
Operation = Generator[Request, "bytes | None", T]

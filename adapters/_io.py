"""The seam between I/O-free logic and the three I/O layers.

What a client *does* (log in with the strongest method offered, pipeline a
batch of RETRs within a window, stream a body into a sink) is written once,
as generator functions that never touch a socket.  They *yield* requests
and get answers back::

    def noop(conn):                      # an "operation"
        yield Send(conn.send(pop3proto.Noop()))
        while True:
            event = conn.next_event()
            if event is pop3proto.NEED_DATA:
                data = yield Receive()   # the runner answers with bytes
                conn.receive_data(data)
                continue
            return event

Each adapter has a small *runner* that performs the requests with its own
I/O (blocking sockets, asyncio streams, trio streams) and sends the results
back into the generator, until it returns.  So the logic is tested once and
the three adapters cannot drift apart.

Requests and the answer each one expects:

* :class:`Send` -> ``None``: write all of ``data`` to the peer.
* :class:`Receive` -> ``bytes``: read some bytes (``b""`` at end of stream).
* :class:`StartTLS` -> ``None``: wrap the transport in TLS now (client side,
  with the adapter's ``ssl.SSLContext`` and server host name).
* :class:`Deliver` -> ``None``: hand a chunk of message data to the user's
  sink (a file object, an async writer or a callback).
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import TypeVar

__all__ = ["Send", "Receive", "StartTLS", "Deliver", "Request", "Operation"]

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
    """Start TLS on the transport (after ``+OK`` to STLS)."""


@dataclass(frozen=True, slots=True)
class Deliver:
    """Give ``data`` (message octets) to the caller's sink."""

    data: bytes


Request = Send | Receive | StartTLS | Deliver
#: An I/O-free operation: yields requests, receives their answers, returns T.
Operation = Generator[Request, "bytes | None", T]

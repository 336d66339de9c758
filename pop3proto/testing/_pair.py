"""Two engines joined in memory, and the drain loop every test needs."""

from __future__ import annotations

from .._connection import CLIENT, NEED_DATA, PAUSED, SERVER, Connection, Role
from .._events import ConnectionClosed, Event

__all__ = ["ConnectionPair", "drain"]


def drain(conn: Connection) -> list[Event]:
    """Every event *conn* has now: stops at ``NEED_DATA`` or ``PAUSED``
    (not included) and after a :class:`~pop3proto.ConnectionClosed`
    (included: in the CLOSED state ``next_event()`` would repeat it forever).
    """
    got: list[Event] = []
    while True:
        event = conn.next_event()
        if event is NEED_DATA or event is PAUSED:
            return got
        got.append(event)
        if isinstance(event, ConnectionClosed):
            return got


class ConnectionPair:
    """A client and a server :class:`~pop3proto.Connection` whose output is
    fed to each other, with no I/O (h11's test ``ConnectionPair``, public).

    Attributes:
        client, server: the two engines.
        conn: ``{CLIENT: client, SERVER: server}``.

    Options are passed to the constructors as *client_kwargs* and
    *server_kwargs*.
    """

    def __init__(
        self,
        *,
        client_kwargs: dict[str, object] | None = None,
        server_kwargs: dict[str, object] | None = None,
    ) -> None:
        self.client = Connection(CLIENT, **(client_kwargs or {}))  # type: ignore[arg-type]
        self.server = Connection(SERVER, **(server_kwargs or {}))  # type: ignore[arg-type]
        self.conn: dict[Role, Connection] = {CLIENT: self.client, SERVER: self.server}

    @staticmethod
    def other(role: Role) -> Role:
        """The other role."""
        return SERVER if role is CLIENT else CLIENT

    def deliver(self, role: Role, data: bytes) -> list[Event]:
        """Feed bytes that *role* produced to the other side (``b""`` is
        EOF) and :func:`drain` it."""
        receiver = self.conn[self.other(role)]
        receiver.receive_data(data)
        return drain(receiver)

    def transfer(self, role: Role, *events: Event) -> list[Event]:
        """Send *events* from *role*, deliver the bytes to the other side and
        return what it parsed.  A :class:`~pop3proto.ConnectionClosed` sent
        reaches the other side as EOF."""
        sender = self.conn[role]
        data = b"".join(sender.send(event) for event in events)
        receiver = self.conn[self.other(role)]
        if data:
            receiver.receive_data(data)
        if any(isinstance(event, ConnectionClosed) for event in events):
            receiver.receive_data(b"")
        return drain(receiver)

"""The connection's sentinel values: the roles, NEED_DATA and PAUSED.

Each is a unique, named object compared by identity (``event is
NEED_DATA``), as h11's are; they pickle as references to themselves.
"""

from __future__ import annotations

from typing import Final

__all__ = ["Role", "CLIENT", "SERVER", "NEED_DATA", "PAUSED"]


class _Sentinel:
    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name

    def __reduce__(self) -> str:
        return self._name


class Role(_Sentinel):
    """The type of :data:`CLIENT` and :data:`SERVER`."""

    __slots__ = ()


class _NeedData(_Sentinel):
    __slots__ = ()


class _Paused(_Sentinel):
    __slots__ = ()


#: The client role: sends commands, receives responses.
CLIENT: Final = Role("CLIENT")
#: The server role: receives commands, sends responses.
SERVER: Final = Role("SERVER")
#: ``next_event()`` needs more bytes from the peer.
NEED_DATA: Final = _NeedData("NEED_DATA")
#: ``next_event()`` cannot go on until the application acts: the server
#: owes a reply, the client owes a SASL response, or TLS must be started.
PAUSED: Final = _Paused("PAUSED")

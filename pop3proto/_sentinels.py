"""The connection's sentinel values: the roles, NEED_DATA and PAUSED.

Each is a unique, named object compared by identity (``event is
NEED_DATA``), as h11's are; they pickle as references to themselves.

:data:`NEED_DATA` and :data:`PAUSED` are each the only member of an enum
class (:class:`NeedData`, :class:`Paused`) so that a type checker narrows
on them: after ``if event is NEED_DATA or event is PAUSED: return``, the
type of ``event`` is :class:`~pop3proto.Event` and its fields are usable
without a cast or an ``isinstance`` assertion.  ``pop3proto.NextEvent``
names the whole union :meth:`Connection.next_event` returns.
"""

from __future__ import annotations

import enum
from typing import Final

__all__ = ["Role", "CLIENT", "SERVER", "NeedData", "Paused", "NEED_DATA", "PAUSED"]


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


class NeedData(enum.Enum):
    """The type of :data:`NEED_DATA`: its only member."""

    NEED_DATA = "NEED_DATA"

    def __repr__(self) -> str:
        return self.value

    __str__ = __repr__


class Paused(enum.Enum):
    """The type of :data:`PAUSED`: its only member."""

    PAUSED = "PAUSED"

    def __repr__(self) -> str:
        return self.value

    __str__ = __repr__


#: The client role: sends commands, receives responses.
CLIENT: Final = Role("CLIENT")
#: The server role: receives commands, sends responses.
SERVER: Final = Role("SERVER")
#: ``next_event()`` needs more bytes from the peer.
NEED_DATA: Final = NeedData.NEED_DATA
#: ``next_event()`` cannot go on until the application acts: the server
#: owes a reply, the client owes a SASL response, or TLS must be started.
PAUSED: Final = Paused.PAUSED

"""Exceptions raised by the engine.

The split follows h11: a :class:`LocalProtocolError` means *you* asked for
something the protocol forbids (a command in the wrong state, CR/LF/NUL in an
argument, pipelining past STLS); a :class:`RemoteProtocolError` means the
*peer* broke the protocol (bad framing, an oversize line, injected bytes after
STLS).  Both derive from :class:`ProtocolError`, and after either one the
connection is in the ERROR state.

A ``-ERR`` reply is *not* an exception: it is an ordinary event.

Nothing else escapes the engine's protocol calls.  Misusing the API itself
raises the usual built-ins: :class:`TypeError` for
``Connection.receive_data`` given anything but bytes-like data,
:class:`ValueError` for a bad ``Connection`` option (and the SASL helpers'
own documented ``ValueError``/:class:`~pop3proto.SaslError`).  These
exceptions pickle (their only field is the message) and their messages
never quote a credential.
"""

from __future__ import annotations

__all__ = ["ProtocolError", "LocalProtocolError", "RemoteProtocolError"]


class ProtocolError(Exception):
    """Base class for every error the engine raises about the protocol.

    Never raised directly; catch it to handle both subclasses at once.
    """

    def __init__(self, msg: str) -> None:
        if type(self) is ProtocolError:
            raise TypeError("tried to directly instantiate ProtocolError")
        super().__init__(msg)


class LocalProtocolError(ProtocolError):
    """The local application tried to do something the protocol forbids.

    Raised by event constructors (invalid field values) and by
    ``Connection.send`` (an event that is illegal in the current state).
    """


class RemoteProtocolError(ProtocolError):
    """The peer sent bytes that break the protocol.

    Raised by ``Connection.next_event``.
    """

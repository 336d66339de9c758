"""Typed exceptions of the modern clients (``sync.Client`` and its async twins).

The engine reports ``-ERR`` as an ordinary :class:`pop3proto.Err` event; the
clients turn the ones that end an operation into exceptions, chosen by the
extended response code (RFC 2449 §8, RFC 3206) so that callers can react
without matching reply text:

==========================  =================================================
Exception                   Raised for
==========================  =================================================
:class:`MailboxInUse`       ``-ERR [IN-USE]``: credentials fine, maildrop busy
:class:`LoginDelay`         ``-ERR [LOGIN-DELAY]``: logged in too recently
:class:`TemporaryFailure`   ``-ERR [SYS/TEMP]``: retry later, quietly
:class:`PermanentFailure`   ``-ERR [SYS/PERM]``: needs a human
:class:`AuthenticationFailed`  ``-ERR [AUTH]``, or any ``-ERR`` to a login
                            command (USER, PASS, APOP, AUTH) without one of
                            the codes above
:class:`CommandFailed`      any other ``-ERR``
==========================  =================================================

Errors that do not come from a ``-ERR``:

* :class:`InsecureAuthenticationRefused`: the client would have had to send
  a password (or a weak digest of it) over an unencrypted link.
* :class:`TLSUnavailable`: TLS was required but the server does not offer
  STLS or refused it.
* :class:`ConnectionLost`: the server closed the connection while a reply
  was owed (``outcome_unknown`` tells whether a QUIT may have committed).
* :class:`ProtocolViolation`: the server broke the protocol (or the
  connection was used in a way the protocol forbids); wraps the engine's
  :class:`pop3proto.ProtocolError`.

Every class derives from :class:`POP3Error`.  ``str(exc)`` never contains a
password.  :func:`raise_for_err` is the one place that maps a ``-ERR`` to its
class; the public faces (``pop3proto.adapters.sync``, ``.asyncio``,
``.trio``) re-export the classes.

The ``poplib`` compatibility classes raise :class:`error_proto` instead, the
one exception of that interface, defined here too so that every exception a
client raises has one home.
"""

from __future__ import annotations

import pop3proto

# Not typing.TYPE_CHECKING: the drop-in's import must not pay for typing
# (type checkers treat any name TYPE_CHECKING as true).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

__all__ = [
    "POP3Error",
    "AuthenticationFailed",
    "MailboxInUse",
    "LoginDelay",
    "TemporaryFailure",
    "PermanentFailure",
    "CommandFailed",
    "InsecureAuthenticationRefused",
    "TLSUnavailable",
    "ConnectionLost",
    "ProtocolViolation",
    "raise_for_err",
    "error_proto",
]


class POP3Error(Exception):
    """Base class of every error the modern POP3 clients raise.

    Attributes:
        response: the server's :class:`pop3proto.Err` reply when the error
            comes from a ``-ERR``, else ``None``.
        command: what was being done, e.g. ``"RETR 3"`` or ``"login"``
            (never a password), or ``None``.
    """

    def __init__(
        self,
        message: str,
        *,
        response: pop3proto.Err | None = None,
        command: str | None = None,
    ) -> None:
        super().__init__(message)
        self.response = response
        self.command = command

    def __reduce__(self) -> tuple[object, ...]:
        # Exception's default pickling calls cls(*args), which loses the
        # keyword-only fields (and fails for ProtocolViolation's required
        # ``error``): rebuild from the message and restore every attribute.
        return (_restore, (type(self), self.args), self.__dict__)

    @property
    def code(self) -> pop3proto.ResponseCode | None:
        """The extended response code of :attr:`response` (``None`` if absent)."""
        return None if self.response is None else self.response.code

    @property
    def text(self) -> str | None:
        """The human-readable text of :attr:`response`, without its code."""
        return None if self.response is None else self.response.text


def _restore(cls: type[POP3Error], args: tuple[object, ...]) -> POP3Error:
    """Unpickle a :class:`POP3Error` without calling its ``__init__``."""
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    return error


class AuthenticationFailed(POP3Error):
    """The server rejected the credentials (``[AUTH]`` or a login ``-ERR``).

    Also raised when a SASL exchange cannot be completed safely (e.g. a
    SCRAM server that fails to prove it knows the password), and when the
    server closes the connection after a failed login (RFC 1939 §4 allows it).
    """


class MailboxInUse(POP3Error):
    """``-ERR [IN-USE]``: the credentials were fine but the maildrop is locked
    by another session; retry later without re-prompting (RFC 2449 §8.1.2)."""


class LoginDelay(POP3Error):
    """``-ERR [LOGIN-DELAY]``: logged in too recently; wait before the next
    attempt (RFC 2449 §8.1.1; the CAPA ``LOGIN-DELAY`` value says how long)."""


class TemporaryFailure(POP3Error):
    """``-ERR [SYS/TEMP]``: a temporary server problem; retry later (RFC 3206 §4)."""


class PermanentFailure(POP3Error):
    """``-ERR [SYS/PERM]``: a server problem that needs intervention (RFC 3206 §4)."""


class CommandFailed(POP3Error):
    """Any other ``-ERR`` reply (e.g. a message number that does not exist)."""


class InsecureAuthenticationRefused(POP3Error):
    """Logging in would expose the password on an unencrypted link.

    Raised *before* anything is sent.  Use TLS (the default), connect to a
    loopback address, or pass ``allow_insecure=True`` if you accept the risk
    (RFC 2595 §2.3, RFC 8314 §5).
    """


class TLSUnavailable(POP3Error):
    """TLS was required (``tls="starttls"``) but the server does not advertise
    STLS or answered it with ``-ERR`` (RFC 2595 §4).  Nothing secret was sent."""


class ConnectionLost(POP3Error):
    """The server closed the connection while a reply was still owed.

    Attributes:
        outcome_unknown: ``True`` when QUIT was sent from TRANSACTION and the
            connection closed before its reply: the server may or may not
            have removed the messages marked deleted (RFC 1939 §6).
    """

    def __init__(
        self,
        message: str,
        *,
        outcome_unknown: bool = False,
        response: pop3proto.Err | None = None,
        command: str | None = None,
    ) -> None:
        super().__init__(message, response=response, command=command)
        self.outcome_unknown = outcome_unknown


class ProtocolViolation(POP3Error):
    """The protocol was broken, usually by the server.

    Attributes:
        error: the underlying :class:`pop3proto.ProtocolError` (a
            :class:`pop3proto.RemoteProtocolError` when the server sent
            something invalid, a :class:`pop3proto.LocalProtocolError` when
            the connection was used in a way the protocol forbids).  It is
            also the exception's ``__cause__``.

    When the server broke the protocol the connection is in the ERROR state
    and cannot be used further: close it.  An operation refused *before*
    sending because the session is in the wrong state (``stat()`` before
    logging in) leaves the connection usable.
    """

    def __init__(
        self, message: str, *, error: pop3proto.ProtocolError, command: str | None = None
    ) -> None:
        super().__init__(message, command=command)
        self.error = error


def raise_for_err(err: pop3proto.Err, command: str, *, login: bool = False) -> NoReturn:
    """Raise the exception of this module for a ``-ERR`` reply to *command*.

    The extended response code decides (RFC 2449 §8: unknown lower levels are
    ignored, so ``[SYS/TEMP/X]`` is ``[SYS/TEMP]``): ``IN-USE`` ->
    :class:`MailboxInUse`, ``LOGIN-DELAY`` -> :class:`LoginDelay`,
    ``SYS/TEMP`` -> :class:`TemporaryFailure`, ``SYS/PERM`` ->
    :class:`PermanentFailure`, ``AUTH`` -> :class:`AuthenticationFailed`.
    Without one of those, a reply to a login command (*login* true) is an
    :class:`AuthenticationFailed` and anything else a :class:`CommandFailed`.

    *command* names what failed in the message (``"RETR 3"``, ``"PASS"``);
    it must not contain secrets.
    """
    known = err.code.known if err.code is not None else None
    cls: type[POP3Error]
    if known == "IN-USE":
        cls = MailboxInUse
    elif known == "LOGIN-DELAY":
        cls = LoginDelay
    elif known == "SYS/TEMP":
        cls = TemporaryFailure
    elif known == "SYS/PERM":
        cls = PermanentFailure
    elif known == "AUTH" or login:
        cls = AuthenticationFailed
    else:
        cls = CommandFailed
    code = f"[{err.code}] " if err.code is not None else ""
    raise cls(f"{command} failed: -ERR {code}{err.text}".rstrip(), response=err, command=command)


class error_proto(Exception):
    """The one exception of the ``poplib`` interface.

    ``args[0]`` is the server's ``-ERR`` line (bytes, without CRLF) when the
    server refused a command, or a ``str`` describing a local or protocol
    problem (``"line too long"``, ``"-ERR EOF"``, ...).
    """

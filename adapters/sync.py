"""Blocking-socket POP3 clients: a drop-in ``poplib`` and a modern :class:`Client`.

Drop-in for the standard library
--------------------------------
``import pop3proto.adapters.sync as poplib`` is the whole migration:
:class:`POP3`, :class:`POP3_SSL`, :class:`error_proto`, ``POP3_PORT``,
``POP3_SSL_PORT``, ``CR``, ``LF``, ``CRLF``, ``_MAXLINE`` and ``__all__``
behave as the running Python's ``poplib``: what is sent (the command the
caller asks for, ``retr("foo")`` included: the server decides), what is
accepted (any status line starting with ``+``; APOP with any ``<...>``
greeting timestamp), return values, exceptions, the private plumbing
(``_putline``, ``_getresp``, ``_longcmd``, ...) and the signatures of each
Python version (``POP3_SSL(host, port, keyfile, certfile, ...)`` on 3.10
and 3.11, ``POP3_SSL(host, port, *, timeout, context)`` from 3.12).  A
reply that does not fit a command's grammar is returned as ``poplib``
returns it, and the session goes on.  CPython's own ``test_poplib`` passes
with this module in place of ``poplib`` (``tests/cpython``).

The differences, all deliberate, refuse something unsafe:

* **CR, LF or NUL in a command** (``user("a\r\nDELE 1")``) raises
  :class:`error_proto` before anything is sent; ``poplib`` sends the rest
  as a second command (command injection through an argument).
* **Bytes received after ``+OK`` to STLS** and before the TLS handshake
  raise :class:`error_proto` (RFC 2595 §4 response injection), and nothing
  more is sent on that connection; ``poplib`` reads them later as if they
  had come over TLS.
* ``set_debuglevel()`` output and error messages mask the PASS argument,
  the APOP digest and SASL data (an AUTH initial response, and the line
  answering a ``+ `` challenge).
* A socket whose greeting fails is closed (``poplib`` leaks it).

Lines stay bounded by ``_MAXLINE`` as in ``poplib`` ("line too long").
One addition: ``auth(mechanism, authobject=None, initial_response=None)``
runs an RFC 5034 AUTH exchange (``poplib`` has no ``auth()``).

Multi-line replies are read in bulk (what the socket buffer holds, split
at C speed), with exactly ``poplib``'s results, so ``retr()`` costs less
than ``poplib``'s one Python loop per line.

As in ``poplib``, ``POP3_SSL`` and ``stls()`` without a *context* do **not**
verify the server certificate (``poplib`` uses an unverified context);
pass ``context=ssl.create_default_context()``.

The modern client
-----------------
:class:`Client` is a context manager with a timeout by default, TLS by
default, typed results and typed exceptions (:class:`POP3Error` and its
subclasses)::

    from pop3proto.adapters.sync import Client

    with Client("pop.example.org") as client:         # STLS on port 110
        client.login("alice", "secret")                # strongest method
        for number, message in client.retrieve_many(client.list()):
            ...

Its protocol logic is :class:`pop3proto.adapters.client._core.ClientCore`;
:class:`Client` only runs the core's operations over a blocking socket.

The blocking server is here too: :class:`Server` and :func:`serve`, with
the maildrop backends and authenticators a server is built from.

This module is the public face: the classes live in
:mod:`pop3proto.adapters.client` (``_poplib``, ``_sync``) and in the server
modules, and are re-exported here.
"""

from __future__ import annotations

import importlib
import sys
import types

from .client import _poplib
from .client._errors import error_proto as error_proto
from .client._options import POP3_PORT as POP3_PORT
from .client._options import POP3_SSL_PORT as POP3_SSL_PORT
from .client._poplib import _MAXLINE as _MAXLINE
from .client._poplib import CR as CR
from .client._poplib import CRLF as CRLF
from .client._poplib import HAVE_SSL as HAVE_SSL
from .client._poplib import LF as LF
from .client._poplib import POP3 as POP3
from .client._poplib import POP3_SSL as POP3_SSL

# Not typing.TYPE_CHECKING: the drop-in's import must not pay for typing
# (type checkers treat any name TYPE_CHECKING as true).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from .client._core import Listing as Listing
    from .client._core import MailboxStatus as MailboxStatus
    from .client._errors import AuthenticationFailed as AuthenticationFailed
    from .client._errors import CommandFailed as CommandFailed
    from .client._errors import ConnectionLost as ConnectionLost
    from .client._errors import InsecureAuthenticationRefused as InsecureAuthenticationRefused
    from .client._errors import LoginDelay as LoginDelay
    from .client._errors import MailboxInUse as MailboxInUse
    from .client._errors import PermanentFailure as PermanentFailure
    from .client._errors import POP3Error as POP3Error
    from .client._errors import ProtocolViolation as ProtocolViolation
    from .client._errors import TemporaryFailure as TemporaryFailure
    from .client._errors import TLSUnavailable as TLSUnavailable
    from .client._options import TLSMode as TLSMode
    from .client._sync import Client as Client
    from .mailstore._maildir import MaildirBackend as MaildirBackend
    from .mailstore._memory import MemoryBackend as MemoryBackend
    from .mailstore._users import DictAuthenticator as DictAuthenticator
    from .mailstore._users import UsersFile as UsersFile
    from .mailstore._users import hash_password as hash_password
    from .server._config import ServerConfig as ServerConfig
    from .server._sync import Server as Server
    from .server._sync import serve as serve

# The modern API, the server and the backends load on first use (PEP 562),
# so that the drop-in costs what poplib costs to import.  Type checkers see
# the imports above.
_LAZY: dict[str, str] = {
    "Listing": ".client._core",
    "MailboxStatus": ".client._core",
    "AuthenticationFailed": ".client._errors",
    "CommandFailed": ".client._errors",
    "ConnectionLost": ".client._errors",
    "InsecureAuthenticationRefused": ".client._errors",
    "LoginDelay": ".client._errors",
    "MailboxInUse": ".client._errors",
    "PermanentFailure": ".client._errors",
    "POP3Error": ".client._errors",
    "ProtocolViolation": ".client._errors",
    "TemporaryFailure": ".client._errors",
    "TLSUnavailable": ".client._errors",
    "TLSMode": ".client._options",
    "Client": ".client._sync",
    "MaildirBackend": ".mailstore._maildir",
    "MemoryBackend": ".mailstore._memory",
    "DictAuthenticator": ".mailstore._users",
    "UsersFile": ".mailstore._users",
    "hash_password": ".mailstore._users",
    "ServerConfig": ".server._config",
    "Server": ".server._sync",
    "serve": ".server._sync",
}

if not TYPE_CHECKING:

    def __getattr__(name: str) -> object:
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, __package__), name)
        globals()[name] = value  # later look-ups skip this function
        return value

    def __dir__() -> list[str]:
        return sorted(set(globals()) | set(_LAZY))


# Exactly the standard library's: ``from ... import *`` must bring what
# ``from poplib import *`` brings.  The modern API is imported by name.
__all__ = ["POP3", "error_proto", "POP3_SSL"]


class _PoplibFace(types.ModuleType):
    """This module's type: ``poplib._MAXLINE = 100_000`` must reach the
    classes, which read the limit at call time from their own module.

    A plain re-export would be a copy that the assignment replaces without
    effect, so ``_MAXLINE`` is a property of the module's type that reads and
    writes it there (a module may change its ``__class__`` to a subclass of
    :class:`types.ModuleType` for exactly this).
    """

    @property
    def _MAXLINE(self) -> int:
        return _poplib._MAXLINE

    @_MAXLINE.setter
    def _MAXLINE(self, value: int) -> None:
        _poplib._MAXLINE = value


sys.modules[__name__].__class__ = _PoplibFace

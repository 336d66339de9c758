"""Blocking-socket POP3 clients: a drop-in ``poplib`` and a modern :class:`Client`.

Drop-in for the standard library
--------------------------------
``import pop3proto.adapters.sync as poplib`` is the whole migration:
:class:`POP3`, :class:`POP3_SSL`, :class:`error_proto`, ``POP3_PORT``,
``POP3_SSL_PORT``, ``CR``, ``LF``, ``CRLF``, ``_MAXLINE`` and ``__all__``
behave as CPython's ``poplib`` documents them (3.12+ signatures: ``POP3_SSL``
and ``stls`` take only a ``context``).  Replies are parsed by the pop3proto
engine, which makes these differences, all deliberate:

* **Dot-unstuffing follows RFC 1939 §3**: one leading ``.`` is removed from
  *every* line that starts with one; ``poplib`` only unstuffs lines starting
  with ``..``, so a stuffed line ``..x`` is the same but a line ``.x`` from
  a server that forgot to stuff comes back as ``x`` here (and is counted
  one octet shorter).
* **Bugs become** :class:`error_proto` with a clear message instead of hangs,
  wrong answers or stray exceptions: CR/LF/NUL in an argument (``user("a\\r\\n
  DELE 1")`` is refused before anything is sent; ``poplib`` sends two
  commands), a ``+ `` continuation line or other garbage taken as ``+OK``,
  ``IndexError`` on a short STAT reply, EOF in the middle of a message body
  or listing.  ``capa()`` never raises on odd lines (blank lines are
  skipped, non-ASCII octets decoded with U+FFFD) where ``poplib`` raises
  ``IndexError`` or ``UnicodeDecodeError``; RFC 2449 §9 asks clients to
  ignore what they do not understand.
* **Commands are validated** before they are sent: arguments must be
  single tokens (``user("a b")`` raises), message numbers decimal, and a
  command not allowed in the current state (``stat()`` before logging in)
  raises :class:`error_proto` without being sent, where ``poplib`` would
  send it and raise on the server's ``-ERR``.  Non-ASCII user names and
  passwords need UTF8 mode or a server advertising ``UTF8 USER``
  (RFC 6856 §2.2).
* ``apop()`` reads the greeting timestamp strictly (exactly one ``<...@...>``,
  RFC 1939 §7), so a greeting with two ``<`` gives "APOP not supported".
* After ``+OK`` to STLS, bytes already received before the TLS handshake
  raise :class:`error_proto` (RFC 2595 §4 response injection); ``poplib``
  silently drops them.
* ``set_debuglevel()`` output masks the PASS argument, the APOP digest and
  SASL data (AUTH initial responses and continuation lines).
* A lone LF ends a line (as in ``poplib``), but a line starting with CR
  (``poplib``'s "LF CR" ending) keeps its CR.
* The private helpers keep the session in step where ``poplib`` loses it:
  ``_longcmd`` on a command with a one-line reply returns
  ``(resp, [], 0)`` instead of waiting forever, the unread lines of a
  multi-line reply fetched with ``_shortcmd("LIST")`` are skipped by the
  next read instead of being returned as replies, and ``_putline`` called
  directly is parsed like ``_putcmd``.  While an ``AUTH`` started with
  ``_shortcmd`` awaits an answer, the next line sent is the base64 answer
  (or ``*``), as RFC 5034 §4 has it.
* ``auth()`` (newer CPython) is available on every Python version.

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

import sys
import types

from .client import _poplib
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
from .client._errors import error_proto as error_proto
from .client._options import POP3_PORT as POP3_PORT
from .client._options import POP3_SSL_PORT as POP3_SSL_PORT
from .client._options import TLSMode as TLSMode
from .client._poplib import _MAXLINE as _MAXLINE
from .client._poplib import CR as CR
from .client._poplib import CRLF as CRLF
from .client._poplib import HAVE_SSL as HAVE_SSL
from .client._poplib import LF as LF
from .client._poplib import POP3 as POP3
from .client._poplib import POP3_SSL as POP3_SSL
from .client._sync import Client as Client
from .mailstore._maildir import MaildirBackend as MaildirBackend
from .mailstore._memory import MemoryBackend as MemoryBackend
from .mailstore._users import DictAuthenticator as DictAuthenticator
from .mailstore._users import UsersFile as UsersFile
from .mailstore._users import hash_password as hash_password
from .server._config import ServerConfig as ServerConfig
from .server._sync import Server as Server
from .server._sync import serve as serve

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

"""The POP3 server as a framework: what an application builds a server from.

This is the public API for writing a server of one's own: a maildrop
backend (where mail lives), an authenticator (who may log in), and, for
those who bring their own I/O, the I/O-free session.  The ready servers
are :class:`pop3proto.adapters.sync.Server`, ``.asyncio.Server`` and
``.trio.Server``; each takes a backend and an authenticator from here.

What an application implements:

* :class:`MaildropBackend` (or :class:`AsyncMaildropBackend`): ``open()``
  returns a locked :class:`Maildrop` for an :class:`Identity`, or raises
  :class:`MaildropInUse` (``-ERR [IN-USE]``) or :class:`MaildropError`
  (``-ERR [SYS/TEMP]``).  See :class:`Maildrop` for the rest, and for which
  method runs where (a worker thread or the event loop).
* :class:`Authenticator`: says which credentials it can verify
  (:meth:`Authenticator.credentials`; the server offers exactly the login
  methods these allow) and checks them; a failed check is answered
  ``-ERR [AUTH]``.  ``check_password`` may return an :class:`Identity`
  to map a login to a mailbox.

What it may reuse: :class:`MaildirBackend`, :class:`MemoryBackend`,
:class:`UsersFile`, :class:`DictAuthenticator` and :func:`hash_password`.

Bringing one's own I/O: :class:`ServerSession` takes bytes
(:meth:`~ServerSession.receive`) and yields actions (:class:`Send`,
:class:`StartTLS`, :class:`Close`, :class:`Sleep` (hold a failed
login's answer that long, without holding up other connections), and
with ``offload=True`` :class:`Call`, answered with a :class:`CallResult`);
sessions of one server share one :class:`AuthPenalties`, the record of
failed logins (SECURITY.md "Authentication failures"); :class:`ServerConfig`
holds the settings (with ``commands``: :class:`ExtensionCommand`, how the
application answers commands the session does not know, such as a vendor
``XOIP``, with CAPA entries to match), :class:`SessionStats` and
:class:`EndReason` what a session did.

Inside, by role (private modules): ``_session`` (the session, with
``_authorization``, ``_opening`` and ``_transaction``), ``_penalties`` (what a failed
login costs), ``_config``, ``_base`` (the
options every server takes), ``_loop`` (the one loop that serves a
connection), ``_admission`` (who gets a connection slot, and the
deadlines), and the runtimes ``_sync``, ``_asyncio``, ``_trio``.
"""

from __future__ import annotations

from .._seam import Call, CallResult, Close, Send, Sleep, StartTLS
from ..mailstore._base import (
    AsyncMaildropBackend,
    Identity,
    Maildrop,
    MaildropBackend,
    MaildropError,
    MaildropInUse,
    MessageInfo,
)
from ..mailstore._maildir import MaildirBackend
from ..mailstore._memory import MemoryBackend
from ..mailstore._users import Authenticator, DictAuthenticator, UsersFile, hash_password
from ._config import (
    AUTHENTICATOR_CREDENTIALS,
    SUPPORTED_MECHANISMS,
    EndReason,
    ExtensionCommand,
    ExtensionReply,
    ServerConfig,
    SessionStats,
)
from ._penalties import AuthPenalties
from ._session import Action, ServerSession

__all__ = [
    # what an application implements
    "MaildropBackend",
    "AsyncMaildropBackend",
    "Maildrop",
    "MessageInfo",
    "Identity",
    "MaildropError",
    "MaildropInUse",
    "Authenticator",
    "AUTHENTICATOR_CREDENTIALS",
    # ready implementations
    "MaildirBackend",
    "MemoryBackend",
    "UsersFile",
    "DictAuthenticator",
    "hash_password",
    # the I/O-free session
    "ServerSession",
    "ServerConfig",
    "SessionStats",
    "EndReason",
    "ExtensionCommand",
    "ExtensionReply",
    "SUPPORTED_MECHANISMS",
    "Action",
    "Send",
    "StartTLS",
    "Close",
    "Call",
    "CallResult",
    "Sleep",
    "AuthPenalties",
]

# help() and tracebacks name the public home of what a user implements or
# catches, not the private module it is defined in.
for _name in (
    "MaildropBackend",
    "AsyncMaildropBackend",
    "Maildrop",
    "MessageInfo",
    "Identity",
    "MaildropError",
    "MaildropInUse",
    "Authenticator",
    "ServerSession",
    "ServerConfig",
    "SessionStats",
    "EndReason",
    "ExtensionCommand",
    "Call",
    "CallResult",
    "Sleep",
    "AuthPenalties",
):
    globals()[_name].__module__ = __name__
del _name

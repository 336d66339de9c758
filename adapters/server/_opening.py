"""How a login's maildrop is opened: on the loop when that is quick, else
where blocking is fine.

After a good login the session opens and lists the user's maildrop
(RFC 1939 §4: the messages are numbered as of that moment).  Three ways:

* :func:`open_listed`, ``backend.open()`` then ``messages()`` in one call,
  made where blocking is fine: the blocking server's connection thread,
  or a worker thread of the event-loop servers (with the login check in
  the same call, so that a login is one trip to a thread, not three);
* :func:`try_open_listed`, the backend's optional ``try_open()``, made on
  the loop after a quick login check: the maildrop if opening it was
  quick, or ``None`` and the session falls back to :func:`open_listed`;
* a backend whose ``open`` is a coroutine function is awaited by the
  session's runtime instead (``messages`` too, if it is one).

Each returns an :data:`Opened`: the maildrop and its messages, or the
``-ERR`` to answer (``[IN-USE]`` when another session holds the lock,
RFC 2449 §8.1.2; ``[SYS/TEMP]`` for any other failure, RFC 3206 §4).
"""

from __future__ import annotations

import inspect
import logging

import pop3proto
from pop3proto import Err

from ..mailstore._base import (
    Identity,
    Maildrop,
    MaildropBackend,
    MaildropError,
    MaildropInUse,
    MessageInfo,
)

__all__ = [
    "Opened",
    "UNABLE_TO_OPEN",
    "open_failed",
    "discard_opened",
    "try_open_listed",
    "open_listed",
    "listed",
]

log = logging.getLogger("pop3proto.server")

#: An opened maildrop and its messages (``None``: not listed yet, because
#: ``messages`` is a coroutine function), or the refusal to send.
Opened = tuple[Maildrop, list[MessageInfo] | None] | Err

UNABLE_TO_OPEN = Err("unable to open maildrop", pop3proto.SYS_TEMP)


def open_failed(user: Identity, exc: Exception) -> Err:
    """The answer when ``open()`` raised *exc*."""
    if isinstance(exc, MaildropInUse):
        # RFC 2449 §8.1.2: credentials fine, maildrop busy.
        return Err("maildrop already locked", pop3proto.IN_USE)
    if isinstance(exc, (MaildropError, OSError)):
        log.error("cannot open the maildrop of %s: %s", user, exc)
    else:
        # A bug in the backend: still the server's problem, not the user's.
        log.error("the backend failed to open the maildrop of %s", user, exc_info=exc)
    return UNABLE_TO_OPEN


def discard_opened(opened: Opened | None) -> None:
    """An opening whose session was abandoned: close the maildrop."""
    if opened is not None and not isinstance(opened, Err):
        opened[0].close()


def try_open_listed(backend: MaildropBackend, user: Identity) -> Opened | None:
    """Open and list *user*'s maildrop if the backend can do it quickly
    (its optional ``try_open``, made on the loop), else ``None``: the
    session then opens it with :func:`open_listed` in a worker thread."""
    try_open = getattr(backend, "try_open", None)
    if try_open is None:
        return None
    try:
        maildrop = try_open(user)
    except Exception as exc:
        return open_failed(user, exc)
    if maildrop is None:
        return None
    return listed(maildrop, user)


def open_listed(backend: MaildropBackend, user: Identity) -> Opened:
    """Open and list *user*'s maildrop in one call (made where blocking is
    fine: the connection's thread, or a worker thread)."""
    try:
        maildrop = backend.open(user)
    except Exception as exc:
        return open_failed(user, exc)
    return listed(maildrop, user)


def listed(maildrop: Maildrop, user: Identity) -> Opened:
    """*maildrop* with its messages, listed here unless ``messages`` is a
    coroutine function; closed again if listing fails."""
    if inspect.iscoroutinefunction(maildrop.messages):
        return maildrop, None  # awaited by the session's runtime
    try:
        return maildrop, list(maildrop.messages())
    except Exception:
        log.exception("cannot list the maildrop of %s", user)
        maildrop.close()
        return UNABLE_TO_OPEN

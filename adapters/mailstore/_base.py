"""The maildrop model: what a POP3 session sees of a user's mail.

A POP3 session sees a *maildrop*: a snapshot of messages taken when the
session authenticates (RFC 1939 §4 numbers them 1..n at that moment), each
with a size and a unique-id, that can be streamed out and, at the end of a
successful session, have some of its messages removed (the UPDATE state,
RFC 1939 §6).  Two small protocols describe that:

* :class:`Maildrop`: one opened, locked maildrop.  Messages are addressed by
  their **0-based index** in :meth:`Maildrop.messages` (the session adds 1
  for the POP3 message number).
* :class:`MaildropBackend`: ``open(user)`` returns a locked
  :class:`Maildrop`, or raises :class:`MaildropInUse` when another session
  (in this process or another one) holds it.

Message octets are always served with CRLF line endings, and the size
reported is the number of octets actually streamed (RFC 1939 §11: a store
that keeps LF-only text counts each LF as two octets).  A stored message
that does not end with a line end is served with a CRLF appended (the
server must end the content with CRLF before the terminating ".",
CONFORMANCE.md §3.3), and that CRLF is counted, so that a LIST size always equals what RETR
delivers (RFC 6856 §2.1).  :mod:`._crlf` does that conversion for every
backend.

The backends: :class:`~._maildir.MaildirBackend` (a Maildir on disk) and
:class:`~._memory.MemoryBackend` (in memory, for tests and embedding).

Where each method runs (what a backend may assume):

* The blocking server calls every method from the connection's own
  thread.  One connection thread runs at a time (a run token, which the
  thread gives up while it waits for its client and while it makes the
  calls listed below as made in a worker thread), so what runs on the
  loop of the other servers should be quick there too.
* The asyncio and trio servers call :meth:`MaildropBackend.open`,
  :meth:`Maildrop.messages` and :meth:`Maildrop.commit` in a worker thread
  of a bounded pool (``Server(worker_threads=...)``), never on the event
  loop, one call at a time per session; or, when the method is a coroutine
  function (``async def``, see :class:`AsyncMaildropBackend`), they await it
  on the loop instead.  :meth:`Maildrop.open_message`, :meth:`Maildrop.top`
  (each step of their iterators reads one chunk) and :meth:`Maildrop.close`
  run on the loop: keep them quick (a local read, a lock release).
* A backend used by an event-loop server must therefore be thread-safe
  across sessions (two sessions' calls may run at once in two threads).
* A backend may also define ``try_open(user) -> Maildrop | None`` (see
  :class:`MaildropBackend`): an opening that is quick when it can be,
  made on the loop; ``None`` sends the login to :meth:`MaildropBackend.open`
  in a worker thread as usual.

Which exception means what (the session's answer):

* :class:`MaildropInUse` from ``open()``: ``-ERR [IN-USE]`` (RFC 2449
  §8.1.2); the client may retry later, its credentials were fine.
* :class:`MaildropError` or :class:`OSError` from ``open()`` or
  ``messages()``: ``-ERR [SYS/TEMP]`` (RFC 3206 §4), logged.
* ``commit()`` returning ``False`` or raising: ``-ERR [SYS/TEMP] some
  deleted messages not removed`` (RFC 1939 §6).
* An exception while streaming a message: the connection is dropped
  (half a body is already on the wire), nothing is committed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterator, Sequence
from collections.abc import Set as AbstractSet
from typing import NamedTuple, Protocol, runtime_checkable

__all__ = [
    "Identity",
    "AsyncMaildropBackend",
    "MaildropError",
    "MaildropInUse",
    "MessageInfo",
    "Maildrop",
    "MaildropBackend",
    "DEFAULT_CHUNK",
    "check_chunk_size",
]

#: How many octets a backend reads or serves at a time, by default.
DEFAULT_CHUNK = 65536


class MaildropError(Exception):
    """The maildrop cannot be opened or used (a system problem: the session
    answers ``-ERR [SYS/TEMP]``)."""


class MaildropInUse(MaildropError):
    """Another session holds the maildrop's lock (``-ERR [IN-USE]``,
    RFC 2449 §8.1.2)."""


class Identity(str):
    """Who logged in: what the server hands to :meth:`MaildropBackend.open`.

    It *is* the mailbox key (a ``str``), so a backend that only needs a
    name uses it as one; it also carries how the user logged in:

    Attributes:
        mailbox: the mailbox key (the string itself).
        login: the name the client authenticated as (the USER name, the
            SASL authentication identity).
        authzid: the authorization identity the client asked for (SASL
            PLAIN, RFC 4616 §2), ``""`` if none.

    An authenticator maps a login to a mailbox by returning an
    ``Identity`` from ``check_password`` (see
    :class:`~._users.Authenticator`); otherwise the mailbox is the
    authenticated name.
    """

    login: str
    authzid: str

    def __new__(cls, mailbox: str, *, login: str | None = None, authzid: str = "") -> Identity:
        """*mailbox*, logged in as *login* (default: *mailbox*)."""
        if not mailbox:
            raise ValueError("the mailbox key must not be empty")
        self = super().__new__(cls, mailbox)
        self.login = mailbox if login is None else login
        self.authzid = authzid
        return self

    @property
    def mailbox(self) -> str:
        """The mailbox key, as a plain ``str``."""
        return str.__str__(self)

    def __repr__(self) -> str:
        return f"Identity({self.mailbox!r}, login={self.login!r}, authzid={self.authzid!r})"


class MessageInfo(NamedTuple):
    """What the session needs to know about one message without reading it.

    Fields:
        size: the exact number of octets the message streams as (CRLF line
            endings, before dot-stuffing; RFC 1939 §11).
        uid: its unique-id: 1-70 characters in 0x21-0x7E, stable across
            sessions and never reused for another message (RFC 1939 §7).
    """

    size: int
    uid: str


@runtime_checkable
class Maildrop(Protocol):
    """One opened (and locked) maildrop; see the module docstring.

    Message indexes are 0-based positions in :meth:`messages`.  Every method
    may raise :class:`OSError` on an I/O failure.
    """

    def messages(self) -> Sequence[MessageInfo]:
        """The messages as of the moment the maildrop was opened, in order.

        The list never changes during the session: mail delivered meanwhile
        shows up in the next session, and deletions only happen in
        :meth:`commit`.
        """
        ...

    def open_message(self, index: int) -> Iterator[bytes]:
        """Stream message *index* as chunks of CRLF-terminated octets.

        The chunks, concatenated, are exactly ``messages()[index].size``
        octets.  Closing the iterator early (``.close()`` on a generator)
        releases whatever it holds open.
        """
        ...

    def top(self, index: int, lines: int) -> Iterator[bytes]:
        """Stream the header of message *index*, the blank line after it and
        the first *lines* lines of its body (RFC 1939 §7 TOP)."""
        ...

    def commit(self, deleted: AbstractSet[int]) -> bool:
        """Remove the messages at the *deleted* indexes (the UPDATE state).

        Returns ``False`` if some could not be removed (the session then
        answers ``-ERR [SYS/TEMP] some deleted messages not removed``,
        RFC 1939 §6).  Messages not listed are never touched.
        """
        ...

    def close(self) -> None:
        """Release the lock.  Idempotent; nothing is removed."""
        ...


@runtime_checkable
class MaildropBackend(Protocol):
    """Opens users' maildrops."""

    def open(self, user: str) -> Maildrop:
        """Open and lock the maildrop of *user*, an :class:`Identity` (a
        ``str``: the mailbox key).

        Raises :class:`MaildropInUse` if it is locked by another session and
        :class:`MaildropError` if it cannot be opened.  Called in a worker
        thread by the event-loop servers (see the module docstring).

        A backend may add an optional ``try_open(user) -> Maildrop | None``
        for the logins it can open quickly: no more than a few system calls
        on local files and no waiting (a cached listing, a lock taken
        without blocking).  It returns the opened maildrop, whose
        ``messages()`` must then be quick too, or ``None`` when it would
        have to do more; it raises as :meth:`open` does.  When the
        authenticator checked the login on the loop (see
        ``Authenticator.quick_credentials``), the event-loop servers call
        ``try_open`` there too, and hand the login to :meth:`open` in a
        worker thread only if it returns ``None``: one hand-off to a thread
        fewer per session.  :class:`~._maildir.MaildirBackend` and
        :class:`~._memory.MemoryBackend` define it.
        """
        ...


@runtime_checkable
class AsyncMaildropBackend(Protocol):
    """A backend native to the event loop: ``open`` is a coroutine function.

    The asyncio and trio servers await it on the loop (no worker thread);
    the maildrop it returns may likewise define ``messages`` and ``commit``
    with ``async def``.  Write it for the server's library (asyncio or
    trio).  The blocking server refuses such a backend.
    """

    def open(self, user: str) -> Awaitable[Maildrop]:
        """As :meth:`MaildropBackend.open`, awaited on the loop."""
        ...


def check_chunk_size(chunk_size: int) -> int:
    """*chunk_size*, checked: a backend's ``chunk_size`` argument."""
    if chunk_size < 1:
        raise ValueError("chunk_size must be at least 1")
    return chunk_size

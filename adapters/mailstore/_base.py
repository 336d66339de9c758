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
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from collections.abc import Set as AbstractSet
from typing import NamedTuple, Protocol, runtime_checkable

__all__ = [
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
        """Open and lock the maildrop of *user* (an authenticated name).

        Raises :class:`MaildropInUse` if it is locked by another session and
        :class:`MaildropError` if it cannot be opened.
        """
        ...


def check_chunk_size(chunk_size: int) -> int:
    """*chunk_size*, checked: a backend's ``chunk_size`` argument."""
    if chunk_size < 1:
        raise ValueError("chunk_size must be at least 1")
    return chunk_size

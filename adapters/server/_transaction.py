"""The TRANSACTION and UPDATE states of a server session: one open maildrop.

:class:`Transaction` holds what RFC 1939 §5 describes once a user has
logged in: the maildrop as it was at that moment (message numbers are
fixed for the session: DELE never renumbers), the messages marked as
deleted and those retrieved in full (for ``EXPIRE 0``, RFC 2449 §6.7).  It
answers STAT, LIST, UIDL, DELE and RSET, streams RETR and TOP bodies out
of the maildrop, and at QUIT removes what was marked (UPDATE, §6).  The
session owns it from the login to the end and sends what it returns.

Bodies are streamed: the status line goes out with as much of the body as
fits in ``ServerConfig.chunk_size`` (a small message, terminator
included, is a single :class:`Send`), and each further chunk is read only
when the session's driver asks for the next action.  When the maildrop
fails in the middle of a body no ``-ERR`` can follow the ``+OK`` already
sent: :class:`MaildropFailed` tells the session to drop the connection.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence

import pop3proto
from pop3proto import (
    Connection,
    Dele,
    Err,
    Event,
    List,
    ListEntryOk,
    ListOk,
    MessageData,
    MessageEnd,
    MessageStart,
    Ok,
    Retr,
    Rset,
    Stat,
    StatOk,
    Top,
    Uidl,
    UidlEntryOk,
    UidlOk,
)

from .._seam import Send
from ..mailstore._base import Maildrop, MessageInfo
from ._config import SessionStats

__all__ = ["MaildropFailed", "Transaction"]

log = logging.getLogger("pop3proto.server")


class MaildropFailed(Exception):
    """The maildrop failed in the middle of a body (already logged): the
    session ends without UPDATE and drops the connection."""


class Transaction:
    """One user's open maildrop; see the module docstring.

    Args:
        maildrop: the opened, locked maildrop; closed by :meth:`release`.
        messages: its messages, as listed at login.
        conn: the session's engine connection, which frames the replies.
        stats: the session's statistics (octets sent, messages retrieved
            and deleted).
        chunk_size: the largest body piece per :class:`Send`.
    """

    def __init__(
        self,
        maildrop: Maildrop,
        messages: Sequence[MessageInfo],
        *,
        conn: Connection,
        stats: SessionStats,
        chunk_size: int,
    ) -> None:
        """See the class docstring."""
        self.maildrop = maildrop
        self._messages = messages
        self._conn = conn
        self._stats = stats
        self._chunk_size = chunk_size
        self._deleted: set[int] = set()
        self._retrieved: set[int] = set()

    def _reply(self, event: Event) -> Send:
        # As the session's own replies (it holds us: no reference back to
        # it, so that a finished session is freed at once, not by the GC).
        data = self._conn.send(event)
        self._stats.bytes_sent += len(data)
        return Send(data)

    def _totals(self) -> tuple[int, int]:
        sizes = [m.size for i, m in enumerate(self._messages) if i not in self._deleted]
        return len(sizes), sum(sizes)

    def summary(self) -> Ok:
        """``+OK maildrop has n messages (m octets)``: the answer to a
        login and to RSET."""
        count, size = self._totals()
        return Ok(f"maildrop has {count} messages ({size} octets)")

    def _lookup(self, number: int) -> tuple[int, Err | None]:
        """Message number -> 0-based index, or the -ERR to send.

        RFC 1939 §5: numbers are fixed for the session (DELE never
        renumbers), and a message marked deleted may not be referenced.
        """
        index = number - 1
        if not 0 <= index < len(self._messages):
            return index, Err("no such message")
        if index in self._deleted:
            return index, Err("message already deleted")
        return index, None

    # -- the commands (each returns the session's actions) -------------------

    def stat(self, event: Stat) -> Iterable[Send]:
        """STAT (RFC 1939 §5)."""
        count, size = self._totals()
        return (self._reply(StatOk(count, size)),)

    def list(self, event: List) -> Iterable[Send]:
        """LIST [msg] (RFC 1939 §5)."""
        if event.number is None:
            sizes = {i + 1: m.size for i, m in enumerate(self._messages) if i not in self._deleted}
            count, size = self._totals()
            return (self._reply(ListOk(sizes, f"{count} messages ({size} octets)")),)
        index, error = self._lookup(event.number)
        if error is not None:
            return (self._reply(error),)
        return (self._reply(ListEntryOk(event.number, self._messages[index].size)),)

    def uidl(self, event: Uidl) -> Iterable[Send]:
        """UIDL [msg] (RFC 1939 §7)."""
        if event.number is None:
            uids = {i + 1: m.uid for i, m in enumerate(self._messages) if i not in self._deleted}
            return (self._reply(UidlOk(uids)),)
        index, error = self._lookup(event.number)
        if error is not None:
            return (self._reply(error),)
        return (self._reply(UidlEntryOk(event.number, self._messages[index].uid)),)

    def dele(self, event: Dele) -> Iterable[Send]:
        """DELE msg (RFC 1939 §5)."""
        index, error = self._lookup(event.number)
        if error is not None:
            return (self._reply(error),)
        # Only marked: removal happens in UPDATE (RFC 1939 §6).
        self._deleted.add(index)
        return (self._reply(Ok(f"message {event.number} deleted")),)

    def rset(self, event: Rset) -> Iterable[Send]:
        """RSET (RFC 1939 §5): unmark every message marked as deleted."""
        self._deleted.clear()
        return (self._reply(self.summary()),)

    def retr(self, event: Retr) -> Iterator[Send]:
        """RETR msg (RFC 1939 §5): the whole message, streamed."""
        index = event.number - 1
        messages = self._messages
        if not 0 <= index < len(messages) or index in self._deleted:
            _, error = self._lookup(event.number)
            assert error is not None
            return iter((self._reply(error),))
        start = _retr_start(messages[index].size)
        return self._stream(self.maildrop.open_message, index, start, retrieval=True)

    def top(self, event: Top) -> Iterator[Send]:
        """TOP msg n (RFC 1939 §7): the header and n body lines, streamed."""
        index, error = self._lookup(event.number)
        if error is not None:
            return iter((self._reply(error),))
        maildrop = self.maildrop
        lines = event.lines
        return self._stream(
            lambda i: maildrop.top(i, lines), index, MessageStart("top of message follows")
        )

    def _stream(
        self,
        opener: Callable[[int], Iterator[bytes]],
        index: int,
        start: MessageStart,
        *,
        retrieval: bool = False,
    ) -> Generator[Send, None, None]:
        """Stream a body: -ERR if it cannot even start, else +OK, data, ".".

        The status line and as much of the body as fits in ``chunk_size``
        octets go out as one :class:`Send` (with the terminator too
        when the whole body fits: one action for a small message); a larger
        body continues in pieces of at most ``chunk_size``, each read only
        when the driver asks for the next action.  With *retrieval* (RETR),
        the message counts as retrieved once the driver asks for the
        action after the terminator.
        """
        chunks: Iterator[bytes] | None = None
        try:
            chunks = opener(index)
            chunk = next(chunks, None)
        except OSError as exc:
            log.error("cannot read a message: %s", exc)
            _close_iterator(chunks)
            yield self._reply(Err("unable to read message", pop3proto.SYS_TEMP))
            return
        send = self._conn.send
        stats = self._stats
        limit = self._chunk_size
        parts: list[bytes] = []
        try:
            head = send(start)
            parts.append(head)
            total = len(head)
            # Gather the status line and the leading chunks that fit.
            while chunk is not None and total + len(chunk) <= limit:
                data = send(MessageData(chunk if type(chunk) is bytes else bytes(chunk)))
                parts.append(data)
                total += len(data)
                chunk = next(chunks, None)
            if chunk is None:
                parts.append(send(_MESSAGE_END))
                data = b"".join(parts)
                stats.bytes_sent += len(data)
                yield Send(data)
                if retrieval:
                    self._retrieved.add(index)
                    stats.retrieved += 1
                return
            data = b"".join(parts) if len(parts) > 1 else head
            parts = []
            stats.bytes_sent += len(data)
            yield Send(data)
            while chunk is not None:
                for offset in range(0, len(chunk), limit):
                    # (A whole-bytes slice is the chunk itself, not a copy.)
                    piece = chunk[offset : offset + limit]
                    data = send(MessageData(piece if type(piece) is bytes else bytes(piece)))
                    stats.bytes_sent += len(data)
                    yield Send(data)
                chunk = next(chunks, None)
        except OSError as exc:
            # Half a body is on the wire and no -ERR can follow a +OK:
            # the only honest thing left is to drop the connection, without
            # UPDATE (after what was gathered, as if sent piece by piece).
            log.error("error while reading a message: %s", exc)
            if parts:
                data = b"".join(parts)
                stats.bytes_sent += len(data)
                yield Send(data)
            raise MaildropFailed from None
        finally:
            _close_iterator(chunks)
        yield self._reply(_MESSAGE_END)
        if retrieval:
            self._retrieved.add(index)
            stats.retrieved += 1

    # -- UPDATE ----------------------------------------------------------------

    def update(self, *, expire_retrieved: bool) -> Ok | Err:
        """QUIT in TRANSACTION: the UPDATE state (RFC 1939 §6).

        Removes what was marked (and, with *expire_retrieved*, i.e.
        ``EXPIRE 0``, what was retrieved) and returns the answer owed.
        The caller then releases the maildrop.
        """
        doomed = self.doomed(expire_retrieved=expire_retrieved)
        ok = True
        if doomed:
            try:
                ok = bool(self.maildrop.commit(doomed))
            except Exception:
                log.exception("commit failed for %s", self._stats.user)
                ok = False
        return self.updated(doomed, committed=ok)

    def doomed(self, *, expire_retrieved: bool) -> frozenset[int]:
        """The indexes UPDATE removes: those marked, and with
        *expire_retrieved* those retrieved (see :meth:`update`)."""
        doomed = set(self._deleted)
        if expire_retrieved:
            doomed |= self._retrieved
        return frozenset(doomed)

    def updated(self, doomed: frozenset[int], *, committed: bool) -> Ok | Err:
        """The answer to QUIT once *doomed* was committed, or not
        (RFC 1939 §6)."""
        if not committed:
            return Err("some deleted messages not removed", pop3proto.SYS_TEMP)
        self._stats.deleted = len(doomed)
        return Ok(f"bye ({len(doomed)} messages deleted)")

    def release(self) -> None:
        """Release the maildrop's lock, whatever the backend does."""
        try:
            self.maildrop.close()
        except Exception:  # the session must end whatever the backend does
            log.exception("error while releasing a maildrop")


_MESSAGE_END = MessageEnd()
# "+OK <size> octets" openers by size (events are immutable): a maildrop
# of similar messages builds each one once.
_RETR_STARTS: dict[int, MessageStart] = {}


def _retr_start(size: int) -> MessageStart:
    start = _RETR_STARTS.get(size)
    if start is None:
        if len(_RETR_STARTS) >= 4096:
            _RETR_STARTS.clear()
        start = _RETR_STARTS[size] = MessageStart(f"{size} octets")
    return start


def _close_iterator(chunks: Iterator[bytes] | None) -> None:
    close = getattr(chunks, "close", None)
    if close is not None:
        try:
            close()
        except Exception:
            log.exception("error while closing a message stream")

"""The I/O-free POP3 client shared by the blocking, asyncio and trio clients.

:class:`ClientCore` holds one client-role :class:`pop3proto.Connection` and
offers every client action as an *operation*: a generator that yields the
requests of :mod:`.._seam` (:class:`~.._seam.Send`, :class:`~.._seam.Receive`,
:class:`~.._seam.StartTLS`, :class:`~.._seam.Deliver`) and returns the typed
result.  What the client *does* (choosing a login method, refusing to leak a password,
pipelining a batch of RETRs within a window, mapping ``-ERR`` replies to
exceptions) is written once, in this module and the ones it builds on
(:mod:`._base`: session state and plumbing; :mod:`._login`: the login
strategy; :mod:`._batch`: the pipelined batch); an adapter only performs the
requests.

Writing a runner
----------------
A runner drives one operation to completion with its own I/O::

    def run(op, sink=None):
        try:
            request = op.send(None)
            while True:
                try:
                    answer = perform(request, sink)
                except BaseException as exc:
                    # Throw failures back in: the core then knows whether
                    # the session is still in step (a failed Send or
                    # StartTLS breaks it, a timed-out Receive or a failing
                    # sink does not).  Operations re-raise it.
                    request = op.throw(exc)
                    continue
                request = op.send(answer)
        except StopIteration as done:
            return done.value                  # the operation's result

    def perform(request, sink):
        if isinstance(request, Send):
            sock.sendall(request.data)
        elif isinstance(request, Receive):
            return sock.recv(65536)            # b"" at end of stream
        elif isinstance(request, StartTLS):
            sock = ctx.wrap_socket(sock, server_hostname=core.host)
        else:  # Deliver: message octets for the caller's sink
            sink(request.data)
        return None

An asyncio or trio runner is the same loop with ``await`` in ``perform``
(``writer.write`` + ``drain``, ``reader.read``, ``start_tls``; or
``send_all``, ``receive_some``, ``trio.SSLStream``).  Streaming operations
(:meth:`ClientCore.retrieve`, :meth:`ClientCore.top`,
:meth:`RetrieveBatch.next`) are the only ones that yield ``Deliver``.

The rules a runner must keep:

* Answer :class:`~.._seam.Receive` with the bytes read (any amount, at least
  one octet) or ``b""`` at end of stream, and every other request with
  ``None``.
* :class:`~.._seam.Send` means "write all of it"; commands are tiny and the
  core never has more than *window* of them unanswered, so a blocking write
  cannot deadlock against a server that is blocked writing replies
  (RFC 2449 §6.6).
* If performing a request raises (timeout, reset, cancellation, a sink that
  fails), throw the exception into the operation with ``op.throw(exc)``.
  If a runner abandons an operation instead, it should ``op.close()`` it;
  either way the core recovers: replies still owed are read and discarded
  by the next operation.
* Exceptions that operations raise are those of :mod:`._errors`, plus
  :class:`ValueError` / :class:`TypeError` for bad arguments (raised before
  anything is sent) and :class:`RuntimeError` for using the client while a
  :meth:`ClientCore.retrieve_many` batch is in flight.

Operations never run concurrently on one core: run one to completion (or
abandon it) before starting the next.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, replace

import pop3proto
from pop3proto import State

from .._seam import Operation
from ._base import MAX_WINDOW, check_number
from ._batch import RetrieveBatch
from ._errors import ConnectionLost, raise_for_err
from ._login import LoginOperations

__all__ = ["ClientCore", "Listing", "MailboxStatus"]


@dataclass(frozen=True, slots=True)
class MailboxStatus:
    """The reply to STAT (RFC 1939 §5): messages not marked deleted.

    Attributes:
        count: how many messages the maildrop holds.
        size: their total size in octets (as the server counts it; RFC
            6856 §2.1 lets it be approximate).
    """

    count: int
    size: int


@dataclass(frozen=True, slots=True)
class Listing:
    """What :meth:`ClientCore.listing` asked, in one round trip.

    Attributes:
        sizes: the LIST reply: message number -> size in octets.
        uids: the UIDL reply (message number -> unique-id), or ``None`` if
            it was not asked.
        status: the STAT reply, or ``None`` if it was not asked.
    """

    sizes: dict[int, int]
    uids: dict[int, str] | None = None
    status: MailboxStatus | None = None


class ClientCore(LoginOperations):
    """One POP3 client session, without I/O.

    Args:
        host: the server's name, used for the TLS ``server_hostname`` by
            runners and, unless *loopback* is given, to decide whether the
            link stays on this machine.
        tls: the transport is already TLS (implicit TLS, RFC 8314 §3).
        loopback: whether the peer is on a loopback address; ``None`` means
            :func:`is_loopback` of *host*.  Adapters that know the connected
            peer address should pass the verdict for that address.
        window: the default number of unanswered RETRs in
            :meth:`retrieve_many` when the server advertises PIPELINING.
        max_command_size: the longest command line sent (RFC 2449 §4: 255).

    Every ``-ERR`` that ends an operation is raised through
    :func:`raise_for_err`.  Operations check the session state before
    sending, so calling one at the wrong time raises
    :class:`ProtocolViolation` (wrapping a :class:`pop3proto.LocalProtocolError`)
    and leaves the session usable.
    """

    def stat(self) -> Operation[MailboxStatus]:
        """STAT (RFC 1939 §5): the count and total size of the messages."""
        event = yield from self._simple(pop3proto.Stat(), "STAT")
        assert isinstance(event, pop3proto.StatOk)
        return MailboxStatus(event.count, event.size)

    def list(self) -> Operation[dict[int, int]]:
        """LIST (RFC 1939 §5): message number -> size in octets."""
        event = yield from self._simple(pop3proto.List(), "LIST")
        assert isinstance(event, pop3proto.ListOk)
        self._sizes = dict(event.sizes)
        return dict(event.sizes)

    def listing(self, *, uids: bool = True, status: bool = False) -> Operation[Listing]:
        """LIST, and UIDL and STAT if asked, pipelined (RFC 2449 §6.6).

        With PIPELINING advertised the commands go out in one write and
        cost one round trip; otherwise one after the other.  Every reply is
        read before an error is raised (the first ``-ERR``, through
        :func:`raise_for_err`).  The sizes then count in
        :meth:`retrieve_many`'s window, as after :meth:`list`.
        """
        commands: list[pop3proto.Command] = [pop3proto.List()]
        if uids:
            commands.append(pop3proto.Uidl())
        if status:
            commands.append(pop3proto.Stat())
        yield from self._begin("LIST", command=commands[0])
        caps = yield from self.capabilities()
        replies: list[pop3proto.Event] = []
        if caps.pipelining:
            yield from self._send(*commands)
            for command in commands:
                replies.append((yield from self._reply(command.keyword)))
        else:
            for command in commands:
                yield from self._begin(command.keyword, command=command)
                yield from self._send(command)
                replies.append((yield from self._reply(command.keyword)))
        for command, reply in zip(commands, replies, strict=True):
            if isinstance(reply, pop3proto.Err):
                raise_for_err(reply, command.keyword)
        by_type = {type(reply): reply for reply in replies}
        sizes = by_type[pop3proto.ListOk]
        assert isinstance(sizes, pop3proto.ListOk)
        self._sizes = dict(sizes.sizes)
        result = Listing(dict(sizes.sizes))
        uid_reply = by_type.get(pop3proto.UidlOk)
        if isinstance(uid_reply, pop3proto.UidlOk):
            result = replace(result, uids=dict(uid_reply.uids))
        stat_reply = by_type.get(pop3proto.StatOk)
        if isinstance(stat_reply, pop3proto.StatOk):
            result = replace(result, status=MailboxStatus(stat_reply.count, stat_reply.size))
        return result

    def size(self, number: int) -> Operation[int]:
        """``LIST n``: the size of one message, in octets."""
        check_number(number, "message number")
        event = yield from self._simple(pop3proto.List(number), f"LIST {number}")
        assert isinstance(event, pop3proto.ListEntryOk)
        return event.size

    def uidl(self) -> Operation[dict[int, str]]:
        """UIDL (RFC 1939 §7): message number -> unique-id."""
        event = yield from self._simple(pop3proto.Uidl(), "UIDL")
        assert isinstance(event, pop3proto.UidlOk)
        return dict(event.uids)

    def uid(self, number: int) -> Operation[str]:
        """``UIDL n``: the unique-id of one message."""
        check_number(number, "message number")
        event = yield from self._simple(pop3proto.Uidl(number), f"UIDL {number}")
        assert isinstance(event, pop3proto.UidlEntryOk)
        return event.uid

    def retrieve(self, number: int) -> Operation[int]:
        """RETR (RFC 1939 §5): stream message *number* as :class:`Deliver`
        requests; return its size in octets.

        The octets are the message exactly as stored: dot-unstuffed, CRLF
        line ends, ending with the CRLF before the terminator.  Memory stays
        bounded by the receive size whatever the message size.
        """
        check_number(number, "message number")
        return (yield from self._body(pop3proto.Retr(number), f"RETR {number}"))

    def top(self, number: int, lines: int) -> Operation[int]:
        """``TOP n lines`` (RFC 1939 §7): stream the headers and the first
        *lines* body lines as :class:`Deliver` requests; return the octets."""
        check_number(number, "message number")
        check_number(lines, "line count", minimum=0)
        return (yield from self._body(pop3proto.Top(number, lines), f"TOP {number} {lines}"))

    def _body(self, command: pop3proto.Command, label: str) -> Operation[int]:
        event = yield from self._simple(command, label)
        assert isinstance(event, pop3proto.MessageStart)
        return (yield from self._stream(label))

    def retrieve_many(self, numbers: Iterable[int], *, window: int | None = None) -> RetrieveBatch:
        """Prepare a pipelined retrieval of *numbers*, in order.

        Returns a :class:`RetrieveBatch`; run ``batch.next()`` until it
        returns ``None``.  Nothing is sent until then.  With PIPELINING
        advertised (RFC 2449 §6.6) up to *window* (default: the core's
        :attr:`window`) RETRs are outstanding at once; otherwise one at a time.
        """
        return RetrieveBatch(self, numbers, self.window if window is None else window)

    def delete(self, number: int) -> Operation[None]:
        """DELE (RFC 1939 §5): mark a message deleted; removed only at
        :meth:`quit` (the UPDATE state)."""
        check_number(number, "message number")
        self._marked = True
        yield from self._simple(pop3proto.Dele(number), f"DELE {number}")

    def delete_many(self, numbers: Iterable[int], *, window: int | None = None) -> Operation[None]:
        """DELE each of *numbers*, pipelined like :meth:`retrieve_many`.

        Every reply is read; if any was ``-ERR`` the first one is raised
        once all are in (the others stay marked).
        """
        todo = [check_number(n, "message number") for n in numbers]
        if not todo:
            return
        yield from self._begin("DELE")
        caps = yield from self.capabilities()
        width = self.window if window is None else check_number(window, "window")
        width = min(width, MAX_WINDOW) if caps.pipelining else 1
        self._marked = True
        pending: deque[int] = deque()
        first_error: tuple[pop3proto.Err, int] | None = None
        index = 0
        while index < len(todo) or pending:
            if index < len(todo) and len(pending) <= width // 2:
                chunk = todo[index : index + width - len(pending)]
                index += len(chunk)
                yield from self._send(*(pop3proto.Dele(n) for n in chunk))
                pending.extend(chunk)
            number = pending[0]
            event = yield from self._reply(f"DELE {number}")
            pending.popleft()
            if isinstance(event, pop3proto.Err) and first_error is None:
                first_error = (event, number)
        if first_error is not None:
            raise_for_err(first_error[0], f"DELE {first_error[1]}")

    def reset(self) -> Operation[None]:
        """RSET (RFC 1939 §5): unmark every message marked deleted."""
        yield from self._simple(pop3proto.Rset(), "RSET")
        self._marked = False

    def noop(self) -> Operation[None]:
        """NOOP (RFC 1939 §5): keep the session alive."""
        yield from self._simple(pop3proto.Noop(), "NOOP")

    def utf8(self) -> Operation[None]:
        """UTF8 (RFC 6856 §2): switch to UTF-8 mode (AUTHORIZATION only;
        STLS is impossible afterwards)."""
        yield from self._simple(pop3proto.Utf8(), "UTF8")

    @property
    def marked(self) -> bool:
        """Whether a DELE was sent since login (or the last RSET): whether
        QUIT may have anything to commit (RFC 1939 §6)."""
        return self._marked

    def quit_without_reply(self) -> Operation[None]:
        """Send QUIT and do not wait for its reply.

        Only for a session that marked nothing deleted (:attr:`marked` is
        false; else :class:`RuntimeError`): the reply then has nothing to
        confirm, and closing at once saves a round trip.  Replies still
        owed to earlier commands are read first, as by :meth:`quit`, so
        the server reads QUIT before the end of the stream.  The runner
        closes the transport afterwards.
        """
        if self._marked:
            raise RuntimeError("messages are marked deleted: use quit() to learn the outcome")
        yield from self._begin("QUIT")
        yield from self._send(pop3proto.Quit())

    def quit(self) -> Operation[bool]:
        """QUIT (RFC 1939 §6); return whether deletions were committed.

        ``True`` when QUIT from TRANSACTION got ``+OK`` (the marked messages
        are gone); ``False`` from AUTHORIZATION (nothing to commit) or when
        the server answered ``-ERR`` ("some deleted messages not removed").
        If the connection closes before the reply, whether anything was
        removed is unknown: :class:`ConnectionLost` with
        ``outcome_unknown=True``.  An unfinished :meth:`retrieve_many` batch
        is abandoned (its remaining replies are read and dropped).
        """
        yield from self._begin("QUIT")
        from_transaction = self._conn.state is State.TRANSACTION
        yield from self._send(pop3proto.Quit())
        event = yield from self._event("QUIT")
        if isinstance(event, pop3proto.ConnectionClosed):
            if event.outcome_unknown:
                raise ConnectionLost(
                    "QUIT: the connection closed before the reply; whether the marked "
                    "messages were removed is unknown",
                    outcome_unknown=True,
                    command="QUIT",
                )
            return False
        return from_transaction and isinstance(event, pop3proto.Ok)

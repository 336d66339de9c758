"""Pipelined retrieval of many messages (RFC 2449 §6.6), without I/O.

:class:`RetrieveBatch` keeps a window of RETR commands in flight and streams
each reply as :class:`~.._seam.Deliver` requests, in order; its docstring
gives the flow control that keeps a blocking writer from deadlocking against
a server blocked writing replies.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

import pop3proto

from .._seam import Deliver, Operation
from ._base import ASSUMED_SIZE, MAX_WINDOW, WINDOW_BYTES, CoreBase, check_number
from ._errors import ConnectionLost, POP3Error, raise_for_err

__all__ = ["RetrieveBatch"]

# A message larger than this (by LIST) streams through RetrieveBatch.next()
# rather than being gathered whole in the receive buffer first.
_STREAM_ABOVE = 256 << 10


class RetrieveBatch:
    """A pipelined RETR of several messages (RFC 2449 §6.6), I/O-free.

    Made by :meth:`ClientCore.retrieve_many`.  Run :meth:`next` repeatedly:
    each run streams the next message's octets as :class:`Deliver` requests
    and returns its number, or returns ``None`` when every message is done.
    :attr:`current` is the number whose octets are being delivered.  Before
    each run a runner may call :meth:`take_buffered`, which returns a
    message whose reply has already been received, with no requests.

    Flow control: the window is counted in commands (*window*) and in
    octets (:data:`WINDOW_BYTES`, by the sizes of the last LIST, or
    :data:`ASSUMED_SIZE` per message when none was asked), so that a
    mailbox of small messages goes out in one burst and one of large
    messages stays bounded.  The first run sends what the window holds (at
    least one RETR) in one :class:`Send`; whenever no more than three
    quarters of either is outstanding, the batch tops it up, again in one
    write, and it does so before returning a message so that the server
    keeps sending while the caller works.  The client therefore never has more than *window* short
    commands unanswered: its writes always fit in the socket buffers, so it
    cannot block writing while the server blocks writing a reply the client
    has not read yet.  Without PIPELINING the window is 1 and nothing is
    sent ahead.

    Other operations may run between two :meth:`next` runs.  With RETRs in
    flight, their replies precede the new command's, so the core first
    reads them and keeps them in memory for the following runs (bounded by
    the window, but whole messages); to delete as you go without that cost,
    collect the numbers and use :meth:`ClientCore.delete_many` afterwards.

    A ``-ERR`` for one message is raised from that run (via
    :func:`raise_for_err`); the batch stays usable and the next run goes on
    with the next message.  Any other exception abandons the batch, as does
    :meth:`abandon`; the core then reads and discards the replies still
    owed before its next operation.
    """

    def __init__(self, core: CoreBase, numbers: Iterable[int], window: int) -> None:
        self._core = core
        self._numbers = [check_number(n, "message number") for n in numbers]
        self._requested = min(check_number(window, "window"), MAX_WINDOW)
        self._window = 1
        self._index = 0
        self._pending: deque[int] = deque()
        # The octets owed for _pending (by _size()).
        self._pending_bytes = 0
        # Replies read ahead by _settle(): (number, body or -ERR).
        self._ready: deque[tuple[int, bytes | pop3proto.Err]] = deque()
        # The first pieces of the reply to _pending[0] when take_buffered()
        # ran out of received data in its body (its +OK was taken).
        self._partial: list[bytes] | None = None
        self._started = False
        self._done = False
        self.abandoned = False
        self.current: int | None = None

    @property
    def numbers(self) -> tuple[int, ...]:
        """The message numbers, in the order they are retrieved."""
        return tuple(self._numbers)

    @property
    def window(self) -> int:
        """The effective window: the requested one with PIPELINING, else 1
        (meaningful once the first :meth:`next` has started)."""
        return self._window

    @property
    def outstanding(self) -> int:
        """How many RETRs are sent and not yet answered."""
        return len(self._pending)

    @property
    def in_flight(self) -> bool:
        """Whether replies are still owed to this batch."""
        return bool(self._pending)

    @property
    def done(self) -> bool:
        """Whether every message has been handled."""
        return self._done

    def abandon(self) -> None:
        """Give up on the rest of the batch; the core drains what is owed."""
        if not self._done:
            self.abandoned = True
            self._ready.clear()
            self._partial = None
            if self._core._batch is self:
                self._core._batch = None

    def next(self) -> Operation[int | None]:
        """Deliver the next message; return its number, or ``None`` at the end."""
        if self.abandoned:
            raise RuntimeError("this retrieve_many() batch was abandoned")
        if self._done:
            return None
        core = self._core
        try:
            if not self._started:
                yield from core._begin("RETR", batch=self)
                caps = yield from core.capabilities()
                self._window = self._requested if caps.pipelining else 1
                self._started = True
                core._batch = self
            if self._ready:
                number, item = self._ready.popleft()
                self.current = number
                self._check_finished()
                if isinstance(item, pop3proto.Err):
                    raise_for_err(item, f"RETR {number}")
                if item:
                    yield Deliver(item)
                return number
            if self._check_finished():
                return None
            if not self._pending:
                # Settle whatever an abandoned operation left unanswered
                # before pipelining after it.
                yield from core._begin("RETR", batch=self)
            if self._wants_more():
                yield from self._fill()
            number = self._pending[0]
            self.current = number
            label = f"RETR {number}"
            partial, self._partial = self._partial, None
            if partial is None:
                event = yield from core._reply(label)
                if isinstance(event, pop3proto.Err):
                    self._pop()
                    self._check_finished()
                    raise_for_err(event, label)
                assert isinstance(event, pop3proto.MessageStart)
            else:
                # take_buffered() took the +OK and these pieces.
                for piece in partial:
                    yield Deliver(piece)
            yield from core._stream(label)
            self._pop()
            if self._window > 1 and self._wants_more():
                # Keep the server busy while the caller handles this message.
                yield from self._fill()
            self._check_finished()
            return number
        except POP3Error as exc:
            if exc.response is None or isinstance(exc, ConnectionLost):
                self.abandon()
            raise
        except BaseException:
            self.abandon()
            raise

    def take_buffered(self) -> tuple[int, bytes] | None:
        """The next message, if what was already received holds its whole
        reply and no top-up is due; otherwise ``None``, and :meth:`next`
        (which reads and writes) must run.

        It does no I/O and runs no generator: with a full pipe most replies
        are in the receive buffer already, and a runner that asks here first
        saves the request round trips of :meth:`next` for them.  A ``-ERR``
        for the message raises as from :meth:`next`.  A reply cut short by
        the end of the received data is kept, for a later call (once the
        runner has :meth:`feed` more) or :meth:`next` to finish.
        """
        if not self._started or self.abandoned or self._core._batch is not self:
            return None
        ready = self._ready
        if ready:
            number, item = ready.popleft()
            self.current = number
            self._check_finished()
            if isinstance(item, pop3proto.Err):
                raise_for_err(item, f"RETR {number}")
            return number, item
        if not self._pending or self._wants_more():
            return None
        core = self._core
        # The engine's bulk short cut first: every whole reply received, in
        # one call, no event objects.  They may overshoot the top-up point
        # by what one read delivered; the top-up follows once they are
        # handed out, with a quarter of the window still in flight.
        partial, self._partial = self._partial, None
        bodies = core._conn.next_messages(len(self._pending)) if partial is None else None
        if bodies:
            taken = self._take(bodies)
            number, body = taken[0]
            ready.extend(taken[1:])
            self.current = number
            self._check_finished()
            return number, body
        next_event = core._conn.next_event
        number = self._pending[0]
        try:
            if partial is None:
                event = next_event()
                if event is pop3proto.NEED_DATA:
                    return None
                self.current = number
                if type(event) is not pop3proto.MessageStart:
                    label = f"RETR {number}"
                    event = core._accept(
                        event if isinstance(event, pop3proto.Event) else None, label
                    )
                    if isinstance(event, pop3proto.Err):
                        self._pop()
                        self._check_finished()
                        raise_for_err(event, label)
                    raise AssertionError(f"{label}: unexpected {event!r}")  # pragma: no cover
            # A reply cut short by the end of the data last time goes on.
            pieces: list[bytes] = partial if partial is not None else []
            while True:
                event = next_event()
                if type(event) is pop3proto.MessageData:
                    pieces.append(event.data)
                elif type(event) is pop3proto.MessageEnd:
                    break
                elif event is pop3proto.NEED_DATA:
                    self._partial = pieces
                    return None
                else:  # pragma: no cover - the engine sends nothing else in a body
                    raise AssertionError(f"RETR {number}: unexpected {event!r} in a body")
        except pop3proto.RemoteProtocolError as exc:
            self.abandon()
            raise core._broken(f"RETR {number}", exc) from exc
        except POP3Error as exc:
            # Only raise_for_err gets here in practice: EOF with RETRs
            # unanswered is a RemoteProtocolError (above), never the
            # ConnectionClosed that _accept turns into ConnectionLost.
            if exc.response is None or isinstance(exc, ConnectionLost):  # pragma: no cover
                self.abandon()
            raise
        except BaseException:  # pragma: no cover - as in next()
            self.abandon()
            raise
        self._pop()
        self._check_finished()
        return number, pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def take_all_buffered(self) -> list[tuple[int, bytes]]:
        """Every message :meth:`take_buffered` would return in a row, in
        order, as a list (empty where it would return ``None``): a runner
        that yields many small messages saves a call per message.

        It stops before a ``-ERR`` (the next :meth:`take_buffered` or
        :meth:`next` raises it) and where a top-up is due.
        """
        ready = self._ready
        err = pop3proto.Err
        if (
            not ready
            or type(ready[0][1]) is err
            or not self._started
            or self.abandoned
            or self._core._batch is not self
        ):
            # take_buffered() decides (and raises a -ERR at the head).
            first = self.take_buffered()
            if first is None:
                return []
            taken = [first]
        else:
            taken = []
        # The replies read ahead: hand out all up to the first -ERR.
        while ready and type(ready[0][1]) is not err:
            taken.append(ready.popleft())  # type: ignore[arg-type]
        self.current = taken[-1][0]
        self._check_finished()
        return taken

    def wants_bytes(self) -> bool:
        """Whether the runner should simply read and :meth:`feed` bytes
        before asking :meth:`take_buffered` again.

        True when the next reply is a small message (by LIST, or unknown)
        that has not all arrived, and nothing needs sending: the runner then
        saves the request round trips of :meth:`next`.  A large message
        streams through :meth:`next` instead, so that memory stays bounded
        by the window and nothing is scanned twice.
        """
        return (
            not self._ready
            and bool(self._pending)
            and self._started
            and not self.abandoned
            and self._core._batch is self
            and not self._core._eof
            and self._size(self._pending[0]) <= _STREAM_ABOVE
            and not self._wants_more()
        )

    def feed(self, data: bytes) -> None:
        """Bytes the runner read for this batch (``b""`` at end of stream)."""
        if not isinstance(data, bytes):
            raise TypeError("feed() takes the bytes read")
        core = self._core
        if not data:
            core._eof = True
        core._conn.receive_data(data)

    def _check_finished(self) -> bool:
        if self._pending or self._ready or self._index < len(self._numbers):
            return False
        self._done = True
        if self._core._batch is self:
            self._core._batch = None
        return True

    def _size(self, number: int) -> int:
        return self._core._sizes.get(number, ASSUMED_SIZE)

    def _pop(self) -> None:
        self._pending_bytes -= self._size(self._pending.popleft())

    def _take(self, bodies: list[bytes]) -> list[tuple[int, bytes]]:
        """Pair *bodies*, the replies to the oldest RETRs, with their
        numbers, and drop those from the RETRs in flight (what :meth:`_pop`
        does once per body, in bulk)."""
        pending = self._pending
        numbers = [pending.popleft() for _ in bodies]
        sizes = self._core._sizes
        self._pending_bytes -= sum(sizes.get(n, ASSUMED_SIZE) for n in numbers)
        return list(zip(numbers, bodies, strict=True))

    def _wants_more(self) -> bool:
        # Top up at three quarters, not half: on a slow link each top-up
        # costs a round trip before its replies flow, and the commands are
        # tiny, so a fuller pipe is nearly free.
        if self._index >= len(self._numbers):
            return False
        if self._window == 1:
            return not self._pending
        return (
            len(self._pending) <= self._window * 3 // 4
            and self._pending_bytes <= WINDOW_BYTES * 3 // 4
        )

    def _fill(self) -> Operation[None]:
        # Called only when _wants_more(): at least one RETR goes out.
        pending = self._pending
        numbers = self._numbers
        room = self._window - len(pending)
        owed = self._pending_bytes
        end = self._index
        sizes = self._core._sizes
        while end < len(numbers) and room > 0:
            size = sizes.get(numbers[end], ASSUMED_SIZE)
            if end > self._index and owed + size > WINDOW_BYTES:
                break
            owed += size
            room -= 1
            end += 1
        chunk = numbers[self._index : end]
        self._index = end
        yield from self._core._send(*(pop3proto.Retr(n) for n in chunk))
        pending.extend(chunk)
        self._pending_bytes = owed

    def _settle(self) -> Operation[None]:
        """Read every reply in flight and keep it for later runs."""
        core = self._core
        try:
            while self._pending:
                number = self._pending[0]
                label = f"RETR {number}"
                partial, self._partial = self._partial, None
                if partial is None:
                    event = yield from core._reply(label)
                    if isinstance(event, pop3proto.Err):
                        self._ready.append((number, event))
                        self._pop()
                        continue
                    assert isinstance(event, pop3proto.MessageStart)
                # take_buffered() may have taken the +OK and a first part.
                body = bytearray(b"".join(partial or ()))
                while True:
                    event = yield from core._reply(label)
                    if isinstance(event, pop3proto.MessageData):
                        body += event.data
                        continue
                    assert isinstance(event, pop3proto.MessageEnd), event
                    break
                self._ready.append((number, bytes(body)))
                self._pop()
        except BaseException:
            self.abandon()
            raise

"""Replaying a recorded byte stream into one role.

:func:`run_client_transcript` / :func:`run_server_transcript` replay a
recorded byte stream into one role, chunked at given offsets, answering as a
real peer would (the server with :func:`standard_reply`); the
split-invariance properties compare their results.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from pop3proto import (
    CLIENT,
    NEED_DATA,
    PAUSED,
    SERVER,
    Auth,
    BadCommand,
    Capa,
    CapaOk,
    Command,
    Connection,
    ConnectionClosed,
    Err,
    Event,
    Greeting,
    Lang,
    LangOk,
    List,
    ListEntryOk,
    ListOk,
    MessageData,
    MessageEnd,
    MessageStart,
    Ok,
    Pass,
    ProtocolError,
    Quit,
    Retr,
    SaslCancel,
    SaslChallenge,
    SaslResponse,
    Stat,
    State,
    StatOk,
    Stls,
    Top,
    Uidl,
    UidlEntryOk,
    UidlOk,
)

from .engine import DOVECOT_CAPABILITIES, DOVECOT_GREETING, chunks_at, normalize_data_events


@dataclass(frozen=True)
class TranscriptResult:
    """What one replay produced: the events (normalised), every byte the
    connection sent, the final state and the protocol error raised, if any."""

    events: list[Event]
    sent: bytes
    state: State
    error: type[ProtocolError] | None


_CLIENT_COMMAND_STATES = (State.AUTHORIZATION, State.USER_OK, State.TRANSACTION)


def _replay(
    conn: Connection,
    data: bytes,
    splits: Iterable[int],
    *,
    eof: bool,
    pump: Callable[[], None],
    closed: Callable[[], bool],
) -> type[ProtocolError] | None:
    """Feed *data* to *conn* cut at *splits* (then EOF if *eof*), calling *pump*
    first and after each chunk, until *closed*; return the ProtocolError raised."""
    try:
        pump()
        for chunk in chunks_at(data, splits):
            if closed():
                break
            conn.receive_data(chunk)
            pump()
        if eof and not closed():
            conn.receive_data(b"")
            pump()
    except ProtocolError as exc:
        return type(exc)
    return None


def run_client_transcript(
    steps: Sequence[Sequence[Event]],
    server_bytes: bytes,
    splits: Iterable[int] = (),
    *,
    eof: bool = True,
    **conn_kwargs: object,
) -> TranscriptResult:
    """Replay *server_bytes* into a fresh client, cut at *splits*.

    *steps* are what the client sends, in order: each is a batch of commands
    (sent together, so a batch of several is pipelining) sent as soon as the
    client is idle, or a single :class:`SaslResponse` / :class:`SaslCancel`
    sent when the client owes one.  With *eof* the stream ends with EOF.
    """
    conn = Connection(CLIENT, **conn_kwargs)  # type: ignore[arg-type]
    pending: deque[Sequence[Event]] = deque(steps)
    events: list[Event] = []
    sent = bytearray()
    closed = False

    def is_sasl(step: Sequence[Event]) -> bool:
        return isinstance(step[0], (SaslResponse, SaslCancel))

    def pump() -> None:
        nonlocal closed
        while not closed:
            if (
                pending
                and not is_sasl(pending[0])
                and not conn.outstanding
                and conn.state in _CLIENT_COMMAND_STATES
            ):
                for command in pending.popleft():
                    sent.extend(conn.send(command))
            event = conn.next_event()
            if event is NEED_DATA:
                return
            if event is PAUSED:
                if conn.state is State.SASL and pending and is_sasl(pending[0]):
                    for response in pending.popleft():
                        sent.extend(conn.send(response))
                    continue
                return
            assert isinstance(event, Event)
            events.append(event)
            closed = isinstance(event, ConnectionClosed)

    error = _replay(conn, server_bytes, splits, eof=eof, pump=pump, closed=lambda: closed)
    return TranscriptResult(normalize_data_events(events), bytes(sent), conn.state, error)


#: The message :func:`standard_reply` serves: dot lines first, in the middle
#: and last, an empty line, bare CR and LF, 8-bit octets.
STANDARD_BODY = (
    b".first line is a dot line\r\n"
    b"Subject: test\r\n"
    b"\r\n"
    b".\r\n"
    b"..\r\n"
    b"...\r\n"
    b".x\r\n"
    b"bare\rcr and bare\nlf \xff\xfe\r\n"
    b"."
)


def standard_reply(event: Event) -> list[Event]:
    """A deterministic, valid server reply to each received event."""
    if isinstance(event, (BadCommand, SaslCancel)):
        return [Err("[SYS/PERM] no" if isinstance(event, SaslCancel) else "unknown command")]
    if isinstance(event, Auth):
        return [SaslChallenge(b"")] if event.initial_response is None else [Ok("Logged in.")]
    if isinstance(event, SaslResponse):
        return [Ok("Logged in.")] if event.data else [SaslChallenge(b"more?")]
    if isinstance(event, Stat):
        return [StatOk(2, 1234)]
    if isinstance(event, List):
        if event.number is None:
            return [ListOk({1: 700, 2: 534}, "2 messages")]
        return [ListEntryOk(event.number, 700)]
    if isinstance(event, Uidl):
        if event.number is None:
            return [UidlOk({1: "000000015a3b1c2d", 2: "!~uid.with.dots~"})]
        return [UidlEntryOk(event.number, "000000015a3b1c2d")]
    if isinstance(event, (Retr, Top)):
        return [MessageStart("message follows"), MessageData(STANDARD_BODY), MessageEnd()]
    if isinstance(event, Capa):
        return [CapaOk(DOVECOT_CAPABILITIES)]
    if isinstance(event, Lang) and event.language is None:
        return [LangOk((("en", "English"), ("de", "Deutsch")), "Language listing follows:")]
    if isinstance(event, Pass):
        return [Err("[AUTH] Authentication failed.")] if event.password == "wrong" else [Ok()]
    if isinstance(event, (Quit, Stls)):
        return [Ok("Logging out." if isinstance(event, Quit) else "Begin TLS negotiation now.")]
    assert isinstance(event, Command), event
    return [Ok()]


def run_server_transcript(
    client_bytes: bytes,
    splits: Iterable[int] = (),
    *,
    greeting: Greeting = DOVECOT_GREETING,
    responder: Callable[[Event], Sequence[Event]] = standard_reply,
    eof: bool = True,
    **conn_kwargs: object,
) -> TranscriptResult:
    """Replay *client_bytes* into a fresh server, cut at *splits*; the server
    greets first and answers every event with *responder*."""
    conn = Connection(SERVER, **conn_kwargs)  # type: ignore[arg-type]
    assert conn.next_event() is PAUSED
    sent = bytearray(conn.send(greeting))
    events: list[Event] = []
    closed = False

    def pump() -> None:
        nonlocal closed
        while not closed:
            event = conn.next_event()
            if event is NEED_DATA or event is PAUSED:
                return
            assert isinstance(event, Event)
            events.append(event)
            if isinstance(event, ConnectionClosed):
                closed = True
                return
            for reply in responder(event):
                sent.extend(conn.send(reply))

    error = _replay(conn, client_bytes, splits, eof=eof, pump=pump, closed=lambda: closed)
    return TranscriptResult(events, bytes(sent), conn.state, error)

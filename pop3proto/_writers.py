"""Serializers: response events -> bytes on the wire.

:data:`WRITERS` has one writer per response event type, as h11 keys its
writers; the server role looks the event up there.  (Command lines are
formatted by the command table, :mod:`pop3proto._commands`.)  Field values
were validated when the events were built; what is checked here is what
depends on the session (line limits).  The connection checks state.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Final

from ._errors import LocalProtocolError
from ._events import Response, SaslChallenge
from ._response_events import (
    CapaOk,
    Err,
    Greeting,
    LangOk,
    LastOk,
    ListEntryOk,
    ListOk,
    MessageStart,
    Ok,
    StatOk,
    UidlEntryOk,
    UidlOk,
)
from ._responses import ResponseCode, format_status_text
from .sasl._codec import sasl_b64encode

__all__ = [
    "BodyWriter",
    "WRITERS",
    "write_entry",
    "write_multiline",
    "write_status",
]


def _line(data: bytes, limit: int, what: str) -> bytes:
    line = data + b"\r\n"
    if len(line) > limit:
        raise LocalProtocolError(
            f"{what} would be {len(line)} octets; the limit is {limit} including CRLF"
        )
    return line


def write_status(ok: bool, code: ResponseCode | None, text: str, limit: int) -> bytes:
    """A status line ``+OK``/``-ERR`` with an optional code and text."""
    status = b"+OK" if ok else b"-ERR"
    body = format_status_text(code, text)
    data = status + b" " + body.encode("utf-8") if body else status
    return _line(data, limit, "status line")


def write_multiline(event: ListOk | UidlOk | CapaOk | LangOk, limit: int) -> bytes:
    """A multi-line reply: status line, lines, ``.`` (RFC 1939 §3).

    None of these lines can start with ``.``: listing lines start with a
    digit, and capability and language tags refuse a leading dot.
    """
    head = write_status(True, None, event.text, limit)
    if isinstance(event, ListOk):
        body = b"".join([b"%d %d\r\n" % item for item in event.sizes.items()])
    elif isinstance(event, UidlOk):
        body = "".join([f"{n} {uid}\r\n" for n, uid in event.uids.items()]).encode("ascii")
    elif isinstance(event, CapaOk):
        body = "".join([line + "\r\n" for line in event.capabilities.to_lines()]).encode("utf-8")
    else:
        body = "".join(
            [f"{tag} {desc}\r\n" if desc else f"{tag}\r\n" for tag, desc in event.languages]
        ).encode("utf-8")
    return head + body + b".\r\n"


def write_entry(event: ListEntryOk | UidlEntryOk, limit: int) -> bytes:
    """``+OK msg size`` / ``+OK msg uid``."""
    value = str(event.size) if isinstance(event, ListEntryOk) else event.uid
    return write_status(True, None, f"{event.number} {value}", limit)


def _write_ok(event: Ok | MessageStart, limit: int) -> bytes:
    return write_status(True, event.code, event.text, limit)


def _write_err(event: Err, limit: int) -> bytes:
    return write_status(False, event.code, event.text, limit)


def _write_greeting(event: Greeting, limit: int) -> bytes:
    return write_status(True, None, event.text, limit)


def _write_stat(event: StatOk, limit: int) -> bytes:
    return write_status(True, None, f"{event.count} {event.size}", limit)


def _write_last(event: LastOk, limit: int) -> bytes:
    return write_status(True, None, str(event.number), limit)


def _write_challenge(event: SaslChallenge, limit: int) -> bytes:
    # RFC 5034 §4: continue-req = "+" SP [base64] CRLF.
    if event.malformed:
        raise LocalProtocolError("a server cannot send a malformed SaslChallenge")
    return b"+ " + sasl_b64encode(event.data) + b"\r\n"


#: Response event type -> its writer ``(event, status line limit) -> bytes``.
#: The body of RETR/TOP goes through a :class:`BodyWriter` instead.
WRITERS: Final[dict[type[Response], Callable[[Any, int], bytes]]] = {
    Greeting: _write_greeting,
    Ok: _write_ok,
    Err: _write_err,
    MessageStart: _write_ok,
    StatOk: _write_stat,
    LastOk: _write_last,
    ListEntryOk: write_entry,
    UidlEntryOk: write_entry,
    ListOk: write_multiline,
    UidlOk: write_multiline,
    CapaOk: write_multiline,
    LangOk: write_multiline,
    SaslChallenge: _write_challenge,
}


_FIND_LF_DOT = re.compile(rb"\n\.").search
# An LF with no CR before it in the chunk (one at the very start counts:
# the caller knows whether the previous chunk ended with CR).
_FIND_BARE_LF = re.compile(rb"\n(?<!\r\n)").search
_FIND_BARE_LF_OR_LF_DOT = re.compile(rb"\n(?:(?<!\r\n)|\.)").search
_SPLIT_LF_DOT = re.compile(rb"\n\.").split


class BodyWriter:
    """Dot-stuffs a message body as it streams out (RFC 1939 §3).

    Every line that starts with ``.`` gets another ``.`` in front.  The body
    goes out with CRLF line ends: a bare LF in the data becomes CRLF (RFC
    1939 §11 already counts a stored LF as two octets in sizes), so a bare
    LF can neither smuggle a terminator past a lenient client (greenmail
    #1049) nor get a dot stuffed that a strict client would not remove.  A
    chunk may end anywhere, so we remember whether the last octet written
    was a CR (a CRLF split across chunks) or ended a line.  At the end, a
    body that does not end with a line end gets one before the terminator,
    or the terminator would not be on a line of its own (the Exchange 2000
    bug in the fetchmail FAQ, S2).
    """

    __slots__ = ("last",)

    def __init__(self) -> None:
        # The last octet written; "\n" stands for "at the start of a line".
        self.last = b"\n"

    def data(self, chunk: bytes) -> bytes:
        """Stuff one chunk of the body."""
        if not chunk:
            return b""
        out = chunk
        # One scan finds whether any LF is bare or starts a dot line; most
        # chunks of mail have neither and go out as they are.  (A compiled
        # regex that starts with a literal LF is a faster scan than
        # bytes.count(b"\r\n").)
        found = _FIND_BARE_LF_OR_LF_DOT(chunk)
        if found is not None:
            start = found.start()
            # A one-octet match is a bare LF.  A two-octet one is an LF-dot
            # after a CR: a bare LF, if any, comes later (the scan goes on
            # from there, not from the start).
            if found.end() - start == 1 or _FIND_BARE_LF(chunk, start + 2) is not None:
                out = chunk.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
                if self.last == b"\r" and chunk[:1] == b"\n":
                    # The CR that pairs with this LF went out with the last chunk.
                    out = out[1:]
                if _FIND_LF_DOT(out) is not None:
                    out = b"\n..".join(_SPLIT_LF_DOT(out))
            else:
                # CRLF throughout, and the match is a line that starts with
                # a dot: no need to look for one again.
                out = b"\n..".join(_SPLIT_LF_DOT(chunk))
        if self.last == b"\n" and out[:1] == b".":
            out = b"." + out
        self.last = out[-1:]
        return out

    def end(self) -> bytes:
        """The octets that close the body: a missing line end, then ``.``."""
        if self.last == b"\n":
            return b".\r\n"
        if self.last == b"\r":
            return b"\n.\r\n"
        return b"\r\n.\r\n"

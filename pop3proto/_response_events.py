"""The response events: what a POP3 server says, as typed, immutable values.

The server -> client half of :mod:`pop3proto._events` (which holds the
bases, the commands, the SASL lines and :class:`ConnectionClosed`), kept
apart because it is a separate idea: a reply's payload (RFC 1939 §§4-7,
RFC 2449 §5, RFC 6856 §3) rather than a request.

* :class:`Greeting`, the generic :class:`Ok` and :class:`Err`;
* the typed payloads :class:`StatOk`, :class:`LastOk`, :class:`ListOk`,
  :class:`ListEntryOk`, :class:`UidlOk`, :class:`UidlEntryOk`,
  :class:`CapaOk`, :class:`LangOk`;
* the streamed message body of RETR/TOP: :class:`MessageStart`, any number
  of :class:`MessageData`, :class:`MessageEnd`.

``-ERR`` is an ordinary event (:class:`Err`), never an exception.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ._apop import parse_greeting_timestamp
from ._capabilities import Capabilities
from ._errors import LocalProtocolError
from ._events import Response, _check_bytes, _check_code
from ._responses import ResponseCode
from ._util import check_number, check_text, check_token

__all__ = [
    "Greeting",
    "Ok",
    "Err",
    "StatOk",
    "LastOk",
    "ListEntryOk",
    "ListOk",
    "UidlEntryOk",
    "UidlOk",
    "CapaOk",
    "LangOk",
    "MessageStart",
    "MessageData",
    "MessageEnd",
]


# ---------------------------------------------------------------------------
# Responses
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Greeting(Response):
    """The server's positive greeting ``+OK text`` (RFC 1939 §4).

    A negative greeting arrives as :class:`Err`, after which the
    connection is CLOSED.

    Fields:
        text: the whole greeting text, including any APOP timestamp.
    """

    text: str = ""

    def __post_init__(self) -> None:
        check_text(self.text, "greeting text")

    @property
    def timestamp(self) -> str | None:
        """The APOP timestamp ``<...@...>`` in the text, or ``None``.

        Exactly one ``<...>`` containing ``@`` and no whitespace counts;
        anything else means APOP is unavailable (CONFORMANCE.md §3.7).
        """
        return parse_greeting_timestamp(self.text)


@dataclass(frozen=True, slots=True)
class Ok(Response):
    """A one-line positive reply ``+OK [code] text``.

    Fields:
        text: the text after the status (and after the code, if any).
        code: the RFC 2449 §8 extended response code, or ``None``.
    """

    text: str = ""
    code: ResponseCode | None = None

    def __post_init__(self) -> None:
        check_text(self.text, "status text")
        _check_code(self.code)


@dataclass(frozen=True, slots=True)
class Err(Response):
    """A negative reply ``-ERR [code] text``; always one line.

    Fields:
        text: the text after the status (and after the code, if any).
        code: the extended response code (``IN-USE``, ``LOGIN-DELAY``,
            ``SYS/TEMP``, ``SYS/PERM``, ``AUTH``, ``UTF8``, or any other), or
            ``None``.  Unknown lower levels are kept but
            :attr:`ResponseCode.known` ignores them (RFC 2449 §8).
    """

    text: str = ""
    code: ResponseCode | None = None

    def __post_init__(self) -> None:
        check_text(self.text, "status text")
        _check_code(self.code)


def _check_count(value: object, what: str) -> int:
    return check_number(value, what, minimum=0)


@dataclass(frozen=True, slots=True)
class StatOk(Response):
    """The reply to STAT: ``+OK count size`` (RFC 1939 §5).

    Fields:
        count: the number of messages not marked deleted.
        size: their total size in octets.
    """

    count: int
    size: int

    def __post_init__(self) -> None:
        _check_count(self.count, "STAT count")
        _check_count(self.size, "STAT size")


@dataclass(frozen=True, slots=True)
class LastOk(Response):
    """The reply to LAST: ``+OK nn`` (RFC 1081).

    Fields:
        number: the highest message number accessed in this session, ``0``
            when none was (RSET sets it back to ``0``).
    """

    number: int

    def __post_init__(self) -> None:
        _check_count(self.number, "LAST message number")


@dataclass(frozen=True, slots=True)
class ListEntryOk(Response):
    """The reply to ``LIST msg``: ``+OK msg size``.

    Fields:
        number: the message number.
        size: its exact size in octets (CRLF line endings, before stuffing).
    """

    number: int
    size: int

    def __post_init__(self) -> None:
        check_number(self.number, "message number")
        _check_count(self.size, "message size")


def _check_mapping(value: object, what: str) -> dict[int, object]:
    if not isinstance(value, Mapping):
        raise LocalProtocolError(f"{what} must be a mapping of message number to value")
    for number in value:
        check_number(number, "message number")
    return dict(value)


@dataclass(frozen=True, slots=True)
class ListOk(Response):
    """The multi-line reply to bare ``LIST`` (a scan listing).

    Fields:
        sizes: message number -> size in octets, in listing order (deleted
            messages are absent, so numbers need not be contiguous).
        text: the text of the ``+OK`` line.
    """

    sizes: Mapping[int, int]
    text: str = ""

    def __post_init__(self) -> None:
        sizes = _check_mapping(self.sizes, "ListOk sizes")
        for size in sizes.values():
            _check_count(size, "message size")
        object.__setattr__(self, "sizes", sizes)
        check_text(self.text, "status text")


def _check_uid(uid: object) -> str:
    # RFC 1939 §7: 1 to 70 characters in 0x21-0x7E.
    if not isinstance(uid, str):
        raise LocalProtocolError("unique-id must be str")
    if not 1 <= len(uid) <= 70 or not uid.isascii() or not uid.isprintable() or " " in uid:
        raise LocalProtocolError("unique-id must be 1-70 characters in 0x21-0x7E")
    return uid


@dataclass(frozen=True, slots=True)
class UidlEntryOk(Response):
    """The reply to ``UIDL msg``: ``+OK msg uid``.

    Fields:
        number: the message number.
        uid: its unique-id (1-70 characters in 0x21-0x7E when sent; received
            ones are accepted as any printable ASCII token).
    """

    number: int
    uid: str

    def __post_init__(self) -> None:
        check_number(self.number, "message number")
        _check_uid(self.uid)


@dataclass(frozen=True, slots=True)
class UidlOk(Response):
    """The multi-line reply to bare ``UIDL`` (a unique-id listing).

    Fields:
        uids: message number -> unique-id, in listing order.  Unique-ids may
            repeat (RFC 1939 §7 allows identical messages to share one).
        text: the text of the ``+OK`` line.
    """

    uids: Mapping[int, str]
    text: str = ""

    def __post_init__(self) -> None:
        uids = _check_mapping(self.uids, "UidlOk uids")
        for uid in uids.values():
            _check_uid(uid)
        object.__setattr__(self, "uids", uids)
        check_text(self.text, "status text")


@dataclass(frozen=True, slots=True)
class CapaOk(Response):
    """The multi-line reply to CAPA (RFC 2449 §5).

    Fields:
        capabilities: the parsed capability list.
        text: the text of the ``+OK`` line.
    """

    capabilities: Capabilities
    text: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.capabilities, Capabilities):
            raise LocalProtocolError("CapaOk needs a Capabilities object")
        check_text(self.text, "status text")


@dataclass(frozen=True, slots=True)
class LangOk(Response):
    """The multi-line reply to bare LANG (RFC 6856 §3).

    Fields:
        languages: ``(tag, description)`` pairs; description may be ``""``.
        text: the text of the ``+OK`` line.
    """

    languages: tuple[tuple[str, str], ...]
    text: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.languages, (str, bytes)) or not isinstance(
            self.languages, (tuple, list)
        ):
            raise LocalProtocolError("LangOk languages must be a sequence of (tag, description)")
        langs = tuple(self.languages)
        for pair in langs:
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise LocalProtocolError("each language must be a (tag, description) pair")
        langs = tuple((tag, desc) for tag, desc in langs)
        for tag, desc in langs:
            check_token(tag, "language tag")
            check_text(desc, "language description")
            if tag.startswith("."):
                raise LocalProtocolError("language tag must not start with '.'")
        object.__setattr__(self, "languages", langs)
        check_text(self.text, "status text")


@dataclass(frozen=True, slots=True)
class MessageStart(Response):
    """The ``+OK`` line opening a RETR or TOP body (or a multi-line
    :class:`Extension` reply).

    Fields:
        text: the text after ``+OK`` (informational only, RFC 1939 §9).
        code: an extended response code, or ``None``.
    """

    text: str = ""
    code: ResponseCode | None = None

    def __post_init__(self) -> None:
        check_text(self.text, "status text")
        _check_code(self.code)


@dataclass(frozen=True, slots=True)
class MessageData(Response):
    """A piece of a message body, dot-unstuffed (RFC 1939 §3).

    Fields:
        data: message octets exactly as stored, with CRLF line endings.  The
            pieces' boundaries carry no meaning: they depend on how the bytes
            arrived.  Concatenated, they are the message, ending with the
            CRLF that precedes the terminating ``.``.
    """

    data: bytes

    def __post_init__(self) -> None:
        _check_bytes(self.data, "MessageData data")


@dataclass(frozen=True, slots=True)
class MessageEnd(Response):
    """The terminating ``.`` line of a RETR/TOP body."""

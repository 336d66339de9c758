"""The shapes of replies: how a server answers each kind of command.

A :class:`Reply` says how a positive reply is laid out (:class:`Framing`):
a status line, a one-line payload, a multi-line listing, a streamed body or
a SASL exchange; which response events may answer; the reader the client
role builds the positive event with; and what the reply switches on
(:class:`Effect`).  The command table (:mod:`pop3proto._commands`) gives
every command one of the shapes defined here.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from ._events import Event, Response, SaslChallenge
from ._readers import (
    read_capa_listing,
    read_lang_listing,
    read_last,
    read_list_entry,
    read_list_listing,
    read_stat,
    read_uidl_entry,
    read_uidl_listing,
)
from ._response_events import (
    CapaOk,
    Err,
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

__all__ = [
    "Framing",
    "Effect",
    "Reply",
    "STATUS",
    "STAT",
    "LAST",
    "LIST_ENTRY",
    "UIDL_ENTRY",
    "LIST_LISTING",
    "UIDL_LISTING",
    "CAPA_LISTING",
    "LANG_LISTING",
    "UTF8_SWITCH",
    "LANG_SWITCH",
    "BODY",
    "SASL_EXCHANGE",
    "ERR_ONLY",
]


class Framing(enum.Enum):
    """How a positive reply is laid out on the wire."""

    #: ``+OK text``: one line, delivered as :class:`Ok`.
    STATUS = "status"
    #: ``+OK payload``: one line whose text carries values (STAT, ``LIST n``).
    LINE = "line"
    #: ``+OK``, lines, ``.``: a listing parsed whole (bare LIST, UIDL, CAPA, LANG).
    LISTING = "listing"
    #: ``+OK``, a message, ``.``: streamed (RETR, TOP; RFC 1939 §3).
    BODY = "body"
    #: ``+ challenge`` lines until ``+OK``/``-ERR`` (AUTH; RFC 5034 §4).
    SASL = "sasl"


class Effect(enum.Enum):
    """What a positive reply changes beyond the session state."""

    #: UTF-8 mode is on, from this very reply (RFC 6856 §2).
    UTF8_MODE = "utf8"
    #: Response text is UTF-8, from this very reply (RFC 6856 §3).
    LANG_MODE = "lang"
    #: The capabilities are the ones this reply lists (RFC 2449 §5).
    CAPABILITIES = "capabilities"


@dataclass(frozen=True, slots=True, eq=False)
class Reply:
    """The shape of the reply to one kind of command.

    Fields:
        name: for error messages and debugging.
        framing: how a positive reply is laid out.
        events: the response events a server may answer with (``Err``
            always among them).
        read: client role: builds the positive event from the status text
            (``LINE``: ``read(text, command)``) or from the listing
            (``LISTING``: ``read(block, text, bare_lf, decode)``).
        effect: what a positive reply changes, if anything.
        utf8_text: the ``+OK`` line is UTF-8 whatever the session's mode:
            the new language or UTF-8 mode applies "starting with the
            response to the LANG command" (RFC 6856 §3), and a language
            listing is in UTF-8.
    """

    name: str
    framing: Framing
    events: tuple[type[Response], ...]
    read: Callable[..., Event] | None = None
    effect: Effect | None = None
    utf8_text: bool = False


def _reply(
    name: str,
    framing: Framing,
    positive: type[Response],
    read: Callable[..., Event] | None = None,
    effect: Effect | None = None,
    utf8_text: bool = False,
) -> Reply:
    return Reply(name, framing, (positive, Err), read, effect, utf8_text)


STATUS: Final = _reply("status", Framing.STATUS, Ok)
STAT: Final = _reply("STAT", Framing.LINE, StatOk, read_stat)
LAST: Final = _reply("LAST", Framing.LINE, LastOk, read_last)
LIST_ENTRY: Final = _reply("LIST n", Framing.LINE, ListEntryOk, read_list_entry)
UIDL_ENTRY: Final = _reply("UIDL n", Framing.LINE, UidlEntryOk, read_uidl_entry)
LIST_LISTING: Final = _reply("LIST", Framing.LISTING, ListOk, read_list_listing)
UIDL_LISTING: Final = _reply("UIDL", Framing.LISTING, UidlOk, read_uidl_listing)
CAPA_LISTING: Final = _reply(
    "CAPA", Framing.LISTING, CapaOk, read_capa_listing, Effect.CAPABILITIES
)
LANG_LISTING: Final = _reply("LANG", Framing.LISTING, LangOk, read_lang_listing, utf8_text=True)
UTF8_SWITCH: Final = _reply("UTF8", Framing.STATUS, Ok, effect=Effect.UTF8_MODE, utf8_text=True)
LANG_SWITCH: Final = _reply(
    "LANG range", Framing.STATUS, Ok, effect=Effect.LANG_MODE, utf8_text=True
)
BODY: Final = _reply("body", Framing.BODY, MessageStart)
SASL_EXCHANGE: Final = Reply("AUTH", Framing.SASL, (SaslChallenge, Ok, Err))
#: A refused command (and a cancelled AUTH) can only be answered -ERR.
ERR_ONLY: Final = Reply("refused", Framing.STATUS, (Err,))

"""Hypothesis strategies for valid field values, bodies and server replies."""

from __future__ import annotations

import functools
from collections.abc import Callable
from itertools import pairwise

from hypothesis import strategies as st

from pop3proto import (
    Auth,
    BadCommand,
    Capa,
    Capabilities,
    CapaOk,
    Command,
    Err,
    Event,
    Lang,
    LangOk,
    List,
    ListEntryOk,
    ListOk,
    MessageData,
    MessageEnd,
    MessageStart,
    Ok,
    ResponseCode,
    Retr,
    SaslCancel,
    SaslChallenge,
    SaslResponse,
    Stat,
    StatOk,
    Top,
    Uidl,
    UidlEntryOk,
    UidlOk,
)

#: Characters allowed in status text outside UTF-8 mode: ASCII except NUL,
#: CR and LF (they would end or corrupt the line, RFC 1939 §3).
ASCII_TEXT = st.characters(min_codepoint=1, max_codepoint=0x7F, exclude_characters="\r\n")
#: Characters allowed after UTF8/LANG.  Lone surrogates are excluded: they
#: cannot be encoded, and events refuse them (test_surrogates_refused_...).
UNICODE_TEXT = st.characters(exclude_categories=["Cs"], exclude_characters="\r\n\x00")
_VCHAR = st.characters(min_codepoint=0x21, max_codepoint=0x7E)

#: Every keyword the engine has a command class for.
KNOWN_KEYWORDS = frozenset(
    {"USER", "PASS", "APOP", "AUTH", "STAT", "LIST", "RETR", "DELE", "NOOP", "RSET", "QUIT"}
    | {"TOP", "UIDL", "CAPA", "STLS", "UTF8", "LANG", "LAST"}
)


@functools.cache
def status_texts(*, utf8: bool = False, max_size: int = 40) -> st.SearchStrategy[str]:
    """Status-line text that round-trips: it must not itself start with
    ``[`` (the peer would read a response code, RFC 2449 §6.4)."""
    return st.text(UNICODE_TEXT if utf8 else ASCII_TEXT, max_size=max_size).filter(
        lambda t: not t.startswith("[")
    )


#: One command parameter: ``1*VCHAR`` (RFC 2449 §3).
tokens = st.text(_VCHAR, min_size=1, max_size=40)
#: A unique-id: 1-70 characters in 0x21-0x7E (RFC 1939 §7).
uids = st.text(_VCHAR, min_size=1, max_size=70)
#: A PASS argument: printable ASCII, spaces anywhere (RFC 1939 §7).
passwords = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=60)
#: Message numbers: small ones, and anything up to the 20 digits the server
#: parses.
message_numbers = st.one_of(st.integers(1, 30), st.integers(1, 10**20 - 1))
#: Counts and sizes (>= 0).
sizes = st.one_of(st.integers(0, 10**6), st.integers(0, 10**30))
#: Extension keywords the engine does not know (3-4 characters).
extension_names = st.text(
    st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_!~"),
    min_size=3,
    max_size=4,
).filter(lambda n: n[0].isalnum() and n.upper() not in KNOWN_KEYWORDS)

_RCHAR = st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="/]")
response_codes: st.SearchStrategy[ResponseCode] = st.one_of(
    st.sampled_from(
        [ResponseCode(("IN-USE",)), ResponseCode(("SYS", "TEMP")), ResponseCode(("AUTH",))]
    ),
    st.lists(st.text(_RCHAR, min_size=1, max_size=10), min_size=1, max_size=3).map(
        lambda levels: ResponseCode(tuple(levels))
    ),
)
optional_codes = st.none() | response_codes

_CAP_TAG = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="."),
    min_size=1,
    max_size=20,
)
_CAP_ENTRY = st.one_of(
    st.tuples(_CAP_TAG, st.lists(st.text(_VCHAR, min_size=1, max_size=20), max_size=4).map(tuple)),
    st.sampled_from(
        [
            ("PIPELINING", ()),
            ("STLS", ()),
            ("USER", ()),
            ("TOP", ()),
            ("UIDL", ()),
            ("SASL", ("PLAIN", "LOGIN")),
            ("UTF8", ("USER",)),
            ("LANG", ()),
            ("LOGIN-DELAY", ("900",)),
            ("EXPIRE", ("NEVER",)),
        ]
    ),
)
#: Valid capability lists (to send).
capabilities = st.lists(_CAP_ENTRY, max_size=8).map(lambda e: Capabilities(tuple(e)))

#: Pieces that make message bodies interesting (CONFORMANCE.md §3.2 and §3.3).
BODY_PIECES = (
    b".",
    b"..",
    b"...",
    b".x",
    b"\r\n",
    b"\r",
    b"\n",
    b"x",
    b" ",
    b"\r\n.\r\n",
    b"\r\n.",
    b".\r",
    b"\n.\n",
    b"\x00",
    b"\xff",
)
#: Arbitrary message bodies, and bodies built from :data:`BODY_PIECES`.
bodies = st.one_of(
    st.binary(max_size=120),
    st.lists(st.sampled_from(BODY_PIECES), max_size=40).map(b"".join),
)


def chunkings(data: bytes) -> st.SearchStrategy[list[bytes]]:
    """Ways to cut *data* into chunks (empty chunks included)."""
    return st.lists(st.integers(0, len(data)), max_size=8).map(
        lambda cuts: [data[a:b] for a, b in pairwise([0, *sorted(cuts), len(data)])]
    )


def _body_reply(body: bytes, chunks: list[bytes], start: MessageStart) -> list[Event]:
    return [start, *(MessageData(c) for c in chunks), MessageEnd()]


def message_replies(
    *, utf8: bool = False, body_fix: Callable[[bytes], bytes] | None = None
) -> st.SearchStrategy[list[Event]]:
    """``MessageStart``, the body in random chunks, ``MessageEnd``.

    *body_fix*, if given, rewrites each generated body."""
    body_strategy = bodies if body_fix is None else bodies.map(body_fix)
    return body_strategy.flatmap(
        lambda body: st.builds(
            _body_reply,
            st.just(body),
            chunkings(body),
            st.builds(MessageStart, status_texts(utf8=utf8), optional_codes),
        )
    )


def _reply_shape(event: Event) -> str:
    """Which kind of reply *event* needs (CONFORMANCE.md §6.3)."""
    if isinstance(event, (BadCommand, SaslCancel)):
        return "err"
    if isinstance(event, Stat):
        return "stat"
    if isinstance(event, (List, Uidl)):
        kind = "list" if isinstance(event, List) else "uidl"
        return kind if event.number is None else kind + "-entry"
    if isinstance(event, (Retr, Top)):
        return "message"
    if isinstance(event, Capa):
        return "capa"
    if isinstance(event, Lang) and event.language is None:
        return "lang-list"
    if isinstance(event, (Auth, SaslResponse)):
        return "sasl"
    assert isinstance(event, Command), event
    return "ok"


def replies_for(
    event: Event,
    *,
    utf8: bool = False,
    body_fix: Callable[[bytes], bytes] | None = None,
) -> st.SearchStrategy[list[Event]]:
    """A random valid server reply to *event* (CONFORMANCE.md §6.3).

    ``-ERR`` is always possible; :class:`BadCommand` and :class:`SaslCancel`
    get nothing else.  For :class:`Auth` / :class:`SaslResponse` the reply is
    one step of the exchange: a challenge, ``+OK`` or ``-ERR``.  *utf8* says
    whether non-ASCII text may be sent; *body_fix* rewrites bodies.
    """
    return _replies(_reply_shape(event), utf8, body_fix)


def _one(event: Event) -> list[Event]:
    return [event]


@functools.cache
def _replies(
    shape: str, utf8: bool, body_fix: Callable[[bytes], bytes] | None
) -> st.SearchStrategy[list[Event]]:
    # Built once per shape: building strategies costs more than drawing.
    text = status_texts(utf8=utf8)
    err: st.SearchStrategy[list[Event]] = st.builds(Err, text, optional_codes).map(_one)
    if shape == "err":
        return err
    ok: st.SearchStrategy[list[Event]]
    if shape == "stat":
        ok = st.builds(StatOk, sizes, sizes).map(_one)
    elif shape == "list-entry":
        ok = st.builds(ListEntryOk, message_numbers, sizes).map(_one)
    elif shape == "uidl-entry":
        ok = st.builds(UidlEntryOk, message_numbers, uids).map(_one)
    elif shape == "list":
        ok = st.builds(ListOk, st.dictionaries(message_numbers, sizes, max_size=8), text).map(_one)
    elif shape == "uidl":
        ok = st.builds(UidlOk, st.dictionaries(message_numbers, uids, max_size=8), text).map(_one)
    elif shape == "message":
        ok = message_replies(utf8=utf8, body_fix=body_fix)
    elif shape == "capa":
        ok = st.builds(CapaOk, capabilities, text).map(_one)
    elif shape == "lang-list":
        # RFC 6856 §3.2: descriptions are UTF-8 in any mode; tags are ASCII.
        tags = tokens.filter(lambda t: not t.startswith("."))
        ok = st.builds(
            LangOk,
            st.lists(st.tuples(tags, st.text(UNICODE_TEXT, max_size=20)), max_size=5).map(tuple),
            text,
        ).map(_one)
    elif shape == "sasl":
        ok = st.one_of(
            st.builds(SaslChallenge, st.binary(max_size=60)).map(_one),
            st.builds(Ok, text, optional_codes).map(_one),
        )
    else:
        ok = st.builds(Ok, text, optional_codes).map(_one)
    return st.one_of(ok, err)

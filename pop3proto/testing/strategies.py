"""Hypothesis strategies for POP3: events, raw lines, mailboxes, scripts.

Importing this module imports hypothesis (``pip install 'pop3proto[testing]'``);
``import pop3proto.testing`` alone does not.

* Field values: :func:`status_texts`, :data:`tokens`, :data:`uids`,
  :data:`passwords`, :data:`message_numbers`, :data:`sizes`,
  :data:`response_codes`, :data:`capabilities`, :data:`bodies`.
* Events: :func:`commands` (every command class, valid),
  :func:`responses` (every reply event, valid), :func:`replies_for` (a
  valid reply to a given command), :func:`message_replies`.
* Raw lines that are *almost* valid: :func:`almost_valid_command_lines`,
  :func:`almost_valid_reply_lines`.
* Byte chunkings: :func:`chunkings`.
* Mailboxes: :func:`mailboxes` (dot-lines, 8-bit octets, empty bodies, and
  bare LFs on request).
* Scripts: :func:`scripts`, RFC 1939 command sequences for a mailbox (a
  client transcript), mixed with illegal commands and cut into random
  chunks; :func:`transcripts` adds what a correct server answers.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from itertools import pairwise

from hypothesis import strategies as st

from .. import (
    Apop,
    Auth,
    BadCommand,
    Capa,
    Capabilities,
    CapaOk,
    Command,
    Dele,
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
    Noop,
    Ok,
    Pass,
    Quit,
    ResponseCode,
    Retr,
    Rset,
    SaslCancel,
    SaslChallenge,
    SaslResponse,
    Stat,
    StatOk,
    Stls,
    Top,
    Uidl,
    UidlEntryOk,
    UidlOk,
    User,
    Utf8,
)
from ._model import Mailbox, Step

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


# ---------------------------------------------------------------------------
# Every command and reply event; almost-valid raw lines
# ---------------------------------------------------------------------------


def commands() -> st.SearchStrategy[Command]:
    """Any valid command event (what a client may construct and send)."""
    return st.one_of(
        st.builds(User, tokens),
        st.builds(Pass, passwords.filter(lambda p: p.strip() == p)),
        st.builds(Apop, tokens, st.text("0123456789abcdef", min_size=32, max_size=32)),
        st.builds(Auth, st.sampled_from(["PLAIN", "LOGIN", "CRAM-MD5"])),
        st.builds(Stat),
        st.builds(List, st.none() | message_numbers),
        st.builds(Retr, message_numbers),
        st.builds(Dele, message_numbers),
        st.builds(Noop),
        st.builds(Rset),
        st.builds(Quit),
        st.builds(Top, message_numbers, st.integers(0, 10**6)),
        st.builds(Uidl, st.none() | message_numbers),
        st.builds(Capa),
        st.builds(Stls),
        st.builds(Utf8),
        st.builds(Lang, st.none() | tokens),
    )


def responses(*, utf8: bool = False) -> st.SearchStrategy[Event]:
    """Any valid reply event a server may send (one event; bodies as
    ``MessageStart``/``MessageData``/``MessageEnd`` pieces)."""
    shapes = ["ok", "stat", "list", "uidl", "list-entry", "uidl-entry", "capa", "sasl"]
    return st.one_of(
        st.builds(Greeting, status_texts(utf8=utf8)),
        st.sampled_from(shapes)
        .flatmap(lambda shape: _replies(shape, utf8, None))
        .map(lambda events: events[0]),
        st.builds(MessageStart, status_texts(utf8=utf8), optional_codes),
        st.builds(MessageData, bodies.filter(bool)),
        st.just(MessageEnd()),
    )


_VALID_LINES = [
    b"STAT",
    b"LIST",
    b"LIST 1",
    b"RETR 1",
    b"DELE 1",
    b"NOOP",
    b"TOP 1 0",
    b"UIDL",
    b"UIDL 1",
]


def _mutate(line: bytes, how: str) -> bytes:
    keyword, _, rest = line.partition(b" ")
    return {
        "missing-arg": keyword if rest else keyword + b" 1",
        "zero": keyword + b" 0",
        "negative": keyword + b" -1",
        "word": keyword + b" one",
        "huge": keyword + b" " + b"9" * 30,
        "extra-arg": line + b" 1 2",
        "unknown": b"X" + keyword,
        "tab": keyword + b"\t" + rest,
        "nul": line + b"\x00",
        "truncated": keyword[:-1],
    }[how]


def almost_valid_command_lines() -> st.SearchStrategy[bytes]:
    """Command lines (without CRLF) one mistake away from a valid one: a
    missing, zero, negative, non-numeric or huge argument, an extra one, an
    unknown or truncated keyword, a TAB separator, a NUL.  RFC 1939 §3: a
    server answers each with ``-ERR`` and changes nothing.  Commands that
    take no argument are not given an ``extra-arg``."""
    return st.builds(
        _mutate,
        st.sampled_from([b"RETR 1", b"DELE 1", b"LIST 1", b"UIDL 1", b"TOP 1 0"]),
        st.sampled_from(
            [
                "missing-arg",
                "zero",
                "negative",
                "word",
                "huge",
                "extra-arg",
                "unknown",
                "tab",
                "nul",
                "truncated",
            ]
        ),
    )


def almost_valid_reply_lines() -> st.SearchStrategy[bytes]:
    """Status lines (with CRLF) a client must refuse: a lower-case or
    misspelt status word, a missing space, a bare CR or LF inside, a NUL."""
    return st.builds(
        lambda text, form: form.replace(b"TEXT", text.encode()),
        status_texts(max_size=10),
        st.sampled_from(
            [
                b"+ok TEXT\r\n",
                b"+OK!TEXT\r\n",  # no space: TEXT itself may start with one
                b"OK TEXT\r\n",
                b"-ERROR TEXT\r\n",
                b"+OK TEXT\rX\r\n",
                b"+OK \x00TEXT\r\n",
                b"* TEXT\r\n",
                b"+ TEXT\r\n",
            ]
        ),
    )


# ---------------------------------------------------------------------------
# Mailboxes, scripts and transcripts
# ---------------------------------------------------------------------------

_LINE_PIECES = [b".", b"..", b".x", b"x", b" ", b"\xc3\xa9", b"\xff", b"\x00", b"\t"]


def _message(header: bytes, lines: list[bytes], bare_lf: bool) -> bytes:
    if not lines and not header:
        return b""
    text = b"Subject: " + header + b"\r\n\r\n" + b"".join(line + b"\r\n" for line in lines)
    return text if bare_lf else text.replace(b"\n", b"\r\n").replace(b"\r\r\n", b"\r\n")


def messages(*, bare_lf: bool = False) -> st.SearchStrategy[bytes]:
    """One message as RETR returns it: CRLF line ends, ending with CRLF (or
    empty), with dot-lines, 8-bit octets, NULs, empty bodies; with
    *bare_lf*, also LFs not preceded by CR inside lines."""
    piece = st.sampled_from(_LINE_PIECES + ([b"a\nb"] if bare_lf else []))
    line = st.lists(piece, max_size=6).map(b"".join)
    header = st.text("abcxyz ", max_size=10).map(str.encode)
    return st.one_of(
        st.just(b""),
        st.builds(_message, header, st.lists(line, max_size=8), st.just(bare_lf)),
    )


def mailboxes(*, max_messages: int = 5, bare_lf: bool = False) -> st.SearchStrategy[Mailbox]:
    """A :class:`~pop3proto.testing.Mailbox`: credentials and up to
    *max_messages* :func:`messages`."""
    return st.builds(
        Mailbox,
        st.sampled_from(["alice", "bob"]),
        st.text("abcdefgh12345", min_size=1, max_size=10),
        st.lists(messages(bare_lf=bare_lf), max_size=max_messages).map(tuple),
    )


def _step(line: bytes, cuts: list[int]) -> Step:
    wire = line + b"\r\n"
    bounds = [0, *sorted(set(cuts)), len(wire)]
    return Step(line, tuple(wire[a:b] for a, b in pairwise(bounds) if b > a))


def _steps(lines: list[bytes]) -> st.SearchStrategy[list[Step]]:
    return st.tuples(
        *(
            st.builds(_step, st.just(line), st.lists(st.integers(1, len(line) + 1), max_size=3))
            for line in lines
        )
    ).map(list)


def scripts(mailbox: Mailbox, *, illegal: bool = True) -> st.SearchStrategy[list[Step]]:
    """A session's command lines for *mailbox*, each cut into random chunks.

    The skeleton follows RFC 1939: commands in AUTHORIZATION (some refused),
    USER/PASS (sometimes with a wrong password, then the right one), a run
    of TRANSACTION commands on existing, missing and deleted messages, then
    QUIT, or no QUIT at all (a dropped connection).  With *illegal*,
    :func:`almost_valid_command_lines` and out-of-state commands are mixed
    in (never between USER and PASS)."""
    n = len(mailbox.messages)
    number = st.integers(0, n + 1).map(str)
    # DELE and RETR of a message that exists come up often: they are where
    # servers go wrong (deletions before QUIT, octet counts).
    existing = st.integers(1, max(n, 1)).map(str)
    transaction = st.one_of(
        st.builds(lambda c: b"DELE " + c.encode(), existing),
        st.builds(lambda c: b"RETR " + c.encode(), existing),
        st.sampled_from([b"STAT", b"LIST", b"UIDL", b"NOOP", b"RSET", b"CAPA"]),
        st.builds(
            lambda k, c: k + b" " + c.encode(),
            st.sampled_from([b"LIST", b"UIDL", b"RETR", b"DELE"]),
            number,
        ),
        st.builds(
            lambda m, k: b"TOP " + m.encode() + b" " + str(k).encode(), number, st.integers(0, 3)
        ),
    )
    noise = st.one_of(almost_valid_command_lines(), st.sampled_from([b"USER x", b"PASS y"]))
    before = st.lists(
        st.sampled_from([b"STAT", b"CAPA", b"PASS early", b"RETR 1"]), max_size=2 if illegal else 0
    )
    wrong = st.booleans() if illegal else st.just(False)
    during = st.lists(transaction | noise if illegal else transaction, max_size=12)
    end = st.sampled_from([[b"QUIT"], []])
    user = mailbox.user.encode()
    password = mailbox.password.encode()

    def build(pre: list[bytes], bad: bool, mid: list[bytes], tail: list[bytes]) -> list[bytes]:
        login = [b"USER " + user, b"PASS " + password]
        if bad:
            login = [b"USER " + user, b"PASS " + password + b"x", *login]
        return [*pre, *login, *mid, *tail]

    return st.builds(build, before, wrong, during, end).flatmap(_steps)


def transcripts(*, illegal: bool = False) -> st.SearchStrategy[tuple[Mailbox, list[Step]]]:
    """A mailbox and a :func:`scripts` session for it.  Run it against the
    reference with :func:`pop3proto.testing.run_script` to get (and check)
    the server's side."""
    return mailboxes().flatmap(lambda box: st.tuples(st.just(box), scripts(box, illegal=illegal)))

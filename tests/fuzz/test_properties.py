"""Property-based tests of the pop3proto engine.

* Split invariance (CONFORMANCE.md §3.8): recorded transcripts give the same events
  however the bytes are chunked.
* Round trips: every event a side can send is the event the peer receives.
* Message bodies: the server's dot-stuffing and the client's unstuffing.
* Robustness: arbitrary bytes produce events or a ProtocolError, nothing else.
* Limits (CONFORMANCE.md §3.5) hold however the bytes are split.
* Send validation: CR, LF and NUL never get into a line.

Engine bugs these properties found are kept as deterministic regression
tests ("Regression (engine bug #N)"); one still open would be marked
``xfail(strict=True, reason="engine bug: ...")``.  Strategies steer clear of
no known bug: the properties run on the whole input space.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from pop3proto import (
    CLIENT,
    IN_USE,
    NEED_DATA,
    PAUSED,
    SERVER,
    SYS_TEMP,
    Apop,
    Auth,
    BadCommand,
    Capa,
    Capabilities,
    CapaOk,
    Command,
    Connection,
    ConnectionClosed,
    Dele,
    Err,
    Event,
    Extension,
    Greeting,
    Lang,
    LangOk,
    Last,
    List,
    ListEntryOk,
    ListOk,
    LocalProtocolError,
    MessageData,
    MessageEnd,
    MessageStart,
    Noop,
    Ok,
    Pass,
    ProtocolError,
    Quit,
    RemoteProtocolError,
    ResponseCode,
    Retr,
    Rset,
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
    User,
    Utf8,
)
from pop3proto._commands import BY_KEYWORD
from tests.helpers import (
    ASCII_TEXT,
    DOVECOT_CAPABILITIES,
    DOVECOT_GREETING,
    ENDED,
    KNOWN_KEYWORDS,
    UNICODE_TEXT,
    ConnectionPair,
    Options,
    TranscriptResult,
    bodies,
    capabilities,
    chunkings,
    expected_body,
    extension_names,
    feed_in_chunks,
    get_all_events,
    interesting_splits,
    login,
    message_numbers,
    normalize_data_events,
    passwords,
    receive_and_get,
    replies_for,
    response_codes,
    run_client_transcript,
    run_server_transcript,
    standard_reply,
    status_texts,
    tokens,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack

CRLF = b"\r\n"


# ===========================================================================
# Split invariance (CONFORMANCE.md §3.8)
# ===========================================================================

DOVECOT_GREETING_LINE = b"+OK Dovecot ready. <4a27.2.5e8f3b21.Q2h1Y2sNCg==@mail.example.org>\r\n"
DOVECOT_CAPA_REPLY = (
    b"+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nAUTH-RESP-CODE\r\n"
    b"STLS\r\nUSER\r\nSASL PLAIN LOGIN\r\n.\r\n"
)

# Bodies as stored, and as a server puts them on the wire (stuffed by hand).
BODY_A = b".\r\nSubject: dots\r\n\r\n..\r\n...\r\n.x\r\n"  # a dot line first, ".x" last
WIRE_A = b"..\r\nSubject: dots\r\n\r\n...\r\n....\r\n..x\r\n.\r\n"
BODY_B = b".x\r\nplain\r\n.\r\n"  # ".x" first, "." last
WIRE_B = b"..x\r\nplain\r\n..\r\n.\r\n"
BODY_C = b"a\rb\nc\r\r\n\x00\xff 8-bit\r\n\r\n"  # bare CR, bare LF, CR CR LF, NUL
WIRE_C = BODY_C + b".\r\n"
HEADERS = b"From: bob@example.org\r\nSubject: hi\r\n\r\n"


@dataclass(frozen=True)
class ClientCase:
    """Server bytes answering a known sequence of client steps."""

    name: str
    steps: tuple[tuple[Event, ...], ...]
    wire: bytes
    state: State
    events: tuple[Event, ...] | None = None
    error: type[ProtocolError] | None = None
    eof: bool = True
    kwargs: dict[str, Any] = field(default_factory=dict)

    def run(self, splits: Sequence[int] = ()) -> TranscriptResult:
        return run_client_transcript(self.steps, self.wire, splits, eof=self.eof, **self.kwargs)


CLIENT_CASES = [
    ClientCase(
        "dovecot-session",
        (
            (Capa(),),
            (User("alice"), Pass("correct horse")),  # pipelined: PIPELINING advertised
            (Stat(),),
            (List(),),
            (Uidl(),),
            (Retr(1),),
            (Top(2, 0),),
            (Dele(1),),
            (List(1),),
            (Retr(2), Dele(2), Retr(3)),
            (Rset(),),
            (Uidl(2),),
            (List(2),),
            (Noop(),),
            (Quit(),),
        ),
        DOVECOT_GREETING_LINE
        + DOVECOT_CAPA_REPLY
        + b"+OK\r\n+OK Logged in.\r\n"
        + b"+OK 3 1234\r\n"
        + b"+OK 3 messages:\r\n1 700\r\n2 400\r\n3 134\r\n.\r\n"
        + b"+OK\r\n1 000000015a3b1c2d\r\n2 000000025a3b1c2e\r\n3 !~x\r\n.\r\n"
        + b"+OK 700 octets\r\n"
        + WIRE_A
        + b"+OK\r\n"
        + HEADERS
        + b".\r\n"
        + b"+OK Marked to be deleted.\r\n"
        + b"-ERR Message is deleted.\r\n"
        + b"+OK 400 octets\r\n"
        + WIRE_B
        + b"+OK Marked to be deleted.\r\n"
        + b"+OK 134 octets\r\n.\r\n"
        + b"+OK\r\n"
        + b"+OK 2 000000025a3b1c2e\r\n"
        + b"+OK 2 400\r\n"
        + b"+OK\r\n"
        + b"+OK Logging out.\r\n",
        State.CLOSED,
        events=(
            DOVECOT_GREETING,
            CapaOk(DOVECOT_CAPABILITIES),
            Ok(),
            Ok("Logged in."),
            StatOk(3, 1234),
            ListOk({1: 700, 2: 400, 3: 134}, "3 messages:"),
            UidlOk({1: "000000015a3b1c2d", 2: "000000025a3b1c2e", 3: "!~x"}),
            MessageStart("700 octets"),
            MessageData(BODY_A),
            MessageEnd(),
            MessageStart(),
            MessageData(HEADERS),
            MessageEnd(),
            Ok("Marked to be deleted."),
            Err("Message is deleted."),
            MessageStart("400 octets"),
            MessageData(BODY_B),
            MessageEnd(),
            Ok("Marked to be deleted."),
            MessageStart("134 octets"),
            MessageEnd(),
            Ok(),
            UidlEntryOk(2, "000000025a3b1c2e"),
            ListEntryOk(2, 400),
            Ok(),
            Ok("Logging out."),
            ENDED,
        ),
    ),
    ClientCase(
        "in-use",
        ((User("mrose"),), (Pass("tanstaaf"),)),
        b"+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>\r\n"
        b"+OK mrose is a real hoopy frood\r\n"
        b"-ERR [IN-USE] Mailbox is locked by another POP3 session.\r\n",
        State.CLOSED,
        events=(
            Greeting("POP3 server ready <1896.697170952@dbc.mtview.ca.us>"),
            Ok("mrose is a real hoopy frood"),
            Err("Mailbox is locked by another POP3 session.", IN_USE),
            ConnectionClosed(),
        ),
    ),
    ClientCase(
        "dot-bodies",
        (
            (User("u"),),
            (Pass("p"),),
            (Retr(1),),
            (Retr(2),),
            (Retr(3),),
            (Top(1, 0),),
            (Retr(4),),
            (Retr(5),),
            (Quit(),),
        ),
        b"+OK ready\r\n+OK\r\n+OK\r\n"
        + b"+OK\r\n"
        + WIRE_A
        + b"+OK\r\n"
        + WIRE_B
        + b"+OK\r\n.\r\n"
        + b"+OK\r\n"
        + HEADERS
        + b".\r\n"
        + b"+OK\r\n"
        + WIRE_C
        + b"+OK\r\n\r\n.\r\n"  # a body that is one empty line
        + b"+OK\r\n",
        State.CLOSED,
        events=(
            Greeting("ready"),
            Ok(),
            Ok(),
            MessageStart(),
            MessageData(BODY_A),
            MessageEnd(),
            MessageStart(),
            MessageData(BODY_B),
            MessageEnd(),
            MessageStart(),
            MessageEnd(),
            MessageStart(),
            MessageData(HEADERS),
            MessageEnd(),
            MessageStart(),
            MessageData(BODY_C),
            MessageEnd(),
            MessageStart(),
            MessageData(b"\r\n"),
            MessageEnd(),
            Ok(),
            ENDED,
        ),
    ),
    ClientCase(
        "apop-empty-listings-quit-unknown",
        (
            (Capa(),),
            (Apop("mrose", "c4c9334bac560ecc979e58001b3e22fb"),),
            (List(),),
            (Uidl(),),
            (Stat(),),
            (Quit(),),
        ),
        b"+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>\r\n"
        b"+OK\r\n.\r\n"
        b"+OK maildrop has 0 messages (0 octets)\r\n"
        b"+OK\r\n.\r\n"
        b"+OK\r\n.\r\n"
        b"+OK 0 0\r\n",
        State.CLOSED,
        events=(
            Greeting("POP3 server ready <1896.697170952@dbc.mtview.ca.us>"),
            CapaOk(Capabilities(())),
            Ok("maildrop has 0 messages (0 octets)"),
            ListOk({}),
            UidlOk({}),
            StatOk(0, 0),
            ConnectionClosed(outcome_unknown=True),  # EOF before the QUIT reply
        ),
    ),
    ClientCase(
        "sasl-and-inactivity",
        (
            (Capa(),),
            (Auth("PLAIN"),),
            (SaslResponse(b"\0alice\0wrong"),),
            (Auth("CRAM-MD5"),),
            (SaslCancel(),),
            (Auth("LOGIN"),),
            (SaslResponse(b"alice"),),
            (SaslResponse(b"secret"),),
            (Stat(),),
        ),
        DOVECOT_GREETING_LINE
        + DOVECOT_CAPA_REPLY
        + b"+ \r\n"
        + b"-ERR [AUTH] Authentication failed.\r\n"
        + b"+ PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+\r\n"
        + b"-ERR Authentication aborted\r\n"
        + b"+ VXNlcm5hbWU6\r\n"
        + b"+ UGFzc3dvcmQ6\r\n"
        + b"+OK Logged in.\r\n"
        + b"+OK 0 0\r\n"
        + b"-ERR Disconnected for inactivity.\r\n",
        State.CLOSED,
        events=(
            DOVECOT_GREETING,
            CapaOk(DOVECOT_CAPABILITIES),
            SaslChallenge(b""),
            Err("Authentication failed.", ResponseCode(("AUTH",))),
            SaslChallenge(b"<1896.697170952@postoffice.reston.mci.net>"),
            Err("Authentication aborted"),
            SaslChallenge(b"Username:"),
            SaslChallenge(b"Password:"),
            Ok("Logged in."),
            StatOk(0, 0),
            Err("Disconnected for inactivity."),
            ENDED,
        ),
    ),
    ClientCase(
        "status-line-oddities",
        (
            (Capa(),),
            (Capa(),),
            (Capa(),),
            (Capa(),),
            (User("a"),),
            (Pass("b"),),
            (Stat(),),
            (List(1),),
            (Uidl(1),),
            (List(),),
            (Uidl(),),
            (Quit(),),
        ),
        b"+OK\r\n"
        b"-ERR [SYS/TEMP/FOO/BAR] try later\r\n"
        b"-ERR [\r\n"
        b"-ERR []\r\n"
        b"-ERR\r\n"
        b"+OK[IN-USE]\r\n"
        b"+OK \r\n"
        b"+OK 2 320 extra text\r\n"
        b"+OK 1 120 octets\r\n"
        b"+OK 1 abc\r\n"
        b"+OK\r\n1 120 trailing text\r\n2 200\r\n.\r\n"
        b"+OK\r\n1 abc\r\n2 abc\r\n.\r\n"  # duplicate uids are legal
        b"-ERR some deleted messages not removed\r\n",
        State.CLOSED,
        events=(
            Greeting(""),
            Err("try later", ResponseCode(("SYS", "TEMP", "FOO", "BAR"))),
            Err("["),
            Err("[]"),
            Err(""),
            Ok("", IN_USE),
            Ok(""),
            StatOk(2, 320),
            ListEntryOk(1, 120),
            UidlEntryOk(1, "abc"),
            ListOk({1: 120, 2: 200}),
            UidlOk({1: "abc", 2: "abc"}),
            Err("some deleted messages not removed"),
            ENDED,
        ),
    ),
    ClientCase(
        "utf8-lang",
        (
            (Capa(),),
            (Utf8(),),
            (Lang(),),
            (Lang("es"),),
            (User("jörg"),),
            (Pass("pässword"),),
            (Quit(),),
        ),
        b"+OK POP3 ready\r\n"
        b"+OK\r\nUTF8 USER\r\nLANG\r\nPIPELINING\r\n.\r\n"
        b"+OK UTF8 enabled\r\n"
        b"+OK Language listing follows:\r\nen English\r\nes Espa\xc3\xb1ol\r\nde\r\n.\r\n"
        b"+OK es Idioma cambiado\r\n"
        b"+OK Hola j\xc3\xb6rg\r\n"
        b"+OK Gr\xc3\xbc\xc3\x9fe\r\n"
        b"+OK Adi\xc3\xb3s\r\n",
        State.CLOSED,
        events=(
            Greeting("POP3 ready"),
            CapaOk(Capabilities.build(("UTF8", "USER"), "LANG", "PIPELINING")),
            Ok("UTF8 enabled"),
            LangOk((("en", "English"), ("es", "Español"), ("de", "")), "Language listing follows:"),
            Ok("es Idioma cambiado"),
            Ok("Hola jörg"),
            Ok("Grüße"),
            Ok("Adiós"),
            ENDED,
        ),
    ),
    ClientCase(
        "stls",
        ((Capa(),), (Stls(),)),
        DOVECOT_GREETING_LINE + DOVECOT_CAPA_REPLY + b"+OK Begin TLS negotiation now.\r\n",
        State.TLS_PENDING,
        events=(
            DOVECOT_GREETING,
            CapaOk(DOVECOT_CAPABILITIES),
            Ok("Begin TLS negotiation now."),
        ),
        eof=False,
    ),
    ClientCase(
        "negative-greeting",
        (),
        b"-ERR [SYS/TEMP] Too many connections, try later\r\n",
        State.CLOSED,
    ),
    ClientCase(
        "bare-lf-lenient",
        ((User("u"),), (Pass("p"),), (Retr(1),), (List(),), (Retr(2),)),
        b"+OK hi\n+OK\r\n+OK\n+OK\n..a\nb\r\n..\n.\n+OK\n1 2\n.\r\n+OK\r\nx\r\n.\r\n",
        State.TRANSACTION,
        events=(
            Greeting("hi"),
            Ok(),
            Ok(),
            MessageStart(),
            MessageData(b".a\nb\r\n.\n"),
            MessageEnd(),
            ListOk({1: 2}),
            MessageStart(),
            MessageData(b"x\r\n"),
            MessageEnd(),
        ),
        eof=False,
        kwargs={"bare_lf": True},
    ),
    # -- transcripts that end in a RemoteProtocolError ----------------------
    ClientCase(
        "eof-mid-body",
        ((User("u"),), (Pass("p"),), (Retr(1),)),
        b"+OK\r\n+OK\r\n+OK\r\n+OK\r\npartial\r\nbody\r\n.",
        State.ERROR,
        error=RemoteProtocolError,
    ),
    ClientCase(
        "okay-is-not-ok",
        ((User("u"),),),
        b"+OK\r\n+OKAY\r\n",
        State.ERROR,
        error=RemoteProtocolError,
    ),
    ClientCase(
        "stls-response-injection",
        ((Stls(),),),
        b"+OK\r\n+OK Begin TLS\r\n+OK forged\r\n",
        State.ERROR,
        error=RemoteProtocolError,
        eof=False,
    ),
    ClientCase(
        "bad-scan-listing",
        ((User("u"),), (Pass("p"),), (List(),)),
        b"+OK\r\n+OK\r\n+OK\r\n+OK\r\n1 x\r\n.\r\n",
        State.ERROR,
        error=RemoteProtocolError,
    ),
    ClientCase(
        "eof-mid-greeting",
        (),
        b"+OK POP3 read",
        State.ERROR,
        error=RemoteProtocolError,
    ),
    ClientCase(
        "eof-with-command-outstanding",
        ((User("u"),), (Pass("p"),), (Stat(),)),
        b"+OK\r\n+OK\r\n+OK\r\n",
        State.ERROR,
        error=RemoteProtocolError,
    ),
]


def flatten(events: Sequence[Event]) -> list[Event]:
    """Events with bodies cut into one-octet MessageData, to compare prefixes."""
    out: list[Event] = []
    for event in events:
        if isinstance(event, MessageData):
            out.extend(MessageData(event.data[i : i + 1]) for i in range(len(event.data)))
        else:
            out.append(event)
    return out


def assert_same_outcome(got: TranscriptResult, reference: TranscriptResult, what: str) -> None:
    """Split invariance: identical results, or for a transcript that ends in
    an error the same error after a prefix of the most detailed run's events
    (the engine may detect the error before handing out earlier events)."""
    assert got.error is reference.error, what
    assert got.state is reference.state, what
    if reference.error is None:
        assert got.events == reference.events, what
        assert got.sent == reference.sent, what
    else:
        flat_got, flat_ref = flatten(got.events), flatten(reference.events)
        assert flat_got == flat_ref[: len(flat_got)], what


def byte_at_a_time(data: bytes) -> list[int]:
    return list(range(1, len(data)))


class Replayable(Protocol):
    """A :class:`ClientCase` or a :class:`ServerCase`."""

    @property
    def wire(self) -> bytes: ...

    def run(self, splits: Sequence[int] = ()) -> TranscriptResult: ...


def check_every_split(case: Replayable) -> None:
    """The whole wire, all the interesting splits at once and one split at
    every offset give what the wire fed one byte at a time gives."""
    reference = case.run(byte_at_a_time(case.wire))
    assert_same_outcome(case.run(), reference, "whole")
    assert_same_outcome(case.run(interesting_splits(case.wire)), reference, "interesting")
    for offset in range(1, len(case.wire)):
        assert_same_outcome(case.run([offset]), reference, f"split at {offset}")


def check_random_splits(case: Replayable, data: st.DataObject) -> None:
    """Random splits, biased to the interesting ones, give what the wire fed
    one byte at a time gives."""
    wire = case.wire
    special = interesting_splits(wire)
    offsets = st.integers(1, len(wire) - 1)
    if special:
        offsets = st.one_of(offsets, st.sampled_from(special))
    splits = data.draw(st.lists(offsets, max_size=40))
    assert_same_outcome(case.run(splits), case.run(byte_at_a_time(wire)), f"splits {splits}")


@pytest.mark.parametrize("case", CLIENT_CASES, ids=lambda c: c.name)
def test_client_transcript_whole(case: ClientCase) -> None:
    """The transcripts themselves parse as expected when fed in one piece."""
    result = case.run()
    assert result.error is case.error
    assert result.state is case.state
    if case.events is not None:
        assert result.events == normalize_data_events(case.events)


@pytest.mark.parametrize("case", CLIENT_CASES, ids=lambda c: c.name)
def test_client_split_at_every_offset(case: ClientCase) -> None:
    """CONFORMANCE.md §3.8: one split at every offset, one byte
    at a time, and all the interesting splits (``\\r|\\n``, ``\\r\\n.|\\r\\n``,
    ``.|\\r``) at once give the same result as the whole transcript."""
    check_every_split(case)


@pytest.mark.parametrize("case", CLIENT_CASES, ids=lambda c: c.name)
@given(data=st.data())
def test_client_split_random(case: ClientCase, data: st.DataObject) -> None:
    """CONFORMANCE.md §3.8: random chunks biased to the patterns."""
    check_random_splits(case, data)


@pytest.mark.parametrize("case", CLIENT_CASES, ids=lambda c: c.name)
def test_client_lenient_end_changes_nothing_for_correct_servers(case: ClientCase) -> None:
    """``lenient_end`` only holds back tails until ``peer_idle()``; without
    that call a correct transcript gives the same result, whole or one byte
    at a time."""
    lenient = ClientCase(**{**case.__dict__, "kwargs": {**case.kwargs, "lenient_end": True}})
    reference = case.run(byte_at_a_time(case.wire))
    assert_same_outcome(lenient.run(), reference, "whole")
    assert_same_outcome(lenient.run(byte_at_a_time(case.wire)), reference, "byte at a time")


# -- server role: client bytes, pipelined -----------------------------------


@dataclass(frozen=True)
class ServerCase:
    """Client bytes (pipelined) into a server answering with standard_reply."""

    name: str
    wire: bytes
    state: State
    events: tuple[Event | type[BadCommand], ...] | None = None
    error: type[ProtocolError] | None = None
    eof: bool = True
    kwargs: dict[str, Any] = field(default_factory=dict)

    def run(self, splits: Sequence[int] = ()) -> TranscriptResult:
        return run_server_transcript(self.wire, splits, eof=self.eof, **self.kwargs)


SERVER_CASES = [
    ServerCase(
        "dovecot-client",
        b"CAPA\r\nUSER alice\r\nPASS correct horse\r\nSTAT\r\nLIST\r\nUIDL\r\nRETR 1\r\n"
        b"TOP 1 0\r\nDELE 1\r\nLIST 1\r\nRSET\r\nNOOP\r\nUIDL 2\r\nQUIT\r\n",
        State.CLOSED,
        events=(
            Capa(),
            User("alice"),
            Pass("correct horse"),
            Stat(),
            List(),
            Uidl(),
            Retr(1),
            Top(1, 0),
            Dele(1),
            List(1),
            Rset(),
            Noop(),
            Uidl(2),
            Quit(),
            ENDED,
        ),
    ),
    ServerCase(
        "malformed-and-wrong-state",
        b"noop\r\nUSER\r\nPASS x\r\nuser bob\r\nCAPA\r\nPASS  two  spaces \r\n"
        b"LIST 0\r\nLIST +1\r\nLIST 01\r\nLIST 1 2\r\nLIST 1x\r\nLIST  1\r\nLIST 1 \r\n"
        b"LIST\t1\r\nLIST 99999999999999999999\r\nLIST 999999999999999999999\r\n"
        b"TOP 1\r\nTOP 1 -1\r\nTOP 1 0\r\nXTND XLST\r\n\r\nLISTS\r\nSTAT\x00\r\n"
        b"STLS\r\nUSER again\r\nquit\r\n",
        State.CLOSED,
        events=(
            BadCommand,  # NOOP in AUTHORIZATION
            BadCommand,  # USER without argument
            BadCommand,  # PASS without USER
            User("bob"),
            BadCommand,  # CAPA between USER and PASS (strict)
            Pass(" two  spaces "),  # the argument is the rest of the line
            *(BadCommand,) * 8,  # LIST 0, +1, 01, "1 2", 1x, double space, trailing space, TAB
            List(99999999999999999999),
            BadCommand,  # 21 digits
            BadCommand,  # TOP 1
            BadCommand,  # TOP 1 -1
            Top(1, 0),
            BadCommand,  # XTND
            BadCommand,  # empty line
            BadCommand,  # LISTS
            BadCommand,  # NUL
            BadCommand,  # STLS in TRANSACTION
            BadCommand,  # USER in TRANSACTION
            Quit(),
            ENDED,
        ),
    ),
    ServerCase(
        "sasl",
        b"AUTH LOGIN\r\n*\r\nAUTH PLAIN\r\n=AAA\r\nAUTH PLAIN\r\n\r\n"
        b"AGFsaWNlAHNlY3JldA==\r\nAUTH PLAIN =\r\nSTAT\r\nQUIT\r\n",
        State.CLOSED,
        events=(
            Auth("LOGIN"),
            SaslCancel(),
            Auth("PLAIN"),
            BadCommand,  # "=" is only an initial response; "=AAA" is bad base64
            Auth("PLAIN"),
            SaslResponse(b""),
            SaslResponse(b"\0alice\0secret"),
            BadCommand,  # a second AUTH after success
            Stat(),
            Quit(),
            ENDED,
        ),
    ),
    ServerCase(
        "auth-initial-response",
        b"AUTH plain AGFsaWNlAHNlY3JldA==\r\nUIDL\r\nQUIT\r\n",
        State.CLOSED,
        events=(Auth("PLAIN", b"\0alice\0secret"), Uidl(), Quit(), ENDED),
    ),
    ServerCase(
        "utf8-lang",
        b"CAPA\r\nUTF8\r\nLANG\r\nLANG es\r\n"
        b"USER j\xc3\xb6rg\r\nPASS p\xc3\xa4ss w\r\nSTAT\r\nQUIT\r\n",
        State.CLOSED,
        events=(
            Capa(),
            Utf8(),
            Lang(),
            Lang("es"),
            User("jörg"),
            Pass("päss w"),
            Stat(),
            Quit(),
            ENDED,
        ),
    ),
    ServerCase(
        "mixed-case-keywords",
        b"CaPa\r\nuSeR alice\r\npAsS x\r\nsTaT\r\nlist 2\r\nqUiT\r\n",
        State.CLOSED,
        events=(Capa(), User("alice"), Pass("x"), Stat(), List(2), Quit(), ENDED),
    ),
    ServerCase(
        "failed-pass-then-pipelined",
        b"USER a\r\nPASS wrong\r\nSTAT\r\nUSER a\r\nPASS right\r\nSTAT\r\nDELE 1\r\n",
        State.CLOSED,  # EOF without QUIT: CLOSED, never UPDATE
        events=(
            User("a"),
            Pass("wrong"),
            BadCommand,  # STAT back in AUTHORIZATION
            User("a"),
            Pass("right"),
            Stat(),
            Dele(1),
            ConnectionClosed(),
        ),
    ),
    ServerCase(
        "stls",
        b"CAPA\r\nSTLS\r\n",
        State.TLS_PENDING,
        events=(Capa(), Stls()),
        eof=False,
    ),
    ServerCase(
        "bare-lf-lenient",
        b"USER a\nPASS b\r\nLIST\n\nQUIT\n",
        State.CLOSED,
        events=(User("a"), Pass("b"), List(), BadCommand, Quit(), ENDED),
        kwargs={"bare_lf": True},
    ),
    ServerCase(
        "stls-command-injection",
        b"STLS\r\nUSER evil\r\n",
        State.ERROR,
        error=RemoteProtocolError,
        eof=False,
    ),
    ServerCase(
        "oversize-sasl-line",
        b"AUTH PLAIN\r\n" + b"A" * 100 + b"\r\n",
        State.ERROR,
        error=RemoteProtocolError,
        kwargs={"max_sasl_size": 64},
    ),
]


def check_server_events(got: Sequence[Event], wanted: Sequence[Event | type[BadCommand]]) -> None:
    assert len(got) == len(wanted), got
    for g, w in zip(got, wanted, strict=True):
        if w is BadCommand:
            assert isinstance(g, BadCommand), g
        else:
            assert g == w


@pytest.mark.parametrize("case", SERVER_CASES, ids=lambda c: c.name)
def test_server_transcript_whole(case: ServerCase) -> None:
    result = case.run()
    assert result.error is case.error
    assert result.state is case.state
    if case.events is not None:
        check_server_events(result.events, case.events)


@pytest.mark.parametrize("case", SERVER_CASES, ids=lambda c: c.name)
def test_server_split_at_every_offset(case: ServerCase) -> None:
    """CONFORMANCE.md §3.8: split invariance for the server role (pipelined input)."""
    check_every_split(case)


@pytest.mark.parametrize("case", SERVER_CASES, ids=lambda c: c.name)
@given(data=st.data())
def test_server_split_random(case: ServerCase, data: st.DataObject) -> None:
    check_random_splits(case, data)


@given(
    pieces=st.lists(
        st.sampled_from((*(b"." * n for n in range(1, 4)), b".x", b"", b"y")), max_size=12
    ),
    data=st.data(),
)
def test_client_body_split_invariance_generated(pieces: list[bytes], data: st.DataObject) -> None:
    """CONFORMANCE.md §3.2 and §3.8: generated bodies made of dot lines, received whole and
    in random chunks, always give the unstuffed body."""
    body = b"".join(p + CRLF for p in pieces)
    wire = re.sub(rb"(?m)^\.", b"..", body) + b".\r\n"  # independent stuffing oracle
    server = b"+OK\r\n+OK\r\n+OK\r\n+OK\r\n" + wire + b"+OK\r\n"
    steps = ((User("u"),), (Pass("p"),), (Retr(1),), (Noop(),))
    splits = data.draw(st.lists(st.integers(1, len(server) - 1), max_size=20))
    result = run_client_transcript(steps, server, splits, eof=False)
    assert result.error is None
    wanted = [Greeting(), Ok(), Ok(), MessageStart(), MessageData(body), MessageEnd(), Ok()]
    assert result.events == normalize_data_events(wanted)


# ===========================================================================
# Round trips through a ConnectionPair
# ===========================================================================


def authorized_pair(**client_kwargs: Unpack[Options]) -> ConnectionPair:
    pair = ConnectionPair(client_kwargs=client_kwargs)
    assert pair.server.next_event() is PAUSED
    pair.send(SERVER, DOVECOT_GREETING)
    return pair


def transaction_pair(**client_kwargs: Unpack[Options]) -> ConnectionPair:
    pair = ConnectionPair(client_kwargs=client_kwargs)
    login(pair)
    return pair


def utf8_pair(state: State) -> ConnectionPair:
    pair = authorized_pair()
    pair.send(CLIENT, Utf8())
    pair.send(SERVER, Ok("UTF8 enabled"))
    assert pair.client.utf8 and pair.server.utf8
    if state is State.TRANSACTION:
        pair.send(CLIENT, User("u"))
        pair.send(SERVER, Ok())
        pair.send(CLIENT, Pass("p"))
        pair.send(SERVER, Ok())
    assert pair.assert_in_step() is state
    return pair


authorization_commands = st.one_of(
    st.builds(User, tokens),
    st.builds(Apop, tokens, st.text("0123456789abcdef", min_size=32, max_size=32)),
    st.builds(
        Auth,
        st.text(
            st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
            min_size=1,
            max_size=20,
        ),
        st.none() | st.binary(max_size=150),
    ),
    st.builds(Lang, st.none() | tokens),
    st.sampled_from([Capa(), Utf8(), Stls(), Quit()]),
)

transaction_commands = st.one_of(
    st.sampled_from([Stat(), Noop(), Rset(), Capa(), Quit(), List(), Uidl(), Lang()]),
    st.builds(List, message_numbers),
    st.builds(Uidl, message_numbers),
    st.builds(Retr, message_numbers),
    st.builds(Dele, message_numbers),
    st.builds(Top, message_numbers, st.one_of(st.integers(0, 100), st.integers(0, 10**20 - 1))),
    st.builds(Lang, tokens),
)


@given(command=authorization_commands, reply=st.data())
def test_roundtrip_authorization_commands(command: Command, reply: st.DataObject) -> None:
    """Every AUTHORIZATION command arrives as sent; a -ERR leaves both sides
    in AUTHORIZATION (RFC 1939 §3, CONFORMANCE.md §2.4)."""
    pair = authorized_pair()
    pair.send(CLIENT, command)
    err = reply.draw(replies_for(BadCommand(b"", "")))
    pair.send(SERVER, err)
    assert pair.assert_in_step() is (
        State.CLOSED if isinstance(command, Quit) else State.AUTHORIZATION
    )


@given(password=passwords)
def test_roundtrip_pass_keeps_spaces(password: str) -> None:
    """RFC 1939 §7: PASS takes the rest of the line, spaces included."""
    pair = authorized_pair()
    pair.send(CLIENT, User("u"))
    pair.send(SERVER, Ok())
    pair.send(CLIENT, Pass(password))
    pair.send(SERVER, Ok())
    assert pair.assert_in_step() is State.TRANSACTION


@given(command=transaction_commands, data=st.data())
def test_roundtrip_transaction_command_and_reply(command: Command, data: st.DataObject) -> None:
    """A TRANSACTION command and a random valid reply of the expected type
    arrive as sent (bodies by the rule of ``expected_body``)."""
    pair = transaction_pair()
    pair.send(CLIENT, command)
    reply = data.draw(replies_for(command))
    pair.send(SERVER, reply)
    wanted = State.CLOSED if isinstance(command, Quit) else State.TRANSACTION
    assert pair.assert_in_step() is wanted


@given(name=extension_names, arguments=st.lists(tokens, max_size=3), multiline=st.booleans())
def test_roundtrip_extension_is_bad_command_on_server(
    name: str, arguments: list[str], multiline: bool
) -> None:
    """An Extension the server does not know reaches it as BadCommand carrying
    the raw line; the -ERR reply changes no state (RFC 1939 §3)."""
    command = Extension(name, tuple(arguments), multiline)
    pair = transaction_pair()
    wire = pair.client.send(command)
    if len(wire) > 255:  # pragma: no cover - lengths are bounded above
        return
    [got] = pair.deliver(CLIENT, wire)
    assert isinstance(got, BadCommand)
    assert got.line == wire[:-2]
    assert got.command is None
    pair.send(SERVER, Err(got.reason))
    assert pair.assert_in_step() is State.TRANSACTION


@given(
    name=st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=300)
)
def test_command_length_limit_on_send(name: str) -> None:
    """CONFORMANCE.md §3.5: a client refuses to send a command over 255 octets
    (CRLF included) and sends anything up to it."""
    pair = authorized_pair()
    size = len(b"USER ") + len(name) + 2
    if size > 255:
        with pytest.raises(LocalProtocolError):
            pair.client.send(User(name))
        assert pair.client.state is State.ERROR
    else:
        pair.send(CLIENT, User(name))


@given(text=status_texts(), code=st.none() | response_codes, data=st.data())
def test_roundtrip_status_text_and_codes(
    text: str, code: ResponseCode | None, data: st.DataObject
) -> None:
    """Ok/Err/MessageStart text and response codes (RFC 2449 §8) survive the
    wire, including a text that starts with spaces."""
    pair = transaction_pair()
    pair.send(CLIENT, Noop())
    pair.send(SERVER, data.draw(st.sampled_from([Ok(text, code), Err(text, code)])))
    pair.send(CLIENT, Retr(1))
    pair.send(SERVER, [MessageStart(text, code), MessageEnd()])


@given(text=status_texts(max_size=80))
def test_roundtrip_greeting(text: str) -> None:
    """RFC 1939 §4: the greeting text (and its APOP timestamp) arrives as sent."""
    pair = ConnectionPair()
    pair.send(SERVER, Greeting(text))
    assert pair.client.greeting == Greeting(text)
    assert pair.client.greeting.timestamp == Greeting(text).timestamp
    assert pair.assert_in_step() is State.AUTHORIZATION


@given(caps=capabilities, text=status_texts(), authorized=st.booleans())
def test_roundtrip_capa(caps: Capabilities, text: str, authorized: bool) -> None:
    """RFC 2449 §5: a capability list arrives as sent (tags, params, order),
    in both states, and becomes the client's ``capabilities``."""
    pair = authorized_pair() if authorized else transaction_pair()
    pair.send(CLIENT, Capa())
    pair.send(SERVER, CapaOk(caps, text))
    assert pair.client.capabilities == caps == pair.server.capabilities


@given(
    initial=st.none() | st.binary(max_size=100),
    exchange=st.lists(st.tuples(st.binary(max_size=300), st.binary(max_size=300)), max_size=3),
    outcome=st.sampled_from(["ok", "err", "cancel"]),
)
def test_roundtrip_sasl_exchange(
    initial: bytes | None, exchange: list[tuple[bytes, bytes]], outcome: str
) -> None:
    """RFC 5034 §4: challenges and responses of any octets round-trip; ``*``
    must be answered with -ERR, and the result moves both sides alike."""
    pair = authorized_pair()
    pair.send(CLIENT, Auth("SCRAM-SHA-256", initial))
    assert pair.assert_in_step() is State.SASL
    for challenge, response in exchange:
        pair.send(SERVER, SaslChallenge(challenge))
        assert pair.client.next_event() is PAUSED  # the client owes a response
        pair.send(CLIENT, SaslResponse(response))
        assert pair.assert_in_step() is State.SASL
    if outcome == "cancel":
        pair.send(SERVER, SaslChallenge(b""))
        pair.send(CLIENT, SaslCancel())
        with pytest.raises(LocalProtocolError):
            send_on_copy(pair.server, Ok())
        pair.send(SERVER, Err("cancelled"))
        assert pair.assert_in_step() is State.AUTHORIZATION
    elif outcome == "ok":
        pair.send(SERVER, Ok("Logged in."))
        assert pair.assert_in_step() is State.TRANSACTION
    else:
        pair.send(SERVER, Err("[AUTH] no", ResponseCode(("AUTH",))))
        assert pair.assert_in_step() is State.AUTHORIZATION


def send_on_copy(conn: Connection, event: Event) -> bytes:
    """Send *event* on a deep copy of *conn* (to probe without side effects)."""
    return copy.deepcopy(conn).send(event)


@given(
    state=st.sampled_from([State.AUTHORIZATION, State.TRANSACTION]),
    text=status_texts(utf8=True),
    code=st.none() | response_codes,
)
def test_roundtrip_utf8_text(state: State, text: str, code: ResponseCode | None) -> None:
    """RFC 6856 §2: after UTF8, status text may be any UTF-8 and arrives as
    sent; before it, the server refuses non-ASCII (CONFORMANCE.md §10.2)."""
    pair = utf8_pair(state)
    pair.send(CLIENT, Capa())
    pair.send(SERVER, Err(text, code))
    plain = transaction_pair() if state is State.TRANSACTION else authorized_pair()
    plain.send(CLIENT, Capa())
    if text.isascii():
        plain.send(SERVER, Err(text, code))
    else:
        with pytest.raises(LocalProtocolError):
            plain.server.send(Err(text, code))


@given(
    name=st.text(UNICODE_TEXT, min_size=1, max_size=30).filter(
        lambda s: s.isprintable() and " " not in s
    )
)
def test_roundtrip_utf8_credentials(name: str) -> None:
    """RFC 6856 §2.2: non-ASCII USER names only in UTF8 mode (or with
    ``UTF8 USER``); they then arrive intact."""
    assume(len(name.encode()) < 240)
    plain = authorized_pair()
    if not name.isascii():
        with pytest.raises(LocalProtocolError):
            plain.client.send(User(name))
    pair = utf8_pair(State.AUTHORIZATION)
    pair.send(CLIENT, User(name))
    pair.send(SERVER, Ok())
    pair.send(CLIENT, Pass(name))


# ===========================================================================
# Message bodies (RFC 1939 §3, CONFORMANCE.md §3.2)
# ===========================================================================


def stuff_oracle(body: bytes) -> bytes:
    """Independent dot-stuffing of the body as ``expected_body`` says it is
    delivered (CRLF line ends, CRLF at the end): a "." at the start of a
    line is doubled, then the terminator."""
    return re.sub(rb"(^|\n)\.", rb"\1..", expected_body(body)) + b".\r\n"


def server_in_retr() -> Connection:
    pair = transaction_pair()
    pair.send(CLIENT, Retr(1))
    return pair.server


@given(body=bodies, data=st.data())
def test_stuffing_matches_oracle_for_any_chunking(body: bytes, data: st.DataObject) -> None:
    """The server's output equals an independent stuffing of the body,
    whatever the chunking of the MessageData events."""
    server = server_in_retr()
    out = server.send(MessageStart())
    chunks = data.draw(chunkings(body))
    for chunk in chunks:
        out += server.send(MessageData(chunk))
    out += server.send(MessageEnd())
    assert out == b"+OK\r\n" + stuff_oracle(body)
    assert server.state is State.TRANSACTION


@given(body=bodies, data=st.data())
def test_stuffed_output_has_no_early_terminator(body: bytes, data: st.DataObject) -> None:
    """For any body the stuffed output contains ``CRLF . CRLF`` only as its
    real terminator, and the terminator is on a line of its own."""
    server = server_in_retr()
    out = server.send(MessageStart())
    for chunk in data.draw(chunkings(body)):
        out += server.send(MessageData(chunk))
    out += server.send(MessageEnd())
    assert out.find(b"\r\n.\r\n") == len(out) - 5
    assert out.endswith(b"\r\n.\r\n")


def server_body(server: Connection, body: bytes, chunks: list[bytes]) -> bytes:
    out = server.send(MessageStart())
    for chunk in chunks:
        out += server.send(MessageData(chunk))
    return out + server.send(MessageEnd())


def received_body(body: bytes) -> list[Event]:
    data = expected_body(body)
    return [MessageStart(), *([MessageData(data)] if data else []), MessageEnd()]


@pytest.mark.parametrize("lenient_end", [False, True])
@pytest.mark.parametrize("bare_lf", [False, True])
@given(body=bodies, second=st.none() | bodies, data=st.data())
def test_body_roundtrip(
    bare_lf: bool, lenient_end: bool, body: bytes, second: bytes | None, data: st.DataObject
) -> None:
    """What the client receives is ``expected_body`` of what the server
    sent, in every client mode, however the bytes are cut, and with a
    pipelined reply (a +OK or another body) right behind the terminator
    (CONFORMANCE.md §3.2, §6.3 and §3.8)."""
    pair = transaction_pair(
        bare_lf=bare_lf, lenient_end=lenient_end, allow_unadvertised_pipelining=True
    )
    followup: Command = Noop() if second is None else Retr(2)
    pair.send_batch([Retr(1), followup])
    assert get_all_events(pair.server) == [Retr(1)]
    wire = server_body(pair.server, body, data.draw(chunkings(body)))
    assert get_all_events(pair.server) == [followup]
    wanted = received_body(body)
    if second is None:
        wire += pair.server.send(Ok())
        wanted.append(Ok())
    else:
        wire += server_body(pair.server, second, data.draw(chunkings(second)))
        wanted += received_body(second)
    splits = data.draw(st.lists(st.integers(1, len(wire)), max_size=10))
    got = normalize_data_events(feed_in_chunks(pair.client, wire, splits))
    assert got == normalize_data_events(wanted)
    assert pair.assert_in_step() is State.TRANSACTION
    assert pair.client.outstanding == ()


@pytest.mark.parametrize(
    ("sent", "received"),
    [
        (b"", b""),
        (b"\r\n", b"\r\n"),
        (b"abc\r\n", b"abc\r\n"),
        (b"abc", b"abc\r\n"),
        (b".", b".\r\n"),
        (b"abc\r", b"abc\r\n"),  # a lone CR gets the LF that completes it
        (b".\r\n.", b".\r\n.\r\n"),
        (b"\r\n.\r\n", b"\r\n.\r\n"),
    ],
)
def test_body_line_end_rule(sent: bytes, received: bytes) -> None:
    """CONFORMANCE.md §3.3: the server ends the content with CRLF before the
    terminator (the Exchange 2000 bug, fetchmail FAQ S2)."""
    assert expected_body(sent) == received
    pair = transaction_pair()
    pair.send(CLIENT, Retr(1))
    pair.send(SERVER, [MessageStart(), MessageData(sent), MessageEnd()])


@pytest.mark.parametrize("bare_lf", [False, True])
@pytest.mark.parametrize(
    ("sent", "received"),
    [
        (b"abc\n", b"abc\r\n"),
        (b"\n", b"\r\n"),
        (b".\n", b".\r\n"),
        (b"x\r\n\n", b"x\r\n\r\n"),
        (b"a\n.b\r\n", b"a\r\n.b\r\n"),
        (b"a\n.\nb", b"a\r\n.\r\nb\r\n"),
        (b"\r\r\n", b"\r\r\n"),
    ],
)
def test_bare_lf_in_body(bare_lf: bool, sent: bytes, received: bytes) -> None:
    """Regression (engine bugs #1, #11): a body ending in a bare LF got no
    terminator line of its own, and a dot after a bare LF was stuffed but not
    unstuffed by a strict client.  A bare LF now goes out as CRLF, so both
    client modes receive the same octets (CONFORMANCE.md §3.2, greenmail#1049)."""
    assert expected_body(sent) == received
    pair = transaction_pair(bare_lf=bare_lf)
    pair.send(CLIENT, Retr(1))
    pair.send(SERVER, [MessageStart(), MessageData(sent), MessageEnd()])
    assert pair.client.outstanding == ()


# ===========================================================================
# Robustness: arbitrary bytes give events or a ProtocolError, nothing else
# ===========================================================================

TOKEN_SOUP = st.lists(
    st.sampled_from(
        [
            b"+OK",
            b"-ERR",
            b"+ ",
            b"+",
            b" ",
            b"\r\n",
            b"\r",
            b"\n",
            b".",
            b"..",
            b"\r\n.\r\n",
            b"1",
            b"0",
            b"99999999999999999999999",
            b"[",
            b"]",
            b"[IN-USE]",
            b"/",
            b"=",
            b"*",
            b"QUIT",
            b"USER",
            b"PASS",
            b"AUTH",
            b"STLS",
            b"LIST",
            b"\x00",
            b"\xff",
            b"\xc3\xa9",
            b"\t",
            b"AAAA",
        ]
    ),
    max_size=60,
).map(b"".join)
fuzz_bytes = st.one_of(st.binary(max_size=300), TOKEN_SOUP)


def state_of(conn: Connection) -> State:
    """``conn.state``, read afresh (it changes under mypy's narrowing)."""
    return conn.state


def pump_client(conn: Connection) -> bool:
    """Drain a fuzzed client; answer SASL challenges with ``*``.  Returns
    False once the connection is finished (closed, error or TLS)."""
    for _ in range(10_000):
        try:
            event = conn.next_event()
        except ProtocolError:
            assert conn.state is State.ERROR
            return False
        if event is NEED_DATA:
            return True
        if event is PAUSED:
            if conn.state is State.SASL:
                conn.send(SaslCancel())
                continue
            return False
        assert isinstance(event, Event), event
        if isinstance(event, ConnectionClosed):
            return False
    raise AssertionError("next_event made no progress")  # pragma: no cover


client_commands_to_fuzz = st.sampled_from(
    [
        None,
        Capa(),
        User("u"),
        Auth("PLAIN"),
        Stls(),
        Lang(),
        Utf8(),
        Quit(),
        Stat(),
        List(),
        List(1),
        Uidl(),
        Uidl(1),
        Retr(1),
        Top(1, 0),
        Dele(1),
        Extension("XTND", ("XLST",), multiline=True),
    ]
)
TRANSACTION_ONLY = (Stat, List, Uidl, Retr, Top, Dele, Extension)


@given(
    command=client_commands_to_fuzz,
    prefix=st.sampled_from([b"", b"+OK\r\n", b"+OK\r\n.", b"+ \r\n", b"-ERR\r\n"]),
    junk=fuzz_bytes,
    data=st.data(),
    bare_lf=st.booleans(),
    lenient_end=st.booleans(),
    eof=st.booleans(),
)
def test_client_fuzz_only_protocol_errors(
    command: Command | None,
    prefix: bytes,
    junk: bytes,
    data: st.DataObject,
    bare_lf: bool,
    lenient_end: bool,
    eof: bool,
) -> None:
    """Arbitrary server bytes, in the greeting state or after any command,
    split anywhere (with ``peer_idle`` calls between chunks), give events,
    NEED_DATA/PAUSED or a ProtocolError."""
    conn = Connection(CLIENT, bare_lf=bare_lf, lenient_end=lenient_end, max_listing_size=1000)
    if command is not None:
        receive_and_get(conn, b"+OK hi <a@b>\r\n")
        if isinstance(command, TRANSACTION_ONLY):
            conn.send(User("u"))
            receive_and_get(conn, b"+OK\r\n")
            conn.send(Pass("p"))
            receive_and_get(conn, b"+OK\r\n")
            assert conn.state is State.TRANSACTION
        conn.send(command)
    stream = prefix + junk
    for chunk in data.draw(chunkings(stream)):
        if not chunk:
            continue
        conn.receive_data(chunk)
        if not pump_client(conn):
            return
        if data.draw(st.booleans(), label="peer idle?"):
            conn.peer_idle()
            if not pump_client(conn):
                return
    if eof:
        conn.receive_data(b"")
        pump_client(conn)


def reply_safely(conn: Connection, event: Event, choice: int) -> None:
    """Answer a fuzzed server's event: -ERR, or the standard positive reply."""
    replies = standard_reply(event)
    if choice % 3 == 0 and not isinstance(event, (SaslCancel, BadCommand)):
        replies = [Err("no")]
    for reply in replies:
        conn.send(reply)


@given(
    start=st.sampled_from(
        [b"", b"USER a\r\n", b"USER a\r\nPASS b\r\n", b"AUTH PLAIN\r\n", b"UTF8\r\n"]
    ),
    junk=fuzz_bytes,
    data=st.data(),
    bare_lf=st.booleans(),
    eof=st.booleans(),
)
def test_server_fuzz_only_protocol_errors(
    start: bytes, junk: bytes, data: st.DataObject, bare_lf: bool, eof: bool
) -> None:
    """Arbitrary client bytes in AUTHORIZATION, USER_OK, TRANSACTION or SASL,
    split anywhere, give events, NEED_DATA/PAUSED or a ProtocolError."""
    conn = Connection(SERVER, bare_lf=bare_lf, max_command_size=40, max_sasl_size=80)
    conn.send(DOVECOT_GREETING)
    choices = iter(data.draw(st.lists(st.integers(0, 2), min_size=200, max_size=200)))
    stream = start + junk

    def pump() -> bool:
        for _ in range(10_000):
            try:
                event = conn.next_event()
            except ProtocolError:
                assert conn.state is State.ERROR
                return False
            if event is NEED_DATA:
                return True
            if event is PAUSED:
                if conn.state is State.TLS_PENDING:
                    try:
                        conn.tls_established()
                    except ProtocolError:
                        assert state_of(conn) is State.ERROR
                        return False
                    assert state_of(conn) is State.AUTHORIZATION
                    continue
                return False
            assert isinstance(event, Event), event
            if isinstance(event, ConnectionClosed):
                return False
            reply_safely(conn, event, next(choices, 1))
        raise AssertionError("next_event made no progress")  # pragma: no cover

    if not pump():
        return
    for chunk in data.draw(chunkings(stream)):
        if not chunk:
            continue
        conn.receive_data(chunk)
        if not pump():
            return
    if eof:
        conn.receive_data(b"")
        pump()


# ===========================================================================
# Limits hold however the bytes are split (CONFORMANCE.md §3.5)
# ===========================================================================


def random_splits(data: st.DataObject, wire: bytes) -> list[int]:
    return data.draw(
        st.lists(
            st.one_of(
                st.integers(1, max(1, len(wire) - 1)),
                st.sampled_from(interesting_splits(wire) or [1]),
            ),
            max_size=20,
        )
    )


@given(extra=st.integers(0, 150), data=st.data())
def test_overlong_command_gives_bad_command_however_split(extra: int, data: st.DataObject) -> None:
    """CONFORMANCE.md §3.5: a command over 255 octets gets BadCommand("command line
    too long") with the first 253 octets, the rest of the line is skipped and
    the next command is read normally, whatever the chunking."""
    line = b"X" * (254 + extra)  # 254 + CRLF = 256 octets: one too many
    wire = line + b"\r\nCAPA\r\nQUIT\r\n"
    splits = random_splits(data, wire) + data.draw(st.sampled_from([[], [len(line) + 1]]))
    result = run_server_transcript(wire, splits)
    assert result.error is None
    assert result.events == [
        BadCommand(b"X" * 253, "command line too long"),
        Capa(),
        Quit(),
        ENDED,
    ]
    assert result == run_server_transcript(wire)


@given(data=st.data())
def test_command_exactly_at_limit_is_accepted(data: st.DataObject) -> None:
    """CONFORMANCE.md §3.5: 255 octets with CRLF is a command; 256 is not."""
    name = "n" * (255 - len("USER ") - 2)
    wire = f"USER {name}\r\nQUIT\r\n".encode()
    result = run_server_transcript(wire, random_splits(data, wire))
    assert result.events == [User(name), Quit(), ENDED]
    wire = f"USER {name}x\r\nQUIT\r\n".encode()
    result = run_server_transcript(wire, random_splits(data, wire))
    assert isinstance(result.events[0], BadCommand)
    assert result.events[1:] == [Quit(), ENDED]


@given(limit=st.integers(8, 600), delta=st.integers(-3, 3), data=st.data())
def test_command_limit_configurable(limit: int, delta: int, data: st.DataObject) -> None:
    """``max_command_size`` counts the CRLF; the verdict does not depend on
    the chunking."""
    size = max(limit + delta, 7)
    wire = b"NOOP" + b"x" * (size - 6) + b"\r\nQUIT\r\n"
    splits = random_splits(data, wire)
    result = run_server_transcript(wire, splits, max_command_size=limit)
    first = result.events[0]
    assert isinstance(first, BadCommand)
    if size > limit:
        assert first.reason == "command line too long"
        assert first.line == wire[: limit - 2]
    else:
        assert first.line == wire[: size - 2]
    assert result.events[1:] == [Quit(), ENDED]


@given(
    limit=st.integers(16, 9000), delta=st.integers(-2, 2), data=st.data(), greeting=st.booleans()
)
def test_status_line_limit_however_split(
    limit: int, delta: int, data: st.DataObject, greeting: bool
) -> None:
    """CONFORMANCE.md §3.5: a status line longer than ``max_status_size`` raises
    RemoteProtocolError whatever the chunking; one exactly at the limit (CRLF
    included) is accepted."""
    size = max(limit + delta, 6)
    line = b"+OK " + b"x" * (size - 6) + CRLF
    assert len(line) == size
    steps: tuple[tuple[Event, ...], ...] = ()
    wire = line
    if not greeting:
        steps = ((User("u"),),)
        wire = b"+OK\r\n" + line
    result = run_client_transcript(
        steps, wire, random_splits(data, wire), eof=False, max_status_size=limit
    )
    if size > limit:
        assert result.error is RemoteProtocolError
    else:
        assert result.error is None
        assert result.events[-1] in (Greeting("x" * (size - 6)), Ok("x" * (size - 6)))


@given(size=st.integers(505, 520))
def test_server_status_line_limit_on_send(size: int) -> None:
    """RFC 2449 §4: the server sends at most 512 octets per status line."""
    pair = authorized_pair()
    pair.send(CLIENT, Capa())
    text = "y" * (size - len("-ERR ") - 2)
    if size > 512:
        with pytest.raises(LocalProtocolError):
            pair.server.send(Err(text))
    else:
        assert len(pair.send(SERVER, Err(text))) == size


@given(limit=st.integers(8, 300), delta=st.integers(-3, 3), data=st.data())
def test_sasl_line_limit_however_split(limit: int, delta: int, data: st.DataObject) -> None:
    """RFC 5034 §4 sets no limit; the configured ``max_sasl_size`` holds
    however the line is split (RemoteProtocolError above it)."""
    size = max(limit + delta, 6)
    payload = b"A" * ((size - 2) // 4 * 4)
    size = len(payload) + 2
    wire = b"AUTH PLAIN\r\n" + payload + b"\r\n"
    result = run_server_transcript(wire, random_splits(data, wire), eof=False, max_sasl_size=limit)
    if size > limit:
        assert result.error is RemoteProtocolError
    else:
        assert result.error is None
        assert isinstance(result.events[-1], (SaslResponse, BadCommand))


# ===========================================================================
# Send validation: CR, LF and NUL never get into a line
# ===========================================================================

FORBIDDEN = st.sampled_from(["\r", "\n", "\x00"])


def poison(value: str, char: str, where: int) -> str:
    where %= len(value) + 1
    return value[:where] + char + value[where:]


CONSTRUCTORS: list[tuple[str, Callable[[str], object]]] = [
    ("User", lambda s: User(s)),
    ("Pass", lambda s: Pass(s)),
    ("Apop name", lambda s: Apop(s, "0" * 32)),
    ("Auth", lambda s: Auth(s)),
    ("Lang", lambda s: Lang(s)),
    ("Extension argument", lambda s: Extension("XTND", (s,))),
    ("Greeting", lambda s: Greeting(s)),
    ("Ok", lambda s: Ok(s)),
    ("Err", lambda s: Err(s, SYS_TEMP)),
    ("MessageStart", lambda s: MessageStart(s)),
    ("ListOk text", lambda s: ListOk({}, s)),
    ("UidlOk uid", lambda s: UidlOk({1: s})),
    ("UidlEntryOk uid", lambda s: UidlEntryOk(1, s)),
    ("CapaOk text", lambda s: CapaOk(Capabilities(()), s)),
    ("Capability tag", lambda s: Capabilities.build(s)),
    ("Capability param", lambda s: Capabilities.build(("X", s))),
    ("LangOk tag", lambda s: LangOk(((s, ""),))),
    ("LangOk description", lambda s: LangOk((("en", s),))),
    ("LangOk text", lambda s: LangOk((), s)),
    ("ResponseCode", lambda s: ResponseCode((s,))),
    ("BadCommand reason", lambda s: BadCommand(b"", s)),
]


@pytest.mark.parametrize(("what", "build"), CONSTRUCTORS, ids=[c[0] for c in CONSTRUCTORS])
@given(
    value=st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=12),
    char=FORBIDDEN,
    where=st.integers(0, 12),
)
def test_cr_lf_nul_refused_at_construction(
    what: str, build: Callable[[str], object], value: str, char: str, where: int
) -> None:
    """CONFORMANCE.md §3.4 and §3.6 (one line per reply or command): an event whose text or
    argument contains CR, LF or NUL is refused when it is built."""
    with pytest.raises(LocalProtocolError):
        build(poison(value, char, where))


@pytest.mark.parametrize(
    "build",
    [
        lambda: MessageData(bytearray(b"x")),  # type: ignore[arg-type]
        lambda: SaslResponse("text"),  # type: ignore[arg-type]
        lambda: SaslChallenge(memoryview(b"x")),  # type: ignore[arg-type]
        lambda: Auth("PLAIN", "ir"),  # type: ignore[arg-type]
        lambda: Retr(0),
        lambda: Retr(True),
        lambda: Top(1, -1),
        lambda: List("1"),  # type: ignore[arg-type]
        lambda: StatOk(-1, 0),
        lambda: UidlEntryOk(1, "x" * 71),
        lambda: UidlEntryOk(1, "a b"),
        lambda: Apop("u", "A" * 32),
        lambda: Apop("u", "0" * 31 + "\r"),
        lambda: Apop("u", "0" * 32 + "\n"),
        lambda: Extension("XT\r"),
        lambda: Extension("XTN\n"),
        lambda: Extension("X\x00TN"),
        lambda: Auth("BAD MECH"),
        lambda: Auth("X" * 21),
        lambda: Pass(""),
        lambda: User(""),
        lambda: User("a b"),
        lambda: Capabilities.build(".DOT"),
        lambda: LangOk(((".en", ""),)),
        lambda: Ok(code="IN-USE"),  # type: ignore[arg-type]
    ],
)
def test_invalid_fields_refused_at_construction(build: Callable[[], object]) -> None:
    """Wrong types and out-of-range values raise LocalProtocolError."""
    with pytest.raises(LocalProtocolError):
        build()


@given(command=transaction_commands, role=st.sampled_from(["client-response", "server-command"]))
def test_sending_the_wrong_kind_of_event_is_refused(command: Command, role: str) -> None:
    """A client sends commands, a server responses; anything else raises
    LocalProtocolError and puts that side in ERROR."""
    pair = transaction_pair()
    conn = pair.client if role == "client-response" else pair.server
    wrong: Event = Ok() if role == "client-response" else command
    with pytest.raises(LocalProtocolError):
        conn.send(wrong)
    assert conn.state is State.ERROR
    with pytest.raises(LocalProtocolError):
        conn.send(wrong)


# ===========================================================================
# Engine bugs found by these properties: regressions, and open ones (xfail)
# ===========================================================================


def test_overlong_command_split_between_cr_and_lf() -> None:
    """Regression (engine bug #2): after an overlong command line split
    between its CR and LF, the server's discard mode swallowed the next
    command (CONFORMANCE.md §3.8, split invariance at ``\\r|\\n``)."""
    wire = b"X" * 300 + b"\r\nCAPA\r\nQUIT\r\n"
    whole = run_server_transcript(wire)
    assert [type(e) for e in whole.events] == [BadCommand, Capa, Quit, ConnectionClosed]
    assert run_server_transcript(wire, [301]) == whole
    assert run_server_transcript(wire, [300, 301]) == whole


@pytest.mark.parametrize(
    "command",
    [
        lambda: Extension("USER", ("bob",)),
        lambda: Extension("stls"),
        lambda: Extension("QUIT"),
        lambda: Extension("TOP", ("1", "0")),
    ],
)
def test_extension_with_known_keyword_is_refused(command: Callable[[], Extension]) -> None:
    """Regression (engine bug #3): an Extension with a known keyword went out
    as that command, so the server parsed it as the real one and the two
    sides' states diverged (CONFORMANCE.md §2.3)."""
    pair = authorized_pair()
    with pytest.raises(LocalProtocolError):
        pair.client.send(command())


@given(
    build=st.sampled_from([Greeting, Ok, Err, MessageStart, lambda t: LangOk((("en", t),))]),
    text=st.text(min_size=1, max_size=10),
)
def test_surrogates_refused_at_construction(build: Callable[[str], Event], text: str) -> None:
    """Regression (engine bug #4): a lone surrogate in status text made
    ``send`` raise UnicodeEncodeError; only ProtocolError may escape, and
    it is now raised when the event is built."""
    with pytest.raises(LocalProtocolError):
        build(text + "\udc80")


def test_surrogate_in_status_text_is_a_local_protocol_error() -> None:
    pair = utf8_pair(State.AUTHORIZATION)
    pair.send(CLIENT, Capa())
    with pytest.raises(LocalProtocolError):
        pair.server.send(Err("bad \udc80 text"))


@given(text=status_texts(), code=response_codes)
def test_negative_greeting_keeps_response_code(text: str, code: ResponseCode) -> None:
    """Regression (engine bug #5): a negative greeting's response code stayed
    in ``Err.text`` instead of ``Err.code`` (RFC 2449 §8, CONFORMANCE.md §2.6:
    a -ERR greeting, then the end)."""
    pair = ConnectionPair()
    pair.send(SERVER, Err(text, code))
    assert pair.states == (State.CLOSED, State.CLOSED)


CODE_LIKE_TEXT = st.one_of(
    st.text(ASCII_TEXT, max_size=30),
    st.builds(
        lambda code, sep, rest: f"[{code}]{sep}{rest}",
        response_codes,
        st.sampled_from(["", " ", "  "]),
        st.text(ASCII_TEXT, max_size=20),
    ),
)


@given(text=CODE_LIKE_TEXT)
@example(text="[in-use]x")
def test_greeting_text_with_code_round_trips(text: str) -> None:
    """Regression (engine bug #6): the greeting has no ``code`` field, so its
    text must arrive verbatim; '[in-use]x' used to arrive as '[IN-USE] x'."""
    pair = ConnectionPair()
    pair.send(SERVER, Greeting(text))


@given(text=CODE_LIKE_TEXT, which=st.sampled_from(["LIST", "UIDL", "CAPA", "LANG"]))
@example(text="[SYS/TEMP] x", which="LIST")
def test_listing_text_with_code_round_trips(text: str, which: str) -> None:
    """Regression (engine bug #7): listings have no ``code`` field, so their
    +OK text must arrive verbatim; a leading ``[...]`` used to be dropped."""
    command, reply = {
        "LIST": (List(), ListOk({1: 2}, text)),
        "UIDL": (Uidl(), UidlOk({1: "a"}, text)),
        "CAPA": (Capa(), CapaOk(Capabilities(()), text)),
        "LANG": (Lang(), LangOk((), text)),
    }[which]
    pair = transaction_pair()
    pair.send(CLIENT, command)
    pair.send(SERVER, reply)


def test_capa_non_ascii_param_outside_utf8() -> None:
    """Regression (engine bug #8): CapaOk with non-ASCII parameters went out
    raw before UTF8 and the client garbled it to U+FFFD (CONFORMANCE.md §10.2: no raw
    non-ASCII before UTF8/LANG, text never garbled).  Refused now; after UTF8
    it round-trips."""
    pair = authorized_pair()
    pair.send(CLIENT, Capa())
    caps = Capabilities.build(("IMPLEMENTATION", "Dovecöt"))
    with pytest.raises(LocalProtocolError):
        pair.server.send(CapaOk(caps))
    pair = utf8_pair(State.AUTHORIZATION)
    pair.send(CLIENT, Capa())
    pair.send(SERVER, CapaOk(caps))


@given(
    languages=st.lists(
        st.tuples(
            st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1).filter(
                lambda t: not t.startswith(".")
            ),
            st.text(UNICODE_TEXT, max_size=20),
        ),
        max_size=4,
    )
)
def test_lang_listing_descriptions_are_utf8(languages: list[tuple[str, str]]) -> None:
    """Regression (engine bug #9): RFC 6856 §3.2 says language descriptions
    are UTF-8 whatever the mode; the client decoded them as ASCII."""
    pair = authorized_pair()
    pair.send(CLIENT, Lang())
    pair.send(SERVER, LangOk(tuple(languages)))


@given(text=status_texts(utf8=True))
def test_lang_reply_text_may_be_utf8(text: str) -> None:
    """Regression (engine bug #10): the +OK to ``LANG range`` is already in
    the new language (RFC 6856 §3); the server refused non-ASCII text in it."""
    pair = authorized_pair()
    pair.send(CLIENT, Lang("fr"))
    pair.send(SERVER, Ok(text))
    assert pair.client.lang and pair.server.lang


def test_known_keywords_cover_the_command_classes() -> None:
    """Keeps the Extension-name strategy honest: every command class's
    keyword is excluded from generated extension names."""
    classes: list[type[Command]] = [
        User,
        Pass,
        Apop,
        Auth,
        Stat,
        List,
        Retr,
        Dele,
        Noop,
        Rset,
        Quit,
        Top,
        Uidl,
        Capa,
        Stls,
        Utf8,
        Lang,
        Last,
    ]
    assert {cls.keyword for cls in classes} == KNOWN_KEYWORDS
    # The engine's command table is the authority: a command added there
    # (as LAST was) must be added here too, or Extension() refuses its name.
    assert {keyword.decode() for keyword in BY_KEYWORD} == KNOWN_KEYWORDS

"""Test helpers for pop3proto, in the style of h11's ``tests/helpers.py``: the
one home of everything more than one test module uses (fixtures are in
``conftest.py``).  No test module imports another.

Import everything from here (``from tests.helpers import ConnectionPair``);
the modules below hold one idea each:

* :mod:`.engine`: pulling events out of one connection, driving one by hand
  to a known state, what the peer receives for what was sent, and
  :class:`ConnectionPair` (a client and a server engine joined).
* :mod:`.transcripts`: replaying a recorded byte stream into one role, cut
  at given offsets, for the split-invariance properties.
* :mod:`.fakes`: :class:`FakeSession`, a misbehaving POP3 server for the
  client tests, and :class:`ThreadedServer`, which serves it on a socket.
* :mod:`.servers`: our server run for a test: :class:`SessionPair` (our
  client core against our server session, in memory),
  :func:`drive_session` (an offloading session's actions performed as a
  runtime would) and :func:`running_server` (each runtime on a socket).
* :mod:`.stores`: Maildirs made and inspected for the server tests, and a
  maildrop that fails on purpose.
* :mod:`.sasl`: SASL mechanisms driven against each other, and the check
  that no secret leaks into an exception.
* ``pop3proto.testing.strategies`` (public, re-exported here): Hypothesis
  strategies for field values, bodies and server replies.
"""

from __future__ import annotations

from pop3proto.testing.strategies import (
    ASCII_TEXT,
    BODY_PIECES,
    KNOWN_KEYWORDS,
    UNICODE_TEXT,
    bodies,
    capabilities,
    chunkings,
    extension_names,
    message_numbers,
    message_replies,
    optional_codes,
    passwords,
    replies_for,
    response_codes,
    sizes,
    status_texts,
    tokens,
    uids,
)

from .engine import (
    DOVECOT_CAPABILITIES,
    DOVECOT_GREETING,
    ENDED,
    GREETING_LINE,
    GREETING_TEXT,
    LOCAL,
    PASSWORD,
    PEER_CLOSED,
    TIMESTAMP,
    USER,
    ConnectionPair,
    Options,
    ask,
    bad_server_line,
    body_of,
    chunks_at,
    client_tx,
    eof,
    events_through_wait,
    expected_body,
    expected_received,
    feed_in_chunks,
    feed_through_wait,
    first,
    get_all_events,
    interesting_splits,
    login,
    merged,
    new_client,
    new_server,
    normalize_data_events,
    pipelining_client,
    receive_and_get,
    server_tx,
)
from .fakes import (
    FAKE_MESSAGES,
    FakeConfig,
    FakeSession,
    OperationRunner,
    ThreadedServer,
    serve,
)
from .sasl import (
    PASSWORDS,
    RFC2195_CHALLENGE,
    check_password,
    get_password,
    run_exchange,
    secret_free,
    wire,
)
from .servers import (
    CLIENT_TIMEOUT,
    RUNTIMES,
    Running,
    SessionPair,
    drive_session,
    figure,
    poplib_body,
    read_to_eof,
    recv_until,
    running_server,
)
from .stores import (
    EveryMethodAuthenticator,
    FlakyBackend,
    FlakyMaildrop,
    lock_is_free,
    maildir_state,
    make_maildir,
    message_file,
)
from .transcripts import (
    STANDARD_BODY,
    TranscriptResult,
    run_client_transcript,
    run_server_transcript,
    standard_reply,
)

__all__ = [
    # engine: pulling events out of one connection
    "chunks_at",
    "events_through_wait",
    "feed_in_chunks",
    "feed_through_wait",
    "get_all_events",
    "interesting_splits",
    "normalize_data_events",
    "receive_and_get",
    # engine: one connection, driven by hand
    "GREETING_LINE",
    "GREETING_TEXT",
    "PASSWORD",
    "TIMESTAMP",
    "USER",
    "Options",
    "ask",
    "bad_server_line",
    "body_of",
    "client_tx",
    "eof",
    "first",
    "merged",
    "new_client",
    "new_server",
    "pipelining_client",
    "server_tx",
    # engine: what the peer receives, a client and a server joined
    "DOVECOT_CAPABILITIES",
    "DOVECOT_GREETING",
    "ENDED",
    "LOCAL",
    "PEER_CLOSED",
    "ConnectionPair",
    "expected_body",
    "expected_received",
    "login",
    # transcripts
    "STANDARD_BODY",
    "TranscriptResult",
    "run_client_transcript",
    "run_server_transcript",
    "standard_reply",
    # fakes: a fake POP3 server for the client tests
    "FAKE_MESSAGES",
    "FakeConfig",
    "FakeSession",
    "OperationRunner",
    "ThreadedServer",
    "serve",
    # servers: our server, run for a test
    "CLIENT_TIMEOUT",
    "RUNTIMES",
    "Running",
    "SessionPair",
    "figure",
    "drive_session",
    "poplib_body",
    "read_to_eof",
    "recv_until",
    "running_server",
    # stores: Maildirs and a flaky maildrop for the server tests
    "EveryMethodAuthenticator",
    "FlakyBackend",
    "FlakyMaildrop",
    "lock_is_free",
    "maildir_state",
    "make_maildir",
    "message_file",
    # sasl: SASL exchanges
    "PASSWORDS",
    "RFC2195_CHALLENGE",
    "check_password",
    "get_password",
    "run_exchange",
    "secret_free",
    "wire",
    # strategies: Hypothesis strategies
    "ASCII_TEXT",
    "BODY_PIECES",
    "KNOWN_KEYWORDS",
    "UNICODE_TEXT",
    "bodies",
    "capabilities",
    "chunkings",
    "extension_names",
    "message_numbers",
    "message_replies",
    "optional_codes",
    "passwords",
    "replies_for",
    "response_codes",
    "sizes",
    "status_texts",
    "tokens",
    "uids",
]

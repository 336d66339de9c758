"""Gmail and Microsoft 365 OAuth 2.0 logins, replayed through the engine.

The transcripts are written from the providers' published documentation
(Google's "OAuth 2.0 Mechanism" page for IMAP/POP/SMTP, with its XOAUTH2
example message and its JSON error; Microsoft's "Authenticate an IMAP, POP
or SMTP connection using OAuth", with its POP example) and from the CAPA
replies those servers send: Gmail ``SASL PLAIN XOAUTH2`` (newer captures add
``OAUTHBEARER``) on pop.gmail.com:995, Microsoft 365 ``SASL PLAIN XOAUTH2``
on outlook.office365.com:995.  The TLS layer is left out: both are implicit
TLS (RFC 8314) and the POP3 bytes inside are what is replayed.

Each transcript runs three ways: both engine roles byte for byte (whole
and one octet at a time); our client core's ``login_oauth2`` against the
server's recorded lines, which must produce exactly the client's recorded
lines; and the server mechanisms against the client's messages.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence

import pytest

from pop3proto import (
    AUTH,
    Auth,
    Capa,
    Capabilities,
    CapaOk,
    Err,
    Greeting,
    Ok,
    SaslChallenge,
    SaslResponse,
    State,
)
from pop3proto.adapters._seam import Receive, Send
from pop3proto.adapters.client._core import ClientCore
from pop3proto.adapters.client._errors import AuthenticationFailed
from pop3proto.sasl import OAuthBearerServer, OAuthDenial, XOAuth2Server
from tests.engine.test_transcripts import C, S, Step, run_both

# ---------------------------------------------------------------------------
# Gmail: pop.gmail.com:995
# ---------------------------------------------------------------------------

GMAIL_GREETING = S(
    b"+OK Gpop ready for requests from 203.0.113.5 a1mb12345678pjb\r\n",
    Greeting("Gpop ready for requests from 203.0.113.5 a1mb12345678pjb"),
)
GMAIL_CAPA_ENTRIES = [
    ("USER",),
    ("RESP-CODES",),
    ("EXPIRE", "0"),
    ("LOGIN-DELAY", "300"),
    ("TOP",),
    ("UIDL",),
    ("X-GOOGLE-RICO",),
    ("SASL", "PLAIN", "XOAUTH2", "OAUTHBEARER"),
]
GMAIL_CAPA = [
    C(b"CAPA\r\n", Capa()),
    S(
        b"+OK Capability list follows\r\nUSER\r\nRESP-CODES\r\nEXPIRE 0\r\nLOGIN-DELAY 300\r\n"
        b"TOP\r\nUIDL\r\nX-GOOGLE-RICO\r\nSASL PLAIN XOAUTH2 OAUTHBEARER\r\n.\r\n",
        CapaOk(Capabilities.build(*GMAIL_CAPA_ENTRIES), "Capability list follows"),
    ),
]
# Google's documented example: user and token, the message, its base64.
GMAIL_USER = "someuser@example.com"
GMAIL_TOKEN = "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg"
GMAIL_XOAUTH2 = b"user=someuser@example.com\x01auth=Bearer " + GMAIL_TOKEN.encode() + b"\x01\x01"
GMAIL_XOAUTH2_B64 = (
    b"dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52YjNSbGNr"
    b"QmhkSFJoZG1semRHRXVZMjl0Q2cBAQ=="
)
# Google's documented failure: a JSON status as a challenge, answered with
# an empty line, then the failure.
GMAIL_ERROR = b'{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}'
GMAIL_ERROR_B64 = (
    b"eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiYmVhcmVyIiwic2NvcGUiOiJodHRwczovL21haWwuZ29vZ2xlLmNv"
    b"bS8ifQ=="
)


def test_documented_encodings() -> None:
    """The base64 strings are the documents' own, and decode to their messages."""
    assert base64.b64decode(GMAIL_XOAUTH2_B64) == GMAIL_XOAUTH2
    assert base64.b64decode(GMAIL_ERROR_B64) == GMAIL_ERROR
    assert base64.b64decode(M365_XOAUTH2_B64) == M365_XOAUTH2


GMAIL_XOAUTH2_SUCCESS = [
    GMAIL_GREETING,
    *GMAIL_CAPA,
    C(b"AUTH XOAUTH2 " + GMAIL_XOAUTH2_B64 + b"\r\n", Auth("XOAUTH2", GMAIL_XOAUTH2)),
    S(b"+OK Welcome.\r\n", Ok("Welcome.")),
]
GMAIL_XOAUTH2_REFUSED = [
    GMAIL_GREETING,
    *GMAIL_CAPA,
    C(b"AUTH XOAUTH2 " + GMAIL_XOAUTH2_B64 + b"\r\n", Auth("XOAUTH2", GMAIL_XOAUTH2)),
    S(b"+ " + GMAIL_ERROR_B64 + b"\r\n", SaslChallenge(GMAIL_ERROR)),
    C(b"\r\n", SaslResponse(b"")),
    S(
        b"-ERR [AUTH] Username and password not accepted.\r\n",
        Err("Username and password not accepted.", AUTH),
    ),
]

# OAUTHBEARER as Gmail takes it (RFC 7628 §3.1, with host and port as
# Google's page shows for IMAP, here for POP3S).
GMAIL_BEARER = (
    b"n,a=someuser@example.com,\x01host=pop.gmail.com\x01port=995\x01auth=Bearer "
    + GMAIL_TOKEN.encode()
    + b"\x01\x01"
)


# ---------------------------------------------------------------------------
# Microsoft 365: outlook.office365.com:995
# ---------------------------------------------------------------------------

M365_GREETING = S(
    b"+OK The Microsoft Exchange POP3 service is ready. "
    b"[UABBADcAUAAyADgAMQBDAEEAMAAwADQANQAuAEYAUgBBAFAAMgA4ADEALgBQAFIATwBEAA==]\r\n",
    Greeting(
        "The Microsoft Exchange POP3 service is ready. "
        "[UABBADcAUAAyADgAMQBDAEEAMAAwADQANQAuAEYAUgBBAFAAMgA4ADEALgBQAFIATwBEAA==]"
    ),
)
M365_CAPA = [
    C(b"CAPA\r\n", Capa()),
    S(
        b"+OK\r\nTOP\r\nUIDL\r\nSASL PLAIN XOAUTH2\r\nUSER\r\n.\r\n",
        CapaOk(Capabilities.build(("TOP",), ("UIDL",), ("SASL", "PLAIN", "XOAUTH2"), ("USER",))),
    ),
]
# Microsoft's documented POP example (scope POP.AccessAsUser.All).
M365_USER = "test@contoso.onmicrosoft.com"
M365_TOKEN = "EwBAAl3BAAUFFpUAo7J3Ve0bjLBWZWCclRC3EoAA"
M365_XOAUTH2 = (
    b"user=test@contoso.onmicrosoft.com\x01auth=Bearer " + M365_TOKEN.encode() + b"\x01\x01"
)
M365_XOAUTH2_B64 = (
    b"dXNlcj10ZXN0QGNvbnRvc28ub25taWNyb3NvZnQuY29tAWF1dGg9QmVhcmVyIEV3QkFBbDNCQUFVRkZwVUFvN0oz"
    b"VmUwYmpMQldaV0NjbFJDM0VvQUEBAQ=="
)
# The two-line exchange Microsoft expects: AUTH, "+", then the message.
M365_SUCCESS = [
    M365_GREETING,
    *M365_CAPA,
    C(b"AUTH XOAUTH2\r\n", Auth("XOAUTH2")),
    S(b"+ \r\n", SaslChallenge(b"")),
    C(M365_XOAUTH2_B64 + b"\r\n", SaslResponse(M365_XOAUTH2)),
    S(b"+OK User successfully authenticated.\r\n", Ok("User successfully authenticated.")),
]
M365_REFUSED = [
    *M365_SUCCESS[:-1],
    S(b"-ERR Authentication failure: unknown user name or bad password.\r\n",
      Err("Authentication failure: unknown user name or bad password.")),
]  # fmt: skip


@pytest.mark.parametrize(
    ("steps", "logged_in"),
    [
        (GMAIL_XOAUTH2_SUCCESS, True),
        (GMAIL_XOAUTH2_REFUSED, False),
        (M365_SUCCESS, True),
        (M365_REFUSED, False),
    ],
    ids=["gmail", "gmail-refused", "m365", "m365-refused"],
)
def test_both_roles_replay(steps: list[Step], logged_in: bool) -> None:
    client, server = run_both(steps)
    expected = State.TRANSACTION if logged_in else State.AUTHORIZATION
    assert client.state is server.state is expected


# ---------------------------------------------------------------------------
# Our client against the recorded servers
# ---------------------------------------------------------------------------


def replay_client(steps: Sequence[Step], operation_of: object, *, host: str) -> object:
    """Run ``operation_of(core)`` against the S lines of *steps*; every byte
    the core sends must be the next C line."""
    core = ClientCore(host, tls=True)
    server_lines = [s.wire for s in steps if s.side == "S"]
    client_lines = [s.wire for s in steps if s.side == "C"]
    sent = bytearray()
    inbox = bytearray(server_lines.pop(0))  # the greeting

    def run(op: object) -> object:
        gen = op  # a generator of seam requests
        try:
            request = gen.send(None)  # type: ignore[attr-defined]
            while True:
                answer: bytes | None = None
                if isinstance(request, Send):
                    sent.extend(request.data)
                    expected = client_lines.pop(0)
                    assert request.data == expected, (request.data, expected)
                    inbox.extend(server_lines.pop(0))
                elif isinstance(request, Receive):
                    answer, inbox[:] = bytes(inbox), b""
                request = gen.send(answer)  # type: ignore[attr-defined]
        except StopIteration as done:
            return done.value

    run(core.greet())
    try:
        return run(operation_of(core))  # type: ignore[operator]
    finally:
        assert not client_lines, "the client stopped early"


def test_our_client_against_gmail_xoauth2() -> None:
    # Gmail offers OAUTHBEARER too: our client takes it (RFC 7628), so the
    # recorded XOAUTH2 exchange is replayed with XOAUTH2 forced.
    result = replay_client(
        GMAIL_XOAUTH2_SUCCESS,
        lambda core: core.login_oauth2(GMAIL_USER, GMAIL_TOKEN, mechanism="XOAUTH2"),
        host="pop.gmail.com",
    )
    assert result == "XOAUTH2"


def test_our_client_reads_gmails_error() -> None:
    with pytest.raises(AuthenticationFailed) as info:
        replay_client(
            GMAIL_XOAUTH2_REFUSED,
            lambda core: core.login_oauth2(GMAIL_USER, GMAIL_TOKEN, mechanism="XOAUTH2"),
            host="pop.gmail.com",
        )
    message = str(info.value)
    assert message == (
        "AUTH XOAUTH2 failed: -ERR [AUTH] Username and password not accepted. "
        "(token refused: status 401, scope https://mail.google.com/)"
    )
    assert GMAIL_TOKEN not in message


def test_our_client_prefers_gmails_oauthbearer() -> None:
    steps = [
        GMAIL_GREETING,
        *GMAIL_CAPA,
        C(b"AUTH OAUTHBEARER " + base64.b64encode(_bearer()) + b"\r\n"),
        S(b"+OK Welcome.\r\n"),
    ]
    result = replay_client(
        steps, lambda core: core.login_oauth2(GMAIL_USER, GMAIL_TOKEN), host="pop.gmail.com"
    )
    assert result == "OAUTHBEARER"


def _bearer() -> bytes:
    # Our client sends host (it knows it) but not port (it does not track it).
    return (
        b"n,a=someuser@example.com,\x01host=pop.gmail.com\x01auth=Bearer "
        + GMAIL_TOKEN.encode()
        + b"\x01\x01"
    )


def test_our_client_against_microsoft_365_with_a_real_sized_token() -> None:
    """Microsoft's tokens are over a kilobyte: the two-line exchange, by
    RFC 5034 §4's limit, exactly as Microsoft documents it."""
    token = "EwB4A8l6BAAU" + "kXz0" * 400
    message = f"user={M365_USER}\x01auth=Bearer {token}\x01\x01".encode()
    steps = [
        M365_GREETING,
        *M365_CAPA,
        C(b"AUTH XOAUTH2\r\n"),
        # Microsoft's page shows the empty challenge as a bare "+" (RFC 5034
        # §4 writes "+ "); the engine takes both.
        S(b"+\r\n"),
        C(base64.b64encode(message) + b"\r\n"),
        S(b"+OK User successfully authenticated.\r\n"),
    ]
    result = replay_client(
        steps, lambda core: core.login_oauth2(M365_USER, token), host="outlook.office365.com"
    )
    assert result == "XOAUTH2"


def test_our_client_against_microsoft_365_refusal() -> None:
    with pytest.raises(AuthenticationFailed) as info:
        replay_client(
            [*M365_REFUSED[:3], C(b"AUTH XOAUTH2 " + M365_XOAUTH2_B64 + b"\r\n"),
             *M365_REFUSED[-1:]],
            lambda core: core.login_oauth2(M365_USER, M365_TOKEN),
            host="outlook.office365.com",
        )  # fmt: skip
    # No JSON error from Microsoft: the -ERR alone, in one line.
    assert str(info.value) == (
        "AUTH XOAUTH2 failed: -ERR Authentication failure: unknown user name or bad password."
    )


# ---------------------------------------------------------------------------
# Our server mechanisms against the recorded client messages
# ---------------------------------------------------------------------------


def test_our_server_takes_the_documented_messages() -> None:
    seen: list[tuple[str, str]] = []

    def check(user: str, token: str) -> bool:
        seen.append((user, token))
        return True

    for message in (GMAIL_XOAUTH2, M365_XOAUTH2):
        server = XOAuth2Server(check)
        assert server.step(None) == b""
        assert server.step(message) is None
    assert seen == [(GMAIL_USER, GMAIL_TOKEN), (M365_USER, M365_TOKEN)]


def test_our_server_takes_gmails_oauthbearer() -> None:
    server = OAuthBearerServer(lambda user, token: token == GMAIL_TOKEN and user)
    assert server.step(GMAIL_BEARER) is None
    assert server.authenticated_user == GMAIL_USER


def test_our_server_refuses_like_gmail() -> None:
    server = XOAuth2Server(lambda u, t: OAuthDenial(scope="https://mail.google.com/"))
    assert server.step(GMAIL_XOAUTH2) == GMAIL_ERROR
    assert json.loads(GMAIL_ERROR)["status"] == "401"

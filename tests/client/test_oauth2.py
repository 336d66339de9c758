"""``login_oauth2``: choosing OAUTHBEARER or XOAUTH2, the one- and two-line
exchanges (RFC 5034 §4), and the refusal's JSON error, in memory against
our server session and on a socket with each client runtime."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
import trio

from pop3proto.adapters.client._errors import (
    AuthenticationFailed,
    InsecureAuthenticationRefused,
)
from pop3proto.adapters.client._sync import Client as SyncClient
from pop3proto.adapters.mailstore._memory import MemoryBackend
from pop3proto.adapters.mailstore._users import DictAuthenticator
from pop3proto.adapters.server._config import ServerConfig
from pop3proto.sasl import OAuthDenial, sasl_b64decode
from tests.client.test_async_clients import FLAVORS, Flavor, running_server
from tests.helpers import PASSWORD, SessionPair

SHORT = "ya29.short-token"
LONG = "EwBwA8l6BAAU" + "x" * 1500  # Microsoft 365 tokens are over a kilobyte
MESSAGES = [b"Subject: one\r\n\r\nhello\r\n"]


def verifier(user: str, token: str) -> str | OAuthDenial:
    if user == "alice" and token in (SHORT, LONG):
        return user
    return OAuthDenial(scope="https://mail.example/pop")


def pair(*mechanisms: str, client_loopback: bool = True, **config: Any) -> SessionPair:
    if mechanisms:
        config["sasl_mechanisms"] = mechanisms
    config.setdefault("token_verifier", verifier)
    p = SessionPair(
        MemoryBackend({"alice": list(MESSAGES)}),
        DictAuthenticator({"alice": PASSWORD}),
        config=ServerConfig(**config),
        client_loopback=client_loopback,
    )
    p.run(p.core.greet())
    return p


def auth_lines(sent: bytes) -> list[bytes]:
    lines = sent.split(b"\r\n")
    start = next(i for i, line in enumerate(lines) if line.startswith(b"AUTH "))
    return lines[start:]


@pytest.mark.parametrize(
    ("offered", "expected"),
    [
        ((), "OAUTHBEARER"),  # the default list: both, OAUTHBEARER first
        (("XOAUTH2", "PLAIN"), "XOAUTH2"),
        (("PLAIN", "XOAUTH2", "OAUTHBEARER"), "OAUTHBEARER"),
    ],
)
def test_chooses_oauthbearer_else_xoauth2(offered: tuple[str, ...], expected: str) -> None:
    p = pair(*offered)
    assert p.run(p.core.login_oauth2("alice", SHORT)) == expected
    assert p.run(p.core.stat()).count == 1


@pytest.mark.parametrize("mechanism", ["OAUTHBEARER", "XOAUTH2"])
def test_short_token_rides_on_the_auth_line(mechanism: str) -> None:
    p = pair(mechanism)
    p.run(p.core.login_oauth2("alice", SHORT))
    first = auth_lines(bytes(p.sent))[0]
    name, _, initial = first[len(b"AUTH ") :].partition(b" ")
    assert name == mechanism.encode()
    message = sasl_b64decode(initial)
    assert message.endswith(b"auth=Bearer " + SHORT.encode() + b"\x01\x01")
    if mechanism == "OAUTHBEARER":
        # RFC 7628 §3.1: GS2 header with the user, and the host we connect to.
        assert message.startswith(b"n,a=alice,\x01host=mail.example.org\x01")
    else:
        assert message.startswith(b"user=alice\x01")


@pytest.mark.parametrize("mechanism", ["OAUTHBEARER", "XOAUTH2"])
def test_long_token_takes_the_two_line_exchange(mechanism: str) -> None:
    p = pair(mechanism)
    assert p.run(p.core.login_oauth2("alice", LONG)) == mechanism
    lines = auth_lines(bytes(p.sent))
    # RFC 5034 §4: no initial response on an AUTH line it would overflow;
    # the token follows the server's empty challenge.
    assert lines[0] == b"AUTH " + mechanism.encode()
    assert LONG.encode() in sasl_b64decode(lines[1])


@pytest.mark.parametrize(
    ("mechanism", "status"), [("OAUTHBEARER", "invalid_token"), ("XOAUTH2", "401")]
)
def test_refusal_reports_the_json_error_in_one_line(mechanism: str, status: str) -> None:
    p = pair(mechanism)
    with pytest.raises(AuthenticationFailed) as info:
        p.run(p.core.login_oauth2("alice", "s3cr3t-stale"))
    message = str(info.value)
    assert "\n" not in message and "s3cr3t" not in message
    assert f"token refused: status {status}, scope https://mail.example/pop" in message
    assert info.value.code is not None and info.value.code.known == "AUTH"
    # The answer to the error challenge (RFC 7628 §3.2.3: ^A; XOAUTH2: empty).
    answer = sasl_b64decode(auth_lines(bytes(p.sent))[1])
    assert answer == (b"\x01" if mechanism == "OAUTHBEARER" else b"")
    # Still in AUTHORIZATION: a fresh token works.
    assert p.run(p.core.login_oauth2("alice", SHORT)) == mechanism


def test_no_token_mechanism_offered() -> None:
    p = pair(token_verifier=None)
    with pytest.raises(AuthenticationFailed, match=re.escape("offers no OAuth 2.0 mechanism")):
        p.run(p.core.login_oauth2("alice", SHORT))
    assert b"AUTH" not in bytes(p.sent)


def test_forced_mechanism_and_argument_checks() -> None:
    p = pair()
    with pytest.raises(ValueError, match="unknown token mechanism"):
        p.run(p.core.login_oauth2("alice", SHORT, mechanism="PLAIN"))
    with pytest.raises(ValueError):
        p.run(p.core.login_oauth2("alice", ""))
    with pytest.raises(TypeError):
        p.run(p.core.login_oauth2("alice", b"tok"))  # type: ignore[arg-type]
    assert p.run(p.core.login_oauth2("alice", SHORT, mechanism="xoauth2")) == "XOAUTH2"


def test_token_never_sent_in_the_clear_to_a_remote_host() -> None:
    p = pair(client_loopback=False)
    with pytest.raises(InsecureAuthenticationRefused, match="expose the token"):
        p.run(p.core.login_oauth2("alice", SHORT))
    assert b"AUTH" not in bytes(p.sent)


def test_login_oauth2_after_login_is_refused() -> None:
    p = pair()
    p.run(p.core.login_oauth2("alice", SHORT))
    with pytest.raises(Exception, match="AUTH"):
        p.run(p.core.login_oauth2("alice", SHORT))


def test_token_refusal_text_when_the_challenge_is_not_json() -> None:
    from pop3proto.adapters.client._login import _token_refusal
    from pop3proto.sasl import XOAuth2Client

    mech = XOAuth2Client("alice", "t")
    mech.initial_response()
    assert _token_refusal(mech) is None
    mech.respond(b"<html>")
    assert _token_refusal(mech) == "the server's error is not JSON"


# ---------------------------------------------------------------------------
# On a socket, with each client runtime and each server runtime
# ---------------------------------------------------------------------------

SERVER_KINDS = ["sync", "asyncio", "trio"]
CONFIG = ServerConfig(token_verifier=verifier)


@pytest.mark.parametrize("server_kind", SERVER_KINDS)
def test_sync_client(server_kind: str) -> None:
    backend = MemoryBackend({"alice": list(MESSAGES)})
    with running_server(server_kind, backend, config=CONFIG) as (host, port):
        with SyncClient(host, port, tls="none", timeout=10) as client:
            assert client.login_oauth2("alice", LONG) == "OAUTHBEARER"
            assert client.retrieve(1) == MESSAGES[0]
        with (
            SyncClient(host, port, tls="none", timeout=10) as client,
            pytest.raises(AuthenticationFailed, match=re.escape("status invalid_token")),
        ):
            client.login_oauth2("alice", "stale")


@pytest.mark.parametrize("flavor", FLAVORS, ids=str)
@pytest.mark.parametrize("server_kind", SERVER_KINDS)
def test_async_clients(flavor: Flavor, server_kind: str) -> None:
    backend = MemoryBackend({"alice": list(MESSAGES)})

    async def main() -> None:
        async with await flavor.open(host, port, tls="none") as client:
            assert await client.login_oauth2("alice", SHORT, mechanism="XOAUTH2") == "XOAUTH2"
            assert (await client.stat()).count == 1
        async with await flavor.open(host, port, tls="none") as client:
            with pytest.raises(AuthenticationFailed, match="status 401"):
                await client.login_oauth2("alice", "stale", mechanism="XOAUTH2")

    with running_server(server_kind, backend, config=CONFIG) as (host, port):
        flavor.run(main)


@pytest.mark.parametrize("server_kind", ["asyncio", "trio"])
def test_verifier_runs_off_the_event_loop(server_kind: str) -> None:
    """A slow verifier (a subprocess, an HTTP introspection call) must not
    stall the other sessions: it is called in a worker thread."""
    on_loop: list[bool] = []

    def verify(user: str, token: str) -> str | OAuthDenial:
        inside = True
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            try:
                trio.lowlevel.current_task()
            except RuntimeError:
                inside = False
        on_loop.append(inside)
        return user

    backend = MemoryBackend({"alice": list(MESSAGES)})
    config = ServerConfig(token_verifier=verify)
    with (
        running_server(server_kind, backend, config=config) as (host, port),
        SyncClient(host, port, tls="none", timeout=10) as client,
    ):
        client.login_oauth2("alice", SHORT)
    assert on_loop == [False]

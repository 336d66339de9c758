"""OAuth 2.0 logins against Dovecot's ``oauth2`` passdb (local JWT
validation, no identity provider: see ``tests/dovecot.py``), with each
client runtime and with ``pop3proto fetch --oauth2-token-cmd``."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
import trio

import pop3proto
from pop3proto.adapters.client._asyncio import Client as AsyncioClient
from pop3proto.adapters.client._errors import AuthenticationFailed
from pop3proto.adapters.client._sync import Client as SyncClient
from pop3proto.adapters.client._trio import connect as trio_connect
from tests.dovecot import TEST_MESSAGES, DovecotServer, oauth2_token

TIMEOUT = 60.0


def wire_message(mechanism: str, user: str, token: str, host: str) -> bytes:
    if mechanism == "XOAUTH2":
        return f"user={user}\x01auth=Bearer {token}\x01\x01".encode()
    return f"n,a={user},\x01host={host}\x01auth=Bearer {token}\x01\x01".encode()


@pytest.mark.parametrize("mechanism", ["OAUTHBEARER", "XOAUTH2"])
@pytest.mark.parametrize("padding", [0, 400], ids=["one-line", "two-line"])
def test_sync_client(
    dovecot: DovecotServer, dovecot_mailbox: list[bytes], mechanism: str, padding: int
) -> None:
    token = oauth2_token(dovecot.user, padding=padding)
    one_line = pop3proto.fits_initial_response(
        mechanism, wire_message(mechanism, dovecot.user, token, dovecot.host)
    )
    assert one_line is (padding == 0)  # the exchange this case is meant to take
    with SyncClient(
        dovecot.host,
        dovecot.pop3s_port,
        tls="implicit",
        ssl_context=dovecot.ssl_context(),
        timeout=TIMEOUT,
    ) as client:
        assert client.login_oauth2(dovecot.user, token, mechanism=mechanism) == mechanism
        assert client.stat().count == len(TEST_MESSAGES)


def test_default_choice_is_oauthbearer(
    dovecot: DovecotServer, dovecot_mailbox: list[bytes]
) -> None:
    with SyncClient(
        dovecot.host, dovecot.pop3_port, ssl_context=dovecot.ssl_context(), timeout=TIMEOUT
    ) as client:  # STLS
        assert client.login_oauth2(dovecot.user, oauth2_token(dovecot.user)) == "OAUTHBEARER"


@pytest.mark.parametrize(
    ("mechanism", "status"), [("OAUTHBEARER", "invalid_token"), ("XOAUTH2", "401")]
)
def test_expired_token_is_refused_with_dovecots_json_error(
    dovecot: DovecotServer, dovecot_mailbox: list[bytes], mechanism: str, status: str
) -> None:
    token = oauth2_token(dovecot.user, ttl=-60)
    with SyncClient(
        dovecot.host,
        dovecot.pop3s_port,
        tls="implicit",
        ssl_context=dovecot.ssl_context(),
        timeout=TIMEOUT,
    ) as client:
        with pytest.raises(AuthenticationFailed) as info:
            client.login_oauth2(dovecot.user, token, mechanism=mechanism)
        message = str(info.value)
        assert f"token refused: status {status}" in message and token not in message
        # Dovecot answered the JSON challenge and is back in AUTHORIZATION.
        assert client.login_oauth2(dovecot.user, oauth2_token(dovecot.user)) == "OAUTHBEARER"


def test_async_clients(dovecot: DovecotServer, dovecot_mailbox: list[bytes]) -> None:
    token = oauth2_token(dovecot.user, padding=400)

    async def with_asyncio() -> int:
        async with AsyncioClient(
            dovecot.host,
            dovecot.pop3s_port,
            tls="implicit",
            ssl_context=dovecot.ssl_context(),
            timeout=TIMEOUT,
        ) as client:
            await client.login_oauth2(dovecot.user, token)
            return (await client.stat()).count

    async def with_trio() -> int:
        async with await trio_connect(
            dovecot.host,
            dovecot.pop3s_port,
            tls="implicit",
            ssl_context=dovecot.ssl_context(),
            timeout=TIMEOUT,
        ) as client:
            await client.login_oauth2(dovecot.user, token, mechanism="XOAUTH2")
            return (await client.stat()).count

    assert asyncio.run(with_asyncio()) == len(TEST_MESSAGES)
    assert trio.run(with_trio) == len(TEST_MESSAGES)


def test_fetch_with_token_command(
    dovecot: DovecotServer, dovecot_mailbox: list[bytes], tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(oauth2_token(dovecot.user, padding=600) + "\n")
    dest = tmp_path / "inbox"
    done = subprocess.run(
        [sys.executable, "-m", "pop3proto.adapters.cli", "fetch",
         f"pop3s://{dovecot.user}@{dovecot.host}:{dovecot.pop3s_port}",
         "--cafile", str(dovecot.ca_cert_path), "--to", str(dest),
         "--oauth2-token-cmd", f"cat {token_file}"],
        capture_output=True, text=True, env=dict(os.environ), timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"{len(TEST_MESSAGES)} stored" in done.stderr

"""POP3 for asyncio: a client and a server on the pop3proto engine.

Everything an asyncio program needs is here: :class:`Client` (the
blocking :class:`pop3proto.adapters.sync.Client` with ``await``),
:class:`Server` and :func:`serve`, the maildrop backends and
authenticators a server is built from, and the typed exceptions.

A runnable example, a server and a client in one program (over plaintext on
the loopback interface, where a password may be sent without TLS)::

    import asyncio

    from pop3proto.adapters.asyncio import Client, DictAuthenticator, MemoryBackend, Server


    async def main() -> None:
        backend = MemoryBackend({"alice": [b"Subject: hi\\r\\n\\r\\nHello, Alice!\\r\\n"]})
        users = DictAuthenticator({"alice": "correct horse"})
        async with Server(backend, users, port=0) as server:       # port 0: any free
            host, port = server.server_address
            async with Client(host, port, tls="none", timeout=10) as client:
                method = await client.login("alice", "correct horse")
                print("logged in with", method)                     # SCRAM-SHA-256
                print(await client.stat())                          # MailboxStatus(...)
                async for number, message in client.retrieve_many(await client.list()):
                    print(number, message.decode())
                await client.delete_many(await client.list())
            # leaving the "async with" sent QUIT: the deletions are committed
        print(backend.messages("alice"))                             # []


    asyncio.run(main())

Against a real server, keep the defaults: ``Client("pop.example.org")``
upgrades with STLS on port 110 (Python 3.11+, see :data:`STLS_SUPPORTED`)
and ``Client("pop.example.org", 995)`` uses implicit TLS, both verifying the
certificate.  A real server takes a ``ssl_context`` (STLS, or implicit TLS
with ``implicit_tls=True``), a :class:`MaildirBackend` and a
:class:`UsersFile` (see :func:`hash_password`).

Errors: every POP3 failure is a :class:`POP3Error` subclass
(:class:`AuthenticationFailed`, :class:`CommandFailed`, ...); network errors
and timeouts are :class:`OSError` / :class:`TimeoutError`.
"""

from __future__ import annotations

from .client._asyncio import STLS_SUPPORTED, Client, TLSMode
from .client._core import Listing, MailboxStatus
from .client._errors import (
    AuthenticationFailed,
    CommandFailed,
    ConnectionLost,
    InsecureAuthenticationRefused,
    LoginDelay,
    MailboxInUse,
    PermanentFailure,
    POP3Error,
    ProtocolViolation,
    TemporaryFailure,
    TLSUnavailable,
)
from .mailstore._maildir import MaildirBackend
from .mailstore._memory import MemoryBackend
from .mailstore._users import DictAuthenticator, UsersFile, hash_password
from .server._asyncio import Server, serve
from .server._config import ServerConfig

__all__ = [
    # the client
    "Client",
    "Listing",
    "MailboxStatus",
    "TLSMode",
    "STLS_SUPPORTED",
    # the server
    "Server",
    "serve",
    "ServerConfig",
    "MaildirBackend",
    "MemoryBackend",
    "UsersFile",
    "DictAuthenticator",
    "hash_password",
    # errors
    "POP3Error",
    "AuthenticationFailed",
    "MailboxInUse",
    "LoginDelay",
    "TemporaryFailure",
    "PermanentFailure",
    "CommandFailed",
    "InsecureAuthenticationRefused",
    "TLSUnavailable",
    "ConnectionLost",
    "ProtocolViolation",
]

"""POP3 for trio: a client and a server on the pop3proto engine.

Needs trio (``pip install 'pop3proto[trio]'``).  Everything a trio program
needs is here: :func:`connect` and :class:`Client` (the blocking
:class:`pop3proto.adapters.sync.Client` with ``await``, over any
:class:`trio.abc.Stream`), :class:`Server` and :func:`serve`, the maildrop
backends and authenticators a server is built from, and the typed
exceptions.

A runnable example, a server and a client in one program (over plaintext on
the loopback interface, where a password may be sent without TLS)::

    import trio

    from pop3proto.adapters.trio import DictAuthenticator, MemoryBackend, Server, connect


    async def main() -> None:
        backend = MemoryBackend({"alice": [b"Subject: hi\\r\\n\\r\\nHello, Alice!\\r\\n"]})
        users = DictAuthenticator({"alice": "correct horse"})
        server = Server(backend, users, port=0)                    # port 0: any free
        async with trio.open_nursery() as nursery:
            host, port = await nursery.start(server.serve)
            async with await connect(host, port, tls="none", timeout=10) as client:
                method = await client.login("alice", "correct horse")
                print("logged in with", method)                     # SCRAM-SHA-256
                print(await client.stat())                          # MailboxStatus(...)
                async for number, message in client.retrieve_many(await client.list()):
                    print(number, message.decode())
                await client.delete_many(await client.list())
            # leaving the "async with" sent QUIT: the deletions are committed
            server.shutdown()
        print(backend.messages("alice"))                             # []


    trio.run(main)

Against a real server, keep the defaults: ``await connect("pop.example.org")``
upgrades with STLS on port 110 and ``await connect("pop.example.org", 995)``
uses implicit TLS, both verifying the certificate.  Over a stream you made
yourself, use ``Client.from_stream(stream, tls=..., server_hostname=...)``.
A real server takes a ``ssl_context`` (STLS, or implicit TLS with
``implicit_tls=True``), a :class:`MaildirBackend` and a :class:`UsersFile`
(see :func:`hash_password`).

Errors: every POP3 failure is a :class:`POP3Error` subclass
(:class:`AuthenticationFailed`, :class:`CommandFailed`, ...); transport
errors and timeouts are trio's (:class:`trio.BrokenResourceError`,
:class:`trio.TooSlowError`, ...).
"""

from __future__ import annotations

try:
    import trio as _trio  # type: ignore[import-untyped, unused-ignore]  # noqa: F401
except ImportError as exc:  # pragma: no cover - trio is an optional extra
    raise ImportError(
        "pop3proto.adapters.trio needs trio, an optional dependency: pip install 'pop3proto[trio]'"
    ) from exc

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
from .client._trio import Client, TLSMode, connect
from .mailstore._maildir import MaildirBackend
from .mailstore._memory import MemoryBackend
from .mailstore._users import DictAuthenticator, UsersFile, hash_password
from .server._config import ServerConfig
from .server._trio import Server, serve

__all__ = [
    # the client
    "connect",
    "Client",
    "Listing",
    "MailboxStatus",
    "TLSMode",
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

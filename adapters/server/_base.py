"""What the blocking, asyncio and trio servers share before any I/O.

:class:`ServerBase` takes the options all three servers take, checks them
once, derives the session config from them and makes the
:class:`~._session.ServerSession` of each accepted connection, so that a
new option or a new check is written here, not three times.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import logging
import socket
import ssl
from typing import Any, ClassVar

from ..mailstore._base import AsyncMaildropBackend, MaildropBackend
from ..mailstore._users import Authenticator
from ._admission import Admission, AdmissionLimits, Decision, RefusalLog, Verdict
from ._config import ServerConfig, is_loopback_address
from ._session import ServerSession, penalties_for

__all__ = ["ServerBase", "format_peer", "no_delay"]

log = logging.getLogger("pop3proto.server")


def format_peer(address: Any) -> tuple[str, str]:
    """``(ip, "ip:port")`` for a peer address (``[ip]:port`` for IPv6);
    ``("", str(address))`` for anything else (a Unix socket, a test pipe)."""
    if isinstance(address, tuple) and len(address) >= 2:
        host = str(address[0])
        shown = f"[{host}]:{address[1]}" if ":" in host else f"{host}:{address[1]}"
        return host, shown
    return "", str(address)


def no_delay(sock: socket.socket) -> None:
    """Turn Nagle's algorithm off on an accepted TCP connection.

    A reply is often written in several pieces: a large message in chunks,
    then its terminator.  With Nagle on, a piece shorter than a segment
    waits until everything sent before it is acknowledged, and the client,
    having nothing to send, delays its acknowledgement (40 ms on Linux):
    the last piece of a message can wait that long.  On loopback that made
    a pipelined fetch of a few hundred messages with one of 4 MB seven
    times slower.  asyncio turns Nagle off only on sockets that report
    ``IPPROTO_TCP``, which an accepted socket does not (its ``proto`` is
    0), and the blocking server makes its sockets itself; trio's
    ``SocketStream`` already does this.  Not a TCP socket (a Unix socket,
    a test pipe): nothing to do.
    """
    if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == socket.SOCK_STREAM:
        # (Should the connection already be gone, its first read says so.)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class ServerBase:
    """The options of every server, checked, and the session config derived
    from them.

    A server subclasses it with its I/O layer's state in :meth:`_init_io`,
    so that all three take the same arguments (see each ``Server``'s
    docstring) from one place.  STLS is offered (``tls_available``) when
    there is a TLS context, TLS is not implicit, and the I/O layer can start
    TLS mid-stream (:attr:`stls_supported`: asyncio needs Python 3.11).

    Every server also takes ``sock``: a socket already bound and listening,
    served instead of binding *host* and *port* (e.g. one inherited by
    several worker processes, each accepting on it).
    """

    #: Whether this I/O layer can start TLS in the middle of a stream (STLS).
    stls_supported: ClassVar[bool] = True
    #: Whether sessions hand calls that may block to the runtime (an event
    #: loop must not make them itself; see ``ServerSession(offload=)``).
    offloads: ClassVar[bool] = False
    #: Whether the runtime can await a backend's coroutine functions
    #: (:class:`AsyncMaildropBackend`): only the event-loop servers can.
    awaits: ClassVar[bool] = False

    def __init__(
        self,
        backend: MaildropBackend | AsyncMaildropBackend,
        authenticator: Authenticator,
        *,
        host: str = "127.0.0.1",
        port: int = 1110,
        ssl_context: ssl.SSLContext | None = None,
        implicit_tls: bool = False,
        config: ServerConfig | None = None,
        max_connections: int = 100,
        handshake_timeout: float = 30.0,
        linger: float = 1.0,
        backlog: int = 128,
        trust_loopback: bool = True,
        worker_threads: int = 8,
        sock: socket.socket | None = None,
    ) -> None:
        """Check the arguments; see the class docstring."""
        if worker_threads < 1:
            raise ValueError("worker_threads must be at least 1")
        if not self.awaits and inspect.iscoroutinefunction(getattr(backend, "open", None)):
            raise TypeError(
                "this backend's open() is a coroutine function: serve it with the "
                "asyncio or trio server"
            )
        if implicit_tls and ssl_context is None:
            raise ValueError("implicit_tls needs an ssl_context")
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        if not handshake_timeout > 0:
            raise ValueError("handshake_timeout must be positive")
        stls = ssl_context is not None and not implicit_tls and self.stls_supported
        base = config if config is not None else ServerConfig()
        self.config = dataclasses.replace(base, tls_available=stls)
        self.backend = backend
        self.authenticator = authenticator
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self.implicit_tls = implicit_tls
        self.max_connections = max_connections
        self.handshake_timeout = handshake_timeout
        self.linger = linger
        self.backlog = backlog
        self.trust_loopback = trust_loopback
        self.worker_threads = worker_threads
        #: A socket already bound and listening (``sock=``), accepted on
        #: instead of binding *host*/*port*: one listening socket shared by
        #: several worker processes (``pop3proto serve --workers``).
        self.sock = sock
        #: The connection slots (see :mod:`._admission`), counted from accept.
        self.admission = Admission(
            AdmissionLimits(
                max_connections=max_connections,
                max_preauth_per_ip=self.config.max_preauth_per_ip,
                max_sessions_per_ip=self.config.max_sessions_per_ip,
                line_timeout=self.config.line_timeout,
                login_timeout=self.config.login_timeout,
            )
        )
        self._refusals = RefusalLog()
        #: The failed logins of every connection of this server (SECURITY.md
        #: "Authentication failures"); one record per process.
        self.auth_penalties = penalties_for(self.config)
        self._init_io()

    def _init_io(self) -> None:
        """Set up the I/O layer's own state (the blocking server binds here)."""

    def _admit(self, ip: str, peer: str, now: float) -> Decision:
        """Decide for a connection just accepted (see :mod:`._admission`);
        log refusals and evictions without flooding the log."""
        decision = self.admission.admit(ip, now)
        if decision.ticket is None:
            count = self._refusals.refused(now)
            if count:
                why = (
                    f"over the per-address limits for {ip or peer}"
                    if decision.verdict is Verdict.REFUSE_IP
                    else f"{self.max_connections} connections already open"
                )
                log.warning("refused %d connection(s): the latest %s", count, why)
        elif decision.victim is not None:
            log.debug("dropped the oldest idle connection before login for %s", peer)
        return decision

    def _new_session(self, ip: str, peer: str) -> ServerSession:
        """The session of a client accepted from *ip* (*peer* as logged;
        see :func:`format_peer`)."""
        return ServerSession(
            self.backend,
            self.authenticator,
            self.config,
            tls=self.implicit_tls,
            is_loopback=self.trust_loopback and is_loopback_address(ip),
            peer=peer,
            offload=self.offloads,
            penalties=self.auth_penalties,
            ip=ip,
        )

"""The bundled server, as a ``pop3proto.testing`` server under test.

:func:`session_factory` adapts :class:`~pop3proto.adapters.server.ServerSession`
(the I/O-free session all three server runtimes share) to the
:class:`pop3proto.testing.ServerUnderTest` protocol, so that
``pop3proto.testing.check_server`` can drive it; :class:`SessionUnderTest`
wraps any one session, for a custom maildrop backend or authenticator::

    from pop3proto.adapters.testing import session_factory
    from pop3proto.testing import check_server

    check_server(session_factory())          # the in-memory backend
"""

from __future__ import annotations

from collections.abc import Callable

from pop3proto.testing import Mailbox, ServerUnderTest

from ._seam import Close, Send
from .mailstore._base import MaildropBackend
from .mailstore._memory import MemoryBackend
from .mailstore._users import DictAuthenticator
from .server._config import ServerConfig
from .server._session import ServerSession

__all__ = ["SessionUnderTest", "session_factory"]


class SessionUnderTest:
    """One :class:`ServerSession`, driven with bytes (a ``ServerUnderTest``)."""

    def __init__(self, session: ServerSession) -> None:
        self.session = session
        self._closed = False

    @property
    def closed(self) -> bool:
        """Whether the session asked for the transport to be closed."""
        return self._closed

    def start(self) -> bytes:
        """The greeting."""
        return self.session.greeting()

    def receive(self, data: bytes) -> bytes:
        """Feed *data*; return what the session sends in response."""
        self.session.receive(data)
        out = bytearray()
        for action in self.session.actions():
            if isinstance(action, Send):
                out += action.data
            elif isinstance(action, Close):
                self._closed = True
        return bytes(out)

    def close(self) -> None:
        """The client went away: end without UPDATE (idempotent)."""
        self.session.connection_lost()
        self._closed = True


def session_factory(
    make_backend: Callable[[Mailbox], MaildropBackend] | None = None,
    config: ServerConfig | None = None,
) -> Callable[[Mailbox], Callable[[], ServerUnderTest]]:
    """A ``pop3proto.testing.ServerFactory`` for the bundled server.

    *make_backend* builds the store for a test's mailbox (default: a
    :class:`MemoryBackend` holding its messages); the users are the
    mailbox's one user.  Sessions run as if on loopback, so USER/PASS are
    allowed without TLS.
    """

    def factory(mailbox: Mailbox) -> Callable[[], ServerUnderTest]:
        if make_backend is None:
            backend: MaildropBackend = MemoryBackend({mailbox.user: list(mailbox.messages)})
        else:
            backend = make_backend(mailbox)
        users = DictAuthenticator({mailbox.user: mailbox.password})

        def connect() -> ServerUnderTest:
            return SessionUnderTest(ServerSession(backend, users, config, is_loopback=True))

        return connect

    return factory

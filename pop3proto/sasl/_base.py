"""The two halves of a SASL exchange, their errors, and the helpers mechanisms share.

:class:`SaslClientMechanism` and :class:`SaslServerMechanism` hold the
contract of one exchange (RFC 4422 §5, RFC 5034 §4): who speaks first, how
a deferred initial response is delivered, when an exchange is complete or
spent.  Each mechanism family subclasses them in its own module and fills
in only its messages.
"""

from __future__ import annotations

import abc
import secrets
from collections.abc import Iterable
from typing import ClassVar, Final

__all__ = [
    "SaslError",
    "SaslAuthenticationFailed",
    "SaslServerVerificationFailed",
    "SaslClientMechanism",
    "SaslServerMechanism",
]


# ---------------------------------------------------------------------------
# Exceptions
# ---------------------------------------------------------------------------


class SaslError(Exception):
    """Base class for SASL mechanism failures.

    Deliberately *not* a :class:`~pop3proto.ProtocolError`: a failed
    authentication is an ordinary outcome (the server answers ``-ERR``, the
    client cancels with ``*``, RFC 5034 §4), not a broken connection.

    Raised directly only for misuse of a mechanism object (calling it after
    the exchange is over, or out of order).
    """


class SaslAuthenticationFailed(SaslError):
    """Server side: the credentials were rejected or the client's message was malformed."""


class SaslServerVerificationFailed(SaslError):
    """Client side: the server's message was malformed or failed verification.

    Raised for a SCRAM server signature mismatch, a SCRAM ``e=`` error, and
    any challenge the mechanism cannot accept (for example a challenge after
    PLAIN has nothing left to say).
    """


# ---------------------------------------------------------------------------
# Client side
# ---------------------------------------------------------------------------


class SaslClientMechanism(abc.ABC):
    """The client half of one SASL exchange (RFC 4422 §5, RFC 5034 §4).

    Each instance runs one exchange.  Contract:

    1. Optionally call :meth:`initial_response` (any number of times, before
       the first :meth:`respond`; it returns the same value each time).  It
       returns the client-first message, or ``None`` for server-first
       mechanisms (CRAM-MD5, LOGIN).  The caller decides whether to put it
       on the AUTH line (see :func:`fits_initial_response`; RFC 5034 §4 also
       requires the server to have advertised the SASL capability).
    2. For every ``+`` challenge, call :meth:`respond` with the decoded
       challenge and send the result (base64) as the next line.

    The deferred initial response needs no extra call: if the initial
    response was *not* sent with AUTH, the server's first challenge is empty
    (RFC 4422 §5), and ``respond(b"")`` as the first call returns the initial
    response.  If it *was* sent, the server's first challenge is its reply
    to it, which is never empty for the mechanisms here, and ``respond``
    treats it as such.  (A server that answers a sent initial response with
    an empty challenge gets the initial response a second time, and then
    rejects the exchange.)

    :attr:`complete` says whether the mechanism finished its side: when the
    server reports success (``+OK``) while ``complete`` is false, the server
    skipped something it owed (for SCRAM, its signature) and the client must
    not trust the session.  For the single-message mechanisms (PLAIN,
    XOAUTH2, OAUTHBEARER) it is true as soon as the initial response has been
    produced; for SCRAM only after the server signature has been verified.

    :meth:`respond` raises :class:`SaslServerVerificationFailed` for a
    challenge it cannot accept; the caller should then cancel with ``*``.
    After that, or for out-of-order calls, it raises :class:`SaslError`.
    """

    #: IANA-registered mechanism name, upper case (RFC 4422 §3.1).
    name: ClassVar[str]
    # Single-message mechanisms are done once their initial response is out.
    _done_after_initial_response: ClassVar[bool] = False

    def __init__(self) -> None:
        self._ir_requested = False
        self._started = False
        self._failed = False
        self._complete = False

    # -- hooks -------------------------------------------------------------

    def _first_message(self) -> bytes | None:
        """The client-first message (deterministic), or ``None`` if server-first."""
        return None

    @abc.abstractmethod
    def _next(self, challenge: bytes) -> bytes:
        """Answer a challenge that is not the request for the initial response."""

    def _safe_fields(self) -> Iterable[tuple[str, object]]:
        """Non-secret fields shown by ``repr``."""
        return ()

    # -- public API --------------------------------------------------------

    def initial_response(self) -> bytes | None:
        """Return the client-first message, or ``None`` for a server-first mechanism.

        See the class docstring for how an initial response that was not
        sent with AUTH is delivered later.
        """
        if self._started:
            raise SaslError("initial_response() must be called before respond()")
        message = self._first_message()
        if message is not None:
            self._ir_requested = True
            if self._done_after_initial_response:
                self._complete = True
        return message

    def respond(self, challenge: bytes) -> bytes:
        """Return the answer to the server's (already base64-decoded) *challenge*."""
        if self._failed:
            raise SaslError("this SASL exchange has already failed")
        first = not self._started
        self._started = True
        try:
            if first:
                message = self._first_message()
                if message is not None:
                    if challenge == b"":
                        # RFC 4422 §5 / RFC 5034 §4: an empty first challenge
                        # asks for the initial response AUTH did not carry.
                        if self._done_after_initial_response:
                            self._complete = True
                        return message
                    if not self._ir_requested:
                        raise SaslServerVerificationFailed(
                            "server sent data before the client-first message"
                        )
            return self._next(challenge)
        except SaslError:
            self._failed = True
            self._complete = False
            raise

    @property
    def complete(self) -> bool:
        """True once this side has sent everything and verified everything it must."""
        return self._complete and not self._failed

    def __repr__(self) -> str:
        fields = [f"{key}={value!r}" for key, value in self._safe_fields()]
        fields.append(f"complete={self.complete!r}")
        return f"<{type(self).__name__} {self.name} {' '.join(fields)}>"


# ---------------------------------------------------------------------------
# Server side
# ---------------------------------------------------------------------------


class SaslServerMechanism(abc.ABC):
    """The server half of one SASL exchange (RFC 4422 §5, RFC 5034 §4).

    Contract of :meth:`step`:

    * First call: the decoded initial response from the AUTH line, or
      ``None`` if AUTH had none.  A client-first mechanism answers ``None``
      with ``b""``, the empty challenge that asks for the initial response.
    * Later calls: the client's decoded response lines (never ``None``).
    * Returns the next challenge (to send as ``+ base64``), or ``None`` once
      authentication has **succeeded**; :attr:`authenticated_user` is then
      set.
    * Raises :class:`SaslAuthenticationFailed` for rejected credentials or a
      malformed message; the engine answers ``-ERR``.  After success or
      failure the object is spent and further calls raise :class:`SaslError`.

    :attr:`server_first` is true for mechanisms that take no initial response
    (CRAM-MD5): the engine should answer an AUTH carrying one with ``-ERR``
    (RFC 5034 §4); if it is passed to :meth:`step` anyway, the step fails.

    Password checks are done by callbacks supplied by the application; they
    should compare in constant time (for example with
    :func:`hmac.compare_digest` or a password-hashing library).
    """

    #: IANA-registered mechanism name, upper case (RFC 4422 §3.1).
    name: ClassVar[str]
    #: True when the client must not send an initial response.
    server_first: ClassVar[bool] = False

    def __init__(self) -> None:
        self._authenticated_user: str | None = None
        self._calls = 0
        self._finished = False

    @property
    def authenticated_user(self) -> str | None:
        """The identity to act as (authorization identity if any), or ``None`` until success."""
        return self._authenticated_user

    @abc.abstractmethod
    def _step(self, response: bytes | None) -> bytes | None:
        """Mechanism-specific step; call :meth:`_succeed` to finish successfully."""

    def _succeed(self, user: str) -> None:
        self._authenticated_user = user

    def step(self, response: bytes | None) -> bytes | None:
        """Feed the client's next decoded message; see the class docstring."""
        if self._finished:
            raise SaslError("this SASL exchange is already over")
        first = self._calls == 0
        if response is None and not first:
            raise SaslError("None (no initial response) is only valid on the first step")
        self._calls += 1
        try:
            if first and response is not None and self.server_first:
                raise SaslAuthenticationFailed(f"{self.name} does not take an initial response")
            challenge = self._step(response)
        except SaslAuthenticationFailed:
            self._finished = True
            raise
        if challenge is None:
            self._finished = True
            if self._authenticated_user is None:  # pragma: no cover - internal bug guard
                raise SaslError("mechanism finished without an authenticated user")
        return challenge

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.name} finished={self._finished!r}"
            f" authenticated_user={self._authenticated_user!r}>"
        )


def _decode_client(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    # Outside the except block: the UnicodeDecodeError quotes the offending
    # byte (maybe part of a password) and must not survive as __context__.
    raise SaslAuthenticationFailed(f"{what} is not valid UTF-8")


# ---------------------------------------------------------------------------
# Shared by several mechanisms: the fake-user key (CRAM-MD5, SCRAM) and GS2
# saslname escaping (SCRAM, OAUTHBEARER)
# ---------------------------------------------------------------------------

# Keyed once per process: fake salts for unknown users must be stable across
# attempts (a salt that changes every time would reveal that the user does
# not exist) yet unpredictable to anyone outside the process.  SCRAM derives
# its fake salts from it; CRAM-MD5 uses it as the HMAC key of unknown users.
_FAKE_SALT_KEY: Final = secrets.token_bytes(32)


def _escape_saslname(name: str) -> str:
    # RFC 5802 §5.1 (also RFC 5801 §4 for the GS2 authzid): "=" and "," are
    # written as "=3D" and "=2C".  "=" first, or "=2C" would be re-escaped.
    return name.replace("=", "=3D").replace(",", "=2C")


def _unescape_saslname(value: str) -> str | None:
    """Undo :func:`_escape_saslname`; ``None`` for a bad escape or a ",".

    RFC 5802 §5.1: a "=" not followed by "2C" or "3D" MUST fail.
    """
    if "," in value:
        return None
    parts = value.split("=")
    out = [parts[0]]
    for part in parts[1:]:
        if part.startswith("2C"):
            out.append("," + part[2:])
        elif part.startswith("3D"):
            out.append("=" + part[2:])
        else:
            return None
    return "".join(out)

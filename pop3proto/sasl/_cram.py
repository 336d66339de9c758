"""CRAM-MD5 (RFC 2195), both sides: an HMAC-MD5 of the server's challenge.

The password never crosses the wire, but the server must hold it in clear
(or an equivalent HMAC key), and a recorded exchange allows an offline
dictionary attack.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Iterable
from typing import ClassVar

from ._base import (
    _FAKE_SALT_KEY,
    SaslAuthenticationFailed,
    SaslClientMechanism,
    SaslServerMechanism,
    SaslServerVerificationFailed,
    _decode_client,
)
from ._codec import _utf8

__all__ = ["CramMD5Client", "CramMD5Server"]


class CramMD5Client(SaslClientMechanism):
    """CRAM-MD5 (RFC 2195): answers the challenge with ``user SP hex(HMAC-MD5)``.

    Server-first; no initial response.
    """

    name: ClassVar[str] = "CRAM-MD5"

    def __init__(self, username: str, password: str) -> None:
        """Create the mechanism for *username* and *password*."""
        super().__init__()
        self._username = username
        self._user_bytes = _utf8(username, "username")
        self._key = _utf8(password, "password")

    def _next(self, challenge: bytes) -> bytes:
        if self._complete:
            raise SaslServerVerificationFailed("unexpected second CRAM-MD5 challenge")
        if not challenge:
            # An empty challenge gives no replay protection; RFC 2195 §2
            # requires a unique msg-id style string.
            raise SaslServerVerificationFailed("empty CRAM-MD5 challenge")
        # RFC 2195 §2: the response is the user name, a space, and the
        # HMAC-MD5 (RFC 2104) of the challenge keyed with the password, as
        # 32 lowercase hex digits.
        digest = hmac.new(self._key, challenge, hashlib.md5).hexdigest()
        self._complete = True
        return self._user_bytes + b" " + digest.encode("ascii")

    def _safe_fields(self) -> Iterable[tuple[str, object]]:
        yield ("username", self._username)


class CramMD5Server(SaslServerMechanism):
    """CRAM-MD5 (RFC 2195) server.

    ``get_password(user)`` returns the user's cleartext password (CRAM-MD5
    needs it, or an equivalent HMAC key) or ``None`` for an unknown user.
    The digest comparison is constant time, and an unknown user costs the
    same work as a wrong password.  The default *challenge* is
    ``<RANDOMHEX@pop3proto>`` from :mod:`secrets` (RFC 2195 §2 asks for a
    unique msg-id style string; there is no clock here to add a timestamp).
    """

    name: ClassVar[str] = "CRAM-MD5"
    server_first: ClassVar[bool] = True

    def __init__(
        self,
        get_password: Callable[[str], str | None],
        *,
        challenge: str | None = None,
    ) -> None:
        """Create the mechanism; *challenge* overrides the random one (for tests)."""
        super().__init__()
        if challenge is None:
            challenge = f"<{secrets.token_hex(16)}@pop3proto>"
        elif not challenge:
            raise ValueError("CRAM-MD5 challenge must not be empty")
        self._get_password = get_password
        self._challenge = _utf8(challenge, "challenge")

    def _step(self, response: bytes | None) -> bytes | None:
        if response is None:
            return self._challenge
        # RFC 2195 §2: user SP digest, digest = 32 lowercase hex.  Split at
        # the last space: user names may contain spaces, digests cannot.
        user, sep, digest = _decode_client(response, "CRAM-MD5 response").rpartition(" ")
        if not sep or not user or len(digest) != 32:
            raise SaslAuthenticationFailed("malformed CRAM-MD5 response")
        digest = digest.lower()
        if not all(c in "0123456789abcdef" for c in digest):
            raise SaslAuthenticationFailed("malformed CRAM-MD5 response")
        password = self._get_password(user)
        # Same HMAC work for unknown users so timing does not tell them apart.
        key = _utf8(password, "password") if password is not None else _FAKE_SALT_KEY
        expected = hmac.new(key, self._challenge, hashlib.md5).hexdigest()
        matches = hmac.compare_digest(expected.encode("ascii"), digest.encode("ascii"))
        if not matches or password is None:
            raise SaslAuthenticationFailed("authentication failed")
        self._succeed(user)
        return None

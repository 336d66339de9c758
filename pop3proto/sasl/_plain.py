"""PLAIN (RFC 4616) and LOGIN (draft-murchison-sasl-login), both sides.

Both send the password itself, base64 being no protection: they belong on
TLS or loopback only (RFC 5034 §4, RFC 2595 §2.3), which the registry
records as ``sends_password``.  The servers SASLprep what they receive
(RFC 4616 §2) before calling the application's ``check_password``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import ClassVar

from ._base import (
    SaslAuthenticationFailed,
    SaslClientMechanism,
    SaslServerMechanism,
    SaslServerVerificationFailed,
    _decode_client,
)
from ._codec import _utf8
from ._saslprep import saslprep

__all__ = ["PlainClient", "LoginClient", "PlainServer", "LoginServer"]


# ---------------------------------------------------------------------------
# Client side
# ---------------------------------------------------------------------------


class PlainClient(SaslClientMechanism):
    """PLAIN (RFC 4616): ``authzid NUL authcid NUL passwd`` in one message.

    Only safe over TLS.  The strings are sent as given (UTF-8); preparing
    them with SASLprep is the server's job (RFC 4616 §2).
    """

    name: ClassVar[str] = "PLAIN"
    _done_after_initial_response: ClassVar[bool] = True

    def __init__(self, username: str, password: str, authzid: str = "") -> None:
        """Raise ValueError for an empty username/password or one containing NUL."""
        super().__init__()
        if not username or not password:
            raise ValueError("PLAIN needs a non-empty username and password")
        for value in (username, password, authzid):
            if "\0" in value:
                raise ValueError("PLAIN fields must not contain NUL")
        # RFC 4616 §2: message = [authzid] UTF8NUL authcid UTF8NUL passwd
        self._message = b"\0".join(
            (_utf8(authzid, "authzid"), _utf8(username, "username"), _utf8(password, "password"))
        )
        self._username = username
        self._authzid = authzid

    def _first_message(self) -> bytes:
        return self._message

    def _next(self, challenge: bytes) -> bytes:
        raise SaslServerVerificationFailed("unexpected challenge after the PLAIN message")

    def _safe_fields(self) -> Iterable[tuple[str, object]]:
        yield ("username", self._username)
        if self._authzid:
            yield ("authzid", self._authzid)


class LoginClient(SaslClientMechanism):
    """LOGIN (draft-murchison-sasl-login): username, then password, on request.

    Server-first.  The two challenges are answered by their *order*, not by
    their text: servers send "Username:", "User Name", localized prompts or
    nothing at all.
    """

    name: ClassVar[str] = "LOGIN"

    def __init__(self, username: str, password: str) -> None:
        """Create the mechanism for *username* and *password*."""
        super().__init__()
        self._answers = [_utf8(username, "username"), _utf8(password, "password")]
        self._username = username

    def _next(self, challenge: bytes) -> bytes:
        if not self._answers:
            raise SaslServerVerificationFailed("unexpected third LOGIN challenge")
        answer = self._answers.pop(0)
        if not self._answers:
            self._complete = True
        return answer

    def _safe_fields(self) -> Iterable[tuple[str, object]]:
        yield ("username", self._username)


# ---------------------------------------------------------------------------
# Server side
# ---------------------------------------------------------------------------


def _prep_identity(text: str) -> str:
    """SASLprep a received name or password as a query; fail on error or empty.

    RFC 4616 §2 and RFC 5034 §6: if preparation fails or yields an empty
    string, authentication fails.
    """
    try:
        prepared = saslprep(text, allow_unassigned=True)
    except ValueError:
        prepared = None
    if prepared is None:
        raise SaslAuthenticationFailed("credentials rejected by SASLprep")
    if not prepared:
        raise SaslAuthenticationFailed("empty identity or password")
    return prepared


def _default_authorize(authzid: str, authcid: str) -> bool:
    return authzid == "" or authzid == authcid


class PlainServer(SaslServerMechanism):
    """PLAIN (RFC 4616) server.

    ``check_password(authcid, password)`` decides authentication;
    ``authorize(authzid, authcid)`` decides whether the authenticated user may
    act as the requested authorization identity (default: only an empty
    authzid or one equal to authcid).  Both receive SASLprep'd strings
    (RFC 4616 §2, query rules, an empty or unpreparable value fails; the
    authzid is empty when the client sent none).  On success
    :attr:`authenticated_user` is the authzid if one was given, else authcid.
    """

    name: ClassVar[str] = "PLAIN"

    def __init__(
        self,
        check_password: Callable[[str, str], bool],
        *,
        authorize: Callable[[str, str], bool] | None = None,
    ) -> None:
        """Create the mechanism with the application's callbacks."""
        super().__init__()
        self._check_password = check_password
        self._authorize = authorize or _default_authorize

    def _step(self, response: bytes | None) -> bytes | None:
        if response is None:
            return b""  # RFC 4422 §5: ask for the initial response.
        # RFC 4616 §2: message = [authzid] UTF8NUL authcid UTF8NUL passwd
        parts = response.split(b"\0")
        if len(parts) != 3:
            raise SaslAuthenticationFailed("malformed PLAIN message")
        raw_authzid, raw_authcid, raw_password = (_decode_client(p, "PLAIN message") for p in parts)
        authcid = _prep_identity(raw_authcid)
        password = _prep_identity(raw_password)
        authzid = _prep_identity(raw_authzid) if raw_authzid else ""
        if not self._check_password(authcid, password):
            raise SaslAuthenticationFailed("authentication failed")
        if not self._authorize(authzid, authcid):
            raise SaslAuthenticationFailed("authorization identity not permitted")
        self._succeed(authzid or authcid)
        return None


class LoginServer(SaslServerMechanism):
    """LOGIN (draft-murchison-sasl-login) server.

    Challenges ``b"Username:"`` then ``b"Password:"`` (the prompts widely
    deployed clients expect).  An initial response, which some clients send,
    is taken as the username, as Dovecot and Cyrus do.  The name and
    password are SASLprep'd (query) before ``check_password(user, password)``.
    """

    name: ClassVar[str] = "LOGIN"

    def __init__(self, check_password: Callable[[str, str], bool]) -> None:
        """Create the mechanism with the application's password check."""
        super().__init__()
        self._check_password = check_password
        self._username: str | None = None

    def _step(self, response: bytes | None) -> bytes | None:
        if response is None:
            return b"Username:"
        if self._username is None:
            self._username = _prep_identity(_decode_client(response, "LOGIN username"))
            return b"Password:"
        password = _prep_identity(_decode_client(response, "LOGIN password"))
        if not self._check_password(self._username, password):
            raise SaslAuthenticationFailed("authentication failed")
        self._succeed(self._username)
        return None

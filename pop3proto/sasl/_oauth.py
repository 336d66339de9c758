"""XOAUTH2 (Google, Microsoft) and OAUTHBEARER (RFC 7628), both sides.

Both carry an OAuth 2.0 bearer token (RFC 6750) in one client-first
message, and the server may answer a rejected token with one JSON error
challenge before failing.  Whoever sees a bearer token can use it until it
expires, so like PLAIN they belong on TLS only (RFC 7628 §5).
"""

from __future__ import annotations

import abc
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import ClassVar, TypeAlias

from ._base import (
    SaslAuthenticationFailed,
    SaslClientMechanism,
    SaslServerMechanism,
    SaslServerVerificationFailed,
    _decode_client,
    _escape_saslname,
    _unescape_saslname,
)
from ._codec import _utf8

__all__ = [
    "XOAuth2Client",
    "OAuthBearerClient",
    "XOAuth2Server",
    "OAuthBearerServer",
    "OAuthDenial",
    "TokenCheck",
    "TokenVerdict",
]


# ---------------------------------------------------------------------------
# Client side
# ---------------------------------------------------------------------------


def _check_oauth_field(value: str, what: str) -> None:
    # The OAuth messages are framed by ^A (0x01); a field containing one
    # (or any other control character) would forge extra key/value pairs.
    if not value or any(ord(c) < 0x20 or c == "\x7f" for c in value):
        raise ValueError(f"{what} must be non-empty and free of control characters")


class _BearerTokenClient(SaslClientMechanism):
    """What XOAUTH2 and OAUTHBEARER share: one client-first message holding
    a bearer token, and at most one error challenge, kept for the caller
    and answered with :attr:`_error_answer` (after which the server sends
    ``-ERR``)."""

    _done_after_initial_response: ClassVar[bool] = True
    _error_answer: ClassVar[bytes] = b""

    def __init__(self, username: str, message: bytes) -> None:
        super().__init__()
        self._username = username
        self._message = message
        self._error: bytes | None = None

    @property
    def error_challenge(self) -> bytes | None:
        """The server's error challenge (usually JSON), or ``None`` if none was sent."""
        return self._error

    def _first_message(self) -> bytes:
        return self._message

    def _next(self, challenge: bytes) -> bytes:
        if self._error is not None:
            raise SaslServerVerificationFailed(f"unexpected challenge after the {self.name} error")
        self._error = challenge
        self._complete = False
        return self._error_answer

    def _safe_fields(self) -> Iterable[tuple[str, object]]:
        yield ("username", self._username)


class XOAuth2Client(_BearerTokenClient):
    """XOAUTH2 (Google, Microsoft): ``user=U ^A auth=Bearer TOKEN ^A ^A``.

    Client-first.  If the token is rejected the server sends a JSON error
    status as a challenge; per Google's documentation the client answers
    with an empty response and the server then sends ``-ERR``.  The raw
    error is kept in :attr:`error_challenge` (useful to decide whether to
    refresh the token), and :attr:`complete` becomes false.
    """

    name: ClassVar[str] = "XOAUTH2"

    def __init__(self, username: str, access_token: str) -> None:
        """Raise ValueError for empty fields or fields with control characters."""
        _check_oauth_field(username, "username")
        _check_oauth_field(access_token, "access token")
        message = _utf8(f"user={username}\x01auth=Bearer {access_token}\x01\x01", "access token")
        super().__init__(username, message)


class OAuthBearerClient(_BearerTokenClient):
    """OAUTHBEARER (RFC 7628) without channel binding.

    Sends ``n,a=USER,^Ahost=H^Aport=P^Aauth=Bearer TOKEN^A^A`` (RFC 7628
    §3.1; *host* and *port* only when given).  On an error challenge
    (RFC 7628 §3.2.2) it answers with a single ``^A`` (§3.2.3), keeps the
    challenge in :attr:`error_challenge` and stops being :attr:`complete`.
    """

    name: ClassVar[str] = "OAUTHBEARER"
    # RFC 7628 §3.2.3: the client answers the error with a lone kvsep.
    _error_answer: ClassVar[bytes] = b"\x01"

    def __init__(
        self,
        username: str,
        access_token: str,
        *,
        host: str | None = None,
        port: int | None = None,
    ) -> None:
        """Raise ValueError for empty/control-character fields or a bad port."""
        _check_oauth_field(username, "username")
        _check_oauth_field(access_token, "access token")
        pairs = []
        if host is not None:
            _check_oauth_field(host, "host")
            pairs.append(f"host={host}")
        if port is not None:
            if not 0 <= port <= 65535:
                raise ValueError("port must be in 0..65535")
            pairs.append(f"port={port}")
        pairs.append(f"auth=Bearer {access_token}")
        # RFC 7628 §3.1: client-resp = gs2-header kvsep *kvpair kvsep, with
        # the authzid escaped as a GS2 saslname (RFC 5801 §4).
        gs2_header = f"n,a={_escape_saslname(username)},"
        text = gs2_header + "\x01" + "".join(p + "\x01" for p in pairs) + "\x01"
        super().__init__(username, _utf8(text, "access token"))


# ---------------------------------------------------------------------------
# Server side
# ---------------------------------------------------------------------------


def _parse_bearer(value: str) -> str | None:
    # RFC 6750 §2.1 / RFC 7628 §3.1: auth-value = "Bearer" 1*SP b64token;
    # the scheme name is case-insensitive (RFC 7235 §2.1).
    scheme, sep, token = value.partition(" ")
    token = token.lstrip(" ")
    if not sep or scheme.lower() != "bearer" or not token:
        return None
    return token


def _check_json_field(value: str | None, what: str) -> None:
    if value is not None and (not value or not value.isprintable()):
        raise ValueError(f"{what} must be non-empty printable text")


@dataclass(frozen=True, slots=True)
class OAuthDenial:
    """A token verifier's refusal, with what the error challenge should say.

    The server sends it as the JSON error challenge before failing the
    exchange (RFC 7628 §3.2.2 for OAUTHBEARER; Google's and Microsoft's
    XOAUTH2 send the same shape).  Every field is optional:

    Fields:
        status: the error status; ``None`` for the mechanism's usual one
            (``"invalid_token"`` for OAUTHBEARER, RFC 7628 §3.2.2 and
            RFC 6750 §3.1; ``"401"`` for XOAUTH2, as Gmail sends).
        scope: the OAuth scope a valid token needs (RFC 7628 §3.2.2), for
            example ``"https://mail.google.com/"``.
        openid_configuration: the URL of the OpenID Connect discovery
            document the client may use to get a new token (RFC 7628 §3.2.2).

    The challenge never repeats the token, and a verifier should not put
    secrets in these fields: the client shows them to its user.
    """

    status: str | None = None
    scope: str | None = None
    openid_configuration: str | None = None

    def __post_init__(self) -> None:
        _check_json_field(self.status, "status")
        _check_json_field(self.scope, "scope")
        _check_json_field(self.openid_configuration, "openid_configuration")

    @classmethod
    def from_challenge(cls, challenge: bytes) -> OAuthDenial | None:
        """Read a server's error challenge; ``None`` if it is not a JSON object.

        For the client: what to tell the user after a refusal.  Members
        other than the three fields are ignored, and so is a field that is
        not printable text (a hostile server's escape sequences never reach
        a terminal); ``status`` is kept as text even when a server sends it
        as a number.
        """
        try:
            error = json.loads(challenge.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return None
        if not isinstance(error, dict):
            return None

        def text(key: str) -> str | None:
            value = error.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                value = str(value)
            if isinstance(value, str) and value and value.isprintable():
                return value[:200]
            return None

        return cls(text("status"), text("scope"), text("openid-configuration"))

    def describe(self) -> str:
        """One line for a person: ``status invalid_token, scope ...``."""
        parts = [f"status {self.status or 'unknown'}"]
        if self.scope is not None:
            parts.append(f"scope {self.scope}")
        if self.openid_configuration is not None:
            parts.append(f"see {self.openid_configuration}")
        return ", ".join(parts)

    def to_json(self, default_status: str) -> bytes:
        """The error challenge, compact JSON (RFC 7628 §3.2.2; RFC 8259)."""
        error: dict[str, str] = {"status": self.status or default_status, "schemes": "bearer"}
        if self.scope is not None:
            error["scope"] = self.scope
        if self.openid_configuration is not None:
            error["openid-configuration"] = self.openid_configuration
        return json.dumps(error, separators=(",", ":")).encode("utf-8")


#: What a token check may return: ``True`` (the token is good for the user
#: named in the message), a ``str`` (good, and this is the identity to act
#: as: a verifier may map the token's subject to a maildrop), ``False`` (a
#: refusal with the usual error challenge) or an :class:`OAuthDenial`
#: (a refusal with its own).
TokenVerdict: TypeAlias = bool | str | OAuthDenial

#: The callback of the OAuth server mechanisms: ``check_token(user, token)``.
TokenCheck: TypeAlias = Callable[[str, str], TokenVerdict]


class _OAuthServerBase(SaslServerMechanism):
    """Shared flow: parse, check, error challenge on rejection, then fail."""

    # RFC 7628 §3.2.2 / the vendor's documentation: the status of a refusal.
    _default_status: ClassVar[str]

    def __init__(self, check_token: TokenCheck) -> None:
        super().__init__()
        self._check_token = check_token
        self._error_sent = False

    @abc.abstractmethod
    def _parse(self, text: str) -> tuple[str, str] | None:
        """Return ``(user, token)`` from the client message, or ``None``."""

    def _step(self, response: bytes | None) -> bytes | None:
        if response is None:
            return b""  # client-first: ask for the initial response.
        if self._error_sent:
            # The client acknowledged the error challenge; the exchange
            # fails whatever it said.
            raise SaslAuthenticationFailed("authentication failed")
        parsed = self._parse(_decode_client(response, f"{self.name} message"))
        if parsed is None:
            raise SaslAuthenticationFailed(f"malformed {self.name} message")
        user, token = parsed
        verdict = self._check_token(user, token)
        # A bool is tested first: True and False are not identities.
        if verdict is True:
            self._succeed(user)
            return None
        if isinstance(verdict, str) and not isinstance(verdict, bool):
            if not verdict:
                raise SaslAuthenticationFailed("the token check returned an empty identity")
            self._succeed(verdict)
            return None
        denial = verdict if isinstance(verdict, OAuthDenial) else OAuthDenial()
        # RFC 7628 §3.2.2: the refusal is a challenge the client must answer
        # (with a lone ^A, §3.2.3) before the server fails the exchange.
        self._error_sent = True
        return denial.to_json(self._default_status)


class XOAuth2Server(_OAuthServerBase):
    """XOAUTH2 server: ``user=U ^A auth=Bearer T ^A ^A``.

    ``check_token(user, token)`` decides (see :data:`TokenVerdict`).  A
    rejected token gets a JSON error status as a challenge (as Gmail does,
    ``{"status":"401","schemes":"bearer"}`` unless the :class:`OAuthDenial`
    says otherwise); the client's answer to it then raises
    :class:`SaslAuthenticationFailed`.  A malformed message fails at once.
    """

    name: ClassVar[str] = "XOAUTH2"
    _default_status: ClassVar[str] = "401"

    def _parse(self, text: str) -> tuple[str, str] | None:
        if not text.endswith("\x01\x01"):
            return None
        fields: dict[str, str] = {}
        for item in text[:-2].split("\x01"):
            key, sep, value = item.partition("=")
            if not sep or key in fields:
                return None
            fields[key] = value
        user = fields.get("user", "")
        token = _parse_bearer(fields.get("auth", ""))
        if not user or token is None:
            return None
        return user, token


class OAuthBearerServer(_OAuthServerBase):
    """OAUTHBEARER server (RFC 7628).

    ``check_token(user, token)`` decides (see :data:`TokenVerdict`).  The
    user comes from the GS2 authzid (``a=``), which this server requires:
    without it there is no user to pass to the callback.  ``host``/``port``
    pairs are accepted and ignored.  A rejected token gets the RFC 7628
    §3.2.2 JSON error as a challenge (status ``invalid_token`` unless the
    :class:`OAuthDenial` says otherwise); the client's answer (a lone
    ``^A``, §3.2.3) then raises :class:`SaslAuthenticationFailed`.
    """

    name: ClassVar[str] = "OAUTHBEARER"
    _default_status: ClassVar[str] = "invalid_token"

    def _parse(self, text: str) -> tuple[str, str] | None:
        # RFC 7628 §3.1: client-resp = gs2-header kvsep *kvpair kvsep
        header, sep, rest = text.partition("\x01")
        if not sep or not rest.endswith("\x01"):
            return None
        # gs2-header = gs2-cbind-flag "," [authzid] "," (no channel binding here)
        parts = header.split(",")
        if len(parts) != 3 or parts[2] or parts[0] not in ("n", "y"):
            return None
        authz = parts[1]
        user = _unescape_saslname(authz[2:]) if authz.startswith("a=") else None
        if not user:
            return None
        pairs = rest[:-1]
        if not pairs.endswith("\x01"):
            return None
        fields: dict[str, str] = {}
        for item in pairs[:-1].split("\x01"):
            key, sep, value = item.partition("=")
            # key = 1*(ALPHA)
            if not sep or not key.isascii() or not key.isalpha() or key in fields:
                return None
            fields[key] = value
        token = _parse_bearer(fields.get("auth", ""))
        if token is None:
            return None
        return user, token

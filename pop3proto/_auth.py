"""Authentication helpers: APOP (RFC 1939 §7) and SASL mechanisms (RFC 5034).

Everything here is pure computation on ``str``/``bytes``: no I/O, no clocks,
no threads.  The connection engine owns the wire format (the ``AUTH`` command,
``+ `` continuation lines, base64 framing, ``*`` cancellation); the classes in
this module only turn one decoded SASL message into the next one.

Client side::

    mech = ScramClient("user", "pencil")
    ir = mech.initial_response()            # send with AUTH if it fits, or not
    ...
    reply = mech.respond(decoded_challenge)  # for every "+ " line
    ...
    # on +OK: if not mech.complete, the server skipped its proof -> treat as failure

Server side::

    mech = PlainServer(check_password)
    challenge = mech.step(initial_response_or_None)
    while challenge is not None:
        send "+ " + base64(challenge); read the client's line
        challenge = mech.step(decoded_line)
    # success: mech.authenticated_user is the identity to open the maildrop for

Secrets (passwords, tokens, derived keys) never appear in a ``repr`` or in an
exception message, and exceptions raised while handling secret-bearing data are
raised ``from None`` so that no ``UnicodeDecodeError`` quoting the offending
byte ends up in ``__context__``.
"""

from __future__ import annotations

import abc
import binascii
import hashlib
import hmac
import json
import secrets
import stringprep
import sys
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import ClassVar, Final

__all__ = [
    "apop_digest",
    "parse_greeting_timestamp",
    "sasl_b64encode",
    "sasl_b64decode",
    "saslprep",
    "fits_initial_response",
    "SaslError",
    "SaslAuthenticationFailed",
    "SaslServerVerificationFailed",
    "SaslClientMechanism",
    "PlainClient",
    "LoginClient",
    "CramMD5Client",
    "ScramClient",
    "ScramSha1Client",
    "ScramSha256Client",
    "XOAuth2Client",
    "OAuthBearerClient",
    "SaslServerMechanism",
    "PlainServer",
    "LoginServer",
    "CramMD5Server",
    "ScramServer",
    "ScramSha1Server",
    "ScramSha256Server",
    "ScramCredentials",
    "scram_credentials",
    "XOAuth2Server",
    "OAuthBearerServer",
    "CLIENT_MECHANISMS",
    "SERVER_MECHANISMS",
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


def _utf8(text: str, what: str) -> bytes:
    """UTF-8 encode *text*, never quoting its content in the error."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        pass
    # Raised outside the except block, so that the UnicodeEncodeError (whose
    # message quotes the offending character, maybe part of a password) is
    # not even kept as __context__.
    raise ValueError(f"{what} is not valid Unicode text")


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


# ---------------------------------------------------------------------------
# APOP (RFC 1939 §7)
# ---------------------------------------------------------------------------


def apop_digest(timestamp: str, secret: str) -> str:
    """Return the APOP digest for *timestamp* and *secret*.

    RFC 1939 §7: the lowercase hex MD5 of the greeting's timestamp (angle
    brackets included) immediately followed by the shared secret, both
    UTF-8 encoded.

    >>> apop_digest("<1896.697170952@dbc.mtview.ca.us>", "tanstaaf")
    'c4c9334bac560ecc979e58001b3e22fb'
    """
    data = _utf8(timestamp, "timestamp") + _utf8(secret, "secret")
    # MD5 is mandated by the protocol; usedforsecurity=False keeps APOP usable
    # on FIPS-restricted builds, where a plain md5() call would be refused.
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def parse_greeting_timestamp(text: str) -> str | None:
    """Extract the APOP timestamp from a ``+OK`` greeting's text, or ``None``.

    RFC 1939 §7 puts a msg-id style timestamp such as
    ``<1896.697170952@dbc.mtview.ca.us>`` in the greeting.  Only an
    unambiguous one is accepted: the text must contain exactly one ``<``,
    closed by a later ``>``, and the part between them must be non-empty
    printable ASCII containing ``@`` and no space.  Anything else (no
    timestamp, two of them, ``<>``, ``<a b@c>``, an unclosed ``<``, control
    characters) gives ``None``, so the caller falls back to another method
    instead of computing a digest over a guess.

    The scan uses only ``str.find`` and ``str`` predicates, so it is linear in
    the length of *text* whatever the input (no regular expression, hence no
    backtracking on adversarial input such as ``"<<<<..."``).
    """
    start = text.find("<")
    if start < 0:
        return None
    # A second "<" anywhere (a nested one, a second timestamp, a stray one)
    # makes the choice ambiguous: refuse rather than guess.
    if text.find("<", start + 1) >= 0:
        return None
    end = text.find(">", start + 1)
    if end < 0:
        return None
    inner = text[start + 1 : end]
    if "@" not in inner or " " in inner:
        return None
    # RFC 1939 §7 calls it a msg-id (RFC 822 §6): printable ASCII.  A
    # non-ASCII timestamp would have been decoded by a guess, and the digest
    # over a wrongly decoded timestamp would silently fail.
    if not (inner.isascii() and inner.isprintable()):
        return None
    return text[start : end + 1]


# ---------------------------------------------------------------------------
# Base64 (RFC 5034 §4, RFC 4648 §4)
# ---------------------------------------------------------------------------

_B64_ALPHABET: Final = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_B64_VALUE: Final = {c: i for i, c in enumerate(_B64_ALPHABET)}


def sasl_b64encode(data: bytes) -> bytes:
    """Encode *data* as standard base64 (RFC 4648 §4) with padding and no newline.

    ``b""`` encodes to ``b""``; the engine, not this function, decides whether
    an empty *initial response* is written as ``=`` (RFC 5034 §4).
    """
    return binascii.b2a_base64(data, newline=False)


def _check_strict_base64(data: bytes) -> None:
    """Raise ValueError unless *data* is canonical, padded base64.

    This is the whole validation on every Python version; on 3.11+ the
    decoder additionally runs with ``strict_mode=True`` as a second line of
    defence.  All operations are C-level (``translate``, slicing), so the
    check is linear and fast on large challenges.
    """
    n = len(data)
    if n % 4:
        raise ValueError("base64 length is not a multiple of 4")
    if n == 0:
        return
    pad = 2 if data.endswith(b"==") else 1 if data.endswith(b"=") else 0
    body = data[: n - pad]
    # Any "=" left in the body is misplaced padding ("=AAA", "AAA=BBB",
    # "===="); anything else outside the alphabet is a bad character (spaces,
    # newlines, "-", "_", 8-bit bytes).
    if body.translate(None, _B64_ALPHABET):
        raise ValueError("invalid base64 character or misplaced padding")
    if pad:
        # RFC 4648 §3.5: the bits below the last full octet must be zero.
        # Rejecting non-zero pad bits makes the encoding canonical, so every
        # byte string has exactly one accepted spelling.
        unused_bits_mask = 0x0F if pad == 2 else 0x03
        if _B64_VALUE[body[-1]] & unused_bits_mask:
            raise ValueError("non-zero base64 padding bits")


def sasl_b64decode(data: bytes | bytearray | memoryview) -> bytes:
    """Decode one SASL line of base64, strictly.

    RFC 5034 §4 requires both peers to reject characters outside the base64
    alphabet and misplaced padding.  Accepted: only ``A-Z a-z 0-9 + /`` with
    correct trailing ``=`` padding, a length that is a multiple of 4, and zero
    pad bits.  Rejected, with a plain :class:`ValueError`: ``=AAA``,
    ``AAA=BBB``, ``A A=``, missing padding, ``====``, non-ASCII bytes,
    embedded CR/LF.  ``b""`` decodes to ``b""``.

    The ``=`` spelling of an empty initial response is *not* accepted here:
    it is legal only as the AUTH argument, which the engine handles.  Any
    bytes-like object is accepted (a slice of a receive buffer, say).
    """
    if not isinstance(data, bytes):
        data = bytes(data)  # bytearray / memoryview from a receive buffer
    _check_strict_base64(data)
    try:
        if sys.version_info >= (3, 11):
            return binascii.a2b_base64(data, strict_mode=True)
        return binascii.a2b_base64(data)  # pragma: no cover - Python 3.10
    except binascii.Error:  # pragma: no cover - unreachable after the check
        raise ValueError("invalid base64") from None


# ---------------------------------------------------------------------------
# SASLprep (RFC 4013, a profile of stringprep, RFC 3454)
# ---------------------------------------------------------------------------

# RFC 4013 §2.3 prohibited output, with the table names used in messages.
# The messages name only the table, never the character or its position,
# because saslprep() is applied to passwords.
_PROHIBITED: Final[tuple[tuple[Callable[[str], bool], str], ...]] = (
    (stringprep.in_table_c12, "non-ASCII space (C.1.2)"),
    (stringprep.in_table_c21, "ASCII control character (C.2.1)"),
    (stringprep.in_table_c22, "non-ASCII control character (C.2.2)"),
    (stringprep.in_table_c3, "private use character (C.3)"),
    (stringprep.in_table_c4, "non-character code point (C.4)"),
    (stringprep.in_table_c5, "surrogate code point (C.5)"),
    (stringprep.in_table_c6, "character inappropriate for plain text (C.6)"),
    (stringprep.in_table_c7, "character inappropriate for canonical representation (C.7)"),
    (stringprep.in_table_c8, "change display property or deprecated character (C.8)"),
    (stringprep.in_table_c9, "tagging character (C.9)"),
)


def saslprep(s: str, *, allow_unassigned: bool = False) -> str:
    """Prepare *s* with the SASLprep profile (RFC 4013) of stringprep.

    Steps, in the order RFC 3454 §3 prescribes:

    1. map (RFC 4013 §2.1): characters of table B.1 are removed, non-ASCII
       spaces (C.1.2) become U+0020;
    2. normalize with NFKC (§2.2), using the Unicode 3.2 data stringprep is
       defined against;
    3. reject prohibited output (§2.3): C.1.2, C.2.1, C.2.2, C.3 to C.9;
    4. apply the bidirectional rules of RFC 3454 §6 (§2.4);
    5. reject unassigned code points (A.1) unless *allow_unassigned*
       (RFC 3454 §7: "stored strings" must not contain them, "queries" may).

    Raises :class:`ValueError` when the output is prohibited.  The message
    names the rule, not the character, since *s* may be a password.
    """
    # Step 1: mapping.
    mapped = "".join(
        " " if stringprep.in_table_c12(ch) else ch for ch in s if not stringprep.in_table_b1(ch)
    )
    # Step 2: normalization, with Unicode 3.2 as RFC 3454 §2 requires (the
    # current database would normalize some later characters differently).
    out = unicodedata.ucd_3_2_0.normalize("NFKC", mapped)

    # Steps 3 and 5: prohibited and unassigned code points.
    has_randal = has_l = False
    for ch in out:
        for in_table, label in _PROHIBITED:
            if in_table(ch):
                raise ValueError(f"SASLprep: prohibited {label}")
        if not allow_unassigned and stringprep.in_table_a1(ch):
            raise ValueError("SASLprep: unassigned code point (A.1)")
        if stringprep.in_table_d1(ch):
            has_randal = True
        elif stringprep.in_table_d2(ch):
            has_l = True

    # Step 4: RFC 3454 §6.  A string with any RandALCat character must not
    # contain LCat characters, and must begin and end with RandALCat.
    if has_randal:
        if has_l:
            raise ValueError("SASLprep: mixes right-to-left and left-to-right text")
        if not (stringprep.in_table_d1(out[0]) and stringprep.in_table_d1(out[-1])):
            raise ValueError(
                "SASLprep: right-to-left text must start and end with a right-to-left character"
            )
    return out


def _prep_or_raw(text: str, *, allow_unassigned: bool) -> str:
    """SASLprep *text*, falling back to the unprepared string if that fails.

    Used where both peers are this module (SCRAM): SASLprep's tables are
    frozen at Unicode 3.2, so strict "stored" preparation would reject every
    later character (most emoji, for a start), and an unusable password is
    worse than an unprepared one.  Applying the same fallback on both sides
    keeps them in agreement, and preparing an already prepared string is a
    no-op, so a server may prepare again what a client sent.
    """
    try:
        return saslprep(text, allow_unassigned=allow_unassigned)
    except ValueError:
        return text


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


# ---------------------------------------------------------------------------
# Initial response size (RFC 5034 §4)
# ---------------------------------------------------------------------------


def fits_initial_response(mechanism: str, initial_response: bytes | None, limit: int = 255) -> bool:
    """Whether ``AUTH SP mechanism [SP initial-response] CRLF`` fits in *limit* octets.

    The initial response is counted as its base64 encoding, or as the single
    ``=`` that stands for an empty one.  RFC 5034 §4 (with RFC 2449 §4's
    255-octet command limit, CRLF included): a client whose initial response
    does not fit must omit it and send it after the server's empty challenge.
    With *initial_response* ``None`` the result says whether the bare
    ``AUTH mechanism`` command fits.
    """
    size = len(b"AUTH ") + len(mechanism.encode("utf-8")) + len(b"\r\n")
    if initial_response is not None:
        encoded = 1 if not initial_response else 4 * ((len(initial_response) + 2) // 3)
        size += 1 + encoded
    return size <= limit


# ---------------------------------------------------------------------------
# Shared GS2 / SCRAM helpers
# ---------------------------------------------------------------------------


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


def _is_nonce(value: str) -> bool:
    # RFC 5802 §7: printable = %x21-2B / %x2D-7E (printable ASCII but ",").
    return bool(value) and all("!" <= ch <= "~" and ch != "," for ch in value)


def _split_attributes(text: str) -> list[tuple[str, str]] | None:
    """Split a SCRAM message into ``(letter, value)`` pairs; ``None`` if malformed.

    RFC 5802 §7: attributes are ``ALPHA "=" value`` separated by ",", and
    values never contain "," (saslnames escape it), so a plain split is exact.
    """
    attrs: list[tuple[str, str]] = []
    for item in text.split(","):
        if len(item) < 2 or item[1] != "=" or not ("a" <= item[0].lower() <= "z"):
            return None
        attrs.append((item[0], item[2:]))
    return attrs


_SCRAM_HASHES: Final[dict[str, tuple[str, int]]] = {
    # hash name -> (IANA mechanism name, digest size)
    "sha1": ("SCRAM-SHA-1", 20),  # RFC 5802
    "sha256": ("SCRAM-SHA-256", 32),  # RFC 7677
}
_SCRAM_MAX_ITERATIONS: Final = 10_000_000
# Keyed once per process: fake salts for unknown users must be stable across
# attempts (a salt that changes every time would reveal that the user does
# not exist) yet unpredictable to anyone outside the process.
_FAKE_SALT_KEY: Final = secrets.token_bytes(32)


def _check_hash_name(hash_name: str) -> str:
    if hash_name not in _SCRAM_HASHES:
        raise ValueError(f"unsupported SCRAM hash {hash_name!r}; use 'sha1' or 'sha256'")
    return hash_name


def _check_iterations(iterations: int) -> None:
    if not 1 <= iterations <= _SCRAM_MAX_ITERATIONS:
        raise ValueError(f"SCRAM iteration count must be in 1..{_SCRAM_MAX_ITERATIONS}")


def _salted_password(hash_name: str, password: str, salt: bytes, iterations: int) -> bytes:
    # RFC 5802 §3: SaltedPassword := Hi(Normalize(password), salt, i), where
    # Hi is PBKDF2 with HMAC as the PRF and Normalize is SASLprep treating
    # the password as a stored string (§2.2).
    normalized = _prep_or_raw(password, allow_unassigned=False)
    return hashlib.pbkdf2_hmac(hash_name, _utf8(normalized, "password"), salt, iterations)


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


class ScramClient(SaslClientMechanism):
    """SCRAM-SHA-1 / SCRAM-SHA-256 (RFC 5802, RFC 7677), without channel binding.

    ``ScramClient(username, password, hash_name="sha1")`` returns a
    :class:`ScramSha1Client`, and ``hash_name="sha256"`` (the default) a
    :class:`ScramSha256Client`, so that :attr:`name` is a class attribute
    like every other mechanism's.  The subclasses can be instantiated
    directly; *hash_name*, if given, must then match.

    Exchange (RFC 5802 §5): client-first ``n,,n=user,r=nonce`` (the initial
    response), server-first, client-final with the proof, then the server
    signature arrives as a challenge (POP3 has no "additional data with
    success", RFC 5034 §4).  The client verifies it, answers ``b""`` and
    becomes :attr:`complete`.  A mismatch, an ``e=`` error, or any malformed
    server message raises :class:`SaslServerVerificationFailed`.

    The username is SASLprep'd as a query and the password as a stored
    string (RFC 5802 §5.1, §2.2), each falling back to the raw string if
    preparation fails (see ``scram_credentials``, which does the same).
    *nonce* defaults to 32 random characters from :mod:`secrets`; a given
    one must be printable ASCII without ",".  Iteration counts outside
    1..10,000,000 are refused, so a hostile server cannot make the client
    spin for minutes.
    """

    name: ClassVar[str] = "SCRAM-SHA-256"
    _hash_name: ClassVar[str] = "sha256"

    def __new__(
        cls,
        username: str,
        password: str,
        *,
        hash_name: str | None = None,
        nonce: str | None = None,
    ) -> ScramClient:
        """Pick the subclass for *hash_name* when called as ``ScramClient(...)``."""
        if cls is ScramClient:
            target: type[ScramClient] = _SCRAM_CLIENTS[_check_hash_name(hash_name or "sha256")]
            return object.__new__(target)
        return object.__new__(cls)

    def __init__(
        self,
        username: str,
        password: str,
        *,
        hash_name: str | None = None,
        nonce: str | None = None,
    ) -> None:
        """Create the mechanism; see the class docstring for the arguments."""
        super().__init__()
        if hash_name is not None and _check_hash_name(hash_name) != self._hash_name:
            raise ValueError(f"{type(self).__name__} uses {self._hash_name}, not {hash_name}")
        if nonce is None:
            nonce = secrets.token_urlsafe(24)
        elif not _is_nonce(nonce):
            raise ValueError("SCRAM nonce must be printable ASCII without ','")
        if not username or "\0" in username:
            # RFC 5802 §7: saslname is 1*(value-safe-char / "=2C" / "=3D"),
            # and value-safe-char excludes NUL.
            raise ValueError("SCRAM username must be non-empty and free of NUL")
        self._username = username
        self._password = password
        self._nonce = nonce
        prepared = _prep_or_raw(username, allow_unassigned=True)
        _utf8(prepared, "username")
        # RFC 5802 §5.1: client-first-message-bare = "n=" saslname ",r=" c-nonce
        self._first_bare = f"n={_escape_saslname(prepared)},r={nonce}"
        # RFC 5802 §7: gs2-header "n,," = no channel binding, no authzid.
        self._gs2_header = "n,,"
        self._stage = 0
        self._server_signature = b""

    def _first_message(self) -> bytes:
        return _utf8(self._gs2_header + self._first_bare, "username")

    def _next(self, challenge: bytes) -> bytes:
        if self._stage == 0:
            return self._client_final(challenge)
        if self._stage == 1:
            return self._verify_server_final(challenge)
        raise SaslServerVerificationFailed("unexpected challenge after SCRAM server-final")

    def _client_final(self, challenge: bytes) -> bytes:
        try:
            server_first = challenge.decode("utf-8")
        except UnicodeDecodeError:
            raise SaslServerVerificationFailed("SCRAM server-first is not UTF-8") from None
        attrs = _split_attributes(server_first)
        # RFC 5802 §7: server-first-message =
        #     [reserved-mext ","] nonce "," salt "," iteration-count ["," extensions]
        if attrs is None or len(attrs) < 3:
            raise SaslServerVerificationFailed("malformed SCRAM server-first message")
        if attrs[0][0] == "m":
            raise SaslServerVerificationFailed("SCRAM mandatory extension not supported")
        (r_key, full_nonce), (s_key, salt_b64), (i_key, iter_text) = attrs[:3]
        if (r_key, s_key, i_key) != ("r", "s", "i"):
            raise SaslServerVerificationFailed("malformed SCRAM server-first message")
        # §5.1: the nonce is ours followed by the server's part.  An empty
        # server part would let the exchange be replayed, so refuse it.
        if (
            not full_nonce.startswith(self._nonce)
            or len(full_nonce) == len(self._nonce)
            or not _is_nonce(full_nonce)
        ):
            raise SaslServerVerificationFailed("SCRAM server nonce does not extend the client's")
        try:
            salt = sasl_b64decode(salt_b64.encode("ascii"))
        except (UnicodeEncodeError, ValueError):
            raise SaslServerVerificationFailed("SCRAM salt is not valid base64") from None
        # §7: posit-number = %x31-39 *DIGIT (no sign, no leading zero, ASCII).
        if not iter_text or iter_text[0] == "0" or not all("0" <= c <= "9" for c in iter_text):
            raise SaslServerVerificationFailed("malformed SCRAM iteration count")
        if len(iter_text) > 8 or int(iter_text) > _SCRAM_MAX_ITERATIONS:
            raise SaslServerVerificationFailed("SCRAM iteration count is unreasonably large")
        iterations = int(iter_text)

        h = self._hash_name
        salted = _salted_password(h, self._password, salt, iterations)
        # §3: the key derivations.
        client_key = hmac.digest(salted, b"Client Key", h)
        stored_key = hashlib.new(h, client_key).digest()
        server_key = hmac.digest(salted, b"Server Key", h)
        # §7: channel-binding "c=" is base64 of the gs2 header (no cb data).
        without_proof = (
            "c="
            + sasl_b64encode(self._gs2_header.encode("ascii")).decode("ascii")
            + ",r="
            + full_nonce
        )
        auth_message = _utf8(
            self._first_bare + "," + server_first + "," + without_proof, "username"
        )
        client_signature = hmac.digest(stored_key, auth_message, h)
        proof = _xor(client_key, client_signature)
        self._server_signature = hmac.digest(server_key, auth_message, h)
        self._stage = 1
        return (without_proof + ",p=").encode("ascii") + sasl_b64encode(proof)

    def _verify_server_final(self, challenge: bytes) -> bytes:
        # RFC 5802 §7: server-final-message = (server-error / verifier) ["," extensions]
        attrs = _split_attributes(challenge.decode("ascii", errors="replace"))
        if attrs is None:
            raise SaslServerVerificationFailed("malformed SCRAM server-final message")
        key, value = attrs[0]
        if key == "e":
            # The error value is a short server-chosen token such as
            # "invalid-proof" (§7); keep it printable and short.
            shown = "".join(c for c in value[:64] if c.isprintable())
            raise SaslServerVerificationFailed(f"SCRAM server error: {shown}")
        if key != "v":
            raise SaslServerVerificationFailed("malformed SCRAM server-final message")
        try:
            signature = sasl_b64decode(value.encode("ascii"))
        except (UnicodeEncodeError, ValueError):
            raise SaslServerVerificationFailed("SCRAM server signature is not base64") from None
        # §5.1: the client MUST verify ServerSignature; constant time.
        if not hmac.compare_digest(signature, self._server_signature):
            raise SaslServerVerificationFailed("SCRAM server signature mismatch")
        self._stage = 2
        self._complete = True
        # RFC 5034 §4: server-final arrives as a "+" challenge; the client
        # answers with an empty line and the server then sends +OK.
        return b""

    def _safe_fields(self) -> Iterable[tuple[str, object]]:
        yield ("username", self._username)


class ScramSha1Client(ScramClient):
    """SCRAM-SHA-1 client (RFC 5802); see :class:`ScramClient`."""

    name: ClassVar[str] = "SCRAM-SHA-1"
    _hash_name: ClassVar[str] = "sha1"


class ScramSha256Client(ScramClient):
    """SCRAM-SHA-256 client (RFC 7677); see :class:`ScramClient`."""

    name: ClassVar[str] = "SCRAM-SHA-256"
    _hash_name: ClassVar[str] = "sha256"


_SCRAM_CLIENTS: Final[dict[str, type[ScramClient]]] = {
    "sha1": ScramSha1Client,
    "sha256": ScramSha256Client,
}


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


@dataclass(frozen=True, slots=True)
class ScramCredentials:
    """What a SCRAM server stores for a user (RFC 5802 §5.1, §9).

    ``stored_key`` = H(HMAC(SaltedPassword, "Client Key")) and ``server_key``
    = HMAC(SaltedPassword, "Server Key").  Neither is the password, but both
    are sensitive (the server key lets its holder impersonate the server,
    and both allow offline guessing), so they are left out of the ``repr``.
    Build them with :func:`scram_credentials`.
    """

    salt: bytes
    iterations: int
    stored_key: bytes = field(repr=False)
    server_key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        _check_iterations(self.iterations)
        if len(self.stored_key) not in (20, 32) or len(self.server_key) != len(self.stored_key):
            raise ValueError("SCRAM keys must be SHA-1 or SHA-256 digests of equal length")


def scram_credentials(
    password: str,
    *,
    hash_name: str = "sha256",
    salt: bytes | None = None,
    iterations: int = 4096,
) -> ScramCredentials:
    """Derive the stored SCRAM credentials for *password* (RFC 5802 §3).

    *hash_name* is ``"sha1"`` or ``"sha256"``; *salt* defaults to 16 random
    bytes; *iterations* must be in 1..10,000,000 (RFC 7677 §4 recommends at
    least 4096).  The password is SASLprep'd as a stored string, falling
    back to the raw string exactly as the client does.
    """
    h = _check_hash_name(hash_name)
    _check_iterations(iterations)
    if salt is None:
        salt = secrets.token_bytes(16)
    elif not salt:
        raise ValueError("SCRAM salt must not be empty")
    salted = _salted_password(h, password, salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", h)
    return ScramCredentials(
        salt=salt,
        iterations=iterations,
        stored_key=hashlib.new(h, client_key).digest(),
        server_key=hmac.digest(salted, b"Server Key", h),
    )


class ScramServer(SaslServerMechanism):
    """SCRAM-SHA-1 / SCRAM-SHA-256 server (RFC 5802, RFC 7677), no channel binding.

    ``ScramServer(get_credentials, hash_name="sha1")`` returns a
    :class:`ScramSha1Server`, the default ``"sha256"`` a
    :class:`ScramSha256Server` (so :attr:`name` stays a class attribute).

    ``get_credentials(user)`` returns the user's :class:`ScramCredentials`
    or ``None``.  An unknown user goes through the whole exchange with fake
    credentials (a salt keyed on the name, so it is stable across attempts,
    and *unknown_user_iterations* iterations, which should match what real
    users have) and fails exactly like a wrong password.

    Steps: ``None`` -> ``b""``; client-first -> server-first; client-final
    -> server-final ``v=...`` (after a constant-time proof check); the
    client's empty answer -> ``None`` (success).  Channel binding is not
    supported and no ``-PLUS`` variant exists here, so a ``y`` GS2 flag is
    accepted (RFC 5802 §6) and ``p=`` is refused.  A GS2 authzid is accepted
    only if it equals the authentication identity.
    """

    name: ClassVar[str] = "SCRAM-SHA-256"
    _hash_name: ClassVar[str] = "sha256"

    def __new__(
        cls,
        get_credentials: Callable[[str], ScramCredentials | None],
        *,
        hash_name: str | None = None,
        nonce: str | None = None,
        unknown_user_iterations: int = 4096,
    ) -> ScramServer:
        """Pick the subclass for *hash_name* when called as ``ScramServer(...)``."""
        if cls is ScramServer:
            target: type[ScramServer] = _SCRAM_SERVERS[_check_hash_name(hash_name or "sha256")]
            return object.__new__(target)
        return object.__new__(cls)

    def __init__(
        self,
        get_credentials: Callable[[str], ScramCredentials | None],
        *,
        hash_name: str | None = None,
        nonce: str | None = None,
        unknown_user_iterations: int = 4096,
    ) -> None:
        """Create the mechanism; *nonce* fixes the server's nonce part (for tests)."""
        super().__init__()
        if hash_name is not None and _check_hash_name(hash_name) != self._hash_name:
            raise ValueError(f"{type(self).__name__} uses {self._hash_name}, not {hash_name}")
        if nonce is None:
            nonce = secrets.token_urlsafe(24)
        elif not _is_nonce(nonce):
            raise ValueError("SCRAM nonce must be printable ASCII without ','")
        _check_iterations(unknown_user_iterations)
        self._get_credentials = get_credentials
        self._server_nonce = nonce
        self._fake_iterations = unknown_user_iterations
        self._stage = 0
        self._username = ""
        self._gs2_header = ""
        self._first_bare = ""
        self._server_first = ""
        self._nonce = ""
        self._credentials: ScramCredentials | None = None
        self._fake = False

    def _step(self, response: bytes | None) -> bytes | None:
        if self._stage == 0:
            if response is None:
                return b""  # RFC 4422 §5: ask for client-first.
            return self._server_first_message(response)
        assert response is not None  # the base class guarantees it
        if self._stage == 1:
            return self._server_final_message(response)
        # Stage 2: RFC 5034 §4, the client's empty answer to server-final.
        if response:
            raise SaslAuthenticationFailed("unexpected data after SCRAM server-final")
        self._succeed(self._username)
        return None

    def _fake_credentials(self, user: str) -> ScramCredentials:
        size = _SCRAM_HASHES[self._hash_name][1]
        salt = hmac.digest(_FAKE_SALT_KEY, _utf8(self._hash_name + "\0" + user, "user"), "sha256")
        return ScramCredentials(
            salt=salt[:16],
            iterations=self._fake_iterations,
            stored_key=secrets.token_bytes(size),
            server_key=secrets.token_bytes(size),
        )

    def _server_first_message(self, response: bytes) -> bytes:
        text = _decode_client(response, "SCRAM client-first")
        if "\0" in text:
            raise SaslAuthenticationFailed("malformed SCRAM client-first message")
        # RFC 5802 §7: gs2-header = gs2-cbind-flag "," [authzid] ","
        flag, sep1, rest = text.partition(",")
        authz, sep2, bare = rest.partition(",")
        if not (sep1 and sep2) or flag not in ("n", "y"):
            # "p=..." asks for channel binding, which is not offered.
            raise SaslAuthenticationFailed("unsupported or malformed SCRAM GS2 header")
        authzid: str | None = None
        if authz:
            authzid = _unescape_saslname(authz[2:]) if authz.startswith("a=") else None
            if not authzid:
                raise SaslAuthenticationFailed("malformed SCRAM authzid")
        attrs = _split_attributes(bare)
        # client-first-message-bare = [reserved-mext ","] username "," nonce ["," extensions]
        if attrs is None or len(attrs) < 2 or attrs[0][0] == "m":
            raise SaslAuthenticationFailed("malformed or unsupported SCRAM client-first message")
        (n_key, saslname), (r_key, client_nonce) = attrs[:2]
        username = _unescape_saslname(saslname) if n_key == "n" else None
        if not username or r_key != "r" or not _is_nonce(client_nonce):
            raise SaslAuthenticationFailed("malformed SCRAM client-first message")
        username = _prep_or_raw(username, allow_unassigned=True)
        if authzid is not None and _prep_or_raw(authzid, allow_unassigned=True) != username:
            raise SaslAuthenticationFailed("SCRAM authorization identity not permitted")

        credentials = self._get_credentials(username)
        if credentials is None:
            credentials = self._fake_credentials(username)
            self._fake = True
        elif len(credentials.stored_key) != _SCRAM_HASHES[self._hash_name][1]:
            raise ValueError(f"stored SCRAM credentials are not for {self.name}")

        self._username = username
        self._credentials = credentials
        self._gs2_header = text[: len(text) - len(bare)]
        self._first_bare = bare
        self._nonce = client_nonce + self._server_nonce
        salt_b64 = sasl_b64encode(credentials.salt).decode("ascii")
        # §7: server-first-message = nonce "," salt "," iteration-count
        self._server_first = f"r={self._nonce},s={salt_b64},i={credentials.iterations}"
        self._stage = 1
        return self._server_first.encode("ascii")

    def _server_final_message(self, response: bytes) -> bytes:
        credentials = self._credentials
        assert credentials is not None
        text = _decode_client(response, "SCRAM client-final")
        attrs = _split_attributes(text)
        # §7: client-final-message = channel-binding "," nonce ["," extensions] "," proof
        if attrs is None or len(attrs) < 3 or attrs[0][0] != "c" or attrs[1][0] != "r":
            raise SaslAuthenticationFailed("malformed SCRAM client-final message")
        if attrs[-1][0] != "p":
            raise SaslAuthenticationFailed("malformed SCRAM client-final message")
        try:
            binding = sasl_b64decode(attrs[0][1].encode("ascii"))
            proof = sasl_b64decode(attrs[-1][1].encode("ascii"))
        except (UnicodeEncodeError, ValueError):
            raise SaslAuthenticationFailed("malformed SCRAM client-final message") from None
        # §5.1 / §6: without channel binding, c= carries the GS2 header
        # verbatim; a mismatch means the header was tampered with.
        if binding != self._gs2_header.encode("utf-8"):
            raise SaslAuthenticationFailed("SCRAM channel binding mismatch")
        if attrs[1][1] != self._nonce:
            raise SaslAuthenticationFailed("SCRAM nonce mismatch")
        h = self._hash_name
        if len(proof) != _SCRAM_HASHES[h][1]:
            raise SaslAuthenticationFailed("authentication failed")
        without_proof = text[: text.rindex(",p=")]
        auth_message = _utf8(
            self._first_bare + "," + self._server_first + "," + without_proof, "message"
        )
        # §3: ClientKey = ClientProof XOR HMAC(StoredKey, AuthMessage); the
        # proof is right iff H(ClientKey) == StoredKey.  Constant-time, and
        # computed for fake credentials too so both paths cost the same.
        client_signature = hmac.digest(credentials.stored_key, auth_message, h)
        client_key = _xor(proof, client_signature)
        proof_ok = hmac.compare_digest(hashlib.new(h, client_key).digest(), credentials.stored_key)
        if not proof_ok or self._fake:
            raise SaslAuthenticationFailed("authentication failed")
        server_signature = hmac.digest(credentials.server_key, auth_message, h)
        self._stage = 2
        # §7: server-final-message = verifier; RFC 5034 §4 sends it as a challenge.
        return b"v=" + sasl_b64encode(server_signature)


class ScramSha1Server(ScramServer):
    """SCRAM-SHA-1 server (RFC 5802); see :class:`ScramServer`."""

    name: ClassVar[str] = "SCRAM-SHA-1"
    _hash_name: ClassVar[str] = "sha1"


class ScramSha256Server(ScramServer):
    """SCRAM-SHA-256 server (RFC 7677); see :class:`ScramServer`."""

    name: ClassVar[str] = "SCRAM-SHA-256"
    _hash_name: ClassVar[str] = "sha256"


_SCRAM_SERVERS: Final[dict[str, type[ScramServer]]] = {
    "sha1": ScramSha1Server,
    "sha256": ScramSha256Server,
}


def _parse_bearer(value: str) -> str | None:
    # RFC 6750 §2.1 / RFC 7628 §3.1: auth-value = "Bearer" 1*SP b64token;
    # the scheme name is case-insensitive (RFC 7235 §2.1).
    scheme, sep, token = value.partition(" ")
    token = token.lstrip(" ")
    if not sep or scheme.lower() != "bearer" or not token:
        return None
    return token


class _OAuthServerBase(SaslServerMechanism):
    """Shared flow: parse, check, error challenge on rejection, then fail."""

    _error_json: ClassVar[bytes]

    def __init__(self, check_token: Callable[[str, str], bool]) -> None:
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
        if not self._check_token(user, token):
            self._error_sent = True
            return self._error_json
        self._succeed(user)
        return None


class XOAuth2Server(_OAuthServerBase):
    """XOAUTH2 server: ``user=U ^A auth=Bearer T ^A ^A``.

    ``check_token(user, token)`` decides.  A rejected token gets a JSON
    error status as a challenge (as Gmail does); the client's answer to it
    then raises :class:`SaslAuthenticationFailed`.  A malformed message
    fails at once.
    """

    name: ClassVar[str] = "XOAUTH2"
    _error_json: ClassVar[bytes] = json.dumps(
        {"status": "401", "schemes": "bearer"}, separators=(",", ":")
    ).encode("ascii")

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

    ``check_token(user, token)`` decides.  The user comes from the GS2
    authzid (``a=``), which this server requires: without it there is no
    user to pass to the callback.  ``host``/``port`` pairs are accepted and
    ignored.  A rejected token gets the RFC 7628 §3.2.2 JSON error as a
    challenge; the client's answer (a lone ``^A``, §3.2.3) then raises
    :class:`SaslAuthenticationFailed`.
    """

    name: ClassVar[str] = "OAUTHBEARER"
    _error_json: ClassVar[bytes] = json.dumps(
        {"status": "invalid_token", "schemes": "bearer"}, separators=(",", ":")
    ).encode("ascii")

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


#: Client mechanism classes by IANA name.
CLIENT_MECHANISMS: Final[dict[str, type[SaslClientMechanism]]] = {
    cls.name: cls
    for cls in (
        PlainClient,
        LoginClient,
        CramMD5Client,
        ScramSha1Client,
        ScramSha256Client,
        XOAuth2Client,
        OAuthBearerClient,
    )
}

#: Server mechanism classes by IANA name.
SERVER_MECHANISMS: Final[dict[str, type[SaslServerMechanism]]] = {
    cls.name: cls
    for cls in (
        PlainServer,
        LoginServer,
        CramMD5Server,
        ScramSha1Server,
        ScramSha256Server,
        XOAuth2Server,
        OAuthBearerServer,
    )
}

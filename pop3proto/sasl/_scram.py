"""SCRAM-SHA-1 (RFC 5802) and SCRAM-SHA-256 (RFC 7677), both sides, no channel binding.

Each side proves knowledge of the password without sending it, and the
server keeps only derived keys (:class:`ScramCredentials`, built with
:func:`scram_credentials`), never the password.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import ClassVar, Final

from ._base import (
    _FAKE_SALT_KEY,
    SaslAuthenticationFailed,
    SaslClientMechanism,
    SaslServerMechanism,
    SaslServerVerificationFailed,
    _decode_client,
    _escape_saslname,
    _unescape_saslname,
)
from ._codec import _utf8, sasl_b64decode, sasl_b64encode
from ._saslprep import _prep_or_raw

__all__ = [
    "ScramClient",
    "ScramSha1Client",
    "ScramSha256Client",
    "ScramCredentials",
    "scram_credentials",
    "ScramServer",
    "ScramSha1Server",
    "ScramSha256Server",
]


# ---------------------------------------------------------------------------
# Message syntax and key derivation (RFC 5802 §3, §7)
# ---------------------------------------------------------------------------


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


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


# ---------------------------------------------------------------------------
# Server side
# ---------------------------------------------------------------------------


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

"""Authenticators for the POP3 server: who may log in, and with what.

The server session asks an :class:`Authenticator` three questions, one per
family of authentication methods:

* :meth:`~Authenticator.check_password`: USER/PASS (RFC 1939 §7), SASL
  PLAIN (RFC 4616) and LOGIN, which all send the password itself;
* :meth:`~Authenticator.get_secret`: APOP (RFC 1939 §7) and CRAM-MD5
  (RFC 2195), which prove knowledge of a *shared secret* and so need it in
  the clear on the server;
* :meth:`~Authenticator.scram_credentials`: SCRAM-SHA-256 (RFC 5802,
  RFC 7677), which needs only derived keys.

Two ready implementations store users as ``name -> stored password``, where a
stored password takes one of these forms:

``secret`` or ``{PLAIN}secret``
    The password itself.  Every method works (SCRAM keys are derived from
    it on demand).  Use ``{PLAIN}`` when the password itself starts with
    one of these scheme prefixes.
``{PBKDF2-SHA256}iterations$salt_b64$hash_b64``
    PBKDF2-HMAC-SHA256 (standard base64, 32-byte hash).  Only the
    password-sending methods work: USER/PASS, PLAIN, LOGIN.
``{SCRAM-SHA-256}iterations$salt_b64$storedkey_b64$serverkey_b64``
    RFC 5802 §3 keys.  SCRAM-SHA-256 works, and so do USER/PASS, PLAIN and
    LOGIN (the password is checked by deriving the stored key again).

:func:`hash_password` produces the last two.  :class:`UsersFile` reads them
from a file of ``name:stored`` lines; :class:`DictAuthenticator` takes a
mapping.  Passwords are compared in constant time, unknown users cost the
same work as known ones, and nothing here ever logs a password.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import secrets
import threading
import unicodedata
from collections import Counter
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import pop3proto

from ._base import Identity

__all__ = [
    "Authenticator",
    "DictAuthenticator",
    "UsersFile",
    "hash_password",
    "PBKDF2_ITERATIONS",
    "SCRAM_ITERATIONS",
]

log = logging.getLogger("pop3proto.server")

#: Default PBKDF2-HMAC-SHA256 work factor (OWASP's 2023 recommendation).
PBKDF2_ITERATIONS = 600_000
#: Default SCRAM iteration count (RFC 7677 §4 asks for at least 4096).
SCRAM_ITERATIONS = 4096

_PLAIN = "{PLAIN}"
_PBKDF2 = "{PBKDF2-SHA256}"
_SCRAM = "{SCRAM-SHA-256}"


@runtime_checkable
class Authenticator(Protocol):
    """What the server asks about credentials; see the module docstring.

    Implementations must answer an unknown user exactly like a wrong
    password (``False`` / ``None``) and should take the same time doing it,
    so that the server cannot be used to find out which users exist
    (RFC 1939 §13).

    Where it runs: the blocking server calls every method from the
    connection's thread; the asyncio and trio servers call
    ``check_password``, ``get_secret`` and ``scram_credentials`` in a
    worker thread of a bounded pool, never on the event loop (a PBKDF2
    check may take half a second), so they must be thread-safe.
    :meth:`credentials` is called on the loop, once per connection: keep it
    quick.  An exception from any method counts as a failed login (logged).

    An authenticator whose answers are quick may say so, with an optional
    method ``quick_credentials() -> AbstractSet[str]`` (called on the loop,
    once per connection, like :meth:`credentials`): the kinds of
    :meth:`credentials` it answers with no key derivation and no blocking
    I/O, for every user, known or not (a dictionary look-up and a
    comparison).  The event-loop servers then make those checks on the loop
    rather than in a worker thread: a hand-off to a thread costs about a
    tenth of a millisecond of CPU under load, more than such a check.  The
    blocking server keeps its run token through them.  An authenticator
    without the method is asked in a worker thread, always.
    """

    def credentials(self) -> AbstractSet[str]:
        """What this store can verify for *every* user, in the words of the
        mechanism registry (:attr:`pop3proto.Mechanism.server_credential`):
        ``"password"`` (:meth:`check_password`: USER/PASS, PLAIN, LOGIN),
        ``"secret"`` (:meth:`get_secret`: APOP, CRAM-MD5),
        ``"scram-sha-256"`` (:meth:`scram_credentials`).

        The server offers exactly the methods these allow (CAPA's USER and
        SASL list, the APOP timestamp in the greeting), so a client never
        picks one that cannot succeed.  An authenticator without this
        method is assumed to verify all three.
        """
        ...

    def check_password(self, user: str, password: str) -> bool | Identity:
        """Whether *password* is *user*'s password (constant time).

        Return an :class:`~._base.Identity` instead of ``True`` to choose
        the mailbox key handed to the backend's ``open()`` (a login mapped
        to a mailbox in one lookup).
        """
        ...

    def get_secret(self, user: str) -> str | None:
        """*user*'s shared secret in the clear (for APOP and CRAM-MD5), or
        ``None`` if unknown or only a hash is stored."""
        ...

    def scram_credentials(self, user: str) -> pop3proto.ScramCredentials | None:
        """*user*'s SCRAM-SHA-256 keys, or ``None``."""
        ...


def _prep(text: str) -> str:
    # RFC 4013 SASLprep, as the SASL mechanisms apply it to what they
    # receive (RFC 4616 §2); falling back to the raw string keeps passwords
    # with characters newer than Unicode 3.2 usable, like the engine does.
    try:
        return pop3proto.saslprep(text, allow_unassigned=True)
    except ValueError:
        return text


def _has_control(text: str) -> bool:
    # Control characters (C0, DEL, C1: category Cc) and the Unicode line
    # and paragraph separators (Zl, Zp): none belongs in a name or a secret
    # of a line-based file, and each is a way to fake a line end.
    return any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in text)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def _pbkdf2(password: str, salt: bytes, iterations: int, size: int = 32) -> bytes:
    return hashlib.pbkdf2_hmac("sha256", _prep(password).encode("utf-8"), salt, iterations, size)


def hash_password(
    password: str,
    *,
    scheme: str = "PBKDF2-SHA256",
    iterations: int | None = None,
    salt: bytes | None = None,
) -> str:
    """Return the stored form of *password* for a users file.

    *scheme* is ``"PBKDF2-SHA256"`` (the default; *iterations* defaults to
    :data:`PBKDF2_ITERATIONS`) or ``"SCRAM-SHA-256"`` (*iterations*
    defaults to :data:`SCRAM_ITERATIONS`; allows SCRAM logins too).  *salt*
    defaults to 16 random bytes.  Hashed users cannot use APOP or CRAM-MD5,
    which need the secret itself.

    >>> hash_password("s3cret", iterations=1000, salt=b"0123456789abcdef")[:28]
    '{PBKDF2-SHA256}1000$MDEyMzQ1'
    """
    if not password:
        raise ValueError("password must not be empty")
    if salt is None:
        salt = secrets.token_bytes(16)
    elif not salt:
        raise ValueError("salt must not be empty")
    scheme = scheme.upper()
    if scheme == "PBKDF2-SHA256":
        n = PBKDF2_ITERATIONS if iterations is None else iterations
        if n < 1:
            raise ValueError("iterations must be >= 1")
        return f"{_PBKDF2}{n}${_b64(salt)}${_b64(_pbkdf2(password, salt, n))}"
    if scheme == "SCRAM-SHA-256":
        n = SCRAM_ITERATIONS if iterations is None else iterations
        creds = pop3proto.scram_credentials(password, salt=salt, iterations=n)
        return f"{_SCRAM}{n}${_b64(creds.salt)}${_b64(creds.stored_key)}${_b64(creds.server_key)}"
    raise ValueError(f"unknown password scheme {scheme!r}")


@dataclass(frozen=True)
class _Entry:
    plain: str | None = field(default=None, repr=False)
    pbkdf2: tuple[int, bytes, bytes] | None = field(default=None, repr=False)
    scram: pop3proto.ScramCredentials | None = field(default=None, repr=False)


#: What a stored form lets the server verify (the registry's credential
#: names; see :meth:`Authenticator.credentials`).
_ALL_CREDENTIALS: frozenset[str] = frozenset({"password", "secret", "scram-sha-256"})
_SCRAM_CREDENTIALS: frozenset[str] = frozenset({"password", "scram-sha-256"})
_HASH_CREDENTIALS: frozenset[str] = frozenset({"password"})


def _credentials_of(entry: _Entry) -> frozenset[str]:
    if entry.plain is not None:
        return _ALL_CREDENTIALS
    if entry.scram is not None:
        return _SCRAM_CREDENTIALS
    return _HASH_CREDENTIALS


def _parse_stored(stored: str) -> _Entry:
    """Parse one stored password; ValueError (without quoting it) if bad."""
    if stored.startswith(_PLAIN):
        stored = stored[len(_PLAIN) :]
    elif stored.startswith(_PBKDF2):
        parts = stored[len(_PBKDF2) :].split("$")
        if len(parts) != 3 or not parts[0].isdecimal():
            raise ValueError("malformed {PBKDF2-SHA256} entry")
        try:
            salt, digest = _unb64(parts[1]), _unb64(parts[2])
        except (binascii.Error, UnicodeEncodeError):
            raise ValueError("bad base64 in {PBKDF2-SHA256} entry") from None
        iterations = int(parts[0])
        if iterations < 1 or not salt or len(digest) < 16:
            raise ValueError("malformed {PBKDF2-SHA256} entry")
        return _Entry(pbkdf2=(iterations, salt, digest))
    elif stored.startswith(_SCRAM):
        parts = stored[len(_SCRAM) :].split("$")
        if len(parts) != 4 or not parts[0].isdecimal():
            raise ValueError("malformed {SCRAM-SHA-256} entry")
        try:
            salt, stored_key, server_key = (_unb64(p) for p in parts[1:])
            creds = pop3proto.ScramCredentials(
                salt=salt, iterations=int(parts[0]), stored_key=stored_key, server_key=server_key
            )
        except (binascii.Error, UnicodeEncodeError, ValueError):
            raise ValueError("malformed {SCRAM-SHA-256} entry") from None
        if len(stored_key) != 32 or not salt:
            raise ValueError("{SCRAM-SHA-256} keys must be SHA-256 digests")
        return _Entry(scram=creds)
    if not stored:
        raise ValueError("empty password")
    return _Entry(plain=stored)


#: The key of the derived SCRAM salts without a secret: one per process,
#: so that every store of the process gives a name the same salt.
_PROCESS_SALT_KEY = secrets.token_bytes(32)


def _salt_key(secret: bytes) -> bytes:
    return hmac.digest(secret, b"pop3proto SCRAM salts", "sha256")


def _cost(entry: _Entry) -> int:
    """The PBKDF2-SHA256 blocks (iterations x 32-octet blocks) a check of
    *entry* computes."""
    if entry.pbkdf2 is not None:
        iterations, _, digest = entry.pbkdf2
        return iterations * -(-len(digest) // 32)
    return entry.scram.iterations if entry.scram is not None else 0


class _TableAuthenticator:
    """The logic shared by :class:`DictAuthenticator` and :class:`UsersFile`."""

    def __init__(self, *, secret: bytes | None = None, scram_iterations: int | None = None) -> None:
        self._table: dict[str, _Entry] = {}
        # The key of the SCRAM salts derived for plaintext and unknown
        # users: from the server's secret, so that they stay the same across
        # restarts like the salts of users stored with SCRAM keys (else a
        # salt that changes at a restart marks a user as unknown).  Without
        # one, a per-process key (UsersFile derives one from its file).
        self._salt_key = _salt_key(secret) if secret is not None else _PROCESS_SALT_KEY
        if scram_iterations is not None and scram_iterations < 1:
            raise ValueError("scram_iterations must be >= 1")
        self._scram_iterations_set = scram_iterations
        self._dummy_salt = secrets.token_bytes(16)
        self._costs: tuple[int, int] = (0, scram_iterations or SCRAM_ITERATIONS)
        self._costs_of: dict[str, _Entry] | None = None

    def _entries(self) -> dict[str, _Entry]:
        return self._table

    def _lookup(self, user: str) -> _Entry | None:
        return self._entries().get(user)

    def _table_costs(self) -> tuple[int, int]:
        """(the PBKDF2 iterations of the most expensive check, the SCRAM
        iteration count shown for derived and unknown users), per table."""
        table = self._entries()
        if table is not self._costs_of:
            counts = Counter(e.scram.iterations for e in table.values() if e.scram)
            shown = self._scram_iterations_set or (
                counts.most_common(1)[0][0] if counts else SCRAM_ITERATIONS
            )
            self._costs = (max((_cost(e) for e in table.values()), default=0), shown)
            self._costs_of = table
        return self._costs

    def _pad(self, spent: int) -> None:
        # Every check costs what the most expensive entry costs: a plain
        # user, a hashed one and an unknown name all take the same time
        # (SECURITY.md), whatever the table mixes.
        missing = self._table_costs()[0] - spent
        if missing > 0:
            hashlib.pbkdf2_hmac("sha256", b"x", self._dummy_salt, missing)

    def credentials(self) -> frozenset[str]:
        """See :meth:`Authenticator.credentials`: what every stored form
        allows (plain secrets: all; SCRAM keys: password and SCRAM;
        PBKDF2 hashes: the password only)."""
        kinds = _ALL_CREDENTIALS
        for entry in self._entries().values():
            kinds = kinds & _credentials_of(entry)
        return kinds

    def check_password(self, user: str, password: str) -> bool:
        """See :meth:`Authenticator.check_password`."""
        entry = self._lookup(user)
        if entry is None:
            self._pad(0)
            return False
        try:
            if entry.plain is not None:
                # Compare digests, not the strings: equal lengths, so the
                # time does not depend on how long the stored password is.
                plain = _prep(entry.plain).encode("utf-8", "surrogatepass")
                want = hashlib.sha256(plain).digest()
                got = hashlib.sha256(_prep(password).encode("utf-8", "surrogatepass")).digest()
                return hmac.compare_digest(want, got)
            if entry.pbkdf2 is not None:
                iterations, salt, digest = entry.pbkdf2
                derived = _pbkdf2(password, salt, iterations, len(digest))
                return hmac.compare_digest(digest, derived)
            assert entry.scram is not None
            creds = entry.scram
            keys = pop3proto.scram_credentials(
                password, salt=creds.salt, iterations=creds.iterations
            )
            return hmac.compare_digest(keys.stored_key, creds.stored_key)
        finally:
            self._pad(_cost(entry))

    def get_secret(self, user: str) -> str | None:
        """See :meth:`Authenticator.get_secret`."""
        entry = self._lookup(user)
        return None if entry is None else entry.plain

    def scram_credentials(self, user: str) -> pop3proto.ScramCredentials | None:
        """See :meth:`Authenticator.scram_credentials`; derived for users
        stored in plaintext.

        A user who cannot log in with SCRAM (unknown, or stored as PBKDF2)
        gets decoy credentials that no password matches, with the salt and
        iteration count a plaintext user would get: the server's first SCRAM
        message reveals nothing about who exists.  Every answer costs one
        key derivation (none is cached), so its time reveals nothing either.
        """
        return self._scram(user, "sha256")

    def scram_sha1_credentials(self, user: str) -> pop3proto.ScramCredentials:
        """SCRAM-SHA-1 keys for *user* (RFC 5802), which the server offers
        when every user is stored in plaintext: derived like
        :meth:`scram_credentials` (a salt keyed by the secret and the
        hash's name, the same iteration count), decoys included."""
        return self._scram(user, "sha1")

    def _scram(self, user: str, hash_name: str) -> pop3proto.ScramCredentials:
        entry = self._lookup(user)
        iterations = self._table_costs()[1]
        salt = hmac.digest(self._salt_key, _SALT_PREFIX[hash_name] + _utf8(user), "sha256")[:16]
        if entry is not None and entry.scram is not None and hash_name == "sha256":
            # Stored keys: the derivation the others make, spent for time.
            pop3proto.scram_credentials("x", salt=salt, iterations=entry.scram.iterations)
            return entry.scram
        plain = entry.plain if entry is not None else None
        creds = pop3proto.scram_credentials(
            secrets.token_hex(16) if plain is None else plain,
            hash_name=hash_name,
            salt=salt,
            iterations=iterations,
        )
        if plain is not None:
            return creds
        # A decoy: derived like a real one, then keys nobody knows.
        size = len(creds.stored_key)
        return pop3proto.ScramCredentials(
            salt=salt,
            iterations=iterations,
            stored_key=secrets.token_bytes(size),
            server_key=secrets.token_bytes(size),
        )


#: What each hash's derived salts are keyed with besides the user name
#: (SHA-256 with nothing: the salts it gave before SHA-1 had its own stay).
_SALT_PREFIX: dict[str, bytes] = {"sha256": b"", "sha1": b"SCRAM-SHA-1\0"}


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


class DictAuthenticator(_TableAuthenticator):
    """An :class:`Authenticator` over a mapping ``{user: stored password}``.

    Values take any form of the module docstring (plain, ``{PLAIN}``,
    ``{PBKDF2-SHA256}``, ``{SCRAM-SHA-256}``).  The mapping is copied.

    *secret* (bytes, kept by the server) keys the SCRAM salts of users
    stored in plaintext and of unknown users, so that they stay the same
    across restarts; without it they are stable only while the process
    runs.  *scram_iterations* is the SCRAM iteration count for those users
    (default: the most common count of the ``{SCRAM-SHA-256}`` entries,
    else :data:`SCRAM_ITERATIONS`).  Every password check costs the key
    derivation of the most expensive entry, so store users with one scheme.
    """

    def __init__(
        self,
        users: Mapping[str, str],
        *,
        secret: bytes | None = None,
        scram_iterations: int | None = None,
    ) -> None:
        """Parse *users*; ValueError names the bad user, never the password."""
        super().__init__(secret=secret, scram_iterations=scram_iterations)
        table: dict[str, _Entry] = {}
        for name, stored in users.items():
            if not name:
                raise ValueError("empty user name")
            try:
                table[name] = _parse_stored(stored)
            except ValueError as exc:
                raise ValueError(f"user {name!r}: {exc}") from None
        self._table = table

    def quick_credentials(self) -> frozenset[str]:
        """See :class:`Authenticator`: the shared secret is a look-up, and a
        password check is one when no entry is hashed (no entry costs a key
        derivation, so neither does the padding of the others).  The table
        never changes, so neither does the answer.  A subclass that
        overrides a check is not assumed to keep it quick."""
        kinds: set[str] = set()
        cls = type(self)
        if cls.get_secret is _TableAuthenticator.get_secret:
            kinds.add("secret")
        if cls.check_password is _TableAuthenticator.check_password and not self._table_costs()[0]:
            kinds.add("password")
        return frozenset(kinds) & self.credentials()

    def __repr__(self) -> str:
        return f"<DictAuthenticator users={len(self._table)}>"


class UsersFile(_TableAuthenticator):
    """An :class:`Authenticator` reading a ``name:stored password`` file.

    Format, one user per line::

        # comments start with '#'; blank lines are ignored
        alice:correct horse battery staple
        bob:{PBKDF2-SHA256}600000$c2FsdA==$...
        carol:{SCRAM-SHA-256}4096$...$...$...

    The name ends at the first ``:``; everything after it, spaces included,
    is the stored password (only the line end is stripped).  Only LF or
    CRLF ends a line; a control character (C0, DEL, C1) or a Unicode line
    or paragraph separator in a name or a password, and a user defined
    twice, make the file invalid.  ``pop3proto passwd`` writes entries.
    The file is read at construction (errors raise :class:`ValueError` with the line
    number, never the line) and read again when its size or modification
    time changes; a broken edit is then logged and the previous contents
    kept.  Keep it readable only by the server (mode 0600).

    *secret* and *scram_iterations* are as for :class:`DictAuthenticator`;
    without *secret*, the key of the derived SCRAM salts comes from the
    file's contents as first read (its hashes and passwords are secret), so
    the salts survive a restart and change only when the file does.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        secret: bytes | None = None,
        scram_iterations: int | None = None,
    ) -> None:
        """Read *path*; see the class docstring."""
        super().__init__(secret=secret, scram_iterations=scram_iterations)
        self.path = os.fspath(path)
        self._reload_lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._load()
        if secret is None:
            # The file's contents (its hashes and secrets) are the server's
            # secret: the derived SCRAM salts survive a restart, and change
            # only when the file does.  Read once: a reload keeps them.
            self._salt_key = _salt_key(self._file_digest)

    def _load(self) -> None:
        st = os.stat(self.path)
        with open(self.path, "rb") as f:
            data = f.read()
        self._file_digest = hashlib.sha256(b"pop3proto users\0" + data).digest()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            # Not from the except block: its message quotes the bad octet,
            # which may belong to a password.
            text = None
        if text is None:
            raise ValueError(f"{self.path}: not valid UTF-8")
        self._table = self._parse_text(text, self.path)
        self._stamp = (st.st_mtime_ns, st.st_size)

    @staticmethod
    def _parse_text(text: str, source: str = "<users>") -> dict[str, _Entry]:
        """Parse users-file *text* (``source`` names it in errors)."""
        table: dict[str, _Entry] = {}
        defined: dict[str, int] = {}
        # Only LF (and CRLF) ends a line: str.splitlines() would also split
        # on U+2028, form feeds and the like, so that a password containing
        # one could define a second user.
        for number, raw in enumerate(text.split("\n"), 1):
            if raw.endswith("\r"):
                raw = raw[:-1]
            stripped = raw.strip()
            if not stripped or stripped.startswith("#"):
                continue
            name, sep, stored = raw.partition(":")
            name = name.strip()
            if not sep or not name:
                raise ValueError(f"{source}:{number}: expected 'name:password'")
            if _has_control(name):
                raise ValueError(f"{source}:{number}: control character in the user name")
            if _has_control(stored):
                raise ValueError(f"{source}:{number}: control character in the password")
            if name in defined:
                raise ValueError(
                    f"{source}:{number}: user {name!r} already defined on line {defined[name]}"
                )
            try:
                table[name] = _parse_stored(stored)
            except ValueError as exc:
                raise ValueError(f"{source}:{number}: {exc}") from None
            defined[name] = number
        return table

    def _entries(self) -> dict[str, _Entry]:
        try:
            st = os.stat(self.path)
        except OSError:
            return self._table
        if (st.st_mtime_ns, st.st_size) != self._stamp:
            with self._reload_lock:
                # Another thread may have reloaded while this one waited.
                if (st.st_mtime_ns, st.st_size) != self._stamp:  # pragma: no branch
                    try:
                        self._load()
                    except (OSError, ValueError) as exc:
                        log.error("users file not reloaded: %s", exc)
                        self._stamp = (st.st_mtime_ns, st.st_size)
        return self._table

    def __repr__(self) -> str:
        return f"<UsersFile {self.path!r} users={len(self._table)}>"

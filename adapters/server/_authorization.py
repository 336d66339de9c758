"""The AUTHORIZATION state of a server session: who is logging in, and how.

:class:`Authorization` checks one session's credentials by every method
the server offers: USER/PASS and APOP (RFC 1939 §7), and SASL (RFC 5034)
with the mechanisms of :data:`~._config.SUPPORTED_MECHANISMS`.  It
*decides*; the session *acts*.  Each command's method returns an
:data:`Outcome`:

* a reply event to send (``+OK send PASS``, a SASL challenge, a refusal);
* :class:`LoggedIn`: the credentials are good, the session opens the
  user's maildrop (RFC 1939 §4);
* :data:`FAILED`: they are not.  The session answers every failure the
  same way, ``-ERR [AUTH] authentication failed`` (RFC 3206 §5), counts
  it and closes after ``max_auth_failures``; why it failed (unknown user,
  wrong password, bad SASL proof) stays here.

What is offered follows from what the authenticator can verify
(:meth:`~pop3proto.adapters.mailstore._users.Authenticator.credentials`),
looked up in the mechanism registry
(:attr:`pop3proto.Mechanism.server_credential`): a SASL mechanism only if
its credential is there, USER/PASS only with ``"password"``, the APOP
timestamp only with ``"secret"``.  A store of PBKDF2 hashes offers USER,
PLAIN and LOGIN, never a method it would have to fail.

Policy choices:

* Plaintext logins (USER/PASS, SASL PLAIN and LOGIN) are refused, and not
  advertised, unless the connection is TLS or loopback
  (``ServerConfig.allow_plaintext_auth=None``, RFC 5034 §4, RFC 2595 §2.3).
* USER is answered ``+OK`` for any name (no user enumeration, RFC 1939
  §13), and an unknown user costs APOP the same digest as a known one.
* The APOP timestamp (and the CRAM-MD5 challenge) is unique and
  unpredictable for each greeting (RFC 1939 §7, RFC 2195 §2).
"""

from __future__ import annotations

import hmac
import itertools
import logging
import os
import re
import secrets
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any, TypeVar

import pop3proto
from pop3proto import (
    Apop,
    Auth,
    Connection,
    Err,
    Event,
    Ok,
    Pass,
    SaslCancel,
    SaslChallenge,
    SaslResponse,
    User,
)
from pop3proto.sasl import OAuthDenial

from ..mailstore._base import Identity
from ..mailstore._users import Authenticator
from ._config import AUTHENTICATOR_CREDENTIALS, ServerConfig

__all__ = ["Authorization", "LoggedIn", "Failed", "FAILED", "Outcome"]

log = logging.getLogger("pop3proto.server")


@dataclass(frozen=True, slots=True)
class LoggedIn:
    """The credentials are good: *user* (who logged in, and the mailbox
    key) may open their maildrop."""

    user: Identity


@dataclass(frozen=True, slots=True)
class Failed:
    """The credentials are wrong (see the module docstring for the answer)."""


#: The one :class:`Failed` outcome.
FAILED = Failed()

#: What each command's method returns: a reply to send, or a verdict.
Outcome = Event | LoggedIn | Failed


_T = TypeVar("_T")
_timestamp_counter = itertools.count(1)
_HOST_RE = re.compile(r"[^A-Za-z0-9.\-]")


def apop_timestamp(hostname: str) -> str:
    """A new ``<pid.counter.random@host>`` msg-id for a greeting.

    RFC 1939 §7: a msg-id that MUST be different for each greeting: the
    process id, a counter and 64 random bits make it unique and
    unpredictable (predictability would allow precomputed replies).
    """
    host = _HOST_RE.sub("", hostname) or "localhost"
    return f"<{os.getpid()}.{next(_timestamp_counter)}.{secrets.token_hex(8)}@{host}>"


def credentials_of(authenticator: Authenticator) -> AbstractSet[str]:
    """What *authenticator* can verify (all it may be asked for if it does
    not say, as before :meth:`Authenticator.credentials` existed)."""
    credentials = getattr(authenticator, "credentials", None)
    if credentials is None:
        return AUTHENTICATOR_CREDENTIALS
    return frozenset(credentials())


def quick_credentials_of(authenticator: Authenticator) -> frozenset[str]:
    """The kinds of credentials *authenticator* answers quickly (see
    :class:`~pop3proto.adapters.mailstore._users.Authenticator`): none if
    it does not say."""
    quick = getattr(authenticator, "quick_credentials", None)
    if quick is None:
        return frozenset()
    return frozenset(quick())


def _plaintext_refused() -> Err:
    # RFC 5034 §4 / RFC 2595 §2.3: no cleartext passwords without TLS.
    return Err("plaintext authentication disallowed without TLS", pop3proto.AUTH)


class Authorization:
    """The logins of one session; see the module docstring.

    Args:
        authenticator: checks credentials.
        config: the server-wide settings (mechanisms, APOP, the plaintext
            policy).
        conn: the session's engine connection, read (never fed) for
            whether the transport is TLS right now.
        is_loopback: the client connects from a loopback address.
    """

    def __init__(
        self,
        authenticator: Authenticator,
        config: ServerConfig,
        conn: Connection,
        *,
        is_loopback: bool,
    ) -> None:
        """See the class docstring."""
        self.authenticator = authenticator
        self.config = config
        self.is_loopback = is_loopback
        self._conn = conn
        #: What the authenticator can verify (see the module docstring).
        self.credentials = _with_derived(credentials_of(authenticator), config)
        #: Of those, what it answers quickly: a step that asks only for
        #: these is made on the loop (see :meth:`is_quick`).
        self.quick = quick_credentials_of(authenticator) & self.credentials
        #: The APOP timestamp of this session's greeting, if any.
        self.timestamp: str | None = None
        self._pending_user: str | None = None
        self._mechanism: pop3proto.SaslServerMechanism | None = None
        # The kind of credential the exchange in progress asks for.
        self._mechanism_needs = ""
        # The last login check_password accepted, and the Identity it
        # returned (if it chose the mailbox).
        self._checked: tuple[str, Identity | None] | None = None
        #: The account named by the login attempt in progress (what the
        #: penalties count failures on), once a check has seen it.
        self.attempted: str | None = None

    def greeting_text(self) -> str:
        """The greeting's text, with a new APOP timestamp if APOP is on."""
        text = self.config.greeting
        # RFC 1939 §7: APOP needs the shared secret on the server.
        if self.config.apop and "secret" in self.credentials:
            self.timestamp = apop_timestamp(self.config.hostname)
            text = f"{text} {self.timestamp}"
        return text

    @property
    def user_pass(self) -> bool:
        """Whether USER/PASS is allowed (and advertised) right now."""
        return "password" in self.credentials and self.plaintext_allowed

    @property
    def plaintext_allowed(self) -> bool:
        """Whether USER/PASS, PLAIN and LOGIN are allowed right now."""
        allow = self.config.allow_plaintext_auth
        if allow is None:
            return self.is_loopback or self._conn.tls
        return allow

    @property
    def mechanisms(self) -> tuple[str, ...]:
        """The SASL mechanisms allowed (and advertised) right now."""
        plaintext = self.plaintext_allowed
        credentials = self.credentials
        return tuple(
            m
            for m in self.config.sasl_mechanisms
            if (plaintext or not pop3proto.MECHANISMS[m].sends_password)
            and pop3proto.MECHANISMS[m].server_credential in credentials
        )

    def is_quick(self, event: Event) -> bool:
        """Whether the step for *event* (PASS, APOP, AUTH or a line inside
        AUTH) asks the authenticator only what it answers quickly, so that
        the session may make it on the loop.  A step that asks nothing (a
        cancel) is quick too."""
        if not self.quick:
            return False
        needs = _STEP_NEEDS.get(type(event))
        return needs is None or needs(self, event) in self.quick

    # -- what the session tells us -------------------------------------------

    def bad_line(self) -> None:
        """A line the engine refused: one inside AUTH that is neither base64
        nor "*" ends the exchange (RFC 5034 §4, answered -ERR)."""
        self._mechanism = None

    def tls_starting(self) -> None:
        """STLS was accepted: a USER given in plaintext does not carry over."""
        self._pending_user = None

    def end(self) -> None:
        """The session is over: drop a SASL exchange in progress."""
        self._mechanism = None

    # -- the commands ----------------------------------------------------------

    def user(self, event: User) -> Outcome:
        """USER (RFC 1939 §7)."""
        if not self.plaintext_allowed:
            return _plaintext_refused()
        if "password" not in self.credentials:
            return Err("USER/PASS not available")
        # RFC 1939 §13: +OK whatever the name, so USER reveals nothing.
        self._pending_user = event.name
        return Ok("send PASS")

    def password(self, event: Pass) -> Outcome:
        """PASS (RFC 1939 §7), after USER."""
        user, self._pending_user = self._pending_user, None
        self._checked = None
        self.attempted = user
        if user is None or not self.plaintext_allowed:  # pragma: no cover - engine order
            return _plaintext_refused()
        if not self._check_password(user, event.password):
            return FAILED
        return LoggedIn(self._identity(user))

    def apop(self, event: Apop) -> Outcome:
        """APOP (RFC 1939 §7)."""
        timestamp = self.timestamp
        if timestamp is None:  # pragma: no cover - the engine refuses APOP without one
            return Err("APOP not available")
        self.attempted = event.name
        try:
            secret = self.authenticator.get_secret(event.name)
        except Exception:
            log.exception("authenticator failed")
            secret = None
        # RFC 1939 §7: MD5(timestamp + secret).  An unknown user costs the
        # same digest and comparison as a wrong one.
        expected = pop3proto.apop_digest(
            timestamp, secret if secret is not None else secrets.token_hex(16)
        )
        matches = hmac.compare_digest(expected.encode("ascii"), event.digest.encode("ascii"))
        if not matches or secret is None:
            return FAILED
        return LoggedIn(Identity(event.name))

    def auth(self, event: Auth) -> Outcome:
        """AUTH mechanism [initial-response] (RFC 5034 §4)."""
        name = event.mechanism
        if name not in self.config.sasl_mechanisms or (
            pop3proto.MECHANISMS[name].server_credential not in self.credentials
        ):
            return Err("unsupported authentication mechanism")
        entry = pop3proto.MECHANISMS[name]
        self._checked = None
        self.attempted = None
        if entry.sends_password and not self.plaintext_allowed:
            return _plaintext_refused()
        mechanism = _BUILDERS[entry.server_credential](self, entry)
        self._mechanism_needs = entry.server_credential
        if mechanism.server_first and event.initial_response is not None:
            # RFC 5034 §4: an initial response to a mechanism without a
            # client-first step is answered -ERR.
            return Err(f"{name} does not take an initial response")
        self._mechanism = mechanism
        return self._sasl_step(event.initial_response)

    def sasl_line(self, event: SaslResponse | SaslCancel) -> Outcome:
        """A client line inside an AUTH exchange (RFC 5034 §4)."""
        if isinstance(event, SaslCancel):
            # RFC 5034 §4: "*" cancels; the server MUST answer -ERR.
            self._mechanism = None
            return Err("authentication cancelled")
        return self._sasl_step(event.data)

    # -- internals ---------------------------------------------------------------

    def _check_password(self, user: str, password: str) -> bool:
        self.attempted = user
        try:
            verdict = self.authenticator.check_password(user, password)
        except Exception:
            log.exception("authenticator failed")
            return False
        if verdict:
            self._checked = (user, verdict if isinstance(verdict, Identity) else None)
        return bool(verdict)

    def _identity(self, user: str) -> Identity:
        """Who logged in as *user* (the authenticated name; for PLAIN, the
        authzid if one was given): the Identity check_password returned,
        or one built from the names."""
        checked, self._checked = self._checked, None
        if checked is None:
            return Identity(user)
        login, chosen = checked
        authzid = user if user != login else ""
        if chosen is not None:
            return Identity(chosen.mailbox, login=chosen.login, authzid=authzid or chosen.authzid)
        return Identity(user, login=login, authzid=authzid)

    def _with_password(self, entry: pop3proto.Mechanism) -> pop3proto.SaslServerMechanism:
        return entry.server(self._check_password)  # type: ignore[call-arg]

    def _with_secret(self, entry: pop3proto.Mechanism) -> pop3proto.SaslServerMechanism:
        # RFC 2195 §2: a unique msg-id-like challenge.
        challenge = apop_timestamp(self.config.hostname)
        return entry.server(self._noted(self.authenticator.get_secret), challenge=challenge)  # type: ignore[call-arg]

    def _with_scram_keys(self, entry: pop3proto.Mechanism) -> pop3proto.SaslServerMechanism:
        return entry.server(self._noted(self.authenticator.scram_credentials))  # type: ignore[call-arg]

    def _noted(self, lookup: Callable[[str], _T]) -> Callable[[str], _T]:
        """*lookup*, noting the account it is asked about (the penalties
        count a failed SASL exchange on the account it named)."""

        def noted(user: str) -> _T:
            self.attempted = user
            return lookup(user)

        return noted

    def _with_scram_sha1_keys(self, entry: pop3proto.Mechanism) -> pop3proto.SaslServerMechanism:
        # The Authenticator protocol gives SCRAM-SHA-256 keys only, which
        # cannot verify SHA-1 (RFC 5802 §3).  The stores of this package
        # derive SHA-1 keys too, with salts keyed by the server's secret
        # (stable across restarts, like the SHA-256 ones).
        derive = getattr(self.authenticator, "scram_sha1_credentials", None)
        if derive is None:
            derive = self._scram_sha1_from_secret
        return entry.server(self._noted(derive))  # type: ignore[call-arg]

    def _scram_sha1_from_secret(self, user: str) -> pop3proto.ScramCredentials:
        """SHA-1 keys from another authenticator's shared secret, with a
        per-process keyed salt: stable while the server runs (asking twice
        reveals nothing) and unguessable.  An unknown user gets a decoy
        derived the same way, so that neither its salt's behaviour nor the
        time reveals it."""
        secret = self.authenticator.get_secret(user)
        salt = hmac.digest(_SCRAM_SHA1_SALT_KEY, user.encode("utf-8", "surrogatepass"), "sha256")
        creds = pop3proto.scram_credentials(
            secrets.token_hex(16) if secret is None else secret, hash_name="sha1", salt=salt[:16]
        )
        if secret is not None:
            return creds
        return pop3proto.ScramCredentials(
            salt=creds.salt,
            iterations=creds.iterations,
            stored_key=secrets.token_bytes(20),
            server_key=secrets.token_bytes(20),
        )

    def _with_token(self, entry: pop3proto.Mechanism) -> pop3proto.SaslServerMechanism:
        verifier = self.config.token_verifier
        assert verifier is not None  # _with_derived() offers tokens only then

        def check_token(user: str, token: str) -> str | OAuthDenial:
            self.attempted = user
            try:
                verdict = verifier(user, token)
            except Exception as exc:
                # The type only: the message might quote the token.
                log.error("token verifier failed: %s", type(exc).__name__)
                return OAuthDenial()
            if isinstance(verdict, OAuthDenial) or (isinstance(verdict, str) and verdict):
                return verdict
            log.error(
                "token verifier returned %s, not an identity or a denial", type(verdict).__name__
            )
            return OAuthDenial()

        return entry.server(check_token)  # type: ignore[call-arg]

    def _sasl_step(self, response: bytes | None) -> Outcome:
        mechanism = self._mechanism
        assert mechanism is not None
        try:
            challenge = mechanism.step(response)
        except (pop3proto.SaslError, ValueError):
            # The reason (bad proof, malformed message) stays private: the
            # client gets the same answer as for a wrong password.
            self._mechanism = None
            return FAILED
        if challenge is not None:
            return SaslChallenge(challenge)
        self._mechanism = None
        user = mechanism.authenticated_user
        assert user is not None
        return LoggedIn(self._identity(user))


#: How to build the server side of a mechanism from what the authenticator
#: gives, by the registry's name for the credential it needs (the keys are
#: :data:`~._config.AUTHENTICATOR_CREDENTIALS` and the derived kinds of
#: :func:`_with_derived`).
_BUILDERS: dict[
    str, Callable[[Authorization, pop3proto.Mechanism], pop3proto.SaslServerMechanism]
] = {
    "password": Authorization._with_password,
    "secret": Authorization._with_secret,
    "scram-sha-1": Authorization._with_scram_sha1_keys,
    "scram-sha-256": Authorization._with_scram_keys,
    "token": Authorization._with_token,
}


def _auth_needs(authorization: Authorization, event: Auth) -> str:
    # An unknown mechanism is refused before anything is asked; "" is in
    # no set of kinds, so such a step simply goes to a worker thread.
    entry = pop3proto.MECHANISMS.get(event.mechanism)
    return "" if entry is None else entry.server_credential


#: What each login step asks the authenticator for, as a kind of
#: credential (see :meth:`Authorization.is_quick`), by the step's event.
_STEP_NEEDS: dict[type[Event], Callable[[Authorization, Any], str]] = {
    Pass: lambda authorization, event: "password",
    Apop: lambda authorization, event: "secret",
    Auth: _auth_needs,
    SaslResponse: lambda authorization, event: authorization._mechanism_needs,
}

#: Keys the derived SCRAM-SHA-1 salts for an authenticator that derives
#: none (see ``_scram_sha1_from_secret``).
_SCRAM_SHA1_SALT_KEY = secrets.token_bytes(32)


def _with_derived(credentials: AbstractSet[str], config: ServerConfig) -> frozenset[str]:
    """*credentials*, plus the kinds the server derives: SCRAM-SHA-1 keys
    from a shared secret (an authenticator gives SHA-256 keys only), and a
    bearer token when a verifier is configured."""
    kinds = set(credentials)
    if "secret" in kinds:
        kinds.add("scram-sha-1")
    if config.token_verifier is not None:
        kinds.add("token")
    return frozenset(kinds)

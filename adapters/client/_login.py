"""How the client logs in: the strongest method offered, never leaking a password.

:class:`LoginOperations` adds the login operations to the session of
:class:`~._base.CoreBase`: choosing methods in the order of
:data:`~._mechanisms.LOGIN_PREFERENCE` (SASL, then APOP, then USER/PASS),
refusing before anything is sent the methods that would expose the password
on an unencrypted link to a remote host (RFC 2595 §2.3, RFC 8314 §5),
falling back to the next method only after a ``-ERR`` without a response
code, running a SASL exchange (RFC 5034) and distrusting a server that fails
to prove itself (RFC 5802 §5.1), and switching UTF8 on for non-ASCII
credentials (RFC 6856 §2.2).
"""

from __future__ import annotations

import contextlib

import pop3proto
from pop3proto import State
from pop3proto.sasl import OAuthDenial

from .._seam import Operation
from ._base import CoreBase, build_command
from ._errors import (
    AuthenticationFailed,
    ConnectionLost,
    InsecureAuthenticationRefused,
    ProtocolViolation,
    raise_for_err,
)
from ._mechanisms import LOGIN_PREFERENCE, SAFE_WITHOUT_TLS, TOKEN_MECHANISMS

__all__ = ["LoginOperations"]


def _token_refusal(mech: pop3proto.SaslClientMechanism) -> str | None:
    """What a bearer-token mechanism's error challenge says, in one line."""
    challenge = getattr(mech, "error_challenge", None)
    if not isinstance(challenge, bytes):
        return None
    denial = OAuthDenial.from_challenge(challenge)
    return denial.describe() if denial is not None else "the server's error is not JSON"


#: The methods whose ``-ERR [AUTH]`` is a clear denial: the server had the
#: password itself to check (USER/PASS, and the SASL mechanisms that send
#: it), so no other method can fare better.
_VERDICT_METHODS: frozenset[str] = frozenset(
    {"USER"}
    | {
        name
        for name, entry in pop3proto.MECHANISMS.items()
        if entry.sends_password and entry.client_credential == "password"
    }
)


def _tried(failure: AuthenticationFailed, tried: list[str]) -> AuthenticationFailed:
    """*failure*, its message naming the methods tried (never a password)."""
    return AuthenticationFailed(
        f"login failed (tried {', '.join(tried)}): {failure}",
        response=failure.response,
        command=failure.command,
    )


class LoginOperations(CoreBase):
    """The login operations of :class:`~._core.ClientCore`."""

    def login_methods(
        self, capabilities: pop3proto.Capabilities, *, allow_insecure: bool = False
    ) -> list[str]:
        """The methods :meth:`login` would try, strongest first.

        SASL mechanisms the server advertises, in :data:`LOGIN_PREFERENCE`
        order; then ``"APOP"`` if the greeting carries a timestamp
        (RFC 1939 §7); then ``"USER"`` if advertised, if CAPA told nothing,
        or as the last resort.  Unless the link is :attr:`secure` or
        *allow_insecure* is true, only :data:`SAFE_WITHOUT_TLS` methods
        remain.  Pure: sends nothing.
        """
        offered = capabilities.sasl
        methods: list[str] = [name for name in LOGIN_PREFERENCE if name in offered]
        greeting = self._conn.greeting
        if greeting is not None and greeting.timestamp is not None:
            methods.append("APOP")
        if capabilities.user or not capabilities.entries or not methods:
            methods.append("USER")
        if not (self.secure or allow_insecure):
            methods = [name for name in methods if name in SAFE_WITHOUT_TLS]
        return methods

    def login(
        self,
        user: str,
        password: str,
        *,
        mechanism: str | None = None,
        allow_insecure: bool = False,
    ) -> Operation[str]:
        """Log in with the strongest method the server offers; return its name.

        Asks CAPA first if the capabilities are not known.  The order is
        :data:`LOGIN_PREFERENCE` (SCRAM-SHA-256, SCRAM-SHA-1, CRAM-MD5,
        PLAIN, LOGIN), then APOP, then USER/PASS; see :meth:`login_methods`.
        *mechanism* (``"USER"``, ``"APOP"`` or a SASL name) forces one
        method, advertised or not.

        Without TLS to a host that is not loopback, methods that expose the
        password (PLAIN, LOGIN, USER/PASS, and APOP, whose MD5 digest an
        active attacker can break) are refused with
        :class:`InsecureAuthenticationRefused` before anything is sent,
        unless *allow_insecure* is true (RFC 2595 §2.3, RFC 8314 §5).

        If a method fails with a plain ``-ERR`` (no response code: perhaps
        the mechanism is not set up for this account), the next one is
        tried.  ``-ERR [AUTH]`` to a method that sends the password
        (USER/PASS, PLAIN, LOGIN) is a clear denial (RFC 3206 §5) and ends
        the attempt; to a challenge-response method (SCRAM, CRAM-MD5, APOP)
        it may only mean that the server cannot verify that method for the
        account (it stores password hashes), so the first remaining method
        that sends the password is tried next, and nothing between: a wrong
        password costs at most two failed logins.  ``[IN-USE]``,
        ``[LOGIN-DELAY]`` and ``[SYS/...]`` end it at once, raised as their
        own classes.  A SASL server that fails to prove itself (SCRAM) also
        ends it.  When more than one method was tried, the error's message
        names them.
        """
        if not isinstance(user, str) or not isinstance(password, str):
            raise TypeError("user and password must be str")
        if not user or not password:
            raise ValueError("user and password must not be empty")
        if self._conn.state is not State.AUTHORIZATION:
            yield from self._begin("USER")  # raises the right error
        capabilities = yield from self.capabilities()
        if mechanism is not None:
            method = mechanism.upper()
            if method in TOKEN_MECHANISMS:
                # A bearer token is not a password: the caller must say so.
                raise ValueError(
                    f"{method} takes an OAuth 2.0 token, not a password; use login_oauth2()"
                )
            if method not in ("USER", "APOP", *LOGIN_PREFERENCE):
                raise ValueError(
                    f"unknown login method {mechanism!r}; use authenticate() for other SASL "
                    "mechanisms"
                )
            if not (self.secure or allow_insecure or method in SAFE_WITHOUT_TLS):
                raise InsecureAuthenticationRefused(
                    f"{method} would expose the password on an unencrypted link to "
                    f"{self.host or 'the server'}; use TLS or pass allow_insecure=True",
                    command="login",
                )
            methods = [method]
        else:
            methods = self.login_methods(capabilities, allow_insecure=allow_insecure)
            if not methods:
                offered = self.login_methods(capabilities, allow_insecure=True)
                raise InsecureAuthenticationRefused(
                    "every login method the server offers ("
                    + ", ".join(offered)
                    + ") would expose the password on an unencrypted link to "
                    f"{self.host or 'the server'}; use TLS or pass allow_insecure=True",
                    command="login",
                )
        failure: AuthenticationFailed | None = None
        tried: list[str] = []
        skip_to_verdict = False
        # After a -ERR to a login command the session is back in AUTHORIZATION
        # (RFC 1939 §7, RFC 5034 §4), so the next method can always be tried.
        for method in methods:
            if skip_to_verdict and method not in _VERDICT_METHODS:
                continue
            tried.append(method)
            try:
                if method == "USER":
                    yield from self._user_pass(user, password)
                elif method == "APOP":
                    yield from self._apop(user, password)
                else:
                    cls = pop3proto.CLIENT_MECHANISMS[method]
                    mech = cls(user, password)  # type: ignore[call-arg]
                    yield from self._sasl(mech, capabilities)
            except ConnectionLost as exc:
                if failure is not None:
                    # RFC 1939 §4: the server may close after a failed login.
                    raise _tried(failure, tried[:-1]) from exc
                raise
            except AuthenticationFailed as exc:
                if exc.response is None or len(methods) == 1:
                    raise
                if exc.code is None:
                    failure = exc  # a plain -ERR: perhaps not set up; try the next
                    continue
                if exc.code != pop3proto.AUTH or method in _VERDICT_METHODS:
                    # [IN-USE], [SYS/...], or a clear denial: the server
                    # checked the password itself (RFC 3206 §5).
                    if len(tried) == 1:
                        raise
                    raise _tried(exc, tried) from exc
                # [AUTH] to a challenge-response method (SCRAM, CRAM-MD5,
                # APOP) may only mean that the server cannot verify it for
                # this account (a store of PBKDF2 hashes); what it can
                # always judge is the password itself: go straight to the
                # first method that sends it, so one wrong password costs
                # at most two failed logins.
                failure = exc
                skip_to_verdict = True
                continue
            return method
        assert failure is not None
        raise _tried(failure, tried) if len(tried) > 1 else failure

    def authenticate(
        self, mechanism: pop3proto.SaslClientMechanism, *, allow_insecure: bool = False
    ) -> Operation[None]:
        """Log in with a ready-made SASL mechanism object (RFC 5034), e.g.
        :class:`pop3proto.XOAuth2Client` with an OAuth token.

        Only :data:`SAFE_WITHOUT_TLS` mechanisms run on an unencrypted link to
        a remote host unless *allow_insecure* is true.  The initial response
        goes on the AUTH line when the server advertised SASL and it fits in
        the command limit (RFC 5034 §4), else after the server's empty
        challenge.
        """
        if not (self.secure or allow_insecure or mechanism.name in SAFE_WITHOUT_TLS):
            raise InsecureAuthenticationRefused(
                f"{mechanism.name} would expose credentials on an unencrypted link to "
                f"{self.host or 'the server'}; use TLS or pass allow_insecure=True",
                command="login",
            )
        if self._conn.state is not State.AUTHORIZATION:
            yield from self._begin("AUTH")
        capabilities = yield from self.capabilities()
        yield from self._sasl(mechanism, capabilities)

    def login_oauth2(
        self,
        user: str,
        token: str,
        *,
        mechanism: str | None = None,
        allow_insecure: bool = False,
    ) -> Operation[str]:
        """Log in with an OAuth 2.0 access token (RFC 6750); return the mechanism used.

        Takes OAUTHBEARER (RFC 7628) if the server's CAPA offers it, else
        XOAUTH2 (Google's and Microsoft's); *mechanism* forces one of them.
        The token goes on the AUTH line only when the line stays within
        RFC 5034 §4's command limit; a longer token (Microsoft's are over a
        kilobyte) is sent after the server's empty challenge.  On a refusal
        the server's JSON error challenge is answered as the mechanism
        requires and summarised in the :class:`AuthenticationFailed`
        message (``status``, ``scope``), which never holds the token.

        A bearer token is as good as a password to whoever reads it, so it
        is refused (:class:`InsecureAuthenticationRefused`) on an
        unencrypted link to a host that is not loopback unless
        *allow_insecure* (RFC 7628 §5).
        """
        if not isinstance(user, str) or not isinstance(token, str):
            raise TypeError("user and token must be str")
        if not user or not token:
            raise ValueError("user and token must not be empty")
        if self._conn.state is not State.AUTHORIZATION:
            yield from self._begin("AUTH")  # raises the right error
        capabilities = yield from self.capabilities()
        if mechanism is not None:
            name = mechanism.upper()
            if name not in TOKEN_MECHANISMS:
                raise ValueError(
                    f"unknown token mechanism {mechanism!r}; use {' or '.join(TOKEN_MECHANISMS)}"
                )
        else:
            offered = {name.upper() for name in capabilities.sasl}
            choices = [m for m in TOKEN_MECHANISMS if m in offered]
            if not choices:
                raise AuthenticationFailed(
                    "the server offers no OAuth 2.0 mechanism ("
                    + " or ".join(TOKEN_MECHANISMS)
                    + "); its SASL capability lists "
                    + (" ".join(capabilities.sasl) or "nothing"),
                    command="AUTH",
                )
            name = choices[0]
        if not (self.secure or allow_insecure):
            raise InsecureAuthenticationRefused(
                f"{name} would expose the token on an unencrypted link to "
                f"{self.host or 'the server'}; use TLS or pass allow_insecure=True",
                command="login",
            )
        mech: pop3proto.SaslClientMechanism
        if name == "OAUTHBEARER":
            # RFC 7628 §3.1: host is optional; sent when known (a host
            # name the message cannot carry is left out, not an error).
            host = self.host if self.host and self.host.isprintable() else None
            mech = pop3proto.OAuthBearerClient(user, token, host=host)
        else:
            mech = pop3proto.XOAuth2Client(user, token)
        yield from self._sasl(mech, capabilities)
        return name

    def _sasl(
        self, mech: pop3proto.SaslClientMechanism, capabilities: pop3proto.Capabilities
    ) -> Operation[None]:
        label = f"AUTH {mech.name}"
        initial: bytes | None = None
        # RFC 5034 §4: an initial response only if SASL was advertised, and
        # only if the AUTH line stays within the command limit.
        if "SASL" in capabilities:
            initial = mech.initial_response()
            if initial is not None and not pop3proto.fits_initial_response(
                mech.name, initial, self._max_command
            ):
                initial = None
        # A name AUTH cannot carry (RFC 4422 §3.1: 1-20 of A-Z, 0-9, - and _)
        # is a bad argument, refused before anything is sent.
        command = build_command(lambda: pop3proto.Auth(mech.name, initial))
        yield from self._begin("AUTH", command=command)
        yield from self._send(command)
        distrust: str | None = None
        while True:
            event = yield from self._event(label)
            if isinstance(event, pop3proto.SaslChallenge):
                try:
                    answer = mech.respond(event.data)
                except pop3proto.SaslError as exc:
                    distrust = str(exc)
                    yield from self._send(pop3proto.SaslCancel())
                    continue
                yield from self._send(pop3proto.SaslResponse(answer))
                continue
            if isinstance(event, pop3proto.Ok):
                if distrust is None and mech.complete:
                    return
                # +OK although the mechanism is not done (e.g. SCRAM without
                # the server signature): the server did not prove itself, so
                # the session must not be used (RFC 5802 §5.1).
                self.abort()
                raise AuthenticationFailed(
                    f"{label}: the server reported success without completing the exchange"
                    + (f" ({distrust})" if distrust else ""),
                    command=label,
                )
            if isinstance(event, pop3proto.Err):
                if distrust is not None:
                    # No response attached: the -ERR only answers our "*",
                    # and login() must not fall back to a weaker method for
                    # a server that failed to prove itself.
                    raise AuthenticationFailed(
                        f"{label}: the server failed verification: {distrust}", command=label
                    )
                refusal = _token_refusal(mech)
                if refusal is not None and (event.code is None or event.code.known == "AUTH"):
                    # The JSON error challenge says why (RFC 7628 §3.2.2).
                    code = f"[{event.code}] " if event.code is not None else ""
                    raise AuthenticationFailed(
                        f"{label} failed: -ERR {code}{event.text} (token refused: {refusal})",
                        response=event,
                        command=label,
                    )
                raise_for_err(event, label, login=True)
            if isinstance(event, pop3proto.ConnectionClosed):
                # Only after an earlier failed login (the engine reports EOF
                # with AUTH unanswered as an error otherwise); login() turns
                # it into that failure.
                raise ConnectionLost(f"{label}: the server closed the connection", command=label)
            raise ProtocolViolation(  # pragma: no cover - the engine frames AUTH replies
                f"{label}: unexpected {type(event).__name__}",
                error=pop3proto.RemoteProtocolError("unexpected event"),
                command=label,
            )

    def _check_credential(self, keyword: str, value: str, what: str) -> None:
        if len(keyword) + 1 + len(value.encode("utf-8")) + 2 > self._max_command:
            raise ValueError(
                f"the {what} is too long for the {self._max_command}-octet command limit "
                "(RFC 2449 §4)"
            )

    def _ensure_utf8_credentials(self, *values: str) -> Operation[None]:
        """RFC 6856 §2.2: non-ASCII user names and passwords only after UTF8
        or with ``UTF8 USER``; switch UTF8 on if the server offers it."""
        if all(v.isascii() for v in values) or self._conn.utf8:
            return
        caps = self._conn.capabilities
        if caps is not None and caps.utf8_user:
            return
        if caps is not None and caps.utf8:
            yield from self._simple(pop3proto.Utf8(), "UTF8")
            return
        raise ValueError(
            "non-ASCII user names and passwords need a server that offers UTF8 (RFC 6856 §2.2)"
        )

    def _user_pass(self, user: str, password: str) -> Operation[None]:
        self._check_credential("USER", user, "user name")
        self._check_credential("PASS", password, "password")
        command = build_command(lambda: pop3proto.User(user))
        build_command(lambda: pop3proto.Pass(password))
        yield from self._ensure_utf8_credentials(user, password)
        caps = self._conn.capabilities
        if caps is None or not caps.pipelining:
            yield from self._simple(command, "USER", login=True)
            yield from self._simple(pop3proto.Pass(password), "PASS", login=True)
            return
        # RFC 2449 §6.6: with PIPELINING advertised, USER and PASS go out
        # together, one round trip.  (Only these two: an AUTH exchange and
        # STLS each wait for their reply, and the engine refuses to send
        # anything behind them.)  If USER fails, PASS is answered -ERR in
        # AUTHORIZATION and USER's reply is the one that counts.
        yield from self._begin("USER", command=command)
        yield from self._send(command, pop3proto.Pass(password))
        first = yield from self._reply("USER")
        if isinstance(first, pop3proto.Err):
            # RFC 1939 §4: the server may close after a failed login.
            with contextlib.suppress(ConnectionLost):
                yield from self._reply("PASS")
            raise_for_err(first, "USER", login=True)
        second = yield from self._reply("PASS")
        if isinstance(second, pop3proto.Err):
            raise_for_err(second, "PASS", login=True)

    def _apop(self, user: str, password: str) -> Operation[None]:
        greeting = self._conn.greeting
        timestamp = greeting.timestamp if greeting is not None else None
        if timestamp is None:
            raise AuthenticationFailed(
                "APOP: the greeting carries no timestamp (RFC 1939 §7)", command="APOP"
            )
        digest = pop3proto.apop_digest(timestamp, password)
        self._check_credential("APOP", f"{user} {digest}", "user name")
        command = build_command(lambda: pop3proto.Apop(user, digest))
        yield from self._ensure_utf8_credentials(user)
        yield from self._simple(command, "APOP", login=True)

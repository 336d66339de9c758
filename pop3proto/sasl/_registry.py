"""The registry of SASL mechanisms: every fact about a mechanism, written once.

Each :class:`Mechanism` entry answers the questions the rest of the project
would otherwise answer with lists of names of its own:

* which classes run it (:attr:`~Mechanism.client`, :attr:`~Mechanism.server`);
* which to prefer when several are offered (:attr:`~Mechanism.strength`);
* whether it may run on an unencrypted link (:attr:`~Mechanism.sends_password`,
  and :func:`needs_tls` for any name, registered or not);
* what the client must be given (:attr:`~Mechanism.client_credential`) and
  what the server must hold to verify it (:attr:`~Mechanism.server_credential`).

How a client or a server uses it::

    # A client holding a password, trying what the server offers, best first:
    for entry in by_strength(capabilities.sasl):
        if entry.client_credential != "password":
            continue  # XOAUTH2 and OAUTHBEARER want a token
        if needs_tls(entry.name) and not secure:
            continue  # PLAIN and LOGIN would expose the password
        mech = entry.new_client(user, password)
        ...

    # A server whose user store can check a password, give the shared secret
    # and give SCRAM-SHA-256 keys, offering what it can verify, best first:
    can_verify = {"password", "secret", "scram-sha-256"}
    offered = [m.name for m in MECHANISMS.values() if m.server_credential in can_verify]
    # -> ["SCRAM-SHA-256", "CRAM-MD5", "PLAIN", "LOGIN"]

Strength, strongest first, and why:

1. ``SCRAM-SHA-256`` (RFC 7677) and 2. ``SCRAM-SHA-1`` (RFC 5802): mutual
   authentication; the password never crosses the wire, and the server
   stores only salted, iterated keys.  SHA-256 ranks above SHA-1 for its
   hash alone.
3. ``CRAM-MD5`` (RFC 2195): the password never crosses the wire either, but
   the server must keep it in clear, there is no server proof, and a
   recorded exchange allows an offline dictionary attack.
4. ``OAUTHBEARER`` (RFC 7628) and 5. ``XOAUTH2``: the bearer token crosses
   the wire and is as good as a password to whoever reads it, so they need
   TLS like PLAIN; they rank above PLAIN and LOGIN because a token is
   short-lived, scoped and revocable, where a password is long-lived and
   often reused, and below CRAM-MD5 and SCRAM because those put nothing
   replayable on the wire.  OAUTHBEARER, the standard with a defined error
   exchange, ranks above XOAUTH2, a vendor format.  (A client never has to
   choose between a token and a password mechanism: it holds one kind of
   credential, see :attr:`~Mechanism.client_credential`.)
6. ``PLAIN`` (RFC 4616) and 7. ``LOGIN`` (draft-murchison-sasl-login): the
   password itself crosses the wire, merely base64-encoded.  PLAIN ranks
   above LOGIN: it is a standard, takes one message instead of two and can
   carry an authorization identity.

APOP and USER/PASS are POP3 commands, not SASL mechanisms, and so are not
in the registry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal, cast

from ._base import SaslClientMechanism, SaslServerMechanism
from ._cram import CramMD5Client, CramMD5Server
from ._oauth import OAuthBearerClient, OAuthBearerServer, XOAuth2Client, XOAuth2Server
from ._plain import LoginClient, LoginServer, PlainClient, PlainServer
from ._scram import ScramSha1Client, ScramSha1Server, ScramSha256Client, ScramSha256Server

__all__ = [
    "ClientCredential",
    "ServerCredential",
    "Mechanism",
    "MECHANISMS",
    "CLIENT_MECHANISMS",
    "SERVER_MECHANISMS",
    "by_strength",
    "needs_tls",
]

#: What a client mechanism is constructed with, after the user name:
#: ``"password"`` or ``"token"`` (an OAuth 2.0 access token, RFC 6750).
ClientCredential = Literal["password", "token"]

#: What a server mechanism needs from the user store to verify a client, that
#: is what its constructor's callback returns or checks:
#:
#: * ``"password"``: a ``check_password(user, password) -> bool`` call; the
#:   store may keep only a hash (PLAIN, LOGIN).
#: * ``"secret"``: the shared secret in clear, ``get_password(user) -> str |
#:   None`` (CRAM-MD5; the same secret APOP needs).
#: * ``"scram-sha-1"``, ``"scram-sha-256"``: the stored keys for that hash,
#:   ``get_credentials(user) -> ScramCredentials | None``.  They are two
#:   kinds, because keys derived with one hash cannot verify the other.
#: * ``"token"``: a ``check_token(user, token)`` call returning a
#:   :data:`~pop3proto.sasl.TokenVerdict` (XOAUTH2, OAUTHBEARER).
ServerCredential = Literal["password", "secret", "scram-sha-1", "scram-sha-256", "token"]


@dataclass(frozen=True, slots=True)
class Mechanism:
    """One SASL mechanism and the facts about it.

    Entries live in :data:`MECHANISMS`; there is no need to build one.

    Attributes:
        name: the IANA-registered name (RFC 4422 §3.1), upper case; equal to
            ``client.name`` and ``server.name``.
        client: the client class.  Every client class takes the user name and
            the :attr:`client_credential` as its first two arguments; see
            :meth:`new_client`.
        server: the server class.  Every server class takes one callback,
            described by :attr:`server_credential`, as its first argument.
        strength: the rank used to order mechanisms, higher is stronger.  Only
            the order means something (see the module docstring for why it
            is what it is); :data:`MECHANISMS` is sorted by it.
        sends_password: true when the client's credential (the password, or
            the bearer token, which is as good as one) crosses the wire in a
            form anyone reading the connection can decode.  Such a mechanism
            must not run on an unencrypted link to a host other than loopback
            (RFC 5034 §4, RFC 2595 §2.3, RFC 8314 §5, RFC 7628 §5): a client
            refuses it there, a server does not offer it there.
        client_credential: what the client needs besides the user name
            (:data:`ClientCredential`).
        server_credential: what the server needs to verify the client
            (:data:`ServerCredential`).
    """

    name: str
    client: type[SaslClientMechanism]
    server: type[SaslServerMechanism]
    strength: int
    sends_password: bool
    client_credential: ClientCredential
    server_credential: ServerCredential

    def new_client(self, username: str, credential: str) -> SaslClientMechanism:
        """Start a client exchange: ``client(username, credential)``.

        *credential* is a password or a token, as :attr:`client_credential`
        says.  The client class's own keyword arguments (a PLAIN authzid, a
        SCRAM nonce, an OAUTHBEARER host) need the class itself.
        """
        # The base class's constructor takes no arguments, so the type
        # checker cannot know that every registered client class takes these
        # two; test_registry checks that they do.
        factory = cast("Callable[[str, str], SaslClientMechanism]", self.client)
        return factory(username, credential)


_ENTRIES: Final = (
    Mechanism(
        name="SCRAM-SHA-256",
        client=ScramSha256Client,
        server=ScramSha256Server,
        strength=70,
        sends_password=False,
        client_credential="password",
        server_credential="scram-sha-256",
    ),
    Mechanism(
        name="SCRAM-SHA-1",
        client=ScramSha1Client,
        server=ScramSha1Server,
        strength=60,
        sends_password=False,
        client_credential="password",
        server_credential="scram-sha-1",
    ),
    Mechanism(
        name="CRAM-MD5",
        client=CramMD5Client,
        server=CramMD5Server,
        strength=50,
        sends_password=False,
        client_credential="password",
        server_credential="secret",
    ),
    Mechanism(
        name="OAUTHBEARER",
        client=OAuthBearerClient,
        server=OAuthBearerServer,
        strength=40,
        sends_password=True,
        client_credential="token",
        server_credential="token",
    ),
    Mechanism(
        name="XOAUTH2",
        client=XOAuth2Client,
        server=XOAuth2Server,
        strength=30,
        sends_password=True,
        client_credential="token",
        server_credential="token",
    ),
    Mechanism(
        name="PLAIN",
        client=PlainClient,
        server=PlainServer,
        strength=20,
        sends_password=True,
        client_credential="password",
        server_credential="password",
    ),
    Mechanism(
        name="LOGIN",
        client=LoginClient,
        server=LoginServer,
        strength=10,
        sends_password=True,
        client_credential="password",
        server_credential="password",
    ),
)

#: Every mechanism by IANA name, strongest first.  Read-only.
MECHANISMS: Final[Mapping[str, Mechanism]] = MappingProxyType(
    {entry.name: entry for entry in sorted(_ENTRIES, key=lambda e: e.strength, reverse=True)}
)

#: Client mechanism classes by IANA name, strongest first (from :data:`MECHANISMS`).
CLIENT_MECHANISMS: Final[dict[str, type[SaslClientMechanism]]] = {
    name: entry.client for name, entry in MECHANISMS.items()
}

#: Server mechanism classes by IANA name, strongest first (from :data:`MECHANISMS`).
SERVER_MECHANISMS: Final[dict[str, type[SaslServerMechanism]]] = {
    name: entry.server for name, entry in MECHANISMS.items()
}


def by_strength(names: Iterable[str]) -> tuple[Mechanism, ...]:
    """The registered mechanisms among *names*, strongest first.

    Names are matched case-insensitively (a sloppy server may advertise
    ``plain``; RFC 4422 §3.1 names are upper case); unknown names and
    repeats are dropped.  For example with a server's ``SASL`` capability:
    ``by_strength(capabilities.sasl)``.
    """
    wanted = {name.upper() for name in names}
    return tuple(entry for entry in MECHANISMS.values() if entry.name in wanted)


def needs_tls(name: str) -> bool:
    """Whether mechanism *name* must not run on an unencrypted link off loopback.

    True when the registered mechanism :attr:`~Mechanism.sends_password`,
    and for any name the registry does not know: what an unknown mechanism
    puts on the wire cannot be vouched for.  False only for CRAM-MD5 and
    SCRAM, which expose a passive eavesdropper to at most an offline
    dictionary attack.  Case-insensitive.
    """
    entry = MECHANISMS.get(name.upper())
    return entry is None or entry.sends_password

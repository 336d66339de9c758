"""SASL for POP3 (RFC 5034): the mechanisms, their codec, and their registry.

Everything here is pure computation on ``str``/``bytes``: no I/O, no clocks,
no threads.  The connection engine owns the wire format (the ``AUTH`` command,
``+ `` continuation lines, base64 framing, ``*`` cancellation); the classes in
this package only turn one decoded SASL message into the next one.

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

Which mechanism to pick, whether it may run without TLS and what each side
needs is recorded once, in :data:`MECHANISMS` (see :class:`Mechanism`).

Secrets (passwords, tokens, derived keys) never appear in a ``repr`` or in an
exception message, and exceptions raised while handling secret-bearing data are
raised ``from None`` so that no ``UnicodeDecodeError`` quoting the offending
byte ends up in ``__context__``.

Modules, from the bottom up: ``_codec`` (strict base64, RFC 5034 §4),
``_saslprep`` (RFC 4013), ``_base`` (the exchange contract and errors), one
module per mechanism family (``_plain``: PLAIN and LOGIN; ``_cram``:
CRAM-MD5; ``_scram``: SCRAM-SHA-1 and SCRAM-SHA-256; ``_oauth``: XOAUTH2 and
OAUTHBEARER), and ``_registry`` on top.  The package sits beside the
connection engine, not under it: it imports nothing from the event model,
and the engine imports only its codec.
"""

from ._base import (
    SaslAuthenticationFailed,
    SaslClientMechanism,
    SaslError,
    SaslServerMechanism,
    SaslServerVerificationFailed,
)
from ._codec import fits_initial_response, sasl_b64decode, sasl_b64encode
from ._cram import CramMD5Client, CramMD5Server
from ._oauth import (
    OAuthBearerClient,
    OAuthBearerServer,
    OAuthDenial,
    TokenCheck,
    TokenVerdict,
    XOAuth2Client,
    XOAuth2Server,
)
from ._plain import LoginClient, LoginServer, PlainClient, PlainServer
from ._registry import (
    CLIENT_MECHANISMS,
    MECHANISMS,
    SERVER_MECHANISMS,
    ClientCredential,
    Mechanism,
    ServerCredential,
    by_strength,
    needs_tls,
)
from ._saslprep import saslprep
from ._scram import (
    ScramClient,
    ScramCredentials,
    ScramServer,
    ScramSha1Client,
    ScramSha1Server,
    ScramSha256Client,
    ScramSha256Server,
    scram_credentials,
)

__all__ = [
    # codec and string preparation
    "sasl_b64encode",
    "sasl_b64decode",
    "fits_initial_response",
    "saslprep",
    # errors
    "SaslError",
    "SaslAuthenticationFailed",
    "SaslServerVerificationFailed",
    # the exchange contract
    "SaslClientMechanism",
    "SaslServerMechanism",
    # mechanisms
    "PlainClient",
    "PlainServer",
    "LoginClient",
    "LoginServer",
    "CramMD5Client",
    "CramMD5Server",
    "ScramClient",
    "ScramSha1Client",
    "ScramSha256Client",
    "ScramServer",
    "ScramSha1Server",
    "ScramSha256Server",
    "ScramCredentials",
    "scram_credentials",
    "XOAuth2Client",
    "XOAuth2Server",
    "OAuthBearerClient",
    "OAuthBearerServer",
    "OAuthDenial",
    "TokenCheck",
    "TokenVerdict",
    # the registry
    "Mechanism",
    "ClientCredential",
    "ServerCredential",
    "MECHANISMS",
    "CLIENT_MECHANISMS",
    "SERVER_MECHANISMS",
    "by_strength",
    "needs_tls",
]

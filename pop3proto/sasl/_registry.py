"""The registries of SASL mechanism classes, by IANA name."""

from __future__ import annotations

from typing import Final

from ._base import SaslClientMechanism, SaslServerMechanism
from ._cram import CramMD5Client, CramMD5Server
from ._oauth import OAuthBearerClient, OAuthBearerServer, XOAuth2Client, XOAuth2Server
from ._plain import LoginClient, LoginServer, PlainClient, PlainServer
from ._scram import ScramSha1Client, ScramSha1Server, ScramSha256Client, ScramSha256Server

__all__ = ["CLIENT_MECHANISMS", "SERVER_MECHANISMS"]


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

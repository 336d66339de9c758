"""What the client knows about login methods, read from the engine's registry.

The login strategy (:meth:`ClientCore.login`) and the ``pop3proto fetch
--auth`` option look these up here; every fact behind them (a mechanism's
strength, whether it sends the password, which credential it takes) is
written once, in the engine's mechanism registry
(:data:`pop3proto.MECHANISMS`).  USER/PASS and APOP are POP3 commands, not
SASL mechanisms, so the registry does not list them: the client ranks them
below every SASL mechanism, APOP above USER.
"""

from __future__ import annotations

from typing import Final

import pop3proto

__all__ = ["LOGIN_PREFERENCE", "SAFE_WITHOUT_TLS", "LOGIN_METHODS", "TOKEN_MECHANISMS"]

#: The SASL mechanisms a client holding a password can use, strongest first,
#: as :meth:`ClientCore.login` tries them (then ``"APOP"`` and ``"USER"``).
LOGIN_PREFERENCE: Final = tuple(
    name for name, entry in pop3proto.MECHANISMS.items() if entry.client_credential == "password"
)

#: Methods that may run on an unencrypted link to a remote host: the
#: registry's mechanisms that do not send the password (or a bearer token)
#: itself.  CRAM-MD5 (an HMAC) and SCRAM only expose a passive eavesdropper
#: to an offline dictionary attack.  USER/PASS sends the password, and APOP's
#: MD5(timestamp + password) lets a man in the middle who picks the timestamp
#: recover it (Leurent 2007, which is why fetchmail checks APOP timestamps),
#: so neither is here.
SAFE_WITHOUT_TLS: Final = frozenset(
    name for name, entry in pop3proto.MECHANISMS.items() if not entry.sends_password
)

#: The login methods ``fetch --auth`` accepts: those the client can force,
#: weakest first as the option's help lists them.
LOGIN_METHODS: Final = ("USER", "APOP", *reversed(LOGIN_PREFERENCE))

#: The SASL mechanisms a client holding an OAuth 2.0 token can use, strongest
#: first (OAUTHBEARER, the standard, then XOAUTH2), as ``login_oauth2`` picks.
TOKEN_MECHANISMS: Final = tuple(
    name for name, entry in pop3proto.MECHANISMS.items() if entry.client_credential == "token"
)

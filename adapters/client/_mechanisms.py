"""What the client knows about login methods, in one place.

The login strategy (:meth:`ClientCore.login`) and the ``pop3proto fetch
--auth`` option look these facts up here and nowhere else.  They mirror
facts the engine holds about its SASL mechanisms (strength, whether a
mechanism sends the password); once the engine publishes them in its
mechanism registry (``pop3proto.MECHANISMS``), these tables are to be read
from it instead of written out.
"""

from __future__ import annotations

from typing import Final

__all__ = ["LOGIN_PREFERENCE", "SAFE_WITHOUT_TLS", "LOGIN_METHODS"]

#: Login methods, strongest first, as :meth:`ClientCore.login` tries them
#: (SASL names; then ``"APOP"`` and ``"USER"``).
LOGIN_PREFERENCE: Final = ("SCRAM-SHA-256", "SCRAM-SHA-1", "CRAM-MD5", "PLAIN", "LOGIN")

#: Methods that may run on an unencrypted link to a remote host: neither the
#: password nor anything an active attacker can turn into it goes on the
#: wire.  PLAIN, LOGIN and USER/PASS send the password itself; APOP's
#: MD5(timestamp + password) lets a man in the middle who picks the timestamp
#: recover the password (Leurent 2007, which is why fetchmail checks APOP
#: timestamps); bearer tokens (XOAUTH2, OAUTHBEARER) are passwords too.
#: CRAM-MD5 (an HMAC) and SCRAM only expose a passive eavesdropper to an
#: offline dictionary attack.
SAFE_WITHOUT_TLS: Final = frozenset({"SCRAM-SHA-256", "SCRAM-SHA-1", "CRAM-MD5"})

#: The login methods ``fetch --auth`` accepts: those the client can force,
#: USER and APOP and the methods of :data:`LOGIN_PREFERENCE`, in the order
#: the option's help lists them.
LOGIN_METHODS: Final = (
    "USER",
    "APOP",
    "PLAIN",
    "LOGIN",
    "CRAM-MD5",
    "SCRAM-SHA-1",
    "SCRAM-SHA-256",
)

"""SASL exchanges without a connection.

:func:`run_exchange` drives a SASL client and server mechanism against each
other through the base64 framing; :func:`secret_free` checks that an
exception and its chain quote no secret.
"""

from __future__ import annotations

from collections.abc import Callable

from pop3proto import (
    SaslClientMechanism,
    SaslServerMechanism,
    sasl_b64decode,
    sasl_b64encode,
)

from .engine import PASSWORD


def wire(data: bytes) -> bytes:
    """Send *data* through the SASL base64 framing, as the engine would."""
    return sasl_b64decode(sasl_b64encode(data))


def run_exchange(
    client: SaslClientMechanism,
    server: SaslServerMechanism,
    *,
    send_initial_response: bool = True,
    tamper_challenge: Callable[[int, bytes], bytes] | None = None,
    tamper_response: Callable[[int, bytes], bytes] | None = None,
) -> list[tuple[str, bytes]]:
    """Drive a full POP3 AUTH exchange; return the transcript.

    Exceptions from either side propagate.  The tamper hooks get the
    0-based index of the challenge/response and may replace it.
    """
    transcript: list[tuple[str, bytes]] = []
    ir = client.initial_response()
    if send_initial_response and ir is not None and not server.server_first:
        transcript.append(("C", ir))
        challenge = server.step(wire(ir))
    else:
        challenge = server.step(None)
    index = 0
    while challenge is not None:
        if tamper_challenge is not None:
            challenge = tamper_challenge(index, challenge)
        transcript.append(("S", challenge))
        response = client.respond(wire(challenge))
        if tamper_response is not None:
            response = tamper_response(index, response)
        transcript.append(("C", response))
        challenge = server.step(wire(response))
        index += 1
    return transcript


#: The users the SASL tests know (tim's password is RFC 2195's example).
PASSWORDS = {"tim": "tanstaaftanstaaf", "alice": PASSWORD}
#: RFC 2195's example CRAM-MD5 challenge (its digest with tim's password is
#: ``b913a602c7eda7a495b4e6e7334d3890``).
RFC2195_CHALLENGE = "<1896.697170952@postoffice.reston.mci.net>"


def check_password(user: str, password: str) -> bool:
    return PASSWORDS.get(user) == password


def get_password(user: str) -> str | None:
    return PASSWORDS.get(user)


def secret_free(exc: BaseException, *secrets: str) -> None:
    """Assert no secret shows up in *exc*, its repr, or its chained exceptions."""
    seen: BaseException | None = exc
    while seen is not None:
        for text in (str(seen), repr(seen)):
            for secret in secrets:
                assert secret not in text
        seen = seen.__cause__ or seen.__context__

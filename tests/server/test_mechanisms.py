"""The server's SASL mechanisms come from the engine's registry."""

from __future__ import annotations

import pop3proto
from pop3proto.adapters.server._authorization import _BUILDERS
from pop3proto.adapters.server._config import (
    AUTHENTICATOR_CREDENTIALS,
    DEFAULT_MECHANISMS,
    SUPPORTED_MECHANISMS,
)


def test_every_credential_kind_has_a_builder() -> None:
    """One builder per credential an authenticator gives, plus the derived
    ones (SCRAM-SHA-1 keys from a secret, a token), and no other."""
    assert set(_BUILDERS) == AUTHENTICATOR_CREDENTIALS | {"scram-sha-1", "token"}


def test_supported_mechanisms_are_the_registry_entries_we_can_verify() -> None:
    """Every registered mechanism, strongest first: both roles run the same set."""
    assert tuple(pop3proto.MECHANISMS) == SUPPORTED_MECHANISMS
    assert SUPPORTED_MECHANISMS == (
        "SCRAM-SHA-256",
        "SCRAM-SHA-1",
        "CRAM-MD5",
        "OAUTHBEARER",
        "XOAUTH2",
        "PLAIN",
        "LOGIN",
    )
    assert tuple(m for m in SUPPORTED_MECHANISMS if m != "SCRAM-SHA-1") == DEFAULT_MECHANISMS
    ranks = [pop3proto.MECHANISMS[name].strength for name in SUPPORTED_MECHANISMS]
    assert ranks == sorted(ranks, reverse=True)

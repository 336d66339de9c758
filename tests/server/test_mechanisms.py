"""The server's SASL mechanisms come from the engine's registry."""

from __future__ import annotations

import pop3proto
from pop3proto.adapters.server._authorization import _BUILDERS
from pop3proto.adapters.server._config import AUTHENTICATOR_CREDENTIALS, SUPPORTED_MECHANISMS


def test_every_credential_an_authenticator_gives_has_a_builder() -> None:
    """One builder per credential kind, and no other."""
    assert set(_BUILDERS) == AUTHENTICATOR_CREDENTIALS


def test_supported_mechanisms_are_the_registry_entries_we_can_verify() -> None:
    """SCRAM-SHA-256, CRAM-MD5, PLAIN, LOGIN, strongest first; never SCRAM-SHA-1 or tokens."""
    assert SUPPORTED_MECHANISMS == ("SCRAM-SHA-256", "CRAM-MD5", "PLAIN", "LOGIN")
    ranks = [pop3proto.MECHANISMS[name].strength for name in SUPPORTED_MECHANISMS]
    assert ranks == sorted(ranks, reverse=True)

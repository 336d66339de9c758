"""The mechanism registry (pop3proto.sasl._registry)."""

from __future__ import annotations

from pop3proto.sasl import (
    CLIENT_MECHANISMS,
    SERVER_MECHANISMS,
    SaslClientMechanism,
    SaslServerMechanism,
    ScramSha1Client,
    ScramSha256Server,
)


def test_registries() -> None:
    expected = {"PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256", "XOAUTH2"}
    expected.add("OAUTHBEARER")
    assert set(CLIENT_MECHANISMS) == expected
    assert set(SERVER_MECHANISMS) == expected
    for name, client_cls in CLIENT_MECHANISMS.items():
        assert client_cls.name == name
        assert issubclass(client_cls, SaslClientMechanism)
    for name, server_cls in SERVER_MECHANISMS.items():
        assert server_cls.name == name
        assert issubclass(server_cls, SaslServerMechanism)
    assert [n for n, c in SERVER_MECHANISMS.items() if c.server_first] == ["CRAM-MD5"]
    # Registry classes construct with (username, secret) for every client.
    assert CLIENT_MECHANISMS["SCRAM-SHA-1"] is ScramSha1Client
    assert SERVER_MECHANISMS["SCRAM-SHA-256"] is ScramSha256Server

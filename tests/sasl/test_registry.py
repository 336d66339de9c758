"""The mechanism registry (pop3proto.sasl._registry)."""

from __future__ import annotations

import dataclasses
import inspect
import re
from typing import Any

import pytest

from pop3proto.sasl import (
    CLIENT_MECHANISMS,
    MECHANISMS,
    SERVER_MECHANISMS,
    Mechanism,
    SaslAuthenticationFailed,
    SaslClientMechanism,
    SaslServerMechanism,
    ScramCredentials,
    ScramSha1Client,
    ScramSha256Server,
    _registry,
    by_strength,
    needs_tls,
    scram_credentials,
)
from tests.helpers import run_exchange


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


#: The order the registry's docstring gives, strongest first.
DOCUMENTED_ORDER = (
    "SCRAM-SHA-256",
    "SCRAM-SHA-1",
    "CRAM-MD5",
    "OAUTHBEARER",
    "XOAUTH2",
    "PLAIN",
    "LOGIN",
)
ENTRIES = list(MECHANISMS.values())
SECRET = "Sup3rS3cretValue"


def ids(entry: Mechanism) -> str:
    return entry.name


def server_for(entry: Mechanism, credential: str) -> SaslServerMechanism:
    """A server for *entry* knowing user alice by *credential*, fed what
    ``entry.server_credential`` says the server needs."""
    scram_hash = {"scram-sha-1": "sha1", "scram-sha-256": "sha256"}

    def scram_keys(user: str) -> ScramCredentials | None:
        hash_name = scram_hash[entry.server_credential]
        keys = scram_credentials(credential, hash_name=hash_name, iterations=16)
        return keys if user == "alice" else None

    callbacks: dict[str, object] = {
        "password": lambda user, password: (user, password) == ("alice", credential),
        "secret": lambda user: credential if user == "alice" else None,
        "scram-sha-1": scram_keys,
        "scram-sha-256": scram_keys,
        "token": lambda user, token: (user, token) == ("alice", credential),
    }
    server: Any = entry.server
    built: SaslServerMechanism = server(callbacks[entry.server_credential])
    return built


def test_entries_carry_their_classes_names() -> None:
    """Every key, entry name and class name is the same IANA name."""
    for key, entry in MECHANISMS.items():
        assert key == entry.name == entry.client.name == entry.server.name
        assert issubclass(entry.client, SaslClientMechanism)
        assert issubclass(entry.server, SaslServerMechanism)


def test_strength_order_is_the_documented_one() -> None:
    """MECHANISMS runs strongest first, strictly, in the order the module docstring explains."""
    assert tuple(MECHANISMS) == DOCUMENTED_ORDER
    strengths = [entry.strength for entry in ENTRIES]
    assert strengths == sorted(set(strengths), reverse=True)
    assert _registry.__doc__ is not None
    ranked = re.findall(r"(\d)\. ``([A-Z0-9-]+)``", _registry.__doc__)
    assert ranked == [(str(i), name) for i, name in enumerate(DOCUMENTED_ORDER, 1)]


def test_class_registries_follow_mechanisms() -> None:
    """CLIENT_MECHANISMS and SERVER_MECHANISMS are MECHANISMS' classes, in its order."""
    assert list(CLIENT_MECHANISMS.items()) == [(e.name, e.client) for e in ENTRIES]
    assert list(SERVER_MECHANISMS.items()) == [(e.name, e.server) for e in ENTRIES]


@pytest.mark.parametrize("entry", ENTRIES, ids=ids)
def test_credentials_are_what_the_classes_take(entry: Mechanism) -> None:
    """A client built with client_credential and a server fed server_credential agree."""
    server = server_for(entry, SECRET)
    run_exchange(entry.new_client("alice", SECRET), server)
    assert server.authenticated_user == "alice"
    with pytest.raises(SaslAuthenticationFailed):
        run_exchange(entry.new_client("alice", SECRET), server_for(entry, SECRET + "x"))


@pytest.mark.parametrize("entry", ENTRIES, ids=ids)
def test_client_credential_names_the_second_argument(entry: Mechanism) -> None:
    """client_credential says whether the client class takes a password or an access token."""
    expected = {"password": "password", "token": "access_token"}[entry.client_credential]
    assert list(inspect.signature(entry.client).parameters)[:2] == ["username", expected]


@pytest.mark.parametrize("entry", ENTRIES, ids=ids)
def test_sends_password_exactly_when_the_client_sends_it(entry: Mechanism) -> None:
    """sends_password is true exactly when the credential is in the client's decoded messages."""
    transcript = run_exchange(entry.new_client("alice", SECRET), server_for(entry, SECRET))
    sent = b"".join(data for side, data in transcript if side == "C")
    assert (SECRET.encode() in sent) == entry.sends_password


def test_registry_answers_what_the_adapters_ask() -> None:
    """The client's, server's and CLI's lists of mechanism names follow from the entries."""
    # The client's login order, for a user with a password.
    by_password = [e.name for e in ENTRIES if e.client_credential == "password"]
    assert by_password == ["SCRAM-SHA-256", "SCRAM-SHA-1", "CRAM-MD5", "PLAIN", "LOGIN"]
    # What may run without TLS off loopback.
    assert {e.name for e in ENTRIES if not needs_tls(e.name)} == {
        "SCRAM-SHA-256",
        "SCRAM-SHA-1",
        "CRAM-MD5",
    }
    # A server whose user store checks passwords, gives the shared secret and
    # gives SCRAM-SHA-256 keys.
    can_verify = {"password", "secret", "scram-sha-256"}
    served = [e.name for e in ENTRIES if e.server_credential in can_verify]
    assert served == ["SCRAM-SHA-256", "CRAM-MD5", "PLAIN", "LOGIN"]
    # ... of which these it refuses without TLS.
    assert [name for name in served if MECHANISMS[name].sends_password] == ["PLAIN", "LOGIN"]


def test_by_strength_orders_and_filters() -> None:
    """by_strength keeps registered names, strongest first, whatever their case or repeats."""
    chosen = by_strength(["login", "PLAIN", "X-UNKNOWN", "scram-sha-1", "PLAIN"])
    assert [entry.name for entry in chosen] == ["SCRAM-SHA-1", "PLAIN", "LOGIN"]
    assert by_strength([]) == ()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("SCRAM-SHA-256", False),
        ("scram-sha-1", False),
        ("CRAM-MD5", False),
        ("OAUTHBEARER", True),
        ("XOAUTH2", True),
        ("PLAIN", True),
        ("login", True),
        ("GSSAPI", True),
        ("X-UNKNOWN", True),
    ],
)
def test_needs_tls(name: str, expected: bool) -> None:
    """needs_tls is false only for registered mechanisms that keep the password off the wire."""
    assert needs_tls(name) is expected


def test_entries_and_mapping_are_read_only() -> None:
    """An entry is a frozen, slotted dataclass; MECHANISMS cannot be changed."""
    entry = MECHANISMS["PLAIN"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.strength = 99  # type: ignore[misc]
    assert not hasattr(entry, "__dict__")
    with pytest.raises(TypeError):
        MECHANISMS["PLAIN"] = entry  # type: ignore[index]

"""The server's token logins (XOAUTH2, OAUTHBEARER) and SCRAM-SHA-1."""

from __future__ import annotations

import json
import logging

import pytest

import pop3proto
from pop3proto import Auth, Capa, CapaOk, Err, Ok, SaslChallenge, SaslResponse, State
from pop3proto.adapters.server._config import DEFAULT_MECHANISMS, ServerConfig
from pop3proto.sasl import OAuthBearerClient, OAuthDenial, ScramSha1Client, XOAuth2Client
from tests.helpers import PASSWORD
from tests.server.test_session import Harness

GOOD = "ya29.short"
LONG = "ya29." + "g" * 400  # longer than any initial response may be


def verifier(user: str, token: str) -> str | OAuthDenial:
    if token in (GOOD, LONG):
        return user
    return OAuthDenial(scope="https://mail.example/pop")


def token_config(**kwargs: object) -> ServerConfig:
    return ServerConfig(hostname="test.example", token_verifier=verifier, **kwargs)  # type: ignore[arg-type]


def sasl_offered(h: Harness) -> tuple[str, ...]:
    reply = h.one(Capa())
    assert isinstance(reply, CapaOk)
    return reply.capabilities.sasl


def test_token_mechanisms_offered_only_with_a_verifier() -> None:
    assert "XOAUTH2" not in sasl_offered(Harness())
    assert "OAUTHBEARER" not in sasl_offered(Harness())
    offered = sasl_offered(Harness(config=token_config()))
    assert offered[:4] == ("SCRAM-SHA-256", "CRAM-MD5", "OAUTHBEARER", "XOAUTH2")
    # Like PLAIN, a bearer token needs TLS or loopback (RFC 7628 §5).
    remote = sasl_offered(Harness(config=token_config(), is_loopback=False))
    assert "XOAUTH2" not in remote and "OAUTHBEARER" not in remote


def test_auth_token_mechanism_without_verifier_is_unsupported() -> None:
    h = Harness()
    reply = h.one(Auth("XOAUTH2", b"user=alice\x01auth=Bearer t\x01\x01"))
    assert reply == Err("unsupported authentication mechanism")


def test_naming_token_mechanisms_needs_a_verifier() -> None:
    with pytest.raises(ValueError, match="XOAUTH2 need a token_verifier"):
        ServerConfig(sasl_mechanisms=("PLAIN", "XOAUTH2"))
    assert ServerConfig(sasl_mechanisms=DEFAULT_MECHANISMS).token_verifier is None
    config = ServerConfig(sasl_mechanisms=("xoauth2",), token_verifier=verifier)
    assert config.sasl_mechanisms == ("XOAUTH2",)
    assert "verifier" not in repr(config)


@pytest.mark.parametrize("client_cls", [XOAuth2Client, OAuthBearerClient])
@pytest.mark.parametrize(("token", "ir"), [(GOOD, True), (GOOD, False), (LONG, False)])
def test_token_login(client_cls: type[XOAuth2Client], token: str, ir: bool) -> None:
    h = Harness(config=token_config())
    assert isinstance(h.sasl(client_cls("alice", token), ir=ir), Ok)
    assert h.client.state is State.TRANSACTION


@pytest.mark.parametrize(
    ("client_cls", "status"), [(XOAuth2Client, "401"), (OAuthBearerClient, "invalid_token")]
)
def test_token_refused_with_the_verifiers_error(
    client_cls: type[XOAuth2Client], status: str
) -> None:
    h = Harness(config=token_config())
    mech = client_cls("alice", "stale")
    events = h.send(Auth(mech.name, mech.initial_response()))
    assert isinstance(events[-1], SaslChallenge)
    assert json.loads(events[-1].data) == {
        "status": status,
        "schemes": "bearer",
        "scope": "https://mail.example/pop",
    }
    reply = h.one(SaslResponse(mech.respond(events[-1].data)))
    assert isinstance(reply, Err) and str(reply.code) == "AUTH"
    assert h.client.state is State.AUTHORIZATION


def test_verifier_may_name_another_maildrop() -> None:
    h = Harness(config=ServerConfig(token_verifier=lambda u, t: "alice"))
    assert isinstance(h.sasl(XOAuth2Client("someone@example.com", "t")), Ok)
    assert h.session.stats.user == "alice"


@pytest.mark.parametrize(
    "bad_verifier",
    [
        lambda u, t: (_ for _ in ()).throw(RuntimeError(f"boom {t}")),
        lambda u, t: "",
        lambda u, t: True,
        lambda u, t: None,
    ],
)
def test_verifier_faults_are_denials_and_never_log_the_token(
    bad_verifier: object, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    h = Harness(config=ServerConfig(token_verifier=bad_verifier))  # type: ignore[arg-type]
    mech = XOAuth2Client("alice", "s3cr3t-token")
    events = h.send(Auth(mech.name, mech.initial_response()))
    assert isinstance(events[-1], SaslChallenge)
    assert json.loads(events[-1].data)["status"] == "401"
    assert isinstance(h.one(SaslResponse(mech.respond(events[-1].data))), Err)
    assert "s3cr3t" not in caplog.text
    assert "token verifier" in caplog.text


def test_scram_sha1_is_opt_in_and_works_for_shared_secrets() -> None:
    assert "SCRAM-SHA-1" not in sasl_offered(Harness())
    config = ServerConfig(hostname="t", sasl_mechanisms=("SCRAM-SHA-1", "PLAIN"))
    h = Harness(config=config)
    assert sasl_offered(h) == ("SCRAM-SHA-1", "PLAIN")
    assert isinstance(h.sasl(ScramSha1Client("alice", PASSWORD)), Ok)
    # The derived salt is stable for a user (asking twice reveals nothing).
    salts = set()
    for _ in range(2):
        h = Harness(config=config)
        mech = ScramSha1Client("alice", "wrong")
        events = h.send(Auth(mech.name, mech.initial_response()))
        assert isinstance(events[-1], SaslChallenge)
        salts.add(events[-1].data.split(b",")[1])
    assert len(salts) == 1


@pytest.mark.parametrize("user", ["alice", "hashed", "nobody"])
def test_scram_sha1_refusals(user: str) -> None:
    """A wrong password, a user with only a hash, an unknown user: all the same -ERR."""
    config = ServerConfig(hostname="t", sasl_mechanisms=("SCRAM-SHA-1",))
    h = Harness(config=config)
    password = "wrong" if user == "alice" else PASSWORD
    reply = h.sasl(ScramSha1Client(user, password))
    assert isinstance(reply, Err) and str(reply.code) == "AUTH"


def test_registry_mechanisms_all_run_on_the_server() -> None:
    """Both roles support the same mechanisms."""
    from pop3proto.adapters.server._config import SUPPORTED_MECHANISMS

    assert set(SUPPORTED_MECHANISMS) == set(pop3proto.CLIENT_MECHANISMS)


def test_scram_sha1_needs_an_authenticator_with_secrets() -> None:
    """SCRAM-SHA-1 keys come from the shared secret: an authenticator that
    holds only hashes does not get SCRAM-SHA-1 offered."""
    from pop3proto.adapters.mailstore._users import DictAuthenticator, hash_password

    hashed = DictAuthenticator({"alice": hash_password(PASSWORD, iterations=1000)})
    config = ServerConfig(hostname="t", sasl_mechanisms=("SCRAM-SHA-1", "PLAIN"))
    assert sasl_offered(Harness(config=config, auth=hashed)) == ("PLAIN",)
    reply = Harness(config=config, auth=hashed).one(Auth("SCRAM-SHA-1", b"n,,n=alice,r=abc"))
    assert reply == Err("unsupported authentication mechanism")

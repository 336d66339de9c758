"""Authenticators (adapters/mailstore/_users.py)."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import pytest

import pop3proto
from pop3proto.adapters.mailstore._users import (
    Authenticator,
    DictAuthenticator,
    UsersFile,
    hash_password,
)

FAST = 1000  # PBKDF2 iterations in tests


def run_scram(auth: Authenticator, user: str, password: str) -> bool:
    """A whole SCRAM-SHA-256 exchange between the engine's two halves."""
    server = pop3proto.ScramServer(auth.scram_credentials)
    client = pop3proto.ScramClient(user, password)
    try:
        challenge = server.step(client.initial_response())
        while challenge is not None:
            challenge = server.step(client.respond(challenge))
    except pop3proto.SaslAuthenticationFailed:
        return False
    return server.authenticated_user == user


def test_hash_password_forms() -> None:
    salt = b"0123456789abcdef"
    pbkdf2 = hash_password("s3cret", iterations=FAST, salt=salt)
    prefix, rest = pbkdf2.split("}", 1)
    assert prefix == "{PBKDF2-SHA256"
    iterations, salt_b64, hash_b64 = rest.split("$")
    assert iterations == "1000" and salt_b64 == "MDEyMzQ1Njc4OWFiY2RlZg=="
    expected = hashlib.pbkdf2_hmac("sha256", b"s3cret", salt, FAST)
    import base64

    assert base64.b64decode(hash_b64) == expected
    assert hash_password("s3cret", iterations=FAST, salt=salt) == pbkdf2  # deterministic
    assert hash_password("s3cret", iterations=FAST) != pbkdf2  # random salt
    scram = hash_password("s3cret", scheme="scram-sha-256", salt=salt)
    assert scram.startswith("{SCRAM-SHA-256}4096$") and scram.count("$") == 3
    with pytest.raises(ValueError):
        hash_password("")
    with pytest.raises(ValueError):
        hash_password("x", scheme="MD5")
    with pytest.raises(ValueError):
        hash_password("x", iterations=0)


@pytest.fixture
def auth() -> DictAuthenticator:
    return DictAuthenticator(
        {
            "plain": "pass word:with colon",
            "escaped": "{PLAIN}{PBKDF2-SHA256}not a hash",
            "pbkdf2": hash_password("hashed pw", iterations=FAST),
            "scram": hash_password("scram pw", scheme="SCRAM-SHA-256"),
            "unicode": "pass\u00a0w\u00f6rd",
        }
    )


def test_is_an_authenticator(auth: DictAuthenticator, tmp_path: Path) -> None:
    assert isinstance(auth, Authenticator)
    users = tmp_path / "users"
    users.write_text("")
    assert isinstance(UsersFile(users), Authenticator)


def test_check_password(auth: DictAuthenticator) -> None:
    assert auth.check_password("plain", "pass word:with colon")
    assert not auth.check_password("plain", "pass word")
    assert not auth.check_password("plain", "pass word:with colon ")
    assert auth.check_password("escaped", "{PBKDF2-SHA256}not a hash")
    assert auth.check_password("pbkdf2", "hashed pw")
    assert not auth.check_password("pbkdf2", "hashed pw!")
    assert auth.check_password("scram", "scram pw")
    assert not auth.check_password("scram", "wrong")
    assert not auth.check_password("nobody", "pass word:with colon")
    assert not auth.check_password("PLAIN", "pass word:with colon")  # names are exact
    # SASLprep (RFC 4013): a no-break space maps to a space.
    assert auth.check_password("unicode", "pass w\u00f6rd")


def test_get_secret(auth: DictAuthenticator) -> None:
    assert auth.get_secret("plain") == "pass word:with colon"
    assert auth.get_secret("escaped") == "{PBKDF2-SHA256}not a hash"
    assert auth.get_secret("pbkdf2") is None
    assert auth.get_secret("scram") is None
    assert auth.get_secret("nobody") is None


def test_scram_credentials(auth: DictAuthenticator) -> None:
    derived = auth.scram_credentials("plain")
    assert derived is not None and derived == auth.scram_credentials("plain")  # stable salt
    other = auth.scram_credentials("escaped")
    assert other is not None and other.salt != derived.salt
    # Who cannot use SCRAM gets decoys shaped like a plaintext user's keys.
    for decoy in ("pbkdf2", "nobody"):
        creds = auth.scram_credentials(decoy)
        again = auth.scram_credentials(decoy)
        assert creds is not None and again is not None
        assert creds.salt == again.salt and creds.iterations == derived.iterations
    assert run_scram(auth, "plain", "pass word:with colon")
    assert run_scram(auth, "scram", "scram pw")
    assert not run_scram(auth, "scram", "wrong")
    assert not run_scram(auth, "pbkdf2", "hashed pw")
    assert not run_scram(auth, "nobody", "x")


def test_unknown_user_costs_a_hash(
    auth: DictAuthenticator, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    real = hashlib.pbkdf2_hmac

    def counting(name: str, password: bytes, salt: bytes, iterations: int, *a: int) -> bytes:
        calls.append(iterations)
        return real(name, password, salt, iterations, *a)

    monkeypatch.setattr(hashlib, "pbkdf2_hmac", counting)
    assert not auth.check_password("nobody", "x")
    # As much work as the most expensive stored user (SCRAM's 4096).
    assert calls == [4096]


def test_dict_errors_never_show_the_password() -> None:
    for stored in ("", "{PBKDF2-SHA256}1$!!$abc", "{SCRAM-SHA-256}4096$c2FsdA==$x$y"):
        with pytest.raises(ValueError) as info:
            DictAuthenticator({"bob": stored})
        assert "bob" in str(info.value)
        if stored:
            assert stored.split("}")[1] not in str(info.value)
    with pytest.raises(ValueError):
        DictAuthenticator({"": "x"})


USERS = """\
# a comment
   # an indented comment

alice:correct horse battery staple
bob:{PLAIN} leading space
carol:%s
"""


def test_users_file(tmp_path: Path) -> None:
    path = tmp_path / "users"
    path.write_text(USERS % hash_password("carol pw", iterations=FAST), encoding="utf-8")
    users = UsersFile(path)
    assert users.check_password("alice", "correct horse battery staple")
    assert users.check_password("bob", " leading space")
    assert users.check_password("carol", "carol pw")
    assert users.get_secret("alice") == "correct horse battery staple"
    assert users.get_secret("carol") is None
    assert not users.check_password("# a comment", "")
    assert "users=3" in repr(users)


def test_users_file_errors(tmp_path: Path) -> None:
    path = tmp_path / "users"
    path.write_text("alice:ok\nno colon here secret\n")
    with pytest.raises(ValueError, match=r"users:2:") as info:
        UsersFile(path)
    assert "secret" not in str(info.value)
    path.write_text(":nameless\n")
    with pytest.raises(ValueError, match=r":1:"):
        UsersFile(path)
    path.write_bytes(b"alice:\xff\xfe\n")
    with pytest.raises(ValueError, match="UTF-8") as info:
        UsersFile(path)
    assert "xff" not in str(info.value)
    with pytest.raises(FileNotFoundError):
        UsersFile(tmp_path / "missing")


def test_users_file_reloads(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "users"
    path.write_text("alice:one\n")
    users = UsersFile(path)
    assert users.check_password("alice", "one")
    path.write_text("alice:two\nbob:three\n")
    os.utime(path, ns=(1, 1))  # a different stamp even on a coarse clock
    assert users.check_password("alice", "two") and users.check_password("bob", "three")
    # A broken edit keeps the previous table and is logged without content.
    path.write_text("alice:two\nbroken line with secret\n")
    with caplog.at_level(logging.ERROR, logger="pop3proto.server"):
        assert users.check_password("bob", "three")
    assert "not reloaded" in caplog.text and "secret" not in caplog.text

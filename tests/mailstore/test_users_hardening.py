"""The users file resists injection (issue 14, item 5) and the authenticator
gives unknown users nothing to tell them apart by (item 4)."""

from __future__ import annotations

from pathlib import Path

import pytest

import pop3proto
from pop3proto.adapters.mailstore._users import DictAuthenticator, UsersFile, hash_password
from tests.helpers.stores import count_key_derivations


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "users"
    path.write_bytes(text.encode("utf-8"))
    return path


def test_a_line_separator_in_a_password_defines_no_user(tmp_path: Path) -> None:
    """U+2028 is not a line end: it cannot smuggle a second entry in."""
    path = write(tmp_path, "# users\nmallory:x\u2028root:owned\n")
    with pytest.raises(ValueError) as info:
        UsersFile(path)
    assert str(info.value).startswith(f"{path}:2: ")
    assert "control character" in str(info.value)
    assert "owned" not in str(info.value)


@pytest.mark.parametrize(
    "char", ["\x0c", "\x0b", "\x1c", "\x1d", "\x1e", "\x85", "\u2029", "\x00", "\t", "\x7f", "\r"]
)
def test_control_characters_are_refused_with_the_right_line(tmp_path: Path, char: str) -> None:
    """Any control or separator character in a secret names its own line."""
    path = write(tmp_path, f"alice:pw\n\n# c\nbob:a{char}b\ncarol:pw\n")
    with pytest.raises(ValueError) as info:
        UsersFile(path)
    assert str(info.value).startswith(f"{path}:4: "), str(info.value)
    assert "control character" in str(info.value)


def test_control_characters_in_a_name_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "alice:pw\nbo\x1fb:pw\n")
    with pytest.raises(ValueError, match=r":2: .*control character in the user name"):
        UsersFile(path)


def test_crlf_line_ends_are_line_ends(tmp_path: Path) -> None:
    """Files edited on Windows keep working: CRLF ends a line like LF."""
    path = write(tmp_path, "alice:pw one\r\nbob:pw two\r\n")
    auth = UsersFile(path)
    assert auth.check_password("alice", "pw one")
    assert auth.check_password("bob", "pw two")
    assert not auth.check_password("alice", "pw one\r")


def test_duplicate_users_are_refused(tmp_path: Path) -> None:
    """A later line never silently replaces an earlier one."""
    path = write(tmp_path, "root:secret\nalice:pw\n root :other\n")
    with pytest.raises(ValueError) as info:
        UsersFile(path)
    assert str(info.value) == f"{path}:3: user 'root' already defined on line 1"


# ---------------------------------------------------------------------------
# Item 4: unknown users look like known ones
# ---------------------------------------------------------------------------

FAST = 1000


def mixed_users(scram_iterations: int = 2000) -> dict[str, str]:
    return {
        "plain": "plain pw",
        "scram": hash_password("scram pw", scheme="SCRAM-SHA-256", iterations=scram_iterations),
        "pbkdf2": hash_password("pbkdf2 pw", iterations=FAST),
    }


def test_every_wrong_password_costs_the_same_key_derivation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Plain, SCRAM-stored, PBKDF2-stored and unknown users: the same PBKDF2
    work for a wrong password (the most expensive entry's), so timing does
    not tell them apart."""
    auth = DictAuthenticator(mixed_users())
    work = count_key_derivations(monkeypatch)
    costs = {}
    for user in ("plain", "scram", "pbkdf2", "nobody-here"):
        work.clear()
        assert not auth.check_password(user, "wrong")
        costs[user] = sum(work)
    assert costs == dict.fromkeys(costs, 2000), costs
    # The right password costs the same too.
    work.clear()
    assert auth.check_password("plain", "plain pw")
    assert sum(work) == 2000


def test_unknown_users_get_the_configured_scram_iterations() -> None:
    """SCRAM's server-first shows i=: unknown users show what real ones do."""
    auth = DictAuthenticator(mixed_users(scram_iterations=10_000))
    for user in ("scram", "plain", "nobody-here", "pbkdf2"):
        first = scram_server_first(auth, user)
        assert first["i"] == "10000", (user, first)
    auth = DictAuthenticator({"a": "pw"}, scram_iterations=5000)
    assert scram_server_first(auth, "nobody-here")["i"] == "5000"
    assert scram_server_first(auth, "a")["i"] == "5000"


def test_scram_salts_are_stable_across_restarts_for_everyone(tmp_path: Path) -> None:
    """A users file read again (a restart) gives unknown and plaintext users
    the same salts as before, like users stored with SCRAM keys; another
    server's file gives other salts."""
    path = tmp_path / "users"
    lines = [f"{name}:{stored}" for name, stored in mixed_users().items()]
    path.write_text("\n".join(lines) + "\n")
    before = {u: scram_server_first(UsersFile(path), u)["s"] for u in ("plain", "ghost", "scram")}
    after = {u: scram_server_first(UsersFile(path), u)["s"] for u in ("plain", "ghost", "scram")}
    assert before == after
    assert len(set(before.values())) == 3
    other = tmp_path / "other"
    other.write_text("\n".join([*lines, "someone:else"]) + "\n")
    assert scram_server_first(UsersFile(other), "ghost")["s"] != before["ghost"]
    # An explicit secret fixes them whatever the file holds.
    one = scram_server_first(UsersFile(path, secret=b"k" * 32), "ghost")["s"]
    two = scram_server_first(UsersFile(other, secret=b"k" * 32), "ghost")["s"]
    assert one == two
    assert scram_server_first(DictAuthenticator({}, secret=b"k" * 32), "ghost")["s"] == one


def test_unknown_users_still_fail_scram(tmp_path: Path) -> None:
    auth = DictAuthenticator(mixed_users())
    for user in ("nobody-here", "pbkdf2"):
        server = pop3proto.ScramServer(auth.scram_credentials)
        client = pop3proto.ScramClient(user, "any password")
        with pytest.raises(pop3proto.SaslAuthenticationFailed):
            challenge = server.step(client.initial_response())
            while challenge is not None:
                challenge = server.step(client.respond(challenge))
        assert server.authenticated_user is None


def scram_server_first(auth: DictAuthenticator | UsersFile, user: str) -> dict[str, str]:
    server = pop3proto.ScramServer(auth.scram_credentials)
    server.step(None)
    reply = server.step(f"n,,n={user},r=clientnonce".encode())
    assert reply is not None
    return dict(part.split("=", 1) for part in reply.decode().split(","))


def test_scram_iterations_must_be_positive() -> None:
    with pytest.raises(ValueError, match="scram_iterations"):
        DictAuthenticator({}, scram_iterations=0)

"""The users file resists injection (issue 14, item 5) and the authenticator
gives unknown users nothing to tell them apart by (item 4)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pop3proto.adapters.mailstore._users import UsersFile


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

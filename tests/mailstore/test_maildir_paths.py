"""The Maildir backend when the Maildir changes under it, and the odd corners
of the CRLF stream, the in-memory backend and the authenticators."""

from __future__ import annotations

import gc
import logging
import os
import shutil
from pathlib import Path

import pytest

from pop3proto.adapters.mailstore._base import MaildropError
from pop3proto.adapters.mailstore._crlf import normalized_size
from pop3proto.adapters.mailstore._maildir import MaildirBackend
from pop3proto.adapters.mailstore._memory import MemoryBackend
from pop3proto.adapters.mailstore._users import DictAuthenticator, UsersFile, hash_password


def maildir(path: Path, *messages: bytes) -> list[Path]:
    """A Maildir with *messages* in new/, in this order."""
    for sub in ("cur", "new", "tmp"):
        (path / sub).mkdir(parents=True, exist_ok=True)
    files = []
    for number, message in enumerate(messages, 1):
        file = path / "new" / f"{1_700_000_000 + number}.M{number}P1.host"
        file.write_bytes(message)
        os.utime(file, (1_700_000_000 + number,) * 2)
        files.append(file)
    return files


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


needs_proc = pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")


# ---------------------------------------------------------------------------
# Maildir
# ---------------------------------------------------------------------------


def test_a_message_ending_in_a_lone_cr_streams_to_its_listed_size(tmp_path: Path) -> None:
    """RFC 1939 §11: streamed in small chunks, a final lone CR gets its LF; LIST counts it."""
    message = b"ab\r\ncd\r\n\r"
    maildir(tmp_path, message)
    drop = MaildirBackend(tmp_path, chunk_size=4).open("u")
    try:
        assert b"".join(drop.open_message(0)) == b"ab\r\ncd\r\n\r\n"
        assert drop.messages()[0].size == len(b"ab\r\ncd\r\n\r\n")
    finally:
        drop.close()


@needs_proc
def test_a_message_stream_dropped_half_read_closes_its_file(tmp_path: Path) -> None:
    """A big message's stream that is dropped unfinished closes its descriptor."""
    maildir(tmp_path, b"line\n" * 1000)
    drop = MaildirBackend(tmp_path, chunk_size=64).open("u")
    try:
        before = open_fds()
        stream = drop.open_message(0)
        next(stream)
        assert open_fds() == before + 1
        del stream
        gc.collect()
        assert open_fds() == before
        stream = drop.open_message(0)
        assert b"".join(stream) == b"line\r\n" * 1000
        stream.close()  # type: ignore[attr-defined]  # as the server does after sending: harmless
        assert next(stream, None) is None
        assert open_fds() == before
    finally:
        drop.close()


def test_message_moved_is_found_even_without_cur(tmp_path: Path) -> None:
    """A message renamed with flags by another agent is found in new/ even if cur/ is gone."""
    [file] = maildir(tmp_path, b"Subject: moved\n\nhi\n")
    drop = MaildirBackend(tmp_path).open("u")
    try:
        file.rename(file.with_name(file.name + ":2,S"))
        (tmp_path / "cur").rmdir()
        assert b"".join(drop.open_message(0)) == b"Subject: moved\r\n\r\nhi\r\n"
    finally:
        drop.close()


@needs_proc
def test_a_message_replaced_by_a_directory_fails_without_leaking(tmp_path: Path) -> None:
    """A message file replaced by a directory fails the read, and its descriptor is closed."""
    [file] = maildir(tmp_path, b"Subject: x\n\nhi\n")
    drop = MaildirBackend(tmp_path).open("u")
    try:
        file.unlink()
        file.mkdir()
        before = open_fds()
        with pytest.raises(OSError, match="not the file listed"):
            drop.open_message(0)
        assert open_fds() == before
    finally:
        drop.close()


def test_commit_with_cur_gone_still_removes_the_messages(tmp_path: Path) -> None:
    """RFC 1939 §6 UPDATE: deletions go through even when cur/ was removed meanwhile."""
    files = maildir(tmp_path, b"one\n", b"two\n")
    drop = MaildirBackend(tmp_path).open("u")
    try:
        (tmp_path / "cur").rmdir()
        assert drop.commit({0}) is True
    finally:
        drop.close()
    assert [f.exists() for f in files] == [False, True]


def test_maildir_root_that_is_a_file_cannot_be_opened(tmp_path: Path) -> None:
    """A Maildir path that is a plain file is a MaildropError, which the server answers -ERR."""
    (tmp_path / "mail").write_bytes(b"not a directory")
    backend = MaildirBackend(tmp_path / "mail")
    with pytest.raises(MaildropError, match="cannot open the Maildir"):
        backend.open("u")


def test_reprs_say_what_they_hold(tmp_path: Path) -> None:
    """The backends' and maildrops' reprs name the path or size, for logs and debugging."""
    maildir(tmp_path, b"a\n", b"b\n")
    backend = MaildirBackend(tmp_path, per_user=False)
    drop = backend.open("u")
    try:
        assert repr(drop) == f"<MaildirMaildrop {str(tmp_path)!r} messages=2>"
    finally:
        drop.close()
    assert repr(backend) == f"<MaildirBackend {str(tmp_path)!r} per_user=False>"
    assert repr(MemoryBackend({"a": [b"x"], "b": [b"y"]})) == "<MemoryBackend users=2>"


def test_normalized_size_skips_empty_chunks() -> None:
    """Empty chunks in a stream add nothing to its CRLF size."""
    assert normalized_size(iter([b"a\n", b"", b"b", b""])) == len(b"a\r\nb\r\n")


# ---------------------------------------------------------------------------
# Authenticators
# ---------------------------------------------------------------------------


def test_password_that_saslprep_refuses_is_compared_as_it_is() -> None:
    """RFC 4013: a password SASLprep prohibits (a control character) still works, unprepared."""
    auth = DictAuthenticator({"alice": "bell\x07pw"})
    assert auth.check_password("alice", "bell\x07pw")
    assert not auth.check_password("alice", "bellpw")
    assert not auth.check_password("nobody", "bell\x07pw")


def test_hash_password_refuses_an_empty_salt() -> None:
    """An explicitly empty salt is refused (a default salt is random)."""
    with pytest.raises(ValueError, match="salt"):
        hash_password("pw", salt=b"")


@pytest.mark.parametrize(
    ("stored", "message"),
    [
        ("{PBKDF2-SHA256}0$c2FsdHNhbHQ=$" + "A" * 44, "malformed {PBKDF2-SHA256}"),
        ("{PBKDF2-SHA256}1000$$" + "A" * 44, "malformed {PBKDF2-SHA256}"),
        ("{PBKDF2-SHA256}1000$c2FsdA==$AAAA", "malformed {PBKDF2-SHA256}"),
        ("{SCRAM-SHA-256}4096$c2FsdA==$AAAA", "malformed {SCRAM-SHA-256}"),
        ("{SCRAM-SHA-256}x$c2FsdA==$AAAA$AAAA", "malformed {SCRAM-SHA-256}"),
        ("{SCRAM-SHA-256}4096$c2FsdA==$AAAA$AAAA", "malformed {SCRAM-SHA-256}"),
        ("{SCRAM-SHA-256}4096$c2FsdA==$" + "A" * 27 + "=$" + "A" * 27 + "=", "SHA-256 digests"),
    ],
)
def test_malformed_hashes_in_a_users_file_name_the_line(
    tmp_path: Path, stored: str, message: str
) -> None:
    """A bad stored hash is refused with the file and line number, never the value."""
    path = tmp_path / "users"
    path.write_text(f"# users\nbob:pw\nalice:{stored}\n")
    with pytest.raises(ValueError) as info:
        UsersFile(path)
    assert str(info.value).startswith(f"{path}:3: ")
    assert message in str(info.value)
    assert stored.split("$")[-1] not in str(info.value)


def test_users_file_removed_while_serving_keeps_the_users_loaded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A users file that disappears leaves the last loaded users in place, quietly."""
    path = tmp_path / "users"
    path.write_text("alice:pw\n")
    auth = UsersFile(path)
    shutil.move(path, tmp_path / "elsewhere")
    with caplog.at_level(logging.ERROR):
        assert auth.check_password("alice", "pw")
        assert not auth.check_password("alice", "other")
    assert caplog.records == []


@needs_proc
@pytest.mark.parametrize("lost", ["new", "cur"])
def test_a_served_maildir_that_lost_a_directory(tmp_path: Path, lost: str) -> None:
    """A Maildir served before (its lock file is there) is not checked
    again at each login; one that lost new/ or cur/ since gets it back
    (create=True) or is refused (create=False), without leaking the lock
    file's descriptor either way."""
    maildir(tmp_path / "u", b"one\n")
    MaildirBackend(tmp_path, per_user=True).open("u").close()
    assert (tmp_path / "u" / ".pop3proto.lock").exists()
    shutil.rmtree(tmp_path / "u" / lost)
    before = open_fds()
    with pytest.raises(MaildropError, match="no Maildir for this user"):
        MaildirBackend(tmp_path, per_user=True, create=False).open("u")
    assert open_fds() == before
    drop = MaildirBackend(tmp_path, per_user=True).open("u")
    try:
        assert (tmp_path / "u" / lost).is_dir()
        assert len(drop.messages()) == (0 if lost == "new" else 1)
    finally:
        drop.close()
    assert open_fds() == before


def test_a_maildir_without_tmp_is_served_once_it_has_been(tmp_path: Path) -> None:
    """tmp/ is for delivering agents: a reader does not need it.  Checked
    (and created) at the first login only."""
    maildir(tmp_path, b"one\n")
    (tmp_path / "tmp").rmdir()
    MaildirBackend(tmp_path).open("u").close()
    assert (tmp_path / "tmp").is_dir()
    (tmp_path / "tmp").rmdir()
    drop = MaildirBackend(tmp_path, create=False).open("u")
    try:
        assert len(drop.messages()) == 1
    finally:
        drop.close()


def test_a_lock_file_that_cannot_be_opened_is_an_error(tmp_path: Path) -> None:
    maildir(tmp_path, b"one\n")
    (tmp_path / ".pop3proto.lock").mkdir()  # a directory: EISDIR on O_RDWR
    with pytest.raises(MaildropError, match="cannot open the Maildir"):
        MaildirBackend(tmp_path).open("u")


def test_a_maildir_whose_cur_is_a_file_cannot_be_opened(tmp_path: Path) -> None:
    (tmp_path / "new").mkdir()
    (tmp_path / "cur").write_bytes(b"not a directory")
    with pytest.raises(MaildropError, match="cannot open the Maildir"):
        MaildirBackend(tmp_path).open("u")

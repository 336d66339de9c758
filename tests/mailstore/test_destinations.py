"""The fetch destinations (adapters/mailstore/_destinations.py): their failures and recovery.

A full disk is the real thing where it can be: ``RLIMIT_FSIZE`` (the kernel
then fails writes with EFBIG; Python ignores SIGXFSZ) or ``/dev/full`` under
an mbox name.  The end-to-end fetch tests live in tests/cli.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pop3proto.adapters.mailstore._destinations import (
    LineEndConverter,
    MaildirDestination,
    MboxDestination,
    StorageError,
    destination_kind,
    read_mboxrd,
)

ACCOUNT = "alice@pop.example.org"
MESSAGE = b"Subject: hi\r\n\r\nhello\r\n"


@contextlib.contextmanager
def file_size_limit(octets: int) -> Iterator[None]:
    """Writes past *octets* fail with EFBIG while the block runs."""
    assert signal.getsignal(signal.SIGXFSZ) == signal.SIG_IGN
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (octets, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ---------------------------------------------------------------------------
# Line ends and mboxrd
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("mboxrd", [False, True])
def test_empty_chunks_change_nothing(mboxrd: bool) -> None:
    """Empty chunks anywhere in the stream, even first, leave the converted octets as they were."""
    chunks = [b"From here\r", b"\nline\r\n", b">From", b" there\r\n"]
    plain = LineEndConverter(mboxrd=mboxrd)
    want = b"".join(plain.feed(c) for c in chunks) + plain.end()
    gappy = LineEndConverter(mboxrd=mboxrd)
    got = gappy.feed(b"") + b"".join(gappy.feed(c) + gappy.feed(b"") for c in chunks)
    assert got + gappy.end() == want


def test_read_mboxrd_skips_leading_garbage_and_keeps_an_unfinished_last_line() -> None:
    """Text before the first From line is no message; a last line without LF is kept as it is."""
    data = b"garbage\n>From nowhere\nFrom a@b Mon Jan  1 00:00:00 2024\n>From x\nlast"
    assert read_mboxrd(data) == [b"From x\nlast"]


def test_read_mboxrd_of_no_message() -> None:
    """An mbox with no From line holds no message."""
    assert read_mboxrd(b"") == []
    assert read_mboxrd(b"just text\n") == []


def test_destination_kind_of_an_existing_file_is_mbox(tmp_path: Path) -> None:
    """An existing file is taken for an mbox whatever its name; a directory for a Maildir."""
    (tmp_path / "inbox").write_bytes(b"")
    assert destination_kind(str(tmp_path / "inbox")) == "mbox"
    assert destination_kind(str(tmp_path)) == "maildir"
    assert destination_kind(str(tmp_path / "new-name")) == "maildir"
    assert destination_kind(str(tmp_path / "new.MBOX")) == "mbox"


# ---------------------------------------------------------------------------
# Maildir
# ---------------------------------------------------------------------------


def test_maildir_message_without_uid_has_no_marker(tmp_path: Path) -> None:
    """A message from a server without UIDL is stored under a plain Maildir name."""
    dest = MaildirDestination(str(tmp_path), durable=False)
    writer = dest.begin(ACCOUNT, None)
    writer.write(MESSAGE)
    dest.store(writer)
    [name] = files(tmp_path / "new")
    assert ",P3=" not in name
    assert (tmp_path / "new" / name).read_bytes() == b"Subject: hi\n\nhello\n"
    assert dest.description == f"{tmp_path} (Maildir)"


def test_maildir_abort_removes_the_unfinished_file(tmp_path: Path) -> None:
    """An aborted message leaves nothing in tmp/ or new/."""
    dest = MaildirDestination(str(tmp_path), durable=True)
    writer = dest.begin(ACCOUNT, "uid-1")
    writer.write(MESSAGE)
    writer.abort()
    writer.abort()  # twice is harmless
    assert files(tmp_path / "tmp") == files(tmp_path / "new") == []


def test_maildir_stale_temporary_files_of_ours_are_removed(tmp_path: Path) -> None:
    """Our files left in tmp/ over 36 hours are removed on open; others' and fresh ones stay."""
    (tmp_path / "tmp").mkdir()
    old = time.time() - 37 * 3600
    names = {
        "stale": "1.M1P1Q1.host,P3=" + "a" * 24,
        "fresh": "2.M1P1Q1.host,P3=" + "b" * 24,
        "theirs": "3.M1P1Q1.host",
    }
    for key, name in names.items():
        path = tmp_path / "tmp" / name
        path.write_bytes(b"x")
        if key != "fresh":
            os.utime(path, (old, old))
    MaildirDestination(str(tmp_path), durable=False)
    assert files(tmp_path / "tmp") == sorted([names["fresh"], names["theirs"]])


def test_maildir_without_tmp_cannot_take_a_message(tmp_path: Path) -> None:
    """A Maildir whose tmp/ vanished fails with a StorageError naming the file."""
    dest = MaildirDestination(str(tmp_path), durable=False)
    shutil.rmtree(tmp_path / "tmp")
    with pytest.raises(StorageError, match=r"cannot create a message file .*tmp"):
        dest.begin(ACCOUNT, "uid-1")


def test_maildir_without_new_cannot_be_searched_or_stored_into(tmp_path: Path) -> None:
    """A Maildir whose new/ vanished fails both the search and the store, leaving no temporary."""
    dest = MaildirDestination(str(tmp_path), durable=False)
    writer = dest.begin(ACCOUNT, "uid-1")
    writer.write(MESSAGE)
    shutil.rmtree(tmp_path / "new")
    with pytest.raises(StorageError, match="cannot read the Maildir"):
        dest.already_stored(ACCOUNT, ["uid-1"])
    with pytest.raises(StorageError, match="cannot move the message into new/"):
        dest.store(writer)
    assert files(tmp_path / "tmp") == []


def test_maildir_write_past_the_file_size_limit_is_a_storage_error(tmp_path: Path) -> None:
    """A write the kernel refuses (EFBIG) is a StorageError, also when it fails at the flush."""
    dest = MaildirDestination(str(tmp_path), durable=False)
    big = dest.begin(ACCOUNT, "uid-1")
    small = dest.begin(ACCOUNT, "uid-2")
    with file_size_limit(1000):
        with pytest.raises(StorageError, match="cannot write the message file"):
            big.write(b"x" * 200_000)  # larger than the buffer: written at once
        small.write(b"y" * 2000)  # buffered
        with pytest.raises(StorageError, match="cannot write the message file"):
            dest.store(small)
    big.abort()
    small.abort()
    assert files(tmp_path / "new") == []


# ---------------------------------------------------------------------------
# mbox
# ---------------------------------------------------------------------------


def mbox(tmp_path: Path, *, durable: bool = False, name: str = "inbox.mbox") -> MboxDestination:
    path = tmp_path / name
    return MboxDestination(str(path), durable=durable, intent_path=f"{path}.uidl.intent")


def test_mbox_message_without_uid_is_appended_without_an_intent(tmp_path: Path) -> None:
    """Without a UID there is nothing to recover later: no intent file is written."""
    dest = mbox(tmp_path)
    writer = dest.begin(ACCOUNT, None)
    writer.write(MESSAGE)
    dest.store(writer)
    dest.close()
    dest.close()  # twice is harmless
    assert not Path(dest.intent_path).exists()
    assert read_mboxrd((tmp_path / "inbox.mbox").read_bytes()) == [b"Subject: hi\n\nhello\n"]
    assert dest.description == f"{dest.path} (mbox)"


def test_mbox_that_is_a_directory_cannot_be_opened(tmp_path: Path) -> None:
    """An mbox path naming a directory is a StorageError at once."""
    (tmp_path / "inbox.mbox").mkdir()
    with pytest.raises(StorageError, match="cannot open the mbox"):
        mbox(tmp_path)


def test_mbox_on_a_full_disk_is_a_storage_error(tmp_path: Path) -> None:
    """An append the disk refuses (ENOSPC) is a StorageError."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    (tmp_path / "inbox.mbox").symlink_to("/dev/full")
    dest = mbox(tmp_path)
    writer = dest.begin(ACCOUNT, None)
    writer.write(MESSAGE)
    with pytest.raises(StorageError, match="cannot append to the mbox"):
        dest.store(writer)
    dest.close()


def test_mbox_spool_past_the_file_size_limit_is_a_storage_error(tmp_path: Path) -> None:
    """A message too big for memory spools to disk; a refused spool write is a StorageError."""
    dest = mbox(tmp_path)
    writer = dest.begin(ACCOUNT, "uid-1")
    with file_size_limit(1 << 20), pytest.raises(StorageError, match="cannot spool"):
        for _ in range(10):
            writer.write(b"z" * (1 << 20))
    writer.abort()
    dest.close()


def intent(dest: MboxDestination, **fields: object) -> None:
    values: dict[str, object] = {
        "account": ACCOUNT, "uid": "uid-1", "offset": 0, "length": 10, "sha256": "0" * 64,
        "head": "From x\n",
    }  # fmt: skip
    values.update(fields)
    Path(dest.intent_path).write_text(json.dumps(values))


def test_unreadable_intent_is_dropped(tmp_path: Path) -> None:
    """An intent that is not what we write (bad JSON, missing fields) is ignored and removed."""
    dest = mbox(tmp_path)
    for text in ("{", '{"account": "a"}', "[1]"):
        Path(dest.intent_path).write_text(text)
        assert dest.resolve_intent(lambda account, uid: False) is None
        assert not Path(dest.intent_path).exists()


def test_intent_of_a_recorded_message_is_dropped(tmp_path: Path) -> None:
    """RFC 1939 §7 UIDs: an intent whose UID the state file has is just removed."""
    dest = mbox(tmp_path)
    intent(dest)
    seen: list[tuple[str, str]] = []

    def is_recorded(account: str, uid: str) -> bool:
        seen.append((account, uid))
        return True

    assert dest.resolve_intent(is_recorded) is None
    assert seen == [(ACCOUNT, "uid-1")]
    assert not Path(dest.intent_path).exists()


def test_intent_of_an_append_that_never_started_leaves_the_mbox_alone(tmp_path: Path) -> None:
    """If nothing of the announced append reached the file, the mbox is untouched."""
    dest = mbox(tmp_path)
    (tmp_path / "inbox.mbox").write_bytes(b"From a\nkept\n\n")
    intent(dest, offset=13)
    assert dest.resolve_intent(lambda account, uid: False) is None
    assert (tmp_path / "inbox.mbox").read_bytes() == b"From a\nkept\n\n"
    assert not Path(dest.intent_path).exists()


def test_partial_append_is_truncated_durably(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A prefix of the announced append at the end of the mbox is cut off (and fsync'ed)."""
    dest = mbox(tmp_path, durable=True)
    (tmp_path / "inbox.mbox").write_bytes(b"From a\nkept\n\nFrom x\nhal")
    intent(dest, offset=13, length=40, head="From x\n")
    assert dest.resolve_intent(lambda account, uid: False) is None
    assert (tmp_path / "inbox.mbox").read_bytes() == b"From a\nkept\n\n"
    assert "removed a partial message" in capfd.readouterr().err


def test_mbox_changed_after_the_append_is_left_alone_with_a_warning(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """If another program wrote after our partial append, nothing is cut and a warning says so."""
    dest = mbox(tmp_path)
    data = b"From a\nkept\n\nFrom x\nhal\nFrom other\nmail\n"
    (tmp_path / "inbox.mbox").write_bytes(data)
    intent(dest, offset=13, length=100, head="From x\n")
    assert dest.resolve_intent(lambda account, uid: False) is None
    assert (tmp_path / "inbox.mbox").read_bytes() == data
    assert "changed after an interrupted append at offset 13" in capfd.readouterr().err
    assert not Path(dest.intent_path).exists()


def test_mbox_sender_from_a_header_longer_than_what_is_looked_at(tmp_path: Path) -> None:
    """The From line takes Return-Path from the first 64 KiB even when the header runs past them."""
    dest = mbox(tmp_path)
    long_header = b"X-Long: " + b"a" * 70_000 + b"\r\n"
    for message in (
        b"Return-Path: <bob@example.org>\r\n" + long_header + b"\r\nbody\r\n",
        long_header + b"Return-Path: <late@example.org>\r\n\r\nbody\r\n",
    ):
        writer = dest.begin(ACCOUNT, None)
        writer.write(message)
        dest.store(writer)
    dest.close()
    from_lines = [
        line.split()[1]
        for line in (tmp_path / "inbox.mbox").read_bytes().splitlines()
        if line.startswith(b"From ")
    ]
    assert from_lines == [b"bob@example.org", b"MAILER-DAEMON"]

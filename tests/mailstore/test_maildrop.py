"""Maildrop backends (adapters/mailstore/): Maildir and in-memory."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pop3proto.adapters.mailstore._base import (
    Maildrop,
    MaildropBackend,
    MaildropError,
    MaildropInUse,
)
from pop3proto.adapters.mailstore._crlf import CrlfNormalizer, normalized_chunks, top_of
from pop3proto.adapters.mailstore._maildir import LOCK_FILE_NAME, MaildirBackend, maildir_uid
from pop3proto.adapters.mailstore._memory import MemoryBackend
from tests.helpers import expected_body, make_maildir, message_file

SAMPLES = [
    b"",
    b"\n",
    b"\r",
    b"\r\n",
    b"a",
    b"a\nb\n",
    b"a\r\nb\r\n",
    b"mixed\r\nline\nends\r\rx\n",
    b"\n\n\r\n\r\r\n\n",
    b"no final newline",
    b"ends with cr\r",
    b".\n..\n.x\n",
]


# ---------------------------------------------------------------------------
# Line-end normalisation and TOP
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("data", SAMPLES)
def test_normalizer_at_every_split(data: bytes) -> None:
    for size in range(1, max(len(data), 1) + 1):
        chunks = [data[i : i + size] for i in range(0, len(data), size)]
        assert b"".join(normalized_chunks(chunks)) == expected_body(data), size
        counter = CrlfNormalizer()
        counted = sum(counter.count(c) for c in chunks) + len(counter.end())
        assert counted == len(expected_body(data)), size


@given(
    data=st.binary(max_size=60).map(lambda b: bytes(b"a\r\n."[x % 4] for x in b)),
    size=st.integers(1, 8),
)
def test_normalizer_matches_the_reference(data: bytes, size: int) -> None:
    """RFC 1939 §11: however CR, LF and text mix and however the file is
    read, the stream and the size say the same as a whole-message rewrite."""
    chunks = [data[i : i + size] for i in range(0, len(data), size)]
    assert b"".join(normalized_chunks(chunks)) == expected_body(data)
    counter = CrlfNormalizer()
    assert sum(counter.count(c) for c in chunks) + len(counter.end()) == len(expected_body(data))


def test_normalizer_never_yields_empty_chunks() -> None:
    assert list(normalized_chunks([b"", b"a", b"", b"\n"])) == [b"a", b"\r\n"]
    assert list(normalized_chunks([])) == []


def test_cr_lf_split_across_chunks() -> None:
    norm = CrlfNormalizer()
    assert norm.feed(b"a\r") == b"a\r"
    assert norm.feed(b"\nb") == b"\nb"  # not \r\r\n
    assert norm.end() == b"\r\n"


MESSAGE = b"Subject: s\r\nX: y\r\n\r\nline1\r\nline2\r\n.dot\r\nline4\r\n"


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (0, b"Subject: s\r\nX: y\r\n\r\n"),
        (1, b"Subject: s\r\nX: y\r\n\r\nline1\r\n"),
        (3, b"Subject: s\r\nX: y\r\n\r\nline1\r\nline2\r\n.dot\r\n"),
        (4, MESSAGE),
        (100, MESSAGE),
    ],
)
def test_top_of_at_every_chunk_size(lines: int, expected: bytes) -> None:
    for size in range(1, len(MESSAGE) + 1):
        chunks = iter([MESSAGE[i : i + size] for i in range(0, len(MESSAGE), size)])
        assert b"".join(top_of(chunks, lines)) == expected, size


def test_top_of_without_body_separator_sends_everything() -> None:
    data = b"Subject: only headers\r\nX: y\r\n"
    assert b"".join(top_of(iter([data]), 0)) == data


def test_top_of_closes_the_source() -> None:
    closed = []

    def source() -> object:
        try:
            yield b"H: v\r\n\r\nbody\r\n"
            yield b"more\r\n"
        finally:
            closed.append(True)

    assert b"".join(top_of(source(), 0)) == b"H: v\r\n\r\n"  # type: ignore[arg-type]
    assert closed == [True]
    with pytest.raises(ValueError):
        list(top_of(iter([b"x"]), -1))


# ---------------------------------------------------------------------------
# UIDs
# ---------------------------------------------------------------------------


def test_maildir_uid() -> None:
    assert maildir_uid("1700000000.M1P2Q3.host") == "1700000000.M1P2Q3.host"
    assert maildir_uid("a" * 70) == "a" * 70
    long = maildir_uid("a" * 71)
    assert len(long) == 64 and long == maildir_uid("a" * 71)
    for odd in ("with space", "tab\there", "caf\xe9", "x\x7f", ""):
        uid = maildir_uid(odd)
        assert 1 <= len(uid) <= 70 and all("\x21" <= c <= "\x7e" for c in uid), odd
    assert maildir_uid("a b") != maildir_uid("a_b")


# ---------------------------------------------------------------------------
# Maildir
# ---------------------------------------------------------------------------

LF_MESSAGES = [
    b"Subject: first\n\nbody 1\n",
    b"Subject: second\n\n.dot line\n" + b"long line " * 50 + b"\nend",
    b"Subject: third\r\n\r\nalready crlf\r\n",
]


def test_maildir_lists_sizes_and_uids(tmp_path: Path) -> None:
    md, keys = make_maildir(tmp_path / "box", LF_MESSAGES)
    backend = MaildirBackend(tmp_path / "box")
    assert isinstance(backend, MaildropBackend)
    drop = backend.open("anyone")
    assert isinstance(drop, Maildrop)
    try:
        infos = drop.messages()
        assert [i.uid for i in infos] == keys
        assert [i.size for i in infos] == [len(expected_body(m)) for m in LF_MESSAGES]
        for index, message in enumerate(LF_MESSAGES):
            assert b"".join(drop.open_message(index)) == expected_body(message)
        assert b"".join(drop.top(1, 1)) == b"Subject: second\r\n\r\n.dot line\r\n"
    finally:
        drop.close()
    # The lock file does not disturb the stdlib reader.
    assert os.path.exists(tmp_path / "box" / LOCK_FILE_NAME)
    assert sorted(md.keys()) == sorted(keys) and md.list_folders() == []


def test_maildir_streams_with_tiny_chunks(tmp_path: Path) -> None:
    message = b"a\r\nb\nc\r\r\n" * 20 + b"tail"
    make_maildir(tmp_path / "box", [message])
    drop = MaildirBackend(tmp_path / "box", chunk_size=3).open("u")
    try:
        chunks = list(drop.open_message(0))
        assert len(chunks) > 20 and max(len(c) for c in chunks) <= 6
        assert b"".join(chunks) == expected_body(message)
        assert drop.messages()[0].size == len(expected_body(message))
    finally:
        drop.close()


def test_maildir_order_and_uid_stability(tmp_path: Path) -> None:
    box = tmp_path / "box"
    md, keys = make_maildir(box, LF_MESSAGES)
    # Deliver an older message after the others: it sorts first.
    late = md.add(b"Subject: old\n\nx\n")
    os.utime(message_file(md, late), ns=(1, 1))
    backend = MaildirBackend(box)
    with_late = [late, *keys]
    drop = backend.open("u")
    assert [i.uid for i in drop.messages()] == with_late
    drop.close()
    # Move a message from new/ to cur/ with flags, as a MUA would.
    msg = md[keys[0]]
    msg.set_subdir("cur")
    msg.add_flag("S")
    md[keys[0]] = msg
    assert message_file(md, keys[0]).parent.name == "cur"
    # A new backend (a restart) sees the same UIDs.
    drop = MaildirBackend(box).open("u")
    try:
        assert [i.uid for i in drop.messages()] == with_late
    finally:
        drop.close()


def test_maildir_skips_dot_files_and_directories(tmp_path: Path) -> None:
    box = tmp_path / "box"
    make_maildir(box, LF_MESSAGES)
    (box / "new" / ".hidden").write_bytes(b"x")
    (box / "cur" / "adir").mkdir()
    drop = MaildirBackend(box).open("u")
    try:
        assert len(drop.messages()) == len(LF_MESSAGES)
    finally:
        drop.close()


def test_maildir_message_moved_during_session(tmp_path: Path) -> None:
    box = tmp_path / "box"
    md, keys = make_maildir(box, LF_MESSAGES)
    drop = MaildirBackend(box).open("u")
    try:
        msg = md[keys[1]]
        msg.set_subdir("cur")
        msg.add_flag("S")
        md[keys[1]] = msg
        assert b"".join(drop.open_message(1)) == expected_body(LF_MESSAGES[1])
        os.unlink(message_file(md, keys[2]))
        with pytest.raises(OSError):
            drop.open_message(2)
        assert drop.commit({1, 2}) is True  # already gone counts as removed
        assert sorted(md.keys()) == [keys[0]]
    finally:
        drop.close()


def test_maildir_commit_removes_only_marked(tmp_path: Path) -> None:
    box = tmp_path / "box"
    md, keys = make_maildir(box, LF_MESSAGES)
    drop = MaildirBackend(box).open("u")
    try:
        assert drop.commit({0, 2}) is True
    finally:
        drop.close()
    assert sorted(md.keys()) == [keys[1]]
    drop = MaildirBackend(box).open("u")
    try:
        assert [i.uid for i in drop.messages()] == [keys[1]]
        assert drop.commit(set()) is True
    finally:
        drop.close()
    assert sorted(md.keys()) == [keys[1]]


def test_maildir_commit_partial_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    box = tmp_path / "box"
    md, keys = make_maildir(box, LF_MESSAGES)
    drop = MaildirBackend(box).open("u")
    real_unlink = os.unlink
    stuck = str(message_file(md, keys[0]))

    def unlink(path: str) -> None:
        if path == stuck:
            raise PermissionError(13, "denied", path)
        real_unlink(path)

    monkeypatch.setattr(os, "unlink", unlink)
    try:
        assert drop.commit({0, 1}) is False
    finally:
        drop.close()
    assert sorted(md.keys()) == sorted([keys[0], keys[2]])


def test_maildir_lock_in_process(tmp_path: Path) -> None:
    backend = MaildirBackend(tmp_path / "box")
    first = backend.open("u")
    with pytest.raises(MaildropInUse):
        backend.open("u")
    # Another backend object on the same directory is excluded too.
    with pytest.raises(MaildropInUse):
        MaildirBackend(tmp_path / "box").open("v")
    first.close()
    first.close()  # idempotent
    backend.open("u").close()


def test_maildir_lock_across_processes(tmp_path: Path) -> None:
    box = tmp_path / "box"
    script = textwrap.dedent(
        """
        import sys
        from pop3proto.adapters.mailstore._maildir import MaildirBackend
        drop = MaildirBackend(sys.argv[1]).open("u")
        print("locked", flush=True)
        sys.stdin.read()
        drop.close()
        """
    )
    with subprocess.Popen(
        [sys.executable, "-c", script, str(box)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    ) as child:
        try:
            assert child.stdout is not None and child.stdout.readline() == b"locked\n"
            with pytest.raises(MaildropInUse):
                MaildirBackend(box).open("u")
        finally:
            assert child.stdin is not None
            child.stdin.close()
            child.wait(timeout=10)
    MaildirBackend(box).open("u").close()


def test_maildir_per_user(tmp_path: Path) -> None:
    backend = MaildirBackend(tmp_path, per_user=True)
    make_maildir(tmp_path / "alice", LF_MESSAGES)
    alice = backend.open("alice")
    bob = backend.open("bob")  # created on demand
    try:
        assert len(alice.messages()) == len(LF_MESSAGES)
        assert bob.messages() == []
        assert (tmp_path / "bob" / "new").is_dir()
    finally:
        alice.close()
        bob.close()
    for bad in ("", ".", "..", ".hidden", "a/b", "x\0y"):
        with pytest.raises(MaildropError):
            backend.open(bad)
    with pytest.raises(MaildropError):
        MaildirBackend(tmp_path, per_user=True, create=False).open("carol")


def test_maildir_size_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pop3proto.adapters.mailstore._maildir as module

    box = tmp_path / "box"
    md, keys = make_maildir(box, LF_MESSAGES)
    backend = MaildirBackend(box)
    backend.open("u").close()
    calls = []
    real = module.normalized_size

    def counting(chunks: object) -> int:
        calls.append(1)
        return real(chunks)  # type: ignore[arg-type]

    monkeypatch.setattr(module, "normalized_size", counting)
    backend.open("u").close()
    assert calls == []  # sizes came from the cache
    path = message_file(md, keys[0])
    with open(path, "ab") as f:
        f.write(b"more\n")
    drop = backend.open("u")
    try:
        assert calls == [1]
        # Appending changed the mtime too, so it now sorts last.
        sizes = {i.uid: i.size for i in drop.messages()}
        assert sizes[keys[0]] == len(expected_body(LF_MESSAGES[0] + b"more\n"))
    finally:
        drop.close()


def test_maildir_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        MaildirBackend(tmp_path, chunk_size=0)
    with pytest.raises(ValueError):
        MaildirBackend(tmp_path, colon="::")


# ---------------------------------------------------------------------------
# Memory
# ---------------------------------------------------------------------------


def test_memory_backend() -> None:
    backend = MemoryBackend({"alice": [b"a\n", b"b\r\n", b"c"]}, chunk_size=1)
    assert isinstance(backend, MaildropBackend)
    drop = backend.open("alice")
    assert isinstance(drop, Maildrop)
    assert backend.is_locked("alice")
    with pytest.raises(MaildropInUse):
        backend.open("alice")
    infos = drop.messages()
    assert [i.size for i in infos] == [3, 3, 3]
    assert len({i.uid for i in infos}) == 3
    assert b"".join(drop.open_message(2)) == b"c\r\n"
    # Delivered during the session: not in the snapshot, kept by commit.
    backend.add("alice", b"late\n")
    assert len(drop.messages()) == 3
    assert drop.commit({0, 2}) is True
    drop.close()
    drop.close()
    assert not backend.is_locked("alice")
    assert backend.messages("alice") == [b"b\r\n", b"late\n"]
    again = backend.open("alice")
    try:
        assert [i.uid for i in again.messages()] == [infos[1].uid, "m4"]
    finally:
        again.close()


def test_memory_backend_unknown_user_and_uid_reuse() -> None:
    backend = MemoryBackend()
    drop = backend.open("nobody")
    assert drop.messages() == []
    drop.close()
    first = backend.add("u", b"same")
    second = backend.add("u", b"same")
    assert first != second
    drop = backend.open("u")
    drop.commit({0, 1})
    drop.close()
    assert backend.add("u", b"same") not in (first, second)
    with pytest.raises(TypeError):
        backend.add("u", "text")  # type: ignore[arg-type]

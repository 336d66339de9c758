"""Maildir reads never follow a link out of the Maildir (issue 14, item 6)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pop3proto.adapters.mailstore._base import MaildropError
from pop3proto.adapters.mailstore._maildir import MaildirBackend
from tests.helpers import PASSWORD, USER, make_maildir, message_file, running_server
from tests.helpers.servers import RUNTIMES, recv_until

SECRET = b"root:$6$TOP-SECRET-SHADOW-LINE\r\n"
MESSAGES = [b"Subject: one\r\n\r\nfirst\r\n", b"Subject: two\r\n\r\nsecond\r\n"]


def planted(tmp_path: Path) -> tuple[Path, list[Path]]:
    secret = tmp_path / "outside" / "shadow"
    secret.parent.mkdir()
    secret.write_bytes(SECRET)
    md, keys = make_maildir(tmp_path / "Maildir", MESSAGES)
    return secret, [message_file(md, k) for k in keys]


@pytest.mark.parametrize("kind", RUNTIMES)
def test_retr_of_a_message_swapped_for_a_symlink_after_login(tmp_path: Path, kind: str) -> None:
    """The scan at login saw a file; a link planted in its place later is
    not followed: RETR gets -ERR, the other messages still work."""
    secret, files = planted(tmp_path)
    backend = MaildirBackend(tmp_path / "Maildir")
    with running_server(kind, backend) as srv, srv.connect() as sock:
        recv_until(sock, lambda d: d.endswith(b"\r\n"))
        sock.sendall(f"USER {USER}\r\nPASS {PASSWORD}\r\n".encode())
        logged_in = recv_until(sock, lambda d: d.count(b"\r\n") >= 2)
        assert logged_in.count(b"+OK") == 2, logged_in
        files[0].unlink()
        files[0].symlink_to(secret)
        sock.sendall(b"RETR 1\r\n")
        reply = recv_until(sock, lambda d: d.endswith(b"\r\n"))
        assert reply.startswith(b"-ERR"), reply
        sock.sendall(b"RETR 2\r\n")
        body = recv_until(sock, lambda d: d.endswith(b"\r\n.\r\n"))
        assert body.startswith(b"+OK") and b"second" in body
        sock.sendall(b"QUIT\r\n")
        recv_until(sock, lambda d: d.endswith(b"\r\n"))
    assert b"TOP-SECRET" not in reply + body


def test_a_message_replaced_by_another_file_is_refused(tmp_path: Path) -> None:
    """A hard link to a file outside, renamed over a listed message, is not
    the file the scan listed: refused, by inode and link count."""
    secret, files = planted(tmp_path)
    drop = MaildirBackend(tmp_path / "Maildir").open(USER)
    try:
        impostor = files[0].with_name("impostor")
        os.link(secret, impostor)
        os.replace(impostor, files[0])
        with pytest.raises(OSError, match="not the file listed"):
            drop.open_message(0)
        files[1].unlink()
        files[1].symlink_to(secret)
        with pytest.raises(OSError):
            drop.open_message(1)
    finally:
        drop.close()


def test_top_of_a_swapped_message_is_refused(tmp_path: Path) -> None:
    secret, files = planted(tmp_path)
    drop = MaildirBackend(tmp_path / "Maildir").open(USER)
    try:
        files[0].unlink()
        files[0].symlink_to(secret)
        with pytest.raises(OSError):
            b"".join(drop.top(0, 0))
    finally:
        drop.close()


@pytest.mark.parametrize("sub", ["cur", "new"])
def test_a_symlinked_maildir_folder_is_refused(tmp_path: Path, sub: str) -> None:
    """new/ or cur/ replaced by a link to another directory: not served."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "1700000000.M1P1Q1.host").write_bytes(SECRET)
    make_maildir(tmp_path / "Maildir", MESSAGES)
    folder = tmp_path / "Maildir" / sub
    for entry in folder.iterdir():
        entry.unlink()
    folder.rmdir()
    folder.symlink_to(outside, target_is_directory=True)
    with pytest.raises(MaildropError, match="link"):
        MaildirBackend(tmp_path / "Maildir").open(USER)


def test_a_read_error_closes_the_message_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    planted(tmp_path)
    drop = MaildirBackend(tmp_path / "Maildir").open(USER)
    opened: list[int] = []
    real_open, real_read = os.open, os.read

    def spy_open(path: str, flags: int, *args: object, **kwargs: object) -> int:
        fd = real_open(path, flags, *args, **kwargs)  # type: ignore[arg-type]
        opened.append(fd)
        return fd

    def failing_read(fd: int, size: int) -> bytes:
        if fd in opened:
            raise OSError(5, "Input/output error")
        return real_read(fd, size)

    try:
        monkeypatch.setattr(os, "open", spy_open)
        monkeypatch.setattr(os, "read", failing_read)
        with pytest.raises(OSError, match="Input/output"):
            drop.open_message(0)
        monkeypatch.undo()
        with pytest.raises(OSError):  # closed: fstat of it fails
            os.fstat(opened[0])
    finally:
        drop.close()


def test_a_file_replaced_during_the_scan_is_left_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between the listing and the size count a message became a link: it
    is not listed (as if it had not been there yet)."""
    import pop3proto.adapters.mailstore._maildir as module

    _, files = planted(tmp_path)
    real = module._open_listed

    def swapped(path: str, ident: tuple[int, int, int]) -> int:
        if path == str(files[0]):
            raise OSError(40, "Too many levels of symbolic links", path)
        return real(path, ident)

    monkeypatch.setattr(module, "_open_listed", swapped)
    drop = MaildirBackend(tmp_path / "Maildir").open(USER)
    try:
        assert len(drop.messages()) == 1
    finally:
        drop.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to own files as two users")
def test_a_folder_swapped_for_a_link_after_login_reads_no_other_owners_file(
    tmp_path: Path,
) -> None:
    """The owner of the Maildir names a message like a file of root's, logs
    in, then swaps new/ for a link to root's directory: the file found
    there under that name has another owner, and is refused."""
    outside = tmp_path / "outside"
    outside.mkdir()
    make_maildir(tmp_path / "Maildir", [b"Subject: bait\r\n\r\nx\r\n"])
    [bait] = list((tmp_path / "Maildir" / "new").iterdir())
    (outside / bait.name).write_bytes(SECRET)  # root's, with one name
    os.chown(bait, 65534, 65534)
    drop = MaildirBackend(tmp_path / "Maildir").open(USER)
    try:
        moved = tmp_path / "Maildir" / "new-moved"
        (tmp_path / "Maildir" / "new").rename(moved)
        (tmp_path / "Maildir" / "new").symlink_to(outside, target_is_directory=True)
        with pytest.raises(OSError, match="not the file listed"):
            drop.open_message(0)
    finally:
        drop.close()

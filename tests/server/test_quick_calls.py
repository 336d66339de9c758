"""Quick logins are made on the loop: no hand-off to a worker thread.

An authenticator says which of its checks are quick
(``quick_credentials()``) and a backend opens quickly what it can
(``try_open``); an offloading session (what the asyncio, trio and blocking
servers run) then makes those calls itself instead of yielding a
:class:`Call`.  Everything else still goes to a worker thread: a hashed
password, a SCRAM key derivation, a Maildir that has to be listed, an
authenticator or a backend that says nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Set as AbstractSet
from pathlib import Path

import pytest

import pop3proto
import pop3proto.adapters.mailstore._maildir as maildir_module
from pop3proto.adapters.server import (
    Call,
    DictAuthenticator,
    Identity,
    MaildirBackend,
    MaildropInUse,
    MemoryBackend,
    ServerSession,
    hash_password,
)
from pop3proto.adapters.server._authorization import quick_credentials_of
from pop3proto.adapters.server._opening import UNABLE_TO_OPEN
from tests.helpers import drive_session, make_maildir

PASSWORD = "s3cret"
MESSAGE = b"Subject: quick\r\n\r\nbody\r\n"
ONE = b"+OK maildrop has 1 messages"
TWO = b"+OK maildrop has 2 messages"


class Driven:
    """An offloading session driven as a runtime would: the names of the
    calls it hands over, and what it sent."""

    def __init__(self, backend: object, authenticator: object) -> None:
        self.session = ServerSession(
            backend,  # type: ignore[arg-type]
            authenticator,  # type: ignore[arg-type]
            is_loopback=True,
            offload=True,
        )
        self.sent = self.session.greeting()
        self.calls: list[str] = []

    def send(self, line: bytes) -> bytes:
        """Feed *line*, run the actions; what the session sent for it."""
        self.session.receive(line)
        out = drive_session(self.session, calls=self.calls)
        self.sent += out
        return out


def plain() -> DictAuthenticator:
    return DictAuthenticator({"alice": PASSWORD})


def login(driven: Driven) -> bytes:
    driven.send(b"USER alice\r\n")
    return driven.send(b"PASS " + PASSWORD.encode() + b"\r\n")


# ---------------------------------------------------------------------------
# What the ready authenticators say
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("users", "quick"),
    [
        ({"a": "x", "b": "{PLAIN}y"}, {"password", "secret"}),
        ({"a": "x", "b": hash_password("y", iterations=1000)}, set()),
        ({"a": hash_password("y", scheme="SCRAM-SHA-256", iterations=4096)}, set()),
        ({}, {"password", "secret"}),
    ],
)
def test_a_dict_authenticator_is_quick_only_without_hashes(
    users: dict[str, str], quick: AbstractSet[str]
) -> None:
    # A hashed entry makes every check pay its derivation (the padding
    # that hides which users exist), plain ones included.
    assert DictAuthenticator(users).quick_credentials() == quick


def test_an_overridden_check_is_not_assumed_quick() -> None:
    class Audited(DictAuthenticator):
        def check_password(self, user: str, password: str) -> bool:
            return super().check_password(user, password)

    class Looked(DictAuthenticator):
        def get_secret(self, user: str) -> str | None:
            return super().get_secret(user)

    assert Audited({"a": "x"}).quick_credentials() == {"secret"}
    assert Looked({"a": "x"}).quick_credentials() == {"password"}


def test_an_authenticator_that_says_nothing_is_never_quick() -> None:
    class Silent:
        def check_password(self, user: str, password: str) -> bool:
            return password == PASSWORD

    assert quick_credentials_of(Silent()) == frozenset()  # type: ignore[arg-type]
    driven = Driven(MemoryBackend({"alice": [MESSAGE]}), Silent())
    assert login(driven).startswith(b"+OK")
    assert driven.calls == ["_login_check"]


# ---------------------------------------------------------------------------
# The session: which logins take a call
# ---------------------------------------------------------------------------


def test_a_quick_login_takes_no_call() -> None:
    backend = MemoryBackend({"alice": [MESSAGE]})
    driven = Driven(backend, plain())
    assert login(driven) == b"+OK maildrop has 1 messages (%d octets)\r\n" % len(MESSAGE)
    assert driven.send(b"RETR 1\r\n").endswith(MESSAGE + b".\r\n")
    assert driven.calls == []
    # The commit of a deletion still goes to a worker thread.
    driven.send(b"DELE 1\r\nQUIT\r\n")
    assert driven.calls == ["commit"]
    assert backend.messages("alice") == []


def test_a_wrong_password_is_answered_alike() -> None:
    driven = Driven(MemoryBackend(), plain())
    driven.send(b"USER alice\r\n")
    assert driven.send(b"PASS wrong\r\n") == b"-ERR [AUTH] authentication failed\r\n"
    driven.send(b"USER nobody\r\n")
    assert driven.send(b"PASS wrong\r\n") == b"-ERR [AUTH] authentication failed\r\n"
    assert driven.calls == []


def test_a_hashed_password_is_checked_in_a_worker() -> None:
    users = {"alice": hash_password(PASSWORD, iterations=1000)}
    driven = Driven(MemoryBackend({"alice": [MESSAGE]}), DictAuthenticator(users))
    assert login(driven).startswith(ONE)
    assert driven.calls == ["_login_check"]


def test_apop_and_cram_md5_are_quick() -> None:
    driven = Driven(MemoryBackend({"alice": [MESSAGE]}), plain())
    match = re.search(rb"<[^>]+>", driven.sent)
    assert match is not None
    digest = pop3proto.apop_digest(match.group().decode(), PASSWORD)
    assert driven.send(b"APOP alice " + digest.encode() + b"\r\n").startswith(ONE)
    assert driven.calls == []

    driven = Driven(MemoryBackend({"alice": [MESSAGE]}), plain())
    challenge = base64.b64decode(driven.send(b"AUTH CRAM-MD5\r\n")[2:].strip())
    proof = hmac.new(PASSWORD.encode(), challenge, hashlib.md5).hexdigest()
    answer = base64.b64encode(b"alice " + proof.encode())
    assert driven.send(answer + b"\r\n").startswith(ONE)
    assert driven.calls == []


def test_sasl_plain_is_quick_and_scram_is_not() -> None:
    driven = Driven(MemoryBackend({"alice": [MESSAGE]}), plain())
    response = base64.b64encode(b"\0alice\0" + PASSWORD.encode())
    assert driven.send(b"AUTH PLAIN " + response + b"\r\n").startswith(ONE)
    assert driven.calls == []

    # SCRAM keys are derived from the plain secret (4,096 rounds): a worker.
    driven = Driven(MemoryBackend({"alice": [MESSAGE]}), plain())
    first = base64.b64encode(b"n,,n=alice,r=abcdefghijklmnop")
    assert driven.send(b"AUTH SCRAM-SHA-256 " + first + b"\r\n").startswith(b"+ ")
    assert driven.calls == ["_login_check"]
    # A cancel asks nothing.
    assert driven.send(b"*\r\n").startswith(b"-ERR")
    assert driven.calls == ["_login_check"]


class Opener:
    """A backend with ``open()`` only: no ``try_open``."""

    def __init__(self) -> None:
        self.inner = MemoryBackend({"alice": [MESSAGE]})

    def open(self, user: str) -> object:
        return self.inner.open(user)


def test_a_backend_without_try_open_opens_in_a_worker() -> None:
    driven = Driven(Opener(), plain())
    assert login(driven).startswith(ONE)
    assert driven.calls == ["open_listed"]


def test_a_subclass_that_overrides_open_opens_in_a_worker() -> None:
    opened: list[str] = []

    class Noted(MemoryBackend):
        def open(self, user: str) -> object:  # type: ignore[override]
            opened.append(user)
            return super().open(user)

    backend = Noted({"alice": [MESSAGE]})
    assert backend.try_open("alice") is None
    driven = Driven(backend, plain())
    assert login(driven).startswith(ONE)
    assert driven.calls == ["open_listed"] and opened == ["alice"]


def test_try_open_may_refuse_and_fail_like_open() -> None:
    class Refusing(MemoryBackend):
        def __init__(self, error: Exception | None) -> None:
            super().__init__({"alice": [MESSAGE]})
            self.error = error

        def try_open(self, user: str) -> None:
            if self.error is not None:
                raise self.error
            return None

    driven = Driven(Refusing(MaildropInUse("busy")), plain())
    assert login(driven).startswith(b"-ERR [IN-USE]")
    assert driven.calls == []

    driven = Driven(Refusing(OSError("disk gone")), plain())
    assert login(driven).startswith(b"-ERR [SYS/TEMP]")

    # None: it would have to do more, so open() runs in a worker.
    driven = Driven(Refusing(None), plain())
    assert login(driven).startswith(ONE)
    assert driven.calls == ["open_listed"]


def test_an_abandoned_opening_is_closed() -> None:
    backend = Opener()
    session = ServerSession(backend, plain(), is_loopback=True, offload=True)  # type: ignore[arg-type]
    session.greeting()
    session.receive(b"USER alice\r\nPASS " + PASSWORD.encode() + b"\r\n")
    calls = [action for action in session.actions() if isinstance(action, Call)]
    [call] = calls
    assert call.discard is not None
    # The runtime made the call, but the connection was gone by then.
    opened = call.fn(*call.args)
    assert backend.inner.is_locked("alice")
    call.discard(opened)
    assert not backend.inner.is_locked("alice")
    # A refused opening (an -ERR to send) leaves nothing to close.
    held = backend.inner.open("alice")
    call.discard(UNABLE_TO_OPEN)
    assert backend.inner.is_locked("alice")
    held.close()


def test_an_identity_reaches_the_quick_opening() -> None:
    class Mapping(DictAuthenticator):
        def quick_credentials(self) -> frozenset[str]:
            return frozenset({"password"})

        def check_password(self, user: str, password: str) -> Identity:  # type: ignore[override]
            assert super().check_password(user, password)
            return Identity("box-7", login=user)

    backend = MemoryBackend({"box-7": [MESSAGE]})
    driven = Driven(backend, Mapping({"alice": PASSWORD}))
    assert login(driven).startswith(ONE)
    assert driven.calls == []
    assert backend.is_locked("box-7")


# ---------------------------------------------------------------------------
# Maildir: quick only when its listing can be reused
# ---------------------------------------------------------------------------


@pytest.fixture
def later(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if each login came a minute after the latest change: the
    directories count as settled (see tests/mailstore/test_maildir_listing.py)."""
    monkeypatch.setattr(maildir_module, "SETTLED_NS", -60_000_000_000)


def test_a_maildir_is_quick_once_listed(tmp_path: Path, later: None) -> None:
    make_maildir(tmp_path / "box", [MESSAGE, MESSAGE])
    backend = MaildirBackend(tmp_path / "box")
    assert backend.try_open("alice") is None  # never listed: a scan
    driven = Driven(backend, plain())
    assert login(driven).startswith(TWO)
    assert driven.calls == ["open_listed"]
    driven.send(b"QUIT\r\n")

    driven = Driven(backend, plain())
    assert login(driven).startswith(TWO)
    assert driven.calls == []
    # Locked: a second session is told at once, still on the loop.
    second = Driven(backend, plain())
    assert login(second).startswith(b"-ERR [IN-USE]")
    assert second.calls == []
    driven.send(b"QUIT\r\n")


def test_a_changed_maildir_is_listed_in_a_worker(tmp_path: Path, later: None) -> None:
    md, _ = make_maildir(tmp_path / "box", [MESSAGE])
    backend = MaildirBackend(tmp_path / "box")
    backend.open("alice").close()
    md.add(MESSAGE)
    assert backend.try_open("alice") is None
    # ... and the lock taken to look was let go.
    drop = backend.open("alice")
    assert len(drop.messages()) == 2
    drop.close()
    drop = backend.try_open("alice")  # type: ignore[assignment]
    assert drop is not None and len(drop.messages()) == 2
    drop.close()


def test_a_maildir_that_lost_its_lock_file_or_a_directory(tmp_path: Path, later: None) -> None:
    make_maildir(tmp_path / "box", [MESSAGE])
    backend = MaildirBackend(tmp_path / "box")
    backend.open("alice").close()
    lock = next(p for p in (tmp_path / "box").iterdir() if p.is_file())
    lock.unlink()
    assert backend.try_open("alice") is None
    backend.open("alice").close()  # recreates it
    (tmp_path / "box" / "cur").rename(tmp_path / "cur-gone")
    assert backend.try_open("alice") is None
    drop = backend.open("alice")  # recreates cur/ (create=True)
    assert drop.messages()
    drop.close()


def test_a_maildir_subclass_that_overrides_open_is_never_quick(tmp_path: Path, later: None) -> None:
    class Noted(MaildirBackend):
        def open(self, user: str) -> maildir_module.MaildirMaildrop:
            return super().open(user)

    make_maildir(tmp_path / "box", [MESSAGE])
    backend = Noted(tmp_path / "box")
    backend.open("alice").close()
    assert backend.try_open("alice") is None

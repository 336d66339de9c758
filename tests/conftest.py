"""Shared pytest configuration: Hypothesis profiles and TLS fixtures.

The TLS fixtures give the socket tests one throw-away CA (``trustme``) per
run: ``server_context`` holds a certificate for ``localhost`` and
``127.0.0.1``, ``client_context`` trusts it.

Two Hypothesis profiles are registered:

* ``ci`` (the default): about 100 examples per property and no deadline, so
  that the whole property/lockstep suite stays well under a minute on a
  2-core machine.
* ``deep``: thousands of examples per property, for a long fuzzing run.

Pick one with the ``POP3PROTO_HYPOTHESIS_PROFILE`` environment variable::

    POP3PROTO_HYPOTHESIS_PROFILE=deep python -m pytest tests/fuzz/test_lockstep.py

Failed logins cost nothing in tests: the suite fails thousands of logins,
and the secure default (a 2 s delay that grows with each failure, SECURITY.md
"Authentication failures") would add hours.  An autouse fixture gives every
server and session made in-process a record of failures with no delay,
unless the test is marked ``@pytest.mark.auth_delay`` (the tests of the
delay itself).  ``ServerConfig``'s defaults stay the real ones; servers
started as a subprocess get ``--auth-failure-delay 0`` from their test.
"""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Iterator

import pytest
import trustme
from hypothesis import HealthCheck, settings

PROFILE_ENV_VAR = "POP3PROTO_HYPOTHESIS_PROFILE"

settings.register_profile(
    "ci",
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.register_profile(
    "deep",
    max_examples=5000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.load_profile(os.environ.get(PROFILE_ENV_VAR, "ci"))


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def server_context(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(ctx)
    return ctx


@pytest.fixture(scope="session")
def client_context(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "auth_delay: keep the real failed-login delay and penalties")


@pytest.fixture(autouse=True)
def _no_auth_delay(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if request.node.get_closest_marker("auth_delay") is not None:
        return
    from pop3proto.adapters.server import _base, _session
    from pop3proto.adapters.server._penalties import AuthPenalties

    def no_delay(config: object) -> AuthPenalties:
        return AuthPenalties(failure_delay=0, penalty_max=0)

    monkeypatch.setattr(_session, "penalties_for", no_delay)
    monkeypatch.setattr(_base, "penalties_for", no_delay)


@pytest.fixture(autouse=True)
def _restore_package_logger() -> Iterator[None]:
    """``pop3proto serve`` run in-process points the package logger at the
    ``sys.stderr`` of that moment, which pytest closes after the test; a
    server thread of a later test would then log into a closed file."""
    logger = logging.getLogger("pop3proto")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved[0], saved[1], saved[2]


# The real Dovecot of the interop tests, shared by every folder that needs it.
from tests.dovecot import dovecot_fixture, dovecot_mailbox_fixture  # noqa: E402, F401

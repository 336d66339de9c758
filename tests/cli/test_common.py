"""What the pop3proto commands share: exit codes, messages, signals (adapters/cli/_common.py)."""

from __future__ import annotations

import argparse
import signal
import socket
import ssl

import pytest

import pop3proto
from pop3proto.adapters.cli import _common
from pop3proto.adapters.cli._common import (
    CLIError,
    Terminated,
    describe_error,
    positive_float,
    positive_int,
    signals_raise,
)
from pop3proto.adapters.client._errors import (
    AuthenticationFailed,
    CommandFailed,
    ConnectionLost,
    InsecureAuthenticationRefused,
    TLSUnavailable,
)
from pop3proto.adapters.mailstore._destinations import StorageError

WHERE = "alice@pop.example.org:995"


def _certificate_error() -> ssl.SSLCertVerificationError:
    error = ssl.SSLCertVerificationError(1, "certificate verify failed")
    error.verify_message = "self-signed certificate"
    return error


def _tls_error() -> ssl.SSLError:
    # As the ssl module raises them: with the OpenSSL reason set.
    error = ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number")
    error.reason = "WRONG_VERSION_NUMBER"
    return error


@pytest.mark.parametrize(
    ("exc", "code", "message"),
    [
        (CLIError("bad option", 2), 2, "bad option"),
        (StorageError("cannot write the state file x: No space"), 7,
         "cannot write the state file x: No space"),
        (InsecureAuthenticationRefused("no"), 5,
         f"refusing to send the password over an unencrypted connection ({WHERE})"),
        (TLSUnavailable("no"), 5, f"the server does not offer STLS ({WHERE})"),
        (TLSUnavailable("no", response=pop3proto.Err("not now")), 5,
         f"the server refused STLS: -ERR not now ({WHERE})"),
        (AuthenticationFailed("PASS failed"), 3, f"authentication failed ({WHERE}): PASS failed"),
        (ConnectionLost("gone"), 4, f"connection lost ({WHERE}): gone"),
        (CommandFailed("RETR 1 failed"), 6, f"server error ({WHERE}): RETR 1 failed"),
        (_certificate_error(), 5,
         f"TLS certificate verification failed ({WHERE}): self-signed certificate"),
        (_tls_error(), 5, f"TLS error ({WHERE}): WRONG_VERSION_NUMBER"),
        (socket.gaierror(-2, "Name or service not known"), 4,
         f"cannot resolve the host name ({WHERE}): Name or service not known"),
        (TimeoutError(), 4, f"timed out ({WHERE})"),
        (ConnectionRefusedError(111, "Connection refused"), 4,
         f"connection failed ({WHERE}): Connection refused"),
        (OSError(101, "Network is unreachable"), 4,
         f"network error ({WHERE}): Network is unreachable"),
        (pop3proto.RemoteProtocolError("bad reply"), 6, f"protocol error ({WHERE}): bad reply"),
        (ValueError("odd"), 1, "ValueError: odd"),
    ],
)  # fmt: skip
def test_describe_error(exc: BaseException, code: int, message: str) -> None:
    """Each kind of failure has its exit code and a message that starts as shown."""
    got_code, got_message = describe_error(exc, WHERE)
    assert got_code == code
    assert got_message.startswith(message), got_message


def test_argument_types() -> None:
    """Timeouts are positive finite seconds and counts whole numbers >= 1."""
    assert positive_float("2.5") == 2.5
    for bad in ("x", "0", "-1", "nan", "inf"):
        with pytest.raises(argparse.ArgumentTypeError):
            positive_float(bad)
    assert positive_int("7") == 7
    for bad in ("0", "-1", "1.5", "\u0661"):
        with pytest.raises(argparse.ArgumentTypeError):
            positive_int(bad)


def test_signals_raise_whatever_was_inherited() -> None:
    """Inside the block SIGINT and SIGTERM raise even if ignored before; the old handlers return."""
    before = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with signals_raise(), pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
        with signals_raise(), pytest.raises(Terminated):
            signal.raise_signal(signal.SIGTERM)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
        with signals_raise(sigterm=False):
            assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
            assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)


def test_usage_error_and_one_line() -> None:
    """usage_error raises with exit code 2; one_line folds every line end."""
    with pytest.raises(CLIError) as info:
        _common.usage_error("--tls-key needs --tls-cert")
    assert info.value.code == 2
    assert _common.one_line(" a\n  b\r\nc ") == "a b c"

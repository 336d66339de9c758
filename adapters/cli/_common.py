"""What every ``pop3proto`` command shares: errors, exit codes, argument types.

The commands (:mod:`._serve`, :mod:`._fetch`, :mod:`._demo`) and the entry
point (:func:`pop3proto.adapters.cli.main`) all import from here and from
nothing above them, so that no command module imports another's parent.
The exit codes are listed in the docstring of :mod:`pop3proto.adapters.cli`.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import socket
import ssl
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any, Final, NoReturn

import pop3proto

from ..client._errors import (
    AuthenticationFailed,
    ConnectionLost,
    InsecureAuthenticationRefused,
    POP3Error,
    TLSUnavailable,
)
from ..mailstore._destinations import StorageError

__all__ = [
    "CLIError",
    "Terminated",
    "EXIT_OK",
    "EXIT_FAILURE",
    "EXIT_USAGE",
    "EXIT_AUTH",
    "EXIT_NETWORK",
    "EXIT_TLS",
    "EXIT_SERVER",
    "EXIT_LOCAL",
    "EXIT_INTERRUPTED",
    "EXIT_TERMINATED",
    "PROG",
    "describe_error",
    "one_line",
    "usage_error",
    "parse_address",
    "positive_float",
    "positive_int",
    "octet_count",
    "format_address",
    "signals_raise",
]

EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1
EXIT_USAGE: Final = 2
EXIT_AUTH: Final = 3
EXIT_NETWORK: Final = 4
EXIT_TLS: Final = 5
EXIT_SERVER: Final = 6
EXIT_LOCAL: Final = 7
EXIT_INTERRUPTED: Final = 130
EXIT_TERMINATED: Final = 143

PROG: Final = "pop3proto"


class CLIError(Exception):
    """A user-facing error: printed as one line, mapped to an exit code.

    Attributes:
        code: the process exit code (one of the ``EXIT_*`` constants).
    """

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message, code)
        self.code = code

    def __str__(self) -> str:
        return str(self.args[0])


class Terminated(BaseException):
    """SIGTERM arrived (raised from the signal handler, like KeyboardInterrupt)."""


def one_line(text: str) -> str:
    """*text* with every run of whitespace (line ends included) one space."""
    return " ".join(text.split())


def usage_error(message: str) -> NoReturn:
    """Raise a :class:`CLIError` with the usage exit code."""
    raise CLIError(message, EXIT_USAGE)


def describe_error(exc: BaseException, where: str = "") -> tuple[int, str]:
    """The exit code and one-line message for an error a command let escape.

    *where* names the peer (``"alice@pop.example.org:995"``) for messages
    about the connection.  Never includes a password: the client exceptions
    never hold one, and socket errors do not either.
    """
    at = f" ({where})" if where else ""
    if isinstance(exc, CLIError):
        return exc.code, str(exc)
    if isinstance(exc, StorageError):
        # Names the file already; the server has nothing to do with it.
        return EXIT_LOCAL, str(exc)
    if isinstance(exc, InsecureAuthenticationRefused):
        return EXIT_TLS, (
            f"refusing to send the password over an unencrypted connection{at}; use "
            "pop3s:// or STLS (the default), or add --insecure-auth if you accept the risk"
        )
    if isinstance(exc, TLSUnavailable):
        if exc.response is not None:
            what = f"the server refused STLS: -ERR {exc.text or ''}".rstrip()
        else:
            what = "the server does not offer STLS"
        return EXIT_TLS, f"{what}{at}; use pop3s:// for implicit TLS, or --no-tls"
    if isinstance(exc, AuthenticationFailed):
        return EXIT_AUTH, f"authentication failed{at}: {exc}"
    if isinstance(exc, ConnectionLost):
        return EXIT_NETWORK, f"connection lost{at}: {exc}"
    if isinstance(exc, POP3Error):
        return EXIT_SERVER, f"server error{at}: {exc}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = exc.verify_message or exc.reason or str(exc)
        return EXIT_TLS, (
            f"TLS certificate verification failed{at}: {reason} "
            "(use --cafile FILE to trust a private CA)"
        )
    if isinstance(exc, ssl.SSLError):
        return EXIT_TLS, f"TLS error{at}: {exc.reason or exc}"
    if isinstance(exc, socket.gaierror):
        return EXIT_NETWORK, f"cannot resolve the host name{at}: {exc.strerror or exc}"
    if isinstance(exc, TimeoutError):
        return EXIT_NETWORK, f"timed out{at}"
    if isinstance(exc, ConnectionError):
        return EXIT_NETWORK, f"connection failed{at}: {exc.strerror or exc}"
    if isinstance(exc, OSError):
        return EXIT_NETWORK, f"network error{at}: {exc.strerror or exc}"
    if isinstance(exc, pop3proto.ProtocolError):
        return EXIT_SERVER, f"protocol error{at}: {exc}"
    return EXIT_FAILURE, f"{type(exc).__name__}: {exc}"


# ---------------------------------------------------------------------------
# Signals
# ---------------------------------------------------------------------------


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


@contextlib.contextmanager
def signals_raise(*, sigterm: bool = True) -> Iterator[None]:
    """While the block runs, SIGINT raises :class:`KeyboardInterrupt` and
    (with *sigterm*) SIGTERM raises :class:`Terminated`, whatever handlers
    the process inherited; the previous handlers come back afterwards.

    A child started with SIGINT ignored (by a shell running it in the
    background, or by a CI runner) keeps it ignored: Python installs its
    KeyboardInterrupt handler only over the default action.  A command that
    stops on Ctrl-C must therefore set the handler itself.
    """
    wanted: dict[int, Callable[[int, FrameType | None], Any]] = {
        signal.SIGINT: signal.default_int_handler
    }
    if sigterm:
        wanted[signal.SIGTERM] = _raise_terminated
    previous = {signum: signal.signal(signum, handler) for signum, handler in wanted.items()}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            if handler is not None:  # None: set outside Python; leave ours
                signal.signal(signum, handler)


# ---------------------------------------------------------------------------
# Argument types
# ---------------------------------------------------------------------------


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPV6]:PORT`` -> ``(host, port)``; port 0 = any free port."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise argparse.ArgumentTypeError(f"put IPv6 addresses in brackets: [{host}]:{port_text}")
    if not (port_text.isascii() and port_text.isdigit()) or int(port_text) > 65535:
        raise argparse.ArgumentTypeError(f"invalid port {port_text!r} (0-65535)")
    return host, int(port_text)


def positive_float(text: str) -> float:
    """An argument type: a positive, finite number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text!r}")
    return value


def non_negative_float(text: str) -> float:
    """An argument type: a finite number of seconds >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of seconds >= 0, not {text!r}")
    return value


def positive_int(text: str) -> int:
    """An argument type: a whole number >= 1."""
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, not {text!r}")
    return int(text)


_UNITS: Final = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def octet_count(text: str) -> int:
    """An argument type: a size in octets, with an optional K, M or G
    suffix (powers of 1024): ``500000``, ``512K``, ``25M``."""
    number = text.strip().upper().removesuffix("B")
    unit = number[-1:] if number[-1:] in ("K", "M", "G") else ""
    digits = number[: len(number) - len(unit)]
    if not (digits.isascii() and digits.isdigit()) or int(digits) < 1:
        raise argparse.ArgumentTypeError(f"must be a size like 500000, 512K or 25M, not {text!r}")
    return int(digits) * _UNITS[unit]


def format_address(host: str, port: int) -> str:
    """``host:port``, with an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

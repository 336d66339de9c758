"""The connection options every client runner takes, decided once.

The blocking, asyncio and trio clients (and the ``poplib`` classes) share
the well-known ports and the rule that picks TLS: implicit TLS on port 995
(RFC 8314 §3), STLS on any other port (RFC 2595 §4), and plaintext only when
asked for.
"""

from __future__ import annotations

# Not typing.TYPE_CHECKING: the drop-in's import must not pay for typing
# (type checkers treat any name TYPE_CHECKING as true).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final, Literal

__all__ = ["TLSMode", "POP3_PORT", "POP3_SSL_PORT", "resolve_tls", "check_timeout"]

#: RFC 1939 §4 / RFC 8314 §3 well-known ports.
POP3_PORT: Final = 110
POP3_SSL_PORT: Final = 995

#: How a client secures its connection: ``"implicit"`` (TLS from the first
#: byte, RFC 8314 §3), ``"starttls"`` (upgrade with STLS and refuse to go on
#: without it) or ``"none"``.
if TYPE_CHECKING:
    TLSMode = Literal["implicit", "starttls", "none"]
else:

    def __getattr__(name: str) -> object:
        # TLSMode is built on first use: typing is not worth importing for
        # the poplib drop-in, which needs only the ports.
        if name != "TLSMode":
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        from typing import Literal

        globals()["TLSMode"] = mode = Literal["implicit", "starttls", "none"]
        return mode


def resolve_tls(tls: TLSMode | None, port: int | None) -> tuple[TLSMode, int]:
    """The clients' defaults: implicit TLS on 995, STLS elsewhere."""
    if tls is None:
        tls = "implicit" if port == POP3_SSL_PORT else "starttls"
    if tls not in ("implicit", "starttls", "none"):
        raise ValueError(f"tls must be 'implicit', 'starttls' or 'none', not {tls!r}")
    if port is None:
        port = POP3_SSL_PORT if tls == "implicit" else POP3_PORT
    return tls, port


def check_timeout(timeout: float | None) -> None:
    """Refuse a timeout that is not a positive number of seconds or ``None``
    (the async clients; the blocking one words it for sockets)."""
    if timeout is not None and not timeout > 0:
        raise ValueError("timeout must be positive or None")

"""``poplib`` command strings, as the engine needs them.

The ``poplib`` interface sends commands as strings (``pop._putcmd("RETR
1")``); :func:`parse_command` turns one into the engine event it stands
for, checking it the way the engine checks its own events (single-token
arguments, decimal message numbers, RFC 1939 §3) so that nothing malformed
is sent, and :func:`mask_command` hides the secrets in one for debug output
and error messages (the PASS argument, the APOP digest, SASL data).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import pop3proto

from ._errors import error_proto

__all__ = ["parse_command", "mask_command"]

_MASK: Final = "********"


def mask_command(line: str, sasl: bool) -> str:
    """*line* with secrets replaced, for debug output and error messages."""
    if sasl:
        return line if line == "*" else _MASK
    keyword, _, rest = line.partition(" ")
    upper = keyword.upper()
    if upper == "PASS":
        return f"{keyword} {_MASK}"
    if upper == "APOP":
        return f"{keyword} {rest.split(' ', 1)[0]} {_MASK}"
    if upper == "AUTH":
        mechanism, has_data, _ = rest.partition(" ")
        return f"{keyword} {mechanism}" + (f" {_MASK}" if has_data else "")
    return line


def parse_command(line: str, *, sasl: bool, multiline: bool) -> pop3proto.Event:
    """Turn a command string into the engine event it stands for.

    *sasl*: an AUTH exchange awaits the client's answer, so the line is a
    base64 response or ``*``; *multiline*: frame an unknown command's reply
    as multi-line (``_longcmd``).  Raises :class:`error_proto`, nothing sent.
    """
    if not isinstance(line, str):
        raise error_proto(f"-ERR commands are str, not {type(line).__name__}")
    if "\r" in line or "\n" in line or "\0" in line:
        # poplib would send the rest as a second command (injection).
        shown = mask_command(line, sasl)
        raise error_proto(f"-ERR CR, LF and NUL are not allowed in commands: {shown!r} (not sent)")
    if sasl:
        # RFC 5034 §4: while AUTH is in progress, lines are base64
        # responses, or "*" to cancel.
        if line == "*":
            return pop3proto.SaslCancel()
        try:
            return pop3proto.SaslResponse(pop3proto.sasl_b64decode(line.encode("ascii")))
        except (UnicodeEncodeError, ValueError):
            raise error_proto("-ERR invalid base64 in SASL response (not sent)") from None
    keyword, sep, rest = line.partition(" ")
    upper = keyword.upper()
    try:
        if upper == "PASS":
            # RFC 1939 §7: the argument is the rest of the line.
            return pop3proto.Pass(rest)
        args = rest.split(" ") if sep else []
        if any(not arg for arg in args):
            raise ValueError("empty argument (extra space)")
        count = len(args)
        simple = _NO_ARGUMENTS.get(upper)
        if simple is not None:
            _arity(upper, count, 0, 0)
            return simple()
        if upper == "USER":
            _arity(upper, count, 1, 1)
            return pop3proto.User(args[0])
        if upper == "APOP":
            _arity(upper, count, 2, 2)
            return pop3proto.Apop(args[0], args[1])
        if upper == "AUTH":
            _arity(upper, count, 1, 2)
            initial: bytes | None = None
            if count == 2:
                # RFC 5034 §4: "=" is an empty initial response.
                initial = b"" if args[1] == "=" else pop3proto.sasl_b64decode(args[1].encode())
            return pop3proto.Auth(args[0], initial)
        if upper in ("LIST", "UIDL"):
            _arity(upper, count, 0, 1)
            number = _message_number(args[0]) if count else None
            return pop3proto.List(number) if upper == "LIST" else pop3proto.Uidl(number)
        if upper in ("RETR", "DELE"):
            _arity(upper, count, 1, 1)
            n = _message_number(args[0])
            return pop3proto.Retr(n) if upper == "RETR" else pop3proto.Dele(n)
        if upper == "TOP":
            _arity(upper, count, 2, 2)
            return pop3proto.Top(_message_number(args[0]), _message_number(args[1], 0))
        if upper == "LANG":
            _arity(upper, count, 0, 1)
            return pop3proto.Lang(args[0] if count else None)
        return pop3proto.Extension(upper, tuple(args), multiline=multiline)
    except (pop3proto.LocalProtocolError, ValueError, UnicodeEncodeError) as exc:
        reason = str(exc) if not isinstance(exc, UnicodeEncodeError) else "not ASCII"
        shown = mask_command(line, sasl)
        raise error_proto(f"-ERR invalid command {shown!r}: {reason} (not sent)") from None


_NO_ARGUMENTS: Final[dict[str, Callable[[], pop3proto.Command]]] = {
    "STAT": pop3proto.Stat,
    "NOOP": pop3proto.Noop,
    "RSET": pop3proto.Rset,
    "QUIT": pop3proto.Quit,
    "CAPA": pop3proto.Capa,
    "STLS": pop3proto.Stls,
    "UTF8": pop3proto.Utf8,
}


def _arity(keyword: str, count: int, least: int, most: int) -> None:
    if not least <= count <= most:
        wanted = str(least) if least == most else f"{least} to {most}"
        raise ValueError(f"{keyword} takes {wanted} argument(s), got {count}")


def _message_number(text: str, minimum: int = 1) -> int:
    # RFC 1939 §3: decimal numbers.  int() would also take "+1", " 1", "1_0".
    if not (text.isascii() and text.isdigit()) or int(text) < minimum:
        raise ValueError(f"invalid number {text[:20]!r}")
    return int(text)

"""``poplib`` command strings, as the engine needs them.

The ``poplib`` interface sends commands as strings (``pop._putcmd("RETR
1")``); :func:`parse_command` turns one into the engine event it stands
for with the engine's own command grammar
(:func:`pop3proto.command_from_line`, the one a server reads commands
with), so that nothing malformed is sent, and :func:`mask_command` hides
the secrets in one for debug output and error messages (the PASS argument,
the APOP digest, SASL data).
"""

from __future__ import annotations

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
    try:
        event = pop3proto.command_from_line(line)
    except pop3proto.LocalProtocolError as exc:
        shown = mask_command(line, sasl)
        raise error_proto(f"-ERR invalid command {shown!r}: {exc} (not sent)") from None
    if multiline and isinstance(event, pop3proto.Extension):
        # _longcmd: frame an unknown command's reply as multi-line.
        return pop3proto.Extension(event.name, event.arguments, multiline=True)
    return event

"""The ``poplib`` compatibility classes: :class:`POP3` and :class:`POP3_SSL`.

They behave as the running Python's ``poplib``: the command the caller asks
for is sent and the server decides; a reply is accepted or refused by the
same rule (a status line starting with ``+`` is success, anything else
raises :class:`error_proto` holding the line); return values, exceptions,
private plumbing (``_putline``, ``_getresp``, ...) and signatures per Python
version are ``poplib``'s.  The deliberate differences, each refusing
something unsafe, are listed in the docstring of the public face,
:mod:`pop3proto.adapters.sync`.

Multi-line replies are read in bulk by :mod:`._poplib_body` (same results,
one ``recv`` per buffer instead of one Python loop per line; a reply that
one ``recv`` brought whole, status line included, in one pass with no
search for its terminator) unless a subclass hooks the line plumbing or
debugging prints every line.

``_MAXLINE`` is read at call time from this module; the public face
forwards ``poplib._MAXLINE = ...`` here.  :mod:`ssl` is imported on first
use, so that importing the drop-in stays cheap.
"""

from __future__ import annotations

import errno
import re
import socket
import sys
from collections.abc import Callable

from ._errors import error_proto
from ._options import POP3_PORT, POP3_SSL_PORT
from ._poplib_body import read_lines, read_reply

# Not typing.TYPE_CHECKING: the drop-in's import must not pay for typing
# (type checkers treat any name TYPE_CHECKING as true).
TYPE_CHECKING = False
if TYPE_CHECKING:
    import ssl
    from typing import Any, Final

__all__ = [
    "POP3",
    "POP3_SSL",
    "error_proto",
    "POP3_PORT",
    "POP3_SSL_PORT",
    "CR",
    "LF",
    "CRLF",
    "HAVE_SSL",
    "_MAXLINE",
]

CR: Final = b"\r"
LF: Final = b"\n"
CRLF: Final = CR + LF

#: The longest line accepted, in octets with its line end; read at call time,
#: so code may change it (``poplib._MAXLINE = 100_000`` is a common fix for
#: servers that send long body lines).
_MAXLINE = 2048

#: As in ``poplib``: whether :mod:`ssl` is available (it is imported lazily).
HAVE_SSL: bool
try:
    import _ssl  # noqa: F401 - the C module: cheap, and what ssl needs
except ImportError:  # pragma: no cover - Python built without OpenSSL
    HAVE_SSL = False
else:
    HAVE_SSL = True

# socket.create_connection's "use the global default" marker (not in typeshed).
_GLOBAL_DEFAULT_TIMEOUT: Any = vars(socket)["_GLOBAL_DEFAULT_TIMEOUT"]

# Python 3.10 and 3.11 still take keyfile/certfile (deprecated); 3.12 removed them.
_KEYFILE_ARGS: Final = sys.version_info < (3, 12)

# The methods that read lines; the bulk reader is used only when none is
# overridden, so that a subclass watching lines sees every one.
_PLUMBING: Final = ("_getline", "_getresp")
_plain_classes: dict[type, bool] = {}


def _plain_plumbing(cls: type) -> bool:
    plain = _plain_classes.get(cls)
    if plain is None:
        plain = all(getattr(cls, name) is getattr(POP3, name) for name in _PLUMBING)
        _plain_classes[cls] = plain
    return plain


_MASK: Final = "********"


def _mask(line: str, sasl: bool) -> str:
    """*line* with its secret hidden, for debug output and error messages:
    the PASS argument, the APOP digest, an AUTH initial response, and any
    line answering a SASL challenge."""
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


def _unverified_context(**files: Any) -> ssl.SSLContext:
    """``poplib``'s default context: no certificate verification."""
    import ssl

    return ssl._create_unverified_context(**files)


# "list" is a method name below; these keep annotations unambiguous.
_Lines = list[bytes]
_Capa = dict[str, list[str]]
_LongResp = tuple[bytes, _Lines, int]


class POP3:
    """A POP3 client session, with the interface of ``poplib.POP3``.

    ``POP3(host, port=110, timeout=...)`` connects and reads the greeting.
    Methods return the server's status line as bytes (``b"+OK ..."``) or,
    for multi-line replies, ``(status, [lines], octets)``; a reply that does
    not start with ``+`` raises :class:`error_proto` holding the line.
    Whatever the caller asks is sent (``retr("foo")`` sends ``RETR foo``);
    the server decides.  The docstring of :mod:`pop3proto.adapters.sync`
    lists the few differences from the standard library.

    Attributes, as in ``poplib``: ``host``, ``port``, ``sock`` (the socket),
    ``file`` (``sock.makefile("rb")``, from which replies are read),
    ``welcome`` (the greeting line) and ``encoding``.
    """

    encoding = "UTF-8"
    #: The greeting-timestamp pattern :meth:`apop` uses (any ``<...>``).
    timestamp = re.compile(rb"\+OK.[^<]*(<.*>)")

    def __init__(
        self, host: str, port: int = POP3_PORT, timeout: Any = _GLOBAL_DEFAULT_TIMEOUT
    ) -> None:
        self.host = host
        self.port = port
        self._tls_established = False
        # The last reply was a SASL challenge ("+ ..."): the next line sent
        # answers it and is masked in debug output.
        self._sasl_owed = False
        # Set when a response injection was seen after STLS: nothing more
        # may be sent on this connection (credentials would go in clear).
        self._injected = False
        sys.audit("poplib.connect", self, host, port)
        self.sock: Any = self._create_socket(timeout)
        self.file: Any = self.sock.makefile("rb")
        self._debugging = 0
        try:
            self.welcome = self._getresp()
        except BaseException:
            # poplib leaks the socket here (a ResourceWarning); nobody else
            # can close it.
            self.close()
            raise

    def _create_socket(self, timeout: Any) -> socket.socket:
        if timeout is not None and not timeout:
            raise ValueError("Non-blocking socket (timeout=0) is not supported")
        return socket.create_connection((self.host, self.port), timeout)

    # ------------------------------------------------------------------
    # Sending
    # ------------------------------------------------------------------

    def _putline(self, line: bytes) -> None:
        """Send one line (CRLF is added).

        Raises :class:`error_proto` without sending anything if *line*
        holds CR, LF or NUL (``poplib`` would send two commands).
        """
        sasl = self._sasl_owed
        self._sasl_owed = False
        if self._debugging > 1:
            print("*put*", repr(self._shown(line, sasl).encode(self.encoding, "replace")))
        if self._injected:
            raise error_proto("-ERR connection unusable after a possible STLS response injection")
        # CR or LF would end the command early and send the rest as a second
        # command (command injection through an argument); NUL is refused
        # by servers.  (Three tests inline: this runs for every command.)
        if b"\r" in line or b"\n" in line or b"\0" in line:
            shown = self._shown(line, sasl)
            raise error_proto(
                f"-ERR CR, LF and NUL are not allowed in commands: {shown!r} (not sent)"
            )
        sys.audit("poplib.putline", self, line)
        self.sock.sendall(line + CRLF)

    def _putcmd(self, line: str) -> None:
        """Send one command (a str such as ``"RETR 1"``)."""
        if self._debugging:
            print("*cmd*", repr(_mask(line, self._sasl_owed)))
        self._putline(bytes(line, self.encoding))

    def _shown(self, line: bytes, sasl: bool) -> str:
        return _mask(line.decode(self.encoding, "replace"), sasl)

    # ------------------------------------------------------------------
    # Receiving
    # ------------------------------------------------------------------

    def _getline(self) -> tuple[bytes, int]:
        """Read one line; return it without its line end, and its length
        on the wire.  Lines over ``_MAXLINE`` octets and EOF raise."""
        line: bytes = self.file.readline(_MAXLINE + 1)
        if len(line) > _MAXLINE:
            raise error_proto("line too long")
        if self._debugging > 1:
            print("*get*", repr(line))
        if not line:
            raise error_proto("-ERR EOF")
        octets = len(line)
        if line[-2:] == CRLF:
            return line[:-2], octets
        if line[:1] == CR:
            return line[1:-1], octets
        return line[:-1], octets

    def _getresp(self) -> bytes:
        """Read a status line; return it if it starts with ``+``, else raise
        :class:`error_proto` holding it."""
        resp, _ = self._getline()
        if self._debugging > 1:
            print("*resp*", repr(resp))
        if not resp.startswith(b"+"):
            raise error_proto(resp)
        # RFC 5034 §4: "+ " (or a bare "+") is a SASL challenge.
        self._sasl_owed = resp[:2] == b"+ " or resp == b"+"
        return resp

    def _getlongresp(self) -> _LongResp:
        """Read a multi-line reply: ``(status line, lines, octets)``."""
        if self._debugging < 2 and _plain_plumbing(type(self)):
            whole = read_reply(self.file, _MAXLINE)
            if whole is not None:
                resp = whole[0]
                # As _getresp: RFC 5034 §4, "+ " (or a bare "+") is a challenge.
                self._sasl_owed = resp[:2] == b"+ " or resp == b"+"
                return whole
            resp = self._getresp()
            lines, octets = read_lines(self.file, _MAXLINE)
            return resp, lines, octets
        resp = self._getresp()
        lines = []
        octets = 0
        line, o = self._getline()
        while line != b".":
            if line.startswith(b".."):
                o -= 1
                line = line[1:]
            octets += o
            lines.append(line)
            line, o = self._getline()
        return resp, lines, octets

    def _shortcmd(self, line: str) -> bytes:
        """Send a command, return its status line."""
        self._putcmd(line)
        return self._getresp()

    def _longcmd(self, line: str) -> _LongResp:
        """Send a command, return its multi-line reply."""
        self._putcmd(line)
        return self._getlongresp()

    # ------------------------------------------------------------------
    # The poplib interface
    # ------------------------------------------------------------------

    def getwelcome(self) -> bytes:
        """The server's greeting line."""
        return self.welcome

    def set_debuglevel(self, level: int) -> None:
        """Print commands (level 1) and every line (level 2) to stdout."""
        self._debugging = level

    def user(self, user: str) -> bytes:
        """USER (RFC 1939 §7): send the user name; return the response."""
        return self._shortcmd(f"USER {user}")

    def pass_(self, pswd: str) -> bytes:
        """PASS (RFC 1939 §7): send the password; return the response.

        The maildrop is locked from here until :meth:`quit`.
        """
        return self._shortcmd(f"PASS {pswd}")

    def auth(
        self,
        mechanism: str,
        authobject: Callable[[bytes], bytes | str | None] | None = None,
        initial_response: bytes | str | None = None,
    ) -> bytes:
        """AUTH (RFC 5034): an addition (``poplib`` has no ``auth()``),
        with the interface of ``smtplib.SMTP.auth``'s callback style.

        With *initial_response* it goes on the AUTH line (base64-encoded
        here).  With *authobject*, each server challenge (``+ base64``,
        decoded) is passed to it and its answer (bytes or str; ``None`` is
        empty, ``b"*"`` cancels) is sent back, until the server says ``+OK``
        or ``-ERR``.  Returns the final ``+OK`` line; ``-ERR`` raises
        :class:`error_proto`.
        """
        import binascii

        if authobject is not None and initial_response is not None:
            raise ValueError("authobject and initial_response are mutually exclusive")
        if initial_response is not None:
            if isinstance(initial_response, str):
                initial_response = initial_response.encode(self.encoding)
            # RFC 5034 §4: an empty initial response is sent as "=".
            encoded = binascii.b2a_base64(initial_response, newline=False).decode() or "="
            return self._shortcmd(f"AUTH {mechanism} {encoded}")
        resp = self._shortcmd(f"AUTH {mechanism}")
        if authobject is None:
            return resp
        while resp[:2] == b"+ " or resp == b"+":
            try:
                challenge = binascii.a2b_base64(resp[2:])
            except binascii.Error:
                raise error_proto(f"-ERR invalid base64 in challenge: {resp!r}") from None
            answer = authobject(challenge)
            if answer is None:
                answer = b""
            if isinstance(answer, str):
                answer = answer.encode(self.encoding)
            if answer == b"*":
                return self._shortcmd("*")
            resp = self._shortcmd(binascii.b2a_base64(answer, newline=False).decode())
        return resp

    def stat(self) -> tuple[int, int]:
        """STAT (RFC 1939 §5): ``(message count, mailbox size)``."""
        retval = self._shortcmd("STAT")
        rets = retval.split()
        if self._debugging:
            print("*stat*", repr(rets))
        return int(rets[1]), int(rets[2])

    def list(self, which: Any = None) -> Any:
        """LIST (RFC 1939 §5).

        Without *which*: ``(status, [b"msg octets", ...], octets)``; with a
        message number: that message's status line ``b"+OK msg octets"``.
        """
        if which is not None:
            return self._shortcmd(f"LIST {which}")
        return self._longcmd("LIST")

    def retr(self, which: Any) -> _LongResp:
        """RETR (RFC 1939 §5): ``(status, [lines], octets)`` of a message."""
        return self._longcmd(f"RETR {which}")

    def dele(self, which: Any) -> bytes:
        """DELE (RFC 1939 §5): mark a message deleted."""
        return self._shortcmd(f"DELE {which}")

    def noop(self) -> bytes:
        """NOOP (RFC 1939 §5)."""
        return self._shortcmd("NOOP")

    def rset(self) -> bytes:
        """RSET (RFC 1939 §5): unmark all messages marked deleted."""
        return self._shortcmd("RSET")

    def quit(self) -> bytes:
        """QUIT (RFC 1939 §6): commit deletions, unlock, close the connection."""
        resp = self._shortcmd("QUIT")
        self.close()
        return resp

    def close(self) -> None:
        """Close the connection without sending anything."""
        try:
            file = self.file
            self.file = None
            if file is not None:
                file.close()
        finally:
            sock = self.sock
            self.sock = None
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError as exc:
                    # The server may have closed first; Windows says
                    # WSAEINVAL (10022) for that.
                    if exc.errno != errno.ENOTCONN and getattr(exc, "winerror", 0) != 10022:
                        raise
                finally:
                    sock.close()

    def rpop(self, user: str) -> bytes:
        """RPOP (RFC 1081, obsolete): send the command; return the response."""
        return self._shortcmd(f"RPOP {user}")

    def apop(self, user: str, password: str) -> bytes:
        """APOP (RFC 1939 §7): log in with MD5(timestamp + password).

        The timestamp is the greeting's ``<...>`` (any, as in ``poplib``);
        without one, raises :class:`error_proto` ("-ERR APOP not supported
        by server").
        """
        secret = bytes(password, self.encoding)
        match = self.timestamp.match(self.welcome)
        if not match:
            raise error_proto("-ERR APOP not supported by server")
        import hashlib

        digest = hashlib.md5(match.group(1) + secret).hexdigest()
        return self._shortcmd(f"APOP {user} {digest}")

    def top(self, which: Any, howmuch: Any) -> _LongResp:
        """TOP (RFC 1939 §7): headers and the first *howmuch* body lines."""
        return self._longcmd(f"TOP {which} {howmuch}")

    def uidl(self, which: Any = None) -> Any:
        """UIDL (RFC 1939 §7).

        Without *which*: ``(status, [b"msg uid", ...], octets)``; with a
        message number: the status line ``b"+OK msg uid"``.
        """
        if which is not None:
            return self._shortcmd(f"UIDL {which}")
        return self._longcmd("UIDL")

    def utf8(self) -> bytes:
        """UTF8 (RFC 6856 §2): try to enter UTF-8 mode; return the response."""
        return self._shortcmd("UTF8")

    def capa(self) -> _Capa:
        """CAPA (RFC 2449 §5): ``{tag: [parameters]}``.

        Raises :class:`error_proto` ("-ERR CAPA not supported by server") on
        any error, as ``poplib`` does.
        """
        caps: _Capa = {}
        try:
            _, rawcaps, _ = self._longcmd("CAPA")
            for capline in rawcaps:
                words = capline.decode("ascii").split()
                caps[words[0]] = words[1:]
        except error_proto:
            raise error_proto("-ERR CAPA not supported by server")  # noqa: B904 - as poplib
        return caps

    def stls(self, context: ssl.SSLContext | None = None) -> bytes:
        """STLS (RFC 2595 §4): start TLS on this connection.

        Without *context* the server certificate is not verified, as in
        ``poplib``; pass ``ssl.create_default_context()`` to verify it.
        Bytes received after the ``+OK`` and before the handshake raise
        :class:`error_proto` (RFC 2595 §4 response injection).
        """
        if not HAVE_SSL:  # pragma: no cover - Python built without OpenSSL
            raise error_proto("-ERR TLS support missing")
        if self._tls_established:
            raise error_proto("-ERR TLS session already established")
        caps = self.capa()
        if "STLS" not in caps:
            raise error_proto("-ERR STLS not supported by server")
        if context is None:
            context = _unverified_context()
        resp = self._shortcmd("STLS")
        self._check_nothing_buffered()
        self.sock = context.wrap_socket(self.sock, server_hostname=self.host)
        self.file = self.sock.makefile("rb")
        self._tls_established = True
        return resp

    def _check_nothing_buffered(self) -> None:
        # RFC 2595 §4: after +OK the server sends nothing until TLS is up;
        # bytes already here were injected by someone on the path (poplib
        # silently drops them and would read them as plaintext replies).
        # Look at what the reader buffered and what the kernel holds,
        # without blocking.
        timeout = self.sock.gettimeout()
        self.sock.settimeout(0)
        try:
            extra = self.file.peek(1)
        except OSError:  # pragma: no cover - a reset racing the peek; the handshake reports it
            extra = b""
        finally:
            self.sock.settimeout(timeout)
        if extra:
            self._injected = True
            raise error_proto(
                "-ERR data followed +OK to STLS before TLS started: possible response injection"
            )


class POP3_SSL(POP3):
    """``POP3`` over implicit TLS (RFC 8314 §3), port 995 by default.

    Signature as the running Python's ``poplib``: ``POP3_SSL(host,
    port=995, *, timeout=..., context=None)`` on 3.12+; on 3.10 and 3.11
    also ``keyfile`` and ``certfile`` (deprecated, positional after
    *port*).  Without *context* the certificate is not verified (as in
    ``poplib``); pass ``ssl.create_default_context()``.
    """

    def __init__(self, host: str, port: int = POP3_SSL_PORT, *args: Any, **kwargs: Any) -> None:
        timeout, context = self._arguments(args, kwargs)
        if context is None:
            context = _unverified_context(
                certfile=getattr(self, "certfile", None), keyfile=getattr(self, "keyfile", None)
            )
        self.context = context
        super().__init__(host, port, timeout)

    def _arguments(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any]:
        # The signature of the running Python's poplib.POP3_SSL, checked here
        # so that the errors are Python's own.
        if _KEYFILE_ARGS:

            def bind(
                keyfile: Any = None,
                certfile: Any = None,
                timeout: Any = _GLOBAL_DEFAULT_TIMEOUT,
                context: Any = None,
            ) -> tuple[Any, Any]:
                if context is not None and keyfile is not None:
                    raise ValueError("context and keyfile arguments are mutually exclusive")
                if context is not None and certfile is not None:
                    raise ValueError("context and certfile arguments are mutually exclusive")
                if keyfile is not None or certfile is not None:
                    import warnings

                    warnings.warn(
                        "keyfile and certfile are deprecated, use a custom context instead",
                        DeprecationWarning,
                        3,
                    )
                self.keyfile = keyfile
                self.certfile = certfile
                return timeout, context

            return bind(*args, **kwargs)

        def bind_new(
            *, timeout: Any = _GLOBAL_DEFAULT_TIMEOUT, context: Any = None
        ) -> tuple[Any, Any]:
            return timeout, context

        return bind_new(*args, **kwargs)

    def _create_socket(self, timeout: Any) -> socket.socket:
        sock = super()._create_socket(timeout)
        wrapped: socket.socket = self.context.wrap_socket(sock, server_hostname=self.host)
        return wrapped

    def stls(self, *args: Any, **kwargs: Any) -> Any:
        """Always raises: TLS is already active."""
        raise error_proto("-ERR TLS session already established")

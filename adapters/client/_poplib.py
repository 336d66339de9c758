"""The ``poplib`` compatibility classes: :class:`POP3` and :class:`POP3_SSL`.

They keep the standard library's interface (and its private plumbing, which
code subclasses and calls) while the pop3proto engine parses every reply;
the deliberate differences are listed in the docstring of the public face,
:mod:`pop3proto.adapters.sync`, which re-exports these names.  Command
strings are parsed and masked by :mod:`._poplib_commands`.

``_MAXLINE`` is read at call time from this module; the public face
forwards ``poplib._MAXLINE = ...`` here.
"""

from __future__ import annotations

import errno
import re
import socket
import ssl
import sys
from collections.abc import Callable
from typing import Any, Final, NoReturn

import pop3proto
from pop3proto import State

from ._errors import error_proto
from ._options import POP3_PORT, POP3_SSL_PORT
from ._poplib_commands import mask_command, parse_command

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
#: servers that send long body lines).  RFC 1939 §3 limits only status lines.
_MAXLINE = 2048

HAVE_SSL: Final = True

# socket.create_connection's "use the global default" marker (not in typeshed).
_GLOBAL_DEFAULT_TIMEOUT: Any = vars(socket)["_GLOBAL_DEFAULT_TIMEOUT"]

# Engine options for the drop-in: as lenient as poplib where security does
# not suffer.  A lone LF ends lines (poplib accepts it); commands have no
# length limit (poplib has none and XOAUTH2 lines sent with _shortcmd are
# long); a second command may be sent before reading a reply (poplib never
# does it itself, but code calling _putcmd twice may); CAPA may come between
# USER and PASS.
_COMPAT_ENGINE_OPTIONS: Final[dict[str, Any]] = {
    "bare_lf": True,
    "strict_user": False,
    "allow_unadvertised_pipelining": True,
    "max_command_size": 1 << 20,
    "max_status_size": 1 << 20,
}


def _split_body(body: bytes) -> list[bytes]:
    """Message octets -> lines without their line ends (LF or CRLF)."""
    if not body:
        return []
    if body.endswith(b"\r\n"):
        lines = body.split(b"\r\n")
        # Every LF ended a CRLF (the usual case): one C-level split did it.
        if body.count(b"\n") == len(lines) - 1:
            lines.pop()  # the empty string after the last CRLF
            return lines
    lines = body[:-1].split(b"\n") if body.endswith(b"\n") else body.split(b"\n")
    return [line[:-1] if line.endswith(b"\r") else line for line in lines]


# The methods a subclass may override to watch or change what goes over
# the wire (as with poplib); retr() takes its shortcut only when none is.
_PLUMBING = ("_putline", "_putcmd", "_longcmd", "_getline", "_getresp", "_getlongresp")
_plain_classes: dict[type, bool] = {}


def _plain_plumbing(cls: type) -> bool:
    plain = _plain_classes.get(cls)
    if plain is None:
        plain = all(getattr(cls, name) is getattr(POP3, name) for name in _PLUMBING)
        _plain_classes[cls] = plain
    return plain


# "list" is a method name below; these keep annotations unambiguous.
_Lines = list[bytes]
_Capa = dict[str, list[str]]
_LongResp = tuple[bytes, _Lines, int]

_BLOCK_EVENTS = (pop3proto.ListOk, pop3proto.UidlOk, pop3proto.CapaOk, pop3proto.LangOk)


class POP3:
    """A POP3 client session, with the interface of ``poplib.POP3``.

    ``POP3(host, port=110, timeout=...)`` connects and reads the greeting.
    Methods return the server's status line as bytes (``b"+OK ..."``) or,
    for multi-line replies, ``(status, [lines], octets)``; a ``-ERR`` raises
    :class:`error_proto` holding the ``-ERR`` line.  Message numbers may be
    given as ints or decimal strings.  The docstring of
    :mod:`pop3proto.adapters.sync` says where this differs from the standard
    library (RFC dot-unstuffing, validation of arguments, errors instead of
    known ``poplib`` bugs).

    Attributes code may use, as in ``poplib``: ``host``, ``port``,
    ``sock`` (the socket), ``file`` (``sock.makefile("rb")``, from which
    replies are read), ``welcome`` (the greeting line) and ``encoding``.
    """

    encoding = "UTF-8"
    #: The ``poplib`` greeting-timestamp pattern, kept for code that uses
    #: it; :meth:`apop` itself uses the engine's stricter parser.
    timestamp = re.compile(rb"\+OK.[^<]*(<.*>)")

    _implicit_tls = False

    def __init__(
        self, host: str, port: int = POP3_PORT, timeout: Any = _GLOBAL_DEFAULT_TIMEOUT
    ) -> None:
        self.host = host
        self.port = port
        self._tls_established = False
        self._conn = pop3proto.Connection(
            pop3proto.CLIENT, tls=self._implicit_tls, **_COMPAT_ENGINE_OPTIONS
        )
        self._sasl_owed = False
        self._multiline = False
        self._registered: bytes | None = None
        self._shown: str | None = None
        self._last_event: pop3proto.Event | None = None
        # The status line of the oldest unanswered multi-line reply was
        # returned; its lines have not been read yet.
        self._status_done = False
        sys.audit("poplib.connect", self, host, port)
        self.sock: Any = self._create_socket(timeout)
        self.file: Any = self.sock.makefile("rb")
        self._debugging = 0
        try:
            self.welcome = self._getresp()
        except BaseException:
            # poplib leaks the socket here; nothing else can close it.
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
        """Send one command line (CRLF is added), through the engine."""
        if self._debugging > 1:
            shown = self._shown
            if shown is None or self._registered is not line:
                shown = mask_command(line.decode(self.encoding, "replace"), self._sasl_owed)
            print("*put*", repr(shown.encode(self.encoding, "replace")))
        sys.audit("poplib.putline", self, line)
        if self._registered is not line:
            # Called directly, not from _putcmd: the engine must still know
            # what was sent, or it could not frame the reply.
            try:
                text = line.decode(self.encoding)
            except UnicodeDecodeError:
                raise error_proto("-ERR command is not valid UTF-8 (not sent)") from None
            line = self._register(text)
        try:
            self.sock.sendall(line + CRLF)
        except BaseException:
            # Part of the line may be out: the session is out of step.
            self._conn.send_failed()
            raise

    def _putcmd(self, line: str) -> None:
        """Send one command (a str such as ``"RETR 1"``)."""
        # Masked before registering: that may end the SASL exchange whose
        # lines must be hidden.
        shown = None
        if self._debugging:
            shown = mask_command(line, self._sasl_owed)
            print("*cmd*", repr(shown))
        wire = self._register(line)
        self._registered = wire
        self._shown = shown
        try:
            self._putline(wire)
        finally:
            self._registered = None
            self._shown = None

    def _register(self, line: str) -> bytes:
        """Validate *line* as a command, tell the engine, return its wire
        form without CRLF.  Raises :class:`error_proto` and sends nothing if
        the command is malformed or not allowed now."""
        sasl = self._sasl_owed
        event = self._parse_command(line)
        conn = self._conn
        if conn.state is State.ERROR:
            raise error_proto("-ERR the connection is unusable after an earlier protocol error")
        if conn.state is State.CLOSED:
            raise error_proto("-ERR the connection is closed")
        if isinstance(event, pop3proto.Command):
            keyword = event.name if isinstance(event, pop3proto.Extension) else event.keyword
            if conn.outstanding and isinstance(
                conn.outstanding[-1], (pop3proto.Stls, pop3proto.Auth, pop3proto.Quit)
            ):
                shown = mask_command(line, sasl)
                raise error_proto(f"-ERR read the reply to the last command first: {shown!r}")
            self._check_command(event)
            if not conn.can_send(event):
                raise error_proto(
                    f"-ERR {keyword} is not allowed in the {conn.state.name} state "
                    "(command not sent)"
                )
        try:
            wire = conn.send(event)
        except pop3proto.LocalProtocolError as exc:  # pragma: no cover - checked above
            # The checks above mirror every refusal of the engine (which would
            # leave it in ERROR); kept so that one it adds is never raw.
            raise error_proto(f"-ERR {exc} (command not sent)") from None
        if isinstance(event, (pop3proto.SaslResponse, pop3proto.SaslCancel)):
            self._sasl_owed = False
        return wire[:-2]

    def _check_command(self, event: pop3proto.Command) -> None:
        # What the engine would refuse for the session state (refusing puts
        # it in ERROR), checked first so that error_proto leaves it usable.
        conn = self._conn
        if isinstance(event, pop3proto.Stls) and (conn.tls or conn.utf8):
            raise error_proto(
                "-ERR STLS is not allowed "
                + ("on a TLS connection" if conn.tls else "after UTF8 (RFC 6856 §2.1)")
            )
        if isinstance(event, pop3proto.Apop):
            greeting = conn.greeting
            if greeting is None or greeting.timestamp is None:
                raise error_proto("-ERR APOP not supported by server")
        if isinstance(event, (pop3proto.User, pop3proto.Pass, pop3proto.Apop)):
            value = event.password if isinstance(event, pop3proto.Pass) else event.name
            caps = conn.capabilities
            if not value.isascii() and not (conn.utf8 or (caps is not None and caps.utf8_user)):
                raise error_proto(
                    "-ERR non-ASCII user names and passwords need UTF8 mode (utf8()) or a "
                    "server advertising 'UTF8 USER' (RFC 6856 §2.2); not sent"
                )

    def _parse_command(self, line: str) -> pop3proto.Event:
        """Turn a command string into the engine event it stands for."""
        return parse_command(line, sasl=self._sasl_owed, multiline=self._multiline)

    # ------------------------------------------------------------------
    # Receiving
    # ------------------------------------------------------------------

    def _getline(self) -> tuple[bytes, int]:
        """Read one line (as ``poplib`` does) and feed it to the engine;
        return it without its line end, and its length on the wire."""
        line = self.file.readline(_MAXLINE + 1)
        if line:
            # Even a line about to be refused as too long: the engine must
            # stay in step with what was read from the stream.
            self._conn.receive_data(line)
        if len(line) > _MAXLINE:
            raise error_proto("line too long")
        if self._debugging > 1:
            print("*get*", repr(line))
        if not line:
            self._conn.receive_data(b"")
            raise error_proto("-ERR EOF")
        octets = len(line)
        if line[-2:] == CRLF:
            return line[:-2], octets
        return line[:-1] if line[-1:] == LF else line, octets

    def _read_chunk(self) -> None:
        """Read what the socket has (up to 64 KiB) and feed it to the engine."""
        data = self.file.read1(65536)
        self._conn.receive_data(data)
        if self._debugging > 1:
            print("*get*", repr(data[:80]) + ("..." if len(data) > 80 else ""))
        if not data:
            raise error_proto("-ERR EOF")

    def _pull(self) -> pop3proto.Event | None:
        """The next engine event, or ``None`` if more input is needed."""
        try:
            event = self._conn.next_event()
        except pop3proto.RemoteProtocolError as exc:
            raise error_proto(f"-ERR malformed reply from server: {exc}") from None
        if event is pop3proto.NEED_DATA or event is pop3proto.PAUSED:
            return None
        assert isinstance(event, pop3proto.Event)
        return event

    def _skip_unread(self) -> None:
        """Read and drop the rest of a multi-line reply whose status line was
        returned but whose lines nobody read (``_shortcmd("LIST")``), so
        that the next status line really is the next reply; ``poplib``
        would return the listing's lines as replies instead."""
        if not self._status_done:
            return
        conn = self._conn
        target = len(conn.outstanding) - 1
        while len(conn.outstanding) > target and conn.state is not State.CLOSED:
            if self._pull() is None:
                self._getline()
        self._status_done = False

    def _getresp(self) -> bytes:
        """Read a status line; return it, or raise :class:`error_proto` for
        ``-ERR`` (holding the line) and for anything that is not a valid
        reply to the command sent."""
        self._skip_unread()
        while True:
            resp, octets = self._getline()
            if self._debugging > 1:
                print("*resp*", repr(resp))
            event = self._pull()
            if event is None:
                if octets > len(resp):
                    # Fed one whole line and got no event: it was the +OK
                    # that opens a listing (LIST, UIDL, CAPA, LANG), which
                    # the engine reports once complete.
                    self._status_done = True
                    self._last_event = None
                    return resp
                continue  # cut short by EOF; the next read says so
            self._last_event = event
            if isinstance(event, pop3proto.Err):
                raise error_proto(resp)
            if isinstance(event, pop3proto.SaslChallenge):
                # The caller is running AUTH by hand (e.g. XOAUTH2 through
                # _shortcmd): the challenge line is its to answer.
                self._sasl_owed = True
            elif isinstance(event, pop3proto.MessageStart):
                self._status_done = True
            elif isinstance(event, pop3proto.ConnectionClosed):
                raise error_proto("-ERR EOF")
            return resp

    def _getlongresp(self) -> _LongResp:
        """Read a multi-line reply: ``(status line, lines, octets)``."""
        resp = self._getresp()
        if not self._status_done:
            # The reply was a single line after all (e.g. _longcmd on a
            # command that has none); poplib would wait forever here.
            return resp, [], 0
        body: list[bytes] = []
        raw: list[tuple[bytes, int]] = []
        # A message body is read in bulk: the engine finds the terminator
        # and unstuffs at C speed, where a line-by-line loop (as poplib's)
        # costs a Python round trip per line.  Listings keep line reads.
        in_body = isinstance(self._last_event, pop3proto.MessageStart)
        while True:
            event = self._pull()
            if event is None:
                if in_body:
                    self._read_chunk()
                else:
                    raw.append(self._getline())
                continue
            if isinstance(event, pop3proto.MessageData):
                body.append(event.data)
                continue
            if isinstance(event, (pop3proto.MessageEnd, *_BLOCK_EVENTS)):
                self._status_done = False
                self._last_event = event
                # The last line read was the terminator.  A line that starts
                # with "." had one added (RFC 1939 §3) that the octet count
                # must not include.
                if isinstance(event, pop3proto.MessageEnd):
                    data = body[0] if len(body) == 1 else b"".join(body)
                    lines = _split_body(data)
                    # poplib refuses lines over _MAXLINE (read at call time).
                    if len(data) + 2 > _MAXLINE and lines and max(map(len, lines)) + 2 > _MAXLINE:
                        raise error_proto("line too long")
                    # poplib's octets: wire octets less one per stuffed dot,
                    # which is the unstuffed body, line ends included.
                    return resp, lines, len(data)
                lines_raw = raw[:-1]
                octets = sum(o - (line[:1] == b".") for line, o in lines_raw)
                return (
                    resp,
                    [line[1:] if line[:1] == b"." else line for line, _ in lines_raw],
                    octets,
                )
            # The engine frames the reply by its command: after a +OK that
            # opens a body or a listing only the events above can come (EOF
            # is raised by the reads, a closed session by _register).
            raise error_proto(  # pragma: no cover
                f"-ERR unexpected {type(event).__name__} in a multi-line reply"
            )

    def _shortcmd(self, line: str) -> bytes:
        """Send a command, return its status line."""
        self._putcmd(line)
        return self._getresp()

    def _longcmd(self, line: str) -> _LongResp:
        """Send a command, return its multi-line reply."""
        # Unknown commands sent this way are framed as multi-line replies.
        self._multiline = True
        try:
            self._putcmd(line)
        finally:
            self._multiline = False
        return self._getlongresp()

    # ------------------------------------------------------------------
    # The poplib interface
    # ------------------------------------------------------------------

    def getwelcome(self) -> bytes:
        """The server's greeting line."""
        return self.welcome

    def set_debuglevel(self, level: int) -> None:
        """Print commands (level 1) and every line (level 2) to stdout.

        Passwords, APOP digests and SASL data are shown as ``********``.
        """
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
        """AUTH (RFC 5034), with the interface newer CPython ``poplib`` has.

        With *initial_response* it goes on the AUTH line (base64-encoded
        here).  With *authobject*, each server challenge (decoded) is passed
        to it and its answer (bytes or str; ``None`` is empty, ``b"*"``
        cancels) is sent back, until the server says ``+OK`` or ``-ERR``.
        Returns the final ``+OK`` line; ``-ERR`` raises :class:`error_proto`.
        """
        if authobject is not None and initial_response is not None:
            raise ValueError("authobject and initial_response are mutually exclusive")
        if initial_response is not None:
            if isinstance(initial_response, str):
                initial_response = initial_response.encode(self.encoding)
            encoded = pop3proto.sasl_b64encode(initial_response).decode("ascii")
            return self._shortcmd(f"AUTH {mechanism} {encoded}".rstrip())
        if authobject is None:
            return self._shortcmd(f"AUTH {mechanism}")
        resp = self._shortcmd(f"AUTH {mechanism}")
        while True:
            event = self._last_event
            if not isinstance(event, pop3proto.SaslChallenge):
                return resp
            answer = authobject(event.data)
            if answer is None:
                answer = b""
            if isinstance(answer, str):
                answer = answer.encode(self.encoding)
            if answer == b"*":
                return self._shortcmd("*")
            resp = self._shortcmd(pop3proto.sasl_b64encode(answer).decode("ascii"))

    def stat(self) -> tuple[int, int]:
        """STAT (RFC 1939 §5): ``(message count, mailbox size)``."""
        retval = self._shortcmd("STAT")
        rets = retval.split()
        if self._debugging:
            print("*stat*", repr(rets))
        # The engine has checked a real reply; this also covers a mocked
        # _shortcmd, which must not produce IndexError (a poplib bug).
        if len(rets) < 3 or not all(r.isdigit() for r in rets[1:3]):
            raise error_proto(f"-ERR malformed STAT reply: {retval[:60]!r}")
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
        """RETR (RFC 1939 §5): ``(status, [lines], octets)`` of a message.

        Lines are dot-unstuffed by RFC 1939 §3 (see the docstring of
        :mod:`pop3proto.adapters.sync`).
        """
        # Downloading a mailbox is one retr() per message, so the usual
        # case skips parsing a command string it could build directly.
        # Anything unusual (a message number given oddly, debugging on, a
        # subclass hooking the plumbing, a command the engine would refuse)
        # goes the general way, which also words the errors.
        if type(which) is int and which > 0 and not self._debugging and _plain_plumbing(type(self)):
            event = pop3proto.Retr(which)
            conn = self._conn
            if not self._sasl_owed and not self._status_done and conn.can_send(event):
                wire = conn.send(event)
                sys.audit("poplib.putline", self, wire[:-2])
                try:
                    self.sock.sendall(wire)
                except BaseException:
                    conn.send_failed()
                    raise
                return self._getlongresp()
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

        Only possible when the greeting carries a timestamp; raises
        :class:`error_proto` ("-ERR APOP not supported by server") otherwise.
        """
        greeting = self._conn.greeting
        timestamp = greeting.timestamp if greeting is not None else None
        if timestamp is None:
            raise error_proto("-ERR APOP not supported by server")
        digest = pop3proto.apop_digest(timestamp, password)
        return self._shortcmd(f"APOP {user} {digest}")

    def top(self, which: Any, howmuch: Any) -> _LongResp:
        """TOP (RFC 1939 §7): headers and the first *howmuch* body lines."""
        return self._longcmd(f"TOP {which} {howmuch}")

    def uidl(self, which: Any = None) -> Any:
        """UIDL (RFC 1939 §7).

        Without *which*: ``(status, [b"msg uid", ...], octets)``; with a
        message number: ``b"+OK msg uid"``.
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
        try:
            _, lines, _ = self._longcmd("CAPA")
        except error_proto:
            raise error_proto("-ERR CAPA not supported by server")  # noqa: B904 - as poplib
        decode = "utf-8" if self._conn.utf8 or self._conn.lang else "ascii"
        texts = (line.decode(decode, "replace") for line in lines)
        return pop3proto.Capabilities.from_lines(texts).as_dict()

    def stls(self, context: ssl.SSLContext | None = None) -> bytes:
        """STLS (RFC 2595 §4): start TLS on this connection.

        Without *context* the server certificate is not verified, as in
        ``poplib``; pass ``ssl.create_default_context()`` to verify it.
        """
        if self._tls_established:
            raise error_proto("-ERR TLS session already established")
        caps = self.capa()
        if "STLS" not in caps:
            raise error_proto("-ERR STLS not supported by server")
        if context is None:
            # poplib's default (ssl._create_stdlib_context) does not verify.
            context = ssl._create_unverified_context()
        resp = self._shortcmd("STLS")
        self._check_nothing_buffered()
        self.file.close()
        self.sock = context.wrap_socket(self.sock, server_hostname=self.host)
        self.file = self.sock.makefile("rb")
        try:
            self._conn.tls_established()
        except pop3proto.ProtocolError as exc:  # pragma: no cover - checked above
            raise error_proto(f"-ERR {exc}") from None
        self._tls_established = True
        return resp

    def _check_nothing_buffered(self) -> None:
        # RFC 2595 §4: after +OK the server sends nothing until TLS is up;
        # bytes already here were injected by someone on the path.  Look at
        # what the reader buffered and what the kernel holds, without
        # blocking.
        timeout = self.sock.gettimeout()
        self.sock.settimeout(0)
        try:
            extra = self.file.peek(1)
        except OSError:  # pragma: no cover - a reset racing the peek; the handshake reports it
            extra = b""
        finally:
            self.sock.settimeout(timeout)
        if extra:
            self._conn.send_failed()
            raise error_proto(
                "-ERR data followed +OK to STLS before TLS started: possible response injection"
            )


class POP3_SSL(POP3):
    """``POP3`` over implicit TLS (RFC 8314 §3), port 995 by default.

    ``POP3_SSL(host, port=995, *, timeout=..., context=None)`` as in
    CPython 3.12+.  Without *context* the certificate is not verified (as in
    ``poplib``); pass ``ssl.create_default_context()``.
    """

    _implicit_tls = True

    def __init__(
        self,
        host: str,
        port: int = POP3_SSL_PORT,
        *,
        timeout: Any = _GLOBAL_DEFAULT_TIMEOUT,
        context: ssl.SSLContext | None = None,
    ) -> None:
        if context is None:
            context = ssl._create_unverified_context()
        self.context = context
        super().__init__(host, port, timeout)

    def _create_socket(self, timeout: Any) -> socket.socket:
        sock = super()._create_socket(timeout)
        return self.context.wrap_socket(sock, server_hostname=self.host)

    def stls(self, context: Any = None) -> NoReturn:
        """Always raises: TLS is already active."""
        raise error_proto("-ERR TLS session already established")

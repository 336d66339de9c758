"""Blocking-socket POP3 clients: a drop-in ``poplib`` and a modern :class:`Client`.

Drop-in for the standard library
--------------------------------
``import pop3proto.adapters.sync as poplib`` is the whole migration:
:class:`POP3`, :class:`POP3_SSL`, :class:`error_proto`, ``POP3_PORT``,
``POP3_SSL_PORT``, ``CR``, ``LF``, ``CRLF``, ``_MAXLINE`` and ``__all__``
behave as CPython's ``poplib`` documents them (3.12+ signatures: ``POP3_SSL``
and ``stls`` take only a ``context``).  Replies are parsed by the pop3proto
engine, which makes these differences, all deliberate:

* **Dot-unstuffing follows RFC 1939 §3**: one leading ``.`` is removed from
  *every* line that starts with one; ``poplib`` only unstuffs lines starting
  with ``..``, so a stuffed line ``..x`` is the same but a line ``.x`` from
  a server that forgot to stuff comes back as ``x`` here (and is counted
  one octet shorter).
* **Bugs become** :class:`error_proto` with a clear message instead of hangs,
  wrong answers or stray exceptions: CR/LF/NUL in an argument (``user("a\\r\\n
  DELE 1")`` is refused before anything is sent; ``poplib`` sends two
  commands), a ``+ `` continuation line or other garbage taken as ``+OK``,
  ``IndexError`` on a short STAT reply, EOF in the middle of a message body
  or listing.  ``capa()`` never raises on odd lines (blank lines are
  skipped, non-ASCII octets decoded with U+FFFD) where ``poplib`` raises
  ``IndexError`` or ``UnicodeDecodeError``; RFC 2449 §9 asks clients to
  ignore what they do not understand.
* **Commands are validated** before they are sent: arguments must be
  single tokens (``user("a b")`` raises), message numbers decimal, and a
  command not allowed in the current state (``stat()`` before logging in)
  raises :class:`error_proto` without being sent, where ``poplib`` would
  send it and raise on the server's ``-ERR``.  Non-ASCII user names and
  passwords need UTF8 mode or a server advertising ``UTF8 USER``
  (RFC 6856 §2.2).
* ``apop()`` reads the greeting timestamp strictly (exactly one ``<...@...>``,
  RFC 1939 §7), so a greeting with two ``<`` gives "APOP not supported".
* After ``+OK`` to STLS, bytes already received before the TLS handshake
  raise :class:`error_proto` (RFC 2595 §4 response injection); ``poplib``
  silently drops them.
* ``set_debuglevel()`` output masks the PASS argument, the APOP digest and
  SASL data (AUTH initial responses and continuation lines).
* A lone LF ends a line (as in ``poplib``), but a line starting with CR
  (``poplib``'s "LF CR" ending) keeps its CR.
* The private helpers keep the session in step where ``poplib`` loses it:
  ``_longcmd`` on a command with a one-line reply returns
  ``(resp, [], 0)`` instead of waiting forever, the unread lines of a
  multi-line reply fetched with ``_shortcmd("LIST")`` are skipped by the
  next read instead of being returned as replies, and ``_putline`` called
  directly is parsed like ``_putcmd``.  While an ``AUTH`` started with
  ``_shortcmd`` awaits an answer, the next line sent is the base64 answer
  (or ``*``), as RFC 5034 §4 has it.
* ``auth()`` (newer CPython) is available on every Python version.

As in ``poplib``, ``POP3_SSL`` and ``stls()`` without a *context* do **not**
verify the server certificate (``poplib`` uses an unverified context);
pass ``context=ssl.create_default_context()``.

The modern client
-----------------
:class:`Client` is a context manager with a timeout by default, TLS by
default, typed results and typed exceptions (see ``_errors``)::

    from pop3proto.adapters.sync import Client

    with Client("pop.example.org") as client:         # STLS on port 110
        client.login("alice", "secret")                # strongest method
        for number, message in client.retrieve_many(client.list()):
            ...

Its protocol logic is :class:`pop3proto.adapters._client.ClientCore`; this
module only runs the core's operations over a blocking socket.
"""

from __future__ import annotations

import errno
import re
import socket
import ssl
import sys
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import IO, Any, Final, Literal, NoReturn, TypeVar

import pop3proto
from pop3proto import State

from ._maildrop import MaildirBackend as MaildirBackend
from ._maildrop import MemoryBackend as MemoryBackend
from ._seam import Deliver, Operation, Receive, Request, Send, StartTLS
from ._session import ServerConfig as ServerConfig
from ._sync_server import Server as Server
from ._sync_server import serve as serve
from ._users import DictAuthenticator as DictAuthenticator
from ._users import UsersFile as UsersFile
from ._users import hash_password as hash_password
from .client._base import DEFAULT_WINDOW, is_loopback
from .client._core import ClientCore
from .client._core import MailboxStatus as MailboxStatus
from .client._errors import AuthenticationFailed as AuthenticationFailed
from .client._errors import CommandFailed as CommandFailed
from .client._errors import ConnectionLost as ConnectionLost
from .client._errors import InsecureAuthenticationRefused as InsecureAuthenticationRefused
from .client._errors import LoginDelay as LoginDelay
from .client._errors import MailboxInUse as MailboxInUse
from .client._errors import PermanentFailure as PermanentFailure
from .client._errors import POP3Error as POP3Error
from .client._errors import ProtocolViolation as ProtocolViolation
from .client._errors import TemporaryFailure as TemporaryFailure
from .client._errors import TLSUnavailable as TLSUnavailable

# Exactly the standard library's: ``from ... import *`` must bring what
# ``from poplib import *`` brings.  The modern API is imported by name.
__all__ = ["POP3", "error_proto", "POP3_SSL"]

T = TypeVar("T")

#: RFC 1939 §4 / RFC 8314 §3 well-known ports.
POP3_PORT: Final = 110
POP3_SSL_PORT: Final = 995

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

_MASK = "********"

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


class error_proto(Exception):
    """The one exception of the ``poplib`` interface.

    ``args[0]`` is the server's ``-ERR`` line (bytes, without CRLF) when the
    server refused a command, or a ``str`` describing a local or protocol
    problem (``"line too long"``, ``"-ERR EOF"``, ...).
    """


def _mask_command(line: str, sasl: bool) -> str:
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
    given as ints or decimal strings.  See the module docstring for where
    this differs from the standard library (RFC dot-unstuffing, validation
    of arguments, errors instead of known ``poplib`` bugs).

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
                shown = _mask_command(line.decode(self.encoding, "replace"), self._sasl_owed)
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
            shown = _mask_command(line, self._sasl_owed)
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
                shown = _mask_command(line, sasl)
                raise error_proto(f"-ERR read the reply to the last command first: {shown!r}")
            self._check_command(event)
            if not conn.can_send(event):
                raise error_proto(
                    f"-ERR {keyword} is not allowed in the {conn.state.name} state "
                    "(command not sent)"
                )
        try:
            wire = conn.send(event)
        except pop3proto.LocalProtocolError as exc:
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
        if not isinstance(line, str):
            raise error_proto(f"-ERR commands are str, not {type(line).__name__}")
        if "\r" in line or "\n" in line or "\0" in line:
            # poplib would send the rest as a second command (injection).
            shown = _mask_command(line, self._sasl_owed)
            raise error_proto(
                f"-ERR CR, LF and NUL are not allowed in commands: {shown!r} (not sent)"
            )
        if self._sasl_owed:
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
            return pop3proto.Extension(upper, tuple(args), multiline=self._multiline)
        except (pop3proto.LocalProtocolError, ValueError, UnicodeEncodeError) as exc:
            reason = str(exc) if not isinstance(exc, UnicodeEncodeError) else "not ASCII"
            shown = _mask_command(line, self._sasl_owed)
            raise error_proto(f"-ERR invalid command {shown!r}: {reason} (not sent)") from None

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
                if self._conn.state is State.CLOSED:
                    raise error_proto("-ERR EOF")
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
            if isinstance(event, pop3proto.ConnectionClosed):
                raise error_proto("-ERR EOF")
            raise error_proto(f"-ERR unexpected {type(event).__name__} in a multi-line reply")

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

        Lines are dot-unstuffed by RFC 1939 §3 (see the module docstring).
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
        except OSError:
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


# ---------------------------------------------------------------------------
# The modern client
# ---------------------------------------------------------------------------

TLSMode = Literal["implicit", "starttls", "none"]


class Client:
    """A modern blocking POP3 client: typed, TLS by default, pipelined.

    Args:
        host: the server.
        port: default 995 with ``tls="implicit"``, else 110.
        tls: ``"starttls"`` (upgrade with STLS and refuse to go on without
            it, raising :class:`TLSUnavailable`), ``"implicit"`` (TLS from
            the first byte, RFC 8314 §3) or ``"none"``.  The default is
            ``"implicit"`` for port 995 and ``"starttls"`` otherwise.
        ssl_context: for TLS; default ``ssl.create_default_context()``
            (certificate and host name verified).
        server_hostname: the name to verify the certificate against
            (default *host*).
        timeout: seconds for every socket operation (default 60; ``None``
            blocks forever; 0 is refused, as in ``poplib``).
        window: RETRs kept in flight by :meth:`retrieve_many` when the
            server advertises PIPELINING.
        source_address: passed to :func:`socket.create_connection`.

    Connecting reads the greeting and, with ``"starttls"``, upgrades the
    connection, all in the constructor.  As a context manager, a normal exit
    sends QUIT (committing deletions) and an exit by exception only closes
    the socket, so nothing marked deleted is removed (RFC 1939 §6).

    Errors are :class:`POP3Error` subclasses; socket errors and timeouts
    (:class:`OSError`, :class:`TimeoutError`) propagate as they are.
    """

    def __init__(
        self,
        host: str,
        port: int | None = None,
        *,
        tls: TLSMode | None = None,
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        timeout: float | None = 60.0,
        window: int = DEFAULT_WINDOW,
        source_address: tuple[str, int] | None = None,
    ) -> None:
        if tls is None:
            tls = "implicit" if port == POP3_SSL_PORT else "starttls"
        if tls not in ("implicit", "starttls", "none"):
            raise ValueError(f"tls must be 'implicit', 'starttls' or 'none', not {tls!r}")
        if port is None:
            port = POP3_SSL_PORT if tls == "implicit" else POP3_PORT
        if timeout is not None and timeout <= 0:
            raise ValueError("timeout must be positive or None (non-blocking is not supported)")
        self.host = host
        self.port = port
        self.tls_mode: TLSMode = tls
        self._context = ssl_context
        self._server_hostname = server_hostname or host
        self._sock: socket.socket | None = socket.create_connection(
            (host, port), timeout, source_address
        )
        try:
            peer = self._sock.getpeername()[0]
            self._core = ClientCore(
                host,
                tls=tls == "implicit",
                loopback=is_loopback(str(peer)),
                window=window,
            )
            if tls == "implicit":
                self._sock = self._ssl_context().wrap_socket(
                    self._sock, server_hostname=self._server_hostname
                )
            self._run(self._core.greet())
            if tls == "starttls":
                caps = self._run(self._core.capabilities())
                if caps.entries and not caps.stls:
                    raise TLSUnavailable(
                        f"{host} does not offer STLS; use tls='implicit' or tls='none'",
                        command="STLS",
                    )
                self._run(self._core.starttls())
        except BaseException:
            self.close()
            raise

    # -- plumbing ---------------------------------------------------------

    def _ssl_context(self) -> ssl.SSLContext:
        if self._context is None:
            self._context = ssl.create_default_context()
        return self._context

    def _perform(self, request: Request, sink: Callable[[bytes], object] | None) -> bytes | None:
        sock = self._sock
        if sock is None:
            raise ConnectionLost("the client is closed")
        # Deliver first: a retrieval asks for it once per message piece.
        if isinstance(request, Deliver):
            if sink is None:  # pragma: no cover - only streaming ops deliver
                raise RuntimeError("message data arrived with no sink")
            sink(request.data)
        elif isinstance(request, Receive):
            return sock.recv(65536)
        elif isinstance(request, Send):
            sock.sendall(request.data)
        elif isinstance(request, StartTLS):
            self._sock = self._ssl_context().wrap_socket(
                sock, server_hostname=self._server_hostname
            )
        else:  # pragma: no cover
            raise TypeError(f"unknown request {request!r}")
        return None

    def _run(self, op: Operation[T], sink: Callable[[bytes], object] | None = None) -> T:
        """Drive one core operation with blocking socket calls."""
        try:
            request = op.send(None)
            while True:
                try:
                    answer = self._perform(request, sink)
                except BaseException as exc:
                    # Let the core judge whether the session survives.
                    request = op.throw(exc)
                    continue
                request = op.send(answer)
        except StopIteration as done:
            result: T = done.value
            return result
        finally:
            op.close()

    # -- state --------------------------------------------------------------

    @property
    def core(self) -> ClientCore:
        """The I/O-free client this one drives."""
        return self._core

    @property
    def sock(self) -> socket.socket | None:
        """The socket (an :class:`ssl.SSLSocket` once TLS is on), or ``None``
        once closed."""
        return self._sock

    @property
    def greeting(self) -> pop3proto.Greeting | None:
        """The server's greeting."""
        return self._core.greeting

    @property
    def tls(self) -> bool:
        """Whether the connection is encrypted."""
        return self._core.tls

    @property
    def state(self) -> State:
        """The session state (``State.TRANSACTION`` once logged in)."""
        return self._core.state

    # -- commands -------------------------------------------------------------

    def capabilities(self, *, refresh: bool = False) -> pop3proto.Capabilities:
        """The server's capabilities (CAPA, cached; RFC 2449 §5)."""
        return self._run(self._core.capabilities(refresh=refresh))

    def login(
        self,
        user: str,
        password: str,
        *,
        mechanism: str | None = None,
        allow_insecure: bool = False,
    ) -> str:
        """Log in with the strongest method offered; return its name.

        SCRAM-SHA-256 > SCRAM-SHA-1 > CRAM-MD5 > PLAIN > LOGIN > APOP >
        USER/PASS.  Refuses (:class:`InsecureAuthenticationRefused`) to
        expose the password on an unencrypted link to a non-loopback host
        unless *allow_insecure*.  See :meth:`ClientCore.login`.
        """
        return self._run(
            self._core.login(user, password, mechanism=mechanism, allow_insecure=allow_insecure)
        )

    def authenticate(
        self, mechanism: pop3proto.SaslClientMechanism, *, allow_insecure: bool = False
    ) -> None:
        """Log in with a SASL mechanism object (e.g. ``XOAuth2Client``)."""
        self._run(self._core.authenticate(mechanism, allow_insecure=allow_insecure))

    def stat(self) -> MailboxStatus:
        """STAT: message count and total size."""
        return self._run(self._core.stat())

    def list(self) -> dict[int, int]:
        """LIST: message number -> size in octets."""
        return self._run(self._core.list())

    def size(self, number: int) -> int:
        """``LIST n``: one message's size in octets."""
        return self._run(self._core.size(number))

    def uidl(self) -> dict[int, str]:
        """UIDL: message number -> unique-id."""
        return self._run(self._core.uidl())

    def uid(self, number: int) -> str:
        """``UIDL n``: one message's unique-id."""
        return self._run(self._core.uid(number))

    def retrieve(self, number: int) -> bytes:
        """RETR: the message, byte for byte as stored (dot-unstuffed)."""
        buffer = bytearray()
        self._run(self._core.retrieve(number), buffer.extend)
        return bytes(buffer)

    def retrieve_into(self, number: int, fileobj: IO[bytes]) -> int:
        """RETR streamed into *fileobj* (anything with ``write(bytes)``);
        return the octets written.  Memory stays bounded by the receive
        size, however large the message."""
        return self._run(self._core.retrieve(number), fileobj.write)

    def retrieve_many(
        self, numbers: Iterable[int], *, window: int | None = None
    ) -> Iterator[tuple[int, bytes]]:
        """Yield ``(number, message)`` for each of *numbers*, in order.

        Pipelined when the server advertises PIPELINING (at most *window*
        RETRs in flight, default the client's), one at a time otherwise.  A
        ``-ERR`` for a message raises (ending the iteration); leaving the
        loop early is fine: the replies still owed are read and dropped by
        the next command.  Other commands may be used inside the loop (see
        :class:`~pop3proto.adapters._client.RetrieveBatch` for the cost).
        """
        batch = self._core.retrieve_many(numbers, window=window)
        try:
            while True:
                # Replies already received need no request round trips.
                ready = batch.take_buffered() if self._sock is not None else None
                if ready is not None:
                    yield ready
                    continue
                pieces: list[bytes] = []
                number = self._run(batch.next(), pieces.append)
                if number is None:
                    return
                # Usually one piece: no copy then.
                yield number, pieces[0] if len(pieces) == 1 else b"".join(pieces)
        finally:
            batch.abandon()

    def retrieve_many_into(
        self,
        numbers: Iterable[int],
        sink: Callable[[int, bytes], object],
        *,
        window: int | None = None,
    ) -> int:
        """Stream each message of *numbers* into ``sink(number, chunk)``.

        Pipelined like :meth:`retrieve_many`, but memory stays bounded: the
        chunks of one message come in order and contiguously, and after its
        last chunk ``sink(number, b"")`` marks its end (other chunks are
        never empty).  Returns how many messages were delivered.
        """
        batch = self._core.retrieve_many(numbers, window=window)
        count = 0
        try:
            while True:
                ready = batch.take_buffered() if self._sock is not None else None
                if ready is not None:
                    number, data = ready
                    if data:
                        sink(number, data)
                else:
                    done = self._run(batch.next(), lambda data: sink(batch.current or 0, data))
                    if done is None:
                        return count
                    number = done
                sink(number, b"")
                count += 1
        finally:
            batch.abandon()

    def top(self, number: int, lines: int) -> bytes:
        """TOP: the headers and the first *lines* body lines."""
        buffer = bytearray()
        self._run(self._core.top(number, lines), buffer.extend)
        return bytes(buffer)

    def delete(self, number: int) -> None:
        """DELE: mark a message deleted (removed at :meth:`quit`)."""
        self._run(self._core.delete(number))

    def delete_many(self, numbers: Iterable[int], *, window: int | None = None) -> None:
        """DELE several messages, pipelined when possible."""
        self._run(self._core.delete_many(numbers, window=window))

    def reset(self) -> None:
        """RSET: unmark every message marked deleted."""
        self._run(self._core.reset())

    def noop(self) -> None:
        """NOOP: keep the session alive."""
        self._run(self._core.noop())

    def utf8(self) -> None:
        """UTF8 (RFC 6856): switch to UTF-8 mode before logging in."""
        self._run(self._core.utf8())

    def quit(self) -> bool:
        """QUIT and close; return whether deletions were committed.

        Raises :class:`ConnectionLost` with ``outcome_unknown=True`` if the
        server closed before replying.
        """
        try:
            return self._run(self._core.quit())
        finally:
            self.close()

    def close(self) -> None:
        """Close the connection without QUIT: nothing is deleted."""
        sock, self._sock = self._sock, None
        if sock is None:
            return
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # the server may have closed first
        finally:
            sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if (
            exc_type is None
            and self._sock is not None
            and self._core.state in (State.AUTHORIZATION, State.USER_OK, State.TRANSACTION)
        ):
            self.quit()
            return
        self.close()

    def __repr__(self) -> str:
        status = "closed" if self._sock is None else self._core.state.name
        tls = " tls" if self._sock is not None and self.tls else ""
        return f"<Client {self.host}:{self.port} {status}{tls}>"

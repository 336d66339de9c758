"""A real Dovecot POP3 server for the interop tests.

The session-scoped fixture ``dovecot`` writes a self-contained Dovecot 2.3
configuration into a temporary directory, starts ``dovecot -F -c FILE`` on
two free loopback ports (plain POP3 with STLS, and implicit-TLS POP3S), waits
until both accept connections, and yields a :class:`DovecotServer`.  At the
end of the session it stops the master with SIGTERM (by the pid in
``base_dir/master.pid``) and waits for it to exit.

The function-scoped fixture ``dovecot_mailbox`` resets the single Maildir to
:data:`TEST_MESSAGES` before a test (tests delete messages) and returns them;
:meth:`DovecotServer.populate` fills it with any other list of messages.

Dovecot is installed by ``.ci/install-peers``.  When the ``dovecot`` binary is
missing the fixture skips, except under CI (env var ``CI`` set), where that is
a hard failure so that CI cannot silently skip the interop suite.

Configuration facts that this file depends on (Dovecot 2.3):

* Dovecot refuses uid 0 for mail access, so the userdb is ``static`` with
  ``uid=nobody gid=nogroup`` and the Maildir is owned by ``nobody``.
* A ``passwd-file`` passdb with ``{PLAIN}`` passwords lets Dovecot do
  CRAM-MD5 and APOP, which need the plaintext secret.  Listing ``apop`` in
  ``auth_mechanisms`` makes pop3-login put a ``<pid.time@host>`` timestamp
  in its greeting.
* ``auth_failure_delay = 0`` and a disabled ``anvil-auth-penalty`` socket
  avoid the 2 s (and growing) delay after every failed login.  Dovecot
  2.3.19 still answers a failed login only on its 500 ms failure timer, so
  each failed login costs 0.5 s (``nodelay=yes`` in the passwd-file does not
  help there).
* The temporary directory is made world-traversable, because the auth
  process reads the passwd-file as the ``dovecot`` user and the mail process
  reads the Maildir as ``nobody``.
* XOAUTH2 and OAUTHBEARER use an ``oauth2`` passdb with
  ``introspection_mode = local``: Dovecot validates a JWT itself, with no
  identity provider, against the HMAC key :data:`OAUTH2_KEY` (base64) found
  in an ``fs:posix`` dict at ``default/HS256/default`` (the dict path
  ``shared/<azp>/<alg>/<kid>``, with no ``azp`` or ``kid`` claim).  The
  user is the token's ``sub`` claim; :func:`oauth2_token` makes one.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import grp
import hmac
import json
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

HOST = "127.0.0.1"
TLS_HOSTNAME = "localhost"
MAIL_USER = "nobody"
MAIL_GROUP = "nogroup"

#: user name -> password (plaintext; stored as ``{PLAIN}`` in the passwd-file).
USERS: dict[str, str] = {
    "alice": "alice-secret",
    "bob": "pass word!",  # a space: PASS takes the rest of the line
    "carol": "p\u00e4ss w\u00f6rd",  # non-ASCII: only over SASL (no UTF8 capability)
}

#: The HMAC-SHA256 key Dovecot checks the test OAuth 2.0 tokens (JWTs) with.
OAUTH2_KEY = os.urandom(32)


def oauth2_token(user: str, *, ttl: int = 600, padding: int = 0) -> str:
    """An HS256 JWT for *user* that Dovecot's oauth2 passdb accepts (a
    negative *ttl* gives an expired one; *padding* lengthens it)."""

    def part(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    # As few claims as Dovecot needs, so that a short token fits on the AUTH
    # line (RFC 5034 §4); "iat" and "nbf" default to now.
    claims: dict[str, object] = {"sub": user, "exp": int(time.time()) + ttl}
    if padding:
        claims["pad"] = "x" * padding
    payload = json.dumps(claims, separators=(",", ":")).encode()
    # Dovecot 2.3 requires "typ" in the header.
    signed = part(b'{"alg":"HS256","typ":"JWT"}') + b"." + part(payload)
    return (signed + b"." + part(hmac.digest(OAUTH2_KEY, signed, "sha256"))).decode("ascii")


# Generous, because they bound a hang, not a normal start: on a loaded
# machine Dovecot's first processes can take many seconds to come up.
START_TIMEOUT = 120.0
STOP_TIMEOUT = 15.0


# ---------------------------------------------------------------------------
# Test messages
# ---------------------------------------------------------------------------


def _big_message(size: int = 5 * 1024 * 1024) -> bytes:
    """A ~*size* byte message whose lines all differ (so a lost line shows)."""
    header = (
        b"From: big@example.org\n"
        b"To: alice@example.org\n"
        b"Subject: five megabytes\n"
        b"Message-ID: <big@example.org>\n"
        b"\n"
    )
    lines = []
    total = len(header)
    n = 0
    while total < size:
        # Vary the first character so that some lines start with a dot.
        prefix = b"." if n % 97 == 0 else b""
        line = prefix + b"line %08d " % n + b"abcdefghijklmnopqrstuvwxyz0123456789" * 2 + b"\n"
        lines.append(line)
        total += len(line)
        n += 1
    return header + b"".join(lines)


#: The default mailbox, in POP3 order (message 1 first).  Stored with LF line
#: ends, as Maildir files usually are; Dovecot serves them with CRLF.
TEST_MESSAGES: tuple[bytes, ...] = (
    # 1: a small plain message
    b"From: carol@example.org\n"
    b"To: alice@example.org\n"
    b"Subject: hello\n"
    b"Message-ID: <hello@example.org>\n"
    b"\n"
    b"Hello Alice,\n"
    b"\n"
    b"this is a plain test message.\n",
    # 2: dot-lines everywhere, including the first and last body lines
    b"From: dots@example.org\n"
    b"To: alice@example.org\n"
    b"Subject: dot lines\n"
    b"\n"
    b".first line is dotted\n"
    b".\n"
    b"..\n"
    b".x\n"
    b"...\n"
    b"middle\n"
    b". space after dot\n"
    b".\n"
    b".last line is dotted\n",
    # 3: 8-bit UTF-8 body and header
    "From: =?utf-8?q?J=C3=BCrgen?= <juergen@example.org>\n"
    "To: alice@example.org\n"
    "Subject: 8bit\n"
    "MIME-Version: 1.0\n"
    "Content-Type: text/plain; charset=utf-8\n"
    "Content-Transfer-Encoding: 8bit\n"
    "\n"
    "Gr\u00fc\u00dfe aus K\u00f6ln \u2013 \u65e5\u672c\u8a9e \U0001f600\n"
    "\u00e9\u00e8\u00ea \u0436\u0438\u0437\u043d\u044c\n".encode(),
    # 4: five megabytes
    _big_message(),
)


def crlf(message: bytes) -> bytes:
    """What Dovecot serves for a stored message: every bare LF becomes CRLF."""
    return message.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


# ---------------------------------------------------------------------------
# The server object
# ---------------------------------------------------------------------------


@dataclass
class DovecotServer:
    """A running Dovecot instance (see the module docstring)."""

    host: str
    pop3_port: int
    pop3s_port: int
    maildir: Path
    users: dict[str, str]
    ca_cert_path: Path
    log_path: Path
    base_dir: Path
    config_path: Path
    tls_hostname: str = TLS_HOSTNAME
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def user(self) -> str:
        """The default test user."""
        return "alice"

    @property
    def password(self) -> str:
        """The default test user's password."""
        return self.users["alice"]

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts only the test CA."""
        return ssl.create_default_context(cafile=str(self.ca_cert_path))

    def log_text(self) -> str:
        """The Dovecot log so far (for failure messages)."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError as exc:
            return f"<no log: {exc}>"

    # -- the mailbox --------------------------------------------------------

    def master_pid(self) -> int | None:
        try:
            return int((self.base_dir / "master.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def _mail_processes(self) -> list[int]:
        """Pids of the master's ``pop3`` children (one per logged-in session)."""
        master = self.master_pid()
        if master is None:
            return []
        pids = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            # "pid (comm) state ppid ..."; comm may contain spaces/parens.
            comm = stat[stat.find("(") + 1 : stat.rfind(")")]
            rest = stat[stat.rfind(")") + 2 :].split()
            if len(rest) > 1 and rest[1] == str(master) and comm == "pop3":
                pids.append(int(entry))
        return pids

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Wait until no POP3 mail session process is left.

        A session that a test dropped without QUIT may still be running for
        a moment; resetting the Maildir under it could let it write index
        files into the fresh one.
        """
        deadline = time.monotonic() + timeout
        while self._mail_processes():
            if time.monotonic() > deadline:
                raise RuntimeError(f"Dovecot POP3 sessions still running: {self._mail_processes()}")
            time.sleep(0.02)

    def populate(self, messages: Sequence[bytes]) -> list[bytes]:
        """Replace the Maildir with *messages* (message 1 first).

        Returns what a client should receive for each: :func:`crlf` of it.
        The Maildir (and Dovecot's uidlist and index files in it) is rebuilt
        from scratch, so UIDs restart at 1 with a new UIDVALIDITY.
        """
        self.wait_idle()
        uid = pwd.getpwnam(MAIL_USER).pw_uid
        gid = grp.getgrnam(MAIL_GROUP).gr_gid
        home = self.maildir.parent
        if self.maildir.exists():
            shutil.rmtree(self.maildir)
        for sub in ("", "cur", "new", "tmp"):
            path = self.maildir / sub
            path.mkdir(mode=0o700, exist_ok=True)
            os.chown(path, uid, gid)
        os.chown(home, uid, gid)
        base_time = 1_700_000_000
        for index, message in enumerate(messages):
            # Dovecot assigns UIDs in the order of the names' timestamps, so
            # the names keep the POP3 order of *messages*.  ":2," = seen-able
            # message in cur/.
            name = f"{base_time + index}.M{index}P1.pop3proto:2,"
            path = self.maildir / "cur" / name
            path.write_bytes(message)
            os.chown(path, uid, gid)
            os.chmod(path, 0o600)
        return [crlf(m) for m in messages]

    def message_files(self) -> list[Path]:
        """The message files now in the Maildir (cur/ and new/)."""
        return sorted(
            p for sub in ("cur", "new") for p in (self.maildir / sub).iterdir() if p.is_file()
        )


# ---------------------------------------------------------------------------
# Starting and stopping
# ---------------------------------------------------------------------------


def _free_ports(count: int) -> list[int]:
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _config(
    *,
    base_dir: Path,
    state_dir: Path,
    log_path: Path,
    passwd_path: Path,
    oauth2_path: Path,
    home: Path,
    maildir: Path,
    cert_path: Path,
    key_path: Path,
    pop3_port: int,
    pop3s_port: int,
) -> str:
    return f"""\
# Generated by tests/dovecot.py for the pop3proto interop tests.
protocols = pop3
listen = {HOST}
base_dir = {base_dir}
state_dir = {state_dir}
instance_name = pop3proto-test-{os.getpid()}
log_path = {log_path}
info_log_path = {log_path}
debug_log_path = {log_path}
auth_verbose = yes
log_timestamp = "%Y-%m-%d %H:%M:%S "
default_internal_user = dovecot
default_login_user = dovenull
shutdown_clients = yes

ssl = yes
ssl_cert = <{cert_path}
ssl_key = <{key_path}
ssl_dh = </usr/share/dovecot/dh.pem

disable_plaintext_auth = no
auth_mechanisms = plain login cram-md5 scram-sha-1 scram-sha-256 apop xoauth2 oauthbearer
auth_failure_delay = 0
passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {oauth2_path}
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {passwd_path}
}}
userdb {{
  driver = static
  args = uid={MAIL_USER} gid={MAIL_GROUP} home={home} mail=maildir:{maildir}
}}
mail_location = maildir:{maildir}
first_valid_uid = 1
mail_fsync = never

pop3_uidl_format = %08Xu%08Xv

service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
# Start the login process once, ahead of the tests, and keep it: it serves
# every connection (service_count = 0).  On a loaded machine a process
# forked per connection may take longer to report in than a test waits
# (Dovecot's master itself gives up after 30 s: "Initial status
# notification not received").  The mail process is still one per session
# (the tests wait for it to exit before they reset the Maildir).
service pop3-login {{
  service_count = 0
  process_min_avail = 1
  inet_listener pop3 {{
    address = {HOST}
    port = {pop3_port}
  }}
  inet_listener pop3s {{
    address = {HOST}
    port = {pop3s_port}
    ssl = yes
  }}
}}
service imap-login {{
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
"""


def _wait_for_port(port: int, deadline: float, proc: subprocess.Popen[bytes]) -> None:
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"dovecot exited with status {proc.returncode} while starting")
        try:
            with socket.create_connection((HOST, port), timeout=1.0):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"dovecot did not listen on {HOST}:{port}") from None
            time.sleep(0.05)


def _warm_up(server: DovecotServer, deadline: float) -> None:
    """Log in once, so that the login, auth and mail processes are all up
    before the first test starts its clock."""
    user, password = next(iter(server.users.items()))
    while True:
        try:
            with socket.create_connection((HOST, server.pop3_port), timeout=30.0) as sock:
                reader = sock.makefile("rb")
                lines = [reader.readline()]
                for command in (f"USER {user}", f"PASS {password}", "QUIT"):
                    sock.sendall(command.encode() + b"\r\n")
                    lines.append(reader.readline())
            if all(line.startswith(b"+OK") for line in lines):
                return
            raise RuntimeError(f"warm-up login failed: {lines!r}")
        except (OSError, RuntimeError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _stop(server: DovecotServer) -> None:
    proc = server.process
    pid = server.master_pid()
    if pid is None and proc is not None:
        pid = proc.pid
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    if proc is not None:
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    elif pid is not None:
        deadline = time.monotonic() + STOP_TIMEOUT
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Have the kernel SIGTERM the Dovecot master if pytest dies (Linux)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG; kept across exec
    except (OSError, AttributeError):
        pass


def find_dovecot() -> str | None:
    """The dovecot binary, or None (also looks in sbin dirs not on PATH)."""
    found = shutil.which("dovecot")
    if found:
        return found
    for candidate in ("/usr/sbin/dovecot", "/usr/local/sbin/dovecot"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def _missing(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: run `bash .ci/install-peers` first)", pytrace=False)
    pytest.skip(f"{reason}; install it with `bash .ci/install-peers`")


@contextlib.contextmanager
def run_dovecot() -> Iterator[DovecotServer]:
    """Start a private Dovecot; yield it; stop it."""
    binary = find_dovecot()
    if binary is None:
        _missing("dovecot is not installed")
        raise AssertionError("unreachable")
    if os.geteuid() != 0:
        _missing("the Dovecot interop fixture must run as root")
    for name, lookup in ((MAIL_USER, pwd.getpwnam), (MAIL_GROUP, grp.getgrnam)):
        try:
            lookup(name)
        except KeyError:
            _missing(f"system user/group {name!r} is missing")
    for name in ("dovecot", "dovenull"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            _missing(f"the {name!r} user (created by the dovecot-core package) is missing")

    import trustme  # the test extra installs it

    tmp = Path(tempfile.mkdtemp(prefix="p3dc-"))
    try:
        tmp.chmod(0o755)  # the auth and mail processes are not root
        base_dir = tmp / "run"
        state_dir = tmp / "state"
        state_dir.mkdir()
        home = tmp / "home"
        home.mkdir()
        maildir = home / "Maildir"
        log_path = tmp / "dovecot.log"

        ca = trustme.CA()
        cert = ca.issue_cert(HOST, TLS_HOSTNAME)
        ca_cert_path = tmp / "ca.pem"
        cert_path = tmp / "cert.pem"
        key_path = tmp / "key.pem"
        ca.cert_pem.write_to_path(str(ca_cert_path))
        cert.cert_chain_pems[0].write_to_path(str(cert_path))
        for extra in cert.cert_chain_pems[1:]:
            extra.write_to_path(str(cert_path), append=True)
        cert.private_key_pem.write_to_path(str(key_path))
        key_path.chmod(0o600)

        passwd_path = tmp / "passwd"
        passwd_path.write_text(
            "".join(f"{user}:{{PLAIN}}{password}\n" for user, password in USERS.items()),
            encoding="utf-8",
        )
        passwd_path.chmod(0o644)
        keys = tmp / "oauth2-keys"
        (keys / "default" / "HS256").mkdir(parents=True)
        (keys / "default" / "HS256" / "default").write_text(
            base64.b64encode(OAUTH2_KEY).decode("ascii")
        )
        for folder in (keys, keys / "default", keys / "default" / "HS256"):
            folder.chmod(0o755)
        oauth2_path = tmp / "dovecot-oauth2.conf.ext"
        oauth2_path.write_text(
            "introspection_mode = local\n"
            f"local_validation_key_dict = fs:posix:prefix={keys}/\n"
            "username_attribute = sub\n"
        )

        pop3_port, pop3s_port = _free_ports(2)
        config_path = tmp / "dovecot.conf"
        config_path.write_text(
            _config(
                base_dir=base_dir,
                state_dir=state_dir,
                log_path=log_path,
                passwd_path=passwd_path,
                oauth2_path=oauth2_path,
                home=home,
                maildir=maildir,
                cert_path=cert_path,
                key_path=key_path,
                pop3_port=pop3_port,
                pop3s_port=pop3s_port,
            ),
            encoding="utf-8",
        )

        server = DovecotServer(
            host=HOST,
            pop3_port=pop3_port,
            pop3s_port=pop3s_port,
            maildir=maildir,
            users=dict(USERS),
            ca_cert_path=ca_cert_path,
            log_path=log_path,
            base_dir=base_dir,
            config_path=config_path,
        )
        server.populate(TEST_MESSAGES)

        output_path = tmp / "dovecot.out"
        with output_path.open("wb") as output:
            server.process = subprocess.Popen(
                [binary, "-F", "-c", str(config_path)],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        try:
            deadline = time.monotonic() + START_TIMEOUT
            try:
                _wait_for_port(pop3_port, deadline, server.process)
                _wait_for_port(pop3s_port, deadline, server.process)
                _warm_up(server, deadline)
            except (RuntimeError, TimeoutError, OSError) as exc:
                out = output_path.read_text(errors="replace")
                raise RuntimeError(
                    f"{exc}\n--- dovecot output ---\n{out}\n--- {log_path} ---\n"
                    f"{server.log_text()}\n--- config ---\n{config_path.read_text()}"
                ) from None
            yield server
        finally:
            _stop(server)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session", name="dovecot")
def dovecot_fixture() -> Iterator[DovecotServer]:
    """The running Dovecot server (session-wide)."""
    with run_dovecot() as server:
        yield server


@pytest.fixture(name="dovecot_mailbox")
def dovecot_mailbox_fixture(dovecot: DovecotServer) -> Iterator[list[bytes]]:
    """Reset the Maildir to :data:`TEST_MESSAGES`; return what RETR must yield.

    On failure of the test, the tail of the Dovecot log is printed.
    """
    expected = dovecot.populate(TEST_MESSAGES)
    start = dovecot.log_path.stat().st_size if dovecot.log_path.exists() else 0
    yield expected
    # pytest shows captured teardown output only when the test failed.
    print_log_since(dovecot, start)


def print_log_since(server: DovecotServer, offset: int) -> None:
    """Print the Dovecot log written after *offset* (pytest shows it on failure)."""
    try:
        with server.log_path.open("rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
    except OSError:
        return
    print(f"--- {server.log_path} ---\n{text}")

"""``pop3proto demo``: the quickstart, with no set-up and no network.

:func:`run_demo` generates a sample maildrop in a temporary directory (a
few hundred messages with dot-lines, ``From `` lines, 8-bit UTF-8 text and
one multi-megabyte message), serves it with ``pop3proto serve`` in a child
process on 127.0.0.1 (a free port) with STLS and a throw-away certificate,
and fetches it back three times, each in its own session:

1. with the pipelined client (:meth:`Client.retrieve_many`, RFC 2449 §6.6),
2. one message at a time (a RETR, then wait for the reply, then the next),
3. with the code of ``pop3proto fetch`` into a Maildir (and once more, to
   show that nothing is fetched twice),

verifying every byte each time, and prints what happened and how fast.
Finally it stops the server with SIGTERM and shows the server's session log.

The certificate comes from ``trustme`` when it is importable (it is a test
dependency only), else from the ``openssl`` command (a self-signed
certificate for 127.0.0.1), else the demo runs without TLS, which is safe
on the loopback interface, and says so.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import re
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Final

from ..client._base import DEFAULT_WINDOW, WINDOW_BYTES
from ..client._options import TLSMode
from ..client._sync import Client
from ._account import Account
from ._common import EXIT_FAILURE, EXIT_OK, CLIError, signals_raise
from ._fetch import FetchOptions, fetch

__all__ = [
    "run_demo",
    "run_demo_command",
    "generate_maildrop",
    "DemoCertificate",
    "make_certificate",
]

_HOST: Final = "127.0.0.1"
_USER: Final = "demo"
# Deterministic content: the same sample every run.
_SEED: Final = 1939

_WORDS: Final = (
    *("pop3", "message", "maildrop", "server", "client", "pipelining", "stream"),
    *("octet", "line", "dot", "protocol", "session", "state", "transaction"),
    *("update", "greeting", "capability", "Grüße", "Köln", "naïve", "café"),
    *("façade", "smörgåsbord", "Ελληνικά", "русский", "日本語", "中文", "한국어"),
    *("emoji", "📬", "✉️", "ünïcödé"),
)


# ---------------------------------------------------------------------------
# The sample maildrop
# ---------------------------------------------------------------------------


def _ordinary_message(rng: random.Random, index: int) -> bytes:
    size = int(200 * (150 ** rng.random()))  # log-uniform, 200 B - 30 kB
    headers = (
        f"From: Sender {index} <sender{index}@example.org>\n"
        f"To: {_USER}@example.org\n"
        f"Subject: sample message {index} \u2013 {rng.choice(_WORDS)}\n"
        f"Date: Thu, 01 Jan 2026 00:{index // 60 % 60:02d}:{index % 60:02d} +0000\n"
        f"Message-ID: <demo.{index}@example.org>\n"
        "MIME-Version: 1.0\n"
        "Content-Type: text/plain; charset=utf-8\n"
        "Content-Transfer-Encoding: 8bit\n"
        "\n"
    )
    lines: list[str] = []
    total = 0
    while total < size:
        roll = rng.random()
        if roll < 0.05:
            # Dot-lines: the server must stuff them and the client unstuff.
            line = rng.choice((".", "..", "...", ".hidden dot", ". space after dot", ".\t"))
        elif roll < 0.07:
            # Lines an mbox would have to quote.
            line = rng.choice(("From the start of a line", ">From quoted already"))
        elif roll < 0.09:
            line = ""
        else:
            line = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(1, 14)))
        lines.append(line)
        total += len(line.encode()) + 1
    return (headers + "\n".join(lines) + "\n").encode("utf-8")


def _big_message(size: int) -> bytes:
    header = (
        b"From: big@example.org\n"
        b"To: demo@example.org\n"
        b"Subject: the big one\n"
        b"Message-ID: <demo.big@example.org>\n"
        b"\n"
    )
    # Every line differs, so a lost or repeated line would show; every 97th
    # starts with a dot.
    body = b"".join(
        (b"." if n % 97 == 0 else b"") + b"line %08d %s\n" % (n, b"0123456789abcdef" * 4)
        for n in range(size // 76 + 1)
    )
    return header + body


def generate_maildrop(path: str, count: int, big_bytes: int) -> list[bytes]:
    """Write *count* ordinary messages and one of about *big_bytes* octets
    (placed in the middle) into a new Maildir at *path*; return them in
    POP3 order (LF line ends, as stored)."""
    rng = random.Random(_SEED)
    messages = [_ordinary_message(rng, i + 1) for i in range(count)]
    messages.insert(count // 2, _big_message(big_bytes))
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(path, sub), mode=0o700, exist_ok=True)
    base = 1_767_225_600  # 2026-01-01; the backend orders messages by mtime
    for index, message in enumerate(messages):
        name = os.path.join(path, "new", f"{base + index}.M{index}P1.demo")
        with open(name, "wb") as f:
            f.write(message)
        os.utime(name, (base + index, base + index))
    return messages


def _wire(message: bytes) -> bytes:
    """What RETR delivers for a stored message: LF -> CRLF (RFC 1939 §11)."""
    return message.replace(b"\n", b"\r\n")


# ---------------------------------------------------------------------------
# A throw-away certificate
# ---------------------------------------------------------------------------


@dataclass
class DemoCertificate:
    """A certificate for 127.0.0.1: the server's PEM file (key included) and
    a client context that trusts it, and where they came from."""

    pem: str
    client: ssl.SSLContext
    source: str


def _from_trustme(workdir: str) -> DemoCertificate | None:
    try:
        import trustme
    except ImportError:
        return None
    ca = trustme.CA()
    issued = ca.issue_cert(_HOST, "localhost")
    pem = os.path.join(workdir, "server.pem")
    issued.private_key_and_cert_chain_pem.write_to_path(pem)
    os.chmod(pem, 0o600)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return DemoCertificate(pem, client, "a throw-away CA made with trustme")


def _from_openssl(workdir: str) -> DemoCertificate | None:
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    cert = os.path.join(workdir, "cert.pem")
    key = os.path.join(workdir, "key.pem")
    pem = os.path.join(workdir, "server.pem")
    command = [
        openssl,
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        key,
        "-out",
        cert,
        "-days",
        "2",
        "-subj",
        "/CN=pop3proto demo",
        "-addext",
        f"subjectAltName=IP:{_HOST},DNS:localhost",
    ]
    try:
        subprocess.run(command, check=True, capture_output=True, timeout=30)
        with open(pem, "wb") as out:
            for part in (key, cert):
                with open(part, "rb") as f:
                    out.write(f.read())
        os.chmod(pem, 0o600)
        client = ssl.create_default_context(cafile=cert)
    except (OSError, subprocess.SubprocessError, ssl.SSLError):
        return None
    # A self-signed certificate is its own CA; Python 3.13's strict X.509
    # checks want a separate one, which this throw-away setup does not need.
    client.verify_flags &= ~getattr(ssl, "VERIFY_X509_STRICT", 0)
    return DemoCertificate(pem, client, "a self-signed certificate made with openssl")


def make_certificate(workdir: str, source: str = "auto") -> DemoCertificate | None:
    """A certificate for 127.0.0.1 from *source* (``auto``, ``trustme``,
    ``openssl`` or ``none``), its files in *workdir*; ``None`` when none
    could be made."""
    if source in ("auto", "trustme"):
        made = _from_trustme(workdir)
        if made is not None or source == "trustme":
            return made
    if source in ("auto", "openssl"):
        return _from_openssl(workdir)
    return None


# ---------------------------------------------------------------------------
# The server: ``pop3proto serve`` in a child process
# ---------------------------------------------------------------------------

_LISTENING: Final = re.compile(r"listening on [^\s]+:(\d+)")
_SESSION: Final = re.compile(r"session end: (.*)")


class _ServeProcess:
    """``pop3proto serve`` on 127.0.0.1 (a free port) as a child process.

    A separate process, as in real life: the client's and the server's
    Python code run in parallel instead of taking turns on one GIL.  One
    worker process: the demo has one client at a time, and a machine's
    every core would only cost start-up time.
    """

    def __init__(self, args: list[str], log_path: str) -> None:
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed by stop()
        module = __name__.rpartition(".")[0]  # pop3proto.adapters.cli
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                module,
                "serve",
                "--listen",
                f"{_HOST}:0",
                "--workers",
                "1",
                *args,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
        )
        deadline = time.monotonic() + 30
        while True:
            match = _LISTENING.search(self.log())
            if match is not None:
                self.port = int(match.group(1))
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise CLIError(f"the demo server did not start: {self.log().strip()}")
            time.sleep(0.02)

    def log(self) -> str:
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self) -> int:
        """SIGTERM, as an administrator would; return the exit status."""
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return -1
        finally:
            self._log.close()


# ---------------------------------------------------------------------------
# The demo
# ---------------------------------------------------------------------------


def _mb(octets: float) -> str:
    return f"{octets / 1e6:.1f} MB"


def _rate(octets: int, seconds: float) -> str:
    return f"{octets / 1e6 / seconds:.0f} MB/s" if seconds > 0 else "-"


def _scratch_dir() -> str:
    # A RAM-backed directory keeps the Maildir delivery from measuring the
    # disk's fsync latency instead of the protocol; any temp dir works.
    shm = "/dev/shm"
    with contextlib.suppress(OSError):
        if os.path.isdir(shm) and os.access(shm, os.W_OK):
            stat = os.statvfs(shm)
            if stat.f_bavail * stat.f_frsize > 256 << 20:
                return tempfile.mkdtemp(prefix="pop3proto-demo-", dir=shm)
    return tempfile.mkdtemp(prefix="pop3proto-demo-")


@contextlib.contextmanager
def _workdir(keep: bool) -> Iterator[str]:
    path = _scratch_dir()
    try:
        yield path
    finally:
        if keep:
            print(f"kept {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)


class _Checker:
    """Counts matches and mismatches against the expected wire octets."""

    def __init__(self, expected: list[bytes]) -> None:
        self.expected = expected
        self.mismatches: list[int] = []
        self.octets = 0

    def check(self, number: int, data: bytes) -> None:
        self.octets += len(data)
        if data != self.expected[number - 1]:
            self.mismatches.append(number)


def run_demo_command(args: argparse.Namespace) -> int:
    """``pop3proto demo``: run the demo with the options in *args*."""
    # Ctrl-C ends the demo (exit 130), whatever handlers this process
    # inherited; the server child is stopped on the way out.
    with signals_raise(sigterm=False):
        return run_demo(
            messages=args.messages,
            big_mb=args.big_mb,
            runtime=args.runtime,
            tls=args.tls,
            keep=args.keep,
        )


def run_demo(
    *,
    messages: int = 300,
    big_mb: int = 4,
    runtime: str = "asyncio",
    tls: str = "auto",
    keep: bool = False,
) -> int:
    """Run the demo (see the module docstring); return the exit status."""
    out = sys.stdout
    old_asyncio = sys.version_info < (3, 11)
    if old_asyncio and runtime == "asyncio" and tls != "none":  # pragma: no cover - 3.10 only
        print(
            "(Python 3.10's asyncio cannot start TLS on a connection: using the sync "
            "server runtime)",
            file=out,
        )
        runtime = "sync"

    with _workdir(keep) as work:
        maildir = os.path.join(work, "served")
        started = time.perf_counter()
        stored = generate_maildrop(maildir, messages, big_mb << 20)
        expected = [_wire(m) for m in stored]
        total = sum(len(m) for m in expected)
        print(
            f"1. generated {len(stored)} messages ({_mb(total)} on the wire, the largest "
            f"{_mb(max(len(m) for m in expected))}, with dot-lines and 8-bit UTF-8) in "
            f"{maildir} in {time.perf_counter() - started:.2f} s",
            file=out,
        )

        certificate = make_certificate(work, tls)
        password = secrets.token_urlsafe(16)
        users = os.path.join(work, "users")
        with open(os.open(users, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
            f.write(f"{_USER}:{{PLAIN}}{password}\n")
        args = ["--maildir", maildir, "--users", users, "--runtime", runtime]
        if certificate is not None:
            args += ["--tls-cert", certificate.pem]
        server = _ServeProcess(args, os.path.join(work, "serve.log"))
        try:
            outcome = _fetch_three_ways(server.port, password, certificate, expected, stored,
                                        work, runtime, out)  # fmt: skip
        finally:
            status = server.stop()
        sessions = _SESSION.findall(server.log())
        for line in sessions:
            print(f"   server log: {line}", file=out)
        problems = list(outcome)
        if status != 0:
            problems.append(f"the server exited with status {status} after SIGTERM")
        if problems:
            print("FAILED: " + "; ".join(problems), file=out)
            return EXIT_FAILURE
        print(
            f"OK: all {len(stored)} messages verified byte for byte, three times; the server "
            f"stopped cleanly on SIGTERM ({time.perf_counter() - started:.1f} s in all)",
            file=out,
        )
        return EXIT_OK


def _fetch_three_ways(
    port: int,
    password: str,
    certificate: DemoCertificate | None,
    expected: list[bytes],
    stored: list[bytes],
    work: str,
    runtime: str,
    out: IO[str],
) -> list[str]:
    """Steps 2 to 5 of the demo; return the problems found."""
    if certificate is not None:
        how = f"with STLS ({certificate.source})"
    else:
        how = (
            "WITHOUT TLS (no trustme module and no openssl command to make a certificate; "
            "plaintext stays on the loopback interface)"
        )
    print(f"2. pop3proto serve ({runtime}) listens on {_HOST}:{port} {how}", file=out)
    client_tls: TLSMode = "starttls" if certificate is not None else "none"
    context = certificate.client if certificate is not None else None

    def connect(window: int = DEFAULT_WINDOW) -> Client:
        return Client(_HOST, port, tls=client_tls, ssl_context=context, window=window)

    # -- pipelined --------------------------------------------------------
    pipelined = _Checker(expected)
    with connect() as client:
        method = client.login(_USER, password)
        numbers = sorted(client.list())
        pipelining = client.capabilities().pipelining
        begin = time.perf_counter()
        for number, data in client.retrieve_many(numbers):
            pipelined.check(number, data)
        fast = time.perf_counter() - begin
    flight = (
        f"PIPELINING, up to {DEFAULT_WINDOW} RETRs or {WINDOW_BYTES >> 20} MiB (by LIST) in flight"
    )
    print(
        f"3. pipelined fetch (login {method}{', TLS' if client.tls else ''}, "
        f"{flight if pipelining else 'no PIPELINING'}): "
        f"{len(numbers)} messages, {_mb(pipelined.octets)} in {fast:.2f} s "
        f"= {_rate(pipelined.octets, fast)}, {len(numbers) / fast:.0f} messages/s",
        file=out,
    )

    # -- one at a time ----------------------------------------------------
    serial = _Checker(expected)
    with connect(window=1) as client:
        client.login(_USER, password)
        begin = time.perf_counter()
        for number in numbers:
            serial.check(number, client.retrieve(number))
        slow = time.perf_counter() - begin
    print(
        f"4. one at a time: {len(numbers)} messages in {slow:.2f} s "
        f"= {_rate(serial.octets, slow)}, {len(numbers) / slow:.0f} messages/s "
        f"(pipelined took {fast / slow:.2f}x this time: on loopback a round trip costs "
        "microseconds and the server's work is most of both figures; over a real network "
        "each round trip costs milliseconds, and with 5 ms of delay each way "
        "benchmarks/client_table.py measures pipelining at 40 to 160 times poplib)",
        file=out,
    )

    # -- pop3proto fetch into a Maildir ------------------------------------
    target = os.path.join(work, "fetched")
    options = FetchOptions(
        account=Account("pop3", _USER, _HOST, port),
        password=password,
        destination=target,
        kind="maildir",
        tls=client_tls,
        ssl_context=context,
        durable=True,
        progress=False,
    )
    result = fetch(options)
    fetched = _read_maildir(target)
    fetched_ok = sorted(fetched) == sorted(stored)
    print(
        f"5. pop3proto fetch into a Maildir: {len(result.stored)} messages stored in "
        f"{result.elapsed:.2f} s, each fsync'ed and recorded in the UIDL state file; "
        f"{'every file identical to the served one' if fetched_ok else 'MISMATCH'}",
        file=out,
    )
    again = fetch(options)
    print(
        f"   run again: {again.new} new messages (the state file remembers what was fetched)",
        file=out,
    )

    problems = []
    for name, checker in (("pipelined", pipelined), ("one at a time", serial)):
        if checker.mismatches or len(numbers) != len(expected):
            problems.append(f"{name}: messages {checker.mismatches[:10]} differ")
    if not fetched_ok or len(fetched) != len(stored):
        problems.append("the Maildir copy differs")
    if again.new != 0:
        problems.append("the second fetch found new messages")
    return problems


def _read_maildir(path: str) -> list[bytes]:
    found: list[bytes] = []
    for sub in ("new", "cur"):
        folder = os.path.join(path, sub)
        for name in sorted(os.listdir(folder)):
            with open(os.path.join(folder, name), "rb") as f:
                found.append(f.read())
    return found

"""Does a wrong password take the same time for every kind of user?

Times ``check_password`` with a wrong password for a user stored in the
clear, one stored with SCRAM keys (10,000 iterations), one stored as PBKDF2
(600,000 iterations) and an unknown name, and shows what SCRAM's first
server message gives away (the iteration count, and whether the salt
survives a restart), under SCRAM-SHA-256 and SCRAM-SHA-1 (the store's
derived SHA-1 keys, offered when every user is stored in plaintext; the
PBKDF2- and SCRAM-stored users get decoys).  SECURITY.md quotes the
results::

    python benchmarks/auth_timing.py [--runs 7]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pop3proto
from pop3proto.adapters.server import UsersFile, hash_password


def server_first(auth: UsersFile, user: str, hash_name: str = "sha256") -> dict[str, str]:
    lookup = auth.scram_credentials if hash_name == "sha256" else auth.scram_sha1_credentials
    server = pop3proto.ScramServer(lookup, hash_name=hash_name)
    server.step(None)
    reply = server.step(f"n,,n={user},r=nonce".encode())
    assert reply is not None
    return dict(part.split("=", 1) for part in reply.decode().split(","))


USERS = ("plain", "scram", "pbkdf2", "unknown")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--first", metavar="FILE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.first:
        # One "server process": print what SCRAM shows each user.
        auth = UsersFile(args.first)
        print(
            json.dumps(
                {f"{h} {u}": server_first(auth, u, h) for h in ("sha256", "sha1") for u in USERS}
            )
        )
        return
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "users"
        path.write_text(
            "plain:plain pw\n"
            f"scram:{hash_password('scram pw', scheme='SCRAM-SHA-256', iterations=10_000)}\n"
            f"pbkdf2:{hash_password('pbkdf2 pw')}\n"
        )
        auth = UsersFile(path)
        times: dict[str, list[float]] = {user: [] for user in USERS}
        for _ in range(args.runs):
            # Round-robin, so that a change in the machine's load hits
            # every kind of user alike.
            for user in USERS:
                started = time.perf_counter()
                assert not auth.check_password(user, "wrong")
                times[user].append(time.perf_counter() - started)
        for user in USERS:
            median = statistics.median(times[user]) * 1000
            print(f"wrong PASS, {user:8}: median {median:8.1f} ms")
        # SCRAM's first step: the lookup behind the server-first message.
        lookups: dict[str, list[float]] = {user: [] for user in USERS}
        for _ in range(args.runs):
            for user in USERS:
                started = time.perf_counter()
                auth.scram_credentials(user)
                lookups[user].append(time.perf_counter() - started)
        for user in USERS:
            median = statistics.median(lookups[user]) * 1000
            print(f"SCRAM lookup, {user:8}: median {median:8.2f} ms")
        # Two server processes one after the other: a restart.
        runs = [
            json.loads(
                subprocess.run(
                    [sys.executable, __file__, "--first", str(path)],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
            )
            for _ in range(2)
        ]
        for hash_name, mech in (("sha256", "SCRAM-SHA-256"), ("sha1", "SCRAM-SHA-1")):
            for user in USERS:
                before, after = runs[0][f"{hash_name} {user}"], runs[1][f"{hash_name} {user}"]
                same = "same" if before["s"] == after["s"] else "CHANGED"
                print(f"{mech:13} {user:8}: i={before['i']:>6}; salt after a restart: {same}")


if __name__ == "__main__":
    main()

"""OAuth 2.0 for the command line: where ``fetch`` gets its token, and how
``serve`` checks one.

* ``fetch --oauth2-token-env VAR`` reads the access token from the
  environment; ``fetch --oauth2-token-cmd CMD`` runs ``CMD`` with
  ``/bin/sh -c`` once per connection and takes its standard output as the
  token (trailing white space removed), the way msmtp's ``passwordeval`` and
  mpop's and getmail's token commands plug in a user's own refresh tool.
* ``serve --oauth2-verify-cmd CMD`` builds a token verifier from a command
  (see :func:`command_verifier` for its conventions).

The token is never put on a command line (where ``ps`` shows it), never
logged and never part of an error message: the verify command gets it on
its standard input.
"""

from __future__ import annotations

import logging
import os
import subprocess
from typing import TYPE_CHECKING

from pop3proto.sasl import OAuthDenial

from ._common import EXIT_AUTH, EXIT_USAGE, CLIError, one_line

if TYPE_CHECKING:
    from ..server._config import TokenVerifier

__all__ = ["token_from_env", "token_from_command", "command_verifier", "VERIFY_TIMEOUT"]

log = logging.getLogger("pop3proto.server")

#: Seconds a verify command may take before the token counts as refused.
VERIFY_TIMEOUT = 10.0

#: Where the verify command finds the user the client named.
USER_VARIABLE = "POP3PROTO_OAUTH2_USER"


def _check_token(token: str, source: str) -> str:
    token = token.strip()
    if not token:
        raise CLIError(f"{source} gave an empty token", EXIT_AUTH)
    # RFC 6750 §2.1: b64token is printable ASCII without spaces; anything
    # else (a second line, a prompt the tool printed) cannot be a token.
    if not token.isascii() or not all(33 <= ord(c) <= 126 for c in token):
        raise CLIError(
            f"{source} did not print one access token (it printed spaces, several lines "
            "or non-ASCII text)",
            EXIT_AUTH,
        )
    return token


def token_from_env(variable: str) -> str:
    """The token in environment variable *variable* (``--oauth2-token-env``)."""
    value = os.environ.get(variable)
    if value is None:
        raise CLIError(
            f"--oauth2-token-env: the environment variable {variable} is not set", EXIT_USAGE
        )
    return _check_token(value, f"--oauth2-token-env {variable}")


def token_from_command(command: str) -> str:
    """Run *command* with the shell; its standard output is the token.

    Standard error is left on the terminal (the tool may explain itself or
    ask the user to sign in).  A failure to run, a non-zero exit or an
    output that is not one token raises :class:`CLIError` (exit 3), naming
    the command's status, never its output.
    """
    try:
        done = subprocess.run(  # the user's own shell command, by design
            command, shell=True, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, check=False
        )
    except OSError as exc:  # pragma: no cover - /bin/sh missing
        raise CLIError(
            f"--oauth2-token-cmd: cannot run the shell: {exc.strerror}", EXIT_AUTH
        ) from None
    if done.returncode != 0:
        raise CLIError(
            f"--oauth2-token-cmd failed (exit status {done.returncode}); no token", EXIT_AUTH
        )
    try:
        text = done.stdout.decode("ascii")
    except UnicodeDecodeError:
        raise CLIError(
            "--oauth2-token-cmd printed non-ASCII bytes, not a token", EXIT_AUTH
        ) from None
    return _check_token(text, "--oauth2-token-cmd")


def command_verifier(command: str, *, timeout: float = VERIFY_TIMEOUT) -> TokenVerifier:
    """A token verifier that asks *command* (``serve --oauth2-verify-cmd``).

    For each token login the command is run with ``/bin/sh -c``, with the
    token and a newline on its standard input and the user the client named
    in ``$POP3PROTO_OAUTH2_USER``:

    * exit status 0 accepts the token.  The first line of standard output,
      if not empty, is the user to log in as (the maildrop to open);
      otherwise the named user is.
    * any other status refuses it.  If standard output is a JSON object, its
      ``status``, ``scope`` and ``openid-configuration`` fill the error
      challenge the client is sent (RFC 7628 §3.2.2); otherwise the
      mechanism's usual error is sent.
    * a command still running after *timeout* seconds is killed, and the
      token refused.

    Standard error goes to the server's standard error.  The command is
    run where the authenticator is called (a worker thread for the asyncio
    and trio servers), so a slow one holds up only its own session.
    """

    def verify(user: str, token: str) -> str | OAuthDenial:
        env = dict(os.environ, **{USER_VARIABLE: user})
        try:
            done = subprocess.run(  # the administrator's command, by design
                command,
                shell=True,
                input=(token + "\n").encode("utf-8"),
                stdout=subprocess.PIPE,
                env=env,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            log.warning("--oauth2-verify-cmd timed out after %g s; token refused", timeout)
            return OAuthDenial()
        output = done.stdout.decode("utf-8", errors="replace")
        if done.returncode == 0:
            identity = one_line(output.split("\n", 1)[0]).strip()
            return identity or user
        denial = _denial_from(output)
        log.info("--oauth2-verify-cmd refused a token for %r (exit %d)", user, done.returncode)
        return denial

    return verify


def _denial_from(output: str) -> OAuthDenial:
    # A JSON object fills the error challenge; anything else gets the default.
    return OAuthDenial.from_challenge(output.strip().encode("utf-8")) or OAuthDenial()

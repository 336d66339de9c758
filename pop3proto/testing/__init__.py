"""Test your own POP3 code with pop3proto: in-memory engines, a reference
model of an RFC 1939 maildrop, hypothesis strategies, ready-made properties.

Importing this package imports no I/O module and not hypothesis; the
strategies (:mod:`pop3proto.testing.strategies`) and the property runners
(:func:`check_server`, :func:`check_client`) import hypothesis when first
used (``pip install 'pop3proto[testing]'``).

* :class:`ConnectionPair` and :func:`drain`: two engines joined in memory,
  and the drain loop (stops at ``NEED_DATA``, ``PAUSED``, and after
  ``ConnectionClosed``).
* :class:`Mailbox`, :class:`MaildropModel`, :func:`run_script`: the
  reference model and a runner that checks one scripted session.
* :class:`ServerUnderTest` (``start``/``receive``/``closed``/``close``) and
  :data:`ServerFactory`: what a server under test provides;
  ``pop3proto.adapters.testing.session_factory()`` adapts the bundled one.
* :func:`check_server`: random legal and illegal sessions under random
  splits, every reply checked against the model.
* :class:`FakeServer` and :func:`check_client`: a scripted server with
  faults (a cut at any octet, odd but legal replies) for testing a client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._fake import FakeServer
from ._model import (
    Mailbox,
    MaildropModel,
    Mismatch,
    ServerFactory,
    ServerUnderTest,
    Step,
    run_script,
)
from ._pair import ConnectionPair, drain

if TYPE_CHECKING:
    from ._properties import Download, check_client, check_server

__all__ = [
    "ConnectionPair",
    "drain",
    "Mailbox",
    "MaildropModel",
    "Mismatch",
    "Step",
    "run_script",
    "ServerUnderTest",
    "ServerFactory",
    "FakeServer",
    "check_server",
    "check_client",
    "Download",
]

_LAZY = frozenset({"check_server", "check_client", "Download"})


def __getattr__(name: str) -> Any:
    # The property runners need hypothesis: import it only when asked.
    if name in _LAZY:
        from . import _properties

        return getattr(_properties, name)
    raise AttributeError(f"module 'pop3proto.testing' has no attribute {name!r}")

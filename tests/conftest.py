"""Shared pytest configuration: Hypothesis profiles.

Two profiles are registered:

* ``ci`` (the default): about 100 examples per property and no deadline, so
  that the whole property/lockstep suite stays well under a minute on a
  2-core machine.
* ``deep``: thousands of examples per property, for a long fuzzing run.

Pick one with the ``POP3PROTO_HYPOTHESIS_PROFILE`` environment variable::

    POP3PROTO_HYPOTHESIS_PROFILE=deep python -m pytest tests/test_lockstep.py
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

PROFILE_ENV_VAR = "POP3PROTO_HYPOTHESIS_PROFILE"

settings.register_profile(
    "ci",
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.register_profile(
    "deep",
    max_examples=5000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.load_profile(os.environ.get(PROFILE_ENV_VAR, "ci"))

"""The old home of the client core, now ``client/_core.py``: a re-export."""

# temporary: removed at merge (tests/server/test_secrets.py imports it here)
from .client._core import ClientCore as ClientCore

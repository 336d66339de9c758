"""The old home of the client exceptions, now ``client/_errors.py``: re-exports."""

# temporary: removed at merge (tests/server/test_secrets.py imports them here)
from .client._errors import AuthenticationFailed as AuthenticationFailed
from .client._errors import InsecureAuthenticationRefused as InsecureAuthenticationRefused

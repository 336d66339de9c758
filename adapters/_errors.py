"""Temporary: removed at merge.  The client exceptions moved to ``client/_errors.py``."""

from .client._errors import AuthenticationFailed as AuthenticationFailed
from .client._errors import InsecureAuthenticationRefused as InsecureAuthenticationRefused

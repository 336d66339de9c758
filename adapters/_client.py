"""Temporary: removed at merge.  The client core moved to ``client/_core.py``."""

from .client._core import ClientCore as ClientCore

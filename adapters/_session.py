"""Old home of the server session's names, re-exported for the modules that
still import them from here.

Temporary: removed when the client side moves.
"""

from .server._session import ServerConfig as ServerConfig

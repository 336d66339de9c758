"""Old home of the server session's names, re-exported for the modules that
still import them from here."""

# temporary: removed when the client side moves
from .server._config import ServerConfig as ServerConfig

"""Old home of the trio server, re-exported for the modules that still
import it from here."""

# temporary: removed when the client side moves
from .server._trio import Server as Server
from .server._trio import serve as serve

"""Old home of the blocking server, re-exported for the modules that still
import it from here."""

# temporary: removed when the client side moves
from .server._sync import Server as Server
from .server._sync import serve as serve

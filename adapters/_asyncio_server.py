"""Old home of the asyncio server, re-exported for the modules that still
import it from here."""

# temporary: removed when the client side moves
from .server._asyncio import STLS_SUPPORTED as STLS_SUPPORTED
from .server._asyncio import Server as Server
from .server._asyncio import serve as serve

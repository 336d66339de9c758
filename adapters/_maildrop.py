"""Old home of the maildrop backends, re-exported for the modules that still
import them from here."""

# temporary: removed when the client side moves
from .mailstore._base import MaildropBackend as MaildropBackend
from .mailstore._maildir import MaildirBackend as MaildirBackend
from .mailstore._maildir import MaildirMaildrop as MaildirMaildrop
from .mailstore._memory import MemoryBackend as MemoryBackend

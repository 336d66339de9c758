"""Old home of the authenticators, re-exported for the modules that still
import them from here."""

# temporary: removed when the client side moves
from .mailstore._users import Authenticator as Authenticator
from .mailstore._users import DictAuthenticator as DictAuthenticator
from .mailstore._users import UsersFile as UsersFile
from .mailstore._users import hash_password as hash_password

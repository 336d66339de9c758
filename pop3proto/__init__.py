"""pop3proto: a sans-I/O POP3 protocol engine for clients and servers.

The engine turns bytes into typed events and events into bytes, tracking the
RFC 1939 session states; it never does I/O.  Start with :class:`Connection`::

    import pop3proto

    conn = pop3proto.Connection(pop3proto.CLIENT)
    conn.receive_data(b"+OK POP3 ready\\r\\n")
    conn.next_event()                  # Greeting(text='POP3 ready')
    conn.send(pop3proto.User("alice"))  # b'USER alice\\r\\n'
"""

import importlib as _importlib

# Not typing.TYPE_CHECKING: importing typing would cost more than the rest of
# this module.  Type checkers treat any name TYPE_CHECKING as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from ._apop import apop_digest, parse_greeting_timestamp
    from ._capabilities import Capabilities
    from ._commands import command_from_line
    from ._connection import (
        CLIENT,
        NEED_DATA,
        PAUSED,
        SERVER,
        Connection,
        NeedData,
        NextEvent,
        Paused,
        Role,
    )
    from ._errors import LocalProtocolError, ProtocolError, RemoteProtocolError
    from ._events import (
        Apop,
        Auth,
        BadCommand,
        Capa,
        CloseReason,
        Command,
        ConnectionClosed,
        Dele,
        Event,
        Extension,
        Lang,
        Last,
        List,
        Noop,
        Pass,
        Quit,
        Response,
        Retr,
        Rset,
        SaslCancel,
        SaslChallenge,
        SaslResponse,
        Stat,
        Stls,
        Top,
        Uidl,
        User,
        Utf8,
    )
    from ._response_events import (
        CapaOk,
        Err,
        Greeting,
        LangOk,
        LastOk,
        ListEntryOk,
        ListOk,
        MessageData,
        MessageEnd,
        MessageStart,
        Ok,
        StatOk,
        UidlEntryOk,
        UidlOk,
    )
    from ._responses import (
        AUTH,
        IN_USE,
        LOGIN_DELAY,
        SYS_PERM,
        SYS_TEMP,
        UTF8,
        ResponseCode,
    )
    from ._state import State
    from .sasl import (
        CLIENT_MECHANISMS,
        MECHANISMS,
        SERVER_MECHANISMS,
        CramMD5Client,
        CramMD5Server,
        LoginClient,
        LoginServer,
        Mechanism,
        OAuthBearerClient,
        OAuthBearerServer,
        PlainClient,
        PlainServer,
        SaslAuthenticationFailed,
        SaslClientMechanism,
        SaslError,
        SaslServerMechanism,
        SaslServerVerificationFailed,
        ScramClient,
        ScramCredentials,
        ScramServer,
        XOAuth2Client,
        XOAuth2Server,
        fits_initial_response,
        sasl_b64decode,
        sasl_b64encode,
        saslprep,
        scram_credentials,
    )

# Where each name lives: the engine's modules are imported on first use of
# one of their names (PEP 562), so ``import pop3proto`` (and with it every
# adapter, the poplib drop-in included) costs almost nothing until the
# engine is used.  Type checkers see the plain imports above.
_EXPORTS: dict[str, tuple[str, ...]] = {
    "._apop": (
        "apop_digest",
        "parse_greeting_timestamp",
    ),
    "._capabilities": ("Capabilities",),
    "._commands": ("command_from_line",),
    "._connection": (
        "CLIENT",
        "NEED_DATA",
        "PAUSED",
        "SERVER",
        "Connection",
        "NeedData",
        "NextEvent",
        "Paused",
        "Role",
    ),
    "._errors": (
        "LocalProtocolError",
        "ProtocolError",
        "RemoteProtocolError",
    ),
    "._events": (
        "Apop",
        "Auth",
        "BadCommand",
        "Capa",
        "CloseReason",
        "Command",
        "ConnectionClosed",
        "Dele",
        "Event",
        "Extension",
        "Lang",
        "Last",
        "List",
        "Noop",
        "Pass",
        "Quit",
        "Response",
        "Retr",
        "Rset",
        "SaslCancel",
        "SaslChallenge",
        "SaslResponse",
        "Stat",
        "Stls",
        "Top",
        "Uidl",
        "User",
        "Utf8",
    ),
    "._response_events": (
        "CapaOk",
        "Err",
        "Greeting",
        "LangOk",
        "LastOk",
        "ListEntryOk",
        "ListOk",
        "MessageData",
        "MessageEnd",
        "MessageStart",
        "Ok",
        "StatOk",
        "UidlEntryOk",
        "UidlOk",
    ),
    "._responses": (
        "AUTH",
        "IN_USE",
        "LOGIN_DELAY",
        "SYS_PERM",
        "SYS_TEMP",
        "UTF8",
        "ResponseCode",
    ),
    "._state": ("State",),
    ".sasl": (
        "CLIENT_MECHANISMS",
        "MECHANISMS",
        "SERVER_MECHANISMS",
        "CramMD5Client",
        "CramMD5Server",
        "LoginClient",
        "LoginServer",
        "Mechanism",
        "OAuthBearerClient",
        "OAuthBearerServer",
        "PlainClient",
        "PlainServer",
        "SaslAuthenticationFailed",
        "SaslClientMechanism",
        "SaslError",
        "SaslServerMechanism",
        "SaslServerVerificationFailed",
        "ScramClient",
        "ScramCredentials",
        "ScramServer",
        "XOAuth2Client",
        "XOAuth2Server",
        "fits_initial_response",
        "sasl_b64decode",
        "sasl_b64encode",
        "saslprep",
        "scram_credentials",
    ),
}
_WHERE: dict[str, str] = {name: module for module, names in _EXPORTS.items() for name in names}

__version__ = "0.1.0.dev0"

__all__ = [
    # the connection
    "Connection",
    "Role",
    "CLIENT",
    "SERVER",
    "NEED_DATA",
    "PAUSED",
    "NeedData",
    "Paused",
    "NextEvent",
    "State",
    # errors
    "ProtocolError",
    "LocalProtocolError",
    "RemoteProtocolError",
    # events: bases
    "Event",
    "Command",
    "Response",
    # events: commands
    "User",
    "Pass",
    "Apop",
    "Auth",
    "Stat",
    "List",
    "Retr",
    "Dele",
    "Noop",
    "Rset",
    "Quit",
    "Top",
    "Uidl",
    "Last",
    "Capa",
    "Stls",
    "Utf8",
    "Lang",
    "Extension",
    "BadCommand",
    "command_from_line",
    # events: SASL lines
    "SaslChallenge",
    "SaslResponse",
    "SaslCancel",
    # events: responses
    "Greeting",
    "Ok",
    "Err",
    "StatOk",
    "LastOk",
    "ListOk",
    "ListEntryOk",
    "UidlOk",
    "UidlEntryOk",
    "CapaOk",
    "LangOk",
    "MessageStart",
    "MessageData",
    "MessageEnd",
    "ConnectionClosed",
    "CloseReason",
    # payload types
    "Capabilities",
    "ResponseCode",
    "IN_USE",
    "LOGIN_DELAY",
    "SYS_TEMP",
    "SYS_PERM",
    "AUTH",
    "UTF8",
    # authentication helpers
    "apop_digest",
    "parse_greeting_timestamp",
    "fits_initial_response",
    "sasl_b64encode",
    "sasl_b64decode",
    "saslprep",
    "SaslError",
    "SaslAuthenticationFailed",
    "SaslServerVerificationFailed",
    "SaslClientMechanism",
    "SaslServerMechanism",
    "PlainClient",
    "PlainServer",
    "LoginClient",
    "LoginServer",
    "CramMD5Client",
    "CramMD5Server",
    "ScramClient",
    "ScramServer",
    "ScramCredentials",
    "scram_credentials",
    "XOAuth2Client",
    "XOAuth2Server",
    "OAuthBearerClient",
    "OAuthBearerServer",
    "Mechanism",
    "MECHANISMS",
    "CLIENT_MECHANISMS",
    "SERVER_MECHANISMS",
    "__version__",
]


if not TYPE_CHECKING:  # pragma: no branch - always true at run time
    # Hidden from type checkers, for which the names above are plain
    # imports: a module __getattr__ would make every misspelt attribute
    # type-check.

    def __getattr__(name: str) -> object:
        module = _WHERE.get(name)
        if module is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(_importlib.import_module(module, __name__), name)
        globals()[name] = value  # later look-ups skip this function
        return value

    def __dir__() -> list[str]:
        return sorted(set(globals()) | set(__all__))


del TYPE_CHECKING

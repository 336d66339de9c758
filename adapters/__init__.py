"""I/O adapters for the pop3proto engine, installed as ``pop3proto.adapters``.

Each adapter only moves bytes between a transport and a
:class:`pop3proto.Connection`; the protocol logic lives in the engine.
"""

"""The POP3 server, by role.

* :mod:`._session`: the I/O-free session (what the server *does*).
* :mod:`._sync`, :mod:`._asyncio`, :mod:`._trio`: the runtime loops, which
  only move bytes between a transport and a session.

The public faces are :mod:`pop3proto.adapters.sync`, ``.asyncio`` and
``.trio``; the modules here are private.
"""

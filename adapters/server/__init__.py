"""The POP3 server, by role.

I/O-free:

* :mod:`._session`: the session, what the server *does* with each
  command; with :mod:`._authorization` (the logins) and
  :mod:`._transaction` (the open maildrop, UPDATE).
* :mod:`._config`: the settings, the statistics and end reasons, and
  small policy helpers.
* :mod:`._base`: the options every server takes, checked once.

The runtime loops, which only move bytes between a transport and a
session: :mod:`._sync` (blocking sockets, a thread per connection),
:mod:`._asyncio` and :mod:`._trio`.

The public faces are :mod:`pop3proto.adapters.sync`, ``.asyncio`` and
``.trio``; the modules here are private.
"""

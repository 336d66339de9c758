"""The POP3 server, by role.

I/O-free:

* :mod:`._session`: the session, what the server *does* with each
  command; with :mod:`._authorization` (the logins) and
  :mod:`._transaction` (the open maildrop, UPDATE).
* :mod:`._config`: the settings, the statistics and end reasons, and
  small policy helpers.
* :mod:`._base`: the options every server takes, checked once.
* :mod:`._loop`: the one loop that serves a connection (batching the
  replies into writes, reading, the idle timeout) and how it is closed
  (the lingering close, by end reason).

The runtimes, which only move bytes between a transport and that loop:
:mod:`._sync` (blocking sockets, a thread per connection),
:mod:`._asyncio` and :mod:`._trio`.

The public faces are :mod:`pop3proto.adapters.sync`, ``.asyncio`` and
``.trio``; the modules here are private.
"""

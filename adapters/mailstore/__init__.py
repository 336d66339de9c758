"""Where a POP3 server's mail and users live.

* :mod:`._maildir`: the maildrop protocols and the Maildir and in-memory
  backends.
* :mod:`._users`: the authenticators (a users file, a mapping).

The public faces are :mod:`pop3proto.adapters.sync`, ``.asyncio`` and
``.trio``; the modules here are private.
"""

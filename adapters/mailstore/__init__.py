"""Where a POP3 server's mail and users live.

* :mod:`._base`: the maildrop model the server session sees (the
  :class:`Maildrop` and :class:`MaildropBackend` protocols,
  :class:`MessageInfo`, the errors).
* :mod:`._crlf`: stored octets served with CRLF line ends, and the cut
  for TOP; shared by every backend.
* :mod:`._maildir`, :mod:`._memory`: the Maildir and in-memory backends.
* :mod:`._users`: the authenticators (a users file, a mapping).
* :mod:`._destinations`: where ``pop3proto fetch`` stores mail (a Maildir
  or an mbox), the mbox reader and the line-end converter.

The public faces are :mod:`pop3proto.adapters.sync`, ``.asyncio`` and
``.trio``; the modules here are private.
"""

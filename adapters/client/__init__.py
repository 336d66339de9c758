"""The POP3 clients: one I/O-free core and a runner per runtime.

The public faces are :mod:`pop3proto.adapters.sync`,
:mod:`pop3proto.adapters.asyncio` and :mod:`pop3proto.adapters.trio`; this
package holds what they re-export, by role:

* the I/O-free core, which decides everything a client does:
  :mod:`._core` (:class:`ClientCore` and the TRANSACTION commands; how to
  write a runner), :mod:`._base` (session state and plumbing),
  :mod:`._login` (the login strategy), :mod:`._batch` (pipelined RETR),
  :mod:`._mechanisms` (the facts about login methods) and :mod:`._errors`
  (the typed exceptions);
* the runners, which only perform the core's requests: :mod:`._sync`
  (blocking sockets), :mod:`._async` (the API both async runners share),
  :mod:`._asyncio` and :mod:`._trio`, with :mod:`._options` (TLS modes and
  ports, decided once for all of them);
* the ``poplib`` compatibility classes: :mod:`._poplib` and
  :mod:`._poplib_body`
  (reading multi-line replies in bulk).

Nothing is imported here, so that importing the core does not import a
runtime (trio is optional).
"""

"""I/O adapters for the pop3proto engine, installed as ``pop3proto.adapters``.

Each adapter only moves bytes between a transport and a
:class:`pop3proto.Connection`; the protocol logic lives in the engine, and
what a client or a server *does* is written once, without I/O, and shared
by the three runtimes.  The public faces are :mod:`.sync` (blocking sockets,
including a drop-in for the standard library's ``poplib``), :mod:`.asyncio`
and :mod:`.trio`, and the ``pop3proto`` command (:mod:`.cli`).  Behind them,
by role:

* :mod:`.client`: the I/O-free client core and a runner per runtime;
* :mod:`.server`: the I/O-free server session, one loop policy, a runtime
  loop per runtime;
* :mod:`.mailstore`: where mail and users live (Maildir, mbox, memory,
  the users file);
* :mod:`.cli`: one module per command;
* :mod:`._seam`: the requests the I/O-free parts yield to a runtime.

See ``ARCHITECTURE.md`` for where each kind of change goes.
"""

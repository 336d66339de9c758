"""The ready-made property tests: :func:`check_server` and :func:`check_client`.

Imports hypothesis (only :mod:`pop3proto.testing.strategies` and this
module do).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from ._fake import FakeServer
from ._model import Mailbox, ServerFactory, ServerUnderTest, run_script
from .strategies import mailboxes, scripts

__all__ = ["check_server", "check_client", "Download"]

#: A client under test: given a connected server (bytes in, bytes out) and
#: the credentials, download every message; return ``{number: octets}``.
Download = Callable[[ServerUnderTest, str, str], Mapping[int, bytes]]


def check_server(
    factory: ServerFactory,
    *,
    max_examples: int = 100,
    illegal: bool = True,
    bare_lf: bool = False,
) -> None:
    """Property-test a server against the RFC 1939 reference model.

    For random mailboxes (:func:`~pop3proto.testing.strategies.mailboxes`)
    and random sessions (:func:`~pop3proto.testing.strategies.scripts`:
    legal and, with *illegal*, almost-valid and out-of-state commands, each
    line cut into random chunks), every reply must match the model: ``-ERR``
    for missing, deleted and refused things and state unchanged, octet
    counts equal to the bodies, bodies exact, unique-ids stable, and
    deletions applied on QUIT only (checked from a second session).  A
    failure raises with hypothesis's shrunk counterexample: the mailbox, the
    script, and what differed.  *bare_lf* adds messages with bare LFs (for
    servers that store octets as given).
    """

    @settings(
        max_examples=max_examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        database=None,
        report_multiple_bugs=False,
    )
    @given(data=st.data())
    def property_(data: st.DataObject) -> None:
        mailbox = data.draw(mailboxes(bare_lf=bare_lf), label="mailbox")
        script = data.draw(scripts(mailbox, illegal=illegal), label="script")
        note("commands: " + " | ".join(step.line.decode("latin-1") for step in script))
        run_script(factory(mailbox), mailbox, script)

    property_()


def check_client(
    download: Download,
    *,
    max_examples: int = 100,
    errors: tuple[type[BaseException], ...] = (Exception,),
) -> None:
    """Property-test a client against a scripted :class:`FakeServer`.

    For random mailboxes, *download* runs against a fake server that
    answers from the mailbox, sometimes in odd but legal ways and sometimes
    cutting the connection at a random octet.  Without a cut it must
    return exactly the mailbox's messages; with one it may also raise one
    of *errors*, but never return wrong or partial data.
    """

    @settings(
        max_examples=max_examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
        database=None,
        report_multiple_bugs=False,
    )
    @given(
        mailbox=mailboxes(),
        odd=st.booleans(),
        cut=st.none() | st.integers(0, 4000),
    )
    def property_(mailbox: Mailbox, odd: bool, cut: int | None) -> None:
        server = FakeServer(mailbox, cut_at=cut, odd=odd)
        expected = dict(enumerate(mailbox.messages, start=1))
        try:
            got = download(server, mailbox.user, mailbox.password)
        except errors:
            if cut is None:
                raise
            return
        assert dict(got) == expected, f"downloaded {dict(got)!r}, expected {expected!r}"

    property_()

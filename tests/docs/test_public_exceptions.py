"""Every public exception, engine and adapters: it pickles and unpickles with
its fields (so it crosses process pools and logging queues), and the ones
raised around credentials never carry them."""

from __future__ import annotations

import importlib
import inspect
import pickle
from typing import Any

import pytest

import pop3proto as p
from pop3proto.adapters.client._errors import ConnectionLost, POP3Error, ProtocolViolation

PUBLIC_MODULES = (
    "pop3proto",
    "pop3proto.adapters",
    "pop3proto.adapters.sync",
    "pop3proto.adapters.asyncio",
    "pop3proto.adapters.trio",
    "pop3proto.adapters.cli",
)
SECRET = "hunter2-s3cret"


def public_exceptions() -> list[type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for name in PUBLIC_MODULES:
        module = importlib.import_module(name)
        for attr in getattr(module, "__all__", ()):
            obj = getattr(module, attr)
            if inspect.isclass(obj) and issubclass(obj, BaseException):
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return [found[k] for k in sorted(found)]


EXCEPTIONS = public_exceptions()
_ERR = p.Err("no such message", p.SYS_TEMP)


def sample(cls: type[BaseException]) -> BaseException:
    """An instance of *cls* with every field set to something recognisable."""
    if issubclass(cls, ProtocolViolation):
        return cls("broken", error=p.RemoteProtocolError("bad line"), command="RETR 1")
    if issubclass(cls, ConnectionLost):
        return cls("lost", outcome_unknown=True, response=_ERR, command="QUIT")
    if issubclass(cls, POP3Error):
        return cls("failed", response=_ERR, command="RETR 3")
    if cls is p.ProtocolError:
        return p.LocalProtocolError("abstract base: a subclass stands in")
    if cls.__name__ == "CLIError":
        return cls("cannot connect", 7)  # type: ignore[call-arg]
    return cls("message")


def fields(exc: BaseException) -> dict[str, Any]:
    return {"type": type(exc), "args": exc.args, "str": str(exc), **vars(exc)}


def test_the_list_is_not_empty() -> None:
    names = {cls.__name__ for cls in EXCEPTIONS}
    assert {"LocalProtocolError", "RemoteProtocolError", "ProtocolViolation"} <= names
    assert {"SaslError", "ConnectionLost", "CLIError"} <= names


@pytest.mark.parametrize("cls", EXCEPTIONS, ids=lambda c: c.__name__)
def test_pickles_with_its_fields(cls: type[BaseException]) -> None:
    exc = sample(cls)
    back = pickle.loads(pickle.dumps(exc))
    assert fields(back) == fields(exc) or (
        # ProtocolViolation.error is an exception: compared by type and text.
        isinstance(exc, ProtocolViolation)
        and isinstance(back, ProtocolViolation)
        and type(back.error) is type(exc.error)
        and str(back.error) == str(exc.error)
        and (back.command, str(back)) == (exc.command, str(exc))
    )


def test_protocol_violation_keeps_the_engine_error() -> None:
    exc = sample(ProtocolViolation)
    back = pickle.loads(pickle.dumps(exc))
    assert isinstance(back, ProtocolViolation) and isinstance(back.error, p.RemoteProtocolError)
    assert back.code is None and back.text is None


def test_connection_lost_keeps_outcome_unknown_and_response() -> None:
    back = pickle.loads(pickle.dumps(sample(ConnectionLost)))
    assert isinstance(back, ConnectionLost) and back.outcome_unknown is True
    assert back.response == _ERR and back.code == p.SYS_TEMP


def _errors_around_credentials() -> list[BaseException]:
    """Provoke the engine's errors where a credential is at hand."""
    raised: list[BaseException] = []
    attempts = [
        lambda: p.Pass(SECRET + "\r\nDELE 1"),
        lambda: p.User(SECRET + " x"),
        lambda: p.Apop(SECRET, "\x00"),
        lambda: p.SaslResponse(SECRET),  # type: ignore[arg-type]
    ]
    for attempt in attempts:
        with pytest.raises(p.ProtocolError) as info:
            attempt()
        raised.append(info.value)
    conn = p.Connection(p.CLIENT)
    conn.receive_data(b"+OK ready\r\n")
    conn.next_event()
    conn.send(p.User("alice"))
    conn.receive_data(b"+OK\r\n")
    conn.next_event()
    with pytest.raises(p.LocalProtocolError) as info:
        conn.send(p.Pass(SECRET + "x" * 300))  # over max_command_size
    raised.append(info.value)
    server = p.Connection(p.SERVER, max_sasl_size=64)
    server.send(p.Greeting("hi"))
    server.receive_data(b"AUTH PLAIN\r\n")
    server.next_event()
    server.send(p.SaslChallenge(b""))
    server.receive_data(SECRET.encode() * 10 + b"\r\n")
    with pytest.raises(p.RemoteProtocolError) as info:
        server.next_event()
    raised.append(info.value)
    return raised


def test_engine_errors_never_carry_the_credential() -> None:
    errors = _errors_around_credentials()
    assert len(errors) == 6
    for exc in errors:
        dumped = pickle.dumps(exc)
        assert SECRET not in str(exc) and SECRET not in repr(exc), exc
        assert SECRET.encode() not in dumped, exc
        assert isinstance(pickle.loads(dumped), p.ProtocolError)

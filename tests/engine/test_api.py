"""The public surface of ``pop3proto``: ``__all__``, sentinels, and a pure import."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import types
import typing
from pathlib import Path

import pytest

import pop3proto

ROOT = Path(__file__).resolve().parents[2]
IO_MODULES = ("socket", "ssl", "select", "selectors", "asyncio", "trio", "threading")


def public_names() -> set[str]:
    return {
        name
        for name in dir(pop3proto)
        if not name.startswith("_") and not isinstance(getattr(pop3proto, name), types.ModuleType)
    }


def test_every_name_in_all_exists() -> None:
    missing = [name for name in pop3proto.__all__ if not hasattr(pop3proto, name)]
    assert missing == []


def test_all_has_no_duplicates() -> None:
    assert len(pop3proto.__all__) == len(set(pop3proto.__all__))


def test_every_public_attribute_is_in_all() -> None:
    assert public_names() - set(pop3proto.__all__) == set()


def test_all_lists_only_public_names_plus_version() -> None:
    assert set(pop3proto.__all__) - public_names() == {"__version__"}


def test_star_import_matches_all() -> None:
    namespace: dict[str, object] = {}
    exec("from pop3proto import *", namespace)
    namespace.pop("__builtins__")
    assert set(namespace) == set(pop3proto.__all__)


def test_version() -> None:
    assert isinstance(pop3proto.__version__, str) and pop3proto.__version__


def test_core_names_are_exported() -> None:
    """The names the API summary promises."""
    for name in (
        "Connection",
        "CLIENT",
        "SERVER",
        "NEED_DATA",
        "PAUSED",
        "State",
        "ProtocolError",
        "LocalProtocolError",
        "RemoteProtocolError",
        "Greeting",
        "BadCommand",
        "SaslChallenge",
        "Capabilities",
        "ResponseCode",
        "apop_digest",
        "fits_initial_response",
    ):
        assert name in pop3proto.__all__, name


def test_error_hierarchy() -> None:
    assert issubclass(pop3proto.LocalProtocolError, pop3proto.ProtocolError)
    assert issubclass(pop3proto.RemoteProtocolError, pop3proto.ProtocolError)
    assert not issubclass(pop3proto.LocalProtocolError, pop3proto.RemoteProtocolError)
    with pytest.raises(TypeError):
        pop3proto.ProtocolError("abstract")
    assert str(pop3proto.LocalProtocolError("msg")) == "msg"


@pytest.mark.parametrize("name", ["CLIENT", "SERVER", "NEED_DATA", "PAUSED"])
def test_sentinels(name: str) -> None:
    value = getattr(pop3proto, name)
    assert repr(value) == name
    assert pickle.loads(pickle.dumps(value)) is value


def test_sentinels_are_distinct() -> None:
    values = [pop3proto.CLIENT, pop3proto.SERVER, pop3proto.NEED_DATA, pop3proto.PAUSED]
    assert len({id(v) for v in values}) == 4
    assert isinstance(pop3proto.CLIENT, pop3proto.Role)
    assert not isinstance(pop3proto.NEED_DATA, pop3proto.Role)


def modules_loaded_by(code: str) -> set[str]:
    """The modules a fresh, isolated interpreter has loaded after running *code*."""
    script = (
        "import sys, json\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        f"{code}\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-I", "-S", "-c", script],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return set(json.loads(proc.stdout))


def test_import_loads_no_io_modules() -> None:
    """The engine is sans-I/O: importing it pulls in no socket, TLS, event-loop or
    threading module (compared against a bare interpreter's baseline)."""
    baseline = modules_loaded_by("pass")
    # The engine's modules load on first use of a name (PEP 562): use one.
    loaded = modules_loaded_by("import pop3proto; pop3proto.Connection")
    assert "pop3proto" in loaded and "pop3proto._connection" in loaded
    new = loaded - baseline
    assert sorted(set(IO_MODULES) & new) == []
    assert not any(name.startswith(("asyncio.", "trio.", "ssl.")) for name in new)


def test_import_alone_loads_no_engine_module() -> None:
    """``import pop3proto`` is cheap: the engine loads on first use of a name."""
    loaded = modules_loaded_by("import pop3proto")
    assert "pop3proto" in loaded
    assert not any(name.startswith("pop3proto.") for name in loaded)
    assert "pop3proto._connection" in modules_loaded_by("from pop3proto import Connection")


def test_unknown_attribute_is_attribute_error() -> None:
    with pytest.raises(AttributeError, match="Nope"):
        pop3proto.Nope  # type: ignore[attr-defined]  # noqa: B018


def test_the_check_above_can_fail() -> None:
    """Guard against a vacuous check: importing socket is detected."""
    baseline = modules_loaded_by("pass")
    assert "socket" in modules_loaded_by("import socket") - baseline


def test_need_data_and_paused_are_one_member_enums() -> None:
    """One-member enums are what lets ``ev is NEED_DATA`` narrow under mypy."""
    assert list(pop3proto.NeedData) == [pop3proto.NEED_DATA]
    assert list(pop3proto.Paused) == [pop3proto.PAUSED]
    assert str(pop3proto.NEED_DATA) == "NEED_DATA" and str(pop3proto.PAUSED) == "PAUSED"


def test_next_event_alias_names_the_union() -> None:
    assert set(typing.get_args(pop3proto.NextEvent)) == {
        pop3proto.Event,
        pop3proto.NeedData,
        pop3proto.Paused,
    }

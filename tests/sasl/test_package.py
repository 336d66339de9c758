"""The pop3proto.sasl package: its public names and its place beside the engine."""

from __future__ import annotations

import ast
from pathlib import Path

import pop3proto
from pop3proto import sasl

SASL_DIR = Path(sasl.__file__).parent


def test_all_lists_existing_names_once() -> None:
    """pop3proto.sasl.__all__ names only what the package has, each once."""
    assert [name for name in sasl.__all__ if not hasattr(sasl, name)] == []
    assert len(sasl.__all__) == len(set(sasl.__all__))


def test_top_level_exports_are_the_packages_objects() -> None:
    """The SASL names pop3proto exports, the registry included, are the sasl package's own."""
    shared = set(pop3proto.__all__) & set(sasl.__all__)
    assert {"Mechanism", "MECHANISMS", "CLIENT_MECHANISMS", "SERVER_MECHANISMS"} <= shared
    for name in shared:
        assert getattr(pop3proto, name) is getattr(sasl, name), name


def test_imports_nothing_outside_the_package() -> None:
    """No module of pop3proto.sasl imports the rest of pop3proto (the event model above all)."""
    modules = sorted(SASL_DIR.glob("*.py"))
    assert len(modules) >= 8
    for path in modules:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                where = f"{path.name}: from {'.' * node.level}{node.module or ''}"
                assert node.level <= 1, where
                assert node.level == 1 or not (node.module or "").startswith("pop3proto"), where
            elif isinstance(node, ast.Import):
                assert not [a.name for a in node.names if a.name.startswith("pop3proto")], path.name

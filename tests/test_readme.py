"""The README's promises: its tour runs, and its state diagram is current."""

from __future__ import annotations

import re
from pathlib import Path

from pop3proto._diagram import mermaid

README = Path(__file__).resolve().parent.parent / "README.md"


def _blocks(kind: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_tour_runs(capsys: object) -> None:
    """Every assert in the README's tour holds (the tour is executed)."""
    [tour] = _blocks("python")
    exec(compile(tour, str(README), "exec"), {})


def test_state_diagram_is_generated_from_the_table() -> None:
    """The README's diagram equals `python -m pop3proto._diagram` output."""
    [diagram] = _blocks("mermaid")
    assert diagram == mermaid()


def test_quickstart_has_exactly_two_commands() -> None:
    [quickstart] = _blocks("sh")
    commands = [line for line in quickstart.splitlines() if line.strip()]
    assert len(commands) == 2
    assert "pytest" in commands[1]

"""The state diagram (pop3proto._diagram): ``python -m pop3proto._diagram`` prints
Mermaid drawn from the engine's own transition tables, every edge and nothing else.

``test_state`` checks those tables against the rules; this checks the drawing.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pop3proto._diagram import mermaid
from pop3proto._state import GREETING, REPLY_TRANSITIONS, START_TRANSITIONS

ROOT = Path(__file__).resolve().parents[2]


def diagram_edges(text: str) -> dict[tuple[str, str], str]:
    edges = {}
    for line in text.splitlines():
        m = re.fullmatch(r"    (\w+) --> (\w+): (.+)", line)
        if m:
            edges[(m.group(1), m.group(2))] = m.group(3)
    return edges


@pytest.fixture(scope="module")
def diagram_output() -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "pop3proto._diagram"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env=env,
        timeout=60,
    )
    return proc.stdout


def test_diagram_script_prints_mermaid(diagram_output: str) -> None:
    assert diagram_output == mermaid()
    lines = diagram_output.splitlines()
    assert lines[0] == "stateDiagram-v2"
    assert "    [*] --> AWAIT_GREETING" in lines
    assert "    CLOSED --> [*]" in lines


def test_diagram_contains_every_transition(diagram_output: str) -> None:
    edges = diagram_edges(diagram_output)
    for (src, kind, ok), dst in REPLY_TRANSITIONS.items():
        if src is dst:
            continue  # a self-loop is not drawn
        label = edges[(src.name, dst.name)]
        word = "greeting" if kind == GREETING else kind
        assert re.search(rf"\b{word}\b", label), (src, kind, ok, label)
        # Either the outcome is shown, or both outcomes lead here and were merged.
        outcome = f"{word} {'+OK' if ok else '-ERR'}"
        merged = (src, kind, not ok) in REPLY_TRANSITIONS and REPLY_TRANSITIONS[
            (src, kind, not ok)
        ] is dst
        assert outcome in label or merged, label
    for (src, kind), dst in START_TRANSITIONS.items():
        assert kind in edges[(src.name, dst.name)]
    assert "TLS" in edges[("TLS_PENDING", "AUTHORIZATION")]
    # Nothing drawn that the tables do not have.
    drawn = set(edges)
    expected = {(s.name, d.name) for (s, _, _), d in REPLY_TRANSITIONS.items() if s is not d}
    expected |= {(s.name, d.name) for (s, _), d in START_TRANSITIONS.items()}
    expected |= {("TLS_PENDING", "AUTHORIZATION")}
    assert drawn == expected


def test_diagram_notes_list_allowed_commands(diagram_output: str) -> None:
    notes = {
        m.group(1): set(m.group(2).split(", "))
        for m in re.finditer(r"note right of (\w+): (.+)", diagram_output)
    }
    assert notes["USER_OK"] >= {"PASS", "QUIT"}
    assert notes["AUTHORIZATION"] >= {"USER", "APOP", "AUTH", "STLS", "CAPA", "UTF8", "LANG"}
    assert "STAT" in notes["TRANSACTION"] and "USER" not in notes["TRANSACTION"]

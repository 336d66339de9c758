"""Draw the session state diagram from the tables in :mod:`pop3proto._state`
and the states each command of :mod:`pop3proto._commands` is legal in.

``python -m pop3proto._diagram`` prints a Mermaid ``stateDiagram-v2``; the
README embeds its output, and a test checks that the README is up to date,
so the picture can never drift from the code.
"""

from __future__ import annotations

from ._commands import ALLOWED
from ._state import (
    GREETING,
    REPLY_TRANSITIONS,
    START_TRANSITIONS,
    TLS_TRANSITIONS,
    State,
)

__all__ = ["mermaid"]


def mermaid() -> str:
    """The state diagram as Mermaid source."""
    edges: dict[tuple[State, State], list[str]] = {}
    for (src, kind), dst in START_TRANSITIONS.items():
        edges.setdefault((src, dst), []).append(f"{kind} begins")
    for (src, kind, ok), dst in REPLY_TRANSITIONS.items():
        if src is dst:
            continue
        what = "greeting" if kind == GREETING else kind
        edges.setdefault((src, dst), []).append(f"{what} {'+OK' if ok else '-ERR'}")
    for src, dst in TLS_TRANSITIONS.items():
        edges.setdefault((src, dst), []).append("TLS established")
    lines = ["stateDiagram-v2", f"    [*] --> {State.AWAIT_GREETING.name}"]
    for (src, dst), labels in edges.items():
        # Collapse "X +OK, X -ERR" into "X" to keep the picture readable.
        merged: list[str] = []
        for label in labels:
            word = label.rsplit(" ", 1)[0]
            if f"{word} +OK" in labels and f"{word} -ERR" in labels:
                if word not in merged:
                    merged.append(word)
            else:
                merged.append(label)
        lines.append(f"    {src.name} --> {dst.name}: {', '.join(merged)}")
    lines.append(f"    {State.CLOSED.name} --> [*]")
    for state, kinds in ALLOWED.items():
        shown = ", ".join(sorted(k for k in kinds if (k.isupper() and k.isalpha()) or k == "UTF8"))
        lines.append(f"    note right of {state.name}: {shown}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # pragma: no cover
    print(mermaid(), end="")

"""The progress line of ``pop3proto fetch`` on a terminal.

:class:`Progress` redraws one line (messages, octets, rate, ETA) at most
ten times a second while messages arrive; :func:`format_bytes` also words
the summary printed at the end.
"""

from __future__ import annotations

import shutil
import time
from typing import IO

__all__ = ["Progress", "format_bytes"]


def format_bytes(count: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} GB"  # pragma: no cover


def _format_duration(seconds: float) -> str:
    seconds = max(0, int(seconds + 0.5))
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    """A one-line progress bar on a terminal: messages, octets, rate, ETA."""

    def __init__(self, stream: IO[str], messages: int, octets: int, *, enabled: bool) -> None:
        self.stream = stream
        self.messages = messages
        self.octets = max(octets, 1)
        self.enabled = enabled and messages > 0
        self.done_messages = 0
        self.done_octets = 0
        self.start = time.monotonic()
        self._last_draw = 0.0
        self._width = 0

    def add(self, octets: int) -> None:
        """Octets received."""
        self.done_octets += octets
        self._maybe_draw()

    def message_done(self) -> None:
        """One more message stored."""
        self.done_messages += 1
        self._maybe_draw()

    def _maybe_draw(self) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last_draw >= 0.1:
            self._last_draw = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        elapsed = max(now - self.start, 1e-6)
        rate = self.done_octets / elapsed
        left = max(self.octets - self.done_octets, 0)
        eta = _format_duration(left / rate) if rate > 0 else "-:--"
        text = (
            f" {self.done_messages}/{self.messages} msgs  "
            f"{format_bytes(self.done_octets)}/{format_bytes(self.octets)}  "
            f"{format_bytes(rate)}/s  ETA {eta}"
        )
        columns = shutil.get_terminal_size((80, 24)).columns
        bar_width = max(10, min(40, columns - len(text) - 4))
        filled = int(bar_width * min(self.done_octets / self.octets, 1.0))
        line = f"[{'#' * filled}{'.' * (bar_width - filled)}]{text}"[: columns - 1]
        pad = " " * max(0, self._width - len(line))
        self._width = len(line)
        self.stream.write(f"\r{line}{pad}")
        self.stream.flush()

    def finish(self) -> None:
        """Draw the final state and end the line."""
        if self.enabled:
            self._draw(time.monotonic())
            self.stream.write("\n")
            self.stream.flush()

"""Build progress: phase names and a bar with ETA fed by ninja's ``[n/m]`` lines.

The parsing is pure (:func:`parse_step`, :class:`StepTracker`); :class:`BuildProgress`
draws it with rich.  On a non-terminal (CI logs) rich draws nothing live, and we
print one line per phase instead, so logs stay readable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

PHASES = ("fetch", "patch", "env", "configure", "compile", "package", "audit", "verify")

# ninja's status line: "[12/345] Building CUDA object ...", possibly indented by pip -v.
_STEP = re.compile(r"^\s*\[(\d+)/(\d+)\]\s")
# Hints that a pep517 backend has moved on from configuring to compiling / packaging.
_CONFIGURE = re.compile(r"-- (Configuring|The (C|CXX|CUDA) compiler identification)|running build_ext|\*\*\* Configuring CMake")
_PACKAGE = re.compile(r"\*\*\* (Installing project|Making wheel)|creating '.*\.whl'|Created wheel for|running bdist_wheel")


def parse_step(line: str) -> tuple[int, int] | None:
    m = _STEP.match(line)
    if not m:
        return None
    n, total = int(m.group(1)), int(m.group(2))
    return (n, total) if 0 < n <= total else None


@dataclass
class StepTracker:
    """Folds output lines into (phase, done, total).

    ninja may run more than once (CMake try-compiles, then the real build); a new run
    shows up as a smaller total or a step count going back, and simply replaces the last.
    """

    phase: str = "env"
    done: int = 0
    total: int = 0

    def feed(self, line: str) -> bool:
        """Update from one output line; True when something visible changed."""
        step = parse_step(line)
        if step:
            self.done, self.total = step
            if self.phase in ("fetch", "patch", "env", "configure"):
                self.phase = "compile"
            return True
        if self.phase == "compile" and _PACKAGE.search(line):
            self.phase = "package"
            return True
        if self.phase == "env" and _CONFIGURE.search(line):
            self.phase = "configure"
            return True
        return False

    def set_phase(self, phase: str) -> None:
        self.phase = phase
        self.done = self.total = 0


class BuildProgress:
    """A rich progress bar (spinner, phase, [n/m], ETA).  Use as a context manager."""

    def __init__(self, label: str, *, console: Any = None, enabled: bool = True) -> None:
        self.label = label
        self.tracker = StepTracker()
        self.enabled = enabled
        self._console = console
        self._progress: Any = None
        self._task: Any = None
        self._live = False

    def __enter__(self) -> "BuildProgress":
        if not self.enabled:
            return self
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        console = self._console or Console(stderr=True)
        self._live = console.is_terminal
        if self._live:
            self._progress = Progress(
                SpinnerColumn(), TextColumn("[bold]{task.fields[phase]:<9}"), TextColumn(self.label),
                BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                console=console, transient=False,
            )
            self._progress.start()
            self._task = self._progress.add_task(self.label, total=None, phase=self.tracker.phase)
        self._console = console
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def phase(self, name: str) -> None:
        if name == self.tracker.phase and self.tracker.total == 0:
            return
        self.tracker.set_phase(name)
        self._draw(announce=True)

    def feed(self, line: str) -> None:
        before = self.tracker.phase
        if self.tracker.feed(line):
            self._draw(announce=self.tracker.phase != before)

    def _draw(self, announce: bool) -> None:
        t = self.tracker
        if self._progress is not None:
            # total=None keeps the bar indeterminate until ninja tells us the step count.
            self._progress.update(self._task, phase=t.phase, completed=t.done, total=t.total or None)
        elif announce and self.enabled and self._console is not None:
            self._console.print(f"[{t.phase}] {self.label}", highlight=False, markup=False)

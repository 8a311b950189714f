"""Build progress: phase names and a bar with ETA fed by ninja's ``[n/m]`` lines.

The parsing is pure (:func:`parse_step`, :class:`StepTracker`); :class:`BuildProgress`
draws it with rich.  On a non-terminal (CI logs) rich draws nothing live, and we
print one line per phase instead, plus, for builds of 20 steps or more, one line per
tenth of the steps with the ETA, so logs stay readable.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable

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


def format_eta(seconds: float | None) -> str:
    """``1h02m`` / ``9m30s`` / ``45s``; ``-`` while unknown."""
    if seconds is None:
        return "-"
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


@dataclass
class StepTracker:
    """Folds output lines into (phase, done, total) and an ETA.

    ninja may run more than once (CMake try-compiles, then the real build); a new run
    shows up as a smaller total or a step count going back, and simply replaces the last.

    The ETA comes from the rate of finished steps since the current run began, on the
    monotonic ``clock``.  Piped ninja prints ``[n/m]`` when a step *finishes*, so the first
    line of a big build may come minutes after its start; the run's origin is therefore
    the start of the compile command (``set_phase("configure")``, which the executor
    calls as each build command starts, or a configure line), not the first ``[n/m]``.
    Between two finished steps the ETA counts down with the clock.
    """

    phase: str = "env"
    done: int = 0
    total: int = 0
    clock: Callable[[], float] = field(default=time.monotonic, repr=False, compare=False)
    _origin: float | None = field(default=None, repr=False, compare=False)
    _origin_done: int = field(default=0, repr=False, compare=False)
    _last_step_at: float | None = field(default=None, repr=False, compare=False)

    def feed(self, line: str) -> bool:
        """Update from one output line; True when something visible changed."""
        step = parse_step(line)
        if step:
            now = self.clock()
            n, total = step
            if self.total and (total != self.total or n < self.done):
                # a new ninja run: its rate starts now, from the steps it has already finished
                self._origin, self._origin_done = now, n
            elif self._origin is None:
                self._origin, self._origin_done = now, n
            self.done, self.total = step
            self._last_step_at = now
            if self.phase in ("fetch", "patch", "env", "configure"):
                self.phase = "compile"
            return True
        if self.phase == "compile" and _PACKAGE.search(line):
            self.phase = "package"
            return True
        if self.phase == "env" and _CONFIGURE.search(line):
            self.phase = "configure"
            self._start_run()
            return True
        return False

    def set_phase(self, phase: str) -> None:
        self.phase = phase
        self.done = self.total = 0
        self._origin = self._last_step_at = None
        if phase in ("configure", "compile"):
            self._start_run()

    def _start_run(self) -> None:
        self._origin, self._origin_done, self._last_step_at = self.clock(), 0, None

    def eta(self) -> float | None:
        """Seconds until the current ninja run finishes, or None before one step of it has finished."""
        if not self.total or self._origin is None or self._last_step_at is None or self.done <= self._origin_done:
            return None
        spent = self._last_step_at - self._origin
        if spent <= 0:
            return None
        per_step = spent / (self.done - self._origin_done)
        left = (self.total - self.done) * per_step - (self.clock() - self._last_step_at)
        return max(left, 0.0)


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
        self._printed_tenths = -1  # non-terminal: last tenth of the steps a line was printed for

    def __enter__(self) -> "BuildProgress":
        if not self.enabled:
            return self
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, SpinnerColumn, TextColumn, TimeElapsedColumn
        from rich.text import Text

        tracker = self.tracker

        class EtaColumn(ProgressColumn):
            # The tracker's ETA, not rich's: rich estimates speed over its last 30 s, and a
            # flash-attn kernel file takes minutes, so its estimate would mostly read "-:--:--".
            def render(self, task: Any) -> Text:
                return Text(f"ETA {format_eta(tracker.eta())}")

        console = self._console or Console(stderr=True)
        self._live = console.is_terminal
        if self._live:
            self._progress = Progress(
                SpinnerColumn(), TextColumn("[bold]{task.fields[phase]:<9}"), TextColumn(self.label),
                BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), EtaColumn(),
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
        elif self.enabled and self._console is not None:
            if announce:
                self._console.print(f"[{t.phase}] {self.label}", highlight=False, markup=False)
                self._printed_tenths = -1
            tenths = t.done * 10 // t.total if t.total else -1
            if t.phase == "compile" and t.total >= 20 and tenths > self._printed_tenths:
                # logs of long builds (flash-attn: 73 files, ~15 min) get a line per tenth of the steps
                self._printed_tenths = tenths
                self._console.print(f"[compile] {self.label}: {t.done}/{t.total}, ETA {format_eta(t.eta())}",
                                    highlight=False, markup=False)

"""Build progress as data: ninja's ``[n/m]`` lines folded into (phase, done, total) and an ETA.

Pure; the CLI draws it (:class:`wheelforge.cli.render.ConsoleReporter`: a bar with this ETA on a
terminal, one line per tenth of the steps in a log).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Callable

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

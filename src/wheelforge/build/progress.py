"""Build progress as data: ninja's ``[n/m]`` lines folded into (phase, done, total).

Pure; the CLI draws it (:class:`wheelforge.cli.render.ConsoleReporter`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

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

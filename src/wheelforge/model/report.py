"""How the library tells people what it is doing, without drawing anything itself.

Library code calls a :class:`Reporter`; the CLI passes one that draws (a progress bar, one
line per step, commands only with ``-v``).  The base class drops everything, so library
calls from tests and scripts are silent unless they ask otherwise.
"""

from __future__ import annotations

from collections.abc import Callable

#: A sink for one line of text (a command about to run, a tool's output line, a note).
Echo = Callable[[str], None]


def silent(_line: str) -> None:
    """An :data:`Echo` that drops the line."""


class Reporter:
    """Events of a build or another long task; every method may be overridden, none must be."""

    def step(self, label: str, name: str, index: int, total: int) -> None:
        """Step ``index`` (1-based) of ``total``, called ``name``, of the task ``label`` begins."""

    def progress(self, done: int, total: int, *, unit: str = "steps", eta: float | None = None) -> None:
        """Work inside the current step: ``done`` of ``total`` (ninja's [n/m], compiled kernel files...), and
        the seconds left when they can be estimated."""

    def log(self, line: str) -> None:
        """A command about to run or a line a tool printed (the build log always has these)."""

    def note(self, line: str) -> None:
        """Something a person should read now: a warning, a result."""

    def finish(self) -> None:
        """The task ended (successfully or not): close anything the steps opened."""

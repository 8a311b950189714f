"""The step runner: executes a :class:`~wheelforge.model.plan.BuildPlan`'s steps in order.

It knows nothing per build kind: each step names an action, and :data:`EXECUTORS`
(:mod:`wheelforge.build.steps`) maps the action to the code that does it.  Every line a step
echoes goes to the build log and to the reporter's ``log`` (shown with ``-v``); each step is
announced once through ``reporter.step``.
"""

from __future__ import annotations

import os
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Mapping

from wheelforge.host.process import base_env
from wheelforge.model.plan import WORK, BuildPlan, Command, Step, resolve_work
from wheelforge.model.recipe import Recipe
from wheelforge.model.report import Reporter
from wheelforge.store.wheelhouse import Entry, Wheelhouse


@dataclass
class Attempt:
    """One run of a plan: where it works, what it may use, and what its steps produced so far."""

    plan: BuildPlan
    recipe: Recipe
    work: Path
    wheelhouse: Wheelhouse
    cache: Path
    log: IO[str]
    log_path: Path
    reporter: Reporter = field(default_factory=Reporter)
    mirrors: Mapping[str, str] = field(default_factory=dict)
    offline: bool = False
    environ: Mapping[str, str] | None = None  # the caller's environment (None: this process's)
    python: str = ""  # the target interpreter (verify makes its test venv from it)
    verify_options: Mapping[str, Any] = field(default_factory=dict)
    replace: bool = False  # --replace: a different wheel under a taken name gets the next build number
    started: float = field(default_factory=time.time)
    t0: float = field(default_factory=time.monotonic)
    # what the steps produced
    fetched: Any = None
    wheel: Path | None = None
    audit: Any = None
    relocation: Any = None
    entry: Entry | None = None
    verify_report: Any = None
    cache_line: str | None = None
    phase_seconds: dict[str, float] = field(default_factory=dict)

    def say(self, line: str) -> None:
        """A line for the build log (and ``-v``)."""
        self.log.write(line + "\n")
        self.log.flush()
        self.reporter.log(line)

    def tell(self, line: str) -> None:
        """A line for the build log and for people, shown once (a note, not also a ``-v`` log line)."""
        self.log.write(line + "\n")
        self.log.flush()
        self.reporter.note(line)

    @property
    def env(self) -> dict[str, str]:
        """The plan's environment with ``{work}`` filled in."""
        return {k: v.replace(WORK, str(self.work)) for k, v in self.plan.env.items()}


def command_env(a: Attempt, command: Command) -> dict[str, str]:
    """The exact environment a (resolved) command runs with."""
    plan = a.plan
    env = base_env(a.environ)
    env.update(a.env)
    venv = Path(command.argv[0]).parent.parent
    if plan.isolation and (venv / "pyvenv.cfg").is_file():
        # commands run by the build env's python get its bin first: its cmake/ninja, not the host's
        env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"
        env["VIRTUAL_ENV"] = str(venv)
    return env


def repro_line(command: Command, env: Mapping[str, str]) -> str:
    """A shell line that reruns ``command`` by hand with the same environment."""
    assigns = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(env.items()))
    return f"cd {shlex.quote(command.cwd)} && env -i {assigns} {shlex.join(command.argv)}"


def run_plan(attempt: Attempt, *, only: tuple[str, ...] | None = None) -> Attempt:
    """Run the plan's steps in order (only those named in ``only`` when given); returns the attempt."""
    from wheelforge.build.steps import EXECUTORS

    plan = attempt.plan
    steps = [s for s in plan.steps if only is None or s.name in only]
    label = f"{plan.recipe} {plan.full_version}"
    for index, step in enumerate(steps, 1):
        attempt.reporter.step(label, step.name, index, len(steps))
        attempt.say(f"# step {index}/{len(steps)}: {step.name}")
        t0 = time.monotonic()
        resolved: Step = resolve_work(step, str(attempt.work))
        EXECUTORS[step.action](resolved, attempt)
        attempt.phase_seconds[step.name] = attempt.phase_seconds.get(step.name, 0.0) + time.monotonic() - t0
    return attempt

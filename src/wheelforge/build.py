"""The executor: runs a :class:`~wheelforge.plan.BuildPlan`'s commands.

Each command is echoed before it runs and gets its environment explicitly: a small
base (PATH, HOME, locale, temp dir, proxy and pip settings) plus the plan's env, so a
stray variable of the caller's shell cannot change a build.  Output goes line by line
to the log file and feeds the progress bar.  A failure prints the first error lines,
the log path and a shell line that reproduces the command by hand.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Callable, Mapping, Sequence

from .errors import BuildError, OutOfMemoryError
from .plan import BuildPlan, Command

Echo = Callable[[str], None]

#: Variables passed from the caller's environment; everything else comes from the plan.
BASE_ENV_KEYS = (
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LC_ALL", "TERM", "TMPDIR", "TZ",
    "http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE",
    "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_CONFIG_DIRS", "PYENV_ROOT", "PYENV_VERSION",
)
#: Prefixes passed too: pip/uv index and cache settings (private mirrors on build hosts).
# Compiler-cache backends and their credentials come from the runner (CI secrets), never from recipes.
BASE_ENV_PREFIXES = ("PIP_", "UV_", "SCCACHE_", "CCACHE_", "AWS_")

_ERROR_LINE = re.compile(r"(\berror\b|\bError\b|FAILED:|fatal|Traceback|CMake Error|undefined reference|Killed)", re.IGNORECASE)
_OOM_LINE = re.compile(r"cicc\S*\"? died|died due to signal 9|signal 9|\bKilled\b|Cannot allocate memory|std::bad_alloc|out of memory", re.IGNORECASE)


def base_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    environ = os.environ if environ is None else environ
    env = {k: environ[k] for k in BASE_ENV_KEYS if k in environ}
    env.update({k: v for k, v in environ.items() if k.startswith(BASE_ENV_PREFIXES)})
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env.setdefault("LANG", "C.UTF-8")
    env["PYTHONUNBUFFERED"] = "1"  # keeps ninja's [n/m] lines flowing through pip
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def command_env(plan: BuildPlan, command: Command, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The exact environment a command runs with."""
    env = base_env(environ)
    env.update(plan.env)
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


@dataclass
class RunResult:
    log: Path
    seconds: float
    phase_seconds: dict[str, float] = field(default_factory=dict)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    # If wheelforge is killed (kill -9), take the backend with it instead of leaving
    # an orphan compiling into a scratch folder that the next run deletes.
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _is_oom(returncode: int, tail: Sequence[str]) -> bool:
    if returncode in (-signal.SIGKILL, 128 + signal.SIGKILL, 137):
        return True
    return any(_OOM_LINE.search(line) for line in tail)


def run_command(command: Command, env: Mapping[str, str], log: IO[str], *, on_line: Callable[[str], None] | None = None,
                echo: Echo = print) -> tuple[int, list[str], list[str]]:
    """Run one command; returns (returncode, first error lines, last lines)."""
    echo("$ " + command.shell())
    log.write(f"$ {command.shell()}\n")
    log.flush()
    errors: list[str] = []
    tail: deque[str] = deque(maxlen=40)
    try:
        proc = subprocess.Popen(
            list(command.argv), cwd=command.cwd, env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, text=True, errors="replace", bufsize=1, preexec_fn=_die_with_parent,
        )
    except OSError as exc:
        log.write(f"cannot start: {exc}\n")
        return 127, [f"cannot start {command.argv[0]}: {exc.strerror}"], []
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            log.write(line)
            line = line.rstrip("\n")
            tail.append(line)
            if len(errors) < 15 and _ERROR_LINE.search(line):
                errors.append(line)
            if on_line:
                on_line(line)
        rc = proc.wait()
    except BaseException:
        # Ctrl-C: stop the backend before the caller cleans the scratch folder.
        proc.kill()
        proc.wait()
        raise
    log.write(f"# exit status {rc}\n")
    log.flush()
    return rc, errors, list(tail)


def run_plan(plan: BuildPlan, log_path: Path, *, progress: object | None = None, echo: Echo = print,
             environ: Mapping[str, str] | None = None, log_mode: str = "a") -> RunResult:
    """Run every command of ``plan`` in order; raise :class:`BuildError` / :class:`OutOfMemoryError`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    phases: dict[str, float] = {}
    with open(log_path, log_mode, encoding="utf-8") as log:
        for command in plan.commands:
            env = command_env(plan, command, environ)
            if progress is not None:
                progress.phase("env" if command.phase == "env" else "configure")  # type: ignore[attr-defined]
            t0 = time.monotonic()
            rc, errors, tail = run_command(command, env, log, echo=echo,
                                           on_line=getattr(progress, "feed", None))
            phases[command.phase] = phases.get(command.phase, 0.0) + time.monotonic() - t0
            if rc != 0:
                raise _failure(plan, command, env, rc, errors, tail, log_path, echo)
    return RunResult(log=log_path, seconds=time.monotonic() - started, phase_seconds=phases)


def _failure(plan: BuildPlan, command: Command, env: Mapping[str, str], rc: int, errors: list[str], tail: list[str],
             log_path: Path, echo: Echo) -> BuildError:
    shown = errors or tail[-15:]
    echo(f"--- first error lines of {plan.recipe} {plan.version} ({command.phase}) ---")
    for line in shown:
        echo("  " + line)
    echo(f"--- full log: {log_path}")
    repro = repro_line(command, env)
    echo(f"--- reproduce by hand:\n{repro}")
    what = f"exit status {rc}" if rc >= 0 else f"signal {-rc}"
    if command.phase == "compile" and _is_oom(rc, tail + errors):
        half = max(1, plan.jobs // 2)
        err: BuildError = OutOfMemoryError(
            "build.out-of-memory",
            f"{plan.recipe} {plan.version}: a compiler was killed ({what}; the kernel's OOM killer) with {plan.jobs} parallel jobs",
            f"retry with --jobs {half} (or WHEELFORGE_JOBS={half}); log: {log_path}",
        )
    else:
        err = BuildError(
            "build.failed", f"{plan.recipe} {plan.version}: {command.phase} command {Path(command.argv[0]).name} failed ({what})",
            f"read {log_path} (first errors above) and rerun the command shown to debug it by hand",
        )
    err.repro = repro  # type: ignore[attr-defined]
    err.log = str(log_path)  # type: ignore[attr-defined]
    return err

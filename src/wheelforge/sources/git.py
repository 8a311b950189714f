"""Running git for the source cache: never prompting, in the C locale (we parse its messages), with
no repository pointers inherited from the caller's shell."""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from wheelforge.host import process
from wheelforge.model.errors import SourceError
from wheelforge.model.report import Echo


def git_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for git: never prompt, C locale (we parse messages), no inherited repo pointers."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update({"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", "LANGUAGE": "C"})
    if extra:
        env.update(extra)
    return env


def run(
    cmd: Sequence[str], *, echo: Echo, cwd: Path | None = None, env: Mapping[str, str] | None = None,
    check: bool = True, what: str = "command",
) -> subprocess.CompletedProcess[str]:
    """A git (or other) command through the process runner; on failure a SourceError carrying its last stderr line."""
    proc = process.run(cmd, env=env if env is not None else git_env(), cwd=cwd, echo=echo)
    if check and proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise SourceError(
            "source.command-failed", f"{what} failed: {shlex.join(cmd)}: {tail}",
            "check the URL and your network, or re-run with --offline if the cache already holds it",
        )
    return proc

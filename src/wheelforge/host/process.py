"""The one way wheelforge runs another program.

Rules every caller gets from here:

* the command is echoed (``$ <shell line>``) through the caller's :data:`Echo` before it runs;
* its environment is explicit: the caller passes ``env`` (build commands get :func:`base_env`
  plus the plan's variables, so a stray variable of the user's shell cannot change a build);
* it never reads our stdin and never inherits our pipes when it outlives us (daemons).

:func:`run` captures output; :func:`stream` feeds a long build's output line by line to a log
and a callback and keeps the first error lines and the tail for the failure message.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO

from wheelforge.model.report import Echo, silent

#: Variables passed from the caller's environment to build commands; everything else comes from the plan.
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


def shell_line(argv: Sequence[str], cwd: str | os.PathLike[str] | None = None) -> str:
    line = shlex.join(str(a) for a in argv)
    return f"cd {shlex.quote(str(cwd))} && {line}" if cwd else line


def base_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The small environment build commands start from."""
    environ = os.environ if environ is None else environ
    env = {k: environ[k] for k in BASE_ENV_KEYS if k in environ}
    env.update({k: v for k, v in environ.items() if k.startswith(BASE_ENV_PREFIXES)})
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env.setdefault("LANG", "C.UTF-8")
    env["PYTHONUNBUFFERED"] = "1"  # keeps ninja's [n/m] lines flowing through pip
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def run(argv: Sequence[str | os.PathLike[str]], *, env: Mapping[str, str] | None = None, cwd: str | os.PathLike[str] | None = None,
        echo: Echo = silent, timeout: float | None = None, daemon: bool = False) -> subprocess.CompletedProcess[str]:
    """Run to completion and capture text output.  ``env=None`` means this process's environment.

    ``daemon=True``: the program may leave a server behind (sccache); its output is dropped so the
    server never holds our pipes.  A program that cannot be started answers exit status 127.
    """
    args = [str(a) for a in argv]
    echo("$ " + shell_line(args, cwd))
    out = subprocess.DEVNULL if daemon else subprocess.PIPE
    try:
        return subprocess.run(args, env=dict(env) if env is not None else None, cwd=cwd, stdin=subprocess.DEVNULL,
                              stdout=out, stderr=out, text=True, timeout=timeout, check=False)
    except (FileNotFoundError, PermissionError) as exc:
        return subprocess.CompletedProcess(args, 127, "", f"cannot start {args[0]}: {exc.strerror}")


def output_of(argv: Sequence[str], env: Mapping[str, str] | None = None, *, timeout: float = 30) -> str | None:
    """stdout of a quick probe (``nvcc --version``), or None when it fails or is missing."""
    try:
        proc = run(argv, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
    return proc.stdout if proc.returncode == 0 else None


@dataclass
class Streamed:
    returncode: int
    errors: list[str] = field(default_factory=list)  # the first lines that look like errors
    tail: list[str] = field(default_factory=list)  # the last lines


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    # If wheelforge is killed (kill -9), take the backend with it instead of leaving
    # an orphan compiling into a scratch folder that the next run deletes.
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def kill_tree(pid: int) -> None:
    """Kill a process and all its descendants (children first listed, so none is re-parented and missed)."""
    import psutil

    try:
        parent = psutil.Process(pid)
        family = parent.children(recursive=True) + [parent]
    except psutil.NoSuchProcess:
        return
    for p in family:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(family, timeout=10)


def stream(argv: Sequence[str], *, env: Mapping[str, str], cwd: str | os.PathLike[str], log: IO[str],
           on_line: Callable[[str], None] | None = None, echo: Echo = silent) -> Streamed:
    """Run a long command, its output merged, line by line into ``log`` and ``on_line``."""
    line = shell_line(argv, cwd)
    echo("$ " + line)
    log.write(f"$ {line}\n")
    log.flush()
    errors: list[str] = []
    tail: deque[str] = deque(maxlen=40)
    try:
        proc = subprocess.Popen(
            list(argv), cwd=cwd, env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, text=True, errors="replace", bufsize=1, preexec_fn=_die_with_parent,
        )
    except OSError as exc:
        log.write(f"cannot start: {exc}\n")
        return Streamed(127, [f"cannot start {argv[0]}: {exc.strerror}"], [])
    assert proc.stdout is not None
    try:
        for text in proc.stdout:
            log.write(text)
            text = text.rstrip("\n")
            tail.append(text)
            if len(errors) < 15 and _ERROR_LINE.search(text):
                errors.append(text)
            if on_line:
                on_line(text)
        rc = proc.wait()
    except BaseException:
        # Ctrl-C: stop the backend before the caller cleans the scratch folder, and every compiler it
        # started: ninja runs each job in a process group of its own, so killing pip alone leaves them.
        kill_tree(proc.pid)
        proc.wait()
        raise
    log.write(f"# exit status {rc}\n")
    log.flush()
    return Streamed(rc, errors, list(tail))

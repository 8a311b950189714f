"""What another interpreter has installed, asked of it in one process start (never imported here)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from packaging.utils import canonicalize_name

from wheelforge.host import process
from wheelforge.model.errors import PlanError

_PROBE = """
import importlib.metadata as md, json, sys, sysconfig
out = {"purelib": sysconfig.get_path("purelib"), "versions": {}}
for name in sys.argv[1:]:
    try:
        out["versions"][name] = md.version(name)
    except md.PackageNotFoundError:
        pass
print(json.dumps(out))
"""


def probe_interpreter(python: str, distributions: Sequence[str] = (), *, timeout: float = 120) -> tuple[str, dict[str, str]]:
    """(purelib folder, {distribution: installed version}) of ``python``; the versions of those installed."""
    import subprocess

    try:
        proc = process.run([python, "-c", _PROBE, *distributions], timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise PlanError("plan.probe-python", f"cannot run {python} to find its site-packages: {exc}",
                        "check the target interpreter (--python / WHEELFORGE_PYTHON)") from None
    if proc.returncode != 0:
        raise PlanError("plan.probe-python", f"{python} failed to report its site-packages: {proc.stderr.strip()[-200:]}",
                        "check the target interpreter (--python / WHEELFORGE_PYTHON)")
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    versions = {canonicalize_name(k): v for k, v in data["versions"].items()}
    return data["purelib"], versions

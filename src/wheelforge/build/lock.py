"""``invoke lock``: resolve a recipe's build requirements into a hashed lock (format: wheelforge.model.lock).

pip resolves, for the target Python and the build machines' platform (manylinux x86-64, wheels
only so the choice does not depend on this machine), without installing anything
(``pip install --dry-run --report``); its report names the exact file of each package and its
sha256, which is what the lock keeps.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Sequence

from wheelforge.host import process
from wheelforge.model.errors import PlanError
from wheelforge.model.lock import LOCK_PLATFORM, BuildLock, LockedPackage, input_digest, lock_path, lock_requirements, render
from wheelforge.model.recipe import Recipe
from wheelforge.model.report import Echo, silent

#: Platforms the lock's wheels may be built for: manylinux up to glibc 2.28, so every build host from RHEL 8 and
#: Debian 11 on can install them (pip matches platform tags exactly, so each glibc minor is named).
PLATFORMS = (*(f"manylinux_2_{m}_x86_64" for m in range(28, 4, -1)), "manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64")


def resolve(recipe: Recipe, python_version: str, *, cuda_version: str | None = None, echo: Echo = silent) -> tuple[BuildLock, list[str]]:
    """Resolve the lock of ``recipe`` for Python ``python_version`` ("3.11"); returns it and what it was made from."""
    tag = "cp" + python_version.replace(".", "")
    reqs, major = lock_requirements(recipe, cuda_version)
    packages: list[LockedPackage] = []
    if reqs:
        with tempfile.TemporaryDirectory(prefix="wheelforge-lock-") as tmp:
            report = Path(tmp) / "report.json"
            argv = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet", "--disable-pip-version-check",
                    "--report", str(report), "--python-version", python_version, "--implementation", "cp", "--abi", tag,
                    "--only-binary=:all:", *[f"--platform={p}" for p in PLATFORMS], *reqs]
            proc = process.run(argv, echo=echo, timeout=600)
            if proc.returncode != 0:
                said = [ln for ln in (proc.stderr or proc.stdout).strip().splitlines() if ln.startswith("ERROR")] or ["(no output)"]
                raise PlanError("plan.lock-resolve", f"pip cannot resolve the build requirements of {recipe.name} for Python {python_version}: {said[-1]}",
                                "check [build] requires in the recipe and the network (pip.conf / PIP_* reach this resolution)")
            for item in json.loads(report.read_text())["install"]:
                info = item["download_info"]
                sha = (info.get("archive_info") or {}).get("hashes", {}).get("sha256")
                if not sha:
                    raise PlanError("plan.lock-resolve", f"{item['metadata']['name']}: the index gave no sha256 for {info.get('url')}",
                                    "use an index that publishes hashes (PyPI does)")
                packages.append(LockedPackage(item["metadata"]["name"], item["metadata"]["version"], sha,
                                              info["url"].rsplit("/", 1)[-1].split("#", 1)[0]))
    lock = BuildLock(recipe=recipe.name, python=tag, platform=LOCK_PLATFORM, input_digest=input_digest(reqs, tag),
                     packages=tuple(sorted(packages, key=lambda p: p.name.lower())),
                     path=str(lock_path(recipe.path, recipe.name, tag, major)))
    return lock, reqs


def write(lock: BuildLock, requirements: Sequence[str]) -> Path:
    """Write the lock atomically beside the recipe."""
    import os

    path = Path(lock.path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(render(lock, requirements), encoding="utf-8")
    os.replace(tmp, path)
    return path

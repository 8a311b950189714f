"""Locked build environments: the exact files a recipe's build venv is filled from.

``invoke lock RECIPE`` resolves the recipe's ``[build] requires`` (and the NVIDIA wheels its
``[build] nvidia`` names) for one target Python and writes a lock beside the recipe:
``recipes/locks/<recipe>/cp311.txt`` (``cp311-cu12.txt`` when NVIDIA wheels are in it).  The
format is a pip requirements file with one ``--hash`` per package, the file pip chose for that
Python and platform; both pip (``--require-hashes``) and uv install it as it is, which a PEP 751
``pylock.toml`` would not give us today (pip writes those but does not install from them).  The
header records what was locked; a lock whose input no longer matches the recipe is stale, and
the plan stops naming the command that refreshes it.

Pure: parsing and rendering only; :mod:`wheelforge.build.lock` runs the resolver.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wheelforge.model.errors import PlanError
from wheelforge.model.plan import canonical_json, sha256_hex

if TYPE_CHECKING:
    from wheelforge.model.recipe import Recipe

#: The platform locks are resolved for: the build machines' (manylinux, x86-64).
LOCK_PLATFORM = "manylinux_x86_64"

_LINE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)\s+\\?\s*--hash=sha256:([0-9a-f]{64})(?:\s+#\s*(\S+))?\s*$")
_HEADER = re.compile(r"^#\s*([a-z-]+):\s*(.*)$")


@dataclass(frozen=True)
class LockedPackage:
    name: str
    version: str
    sha256: str
    filename: str = ""

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "version": self.version, "sha256": self.sha256}


@dataclass(frozen=True)
class BuildLock:
    recipe: str
    python: str  # tag: "cp311"
    platform: str
    input_digest: str
    packages: tuple[LockedPackage, ...]
    path: str = ""

    def to_json(self) -> list[dict[str, str]]:
        return [p.to_json() for p in self.packages]

    def version_of(self, name: str) -> str | None:
        from packaging.utils import canonicalize_name

        want = canonicalize_name(name)
        return next((p.version for p in self.packages if canonicalize_name(p.name) == want), None)


def lock_name(python_tag: str, cuda_major: int | None) -> str:
    """``cp311.txt``, or ``cp311-cu12.txt`` for a lock that holds NVIDIA wheels of one CUDA major."""
    return f"{python_tag}-cu{cuda_major}.txt" if cuda_major else f"{python_tag}.txt"


def lock_path(recipe_path: Path, recipe_name: str, python_tag: str, cuda_major: int | None = None) -> Path:
    return recipe_path.parent / "locks" / recipe_name / lock_name(python_tag, cuda_major)


def lock_requirements(recipe: Recipe, cuda_version: str | None) -> tuple[list[str], int | None]:
    """What a recipe's lock holds: ``[build] requires`` plus the NVIDIA wheels of the CUDA major it builds for."""
    reqs = list(recipe.build.requires)
    if not recipe.build.nvidia:
        return reqs, None
    from wheelforge.model.nvidia_wheels import cuda_major, expand, versions_for

    if not cuda_version or cuda_version == "auto":
        raise PlanError("plan.lock-cuda", f"{recipe.name} builds against NVIDIA wheels, whose names depend on the CUDA major",
                        "pass --cuda 12.8 (or 13.0) to invoke lock")
    nvidia = expand(recipe.build.nvidia, cuda_version, versions_for(recipe.nvidia_versions, cuda_version), None)
    return reqs + list(nvidia.requirements), cuda_major(cuda_version)


def read(recipe: Recipe, python_tag: str, cuda_version: str | None) -> BuildLock | None:
    """The lock a build of ``recipe`` for ``python_tag`` installs from; None when the recipe requires nothing.

    A missing lock, or one made from other requirements (stale), stops the plan with the command that
    refreshes it.
    """
    reqs, major = lock_requirements(recipe, cuda_version)
    if not reqs:
        return None
    path = lock_path(recipe.path, recipe.name, python_tag, major)
    py = f"{python_tag[2]}.{python_tag[3:]}"
    refresh = f"invoke lock {recipe.name} --python {py}" + (f" --cuda {cuda_version}" if major else "")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PlanError("plan.no-lock", f"{recipe.name} has no build lock for Python {py} ({path})", f"make it: {refresh}") from None
    except OSError as exc:
        raise PlanError("plan.no-lock", f"cannot read the build lock {path}: {exc.strerror}", f"check the file, or remake it: {refresh}") from None
    lock = parse(text, recipe=recipe.name, path=str(path))
    if lock.input_digest != input_digest(reqs, python_tag) or lock.python != python_tag:
        raise PlanError("plan.lock-stale", f"the build lock {path} was made from other requirements than {recipe.path} lists now",
                        f"refresh it: {refresh}")
    return lock


def input_digest(requirements: Sequence[str], python_tag: str, platform: str = LOCK_PLATFORM) -> str:
    """What a lock was made from: the requirements as written, the Python and the platform."""
    return "sha256:" + sha256_hex(canonical_json({"requirements": sorted(requirements), "python": python_tag, "platform": platform}))


def render(lock: BuildLock, requirements: Sequence[str]) -> str:
    lines = [
        f"# wheelforge build lock for recipe {lock.recipe}: refresh with `invoke lock {lock.recipe} --python {lock.python[2]}.{lock.python[3:]}`",
        f"# python: {lock.python}",
        f"# platform: {lock.platform}",
        f"# input: {lock.input_digest}",
        "# requirements: " + "; ".join(sorted(requirements)),
    ]
    for p in sorted(lock.packages, key=lambda p: p.name.lower()):
        lines.append(f"{p.name}=={p.version} --hash=sha256:{p.sha256}  # {p.filename}")
    return "\n".join(lines) + "\n"


def parse(text: str, *, recipe: str, path: str = "") -> BuildLock:
    """A lock file's packages and header; a damaged file is an error naming it and the refresh command."""
    header: dict[str, Any] = {}
    packages = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            m = _HEADER.match(line)
            if m:
                header[m.group(1)] = m.group(2).strip()
            continue
        m = _LINE.match(line)
        if not m:
            raise PlanError("plan.lock-invalid", f"{path or 'lock'}: line {number} is not 'name==version --hash=sha256:...'",
                            f"refresh it: invoke lock {recipe}")
        packages.append(LockedPackage(m.group(1), m.group(2), m.group(3), m.group(4) or ""))
    for field in ("python", "platform", "input"):
        if field not in header:
            raise PlanError("plan.lock-invalid", f"{path or 'lock'}: its header has no '{field}:' line",
                            f"refresh it: invoke lock {recipe}")
    return BuildLock(recipe=recipe, python=header["python"], platform=header["platform"], input_digest=header["input"],
                     packages=tuple(packages), path=path)

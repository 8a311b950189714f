"""Settings and the build target, from pyproject, environment and flags (flags win).

Precedence, lowest to highest: built-in defaults < ``[tool.wheelforge]`` in the
project's ``pyproject.toml`` < ``WHEELFORGE_*`` environment variables < task flags.
Resolution is pure: callers pass the environment and the pyproject table in.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

from wheelforge.model.arch import CudaArch, local_label, parse_arch_list
from wheelforge.model.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFAULT_ARCH = "12.0"
DEFAULT_CUDA = "12.8"

#: key in [tool.wheelforge] -> environment variable. Documented in README's config table.
SETTINGS_ENV = {
    "arch": "WHEELFORGE_ARCH",
    "cuda": "WHEELFORGE_CUDA",
    "python": "WHEELFORGE_PYTHON",
    "wheelhouse": "WHEELFORGE_WHEELHOUSE",
    "cache": "WHEELFORGE_CACHE",
    "jobs": "WHEELFORGE_JOBS",
    "compiler_cache": "WHEELFORGE_COMPILER_CACHE",
    "installer": "WHEELFORGE_INSTALLER",
}
_KNOWN_KEYS = set(SETTINGS_ENV) | {"mirrors", "sccache", "recipes_dir"}


@dataclass(frozen=True)
class Target:
    """What to build for: archs, CUDA version (or ``auto``) and the Python."""

    archs: tuple[CudaArch, ...]
    cuda: str  # "12.8" or "auto"
    python: str  # interpreter path
    python_version: str  # "3.11"

    @property
    def python_tag(self) -> str:
        return "cp" + self.python_version.replace(".", "")

    def label(self, cuda_version: str, torch: str | None = None) -> str:
        return local_label(cuda_version, self.archs, torch)


@dataclass(frozen=True)
class Settings:
    target: Target
    wheelhouse: Path
    cache: Path
    jobs: int | None
    compiler_cache: str  # "auto", "sccache", "ccache" or "none"
    # what fills a build venv: "pip" (honours pip.conf and PIP_*) or "uv" (its own cache links
    # packages in; reads UV_* and uv.toml only, so it is opt-in)
    installer: str = "pip"
    mirrors: Mapping[str, str] = field(default_factory=dict)
    sccache: Mapping[str, str] = field(default_factory=dict)
    recipes_dir: str | None = None
    sources: Mapping[str, str] = field(default_factory=dict)  # setting -> where it came from


def read_pyproject(path: str | os.PathLike[str] | None) -> dict[str, Any]:
    """The ``[tool.wheelforge]`` table of a pyproject file (empty when absent)."""
    if path is None:
        return {}
    p = Path(path)
    if not p.is_file():
        return {}
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("config.syntax", f"{p}: not valid TOML: {exc}", "fix the TOML syntax") from None
    table = data.get("tool", {}).get("wheelforge", {})
    unknown = sorted(set(table) - _KNOWN_KEYS)
    if unknown:
        raise ConfigError(
            "config.unknown-key", f"{p}: [tool.wheelforge] has unknown key '{unknown[0]}'",
            f"known keys: {', '.join(sorted(_KNOWN_KEYS))}",
        )
    return table


def _python_version(python: str, running: str) -> str:
    # The running interpreter's version is known without a subprocess; other
    # interpreters are named by version (python3.12) or asked by the toolchain probe.
    if python == sys.executable:
        return running
    name = Path(python).name
    if name.startswith("python") and name[6:].count(".") == 1:
        return name[6:]
    raise ConfigError(
        "config.python", f"cannot tell the version of interpreter {python!r} from its name",
        "pass an interpreter named like python3.12, or run wheelforge with the target Python",
    )


def normalize_cuda(text: str) -> str:
    text = text.strip().lower()
    if text == "auto":
        return "auto"
    try:
        v = Version(text)
    except InvalidVersion:
        raise ConfigError("config.cuda", f"cannot read CUDA version {text!r}", "write it as 12.8, 13.0 or auto") from None
    if len(v.release) < 2 or v.major < 10:
        raise ConfigError("config.cuda", f"cannot read CUDA version {text!r}", "write major.minor, e.g. 12.8, or auto")
    return f"{v.major}.{v.minor}"


def resolve_settings(
    flags: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    pyproject: Mapping[str, Any] | None = None,
    *,
    cwd: Path | None = None,
) -> Settings:
    """Merge defaults < pyproject < env < flags; ``None`` flag values mean "not given"."""
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    env = os.environ if env is None else env
    pyproject = pyproject or {}
    cwd = cwd or Path.cwd()
    defaults: dict[str, Any] = {
        "arch": DEFAULT_ARCH, "cuda": DEFAULT_CUDA, "python": sys.executable,
        "wheelhouse": str(cwd / "wheelhouse"),
        "cache": str(Path(env.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "wheelforge"),
        "jobs": None, "compiler_cache": "auto", "installer": "pip",
    }
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for key, default in defaults.items():
        merged[key], origin[key] = default, "default"
        if key in pyproject:
            merged[key], origin[key] = pyproject[key], "pyproject"
        if env.get(SETTINGS_ENV[key]):
            merged[key], origin[key] = env[SETTINGS_ENV[key]], SETTINGS_ENV[key]
        if key in flags:
            merged[key], origin[key] = flags[key], "flag"

    archs = parse_arch_list(str(merged["arch"]))
    cuda = normalize_cuda(str(merged["cuda"]))
    python = str(merged["python"])
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    jobs = merged["jobs"]
    if jobs is not None:
        try:
            jobs = int(jobs)
            if jobs < 1:
                raise ValueError
        except ValueError:
            raise ConfigError("config.jobs", f"jobs must be a positive integer, not {merged['jobs']!r} (from {origin['jobs']})", "pass --jobs 4") from None
    cc = str(merged["compiler_cache"]).lower()
    if cc not in ("auto", "sccache", "ccache", "none"):
        raise ConfigError("config.compiler-cache", f"unknown compiler cache {cc!r} (from {origin['compiler_cache']})", "use auto, sccache, ccache or none")
    installer = str(merged["installer"]).lower()
    if installer not in ("pip", "uv"):
        raise ConfigError("config.installer", f"unknown installer {installer!r} (from {origin['installer']})", "use pip or uv")
    for table in ("mirrors", "sccache"):
        value = pyproject.get(table, {})
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise ConfigError("config.table", f"[tool.wheelforge.{table}] must be a table of strings", "see README's configuration table")
    return Settings(
        target=Target(archs=archs, cuda=cuda, python=python, python_version=_python_version(python, running)),
        wheelhouse=Path(merged["wheelhouse"]).expanduser(),
        cache=Path(merged["cache"]).expanduser(),
        jobs=jobs,
        compiler_cache=cc,
        installer=installer,
        mirrors=dict(pyproject.get("mirrors", {})),
        sccache=dict(pyproject.get("sccache", {})),
        recipes_dir=flags.get("recipes_dir") or pyproject.get("recipes_dir"),
        sources=origin,
    )


def find_pyproject(start: Path | None = None) -> Path | None:
    """The nearest pyproject.toml at or above ``start`` (the current directory)."""
    here = (start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / "pyproject.toml").is_file():
            return d / "pyproject.toml"
    return None

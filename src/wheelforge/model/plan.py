"""The build plan: every step of one build, as frozen data.

A plan says everything a build will do, in order: fetch the pinned source, patch it, make
the build environment, compile (each build kind contributes its own steps), label the wheel
with the target, relocate its libraries, audit its device code, store it in the wheelhouse
and verify it.  :mod:`wheelforge.model.planner` makes plans without touching the machine;
:mod:`wheelforge.build.runner` executes the steps in order and knows nothing per kind.

Paths inside a plan are relative to the attempt's work folder, written ``{work}/...``; the
runner fills in the folder.  So a plan, its JSON and its key do not depend on where a build
runs, and ``invoke plan`` shows exactly what ``invoke build`` runs.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

from wheelforge.model.recipe import Source

#: The placeholder for the attempt's work folder in commands, paths and environment values.
WORK = "{work}"


def canonical_json(obj: Any) -> str:
    """Sorted keys, no whitespace, ASCII: the same bytes in every process."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def sha256_hex(text: str | bytes) -> str:
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()


# --------------------------------------------------------------------------- what is built, against what


@dataclass(frozen=True)
class PlannedSource:
    """A pinned source and the digest that names its bytes (``sha256:``, ``git:`` or ``tree:``)."""

    source: Source
    digest: str

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self.source), "digest": self.digest}


@dataclass(frozen=True)
class PatchSpec:
    file: str
    sha256: str
    path: str  # where the runner reads it (the recipe's patch folder)

    def to_json(self) -> dict[str, str]:
        return {"file": self.file, "sha256": self.sha256}


@dataclass(frozen=True)
class TargetSpec:
    archs: tuple[str, ...]  # as written: "9.0", "12.0+PTX"
    cuda: str
    python: str  # tag: "cp311"
    platform: str
    label: str  # the wheel's local version label

    def to_json(self) -> dict[str, Any]:
        return {"archs": list(self.archs), "cuda": self.cuda, "python": self.python, "platform": self.platform, "label": self.label}


@dataclass(frozen=True)
class ToolchainSpec:
    """The tools the build runs, as far as they are known before it runs."""

    cuda_version: str
    cuda_home: str
    host_compiler: str | None
    cmake: str | None

    def to_json(self) -> dict[str, Any]:
        return {"cuda_version": self.cuda_version, "cuda_home": self.cuda_home,
                "host_compiler": self.host_compiler, "cmake": self.cmake}


@dataclass(frozen=True)
class BuildDependency:
    """A package the build compiles against.

    ``identity`` names its content: ``sha256:<wheel hash>`` (from the wheelhouse or a pinned
    file), ``key:<cache key>`` (a recipe wheel not built yet), ``pypi:torch==2.15.0`` (a
    pinned upstream release) or ``installed:torch==2.11.0+cu130`` (``--no-isolation``).
    """

    name: str
    version: str
    identity: str
    requirement: str  # what pip installs into the build env (a path or a pin)
    cuda_version: str | None = None  # the CUDA the dependency itself was built for
    recipe: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "identity": self.identity,
                "cuda_version": self.cuda_version, "recipe": self.recipe}


# --------------------------------------------------------------------------- steps


@dataclass(frozen=True)
class Command:
    argv: tuple[str, ...]
    cwd: str
    phase: str  # the step that runs it: "env", "compile", ...

    def shell(self) -> str:
        return f"cd {shlex.quote(self.cwd)} && {shlex.join(self.argv)}"

    def to_json(self) -> dict[str, Any]:
        return {"argv": list(self.argv), "cwd": self.cwd, "shell": self.shell()}


@dataclass(frozen=True)
class Step:
    """One step of a plan; ``action`` names the runner's executor, ``name`` what people read."""

    action: ClassVar[str] = ""
    name: str

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "action": self.action}
        for f in fields(self):
            if f.name == "name":
                continue
            value = getattr(self, f.name)
            if isinstance(value, tuple):
                value = [v.to_json() if hasattr(v, "to_json") else v for v in value]
            elif hasattr(value, "to_json"):
                value = value.to_json()
            out[f.name] = value
        return out


@dataclass(frozen=True)
class FetchStep(Step):
    """Make the pinned source present in the cache and check it is still what was planned."""

    action: ClassVar[str] = "fetch"
    source: PlannedSource


@dataclass(frozen=True)
class PatchStep(Step):
    """A fresh copy of the fetched source at ``{work}/src`` with the patch series applied."""

    action: ClassVar[str] = "patch"
    patches: tuple[PatchSpec, ...]
    dest: str


@dataclass(frozen=True)
class WriteFileStep(Step):
    """Write a file the build needs that the plan generated (a wrapper project, say)."""

    action: ClassVar[str] = "write"
    path: str
    text: str


@dataclass(frozen=True)
class RunStep(Step):
    """Run commands in order; ``compiler_cache`` ("sccache"/"ccache" path) is started before and read after."""

    action: ClassVar[str] = "run"
    commands: tuple[Command, ...]
    compiler_cache: str | None = None


@dataclass(frozen=True)
class LabelStep(Step):
    """Take the one wheel the build left in ``wheel_dir`` and make its version ``version``.

    ``mode`` "env": the build set the version itself (checked); "rewrite": METADATA, dist-info
    and RECORD are rewritten.
    """

    action: ClassVar[str] = "label"
    wheel_dir: str
    version: str
    mode: str


@dataclass(frozen=True)
class RelocateStep(Step):
    """Every library a binary needs comes from the wheel, the driver or a pinned nvidia-* wheel."""

    action: ClassVar[str] = "relocate"
    cuda: str


@dataclass(frozen=True)
class AuditStep(Step):
    """Static audit: SASS for every requested arch in every binary with device code."""

    action: ClassVar[str] = "audit"
    expected_sass: tuple[str, ...]
    require_device_code: bool


@dataclass(frozen=True)
class StoreStep(Step):
    """Promote the wheel with entry.json and provenance.json into ``entries/<key>/``."""

    action: ClassVar[str] = "store"
    key: str


@dataclass(frozen=True)
class VerifyStep(Step):
    """The post-build suite in a fresh venv; its result lands in the entry."""

    action: ClassVar[str] = "verify"
    test_module: str  # absolute path of the recipe's post-build test module (Recipe.test_module_path)
    runtime_requires: tuple[str, ...]


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class BuildPlan:
    recipe: str
    project: str
    kind: str
    version: str
    full_version: str
    source: PlannedSource
    patches: tuple[PatchSpec, ...]
    target: TargetSpec
    toolchain: ToolchainSpec
    build_deps: tuple[BuildDependency, ...]
    isolation: bool
    jobs: int
    jobs_reason: str
    env: Mapping[str, str]
    steps: tuple[Step, ...]
    wheel_name: str
    expected_sass: tuple[str, ...]
    key_inputs: Mapping[str, Any]
    key: str
    notes: tuple[str, ...] = field(default_factory=tuple)
    # [build] nvidia expanded: build requirements and the distribution -> version pins for Requires-Dist
    nvidia: Mapping[str, Any] = field(default_factory=dict)
    # the locked build environment: {name, version, sha256} of every package the build venv is filled from
    build_lock: tuple[Mapping[str, str], ...] = ()

    @property
    def commands(self) -> tuple[Command, ...]:
        """Every command the build runs, in order."""
        return tuple(c for s in self.steps if isinstance(s, RunStep) for c in s.commands)

    def step(self, name: str) -> Step:
        return next(s for s in self.steps if s.name == name)

    def to_json(self) -> dict[str, Any]:
        return {
            "recipe": self.recipe, "project": self.project, "kind": self.kind, "version": self.version,
            "full_version": self.full_version, "source": self.source.to_json(),
            "patches": [p.to_json() for p in self.patches], "target": self.target.to_json(),
            "toolchain": self.toolchain.to_json(), "build_deps": [d.to_json() for d in self.build_deps],
            "isolation": self.isolation, "jobs": self.jobs, "jobs_reason": self.jobs_reason, "env": dict(self.env),
            "steps": [s.to_json() for s in self.steps], "wheel_name": self.wheel_name,
            "expected_sass": list(self.expected_sass), "key_inputs": dict(self.key_inputs), "key": self.key,
            "notes": list(self.notes), **({"nvidia": dict(self.nvidia)} if self.nvidia else {}),
            "build_lock": [dict(p) for p in self.build_lock],
        }


def resolve_work(value: Any, workdir: str) -> Any:
    """``value`` (a step, command, string, tuple...) with every ``{work}`` replaced by ``workdir``."""
    import dataclasses

    if isinstance(value, str):
        return value.replace(WORK, workdir)
    if isinstance(value, tuple):
        return tuple(resolve_work(v, workdir) for v in value)
    if isinstance(value, (Command, Step)):
        changes = {f.name: resolve_work(getattr(value, f.name), workdir) for f in fields(value)
                   if isinstance(getattr(value, f.name), (str, tuple, Command))}
        return dataclasses.replace(value, **changes)
    return value

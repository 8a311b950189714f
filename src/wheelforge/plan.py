"""The planner: recipe x version x target x toolchain facts -> a build plan.

Pure: no subprocess, no network, no disk writes (it reads nothing either; callers pass
digests in).  Tests snapshot plans; the executor in ``wheelforge.build`` runs them.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from dataclasses import asdict, dataclass, field
from pathlib import PurePath
from typing import Any, Mapping, Sequence

from packaging.utils import canonicalize_name
from packaging.version import Version

from . import __version__
from .arch import check_toolkit_supports, cmake_cuda_architectures, expected_sass, torch_cuda_arch_list
from .config import Target
from .errors import PlanError
from .recipe import ArchiveSource, GitSource, PathSource, Recipe, SdistSource, Source
from .toolchain import ToolchainFacts


def canonical_json(obj: Any) -> str:
    """Sorted keys, no whitespace, ASCII: the same bytes in every process."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def sha256_hex(text: str | bytes) -> str:
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()


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


@dataclass(frozen=True)
class Command:
    argv: tuple[str, ...]
    cwd: str
    phase: str  # "env", "compile", ...

    def shell(self) -> str:
        return f"cd {shlex.quote(self.cwd)} && {shlex.join(self.argv)}"


@dataclass(frozen=True)
class BuildPlan:
    recipe: str
    project: str
    version: str
    full_version: str
    source: Mapping[str, Any]
    patches: tuple[Mapping[str, str], ...]
    target: Mapping[str, Any]
    toolchain: Mapping[str, Any]
    build_deps: tuple[Mapping[str, Any], ...]
    isolation: bool
    jobs: int
    jobs_reason: str
    env: Mapping[str, str]
    commands: tuple[Command, ...]
    wheel_name: str
    local_version_hook: str
    expected_sass: tuple[str, ...]
    key_inputs: Mapping[str, Any]
    key: str
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["commands"] = [{"argv": list(c.argv), "cwd": c.cwd, "phase": c.phase, "shell": c.shell()} for c in self.commands]
        return data


def source_digest(source: Source, tree_hash: str | None = None) -> dict[str, Any]:
    """The identity of a pinned source, JSON-ready."""
    if isinstance(source, GitSource):
        return {"type": "git", "url": source.url, "tag": source.tag, "commit": source.commit,
                "submodules": source.submodules, "digest": f"git:{source.commit}"}
    if isinstance(source, ArchiveSource):
        return {"type": "archive", "url": source.url, "digest": f"sha256:{source.sha256}"}
    if isinstance(source, SdistSource):
        return {"type": "sdist", "name": source.name, "version": source.version, "digest": f"sha256:{source.sha256}"}
    if isinstance(source, PathSource):
        if not tree_hash:
            raise PlanError("plan.tree-hash", f"the local source {source.path} has no content hash", "hash the tree before planning (wheelforge.treehash)")
        return {"type": "path", "path": source.path, "digest": f"tree:{tree_hash}"}
    raise PlanError("plan.source", f"unknown source {source!r}")  # pragma: no cover


def wheel_filename(project: str, full_version: str, tag: str, platform: str) -> str:
    dist = canonicalize_name(project).replace("-", "_")
    return f"{dist}-{full_version}-{tag}-{platform}.whl"


def make_plan(
    recipe: Recipe,
    version: str | None,
    target: Target,
    toolchain: ToolchainFacts,
    *,
    workdir: PurePath,
    patches: Sequence[tuple[str, str]] = (),
    build_deps: Sequence[BuildDependency] = (),
    isolation: bool = True,
    jobs: int = 1,
    jobs_reason: str = "",
    source: Source | None = None,
    tree_hash: str | None = None,
    platform: str = "linux_x86_64",
    launcher_env: Mapping[str, str] | None = None,
    uv: str | None = None,
) -> BuildPlan:
    """Turn inputs into a plan.  ``patches`` are ``(file, sha256)`` pairs in series order.

    ``workdir`` is where the executor will put ``src/``, ``env/`` and ``out/`` for this
    attempt; it is not part of the key.  ``launcher_env`` holds compiler-cache variables,
    which speed the build up but cannot change its output, so they are not keyed either.
    ``uv`` (a path) fills the build venv with uv instead of pip: the same requirements, so not
    keyed; the resolved build-dependency versions are what the key holds.
    """
    pin = recipe.pin(version)
    version = pin.version
    if toolchain.cuda_version is None:
        raise PlanError("plan.no-cuda", "no CUDA version to plan for", "pass --cuda 12.8 (or install a toolkit and use --cuda auto)")
    cuda = toolchain.cuda_version
    if target.cuda not in ("auto", cuda) and Version(target.cuda).release[:2] != Version(cuda).release[:2]:
        raise PlanError("plan.cuda-mismatch", f"target CUDA {target.cuda} but toolchain facts are for CUDA {cuda}", "pass matching --cuda")
    check_toolkit_supports(target.archs, cuda)
    unsupported = recipe.unsupported_archs(target.archs)
    if unsupported:
        # e.g. flash-attn's setup.py emits -gencode only for 80, 90, 100, 120 and silently skips the rest
        raise PlanError(
            "plan.arch-unsupported", f"{recipe.name} builds no code for {', '.join(unsupported)}",
            f"pick from {', '.join(recipe.supported_archs)} (SASS for X.0 also runs on X.y cards of the same major)",
        )
    if pin.requires_python and not pin.requires_python.contains(target.python_version):
        raise PlanError(
            "plan.python", f"{recipe.name} {version} supports Python {pin.requires_python}, not {target.python_version}",
            "pick another --python or recipe version",
        )
    target_major = Version(cuda).major
    for dep in build_deps:
        if dep.cuda_version and Version(dep.cuda_version).major != target_major:
            raise PlanError(
                "plan.dep-cuda-major",
                f"{dep.name} {dep.version} was built for CUDA {dep.cuda_version}, but the target is CUDA {cuda}",
                f"use a {dep.name} built for CUDA {target_major}.x (build it with wheelforge, or --with {dep.name}==X+cu{Version(cuda).major}{Version(cuda).minor}), or change --cuda",
            )
    missing = sorted(set(recipe.build.recipes) - {d.recipe or d.name for d in build_deps})
    if missing:
        raise PlanError("plan.missing-dep", f"{recipe.name} builds against {', '.join(missing)}, which was not resolved", "build it first or pass --with NAME==VERSION")

    label = target.label(cuda)
    full_version = f"{version}+{label}"
    src = source or recipe.resolve_source(pin)
    src_info = source_digest(src, tree_hash)

    values = {
        "version": version,
        "local_version": label,
        "full_version": full_version,
        "torch_cuda_arch_list": torch_cuda_arch_list(target.archs),
        "cmake_cuda_architectures": cmake_cuda_architectures(target.archs, recipe.cmake_arch_rewrite),
        "cuda_arch_numbers": ";".join(a.number for a in target.archs),
        "cuda_version": cuda,
        "cuda_home": toolchain.cuda_home or f"/usr/local/cuda-{cuda}",
        "jobs": str(jobs),
        "python_tag": target.python_tag,
    }
    env = {k: v.format(**values) for k, v in sorted(recipe.env.items())}
    env.setdefault("CUDA_HOME", values["cuda_home"])
    env.setdefault("MAX_JOBS", str(jobs))
    env.setdefault("CMAKE_BUILD_PARALLEL_LEVEL", str(jobs))
    env.update(launcher_env or {})

    srcdir, envdir, outdir = workdir / "src", workdir / "env", workdir / "out"
    python = str(envdir / "bin" / "python") if isolation else target.python
    commands: list[Command] = []
    if isolation:
        installs = [*recipe.build.requires, *(d.requirement for d in build_deps)]
        if uv:
            # --seed: the compile step runs the venv's own pip (`pip wheel`)
            commands.append(Command((uv, "venv", "--seed", "--python", target.python, str(envdir)), str(workdir), "env"))
            if installs:
                commands.append(Command((uv, "pip", "install", "--python", python, *installs), str(workdir), "env"))
        else:
            commands.append(Command((target.python, "-m", "venv", str(envdir)), str(workdir), "env"))
            if installs:
                commands.append(Command((python, "-m", "pip", "install", "--disable-pip-version-check", *installs), str(workdir), "env"))
    commands.append(Command(
        (python, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--disable-pip-version-check", "-v",
         "--wheel-dir", str(outdir), str(srcdir)),
        str(srcdir), "compile",
    ))

    tag = recipe.wheel_tag.format(python_tag=target.python_tag)
    patch_list = tuple({"file": f, "sha256": h} for f, h in patches)
    deps_json = tuple(
        {"name": d.name, "version": d.version, "identity": d.identity, "cuda_version": d.cuda_version, "recipe": d.recipe}
        for d in sorted(build_deps, key=lambda d: d.name)
    )
    toolchain_json = {
        "cuda_version": cuda,
        "host_compiler": toolchain.host_compiler.version if toolchain.host_compiler else None,
        "cmake": toolchain.cmake.version if toolchain.cmake else None,
    }
    target_json = {"archs": [str(a) for a in target.archs], "cuda": cuda, "python": target.python_tag,
                   "platform": platform, "label": label}
    key_inputs = {
        "wheelforge": __version__,
        "recipe": recipe.to_json(),
        "version": version,
        "source": src_info["digest"],
        "patches": list(patch_list),
        "target": target_json,
        "toolchain": toolchain_json,
        "build_deps": [{"name": d["name"], "identity": d["identity"]} for d in deps_json],
        "build_requires": list(recipe.build.requires),
        "isolation": isolation,
    }
    notes = list(toolchain.notes)
    if recipe.local_version == "rewrite":
        notes.append("the local version label is written into the wheel's METADATA and RECORD after the build")
    return BuildPlan(
        recipe=recipe.name, project=recipe.project, version=version, full_version=full_version,
        source=src_info, patches=patch_list, target=target_json, toolchain=toolchain_json,
        build_deps=deps_json, isolation=isolation, jobs=jobs, jobs_reason=jobs_reason, env=env,
        commands=tuple(commands), wheel_name=wheel_filename(recipe.project, full_version, tag, platform),
        local_version_hook=recipe.local_version, expected_sass=tuple(expected_sass(target.archs)),
        key_inputs=key_inputs, key=sha256_hex(canonical_json(key_inputs)), notes=tuple(notes),
    )

"""The planner: recipe x version x target x toolchain facts -> a :class:`~wheelforge.model.plan.BuildPlan`.

Pure: no subprocess, no network, no disk writes, and no reads either; callers pass digests
in.  Tests snapshot plans; :mod:`wheelforge.build.runner` runs them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import PurePath
from typing import Any

from packaging.utils import canonicalize_name
from packaging.version import Version

from wheelforge import __version__
from wheelforge.model.arch import check_toolkit_supports, cmake_cuda_architectures, expected_sass, torch_cuda_arch_list
from wheelforge.model.errors import PlanError
from wheelforge.model.facts import ToolchainFacts
from wheelforge.model.kinds import KINDS, KindContext
from wheelforge.model.lock import BuildLock
from wheelforge.model.nvidia_wheels import NvidiaBuild, runtime_requirements, versions_for
from wheelforge.model.nvidia_wheels import expand as expand_nvidia
from wheelforge.model.plan import (
    WORK,
    AuditStep,
    BuildDependency,
    BuildPlan,
    FetchStep,
    LabelStep,
    PatchSpec,
    PatchStep,
    PlannedSource,
    RelocateStep,
    Step,
    StoreStep,
    TargetSpec,
    ToolchainSpec,
    VerifyStep,
    canonical_json,
    resolve_work,
    sha256_hex,
)
from wheelforge.model.recipe import ArchiveSource, GitSource, PathSource, Recipe, SdistSource, Source, dep_version_placeholder
from wheelforge.model.settings import Target


def source_digest(source: Source, tree_hash: str | None = None) -> str:
    """The digest that names a pinned source's bytes."""
    if isinstance(source, GitSource):
        return f"git:{source.commit}"
    if isinstance(source, (ArchiveSource, SdistSource)):
        return f"sha256:{source.sha256}"
    if isinstance(source, PathSource):
        if not tree_hash:
            raise PlanError("plan.tree-hash", f"the local source {source.path} has no content hash", "hash the tree before planning (wheelforge.sources.treehash)")
        return f"tree:{tree_hash}"
    raise PlanError("plan.source", f"unknown source {source!r}")  # pragma: no cover


def wheel_filename(project: str, full_version: str, tag: str, platform: str) -> str:
    dist = canonicalize_name(project).replace("-", "_")
    return f"{dist}-{full_version}-{tag}-{platform}.whl"


def _check_inputs(recipe: Recipe, version: str, target: Target, toolchain: ToolchainFacts,
                  build_deps: Sequence[BuildDependency]) -> str:
    if toolchain.cuda_version is None:
        raise PlanError("plan.no-cuda", "no CUDA version to plan for", "pass --cuda 12.8 (or install a toolkit and use --cuda auto)")
    cuda = toolchain.cuda_version
    if target.cuda not in ("auto", cuda) and Version(target.cuda).release[:2] != Version(cuda).release[:2]:
        raise PlanError("plan.cuda-mismatch", f"target CUDA {target.cuda} but toolchain facts are for CUDA {cuda}", "pass matching --cuda")
    check_toolkit_supports(target.archs, cuda, toolchain.nvcc_archs)
    unsupported = recipe.unsupported_archs(target.archs)
    if unsupported:
        # e.g. flash-attn's setup.py emits -gencode only for 80, 90, 100, 120 and silently skips the rest
        raise PlanError(
            "plan.arch-unsupported", f"{recipe.name} builds no code for {', '.join(unsupported)}",
            f"pick from {', '.join(recipe.supported_archs)} (SASS for X.0 also runs on X.y cards of the same major)",
        )
    pin = recipe.pin(version)
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
    return cuda


def make_plan(
    recipe: Recipe,
    version: str | None,
    target: Target,
    toolchain: ToolchainFacts,
    *,
    workdir: PurePath | str = WORK,
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
    verify: bool = True,
    build_env_site: str | None = None,
    nvidia_installed: Mapping[str, str] | None = None,
    lock: BuildLock | None = None,
) -> BuildPlan:
    """Turn inputs into a plan.  ``patches`` are ``(file, sha256)`` pairs in series order.

    ``workdir`` is ``{work}`` (filled in by the runner) unless a caller wants real paths; it is
    not part of the key.  ``launcher_env`` holds compiler-cache variables, which speed the build
    up but cannot change its output, so they are not keyed.  ``uv`` (a path) fills the build
    venv with uv instead of pip: the same requirements, so not keyed.  ``verify`` adds the
    post-build suite as the last step.
    ``build_env_site`` is the site-packages of the interpreter that builds (``--no-isolation``: the
    target's; with isolation, the build venv's); the ``{nvidia_*}`` placeholders point into it.
    ``nvidia_installed`` (``--no-isolation``) holds the versions of the ``[build] nvidia`` wheels that
    interpreter has: what the build compiles against, so they are keyed.
    ``lock`` (:mod:`wheelforge.model.lock`): the build venv is filled from it with hashes required and
    the key holds its files; without it (unit tests) the requirements as written are keyed.
    """
    pin = recipe.pin(version)
    version = pin.version
    cuda = _check_inputs(recipe, version, target, toolchain, build_deps)

    # A torch extension is bound to the torch it compiled against: the label says which.
    torch_dep = next((d for d in build_deps if (d.recipe or d.name) == "torch"), None)
    label = target.label(cuda, torch_dep.version if torch_dep and recipe.builds_against("torch") else None)
    full_version = f"{version}+{label}"
    src = source or recipe.resolve_source(pin)
    planned_source = PlannedSource(src, source_digest(src, tree_hash))
    cuda_home = toolchain.cuda_home or f"/usr/local/cuda-{cuda}"

    values = {
        "version": version,
        "local_version": label,
        "full_version": full_version,
        "torch_cuda_arch_list": torch_cuda_arch_list(target.archs),
        "cmake_cuda_architectures": cmake_cuda_architectures(target.archs, recipe.cmake_arch_rewrite),
        "cuda_arch_numbers": ";".join(a.number for a in target.archs),
        "cuda_enabled": "ON" if target.archs else "OFF",
        "cuda_version": cuda,
        "cuda_home": cuda_home,
        "jobs": str(jobs),
        "python_tag": target.python_tag,
    }
    for dep in build_deps:
        values[dep_version_placeholder(dep.recipe or dep.name)] = dep.version
    if isolation and build_env_site is None:
        build_env_site = f"{WORK}/env/lib/python{target.python_version}/site-packages"
    uses_nvidia = bool(recipe.build.nvidia or recipe.nvidia_versions)
    nvidia_versions = versions_for(recipe.nvidia_versions, cuda) if uses_nvidia else {}
    nvidia = expand_nvidia(recipe.build.nvidia, cuda, nvidia_versions, build_env_site) if uses_nvidia else NvidiaBuild((), {})
    values.update(nvidia.placeholders)
    values["nvidia_requires"] = "|".join(runtime_requirements(nvidia_versions, cuda))
    try:
        env = {k: v.format(**values) for k, v in sorted(recipe.env.items())}
    except KeyError as exc:
        raise PlanError("plan.placeholder", f"{recipe.name}: placeholder {{{exc.args[0]}}} has no value for this build",
                        "the nvidia paths need the build interpreter's site-packages: plan with isolation, or let the pipeline probe it") from None
    env.setdefault("CUDA_HOME", cuda_home)
    # Reproducible bytes: backends (scikit-build-core, setuptools' wheel) date zip entries from this, not the clock.
    # A fixed date, not one read from the source: the plan is pure and one key must give one set of bytes
    # (1980-01-01, the earliest date a zip entry can carry).
    env.setdefault("SOURCE_DATE_EPOCH", "315532800")
    env.setdefault("MAX_JOBS", str(jobs))
    env.setdefault("CMAKE_BUILD_PARALLEL_LEVEL", str(jobs))
    env.update(launcher_env or {})

    kind = KINDS[recipe.kind]
    ctx = KindContext(
        recipe=recipe, version=version, full_version=full_version, target_python=target.python, isolation=isolation,
        installs=(*(() if lock else (*recipe.build.requires, *nvidia.requirements)), *(d.requirement for d in build_deps)), uv=uv,
        lock_file=lock.path if lock else None,
        compiler_cache=(launcher_env or {}).get("CMAKE_CXX_COMPILER_LAUNCHER"), values=values,
    )
    patch_specs = tuple(PatchSpec(f, h, str(recipe.patch_dir / f)) for f, h in patches)
    archs = expected_sass(target.archs)
    steps: list[Step] = [
        FetchStep("fetch", planned_source),
        PatchStep("patch", patch_specs, f"{WORK}/src"),
        *kind.steps(ctx),
        LabelStep("label", f"{WORK}/out", full_version, recipe.local_version),
        RelocateStep("relocate", cuda),
        AuditStep("audit", tuple(archs), bool(archs)),
    ]
    deps = tuple(sorted(build_deps, key=lambda d: d.name))
    target_spec = TargetSpec(tuple(str(a) for a in target.archs), cuda, target.python_tag, platform, label)
    # cmake and ninja: with isolation the build venv's (locked), else the ones on the target's PATH
    path_cmake = toolchain.cmake.version if toolchain.cmake else None
    toolchain_spec = ToolchainSpec(
        cuda_version=cuda, cuda_home=cuda_home,
        host_compiler=toolchain.host_compiler.version if toolchain.host_compiler else None,
        cmake=(lock.version_of("cmake") if lock else None) if isolation else path_cmake,
    )
    tools: dict[str, Any] = {"nvcc": toolchain.nvcc_version or cuda, "host_compiler": toolchain_spec.host_compiler}
    if not isolation:
        tools.update(cmake=path_cmake, ninja=toolchain.ninja.version if toolchain.ninja else None)
    key_inputs: dict[str, Any] = {
        "wheelforge": __version__,
        "recipe": recipe.build_inputs(),
        "version": version,
        "source": planned_source.digest,
        "patches": [p.to_json() for p in patch_specs],
        "target": target_spec.to_json(),
        "toolchain": tools,
        "build_deps": [{"name": d.name, "identity": d.identity} for d in deps],
        "isolation": isolation,
    }
    if pin.cmake_defines:
        key_inputs["cmake_defines"] = dict(sorted(pin.cmake_defines.items()))
    if lock:
        key_inputs["build_lock"] = lock.to_json()
    elif isolation:
        key_inputs["build_requires"] = [*recipe.build.requires, *nvidia.requirements]
    if nvidia_installed:
        key_inputs["nvidia_installed"] = dict(sorted(nvidia_installed.items()))
    key = sha256_hex(canonical_json(key_inputs))
    steps.append(StoreStep("store", key))
    if verify:
        steps.append(VerifyStep("verify", str(recipe.test_module_path), tuple(recipe.runtime_requires)))
    if str(workdir) != WORK:
        steps = [_rebase(s, str(workdir)) for s in steps]
        env = {k: v.replace(WORK, str(workdir)) for k, v in env.items()}

    notes = list(toolchain.notes)
    if recipe.local_version == "rewrite":
        notes.append("the local version label is written into the wheel's METADATA and RECORD after the build")
    tag = recipe.wheel_tag.format(python_tag=target.python_tag)
    return BuildPlan(
        recipe=recipe.name, project=recipe.project, kind=recipe.kind, version=version, full_version=full_version,
        source=planned_source, patches=patch_specs, target=target_spec, toolchain=toolchain_spec, build_deps=deps,
        isolation=isolation, jobs=jobs, jobs_reason=jobs_reason, env=env, steps=tuple(steps),
        wheel_name=wheel_filename(recipe.project, full_version, tag, platform), expected_sass=tuple(archs),
        key_inputs=key_inputs, key=key, notes=tuple(notes), nvidia=nvidia.to_json() if uses_nvidia else {},
        build_lock=tuple(lock.to_json()) if lock else (),
    )


def _rebase(step: Step, workdir: str) -> Step:
    """The same step with ``{work}`` replaced by a real folder (callers that want concrete paths)."""
    return resolve_work(step, workdir)

"""Orchestration behind ``invoke build`` and ``invoke plan``.

    recipes -> dependencies -> jobs + compiler cache -> source digest -> plan -> key
      -> no-op if the wheelhouse has the key
      -> under the key lock: fetch, patch, run, label, check, relocate, audit, promote
      -> verify (unless --no-verify)

The no-op path must stay fast (< 0.5 s for ``invoke build demo-cuda``): heavy modules
are imported only past it, and toolchain facts are cached by a fingerprint of the
binaries they came from (probing nvcc alone takes over a second).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .config import Settings
from .errors import BuildError, ConfigError, PlanError, WheelforgeError
from .plan import BuildDependency, BuildPlan, make_plan
from .recipe import PathSource, Recipe, find_recipe, recipe_dirs
from .toolchain import Gpu, Tool, ToolchainFacts
from .wheelhouse import Entry, Wheelhouse

Echo = Callable[[str], None]

#: Free space asked for before a build: the source, the build tree and the wheel.
MIN_FREE_GB = 2.0


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass
class BuildResult:
    recipe: str
    key: str
    wheel: Path
    entry_dir: Path
    noop: bool
    seconds: float
    cache: str | None = None  # compiler-cache summary line
    verify: str | None = None
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- toolchain (cached)


def _fingerprint(env: Mapping[str, str]) -> str:
    from .toolchain import find_nvcc

    h = hashlib.sha256()
    for var in ("PATH", "CUDA_HOME", "CUDA_PATH", "CXX"):
        h.update(f"{var}={env.get(var, '')}\n".encode())
    files = [str(p) for p in find_nvcc(env)]
    for name in (env.get("CXX") or "g++", "cmake", "ninja", "ccache", "sccache", "nvidia-smi"):
        files.append(shutil.which(name, path=env.get("PATH")) or f"-{name}")
    for f in files:
        try:
            st = os.stat(f)
            h.update(f"{f}:{os.path.realpath(f)}:{st.st_mtime_ns}:{st.st_size}\n".encode())
        except OSError:
            h.update(f"{f}:absent\n".encode())
    return h.hexdigest()[:32]


def _facts_from_json(data: Mapping[str, Any]) -> ToolchainFacts:
    d = dict(data)
    for name in ("host_compiler", "cmake", "ninja", "ccache", "sccache"):
        if d.get(name):
            d[name] = Tool(**d[name])
    d["gpus"] = tuple(Gpu(**g) for g in d.get("gpus", ()))
    d["nvcc_archs"] = tuple(d.get("nvcc_archs", ()))
    d["notes"] = tuple(d.get("notes", ()))
    return ToolchainFacts(**d)


def detect_toolchains(settings: Settings, env: Mapping[str, str] | None = None, *, refresh: bool = False) -> list[ToolchainFacts]:
    """``toolchain.detect_all`` behind a cache in ``<cache>/toolchain/``, keyed by the binaries' paths and mtimes."""
    from .toolchain import detect_all

    env = dict(os.environ if env is None else env)
    path = settings.cache / "toolchain" / f"{_fingerprint(env)}.json"
    if not refresh:
        try:
            return [_facts_from_json(x) for x in json.loads(path.read_text())]
        except (OSError, ValueError, TypeError):
            pass
    found = detect_all(env)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps([f.to_json() for f in found]))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache only costs speed
    return found


def resolve_toolchain(settings: Settings, env: Mapping[str, str] | None = None) -> ToolchainFacts:
    """The toolkit for ``settings.target.cuda`` ("auto" = first found); fails naming what was found."""
    from .toolchain import check_host_compiler, select

    facts = select(detect_toolchains(settings, env), settings.target.cuda)
    check_host_compiler(facts)
    return facts


# --------------------------------------------------------------------------- dependencies


_LABEL_CUDA = re.compile(r"\+cu(\d{2,3})\b")


def cuda_from_label(version: str) -> str | None:
    """``2.11.0+cu130`` -> ``13.0``; ``+cu128`` -> ``12.8``."""
    m = _LABEL_CUDA.search(version)
    if not m:
        return None
    digits = m.group(1)
    return f"{digits[:-1]}.{digits[-1]}"


def cuda_from_requires_dist(requires: Sequence[str]) -> str | None:
    """The CUDA a release was built for, from its ``nvidia-cuda-runtime[-cuXX]`` / ``cuda-toolkit`` pins."""
    for req in requires:
        m = re.match(r"^\s*(nvidia-cuda-runtime(?:-cu(\d+))?|cuda-toolkit)\b[^;]*?==\s*(\d+)\.(\d+)", req)
        if m:
            return f"{m.group(3)}.{m.group(4)}"
        m = re.match(r"^\s*nvidia-cuda-runtime-cu(\d+)\b", req)
        if m:
            return f"{m.group(1)}.0"
    return None


def parse_pin(text: str) -> tuple[str, str]:
    m = re.match(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;]+)\s*$", text)
    if not m:
        raise ConfigError("config.with", f"cannot read --with {text!r}", "write it as NAME==VERSION, e.g. --with torch==2.15.0")
    return m.group(1).lower(), m.group(2)


def resolve_pin(text: str, *, offline: bool = False, echo: Echo = _stderr) -> BuildDependency:
    """``--with torch==2.15.0``: the CUDA it was built for comes from a ``+cuXYZ`` label or PyPI's metadata."""
    name, version = parse_pin(text)
    cuda = cuda_from_label(version)
    if cuda is None:
        if offline:
            raise PlanError("plan.with-offline", f"cannot tell which CUDA {name} {version} was built for while offline",
                            f"pin a labelled build (--with {name}=={version}+cu130) or drop --offline")
        from .pypi import requires_dist

        cuda = cuda_from_requires_dist(requires_dist(name, version, echo=echo))
    return BuildDependency(name=name, version=version, identity=f"pypi:{name}=={version}", requirement=f"{name}=={version}",
                           cuda_version=cuda, recipe=name)


def _installed_version(name: str) -> list[str | None]:
    """[version, CUDA version or None] of ``name`` in the running interpreter (torch: from its version.py,
    read as text: importing torch costs seconds)."""
    import importlib.metadata
    import re

    dist = importlib.metadata.distribution(name)
    cuda = None
    if name == "torch":
        text = Path(str(dist.locate_file("torch/version.py"))).read_text()
        found = re.search(r"^cuda\b[^=]*=\s*['\"]([0-9.]+)['\"]", text, re.M)
        cuda = found and found.group(1)
    return [dist.version, cuda]


def installed_dependency(name: str, python: str, *, echo: Echo = _stderr) -> BuildDependency:
    """``--no-isolation``: the version (and, for torch, CUDA) of ``name`` in the target interpreter."""
    import importlib.metadata
    import subprocess

    missing = PlanError("plan.no-isolation-missing", f"--no-isolation: {name} is not installed in {python}",
                        f"install {name} there, or build without --no-isolation")
    if os.path.abspath(python) == os.path.abspath(sys.executable):
        # the running interpreter: read in-process (a second interpreter start is most of a no-op rebuild)
        try:
            version, cuda = _installed_version(name)
        except importlib.metadata.PackageNotFoundError:
            raise missing from None
    else:
        import inspect  # another interpreter runs the same function: its source is the program

        probe = ("from __future__ import annotations\nimport json, sys\nfrom pathlib import Path\n" + inspect.getsource(_installed_version)
                 + "print(json.dumps(_installed_version(sys.argv[1])))\n")
        argv = [python, "-c", probe, name]
        echo(f"$ {python} -c '<read {name} version>' {name}")
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=dict(os.environ), check=False)
        if proc.returncode != 0:
            raise missing
        version, cuda = json.loads(proc.stdout.strip().splitlines()[-1])
    return BuildDependency(name=name, version=version, identity=f"installed:{name}=={version}", requirement=name,
                           cuda_version=cuda or cuda_from_label(version), recipe=name)


# --------------------------------------------------------------------------- planning


@dataclass
class _Prepared:
    recipe: Recipe
    plan: BuildPlan
    facts: ToolchainFacts
    launcher_env: dict[str, str]


def _load(name: str, settings: Settings) -> Recipe:
    return find_recipe(name, recipe_dirs(settings.recipes_dir))


def _prepare(recipe: Recipe, *, version: str | None, settings: Settings, facts: ToolchainFacts, deps: Sequence[BuildDependency],
             isolation: bool, source_path: str | os.PathLike[str] | None, workdir: Path, jobs: tuple[int, str]) -> _Prepared:
    from .compiler_cache import launcher_env

    pin = recipe.pin(version)
    patch_list: list[tuple[str, str]] = []
    if recipe.patches_for(pin.version):  # wheelforge.patches pulls in the network stack: only when needed
        from .patches import patch_digests

        patch_list = patch_digests(recipe, pin.version)
    source = PathSource(path=str(Path(source_path).resolve())) if source_path else recipe.resolve_source(pin)
    tree_hash = None
    if isinstance(source, PathSource):
        from .treehash import hash_tree, stat_cache_dir

        tree_hash = hash_tree(source.path, stat_cache=stat_cache_dir(settings.cache))
    torch_ext = "torch" in recipe.build.recipes or any(r.split("=")[0].split(">")[0].split("<")[0].strip() == "torch" for r in recipe.build.requires)
    lenv = launcher_env(settings, facts, torch_extension=torch_ext)
    uv = _uv(settings) if isolation else None
    site, installed = None, None
    if recipe.build.nvidia and not isolation and facts.cuda_version:
        # the nvidia wheels are the target interpreter's: ask it where they are and which versions it has
        from .nvidia_wheels import nvidia_wheel, probe_interpreter

        dists = [nvidia_wheel(k, facts.cuda_version).distribution for k in recipe.build.nvidia]
        site, installed = probe_interpreter(settings.target.python, dists)
    plan = make_plan(recipe, pin.version, settings.target, facts, workdir=workdir, patches=patch_list,
                     build_deps=deps, isolation=isolation, jobs=jobs[0], jobs_reason=jobs[1], source=source,
                     tree_hash=tree_hash, launcher_env=lenv, uv=uv, build_env_site=site, nvidia_installed=installed)
    return _Prepared(recipe, plan, facts, lenv)


def _uv(settings: Settings) -> str | None:
    """uv's path when the settings ask for it (``installer = "uv"``), else None (pip)."""
    if settings.installer != "uv":
        return None
    found = shutil.which("uv")
    if not found:
        raise ConfigError("config.installer", f"installer uv was asked for (from {settings.sources.get('installer', 'flag')}) but no uv is on PATH",
                          "pip install uv, or use --installer pip")
    return found


def _jobs(recipe: Recipe, settings: Settings) -> tuple[int, str]:
    from .jobs import choose_jobs

    return choose_jobs(recipe.ram_per_job_gb, override=settings.jobs)


def _deps(recipe: Recipe, *, settings: Settings, facts: ToolchainFacts, no_isolation: bool, pins: Mapping[str, str],
          offline: bool, echo: Echo, build_missing: bool, verify: bool) -> list[BuildDependency]:
    out = []
    for dep in recipe.build.recipes:
        if dep in pins:
            out.append(resolve_pin(pins[dep], offline=offline, echo=echo))
        elif no_isolation:
            out.append(installed_dependency(dep, settings.target.python, echo=echo))
        else:
            dep_recipe = _load(dep, settings)
            if build_missing:
                res = _build_one(dep_recipe, version=None, settings=settings, facts=facts, no_isolation=False, pins=pins,
                                 source_path=None, verify=verify, offline=offline, echo=echo)
                entry = Wheelhouse(settings.wheelhouse).lookup(res.key)
            else:
                prep = _plan_recipe(dep_recipe, version=None, settings=settings, facts=facts, no_isolation=False, pins=pins,
                                    source_path=None, offline=offline, echo=echo)
                entry = Wheelhouse(settings.wheelhouse).lookup(prep.plan.key)
                if entry is None:
                    out.append(BuildDependency(name=dep_recipe.project, version=prep.plan.full_version, identity=f"key:{prep.plan.key}",
                                               requirement=f"<wheel of {dep} to be built>", cuda_version=prep.plan.target["cuda"], recipe=dep))
                    continue
            assert entry is not None
            m = entry.manifest
            out.append(BuildDependency(name=m["project"], version=m["wheel"].split("-")[1], identity=f"sha256:{m['sha256']}",
                                       requirement=str(entry.wheel), cuda_version=m["target"]["cuda"], recipe=dep))
    return out


def _plan_recipe(recipe: Recipe, *, version: str | None, settings: Settings, facts: ToolchainFacts, no_isolation: bool,
                 pins: Mapping[str, str], source_path: Any, offline: bool, echo: Echo, workdir: Path | None = None) -> _Prepared:
    deps = _deps(recipe, settings=settings, facts=facts, no_isolation=no_isolation, pins=pins, offline=offline, echo=echo,
                 build_missing=False, verify=False)
    wd = workdir or (settings.wheelhouse / "scratch" / "<attempt>")
    return _prepare(recipe, version=version, settings=settings, facts=facts, deps=deps, isolation=not no_isolation,
                    source_path=source_path, workdir=wd, jobs=_jobs(recipe, settings))


def _pins(with_pins: Sequence[str]) -> dict[str, str]:
    return {parse_pin(p)[0]: p for p in with_pins}


def plan_for(recipe_name: str, *, version: str | None = None, settings: Settings, toolchain: ToolchainFacts | None = None,
             no_isolation: bool = False, with_pins: Sequence[str] = (), source_path: str | os.PathLike[str] | None = None,
             offline: bool = False, echo: Echo = _stderr) -> BuildPlan:
    """The plan ``invoke plan`` prints.  Recipe dependencies not yet built appear as ``key:<cache key>``."""
    recipe = _load(recipe_name, settings)
    facts = toolchain or resolve_toolchain(settings)
    return _plan_recipe(recipe, version=version, settings=settings, facts=facts, no_isolation=no_isolation,
                        pins=_pins(with_pins), source_path=source_path, offline=offline, echo=echo).plan


# --------------------------------------------------------------------------- building


def build(recipe_names: Sequence[str], *, version: str | None = None, settings: Settings, toolchain: ToolchainFacts | None = None,
          no_isolation: bool = False, with_pins: Sequence[str] = (), source_path: str | os.PathLike[str] | None = None,
          verify: bool = True, offline: bool = False, echo: Echo = _stderr, progress: bool = True) -> list[BuildResult]:
    """Build each recipe (dependencies first) into the wheelhouse; a key already there is a no-op.

    ``version`` and ``source_path`` apply to the named recipes, not to their dependencies.
    """
    if (version or source_path) and len(recipe_names) > 1:
        raise ConfigError("config.version-many", "--version/--source apply to one recipe, but several were named",
                          "build the recipes one at a time")
    facts = toolchain or resolve_toolchain(settings)
    pins = _pins(with_pins)
    results = []
    for name in recipe_names:
        recipe = _load(name, settings)
        results.append(_build_one(recipe, version=version, settings=settings, facts=facts, no_isolation=no_isolation, pins=pins,
                                  source_path=source_path, verify=verify, offline=offline, echo=echo, progress=progress))
    return results


def _noop(entry: Entry, recipe: Recipe, t0: float, echo: Echo) -> BuildResult:
    echo(f"{recipe.name}: up to date -> {entry.wheel}")
    return BuildResult(recipe=recipe.name, key=entry.key, wheel=entry.wheel, entry_dir=entry.path, noop=True,
                       seconds=time.monotonic() - t0, verify=entry.manifest.get("verify"))


def _build_one(recipe: Recipe, *, version: str | None, settings: Settings, facts: ToolchainFacts, no_isolation: bool,
               pins: Mapping[str, str], source_path: Any, verify: bool, offline: bool, echo: Echo,
               progress: bool = True) -> BuildResult:
    t0 = time.monotonic()
    deps = _deps(recipe, settings=settings, facts=facts, no_isolation=no_isolation, pins=pins, offline=offline, echo=echo,
                 build_missing=True, verify=verify)
    jobs = _jobs(recipe, settings)
    wh = Wheelhouse(settings.wheelhouse)
    prep = _prepare(recipe, version=version, settings=settings, facts=facts, deps=deps, isolation=not no_isolation,
                    source_path=source_path, workdir=wh.scratch / "<attempt>", jobs=jobs)
    key = prep.plan.key
    entry = wh.lookup(key)
    if entry is not None:
        return _noop(entry, recipe, t0, echo)

    wh.ensure_layout()
    with wh.lock(key):
        entry = wh.lookup(key)
        if entry is not None:  # another process built it while we waited
            return _noop(entry, recipe, t0, echo)
        wh.sweep_scratch()
        wh.check_free_disk(MIN_FREE_GB)
        scratch = wh.new_scratch(key)
        try:
            prep = _prepare(recipe, version=version, settings=settings, facts=facts, deps=deps, isolation=not no_isolation,
                            source_path=source_path, workdir=scratch, jobs=jobs)
            if prep.plan.key != key:  # the source changed between the two hashes
                raise BuildError("build.source-changed", f"the source of {recipe.name} changed while the build started",
                                 "stop editing the source tree during a build and rerun")
            result = _attempt(prep, wh, scratch, settings=settings, offline=offline, echo=echo, progress=progress, t0=t0)
            wh.clear_failure(key)
        except WheelforgeError as exc:
            wh.write_failure(key, recipe=recipe.name, version=prep.plan.version, error_id=exc.id, message=exc.message,
                             target=prep.plan.target)
            raise
        except Exception as exc:
            wh.write_failure(key, recipe=recipe.name, version=prep.plan.version, error_id="build.internal", message=repr(exc),
                             target=prep.plan.target)
            raise
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    if verify:
        result.verify = _verify(result, wh, recipe, settings, offline, echo)
    return result


def _attempt(prep: _Prepared, wh: Wheelhouse, scratch: Path, *, settings: Settings, offline: bool, echo: Echo,
             progress: bool, t0: float) -> BuildResult:
    from . import compiler_cache, relocate, wheelmeta
    from .audit import audit_path, raise_for_failures
    from .build import run_plan
    from .patches import prepare_tree
    from .progress import BuildProgress
    from .provenance import iso, statement
    from .sources import fetch
    from .wheelhouse import make_manifest, write_json

    plan, recipe = prep.plan, prep.recipe
    log_path = wh.log_path(plan.key)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.time()
    with open(log_path, "w", encoding="utf-8") as log:
        def say(line: str) -> None:
            echo(line)
            log.write(line + "\n")
            log.flush()

        say(f"# {recipe.name} {plan.full_version}  key {plan.key}")
        say(f"# jobs: {plan.jobs_reason}")
        launcher = compiler_cache.launcher_of(prep.launcher_env)
        say(f"# compiler cache: {launcher.name + ' (' + launcher.path + ')' if launcher else 'none'}")
        for note in plan.notes:
            say(f"# note: {note}")
        with BuildProgress(f"{recipe.name} {plan.full_version}", enabled=progress) as bar:
            bar.phase("fetch")
            src = PathSource(path=plan.source["path"]) if plan.source["type"] == "path" else recipe.resolve_source(recipe.pin(plan.version))
            fetched = fetch(src, cache_dir=settings.cache, offline=offline, mirrors=settings.mirrors, progress=False, echo=say)
            bar.phase("patch")
            prepared = prepare_tree(fetched, recipe, plan.version, scratch / "prep", echo=say)
            os.rename(prepared.path, scratch / "src")
            (scratch / "out").mkdir()
            if launcher:
                compiler_cache.start(launcher, {**_base(), **prep.launcher_env}, echo=say)
    # the executor appends to the same log
    with BuildProgress(f"{recipe.name} {plan.full_version}", enabled=progress) as bar:
        run = run_plan(plan, log_path, progress=bar, echo=echo)
        bar.phase("package")
    with open(log_path, "a", encoding="utf-8") as log:
        def say(line: str) -> None:  # noqa: F811 - same helper, log reopened
            echo(line)
            log.write(line + "\n")
            log.flush()

        cache_line = None
        if launcher:
            st = compiler_cache.stats(launcher, {**_base(), **prep.launcher_env}, echo=say)
            cache_line = st.summary() if st else f"compiler cache: {launcher.name}, stats unavailable"
            say(cache_line)
        wheels = sorted((scratch / "out").glob("*.whl"))
        if len(wheels) != 1:
            raise BuildError("build.no-wheel", f"{recipe.name}: the build made {len(wheels)} wheels in {scratch / 'out'}, expected 1",
                             f"see {log_path}")
        wheel = wheels[0]
        info = wheelmeta.check_wheel(wheel)
        fixed = scratch / "fixed"
        if plan.local_version_hook == "rewrite":
            if info.version != plan.full_version:
                say(f"# local version: {info.version} -> {plan.full_version} (METADATA, dist-info, RECORD, file name)")
                wheel = wheelmeta.rewrite_wheel(wheel, fixed, version=plan.full_version)
        elif info.version != plan.full_version:
            raise BuildError("build.version-hook", f"{recipe.name} built version {info.version}, expected {plan.full_version}",
                             f"the recipe's version hook did not take; set local_version = \"rewrite\" in {recipe.path} or fix its env")
        rel = relocate.analyze(wheel, plan.target["cuda"])
        rel = rel.with_versions(_built_against(plan, rel, say))
        for line in rel.lines():
            say(f"# needs: {line}")
        for need in rel.unknown:
            say(f"# warning: {need.file} needs {need.soname}, which neither the wheel, the driver, an nvidia-* wheel nor the manylinux set provides")
        wheel = relocate.fix(wheel, rel, fixed, echo=say)
        bar_audit = audit_path(wheel, list(plan.expected_sass), require_device_code=bool(plan.expected_sass))
        say(f"# audit: SASS found {', '.join(bar_audit.archs_found) or 'none'}; wanted {', '.join('sm_' + a for a in plan.expected_sass)}")
        raise_for_failures(bar_audit)  # a wheel failing the static audit is never promoted
        wheelmeta.check_wheel(wheel)

        stage = scratch / "entry"
        stage.mkdir()
        final = stage / wheel.name
        os.replace(wheel, final)
        sha = hashlib.sha256(final.read_bytes()).hexdigest()
        finished = time.time()
        seconds = time.monotonic() - t0
        write_json(stage / "entry.json", make_manifest(
            key=plan.key, recipe=recipe.name, version=plan.version, project=plan.project, wheel=final, sha256=sha,
            target=plan.target, archs_found=list(bar_audit.archs_found), built_at=iso(finished), build_seconds=seconds))
        tools = {"nvcc": prep.facts.cuda_version or "", **{n: getattr(prep.facts, n).version for n in ("host_compiler", "cmake", "ninja")
                                                           if getattr(prep.facts, n)}}
        write_json(stage / "provenance.json", statement(wheel_name=final.name, wheel_sha256=sha, plan=plan.to_json(),
                                                        started=started, finished=finished, toolchain_tools=tools))
        entry = wh.promote(stage, plan.key)
        say(f"{recipe.name}: built {entry.wheel} in {seconds:.1f} s (compile {run.phase_seconds.get('compile', 0):.1f} s)")
    return BuildResult(recipe=recipe.name, key=plan.key, wheel=entry.wheel, entry_dir=entry.path, noop=False, seconds=seconds,
                       cache=cache_line, notes=[n.soname for n in rel.unknown])


def _built_against(plan: BuildPlan, rel: Any, say: Echo) -> dict[str, str]:
    """Versions to pin the wheel's nvidia-* requirements to: the recipe's [nvidia_versions], overridden by
    what the build interpreter actually has installed (what the build compiled against)."""
    from .nvidia_wheels import probe_interpreter, requirement_name

    pins = dict(plan.nvidia.get("versions", {}))
    dists = sorted({requirement_name(r) for r in rel.requirements})
    if dists:
        python = plan.commands[-1].argv[0]
        installed = probe_interpreter(python, dists)[1]
        for dist, version in sorted(installed.items()):
            if pins.get(dist, version) != version:
                say(f"# note: {dist} {version} is installed in the build env, the recipe pins {pins[dist]}: pinning {version}")
        pins.update(installed)
    return pins


def _base() -> dict[str, str]:
    from .build import base_env

    return base_env()


def _verify(result: BuildResult, wh: Wheelhouse, recipe: Recipe, settings: Settings, offline: bool, echo: Echo) -> str:
    """Post-build verification (wheelforge.verify): static audit + the recipe's suite in a fresh venv.

    Its report lands in the entry's verify.json; a failure raises VerifyError (the wheel stays
    in the wheelhouse, marked ``verify: failed``, since it did pass the static audit).
    """
    from . import verify as verify_mod

    manifest = Wheelhouse(wh.root).lookup(result.key).manifest  # type: ignore[union-attr]
    report = verify_mod.verify(
        result.entry_dir, archs=manifest["target"]["archs"], cuda=manifest["target"]["cuda"], wheelhouse=wh.root,
        runtime_requires=recipe.runtime_requires, test_module=recipe.test_module, python=settings.target.python,
        offline=offline, echo=echo,
    )
    verify_mod.render_report(report)
    report.raise_for_result()
    return report.result

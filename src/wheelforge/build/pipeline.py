"""Orchestration behind ``invoke build`` and ``invoke plan``.

    recipes -> dependency order -> for each: dependencies resolved -> plan (once) -> key
      -> no-op if the wheelhouse has the key
      -> under the key's lock: the plan's steps, run by wheelforge.build.runner

The no-op path must stay fast (< 0.5 s for ``invoke build demo-cuda``): heavy modules are
imported only past it, and toolchain facts come from a cache (probing nvcc takes a second).
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from wheelforge.model.errors import ConfigError, Interrupted, VerifyError, WheelforgeError
from wheelforge.model.facts import ToolchainFacts
from wheelforge.model.plan import BuildDependency, BuildPlan
from wheelforge.model.recipe import PathSource, Recipe, find_recipe, recipe_dirs
from wheelforge.model.report import Reporter
from wheelforge.model.settings import Settings
from wheelforge.store.wheelhouse import Entry, Wheelhouse

#: Free space asked for before a build: the source, the build tree and the wheel.
MIN_FREE_GB = 2.0


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
    verify_report: Any = None  # wheelforge.verify.suite.VerifyReport when the suite ran now
    state: str = ""  # the entry's state for people: "verified (gpu kernels on sm_90, ...)", "unverified", "failed"
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Request:
    """Everything a build or plan call was asked for, passed down as one value."""

    settings: Settings
    facts: ToolchainFacts
    no_isolation: bool = False
    pins: Mapping[str, str] = field(default_factory=dict)  # --with: name -> "name==version"
    version: str | None = None  # for the named recipe only, not its dependencies
    source_path: str | None = None  # likewise
    source_name: str | None = None  # likewise: the version's other source of this name ([versions.X.sources.NAME])
    verify: bool = True
    offline: bool = False
    reporter: Reporter = field(default_factory=Reporter)
    verify_options: Mapping[str, Any] = field(default_factory=dict)  # system_site_packages, extra_wheels...
    replace: bool = False  # --replace: publish a different wheel under a taken name with the next build number

    def for_dependency(self) -> "Request":
        import dataclasses

        return dataclasses.replace(self, version=None, source_path=None, source_name=None)


def resolve_toolchain(settings: Settings, env: Mapping[str, str] | None = None) -> ToolchainFacts:
    """The toolkit for the settings' CUDA ("auto" = first found); fails naming what was found."""
    from wheelforge.host.toolchain import resolve

    return resolve(settings.cache, settings.target.cuda, env, archs=settings.target.archs)


def load_recipe(name: str, settings: Settings) -> Recipe:
    return find_recipe(name, recipe_dirs(settings.recipes_dir))


def _pins(with_pins: Sequence[str]) -> dict[str, str]:
    from wheelforge.build.deps import parse_pin

    return {parse_pin(p)[0]: p for p in with_pins}


def _order(names: Sequence[str], req: Request) -> tuple[list[str], dict[str, Recipe]]:
    """The recipes to plan or build, dependencies first; pinned (--with) and --no-isolation
    dependencies are not built, so the walk stops at them."""
    from wheelforge.model.graph import dependency_order

    loaded: dict[str, Recipe] = {}
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in loaded:
            continue
        recipe = load_recipe(name, req.settings)
        loaded[name] = recipe
        if not req.no_isolation:
            todo.extend(d for d in recipe.build.recipes if d not in req.pins)
    # The walker sees only what will be built: a pinned dependency is an input, not a node.
    graph = {n: _without(r, req) for n, r in loaded.items()}
    order, _ = dependency_order(graph, list(names))
    return order, loaded


def _without(recipe: Recipe, req: Request) -> Recipe:
    import dataclasses

    kept = tuple(d for d in recipe.build.recipes if d not in req.pins and not req.no_isolation)
    return dataclasses.replace(recipe, build=dataclasses.replace(recipe.build, recipes=kept))


# --------------------------------------------------------------------------- planning


def _dependencies(recipe: Recipe, req: Request, planned: Mapping[str, BuildPlan]) -> list[BuildDependency]:
    """What ``recipe`` compiles against: pinned releases, installed packages, or wheelhouse entries of
    recipes planned (and built) before it."""
    from wheelforge.build.deps import installed_dependency, resolve_pin

    out = []
    wh = Wheelhouse(req.settings.wheelhouse)
    for dep in recipe.build.recipes:
        if dep in req.pins:
            out.append(resolve_pin(req.pins[dep], offline=req.offline, echo=req.reporter.log))
        elif req.no_isolation:
            out.append(installed_dependency(dep, req.settings.target.python, echo=req.reporter.log))
        else:
            dep_plan = planned[dep]
            entry = wh.lookup(dep_plan.key)
            if entry is None:  # only when planning: a build builds dependencies first
                out.append(BuildDependency(name=dep_plan.project, version=dep_plan.full_version, identity=f"key:{dep_plan.key}",
                                           requirement=f"<wheel of {dep} to be built>", cuda_version=dep_plan.target.cuda, recipe=dep))
                continue
            m = entry.manifest
            out.append(BuildDependency(name=m["project"], version=m["wheel"].split("-")[1], identity=f"sha256:{m['sha256']}",
                                       requirement=str(entry.wheel), cuda_version=m["target"]["cuda"], recipe=dep))
    return out


def make_recipe_plan(recipe: Recipe, req: Request, deps: Sequence[BuildDependency]) -> BuildPlan:
    """The plan of one recipe: digests of its patches and local source read here, the rest is the planner's."""
    from wheelforge.build.compiler_cache import launcher_env
    from wheelforge.host.memory import choose_jobs
    from wheelforge.model.planner import make_plan

    settings = req.settings
    pin = recipe.pin(req.version)
    if req.verify:
        recipe.check_test_module()  # a missing post-build module stops the plan, before any compile
    patch_list: list[tuple[str, str]] = []
    if recipe.patches_for(pin.version):  # wheelforge.sources.patches pulls in the network stack: only when needed
        from wheelforge.sources.patches import patch_digests

        patch_list = patch_digests(recipe, pin.version)
    source = PathSource(path=str(Path(req.source_path).resolve())) if req.source_path else recipe.resolve_source(pin, req.source_name)
    tree_hash = None
    if isinstance(source, PathSource):
        from wheelforge.sources.treehash import hash_tree, stat_cache_dir

        tree_hash = hash_tree(source.path, stat_cache=stat_cache_dir(settings.cache))
    lenv = launcher_env(settings, req.facts, torch_extension=recipe.builds_against("torch"))
    jobs, jobs_reason = choose_jobs(recipe.ram_per_job_gb, override=settings.jobs)
    lock = None
    if not req.no_isolation:
        from wheelforge.model.lock import read as read_lock

        lock = read_lock(recipe, settings.target.python_tag, req.facts.cuda_version)
    site, installed = None, None
    if recipe.build.nvidia and req.no_isolation and req.facts.cuda_version:
        # the nvidia wheels are the target interpreter's: ask it where they are and which versions it has
        from wheelforge.host.python_env import probe_interpreter
        from wheelforge.model.nvidia_wheels import nvidia_wheel

        dists = [nvidia_wheel(k, req.facts.cuda_version).distribution for k in recipe.build.nvidia]
        site, installed = probe_interpreter(settings.target.python, dists)
    return make_plan(recipe, pin.version, settings.target, req.facts, patches=patch_list, build_deps=deps,
                     isolation=not req.no_isolation, jobs=jobs, jobs_reason=jobs_reason, source=source, tree_hash=tree_hash,
                     launcher_env=lenv, uv=_uv(settings) if not req.no_isolation else None, verify=req.verify,
                     build_env_site=site, nvidia_installed=installed, lock=lock)


def _uv(settings: Settings) -> str | None:
    """uv's path when the settings ask for it (``installer = "uv"``), else None (pip)."""
    if settings.installer != "uv":
        return None
    found = shutil.which("uv")
    if not found:
        raise ConfigError("config.installer", f"installer uv was asked for (from {settings.sources.get('installer', 'flag')}) but no uv is on PATH",
                          "pip install uv, or use --installer pip")
    return found


def plan_for(recipe_name: str, *, version: str | None = None, settings: Settings, toolchain: ToolchainFacts | None = None,
             no_isolation: bool = False, with_pins: Sequence[str] = (), source_path: str | os.PathLike[str] | None = None,
             offline: bool = False, reporter: Reporter | None = None, source_name: str | None = None) -> BuildPlan:
    """The plan ``invoke plan`` prints.  Recipe dependencies not yet built appear as ``key:<cache key>``."""
    req = Request(settings=settings, facts=toolchain or resolve_toolchain(settings), no_isolation=no_isolation,
                  pins=_pins(with_pins), version=version, source_path=str(source_path) if source_path else None,
                  offline=offline, reporter=reporter or Reporter(), source_name=source_name)
    order, recipes = _order([recipe_name], req)
    planned: dict[str, BuildPlan] = {}
    for name in order:
        r = req if name == recipe_name else req.for_dependency()
        planned[name] = make_recipe_plan(recipes[name], r, _dependencies(recipes[name], r, planned))
    return planned[recipe_name]


# --------------------------------------------------------------------------- building


def build(recipe_names: Sequence[str], *, version: str | None = None, settings: Settings, toolchain: ToolchainFacts | None = None,
          no_isolation: bool = False, with_pins: Sequence[str] = (), source_path: str | os.PathLike[str] | None = None,
          verify: bool = True, offline: bool = False, reporter: Reporter | None = None,
          verify_options: Mapping[str, Any] | None = None, replace: bool = False, source_name: str | None = None) -> list[BuildResult]:
    """Build each recipe (dependencies first) into the wheelhouse; a key already there is a no-op.

    ``version`` and ``source_path`` apply to the named recipes, not to their dependencies.
    """
    if (version or source_path or source_name) and len(recipe_names) > 1:
        raise ConfigError("config.version-many", "--version/--source apply to one recipe, but several were named",
                          "build the recipes one at a time")
    for name in recipe_names:  # an unknown name is the first thing a user needs to hear
        load_recipe(name, settings)
    req = Request(settings=settings, facts=toolchain or resolve_toolchain(settings), no_isolation=no_isolation,
                  pins=_pins(with_pins), version=version, source_path=str(source_path) if source_path else None,
                  verify=verify, offline=offline, reporter=reporter or Reporter(), verify_options=dict(verify_options or {}),
                  replace=replace, source_name=source_name)
    order, recipes = _order(recipe_names, req)
    planned: dict[str, BuildPlan] = {}
    results: dict[str, BuildResult] = {}
    for name in order:
        r = req if name in recipe_names else req.for_dependency()
        recipe = recipes[name]
        plan = make_recipe_plan(recipe, r, _dependencies(recipe, r, planned))
        planned[name] = plan
        results[name] = build_plan(plan, recipe, r)
    return [results[n] for n in recipe_names]


def _noop(entry: Entry, recipe: Recipe, t0: float, req: Request) -> BuildResult:
    from wheelforge.store.wheelhouse import describe_state

    state = describe_state(entry.manifest)
    req.reporter.note(f"{recipe.name}: up to date -> {entry.wheel}; {state}")
    return BuildResult(recipe=recipe.name, key=entry.key, wheel=entry.wheel, entry_dir=entry.path, noop=True,
                       seconds=time.monotonic() - t0, verify=entry.manifest.get("verify"), state=state)


def _settled(entry: Entry, req: Request) -> bool:
    """Whether the entry needs nothing more: verified, or unverified when the build was asked not to verify.

    A failed entry under ``--no-verify`` is an error: it must not read as up to date.
    """
    state = entry.manifest.get("state") or ("verified" if entry.manifest.get("verify") == "passed" else
                                            "failed" if entry.manifest.get("verify") == "failed" else "unverified")
    if state == "verified":
        return True
    if not req.verify:
        if state == "failed":
            raise VerifyError("verify.failed-before", f"{entry.wheel.name} failed its post-build suite (see {entry.path / 'verify.json'})",
                              "fix the cause and build again without --no-verify: the suite runs again")
        return True
    return False


def _why_rebuild(plan: BuildPlan, recipe: Recipe, wh: Wheelhouse, req: Request) -> None:
    """When an entry of the same recipe, version and target exists, say which key inputs changed."""
    from wheelforge.store.wheelhouse import differing_inputs

    same = [e for e in wh.all_entries(recipe.name) if e.manifest.get("version") == plan.version
            and (e.manifest.get("target") or {}).get("label") == plan.target.label
            and (e.manifest.get("target") or {}).get("python") == plan.target.python and e.manifest.get("key_inputs")]
    if not same:
        return
    newest = max(same, key=lambda e: str(e.manifest.get("built_at", "")))
    changed = differing_inputs(newest.manifest["key_inputs"], plan.key_inputs)
    req.reporter.note(f"{recipe.name}: rebuilding: the wheelhouse has {newest.wheel.name} (key {newest.key[:12]}), built from other inputs:")
    for line in changed:
        req.reporter.note(f"  {line}")


def build_plan(plan: BuildPlan, recipe: Recipe, req: Request) -> BuildResult:
    """Run ``plan`` under its key's lock, unless the wheelhouse already holds the key in a settled state.

    An entry stored but not verified (an interrupted verify, a ``--no-verify`` build) gets only its
    verify step.  A second build of a key being built waits, says so, and reports the first's outcome.
    """
    from filelock import Timeout

    t0 = time.monotonic()
    wh = Wheelhouse(req.settings.wheelhouse)
    entry = wh.lookup(plan.key)
    if entry is not None and _settled(entry, req):
        return _noop(entry, recipe, t0, req)
    wh.ensure_layout()
    lock = wh.lock(plan.key)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        req.reporter.note(f"{recipe.name}: another process is building key {plan.key[:12]}; waiting for its outcome")
        lock.acquire()
    try:
        entry = wh.lookup(plan.key)
        if entry is not None:
            if _settled(entry, req):  # another process finished it while we waited: its outcome is ours
                return _noop(entry, recipe, t0, req)
            return _run(plan, recipe, req, wh, t0, entry=entry)
        _why_rebuild(plan, recipe, wh, req)
        return _run(plan, recipe, req, wh, t0)
    finally:
        lock.release()


def _run(plan: BuildPlan, recipe: Recipe, req: Request, wh: Wheelhouse, t0: float, entry: Entry | None = None) -> BuildResult:
    """The whole plan, or (``entry`` given: stored, not verified) its verify step alone; the caller holds the key lock."""
    from wheelforge.build.compiler_cache import launcher_of
    from wheelforge.build.runner import Attempt, run_plan

    if entry is None:
        wh.sweep_scratch()
        wh.check_free_disk(MIN_FREE_GB)
    scratch = wh.new_scratch(plan.key)
    log_path = wh.log_path(plan.key)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    attempt = None
    try:
        with open(log_path, "a" if entry else "w", encoding="utf-8") as log:
            attempt = Attempt(plan=plan, recipe=recipe, work=scratch, wheelhouse=wh, cache=req.settings.cache, log=log,
                              log_path=log_path, reporter=req.reporter, mirrors=req.settings.mirrors, offline=req.offline,
                              python=req.settings.target.python, verify_options=req.verify_options, t0=t0, replace=req.replace)
            if entry is not None:
                attempt.entry, attempt.wheel = entry, entry.wheel
                state = entry.manifest.get("state") or "unverified"
                req.reporter.note(f"{recipe.name}: {entry.wheel.name} failed its post-build suite before: running it again"
                                  if state == "failed" else f"{recipe.name}: {entry.wheel.name} is stored but not verified: verifying it")
                attempt.say(f"# {recipe.name} {plan.full_version}  key {plan.key}: verify only (the entry is stored, not verified)")
            else:
                attempt.say(f"# {recipe.name} {plan.full_version}  key {plan.key}")
                attempt.say(f"# jobs: {plan.jobs_reason}")
                launcher = launcher_of(plan.env)
                attempt.say(f"# compiler cache: {launcher.name + ' (' + launcher.path + ')' if launcher else 'none'}")
                for note in plan.notes:
                    attempt.say(f"# note: {note}")
            try:
                run_plan(attempt, only=("verify",) if entry is not None else None)
            finally:
                req.reporter.finish()
        wh.clear_failure(plan.key)
    except KeyboardInterrupt:
        stored = wh.lookup(plan.key)
        if stored is None:
            raise Interrupted("build.interrupted", f"{recipe.name}: interrupted; nothing was stored in the wheelhouse",
                              "run the build again") from None
        raise Interrupted("build.interrupted", f"{recipe.name}: interrupted during verification; {stored.wheel.name} is stored "
                          "unverified, and the index does not serve it", "run the build again: it verifies the stored wheel") from None
    except WheelforgeError as exc:
        if wh.lookup(plan.key) is None:  # a failure after the store step is the entry's verify state
            wh.write_failure(plan.key, recipe=recipe.name, version=plan.version, error_id=exc.id, message=exc.message,
                             target=plan.target.to_json())
        raise
    except Exception as exc:
        wh.write_failure(plan.key, recipe=recipe.name, version=plan.version, error_id="build.internal", message=repr(exc),
                         target=plan.target.to_json())
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    assert attempt is not None and attempt.entry is not None
    from wheelforge.store.wheelhouse import describe_state

    report = attempt.verify_report
    stored = wh.lookup(plan.key)
    return BuildResult(recipe=recipe.name, key=plan.key, wheel=attempt.entry.wheel, entry_dir=attempt.entry.path, noop=False,
                       seconds=time.monotonic() - t0, cache=attempt.cache_line, verify=report.result if report else None,
                       verify_report=report, notes=[n.soname for n in (attempt.relocation.unknown if attempt.relocation else [])],
                       state=describe_state(stored.manifest) if stored else "")

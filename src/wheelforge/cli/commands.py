"""What each task does once its flags are parsed: call the library, print the result.

``tasks.py`` calls these; they never import invoke and never exit the process: errors
propagate as :class:`wheelforge.model.errors.WheelforgeError` to the task edge.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from wheelforge.model.report import Echo, silent
from wheelforge.model.settings import Settings, find_pyproject, read_pyproject, resolve_settings


def settings_from(flags: Mapping[str, Any]) -> Settings:
    return resolve_settings(flags, env=os.environ, pyproject=read_pyproject(find_pyproject()))


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def _console():
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


# --------------------------------------------------------------------------- toolchain


def show_toolchain(settings: Settings, *, as_json: bool = False) -> None:
    from wheelforge.host import toolchain as tc

    found = tc.detect_all()
    chosen = tc.select(found, settings.target.cuda)
    tc.check_host_compiler(chosen)
    if as_json:
        _print_json({"requested": settings.target.cuda, "selected": chosen.to_json(), "found": [f.to_json() for f in found]})
        return
    from rich.table import Table

    t = Table(title=f"toolchain for CUDA {settings.target.cuda}", show_header=False)
    t.add_row("nvcc", f"{chosen.nvcc} (CUDA {chosen.cuda_version}, {chosen.cuda_home})")
    t.add_row("targets", " ".join(a for a in chosen.nvcc_archs if a.startswith("compute_")).replace("compute_", "") or "-")
    hc = chosen.host_compiler
    ok = {True: "accepted", False: "REJECTED", None: "unknown"}[chosen.host_compiler_ok]
    t.add_row("host compiler", f"{hc.path} {hc.version} ({ok}; CUDA {chosen.cuda_version} takes GCC <= {chosen.host_compiler_limit})" if hc else "not found")
    for name in ("cmake", "ninja", "ccache", "sccache"):
        tool = getattr(chosen, name)
        t.add_row(name, f"{tool.path} {tool.version}" if tool else "not found")
    t.add_row("driver", chosen.driver_version or "no nvidia-smi")
    t.add_row("GPUs", ", ".join(f"{g.name} (sm_{g.capability.replace('.', '')})" for g in chosen.gpus) or "none")
    _console().print(t)


# --------------------------------------------------------------------------- audit


def inspect_path(settings: Settings, path: str, *, as_json: bool = False) -> None:
    """List device code per binary and check it against the target's archs (flag, env, pyproject or 12.0).

    Archs asked for (``--arch`` or WHEELFORGE_ARCH) also demand device code, as the build's audit
    does: a wheel, file or folder without any fails (exit 4)."""
    from wheelforge.binaries.audit import inspect
    from wheelforge.cli.render import audit_table
    from wheelforge.model.arch import expected_sass
    from wheelforge.model.errors import AuditError

    asked = settings.sources.get("arch") in ("flag", "WHEELFORGE_ARCH")
    reports = inspect([path], expected_sass(settings.target.archs), require_device_code=asked)
    if as_json:
        text = json.dumps([r.to_dict() for r in reports], indent=2) if len(reports) != 1 else reports[0].to_json()
    else:
        text = "\n".join(audit_table(r) for r in reports)
    sys.stdout.write(text + "\n")
    failures = [(r, f) for r in reports for f in r.failures()]
    if failures:
        report, first = failures[0]
        where = os.path.basename(report.target)
        message = (first if first.startswith(f"{where}:") else f"{where}: {first}") + (f" (+{len(failures) - 1} more)" if len(failures) > 1 else "")
        if not report.device_files:
            raise AuditError("audit.no-device-code", message, "it holds no CUDA binaries: inspect the CUDA build of it, "
                             "or run inspect without --arch (and WHEELFORGE_ARCH) to only list what is there")
        raise AuditError("audit.failed", message, "rebuild for the missing archs, or pass --arch with the archs you need")


# --------------------------------------------------------------------------- sources


def _recipe(settings: Settings, name: str):
    from wheelforge.model.recipe import find_recipe, recipe_dirs

    return find_recipe(name, recipe_dirs(settings.recipes_dir))


def fetch_recipe(settings: Settings, name: str, *, version: str | None = None, offline: bool = False, echo: Echo = silent) -> None:
    from wheelforge.sources.fetch import fetch

    recipe = _recipe(settings, name)
    pin = recipe.pin(version)
    fetched = fetch(recipe.resolve_source(pin), cache_dir=settings.cache, offline=offline, mirrors=settings.mirrors, echo=echo)
    sys.stdout.write(f"{recipe.name} {pin.version}: {fetched.digest} at {fetched.path}\n")


def check_patches(settings: Settings, name: str, *, offline: bool = False, echo: Echo = silent) -> None:
    from wheelforge.model.errors import PatchError
    from wheelforge.sources.patches import check_series

    recipe = _recipe(settings, name)
    results = check_series(recipe, cache_dir=settings.cache, offline=offline, mirrors=settings.mirrors, echo=echo)
    for r in results:
        state = "ok" if r.ok else "FAILED"
        names = ", ".join(f for f, _ in r.patches) or "no patches"
        sys.stdout.write(f"{recipe.name} {r.version}: {state} ({names})" + (f": {r.error}" if r.error else "") + "\n")
    bad = [r for r in results if not r.ok]
    if bad:
        raise PatchError("patch.series", f"{len(bad)} of {len(results)} versions of {recipe.name} do not take their patch series: {bad[0].error}",
                         bad[0].hint or "refresh the patch against the pristine source (git diff) or narrow its 'when' range")


# --------------------------------------------------------------------------- farm


def show_matrix(settings: Settings, recipes: Sequence[str], pythons: Sequence[str], *, as_json: bool = False) -> None:
    from wheelforge.farm import matrix as farm

    sys.stdout.write(farm.matrix(recipes or None, pythons or None, settings, as_json=as_json) + "\n")


def show_farm_status(settings: Settings, recipes: Sequence[str], pythons: Sequence[str], *, index_url: str | None = None,
                     as_json: bool = False) -> None:
    from wheelforge.farm import matrix as farm

    sys.stdout.write(farm.status(settings, store_url=index_url, wheelhouse=settings.wheelhouse, as_json=as_json,
                                 recipes=recipes or None, pythons=pythons or None) + "\n")


# --------------------------------------------------------------------------- index


def write_index(settings: Settings, *, print_config: bool = False, base_url: str = "http://127.0.0.1:8080",
                pins: Sequence[str] = (), rehash: bool = False, variants: bool = False, include_unverified: bool = False) -> None:
    from wheelforge.serving import index

    if print_config:
        target = ".".join(f"sm{a.number}" for a in settings.target.archs)  # the label's arch part: the build to pin first
        sys.stdout.write(index.print_config(base_url, list(pins), source=settings.wheelhouse, prefer_target=target) + "\n")
        return
    result = index.build_index(settings.wheelhouse, rehash=rehash, variants=variants, include_unverified=include_unverified)
    for w in result.warnings:
        sys.stderr.write(f"warning: {w}\n")
    of_them = f" ({result.variant_files} for variants)" if variants else ""
    sys.stdout.write(f"index: {result.files} files{of_them} of {result.projects} projects at {result.path} ({result.seconds:.2f} s)\n")


def serve_index(settings: Settings, *, host: str, port: int, workers: int = 1) -> None:
    from wheelforge.serving.server import serve

    def ready(url: str) -> None:
        sys.stderr.write(f"serving {settings.wheelhouse / 'index'} at {url} (simple API at {url}simple/)\n")
        sys.stderr.flush()

    serve(settings.wheelhouse, host=host, port=port, workers=workers, on_ready=ready)


def publish_wheels(settings: Settings, repository_url: str, *, paths: Sequence[str] = (), simple_url: str | None = None,
                   sidecar_dir: str | None = None, recipes: Sequence[str] = ()) -> None:
    from wheelforge.model.errors import PublishError
    from wheelforge.serving.publish import publish

    sources: list[Any] = list(paths)
    if recipes:
        # Only this job's own builds: a farm job's wheelhouse also holds the dependencies it downloaded.
        from wheelforge.store.wheelhouse import Wheelhouse

        wh = Wheelhouse(settings.wheelhouse)
        sources += [e.path for r in recipes for e in wh.all_entries(r)]
        if not sources:
            raise PublishError("publish.nothing", f"no wheelhouse entry of {', '.join(recipes)} in {settings.wheelhouse}",
                               "build it first, or check --wheelhouse")
    result = publish(sources or [settings.wheelhouse], repository_url, simple_url=simple_url, sidecar_dir=sidecar_dir)
    for name in result.uploaded:
        sys.stdout.write(f"uploaded {name}\n")
    for p in result.sidecars_written:
        sys.stdout.write(f"sidecar {p}\n")
    for p in result.sidecars_not_published:
        sys.stderr.write(f"not published (no --sidecar-dir): {p}\n")


# --------------------------------------------------------------------------- plan and build


def _plan_toolchain(settings: Settings):
    """The toolkit to plan for; a requested CUDA that is not installed is planned from the request alone."""
    import dataclasses

    from wheelforge.build.pipeline import resolve_toolchain
    from wheelforge.host.toolchain import detect_cached
    from wheelforge.model.errors import ToolchainError
    from wheelforge.model.facts import requested_facts

    try:
        return resolve_toolchain(settings), None
    except ToolchainError as err:
        if settings.target.cuda == "auto" or err.id not in ("toolchain.cuda-mismatch", "toolchain.no-cuda"):
            raise
        found = detect_cached(settings.cache)[0]
        # Keep this machine's host compiler and cmake: they are what a build here would use.
        facts = dataclasses.replace(requested_facts(settings.target.cuda), host_compiler=found.host_compiler,
                                    cmake=found.cmake, ninja=found.ninja)
        return facts, err


def show_plan(settings: Settings, recipes: Sequence[str], *, version: str | None = None, with_pins: Sequence[str] = (),
              source: str | None = None, no_isolation: bool = False, as_json: bool = False, source_name: str | None = None) -> None:
    from wheelforge.build.pipeline import load_recipe, plan_for

    for name in recipes:  # an unknown recipe first, as build says it
        load_recipe(name, settings)
    facts, warning = _plan_toolchain(settings)
    plans = [plan_for(name, version=version, settings=settings, toolchain=facts, no_isolation=no_isolation,
                      with_pins=with_pins, source_path=source, source_name=source_name) for name in recipes]
    if warning:
        sys.stderr.write(f"note: {warning.message}; a build here would stop there ({warning.hint})\n")
    if as_json:
        _print_json(plans[0].to_json() if len(plans) == 1 else [p.to_json() for p in plans])
        return
    out = _console()
    for p in plans:
        out.print(f"[bold]{p.recipe} {p.version}[/bold] -> {p.wheel_name}")
        out.print(f"  key      {p.key}")
        src = p.source.to_json()
        out.print(f"  source   {p.source.digest}" + (f" ({src.get('url')} {src.get('tag')})" if src.get("tag") else ""))
        out.print(f"  target   archs {', '.join(p.target.archs)}, CUDA {p.target.cuda}, {p.target.python}; SASS expected: {', '.join('sm_' + a for a in p.expected_sass)}")
        out.print(f"  jobs     {p.jobs} ({p.jobs_reason})")
        for dep in p.build_deps:
            out.print(f"  dep      {dep.name} {dep.version} {dep.identity}")
        for k, v in p.env.items():
            out.print(f"  env      {k}={v}")
        for i, step in enumerate(p.steps, 1):
            out.print(f"  step {i:<2} {step.name}: {_step_summary(step)}")
        for n in p.notes:
            out.print(f"  note     {n}")


def _step_summary(step) -> str:
    """One line per step for people; ``--json`` has everything."""
    data = step.to_json()
    if "commands" in data:
        return " && ".join(c["shell"] for c in data["commands"])
    keep = {k: v for k, v in data.items() if k not in ("name", "action", "text")}
    if "source" in keep:
        keep = {"digest": keep["source"]["digest"]}
    return ", ".join(f"{k}={v}" for k, v in keep.items()) or data["action"]


def build_recipes(settings: Settings, recipes: Sequence[str], *, version: str | None = None, no_isolation: bool = False,
                  with_pins: Sequence[str] = (), source: str | None = None, verify: bool = True, offline: bool = False,
                  allow_arch_mismatch: bool = False, verbose: bool = False, replace: bool = False, source_name: str | None = None) -> None:
    from wheelforge.build.pipeline import build
    from wheelforge.cli.render import ConsoleReporter, verify_table
    from wheelforge.model.errors import VerifyError

    reporter = ConsoleReporter(verbose=verbose)
    try:
        results = build(recipes, version=version, settings=settings, no_isolation=no_isolation, with_pins=with_pins,
                        source_path=source, verify=verify, offline=offline, reporter=reporter,
                        verify_options={"allow_arch_mismatch": allow_arch_mismatch}, replace=replace, source_name=source_name)
    except VerifyError as err:
        if getattr(err, "report", None) is not None:
            verify_table(err.report)
        raise
    # The library already said "built <wheel> in ..." or "up to date -> <wheel>" as it happened; only the
    # verify tables are left to draw.
    for r in results:
        if r.verify_report is not None:
            verify_table(r.verify_report)


# --------------------------------------------------------------------------- lock


def lock_recipes(settings: Settings, recipes: Sequence[str], pythons: Sequence[str], cudas: Sequence[str]) -> None:
    """Resolve each recipe's build requirements into ``recipes/locks/<recipe>/<python>[-cuXX].txt``."""
    from wheelforge.build.lock import resolve, write
    from wheelforge.model.recipe import all_recipes, recipe_dirs

    found = all_recipes(recipe_dirs(settings.recipes_dir))
    names = list(recipes) or sorted(found)
    for name in names:
        recipe = _recipe(settings, name)
        versions = [p for p in (pythons or [settings.target.python_version])
                    if not recipe.pin(None).requires_python or recipe.pin(None).requires_python.contains(p)]
        for py in versions:
            for cuda in (cudas if recipe.build.nvidia else [None]):
                lock, reqs = resolve(recipe, py, cuda_version=cuda)
                if not reqs:
                    continue
                path = write(lock, reqs)
                sys.stdout.write(f"{recipe.name}: Python {py}{' CUDA ' + cuda if cuda else ''}: {len(lock.packages)} packages -> {path}\n")


# --------------------------------------------------------------------------- verify


def verify_target(settings: Settings, target: str, *, version: str | None = None, allow_arch_mismatch: bool = False,
                  system_site_packages: bool = False, offline: bool = False, find_links: Sequence[str] = (),
                  echo: Echo = silent) -> None:
    """``target`` is a wheel path, an entry folder or a recipe name (its newest wheelhouse entry); a path gets
    the same suite as its recipe (see :func:`wheelforge.verify.suite.choose_suite`)."""
    from wheelforge.cli.render import verify_table
    from wheelforge.model.recipe import recipe_dirs
    from wheelforge.verify.suite import choose_suite, latest_entry, verify

    # An entry records what it was built for; only archs/CUDA the user set override that.
    explicit = ("flag", "WHEELFORGE_ARCH", "WHEELFORGE_CUDA")
    archs = [str(a) for a in settings.target.archs] if settings.sources.get("arch") in explicit else []
    cuda = settings.target.cuda if settings.sources.get("cuda") in explicit and settings.target.cuda != "auto" else None
    if Path(target).exists():
        choice = choose_suite(target, wheelhouse=settings.wheelhouse, recipe_dirs=recipe_dirs(settings.recipes_dir))
        subject, runtime_requires, test_module, notes = choice.subject, choice.runtime_requires, choice.test_module, [choice.note]
    else:
        recipe = _recipe(settings, target)
        subject = latest_entry(settings.wheelhouse, recipe.name, archs or None)
        runtime_requires, test_module, notes = recipe.runtime_requires, recipe.check_test_module(), []
    report = verify(subject, archs=archs, cuda=cuda, wheelhouse=settings.wheelhouse, runtime_requires=runtime_requires,
                    test_module=test_module, notes=notes, allow_arch_mismatch=allow_arch_mismatch,
                    system_site_packages=system_site_packages, offline=offline, extra_wheels=list(find_links), echo=echo)
    verify_table(report)
    report.raise_for_result()


# --------------------------------------------------------------------------- doctor


def run_doctor(settings: Settings, *, python: str | None = None, arch: str | None = None, driver: str | None = None,
               as_json: bool = False) -> None:
    """Judge the packages of ``python``'s environment for this machine's GPUs (or ``arch``); fail when any would."""
    from wheelforge.model.errors import DoctorError
    from wheelforge.model.recipe import recipe_dirs
    from wheelforge.verify.doctor import diagnose, parse_gpu_archs

    configured = list(dict.fromkeys(f"{a.major}.{a.minor}" for a in settings.target.archs))
    report = diagnose(python, archs=parse_gpu_archs(arch), driver=driver, fallback_archs=configured,
                      recipe_dirs=recipe_dirs(settings.recipes_dir))
    if as_json:
        _print_json(report.to_json())
    else:
        render_doctor(report)
    failing = report.failing
    if failing:
        names = ", ".join(f"{p.name} ({p.verdict})" for p in failing[:4]) + (" ..." if len(failing) > 4 else "")
        raise DoctorError("doctor.would-fail", f"{len(failing)} of {len(report.packages)} CUDA packages would fail here: {names}",
                          "run the fix printed for each (JSON: packages[].fixes), then `invoke doctor` again")


_VERDICT_STYLE = {"no-kernel": "bold red", "driver-too-old": "bold red", "torch-mismatch": "bold red",
                  "ptx-jit": "yellow", "native": "green", "host-only": "dim"}


def render_doctor(report, console=None) -> None:
    """The people's view of a :class:`wheelforge.verify.doctor.DoctorReport`: GPUs, one row per package (worst first),
    then each package's problems and fixes."""
    from rich.table import Table

    out = console or _console()
    gpus = ", ".join(f"{g.name} ({g.capability}{', x' + str(g.count) if g.count > 1 else ''}; {g.source})" for g in report.gpus)
    out.print(f"[bold]doctor[/bold] {report.python} (Python {report.python_version})")
    out.print(f"  GPUs    {gpus or 'none'}")
    d = report.driver
    out.print("  driver  " + (f"{d.version}: CUDA {d.cuda or '?'} at most ({d.source})" if d.version else "not found"))
    if report.torch:
        out.print(f"  torch   {report.torch['version']}" + (f" (CUDA {report.torch['cuda']})" if report.torch.get("cuda") else ""))
    table = Table()
    table.add_column("package", overflow="fold")
    table.add_column("version", overflow="fold")
    for col in ("verdict", *(f"sm_{g.capability.replace('.', '')}" for g in report.gpus)):
        table.add_column(col, no_wrap=True)  # verdict words stay whole; names and versions fold
    table.add_column("CUDA", overflow="fold")
    for p in report.packages:
        cells = [f"[{_VERDICT_STYLE[v]}]{v}[/]" for v in (p.verdicts.get(g.capability, "host-only") for g in report.gpus)]
        table.add_row(p.name, p.version, f"[{_VERDICT_STYLE[p.verdict]}]{p.verdict}[/]", *cells, p.cuda or "-")
    out.print(table)
    for p in report.packages:
        if not (p.problems or p.fixes):
            continue
        out.print(f"[{_VERDICT_STYLE[p.verdict]}]{p.name}[/] {p.version}")
        for x in p.problems:
            out.print(f"  {x.verdict}: {x.message}")
        for fix in p.fixes:
            out.print(f"  fix: {fix}")
    mb = report.bytes_scanned / 1e6
    out.print(f"{len(report.packages)} CUDA packages of {report.distributions} distributions; {report.elf_files} ELF files "
              f"({mb:,.0f} MB) read in {report.seconds:.2f} s; {len(report.failing)} would fail")
    for note in report.notes + [f"{p.name}: {n}" for p in report.packages for n in p.notes]:
        out.print(f"  note: {note}")

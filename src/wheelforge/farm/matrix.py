"""The build farm: the job matrix CI runs, and which of its wheels the store holds.

A CI system schedules the jobs, sccache shares compiled objects (see
:mod:`wheelforge.build.compiler_cache`) and an index server stores the wheels; this module
only says *what* to build and *what is there*.

* :func:`build_matrix` is pure: recipes x version x Python x target, in dependency order,
  minus the Python versions a release does not support (``[versions.X] requires_python``).
* :func:`to_github` is the shape GitHub Actions' ``fromJSON`` takes for ``strategy.matrix``:
  ``{"include": [...]}`` and nothing else (any other top-level key would become a matrix axis).
  GitHub cannot make one matrix entry wait for another, so every entry carries ``stage``
  (its depth in the dependency graph) and the workflow runs one matrix job per stage; ``needs``
  names the job ids of the same Python and target it builds against.
* :func:`collect_status` is pure; :func:`read_wheelhouse` and :func:`read_index` read a store.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import Version

from wheelforge.model.arch import CudaArch
from wheelforge.model.errors import FarmError, RecipeError
from wheelforge.model.graph import dependency_order
from wheelforge.model.recipe import Recipe, all_recipes, recipe_dirs
from wheelforge.model.settings import Settings, Target

#: Python versions the farm builds for when ``--python`` is not given.
DEFAULT_PYTHONS = ("3.10", "3.11", "3.12", "3.13")
#: Labels every GPU build runner carries; the arch label (``sm120``) is added per target.
RUNNER_LABELS = ("self-hosted", "linux", "x64", "gpu")


@dataclass(frozen=True)
class Job:
    id: str  # "torch-2.15.0-cp311-sm120": unique, stable, readable in the Actions UI
    recipe: str
    project: str
    version: str
    python: str  # "3.11"
    python_tag: str  # "cp311"
    arch: str  # "12.0" or "9.0;12.0", as --arch takes it
    cuda: str  # "12.8" or "auto"
    target: str  # "sm120" or "sm90.sm120"
    runs_on: tuple[str, ...]
    stage: int
    needs: tuple[str, ...] = ()
    python_specific: bool = True  # False for py3-none style wheels: one job serves every Python

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["runs_on"], data["needs"] = list(self.runs_on), list(self.needs)
        return data

    def label(self) -> str | None:
        """The local version label the wheel carries, or None while CUDA is ``auto``."""
        if self.cuda == "auto":
            return None
        v = Version(self.cuda)
        return f"cu{v.major}{v.minor}.{self.target}"


@dataclass(frozen=True)
class Exclusion:
    recipe: str
    version: str
    python: str
    reason: str


@dataclass(frozen=True)
class Matrix:
    jobs: tuple[Job, ...]
    excluded: tuple[Exclusion, ...] = ()
    added: tuple[str, ...] = field(default_factory=tuple)  # dependencies pulled in that were not asked for

    @property
    def stages(self) -> int:
        return 1 + max((j.stage for j in self.jobs), default=-1)


# --------------------------------------------------------------------------- matrix (pure)


def parse_pythons(values: Iterable[str] | None) -> tuple[str, ...]:
    out: list[str] = []
    for raw in values or DEFAULT_PYTHONS:
        text = raw.strip().removeprefix("python").removeprefix("cp")
        if text.isdigit() and len(text) >= 2:  # "311" -> "3.11"
            text = f"{text[0]}.{text[1:]}"
        parts = text.split(".")
        if len(parts) != 2 or not all(p.isdigit() for p in parts):
            raise FarmError("farm.python", f"cannot read Python version {raw!r}", "write it like 3.11 (comma-separated for several)")
        if text not in out:
            out.append(text)
    return tuple(out)


def _target_name(archs: Sequence[CudaArch]) -> str:
    from wheelforge.model.arch import arch_label

    return arch_label(tuple(archs))


def _blocked(recipe: Recipe, version: str, py: str, by_key: Mapping[tuple[str, str], Job]) -> tuple[str | None, tuple[str, ...]]:
    """Why ``recipe`` ``version`` cannot be built on Python ``py`` (None: it can), and the job ids it needs there."""
    pin = recipe.versions[version]
    if pin.requires_python and not pin.requires_python.contains(py):
        return f"{recipe.name} {version} supports Python {pin.requires_python}", ()
    needs: list[str] = []
    for dep in recipe.build.recipes:
        dep_job = by_key.get((dep, py)) or by_key.get((dep, "*"))
        if dep_job is None:
            return f"needs {dep}, which is excluded for Python {py}", ()
        needs.append(dep_job.id)
    return None, tuple(needs)


def build_matrix(
    recipes: Mapping[str, Recipe],
    target: Target,
    *,
    names: Sequence[str] | None = None,
    pythons: Sequence[str] | None = None,
    all_versions: bool = False,
) -> Matrix:
    """Every job for ``names`` (default: all recipes) and their dependencies.

    A dependency is built at its recipe's default version; a job whose dependency is
    excluded for a Python is excluded too, naming the reason.
    """
    pys = parse_pythons(pythons)
    try:
        order, added = dependency_order(recipes, list(names) if names else sorted(recipes))
    except RecipeError as exc:  # the farm's own error family, for its CLI and workflow messages
        raise FarmError({"recipe.cycle": "farm.cycle"}.get(exc.id, "farm.unknown-recipe"), exc.message, exc.hint) from None
    tname = _target_name(target.archs)
    arch_text = ";".join(str(a) for a in target.archs)
    # The newest arch picks the runner: its GPU is what verify runs the wheel's kernels on.
    runs_on = (*RUNNER_LABELS, f"sm{target.archs[-1].major}{target.archs[-1].minor}")
    jobs: list[Job] = []
    excluded: list[Exclusion] = []
    by_key: dict[tuple[str, str], Job] = {}  # (recipe, python) -> the job built at its default version
    stage_of: dict[str, int] = {}
    for name in order:
        recipe = recipes[name]
        stage_of[name] = 1 + max((stage_of[d] for d in recipe.build.recipes), default=-1)
        python_specific = "{python_tag}" in recipe.wheel_tag
        versions = sorted(recipe.versions, key=Version) if all_versions else [recipe.default_version]
        for version in versions:
            # A Python-specific wheel gets a job per Python; a Python-independent one (py3-none) one job, on the
            # first listed Python where its release and every dependency have jobs (torch 2.15 has none on 3.10,
            # so xformers goes to 3.11 rather than nowhere).
            refused: list[Exclusion] = []
            for py in pys:
                reason, needs = _blocked(recipe, version, py, by_key)
                if reason is not None:
                    refused.append(Exclusion(name, version, py, reason))
                    continue
                tag = f"cp{py.replace('.', '')}"
                job = Job(
                    id=f"{name}-{version}-{tag if python_specific else 'any'}-{tname}",
                    recipe=name, project=recipe.project, version=version, python=py, python_tag=tag,
                    arch=arch_text, cuda=target.cuda, target=tname, runs_on=runs_on, stage=stage_of[name],
                    needs=needs, python_specific=python_specific,
                )
                jobs.append(job)
                if version == recipe.default_version:
                    by_key[(name, py if python_specific else "*")] = job
                if not python_specific:
                    refused = []  # the one job has a Python: the ones before it are not exclusions
                    break
            excluded.extend(refused)
    jobs.sort(key=lambda j: (j.stage, order.index(j.recipe)))  # stable: keeps version/Python order inside a recipe
    return Matrix(jobs=tuple(jobs), excluded=tuple(excluded), added=tuple(added))


def to_github(matrix: Matrix, stage: int | None = None) -> dict[str, list[dict[str, Any]]]:
    """``{"include": [...]}`` for ``strategy.matrix: ${{ fromJSON(...) }}``; one stage or all."""
    return {"include": [j.to_json() for j in matrix.jobs if stage is None or j.stage == stage]}


def render_matrix(matrix: Matrix) -> str:
    rows = [("stage", "job", "python", "arch", "cuda", "needs")]
    rows += [(str(j.stage), j.id, j.python if j.python_specific else f"any (on {j.python})", j.arch, j.cuda, ", ".join(j.needs) or "-")
             for j in matrix.jobs]
    lines = _table(rows)
    if matrix.added:
        lines.append(f"pulled in as build dependencies: {', '.join(matrix.added)}")
    for ex in matrix.excluded:
        lines.append(f"excluded: {ex.recipe} {ex.version} on Python {ex.python}: {ex.reason}")
    lines.append(f"{len(matrix.jobs)} jobs in {matrix.stages} stage(s)")
    return "\n".join(lines)


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


# --------------------------------------------------------------------------- status (pure)


@dataclass(frozen=True)
class JobStatus:
    job: Job
    state: str  # "present", "failed" or "missing"
    wheel: str | None = None
    where: str | None = None  # entry folder or index URL of the wheel
    error_id: str | None = None
    message: str | None = None
    log: str | None = None  # link (or path) to the failed build's log
    at: str | None = None
    verify: str | None = None  # the entry's verification: "verified (gpu kernels on sm_90, ...)", "unverified", "failed"
    other_cuda: str | None = None  # a wheel of the same recipe, version, Python and archs for another CUDA
    other_label: str | None = None  # its local label, "cu130.sm120"

    def to_json(self) -> dict[str, Any]:
        return {"id": self.job.id, "recipe": self.job.recipe, "version": self.job.version, "python": self.job.python,
                "target": self.job.target, "state": self.state, "wheel": self.wheel, "where": self.where,
                "error_id": self.error_id, "message": self.message, "log": self.log, "at": self.at,
                "verify": self.verify, "other_cuda": self.other_cuda, "other_label": self.other_label}

    def detail(self) -> str:
        """The table's third column: the wheel, the last error, or what the store holds instead."""
        if self.state == "present":
            return (f"{self.wheel} ({self.verify})" if self.verify else self.wheel) if self.wheel else "-"
        text = f"[{self.error_id}] {self.message}" if self.state == "failed" else "-"
        if self.other_cuda:
            cu = (self.other_label or "").split(".", 1)[0] or "another CUDA's"
            text = ("" if text == "-" else text + "; ") + f"a {cu} build exists: {self.other_cuda}"
        return text


def _label_matches(job: Job, label: str | None) -> bool:
    if label is None:
        return False
    label = label.split(".torch", 1)[0]  # an extension's label names its torch too; the job is per target
    want = job.label()
    if want is not None:
        return label == want
    return label.split(".", 1)[-1] == job.target  # CUDA "auto": any toolkit, same archs


def _other_cuda(job: Job, label: str | None) -> bool:
    """The same archs built for another CUDA (``cu130.sm120`` for a ``cu128.sm120`` job)."""
    return label is not None and job.label() is not None and label != job.label() and label.split(".", 1)[-1] == job.target


def _wheel_label(filename: str) -> str | None:
    try:
        return parse_wheel_filename(filename)[1].local
    except InvalidWheelFilename:
        return None


def _entry_matches(job: Job, manifest: Mapping[str, Any], label_test=_label_matches) -> bool:
    target = manifest.get("target") or {}
    return (manifest.get("recipe") == job.recipe and manifest.get("version") == job.version
            and (not job.python_specific or target.get("python") == job.python_tag)
            and label_test(job, target.get("label")))


def _file_matches(job: Job, filename: str, label_test=_label_matches) -> bool:
    try:
        name, version, _, tags = parse_wheel_filename(filename)
    except InvalidWheelFilename:
        return False
    if name != canonicalize_name(job.project) or version.public != Version(job.version).public:
        return False
    if job.python_specific and not any(t.interpreter == job.python_tag for t in tags):
        return False
    return label_test(job, version.local)


def _failure_matches(job: Job, failure: Mapping[str, Any]) -> bool:
    if failure.get("recipe") != job.recipe or failure.get("version") != job.version:
        return False
    target = failure.get("target")
    if not target:  # an older record without its target: it can only be told apart by recipe and version
        return True
    return (not job.python_specific or target.get("python") == job.python_tag) and _label_matches(job, target.get("label"))


def collect_status(
    matrix: Matrix,
    *,
    entries: Sequence[Mapping[str, Any]] = (),
    files: Mapping[str, Sequence[str]] | None = None,
    failures: Sequence[Mapping[str, Any]] = (),
    index_url: str | None = None,
    entries_root: str | None = None,
    log_url: str | None = None,
) -> list[JobStatus]:
    """One status per job.  ``files`` (project -> wheel file names of a remote index), when
    given, is the store; otherwise ``entries`` (wheelhouse ``entry.json`` manifests) are.
    A wheel in the store wins over a recorded failure; the newest failure is shown."""
    out: list[JobStatus] = []
    newest_first = sorted(failures, key=lambda f: str(f.get("at", "")), reverse=True)
    for job in matrix.jobs:
        found: JobStatus | None = None
        if files is not None:
            for fn in files.get(canonicalize_name(job.project), ()):
                if _file_matches(job, fn):
                    base = (index_url or "").rstrip("/")
                    found = JobStatus(job, "present", wheel=fn, where=f"{base}/{canonicalize_name(job.project)}/")
                    break
        else:
            for m in entries:
                if _entry_matches(job, m):
                    where = f"{entries_root}/{m.get('key')}" if entries_root else str(m.get("key"))
                    from wheelforge.store.wheelhouse import describe_state

                    found = JobStatus(job, "present", wheel=str(m.get("wheel")), where=where, verify=describe_state(m))
                    break
        if found is None:
            failure = next((f for f in newest_first if _failure_matches(job, f)), None)
            if failure is not None:
                log = str(failure.get("log") or "")
                if log_url and failure.get("key"):
                    log = f"{log_url.rstrip('/')}/{failure['key']}.log"
                found = JobStatus(job, "failed", error_id=failure.get("error_id"), message=failure.get("message"),
                                  log=log or None, at=failure.get("at"))
            else:
                found = JobStatus(job, "missing")
            # A runner that built with --cuda auto against another toolkit stored a wheel this job does not
            # count: say so, or "missing" reads as "never built".
            if files is not None:
                other = next(((fn, _wheel_label(fn)) for fn in files.get(canonicalize_name(job.project), ())
                              if _file_matches(job, fn, _other_cuda)), None)
            else:
                other = next(((str(m.get("wheel")), (m.get("target") or {}).get("label")) for m in entries
                              if _entry_matches(job, m, _other_cuda)), None)
            if other:
                found = dataclasses.replace(found, other_cuda=other[0], other_label=other[1])
        out.append(found)
    return out


def summarize(statuses: Sequence[JobStatus]) -> dict[str, int]:
    counts = {"present": 0, "failed": 0, "missing": 0}
    for s in statuses:
        counts[s.state] += 1
    return counts


def render_status(statuses: Sequence[JobStatus], store: str) -> str:
    rows = [("job", "state", "wheel / last error", "log")]
    for s in statuses:
        rows.append((s.job.id, s.state, s.detail() or "-", s.log or "-"))
    lines = [f"store: {store}", *_table(rows)]
    c = summarize(statuses)
    lines.append(f"{c['present']} present, {c['missing']} missing, {c['failed']} failed of {len(statuses)} jobs")
    return "\n".join(lines)


# --------------------------------------------------------------------------- reading stores


def read_wheelhouse(root: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(entry manifests, failure records) of a wheelhouse folder."""
    from wheelforge.store.wheelhouse import Wheelhouse

    wh = Wheelhouse(root)
    return [dict(e.manifest) for e in wh.all_entries()], wh.failures()


def read_index(index_url: str, projects: Iterable[str], *, timeout: float = 10.0) -> dict[str, list[str]]:
    """project -> wheel file names, read over HTTP from a simple index (pypiserver, ``invoke serve``)."""
    from wheelforge.host.index_client import IndexClient, IndexClientError

    client = IndexClient(index_url, timeout=timeout)
    out: dict[str, list[str]] = {}
    for project in sorted({canonicalize_name(p) for p in projects}):
        try:
            out[project] = sorted(n for n in client.filenames(project) if n.endswith(".whl"))
        except IndexClientError as exc:
            raise exc.as_(FarmError, {"index-client.unreachable": "farm.store-unreachable", "*": "farm.store-error"},
                          "check --index-url (the simple/ URL of the farm's index), that the server is up and its credentials") from None
    return out


# --------------------------------------------------------------------------- CLI-ready


def load_matrix(settings: Settings, recipes: Sequence[str] | None = None, pythons: Sequence[str] | None = None,
                *, all_versions: bool = False, env: Mapping[str, str] | None = None) -> Matrix:
    found = all_recipes(recipe_dirs(settings.recipes_dir, os.environ if env is None else env))
    return build_matrix(found, settings.target, names=list(recipes or []) or None, pythons=list(pythons or []) or None,
                        all_versions=all_versions)


def matrix(recipes: Sequence[str] | None, pythons: Sequence[str] | None, settings: Settings, as_json: bool = False,
           *, all_versions: bool = False, stage: int | None = None) -> str:
    """``invoke farm.matrix``: JSON on one line (for ``$GITHUB_OUTPUT``) or a table."""
    m = load_matrix(settings, recipes, pythons, all_versions=all_versions)
    if as_json:
        return json.dumps(to_github(m, stage), separators=(",", ":"), sort_keys=True)
    return render_matrix(m)


def status_report(settings: Settings, recipes: Sequence[str] | None = None, pythons: Sequence[str] | None = None,
                  *, index_url: str | None = None, wheelhouse: Path | None = None, log_url: str | None = None,
                  all_versions: bool = False) -> tuple[list[JobStatus], str]:
    """Statuses of the matrix against a remote index (``index_url``) or the wheelhouse.
    Failures always come from the wheelhouse's ``failures/`` (the runner's local record)."""
    m = load_matrix(settings, recipes, pythons, all_versions=all_versions)
    root = Path(wheelhouse or settings.wheelhouse)
    entries, failures = read_wheelhouse(root)
    if index_url:
        files = read_index(index_url, {j.project for j in m.jobs})
        return collect_status(m, files=files, failures=failures, index_url=index_url, log_url=log_url), index_url
    return collect_status(m, entries=entries, failures=failures, entries_root=str(root / "entries"), log_url=log_url), str(root)


def status(settings: Settings, store_url: str | None = None, wheelhouse: Path | None = None, as_json: bool = False,
           *, recipes: Sequence[str] | None = None, pythons: Sequence[str] | None = None, log_url: str | None = None,
           all_versions: bool = False) -> str:
    """``invoke farm.status``: JSON ``{"store", "summary", "jobs"}`` or a table."""
    statuses, store = status_report(settings, recipes, pythons, index_url=store_url, wheelhouse=wheelhouse,
                                    log_url=log_url, all_versions=all_versions)
    if as_json:
        return json.dumps({"store": store, "summary": summarize(statuses), "jobs": [s.to_json() for s in statuses]},
                          indent=2, sort_keys=True)
    return render_status(statuses, store)

"""Post-build verification: static audit, then the post-build suite in a fresh venv.

``verify`` never imports the wheel into this process and never runs tests from the build
tree: it makes a new venv, installs the wheel (plus its dependencies from the wheelhouse
and pinned runtime requirements), copies the static checks, the recipe's test module (from
wherever the recipe keeps it) and the suite's support files into a scratch folder and runs
pytest there with the target in ``WHEELFORGE_*`` variables.  The report is written as
``verify.json`` beside the wheel when the wheel sits in a wheelhouse entry, unless the entry
already holds a fuller run of the same wheel (:func:`covers_more`).

GPU machines whose torch cannot be installed offline: pass ``system_site_packages=True``
so the venv sees the machine's torch (and pytest); the wheel under test is still installed
into the venv and shadows any system copy.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename

from wheelforge.host import process
from wheelforge.host.digest import sha256_file
from wheelforge.model.bundled import postbuild_dir
from wheelforge.model.errors import ConfigError, RecipeError, VerifyError
from wheelforge.model.recipe import SUITE_SUPPORT_FILES, Recipe, all_recipes, find_recipe
from wheelforge.model.report import Echo, silent

#: The post-build suite ships with wheelforge (like the bundled recipes).
POSTBUILD_DIR = postbuild_dir()
STATIC_MODULE = "test_wheel_static.py"
#: Support files copied from the bundled suite with every run (conftest holds target parsing and GPU detection).
SUPPORT_FILES = SUITE_SUPPORT_FILES
#: Test tools the venv needs beside the wheel, per suite module.
TEST_REQUIRES: dict[str, tuple[str, ...]] = {
    "": ("pytest>=8.0",),
    "test_llama_cpp.py": ("gguf>=0.10", "numpy>=1.26"),
    # without torch (CI) gguf_model.py writes the GGUF, with a vocabulary sentencepiece trains
    "test_llama_cpp_tools.py": ("gguf>=0.10", "numpy>=1.26", "sentencepiece>=0.1.98"),
    "test_demo_cuda.py": ("numpy>=1.26",),
    "test_cuda_libs_demo.py": ("numpy>=1.26",),
}
_MISMATCH = re.compile(r"GPU \S+ is not covered by this wheel: .*")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# --------------------------------------------------------------------------- report


@dataclass
class CaseResult:
    name: str
    outcome: str  # passed | failed | error | skipped
    message: str = ""


@dataclass
class VerifyReport:
    wheel: str
    sha256: str
    archs_requested: list[str]
    archs_found: list[str]
    audit: dict[str, Any]
    tests: list[CaseResult] = field(default_factory=list)
    gpu: dict[str, str] | None = None
    # suite module file name -> sha256 of its text: what this run covered (covers_more compares it)
    modules: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # how the suite was chosen, whether verify.json was kept
    # the stored, fuller run this one did not replace (verify.json's content); never written itself
    kept_run: dict[str, Any] | None = field(default=None, repr=False)
    gpu_reason: str = ""
    python: str = ""
    cuda: str = ""
    started: str = ""
    finished: str = ""
    result: str = "failed"  # passed | failed
    reason: str = ""  # one line when failed
    log_tail: str = ""

    @property
    def ok(self) -> bool:
        return self.result == "passed"

    def counts(self) -> dict[str, int]:
        out = {"passed": 0, "failed": 0, "error": 0, "skipped": 0}
        for t in self.tests:
            out[t.outcome] = out.get(t.outcome, 0) + 1
        return out

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("kept_run")
        d["schema"] = 1
        d["counts"] = self.counts()
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def raise_for_result(self) -> None:
        """Raise :class:`VerifyError` when the run failed, or passed but a fuller failed run of the same wheel
        stays in verify.json (the entry stays failed, so the wheel still does not reach users): exit code 4."""
        kept = self.kept_run or {}
        if self.ok and kept.get("result") == "failed":
            raise VerifyError(
                "verify.fuller-run-failed", f"{self.wheel}: this run passed, but verify.json keeps the fuller run of "
                f"{kept.get('finished', '?')}, which failed: {kept.get('reason') or 'see verify.json'}",
                "run the whole suite again where the fuller run ran (a GPU machine for GPU tests) to replace it",
            )
        if not self.ok:
            raise VerifyError(
                "verify.failed", f"{self.wheel}: {self.reason or 'post-build verification failed'}",
                "see the table above and verify.json; a wheel the audit rejects must be rebuilt for the requested archs",
            )


# --------------------------------------------------------------------------- wheel / entry


@dataclass(frozen=True)
class Subject:
    wheel: Path
    entry_dir: Path | None  # entries/<key> when the wheel is in a wheelhouse
    manifest: dict[str, Any] | None


def resolve_subject(wheel_or_entry: str | os.PathLike[str]) -> Subject:
    """A wheel file or a wheelhouse entry folder -> the wheel and, when any, its entry."""
    p = Path(wheel_or_entry)
    if p.is_dir():
        wheels = sorted(p.glob("*.whl"))
        if len(wheels) != 1:
            raise ConfigError("verify.no-wheel", f"{p} holds {len(wheels)} wheels, not exactly one",
                              "pass a .whl file or a wheelhouse entry folder (entries/<key>)")
        p = wheels[0]
    if not p.is_file() or p.suffix != ".whl":
        raise ConfigError("verify.no-wheel", f"{p} is not a wheel file", "pass a .whl file, a wheelhouse entry folder or a recipe name")
    entry_json = p.parent / "entry.json"
    manifest = None
    if entry_json.is_file():
        try:
            manifest = json.loads(entry_json.read_text(encoding="utf-8"))
        except ValueError:
            raise ConfigError("verify.bad-entry", f"{entry_json} is not valid JSON", "rebuild the entry") from None
        if manifest.get("wheel") != p.name:
            manifest = None  # a wheel beside someone else's manifest is not an entry
    return Subject(wheel=p.resolve(), entry_dir=p.parent.resolve() if manifest else None, manifest=manifest)


def _satisfied(python: str, requirement: str) -> bool:
    """Whether ``python`` already has a distribution meeting ``requirement``."""
    code = ("import sys\nfrom importlib.metadata import version, PackageNotFoundError\n"
            "from packaging.requirements import Requirement\nr = Requirement(sys.argv[1])\n"
            "try:\n    sys.exit(0 if r.specifier.contains(version(r.name), prereleases=True) else 1)\n"
            "except PackageNotFoundError:\n    sys.exit(1)\n")
    # The venv's environment, not ours: a PYTHONPATH here (the GPU machine's carried wheels) is dropped there.
    return subprocess.run([python, "-c", code, requirement], capture_output=True, env=_base_env(), check=False).returncode == 0


def latest_entry(wheelhouse: str | os.PathLike[str], recipe: str, archs: Sequence[str] | None = None) -> Path:
    """The newest entry folder built from ``recipe`` (optionally for exactly ``archs``)."""
    from wheelforge.store.wheelhouse import Wheelhouse

    wh = Wheelhouse(wheelhouse)
    entry = wh.latest(recipe, archs)
    if entry is None:
        raise ConfigError("verify.no-entry", f"no wheelhouse entry for recipe {recipe!r} in {wh.root}",
                          f"build it first (`invoke build {recipe}`) or pass a wheel path")
    return entry.path


def suite_modules(test_module: str | os.PathLike[str] | None, tests_dir: Path = POSTBUILD_DIR) -> list[Path]:
    """The suite modules to run: the static checks plus the recipe's own module (a path), when any."""
    static = tests_dir / STATIC_MODULE
    if not test_module:
        return [static]
    module = Path(test_module).absolute()
    return [static] if module == static.absolute() else [static, module]


# --------------------------------------------------------------------------- which suite a wheel gets


@dataclass(frozen=True)
class SuiteChoice:
    """What ``invoke verify <path>`` runs: the subject (the wheelhouse entry when the wheel is one) and
    the suite of the recipe that built it, or of the recipe that builds its project."""

    subject: Path  # a wheel file or an entries/<key> folder
    recipe: Recipe | None  # None: static checks only
    note: str

    @property
    def test_module(self) -> Path | None:
        return self.recipe.check_test_module() if self.recipe else None

    @property
    def runtime_requires(self) -> tuple[str, ...]:
        return self.recipe.runtime_requires if self.recipe else ()


def choose_suite(path: str | os.PathLike[str], *, wheelhouse: str | os.PathLike[str] | None,
                 recipe_dirs: Sequence[Path]) -> SuiteChoice:
    """Verify by path = verify by recipe.

    A wheel that is a wheelhouse entry (it sits in one, or its sha256 is an entry's) is verified
    as that entry, with the whole suite of the recipe named in its entry.json.  A wheel unknown to
    the wheelhouse gets the suite of the recipe whose ``project`` is the wheel's distribution;
    without one, the static checks only, and the note says so.
    """
    from wheelforge.store.wheelhouse import Wheelhouse

    subject = resolve_subject(path)
    manifest, where = subject.manifest, subject.entry_dir
    if manifest is None and wheelhouse is not None:
        entry = Wheelhouse(wheelhouse).entry_by_sha256(sha256_file(subject.wheel))
        if entry is not None:
            manifest, where = dict(entry.manifest), entry.path
    if manifest is not None and where is not None:
        name = str(manifest.get("recipe", ""))
        same = "" if where == subject.entry_dir else f" (the same bytes as {subject.wheel})"
        try:
            recipe = find_recipe(name, list(recipe_dirs))
        except RecipeError:
            return SuiteChoice(where, None, f"entry {where.name}{same} was built by recipe {name!r}, which no recipe folder "
                                            "holds: static checks only")
        return SuiteChoice(where, recipe, f"entry {where.name}{same}: the suite of recipe {recipe.name} ({recipe.path})")
    try:
        project = canonicalize_name(parse_wheel_filename(subject.wheel.name)[0])
    except InvalidWheelFilename:
        raise ConfigError("verify.bad-wheel-name", f"{subject.wheel.name} is not a valid wheel file name",
                          "rename it as pip builds it") from None
    builders = [r for r in all_recipes(list(recipe_dirs)).values() if r.project == project]
    if not builders:
        return SuiteChoice(subject.wheel, None, f"no recipe builds {project} and the wheelhouse holds no entry with this "
                                                "wheel's sha256: static checks only")
    recipe = builders[0]
    others = f" (also built by {', '.join(r.name for r in builders[1:])})" if len(builders) > 1 else ""
    return SuiteChoice(subject.wheel, recipe, f"not in the wheelhouse: the suite of recipe {recipe.name}, which builds "
                                              f"{project}{others} ({recipe.path})")


# --------------------------------------------------------------------------- which run verify.json keeps


def _coverage(report: dict[str, Any]) -> dict[str, str | None]:
    """Module name -> sha256 of its text (None when unknown: reports written before modules were recorded)."""
    modules = report.get("modules")
    if isinstance(modules, dict):
        return {str(k): str(v) for k, v in modules.items()}
    names = {str(t.get("name", "")).split("::", 1)[0] for t in report.get("tests", []) if "::" in str(t.get("name", ""))}
    return {f"{Path(n.replace('.', '/')).name}.py": None for n in names if n}


def _tests_run(report: dict[str, Any]) -> int:
    return sum(1 for t in report.get("tests", []) if t.get("outcome") in ("passed", "failed", "error") and "::" in str(t.get("name", "")))


def covers_more(stored: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether the stored run is *fuller* than the new one, so the new one must not replace it.

    Fuller: a run of the same wheel (sha256) that ran every module the new run ran, with the same
    module text, and more: more modules, or the same modules with more tests run (not skipped; a
    run on a GPU runs the GPU tests).  A module whose text changed makes the runs incomparable, and
    then the newer one is kept.
    """
    if stored.get("sha256") != new.get("sha256"):
        return False
    old, now = _coverage(stored), _coverage(new)
    for name, digest in now.items():
        if name not in old or old[name] not in (None, digest):
            return False
    return len(old) > len(now) or _tests_run(stored) > _tests_run(new)


def describe_coverage(report: dict[str, Any]) -> str:
    return f"{', '.join(sorted(_coverage(report))) or 'no modules'}; {_tests_run(report)} tests run"


# --------------------------------------------------------------------------- processes


def _run(cmd: Sequence[str], *, env: dict[str, str], cwd: Path | None = None, echo: Echo = silent,
         timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    return process.run(cmd, env=env, cwd=cwd, echo=echo, timeout=timeout)


def _base_env() -> dict[str, str]:
    """A clean environment: no variables that would leak the host's packages or config into the venv."""
    drop = {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP", "PYTEST_ADDOPTS", "PYTEST_PLUGINS"}
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("WHEELFORGE_")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def make_venv(dest: Path, *, python: str = sys.executable, system_site_packages: bool = False, echo: Echo = silent) -> Path:
    """Create a venv at ``dest``; return its interpreter."""
    # --without-pip: ensurepip costs seconds per run; this process's pip installs into it (--python).
    cmd = [python, "-m", "venv", "--without-pip"] + (["--system-site-packages"] if system_site_packages else []) + [str(dest)]
    proc = _run(cmd, env=_base_env(), echo=echo)
    if proc.returncode != 0:
        raise VerifyError("verify.venv", f"cannot create a venv with {python}: {_last_line(proc)}",
                          "install the python3-venv package for that interpreter or pass --python")
    venv_python = dest / "bin" / "python"
    if system_site_packages:
        _see_parent_venv(python, venv_python, echo)
    return venv_python


def _see_parent_venv(python: str, venv_python: Path, echo: Echo) -> None:
    """A venv made from a venv's interpreter sees the *base* install's site-packages, not the parent
    venv's (seen on the GPU machine: /opt/torch/.venv's torch was invisible). A .pth file adds the
    parent's folders behind the test venv's own, so the wheel under test still wins."""
    code = "import sys, sysconfig, json; print(json.dumps([sys.prefix != sys.base_prefix, sorted({sysconfig.get_path('purelib'), sysconfig.get_path('platlib')})]))"
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        return
    is_venv, parent_dirs = json.loads(out.stdout)
    if not is_venv:
        return
    site = subprocess.run([str(venv_python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (Path(site) / "_wheelforge_parent_venv.pth").write_text("".join(f"{d}\n" for d in parent_dirs))
    echo(f"# test venv also sees {', '.join(parent_dirs)} (parent venv)")


def install(venv_python: Path, requirements: Sequence[str], *, find_links: Iterable[Path] = (), offline: bool = False,
            echo: Echo = silent) -> None:
    """pip-install into the venv; wheelhouse folders come first through ``--find-links``."""
    cmd = [sys.executable, "-m", "pip", "--python", str(venv_python), "install", "--no-input", "--progress-bar", "off"]
    if offline:
        cmd.append("--no-index")
    for d in dict.fromkeys(Path(x) for x in find_links):
        cmd += ["--find-links", str(d)]
    cmd += list(requirements)
    proc = _run(cmd, env=_base_env(), echo=echo)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        echo(tail)
        raise VerifyError("verify.install", f"pip could not install {' '.join(requirements[:3])} into the test venv: {_last_line(proc)}",
                          "put missing wheels in the wheelhouse or pass --find-links DIR; offline GPU hosts: --system-site-packages")


def _last_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [ln for ln in (proc.stderr or proc.stdout or "").strip().splitlines() if ln.strip()]
    return lines[-1].strip() if lines else f"exit {proc.returncode}"


@dataclass
class SuiteResult:
    returncode: int
    tests: list[CaseResult]
    gpu: dict[str, str] | None
    gpu_reason: str
    exit_message: str | None
    log_tail: str


def module_digests(modules: Sequence[str | os.PathLike[str]], tests_dir: Path = POSTBUILD_DIR) -> dict[str, str]:
    """Module file name -> sha256 of its bytes (what a run covered; see :func:`covers_more`)."""
    out = {}
    for m in modules:
        p = tests_dir / m  # an absolute path stays itself
        try:
            out[p.name] = hashlib.sha256(p.read_bytes()).hexdigest()
        except OSError:
            out[p.name] = ""
    return out


def run_suite(venv_python: Path, modules: Sequence[str | os.PathLike[str]], *, workdir: Path, wheel: Path | None,
              archs: Sequence[str], cuda: str | None, local_label: str | None = None, audit_json: Path | None = None,
              allow_arch_mismatch: bool = False, tests_dir: Path = POSTBUILD_DIR, timeout: float | None = 3600,
              echo: Echo = silent) -> SuiteResult:
    """Copy the modules (paths; bare names are in ``tests_dir``) and the support files of ``tests_dir`` into
    ``workdir/suite`` and run them with the venv's pytest, outside the source tree."""
    suite = workdir / "suite"
    suite.mkdir(parents=True, exist_ok=True)
    sources = [tests_dir / name for name in SUPPORT_FILES] + [tests_dir / m for m in modules]
    placed: dict[str, Path] = {}
    for src in sources:
        if not src.is_file():
            raise ConfigError("verify.no-test-module", f"post-build test module {src} does not exist",
                              "fix the recipe's test_module: a .py file relative to the recipe's folder")
        if src.name in placed and placed[src.name].resolve() != src.resolve():
            raise ConfigError("verify.module-name-clash", f"post-build modules {placed[src.name]} and {src} share the name {src.name}",
                              "rename the recipe's test module (the suite runs in one folder)")
        placed[src.name] = src
        shutil.copy2(src, suite / src.name)
    modules = [Path(m).name for m in modules]
    # Own ini: no repository config (its addopts/plugins need packages the venv lacks).
    (suite / "pytest.ini").write_text("[pytest]\naddopts = -ra --strict-markers\nmarkers =\n"
                                      "    gpu: needs a CUDA GPU; skipped without one\n    postbuild: checks built wheels\n")
    junit, info = workdir / "junit.xml", workdir / "session.json"
    env = _base_env()
    env.update({
        "WHEELFORGE_ARCHS": ";".join(archs),
        "WHEELFORGE_SESSION_INFO": str(info),
        "WHEELFORGE_ALLOW_ARCH_MISMATCH": "1" if allow_arch_mismatch else "0",
    })
    if wheel is not None:
        env["WHEELFORGE_WHEEL"] = str(wheel)
    if cuda:
        env["WHEELFORGE_CUDA"] = cuda
    if local_label:
        env["WHEELFORGE_LOCAL_LABEL"] = local_label
    if audit_json is not None:
        env["WHEELFORGE_AUDIT_JSON"] = str(audit_json)
    cmd = [str(venv_python), "-m", "pytest", *modules, "-c", "pytest.ini", "-p", "no:cacheprovider",
           f"--junitxml={junit}", "-q", "--rootdir", str(suite)]
    try:
        proc = _run(cmd, env=env, cwd=suite, echo=echo, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise VerifyError("verify.timeout", f"the post-build suite ran longer than {timeout:.0f} s", "look for a hung GPU kernel; rerun with a longer timeout") from None
    output = (proc.stdout or "") + (proc.stderr or "")
    session = json.loads(info.read_text()) if info.is_file() else {}
    exit_message = session.get("exit")
    if exit_message is None and proc.returncode not in (0, 1, 5):
        m = _MISMATCH.search(output)
        exit_message = m.group(0) if m else None
    return SuiteResult(
        returncode=proc.returncode, tests=parse_junit(junit), gpu=session.get("gpu"),
        gpu_reason=session.get("gpu_reason", ""), exit_message=exit_message,
        log_tail="\n".join(output.strip().splitlines()[-60:]),
    )


def parse_junit(path: Path) -> list[CaseResult]:
    if not path.is_file():
        return []
    out = []
    for case in ET.parse(path).getroot().iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}".lstrip(":")
        outcome, message = "passed", ""
        for tag, label in (("failure", "failed"), ("error", "error"), ("skipped", "skipped")):
            el = case.find(tag)
            if el is not None:
                outcome, message = label, (el.get("message") or el.text or "").strip()
                break
        out.append(CaseResult(name=name, outcome=outcome, message=message))
    return out


# --------------------------------------------------------------------------- the whole run


def verify(
    wheel_or_entry: str | os.PathLike[str],
    *,
    archs: Sequence[str] = (),
    cuda: str | None = None,
    wheelhouse: str | os.PathLike[str] | None = None,
    extra_wheels: Sequence[str | os.PathLike[str]] = (),
    runtime_requires: Sequence[str] = (),
    test_module: str | os.PathLike[str] | None = None,
    notes: Sequence[str] = (),
    local_label: str | None = None,
    allow_arch_mismatch: bool = False,
    python: str = sys.executable,
    system_site_packages: bool = False,
    offline: bool = False,
    write: bool = True,
    keep_workdir: bool = False,
    tests_dir: str | os.PathLike[str] = POSTBUILD_DIR,
    echo: Echo = silent,
) -> VerifyReport:
    """Audit the wheel, then run its post-build suite in a fresh venv; return (and store) the report.

    ``wheel_or_entry``: a ``.whl`` or a wheelhouse ``entries/<key>`` folder.  ``test_module``: the path
    of the recipe's post-build module (None: the static checks only).  ``archs``: the
    requested archs as the user wrote them ("9.0", "12.0").  ``extra_wheels``: wheel files or
    folders offered to pip beside the wheelhouse entries (``--find-links``).  ``offline``: pass
    ``--no-index`` (dependencies and test tools must then come from those folders or, with
    ``system_site_packages``, from the interpreter's own site-packages).
    A failed static audit stops before the venv is built.  ``write`` stores verify.json
    and entry.json's ``verify`` field when the wheel is in an entry, unless the entry holds a
    fuller run of the same wheel (:func:`covers_more`; the report's notes then say so).
    """
    from wheelforge.binaries.audit import audit_path

    subject = resolve_subject(wheel_or_entry)
    wheel = subject.wheel
    built_for = (subject.manifest or {}).get("target", {})
    # An entry knows what it was built for; explicit arguments win.
    archs = list(archs) or list(built_for.get("archs", []))
    cuda = cuda or built_for.get("cuda")
    local_label = local_label or built_for.get("label")
    cpu_only = subject.manifest is not None and built_for.get("archs") == []  # built with --arch cpu
    if not archs and not cpu_only:
        raise ConfigError("verify.no-archs", f"no architectures given to verify {wheel.name} against",
                          "pass --arch 12.0 (the archs the wheel was built for)")
    started = _now()
    echo(f"verify {wheel.name}: archs {';'.join(archs)}, CUDA {cuda or '?'}")
    # A wheel built for GPU archs with no device code at all came out CPU-only: a failure.
    audit = audit_path(wheel, list(archs), require_device_code=not cpu_only)
    audit_dict = audit.to_dict() if hasattr(audit, "to_dict") else json.loads(audit.to_json())
    report = VerifyReport(
        wheel=wheel.name, sha256=sha256_file(wheel), archs_requested=list(archs), archs_found=list(audit.archs_found),
        audit=audit_dict, python=python, cuda=cuda or "", started=started, notes=list(notes),
    )
    if not audit.ok:
        failures = audit_dict.get("failures") or ["static audit failed"]
        report.reason = f"static audit failed: {failures[0]}" + (f" (and {len(failures) - 1} more)" if len(failures) > 1 else "")
        return _finish(report, subject, write)

    if wheelhouse is None and subject.entry_dir is not None:
        wheelhouse = subject.entry_dir.parent.parent
    work = Path(tempfile.mkdtemp(prefix="wheelforge-verify-"))
    try:
        audit_json = work / "audit.json"
        audit_json.write_text(json.dumps(audit_dict))
        venv_python = make_venv(work / "venv", python=python, system_site_packages=system_site_packages, echo=echo)
        report.python = _python_version(venv_python)
        modules = suite_modules(test_module, Path(tests_dir))
        report.modules = module_digests(modules)
        tools = [r for m in [""] + [p.name for p in modules] for r in TEST_REQUIRES.get(m, ())]
        if system_site_packages:
            # The venv already sees the interpreter's packages; ask pip only for what is missing there
            # (an offline GPU machine has pytest and numpy but no index to fetch them from).
            tools = [r for r in tools if not _satisfied(python, r)]
        links = [wheel.parent] + _wheelhouse_dirs(wheelhouse) + [Path(p) if Path(p).is_dir() else Path(p).parent for p in extra_wheels]
        try:
            install(venv_python, [str(wheel), *runtime_requires, *tools], find_links=links, offline=offline, echo=echo)
        except VerifyError as exc:
            report.reason = exc.message  # recorded as a failed run, so verify.json says why
            return _finish(report, subject, write)
        suite = run_suite(venv_python, modules, workdir=work, wheel=wheel, archs=archs, cuda=cuda, local_label=local_label,
                          audit_json=audit_json, allow_arch_mismatch=allow_arch_mismatch, tests_dir=Path(tests_dir), echo=echo)
    finally:
        if keep_workdir:
            echo(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    report.tests, report.gpu, report.gpu_reason, report.log_tail = suite.tests, suite.gpu, suite.gpu_reason, suite.log_tail
    bad = [t for t in suite.tests if t.outcome in ("failed", "error")]
    if suite.exit_message:
        report.reason = suite.exit_message
        report.tests.append(CaseResult("session", "failed", suite.exit_message))
    elif bad:
        first = bad[0].message.splitlines()[0] if bad[0].message else ""
        report.reason = f"{len(bad)} test(s) failed; first: {bad[0].name}: {first}"[:400]
    elif suite.returncode != 0:
        report.reason = f"pytest exited {suite.returncode}" + (" (no tests ran)" if suite.returncode == 5 else "")
    elif not suite.tests:
        report.reason = "no tests ran"
    else:
        report.result = "passed"
    return _finish(report, subject, write)


def _finish(report: VerifyReport, subject: Subject, write: bool) -> VerifyReport:
    report.finished = _now()
    if write and subject.entry_dir is not None:
        from wheelforge.store.wheelhouse import Wheelhouse

        key = subject.entry_dir.name
        wh = Wheelhouse(subject.entry_dir.parent.parent)
        stored = wh.read_verify(key)
        if stored is not None and covers_more(stored, report.to_dict()):
            report.kept_run = stored
            # A reduced run (fewer modules, or no GPU where the stored run had one) never replaces a fuller one.
            report.notes.append(f"verify.json keeps the fuller run of {stored.get('finished', '?')} ({stored.get('result')}: "
                                f"{describe_coverage(stored)}); this run ({describe_coverage(report.to_dict())}) was not stored")
        else:
            wh.write_verify(key, report.to_dict(), report.result)
    return report


def _wheelhouse_dirs(wheelhouse: str | os.PathLike[str] | None) -> list[Path]:
    """Every entry folder (each holds one wheel): pip resolves dependencies from our builds first."""
    if wheelhouse is None:
        return []
    from wheelforge.store.wheelhouse import Wheelhouse

    return [e.path for e in Wheelhouse(wheelhouse).all_entries()]


def _python_version(venv_python: Path) -> str:
    proc = subprocess.run([str(venv_python), "-c", "import sys; print(sys.version.split()[0])"],
                          capture_output=True, text=True, env=_base_env())
    return proc.stdout.strip()

"""What each plan step does: one executor per action (``fetch``, ``patch``, ``write``, ``run``,
``label``, ``relocate``, ``audit``, ``store``, ``verify``).

Executors take the step (its ``{work}`` paths already filled in) and the
:class:`~wheelforge.build.runner.Attempt`, do their one job through the layer that owns it
(sources, binaries, store, verify) and leave what they made on the attempt.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

from wheelforge.host.digest import sha256_file
from wheelforge.model.errors import BuildError, OutOfMemoryError, VerifyError
from wheelforge.model.plan import (
    AuditStep,
    Command,
    FetchStep,
    LabelStep,
    PatchStep,
    RelocateStep,
    RunStep,
    StoreStep,
    VerifyStep,
    WriteFileStep,
)

if TYPE_CHECKING:
    from wheelforge.build.runner import Attempt

_OOM_LINE = re.compile(r"cicc\S*\"? died|died due to signal 9|signal 9|\bKilled\b|Cannot allocate memory|std::bad_alloc|out of memory",
                       re.IGNORECASE)


def fetch(step: FetchStep, a: Attempt) -> None:
    from wheelforge.sources.fetch import fetch as fetch_source

    a.fetched = fetch_source(step.source.source, cache_dir=a.cache, offline=a.offline, mirrors=a.mirrors, echo=a.say)
    if a.fetched.digest != step.source.digest:  # a local tree edited since planning
        raise BuildError("build.source-changed", f"the source of {a.plan.recipe} changed after it was planned "
                         f"({step.source.digest[:19]}... -> {a.fetched.digest[:19]}...)",
                         "stop editing the source tree during a build and rerun")


def patch(step: PatchStep, a: Attempt) -> None:
    from wheelforge.sources.patches import prepare_tree

    prepared = prepare_tree(a.fetched, a.recipe, a.plan.version, a.work / "prep", echo=a.say,
                            subdir=getattr(a.plan.source.source, "subdir", None))
    if tuple(prepared.patches) != tuple((p.file, p.sha256) for p in step.patches):
        raise BuildError("build.patch-changed", f"the patch series of {a.plan.recipe} changed after it was planned",
                         "rerun the build: it plans again with the patches as they are now")
    os.rename(prepared.path, step.dest)
    (a.work / "out").mkdir(exist_ok=True)


def write_file(step: WriteFileStep, a: Attempt) -> None:
    path = Path(step.path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(step.text, encoding="utf-8")
    a.say(f"# wrote {path}")


def run(step: RunStep, a: Attempt) -> None:
    from wheelforge.build import compiler_cache
    from wheelforge.build.progress import StepTracker
    from wheelforge.build.runner import command_env
    from wheelforge.host.process import base_env, stream

    launcher = compiler_cache.launcher_of(a.env) if step.compiler_cache else None
    cache_env = {**base_env(a.environ), **a.env}
    if launcher:
        compiler_cache.start(launcher, cache_env, echo=a.say)
    tracker = StepTracker(phase=step.name)

    def on_line(line: str) -> None:
        a.reporter.log(line.rstrip("\n"))  # shown with -v; the build log has it already
        if tracker.feed(line) and tracker.total:
            a.reporter.progress(tracker.done, tracker.total, eta=tracker.eta())

    for command in step.commands:
        tracker.set_phase("configure")  # the ETA's rate counts from the start of each command
        env = command_env(a, command)
        a.reporter.log("$ " + command.shell())
        result = stream(command.argv, env=env, cwd=command.cwd, log=a.log, on_line=on_line)
        if result.returncode != 0:
            raise _failure(a, command, env, result.returncode, result.errors, result.tail)
    if launcher:
        st = compiler_cache.stats(launcher, cache_env, echo=a.say)
        a.cache_line = st.summary() if st else f"compiler cache: {launcher.name}, stats unavailable"
        a.tell(a.cache_line)


def _failure(a: Attempt, command: Command, env: Mapping[str, str], rc: int, errors: Sequence[str], tail: Sequence[str]) -> BuildError:
    from wheelforge.build.runner import repro_line

    plan = a.plan
    a.say(f"--- first error lines of {plan.recipe} {plan.version} ({command.phase}) ---")
    for line in errors or tail[-15:]:
        a.say("  " + line)
    repro = repro_line(command, env)
    a.say(f"--- reproduce by hand:\n{repro}")
    what = f"exit status {rc}" if rc >= 0 else f"signal {-rc}"
    oom = rc in (-signal.SIGKILL, 128 + signal.SIGKILL, 137) or any(_OOM_LINE.search(x) for x in [*tail, *errors])
    if command.phase == "compile" and oom:
        half = max(1, plan.jobs // 2)
        err: BuildError = OutOfMemoryError(
            "build.out-of-memory",
            f"{plan.recipe} {plan.version}: a compiler was killed ({what}; the kernel's OOM killer) with {plan.jobs} parallel jobs",
            f"retry with --jobs {half} (or WHEELFORGE_JOBS={half}); log: {a.log_path}",
        )
    else:
        first = (errors or tail or [""])[0].strip()[:160]
        err = BuildError(
            "build.failed", f"{plan.recipe} {plan.version}: {command.phase} command {Path(command.argv[0]).name} failed ({what})"
            + (f": {first}" if first else ""),
            f"read {a.log_path} and rerun the command it shows under 'reproduce by hand'",
        )
    err.repro = repro  # type: ignore[attr-defined]
    err.log = str(a.log_path)  # type: ignore[attr-defined]
    return err


def label(step: LabelStep, a: Attempt) -> None:
    from wheelforge.binaries import wheelmeta

    wheels = sorted(Path(step.wheel_dir).glob("*.whl"))
    if len(wheels) != 1:
        raise BuildError("build.no-wheel", f"{a.plan.recipe}: the build made {len(wheels)} wheels in {step.wheel_dir}, expected 1",
                         f"see {a.log_path}")
    wheel = wheels[0]
    info = wheelmeta.check_wheel(wheel)
    if step.mode == "rewrite":
        if info.version != step.version:
            a.say(f"# local version: {info.version} -> {step.version} (METADATA, dist-info, RECORD, file name)")
            wheel = wheelmeta.rewrite_wheel(wheel, a.work / "fixed", version=step.version)
    elif info.version != step.version:
        raise BuildError("build.version-hook", f"{a.plan.recipe} built version {info.version}, expected {step.version}",
                         f"the recipe's version hook did not take; set local_version = \"rewrite\" in {a.recipe.path} or fix its env")
    a.wheel = wheel


def relocate(step: RelocateStep, a: Attempt) -> None:
    from wheelforge.binaries import relocate as reloc

    assert a.wheel is not None
    report = reloc.analyze(a.wheel, step.cuda)
    report = report.with_versions(_built_against(a, report))
    for line in report.lines():
        a.say(f"# needs: {line}")
    for need in report.unknown:
        a.reporter.note(f"warning: {need.file} needs {need.soname}, which neither the wheel, the driver, an nvidia-* wheel nor the manylinux set provides")
        a.say(f"# warning: {need.file} needs {need.soname}, which neither the wheel, the driver, an nvidia-* wheel nor the manylinux set provides")
    a.wheel = reloc.fix(a.wheel, report, a.work / "fixed", echo=a.say)
    a.relocation = report


def _built_against(a: Attempt, report) -> dict[str, str]:  # noqa: ANN001 - a RelocationReport
    """Versions to pin the wheel's nvidia-* requirements to: the recipe's [nvidia_versions], overridden by
    what the build interpreter actually has installed (what the build compiled against)."""
    from wheelforge.host.python_env import probe_interpreter
    from wheelforge.model.nvidia_wheels import requirement_name
    from wheelforge.model.plan import resolve_work

    pins = dict(a.plan.nvidia.get("versions", {}))
    dists = sorted({requirement_name(r) for r in report.requirements})
    if dists:
        python = resolve_work(a.plan.commands[-1].argv[0], str(a.work))
        installed = probe_interpreter(python, dists)[1]
        for dist, version in sorted(installed.items()):
            if pins.get(dist, version) != version:
                a.say(f"# note: {dist} {version} is installed in the build env, the recipe pins {pins[dist]}: pinning {version}")
        pins.update(installed)
    return pins


def audit(step: AuditStep, a: Attempt) -> None:
    from wheelforge.binaries.audit import audit_path, raise_for_failures
    from wheelforge.binaries.wheelmeta import check_wheel

    assert a.wheel is not None
    report = audit_path(a.wheel, list(step.expected_sass), require_device_code=step.require_device_code)
    a.say(f"# audit: SASS found {', '.join(report.archs_found) or 'none'}; wanted {', '.join('sm_' + x for x in step.expected_sass)}")
    raise_for_failures(report)  # a wheel failing the static audit is never stored
    check_wheel(a.wheel)
    a.audit = report


def store(step: StoreStep, a: Attempt) -> None:
    """Promote the wheel into ``entries/<key>/``: unverified until the verify step says otherwise.

    A file name is bound to one sha256 forever: a different wheel under a name the wheelhouse already
    holds is refused, naming both keys and what differs, unless ``--replace`` asked to publish it
    anyway under the next build number, yanking the old file (PEP 592).
    """
    from wheelforge.binaries.wheelmeta import rewrite_wheel
    from wheelforge.model.errors import WheelhouseError
    from wheelforge.store.provenance import iso, statement
    from wheelforge.store.wheelhouse import differing_inputs, make_manifest, write_json

    assert a.wheel is not None and a.audit is not None
    plan, wh = a.plan, a.wheelhouse
    with wh.names_lock():
        sha = sha256_file(a.wheel)
        others = [e for e in wh.holders_of(a.wheel.name) if e.manifest.get("sha256") != sha]
        if others:
            old = others[0]
            changed = differing_inputs(old.manifest.get("key_inputs") or {}, plan.key_inputs) or ["(the old entry records no key inputs)"]
            if not a.replace:
                raise WheelhouseError(
                    "wheelhouse.name-taken",
                    f"{a.wheel.name} is already in the wheelhouse with other bytes (entry {old.key[:12]}); this build "
                    f"(key {plan.key[:12]}) differs in: {'; '.join(changed[:4])}" + (" ..." if len(changed) > 4 else ""),
                    "a file name stands for one sha256 forever; to publish this build anyway, rebuild with --replace "
                    "(it gets the next build number and the old file is yanked)")
            number = 1 + max((_build_number(e.manifest.get("wheel", "")) for e in wh.all_entries()
                              if _without_build_number(e.manifest.get("wheel", "")) == _without_build_number(a.wheel.name)), default=0)
            renamed = rewrite_wheel(a.wheel, a.work / "numbered", build_tag=number)
            for e in others:
                wh.yank(e.manifest["wheel"], f"replaced by {renamed.name} (key {plan.key[:12]}): {changed[0]}")
            a.reporter.note(f"{plan.recipe}: --replace: {a.wheel.name} yanked, this build is {renamed.name}")
            a.wheel = renamed
            sha = sha256_file(renamed)
        stage = a.work / "entry"
        stage.mkdir()
        final = stage / a.wheel.name
        os.replace(a.wheel, final)
        os.chmod(final, 0o644)  # rewritten wheels come from mkstemp (0600): index and serve may run as another user
        finished = time.time()
        seconds = time.monotonic() - a.t0
        write_json(stage / "entry.json", make_manifest(
            key=step.key, recipe=plan.recipe, version=plan.version, project=plan.project, wheel=final, sha256=sha,
            target=plan.target.to_json(), archs_found=list(a.audit.archs_found), built_at=iso(finished), build_seconds=seconds,
            archs_ptx=list(a.audit.archs_ptx), key_inputs=plan.key_inputs))
        tools = {"nvcc": plan.toolchain.cuda_version, "host_compiler": plan.toolchain.host_compiler or "", "cmake": plan.toolchain.cmake or ""}
        write_json(stage / "provenance.json", statement(wheel_name=final.name, wheel_sha256=sha, plan=plan.to_json(),
                                                        started=a.started, finished=finished,
                                                        toolchain_tools={k: v for k, v in tools.items() if v}))
        a.entry = wh.promote(stage, step.key)
    a.wheel = a.entry.wheel
    compile_s = a.phase_seconds.get("compile", 0.0)
    a.tell(f"{plan.recipe}: built {a.entry.wheel} in {seconds:.1f} s (compile {compile_s:.1f} s)")


def _build_number(filename: str) -> int:
    from packaging.utils import InvalidWheelFilename, parse_wheel_filename

    try:
        tag = parse_wheel_filename(filename)[2]
    except InvalidWheelFilename:
        return 0
    return tag[0] if tag else 0


def _without_build_number(filename: str) -> str:
    """``name-version-pytag-abi-platform``: the file name as if it had no build number."""
    parts = filename[:-4].split("-")
    return "-".join(parts[:2] + parts[-3:]) if len(parts) == 6 else filename[:-4]


def verify(step: VerifyStep, a: Attempt) -> None:
    from wheelforge.verify.suite import verify as run_suite

    assert a.entry is not None
    plan = a.plan
    report = run_suite(
        a.entry.path, archs=list(plan.target.archs), cuda=plan.target.cuda, wheelhouse=a.wheelhouse.root,
        runtime_requires=step.runtime_requires, test_module=step.test_module, python=a.python or sys.executable,
        offline=a.offline, echo=a.say, **dict(a.verify_options),
    )
    a.verify_report = report
    try:
        report.raise_for_result()
    except VerifyError as err:
        err.report = report  # type: ignore[attr-defined] - the CLI draws its table
        raise


EXECUTORS: Mapping[str, Callable[..., None]] = {
    FetchStep.action: fetch,
    PatchStep.action: patch,
    WriteFileStep.action: write_file,
    RunStep.action: run,
    LabelStep.action: label,
    RelocateStep.action: relocate,
    AuditStep.action: audit,
    StoreStep.action: store,
    VerifyStep.action: verify,
}

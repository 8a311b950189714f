"""Both workflow files parse, and every `invoke <task> --flag` they run exists in tasks.py."""

import re
import shlex
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO / ".github" / "workflows"
RUNNER_LABELS = ["self-hosted", "linux", "x64", "gpu", "sm120"]


def _load(name):
    # PyYAML reads the bare key `on` as the boolean True (YAML 1.1).
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    data["on"] = data.pop(True, data.get("on"))
    return data


@pytest.fixture(scope="module")
def tasks():
    """task name -> the long flag names it takes, read from the real tasks.py by invoke's loader."""
    from invoke import Collection
    from invoke.loader import FilesystemLoader

    module, _ = FilesystemLoader(start=str(REPO)).load("tasks")
    coll = Collection.from_module(module)
    out = {}
    for name in coll.task_names:
        task = coll[name]
        flags = set()
        for arg in task.get_arguments():
            for n in arg.names:
                if len(n) > 1:
                    flags.add("--" + n)
                    if arg.kind is bool:
                        flags.add("--no-" + n)
        out[name] = flags
    return out


def _steps(workflow):
    for job_name, job in workflow["jobs"].items():
        for step in job.get("steps", []):
            yield job_name, step


def _invocations(workflow):
    """(job, argv) for every `invoke ...` command line in the workflow's run scripts."""
    for job, step in _steps(workflow):
        script = step.get("run", "")
        script = re.sub(r"\$\{\{.*?\}\}", "EXPR", script).replace("\\\n", " ")
        for line in script.splitlines():
            if "invoke" not in line:
                continue
            lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            lexer.commenters = "#"
            words: list[str] = []
            for tok in [*lexer, ";"]:
                if tok and set(tok) <= set("&|;<>()"):  # a shell operator ends one command
                    while words and "=" in words[0] and not words[0].startswith("-"):
                        words.pop(0)  # VAR=value prefixes
                    if words and words[0] == "invoke":
                        yield job, words[1:]
                    words = [] if tok not in (">", ">>", "<") else ["<redirect>"]
                elif words[:1] != ["<redirect>"]:
                    words.append(tok)


@pytest.mark.parametrize("name", ["build-wheels.yml", "tests.yml"])
def test_workflow_parses_with_jobs_and_steps(name):
    wf = _load(name)
    assert wf["jobs"], name
    assert wf["on"], name
    for job_name, job in wf["jobs"].items():
        assert "runs-on" in job and job.get("steps"), f"{name}: job {job_name}"


@pytest.mark.parametrize("name", ["build-wheels.yml", "tests.yml"])
def test_every_invoke_task_and_flag_exists(name, tasks):
    wf = _load(name)
    for job, argv in _invocations(wf):
        assert argv, f"{name}: {job}: bare `invoke`"
        task = argv[0]
        assert task in tasks, f"{name}: job {job} runs `invoke {task}`, which tasks.py does not define (has: {sorted(tasks)})"
        for word in argv[1:]:
            if word.startswith("--"):
                flag = word.split("=", 1)[0]
                assert flag in tasks[task], f"{name}: job {job}: `invoke {task}` has no flag {flag} (has: {sorted(tasks[task])})"


def test_build_workflow_runs_the_farm_tasks(tasks):
    wf = _load("build-wheels.yml")
    called = {argv[0] for _, argv in _invocations(wf)}
    assert {"farm.matrix", "build", "verify", "publish", "farm.status"} <= called
    matrix_calls = [argv for job, argv in _invocations(wf) if argv[0] == "farm.matrix"]
    assert any("--json" in argv for argv in matrix_calls)


def test_build_jobs_use_the_matrix_on_gpu_runners():
    wf = _load("build-wheels.yml")
    builds = {n: j for n, j in wf["jobs"].items() if n.startswith("build-stage")}
    assert builds
    for name, job in builds.items():
        assert "fromJSON(needs.matrix.outputs.stage" in job["strategy"]["matrix"], name
        assert job["runs-on"] == "${{ matrix.runs_on }}", name
        assert "matrix" in (job["needs"] if isinstance(job["needs"], list) else [job["needs"]]), name
        env = job["env"]
        assert "SCCACHE_REDIS_ENDPOINT" in env and "secrets.SCCACHE_REDIS_ENDPOINT" in env["SCCACHE_REDIS_ENDPOINT"]
        assert "READ_ONLY" in env["SCCACHE_REDIS_RW_MODE"] and "READ_ONLY" in env["SCCACHE_S3_RW_MODE"]
        assert {"SCCACHE_BUCKET", "SCCACHE_ENDPOINT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(env)
        publish = [s for s in job["steps"] if "invoke publish" in s.get("run", "")]
        assert publish and "secrets.FARM_INDEX_URL" in publish[0]["run"]
        assert "TRUSTED" in publish[0]["if"]  # pull requests never publish
    # each later stage waits for the one before it
    assert "build-stage0" in wf["jobs"]["build-stage1"]["needs"]


def test_matrix_of_bundled_recipes_fits_the_workflow_and_runner_labels():
    from wheelforge.farm import matrix as farm
    from wheelforge.model.settings import resolve_settings

    settings = resolve_settings({"arch": "12.0", "cuda": "12.8"}, env={}, pyproject={}, cwd=REPO)
    m = farm.load_matrix(settings, env={})
    stage_jobs = [n for n in _load("build-wheels.yml")["jobs"] if n.startswith("build-stage")]
    assert m.stages <= len(stage_jobs), "add a build-stageN job: the recipes need more stages"
    assert all(list(j.runs_on) == RUNNER_LABELS for j in m.jobs)


def test_tests_workflow_runs_ci_script_on_hosted_runner():
    wf = _load("tests.yml")
    for job in wf["jobs"].values():
        assert not str(job["runs-on"]).startswith("self-hosted") and "ubuntu" in str(job["runs-on"])
    runs = [s.get("run", "") for _, s in _steps(wf)]
    assert any(r.strip() == "bash .ci/run" for r in runs)
    assert (REPO / ".ci" / "run").is_file()


def test_workflows_install_python_packages_into_a_venv_only():
    """Self-hosted runners keep their interpreters between jobs: pip runs for a job's own .venv only."""
    for name in ("build-wheels.yml", "tests.yml"):
        for job, step in _steps(_load(name)):
            for line in step.get("run", "").splitlines():
                if re.search(r"\bpip install\b", line):
                    assert ".venv/bin/python -m pip install" in line and "python -m venv .venv" in line.replace("python3", "python"), (name, job, line)

"""The farm matrix: dependency order, exclusions, GitHub's fromJSON shape; status matching."""

import json

import pytest

from wheelforge.farm import matrix as farm
from wheelforge.model.errors import FarmError
from wheelforge.model.recipe import load_recipe
from wheelforge.model.settings import resolve_settings


def _recipe(tmp_path, name, *, deps=(), versions=None, wheel_tag=None):
    versions = versions or {"1.0.0": ""}
    lines = [f'name = "{name}"', 'kind = "pep517"', "ram_per_job_gb = 1.0", 'test_module = "t.py"',
             f'default_version = "{list(versions)[-1]}"']
    if wheel_tag:
        lines.append(f'wheel_tag = "{wheel_tag}"')
    lines += ["[env]", "[build]", f"recipes = {json.dumps(list(deps))}"]
    for v, req in versions.items():
        lines.append(f'[versions."{v}"]')
        if req:
            lines.append(f'requires_python = "{req}"')
        lines.append('source = { type = "path", path = "." }')
    d = tmp_path / "recipes"
    d.mkdir(exist_ok=True)
    (d / f"{name}.toml").write_text("\n".join(lines) + "\n")
    return load_recipe(d / f"{name}.toml")


@pytest.fixture
def target(tmp_path):
    return resolve_settings({"arch": "12.0", "cuda": "12.8"}, env={}, pyproject={}, cwd=tmp_path).target


@pytest.fixture
def recipes(tmp_path):
    return {
        "torch": _recipe(tmp_path, "torch", versions={"2.14.0": ">=3.10", "2.15.0": ">=3.11"}),
        "xformers": _recipe(tmp_path, "xformers", deps=["torch"]),
        "demo": _recipe(tmp_path, "demo"),
    }


def test_dependency_order_and_needs(recipes, target):
    m = farm.build_matrix(recipes, target, pythons=["3.11", "3.12"])
    ids = [j.id for j in m.jobs]
    assert ids == ["demo-1.0.0-cp311-sm120", "demo-1.0.0-cp312-sm120", "torch-2.15.0-cp311-sm120",
                   "torch-2.15.0-cp312-sm120", "xformers-1.0.0-cp311-sm120", "xformers-1.0.0-cp312-sm120"]
    x311 = next(j for j in m.jobs if j.id == "xformers-1.0.0-cp311-sm120")
    assert x311.needs == ("torch-2.15.0-cp311-sm120",)
    assert x311.stage == 1 and m.stages == 2
    assert all(ids.index(n) < ids.index(j.id) for j in m.jobs for n in j.needs)


def test_requires_python_excludes_and_propagates(recipes, target):
    m = farm.build_matrix(recipes, target, pythons=["3.10", "3.11"])
    ex = {(e.recipe, e.python): e.reason for e in m.excluded}
    assert ex[("torch", "3.10")] == "torch 2.15.0 supports Python >=3.11"
    assert ex[("xformers", "3.10")] == "needs torch, which is excluded for Python 3.10"
    assert not any(j.python == "3.10" and j.recipe in ("torch", "xformers") for j in m.jobs)
    assert any(j.id == "demo-1.0.0-cp310-sm120" for j in m.jobs)


def test_all_versions_and_selected_recipe_pulls_dependency(recipes, target):
    m = farm.build_matrix(recipes, target, names=["xformers"], pythons=["3.10"], all_versions=True)
    assert m.added == ("torch",)
    # torch 2.14.0 supports 3.10 but xformers builds against torch's default version (2.15.0), which does not
    assert [j.id for j in m.jobs] == ["torch-2.14.0-cp310-sm120"]
    assert ("xformers", "3.10") in {(e.recipe, e.python) for e in m.excluded}


def test_github_shape_has_only_include(recipes, target):
    m = farm.build_matrix(recipes, target, pythons=["3.11"])
    gh = farm.to_github(m)
    assert list(gh) == ["include"]  # any other top-level key would become a matrix axis
    job = gh["include"][0]
    assert job["runs_on"] == ["self-hosted", "linux", "x64", "gpu", "sm120"]
    assert {"id", "recipe", "version", "python", "arch", "cuda", "needs", "stage"} <= set(job)
    assert [j["recipe"] for j in farm.to_github(m, stage=1)["include"]] == ["xformers"]
    json.dumps(gh)  # JSON-ready


def test_multi_arch_target_and_python_independent_wheel(tmp_path):
    t = resolve_settings({"arch": "9.0;12.0", "cuda": "13.0"}, env={}, pyproject={}, cwd=tmp_path).target
    r = {"pure": _recipe(tmp_path, "pure", versions={"1.0.0": ">=3.11"}, wheel_tag="py3-none")}
    m = farm.build_matrix(r, t, pythons=["3.10", "3.11", "3.12"])
    assert [j.id for j in m.jobs] == ["pure-1.0.0-any-sm90.sm120"]
    job = m.jobs[0]
    assert job.python == "3.11" and job.arch == "9.0;12.0" and job.runs_on[-1] == "sm120"
    assert job.label() == "cu130.sm90.sm120"


def test_python_independent_wheel_moves_to_the_first_python_its_dependencies_have(tmp_path, target):
    """torch has no 3.10 job; a py39-none xformers goes on 3.11 against torch's cp311 job instead of nowhere."""
    r = {"torch": _recipe(tmp_path, "torch", versions={"2.15.0": ">=3.11"}),
         "xformers": _recipe(tmp_path, "xformers", deps=["torch"], versions={"0.0.35": ">=3.9"}, wheel_tag="py39-none")}
    m = farm.build_matrix(r, target, pythons=["3.10", "3.11", "3.12"])
    x = [j for j in m.jobs if j.recipe == "xformers"]
    assert [(j.id, j.python, j.needs) for j in x] == [("xformers-0.0.35-any-sm120", "3.11", ("torch-2.15.0-cp311-sm120",))]
    assert [(e.recipe, e.python) for e in m.excluded] == [("torch", "3.10")]
    # no Python where torch has a job: excluded, one reason per Python
    m = farm.build_matrix(r, target, pythons=["3.10"])
    assert [(e.recipe, e.python, e.reason) for e in m.excluded if e.recipe == "xformers"] == [
        ("xformers", "3.10", "needs torch, which is excluded for Python 3.10")]


def test_bundled_recipes_on_the_workflows_default_pythons_all_have_jobs(tmp_path):
    """Every bundled recipe is in the matrix the build-wheels workflow computes by default."""
    import re
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    workflow = (repo / ".github/workflows/build-wheels.yml").read_text()
    pythons = re.search(r"PYTHONS: \$\{\{ inputs.pythons \|\| '([0-9.,]+)' \}\}", workflow).group(1).split(",")
    assert tuple(pythons) == farm.DEFAULT_PYTHONS
    settings = resolve_settings({"arch": "12.0", "cuda": "12.8"}, env={}, pyproject={}, cwd=repo)
    m = farm.load_matrix(settings, pythons=pythons, env={})
    bundled = {p.stem for p in (repo / "recipes").glob("*.toml")}
    assert bundled <= {j.recipe for j in m.jobs}, sorted(bundled - {j.recipe for j in m.jobs})
    assert m.stages <= 2  # the workflow has build-stage0 and build-stage1


def test_bad_inputs_name_the_thing(recipes, target, tmp_path):
    with pytest.raises(FarmError, match="nope"):
        farm.build_matrix(recipes, target, names=["nope"])
    with pytest.raises(FarmError) as err:
        farm.parse_pythons(["three"])
    assert err.value.id == "farm.python" and "3.11" in err.value.hint
    assert farm.parse_pythons(["311", "python3.12", "3.12"]) == ("3.11", "3.12")
    lone = {"xformers": recipes["xformers"]}
    with pytest.raises(FarmError, match="xformers builds against 'torch'"):
        farm.build_matrix(lone, target)
    a = _recipe(tmp_path, "a", deps=["b"])
    b = _recipe(tmp_path, "b", deps=["a"])
    with pytest.raises(FarmError) as err:
        farm.build_matrix({"a": a, "b": b}, target)
    assert err.value.id == "farm.cycle"


def _manifest(key, recipe, version, python, label, wheel):
    return {"key": key, "recipe": recipe, "version": version, "wheel": wheel,
            "target": {"archs": ["12.0"], "cuda": "12.8", "python": python, "label": label}}


def test_status_from_wheelhouse_entries_and_failures(recipes, target):
    m = farm.build_matrix(recipes, target, names=["torch"], pythons=["3.11", "3.12", "3.13"])
    entries = [_manifest("k1", "torch", "2.15.0", "cp311", "cu128.sm120", "torch-2.15.0+cu128.sm120-cp311-cp311-linux_x86_64.whl"),
               _manifest("k9", "torch", "2.15.0", "cp312", "cu130.sm120", "wrong-label.whl")]
    failures = [{"key": "k2", "recipe": "torch", "version": "2.15.0", "error_id": "build.failed", "message": "nvcc died",
                 "log": "/wh/logs/k2.log", "at": "2026-01-01T00:00:00Z",
                 "target": {"python": "cp312", "label": "cu128.sm120"}}]
    st = farm.collect_status(m, entries=entries, failures=failures, entries_root="/wh/entries",
                             log_url="https://ci.example/logs")
    by = {s.job.python: s for s in st}
    assert by["3.11"].state == "present" and by["3.11"].where == "/wh/entries/k1"
    assert by["3.12"].state == "failed" and by["3.12"].log == "https://ci.example/logs/k2.log"
    assert by["3.13"].state == "missing"
    assert farm.summarize(st) == {"present": 1, "failed": 1, "missing": 1}
    text = farm.render_status(st, "/wh")
    assert "[build.failed] nvcc died" in text and "1 present, 1 missing, 1 failed of 3 jobs" in text


def test_status_from_index_files(recipes, target):
    m = farm.build_matrix(recipes, target, names=["demo"], pythons=["3.11", "3.12"])
    files = {"demo": ["demo-1.0.0+cu128.sm120-cp311-cp311-linux_x86_64.whl",
                      "demo-1.0.0+cu128.sm90-cp312-cp312-linux_x86_64.whl", "not a wheel"]}
    st = farm.collect_status(m, files=files, index_url="http://127.0.0.1:1/simple/")
    assert [s.state for s in st] == ["present", "missing"]
    assert st[0].where == "http://127.0.0.1:1/simple/demo/"


def test_missing_says_when_another_cudas_build_exists(recipes, target):
    """A runner that built with --cuda auto against 13.0: the cu128 job is missing, and says what the store has."""
    m = farm.build_matrix(recipes, target, names=["demo"], pythons=["3.11", "3.12"])
    other = "demo-1.0.0+cu130.sm120-cp311-cp311-linux_x86_64.whl"
    st = farm.collect_status(m, entries=[_manifest("k1", "demo", "1.0.0", "cp311", "cu130.sm120", other)])
    assert [(s.state, s.other_cuda) for s in st] == [("missing", other), ("missing", None)]  # 3.12: nothing at all
    assert st[0].to_json()["other_label"] == "cu130.sm120"
    assert f"missing  a cu130 build exists: {other}" in farm.render_status(st, "/wh")
    # the same from a remote index; another arch's build is not "the same wheel for another CUDA"
    files = {"demo": [other, "demo-1.0.0+cu130.sm90-cp312-cp312-linux_x86_64.whl"]}
    st = farm.collect_status(m, files=files, index_url="http://127.0.0.1:1/simple/")
    assert [(s.state, s.other_cuda) for s in st] == [("missing", other), ("missing", None)]


def test_status_with_cuda_auto_matches_any_toolkit(recipes, tmp_path):
    t = resolve_settings({"arch": "12.0", "cuda": "auto"}, env={}, pyproject={}, cwd=tmp_path).target
    m = farm.build_matrix(recipes, t, names=["demo"], pythons=["3.11"])
    st = farm.collect_status(m, files={"demo": ["demo-1.0.0+cu130.sm120-cp311-cp311-linux_x86_64.whl"]})
    assert st[0].state == "present"


def test_read_wheelhouse_skips_half_written(tmp_path):
    root = tmp_path / "wh"
    good = root / "entries" / "k1"
    good.mkdir(parents=True)
    (good / "w.whl").write_bytes(b"x")
    (good / "entry.json").write_text(json.dumps({"key": "k1", "wheel": "w.whl"}))
    nowheel = root / "entries" / "k2"
    nowheel.mkdir()
    (nowheel / "entry.json").write_text(json.dumps({"key": "k2", "wheel": "gone.whl"}))
    (root / "failures").mkdir()
    (root / "failures" / "k3.json").write_text("{not json")
    entries, failures = farm.read_wheelhouse(root)
    assert [e["key"] for e in entries] == ["k1"] and failures == []


def test_bundled_torch_family_builds_after_torch(target):
    """recipes/torchvision.toml and torchaudio.toml compile against torch: stage 1, needing the torch job."""
    from wheelforge.model.recipe import all_recipes, recipe_dirs

    bundled = all_recipes(recipe_dirs(None, env={}))
    m = farm.build_matrix(bundled, target, names=["torchvision", "torchaudio"], pythons=["3.11", "3.12"])
    assert m.added == ("torch",)
    ids = [j.id for j in m.jobs]
    torch_jobs = [i for i in ids if i.startswith("torch-2.15.0-")]
    assert torch_jobs == ["torch-2.15.0-cp311-sm120", "torch-2.15.0-cp312-sm120"]
    for name in ("torchvision", "torchaudio"):
        (job,) = [j for j in m.jobs if j.recipe == name]
        assert job.stage == 1 and job.needs == ("torch-2.15.0-cp311-sm120",)
        assert all(ids.index(n) < ids.index(job.id) for n in job.needs)
    assert [j["recipe"] for j in farm.to_github(m, stage=1)["include"]] == ["torchaudio", "torchvision"]

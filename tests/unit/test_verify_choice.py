"""Verify by path = verify by recipe: which suite a wheel gets, and which run verify.json keeps."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from variant_support import add_cuda_entry, cuda_wheel  # noqa: E402

from wheelforge.model.errors import RecipeError  # noqa: E402
from wheelforge.verify.suite import choose_suite, covers_more, describe_coverage  # noqa: E402

RECIPE = """name = "{name}"
project = "{project}"
kind = "pep517"
ram_per_job_gb = 1
test_module = "tests/test_gate.py"
default_version = "1.0.0"
[env]
[build]
[versions."1.0.0"]
source = {{ type = "path", path = "." }}
"""


@pytest.fixture
def house(tmp_path: Path) -> dict:
    recipes = tmp_path / "recipes"
    (recipes / "tests").mkdir(parents=True)
    (recipes / "tests" / "test_gate.py").write_text("def test_ok():\n    pass\n")
    (recipes / "gate-kernels.toml").write_text(RECIPE.format(name="gate-kernels", project="gate-kernels"))
    wh = tmp_path / "wheelhouse"
    entry = add_cuda_entry(wh, "gate-kernels", "cu130.sm120", sass=(120,))
    return {"recipes": [recipes], "wheelhouse": wh, "entry": entry, "tmp": tmp_path,
            "wheel": wh / "entries" / entry["key"] / entry["wheel"]}


def test_wheel_in_an_entry_gets_its_recipes_whole_suite(house: dict) -> None:
    choice = choose_suite(house["wheel"], wheelhouse=house["wheelhouse"], recipe_dirs=house["recipes"])
    assert choice.subject == house["wheel"].parent
    assert choice.recipe is not None and choice.recipe.name == "gate-kernels"
    assert choice.test_module == house["recipes"][0] / "tests" / "test_gate.py"
    assert choice.note.startswith(f"entry {house['entry']['key']}: the suite of recipe gate-kernels")


def test_a_copy_of_an_entrys_wheel_is_that_entry(house: dict) -> None:
    """Found by sha256: the copy's bytes are the entry's, so its report belongs to the entry."""
    copy = house["tmp"] / "downloads" / house["wheel"].name
    copy.parent.mkdir()
    shutil.copy2(house["wheel"], copy)
    choice = choose_suite(copy, wheelhouse=house["wheelhouse"], recipe_dirs=house["recipes"])
    assert choice.subject == house["wheel"].parent and choice.recipe.name == "gate-kernels"
    assert f"(the same bytes as {copy})" in choice.note


def test_unknown_wheel_gets_the_suite_of_the_recipe_that_builds_its_project(house: dict) -> None:
    other = cuda_wheel(house["tmp"] / "other", "gate-kernels", "2.0.0+cu130.sm120", sass=(120,))
    choice = choose_suite(other, wheelhouse=house["wheelhouse"], recipe_dirs=house["recipes"])
    assert choice.subject == other and choice.recipe.name == "gate-kernels"
    assert choice.note.startswith("not in the wheelhouse: the suite of recipe gate-kernels, which builds gate-kernels")


def test_wheel_of_no_recipe_gets_the_static_checks_and_says_so(house: dict) -> None:
    stranger = cuda_wheel(house["tmp"] / "stranger", "stranger-kernels", "1.0.0", sass=(120,))
    choice = choose_suite(stranger, wheelhouse=house["wheelhouse"], recipe_dirs=house["recipes"])
    assert choice.recipe is None and choice.test_module is None
    assert choice.note == ("no recipe builds stranger-kernels and the wheelhouse holds no entry with this wheel's sha256: "
                           "static checks only")


def test_entry_of_a_recipe_no_folder_holds(house: dict) -> None:
    choice = choose_suite(house["wheel"], wheelhouse=house["wheelhouse"], recipe_dirs=[house["tmp"] / "empty"])
    assert choice.recipe is None
    assert "was built by recipe 'gate-kernels', which no recipe folder holds: static checks only" in choice.note


def test_a_recipe_whose_module_is_gone_is_an_error_not_a_reduced_run(house: dict) -> None:
    (house["recipes"][0] / "tests" / "test_gate.py").unlink()
    choice = choose_suite(house["wheel"], wheelhouse=house["wheelhouse"], recipe_dirs=house["recipes"])
    with pytest.raises(RecipeError, match="key 'test_module'"):
        _ = choice.test_module


def _report(sha: str, modules: dict, tests: list[tuple[str, str]], result: str = "passed") -> dict:
    return {"sha256": sha, "modules": modules, "result": result, "finished": "2026-01-01T00:00:00Z",
            "tests": [{"name": n, "outcome": o, "message": ""} for n, o in tests]}


STATIC = {"test_wheel_static.py": "s1"}
FULL = {"test_wheel_static.py": "s1", "test_demo_cuda.py": "d1"}
FULL_TESTS = [("test_wheel_static::a", "passed"), ("test_demo_cuda::b", "passed"), ("test_demo_cuda::gpu", "skipped")]


def test_fuller_means_more_modules_or_more_tests_run_of_the_same_wheel_and_suite_text() -> None:
    full = _report("w", FULL, FULL_TESTS)
    static = _report("w", STATIC, [("test_wheel_static::a", "passed")])
    on_gpu = _report("w", FULL, [(n, "passed") for n, _ in FULL_TESTS])
    assert covers_more(full, static)  # a static-only run never replaces the full one
    assert not covers_more(static, full)
    assert covers_more(on_gpu, full)  # the GPU run ran the GPU test; a later GPU-less run is reduced
    assert not covers_more(full, on_gpu)
    assert not covers_more(full, full)  # the same coverage: the newer run is kept
    assert not covers_more(_report("other wheel", FULL, FULL_TESTS), static)
    changed = _report("w", {"test_wheel_static.py": "s2"}, [("test_wheel_static::a", "passed")])
    assert not covers_more(full, changed)  # the static module changed since: not comparable, newer wins
    assert describe_coverage(full) == "test_demo_cuda.py, test_wheel_static.py; 2 tests run"


def test_reports_from_before_modules_were_recorded_are_compared_by_test_names() -> None:
    old_full = {"sha256": "w", "result": "passed", "tests": [{"name": n, "outcome": o} for n, o in FULL_TESTS]}
    assert covers_more(old_full, _report("w", STATIC, [("test_wheel_static::a", "passed")]))
    assert not covers_more(old_full, _report("w", FULL, FULL_TESTS))


def test_verify_json_round_trip_fields(house: dict) -> None:
    """The lead's entry states read these fields of verify.json: keep them."""
    from wheelforge.verify.suite import VerifyReport

    d = VerifyReport(wheel="w.whl", sha256="x", archs_requested=["12.0"], archs_found=[], audit={}).to_dict()
    assert {"result", "tests", "gpu", "modules", "notes", "sha256"} <= set(d)
    json.dumps(d)


def test_a_passing_reduced_run_over_a_fuller_failed_one_still_fails(tmp_path: Path) -> None:
    """The entry keeps the fuller failed run (its wheel does not reach users), so the command must not say done."""
    from wheelforge.model.errors import VerifyError
    from wheelforge.verify.suite import VerifyReport

    report = VerifyReport(wheel="w.whl", sha256="w", archs_requested=["12.0"], archs_found=[], audit={}, result="passed")
    report.kept_run = _report("w", FULL, FULL_TESTS, result="failed") | {"reason": "1 test(s) failed; first: test_demo_cuda::gpu"}
    with pytest.raises(VerifyError) as err:
        report.raise_for_result()
    assert err.value.id == "verify.fuller-run-failed" and "test_demo_cuda::gpu" in err.value.message
    assert "kept_run" not in report.to_dict()
    report.kept_run = _report("w", FULL, FULL_TESTS)  # a fuller run that passed: nothing to say
    report.raise_for_result()

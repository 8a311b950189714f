"""Patch series on fresh copies of fetched sources: apply, conflict, outside paths; the cache stays pristine."""

from __future__ import annotations

import difflib
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from source_support import listing, make_repo, sdist_tar, sha256_of, write_recipe

from wheelforge.model.errors import PatchError
from wheelforge.model.recipe import load_recipe
from wheelforge.sources.fetch import fetch, sources_dir
from wheelforge.sources.patches import check_series, prepare_tree

pytestmark = pytest.mark.integration

V1 = "".join(f"line {i}\n" for i in range(1, 31))
V2 = V1.replace("line 25\n", "line 25 changed upstream\n")  # breaks the patch's second hunk only


def quiet(_line: str) -> None:
    pass


def udiff(path: str, old: str, new: str) -> str:
    return "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True), f"a/{path}", f"b/{path}"))


FIX = udiff("src/a.c", V1, V1.replace("line 3\n", "line 3 patched\n").replace("line 25\n", "line 25 patched\n"))
ADD = "--- /dev/null\n+++ b/NEW.txt\n@@ -0,0 +1 @@\n+added by 0002\n"


@pytest.fixture
def project(tmp_path: Path) -> dict:
    """Archives of pkg 1.0 and 2.0 served over file://, and a recipe with a two-patch series."""
    a1 = sdist_tar(tmp_path / "origin" / "pkg-1.0.tar.gz", "pkg-1.0", {"src/a.c": V1})
    a2 = sdist_tar(tmp_path / "origin" / "pkg-2.0.tar.gz", "pkg-2.0", {"src/a.c": V2})
    versions = {
        "1.0": f'type = "archive"\nurl = "{a1.as_uri()}"\nsha256 = "{sha256_of(a1)}"',
        "2.0": f'type = "archive"\nurl = "{a2.as_uri()}"\nsha256 = "{sha256_of(a2)}"',
    }
    recipe = load_recipe(write_recipe(tmp_path / "repo", "pkg", versions,
                                      patches=[("0001-fix.patch", ">=1.0"), ("0002-add.patch", ">=1.0")],
                                      patch_files={"0001-fix.patch": FIX, "0002-add.patch": ADD}))
    return {"recipe": recipe, "cache": tmp_path / "cache", "work": tmp_path / "work"}


def _fetch(project: dict, version: str):
    recipe = project["recipe"]
    return fetch(recipe.resolve_source(recipe.pin(version)), cache_dir=project["cache"], echo=quiet)


def test_series_applies_in_order_to_a_fresh_copy(project: dict) -> None:
    fetched = _fetch(project, "1.0")
    before = sha256_of(fetched.path)
    prepared = prepare_tree(fetched, project["recipe"], "1.0", project["work"], echo=quiet)
    text = (prepared.path / "src" / "a.c").read_text()
    assert "line 3 patched" in text and "line 25 patched" in text
    assert (prepared.path / "NEW.txt").read_text() == "added by 0002\n"
    assert [f for f, _ in prepared.patches] == ["0001-fix.patch", "0002-add.patch"]
    assert prepared.patches[0][1] == sha256_of(project["recipe"].patch_dir / "0001-fix.patch")
    assert prepared.digest == fetched.digest
    assert not list(project["work"].glob("*.partial"))
    assert sha256_of(fetched.path) == before == fetched.sha256
    # a second prepare is another fresh copy, not the patched one again
    other = prepare_tree(fetched, project["recipe"], "1.0", project["work"], echo=quiet)
    assert other.path != prepared.path and "line 3 patched" in (other.path / "src" / "a.c").read_text()


def test_conflict_names_patch_file_and_hunk_and_cache_stays_pristine(project: dict) -> None:
    fetched = _fetch(project, "2.0")
    with pytest.raises(PatchError) as err:
        prepare_tree(fetched, project["recipe"], "2.0", project["work"], echo=quiet)
    msg = str(err.value)
    print(err.value.render())
    assert "0001-fix.patch" in msg and "src/a.c" in msg and "@@ -22,7 +22,7 @@" in msg and "pkg 2.0" in msg
    assert "git apply said" in (err.value.hint or "")
    assert list(project["work"].iterdir()) == []  # no half-patched tree left behind
    # the pristine archive, re-hashed, still equals its pin; nothing else crept into the cache entry
    assert sha256_of(fetched.path) == fetched.sha256
    assert [p.name for p in fetched.path.parent.iterdir()] == ["pkg-2.0.tar.gz"]


@pytest.mark.parametrize("bad_path", ["../outside.txt", "/tmp/wheelforge-outside.txt", "src/../../outside.txt"])
def test_patch_touching_paths_outside_the_tree_is_refused(tmp_path: Path, project: dict, bad_path: str) -> None:
    recipe = project["recipe"]
    evil = f"--- /dev/null\n+++ b/{bad_path}\n@@ -0,0 +1 @@\n+evil\n"  # b//tmp/... is absolute after -p1
    (recipe.patch_dir / "0002-add.patch").write_text(evil)
    fetched = _fetch(project, "1.0")
    before = listing(tmp_path)
    with pytest.raises(PatchError) as err:
        prepare_tree(fetched, recipe, "1.0", project["work"], echo=quiet)
    assert err.value.id == "patch.outside-tree" and "0002-add.patch" in str(err.value) and bad_path in str(err.value)
    assert listing(tmp_path) == before
    assert not Path(bad_path).is_absolute() or not Path(bad_path).exists()


def test_git_apply_itself_refuses_outside_paths(tmp_path: Path) -> None:
    """Second net: even without our pre-check, git apply will not write outside the tree."""
    from wheelforge.sources.git import git_env, run

    tree = tmp_path / "t" / "tree"
    tree.mkdir(parents=True)
    patch = tmp_path / "p.patch"
    patch.write_text("--- /dev/null\n+++ b/../escaped.txt\n@@ -0,0 +1 @@\n+evil\n")
    proc = run(["git", "apply", str(patch)], cwd=tree, env=git_env({"GIT_CEILING_DIRECTORIES": str(tree.parent)}), echo=quiet, check=False)
    assert proc.returncode != 0 and not (tmp_path / "t" / "escaped.txt").exists()


def test_check_series_reports_each_version(project: dict) -> None:
    results = check_series(project["recipe"], cache_dir=project["cache"], echo=quiet)
    assert [(r.version, r.ok) for r in results] == [("1.0", True), ("2.0", False)]
    assert "0001-fix.patch" in results[1].error and "@@ -22,7 +22,7 @@" in results[1].error
    assert [f for f, _ in results[0].patches] == ["0001-fix.patch", "0002-add.patch"]
    unknown = check_series(project["recipe"], ["9.9"], cache_dir=project["cache"], offline=True, echo=quiet)
    assert not unknown[0].ok and "9.9" in unknown[0].error


def test_git_source_is_checked_out_and_patched_without_touching_the_mirror(tmp_path: Path) -> None:
    repo = tmp_path / "up"
    pinned = make_repo(repo, {"src/a.c": V1}, tag="v1.0")
    versions = {"1.0": f'type = "git"\nurl = "{repo.as_uri()}"\ntag = "v1.0"\ncommit = "{pinned}"'}
    recipe = load_recipe(write_recipe(tmp_path / "repo", "gitpkg", versions, patches=[("0001-fix.patch", "")],
                                      patch_files={"0001-fix.patch": FIX}))
    fetched = fetch(recipe.resolve_source(recipe.pin("1.0")), cache_dir=tmp_path / "cache", echo=quiet)
    mirror_before = listing(fetched.path)
    prepared = prepare_tree(fetched, recipe, "1.0", tmp_path / "work", echo=quiet)
    assert "line 25 patched" in (prepared.path / "src" / "a.c").read_text()
    assert listing(fetched.path) == mirror_before
    assert sources_dir(tmp_path / "cache") in fetched.path.parents


def test_local_source_copy_is_patched_and_the_original_is_not(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    make_repo(mine, {"src/a.c": V1})
    (mine / "scratch.o").write_text("untracked")
    versions = {"1.0": 'type = "path"\npath = "../../mine"'}
    recipe = load_recipe(write_recipe(tmp_path / "repo", "local", versions, patches=[("0001-fix.patch", "")],
                                      patch_files={"0001-fix.patch": FIX}))
    fetched = fetch(recipe.resolve_source(recipe.pin("1.0")), echo=quiet)
    assert fetched.kind == "path" and fetched.digest.startswith("tree:")
    prepared = prepare_tree(fetched, recipe, "1.0", tmp_path / "work", echo=quiet)
    assert "line 3 patched" in (prepared.path / "src" / "a.c").read_text()
    assert (mine / "src" / "a.c").read_text() == V1
    assert not (prepared.path / "scratch.o").exists()  # only tracked content is built (and hashed)
    shutil.rmtree(prepared.path)


def test_patches_apply_inside_an_enclosing_git_repo_and_check_runs_first(tmp_path: Path, project: dict) -> None:
    """A work folder inside some repository (a CI checkout): git apply must still patch the tree, not skip it."""
    from source_support import git

    outer = tmp_path / "ci-checkout"
    make_repo(outer, {"README": "outer\n"})
    echoes: list[str] = []
    prepared = prepare_tree(_fetch(project, "1.0"), project["recipe"], "1.0", outer / "build" / "src", echo=echoes.append)
    assert "line 3 patched" in (prepared.path / "src" / "a.c").read_text()
    applies = [e for e in echoes if " apply " in e]
    assert len(applies) == 4 and "--check" in applies[0] and "--check" not in applies[1]
    assert git(outer, "status", "--porcelain", "--untracked-files=no") == ""

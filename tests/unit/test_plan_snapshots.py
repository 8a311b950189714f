"""Snapshots of the bundled recipes' plans: every step, command and key input, for fixed toolchain facts.

A change to a plan shows up here as a diff to read.  When it is meant, update the files with
``WHEELFORGE_UPDATE_SNAPSHOTS=1 python3 -m pytest tests/unit/test_plan_snapshots.py`` and commit them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from wheelforge.model import bundled
from wheelforge.model.facts import Tool, ToolchainFacts
from wheelforge.model.lock import read as read_lock
from wheelforge.model.plan import BuildDependency
from wheelforge.model.planner import make_plan
from wheelforge.model.recipe import PathSource, all_recipes, recipe_dirs
from wheelforge.model.settings import resolve_settings
from wheelforge.sources.patches import patch_digests
from wheelforge.sources.treehash import hash_tree

SNAPSHOTS = Path(__file__).resolve().parents[1] / "snapshots"
FACTS = ToolchainFacts(
    cuda_version="12.8", cuda_home="/usr/local/cuda-12.8", nvcc="/usr/local/cuda-12.8/bin/nvcc",
    host_compiler=Tool("/usr/bin/g++", "12.2.0"), host_compiler_limit=14, cmake=Tool("/usr/bin/cmake", "3.31.0"),
    ninja=Tool("/usr/bin/ninja", "1.12.1"),
)
PYTHON = "/usr/bin/python3.11"
#: What a recipe that builds against another recipe is planned against: a pinned release, so the
#: snapshot does not depend on what a wheelhouse holds.
PINNED = {"torch": BuildDependency("torch", "2.15.0", "pypi:torch==2.15.0", "torch==2.15.0", cuda_version="12.8", recipe="torch")}
RECIPES = all_recipes(recipe_dirs(env={}))


def plan_json(name: str) -> str:
    recipe = RECIPES[name]
    target = resolve_settings({"arch": "12.0", "cuda": "12.8", "python": PYTHON}, env={}, pyproject={}).target
    pin = recipe.pin(None)
    source = recipe.resolve_source(pin)
    tree = hash_tree(source.path) if isinstance(source, PathSource) else None
    lock = read_lock(recipe, target.python_tag, FACTS.cuda_version)
    plan = make_plan(recipe, None, target, FACTS, patches=patch_digests(recipe, pin.version), lock=lock,
                     build_deps=[PINNED[d] for d in recipe.build.recipes], jobs=8, jobs_reason="8 jobs (fixed for the snapshot)",
                     source=source, tree_hash=tree)
    text = json.dumps(plan.to_json(), indent=1, sort_keys=True) + "\n"
    return text.replace(str(bundled.root()), "{bundled}")


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_plan_matches_its_snapshot(name: str) -> None:
    path = SNAPSHOTS / f"{name}.plan.json"
    got = plan_json(name)
    if os.environ.get("WHEELFORGE_UPDATE_SNAPSHOTS") == "1":
        path.write_text(got)
    assert path.is_file(), f"no snapshot for {name}: run with WHEELFORGE_UPDATE_SNAPSHOTS=1 and commit {path}"
    assert got == path.read_text(), f"the plan of {name} changed; if that is meant, update the snapshot (see the module docstring)"


def test_every_snapshot_has_a_recipe() -> None:
    stale = sorted(p.name for p in SNAPSHOTS.glob("*.plan.json") if p.name[: -len(".plan.json")] not in RECIPES)
    assert not stale, f"snapshots of recipes that no longer exist: {stale}"

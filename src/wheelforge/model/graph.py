"""The recipe dependency graph: which recipes build against which, in an order that works.

One walker for the build pipeline (dependencies first) and the farm matrix (stages); it
refuses unknown recipes and cycles with an error naming them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from wheelforge.model.errors import RecipeError
from wheelforge.model.recipe import Recipe


def dependency_order(recipes: Mapping[str, Recipe], wanted: Sequence[str]) -> tuple[list[str], list[str]]:
    """Recipes to build, each after the recipes it builds against; plus the ones pulled in."""
    closure: list[str] = []
    added: list[str] = []
    todo = list(wanted)
    while todo:
        name = todo.pop(0)
        if name in closure:
            continue
        if name not in recipes:
            asked_by = [r for r in closure if name in recipes[r].build.recipes]
            where = f"{asked_by[0]} builds against {name!r}, which" if asked_by else f"recipe {name!r}"
            raise RecipeError("recipe.not-found", f"{where} is not in the recipe folders",
                            f"known recipes: {', '.join(sorted(recipes)) or 'none'}; add one with --recipes-dir")
        closure.append(name)
        if name not in wanted:
            added.append(name)
        todo.extend(recipes[name].build.recipes)
    # Kahn's algorithm; ties broken by name so the matrix is the same on every run.
    order: list[str] = []
    pending = set(closure)
    while pending:
        ready = sorted(n for n in pending if not set(recipes[n].build.recipes) & pending)
        if not ready:
            raise RecipeError("recipe.cycle", f"recipes depend on each other in a cycle: {', '.join(sorted(pending))}",
                            "remove one [build] recipes entry so the graph has an order")
        order.extend(ready)
        pending -= set(ready)
    return order, added

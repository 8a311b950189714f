"""Where the recipes, patches, example sources and post-build suite that ship with wheelforge are.

In the repository they sit at the top level (``recipes/``, ``patches/``, ``examples/``,
``tests/postbuild/``), where users look for them.  The build maps the same folders into the
package as ``wheelforge.bundled.*`` (pyproject's ``package-dir``), so an installed wheelforge
(pip, pipx) finds them in the same layout below ``wheelforge/bundled/``.  Either way the
folders keep their relative places: a recipe's ``../patches`` or ``../tests/postbuild`` works
from both.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=1)
def root() -> Path:
    """The folder that holds ``recipes/``, ``patches/``, ``examples/`` and ``tests/postbuild/``."""
    from importlib.util import find_spec

    # Editable installs map the (namespace) package to the checkout's recipes/; wheels hold a copy.
    try:
        spec = find_spec("wheelforge.bundled.recipes")
    except ModuleNotFoundError:
        spec = None
    for location in (spec.submodule_search_locations or []) if spec else []:
        if Path(location, "..", "recipes").is_dir():
            return Path(location).resolve().parent
    # Run from a source tree without installing (PYTHONPATH=src): the checkout itself.
    return Path(__file__).resolve().parents[3]


def recipes_dir() -> Path:
    return root() / "recipes"


def postbuild_dir() -> Path:
    return root() / "tests" / "postbuild"

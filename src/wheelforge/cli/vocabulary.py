"""One name per concept across every task: the long flag, at most one short flag, the default help.

Invoke derives a short flag from each parameter's first free letter, task by task, so the same
letter used to mean ``--wheelhouse`` in one task and ``--host`` in the next.  Every task here is a
:class:`Command` (invoke's ``@task(klass=...)``), whose flags come from :data:`FLAGS` only: a task
parameter missing from the table is an error when the task is loaded, and the README's table of
flags is this table (tests/unit/test_cli_vocabulary.py checks both).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from invoke import Task


@dataclass(frozen=True)
class Flag:
    concept: str  # what it means, in a few words (the README's first column)
    long: str  # without the dashes
    short: str | None  # one letter, or None
    help: str  # the default help; a task may word it for its own use, never rename the flag


#: parameter name -> its flag, in the order of the README's table.
FLAGS: dict[str, Flag] = {
    "recipe": Flag("recipe(s) to act on", "recipe", None, "recipe name; several comma-separated where the task takes several"),
    "version": Flag("recipe version", "version", None, "upstream version of the recipe (default: the recipe's default_version)"),
    "arch": Flag("GPU archs", "arch", "a", "CUDA archs: 12.0, 120, sm_120, 12.0a, 12.0+PTX; lists with ; , or spaces (default 12.0)"),
    "cuda": Flag("CUDA version", "cuda", None, "CUDA version of the toolkit: 12.8 (default), 13.0, ... or auto (the toolkit found)"),
    "python": Flag("Python(s) to build for or check", "python", None, "the Python to build for or check"),
    "recipes_dir": Flag("extra recipe folder", "recipes-dir", None, "extra folder of recipe TOML files (also WHEELFORGE_RECIPE_PATH)"),
    "wheelhouse": Flag("wheelhouse folder", "wheelhouse", None, "wheelhouse folder (default ./wheelhouse, or WHEELFORGE_WHEELHOUSE)"),
    "with_": Flag("pinned build dependency", "with", None, "build against a pinned upstream release, e.g. torch==2.15.0 (repeatable)"),
    "source": Flag("local source checkout", "source", None, "build this local checkout instead of the pinned source"),
    "no_isolation": Flag("no build venv", "no-isolation", None, "use the current interpreter's packages instead of a build venv"),
    "jobs": Flag("compile jobs", "jobs", "j", "parallel compile jobs (default: from free memory and cores)"),
    "compiler_cache": Flag("compiler cache", "compiler-cache", None, "auto (default), sccache, ccache or none"),
    "installer": Flag("build-venv installer", "installer", None, "what fills the build venv: pip (default; reads pip.conf and PIP_*) or uv (faster; reads UV_* only)"),
    "offline": Flag("no network", "offline", None, "use only the source cache and local wheels, no network"),
    "source_name": Flag("another pinned source", "source-name", None, "build the version's other pinned source of this name ([versions.X.sources.NAME] in the recipe)"),
    "replace": Flag("store under the next build number", "replace", None, "a different wheel under a file name the wheelhouse holds: store it with the next build number, yank the old"),
    "no_verify": Flag("skip the post-build tests", "no-verify", None, "skip the post-build test suite (the static audit still runs)"),
    "allow_arch_mismatch": Flag("GPU tests on an uncovered GPU", "allow-arch-mismatch", None, "run GPU tests even on a GPU the wheel does not cover"),
    "system_site_packages": Flag("test venv sees site-packages", "system-site-packages", None, "let the test venv see the interpreter's packages"),
    "find_links": Flag("extra wheel folder", "find-links", None, "another folder of wheels for the test venv (repeatable)"),
    "path": Flag("file or folder to act on", "path", None, "a wheel, a .so, an entry folder or a folder of them"),
    "driver": Flag("NVIDIA driver version", "driver", None, "judge for this NVIDIA driver version instead of the installed one, e.g. 570.86.10"),
    "index_url": Flag("another index's simple/ URL", "index-url", None, "the simple/ URL of another index (pypiserver, devpi, the farm's)"),
    "repository_url": Flag("upload URL", "repository-url", None, "upload URL of the remote index (pypiserver, devpi, ...)"),
    "sidecar_dir": Flag("sidecar folder", "sidecar-dir", None, "folder (a shared mount) that receives <wheel>.provenance.json and <wheel>.verify.json"),
    "base_url": Flag("our index's URL", "base-url", None, "URL our index is served at (default http://127.0.0.1:8080)"),
    "print_config": Flag("print client recipes", "print-config", None, "print pip and uv client recipes for this index instead"),
    "pin": Flag("exact pin", "pin", None, "NAME==VERSION to pin in the client recipes (repeatable; default: what the index holds)"),
    "rehash": Flag("re-hash wheels", "rehash", None, "re-hash every wheel instead of trusting entry.json"),
    "variants": Flag("variant wheels", "variants", None, "also publish each CUDA wheel as a PEP 825 variant wheel (uv --preview-features wheel-variants)"),
    "include_unverified": Flag("serve unverified wheels", "include-unverified", None, "also serve wheels whose post-build suite did not pass or did not run (marked on the page)"),
    "host": Flag("bind address", "host", None, "address to bind (default 127.0.0.1)"),
    "port": Flag("port", "port", None, "port (default 8080)"),
    "workers": Flag("server workers", "workers", None, "server worker processes (default 1)"),
    "json": Flag("JSON output", "json", None, "print JSON instead of a table"),
    "verbose": Flag("show commands", "verbose", "v", "also show each command and its output (the build log always has them)"),
}

#: What ``-h``/``--help`` look like when invoke hands them to a task as a positional value.
HELP_WORDS = ("--help", "-h")


class Command(Task):
    """An invoke task whose flags come from :data:`FLAGS`, and whose ``--help`` works before its positional.

    invoke 3.0.3 gives ``--help`` to a task's missing positional argument as its value
    (pyinvoke/invoke#982, open; the parser checks "positional still missing" before the core
    ``--help``), so ``invoke build --help`` used to build a recipe named "--help".  A positional
    can hold no such value here: when it does, the task prints its help instead of running.
    """

    def arg_opts(self, name: str, default: Any, taken_names: set[str]) -> dict[str, Any]:
        opts = super().arg_opts(name, default, taken_names)
        flag = FLAGS.get(name)
        if flag is None:
            raise ValueError(f"task {self.name}: parameter {name!r} is not in wheelforge.cli.vocabulary.FLAGS; add it there (and to the README's table)")
        opts["names"] = [flag.long] + ([flag.short] if flag.short else [])
        return opts

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        given = [kwargs.get(p) for p in self.positional] + list(args[1:])
        if any(isinstance(v, str) and v in HELP_WORDS for v in given):
            print_task_help(self)
            return None
        return super().__call__(*args, **kwargs)


def print_task_help(task: Task) -> None:
    """What ``invoke --help <task>`` prints, through invoke's own ``Program``."""
    from invoke import Program

    from wheelforge.cli.tasks import ns

    name = next(n for n in ns.task_names if ns[n].body is task.body)  # the loader hands over copies of the tasks
    binary = "wheelforge" if Path(sys.argv[0]).name == "wheelforge" else "inv[oke]"
    Program(namespace=ns, binary=binary).run([binary, "--help", name], exit=False)

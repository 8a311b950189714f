"""Console-script shims of a wheel that wheelforge's ``cmake`` kind built (standard library only).

``pip`` writes one script per command, ``from <package>._launch import <attr>``; the attribute
comes from ``__getattr__`` below, which reads ``_programs.PROGRAMS``:

* a program: ``os.execv`` of ``<package>/bin/<program>`` with the same arguments.  The program
  finds the wheel's libraries through its ``$ORIGIN/../lib`` RPATH, so no ``LD_LIBRARY_PATH``.
* a Python script of the source tree: its imports are checked first, so a missing torch (never a
  dependency: installing this wheel must not replace a custom torch) or a missing optional
  dependency is one line on stderr and exit status 1, not a traceback.  Then the script runs
  as ``__main__`` with its own folder first on ``sys.path``, as ``python script.py`` would.
"""

from __future__ import annotations

import importlib.util
import os
import runpy
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

HERE = Path(__file__).resolve().parent


def _table() -> dict:
    from ._programs import DIST, PROGRAMS

    return {"dist": DIST, "programs": PROGRAMS}


def _fail(line: str) -> NoReturn:
    print(line, file=sys.stderr)
    raise SystemExit(1)


def _run_program(entry: dict) -> NoReturn:
    path = HERE / entry["file"]
    if not os.access(path, os.X_OK):
        _fail(f"{entry['command']}: {path} is missing or not executable; reinstall the wheel")
    os.execv(str(path), [str(path), *sys.argv[1:]])


def _missing(modules: list[str]) -> list[str]:
    out = []
    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            out.append(name)
    return out


def _run_python(entry: dict, dist: str) -> None:
    command = entry["command"]
    if entry.get("needs_torch") and _missing(["torch"]):
        _fail(f"{command} needs torch; install the torch you use (it is not a dependency so it never replaces yours)")
    missing = _missing(entry.get("imports", []))
    if missing:
        extra = f"[{entry['extra']}]" if entry.get("extra") else ""
        _fail(f"{command} needs {', '.join(missing)}: pip install '{dist}{extra}'")
    script = HERE / entry["file"]
    for folder in reversed(entry.get("path", [])):
        sys.path.insert(0, str(HERE / folder))
    sys.argv[0] = str(script)
    runpy.run_path(str(script), run_name="__main__")


def _launcher(entry: dict, dist: str) -> Callable[[], int]:
    def main() -> int:
        if entry["kind"] == "program":
            _run_program(entry)
        _run_python(entry, dist)
        return 0

    main.__name__ = entry["command"].replace("-", "_")
    return main


def __getattr__(name: str) -> Callable[[], int]:
    table = _table()
    entry = table["programs"].get(name)
    if entry is None:
        raise AttributeError(f"module {__name__!r} has no console script {name!r}")
    return _launcher(entry, table["dist"])

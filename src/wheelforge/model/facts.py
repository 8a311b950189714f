"""What a machine's toolchain is, as plain data: the planner reads these, never the machine.

:mod:`wheelforge.host.toolchain` fills them by probing; tests build them by hand.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

#: Newest GCC major each CUDA release accepts, for toolkits not present here.
#: For a toolkit that is present we read its own crt/host_config.h instead.
#: 12.8: GCC 14 (NVIDIA's CUDA 12.8 installation guide; team notes). 13.0: GCC 15 (read from 13.0's host_config.h).
#: 12.4-12.6: GCC 13; 12.0-12.3: GCC 12 (installation guides of those releases).
KNOWN_GCC_LIMITS = {"12.0": 12, "12.1": 12, "12.2": 12, "12.3": 12, "12.4": 13, "12.5": 13, "12.6": 13, "12.8": 14, "12.9": 14, "13.0": 15}


@dataclass(frozen=True)
class Tool:
    path: str
    version: str


@dataclass(frozen=True)
class Gpu:
    name: str
    capability: str  # "9.0"


@dataclass(frozen=True)
class ToolchainFacts:
    cuda_version: str | None = None
    nvcc_version: str | None = None  # nvcc's full version ("13.0.88"): patch releases can change code
    cuda_home: str | None = None
    nvcc: str | None = None
    nvcc_archs: tuple[str, ...] = ()  # "sm_120", "compute_120", ...
    host_compiler: Tool | None = None
    host_compiler_limit: int | None = None  # newest GCC major the toolkit accepts
    cmake: Tool | None = None
    ninja: Tool | None = None
    ccache: Tool | None = None
    sccache: Tool | None = None
    driver_version: str | None = None
    gpus: tuple[Gpu, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ToolchainFacts:
        d = dict(data)
        for name in ("host_compiler", "cmake", "ninja", "ccache", "sccache"):
            if d.get(name):
                d[name] = Tool(**d[name])
        d["gpus"] = tuple(Gpu(**g) for g in d.get("gpus", ()))
        d["nvcc_archs"] = tuple(d.get("nvcc_archs", ()))
        d["notes"] = tuple(d.get("notes", ()))
        return cls(**d)

    @property
    def host_compiler_ok(self) -> bool | None:
        if self.host_compiler is None or self.host_compiler_limit is None:
            return None
        return int(self.host_compiler.version.split(".")[0]) <= self.host_compiler_limit


def requested_facts(requested: str) -> ToolchainFacts:
    """Facts for a toolkit that is not installed, used by ``plan --cuda 12.8`` on machines without it."""
    return ToolchainFacts(cuda_version=requested, host_compiler_limit=KNOWN_GCC_LIMITS.get(requested),
                          notes=(f"CUDA {requested} is not installed here: planned from the request only",))

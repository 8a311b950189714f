"""CUDA architecture spellings: parse what users write, emit what build systems want.

One canonical form (:class:`CudaArch`) is translated into ``TORCH_CUDA_ARCH_LIST``
for torch and torch extensions, and ``CMAKE_CUDA_ARCHITECTURES`` for CMake builds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from packaging.version import Version

from wheelforge.model.errors import ArchError

_ARCH = re.compile(
    r"""^(?:sm_|compute_)?           # optional nvcc prefix
        (?:(?P<major>\d{1,2})\.(?P<minor>\d) # 12.0
          |(?P<num>\d{2,3}))          # or 120
        (?P<suffix>[af]?)
        (?P<ptx>\+ptx)?$""",
    re.IGNORECASE | re.VERBOSE,
)

#: The first CUDA release that can build SASS for each compute capability major.minor.
#: Source: NVIDIA CUDA toolkit release notes (sm_100/sm_120 arrived in 12.8; sm_103/sm_121 in 12.9; sm_110 in 13.0).
_MIN_CUDA = {
    (5, 0): "6.0", (6, 0): "8.0", (7, 0): "9.0", (7, 5): "10.0", (8, 0): "11.0", (8, 6): "11.1",
    (8, 7): "11.4", (8, 9): "11.8", (9, 0): "11.8", (10, 0): "12.8", (10, 1): "12.8", (10, 3): "12.9",
    (11, 0): "13.0", (12, 0): "12.8", (12, 1): "12.9",
}
#: Arch-specific ("a") targets exist from sm_90a (CUDA 12.0); family ("f") targets from CUDA 12.9 for CC >= 10.0.
_MIN_CUDA_A = "12.0"
_MIN_CUDA_F = "12.9"
#: CUDA 13.0 dropped SASS for Maxwell, Pascal and Volta (sm_50 .. sm_72).
_MAX_CUDA_MAJOR_FOR_OLD = {(5,): 12, (6,): 12, (7, 0): 12, (7, 2): 12}


@dataclass(frozen=True, order=True)
class CudaArch:
    major: int
    minor: int
    suffix: str = ""  # "", "a" (this exact CC only) or "f" (the CC's family)
    ptx: bool = False  # also embed PTX so newer GPUs can JIT

    @property
    def number(self) -> str:
        """``120a``: the form nvcc and CMake use."""
        return f"{self.major}{self.minor}{self.suffix}"

    @property
    def sm(self) -> str:
        return f"sm_{self.number}"

    @property
    def dotted(self) -> str:
        return f"{self.major}.{self.minor}{self.suffix}"

    def __str__(self) -> str:
        return self.dotted + ("+PTX" if self.ptx else "")


def parse_arch(text: str) -> CudaArch:
    token = text.strip()
    m = _ARCH.match(token)
    if not m:
        raise ArchError(
            "arch.unknown",
            f"cannot read CUDA architecture {text!r}",
            "write it as 12.0, 120, sm_120, 12.0a or 12.0+PTX",
        )
    if m["num"]:
        num = m["num"]
        major, minor = int(num[:-1]), int(num[-1])
    else:
        major, minor = int(m["major"]), int(m["minor"])
    arch = CudaArch(major, minor, m["suffix"].lower(), bool(m["ptx"]))
    if (major, minor) not in _MIN_CUDA:
        raise ArchError(
            "arch.unknown",
            f"{text!r} is not a known compute capability ({major}.{minor})",
            "known: " + ", ".join(f"{a}.{b}" for a, b in sorted(_MIN_CUDA)),
        )
    if arch.suffix == "a" and major < 9:
        raise ArchError("arch.no-specific", f"{text!r}: arch-specific 'a' targets start at 9.0", "drop the 'a' suffix")
    if arch.suffix == "f" and major < 10:
        raise ArchError("arch.no-family", f"{text!r}: family 'f' targets start at 10.0", "drop the 'f' suffix")
    return arch


def parse_arch_list(text: str | None) -> tuple[CudaArch, ...]:
    """``"9.0;12.0"``, ``"90,120"``, ``"sm_90 sm_120"`` ... -> sorted, de-duplicated archs."""
    if text is None or not text.strip():
        raise ArchError("arch.empty", "the architecture list is empty", "pass --arch 12.0 (or WHEELFORGE_ARCH=12.0)")
    if text.strip().lower() == "cpu":
        return ()  # a CPU-only build: no CUDA archs (recipes read {cuda_enabled} = OFF)
    tokens = [t for t in re.split(r"[;,\s]+", text.strip()) if t]
    archs = sorted({parse_arch(t) for t in tokens})
    # nvcc refuses a plain sm_X together with its family sm_Xf (team notes: "nvcc refuses sm_120 and sm_120f together").
    for a in archs:
        if a.suffix == "f" and any(b.suffix == "" and (b.major, b.minor) == (a.major, a.minor) for b in archs):
            raise ArchError(
                "arch.conflict", f"{a.major}.{a.minor} and {a.dotted} cannot be built together",
                f"keep only {a.dotted} (covers the {a.major}.x family) or {a.major}.{a.minor}",
            )
    return tuple(archs)


def check_toolkit_supports(archs: tuple[CudaArch, ...], cuda_version: str) -> None:
    """Raise when the CUDA toolkit cannot emit code for an arch."""
    cuda = Version(cuda_version)
    for a in archs:
        need = Version(_MIN_CUDA[(a.major, a.minor)])
        if a.suffix == "a":
            need = max(need, Version(_MIN_CUDA_A))
        if a.suffix == "f":
            need = max(need, Version(_MIN_CUDA_F))
        if cuda < need:
            raise ArchError(
                "arch.toolkit-too-old",
                f"sm_{a.number} needs CUDA >= {need}, but the toolkit is CUDA {cuda_version}",
                f"install CUDA >= {need} or drop {a.dotted} from --arch",
            )
        old_cap = next((v for k, v in _MAX_CUDA_MAJOR_FOR_OLD.items() if (a.major, a.minor)[: len(k)] == k), None)
        if old_cap is not None and cuda.major > old_cap:
            raise ArchError(
                "arch.toolkit-too-new",
                f"CUDA {cuda_version} cannot build sm_{a.number} (removed in CUDA {old_cap + 1}.0)",
                f"use CUDA {old_cap}.x for {a.dotted} or drop it from --arch",
            )


def torch_cuda_arch_list(archs: tuple[CudaArch, ...]) -> str:
    """``TORCH_CUDA_ARCH_LIST``: ``9.0;12.0``, with ``+PTX`` and ``a`` kept."""
    return ";".join(str(a) for a in archs)


def cmake_cuda_architectures(archs: tuple[CudaArch, ...], rewrite: str = "none") -> str:
    """``CMAKE_CUDA_ARCHITECTURES``: SASS only (``-real``) unless +PTX was asked for.

    ``rewrite="family-a"`` mirrors llama.cpp, whose ggml-cuda CMake turns a plain 12x into
    12xa (its FP4 MMA paths need the arch-specific target); we write the 12xa form ourselves
    so the plan shows what will be built.
    """
    out = []
    for a in archs:
        number = a.number
        if rewrite == "family-a" and a.major == 12 and a.suffix == "":
            number += "a"
        out.append(number if a.ptx else f"{number}-real")
    return ";".join(out)


def expected_sass(archs: tuple[CudaArch, ...]) -> list[str]:
    """Arch numbers the static audit must find SASS for (``120`` is satisfied by ``sm_120a``)."""
    return [a.number for a in archs]


def arch_label(archs: tuple[CudaArch, ...]) -> str:
    """``sm90.sm120``: each arch as built, ``a``/``f`` kept (``sm120a``), ``ptx`` added when PTX is embedded (``sm120ptx``)."""
    return ".".join(f"sm{a.number}" + ("ptx" if a.ptx else "") for a in archs)


def local_label(cuda_version: str, archs: tuple[CudaArch, ...], torch: str | None = None) -> str:
    """The PEP 440 local label naming every compatibility choice: ``cu128.sm120``, ``cu128.sm120ptx``,
    ``cu128.sm90.sm120a.torch2.15.0`` (the torch an extension is bound to, public version)."""
    if not archs:
        return "cpu"  # no CUDA code at all: nothing to say about a toolkit
    v = Version(cuda_version)
    label = f"cu{v.major}{v.minor}.{arch_label(archs)}"
    if torch:
        label += f".torch{Version(torch).public}"
    return label

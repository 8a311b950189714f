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

#: The first CUDA release that can build SASS for each compute capability, for when no nvcc can be
#: asked (``plan --cuda 12.8`` on a machine without 12.8).  With a toolkit, what its
#: ``nvcc --list-gpu-arch`` lists decides (:func:`check_toolkit_supports`).
#: Sources: NVIDIA's CUDA toolkit release notes (sm_100/sm_120 arrived in 12.8; sm_103/sm_121 in 12.9;
#: sm_110 in 13.0) and CMake 4.4's Modules/Internal/CMakeCUDAArchitecturesAll.cmake (the pip "cmake" 4.4.5
#: wheel): 52/53 in its CUDA 7.0 base set, 61/62 from 8.0, 72 from 9.0, 87 from 11.4, 89/90 from 11.8,
#: 101 in 12.8-12.9 only, 88 and 110 first in its CUDA 13.0 set.  nvcc 13.0.88 here lists compute_75 80 86
#: 87 88 89 90 100 110 103 120 121.  Capabilities per GPU: NVIDIA's "CUDA GPU Compute Capability" table.
_MIN_CUDA = {
    (5, 0): "6.0", (5, 2): "7.0", (5, 3): "7.0", (6, 0): "8.0", (6, 1): "8.0", (6, 2): "8.0",
    (7, 0): "9.0", (7, 2): "9.0", (7, 5): "10.0", (8, 0): "11.0", (8, 6): "11.1", (8, 7): "11.4",
    (8, 8): "13.0", (8, 9): "11.8", (9, 0): "11.8", (10, 0): "12.8", (10, 1): "12.8", (10, 3): "12.9",
    (11, 0): "13.0", (12, 0): "12.8", (12, 1): "12.9",
}
#: Arch-specific ("a") targets exist from sm_90a (CUDA 12.0); family ("f") targets from CUDA 12.9 for CC >= 10.0.
_MIN_CUDA_A = "12.0"
_MIN_CUDA_F = "12.9"
#: The last CUDA major that builds these: 13.0 dropped Maxwell, Pascal and Volta (sm_50 .. sm_72) and
#: renamed sm_101 to sm_110 (CMake's CUDA 13.0 set starts at 75 and has no 101).
_MAX_CUDA_MAJOR_FOR_OLD = {(5,): 12, (6,): 12, (7, 0): 12, (7, 2): 12, (10, 1): 12}


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
    if major < 3:  # "12" reads as 1.2 (Tesla, built by no CUDA of the last decade): surely a typo of 12.0
        raise ArchError("arch.unknown", f"{text!r} reads as compute capability {major}.{minor}, which no current CUDA builds",
                        "write major.minor (12.0) or the digits of both (120; 86 is 8.6)")
    arch = CudaArch(major, minor, m["suffix"].lower(), bool(m["ptx"]))
    # Whether a toolkit knows this capability is checked against that toolkit (check_toolkit_supports):
    # a new nvcc lists capabilities no table here has yet.
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


def known_capabilities() -> list[str]:
    """The table's capabilities, ``5.0`` ... ``12.1``: what can be checked without a toolkit."""
    return [f"{a}.{b}" for a, b in sorted(_MIN_CUDA)]


def listed_capabilities(nvcc_archs: tuple[str, ...] | list[str]) -> list[str]:
    """``compute_120`` ... from ``nvcc --list-gpu-arch`` as ``12.0`` ..., in nvcc's order."""
    return [f"{n[:-1]}.{n[-1]}" for n in (a.removeprefix("compute_") for a in nvcc_archs if a.startswith("compute_")) if n.isdigit()]


def check_toolkit_supports(archs: tuple[CudaArch, ...], cuda_version: str, nvcc_archs: tuple[str, ...] | list[str] = ()) -> None:
    """Raise when CUDA ``cuda_version`` cannot emit code for an arch.

    ``nvcc_archs`` is that toolkit's ``nvcc --list-gpu-arch`` (:class:`~wheelforge.model.facts.ToolchainFacts`):
    every capability it lists is accepted.  Without it (the toolkit is not installed here) the table decides.
    """
    cuda = Version(cuda_version)
    listed = listed_capabilities(nvcc_archs)
    for a in archs:
        cc = f"{a.major}.{a.minor}"
        if not listed or cc not in listed:
            _refuse(a, cuda_version, listed)
        need = Version(_MIN_CUDA_A) if a.suffix == "a" else Version(_MIN_CUDA_F) if a.suffix == "f" else None
        if need is not None and cuda < need:
            raise ArchError(
                "arch.toolkit-too-old",
                f"sm_{a.number} needs CUDA >= {need}, but the toolkit is CUDA {cuda_version}",
                f"install CUDA >= {need} or drop {a.dotted} from --arch",
            )


def _refuse(a: CudaArch, cuda_version: str, listed: list[str]) -> None:
    """Why CUDA ``cuda_version`` cannot build ``a``, from the table; nothing when the table says it can
    and no nvcc list says otherwise."""
    cuda = Version(cuda_version)
    first = _MIN_CUDA.get((a.major, a.minor))
    if first is not None and cuda < Version(first):
        raise ArchError(
            "arch.toolkit-too-old",
            f"sm_{a.number} needs CUDA >= {first}, but the toolkit is CUDA {cuda_version}",
            f"install CUDA >= {first} or drop {a.dotted} from --arch",
        )
    old_cap = next((v for k, v in _MAX_CUDA_MAJOR_FOR_OLD.items() if (a.major, a.minor)[: len(k)] == k), None)
    if old_cap is not None and cuda.major > old_cap:
        raise ArchError(
            "arch.toolkit-too-new",
            f"CUDA {cuda_version} cannot build sm_{a.number} (removed in CUDA {old_cap + 1}.0)",
            f"use CUDA {old_cap}.x for {a.dotted} or drop it from --arch",
        )
    if listed:
        raise ArchError(
            "arch.unknown",
            f"{a.dotted!r} is not a compute capability CUDA {cuda_version}'s nvcc lists",
            f"nvcc --list-gpu-arch lists: {', '.join(listed)}",
        )
    if first is None:
        raise ArchError(
            "arch.unknown",
            f"{a.dotted!r} is not a known compute capability ({a.major}.{a.minor}), and no CUDA {cuda_version} toolkit is here to ask",
            "known: " + ", ".join(known_capabilities()) + "; with the toolkit installed, whatever its nvcc --list-gpu-arch lists",
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

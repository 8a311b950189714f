#!/usr/bin/env python3
"""`invoke doctor` on the GPU machine, checked against reality (issue 18).

Run from the repository root on the GPU machine, in one call (no install: wheelforge comes from src/,
its dependencies from .device/pylib or .device/whl as for bench/device.py):

    python3 bench/device/doctor_gpu.py            # OUT=<folder> receives the log and the JSON files

1. doctor over the machine's own python environment (the interpreter running this script): its
   GPUs from nvidia-smi, timed (first run, then 3 runs), and once more through the CLI
   (`python3 -m invoke doctor --json`) where invoke is importable;
2. doctor --arch 12.0 over the same environment: the verdicts for a Blackwell consumer card;
3. cuobjdump --list-elf --list-ptx over the same device files, one after the other (budget
   --cuobjdump-budget s), against the fatbin reader over the files it finished, listings compared
   (bench/figures/doctor.py; the figure-10 row goes to doctor_rows-<date>.json for bench/run.py --merge);
4. one real kernel for each package doctor judged for this GPU (torch matmul + conv: cuBLAS and cuDNN,
   torchvision nms, torchaudio forced_align, a triton kernel, a jax matmul, a cupy kernel and a CUB sum,
   an NCCL all_reduce, xformers attention where installed), each in its own interpreter: a package judged
   native or ptx-jit must pass, no-kernel must fail.

The summary table comes last; the full log is $OUT/doctor-<date>.log.  Keeps under ~3 minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
STARTED = time.monotonic()
DATE = datetime.now(timezone.utc).strftime("%Y-%m-%d")
OUT = Path(os.environ.get("OUT") or REPO / "bench" / "raw" / "doctor-gpu")
LOG_LINES: list[str] = []


def log(line: str = "") -> None:
    print(line, flush=True)
    LOG_LINES.append(line)


def setup_paths() -> list[str]:
    """src/ and .device/pylib on sys.path (pylib filled from .device/whl once, as bench/device.py does)."""
    pylib, whl = REPO / ".device" / "pylib", REPO / ".device" / "whl"
    if whl.is_dir() and not pylib.is_dir():
        wheels = sorted(str(p) for p in whl.glob("*.whl"))
        if wheels:
            subprocess.run([sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "--target", str(pylib), *wheels],
                           capture_output=True, text=True, check=False)
    paths = [str(REPO / "src"), str(REPO)] + ([str(pylib)] if pylib.is_dir() else [])
    sys.path[:0] = paths
    return paths


# --------------------------------------------------------------------------- kernels

#: each test prints "CHECK <name> ok <detail>" or "CHECK <name> FAIL <why>" per library it exercises
CHECK = r'''
def check(name, fn):
    try:
        print(f"CHECK {name} ok {fn()}", flush=True)
    except Exception as exc:  # one library failing must not hide the others
        print(f"CHECK {name} FAIL {type(exc).__name__}: {str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ''}", flush=True)
'''

KERNELS: dict[str, str] = {
    "torch": CHECK + r'''
import torch, torch.nn.functional as F
d = torch.device("cuda")

def own():        # a kernel of libtorch_cuda itself
    x = torch.randn(4096, device=d)
    s = torch.softmax(x, 0).sum().item()
    assert abs(s - 1) < 1e-3, s
    return f"{torch.__version__} CUDA {torch.version.cuda} on {torch.cuda.get_device_name(0)}"

def cublas():
    a, b = torch.randn(512, 512, device=d), torch.randn(512, 512, device=d)
    err = ((a @ b).cpu() - a.cpu() @ b.cpu()).abs().max().item()
    assert err < 0.1, err
    return f"matmul err {err:.1e}"

def cudnn():
    x, w = torch.randn(2, 3, 32, 32, device=d), torch.randn(8, 3, 3, 3, device=d)
    err = (F.conv2d(x, w).cpu() - F.conv2d(x.cpu(), w.cpu())).abs().max().item()
    assert torch.backends.cudnn.is_available() and err < 0.1, err
    return f"conv2d err {err:.1e}, cuDNN {torch.backends.cudnn.version()}"

def cufft():
    x = torch.randn(4096, device=d)
    err = (torch.fft.rfft(x).cpu() - torch.fft.rfft(x.cpu())).abs().max().item()
    assert err < 1e-2, err
    return f"rfft err {err:.1e}"

def cusolver():
    a = torch.randn(64, 64, device=d, dtype=torch.float64)
    a = a @ a.T + 64 * torch.eye(64, device=d, dtype=torch.float64)
    w = torch.linalg.eigvalsh(a)
    err = (w.cpu() - torch.linalg.eigvalsh(a.cpu())).abs().max().item()
    assert err < 1e-6, err
    return f"eigvalsh err {err:.1e}"

def cusparse():
    dense = torch.randn(64, 64, device=d) * (torch.rand(64, 64, device=d) < 0.1)
    b = torch.randn(64, 8, device=d)
    err = ((dense.to_sparse_csr() @ b).cpu() - dense.cpu() @ b.cpu()).abs().max().item()
    assert err < 1e-3, err
    return f"CSR @ dense err {err:.1e}"

for name, fn in [("torch", own), ("cublas", cublas), ("cudnn", cudnn), ("cufft", cufft), ("cusolver", cusolver),
                 ("cusparse", cusparse)]:
    check(name, lambda fn=fn: (fn(), torch.cuda.synchronize())[0])
''',
    "torchvision": CHECK + r'''
import torch, torchvision
boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], dtype=torch.float32, device="cuda")
keep = torchvision.ops.nms(boxes, torch.tensor([0.9, 0.8, 0.7], device="cuda"), 0.5)
assert keep.tolist() == [0, 2], keep
print("OK", torchvision.__version__, "nms", keep.tolist())
''',
    "torchaudio": CHECK + r'''
import torch, torchaudio, torchaudio.functional as AF
try:
    log_probs = torch.randn(1, 50, 5, device="cuda").log_softmax(-1)
    ali, _ = AF.forced_align(log_probs, torch.tensor([[1, 2, 3]], dtype=torch.int32, device="cuda"), blank=0)
    torch.cuda.synchronize()
    what = f"forced_align {tuple(ali.shape)}"
except (AttributeError, RuntimeError) as exc:  # forced_align gone or deprecated: lfilter's CUDA IIR loop
    x = torch.randn(2, 1000, device="cuda")
    y = AF.lfilter(x, torch.tensor([1.0, -0.5], device="cuda"), torch.tensor([0.5, 0.5], device="cuda"))
    torch.cuda.synchronize()
    what = f"lfilter {tuple(y.shape)} (forced_align: {type(exc).__name__}: {str(exc)[:80]})"
print("OK", torchaudio.__version__, what)
''',
    "triton": CHECK + r'''
import torch, triton, triton.language as tl

@triton.jit
def add(x_ptr, y_ptr, o_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    tl.store(o_ptr + offs, tl.load(x_ptr + offs, mask=m) + tl.load(y_ptr + offs, mask=m), mask=m)

x, y = torch.rand(4096, device="cuda"), torch.rand(4096, device="cuda")
o = torch.empty_like(x)
add[(4,)](x, y, o, 4096, BLOCK=1024)
assert torch.allclose(o, x + y)
print("OK", triton.__version__)
''',
    "jax": CHECK + r'''
import jax, jax.numpy as jnp, numpy as np
dev = jax.devices()[0]
assert dev.platform == "gpu", jax.devices()
x = jnp.arange(1024.0, dtype=jnp.float32).reshape(32, 32) / 1024
y = (x @ x).block_until_ready()
assert np.allclose(np.asarray(y), np.asarray(x) @ np.asarray(x), rtol=1e-2, atol=1e-2)
print("OK", jax.__version__, dev.device_kind)
''',
    "cupy": CHECK + r'''
import cupy as cp

def own():        # NVRTC-compiled elementwise kernel and a reduction
    k = cp.ElementwiseKernel("float32 x, float32 y", "float32 z", "z = x * y + 1", "wf_fma")
    a, b = cp.arange(1000, dtype=cp.float32), cp.full(1000, 2, dtype=cp.float32)
    assert float(k(a, b)[10]) == 21.0 and float(cp.sum(a)) == 499500.0
    return f"{cp.__version__} on {cp.cuda.runtime.getDeviceProperties(0)['name'].decode()}"

def curand():
    x = cp.random.default_rng(0).random(100000, dtype=cp.float32) if hasattr(cp.random, "default_rng") else cp.random.rand(100000)
    m = float(x.mean())
    assert 0.45 < m < 0.55, m
    return f"mean {m:.3f}"

check("cupy", lambda: (own(), cp.cuda.runtime.deviceSynchronize())[0])
check("curand", lambda: (curand(), cp.cuda.runtime.deviceSynchronize())[0])
''',
    "nccl": CHECK + r'''
import os, torch, torch.distributed as dist
os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT="29533")
dist.init_process_group("nccl", rank=0, world_size=1, device_id=torch.device("cuda:0"))
t = torch.full((1024,), 2.0, device="cuda")
dist.all_reduce(t)
torch.cuda.synchronize()
assert t[0].item() == 2.0
print("OK NCCL", ".".join(map(str, torch.cuda.nccl.version())))
dist.destroy_process_group()
''',
    "xformers": CHECK + r'''
import torch, xformers, xformers.ops as xops
q = torch.randn(1, 128, 4, 64, device="cuda", dtype=torch.float16)
o = xops.memory_efficient_attention(q, q, q)
torch.cuda.synchronize()
print("OK", xformers.__version__, tuple(o.shape))
''',
}


#: distribution name (prefix) -> (test, check in it, how the check covers the package)
COVERAGE = (
    ("torchvision", "torchvision", "torchvision", "torchvision.ops.nms"),
    ("torchaudio", "torchaudio", "torchaudio", "torchaudio forced_align (or lfilter)"),
    ("triton", "triton", "triton", "a triton vector-add kernel"),
    ("xformers", "xformers", "xformers", "memory_efficient_attention"),
    ("torch", "torch", "torch", "torch.softmax (libtorch_cuda)"),
    ("jax", "jax", "jax", "a jax matmul"),
    ("jaxlib", "jax", "jax", "a jax matmul"),
    ("jax-cuda", "jax", "jax", "a jax matmul"),
    ("cupy-cuda", "cupy", "cupy", "an NVRTC elementwise kernel and a reduction"),
    ("nvidia-cublas", "torch", "cublas", "torch matmul (cuBLAS)"),
    ("nvidia-cudnn", "torch", "cudnn", "torch conv2d (cuDNN)"),
    ("nvidia-cufft", "torch", "cufft", "torch.fft.rfft (cuFFT)"),
    ("nvidia-cusolver", "torch", "cusolver", "torch.linalg.eigvalsh (cuSOLVER)"),
    ("nvidia-cusparse", "torch", "cusparse", "CSR @ dense in torch (cuSPARSE)"),
    ("nvidia-curand", "cupy", "curand", "cupy.random (cuRAND)"),
    ("nvidia-nccl", "nccl", "nccl", "NCCL all_reduce through torch.distributed"),
)


def kernel_for(name: str) -> tuple[str, str, str] | None:
    """(test, check, how) that exercises a distribution, or None.  Families (nvidia-cublas-cu12, jax-cuda13-plugin,
    cupy-cuda13x) match by prefix, single projects (torch, triton) by name."""
    if name.startswith("nvidia-cusparselt"):
        return None  # cuSPARSELt is not cuSPARSE
    for prefix, test, check, how in COVERAGE:
        if name == prefix or (prefix.startswith(("nvidia-", "jax-cuda", "cupy-cuda")) and name.startswith(prefix)):
            return test, check, how
    return None


_CHECK_LINE = re.compile(r"^CHECK (\S+) (ok|FAIL) ?(.*)$")


def run_kernel(python: str, test: str, timeout: float) -> dict:
    """Run one test in its own interpreter: {"seconds", "checks": {check: {"passed", "detail"}}, "output_tail"}.
    ``passed`` is None when the test's module is not installed (nothing was tried)."""
    with tempfile.TemporaryDirectory(prefix="wf-doctor-kernel-") as tmp:
        script = Path(tmp, f"k_{test}.py")  # a file, not -c: triton reads its kernels' source
        script.write_text(KERNELS[test])
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the machine's own packages only
        env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
        t0 = time.perf_counter()
        try:
            proc = subprocess.run([python, str(script)], cwd=tmp, capture_output=True, text=True, timeout=timeout,
                                  env=env, check=False)
        except subprocess.TimeoutExpired:
            return {"test": test, "seconds": timeout, "output_tail": [],
                    "checks": {test: {"passed": False, "detail": f"timed out after {timeout:.0f} s"}}}
        out = (proc.stdout + proc.stderr).strip().splitlines()
        result = {"test": test, "seconds": round(time.perf_counter() - t0, 1), "output_tail": out[-15:], "checks": {}}
        missing = next((line for line in out if line.startswith("ModuleNotFoundError")), None)
        if proc.returncode != 0 and missing:  # the test's own module is not installed: nothing was tried
            result["checks"][test] = {"passed": None, "detail": f"not run: {missing}"}
            return result
        for line in out:
            m = _CHECK_LINE.match(line)
            if m:
                result["checks"][m.group(1)] = {"passed": m.group(2) == "ok", "detail": m.group(3)[:200]}
        if not result["checks"]:
            last = next((line for line in reversed(out) if line.startswith("OK")), out[-1] if out else "no output")
            ok = proc.returncode == 0 and last.startswith("OK")
            result["checks"][test] = {"passed": ok, "detail": last[:200]}
        return result


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--python", default=sys.executable, help="interpreter whose environment to judge (default: this one)")
    ap.add_argument("--cuobjdump-budget", type=float, default=75.0,
                    help="seconds of cuobjdump at most (default 75; less when the deadline is near)")
    ap.add_argument("--kernel-timeout", type=float, default=60.0, help="seconds per kernel test (default 60)")
    ap.add_argument("--deadline", type=float, default=170.0,
                    help="kernels after this many seconds are skipped, cuobjdump is cut to fit (default 170)")
    args = ap.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    paths = setup_paths()
    try:
        import elftools  # noqa: F401
        import packaging  # noqa: F401

        from bench.figures.doctor import attach_comparison, compare_with_cuobjdump, find_cuobjdump, measure_env
        from wheelforge.verify.doctor import diagnose
    except ImportError as exc:
        log(f"error: cannot import wheelforge's dependencies ({exc}); bring pyelftools and packaging wheels in "
            ".device/whl (python3 -m pip download pyelftools packaging -d .device/whl) and carry .device")
        return 3
    log(f"doctor on the GPU machine, {datetime.now(timezone.utc).isoformat(timespec='seconds')}")
    log(f"python {args.python}; wheelforge from {paths[0]}")
    smi = subprocess.run(["nvidia-smi", "--query-gpu=name,compute_cap,driver_version,memory.total", "--format=csv,noheader"],
                         capture_output=True, text=True, check=False) if shutil.which("nvidia-smi") else None
    log(f"nvidia-smi: {smi.stdout.strip() if smi else 'not found'}")

    # 1: doctor over the environment (GPUs found), timed; one run on an emptied page cache where root may
    row, report = measure_env(args.python, runs=3, cold=True, compare=False, label=" (GPU machine)",
                              command="python3 bench/device/doctor_gpu.py  (doctor: wheelforge.verify.doctor.diagnose, 3 runs)")
    gpu_name = report["gpus"][0]["name"] if report["gpus"] else "no GPU"
    row.update(date=datetime.now(timezone.utc).isoformat(timespec="seconds"),
               machine={"name": f"GPU machine ({gpu_name}, {os.cpu_count()} cores)", "gpu": gpu_name, "cores": os.cpu_count()})
    (OUT / f"doctor-gpu-{DATE}.json").write_text(json.dumps(report, indent=1))
    e = row["extra"]
    cold = f"{e['cold_run_s']:.2f} s" if isinstance(e["cold_run_s"], float) else e["cold_run_s"]
    log(f"doctor: first run {e['first_run_s']:.2f} s, then {', '.join(f'{s:.2f}' for s in row['samples'])} s "
        f"(median {row['value']:.2f} s); on an emptied page cache: {cold}; {e['distributions']} distributions, "
        f"{e['elf_files']} ELF files ({e['elf_bytes'] / 1e9:.2f} GB), {e['device_files']} device files "
        f"({e['device_bytes'] / 1e9:.2f} GB)")
    log("verdicts for the GPUs found:")
    for p in report["packages"]:
        log(f"  {p['name']:<28} {p['version']:<22} {p['verdict']:<15} {json.dumps(p['verdicts'])} CUDA {p['cuda']['version'] if p['cuda'] else '-'}")
        for prob in p["problems"]:
            log(f"      {prob['verdict']}: {prob['message']}")
        for fix in p["fixes"]:
            log(f"      fix: {fix}")
        for n in p["notes"]:
            log(f"      note: {n}")
    for n in report["notes"]:
        log(f"  note: {n}")
    log(f"driver: {json.dumps(report['driver'])}; torch: {json.dumps(report['torch'])}")

    # 1b: the same through the CLI, as a user runs it
    cli = None
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths))
    try:
        import invoke  # noqa: F401

        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "invoke", "doctor", "--python", args.python, "--json"], cwd=REPO,
                              capture_output=True, text=True, env=env, timeout=120, check=False)
        cli = {"seconds": round(time.perf_counter() - t0, 2), "rc": proc.returncode,
               "failing": json.loads(proc.stdout)["summary"]["failing"] if proc.stdout.strip() else None,
               "stderr": proc.stderr.strip()[-300:]}
        log(f"CLI: python3 -m invoke doctor --json: {cli['seconds']} s wall (interpreter start included), exit {cli['rc']}"
            + (f", {cli['stderr']}" if cli["stderr"] else ""))
        table = subprocess.run([sys.executable, "-m", "invoke", "doctor", "--python", args.python], cwd=REPO,
                               capture_output=True, text=True, env={**env, "COLUMNS": "120"}, timeout=120, check=False)
        log("CLI table (python3 -m invoke doctor):")
        for line in (table.stdout + table.stderr).rstrip().splitlines():
            log("  | " + line)
    except ImportError:
        log("CLI: invoke is not importable here (bring its wheel in .device/whl); the library call above is the same code")

    # 2: --arch 12.0
    r120 = diagnose(args.python, archs=["12.0"]).to_json()
    (OUT / f"doctor-120-{DATE}.json").write_text(json.dumps(r120, indent=1))
    log(f"--arch 12.0: {len(r120['summary']['failing'])} of {len(r120['packages'])} CUDA packages would fail")
    for p in r120["packages"]:
        log(f"  {p['name']:<28} {p['verdict']:<15} " + "; ".join(x["message"] for x in p["problems"])[:300])

    # 4: kernels
    cc = report["gpus"][0]["capability"] if report["gpus"] else None
    plan: list[tuple[str, str, bool, str | None, str | None, str]] = []  # (package, verdict, fails, test, check, how)
    for p in report["packages"]:
        found = kernel_for(p["name"])
        verdict = p["verdicts"].get(cc, "-") if cc else "-"
        fails = p["verdict"] in ("no-kernel", "driver-too-old", "torch-mismatch")  # on this GPU or by another check
        if found and verdict != "host-only":
            plan.append((p["name"], verdict, fails, *found))
        elif p["binaries"]:
            plan.append((p["name"], verdict, fails, None, None, "no kernel test for it"))
    results: dict[str, dict] = {}
    for test in [t for t in KERNELS if any(row[3] == t for row in plan)]:
        if time.monotonic() - STARTED > args.deadline:
            results[test] = {"test": test, "checks": {}, "skipped": "past the deadline"}
            log(f"kernel {test}: skipped, past the {args.deadline:.0f} s deadline")
            continue
        results[test] = res = run_kernel(args.python, test, args.kernel_timeout)
        for name, c in res["checks"].items():
            state = {True: "pass", False: "FAIL", None: "not run"}[c["passed"]]
            log(f"kernel {test}/{name}: {state} ({res['seconds']} s for the test): {c['detail']}")
        if any(c["passed"] is False for c in res["checks"].values()):
            for line in res["output_tail"]:
                log(f"    {line}")
    rows = []
    for name, verdict, fails, test, check, how in plan:
        checks = results.get(test, {}).get("checks", {}) if test else {}
        c = checks.get(check) or checks.get(test)  # a test that did not start reports under its own name
        if c is None or c["passed"] is None or (check not in checks and c["passed"]):
            why = how if test is None else (c["detail"] if c else results.get(test, {}).get("skipped", "no result"))
            rows.append((name, verdict, "-", why, "not run"))
            continue
        expect_pass = verdict in ("native", "ptx-jit") and not fails
        shown = verdict + (" (fails)" if fails and verdict in ("native", "ptx-jit") else "")
        rows.append((name, shown, "pass" if c["passed"] else "FAIL", how, "agree" if c["passed"] == expect_pass else "DISAGREE"))
    (OUT / f"kernels-{DATE}.json").write_text(json.dumps({"gpu": cc, "tests": results, "rows": rows}, indent=1))

    # 3: cuobjdump over the same device files, in the time left
    cmp = None
    cuobjdump = find_cuobjdump()
    budget = max(15.0, min(args.cuobjdump_budget, args.deadline - (time.monotonic() - STARTED) - 5))
    if cuobjdump is None:
        log("cuobjdump: not found (PATH, /usr/local/cuda/bin, pip's nvidia-cuda-cuobjdump)")
    else:
        files = sorted({b["file"] for p in report["packages"] for b in p["binaries"]})
        cmp = compare_with_cuobjdump(files, cuobjdump, budget)
        attach_comparison(row, cmp, cuobjdump)
        stopped = f" (stopped at the {budget:.0f} s budget)" if cmp["stopped_at_budget"] else ""
        log(f"cuobjdump --list-elf --list-ptx ({cuobjdump}): {cmp['cuobjdump_s']:.1f} s for {cmp['files']} of {cmp['of']} "
            f"device files ({cmp['bytes'] / 1e9:.2f} GB){stopped}; fatbin reader over the same files {cmp['reader_s']:.2f} s; "
            f"{cmp['entries']} entries; listings equal: {cmp['equal']}" + (f"; differ: {cmp['differ']}" if cmp["differ"] else ""))
    (OUT / f"doctor_rows-{DATE}.json").write_text(json.dumps({"rows": [row]}, indent=1))

    # summary last
    log("")
    log(f"== summary: doctor on {gpu_name} (CC {cc}), {e['elf_files']} ELF files, {e['elf_bytes'] / 1e9:.2f} GB ==")
    log(f"doctor median {row['value']:.2f} s (first {e['first_run_s']:.2f} s)"
        + (f"; CLI {cli['seconds']} s exit {cli['rc']}" if cli else "")
        + (f"; cuobjdump {cmp['cuobjdump_s']:.1f} s over {cmp['files']}/{cmp['of']} device files vs reader {cmp['reader_s']:.2f} s,"
           f" listings equal {cmp['equal']}" if cmp else ""))
    log(f"{'package':<28} {'verdict ' + str(cc):<16} {'kernel':<7} {'check':<9} how")
    for name, verdict, outcome, how, agree in sorted(rows):
        log(f"{name:<28} {verdict:<16} {outcome:<7} {agree:<9} {how}")
    log("--arch 12.0: " + ", ".join(f"{p['name']}={p['verdict']}" for p in r120["packages"]))
    disagree = sum(1 for r in rows if r[4] == "DISAGREE")
    log(f"{disagree} disagreement(s) between doctor and the kernels; {time.monotonic() - STARTED:.0f} s in all")
    (OUT / f"doctor-{DATE}.log").write_text("\n".join(LOG_LINES) + "\n")
    return 1 if disagree else 0


if __name__ == "__main__":
    sys.exit(main())

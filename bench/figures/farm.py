"""Figure 9: the build farm's shared compiler cache (sccache over Redis), cold versus warm runner.

Two "runners" build the same CMake CUDA package, one after the other.  Nothing local is
shared: each has its own SCCACHE_DIR, sccache server port, build tree and output folder;
only the Redis server is common.  Both build at the same absolute path, as identically set
up CI runners do (``_work/<repo>``): sccache 0.16 keys nvcc's device-code steps on the
working directory and source path, so runners with different paths do not share objects
(see docs/farm.md).  The compile phase is the wall time of ``cmake --build``.

Measured by ``python3 bench/run.py --only farm``; ``tests/integration/test_farm_cache.py``
runs the same experiment once with asserts.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

COMMAND = "python3 bench/run.py --only farm"
KERNELS = 6


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _echo_run(argv: list[str], env: dict[str, str], cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    print("$ " + shlex.join(argv), flush=True)
    return subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)


class RedisServer:
    """``redis-server`` on loopback, in memory only (no RDB, no AOF), in its own folder."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisServer:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        argv = [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", str(self.workdir), "--protected-mode", "yes"]
        print("$ " + shlex.join(argv), flush=True)
        self.proc = subprocess.Popen(argv, stdout=open(self.workdir / "redis.log", "wb"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.1)
            if self.proc.poll() is not None:
                break
        self.stop()
        raise RuntimeError(f"redis-server did not answer on 127.0.0.1:{self.port}; see {self.workdir / 'redis.log'}")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def dbsize(self) -> int:
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(b"DBSIZE\r\n")
            return int(s.recv(64).strip().lstrip(b":"))

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def make_project(dest: Path, kernels: int = KERNELS, instances: int = 6) -> Path:
    """A CMake CUDA library: ``kernels`` translation units with templated kernels, plus one C++ file."""
    (dest / "src").mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(kernels):
        names.append(f"src/k{i}.cu")
        (dest / f"src/k{i}.cu").write_text(f"""// kernel unit {i}: enough template instances that device code generation dominates
template <int N, typename T>
__global__ void saxpy{i}(T a, const T* x, T* y, int n) {{
  int idx = blockIdx.x * blockDim.x + threadIdx.x;
  T acc = y[idx % n];
  #pragma unroll
  for (int k = 0; k < N; ++k) acc = acc * a + x[(idx + k * {i + 1}) % n];
  if (idx < n) y[idx] = acc;
}}
template <int N> void launch{i}(float a, const float* x, float* y, int n) {{ saxpy{i}<N, float><<<(n + 255) / 256, 256>>>(a, x, y, n); }}
template <int N> void launchd{i}(double a, const double* x, double* y, int n) {{ saxpy{i}<N, double><<<(n + 255) / 256, 256>>>(a, x, y, n); }}
""" + "".join(f"template void launch{i}<{n}>(float, const float*, float*, int);\n"
              f"template void launchd{i}<{n}>(double, const double*, double*, int);\n" for n in (16, 32, 64, 96, 128, 160)[:instances]))
    (dest / "src/host.cpp").write_text('#include <cstdio>\nextern "C" int farm_demo_version() { return 1; }\n')
    names.append("src/host.cpp")
    (dest / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.26)\nproject(farm_demo LANGUAGES CXX CUDA)\n"
        f"add_library(farm_demo SHARED {' '.join(names)})\n")
    return dest


def sccache_stats(env: dict[str, str]) -> dict[str, Any]:
    out = _echo_run(["sccache", "--show-stats", "--stats-format=json"], env)
    stats = json.loads(out.stdout)["stats"]

    def total(section: str) -> int:
        return sum(int(v) for v in stats.get(section, {}).get("counts", {}).values())

    return {"hits": total("cache_hits"), "misses": total("cache_misses"), "requests": int(stats.get("compile_requests", 0)),
            "location": out.stdout and json.loads(out.stdout).get("cache_location", "")}


def run_runner(runner_dir: Path, work: Path, source: Path, redis_url: str, jobs: int = 2) -> dict[str, Any]:
    """One runner's build of ``source`` in ``work`` (its workspace); local state under ``runner_dir``."""
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(source, work / "src")
    runner_dir.mkdir(parents=True, exist_ok=True)
    sccache = shutil.which("sccache")
    nvcc = shutil.which("nvcc") or "/usr/local/cuda/bin/nvcc"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(runner_dir), "LANG": "C.UTF-8",
        "SCCACHE_DIR": str(runner_dir / "sccache"), "SCCACHE_SERVER_PORT": str(free_port()),
        "SCCACHE_REDIS_ENDPOINT": redis_url, "SCCACHE_IDLE_TIMEOUT": "0",
        "SCCACHE_LOG": "", "SCCACHE_ERROR_LOG": str(runner_dir / "sccache.log"),
    }
    try:
        started = _echo_run([sccache, "--start-server"], env)
        if started.returncode != 0:
            raise RuntimeError(f"sccache --start-server failed: {started.stderr.strip()}")
        _echo_run([sccache, "--zero-stats"], env)
        t = time.monotonic()
        conf = _echo_run(["cmake", "-G", "Ninja", "-S", str(work / "src"), "-B", str(work / "build"),
                          "-DCMAKE_BUILD_TYPE=Release", "-DCMAKE_CUDA_ARCHITECTURES=120-real",
                          f"-DCMAKE_CUDA_COMPILER={nvcc}", f"-DCMAKE_CUDA_COMPILER_LAUNCHER={sccache}",
                          f"-DCMAKE_CXX_COMPILER_LAUNCHER={sccache}"], env)
        configure_s = time.monotonic() - t
        if conf.returncode != 0:
            raise RuntimeError(f"cmake configure failed:\n{conf.stdout[-2000:]}{conf.stderr[-2000:]}")
        t = time.monotonic()
        build = _echo_run(["cmake", "--build", str(work / "build"), "-j", str(jobs)], env)
        compile_s = time.monotonic() - t
        if build.returncode != 0:
            raise RuntimeError(f"cmake --build failed:\n{build.stdout[-2000:]}{build.stderr[-2000:]}")
        stats = sccache_stats(env)
    finally:
        _echo_run([sccache, "--stop-server"], env)
    lib = next((work / "build").glob("libfarm_demo.so"))
    stats.update(configure_seconds=round(configure_s, 3), compile_seconds=round(compile_s, 3),
                 library_bytes=lib.stat().st_size)
    stats["hit_rate"] = stats["hits"] / (stats["hits"] + stats["misses"]) if stats["hits"] + stats["misses"] else 0.0
    # The runner's workspace is its own: move it aside so the next runner starts from nothing.
    shutil.move(str(work), str(runner_dir / "workspace"))
    return stats


def two_runners(root: Path, redis_url: str, kernels: int = KERNELS, instances: int = 6) -> dict[str, Any]:
    """Runner A builds cold, then runner B (fresh local state) builds warm from Redis."""
    source = make_project(root / "package", kernels, instances)
    work = root / "_work" / "farm_demo"  # the path every runner's checkout has
    first = run_runner(root / "runner-a", work, source, redis_url)
    second = run_runner(root / "runner-b", work, source, redis_url)
    return {"first": first, "second": second,
            "speedup": first["compile_seconds"] / second["compile_seconds"] if second["compile_seconds"] else float("inf"),
            "hit_rate": second["hit_rate"]}


def measure(repeats: int = 2) -> list[dict[str, Any]]:
    cold, warm, rates, runs = [], [], [], []
    with tempfile.TemporaryDirectory(prefix="wheelforge-farm-bench-") as tmp:
        for i in range(repeats):
            root = Path(tmp) / f"rep{i}"
            redis = RedisServer(root / "redis").start()
            try:
                r = two_runners(root, redis.url)
            finally:
                redis.stop()
            cold.append(r["first"]["compile_seconds"])
            warm.append(r["second"]["compile_seconds"])
            rates.append(r["hit_rate"])
            runs.append(r)
    speedups = [c / w for c, w in zip(cold, warm, strict=True)]
    med = sorted(speedups)[len(speedups) // 2]
    extra = {"kernels": KERNELS, "second_runner_stats": runs[-1]["second"], "first_runner_stats": runs[-1]["first"],
             "cold_compile_s_median": sorted(cold)[len(cold) // 2], "warm_compile_s_median": sorted(warm)[len(warm) // 2],
             "note": "same absolute workspace path on both runners; separate SCCACHE_DIR, server port and build tree"}
    return [
        {"figure": "9", "name": "second-runner compile-phase speedup (sccache over Redis)", "value": round(med, 2), "unit": "x",
         "goal": {"op": ">=", "value": 5}, "samples": [round(s, 3) for s in speedups],
         "baseline": {"name": "first runner (cold)", "value": sorted(cold)[len(cold) // 2], "samples": cold},
         "extra": extra, "command": COMMAND},
        {"figure": "9", "name": "second-runner sccache hit rate", "value": round(100 * min(rates), 1), "unit": "%",
         "goal": {"op": ">=", "value": 90}, "samples": [round(100 * r, 1) for r in rates],
         "baseline": {"name": "first runner (cold)", "value": round(100 * min(x["first"]["hit_rate"] for x in runs), 1),
                      "samples": [round(100 * x["first"]["hit_rate"], 1) for x in runs]},
         "extra": {"requests": runs[-1]["second"]["requests"]}, "command": COMMAND},
    ]


if __name__ == "__main__":  # pragma: no cover
    print(json.dumps(measure(1), indent=2))

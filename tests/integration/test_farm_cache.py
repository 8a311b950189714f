"""Two farm runners share compiled objects through sccache's Redis backend (real redis-server, loopback).

Runner B has its own SCCACHE_DIR, sccache server port, build tree and output; only Redis is
shared.  Both build in the same absolute workspace path, as identically provisioned CI runners
do (sccache 0.16 keys nvcc's device steps on the path; docs/farm.md).  The experiment itself
lives in bench/figures/farm.py so the benchmark measures exactly what this test checks.
"""

import json
import shutil

import pytest

from bench.figures.farm import RedisServer, two_runners

pytestmark = pytest.mark.integration


@pytest.fixture
def redis(tmp_path):
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is missing: apt-get install redis-server")
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


def test_second_runner_hits_the_shared_cache(tmp_path, redis):
    assert shutil.which("sccache") and shutil.which("nvcc") or shutil.which("/usr/local/cuda/bin/nvcc")
    result = two_runners(tmp_path, redis.url, kernels=2, instances=2)
    first, second = result["first"], result["second"]
    assert first["location"].startswith("redis") and second["location"].startswith("redis")
    assert first["misses"] > 0 and first["hits"] == 0  # runner A started cold
    assert redis.dbsize() > 0  # ... and filled Redis
    assert second["hits"] + second["misses"] >= first["misses"]
    assert second["hit_rate"] >= 0.90, second
    assert second["compile_seconds"] < first["compile_seconds"], result
    record = {"hit_rate": round(result["hit_rate"], 4), "speedup": round(result["speedup"], 2),
              "cold_compile_s": first["compile_seconds"], "warm_compile_s": second["compile_seconds"],
              "requests": second["hits"] + second["misses"]}
    (tmp_path / "farm_cache.json").write_text(json.dumps(record, indent=2))
    print(f"farm cache: second runner hit rate {record['hit_rate']:.0%}, compile phase "
          f"{record['cold_compile_s']:.1f} s -> {record['warm_compile_s']:.1f} s ({record['speedup']:.1f}x); "
          f"recorded in {tmp_path / 'farm_cache.json'}")

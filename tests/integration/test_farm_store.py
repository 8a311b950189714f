"""One shared wheel store for many runners: one wheel per key, one file on the index, no debris after kill -9."""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]

# A runner process: builds demo-cuda into the shared wheelhouse with wheelforge's own pipeline.
RUNNER = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from wheelforge.build import pipeline
    from wheelforge.model.settings import resolve_settings
    wh, cache = sys.argv[1], sys.argv[2]
    s = resolve_settings({"cuda": "auto", "arch": "12.0", "wheelhouse": wh, "cache": cache, "compiler_cache": "none"},
                         env={}, pyproject={}, cwd=Path(wh).parent)
    r = pipeline.build(["demo-cuda"], settings=s, verify=False, no_isolation=True)[0]
    print("RESULT " + json.dumps({"key": r.key, "wheel": str(r.wheel), "noop": r.noop}), flush=True)
""")


def _runner(tmp_path, name, store):
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    argv = [sys.executable, "-c", RUNNER, str(store), str(tmp_path / f"cache-{name}")]
    print("$ python -c RUNNER " + " ".join(argv[3:]))
    return subprocess.Popen(argv, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def _result(proc, timeout=600):
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out[-3000:]
    line = next(ln for ln in out.splitlines() if ln.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def _entries(store):
    return sorted(p.name for p in (store / "entries").iterdir()) if (store / "entries").is_dir() else []


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def pypiserver(tmp_path):
    from passlib.apache import HtpasswdFile

    pkgs, htpasswd = tmp_path / "index-packages", tmp_path / "htpasswd"
    pkgs.mkdir()
    ht = HtpasswdFile(str(htpasswd), new=True)
    ht.set_password("farm", "s3cret")
    ht.save()
    port = _free_port()
    argv = [sys.executable, "-m", "pypiserver", "run", "-i", "127.0.0.1", "-p", str(port), "-P", str(htpasswd),
            "-a", "update", "--disable-fallback", str(pkgs)]
    print("$ " + " ".join(argv))
    proc = subprocess.Popen(argv, stdout=open(tmp_path / "pypiserver.log", "wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert proc.poll() is None, (tmp_path / "pypiserver.log").read_text()
            time.sleep(0.2)
    yield f"http://127.0.0.1:{port}", pkgs
    proc.terminate()
    proc.wait(timeout=10)


def test_two_runners_one_key_one_wheel_one_index_file(tmp_path, pypiserver):
    from wheelforge.farm import matrix as farm
    from wheelforge.model.errors import PublishError
    from wheelforge.serving import publish

    store = tmp_path / "store"
    a, b = _runner(tmp_path, "a", store), _runner(tmp_path, "b", store)
    ra, rb = _result(a), _result(b)
    assert ra["key"] == rb["key"] and ra["wheel"] == rb["wheel"]
    assert sorted([ra["noop"], rb["noop"]]) == [False, True]  # one built, the other found its wheel
    assert _entries(store) == [ra["key"]]
    assert len(list((store / "entries" / ra["key"]).glob("*.whl"))) == 1
    assert not list((store / "scratch").iterdir())

    url, pkgs = pypiserver
    env = {**os.environ, "TWINE_USERNAME": "farm", "TWINE_PASSWORD": "s3cret"}
    publish.publish([ra["wheel"]], url, env=env)
    with pytest.raises(PublishError) as err:  # the second runner's upload of the same key is refused
        publish.publish([rb["wheel"]], url, env=env)
    assert err.value.id == "publish.exists"
    assert [p.name for p in pkgs.iterdir()] == [Path(ra["wheel"]).name]

    files = farm.read_index(url + "/simple/", ["demo-cuda"])
    assert files["demo-cuda"] == [Path(ra["wheel"]).name]


def test_runner_killed_mid_build_leaves_nothing_to_trip_on(tmp_path):
    store = tmp_path / "store"
    victim = _runner(tmp_path, "victim", store)
    # Kill it once its build is under way (the scratch folder exists), or after a bounded wait.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and victim.poll() is None:
        if (store / "scratch").is_dir() and any((store / "scratch").iterdir()):
            time.sleep(2)
            break
        time.sleep(0.2)
    assert victim.poll() is None, "the runner finished before it could be killed"
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait(timeout=30)
    assert _entries(store) == []  # nothing promoted

    nxt = _runner(tmp_path, "next", store)
    r = _result(nxt)  # no stale lock blocks it (bounded by the communicate timeout)
    assert not r["noop"]
    assert _entries(store) == [r["key"]]
    assert not list((store / "scratch").iterdir())  # the victim's scratch was swept

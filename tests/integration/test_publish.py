"""publish against a real pypiserver with an htpasswd file on loopback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from index_support import LABEL, child_env, free_port, make_wheelhouse, wait_http  # noqa: E402

from wheelforge.model.errors import PublishError  # noqa: E402
from wheelforge.serving.publish import publish  # noqa: E402

pytestmark = pytest.mark.integration

WHEEL = f"demo_pkg-1.0.0+{LABEL}-py3-none-any.whl"


@pytest.fixture(scope="module")
def pypiserver(tmp_path_factory):
    from passlib.apache import HtpasswdFile

    root = tmp_path_factory.mktemp("pypiserver")
    packages = root / "packages"
    packages.mkdir()
    ht = HtpasswdFile(str(root / "htpasswd"), new=True)
    ht.set_password("alice", "s3cret")
    ht.save()
    port = free_port()
    cmd = [sys.executable, "-m", "pypiserver", "run", "-i", "127.0.0.1", "-p", str(port), "-P", str(root / "htpasswd"), "-a", "update", str(packages)]
    print("+", " ".join(cmd), flush=True)
    proc = subprocess.Popen(cmd, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_http(url, proc=proc)
        yield url, packages
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory):
    return make_wheelhouse(tmp_path_factory.mktemp("pub") / "wh")


def wheel_in(wh: Path) -> Path:
    return next((wh / "entries").glob(f"*/{WHEEL}"))


GOOD = {"TWINE_USERNAME": "alice", "TWINE_PASSWORD": "s3cret"}


def test_unauthenticated_upload_is_refused(pypiserver, wheelhouse):
    url, packages = pypiserver
    with pytest.raises(PublishError) as err:
        publish([wheel_in(wheelhouse)], url, env=child_env(WHEELFORGE_INDEX_USER="alice", WHEELFORGE_INDEX_PASSWORD="wrong"))
    assert err.value.id == "publish.auth"
    # And with no credentials at all, straight at the upload API:
    r = requests.post(url, data={":action": "file_upload", "name": "demo-pkg", "version": "1.0.0"}, files={"content": (WHEEL, wheel_in(wheelhouse).read_bytes())}, timeout=30)
    assert r.status_code in (401, 403)
    assert not (packages / WHEEL).exists()


def test_authenticated_upload_then_reupload_refused(pypiserver, wheelhouse, tmp_path):
    url, packages = pypiserver
    result = publish([wheel_in(wheelhouse)], url, sidecar_dir=tmp_path / "sidecars", env=child_env(**GOOD))
    assert result.uploaded == [WHEEL]
    assert (packages / WHEEL).read_bytes() == wheel_in(wheelhouse).read_bytes()
    assert sorted(p.name for p in (tmp_path / "sidecars").iterdir()) == [f"{WHEEL}.provenance.json", f"{WHEEL}.verify.json"]

    # Our check refuses before twine runs ...
    with pytest.raises(PublishError) as err:
        publish([wheel_in(wheelhouse)], url, env=child_env(**GOOD))
    assert err.value.id == "publish.exists"
    # ... and pypiserver (no --overwrite) refuses a direct twine upload too.
    cmd = [sys.executable, "-m", "twine", "upload", "--non-interactive", "--repository-url", url, str(wheel_in(wheelhouse))]
    out = subprocess.run(cmd, env=child_env(**GOOD), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # pypiserver 2.4 answers 400 ("already exists"), PyPI and devpi 409.
    assert out.returncode != 0 and ("400" in out.stdout or "409" in out.stdout or "Bad Request" in out.stdout), out.stdout
    assert (packages / WHEEL).read_bytes() == wheel_in(wheelhouse).read_bytes()


def test_a_whole_wheelhouse_is_checked_before_any_upload(pypiserver, wheelhouse):
    url, packages = pypiserver
    # demo-pkg 1.0.0 is already there (previous test or not, the check runs over all files first).
    if not (packages / WHEEL).exists():
        publish([wheel_in(wheelhouse)], url, env=child_env(**GOOD))
    with pytest.raises(PublishError) as err:
        publish([wheelhouse], url, env=child_env(**GOOD))
    assert err.value.id == "publish.exists"
    assert sorted(p.name for p in packages.iterdir()) == [WHEEL]

"""Gating at the command line, where users meet it: ``inspect`` fails without device code when archs are asked
for, and every bad input (damaged or hostile archives, a wheelhouse that is a file or unwritable, recipe
folders that are missing or unreadable) ends in two lines (``error[id]: ...`` and ``hint: ...``) and an exit
code, never a traceback.  Each case ran as the old output shown in its docstring before this was fixed."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from index_support import WheelSpec, make_wheel
from variant_support import cuda_wheel

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
NVCC = Path("/usr/local/cuda/bin/nvcc")
needs_toolkit = pytest.mark.skipif(not NVCC.exists(), reason="build plans need a CUDA toolkit (--cuda auto)")
not_as_root = pytest.mark.skipif(os.geteuid() == 0, reason="root reads and writes whatever the permissions say")


def invoke(*args: str, cache: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WHEELFORGE_")}
    if cache is not None:
        env["WHEELFORGE_CACHE"] = str(cache)
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=REPO, capture_output=True, text=True, timeout=300, env=env)


def two_lines(out: subprocess.CompletedProcess, error_id: str, code: int = 2) -> str:
    """The error's two lines (after any progress lines a build prints first); returns the message line."""
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    assert out.returncode == code, (out.returncode, out.stderr[-2000:])
    lines = out.stderr.strip().splitlines()
    assert lines[-2].startswith(f"error[{error_id}]: ") and lines[-1].startswith("hint: "), lines[-4:]
    return lines[-2]


# --------------------------------------------------------------------------- inspect


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("inspect")
    both = root / "both"
    pure = make_wheel(both, WheelSpec(name="pure-py", version="1.0"))
    cuda = cuda_wheel(both, "kern", "1.0+cu130.sm90.sm120", sass=(90, 120))
    (root / "empty").mkdir()
    return {"pure": pure, "cuda": cuda, "both": both, "empty": root / "empty"}


def test_inspect_pure_python_wheel_with_archs_fails(wheels: dict) -> None:
    """Old: ``PASS: 0 of 0 ELF files carry device code; SASS: none``, exit 0."""
    out = invoke("inspect", str(wheels["pure"]), "--arch", "9.0;12.0")
    line = two_lines(out, "audit.no-device-code", code=4)
    assert line == "error[audit.no-device-code]: pure_py-1.0-py3-none-any.whl: no ELF files, so no CUDA device code"
    assert "FAIL: 0 of 0 ELF files carry device code" in out.stdout


def test_inspect_empty_folder_with_archs_fails(wheels: dict) -> None:
    out = invoke("inspect", str(wheels["empty"]), "--arch", "9.0;12.0")
    assert two_lines(out, "audit.no-device-code", code=4) == "error[audit.no-device-code]: empty: no ELF files, so no CUDA device code"


def test_inspect_folder_of_wheels_judges_each_wheel(wheels: dict) -> None:
    """Old: the folder walk read no wheel at all: ``PASS: 0 of 0``, exit 0."""
    out = invoke("inspect", str(wheels["both"]), "--arch", "9.0;12.0")
    assert two_lines(out, "audit.no-device-code", code=4).startswith("error[audit.no-device-code]: pure_py-1.0-py3-none-any.whl")
    verdicts = [ln for ln in out.stdout.splitlines() if ln.startswith(("PASS", "FAIL"))]
    assert verdicts == ["PASS: 1 of 1 ELF files carry device code; SASS: sm_90, sm_120",
                        "FAIL: 0 of 0 ELF files carry device code; SASS: none"], out.stdout


def test_inspect_without_archs_asked_only_lists(wheels: dict) -> None:
    assert invoke("inspect", str(wheels["pure"])).returncode == 0
    out = invoke("inspect", str(wheels["cuda"]), "--arch", "9.0;12.0")
    assert out.returncode == 0, out.stderr


# --------------------------------------------------------------------------- archives: checked at fetch


def _tgz(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _zip(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members:
            zf.writestr(name, data)
    return buf.getvalue()


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A recipe folder whose recipes pin archives by file:// URL and sha256: the pins are right, the bytes bad."""
    root = tmp_path_factory.mktemp("sources")
    good = _tgz([("pkg-1.0/setup.py", b"# x\n"), ("pkg-1.0/big.bin", os.urandom(100_000))])
    archives = {
        "cut-early": ("pkg-1.0.tar.gz", good[:100]),  # within the first tar header: tarfile.is_tarfile raised EOFError
        "cut-half": ("pkg-1.0.tar.gz", good[: len(good) // 2]),
        "not-an-archive": ("pkg-1.0.tar.gz", os.urandom(5000).replace(b"\x1f\x8b", b"ab")),
        "dotdot": ("pkg-1.0.tar.gz", _tgz([("pkg-1.0/setup.py", b"# x\n"), ("pkg-1.0/../../evil.sh", b"echo pwned\n")])),
        "zip-absolute": ("pkg-1.0.zip", _zip([("pkg-1.0/setup.py", b"# x\n"), ("/tmp/wheelforge-evil.sh", b"echo pwned\n")])),
    }
    recipes = root / "recipes"
    (recipes / "tests").mkdir(parents=True)
    (recipes / "tests" / "test_pkg.py").write_text("def test_ok():\n    pass\n")
    shas = {}
    for name, (filename, data) in archives.items():
        path = root / "upstream" / name / filename
        path.parent.mkdir(parents=True)
        path.write_bytes(data)
        shas[name] = hashlib.sha256(data).hexdigest()
        (recipes / f"{name}.toml").write_text(
            f'name = "{name}"\nkind = "pep517"\nram_per_job_gb = 1\ntest_module = "tests/test_pkg.py"\n'
            f'default_version = "1.0"\n[env]\n[build]\n[versions."1.0"]\n'
            f'source = {{ type = "archive", url = "{path.as_uri()}", sha256 = "{shas[name]}" }}\n')
    return {"root": root, "recipes": recipes, "shas": shas, "cache": root / "cache"}


CASES = {  # recipe -> (error id, the message after "archive pkg-1.0.<ext>: ")
    "cut-early": ("extract.damaged", "damaged: it ends early (Compressed file ended before the end-of-stream marker was reached)"),
    "cut-half": ("extract.damaged", "damaged: it ends early (Compressed file ended before the end-of-stream marker was reached)"),
    "not-an-archive": ("extract.unknown-format", "not a tar or zip archive although its name says so"),
    "dotdot": ("extract.member-refused", "member 'pkg-1.0/../../evil.sh': refused (path contains '..')"),
    "zip-absolute": ("extract.member-refused", "member '/tmp/wheelforge-evil.sh': refused (absolute path)"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_fetch_refuses_bad_archives_and_caches_nothing(sources: dict, name: str) -> None:
    """Old: ``fetch`` cached all five (exit 0); ``build`` then met them at extraction (cut-early: an EOFError traceback)."""
    out = invoke("fetch", name, "--recipes-dir", str(sources["recipes"]), cache=sources["cache"])
    error_id, what = CASES[name]
    line = two_lines(out, error_id)
    assert what in line, line
    assert "nothing was cached" in out.stderr.strip().splitlines()[-1]
    assert not (sources["cache"] / "sources" / "sha256" / sources["shas"][name]).exists()
    assert not list((sources["cache"] / "sources" / "tmp").iterdir())
    assert not Path("/tmp/wheelforge-evil.sh").exists()


@needs_toolkit
def test_build_of_a_truncated_source_stops_at_fetch(sources: dict, tmp_path: Path) -> None:
    """Old: ``EOFError: Compressed file ended before the end-of-stream marker was reached`` (a traceback, exit 1)."""
    out = invoke("build", "cut-early", "--recipes-dir", str(sources["recipes"]), "--cuda", "auto",
                 "--wheelhouse", str(tmp_path / "wh"), cache=sources["cache"])
    assert "damaged: it ends early" in two_lines(out, "extract.damaged")


# --------------------------------------------------------------------------- wheelhouse and recipe folders


@needs_toolkit
@pytest.mark.parametrize("where", ["file", "below-a-file", "sys"])
def test_build_into_a_wheelhouse_that_cannot_be_one(tmp_path: Path, where: str) -> None:
    """Old: ``NotADirectoryError: [Errno 20] Not a directory: '.../entries'`` or ``PermissionError: [Errno 1]``
    tracebacks."""
    (tmp_path / "afile").write_text("x")
    wheelhouse = {"file": tmp_path / "afile", "below-a-file": tmp_path / "afile" / "wh", "sys": Path("/sys/wheelforge-test-wh")}[where]
    out = invoke("build", "demo-cuda", "--cuda", "auto", "--wheelhouse", str(wheelhouse), cache=tmp_path / "cache")
    if where == "file":
        assert two_lines(out, "wheelhouse.not-a-folder") == f"error[wheelhouse.not-a-folder]: wheelhouse {wheelhouse} is a file, not a folder"
    else:
        assert two_lines(out, "wheelhouse.unwritable").startswith(f"error[wheelhouse.unwritable]: cannot write the wheelhouse {wheelhouse}: ")


@pytest.mark.parametrize("task", [("index",), ("verify", "demo-cuda"), ("farm.status",)])
def test_other_tasks_name_a_wheelhouse_that_is_a_file(tmp_path: Path, task: tuple[str, ...]) -> None:
    (tmp_path / "afile").write_text("x")
    out = invoke(*task, "--wheelhouse", str(tmp_path / "afile"))
    assert two_lines(out, "wheelhouse.not-a-folder").endswith("is a file, not a folder")


@not_as_root
def test_index_into_a_read_only_wheelhouse(tmp_path: Path) -> None:
    from index_support import make_wheelhouse

    wh = make_wheelhouse(tmp_path / "wh")
    wh.chmod(0o555)
    try:
        out = invoke("index", "--wheelhouse", str(wh))
    finally:
        wh.chmod(0o755)
    assert two_lines(out, "index.unwritable").startswith(f"error[index.unwritable]: cannot write the index into {wh}")


@pytest.mark.parametrize("kind", ["file", "missing"])
def test_recipe_folder_that_is_not_one(tmp_path: Path, kind: str) -> None:
    """Old: silently ignored; ``plan demo-cuda`` planned the bundled recipe (exit 0)."""
    (tmp_path / "afile").write_text("x")
    folder = tmp_path / ("afile" if kind == "file" else "missing")
    out = invoke("plan", "demo-cuda", "--cuda", "12.8", "--recipes-dir", str(folder))
    what = "is not a folder" if kind == "file" else "does not exist"
    assert two_lines(out, "recipe.dir-missing") == (f"error[recipe.dir-missing]: recipe folder {folder} "
                                                    f"(--recipes-dir / [tool.wheelforge] recipes_dir) {what}")


@not_as_root
def test_unreadable_recipe_folder(tmp_path: Path) -> None:
    """Old: ``PermissionError: [Errno 13] Permission denied: '<folder>/demo-cuda.toml'`` (a traceback)."""
    folder = tmp_path / "recipes"
    folder.mkdir()
    folder.chmod(0)
    try:
        out = invoke("plan", "demo-cuda", "--cuda", "12.8", "--recipes-dir", str(folder))
    finally:
        folder.chmod(0o755)
    assert "Permission denied" in two_lines(out, "recipe.dir-unreadable")

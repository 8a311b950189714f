"""Helpers for tests of the real patches: pinned sdists from PyPI, git apply, wheel contents.

Only test code uses this module; the library's own patch machinery lives in
``wheelforge.sources.patches``.  Every command is echoed before it runs and gets its
environment passed explicitly.
"""

from __future__ import annotations

import hashlib
import io
import os
import shlex
import subprocess
import tarfile
import zipfile
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
PATCH_DIR = REPO / "patches"

#: Pins the real patches are made against (sha256 from PyPI's JSON simple API).
SDISTS = {
    "xformers": ("xformers-0.0.35.tar.gz", "f7fc183a58e4bf0e2ae339a18fb1b1d4a37854c0f2545b4f360fef001646ab76"),
    "llama-cpp-python": (
        "llama_cpp_python-0.3.36.tar.gz",
        "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e",
    ),
    "flash-attn": (
        "flash_attn-2.8.3.post2.tar.gz",
        "d0f9f0b08a986cdeadbffcf5ec8b3a8f514366c68ad1853d3ab061bc83cc340b",
    ),
}

_SIMPLE = "https://pypi.org/simple/{name}/"
_JSON = "application/vnd.pypi.simple.v1+json"


def run(cmd: Sequence[str], *, cwd: Path | None = None, env: Mapping[str, str] | None = None,
        timeout: float = 3600) -> subprocess.CompletedProcess[str]:
    """Echo and run a command; raise with its output tail when it fails."""
    print("+", shlex.join(str(c) for c in cmd), flush=True)
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=dict(env if env is not None else os.environ),
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-4000:]
        raise AssertionError(f"command failed ({proc.returncode}): {shlex.join(map(str, cmd))}\n{tail}")
    return proc


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def download_sdist(project: str, cache: Path) -> Path:
    """The pinned sdist of ``project`` from PyPI, checked against its sha256 (cached in ``cache``)."""
    filename, sha256 = SDISTS[project]
    target = cache / filename
    if target.is_file() and sha256_of(target) == sha256:
        return target
    cache.mkdir(parents=True, exist_ok=True)
    index = requests.get(_SIMPLE.format(name=project), headers={"Accept": _JSON}, timeout=60)
    index.raise_for_status()
    files = {f["filename"]: f for f in index.json()["files"]}
    entry = files[filename]
    assert entry["hashes"]["sha256"] == sha256, f"PyPI lists another sha256 for {filename}"
    part = target.with_name(target.name + ".part")
    print("+ GET", entry["url"], flush=True)
    with requests.get(entry["url"], stream=True, timeout=120) as resp:
        resp.raise_for_status()
        with part.open("wb") as out:
            for block in resp.iter_content(1 << 20):
                out.write(block)
    got = sha256_of(part)
    if got != sha256:
        part.unlink()
        raise AssertionError(f"{filename}: sha256 {got} does not match the pin {sha256}")
    os.replace(part, target)
    return target


def extract_sdist(archive: Path, dest: Path) -> Path:
    """Unpack an sdist into ``dest`` and return its single top folder (the source root)."""
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    (root,) = [p for p in dest.iterdir() if p.is_dir()]
    return root


def git_apply(source_root: Path, patch: Path) -> None:
    """``git apply --check`` then ``git apply`` (-p1), run from the source root."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    # The tmp tree is not a git work tree; make sure git does not walk up into one.
    env["GIT_CEILING_DIRECTORIES"] = str(source_root.parent)
    run(["git", "apply", "--check", "-p1", patch], cwd=source_root, env=env)
    run(["git", "apply", "-p1", patch], cwd=source_root, env=env)


def patch_header(patch: Path) -> str:
    """Text before the first ``diff --git`` line: the patch's why-and-where note."""
    text = patch.read_text()
    return text.split("diff --git", 1)[0]


def shared_libraries(wheel: Path) -> list[tuple[str, int]]:
    """(archive name, size) of every ELF shared library in a wheel (.so and versioned .so.N...)."""
    out = []
    with zipfile.ZipFile(wheel) as zf:
        for info in zf.infolist():
            base = info.filename.rsplit("/", 1)[-1]
            if ".so" in base and (base.endswith(".so") or ".so." in base):
                out.append((info.filename, info.file_size))
    return out


def library_copies(wheel: Path) -> Counter[str]:
    """How many copies of each library a wheel holds, keyed by ``libX`` (path and .so.N stripped)."""
    return Counter(name.rsplit("/", 1)[-1].split(".so", 1)[0] for name, _ in shared_libraries(wheel))


def elf_dynamic(data: bytes) -> tuple[str | None, list[str], list[str]]:
    """SONAME, NEEDED and RUNPATH/RPATH entries of a shared library's bytes, read apart from the code under test."""
    from elftools.elf.dynamic import DynamicSection
    from elftools.elf.elffile import ELFFile

    soname, needed, runpath = None, [], []
    for section in ELFFile(io.BytesIO(data)).iter_sections():
        if isinstance(section, DynamicSection):
            for tag in section.iter_tags():
                if tag.entry.d_tag == "DT_SONAME":
                    soname = tag.soname
                elif tag.entry.d_tag == "DT_NEEDED":
                    needed.append(tag.needed)
                elif tag.entry.d_tag in ("DT_RUNPATH", "DT_RPATH"):
                    runpath += (tag.runpath if tag.entry.d_tag == "DT_RUNPATH" else tag.rpath).split(":")
    return soname, needed, runpath

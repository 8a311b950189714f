"""Builders for the source/patch tests: real git repositories, archives and recipes in tmp_path."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import tarfile
import textwrap
import zipfile
from pathlib import Path

GIT_ENV = {
    **{k: v for k, v in os.environ.items() if not k.startswith("GIT_")},
    "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
    "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid",
    "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1", "LC_ALL": "C",
}


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, env=GIT_ENV, check=True, capture_output=True, text=True).stdout.strip()


def make_repo(path: Path, files: dict[str, str], tag: str | None = None) -> str:
    """A git repository with one commit of ``files``; returns the commit."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    return commit(path, files, tag)


def commit(path: Path, files: dict[str, str], tag: str | None = None, message: str = "c") -> str:
    for rel, text in files.items():
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_text(text)
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", message)
    if tag:
        git(path, "tag", "-f", tag)
    return git(path, "rev-parse", "HEAD")


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tar_of(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]], mode: str = "w:gz") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, mode) as tf:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
            else:
                tf.addfile(info)
    return path


def file_member(name: str, data: bytes = b"x\n", mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.mode = mode
    return info, data


def special_member(name: str, type_: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = type_
    info.linkname = linkname
    info.mode = 0o644
    return info, None


def sdist_tar(path: Path, top: str, files: dict[str, str]) -> Path:
    """A well-formed sdist-like tarball with one top-level folder."""
    members: list[tuple[tarfile.TarInfo, bytes | None]] = []
    d = tarfile.TarInfo(top)
    d.type, d.mode = tarfile.DIRTYPE, 0o755
    members.append((d, None))
    for rel, text in files.items():
        members.append(file_member(f"{top}/{rel}", text.encode(), 0o755 if rel.endswith(".sh") else 0o644))
    return tar_of(path, members)


def zip_of(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            zf.writestr(zipfile.ZipInfo(name), data)
    return path


def write_recipe(root: Path, name: str, versions: dict[str, str], patches: list[tuple[str, str]] | None = None,
                 patch_files: dict[str, str] | None = None) -> Path:
    """recipes/<name>.toml (versions: version -> TOML source table body) and patches/<name>/*."""
    (root / "recipes").mkdir(parents=True, exist_ok=True)
    lines = [
        f'name = "{name}"', 'kind = "pep517"', "ram_per_job_gb = 1", f'test_module = "test_{name}.py"',
        f'default_version = "{next(iter(versions))}"', "[env]", "[build]",
    ]
    for file, when in patches or []:
        lines += ["[[patches]]", f'file = "{file}"', f'when = "{when}"']
    for ver, body in versions.items():
        lines += [f'[versions."{ver}".source]', textwrap.dedent(body).strip()]
    path = root / "recipes" / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n")
    pdir = root / "patches" / name
    pdir.mkdir(parents=True, exist_ok=True)
    for file, text in (patch_files or {}).items():
        (pdir / file).write_text(text)
    return path


def listing(folder: Path) -> set[str]:
    """Every path below ``folder`` (for before/after comparisons)."""
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}

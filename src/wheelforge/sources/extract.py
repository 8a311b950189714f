"""Safe extraction of source archives (.tar.gz/.tgz/.tar.bz2/.tar.xz/.zip).

Two layers: our own check of every member *before anything is written* (so the
error names the member and the reason), then tarfile's ``data`` filter as a
second net while writing.  Everything lands in a fresh ``*.partial`` scratch
folder that is renamed only when complete and removed on any failure, so a
build never sees a half-extracted tree.
"""

from __future__ import annotations

import os
import posixpath
import re
import shutil
import stat
import tarfile
import tempfile
import zipfile
from pathlib import Path

from wheelforge.model.errors import ExtractionError

_HINT = "do not build from this archive; check where it came from (its sha256 pin only proves it is the file you pinned)"
_DRIVE = re.compile(r"^[A-Za-z]:")


def _refuse(archive: Path, member: str, reason: str) -> ExtractionError:
    return ExtractionError("extract.member-refused", f"archive {archive.name}: member {member!r}: refused ({reason})", _HINT)


def _parts(name: str) -> list[str]:
    return [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]


def member_problem(name: str) -> str | None:
    """Why a member *name* may not be written (absolute, drive, ``..``), or None."""
    if not name or not _parts(name):
        return None
    if name.startswith(("/", "\\")) or _DRIVE.match(name):
        return "absolute path"
    if ".." in _parts(name):
        return "path contains '..'"
    return None


def link_problem(name: str, target: str, *, hard: bool) -> str | None:
    """Why a link member may not be written: its target must stay inside the tree."""
    kind = "hardlink" if hard else "symlink"
    if not target:
        return f"{kind} with an empty target"
    if target.startswith(("/", "\\")) or _DRIVE.match(target):
        return f"{kind} to absolute path {target!r}"
    # symlink targets are relative to the link's folder, hardlink targets to the archive root
    base = "" if hard else posixpath.dirname(name.replace("\\", "/"))
    resolved = posixpath.normpath(posixpath.join(base, target.replace("\\", "/")))
    if resolved == ".." or resolved.startswith("../"):
        return f"{kind} pointing outside the tree ({target!r})"
    return None


def check_tar_members(archive: Path, members: list[tarfile.TarInfo]) -> None:
    links: set[str] = set()
    for m in members:
        reason = member_problem(m.name)
        if reason is None:
            parts = _parts(m.name)
            # a member written *through* an earlier symlink can land anywhere the link points
            through = next(("/".join(parts[:i]) for i in range(1, len(parts)) if "/".join(parts[:i]) in links), None)
            if through is not None:
                reason = f"path goes through symlink {through!r}"
            elif m.issym() or m.islnk():
                reason = link_problem(m.name, m.linkname, hard=m.islnk())
                links.add("/".join(parts))
            elif m.ischr() or m.isblk():
                reason = "device file"
            elif m.isfifo():
                reason = "fifo"
            elif not (m.isreg() or m.isdir()):
                reason = f"unsupported member type {m.type!r}"
        if reason:
            raise _refuse(archive, m.name, reason)


def check_zip_members(archive: Path, infos: list[zipfile.ZipInfo]) -> None:
    for info in infos:
        reason = member_problem(info.filename)
        mode = info.external_attr >> 16
        if reason is None and stat.S_ISLNK(mode):
            reason = "symlink in a zip archive"
        elif reason is None and mode and stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
            reason = "device file or fifo"
        if reason:
            raise _refuse(archive, info.filename, reason)


def _single_top(folder: Path) -> Path:
    entries = list(folder.iterdir())
    if len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink():
        return entries[0]
    return folder


def extract_archive(archive: str | os.PathLike[str], dest_parent: str | os.PathLike[str]) -> Path:
    """Extract ``archive`` into a new folder under ``dest_parent``; return its single top-level dir.

    The folder is ``<dest_parent>/<archive name>-XXXX``; while extraction runs it
    is called ``...partial``.  Archives with several top-level entries return the
    folder itself.
    """
    archive, dest_parent = Path(archive), Path(dest_parent)
    dest_parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f"{archive.name}-", suffix=".partial", dir=dest_parent))
    try:
        if zipfile.is_zipfile(archive):
            _extract_zip(archive, scratch)
        elif tarfile.is_tarfile(archive):
            _extract_tar(archive, scratch)
        else:
            raise ExtractionError("extract.unknown-format", f"archive {archive}: not a tar or zip archive", "point the recipe at a .tar.gz, .tar.bz2, .tar.xz, .tgz or .zip file")
        final = scratch.with_name(scratch.name[: -len(".partial")])
        os.rename(scratch, final)  # mkdtemp names are unique, so the final name is free
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return _single_top(final)


def _extract_tar(archive: Path, scratch: Path) -> None:
    try:
        with tarfile.open(archive, "r:*") as tf:
            members = tf.getmembers()
            check_tar_members(archive, members)
            try:
                # extractall, not extract() per member: it sets folder modes last, so a read-only folder
                # in the archive cannot block the files that follow it
                tf.extractall(scratch, members=members, filter="data")
            except tarfile.FilterError as exc:
                raise _refuse(archive, exc.tarinfo.name, f"tarfile data filter: {exc}") from None
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ExtractionError("extract.failed", f"archive {archive.name}: cannot extract: {exc}", "the file is damaged; delete it from the cache and fetch again") from None


def _extract_zip(archive: Path, scratch: Path) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            check_zip_members(archive, infos)
            for info in infos:
                target = scratch.joinpath(*_parts(info.filename))
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "xb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                if (info.external_attr >> 16) & 0o111:
                    target.chmod(0o755)  # zipfile drops modes; build scripts need their x bit
    except (zipfile.BadZipFile, OSError) as exc:
        raise ExtractionError("extract.failed", f"archive {archive.name}: cannot extract: {exc}", "the file is damaged; delete it from the cache and fetch again") from None

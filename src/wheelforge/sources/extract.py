"""Safe reading and extraction of source archives (.tar.gz/.tgz/.tar.bz2/.tar.xz/.tar/.zip).

One check, :func:`check_archive`, is run where an archive enters (``fetch``, before the
download gets its name in the cache) and again before extraction: it tells the format from
the bytes (not the name), reads the archive to its end (a truncated one fails here, naming
where it ends) and applies the member rules to every member, so the error names the member
and the reason before anything is written.  Extraction then writes only the members that
passed, with tarfile's ``data`` filter as a second net, into a fresh ``*.partial`` scratch
folder that is renamed only when complete and removed on any failure, so a build never sees a
half-extracted tree.  Every failure is an :class:`~wheelforge.model.errors.ExtractionError`.
"""

from __future__ import annotations

import io
import lzma
import os
import posixpath
import re
import shutil
import stat
import struct
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from wheelforge.model.errors import ExtractionError

_HINT = "do not build from this archive; check where it came from (its sha256 pin only proves it is the file you pinned)"
_HINT_DAMAGED = ("the file matches its sha256 pin, so the pin names these bad bytes and fetching again gets the same: "
                 "check the recipe's url and sha256 against upstream")
_DRIVE = re.compile(r"^[A-Za-z]:")
_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".tar", ".zip")
#: Longest member name and name component we write (Linux PATH_MAX and NAME_MAX, in bytes).
MAX_NAME, MAX_COMPONENT = 4096, 255
#: What reading a damaged or hostile archive can raise, besides our own errors (tarfile, zipfile and the
#: codecs beneath them; struct/Unicode errors come from malformed headers, RuntimeError from encrypted zips).
_READ_ERRORS = (tarfile.TarError, zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, zlib.error, lzma.LZMAError,
                struct.error, UnicodeError, ValueError, NotImplementedError, RuntimeError, LookupError, OverflowError)


def _refuse(label: str, member: str, reason: str) -> ExtractionError:
    return ExtractionError("extract.member-refused", f"archive {label}: member {member!r}: refused ({reason})", _HINT)


def _damaged(label: str, what: str) -> ExtractionError:
    return ExtractionError("extract.damaged", f"archive {label}: damaged: {what}", _HINT_DAMAGED)


def _parts(name: str) -> list[str]:
    return [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]


def member_problem(name: str) -> str | None:
    """Why a member *name* may not be written (absolute, drive, ``..``, too long), or None."""
    if not name or not _parts(name):
        return None
    if name.startswith(("/", "\\")) or _DRIVE.match(name):
        return "absolute path"
    if ".." in _parts(name):
        return "path contains '..'"
    return _name_length_problem(name)


def _name_length_problem(name: str) -> str | None:
    encoded = name.encode("utf-8", "surrogateescape")
    if len(encoded) > MAX_NAME or any(len(p.encode("utf-8", "surrogateescape")) > MAX_COMPONENT for p in _parts(name)):
        return f"name longer than {MAX_COMPONENT} bytes per component or {MAX_NAME} in all"
    if "\x00" in name:
        return "NUL byte in the name"
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


def _through(parts: list[str], links: set[str]) -> str | None:
    """The first symlink member among the folders of ``parts``, if any."""
    return next(("/".join(parts[:i]) for i in range(1, len(parts)) if "/".join(parts[:i]) in links), None)


def _symlink_walk_problem(name: str, target: str, links: set[str]) -> str | None:
    """A symlink whose target passes through another symlink member can leave the tree although it looks
    inside when read as text ("sub/up" -> "..", then "esc" -> "sub/up/.."): refuse such targets."""
    here = _parts(posixpath.dirname(name.replace("\\", "/")))
    for piece in target.replace("\\", "/").split("/"):
        if piece in ("", "."):
            continue
        if piece == "..":
            if here:
                here.pop()
            continue
        here.append(piece)
        if "/".join(here) in links:
            return f"symlink whose target goes through symlink {'/'.join(here)!r}"
    return None


def check_tar_members(label: str | os.PathLike[str], members: list[tarfile.TarInfo]) -> None:
    """The member rules for a tar archive; raises naming the first member that breaks one."""
    label = os.path.basename(str(label))
    links = {"/".join(_parts(m.name)) for m in members if m.issym() or m.islnk()}
    seen: dict[str, bool] = {}  # normalized name -> is a directory
    regular: set[str] = set()
    for m in members:
        reason = member_problem(m.name)
        key = "/".join(_parts(m.name))
        if reason is None:
            through = _through(_parts(m.name), links)
            if through is not None:
                # a member written *through* a symlink can land anywhere the link points
                reason = f"path goes through symlink {through!r}"
            elif key in seen and not (seen[key] and m.isdir()):
                reason = "the archive holds this name twice"
            elif not key and not m.isdir():
                reason = "a file without a name"
            elif m.issym():
                reason = (link_problem(m.name, m.linkname, hard=False) or _name_length_problem(m.linkname)
                          or _symlink_walk_problem(m.name, m.linkname, links))
            elif m.islnk():
                reason = link_problem(m.name, m.linkname, hard=True) or member_problem(m.linkname)
                target = "/".join(_parts(m.linkname))
                if reason is None and (".." in m.linkname.replace("\\", "/").split("/") or target not in regular):
                    reason = f"hardlink to {m.linkname!r}, which is not a regular file earlier in the archive"
            elif m.ischr() or m.isblk():
                reason = "device file"
            elif m.isfifo():
                reason = "fifo"
            elif not (m.isreg() or m.isdir()):
                reason = f"unsupported member type {m.type!r}"
        if reason:
            raise _refuse(label, m.name, reason)
        seen[key] = m.isdir()
        if m.isreg():
            regular.add(key)


def check_zip_members(label: str | os.PathLike[str], infos: list[zipfile.ZipInfo]) -> None:
    """The member rules for a zip archive; raises naming the first member that breaks one."""
    label = os.path.basename(str(label))
    seen: dict[str, bool] = {}
    for info in infos:
        reason = member_problem(info.filename)
        mode = info.external_attr >> 16
        key = "/".join(_parts(info.filename))
        if reason is None and stat.S_ISLNK(mode):
            reason = "symlink in a zip archive"
        elif reason is None and mode and stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
            reason = "device file or fifo"
        elif reason is None and key in seen and not (seen[key] and _zip_dir(info)):
            reason = "the archive holds this name twice"
        elif reason is None and not key and not _zip_dir(info):
            reason = "a file without a name"
        if reason:
            raise _refuse(label, info.filename, reason)
        seen[key] = _zip_dir(info)


def _zip_dir(info: zipfile.ZipInfo) -> bool:
    return info.filename.endswith("/")  # ZipInfo.is_dir() raises IndexError on an empty name


def archive_format(archive: str | os.PathLike[str], label: str | None = None) -> str:
    """``"zip"`` or ``"tar"`` from the file's first bytes (a name can say anything)."""
    archive = Path(archive)
    label = label or archive.name
    try:
        with open(archive, "rb") as f:
            head = f.read(262)
    except OSError as exc:
        raise ExtractionError("extract.unreadable", f"archive {label}: cannot read it: {exc.strerror}",
                              "check that the file exists and is readable") from None
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if head[:2] == b"\x1f\x8b" or head[:3] == b"BZh" or head[:6] == b"\xfd7zXZ\x00" or head[257:262] == b"ustar":
        return "tar"
    shown = head[:8].hex(" ") or "nothing: the file is empty"
    if label.lower().endswith(_ARCHIVE_SUFFIXES):
        raise ExtractionError("extract.unknown-format", f"archive {label}: not a tar or zip archive although its name says so "
                                                        f"(it starts with {shown})", _HINT_DAMAGED)
    raise ExtractionError("extract.unknown-format", f"archive {label}: not a tar or zip archive (it starts with {shown})",
                          "point the recipe at a .tar.gz, .tar.bz2, .tar.xz, .tgz or .zip file")


def check_archive(archive: str | os.PathLike[str], *, label: str | None = None) -> str:
    """Read ``archive`` to its end and apply the member rules to every member; return its format.

    What ``fetch`` runs before a download is cached and extraction runs before it writes:
    an :class:`ExtractionError` names the refused member, or says where a damaged archive ends.
    """
    archive = Path(archive)
    label = label or archive.name
    fmt = archive_format(archive, label)
    try:
        if fmt == "zip":
            with zipfile.ZipFile(archive) as zf:
                infos = zf.infolist()
                check_zip_members(label, infos)
                bad = zf.testzip()  # reads every member: a truncated or corrupt one shows here
                if bad is not None:
                    raise _damaged(label, f"member {bad!r} fails its CRC check")
        else:
            with tarfile.open(archive, "r:*") as tf:
                members = tf.getmembers()
                check_tar_members(label, members)
                _read_to_end(tf, members, label)
    except ExtractionError:
        raise
    except _READ_ERRORS as exc:
        raise _damaged(label, _reason(exc)) from None
    return fmt


def _read_to_end(tf: tarfile.TarFile, members: list[tarfile.TarInfo], label: str) -> None:
    """Decompress the rest of the stream: ``getmembers`` stops at the last header, not at the end of its data."""
    f = tf.fileobj
    assert f is not None
    f.seek(tf.offset)
    while f.read(1 << 20):
        pass
    end = f.tell()
    if isinstance(f, (io.BufferedReader, io.FileIO)):  # an uncompressed tar: a seek may pass the end of the file
        end = min(end, os.fstat(f.fileno()).st_size)
    short = [m for m in members if m.isreg() and m.offset_data + m.size > end]
    if short:
        raise _damaged(label, f"it ends inside member {short[0].name!r}")


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, EOFError):
        return f"it ends early ({text})"
    return text if len(text) < 200 else text[:200] + "..."


def _single_top(folder: Path) -> Path:
    entries = list(folder.iterdir())
    if len(entries) == 1 and not entries[0].is_symlink() and entries[0].is_dir():
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
    fmt = check_archive(archive)
    scratch = Path(tempfile.mkdtemp(prefix=f"{archive.name}-", suffix=".partial", dir=dest_parent))
    try:
        if fmt == "zip":
            _extract_zip(archive, scratch)
        else:
            _extract_tar(archive, scratch)
        final = scratch.with_name(scratch.name[: -len(".partial")])
        os.rename(scratch, final)  # mkdtemp names are unique, so the final name is free
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return _single_top(final)


def _write_failed(archive: Path, scratch: Path, exc: BaseException) -> ExtractionError:
    return ExtractionError("extract.failed", f"archive {archive.name}: cannot extract into {scratch.parent}: {_reason(exc)}",
                           f"check the free space and permissions of {scratch.parent}")


@contextmanager
def _extraction_errors(archive: Path, scratch: Path) -> Iterator[None]:
    """Our own refusals pass through; an OSError is the scratch side failing, anything else a damaged archive."""
    try:
        yield
    except ExtractionError:
        raise
    except OSError as exc:
        raise _write_failed(archive, scratch, exc) from None
    except _READ_ERRORS as exc:
        raise _damaged(archive.name, _reason(exc)) from None


def _extract_tar(archive: Path, scratch: Path) -> None:
    with _extraction_errors(archive, scratch):
        with tarfile.open(archive, "r:*") as tf:
            members = tf.getmembers()
            check_tar_members(archive, members)  # the members written are the members checked
            try:
                # extractall, not extract() per member: it sets folder modes last, so a read-only folder
                # in the archive cannot block the files that follow it
                tf.extractall(scratch, members=members, filter="data")
            except tarfile.FilterError as exc:
                raise _refuse(archive.name, exc.tarinfo.name, f"tarfile data filter: {exc}") from None


def _extract_zip(archive: Path, scratch: Path) -> None:
    with _extraction_errors(archive, scratch):
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            check_zip_members(archive, infos)
            for info in infos:
                target = scratch.joinpath(*_parts(info.filename))
                if _zip_dir(info):
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "xb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                if (info.external_attr >> 16) & 0o111:
                    target.chmod(0o755)  # zipfile drops modes; build scripts need their x bit

"""Static audit: does every CUDA binary hold machine code (SASS) for the requested archs?

Works on a wheel (members read from the zip into memory, one at a time), a single
ELF file, or a directory tree.  Every ELF file is examined (shared objects and
executables alike); a file without ``.nv_fatbin`` is "host-only".

Rules, for each ELF file that carries device code and each requested arch:

* plain ``120``: satisfied by SASS ``sm_120``, ``sm_120a`` or ``sm_120f``
  (``a`` and ``f`` cubins both run on a CC 12.0 GPU).
* ``120a``: only ``sm_120a`` SASS (arch-specific instructions are the point).
* ``120f``: ``sm_120f`` or plain ``sm_120`` SASS: plain SASS for X.0 runs on every
  X.y GPU, so it covers the family; ``sm_120a`` does not (it runs on 12.0 only).
* PTX that could JIT for the arch (``compute_N`` with N <= the arch, same number
  for ``a``/``f`` PTX) does not satisfy it: that is reported as "PTX only".

Family cubins (``sm_120f``) are recognised from the fatbin header flag; cuobjdump
prints them as plain ``sm_120``.
"""

from __future__ import annotations

import json
import os
import re
import zipfile
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from wheelforge.binaries.fatbin import ELF_MAGIC, FatbinEntry, list_entries, list_entries_from_bytes
from wheelforge.model.errors import AuditError

PTX_ONLY_NOTE = "PTX only: users pay a JIT at start"


# --- requested archs ---------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Arch:
    """A requested architecture: ``sm`` number and ``""``/``"a"``/``"f"`` suffix."""

    sm: int
    suffix: str = ""

    @property
    def sass_name(self) -> str:
        return f"sm_{self.sm}{self.suffix}"

    @property
    def canonical(self) -> str:
        return f"{self.sm}{self.suffix}"


def parse_arch(text: str) -> Arch:
    """``"120"``, ``"120a"``, ``"sm_120f"`` or ``"12.0"`` -> :class:`Arch` (spellings as in :mod:`wheelforge.model.arch`)."""
    from wheelforge.model.arch import parse_arch as parse_cuda_arch

    a = parse_cuda_arch(str(text))
    return Arch(a.major * 10 + a.minor, a.suffix)


def sass_satisfies(entry: FatbinEntry, want: Arch) -> bool:
    if entry.kind != "sass" or entry.sm != want.sm:
        return False
    if want.suffix == "a":
        return entry.suffix == "a"
    if want.suffix == "f":
        return entry.suffix in ("", "f")
    return True


def ptx_covers(entry: FatbinEntry, want: Arch) -> bool:
    """Could this PTX be JIT-compiled for ``want``?"""
    if entry.kind != "ptx":
        return False
    if entry.suffix == "":
        return entry.sm <= want.sm
    return entry.sm == want.sm


# --- report ------------------------------------------------------------------------------------


@dataclass
class FileAudit:
    path: str  # as shown: relative to the wheel / directory, or the file given
    entries: tuple[FatbinEntry, ...]
    missing: tuple[str, ...] = ()  # requested SASS names with no SASS here
    ptx_only: tuple[str, ...] = ()  # subset of ``missing`` that PTX could JIT for
    size: int = 0

    @property
    def kind(self) -> str:
        return "device" if self.entries else "host-only"

    @property
    def archs_sass(self) -> tuple[str, ...]:
        return tuple(sorted({e.arch for e in self.entries if e.kind == "sass"}, key=_arch_sort_key))

    @property
    def archs_ptx(self) -> tuple[str, ...]:
        return tuple(sorted({e.arch for e in self.entries if e.kind == "ptx"}, key=_arch_sort_key))

    @property
    def ok(self) -> bool:
        return not self.missing

    def failures(self) -> list[str]:
        name = os.path.basename(self.path) or self.path
        has = ", ".join(self.archs_sass) or "no SASS at all"
        out = []
        for arch in self.missing:
            if arch in self.ptx_only:
                out.append(f"{name}: no SASS for {arch}, {PTX_ONLY_NOTE} (has {has})")
            else:
                out.append(f"{name}: no SASS for {arch} (has {has})")
        return out

    def to_dict(self) -> dict:
        counts = Counter((e.kind, e.arch) for e in self.entries)
        return {
            "path": self.path,
            "kind": self.kind,
            "size": self.size,
            "archs_sass": list(self.archs_sass),
            "archs_ptx": list(self.archs_ptx),
            "missing": list(self.missing),
            "ptx_only": list(self.ptx_only),
            "ok": self.ok,
            "counts": [{"kind": k, "arch": a, "count": n} for (k, a), n in sorted(counts.items())],
            "compressed": sum(e.compressed for e in self.entries),
            "entries": [e.to_dict() for e in self.entries],
        }


@dataclass
class AuditReport:
    target: str
    required_archs: tuple[str, ...]  # canonical: "90", "120a"
    files: list[FileAudit] = field(default_factory=list)
    require_device_code: bool = False

    @property
    def device_files(self) -> list[FileAudit]:
        return [f for f in self.files if f.kind == "device"]

    @property
    def archs_found(self) -> list[str]:
        return sorted({a for f in self.files for a in f.archs_sass}, key=_arch_sort_key)

    @property
    def archs_ptx(self) -> list[str]:
        return sorted({a for f in self.files for a in f.archs_ptx}, key=_arch_sort_key)

    def failures(self) -> list[str]:
        out = [msg for f in self.files for msg in f.failures()]
        if self.require_device_code and self.required_archs and not self.device_files:
            name = os.path.basename(self.target)
            out.append(f"{name}: no CUDA device code in any of {len(self.files)} ELF files" if self.files
                       else f"{name}: no ELF files, so no CUDA device code")
        return out

    @property
    def ok(self) -> bool:
        return not self.failures()

    def to_dict(self) -> dict:
        return {
            "target": self.target,
            "required_archs": list(self.required_archs),
            "ok": self.ok,
            "archs_found": self.archs_found,
            "archs_ptx": self.archs_ptx,
            "failures": self.failures(),
            "files": [f.to_dict() for f in self.files],
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)


def _arch_sort_key(name: str) -> tuple[int, str]:
    m = re.match(r"sm_(\d+)([a-z]*)", name)
    return (int(m.group(1)), m.group(2)) if m else (0, name)


def count_by_arch(entries: Iterable[FatbinEntry], kind: str) -> list[tuple[str, int]]:
    c = Counter(e.arch for e in entries if e.kind == kind)
    return sorted(c.items(), key=lambda kv: _arch_sort_key(kv[0]))


def judge(path: str, entries: Sequence[FatbinEntry], wanted: Sequence[Arch], size: int = 0) -> FileAudit:
    """Apply the rules to one file's entries."""
    missing: list[str] = []
    ptx_only: list[str] = []
    if entries:
        for want in wanted:
            if any(sass_satisfies(e, want) for e in entries):
                continue
            missing.append(want.sass_name)
            if any(ptx_covers(e, want) for e in entries):
                ptx_only.append(want.sass_name)
    return FileAudit(path=path, entries=tuple(entries), missing=tuple(missing), ptx_only=tuple(ptx_only), size=size)


# --- walking inputs ----------------------------------------------------------------------------


def _iter_wheel(path: Path) -> Iterator[tuple[str, list[FatbinEntry], int]]:
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise AuditError(
            "audit.bad-wheel", f"{path}: not a readable wheel/zip ({exc})", "rebuild the wheel or check the path"
        ) from exc
    # Wheels often hold the same library several times (libfoo.so, .so.0, .so.0.1): read each content once.
    seen: dict[tuple[int, int], list[FatbinEntry]] = {}
    with zf:
        for info in sorted(zf.infolist(), key=lambda i: i.filename):
            if info.is_dir() or info.file_size < 64:
                continue
            key = (info.CRC, info.file_size)
            if key not in seen:
                with zf.open(info) as fh:
                    if fh.read(4) != ELF_MAGIC:
                        continue
                # ELF needs random access; a member is read whole (one at a time).
                seen[key] = list_entries_from_bytes(zf.read(info), f"{path.name}!{info.filename}")
            yield info.filename, seen[key], info.file_size


def _iter_dir(root: Path) -> Iterator[tuple[str, list[FatbinEntry], int]]:
    seen: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for fname in sorted(filenames):
            p = Path(dirpath, fname)
            try:
                st = p.stat()
            except OSError:
                continue  # dangling symlink
            if not p.is_file() or (st.st_dev, st.st_ino) in seen:
                continue  # symlinked copies (libfoo.so -> libfoo.so.1) are audited once
            seen.add((st.st_dev, st.st_ino))
            with open(p, "rb") as fh:
                if fh.read(4) != ELF_MAGIC:
                    continue
            yield str(p.relative_to(root)), list_entries(p), st.st_size


def audit_path(
    path: str | os.PathLike[str], required_archs: Sequence[str] = (), *, require_device_code: bool = False
) -> AuditReport:
    """Audit a ``.whl``, a single ELF file or a directory against ``required_archs`` ("90", "120a", ...).

    ``require_device_code``: also fail when no ELF file carries device code at all
    (a CUDA wheel that came out CPU-only).
    """
    p = Path(path)
    wanted = [parse_arch(a) for a in required_archs]
    report = AuditReport(
        target=str(p), required_archs=tuple(w.canonical for w in wanted), require_device_code=require_device_code
    )
    if not p.exists():
        raise AuditError("audit.not-found", f"{p}: no such file or directory", "pass a .whl, a .so or a directory")
    if p.is_dir():
        items: Iterable[tuple[str, list[FatbinEntry], int]] = _iter_dir(p)
    elif zipfile.is_zipfile(p):
        items = _iter_wheel(p)
    else:
        with open(p, "rb") as fh:
            if fh.read(4) != ELF_MAGIC:
                raise AuditError(
                    "audit.not-elf",
                    f"{p}: neither a wheel, an ELF file nor a directory",
                    "pass a .whl, a .so or a directory",
                )
        items = [(str(p), list_entries(p), p.stat().st_size)]
    for rel, entries, size in items:
        report.files.append(judge(rel, entries, wanted, size))
    return report


def raise_for_failures(report: AuditReport) -> None:
    """Raise :class:`AuditError` naming every failing file; return quietly when the report is ok."""
    failures = report.failures()
    if not failures:
        return
    failing = [f for f in report.files if f.missing]
    ptx = bool(failing) and all(f.missing == f.ptx_only for f in failing)
    first = failures[0]
    if len(failures) > 1:
        more = "; ".join(failures[1:4]) + (" ..." if len(failures) > 4 else "")
        first = f"{first} (and {len(failures) - 1} more: {more})"
    wanted = ";".join(report.required_archs)
    if not failing:
        error_id = "audit.no-device-code"
        hint = "the build came out without CUDA; check that the toolkit was found and the arch list reached the build"
    elif ptx:
        error_id = "audit.ptx-only"
        hint = (
            f"compile {wanted} to SASS, not only PTX: code=sm_N in -gencode, "
            "'N-real' in CMAKE_CUDA_ARCHITECTURES, 'X.Y' (not only '+PTX') in TORCH_CUDA_ARCH_LIST"
        )
    else:
        error_id = "audit.missing-sass"
        hint = (
            f"rebuild with SASS for {wanted} (TORCH_CUDA_ARCH_LIST / CMAKE_CUDA_ARCHITECTURES / -gencode code=sm_N); "
            "`invoke inspect` lists what each binary holds"
        )
    raise AuditError(error_id, first, hint)


def inspect(
    paths: Sequence[str | os.PathLike[str]],
    required_archs: Sequence[str] = (),
    *,
    require_device_code: bool = False,
) -> list[AuditReport]:
    """What ``invoke inspect <wheel|.so|dir>... [--arch A]`` checks: one report per path, and per wheel.

    A folder holding wheels is judged wheel by wheel (a folder walk reads ELF files, not the
    wheels' members), plus one report for the ELF files outside them when there are any; a
    wheel that appears twice (hardlinks: a wheelhouse's entries/ and index/files/) is read once.
    ``require_device_code``: a wheel, file or folder without any device code fails.
    """
    reports: list[AuditReport] = []
    for path in paths:
        p = Path(path)
        wheels = _wheels_in(p) if p.is_dir() else []
        if not wheels:
            reports.append(audit_path(p, required_archs, require_device_code=require_device_code))
            continue
        reports += [audit_path(w, required_archs, require_device_code=require_device_code) for w in wheels]
        loose = audit_path(p, required_archs)
        if loose.files:
            reports.append(loose)
    return reports


def _wheels_in(folder: Path) -> list[Path]:
    seen: set[tuple[int, int]] = set()
    out = []
    for w in sorted(folder.rglob("*.whl")):
        st = w.stat() if w.is_file() else None
        if st is None or (st.st_dev, st.st_ino) in seen:
            continue
        seen.add((st.st_dev, st.st_ino))
        out.append(w)
    return out

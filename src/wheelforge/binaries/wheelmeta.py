"""Read, check and rewrite built wheels (METADATA, dist-info name, RECORD, file name).

Why rewrite: projects without a version hook (demo-cuda, many CMake packages) build
``name-1.0-...whl``; wheelforge's wheels carry the target's local label
(``1.0+cu130.sm120``).  A wheel's version lives in four places, all changed together:

1. ``Version:`` in ``<dist>-<ver>.dist-info/METADATA``;
2. the dist-info folder name itself;
3. ``RECORD``, which lists every file with its sha256 and size -- the renamed
   dist-info paths get new rows and changed files (METADATA, patched ``.so``) new hashes;
4. the wheel's file name (``{dist}-{version}-{python}-{abi}-{platform}.whl``).

The same rewrite adds ``Requires-Dist`` lines and swaps file contents, which
:mod:`wheelforge.binaries.relocate` uses for RPATH fixes.  Output is written aside and moved
into place with ``os.replace``.
"""

from __future__ import annotations

import base64
import email.parser
import hashlib
import os
import re
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from wheelforge.model.errors import BuildError


@dataclass(frozen=True)
class WheelInfo:
    path: Path
    name: str  # canonical project name
    version: str
    dist_info: str  # "demo_cuda-0.1.0.dist-info"
    requires_dist: tuple[str, ...] = ()
    files: tuple[str, ...] = field(default_factory=tuple)


def record_hash(data: bytes) -> str:
    """RECORD's hash form: ``sha256=<urlsafe base64, no padding>``."""
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _bad(path: Path, what: str) -> BuildError:
    return BuildError("wheel.invalid", f"wheel {path.name} is broken: {what}",
                      "the build backend wrote a bad wheel; see the build log (wheelhouse/logs/<key>.log)")


def _dist_info(names: Sequence[str], path: Path) -> str:
    tops = {n.split("/", 1)[0] for n in names if "/" in n}
    infos = sorted(t for t in tops if t.endswith(".dist-info"))
    if len(infos) != 1:
        raise _bad(path, f"expected one .dist-info folder, found {infos or 'none'}")
    return infos[0]


def _parse_record(text: str) -> dict[str, tuple[str, str]]:
    import csv
    import io

    rows: dict[str, tuple[str, str]] = {}
    for row in csv.reader(io.StringIO(text)):
        if row:
            rows[row[0]] = (row[1] if len(row) > 1 else "", row[2] if len(row) > 2 else "")
    return rows


def check_wheel(path: str | os.PathLike[str]) -> WheelInfo:
    """A readable zip whose RECORD lists every file with the right sha256 and size,
    whose METADATA names the same project and version as the file name."""
    path = Path(path)
    try:
        fn_name, fn_version, _, _ = parse_wheel_filename(path.name)
    except Exception as exc:  # packaging raises InvalidWheelFilename
        raise _bad(path, f"file name does not follow the wheel naming rule ({exc})") from None
    try:
        zf = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise _bad(path, f"not a zip archive ({exc})") from None
    with zf:
        names = [n for n in zf.namelist() if not n.endswith("/")]
        info_dir = _dist_info(names, path)
        for required in ("METADATA", "WHEEL", "RECORD"):
            if f"{info_dir}/{required}" not in names:
                raise _bad(path, f"{info_dir}/{required} is missing")
        record = _parse_record(zf.read(f"{info_dir}/RECORD").decode("utf-8"))
        for name in names:
            if name == f"{info_dir}/RECORD" or name.endswith((".jws", ".p7s")) and name.startswith(info_dir):
                continue
            if name not in record:
                raise _bad(path, f"{name} is not listed in RECORD")
            try:
                data = zf.read(name)  # checks the CRC as well
            except (zipfile.BadZipFile, OSError) as exc:
                raise _bad(path, f"{name} cannot be read ({exc})") from None
            want_hash, want_size = record[name]
            if want_hash != record_hash(data):
                raise _bad(path, f"{name}: sha256 differs from RECORD")
            if want_size and int(want_size) != len(data):
                raise _bad(path, f"{name}: size differs from RECORD")
        missing = sorted(set(record) - set(names))
        if missing:
            raise _bad(path, f"RECORD lists {missing[0]}, which is not in the archive")
        meta = email.parser.Parser().parsestr(zf.read(f"{info_dir}/METADATA").decode("utf-8"), headersonly=True)
    name, version = meta.get("Name", ""), meta.get("Version", "")
    if canonicalize_name(name) != fn_name:
        raise _bad(path, f"METADATA names {name!r}, the file name {fn_name!r}")
    try:
        if Version(version) != fn_version:
            raise _bad(path, f"METADATA version {version} differs from the file name's {fn_version}")
    except InvalidVersion:
        raise _bad(path, f"METADATA version {version!r} is not PEP 440") from None
    return WheelInfo(path=path, name=fn_name, version=version, dist_info=info_dir,
                     requires_dist=tuple(meta.get_all("Requires-Dist") or ()), files=tuple(names))


def _edit_metadata(text: str, version: str | None, add_requires: Sequence[str]) -> str:
    head, sep, body = text.partition("\n\n")
    lines = head.split("\n")
    if version is not None:
        lines = [f"Version: {version}" if re.match(r"^Version:", ln) else ln for ln in lines]
    existing = {ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("Requires-Dist:")}
    lines += [f"Requires-Dist: {r}" for r in add_requires if r not in existing]
    return "\n".join(lines) + (sep + body if sep else "\n")


def rewrite_wheel(
    wheel: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    version: str | None = None,
    add_requires: Sequence[str] = (),
    replace: Mapping[str, bytes] | None = None,
    add_dist_info: Mapping[str, bytes] | None = None,
    build_tag: int | None = None,
) -> Path:
    """Write a copy of ``wheel`` into ``out_dir`` with a new version, extra Requires-Dist
    lines, replaced file contents and/or new files in the dist-info folder (``add_dist_info``,
    names relative to it, e.g. ``variant.json``); RECORD is regenerated.  Returns the new path.
    ``build_tag`` gives the wheel a build number (in its file name and WHEEL's ``Build:``), the
    wheel spec's way to publish a rebuild of one version under a new name.

    The source wheel is left alone (``out_dir`` may be its folder: the new name differs
    when the version changes; otherwise the file is replaced atomically).
    """
    src = Path(wheel)
    info = check_wheel(src)
    replace = dict(replace or {})
    new_version = version or info.version
    try:
        Version(new_version)
    except InvalidVersion:
        raise BuildError("wheel.version", f"{new_version!r} is not a PEP 440 version", "use e.g. 0.1.0+cu130.sm120") from None
    dist = info.dist_info[: -len(".dist-info")].rsplit("-", 1)[0]  # "demo_cuda" (keeps the backend's spelling)
    new_info = f"{dist}-{new_version}.dist-info"
    _, _, old_tag, tags = parse_wheel_filename(src.name)
    tag_part = src.name[:-4].split("-")[-3:]  # python-abi-platform as written
    number = [str(build_tag)] if build_tag is not None else ([str(old_tag[0]) + old_tag[1]] if old_tag else [])
    new_name = "-".join([dist, new_version, *number, *tag_part]) + ".whl"
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".rewrite-", suffix=".whl", dir=out_dir)
    os.close(fd)
    try:
        records: list[tuple[str, str, int]] = []
        with zipfile.ZipFile(src) as zin, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zout:
            record_name = f"{new_info}/RECORD"
            for item in zin.infolist():
                if item.is_dir():
                    continue
                name = item.filename
                if name == f"{info.dist_info}/RECORD":
                    continue
                data = replace.pop(name, None)
                if data is None:
                    data = zin.read(name)
                new = new_info + name[len(info.dist_info):] if name.startswith(info.dist_info + "/") else name
                if new == f"{new_info}/METADATA":
                    data = _edit_metadata(data.decode("utf-8"), version, add_requires).encode("utf-8")
                elif new == f"{new_info}/WHEEL" and build_tag is not None:
                    lines = [ln for ln in data.decode("utf-8").splitlines() if not ln.startswith("Build:")]
                    data = ("\n".join([*lines, f"Build: {build_tag}"]) + "\n").encode("utf-8")
                zi = zipfile.ZipInfo(new, date_time=item.date_time)
                zi.external_attr = item.external_attr  # keeps executable bits
                zi.compress_type = zipfile.ZIP_DEFLATED
                zout.writestr(zi, data)
                records.append((new, record_hash(data), len(data)))
            if replace:
                raise BuildError("wheel.replace", f"{src.name} has no file {sorted(replace)[0]!r} to replace", "check the path inside the wheel")
            for name, data in sorted((add_dist_info or {}).items()):
                new = f"{new_info}/{name}"
                if any(n == new for n, _, _ in records):
                    raise BuildError("wheel.add", f"{src.name} already has {new}", "replace it instead of adding it")
                zout.writestr(zipfile.ZipInfo(new, date_time=(1980, 1, 1, 0, 0, 0)), data)
                records.append((new, record_hash(data), len(data)))
            lines = [f"{n},{h},{s}" for n, h, s in records] + [f"{record_name},,"]
            zout.writestr(zipfile.ZipInfo(record_name, date_time=(1980, 1, 1, 0, 0, 0)), "\n".join(lines) + "\n")
        dest = out_dir / new_name
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    check_wheel(dest)
    return dest


def add_local_label(wheel: str | os.PathLike[str], label: str, out_dir: str | os.PathLike[str]) -> Path:
    """``1.0`` -> ``1.0+<label>`` (an existing local part is replaced)."""
    info = check_wheel(wheel)
    public = Version(info.version).public
    return rewrite_wheel(wheel, out_dir, version=f"{public}+{label}")

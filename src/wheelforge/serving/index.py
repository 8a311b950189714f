"""The private package index: a static Simple Repository API tree built from the wheelhouse.

``build_index(wheelhouse)`` writes ``wheelhouse/index/``:

```
index/
  index.html                      the page for people (rows rendered, sorted/filtered by _page/page.js)
  _page/page.css, _page/page.js
  generation.json                 when and from how many files this tree was written
  simple/index.html|index.json    PEP 503 / PEP 691 project list
  simple/<project>/index.html|index.json   (with the PEP 792 project status, when one is set)
  files/<wheel>                   hardlink of the wheel in entries/<key>/
  files/<variant wheel>, files/<name>-<version>-variants.json   with ``variants=True`` (wheelforge.serving.variants)
  files/<wheel>.metadata          PEP 658/714: the wheel's METADATA, byte for byte
  files/<wheel>.provenance.json   sidecars, linked from the page
  files/<wheel>.verify.json
  logs/<key>.log                  the build log
```

The tree is written into a sibling scratch folder and swapped in with one
``renameat2(RENAME_EXCHANGE)`` (two renames where the kernel lacks it), so a
reader sees the old tree or the new one, never half of one.  Every URL in it is
relative, so the folder can be copied to any static host unchanged.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import html
import json
import os
import shutil
import stat
import sys
import tempfile
import time
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from urllib.parse import quote

from filelock import FileLock
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import Version

from wheelforge.host.digest import sha256_file
from wheelforge.model.errors import IndexError_

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"
SIMPLE_HTML = "application/vnd.pypi.simple.v1+html"
#: PEP 629 major.minor.  1.1: the JSON carries PEP 700's ``versions``/``size``/``upload-time``;
#: 1.4: project pages carry PEP 792's status.  1.2 (PEP 708) and 1.3 (PEP 740) only add optional keys.
API_VERSION = "1.4"
#: PEP 792 project status markers; ``project-status.toml`` sets them (docs/index.md).
PROJECT_STATUSES = ("active", "archived", "quarantined", "deprecated")


@dataclass(frozen=True)
class IndexFile:
    """One wheel as the index lists it."""

    filename: str
    project: str  # normalized (PEP 503)
    display_name: str
    version: str
    python_tag: str
    sha256: str
    size: int
    requires_python: str | None
    metadata: bytes | None = field(repr=False)  # None: not a wheel (variants.json), no PEP 658 file
    yanked: str | None  # None = not yanked; "" = yanked without a reason
    key: str
    archs_found: tuple[str, ...]
    verify: str | None
    built_at: str | None
    build_seconds: float | None
    wheel_path: Path | None  # None when ``data`` holds the file
    entry_dir: Path | None
    sidecars: tuple[str, ...] = ()  # which of provenance.json / verify.json the entry holds
    log: Path | None = None
    variant_label: str | None = None  # a PEP 825 variant twin (wheelforge.serving.variants)
    data: bytes | None = field(default=None, repr=False)  # contents of a generated file (variants.json)

    @property
    def metadata_sha256(self) -> str | None:
        return hashlib.sha256(self.metadata).hexdigest() if self.metadata is not None else None

    @property
    def is_plain_wheel(self) -> bool:
        return self.variant_label is None and self.data is None

    @property
    def quoted(self) -> str:
        """The filename as an URL path segment: ``+`` becomes ``%2B`` (pip and S3 read a bare ``+`` differently)."""
        return quote(self.filename, safe="")


@dataclass(frozen=True)
class ProjectStatus:
    """PEP 792: one of :data:`PROJECT_STATUSES`, with an optional reason."""

    status: str
    reason: str | None = None


@dataclass
class IndexResult:
    path: Path
    projects: int
    files: int
    seconds: float
    warnings: list[str] = field(default_factory=list)
    variant_files: int = 0  # variant twins and variants.json files among ``files``


# --------------------------------------------------------------------------- reading the wheelhouse


def load_yanks(wheelhouse: Path) -> dict[str, str]:
    """``yanked.toml`` as ``{filename: reason}`` (the wheelhouse owns the file)."""
    from wheelforge.model.errors import WheelhouseError
    from wheelforge.store.wheelhouse import Wheelhouse

    try:
        return Wheelhouse(wheelhouse).yanked()
    except WheelhouseError as exc:  # the index's own error family, for its messages
        raise IndexError_(exc.id, exc.message, exc.hint) from None

def load_project_status(wheelhouse: Path) -> dict[str, ProjectStatus]:
    """``project-status.toml`` as ``{normalized project: ProjectStatus}``; a missing file means all are active."""
    path = Path(wheelhouse) / "project-status.toml"
    if not path.exists():
        return {}
    hint = 'write [[project]] name = "<project>" status = "archived" reason = "..."; see docs/index.md'
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise IndexError_("index.status-invalid", f"{path}: not valid TOML ({exc})", hint) from exc
    items = data.get("project", [])
    if not isinstance(items, list):
        raise IndexError_("index.status-invalid", f"{path}: 'project' must be an array of tables", hint)
    out: dict[str, ProjectStatus] = {}
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
            raise IndexError_("index.status-invalid", f"{path}: project[{i}].name is missing or not a string", hint)
        status, reason = item.get("status"), item.get("reason")
        if status not in PROJECT_STATUSES:
            raise IndexError_("index.status-invalid", f"{path}: project[{i}] ({item['name']}) has status {status!r}",
                              f"use one of {', '.join(PROJECT_STATUSES)} (PEP 792)")
        if reason is not None and not isinstance(reason, str):
            raise IndexError_("index.status-invalid", f"{path}: project[{i}].reason must be a string", 'write reason = "why"')
        out[canonicalize_name(item["name"])] = ProjectStatus(status, reason or None)
    return out


def _read_metadata(wheel: Path, name: str, version: str) -> bytes:
    """METADATA of the wheel, found through its one ``*.dist-info/`` folder."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            candidates = [n for n in zf.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA")]
            if len(candidates) != 1:
                raise IndexError_("index.bad-wheel", f"{wheel}: expected one *.dist-info/METADATA, found {len(candidates)}", "rebuild the wheel; it is not a valid wheel")
            return zf.read(candidates[0])
    except zipfile.BadZipFile as exc:
        raise IndexError_("index.bad-wheel", f"{wheel}: not a zip archive ({exc})", "remove the entry and rebuild it") from exc


def _requires_python(metadata: bytes) -> str | None:
    # Headers end at the first blank line; the body may hold a long description.
    for line in metadata.split(b"\n\n", 1)[0].decode("utf-8", "replace").splitlines():
        if line.lower().startswith("requires-python:"):
            return line.split(":", 1)[1].strip() or None
    return None


def _not_regular(path: Path) -> str | None:
    """What ``path`` is when it is not a regular file (looked at itself, not through a symlink), or None."""
    try:
        st = os.lstat(path)
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    if stat.S_ISLNK(st.st_mode):
        return f"is a symlink (to {os.readlink(path)}), not a file in the wheelhouse"
    if not stat.S_ISREG(st.st_mode):
        return "is not a regular file"
    return None


def collect(wheelhouse: Path, *, rehash: bool = False, include_unverified: bool = False) -> tuple[list[IndexFile], list[str]]:
    """Every verified wheel in ``entries/`` with what the index needs, plus warnings.

    Only entries whose post-build verification passed are served; ``include_unverified`` also lists
    unverified and failed ones, marked so on the page.  A file name is served with one sha256 only:
    two entries holding different bytes under one name stop the index (the wheelhouse refuses to
    store such a pair; this catches entries copied in by hand).

    The wheel's sha256 comes from ``entry.json`` (entries are immutable once
    promoted); ``rehash=True`` recomputes it and refuses a mismatch.
    """
    from wheelforge.store.wheelhouse import Wheelhouse, describe_state

    wheelhouse = Path(wheelhouse)
    wh = Wheelhouse(wheelhouse)
    if not wh.entries.is_dir():
        raise IndexError_("index.no-wheelhouse", f"{wheelhouse}: no entries/ folder", "build something first, or pass --wheelhouse DIR")
    yanks = load_yanks(wheelhouse)
    warnings: list[str] = []
    by_name: dict[str, IndexFile] = {}
    logs_dir = wh.root / "logs"
    logs = wh.log_names()
    warnings += [f"entries/{name}: {what}, not an entry folder; not listed" for name, what in wh.strays()]
    for entry_dir, entry, present in wh.scan():
        manifest = entry_dir / "entry.json"
        odd = _not_regular(manifest)
        if odd:  # a manifest from elsewhere could name anything
            warnings.append(f"entry {entry_dir.name}: entry.json {odd}; not listed")
            continue
        if entry is None or not isinstance(entry.get("wheel"), str):
            raise IndexError_("index.bad-entry", f"{manifest}: unreadable or missing 'wheel'", "remove the entry folder and rebuild it")
        filename = entry["wheel"]
        wheel = entry_dir / filename
        if "/" in filename or filename not in present:
            raise IndexError_("index.bad-entry", f"{manifest}: wheel {filename!r} is not in {entry_dir}", "remove the entry folder and rebuild it")
        # Only a regular file inside the entry is served: a symlink's target is outside what the wheelhouse
        # guarantees (and the server, which serves regular files only, would answer 404 for it).
        odd = _not_regular(wheel)
        if odd:
            warnings.append(f"entry {entry_dir.name}: {filename} {odd}; not listed")
            continue
        if not os.access(wheel, os.R_OK):
            warnings.append(f"entry {entry_dir.name}: {filename} cannot be read by this user; not listed")
            continue
        try:
            name, version, _build, tags = parse_wheel_filename(filename)
        except InvalidWheelFilename as exc:
            raise IndexError_("index.bad-wheel", f"{wheel}: {exc}", "the wheel filename must follow the wheel spec") from exc
        size = wheel.stat().st_size
        if entry.get("size") not in (None, size):
            raise IndexError_("index.bad-entry", f"{manifest}: size {entry.get('size')} but {filename} has {size} bytes", "the entry was changed after promotion; rebuild it")
        sha = entry.get("sha256")
        if rehash or not sha:
            actual = sha256_file(wheel)
            if sha and sha != actual:
                raise IndexError_("index.hash-mismatch", f"{wheel}: sha256 {actual} differs from entry.json {sha}", "the wheel was changed after promotion; rebuild the entry")
            sha = actual
        state = describe_state(entry)
        if not state.startswith("verified") and not include_unverified:
            warnings.append(f"not served: {filename} is {state} (verify it, or index with --include-unverified)")
            continue
        metadata = _read_metadata(wheel, name, str(version))
        item = IndexFile(
            filename=filename,
            project=canonicalize_name(name),
            display_name=entry.get("project") or str(name),
            version=str(version),
            python_tag=".".join(sorted({t.interpreter for t in tags})),
            sha256=sha,
            size=size,
            requires_python=_requires_python(metadata),
            metadata=metadata,
            yanked=yanks.get(filename),
            key=entry.get("key", entry_dir.name),
            archs_found=tuple(entry.get("archs_found") or ()),
            verify=state,
            built_at=entry.get("built_at"),
            build_seconds=entry.get("build_seconds"),
            wheel_path=wheel,
            entry_dir=entry_dir,
            sidecars=tuple(s for s in ("provenance.json", "verify.json") if s in present and not _not_regular(entry_dir / s)),
            log=logs_dir / f"{entry.get('key', entry_dir.name)}.log" if f"{entry.get('key', entry_dir.name)}.log" in logs else None,
        )
        old = by_name.get(filename)
        if old is not None:
            if old.sha256 != item.sha256:  # one URL, two byte streams: never
                raise IndexError_("index.name-two-hashes", f"{filename} is in entries {old.key[:12]} and {item.key[:12]} with different sha256s",
                                  "a file name stands for one sha256: remove one entry (or rebuild it with --replace, which gives it a new build number)")
            continue  # the same bytes from two keys: listed once
        by_name[filename] = item
    for filename in sorted(set(yanks) - set(by_name)):
        warnings.append(f"yanked.toml names {filename}, which no entry holds; ignored")
    files = sorted(by_name.values(), key=lambda f: (f.project, f.filename))
    return files, warnings


# --------------------------------------------------------------------------- rendering


def _attr(value: str) -> str:
    return html.escape(value, quote=True)


def _upload_time(built_at: str | None) -> str | None:
    """PEP 700 wants ``yyyy-mm-ddThh:mm:ss.ffffffZ`` in UTC."""
    if not built_at:
        return None
    try:
        t = datetime.fromisoformat(built_at.replace("Z", "+00:00"))
    except ValueError:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _html_page(title: str, body: str, meta: tuple[tuple[str, str], ...] = ()) -> str:
    extra = "".join(f'<meta name="{_attr(k)}" content="{_attr(v)}">\n' for k, v in meta)
    return (
        "<!DOCTYPE html>\n<html>\n<head>\n"
        f'<meta name="pypi:repository-version" content="{API_VERSION}">\n{extra}'
        f"<title>{html.escape(title)}</title>\n</head>\n<body>\n"
        f"<h1>{html.escape(title)}</h1>\n{body}</body>\n</html>\n"
    )


def render_root(projects: dict[str, list[IndexFile]]) -> tuple[str, str]:
    """(HTML, JSON) of ``/simple/``."""
    links = "".join(f'<a href="{quote(p)}/">{html.escape(p)}</a><br>\n' for p in projects)
    body = _html_page("Simple index", links)
    doc = {"meta": {"api-version": API_VERSION}, "projects": [{"name": p} for p in projects]}
    return body, json.dumps(doc, indent=1) + "\n"


def render_project(project: str, files: list[IndexFile], files_url: str = "../../files/", *,
                   status: ProjectStatus | None = None, versions: list[str] | None = None) -> tuple[str, str]:
    """(HTML, JSON) of ``/simple/<project>/``; both list the same files with the same hashes.

    ``status`` (PEP 792) adds ``pypi:project-status`` meta tags and the JSON ``project-status``;
    ``versions`` overrides the version list (a quarantined project lists versions but no files).
    """
    anchors = []
    entries = []
    for f in files:
        url = f"{files_url}{f.quoted}"
        attrs = [f'href="{_attr(url)}#sha256={f.sha256}"']
        if f.requires_python:
            attrs.append(f'data-requires-python="{_attr(f.requires_python)}"')
        if f.metadata is not None:
            md = f"sha256={f.metadata_sha256}"
            # PEP 714 renamed the attribute; older pips only read the PEP 658 spelling, so write both.
            attrs.append(f'data-core-metadata="{md}"')
            attrs.append(f'data-dist-info-metadata="{md}"')
        if f.yanked is not None:
            attrs.append(f'data-yanked="{_attr(f.yanked)}"')
        anchors.append(f"<a {' '.join(attrs)}>{html.escape(f.filename)}</a><br>\n")
        item: dict = {
            "filename": f.filename,
            "url": url,
            "hashes": {"sha256": f.sha256},
            "requires-python": f.requires_python,
            "size": f.size,
            "yanked": f.yanked if f.yanked else (f.yanked is not None),
        }
        if f.metadata is not None:
            item["core-metadata"] = {"sha256": f.metadata_sha256}
            item["data-dist-info-metadata"] = {"sha256": f.metadata_sha256}
        upload = _upload_time(f.built_at)
        if upload:
            item["upload-time"] = upload
        entries.append(item)
    if versions is None:
        versions = sorted({f.version for f in files}, key=_version_key)
    doc: dict = {"meta": {"api-version": API_VERSION}, "name": project}
    meta: tuple[tuple[str, str], ...] = ()
    if status is not None:
        # PEP 792 "JSON index" example: {"status": ..., "reason": ...}; HTML: two meta tags.
        doc["project-status"] = {"status": status.status, **({"reason": status.reason} if status.reason else {})}
        meta = (("pypi:project-status", status.status),) + ((("pypi:project-status-reason", status.reason),) if status.reason else ())
    doc.update({"versions": versions, "files": entries})
    return _html_page(f"Links for {project}", "".join(anchors), meta), json.dumps(doc, indent=1) + "\n"


def _version_key(v: str):
    from packaging.version import Version

    return Version(v)


def _human_size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)  # pragma: no cover


def _page_asset(name: str) -> bytes:
    return resources.files("wheelforge.serving").joinpath("page", name).read_bytes()


def render_page(files: list[IndexFile], generated_at: str) -> str:
    """The page for people: one table row per wheel, rendered here so it reads without JavaScript."""
    rows = []
    for f in files:
        e = html.escape
        q = f.quoted
        verify = f.verify or "not run"
        links = [f'<a href="files/{q}">wheel</a>']
        if "provenance.json" in f.sidecars:
            links.append(f'<a href="files/{q}.provenance.json">provenance</a>')
        if "verify.json" in f.sidecars:
            links.append(f'<a href="files/{q}.verify.json">verify</a>')
        if f.log is not None:
            links.append(f'<a href="logs/{quote(f.log.name)}">log</a>')
        yank = f' <span class="yanked" title="{_attr(f.yanked or "")}">yanked</span>' if f.yanked is not None else ""
        rows.append(
            "<tr>"
            f'<td data-label="Project"><a href="simple/{quote(f.project)}/">{e(f.display_name)}</a></td>'
            f'<td data-label="Version">{e(f.version)}{yank}</td>'
            f'<td data-label="Python">{e(f.python_tag)}</td>'
            f'<td data-label="Archs">{e(" ".join(f.archs_found)) or "host only"}</td>'
            f'<td data-label="Verify" class="v-{_attr(verify.split(" ")[0])}">{e(verify)}</td>'
            f'<td data-label="Size" data-sort="{f.size}">{_human_size(f.size)}</td>'
            f'<td data-label="Built" data-sort="{_attr(f.built_at or "")}">{e((f.built_at or "")[:16].replace("T", " "))}</td>'
            f'<td data-label="Files"><span class="links">{" · ".join(links)}</span></td>'
            "</tr>\n"
        )
    template = _page_asset("index.html").decode("utf-8")
    return (
        template.replace("{{ROWS}}", "".join(rows))
        .replace("{{COUNT}}", str(len(files)))
        .replace("{{GENERATED}}", html.escape(generated_at))
    )


# --------------------------------------------------------------------------- writing the tree


def _link_or_copy(src: Path, dst: Path) -> None:
    # A hardlink costs nothing and the wheelhouse never rewrites an entry in place.
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _write_new(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def _write(path: Path, data: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)


def write_tree(files: list[IndexFile], root: Path, wheelhouse: Path, *, statuses: Mapping[str, ProjectStatus] | None = None,
               quarantined: Mapping[str, list[str]] | None = None) -> None:
    """Write the whole static tree for ``files`` into the empty folder ``root``.

    ``quarantined`` maps projects whose files are withheld (PEP 792) to their versions: they get
    a page with their status and no links, and none of their files are written.
    """
    generated_at = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    statuses = statuses or {}
    quarantined = quarantined or {}
    projects: dict[str, list[IndexFile]] = {p: [] for p in quarantined}
    for f in files:
        projects.setdefault(f.project, []).append(f)
    projects = dict(sorted(projects.items()))

    (root / "files").mkdir(parents=True)
    (root / "logs").mkdir()
    (root / "_page").mkdir()
    files_dir = os.path.join(root, "files")
    logs_dir = os.path.join(root, "logs")
    linked_logs: set[str] = set()
    for f in files:
        dst = os.path.join(files_dir, f.filename)
        if f.data is not None:
            _write_new(dst, f.data)
        else:
            assert f.wheel_path is not None
            _link_or_copy(f.wheel_path, dst)
        if f.metadata is not None:
            _write_new(dst + ".metadata", f.metadata)
        for side in f.sidecars:
            assert f.entry_dir is not None
            _link_or_copy(os.path.join(f.entry_dir, side), f"{dst}.{side}")
        if f.log is not None and f.log.name not in linked_logs:
            linked_logs.add(f.log.name)
            _link_or_copy(f.log, os.path.join(logs_dir, f.log.name))

    html_root, json_root = render_root(projects)
    _write(root / "simple" / "index.html", html_root)
    _write(root / "simple" / "index.json", json_root)
    for project, pfiles in projects.items():
        h, j = render_project(project, pfiles, status=statuses.get(project), versions=quarantined.get(project))
        _write(root / "simple" / project / "index.html", h)
        _write(root / "simple" / project / "index.json", j)

    for asset in ("page.css", "page.js"):
        _write(root / "_page" / asset, _page_asset(asset))
    _write(root / "index.html", render_page([f for f in files if f.is_plain_wheel], generated_at))
    gen = {"generated_at": generated_at, "projects": len(projects), "files": len(files), "api-version": API_VERSION}
    _write(root / "generation.json", json.dumps(gen, indent=1) + "\n")


_RENAME_EXCHANGE = 2


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths with renameat2(2); False where the platform lacks it."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    AT_FDCWD = -100
    rc = fn(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc != 0:
        err = ctypes.get_errno()
        if err in (22, 38, 95):  # EINVAL/ENOSYS/EOPNOTSUPP: filesystem or kernel cannot exchange
            return False
        raise OSError(err, os.strerror(err), str(a))
    return True


def swap_in(new: Path, target: Path) -> None:
    """Make ``new`` become ``target``; the previous tree stays whole until the swap, then goes."""
    if not target.exists():
        os.rename(new, target)
        return
    if _exchange(new, target):
        shutil.rmtree(new)  # now holds the old tree
        return
    # Fallback: a window of one rename where target is absent, never half-written.
    old = Path(tempfile.mkdtemp(prefix=".index-old-", dir=target.parent))
    os.rmdir(old)
    os.rename(target, old)
    os.rename(new, target)
    shutil.rmtree(old)


def build_index(wheelhouse: str | os.PathLike, *, rehash: bool = False, variants: bool = False,
                include_unverified: bool = False) -> IndexResult:
    """Regenerate ``wheelhouse/index/`` from every entry; atomic for readers, serialized for writers.

    ``variants``: also publish each CUDA wheel as a PEP 825 variant twin plus the
    ``{name}-{version}-variants.json`` files (:mod:`wheelforge.serving.variants`).
    """
    t0 = time.perf_counter()
    wheelhouse = Path(wheelhouse)
    files, warnings = collect(wheelhouse, rehash=rehash, include_unverified=include_unverified)
    statuses = load_project_status(wheelhouse)
    present = {f.project for f in files}
    warnings += [f"project-status.toml names {p}, which no entry holds; ignored" for p in sorted(set(statuses) - present)]
    statuses = {p: s for p, s in statuses.items() if p in present}
    # PEP 792: a quarantined project's files are not offered at all (page, files/, variants).
    quarantined = {p: sorted({f.version for f in files if f.project == p}, key=_version_key)
                   for p, s in statuses.items() if s.status == "quarantined"}
    files = [f for f in files if f.project not in quarantined]
    try:  # a read-only wheelhouse fails here, naming itself
        for d in (wheelhouse / "locks", wheelhouse):
            d.mkdir(exist_ok=True)
            fd, probe = tempfile.mkstemp(dir=d, prefix=".write-probe-")
            os.close(fd)
            os.unlink(probe)
    except OSError as exc:
        raise IndexError_("index.unwritable", f"cannot write the index into {wheelhouse}: {exc.strerror} ({exc.filename})",
                          "run index as the wheelhouse's owner, or pass --wheelhouse a folder you can write") from None
    with FileLock(str(wheelhouse / "locks" / "index.lock")):
        extra: list[IndexFile] = []
        if variants:
            from wheelforge.serving.variants import index_files

            extra, variant_warnings = index_files(wheelhouse, files)
            warnings += variant_warnings
        listed = sorted(files + extra, key=lambda f: (f.project, f.filename))
        scratch = Path(tempfile.mkdtemp(prefix=".index-new-", dir=wheelhouse))
        try:
            tree = scratch / "index"
            write_tree(listed, tree, wheelhouse, statuses=statuses, quarantined=quarantined)
            swap_in(tree, wheelhouse / "index")
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return IndexResult(
        path=wheelhouse / "index",
        projects=len(present),
        files=len(listed),
        seconds=time.perf_counter() - t0,
        warnings=warnings,
        variant_files=len(extra),
    )


# --------------------------------------------------------------------------- client recipes


def _index_dir(source: str | os.PathLike) -> Path:
    p = Path(source)
    if (p / "index" / "simple").is_dir():
        return p / "index"
    if (p / "simple").is_dir():
        return p
    raise IndexError_("index.missing", f"{p}: no index tree (index/simple/)", "run `invoke index` first")


def _parse_pins(pins: list[str] | tuple[str, ...]) -> list[tuple[str, str]]:
    out = []
    for pin in pins:
        try:
            req = Requirement(pin)
        except InvalidRequirement as exc:
            raise IndexError_("index.bad-pin", f"pin {pin!r}: {exc}", "write name==version, e.g. xformers==0.0.35+cu128.sm120") from exc
        specs = list(req.specifier)
        if len(specs) != 1 or specs[0].operator not in ("==", "==="):
            raise IndexError_("index.bad-pin", f"pin {pin!r} is not an exact pin", "write name==version with the local label, e.g. demo-pkg==1.0.0+cu128.sm120")
        out.append((canonicalize_name(req.name), specs[0].version))
    return out


def require_hashes(source: str | os.PathLike, pins: list[str] | tuple[str, ...]) -> str:
    """A ``pip install --require-hashes -r`` file for ``pins`` with every matching wheel's sha256 from the index."""
    root = _index_dir(source)
    lines = ["# generated by wheelforge from the index; install with:", "#   pip install --require-hashes --index-url <index>/simple/ -r this-file"]
    for project, version in _parse_pins(pins):
        page = root / "simple" / project / "index.json"
        if not page.is_file():
            raise IndexError_("index.unknown-project", f"{project}: not in the index at {root}", "build it, then run `invoke index`")
        doc = json.loads(page.read_text(encoding="utf-8"))
        hashes = [
            f["hashes"]["sha256"]
            for f in doc["files"]
            if f["filename"].endswith(".whl") and _wheel_version(f["filename"]) == version and f["yanked"] is False
        ]
        if not hashes:
            raise IndexError_("index.unknown-version", f"{project}=={version}: no unyanked wheel in the index", f"available: {', '.join(doc['versions']) or 'none'}")
        hash_args = " ".join(f"--hash=sha256:{h}" for h in hashes)
        lines.append(f"{project}=={version} {hash_args}")
    return "\n".join(lines) + "\n"


def _wheel_version(filename: str) -> str | None:
    """The version in a wheel's name; None for a PEP 825 variant wheel, whose name pip cannot install."""
    try:
        return str(parse_wheel_filename(filename)[1])
    except InvalidWheelFilename:
        return None


def held_pins(source: str | os.PathLike, prefer_target: str | None = None) -> tuple[list[tuple[str, str]], list[str]]:
    """One exact pin per project the index at ``source`` serves, and the other pins it could have been.

    A project with several builds is pinned to the one for ``prefer_target`` (the label's arch part,
    ``sm120``, from the settings' ``--arch``), else the newest upload; yanked files and PEP 825 variant
    twins (which pip cannot install by name) are left out.
    """
    root = _index_dir(source)
    projects = json.loads((root / "simple" / "index.json").read_text(encoding="utf-8"))["projects"]
    pins: list[tuple[str, str]] = []
    others: list[str] = []
    for project in sorted(canonicalize_name(p["name"]) for p in projects):
        page = root / "simple" / project / "index.json"
        if not page.is_file():
            continue
        newest: dict[str, str] = {}  # version -> newest upload time of its wheels
        for f in json.loads(page.read_text(encoding="utf-8"))["files"]:
            version = _wheel_version(f["filename"]) if f["filename"].endswith(".whl") and f.get("yanked") is False else None
            if version is not None:
                newest[version] = max(newest.get(version, ""), str(f.get("upload-time", "")))
        if not newest:
            continue

        # the build for the configured archs first, then the newest upload
        ranked = sorted(newest, key=lambda v, up=newest: ((Version(v).local or "").split(".", 1)[-1] == prefer_target, up[v]),
                        reverse=True)
        pins.append((project, ranked[0]))
        others += [f"{project}=={v}" for v in ranked[1:]]
    return pins, others


def _lowest_python(source: str | os.PathLike, pins: Sequence[tuple[str, str]]) -> str:
    """``>=3.11``: the lowest Python every pinned release has a wheel for (cpXY tags, else Requires-Python)."""
    root = _index_dir(source)
    floor = (3, 8)
    for project, version in pins:
        page = root / "simple" / project / "index.json"
        lows = []
        for f in json.loads(page.read_text(encoding="utf-8"))["files"] if page.is_file() else []:
            if not f["filename"].endswith(".whl") or _wheel_version(f["filename"]) != version:
                continue
            tags = parse_wheel_filename(f["filename"])[3]
            cp = sorted((int(t.interpreter[2]), int(t.interpreter[3:])) for t in tags
                        if t.interpreter.startswith("cp") and t.interpreter[2:].isdigit() and t.abi != "abi3")
            if cp:
                lows.append(cp[0])
                continue
            spec = next((sp for sp in SpecifierSet(f.get("requires-python") or "") if sp.operator == ">="), None)
            lows.append(Version(spec.version).release[:2] if spec else floor)
        if lows:
            floor = max(floor, min(lows))
    return ">=" + ".".join(map(str, floor))


def print_config(base_url: str, pins: list[str] | tuple[str, ...], source: str | os.PathLike | None = None,
                 prefer_target: str | None = None) -> str:
    """Client recipes for the index at ``base_url`` (the server root; pages live under ``simple/``).

    Pins are ``pins`` when given, else one per project the index at ``source`` (wheelhouse or index
    folder) holds.  Three sections, each usable as printed: the pip command, a ``--require-hashes``
    requirements file (with ``source``), and a pyproject.toml uv can lock and sync on its own
    (tests/integration/test_print_config.py runs all three against a served index).
    """
    parsed = _parse_pins(pins)
    others: list[str] = []
    if not parsed:
        if source is None:
            raise IndexError_("index.no-pins", "no pins given and no wheelhouse to read them from", "pass --pin NAME==VERSION")
        parsed, others = held_pins(source, prefer_target)
        if not parsed:
            raise IndexError_("index.empty", f"{_index_dir(source)}: the index holds no installable wheel",
                              "build one (invoke build demo-cuda), then run `invoke index`")
    simple = base_url.rstrip("/") + "/simple/"
    requirements = [f"{p}=={v}" for p, v in parsed]
    out = [
        "# == pip: our index ONLY, exact pins ==",
        "# Never use --extra-index-url: pip merges all indexes and takes the highest version,",
        "# so anyone who publishes the same name on PyPI with a higher version wins (dependency confusion).",
        "# Dependencies that are not in this index must be pinned from their own index in a separate step.",
        f"pip install --index-url {simple} " + " ".join(f"'{r}'" for r in requirements),
    ]
    if others:
        out.append("# also in the index: " + ", ".join(others))
    if source is not None:
        out += ["", "# == requirements-hashes.txt: pip refuses any file whose sha256 differs ==",
                f"#   pip install --require-hashes --index-url {simple} -r requirements-hashes.txt",
                *(line for line in require_hashes(source, requirements).splitlines() if not line.startswith("#"))]
    python = _lowest_python(source, parsed) if source is not None else ">=3.10"
    out += [
        "",
        "# == pyproject.toml for uv (uv lock, uv sync): a project of its own; add yours to [project] ==",
        "# explicit = true: the index is used ONLY for the packages routed to it in [tool.uv.sources];",
        "# everything else still comes from the default index, and a routed name it lacks is an error.",
        "[project]",
        'name = "my-app"',
        'version = "0.1.0"',
        f'requires-python = "{python}"',
        "dependencies = [",
        *(f'    "{r}",' for r in requirements),
        "]",
        "",
        "[[tool.uv.index]]",
        'name = "wheelforge"',
        f'url = "{simple}"',
        "explicit = true",
        "",
        "[tool.uv.sources]",
        *(f'{p} = {{ index = "wheelforge" }}' for p, _ in parsed),
    ]
    return "\n".join(out)

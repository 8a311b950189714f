"""Fuzzing the archive checks: real tar and zip bytes with hostile members, cut or bit-flipped, or random.

Whatever comes in, ``fetch`` (which checks an archive before caching it) and ``extract_archive``
end in a result or a :class:`WheelforgeError` with an id, never another exception, and write
nothing outside the cache and scratch folders they were given: no file lands outside, no symlink
in an extracted tree points outside it, and a refused download leaves no cache entry.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import tempfile
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from wheelforge.model.errors import WheelforgeError
from wheelforge.model.recipe import ArchiveSource
from wheelforge.sources.extract import check_archive, extract_archive
from wheelforge.sources.fetch import fetch

#: 1200 cases per test, 3000 in all: each test stays under 30 s on two busy shared cores.
FUZZ = settings(max_examples=1200, deadline=5000, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
#: Where an absolute or ``..`` member would land if a check let it through; asserted absent after each case.
ESCAPE = Path(tempfile.gettempdir()) / "wheelforge-fuzz-escaped"

#: zipfile warns when asked to write a duplicate name; duplicates are one of the cases here.
pytestmark = pytest.mark.filterwarnings("ignore:Duplicate name:UserWarning")

_fresh_names = st.from_regex(r"pkg/[a-z0-9_]{1,12}(/[a-z0-9_.]{1,12})?", fullmatch=True)
_benign_names = st.one_of(
    st.sampled_from(["pkg/", "pkg/a.txt", "pkg/sub/b.txt", "pkg/sub", "./pkg/c", "pkg/ü/ß.txt", "pkg/link"]),
    _fresh_names, _fresh_names, _fresh_names,
)
_hostile_names = st.one_of(
    st.sampled_from([".", "./", "", "pkg/../../escaped", "../escaped", f"{ESCAPE}/abs", "/etc/passwd", "C:/x",
                     "pkg\\..\\..\\x", "pkg/" + "n" * 300, "p/" * 2100, "pkg/\x00nul", "pkg/sub/../../..", "pkg/link/x"]),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40),
)
#: Mostly names a real sdist has, so that many cases extract and the hostile member is one among good ones.
_names = st.one_of(*[_benign_names] * 5, _hostile_names)
_links = st.one_of(
    st.sampled_from(["a.txt", "sub", ".", "../pkg/a.txt", "sub/b.txt"]),
    st.sampled_from(["../escaped", "../../escaped", "/etc/passwd", str(ESCAPE), "..", "", "pkg/a.txt", "link/..",
                     "link/../..", "sub/../../escaped", "n" * 300]),
)
_tar_types = st.sampled_from([tarfile.REGTYPE] * 10 + [tarfile.DIRTYPE] * 3 + [tarfile.SYMTYPE] * 3 + [
    tarfile.LNKTYPE, tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE, tarfile.CONTTYPE, b"Z"])
_zip_modes = st.sampled_from([0o100644] * 4 + [0o100755, 0o040755, 0, 0o120777, 0o020644, 0o010644])


@st.composite
def tar_bytes(draw) -> bytes:
    buf = io.BytesIO()
    fmt = draw(st.sampled_from([tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT]))
    mode = draw(st.sampled_from(["w", "w:gz", "w:bz2", "w:xz"]))
    # the fastest level of each codec: xz's default preset alone costs ~10 ms per archive
    level = {"w": {}, "w:gz": {"compresslevel": 1}, "w:bz2": {"compresslevel": 1}, "w:xz": {"preset": 0}}[mode]
    with tarfile.open(fileobj=buf, mode=mode, format=fmt, **level) as tf:
        for _ in range(draw(st.integers(0, 6))):
            info = tarfile.TarInfo(draw(_names))
            info.type = draw(_tar_types)
            info.mode = draw(st.sampled_from([0o644, 0o755, 0o4755, 0o000, 0o777]))
            data = b""
            if info.type in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                info.linkname = draw(_links)
            elif info.type in (tarfile.REGTYPE, tarfile.CONTTYPE):
                data = draw(st.binary(max_size=300))
            info.size = len(data)
            try:
                tf.addfile(info, io.BytesIO(data) if data else None)
            except (ValueError, UnicodeError):
                continue  # a name tarfile cannot even write in this format: not an archive anyone can hand us
    return buf.getvalue()


@st.composite
def zip_bytes(draw) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for _ in range(draw(st.integers(0, 6))):
            name = draw(_names)
            info = zipfile.ZipInfo(name or "x")
            info.compress_type = draw(st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))
            kind = draw(_zip_modes)
            info.external_attr = kind << 16
            if draw(st.booleans()) and draw(st.booleans()):
                info.flag_bits |= 0x1  # "encrypted"
            try:
                zf.writestr(info, draw(_links).encode() if kind == 0o120777 else draw(st.binary(max_size=300)))
            except (ValueError, UnicodeError):
                continue
    return buf.getvalue()


@st.composite
def archives(draw, kinds: tuple[str, ...] = ("tar", "zip", "random")) -> tuple[str, bytes]:
    """(file name, bytes): a tar or zip, maybe cut at a random offset or with flipped bytes; or random bytes."""
    kind = draw(st.sampled_from([k for k in kinds if k != "random"] * 3 + [k for k in kinds if k == "random"]))
    if kind == "random":
        return draw(st.sampled_from(["src.tar.gz", "src.zip", "src.bin"])), draw(st.binary(max_size=2000))
    data = draw(tar_bytes()) if kind == "tar" else draw(zip_bytes())
    damage = draw(st.sampled_from(["none", "none", "none", "cut", "flip"]))
    if damage == "cut" and data:
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif damage == "flip" and data:
        at = draw(st.integers(0, len(data) - 1))
        data = data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1:]
    return ("src.tar.gz" if kind == "tar" else "src.zip"), data


def _everything(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _assert_contained(root: Path, allowed: tuple[str, ...], before: set[str]) -> None:
    after = _everything(root)
    stray = {p for p in after - before if not p.startswith(allowed)}
    assert not stray, f"written outside {allowed}: {sorted(stray)[:5]}"
    assert not ESCAPE.exists(), f"{ESCAPE} was written"
    for p in root.rglob("*"):
        if p.is_symlink():
            assert Path(os.path.realpath(p)).is_relative_to(root / "scratch"), f"symlink {p} points outside: {os.readlink(p)}"


def _write_archive(folder: Path, name: str, data: bytes) -> Path:
    folder.mkdir()
    archive = folder / name
    archive.write_bytes(data)
    return archive


def _extract_case(case: tuple[str, bytes]) -> None:
    name, data = case
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        archive = _write_archive(root / "in", name, data)
        before = _everything(root)
        try:
            check_archive(archive)
            checked = True
        except WheelforgeError as exc:
            assert exc.id.startswith("extract.") and exc.message and exc.hint, exc
            event(exc.id)  # --hypothesis-show-statistics: how the cases ended
            checked = False
        try:
            top = extract_archive(archive, root / "scratch")
        except WheelforgeError as exc:
            assert exc.id.startswith("extract.") and exc.message and exc.hint, exc
            assert not [p for p in (root / "scratch").iterdir()], "a refused archive left files in scratch"
        else:
            assert checked, "extraction took an archive the check refused"
            event("extracted")
            assert top.is_relative_to(root / "scratch")
        _assert_contained(root, ("in", "scratch"), before)


@FUZZ
@given(archives(("tar", "random")))
def test_tar_extraction_ends_in_a_tree_or_a_clear_error(case: tuple[str, bytes]) -> None:
    _extract_case(case)


@FUZZ
@given(archives(("zip", "random")))
def test_zip_extraction_ends_in_a_tree_or_a_clear_error(case: tuple[str, bytes]) -> None:
    _extract_case(case)


@settings(FUZZ, max_examples=600)
@given(archives())
def test_fetch_caches_only_archives_that_pass(case: tuple[str, bytes]) -> None:
    """Through ``fetch`` (file:// URL, right sha256): a refused archive is never cached."""
    name, data = case
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        archive = _write_archive(root / "upstream", name, data)
        sha = hashlib.sha256(data).hexdigest()
        before = _everything(root)
        try:
            fetched = fetch(ArchiveSource(url=archive.as_uri(), sha256=sha), cache_dir=root / "cache")
        except WheelforgeError as exc:
            assert exc.id.startswith("extract.") and "nothing was cached" in (exc.hint or ""), exc
            assert not (root / "cache" / "sources" / "sha256" / sha).exists(), "a refused archive was cached"
        else:
            assert fetched.path.read_bytes() == data
            check_archive(fetched.path)  # what is cached passes the check
        assert not list((root / "cache" / "sources" / "tmp").glob("*")), "a download was left behind"
        _assert_contained(root, ("upstream", "cache"), before)

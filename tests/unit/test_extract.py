"""Safe extraction: good archives of every kind, and every kind of malicious member refused by name."""

from __future__ import annotations

import os
import sys
import tarfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from source_support import (
    file_member,
    listing,
    sdist_tar,
    special_member,
    tar_of,
    zip_of,
)

from wheelforge.model.errors import ExtractionError
from wheelforge.sources.extract import check_archive, extract_archive, link_problem, member_problem


@pytest.mark.parametrize("suffix,mode", [(".tar.gz", "w:gz"), (".tgz", "w:gz"), (".tar.bz2", "w:bz2"), (".tar.xz", "w:xz")])
def test_good_tarballs_extract_to_their_top_folder(tmp_path: Path, suffix: str, mode: str) -> None:
    d = tarfile.TarInfo("pkg-1.0")
    d.type, d.mode = tarfile.DIRTYPE, 0o755
    link = tarfile.TarInfo("pkg-1.0/docs/link")
    link.type, link.linkname = tarfile.SYMTYPE, "../README"
    archive = tar_of(tmp_path / f"pkg-1.0{suffix}", [
        (d, None), file_member("pkg-1.0/README", b"hello\n"), file_member("pkg-1.0/build.sh", b"#!/bin/sh\n", 0o755),
        (link, None),
    ], mode)
    dest = tmp_path / "work"
    top = extract_archive(archive, dest)
    assert top.name == "pkg-1.0"
    assert (top / "README").read_bytes() == b"hello\n"
    assert os.access(top / "build.sh", os.X_OK)
    assert (top / "docs" / "link").resolve() == (top / "README").resolve()
    assert not [p for p in dest.iterdir() if p.name.endswith(".partial")]


def test_zip_extracts_and_keeps_exec_bit(tmp_path: Path) -> None:
    import zipfile

    archive = tmp_path / "pkg-2.0.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("pkg-2.0/a.txt", b"a")
        info = zipfile.ZipInfo("pkg-2.0/run.sh")
        info.external_attr = (0o100755) << 16
        zf.writestr(info, b"#!/bin/sh\n")
    top = extract_archive(archive, tmp_path / "work")
    assert top.name == "pkg-2.0" and (top / "a.txt").read_bytes() == b"a"
    assert os.access(top / "run.sh", os.X_OK)


def _malicious_tars(tmp_path: Path) -> dict[str, tuple[list, str, str]]:
    """kind -> (members, member named in the error, reason fragment)."""
    outside = str(tmp_path / "escaped")
    return {
        "absolute": ([file_member(outside)], outside, "absolute path"),
        "dotdot": ([file_member("pkg/../../escaped")], "pkg/../../escaped", "'..'"),
        "symlink-outside": ([special_member("pkg/l", tarfile.SYMTYPE, "../../escaped")], "pkg/l", "symlink pointing outside"),
        "symlink-absolute": ([special_member("pkg/l", tarfile.SYMTYPE, outside)], "pkg/l", "symlink to absolute path"),
        "hardlink-outside": ([special_member("pkg/h", tarfile.LNKTYPE, "../escaped")], "pkg/h", "hardlink pointing outside"),
        "chardev": ([special_member("pkg/null", tarfile.CHRTYPE)], "pkg/null", "device file"),
        "blockdev": ([special_member("pkg/sda", tarfile.BLKTYPE)], "pkg/sda", "device file"),
        "fifo": ([special_member("pkg/pipe", tarfile.FIFOTYPE)], "pkg/pipe", "fifo"),
        # a harmless-looking link to "." followed by a member written through it
        "through-symlink": ([special_member("pkg/dot", tarfile.SYMTYPE, "."), special_member("pkg/dot/x", tarfile.SYMTYPE, "../../escaped")],
                            "pkg/dot/x", "through symlink"),
        # each link looks inside when read as text; followed on disk, "esc" is the tree's parent
        "symlink-chain": ([special_member("pkg/sub/up", tarfile.SYMTYPE, "../.."), special_member("pkg/esc", tarfile.SYMTYPE, "sub/up/..")],
                          "pkg/esc", "goes through symlink 'pkg/sub/up'"),
        "hardlink-to-missing": ([special_member("pkg/h", tarfile.LNKTYPE, "pkg/nothing")], "pkg/h", "not a regular file earlier"),
        "duplicate": ([file_member("pkg/ok.txt", b"second")], "pkg/ok.txt", "holds this name twice"),
        "long-link-target": ([special_member("pkg/l", tarfile.SYMTYPE, "n" * 300)], "pkg/l", "name longer than 255"),
        "long-name": ([file_member("pkg/" + "n" * 300)], "pkg/" + "n" * 300, "name longer than 255"),
    }


@pytest.mark.parametrize("kind", ["absolute", "dotdot", "symlink-outside", "symlink-absolute", "hardlink-outside",
                                  "chardev", "blockdev", "fifo", "through-symlink", "symlink-chain", "hardlink-to-missing",
                                  "duplicate", "long-link-target", "long-name"])
def test_malicious_tar_member_is_refused_by_name(tmp_path: Path, kind: str) -> None:
    members, name, reason = _malicious_tars(tmp_path)[kind]
    # a good file first: it must not survive the refusal either
    archive = tar_of(tmp_path / f"{kind}.tar.gz", [file_member("pkg/ok.txt"), *members])
    before = listing(tmp_path)
    with pytest.raises(ExtractionError) as err:
        extract_archive(archive, tmp_path / "work")
    msg = str(err.value)
    assert f"member {name!r}" in msg and "refused" in msg and reason in msg, msg
    assert err.value.hint
    after = listing(tmp_path)
    # only the (empty) destination parent may be new; nothing under it, nothing outside it
    assert after - before <= {"work"}
    assert list((tmp_path / "work").iterdir()) == []


@pytest.mark.parametrize("name", ["../escaped", "/tmp/escaped-abs", "pkg/../../escaped", "C:/escaped"])
def test_malicious_zip_member_is_refused_by_name(tmp_path: Path, name: str) -> None:
    archive = zip_of(tmp_path / "bad.zip", {"pkg/ok.txt": b"ok", name: b"evil"})
    before = listing(tmp_path)
    with pytest.raises(ExtractionError, match=rf"member '{name}'.*refused"):
        extract_archive(archive, tmp_path / "work")
    assert listing(tmp_path) - before <= {"work"}
    assert list((tmp_path / "work").iterdir()) == []
    assert not Path("/tmp/escaped-abs").exists()


def test_zip_symlink_is_refused(tmp_path: Path) -> None:
    import zipfile

    archive = tmp_path / "link.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        info = zipfile.ZipInfo("pkg/l")
        info.external_attr = 0o120777 << 16
        zf.writestr(info, b"/etc/passwd")
    with pytest.raises(ExtractionError, match=r"member 'pkg/l'.*symlink"):
        extract_archive(archive, tmp_path / "work")


def test_damaged_archive_leaves_no_scratch(tmp_path: Path) -> None:
    good = sdist_tar(tmp_path / "pkg.tar.gz", "pkg", {f"f{i}.txt": "x" * 5000 for i in range(50)})
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ExtractionError, match="cut.tar.gz"):
        extract_archive(cut, tmp_path / "work")
    assert list((tmp_path / "work").iterdir()) == []


def test_not_an_archive(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not an archive at all")
    with pytest.raises(ExtractionError, match="not a tar or zip archive"):
        extract_archive(junk, tmp_path / "work")
    assert list((tmp_path / "work").iterdir()) == []


def test_name_and_link_rules() -> None:
    assert member_problem("a/b/c") is None
    assert member_problem("./a") is None
    assert member_problem("/etc/passwd") == "absolute path"
    assert member_problem("a/../../b") == "path contains '..'"
    assert member_problem("a\\..\\b") == "path contains '..'"
    assert link_problem("a/b/l", "../c", hard=False) is None  # a/c: inside
    assert "outside" in (link_problem("a/l", "../../c", hard=False) or "")
    assert link_problem("a/h", "a/file", hard=True) is None  # hardlink targets are archive-root relative
    assert "outside" in (link_problem("a/h", "../file", hard=True) or "")


@pytest.mark.parametrize("keep", [5, 40, 100, "half"])
def test_truncated_tar_gz_is_damaged_not_a_traceback(tmp_path: Path, keep) -> None:
    """Cut within the first header (tarfile.is_tarfile raised EOFError there) or in the data: one clear error."""
    good = sdist_tar(tmp_path / "pkg.tar.gz", "pkg", {f"f{i}.bin": os.urandom(2000).hex() for i in range(20)})
    data = good.read_bytes()
    cut = tmp_path / "pkg-cut.tar.gz"
    cut.write_bytes(data[: len(data) // 2 if keep == "half" else keep])
    with pytest.raises(ExtractionError) as err:
        check_archive(cut)
    assert err.value.id == "extract.damaged" and "pkg-cut.tar.gz: damaged: it ends" in err.value.message
    assert "sha256 pin" in err.value.hint  # fetching again gets the same bytes: the pin is what to check


def test_truncated_tar_is_damaged(tmp_path: Path) -> None:
    """A plain tar cut in a member's data, and a complete gzip stream of such a cut tar."""
    import gzip

    good = tar_of(tmp_path / "pkg.tar", [file_member("pkg/small.txt"), file_member("pkg/big.bin", b"x" * 20000)], "w")
    cut = tmp_path / "cut.tar"
    cut.write_bytes(good.read_bytes()[:10000])
    with pytest.raises(ExtractionError, match=r"cut.tar: damaged"):
        check_archive(cut)
    regzipped = tmp_path / "cut.tar.gz"
    regzipped.write_bytes(gzip.compress(cut.read_bytes()))
    with pytest.raises(ExtractionError, match=r"cut.tar.gz: damaged: unexpected end of data"):
        check_archive(regzipped)


def test_zip_with_an_empty_member_name_is_refused(tmp_path: Path) -> None:
    """Found by the fuzzer: ZipInfo.is_dir() raised IndexError on a member without a name."""
    import zipfile

    archive = tmp_path / "e.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(zipfile.ZipInfo("x"), b"")
    archive.write_bytes(archive.read_bytes().replace(b"\x01\x00\x00\x00x", b"\x00\x00\x00\x00x"))  # name lengths 1 -> 0
    with pytest.raises(ExtractionError) as err:
        extract_archive(archive, tmp_path / "work")
    assert err.value.id in ("extract.member-refused", "extract.damaged"), err.value


def test_symlinked_single_top_with_a_long_target_is_refused(tmp_path: Path) -> None:
    """Found by the fuzzer: the only member, a symlink to a 300-byte name, made the top-folder check raise OSError."""
    archive = tar_of(tmp_path / "l.tar", [special_member("pkg", tarfile.SYMTYPE, "n" * 300)], "w")
    with pytest.raises(ExtractionError, match="name longer than 255"):
        extract_archive(archive, tmp_path / "work")


def test_a_name_that_is_not_an_archive_gets_the_right_hint(tmp_path: Path) -> None:
    """Random bytes named .tar.gz: not "point the recipe at a .tar.gz", which it already does."""
    junk = tmp_path / "pkg-1.0.tar.gz"
    junk.write_bytes(os.urandom(3000).replace(b"\x1f\x8b", b"ab"))
    with pytest.raises(ExtractionError) as err:
        check_archive(junk)
    assert "not a tar or zip archive although its name says so" in err.value.message
    assert "sha256" in err.value.hint and "point the recipe at" not in err.value.hint

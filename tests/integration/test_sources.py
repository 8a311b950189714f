"""Fetching into the content-addressed cache: archives over file://, real git repos with tags and
submodules, mirrors, offline mode, tree hashes, and one real sdist download from PyPI."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from source_support import commit, git, make_repo, sdist_tar, sha256_of

from wheelforge.model.errors import SourceError
from wheelforge.model.recipe import ArchiveSource, GitSource, PathSource, SdistSource
from wheelforge.sources.extract import extract_archive
from wheelforge.sources.fetch import (
    apply_mirrors,
    cache_root,
    checkout,
    fetch,
    resolve_submodule_url,
)
from wheelforge.sources.treehash import hash_tree

pytestmark = pytest.mark.integration

XFORMERS_SHA = "f7fc183a58e4bf0e2ae339a18fb1b1d4a37854c0f2545b4f360fef001646ab76"
UNREACHABLE = "https://127.0.0.1:9/"  # discard port: any network attempt fails at once


def quiet(_line: str) -> None:
    pass


class Echoes(list):
    def __call__(self, line: str) -> None:
        self.append(line)


# --------------------------------------------------------------------------- archives


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    return sdist_tar(tmp_path / "origin" / "pkg-1.0.tar.gz", "pkg-1.0", {"setup.py": "print(1)\n", "src/a.c": "int a;\n"})


def test_archive_is_cached_by_sha256_and_second_fetch_is_offline(tmp_path: Path, archive: Path) -> None:
    cache = tmp_path / "cache"
    src = ArchiveSource(url=archive.as_uri(), sha256=sha256_of(archive))
    first = fetch(src, cache_dir=cache, echo=quiet)
    assert first.kind == "archive" and first.digest == f"sha256:{src.sha256}"
    assert first.path == cache / "sources" / "sha256" / src.sha256 / "pkg-1.0.tar.gz"
    archive.unlink()  # the origin is gone: only the cache can answer now
    t0 = time.perf_counter()
    again = fetch(src, cache_dir=cache, offline=True, echo=quiet)
    print(f"second archive fetch: {time.perf_counter() - t0:.3f}s")
    assert again == first
    assert list((cache / "sources" / "tmp").iterdir()) == []


def test_wrong_sha256_names_url_expected_actual_and_leaves_nothing(tmp_path: Path, archive: Path) -> None:
    cache = tmp_path / "cache"
    wrong = "0" * 64
    with pytest.raises(SourceError) as err:
        fetch(ArchiveSource(url=archive.as_uri(), sha256=wrong), cache_dir=cache, echo=quiet)
    msg = str(err.value)
    assert err.value.id == "source.sha256-mismatch"
    assert archive.as_uri() in msg and wrong in msg and sha256_of(archive) in msg
    assert not (cache / "sources" / "sha256").exists()
    assert list((cache / "sources" / "tmp").iterdir()) == []


def test_offline_miss_names_the_entry_and_the_fix(tmp_path: Path, archive: Path) -> None:
    src = ArchiveSource(url=archive.as_uri(), sha256=sha256_of(archive))
    with pytest.raises(SourceError) as err:
        fetch(src, cache_dir=tmp_path / "cache", offline=True, echo=quiet)
    assert err.value.id == "source.offline-missing"
    assert src.sha256 in str(err.value) and src.url in str(err.value)
    assert "fetch" in (err.value.hint or "")


def test_mirror_rewrites_the_url(tmp_path: Path, archive: Path) -> None:
    src = ArchiveSource(url="https://downloads.example.invalid/releases/pkg-1.0.tar.gz", sha256=sha256_of(archive))
    mirrors = {"https://downloads.example.invalid/": "https://unused.invalid/",
               "https://downloads.example.invalid/releases/": archive.parent.as_uri() + "/"}
    echoes = Echoes()
    got = fetch(src, cache_dir=tmp_path / "cache", mirrors=mirrors, echo=echoes)
    assert sha256_of(got.path) == src.sha256
    assert any(str(archive) in e for e in echoes)  # the longest prefix won
    assert apply_mirrors("https://x/y", {}) == "https://x/y"


def test_corrupt_cache_entry_is_replaced_online_and_refused_offline(tmp_path: Path, archive: Path) -> None:
    cache = tmp_path / "cache"
    src = ArchiveSource(url=archive.as_uri(), sha256=sha256_of(archive))
    got = fetch(src, cache_dir=cache, echo=quiet)
    got.path.write_bytes(b"bit rot")
    with pytest.raises(SourceError, match="offline"):
        fetch(src, cache_dir=cache, offline=True, echo=quiet)
    again = fetch(src, cache_dir=cache, echo=quiet)
    assert sha256_of(again.path) == src.sha256


def test_sdist_with_explicit_url_and_cache_root_env(tmp_path: Path, archive: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WHEELFORGE_CACHE", str(tmp_path / "envcache"))
    assert cache_root() == tmp_path / "envcache"
    src = SdistSource(name="pkg", version="1.0", sha256=sha256_of(archive), url=archive.as_uri())
    got = fetch(src, echo=quiet)
    assert got.kind == "sdist" and got.path.is_relative_to(tmp_path / "envcache" / "sources")


@pytest.mark.timeout(300)
def test_real_pypi_sdist_download_then_cache_hit(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    src = SdistSource(name="xformers", version="0.0.35", sha256=XFORMERS_SHA)
    first = fetch(src, cache_dir=cache, echo=quiet)
    assert first.path.name == "xformers-0.0.35.tar.gz"
    assert sha256_of(first.path) == XFORMERS_SHA
    t0 = time.perf_counter()
    top = extract_archive(first.path, tmp_path / "work")
    print(f"xformers sdist extraction: {time.perf_counter() - t0:.3f}s")
    assert top.name == "xformers-0.0.35" and (top / "setup.py").is_file()
    # Proof of no network: every URL now points at a closed port, and offline mode forbids it anyway.
    dead = {"https://pypi.org/": UNREACHABLE, "https://files.pythonhosted.org/": UNREACHABLE}
    for offline in (False, True):
        t0 = time.perf_counter()
        again = fetch(src, cache_dir=cache, offline=offline, mirrors=dead, echo=quiet)
        print(f"second xformers fetch (offline={offline}): {time.perf_counter() - t0:.3f}s")
        assert again.path == first.path


# --------------------------------------------------------------------------- git


@pytest.fixture
def upstream(tmp_path: Path) -> dict:
    """A library repo used as a submodule, a nested submodule inside it, and a project tagged v1.0."""
    nested = tmp_path / "up" / "nested"
    make_repo(nested, {"n.txt": "nested\n"})
    lib = tmp_path / "up" / "lib"
    make_repo(lib, {"lib.h": "int lib;\n"})
    git(lib, "-c", "protocol.file.allow=always", "submodule", "add", "-q", nested.as_uri(), "third/nested")
    commit(lib, {})
    proj = tmp_path / "up" / "proj"
    make_repo(proj, {"setup.py": "print('proj')\n"})
    git(proj, "-c", "protocol.file.allow=always", "submodule", "add", "-q", lib.as_uri(), "vendor/lib")
    pinned = commit(proj, {"README": "v1\n"}, tag="v1.0")
    return {"proj": proj, "lib": lib, "nested": nested, "commit": pinned}


def test_git_fetch_checkout_with_submodules_then_offline_without_origin(tmp_path: Path, upstream: dict) -> None:
    cache = tmp_path / "cache"
    src = GitSource(url=upstream["proj"].as_uri(), tag="v1.0", commit=upstream["commit"])
    got = fetch(src, cache_dir=cache, echo=quiet)
    assert got.digest == f"git:{upstream['commit']}" and got.commit == upstream["commit"]
    assert got.path.parent == cache / "sources" / "git" and got.path.name.endswith(".git")
    assert len(got.submodules) == 2  # lib and lib's nested submodule, each mirrored

    for name in ("proj", "lib", "nested"):
        shutil.rmtree(upstream[name])  # upstream is gone: a second fetch and a checkout must need none of it
    echoes = Echoes()
    t0 = time.perf_counter()
    again = fetch(src, cache_dir=cache, offline=True, echo=echoes)
    print(f"second git fetch: {time.perf_counter() - t0:.3f}s")
    assert again == got
    assert all(" clone " not in e and " fetch " not in e for e in echoes)
    assert echoes and all(e.startswith(("$ ", "# ")) for e in echoes)  # every command echoed before it ran

    tree = checkout(again, tmp_path / "work" / "proj", echo=quiet)
    assert (tree / "README").read_text() == "v1\n"
    assert (tree / "vendor" / "lib" / "lib.h").read_text() == "int lib;\n"
    assert (tree / "vendor" / "lib" / "third" / "nested" / "n.txt").read_text() == "nested\n"
    assert git(tree, "rev-parse", "HEAD") == upstream["commit"]
    # the tree hash of such a checkout covers submodule content too
    h0 = hash_tree(tree, echo=quiet)
    (tree / "vendor" / "lib" / "third" / "nested" / "n.txt").write_text("edited\n")
    assert hash_tree(tree, echo=quiet) != h0


def test_git_moved_tag_is_refused_naming_both_commits(tmp_path: Path) -> None:
    repo = tmp_path / "up" / "p"
    old = make_repo(repo, {"a": "1\n"}, tag="v2")
    new = commit(repo, {"a": "2\n"}, tag="v2")  # upstream re-tags
    with pytest.raises(SourceError) as err:
        fetch(GitSource(url=repo.as_uri(), tag="v2", commit=old, submodules=False), cache_dir=tmp_path / "c", echo=quiet)
    assert err.value.id == "source.tag-moved"
    assert old in str(err.value) and new in str(err.value) and "v2" in str(err.value)


def test_git_new_tag_updates_the_existing_mirror(tmp_path: Path) -> None:
    repo = tmp_path / "up" / "p"
    c1 = make_repo(repo, {"a": "1\n"}, tag="v1")
    cache = tmp_path / "c"
    fetch(GitSource(url=repo.as_uri(), tag="v1", commit=c1), cache_dir=cache, echo=quiet)
    c2 = commit(repo, {"a": "2\n"}, tag="v2")
    with pytest.raises(SourceError, match="offline"):
        fetch(GitSource(url=repo.as_uri(), tag="v2", commit=c2), cache_dir=cache, offline=True, echo=quiet)
    got = fetch(GitSource(url=repo.as_uri(), tag="v2", commit=c2), cache_dir=cache, echo=quiet)
    assert got.commit == c2


def test_git_unknown_tag_and_offline_missing(tmp_path: Path) -> None:
    repo = tmp_path / "up" / "p"
    c1 = make_repo(repo, {"a": "1\n"}, tag="v1")
    with pytest.raises(SourceError, match="no tag 'v9'"):
        fetch(GitSource(url=repo.as_uri(), tag="v9", commit=c1), cache_dir=tmp_path / "c", echo=quiet)
    with pytest.raises(SourceError) as err:
        fetch(GitSource(url=repo.as_uri(), tag="v1", commit=c1), cache_dir=tmp_path / "c2", offline=True, echo=quiet)
    assert err.value.id == "source.offline-missing" and repo.as_uri() in str(err.value)


def test_relative_submodule_urls_resolve_like_git() -> None:
    assert resolve_submodule_url("https://h/org/proj.git", "../lib.git") == "https://h/org/lib.git"
    assert resolve_submodule_url("file:///srv/proj", "./sub") == "file:///srv/proj/sub"
    assert resolve_submodule_url("https://h/org/proj", "https://other/x.git") == "https://other/x.git"


# --------------------------------------------------------------------------- local trees


def test_tree_hash_of_a_git_checkout_follows_tracked_content(tmp_path: Path) -> None:
    repo = tmp_path / "mine"
    make_repo(repo, {"a.py": "1\n", "tool.sh": "#!/bin/sh\n"})
    h0 = hash_tree(repo)
    (repo / "untracked.o").write_text("junk")
    (repo / "build").mkdir()
    (repo / "build" / "x").write_text("junk")
    assert hash_tree(repo) == h0  # untracked clutter does not count
    (repo / "a.py").write_text("2\n")
    h1 = hash_tree(repo)
    assert h1 != h0  # an uncommitted edit does
    (repo / "a.py").write_text("1\n")
    assert hash_tree(repo) == h0
    (repo / "tool.sh").chmod(0o755)
    assert hash_tree(repo) != h0  # the x bit does


def test_tree_hash_of_a_plain_folder_ignores_dot_git(tmp_path: Path) -> None:
    tree = tmp_path / "plain"
    (tree / "src").mkdir(parents=True)
    (tree / "src" / "a.c").write_text("int a;\n")
    h0 = hash_tree(tree)
    (tree / ".git").mkdir()
    (tree / ".git" / "HEAD").write_text("x")
    assert hash_tree(tree) == h0
    (tree / "src" / "b.c").write_text("int b;\n")
    assert hash_tree(tree) != h0
    got = fetch(PathSource(path=str(tree)), echo=quiet)
    assert got.kind == "path" and got.digest == f"tree:{hash_tree(tree)}" and got.path == tree.resolve()


def test_tree_hash_stat_cache_skips_reads_and_still_sees_every_edit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from wheelforge.sources import treehash

    tree, cache = tmp_path / "plain", tmp_path / "treestat"
    (tree / "src" / "deep").mkdir(parents=True)
    for i in range(5):
        (tree / "src" / "deep" / f"f{i}.c").write_text(f"int f{i};\n")
    link = tree / "src" / "link.c"
    link.symlink_to("deep/f0.c")
    plain = hash_tree(tree)
    # files younger than RACY_SECONDS are never trusted from the cache: every one is read again
    assert hash_tree(tree, stat_cache=cache) == plain
    assert not any(json.loads(f.read_text())["files"] for f in cache.glob("*.json"))
    monkeypatch.setattr(treehash, "RACY_SECONDS", 0.0)  # as if the files were old enough
    reads: list[str] = []
    real = treehash._file_digest
    monkeypatch.setattr(treehash, "_file_digest", lambda full: reads.append(full) or real(full))
    assert hash_tree(tree, stat_cache=cache) == plain and len(reads) == 5
    reads.clear()
    assert hash_tree(tree, stat_cache=cache) == plain and reads == []  # nothing read the second time
    # an edit that keeps size and mtime still shows: the ctime moves
    f1 = tree / "src" / "deep" / "f1.c"
    st = f1.stat()
    f1.write_text("int g1;\n")
    os.utime(f1, ns=(st.st_atime_ns, st.st_mtime_ns))
    edited = hash_tree(tree, stat_cache=cache)
    assert edited != plain and reads == [str(f1)]
    assert edited == hash_tree(tree)
    # a damaged cache costs reads, never a wrong hash
    for f in cache.glob("*.json"):
        f.write_text("{not json")
    assert hash_tree(tree, stat_cache=cache) == edited

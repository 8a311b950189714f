"""Content hash of a local source tree (the key of ``build --source PATH``).

* A git checkout (a folder with ``.git``): the files ``git ls-files -s
  --recurse-submodules`` lists, read from the *working tree*, so uncommitted
  edits change the key and untracked clutter (build folders, editor files)
  does not.
* A plain folder: every file below it except anything named ``.git`` and ``__pycache__``
  folders (bytecode that Python and pip write beside sources, never a build input).

Each file contributes its relative path, whether it is executable, a symlink's
target or a regular file's sha256.  The order is sorted by path bytes, so the
hash depends on content only, never on the file system's listing order.

With a ``stat_cache`` folder, a file whose (size, mtime, ctime, inode, device)
match the last hashing is not read again (git's index does the same).  ctime
cannot be set by a user, so an edit that keeps size and mtime still shows; a
file changed within two seconds of being hashed is never cached ("racy git").
The cache only skips reads: the tree hash is the same with or without it.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from wheelforge.model.errors import SourceError


def is_git_checkout(path: Path, *, echo: Callable[[str], None] | None = None) -> bool:
    """True for the top of a working git checkout; a stray or broken ``.git`` makes a plain folder."""
    if not (path / ".git").exists():
        return False
    from wheelforge.model.report import silent as default_echo
    from wheelforge.sources.git import run

    proc = run(["git", "-C", str(path), "rev-parse", "--show-toplevel"], echo=default_echo if echo is None else echo, check=False)
    return proc.returncode == 0 and Path(proc.stdout.strip()).resolve() == path.resolve()


def tracked_files(path: Path, *, echo: Callable[[str], None] | None = None) -> tuple[list[str], dict[str, str]]:
    """Files git tracks in ``path`` (submodules recursed), and gitlinks of submodules not checked out."""
    from wheelforge.model.report import silent as default_echo
    from wheelforge.sources.git import run

    proc = run(["git", "-C", str(path), "ls-files", "-s", "-z", "--recurse-submodules"],
               echo=default_echo if echo is None else echo, check=False)
    if proc.returncode != 0:
        raise SourceError(
            "source.git-ls-files", f"{path}: git ls-files failed: {proc.stderr.strip().splitlines()[-1:]}",
            "make sure the folder is a readable git checkout, or remove its .git to hash it as a plain folder",
        )
    out, links = [], {}
    for rec in proc.stdout.split("\0"):
        if rec:
            meta, _, rel = rec.partition("\t")
            mode, obj = meta.split()[:2]
            if mode == "160000":
                links[rel] = obj  # an uninitialised submodule: its pinned commit stands for its content
            else:
                out.append(rel)
    return sorted(set(out)), links


def plain_files(path: Path) -> list[str]:
    out = []
    top = os.fspath(path)
    for dirpath, dirnames, filenames in os.walk(top):
        # __pycache__: bytecode Python writes beside sources (pip does on install); never a build input
        dirnames[:] = [d for d in dirnames if d not in (".git", "__pycache__")]
        # string work, not pathlib: this runs for every file of the tree on each no-op rebuild
        prefix = os.path.relpath(dirpath, top).replace(os.sep, "/") + "/"
        prefix = "" if prefix == "./" else prefix
        out += [prefix + name for name in filenames if name != ".git"]
        out += [prefix + d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
    return sorted(set(out))


#: Seconds within which a file's change could go unseen by its timestamps (see module doc).
RACY_SECONDS = 2.0


def _stat_key(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev, st.st_mode]


def _file_digest(full: str) -> str:
    fh = hashlib.sha256()
    with open(full, "rb") as f:
        while chunk := f.read(1 << 20):
            fh.update(chunk)
    return fh.hexdigest()


def hash_files(root: Path, rels: Iterable[str], gitlinks: dict[str, str] | None = None, *,
               known: dict[str, list] | None = None, seen: dict[str, list] | None = None) -> str:
    """The tree hash.  ``known``: rel -> [*stat key, sha256] from an earlier run, trusted while the stat key
    matches; ``seen`` is filled with the entries safe to keep for the next run."""
    h = hashlib.sha256(b"wheelforge-tree-v1\n")
    for rel, commit in sorted((gitlinks or {}).items()):
        h.update(b"S " + rel.encode() + b"\0" + commit.encode() + b"\n")
    top = os.fspath(root)
    racy_after = (time.time() - RACY_SECONDS) * 1e9
    for rel in sorted(rels, key=lambda r: r.encode()):
        full = os.path.join(top, rel)
        try:
            st = os.lstat(full)
        except FileNotFoundError:
            h.update(b"D " + rel.encode() + b"\0\n")  # tracked but deleted in the working tree
            continue
        if stat.S_ISLNK(st.st_mode):
            h.update(b"L " + rel.encode() + b"\0" + os.readlink(full).encode() + b"\n")
        elif stat.S_ISREG(st.st_mode):
            key = _stat_key(st)
            old = (known or {}).get(rel)
            digest = old[-1] if old and old[:-1] == key else _file_digest(full)
            if seen is not None and max(st.st_mtime_ns, st.st_ctime_ns) < racy_after:
                seen[rel] = [*key, digest]
            kind = b"X " if st.st_mode & 0o111 else b"F "
            h.update(kind + rel.encode() + b"\0" + digest.encode() + b"\n")
        # directories (a symlinked dir listed by os.walk is handled above) carry no content of their own
    return h.hexdigest()


def stat_cache_dir(cache: str | os.PathLike[str]) -> Path:
    """Where the stat caches of local trees live inside wheelforge's cache folder."""
    return Path(cache) / "treestat"


def _cache_file(stat_cache: Path, root: Path) -> Path:
    return stat_cache / (hashlib.sha256(os.fsencode(root.resolve())).hexdigest()[:32] + ".json")


def _load_known(file: Path) -> dict[str, list]:
    try:
        data = json.loads(file.read_text())
    except (OSError, ValueError):
        return {}  # none yet, or unreadable: hash every file (the cache only ever saves reads)
    return data.get("files", {}) if isinstance(data, dict) and data.get("version") == 1 else {}


def _save_known(file: Path, root: Path, seen: dict[str, list]) -> None:
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=file.parent, prefix=".tmp-", suffix=".json")
        with os.fdopen(fd, "w") as fh:
            json.dump({"version": 1, "root": str(root.resolve()), "files": seen}, fh)
        os.replace(tmp, file)  # whole or not at all: a reader never sees half a cache
    except OSError:
        pass  # a read-only cache folder costs speed, never correctness


def hash_tree(path: str | os.PathLike[str], *, echo: Callable[[str], None] | None = None,
              stat_cache: str | os.PathLike[str] | None = None) -> str:
    """64-hex content hash of a local tree (see module doc for what counts and for ``stat_cache``)."""
    root = Path(path)
    if not root.is_dir():
        raise SourceError("source.path-missing", f"source folder {root} does not exist", "pass an existing folder to --source")
    if is_git_checkout(root, echo=echo):
        rels, links = tracked_files(root, echo=echo)
    else:
        rels, links = plain_files(root), {}
    if stat_cache is None:
        return hash_files(root, rels, links)
    file = _cache_file(Path(stat_cache), root)
    known, seen = _load_known(file), {}
    digest = hash_files(root, rels, links, known=known, seen=seen)
    if seen != known:
        _save_known(file, root, seen)
    return digest

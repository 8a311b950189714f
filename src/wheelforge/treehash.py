"""Content hash of a local source tree (the key of ``build --source PATH``).

* A git checkout (a folder with ``.git``): the files ``git ls-files -s
  --recurse-submodules`` lists, read from the *working tree*, so uncommitted
  edits change the key and untracked clutter (build folders, editor files)
  does not.
* A plain folder: every file below it except anything named ``.git``.

Each file contributes its relative path, whether it is executable, a symlink's
target or a regular file's sha256.  The order is sorted by path bytes, so the
hash depends on content only, never on the file system's listing order.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable, Iterable
from pathlib import Path

from .errors import SourceError


def is_git_checkout(path: Path, *, echo: Callable[[str], None] | None = None) -> bool:
    """True for the top of a working git checkout; a stray or broken ``.git`` makes a plain folder."""
    if not (path / ".git").exists():
        return False
    from .sources import default_echo, run

    proc = run(["git", "-C", str(path), "rev-parse", "--show-toplevel"], echo=default_echo if echo is None else echo, check=False)
    return proc.returncode == 0 and Path(proc.stdout.strip()).resolve() == path.resolve()


def tracked_files(path: Path, *, echo: Callable[[str], None] | None = None) -> tuple[list[str], dict[str, str]]:
    """Files git tracks in ``path`` (submodules recursed), and gitlinks of submodules not checked out."""
    from .sources import default_echo, run

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
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames[:] = [d for d in dirnames if d != ".git"]
        rel_dir = Path(dirpath).relative_to(path)
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            if name != ".git":
                out.append((rel_dir / name).as_posix())
    return sorted(set(out))


def hash_files(root: Path, rels: Iterable[str], gitlinks: dict[str, str] | None = None) -> str:
    h = hashlib.sha256(b"wheelforge-tree-v1\n")
    for rel, commit in sorted((gitlinks or {}).items()):
        h.update(b"S " + rel.encode() + b"\0" + commit.encode() + b"\n")
    for rel in sorted(rels, key=lambda r: r.encode()):
        full = root / rel
        try:
            st = os.lstat(full)
        except FileNotFoundError:
            h.update(b"D " + rel.encode() + b"\0\n")  # tracked but deleted in the working tree
            continue
        if stat.S_ISLNK(st.st_mode):
            h.update(b"L " + rel.encode() + b"\0" + os.readlink(full).encode() + b"\n")
        elif stat.S_ISREG(st.st_mode):
            fh = hashlib.sha256()
            with open(full, "rb") as f:
                while chunk := f.read(1 << 20):
                    fh.update(chunk)
            kind = b"X " if st.st_mode & 0o111 else b"F "
            h.update(kind + rel.encode() + b"\0" + fh.hexdigest().encode() + b"\n")
        # directories (a symlinked dir listed by os.walk is handled above) carry no content of their own
    return h.hexdigest()


def hash_tree(path: str | os.PathLike[str], *, echo: Callable[[str], None] | None = None) -> str:
    """64-hex content hash of a local tree (see module doc for what counts)."""
    root = Path(path)
    if not root.is_dir():
        raise SourceError("source.path-missing", f"source folder {root} does not exist", "pass an existing folder to --source")
    if is_git_checkout(root, echo=echo):
        rels, links = tracked_files(root, echo=echo)
        return hash_files(root, rels, links)
    return hash_files(root, plain_files(root))

"""Apply a recipe's patch series to a fresh copy of a fetched source.

The pristine source in the cache is only ever read: each build gets a new copy
(extracted archive, ``git clone --shared`` checkout or copied local tree) inside
a ``*.partial`` folder under ``work_dir``; the series is applied there and the
folder is renamed only when every patch applied.  On failure the copy is
removed and the error names the patch, the target file and the hunk.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.version import Version

from wheelforge.model.errors import PatchError, SourceError, WheelforgeError
from wheelforge.model.recipe import Recipe
from wheelforge.model.report import Echo
from wheelforge.model.report import silent as default_echo
from wheelforge.sources.extract import extract_archive
from wheelforge.sources.fetch import FetchedSource, checkout, fetch, verify_cached
from wheelforge.sources.git import git_env, run

# --------------------------------------------------------------------------- pure parts

_DIFF_GIT = re.compile(r"^diff --git (\S+) (\S+)$")
_PATH_LINE = re.compile(r"^(?:---|\+\+\+) (\S+)")
_RENAME = re.compile(r"^(?:rename|copy) (?:from|to) (.+)$")
_HUNK = re.compile(r"^@@ -(\d+)(?:,\d+)? \+\d+(?:,\d+)? @@.*$")
_FAILED = re.compile(r"^error: patch failed: (.+):(\d+)$", re.MULTILINE)
_OTHER = re.compile(r"^error: (.+?): (No such file or directory|does not exist in index|already exists in working directory|"
                    r"patch does not apply|wrong type|does not match index)$", re.MULTILINE)


def _strip_prefix(path: str, level: int = 1) -> str:
    path = path.strip('"').split("\t", 1)[0]
    if path == "/dev/null":
        return path
    parts = path.split("/")
    return "/".join(parts[level:]) if len(parts) > level else path


def patch_paths(text: str) -> list[str]:
    """Every path a unified/git diff reads or writes, with the a/ b/ prefix removed (git apply's -p1)."""
    paths: list[str] = []
    for line in text.splitlines():
        if m := _DIFF_GIT.match(line):
            paths += [_strip_prefix(m.group(1)), _strip_prefix(m.group(2))]
        elif m := _PATH_LINE.match(line):
            paths.append(_strip_prefix(m.group(1)))
        elif m := _RENAME.match(line):
            paths.append(m.group(1).strip('"'))  # rename/copy lines carry no a/ b/ prefix
    return [p for p in dict.fromkeys(paths) if p != "/dev/null"]


def unsafe_path(path: str) -> str | None:
    """Why a patched path escapes the tree, or None."""
    if path.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", path):
        return "absolute path"
    if ".." in path.replace("\\", "/").split("/"):
        return "path contains '..'"
    return None


def hunk_header(text: str, target: str, line: int | None) -> str | None:
    """The ``@@`` header of the hunk for ``target`` starting at old line ``line`` (git's 'patch failed: f:LINE')."""
    current: str | None = None
    first: str | None = None
    for raw in text.splitlines():
        if m := _DIFF_GIT.match(raw):
            current = _strip_prefix(m.group(2))
        elif raw.startswith("+++ "):
            p = _strip_prefix(raw[4:])
            current = p if p != "/dev/null" else current
        elif current == target and (m := _HUNK.match(raw)):
            first = first or raw
            if line is not None and int(m.group(1)) == line:
                return raw
    return first


def parse_apply_error(stderr: str) -> tuple[str | None, int | None]:
    """(target file, hunk's old start line) from ``git apply`` stderr."""
    if m := _FAILED.search(stderr):
        return m.group(1), int(m.group(2))
    if m := _OTHER.search(stderr):
        return m.group(1), None
    return None, None


def patch_digests(recipe: Recipe, version: str) -> list[tuple[str, str]]:
    """(file, sha256) of every patch that applies to ``version``, in series order; part of the cache key."""
    out = []
    for ref in recipe.patches_for(version):
        path = recipe.patch_dir / ref.file
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise PatchError(
                "patch.missing", f"recipe {recipe.name}: patch file {path} cannot be read ({exc.strerror})",
                f"add the file or remove its [[patches]] entry from {recipe.path}",
            ) from None
        out.append((ref.file, hashlib.sha256(data).hexdigest()))
    return out


# --------------------------------------------------------------------------- preparing a tree


@dataclass(frozen=True)
class PreparedSource:
    path: Path
    patches: tuple[tuple[str, str], ...] = ()
    digest: str = ""  # the FetchedSource digest the tree came from


def _copy_local(src: Path, dest: Path, echo: Echo) -> None:
    """Copy a local source: tracked files of a git checkout, else all but .git (what treehash hashes)."""
    from wheelforge.sources.treehash import is_git_checkout, plain_files, tracked_files

    echo(f"# copy {src} -> {dest}")
    rels = tracked_files(src, echo=echo)[0] if is_git_checkout(src, echo=echo) else plain_files(src)
    dest.mkdir(parents=True)
    for rel in rels:
        s, d = src / rel, dest / rel
        if not os.path.lexists(s):
            continue  # tracked but deleted in the working tree: deleted in the copy too
        d.parent.mkdir(parents=True, exist_ok=True)
        if s.is_symlink():
            os.symlink(os.readlink(s), d)
        elif s.is_file():
            shutil.copy2(s, d)


def check_patch_paths(patch: Path, label: str) -> str:
    """Refuse a patch that names a path outside the tree (before git sees it); return its text."""
    text = patch.read_text(encoding="utf-8", errors="replace")
    paths = patch_paths(text)
    if not paths:
        raise PatchError("patch.empty", f"patch {patch.name} ({label}) changes no file", "regenerate it with `git diff` or `git format-patch`")
    for p in paths:
        if reason := unsafe_path(p):
            raise PatchError(
                "patch.outside-tree", f"patch {patch.name} ({label}) touches {p!r} outside the source tree: refused ({reason})",
                "patches may only change files inside the source; regenerate it from the tree root",
            )
    return text


def apply_patch(tree: Path, patch: Path, *, label: str, echo: Echo) -> None:
    """``git apply --check`` then ``git apply`` of one patch inside ``tree``."""
    text = check_patch_paths(patch, label)
    # The ceiling stops git from finding an enclosing repository above the tree: inside one,
    # `git apply` run from a subfolder silently skips paths outside that subfolder.
    env = git_env({"GIT_CEILING_DIRECTORIES": str(tree.parent)})
    for args in (["--check"], []):
        proc = run(["git", "apply", *args, "--whitespace=nowarn", str(patch)], cwd=tree, env=env, echo=echo, check=False)
        if proc.returncode != 0:
            target, line = parse_apply_error(proc.stderr)
            hunk = hunk_header(text, target, line) if target else None
            where = f"{target}" + (f" hunk '{hunk}'" if hunk else "") if target else "(git named no file)"
            said = (proc.stderr.strip().splitlines() or ["(no output)"])[0]
            raise PatchError(
                "patch.does-not-apply", f"patch {patch.name} does not apply to {label}: {where}",
                f"refresh the patch against this version or narrow its `when` range; git apply said: {said}",
            )


def prepare_tree(
    fetched: FetchedSource, recipe: Recipe, version: str, work_dir: str | os.PathLike[str], *, echo: Echo | None = None,
    subdir: str | None = None,
) -> PreparedSource:
    """A fresh, patched copy of ``fetched`` under ``work_dir``; the cache is only read.

    ``subdir``: build a folder inside the archive (a project vendored in another's sdist); the
    patches apply to it.
    """
    echo = default_echo if echo is None else echo
    work_dir = Path(work_dir)
    digests = patch_digests(recipe, version)  # fail early on a missing patch file ...
    label = f"{recipe.name} {version}"
    for ref in recipe.patches_for(version):
        check_patch_paths(recipe.patch_dir / ref.file, label)  # ... or an unsafe one, before writing anything
    work_dir.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f"{recipe.name}-{version}-", suffix=".partial", dir=work_dir))
    try:
        if fetched.kind in ("archive", "sdist"):
            verify_cached(fetched)  # never unpack bytes that no longer match the pin
            echo(f"# extract {fetched.path}")
            tree = extract_archive(fetched.path, stage)
            if subdir:
                tree = tree / subdir
                if not tree.is_dir():
                    raise SourceError("source.subdir-missing", f"{fetched.path.name} has no folder {subdir!r}",
                                      f"check `subdir` in {recipe.path}")
        elif fetched.kind == "git":
            tree = checkout(fetched, stage / "src", echo=echo)
        elif fetched.kind == "path":
            tree = stage / "src"
            _copy_local(fetched.path, tree, echo)
        else:
            raise SourceError("source.unknown-type", f"cannot prepare a {fetched.kind!r} source", "use git, archive, sdist or path")
        for ref in recipe.patches_for(version):
            echo(f"# patch {ref.file}" + (f"  ({ref.why})" if ref.why else ""))
            apply_patch(tree, recipe.patch_dir / ref.file, label=label, echo=echo)
        final = stage.with_name(stage.name[: -len(".partial")])
        os.rename(stage, final)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return PreparedSource(path=final / tree.relative_to(stage), patches=tuple(digests), digest=fetched.digest)


# --------------------------------------------------------------------------- invoke patches.check


@dataclass(frozen=True)
class SeriesResult:
    version: str
    ok: bool
    patches: tuple[tuple[str, str], ...] = ()
    error: str = ""
    hint: str = ""


def check_series(
    recipe: Recipe, versions: Sequence[str] | None = None, *, cache_dir: str | os.PathLike[str] | None = None,
    offline: bool = False, mirrors: Mapping[str, str] | None = None, work_dir: str | os.PathLike[str] | None = None,
    echo: Echo | None = None,
) -> list[SeriesResult]:
    """Fetch each version and apply its series to a throw-away copy; one result per version (never raises for a version)."""
    echo = default_echo if echo is None else echo
    versions = list(versions) if versions else sorted(recipe.versions, key=Version)
    results = []
    with tempfile.TemporaryDirectory(prefix="wheelforge-patch-check-", dir=work_dir) as tmp:
        for version in versions:
            try:
                pin = recipe.pin(version)
                fetched = fetch(recipe.resolve_source(pin), cache_dir=cache_dir, offline=offline, mirrors=mirrors, echo=echo)
                prepared = prepare_tree(fetched, recipe, version, tmp, echo=echo)
                shutil.rmtree(Path(tmp) / prepared.path.relative_to(tmp).parts[0], ignore_errors=True)
                results.append(SeriesResult(version, True, prepared.patches))
            except WheelforgeError as exc:  # a bad version must not hide the report of the others
                results.append(SeriesResult(version, False, error=exc.render().splitlines()[0], hint=exc.hint or ""))
    return results

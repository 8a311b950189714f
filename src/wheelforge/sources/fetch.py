"""Fetch pinned sources into a content-addressed cache.

Layout under ``<cache root>/sources`` (cache root: ``cache_dir`` argument, else
``WHEELFORGE_CACHE``, else ``$XDG_CACHE_HOME/wheelforge``, else ``~/.cache/wheelforge``)::

    sha256/<hex>/<filename>      archives and sdists, named by the sha256 of their bytes
    git/<sha256 of url>.git      bare mirrors (``git clone --mirror``), keyed by the recipe's URL
    tmp/                         downloads in flight; removed on failure
    .locks/<key>.lock            one lock per entry so parallel builds do not race

Trust rule: bytes are verified against the pin *before* they get their final
name, and every cache hit re-hashes the file.  sha256 runs at about 1 GB/s, so a
100 MB sdist costs ~0.1 s; we prefer that over trusting a marker file that a
half-finished copy or a disk error could make stale.  A git mirror is trusted
through git's own content addressing: the pinned commit is an object name.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit
from urllib.request import url2pathname

from filelock import FileLock

from wheelforge.host.digest import sha256_file
from wheelforge.host.index_client import PYPI_SIMPLE, IndexClient, IndexClientError, display_url, session
from wheelforge.model.errors import ExtractionError, SourceError
from wheelforge.model.recipe import ArchiveSource, GitSource, PathSource, SdistSource, Source
from wheelforge.model.report import Echo, silent
from wheelforge.sources.git import git_env, run

_CHUNK = 1 << 20
#: Called with (bytes done, bytes in all or 0) while a download runs.
Progress = Callable[[int, int], None]
_HINT_OFFLINE = "run `invoke fetch` once while online, or copy the file into the cache at the path shown"


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class FetchedSource:
    """A pinned source present in the cache.

    ``digest`` names the bytes: ``sha256:<hex>`` (archive/sdist), ``git:<commit>``
    or ``tree:<sha256>`` (local path source, see :mod:`wheelforge.sources.treehash`).
    ``path`` is the cached archive file, the bare mirror, or the local folder.
    """

    kind: str
    digest: str
    path: Path
    url: str | None = None
    tag: str | None = None
    #: git only: (url as written upstream, local bare mirror) for every submodule, recursively
    submodules: tuple[tuple[str, str], ...] = ()

    @property
    def commit(self) -> str | None:
        return self.digest[4:] if self.digest.startswith("git:") else None

    @property
    def sha256(self) -> str | None:
        return self.digest[7:] if self.digest.startswith("sha256:") else None


# --------------------------------------------------------------------------- small helpers


def cache_root(cache_dir: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if cache_dir:
        return Path(cache_dir)
    if env.get("WHEELFORGE_CACHE"):
        return Path(env["WHEELFORGE_CACHE"])
    return Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "wheelforge"  # same default as config.Settings


def sources_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    return cache_root(cache_dir) / "sources"


def apply_mirrors(url: str, mirrors: Mapping[str, str] | None) -> str:
    """Rewrite ``url`` with the longest matching prefix of the mirror table."""
    if not mirrors:
        return url
    best = max((p for p in mirrors if url.startswith(p)), key=len, default=None)
    return url if best is None else mirrors[best] + url[len(best):]


# --------------------------------------------------------------------------- fetch


def fetch(
    source: Source,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    offline: bool = False,
    mirrors: Mapping[str, str] | None = None,
    progress: Progress | None = None,
    echo: Echo | None = None,
) -> FetchedSource:
    """Make the pinned ``source`` present in the cache and return where it is.

    A cache hit does no network I/O.  ``offline=True`` never touches the network
    and fails naming the missing entry.  ``mirrors`` maps URL prefixes to
    replacement prefixes (``[tool.wheelforge.mirrors]``).
    """
    echo = silent if echo is None else echo
    root = sources_dir(cache_dir)
    if isinstance(source, PathSource):
        from wheelforge.sources.treehash import hash_tree, stat_cache_dir

        path = Path(source.path).resolve()
        if not path.is_dir():
            raise SourceError("source.path-missing", f"source folder {path} does not exist", "pass an existing folder to --source")
        return FetchedSource(kind="path", digest=f"tree:{hash_tree(path, echo=echo, stat_cache=stat_cache_dir(cache_root(cache_dir)))}", path=path)
    if isinstance(source, ArchiveSource):
        filename = _url_filename(source.url)
        file = _fetch_file(root, source.sha256, filename, lambda: source.url, offline=offline,
                           mirrors=mirrors, progress=progress, echo=echo, what=source.url)
        return FetchedSource(kind="archive", digest=f"sha256:{source.sha256}", path=file, url=source.url)
    if isinstance(source, SdistSource):
        what = f"sdist {source.name} {source.version} (sha256 {source.sha256[:12]}...)"

        def resolve() -> str:
            if source.url:
                return source.url
            return _resolve_sdist_url(source, mirrors=mirrors, echo=echo)

        file = _fetch_file(root, source.sha256, source.filename, resolve, offline=offline,
                           mirrors=mirrors, progress=progress, echo=echo, what=what)
        return FetchedSource(kind="sdist", digest=f"sha256:{source.sha256}", path=file, url=source.url)
    if isinstance(source, GitSource):
        return _fetch_git(root, source, offline=offline, mirrors=mirrors, echo=echo)
    raise SourceError("source.unknown-type", f"unknown source type {type(source).__name__}", "use git, archive, sdist or path")


def verify_cached(fetched: FetchedSource) -> None:
    """Re-hash a cached archive; raise if it no longer matches its pin."""
    if fetched.sha256 is None:
        return
    actual = sha256_file(fetched.path)
    if actual != fetched.sha256:
        raise SourceError(
            "source.cache-corrupt", f"cached {fetched.path} has sha256 {actual}, expected {fetched.sha256}",
            f"delete {fetched.path.parent} and fetch again",
        )


# --------------------------------------------------------------------------- archives and sdists


def _url_filename(url: str) -> str:
    name = unquote(urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1])
    # a filename from a URL lands in a path: keep it one plain component
    return name if name and name not in (".", "..") and "/" not in name and "\\" not in name else "source"


def _cached_file(entry: Path) -> Path | None:
    if not entry.is_dir():
        return None
    files = [p for p in entry.iterdir() if not p.name.startswith(".") and p.is_file()]
    return files[0] if len(files) == 1 else None


def _fetch_file(
    root: Path, sha256: str, filename: str | None, url_of: Callable[[], str], *,
    offline: bool, mirrors: Mapping[str, str] | None, progress: Progress | None, echo: Echo, what: str,
) -> Path:
    entry = root / "sha256" / sha256
    hit = _cached_file(entry)
    if hit is not None and sha256_file(hit) == sha256:
        echo(f"# cache hit {hit}")
        return hit
    if offline:
        raise SourceError(
            "source.offline-missing",
            f"offline: {what} is not in the cache (expected {entry}/{filename or '<file>'})",
            _HINT_OFFLINE,
        )
    (root / ".locks").mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / ".locks" / f"sha256-{sha256}.lock")):
        hit = _cached_file(entry)
        if hit is not None:
            if sha256_file(hit) == sha256:
                return hit  # another process finished it while we waited
            echo(f"# cached {hit} does not match its pin; removing it")
            shutil.rmtree(entry)
        url = url_of()
        filename = filename or _url_filename(url)
        real_url = apply_mirrors(url, mirrors)
        tmp_dir = root / "tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=tmp_dir, prefix=f"{filename}.", suffix=".part")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                actual = _download(real_url, out, progress=progress, echo=echo)
            if actual != sha256:
                raise SourceError(
                    "source.sha256-mismatch",
                    f"{display_url(real_url)}: sha256 mismatch: expected {sha256}, got {actual}",
                    "the upstream file changed or the pin is wrong; check the file and update sha256 in the recipe only if you trust it",
                )
            # The bytes are the pinned ones; whether they are a safe archive is checked before they are cached
            # (the same member rules as extraction), so nothing hostile or damaged ever gets a name here.
            _check_download(tmp, filename)
            # verified: only now does the entry appear, by one rename
            entry.mkdir(parents=True, exist_ok=True)
            final = entry / filename
            os.replace(tmp, final)
            return final
        finally:
            tmp.unlink(missing_ok=True)


def _check_download(tmp: Path, filename: str) -> None:
    from wheelforge.sources.extract import check_archive

    try:
        check_archive(tmp, label=filename)
    except ExtractionError as exc:
        raise ExtractionError(exc.id, exc.message, f"{exc.hint}; the download was removed, nothing was cached") from None


def _download(url: str, out, *, progress: Progress | None, echo: Echo) -> str:
    """Stream ``url`` into ``out``; return the sha256 of what was written."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        src = Path(url2pathname(unquote(parts.path)))
        echo(f"# copy {src}")
        try:
            size = src.stat().st_size
            with open(src, "rb") as f:
                return _copy_hashing(f.read, out, size, src.name, progress)
        except OSError as exc:
            raise SourceError("source.not-found", f"cannot read {url}: {exc.strerror}", "check the file:// URL or the mirror table") from None
    if parts.scheme not in ("https", "http"):
        raise SourceError("source.bad-url", f"cannot download {url!r}: scheme {parts.scheme!r} unsupported", "use https:// or file://")

    import requests

    echo(f"# GET {display_url(url)}")
    last: Exception | None = None
    for attempt in range(3):  # urllib3 retries connects/statuses; this loop covers a body cut mid-stream
        out.seek(0)
        out.truncate()
        try:
            with session().get(url, stream=True, timeout=(15, 120)) as r:
                if r.status_code != 200:
                    raise SourceError(
                        "source.download-failed", f"GET {display_url(url)}: HTTP {r.status_code}",
                        "check the URL (and the mirror table); 404 means the file is not there",
                    )
                size = int(r.headers.get("Content-Length") or 0)
                it = r.iter_content(_CHUNK)
                return _copy_hashing(lambda _n, it=it: next(it, b""), out, size, _url_filename(url), progress)
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
            last = exc
            time.sleep(1 + attempt)
    raise SourceError(
        "source.unreachable", f"GET {display_url(url)} failed after retries: {type(last).__name__}",
        "check the network, or add a mirror in [tool.wheelforge.mirrors], or use --offline with a filled cache",
    )


def _copy_hashing(read: Callable[[int], bytes], out, size: int, label: str, progress: Progress | None) -> str:
    h = hashlib.sha256()
    done = 0
    while chunk := read(_CHUNK):
        h.update(chunk)
        out.write(chunk)
        done += len(chunk)
        if progress is not None:
            progress(done, size)
    return h.hexdigest()


def _resolve_sdist_url(source: SdistSource, *, mirrors: Mapping[str, str] | None, echo: Echo) -> str:
    """Find the sdist whose sha256 equals the pin on the simple index; return its upstream URL."""
    real = apply_mirrors(PYPI_SIMPLE, mirrors)
    try:
        found = IndexClient(real, echo=echo).files(source.name)
    except IndexClientError as exc:
        raise exc.as_(SourceError, {"index-client.unreachable": "source.unreachable", "*": "source.index-failed"},
                      "check the network or the mirror table, or set `url` in the recipe's source") from None
    if found is None:
        raise SourceError("source.index-failed", f"{display_url(real)}{source.name}/: HTTP 404", f"check that {source.name!r} exists on the index")
    files = [(f.filename, f.url, f.sha256) for f in found]
    by_hash = [f for f in files if f[2] == source.sha256]
    if by_hash:
        return by_hash[0][1]
    named = [f for f in files if f[0] == source.filename] if source.filename else _sdists_of(files, source.version)
    if named:
        return named[0][1]  # the download will then fail naming expected and actual sha256
    raise SourceError(
        "source.sdist-not-found",
        f"{display_url(real)}{source.name}/ lists no sdist of {source.name} {source.version} with sha256 {source.sha256}",
        "check the version and sha256 in the recipe, or set `filename`/`url` in its source table",
    )


def _sdists_of(files: Iterable[tuple[str, str, str | None]], version: str) -> list[tuple[str, str, str | None]]:
    from packaging.utils import InvalidSdistFilename, parse_sdist_filename
    from packaging.version import Version

    out = []
    for f in files:
        try:
            _, ver = parse_sdist_filename(f[0])
        except InvalidSdistFilename:
            continue
        if ver == Version(version):
            out.append(f)
    return out


# --------------------------------------------------------------------------- git


def _mirror_path(root: Path, url: str) -> Path:
    return root / "git" / f"{hashlib.sha256(url.encode()).hexdigest()}.git"


def _has_commit(mirror: Path, commit: str, echo: Echo) -> bool:
    return run(["git", "-C", str(mirror), "cat-file", "-e", f"{commit}^{{commit}}"], echo=echo, check=False).returncode == 0


def _tag_commit(mirror: Path, tag: str, echo: Echo) -> str | None:
    p = run(["git", "-C", str(mirror), "rev-parse", "-q", "--verify", f"refs/tags/{tag}^{{commit}}"], echo=echo, check=False)
    return p.stdout.strip() if p.returncode == 0 else None


def _offline_missing(url: str, mirror: Path, what: str) -> SourceError:
    state = "is missing" if not mirror.is_dir() else "lacks the pinned commit or tag"
    return SourceError("source.offline-missing", f"offline: git mirror of {display_url(url)} for {what} {state} ({mirror})", _HINT_OFFLINE)


def _update_mirror(root: Path, url: str, *, mirrors: Mapping[str, str] | None, echo: Echo) -> Path:
    """Clone (first time) or fetch (later) the bare mirror of ``url``; the clone appears by one rename."""
    mirror = _mirror_path(root, url)
    real = apply_mirrors(url, mirrors)
    _mkdir(root / ".locks")
    with FileLock(str(root / ".locks" / f"git-{mirror.stem}.lock")):
        if mirror.is_dir():
            run(["git", "-C", str(mirror), "remote", "set-url", "origin", real], echo=echo, what="git remote set-url")
            run(["git", "-C", str(mirror), "fetch", "--prune", "--quiet", "origin"], echo=echo, what=f"git fetch of {display_url(real)}")
        else:
            tmp = Path(tempfile.mkdtemp(dir=_mkdir(mirror.parent), suffix=".partial"))
            try:
                run(["git", "clone", "--mirror", "--quiet", real, str(tmp)], echo=echo, what=f"git clone of {display_url(real)}")
                os.replace(tmp, mirror)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    return mirror


def _mkdir(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


def _fetch_git(root: Path, source: GitSource, *, offline: bool, mirrors: Mapping[str, str] | None, echo: Echo) -> FetchedSource:
    what = f"tag {source.tag} (commit {source.commit})"
    mirror = _mirror_path(root, source.url)

    def pinned() -> bool:
        return mirror.is_dir() and _tag_commit(mirror, source.tag, echo) == source.commit and _has_commit(mirror, source.commit, echo)

    # network only when the cached mirror does not already prove the pin
    if not pinned():
        if not offline:
            _update_mirror(root, source.url, mirrors=mirrors, echo=echo)
        elif not mirror.is_dir() or _tag_commit(mirror, source.tag, echo) is None:
            raise _offline_missing(source.url, mirror, what)
    found = _tag_commit(mirror, source.tag, echo)
    if found is None:
        raise SourceError("source.tag-missing", f"{display_url(source.url)} has no tag {source.tag!r}", "check the tag name in the recipe")
    if found != source.commit:
        raise SourceError(
            "source.tag-moved",
            f"{display_url(source.url)}: tag {source.tag} moved: it resolves to {found}, the recipe pins {source.commit}",
            "find out why upstream re-tagged; pin the new commit only after reviewing the change",
        )
    subs: list[tuple[str, str]] = []
    if source.submodules:
        _mirror_submodules(root, mirror, source.commit, source.url, subs, set(), offline=offline, mirrors=mirrors, echo=echo)
    return FetchedSource(kind="git", digest=f"git:{source.commit}", path=mirror, url=source.url, tag=source.tag, submodules=tuple(subs))


def resolve_submodule_url(parent_url: str, url: str) -> str:
    """Resolve a relative .gitmodules URL (``../x.git``) against the superproject's URL, as git does."""
    if not url.startswith(("./", "../")):
        return url
    parts = urlsplit(parent_url)
    path = parts.path if parts.scheme else parent_url
    segs = [s for s in path.rstrip("/").split("/")]
    for piece in url.split("/"):
        if piece == "..":
            if len(segs) > 1:
                segs.pop()
        elif piece not in (".", ""):
            segs.append(piece)
    joined = "/".join(segs)
    return urlunsplit(parts._replace(path=joined)) if parts.scheme else joined


def _gitlinks(mirror: Path, commit: str, echo: Echo) -> dict[str, str]:
    p = run(["git", "-C", str(mirror), "ls-tree", "-r", "-z", commit], echo=echo, what="git ls-tree")
    links = {}
    for rec in p.stdout.split("\0"):
        if rec.startswith("160000 commit "):
            meta, _, path = rec.partition("\t")
            links[path] = meta.split()[2]
    return links


def _gitmodules_urls(mirror: Path, commit: str, echo: Echo) -> dict[str, str]:
    """path -> url from the commit's .gitmodules."""
    p = run(["git", "-C", str(mirror), "config", "--blob", f"{commit}:.gitmodules", "-z", "--get-regexp", r"^submodule\..*\.(path|url)$"],
            echo=echo, check=False)
    paths, urls = {}, {}
    for rec in p.stdout.split("\0"):
        key, _, value = rec.partition("\n")
        m = re.match(r"^submodule\.(.*)\.(path|url)$", key)
        if m:
            (paths if m.group(2) == "path" else urls)[m.group(1)] = value
    return {paths[n]: urls[n] for n in paths if n in urls}


def _mirror_submodules(
    root: Path, mirror: Path, commit: str, url: str, out: list[tuple[str, str]], seen: set[tuple[str, str]], *,
    offline: bool, mirrors: Mapping[str, str] | None, echo: Echo,
) -> None:
    links = _gitlinks(mirror, commit, echo)
    if not links:
        return
    urls = _gitmodules_urls(mirror, commit, echo)
    for path, sub_commit in sorted(links.items()):
        if path not in urls:
            raise SourceError(
                "source.submodule-url-missing", f"{display_url(url)} at {commit}: submodule {path} has no url in .gitmodules",
                "the upstream commit is broken; pin another commit",
            )
        sub_url = resolve_submodule_url(url, urls[path])
        if (sub_url, sub_commit) in seen:
            continue
        seen.add((sub_url, sub_commit))
        sub_mirror = _mirror_path(root, sub_url)
        if not (sub_mirror.is_dir() and _has_commit(sub_mirror, sub_commit, echo)):
            if offline:
                raise _offline_missing(sub_url, sub_mirror, f"submodule {path} commit {sub_commit}")
            _update_mirror(root, sub_url, mirrors=mirrors, echo=echo)
        if not _has_commit(sub_mirror, sub_commit, echo):
            raise SourceError(
                "source.submodule-commit-missing", f"submodule {path}: {display_url(sub_url)} has no commit {sub_commit}",
                "upstream rewrote the submodule's history; pin another superproject commit",
            )
        if (sub_url, str(sub_mirror)) not in out:
            out.append((sub_url, str(sub_mirror)))
        _mirror_submodules(root, sub_mirror, sub_commit, sub_url, out, seen, offline=offline, mirrors=mirrors, echo=echo)


def checkout(fetched: FetchedSource, dest: Path, *, echo: Echo | None = None) -> Path:
    """Check a fetched git source out into ``dest`` (must not exist) with submodules, from the cache only.

    ``git clone --shared`` borrows objects from the mirror read-only, so the
    cache is never written.  Submodule URLs are redirected to their cached
    mirrors with ``url.<mirror>.insteadOf`` (passed down to nested clones by
    ``git -c``), which keeps the checkout offline.
    """
    echo = silent if echo is None else echo
    if fetched.kind != "git" or fetched.commit is None:
        raise SourceError("source.not-git", f"{fetched.path} is not a git source", "use extract_archive for archives")
    env = git_env()
    run(["git", "clone", "--quiet", "--shared", "--no-checkout", str(fetched.path), str(dest)], echo=echo, env=env, what="git clone --shared")
    # relative submodule URLs resolve against origin: make it the upstream URL, not the cache path
    run(["git", "-C", str(dest), "remote", "set-url", "origin", fetched.url or str(fetched.path)], echo=echo, env=env)
    run(["git", "-C", str(dest), "-c", "advice.detachedHead=false", "checkout", "--quiet", "--detach", fetched.commit],
        echo=echo, env=env, what="git checkout")
    if not (dest / ".gitmodules").is_file():
        return dest
    rewrites: list[str] = ["-c", "protocol.file.allow=always"]
    for url, mirror in fetched.submodules:
        rewrites += ["-c", f"url.{mirror}.insteadOf={url}"]
    run(["git", "-C", str(dest), *rewrites, "submodule", "update", "--init", "--recursive", "--quiet"],
        echo=echo, env=env, what="git submodule update")
    status = run(["git", "-C", str(dest), "submodule", "status", "--recursive"], echo=echo, env=env).stdout
    dirty = [line for line in status.splitlines() if line[:1] in ("-", "+", "U")]
    if dirty:
        raise SourceError(
            "source.submodules-unclean", f"{dest}: submodules not at their pinned commits: {dirty[0].strip()}",
            "the checkout is inconsistent; remove the work folder and fetch again",
        )
    return dest

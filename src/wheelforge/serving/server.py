"""``serve``: the embedded read-only server for the static index tree.

The app is a small ASGI callable run by Granian (a Rust HTTP server; see
docs/index.md for why).  It serves only what the tree held when it was loaded:
every regular file under ``index/`` is registered by its URL path, pages and
metadata are kept in memory, wheels are streamed from disk.  A path that is not
in that table is a 404, so encoded ``..``, symlinks and directory listings have
nothing to reach.  When ``generation.json`` changes (``invoke index`` ran), the
table is reloaded within a second.
"""

from __future__ import annotations

import hashlib
import os
import socket
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from packaging.utils import canonicalize_name

from wheelforge.model.errors import IndexError_
from wheelforge.serving.index import SIMPLE_HTML, SIMPLE_JSON

#: Files up to this size are kept in memory; larger ones (wheels) are streamed.
INLINE_LIMIT = 1 << 20
CHUNK = 1 << 18
ROOT_ENV = "WHEELFORGE_SERVE_ROOT"

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".json": "application/json",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".log": "text/plain; charset=utf-8",
    ".metadata": "text/plain; charset=utf-8",  # PEP 658 does not fix one; this lets browsers show it
    ".whl": "application/octet-stream",
}
TEXT_HTML = "text/html; charset=utf-8"

#: A file name's bytes never change (the identity rule), so caches may keep them for good.
IMMUTABLE = "public, max-age=31536000, immutable"
#: Pages (``/``, ``/simple/``, ``/simple/<project>/``) and ``*-variants.json`` change whenever
#: ``invoke index`` runs.  pip 26 keeps /simple/ answers by their Cache-Control (pip 26.3's
#: index/collector.py, pypa/pip#5670): 60 s lets one resolve, and installs within a minute,
#: skip the network while a rebuild shows up a minute later at most; the ETag makes a forced
#: refresh (pip --refresh-package, uv --refresh) a 304.  PEP 825's index file is mutable too
#: (new variants of a version can arrive), so it gets the same answer, not ``immutable``.
SHORT_LIVED = "public, max-age=60"


@dataclass(frozen=True)
class Resource:
    content_type: str
    body: bytes | None  # None: stream from path
    path: str
    size: int
    immutable: bool = False
    etag: str | None = None  # pages and other inline bodies

    @property
    def cache_control(self) -> str:
        if self.immutable:
            return IMMUTABLE
        return SHORT_LIVED if self.path.endswith("-variants.json") else "no-cache"


@dataclass(frozen=True)
class Page:
    """A Simple API page in both forms (PEP 691)."""

    html: Resource
    json: Resource | None


def negotiate(accept: str | None, has_json: bool = True) -> str | None:
    """The Content-Type to answer an Accept header with, by q-value; None means 406.

    HTML wins ties and a missing header (PEP 691: the default stays HTML for old clients).
    """
    if not accept or not accept.strip():
        return TEXT_HTML
    best: tuple[float, int, int] | None = None
    chosen: str | None = None
    for order, part in enumerate(accept.split(",")):
        fields = [x.strip() for x in part.split(";")]
        mtype = fields[0].lower()
        q = 1.0
        for param in fields[1:]:
            k, _, v = param.partition("=")
            if k.strip().lower() == "q":
                try:
                    q = float(v)
                except ValueError:
                    q = 0.0
        if q <= 0:
            continue
        if mtype in (SIMPLE_JSON, "application/vnd.pypi.simple.latest+json"):
            answer = SIMPLE_JSON if has_json else None
        elif mtype in (SIMPLE_HTML, "application/vnd.pypi.simple.latest+html"):
            answer = SIMPLE_HTML
        elif mtype in ("text/html", "text/*", "*/*"):
            answer = TEXT_HTML
        else:
            answer = None
        if answer is None:
            continue
        # Higher q wins; among equals HTML first, then the client's order.
        rank = (q, 0 if answer == SIMPLE_JSON else 1, -order)
        if best is None or rank > best:
            best, chosen = rank, answer
    return chosen


class Tree:
    """The URL table of one index tree."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.files: dict[str, Resource] = {}
        self.pages: dict[str, Page] = {}
        self.projects: set[str] = set()
        self.stamp = self._stamp(root)
        self._load()

    @staticmethod
    def _stamp(root: Path) -> tuple[int, int] | None:
        try:
            st = os.stat(root / "generation.json")
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns)

    def _resource(self, path: Path, st: os.stat_result) -> Resource:
        ext = path.suffix if path.suffix in _TYPES else ""
        ctype = _TYPES.get(ext, "application/octet-stream")
        body = path.read_bytes() if st.st_size <= INLINE_LIMIT else None
        etag = f'"{hashlib.sha256(body).hexdigest()[:32]}"' if body is not None else None
        immutable = path.parent.name == "files" and not path.name.endswith("-variants.json")
        return Resource(ctype, body, str(path), st.st_size, immutable=immutable, etag=etag)

    def _load(self) -> None:
        # os.walk without followlinks and lstat: a symlink in the tree is never served.
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = [d for d in dirnames if not d.startswith(".") and not os.path.islink(os.path.join(dirpath, d))]
            rel_dir = os.path.relpath(dirpath, self.root)
            prefix = "/" if rel_dir == "." else "/" + rel_dir.replace(os.sep, "/") + "/"
            for name in filenames:
                full = Path(dirpath, name)
                st = os.lstat(full)
                if not stat.S_ISREG(st.st_mode) or name.startswith("."):
                    continue
                self.files[prefix + name] = self._resource(full, st)
        for url, res in list(self.files.items()):
            if url.endswith("/index.html"):
                base = url[: -len("index.html")]
                self.pages[base] = Page(res, self.files.get(base + "index.json"))
        # index.html/index.json are only reachable through their folder URL.
        for url in [u for u in self.files if u.endswith(("/index.html", "/index.json"))]:
            del self.files[url]
        self.projects = {u.split("/")[2] for u in self.pages if u.startswith("/simple/") and u.count("/") == 3}


def _headers(pairs: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in pairs]


class App:
    """ASGI app over a :class:`Tree`, reloaded when the index is regenerated."""

    def __init__(self, index_dir: str | os.PathLike) -> None:
        self.index_dir = Path(index_dir)
        if not (self.index_dir / "simple").is_dir():
            raise IndexError_("index.missing", f"{self.index_dir}: no index tree to serve", "run `invoke index` first")
        self.tree = Tree(self.index_dir)
        self._checked = time.monotonic()

    def _maybe_reload(self) -> None:
        now = time.monotonic()
        if now - self._checked < 1.0:
            return
        self._checked = now
        if Tree._stamp(self.index_dir) != self.tree.stamp:
            try:
                self.tree = Tree(self.index_dir)
            except OSError:
                pass  # mid-swap on a platform without RENAME_EXCHANGE: keep the old table, retry next second

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        self._maybe_reload()
        method = scope["method"]
        if method not in ("GET", "HEAD"):
            await self._send(send, 405, b"read-only index: only GET and HEAD\n", "text/plain; charset=utf-8", extra=[("Allow", "GET, HEAD")])
            return
        head = method == "HEAD"
        path = scope["path"]  # already percent-decoded once by the server
        tree = self.tree
        if "\x00" in path or "\\" in path:
            await self._not_found(send, head)
            return

        page = tree.pages.get(path)
        if page is None and path.startswith("/simple/"):
            page = await self._simple_redirect(path, tree, send, head)
            if page is True:
                return
        if page is not None:
            if path.startswith("/simple/") and page.json is not None:
                accept = None
                for k, v in scope["headers"]:
                    if k == b"accept":
                        accept = v.decode("latin-1") if accept is None else accept + "," + v.decode("latin-1")
                ctype = negotiate(accept)
                if ctype is None:
                    await self._send(send, 406, f"acceptable: {SIMPLE_JSON}, {SIMPLE_HTML}, text/html\n".encode(), "text/plain; charset=utf-8", head=head, vary=True)
                    return
                res = page.json if ctype == SIMPLE_JSON else page.html
                await self._send_page(send, scope, res, ctype, head=head, vary=True)
                return
            await self._send_page(send, scope, page.html, page.html.content_type, head=head)
            return

        res = tree.files.get(path)
        if res is None:
            await self._not_found(send, head)
            return
        cache = res.cache_control
        if res.body is not None:
            await self._send(send, 200, res.body, res.content_type, head=head, extra=[("Cache-Control", cache)])
            return
        await self._stream(send, res, head, cache, scope)

    async def _send_page(self, send, scope, res: Resource, ctype: str, *, head: bool, vary: bool = False) -> None:
        """A page with its short max-age and ETag; ``If-None-Match`` with that ETag gets a 304."""
        extra = [("Cache-Control", SHORT_LIVED)] + ([("ETag", res.etag)] if res.etag else [])
        if res.etag:
            for k, v in scope["headers"]:
                if k == b"if-none-match" and res.etag in [t.strip().removeprefix("W/") for t in v.decode("latin-1").split(",")]:
                    headers = [("Content-Type", ctype)] + ([("Vary", "Accept")] if vary else []) + extra
                    await send({"type": "http.response.start", "status": 304, "headers": _headers(headers)})
                    await send({"type": "http.response.body", "body": b""})
                    return
        await self._send(send, 200, res.body or b"", ctype, head=head, vary=vary, extra=extra)

    async def _simple_redirect(self, path: str, tree: Tree, send, head: bool):
        """``/simple/Some_Name`` and ``/simple/Some_Name/`` go to ``/simple/some-name/`` if that project exists."""
        parts = path.split("/")
        if len(parts) in (3, 4) and (len(parts) == 3 or parts[3] == "") and parts[2]:
            target = canonicalize_name(parts[2])
            if target in tree.projects:
                location = f"/simple/{quote(target)}/"
                await self._send(send, 301, b"", "text/plain; charset=utf-8", head=head, extra=[("Location", location)])
                return True
        return None

    async def _not_found(self, send, head: bool) -> None:
        # No fallback to any other index: an unknown name must fail, not resolve elsewhere.
        await self._send(send, 404, b"not found in this index\n", "text/plain; charset=utf-8", head=head)

    async def _send(self, send, status: int, body: bytes, ctype: str, *, head: bool = False, vary: bool = False, extra=()) -> None:
        headers = [("Content-Type", ctype), ("Content-Length", str(len(body)))]
        if vary:
            headers.append(("Vary", "Accept"))
        headers.extend(extra)
        await send({"type": "http.response.start", "status": status, "headers": _headers(headers)})
        await send({"type": "http.response.body", "body": b"" if head else body})

    async def _stream(self, send, res: Resource, head: bool, cache: str, scope) -> None:
        headers = _headers([("Content-Type", res.content_type), ("Content-Length", str(res.size)), ("Cache-Control", cache)])
        try:
            f = open(res.path, "rb")
        except OSError:
            await self._not_found(send, head)
            return
        with f:
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            if head:
                await send({"type": "http.response.body", "body": b""})
                return
            remaining = res.size
            while remaining > 0:
                chunk = f.read(min(CHUNK, remaining))
                if not chunk:
                    break
                remaining -= len(chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": remaining > 0})
            if remaining > 0:  # file shrank under us; end the body so the client sees a short read
                await send({"type": "http.response.body", "body": b""})


def app_from_env() -> App:
    """Granian factory: the index folder comes from ``WHEELFORGE_SERVE_ROOT`` in each worker."""
    return App(os.environ[ROOT_ENV])


def _check_port(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise IndexError_("index.port-busy", f"{host}:{port}: cannot listen ({exc.strerror})", "pick another --port or stop the process using it") from exc


def serve(wheelhouse: str | os.PathLike, host: str = "127.0.0.1", port: int = 8080, workers: int = 1,
          on_ready: Callable[[str], None] | None = None) -> None:
    """Serve ``wheelhouse/index/`` until interrupted (blocks); ``on_ready(url)`` once the port is bound."""
    from granian import Granian  # imported here: only serving needs the server
    from granian.log import LogLevels

    index_dir = Path(wheelhouse) / "index"
    App(index_dir)  # fail fast with a clear error before starting workers
    _check_port(host, port)
    os.environ[ROOT_ENV] = str(index_dir.resolve())  # workers are started by Granian and read it from here
    server = Granian(
        "wheelforge.serving.server:app_from_env",
        address=host,
        port=port,
        interface="asgi",
        workers=workers,
        factory=True,
        websockets=False,
        log_level=LogLevels.error,  # the caller says what people need to know, once; Granian only its errors
        log_access=False,
    )
    if on_ready is not None:
        # Granian 2.8 on Linux calls startup hooks before its workers bind the port (each worker binds with
        # SO_REUSEPORT), so the hook itself is too early: it only starts a watch for the first accepted connection.
        server.on_startup(lambda: _when_listening(host, port, lambda: on_ready(f"http://{host}:{port}/")))
    server.serve()


def _when_listening(host: str, port: int, then: Callable[[], None], timeout: float = 60.0) -> None:
    """Call ``then`` once, from a thread, as soon as ``host:port`` accepts a connection (never if it does not)."""
    import threading

    probe = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)

    def watch() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((probe, port), timeout=1.0):
                    break
            except OSError:
                time.sleep(0.05)
        else:
            return
        then()

    threading.Thread(target=watch, name="wheelforge-serve-ready", daemon=True).start()

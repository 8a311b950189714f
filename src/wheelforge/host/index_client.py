"""The one client of the Simple Repository API (PEP 503 HTML, PEP 691 JSON), on ``pypi-simple``.

Every module that asks a package index something comes here: the source fetcher (the URL of
a pinned sdist), ``publish`` (which file names an index already holds), the farm (which wheels
a store holds) and ``--with`` pins (a release's ``Requires-Dist``).  A release's metadata comes
from the PEP 658 file beside the wheel, else from the wheel's own METADATA read with HTTP range
requests (the zip's directory and one member: a few hundred KB of a 500 MB torch wheel; pip's
"lazy wheel" does the same), since proxies and mirrors often serve only the Simple API and files.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from wheelforge.host.streams import SeekableReader
from wheelforge.model.errors import WheelforgeError
from wheelforge.model.report import Echo, silent

PYPI_SIMPLE = "https://pypi.org/simple/"


class IndexClientError(WheelforgeError):
    """An index could not be read; ``id`` is ``index-client.unreachable``, ``.auth`` or ``.status``.

    Callers re-raise it in their own error family with :meth:`as_`.
    """

    def as_(self, cls: type[WheelforgeError], ids: Mapping[str, str], hint: str | None = None) -> WheelforgeError:
        return cls(ids.get(self.id, ids.get("*", self.id)), self.message, hint or self.hint)


@dataclass(frozen=True)
class IndexFile:
    """One file a project page lists."""

    filename: str
    url: str  # absolute, without the #sha256= fragment
    sha256: str | None
    size: int | None
    has_metadata: bool
    yanked: bool
    requires_python: str | None = None
    upload_time: str | None = None


def display_url(url: str) -> str:
    """Drop any user:password from a URL before it goes into a message."""
    parts = urlsplit(url)
    if parts.password or parts.username:
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def session(retries: int = 5) -> Any:
    """A requests session that retries connects and 429/5xx answers (GET and HEAD only)."""
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.util.retry import Retry

    s = requests.Session()
    retry = Retry(total=retries, connect=retries, read=retries, status=retries, backoff_factor=0.5,
                  status_forcelist=(429, 500, 502, 503, 504), allowed_methods=frozenset({"GET", "HEAD"}), raise_on_status=False)
    s.mount("https://", HTTPAdapter(max_retries=retry))
    s.mount("http://", HTTPAdapter(max_retries=retry))
    s.headers["User-Agent"] = "wheelforge"
    return s


class IndexClient:
    """A Simple API endpoint (``https://pypi.org/simple/``, ``http://host:8080/simple/``, a devpi ``+simple``)."""

    def __init__(self, simple_url: str = PYPI_SIMPLE, *, auth: tuple[str, str] | None = None, timeout: float = 60,
                 echo: Echo = silent, http: Any = None) -> None:
        self.simple_url = simple_url.rstrip("/") + "/"
        self.timeout = timeout
        self.echo = echo
        self.http = http or session()
        if auth:
            self.http.auth = auth

    def files(self, project: str) -> list[IndexFile] | None:
        """The files of ``project``'s page, or None when the index does not know the project (404)."""
        import requests
        from packaging.utils import canonicalize_name
        from pypi_simple import NoSuchProjectError, PyPISimple

        name = canonicalize_name(project)
        url = f"{self.simple_url}{name}/"
        self.echo(f"# GET {display_url(url)}")
        try:
            page = PyPISimple(self.simple_url, session=self.http).get_project_page(name, timeout=self.timeout)
        except NoSuchProjectError:
            return None
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else 0
            if status in (401, 403):
                raise IndexClientError("index-client.auth", f"{display_url(url)}: HTTP {status} reading the project page",
                                       "give the index's credentials (TWINE_USERNAME/TWINE_PASSWORD or keyring)") from None
            raise IndexClientError("index-client.status", f"{display_url(url)}: HTTP {status}",
                                   f"check the index URL and that {name!r} exists there") from None
        except requests.RequestException as exc:
            raise IndexClientError("index-client.unreachable", f"cannot reach the package index {display_url(url)}: {type(exc).__name__}",
                                   "check the network, the index URL or the mirror table") from None
        out = []
        for p in page.packages:
            out.append(IndexFile(
                filename=p.filename, url=p.url.split("#", 1)[0], sha256=p.digests.get("sha256"), size=p.size,
                has_metadata=bool(p.has_metadata), yanked=bool(p.is_yanked), requires_python=p.requires_python,
                upload_time=p.upload_time.isoformat() if p.upload_time else None,
            ))
        return out

    def filenames(self, project: str) -> set[str]:
        return {f.filename for f in self.files(project) or ()}

    def metadata(self, f: IndexFile) -> str:
        """The METADATA of a wheel: its PEP 658 file, else read out of the wheel by HTTP range requests."""
        import requests

        try:
            if f.has_metadata:
                self.echo(f"# GET {display_url(f.url)}.metadata")
                resp = self.http.get(f.url + ".metadata", timeout=self.timeout)
                if resp.status_code == 200:
                    return resp.text
            size = f.size
            if not size:
                head = self.http.get(f.url, headers={"Accept-Encoding": "identity"}, stream=True, timeout=self.timeout)
                size = int(head.headers.get("Content-Length") or 0)
                head.close()
            self.echo(f"# GET {display_url(f.url)} (its METADATA by byte ranges)")
            remote = RangeFile(self.http, f.url, int(size))
            with zipfile.ZipFile(io.BufferedReader(remote, buffer_size=64 * 1024)) as zf:
                member = next((n for n in zf.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA")), None)
                if member is None:
                    raise IndexClientError("index-client.status", f"{f.filename} has no .dist-info/METADATA", "the wheel is broken")
                text = zf.read(member).decode("utf-8", errors="replace")
            self.echo(f"# read {member} from {f.filename} in {remote.requests} range requests "
                      f"({sum(map(len, remote.blocks.values()))} bytes)")
            return text
        except requests.RequestException as exc:
            raise IndexClientError("index-client.unreachable", f"cannot read {display_url(f.url)}: {type(exc).__name__}",
                                   "check the network") from None
        except (OSError, zipfile.BadZipFile, ValueError) as exc:
            raise IndexClientError("index-client.status", f"{f.filename}: {exc}", "the index does not serve byte ranges") from None


class RangeFile(SeekableReader):
    """A read-only, seekable view of a remote file over HTTP ``Range`` requests, in blocks."""

    BLOCK = 256 * 1024

    def __init__(self, session: Any, url: str, size: int) -> None:
        super().__init__(size)
        self.session, self.url = session, url
        self.blocks: dict[int, bytes] = {}
        self.requests = 0

    def _block(self, index: int) -> bytes:
        if index not in self.blocks:
            lo = index * self.BLOCK
            hi = min(self.size, lo + self.BLOCK) - 1
            resp = self.session.get(self.url, headers={"Range": f"bytes={lo}-{hi}"}, timeout=60)
            if resp.status_code != 206:
                raise OSError(f"HTTP {resp.status_code} for a range request (the server does not serve byte ranges)")
            self.requests += 1
            self.blocks[index] = resp.content
        return self.blocks[index]

    def readinto(self, buf: Any) -> int:
        want = min(len(buf), self.size - self.pos)
        got = 0
        while got < want:
            index, skip = divmod(self.pos, self.BLOCK)
            chunk = self._block(index)[skip:skip + want - got]
            if not chunk:
                break
            buf[got:got + len(chunk)] = chunk
            got += len(chunk)
            self.pos += len(chunk)
        return got


def requires_dist(name: str, version: str, *, simple_url: str = PYPI_SIMPLE, echo: Echo = silent) -> list[str]:
    """``Requires-Dist`` of ``name==version``, preferring its Linux x86_64 wheel (where CUDA pins live)."""
    import email.parser

    from packaging.utils import InvalidWheelFilename, parse_wheel_filename
    from packaging.version import InvalidVersion, Version

    from wheelforge.model.errors import PlanError

    try:
        want = Version(version)
    except InvalidVersion:
        raise PlanError("plan.with-unknown", f"{version!r} is not a version of {name}", f"write it as --with {name}==2.15.0") from None
    client = IndexClient(simple_url, echo=echo)
    lookup = {"*": "plan.with-lookup"}
    hint = f"check the network, or pin a labelled build (--with {name}=={version}+cu130)"
    try:
        files = client.files(name) or []
    except IndexClientError as exc:
        raise exc.as_(PlanError, lookup, hint) from None
    wheels = []
    for f in files:
        try:
            _, v, _, tags = parse_wheel_filename(f.filename)
        except InvalidWheelFilename:
            continue
        if v == want and not f.yanked:
            linux = any("linux" in t.platform and t.platform.endswith("x86_64") for t in tags)
            wheels.append((not linux, f.filename, f))
    if not wheels:
        raise PlanError("plan.with-unknown", f"{client.simple_url} has no {name} {version} wheel", f"check the version: pip index versions {name}")
    chosen = min(wheels, key=lambda w: (w[0], w[1]))[2]
    try:
        text = client.metadata(chosen)
    except IndexClientError as exc:
        raise PlanError("plan.with-lookup", f"cannot read {name} {version}'s metadata: {exc.message}", hint) from None
    return email.parser.Parser().parsestr(text).get_all("Requires-Dist") or []

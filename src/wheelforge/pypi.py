"""What PyPI says about a release, read without downloading it: its ``Requires-Dist`` lines.

Three routes, first that answers wins: the JSON API (pypi.org), the metadata file beside a
wheel (PEP 658, found through the Simple API, PEP 691), and the wheel's own METADATA read with
HTTP range requests (the zip's directory and one member, a few hundred KB of a 500 MB torch
wheel; pip's "lazy wheel" does the same). Proxies and mirrors often serve only the Simple API
and files, and not every file's metadata.
"""

from __future__ import annotations

import email.parser
import io
import zipfile
from typing import Any, Callable

from .errors import PlanError
from .streams import SeekableReader

PYPI = "https://pypi.org"
Echo = Callable[[str], None]


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


def _lookup_error(name: str, version: str, what: str) -> PlanError:
    return PlanError("plan.with-lookup", f"cannot read {name} {version}'s metadata: {what}",
                     f"check the network, or pin a labelled build (--with {name}=={version}+cu130)")


def requires_dist(name: str, version: str, *, base_url: str = PYPI, echo: Echo = lambda _: None) -> list[str]:
    """``Requires-Dist`` of ``name==version``, preferring its Linux x86_64 wheel (where CUDA pins live)."""
    import requests
    from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
    from packaging.version import InvalidVersion, Version

    session = requests.Session()

    def get(url: str, **kw: Any) -> requests.Response:
        echo(f"# GET {url}" + (f" ({kw['headers']['Range']})" if "Range" in kw.get("headers", {}) else ""))
        try:
            return session.get(url, timeout=60, **kw)
        except requests.RequestException as exc:
            raise _lookup_error(name, version, str(exc)) from None

    resp = get(f"{base_url}/pypi/{name}/{version}/json")
    if resp.status_code == 200:
        return list(resp.json().get("info", {}).get("requires_dist") or [])
    try:
        want = Version(version)
    except InvalidVersion:
        raise PlanError("plan.with-unknown", f"{version!r} is not a version of {name}", f"write it as --with {name}==2.15.0") from None
    resp = get(f"{base_url}/simple/{canonicalize_name(name)}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    files = resp.json().get("files", []) if resp.status_code == 200 else []
    wheels = []
    for f in files:
        try:
            _, v, _, tags = parse_wheel_filename(f["filename"])
        except (InvalidWheelFilename, KeyError):
            continue
        if v == want and not f.get("yanked"):
            linux = any("linux" in t.platform and t.platform.endswith("x86_64") for t in tags)
            wheels.append((not linux, f["filename"], f["url"].split("#", 1)[0], f.get("size")))
    if not wheels:
        raise PlanError("plan.with-unknown", f"{base_url} has no {name} {version} wheel", f"check the version: pip index versions {name}")
    _, filename, url, size = min(wheels)

    meta = get(url + ".metadata")
    if meta.status_code == 200:
        text = meta.text
    else:
        if not size:
            head = get(url, headers={"Accept-Encoding": "identity"}, stream=True)
            size = int(head.headers.get("Content-Length") or 0)
            head.close()
        try:
            remote = RangeFile(session, url, int(size))
            with zipfile.ZipFile(io.BufferedReader(remote, buffer_size=64 * 1024)) as zf:
                member = next((n for n in zf.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA")), None)
                if member is None:
                    raise _lookup_error(name, version, f"{filename} has no .dist-info/METADATA")
                text = zf.read(member).decode("utf-8", errors="replace")
            echo(f"# read {member} from {filename} in {remote.requests} range requests ({sum(map(len, remote.blocks.values()))} bytes)")
        except (OSError, zipfile.BadZipFile, ValueError) as exc:
            raise _lookup_error(name, version, f"{filename}: {exc}") from None
    return email.parser.Parser().parsestr(text).get_all("Requires-Dist") or []

"""``publish``: upload wheels to a remote index with twine, never overwriting a filename.

The legacy upload API that pypiserver, devpi and PyPI speak takes distributions
only (PyPI also takes PEP 740 attestations, which must be Sigstore-signed; our
in-toto/SLSA ``provenance.json`` is not one).  So the wheel goes up with twine,
and its ``provenance.json``/``verify.json`` are copied as
``<wheel>.provenance.json``/``<wheel>.verify.json`` into ``sidecar_dir`` (a
folder synced to the same host, the same names our own index uses under
``files/``).  See docs/index.md.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from wheelforge.host import process
from wheelforge.host.index_client import IndexClient, IndexClientError
from wheelforge.model.errors import PublishError
from wheelforge.model.report import Echo, silent

SIDECARS = ("provenance.json", "verify.json")


@dataclass(frozen=True)
class Upload:
    wheel: Path
    sidecars: dict[str, Path] = field(default_factory=dict)  # "provenance.json" -> file


@dataclass
class PublishResult:
    uploaded: list[str] = field(default_factory=list)
    sidecars_written: list[Path] = field(default_factory=list)
    sidecars_not_published: list[Path] = field(default_factory=list)


def find_uploads(sources: list[str | os.PathLike]) -> list[Upload]:
    """Wheels (with their sidecars) from wheelhouses, entry folders or wheel files."""
    uploads: list[Upload] = []
    for src in sources:
        p = Path(src)
        if (p / "entries").is_dir():
            from wheelforge.store.wheelhouse import Wheelhouse

            uploads.extend(_upload_for(e.wheel) for e in Wheelhouse(p).all_entries())
            continue
        if p.is_dir():
            dirs = [p]
        elif p.is_file() and p.suffix == ".whl":
            uploads.append(_upload_for(p))
            continue
        else:
            raise PublishError("publish.no-wheel", f"{p}: not a wheel, entry folder or wheelhouse", "pass a .whl file or the wheelhouse folder")
        for d in dirs:
            wheels = sorted(d.glob("*.whl"))
            if len(wheels) != 1:
                raise PublishError("publish.no-wheel", f"{d}: holds {len(wheels)} wheels, expected one", "pass the wheel file itself")
            uploads.append(_upload_for(wheels[0]))
    names = [u.wheel.name for u in uploads]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise PublishError("publish.duplicate", f"{dupes[0]} is given twice", "publish one build of each filename")
    return uploads


def _upload_for(wheel: Path) -> Upload:
    try:
        parse_wheel_filename(wheel.name)
    except InvalidWheelFilename as exc:
        raise PublishError("publish.no-wheel", f"{wheel}: {exc}", "only wheels are published") from exc
    return Upload(wheel, {s: wheel.parent / s for s in SIDECARS if (wheel.parent / s).is_file()})


def credentials(env: dict[str, str]) -> dict[str, str]:
    """Twine's environment: TWINE_USERNAME/TWINE_PASSWORD, else WHEELFORGE_INDEX_USER/_PASSWORD; neither means keyring."""
    out: dict[str, str] = {}
    user = env.get("TWINE_USERNAME") or env.get("WHEELFORGE_INDEX_USER")
    password = env.get("TWINE_PASSWORD") or env.get("WHEELFORGE_INDEX_PASSWORD")
    if user:
        out["TWINE_USERNAME"] = user
    if password:
        out["TWINE_PASSWORD"] = password
    return out


def remote_filenames(simple_url: str, project: str, auth: tuple[str, str] | None, timeout: float = 30) -> set[str]:
    """Filenames the remote index lists for ``project`` (empty if it does not know the project)."""
    try:
        return IndexClient(simple_url, auth=auth, timeout=timeout).filenames(project)
    except IndexClientError as exc:
        hints = {"index-client.auth": "set TWINE_USERNAME/TWINE_PASSWORD (or WHEELFORGE_INDEX_USER/_PASSWORD) or store them in keyring",
                 "index-client.unreachable": "check --repository-url / --index-url and that the index is up"}
        raise exc.as_(PublishError, {"index-client.auth": "publish.auth", "index-client.unreachable": "publish.unreachable",
                                     "*": "publish.check-failed"},
                      hints.get(exc.id, "pass --index-url pointing at the index's simple API")) from None


def _run_twine(wheel: Path, repository_url: str, env: dict[str, str], echo: Echo) -> None:
    cmd = [sys.executable, "-m", "twine", "upload", "--non-interactive", "--disable-progress-bar", "--repository-url", repository_url, str(wheel)]
    proc = process.run(cmd, env=env, echo=echo)
    if proc.returncode != 0:
        said = proc.stdout + proc.stderr
        tail = " | ".join(line.strip() for line in said.strip().splitlines()[-3:])
        if "409" in said or "already exists" in said.lower():
            raise PublishError("publish.exists", f"{wheel.name}: the index refused it as existing ({tail})", "bump the local version label; filenames are never overwritten")
        if "403" in said or "401" in said:
            raise PublishError("publish.auth", f"{wheel.name}: upload refused ({tail})", "set TWINE_USERNAME/TWINE_PASSWORD (or WHEELFORGE_INDEX_USER/_PASSWORD) or store them in keyring")
        raise PublishError("publish.upload-failed", f"{wheel.name}: twine exited {proc.returncode} ({tail})", "see the twine output above; check --repository-url")


def _write_sidecar(src: Path, dst: Path) -> None:
    if dst.exists():
        if dst.read_bytes() == src.read_bytes():
            return
        raise PublishError("publish.exists", f"{dst}: exists with different content", "sidecars are never overwritten; remove it by hand if it is wrong")
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=dst.parent)
    os.close(fd)
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def publish(
    sources: list[str | os.PathLike],
    repository_url: str,
    *,
    simple_url: str | None = None,
    sidecar_dir: str | os.PathLike | None = None,
    env: dict[str, str] | None = None,
    echo: Echo = silent,
) -> PublishResult:
    """Upload every wheel in ``sources`` to ``repository_url``; refuse any filename the index already lists.

    ``simple_url`` defaults to ``<repository_url>/simple/`` (pypiserver); devpi wants ``<index>/+simple/``.
    All filenames are checked before the first upload, so a refusal uploads nothing.
    """
    env = dict(os.environ if env is None else env)
    uploads = find_uploads(sources)
    if not uploads:
        raise PublishError("publish.no-wheel", "nothing to publish", "build wheels first or pass wheel files")
    simple = simple_url or repository_url.rstrip("/") + "/simple/"
    creds = credentials(env)
    auth = (creds["TWINE_USERNAME"], creds["TWINE_PASSWORD"]) if len(creds) == 2 else None
    for u in uploads:
        name = parse_wheel_filename(u.wheel.name)[0]
        if u.wheel.name in remote_filenames(simple, name, auth):
            raise PublishError("publish.exists", f"{u.wheel.name} is already on {simple}", "filenames are never overwritten; bump the local version label or build number")
    twine_env = {k: v for k, v in env.items() if not k.startswith(("TWINE_", "WHEELFORGE_INDEX_"))}
    twine_env.update(creds)
    result = PublishResult()
    out_dir = Path(sidecar_dir) if sidecar_dir is not None else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    for u in uploads:
        _run_twine(u.wheel, repository_url, twine_env, echo)
        result.uploaded.append(u.wheel.name)
        for side, src in u.sidecars.items():
            if out_dir is None:
                result.sidecars_not_published.append(src)
                continue
            dst = out_dir / f"{u.wheel.name}.{side}"
            _write_sidecar(src, dst)
            result.sidecars_written.append(dst)
    return result

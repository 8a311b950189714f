"""The content-addressed wheelhouse (layout in docs/wheelhouse.md).

Guarantees, and how:

* never half-written: a build works in ``scratch/<key>/`` (under the key lock) and the finished
  entry folder is moved to ``entries/<key>/`` by one ``rename``;
* one build per key: ``locks/<key>.lock`` (filelock) is held from the no-op check to
  the promotion; a second builder waits, then finds the entry;
* crash-safe: after Ctrl-C or kill -9 the scratch folder is garbage; the next start
  removes scratch folders whose key lock nobody holds (a stale lock file is harmless:
  filelock's ``flock`` dies with its process).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wheelforge.model.errors import WheelhouseError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SCHEMA = 1


@dataclass(frozen=True)
class Entry:
    key: str
    path: Path  # entries/<key>
    wheel: Path
    manifest: Mapping[str, Any]


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


class Wheelhouse:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise WheelhouseError("wheelhouse.not-a-folder", f"wheelhouse {self.root} is a file, not a folder",
                                  "pass --wheelhouse (or WHEELFORGE_WHEELHOUSE) a folder; a missing one is made")

    # -- paths
    @property
    def entries(self) -> Path:
        return self.root / "entries"

    @property
    def scratch(self) -> Path:
        return self.root / "scratch"

    def entry_dir(self, key: str) -> Path:
        return self.entries / key

    def log_path(self, key: str) -> Path:
        return self.root / "logs" / f"{key}.log"

    def failure_path(self, key: str) -> Path:
        return self.root / "failures" / f"{key}.json"

    def lock_path(self, key: str) -> Path:
        return self.root / "locks" / f"{key}.lock"

    # -- reading
    def lookup(self, key: str) -> Entry | None:
        """The finished entry for ``key``, or None.  Cheap: two stats and one small JSON read."""
        d = self.entry_dir(key)
        try:
            manifest = json.loads((d / "entry.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        wheel = d / str(manifest.get("wheel", ""))
        if not manifest.get("wheel") or not wheel.is_file():
            return None
        return Entry(key=key, path=d, wheel=wheel, manifest=manifest)

    def all_entries(self, recipe: str | None = None) -> list[Entry]:
        """Every finished entry (of ``recipe`` when given), in key order."""
        if not self.entries.is_dir():
            return []
        found = (self.lookup(d.name) for d in sorted(self.entries.iterdir()) if d.is_dir())
        return [e for e in found if e is not None and (recipe is None or e.manifest.get("recipe") == recipe)]

    def latest(self, recipe: str, archs: Sequence[str] | None = None) -> Entry | None:
        """The newest entry built from ``recipe`` (for exactly ``archs`` when given)."""
        want = sorted(archs) if archs else None
        found = [e for e in self.all_entries(recipe)
                 if want is None or sorted(e.manifest.get("target", {}).get("archs", [])) == want]
        return max(found, key=lambda e: str(e.manifest.get("built_at", ""))) if found else None

    def entry_of_wheel(self, wheel: Path) -> Entry | None:
        """The entry a wheel file belongs to: it sits in ``entries/<key>/`` and entry.json names it."""
        wheel = Path(wheel).resolve()
        if wheel.parent.parent != self.entries.resolve():
            return None
        entry = self.lookup(wheel.parent.name)
        return entry if entry is not None and entry.wheel.resolve() == wheel else None

    def entry_by_sha256(self, sha256: str) -> Entry | None:
        """The entry holding the wheel whose bytes have this sha256 (entry.json's ``sha256``), newest first."""
        found = [e for e in self.all_entries() if e.manifest.get("sha256") == sha256]
        return max(found, key=lambda e: str(e.manifest.get("built_at", ""))) if found else None

    def read_verify(self, key: str) -> dict[str, Any] | None:
        """The entry's stored post-build report (verify.json), or None when absent or unreadable."""
        try:
            data = json.loads((self.entry_dir(key) / "verify.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def scan(self) -> Iterator[tuple[Path, dict[str, Any] | None, set[str]]]:
        """(entry folder, its entry.json or None when unreadable, the names in the folder) for every
        folder under ``entries/``: what the index reads, with one listing per folder."""
        if not self.entries.is_dir():
            return
        for de in sorted(os.scandir(self.entries), key=lambda d: d.name):
            if not de.is_dir(follow_symlinks=False):
                continue
            d = Path(de.path)
            try:
                manifest = json.loads((d / "entry.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                manifest = None
            yield d, manifest if isinstance(manifest, dict) else None, set(os.listdir(d))

    def strays(self) -> list[tuple[str, str]]:
        """(name, what it is) for everything in ``entries/`` that is not a real folder (symlinks, files):
        :meth:`scan` passes over them, and whoever lists entries should say so."""
        if not self.entries.is_dir():
            return []
        out = []
        for de in sorted(os.scandir(self.entries), key=lambda d: d.name):
            if de.is_symlink():
                out.append((de.name, f"a symlink to {os.readlink(de.path)}"))
            elif not de.is_dir(follow_symlinks=False):
                out.append((de.name, "not a folder"))
        return out

    def log_names(self) -> set[str]:
        """File names in ``logs/``: one listing instead of a stat per entry."""
        d = self.root / "logs"
        return set(os.listdir(d)) if d.is_dir() else set()

    def failures(self) -> list[dict[str, Any]]:
        """The failure records of ``failures/``; unreadable ones are skipped (a build may be replacing one)."""
        out = []
        for p in sorted((self.root / "failures").glob("*.json")):
            try:
                data = json.loads(p.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if isinstance(data, dict):
                out.append(data)
        return out

    # -- writing
    def lock(self, key: str, timeout: float = -1):  # noqa: ANN201 - filelock.FileLock
        from filelock import FileLock

        self.lock_path(key).parent.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.lock_path(key)), timeout=timeout)

    def ensure_layout(self) -> None:
        """Make the folders a build writes, and prove they can be written (a read-only or misplaced wheelhouse
        fails here, naming itself, not in the middle of a build)."""
        try:
            for sub in ("entries", "logs", "failures", "scratch", "locks"):
                (self.root / sub).mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(dir=self.root, prefix=".write-probe-")  # not in scratch/: its sweep reads names as keys
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise WheelhouseError("wheelhouse.unwritable", f"cannot write the wheelhouse {self.root}: {exc.strerror} ({exc.filename})",
                                  "pass --wheelhouse (or WHEELFORGE_WHEELHOUSE) a folder you can write") from None

    def sweep_scratch(self) -> list[Path]:
        """Remove scratch folders whose key lock nobody holds (left by a crash, kill -9 or Ctrl-C)."""
        from filelock import Timeout

        removed: list[Path] = []
        if not self.scratch.is_dir():
            return removed
        for d in self.scratch.iterdir():
            try:
                # A live build holds its key's lock; flock on a fresh descriptor fails even in our own process.
                with self.lock(d.name, timeout=0):
                    shutil.rmtree(d, ignore_errors=True)
                    removed.append(d)
            except Timeout:
                continue
        return removed

    def new_scratch(self, key: str) -> Path:
        """``scratch/<key>/``: one fixed folder per key, used under the key lock.

        A fixed path (not one per process) lets sccache reuse nvcc results across runners and
        attempts, since its cache keys for device code include the build folder.
        """
        d = self.scratch / key
        if d.exists():
            shutil.rmtree(d)  # an earlier attempt that died; we hold the lock, so nobody else uses it
        d.mkdir(parents=True)
        return d

    def check_free_disk(self, need_gb: float) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(self.root).free
        if free < need_gb * 1024**3:
            raise WheelhouseError(
                "wheelhouse.disk-full", f"{self.root} has {free / 1024**3:.1f} GiB free, the build needs about {need_gb:g} GiB",
                "free disk space or point --wheelhouse at a larger disk",
            )

    def promote(self, staged: Path, key: str) -> Entry:
        """Move a finished entry folder (wheel + entry.json + provenance.json) into place.

        The caller checked the wheel and holds the key lock.
        """
        dest = self.entry_dir(key)
        if dest.exists():
            raise WheelhouseError("wheelhouse.exists", f"entry {key} already exists at {dest}",
                                  "a build of this key finished meanwhile; nothing to do")
        self.entries.mkdir(parents=True, exist_ok=True)
        os.rename(staged, dest)  # atomic on one filesystem: scratch/ and entries/ share the root
        entry = self.lookup(key)
        if entry is None:  # pragma: no cover - staged folder lacked entry.json
            raise WheelhouseError("wheelhouse.bad-entry", f"{dest} has no readable entry.json", "report this as a bug")
        return entry

    def write_failure(self, key: str, *, recipe: str, version: str, error_id: str, message: str,
                      target: Mapping[str, Any] | None = None) -> Path:
        path = self.failure_path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_json(path, {"key": key, "recipe": recipe, "version": version, "error_id": error_id, "message": message,
                           "log": str(self.log_path(key)), "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                           **({"target": dict(target)} if target else {})})
        return path

    def clear_failure(self, key: str) -> None:
        self.failure_path(key).unlink(missing_ok=True)

    def write_verify(self, key: str, report: Mapping[str, Any], status: str) -> None:
        """verify.json beside the wheel, and the entry's state: ``verified`` (with the level reached) or ``failed``.

        Both files are replaced atomically; a reader sees the old pair or the new one.
        """
        d = self.entry_dir(key)
        try:
            _write_json(d / "verify.json", dict(report))
            manifest = json.loads((d / "entry.json").read_text(encoding="utf-8"))
            manifest["verify"] = status
            manifest["state"] = "verified" if status == "passed" else "failed"
            manifest["verify_level"] = verify_level(report) if status == "passed" else None
            _write_json(d / "entry.json", manifest)
        except OSError as exc:
            raise WheelhouseError("wheelhouse.unwritable", f"cannot store the verify report in {d}: {exc.strerror}",
                                  "run verify as the wheelhouse's owner, or pass --wheelhouse a folder you can write") from None

    # -- identity: one file name, one sha256, forever

    def names_lock(self):  # noqa: ANN201 - filelock.FileLock
        """Held while a wheel's file name is checked and its entry promoted (two keys may make one name)."""
        from filelock import FileLock

        path = self.root / "locks" / "names.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        return FileLock(str(path))

    def holders_of(self, filename: str) -> list[Entry]:
        """Entries whose wheel has this file name (a build tag makes another name)."""
        return [e for e in self.all_entries() if e.manifest.get("wheel") == filename]

    def yanked(self) -> dict[str, str]:
        """``yanked.toml`` as ``{filename: reason}``; a missing file means nothing is yanked."""
        path = self.root / "yanked.toml"
        if not path.exists():
            return {}
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise WheelhouseError("index.yank-invalid", f"{path}: not valid TOML ({exc})", "fix the syntax; see docs/wheelhouse.md") from exc
        items = data.get("yank", [])
        if not isinstance(items, list):
            raise WheelhouseError("index.yank-invalid", f"{path}: 'yank' must be an array of tables", 'write [[yank]] file = "<wheel>" reason = "..."')
        yanks: dict[str, str] = {}
        for i, item in enumerate(items):
            if not isinstance(item, dict) or not isinstance(item.get("file"), str) or not item["file"]:
                raise WheelhouseError("index.yank-invalid", f"{path}: yank[{i}].file is missing or not a string", 'each [[yank]] needs file = "<wheel filename>"')
            reason = item.get("reason", "")
            if not isinstance(reason, str):
                raise WheelhouseError("index.yank-invalid", f"{path}: yank[{i}].reason must be a string", 'write reason = "why"')
            yanks[item["file"]] = reason
        return yanks

    def yank(self, filename: str, reason: str) -> None:
        """Mark a file yanked (it stays served, so pinned installs keep working, but resolvers skip it)."""
        if filename in self.yanked():
            return
        path = self.root / "yanked.toml"
        text = path.read_text(encoding="utf-8") if path.is_file() else ""
        # JSON strings are valid TOML basic strings: the quoting is right for any name or reason
        text += f"\n[[yank]]\nfile = {json.dumps(filename)}\nreason = {json.dumps(reason)}\n"
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)


def verify_level(report: Mapping[str, Any]) -> dict[str, Any]:
    """How far a passed verification went: ``gpu`` (kernels ran on the GPU named), ``cpu`` (tests ran) or ``static``."""
    gpu = report.get("gpu")
    ran = [t for t in report.get("tests", []) if t.get("outcome") == "passed"]
    if gpu and ran:
        return {"level": "gpu", "gpu": gpu.get("name"), "capability": gpu.get("capability")}
    return {"level": "cpu" if ran else "static", "gpu": None, "capability": None}


def describe_state(manifest: Mapping[str, Any]) -> str:
    """``verified (gpu kernels on sm_90, NVIDIA H200)``, ``unverified``, ``failed``: for people and pages."""
    state = manifest.get("state") or {"passed": "verified", "failed": "failed"}.get(str(manifest.get("verify")), "unverified")
    level = manifest.get("verify_level") or {}
    if state != "verified" or not level:
        return state
    if level.get("level") == "gpu":
        cap = str(level.get("capability") or "").replace(".", "")
        return f"verified (gpu kernels on sm_{cap}, {level.get('gpu')})"
    return f"verified ({level.get('level')} tests)" if level.get("level") == "cpu" else "verified (static audit only)"


def differing_inputs(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Key inputs that differ between two plans, one line each (``toolchain.nvcc: 13.0.48 -> 13.0.88``)."""
    out: list[str] = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            out += differing_inputs(a, b, f"{prefix}{k}.")
        else:
            def short(v: Any) -> str:
                s = json.dumps(v, sort_keys=True)
                return s if len(s) <= 120 else s[:117] + "..."
            out.append(f"{prefix}{k}: {short(a)} -> {short(b)}")
    return out


def make_manifest(*, key: str, recipe: str, version: str, project: str, wheel: Path, sha256: str,
                  target: Mapping[str, Any], archs_found: list[str], built_at: str, build_seconds: float,
                  archs_ptx: list[str] | None = None, key_inputs: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """entry.json, every field of the contract present (``archs_ptx`` from the builds that record it)."""
    manifest = {
        "schema": SCHEMA, "key": key, "recipe": recipe, "version": version, "project": project,
        "wheel": wheel.name, "sha256": sha256, "size": wheel.stat().st_size,
        "target": {k: target[k] for k in ("archs", "cuda", "python", "label")},
        "archs_found": list(archs_found), "built_at": built_at, "build_seconds": round(build_seconds, 3), "verify": None,
        "state": "unverified", "verify_level": None, "key_inputs": dict(key_inputs or {}),
    }
    if archs_ptx is not None:
        manifest["archs_ptx"] = list(archs_ptx)
    return manifest


def write_json(path: Path, data: Any) -> None:
    _write_json(path, data)

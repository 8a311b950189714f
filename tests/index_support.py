"""Fixtures for the index tests and bench: real tiny wheels in a wheelhouse laid out per docs/wheelhouse.md."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
LABEL = "cu128.sm120"


@dataclass(frozen=True)
class WheelSpec:
    name: str = "demo-pkg"
    version: str = f"1.0.0+{LABEL}"
    requires_python: str | None = ">=3.8"
    tag: str = "py3-none-any"
    archs_found: tuple[str, ...] = ("sm_120a",)
    verify: str | None = "passed"
    built_at: str = "2025-05-01T12:00:00Z"


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def make_wheel(directory: Path, spec: WheelSpec = WheelSpec()) -> Path:
    """A valid, installable pure-Python wheel with METADATA, WHEEL and RECORD."""
    dist = spec.name.replace("-", "_")
    filename = f"{dist}-{spec.version}-{spec.tag}.whl"
    info = f"{dist}-{spec.version}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {spec.name}\nVersion: {spec.version}\n"
    if spec.requires_python:
        metadata += f"Requires-Python: {spec.requires_python}\n"
    metadata += "\nA tiny wheel made by the wheelforge tests.\n"
    files = {
        f"{dist}/__init__.py": f'__version__ = "{spec.version}"\n'.encode(),
        f"{info}/METADATA": metadata.encode(),
        f"{info}/WHEEL": f"Wheel-Version: 1.0\nGenerator: wheelforge-tests\nRoot-Is-Purelib: true\nTag: {spec.tag}\n".encode(),
    }
    record = "".join(f"{n},{_record_hash(d)},{len(d)}\n" for n, d in files.items()) + f"{info}/RECORD,,\n"
    files[f"{info}/RECORD"] = record.encode()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / filename
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for n, d in files.items():
            zf.writestr(zipfile.ZipInfo(n, date_time=(2020, 1, 1, 0, 0, 0)), d)
    return path


def add_entry(wheelhouse: Path, spec: WheelSpec = WheelSpec(), *, log: bool = True) -> dict:
    """One finished entry: entries/<key>/{wheel, entry.json, provenance.json, verify.json} and logs/<key>.log."""
    key = hashlib.sha256(f"{spec.name}|{spec.version}|{spec.tag}".encode()).hexdigest()
    entry_dir = wheelhouse / "entries" / key
    wheel = make_wheel(entry_dir, spec)
    data = wheel.read_bytes()
    entry = {
        "schema": 1,
        "key": key,
        "recipe": spec.name,
        "version": spec.version.split("+")[0],
        "project": spec.name,
        "wheel": wheel.name,
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
        "target": {"archs": ["12.0"], "cuda": "12.8", "python": "cp311", "label": LABEL},
        "archs_found": list(spec.archs_found),
        "built_at": spec.built_at,
        "build_seconds": 1.5,
        "verify": spec.verify,
    }
    (entry_dir / "entry.json").write_text(json.dumps(entry, indent=1))
    provenance = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": wheel.name, "digest": {"sha256": entry["sha256"]}}],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {"buildDefinition": {"buildType": "https://wheelforge.dev/build/v1"}, "runDetails": {}},
    }
    (entry_dir / "provenance.json").write_text(json.dumps(provenance))
    if spec.verify is not None:
        (entry_dir / "verify.json").write_text(json.dumps({"result": spec.verify, "tests": []}))
    if log:
        (wheelhouse / "logs").mkdir(parents=True, exist_ok=True)
        (wheelhouse / "logs" / f"{key}.log").write_text(f"building {wheel.name}\nok\n")
    return entry


def make_wheelhouse(root: Path, specs: list[WheelSpec] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for spec in specs if specs is not None else default_specs():
        add_entry(root, spec)
    return root


def default_specs() -> list[WheelSpec]:
    return [
        WheelSpec(),
        WheelSpec(version=f"0.9.0+{LABEL}", requires_python="<4,>=3.8", verify="failed", built_at="2025-04-01T08:00:00Z"),
        WheelSpec(name="some-name", version=f"2.0.0+{LABEL}", archs_found=(), verify=None),
    ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(**extra: str) -> dict[str, str]:
    """The environment for subprocesses: ours, with src/ importable and no pip config leaking an index."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    # Only our index may answer: drop every other package source the machine configures.
    for k in [k for k in env if k.startswith(("PIP_INDEX", "PIP_EXTRA_INDEX", "PIP_FIND_LINKS", "PIP_NO_INDEX", "UV_INDEX", "UV_EXTRA_INDEX", "UV_DEFAULT_INDEX", "UV_FIND_LINKS"))]:
        env.pop(k)
    env["PIP_CONFIG_FILE"] = os.devnull
    env["UV_NO_CONFIG"] = "1"
    env.update(extra)
    return env


def wait_http(url: str, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            raise RuntimeError(f"server exited with {proc.returncode}: {out[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not answer within {timeout} s") from None
            time.sleep(0.1)


@contextlib.contextmanager
def running_server(wheelhouse: Path, workers: int = 1):
    """``python -m wheelforge serve`` as a real subprocess on a free loopback port; yields the base URL."""
    port = free_port()
    cmd = [sys.executable, "-m", "wheelforge", "serve", "--wheelhouse", str(wheelhouse), "--port", str(port), "--workers", str(workers)]
    print("+", " ".join(cmd), flush=True)
    proc = subprocess.Popen(cmd, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(base + "/", proc=proc)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

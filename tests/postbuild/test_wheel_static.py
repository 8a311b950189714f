"""Checks every wheel gets, whatever the project: audit, version label, RECORD, install, GPU fit."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import re
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

pytestmark = pytest.mark.postbuild


def _wheel(target):
    if target.wheel is None:
        pytest.skip("no wheel file given (WHEELFORGE_WHEEL): checking installed packages only")
    if not target.wheel.is_file():
        pytest.fail(f"wheel {target.wheel} does not exist", pytrace=False)
    return target.wheel


def _dist_info(zf: zipfile.ZipFile) -> str:
    tops = {n.split("/", 1)[0] for n in zf.namelist() if n.split("/", 1)[0].endswith(".dist-info") and "/" in n}
    if len(tops) != 1:
        pytest.fail(f"wheel must hold exactly one .dist-info folder, found {sorted(tops) or 'none'}", pytrace=False)
    return tops.pop()


def _metadata(zf: zipfile.ZipFile) -> dict[str, str]:
    text = zf.read(f"{_dist_info(zf)}/METADATA").decode("utf-8")
    head = text.split("\n\n", 1)[0]
    return {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in head.splitlines() if ":" in line and not line.startswith(" "))}


def test_static_audit_covers_requested_archs(target):
    """The pure-Python fatbin audit (run by verify on the host) found SASS for every requested arch."""
    _wheel(target)
    if target.audit_json is None:
        pytest.skip("no audit result given (WHEELFORGE_AUDIT_JSON): run the audit with `invoke inspect`")
    report = json.loads(target.audit_json.read_text())
    assert report.get("ok") is True, f"static audit failed: {json.dumps(report)[:400]}"
    found = {a.lower() for a in report.get("archs_found", [])}
    if any(found) or target.archs:
        # sm_120a satisfies a request for 12.0 (the arch-specific build is a superset).
        missing = [sm for sm in target.sm_archs if sm not in found and f"{sm}a" not in found and sm.rstrip("af") not in found]
        assert not missing, f"audit found {sorted(found)}, missing SASS for {missing}"


def test_metadata_version_carries_local_label(target):
    with zipfile.ZipFile(_wheel(target)) as zf:
        meta = _metadata(zf)
    version = meta.get("Version", "")
    local = version.split("+", 1)[1] if "+" in version else ""
    if target.local_label:
        assert local == target.local_label, f"METADATA Version {version!r} lacks the local label +{target.local_label}"
    elif target.cuda:
        # Without an exact label, the CUDA part must at least be there (official torch: +cu130).
        cu = "cu" + "".join(target.cuda.split(".")[:2])
        assert cu in local.split("."), f"METADATA Version {version!r} has no +{cu} local label"
    else:
        pytest.skip("neither WHEELFORGE_LOCAL_LABEL nor WHEELFORGE_CUDA given")


def test_record_hashes_valid(target):
    """Every member is listed in RECORD with a matching sha256 and size (what pip trusts)."""
    with zipfile.ZipFile(_wheel(target)) as zf:
        info = _dist_info(zf)
        rows = list(csv.reader(io.StringIO(zf.read(f"{info}/RECORD").decode("utf-8"))))
        listed = {}
        for row in rows:
            if not row:
                continue
            path, digest, size = (row + ["", ""])[:3]
            listed[path] = (digest, size)
        members = [n for n in zf.namelist() if not n.endswith("/")]
        unsigned = {f"{info}/RECORD", f"{info}/RECORD.jws", f"{info}/RECORD.p7s"}
        problems = []
        for name in members:
            if name in unsigned:
                continue
            if name not in listed:
                problems.append(f"{name}: not in RECORD")
                continue
            digest, size = listed[name]
            algo, _, want = digest.partition("=")
            if algo != "sha256":
                problems.append(f"{name}: hash {algo or 'missing'} (need sha256)")
                continue
            data = zf.read(name)
            got = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            if got != want:
                problems.append(f"{name}: sha256 mismatch")
            if size and int(size) != len(data):
                problems.append(f"{name}: size {len(data)} != RECORD {size}")
        stale = sorted(set(listed) - set(members))
        problems += [f"{name}: in RECORD but not in the wheel" for name in stale]
    assert not problems, f"{len(problems)} RECORD problem(s): " + "; ".join(problems[:10])


def test_installed_distribution_is_this_wheel(target):
    """The venv runs the wheel under test, not something pip fetched instead."""
    with zipfile.ZipFile(_wheel(target)) as zf:
        meta = _metadata(zf)
    name, version = meta["Name"], meta["Version"]
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        pytest.fail(f"{name} is not installed in this environment", pytrace=False)
    assert dist.version == version, f"installed {name} {dist.version}, wheel is {version}"
    where = Path(str(dist.locate_file(""))).resolve()
    assert not re.search(r"[/\\]src[/\\]?$", str(where)), f"{name} is imported from a source tree at {where}"


@pytest.mark.gpu
def test_gpu_is_covered(target, gpu):
    """Reached only with a GPU; the session already stopped if it is not covered (unless allowed)."""
    if not target.covers(gpu.capability):
        assert target.allow_arch_mismatch, f"GPU {gpu.sm} is not covered by this wheel: {', '.join(target.sm_archs)}"
        pytest.skip(f"GPU {gpu.sm} ({gpu.name}) not covered by {target.sm_archs}; allowed by --allow-arch-mismatch")
    assert gpu.capability[0] > 0, f"driver reported capability {gpu.capability} for {gpu.name}"

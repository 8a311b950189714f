"""Build provenance: an in-toto Statement v1 carrying an SLSA v1 provenance predicate.

Shape (https://in-toto.io/Statement/v1, https://slsa.dev/provenance/v1)::

    {"_type": "https://in-toto.io/Statement/v1",
     "subject": [{"name": <wheel file name>, "digest": {"sha256": ...}}],
     "predicateType": "https://slsa.dev/provenance/v1",
     "predicate": {
       "buildDefinition": {"buildType": ..., "externalParameters": {recipe, version, patches, archs, ...},
                           "internalParameters": {jobs, isolation, ...},
                           "resolvedDependencies": [source, toolchain tools, build dependencies]},
       "runDetails": {"builder": {"id": ...}, "metadata": {"invocationId": <key>, "startedOn", "finishedOn"}}}}

Pure: the caller passes every value in.  Unsigned (signing is a publishing concern).
"""

from __future__ import annotations

import platform
import socket
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from wheelforge import __version__

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "https://wheelforge.dev/build/pep517-wheel/v1"


def iso(ts: float | datetime) -> str:
    """RFC 3339 UTC with a ``Z``, second precision."""
    dt = ts if isinstance(ts, datetime) else datetime.fromtimestamp(ts, tz=timezone.utc)
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _digest(identity: str) -> dict[str, str]:
    """``sha256:abc`` / ``git:abc`` / ``tree:abc`` -> a DigestSet."""
    algo, _, value = identity.partition(":")
    if not value:
        return {}
    return {{"git": "gitCommit", "tree": "sha256"}.get(algo, algo): value} if algo in ("sha256", "git", "tree") else {}


def resolved_dependencies(plan: Mapping[str, Any], toolchain_tools: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """Source, toolchain and build dependencies as in-toto ResourceDescriptors."""
    src = plan["source"]
    deps: list[dict[str, Any]] = []
    uri = src.get("url") or (f"pkg:pypi/{src['name']}@{src['version']}" if src.get("type") == "sdist" else f"file://{src.get('path', '')}")
    deps.append({"name": "source", "uri": uri, "digest": _digest(src["digest"]),
                 "annotations": {k: v for k, v in src.items() if k not in ("digest",)}})
    for p in plan.get("patches", ()):
        deps.append({"name": f"patch:{p['file']}", "digest": {"sha256": p["sha256"]}})
    tools = dict(toolchain_tools or {})
    for key, value in plan.get("toolchain", {}).items():
        if value:
            tools.setdefault(key, str(value))
    for name, version in sorted(tools.items()):
        deps.append({"name": f"toolchain:{name}", "annotations": {"version": version}})
    for d in plan.get("build_deps", ()):
        entry: dict[str, Any] = {"name": f"build-dependency:{d['name']}", "annotations": {"version": d["version"], "identity": d["identity"]}}
        digest = _digest(d["identity"])
        if digest:
            entry["digest"] = digest
        if d.get("cuda_version"):
            entry["annotations"]["cuda_version"] = d["cuda_version"]
        deps.append(entry)
    return deps


def statement(
    *,
    wheel_name: str,
    wheel_sha256: str,
    plan: Mapping[str, Any],
    started: float,
    finished: float,
    toolchain_tools: Mapping[str, str] | None = None,
    builder_id: str | None = None,
    extra_subjects: Sequence[tuple[str, str]] = (),
) -> dict[str, Any]:
    """The provenance document for one wheel; ``plan`` is ``BuildPlan.to_json()``."""
    target = plan["target"]
    external = {
        "recipe": plan["recipe"],
        "project": plan["project"],
        "version": plan["version"],
        "full_version": plan["full_version"],
        "patches": [dict(p) for p in plan.get("patches", ())],
        "archs": list(target["archs"]),
        "cuda": target["cuda"],
        "python": target["python"],
        "platform": target.get("platform"),
        "label": target.get("label"),
    }
    internal = {"jobs": plan.get("jobs"), "isolation": plan.get("isolation"), "local_version_hook": plan.get("local_version_hook"),
                "cache_key": plan["key"]}
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": wheel_name, "digest": {"sha256": wheel_sha256}},
                    *({"name": n, "digest": {"sha256": h}} for n, h in extra_subjects)],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": external,
                "internalParameters": internal,
                "resolvedDependencies": resolved_dependencies(plan, toolchain_tools),
            },
            "runDetails": {
                "builder": {"id": builder_id or f"https://wheelforge.dev/builder/{socket.gethostname()}",
                            "version": {"wheelforge": __version__, "python": platform.python_version()}},
                "metadata": {"invocationId": plan["key"], "startedOn": iso(started), "finishedOn": iso(finished)},
            },
        },
    }

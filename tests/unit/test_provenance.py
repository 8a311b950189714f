"""The provenance document has the in-toto Statement v1 / SLSA v1 shape."""

from __future__ import annotations

from wheelforge.store.provenance import PREDICATE_TYPE, STATEMENT_TYPE, iso, statement

PLAN = {
    "recipe": "xformers", "project": "xformers", "version": "0.0.35", "full_version": "0.0.35+cu128.sm120", "key": "ab" * 32,
    "source": {"type": "sdist", "name": "xformers", "version": "0.0.35", "digest": "sha256:" + "1" * 64},
    "patches": [{"file": "0001-fix.patch", "sha256": "2" * 64}],
    "target": {"archs": ["12.0"], "cuda": "12.8", "python": "cp311", "platform": "linux_x86_64", "label": "cu128.sm120"},
    "toolchain": {"cuda_version": "12.8", "host_compiler": "13.3.0", "cmake": "3.31.0"},
    "build_deps": [{"name": "torch", "version": "2.10.0+cu128.sm120", "identity": "sha256:" + "3" * 64, "cuda_version": "12.8", "recipe": "torch"}],
    "jobs": 4, "isolation": True, "local_version_hook": "env",
}


def test_statement_shape() -> None:
    doc = statement(wheel_name="xformers-0.0.35+cu128.sm120-py39-none-linux_x86_64.whl", wheel_sha256="f" * 64, plan=PLAN,
                    started=0, finished=90, builder_id="https://ci.example/runner/1")
    assert doc["_type"] == STATEMENT_TYPE and doc["predicateType"] == PREDICATE_TYPE
    assert doc["subject"] == [{"name": "xformers-0.0.35+cu128.sm120-py39-none-linux_x86_64.whl", "digest": {"sha256": "f" * 64}}]
    ext = doc["predicate"]["buildDefinition"]["externalParameters"]
    assert ext["recipe"] == "xformers" and ext["version"] == "0.0.35" and ext["archs"] == ["12.0"]
    assert ext["patches"] == [{"file": "0001-fix.patch", "sha256": "2" * 64}]
    deps = {d["name"]: d for d in doc["predicate"]["buildDefinition"]["resolvedDependencies"]}
    assert deps["source"]["digest"] == {"sha256": "1" * 64} and deps["source"]["uri"] == "pkg:pypi/xformers@0.0.35"
    assert deps["build-dependency:torch"]["digest"] == {"sha256": "3" * 64}
    assert deps["toolchain:host_compiler"]["annotations"]["version"] == "13.3.0"
    assert deps["patch:0001-fix.patch"]["digest"] == {"sha256": "2" * 64}
    run = doc["predicate"]["runDetails"]
    assert run["builder"]["id"] == "https://ci.example/runner/1"
    assert run["metadata"] == {"invocationId": "ab" * 32, "startedOn": "1970-01-01T00:00:00Z", "finishedOn": "1970-01-01T00:01:30Z"}


def test_git_source_digest_is_a_commit() -> None:
    plan = dict(PLAN, source={"type": "git", "url": "https://github.com/pytorch/pytorch", "tag": "v2.10.0", "commit": "c" * 40,
                              "submodules": True, "digest": "git:" + "c" * 40}, build_deps=[], patches=[])
    deps = statement(wheel_name="w.whl", wheel_sha256="0" * 64, plan=plan, started=0, finished=1)["predicate"]["buildDefinition"]["resolvedDependencies"]
    assert deps[0]["digest"] == {"gitCommit": "c" * 40} and deps[0]["uri"] == "https://github.com/pytorch/pytorch"


def test_iso_is_utc_z() -> None:
    assert iso(86400.7) == "1970-01-02T00:00:00Z"

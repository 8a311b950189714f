"""PEP 825 wheel variants on the index: every CUDA wheel is also published as a variant twin.

Future home: ``wheelforge.serving.variants``.  Used by ``build_index(..., variants=True)``
(``invoke index --variants``); the plain wheels stay as they are.

What a twin is
    Beside ``demo_cuda-0.1.0+cu130.sm120-cp311-cp311-linux_x86_64.whl`` the index lists
    ``demo_cuda-0.1.0+variants-cp311-cp311-linux_x86_64-cu130.sm120.whl``: the same files,
    version ``0.1.0+variants``, variant label ``cu130.sm120`` (the plain wheel's local label),
    and ``*.dist-info/variant.json`` with its properties.  All twins of one release share that
    version, so a variant-aware installer chooses among them by the GPU it finds; the index
    file ``{name}-{version}-variants.json`` maps every label to its properties and is linked
    from the project page like a wheel (PEP 825, "Index-level metadata").

Why the ``+variants`` version
    Installers pick a version first and a variant of it second.  The twins' version must sort
    above every plain ``+cuXYZ.smNN`` build of the same release, or ``demo-cuda==0.1.0`` would
    resolve to a plain wheel and never look at variants.  PEP 440 compares local segments
    lexically and ``variants`` > ``cu...``; :func:`order_warnings` reports a release where a plain
    label sorts higher.  When no twin fits (no GPU, or a GPU nobody built for), uv takes the
    highest plain version instead, the same wheel pip picks: pip, and uv without the preview
    feature, skip file names with a sixth dash-separated part (measured with pip 26.3 and
    uv 0.13.8 in tests/integration/test_variants.py).

Properties come from measurements, never from the recipe
    ``nvidia :: cuda_version_lower_bound :: X.Y``  the nvcc that built the wheel (provenance
        ``toolchain:nvcc``, probed at build time; entries without it: entry.json ``target.cuda``,
        which the toolchain probe had to match before the build could start);
    ``nvidia :: sm_arch :: NNN_real``  every SASS arch the static audit found (``sm_120a`` ->
        ``120a_real``, CMake's spelling);
    ``nvidia :: sm_arch :: NNN_virtual``  every PTX arch the static audit found.
    A wheel without device code gets no twin.  Arch-specific (``a``) and family (``f``) SASS keep
    their suffix: uv 0.13.8's built-in provider reports only ``NNN_real``/``NNN_virtual`` for a
    GPU (probed with ``NV_VARIANT_PROVIDER_FORCE_SM_ARCH``), so uv does not select those twins.

Format
    variantlib 0.2.x writes ``variant.json`` and merges ``variants.json``; its schema URL is pinned
    in :data:`VARIANT_SCHEMA` (variant metadata v0.2.0, the PEP 850 providers draft) and checked,
    so a variantlib that writes another draft version stops the index instead of changing the
    format quietly.  uv 0.13.8 knows this schema as ``.../peps/850/v0.2.0.json``; for the URL
    variantlib writes it logs "Unknown variant metadata schema" at debug level and reads the file
    (measured).  The ``providers`` entry names the package and plugin of NVIDIA's provider
    (wheelnext/nvidia-variant-provider README.md); uv 0.13.8 answers it with its built-in copy
    only when both match (measured: with either one alone it skips the namespace).

Derived twins are cached in ``wheelhouse/variants/<key>/`` (entries never change, so a twin is
made once per entry: re-writing a torch wheel takes a while) and hardlinked into ``index/files/``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from importlib.metadata import version as dist_version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from packaging.version import InvalidVersion, Version

from wheelforge.host.digest import sha256_file
from wheelforge.model.errors import IndexError_

if TYPE_CHECKING:
    from variantlib.models.variant import VariantDescription, VariantProperty
    from variantlib.models.variant_info import VariantInfo

    from wheelforge.serving.index import IndexFile

#: The variant metadata schema (``$schema``) variantlib 0.2.2 writes: draft v0.2.0.
VARIANT_SCHEMA = "https://variants-schema.wheelnext.dev/v0.2.0.json"
#: Local version label of every twin (see the module docstring for why it must sort high).
VARIANTS_LOCAL = "variants"
NAMESPACE = "nvidia"
#: NVIDIA's provider as its README declares it; uv maps exactly this to its built-in provider.
PROVIDER_REQUIRES = ("nvidia-variant-provider>=0.0.1,<1.0.0",)
PROVIDER_PLUGIN_API = "nvidia_variant_provider.plugin:NvidiaVariantPlugin"
#: Bump when a twin made from the same entry would come out different (invalidates the cache).
CACHE_FORMAT = 1
CACHE_DIR = "variants"

_SM = re.compile(r"^sm_(\d+)([a-z]?)$")


@dataclass(frozen=True)
class Measured:
    """What the build and the audit measured about one wheel."""

    cuda: str  # "13.0"
    sass: tuple[str, ...]  # ("sm_120",)
    ptx: tuple[str, ...]  # ("sm_120",)
    cuda_from: str  # where ``cuda`` was read
    archs_from: str  # where ``sass``/``ptx`` were read

    @property
    def has_device_code(self) -> bool:
        return bool(self.sass or self.ptx)


@dataclass(frozen=True)
class Twin:
    """A variant twin in the cache."""

    path: Path
    label: str
    version: str
    sha256: str
    size: int
    variant_json: str  # the wheel's *.dist-info/variant.json
    properties: tuple[str, ...]


# --------------------------------------------------------------------------- measured facts


def _nvcc_from_provenance(entry_dir: Path) -> str | None:
    try:
        doc = json.loads((entry_dir / "provenance.json").read_text(encoding="utf-8"))
        deps = doc["predicate"]["buildDefinition"]["resolvedDependencies"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    for dep in deps:
        if isinstance(dep, dict) and dep.get("name") == "toolchain:nvcc":
            v = (dep.get("annotations") or {}).get("version")
            return str(v) if v else None
    return None


def _major_minor(text: str, where: str) -> str:
    try:
        release = Version(text).release
    except InvalidVersion:
        raise IndexError_("index.variant-cuda", f"{where}: CUDA version {text!r} is not a version", "rebuild the entry") from None
    return f"{release[0]}.{release[1] if len(release) > 1 else 0}"


def measure(entry_dir: Path, manifest: Mapping[str, Any], wheel: Path) -> Measured:
    """The built-with CUDA and the SASS/PTX archs of one entry.

    ``archs_ptx`` is in entry.json from the build that wrote it on; older entries are
    re-audited (the audit reads the wheel's fatbins; no GPU or cuobjdump needed).
    """
    target_cuda = (manifest.get("target") or {}).get("cuda")
    nvcc = _nvcc_from_provenance(entry_dir)
    if nvcc:
        cuda, cuda_from = _major_minor(nvcc, f"{entry_dir}/provenance.json"), "provenance toolchain:nvcc"
        if target_cuda and _major_minor(str(target_cuda), f"{entry_dir}/entry.json") != cuda:
            raise IndexError_("index.variant-cuda", f"{entry_dir.name}: provenance says nvcc {nvcc}, entry.json target CUDA {target_cuda}",
                              "the entry is inconsistent; remove it and rebuild")
    elif target_cuda:
        cuda, cuda_from = _major_minor(str(target_cuda), f"{entry_dir}/entry.json"), "entry.json target.cuda"
    else:
        raise IndexError_("index.variant-cuda", f"{entry_dir.name}: neither provenance.json nor entry.json says which CUDA built it",
                          "rebuild the entry with this wheelforge")
    if "archs_ptx" in manifest:
        sass = tuple(manifest.get("archs_found") or ())
        ptx = tuple(manifest.get("archs_ptx") or ())
        archs_from = "entry.json"
    else:
        from wheelforge.binaries.audit import audit_path

        report = audit_path(wheel)
        sass, ptx, archs_from = tuple(report.archs_found), tuple(report.archs_ptx), "audit"
    return Measured(cuda=cuda, sass=sass, ptx=ptx, cuda_from=cuda_from, archs_from=archs_from)


def _sm_value(arch: str, kind: str) -> str:
    m = _SM.match(arch)
    if not m:
        raise IndexError_("index.variant-arch", f"audit arch {arch!r} is not sm_<number>[suffix]", "report this as a bug")
    return f"{m.group(1)}{m.group(2)}_{kind}"


def properties(m: Measured) -> list[VariantProperty]:
    """The variant properties of a wheel, from measurements only."""
    from variantlib.models.variant import VariantProperty

    props = [VariantProperty(NAMESPACE, "cuda_version_lower_bound", m.cuda)]
    props += [VariantProperty(NAMESPACE, "sm_arch", _sm_value(a, "real")) for a in m.sass]
    props += [VariantProperty(NAMESPACE, "sm_arch", _sm_value(a, "virtual")) for a in m.ptx]
    return props


def variant_info() -> VariantInfo:
    """The package-wide part of variant.json: one namespace, NVIDIA's install-time provider."""
    from variantlib.models.variant_info import ProviderInfo, VariantInfo

    return VariantInfo(namespace_priorities=[NAMESPACE],
                       providers={NAMESPACE: ProviderInfo(requires=list(PROVIDER_REQUIRES), plugin_api=PROVIDER_PLUGIN_API)})


def label_for(plain_version: str, props: Sequence[VariantProperty]) -> str:
    """The plain wheel's local label (``cu130.sm120``) when it is a valid variant label, else variantlib's hash label."""
    from variantlib.constants import NULL_VARIANT_LABEL, VALIDATION_VARIANT_LABEL_REGEX
    from variantlib.models.variant import VariantDescription

    local = Version(plain_version).local
    if local and local != NULL_VARIANT_LABEL and VALIDATION_VARIANT_LABEL_REGEX.fullmatch(local):
        return local
    return VariantDescription(properties=list(props)).label


def twin_version(plain_version: str) -> str:
    return f"{Version(plain_version).public}+{VARIANTS_LOCAL}"


def dist_info_json(desc: VariantDescription) -> str:
    """``variant.json`` for one twin, written by variantlib; refuses another schema version."""
    from variantlib.api import make_variant_dist_info

    text = make_variant_dist_info(desc, variant_info=variant_info())
    schema = json.loads(text).get("$schema")
    if schema != VARIANT_SCHEMA:
        raise IndexError_("index.variant-schema", f"variantlib {dist_version('variantlib')} writes schema {schema}, wheelforge publishes {VARIANT_SCHEMA}",
                          "install variantlib 0.2.x (pip install 'variantlib>=0.2.2,<0.3'), or port wheelforge.serving.variants to the new draft")
    return text


# --------------------------------------------------------------------------- the cache


def _read_cached(d: Path, plain_sha256: str) -> Twin | None | bool:
    """A cached twin (or None: the entry has no device code); False when the cache must be rebuilt."""
    try:
        derived = json.loads((d / "derived.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if derived.get("format") != CACHE_FORMAT or derived.get("plain_sha256") != plain_sha256 or derived.get("variantlib") != dist_version("variantlib"):
        return False
    twin = derived.get("twin")
    if twin is None:
        return None
    path = d / twin["filename"]
    try:
        if path.stat().st_size != twin["size"]:
            return False
        variant_json = (d / "variant.json").read_text(encoding="utf-8")
    except OSError:
        return False
    return Twin(path=path, label=twin["label"], version=twin["version"], sha256=twin["sha256"], size=twin["size"],
                variant_json=variant_json, properties=tuple(twin["properties"]))


def twin_for(wheelhouse: Path, f: IndexFile, manifest: Mapping[str, Any]) -> Twin | None:
    """The variant twin of one plain wheel, made on first use and cached per entry key."""
    from variantlib.models.variant import VariantDescription

    from wheelforge.binaries.wheelmeta import rewrite_wheel

    root = Path(wheelhouse) / CACHE_DIR
    d = root / f.key
    cached = _read_cached(d, f.sha256)
    if cached is not False:
        return cached  # type: ignore[return-value]
    assert f.wheel_path is not None and f.entry_dir is not None
    m = measure(f.entry_dir, manifest, f.wheel_path)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{f.key}.tmp-", dir=root))
    try:
        derived: dict[str, Any] = {"format": CACHE_FORMAT, "plain": f.filename, "plain_sha256": f.sha256,
                                   "variantlib": dist_version("variantlib"), "measured": asdict(m), "twin": None}
        twin = None
        if m.has_device_code:
            props = properties(m)
            label = label_for(f.version, props)
            desc = VariantDescription(properties=props, label=label)
            variant_json = dist_info_json(desc)
            version = twin_version(f.version)
            rewritten = rewrite_wheel(f.wheel_path, tmp, version=version, add_dist_info={"variant.json": variant_json.encode("utf-8")})
            path = rewritten.with_name(f"{rewritten.name[:-len('.whl')]}-{label}.whl")
            os.rename(rewritten, path)
            (tmp / "variant.json").write_text(variant_json, encoding="utf-8")
            twin = Twin(path=d / path.name, label=label, version=version, sha256=sha256_file(path), size=path.stat().st_size,
                        variant_json=variant_json, properties=tuple(p.to_str() for p in desc.properties))
            derived["twin"] = {"filename": path.name, "label": label, "version": version, "sha256": twin.sha256,
                               "size": twin.size, "properties": list(twin.properties)}
        (tmp / "derived.json").write_text(json.dumps(derived, indent=1) + "\n", encoding="utf-8")
        if d.exists():
            shutil.rmtree(d)  # stale format; only index runs write here and they hold the index lock
        os.rename(tmp, d)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return twin


def sweep(wheelhouse: Path, keep: set[str]) -> None:
    """Drop cached twins of entries that are gone, and half-made ones from a crash."""
    root = Path(wheelhouse) / CACHE_DIR
    if not root.is_dir():
        return
    for d in root.iterdir():
        if d.name not in keep:
            shutil.rmtree(d, ignore_errors=True)


# --------------------------------------------------------------------------- index files


def variants_json_name(project: str, version: str) -> str:
    """``{name}-{version}-variants.json`` with the name escaped as in wheel file names."""
    return f"{re.sub(r'[-_.]+', '_', project).lower()}-{Version(version)}-variants.json"


def _read_metadata(wheel: Path) -> bytes:
    with zipfile.ZipFile(wheel) as zf:
        (name,) = [n for n in zf.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA")]
        return zf.read(name)


def order_warnings(plain: Sequence[IndexFile]) -> list[str]:
    """Plain versions that sort above the twins' version (installers would never reach the twins)."""
    out = []
    for f in plain:
        twin = Version(twin_version(f.version))
        if Version(f.version) > twin:
            out.append(f"{f.filename}: its version sorts above {twin}, so installers pick it before any variant of {twin.public}")
    return out


def index_files(wheelhouse: Path, plain: Sequence[IndexFile]) -> tuple[list[IndexFile], list[str]]:
    """The twins of ``plain`` and one ``variants.json`` per (project, twin version), as index files."""
    from variantlib.errors import ValidationError
    from variantlib.variant_dist_info import VariantDistInfo

    from wheelforge.serving.index import IndexFile

    warnings = order_warnings(plain)
    groups: dict[tuple[str, str], list[tuple[IndexFile, Twin]]] = {}
    merged: dict[tuple[str, str], Any] = {}
    for f in plain:
        assert f.entry_dir is not None
        manifest = json.loads((f.entry_dir / "entry.json").read_text(encoding="utf-8"))
        twin = twin_for(wheelhouse, f, manifest)
        if twin is None:
            continue
        group = (f.project, twin.version)
        info = VariantDistInfo(twin.variant_json, twin.label)
        if group in merged:
            try:
                merged[group].merge(info)
            except ValidationError as exc:
                warnings.append(f"{f.filename}: variant label {twin.label} of {f.project} {twin.version} already stands for other properties ({exc}); its twin is left out")
                continue
        else:
            merged[group] = info
        groups.setdefault(group, []).append((f, twin))
    sweep(wheelhouse, {f.key for f in plain})

    out: list[IndexFile] = []
    for (project, version), members in groups.items():
        for f, twin in members:
            out.append(IndexFile(
                filename=twin.path.name, project=project, display_name=f.display_name, version=version, python_tag=f.python_tag,
                sha256=twin.sha256, size=twin.size, requires_python=f.requires_python, metadata=_read_metadata(twin.path),
                yanked=f.yanked, key=f.key, archs_found=f.archs_found, verify=f.verify, built_at=f.built_at,
                build_seconds=f.build_seconds, wheel_path=twin.path, entry_dir=f.entry_dir, sidecars=(), log=f.log,
                variant_label=twin.label,
            ))
        data = (merged[(project, version)].to_str() + "\n").encode("utf-8")
        # upload-time: the earliest member's build.  With the latest, a cutoff between two builds
        # (pip --uploaded-prior-to, uv --exclude-newer) would hide this file and so every older twin.
        times = sorted(f.built_at for f, _ in members if f.built_at)
        out.append(IndexFile(
            filename=variants_json_name(project, version), project=project, display_name=members[0][0].display_name,
            version=version, python_tag="", sha256=hashlib.sha256(data).hexdigest(), size=len(data), requires_python=None,
            metadata=None, yanked=None, key="", archs_found=(), verify=None, built_at=times[0] if times else None,
            build_seconds=None, wheel_path=None, entry_dir=None, data=data,
        ))
    return out, warnings

"""Recipes are data: one TOML file per project, validated into frozen types.

Every validation error names the file, the dotted key and the reason, so a user
can fix a recipe without reading Python.  The schema is documented in
``docs/recipes.md``; keep the two in step.
"""

from __future__ import annotations

import os
import re
import string
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from wheelforge.model import bundled
from wheelforge.model.errors import RecipeError
from wheelforge.model.nvidia_wheels import LIBS as NVIDIA_LIBS
from wheelforge.model.nvidia_wheels import placeholder_names as nvidia_placeholders

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

#: Placeholders an environment template may use; ``plan`` fills each one.
PLACEHOLDERS: Mapping[str, str] = {
    "version": "upstream version being built, e.g. 0.0.35",
    "local_version": "local version label, e.g. cu128.sm120",
    "full_version": "version with the local label, e.g. 0.0.35+cu128.sm120",
    "torch_cuda_arch_list": "TORCH_CUDA_ARCH_LIST form, e.g. 9.0;12.0",
    "cmake_cuda_architectures": "CMAKE_CUDA_ARCHITECTURES form, e.g. 90-real;120-real",
    "cuda_enabled": "ON when the target has CUDA archs, OFF for a CPU-only target (--arch cpu)",
    "cuda_arch_numbers": "nvcc's arch numbers, ';'-separated, suffix kept, +PTX dropped, e.g. 90;120a",
    "cuda_version": "CUDA version of the toolkit, e.g. 12.8",
    "cuda_home": "toolkit root, e.g. /usr/local/cuda-12.8",
    "jobs": "parallel compile jobs chosen from memory and cores",
    "python_tag": "target Python tag, e.g. cp311",
    "nvidia_requires": "the [nvidia_versions] pins for the target CUDA major, '|'-separated (PYTORCH_EXTRA_INSTALL_REQUIREMENTS form)",
}

#: Files the post-build suite copies beside every test module (wheelforge.verify.suite): a recipe's
#: ``test_module`` may not take one of these names.
SUITE_SUPPORT_FILES = ("conftest.py", "gguf_model.py", "hf_tiny_llama.py", "postbuild_support.py")

#: The build kinds a recipe may name; each is a strategy in wheelforge.model.kinds.
BUILD_KINDS = ("pep517", "cmake")
LOCAL_VERSION_HOOKS = ("env", "rewrite")
SOURCE_TYPES = ("git", "archive", "sdist", "path")

_HEX40 = re.compile(r"^[0-9a-f]{40}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# --------------------------------------------------------------------------- types


@dataclass(frozen=True)
class GitSource:
    url: str
    tag: str
    commit: str
    submodules: bool = True
    type: str = "git"


@dataclass(frozen=True)
class ArchiveSource:
    url: str
    sha256: str
    type: str = "archive"
    subdir: str | None = None  # the folder inside the archive to build (a project vendored in another's archive)


@dataclass(frozen=True)
class SdistSource:
    name: str
    version: str
    sha256: str
    filename: str | None = None
    url: str | None = None
    type: str = "sdist"
    subdir: str | None = None  # the folder inside the sdist to build (llama.cpp inside llama-cpp-python's sdist)


@dataclass(frozen=True)
class PathSource:
    """A local tree, resolved against the recipe file's folder (examples, tests)."""

    path: str
    type: str = "path"


Source = GitSource | ArchiveSource | SdistSource | PathSource


@dataclass(frozen=True)
class PatchRef:
    file: str
    when: SpecifierSet
    why: str = ""

    def applies_to(self, version: str) -> bool:
        return self.when.contains(Version(version), prereleases=True)


@dataclass(frozen=True)
class VersionPin:
    version: str
    source: Source
    requires_python: SpecifierSet = field(default_factory=SpecifierSet)
    cmake_defines: Mapping[str, str] = field(default_factory=dict)  # kind "cmake": this version's -D entries
    sources: Mapping[str, Source] = field(default_factory=dict)  # other sources of the same version, by name
    note: str = ""


@dataclass(frozen=True)
class BuildDeps:
    requires: tuple[str, ...] = ()
    recipes: tuple[str, ...] = ()
    # NVIDIA libraries compiled against, from their pip wheels in the build env (wheelforge.model.nvidia_wheels keys)
    nvidia: tuple[str, ...] = ()


@dataclass(frozen=True)
class Recipe:
    name: str
    project: str
    kind: str
    path: Path
    default_version: str
    versions: Mapping[str, VersionPin]
    env: Mapping[str, str]
    build: BuildDeps
    ram_per_job_gb: float
    local_version: str
    patches: tuple[PatchRef, ...]
    test_module: str
    runtime_requires: tuple[str, ...] = ()
    cmake_arch_rewrite: str = "none"
    description: str = ""
    wheel_tag: str = "{python_tag}-{python_tag}"  # python-abi part of the wheel name
    # CUDA major ("cu12") -> library key -> exact version: build env and Requires-Dist pins
    nvidia_versions: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    supported_archs: tuple[str, ...] = ()  # arch spellings the project's build honours; empty = any
    cmake: Mapping[str, Any] | None = None  # kind "cmake": the [cmake] table (wheelforge.model.cmake_wheel reads it)

    def unsupported_archs(self, archs: Any) -> list[str]:
        """Those of ``archs`` (CudaArch) the project would build no code for (``str(arch)`` not listed)."""
        if not self.supported_archs:
            return []
        return [str(a) for a in archs if str(a) not in self.supported_archs]

    @property
    def patch_dir(self) -> Path:
        return self.path.parent.parent / "patches" / self.name

    @property
    def test_module_path(self) -> Path:
        """The post-build test module: ``test_module`` is relative to the recipe file's folder.

        Computed without touching the disk (the planner is pure); :meth:`check_test_module` looks.
        """
        return Path(os.path.normpath(self.path.parent / self.test_module))

    def check_test_module(self) -> Path:
        """The test module's path; a :class:`RecipeError` naming the recipe file and key when it is not a file.

        Called when a plan with a verify step is made, so a missing module stops before any compile.
        """
        module = self.test_module_path
        if not module.is_file():
            raise RecipeError(
                "recipe.no-test-module",
                f"{self.path}: key 'test_module': {self.test_module!r} names {module}, which is not a file",
                f"write the post-build test module there, or fix the path (relative to {self.path.parent}; "
                "the bundled suite is '../tests/postbuild/test_<name>.py' from the bundled recipes/)",
            )
        return module

    def pin(self, version: str | None) -> VersionPin:
        version = version or self.default_version
        try:
            return self.versions[version]
        except KeyError:
            known = ", ".join(sorted(self.versions, key=Version))
            raise RecipeError(
                "recipe.version-unknown",
                f"recipe {self.name!r} has no version {version!r}",
                f"pick one of: {known} (or add [versions.\"{version}\"] to {self.path})",
            ) from None

    def builds_against(self, project: str) -> bool:
        """Whether the build compiles against ``project`` (a recipe dependency or a build requirement)."""
        want = canonicalize_name(project)
        return want in self.build.recipes or any(canonicalize_name(Requirement(r).name) == want for r in self.build.requires)

    def patches_for(self, version: str) -> tuple[PatchRef, ...]:
        return tuple(p for p in self.patches if p.applies_to(version))

    def resolve_source(self, pin: VersionPin, name: str | None = None) -> Source:
        """The pinned source, or the version's other source called ``name``; path sources are relative to the recipe file."""
        source = pin.source
        if name:
            if name not in pin.sources:
                raise RecipeError("recipe.source-unknown", f"recipe {self.name!r} {pin.version} has no source named {name!r}",
                                  f"known: {', '.join(sorted(pin.sources)) or 'none (only the pinned source)'}")
            source = pin.sources[name]
        if isinstance(source, PathSource):
            return PathSource(path=str((self.path.parent / source.path).resolve()))
        return source

    def build_inputs(self) -> dict[str, Any]:
        """The fields that reach the build and so can change the wheel's bytes (the cache key holds these);
        ``ram_per_job_gb``, ``runtime_requires`` (the verify venv's), ``wheel_tag`` (the backend names the
        wheel) and ``test_module`` cannot."""
        data = self.to_json()
        for name in ("ram_per_job_gb", "runtime_requires", "wheel_tag"):
            data.pop(name, None)
        return data

    def to_json(self) -> dict[str, Any]:
        """Canonical, JSON-ready form used in plans."""
        return {
            "name": self.name,
            "project": self.project,
            "kind": self.kind,
            "env": dict(sorted(self.env.items())),
            "build": {"requires": list(self.build.requires), "recipes": list(self.build.recipes),
                      **({"nvidia": list(self.build.nvidia)} if self.build.nvidia else {})},
            **({"nvidia_versions": {k: dict(sorted(v.items())) for k, v in sorted(self.nvidia_versions.items())}}
               if self.nvidia_versions else {}),
            "ram_per_job_gb": self.ram_per_job_gb,
            "local_version": self.local_version,
            "cmake_arch_rewrite": self.cmake_arch_rewrite,
            "runtime_requires": list(self.runtime_requires),
            "wheel_tag": self.wheel_tag,
            # only when set, so the keys of recipes without it stay as they were
            **({"supported_archs": list(self.supported_archs)} if self.supported_archs else {}),
            **({"cmake": self.cmake} if self.cmake is not None else {}),
        }


# --------------------------------------------------------------------------- loading


class _Reader:
    """Typed access to a TOML table that reports file and dotted key on error."""

    def __init__(self, path: Path, data: Mapping[str, Any], prefix: str = "") -> None:
        self.path, self.data, self.prefix = path, data, prefix
        self.seen: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def fail(self, name: str, reason: str, hint: str | None = None) -> RecipeError:
        return RecipeError(
            "recipe.invalid",
            f"{self.path}: key '{self.key(name)}': {reason}",
            hint or f"fix '{self.key(name)}' in {self.path}; the schema is in docs/recipes.md",
        )

    def get(self, name: str, typ: type | tuple[type, ...], default: Any = ..., *, what: str = "") -> Any:
        self.seen.add(name)
        if name not in self.data:
            if default is ...:
                raise self.fail(name, "is required but missing")
            return default
        value = self.data[name]
        # bool is an int subclass; never accept it for numbers.
        if isinstance(value, bool) and bool not in (typ if isinstance(typ, tuple) else (typ,)):
            raise self.fail(name, f"must be {what or _type_name(typ)}, not a boolean")
        if not isinstance(value, typ):
            raise self.fail(name, f"must be {what or _type_name(typ)}, not {type(value).__name__}")
        return value

    def table(self, name: str, default: Any = ...) -> _Reader:
        value = self.get(name, dict, {} if default is not ... else ..., what="a table")
        return _Reader(self.path, value, f"{self.key(name)}.")

    def reject_unknown(self) -> None:
        extra = sorted(set(self.data) - self.seen)
        if extra:
            raise self.fail(extra[0], "is not a known key", f"remove or rename it; known keys: {', '.join(sorted(self.seen))}")


def _type_name(typ: type | tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false", list: "a list", dict: "a table"}
    if isinstance(typ, tuple):
        return " or ".join(names.get(t, t.__name__) for t in typ)
    return names.get(typ, typ.__name__)


def _read_source(r: _Reader, version: str) -> Source:
    stype = r.get("type", str)
    if stype not in SOURCE_TYPES:
        raise r.fail("type", f"unknown source type {stype!r}", f"use one of: {', '.join(SOURCE_TYPES)}")
    if stype == "git":
        url, tag = r.get("url", str), r.get("tag", str)
        commit = r.get("commit", str)
        if not _HEX40.match(commit):
            raise r.fail("commit", f"{commit!r} is not a full 40-hex commit", "pin the full lowercase sha1 the tag points to (git rev-parse TAG^{commit})")
        src: Source = GitSource(url=url, tag=tag, commit=commit, submodules=r.get("submodules", bool, True))
    elif stype == "archive":
        url, sha = r.get("url", str), r.get("sha256", str)
        if not url.startswith(("https://", "file://")):
            raise r.fail("url", f"{url!r} must be an https:// or file:// URL")
        if not _HEX64.match(sha):
            raise r.fail("sha256", f"{sha!r} is not a 64-hex sha256", "pin the lowercase sha256 of the archive you checked")
        src = ArchiveSource(url=url, sha256=sha, subdir=_subdir(r))
    elif stype == "sdist":
        name, sha = r.get("name", str), r.get("sha256", str)
        if not _HEX64.match(sha):
            raise r.fail("sha256", f"{sha!r} is not a 64-hex sha256", "copy the sdist's sha256 from the package index")
        src = SdistSource(
            name=name, version=r.get("version", str, version), sha256=sha,
            filename=r.get("filename", str, None), url=r.get("url", str, None), subdir=_subdir(r),
        )
    else:
        src = PathSource(path=r.get("path", str))
    r.reject_unknown()
    return src


def _subdir(r: _Reader) -> str | None:
    sub = r.get("subdir", str, None)
    if sub is not None and (not sub or sub.startswith("/") or ".." in sub.split("/")):
        raise r.fail("subdir", f"{sub!r} must be a relative folder inside the archive", "e.g. subdir = \"vendor/llama.cpp\"")
    return sub


def load_recipe(path: str | os.PathLike[str]) -> Recipe:
    """Read and validate one recipe file."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise RecipeError("recipe.unreadable", f"cannot read recipe {path}: {exc.strerror}", "check the path or --recipes-dir") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise RecipeError("recipe.syntax", f"{path}: not valid TOML: {exc}", "fix the TOML syntax at the position shown") from None

    r = _Reader(path, data)
    name = r.get("name", str)
    if not _NAME.match(name) or name != path.stem:
        raise r.fail("name", f"{name!r} must be lowercase [a-z0-9._-] and equal the file name {path.stem!r}")
    project = r.get("project", str, name)
    kind = r.get("kind", str)
    if kind not in BUILD_KINDS:
        raise r.fail("kind", f"unknown build kind {kind!r}", f"use one of: {', '.join(BUILD_KINDS)}")
    description = r.get("description", str, "")
    ram = r.get("ram_per_job_gb", (int, float), what="a number of GiB")
    if not 0 < ram <= 256:
        raise r.fail("ram_per_job_gb", f"{ram} is outside 0 < GiB <= 256")
    local_version = r.get("local_version", str, "env")
    if local_version not in LOCAL_VERSION_HOOKS:
        raise r.fail("local_version", f"unknown hook {local_version!r}", f"use one of: {', '.join(LOCAL_VERSION_HOOKS)}")
    rewrite = r.get("cmake_arch_rewrite", str, "none")
    if rewrite not in ("none", "family-a"):
        raise r.fail("cmake_arch_rewrite", f"unknown rewrite {rewrite!r}", "use 'none' or 'family-a' (llama.cpp turns 12x into 12xa)")
    test_module = r.get("test_module", str)
    module_name = Path(test_module).name
    if not module_name.endswith(".py") or module_name in SUITE_SUPPORT_FILES or "\\" in test_module \
            or not test_module.isprintable():
        raise r.fail("test_module", f"{test_module!r} is not a pytest module path",
                     "give a .py file relative to the recipe's folder, e.g. 'tests/test_mypkg.py' "
                     f"(not one of the suite's support files {', '.join(SUITE_SUPPORT_FILES)})")
    wheel_tag = r.get("wheel_tag", str, "{python_tag}-{python_tag}")
    if not re.fullmatch(r"[a-z0-9_{}.]+-[a-z0-9_{}.]+", wheel_tag):
        raise r.fail("wheel_tag", f"{wheel_tag!r} is not '<python tag>-<abi tag>'", "e.g. 'py39-none' or '{python_tag}-{python_tag}'")
    runtime_requires = tuple(_requirements(r, "runtime_requires"))
    supported_archs = tuple(_archs(r, "supported_archs"))

    # env template: values may use only the documented placeholders
    build_r = r.table("build")
    requires = tuple(_requirements(build_r, "requires"))
    dep_recipes = tuple(build_r.get("recipes", list, [], what="a list of recipe names"))
    for dep in dep_recipes:
        if not isinstance(dep, str) or not _NAME.match(dep):
            raise build_r.fail("recipes", f"{dep!r} is not a recipe name")
        if dep == name:
            raise build_r.fail("recipes", "a recipe cannot depend on itself")
    nvidia = tuple(build_r.get("nvidia", list, [], what="a list of NVIDIA library names"))
    for lib in nvidia:
        if not isinstance(lib, str) or lib not in NVIDIA_LIBS:
            raise build_r.fail("nvidia", f"{lib!r} is not a known NVIDIA library", f"use some of: {', '.join(sorted(NVIDIA_LIBS))}")
    build_r.reject_unknown()
    nvidia_versions = _nvidia_versions(r)

    # env template: values may use only the documented placeholders, the [build] nvidia ones and {<dep>_version}
    known = {*PLACEHOLDERS, *nvidia_placeholders(nvidia), *(dep_version_placeholder(d) for d in dep_recipes)}
    env_r = r.table("env", {})
    env: dict[str, str] = {}
    for key in env_r.data:
        value = env_r.get(key, str)
        if not _ENV_NAME.match(key):
            raise env_r.fail(key, "is not a valid environment variable name")
        try:
            fields = [(f, spec, conv) for _, f, spec, conv in string.Formatter().parse(value) if f is not None]
        except ValueError as exc:  # a lone "{" or "}"
            raise env_r.fail(key, f"{value!r} is not a template: {exc}", "write a literal brace as {{ or }}") from None
        for field_name, spec, conversion in fields:
            if field_name not in known:
                raise env_r.fail(key, f"uses unknown placeholder {{{field_name}}}", f"known placeholders: {', '.join(sorted(known))}")
            if spec or conversion:
                raise env_r.fail(key, f"placeholder {{{field_name}}} has a conversion or format ({value!r})",
                                 f"write it as plain {{{field_name}}}")
        env[key] = value

    patches: list[PatchRef] = []
    for i, item in enumerate(r.get("patches", list, [], what="a list of tables ([[patches]])")):
        if not isinstance(item, dict):
            raise r.fail(f"patches[{i}]", "must be a table ([[patches]])")
        pr = _Reader(path, item, f"patches[{i}].")
        file = pr.get("file", str)
        if "/" in file or "\\" in file or file.startswith("."):
            raise pr.fail("file", f"{file!r} must be a bare file name inside patches/{name}/")
        when_text = pr.get("when", str, "")
        try:
            when = SpecifierSet(when_text)
        except InvalidSpecifier:
            raise pr.fail("when", f"{when_text!r} is not a version range", "write it like '>=2.12,<2.16'") from None
        patches.append(PatchRef(file=file, when=when, why=pr.get("why", str, "")))
        pr.reject_unknown()

    versions_r = r.table("versions")
    if not versions_r.data:
        raise r.fail("versions", "must list at least one version")
    versions: dict[str, VersionPin] = {}
    for ver in versions_r.data:
        try:
            Version(ver)
        except InvalidVersion:
            raise versions_r.fail(ver, "is not a PEP 440 version") from None
        vr = versions_r.table(ver)
        req_py_text = vr.get("requires_python", str, "")
        try:
            req_py = SpecifierSet(req_py_text)
        except InvalidSpecifier:
            raise vr.fail("requires_python", f"{req_py_text!r} is not a version range") from None
        source = _read_source(vr.table("source"), ver)
        named = vr.table("sources", {})
        alternatives = {n: _read_source(named.table(n), ver) for n in named.data}
        defines_r = vr.table("cmake_defines", {})
        defines = {k: defines_r.get(k, str) for k in defines_r.data}
        if defines and kind != "cmake":
            raise vr.fail("cmake_defines", "is only for recipes of kind 'cmake'")
        versions[ver] = VersionPin(version=ver, source=source, requires_python=req_py, note=vr.get("note", str, ""),
                                   cmake_defines=defines, sources=alternatives)
        vr.reject_unknown()

    cmake_table = r.get("cmake", dict, None, what="a table ([cmake])")
    if (kind == "cmake") != (cmake_table is not None):
        raise r.fail("cmake", "is required for kind 'cmake' and only allowed there" if kind == "cmake" else "is only for recipes of kind 'cmake'",
                     "see docs/recipes.md: the cmake kind")

    default_version = r.get("default_version", str)
    if default_version not in versions:
        raise r.fail("default_version", f"{default_version!r} is not one of the listed versions", f"add [versions.\"{default_version}\"] or pick one of {sorted(versions)}")
    r.reject_unknown()

    recipe = Recipe(
        name=name, project=canonicalize_name(project), kind=kind, path=path.resolve(),
        default_version=default_version, versions=versions, env=env,
        build=BuildDeps(requires=requires, recipes=dep_recipes, nvidia=nvidia), ram_per_job_gb=float(ram),
        local_version=local_version, patches=tuple(patches), test_module=test_module,
        runtime_requires=runtime_requires, cmake_arch_rewrite=rewrite, description=description,
        wheel_tag=wheel_tag, nvidia_versions=nvidia_versions, supported_archs=supported_archs, cmake=cmake_table,
    )
    if recipe.cmake is not None:  # errors in [cmake] name the file and key now, not at the first build
        from wheelforge.model.cmake_wheel import spec_for

        for version in recipe.versions:
            spec_for(recipe, version, full_version=f"{version}+cu128.sm120", source_dir="../src",
                     values={name: "0" for name in PLACEHOLDERS})
    return recipe


def dep_version_placeholder(recipe: str) -> str:
    """``{torch_version}``: the version of build dependency ``torch`` as pip compares it (local label included)."""
    return recipe.replace("-", "_").replace(".", "_") + "_version"


def _nvidia_versions(r: _Reader) -> dict[str, dict[str, str]]:
    table = r.table("nvidia_versions", {})
    out: dict[str, dict[str, str]] = {}
    for major in table.data:
        if not re.fullmatch(r"cu1[2-9]", major):
            raise table.fail(major, "is not a CUDA major", "use cu12 or cu13")
        libs = table.table(major)
        out[major] = {}
        for lib in libs.data:
            version = libs.get(lib, str)
            if lib not in NVIDIA_LIBS:
                raise libs.fail(lib, "is not a known NVIDIA library", f"use some of: {', '.join(sorted(NVIDIA_LIBS))}")
            try:
                Version(version)
            except InvalidVersion:
                raise libs.fail(lib, f"{version!r} is not a version", "copy the exact version from PyPI") from None
            out[major][lib] = version
    return out


def _archs(r: _Reader, key: str) -> list[str]:
    """A list of arch spellings, each in the canonical form ``str(parse_arch(x))`` (``12.0``, ``9.0a``, ``8.0+PTX``)."""
    from wheelforge.model.arch import known_capabilities, parse_arch
    from wheelforge.model.errors import ArchError

    out = []
    known = known_capabilities()
    for item in r.get(key, list, [], what="a list of CUDA archs"):
        if not isinstance(item, str):
            raise r.fail(key, f"{item!r} is not an arch string")
        try:
            canonical = str(parse_arch(item))
        except ArchError as exc:
            raise r.fail(key, exc.message, "write archs as 9.0, 12.0, 12.0a or 12.0+PTX") from None
        arch = parse_arch(item)
        if f"{arch.major}.{arch.minor}" not in known:
            # a recipe is data for every machine: it names capabilities that exist, whatever nvcc is here
            raise r.fail(key, f"{item!r} is not a known compute capability", "known: " + ", ".join(known))
        if canonical != item:
            raise r.fail(key, f"write {item!r} as {canonical!r}", "the list is compared with the target's archs as --arch prints them")
        out.append(item)
    return out


def _requirements(r: _Reader, key: str) -> list[str]:
    out = []
    for item in r.get(key, list, [], what="a list of requirement strings"):
        if not isinstance(item, str):
            raise r.fail(key, f"{item!r} is not a requirement string")
        try:
            Requirement(item)
        except InvalidRequirement as exc:
            raise r.fail(key, f"{item!r} is not a valid requirement: {exc}") from None
        out.append(item)
    return out


# --------------------------------------------------------------------------- lookup


def recipe_dirs(extra: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None) -> list[Path]:
    """Search order: --recipes-dir, then WHEELFORGE_RECIPE_PATH entries, then the bundled recipes.

    Each folder named is checked here, where it enters: a missing, non-folder or unreadable one is
    a :class:`RecipeError` naming it and where it came from.
    """
    env = os.environ if env is None else env
    dirs: list[tuple[Path, str]] = []
    if extra:
        dirs.append((Path(extra), "--recipes-dir / [tool.wheelforge] recipes_dir"))
    for part in env.get("WHEELFORGE_RECIPE_PATH", "").split(os.pathsep):
        if part:
            dirs.append((Path(part), "WHEELFORGE_RECIPE_PATH"))
    for d, origin in dirs:
        _check_recipe_dir(d, origin)
    return [d for d, _ in dirs] + [bundled.recipes_dir()]


def _check_recipe_dir(d: Path, origin: str) -> None:
    try:
        if not d.is_dir():
            what = "is not a folder" if d.exists() else "does not exist"
            raise RecipeError("recipe.dir-missing", f"recipe folder {d} ({origin}) {what}",
                              "pass a folder that holds <name>.toml recipe files")
        os.listdir(d)
    except OSError as exc:
        raise RecipeError("recipe.dir-unreadable", f"cannot read recipe folder {d} ({origin}): {exc.strerror}",
                          "fix its permissions or pass another folder") from None


def _is_file(p: Path) -> bool:
    try:
        return p.is_file()
    except OSError as exc:
        raise RecipeError("recipe.unreadable", f"cannot read recipe {p}: {exc.strerror}", "fix the folder's permissions") from None


def find_recipe(name: str, dirs: list[Path]) -> Recipe:
    for d in dirs:
        candidate = d / f"{name}.toml"
        if _is_file(candidate):
            return load_recipe(candidate)
    known = sorted({p.stem for d in dirs if d.is_dir() for p in d.glob("*.toml")})
    raise RecipeError(
        "recipe.not-found",
        f"no recipe named {name!r} in {', '.join(str(d) for d in dirs)}",
        f"known recipes: {', '.join(known) or 'none'}; add a folder with --recipes-dir or WHEELFORGE_RECIPE_PATH",
    )


def all_recipes(dirs: list[Path]) -> dict[str, Recipe]:
    """Every recipe by name; earlier folders shadow later ones."""
    found: dict[str, Recipe] = {}
    for d in dirs:
        if d.is_dir():
            for p in sorted(d.glob("*.toml")):
                found.setdefault(p.stem, load_recipe(p))
    return found

"""A wheel of a plain CMake project's programs (the ``cmake`` build kind): the generated project.

A CMake project such as llama.cpp has no Python packaging of its own.  The ``cmake`` kind
packages it with scikit-build-core: it writes one ``pyproject.toml`` into an otherwise empty
folder and runs ``pip wheel --no-deps --no-build-isolation <folder>`` in a build venv holding
scikit-build-core, cmake and ninja.  That pyproject points ``cmake.source-dir`` at the
(patched) source tree and installs CMake's prefix into the wheel's package folder::

    <package>/bin/<program>        executables, RPATH $ORIGIN/../lib
    <package>/lib/lib<name>.so     each shared library once (one file, SONAME = file name)
    <package>/<python files>       copied from the source tree (force-include)
    <package>/_launch.py           console-script shims (wheelforge's data file)
    <package>/_programs.py         their table (generated here)

Every program becomes a console script that ``os.execv``\\ s ``<package>/bin/<program>``, so
``pip install`` puts it on PATH.  Python scripts from the source tree become console scripts
that check their imports first (torch is never a dependency: a missing torch is a one-line
message, never a replaced torch).

Each library once: CMake installs a library with ``VERSION``/``SOVERSION`` as
``libX.so.0.N.M`` plus two symlinks, and a zip stores each symlink as a full copy.  The
project include ``single_file_libraries.cmake`` (passed as ``CMAKE_PROJECT_INCLUDE``) unsets
both properties on every shared library once the whole project is configured, the same fix the
llama-cpp-python patch makes by hand, without patching the project.

:func:`wheel_pyproject` is pure: spec in, TOML text out.  :func:`write_project` writes it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from wheelforge.model.errors import RecipeError

if TYPE_CHECKING:
    from wheelforge.model.recipe import Recipe

#: wheelforge's data files the generated project uses (absolute paths at build time).
DATA_DIR = Path(__file__).resolve().parents[1] / "data" / "cmake_wheel"
LAUNCHER = DATA_DIR / "_launch.py"
PROJECT_INCLUDE = DATA_DIR / "single_file_libraries.cmake"

#: scikit-build-core 1.0 added ``wheel.force-include``; 1.1.2 is the release tested here.
SCIKIT_BUILD_CORE = "scikit-build-core>=1.0"

#: What CMake installs besides programs and libraries, left out of the wheel (paths under the package).
DEFAULT_EXCLUDE = ("include/**", "lib/cmake/**", "lib/pkgconfig/**", "lib/*.a")

#: The layout the shims and RPATHs assume; the kind sets them unless the recipe does (to the same values).
#: GNUInstallDirs could otherwise pick lib64; $ORIGIN/../lib serves bin/* and lib/* alike (lib/../lib).
LAYOUT_DEFINES = {"CMAKE_INSTALL_BINDIR": "bin", "CMAKE_INSTALL_LIBDIR": "lib", "CMAKE_INSTALL_RPATH": "$ORIGIN/../lib"}

#: Torch is never a requirement of such a wheel: installing it must not replace a custom torch.
NEVER_REQUIRED = frozenset({"torch"})

#: PEP 508 distribution names.
_DIST_NAME = re.compile(r"^([A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9._-]*[A-Za-z0-9])$")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PROGRAM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_REL_PATH = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_./+-]*$")


@dataclass(frozen=True)
class PythonScript:
    """A Python script of the source tree run as a console script.

    ``script`` is its path under the package; ``path`` entries (under the package) go first on
    ``sys.path`` (the script's own folder for its sibling modules).  ``imports`` are checked
    before it runs; a missing one is reported with ``extra``, the optional-dependency group
    that installs them.  ``needs_torch``: a missing torch gets its own message (torch is never
    a dependency).
    """

    script: str
    path: tuple[str, ...] = ()
    imports: tuple[str, ...] = ()
    extra: str = ""
    needs_torch: bool = False


@dataclass(frozen=True)
class CMakeWheelSpec:
    """What the generated ``pyproject.toml`` says.  Paths in the source tree are relative to it."""

    name: str  # distribution name, e.g. "llama-cpp-tools"
    version: str  # full PEP 440 version, local label included, e.g. "11312+cu128.sm120"
    package: str  # import package the wheel installs, e.g. "llama_cpp_tools"
    source_dir: str  # the CMake source tree, relative to the generated project folder (or absolute)
    defines: Mapping[str, str] = field(default_factory=dict)  # CMake cache entries (-D)
    programs: tuple[str, ...] = ()  # executables CMake installs into <package>/bin; one console script each
    python_files: Mapping[str, str] = field(default_factory=dict)  # source path -> path under <package>/
    python_scripts: Mapping[str, PythonScript] = field(default_factory=dict)  # command -> script
    dependencies: tuple[str, ...] = ()
    optional_dependencies: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    requires_python: str = ">=3.9"
    description: str = ""
    license_files: tuple[str, ...] = ()  # source paths (files or folders) copied into the dist-info licenses folder
    exclude: tuple[str, ...] = DEFAULT_EXCLUDE  # paths under <package>/ that CMake installs but the wheel leaves out
    build_targets: tuple[str, ...] = ()  # empty: CMake's default target (all)
    install_components: tuple[str, ...] = ()  # empty: every default component
    launcher: str = str(LAUNCHER)  # the shim module's source file
    project_include: str | None = str(PROJECT_INCLUDE)  # CMAKE_PROJECT_INCLUDE; None leaves libraries as CMake installs them


# --------------------------------------------------------------------------- validation


def _bad(what: str, reason: str, hint: str) -> RecipeError:
    return RecipeError("cmake-wheel.invalid", f"{what}: {reason}", hint)


def _parses(parse: Callable[[str], object], text: str) -> bool:
    """``parse`` (packaging's Version or SpecifierSet) takes ``text`` without an error."""
    try:
        parse(text)
    except (InvalidVersion, InvalidSpecifier):
        return False
    return True


def check_spec(spec: CMakeWheelSpec) -> None:
    """Raise :class:`RecipeError` naming the field when the spec cannot make a sound wheel."""
    if not _DIST_NAME.match(spec.name):
        raise _bad("name", f"{spec.name!r} is not a distribution name", "use letters, digits and '-', e.g. llama-cpp-tools")
    if not _parses(Version, spec.version):
        raise _bad("version", f"{spec.version!r} is not a PEP 440 version", "e.g. 11312+cu128.sm120")
    if not _IDENT.match(spec.package):
        raise _bad("package", f"{spec.package!r} is not a Python package name", "e.g. llama_cpp_tools")
    if not _parses(SpecifierSet, spec.requires_python):
        raise _bad("requires_python", f"{spec.requires_python!r} is not a version range", "e.g. >=3.9")
    for dest in spec.python_files.values():
        if not _REL_PATH.match(dest) or ".." in dest.split("/"):
            raise _bad("python_files", f"{dest!r} must be a relative path inside the package", "e.g. convert/convert_hf_to_gguf.py")
    commands: dict[str, str] = {}
    for program in spec.programs:
        if not _PROGRAM.match(program) or not _IDENT.match(_attr(program)):
            raise _bad("programs", f"{program!r} is not a program file name", "letters, digits, '-' and '_' (llama-server)")
        commands[program] = "program"
    for command, script in spec.python_scripts.items():
        if not _PROGRAM.match(command) or not _IDENT.match(_attr(command)):
            raise _bad("python_scripts", f"{command!r} is not a command name", "letters, digits, '-' and '_'")
        if command in commands:
            raise _bad("python_scripts", f"{command!r} is also a program", "give the script another command name")
        commands[command] = "script"
        if script.script not in spec.python_files.values():
            raise _bad(f"python_scripts.{command}", f"{script.script!r} is not installed by python_files",
                       "map the script's source path to it in python_files")
        if script.extra and script.extra not in spec.optional_dependencies:
            raise _bad(f"python_scripts.{command}.extra", f"no optional-dependency group {script.extra!r}",
                       f"add it to optional_dependencies ({', '.join(spec.optional_dependencies) or 'none yet'})")
    groups = {"": spec.dependencies, **{f"[{k}]": v for k, v in spec.optional_dependencies.items()}}
    for group, reqs in groups.items():
        for req in reqs:
            try:
                parsed = Requirement(req)
            except InvalidRequirement as exc:
                raise _bad(f"dependencies{group}", f"{req!r} is not a requirement: {exc}", "write it like numpy>=1.26") from None
            if canonicalize_name(parsed.name) in NEVER_REQUIRED:
                raise _bad(f"dependencies{group}", f"{req!r}: torch is never a dependency of a {spec.name} wheel",
                           "drop it: pip would replace the user's own torch build; the script checks for torch when it runs")
    for key, value in spec.defines.items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.+-]*", key):
            raise _bad("defines", f"{key!r} is not a CMake variable name", "e.g. GGML_CUDA")
        if key in ("CMAKE_INSTALL_BINDIR", "CMAKE_INSTALL_LIBDIR") and value != LAYOUT_DEFINES[key]:
            raise _bad(f"defines.{key}", f"{value!r}: the console scripts and RPATHs expect {LAYOUT_DEFINES[key]!r}",
                       f"drop it (the cmake kind sets {key}={LAYOUT_DEFINES[key]})")


def _attr(command: str) -> str:
    """``llama-server`` -> ``llama_server``: the attribute the console script imports."""
    return command.replace("-", "_").replace(".", "_")


# --------------------------------------------------------------------------- TOML (the subset we write)


def toml_string(value: str) -> str:
    """A TOML basic string.  JSON's escapes are TOML's, except DEL (raw DEL is not allowed in TOML)."""
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else toml_string(key)


def _value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as TOML here")  # pragma: no cover - internal use only


def _table(name: str, items: Mapping[str, object], *, dotted: bool = False) -> list[str]:
    """``[name]`` and its ``key = value`` lines; ``dotted``: ``a.b`` keys are TOML dotted keys, not literal names."""
    def key(k: str) -> str:
        return ".".join(_key(part) for part in k.split(".")) if dotted else _key(k)

    return [f"[{name}]", *(f"{key(k)} = {_value(v)}" for k, v in items.items()), ""]


# --------------------------------------------------------------------------- rendering (pure)


def programs_module(spec: CMakeWheelSpec) -> str:
    """Source of ``<package>/_programs.py``: the console-script table ``_launch`` reads."""
    table: dict[str, dict[str, object]] = {}
    for program in spec.programs:
        table[_attr(program)] = {"kind": "program", "command": program, "file": f"bin/{program}"}
    for command, s in spec.python_scripts.items():
        table[_attr(command)] = {"kind": "python", "command": command, "file": s.script, "path": list(s.path),
                                 "imports": list(s.imports), "extra": s.extra, "needs_torch": s.needs_torch}
    body = json.dumps(table, indent=4, sort_keys=True)
    # JSON of str/list/bool is a Python literal once true/false are spelled the Python way.
    body = re.sub(r'(?<=: )true(?=[,\n])', "True", re.sub(r'(?<=: )false(?=[,\n])', "False", body))
    return (f'"""Console scripts of {spec.name} (generated by wheelforge): attribute -> what it runs."""\n\n'
            f"DIST = {spec.name!r}\nPROGRAMS = {body}\n")


def init_module(spec: CMakeWheelSpec) -> str:
    summary = spec.description or f"{spec.name}: programs built with CMake"
    return (f'"""{summary} (a wheel made by wheelforge)."""\n\n'
            f"__version__ = {spec.version!r}\n")


def _template(text: str) -> str:
    """scikit-build-core fills ``generate`` templates with string.Template: a literal ``$`` is ``$$``."""
    return text.replace("$", "$$")


def wheel_pyproject(spec: CMakeWheelSpec) -> str:
    """The ``pyproject.toml`` text that makes scikit-build-core build and package the CMake project."""
    check_spec(spec)
    pkg = spec.package
    lines = [
        "# Generated by wheelforge (cmake build kind): scikit-build-core packages a plain CMake project.",
        "# Do not edit; the recipe and wheelforge.model.cmake_wheel make it.",
        "",
        *_table("build-system", {"requires": [SCIKIT_BUILD_CORE], "build-backend": "scikit_build_core.build"}),
    ]
    project: dict[str, object] = {"name": spec.name, "version": spec.version, "requires-python": spec.requires_python}
    if spec.description:
        project["description"] = spec.description
    project["dependencies"] = list(spec.dependencies)
    lines += _table("project", project)
    if spec.optional_dependencies:
        lines += _table("project.optional-dependencies", {k: list(v) for k, v in spec.optional_dependencies.items()})
    scripts = {p: f"{pkg}._launch:{_attr(p)}" for p in spec.programs}
    scripts.update({c: f"{pkg}._launch:{_attr(c)}" for c in spec.python_scripts})
    if scripts:
        lines += _table("project.scripts", scripts)

    skbuild: dict[str, object] = {
        "minimum-version": "build-system.requires",
        "cmake.source-dir": spec.source_dir,
        "cmake.version": ">=3.21",
        # Release builds: scikit-build-core strips them when installing (install.strip's default).
        "cmake.build-type": "Release",
        # The programs do not depend on the Python ABI: one wheel serves every Python 3.
        "wheel.py-api": "py3",
        "wheel.install-dir": pkg,
        # No package folder in the generated project: the package is what CMake installs plus the
        # files below (auto-discovery would find nothing, but say so).
        "wheel.packages": [],
        "wheel.exclude": [f"{pkg}/{p}" for p in spec.exclude],
        "wheel.license-files": [],
    }
    if spec.build_targets:
        skbuild["build.targets"] = list(spec.build_targets)
    if spec.install_components:
        skbuild["install.components"] = list(spec.install_components)
    lines += _table("tool.scikit-build", skbuild, dotted=True)

    defines = {**LAYOUT_DEFINES, **spec.defines}
    if spec.project_include:
        defines.setdefault("CMAKE_PROJECT_INCLUDE", spec.project_include)
    if defines:
        lines += _table("tool.scikit-build.cmake.define", dict(sorted(defines.items())))

    force: dict[str, str] = {spec.launcher: f"{pkg}/_launch.py"}
    for src, dest in spec.python_files.items():
        force[_join(spec.source_dir, src)] = f"{pkg}/{dest}"
    for lic in spec.license_files:
        force[_join(spec.source_dir, lic)] = "${SKBUILD_METADATA_DIR}/licenses/" + lic
    lines += _table("tool.scikit-build.wheel.force-include", force)

    for path, text in ((f"{pkg}/__init__.py", init_module(spec)), (f"{pkg}/_programs.py", programs_module(spec))):
        lines += ["[[tool.scikit-build.generate]]", f"path = {toml_string(path)}", f"template = {toml_string(_template(text))}",
                  'location = "install"', ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def _join(base: str, rel: str) -> str:
    return rel if os.path.isabs(rel) else f"{base.rstrip('/')}/{rel}"


# --------------------------------------------------------------------------- the recipe's [cmake] table (pure)

#: Keys of ``[cmake]`` and ``[cmake.python_scripts.<command>]`` (docs/llama-cpp-tools.md, "Recipe schema").
CMAKE_KEYS = ("package", "requires_python", "programs", "license_files", "exclude", "build_targets", "install_components",
              "dependencies", "defines", "python_files", "python_scripts", "optional_dependencies")
SCRIPT_KEYS = ("script", "path", "imports", "extra", "needs_torch")


def cuda_enabled(cmake_cuda_architectures: str) -> str:
    """The ``{cuda_enabled}`` placeholder: ``ON`` when the target has CUDA archs, ``OFF`` for a CPU-only target."""
    return "ON" if cmake_cuda_architectures.strip() else "OFF"


def spec_for(recipe: Recipe, version: str, *, full_version: str, source_dir: str, values: Mapping[str, str]) -> CMakeWheelSpec:
    """The spec of a loaded ``kind = "cmake"`` recipe for one version (errors name the recipe file and key)."""
    pin = recipe.versions[version]
    data = {"name": recipe.name, "project": recipe.project, "description": recipe.description, "cmake": recipe.cmake or {},
            "versions": {version: {"cmake_defines": dict(pin.cmake_defines)}}}
    return spec_from_recipe(data, version=version, full_version=full_version, source_dir=source_dir,
                            values={**values, "cuda_enabled": values.get("cuda_enabled", "ON")}, where=str(recipe.path))


def spec_from_recipe(recipe: Mapping[str, object], *, version: str, full_version: str, source_dir: str,
                     values: Mapping[str, str], where: str = "recipe") -> CMakeWheelSpec:
    """The spec for one version of a ``kind = "cmake"`` recipe (its parsed TOML).

    ``values`` fills the ``{placeholders}`` of ``[cmake.defines]`` and ``[versions.X.cmake_defines]``
    (the planner's table plus ``cuda_enabled``); the version's defines override the recipe's.
    Errors name ``where`` and the dotted key.
    """
    def fail(key: str, reason: str, hint: str = "the schema is in docs/llama-cpp-tools.md") -> RecipeError:
        return RecipeError("recipe.invalid", f"{where}: key '{key}': {reason}", hint)

    table = recipe.get("cmake")
    if not isinstance(table, Mapping):
        raise fail("cmake", "a recipe of kind 'cmake' needs a [cmake] table")
    extra = sorted(set(table) - set(CMAKE_KEYS))
    if extra:
        raise fail(f"cmake.{extra[0]}", "is not a known key", f"known keys: {', '.join(CMAKE_KEYS)}")

    def strings(key: str, value: object) -> tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise fail(key, "must be a list of strings")
        return tuple(value)

    def mapping(key: str, value: object) -> dict[str, object]:
        if not isinstance(value, Mapping):
            raise fail(key, "must be a table")
        return dict(value)

    def fill(key: str, text: object) -> str:
        if not isinstance(text, str):
            raise fail(key, "must be a string")
        try:
            return text.format(**values)
        except KeyError as exc:
            raise fail(key, f"uses unknown placeholder {{{exc.args[0]}}}", f"known placeholders: {', '.join(sorted(values))}") from None

    package = table.get("package")
    if not isinstance(package, str):
        raise fail("cmake.package", "is required: the import package CMake installs into")
    defines = {k: fill(f"cmake.defines.{k}", v) for k, v in mapping("cmake.defines", table.get("defines", {})).items()}
    versions = recipe.get("versions", {})
    pin = versions.get(version, {}) if isinstance(versions, Mapping) else {}
    for k, v in mapping(f"versions.{version}.cmake_defines", pin.get("cmake_defines", {}) if isinstance(pin, Mapping) else {}).items():
        defines[k] = fill(f"versions.{version}.cmake_defines.{k}", v)

    scripts: dict[str, PythonScript] = {}
    for command, raw in mapping("cmake.python_scripts", table.get("python_scripts", {})).items():
        entry = mapping(f"cmake.python_scripts.{command}", raw)
        unknown = sorted(set(entry) - set(SCRIPT_KEYS))
        if unknown:
            raise fail(f"cmake.python_scripts.{command}.{unknown[0]}", "is not a known key", f"known keys: {', '.join(SCRIPT_KEYS)}")
        if not isinstance(entry.get("script"), str):
            raise fail(f"cmake.python_scripts.{command}.script", "is required: the script's path under the package")
        needs_torch = entry.get("needs_torch", False)
        if not isinstance(needs_torch, bool):
            raise fail(f"cmake.python_scripts.{command}.needs_torch", "must be true or false")
        scripts[command] = PythonScript(
            script=str(entry["script"]), path=strings(f"cmake.python_scripts.{command}.path", entry.get("path", [])),
            imports=strings(f"cmake.python_scripts.{command}.imports", entry.get("imports", [])),
            extra=str(entry.get("extra", "")), needs_torch=needs_torch)

    files = mapping("cmake.python_files", table.get("python_files", {}))
    if not all(isinstance(v, str) for v in files.values()):
        raise fail("cmake.python_files", "maps source paths to paths under the package (strings)")
    optional = {k: strings(f"cmake.optional_dependencies.{k}", v)
                for k, v in mapping("cmake.optional_dependencies", table.get("optional_dependencies", {})).items()}
    description = recipe.get("description", "")
    spec = CMakeWheelSpec(
        name=str(recipe.get("project") or recipe.get("name")), version=full_version, package=package, source_dir=source_dir,
        defines=defines, programs=strings("cmake.programs", table.get("programs", [])),
        python_files={k: str(v) for k, v in files.items()}, python_scripts=scripts,
        dependencies=strings("cmake.dependencies", table.get("dependencies", [])), optional_dependencies=optional,
        requires_python=str(table.get("requires_python", ">=3.9")), description=str(description),
        license_files=strings("cmake.license_files", table.get("license_files", [])),
        exclude=strings("cmake.exclude", table["exclude"]) if "exclude" in table else DEFAULT_EXCLUDE,
        build_targets=strings("cmake.build_targets", table.get("build_targets", [])),
        install_components=strings("cmake.install_components", table.get("install_components", [])),
    )
    try:
        check_spec(spec)
    except RecipeError as exc:  # name the recipe file and the [cmake] key
        raise fail(f"cmake.{exc.message.split(':', 1)[0]}", exc.message.split(": ", 1)[-1], exc.hint or "") from None
    return spec


# --------------------------------------------------------------------------- writing (the one impure step)


def write_project(spec: CMakeWheelSpec, folder: str | os.PathLike[str]) -> Path:
    """Write ``<folder>/pyproject.toml`` (atomically); returns its path."""
    text = wheel_pyproject(spec)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "pyproject.toml"
    tmp = target.with_name(f".pyproject.toml.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, target)
    return target

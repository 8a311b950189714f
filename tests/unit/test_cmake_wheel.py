"""The generated scikit-build-core project of the cmake kind: pure rendering, validation, the shim table."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest
import tomllib

from wheelforge.model.cmake_wheel import (
    DEFAULT_EXCLUDE,
    LAUNCHER,
    PROJECT_INCLUDE,
    CMakeWheelSpec,
    PythonScript,
    check_spec,
    cuda_enabled,
    programs_module,
    spec_from_recipe,
    toml_string,
    wheel_pyproject,
    write_project,
)
from wheelforge.model.errors import RecipeError

REPO = Path(__file__).resolve().parents[2]
DRAFT = REPO / "recipes" / "llama.cpp.toml"


def _spec(**over) -> CMakeWheelSpec:
    base = dict(
        name="llama-cpp-tools", version="11312+cu128.sm120", package="llama_cpp_tools", source_dir="../src",
        defines={"GGML_CUDA": "ON"},
        programs=("llama-server", "llama-quantize"),
        python_files={"convert_hf_to_gguf.py": "convert/convert_hf_to_gguf.py", "gguf-py/gguf": "convert/gguf-py/gguf"},
        python_scripts={"llama-convert-hf-to-gguf": PythonScript(script="convert/convert_hf_to_gguf.py", path=("convert",),
                                                                  imports=("numpy",), extra="convert", needs_torch=True)},
        optional_dependencies={"convert": ("numpy>=2.2.6",)},
        license_files=("LICENSE",), description='programs "quoted" \\ and $ORIGIN',
    )
    base.update(over)
    return CMakeWheelSpec(**base)


def test_pyproject_parses_to_the_scikit_build_settings() -> None:
    data = tomllib.loads(wheel_pyproject(_spec()))
    assert data["build-system"]["build-backend"] == "scikit_build_core.build"
    project = data["project"]
    assert (project["name"], project["version"]) == ("llama-cpp-tools", "11312+cu128.sm120")
    assert project["description"] == 'programs "quoted" \\ and $ORIGIN'
    assert project["dependencies"] == [] and project["optional-dependencies"] == {"convert": ["numpy>=2.2.6"]}
    assert project["scripts"] == {
        "llama-server": "llama_cpp_tools._launch:llama_server",
        "llama-quantize": "llama_cpp_tools._launch:llama_quantize",
        "llama-convert-hf-to-gguf": "llama_cpp_tools._launch:llama_convert_hf_to_gguf",
    }
    sk = data["tool"]["scikit-build"]
    # dotted keys are nested settings, not literal "cmake.source-dir" names
    assert sk["cmake"]["source-dir"] == "../src" and sk["wheel"]["install-dir"] == "llama_cpp_tools"
    assert sk["wheel"]["py-api"] == "py3" and sk["wheel"]["packages"] == []
    assert sk["wheel"]["exclude"] == [f"llama_cpp_tools/{p}" for p in DEFAULT_EXCLUDE]
    defines = sk["cmake"]["define"]
    assert defines["CMAKE_INSTALL_RPATH"] == "$ORIGIN/../lib" and defines["GGML_CUDA"] == "ON"  # the layout comes from the kind
    assert (defines["CMAKE_INSTALL_BINDIR"], defines["CMAKE_INSTALL_LIBDIR"]) == ("bin", "lib")
    assert defines["CMAKE_PROJECT_INCLUDE"] == str(PROJECT_INCLUDE)
    force = sk["wheel"]["force-include"]
    assert force[str(LAUNCHER)] == "llama_cpp_tools/_launch.py"
    assert force["../src/convert_hf_to_gguf.py"] == "llama_cpp_tools/convert/convert_hf_to_gguf.py"
    assert force["../src/LICENSE"] == "${SKBUILD_METADATA_DIR}/licenses/LICENSE"
    generated = {g["path"]: g["template"] for g in sk["generate"]}
    assert set(generated) == {"llama_cpp_tools/__init__.py", "llama_cpp_tools/_programs.py"}
    # string.Template fills these: every literal $ is doubled, so substitution gives back the module text
    import string

    init = string.Template(generated["llama_cpp_tools/__init__.py"]).substitute({})
    assert "__version__ = '11312+cu128.sm120'" in init and "$ORIGIN" in init


def test_rendering_is_deterministic_and_pure(tmp_path: Path) -> None:
    assert wheel_pyproject(_spec()) == wheel_pyproject(_spec())
    path = write_project(_spec(), tmp_path / "proj")
    assert path.read_text() == wheel_pyproject(_spec())
    assert [p.name for p in (tmp_path / "proj").iterdir()] == ["pyproject.toml"]  # no temp file left


def test_programs_module_is_python_the_launcher_reads() -> None:
    text = programs_module(_spec())
    tree = ast.parse(text)
    ns: dict = {}
    exec(compile(tree, "_programs.py", "exec"), ns)
    assert ns["DIST"] == "llama-cpp-tools"
    assert ns["PROGRAMS"]["llama_server"] == {"kind": "program", "command": "llama-server", "file": "bin/llama-server"}
    conv = ns["PROGRAMS"]["llama_convert_hf_to_gguf"]
    assert conv["needs_torch"] is True and conv["path"] == ["convert"] and conv["extra"] == "convert"


@pytest.mark.parametrize("text", ["plain", 'a "q" \\ b', "tab\tnew\nline", "del\x7f", "emoji 🦙", "ctrl\x01"])
def test_toml_string_round_trips(text: str) -> None:
    assert tomllib.loads(f"v = {toml_string(text)}")["v"] == text


@pytest.mark.parametrize("over,field,fragment", [
    ({"name": "llama cpp"}, "name", "not a distribution name"),
    ({"version": "b11312"}, "version", "not a PEP 440 version"),
    ({"package": "llama-cpp"}, "package", "not a Python package name"),
    ({"programs": ("llama server",)}, "programs", "not a program file name"),
    ({"dependencies": ("torch>=2.0",)}, "dependencies", "torch is never a dependency"),
    ({"optional_dependencies": {"convert": ("numpy", "torch")}}, "dependencies[convert]", "torch is never a dependency"),
    ({"python_files": {"x.py": "../escape.py"}}, "python_files", "relative path inside the package"),
    ({"python_files": {}}, "python_scripts.llama-convert-hf-to-gguf", "not installed by python_files"),
    ({"optional_dependencies": {}}, "python_scripts.llama-convert-hf-to-gguf.extra", "no optional-dependency group"),
    ({"programs": ("llama-convert-hf-to-gguf",)}, "python_scripts", "also a program"),
    ({"requires_python": "three"}, "requires_python", "not a version range"),
    ({"defines": {"CMAKE_INSTALL_LIBDIR": "lib64"}}, "defines.CMAKE_INSTALL_LIBDIR", "expect 'lib'"),
])
def test_bad_spec_names_the_field(over, field, fragment) -> None:
    with pytest.raises(RecipeError) as exc:
        check_spec(_spec(**over))
    assert exc.value.message.startswith(f"{field}: ") and fragment in exc.value.message and exc.value.hint


def test_cuda_enabled_follows_the_arch_list() -> None:
    assert cuda_enabled("90-real;120a-real") == "ON" and cuda_enabled("") == "OFF"


def _values(archs: str) -> dict[str, str]:
    return {"version": "11312", "full_version": "11312+x", "cmake_cuda_architectures": archs, "cuda_enabled": cuda_enabled(archs),
            "cuda_home": "/usr/local/cuda-12.8", "jobs": "4", "local_version": "x", "python_tag": "cp311",
            "torch_cuda_arch_list": "", "cuda_version": "12.8"}


def test_draft_recipe_makes_a_spec_for_gpu_and_cpu_targets() -> None:
    recipe = tomllib.loads(DRAFT.read_text())
    gpu = spec_from_recipe(recipe, version="11312", full_version="11312+cu128.sm90.sm120", source_dir="../src",
                           values=_values("90-real;120a-real"))
    assert gpu.name == "llama-cpp-tools" and gpu.package == "llama_cpp_tools"
    assert gpu.defines["GGML_CUDA"] == "ON" and gpu.defines["CMAKE_CUDA_ARCHITECTURES"] == "90-real;120a-real"
    assert gpu.defines["LLAMA_BUILD_NUMBER"] == "11312" and gpu.defines["LLAMA_BUILD_COMMIT"] == "0c1e57098"
    assert gpu.defines["CMAKE_CUDA_COMPILER"] == "/usr/local/cuda-12.8/bin/nvcc"
    for program in ("llama-server", "llama-cli", "llama-quantize", "llama-bench", "llama-perplexity", "llama-gguf-split"):
        assert program in gpu.programs
    assert not any(r.lower().startswith("torch") for reqs in gpu.optional_dependencies.values() for r in reqs)
    assert gpu.dependencies == ()
    cpu = spec_from_recipe(recipe, version="11312", full_version="11312+cpu", source_dir="../src", values=_values(""))
    assert cpu.defines["GGML_CUDA"] == "OFF"
    # the same recipe, one placeholder apart: no per-package branch decides CPU or GPU
    assert {k for k in gpu.defines if gpu.defines[k] != cpu.defines[k]} == {"GGML_CUDA", "CMAKE_CUDA_ARCHITECTURES"}
    tomllib.loads(wheel_pyproject(gpu))


@pytest.mark.parametrize("edit,key", [
    (lambda r: r["cmake"].pop("package"), "cmake.package"),
    (lambda r: r["cmake"].update(flavour="x"), "cmake.flavour"),
    (lambda r: r["cmake"]["defines"].update(X="{nope}"), "cmake.defines.X"),
    (lambda r: r["cmake"].update(programs="llama-server"), "cmake.programs"),
    (lambda r: r["cmake"]["python_scripts"]["llama-convert-hf-to-gguf"].update(needs_torch="yes"),
     "cmake.python_scripts.llama-convert-hf-to-gguf.needs_torch"),
    (lambda r: r["cmake"]["optional_dependencies"]["convert"].append("torch==2.11.0"), "cmake.dependencies[convert]"),
])
def test_bad_recipe_table_names_file_and_key(edit, key) -> None:
    recipe = tomllib.loads(DRAFT.read_text())
    edit(recipe)
    with pytest.raises(RecipeError) as exc:
        spec_from_recipe(recipe, version="11312", full_version="11312+cpu", source_dir="../src", values=_values(""),
                         where="recipes/llama.cpp.toml")
    assert exc.value.message.startswith(f"recipes/llama.cpp.toml: key '{key}'"), exc.value.message


def test_launcher_is_standard_library_only() -> None:
    tree = ast.parse(LAUNCHER.read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module and n.level == 0}
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported


def test_launcher_execs_programs_and_checks_script_imports(tmp_path: Path) -> None:
    """The shim module with a generated table, as the wheel holds them: a program gets the arguments;
    a script with a missing import stops with one line; a script whose imports are there runs as __main__."""
    import os
    import subprocess

    pkg = tmp_path / "demo_tools"
    (pkg / "bin").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "_launch.py").write_text(LAUNCHER.read_text())
    prog = pkg / "bin" / "demo-echo"
    prog.write_text("#!/bin/sh\necho \"argv: $*\"\n")
    prog.chmod(0o755)
    (pkg / "tools").mkdir()
    (pkg / "tools" / "helper_mod.py").write_text("VALUE = 'sibling import ok'\n")
    (pkg / "tools" / "run_me.py").write_text("import sys, helper_mod\nprint(helper_mod.VALUE, sys.argv[1:], __name__)\n")
    spec = CMakeWheelSpec(
        name="demo-tools", version="1.0", package="demo_tools", source_dir="../src", programs=("demo-echo",),
        python_files={"run_me.py": "tools/run_me.py", "broken.py": "tools/broken.py"},
        python_scripts={"demo-run": PythonScript(script="tools/run_me.py", path=("tools",), imports=("json",)),
                        "demo-broken": PythonScript(script="tools/broken.py", imports=("no_such_module_wf",), extra="extra1")},
        optional_dependencies={"extra1": ("numpy",)}, project_include=None)
    (pkg / "_programs.py").write_text(programs_module(spec))
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}

    def call(attr: str, *args: str) -> subprocess.CompletedProcess[str]:
        code = f"import sys; sys.argv = ['x', *{list(args)!r}]; from demo_tools._launch import {attr}; sys.exit({attr}())"
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)

    out = call("demo_echo", "-m", "a b")
    assert out.returncode == 0 and out.stdout.strip() == "argv: -m a b", out
    out = call("demo_run", "--flag")
    assert out.returncode == 0 and out.stdout.strip() == "sibling import ok ['--flag'] __main__", out
    out = call("demo_broken")
    assert out.returncode == 1 and out.stderr.strip() == "demo-broken needs no_such_module_wf: pip install 'demo-tools[extra1]'", out
    out = call("not_a_command")
    # from-import turns the module's AttributeError into ImportError: only a table out of step with the entry points gets here
    assert out.returncode == 1 and "cannot import name 'not_a_command'" in out.stderr

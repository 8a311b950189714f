"""The real patch series applies to the real pinned sources and does what it says.

* every patch named by a recipe exists, has a why-and-where header, and applies
  with ``git apply --check`` + ``git apply`` to the pristine sdist it is for;
* xformers and flash-attn: the patched ``setup.py`` pins ``torch==<version>``;
* llama-cpp-python (slow): a real CPU-only build before and after the patch;
  the patched wheel holds each shared library once and still loads.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from patch_support import (  # noqa: E402
    PATCH_DIR,
    REPO,
    elf_dynamic,
    extract_sdist,
    git_apply,
    library_copies,
    patch_header,
    run,
    shared_libraries,
)

from wheelforge.model.recipe import load_recipe  # noqa: E402

pytestmark = pytest.mark.integration

XFORMERS_PATCH = PATCH_DIR / "xformers" / "0001-pin-exact-torch.patch"
LLAMA_PATCH = PATCH_DIR / "llama-cpp-python" / "0001-install-each-library-once.patch"
FLASH_ATTN_PATCH = PATCH_DIR / "flash-attn" / "0001-pin-exact-torch.patch"


# --------------------------------------------------------------------------- series


@pytest.mark.parametrize("name", ["xformers", "llama-cpp-python", "flash-attn"])
def test_recipe_patches_exist_with_a_header(name: str) -> None:
    recipe = load_recipe(REPO / "recipes" / f"{name}.toml")
    assert recipe.patches, f"{name}: the recipe lists no patch"
    for ref in recipe.patches:
        patch = recipe.patch_dir / ref.file
        assert patch.is_file(), f"{name}: recipe names {ref.file} but {patch} is missing"
        header = patch_header(patch)
        assert "Why" in header and len(header.split()) > 30, f"{patch.name} needs a why-and-where header"
        assert ref.why, f"{name}: [[patches]] {ref.file} has no 'why'"
    assert all(r.applies_to(recipe.default_version) for r in recipe.patches)


# --------------------------------------------------------------------------- xformers


def _pin_torch_requirement(setup_py: Path):
    """The patched pin function itself, compiled from the patched setup.py.

    setup.py imports torch at module level (it builds a torch extension), and
    torch is not installed on CI, so the whole file cannot run here.  The pin
    logic is one self-contained function; take exactly that function's source
    from the patched file and run it, with no stand-in for torch.
    """
    tree = ast.parse(setup_py.read_text())
    (fn,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "pin_torch_requirement"]
    module = ast.Module(body=[fn], type_ignores=[])
    namespace: dict = {"List": list}
    exec(compile(module, str(setup_py), "exec"), namespace)
    return namespace["pin_torch_requirement"], tree


def test_xformers_patch_pins_exact_torch(xformers_sdist: Path, tmp_path: Path) -> None:
    root = extract_sdist(xformers_sdist, tmp_path / "src")
    pristine_reqs = (root / "requirements.txt").read_text().strip().split("\n")
    assert any(r.replace(" ", "").startswith("torch>=") for r in pristine_reqs)  # the problem the patch fixes

    git_apply(root, XFORMERS_PATCH)
    pin, tree = _pin_torch_requirement(root / "setup.py")

    reqs = pin(pristine_reqs, "2.15.0+cu128.sm120")
    assert "torch==2.15.0+cu128.sm120" in reqs
    assert not any(r.replace(" ", "").startswith("torch>=") for r in reqs)
    assert "numpy" in reqs  # other requirements untouched
    assert pin(["torchvision>=0.20", "torch[opt] >= 2.10 ; python_version>'3.9'"], "2.15.0") == [
        "torchvision>=0.20",
        "torch==2.15.0",
    ]

    # fetch_requirements() feeds it the version pip sees for the torch that runs setup.py (its
    # distribution metadata: PyPI's torch is "2.11.0" there but "2.11.0+cu130" in torch.__version__).
    # Run the two patched functions in a child whose only torch is a distribution made here.
    site = tmp_path / "site"
    dist_info = site / "torch-2.11.0.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: torch\nVersion: 2.11.0\n")
    funcs = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in ("pin_torch_requirement", "fetch_requirements")]
    code = ("import importlib.metadata, json\nfrom typing import List\n" + ast.unparse(ast.Module(body=funcs, type_ignores=[]))
            + "\nprint(json.dumps(fetch_requirements()))\n")
    out = subprocess.run([sys.executable, "-S", "-c", f"import sys; sys.path.insert(0, {str(site)!r})\n" + code], cwd=root,
                         capture_output=True, text=True, check=True, env={"PATH": os.environ.get("PATH", "")})
    assert json.loads(out.stdout) == [r if not r.replace(" ", "").startswith("torch>=") else "torch==2.11.0" for r in pristine_reqs]
    # and setup() takes install_requires from fetch_requirements()
    assert "install_requires=fetch_requirements()" in (root / "setup.py").read_text()


# --------------------------------------------------------------------------- flash-attn


def test_flash_attn_patch_pins_exact_torch(flash_attn_sdist: Path, tmp_path: Path) -> None:
    root = extract_sdist(flash_attn_sdist, tmp_path / "src")
    pristine = ast.parse((root / "setup.py").read_text())
    assert ast.literal_eval(_install_requires(pristine)) == ["torch", "einops"]  # the problem the patch fixes

    git_apply(root, FLASH_ATTN_PATCH)
    setup_py = root / "setup.py"
    tree = ast.parse(setup_py.read_text())
    (fn,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "pin_torch_requirement"]
    namespace: dict = {}
    exec(compile(ast.Module(body=[fn], type_ignores=[]), str(setup_py), "exec"), namespace)
    pin = namespace["pin_torch_requirement"]
    assert pin(["torch", "einops"], "2.15.0+cu128.sm120") == ["torch==2.15.0+cu128.sm120", "einops"]
    assert pin(["torch>=2.4 ; python_version>'3.9'", "torchvision"], "2.11.0") == ["torch==2.11.0", "torchvision"]

    # setup() gets install_requires from the pin, fed by the version pip sees for the torch that runs
    # setup.py: evaluate exactly that argument expression in a child whose only torch is a
    # distribution made here (PyPI's torch is "2.11.0" in its metadata, "2.11.0+cu130" in torch.__version__).
    expr = _install_requires(tree)
    assert "importlib.metadata.version(\"torch\")" in expr.replace("'", '"')
    site = tmp_path / "site"
    dist_info = site / "torch-2.11.0.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: torch\nVersion: 2.11.0\n")
    code = ("import importlib.metadata, json\n" + ast.unparse(fn) + f"\nprint(json.dumps({expr}))\n")
    out = subprocess.run([sys.executable, "-S", "-c", f"import sys; sys.path.insert(0, {str(site)!r})\n" + code], cwd=root,
                         capture_output=True, text=True, check=True, env={"PATH": os.environ.get("PATH", "")})
    assert json.loads(out.stdout) == ["torch==2.11.0", "einops"]
    # and the module imports importlib.metadata for it
    assert any(isinstance(n, ast.Import) and any(a.name == "importlib.metadata" for a in n.names) for n in tree.body)


def _install_requires(tree: ast.Module) -> str:
    """Source of the install_requires= argument of the setup(...) call in setup.py."""
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "setup"]
    (call,) = calls
    (kw,) = [k for k in call.keywords if k.arg == "install_requires"]
    return ast.unparse(kw.value)


# --------------------------------------------------------------------------- llama-cpp-python


def test_llama_patch_applies_to_pristine_sdist(llama_sdist: Path, tmp_path: Path) -> None:
    root = extract_sdist(llama_sdist, tmp_path / "src")
    git_apply(root, LLAMA_PATCH)
    text = (root / "CMakeLists.txt").read_text()
    assert "${CMAKE_CURRENT_SOURCE_DIR}/llama_cpp/lib" not in text
    assert 'install.components = ["llama_cpp_python"]' in (root / "pyproject.toml").read_text()


@pytest.mark.slow
@pytest.mark.timeout(3000)  # whichever runs first builds llama_cpu_wheels (minutes on 2 cores)
def test_stock_llama_wheel_duplicates_libraries(llama_cpu_wheels) -> None:
    """The problem the patch fixes: if the stock build stops duplicating, the patch may be obsolete."""
    copies = library_copies(llama_cpu_wheels.stock)
    print(f"stock wheel {llama_cpu_wheels.stock.stat().st_size} bytes in {llama_cpu_wheels.stock_seconds:.0f} s: {dict(copies)}")
    assert max(copies.values()) > 1, "the stock build no longer duplicates libraries; patch may be obsolete"


@pytest.mark.slow
@pytest.mark.timeout(3000)  # whichever runs first builds llama_cpu_wheels (minutes on 2 cores)
def test_llama_patched_wheel_holds_each_library_once(llama_cpu_wheels) -> None:
    patched = llama_cpu_wheels.patched
    copies = library_copies(patched)
    print(f"patched wheel {patched.stat().st_size} bytes in {llama_cpu_wheels.patched_seconds:.0f} s: {dict(copies)}")
    assert copies and set(copies.values()) == {1}, f"duplicates remain: {copies}"
    for lib in ("libllama", "libggml", "libggml-base", "libggml-cpu", "libmtmd"):
        assert copies[lib] == 1
    names = [n for n, _ in shared_libraries(patched)]
    assert all(n.startswith("llama_cpp/lib/") and n.endswith(".so") for n in names), names
    assert patched.stat().st_size < llama_cpu_wheels.stock.stat().st_size


@pytest.mark.slow
@pytest.mark.timeout(3000)  # whichever runs first builds llama_cpu_wheels (minutes on 2 cores)
def test_llama_patched_wheel_installs_and_loads(llama_cpu_wheels, tmp_path: Path) -> None:
    """Installed into a fresh venv, each library finds its neighbours through $ORIGIN, and llama_cpp loads them."""
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    py = env_dir / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LD_LIBRARY_PATH", "LLAMA_CPP_LIB_PATH")}
    run([py, "-m", "pip", "install", "--quiet", llama_cpu_wheels.patched], env=env)
    site = Path(run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['platlib'])"], env=env).stdout.strip())
    lib_dir = site / "llama_cpp" / "lib"
    for so in lib_dir.glob("*.so"):
        soname, needed, runpath = elf_dynamic(so.read_bytes())
        assert soname == so.name, f"{so.name}: SONAME {soname}"
        assert "$ORIGIN" in runpath, f"{so.name}: RUNPATH {runpath}"
        for dep in needed:
            if dep.startswith(("libggml", "libllama", "libmtmd")):
                assert (lib_dir / dep).is_file(), f"{so.name} needs {dep}, not in {lib_dir}"
    probe = (
        "import llama_cpp, llama_cpp.mtmd_cpp;"
        "llama_cpp.llama_backend_init();"
        "print(llama_cpp.__file__);"
        "print(llama_cpp.llama_print_system_info().decode())"
    )
    out = run([py, "-c", probe], cwd=tmp_path, env=env).stdout
    assert str(site) in out and "CPU" in out, out

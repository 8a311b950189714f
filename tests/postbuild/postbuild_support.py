"""Helpers the post-build modules share (copied beside them into the verify venv's suite folder)."""

from __future__ import annotations

import importlib
import re
from importlib.metadata import requires, version
from types import ModuleType

import pytest


def import_or_fail(name: str) -> ModuleType:
    """Import the package under test; a failure is a test failure, never a skip."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        pytest.fail(f"import {name} failed: {exc}", pytrace=False)


def torch_pin(distribution: str) -> str | None:
    """The version after ``torch==`` in ``distribution``'s Requires-Dist, or None when it pins no exact torch."""
    for req in requires(distribution) or []:
        m = re.match(r"^torch\s*(?:\(\s*)?==\s*([^\s;,)]+)", req)
        if m:
            return m.group(1)
    return None


def assert_pins_installed_torch(distribution: str) -> None:
    """The extension was compiled against one torch: its wheel must require exactly that one."""
    pin = torch_pin(distribution)
    installed = version("torch")
    assert pin is not None, f"{distribution} does not pin torch exactly: {requires(distribution)}"
    assert pin == installed, f"{distribution} pins torch=={pin}, installed torch is {installed}"


def assert_has_local_label(installed_version: str, target) -> None:
    """A wheel built with a local label (``+cu128.sm90``) installs a version that ends in it."""
    if target.local_label:
        assert installed_version.endswith("+" + target.local_label), installed_version


def assert_built_for_target(info: dict, target) -> None:
    """The library's build info names the target's archs and CUDA major.

    ``cuda_architectures`` is in CMAKE_CUDA_ARCHITECTURES form (``120-real``), the target's archs are
    tuples (12, 0, ""); ``cuda_version`` is the toolkit's (``12.8``).
    """
    built = {a.split("-")[0] for a in info["cuda_architectures"]}
    wanted = {f"{major}{minor}{suffix}" for major, minor, suffix in target.archs}
    assert built == wanted, f"library built for {sorted(built)}, target asks {sorted(wanted)}"
    if target.cuda:
        assert info["cuda_version"].split(".")[0] == target.cuda.split(".")[0], info


def assert_registers_cuda_kernel(torch: ModuleType, op: str) -> None:
    """``op`` (``namespace::name``) has a kernel for the CUDA dispatch key: a CPU-only build registers none."""
    assert torch._C._dispatch_has_kernel_for_dispatch_key(op, "CUDA"), f"{op} has no CUDA kernel: built without CUDA?"

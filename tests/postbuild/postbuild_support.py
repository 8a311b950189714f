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

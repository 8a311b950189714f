"""Helpers the post-build modules share (copied beside them into the verify venv's suite folder)."""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest


def import_or_fail(name: str) -> ModuleType:
    """Import the package under test; a failure is a test failure, never a skip."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        pytest.fail(f"import {name} failed: {exc}", pytrace=False)

"""The blocks of docs/index.md that tests run as written."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def docs_snippet(name: str) -> str:
    """The fenced block after ``<!-- tested: name -->`` in docs/index.md."""
    text = (REPO / "docs/index.md").read_text(encoding="utf-8")
    m = re.search(rf"<!-- tested: {re.escape(name)} -->\n```[a-z]*\n(.*?)```", text, re.S)
    assert m, f"docs/index.md has no tested block {name!r}"
    return m.group(1)

"""The index serves verified wheels only, and never two byte streams under one file name."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from index_support import WheelSpec, add_entry, make_wheelhouse  # noqa: E402

from wheelforge.model.errors import IndexError_  # noqa: E402
from wheelforge.serving.index import build_index  # noqa: E402


def _served(wh: Path) -> list[str]:
    return sorted(p.name for p in (wh / "index" / "files").glob("*.whl"))


def test_only_verified_wheels_are_served_by_default(tmp_path):
    wh = make_wheelhouse(tmp_path / "wh")  # one passed, one failed, one never verified
    result = build_index(wh)
    assert _served(wh) == ["demo_pkg-1.0.0+cu128.sm120-py3-none-any.whl"]
    assert sorted(w.split(" is ")[1].split(" ")[0] for w in result.warnings) == ["failed", "unverified"]
    page = (wh / "index" / "index.html").read_text()
    assert "some-name" not in page and "0.9.0" not in page  # not served, not shown


def test_include_unverified_is_an_opt_in_that_marks_them(tmp_path):
    wh = make_wheelhouse(tmp_path / "wh")
    build_index(wh, include_unverified=True)
    assert len(_served(wh)) == 3
    page = (wh / "index" / "index.html").read_text()
    assert 'class="v-failed">failed<' in page and 'class="v-unverified">unverified<' in page


def test_verifying_later_publishes_the_wheel_on_the_next_index_run(tmp_path):
    wh = make_wheelhouse(tmp_path / "wh")
    build_index(wh)
    entry = next(d for d in (wh / "entries").iterdir() if "some_name" in " ".join(p.name for p in d.iterdir()))
    manifest = json.loads((entry / "entry.json").read_text())
    manifest.update(verify="passed", state="verified")
    (entry / "entry.json").write_text(json.dumps(manifest))
    build_index(wh)
    assert "some_name-2.0.0+cu128.sm120-py3-none-any.whl" in _served(wh)


def test_one_file_name_with_two_hashes_stops_the_index(tmp_path):
    wh = tmp_path / "wh"
    first = add_entry(wh, WheelSpec())
    # the same file name under another key, with other bytes: copied in by hand, never stored by wheelforge
    twin_dir = wh / "entries" / ("f" * 64)
    shutil.copytree(wh / "entries" / first["key"], twin_dir)
    wheel = twin_dir / first["wheel"]
    wheel.write_bytes(wheel.read_bytes() + b"\0")
    manifest = json.loads((twin_dir / "entry.json").read_text())
    manifest.update(key="f" * 64, sha256="0" * 64, size=wheel.stat().st_size)
    (twin_dir / "entry.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexError_) as err:
        build_index(wh)
    assert err.value.id == "index.name-two-hashes" and first["wheel"] in err.value.message

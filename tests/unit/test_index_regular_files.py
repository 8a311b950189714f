"""The index lists only regular files inside the wheelhouse: a symlinked wheel, sidecar, manifest or entry
folder is skipped with a warning naming the entry (it used to be listed with a sha256 the server then 404'd)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from index_support import WheelSpec, add_entry, make_wheelhouse  # noqa: E402

from wheelforge.serving.index import build_index, collect  # noqa: E402


def _move_out(path: Path, outside: Path) -> Path:
    """Replace ``path`` by a symlink to a copy outside the wheelhouse."""
    outside.mkdir(parents=True, exist_ok=True)
    target = outside / path.name
    path.rename(target)
    path.symlink_to(target)
    return target


def test_symlinked_wheel_is_not_listed_and_the_warning_names_the_entry(tmp_path: Path) -> None:
    wh = make_wheelhouse(tmp_path / "wh", [WheelSpec(), WheelSpec(name="other-pkg")])
    entry = add_entry(wh, WheelSpec(name="linked-pkg"))
    wheel = wh / "entries" / entry["key"] / entry["wheel"]
    target = _move_out(wheel, tmp_path / "outside")

    files, warnings = collect(wh)

    assert sorted(f.project for f in files) == ["demo-pkg", "other-pkg"]
    assert warnings == [f"entry {entry['key']}: {entry['wheel']} is a symlink (to {target}), not a file in the wheelhouse; "
                        "not listed"]
    result = build_index(wh)
    assert result.files == 2 and result.warnings == warnings
    assert not (wh / "index" / "files" / entry["wheel"]).exists()
    assert not (wh / "index" / "simple" / "linked-pkg").exists()


def test_symlinked_sidecar_manifest_and_entry_folder_are_skipped(tmp_path: Path) -> None:
    wh = make_wheelhouse(tmp_path / "wh", [WheelSpec()])
    side = add_entry(wh, WheelSpec(name="side-pkg"))
    _move_out(wh / "entries" / side["key"] / "verify.json", tmp_path / "out-verify")
    manifest = add_entry(wh, WheelSpec(name="manifest-pkg"))
    _move_out(wh / "entries" / manifest["key"] / "entry.json", tmp_path / "out-manifest")
    linked_dir = add_entry(tmp_path / "elsewhere", WheelSpec(name="dir-pkg"))
    os.symlink(tmp_path / "elsewhere" / "entries" / linked_dir["key"], wh / "entries" / linked_dir["key"])

    files, warnings = collect(wh)

    by_project = {f.project: f for f in files}
    assert sorted(by_project) == ["demo-pkg", "side-pkg"]
    assert by_project["side-pkg"].sidecars == ("provenance.json",)  # its verify.json is a symlink: not published
    assert f"entry {manifest['key']}: entry.json is a symlink" in "\n".join(warnings)
    assert f"entries/{linked_dir['key']}: a symlink to " in "\n".join(warnings)
    build_index(wh)
    assert not (wh / "index" / "files" / f"{side['wheel']}.verify.json").exists()

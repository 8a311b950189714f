"""Static index tree: PEP 503/629/691/658/714/700/592 content, atomic swap, client recipes."""

from __future__ import annotations

import html.parser
import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from index_support import LABEL, WheelSpec, add_entry, make_wheelhouse  # noqa: E402

import wheelforge.serving.index as index_mod  # noqa: E402
from wheelforge.model.errors import IndexError_  # noqa: E402
from wheelforge.serving.index import build_index as serve_verified_only  # noqa: E402
from wheelforge.serving.index import print_config, require_hashes


def build_index(wheelhouse, **kw):
    """The fixture wheelhouse holds a verified, a failed and an unverified entry; these tests check how each is
    rendered, so they index all three (the default serves verified wheels only: test_index_gating.py)."""
    return serve_verified_only(wheelhouse, include_unverified=True, **kw)

WHEEL = f"demo_pkg-1.0.0+{LABEL}-py3-none-any.whl"


class Anchors(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.anchors: list[tuple[dict, str]] = []
        self.meta: dict[str, str] = {}
        self._cur = None

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self._cur = (dict(attrs), "")
        if tag == "meta":
            d = dict(attrs)
            self.meta[d.get("name")] = d.get("content")

    def handle_data(self, data):
        if self._cur is not None:
            self._cur = (self._cur[0], self._cur[1] + data)

    def handle_endtag(self, tag):
        if tag == "a" and self._cur is not None:
            self.anchors.append(self._cur)
            self._cur = None


def parse(path: Path) -> Anchors:
    p = Anchors()
    p.feed(path.read_text())
    return p


@pytest.fixture
def wheelhouse(tmp_path):
    wh = make_wheelhouse(tmp_path / "wh")
    build_index(wh)
    return wh


def test_project_page_is_pep503_with_hashes_metadata_and_escaping(wheelhouse):
    page = parse(wheelhouse / "index/simple/demo-pkg/index.html")
    assert page.meta["pypi:repository-version"] == "1.4"
    by_text = {text: attrs for attrs, text in page.anchors}
    a = by_text[WHEEL]
    href, _, frag = a["href"].partition("#")
    assert href == f"../../files/demo_pkg-1.0.0%2B{LABEL}-py3-none-any.whl"
    digest = (wheelhouse / "index/files" / WHEEL).read_bytes()
    import hashlib

    assert frag == "sha256=" + hashlib.sha256(digest).hexdigest()
    md = (wheelhouse / "index/files" / (WHEEL + ".metadata")).read_bytes()
    assert a["data-core-metadata"] == a["data-dist-info-metadata"] == "sha256=" + hashlib.sha256(md).hexdigest()
    assert a["data-requires-python"] == ">=3.8"
    raw = (wheelhouse / "index/simple/demo-pkg/index.html").read_text()
    assert 'data-requires-python="&lt;4,&gt;=3.8"' in raw  # escaped in the markup
    assert "data-yanked" not in raw


def test_metadata_files_equal_wheel_metadata(wheelhouse):
    import zipfile

    for whl in (wheelhouse / "index/files").glob("*.whl"):
        with zipfile.ZipFile(whl) as zf:
            name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
            assert (whl.parent / (whl.name + ".metadata")).read_bytes() == zf.read(name)


def test_json_and_html_list_same_files_and_hashes(wheelhouse):
    for project in ("demo-pkg", "some-name"):
        doc = json.loads((wheelhouse / f"index/simple/{project}/index.json").read_text())
        assert doc["meta"]["api-version"] == "1.4" and doc["name"] == project
        html_files = {text: attrs["href"].split("#sha256=")[1] for attrs, text in parse(wheelhouse / f"index/simple/{project}/index.html").anchors}
        json_files = {f["filename"]: f["hashes"]["sha256"] for f in doc["files"]}
        assert html_files == json_files and json_files
        for f in doc["files"]:
            assert f["size"] == (wheelhouse / "index/files" / f["filename"]).stat().st_size
            assert f["yanked"] is False and f["core-metadata"] == f["data-dist-info-metadata"]
            assert f["url"].endswith(f["filename"].replace("+", "%2B"))
    doc = json.loads((wheelhouse / "index/simple/demo-pkg/index.json").read_text())
    assert doc["versions"] == [f"0.9.0+{LABEL}", f"1.0.0+{LABEL}"]
    root = json.loads((wheelhouse / "index/simple/index.json").read_text())
    assert [p["name"] for p in root["projects"]] == ["demo-pkg", "some-name"]
    assert [t for _, t in parse(wheelhouse / "index/simple/index.html").anchors] == ["demo-pkg", "some-name"]


def test_project_names_are_normalized(tmp_path):
    wh = make_wheelhouse(tmp_path / "wh", [WheelSpec(name="Some_Name.Thing", version="1.0")])
    build_index(wh)
    assert sorted(p.name for p in (wh / "index/simple").iterdir() if p.is_dir()) == ["some-name-thing"]


def test_yanks_from_yanked_toml(wheelhouse):
    (wheelhouse / "yanked.toml").write_text(f'[[yank]]\nfile = "{WHEEL}"\nreason = "bad <kernel>"\n[[yank]]\nfile = "gone-1.0-py3-none-any.whl"\n')
    result = build_index(wheelhouse)
    assert any("gone-1.0" in w for w in result.warnings)
    a = {t: attrs for attrs, t in parse(wheelhouse / "index/simple/demo-pkg/index.html").anchors}
    assert a[WHEEL]["data-yanked"] == "bad <kernel>"
    assert "data-yanked" not in a[WHEEL.replace("1.0.0", "0.9.0")]
    doc = json.loads((wheelhouse / "index/simple/demo-pkg/index.json").read_text())
    assert {f["filename"]: f["yanked"] for f in doc["files"]}[WHEEL] == "bad <kernel>"


def test_bad_yank_file_is_a_clear_error(wheelhouse):
    (wheelhouse / "yanked.toml").write_text("[[yank]]\nreason = 'x'\n")
    with pytest.raises(IndexError_) as err:
        build_index(wheelhouse)
    assert err.value.id == "index.yank-invalid" and "yank[0].file" in err.value.message


def test_entry_without_its_wheel_is_refused(tmp_path):
    wh = make_wheelhouse(tmp_path / "wh", [WheelSpec()])
    next((wh / "entries").glob("*/*.whl")).unlink()
    with pytest.raises(IndexError_) as err:
        build_index(wh)
    assert err.value.id == "index.bad-entry"
    assert not (wh / "index").exists()


def test_regeneration_swaps_whole_trees_and_failure_keeps_the_old_one(wheelhouse, monkeypatch):
    old_gen = (wheelhouse / "index/generation.json").read_text()
    add_entry(wheelhouse, WheelSpec(name="third", version="3.0"))
    build_index(wheelhouse)
    assert (wheelhouse / "index/simple/third/index.html").is_file()
    assert not [p for p in wheelhouse.iterdir() if p.name.startswith(".index-")]

    def broken(files, root, wh, **kw):
        (root / "files").mkdir(parents=True)
        raise OSError("disk full")

    before = sorted(str(p.relative_to(wheelhouse)) for p in (wheelhouse / "index").rglob("*"))
    monkeypatch.setattr(index_mod, "write_tree", broken)
    with pytest.raises(OSError):
        build_index(wheelhouse)
    assert sorted(str(p.relative_to(wheelhouse)) for p in (wheelhouse / "index").rglob("*")) == before
    assert not [p for p in wheelhouse.iterdir() if p.name.startswith(".index-")]
    assert json.loads(old_gen)["files"] == 3


def test_files_are_hardlinks_of_entries(wheelhouse):
    served = wheelhouse / "index/files" / WHEEL
    original = next((wheelhouse / "entries").glob(f"*/{WHEEL}"))
    assert os.path.samefile(served, original)


def test_page_has_one_row_per_wheel_with_links(wheelhouse):
    page = (wheelhouse / "index/index.html").read_text()
    assert page.count("<tr>") == 1 + 3  # header + wheels
    assert 'name="viewport"' in page
    assert f'files/{WHEEL.replace("+", "%2B")}.provenance.json' in page
    assert "logs/" in page and "sm_120a" in page and "host only" in page


def test_print_config_uses_only_our_index_and_exact_pins(wheelhouse):
    text = print_config("http://127.0.0.1:8080", [f"demo-pkg==1.0.0+{LABEL}"], wheelhouse)
    commands = [line for line in text.splitlines() if not line.startswith("#")]
    assert f"pip install --index-url http://127.0.0.1:8080/simple/ 'demo-pkg==1.0.0+{LABEL}'" in commands
    assert not any("extra-index-url" in line for line in commands)
    assert "explicit = true" in commands and 'demo-pkg = { index = "wheelforge" }' in commands
    req = [line for line in commands if line.startswith("demo-pkg==")]
    assert req and "--hash=sha256:" in req[0]


def test_require_hashes_file_and_bad_pins(wheelhouse):
    text = require_hashes(wheelhouse, [f"Demo_Pkg==0.9.0+{LABEL}"])
    doc = json.loads((wheelhouse / "index/simple/demo-pkg/index.json").read_text())
    h = next(f["hashes"]["sha256"] for f in doc["files"] if "0.9.0" in f["filename"])
    assert f"demo-pkg==0.9.0+{LABEL} --hash=sha256:{h}" in text
    for pin, eid in [("demo-pkg>=1", "index.bad-pin"), ("nope==1.0", "index.unknown-project"), ("demo-pkg==7.0", "index.unknown-version")]:
        with pytest.raises(IndexError_) as err:
            require_hashes(wheelhouse, [pin])
        assert err.value.id == eid

"""PEP 792 project status from project-status.toml, PEP 700 fields, and the server's cache headers."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from index_support import make_wheelhouse  # noqa: E402
from test_index_app import call  # noqa: E402
from variant_support import add_cuda_entry  # noqa: E402

from wheelforge.model.errors import IndexError_  # noqa: E402
from wheelforge.serving.index import SIMPLE_JSON  # noqa: E402
from wheelforge.serving.index import build_index as serve_verified_only


def build_index(wheelhouse, **kw):
    """The fixture wheelhouse holds a verified, a failed and an unverified entry; these tests check how each is
    rendered, so they index all three (the default serves verified wheels only: test_index_gating.py)."""
    return serve_verified_only(wheelhouse, include_unverified=True, **kw)
from wheelforge.serving.server import IMMUTABLE, SHORT_LIVED, App  # noqa: E402


def page(wh: Path, project: str) -> tuple[str, dict]:
    return (wh / f"index/simple/{project}/index.html").read_text(), json.loads((wh / f"index/simple/{project}/index.json").read_text())


@pytest.fixture
def wh(tmp_path):
    return make_wheelhouse(tmp_path / "wh")


def test_archived_and_deprecated_projects_keep_their_files_and_say_so(wh):
    (wh / "project-status.toml").write_text(
        '[[project]]\nname = "Demo_Pkg"\nstatus = "archived"\nreason = "no more <builds>"\n\n'
        '[[project]]\nname = "some-name"\nstatus = "deprecated"\n'
    )
    build_index(wh)
    html, doc = page(wh, "demo-pkg")
    assert doc["meta"]["api-version"] == "1.4"
    assert doc["project-status"] == {"status": "archived", "reason": "no more <builds>"}
    assert '<meta name="pypi:project-status" content="archived">' in html
    assert '<meta name="pypi:project-status-reason" content="no more &lt;builds&gt;">' in html
    assert len(doc["files"]) == 2 and html.count("<a ") == 2
    html, doc = page(wh, "some-name")
    assert doc["project-status"] == {"status": "deprecated"} and "project-status-reason" not in html
    _, doc = page(wh, "demo-pkg")
    assert all("upload-time" in f and f["size"] > 0 for f in doc["files"])  # PEP 700


def test_active_projects_carry_no_status(wh):
    build_index(wh)
    html, doc = page(wh, "demo-pkg")
    assert "project-status" not in doc and "pypi:project-status" not in html


def test_quarantined_project_offers_no_files_anywhere(tmp_path):
    wh = make_wheelhouse(tmp_path / "wh")
    add_cuda_entry(wh, "kern", "cu130.sm120", sass=(120,))
    (wh / "project-status.toml").write_text('[[project]]\nname = "kern"\nstatus = "quarantined"\nreason = "haunted"\n')
    result = build_index(wh, variants=True)
    html, doc = page(wh, "kern")
    assert doc["project-status"] == {"status": "quarantined", "reason": "haunted"}
    assert doc["files"] == [] and doc["versions"] == ["1.0.0+cu130.sm120"] and "<a " not in html
    assert not list((wh / "index/files").glob("kern*")) and result.variant_files == 0
    assert "kern" in {p["name"] for p in json.loads((wh / "index/simple/index.json").read_text())["projects"]}
    assert "kern" not in (wh / "index/index.html").read_text().split("<tbody")[1]


@pytest.mark.parametrize(
    "text, fragment",
    [
        ('[[project]]\nname = "demo-pkg"\nstatus = "gone"\n', "status 'gone'"),
        ('[[project]]\nstatus = "archived"\n', "name is missing"),
        ("project = 1\n", "array of tables"),
        ("[[project]\n", "not valid TOML"),
    ],
)
def test_bad_status_file_is_a_clear_error(wh, text, fragment):
    (wh / "project-status.toml").write_text(text)
    with pytest.raises(IndexError_) as err:
        build_index(wh)
    assert err.value.id == "index.status-invalid" and fragment in str(err.value)


def test_status_for_an_unknown_project_is_a_warning(wh):
    (wh / "project-status.toml").write_text('[[project]]\nname = "nobody"\nstatus = "archived"\n')
    assert build_index(wh).warnings == ["project-status.toml names nobody, which no entry holds; ignored"]


def test_pages_are_short_lived_with_etag_and_files_immutable(tmp_path):
    wh = make_wheelhouse(tmp_path / "wh")
    add_cuda_entry(wh, "kern", "cu130.sm120", sass=(120,))
    build_index(wh, variants=True)
    app = App(wh / "index")
    for path, headers in [("/simple/demo-pkg/", ()), ("/simple/demo-pkg/", [("accept", SIMPLE_JSON)]), ("/simple/", ()), ("/", ())]:
        status, h, body = call(app, path, headers=headers)
        assert status == 200 and h["cache-control"] == SHORT_LIVED and h["etag"].startswith('"'), path
        status, h2, body2 = call(app, path, headers=[*headers, ("if-none-match", h["etag"])])
        assert status == 304 and body2 == b"" and h2["etag"] == h["etag"] and h2["cache-control"] == SHORT_LIVED
    # the HTML and JSON forms of one page are different representations: different tags
    assert call(app, "/simple/demo-pkg/")[1]["etag"] != call(app, "/simple/demo-pkg/", headers=[("accept", SIMPLE_JSON)])[1]["etag"]
    assert call(app, "/simple/demo-pkg/", headers=[("if-none-match", '"stale"')])[0] == 200
    status, h, _ = call(app, "/files/kern-1.0.0+variants-cp311-cp311-linux_x86_64-cu130.sm120.whl")
    assert status == 200 and h["cache-control"] == IMMUTABLE
    status, h, _ = call(app, "/files/kern-1.0.0+variants-variants.json")
    assert status == 200 and h["cache-control"] == SHORT_LIVED  # PEP 825: the index file may change

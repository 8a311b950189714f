"""Pure parts of the patch machinery: diff path parsing, path safety, git apply error parsing, digests."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from source_support import write_recipe

from wheelforge.model.errors import PatchError
from wheelforge.model.recipe import load_recipe
from wheelforge.sources.patches import (
    hunk_header,
    parse_apply_error,
    patch_digests,
    patch_paths,
    unsafe_path,
)

GIT_PATCH = """\
diff --git a/src/a.c b/src/a.c
index 1111111..2222222 100644
--- a/src/a.c
+++ b/src/a.c
@@ -1,3 +1,3 @@ int main
-a
+A
 b
 c
@@ -20,3 +20,3 @@ static void f
 x
-y
+Y
diff --git a/old.txt b/new.txt
similarity index 100%
rename from old.txt
rename to new.txt
diff --git a/gone.txt b/gone.txt
deleted file mode 100644
--- a/gone.txt
+++ /dev/null
@@ -1 +0,0 @@
-bye
"""


def test_patch_paths_covers_headers_renames_and_deletions() -> None:
    assert patch_paths(GIT_PATCH) == ["src/a.c", "old.txt", "new.txt", "gone.txt"]


def test_patch_paths_of_a_plain_unified_diff() -> None:
    assert patch_paths("--- a/x/y.py\t2024-01-01\n+++ b/x/y.py\t2024-01-02\n@@ -1 +1 @@\n-1\n+2\n") == ["x/y.py"]


@pytest.mark.parametrize("path,reason", [("src/a.c", None), ("/etc/passwd", "absolute path"), ("../up.txt", "path contains '..'"),
                                         ("a/../../b", "path contains '..'"), ("C:/x", "absolute path")])
def test_unsafe_path(path: str, reason: str | None) -> None:
    assert unsafe_path(path) == reason


def test_hunk_header_picks_the_hunk_git_named() -> None:
    assert hunk_header(GIT_PATCH, "src/a.c", 20) == "@@ -20,3 +20,3 @@ static void f"
    assert hunk_header(GIT_PATCH, "src/a.c", 1) == "@@ -1,3 +1,3 @@ int main"
    assert hunk_header(GIT_PATCH, "src/a.c", None) == "@@ -1,3 +1,3 @@ int main"  # no line: the first hunk
    assert hunk_header(GIT_PATCH, "nope.c", 1) is None


def test_parse_apply_error() -> None:
    assert parse_apply_error("error: patch failed: src/a.c:20\nerror: src/a.c: patch does not apply\n") == ("src/a.c", 20)
    assert parse_apply_error("error: src/b.c: No such file or directory\n") == ("src/b.c", None)
    assert parse_apply_error("fatal: corrupt patch at line 7\n") == (None, None)


def test_patch_digests_in_series_order_and_missing_file(tmp_path: Path) -> None:
    path = write_recipe(
        tmp_path, "demo", {"1.0": 'type = "path"\npath = "."', "2.0": 'type = "path"\npath = "."'},
        patches=[("0001-a.patch", ""), ("0002-b.patch", ">=2.0")],
        patch_files={"0001-a.patch": "A", "0002-b.patch": "B"},
    )
    recipe = load_recipe(path)

    def sha(s: str) -> str:
        return hashlib.sha256(s.encode()).hexdigest()

    assert patch_digests(recipe, "1.0") == [("0001-a.patch", sha("A"))]
    assert patch_digests(recipe, "2.0") == [("0001-a.patch", sha("A")), ("0002-b.patch", sha("B"))]
    (recipe.patch_dir / "0002-b.patch").unlink()
    with pytest.raises(PatchError, match="0002-b.patch") as err:
        patch_digests(recipe, "2.0")
    assert str(recipe.path) in (err.value.hint or "")

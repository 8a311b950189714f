"""Recipe validation: a valid file loads into frozen types; each bad one fails with file, key and reason."""

import dataclasses

import pytest
from recipe_support import VALID, write

from wheelforge.model.errors import RecipeError
from wheelforge.model.recipe import GitSource, SdistSource, all_recipes, find_recipe, load_recipe, recipe_dirs


def test_valid_recipe_loads_frozen(tmp_path):
    r = load_recipe(write(tmp_path, VALID))
    assert r.name == "demo" and r.project == "demo-pkg" and r.kind == "pep517"
    assert isinstance(r.versions["1.0.0"].source, SdistSource)
    assert r.versions["1.0.0"].source.version == "1.0.0"  # defaults to the version key
    assert isinstance(r.versions["0.9.0"].source, GitSource)
    assert [p.file for p in r.patches_for("1.0.0")] == ["0001-fix.patch"]
    assert r.patches_for("0.9.0") == ()
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.name = "x"  # type: ignore[misc]


BAD = [
    # (replace old -> new, expected key, expected reason fragment)
    ('kind = "pep517"', 'kind = "make"', "kind", "unknown build kind 'make'"),
    ('name = "demo"', 'name = "other"', "name", "equal the file name"),
    ('ram_per_job_gb = 2.0', 'ram_per_job_gb = "lots"', "ram_per_job_gb", "must be a number of GiB"),
    ('ram_per_job_gb = 2.0', 'ram_per_job_gb = 0', "ram_per_job_gb", "outside 0 < GiB"),
    ('BUILD_VERSION = "{full_version}"', 'BUILD_VERSION = "{fullversion}"', "env.BUILD_VERSION", "unknown placeholder {fullversion}"),
    ('commit = "0123456789abcdef0123456789abcdef01234567"', 'commit = "0123456"', 'versions.0.9.0.source.commit', "not a full 40-hex commit"),
    ('sha256 = "f7fc183a58e4bf0e2ae339a18fb1b1d4a37854c0f2545b4f360fef001646ab76"', 'sha256 = "abc"', "versions.1.0.0.source.sha256", "not a 64-hex sha256"),
    ('type = "sdist"', 'type = "svn"', "versions.1.0.0.source.type", "unknown source type 'svn'"),
    ('when = ">=1.0,<2"', 'when = "one to two"', "patches[0].when", "not a version range"),
    ('file = "0001-fix.patch"', 'file = "../evil.patch"', "patches[0].file", "bare file name"),
    ('default_version = "1.0.0"', 'default_version = "3.0"', "default_version", "not one of the listed versions"),
    ('requires = ["setuptools>=68", "wheel"]', 'requires = ["setuptools>=>68"]', "build.requires", "not a valid requirement"),
    ('local_version = "env"', 'local_version = "magic"', "local_version", "unknown hook 'magic'"),
    ('recipes = []', 'recipes = ["demo"]', "build.recipes", "cannot depend on itself"),
    ('description = "test recipe"', 'description = "x"\nflavour = "spicy"', "flavour", "is not a known key"),
    ('url = "https://example.invalid/demo.git"\n', '', 'versions.0.9.0.source.url', "is required but missing"),
    ('[versions."1.0.0"]', '[versions."one"]', "versions.one", "not a PEP 440 version"),
    ('ram_per_job_gb = 2.0', 'ram_per_job_gb = 2.0\nsupported_archs = ["120"]', "supported_archs", "write '120' as '12.0'"),
    ('ram_per_job_gb = 2.0', 'ram_per_job_gb = 2.0\nsupported_archs = ["sm_999"]', "supported_archs", "not a known compute capability"),
    # found by tests/unit/test_fuzz_recipes.py: a lone brace raised ValueError; a conversion was planned as repr()
    ('BUILD_VERSION = "{full_version}"', 'BUILD_VERSION = "{full_version"', "env.BUILD_VERSION", "is not a template"),
    ('BUILD_VERSION = "{full_version}"', 'BUILD_VERSION = "{full_version!r}"', "env.BUILD_VERSION", "has a conversion or format"),
    ('test_module = "tests/postbuild/test_demo_cuda.py"', 'test_module = "tests/conftest.py"', "test_module", "not a pytest module path"),
    ('test_module = "tests/postbuild/test_demo_cuda.py"', 'test_module = "tests/test_x.txt"', "test_module", "not a pytest module path"),
]


@pytest.mark.parametrize("old,new,key,reason", BAD, ids=[b[2] + ":" + b[3][:20] for b in BAD])
def test_bad_recipe_names_file_key_reason(tmp_path, old, new, key, reason):
    assert old in VALID
    path = write(tmp_path, VALID.replace(old, new, 1))
    with pytest.raises(RecipeError) as exc:
        load_recipe(path)
    msg = exc.value.message
    assert str(path) in msg
    assert f"key '{key}'" in msg
    assert reason in msg
    assert exc.value.hint


def test_each_bad_recipe_has_its_own_message(tmp_path):
    messages = set()
    for i, (old, new, _, _) in enumerate(BAD):
        (tmp_path / str(i)).mkdir()
        path = write(tmp_path / str(i), VALID.replace(old, new, 1))
        with pytest.raises(RecipeError) as exc:
            load_recipe(path)
        messages.add(exc.value.message.split(": ", 1)[1])
    assert len(messages) == len(BAD) >= 10


def test_syntax_error(tmp_path):
    path = write(tmp_path, VALID + "\nthis is not toml\n")
    with pytest.raises(RecipeError) as exc:
        load_recipe(path)
    assert exc.value.id == "recipe.syntax" and str(path) in exc.value.message


def test_lookup_order_and_not_found(tmp_path):
    write(tmp_path, VALID)
    dirs = recipe_dirs(tmp_path / "recipes", env={"WHEELFORGE_RECIPE_PATH": ""})
    assert find_recipe("demo", dirs).path.parent == (tmp_path / "recipes").resolve()
    assert "demo" in all_recipes(dirs)
    with pytest.raises(RecipeError) as exc:
        find_recipe("nope", dirs)
    assert exc.value.id == "recipe.not-found" and "demo" in exc.value.hint


def test_env_recipe_path(tmp_path):
    write(tmp_path, VALID)
    dirs = recipe_dirs(None, env={"WHEELFORGE_RECIPE_PATH": str(tmp_path / "recipes")})
    assert find_recipe("demo", dirs).name == "demo"


def test_unknown_version(tmp_path):
    r = load_recipe(write(tmp_path, VALID))
    with pytest.raises(RecipeError) as exc:
        r.pin("9.9")
    assert "0.9.0, 1.0.0" in exc.value.hint


NVIDIA_BAD = [
    # (replace old -> new, expected key, expected reason fragment)
    ('recipes = []', 'recipes = []\nnvidia = ["cudart"]', "build.nvidia", "'cudart' is not a known NVIDIA library"),
    ('recipes = []', 'recipes = []\n[nvidia_versions.cu11]\ncudnn = "9.1.0.70"', "nvidia_versions.cu11", "not a CUDA major"),
    ('recipes = []', 'recipes = []\n[nvidia_versions.cu12]\nmagma = "2.9"', "nvidia_versions.cu12.magma", "not a known NVIDIA library"),
    ('recipes = []', 'recipes = []\n[nvidia_versions.cu12]\ncudnn = "nine"', "nvidia_versions.cu12.cudnn", "'nine' is not a version"),
    # a library's placeholders exist only when [build] nvidia lists it; {torch_version} only with a torch dependency
    ('BUILD_VERSION = "{full_version}"', 'BUILD_VERSION = "{full_version}"\nX = "{nvidia_cudnn_include}"', "env.X",
     "unknown placeholder {nvidia_cudnn_include}"),
    ('BUILD_VERSION = "{full_version}"', 'BUILD_VERSION = "{full_version}"\nPYTORCH_VERSION = "{torch_version}"',
     "env.PYTORCH_VERSION", "unknown placeholder {torch_version}"),
]


@pytest.mark.parametrize("old,new,key,reason", NVIDIA_BAD, ids=[b[2] for b in NVIDIA_BAD])
def test_bad_nvidia_fields_name_file_key_reason(tmp_path, old, new, key, reason):
    path = write(tmp_path, VALID.replace(old, new, 1))
    with pytest.raises(RecipeError) as exc:
        load_recipe(path)
    assert f"key '{key}'" in exc.value.message and reason in exc.value.message, exc.value.message


def test_nvidia_fields_and_their_placeholders_load(tmp_path):
    text = VALID.replace('recipes = []', 'recipes = ["torch"]\nnvidia = ["cudnn"]\n[nvidia_versions.cu12]\ncudnn = "9.26.0.51"')
    text = text.replace('BUILD_VERSION = "{full_version}"',
                        'BUILD_VERSION = "{full_version}"\nCUDNN = "{nvidia_cudnn_library}"\nPYTORCH_VERSION = "{torch_version}"')
    r = load_recipe(write(tmp_path, text))
    assert r.build.nvidia == ("cudnn",) and r.nvidia_versions == {"cu12": {"cudnn": "9.26.0.51"}}
    assert r.to_json()["build"]["nvidia"] == ["cudnn"] and r.to_json()["nvidia_versions"] == {"cu12": {"cudnn": "9.26.0.51"}}
    assert "nvidia" not in load_recipe(write(tmp_path, VALID)).to_json()["build"]  # old keys unchanged for old recipes


def test_test_module_is_relative_to_the_recipe_folder_and_checked_on_demand(tmp_path):
    """Loading does not look for the module (plans without a verify step need none); check_test_module does."""
    path = write(tmp_path, VALID.replace('test_module = "tests/postbuild/test_demo_cuda.py"', 'test_module = "../suite/test_demo.py"'))
    recipe = load_recipe(path)
    assert recipe.test_module_path == tmp_path / "suite" / "test_demo.py"
    with pytest.raises(RecipeError) as exc:
        recipe.check_test_module()
    assert exc.value.id == "recipe.no-test-module"
    assert exc.value.message == (f"{path.resolve()}: key 'test_module': '../suite/test_demo.py' names "
                                 f"{tmp_path / 'suite' / 'test_demo.py'}, which is not a file")
    (tmp_path / "suite").mkdir()
    (tmp_path / "suite" / "test_demo.py").write_text("def test_ok():\n    pass\n")
    assert recipe.check_test_module() == tmp_path / "suite" / "test_demo.py"


def test_every_bundled_recipe_finds_its_test_module():
    from wheelforge.model.bundled import postbuild_dir, recipes_dir

    recipes = all_recipes([recipes_dir()])
    assert recipes
    for recipe in recipes.values():
        assert recipe.check_test_module().parent == postbuild_dir(), recipe.name


def test_recipe_folders_are_checked_where_they_enter(tmp_path):
    (tmp_path / "file").write_text("x")
    for bad, what in ((tmp_path / "file", "is not a folder"), (tmp_path / "missing", "does not exist")):
        with pytest.raises(RecipeError) as exc:
            recipe_dirs(bad, env={})
        assert exc.value.id == "recipe.dir-missing" and str(bad) in exc.value.message and what in exc.value.message
    with pytest.raises(RecipeError) as exc:
        recipe_dirs(None, env={"WHEELFORGE_RECIPE_PATH": str(tmp_path / "missing")})
    assert "WHEELFORGE_RECIPE_PATH" in exc.value.message

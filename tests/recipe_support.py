"""A valid recipe text that tests mutate one key at a time."""

VALID = '''
name = "demo"
project = "demo-pkg"
kind = "pep517"
description = "test recipe"
ram_per_job_gb = 2.0
local_version = "env"
test_module = "tests/postbuild/test_demo_cuda.py"
default_version = "1.0.0"
runtime_requires = ["numpy>=1.26"]

[env]
TORCH_CUDA_ARCH_LIST = "{torch_cuda_arch_list}"
BUILD_VERSION = "{full_version}"

[build]
requires = ["setuptools>=68", "wheel"]
recipes = []

[[patches]]
file = "0001-fix.patch"
when = ">=1.0,<2"
why = "example"

[versions."1.0.0"]
requires_python = ">=3.9"
[versions."1.0.0".source]
type = "sdist"
name = "demo-pkg"
sha256 = "f7fc183a58e4bf0e2ae339a18fb1b1d4a37854c0f2545b4f360fef001646ab76"

[versions."0.9.0".source]
type = "git"
url = "https://example.invalid/demo.git"
tag = "v0.9.0"
commit = "0123456789abcdef0123456789abcdef01234567"
'''


def write(tmp_path, text, name="demo"):
    d = tmp_path / "recipes"
    d.mkdir(exist_ok=True)
    p = d / f"{name}.toml"
    p.write_text(text)
    return p

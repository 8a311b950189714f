"""xformers wheel: the C++/CUDA extension loads, matches the installed torch, and its attention is right.

xformers only *warns* when its extension fails to load and then runs slow or not at all, so
these checks turn that warning into a failure.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from postbuild_support import import_or_fail

pytestmark = pytest.mark.postbuild


@pytest.fixture(scope="module")
def torch():
    return import_or_fail("torch")


@pytest.fixture(scope="module")
def xformers(torch):
    return import_or_fail("xformers")


def _build_info(xformers) -> dict:
    """cpp_lib.json, written by xformers' setup.py beside the package: torch/cuda versions, build env."""
    path = Path(xformers.__file__).parent / "cpp_lib.json"
    if not path.is_file():
        pytest.fail(f"{path} is missing: the wheel was built without the C++ extension", pytrace=False)
    return json.loads(path.read_text())


def test_cpp_extension_loaded(xformers):
    if not getattr(xformers, "_has_cpp_library", False):
        from xformers import _cpp_lib

        err = getattr(_cpp_lib, "_cpp_library_load_exception", None)
        pytest.fail(f"xformers C++/CUDA extension did not load: {err!r}", pytrace=False)


def test_built_against_installed_torch(torch, xformers):
    built = _build_info(xformers)["version"]["torch"]
    assert built == torch.__version__, f"xformers was built against torch {built}, installed torch is {torch.__version__}"


def test_built_for_requested_archs(xformers, target):
    env = _build_info(xformers).get("env", {})
    arch_list = env.get("TORCH_CUDA_ARCH_LIST")
    if not arch_list:
        pytest.skip("cpp_lib.json records no TORCH_CUDA_ARCH_LIST")
    # TORCH_CUDA_ARCH_LIST spells archs as "9.0;12.0a" or "9.0 12.0+PTX".
    built = {(int(a), int(b)) for a, b in re.findall(r"(\d+)\.(\d)", arch_list)}
    missing = [sm for sm, a in zip(target.sm_archs, target.archs) if a[:2] not in built]
    assert not missing, f"xformers TORCH_CUDA_ARCH_LIST={arch_list!r} lacks {missing}"


def test_cuda_version_is_target(xformers, target):
    if not target.cuda:
        pytest.skip("no target CUDA given (WHEELFORGE_CUDA)")
    cuda = _build_info(xformers)["version"].get("cuda")
    if cuda is None:
        pytest.fail("xformers build info records no CUDA version: built without CUDA?", pytrace=False)
    # Recorded as an int such as 1208 (12.8) or a "12.8" string depending on the xformers release.
    text = str(cuda)
    got = f"{int(text) // 100}.{int(text) % 100 // 10}" if text.isdigit() else ".".join(text.split(".")[:2])
    want = ".".join(target.cuda.split(".")[:2])
    assert got == want, f"xformers was built with CUDA {got}, target is {want}"


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_memory_efficient_attention_matches_reference(torch, xformers, gpu, seed, dtype):
    if not torch.cuda.is_available():
        pytest.skip(f"torch.cuda.is_available() is False although {gpu.name} is present")
    import xformers.ops as xops

    dt = getattr(torch, dtype)
    g = torch.Generator().manual_seed(seed)
    b, m, h, k = 2, 256, 4, 64  # xformers layout: [batch, seq, heads, head_dim]
    q, kk, v = (torch.randn(b, m, h, k, generator=g).to(dt) for _ in range(3))
    dev = torch.device("cuda", 0)
    got = xops.memory_efficient_attention(q.to(dev), kk.to(dev), v.to(dev)).float().cpu()

    # Plain PyTorch reference in fp32 on the same rounded inputs.
    qf, kf, vf = (t.float().transpose(1, 2) for t in (q, kk, v))
    attn = torch.softmax(qf @ kf.transpose(-1, -2) / math.sqrt(k), dim=-1)
    want = (attn @ vf).transpose(1, 2)
    # Outputs are convex mixes of N(0,1) values; fp16 rounding ~5e-4, bf16 ~4e-3, plus the
    # kernel's low-precision P@V: 1e-2 (fp16) and 3e-2 (bf16), far below a wrong kernel's O(1).
    tol = 1e-2 if dtype == "float16" else 3e-2
    torch.testing.assert_close(got, want, rtol=tol, atol=tol, msg=lambda msg: f"seed {seed}: {msg}")

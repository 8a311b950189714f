"""xformers wheel: the C++/CUDA extension loads, matches the installed torch, its attention is right, and
on a GPU the kernels compiled into the wheel's own ``xformers/_C.so`` run and agree with a dense reference.

xformers only *warns* when its extension fails to load and then runs slow or not at all, so
these checks turn that warning into a failure.  ``memory_efficient_attention`` alone would not
prove the wheel's binary: xformers 0.0.35 dispatches it to attention kernels that come with torch,
so it passes whatever ``_C.so`` holds.  The sparse24 tests below call ops that live only in
``_C.so`` (xformers/csrc/sparse24 of the 0.0.35 sdist, sha256 f7fc183a...46ab76): a wheel without
code for the GPU fails them with "no kernel image is available".
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
    missing = [sm for sm, a in zip(target.sm_archs, target.archs, strict=True) if a[:2] not in built]
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


# --------------------------------------------------------------------------- kernels in the wheel's own _C.so
#
# What xformers 0.0.35 compiles into _C.so for 2:4 sparsity (read in its sdist, xformers/csrc/sparse24/):
#   sparse24.cpp             defines torch.ops.xformers.sparse24_sparsify_both_ways, sparse24_apply,
#                            sparse24_apply_dense_output, _sparse24_gemm, ... (STABLE_TORCH_LIBRARY_FRAGMENT)
#   sparse24_pack.cu         the CUDA kernel of sparse24_sparsify_both_ways (xformers.ops.sp24.sparsify24)
#   sparse24_apply.cu        sparse24_apply: packs another tensor with the same 2:4 pattern
#   sparse24_apply_dense_output.cu   sparse24_apply_dense_output: the dense tensor with pruned values scaled by mul0
#   gemm.cu                  _sparse24_gemm, the CUTLASS 2:4 sparse GEMM (cutlass::arch::Sm80); it refuses any GPU
#                            whose compute capability is not 8.x ("Supported only on GPUs with compute capability 8.x")
# The default algorithm ("" = LargestValuesGreedy<IdentityOp>, compute_sparse_tile.h) walks each aligned 4x4 tile
# from its largest value down (signed values, not magnitudes) and keeps a value while its row and its column hold
# fewer than 2 kept ones: 2:4 both ways, so the transpose is 2:4 sparse too.

SP24_ROWS, SP24_COLS = 128, 256  # cols % 32 == 0 (sparse24_pack.cu); k % 64 == 0 and m % 32 == 0 (gemm.cu)


def _sp24_input(torch, dtype, seed):
    """Each 4x4 tile holds 16 distinct values, multiples of 1/4 in [-2, 1.75]: exact in float16 and bfloat16,
    and no ties, so the greedy order (and the reference's) is unambiguous."""
    g = torch.Generator().manual_seed(seed)
    tiles = (SP24_ROWS // 4) * (SP24_COLS // 4)
    ranks = torch.argsort(torch.rand(tiles, 16, generator=g), dim=1)
    values = (ranks.float() - 8) / 4
    x = values.view(SP24_ROWS // 4, SP24_COLS // 4, 4, 4).permute(0, 2, 1, 3).reshape(SP24_ROWS, SP24_COLS)
    return x.to(dtype)


def _greedy_2to4_mask(torch, x):
    """The reference: the 4x4-tile greedy of compute_sparse_tile.h, in plain torch on the CPU."""
    rows, cols = x.shape
    tiles = x.float().view(rows // 4, 4, cols // 4, 4).permute(0, 2, 1, 3).reshape(-1, 16)
    order = torch.argsort(tiles, dim=1, descending=True)
    n = tiles.shape[0]
    keep = torch.zeros(n, 16, dtype=torch.bool)
    per_row = torch.zeros(n, 4, dtype=torch.long)
    per_col = torch.zeros(n, 4, dtype=torch.long)
    every = torch.arange(n)
    for k in range(16):
        idx = order[:, k]
        r, c = idx // 4, idx % 4
        ok = (per_row[every, r] < 2) & (per_col[every, c] < 2)
        keep[every, idx] = ok
        per_row[every, r] += ok.long()
        per_col[every, c] += ok.long()
    return keep.view(rows // 4, cols // 4, 4, 4).permute(0, 2, 1, 3).reshape(rows, cols)


@pytest.fixture()
def sp24(torch, xformers, gpu):
    if not torch.cuda.is_available():
        pytest.skip(f"torch.cuda.is_available() is False although {gpu.name} is present")
    if gpu.capability < (8, 0):
        pytest.skip(f"2:4 sparsity needs compute capability 8.0 or newer, {gpu.name} is {gpu.capability}")
    import xformers.ops.sp24 as sp24

    return sp24


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_sparse24_sparsify_kernels_match_a_dense_reference(torch, sp24, seed, dtype):
    """Runs sparse24_sparsify_both_ways, sparse24_apply_dense_output and sparse24_apply: CUDA kernels of the
    wheel's own xformers/_C.so (sparse24_pack.cu, sparse24_apply_dense_output.cu, sparse24_apply.cu)."""
    x = _sp24_input(torch, getattr(torch, dtype), seed)
    want = torch.where(_greedy_2to4_mask(torch, x), x.float(), torch.zeros(())).to(x.dtype)

    s = sp24.sparsify24(x.cuda())  # backend "cutlass", algorithm "": sparse24_sparsify_both_ways
    dense = torch.ops.xformers.sparse24_apply_dense_output(x.cuda(), s.threads_masks, mul0=0.0, mul1=1.0).cpu()

    assert torch.equal(dense, want), (f"seed {seed}: the wheel's 2:4 mask differs from the greedy reference at "
                                      f"{int((dense != want).sum())} of {want.numel()} positions")
    groups = (dense != 0).view(SP24_ROWS, SP24_COLS // 4, 4).sum(-1)
    assert int(groups.max()) <= 2, f"seed {seed}: a row group of 4 keeps {int(groups.max())} values"
    # sparse24_apply packs a tensor with the pattern the sparsify kernel chose: applied to x, it must give
    # back exactly what sparsify packed (values and the transpose's values)
    packed, _meta, packed_t, _meta_t = torch.ops.xformers.sparse24_apply(x.cuda(), s.threads_masks)
    assert torch.equal(packed, s.packed) and torch.equal(packed_t, s.packed_t), f"seed {seed}: sparse24_apply != sparsify"


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_sparse24_matmul_matches_dense(torch, sp24, gpu, seed, dtype):
    """The 2:4 sparse matmul of a tensor the wheel's kernel packed, against the same product done dense.

    On compute capability 8.x the product is the wheel's own CUTLASS kernel (_sparse24_gemm, gemm.cu); on
    other GPUs gemm.cu refuses to run, and the product goes through torch's cuSPARSELt
    (backend "cusparselt"), which still reads the values and metadata the wheel's sparse24_pack.cu wrote.
    """
    dt = getattr(torch, dtype)
    x = _sp24_input(torch, dt, seed)
    g = torch.Generator().manual_seed(seed + 1)
    b = (torch.randn(SP24_COLS, 64, generator=g) / 4).to(dt)
    want = torch.where(_greedy_2to4_mask(torch, x), x.float(), torch.zeros(())) @ b.float()
    if gpu.capability[0] == 8:
        backend = "cutlass"
    elif sp24._has_cusparseLt():
        backend = "cusparselt"
    else:
        pytest.skip(f"{gpu.name} ({gpu.sm}): xformers' CUTLASS 2:4 GEMM runs on 8.x only and torch has no usable cuSPARSELt")
    got = (sp24.sparsify24(x.cuda(), backend=backend) @ b.cuda()).float().cpu()
    # ~128 kept products of |x| <= 2 and N(0, 1/16) per output: |out| ~ 3, at most ~13 (a numpy run of this
    # construction).  Rounding the output: float16 <= 4e-3, bfloat16 <= 3e-2; allowing for a float16
    # accumulation inside cuSPARSELt (sqrt(128) roundings): 0.1 and 0.2.  A wrong pattern or a misread pack is
    # off by O(1) per swapped value and O(10) for a misread layout.
    tol = 0.1 if dtype == "float16" else 0.2
    torch.testing.assert_close(got, want, rtol=0, atol=tol, msg=lambda m: f"seed {seed}, backend {backend}: {m}")

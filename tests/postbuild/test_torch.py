"""PyTorch wheel: arch list and CUDA version match the target; core kernels agree with the CPU.

Inputs are fresh random normals every run (never zeros: a kernel that writes nothing would
pass against zeros), scaled so outputs are O(1); tolerances below are stated per test.

The GPU tests run the wheel's own binaries: the torch wheel *is* ``libtorch_cuda.so``, whose
elementwise, reduction and attention kernels the build compiled for the target archs
(test_elementwise_matches_cpu, test_reduction_matches_cpu, test_scaled_dot_product_attention_matches_cpu);
matmul and conv2d also reach cuBLAS and cuDNN from the nvidia-* wheels.
"""

from __future__ import annotations

import math
import re
from importlib.metadata import requires

import pytest

pytestmark = pytest.mark.postbuild


@pytest.fixture()
def cuda(torch, gpu):
    if not torch.cuda.is_available():
        pytest.skip(f"torch.cuda.is_available() is False although {gpu.name} is present (driver too old for CUDA {torch.version.cuda}?)")
    # Exact fp32: TF32 would round inputs to 10 mantissa bits and need fp16-like tolerances.
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    yield torch.device("cuda", 0)
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def _randn(torch, seed, *shape, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float32) * scale


def _compiled_archs(torch) -> list[str]:
    # get_arch_list() is [] without a usable GPU; the compiled-in flags are there regardless.
    if torch.cuda.is_available():
        return list(torch.cuda.get_arch_list())
    flags = torch._C._cuda_getArchFlags() if hasattr(torch._C, "_cuda_getArchFlags") else ""
    return flags.split() if flags else []


def test_built_with_cuda(torch):
    assert torch.version.cuda, f"torch {torch.__version__} was built without CUDA"
    assert torch.backends.cuda.is_built()


def test_arch_list_holds_every_requested_arch(torch, target):
    archs = _compiled_archs(torch)
    assert archs, "torch reports no compiled CUDA archs"
    have = {a.lower() for a in archs}
    # A request for 12.0 is met by sm_120 or the arch-specific sm_120a.
    missing = [sm for sm in target.sm_archs if sm not in have and f"{sm}a" not in have and sm.rstrip("af") not in have]
    assert not missing, f"torch arch list {archs} lacks {missing}"


def test_cuda_version_is_target(torch, target):
    if not target.cuda:
        pytest.skip("no target CUDA given (WHEELFORGE_CUDA)")
    got = ".".join(torch.version.cuda.split(".")[:2])
    want = ".".join(target.cuda.split(".")[:2])
    assert got == want, f"torch.version.cuda is {torch.version.cuda}, target is CUDA {want}"


def test_official_feature_set_is_built(torch):
    # cuDNN, NCCL (distributed) and cuSPARSELt, as in PyPI's CUDA wheels; all compile-time facts, no GPU needed
    assert torch.backends.cudnn.is_available(), "built without cuDNN"
    assert torch.distributed.is_available() and torch.distributed.is_nccl_available(), "built without NCCL"
    assert torch.backends.cusparselt.is_available(), "built without cuSPARSELt"


def test_requires_triton_and_pinned_nvidia_wheels(torch):
    reqs = [r for r in requires("torch") or [] if "extra ==" not in r]
    assert any(re.match(r"^triton\b", r) for r in reqs), f"torch does not require triton (torch.compile needs it): {reqs}"
    for lib in ("cudnn", "nccl", "cusparselt"):
        assert any(re.match(rf"^nvidia-{lib}-cu\d+\s*==", r) for r in reqs), f"no pinned nvidia-{lib} wheel in {reqs}"


def test_cuda_libraries_load_from_nvidia_wheels(torch):
    torch.backends.cudnn.version()  # loads cuDNN if the import did not
    with open("/proc/self/maps", encoding="utf-8") as f:
        paths = {line.split()[-1] for line in f if ".so" in line and "/" in line}
    for name in ("libcudnn.so.", "libnccl.so.", "libcusparseLt.so."):
        hits = sorted(p for p in paths if p.rsplit("/", 1)[-1].startswith(name))
        assert hits, f"{name}* is not loaded"
        assert all("/nvidia/" in p for p in hits), f"{name}* loaded from {hits}, not from an nvidia-* wheel"


# --------------------------------------------------------------------------- kernels (GPU)

# dtype -> (rtol, atol) for a 256-deep dot product with O(1) outputs, compared with fp32 CPU
# math on the same (already rounded) inputs.  fp32: accumulation order only (~1e-6 relative),
# 1e-4 leaves room for split-K.  fp16: output rounding 2^-11 and fp32 accumulate, 1e-2.
# bf16: 2^-8 output rounding plus cuBLAS's reduced-precision split-K partial sums, 3e-2.
_MATMUL_TOL = {"float32": (1e-4, 1e-4), "float16": (1e-2, 1e-2), "bfloat16": (3e-2, 3e-2)}


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_matmul_matches_cpu(torch, cuda, seed, dtype):
    dt = getattr(torch, dtype)
    k = 256
    a = _randn(torch, seed, 192, k, scale=1 / math.sqrt(k)).to(dt)
    b = _randn(torch, seed + 1, k, 160).to(dt)
    want = a.float() @ b.float()
    got = (a.to(cuda) @ b.to(cuda)).float().cpu()
    rtol, atol = _MATMUL_TOL[dtype]
    torch.testing.assert_close(got, want, rtol=rtol, atol=atol, msg=lambda m: f"seed {seed}: {m}")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_conv2d_cudnn_matches_cpu(torch, cuda, seed, dtype):
    assert torch.backends.cudnn.is_available(), "cuDNN is not available in this torch"
    dt = getattr(torch, dtype)
    x = _randn(torch, seed, 4, 16, 24, 24).to(dt)
    w = _randn(torch, seed + 1, 32, 16, 3, 3, scale=1 / math.sqrt(16 * 9)).to(dt)
    want = torch.nn.functional.conv2d(x.float(), w.float(), padding=1)
    with torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True, allow_tf32=False):
        got = torch.nn.functional.conv2d(x.to(cuda), w.to(cuda), padding=1).float().cpu()
    # 144-term dot products with O(1) outputs: fp32 1e-4 (order only); fp16 1e-2 (output rounding).
    tol = 1e-4 if dtype == "float32" else 1e-2
    torch.testing.assert_close(got, want, rtol=tol, atol=tol, msg=lambda m: f"seed {seed}: {m}")


@pytest.mark.gpu
@pytest.mark.parametrize("causal", [False, True])
def test_scaled_dot_product_attention_matches_cpu(torch, cuda, seed, causal):
    f = torch.nn.functional
    q, k, v = (_randn(torch, seed + i, 2, 4, 128, 64).half() for i in range(3))
    want = f.scaled_dot_product_attention(q.float(), k.float(), v.float(), is_causal=causal)
    got = f.scaled_dot_product_attention(q.to(cuda), k.to(cuda), v.to(cuda), is_causal=causal).float().cpu()
    # Outputs are convex mixes of N(0,1) values; fp16 output rounding plus flash/mem-efficient
    # kernels' fp16 softmax probabilities give ~1e-3 error: 1e-2 absolute and relative.
    torch.testing.assert_close(got, want, rtol=1e-2, atol=1e-2, msg=lambda m: f"seed {seed}: {m}")


@pytest.mark.gpu
def test_reduction_matches_cpu(torch, cuda, seed):
    x = _randn(torch, seed, 4096, 1024)
    want_sum = x.double().abs().sum(dim=1)
    got_sum = x.to(cuda).abs().sum(dim=1).cpu().double()
    # 1024 positive fp32 terms: tree reduction error <= ~10 * 2^-24 relative; 1e-5 is generous.
    torch.testing.assert_close(got_sum, want_sum, rtol=1e-5, atol=0.0, msg=lambda m: f"seed {seed}: {m}")
    # max is exact: no rounding happens, so the GPU must return the very same values.
    assert torch.equal(x.to(cuda).amax(dim=0).cpu(), x.amax(dim=0)), f"seed {seed}: amax differs"


@pytest.mark.gpu
def test_elementwise_matches_cpu(torch, cuda, seed):
    x = _randn(torch, seed, 1 << 20)
    y = _randn(torch, seed + 1, 1 << 20)

    def fn(a, b):
        return torch.sin(a) * torch.exp(-a * a) + torch.sigmoid(b) * a

    # CUDA's sin/exp are within 2 ulp (no fast-math in torch): 1e-5 relative, 1e-6 absolute.
    torch.testing.assert_close(fn(x.to(cuda), y.to(cuda)).cpu(), fn(x, y), rtol=1e-5, atol=1e-6, msg=lambda m: f"seed {seed}: {m}")
    # IEEE addition is correctly rounded on both sides: fp16 sums must be bit-identical.
    xh, yh = x.half(), y.half()
    assert torch.equal((xh.to(cuda) + yh.to(cuda)).cpu(), xh + yh), f"seed {seed}: fp16 add differs"


@pytest.mark.gpu
def test_torch_compile_matches_eager(torch, cuda, seed):
    """Inductor generates and runs Triton kernels: needs the triton the wheel requires.  On a CUDA 12.8 driver
    triton's bundled ptxas may be too new (docs/pytorch-family.md: TRITON_PTXAS_BLACKWELL_PATH)."""
    def fn(x, y):
        return torch.nn.functional.gelu(x @ y) * torch.sigmoid(y.sum(0))

    x = _randn(torch, seed, 64, 128, scale=1 / math.sqrt(128)).to(cuda)
    y = _randn(torch, seed + 1, 128, 96).to(cuda)
    want = fn(x, y)
    got = torch.compile(fn)(x, y)
    # fp32 throughout; Inductor may fuse and reorder the pointwise tail: 1e-4.
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4, msg=lambda m: f"seed {seed}: {m}")

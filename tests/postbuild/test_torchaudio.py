"""torchaudio wheel: pins the torch it was built against, registers CUDA kernels, and on a GPU its
IIR filter (lfilter) and forced alignment agree with the CPU.

Inputs are fresh random values every run (the seed is in the failure message).
test_forced_align_cuda_equals_cpu runs the wheel's own kernel: torchaudio::forced_align's CUDA
implementation is compiled into libtorchaudio (pytorch/audio, forced_align/gpu/compute.cu, registered
for the CUDA key).  Whether F.lfilter on CUDA reaches torchaudio's _lfilter_core_loop CUDA kernel or
torch's own ops depends on the torchaudio release, so lfilter alone would not prove the binary.
"""

from __future__ import annotations

import pytest
from postbuild_support import (
    assert_has_local_label,
    assert_pins_installed_torch,
    assert_registers_cuda_kernel,
    import_or_fail,
)

pytestmark = pytest.mark.postbuild


@pytest.fixture(scope="module")
def torchaudio(torch):
    return import_or_fail("torchaudio")


def test_pins_the_installed_torch(torchaudio):
    assert_pins_installed_torch("torchaudio")


def test_version_has_local_label(torchaudio, target):
    assert_has_local_label(torchaudio.__version__, target)


@pytest.mark.parametrize("op", ["torchaudio::_lfilter_core_loop", "torchaudio::forced_align"])
def test_cuda_kernels_are_registered(torch, torchaudio, op):
    import torchaudio.functional  # noqa: F401 - loads the extension that registers the ops

    assert_registers_cuda_kernel(torch, op)


@pytest.mark.gpu
def test_lfilter_cuda_matches_cpu(torch, torchaudio, cuda, seed):
    import torchaudio.functional as F

    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 2, 4000, generator=gen, dtype=torch.float64) * 0.1
    # a stable 2nd-order low-pass (poles at radius 0.9): the recursion neither grows nor dies out
    a = torch.tensor([1.0, -1.8 * 0.5, 0.81], dtype=torch.float64)
    b = torch.tensor([0.2, 0.3, 0.2], dtype=torch.float64)
    want = F.lfilter(x, a, b, clamp=False)
    got = F.lfilter(x.to(cuda), a.to(cuda), b.to(cuda), clamp=False).cpu()
    # float64, the same recursion order per sample on both devices: agreement to ~1e-12.
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12, msg=lambda m: f"seed {seed}: {m}")


@pytest.mark.gpu
def test_forced_align_cuda_equals_cpu(torch, torchaudio, cuda, seed):
    import torchaudio.functional as F

    gen = torch.Generator().manual_seed(seed)
    frames, classes, length = 200, 20, 30
    log_probs = torch.randn(1, frames, classes, generator=gen).log_softmax(-1)
    targets = torch.randint(1, classes, (1, length), generator=gen, dtype=torch.int32)
    want_path, want_scores = F.forced_align(log_probs, targets, blank=0)
    got_path, got_scores = F.forced_align(log_probs.to(cuda), targets.to(cuda), blank=0)
    assert torch.equal(got_path.cpu(), want_path), f"seed {seed}: alignment differs"
    torch.testing.assert_close(got_scores.cpu(), want_scores, rtol=1e-5, atol=1e-5, msg=lambda m: f"seed {seed}: {m}")

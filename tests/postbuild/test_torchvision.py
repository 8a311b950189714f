"""torchvision wheel: pins the torch it was built against, registers CUDA kernels, and on a GPU its
nms and roi_align equal the CPU ones.

The GPU tests run the wheel's own kernels: ``torchvision.ops.nms`` and ``roi_align`` on CUDA tensors
dispatch to the CUDA implementations torchvision compiles into its ``_C`` extension
(torchvision/csrc/ops/cuda/ in pytorch/vision), not to anything torch ships.

Inputs are fresh random values every run (the seed is in the failure message).
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
def torchvision(torch):
    return import_or_fail("torchvision")


def test_pins_the_installed_torch(torchvision):
    assert_pins_installed_torch("torchvision")


def test_version_has_local_label(torchvision, target):
    assert_has_local_label(torchvision.__version__, target)


@pytest.mark.parametrize("op", ["torchvision::nms", "torchvision::roi_align"])
def test_cuda_kernels_are_registered(torch, torchvision, op):
    # The ops library loads on import; a CPU-only build registers no CUDA kernel for them.
    assert_registers_cuda_kernel(torch, op)


def _boxes(torch, gen, n):
    xy = torch.rand(n, 2, generator=gen) * 100
    wh = torch.rand(n, 2, generator=gen) * 30 + 1
    return torch.cat([xy, xy + wh], dim=1)


@pytest.mark.gpu
@pytest.mark.parametrize("iou", [0.3, 0.7])
def test_nms_cuda_equals_cpu(torch, torchvision, cuda, seed, iou):
    gen = torch.Generator().manual_seed(seed)
    boxes = _boxes(torch, gen, 2000)
    scores = torch.randperm(2000, generator=gen).float()  # distinct scores: the kept set has one answer
    want = torchvision.ops.nms(boxes, scores, iou)
    got = torchvision.ops.nms(boxes.to(cuda), scores.to(cuda), iou).cpu()
    assert want.numel() > 10, "inputs too sparse to test anything"
    assert torch.equal(got, want), f"seed {seed}: nms kept {got.numel()} boxes on CUDA, {want.numel()} on CPU"


@pytest.mark.gpu
@pytest.mark.parametrize("aligned,sampling_ratio", [(False, 2), (True, -1)])
def test_roi_align_cuda_equals_cpu(torch, torchvision, cuda, seed, aligned, sampling_ratio):
    gen = torch.Generator().manual_seed(seed)
    features = torch.randn(2, 8, 32, 40, generator=gen)
    boxes = _boxes(torch, gen, 64) * 0.3
    rois = torch.cat([torch.randint(0, 2, (64, 1), generator=gen).float(), boxes], dim=1)
    args = dict(output_size=(7, 7), spatial_scale=1.0, sampling_ratio=sampling_ratio, aligned=aligned)
    want = torchvision.ops.roi_align(features, rois, **args)
    got = torchvision.ops.roi_align(features.to(cuda), rois.to(cuda), **args).cpu()
    # Same bilinear samples summed in the same order per bin; fp32 rounding of the weights only.
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5, msg=lambda m: f"seed {seed}: {m}")

"""Post-build suite: runs inside a fresh venv into which the wheel under test is installed.

``wheelforge.verify.suite`` copies this folder's files into a scratch directory and runs pytest
there with the target passed as environment variables (or the matching options):

==============================  ==========================  ==========================
variable                        option                      example
==============================  ==========================  ==========================
WHEELFORGE_WHEEL                ``--wheel``                 path of the wheel file
WHEELFORGE_ARCHS                ``--archs``                 ``9.0;12.0``
WHEELFORGE_CUDA                 ``--cuda``                  ``12.8``
WHEELFORGE_LOCAL_LABEL          ``--local-label``           ``cu128.sm90.sm120``
WHEELFORGE_ALLOW_ARCH_MISMATCH  ``--allow-arch-mismatch``   ``1``
WHEELFORGE_AUDIT_JSON           (set by verify)             static audit result
WHEELFORGE_SESSION_INFO         (set by verify)             where to write the GPU seen
==============================  ==========================  ==========================

Nothing here imports wheelforge: the venv holds only the wheel, its dependencies and the
test tools.  Without a target (no wheel and no archs) every test is skipped, so the
repository-wide ``pytest`` run passes over this folder.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from postbuild_support import import_or_fail

_ARCH = re.compile(r"^(?:sm_|compute_)?(?:(\d{1,2})\.(\d)|(\d{2,3}))([af]?)(?:\+ptx)?$", re.IGNORECASE)


def parse_arch(token: str) -> tuple[int, int, str]:
    """``12.0`` / ``120`` / ``sm_120a`` / ``12.0+PTX`` -> (12, 0, "a")."""
    m = _ARCH.match(token.strip())
    if not m:
        raise pytest.UsageError(f"cannot read CUDA architecture {token!r}; write it as 12.0, 120 or sm_120")
    if m[3]:
        return int(m[3][:-1]), int(m[3][-1]), m[4].lower()
    return int(m[1]), int(m[2]), m[4].lower()


def sm_name(arch: tuple[int, int, str]) -> str:
    return f"sm_{arch[0]}{arch[1]}{arch[2]}"


def gpu_covered(cap: tuple[int, int], archs: list[tuple[int, int, str]]) -> bool:
    """CUDA's binary compatibility rule: SASS for X.y runs on X.z when z >= y (same major).

    ``a`` targets run only on their exact capability; ``f`` targets on the whole family.
    """
    for major, minor, suffix in archs:
        if major != cap[0]:
            continue
        if suffix == "a" and minor == cap[1]:
            return True
        if suffix != "a" and minor <= cap[1]:
            return True
    return False


@dataclass(frozen=True)
class Target:
    wheel: Path | None
    archs: list[tuple[int, int, str]]
    cuda: str | None
    local_label: str | None
    allow_arch_mismatch: bool
    audit_json: Path | None

    @property
    def sm_archs(self) -> list[str]:
        return [sm_name(a) for a in self.archs]

    def covers(self, capability: tuple[int, int]) -> bool:
        return gpu_covered(capability, self.archs)


@dataclass(frozen=True)
class Gpu:
    name: str
    capability: tuple[int, int]

    @property
    def sm(self) -> str:
        return f"sm_{self.capability[0]}{self.capability[1]}"

    def to_json(self) -> dict:
        return {"name": self.name, "capability": f"{self.capability[0]}.{self.capability[1]}"}


# --------------------------------------------------------------------------- GPU detection


def _gpu_from_driver() -> tuple[Gpu | None, str]:
    """Ask libcuda directly: needs no torch, so llama-cpp and static runs can use it too."""
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return None, "no CUDA driver (libcuda.so.1 cannot be loaded)"
    rc = cuda.cuInit(0)
    if rc != 0:
        # 100 = CUDA_ERROR_NO_DEVICE; other codes are driver/device faults worth naming.
        what = "no CUDA device" if rc == 100 else f"cuInit failed with CUresult {rc}"
        return None, f"{what} (CUDA driver present)"
    count = ctypes.c_int(0)
    if cuda.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value == 0:
        return None, "no CUDA device (cuDeviceGetCount = 0)"
    dev = ctypes.c_int(0)
    cuda.cuDeviceGet(ctypes.byref(dev), 0)
    major, minor = ctypes.c_int(0), ctypes.c_int(0)
    # 75 / 76 = CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR / _MINOR
    cuda.cuDeviceGetAttribute(ctypes.byref(major), 75, dev)
    cuda.cuDeviceGetAttribute(ctypes.byref(minor), 76, dev)
    name = ctypes.create_string_buffer(256)
    cuda.cuDeviceGetName(name, 256, dev)
    return Gpu(name.value.decode(errors="replace"), (major.value, minor.value)), ""


def _gpu_from_nvidia_smi() -> tuple[Gpu | None, str]:
    exe = shutil.which("nvidia-smi")
    if not exe:
        return None, "nvidia-smi not found"
    try:
        out = subprocess.run(
            [exe, "--query-gpu=name,compute_cap", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=60, env=dict(os.environ),
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"nvidia-smi failed: {exc}"
    line = out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else ""
    m = re.match(r"^(.*),\s*(\d+)\.(\d+)$", line)
    if not m:
        return None, f"nvidia-smi found no GPU (exit {out.returncode})"
    return Gpu(m[1].strip(), (int(m[2]), int(m[3]))), ""


def detect_gpu() -> tuple[Gpu | None, str]:
    """The first GPU, or None and the reason there is none."""
    gpu, why = _gpu_from_driver()
    if gpu is None and "libcuda" in why:
        smi, why_smi = _gpu_from_nvidia_smi()
        if smi is not None:
            return smi, ""
        why = f"{why}; {why_smi}"
    return gpu, why


# --------------------------------------------------------------------------- pytest hooks


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("wheelforge", "wheelforge post-build target")
    g.addoption("--wheel", default=os.environ.get("WHEELFORGE_WHEEL"), help="wheel under test (WHEELFORGE_WHEEL)")
    g.addoption("--archs", default=os.environ.get("WHEELFORGE_ARCHS"), help="requested archs, e.g. '9.0;12.0' (WHEELFORGE_ARCHS)")
    g.addoption("--cuda", default=os.environ.get("WHEELFORGE_CUDA"), help="target CUDA major.minor (WHEELFORGE_CUDA)")
    g.addoption("--local-label", default=os.environ.get("WHEELFORGE_LOCAL_LABEL"), help="expected local version label")
    g.addoption(
        "--allow-arch-mismatch", action="store_true",
        default=os.environ.get("WHEELFORGE_ALLOW_ARCH_MISMATCH", "") not in ("", "0"),
        help="run even when the GPU is not covered by the wheel's archs",
    )


def _target(config: pytest.Config) -> Target | None:
    wheel, archs = config.getoption("--wheel"), config.getoption("--archs")
    if not wheel and not archs:
        return None
    audit = os.environ.get("WHEELFORGE_AUDIT_JSON")
    return Target(
        wheel=Path(wheel) if wheel else None,
        archs=[parse_arch(t) for t in re.split(r"[;,\s]+", archs or "") if t],
        cuda=config.getoption("--cuda") or None,
        local_label=config.getoption("--local-label") or None,
        allow_arch_mismatch=bool(config.getoption("--allow-arch-mismatch")),
        audit_json=Path(audit) if audit else None,
    )


def _write_session_info(data: dict) -> None:
    path = os.environ.get("WHEELFORGE_SESSION_INFO")
    if path:
        tmp = f"{path}.tmp"
        Path(tmp).write_text(json.dumps(data, indent=2))
        os.replace(tmp, path)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "gpu: needs a CUDA GPU; skipped without one")
    config.addinivalue_line("markers", "postbuild: checks built wheels")
    target = _target(config)
    gpu, why = detect_gpu() if target else (None, "")
    config.stash[_TARGET] = target
    config.stash[_GPU] = (gpu, why)


def mismatch_line(gpu: Gpu | None, target: Target) -> str | None:
    """The one line the session stops with when the GPU cannot run this wheel's SASS."""
    if gpu is None or not target.archs or target.covers(gpu.capability) or target.allow_arch_mismatch:
        return None
    return f"GPU {gpu.sm} is not covered by this wheel: {', '.join(target.sm_archs)}"


def pytest_sessionstart(session: pytest.Session) -> None:
    target = session.config.stash[_TARGET]
    if target is None:
        return
    gpu, why = session.config.stash[_GPU]
    info = {"gpu": gpu.to_json() if gpu else None, "gpu_reason": why, "exit": None}
    line = mismatch_line(gpu, target)
    if line:
        info["exit"] = line
        _write_session_info(info)
        # One line, non-zero exit: running kernels would only fail with "no kernel image".
        pytest.exit(line, returncode=1)
    _write_session_info(info)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # This hook sees the whole session's items: touch only the post-build suite's own.
    here = Path(__file__).resolve().parent
    items = [i for i in items if Path(str(i.path)).resolve().parent == here]
    target = config.stash[_TARGET]
    if target is None:
        skip = pytest.mark.skip(reason="no post-build target: run `invoke verify` or set WHEELFORGE_WHEEL / WHEELFORGE_ARCHS")
        for item in items:
            item.add_marker(skip)
        return
    gpu, why = config.stash[_GPU]
    if gpu is None:
        skip = pytest.mark.skip(reason=f"needs a CUDA GPU: {why}")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


_TARGET = pytest.StashKey[Target | None]()
_GPU = pytest.StashKey[tuple[Gpu | None, str]]()


@pytest.fixture(scope="session")
def target(pytestconfig: pytest.Config) -> Target:
    return pytestconfig.stash[_TARGET]


@pytest.fixture(scope="session")
def gpu(pytestconfig: pytest.Config) -> Gpu:
    """The GPU (tests using this are marked ``gpu``, so they never run without one)."""
    found, why = pytestconfig.stash[_GPU]
    if found is None:
        pytest.skip(f"needs a CUDA GPU: {why}")
    return found


@pytest.fixture()
def seed() -> int:
    """Fresh inputs every run; the seed is shown in failures so a run can be replayed."""
    return int.from_bytes(os.urandom(4), "little")


@pytest.fixture(scope="module")
def torch():
    """The venv's torch (the wheel under test, or the one the extensions were built against): a failure, not a skip, when it does not import."""
    return import_or_fail("torch")


@pytest.fixture()
def cuda(torch, gpu):
    """CUDA device 0; a skip when torch cannot reach the GPU (test_torch and test_flash_attn ask for their own)."""
    if not torch.cuda.is_available():
        pytest.skip(f"torch.cuda.is_available() is False although {gpu.name} is present")
    return torch.device("cuda", 0)

"""--no-isolation reads a build dependency from the target interpreter: in-process when the target is the
running interpreter, through that interpreter otherwise; both routes give the same answer."""

import importlib
import os
import sys
from pathlib import Path

import pytest

from wheelforge.build.deps import installed_dependency
from wheelforge.model.errors import PlanError

pytestmark = pytest.mark.integration


@pytest.fixture
def fake_torch(tmp_path, monkeypatch):
    """A torch distribution on the path (metadata and torch/version.py only: nothing imports it)."""
    site = tmp_path / "site"
    (site / "torch").mkdir(parents=True)
    (site / "torch" / "version.py").write_text("__version__ = '2.11.0+cu130'\ncuda: Optional[str] = '13.0'\n")
    info = site / "torch-2.11.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: torch\nVersion: 2.11.0\n")
    (info / "RECORD").write_text("")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])))
    importlib.invalidate_caches()
    return site


@pytest.fixture
def other_interpreter(tmp_path):
    """The running interpreter under another path: installed_dependency must ask it in a process of its own."""
    link = tmp_path / "bin" / Path(sys.executable).name
    link.parent.mkdir()
    link.symlink_to(sys.executable)
    return str(link)


def test_both_routes_read_torch_version_and_cuda(fake_torch, other_interpreter):
    echoed = []
    here = installed_dependency("torch", sys.executable, echo=echoed.append)
    assert not echoed  # no process started
    there = installed_dependency("torch", other_interpreter, echo=echoed.append)
    assert echoed and other_interpreter in echoed[0]
    assert here == there
    assert (here.version, here.cuda_version, here.identity) == ("2.11.0", "13.0", "installed:torch==2.11.0")


@pytest.mark.parametrize("route", ["here", "there"])
def test_missing_dependency_names_interpreter_and_fix(route, other_interpreter):
    python = sys.executable if route == "here" else other_interpreter
    with pytest.raises(PlanError) as err:
        installed_dependency("no-such-dist-wf", python, echo=lambda _: None)
    assert err.value.id == "plan.no-isolation-missing" and python in str(err.value)

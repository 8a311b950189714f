"""What `invoke build` prints when its output is a log (CI, a pipe): one line per step in the plan's order,
each result once, no commands unless -v."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
STEP = re.compile(r"^\[(\d+)/(\d+) ([\w-]+)\] demo-cuda 0\.1\.0\+cu\d+\.sm120$")
TABLE = tuple("│┃┏┗┡└┌├╭╰━─")


def invoke(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=REPO, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def runs(demo_cuda):
    """The session's first build of demo-cuda for 12.0 (tests/conftest.py), then the same command again."""
    first = demo_cuda.run("12.0")
    again = subprocess.run(demo_cuda.argv("12.0"), cwd=REPO, capture_output=True, text=True, timeout=900)
    plan = json.loads(invoke("plan", "demo-cuda", "--cuda", "13.0", "--arch", "12.0", "--json").stdout)
    return first, again, [s["name"] for s in plan["steps"]]


def test_one_line_per_step_in_the_plans_order(runs):
    first, _, steps = runs
    seen = [m.groups() for m in map(STEP.match, first.stderr.splitlines()) if m]
    assert [name for _, _, name in seen] == steps
    assert [int(i) for i, _, _ in seen] == list(range(1, len(steps) + 1))
    assert {int(total) for _, total, _ in seen} == {len(steps)}


def test_each_line_once_and_no_commands_without_verbose(runs):
    first, _, _ = runs
    lines = [line.strip() for line in (first.stdout + first.stderr).splitlines() if line.strip() and not line.lstrip().startswith(TABLE)]
    repeated = {line for line in lines if lines.count(line) > 1}
    assert not repeated, repeated
    assert sum(" built /" in line for line in lines) == 1
    assert sum(line.startswith("compiler cache:") for line in lines) <= 1
    assert sum(line.startswith("PASSED") for line in lines) == 1
    assert not [line for line in lines if line.startswith("$ ") or "/scratch/" in line]


def test_up_to_date_is_said_once_with_the_verify_result(runs):
    _, again, _ = runs
    assert again.returncode == 0, again.stderr
    lines = [line for line in (again.stdout + again.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and re.match(r"^demo-cuda: up to date -> /.*\.whl; verified \(.+\)$", lines[0]), lines

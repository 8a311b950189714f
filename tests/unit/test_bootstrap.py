"""The README's two commands, CI's script and the bootstrap agree, and Python packages go into .venv only."""

import re
import shlex
from pathlib import Path

from readme_support import readme_commands

REPO = Path(__file__).resolve().parents[2]


def test_readme_has_the_two_commands_each_starting_with_the_bootstrap():
    build, tests = readme_commands()
    assert build.startswith("bash scripts/bootstrap.sh && ") and "\n" not in build
    assert tests.startswith("bash scripts/bootstrap.sh --test && ") and "\n" not in tests
    assert "invoke build demo-cuda" in build


def test_ci_runs_exactly_the_readme_test_command():
    script = (REPO / ".ci/run").read_text(encoding="utf-8")
    commands = [line for line in script.splitlines() if line.strip() and not line.startswith(("#", "set ", "cd "))]
    assert commands == [readme_commands()[1]]


def test_readme_commands_run_python_from_the_project_venv():
    for command in readme_commands():
        for part in command.split("&&")[1:]:
            program = shlex.split(part)[0]
            assert program.startswith(".venv/bin/"), part
        assert "python3 -m" not in command and "pip install" not in command


def test_bootstrap_runs_pip_only_inside_the_venv():
    script = (REPO / "scripts/bootstrap.sh").read_text(encoding="utf-8")
    code = [line.split("#", 1)[0] for line in script.splitlines()]
    pip_lines = [line.strip() for line in code if re.search(r"\bpip\b", line)]
    assert pip_lines, "bootstrap installs wheelforge with pip"
    assert all(line.startswith('"$venv/bin/python" -m pip ') for line in pip_lines), pip_lines
    assert 'venv=.venv' in script and 'python3 -m venv "$venv"' in script
    assert not re.search(r"\bsudo\b.*\bpip\b|python3 -m pip", "\n".join(code))

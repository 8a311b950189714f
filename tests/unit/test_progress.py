"""ninja [n/m] lines and phase names drive the progress state."""

from __future__ import annotations

import io

from wheelforge.build.progress import StepTracker, parse_step
from wheelforge.cli.render import ConsoleReporter


def test_parse_step() -> None:
    assert parse_step("[3/120] Building CUDA object foo.o") == (3, 120)
    assert parse_step("  [12/12] Linking CXX shared library libx.so") == (12, 12)
    assert parse_step("[0/0] nothing") is None
    assert parse_step("[5/3] nonsense") is None
    assert parse_step("-- Configuring done") is None
    assert parse_step("x [1/2] not at line start") is None


def test_tracker_moves_through_phases() -> None:
    t = StepTracker()
    assert t.phase == "env"
    t.feed("  *** Configuring CMake...")
    assert t.phase == "configure"
    t.feed("[1/4] Building CUDA object a.o")
    assert (t.phase, t.done, t.total) == ("compile", 1, 4)
    t.feed("[4/4] Linking")
    assert (t.done, t.total) == (4, 4)
    t.feed("  *** Making wheel...")
    assert t.phase == "package"


def test_second_ninja_run_replaces_counts() -> None:
    t = StepTracker()
    t.feed("[2/2] try-compile")
    t.feed("[1/300] real build")
    assert (t.done, t.total) == (1, 300)


def test_non_terminal_prints_one_line_per_phase() -> None:
    from rich.console import Console

    buf = io.StringIO()
    bar = ConsoleReporter(Console(file=buf, force_terminal=False))
    bar.step("demo 1.0", "fetch", 1, 3)
    bar.step("demo 1.0", "compile", 2, 3)
    bar.progress(1, 3)
    bar.progress(2, 3)
    bar.log("$ a command shown only with -v")
    bar.step("demo 1.0", "package", 3, 3)
    bar.finish()
    lines = buf.getvalue().splitlines()
    assert lines == ["[1/3 fetch] demo 1.0", "[2/3 compile] demo 1.0", "[3/3 package] demo 1.0"]


def test_verbose_shows_commands_and_notes_once() -> None:
    from rich.console import Console

    buf = io.StringIO()
    rep = ConsoleReporter(Console(file=buf, force_terminal=False), verbose=True)
    rep.step("demo 1.0", "compile", 1, 1)
    rep.log("$ nvcc -c a.cu")
    rep.note("demo: built x.whl")
    rep.finish()
    assert buf.getvalue().splitlines() == ["[1/1 compile] demo 1.0", "$ nvcc -c a.cu", "demo: built x.whl"]


def test_terminal_bar_moves_forward_only() -> None:
    """On a terminal the bar's step text is what each step set, in the plan's order, never an earlier one."""
    from rich.console import Console

    buf = io.StringIO()
    rep = ConsoleReporter(Console(file=buf, force_terminal=True, width=120))
    shown = []
    for i, name in enumerate(["fetch", "patch", "env", "compile", "store"], 1):
        rep.step("demo 1.0", name, i, 5)
        if name == "compile":
            for done in (1, 2):
                rep.progress(done, 2)
        shown.append(rep._bar.tasks[0].fields["step"])
    rep.finish()
    assert shown == ["1/5 fetch", "2/5 patch", "3/5 env", "4/5 compile", "5/5 store"]

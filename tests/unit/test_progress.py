"""ninja [n/m] lines and phase names drive the progress state."""

from __future__ import annotations

import io

from wheelforge.build.progress import StepTracker, format_eta, parse_step
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



class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_eta_from_the_rate_of_finished_steps_since_the_compile_started() -> None:
    clock = FakeClock()
    t = StepTracker(clock=clock)
    t.set_phase("configure")  # the executor starts the compile command
    assert t.eta() is None  # nothing finished yet
    clock.now += 200  # piped ninja prints [n/m] when a step finishes: the first line comes late
    t.feed("[1/73] nvcc flash_bwd_hdim32_fp16_sm80.cu")
    t.feed("[2/73] nvcc flash_bwd_hdim32_bf16_sm80.cu")
    assert (t.done, t.total) == (2, 73)
    # 2 steps in 200 s: 100 s each, 71 left
    assert t.eta() == 7100.0
    clock.now += 100  # no new step yet: the estimate counts down with the clock
    assert t.eta() == 7000.0
    clock.now += 7500  # overdue: never negative
    assert t.eta() == 0.0


def test_eta_rate_speeds_up_with_more_parallel_finishes() -> None:
    clock = FakeClock()
    t = StepTracker(clock=clock)
    t.set_phase("configure")
    clock.now += 300
    for i in range(1, 17):  # 16 jobs finishing together after 300 s
        t.feed(f"[{i}/73] nvcc kernel{i}.cu")
    assert t.eta() == (73 - 16) * 300 / 16


def test_eta_restarts_with_a_new_ninja_run() -> None:
    clock = FakeClock()
    t = StepTracker(clock=clock)
    t.feed("  *** Configuring CMake...")
    clock.now += 5
    t.feed("[2/2] try-compile")
    assert t.eta() == 0.0
    clock.now += 30  # configure goes on; then the real build prints its first step
    t.feed("[1/300] real build")
    assert t.eta() is None  # this run's origin is its first line: no rate yet
    clock.now += 10
    t.feed("[11/300] real build")
    assert t.eta() == 289.0  # 10 steps in 10 s, 289 left


def test_eta_unknown_without_steps_and_after_a_phase_change() -> None:
    clock = FakeClock()
    t = StepTracker(clock=clock)
    assert t.eta() is None
    t.set_phase("configure")
    clock.now += 10
    t.feed("[5/10] x")
    assert t.eta() == 10.0
    t.set_phase("package")
    assert t.eta() is None


def test_format_eta() -> None:
    assert format_eta(None) == "-"
    assert format_eta(45.4) == "45s"
    assert format_eta(570) == "9m30s"
    assert format_eta(3720) == "1h02m"


def test_non_terminal_prints_a_line_per_tenth_of_a_long_build() -> None:
    from rich.console import Console

    buf = io.StringIO()
    bar = ConsoleReporter(Console(file=buf, force_terminal=False, width=200))
    clock = FakeClock()
    tracker = StepTracker(clock=clock)
    bar.step("flash-attn 2.8.3.post2", "compile", 1, 2)
    tracker.set_phase("configure")
    for i in range(1, 74):
        clock.now += 10
        if tracker.feed(f"[{i}/73] nvcc k{i}.cu"):
            bar.progress(tracker.done, tracker.total, eta=tracker.eta())
    bar.step("flash-attn 2.8.3.post2", "package", 2, 2)
    bar.finish()
    lines = buf.getvalue().splitlines()
    progress = [ln for ln in lines if ln.startswith("[compile] flash-attn 2.8.3.post2: ")]
    assert len(progress) == 11  # 0/10 .. 10/10
    assert progress[0] == "[compile] flash-attn 2.8.3.post2: 1/73, ETA 12m00s"
    assert progress[-1] == "[compile] flash-attn 2.8.3.post2: 73/73, ETA 0s"
    assert lines[0] == "[1/2 compile] flash-attn 2.8.3.post2" and lines[-1] == "[2/2 package] flash-attn 2.8.3.post2"

"""Everything wheelforge draws for people: progress, tables, verdicts (rich lives here only).

The library hands over data and events (:class:`~wheelforge.model.report.Reporter`); this
module turns them into a terminal's live bar, or into one plain line per step when the
output is a log, with commands and tool output shown only in verbose mode.
"""

from __future__ import annotations

import io
import os
import time
from typing import TYPE_CHECKING, Any

from wheelforge.model.report import Reporter

if TYPE_CHECKING:  # imported where drawn: a no-op build draws neither
    from wheelforge.binaries.audit import AuditReport
    from wheelforge.verify.suite import VerifyReport


def console(stderr: bool = True) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


class ConsoleReporter(Reporter):
    """One line per step and a progress bar (terminal), or one plain line per step (logs, CI).

    ``verbose`` also shows each command and its output lines as they come.
    """

    def __init__(self, out: Any = None, *, verbose: bool = False) -> None:
        self._out = out
        self.verbose = verbose
        self._bar: Any = None
        self._task: Any = None
        self._label = ""
        self._step = ""
        self._started = time.monotonic()
        self._tenth = -1

    @property
    def out(self) -> Any:
        if self._out is None:  # rich is imported when something is drawn, not on a no-op
            self._out = console()
        return self._out

    @property
    def live(self) -> bool:
        return bool(getattr(self.out, "is_terminal", False))

    def step(self, label: str, name: str, index: int, total: int) -> None:
        self._label, self._step = label, name
        self._started = time.monotonic()
        self._tenth = -1
        where = f"{index}/{total} {name}"
        if self.live:
            if self._bar is None:
                from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

                # The tracker's ETA, not rich's: rich estimates over its last 30 s, and one flash-attn kernel
                # file takes minutes, so its estimate would mostly read "-:--:--".
                self._bar = Progress(SpinnerColumn(), TextColumn("[bold]{task.fields[step]:<16}"), TextColumn(label), BarColumn(),
                                     MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("ETA {task.fields[eta]}"),
                                     console=self.out, transient=True)
                self._bar.start()
                self._task = self._bar.add_task(label, total=None, step=where, eta="-")
            self._bar.update(self._task, step=where, completed=0, total=None, eta="-")
        else:
            self.out.print(f"[{where}] {label}", markup=False, highlight=False)

    def progress(self, done: int, total: int, *, unit: str = "steps", eta: float | None = None) -> None:
        from wheelforge.build.progress import format_eta

        if self._bar is not None:
            self._bar.update(self._task, completed=done, total=total or None, eta=format_eta(eta))
        elif total >= 20 and done * 10 // total != self._tenth:
            # a log gets one line per tenth of a long build, with the ETA: readable, and it shows life
            self._tenth = done * 10 // total
            self.out.print(f"[{self._step}] {self._label}: {done}/{total}, ETA {format_eta(eta)}", markup=False, highlight=False)

    def log(self, line: str) -> None:
        if self.verbose:
            self.out.print(line, markup=False, highlight=False)

    def note(self, line: str) -> None:
        self.out.print(line, markup=False, highlight=False)

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def audit_table(report: AuditReport, width: int = 120) -> str:
    from wheelforge.binaries.audit import count_by_arch

    """A rich table of the files, then the verdict, as plain text."""
    from rich.console import Console
    from rich.table import Table

    wanted = ", ".join(f"sm_{a}" for a in report.required_archs) or "(none requested)"
    table = Table(title=f"{os.path.basename(report.target)}: SASS required for {wanted}", title_justify="left")
    for col in ("file", "kind", "SASS", "PTX", "compressed", "status"):
        table.add_column(col, overflow="fold")
    for f in report.files:
        sass = ", ".join(f"{a} x{n}" for a, n in count_by_arch(f.entries, "sass"))
        ptx = ", ".join(f"{a} x{n}" for a, n in count_by_arch(f.entries, "ptx"))
        comp = f"{sum(e.compressed for e in f.entries)}/{len(f.entries)}" if f.entries else "-"
        if f.kind == "host-only":
            status = "host-only"
        elif f.ok:
            status = "ok"
        else:
            parts = [f"{a} PTX only" if a in f.ptx_only else f"no {a}" for a in f.missing]
            status = "FAIL: " + "; ".join(parts)
        table.add_row(f.path, f.kind, sass or "-", ptx or "-", comp, status)
    buf = io.StringIO()
    console = Console(file=buf, width=width, no_color=True, color_system=None, highlight=False)
    console.print(table)
    verdict = "PASS" if report.ok else "FAIL"
    found = ", ".join(report.archs_found) or "none"
    console.print(
        f"{verdict}: {len(report.device_files)} of {len(report.files)} ELF files carry device code; SASS: {found}"
    )
    for msg in report.failures():
        console.print(f"  {msg}")
    return "\n".join(line.rstrip() for line in buf.getvalue().splitlines()) + "\n"


def verify_table(report: VerifyReport, console: Any = None) -> None:
    """A short rich table: one row per test, then the verdict."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = console or Console(stderr=True)
    gpu = f"{report.gpu['name']} (sm_{report.gpu['capability'].replace('.', '')})" if report.gpu else f"none ({report.gpu_reason or 'not run'})"
    table = Table(title=f"verify {report.wheel}", caption=f"archs requested {', '.join(report.archs_requested)}; SASS found {', '.join(report.archs_found) or 'none'}; GPU {gpu}")
    table.add_column("test", no_wrap=True)
    table.add_column("result")
    table.add_column("message", overflow="fold", max_width=70)
    audit_msg = "; ".join(report.audit.get("failures", [])[:3]) or ("ok" if report.audit.get("ok") else "")
    table.add_row("static audit", "passed" if report.audit.get("ok") else "failed", escape(audit_msg))
    style = {"passed": "green", "failed": "red", "error": "red", "skipped": "yellow"}
    for t in report.tests:
        message = t.message.splitlines()[0][:200] if t.message else ""
        table.add_row(escape(t.name.rsplit("::", 1)[-1]), f"[{style.get(t.outcome, '')}]{t.outcome}[/]", escape(message))
    console.print(table)
    c = report.counts()
    verdict = "[green]PASSED[/]" if report.ok else f"[red]FAILED[/]: {escape(report.reason)}"
    console.print(f"{verdict}  ({c['passed']} passed, {c['failed'] + c['error']} failed, {c['skipped']} skipped)")
    for note in report.notes:
        console.print(f"note: {escape(note)}", soft_wrap=True)  # one line each, whatever the width

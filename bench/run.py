"""Benchmark runner: measure figures, keep them in ``bench/results.json``, render ``docs/benchmarks.md``.

    .venv/bin/python bench/run.py                      # every figure module under bench/figures/
    .venv/bin/python bench/run.py --local              # only figures that need no GPU machine
    .venv/bin/python bench/run.py --only build_local   # chosen modules (file names, comma-separated)
    .venv/bin/python bench/run.py --only archs_local   # slow modules (SLOW = True: real xformers builds) run only when named
    .venv/bin/python bench/run.py --merge device_rows.json   # fold in rows bench/device.py wrote on the GPU machine
    .venv/bin/python bench/run.py --render             # only regenerate the page and charts from results.json

Each module's ``measure()`` returns rows; the runner stamps each with the machine, the
UTC date and whether its goal is met, replaces older rows of the same (figure, name),
and writes the results atomically with every raw sample kept.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import socket
import sys
import traceback
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results.json"
DOC = REPO / "docs" / "benchmarks.md"
IMG = REPO / "docs" / "img"
FIGURES = REPO / "bench" / "figures"

OPS = {"<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">=": lambda a, b: a >= b, ">": lambda a, b: a > b}
ROW_KEYS = ("figure", "name", "value", "unit", "goal")


# --------------------------------------------------------------------------- pure logic


def goal_met(value: float | None, goal: Mapping[str, Any] | None) -> bool | None:
    """True/False against ``{"op": "<", "value": 0.5}``; None when there is no value or goal."""
    if value is None or not goal or goal.get("op") not in OPS or goal.get("value") is None:
        return None
    return bool(OPS[goal["op"]](float(value), float(goal["value"])))


def check_row(row: Mapping[str, Any]) -> None:
    missing = [k for k in ROW_KEYS if k not in row]
    if missing:
        raise ValueError(f"benchmark row {row.get('name', row)!r} lacks {', '.join(missing)}; "
                         "measure() must return rows with figure, name, value, unit, goal")
    if row["goal"] and row["goal"].get("op") not in OPS:
        raise ValueError(f"benchmark row {row['name']!r} has goal op {row['goal'].get('op')!r}; use one of {' '.join(OPS)}")


def utc_now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def _cpu_model(cpuinfo: str) -> str:
    for line in cpuinfo.splitlines():
        if line.lower().startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _ram_gib(meminfo: str) -> float | None:
    for line in meminfo.splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 1024**2, 1)
    return None


def machine_info(*, cpuinfo: str | None = None, meminfo: str | None = None, gpu: str | None = None) -> dict[str, Any]:
    """This machine: hostname, cores, RAM, CPU model, GPU (None without ``nvidia-smi``)."""
    def read(path: str) -> str:
        try:
            return Path(path).read_text()
        except OSError:
            return ""

    cpuinfo = read("/proc/cpuinfo") if cpuinfo is None else cpuinfo
    meminfo = read("/proc/meminfo") if meminfo is None else meminfo
    if gpu is None:
        gpu = _gpu_name()
    cores = os.cpu_count() or 1
    ram = _ram_gib(meminfo)
    label = f"{socket.gethostname()} ({cores} cores, {ram:g} GiB{', ' + gpu if gpu else ', no GPU'})" if ram else socket.gethostname()
    return {"name": label, "hostname": socket.gethostname(), "cores": cores, "ram_gib": ram, "cpu": _cpu_model(cpuinfo),
            "gpu": gpu or None, "gpu_machine": False}


def _gpu_name() -> str | None:
    import shutil
    import subprocess

    smi = shutil.which("nvidia-smi")
    if not smi:
        return None
    try:
        out = subprocess.run([smi, "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=20,
                             env=dict(os.environ), check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    names = [n.strip() for n in out.stdout.splitlines() if n.strip()]
    return ", ".join(names) or None


def stamp(rows: Iterable[Mapping[str, Any]], machine: Mapping[str, Any], date: str) -> list[dict[str, Any]]:
    """Add machine, date and met to each row (a row that carries its own machine/date keeps them)."""
    out = []
    for row in rows:
        check_row(row)
        r = {"samples": [], "baseline": None, "extra": {}, "command": "", **dict(row)}
        r.setdefault("machine", dict(machine))
        if not r.get("machine"):
            r["machine"] = dict(machine)
        r["date"] = r.get("date") or date
        r["met"] = goal_met(r["value"], r["goal"])
        out.append(r)
    return out


def row_key(row: Mapping[str, Any]) -> tuple[str, str]:
    """A row's identity when merging: its series where it names one (figure 5's name carries the arch
    list it was compared with, and a run with a longer list supersedes it), else its name."""
    return (str(row["figure"]), str(row.get("series") or row["name"]))


def merge_rows(old: Sequence[Mapping[str, Any]], new: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows of ``new`` replace rows of ``old`` with the same key (:func:`row_key`) unless the old one is newer."""
    merged: dict[tuple[str, str], dict[str, Any]] = {row_key(r): dict(r) for r in old}
    for r in new:
        k = row_key(r)
        if k in merged and str(merged[k].get("date", "")) > str(r.get("date", "")):
            continue  # a newer measurement is kept until a newer run replaces it
        merged[k] = dict(r)
    return sorted(merged.values(), key=_sort_key)


def _sort_key(row: Mapping[str, Any]) -> tuple[Any, ...]:
    fig = str(row["figure"])
    return (int(fig) if fig.isdigit() else 99, fig, str(row["name"]))


def device_rows(data: Any) -> list[dict[str, Any]]:
    """Rows from a ``bench/device.py`` output file, marked as GPU-machine rows."""
    rows = data.get("rows", data) if isinstance(data, dict) else data
    if not isinstance(rows, list):
        raise ValueError("the merge file holds no list of rows (expected bench/device.py's device_rows.json)")
    out = []
    for r in rows:
        check_row(r)
        if not r.get("date"):
            raise ValueError(f"device row {r['name']!r} has no date; rows to merge must carry the date they were measured")
        m = r.get("machine") or {}
        if isinstance(m, str):
            m = {"name": m}
        r = {**r, "machine": {**m, "gpu_machine": True}}
        out.append(r)
    return out


# --------------------------------------------------------------------------- rendering


def fmt_value(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    v = float(value)
    if unit == "%":
        return f"{v:.2f} %"
    if unit == "bytes":
        return f"{v / 1e6:.1f} MB"
    if abs(v) >= 100:
        text = f"{v:.0f}"
    elif abs(v) >= 1:
        text = f"{v:.2f}"
    else:
        text = f"{v:.3f}"
    return f"{text} {unit}".strip()


def fmt_goal(goal: Mapping[str, Any] | None, unit: str) -> str:
    if not goal:
        return "-"
    return f"{goal['op']} {fmt_value(goal['value'], unit)}"


def fmt_met(met: bool | None) -> str:
    return {True: "yes", False: "**no**", None: "-"}[met]


def fmt_comparison(row: Mapping[str, Any]) -> str:
    b = row.get("baseline")
    if not b:
        return "-"
    unit = b.get("unit") or row.get("extra", {}).get("baseline_unit") or ""
    text = f"{b.get('name', 'baseline')}: {fmt_value(b.get('value'), unit)}"
    if b.get("samples"):
        text += f" (n={len(b['samples'])})"
    return text


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(rows: Sequence[Mapping[str, Any]], charts: Sequence[tuple[str, str]] = (), *, generated: str = "") -> str:
    """The benchmark page: one table (figure, value, goal, met?, comparison, machine, date, command), notes, charts."""
    lines = [
        "# Benchmarks",
        "",
        "Generated by `.venv/bin/python bench/run.py` (the project venv: the figures import wheelforge) from `bench/results.json` (raw samples are kept there); do not edit by hand.",
        "Figures are medians of the samples listed in results.json; the comparison is measured in the same run.",
        "Rows from the GPU machine come from `bench/device.py` and are folded in with `--merge`; they keep the date of that run.",
        "",
    ]
    if generated:
        lines += [f"Last generated: {generated}", ""]
    lines += ["| Figure | What | Value | Goal | Met? | Comparison | Machine | Date | Command |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        m = r.get("machine") or {}
        machine = m.get("name", "?") if isinstance(m, dict) else str(m)
        n = len(r.get("samples") or [])
        value = fmt_value(r.get("value"), r.get("unit", "")) + (f" (n={n})" if n > 1 else "")
        cmd = f"`{r['command']}`" if r.get("command") else "-"
        lines.append("| " + " | ".join(_cell(c) for c in (
            r["figure"], r["name"], value, fmt_goal(r.get("goal"), r.get("unit", "")), fmt_met(r.get("met")),
            fmt_comparison(r), machine, str(r.get("date", ""))[:10], cmd)) + " |")
    notes = [(r, r.get("extra", {}).get("note")) for r in rows]
    notes = [(r, n) for r, n in notes if n]
    if notes:
        lines += ["", "## Notes", ""]
        lines += [f"- Figure {r['figure']}, {r['name']}: {n}" for r, n in notes]
    met = [r for r in rows if r.get("met") is True]
    missed = [r for r in rows if r.get("met") is False]
    lines += ["", f"Goals met: {len(met)} of {len(met) + len(missed)} rows with a goal."]
    if charts:
        lines += ["", "## Charts", ""]
        for title, rel in charts:
            lines += [f"### {title}", "", f"![{title}]({rel})", ""]
    return "\n".join(lines).rstrip() + "\n"


# --------------------------------------------------------------------------- files


def atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_results(path: Path = RESULTS) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {"rows": [], "runs": []}
    except ValueError as exc:
        raise SystemExit(f"error: {path} is not valid JSON ({exc})\n  hint: restore it with git checkout {path}") from None
    data.setdefault("rows", [])
    data.setdefault("runs", [])
    return data


def save_results(data: Mapping[str, Any], path: Path = RESULTS) -> None:
    atomic_write(path, json.dumps(data, indent=1, sort_keys=True) + "\n")


def figure_modules(only: Sequence[str] = ()) -> list[str]:
    names = sorted(p.stem for p in FIGURES.glob("*.py") if not p.name.startswith("_"))
    if only:
        unknown = sorted(set(only) - set(names))
        if unknown:
            raise SystemExit(f"error: no figure module {', '.join(unknown)} in {FIGURES}\n  hint: known: {', '.join(names)}")
        names = [n for n in names if n in only]
    return names


def import_figure(name: str):
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    return importlib.import_module(f"bench.figures.{name}")


def regenerate(data: Mapping[str, Any], *, doc: Path = DOC, img: Path = IMG) -> list[tuple[str, str]]:
    charts: list[tuple[str, str]] = []
    try:
        from bench import charts as charts_mod
    except ImportError:  # bench run as a script without the repo on sys.path
        sys.path.insert(0, str(REPO))
        from bench import charts as charts_mod
    try:
        charts = charts_mod.make_charts(data["rows"], img, rel_to=doc.parent)
    except ImportError as exc:
        print(f"warning: charts skipped ({exc}); pip install 'matplotlib>=3.8'", file=sys.stderr)
    atomic_write(doc, render_markdown(data["rows"], charts, generated=utc_now()))
    return charts


def report(rows: Sequence[Mapping[str, Any]], stream=None) -> None:
    stream = stream or sys.stdout
    for r in rows:
        mark = {True: "MET ", False: "MISS", None: " -- "}[r.get("met")]
        where = "GPU" if (r.get("machine") or {}).get("gpu_machine") else "local"
        print(f"[{mark}] fig {r['figure']:>2} {r['name']}: {fmt_value(r['value'], r['unit'])} "
              f"(goal {fmt_goal(r.get('goal'), r['unit'])}; {where}, {str(r.get('date', ''))[:10]})", file=stream)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default="", help="figure modules to run, comma-separated (e.g. build_local,audit)")
    ap.add_argument("--local", action="store_true", help="only modules with NEEDS_GPU = False")
    ap.add_argument("--merge", action="append", default=[], metavar="FILE.json", help="fold in rows from bench/device.py")
    ap.add_argument("--render", action="store_true", help="measure nothing; regenerate docs/benchmarks.md and charts")
    ap.add_argument("--results", default=str(RESULTS), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    results_path = Path(args.results)

    data = load_results(results_path)
    new: list[dict[str, Any]] = []
    errors: list[str] = []
    date = utc_now()
    for f in args.merge:
        try:
            merged = device_rows(json.loads(Path(f).read_text()))
        except (OSError, ValueError) as exc:
            raise SystemExit(f"error: cannot merge {f}: {exc}\n  hint: pass the device_rows.json bench/device.py wrote under $OUT") from None
        new += stamp(merged, {"name": "GPU machine"}, date)
        print(f"merged {len(merged)} rows from {f}", file=sys.stderr)

    ran: list[str] = []
    if not args.render and (not args.merge or args.only or args.local):
        machine = machine_info()
        only = [n for n in args.only.split(",") if n]
        for name in figure_modules(only):
            mod = import_figure(name)
            if args.local and getattr(mod, "NEEDS_GPU", False):
                print(f"skip {name}: needs the GPU machine (run bench/device.py there, then --merge)", file=sys.stderr)
                continue
            if getattr(mod, "SLOW", False) and name not in only:
                print(f"skip {name}: slow (real package builds); run it with --only {name}", file=sys.stderr)
                continue
            print(f"== {name}", file=sys.stderr, flush=True)
            try:
                rows = mod.measure()
                new += stamp(rows, machine, utc_now())
                ran.append(name)
            except Exception as exc:  # one broken figure must not lose the others
                traceback.print_exc()
                errors.append(f"{name}: {type(exc).__name__}: {exc}")

    data["rows"] = merge_rows(data["rows"], new)
    data["runs"] = (data["runs"] + [{"date": date, "modules": ran, "merged": list(args.merge), "errors": errors}])[-50:]
    save_results(data, results_path)
    if results_path == RESULTS:
        regenerate(data)
    print(f"wrote {results_path} ({len(data['rows'])} rows)", file=sys.stderr)
    report(data["rows"])
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())

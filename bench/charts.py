"""Charts for docs/benchmarks.md, drawn from whatever rows results.json holds.

* ``build-times.png``: cold / warm compiler-cache / no-op build time per package (log scale);
* ``archs.png``: build time and wheel size against the number of archs, per package and way of building.

Rows feed them through ``extra``: ``package`` with ``seconds_cold`` / ``seconds_warm`` /
``seconds_noop``, and ``points`` = [{package, variant, archs, seconds, wheel_bytes}].
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

KINDS = (("seconds_cold", "cold"), ("seconds_warm", "warm cache"), ("seconds_noop", "no-op"))


def build_times(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """package -> {"cold": s, "warm cache": s, "no-op": s}; the newest row wins per value."""
    out: dict[str, dict[str, tuple[str, float]]] = {}
    for r in rows:
        extra = r.get("extra") or {}
        pkg = extra.get("package")
        if not pkg:
            continue
        gpu = (r.get("machine") or {}).get("gpu_machine") if isinstance(r.get("machine"), dict) else False
        label = f"{pkg} {';'.join(extra.get('archs') or [])}".strip() + (" (GPU machine)" if gpu else "")
        if "no-op" in r.get("name", "") and gpu:
            label = f"{pkg} (GPU machine)"
        for key, kind in KINDS:
            if extra.get(key) is None:
                continue
            slot = out.setdefault(label, {})
            date = str(r.get("date", ""))
            if kind not in slot or slot[kind][0] <= date:
                slot[kind] = (date, float(extra[key]))
    return {pkg: {k: v for k, (_, v) in kinds.items()} for pkg, kinds in sorted(out.items())}


def arch_points(rows: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str], list[tuple[int, float, float | None]]]:
    """(package, variant) -> sorted [(number of archs, seconds, wheel bytes)]; newest point per arch list."""
    best: dict[tuple[str, str, str], tuple[str, Mapping[str, Any]]] = {}
    for r in rows:
        date = str(r.get("date", ""))
        for p in (r.get("extra") or {}).get("points") or []:
            k = (p["package"], p["variant"], ";".join(p["archs"]))
            if k not in best or best[k][0] <= date:
                best[k] = (date, p)
    series: dict[tuple[str, str], list[tuple[int, float, float | None]]] = {}
    for (pkg, variant, _), (_, p) in best.items():
        series.setdefault((pkg, variant), []).append((len(p["archs"]), float(p["seconds"]), p.get("wheel_bytes")))
    return {k: sorted(v) for k, v in sorted(series.items())}


def _save(fig: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.png")
    try:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def make_charts(rows: Sequence[Mapping[str, Any]], img_dir: Path, *, rel_to: Path) -> list[tuple[str, str]]:
    """Write the PNGs that have data; returns (title, path relative to ``rel_to``) for the page."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made: list[tuple[str, str]] = []
    times = build_times(rows)
    if times:
        fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(times) + 2), 4))
        width = 0.8 / len(KINDS)
        for i, (_, kind) in enumerate(KINDS):
            xs = [j + i * width for j in range(len(times))]
            ys = [times[p].get(kind, 0.0) for p in times]
            bars = ax.bar(xs, ys, width, label=kind)
            for b, y in zip(bars, ys, strict=True):
                if y:
                    ax.annotate(f"{y:.2g} s", (b.get_x() + b.get_width() / 2, y), ha="center", va="bottom", fontsize=7)
        ax.set_xticks([j + width for j in range(len(times))], list(times), fontsize=8)
        ax.set_yscale("log")
        ax.set_ylabel("wall time, s (log)")
        ax.set_title("Build time: cold, warm compiler cache, no-op")
        ax.legend(fontsize=8)
        path = img_dir / "build-times.png"
        _save(fig, path)
        plt.close(fig)
        made.append(("Cold / warm / no-op build time per package", os.path.relpath(path, rel_to)))

    series = arch_points(rows)
    if series:
        fig, (ax_t, ax_s) = plt.subplots(1, 2, figsize=(11, 4))
        for (pkg, variant), pts in series.items():
            ns = [n for n, _, _ in pts]
            ax_t.plot(ns, [s for _, s, _ in pts], marker="o", label=f"{pkg} ({variant})")
            sized = [(n, b) for n, _, b in pts if b]
            if sized:
                ax_s.plot([n for n, _ in sized], [b / 1e6 for _, b in sized], marker="o", label=f"{pkg} ({variant})")
        for ax, label in ((ax_t, "build time, s"), (ax_s, "wheel size, MB")):
            ax.set_xlabel("number of CUDA archs")
            ax.set_ylabel(label)
            ax.xaxis.get_major_locator().set_params(integer=True)
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7)
        ax_t.set_title("Build time against the number of archs")
        ax_s.set_title("Wheel size against the number of archs")
        path = img_dir / "archs.png"
        _save(fig, path)
        plt.close(fig)
        made.append(("Build time and wheel size against the number of archs", os.path.relpath(path, rel_to)))
    return made

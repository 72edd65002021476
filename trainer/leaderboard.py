"""The leaderboard of a loss comparison: a ranked Markdown/CSV table, validation curves with seed bands, a bar chart.

Each cell's validation metrics come from its ``logs/metrics.csv`` (:func:`trainer.plots.read_metrics`),
taken at the cell's best epoch by the task's monitor. A candidate's row is the mean ± standard
deviation over its finished seeds, with a paired t-test (``scipy.stats.ttest_rel``, seed k against
seed k) against the first candidate, the baseline.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from scipy.stats import ttest_rel  # noqa: E402

from trainer.plots import read_metrics  # noqa: E402


def cell_result(folder: Path, monitor: str, mode: str) -> dict[str, Any]:
    """A cell's state (done / failed / not run), best epoch, the val metrics there, its monitor curve, wall time."""
    done = folder / "done.json"
    record = json.loads(done.read_text()) if done.is_file() else {}
    series = read_metrics(folder / "version_0" / "logs") if (folder / "version_0" / "logs").is_dir() else {}
    curve = sorted(series.get(monitor, []))
    result: dict[str, Any] = {"state": "done" if record else ("interrupted" if curve else "not run"),
                              "wall_s": record.get("wall_s"), "curve": curve, "metrics": {}}  # fmt: skip
    if not curve:
        return result
    best_epoch, _ = (max if mode == "max" else min)(curve, key=lambda p: p[1])
    result["best_epoch"] = best_epoch
    for key, points in series.items():
        if key.startswith("val/") and key.count("/") == 1:  # the task's headline metrics, not per-term/class ones
            at_best = [y for x, y in points if x == best_epoch]
            if at_best:
                result["metrics"][key] = at_best[-1]
    return result


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _p_value(baseline: dict[int, float], other: dict[int, float]) -> float | None:
    seeds = sorted(set(baseline) & set(other))
    if len(seeds) < 2:
        return None
    a, b = [baseline[s] for s in seeds], [other[s] for s in seeds]
    if all(x == y for x, y in zip(a, b)):
        return 1.0
    p = float(ttest_rel(b, a).pvalue)
    return p if math.isfinite(p) else None


def write_leaderboard(root: Path, cells: Sequence[tuple[Any, Path]], monitor: str, mode: str,
                      console: Console) -> list[Path]:  # fmt: skip
    """Aggregate ``(cell, folder)`` pairs (a cell has ``label`` and ``seed``) into ``root``; returns the files."""
    labels = list(dict.fromkeys(cell.label for cell, _ in cells))
    results = {label: {} for label in labels}
    for cell, folder in cells:
        results[cell.label][cell.seed] = cell_result(folder, monitor, mode)
    keys = sorted({k for seeds in results.values() for r in seeds.values() for k in r["metrics"]} - {monitor})
    baseline = {s: r["metrics"][monitor] for s, r in results[labels[0]].items() if monitor in r["metrics"]}
    rows = []
    for label in labels:
        finished = {s: r for s, r in results[label].items() if r["state"] == "done" and monitor in r["metrics"]}
        row: dict[str, Any] = {"candidate": label, "seeds": f"{len(finished)}/{len(results[label])}"}
        failed = [s for s, r in results[label].items() if r["state"] != "done"]
        row["note"] = f"unfinished seeds {failed}" if failed else ""
        for key in (monitor, *keys):
            values = [r["metrics"][key] for r in finished.values() if key in r["metrics"]]
            row[key] = _mean_std(values) if values else None
        row["best_epoch"] = _mean_std([r["best_epoch"] for r in finished.values()]) if finished else None
        walls = [r["wall_s"] for r in finished.values() if r["wall_s"] is not None]
        row["wall_s"] = _mean_std(walls) if walls else None
        p = _p_value(baseline, {s: r["metrics"][monitor] for s, r in finished.items()}) if label != labels[0] else None
        row["p_vs_baseline"] = p
        rows.append(row)
    sign = -1 if mode == "max" else 1
    rows.sort(key=lambda r: (r[monitor] is None, sign * r[monitor][0] if r[monitor] else 0.0))
    columns = ["candidate", monitor, *keys, "best_epoch", "wall_s", "p_vs_baseline", "seeds", "note"]
    written = [_markdown(root / "leaderboard.md", rows, columns, monitor, mode, labels[0]),
               _csv(root / "leaderboard.csv", rows, columns)]
    plots = (_curves(root / "curves.png", results, monitor), _bars(root / "final.png", rows, monitor))
    written += [p for p in plots if p]
    table = Table(title=f"leaderboard by {monitor} ({mode}); baseline {labels[0]}; all metrics: {written[0]}")
    shown = ["candidate", monitor, "best_epoch", "wall_s", "p_vs_baseline", "seeds"]
    for column in shown:
        table.add_column(column)
    for row in rows:
        table.add_row(*(_fmt(row[c], c) for c in shown))
    console.print(table)
    return written


def _fmt(value: Any, column: str = "") -> str:
    if value is None:
        return ""
    if isinstance(value, tuple):
        spec = ".1f" if column in ("best_epoch", "wall_s") else ".4f"
        return f"{value[0]:{spec}} ± {value[1]:{spec}}"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def _markdown(path: Path, rows: list[dict], columns: list[str], monitor: str, mode: str, baseline: str) -> Path:
    lines = [f"Ranked by `{monitor}` ({mode}) at each run's best epoch; mean ± std over seeds; "
             f"p: paired t-test against `{baseline}`.", "",
             "| rank | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]  # fmt: skip
    lines += [f"| {i} | " + " | ".join(_fmt(row[c], c) for c in columns) + " |" for i, row in enumerate(rows, 1)]
    path.write_text("\n".join(lines) + "\n")
    return path


def _csv(path: Path, rows: list[dict], columns: list[str]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        header = ["rank"]
        for c in columns:
            header += [f"{c}_mean", f"{c}_std"] if c not in ("candidate", "seeds", "note", "p_vs_baseline") else [c]
        writer.writerow(header)
        for i, row in enumerate(rows, 1):
            cells: list[Any] = [i]
            for c in columns:
                value = row[c]
                if c in ("candidate", "seeds", "note", "p_vs_baseline"):
                    cells.append("" if value is None else value)
                else:
                    cells += list(value) if value else ["", ""]
            writer.writerow(cells)
    return path


def _curves(path: Path, results: dict[str, dict[int, dict]], monitor: str) -> Path | None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    drawn = False
    for label, seeds in results.items():
        curves = [dict(r["curve"]) for r in seeds.values() if r["curve"]]
        epochs = sorted({x for c in curves for x in c})
        if not epochs:
            continue
        values = [[c[x] for c in curves if x in c] for x in epochs]
        mean = [statistics.fmean(v) for v in values]
        line = ax.plot(epochs, mean, marker="o", markersize=3, label=f"{label} ({len(curves)} seeds)")[0]
        ax.fill_between(epochs, [min(v) for v in values], [max(v) for v in values], color=line.get_color(), alpha=0.2)
        drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xlabel("epoch")
    ax.set_ylabel(monitor)
    ax.set_title(f"{monitor} per epoch: mean over seeds, band = min..max")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _bars(path: Path, rows: list[dict], monitor: str) -> Path | None:
    ranked = [r for r in rows if r[monitor]]
    if not ranked:
        return None
    fig, ax = plt.subplots(figsize=(max(4.0, 1.3 * len(ranked)), 4))
    ax.bar([r["candidate"] for r in ranked], [r[monitor][0] for r in ranked],
           yerr=[r[monitor][1] for r in ranked], capsize=4, color="tab:blue", alpha=0.8)  # fmt: skip
    ax.set_ylabel(f"{monitor} at the best epoch")
    ax.set_title("mean ± std over seeds")
    ax.tick_params(axis="x", labelrotation=20)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

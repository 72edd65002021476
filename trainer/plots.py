"""Loss-curve plots from Lightning's CSV metrics."""

from __future__ import annotations

import csv
import math
import re
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def metrics_files(log_dir: Path) -> list[Path]:
    """The CSV logs of a run in order: parts written before each resume, then ``metrics.csv``."""
    parts = sorted(log_dir.glob("metrics.part*.csv"), key=lambda p: int(p.stem.removeprefix("metrics.part")))
    return [*parts, *([log_dir / "metrics.csv"] if (log_dir / "metrics.csv").is_file() else [])]


def read_metrics(log_dir: Path) -> dict[str, list[tuple[float, float]]]:
    """CSV logs -> {metric: [(epoch, value), ...]} using each row's epoch (or step)."""
    series: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for rows in map(_read_rows, metrics_files(log_dir)):
        for row in rows:
            x = row.get("epoch") or row.get("step") or ""
            if not x:
                continue
            for key, value in row.items():
                if key in ("epoch", "step") or value in ("", None):
                    continue
                number = float(value)
                if math.isfinite(number):
                    series[key].append((float(x), number))
    return series


def _read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def plot_loss_curves(log_dir: Path, out_png: Path) -> Path | None:
    """Per-slot train/val totals, per-term train values, effective term weights, per-term gradient norms and
    shares on the shared layer (``run.term_grad_norms``) and validation metrics, one panel each (those logged)."""
    series = read_metrics(log_dir)
    totals = {k: v for k, v in series.items() if _is_total(k)}
    if not totals:
        return None
    terms = {
        k: v for k, v in series.items() if k.startswith("train/loss/") and k.endswith("_epoch") and k not in totals
    }
    prefixed = {p: {k: v for k, v in series.items() if k.startswith(p)} for p in _TERM_PANELS}
    scores = drop_coco_sentinels({k: v for k, v in series.items() if k.startswith("val/") and "/loss" not in k})
    panels = [
        ("loss (per epoch)", totals, True),
        ("train loss terms (unweighted)", terms, True),
        *((title, prefixed[prefix], log) for prefix, (title, log) in _TERM_PANELS.items()),
        ("validation metrics", scores, False),
    ]
    panels = [p for p in panels if p[1]]
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols, 4 * rows), squeeze=False)
    for ax, (title, data, log) in zip(axes.flat, panels):
        for name, points in sorted(data.items()):
            xs, ys = zip(*sorted(points))
            label = name.removesuffix("_epoch")
            ax.plot(xs, ys, marker="o", markersize=3, label=next(
                (label.removeprefix(p) for p in _TERM_PANELS if label.startswith(p)), label))
        if log and all(y > 0 for pts in data.values() for _, y in pts):
            ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png


def drop_coco_sentinels(series: dict[str, list[tuple[float, float]]]) -> dict[str, list[tuple[float, float]]]:
    """COCO mAP/mAR logs -1 for "no objects of this size": not a value to plot (it squashes the axis)."""
    kept = {
        key: [(x, y) for x, y in points if not (y == -1.0 and re.search(r"/ma[pr](_|$)", key))]
        for key, points in series.items()
    }
    return {key: points for key, points in kept.items() if points}


# per-term panels: key prefix -> (title, log scale)
_TERM_PANELS = {
    "train/weight/": ("effective term weights", False),
    "train/grad_norm/": ("gradient norm of each weighted term (shared layer)", True),
    "train/grad_share/": ("share of the total gradient (shared layer)", False),
}


def _is_total(key: str) -> bool:
    """``train/loss/<slot>_epoch``, ``val/loss/<slot>`` or the overall ``train/loss_epoch``."""
    if key.startswith("train/loss") and key.endswith("_epoch"):
        return key.removeprefix("train/loss").removesuffix("_epoch").count("/") <= 1
    if key.startswith("val/loss"):
        return key.removeprefix("val/loss").count("/") <= 1
    return False

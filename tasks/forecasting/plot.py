"""Forecast plots: context, truth, the forecast with its prediction interval, and the seasonal-naive forecast."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


@dataclass
class Panel:
    """One window in the data's units: ``times`` covers context then horizon."""

    times: np.ndarray
    context: np.ndarray
    target: np.ndarray
    forecast: np.ndarray
    snaive: np.ndarray
    low: np.ndarray | None = None
    high: np.ndarray | None = None
    title: str = ""


def plot_forecasts(panels: list[Panel], path: Path, title: str, level: float = 0.8) -> Path:
    """Write one row per panel to ``path`` (PNG)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 2.8 * len(panels)), squeeze=False)
    for ax, panel in zip(axes[:, 0], panels):
        split = len(panel.context)
        past, future = panel.times[:split], panel.times[split:]
        ax.plot(past, panel.context, color="0.35", lw=1.0, label="context")
        ax.plot(future, panel.target, color="black", lw=1.2, label="truth")
        if panel.low is not None and panel.high is not None:
            ax.fill_between(future, panel.low, panel.high, color="tab:blue", alpha=0.25, lw=0,
                            label=f"{level:.0%} interval")  # fmt: skip
        ax.plot(future, panel.forecast, color="tab:blue", lw=1.4, label="forecast")
        ax.plot(future, panel.snaive, color="tab:orange", lw=1.0, ls="--", label="seasonal naive")
        ax.set_title(panel.title, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(loc="upper left", fontsize=8, ncol=5)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path

"""The verification ROC: true accept rate against false accept rate (log scale), trained beside untrained."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from sklearn.metrics import auc, roc_curve  # noqa: E402
from torch import Tensor  # noqa: E402


def plot_roc(curves: dict[str, tuple[Tensor, Tensor]], path: Path, title: str) -> Path | None:
    """Write one ROC per ``label -> (scores, same)`` to ``path`` (PNG); None when no curve has both classes."""
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    drawn = 0
    for label, (scores, same) in curves.items():
        if same.unique().numel() < 2:  # an ROC needs genuine and impostor pairs
            continue
        far, tar, _ = roc_curve(same.numpy(), scores.float().numpy())
        ax.plot(far.clip(min=1e-5), tar, label=f"{label} (AUC {auc(far, tar):.3f})")
        drawn += 1
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xscale("log")
    ax.set_xlim(1e-4, 1.0)
    ax.set_ylim(0.0, 1.01)
    ax.set_xlabel("false accept rate (impostor pairs accepted)")
    ax.set_ylabel("true accept rate")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

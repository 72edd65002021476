"""Predictions vs ground truth: one panel per image, ground-truth boxes green, detections red."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import Tensor


def _name(label: int, class_names: Sequence[str] | None) -> str:
    return class_names[label] if class_names and 0 <= label < len(class_names) else str(label)


def save_predictions(images: Sequence[Tensor], targets: Sequence[dict[str, Any]],
                     detections: Sequence[dict[str, Tensor]], path: str | Path,
                     class_names: Sequence[str] | None = None, score_thresh: float = 0.3,
                     max_images: int = 4, title: str = "") -> Path:
    """Write a PNG for the first ``max_images`` images (images float (3, H, W) in [0, 1]); returns its path."""
    count = max(1, min(max_images, len(images)))
    fig = Figure(figsize=(3.2 * count, 3.4))
    FigureCanvasAgg(fig)
    for col in range(count):
        ax = fig.add_subplot(1, count, col + 1)
        ax.set_axis_off()
        if col >= len(images):
            continue
        ax.imshow(images[col].detach().float().cpu().permute(1, 2, 0).clamp(0, 1).numpy())
        target, det = targets[col], detections[col]
        crowd = target.get("iscrowd")
        for k, box in enumerate(target["boxes"].tolist()):
            style = "--" if crowd is not None and bool(crowd[k]) else "-"
            ax.add_patch(Rectangle(box[:2], box[2] - box[0], box[3] - box[1], fill=False, ec="lime", lw=1.5, ls=style))
        keep = det["scores"] >= score_thresh
        for box, label, score in zip(det["boxes"][keep].tolist(), det["labels"][keep].tolist(),
                                     det["scores"][keep].tolist()):
            ax.add_patch(Rectangle(box[:2], box[2] - box[0], box[3] - box[1], fill=False, ec="red", lw=1.0))
            ax.text(box[0], box[1], f"{_name(label, class_names)} {score:.2f}", color="white", fontsize=6, va="bottom",
                    bbox={"facecolor": "red", "alpha": 0.6, "pad": 0.5, "lw": 0})
    fig.suptitle(f"{title}  (green: ground truth, red: predictions >= {score_thresh:g})", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path

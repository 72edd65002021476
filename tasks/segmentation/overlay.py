"""Prediction pictures: validation grids (image | ground truth | prediction), class-map PNGs, image overlays."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from torch import Tensor  # noqa: E402

from tasks.segmentation.data import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402


def colourise(labels: np.ndarray, num_classes: int, ignore_index: int) -> np.ndarray:
    """(H, W) class indices -> (H, W, 4) RGBA with background transparent and void grey."""
    cmap = plt.get_cmap("tab10" if num_classes <= 10 else "tab20")
    rgba = cmap(labels % cmap.N).astype(np.float32)
    rgba[..., 3] = np.where(labels == 0, 0.0, 0.55)
    rgba[labels == ignore_index] = (0.5, 0.5, 0.5, 0.8)
    return rgba


def save_overlay(
    images: Tensor, targets: Tensor, preds: Tensor, path: Path, num_classes: int, ignore_index: int, title: str = ""
) -> Path:
    """Save a grid for up to 4 samples; ``targets``/``preds`` are (N, H, W) class indices."""
    count = min(4, images.shape[0])
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    fig, axes = plt.subplots(count, 3, figsize=(7.5, 2.5 * count), squeeze=False)
    for row in range(count):
        image = (images[row].detach().float().cpu() * std + mean).clamp(0, 1).permute(1, 2, 0).numpy()
        for col, (name, labels) in enumerate((("image", None), ("ground truth", targets), ("prediction", preds))):
            ax = axes[row, col]
            ax.imshow(image)
            if labels is not None:
                ax.imshow(colourise(labels[row].cpu().numpy(), num_classes, ignore_index))
            ax.set_axis_off()
            if row == 0:
                ax.set_title(name)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def save_label_png(labels: Tensor, path: Path) -> Path:
    """Write an (H, W) class map as a palette PNG (the index is the class, as the loader reads it)."""
    array = labels.detach().cpu().numpy().astype(np.uint8)
    image = Image.fromarray(array)  # mode L; putpalette turns it into a P image
    colours = (np.asarray(plt.get_cmap("tab20").colors) * 255).astype(np.uint8)
    image.putpalette([0, 0, 0, *colours[1:].ravel().tolist()])
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def save_image_overlay(image_path: Path, labels: Tensor, path: Path, num_classes: int, ignore_index: int = 255) -> Path:
    """Colour an (H, W) class map over the image it was predicted from (same size) and save it as PNG."""
    with Image.open(image_path) as image:
        rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    rgba = colourise(labels.detach().cpu().numpy(), num_classes, ignore_index)
    alpha = rgba[..., 3:]
    blended = rgb * (1.0 - alpha) + rgba[..., :3] * alpha
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((blended * 255.0 + 0.5).astype(np.uint8)).save(path)
    return path

"""The embedded default detection set: textured circles, squares and triangles, written as COCO json + PNG.

Deterministic by ``seed``: the same settings always give the same bytes. Several objects per
image, some overlapping (box IoU below ``max_overlap``), about one image in ten empty.
Objects and backgrounds are tinted crops of real CC0 textures shipped with scikit-image
(gravel, brick, grass); each class has its own texture and a jittered colour bias. The files
are written in the standard COCO layout and read back by the ordinary COCO loader::

    <cache_dir>/<settings>/annotations/{train,val}.json
    <cache_dir>/<settings>/{train,val}/0000.png ...

Category ids are 1..3 as in a COCO file; the loader maps them to contiguous labels 0..2.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ("circle", "square", "triangle")
GENERATOR_VERSION = 1
_CLASS_TEXTURE = ("gravel", "brick", "grass")
_CLASS_TINT = ((1.0, 0.45, 0.3), (0.35, 1.0, 0.45), (0.4, 0.55, 1.0))


def _textures() -> dict[str, np.ndarray]:
    from skimage import data

    return {name: getattr(data, name)().astype(np.float32) / 255.0 for name in ("gravel", "brick", "grass")}


def _tinted_crop(texture: np.ndarray, size: int, rng: np.random.Generator, tint: np.ndarray) -> np.ndarray:
    y, x = rng.integers(0, texture.shape[0] - size), rng.integers(0, texture.shape[1] - size)
    crop = texture[y : y + size, x : x + size]
    crop = (crop - crop.mean()) * rng.uniform(0.6, 1.2) + 0.5
    return np.clip(crop[..., None] * tint[None, None, :] * 1.6, 0.0, 1.0)


def _box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    if len(boxes) == 0:
        return np.zeros(0)
    lt, rb = np.maximum(box[:2], boxes[:, :2]), np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
    return inter / (area(box) + area(boxes) - inter)


def _polygon(label: int, cx: float, cy: float, radius: float, angle: float) -> list[tuple[float, float]]:
    corners = 4 if label == 1 else 3
    angles = angle + 2 * np.pi * np.arange(corners) / corners
    return [(cx + radius * np.cos(a), cy + radius * np.sin(a)) for a in angles]


def render_sample(rng: np.random.Generator, textures: dict[str, np.ndarray], size: int,
                  max_objects: int = 5, max_overlap: float = 0.3) -> tuple[np.ndarray, list[tuple[int, list[float]]]]:
    """One RGB image (H, W, 3 uint8) and its objects as ``(label 0..2, [x0, y0, x1, y1])``."""
    background = textures[rng.choice(list(textures))]
    image = _tinted_crop(background, size, rng, rng.uniform(0.2, 0.6, 3)) * 0.6
    image += np.linspace(0, rng.uniform(0.0, 0.3), size)[None, :, None]
    objects: list[tuple[int, list[float]]] = []
    count = 0 if rng.random() < 0.1 else int(rng.integers(1, max_objects + 1))
    for _ in range(count):
        for _attempt in range(20):
            label = int(rng.integers(0, len(CLASSES)))
            radius = rng.uniform(0.1, 0.25) * size
            cx, cy = rng.uniform(radius, size - radius, 2)
            if label == 0:
                outline = [(cx - radius, cy - radius), (cx + radius, cy + radius)]
            else:
                outline = _polygon(label, cx, cy, radius, rng.uniform(0, 2 * np.pi))
            xy = np.asarray(outline)
            box = np.concatenate([np.floor(xy.min(0)), np.ceil(xy.max(0))]).clip(0, size)
            if (_box_iou(box, np.asarray([b for _, b in objects]).reshape(-1, 4)) <= max_overlap).all():
                break
        else:
            continue
        shape = Image.new("L", (size, size), 0)
        draw = ImageDraw.Draw(shape)
        if label == 0:
            draw.ellipse([c for p in outline for c in p], fill=1)
        else:
            draw.polygon(outline, fill=1)
        inside = np.asarray(shape, bool)
        tint = 0.6 * np.asarray(_CLASS_TINT[label]) + rng.uniform(0.0, 0.4, 3)
        fill = _tinted_crop(textures[_CLASS_TEXTURE[label]], size, rng, tint)
        image[inside] = fill[inside]
        objects.append((label, box.tolist()))
    noise = rng.normal(0.0, 0.03, image.shape)
    return (np.clip(image + noise, 0, 1) * 255).astype(np.uint8), objects


def _coco_split(rng: np.random.Generator, textures: dict[str, np.ndarray], out: Path, split: str, count: int,
                size: int) -> dict[str, Any]:
    images, annotations = [], []
    (out / split).mkdir(parents=True, exist_ok=True)
    for index in range(count):
        pixels, objects = render_sample(rng, textures, size)
        name = f"{index:04d}.png"
        Image.fromarray(pixels).save(out / split / name)
        images.append({"id": index + 1, "file_name": name, "width": size, "height": size})
        for label, (x0, y0, x1, y1) in objects:
            annotations.append({"id": len(annotations) + 1, "image_id": index + 1, "category_id": label + 1,
                                "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0), "iscrowd": 0})
    categories = [{"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(CLASSES)]
    return {"images": images, "annotations": annotations, "categories": categories}


def generate_shapes(cache_dir: str | Path, num_train: int = 256, num_val: int = 64, size: int = 128,
                    seed: int = 0) -> Path:
    """Write the set once under ``<cache_dir>/<settings>/`` and return that folder.

    Each combination of settings gets its own folder; an existing one whose ``dataset.json``
    matches is reused. The set is built in a temporary folder and renamed into place, so
    concurrent processes (DDP ranks, parallel tests) never see a half-written set.
    """
    root = Path(cache_dir) / f"v{GENERATOR_VERSION}_n{num_train}-{num_val}_s{size}_seed{seed}"
    meta = {"version": GENERATOR_VERSION, "num_train": num_train, "num_val": num_val, "size": size, "seed": seed,
            "classes": list(CLASSES)}
    stamp = root / "dataset.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == meta:
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    textures = _textures()
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        (tmp / "annotations").mkdir()
        for split, count, split_seed in (("train", num_train, seed), ("val", num_val, seed + 1)):
            coco = _coco_split(np.random.default_rng(split_seed), textures, tmp, split, count, size)
            (tmp / "annotations" / f"{split}.json").write_text(json.dumps(coco))
        (tmp / "dataset.json").write_text(json.dumps(meta))
        if root.exists():
            shutil.rmtree(root, ignore_errors=True)
        os.replace(tmp, root)
    except OSError:
        if not stamp.is_file():  # another process won the rename with the same content
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root

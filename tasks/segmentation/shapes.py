"""The embedded default dataset: textured shapes on textured backgrounds, generated deterministically.

Classes: 0 background, 1 disc, 2 square, 3 triangle. Shapes overlap (later ones occlude
earlier ones), some images are empty, objects and backgrounds are filled with tinted crops
of real CC0 textures from scikit-image (gravel, brick, grass). The set is written to disk
in the image/mask folder format, so the same loader that reads user data reads it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ("background", "disc", "square", "triangle")
PALETTE = [(0, 0, 0), (230, 25, 75), (60, 180, 75), (0, 130, 200)]
GENERATOR_VERSION = 2


def _textures() -> dict[str, np.ndarray]:
    from skimage import data

    return {
        "gravel": data.gravel().astype(np.float32) / 255.0,
        "brick": data.brick().astype(np.float32) / 255.0,
        "grass": data.grass().astype(np.float32) / 255.0,
    }


def _tinted_crop(texture: np.ndarray, size: int, rng: np.random.Generator, tint: np.ndarray) -> np.ndarray:
    y, x = rng.integers(0, texture.shape[0] - size), rng.integers(0, texture.shape[1] - size)
    crop = texture[y : y + size, x : x + size]
    crop = (crop - crop.mean()) * rng.uniform(0.6, 1.2) + 0.5
    return np.clip(crop[..., None] * tint[None, None, :] * 1.6, 0.0, 1.0)


_CLASS_TEXTURE = {1: "gravel", 2: "brick", 3: "grass"}
_CLASS_TINT = {1: (1.0, 0.45, 0.3), 2: (0.35, 1.0, 0.45), 3: (0.4, 0.55, 1.0)}  # a bias, jittered per object


def render_sample(
    rng: np.random.Generator, textures: dict[str, np.ndarray], size: int
) -> tuple[np.ndarray, np.ndarray]:
    """One RGB image (H,W,3 uint8) and its index mask (H,W uint8)."""
    background_texture = textures[rng.choice(list(textures))]
    image = _tinted_crop(background_texture, size, rng, rng.uniform(0.2, 0.6, 3)) * 0.6
    image += np.linspace(0, rng.uniform(0.0, 0.3), size)[None, :, None]
    mask = np.zeros((size, size), np.uint8)
    num_shapes = 0 if rng.random() < 0.1 else int(rng.integers(1, 5))
    for _ in range(num_shapes):
        label = int(rng.integers(1, len(CLASSES)))
        radius = rng.uniform(0.08, 0.22) * size
        cx, cy = rng.uniform(radius, size - radius, 2)
        shape_mask = Image.new("L", (size, size), 0)
        draw = ImageDraw.Draw(shape_mask)
        if label == 1:
            draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=1)
        elif label == 2:
            angle = rng.uniform(0, np.pi / 2)
            corners = [
                (cx + radius * np.cos(angle + k * np.pi / 2), cy + radius * np.sin(angle + k * np.pi / 2))
                for k in range(4)
            ]
            draw.polygon(corners, fill=1)
        else:
            angle = rng.uniform(0, 2 * np.pi)
            corners = [
                (cx + radius * np.cos(angle + k * 2 * np.pi / 3), cy + radius * np.sin(angle + k * 2 * np.pi / 3))
                for k in range(3)
            ]
            draw.polygon(corners, fill=1)
        inside = np.asarray(shape_mask, bool)
        tint = 0.6 * np.asarray(_CLASS_TINT[label]) + rng.uniform(0.0, 0.4, 3)
        fill = _tinted_crop(textures[_CLASS_TEXTURE[label]], size, rng, tint)
        image[inside] = fill[inside]
        mask[inside] = label
    noise = rng.normal(0.0, 0.03, image.shape)
    return (np.clip(image + noise, 0, 1) * 255).astype(np.uint8), mask


def generate_shapes(cache_dir: Path, num_train: int = 192, num_val: int = 48, size: int = 96, seed: int = 0) -> Path:
    """Write ``<cache_dir>/<settings>/{train,val}/{images,masks}/*.png`` once and return that folder.

    Each combination of settings gets its own folder, so runs with different sizes never
    overwrite each other; an existing folder whose ``dataset.json`` matches is reused.
    """
    root = Path(cache_dir) / f"v{GENERATOR_VERSION}_n{num_train}-{num_val}_s{size}_seed{seed}"
    meta = {
        "version": GENERATOR_VERSION,
        "num_train": num_train,
        "num_val": num_val,
        "size": size,
        "seed": seed,
        "classes": list(CLASSES),
    }
    stamp = root / "dataset.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == meta:
        return root
    textures = _textures()
    for split, count, split_seed in (("train", num_train, seed), ("val", num_val, seed + 1)):
        rng = np.random.default_rng(split_seed)
        (root / split / "images").mkdir(parents=True, exist_ok=True)
        (root / split / "masks").mkdir(parents=True, exist_ok=True)
        for i in range(count):
            image, mask = render_sample(rng, textures, size)
            Image.fromarray(image).save(root / split / "images" / f"{i:04d}.png")
            palette_mask = Image.fromarray(mask)  # mode L; putpalette turns it into a P image
            palette_mask.putpalette([c for rgb in PALETTE for c in rgb])
            palette_mask.save(root / split / "masks" / f"{i:04d}.png")
    stamp.write_text(json.dumps(meta))
    return root

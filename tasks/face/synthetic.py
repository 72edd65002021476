"""Procedurally generated face-like identities, written in the folder format the real loaders read.

Each identity is a parameter vector (face shape, skin, hair colour and hairline, eye spacing, size
and colour, brows, nose length, mouth width and curvature, a mole); each image of it renders those
parameters under a random pose (translation, roll, scale, yaw as a horizontal feature shift),
expression (mouth curvature, eye opening), directional lighting, background and sensor noise.
Recognising the identity therefore needs the geometry and colours, not the pixels of one view.

Layout written (and read back by :mod:`tasks.face.data`)::

    root/train/<identity>/<k>.png           training identities (ImageFolder style)
    root/val/<identity>/<k>.png             held-out identities (disjoint from train)
    root/val_pairs.csv                      path1,path2,same (paths relative to root)
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from PIL import Image

VERSION = 2


def _identity(rng: np.random.Generator) -> dict[str, np.ndarray | float]:
    return {
        "skin": np.clip(rng.uniform(0.35, 0.95) * np.array([1.0, 0.78, 0.62]) + rng.uniform(-0.08, 0.08, 3), 0, 1),
        "hair": rng.uniform(0.0, 0.8, 3),
        "iris": rng.uniform(0.0, 0.9, 3),
        "lips": rng.uniform([0.5, 0.1, 0.1], [0.9, 0.45, 0.45]),
        "face_w": rng.uniform(0.27, 0.38),
        "face_h": rng.uniform(0.36, 0.46),
        "hairline": rng.uniform(-0.36, -0.16),
        "fringe": rng.uniform(-1.0, 1.0),
        "eye_y": rng.uniform(-0.12, 0.0),
        "eye_dx": rng.uniform(0.10, 0.17),
        "eye_r": rng.uniform(0.035, 0.065),
        "brow_dy": rng.uniform(0.06, 0.11),
        "brow_tilt": rng.uniform(-0.4, 0.4),
        "nose_len": rng.uniform(0.08, 0.18),
        "mouth_y": rng.uniform(0.18, 0.27),
        "mouth_w": rng.uniform(0.08, 0.17),
        "smile": rng.uniform(-1.0, 1.0),
        "mole": rng.uniform(-0.2, 0.2, 2),
        "has_mole": float(rng.random() < 0.5),
    }


def _soft(d: np.ndarray, sharpness: float) -> np.ndarray:
    """Soft inside-mask of a signed distance-like field (inside where d < 0)."""
    return 1.0 / (1.0 + np.exp(np.clip(d * sharpness, -50, 50)))


def render(identity: dict, rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """One (size, size, 3) uint8 view of ``identity`` under random pose, expression, lighting and noise."""
    v, u = np.meshgrid(np.linspace(-0.5, 0.5, size), np.linspace(-0.5, 0.5, size), indexing="ij")
    roll, scale = rng.uniform(-0.25, 0.25), rng.uniform(0.9, 1.1)
    tx, ty, yaw = rng.uniform(-0.06, 0.06), rng.uniform(-0.06, 0.06), rng.uniform(-0.5, 0.5)
    c, s = np.cos(roll), np.sin(roll)
    x = (c * (u - tx) + s * (v - ty)) / scale
    y = (-s * (u - tx) + c * (v - ty)) / scale
    sharp = 3.0 * size
    shift = 0.07 * yaw  # yaw: inner features shift sideways, the face narrows
    fw = identity["face_w"] * (1 - 0.15 * abs(yaw))

    background = rng.uniform(0.1, 0.9, 3)
    img = np.broadcast_to(background, (size, size, 3)).copy()

    def paint(mask: np.ndarray, colour: np.ndarray) -> None:
        img[:] = img * (1 - mask[..., None]) + mask[..., None] * colour

    hair = _soft(np.hypot(x / (fw * 1.15), (y + 0.03) / (identity["face_h"] * 1.12)) - 1, sharp / 8)
    paint(hair, identity["hair"])
    face = _soft(np.hypot(x / fw, y / identity["face_h"]) - 1, sharp / 8)
    paint(face, identity["skin"])
    fringe = face * _soft(y - (identity["hairline"] + 0.05 * identity["fringe"] * (x / fw)), sharp / 4)
    paint(fringe, identity["hair"])
    blink = rng.uniform(0.5, 1.0)
    for side in (-1, 1):
        ex, ey, r = side * identity["eye_dx"] + shift, identity["eye_y"], identity["eye_r"]
        eye = _soft(np.hypot((x - ex) / (1.5 * r), (y - ey) / (r * blink)) - 1, sharp / 10)
        paint(eye, np.array([0.95, 0.95, 0.95]))
        paint(eye * _soft(np.hypot(x - ex, y - ey) / (0.7 * r) - 1, sharp / 10), identity["iris"])
        by = ey - identity["brow_dy"] + side * identity["brow_tilt"] * (x - ex)
        brow = _soft(np.maximum(np.abs(y - by) - 0.015, np.abs(x - ex) - 1.8 * r), sharp / 2)
        paint(brow, identity["hair"] * 0.6)
    half = identity["nose_len"] / 2
    nose = _soft(np.maximum(np.abs(x - 1.3 * shift) - 0.012, np.abs(y - half) - half), sharp / 2)
    paint(nose, identity["skin"] * 0.7)
    curve = (identity["smile"] + rng.uniform(-0.4, 0.4)) * 3.0 * (x - shift) ** 2
    mouth = _soft(
        np.maximum(np.abs(y - identity["mouth_y"] + curve) - 0.018, np.abs(x - shift) - identity["mouth_w"]), sharp / 2
    )
    paint(mouth, identity["lips"])
    if identity["has_mole"]:
        mx, my = identity["mole"]
        paint(face * _soft(np.hypot(x - mx - shift, y - my) / 0.022 - 1, sharp / 20), identity["hair"] * 0.3)

    angle = rng.uniform(0, 2 * np.pi)
    light = rng.uniform(0.7, 1.2) * (1 + rng.uniform(0.0, 0.5) * (np.cos(angle) * u + np.sin(angle) * v))
    img = img * light[..., None] + rng.normal(0, rng.uniform(0.02, 0.07), img.shape)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def _write_split(root: Path, split: str, identities: list[dict], per_identity: int, size: int,
                 rng: np.random.Generator, offset: int) -> list[list[str]]:
    folders = []
    for i, identity in enumerate(identities):
        folder = root / split / f"id_{offset + i:05d}"
        folder.mkdir(parents=True, exist_ok=True)
        files = []
        for k in range(per_identity):
            path = folder / f"{k:03d}.png"
            Image.fromarray(render(identity, rng, size)).save(path)
            files.append(path.relative_to(root).as_posix())
        folders.append(files)
    return folders


def write_pairs(root: Path, folders: list[list[str]], num_pairs: int, rng: np.random.Generator) -> None:
    """``root/val_pairs.csv``: ``num_pairs`` genuine and ``num_pairs`` impostor pairs of ``folders`` (one list of
    root-relative image paths per identity), no pair repeated, in mixed order."""
    pairs: set[tuple[str, str, int]] = set()
    while len(pairs) < num_pairs:
        files = folders[rng.integers(len(folders))]
        a, b = rng.choice(len(files), 2, replace=False)
        pairs.add((files[a], files[b], 1))
    while len(pairs) < 2 * num_pairs:
        i, j = rng.choice(len(folders), 2, replace=False)
        pairs.add((folders[i][rng.integers(len(folders[i]))], folders[j][rng.integers(len(folders[j]))], 0))
    ordered = sorted(pairs, key=lambda p: (p[2], p[0], p[1]))
    with open(root / "val_pairs.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path1", "path2", "same"])
        writer.writerows(ordered[i] for i in rng.permutation(len(ordered)))  # mixed: every contiguous fold has both


def generate_identities(
    root: str | Path,
    num_identities: int = 100,
    images_per_identity: int = 12,
    num_val_identities: int = 40,
    val_images_per_identity: int = 8,
    num_pairs: int = 300,
    size: int = 32,
    seed: int = 0,
) -> Path:
    """Write the synthetic identity set under ``root`` (once per settings; a marker file records them)."""
    root = Path(root)
    settings = {
        "version": VERSION, "num_identities": num_identities, "images_per_identity": images_per_identity,
        "num_val_identities": num_val_identities, "val_images_per_identity": val_images_per_identity,
        "num_pairs": num_pairs, "size": size, "seed": seed,
    }
    marker = root / "settings.json"
    if marker.is_file() and json.loads(marker.read_text()) == settings:
        return root
    if num_val_identities < 2 or val_images_per_identity < 2:
        raise ValueError("data.synthetic: num_val_identities and val_images_per_identity must be >= 2")
    rng = np.random.default_rng(seed)
    identities = [_identity(rng) for _ in range(num_identities + num_val_identities)]
    _write_split(root, "train", identities[:num_identities], images_per_identity, size, rng, 0)
    folders = _write_split(root, "val", identities[num_identities:], val_images_per_identity, size, rng,
                           num_identities)
    write_pairs(root, folders, num_pairs, rng)
    marker.write_text(json.dumps(settings))
    return root

"""Paired A/B image folders -> tensors in [-1, 1]; the embedded dehazing set; the Lightning datamodule.

Folder format (what users bring and what the embedded set is written as)::

    root/train/A/xxx.png   root/train/B/xxx.png      (A: input, e.g. hazy; B: target, same file name)
    root/val/A/...         root/val/B/...

The embedded set (``root: null``) is generated once under ``cache_dir`` from photographs shipped in
scikit-image and scikit-learn, hazed with the atmospheric scattering model
``I = J t + A (1 - t)``, ``t = exp(-beta d)`` (Koschmieder; McCartney 1976): the depth ``d`` of
scikit-image's stereo motorcycle comes from its ground-truth disparity (``d ~ 1 / disparity``), the
other photos get a smooth random depth (a vertical ramp plus upsampled noise). Seeds are fixed, so
the same settings always write the same files; validation photos are disjoint from training photos.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from tasks.sampling import SampleKey, seeded_loader

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
TRAIN_PHOTOS = ("stereo_motorcycle", "astronaut", "coffee", "immunohistochemistry", "hubble_deep_field", "china")
VAL_PHOTOS = ("chelsea", "rocket", "flower")
DEHAZE_KEYS = ("num_train", "num_val", "size", "seed", "beta", "airlight")


# --------------------------------------------------------------------------- the embedded dehazing set


def _photo(name: str) -> tuple[np.ndarray, np.ndarray | None]:
    """An RGB photo as float32 (H, W, 3) in [0, 1] and its relative depth in [0, 1] if known."""
    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_images

        images = dict(zip(("china", "flower"), load_sample_images().images))
        return images[name].astype(np.float32) / 255.0, None
    from skimage import data

    if name == "stereo_motorcycle":
        left, _, disparity = data.stereo_motorcycle()
        finite = np.isfinite(disparity) & (disparity > 0)
        depth = np.where(finite, 1.0 / np.where(finite, disparity, 1.0), np.nan)  # depth = f B / disparity
        far = np.nanmax(depth)
        depth = np.nan_to_num(depth, nan=far)  # unknown (inf) pixels: the farthest depth
        depth = (depth - depth.min()) / max(float(depth.max() - depth.min()), 1e-6)
        return left.astype(np.float32) / 255.0, depth.astype(np.float32)
    image = getattr(data, name)()
    return image[..., :3].astype(np.float32) / 255.0, None


def smooth_depth(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A smooth random depth in [0, 1]: farther towards the top, plus low-frequency noise."""
    ramp = np.linspace(1.0, 0.2, height, dtype=np.float32)[:, None].repeat(width, 1)
    noise = torch.from_numpy(rng.random((1, 1, 6, 6), dtype=np.float32))
    noise = F.interpolate(noise, size=(height, width), mode="bicubic", align_corners=False)[0, 0].numpy()
    depth = 0.6 * ramp + 0.4 * noise
    return ((depth - depth.min()) / max(float(depth.max() - depth.min()), 1e-6)).astype(np.float32)


def haze(clear: np.ndarray, depth: np.ndarray, beta: float, airlight: float) -> np.ndarray:
    """The atmospheric scattering model: I = J t + A (1 - t), t = exp(-beta d)."""
    t = np.exp(-beta * depth)[..., None]
    return clear * t + airlight * (1.0 - t)


def _write(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)).save(path)


def generate_dehaze(
    root: str | Path,
    num_train: int = 480,
    num_val: int = 96,
    size: int = 64,
    seed: int = 0,
    beta: tuple[float, float] = (1.0, 2.5),
    airlight: tuple[float, float] = (0.7, 1.0),
) -> Path:
    """Write the embedded dehazing set (once per settings) and return its folder."""
    settings = {"num_train": num_train, "num_val": num_val, "size": size, "seed": seed,
                "beta": list(beta), "airlight": list(airlight), "version": 1}
    root = Path(root)
    stamp = root / "settings.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == settings:
        return root
    rng = np.random.default_rng(seed)
    for split, photos, count in (("train", TRAIN_PHOTOS, num_train), ("val", VAL_PHOTOS, num_val)):
        loaded = [_photo(name) for name in photos]
        for i in range(count):
            k = i % len(loaded)
            clear, depth = loaded[k]
            h, w = clear.shape[:2]
            scale = rng.uniform(0.35, 1.0)  # crop a random-size window and resize it to `size`
            side = int(max(size, min(h, w) * scale))
            y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
            crop = torch.from_numpy(np.ascontiguousarray(clear[y : y + side, x : x + side])).permute(2, 0, 1)[None]
            crop = F.interpolate(crop, size=(size, size), mode="area")[0].permute(1, 2, 0).numpy()
            if depth is not None:
                d = torch.from_numpy(np.ascontiguousarray(depth[y : y + side, x : x + side]))[None, None]
                d = F.interpolate(d, size=(size, size), mode="area")[0, 0].numpy()
            else:
                d = smooth_depth(size, size, rng)
            hazy = haze(crop, d, rng.uniform(*beta), rng.uniform(*airlight))
            name = f"{photos[k]}_{i:04d}.png"
            _write(root / split / "A" / name, hazy)
            _write(root / split / "B" / name, crop)
    stamp.write_text(json.dumps(settings))
    return root


# --------------------------------------------------------------------------- paired folders


def read_image(path: Path) -> Tensor:
    """An RGB image as float32 (3, H, W) in [-1, 1] (the tanh range of the generators)."""
    array = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


class PairedFolderDataset(Dataset):
    """Pairs ``A/<name>`` with ``B/<name>`` (the same file name) under one split folder."""

    def __init__(self, split_dir: Path, a: str = "A", b: str = "B", flip: bool = False) -> None:
        self.split_dir = Path(split_dir)
        inputs = sorted(p for p in (self.split_dir / a).glob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not inputs:
            raise FileNotFoundError(f"data: no images in {self.split_dir / a} (expected {IMAGE_SUFFIXES})")
        missing = [p.name for p in inputs if not (self.split_dir / b / p.name).is_file()]
        if missing:
            raise FileNotFoundError(
                f"data: {len(missing)} image(s) in {self.split_dir / a} without the same file name in "
                f"{self.split_dir / b}, e.g. {missing[:3]}"
            )
        self.samples = [(p, self.split_dir / b / p.name) for p in inputs]
        self.flip = flip

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: int | SampleKey) -> tuple[Tensor, Tensor]:
        index, seed = SampleKey.of(key)
        a, b = (read_image(p) for p in self.samples[index])
        if a.shape != b.shape:
            raise ValueError(f"data: {self.samples[index][0]} and its pair differ in size: {a.shape} vs {b.shape}")
        if self.flip and seed % 2:  # the same flip for input and target, a function of the sample seed
            a, b = a.flip(-1), b.flip(-1)
        return a, b


class TranslationDataModule(L.LightningDataModule):
    """Paired A/B folders (``root``), or the embedded dehazing set when ``root`` is null."""

    def __init__(
        self,
        root: str | None = None,
        train_split: str = "train",
        val_split: str = "val",
        a: str = "A",
        b: str = "B",
        batch_size: int = 16,
        num_workers: int = 0,
        flip: bool = True,
        dehaze: dict[str, Any] | None = None,
        cache_dir: str = "data/generated/dehaze",
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.root = Path(root) if root is not None else None
        self.splits = {"train": train_split, "val": val_split, "test": val_split}
        self.a, self.b = a, b
        self.batch_size, self.num_workers, self.flip = batch_size, num_workers, flip
        self.dehaze = dict(dehaze or {})
        unknown = set(self.dehaze) - set(DEHAZE_KEYS)
        if unknown:
            raise ValueError(f"data.dehaze: unknown key(s) {sorted(unknown)}; accepted: {', '.join(DEHAZE_KEYS)}")
        self.cache_dir = Path(cache_dir)
        self.seed = seed

    def prepare_data(self) -> None:
        if self.root is None:
            generate_dehaze(self.cache_dir, **self.dehaze)

    def _dataset(self, stage: str) -> PairedFolderDataset:
        root = self.root if self.root is not None else generate_dehaze(self.cache_dir, **self.dehaze)
        split_dir = root / self.splits[stage]
        if not split_dir.is_dir():
            raise FileNotFoundError(
                f"data.root: {split_dir} does not exist (expected {root}/<split>/{self.a}|{self.b})"
            )
        return PairedFolderDataset(split_dir, self.a, self.b, flip=self.flip and stage == "train")

    def setup(self, stage: str | None = None) -> None:
        if stage in ("fit", None):
            self.train_set = self._dataset("train")
        if stage in ("fit", "validate", None):
            self.val_set = self._dataset("val")
        if stage in ("test", "predict"):
            self.test_set = self._dataset("test")

    def train_dataloader(self) -> DataLoader:
        return seeded_loader(self.train_set, self.batch_size, self.num_workers, self.seed, True)

    def val_dataloader(self) -> DataLoader:
        return seeded_loader(self.val_set, self.batch_size, self.num_workers, self.seed, False)

    def test_dataloader(self) -> DataLoader:
        return seeded_loader(self.test_set, self.batch_size, self.num_workers, self.seed, False)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()

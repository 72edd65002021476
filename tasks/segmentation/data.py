"""Image + mask folders -> tensors; the Lightning datamodule for segmentation.

Folder format (what users bring and what the embedded dataset is written as)::

    root/train/images/xxx.png|jpg     root/train/masks/xxx.png
    root/val/images/...               root/val/masks/...

Masks are single-channel class indices (``L`` or palette ``P`` PNGs: the palette index is
the class) or RGB images mapped through ``palette`` (a list of ``[r, g, b]`` per class).
Pixels equal to ``ignore_index`` (255 by default) are void. A mask is matched to its image
by file stem.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from tasks.sampling import SampleKey, seeded_loader
from tasks.segmentation.shapes import CLASSES, generate_shapes

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def read_mask(path: Path, palette: Sequence[Sequence[int]] | None = None, ignore_index: int = 255) -> np.ndarray:
    """Read a mask as (H, W) int64 class indices; RGB masks need ``palette``."""
    mask = Image.open(path)
    if mask.mode in ("L", "P", "I", "I;16"):
        return np.asarray(mask, dtype=np.int64)
    if palette is None:
        raise ValueError(
            f"{path}: mask has mode {mask.mode}; give data.palette (one [r, g, b] per class) for RGB masks"
        )
    rgb = np.asarray(mask.convert("RGB"), dtype=np.int64)
    out = np.full(rgb.shape[:2], ignore_index, dtype=np.int64)
    for index, colour in enumerate(palette):
        out[(rgb == np.asarray(colour)).all(-1)] = index
    return out


class MaskFolderDataset(Dataset):
    """Pairs ``images/<stem>.*`` with ``masks/<stem>.png`` under one split folder."""

    def __init__(
        self,
        split_dir: Path,
        transform: v2.Transform | None = None,
        palette: Sequence[Sequence[int]] | None = None,
        ignore_index: int = 255,
    ) -> None:
        self.split_dir = Path(split_dir)
        images = sorted(p for p in (self.split_dir / "images").glob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        masks = {p.stem: p for p in (self.split_dir / "masks").glob("*") if p.suffix.lower() in IMAGE_SUFFIXES}
        if not images:
            raise FileNotFoundError(f"data: no images in {self.split_dir / 'images'} (expected {IMAGE_SUFFIXES})")
        missing = [p.name for p in images if p.stem not in masks]
        if missing:
            raise FileNotFoundError(
                f"data: {len(missing)} image(s) without a mask in {self.split_dir / 'masks'}, e.g. {missing[:3]}"
            )
        self.samples = [(p, masks[p.stem]) for p in images]
        self.transform = transform
        self.palette = palette
        self.ignore_index = ignore_index

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: int | SampleKey) -> tuple[Tensor, Tensor]:
        index, seed = SampleKey.of(key)
        image_path, mask_path = self.samples[index]
        image = tv_tensors.Image(torch.from_numpy(np.array(Image.open(image_path).convert("RGB"))).permute(2, 0, 1))
        mask = tv_tensors.Mask(torch.from_numpy(read_mask(mask_path, self.palette, self.ignore_index)))
        if self.transform is not None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                image, mask = self.transform(image, mask)
        return image.as_subclass(Tensor), mask.as_subclass(Tensor).long()


def build_transforms(train: bool, image_size: int | None) -> v2.Transform:
    """Geometric augmentation on image+mask together, photometric on the image only."""
    steps: list[v2.Transform] = []
    if image_size is not None:
        steps.append(v2.Resize((image_size, image_size), antialias=True))
    if train:
        steps += [
            v2.RandomHorizontalFlip(),
            v2.RandomVerticalFlip(),
            v2.RandomApply([v2.RandomAffine(degrees=20, scale=(0.85, 1.15))], p=0.5),
            v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2),
        ]
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    return v2.Compose(steps)


class SegmentationDataModule(L.LightningDataModule):
    """Image/mask folders (``root``), or the embedded shapes set when ``root`` is null.

    The shapes set is generated on first use under ``cache_dir`` (relative to the working
    directory) with the settings in ``shapes`` (num_train, num_val, size, seed).
    """

    def __init__(
        self,
        root: str | None = None,
        train_split: str = "train",
        val_split: str = "val",
        test_split: str | None = None,
        image_size: int | None = None,
        batch_size: int = 16,
        num_workers: int = 0,
        palette: list[list[int]] | None = None,
        ignore_index: int = 255,
        augment: bool = True,
        shapes: dict[str, Any] | None = None,
        cache_dir: str = "data/generated/shapes_segmentation",
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.root = Path(root) if root is not None else None
        self.splits = {"train": train_split, "val": val_split, "test": test_split or val_split}
        self.image_size = image_size
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.palette = palette
        self.ignore_index = ignore_index
        self.augment = augment
        self.shapes = dict(shapes or {})
        accepted = ("num_train", "num_val", "size", "seed")
        if set(self.shapes) - set(accepted):
            raise ValueError(
                f"data.shapes: unknown key(s) {sorted(set(self.shapes) - set(accepted))}; "
                f"accepted: {', '.join(accepted)}"
            )
        self.cache_dir = Path(cache_dir)
        self.seed = seed
        self.class_names: tuple[str, ...] | None = CLASSES if root is None else None

    def prepare_data(self) -> None:
        if self.root is None:
            generate_shapes(self.cache_dir, **self.shapes)

    def _dataset(self, stage: str) -> MaskFolderDataset:
        root = self.root if self.root is not None else generate_shapes(self.cache_dir, **self.shapes)
        split_dir = root / self.splits[stage]
        if not split_dir.is_dir():
            raise FileNotFoundError(f"data.root: {split_dir} does not exist (expected {root}/<split>/images|masks)")
        transform = build_transforms(train=stage == "train" and self.augment, image_size=self.image_size)
        return MaskFolderDataset(split_dir, transform, self.palette, self.ignore_index)

    def setup(self, stage: str | None = None) -> None:
        if stage in ("fit", None):
            self.train_set = self._dataset("train")
            self.val_set = self._dataset("val")
        if stage in ("validate",):
            self.val_set = self._dataset("val")
        if stage in ("test", "predict"):
            self.test_set = self._dataset("test")

    def _loader(self, dataset: Dataset, shuffle: bool) -> DataLoader:
        return seeded_loader(dataset, self.batch_size, self.num_workers, self.seed, shuffle)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, shuffle=False)

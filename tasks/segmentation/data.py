"""Image + mask folders -> tensors; the Lightning datamodule for segmentation.

Folder format (what users bring and what the embedded dataset is written as)::

    root/train/images/xxx.png|jpg     root/train/masks/xxx.png
    root/val/images/...               root/val/masks/...

Masks are single-channel class indices (``L`` or palette ``P`` PNGs: the palette index is
the class) or RGB images mapped through ``palette`` (a list of ``[r, g, b]`` per class).
Pixels equal to ``ignore_index`` (255 by default) are void. A mask is matched to its image
by file stem.

Every pair is checked when the datamodule indexes it (``setup``), never mid-epoch: an image or
mask that is missing, empty, truncated or not an image, a mask whose size differs from its
image, or mask values outside ``0 .. num_classes - 1`` other than ``ignore_index`` raise
:class:`~tasks.datacheck.DataError` naming the file, or (``skip_bad``) drop the pair with one
warning and a count.

Prediction reads a folder of unlabelled images (``predict_dir``) of any size with the
checkpoint's own preprocessing (its ``image_size``, saved in the datamodule state).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from tasks.datacheck import BadItems, DataError, image_problem
from tasks.sampling import SampleKey, seeded_loader
from tasks.segmentation.shapes import CLASSES, generate_shapes

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def read_image(path: Path) -> tv_tensors.Image:
    """Read an image as (3, H, W) uint8 RGB; 16-bit images map their full range 0..65535 to 0..255."""
    with Image.open(path) as image:
        if image.mode.startswith("I;16"):  # Pillow's RGB conversion would clip every value above 255
            image = Image.fromarray((np.asarray(image, dtype=np.float32) / 257.0 + 0.5).astype(np.uint8))
        return tv_tensors.Image(torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1))


def image_mode_problem(path: Path) -> str | None:
    """None for the pixel formats :func:`read_image` converts faithfully (8-bit, 16-bit), else what is wrong."""
    with Image.open(path) as image:
        if image.mode in ("I", "F"):
            return f"32-bit image (mode {image.mode}): save it as 8- or 16-bit, scaled to that range"
    return None


def read_mask(path: Path, palette: Sequence[Sequence[int]] | None = None, ignore_index: int = 255) -> np.ndarray:
    """Read a mask as (H, W) int64 class indices; RGB masks need ``palette``."""
    mask = Image.open(path)
    if mask.mode in ("1", "L", "P", "I", "I;16"):
        return np.asarray(mask, dtype=np.int64)
    if palette is None:
        raise DataError(f"{path}: mask has mode {mask.mode}; give data.palette (one [r, g, b] per class) for RGB masks")
    rgb = np.asarray(mask.convert("RGB"), dtype=np.int64)
    out = np.full(rgb.shape[:2], ignore_index, dtype=np.int64)
    for index, colour in enumerate(palette):
        out[(rgb == np.asarray(colour)).all(-1)] = index
    return out


def list_images(folder: Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name."""
    return sorted(p for p in folder.glob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def pair_problem(
    image: Path, mask: Path, palette: Sequence[Sequence[int]] | None, ignore_index: int, num_classes: int | None
) -> tuple[Path, str] | None:
    """The file at fault and what is wrong with an image/mask pair, or None when it is usable."""
    for path in (image, mask):
        if (problem := image_problem(path)) is not None:
            return path, problem
    if (problem := image_mode_problem(image)) is not None:
        return image, problem
    with Image.open(image) as opened:
        width, height = opened.size
    labels = read_mask(mask, palette, ignore_index)
    if labels.shape != (height, width):
        return mask, f"mask is {labels.shape[1]}x{labels.shape[0]} but its image {image.name} is {width}x{height}"
    if num_classes is not None:
        bad = np.unique(labels[((labels < 0) | (labels >= num_classes)) & (labels != ignore_index)])
        if bad.size:
            return mask, (
                f"mask values {bad[:5].tolist()} are outside the classes 0..{num_classes - 1} "
                f"(model.num_classes={num_classes}) and not data.ignore_index={ignore_index}"
            )
    return None


class MaskFolderDataset(Dataset):
    """Pairs ``images/<stem>.*`` with ``masks/<stem>.*`` under one split folder, checking every pair.

    ``num_classes`` (None: no range check) bounds the mask values; bad pairs raise
    :class:`~tasks.datacheck.DataError`, or are dropped with one warning when ``skip_bad``.
    """

    def __init__(
        self,
        split_dir: Path,
        transform: v2.Transform | None = None,
        palette: Sequence[Sequence[int]] | None = None,
        ignore_index: int = 255,
        num_classes: int | None = None,
        skip_bad: bool = False,
    ) -> None:
        self.split_dir = Path(split_dir)
        images = list_images(self.split_dir / "images")
        masks = {p.stem: p for p in list_images(self.split_dir / "masks")}
        if not images:
            raise DataError(f"data: no images in {self.split_dir / 'images'} (expected {', '.join(IMAGE_SUFFIXES)})")
        bad = BadItems(skip_bad, what="image/mask pairs")
        self.samples: list[tuple[Path, Path]] = []
        for image in images:
            if image.stem not in masks:
                bad.report(image, f"no mask named {image.stem}.* in {self.split_dir / 'masks'}")
            elif (problem := pair_problem(image, masks[image.stem], palette, ignore_index, num_classes)) is not None:
                bad.report(*problem)
            else:
                self.samples.append((image, masks[image.stem]))
        bad.finish(len(images))
        if not self.samples:
            raise DataError(f"data: no usable image/mask pair in {self.split_dir} (all {len(images)} skipped)")
        self.transform = transform
        self.palette = palette
        self.ignore_index = ignore_index

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: int | SampleKey) -> tuple[Tensor, Tensor]:
        index, seed = SampleKey.of(key)
        image_path, mask_path = self.samples[index]
        image = read_image(image_path)
        mask = tv_tensors.Mask(torch.from_numpy(read_mask(mask_path, self.palette, self.ignore_index)))
        if self.transform is not None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                image, mask = self.transform(image, mask)
        return image.as_subclass(Tensor), mask.as_subclass(Tensor).long()


class ImageFolderDataset(Dataset):
    """The images of one folder, no labels (prediction): ``(image, (h, w) before transform, index)``.

    ``name`` names the output folder under ``predictions/`` (the folder's name, or its parent's
    for a split's ``images/``). Unreadable images and two images with one stem (their outputs
    would collide) raise :class:`~tasks.datacheck.DataError`, or are skipped when ``skip_bad``.
    """

    def __init__(self, folder: Path, transform: v2.Transform | None = None, skip_bad: bool = False) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise DataError(f"data.predict_dir: {self.folder} is not a folder")
        images = list_images(self.folder)
        if not images:
            raise DataError(f"data.predict_dir: no images in {self.folder} (expected {', '.join(IMAGE_SUFFIXES)})")
        bad = BadItems(skip_bad, what="images")
        self.paths: list[Path] = []
        stems: dict[str, Path] = {}
        for path in images:
            if (problem := image_problem(path) or image_mode_problem(path)) is not None:
                bad.report(path, problem)
            elif path.stem in stems:
                bad.report(path, f"same stem as {stems[path.stem].name}: both would write {path.stem}.png")
            else:
                stems[path.stem] = path
                self.paths.append(path)
        bad.finish(len(images))
        if not self.paths:
            raise DataError(f"data.predict_dir: no readable image in {self.folder}")
        self.name = self.folder.parent.name if self.folder.name == "images" else self.folder.name
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key: int | SampleKey) -> tuple[Tensor, tuple[int, int], int]:
        index = SampleKey.of(key).index
        image = read_image(self.paths[index])
        size = (image.shape[-2], image.shape[-1])
        if self.transform is not None:
            image = self.transform(image)
        return image.as_subclass(Tensor), size, index


def collate_images(items: list[tuple[Tensor, tuple[int, int], int]]) -> dict[str, Tensor]:
    """Images of different sizes -> one batch, edge-padded at the bottom/right to the largest.

    ``size``: each image's extent inside the padded batch; ``original``: its size on disk (the
    size its class map is written at); ``index``: its position in the dataset.
    """
    height = max(image.shape[-2] for image, _, _ in items)
    width = max(image.shape[-1] for image, _, _ in items)
    padded = [
        F.pad(image[None], (0, width - image.shape[-1], 0, height - image.shape[-2]), mode="replicate")[0]
        for image, _, _ in items
    ]
    return {
        "image": torch.stack(padded),
        "size": torch.tensor([tuple(image.shape[-2:]) for image, _, _ in items]),
        "original": torch.tensor([size for _, size, _ in items]),
        "index": torch.tensor([index for _, _, index in items]),
    }


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

    ``num_classes`` bounds the mask values checked at setup; None takes the task's (its
    ``mask_classes``: ``model.num_classes``, or no bound in binary mode where any value > 0 is
    foreground). ``predict_dir``: a folder of unlabelled images to predict on (default: the test
    split's images). The preprocessing (``image_size``) is saved in every checkpoint and is what
    validate/test/predict from that checkpoint use.
    """

    def __init__(
        self,
        root: str | None = None,
        train_split: str = "train",
        val_split: str = "val",
        test_split: str | None = None,
        predict_dir: str | None = None,
        image_size: int | None = None,
        batch_size: int = 16,
        num_workers: int = 0,
        palette: list[list[int]] | None = None,
        ignore_index: int = 255,
        num_classes: int | None = None,
        skip_bad: bool = False,
        augment: bool = True,
        shapes: dict[str, Any] | None = None,
        cache_dir: str = "data/generated/shapes_segmentation",
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.root = Path(root) if root is not None else None
        self.splits = {"train": train_split, "val": val_split, "test": test_split or val_split}
        self.predict_dir = Path(predict_dir) if predict_dir is not None else None
        self.image_size = image_size
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.palette = palette
        self.ignore_index = ignore_index
        self.num_classes = num_classes
        self.skip_bad = skip_bad
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

    def _split_dir(self, stage: str) -> Path:
        root = self.root if self.root is not None else generate_shapes(self.cache_dir, **self.shapes)
        split_dir = root / self.splits[stage]
        if not split_dir.is_dir():
            raise DataError(f"data.root: {split_dir} does not exist (expected {root}/<split>/images|masks)")
        return split_dir

    def _mask_classes(self) -> int | None:
        if self.num_classes is not None:
            return self.num_classes
        task = self.trainer.lightning_module if self.trainer is not None else None
        if task is not None and hasattr(task, "mask_classes"):
            return task.mask_classes
        return len(CLASSES) if self.root is None else None

    def _dataset(self, stage: str) -> MaskFolderDataset:
        return MaskFolderDataset(
            self._split_dir(stage), None, self.palette, self.ignore_index, self._mask_classes(), self.skip_bad
        )

    def setup(self, stage: str | None = None) -> None:
        if stage in ("fit", None):
            self.train_set = self._dataset("train")
            self.val_set = self._dataset("val")
        if stage in ("validate",):
            self.val_set = self._dataset("val")
        if stage in ("test",):
            self.test_set = self._dataset("test")
        if stage in ("predict",):
            folder = self.predict_dir or self._split_dir("test") / "images"
            self.predict_set = ImageFolderDataset(folder, skip_bad=self.skip_bad)

    def state_dict(self) -> dict[str, Any]:
        """The preprocessing a checkpoint was trained with."""
        return {"image_size": self.image_size}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Use the checkpoint's preprocessing (a differing ``data.image_size`` is overridden, with a warning)."""
        if "image_size" not in state_dict:
            return
        if state_dict["image_size"] != self.image_size:
            warnings.warn(
                f"data.image_size={self.image_size} differs from the checkpoint's {state_dict['image_size']}; "
                "using the checkpoint's",
                stacklevel=2,
            )
        self.image_size = state_dict["image_size"]

    def _loader(self, dataset: Dataset, train: bool, **kwargs: Any) -> DataLoader:
        # transforms are built here, after Lightning restored a checkpoint's preprocessing
        dataset.transform = build_transforms(train=train and self.augment, image_size=self.image_size)
        return seeded_loader(dataset, self.batch_size, self.num_workers, self.seed, shuffle=train, **kwargs)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, train=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.predict_set, train=False, collate_fn=collate_images)

"""Identity folders for training, verification pairs for evaluation; the face datamodule.

Formats (what users bring and what the embedded synthetic set is written as)::

    root/<train_dir>/<identity>/<image>.png|jpg     one folder per identity (ImageFolder style)
    root/<pairs>                                      verification pairs: a CSV with a header
                                                      ``path1,path2,same`` (paths relative to root,
                                                      same in {0, 1}) or an LFW ``pairs.txt``

LFW ``pairs.txt``: lines ``name idx1 idx2`` (same person) and ``name1 idx1 name2 idx2`` (different),
images at ``root/<lfw_images>/<name>/<name>_<idx:04d>.jpg``; a first line holding only numbers
(the fold header) is skipped.

Prediction embeds a folder of face images (``predict_dir``, searched recursively, so identity
sub-folders are fine; default: the held-out ``val`` folder of the root, else the training folder),
resized to ``image_size`` (default: the first image's size).

Corrupt data is found when the data is indexed (``setup``), never mid-epoch: every identity image
and every image a pair names is decoded once. An unreadable image, an identity folder without a
readable image, a pair naming a missing or unreadable file, or a malformed pairs line raises
:class:`~tasks.datacheck.DataError` naming the file (and line); with ``skip_bad`` (config
``data.skip_bad: true``) the image, identity or pair is dropped and one warning counts them.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from tasks.datacheck import BadItems, DataError, image_problem
from tasks.face.synthetic import generate_identities
from tasks.sampling import SampleKey, seeded_loader

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
SYNTHETIC_KEYS = (
    "num_identities", "images_per_identity", "num_val_identities", "val_images_per_identity", "num_pairs", "size",
    "seed",
)


def _load(path: Path) -> Tensor:
    return torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)


class RandomShift(torch.nn.Module):
    """Zero-pad by ``pad`` pixels and crop back to the input size at a random offset (a translation jitter)."""

    def __init__(self, pad: int) -> None:
        super().__init__()
        self.pad = pad

    def forward(self, image: Tensor) -> Tensor:
        h, w = image.shape[-2:]
        padded = torch.nn.functional.pad(image, (self.pad,) * 4)
        i, j = torch.randint(0, 2 * self.pad + 1, (2,)).tolist()
        return padded[..., i : i + h, j : j + w]


def build_transform(train: bool, image_size: int | None) -> v2.Transform:
    steps: list[v2.Transform] = []
    if image_size is not None:
        steps.append(v2.Resize((image_size, image_size), antialias=True))
    if train:
        steps += [v2.RandomHorizontalFlip(), RandomShift(max(1, (image_size or 32) // 16))]
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))]
    return v2.Compose(steps)


class IdentityFolder(Dataset):
    """``root/<identity>/<image>``: (image, identity index); identities sorted by folder name.

    Unreadable images and identity folders without a readable image raise :class:`DataError`, or are
    left out with one warning when ``skip_bad`` (an identity left out gets no class index).
    """

    def __init__(self, root: Path, transform: v2.Transform | None = None, skip_bad: bool = False) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"data: identity folder {self.root} does not exist (expected root/<identity>/*)")
        bad = BadItems(skip_bad, "identity images or folders")
        self.classes: list[str] = []
        self.samples: list[tuple[Path, int]] = []
        checked = 0
        for folder in sorted(p for p in self.root.iterdir() if p.is_dir()):
            images = [p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]
            good = []
            for image in images:
                checked += 1
                if (problem := image_problem(image)) is None:
                    good.append(image)
                else:
                    bad.report(image, problem)
            if not good:
                checked += not images
                bad.report(folder, "identity folder holds no readable image" if images else
                           f"empty identity folder (no {'/'.join(IMAGE_SUFFIXES)} files)")
                continue
            self.samples += [(image, len(self.classes)) for image in good]
            self.classes.append(folder.name)
        bad.finish(checked)
        if not self.samples:
            raise DataError(f"data: no readable images under {self.root}/<identity>/ (expected {IMAGE_SUFFIXES})")
        self.transform = transform
        self._cache: dict[int, Tensor] = {}

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: int | SampleKey) -> tuple[Tensor, int]:
        index, seed = SampleKey.of(key)
        path, label = self.samples[index]
        if index not in self._cache:  # decoded once: identity sets for CPU recipes are small
            self._cache[index] = _load(path)
        image = self._cache[index]
        if self.transform is not None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                image = self.transform(image)
        return image, label


def _pair_rows(root: Path, path: Path, lfw_images: str) -> list[tuple[int, list[str] | tuple[Path, Path, int]]]:
    """(line number, pair) for each pair line; a malformed line gives its fields (a list) instead of a pair."""
    rows: list[tuple[int, list[str] | tuple[Path, Path, int]]] = []
    if path.suffix.lower() == ".csv":
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or not {"path1", "path2", "same"} <= set(reader.fieldnames):
                raise DataError(f"{path}: needs a header path1,path2,same (data.pairs)")
            for number, row in enumerate(reader, start=2):
                fields = [row.get("path1") or "", row.get("path2") or "", (row.get("same") or "").strip()]
                ok = all(fields) and fields[2] in ("0", "1")
                rows.append((number, (root / fields[0], root / fields[1], int(fields[2])) if ok else fields))
        return rows

    def image(name: str, idx: str) -> Path:
        return root / lfw_images / name / f"{name}_{int(idx):04d}.jpg"

    for number, line in enumerate(path.read_text().splitlines(), start=1):
        parts = line.split()
        if not parts or (number == 1 and all(p.isdigit() for p in parts)):
            continue  # blank, or the fold header
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            rows.append((number, (image(parts[0], parts[1]), image(parts[0], parts[2]), 1)))
        elif len(parts) == 4 and parts[1].isdigit() and parts[3].isdigit():
            rows.append((number, (image(parts[0], parts[1]), image(parts[2], parts[3]), 0)))
        else:
            rows.append((number, parts))
    return rows


def read_pairs(
    root: Path, pairs: str, lfw_images: str = "lfw", skip_bad: bool = False
) -> list[tuple[Path, Path, int]]:
    """Verification pairs from a ``path1,path2,same`` CSV or an LFW ``pairs.txt`` (see the module docstring).

    A malformed line, or a pair naming a missing or unreadable image, raises :class:`DataError` naming the
    pairs file, its line and the image; ``skip_bad`` drops the pair with one warning.
    """
    path = root / pairs
    if not path.is_file():
        raise DataError(f"{path}: pairs file does not exist (data.pairs)")
    bad = BadItems(skip_bad, "verification pairs")
    problems: dict[Path, str | None] = {}  # an image shared by several pairs is decoded once
    out: list[tuple[Path, Path, int]] = []
    rows = _pair_rows(root, path, lfw_images)
    for number, row in rows:
        if isinstance(row, list):
            expected = "path1,path2,same with same 0 or 1" if path.suffix.lower() == ".csv" else \
                "'name idx1 idx2' or 'name1 idx1 name2 idx2'"
            bad.report(f"{path}:{number}", f"malformed pair {row} (expected {expected})")
            continue
        for image in row[:2]:
            if image not in problems:
                problems[image] = image_problem(image)
        broken = next(((image, problems[image]) for image in row[:2] if problems[image] is not None), None)
        if broken is None:
            out.append(row)
        else:
            bad.report(f"{path}:{number}", f"{broken[0]}: {broken[1]}")
    bad.finish(len(rows))
    if not out:
        raise DataError(f"{path}: lists no usable pairs (data.pairs)")
    return out


class PairDataset(Dataset):
    """(image1, image2, same) for verification."""

    def __init__(self, pairs: list[tuple[Path, Path, int]], transform: v2.Transform) -> None:
        self.pairs = pairs
        self.transform = transform

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, key: int | SampleKey) -> tuple[Tensor, Tensor, int]:
        a, b, same = self.pairs[SampleKey.of(key).index]
        return self.transform(_load(a)), self.transform(_load(b)), same


class FaceImages(Dataset):
    """Every image under ``folder`` (recursively, sorted), no labels: ``(image, index)``; ``paths`` relative names.

    ``name`` names the output folder under ``predictions/``. Unreadable images raise :class:`DataError`,
    or are skipped with one warning when ``skip_bad``.
    """

    def __init__(self, folder: Path, image_size: int | None = None, skip_bad: bool = False) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise DataError(f"data.predict_dir: {self.folder} is not a folder")
        images = sorted(p for p in self.folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        bad = BadItems(skip_bad, "images")
        self.paths: list[Path] = []
        for path in images:
            if (problem := image_problem(path)) is None:
                self.paths.append(path)
            else:
                bad.report(path, problem)
        bad.finish(len(images))
        if not self.paths:
            raise DataError(f"data.predict_dir: no readable image under {self.folder} (expected {IMAGE_SUFFIXES})")
        self.name = self.folder.name
        size = image_size or max(Image.open(self.paths[0]).size)  # one size for the batch (resize, as training)
        self.transform = build_transform(False, size)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key: int | SampleKey) -> tuple[Tensor, int]:
        index = SampleKey.of(key).index
        return self.transform(_load(self.paths[index])), index


class FaceDataModule(L.LightningDataModule):
    """Identity folders + verification pairs (``root``), or the embedded synthetic identities when ``root`` is null.

    The synthetic set is generated on first use under ``cache_dir`` with the settings in
    ``synthetic`` (num_identities, images_per_identity, num_val_identities, val_images_per_identity,
    num_pairs, size, seed); its verification identities are disjoint from the training ones.
    ``predict_dir``: the images to embed in ``predict`` (see the module docstring).
    ``skip_bad``: drop unreadable images, empty identity folders and broken pairs with one warning
    instead of raising :class:`~tasks.datacheck.DataError` (see the module docstring).
    """

    def __init__(
        self,
        root: str | None = None,
        train_dir: str = "train",
        pairs: str = "val_pairs.csv",
        test_pairs: str | None = None,
        lfw_images: str = "lfw",
        image_size: int | None = None,
        batch_size: int = 64,
        num_workers: int = 0,
        augment: bool = True,
        synthetic: dict[str, Any] | None = None,
        cache_dir: str = "data/generated/face_identities",
        seed: int = 0,
        predict_dir: str | None = None,
        skip_bad: bool = False,
    ) -> None:
        super().__init__()
        self.root = Path(root) if root is not None else None
        self.train_dir, self.pairs, self.test_pairs, self.lfw_images = train_dir, pairs, test_pairs, lfw_images
        self.image_size, self.batch_size, self.num_workers, self.augment = image_size, batch_size, num_workers, augment
        self.synthetic = dict(synthetic or {})
        unknown = set(self.synthetic) - set(SYNTHETIC_KEYS)
        if unknown:
            raise ValueError(f"data.synthetic: unknown key(s) {sorted(unknown)}; accepted: {', '.join(SYNTHETIC_KEYS)}")
        self.cache_dir = Path(cache_dir)
        self.seed = seed
        self.skip_bad = skip_bad
        self.predict_dir = Path(predict_dir) if predict_dir is not None else None

    def _root(self) -> Path:
        return self.root if self.root is not None else generate_identities(self.cache_dir, **self.synthetic)

    def prepare_data(self) -> None:
        self._root()

    def setup(self, stage: str | None = None) -> None:
        root = self._root()
        if stage == "predict":
            folder = self.predict_dir or (root / "val" if (root / "val").is_dir() else root / self.train_dir)
            self.predict_set = FaceImages(folder, self.image_size, self.skip_bad)
            return
        self.train_set = IdentityFolder(root / self.train_dir, build_transform(self.augment, self.image_size),
                                        self.skip_bad)
        evaluation = build_transform(False, self.image_size)
        val = read_pairs(root, self.pairs, self.lfw_images, self.skip_bad)
        self.val_set = PairDataset(val, evaluation)
        test = self.test_pairs or self.pairs
        if test != self.pairs:
            val = read_pairs(root, test, self.lfw_images, self.skip_bad)
        self.test_set = PairDataset(val, evaluation)

    @property
    def num_classes(self) -> int:
        return self.train_set.num_classes

    def train_dataloader(self) -> DataLoader:
        return seeded_loader(self.train_set, self.batch_size, self.num_workers, self.seed, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return seeded_loader(self.val_set, self.batch_size, self.num_workers, self.seed, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return seeded_loader(self.test_set, self.batch_size, self.num_workers, self.seed, shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return seeded_loader(self.predict_set, self.batch_size, self.num_workers, self.seed, shuffle=False)

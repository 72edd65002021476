"""Image folders -> tensors in [-1, 1]; the embedded dehazing set; the Lightning datamodule.

Folder format (what users bring and what the embedded set is written as)::

    root/train/A/xxx.png   root/train/B/xxx.png      (A: input, e.g. hazy; B: target, same file name)
    root/val/A/...         root/val/B/...

read as pairs (pix2pix), as two unpaired domains (CycleGAN), or, for inpainting, as the complete
images ``B/`` with random or given hole masks. Every file is checked when the data is indexed.

The embedded set (``root: null``) is generated once under ``cache_dir`` from photographs shipped in
scikit-image and scikit-learn, hazed with the atmospheric scattering model
``I = J t + A (1 - t)``, ``t = exp(-beta d)`` (Koschmieder; McCartney 1976): the depth ``d`` of
scikit-image's stereo motorcycle comes from its ground-truth disparity (``d ~ 1 / disparity``), the
other photos get a smooth random depth (a vertical ramp plus upsampled noise). Seeds are fixed, so
the same settings always write the same files; validation photos are disjoint from training photos.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from tasks.datacheck import BadItems, DataError, image_problem, image_size
from tasks.sampling import SampleKey, seeded_loader

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
TRAIN_PHOTOS = ("stereo_motorcycle", "astronaut", "coffee", "immunohistochemistry", "hubble_deep_field", "china")
VAL_PHOTOS = ("chelsea", "rocket", "flower")
DEHAZE_KEYS = ("num_train", "num_val", "size", "seed", "beta", "airlight")
MODES = ("paired", "unpaired", "inpaint")


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
    """Write the embedded dehazing set (once per settings, in its own sub-folder) and return its folder.

    The folder is named by the settings, so two settings never share (or half-overwrite) files; it is
    written under a temporary name and renamed when complete, so a concurrent or interrupted run
    never reads a partial set.
    """
    settings = {"num_train": num_train, "num_val": num_val, "size": size, "seed": seed,
                "beta": list(beta), "airlight": list(airlight), "version": 1}
    digest = hashlib.blake2b(json.dumps(settings, sort_keys=True).encode(), digest_size=4).hexdigest()
    final = Path(root) / f"n{num_train}-{num_val}_s{size}_seed{seed}_{digest}"
    if (final / "settings.json").is_file():
        return final
    root = final.with_name(f"{final.name}.tmp-{os.getpid()}")
    shutil.rmtree(root, ignore_errors=True)
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
    (root / "settings.json").write_text(json.dumps(settings))
    try:
        root.rename(final)
    except OSError:  # another process finished the same set first
        shutil.rmtree(root, ignore_errors=True)
    return final


# --------------------------------------------------------------------------- folders


def list_images(folder: Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name."""
    return sorted(p for p in folder.glob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def read_image(path: Path) -> Tensor:
    """An RGB image as float32 (3, H, W) in [-1, 1] (the tanh range of the generators)."""
    with Image.open(path) as image:
        array = np.asarray(image.convert("RGB"), dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def read_mask(path: Path) -> Tensor:
    """A hole mask as float32 (1, H, W): 1 where the pixel is missing (non-zero in the file), 0 where valid."""
    with Image.open(path) as image:
        array = np.asarray(image.convert("L")) > 0
    return torch.from_numpy(array).to(torch.float32)[None]


def random_mask(height: int, width: int, seed: int) -> Tensor:
    """1 to 3 random rectangular holes, each side 1/4 to 1/2 of the image's, as (1, H, W) in {0, 1}."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(1, height, width)
    for _ in range(int(torch.randint(1, 4, (), generator=g))):
        h = int(torch.randint(height // 4, height // 2 + 1, (), generator=g))
        w = int(torch.randint(width // 4, width // 2 + 1, (), generator=g))
        y = int(torch.randint(0, height - h + 1, (), generator=g))
        x = int(torch.randint(0, width - w + 1, (), generator=g))
        mask[:, y : y + h, x : x + w] = 1.0
    return mask


def _by_stem(images: list[Path], bad: BadItems) -> dict[str, Path]:
    """stem -> readable image; unreadable files and a second file with a taken stem are reported."""
    out: dict[str, Path] = {}
    for path in images:
        if (problem := image_problem(path)) is not None:
            bad.report(path, problem)
        elif path.stem in out:
            bad.report(path, f"same name as {out[path.stem].name} (one file per name)")
        else:
            out[path.stem] = path
    return out


def _no_images(folder: Path) -> DataError:
    return DataError(f"data: no readable images in {folder} (expected {', '.join(IMAGE_SUFFIXES)})")


class _Augment:
    """The training augmentation, a function of the sample seed: one random crop and one flip for all tensors."""

    def __init__(self, crop: int | None, flip: bool) -> None:
        self.crop, self.flip = crop, flip

    def __call__(self, seed: int, *tensors: Tensor) -> list[Tensor]:
        out = list(tensors)
        if self.crop is not None:
            h, w = out[0].shape[-2:]
            if h < self.crop or w < self.crop:
                raise DataError(f"data.crop: {self.crop} px is larger than a {h}x{w} training image")
            g = torch.Generator().manual_seed(seed)
            y = int(torch.randint(0, h - self.crop + 1, (), generator=g))
            x = int(torch.randint(0, w - self.crop + 1, (), generator=g))
            out = [t[..., y : y + self.crop, x : x + self.crop] for t in out]
        if self.flip and seed % 2:
            out = [t.flip(-1) for t in out]
        return out


class PairedFolderDataset(Dataset):
    """Pairs ``A/<name>.*`` with ``B/<name>.*`` (the same file stem) under one split folder.

    At construction every file is decoded once: an image without its partner, an unreadable or
    empty file, and a pair of different sizes raise :class:`DataError` naming the file, or are
    skipped with one warning (``skip_bad``).
    """

    def __init__(self, split_dir: Path, a: str = "A", b: str = "B", augment: _Augment | None = None,
                 skip_bad: bool = False) -> None:
        self.split_dir = Path(split_dir)
        inputs, targets = list_images(self.split_dir / a), list_images(self.split_dir / b)
        if not inputs:
            raise _no_images(self.split_dir / a)
        bad = BadItems(skip_bad, what="A/B pairs")
        found_a, found_b = _by_stem(inputs, bad), _by_stem(targets, bad)
        self.samples: list[tuple[Path, Path]] = []
        for stem, path in found_a.items():
            partner = found_b.get(stem)
            if partner is None:
                bad.report(path, f"no partner named {stem}.* in {self.split_dir / b}")
            elif (size := image_size(path)) != (other := image_size(partner)):
                bad.report(path, f"{size[0]}x{size[1]} but its partner {partner} is {other[0]}x{other[1]}")
            else:
                self.samples.append((path, partner))
        a_stems = {p.stem for p in inputs}  # an unreadable A file was reported already, not its partner
        for stem, path in found_b.items():
            if stem not in a_stems:
                bad.report(path, f"no partner named {stem}.* in {self.split_dir / a}")
        bad.finish(len(a_stems | {p.stem for p in targets}))
        if not self.samples:
            raise _no_images(self.split_dir / a)
        self.augment = augment

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: int | SampleKey) -> dict[str, Any]:
        index, seed = SampleKey.of(key)
        a, b = (read_image(p) for p in self.samples[index])
        if self.augment is not None:
            a, b = self.augment(seed, a, b)
        return {"A": a, "B": b, "index": index}


class UnpairedFolderDataset(Dataset):
    """``A/`` and ``B/`` read independently (CycleGAN): item ``i`` is ``A[i mod |A|]`` with a ``B`` image
    drawn from the sample seed in training (the original code's random B), ``B[i mod |B|]`` otherwise.

    ``paired`` is true when both folders hold the same file stems; then evaluation pairs equal stems
    and the task can report PSNR/SSIM against the B image.
    """

    def __init__(self, split_dir: Path, a: str = "A", b: str = "B", augment: _Augment | None = None,
                 train: bool = False, skip_bad: bool = False) -> None:
        self.split_dir = Path(split_dir)
        bad = BadItems(skip_bad, what="images")
        inputs, targets = list_images(self.split_dir / a), list_images(self.split_dir / b)
        found_a, found_b = _by_stem(inputs, bad), _by_stem(targets, bad)
        bad.finish(len(inputs) + len(targets))
        for folder, found in ((a, found_a), (b, found_b)):
            if not found:
                raise _no_images(self.split_dir / folder)
        self.a, self.b = list(found_a.values()), list(found_b.values())
        self.paired = set(found_a) == set(found_b)
        self.b_index = {path.stem: j for j, path in enumerate(self.b)}
        self.augment, self.train = augment, train

    def __len__(self) -> int:
        return max(len(self.a), len(self.b))

    def __getitem__(self, key: int | SampleKey) -> dict[str, Any]:
        index, seed = SampleKey.of(key)
        b_seed = (seed * 1_000_003 + 1) % 2**31  # B's own draw: its image (b_seed // 2) and its flip (b_seed % 2)
        j = (b_seed // 2) % len(self.b) if self.train else index % len(self.b)
        if not self.train and self.paired:
            j = self.b_index[self.a[index % len(self.a)].stem]
        a, b = read_image(self.a[index % len(self.a)]), read_image(self.b[j])
        if self.augment is not None:
            (a,) = self.augment(seed, a)
            (b,) = self.augment(b_seed, b)
        return {"A": a, "B": b, "index": index, "paired": not self.train and self.paired}


class InpaintDataset(Dataset):
    """Complete images ``B/`` with holes: random rectangles (``masks="random"``, a function of the
    sample seed in training and of the index otherwise) or ``<masks>/<name>.*`` (non-zero = hole).

    Items: ``B`` the image, ``mask`` (1, H, W) with 1 in the holes, ``A`` the image with holes set to 0.
    """

    def __init__(self, split_dir: Path, b: str = "B", masks: str = "random", augment: _Augment | None = None,
                 train: bool = False, skip_bad: bool = False) -> None:
        self.split_dir = Path(split_dir)
        images = list_images(self.split_dir / b)
        bad = BadItems(skip_bad, what="images")
        found = _by_stem(images, bad)
        self.masks: list[Path] | None = None
        if masks != "random":
            mask_files = _by_stem(list_images(self.split_dir / masks), bad)
            keep, self.masks = {}, []
            for stem, path in found.items():
                mask = mask_files.get(stem)
                if mask is None:
                    bad.report(path, f"no mask named {stem}.* in {self.split_dir / masks}")
                elif (size := image_size(path)) != (other := image_size(mask)):
                    bad.report(mask, f"{other[0]}x{other[1]} but its image {path} is {size[0]}x{size[1]}")
                else:
                    keep[stem] = path
                    self.masks.append(mask)
            found = keep
        bad.finish(len(images))
        if not found:
            raise _no_images(self.split_dir / b)
        self.images = list(found.values())
        self.augment, self.train = augment, train

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key: int | SampleKey) -> dict[str, Any]:
        index, seed = SampleKey.of(key)
        image = read_image(self.images[index])
        if self.masks is not None:
            mask = read_mask(self.masks[index])
        else:
            mask = random_mask(*image.shape[-2:], seed if self.train else index)
        if self.augment is not None:
            image, mask = self.augment(seed, image, mask)
        return {"A": image * (1 - mask), "B": image, "mask": mask, "index": index}


class ImageFolderDataset(Dataset):
    """Unlabelled images of one folder (prediction), any size; ``name`` names the output folder.

    Unreadable images are a :class:`DataError` or skipped (``skip_bad``). In inpainting mode the
    holes come from ``<folder>/masks/<name>.*`` where present, else from :func:`random_mask`.
    """

    def __init__(self, folder: Path, inpaint: bool = False, skip_bad: bool = False) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise DataError(f"data.predict_dir: {self.folder} is not a folder")
        images = list_images(self.folder)
        bad = BadItems(skip_bad, what="images")
        self.paths = list(_by_stem(images, bad).values())
        bad.finish(len(images))
        if not self.paths:
            raise DataError(f"data.predict_dir: no readable images in {self.folder} "
                            f"(expected {', '.join(IMAGE_SUFFIXES)})")
        self.name = self.folder.name
        self.inpaint = inpaint

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key: int | SampleKey) -> dict[str, Any]:
        index = SampleKey.of(key).index
        image = read_image(self.paths[index])
        if not self.inpaint:
            return {"A": image, "index": index}
        given = [p for p in list_images(self.folder / "masks") if p.stem == self.paths[index].stem]
        mask = read_mask(given[0]) if given else random_mask(*image.shape[-2:], index)
        if mask.shape[-2:] != image.shape[-2:]:
            raise DataError(f"{given[0]}: mask size {tuple(mask.shape[-2:])} differs from its image's "
                            f"{tuple(image.shape[-2:])}")
        return {"A": image * (1 - mask), "B": image, "mask": mask, "index": index}


class TranslationDataModule(L.LightningDataModule):
    """Image translation data: paired A/B folders, unpaired A and B folders, or images with holes.

    ``mode``: "paired" (pix2pix; ``root/<split>/{A,B}`` with equal file names), "unpaired" (CycleGAN;
    ``root/<split>/A`` and ``root/<split>/B`` independent) or "inpaint" (complete images in
    ``root/<split>/B``; ``masks``: "random" or a folder beside ``B`` with one mask per image, non-zero =
    hole). ``root: null`` uses the embedded dehazing set (``dehaze`` settings) for every mode.
    ``crop``: random training crops of this side (validation sees whole images). ``predict_dir``: a
    folder of unlabelled images to translate (default: the validation inputs). ``skip_bad``: drop
    corrupt or unmatched files with one warning instead of raising :class:`DataError`.
    """

    def __init__(
        self,
        root: str | None = None,
        mode: str = "paired",
        train_split: str = "train",
        val_split: str = "val",
        a: str = "A",
        b: str = "B",
        masks: str = "random",
        batch_size: int = 16,
        num_workers: int = 0,
        flip: bool = True,
        crop: int | None = None,
        dehaze: dict[str, Any] | None = None,
        cache_dir: str = "data/generated/dehaze",
        predict_dir: str | None = None,
        skip_bad: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"data.mode: expected one of {', '.join(MODES)}, got {mode!r}")
        if crop is not None and crop < 1:
            raise ValueError(f"data.crop: expected a positive side in pixels or null, got {crop!r}")
        self.root = Path(root) if root is not None else None
        self.mode = mode
        self.splits = {"train": train_split, "val": val_split, "test": val_split}
        self.a, self.b, self.masks = a, b, masks
        self.batch_size, self.num_workers, self.flip, self.crop = batch_size, num_workers, flip, crop
        self.dehaze = dict(dehaze or {})
        unknown = set(self.dehaze) - set(DEHAZE_KEYS)
        if unknown:
            raise ValueError(f"data.dehaze: unknown key(s) {sorted(unknown)}; accepted: {', '.join(DEHAZE_KEYS)}")
        self.cache_dir = Path(cache_dir)
        self.predict_dir = Path(predict_dir) if predict_dir is not None else None
        self.skip_bad = skip_bad
        self.seed = seed

    def prepare_data(self) -> None:
        if self.root is None:
            generate_dehaze(self.cache_dir, **self.dehaze)

    def _dataset(self, stage: str) -> Dataset:
        root = self.root if self.root is not None else generate_dehaze(self.cache_dir, **self.dehaze)
        split_dir = root / self.splits[stage]
        if not split_dir.is_dir():
            raise DataError(f"data.root: {split_dir} does not exist (expected {root}/<split>/{self.a}|{self.b})")
        train = stage == "train"
        augment = _Augment(self.crop, self.flip) if train else None
        if self.mode == "paired":
            return PairedFolderDataset(split_dir, self.a, self.b, augment, self.skip_bad)
        if self.mode == "unpaired":
            return UnpairedFolderDataset(split_dir, self.a, self.b, augment, train, self.skip_bad)
        return InpaintDataset(split_dir, self.b, self.masks, augment, train, self.skip_bad)

    def setup(self, stage: str | None = None) -> None:
        if stage in ("fit", None):
            self.train_set = self._dataset("train")
        if stage in ("fit", "validate", None):
            self.val_set = self._dataset("val")
        if stage == "test":
            self.test_set = self._dataset("test")
        if stage == "predict":
            folder = self.predict_dir
            if folder is None:
                root = self.root if self.root is not None else generate_dehaze(self.cache_dir, **self.dehaze)
                folder = root / self.splits["test"] / (self.b if self.mode == "inpaint" else self.a)
            self.predict_set = ImageFolderDataset(folder, inpaint=self.mode == "inpaint", skip_bad=self.skip_bad)

    def train_dataloader(self) -> DataLoader:
        return seeded_loader(self.train_set, self.batch_size, self.num_workers, self.seed, True)

    def val_dataloader(self) -> DataLoader:
        return seeded_loader(self.val_set, self.batch_size, self.num_workers, self.seed, False)

    def test_dataloader(self) -> DataLoader:
        return seeded_loader(self.test_set, self.batch_size, self.num_workers, self.seed, False)

    def predict_dataloader(self) -> DataLoader:
        return seeded_loader(self.predict_set, 1, self.num_workers, self.seed, False)  # one size per image

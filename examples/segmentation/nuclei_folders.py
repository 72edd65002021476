"""Write StarDist's annotated nuclei image as segmentation folders: a real-format dataset to try the task on.

StarDist ships one 512x512 fluorescence image of nuclei with its instance labels (``img2d.tif``,
``mask2d.tif``, BSD-3-Clause) inside its wheel. This script cuts it into 128-px tiles, split by
position (the top three tile rows train, the bottom row validates, so no pixel is in both),
turns the instance ids into a nucleus/background mask and writes::

    OUT/train/images/r0c0.png   OUT/train/masks/r0c0.png      12 tiles, masks 0 = background, 1 = nucleus
    OUT/val/images/r3c0.png     OUT/val/masks/r3c0.png         4 tiles
    OUT/unlabelled/strip.png                                   the validation strip (128x512), no mask
    OUT/unlabelled/crop.png                                    a 300x100 crop of it, no mask

    pip download stardist==0.9.2 --no-deps -d data/downloads      # the wheel only: no install
    python examples/segmentation/nuclei_folders.py data/downloads/stardist-0.9.2-*.whl data/nuclei
"""

from __future__ import annotations

import argparse
import io
import zipfile
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

TILE = 128


def read_pair(wheel: Path) -> tuple[np.ndarray, np.ndarray]:
    """The (512, 512) image and instance mask from the stardist wheel."""
    with zipfile.ZipFile(wheel) as archive:
        image, mask = (
            tifffile.imread(io.BytesIO(archive.read(f"stardist/data/images/{name}.tif")))
            for name in ("img2d", "mask2d")
        )
    return image, mask


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Stretch the 1st-99.8th percentile range to 0-255 (fluorescence images are rarely 8-bit)."""
    low, high = np.percentile(image, (1.0, 99.8))
    return (np.clip((image - low) / (high - low), 0.0, 1.0) * 255.0).astype(np.uint8)


def write_folders(image: np.ndarray, mask: np.ndarray, out: Path) -> None:
    image, foreground = to_uint8(image), (mask > 0).astype(np.uint8)
    rows, cols = image.shape[0] // TILE, image.shape[1] // TILE
    for r in range(rows):
        split = "val" if r == rows - 1 else "train"
        for c in range(cols):
            window = np.s_[r * TILE : (r + 1) * TILE, c * TILE : (c + 1) * TILE]
            for kind, array in (("images", image[window]), ("masks", foreground[window])):
                (out / split / kind).mkdir(parents=True, exist_ok=True)
                Image.fromarray(array).save(out / split / kind / f"r{r}c{c}.png")
    strip = image[(rows - 1) * TILE :]
    (out / "unlabelled").mkdir(parents=True, exist_ok=True)
    Image.fromarray(strip).save(out / "unlabelled" / "strip.png")
    Image.fromarray(strip[10:110, 50:350]).save(out / "unlabelled" / "crop.png")  # 300x100: not a stride multiple


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("wheel", type=Path, help="the stardist wheel (pip download stardist==0.9.2 --no-deps)")
    parser.add_argument("out", type=Path, help="output root: OUT/{train,val}/{images,masks}, OUT/unlabelled")
    args = parser.parse_args()
    write_folders(*read_pair(args.wheel), args.out)
    print(f"wrote {args.out}/train (12 tiles), {args.out}/val (4 tiles), {args.out}/unlabelled (2 images)")


if __name__ == "__main__":
    main()

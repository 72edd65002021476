"""Checks a datamodule runs on its data when it indexes it, so a corrupt file is named up front.

Every datamodule takes ``skip_bad: bool = False`` (config ``data.skip_bad``) and funnels what it
finds through one :class:`BadItems`: by default the first problem raises :class:`DataError`
naming the file (and the row or annotation); with ``skip_bad`` the item is dropped, and one
warning at the end counts what was skipped and shows the first few reasons. A wrong result is
never silent.

    bad = BadItems(skip_bad, what="image/mask pairs")
    for image, mask in pairs:
        if (problem := image_problem(image)) is None:
            keep.append((image, mask))
        else:
            bad.report(image, problem)
    bad.finish()   # warns "skipped 2 of 40 image/mask pairs: ..." when skip_bad
"""

from __future__ import annotations

import warnings
from pathlib import Path

from PIL import Image, UnidentifiedImageError

__all__ = ["BadItems", "DataError", "image_problem", "image_size"]


class DataError(ValueError):
    """A data file is missing, unreadable or inconsistent; the message names the file (and row/annotation)."""


class BadItems:
    """Raise on the first bad item, or (``skip_bad``) collect them and warn once with a count."""

    def __init__(self, skip_bad: bool, what: str, show: int = 3) -> None:
        self.skip_bad = skip_bad
        self.what = what
        self.show = show
        self.problems: list[str] = []
        self.total = 0

    def report(self, where: str | Path, problem: str) -> None:
        """One bad item: ``where`` is the file (plus ``:row`` or ``[annotation id]``), ``problem`` what is wrong."""
        message = f"{where}: {problem}"
        if not self.skip_bad:
            raise DataError(f"{message} (set data.skip_bad=true to skip bad {self.what} with a warning)")
        self.problems.append(message)

    def finish(self, total: int | None = None) -> int:
        """Warn once about the skipped items (``total``: how many were checked); returns the count skipped."""
        if self.problems:
            of = f" of {total}" if total is not None else ""
            shown = "; ".join(self.problems[: self.show])
            more = f"; ... and {len(self.problems) - self.show} more" if len(self.problems) > self.show else ""
            warnings.warn(f"data.skip_bad: skipped {len(self.problems)}{of} {self.what}: {shown}{more}", stacklevel=2)
        return len(self.problems)


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of an image file after a full decode; raises :class:`DataError` naming the file."""
    problem = image_problem(path)
    if problem is not None:
        raise DataError(f"{path}: {problem}")
    with Image.open(path) as image:
        return image.size


def image_problem(path: str | Path, decode: bool = True, size: tuple[int, int] | None = None) -> str | None:
    """None when ``path`` is a readable image, else what is wrong (missing, empty, truncated, not an image).

    ``decode``: decode every pixel (finds truncated data; ``False`` reads the header only, for large
    datasets); ``size``: the (width, height) the image must have.
    """
    path = Path(path)
    if not path.is_file():
        return "missing"
    if path.stat().st_size == 0:
        return "empty file (0 bytes)"
    try:
        with Image.open(path) as image:
            if decode:
                image.load()  # a full decode: verify() misses truncated pixel data
            found = image.size
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        return f"not a readable image ({err})"
    if size is not None and found != tuple(size):
        return f"image is {found[0]}x{found[1]}, expected {size[0]}x{size[1]}"
    return None

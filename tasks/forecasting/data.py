"""Windowed time series from CSV: split by time, fill gaps per split, scale on the training part, slide windows.

The plumbing, in order (:meth:`ForecastDataModule.setup`):

1. read the series: a CSV (``data.csv``: a time column and one or more target columns) or an embedded
   public-domain series shipped inside the statsmodels wheel (``data.dataset``: ``co2``, weekly
   Mauna Loa CO2 1958-2001, 2284 weeks of which 59 are missing; ``sunspots``, yearly 1700-2008).
   A cell that is not a number, or a time that does not parse or increase, is a ``DataError``
   naming the file and line (``data.skip_bad: true`` reads bad values as missing, with a warning);
2. split by time: the first ``1 - val_fraction - test_fraction`` of the steps train, the next
   ``val_fraction`` validate, the last ``test_fraction`` test;
3. fill missing values *inside each split* (``data.fill``): ``interpolate`` (linear in the step
   index, the ends held at the nearest observed value), ``ffill`` or ``error``. Filling per split
   means no value of a later split leaks into an earlier one through an interpolation across the boundary;
4. fit the scaler (``data.scaler``) on the training part only and apply it to all three parts;
5. slide windows of ``context + horizon`` steps with ``stride`` inside each part: a window never
   crosses a split boundary (its context and its target lie in one split). Each target column
   is a separate univariate series (channel independence): a window is (column, start).

Each window item carries its scaled context and target, the MASE / RMSSE scales of its context
(:func:`losses.forecasting.naive_scale` with ``data.season``; from the context, never the target),
the scaler's ``loc`` / ``scale`` of its column (to report metrics in the data's units) and its
position (column, absolute start step) for plots.
"""

from __future__ import annotations

import csv
import datetime as dt
import importlib.metadata
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from losses.forecasting import naive_scale
from tasks.datacheck import BadItems, DataError
from tasks.sampling import SampleKey, seeded_loader

FILLS = ("interpolate", "ffill", "error")
SCALERS = ("standard", "mean", "none")
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Embedded:
    """A public-domain series inside an installed wheel."""

    package: str
    path: str
    time_column: str
    target_columns: tuple[str, ...]
    time_format: str | None
    season: int
    what: str


EMBEDDED = {
    "co2": Embedded(
        "statsmodels", "statsmodels/datasets/co2/co2.csv", "date", ("co2",), "%Y%m%d", 52,
        "weekly atmospheric CO2 at Mauna Loa (ppm), 1958-03 to 2001-12, 2284 weeks, 59 missing",
    ),
    "sunspots": Embedded(
        "statsmodels", "statsmodels/datasets/sunspots/sunspots.csv", "YEAR", ("SUNACTIVITY",), None, 11,
        "yearly sunspot numbers, 1700-2008 (309 years)",
    ),
}  # fmt: skip


@dataclass
class Series:
    """A multi-column series: ``times (L,)``, ``values (L, C)`` (NaN where missing) and the column names."""

    times: np.ndarray
    values: np.ndarray
    columns: list[str]


def embedded_path(name: str) -> Path:
    """Path of an embedded dataset's CSV inside its installed wheel (never downloaded)."""
    spec = EMBEDDED[name]
    try:
        path = Path(str(importlib.metadata.distribution(spec.package).locate_file(spec.path)))
    except importlib.metadata.PackageNotFoundError:
        path = None
    if path is None or not path.is_file():
        raise FileNotFoundError(
            f"data.dataset: {name!r} is read from the {spec.package} wheel ({spec.path}); "
            f"install it (`pip install {spec.package}`) or give data.csv"
        )
    return path


def read_csv_series(
    path: str | Path,
    time_column: str,
    target_columns: Sequence[str],
    time_format: str | None = None,
    skip_bad: bool = False,
) -> Series:
    """Read ``time_column`` and ``target_columns`` of a CSV; empty / NA / nan cells become NaN.

    Times are parsed with ``time_format`` (``strptime``) when given, else as numbers, else as ISO dates.
    They must be strictly increasing. A value that is not a number is a :class:`DataError` naming the
    file, line and column; with ``skip_bad`` it becomes a missing value (filled like the others by
    ``data.fill``, so the series keeps its spacing) and one warning counts them.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data.csv: {path} not found")
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        for key, names in (("data.time_column", [time_column]), ("data.target_columns", list(target_columns))):
            missing = [n for n in names if n not in header]
            if missing:
                raise DataError(f"{key}: column(s) {missing} not in {path}; columns: {header}")
        rows = list(reader)
    if not rows:
        raise DataError(f"data.csv: {path} has no rows")
    times = _parse_times([r[time_column] or "" for r in rows], time_format, time_column, path)
    bad = BadItems(skip_bad, "non-numeric values (read as missing)")
    values = np.array(
        [[_number(r[c], c, f"{path}:{line}", bad) for c in target_columns] for line, r in enumerate(rows, start=2)],
        dtype=np.float64,
    )
    bad.finish(total=values.size)
    return Series(times, values, list(target_columns))


def _number(text: str | None, column: str, where: str, bad: BadItems) -> float:
    text = (text or "").strip()
    if text.lower() in ("", "na", "nan", "null", "none"):
        return math.nan
    try:
        return float(text)
    except ValueError:
        bad.report(where, f"column {column!r} holds {text!r}, not a number")
        return math.nan


def _parse_times(raw: list[str], time_format: str | None, column: str, path: Path) -> np.ndarray:
    try:
        times = _times(raw, time_format)
    except ValueError:
        line = 2 + next((i for i, t in enumerate(raw) if not _parses(t, time_format)), 0)
        hint = "set data.time_format" if not time_format else f"data.time_format is {time_format!r}"
        raise DataError(
            f"data.time_column: {path}:{line}: cannot parse {raw[line - 2]!r} in column {column!r} as a time; {hint}"
        ) from None
    zero = np.timedelta64(0) if np.issubdtype(times.dtype, np.datetime64) else 0
    steps = np.diff(times) > zero
    if not steps.all():
        line = 3 + int(np.argmin(steps))
        raise DataError(
            f"data.time_column: {path}:{line}: column {column!r} is not strictly increasing here; sort the CSV by time"
        )
    return times


def _times(raw: list[str], time_format: str | None) -> np.ndarray:
    if time_format:
        return np.array([dt.datetime.strptime(t.strip(), time_format) for t in raw], dtype="datetime64[D]")
    try:
        return np.array([float(t) for t in raw])
    except ValueError:
        return np.array([t.strip() for t in raw], dtype="datetime64")


def _parses(text: str, time_format: str | None) -> bool:
    try:
        _times([text], time_format)
    except ValueError:
        return False
    return True


def split_bounds(length: int, val_fraction: float, test_fraction: float) -> dict[str, tuple[int, int]]:
    """``{split: (start, stop)}`` step ranges: train first, then val, then test (each a contiguous block)."""
    n_test = int(round(length * test_fraction))
    n_val = int(round(length * val_fraction))
    n_train = length - n_val - n_test
    return {"train": (0, n_train), "val": (n_train, n_train + n_val), "test": (n_train + n_val, length)}


def fill_missing(values: np.ndarray, how: str, where: str = "data.fill") -> np.ndarray:
    """Fill NaNs per column: ``interpolate`` (linear, ends held), ``ffill`` (leading NaNs back-filled), ``error``."""
    values = values.copy()
    for c in range(values.shape[1]):
        column = values[:, c]
        missing = np.isnan(column)
        if not missing.any():
            continue
        if how == "error":
            raise DataError(f"{where}=error: column {c} has {int(missing.sum())} missing values")
        if missing.all():
            raise DataError(f"{where}: column {c} has no observed value in a split; choose other fractions")
        steps = np.arange(len(column))
        if how == "interpolate":
            column[missing] = np.interp(steps[missing], steps[~missing], column[~missing])
        else:  # ffill: carry the last observation forward, the first one backward
            last = np.maximum.accumulate(np.where(missing, 0, steps))
            first = int(np.argmax(~missing))
            column[:] = column[last]
            column[:first] = column[first]
    return values


@dataclass
class Scaler:
    """Per-column affine scaler ``(x - loc) / scale`` fitted on the training part only."""

    kind: str
    loc: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, train: np.ndarray, kind: str) -> Scaler:
        """``standard``: mean and std; ``mean``: mean absolute value, no shift (keeps counts >= 0); ``none``."""
        columns = train.shape[1]
        loc, scale = np.zeros(columns), np.ones(columns)
        if kind == "standard":
            loc, scale = train.mean(0), train.std(0)
        elif kind == "mean":
            scale = np.abs(train).mean(0)
        scale = np.where(scale > 1e-12, scale, 1.0)  # a constant column: shift only
        return cls(kind, loc, scale)

    @property
    def shifts(self) -> bool:
        return bool(np.any(self.loc != 0))

    def transform(self, values: np.ndarray) -> np.ndarray:
        return (values - self.loc) / self.scale

    def inverse(self, values: np.ndarray) -> np.ndarray:
        return values * self.scale + self.loc


class WindowDataset(Dataset):
    """Sliding windows of one split: item ``k`` is (column, start) in column-major order.

    ``values`` is the split's scaled block ``(steps, C)``; ``offset`` its first step in the whole
    series (so ``start`` is absolute). A window covers ``[start, start + context + horizon)``.
    """

    def __init__(
        self,
        values: np.ndarray,
        context: int,
        horizon: int,
        stride: int,
        season: int,
        scaler: Scaler,
        offset: int = 0,
    ) -> None:
        self.context, self.horizon, self.season = context, horizon, season
        self.scaler, self.offset = scaler, offset
        span = context + horizon
        self.starts = list(range(0, max(values.shape[0] - span + 1, 0), stride))
        self.columns = values.shape[1]
        # every window at once, (columns * windows, span), and the naive scales of its context
        series = torch.as_tensor(values, dtype=torch.float32).T
        if self.starts:
            windows = series.unfold(1, span, 1)[:, self.starts].reshape(-1, span)
        else:
            windows = series.new_zeros(0, span)
        self.windows = windows
        self.scale = naive_scale(windows[:, :context], season, power=1) if len(windows) else windows[:, 0]
        self.sq_scale = naive_scale(windows[:, :context], season, power=2) if len(windows) else windows[:, 0]
        self.data_loc = torch.as_tensor(scaler.loc, dtype=torch.float32)
        self.data_scale = torch.as_tensor(scaler.scale, dtype=torch.float32)

    def __len__(self) -> int:
        return len(self.windows)

    def window(self, index: int) -> tuple[int, int]:
        """(column, start within the split) of window ``index``."""
        return index // len(self.starts), self.starts[index % len(self.starts)]

    def __getitem__(self, key: int | SampleKey) -> dict[str, Any]:
        index = SampleKey.of(key).index
        column, start = self.window(index)
        return {
            "context": self.windows[index, : self.context],
            "target": self.windows[index, self.context :],
            "scale": self.scale[index],
            "sq_scale": self.sq_scale[index],
            "data_loc": self.data_loc[column],
            "data_scale": self.data_scale[column],
            "column": column,
            "start": self.offset + start,
        }


class ForecastDataModule(L.LightningDataModule):
    """Train/val/test windows of a CSV or embedded series (see the module docstring for each step)."""

    def __init__(
        self,
        dataset: str | None = "co2",
        csv: str | None = None,
        time_column: str | None = None,
        target_columns: str | list[str] | None = None,
        time_format: str | None = None,
        context: int = 156,
        horizon: int = 52,
        stride: int = 1,
        eval_stride: int | None = None,
        season: int | None = None,
        val_fraction: float = 0.15,
        test_fraction: float = 0.2,
        fill: str = "interpolate",
        scaler: str = "standard",
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
        skip_bad: bool = False,
    ) -> None:
        super().__init__()
        if csv is None and dataset not in EMBEDDED:
            raise ValueError(f"data.dataset: expected one of {sorted(EMBEDDED)} (or give data.csv), got {dataset!r}")
        if csv is not None and (time_column is None or target_columns is None):
            raise ValueError("data.csv: also set data.time_column and data.target_columns")
        embedded = EMBEDDED.get(dataset) if csv is None else None
        season = season if season is not None else (embedded.season if embedded else 1)
        for key, value, low in (("context", context, 2), ("horizon", horizon, 1), ("stride", stride, 1),
                                ("season", season, 1), ("batch_size", batch_size, 1)):  # fmt: skip
            if not isinstance(value, int) or value < low:
                raise ValueError(f"data.{key}: expected an integer >= {low}, got {value!r}")
        if season >= context:
            raise ValueError(
                f"data.context: the context ({context}) must be longer than data.season ({season}): the MASE "
                "scale and the seasonal-naive baseline are taken from the context"
            )
        for key, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            if not 0 < value < 1:
                raise ValueError(f"data.{key}: expected a fraction in (0, 1), got {value!r}")
        if val_fraction + test_fraction >= 0.9:
            raise ValueError("data.val_fraction + data.test_fraction: leave at least 10% of the series to train")
        if fill not in FILLS:
            raise ValueError(f"data.fill: expected one of {FILLS}, got {fill!r}")
        if scaler not in SCALERS:
            raise ValueError(f"data.scaler: expected one of {SCALERS}, got {scaler!r}")
        self.dataset, self.csv = dataset, csv
        self.time_column = time_column or (embedded.time_column if embedded else "")
        columns = target_columns or (embedded.target_columns if embedded else ())
        self.target_columns = [columns] if isinstance(columns, str) else list(columns)
        self.time_format = time_format if csv is not None else (embedded.time_format if embedded else None)
        self.context, self.horizon, self.stride = context, horizon, stride
        self.eval_stride = eval_stride or stride
        self.season = season
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.fill, self.scaler_kind = fill, scaler
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        self.skip_bad = skip_bad
        self.series: Series | None = None
        self.scaler: Scaler | None = None
        self.bounds: dict[str, tuple[int, int]] = {}
        self.datasets: dict[str, WindowDataset] = {}

    def load(self) -> Series:
        """The raw series (NaNs kept)."""
        path = Path(self.csv) if self.csv is not None else embedded_path(self.dataset)
        return read_csv_series(path, self.time_column, self.target_columns, self.time_format, self.skip_bad)

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        series = self.load()
        self.bounds = split_bounds(len(series.times), self.val_fraction, self.test_fraction)
        parts = {s: fill_missing(series.values[a:b], self.fill, f"data.fill ({s} split)") for s, (a, b) in
                 self.bounds.items()}  # fmt: skip
        self.scaler = Scaler.fit(parts["train"], self.scaler_kind)
        filled = np.concatenate([parts[s] for s in SPLITS])
        self.series = Series(series.times, filled, series.columns)
        self.missing = int(np.isnan(series.values).sum())
        for split, (start, stop) in self.bounds.items():
            stride = self.stride if split == "train" else self.eval_stride
            data = WindowDataset(
                self.scaler.transform(parts[split]), self.context, self.horizon, stride, self.season, self.scaler,
                offset=start,
            )  # fmt: skip
            if len(data) == 0:
                key = "data.context" if split == "train" else f"data.{split}_fraction"
                raise DataError(
                    f"{key}: the {split} split has {stop - start} steps, fewer than data.context + data.horizon = "
                    f"{self.context + self.horizon}; shorten the window or enlarge the split"
                )
            self.datasets[split] = data

    def train_dataloader(self) -> DataLoader:
        return seeded_loader(self.datasets["train"], self.batch_size, self.num_workers, self.seed, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return seeded_loader(self.datasets["val"], self.batch_size, self.num_workers, self.seed, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return seeded_loader(self.datasets["test"], self.batch_size, self.num_workers, self.seed, shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()

    def times_of(self, start: int, length: int) -> np.ndarray:
        """The time stamps of ``length`` steps from absolute step ``start``."""
        assert self.series is not None
        return self.series.times[start : start + length]

    def raw_values(self, column: int, start: int, length: int) -> Tensor:
        """Filled values in the data's units (for plots)."""
        assert self.series is not None
        return torch.as_tensor(self.series.values[start : start + length, column])

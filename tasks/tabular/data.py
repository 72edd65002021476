"""Tabular data: a CSV / parquet file or an embedded real dataset, a seeded stratified split, preprocessing fitted
on the training split only.

The plumbing, in order (:meth:`TabularDataModule.setup`):

1. read the table: ``data.path`` (CSV, or parquet with pyarrow installed) or ``data.dataset``, a real dataset
   shipped inside an installed wheel (never downloaded): ``breast_cancer`` (569 x 30, binary), ``wine`` (178 x 13,
   3 classes), ``diabetes`` (442 x 10, regression) from scikit-learn, ``penguins`` (344 x 7, 3 species, two
   categorical columns and missing values) from palmerpenguins;
2. pick the columns: ``data.target`` (required for a file), ``data.numeric`` / ``data.categorical`` declared, the
   remaining columns (minus ``data.drop``) inferred from their type (numbers: numeric, anything else:
   categorical; text whose cells are at least 90% numbers is a numeric column with corrupt cells); a cell of
   a numeric column that is not a number is a ``DataError`` naming the file, row and column (``data.skip_bad:
   true`` drops such rows with one warning); a summary of every column's role, type, missing and distinct
   values is printed;
3. decide the problem (``data.problem``: ``auto`` = classification for a non-numeric target or one with at most
   20 distinct integer values, else regression); rows with a missing target are dropped;
4. split the rows with ``data.seed``: ``test_fraction`` for test, then ``val_fraction`` of all rows for
   validation, stratified by class (regression: by target quintile); with ``data.folds: k`` the test part is
   fold ``data.fold`` of a stratified k-fold instead;
5. fit the :class:`Preprocessor` on the training rows only: numeric columns imputed with the training mean
   (median for ``scaler: quantile``) and standardised (or quantile-transformed to a normal) with training
   statistics, plus a 0/1 missing-value indicator for each numeric column with missing training values;
   category vocabularies from the training rows, index 0 = unknown (unseen or rarer than
   ``min_category_count``), 1 = missing, 2+ = the training categories; class labels (classification) or the
   target's training mean and std (regression: the loss sees the standardised target);
6. encode every split (and ``data.predict_path``, a file without or with targets) with that fitted state.

The fitted state is the datamodule's ``state_dict`` and therefore part of every checkpoint: a resumed run, a
``test`` or a ``predict`` from a checkpoint encode with the vocabularies and scalers of the original training
split (:meth:`TabularDataModule.load_state_dict` re-encodes), so a category never seen in training maps to the
unknown index instead of shifting the codes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.utilities import rank_zero_only
from rich.console import Console
from rich.table import Table
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from tasks.datacheck import BadItems, DataError
from tasks.sampling import SampleKey, seeded_loader

PROBLEMS = ("auto", "classification", "regression")
SCALERS = ("standard", "quantile", "none")
SPLITS = ("train", "val", "test")
UNKNOWN, MISSING, FIRST_CATEGORY = 0, 1, 2
#: an integer target with at most this many distinct values is a classification target (data.problem: auto)
MAX_AUTO_CLASSES = 20
#: a text column whose present cells are at least this share of numbers is a numeric column with corrupt cells
NUMERIC_SHARE = 0.9
QUANTILE_LEVELS = 1000


@dataclass(frozen=True)
class Embedded:
    """A real dataset inside an installed wheel."""

    package: str
    target: str
    problem: str
    what: str


EMBEDDED = {
    "breast_cancer": Embedded("scikit-learn", "diagnosis", "classification",
                              "Wisconsin diagnostic breast cancer, 569 x 30 numeric, malignant vs benign"),
    "wine": Embedded("scikit-learn", "cultivar", "classification", "wine recognition, 178 x 13 numeric, 3 cultivars"),
    "diabetes": Embedded("scikit-learn", "progression", "regression",
                         "diabetes progression after one year, 442 x 10 numeric (raw units)"),
    "penguins": Embedded("palmerpenguins", "species", "classification",
                         "Palmer penguins, 344 x 7 (island, sex categorical; missing values), 3 species"),
}  # fmt: skip


def load_embedded(name: str) -> pd.DataFrame:
    """The embedded dataset ``name`` as a frame whose target column is ``EMBEDDED[name].target``."""
    spec = EMBEDDED[name]
    if name == "penguins":
        try:
            import palmerpenguins
        except ImportError:
            raise FileNotFoundError(
                "data.dataset: 'penguins' is read from the palmerpenguins wheel; `pip install palmerpenguins`"
            ) from None
        return palmerpenguins.load_penguins()
    from sklearn import datasets

    if name == "diabetes":
        frame = datasets.load_diabetes(as_frame=True, scaled=False).frame
        return frame.rename(columns={"target": spec.target})
    bunch = getattr(datasets, f"load_{name}")(as_frame=True)
    frame = bunch.frame.drop(columns="target")
    frame[spec.target] = np.asarray(bunch.target_names)[bunch.target.to_numpy()]
    return frame


def read_table(path: str | Path, key: str = "data.path") -> pd.DataFrame:
    """A CSV (empty / NA / nan cells are missing) or a parquet file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{key}: {path} not found")
    if path.suffix.lower() in (".parquet", ".pq"):
        try:
            return pd.read_parquet(path)
        except ImportError as err:
            raise ValueError(f"{key}: reading parquet needs pyarrow ({err}); install it or give a CSV") from None
    try:
        frame = pd.read_csv(path, skipinitialspace=True)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as err:
        raise DataError(f"{key}: cannot read {path} as CSV: {err}") from None
    if frame.empty:
        raise DataError(f"{key}: {path} has no rows")
    return frame


def _is_numeric(column: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)


def looks_numeric(column: pd.Series) -> bool:
    """A numeric column, or text of which at least :data:`NUMERIC_SHARE` of the (10+) present cells are numbers."""
    if _is_numeric(column) or pd.api.types.is_bool_dtype(column):
        return _is_numeric(column)
    present = column.dropna()
    return len(present) >= 10 and pd.to_numeric(present, errors="coerce").notna().mean() >= NUMERIC_SHARE


def numeric_cells(frame: pd.DataFrame, names: Sequence[str], source: str, skip_bad: bool) -> pd.DataFrame:
    """``frame`` with ``names`` converted to numbers; a cell that is not one is a :class:`DataError` naming the
    row and column, or (``skip_bad``) its row is dropped and one warning counts them."""
    bad = BadItems(skip_bad, f"rows of {source} with a non-numeric value in a numeric column")
    keep = np.ones(len(frame), dtype=bool)
    converted = {}
    for name in names:
        column = frame[name]
        converted[name] = pd.to_numeric(column, errors="coerce")
        for row in np.flatnonzero((converted[name].isna() & column.notna()).to_numpy()):
            if keep[row]:  # one report per row
                bad.report(f"{source}, row {row + 1}", f"column {name!r} holds {column.iloc[row]!r}, not a number")
            keep[row] = False
    bad.finish(total=len(frame))
    return frame.assign(**converted)[keep]


def category_keys(column: pd.Series) -> np.ndarray:
    """Category values as strings (integral numbers without ``.0``); missing values as ``None``."""
    values = column.to_numpy(dtype=object)
    out = np.empty(len(values), dtype=object)
    for i, value in enumerate(values):  # one pass over a column's values (preprocessing, not the training loop)
        if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
            out[i] = None
        elif isinstance(value, (float, np.floating)) and float(value).is_integer():
            out[i] = str(int(value))
        else:
            out[i] = str(value)
    return out


def numeric_values(column: pd.Series, key: str) -> np.ndarray:
    """A numeric column as float64 (NaN where missing); a non-number names the config key."""
    converted = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64)
    bad = np.isnan(converted) & column.notna().to_numpy()
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(f"{key}: column {column.name!r} is not numeric (row {row + 1}: {column.iloc[row]!r})")
    return converted


@dataclass
class Columns:
    """The roles of a table's columns."""

    target: str
    numeric: list[str]
    categorical: list[str]
    inferred: list[str] = field(default_factory=list)


def resolve_columns(
    frame: pd.DataFrame,
    target: str,
    numeric: Sequence[str] | None,
    categorical: Sequence[str] | None,
    drop: Sequence[str] | None,
    source: str,
) -> Columns:
    """Declared columns checked against the frame; every other column (but ``drop``) inferred from its type."""
    columns = [str(c) for c in frame.columns]
    for key, names in (("data.target", [target]), ("data.numeric", numeric or []),
                       ("data.categorical", categorical or []), ("data.drop", drop or [])):  # fmt: skip
        for name in names:
            if name not in columns:
                raise DataError(f"{key}: {name!r} is not a column of {source}; columns: {columns}")
    numeric, categorical, drop = list(numeric or []), list(categorical or []), list(drop or [])
    for key, names in (("data.numeric", numeric), ("data.categorical", categorical), ("data.drop", drop)):
        if target in names:
            raise DataError(f"{key}: {target!r} is data.target; a target cannot also be a feature")
    both = sorted(set(numeric) & set(categorical))
    if both:
        raise DataError(f"data.categorical: {both} also listed in data.numeric; give each column one role")
    inferred = []
    for name in columns:
        if name == target or name in numeric or name in categorical or name in drop:
            continue
        (numeric if looks_numeric(frame[name]) else categorical).append(name)
        inferred.append(name)
    if not numeric and not categorical:
        raise DataError(f"data.numeric / data.categorical: {source} has no feature column besides the target")
    return Columns(target, numeric, categorical, inferred)


def resolve_problem(column: pd.Series, problem: str) -> str:
    """``classification`` or ``regression`` for a target column (``auto``: see :data:`MAX_AUTO_CLASSES`)."""
    if problem != "auto":
        if problem == "regression" and not _is_numeric(column):
            raise DataError(f"data.problem: regression needs a numeric target; {column.name!r} is {column.dtype}")
        return problem
    if not _is_numeric(column):
        return "classification"
    values = column.dropna().to_numpy(dtype=np.float64)
    integral = bool(np.all(np.equal(np.mod(values, 1), 0)))
    return "classification" if integral and len(np.unique(values)) <= MAX_AUTO_CLASSES else "regression"


def stratification_labels(target: pd.Series, problem: str) -> np.ndarray:
    """Class keys, or the target's quintile (regression), as the strata of the split."""
    if problem == "classification":
        return category_keys(target).astype(str)
    values = target.to_numpy(dtype=np.float64)
    edges = np.quantile(values, [0.2, 0.4, 0.6, 0.8])
    return np.digitize(values, edges)


def split_rows(
    strata: np.ndarray, val_fraction: float, test_fraction: float, seed: int, folds: int = 0, fold: int = 0
) -> dict[str, np.ndarray]:
    """``{split: sorted row positions}``: stratified test then validation parts (or a k-fold test fold)."""
    from sklearn.model_selection import StratifiedKFold, train_test_split

    rows = np.arange(len(strata))
    _, counts = np.unique(strata, return_counts=True)
    stratify = counts.min() >= 2 and (folds == 0 or counts.min() >= folds)
    if folds:
        splitter = StratifiedKFold(folds, shuffle=True, random_state=seed) if stratify else None
        if splitter is None:
            from sklearn.model_selection import KFold

            parts = list(KFold(folds, shuffle=True, random_state=seed).split(rows))
        else:
            parts = list(splitter.split(rows, strata))
        rest, test = parts[fold]
        val_share = val_fraction / (1.0 - 1.0 / folds)
    else:
        rest, test = train_test_split(rows, test_size=test_fraction, random_state=seed,
                                      stratify=strata if stratify else None)  # fmt: skip
        val_share = val_fraction / (1.0 - test_fraction)
    rest_strata = strata[rest]
    _, counts = np.unique(rest_strata, return_counts=True)
    train, val = train_test_split(rest, test_size=val_share, random_state=seed,
                                  stratify=rest_strata if counts.min() >= 2 else None)  # fmt: skip
    return {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}


@dataclass
class Encoded:
    """One encoded split: ``numeric (N, F)`` float32 (scaled values then indicators), ``categorical (N, C)`` int64
    codes, ``target (N,)`` (class index int64 or standardised float32; ``None`` without targets), the rows'
    positions in the source table and per categorical column the number of unknown values."""

    numeric: np.ndarray
    categorical: np.ndarray
    target: np.ndarray | None
    rows: np.ndarray
    unknown: dict[str, int]

    def __len__(self) -> int:
        return len(self.rows)


@dataclass
class Preprocessor:
    """Everything fitted on the training split; :meth:`state` / :meth:`from_state` round-trip it as plain data."""

    target: str
    problem: str
    numeric: list[str]
    categorical: list[str]
    scaler: str = "standard"
    fill: list[float] = field(default_factory=list)
    loc: list[float] = field(default_factory=list)
    scale: list[float] = field(default_factory=list)
    quantiles: list[list[float]] = field(default_factory=list)
    indicators: list[str] = field(default_factory=list)
    vocab: dict[str, list[str]] = field(default_factory=dict)
    classes: list[str] = field(default_factory=list)
    class_counts: list[int] = field(default_factory=list)
    target_loc: float = 0.0
    target_scale: float = 1.0

    @classmethod
    def fit(
        cls,
        train: pd.DataFrame,
        columns: Columns,
        problem: str,
        classes: Sequence[str],
        scaler: str = "standard",
        min_category_count: int = 1,
    ) -> Preprocessor:
        """Fit on the training rows only (``classes``: every label of the labelled table, in index order)."""
        pre = cls(columns.target, problem, list(columns.numeric), list(columns.categorical), scaler)
        for name in pre.numeric:
            values = numeric_values(train[name], "data.numeric")
            observed = values[~np.isnan(values)]
            if observed.size == 0:
                raise DataError(f"data.numeric: column {name!r} has no value in the training split; drop it")
            if np.isnan(values).any():
                pre.indicators.append(name)
            if scaler == "quantile":
                levels = np.quantile(observed, np.linspace(0.0, 1.0, min(QUANTILE_LEVELS, observed.size)))
                pre.quantiles.append(levels.tolist())
                pre.fill.append(float(np.median(observed)))
                pre.loc.append(0.0)
                pre.scale.append(1.0)
                continue
            mean, std = float(observed.mean()), float(observed.std())
            pre.fill.append(mean)
            pre.loc.append(mean if scaler == "standard" else 0.0)
            pre.scale.append(std if scaler == "standard" and std > 1e-12 else 1.0)
        for name in pre.categorical:
            keys = category_keys(train[name])
            present = keys[keys != None]  # noqa: E711 (element-wise on an object array)
            values, counts = np.unique(present.astype(str), return_counts=True) if present.size else ([], [])
            pre.vocab[name] = [str(v) for v, c in zip(values, counts) if c >= min_category_count]
        if problem == "classification":
            pre.classes = [str(c) for c in classes]
            index = {c: i for i, c in enumerate(pre.classes)}
            labels = [index[k] for k in category_keys(train[columns.target])]
            pre.class_counts = np.bincount(labels, minlength=len(pre.classes)).astype(int).tolist()
        else:
            y = numeric_values(train[columns.target], "data.target")
            pre.target_loc = float(y.mean())
            pre.target_scale = float(y.std()) if y.std() > 1e-12 else 1.0
        return pre

    # ---------------------------------------------------------------- encoding

    @property
    def num_numeric(self) -> int:
        """Encoded numeric width: the scaled columns then the missing-value indicators."""
        return len(self.numeric) + len(self.indicators)

    @property
    def cardinalities(self) -> list[int]:
        """Embedding rows per categorical column: unknown, missing and the training categories."""
        return [len(self.vocab[name]) + FIRST_CATEGORY for name in self.categorical]

    def transform(self, frame: pd.DataFrame, source: str = "the table", with_target: bool = True) -> Encoded:
        """Encode ``frame`` with the fitted state; ``with_target=False`` skips (and does not require) the target."""
        missing = [c for c in (*self.numeric, *self.categorical) if c not in frame.columns]
        if missing:
            raise DataError(f"data: {source} lacks the training column(s) {missing}; columns: {list(frame.columns)}")
        n = len(frame)
        numeric = np.zeros((n, self.num_numeric), dtype=np.float32)
        for j, name in enumerate(self.numeric):
            values = numeric_values(frame[name], "data.numeric")
            absent = np.isnan(values)
            values = np.where(absent, self.fill[j], values)
            if self.scaler == "quantile":
                levels = np.asarray(self.quantiles[j])
                ranks = np.interp(values, levels, np.linspace(0.0, 1.0, len(levels)))
                eps = 1.0 / (2 * QUANTILE_LEVELS)
                values = torch.special.ndtri(torch.from_numpy(np.clip(ranks, eps, 1 - eps))).numpy()
            else:
                values = (values - self.loc[j]) / self.scale[j]
            numeric[:, j] = values
            if name in self.indicators:
                numeric[:, len(self.numeric) + self.indicators.index(name)] = absent
        categorical = np.zeros((n, len(self.categorical)), dtype=np.int64)
        unknown = {}
        for j, name in enumerate(self.categorical):
            index = {c: i + FIRST_CATEGORY for i, c in enumerate(self.vocab[name])}
            keys = category_keys(frame[name])
            codes = np.array([MISSING if k is None else index.get(k, UNKNOWN) for k in keys], dtype=np.int64)
            categorical[:, j] = codes
            unknown[name] = int((codes == UNKNOWN).sum())
        target = None
        if with_target:
            target = self.encode_target(frame[self.target]) if self.target in frame.columns else None
            if target is None:
                raise DataError(f"data.target: {self.target!r} is not a column of {source}")
        rows = frame.index.to_numpy()
        return Encoded(numeric, categorical, target, rows, unknown)

    def encode_target(self, column: pd.Series) -> np.ndarray:
        """Class indices (int64; -1 for a label outside :attr:`classes`) or the standardised target (float32)."""
        if self.problem == "classification":
            index = {c: i for i, c in enumerate(self.classes)}
            return np.array([index.get(k, -1) for k in category_keys(column)], dtype=np.int64)
        y = numeric_values(column, "data.target")
        return ((y - self.target_loc) / self.target_scale).astype(np.float32)

    def decode_target(self, values: np.ndarray) -> np.ndarray:
        """Standardised regression values back in the target's units."""
        return values * self.target_scale + self.target_loc

    def one_hot(self, encoded: Encoded) -> np.ndarray:
        """Numeric block and one-hot categories side by side (the linear baselines' design matrix)."""
        blocks = [encoded.numeric.astype(np.float64)]
        for j, size in enumerate(self.cardinalities):
            blocks.append(np.eye(size)[encoded.categorical[:, j]])
        return np.concatenate(blocks, axis=1)

    def schema(self) -> dict[str, Any]:
        """What the model and the loss are sized from (saved in the task's hyper-parameters)."""
        return {
            "problem": self.problem,
            "target": self.target,
            "num_numeric": len(self.numeric),
            "num_indicators": len(self.indicators),
            "cardinalities": self.cardinalities,
            "classes": list(self.classes),
            "class_counts": list(self.class_counts),
            "target_loc": self.target_loc,
            "target_scale": self.target_scale,
        }

    def state(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Preprocessor:
        return cls(**state)


class TabularDataset(Dataset):
    """Item ``i`` of an encoded split: ``numeric``, ``categorical``, ``row`` and, when known, ``target``."""

    def __init__(self, encoded: Encoded) -> None:
        self.numeric = torch.from_numpy(encoded.numeric)
        self.categorical = torch.from_numpy(encoded.categorical)
        self.target = None if encoded.target is None else torch.from_numpy(encoded.target)
        self.rows = torch.as_tensor(encoded.rows.astype(np.int64))

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key: int | SampleKey) -> dict[str, Tensor]:
        i = SampleKey.of(key).index
        item = {"numeric": self.numeric[i], "categorical": self.categorical[i], "row": self.rows[i]}
        if self.target is not None:
            item["target"] = self.target[i]
        return item

    def tensors(self) -> dict[str, Tensor]:
        """The whole split as one batch (baselines, the end-of-fit table)."""
        batch = {"numeric": self.numeric, "categorical": self.categorical, "row": self.rows}
        if self.target is not None:
            batch["target"] = self.target
        return batch


class TabularDataModule(L.LightningDataModule):
    """Train/val/test splits of a table with train-only preprocessing (see the module docstring for each step)."""

    def __init__(
        self,
        dataset: str | None = "breast_cancer",
        path: str | None = None,
        target: str | None = None,
        numeric: list[str] | None = None,
        categorical: list[str] | None = None,
        drop: list[str] | None = None,
        problem: str = "auto",
        val_fraction: float = 0.2,
        test_fraction: float = 0.2,
        folds: int = 0,
        fold: int = 0,
        scaler: str = "standard",
        min_category_count: int = 1,
        predict_path: str | None = None,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
        summary: bool = True,
        skip_bad: bool = False,
    ) -> None:
        super().__init__()
        if path is None and dataset not in EMBEDDED:
            raise ValueError(f"data.dataset: expected one of {sorted(EMBEDDED)} (or give data.path), got {dataset!r}")
        if path is not None and target is None:
            raise ValueError("data.target: name the target column of data.path")
        if problem not in PROBLEMS:
            raise ValueError(f"data.problem: expected one of {PROBLEMS}, got {problem!r}")
        if scaler not in SCALERS:
            raise ValueError(f"data.scaler: expected one of {SCALERS}, got {scaler!r}")
        for key, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            if not 0 < value < 1:
                raise ValueError(f"data.{key}: expected a fraction in (0, 1), got {value!r}")
        if folds and (not isinstance(folds, int) or folds < 2 or not 0 <= fold < folds):
            raise ValueError(f"data.folds / data.fold: expected folds >= 2 and 0 <= fold < folds, got {folds}, {fold}")
        held_out = 1.0 / folds if folds else test_fraction
        if val_fraction + held_out >= 0.9:
            raise ValueError("data.val_fraction + data.test_fraction: leave at least 10% of the rows to train")
        for key, value, low in (("batch_size", batch_size, 1), ("min_category_count", min_category_count, 1),
                                ("num_workers", num_workers, 0)):  # fmt: skip
            if not isinstance(value, int) or value < low:
                raise ValueError(f"data.{key}: expected an integer >= {low}, got {value!r}")
        self.dataset, self.path = (None if path is not None else dataset), path
        embedded = EMBEDDED.get(dataset) if path is None else None
        self.target = target or (embedded.target if embedded else "")
        self.numeric, self.categorical, self.drop = numeric, categorical, drop
        self.problem_setting = problem if problem != "auto" or embedded is None else embedded.problem
        self.val_fraction, self.test_fraction, self.folds, self.fold = val_fraction, test_fraction, folds, fold
        self.scaler, self.min_category_count = scaler, min_category_count
        self.predict_path = predict_path
        self.batch_size, self.num_workers, self.seed, self.summary = batch_size, num_workers, seed, summary
        self.skip_bad = skip_bad
        self.frame: pd.DataFrame | None = None
        self.columns: Columns | None = None
        self.problem: str | None = None
        self.rows: dict[str, np.ndarray] = {}
        self.preprocessor: Preprocessor | None = None
        self.encoded: dict[str, Encoded] = {}
        self.datasets: dict[str, TabularDataset] = {}
        self._notes: set[str] = set()

    @property
    def source(self) -> str:
        return Path(self.path).name if self.path else f"data.dataset={self.dataset!r}"

    def load(self) -> pd.DataFrame:
        """The raw table (missing values kept)."""
        frame = read_table(self.path) if self.path else load_embedded(self.dataset)
        frame.columns = [str(c) for c in frame.columns]
        return frame.reset_index(drop=True)

    # ---------------------------------------------------------------- setup

    def setup(self, stage: str | None = None) -> None:
        if self.frame is None:
            frame = self.load()
            self.columns = resolve_columns(frame, self.target, self.numeric, self.categorical, self.drop, self.source)
            numbers = [c for c in self.columns.numeric if looks_numeric(frame[c])]  # others: data.numeric error
            if self.problem_setting != "classification" and looks_numeric(frame[self.target]):
                numbers.append(self.target)
            frame = numeric_cells(frame, numbers, self.path or self.source, self.skip_bad)
            self.problem = resolve_problem(frame[self.target], self.problem_setting)
            self.dropped_targets = int(frame[self.target].isna().sum())
            self.frame = frame[frame[self.target].notna()]
            if len(self.frame) < 10:
                raise DataError(f"data: {self.source} has {len(self.frame)} labelled rows; at least 10 are needed")
            positions = split_rows(
                stratification_labels(self.frame[self.target], self.problem),
                self.val_fraction, self.test_fraction, self.seed, self.folds, self.fold,
            )  # fmt: skip
            self.rows = {s: self.frame.index.to_numpy()[p] for s, p in positions.items()}
        if self.preprocessor is None:  # not restored from a checkpoint: fit on the training rows
            classes = []
            if self.problem == "classification":
                classes = sorted(set(category_keys(self.frame[self.target])), key=_label_order)
            self.preprocessor = Preprocessor.fit(
                self.frame.loc[self.rows["train"]], self.columns, self.problem, classes, self.scaler,
                self.min_category_count,
            )  # fmt: skip
            self._encode()
            if self.summary:
                self.print_summary()
        elif not self.datasets:
            self._encode()

    def _encode(self) -> None:
        assert self.frame is not None and self.preprocessor is not None
        pre = self.preprocessor
        self.encoded = {s: pre.transform(self.frame.loc[r], self.source) for s, r in self.rows.items()}
        if self.predict_path:
            frame = read_table(self.predict_path, "data.predict_path")
            frame.columns = [str(c) for c in frame.columns]
            self.encoded["predict"] = pre.transform(frame, Path(self.predict_path).name, with_target=False)
            unseen = {c: n for c, n in self.encoded["predict"].unknown.items() if n}
            message = f"data.predict_path: categories unseen in training map to the unknown index: {unseen} rows"
            if unseen and message not in self._notes:  # once, though a checkpoint's state re-encodes
                self._notes.add(message)
                _note(message)
        self.datasets = {s: TabularDataset(e) for s, e in self.encoded.items()}

    def schema(self) -> dict[str, Any]:
        """The fitted preprocessor's :meth:`Preprocessor.schema` (after :meth:`setup`)."""
        if self.preprocessor is None:
            raise RuntimeError("TabularDataModule.schema(): call setup() first")
        return self.preprocessor.schema()

    # ---------------------------------------------------------------- checkpoint state

    def state_dict(self) -> dict[str, Any]:
        return {"preprocessor": self.preprocessor.state()} if self.preprocessor is not None else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Use the checkpoint's fitted preprocessing (vocabularies, scalers, classes) and re-encode every split."""
        if "preprocessor" not in state_dict:
            return
        self.preprocessor = Preprocessor.from_state(state_dict["preprocessor"])
        if self.frame is not None:
            self._encode()

    # ---------------------------------------------------------------- loaders

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        dataset = self.datasets[split]
        # a 1-row last batch cannot train batch norm: drop it (at most one row per epoch)
        drop_last = shuffle and len(dataset) % self.batch_size == 1
        return seeded_loader(dataset, self.batch_size, self.num_workers, self.seed, shuffle, drop_last=drop_last)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict" if "predict" in self.datasets else "test", shuffle=False)

    # ---------------------------------------------------------------- summary

    @rank_zero_only
    def print_summary(self) -> None:
        """One table: each column's role (declared or inferred), type, missing and distinct values; split sizes."""
        assert self.frame is not None and self.columns is not None and self.preprocessor is not None
        cols, pre = self.columns, self.preprocessor
        table = Table(title=f"tabular data: {self.source}, {self.problem}")
        for header in ("column", "role", "dtype", "missing", "distinct", "note"):
            table.add_column(header, justify="right" if header in ("missing", "distinct") else "left")
        roles = {cols.target: "target", **{c: "numeric" for c in cols.numeric},
                 **{c: "categorical" for c in cols.categorical}}  # fmt: skip
        for name in self.frame.columns:
            role = roles.get(name, "dropped")
            column = self.frame[name]
            note = "inferred" if name in cols.inferred else ""
            if role == "categorical":
                note = ", ".join(filter(None, (note, f"{len(pre.vocab[name])} train categories")))
                if column.nunique() == len(self.frame):
                    note += "; every value distinct: an id? add it to data.drop"
            if name in pre.indicators:
                note = ", ".join(filter(None, (note, "missing indicator")))
            table.add_row(name, role, str(column.dtype), str(int(column.isna().sum())), str(column.nunique()), note)
        sizes = ", ".join(f"{s} {len(self.rows[s])}" for s in SPLITS)
        caption = f"rows: {sizes} (seed {self.seed}"
        caption += f", test = fold {self.fold} of {self.folds})" if self.folds else ")"
        unseen = {s: {c: n for c, n in self.encoded[s].unknown.items() if n} for s in ("val", "test")}
        for split, counts in unseen.items():
            if counts:
                caption += f"; {split} values unseen in training (-> unknown): {counts}"
        if self.dropped_targets:
            caption += f"; {self.dropped_targets} rows without a target dropped"
        if self.problem == "classification":
            caption += "; train classes: " + ", ".join(f"{c} {n}" for c, n in zip(pre.classes, pre.class_counts))
        table.caption = caption
        console = Console()
        if not console.is_terminal:
            console = Console(width=120)
        console.print(table)


@rank_zero_only
def _note(message: str) -> None:
    Console(width=120).print(message, highlight=False)


def _label_order(label: str) -> tuple[int, float | str]:
    """Numbers in numeric order first, then strings alphabetically."""
    try:
        return 0, float(label)
    except ValueError:
        return 1, label

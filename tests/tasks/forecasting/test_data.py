"""Forecasting data plumbing: time splits, window boundaries, per-split filling, train-only scaling, the MASE scale."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
import torch

from losses.forecasting import naive_scale
from tasks.datacheck import DataError
from tasks.forecasting.data import ForecastDataModule, embedded_path, fill_missing, read_csv_series, split_bounds


def write_csv(path: Path, values: np.ndarray, columns=("y",), start=dt.date(2000, 1, 3)) -> Path:
    """A weekly CSV with ISO dates; NaN cells are written empty."""
    values = np.asarray(values, dtype=float).reshape(len(values), -1)
    lines = ["date," + ",".join(columns)]
    for i, row in enumerate(values):
        cells = ["" if np.isnan(v) else repr(float(v)) for v in row]
        lines.append(f"{start + dt.timedelta(weeks=i)}," + ",".join(cells))
    path.write_text("\n".join(lines) + "\n")
    return path


def datamodule(csv: Path, columns=("y",), **kwargs) -> ForecastDataModule:
    options = dict(context=6, horizon=3, season=2, val_fraction=0.2, test_fraction=0.2, scaler="none", batch_size=4)
    options.update(kwargs)
    dm = ForecastDataModule(dataset=None, csv=str(csv), time_column="date", target_columns=list(columns), **options)
    dm.setup("fit")
    return dm


def test_split_bounds_are_contiguous_and_in_time_order():
    assert split_bounds(100, 0.15, 0.2) == {"train": (0, 65), "val": (65, 80), "test": (80, 100)}


@pytest.mark.parametrize(("stride", "eval_stride"), [(1, None), (2, 3)])
def test_windows_are_exact_and_never_cross_a_split_boundary(tmp_path, stride, eval_stride):
    n = 60
    csv = write_csv(tmp_path / "steps.csv", np.stack([np.arange(n), 1000 + np.arange(n)], 1), columns=("a", "b"))
    dm = datamodule(csv, ("a", "b"), stride=stride, eval_stride=eval_stride)
    span = dm.context + dm.horizon
    for split, (lo, hi) in dm.bounds.items():
        data = dm.datasets[split]
        step = stride if split == "train" else (eval_stride or stride)
        starts = list(range(lo, hi - span + 1, step))
        assert len(data) == 2 * len(starts)
        seen = []
        for k in range(len(data)):
            item = data[k]
            # values are the step index (column b: + 1000), so each window shows where it came from
            steps = torch.cat((item["context"], item["target"])) - 1000 * item["column"]
            assert steps.tolist() == list(range(item["start"], item["start"] + span))
            assert lo <= item["start"] and item["start"] + span <= hi
            seen.append((item["column"], item["start"]))
        assert seen == [(c, s) for c in (0, 1) for s in starts]  # first at the split start, all of them, in order
        assert starts[-1] + step + span > hi  # one more window would cross the boundary


def test_scaler_is_fitted_on_the_training_split_only(tmp_path):
    """Changing only the val/test part of the series changes neither the scaler nor any training window."""
    g = np.random.default_rng(0)
    base = 10 + g.normal(size=100)
    leaky = base.copy()
    leaky[70:] *= 1000.0  # val + test: a different level entirely
    a = datamodule(write_csv(tmp_path / "a.csv", base), scaler="standard")
    b = datamodule(write_csv(tmp_path / "b.csv", leaky), scaler="standard")
    train = base[: a.bounds["train"][1]]
    assert a.bounds["train"][1] <= 70
    np.testing.assert_allclose(a.scaler.loc, [train.mean()])
    np.testing.assert_allclose(a.scaler.scale, [train.std()])
    np.testing.assert_allclose(b.scaler.loc, a.scaler.loc)
    np.testing.assert_allclose(b.scaler.scale, a.scaler.scale)
    for k in range(len(a.datasets["train"])):
        torch.testing.assert_close(a.datasets["train"][k]["context"], b.datasets["train"][k]["context"])
    # and the test windows are scaled with the training statistics (values far outside the train range)
    assert float(b.datasets["test"][0]["context"].mean()) > 1000


def test_missing_values_are_filled_inside_each_split(tmp_path):
    values = np.arange(50, dtype=float)
    lo, hi = split_bounds(50, 0.2, 0.2)["val"]
    values[lo - 2 : lo] = np.nan  # the last two training steps
    values[lo] = 1e6  # the first validation step: must not leak into the training fill
    dm = datamodule(write_csv(tmp_path / "gaps.csv", values))
    filled = dm.series.values[:, 0]
    assert not np.isnan(filled).any() and dm.missing == 2
    assert filled[lo - 2 : lo].tolist() == [lo - 3.0, lo - 3.0]  # held at the last training value
    middle = np.arange(10, dtype=float)
    middle[3:5] = np.nan
    assert fill_missing(middle[:, None], "interpolate")[:, 0].tolist() == list(range(10))
    assert fill_missing(middle[:, None], "ffill")[3:5, 0].tolist() == [2.0, 2.0]
    with pytest.raises(ValueError, match="data.fill=error"):
        fill_missing(middle[:, None], "error")


def test_embedded_co2_comes_from_the_statsmodels_wheel():
    path = embedded_path("co2")
    assert "statsmodels" in str(path) and path.is_file()
    series = read_csv_series(path, "date", ["co2"], "%Y%m%d")
    assert series.values.shape == (2284, 1) and int(np.isnan(series.values).sum()) == 59
    assert str(series.times[0]) == "1958-03-29" and str(series.times[-1]) == "2001-12-29"
    dm = ForecastDataModule(context=60, horizon=13, stride=8)
    dm.setup("fit")
    assert dm.season == 52 and dm.missing == 59 and not np.isnan(dm.series.values).any()
    assert len(dm.datasets["test"]) > 0


def test_window_scale_comes_from_the_context_not_the_target(tmp_path):
    g = np.random.default_rng(1)
    dm = datamodule(write_csv(tmp_path / "noise.csv", g.normal(size=80)))
    item = dm.datasets["val"][1]
    assert item["scale"].item() == pytest.approx(naive_scale(item["context"], 2).item())
    assert item["sq_scale"].item() == pytest.approx(naive_scale(item["context"], 2, power=2).item())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"context": 4, "season": 4}, "data.context"),
        ({"test_fraction": 0.05}, "data.test_fraction"),
        ({"scaler": "robust"}, "data.scaler"),
        ({"fill": "mean"}, "data.fill"),
        ({"val_fraction": 0.5, "test_fraction": 0.45}, "data.val_fraction"),
    ],
)
def test_bad_settings_name_the_key(tmp_path, kwargs, match):
    csv = write_csv(tmp_path / "s.csv", np.arange(60.0))
    with pytest.raises(ValueError, match=match):
        datamodule(csv, **kwargs)


def test_bad_csv_names_the_key(tmp_path):
    csv = write_csv(tmp_path / "s.csv", np.arange(30.0))
    with pytest.raises(ValueError, match="data.target_columns"):
        datamodule(csv, columns=("nope",))
    with pytest.raises(ValueError, match="data.dataset"):
        ForecastDataModule(dataset="airline")
    shuffled = tmp_path / "shuffled.csv"
    lines = csv.read_text().splitlines()
    shuffled.write_text("\n".join([lines[0], lines[2], lines[1], *lines[3:]]) + "\n")
    with pytest.raises(ValueError, match="data.time_column.*strictly increasing"):
        datamodule(shuffled)


def test_corrupt_csv_names_file_line_and_column(tmp_path):
    csv = write_csv(tmp_path / "s.csv", np.arange(60.0))
    lines = csv.read_text().splitlines()
    lines[5] = lines[5].split(",")[0] + ",12..5"  # line 6 of the file
    csv.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"s\.csv:6: column 'y' holds '12\.\.5', not a number.*data\.skip_bad"):
        datamodule(csv)
    with pytest.warns(UserWarning, match="skipped 1 of 60 non-numeric values"):
        dm = datamodule(csv, skip_bad=True)  # read as missing, then interpolated like any gap
    assert dm.missing == 1
    assert np.isfinite(dm.series.values).all()
    assert dm.series.values[4, 0] == pytest.approx(4.0)  # interpolated between 3 and 5

    bad_time = tmp_path / "t.csv"
    bad_time.write_text("\n".join([lines[0], *lines[1:4], "someday,1.0", *lines[5:]]) + "\n")
    with pytest.raises(DataError, match=r"data.time_column: .*t\.csv:5: cannot parse 'someday'"):
        datamodule(bad_time)
    with pytest.raises(DataError, match=r"data.csv: .*missing\.csv not found"):
        datamodule(tmp_path / "missing.csv")

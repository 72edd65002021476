"""Multi-step forecasting: a network whose head the loss chooses, scored beside seasonal-naive and naive forecasts.

The ``forecast`` slot is called with the point forecast and the target, ``(pred (N, H), target
(N, H))``, plus named inputs a term may declare in ``INPUTS``: ``scale`` / ``sq_scale`` (the
in-sample seasonal-naive MAE / MSE of each context window, for ``mase`` / ``rmsse``), and what the
head predicts: ``quantiles (N, H, Q)`` or ``loc``, ``sigma``, ``var``, ``df``, ``rate``, ``log_rate``,
``alpha`` (each ``(N, H)``) and ``samples (N, H, S)``. The head is planned from the loss
(:func:`tasks.forecasting.model.plan_head`) when the task is built, so a loss that needs another
head is a config error before any step runs.

The loss is computed in the data's scaled units (the scaler is fitted on the training split);
metrics (:mod:`tasks.forecasting.metrics`) are in the data's units, for the model and for the
seasonal-naive and naive forecasts of the same windows. At the end of fit (validation, last epoch)
and of test, one table is printed and saved as ``forecast_metrics_<stage>.csv`` in the run folder;
forecast plots with the prediction interval go to ``predictions/``, and ``predict`` writes the test
windows' forecasts (point and interval) to ``predictions/forecasts.csv``.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_only
from rich.console import Console
from rich.table import Table
from torch import Tensor, nn
from torch.utils.data import default_collate

import losses
from tasks.base import LossTask
from tasks.forecasting.metrics import FORECASTERS, METRICS, ForecastMetrics, interval, to_data_units
from tasks.forecasting.model import ARCHS, COUNT_HEADS, Forecaster, build_network, distribution, plan_head
from tasks.forecasting.plot import Panel, plot_forecasts

SLOT_INPUTS = ("scale", "sq_scale", "quantiles", "loc", "sigma", "var", "df", "rate", "log_rate", "alpha", "samples")


class ForecastWriter(BasePredictionWriter):
    """Write ``predict`` forecasts to ``<run>/predictions/forecasts.csv``: one row per window and step."""

    def __init__(self) -> None:
        super().__init__(write_interval="batch")

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.rows: list[list[Any]] = []

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx):
        datamodule = trainer.datamodule
        context = pl_module.context
        for forecast, column, start in zip(prediction.tolist(), batch["column"].tolist(), batch["start"].tolist()):
            times = datamodule.times_of(start, context + len(forecast))
            name = datamodule.series.columns[column]
            for step, (value, low, high) in enumerate(forecast, 1):
                self.rows.append([name, times[context - 1], step, times[context + step - 1], value, low, high])

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        path = Path(trainer.default_root_dir) / "predictions" / "forecasts.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        level = f"{pl_module.interval:.0%}"
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["series", "origin", "step", "time", "forecast", f"low_{level}", f"high_{level}"])
            writer.writerows(self.rows)


class ForecastingTask(LossTask):
    """Point, quantile or distribution forecasts of a horizon from a context window."""

    LOSS_SLOTS = {
        "forecast": losses.Slot(
            ("forecasting", "regression"),
            default="mae",
            inputs=("pred", "target"),
            extra_inputs=SLOT_INPUTS,
            doc="called with pred (N, H) and target (N, H); named: scale, sq_scale and the head's outputs",
        )
    }
    MONITOR = "val/mase"
    MONITOR_MODE = "min"

    def __init__(
        self,
        arch: str = "dlinear",
        context: int = 156,
        horizon: int = 52,
        normalize: str = "window",
        non_crossing: bool = True,
        hidden_size: int = 256,
        num_layers: int = 4,
        num_blocks: int = 3,
        kernel_size: int = 25,
        dropout: float = 0.0,
        interval: float = 0.8,
        plot_every_n_epochs: int = 5,
        plot_windows: int = 3,
        loss: Mapping[str, Any] | None = None,
        optim: Mapping[str, Any] | None = None,
    ) -> None:
        if arch not in ARCHS:
            raise ValueError(f"model.arch: expected one of {ARCHS}, got {arch!r}")
        if not 0 < interval < 1:
            raise ValueError(f"model.interval: expected a central interval level in (0, 1), got {interval!r}")
        super().__init__(loss=loss, optim=optim)
        self.save_hyperparameters(ignore=["loss", "optim"])
        self.plan = plan_head(self.loss_slots["forecast"], "loss.forecast")
        self.context, self.horizon, self.interval = context, horizon, interval
        network = build_network(
            arch, context, horizon, self.plan.width, hidden_size, num_layers, num_blocks, kernel_size, dropout
        )
        self.model = Forecaster(network, self.plan, normalize, non_crossing)
        self.plot_every_n_epochs, self.plot_windows = plot_every_n_epochs, plot_windows
        self.season = 1  # data.season, read from the datamodule in setup()
        # registered so they follow the model's device; their states are not saved in checkpoints
        self.metrics = nn.ModuleDict({s: ForecastMetrics(self.plan, self.season, interval) for s in ("val", "test")})
        self.tables: dict[str, dict[str, dict[str, float]]] = {}

    # ------------------------------------------------------------------ setup

    def setup(self, stage: str) -> None:
        datamodule = self.trainer.datamodule
        for key in ("context", "horizon"):
            given, data = getattr(self, key), getattr(datamodule, key)
            if given != data:
                raise losses.LossConfigError(
                    f"model.{key}: {given} differs from data.{key}: {data}; write model.{key}: ${{data.{key}}}"
                )
        if self.plan.kind in COUNT_HEADS and datamodule.scaler_kind == "standard":
            raise losses.LossConfigError(
                f"loss.forecast: a {self.plan.kind} head predicts counts >= 0, but data.scaler=standard shifts the "
                "data below zero; set data.scaler: mean (or none)"
            )
        self.season = datamodule.season
        for metrics in self.metrics.values():
            metrics.season = self.season

    # ------------------------------------------------------------------ steps

    def forward(self, context: Tensor) -> dict[str, Tensor]:
        return self.model(context)

    def slot_inputs(self, batch: Mapping[str, Tensor], out: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """The named slot inputs: the context's naive scales and everything the head predicts (but ``pred``)."""
        named = {"scale": batch["scale"], "sq_scale": batch["sq_scale"]}
        named.update({k: v for k, v in out.items() if k != "pred"})
        if self.plan.num_samples:
            draws = distribution(self.plan, dict(out)).rsample((self.plan.num_samples,))
            named["samples"] = draws.movedim(0, -1)
        return named

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor | None:
        out = self(batch["context"])
        inputs = self.slot_inputs(batch, out)
        return self.compute_loss("forecast", out["pred"], batch["target"], batch_size=len(batch["target"]), **inputs)

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        """``(N, H, 3)``: the point forecast and the interval's bounds (NaN for a point head), in the data's units."""
        units = to_data_units(batch, self.plan, self(batch["context"]))
        bounds = interval(self.plan, units, self.interval)
        low, high = bounds if bounds is not None else (torch.full_like(units["pred"], math.nan),) * 2
        return torch.stack((units["pred"], low, high), -1)

    def configure_callbacks(self) -> list[L.Callback]:
        return [ForecastWriter()]

    def _evaluate(self, batch: dict[str, Tensor], stage: str) -> None:
        out = self(batch["context"])
        inputs = self.slot_inputs(batch, out)
        self.compute_loss("forecast", out["pred"], batch["target"], stage=stage, batch_size=len(batch["target"]),
                          **inputs)  # fmt: skip
        self.metrics[stage].update(batch, out)

    # ------------------------------------------------------------------ epoch ends

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val")
        if self.trainer.sanity_checking:
            self.tables.pop("val", None)
            return
        every = self.plot_every_n_epochs
        last = self.current_epoch + 1 >= (self.trainer.max_epochs or 0)
        if every > 0 and (self.current_epoch % every == 0 or last):
            self._plot("val", f"val_epoch_{self.current_epoch:03d}.png")

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test")
        self._plot("test", "test.png")
        self._report("test")

    def on_fit_end(self) -> None:
        self._report("val")

    def _log_metrics(self, stage: str) -> None:
        table = self.metrics[stage].compute()
        self.tables[stage] = table
        values = {f"{stage}/{name}": value for name, value in table["model"].items() if not math.isnan(value)}
        for who in ("snaive", "naive"):
            values.update({f"{stage}/{who}/{name}": table[who][name] for name in ("mae", "rmse", "smape", "mase")})
        values.update({f"{stage}/below/q{level:g}": v for level, v in table["below"].items() if not math.isnan(v)})
        snaive = table["snaive"]["mase"]
        if snaive > 0:
            values[f"{stage}/mase_vs_snaive"] = table["model"]["mase"] / snaive
        # the metrics are already reduced over ranks (torchmetrics); every rank logs the same values
        self.log_dict({k: torch.tensor(v, dtype=torch.float32) for k, v in values.items()}, sync_dist=True)

    # ------------------------------------------------------------------ report and plots

    @property
    def run_dir(self) -> Path:
        return Path(self.trainer.default_root_dir)

    def model_label(self) -> str:
        names = " + ".join(self.loss_slots["forecast"].names)
        return f"{self.hparams.arch} / {names} ({self.plan.describe()})"

    @rank_zero_only
    def _report(self, stage: str) -> None:
        """Print the metrics table of ``stage`` beside the baselines and save it as CSV in the run folder."""
        table = self.tables.get(stage)
        if not table:
            return
        level = f"{self.interval:.0%}"
        headers = ["forecaster", "MAE", "RMSE", "sMAPE %", "MASE", "CRPS", f"cover {level}", f"width {level}"]
        labels = {"model": "model", "snaive": f"seasonal naive (m={self.season})", "naive": "naive"}
        rows = [[labels[w], *(table[w][m] for m in METRICS)] for w in FORECASTERS]
        path = self.run_dir / f"forecast_metrics_{stage}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["forecaster", *METRICS])
            writer.writerows([[self.model_label(), *row[1:]] if row[0] == "model" else row for row in rows])
        title = "validation (last epoch)" if stage == "val" else "test"
        ratio = table["model"]["mase"] / table["snaive"]["mase"] if table["snaive"]["mase"] > 0 else math.nan
        rich_table = Table(
            title=f"forecast metrics, {title}: MASE {table['model']['mase']:.3f} = {ratio:.2f} x seasonal naive",
            caption=f"model: {self.model_label()}; metrics in the data's units, same windows for all rows",
        )
        for header in headers:
            rich_table.add_column(header, justify="left" if header == "forecaster" else "right", no_wrap=True)
        for row in rows:
            rich_table.add_row(row[0], *("-" if math.isnan(v) else f"{v:.4g}" for v in row[1:]))
        console = Console()
        if not console.is_terminal:  # a log file: no need to wrap at 80 columns
            console = Console(width=120)
        console.print(rich_table)
        if table["below"]:
            shares = ", ".join(f"{level:g}: {v:.2f}" for level, v in table["below"].items())
            console.print(f"share of targets below each predicted quantile (calibrated = the level): {shares}")
        console.print(f"saved {path}")

    @rank_zero_only
    @torch.no_grad()
    def _plot(self, stage: str, filename: str) -> None:
        if self.plot_windows <= 0:
            return
        datamodule = self.trainer.datamodule
        dataset = datamodule.datasets[stage]
        picks = np.unique(np.linspace(0, len(dataset) - 1, self.plot_windows).round().astype(int)).tolist()
        batch = default_collate([dataset[i] for i in picks])
        batch = {k: v.to(self.device) if isinstance(v, Tensor) else v for k, v in batch.items()}
        was_training = self.training
        self.eval()
        units = ForecastMetrics(self.plan, self.season, self.interval).update(batch, self(batch["context"]))
        self.train(was_training)
        panels = []
        span = self.context + self.horizon
        for i, (column, start) in enumerate(zip(batch["column"].tolist(), batch["start"].tolist())):

            def row(key: str, i: int = i) -> np.ndarray | None:
                return units[key][i].float().cpu().numpy() if key in units else None

            times = datamodule.times_of(start, span)
            name = datamodule.series.columns[column]
            panels.append(Panel(times, row("context"), row("target"), row("pred"), row("snaive"), row("low"),
                                row("high"), f"{name}: forecast from {times[self.context - 1]}"))  # fmt: skip
        where = f"epoch {self.current_epoch}" if stage == "val" else "test"
        plot_forecasts(panels, self.run_dir / "predictions" / filename, f"{self.model_label()}, {stage} ({where})",
                       self.interval)  # fmt: skip

"""Forecast metrics beside the seasonal-naive and naive baselines, on the same windows, in the data's units.

One definition each, shared with the losses: sMAPE is :class:`losses.forecasting.SMAPE` (x 100,
percent), MASE is :class:`losses.forecasting.MASE` with the in-sample seasonal-naive scale of each
context window (:func:`losses.forecasting.naive_scale`), CRPS is the closed form for a normal head
(:func:`losses.forecasting.crps_gaussian`), the sample CRPS for other distribution heads (400
draws), for a quantile head ``2 sum_l w_l pinball_l`` with midpoint-rule weights ``w_l`` of the levels
on [0, 1] (the quantile-score form of the CRPS integral, Gneiting & Raftery 2007, eq. 22 -- an
approximation, coarse with few levels) and the absolute error for a point forecast. MAE and RMSE
average over every window and step. ``coverage`` is the share of targets inside the central
``interval`` (e.g. the 10%-90% quantiles for 80%), ``width`` the mean width of that interval;
``below`` the share of targets below each predicted quantile level (quantile heads; for a normal
head at the levels of :data:`losses.forecasting.DEFAULT_QUANTILES`, from its CDF): calibrated
forecasts give the level itself.
All are ``torchmetrics.MeanMetric``, so they are reduced over DDP ranks.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torchmetrics import MeanMetric

from losses.forecasting import (
    DEFAULT_QUANTILES,
    MASE,
    SMAPE,
    Pinball,
    crps_gaussian,
    crps_sample,
    naive_scale,
    seasonal_naive,
)
from tasks.forecasting.model import HeadPlan, distribution

FORECASTERS = ("model", "snaive", "naive")
METRICS = ("mae", "rmse", "smape", "mase", "crps", "coverage", "width")
_SAMPLES = 400


def to_data_units(batch: dict[str, Tensor], plan: HeadPlan, out: dict[str, Tensor]) -> dict[str, Tensor]:
    """Context, target and the head's outputs in the data's units (the scaler's inverse)."""
    loc, scale = batch["data_loc"].float().unsqueeze(-1), batch["data_scale"].float().unsqueeze(-1)
    units = {
        "context": batch["context"].float() * scale + loc,
        "target": batch["target"].float() * scale + loc,
        "pred": out["pred"].float() * scale + loc,
    }
    if "quantiles" in out:
        units["quantiles"] = out["quantiles"].float() * scale.unsqueeze(-1) + loc.unsqueeze(-1)
    for key in ("loc",):
        if key in out:
            units[key] = out[key].float() * scale + loc
    for key in ("sigma", "rate"):
        if key in out:
            units[key] = out[key].float() * scale
    for key in ("df",):
        if key in out:
            units[key] = out[key].float()
    if "alpha" in out:
        units["alpha"] = out["alpha"].float() / scale
    return units


def _draws(plan: HeadPlan, units: dict[str, Tensor]) -> Tensor:
    """``(N, H, S)`` draws of a distribution head with a fixed seed (the training RNG is left untouched)."""
    with torch.random.fork_rng(devices=[units["target"].device] if units["target"].is_cuda else []):
        torch.manual_seed(0)
        dist = distribution(plan, units)
        return dist.sample((_SAMPLES,)).movedim(0, -1).float()


def interval(plan: HeadPlan, units: dict[str, Tensor], level: float) -> tuple[Tensor, Tensor] | None:
    """Lower and upper bound of the central ``level`` interval, or None (point head; levels not predicted)."""
    low, high = (1.0 - level) / 2.0, (1.0 + level) / 2.0
    if plan.kind == "point":
        return None
    if plan.kind == "quantile":
        index = {round(q, 6): i for i, q in enumerate(plan.levels)}
        if round(low, 6) not in index or round(high, 6) not in index:
            return None
        q = units["quantiles"]
        return q[..., index[round(low, 6)]], q[..., index[round(high, 6)]]
    if plan.kind == "normal":
        dist = torch.distributions.Normal(units["loc"], units["sigma"])
        return dist.icdf(torch.tensor(low)), dist.icdf(torch.tensor(high))
    draws = _draws(plan, units)
    bounds = torch.quantile(draws, torch.tensor([low, high], device=draws.device), dim=-1)
    return bounds[0], bounds[1]


def _level_weights(levels: tuple[float, ...], like: Tensor) -> Tensor:
    """Midpoint-rule weights of the levels on [0, 1]: each level owns the span to the midpoints beside it."""
    edges = [0.0, *((a + b) / 2 for a, b in zip(levels, levels[1:])), 1.0]
    return torch.tensor([hi - lo for lo, hi in zip(edges, edges[1:])], dtype=like.dtype, device=like.device)


def crps(plan: HeadPlan, units: dict[str, Tensor]) -> Tensor:
    """Element-wise CRPS ``(N, H)`` of the model's forecast, in the data's units."""
    target = units["target"]
    if plan.kind == "point":
        return (units["pred"] - target).abs()
    if plan.kind == "quantile":
        pinball = Pinball(list(plan.levels), reduction="none").to(target.device)
        return 2.0 * (pinball(units["quantiles"], target) * _level_weights(plan.levels, target)).sum(-1)
    if plan.kind == "normal":
        return crps_gaussian(units["loc"], units["sigma"], target)
    return crps_sample(_draws(plan, units), target)


class ForecastMetrics(nn.Module):
    """Accumulates :data:`METRICS` for the model and both baselines over an epoch."""

    def __init__(self, plan: HeadPlan, season: int, level: float = 0.8) -> None:
        super().__init__()
        self.plan, self.season, self.level = plan, season, level
        self.means = nn.ModuleDict({f"{w}_{m}": MeanMetric() for w in FORECASTERS for m in METRICS})
        self.levels = plan.levels if plan.kind == "quantile" else DEFAULT_QUANTILES if plan.kind == "normal" else ()
        self.below = nn.ModuleList(MeanMetric() for _ in self.levels)
        self.smape = SMAPE(reduction="none")
        self.mase = MASE(reduction="none")

    def update(self, batch: dict[str, Tensor], out: dict[str, Tensor]) -> dict[str, Tensor]:
        """Add one batch; returns its outputs in the data's units (and the baselines)."""
        units = to_data_units(batch, self.plan, out)
        context, target = units["context"], units["target"]
        horizon = target.shape[-1]
        units["snaive"] = seasonal_naive(context, horizon, self.season)
        units["naive"] = seasonal_naive(context, horizon, 1)
        scale = naive_scale(context, self.season)
        for who, forecast in (("model", units["pred"]), ("snaive", units["snaive"]), ("naive", units["naive"])):
            error = forecast - target
            self.means[f"{who}_mae"].update(error.abs())
            self.means[f"{who}_rmse"].update(error.square())
            self.means[f"{who}_smape"].update(100.0 * self.smape(forecast, target))
            self.means[f"{who}_mase"].update(self.mase(forecast, target, scale))
            self.means[f"{who}_crps"].update(error.abs() if who != "model" else crps(self.plan, units))
        if self.plan.kind == "quantile":
            for i, metric in enumerate(self.below):
                metric.update((target <= units["quantiles"][..., i]).float())
        elif self.plan.kind == "normal":
            pit = torch.distributions.Normal(units["loc"], units["sigma"]).cdf(target)
            for level, metric in zip(self.levels, self.below):
                metric.update((pit <= level).float())
        bounds = interval(self.plan, units, self.level)
        if bounds is not None:
            low, high = bounds
            units["low"], units["high"] = low, high
            self.means["model_coverage"].update(((target >= low) & (target <= high)).float())
            self.means["model_width"].update(high - low)
        return units

    def compute(self) -> dict[str, dict[str, float]]:
        """``{forecaster: {metric: value}}`` (NaN where not defined), ``{"below": {level: share}}``; resets."""
        table: dict[str, dict[str, float]] = {w: {} for w in FORECASTERS}
        table["below"] = {}
        for level, metric in zip(self.levels, self.below):
            table["below"][level] = float(metric.compute()) if metric.update_called else math.nan
            metric.reset()
        for key, metric in self.means.items():
            who, name = key.split("_", 1)
            has_data = bool(metric.update_called)
            value = float(metric.compute()) if has_data else math.nan
            table[who][name] = math.sqrt(value) if name == "rmse" else value
            metric.reset()
        return table

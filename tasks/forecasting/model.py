"""Forecasting networks (DLinear, N-BEATS, GRU) and the head the loss chooses.

The loss slot decides the head (:func:`plan_head`): a point loss gives one value per step, a
quantile loss (``pinball``, ``huber_quantile``) one value per level, kept from crossing by
cumulative softplus increments from the median (:func:`losses.forecasting.monotone_quantiles`),
and a distribution loss the parameters it declares in ``OUTPUTS`` (``loc, sigma`` -> normal,
``+ df`` -> Student-t, ``rate`` -> Poisson, ``+ alpha`` -> negative binomial). Terms that need
different heads are a config error before training.

Every network maps a context window ``(N, L)`` to raw outputs ``(N, H, K)``; :class:`Forecaster`
normalises each window first (``window``: subtract its mean, divide by its std, as RevIN without
the affine part; count heads divide by 1 + mean |context| only, as DeepAR) and maps the head's
raw outputs back to the data's scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, distributions, nn

from losses import Composite, LossConfigError
from losses.forecasting import Pinball, monotone_quantiles
from losses.regression import Quantile

ARCHS = ("dlinear", "nbeats", "gru")
NORMALIZE = ("window", "none")
#: distribution heads and their parameters per step, smallest first (a plan takes the first that covers the loss)
DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    "normal": ("loc", "sigma"),
    "student_t": ("loc", "sigma", "df"),
    "poisson": ("rate",),
    "negative_binomial": ("rate", "alpha"),
}
COUNT_HEADS = ("poisson", "negative_binomial")
_MIN_SIGMA = 1e-3  # in window-normalised units


@dataclass(frozen=True)
class HeadPlan:
    """What the head predicts per target step, derived from the loss terms."""

    kind: str  # "point" | "quantile" | a key of DISTRIBUTIONS
    params: tuple[str, ...] = ()
    levels: tuple[float, ...] = ()
    num_samples: int = 0  # draws per step for terms that score samples (crps_sample)

    @property
    def width(self) -> int:
        """Raw outputs per step."""
        return len(self.levels) if self.kind == "quantile" else max(len(self.params), 1)

    @property
    def median_index(self) -> int:
        """The quantile level closest to 0.5 (the point forecast of a quantile head)."""
        return min(range(len(self.levels)), key=lambda i: abs(self.levels[i] - 0.5)) if self.levels else 0

    @property
    def probabilistic(self) -> bool:
        return self.kind != "point"

    def describe(self) -> str:
        if self.kind == "quantile":
            return f"quantile head ({len(self.levels)} levels {list(self.levels)})"
        if self.kind == "point":
            return "point head"
        return f"{self.kind} head ({', '.join(self.params)})"


def plan_head(composite: Composite, where: str = "loss.forecast") -> HeadPlan:
    """The head every term of ``composite`` can be scored on, or a :class:`LossConfigError` naming the clash."""
    quantile_terms: dict[str, tuple[float, ...]] = {}
    dist_terms: dict[str, tuple[str, ...]] = {}
    samples = 0
    for name, loss in zip(composite.names, composite.terms):
        if isinstance(loss, Quantile) and not isinstance(loss, Pinball) and loss.multi:
            raise LossConfigError(
                f"{where}: 'quantile' with a list of levels scores a point forecast here; use 'pinball' "
                "(same loss, forecasting family) to get a quantile head"
            )
        outputs = tuple(getattr(loss, "OUTPUTS", ()))
        if "quantiles" in outputs:
            quantile_terms[name] = loss.levels
        elif outputs:
            dist_terms[name] = outputs
            samples = max(samples, getattr(loss, "num_samples", 0) if "samples" in (loss.INPUTS or ()) else 0)
    if quantile_terms and dist_terms:
        q, d = next(iter(quantile_terms)), next(iter(dist_terms))
        raise LossConfigError(
            f"{where}: {q!r} needs a quantile head but {d!r} a distribution head ({', '.join(dist_terms[d])}); "
            "a slot has one head: combine a quantile or a distribution loss with point losses only"
        )
    if quantile_terms:
        levels = set(quantile_terms.values())
        if len(levels) > 1:
            listed = "; ".join(f"{n}: {list(v)}" for n, v in quantile_terms.items())
            raise LossConfigError(f"{where}: the quantile terms predict different levels ({listed}); use one list")
        return HeadPlan("quantile", ("quantiles",), levels.pop())
    if dist_terms:
        needed = set().union(*dist_terms.values())
        for kind, params in DISTRIBUTIONS.items():
            if needed <= set(params):
                return HeadPlan(kind, params, (), samples)
        listed = "; ".join(f"{n}: {', '.join(v)}" for n, v in dist_terms.items())
        raise LossConfigError(
            f"{where}: no one distribution head gives what the terms need ({listed}); heads: "
            + ", ".join(f"{k} ({', '.join(v)})" for k, v in DISTRIBUTIONS.items())
        )
    return HeadPlan("point", ("pred",))


# --------------------------------------------------------------------------- networks


class DLinear(nn.Module):
    """DLinear: a moving-average trend / remainder split, one linear map from the context to the horizon each.

    Zeng, Chen, Zhang & Xu, "Are Transformers Effective for Time Series Forecasting?", AAAI 2023.
    """

    def __init__(self, context: int, horizon: int, width: int, kernel_size: int = 25) -> None:
        super().__init__()
        self.horizon, self.width, self.kernel_size = horizon, width, kernel_size
        self.trend = nn.Linear(context, horizon * width)
        self.remainder = nn.Linear(context, horizon * width)
        for layer in (self.trend, self.remainder):  # start from the context mean, as the reference code
            nn.init.constant_(layer.weight, 1.0 / context)
            nn.init.zeros_(layer.bias)

    def forward(self, x: Tensor) -> Tensor:
        front = (self.kernel_size - 1) // 2
        padded = F.pad(x.unsqueeze(1), (front, self.kernel_size - 1 - front), mode="replicate")
        trend = F.avg_pool1d(padded, self.kernel_size, stride=1).squeeze(1)
        out = self.trend(trend) + self.remainder(x - trend)
        return out.view(x.shape[0], self.horizon, self.width)


class NBeatsBlock(nn.Module):
    """One generic N-BEATS block: an MLP whose output is a backcast of the input and a forecast."""

    def __init__(self, context: int, horizon: int, width: int, hidden: int, layers: int, dropout: float) -> None:
        super().__init__()
        stack: list[nn.Module] = []
        size = context
        for _ in range(layers):
            stack += [nn.Linear(size, hidden), nn.ReLU(), nn.Dropout(dropout)]
            size = hidden
        self.mlp = nn.Sequential(*stack)
        self.backcast = nn.Linear(hidden, context)
        self.forecast = nn.Linear(hidden, horizon * width)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.mlp(x)
        return self.backcast(h), self.forecast(h)


class NBeats(nn.Module):
    """N-BEATS (generic): residual blocks, each removes its backcast from the input and adds its forecast.

    Oreshkin, Carpov, Chapados & Bengio, "N-BEATS: Neural basis expansion analysis for interpretable
    time series forecasting", ICLR 2020.
    """

    def __init__(
        self, context: int, horizon: int, width: int, hidden: int = 256, layers: int = 4, blocks: int = 3,
        dropout: float = 0.0,
    ) -> None:  # fmt: skip
        super().__init__()
        self.horizon, self.width = horizon, width
        block = (context, horizon, width, hidden, layers, dropout)
        self.blocks = nn.ModuleList(NBeatsBlock(*block) for _ in range(blocks))

    def forward(self, x: Tensor) -> Tensor:
        forecast = x.new_zeros(x.shape[0], self.horizon * self.width)
        for block in self.blocks:
            backcast, step = block(x)
            x = x - backcast
            forecast = forecast + step
        return forecast.view(-1, self.horizon, self.width)


class GRUForecaster(nn.Module):
    """A GRU encoder over the context; its last state maps to the whole horizon at once (direct multi-step).

    Cho et al., "Learning Phrase Representations using RNN Encoder-Decoder", EMNLP 2014; the multi-horizon
    output as MQ-RNN (Wen et al. 2017).
    """

    def __init__(self, context: int, horizon: int, width: int, hidden: int = 64, layers: int = 2,
                 dropout: float = 0.0) -> None:  # fmt: skip
        super().__init__()
        self.horizon, self.width = horizon, width
        self.gru = nn.GRU(1, hidden, layers, batch_first=True, dropout=dropout if layers > 1 else 0.0)
        self.out = nn.Linear(hidden, horizon * width)

    def forward(self, x: Tensor) -> Tensor:
        _, state = self.gru(x.unsqueeze(-1))
        return self.out(state[-1]).view(-1, self.horizon, self.width)


def build_network(
    arch: str, context: int, horizon: int, width: int, hidden: int, layers: int, blocks: int, kernel_size: int,
    dropout: float,
) -> nn.Module:  # fmt: skip
    if arch == "dlinear":
        return DLinear(context, horizon, width, kernel_size)
    if arch == "nbeats":
        return NBeats(context, horizon, width, hidden, layers, blocks, dropout)
    if arch == "gru":
        return GRUForecaster(context, horizon, width, hidden, layers, dropout)
    raise ValueError(f"model.arch: expected one of {ARCHS}, got {arch!r}")


# --------------------------------------------------------------------------- the head


class Forecaster(nn.Module):
    """Window normalisation, a network, and the head of ``plan``: ``context (N, L)`` -> named outputs.

    The outputs (in the data's scaled units) are the slot inputs of the loss: ``pred (N, H)`` (the
    point forecast: the median quantile, the mean of a distribution) and, by head, ``quantiles
    (N, H, Q)`` or ``loc``, ``sigma``, ``var``, ``df``, ``rate``, ``log_rate``, ``alpha`` (each ``(N, H)``).
    """

    def __init__(self, network: nn.Module, plan: HeadPlan, normalize: str = "window", non_crossing: bool = True):
        super().__init__()
        if normalize not in NORMALIZE:
            raise ValueError(f"model.normalize: expected one of {NORMALIZE}, got {normalize!r}")
        self.network, self.plan, self.normalize, self.non_crossing = network, plan, normalize, non_crossing

    def window_stats(self, context: Tensor) -> tuple[Tensor, Tensor]:
        """Shift and scale ``(N, 1)`` of each window (count heads: no shift)."""
        ones = context.new_ones(context.shape[0], 1)
        if self.normalize == "none":
            return ones * 0, ones
        if self.plan.kind in COUNT_HEADS:
            return ones * 0, 1.0 + context.abs().mean(-1, keepdim=True)
        return context.mean(-1, keepdim=True), context.std(-1, keepdim=True) + 1e-5

    def forward(self, context: Tensor) -> dict[str, Tensor]:
        shift, scale = self.window_stats(context)
        raw = self.network((context - shift) / scale)
        return self.head(raw, shift, scale)

    def head(self, raw: Tensor, shift: Tensor, scale: Tensor) -> dict[str, Tensor]:
        """Raw ``(N, H, K)`` -> named outputs in the data's scaled units."""
        kind = self.plan.kind
        if kind == "point":
            return {"pred": raw[..., 0] * scale + shift}
        if kind == "quantile":
            q = monotone_quantiles(raw, self.plan.median_index) if self.non_crossing else raw
            quantiles = q * scale.unsqueeze(-1) + shift.unsqueeze(-1)  # scale > 0 keeps the order
            return {"quantiles": quantiles, "pred": quantiles[..., self.plan.median_index]}
        if kind in ("normal", "student_t"):
            loc = raw[..., 0] * scale + shift
            sigma = (F.softplus(raw[..., 1]) + _MIN_SIGMA) * scale
            out = {"pred": loc, "loc": loc, "sigma": sigma, "var": sigma.square()}
            if kind == "student_t":
                out["df"] = 2.0 + F.softplus(raw[..., 2])
            return out
        rate = (F.softplus(raw[..., 0]) + 1e-6) * scale
        out = {"pred": rate, "rate": rate, "log_rate": rate.log()}
        if kind == "negative_binomial":
            out["alpha"] = F.softplus(raw[..., 1]) / scale.sqrt() + 1e-6
        return out


def distribution(plan: HeadPlan, out: dict[str, Tensor]) -> distributions.Distribution | None:
    """The predictive distribution of a distribution head (None for point and quantile heads)."""
    if plan.kind == "normal":
        return distributions.Normal(out["loc"], out["sigma"])
    if plan.kind == "student_t":
        return distributions.StudentT(out["df"], out["loc"], out["sigma"])
    if plan.kind == "poisson":
        return distributions.Poisson(out["rate"])
    if plan.kind == "negative_binomial":
        alpha = out["alpha"]
        return distributions.NegativeBinomial(1.0 / alpha, probs=alpha * out["rate"] / (1.0 + alpha * out["rate"]))
    return None

"""Forecasting losses: scaled point errors, quantile and distribution scores for multi-step forecasts.

Shapes follow one convention: a batch of N windows with T target steps (and optionally more
trailing dims), ``target (N, T, ...)``; a point forecast has the shape of ``target``; a quantile
forecast adds a trailing Q dim ``(N, T, ..., Q)``; a sample forecast a trailing S dim.

Each distribution or quantile loss *declares* what it needs, so a task can size its head from the
loss and reject a mismatch before training:

- ``INPUTS``: the names of the tensors it is called with, in order (``("loc", "target", "var")``);
  a :class:`losses.Composite` passes them by name from the slot's inputs;
- ``OUTPUTS``: the head parameters per target step it needs (``("loc", "sigma")``), from
  :data:`HEAD_PARAMETERS`; a quantile loss declares ``("quantiles",)`` and its levels in ``quantiles``.

Where torch has the loss (PoissonNLLLoss) the module wraps it; ``gaussian_nll`` repeats
torch's GaussianNLLLoss formula line by line (and is tested equal to it) because torch's version
branches on the values (a negative-variance check) and so does not compile to one graph.

The (seasonal-)naive helpers :func:`naive_scale` and :func:`seasonal_naive` are the one
definition of the MASE/RMSSE scale and of the seasonal-naive baseline used by the forecasting task.

>>> import torch, losses
>>> crit = losses.build("crps_gaussian")
>>> round(float(crit(torch.zeros(1), torch.zeros(1), torch.ones(1))), 4)  # sigma * (2 phi(0) - 1/sqrt(pi))
0.2337
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from losses._utils import LossInputError, check_reduction, check_same_shape, float32_forward, reduce
from losses.registry import register
from losses.regression import Quantile

__all__ = [
    "HEAD_PARAMETERS",
    "DEFAULT_QUANTILES",
    "MAPE",
    "SMAPE",
    "WAPE",
    "MASE",
    "RMSSE",
    "GaussianNLL",
    "StudentTNLL",
    "PoissonNLL",
    "NegativeBinomialNLL",
    "CRPSGaussian",
    "CRPSSample",
    "Pinball",
    "HuberQuantile",
    "TemporalConsistency",
    "FreqMSE",
    "crps_gaussian",
    "crps_sample",
    "monotone_quantiles",
    "naive_scale",
    "seasonal_naive",
    "student_t_nll",
    "negative_binomial_nll",
]

#: head parameters a distribution loss may declare in ``OUTPUTS`` (per target step)
HEAD_PARAMETERS = ("loc", "sigma", "df", "rate", "alpha")
#: pytorch-forecasting's seven default quantile levels (their 0.1/0.9 pair is the 80% interval)
DEFAULT_QUANTILES = (0.02, 0.1, 0.25, 0.5, 0.75, 0.9, 0.98)
_SQRT_PI = math.sqrt(math.pi)
_SQRT2 = math.sqrt(2.0)
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


# --------------------------------------------------------------------------- functional core


def naive_scale(context: Tensor, season: int = 1, power: int = 1) -> Tensor:
    """In-sample (seasonal-)naive error of each context window: ``mean_t |y_t - y_{t-m}|^p`` over the last dim.

    ``power=1`` is the MASE scale, ``power=2`` the RMSSE (squared) scale (Hyndman & Koehler 2006).
    ``context (..., L)`` with ``L > season`` -> ``(...)``.
    """
    if not 1 <= season < context.shape[-1]:
        raise LossInputError(
            f"naive_scale: season must lie in [1, L-1] for a context of L={context.shape[-1]}, got {season}"
        )
    diff = (context[..., season:] - context[..., :-season]).abs()
    return (diff if power == 1 else diff.pow(power)).mean(-1)


def seasonal_naive(context: Tensor, horizon: int, season: int = 1) -> Tensor:
    """Seasonal-naive forecast ``y_{L+h} = y_{L+h-m*ceil(h/m)}`` (h = 1..H) of ``context (..., L)`` -> ``(..., H)``.

    ``season=1`` is the naive (last value) forecast.
    """
    length = context.shape[-1]
    if not 1 <= season <= length:
        raise LossInputError(f"seasonal_naive: season must lie in [1, L={length}], got {season}")
    index = length - season + torch.arange(horizon, device=context.device) % season
    return context[..., index]


def _floor_scale(name: str, scale: Tensor, eps: float) -> Tensor:
    """``max(scale, eps)``, warning (never silently) when a window's scale is below ``eps``."""
    if not torch.compiler.is_compiling() and scale.numel() and bool((scale < eps).any()):
        warnings.warn(
            f"{name}: the naive scale of some windows is below eps (a constant context window?); "
            "it is floored at eps, so their errors are divided by eps",
            RuntimeWarning,
            stacklevel=3,
        )
    return scale.clamp_min(eps)


def _per_window(scale: Tensor, like: Tensor) -> Tensor:
    """A per-window scale ``(N,)`` reshaped to broadcast against ``like (N, T, ...)``; other shapes unchanged."""
    if scale.dim() == 1 and like.dim() > 1 and scale.shape[0] == like.shape[0]:
        return scale.reshape(-1, *([1] * (like.dim() - 1)))
    return scale


def _window_mean(values: Tensor) -> Tensor:
    """Mean over every dim but the first (one value per window); a 0-d/1-d input is its own windows."""
    if values.dim() <= 1:
        return values.reshape(-1)
    return values.flatten(1).mean(1)


def crps_gaussian(loc: Tensor, sigma: Tensor, target: Tensor) -> Tensor:
    """Element-wise closed-form CRPS of N(loc, sigma^2) at ``target`` (Gneiting & Raftery 2007, eq. 21)."""
    z = (target - loc) / sigma
    pdf = torch.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    cdf = 0.5 * (1.0 + torch.erf(z / _SQRT2))
    return sigma * (z * (2.0 * cdf - 1.0) + 2.0 * pdf - 1.0 / _SQRT_PI)


def crps_sample(samples: Tensor, target: Tensor, fair: bool = False) -> Tensor:
    """Element-wise energy-form CRPS of an ensemble ``samples (..., S)`` at ``target (...)``.

    ``E|X - y| - 1/2 E|X - X'|``, the pair term in O(S log S) from the sorted samples:
    ``sum_ij |x_i - x_j| = 2 sum_i (2i - S - 1) x_(i)``.
    """
    s = samples.shape[-1]
    spread = (samples - target.unsqueeze(-1)).abs().mean(-1)
    ordered = samples.sort(dim=-1).values
    ranks = 2.0 * torch.arange(1, s + 1, device=samples.device, dtype=samples.dtype) - s - 1.0
    pair_sum = 2.0 * (ordered * ranks).sum(-1)  # sum over all ordered pairs |x_i - x_j|
    pairs = s * (s - 1) if fair else s * s
    return spread - pair_sum / (2.0 * max(pairs, 1))


def student_t_nll(loc: Tensor, sigma: Tensor, df: Tensor | float, target: Tensor) -> Tensor:
    """Element-wise negative log-likelihood of a location-scale Student-t."""
    df = torch.as_tensor(df, dtype=loc.dtype, device=loc.device)
    z = (target - loc) / sigma
    half = 0.5 * (df + 1.0)
    return (
        torch.lgamma(0.5 * df)
        - torch.lgamma(half)
        + 0.5 * torch.log(math.pi * df)
        + torch.log(sigma)
        + half * torch.log1p(z * z / df)
    )


def negative_binomial_nll(rate: Tensor, alpha: Tensor, target: Tensor) -> Tensor:
    """Element-wise negative log-likelihood of a negative binomial with mean ``rate``, variance ``mu + alpha mu^2``."""
    r = 1.0 / alpha
    log_total = torch.log1p(alpha * rate)  # log(1 + alpha mu)
    log_p = (
        torch.lgamma(target + r)
        - torch.lgamma(target + 1.0)
        - torch.lgamma(r)
        - r * log_total
        + target * (torch.log(alpha * rate) - log_total)
    )
    return -log_p


def monotone_quantiles(raw: Tensor, median_index: int) -> Tensor:
    """Non-crossing quantiles from unconstrained head outputs ``raw (..., Q)``.

    The level at ``median_index`` is taken as is; each higher level adds ``softplus`` of its raw
    value to the one below, each lower level subtracts it from the one above (cumulative softplus
    increments from the median), so the result is non-decreasing along the last dim for any input.
    """
    q = raw.shape[-1]
    if not 0 <= median_index < q:
        raise ValueError(f"monotone_quantiles: median_index {median_index} outside [0, {q})")
    centre = raw[..., median_index : median_index + 1]
    up = centre + F.softplus(raw[..., median_index + 1 :]).cumsum(-1)
    down = centre - F.softplus(raw[..., :median_index].flip(-1)).cumsum(-1)
    return torch.cat((down.flip(-1), centre, up), dim=-1)


def _check_positive(name: str, what: str, value: Tensor) -> None:
    if not torch.compiler.is_compiling() and value.numel() and bool((value <= 0).any()):
        raise LossInputError(f"{name}: {what} must be > 0, got min {float(value.min()):.4g}")


# --------------------------------------------------------------------------- point losses


class _Forecasting(nn.Module):
    """Shared constructor: validates and stores ``reduction``."""

    #: names of the tensors the loss is called with, in order (None: the slot's positional inputs)
    INPUTS: tuple[str, ...] | None = None
    #: head parameters per target step it needs (empty: a point forecast)
    OUTPUTS: tuple[str, ...] = ()

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = check_reduction(reduction)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"


@register("mape", family="forecasting")
class MAPE(_Forecasting):
    """Mean absolute percentage error (a fraction, not percent); undefined targets near 0 are floored at eps.

    Equal to torchmetrics' ``mean_absolute_percentage_error`` (same eps). It is asymmetric: an
    over-forecast can cost without bound, an under-forecast at most 1.

    Args:
        eps: floor of ``|target|`` in the denominator.
        reduction: "mean" | "sum" | "none".

    Shape:
        - pred: (N, T, ...), the point forecast.
        - target: the shape of ``pred``.
        - output: scalar; the shape of ``pred`` with reduction="none".

    Formula:
        MAPE = 1/n * sum_i |y_i - p_i| / max(|y_i|, eps)

    Reference:
        Hyndman & Koehler, "Another look at measures of forecast accuracy", Int. J. Forecasting 22(4), 2006.

    Example:
        >>> MAPE()(torch.tensor([1.0, 3.0]), torch.tensor([2.0, 4.0]))
        tensor(0.3750)
    """

    def __init__(self, eps: float = 1.17e-6, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.eps = float(eps)

    @float32_forward
    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        check_same_shape("mape", pred, target)
        return reduce((target - pred).abs() / target.abs().clamp_min(self.eps), self.reduction)


@register("smape", family="forecasting")
class SMAPE(_Forecasting):
    """Symmetric mean absolute percentage error in [0, 2] (a fraction); 0 where target and forecast are both 0.

    Equal to torchmetrics' ``symmetric_mean_absolute_percentage_error`` (same eps). The forecasting
    task reports it (x 100 for percent: the M4 competition's sMAPE) beside MASE.

    Args:
        eps: floor of ``|y| + |p|`` in the denominator.
        reduction: "mean" | "sum" | "none".

    Shape:
        - pred: (N, T, ...), the point forecast.
        - target: the shape of ``pred``.
        - output: scalar; the shape of ``pred`` with reduction="none".

    Formula:
        sMAPE = 1/n * sum_i 2 |y_i - p_i| / max(|y_i| + |p_i|, eps)

    Reference:
        Makridakis, "Accuracy measures: theoretical and practical concerns", Int. J. Forecasting 9(4), 1993;
        Makridakis, Spiliotis & Assimakopoulos, "The M4 Competition", Int. J. Forecasting 36(1), 2020.

    Example:
        >>> SMAPE()(torch.tensor([1.0, 0.0]), torch.tensor([3.0, 0.0]))
        tensor(0.5000)
    """

    def __init__(self, eps: float = 1.17e-6, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.eps = float(eps)

    @float32_forward
    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        check_same_shape("smape", pred, target)
        denom = (target.abs() + pred.abs()).clamp_min(self.eps)
        return reduce(2.0 * (target - pred).abs() / denom, self.reduction)


@register("wape", family="forecasting")
class WAPE(_Forecasting):
    """Weighted absolute percentage error of each window: total absolute error over total |target|.

    One value per window (over all dims but the first); ``reduction="mean"`` averages the windows.
    For one window it equals torchmetrics' ``weighted_mean_absolute_percentage_error`` (same eps).
    Unlike MAPE, single near-zero targets do not explode it.

    Args:
        eps: floor of ``sum |y|`` in the denominator.
        reduction: "mean" | "sum" | "none".

    Shape:
        - pred: (N, T, ...), the point forecast.
        - target: the shape of ``pred``.
        - output: scalar; (N,) with reduction="none".

    Formula:
        WAPE_n = sum_t |y_nt - p_nt| / max(sum_t |y_nt|, eps)

    Reference:
        Kolassa & Schütz, "Advantages of the MAD/MEAN ratio over the MAPE", Foresight 6, 2007.

    Example:
        >>> WAPE()(torch.tensor([[1.0, 3.0]]), torch.tensor([[2.0, 2.0]]))
        tensor(0.5000)
    """

    def __init__(self, eps: float = 1.17e-6, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.eps = float(eps)

    @float32_forward
    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        check_same_shape("wape", pred, target)
        if pred.dim() <= 1:  # one window
            pred, target = pred.reshape(1, -1), target.reshape(1, -1)
        error = (target - pred).abs().flatten(1).sum(1)
        return reduce(error / target.abs().flatten(1).sum(1).clamp_min(self.eps), self.reduction)


@register("mase", family="forecasting")
class MASE(_Forecasting):
    """Mean absolute scaled error: the error divided by the in-sample seasonal-naive error of the context window.

    ``scale`` is :func:`naive_scale` of each window's context (``mean_t |y_t - y_{t-m}|``), computed by
    the caller (the forecasting task passes it as the slot input ``scale``); it must come from the
    context, never from the target. A scale below ``eps`` (a constant context) is floored at ``eps``
    with a warning: the loss never silently becomes 0. Below 1: better than the in-sample
    seasonal-naive forecast. Scale-free, so series of different units can be averaged.

    Args:
        eps: floor of the scale (in the units of the data).
        reduction: "mean" | "sum" | "none".

    Shape:
        - pred: (N, T, ...), the point forecast.
        - target: the shape of ``pred``.
        - scale: (N,) one scale per window, or broadcastable to ``pred``.
        - output: scalar; the shape of ``pred`` with reduction="none".

    Formula:
        MASE = 1/n * sum_i |y_i - p_i| / max(s_i, eps),   s = 1/(L-m) sum_{t=m+1..L} |c_t - c_{t-m}| (context c)

    Reference:
        Hyndman & Koehler, "Another look at measures of forecast accuracy", Int. J. Forecasting 22(4), 2006.

    Example:
        >>> MASE()(torch.tensor([[1.0, 3.0]]), torch.tensor([[2.0, 2.0]]), torch.tensor([2.0]))
        tensor(0.5000)
    """

    INPUTS = ("pred", "target", "scale")

    def __init__(self, eps: float = 1e-6, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.eps = float(eps)

    @float32_forward
    def forward(self, pred: Tensor, target: Tensor, scale: Tensor) -> Tensor:
        check_same_shape("mase", pred, target)
        scale = _floor_scale("mase", _per_window(scale, pred), self.eps)
        return reduce((target - pred).abs() / scale, self.reduction)


@register("rmsse", family="forecasting")
class RMSSE(_Forecasting):
    """Root mean squared scaled error of each window (the M5 accuracy measure, unweighted over windows).

    ``sq_scale`` is :func:`naive_scale` with ``power=2`` of each window's context (the in-sample
    mean squared seasonal-naive error), passed by the caller as the slot input ``sq_scale``; below
    ``eps`` it is floored with a warning. One value per window; ``reduction="mean"`` averages them.

    Args:
        eps: floor of the squared scale; also the floor of the mean squared error before the root
            (a finite gradient at zero error).
        reduction: "mean" | "sum" | "none".

    Shape:
        - pred: (N, T, ...), the point forecast.
        - target: the shape of ``pred``.
        - sq_scale: (N,) one squared scale per window.
        - output: scalar; (N,) with reduction="none".

    Formula:
        RMSSE_n = sqrt(max(1/T sum_t (y_nt - p_nt)^2, eps) / max(s2_n, eps)),   s2 = mean_t (c_t - c_{t-m})^2

    Reference:
        Makridakis, Spiliotis & Assimakopoulos, "M5 accuracy competition: Results, findings, and
        conclusions", Int. J. Forecasting 38(4), 2022.

    Example:
        >>> RMSSE()(torch.tensor([[1.0, 3.0]]), torch.tensor([[2.0, 2.0]]), torch.tensor([4.0]))
        tensor(0.5000)
    """

    INPUTS = ("pred", "target", "sq_scale")

    def __init__(self, eps: float = 1e-8, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.eps = float(eps)

    @float32_forward
    def forward(self, pred: Tensor, target: Tensor, sq_scale: Tensor) -> Tensor:
        check_same_shape("rmsse", pred, target)
        mse = _window_mean((target - pred).square()).clamp_min(self.eps)
        sq_scale = _floor_scale("rmsse", sq_scale.reshape(-1), self.eps)
        return reduce((mse / sq_scale).sqrt(), self.reduction)


# --------------------------------------------------------------------------- distribution losses


@register("gaussian_nll", family="forecasting")
class GaussianNLL(_Forecasting):
    """Gaussian negative log-likelihood with a predicted variance; equal to torch.nn.GaussianNLLLoss.

    The formula and its clamp are torch's line by line: ``var`` is clamped at ``eps`` for the value
    only (the gradient passes through the clamp, as in torch). Written out rather than wrapped
    because torch's function checks ``any(var < 0)`` with a Python branch, which breaks a compiled
    graph; here that check runs in eager mode only. The forecasting head predicts ``loc`` and a
    positive ``sigma``; the task passes ``var = sigma^2``.

    Args:
        full: add the constant 0.5 log(2 pi).
        eps: floor of the variance (value only).
        reduction: "mean" | "sum" | "none".

    Shape:
        - loc: (N, T, ...), the predicted mean (torch's ``input``).
        - target: the shape of ``loc``.
        - var: the shape of ``loc`` (or broadcastable to it), > 0.
        - output: scalar; the shape of ``loc`` with reduction="none".

    Formula:
        l = 0.5 * (log(max(var, eps)) + (loc - y)^2 / max(var, eps)) [+ 0.5 log(2 pi) if full]

    Reference:
        Nix & Weigend, "Estimating the mean and variance of the target probability distribution", ICNN 1994.

    Example:
        >>> GaussianNLL()(torch.tensor([0.0]), torch.tensor([1.0]), torch.tensor([1.0]))
        tensor(0.5000)
    """

    INPUTS = ("loc", "target", "var")
    OUTPUTS = ("loc", "sigma")

    def __init__(self, full: bool = False, eps: float = 1e-6, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.full, self.eps = bool(full), float(eps)

    @float32_forward
    def forward(self, loc: Tensor, target: Tensor, var: Tensor) -> Tensor:
        check_same_shape("gaussian_nll", loc, target, "(loc, target, var)")
        if not torch.compiler.is_compiling() and var.numel() and bool((var < 0).any()):
            raise LossInputError(f"gaussian_nll(loc, target, var): var must be >= 0, got min {float(var.min()):.4g}")
        var = var + (var.clamp_min(self.eps) - var).detach()  # torch: clamp_ under no_grad
        loss = 0.5 * (torch.log(var) + (loc - target).square() / var)
        if self.full:
            loss = loss + _LOG_SQRT_2PI
        return reduce(loss, self.reduction)


@register("student_t_nll", family="forecasting")
class StudentTNLL(_Forecasting):
    """Negative log-likelihood of a location-scale Student-t; heavy tails make it robust to outliers.

    With ``df=None`` the degrees of freedom are predicted (slot input ``df``, > 0; the forecasting
    head gives ``2 + softplus``), otherwise fixed. Equal to ``-torch.distributions.StudentT.log_prob``.

    Args:
        df: fixed degrees of freedom (> 0), or None to take them from the head.
        reduction: "mean" | "sum" | "none".

    Shape:
        - loc: (N, T, ...), the location.
        - target: the shape of ``loc``.
        - sigma: the shape of ``loc``, > 0 (the scale).
        - df: the shape of ``loc``, > 0; only with ``df=None``.
        - output: scalar; the shape of ``loc`` with reduction="none".

    Formula:
        l = log G(nu/2) - log G((nu+1)/2) + 0.5 log(pi nu) + log sigma + (nu+1)/2 log(1 + z^2/nu)
        z = (y - loc) / sigma

    Reference:
        Lange, Little & Taylor, "Robust Statistical Modeling Using the t Distribution", JASA 84(408), 1989.

    Example:
        >>> StudentTNLL(df=1.0)(torch.tensor([0.0]), torch.tensor([0.0]), torch.tensor([1.0]))  # log(pi)
        tensor(1.1447)
    """

    INPUTS = ("loc", "target", "sigma", "df")
    OUTPUTS = ("loc", "sigma", "df")

    def __init__(self, df: float | None = None, reduction: str = "mean") -> None:
        super().__init__(reduction)
        if df is not None and not df > 0:
            raise ValueError(f"student_t_nll: df must be > 0, got {df}")
        self.df = None if df is None else float(df)
        if self.df is not None:
            self.INPUTS, self.OUTPUTS = ("loc", "target", "sigma"), ("loc", "sigma")

    @float32_forward
    def forward(self, loc: Tensor, target: Tensor, sigma: Tensor, df: Tensor | None = None) -> Tensor:
        check_same_shape("student_t_nll", loc, target, "(loc, target, sigma, df)")
        if df is None:
            if self.df is None:
                raise LossInputError("student_t_nll(loc, target, sigma, df): df=None needs a df tensor")
            df = torch.full_like(loc, self.df)
        _check_positive("student_t_nll", "sigma", sigma)
        return reduce(student_t_nll(loc, sigma, df, target), self.reduction)

    def extra_repr(self) -> str:
        return f"df={self.df}, reduction={self.reduction!r}"


@register("poisson_nll", family="forecasting")
class PoissonNLL(_Forecasting):
    """Poisson negative log-likelihood for counts; wraps torch.nn.functional.poisson_nll_loss.

    With ``log_input=True`` (torch's default) the loss takes the log-rate (slot input ``log_rate``),
    otherwise the rate (slot input ``rate``); the forecasting head predicts a positive rate either way.

    Args:
        log_input: the first input is log(rate) (True) or the rate (False).
        full: add the Stirling approximation of log(y!).
        eps: added to the rate inside the log when ``log_input=False``.
        reduction: "mean" | "sum" | "none".

    Shape:
        - log_rate: (N, T, ...), log(rate) (``rate`` with log_input=False).
        - target: the shape of the first input, counts >= 0.
        - output: scalar; the shape of the input with reduction="none".

    Formula:
        l = exp(x) - y x (log_input) or l = x - y log(x + eps)  [+ y log y - y + 0.5 log(2 pi y) if full]

    Reference:
        Cameron & Trivedi, "Regression Analysis of Count Data", Cambridge University Press, 1998.

    Example:
        >>> PoissonNLL()(torch.tensor([0.0]), torch.tensor([1.0]))
        tensor(1.)
    """

    INPUTS = ("log_rate", "target")
    OUTPUTS = ("rate",)

    def __init__(self, log_input: bool = True, full: bool = False, eps: float = 1e-8, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.log_input, self.full, self.eps = bool(log_input), bool(full), float(eps)
        if not self.log_input:
            self.INPUTS = ("rate", "target")

    @float32_forward
    def forward(self, rate: Tensor, target: Tensor) -> Tensor:
        check_same_shape("poisson_nll", rate, target, "(log_rate, target)" if self.log_input else "(rate, target)")
        return F.poisson_nll_loss(
            rate, target, log_input=self.log_input, full=self.full, eps=self.eps, reduction=self.reduction
        )


@register("negative_binomial_nll", family="forecasting")
class NegativeBinomialNLL(_Forecasting):
    """Negative binomial negative log-likelihood for over-dispersed counts (DeepAR's count likelihood).

    Mean ``rate`` (mu > 0) and dispersion ``alpha`` > 0 (variance mu + alpha mu^2); equal to
    ``-torch.distributions.NegativeBinomial(total_count=1/alpha, probs=alpha mu/(1 + alpha mu)).log_prob``.

    Args:
        reduction: "mean" | "sum" | "none".

    Shape:
        - rate: (N, T, ...), the mean mu > 0.
        - target: the shape of ``rate``, counts >= 0.
        - alpha: the shape of ``rate``, > 0.
        - output: scalar; the shape of ``rate`` with reduction="none".

    Formula:
        l = -[log G(y + 1/a) - log G(y + 1) - log G(1/a) - 1/a log(1 + a mu) + y log(a mu / (1 + a mu))]

    Reference:
        Salinas, Flunkert, Gasthaus & Januschowski, "DeepAR: Probabilistic forecasting with autoregressive
        recurrent networks", Int. J. Forecasting 36(3), 2020.

    Example:
        >>> NegativeBinomialNLL()(torch.tensor([1.0]), torch.tensor([0.0]), torch.tensor([1.0]))  # log(2)
        tensor(0.6931)
    """

    INPUTS = ("rate", "target", "alpha")
    OUTPUTS = ("rate", "alpha")

    @float32_forward
    def forward(self, rate: Tensor, target: Tensor, alpha: Tensor) -> Tensor:
        check_same_shape("negative_binomial_nll", rate, target, "(rate, target, alpha)")
        _check_positive("negative_binomial_nll", "rate", rate)
        _check_positive("negative_binomial_nll", "alpha", alpha)
        return reduce(negative_binomial_nll(rate, alpha, target), self.reduction)


@register("crps_gaussian", family="forecasting")
class CRPSGaussian(_Forecasting):
    """Continuous ranked probability score of a Gaussian forecast, in closed form (a proper scoring rule).

    In the units of the data (a point forecast's CRPS is its absolute error), so it compares
    directly with MAE; unlike the NLL it stays bounded when sigma collapses on an outlier.

    Args:
        reduction: "mean" | "sum" | "none".

    Shape:
        - loc: (N, T, ...), the mean.
        - target: the shape of ``loc``.
        - sigma: the shape of ``loc``, > 0 (the standard deviation).
        - output: scalar; the shape of ``loc`` with reduction="none".

    Formula:
        CRPS(N(mu, s^2), y) = s * [z (2 Phi(z) - 1) + 2 phi(z) - 1/sqrt(pi)],   z = (y - mu)/s

    Reference:
        Gneiting & Raftery, "Strictly Proper Scoring Rules, Prediction, and Estimation", JASA 102(477), 2007.

    Example:
        >>> CRPSGaussian()(torch.tensor([0.0]), torch.tensor([0.0]), torch.tensor([1.0]))
        tensor(0.2337)
    """

    INPUTS = ("loc", "target", "sigma")
    OUTPUTS = ("loc", "sigma")

    @float32_forward
    def forward(self, loc: Tensor, target: Tensor, sigma: Tensor) -> Tensor:
        check_same_shape("crps_gaussian", loc, target, "(loc, target, sigma)")
        _check_positive("crps_gaussian", "sigma", sigma)
        return reduce(crps_gaussian(loc, sigma, target), self.reduction)


_SAMPLED = {"normal": ("loc", "sigma"), "student_t": ("loc", "sigma", "df")}


@register("crps_sample", family="forecasting")
class CRPSSample(_Forecasting):
    """Sample (energy-form) CRPS of any forecast distribution, from an ensemble of S draws.

    The forecasting task draws ``num_samples`` reparameterised samples from a head of the given
    ``distribution`` (so the score is differentiable); called directly it takes any ensemble.
    ``fair=True`` uses the unbiased pair term 1/(S(S-1)) (Ferro 2014).

    Args:
        distribution: the head the task samples from: "normal" | "student_t".
        num_samples: how many draws the task takes per target step.
        fair: unbiased (fair) ensemble CRPS.
        reduction: "mean" | "sum" | "none".

    Shape:
        - samples: (N, T, ..., S).
        - target: (N, T, ...).
        - output: scalar; the shape of ``target`` with reduction="none".

    Formula:
        CRPS = 1/S sum_i |x_i - y| - 1/(2 S^2) sum_ij |x_i - x_j|   (fair: 1/(2 S (S-1)))

    Reference:
        Gneiting & Raftery, "Strictly Proper Scoring Rules, Prediction, and Estimation", JASA 102(477), 2007, eq. 20;
        Ferro, "Fair scores for ensemble forecasts", Q. J. R. Meteorol. Soc. 140(683), 2014.

    Example:
        >>> CRPSSample()(torch.tensor([[0.0, 2.0]]), torch.tensor([1.0]))  # E|X - y| = 1, pairs: 4 / (2 * 2^2)
        tensor(0.5000)
    """

    INPUTS = ("samples", "target")
    OUTPUTS = ("loc", "sigma")

    def __init__(
        self, distribution: str = "normal", num_samples: int = 100, fair: bool = False, reduction: str = "mean"
    ) -> None:
        super().__init__(reduction)
        if distribution not in _SAMPLED:
            raise ValueError(f"crps_sample: distribution must be one of {sorted(_SAMPLED)}, got {distribution!r}")
        if num_samples < 2:
            raise ValueError(f"crps_sample: num_samples must be >= 2, got {num_samples}")
        self.distribution, self.num_samples, self.fair = distribution, int(num_samples), bool(fair)
        self.OUTPUTS = _SAMPLED[distribution]

    @float32_forward
    def forward(self, samples: Tensor, target: Tensor) -> Tensor:
        if samples.dim() == 0 or samples.shape[:-1] != target.shape:
            raise LossInputError(
                f"crps_sample(samples, target): expected samples (..., S) and target (...), "
                f"got samples {tuple(samples.shape)} and target {tuple(target.shape)}"
            )
        return reduce(crps_sample(samples, target, self.fair), self.reduction)


# --------------------------------------------------------------------------- quantile losses


@register("pinball", family="forecasting")
class Pinball(Quantile):
    """Pinball loss over many quantile levels for a quantile forecast head (the regression ``quantile`` loss).

    The regression family's :class:`~losses.regression.Quantile` with the forecasting declarations:
    the levels (strictly increasing) size the task's quantile head, which keeps them from crossing
    (``model.non_crossing``, :func:`monotone_quantiles`). ``reduction="none"`` keeps the Q dim.

    Args:
        quantiles: strictly increasing levels in (0, 1); the head predicts one value per level.
        reduction: "mean" | "sum" | "none".

    Shape:
        - quantiles: (N, T, ..., Q), the predicted quantiles (slot input ``quantiles``).
        - target: (N, T, ...).
        - output: scalar; (N, T, ..., Q) with reduction="none".

    Formula:
        l = 1/Q sum_q max(q (y - p_q), (q - 1)(y - p_q))

    Reference:
        Koenker & Bassett, "Regression Quantiles", Econometrica 46(1), 1978; Wen et al., "A Multi-Horizon
        Quantile Recurrent Forecaster", NeurIPS Time Series Workshop 2017.

    Example:
        >>> Pinball(quantiles=[0.1, 0.9])(torch.zeros(1, 2), torch.ones(1))
        tensor(0.5000)
    """

    INPUTS = ("quantiles", "target")
    OUTPUTS = ("quantiles",)

    def __init__(self, quantiles: float | Sequence[float] = DEFAULT_QUANTILES, reduction: str = "mean") -> None:
        levels = [float(quantiles)] if isinstance(quantiles, (int, float)) else [float(q) for q in quantiles]
        super().__init__(levels, reduction)
        if any(b <= a for a, b in zip(levels, levels[1:])):
            raise ValueError(f"{type(self).__name__.lower()}: quantiles must be strictly increasing, got {levels}")

    @property
    def levels(self) -> tuple[float, ...]:
        """The quantile levels as Python floats."""
        return tuple(round(float(q), 6) for q in self.quantiles.tolist())  # float32 buffer: 0.1 -> 0.1


@register("huber_quantile", family="forecasting")
class HuberQuantile(Pinball):
    """Huberised pinball loss: quadratic within delta of the target, pinball-weighted Huber beyond.

    A smooth quantile loss (its gradient is continuous at 0), as neuralforecast's HuberQLoss/HuberMQLoss.

    Args:
        quantiles: strictly increasing levels in (0, 1); the head predicts one value per level.
        delta: Huber threshold (> 0).
        reduction: "mean" | "sum" | "none".

    Shape:
        - quantiles: (N, T, ..., Q), the predicted quantiles.
        - target: (N, T, ...).
        - output: scalar; (N, T, ..., Q) with reduction="none".

    Formula:
        l = |q - 1[y < p_q]| * H_delta(y - p_q),   H_delta(e) = e^2/2 if |e| <= delta else delta (|e| - delta/2)

    Reference:
        Huber, "Robust Estimation of a Location Parameter", Ann. Math. Statist. 35(1), 1964; Koenker & Bassett,
        "Regression Quantiles", Econometrica 46(1), 1978.

    Example:
        >>> HuberQuantile(quantiles=[0.5], delta=1.0)(torch.zeros(1, 1), torch.ones(1))
        tensor(0.2500)
    """

    def __init__(
        self, quantiles: float | Sequence[float] = DEFAULT_QUANTILES, delta: float = 1.0, reduction: str = "mean"
    ) -> None:
        super().__init__(quantiles, reduction)
        if not delta > 0:
            raise ValueError(f"huber_quantile: delta must be > 0, got {delta}")
        self.delta = float(delta)

    @float32_forward
    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        q = self.quantiles.to(pred.dtype)
        if pred.dim() == 0 or pred.shape[-1] != q.numel() or pred.shape[:-1] != target.shape:
            raise LossInputError(
                f"huber_quantile(quantiles, target) with {q.numel()} levels: expected quantiles (..., {q.numel()}) "
                f"and target (...); got {tuple(pred.shape)} and {tuple(target.shape)}"
            )
        err = target.unsqueeze(-1) - pred
        huber = F.huber_loss(pred, target.unsqueeze(-1).expand_as(pred), reduction="none", delta=self.delta)
        return reduce((q - (err < 0).to(err.dtype)).abs() * huber, self.reduction)


# --------------------------------------------------------------------------- auxiliary terms


@register("temporal_consistency", family="forecasting")
class TemporalConsistency(_Forecasting):
    """Penalty on the step-to-step changes of a forecast: a smoothness term to add to a point loss.

    With ``match_target=True`` (default) it compares the forecast's first differences with the
    target's (the shape of the path), otherwise it penalises the forecast's own differences (pure
    smoothness). Differences are taken along ``dim`` (the horizon, dim 1 of ``(N, T, ...)``).

    Args:
        match_target: compare with the target's differences (True) or with 0 (False).
        dim: the time dim.
        reduction: "mean" | "sum" | "none".

    Shape:
        - pred: (N, T, ...), T >= 2.
        - target: the shape of ``pred``.
        - output: scalar; the shape of ``pred`` with T-1 steps along ``dim`` with reduction="none".

    Formula:
        l = 1/n sum_t ((p_{t+1} - p_t) - (y_{t+1} - y_t))^2     (match_target=False: (p_{t+1} - p_t)^2)

    Reference:
        Whittaker, "On a new method of graduation", Proc. Edinburgh Math. Soc. 41, 1923 (difference penalties).

    Example:
        >>> TemporalConsistency()(torch.tensor([[0.0, 2.0]]), torch.tensor([[0.0, 1.0]]))
        tensor(1.)
    """

    def __init__(self, match_target: bool = True, dim: int = 1, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.match_target, self.dim = bool(match_target), int(dim)

    @float32_forward
    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        check_same_shape("temporal_consistency", pred, target)
        step = pred.diff(dim=self.dim)
        if self.match_target:
            step = step - target.diff(dim=self.dim)
        return reduce(step.square(), self.reduction)


@register("freq_mse", family="forecasting")
class FreqMSE(_Forecasting):
    """Frequency-domain error of a forecast path (FreDF): compares the rFFT of forecast and target along time.

    Combine it with a time-domain loss, as FreDF does: ``"0.2*mse + 0.8*freq_mse"``. ``norm="l2"``
    (default) averages squared complex differences (with ``fft_norm="ortho"`` that is the MSE of the
    spectra); ``"l1"`` their magnitudes, as FreDF's released code.

    Args:
        norm: "l2" (squared magnitude) or "l1" (magnitude) of the complex differences.
        fft_norm: torch.fft normalisation: "ortho" | "backward" | "forward".
        dim: the time dim.
        reduction: "mean" | "sum" | "none".

    Shape:
        - pred: (N, T, ...).
        - target: the shape of ``pred``.
        - output: scalar; the shape of ``pred`` with T//2 + 1 frequencies along ``dim`` with reduction="none".

    Formula:
        l = 1/n sum_k |F(p)_k - F(y)_k|^2   (l1: |.|),   F = rFFT along time

    Reference:
        Wang et al., "FreDF: Learning to Forecast in the Frequency Domain", ICLR 2025.

    Example:
        >>> FreqMSE()(torch.tensor([[1.0, 1.0]]), torch.tensor([[0.0, 0.0]]))  # F(p) = (sqrt 2, 0)
        tensor(1.0000)
    """

    def __init__(self, norm: str = "l2", fft_norm: str = "ortho", dim: int = 1, reduction: str = "mean") -> None:
        super().__init__(reduction)
        if norm not in ("l1", "l2"):
            raise ValueError(f"freq_mse: norm must be 'l1' or 'l2', got {norm!r}")
        if fft_norm not in ("ortho", "backward", "forward"):
            raise ValueError(f"freq_mse: fft_norm must be ortho/backward/forward, got {fft_norm!r}")
        self.norm, self.fft_norm, self.dim = norm, fft_norm, int(dim)

    @float32_forward
    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        check_same_shape("freq_mse", pred, target)
        diff = torch.fft.rfft(pred - target, dim=self.dim, norm=self.fft_norm)  # linear: F(p) - F(y)
        if self.norm == "l2":
            loss = diff.real.square() + diff.imag.square()
        else:
            loss = diff.abs()
        return reduce(loss, self.reduction)

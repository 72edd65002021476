"""Regression losses: ``(pred, target)`` of the same shape (quantile: ``pred`` has a trailing Q dim).

A private functional core (``_mae``, ``_balanced_l1`` ...) plus thin registered modules. Where
``torch.nn.functional`` has the loss (l1, mse, huber, smooth_l1) the module wraps it; the rest are
written here, vectorised. Every forward accepts an optional ``weight`` broadcastable to the
element-wise loss; with ``reduction="mean"`` the result is then ``sum(w * l) / sum(w)``.

>>> import torch, losses
>>> crit = losses.build("huber", delta=1.0)
>>> float(crit(torch.tensor([0.0, 3.0]), torch.tensor([0.5, 0.0])))
1.3125
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from losses._ghm import GHMState, ghm_weights
from losses._utils import (
    REDUCTION,
    LossInputError,
    OptionSet,
    check_reduction,
    check_same_shape,
    complete_docstring,
    float32_forward,
    reduce,
)
from losses.registry import register

__all__ = [
    "AdaptiveRobust",
    "MBE",
    "MAE",
    "MSE",
    "RMSE",
    "RMSLE",
    "Huber",
    "SmoothL1",
    "BalancedL1",
    "LogCosh",
    "Quantile",
    "balanced_l1",
    "general_robust",
    "log_cosh",
    "pinball",
]

_LOG2 = math.log(2.0)


# --------------------------------------------------------------------------- functional core


def balanced_l1(diff: Tensor, alpha: float = 0.5, gamma: float = 1.5, beta: float = 1.0) -> Tensor:
    """Element-wise balanced L1 of ``diff = pred - target`` (Libra R-CNN, eq. 8)."""
    x = diff.abs()
    b = math.expm1(gamma / alpha)  # alpha * ln(b + 1) = gamma
    bx = b * x
    # log(1 + z) as in mmdet: torch's CPU log1p is ~10x slower, and the inlier branch cancels to
    # O(alpha b x^2 / 2) either way, so log1p would buy no accuracy
    inner = (alpha / b) * (bx + 1.0) * torch.log(bx / beta + 1.0) - alpha * x
    outer = gamma * x + gamma / b - alpha * beta
    return torch.where(x < beta, inner, outer)


def log_cosh(diff: Tensor) -> Tensor:
    """Element-wise ``log(cosh(diff))`` without overflow: ``|x| + softplus(-2|x|) - log 2``.

    ``softplus(-2|x|)`` is evaluated as ``log(1 + exp(-2|x|))``: exact for a non-positive argument
    (no overflow), and ~6x faster on CPU than ``F.softplus`` / ``log1p``.
    """
    x = diff.abs()
    return x + torch.log(torch.exp(-2.0 * x) + 1.0) - _LOG2


def pinball(pred: Tensor, target: Tensor, quantiles: Tensor) -> Tensor:
    """Element-wise pinball loss ``max(q * e, (q - 1) * e)`` with ``e = target - pred``.

    ``quantiles`` broadcasts against ``pred`` (a scalar, or ``(Q,)`` for a trailing Q dim of ``pred``
    when ``target`` has been unsqueezed to ``(..., 1)``).
    """
    err = target - pred
    # = max(q e, (q - 1) e); the step 1[e < 0] is a constant for autograd, so backward is one multiply
    return err * (quantiles - (err < 0).to(err.dtype))


def _root_mean(sq: Tensor, reduction: str, weight: Tensor | None, eps: float) -> Tensor:
    """RMSE-style reduction of squared errors ``sq`` (see :class:`RMSE` for the semantics)."""
    if weight is not None:
        weight = torch.broadcast_to(weight, sq.shape)
    if reduction == "mean":
        mean = reduce(sq, "mean", weight)
        return mean.clamp_min(eps).sqrt()
    # per-sample: mean over every dim but the first
    if sq.dim() == 0:
        sq, weight = sq.reshape(1), None if weight is None else weight.reshape(1)
    dims = tuple(range(1, sq.dim()))
    if weight is None:
        per_sample = sq.mean(dim=dims) if dims else sq
    else:
        num = (sq * weight).sum(dim=dims) if dims else sq * weight
        den = weight.sum(dim=dims) if dims else weight
        per_sample = num / den.clamp_min(torch.finfo(sq.dtype).eps)
    per_sample = per_sample.clamp_min(eps).sqrt()
    return per_sample if reduction == "none" else per_sample.sum()


def _check(name: str, pred: Tensor, target: Tensor) -> None:
    check_same_shape(name, pred, target, "(pred, target)")


# --------------------------------------------------------------------------- modules


# what a regression loss is called with, unless its docstring says otherwise; added to each docstring with the
# Args: line of ``reduction``
REGRESSION_SHAPE = """    Shape:
        - pred: (*), any shape.
        - target: the shape of ``pred``.
        - weight: optional, broadcastable to ``pred``; with reduction="mean" the weighted mean sum(w l) / sum(w).
        - output: scalar; the shape of ``pred`` with reduction="none".
"""


class _Regression(nn.Module):
    """Shared constructor: validates and stores ``reduction``."""

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        complete_docstring(cls, OptionSet(REDUCTION), REGRESSION_SHAPE)

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = check_reduction(reduction)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"


@register("mbe", family="regression")
class MBE(_Regression):
    """Mean bias error: the signed mean of pred - target (a diagnostic, not a minimisation objective).

    Positive values mean the model over-predicts on average. Minimising MBE alone drives the
    predictions to minus infinity; use it as a monitored metric or as a small signed term beside
    MAE/MSE, never as the only loss. Gradient is ``1/n`` per element whatever the error.

    Shape:
        - pred: (*), any shape.
        - target: the shape of ``pred``.
        - weight: optional, broadcastable to ``pred``; with reduction="mean" the weighted mean sum(w l) / sum(w).
        - output: scalar; pred - target with reduction="none".

    Formula:
        MBE = 1/n * sum_i (pred_i - target_i)

    Reference:
        Willmott, "Some comments on the evaluation of model performance", Bull. Am. Meteorol. Soc. 63(11), 1982.

    Example:
        >>> MBE()(torch.tensor([2.0, 0.0]), torch.tensor([1.0, 0.0]))
        tensor(0.5000)
    """

    @float32_forward
    def forward(self, pred: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
        _check("mbe", pred, target)
        return reduce(pred - target, self.reduction, weight)


@register("mae", family="regression", aliases=("l1",))
class MAE(_Regression):
    """Mean absolute error (L1); wraps torch.nn.functional.l1_loss.

    Formula:
        MAE = 1/n * sum_i |pred_i - target_i|

    Reference:
        Willmott & Matsuura, "Advantages of the mean absolute error (MAE) over the root mean square
        error (RMSE) in assessing average model performance", Climate Research 30, 2005.

    Example:
        >>> MAE()(torch.tensor([2.0, 0.0]), torch.tensor([1.0, 3.0]))
        tensor(2.)
    """

    @float32_forward
    def forward(self, pred: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
        _check("mae", pred, target)
        if weight is None and pred.numel():
            return F.l1_loss(pred, target, reduction=self.reduction)
        return reduce(F.l1_loss(pred, target, reduction="none"), self.reduction, weight)


@register("mse", family="regression", aliases=("l2",))
class MSE(_Regression):
    """Mean squared error (L2); wraps torch.nn.functional.mse_loss.

    Formula:
        MSE = 1/n * sum_i (pred_i - target_i)^2

    Reference:
        Gauss, "Theoria combinationis observationum erroribus minimis obnoxiae", 1821 (least squares).

    Example:
        >>> MSE()(torch.tensor([2.0, 0.0]), torch.tensor([1.0, 3.0]))
        tensor(5.)
    """

    @float32_forward
    def forward(self, pred: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
        _check("mse", pred, target)
        if weight is None and pred.numel():
            return F.mse_loss(pred, target, reduction=self.reduction)
        return reduce(F.mse_loss(pred, target, reduction="none"), self.reduction, weight)


@register("rmse", family="regression")
class RMSE(_Regression):
    """Root mean squared error, with a guarded square root so the gradient is finite at zero error.

    ``reduction="mean"`` is the usual RMSE over all elements; ``"none"`` returns one RMSE per
    sample (over all dims but the first, shape ``(N,)``; for 1-D input that is ``|pred - target|``),
    and ``"sum"`` their sum. ``eps`` clamps the mean squared error from below before the root: the
    value is exact whenever MSE >= eps, and at zero error the gradient is 0 instead of NaN.

    Args:
        eps: floor of the mean squared error before the square root (the gradient at zero error is 0,
            not NaN).

    Shape:
        - pred: (*), any shape.
        - target: the shape of ``pred``.
        - weight: optional, broadcastable to ``pred``; with reduction="mean" the weighted mean sum(w l) / sum(w).
        - output: scalar; with reduction="none" one RMSE per sample, (N,) (for 1-D input: the absolute error).

    Formula:
        RMSE = sqrt(max(1/n * sum_i (pred_i - target_i)^2, eps))

    Reference:
        Hyndman & Koehler, "Another look at measures of forecast accuracy", Int. J. Forecasting 22(4), 2006.

    Example:
        >>> RMSE()(torch.tensor([3.0, 0.0]), torch.tensor([0.0, 4.0]))
        tensor(3.5355)
    """

    def __init__(self, reduction: str = "mean", eps: float = 1e-12) -> None:
        super().__init__(reduction)
        self.eps = eps

    @float32_forward
    def forward(self, pred: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
        _check("rmse", pred, target)
        if weight is None and self.reduction == "mean" and pred.numel():  # fused fast path
            return F.mse_loss(pred, target).clamp_min(self.eps).sqrt()
        return _root_mean((pred - target).square(), self.reduction, weight, self.eps)


@register("rmsle", family="regression")
class RMSLE(_Regression):
    """Root mean squared logarithmic error: RMSE of log1p(pred) vs log1p(target); inputs must be > -1.

    Penalises relative rather than absolute error (under-prediction more than over-prediction of
    the same size). Values <= -1 in ``pred`` or ``target`` raise :class:`LossInputError` (log1p is
    undefined there); clamp or softplus the model output if it can go that low. That check reads the
    values, so ``torch.compile`` skips it (a graph break otherwise): compiled, such values give NaN.
    Reduction and ``eps`` as in :class:`RMSE`.

    Args:
        eps: floor of the mean squared error before the square root (the gradient at zero error is 0,
            not NaN).

    Shape:
        - pred: (*), any shape, all values > -1.
        - target: the shape of ``pred``, all values > -1.
        - weight: optional, broadcastable to ``pred``; with reduction="mean" the weighted mean sum(w l) / sum(w).
        - output: scalar; with reduction="none" one RMSLE per sample, (N,) (for 1-D input: the absolute log1p error).

    Formula:
        RMSLE = sqrt(max(1/n * sum_i (log(1 + pred_i) - log(1 + target_i))^2, eps))

    Reference:
        Hyndman & Koehler, "Another look at measures of forecast accuracy", Int. J. Forecasting 22(4), 2006.

    Example:
        >>> RMSLE()(torch.tensor([math.e - 1.0]), torch.tensor([0.0]))
        tensor(1.)
    """

    def __init__(self, reduction: str = "mean", eps: float = 1e-12) -> None:
        super().__init__(reduction)
        self.eps = eps

    @float32_forward
    def forward(self, pred: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
        _check("rmsle", pred, target)
        if not torch.compiler.is_compiling():  # the domain check reads the values: eager only
            for what, t in (("pred", pred), ("target", target)):
                if t.numel() and bool((t <= -1).any()):
                    raise LossInputError(
                        f"rmsle(pred, target): log1p needs values > -1, but {what} has min {float(t.min()):.4g}; "
                        "clamp or softplus the predictions, or use mse/mae"
                    )
        sq = (torch.log1p(pred) - torch.log1p(target)).square()
        return _root_mean(sq, self.reduction, weight, self.eps)


@register("huber", family="regression")
class Huber(_Regression):
    """Huber loss: quadratic below delta, linear above; wraps torch.nn.functional.huber_loss.

    ``huber(delta) == delta * smooth_l1(beta=delta)``.

    Args:
        delta: threshold between the quadratic and the linear part (> 0).

    Formula:
        l(x) = 0.5 x^2 if |x| <= delta else delta * (|x| - 0.5 delta),   x = pred - target

    Reference:
        Huber, "Robust Estimation of a Location Parameter", Annals of Mathematical Statistics 35(1), 1964.

    Example:
        >>> Huber(delta=1.0)(torch.tensor([0.0, 3.0]), torch.tensor([0.5, 0.0]))
        tensor(1.3125)
    """

    def __init__(self, delta: float = 1.0, reduction: str = "mean") -> None:
        super().__init__(reduction)
        if delta <= 0:
            raise ValueError(f"huber: delta must be > 0, got {delta}")
        self.delta = float(delta)

    @float32_forward
    def forward(self, pred: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
        _check("huber", pred, target)
        if weight is None and pred.numel():
            return F.huber_loss(pred, target, reduction=self.reduction, delta=self.delta)
        return reduce(F.huber_loss(pred, target, reduction="none", delta=self.delta), self.reduction, weight)


@register("smooth_l1", family="regression")
class SmoothL1(_Regression):
    """Smooth L1: quadratic below beta (scaled by 1/beta), linear above; wraps F.smooth_l1_loss.

    The Fast R-CNN box-delta loss; reused by the detection box slot. ``beta=0`` is plain L1.

    Args:
        beta: threshold between the quadratic and the linear part (>= 0; 0 is plain L1).

    Shape:
        - pred: (*), any shape, e.g. box deltas (N, 4).
        - target: the shape of ``pred``.
        - weight: optional, broadcastable to ``pred``; with reduction="mean" the weighted mean sum(w l) / sum(w).
        - output: scalar; the shape of ``pred`` with reduction="none".

    Formula:
        l(x) = 0.5 x^2 / beta if |x| < beta else |x| - 0.5 beta,   x = pred - target

    Reference:
        Girshick, "Fast R-CNN", ICCV 2015.

    Example:
        >>> SmoothL1(beta=1.0)(torch.tensor([0.0, 3.0]), torch.tensor([0.5, 0.0]))
        tensor(1.3125)
    """

    def __init__(self, beta: float = 1.0, reduction: str = "mean") -> None:
        super().__init__(reduction)
        if beta < 0:
            raise ValueError(f"smooth_l1: beta must be >= 0, got {beta}")
        self.beta = float(beta)

    @float32_forward
    def forward(self, pred: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
        _check("smooth_l1", pred, target)
        if weight is None and pred.numel():
            return F.smooth_l1_loss(pred, target, reduction=self.reduction, beta=self.beta)
        return reduce(F.smooth_l1_loss(pred, target, reduction="none", beta=self.beta), self.reduction, weight)


@register("balanced_l1", family="regression")
class BalancedL1(_Regression):
    """Balanced L1 (Libra R-CNN): promotes the gradients of inliers (|x| < beta) for box regression.

    Hand-written (no torch built-in); same formula as mmdetection's ``balanced_l1_loss``. The
    parameter ``b`` is fixed by continuity of the gradient at ``|x| = beta``: ``alpha ln(b + 1) = gamma``.

    Args:
        alpha: inlier gradient promotion (> 0); b = exp(gamma / alpha) - 1.
        gamma: bound of the outlier gradient (> 0).
        beta: threshold between inliers and outliers (> 0).

    Shape:
        - pred: (*), any shape, e.g. box deltas (N, 4).
        - target: the shape of ``pred``.
        - weight: optional, broadcastable to ``pred``; with reduction="mean" the weighted mean sum(w l) / sum(w).
        - output: scalar; the shape of ``pred`` with reduction="none".

    Formula:
        b = exp(gamma / alpha) - 1,  x = |pred - target|
        l(x) = alpha / b * (b x + 1) * ln(b x / beta + 1) - alpha x     if x < beta
        l(x) = gamma x + gamma / b - alpha beta                           otherwise

    Reference:
        Pang et al., "Libra R-CNN: Towards Balanced Learning for Object Detection", CVPR 2019, eq. 8-10.

    Example:
        >>> BalancedL1()(torch.tensor([0.0]), torch.tensor([0.0]))
        tensor(0.)
    """

    def __init__(self, alpha: float = 0.5, gamma: float = 1.5, beta: float = 1.0, reduction: str = "mean") -> None:
        super().__init__(reduction)
        if alpha <= 0 or gamma <= 0 or beta <= 0:
            raise ValueError(f"balanced_l1: alpha, gamma, beta must be > 0, got {alpha}, {gamma}, {beta}")
        self.alpha, self.gamma, self.beta = float(alpha), float(gamma), float(beta)

    @float32_forward
    def forward(self, pred: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
        _check("balanced_l1", pred, target)
        return reduce(balanced_l1(pred - target, self.alpha, self.gamma, self.beta), self.reduction, weight)


@register("log_cosh", family="regression")
class LogCosh(_Regression):
    """Log-cosh loss: ~x^2/2 for small errors, ~|x| - log 2 for large ones; smooth everywhere.

    Hand-written in the overflow-free form (cosh overflows float32 for |x| > 89); its gradient
    is tanh(x).

    Formula:
        l(x) = log(cosh(x)) = |x| + softplus(-2|x|) - log 2,   x = pred - target

    Reference:
        Saleh & Saleh, "Statistical Properties of the log-cosh Loss Function Used in Machine Learning",
        arXiv:2208.04564, 2022.

    Example:
        >>> LogCosh()(torch.tensor([0.0]), torch.tensor([0.0]))
        tensor(0.)
    """

    @float32_forward
    def forward(self, pred: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
        _check("log_cosh", pred, target)
        return reduce(log_cosh(pred - target), self.reduction, weight)


@register("quantile", family="regression")
class Quantile(_Regression):
    """Quantile (pinball) loss for one quantile or several at once (probabilistic forecasting).

    With one float ``quantiles`` the call is ``(pred, target)`` of the same shape. With a list of
    Q quantiles, ``pred`` carries a trailing dim of size Q and ``target`` lacks it, e.g.
    ``pred (N,T,Q)`` vs ``target (N,T)``; ``reduction="none"`` returns ``(N,T,Q)`` and ``"mean"``
    averages over all N*T*Q terms. ``quantiles=0.5`` is half the MAE. Quantiles are a buffer
    (they follow ``.to(device)`` and are saved in checkpoints).

    Args:
        quantiles: one quantile q in (0, 1), or a list of Q quantiles (``pred`` then has a trailing Q dim).

    Shape:
        - pred: (*) for one quantile; (*, Q) for a list of Q, e.g. (N, T, Q).
        - target: (*), e.g. (N, T).
        - weight: optional, broadcastable to the element-wise loss; with reduction="mean" the weighted mean.
        - output: scalar; the shape of ``pred`` with reduction="none".

    Formula:
        l_q(y, p) = max(q * (y - p), (q - 1) * (y - p))

    Reference:
        Koenker & Bassett, "Regression Quantiles", Econometrica 46(1), 1978.

    Example:
        >>> Quantile(quantiles=[0.1, 0.9])(torch.zeros(2, 2), torch.ones(2))
        tensor(0.5000)
    """

    quantiles: Tensor

    def __init__(self, quantiles: float | Sequence[float] = 0.5, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.multi = not isinstance(quantiles, (int, float))
        values = [float(q) for q in quantiles] if self.multi else [float(quantiles)]  # type: ignore[union-attr]
        if not values or any(not 0.0 < q < 1.0 for q in values):
            raise ValueError(f"quantile: quantiles must lie in (0, 1), got {quantiles!r}")
        self.register_buffer("quantiles", torch.tensor(values if self.multi else values[0], dtype=torch.float32))

    @float32_forward
    def forward(self, pred: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
        q = self.quantiles.to(pred.dtype)
        if self.multi:
            if pred.dim() == 0 or pred.shape[-1] != q.numel() or pred.shape[:-1] != target.shape:
                raise LossInputError(
                    f"quantile(pred, target) with {q.numel()} quantiles: expected pred (..., {q.numel()}) "
                    f"and target (...), e.g. (N,T,Q) vs (N,T); got pred {tuple(pred.shape)} "
                    f"and target {tuple(target.shape)}"
                )
            target = target.unsqueeze(-1)
        else:
            _check("quantile", pred, target)
        return reduce(pinball(pred, target, q), self.reduction, weight)

    def extra_repr(self) -> str:
        return f"quantiles={self.quantiles.tolist()}, reduction={self.reduction!r}"


# --------------------------------------------------------------------------- GHM-R


@float32_forward(state=("acc_sum",))
def ghm_r_loss(
    pred: Tensor, target: Tensor, *, mu: float = 0.02, bins: int = 10, momentum: float = 0.0,
    acc_sum: Tensor | None = None, reduction: str = "mean",
) -> Tensor:
    """GHM-R: ASL1 re-weighted by inverse gradient density; see :class:`GHMRLoss`.

    ``acc_sum`` (``(bins,)``) is the running histogram, updated in place when ``momentum > 0``.
    """
    _check("ghm_r", pred, target)
    if mu <= 0:
        raise ValueError(f"ghm_r: mu must be > 0, got {mu}")
    d = pred - target
    root = torch.sqrt(d * d + mu * mu)
    with torch.no_grad():
        w, tot = ghm_weights((d / root).abs(), None, bins, acc_sum, momentum)
    loss = (root - mu) * w
    if reduction == "mean":
        return loss.sum() / tot
    return reduce(loss, reduction)


@register("ghm_r", family="regression", aliases=("ghmr",))
class GHMRLoss(GHMState):
    """Gradient Harmonizing Mechanism for regression (GHM-R): ASL1 re-weighted by inverse gradient density.

    As mmdetection's GHMR. ``acc_sum`` is a checkpointed buffer, updated (with momentum) in training mode only.

    Args:
        mu: ASL1 smoothing mu > 0 (0.02 as the paper).
        bins: number of gradient-norm bins over [0, 1] (>= 1).
        momentum: running-histogram momentum in [0, 1); 0: this batch's histogram only.
        reduction: "mean" | "sum" | "none".

    Shape:
        - pred: (*), any shape, e.g. box deltas (N, 4).
        - target: the shape of ``pred``.
        - output: scalar; the shape of ``pred`` with reduction="none".

    Formula:
        d = pred - target,  ASL1(d) = sqrt(d^2 + mu^2) - mu
        g = |d| / sqrt(d^2 + mu^2)  (detached),  bins over [0, 1]
        beta = tot / (GD(g) * n_nonempty_bins),  l = beta * ASL1(d),  mean = sum l / tot

    Reference:
        Li, Liu & Wang, "Gradient Harmonized Single-stage Detector", AAAI 2019. arXiv:1811.05181

    Example:
        >>> crit = GHMRLoss(mu=0.02)
        >>> round(float(crit(torch.tensor([0.0]), torch.tensor([0.0]))), 4)
        0.0
    """

    name = "ghm_r"

    def __init__(self, mu: float = 0.02, bins: int = 10, momentum: float = 0.0, reduction: str = "mean") -> None:
        super().__init__()
        if mu <= 0:
            raise ValueError(f"{self.name}: mu must be > 0, got {mu}")
        self.mu = float(mu)
        self.reduction = check_reduction(reduction)
        self._init_bins(bins, momentum)

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        return ghm_r_loss(pred, target, mu=self.mu, reduction=self.reduction, **self.running())


# --------------------------------------------------------------------------- Barron's adaptive robust loss

_ALPHA_MAX = 4.0  # the log-partition table covers alpha in [0, 4]
_KNOTS_PER_UNIT = 128


def general_robust(diff: Tensor, alpha: Tensor | float, scale: Tensor | float) -> Tensor:
    """Barron's general robust loss rho(x, alpha, c), element-wise, with its limits at alpha = 0, 2 and -inf.

    ``rho = |alpha - 2| / alpha * (((x / c)^2 / |alpha - 2| + 1)^(alpha / 2) - 1)``, evaluated as
    ``expm1(alpha / 2 * log1p(...))`` with alpha and |alpha - 2| kept away from 0 (Barron's reference
    code), so values and gradients stay finite near the removable singularities.
    """
    alpha = torch.as_tensor(alpha, dtype=diff.dtype, device=diff.device)
    sq = (diff / scale).square()
    eps = torch.finfo(diff.dtype).eps
    beta = (alpha - 2).abs().clamp_min(eps)
    safe_alpha = torch.where(alpha >= 0, 1.0, -1.0) * alpha.abs().clamp_min(eps)
    general = beta / safe_alpha * torch.expm1(0.5 * alpha * torch.log1p(sq / beta))
    loss = torch.where(alpha == 2, 0.5 * sq, general)
    loss = torch.where(alpha == 0, torch.log1p(0.5 * sq), loss)
    return torch.where(alpha == -math.inf, -torch.expm1(-0.5 * sq), loss)


def _log_partition_singular(alpha: Tensor) -> Tensor:
    """``(alpha - 2) log|alpha - 2| / 4``: the part of log Z(alpha) whose slope is infinite at alpha = 2.

    Near 2, ``rho(x, alpha, 1) = x^2 / 2 - (x^2 / 4) (alpha - 2) log|alpha - 2| + O(alpha - 2)``, so
    ``log Z = -E_gauss[rho - x^2 / 2] + ...`` carries ``(alpha - 2) log|alpha - 2| / 4`` (E x^2 = 1): no
    polynomial spline follows it (Barron stretches his spline's axis around 2 for this reason); it is
    subtracted from the table and added back in closed form.
    """
    offset = alpha - 2.0
    return 0.25 * offset * torch.log(offset.abs().clamp_min(torch.finfo(alpha.dtype).tiny))


@functools.cache
def _log_partition_table() -> tuple[Tensor, Tensor]:
    """The smooth part of log Z(alpha) and its slope at alpha = 0, 1/128, ..., 4 (float64), computed once.

    ``Z(alpha) = int exp(-rho(x, alpha, 1)) dx = 2 int exp(u - rho(e^u, alpha, 1)) du`` (x = e^u). In u the
    integrand decays exponentially at both ends for every alpha >= 0 (as e^u for u -> -inf; at least as
    2 e^-u for u -> inf, the Cauchy tail of alpha = 0), so the trapezoid rule on [-40, 80] with step 1/20
    converges geometrically: the values agree with ``scipy.integrate.quad`` to ~1e-12 and with the closed
    forms Z(0) = pi sqrt 2, Z(1) = 2 e K_1(1), Z(2) = sqrt(2 pi) (tests). The table holds
    ``log Z - _log_partition_singular``; its slopes are differences of the same quadrature at alpha +- 1e-4
    (one-sided, second order, at alpha = 0: Z is infinite below 0). About 0.2 s on a CPU.
    """
    step, delta = 0.05, 1e-4
    u = torch.arange(-40.0, 80.0 + step / 2, step, dtype=torch.float64)

    def smooth(alpha: Tensor) -> Tensor:
        integrand = torch.exp(u - general_robust(torch.exp(u)[None, :], alpha[:, None], 1.0))
        return torch.log(2 * step * integrand.sum(1)) - _log_partition_singular(alpha)

    alpha = torch.linspace(0.0, _ALPHA_MAX, int(_ALPHA_MAX * _KNOTS_PER_UNIT) + 1, dtype=torch.float64)
    values, above = smooth(alpha), smooth(alpha + delta)
    below = smooth((alpha - delta).clamp_min(0.0))
    slopes = (above - below) / (2 * delta)
    slopes[0] = (-3 * values[0] + 4 * above[0] - smooth(alpha[:1] + 2 * delta)[0]) / (2 * delta)
    return values, slopes


def log_partition(alpha: Tensor, table: Tensor, slopes: Tensor) -> Tensor:
    """log Z(alpha), alpha in [0, 4]: cubic Hermite interpolation of the table plus the singular part.

    Error (against the quadrature): < 1e-8 for alpha in [0.2, 1.9] and [2.1, 4], < 1e-6 next to 0 and 2.
    """
    position = (alpha * _KNOTS_PER_UNIT).clamp(0.0, table.numel() - 1.0)
    index = position.detach().floor().clamp(max=table.numel() - 2).long()
    t = position - index
    step = 1.0 / _KNOTS_PER_UNIT
    y0, y1 = table.take(index), table.take(index + 1)  # take: a tensor index without a host read
    m0, m1 = slopes.take(index) * step, slopes.take(index + 1) * step
    t2, t3 = t * t, t * t * t
    smooth = (2 * t3 - 3 * t2 + 1) * y0 + (t3 - 2 * t2 + t) * m0 + (3 * t2 - 2 * t3) * y1 + (t3 - t2) * m1
    return smooth + _log_partition_singular(alpha)


@register("adaptive_robust", family="regression")
class AdaptiveRobust(_Regression):
    """Barron's general and adaptive robust loss: the shape alpha and scale c are learned by likelihood.

    One loss spans L2 (alpha = 2), pseudo-Huber / Charbonnier (1), Cauchy (0), Geman-McClure (-2) and
    Welsch (-inf). As a learned loss it is the negative log-likelihood of the distribution
    ``p(x) = exp(-rho(x, alpha, c)) / (c Z(alpha))``: the ``log c + log Z(alpha)`` term stops alpha and c
    from drifting to whatever makes rho smallest, so heavy-tailed residuals pull alpha down (more
    robust) and Gaussian ones up. ``Z`` has no closed form; as in the paper, log Z is interpolated
    from a table, here computed once by numerical integration (``_log_partition_table``) at
    alpha = 0, 1/128, ..., 4 and read with a cubic Hermite spline (values and slopes; log Z's
    ``(alpha - 2) log|alpha - 2| / 4`` term, whose slope is infinite at 2, is added in closed form),
    accurate to 1e-6 (1e-8 away from alpha = 0 and 2), with continuous gradients in alpha. alpha and
    c are the loss's parameters (optimiser group ``loss``; a term's ``optim: {lr_mult, weight_decay}``
    sets their own), parametrised as in the reference code: ``alpha = lo + (hi - lo) sigmoid(a)``,
    ``c = scale_lo + softplus(s)``.

    Args:
        alpha: a fixed shape instead of a learned one (``null``: learned). A fixed alpha < 0
            (Geman-McClure -2, Welsch ``-.inf``) has no normalisable density: the loss is then rho
            alone and the scale must be fixed too.
        alpha_lo: lower bound of the learned alpha (>= 0: the density needs it).
        alpha_hi: upper bound of the learned alpha (<= 4, the table's range; the paper uses 1.999).
        alpha_init: initial learned alpha in [alpha_lo, alpha_hi] (``null``: the midpoint).
        scale: a fixed scale c > 0 instead of a learned one (``null``: learned).
        scale_lo: lower bound of the learned scale (> 0).
        scale_init: initial learned scale (> scale_lo).

    Formula:
        x = pred - target
        rho(x, alpha, c) = |alpha - 2| / alpha * (((x / c)^2 / |alpha - 2| + 1)^(alpha / 2) - 1)
            alpha = 2:  (x / c)^2 / 2              alpha = 1:  sqrt((x / c)^2 + 1) - 1
            alpha = 0:  log((x / c)^2 / 2 + 1)     alpha = -2: 2 (x / c)^2 / ((x / c)^2 + 4)
        l(x) = rho(x, alpha, c) + log c + log Z(alpha),  Z(alpha) = int exp(-rho(t, alpha, 1)) dt   (alpha >= 0)
        l(x) = rho(x, alpha, c)                                                        (fixed alpha < 0)

    Reference:
        Barron, "A General and Adaptive Robust Loss Function", CVPR 2019. arXiv:1701.03077

    Example:
        >>> crit = AdaptiveRobust(alpha=2.0, scale=1.0)  # the Gaussian NLL: x^2 / 2 + log sqrt(2 pi)
        >>> round(float(crit(torch.tensor([2.0]), torch.tensor([0.0]))), 4)
        2.9189
        >>> crit = AdaptiveRobust()  # alpha and c learned, from alpha = 1 and c = 1
        >>> round(float(crit.alpha()), 3), round(float(crit.scale()), 3)
        (1.0, 1.0)
    """

    log_z: Tensor
    log_z_slope: Tensor

    def __init__(
        self,
        alpha: float | None = None,
        alpha_lo: float = 0.001,
        alpha_hi: float = 1.999,
        alpha_init: float | None = None,
        scale: float | None = None,
        scale_lo: float = 1e-5,
        scale_init: float = 1.0,
        reduction: str = "mean",
    ) -> None:
        super().__init__(reduction)
        if alpha is None:
            if not 0.0 <= alpha_lo < alpha_hi <= _ALPHA_MAX:
                raise ValueError(f"adaptive_robust: need 0 <= alpha_lo < alpha_hi <= 4, got {alpha_lo}, {alpha_hi}")
            alpha_init = (alpha_lo + alpha_hi) / 2 if alpha_init is None else float(alpha_init)
            if not alpha_lo < alpha_init < alpha_hi:
                raise ValueError(f"adaptive_robust: alpha_init must lie in ({alpha_lo}, {alpha_hi}), got {alpha_init}")
            fraction = (alpha_init - alpha_lo) / (alpha_hi - alpha_lo)
            self.latent_alpha = nn.Parameter(torch.tensor(math.log(fraction / (1 - fraction))))
        elif math.isnan(alpha) or alpha > _ALPHA_MAX:
            raise ValueError(f"adaptive_robust: alpha must be <= 4 (or null: learned), got {alpha}")
        else:
            self.register_parameter("latent_alpha", None)
        self.fixed_alpha = None if alpha is None else float(alpha)
        self.alpha_lo, self.alpha_hi = float(alpha_lo), float(alpha_hi)
        if scale is None:
            if not 0 < scale_lo < scale_init:
                raise ValueError(f"adaptive_robust: need 0 < scale_lo < scale_init, got {scale_lo}, {scale_init}")
            shifted = scale_init - scale_lo
            self.latent_scale = nn.Parameter(torch.tensor(shifted + math.log(-math.expm1(-shifted))))  # softplus^-1
        elif scale > 0:
            self.register_parameter("latent_scale", None)
        else:
            raise ValueError(f"adaptive_robust: scale must be > 0 (or null: learned), got {scale}")
        self.fixed_scale = None if scale is None else float(scale)
        self.scale_lo = float(scale_lo)
        self.likelihood = alpha is None or alpha >= 0
        if not self.likelihood and scale is None:
            raise ValueError("adaptive_robust: a fixed alpha < 0 has no likelihood to learn the scale by; set scale")
        table, slopes = _log_partition_table()
        dtype = torch.get_default_dtype()
        self.register_buffer("log_z", table.to(dtype), persistent=False)
        self.register_buffer("log_z_slope", slopes.to(dtype), persistent=False)

    def alpha(self) -> Tensor:
        """The current shape alpha (a 0-dim tensor)."""
        if self.latent_alpha is None:
            return self.log_z.new_tensor(self.fixed_alpha)
        return self.alpha_lo + (self.alpha_hi - self.alpha_lo) * torch.sigmoid(self.latent_alpha)

    def scale(self) -> Tensor:
        """The current scale c (a 0-dim tensor)."""
        if self.latent_scale is None:
            return self.log_z.new_tensor(self.fixed_scale)
        return self.scale_lo + F.softplus(self.latent_scale)

    @float32_forward
    def forward(self, pred: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
        _check("adaptive_robust", pred, target)
        alpha, scale = self.alpha().to(pred.dtype), self.scale().to(pred.dtype)
        loss = general_robust(pred - target, alpha, scale)
        if self.likelihood:
            table, slopes = self.log_z.to(pred.dtype), self.log_z_slope.to(pred.dtype)
            loss = loss + (torch.log(scale) + log_partition(alpha, table, slopes))
        return reduce(loss, self.reduction, weight)

    def extra_repr(self) -> str:
        learned = self.latent_alpha is not None
        alpha = f"alpha in [{self.alpha_lo}, {self.alpha_hi}]" if learned else f"alpha={self.fixed_alpha}"
        scale = f"scale={self.fixed_scale}" if self.latent_scale is None else f"scale >= {self.scale_lo}"
        return f"{alpha}, {scale}, reduction={self.reduction!r}"

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

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from losses._ghm import GHMState, ghm_weights
from losses._utils import LossInputError, check_reduction, check_same_shape, float32_forward, reduce
from losses.registry import register

__all__ = [
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


class _Regression(nn.Module):
    """Shared constructor: validates and stores ``reduction``."""

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

    Args:
        reduction: "mean" | "sum" | "none".

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

    Args:
        reduction: "mean" | "sum" | "none".

    Shape:
        - pred: (*), any shape.
        - target: the shape of ``pred``.
        - weight: optional, broadcastable to ``pred``; with reduction="mean" the weighted mean sum(w l) / sum(w).
        - output: scalar; the shape of ``pred`` with reduction="none".

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

    Args:
        reduction: "mean" | "sum" | "none".

    Shape:
        - pred: (*), any shape.
        - target: the shape of ``pred``.
        - weight: optional, broadcastable to ``pred``; with reduction="mean" the weighted mean sum(w l) / sum(w).
        - output: scalar; the shape of ``pred`` with reduction="none".

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
        reduction: "mean" | "sum" | "none".
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
        reduction: "mean" | "sum" | "none".
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
        reduction: "mean" | "sum" | "none".

    Shape:
        - pred: (*), any shape.
        - target: the shape of ``pred``.
        - weight: optional, broadcastable to ``pred``; with reduction="mean" the weighted mean sum(w l) / sum(w).
        - output: scalar; the shape of ``pred`` with reduction="none".

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
        reduction: "mean" | "sum" | "none".

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
        reduction: "mean" | "sum" | "none".

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

    Args:
        reduction: "mean" | "sum" | "none".

    Shape:
        - pred: (*), any shape.
        - target: the shape of ``pred``.
        - weight: optional, broadcastable to ``pred``; with reduction="mean" the weighted mean sum(w l) / sum(w).
        - output: scalar; the shape of ``pred`` with reduction="none".

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
        reduction: "mean" | "sum" | "none".

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

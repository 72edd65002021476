"""Probabilistic classification losses: cross-entropy family, focal, GHM, class-balanced, poly-1, KL.

Call convention shared by every loss here (like ``F.cross_entropy``, any extra dims)::

    loss(logits, target)

``mode``:

* ``"multiclass"`` softmax over dim 1; logits ``(N, C, *)``, target class indices ``(N, *)``
  (integer dtype; ``(N, 1, *)`` is squeezed) or probabilities / one-hot ``(N, C, *)`` (float);
* ``"binary"``     sigmoid; logits ``(N, *)`` or ``(N, 1, *)``, target of the same shape with
  values in [0, 1] (a ``(N, *)`` target is accepted for ``(N, 1, *)`` logits; integer 0/1 too);
* ``"multilabel"`` sigmoid per channel; logits and target ``(N, C, *)``, target in [0, 1].

``ignore_index``: positions whose target equals it contribute nothing; ``mean`` is over the
valid positions (weighted by ``class_weights`` where torch does so), and an all-ignored
batch gives 0 with a zero gradient. In the sigmoid modes the test is element-wise
(``target == ignore_index``), in multiclass with probability targets a position is ignored
when any channel equals it.

``reduction="none"`` returns one value per position: ``(N, *)`` for multiclass, the
element-wise ``(N, [C,] *)`` loss for the sigmoid modes (as torch and torchvision do).

Fast paths: cross-entropy is ``F.cross_entropy`` (indices or probabilities, with its
``weight``, ``ignore_index`` and ``label_smoothing``), the sigmoid losses are
``F.binary_cross_entropy_with_logits``; index targets are never one-hot encoded except
where a loss needs every class's sigmoid (``bce`` in multiclass mode).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from losses._utils import LossInputError, check_reduction, float32_forward, one_hot, reduce
from losses.registry import register

BINARY_MODE = "binary"
MULTICLASS_MODE = "multiclass"
MULTILABEL_MODE = "multilabel"
MODES = (BINARY_MODE, MULTICLASS_MODE, MULTILABEL_MODE)

__all__ = [
    "MODES",
    "Prepared",
    "prepare",
    "cross_entropy",
    "binary_cross_entropy",
    "focal_loss",
    "softmax_focal_loss",
    "sigmoid_focal_loss",
]


# --------------------------------------------------------------------------- shared core


class Prepared(NamedTuple):
    """Canonical inputs: ``kind`` is ``"index"`` (multiclass indices), ``"prob"`` (multiclass
    probabilities) or ``"dense"`` (sigmoid, target same shape as logits); ``mask`` is the
    validity mask (``None`` without ``ignore_index``; for ``"index"`` the targets still hold
    ``ignore_index`` and torch's own ``ignore_index`` is used)."""

    logits: Tensor
    target: Tensor
    kind: str
    mask: Tensor | None


def _shape_error(name: str, mode: str, logits: Tensor, target: Tensor) -> LossInputError:
    expected = {
        BINARY_MODE: "logits (N, *) or (N, 1, *) and target of the same shape (or (N, *)) in [0, 1]",
        MULTICLASS_MODE: "logits (N, C, *) and class-index target (N, *) (integer) or probabilities (N, C, *)",
        MULTILABEL_MODE: "logits (N, C, *) and target (N, C, *) in [0, 1]",
    }[mode]
    return LossInputError(
        f"{name}(logits, target) mode={mode!r}: expected {expected}; "
        f"got logits {tuple(logits.shape)} {logits.dtype} and target {tuple(target.shape)} {target.dtype}"
    )


def check_mode(name: str, mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"{name}: mode must be one of {MODES}, got {mode!r}")
    return mode


def prepare(name: str, logits: Tensor, target: Tensor, mode: str, ignore_index: int | None) -> Prepared:
    """Validate shapes for ``mode`` and return the canonical :class:`Prepared` inputs."""
    check_mode(name, mode)
    if target.dim() < 1 or logits.dim() < 1 or target.shape[0] != logits.shape[0]:
        raise _shape_error(name, mode, logits, target)
    if mode == MULTICLASS_MODE:
        if logits.dim() < 2:
            raise _shape_error(name, mode, logits, target)
        if not target.is_floating_point():
            if target.dim() == logits.dim() and target.shape[1] == 1 and logits.shape[1] != 1:
                target = target.squeeze(1)
            if target.shape != logits.shape[:1] + logits.shape[2:]:
                raise _shape_error(name, mode, logits, target)
            return Prepared(logits, target.long(), "index", None)
        if target.shape != logits.shape:
            raise _shape_error(name, mode, logits, target)
        mask = None
        if ignore_index is not None:
            bad = (target == ignore_index).any(1, keepdim=True)
            target = target.masked_fill(bad, 0.0)
            mask = (~bad).to(logits.dtype)
        return Prepared(logits, target.to(logits.dtype), "prob", mask)
    if mode == BINARY_MODE:
        if target.shape != logits.shape:
            if logits.dim() >= 2 and logits.shape[1] == 1 and target.shape == logits.shape[:1] + logits.shape[2:]:
                target = target.unsqueeze(1)
            else:
                raise _shape_error(name, mode, logits, target)
    elif logits.dim() < 2 or target.shape != logits.shape:
        raise _shape_error(name, mode, logits, target)
    mask = None
    if ignore_index is not None:
        valid = target != ignore_index
        target = torch.where(valid, target, torch.zeros_like(target))
        mask = valid.to(logits.dtype)
    return Prepared(logits, target.to(logits.dtype), "dense", mask)


def _channel_view(values: Tensor, ref: Tensor) -> Tensor:
    """Per-class ``(C,)`` values viewed to broadcast along dim 1 of ``ref`` ((N,) refs: a scalar view)."""
    if ref.dim() < 2:
        return values.reshape(()) if values.numel() == 1 else values
    return values.view(1, -1, *([1] * (ref.dim() - 2)))


def _as_tensor(values: float | Sequence[float] | Tensor | None, ref: Tensor) -> Tensor | None:
    if values is None:
        return None
    return torch.as_tensor(values, dtype=ref.dtype, device=ref.device)


def _valid_index(target: Tensor, ignore_index: int | None) -> tuple[Tensor, Tensor | None]:
    """Safe class indices (ignored -> 0) and the validity mask (``None`` without ignore_index)."""
    if ignore_index is None:
        return target, None
    valid = target != ignore_index
    return target.masked_fill(~valid, 0), valid


def _index_mean(total: Tensor, target: Tensor, ignore_index: int | None, weight: Tensor | None) -> Tensor:
    """``sum / (sum of per-position weights over valid positions)``; 0 for an all-ignored batch."""
    safe, valid = _valid_index(target, ignore_index)
    if weight is None:
        denom = torch.tensor(float(target.numel()), dtype=total.dtype, device=total.device) if valid is None else (
            valid.sum().to(total.dtype)
        )
    else:
        w = weight[safe]
        denom = (w if valid is None else w * valid).sum()
    return total / denom.clamp_min(torch.finfo(total.dtype).eps)


def cross_entropy(
    logits: Tensor,
    target: Tensor,
    mode: str = MULTICLASS_MODE,
    class_weights: Tensor | None = None,
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
    pos_weight: Tensor | None = None,
    name: str = "cross_entropy",
) -> Tensor:
    """Softmax cross-entropy (multiclass) or sigmoid BCE (binary/multilabel); see the module docstring."""
    prep = prepare(name, logits, target, mode, ignore_index)
    if prep.kind == "index":
        return _ce_index(prep.logits, prep.target, class_weights, ignore_index, label_smoothing, reduction)
    if prep.kind == "prob":
        ls = label_smoothing
        loss = F.cross_entropy(prep.logits, prep.target, class_weights, reduction="none", label_smoothing=ls)
        return reduce(loss, reduction, None if prep.mask is None else prep.mask.squeeze(1))
    return _bce_dense(prep, class_weights, label_smoothing, reduction, pos_weight)


def _ce_index(
    logits: Tensor,
    target: Tensor,
    weight: Tensor | None,
    ignore_index: int | None,
    label_smoothing: float,
    reduction: str,
) -> Tensor:
    ii, ls = (-100 if ignore_index is None else ignore_index), label_smoothing
    if reduction != "mean":
        return F.cross_entropy(logits, target, weight, ignore_index=ii, reduction=reduction, label_smoothing=ls)
    total = F.cross_entropy(logits, target, weight, ignore_index=ii, reduction="sum", label_smoothing=ls)
    return _index_mean(total, target, ignore_index, weight)


def _bce_dense(
    prep: Prepared,
    class_weights: Tensor | None,
    label_smoothing: float,
    reduction: str,
    pos_weight: Tensor | None = None,
) -> Tensor:
    logits, target, _, mask = prep
    if label_smoothing:
        target = target * (1.0 - label_smoothing) + 0.5 * label_smoothing
    pw = None if pos_weight is None else _channel_view(pos_weight, logits)
    cw = None if class_weights is None else _channel_view(class_weights, logits)
    if mask is None and (reduction == "none" or (cw is None and pw is None and logits.numel())):
        return F.binary_cross_entropy_with_logits(logits, target, cw, reduction=reduction, pos_weight=pw)
    loss = F.binary_cross_entropy_with_logits(logits, target, cw, reduction="none", pos_weight=pw)
    return reduce(loss, reduction, mask)


def binary_cross_entropy(
    logits: Tensor,
    target: Tensor,
    mode: str = BINARY_MODE,
    class_weights: Tensor | None = None,
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
    pos_weight: Tensor | None = None,
    name: str = "bce",
) -> Tensor:
    """Sigmoid BCE in every mode; multiclass index targets are one-hot encoded (one-vs-rest)."""
    check_mode(name, mode)
    if mode == MULTICLASS_MODE:
        prep = prepare(name, logits, target, mode, ignore_index)
        if prep.kind == "index":
            onehot, valid = one_hot(prep.target, logits.shape[1], ignore_index)
            mask = None if ignore_index is None else torch.broadcast_to(valid, onehot.shape).to(logits.dtype)
            prep = Prepared(logits, onehot.to(logits.dtype), "dense", mask)
        else:
            mask = None if prep.mask is None else prep.mask.expand_as(logits)
            prep = Prepared(prep.logits, prep.target, "dense", mask)
        return _bce_dense(prep, class_weights, label_smoothing, reduction, pos_weight)
    return cross_entropy(
        logits, target, mode, class_weights, ignore_index, label_smoothing, reduction, pos_weight, name
    )


def _focal_factor(one_minus_p: Tensor, gamma: float) -> Tensor:
    """``(1 - p)^gamma`` with the base clamped at 0 (and away from 0 when gamma < 1, so the gradient is finite)."""
    if gamma == 0:
        return torch.ones_like(one_minus_p)
    base = one_minus_p.clamp_min(1e-12 if gamma < 1 else 0.0)
    return base.square() if gamma == 2 else base.pow(gamma)


def sigmoid_focal_loss(logits: Tensor, target: Tensor, alpha: float | None = 0.25, gamma: float = 2.0) -> Tensor:
    """Element-wise sigmoid focal loss, the formula of ``torchvision.ops.sigmoid_focal_loss`` (no reduction)."""
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = p * target + (1 - p) * (1 - target)
    loss = ce * _focal_factor(1 - p_t, gamma)
    if alpha is not None and alpha >= 0:
        loss = loss * (alpha * target + (1 - alpha) * (1 - target))
    return loss


class _SoftmaxFocalIndex(torch.autograd.Function):
    """Fused softmax focal loss for class indices: one log_softmax forward, one full-size pass backward.

    forward:  lp = log_softmax(x)[y],  l = w (1 - e^lp)^gamma (-lp)
    backward: dl/dx_c = s (p_c - [c = y]),  s = w [(1 - p_y)^gamma + gamma (-lp) p_y (1 - p_y)^(gamma - 1)]
    (``s`` is computed in forward on the (N, *) tensor; backward is exp + mul + scatter_add.)
    """

    @staticmethod
    def forward(ctx, logits: Tensor, index: Tensor, weight: Tensor | None, gamma: float) -> Tensor:
        logp = torch.log_softmax(logits, 1)
        lp = logp.gather(1, index.unsqueeze(1)).squeeze(1)
        p = lp.exp()
        one_m = -torch.expm1(lp)
        if gamma < 1:
            one_m = one_m.clamp_min(1e-12)
        ce = -lp
        if gamma == 0:
            loss, scale = ce, torch.ones_like(ce)
        else:
            fac = one_m.square() if gamma == 2 else one_m.pow(gamma)
            loss = fac * ce
            dfac = one_m if gamma == 2 else one_m.pow(gamma - 1)  # (1-p)^(gamma-1) (gamma=2: 1-p)
            scale = fac + gamma * ce * p * dfac
        if weight is not None:
            loss, scale = loss * weight, scale * weight
        ctx.save_for_backward(logp, index, scale)
        return loss

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):
        logp, index, scale = ctx.saved_tensors
        s = (scale * grad).unsqueeze(1)
        out = logp.exp().mul_(s)
        out.scatter_add_(1, index.unsqueeze(1), -s)
        return out, None, None, None


def softmax_focal_loss(
    logits: Tensor, target: Tensor, gamma: float = 2.0, alpha: Tensor | None = None, ignore_index: int | None = None
) -> Tensor:
    """Per-position softmax focal loss ``-alpha_y (1 - p_y)^gamma log p_y`` for index targets ``(N, *)``.

    Hand-fused (see ``_SoftmaxFocalIndex``): one log_softmax, a gather and element-wise work on
    ``(N, *)``; no one-hot. Ignored positions give 0. First-order differentiable only.
    """
    safe, valid = _valid_index(target, ignore_index)
    c = logits.shape[1]
    if safe.numel() and not safe.is_cuda and (safe.min() < 0 or safe.max() >= c):  # no device sync on GPU
        raise LossInputError(f"focal: target holds class indices outside [0, {c - 1}]; set ignore_index for void labels")
    weight = None if alpha is None else alpha.to(logits.dtype)[safe]
    if valid is not None:
        weight = valid.to(logits.dtype) if weight is None else weight * valid
    return _SoftmaxFocalIndex.apply(logits, safe, weight, float(gamma))


def _softmax_focal_prob(logits: Tensor, target: Tensor, gamma: float, alpha: Tensor | None) -> Tensor:
    """Softmax focal loss for probability targets ``(N, C, *)``: ``-sum_c a_c t_c (1 - p_c)^gamma log p_c``."""
    logp = torch.log_softmax(logits, 1)
    terms = _focal_factor(-torch.expm1(logp), gamma) * logp * target
    if alpha is not None:
        terms = terms * _channel_view(alpha, logits)
    return -terms.sum(1)


def focal_loss(
    logits: Tensor,
    target: Tensor,
    mode: str = MULTICLASS_MODE,
    alpha: float | Tensor | None = 0.25,
    gamma: float = 2.0,
    ignore_index: int | None = None,
    reduction: str = "mean",
    name: str = "focal",
) -> Tensor:
    """Focal loss; sigmoid (torchvision) in binary/multilabel, softmax in multiclass (see :class:`FocalLoss`)."""
    prep = prepare(name, logits, target, mode, ignore_index)
    if prep.kind == "dense":
        if isinstance(alpha, Tensor):
            raise ValueError(f"{name}: a per-class alpha list is only defined for mode='multiclass'")
        loss = sigmoid_focal_loss(prep.logits, prep.target, alpha, gamma)
        return reduce(loss, reduction, prep.mask)
    a = alpha if isinstance(alpha, Tensor) else None
    if a is not None and a.numel() != logits.shape[1]:
        raise ValueError(f"{name}: alpha has {a.numel()} entries for {logits.shape[1]} classes")
    if prep.kind == "prob":
        loss = _softmax_focal_prob(prep.logits, prep.target, gamma, a)
        return reduce(loss, reduction, None if prep.mask is None else prep.mask.squeeze(1))
    loss = softmax_focal_loss(prep.logits, prep.target, gamma, a, ignore_index)
    if reduction == "mean":
        return _index_mean(loss.sum(), prep.target, ignore_index, None)
    return reduce(loss, reduction)


def _check_weights(name: str, values: Sequence[float] | None, what: str = "class_weights") -> list[float] | None:
    if values is None:
        return None
    values = [float(v) for v in ([values] if isinstance(values, (int, float)) else values)]
    if any(v < 0 or not math.isfinite(v) for v in values):
        raise ValueError(f"{name}: {what} must be finite and >= 0, got {values}")
    return values


def _buffer(module: nn.Module, key: str, values: list[float] | None) -> None:
    module.register_buffer(key, None if values is None else torch.tensor(values, dtype=torch.float64), persistent=False)


# --------------------------------------------------------------------------- registered losses


class _ClassificationLoss(nn.Module):
    """Common constructor of the classification losses (not registered)."""

    name = "classification loss"

    def __init__(self, mode: str = MULTICLASS_MODE, ignore_index: int | None = None, reduction: str = "mean") -> None:
        super().__init__()
        self.mode = check_mode(self.name, mode)
        self.ignore_index = ignore_index
        self.reduction = check_reduction(reduction)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, ignore_index={self.ignore_index}, reduction={self.reduction!r}"


@register("ce", family="classification", aliases=("cross_entropy",))
class CrossEntropyLoss(_ClassificationLoss):
    """Cross-entropy: softmax CE over dim 1 (multiclass) or sigmoid BCE (binary/multilabel).

    Formula:
        multiclass:  l_i = -sum_c w_c y_ic log softmax(x_i)_c       (index target: -w_y log p_y)
                     label smoothing: y <- (1 - ls) y + ls / C
                     mean = sum_i l_i / sum_i w_{y_i}  (index targets; valid positions only, as torch)
        binary/multilabel: l = -w_c [y log s(x) + (1 - y) log(1 - s(x))]

    Reference:
        Cox, "The Regression Analysis of Binary Sequences", JRSS-B 1958 (logistic loss);
        Szegedy et al., "Rethinking the Inception Architecture for Computer Vision", CVPR 2016
        (label smoothing). Wraps torch.nn.functional.cross_entropy / binary_cross_entropy_with_logits.

    Call:
        (logits (N,C,*), target (N,*) indices | (N,C,*) probabilities); binary/multilabel as bce.
        mode, class_weights, ignore_index, label_smoothing, reduction. Equals F.cross_entropy
        (all-ignored mean -> 0 instead of NaN).

    Example:
        >>> crit = CrossEntropyLoss()
        >>> round(float(crit(torch.tensor([[0.0, 0.0]]), torch.tensor([1]))), 4)   # log 2
        0.6931
    """

    name = "ce"

    def __init__(
        self,
        mode: str = MULTICLASS_MODE,
        class_weights: Sequence[float] | None = None,
        ignore_index: int | None = None,
        label_smoothing: float = 0.0,
        reduction: str = "mean",
    ) -> None:
        super().__init__(mode, ignore_index, reduction)
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"{self.name}: label_smoothing must be in [0, 1], got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)
        _buffer(self, "class_weights", _check_weights(self.name, class_weights))

    @float32_forward
    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return cross_entropy(
            logits, target, self.mode, _as_tensor(self.class_weights, logits), self.ignore_index,
            self.label_smoothing, self.reduction, name=self.name,
        )


@register("bce", family="classification", aliases=("binary_cross_entropy",))
class BCELoss(_ClassificationLoss):
    """Binary cross-entropy on logits (sigmoid), element-wise; multiclass index targets are one-hot.

    Formula:
        l = -w_c [pw_c y log s(x) + (1 - y) log(1 - s(x))],  s = sigmoid
        label smoothing: y <- (1 - ls) y + ls / 2
        mode="multiclass": y = one_hot(target) (one-vs-rest sigmoid per class)

    Reference:
        Cox, "The Regression Analysis of Binary Sequences", JRSS-B 1958.
        Wraps torch.nn.functional.binary_cross_entropy_with_logits.

    Call:
        (logits (N,*) | (N,1,*) | (N,C,*), target same shape in [0,1] (or indices in multiclass mode));
        mode (default "binary"), pos_weight (float or per-class list), class_weights, ignore_index,
        label_smoothing, reduction. Equals F.binary_cross_entropy_with_logits(weight, pos_weight).

    Example:
        >>> crit = BCELoss()
        >>> round(float(crit(torch.tensor([0.0, 0.0]), torch.tensor([1.0, 0.0]))), 4)   # log 2
        0.6931
    """

    name = "bce"

    def __init__(
        self,
        mode: str = BINARY_MODE,
        pos_weight: float | Sequence[float] | None = None,
        class_weights: Sequence[float] | None = None,
        ignore_index: int | None = None,
        label_smoothing: float = 0.0,
        reduction: str = "mean",
    ) -> None:
        super().__init__(mode, ignore_index, reduction)
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"{self.name}: label_smoothing must be in [0, 1], got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)
        _buffer(self, "class_weights", _check_weights(self.name, class_weights))
        _buffer(self, "pos_weight", _check_weights(self.name, pos_weight, "pos_weight"))

    @float32_forward
    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return binary_cross_entropy(
            logits, target, self.mode, _as_tensor(self.class_weights, logits), self.ignore_index,
            self.label_smoothing, self.reduction, _as_tensor(self.pos_weight, logits), name=self.name,
        )


@register("focal", family="classification", aliases=("focal_loss",))
class FocalLoss(_ClassificationLoss):
    """Focal loss (Lin et al. 2017): cross-entropy down-weighted by (1 - p_t)^gamma on easy examples.

    Formula:
        binary/multilabel (sigmoid, exactly torchvision.ops.sigmoid_focal_loss), element-wise:
            p = s(x),  p_t = p y + (1 - p)(1 - y),  a_t = a y + (1 - a)(1 - y)
            l = a_t (1 - p_t)^gamma BCE(x, y)            (alpha None or < 0: no a_t)
        multiclass (softmax), per position:
            l = -a_y (1 - p_y)^gamma log p_y,  p = softmax(x)       (probability targets: sum_c y_c ...)
            a_y = alpha[y] when alpha is a per-class list; a scalar alpha is the sigmoid
            positive/negative balance and is not applied in multiclass mode.
        mean over valid positions (elements in the sigmoid modes).

    Reference:
        Lin, Goyal, Girshick, He & Dollar, "Focal Loss for Dense Object Detection", ICCV 2017.
        arXiv:1708.02002

    Call:
        (logits, target) per mode; mode, alpha (float | per-class list | None), gamma, ignore_index,
        reduction. Sigmoid: equals torchvision sigmoid_focal_loss. Softmax: equals MONAI
        FocalLoss(use_softmax=True) x C (MONAI averages over classes too). Index targets use a
        hand-fused autograd Function (one log_softmax, gather, analytic backward; no one-hot):
        fwd+bwd about the cost of F.cross_entropy (first-order differentiable only).

    Example:
        >>> crit = FocalLoss(gamma=2.0)
        >>> round(float(crit(torch.tensor([[0.0, 0.0]]), torch.tensor([1]))), 4)   # 0.5^2 * log 2
        0.1733
    """

    name = "focal"

    def __init__(
        self,
        mode: str = MULTICLASS_MODE,
        alpha: float | Sequence[float] | None = 0.25,
        gamma: float = 2.0,
        ignore_index: int | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__(mode, ignore_index, reduction)
        if gamma < 0:
            raise ValueError(f"{self.name}: gamma must be >= 0, got {gamma}")
        self.gamma = float(gamma)
        self.alpha: float | None = None
        if isinstance(alpha, (int, float)) or alpha is None:
            self.alpha = None if alpha is None else float(alpha)
            _buffer(self, "class_alpha", None)
        else:
            _buffer(self, "class_alpha", _check_weights(self.name, alpha, "alpha"))

    @float32_forward
    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        alpha = self.class_alpha if self.class_alpha is not None else self.alpha
        return focal_loss(
            logits, target, self.mode, _as_tensor(alpha, logits) if isinstance(alpha, Tensor) else alpha,
            self.gamma, self.ignore_index, self.reduction, name=self.name,
        )

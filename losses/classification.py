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
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from losses._utils import LossInputError, check_reduction, check_same_shape, float32_forward, one_hot, reduce
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
    "inverse_frequency_weights",
    "effective_number_weights",
    "ghm_weights",
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
    def forward(
        ctx,
        logits: Tensor,
        index: Tensor,
        weight: Tensor | None,
        gamma: float,
        poly_eps: float = 0.0,
        poly_weight: Tensor | None = None,
    ) -> Tensor:
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
        if poly_eps:  # Poly-1 term eps (1 - p)^(gamma + 1), d/dce = eps (gamma + 1) (1 - p)^gamma p
            k = gamma + 1
            poly = poly_eps * (one_m if k == 1 else one_m.pow(k))
            dpoly = poly_eps * k * p * (torch.ones_like(one_m) if k == 1 else one_m.pow(k - 1))
            if poly_weight is not None:
                poly, dpoly = poly * poly_weight, dpoly * poly_weight
            loss, scale = loss + poly, scale + dpoly
        ctx.save_for_backward(logp, index, scale)
        return loss

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):
        logp, index, scale = ctx.saved_tensors
        s = (scale * grad).unsqueeze(1)
        out = logp.exp().mul_(s)
        out.scatter_add_(1, index.unsqueeze(1), -s)
        return out, None, None, None, None, None


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
        raise LossInputError(f"focal: target holds class indices outside [0, {c - 1}]; set ignore_index for void")
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


@register("sparse_ce", family="classification", aliases=("sparse_categorical_crossentropy",))
class SparseCrossEntropyLoss(CrossEntropyLoss):
    """Softmax cross-entropy for class-index targets only (Keras' sparse categorical CE).

    Formula:
        l_i = -w_{y_i} log softmax(x_i)_{y_i};  mean = sum_i l_i / sum_i w_{y_i} over valid i

    Reference:
        Cox, "The Regression Analysis of Binary Sequences", JRSS-B 1958; tf.keras.losses.
        SparseCategoricalCrossentropy. Wraps torch.nn.functional.cross_entropy.

    Call:
        (logits (N,C,*), target (N,*) integer class indices; a float target raises); mode must be
        "multiclass"; class_weights, ignore_index, label_smoothing, reduction.

    Example:
        >>> crit = SparseCrossEntropyLoss()
        >>> round(float(crit(torch.tensor([[0.0, 0.0]]), torch.tensor([0]))), 4)
        0.6931
    """

    name = "sparse_ce"

    def __init__(
        self,
        mode: str = MULTICLASS_MODE,
        class_weights: Sequence[float] | None = None,
        ignore_index: int | None = None,
        label_smoothing: float = 0.0,
        reduction: str = "mean",
    ) -> None:
        if mode != MULTICLASS_MODE:
            raise ValueError(f"{self.name}: class-index targets need mode='multiclass', got {mode!r}")
        super().__init__(mode, class_weights, ignore_index, label_smoothing, reduction)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        if target.is_floating_point():
            raise LossInputError(
                f"{self.name}(logits, target): expected integer class indices (N, *), got a {target.dtype} target "
                f"{tuple(target.shape)}; use 'ce' for probability targets"
            )
        return super().forward(logits, target)


@register("label_smoothing_ce", family="classification", aliases=("ls_ce",))
class LabelSmoothingCrossEntropyLoss(CrossEntropyLoss):
    """Cross-entropy with label smoothing (default 0.1): the target mixes in the uniform distribution.

    Formula:
        multiclass: q = (1 - ls) y + ls / C,  l_i = -sum_c w_c q_ic log softmax(x_i)_c
        binary/multilabel: q = (1 - ls) y + ls / 2,  l = BCE(x, q)

    Reference:
        Szegedy, Vanhoucke, Ioffe, Shlens & Wojna, "Rethinking the Inception Architecture for
        Computer Vision", CVPR 2016. arXiv:1512.00567. Wraps F.cross_entropy(label_smoothing=ls).

    Call:
        as ce; smoothing (the ls above), mode, class_weights, ignore_index, reduction.

    Example:
        >>> crit = LabelSmoothingCrossEntropyLoss(smoothing=0.1)
        >>> round(float(crit(torch.tensor([[0.0, 0.0]]), torch.tensor([1]))), 4)   # uniform p: still log 2
        0.6931
    """

    name = "label_smoothing_ce"

    def __init__(
        self,
        smoothing: float = 0.1,
        mode: str = MULTICLASS_MODE,
        class_weights: Sequence[float] | None = None,
        ignore_index: int | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__(mode, class_weights, ignore_index, smoothing, reduction)


def inverse_frequency_weights(counts: Tensor) -> Tensor:
    """``w_c = total / (C * n_c)`` (sklearn ``compute_class_weight("balanced")``); absent classes get 0."""
    total = counts.sum()
    w = total / (counts.numel() * counts.clamp_min(torch.finfo(counts.dtype).eps))
    return torch.where(counts > 0, w, torch.zeros_like(w))


def _class_counts(prep: Prepared, num_classes: int, ignore_index: int | None) -> Tensor:
    """Class counts of the batch: index -> bincount, probabilities -> summed mass (valid positions)."""
    if prep.kind == "index":
        safe, valid = _valid_index(prep.target, ignore_index)
        ones = torch.ones_like(safe, dtype=prep.logits.dtype) if valid is None else valid.to(prep.logits.dtype)
        counts = torch.zeros(num_classes, dtype=ones.dtype, device=ones.device)
        return counts.index_add_(0, safe.reshape(-1), ones.reshape(-1))
    target = prep.target if prep.mask is None else prep.target * prep.mask
    return target.transpose(0, 1).reshape(num_classes, -1).sum(1)


@register("weighted_ce", family="classification")
class WeightedCrossEntropyLoss(_ClassificationLoss):
    """Class-weighted cross-entropy with fixed weights or "auto" inverse class frequency of each batch.

    Formula:
        multiclass: l_i = -w_{y_i} log p_{y_i};  mean = sum_i l_i / sum_i w_{y_i}   (torch semantics)
        "auto": w_c = n / (C n_c) from the batch's class counts n_c (0 for an absent class;
                probability targets count their mass), detached (sklearn class_weight="balanced")
        binary/multilabel: element-wise BCE, "auto" weighs positives of channel c by n/(2 n_pos,c)
                and negatives by n/(2 n_neg,c)

    Reference:
        King & Zeng, "Logistic Regression in Rare Events Data", Political Analysis 2001 (inverse-
        frequency weighting); sklearn.utils.class_weight.compute_class_weight("balanced").
        Wraps F.cross_entropy(weight=w) / F.binary_cross_entropy_with_logits(weight=w).

    Call:
        (logits, target) as ce; class_weights (list | "auto"), mode, ignore_index, label_smoothing, reduction.

    Example:
        >>> crit = WeightedCrossEntropyLoss(class_weights=[1.0, 3.0])
        >>> round(float(crit(torch.tensor([[0.0, 0.0]]), torch.tensor([1]))), 4)   # weighted mean: log 2
        0.6931
    """

    name = "weighted_ce"

    def __init__(
        self,
        class_weights: Sequence[float] | str = "auto",
        mode: str = MULTICLASS_MODE,
        ignore_index: int | None = None,
        label_smoothing: float = 0.0,
        reduction: str = "mean",
    ) -> None:
        super().__init__(mode, ignore_index, reduction)
        self.auto = isinstance(class_weights, str)
        if self.auto and class_weights != "auto":
            raise ValueError(f"{self.name}: class_weights must be a list of floats or 'auto', got {class_weights!r}")
        _buffer(self, "class_weights", None if self.auto else _check_weights(self.name, class_weights))
        self.label_smoothing = float(label_smoothing)

    @float32_forward
    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        if not self.auto:
            w = _as_tensor(self.class_weights, logits)
            return cross_entropy(logits, target, self.mode, w, self.ignore_index, self.label_smoothing, self.reduction,
                                 name=self.name)
        prep = prepare(self.name, logits, target, self.mode, self.ignore_index)
        if prep.kind != "dense":
            with torch.no_grad():
                w = inverse_frequency_weights(_class_counts(prep, logits.shape[1], self.ignore_index))
            return cross_entropy(logits, target, self.mode, w, self.ignore_index, self.label_smoothing, self.reduction,
                                 name=self.name)
        x, y, _, mask = prep
        with torch.no_grad():
            m = torch.ones_like(y) if mask is None else mask
            dims = [d for d in range(y.dim()) if d != 1] if y.dim() > 1 else [0]
            pos, tot = (y * m).sum(dims, keepdim=True), m.sum(dims, keepdim=True)
            neg = tot - pos
            eps = torch.finfo(y.dtype).eps
            w = y * tot / (2 * pos.clamp_min(eps)) + (1 - y) * tot / (2 * neg.clamp_min(eps))
        ls = self.label_smoothing
        y = y * (1.0 - ls) + 0.5 * ls if ls else y
        loss = F.binary_cross_entropy_with_logits(x, y, reduction="none") * w
        return reduce(loss, self.reduction, mask)


@register("balanced_ce", family="classification", aliases=("balanced_bce",))
class BalancedCrossEntropyLoss(_ClassificationLoss):
    """Beta-balanced binary cross-entropy (HED): positives weighted by the fraction of negatives.

    Formula:
        beta = |Y-| / |Y|   (fraction of negative target mass over the valid elements of the
                             batch, per channel; detached)
        l = -[beta y log s(x) + (1 - beta)(1 - y) log(1 - s(x))]
        mode="multiclass": y = one_hot(target) (per-class one-vs-rest)

    Reference:
        Xie & Tu, "Holistically-Nested Edge Detection", ICCV 2015 (eq. 2). arXiv:1504.06375

    Call:
        (logits, target) as bce (binary by default); mode, ignore_index, reduction. Element-wise
        F.binary_cross_entropy_with_logits with the two weights.

    Example:
        >>> crit = BalancedCrossEntropyLoss()
        >>> x, y = torch.zeros(4), torch.tensor([1.0, 0.0, 0.0, 0.0])   # beta = 3/4
        >>> round(float(crit(x, y)), 4)   # (0.75 + 3 * 0.25) * log 2 / 4
        0.2599
    """

    name = "balanced_ce"

    def __init__(self, mode: str = BINARY_MODE, ignore_index: int | None = None, reduction: str = "mean") -> None:
        super().__init__(mode, ignore_index, reduction)

    @float32_forward
    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        x, y, mask = _dense_sigmoid_inputs(self.name, logits, target, self.mode, self.ignore_index)
        with torch.no_grad():
            m = torch.ones_like(y) if mask is None else mask
            dims = [d for d in range(y.dim()) if d != 1] if y.dim() > 1 else [0]
            tot = m.sum(dims, keepdim=True)
            beta = 1 - (y * m).sum(dims, keepdim=True) / tot.clamp_min(torch.finfo(y.dtype).eps)
        w = beta * y + (1 - beta) * (1 - y)
        loss = F.binary_cross_entropy_with_logits(x, y, reduction="none") * w
        return reduce(loss, self.reduction, mask)


def _dense_sigmoid_inputs(
    name: str, logits: Tensor, target: Tensor, mode: str, ignore_index: int | None
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Sigmoid-mode inputs in every mode: logits, dense target (one-hot for multiclass), element mask."""
    prep = prepare(name, logits, target, mode, ignore_index)
    if prep.kind == "dense":
        return prep.logits, prep.target, prep.mask
    if prep.kind == "prob":
        return prep.logits, prep.target, None if prep.mask is None else prep.mask.expand_as(logits)
    onehot, valid = one_hot(prep.target, logits.shape[1], ignore_index)
    mask = None if ignore_index is None else torch.broadcast_to(valid, onehot.shape).to(logits.dtype)
    return logits, onehot.to(logits.dtype), mask


def ghm_weights(
    g: Tensor, valid: Tensor | None, edges: Tensor, acc_sum: Tensor, momentum: float
) -> tuple[Tensor, Tensor]:
    """GHM density weights ``tot / (GD(g) * n_bins_nonempty)`` per element, and this rank's valid count.

    Vectorised form of mmdetection's loop: bins ``[e_i, e_{i+1})``, ``num_in_bin`` counts valid
    elements, with momentum ``acc_i = m acc_i + (1 - m) num_in_bin`` for non-empty bins (``acc_sum``
    updated in place); weight ``tot / acc_i`` (``tot / num_in_bin`` without momentum) divided by
    the number of non-empty bins. Under DDP the histogram and ``tot`` are summed over ranks, so the
    gradient density is that of the global batch and every rank keeps the same ``acc_sum``; the
    returned count stays local, so ``sum(w * l) / count`` averaged by DDP is the global mean.
    """
    bins = acc_sum.numel()
    idx = torch.bucketize(g, edges[1:-1].to(g.dtype), right=True).clamp_(0, bins - 1)
    ones = torch.ones_like(g) if valid is None else valid.to(g.dtype)
    counts = torch.zeros(bins, dtype=g.dtype, device=g.device).index_add_(0, idx.reshape(-1), ones.reshape(-1))
    local_tot = ones.sum().clamp_min(1.0)
    counts, tot = _sum_over_ranks(counts, ones.sum())
    tot = tot.clamp_min(1.0)
    nonempty = counts > 0
    if momentum > 0:
        acc = torch.where(nonempty, momentum * acc_sum.to(g.dtype) + (1 - momentum) * counts, acc_sum.to(g.dtype))
        acc_sum.copy_(acc.to(acc_sum.dtype))
        denom = acc
    else:
        denom = counts
    per_bin = torch.where(nonempty, tot / denom.clamp_min(torch.finfo(g.dtype).tiny), torch.zeros_like(counts))
    per_bin = per_bin / nonempty.sum().clamp_min(1).to(g.dtype)
    return per_bin[idx] * ones, local_tot


def _sum_over_ranks(counts: Tensor, total: Tensor) -> tuple[Tensor, Tensor]:
    """All-reduce (sum) a histogram and its total when a process group with several ranks is running."""
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return counts, total
    packed = torch.cat([counts, total.reshape(1)])
    dist.all_reduce(packed)
    return packed[:-1], packed[-1]


class _GHM(nn.Module):
    """Shared state of the GHM losses: bin edges and the running histogram (a checkpointed buffer)."""

    def _init_bins(self, bins: int, momentum: float, last_edge: float) -> None:
        if bins < 1:
            raise ValueError(f"{self.name}: bins must be >= 1, got {bins}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"{self.name}: momentum must be in [0, 1), got {momentum}")
        self.bins, self.momentum = int(bins), float(momentum)
        edges = torch.arange(bins + 1, dtype=torch.float32) / bins
        edges[-1] += last_edge
        self.register_buffer("edges", edges, persistent=False)
        self.register_buffer("acc_sum", torch.zeros(bins, dtype=torch.float32))


@register("ghm_c", family="classification", aliases=("ghmc",))
class GHMCLoss(_ClassificationLoss, _GHM):
    """Gradient Harmonizing Mechanism for classification (GHM-C): CE re-weighted by inverse gradient density.

    Formula:
        g = |s(x) - y| (sigmoid modes, per element) or 1 - p_y (multiclass softmax, per position;
            ||p - y||_1 / 2 for probability targets), detached
        GD(g) = number of valid samples in g's bin (running: acc = m acc + (1 - m) count)
        beta = tot / (GD(g) * n_nonempty_bins),  l = beta * CE(x, y)
        mean = sum l / tot   (tot = number of valid elements)

    Reference:
        Li, Liu & Wang, "Gradient Harmonized Single-stage Detector", AAAI 2019. arXiv:1811.05181
        (sigmoid form = mmdetection GHMC; the softmax form with g = 1 - p_y is this package's extension)

    Call:
        (logits, target) per mode (binary/multilabel sigmoid, multiclass softmax); bins, momentum,
        mode, ignore_index, reduction. ``acc_sum`` is a buffer (saved in checkpoints); with momentum it
        is updated on every call in training mode only.

    Example:
        >>> crit = GHMCLoss(mode="binary", bins=10)
        >>> round(float(crit(torch.zeros(2), torch.tensor([1.0, 0.0]))), 4)   # one bin: weights 1
        0.6931
    """

    name = "ghm_c"

    def __init__(
        self,
        bins: int = 10,
        momentum: float = 0.0,
        mode: str = MULTICLASS_MODE,
        ignore_index: int | None = None,
        reduction: str = "mean",
    ) -> None:
        _ClassificationLoss.__init__(self, mode, ignore_index, reduction)
        self._init_bins(bins, momentum, 1e-6)

    @float32_forward
    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        prep = prepare(self.name, logits, target, self.mode, self.ignore_index)
        momentum = self.momentum if self.training else 0.0
        acc = self.acc_sum if self.training else self.acc_sum.clone()
        if prep.kind == "dense":
            x, y, mask = prep.logits, prep.target, prep.mask
            with torch.no_grad():
                w, tot = ghm_weights((torch.sigmoid(x) - y).abs(), mask, self.edges, acc, momentum)
            loss = F.binary_cross_entropy_with_logits(x, y, reduction="none") * w
        else:
            if prep.kind == "index":
                ii = -100 if self.ignore_index is None else self.ignore_index
                ce = F.cross_entropy(prep.logits, prep.target, ignore_index=ii, reduction="none")
                _, valid = _valid_index(prep.target, self.ignore_index)
            else:
                ce = F.cross_entropy(prep.logits, prep.target, reduction="none")
                valid = None if prep.mask is None else prep.mask.squeeze(1)
            with torch.no_grad():
                if prep.kind == "index":  # g = 1 - p_y
                    g = -torch.expm1(-ce)
                else:  # g = ||p - y||_1 / 2 (= 1 - p_y for a one-hot y)
                    g = (torch.softmax(prep.logits, 1) - prep.target).abs().sum(1) / 2
                w, tot = ghm_weights(g.clamp(0, 1), valid, self.edges, acc, momentum)
            loss = ce * w
        if self.reduction == "mean":
            return loss.sum() / tot
        return reduce(loss, self.reduction)


@register("ghm_r", family="regression", aliases=("ghmr",))
class GHMRLoss(_GHM):
    """Gradient Harmonizing Mechanism for regression (GHM-R): ASL1 re-weighted by inverse gradient density.

    Formula:
        d = pred - target,  ASL1(d) = sqrt(d^2 + mu^2) - mu
        g = |d| / sqrt(d^2 + mu^2)  (detached),  bins over [0, 1] (last edge 1e3)
        beta = tot / (GD(g) * n_nonempty_bins),  l = beta * ASL1(d),  mean = sum l / tot

    Reference:
        Li, Liu & Wang, "Gradient Harmonized Single-stage Detector", AAAI 2019. arXiv:1811.05181
        (as mmdetection GHMR)

    Call:
        (pred, target) same shape; mu, bins, momentum, reduction. ``acc_sum`` is a checkpointed buffer
        updated (with momentum) in training mode.

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
        self._init_bins(bins, momentum, 1e3)

    @float32_forward
    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        check_same_shape(self.name, pred, target)
        d = pred - target
        root = torch.sqrt(d * d + self.mu * self.mu)
        loss = root - self.mu
        momentum = self.momentum if self.training else 0.0
        acc = self.acc_sum if self.training else self.acc_sum.clone()
        with torch.no_grad():
            w, tot = ghm_weights((d / root).abs(), None, self.edges, acc, momentum)
        loss = loss * w
        if self.reduction == "mean":
            return loss.sum() / tot
        return reduce(loss, self.reduction)


def effective_number_weights(samples_per_class: Sequence[float], beta: float) -> list[float]:
    """Cui et al.: ``w_c = (1 - beta) / (1 - beta^{n_c})``, normalised to sum to C (``n_c = 0`` -> weight 0)."""
    raw = [(1.0 - beta) / (1.0 - beta**n) if n > 0 else 0.0 for n in samples_per_class]
    if beta == 0:
        raw = [1.0 if n > 0 else 0.0 for n in samples_per_class]
    total = sum(raw)
    return [len(raw) * w / total for w in raw]


@register("class_balanced", family="classification", aliases=("cb_loss",))
class ClassBalancedLoss(_ClassificationLoss):
    """Class-balanced loss (Cui et al. 2019): a base loss weighted by the inverse effective number of samples.

    Formula:
        E_n = (1 - beta^n) / (1 - beta),  w_c = (1 / E_{n_c}) normalised so that sum_c w_c = C
        l_i = w_{y_i} L_base(x_i, y_i)     (probability targets: w_i = sum_c w_c y_ic)
        base "ce": softmax CE; "focal": sigmoid focal (one-vs-rest over one-hot, summed over
        classes, alpha=None as in the paper); "sigmoid": sigmoid BCE over one-hot, summed over classes
        mean = sum_i l_i / (number of valid positions)
        binary mode: samples_per_class = [n_neg, n_pos], element weight w_pos y + w_neg (1 - y);
        multilabel mode: channel c weighted by w_c (element-wise sigmoid/focal base)

    Reference:
        Cui, Jia, Lin, Song & Belongie, "Class-Balanced Loss Based on Effective Number of Samples",
        CVPR 2019. arXiv:1901.05555

    Call:
        (logits, target) per mode; samples_per_class (required), beta, base ("ce"|"focal"|"sigmoid"),
        gamma (focal base), mode, ignore_index, reduction.

    Example:
        >>> crit = ClassBalancedLoss(samples_per_class=[10, 10], beta=0.9)   # equal counts: plain CE
        >>> round(float(crit(torch.tensor([[0.0, 0.0]]), torch.tensor([1]))), 4)
        0.6931
    """

    name = "class_balanced"

    def __init__(
        self,
        samples_per_class: Sequence[float],
        beta: float = 0.999,
        base: str = "ce",
        gamma: float = 2.0,
        mode: str = MULTICLASS_MODE,
        ignore_index: int | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__(mode, ignore_index, reduction)
        if base not in ("ce", "focal", "sigmoid"):
            raise ValueError(f"{self.name}: base must be 'ce', 'focal' or 'sigmoid', got {base!r}")
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"{self.name}: beta must be in [0, 1), got {beta}")
        counts = _check_weights(self.name, samples_per_class, "samples_per_class")
        if not counts or sum(counts) <= 0:
            raise ValueError(f"{self.name}: samples_per_class needs at least one positive count")
        self.base, self.beta, self.gamma = base, float(beta), float(gamma)
        _buffer(self, "class_weights", effective_number_weights(counts, beta))

    @float32_forward
    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        w = _as_tensor(self.class_weights, logits)
        prep = prepare(self.name, logits, target, self.mode, self.ignore_index)
        if prep.kind == "dense":
            x, y, _, mask = prep
            if self.mode == BINARY_MODE:
                if w.numel() != 2:
                    raise ValueError(f"{self.name}: binary mode needs samples_per_class=[n_neg, n_pos]")
                ew = w[1] * y + w[0] * (1 - y)
            else:
                ew = _channel_view(w, x)
            loss = self._sigmoid_base(x, y) * ew
            return reduce(loss, self.reduction, mask)
        c = logits.shape[1]
        if w.numel() != c:
            raise ValueError(f"{self.name}: samples_per_class has {w.numel()} entries for {c} classes")
        if prep.kind == "index":
            safe, valid = _valid_index(prep.target, self.ignore_index)
            pw = w[safe]
            if self.base == "ce":
                ii = -100 if self.ignore_index is None else self.ignore_index
                loss = F.cross_entropy(prep.logits, prep.target, ignore_index=ii, reduction="none")
            else:
                onehot, _ = one_hot(safe, c)
                loss = self._sigmoid_base(prep.logits, onehot.to(logits.dtype)).sum(1)
            mask = None if valid is None else valid.to(logits.dtype)
        else:
            pw = (prep.target * _channel_view(w, prep.target)).sum(1)
            if self.base == "ce":
                loss = F.cross_entropy(prep.logits, prep.target, reduction="none")
            else:
                loss = self._sigmoid_base(prep.logits, prep.target).sum(1)
            mask = None if prep.mask is None else prep.mask.squeeze(1)
        return reduce(loss * pw, self.reduction, mask)

    def _sigmoid_base(self, x: Tensor, y: Tensor) -> Tensor:
        if self.base == "focal":
            return sigmoid_focal_loss(x, y, None, self.gamma)
        return F.binary_cross_entropy_with_logits(x, y, reduction="none")


@register("poly1", family="classification", aliases=("poly_loss",))
class Poly1Loss(_ClassificationLoss):
    """Poly-1 loss (Leng et al. 2022): cross-entropy (or focal) plus epsilon times the first polynomial term.

    Formula:
        CE form:    l = CE(x, y) + eps (1 - p_t)
        focal form: l = FL_gamma(x, y) + eps (1 - p_t)^(gamma + 1)
        multiclass: p_t = sum_c y_c softmax(x)_c (= p_y for indices), softmax CE / softmax focal
        binary/multilabel: p_t = s(x) y + (1 - s(x))(1 - y) element-wise, sigmoid BCE / sigmoid focal
        (focal alpha as torchvision in the sigmoid modes, per-class list in multiclass)

    Reference:
        Leng, Tan, Liu, Cubuk, Shi, Cheng & Anguelov, "PolyLoss: A Polynomial Expansion Perspective
        of Classification Loss Functions", ICLR 2022. arXiv:2204.12511

    Call:
        (logits, target) per mode; epsilon, focal (bool), gamma, alpha (focal form), mode,
        ignore_index, reduction. eps = 0 equals ce / focal. Index targets: one fused pass (the focal
        autograd Function with the poly term), first-order differentiable only.

    Example:
        >>> crit = Poly1Loss(epsilon=1.0)
        >>> round(float(crit(torch.tensor([[0.0, 0.0]]), torch.tensor([1]))), 4)   # log 2 + 0.5
        1.1931
    """

    name = "poly1"

    def __init__(
        self,
        epsilon: float = 1.0,
        focal: bool = False,
        gamma: float = 2.0,
        alpha: float | Sequence[float] | None = 0.25,
        mode: str = MULTICLASS_MODE,
        ignore_index: int | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__(mode, ignore_index, reduction)
        self.epsilon, self.focal, self.gamma = float(epsilon), bool(focal), float(gamma)
        self.alpha: float | None = None
        if isinstance(alpha, (int, float)) or alpha is None:
            self.alpha = None if alpha is None else float(alpha)
            _buffer(self, "class_alpha", None)
        else:
            _buffer(self, "class_alpha", _check_weights(self.name, alpha, "alpha"))

    @float32_forward
    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        prep = prepare(self.name, logits, target, self.mode, self.ignore_index)
        power = self.gamma + 1 if self.focal else 1.0
        if prep.kind == "dense":
            x, y, _, mask = prep
            p = torch.sigmoid(x)
            one_m_pt = 1 - (p * y + (1 - p) * (1 - y))
            if self.focal:
                base = sigmoid_focal_loss(x, y, self.alpha, self.gamma)
            else:
                base = F.binary_cross_entropy_with_logits(x, y, reduction="none")
            loss = base + self.epsilon * _focal_factor(one_m_pt, power)
            return reduce(loss, self.reduction, mask)
        alpha = None if self.class_alpha is None else _as_tensor(self.class_alpha, logits)
        if prep.kind == "index":  # one fused pass: (focal or CE) + eps (1 - p_y)^power
            safe, valid = _valid_index(prep.target, self.ignore_index)
            vw = None if valid is None else valid.to(logits.dtype)
            weight = None if alpha is None else alpha.to(logits.dtype)[safe]
            weight = vw if weight is None else (weight if vw is None else weight * vw)
            gamma = self.gamma if self.focal else 0.0
            loss = _SoftmaxFocalIndex.apply(prep.logits, safe, weight, gamma, self.epsilon, vw)
            if self.reduction == "mean":
                return _index_mean(loss.sum(), prep.target, self.ignore_index, None)
            return reduce(loss, self.reduction)
        else:
            logp = torch.log_softmax(prep.logits, 1)
            one_m_pt = 1 - (logp.exp() * prep.target).sum(1)
            if self.focal:
                base = _softmax_focal_prob(prep.logits, prep.target, self.gamma, alpha)
            else:
                base = -(logp * prep.target).sum(1)
            mask = None if prep.mask is None else prep.mask.squeeze(1)
        loss = base + self.epsilon * _focal_factor(one_m_pt, power)
        return reduce(loss, self.reduction, mask)


@register("kl_div", family="classification", aliases=("kl", "kl_divergence"))
class KLDivLoss(_ClassificationLoss):
    """KL divergence KL(target || softmax(logits / T)) per position, for soft labels and distillation.

    Formula:
        multiclass: l_i = T^2 sum_c t_ic (log t_ic - log_softmax(x_i / T)_c)   (0 log 0 = 0)
        binary/multilabel (Bernoulli, element-wise): l = t log(t / s) + (1 - t) log((1 - t) / (1 - s)),
            s = sigmoid(x / T)  (= BCE(x/T, t) - H(t)), times T^2
        mean = sum / number of positions (N * prod(*)): "batchmean" for (N, C) logits, and per
        position for dense maps (F.kl_div's "mean" would also divide by C). Index targets = one-hot
        (then KL = CE).

    Reference:
        Kullback & Leibler, "On Information and Sufficiency", Ann. Math. Statist. 1951; Hinton, Vinyals
        & Dean, "Distilling the Knowledge in a Neural Network", 2015 (temperature, T^2). Wraps F.kl_div.

    Call:
        (logits (N,C,*), target probabilities (N,C,*) or indices); temperature, log_target (target given
        as log-probabilities), mode, ignore_index, reduction. Equals F.kl_div(log_softmax(x), t,
        reduction="batchmean") for (N, C) inputs.

    Example:
        >>> crit = KLDivLoss()
        >>> round(float(crit(torch.tensor([[0.0, 0.0]]), torch.tensor([[0.5, 0.5]]))), 4)
        0.0
    """

    name = "kl_div"

    def __init__(
        self,
        temperature: float = 1.0,
        log_target: bool = False,
        mode: str = MULTICLASS_MODE,
        ignore_index: int | None = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__(mode, ignore_index, reduction)
        if temperature <= 0:
            raise ValueError(f"{self.name}: temperature must be > 0, got {temperature}")
        self.temperature, self.log_target = float(temperature), bool(log_target)

    @float32_forward
    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        t2 = self.temperature**2
        if self.log_target and target.is_floating_point():
            keep = target == self.ignore_index if self.ignore_index is not None else torch.zeros_like(target).bool()
            target = torch.where(keep, target, target.exp())
        prep = prepare(self.name, logits, target, self.mode, self.ignore_index)
        x = prep.logits / self.temperature
        if prep.kind == "dense":
            y = prep.target
            neg_entropy = torch.xlogy(y, y) + torch.xlogy(1 - y, 1 - y)
            loss = (F.binary_cross_entropy_with_logits(x, y, reduction="none") + neg_entropy) * t2
            return reduce(loss, self.reduction, prep.mask)
        if prep.kind == "index":  # one-hot target: KL = CE, torch's fused path
            return _ce_index(x, prep.target, None, self.ignore_index, 0.0, self.reduction) * t2
        else:
            loss = F.kl_div(torch.log_softmax(x, 1), prep.target, reduction="none").sum(1) * t2
            mask = None if prep.mask is None else prep.mask.squeeze(1)
        return reduce(loss, self.reduction, mask)

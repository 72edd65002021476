"""Probabilistic classification losses: cross-entropy family, focal, GHM-C, class-balanced, poly-1, KL.

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

Each loss is a functional core (``cross_entropy``, ``focal_loss`` ...: ``fn(logits, target, *,
<own parameters>, **options)``, where ``options`` are ``mode``, ``ignore_index`` and ``reduction``)
and a thin registered module over it; the modules' ``Args:`` lines for those three options come
from :data:`CLASSIFICATION` (see :mod:`losses._utils`).

Fast paths: cross-entropy is ``F.cross_entropy`` (indices or probabilities, with its ``weight``
and ``label_smoothing``), the sigmoid losses are ``F.binary_cross_entropy_with_logits``; focal
loss is one fused autograd Function per form (softmax over class indices, element-wise sigmoid),
each with an analytic backward; index targets are never one-hot encoded except where a loss needs
every class's sigmoid (``bce`` in multiclass mode).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from losses._ghm import GHMState, ghm_weights
from losses._utils import (
    BINARY_MODE,
    IGNORE_INDEX,
    MODE,
    MODES,
    MULTICLASS_MODE,
    REDUCTION,
    LossInputError,
    OptionModule,
    OptionSet,
    Prepared,
    check_class_range,
    check_mode,
    float32_forward,
    ignore_mask,
    one_hot,
    prepare,
    reduce,
    safe_pow,
    safe_pow_grad,
)
from losses.registry import register

__all__ = [
    "CLASSIFICATION",
    "cross_entropy",
    "binary_cross_entropy",
    "focal_loss",
    "softmax_focal_loss",
    "sigmoid_focal_loss",
    "weighted_cross_entropy",
    "balanced_cross_entropy",
    "ghm_c_loss",
    "class_balanced_loss",
    "poly1_loss",
    "kl_div_loss",
    "inverse_frequency_weights",
    "effective_number_weights",
]

CLASSIFICATION = OptionSet(MODE, IGNORE_INDEX, REDUCTION)

Weights = float | Sequence[float] | Tensor | None


# --------------------------------------------------------------------------- shared core


def _channel_view(values: Tensor, ref: Tensor) -> Tensor:
    """Per-class ``(C,)`` values viewed to broadcast along dim 1 of ``ref`` ((N,) refs: a scalar view)."""
    if ref.dim() < 2:
        return values.reshape(()) if values.numel() == 1 else values
    return values.view(1, -1, *([1] * (ref.dim() - 2)))


def _as_tensor(values: Weights, ref: Tensor) -> Tensor | None:
    """``values`` as a tensor of ``ref``'s dtype and device (a buffer on that device costs no copy)."""
    if values is None:
        return None
    return torch.as_tensor(values, dtype=ref.dtype, device=ref.device)


def _position_mean(total: Tensor, index: Tensor, mask: Tensor | None, weight: Tensor | None) -> Tensor:
    """``total / sum of per-position weights (w_y, or 1) over valid positions``; 0 for an all-ignored batch."""
    w = None if weight is None else weight[index]
    if mask is not None:
        w = mask if w is None else w * mask
    if w is None:
        return total / max(index.numel(), 1)
    return total / w.sum().clamp_min(torch.finfo(total.dtype).eps)


def _cross_entropy(prep: Prepared, weight: Tensor | None, label_smoothing: float, reduction: str) -> Tensor:
    """Cross-entropy of prepared inputs: torch's fused softmax CE, or sigmoid BCE for dense targets."""
    if prep.kind == "dense":
        return _bce(prep, weight, label_smoothing, reduction)
    x, target, kind, mask = prep
    ls = label_smoothing
    if kind == "prob":
        return reduce(F.cross_entropy(x, target, weight, reduction="none", label_smoothing=ls), reduction, mask)
    if mask is None and (reduction != "mean" or target.numel()):
        return F.cross_entropy(x, target, weight, reduction=reduction, label_smoothing=ls)
    loss = F.cross_entropy(x, target, weight, reduction="none", label_smoothing=ls)
    loss = loss if mask is None else loss * mask
    if reduction == "none":
        return loss
    total = loss.sum()
    return total if reduction == "sum" else _position_mean(total, target, mask, weight)


def _bce(
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


class _SoftmaxFocalIndex(torch.autograd.Function):
    """Fused softmax focal loss for class indices: one log_softmax forward, one full-size pass backward.

    forward:  lp = log_softmax(x)[y],  l = v a f(1 - e^lp) (-lp),  f = safe_pow(., gamma)
    backward: dl/dx_c = s (p_c - [c = y]),  s = v a [f(1 - p_y) + (-lp) p_y f'(1 - p_y)]
    (``s`` is computed in forward on the (N, *) tensor; backward is exp + mul + scatter_add.)
    ``v`` is the validity mask, ``a`` the per-position alpha; Poly-1 adds ``v eps g(1 - p_y)``,
    ``g = safe_pow(., gamma + 1)``, to ``l`` and ``v eps p_y g'`` to ``s``.
    """

    @staticmethod
    def forward(
        ctx,
        logits: Tensor,
        index: Tensor,
        mask: Tensor | None,
        alpha: Tensor | None,
        gamma: float,
        poly_eps: float = 0.0,
    ) -> Tensor:
        logp = torch.log_softmax(logits, 1)
        lp = logp.gather(1, index.unsqueeze(1)).squeeze(1)
        p = lp.exp()
        one_m = -torch.expm1(lp)
        ce = -lp
        fac = safe_pow(one_m, gamma)
        loss, scale = fac * ce, fac + ce * p * safe_pow_grad(one_m, gamma)
        if alpha is not None:
            loss, scale = loss * alpha, scale * alpha
        if poly_eps:  # Poly-1 term eps (1 - p)^(gamma + 1); its d/d(-lp) is eps p g'(1 - p)
            loss = loss + poly_eps * safe_pow(one_m, gamma + 1)
            scale = scale + poly_eps * p * safe_pow_grad(one_m, gamma + 1)
        if mask is not None:
            loss, scale = loss * mask, scale * mask
        ctx.save_for_backward(logp, index, scale)
        return loss

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        logp, index, scale = ctx.saved_tensors
        s = (scale * grad).unsqueeze(1)
        out = logp.exp().mul_(s)
        out.scatter_add_(1, index.unsqueeze(1), -s)
        return out, None, None, None, None, None


def _balance_(t: Tensor, y: Tensor, alpha: float | None, weight: Tensor | None) -> Tensor:
    """In place: ``t *= a_t w`` with ``a_t = alpha y + (1 - alpha)(1 - y)`` (skipped for alpha None)."""
    if alpha is not None:
        if alpha == 1.0:
            t.mul_(y)
        else:  # a_t = (1 - alpha)(1 + k y),  k = (2 alpha - 1) / (1 - alpha)
            t.addcmul_(t, y, value=(2.0 * alpha - 1.0) / (1.0 - alpha)).mul_(1.0 - alpha)
    return t if weight is None else t.mul_(weight)


class _SigmoidFocal(torch.autograd.Function):
    """Fused element-wise sigmoid focal loss (torchvision's formula) with an analytic backward.

    forward:  s = sigmoid(x),  ce = softplus(x) - x y,  q = 1 - p_t = s + y - 2 s y
              l = a_t w f(q) ce,  f = safe_pow(., gamma)
    backward: dl/dx = a_t w [f(q) (s - y) + f'(q) s (1 - s)(1 - 2 y) ce]   (dq/dx = s (1 - s)(1 - 2 y))
    The gradient is formed in forward with in-place ops on five full-size buffers (allocation, not
    arithmetic, dominates on CPU) and saved; backward is one multiply. Differentiable in ``x`` only.
    """

    @staticmethod
    def forward(ctx, x: Tensor, y: Tensor, weight: Tensor | None, alpha: float | None, gamma: float) -> Tensor:
        s = torch.sigmoid(x)
        ce = _balance_(F.softplus(x).addcmul_(x, y, value=-1.0), y, alpha, weight)  # a_t w BCE(x, y)
        q = torch.addcmul(s, s, y, value=-2.0).add_(y)
        fac, dfac = safe_pow(q, gamma), safe_pow_grad(q, gamma)
        if ctx.needs_input_grad[0]:
            dq = q.copy_(s).addcmul_(s, s, value=-1.0)  # s (1 - s), then times (1 - 2 y)
            dq.addcmul_(dq, y, value=-2.0).mul_(dfac).mul_(ce)
            grad = _balance_(s.sub_(y).mul_(fac), y, alpha, weight).add_(dq)
            ctx.save_for_backward(grad)
        return fac.mul_(ce)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):
        (grad,) = ctx.saved_tensors
        return grad * grad_out, None, None, None, None


def _check_gamma(name: str, gamma: float) -> float:
    if gamma < 0:
        raise ValueError(f"{name}: gamma must be >= 0, got {gamma}")
    return float(gamma)


def sigmoid_focal_loss(
    logits: Tensor, target: Tensor, alpha: float | None = 0.25, gamma: float = 2.0, weight: Tensor | None = None
) -> Tensor:
    """Element-wise sigmoid focal loss, the formula of ``torchvision.ops.sigmoid_focal_loss`` (no reduction).

    One fused pass (:class:`_SigmoidFocal`); ``weight`` (broadcastable) multiplies the loss; alpha None
    or < 0 drops ``a_t``. First-order differentiable in ``logits`` only.
    """
    alpha = None if alpha is None or alpha < 0 else float(alpha)
    return _SigmoidFocal.apply(logits, target.to(logits.dtype), weight, alpha, float(gamma))


def softmax_focal_loss(
    logits: Tensor, target: Tensor, gamma: float = 2.0, alpha: Tensor | None = None, ignore_index: int | None = None
) -> Tensor:
    """Per-position softmax focal loss ``-alpha_y (1 - p_y)^gamma log p_y`` for index targets ``(N, *)``.

    Hand-fused (see ``_SoftmaxFocalIndex``): one log_softmax, a gather and element-wise work on
    ``(N, *)``; no one-hot. Ignored positions give 0. First-order differentiable only.
    """
    index, valid = ignore_mask(target.long(), ignore_index)
    check_class_range("focal", index, logits.shape[1])
    mask = None if valid is None else valid.to(logits.dtype)
    weight = None if alpha is None else alpha.to(logits.dtype)[index]
    return _SoftmaxFocalIndex.apply(logits, index, mask, weight, float(gamma))


def _softmax_focal_prob(logits: Tensor, target: Tensor, gamma: float, alpha: Tensor | None) -> Tensor:
    """Softmax focal loss for probability targets ``(N, C, *)``: ``-sum_c a_c t_c (1 - p_c)^gamma log p_c``."""
    logp = torch.log_softmax(logits, 1)
    terms = safe_pow(-torch.expm1(logp), gamma) * logp * target
    if alpha is not None:
        terms = terms * _channel_view(alpha, logits)
    return -terms.sum(1)


# --------------------------------------------------------------------------- functional cores


@float32_forward
def cross_entropy(
    logits: Tensor, target: Tensor, *, class_weights: Weights = None, label_smoothing: float = 0.0, name: str = "ce",
    **options: Any,
) -> Tensor:
    """Softmax cross-entropy (multiclass) or sigmoid BCE (binary/multilabel): see :class:`CrossEntropyLoss`.

    ``options``: ``mode``, ``ignore_index``, ``reduction``; ``name`` labels error messages.
    """
    opts = CLASSIFICATION.parse(name, options)
    prep = prepare(name, logits, target, opts.mode, opts.ignore_index)
    return _cross_entropy(prep, _as_tensor(class_weights, logits), label_smoothing, opts.reduction)


@float32_forward
def binary_cross_entropy(
    logits: Tensor, target: Tensor, *, mode: str = BINARY_MODE, pos_weight: Weights = None,
    class_weights: Weights = None, label_smoothing: float = 0.0, **options: Any,
) -> Tensor:
    """Sigmoid BCE in every mode (multiclass targets one-hot encoded, one-vs-rest): see :class:`BCELoss`."""
    opts = CLASSIFICATION.parse("bce", {"mode": mode, **options})
    prep = prepare("bce", logits, target, opts.mode, opts.ignore_index, dense=True)
    cw, pw = _as_tensor(class_weights, logits), _as_tensor(pos_weight, logits)
    return _bce(prep, cw, label_smoothing, opts.reduction, pw)


@float32_forward
def focal_loss(
    logits: Tensor, target: Tensor, *, alpha: Weights = 0.25, gamma: float = 2.0, **options: Any
) -> Tensor:
    """Focal loss: sigmoid (torchvision) in binary/multilabel, softmax in multiclass; see :class:`FocalLoss`."""
    opts = CLASSIFICATION.parse("focal", options)
    gamma = _check_gamma("focal", gamma)
    prep = prepare("focal", logits, target, opts.mode, opts.ignore_index)
    if prep.kind == "dense":
        if alpha is not None and not isinstance(alpha, (int, float)):
            raise ValueError("focal: a per-class alpha list is only defined for mode='multiclass'")
        return reduce(sigmoid_focal_loss(prep.logits, prep.target, alpha, gamma), opts.reduction, prep.mask)
    a = None if isinstance(alpha, (int, float)) else _as_tensor(alpha, logits)
    if a is not None and a.numel() != logits.shape[1]:
        raise ValueError(f"focal: alpha has {a.numel()} entries for {logits.shape[1]} classes")
    if prep.kind == "prob":
        return reduce(_softmax_focal_prob(prep.logits, prep.target, gamma, a), opts.reduction, prep.mask)
    loss = _SoftmaxFocalIndex.apply(prep.logits, prep.target, prep.mask, None if a is None else a[prep.target], gamma)
    if opts.reduction == "mean":
        return _position_mean(loss.sum(), prep.target, prep.mask, None)
    return reduce(loss, opts.reduction)


def inverse_frequency_weights(counts: Tensor) -> Tensor:
    """``w_c = total / (C * n_c)`` (sklearn ``compute_class_weight("balanced")``); absent classes get 0."""
    total = counts.sum()
    w = total / (counts.numel() * counts.clamp_min(torch.finfo(counts.dtype).eps))
    return torch.where(counts > 0, w, torch.zeros_like(w))


def _class_counts(prep: Prepared, num_classes: int) -> Tensor:
    """Class counts of the batch: indices counted, probabilities summed (valid positions only)."""
    if prep.kind == "index":
        ones = torch.ones_like(prep.target, dtype=prep.logits.dtype) if prep.mask is None else prep.mask
        counts = torch.zeros(num_classes, dtype=ones.dtype, device=ones.device)
        return counts.index_add_(0, prep.target.reshape(-1), ones.reshape(-1))
    target = prep.target if prep.mask is None else prep.target * prep.mask.unsqueeze(1)
    return target.transpose(0, 1).reshape(num_classes, -1).sum(1)


@float32_forward
def weighted_cross_entropy(
    logits: Tensor, target: Tensor, *, class_weights: Weights | str = "auto", label_smoothing: float = 0.0,
    **options: Any,
) -> Tensor:
    """Cross-entropy with fixed or "auto" (batch inverse frequency) class weights: :class:`WeightedCrossEntropyLoss`."""
    if not isinstance(class_weights, str):
        return cross_entropy(
            logits, target, class_weights=class_weights, label_smoothing=label_smoothing, name="weighted_ce", **options
        )
    opts = CLASSIFICATION.parse("weighted_ce", options)
    prep = prepare("weighted_ce", logits, target, opts.mode, opts.ignore_index)
    if prep.kind != "dense":
        with torch.no_grad():
            w = inverse_frequency_weights(_class_counts(prep, logits.shape[1]))
        return _cross_entropy(prep, w, label_smoothing, opts.reduction)
    x, y, _, mask = prep
    with torch.no_grad():
        pos, tot = _dense_counts(y, mask)
        eps = torch.finfo(y.dtype).eps
        w = y * tot / (2 * pos.clamp_min(eps)) + (1 - y) * tot / (2 * (tot - pos).clamp_min(eps))
    y = y * (1.0 - label_smoothing) + 0.5 * label_smoothing if label_smoothing else y
    return reduce(F.binary_cross_entropy_with_logits(x, y, reduction="none") * w, opts.reduction, mask)


def _dense_counts(y: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
    """Positive target mass and valid count per channel (dim 1) of a sigmoid target, kept broadcastable."""
    m = torch.ones_like(y) if mask is None else torch.broadcast_to(mask, y.shape)
    dims = [d for d in range(y.dim()) if d != 1] if y.dim() > 1 else [0]
    return (y * m).sum(dims, keepdim=True), m.sum(dims, keepdim=True)


@float32_forward
def balanced_cross_entropy(logits: Tensor, target: Tensor, *, mode: str = BINARY_MODE, **options: Any) -> Tensor:
    """Beta-balanced BCE (HED): see :class:`BalancedCrossEntropyLoss`."""
    opts = CLASSIFICATION.parse("balanced_ce", {"mode": mode, **options})
    x, y, _, mask = prepare("balanced_ce", logits, target, opts.mode, opts.ignore_index, dense=True)
    with torch.no_grad():
        pos, tot = _dense_counts(y, mask)
        beta = 1 - pos / tot.clamp_min(torch.finfo(y.dtype).eps)
    w = beta * y + (1 - beta) * (1 - y)
    return reduce(F.binary_cross_entropy_with_logits(x, y, reduction="none") * w, opts.reduction, mask)


@float32_forward(state=("acc_sum",))
def ghm_c_loss(
    logits: Tensor, target: Tensor, *, bins: int = 10, momentum: float = 0.0, acc_sum: Tensor | None = None,
    **options: Any,
) -> Tensor:
    """GHM-C: cross-entropy weighted by inverse gradient density; see :class:`GHMCLoss`.

    ``acc_sum`` (``(bins,)``) is the running histogram, updated in place when ``momentum > 0``.
    """
    opts = CLASSIFICATION.parse("ghm_c", options)
    x, y, kind, mask = prepare("ghm_c", logits, target, opts.mode, opts.ignore_index)
    if kind == "dense":
        with torch.no_grad():
            w, tot = ghm_weights((torch.sigmoid(x) - y).abs(), mask, bins, acc_sum, momentum)
        loss = F.binary_cross_entropy_with_logits(x, y, reduction="none") * w
    else:
        ce = F.cross_entropy(x, y, reduction="none")
        with torch.no_grad():
            if kind == "index":  # g = 1 - p_y
                g = -torch.expm1(-ce)
            else:  # g = ||p - y||_1 / 2 (= 1 - p_y for a one-hot y)
                g = (torch.softmax(x, 1) - y).abs().sum(1) / 2
            w, tot = ghm_weights(g.clamp(0, 1), mask, bins, acc_sum, momentum)
        loss = ce * w
    if opts.reduction == "mean":
        return loss.sum() / tot
    return reduce(loss, opts.reduction)


def effective_number_weights(samples_per_class: Sequence[float], beta: float) -> list[float]:
    """Cui et al.: ``w_c = (1 - beta) / (1 - beta^{n_c})``, normalised to sum to C (``n_c = 0`` -> weight 0)."""
    raw = [(1.0 - beta) / (1.0 - beta**n) if n > 0 else 0.0 for n in samples_per_class]
    if beta == 0:
        raw = [1.0 if n > 0 else 0.0 for n in samples_per_class]
    total = sum(raw)
    return [len(raw) * w / total for w in raw]


def _sigmoid_base(base: str, x: Tensor, y: Tensor, gamma: float) -> Tensor:
    if base == "focal":
        return sigmoid_focal_loss(x, y, None, gamma)
    return F.binary_cross_entropy_with_logits(x, y, reduction="none")


@float32_forward
def class_balanced_loss(
    logits: Tensor, target: Tensor, *, weights: Weights, base: str = "ce", gamma: float = 2.0, **options: Any,
) -> Tensor:
    """Class-balanced loss with per-class ``weights`` (``effective_number_weights``): see :class:`ClassBalancedLoss`."""
    opts = CLASSIFICATION.parse("class_balanced", options)
    if base not in ("ce", "focal", "sigmoid"):
        raise ValueError(f"class_balanced: base must be 'ce', 'focal' or 'sigmoid', got {base!r}")
    w = _as_tensor(weights, logits)
    x, y, kind, mask = prepare("class_balanced", logits, target, opts.mode, opts.ignore_index)
    if kind == "dense":
        if opts.mode == BINARY_MODE:
            if w.numel() != 2:
                raise ValueError("class_balanced: binary mode needs samples_per_class=[n_neg, n_pos]")
            ew = w[1] * y + w[0] * (1 - y)
        else:
            ew = _channel_view(w, x)
        return reduce(_sigmoid_base(base, x, y, gamma) * ew, opts.reduction, mask)
    c = logits.shape[1]
    if w.numel() != c:
        raise ValueError(f"class_balanced: samples_per_class has {w.numel()} entries for {c} classes")
    if kind == "index":
        pw = w[y]
        dense_y = None if base == "ce" else one_hot(y, c, x.dtype)
    else:
        pw = (y * _channel_view(w, y)).sum(1)
        dense_y = y
    if base == "ce":
        loss = F.cross_entropy(x, y, reduction="none")
    else:
        loss = _sigmoid_base(base, x, dense_y, gamma).sum(1)
    return reduce(loss * pw, opts.reduction, mask)


@float32_forward
def poly1_loss(
    logits: Tensor, target: Tensor, *, epsilon: float = 1.0, focal: bool = False, gamma: float = 2.0,
    alpha: Weights = 0.25, **options: Any,
) -> Tensor:
    """Poly-1: CE (or focal) plus ``epsilon (1 - p_t)^(gamma + 1)``; see :class:`Poly1Loss`."""
    opts = CLASSIFICATION.parse("poly1", options)
    gamma = _check_gamma("poly1", gamma) if focal else 0.0
    x, y, kind, mask = prepare("poly1", logits, target, opts.mode, opts.ignore_index)
    if kind == "dense":
        scalar_alpha = alpha if alpha is None or isinstance(alpha, (int, float)) else None
        p = torch.sigmoid(x)
        one_m_pt = p + y - 2 * p * y
        if focal:
            base = sigmoid_focal_loss(x, y, scalar_alpha, gamma)
        else:
            base = F.binary_cross_entropy_with_logits(x, y, reduction="none")
        return reduce(base + epsilon * safe_pow(one_m_pt, gamma + 1), opts.reduction, mask)
    class_alpha = None if alpha is None or isinstance(alpha, (int, float)) or not focal else _as_tensor(alpha, x)
    if kind == "index":  # one fused pass: (focal or CE) + eps (1 - p_y)^(gamma + 1)
        loss = _SoftmaxFocalIndex.apply(x, y, mask, None if class_alpha is None else class_alpha[y], gamma, epsilon)
        if opts.reduction == "mean":
            return _position_mean(loss.sum(), y, mask, None)
        return reduce(loss, opts.reduction)
    logp = torch.log_softmax(x, 1)
    one_m_pt = 1 - (logp.exp() * y).sum(1)
    base = _softmax_focal_prob(x, y, gamma, class_alpha) if focal else -(logp * y).sum(1)
    return reduce(base + epsilon * safe_pow(one_m_pt, gamma + 1), opts.reduction, mask)


@float32_forward
def kl_div_loss(
    logits: Tensor, target: Tensor, *, temperature: float = 1.0, log_target: bool = False, **options: Any
) -> Tensor:
    """KL(target || softmax(logits / T)) per position (Bernoulli KL in the sigmoid modes): see :class:`KLDivLoss`."""
    opts = CLASSIFICATION.parse("kl_div", options)
    if temperature <= 0:
        raise ValueError(f"kl_div: temperature must be > 0, got {temperature}")
    t2 = temperature**2
    if log_target and target.is_floating_point():  # back to probabilities; ignore_index entries stay as they are
        valid = ignore_mask(target, opts.ignore_index)[1]
        target = target.exp() if valid is None else torch.where(valid, target.exp(), target)
    x, y, kind, mask = prepare("kl_div", logits, target, opts.mode, opts.ignore_index)
    x = x / temperature
    if kind == "dense":
        neg_entropy = torch.xlogy(y, y) + torch.xlogy(1 - y, 1 - y)
        return reduce((F.binary_cross_entropy_with_logits(x, y, reduction="none") + neg_entropy) * t2, opts.reduction,
                      mask)
    if kind == "index":  # one-hot target: KL = CE, torch's fused path
        return _cross_entropy(Prepared(x, y, kind, mask), None, 0.0, opts.reduction) * t2
    return reduce(F.kl_div(torch.log_softmax(x, 1), y, reduction="none").sum(1) * t2, opts.reduction, mask)


# --------------------------------------------------------------------------- registered modules


def _check_weights(name: str, values: Weights, what: str = "class_weights") -> list[float] | None:
    if values is None:
        return None
    values = [float(v) for v in ([values] if isinstance(values, (int, float)) else values)]
    if any(v < 0 or not math.isfinite(v) for v in values):
        raise ValueError(f"{name}: {what} must be finite and >= 0, got {values}")
    return values


def _buffer(module: OptionModule, key: str, values: list[float] | None) -> None:
    module.register_buffer(key, None if values is None else torch.tensor(values, dtype=torch.float64), persistent=False)


def _store_alpha(module: OptionModule, alpha: float | Sequence[float] | None) -> None:
    """A scalar (sigmoid) alpha as ``module.alpha``, a per-class list as the buffer ``module.class_alpha``."""
    scalar = alpha is None or isinstance(alpha, (int, float))
    if scalar and alpha is not None and alpha > 1:  # a class-balancing probability; < 0 turns it off (torchvision)
        raise ValueError(f"{module.name}: alpha must be <= 1 (a weight in [0, 1]; negative: off), got {alpha}")
    module.alpha = float(alpha) if scalar and alpha is not None else None
    _buffer(module, "class_alpha", None if scalar else _check_weights(module.name, alpha, "alpha"))


def _alpha(module: OptionModule) -> float | Tensor | None:
    return module.class_alpha if module.class_alpha is not None else module.alpha


class _ClassificationLoss(OptionModule):
    """Common base of the classification modules (not registered): the ``CLASSIFICATION`` options.

    ``modes`` restricts ``mode`` (``sparse_ce``: multiclass only).
    """

    name = "classification loss"
    OPTIONS = CLASSIFICATION
    modes = MODES

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        check_mode(self.name, self.mode, self.modes)


@register("ce", family="classification", aliases=("cross_entropy",))
class CrossEntropyLoss(_ClassificationLoss):
    """Cross-entropy: softmax CE over dim 1 (multiclass) or sigmoid BCE (binary/multilabel).

    Equals ``F.cross_entropy`` (the all-ignored mean is 0 instead of NaN); binary/multilabel as ``bce``.

    Args:
        class_weights: per-class weights w_c (per channel in the sigmoid modes); None: 1.
        label_smoothing: ls in [0, 1] (the target mixes in the uniform distribution).

    Shape:
        - logits: (N, C, *) multiclass/multilabel; (N, 1, *) or (N, *) binary.
        - target: (N, *) class indices or (N, C, *) probabilities (multiclass), else the shape of logits.
        - output: scalar; (N, *) multiclass or the shape of logits with reduction="none".

    Formula:
        multiclass:  l_i = -sum_c w_c y_ic log softmax(x_i)_c       (index target: -w_y log p_y)
                     label smoothing: y <- (1 - ls) y + ls / C
                     mean = sum_i l_i / sum_i w_{y_i}  (index targets; valid positions only, as torch)
        binary/multilabel: l = -w_c [y log s(x) + (1 - y) log(1 - s(x))]

    Reference:
        Cox, "The Regression Analysis of Binary Sequences", JRSS-B 1958 (logistic loss);
        Szegedy et al., "Rethinking the Inception Architecture for Computer Vision", CVPR 2016
        (label smoothing). Wraps torch.nn.functional.cross_entropy / binary_cross_entropy_with_logits.

    Example:
        >>> crit = CrossEntropyLoss()
        >>> round(float(crit(torch.tensor([[0.0, 0.0]]), torch.tensor([1]))), 4)   # log 2
        0.6931
    """

    name = "ce"

    def __init__(
        self, class_weights: Sequence[float] | None = None, label_smoothing: float = 0.0, **options: Any
    ) -> None:
        super().__init__(**options)
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"{self.name}: label_smoothing must be in [0, 1], got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)
        _buffer(self, "class_weights", _check_weights(self.name, class_weights))

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return cross_entropy(
            logits, target, class_weights=self.class_weights, label_smoothing=self.label_smoothing, name=self.name,
            **self.options(),
        )


@register("bce", family="classification", aliases=("binary_cross_entropy",))
class BCELoss(_ClassificationLoss):
    """Binary cross-entropy on logits (sigmoid), element-wise; multiclass index targets are one-hot.

    Equals ``F.binary_cross_entropy_with_logits(weight, pos_weight)``.

    Args:
        mode: "binary" (default) | "multiclass" (one-vs-rest over the one-hot) | "multilabel".
        pos_weight: weight of the positive term, a float or one per class; None: 1.
        class_weights: per-class (channel) weights w_c; None: 1.
        label_smoothing: ls in [0, 1]; the target becomes (1 - ls) y + ls / 2.

    Shape:
        - logits: (N, *) or (N, 1, *) binary; (N, C, *) multilabel/multiclass.
        - target: the shape of logits in [0, 1] ((N, *) for (N, 1, *) logits); (N, *) indices in multiclass.
        - output: scalar; the shape of logits with reduction="none".

    Formula:
        l = -w_c [pw_c y log s(x) + (1 - y) log(1 - s(x))],  s = sigmoid
        label smoothing: y <- (1 - ls) y + ls / 2
        mode="multiclass": y = one_hot(target) (one-vs-rest sigmoid per class)

    Reference:
        Cox, "The Regression Analysis of Binary Sequences", JRSS-B 1958.
        Wraps torch.nn.functional.binary_cross_entropy_with_logits.

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
        label_smoothing: float = 0.0,
        **options: Any,
    ) -> None:
        super().__init__(mode=mode, **options)
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"{self.name}: label_smoothing must be in [0, 1], got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)
        _buffer(self, "class_weights", _check_weights(self.name, class_weights))
        _buffer(self, "pos_weight", _check_weights(self.name, pos_weight, "pos_weight"))

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return binary_cross_entropy(
            logits, target, pos_weight=self.pos_weight, class_weights=self.class_weights,
            label_smoothing=self.label_smoothing, **self.options(),
        )


@register("focal", family="classification", aliases=("focal_loss",))
class FocalLoss(_ClassificationLoss):
    """Focal loss (Lin et al. 2017): cross-entropy down-weighted by (1 - p_t)^gamma on easy examples.

    Sigmoid modes equal ``torchvision.ops.sigmoid_focal_loss`` (one fused autograd Function with an
    analytic backward, well under half of torchvision's time); softmax equals MONAI
    ``FocalLoss(use_softmax=True)`` x C (MONAI averages over classes too), index targets through a
    fused Function (one log_softmax, gather, analytic backward; no one-hot) costing about one
    ``F.cross_entropy``. Both are first-order differentiable only.

    Args:
        alpha: sigmoid positive weight a (None or < 0: none), or a per-class list (multiclass).
        gamma: focusing parameter >= 0 (0 gives cross-entropy).

    Shape:
        - logits: (N, C, *) multiclass/multilabel; (N, 1, *) or (N, *) binary.
        - target: (N, *) class indices (multiclass) or the shape of logits.
        - output: scalar; (N, *) multiclass or the shape of logits with reduction="none".

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

    Example:
        >>> crit = FocalLoss(gamma=2.0)
        >>> round(float(crit(torch.tensor([[0.0, 0.0]]), torch.tensor([1]))), 4)   # 0.5^2 * log 2
        0.1733
    """

    name = "focal"

    def __init__(self, alpha: float | Sequence[float] | None = 0.25, gamma: float = 2.0, **options: Any) -> None:
        super().__init__(**options)
        self.gamma = _check_gamma(self.name, gamma)
        _store_alpha(self, alpha)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return focal_loss(logits, target, alpha=_alpha(self), gamma=self.gamma, **self.options())


@register("sparse_ce", family="classification", aliases=("sparse_categorical_crossentropy",))
class SparseCrossEntropyLoss(CrossEntropyLoss):
    """Softmax cross-entropy for class-index targets only (Keras' sparse categorical CE).

    ``mode`` must be "multiclass"; a float target raises.

    Args:
        class_weights: per-class weights w_c; None: 1.
        label_smoothing: ls in [0, 1].

    Shape:
        - logits: (N, C, *).
        - target: (N, *) integer class indices.
        - output: scalar; (N, *) with reduction="none".

    Formula:
        l_i = -w_{y_i} log softmax(x_i)_{y_i};  mean = sum_i l_i / sum_i w_{y_i} over valid i

    Reference:
        Cox, "The Regression Analysis of Binary Sequences", JRSS-B 1958; tf.keras.losses.
        SparseCategoricalCrossentropy. Wraps torch.nn.functional.cross_entropy.

    Example:
        >>> crit = SparseCrossEntropyLoss()
        >>> round(float(crit(torch.tensor([[0.0, 0.0]]), torch.tensor([0]))), 4)
        0.6931
    """

    name = "sparse_ce"
    modes = (MULTICLASS_MODE,)

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

    Wraps ``F.cross_entropy(label_smoothing=ls)``.

    Args:
        smoothing: ls in [0, 1] (0.1 as Szegedy et al.).
        class_weights: per-class weights w_c; None: 1.

    Shape:
        - logits: (N, C, *) multiclass/multilabel; (N, 1, *) or (N, *) binary.
        - target: (N, *) class indices or (N, C, *) probabilities (multiclass), else the shape of logits.
        - output: scalar; (N, *) multiclass or the shape of logits with reduction="none".

    Formula:
        multiclass: q = (1 - ls) y + ls / C,  l_i = -sum_c w_c q_ic log softmax(x_i)_c
        binary/multilabel: q = (1 - ls) y + ls / 2,  l = BCE(x, q)

    Reference:
        Szegedy, Vanhoucke, Ioffe, Shlens & Wojna, "Rethinking the Inception Architecture for
        Computer Vision", CVPR 2016. arXiv:1512.00567

    Example:
        >>> crit = LabelSmoothingCrossEntropyLoss(smoothing=0.1)
        >>> round(float(crit(torch.tensor([[0.0, 0.0]]), torch.tensor([1]))), 4)   # uniform p: still log 2
        0.6931
    """

    name = "label_smoothing_ce"

    def __init__(self, smoothing: float = 0.1, class_weights: Sequence[float] | None = None, **options: Any) -> None:
        super().__init__(class_weights, smoothing, **options)


@register("weighted_ce", family="classification")
class WeightedCrossEntropyLoss(_ClassificationLoss):
    """Class-weighted cross-entropy with fixed weights or "auto" inverse class frequency of each batch.

    Wraps ``F.cross_entropy(weight=w)`` / ``F.binary_cross_entropy_with_logits(weight=w)``.

    Args:
        class_weights: a per-class list, or "auto" (batch inverse frequencies, recomputed per call).
        label_smoothing: ls in [0, 1].

    Shape:
        - logits: (N, C, *) multiclass/multilabel; (N, 1, *) or (N, *) binary.
        - target: (N, *) class indices or (N, C, *) probabilities (multiclass), else the shape of logits.
        - output: scalar; (N, *) multiclass or the shape of logits with reduction="none".

    Formula:
        multiclass: l_i = -w_{y_i} log p_{y_i};  mean = sum_i l_i / sum_i w_{y_i}   (torch semantics)
        "auto": w_c = n / (C n_c) from the batch's class counts n_c (0 for an absent class;
                probability targets count their mass), detached (sklearn class_weight="balanced")
        binary/multilabel: element-wise BCE, "auto" weighs positives of channel c by n/(2 n_pos,c)
                and negatives by n/(2 n_neg,c)

    Reference:
        King & Zeng, "Logistic Regression in Rare Events Data", Political Analysis 2001 (inverse-
        frequency weighting); sklearn.utils.class_weight.compute_class_weight("balanced").

    Example:
        >>> crit = WeightedCrossEntropyLoss(class_weights=[1.0, 3.0])
        >>> round(float(crit(torch.tensor([[0.0, 0.0]]), torch.tensor([1]))), 4)   # weighted mean: log 2
        0.6931
    """

    name = "weighted_ce"

    def __init__(
        self, class_weights: Sequence[float] | str = "auto", label_smoothing: float = 0.0, **options: Any
    ) -> None:
        super().__init__(**options)
        if isinstance(class_weights, str) and class_weights != "auto":
            raise ValueError(f"{self.name}: class_weights must be a list of floats or 'auto', got {class_weights!r}")
        self.auto = isinstance(class_weights, str)
        _buffer(self, "class_weights", None if self.auto else _check_weights(self.name, class_weights))
        self.label_smoothing = float(label_smoothing)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return weighted_cross_entropy(
            logits, target, class_weights="auto" if self.auto else self.class_weights,
            label_smoothing=self.label_smoothing, **self.options(),
        )


@register("balanced_ce", family="classification", aliases=("balanced_bce",))
class BalancedCrossEntropyLoss(_ClassificationLoss):
    """Beta-balanced binary cross-entropy (HED): positives weighted by the fraction of negatives.

    Element-wise ``F.binary_cross_entropy_with_logits`` with the two weights.

    Args:
        mode: "binary" (default) | "multiclass" (per-class one-vs-rest over the one-hot) | "multilabel".

    Shape:
        - logits: (N, *) or (N, 1, *) binary; (N, C, *) multilabel/multiclass.
        - target: the shape of logits in [0, 1] ((N, *) for (N, 1, *) logits); (N, *) indices in multiclass.
        - output: scalar; the shape of logits with reduction="none".

    Formula:
        beta = |Y-| / |Y|   (fraction of negative target mass over the valid elements of the
                             batch, per channel; detached)
        l = -[beta y log s(x) + (1 - beta)(1 - y) log(1 - s(x))]
        mode="multiclass": y = one_hot(target) (per-class one-vs-rest)

    Reference:
        Xie & Tu, "Holistically-Nested Edge Detection", ICCV 2015 (eq. 2). arXiv:1504.06375

    Example:
        >>> crit = BalancedCrossEntropyLoss()
        >>> x, y = torch.zeros(4), torch.tensor([1.0, 0.0, 0.0, 0.0])   # beta = 3/4
        >>> round(float(crit(x, y)), 4)   # (0.75 + 3 * 0.25) * log 2 / 4
        0.2599
    """

    name = "balanced_ce"

    def __init__(self, mode: str = BINARY_MODE, **options: Any) -> None:
        super().__init__(mode=mode, **options)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return balanced_cross_entropy(logits, target, **self.options())


@register("ghm_c", family="classification", aliases=("ghmc",))
class GHMCLoss(_ClassificationLoss, GHMState):
    """Gradient Harmonizing Mechanism for classification (GHM-C): CE re-weighted by inverse gradient density.

    ``acc_sum`` is a buffer (saved in checkpoints); with momentum it is updated on every call in
    training mode only.

    Args:
        bins: number of gradient-norm bins over [0, 1] (>= 1).
        momentum: running-histogram momentum in [0, 1); 0: this batch's histogram only.

    Shape:
        - logits: (N, C, *) multiclass/multilabel; (N, 1, *) or (N, *) binary.
        - target: (N, *) class indices or (N, C, *) probabilities (multiclass), else the shape of logits.
        - output: scalar; (N, *) multiclass or the shape of logits with reduction="none".

    Formula:
        g = |s(x) - y| (sigmoid modes, per element) or 1 - p_y (multiclass softmax, per position;
            ||p - y||_1 / 2 for probability targets), detached
        GD(g) = number of valid samples in g's bin (running: acc = m acc + (1 - m) count)
        beta = tot / (GD(g) * n_nonempty_bins),  l = beta * CE(x, y)
        mean = sum l / tot   (tot = number of valid elements)

    Reference:
        Li, Liu & Wang, "Gradient Harmonized Single-stage Detector", AAAI 2019. arXiv:1811.05181
        (sigmoid form = mmdetection GHMC; the softmax form with g = 1 - p_y is this package's extension)

    Example:
        >>> crit = GHMCLoss(mode="binary", bins=10)
        >>> round(float(crit(torch.zeros(2), torch.tensor([1.0, 0.0]))), 4)   # one bin: weights 1
        0.6931
    """

    name = "ghm_c"

    def __init__(self, bins: int = 10, momentum: float = 0.0, **options: Any) -> None:
        super().__init__(**options)
        self._init_bins(bins, momentum)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return ghm_c_loss(logits, target, **self.running(), **self.options())


@register("class_balanced", family="classification", aliases=("cb_loss",))
class ClassBalancedLoss(_ClassificationLoss):
    """Class-balanced loss (Cui et al. 2019): a base loss weighted by the inverse effective number of samples.

    Args:
        samples_per_class: training-set count n_c per class (binary: [n_neg, n_pos]).
        beta: effective-number parameter in [0, 1) (0: uniform weights).
        base: "ce" (softmax CE) | "focal" (sigmoid focal, alpha None) | "sigmoid" (sigmoid BCE).
        gamma: focusing parameter of the focal base.

    Shape:
        - logits: (N, C, *) multiclass/multilabel; (N, 1, *) or (N, *) binary.
        - target: (N, *) class indices or (N, C, *) probabilities (multiclass), else the shape of logits.
        - output: scalar; (N, *) multiclass or the shape of logits with reduction="none".

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

    Example:
        >>> crit = ClassBalancedLoss(samples_per_class=[10, 10], beta=0.9)   # equal counts: plain CE
        >>> round(float(crit(torch.tensor([[0.0, 0.0]]), torch.tensor([1]))), 4)
        0.6931
    """

    name = "class_balanced"

    def __init__(
        self, samples_per_class: Sequence[float], beta: float = 0.999, base: str = "ce", gamma: float = 2.0,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        if base not in ("ce", "focal", "sigmoid"):
            raise ValueError(f"{self.name}: base must be 'ce', 'focal' or 'sigmoid', got {base!r}")
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"{self.name}: beta must be in [0, 1), got {beta}")
        counts = _check_weights(self.name, samples_per_class, "samples_per_class")
        if not counts or sum(counts) <= 0:
            raise ValueError(f"{self.name}: samples_per_class needs at least one positive count")
        self.base, self.beta, self.gamma = base, float(beta), _check_gamma(self.name, gamma)
        _buffer(self, "class_weights", effective_number_weights(counts, beta))

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return class_balanced_loss(
            logits, target, weights=self.class_weights, base=self.base, gamma=self.gamma, **self.options()
        )


@register("poly1", family="classification", aliases=("poly_loss",))
class Poly1Loss(_ClassificationLoss):
    """Poly-1 loss (Leng et al. 2022): cross-entropy (or focal) plus epsilon times the first polynomial term.

    eps = 0 equals ce / focal. Index targets: one fused pass (the focal autograd Function with the
    poly term), first-order differentiable only.

    Args:
        epsilon: coefficient of the first polynomial term (1.0 as the paper's default).
        focal: False: the CE form; True: the focal form.
        gamma: focusing parameter of the focal form.
        alpha: focal a (sigmoid modes, as torchvision) or a per-class list (multiclass); focal form only.

    Shape:
        - logits: (N, C, *) multiclass/multilabel; (N, 1, *) or (N, *) binary.
        - target: (N, *) class indices or (N, C, *) probabilities (multiclass), else the shape of logits.
        - output: scalar; (N, *) multiclass or the shape of logits with reduction="none".

    Formula:
        CE form:    l = CE(x, y) + eps (1 - p_t)
        focal form: l = FL_gamma(x, y) + eps (1 - p_t)^(gamma + 1)
        multiclass: p_t = sum_c y_c softmax(x)_c (= p_y for indices), softmax CE / softmax focal
        binary/multilabel: p_t = s(x) y + (1 - s(x))(1 - y) element-wise, sigmoid BCE / sigmoid focal
        (focal alpha as torchvision in the sigmoid modes, per-class list in multiclass)

    Reference:
        Leng, Tan, Liu, Cubuk, Shi, Cheng & Anguelov, "PolyLoss: A Polynomial Expansion Perspective
        of Classification Loss Functions", ICLR 2022. arXiv:2204.12511

    Example:
        >>> crit = Poly1Loss(epsilon=1.0)
        >>> round(float(crit(torch.tensor([[0.0, 0.0]]), torch.tensor([1]))), 4)   # log 2 + 0.5
        1.1931
    """

    name = "poly1"

    def __init__(
        self, epsilon: float = 1.0, focal: bool = False, gamma: float = 2.0,
        alpha: float | Sequence[float] | None = 0.25, **options: Any,
    ) -> None:
        super().__init__(**options)
        self.epsilon, self.focal, self.gamma = float(epsilon), bool(focal), _check_gamma(self.name, gamma)
        _store_alpha(self, alpha)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return poly1_loss(
            logits, target, epsilon=self.epsilon, focal=self.focal, gamma=self.gamma, alpha=_alpha(self),
            **self.options(),
        )


@register("kl_div", family="classification", aliases=("kl", "kl_divergence"))
class KLDivLoss(_ClassificationLoss):
    """KL divergence KL(target || softmax(logits / T)) per position, for soft labels and distillation.

    Equals ``F.kl_div(log_softmax(x), t, reduction="batchmean")`` for (N, C) inputs.

    Args:
        temperature: T > 0 (the loss is scaled by T^2, as Hinton et al.).
        log_target: the target is given as log-probabilities.

    Shape:
        - logits: (N, C, *) multiclass/multilabel; (N, 1, *) or (N, *) binary.
        - target: (N, C, *) probabilities (or indices: one-hot) in multiclass, else the shape of logits.
        - output: scalar; (N, *) multiclass or the shape of logits with reduction="none".

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

    Example:
        >>> crit = KLDivLoss()
        >>> round(float(crit(torch.tensor([[0.0, 0.0]]), torch.tensor([[0.5, 0.5]]))), 4)
        0.0
    """

    name = "kl_div"

    def __init__(self, temperature: float = 1.0, log_target: bool = False, **options: Any) -> None:
        super().__init__(**options)
        if temperature <= 0:
            raise ValueError(f"{self.name}: temperature must be > 0, got {temperature}")
        self.temperature, self.log_target = float(temperature), bool(log_target)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return kl_div_loss(logits, target, temperature=self.temperature, log_target=self.log_target, **self.options())

"""Region (overlap) losses for segmentation: Dice & co, Tversky family, Lovasz.

Call convention shared by every loss here (and by :mod:`losses.compound`)::

    loss(logits, target)

``mode`` (the constants of ``segmentation_models_pytorch.losses``):

* ``"binary"``     logits ``(N, 1, *spatial)`` or ``(N, *spatial)``, target of the logits' shape
  (or ``(N, *spatial)`` for ``(N, 1, *spatial)`` logits), values in {0, 1} (soft values allowed);
* ``"multiclass"`` logits ``(N, C, *spatial)``, target class indices ``(N, *spatial)``;
* ``"multilabel"`` logits ``(N, C, *spatial)``, target ``(N, C, *spatial)`` in {0, 1}.

``*spatial`` is anything (2D, 3D, or nothing). ``from_logits=True`` applies softmax
(multiclass) or sigmoid (binary/multilabel). Pixels whose target equals ``ignore_index``
are removed from every statistic (their prediction is masked out too).

Statistics are per class over the whole batch (``per_image=False``, the smp convention)
or per image and class (``per_image=True``, MONAI's ``batch=False``).

Empty masks (smp semantics): a class with no target pixel in the batch (per image when
``per_image``) contributes 0 loss to the Dice/Jaccard/Tversky family, whatever is
predicted for it, and still counts in the ``mean`` denominator (as in smp and MONAI).
An all-ignored batch gives 0 with a zero gradient.

Each loss is a functional core (``dice_loss(logits, target, *, log_loss=False, **options)`` ...,
``options`` the :data:`REGION` keywords ``mode`` ... ``reduction``) and a thin registered module
over it; the modules' ``Args:`` lines for those options come from :data:`REGION` (see
:mod:`losses._utils`).

All overlap losses share one statistics kernel (:func:`dense_stats`: soft TP/FP/FN per class in
one pass over the tensor). In multiclass mode from logits it is one fused autograd Function
(softmax, statistics and, for :mod:`losses.compound`, the pixel log-likelihood terms in one
forward; an analytic backward of two full-size passes), so Dice costs about one ``F.cross_entropy``
where the library versions cost 2-4x (smp Dice 296 ms vs CE 76 ms on 8x21x256x256, 2 CPU cores).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from losses._utils import (
    BINARY_MODE,
    CLASS_WEIGHTS,
    CLASSES,
    EPS,
    FROM_LOGITS,
    IGNORE_INDEX,
    MODE,
    MULTICLASS_MODE,
    PER_IMAGE,
    REDUCTION,
    SMOOTH,
    OptionModule,
    OptionSet,
    Prepared,
    float32_forward,
    one_hot,
    prepare,
    reduce,
    safe_pow,
)
from losses.registry import register

__all__ = [
    "REGION",
    "RegionStats",
    "DenseStats",
    "dense_stats",
    "region_stats",
    "tversky_index",
    "reduce_classes",
    "dice_loss",
    "jaccard_loss",
    "tversky_loss",
    "focal_tversky_loss",
    "log_cosh_dice_loss",
    "generalized_dice_loss",
    "sensitivity_specificity_loss",
    "lovasz_loss",
]

REGION = OptionSet(MODE, FROM_LOGITS, IGNORE_INDEX, SMOOTH, EPS, CLASSES, CLASS_WEIGHTS, PER_IMAGE, REDUCTION)
LOVASZ = REGION.without("smooth", "eps")


# --------------------------------------------------------------------------- the statistics kernel


class RegionStats(NamedTuple):
    """Soft confusion counts, each ``(C,)`` (per batch) or ``(N, C)`` (per image)."""

    tp: Tensor
    fp: Tensor
    fn: Tensor

    @property
    def support(self) -> Tensor:
        """Target mass per class, ``tp + fn`` (0 for an absent class)."""
        return self.tp + self.fn


class DenseStats(NamedTuple):
    """One pass over the flattened ``(N, C, S)`` inputs: per-image soft counts and the pixel terms.

    ``tp``, ``sum_p``, ``sum_g`` are ``(N, C)`` sums over valid pixels of ``p g``, ``p`` and ``g``.
    ``inputs`` (``(N, C, S)``, as given), ``target`` (``(N, S)`` class indices or ``(N, C, S)``) and
    ``mask`` (validity of the target's shape, None without ``ignore_index``) are the flattened inputs.
    Multiclass only, on request: ``log_p`` ``(N, S)``, log-probability of the target class, and
    ``other`` ``(N, S)``, ``sum_{c != y} -ln max(1 - p_c, eps)`` (both 0 at ignored pixels).
    """

    tp: Tensor
    sum_p: Tensor
    sum_g: Tensor
    inputs: Tensor
    target: Tensor
    mask: Tensor | None
    log_p: Tensor | None = None
    other: Tensor | None = None

    def pooled(self, per_image: bool) -> RegionStats:
        """TP/FP/FN per image ``(N, C)`` or summed over the batch ``(C,)``."""
        tp, sum_p, sum_g = (self.tp, self.sum_p, self.sum_g) if per_image else (
            self.tp.sum(0), self.sum_p.sum(0), self.sum_g.sum(0)
        )
        return RegionStats(tp, sum_p - tp, sum_g - tp)


def _class_sum(index: Tensor, values: Tensor, num_classes: int) -> Tensor:
    """``out[n, c] = sum_{i: index[n, i] = c} values[n, i]`` (scatter-add, differentiable)."""
    return values.new_zeros(index.shape[0], num_classes).scatter_add(1, index, values)


class _SoftmaxStats(torch.autograd.Function):
    """Softmax, soft counts and pixel log-likelihood terms of class-index targets in one fused pass.

    forward (x (N, C, S), y (N, S), validity v (N, S)): p = softmax(x) v,
        tp_c = sum_i p_ic [y_i = c],  sum_p_c = sum_i p_ic,  log_p_i = log_softmax(x)_{i y_i},
        other_i = sum_{c != y_i} -ln max(1 - p_ic, eps)
    backward: with A_ic = dL/dp_ic = GS_c + [c = y_i] GT_c + [c != y_i] G_i r_ic / p_ic,
        r_ic = [1 - p_ic > eps] p_ic / (1 - p_ic) and g_i = dL/dlog_p_i v_i (log_p is 0 at ignored pixels),
        dL/dx_ik = p_ik A_ik - p_ik (sum_c p_ic A_ic + g_i) + [k = y_i] g_i
    which is two full-size passes over the saved p (a batched mat-vec for sum_c GS_c p_ic, then the
    result; with ``other`` the result is built in place from 1 - p). Ignored pixels have p = 0, so
    they drop out of every term.
    """

    @staticmethod
    def forward(ctx, x: Tensor, index: Tensor, mask: Tensor | None, log_likelihood: bool, other: bool, eps: float):
        ctx.set_materialize_grads(False)
        y = index.unsqueeze(1)
        if log_likelihood:
            p = torch.log_softmax(x, 1)
            log_p = p.gather(1, y).squeeze(1)
            p, p_true = p.exp_(), log_p.exp()
        else:
            p, log_p = torch.softmax(x, 1), None
            p_true = p.gather(1, y).squeeze(1)
        if mask is not None:
            p, p_true = p.mul_(mask.unsqueeze(1)), p_true * mask
            log_p = None if log_p is None else log_p * mask
        other_sum = None
        if other:
            # -sum_{c != y} ln u_c = ln u_y - ln prod_c u_c,  u = max(1 - p, eps): one log on (N, S), not on
            # (N, C, S); the product cannot underflow (at most one p_c > 1/2, so prod_c u_c >= eps / C)
            u = torch.rsub(p, 1.0).clamp_min_(eps)
            other_sum = torch.rsub(p_true, 1.0).clamp_min_(eps).log_().sub_(u.prod(1).log_())
        ctx.save_for_backward(p, index, mask, p_true)
        ctx.eps = eps
        return _class_sum(index, p_true, x.shape[1]), p.sum(-1), log_p, other_sum

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_tp: Tensor | None, grad_sum_p: Tensor | None, grad_log_p, grad_other):
        p, index, mask, p_true = ctx.saved_tensors
        n, c, _ = p.shape
        gs = p.new_zeros(n, c, 1) if grad_sum_p is None else grad_sum_p.expand(n, c).unsqueeze(-1)
        corr = p_true.new_zeros(()) if grad_tp is None else grad_tp.expand(n, c).gather(1, index) * p_true
        if grad_log_p is not None:  # corr: the [k = y] terms of p_ik A_ik, plus g_i (0 at ignored pixels)
            corr = corr + (grad_log_p if mask is None else grad_log_p * mask)
        total = corr  # sum_c p_ic A_ic + g_i, completed below
        if grad_other is None:
            out = p * gs
            total = total + torch.bmm(gs.transpose(1, 2), p).squeeze(1)
        else:  # out = p (GS + G [1 - p > eps] / (1 - p)), built in place; the y entry's G r_iy is taken back
            out = torch.rsub(p, 1.0)
            out.masked_fill_(out <= ctx.eps, math.inf)  # clamped (1 - p <= eps): G / inf = 0
            torch.div(grad_other.unsqueeze(1), out, out=out)
            one_m = torch.rsub(p_true, 1.0)
            other_true = torch.where(one_m > ctx.eps, grad_other * p_true / one_m.clamp_min(ctx.eps), 0.0)  # G r_iy
            out.add_(gs).mul_(p)
            total, corr = total + out.sum(1) - other_true, corr - other_true
        out.addcmul_(p, total.unsqueeze(1), value=-1.0)
        out.scatter_add_(1, index.unsqueeze(1), torch.broadcast_to(corr, index.shape).unsqueeze(1))
        return out, None, None, None, None, None


def _flatten(prep: Prepared, mode: str) -> Prepared:
    """``(N, C, S)`` logits; target ``(N, S)`` indices or ``(N, C, S)``; the mask in the target's shape."""
    x, t, kind, mask = prep
    n = x.shape[0]
    c = 1 if mode == BINARY_MODE else x.shape[1]
    if kind == "index":
        return Prepared(x.reshape(n, c, -1), t.reshape(n, -1), kind, None if mask is None else mask.reshape(n, -1))
    return Prepared(x.reshape(n, c, -1), t.reshape(n, c, -1), kind, None if mask is None else mask.reshape(n, c, -1))


def dense_stats(
    name: str, logits: Tensor, target: Tensor, mode: str = MULTICLASS_MODE, from_logits: bool = True,
    ignore_index: int | None = None, eps: float = 1e-7, *, log_likelihood: bool = False, other: bool = False,
) -> DenseStats:
    """Validate and flatten ``(logits, target)`` and compute the per-image soft counts in one pass.

    Multiclass from logits runs :class:`_SoftmaxStats` (which also yields ``log_p`` / ``other`` when
    asked); from probabilities and in the sigmoid modes the counts are plain differentiable sums.
    """
    x, t, kind, mask = _flatten(prepare(name, logits, target, mode, ignore_index, probabilities=False), mode)
    if kind == "dense":
        p = torch.sigmoid(x) if from_logits else x
        p = p if mask is None else p * mask
        return DenseStats((p * t).sum(-1), p.sum(-1), t.sum(-1), x, t, mask)
    c = x.shape[1]
    sum_g = _class_sum(t, x.new_ones(()).expand(t.shape) if mask is None else mask, c)
    if from_logits:
        tp, sum_p, log_p, other_sum = _SoftmaxStats.apply(x, t, mask, log_likelihood, other, eps)
        return DenseStats(tp, sum_p, sum_g, x, t, mask, log_p, other_sum)
    p = x if mask is None else x * mask.unsqueeze(1)
    p_true = p.gather(1, t.unsqueeze(1)).squeeze(1)
    log_p = torch.log(p_true.clamp_min(eps)) if log_likelihood else None
    log_p = log_p if log_p is None or mask is None else log_p * mask
    other_sum = None
    if other:
        neg = -torch.log1p(-p.clamp(0.0, 1.0 - eps))
        other_sum = neg.sum(1) - neg.gather(1, t.unsqueeze(1)).squeeze(1)
    return DenseStats(_class_sum(t, p_true, c), p.sum(-1), sum_g, x, t, mask, log_p, other_sum)


@float32_forward
def region_stats(
    logits: Tensor, target: Tensor, mode: str = MULTICLASS_MODE, from_logits: bool = True,
    ignore_index: int | None = None, per_image: bool = False, name: str = "region loss",
) -> RegionStats:
    """Soft TP/FP/FN per class: the one statistics kernel of every overlap loss.

    ``tp_c = sum_i p_ic g_ic``, ``fp_c = sum_i p_ic - tp_c``, ``fn_c = sum_i g_ic - tp_c`` over
    valid pixels ``i`` of the batch (``(C,)``) or of each image (``(N, C)`` when ``per_image``).
    """
    return dense_stats(name, logits, target, mode, from_logits, ignore_index).pooled(per_image)


def tversky_index(stats: RegionStats, alpha: float, beta: float, smooth: float = 0.0, eps: float = 1e-7) -> Tensor:
    """``(tp + smooth) / max(tp + alpha*fp + beta*fn + smooth, eps)``; alpha=beta=0.5 is Dice, 1 is IoU."""
    tp, fp, fn = stats
    return (tp + smooth) / (tp + alpha * fp + beta * fn + smooth).clamp_min(eps)


def _class_tensors(opts: Any, ref: Tensor) -> tuple[Tensor | None, Tensor | None]:
    """The ``classes`` (long) and ``class_weights`` (``ref``'s dtype) options as tensors on ``ref``'s device."""
    classes = None if opts.classes is None else torch.as_tensor(opts.classes, dtype=torch.long, device=ref.device)
    weights = None if opts.class_weights is None else torch.as_tensor(opts.class_weights, device=ref.device)
    return classes, None if weights is None else weights.to(ref.dtype)


def reduce_classes(
    loss: Tensor,
    reduction: str,
    present: Tensor | None = None,
    classes: Tensor | None = None,
    class_weights: Tensor | None = None,
) -> Tensor:
    """Zero absent classes, pick ``classes``, then weighted mean/sum over the last (class) dim and images.

    ``mean`` is ``sum(w * l) / sum(w)`` over all (image,) class entries, absent classes
    included in the denominator (smp/MONAI convention); ``none`` returns ``w * l``.
    """
    if present is not None:
        loss = loss * present.to(loss.dtype)
    weight = class_weights
    if classes is not None:
        loss = loss.index_select(-1, classes)
        weight = weight.index_select(0, classes) if weight is not None else None
    return reduce(loss, reduction, weight)


def _check_classes(name: str, mode: str, classes: object, class_weights: object) -> None:
    if mode == BINARY_MODE and (classes is not None or class_weights is not None):
        raise ValueError(f"{name}: classes / class_weights need mode 'multiclass' or 'multilabel'")


def _parse(name: str, options: dict[str, Any], option_set: OptionSet = REGION) -> Any:
    opts = option_set.parse(name, options)
    _check_classes(name, opts.mode, opts.classes, opts.class_weights)
    return opts


def _stats(name: str, logits: Tensor, target: Tensor, opts: Any) -> RegionStats:
    return dense_stats(name, logits, target, opts.mode, opts.from_logits, opts.ignore_index).pooled(opts.per_image)


def _overlap_loss(
    name: str, logits: Tensor, target: Tensor, options: dict[str, Any], alpha: float, beta: float,
    transform: Callable[[Tensor, float], Tensor],
) -> Tensor:
    """``transform(TI_c, eps)`` per class, absent classes 0, then ``reduce_classes``: the Dice/Tversky family."""
    opts = _parse(name, options)
    stats = _stats(name, logits, target, opts)
    loss = transform(tversky_index(stats, alpha, beta, opts.smooth, opts.eps), opts.eps)
    return reduce_classes(loss, opts.reduction, stats.support > 0, *_class_tensors(opts, loss))


def _one_minus(score: Tensor, eps: float) -> Tensor:
    return 1.0 - score


def _neg_log(score: Tensor, eps: float) -> Tensor:
    return -torch.log(score.clamp_min(eps))


def _check_nonnegative(name: str, **values: float) -> None:
    if any(v < 0 for v in values.values()):
        raise ValueError(f"{name}: {' and '.join(values)} must be >= 0, got {', '.join(map(str, values.values()))}")


# --------------------------------------------------------------------------- functional cores


@float32_forward
def dice_loss(logits: Tensor, target: Tensor, *, log_loss: bool = False, **options: Any) -> Tensor:
    """Soft Dice loss per class (see :class:`DiceLoss`); ``options``: the :data:`REGION` keywords."""
    return _overlap_loss("dice", logits, target, options, 0.5, 0.5, _neg_log if log_loss else _one_minus)


@float32_forward
def jaccard_loss(logits: Tensor, target: Tensor, *, log_loss: bool = False, **options: Any) -> Tensor:
    """Soft Jaccard (IoU) loss per class (see :class:`JaccardLoss`); ``options``: the :data:`REGION` keywords."""
    return _overlap_loss("jaccard", logits, target, options, 1.0, 1.0, _neg_log if log_loss else _one_minus)


@float32_forward
def tversky_loss(logits: Tensor, target: Tensor, *, alpha: float = 0.3, beta: float = 0.7, **options: Any) -> Tensor:
    """Tversky loss ``1 - TI_c`` (see :class:`TverskyLoss`); ``options``: the :data:`REGION` keywords."""
    _check_nonnegative("tversky", alpha=alpha, beta=beta)
    return _overlap_loss("tversky", logits, target, options, alpha, beta, _one_minus)


@float32_forward
def focal_tversky_loss(
    logits: Tensor, target: Tensor, *, alpha: float = 0.3, beta: float = 0.7, gamma: float = 0.75, **options: Any
) -> Tensor:
    """Focal Tversky loss ``(1 - TI_c)^gamma`` (see :class:`FocalTverskyLoss`); ``options``: :data:`REGION`."""
    _check_nonnegative("focal_tversky", alpha=alpha, beta=beta)
    if gamma <= 0:
        raise ValueError(f"focal_tversky: gamma must be > 0, got {gamma}")

    def focal(score: Tensor, eps: float) -> Tensor:
        return safe_pow((1.0 - score).clamp_min(0.0), gamma, eps)

    return _overlap_loss("focal_tversky", logits, target, options, alpha, beta, focal)


def _log_cosh_of_loss(score: Tensor, eps: float) -> Tensor:
    x = 1.0 - score
    return x + F.softplus(-2.0 * x) - math.log(2.0)


@float32_forward
def log_cosh_dice_loss(logits: Tensor, target: Tensor, **options: Any) -> Tensor:
    """``log cosh(1 - D_c)`` per class (see :class:`LogCoshDiceLoss`); ``options``: the :data:`REGION` keywords."""
    return _overlap_loss("log_cosh_dice", logits, target, options, 0.5, 0.5, _log_cosh_of_loss)


@float32_forward
def generalized_dice_loss(logits: Tensor, target: Tensor, **options: Any) -> Tensor:
    """Generalised Dice loss, one value per batch or image (see :class:`GeneralizedDiceLoss`)."""
    opts = _parse("generalized_dice", options)
    tp, fp, fn = _stats("generalized_dice", logits, target, opts)
    classes, class_weights = _class_tensors(opts, tp)
    if classes is not None:
        tp, fp, fn = (t.index_select(-1, classes) for t in (tp, fp, fn))
    support = (tp + fn).detach()
    present = support > 0
    w = 1.0 / support.clamp_min(opts.eps).square()
    w = torch.where(present, w, torch.zeros_like(w))
    w = torch.where(present, w, w.amax(-1, keepdim=True))
    if class_weights is not None:
        w = w * (class_weights.index_select(0, classes) if classes is not None else class_weights)
    numer = 2.0 * (w * tp).sum(-1) + opts.smooth
    denom = (w * (2.0 * tp + fp + fn)).sum(-1) + opts.smooth
    loss = (1.0 - numer / denom.clamp_min(opts.eps)) * present.any(-1).to(tp.dtype)
    return reduce(loss, opts.reduction)


@float32_forward
def sensitivity_specificity_loss(logits: Tensor, target: Tensor, *, r: float = 0.05, **options: Any) -> Tensor:
    """Sensitivity-specificity loss per class (see :class:`SensitivitySpecificityLoss`)."""
    if not 0.0 <= r <= 1.0:
        raise ValueError(f"sensitivity_specificity: r must be in [0, 1], got {r}")
    opts = _parse("sensitivity_specificity", options)
    prep = prepare("sensitivity_specificity", logits, target, opts.mode, opts.ignore_index, probabilities=False)
    x, t, kind, mask = _flatten(prep, opts.mode)
    if kind == "index":  # squared errors of the target class by scatter-add
        c = x.shape[1]
        probs = torch.softmax(x, 1) if opts.from_logits else x
        count = torch.ones_like(t, dtype=x.dtype) if mask is None else mask
        p_true = probs.gather(1, t.unsqueeze(1)).squeeze(1) * count
        sens_num = _class_sum(t, (count - p_true).square(), c)  # sum over fg pixels of (1 - p)^2
        spec_num = (probs.square() * count.unsqueeze(1)).sum(-1) - _class_sum(t, p_true.square(), c)
        pos = _class_sum(t, count, c)
        total = count.sum(-1, keepdim=True).expand_as(pos)
    else:
        probs = torch.sigmoid(x) if opts.from_logits else x
        probs = probs if mask is None else probs * mask
        sq = (t - probs).square()
        sens_num = (sq * t).sum(-1)
        spec_num = sq.sum(-1) - sens_num  # ignored pixels have p = g = 0, so sq = 0 there
        pos = t.sum(-1)
        total = mask.sum(-1) if mask is not None else torch.full_like(pos, float(t.shape[-1]))
    if not opts.per_image:
        sens_num, spec_num, pos, total = (v.sum(0) for v in (sens_num, spec_num, pos, total))
    loss = r * sens_num / (pos + opts.smooth).clamp_min(opts.eps)
    loss = loss + (1.0 - r) * spec_num / (total - pos + opts.smooth).clamp_min(opts.eps)
    return reduce_classes(loss, opts.reduction, None, *_class_tensors(opts, loss))


def _lovasz_rows(errors: Tensor, fg: Tensor, valid: Tensor | None) -> Tensor:
    """Lovasz extension of the Jaccard loss for each row of ``errors`` (R, P), all rows in one sort.

    ``fg`` (R, P) is the binary ground truth; invalid (ignored) entries are sorted last with an
    error of -inf and contribute nothing (the Lovasz gradient of a prefix does not depend on
    what comes after it). Returns (R,) = sum_k err_(k) * (J_k - J_{k-1}), J_k = Jaccard loss of the
    k largest errors (Berman et al., Alg. 1).
    """
    key = errors if valid is None else errors.masked_fill(~valid, float("-inf"))
    err_sorted, perm = torch.sort(key, dim=-1, descending=True)
    fg_sorted = fg.gather(-1, perm)
    if valid is not None:
        err_sorted = torch.where(torch.isfinite(err_sorted), err_sorted, torch.zeros_like(err_sorted))
    gts = fg_sorted.sum(-1, keepdim=True)
    intersection = gts - fg_sorted.cumsum(-1)
    union = gts + (1.0 - fg_sorted).cumsum(-1)  # >= 1 at every position
    jaccard = 1.0 - intersection / union
    grad = torch.cat([jaccard[..., :1], jaccard[..., 1:] - jaccard[..., :-1]], dim=-1)
    return (err_sorted * grad).sum(-1)


@float32_forward
def lovasz_loss(logits: Tensor, target: Tensor, **options: Any) -> Tensor:
    """Lovasz-Softmax (multiclass) or per-channel Lovasz hinge loss (see :class:`LovaszLoss`).

    ``options``: the :data:`LOVASZ` keywords (:data:`REGION` without ``smooth`` and ``eps``).
    """
    opts = _parse("lovasz", options, LOVASZ)
    prep = prepare("lovasz", logits, target, opts.mode, opts.ignore_index, probabilities=False)
    x, fg, kind, mask = _flatten(prep, opts.mode)
    n, c, s = x.shape
    if kind == "index":  # errors |g - p| of the softmax probabilities
        probs = torch.softmax(x, 1) if opts.from_logits else x
        fg = one_hot(fg, c, x.dtype)
        if mask is not None:
            fg, mask = fg * mask.unsqueeze(1), mask.unsqueeze(1).expand(n, c, s)
        errors = (fg - probs).abs()
    else:  # hinge errors 1 - x (2 g - 1) of the logits
        errors = F.relu(1.0 - (x if opts.from_logits else torch.logit(x, eps=1e-6)) * (2.0 * fg - 1.0))
    valid = None if mask is None else mask > 0
    if kind == "index":  # Lovasz-Softmax averages over classes present in the target
        keep = (fg.sum(-1) if opts.per_image else fg.sum((0, 2))) > 0
    elif valid is None:
        keep = torch.ones((n, c) if opts.per_image else (c,), dtype=torch.bool, device=x.device)
    else:  # a hinge row with no valid pixel does not count
        keep = valid.any(-1) if opts.per_image else valid.any(-1).any(0)
    if opts.per_image:  # one row per (image, class): (N*C, S)
        rows = [None if t is None else t.reshape(n * c, s) for t in (errors, fg, valid)]
    else:  # one row per class over the whole batch: (C, N*S)
        rows = [None if t is None else t.transpose(0, 1).reshape(c, n * s) for t in (errors, fg, valid)]
    loss = _lovasz_rows(*rows).reshape(keep.shape)  # every row is sorted: no data-dependent shapes
    classes, class_weights = _class_tensors(opts, loss)
    weight = keep.to(loss.dtype) if class_weights is None else keep.to(loss.dtype) * class_weights
    if classes is not None:
        loss, weight = loss.index_select(-1, classes), weight.index_select(-1, classes)
    if opts.reduction == "none":
        return loss * weight
    if opts.reduction == "sum":
        return (loss * weight).sum()
    # mean over counted classes per image, then over images (Berman / smp per_image)
    per_row = (loss * weight).sum(-1) / weight.sum(-1).clamp_min(torch.finfo(loss.dtype).eps)
    return per_row.mean() if per_row.dim() else per_row


# --------------------------------------------------------------------------- registered modules


class _RegionLoss(OptionModule):
    """Common base of the region modules (not registered): the :data:`REGION` options."""

    name = "region loss"
    OPTIONS = REGION

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        _check_classes(self.name, self.mode, self.classes, self.class_weights)


@register("dice", family="region", aliases=("soft_dice",))
class DiceLoss(_RegionLoss):
    """Soft Dice loss (Milletari et al. 2016): 1 - Dice per class, averaged over classes.

    Equals smp ``DiceLoss`` (same smooth/eps) and MONAI ``DiceLoss(smooth_nr=smooth_dr=2*smooth)`` on
    non-empty classes. Hand-written on the shared TP/FP/FN kernel (smp's is ~4x slower than cross_entropy).

    Args:
        log_loss: -log max(D_c, eps) instead of 1 - D_c (smp's log_loss).

    Shape:
        - logits: (N, C, *spatial) multiclass/multilabel; (N, 1, *spatial) or (N, *spatial) binary.
        - target: (N, *spatial) class indices (multiclass) or the shape of logits.
        - output: scalar; per class (C,), or (N, C) with per_image, with reduction="none".

    Formula:
        D_c = (tp_c + s) / max(tp_c + fp_c/2 + fn_c/2 + s, eps)   (smp form; = 2 tp / (2 tp + fp + fn) for s = 0)
        tp_c = sum_i p_ic g_ic,  fp_c = sum_i p_ic (1 - g_ic),  fn_c = sum_i (1 - p_ic) g_ic
        L = mean_c [g_c non-empty] (1 - D_c)        (log_loss: -log max(D_c, eps))

    Reference:
        Milletari, Navab & Ahmadi, "V-Net: Fully Convolutional Neural Networks for Volumetric
        Medical Image Segmentation", 3DV 2016. arXiv:1606.04797

    Example:
        >>> crit = DiceLoss(mode="multiclass")
        >>> logits = torch.tensor([[[[9.0, -9.0]], [[-9.0, 9.0]]]])   # (1, 2, 1, 2)
        >>> round(float(crit(logits, torch.tensor([[[0, 1]]]))), 4)
        0.0
    """

    name = "dice"

    def __init__(self, log_loss: bool = False, **options: Any) -> None:
        super().__init__(**options)
        self.log_loss = bool(log_loss)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return dice_loss(logits, target, log_loss=self.log_loss, **self.options())


@register("jaccard", family="region", aliases=("soft_iou", "soft_jaccard"))
class JaccardLoss(DiceLoss):
    """Soft Jaccard (IoU) loss: 1 - soft IoU per class, averaged over classes.

    Equals smp ``JaccardLoss`` with the same smooth/eps.

    Args:
        log_loss: -log J_c instead of 1 - J_c.

    Shape:
        - logits: (N, C, *spatial) multiclass/multilabel; (N, 1, *spatial) or (N, *spatial) binary.
        - target: (N, *spatial) class indices (multiclass) or the shape of logits.
        - output: scalar; per class (C,), or (N, C) with per_image, with reduction="none".

    Formula:
        J_c = (tp_c + s) / max(tp_c + fp_c + fn_c + s, eps)
        L = mean_c [g_c non-empty] (1 - J_c)        (log_loss: -log max(J_c, eps))

    Reference:
        Rahman & Wang, "Optimizing Intersection-Over-Union in Deep Neural Networks for Image
        Segmentation", ISVC 2016; soft form as in segmentation_models_pytorch JaccardLoss.

    Example:
        >>> crit = JaccardLoss(mode="binary")
        >>> round(float(crit(torch.tensor([[0.0, 0.0]]), torch.tensor([[1.0, 0.0]]))), 4)   # tp=.5 fp=.5 fn=.5
        0.6667
    """

    name = "jaccard"

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return jaccard_loss(logits, target, log_loss=self.log_loss, **self.options())


@register("tversky", family="region")
class TverskyLoss(_RegionLoss):
    """Tversky loss (Salehi et al. 2017): 1 - Tversky index, alpha weighs FP and beta weighs FN.

    alpha/beta follow smp and MONAI (alpha on FP); equals smp ``TverskyLoss`` (gamma=1) and MONAI
    ``TverskyLoss(smooth_nr=smooth_dr=smooth)``.

    Args:
        alpha: weight of false positives (>= 0; 0.3).
        beta: weight of false negatives (>= 0; 0.7, the paper's best setting).

    Shape:
        - logits: (N, C, *spatial) multiclass/multilabel; (N, 1, *spatial) or (N, *spatial) binary.
        - target: (N, *spatial) class indices (multiclass) or the shape of logits.
        - output: scalar; per class (C,), or (N, C) with per_image, with reduction="none".

    Formula:
        TI_c = (tp_c + s) / max(tp_c + alpha fp_c + beta fn_c + s, eps)
        L = mean_c [g_c non-empty] (1 - TI_c)
        alpha = beta = 0.5 is Dice, alpha = beta = 1 is Jaccard; beta > alpha favours recall.

    Reference:
        Salehi, Erdogmus & Gholipour, "Tversky loss function for image segmentation using 3D fully
        convolutional deep networks", MLMI 2017. arXiv:1706.05721

    Example:
        >>> crit = TverskyLoss(mode="binary", alpha=0.3, beta=0.7)
        >>> round(float(crit(torch.tensor([[0.0, 0.0]]), torch.tensor([[1.0, 0.0]]))), 4)   # .5/(.5+.15+.35)
        0.5
    """

    name = "tversky"

    def __init__(self, alpha: float = 0.3, beta: float = 0.7, **options: Any) -> None:
        super().__init__(**options)
        _check_nonnegative(self.name, alpha=alpha, beta=beta)
        self.alpha, self.beta = float(alpha), float(beta)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return tversky_loss(logits, target, alpha=self.alpha, beta=self.beta, **self.options())


@register("focal_tversky", family="region")
class FocalTverskyLoss(TverskyLoss):
    """Focal Tversky loss (Abraham & Khan 2019): (1 - Tversky index) ** gamma per class.

    Per-class exponent, then mean (smp ``TverskyLoss`` raises the class *mean* to gamma instead;
    equal for one class).

    Args:
        alpha: weight of false positives (>= 0; 0.3).
        beta: weight of false negatives (>= 0; 0.7, the paper's alpha on FN).
        gamma: the exponent > 0 (0.75 = 1 / the paper's recommended 4/3).

    Shape:
        - logits: (N, C, *spatial) multiclass/multilabel; (N, 1, *spatial) or (N, *spatial) binary.
        - target: (N, *spatial) class indices (multiclass) or the shape of logits.
        - output: scalar; per class (C,), or (N, C) with per_image, with reduction="none".

    Formula:
        FTL_c = (1 - TI_c) ** gamma,   TI_c = (tp_c + s) / max(tp_c + alpha fp_c + beta fn_c + s, eps)
        L = mean_c [g_c non-empty] FTL_c
        gamma is the exponent itself: the paper writes (1 - TI)^(1/gamma') with gamma' in [1, 3]
        and recommends gamma' = 4/3, i.e. our default gamma = 0.75 (the smp/keras convention).
        gamma < 1 focuses on hard (low-TI) classes late in training; gamma = 1 is the Tversky loss.

    Reference:
        Abraham & Khan, "A Novel Focal Tversky Loss Function with Improved Attention U-Net for
        Lesion Segmentation", ISBI 2019. arXiv:1810.07842

    Example:
        >>> crit = FocalTverskyLoss(mode="binary", alpha=0.3, beta=0.7, gamma=0.5)
        >>> round(float(crit(torch.tensor([[0.0, 0.0]]), torch.tensor([[1.0, 0.0]]))), 4)   # sqrt(1 - .5)
        0.7071
    """

    name = "focal_tversky"

    def __init__(self, alpha: float = 0.3, beta: float = 0.7, gamma: float = 0.75, **options: Any) -> None:
        super().__init__(alpha, beta, **options)
        if gamma <= 0:
            raise ValueError(f"{self.name}: gamma must be > 0, got {gamma}")
        self.gamma = float(gamma)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return focal_tversky_loss(
            logits, target, alpha=self.alpha, beta=self.beta, gamma=self.gamma, **self.options()
        )


@register("log_cosh_dice", family="region")
class LogCoshDiceLoss(_RegionLoss):
    """Log-cosh Dice loss (Jadon 2020): log(cosh(1 - Dice)) per class, averaged.

    Jadon applies log-cosh to the (single, binary) Dice loss; with several classes we apply it per
    class before the mean so ``reduction='none'`` stays per class (identical for binary).

    Shape:
        - logits: (N, C, *spatial) multiclass/multilabel; (N, 1, *spatial) or (N, *spatial) binary.
        - target: (N, *spatial) class indices (multiclass) or the shape of logits.
        - output: scalar; per class (C,), or (N, C) with per_image, with reduction="none".

    Formula:
        L = mean_c [g_c non-empty] log cosh(1 - D_c),   D_c the soft Dice of class c (see dice)
        log cosh x = x + softplus(-2x) - log 2   (overflow-free)

    Reference:
        Jadon, "A survey of loss functions for semantic segmentation", IEEE CIBCB 2020. arXiv:2006.14822

    Example:
        >>> crit = LogCoshDiceLoss(mode="binary")
        >>> round(float(crit(torch.tensor([[0.0, 0.0]]), torch.tensor([[1.0, 0.0]]))), 4)  # log cosh(.5)
        0.1201
    """

    name = "log_cosh_dice"

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return log_cosh_dice_loss(logits, target, **self.options())


@register("sensitivity_specificity", family="region", aliases=("ss_loss",))
class SensitivitySpecificityLoss(_RegionLoss):
    """Sensitivity-specificity loss (Brosch et al. 2015): squared error weighted inside/outside the mask.

    Hand-written (no library has it); sums over valid pixels only.

    Args:
        r: weight of the sensitivity term in [0, 1] (0.05 as the paper).

    Shape:
        - logits: (N, C, *spatial) multiclass/multilabel; (N, 1, *spatial) or (N, *spatial) binary.
        - target: (N, *spatial) class indices (multiclass) or the shape of logits.
        - output: scalar; per class (C,), or (N, C) with per_image, with reduction="none".

    Formula:
        SS_c = r * sum_i (g_ic - p_ic)^2 g_ic / max(sum_i g_ic + s, eps)
             + (1 - r) * sum_i (g_ic - p_ic)^2 (1 - g_ic) / max(sum_i (1 - g_ic) + s, eps)
        L = mean_c SS_c    (an absent class keeps only its specificity term; minimum 0)

    Reference:
        Brosch, Yoo, Tang, Li, Traboulsee & Tam, "Deep Convolutional Encoder Networks for Multiple
        Sclerosis Lesion Segmentation", MICCAI 2015.

    Example:
        >>> crit = SensitivitySpecificityLoss(mode="binary", r=0.5)
        >>> round(float(crit(torch.tensor([[0.0, 0.0]]), torch.tensor([[1.0, 0.0]]))), 4)  # .5*.25 + .5*.25
        0.25
    """

    name = "sensitivity_specificity"

    def __init__(self, r: float = 0.05, **options: Any) -> None:
        super().__init__(**options)
        if not 0.0 <= r <= 1.0:
            raise ValueError(f"{self.name}: r must be in [0, 1], got {r}")
        self.r = float(r)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return sensitivity_specificity_loss(logits, target, r=self.r, **self.options())


@register("lovasz", family="region", aliases=("lovasz_softmax", "lovasz_hinge"))
class LovaszLoss(_RegionLoss):
    """Lovasz loss (Berman et al. 2018): convex surrogate of the Jaccard loss; softmax or hinge form.

    Vectorised: one batched sort over all classes (and images), no Python loop; classes absent from
    the target are sorted too and weighted 0 (no data-dependent shapes, so it compiles). Multiclass
    and binary equal smp ``LovaszLoss``; multilabel is one Lovasz hinge per channel (smp pools all
    channels into one binary problem). mean/sum run over counted entries only.

    Shape:
        - logits: (N, C, *spatial) multiclass/multilabel; (N, 1, *spatial) or (N, *spatial) binary.
        - target: (N, *spatial) class indices (multiclass) or the shape of logits.
        - output: scalar; per class (C,), or (N, C) with per_image, with reduction="none" (absent classes 0).

    Formula:
        m_i(c) = |g_ic - p_ic| (multiclass, Lovasz-Softmax)  or  max(0, 1 - x_ic (2 g_ic - 1)) (hinge)
        loss_c = sum_k m_(k)(c) * (dJ_c)_k,  errors sorted decreasingly,
        (dJ_c)_k = J_c(k) - J_c(k-1),  J_c(k) = 1 - |G_c minus top-k| / |G_c union top-k|
        L = weighted mean of loss_c over classes present in the target (multiclass) or over
        all channels (binary / multilabel, hinge), per image then over images with per_image.

    Reference:
        Berman, Rannen Triki & Blaschko, "The Lovasz-Softmax loss: A tractable surrogate for the
        optimization of the intersection-over-union measure in neural networks", CVPR 2018.
        arXiv:1705.08790

    Example:
        >>> crit = LovaszLoss(mode="binary")
        >>> round(float(crit(torch.tensor([[0.0, 0.0]]), torch.tensor([[1.0, 0.0]]))), 4)   # errors 1, 1
        1.0
    """

    name = "lovasz"
    OPTIONS = LOVASZ

    def __init__(self, **options: Any) -> None:  # its own signature: the LOVASZ options
        super().__init__(**options)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return lovasz_loss(logits, target, **self.options())


@register("generalized_dice", family="region", aliases=("gdl",))
class GeneralizedDiceLoss(_RegionLoss):
    """Generalised Dice loss (Sudre et al. 2017): one Dice over classes weighted by 1/(sum g)^2.

    ``classes`` picks the subset summed over, ``class_weights`` multiply w_c. Equals MONAI
    ``GeneralizedDiceLoss(batch=not per_image, smooth_nr=smooth_dr=smooth)`` (MONAI's default smooth is 1e-5).

    Shape:
        - logits: (N, C, *spatial) multiclass/multilabel; (N, 1, *spatial) or (N, *spatial) binary.
        - target: (N, *spatial) class indices (multiclass) or the shape of logits.
        - output: scalar; (N,) with per_image and reduction="none" (a scalar without per_image).

    Formula:
        w_c = 1 / (sum_i g_ic)^2   (absent classes get the largest present weight, as MONAI)
        L = 1 - (2 sum_c w_c tp_c + s) / max(sum_c w_c (2 tp_c + fp_c + fn_c) + s, eps)
        L = 0 when no class is present.

    Reference:
        Sudre, Li, Vercauteren, Ourselin & Cardoso, "Generalised Dice overlap as a deep learning loss
        function for highly unbalanced segmentations", DLMIA 2017. arXiv:1707.03237

    Example:
        >>> crit = GeneralizedDiceLoss(mode="binary")
        >>> round(float(crit(torch.tensor([[0.0, 0.0]]), torch.tensor([[1.0, 0.0]]))), 4)  # 1 - 1/2
        0.5
    """

    name = "generalized_dice"

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return generalized_dice_loss(logits, target, **self.options())

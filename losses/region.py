"""Region (overlap) losses for segmentation: Dice & co, Tversky family, Lovasz.

Call convention shared by every loss here (and by :mod:`losses.compound`)::

    loss(logits, target)

``mode`` (the constants of ``segmentation_models_pytorch.losses``):

* ``"binary"``     logits ``(N, 1, *spatial)`` or ``(N, *spatial)``, target the same number of
  elements per sample, values in {0, 1} (soft values allowed);
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

All overlap losses share one statistics kernel (:func:`region_stats`: soft TP/FP/FN per
class in one pass over the tensor); they are hand-written and vectorised because the
library versions are 2-4x slower than ``cross_entropy`` on the same tensor (smp Dice
296 ms vs CE 76 ms on 8x21x256x256, 2 CPU cores).
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
    "BINARY_MODE",
    "MULTICLASS_MODE",
    "MULTILABEL_MODE",
    "MODES",
    "RegionStats",
    "prepare",
    "region_stats",
    "tversky_index",
    "reduce_classes",
    "lovasz",
]


# --------------------------------------------------------------------------- shared core


def _shape_error(name: str, mode: str, logits: Tensor, target: Tensor) -> LossInputError:
    expected = {
        BINARY_MODE: "logits (N, 1, *spatial) or (N, *spatial) and target with the same elements per sample",
        MULTICLASS_MODE: "logits (N, C, *spatial) and class-index target (N, *spatial)",
        MULTILABEL_MODE: "logits (N, C, *spatial) and target (N, C, *spatial)",
    }[mode]
    return LossInputError(
        f"{name}(logits, target) mode={mode!r}: expected {expected}; "
        f"got logits {tuple(logits.shape)} and target {tuple(target.shape)}"
    )


def _flatten(
    name: str, mode: str, logits: Tensor, target: Tensor, from_logits: bool
) -> tuple[Tensor, Tensor]:
    """Validate shapes; return probabilities ``(N, C, S)`` and target ``(N, S)`` (multiclass) or ``(N, C, S)``."""
    if mode not in MODES:
        raise ValueError(f"{name}: mode must be one of {MODES}, got {mode!r}")
    if logits.dim() < 2 or target.dim() < 1 or target.shape[0] != logits.shape[0]:
        raise _shape_error(name, mode, logits, target)
    n = logits.shape[0]
    if mode == MULTICLASS_MODE:
        if target.dim() == logits.dim() and target.shape[1] == 1 and logits.shape[1] != 1:
            target = target.squeeze(1)
        if target.shape != logits.shape[:1] + logits.shape[2:] or target.is_floating_point():
            raise _shape_error(name, mode, logits, target)
        probs = torch.softmax(logits, dim=1) if from_logits else logits
        return probs.reshape(n, logits.shape[1], -1), target.reshape(n, -1).long()
    if mode == BINARY_MODE:
        squeezed = logits.shape[:1] + logits.shape[2:]
        if not (logits.shape == target.shape or (logits.shape[1] == 1 and squeezed == target.shape)):
            raise _shape_error(name, mode, logits, target)
        c = 1
    else:
        if logits.shape != target.shape:
            raise _shape_error(name, mode, logits, target)
        c = logits.shape[1]
    probs = torch.sigmoid(logits) if from_logits else logits
    return probs.reshape(n, c, -1), target.reshape(n, c, -1)


def _mask_dense(probs: Tensor, target: Tensor, ignore_index: int | None) -> tuple[Tensor, Tensor, Tensor | None]:
    """Binary/multilabel: zero ``probs`` and ``target`` where ``target == ignore_index``."""
    if ignore_index is None:
        return probs, target.to(probs.dtype), None
    valid = target != ignore_index
    mask = valid.to(probs.dtype)
    return probs * mask, torch.where(valid, target, torch.zeros_like(target)).to(probs.dtype), mask


def prepare(
    logits: Tensor,
    target: Tensor,
    mode: str = MULTICLASS_MODE,
    from_logits: bool = True,
    ignore_index: int | None = None,
    name: str = "region loss",
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Flatten to ``(N, C, S)``: probabilities, dense float one-hot/target and validity mask.

    Returns ``(probs, onehot, mask)``; ``mask`` is ``None`` without ``ignore_index``, else
    ``(N, 1, S)`` (multiclass) or ``(N, C, S)`` (binary/multilabel). ``probs`` and
    ``onehot`` are already zero at ignored pixels. (The overlap losses use the cheaper
    index path of :func:`region_stats`; this dense form serves Lovasz and sensitivity-specificity.)
    """
    probs, target = _flatten(name, mode, logits, target, from_logits)
    if mode != MULTICLASS_MODE:
        return _mask_dense(probs, target, ignore_index)
    onehot, valid = one_hot(target, probs.shape[1], ignore_index)
    if ignore_index is None:
        return probs, onehot.to(probs.dtype), None
    return probs * valid, onehot.to(probs.dtype), valid.to(probs.dtype)


class RegionStats(NamedTuple):
    """Soft confusion counts, each ``(C,)`` (per batch) or ``(N, C)`` (per image)."""

    tp: Tensor
    fp: Tensor
    fn: Tensor

    @property
    def support(self) -> Tensor:
        """Target mass per class, ``tp + fn`` (0 for an absent class)."""
        return self.tp + self.fn


def _index_gather(name: str, probs: Tensor, target: Tensor, ignore_index: int | None) -> tuple[Tensor, Tensor, Tensor]:
    """Multiclass: safe class index ``(N, S)``, probability of the target class ``(N, S)`` and pixel weight.

    The weight is 1 for valid pixels and 0 for ``ignore_index`` ones; ``p_true`` is already weighted.
    """
    c = probs.shape[1]
    valid = None if ignore_index is None else target != ignore_index
    idx = target if valid is None else target.masked_fill(~valid, 0)
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= c):
        raise LossInputError(
            f"{name}: target holds class indices outside [0, {c - 1}] (min {int(idx.min())}, max {int(idx.max())}); "
            "set ignore_index for void labels"
        )
    p_true = probs.gather(1, idx.unsqueeze(1)).squeeze(1)
    if valid is None:
        return idx, p_true, torch.ones_like(p_true)
    count = valid.to(probs.dtype)
    return idx, p_true * count, count


def _class_sum(idx: Tensor, values: Tensor, num_classes: int) -> Tensor:
    """``out[n, c] = sum_{i: idx[n, i] = c} values[n, i]`` (scatter-add, differentiable)."""
    return values.new_zeros(idx.shape[0], num_classes).scatter_add(1, idx, values)


def _pixel_sum(values: Tensor, count: Tensor, ignore_index: int | None) -> Tensor:
    """``sum_i values[n, c, i] * count[n, i]`` in one pass (a batched mat-vec when pixels are ignored)."""
    return values.sum(-1) if ignore_index is None else torch.bmm(values, count.unsqueeze(-1)).squeeze(-1)


def _index_sums(name: str, probs: Tensor, target: Tensor, ignore_index: int | None) -> tuple[Tensor, Tensor, Tensor]:
    """Multiclass (N, C) sums of p*g, p and g from class indices without a dense one-hot.

    ``tp`` gathers the probability of the target class at each pixel and scatter-adds it into
    its class (O(N*S) instead of O(N*C*S) for the product with a one-hot); ignored pixels get
    weight 0. This is the hot path of every overlap loss in multiclass mode.
    """
    c = probs.shape[1]
    idx, p_true, count = _index_gather(name, probs, target, ignore_index)
    return _class_sum(idx, p_true, c), _pixel_sum(probs, count, ignore_index), _class_sum(idx, count, c)


def region_stats(
    logits: Tensor,
    target: Tensor,
    mode: str = MULTICLASS_MODE,
    from_logits: bool = True,
    ignore_index: int | None = None,
    per_image: bool = False,
    name: str = "region loss",
) -> RegionStats:
    """Soft TP/FP/FN per class: the one statistics kernel of every overlap loss.

    ``tp_c = sum_i p_ic g_ic``, ``fp_c = sum_i p_ic - tp_c``, ``fn_c = sum_i g_ic - tp_c`` over
    valid pixels ``i`` of the batch (``(C,)``) or of each image (``(N, C)`` when ``per_image``).
    One pass over the (N, C, S) probabilities; sums run over the contiguous pixel axis first.
    """
    probs, target = _flatten(name, mode, logits, target, from_logits)
    if mode == MULTICLASS_MODE:
        tp, sum_p, sum_g = _index_sums(name, probs, target, ignore_index)
    else:
        probs, target, _ = _mask_dense(probs, target, ignore_index)
        tp, sum_p, sum_g = (probs * target).sum(-1), probs.sum(-1), target.sum(-1)
    if not per_image:
        tp, sum_p, sum_g = tp.sum(0), sum_p.sum(0), sum_g.sum(0)
    return RegionStats(tp, sum_p - tp, sum_g - tp)


def tversky_index(stats: RegionStats, alpha: float, beta: float, smooth: float = 0.0, eps: float = 1e-7) -> Tensor:
    """``(tp + smooth) / max(tp + alpha*fp + beta*fn + smooth, eps)``; alpha=beta=0.5 is Dice, 1 is IoU."""
    tp, fp, fn = stats
    return (tp + smooth) / (tp + alpha * fp + beta * fn + smooth).clamp_min(eps)


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


class _RegionLoss(nn.Module):
    """Common constructor/validation of the region losses (not registered)."""

    name = "region loss"

    def __init__(
        self,
        mode: str = MULTICLASS_MODE,
        from_logits: bool = True,
        ignore_index: int | None = None,
        smooth: float = 0.0,
        eps: float = 1e-7,
        classes: Sequence[int] | None = None,
        class_weights: Sequence[float] | None = None,
        per_image: bool = False,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"{self.name}: mode must be one of {MODES}, got {mode!r}")
        if mode == BINARY_MODE and (classes is not None or class_weights is not None):
            raise ValueError(f"{self.name}: classes / class_weights need mode 'multiclass' or 'multilabel'")
        if smooth < 0 or eps <= 0:
            raise ValueError(f"{self.name}: need smooth >= 0 and eps > 0, got smooth={smooth}, eps={eps}")
        self.mode = mode
        self.from_logits = from_logits
        self.ignore_index = ignore_index
        self.smooth = float(smooth)
        self.eps = float(eps)
        self.per_image = per_image
        self.reduction = check_reduction(reduction)
        self.classes: Tensor | None
        self.class_weights: Tensor | None
        self.register_buffer(
            "classes", None if classes is None else torch.as_tensor(list(classes), dtype=torch.long), persistent=False
        )
        self.register_buffer(
            "class_weights",
            None if class_weights is None else torch.as_tensor(list(class_weights), dtype=torch.float32),
            persistent=False,
        )

    def stats(self, logits: Tensor, target: Tensor) -> RegionStats:
        return region_stats(logits, target, self.mode, self.from_logits, self.ignore_index, self.per_image, self.name)

    def finish(self, loss: Tensor, stats: RegionStats, mask_absent: bool = True) -> Tensor:
        present = stats.support > 0 if mask_absent else None
        weights = self.class_weights.to(loss.dtype) if self.class_weights is not None else None
        return reduce_classes(loss, self.reduction, present, self.classes, weights)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, per_image={self.per_image}, reduction={self.reduction!r}"


# --------------------------------------------------------------------------- Dice family


@register("dice", family="region", aliases=("soft_dice",))
class DiceLoss(_RegionLoss):
    """Soft Dice loss (Milletari et al. 2016): 1 - Dice per class, averaged over classes.

    Formula:
        D_c = (tp_c + s) / max(tp_c + fp_c/2 + fn_c/2 + s, eps)   (smp form; = 2 tp / (2 tp + fp + fn) for s = 0)
        tp_c = sum_i p_ic g_ic,  fp_c = sum_i p_ic (1 - g_ic),  fn_c = sum_i (1 - p_ic) g_ic
        L = mean_c [g_c non-empty] (1 - D_c)        (log_loss: -log max(D_c, eps))

    Reference:
        Milletari, Navab & Ahmadi, "V-Net: Fully Convolutional Neural Networks for Volumetric
        Medical Image Segmentation", 3DV 2016. arXiv:1606.04797

    Call:
        (logits (N,C,*spatial), target (N,*spatial) indices | (N,C,*spatial) multilabel | binary (N,[1,]*spatial));
        mode, from_logits, ignore_index, smooth, eps, classes, class_weights, per_image, log_loss.
        Equals smp DiceLoss (same smooth/eps) and MONAI DiceLoss(smooth_nr=smooth_dr=2*smooth) on non-empty classes.
        Hand-written on the shared TP/FP/FN kernel (smp's is ~4x slower than cross_entropy).

    Example:
        >>> crit = DiceLoss(mode="multiclass")
        >>> logits = torch.tensor([[[[9.0, -9.0]], [[-9.0, 9.0]]]])   # (1, 2, 1, 2)
        >>> round(float(crit(logits, torch.tensor([[[0, 1]]]))), 4)
        0.0
    """

    name = "dice"

    def __init__(
        self,
        mode: str = MULTICLASS_MODE,
        from_logits: bool = True,
        ignore_index: int | None = None,
        smooth: float = 0.0,
        eps: float = 1e-7,
        classes: Sequence[int] | None = None,
        class_weights: Sequence[float] | None = None,
        per_image: bool = False,
        log_loss: bool = False,
        reduction: str = "mean",
    ) -> None:
        super().__init__(mode, from_logits, ignore_index, smooth, eps, classes, class_weights, per_image, reduction)
        self.log_loss = log_loss

    alpha = beta = 0.5

    @float32_forward
    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        stats = self.stats(logits, target)
        score = tversky_index(stats, self.alpha, self.beta, self.smooth, self.eps)
        loss = -torch.log(score.clamp_min(self.eps)) if self.log_loss else 1.0 - score
        return self.finish(loss, stats)


@register("jaccard", family="region", aliases=("soft_iou", "soft_jaccard"))
class JaccardLoss(DiceLoss):
    """Soft Jaccard (IoU) loss: 1 - soft IoU per class, averaged over classes.

    Formula:
        J_c = (tp_c + s) / max(tp_c + fp_c + fn_c + s, eps)
        L = mean_c [g_c non-empty] (1 - J_c)        (log_loss: -log max(J_c, eps))

    Reference:
        Rahman & Wang, "Optimizing Intersection-Over-Union in Deep Neural Networks for Image
        Segmentation", ISVC 2016; soft form as in segmentation_models_pytorch JaccardLoss.

    Call:
        (logits, target) as dice; mode, from_logits, ignore_index, smooth, eps, classes,
        class_weights, per_image, log_loss. Equals smp JaccardLoss with the same smooth/eps.

    Example:
        >>> crit = JaccardLoss(mode="binary")
        >>> round(float(crit(torch.tensor([[0.0, 0.0]]), torch.tensor([[1.0, 0.0]]))), 4)   # tp=.5 fp=.5 fn=.5
        0.6667
    """

    name = "jaccard"
    alpha = beta = 1.0


@register("tversky", family="region")
class TverskyLoss(_RegionLoss):
    """Tversky loss (Salehi et al. 2017): 1 - Tversky index, alpha weighs FP and beta weighs FN.

    Formula:
        TI_c = (tp_c + s) / max(tp_c + alpha fp_c + beta fn_c + s, eps)
        L = mean_c [g_c non-empty] (1 - TI_c)
        alpha = beta = 0.5 is Dice, alpha = beta = 1 is Jaccard; beta > alpha favours recall.

    Reference:
        Salehi, Erdogmus & Gholipour, "Tversky loss function for image segmentation using 3D fully
        convolutional deep networks", MLMI 2017. arXiv:1706.05721

    Call:
        (logits, target) as dice; alpha (FP weight, default 0.3), beta (FN weight, 0.7, the paper's
        best setting), mode, from_logits, ignore_index, smooth, eps, classes, class_weights, per_image.
        alpha/beta follow smp and MONAI (alpha on FP); equals smp TverskyLoss (gamma=1) and
        MONAI TverskyLoss(smooth_nr=smooth_dr=smooth).

    Example:
        >>> crit = TverskyLoss(mode="binary", alpha=0.3, beta=0.7)
        >>> round(float(crit(torch.tensor([[0.0, 0.0]]), torch.tensor([[1.0, 0.0]]))), 4)   # .5/(.5+.15+.35)
        0.5
    """

    name = "tversky"

    def __init__(
        self,
        alpha: float = 0.3,
        beta: float = 0.7,
        mode: str = MULTICLASS_MODE,
        from_logits: bool = True,
        ignore_index: int | None = None,
        smooth: float = 0.0,
        eps: float = 1e-7,
        classes: Sequence[int] | None = None,
        class_weights: Sequence[float] | None = None,
        per_image: bool = False,
        reduction: str = "mean",
    ) -> None:
        super().__init__(mode, from_logits, ignore_index, smooth, eps, classes, class_weights, per_image, reduction)
        if alpha < 0 or beta < 0:
            raise ValueError(f"{self.name}: alpha and beta must be >= 0, got {alpha}, {beta}")
        self.alpha = float(alpha)
        self.beta = float(beta)

    @float32_forward
    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        stats = self.stats(logits, target)
        return self.finish(1.0 - tversky_index(stats, self.alpha, self.beta, self.smooth, self.eps), stats)


def focal_power(base: Tensor, gamma: float, eps: float = 1e-7) -> Tensor:
    """``base ** gamma`` for ``base >= 0``, safe at ``base = 0`` (value 0, finite gradient) when ``gamma < 1``.

    For ``gamma < 1`` the slope is infinite at 0, so bases below ``floor = eps ** (1 / gamma)``
    (where ``base ** gamma < eps``) map to 0 with zero gradient; ``gamma = 0`` gives 1.
    """
    if gamma == 1.0:
        return base
    if gamma == 0.0:
        return torch.ones_like(base)
    if gamma > 1.0:
        return base.clamp_min(0.0).pow(gamma)
    floor = max(eps ** (1.0 / gamma), torch.finfo(base.dtype).tiny * 1e4)
    return torch.where(base > floor, base.clamp_min(floor).pow(gamma), torch.zeros_like(base))


@register("focal_tversky", family="region")
class FocalTverskyLoss(TverskyLoss):
    """Focal Tversky loss (Abraham & Khan 2019): (1 - Tversky index) ** gamma per class.

    Formula:
        FTL_c = (1 - TI_c) ** gamma,   TI_c = (tp_c + s) / max(tp_c + alpha fp_c + beta fn_c + s, eps)
        L = mean_c [g_c non-empty] FTL_c
        gamma is the exponent itself: the paper writes (1 - TI)^(1/gamma') with gamma' in [1, 3]
        and recommends gamma' = 4/3, i.e. our default gamma = 0.75 (the smp/keras convention).
        gamma < 1 focuses on hard (low-TI) classes late in training; gamma = 1 is the Tversky loss.

    Reference:
        Abraham & Khan, "A Novel Focal Tversky Loss Function with Improved Attention U-Net for
        Lesion Segmentation", ISBI 2019. arXiv:1810.07842

    Call:
        (logits, target) as dice; alpha (FP weight, 0.3), beta (FN weight, 0.7 = the paper's
        alpha on FN), gamma (exponent, 0.75), and the dice parameters. Per-class exponent, then
        mean (smp TverskyLoss raises the class *mean* to gamma instead; equal for one class).

    Example:
        >>> crit = FocalTverskyLoss(mode="binary", alpha=0.3, beta=0.7, gamma=0.5)
        >>> round(float(crit(torch.tensor([[0.0, 0.0]]), torch.tensor([[1.0, 0.0]]))), 4)   # sqrt(1 - .5)
        0.7071
    """

    name = "focal_tversky"

    def __init__(
        self,
        alpha: float = 0.3,
        beta: float = 0.7,
        gamma: float = 0.75,
        mode: str = MULTICLASS_MODE,
        from_logits: bool = True,
        ignore_index: int | None = None,
        smooth: float = 0.0,
        eps: float = 1e-7,
        classes: Sequence[int] | None = None,
        class_weights: Sequence[float] | None = None,
        per_image: bool = False,
        reduction: str = "mean",
    ) -> None:
        super().__init__(
            alpha, beta, mode, from_logits, ignore_index, smooth, eps, classes, class_weights, per_image, reduction
        )
        if gamma <= 0:
            raise ValueError(f"{self.name}: gamma must be > 0, got {gamma}")
        self.gamma = float(gamma)

    @float32_forward
    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        stats = self.stats(logits, target)
        base = (1.0 - tversky_index(stats, self.alpha, self.beta, self.smooth, self.eps)).clamp_min(0.0)
        return self.finish(focal_power(base, self.gamma, self.eps), stats)


@register("log_cosh_dice", family="region")
class LogCoshDiceLoss(DiceLoss):
    """Log-cosh Dice loss (Jadon 2020): log(cosh(1 - Dice)) per class, averaged.

    Formula:
        L = mean_c [g_c non-empty] log cosh(1 - D_c),   D_c the soft Dice of class c (see dice)
        log cosh x = x + softplus(-2x) - log 2   (overflow-free)

    Reference:
        Jadon, "A survey of loss functions for semantic segmentation", IEEE CIBCB 2020. arXiv:2006.14822

    Call:
        (logits, target) and parameters as dice (no log_loss). Jadon applies log-cosh to the
        (single, binary) Dice loss; with several classes we apply it per class before the mean
        so ``reduction='none'`` stays per class (identical for binary).

    Example:
        >>> crit = LogCoshDiceLoss(mode="binary")
        >>> round(float(crit(torch.tensor([[0.0, 0.0]]), torch.tensor([[1.0, 0.0]]))), 4)  # log cosh(.5)
        0.1201
    """

    name = "log_cosh_dice"

    def __init__(
        self,
        mode: str = MULTICLASS_MODE,
        from_logits: bool = True,
        ignore_index: int | None = None,
        smooth: float = 0.0,
        eps: float = 1e-7,
        classes: Sequence[int] | None = None,
        class_weights: Sequence[float] | None = None,
        per_image: bool = False,
        reduction: str = "mean",
    ) -> None:
        super().__init__(
            mode, from_logits, ignore_index, smooth, eps, classes, class_weights, per_image, False, reduction
        )

    @float32_forward
    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        stats = self.stats(logits, target)
        x = 1.0 - tversky_index(stats, 0.5, 0.5, self.smooth, self.eps)
        return self.finish(x + F.softplus(-2.0 * x) - math.log(2.0), stats)


@register("generalized_dice", family="region", aliases=("gdl",))
class GeneralizedDiceLoss(_RegionLoss):
    """Generalised Dice loss (Sudre et al. 2017): one Dice over classes weighted by 1/(sum g)^2.

    Formula:
        w_c = 1 / (sum_i g_ic)^2   (absent classes get the largest present weight, as MONAI)
        L = 1 - (2 sum_c w_c tp_c + s) / max(sum_c w_c (2 tp_c + fp_c + fn_c) + s, eps)
        L = 0 when no class is present.

    Reference:
        Sudre, Li, Vercauteren, Ourselin & Cardoso, "Generalised Dice overlap as a deep learning loss
        function for highly unbalanced segmentations", DLMIA 2017. arXiv:1707.03237

    Call:
        (logits, target) as dice; mode, from_logits, ignore_index, smooth, eps, classes
        (subset summed over), class_weights (multiply w_c), per_image. reduction none returns a
        scalar (per batch) or (N,) (per_image). Equals MONAI GeneralizedDiceLoss(batch=not per_image,
        smooth_nr=smooth_dr=smooth) (MONAI's default smooth is 1e-5).

    Example:
        >>> crit = GeneralizedDiceLoss(mode="binary")
        >>> round(float(crit(torch.tensor([[0.0, 0.0]]), torch.tensor([[1.0, 0.0]]))), 4)  # 1 - 1/2
        0.5
    """

    name = "generalized_dice"

    @float32_forward
    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        tp, fp, fn = self.stats(logits, target)
        if self.classes is not None:
            tp, fp, fn = (t.index_select(-1, self.classes) for t in (tp, fp, fn))
        support = (tp + fn).detach()
        present = support > 0
        w = 1.0 / support.clamp_min(self.eps).square()
        w = torch.where(present, w, torch.zeros_like(w))
        w = torch.where(present, w, w.amax(-1, keepdim=True))
        if self.class_weights is not None:
            cw = self.class_weights.to(w.dtype)
            w = w * (cw.index_select(0, self.classes) if self.classes is not None else cw)
        numer = 2.0 * (w * tp).sum(-1) + self.smooth
        denom = (w * (2.0 * tp + fp + fn)).sum(-1) + self.smooth
        loss = (1.0 - numer / denom.clamp_min(self.eps)) * present.any(-1).to(tp.dtype)
        return reduce(loss, self.reduction)


@register("sensitivity_specificity", family="region", aliases=("ss_loss",))
class SensitivitySpecificityLoss(_RegionLoss):
    """Sensitivity-specificity loss (Brosch et al. 2015): squared error weighted inside/outside the mask.

    Formula:
        SS_c = r * sum_i (g_ic - p_ic)^2 g_ic / max(sum_i g_ic + s, eps)
             + (1 - r) * sum_i (g_ic - p_ic)^2 (1 - g_ic) / max(sum_i (1 - g_ic) + s, eps)
        L = mean_c SS_c    (an absent class keeps only its specificity term; minimum 0)

    Reference:
        Brosch, Yoo, Tang, Li, Traboulsee & Tam, "Deep Convolutional Encoder Networks for Multiple
        Sclerosis Lesion Segmentation", MICCAI 2015.

    Call:
        (logits, target) as dice; r (sensitivity weight, 0.05 as in the paper), mode, from_logits,
        ignore_index, smooth, eps, classes, class_weights, per_image. Hand-written (no library has it);
        sums over valid pixels only.

    Example:
        >>> crit = SensitivitySpecificityLoss(mode="binary", r=0.5)
        >>> round(float(crit(torch.tensor([[0.0, 0.0]]), torch.tensor([[1.0, 0.0]]))), 4)  # .5*.25 + .5*.25
        0.25
    """

    name = "sensitivity_specificity"

    def __init__(
        self,
        r: float = 0.05,
        mode: str = MULTICLASS_MODE,
        from_logits: bool = True,
        ignore_index: int | None = None,
        smooth: float = 0.0,
        eps: float = 1e-7,
        classes: Sequence[int] | None = None,
        class_weights: Sequence[float] | None = None,
        per_image: bool = False,
        reduction: str = "mean",
    ) -> None:
        super().__init__(mode, from_logits, ignore_index, smooth, eps, classes, class_weights, per_image, reduction)
        if not 0.0 <= r <= 1.0:
            raise ValueError(f"{self.name}: r must be in [0, 1], got {r}")
        self.r = float(r)

    @float32_forward
    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        probs, target = _flatten(self.name, self.mode, logits, target, self.from_logits)
        if self.mode == MULTICLASS_MODE:  # index path: squared errors of the target class by scatter-add
            c = probs.shape[1]
            idx, p_true, count = _index_gather(self.name, probs, target, self.ignore_index)
            sens_num = _class_sum(idx, (count - p_true).square(), c)  # sum over fg pixels of (1 - p)^2
            spec_num = _pixel_sum(probs.square(), count, self.ignore_index) - _class_sum(idx, p_true.square(), c)
            pos = _class_sum(idx, count, c)
            total = count.sum(-1, keepdim=True).expand_as(pos)
        else:
            probs, g, mask = _mask_dense(probs, target, self.ignore_index)
            sq = (g - probs).square()
            sens_num = (sq * g).sum(-1)
            spec_num = sq.sum(-1) - sens_num  # ignored pixels have p = g = 0, so sq = 0 there
            pos = g.sum(-1)
            total = mask.sum(-1) if mask is not None else torch.full_like(pos, float(g.shape[-1]))
        if not self.per_image:
            sens_num, spec_num, pos, total = (t.sum(0) for t in (sens_num, spec_num, pos, total))
        neg = total - pos
        loss = self.r * sens_num / (pos + self.smooth).clamp_min(self.eps)
        loss = loss + (1.0 - self.r) * spec_num / (neg + self.smooth).clamp_min(self.eps)
        weights = self.class_weights.to(loss.dtype) if self.class_weights is not None else None
        return reduce_classes(loss, self.reduction, None, self.classes, weights)


# --------------------------------------------------------------------------- Lovasz


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


def lovasz(
    logits: Tensor,
    target: Tensor,
    mode: str = MULTICLASS_MODE,
    from_logits: bool = True,
    ignore_index: int | None = None,
    per_image: bool = False,
    name: str = "lovasz",
) -> tuple[Tensor, Tensor]:
    """Per-class Lovasz losses ``(C,)`` or ``(N, C)`` and the mask of entries that count.

    multiclass: Lovasz-Softmax with errors |g - p| of softmax probabilities, counting only
    classes present in the target (Berman's ``classes='present'``). binary/multilabel:
    Lovasz hinge on errors 1 - x*(2g-1) of each channel (logits; with ``from_logits=False``
    probabilities are mapped to logits), every entry counts.
    """
    if mode == MULTICLASS_MODE:
        probs, target = _flatten(name, mode, logits, target, from_logits)
        n, c, s = probs.shape
        idx, _, count = _index_gather(name, probs, target, ignore_index)
        fg = (idx.unsqueeze(1) == torch.arange(c, device=idx.device).view(1, c, 1)).to(probs.dtype)
        if ignore_index is not None:
            fg = fg * count.unsqueeze(1)
        errors = (fg - probs).abs()
        valid = None if ignore_index is None else (count > 0).unsqueeze(1).expand(n, c, s)
    else:
        x = logits if from_logits else torch.logit(logits, eps=1e-6)
        _, fg, mask = prepare(x, target, mode, False, ignore_index, name)
        x = x.reshape(fg.shape)
        errors = F.relu(1.0 - x * (2.0 * fg - 1.0))
        n, c, s = errors.shape
        valid = None if mask is None else mask > 0
    counts = fg.sum(-1) if per_image else fg.sum((0, 2))
    if mode == MULTICLASS_MODE:
        keep = counts > 0  # Lovasz-Softmax averages over present classes: absent rows are not even sorted
    elif valid is None:
        keep = torch.ones_like(counts, dtype=torch.bool)
    else:  # a hinge row with no valid pixel does not count
        keep = valid.any(-1) if per_image else valid.any(-1).any(0)
    rows = keep.flatten().nonzero().squeeze(1)
    if per_image:  # one row per (image, class): (K, S)
        tensors = [None if t is None else t.reshape(n * c, s).index_select(0, rows) for t in (errors, fg, valid)]
    else:  # one row per class over the whole batch: (K, N*S)
        tensors = [
            None if t is None else t.index_select(1, rows).transpose(0, 1).reshape(-1, n * s)
            for t in (errors, fg, valid)
        ]
    loss = errors.new_zeros(keep.numel()) + 0.0 * errors.sum()  # stays in the graph when no row counts
    if rows.numel():
        loss = loss.index_copy(0, rows, _lovasz_rows(*tensors))
    loss = loss.reshape(keep.shape)
    return loss, keep


@register("lovasz", family="region", aliases=("lovasz_softmax", "lovasz_hinge"))
class LovaszLoss(_RegionLoss):
    """Lovasz loss (Berman et al. 2018): convex surrogate of the Jaccard loss; softmax or hinge form.

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

    Call:
        (logits, target) as dice; mode, from_logits, ignore_index, classes, class_weights,
        per_image. reduction none returns per-class losses (C,) or (N, C) (absent classes 0);
        mean/sum run over counted entries only. Vectorised: one batched sort over all classes
        (and images), no Python loop. Multiclass and binary equal smp LovaszLoss; multilabel
        is one Lovasz hinge per channel (smp pools all channels into one binary problem).

    Example:
        >>> crit = LovaszLoss(mode="binary")
        >>> round(float(crit(torch.tensor([[0.0, 0.0]]), torch.tensor([[1.0, 0.0]]))), 4)   # errors 1, 1
        1.0
    """

    name = "lovasz"

    def __init__(
        self,
        mode: str = MULTICLASS_MODE,
        from_logits: bool = True,
        ignore_index: int | None = None,
        classes: Sequence[int] | None = None,
        class_weights: Sequence[float] | None = None,
        per_image: bool = False,
        reduction: str = "mean",
    ) -> None:
        super().__init__(mode, from_logits, ignore_index, 0.0, 1e-7, classes, class_weights, per_image, reduction)

    @float32_forward
    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        loss, keep = lovasz(logits, target, self.mode, self.from_logits, self.ignore_index, self.per_image, self.name)
        weight = keep.to(loss.dtype)
        if self.class_weights is not None:
            weight = weight * self.class_weights.to(loss.dtype)
        if self.classes is not None:
            loss, weight = loss.index_select(-1, self.classes), weight.index_select(-1, self.classes)
        if self.reduction == "none":
            return loss * weight
        if self.reduction == "sum":
            return (loss * weight).sum()
        # mean over counted classes per image, then over images (Berman / smp per_image)
        per_row = (loss * weight).sum(-1) / weight.sum(-1).clamp_min(self.eps)
        return per_row.mean() if per_row.dim() else per_row

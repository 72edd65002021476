"""Compound segmentation losses: a pixel (cross-entropy) term plus a region (Dice/Tversky) term.

Call convention and parameters are those of :mod:`losses.region` (the :data:`COMPOUND` options
``mode``, ``from_logits``, ``ignore_index``, ``smooth``, ``eps``, ``per_image``, ``reduction``;
their ``Args:`` lines are added to each module's docstring from there). Both terms come from one
pass of the region family's statistics kernel (:func:`losses.region.dense_stats`): in multiclass
mode one softmax yields the soft TP/FP/FN and the per-pixel log-likelihood terms together (one
fused autograd Function), so a compound loss costs about what its region term does.

Each loss is a functional core (``combo_loss(logits, target, *, alpha, beta, **options)`` ...) and
a thin registered module over it.

Reduction: with ``per_image=True`` both terms are computed per image and ``reduction``
(mean | sum | none) acts on the ``(N,)`` per-image losses; with ``per_image=False`` (default)
the region statistics are pooled over the batch, the loss is one number and every reduction
returns that scalar.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from losses._utils import MULTICLASS_MODE, OptionModule, float32_forward, reduce, safe_pow
from losses.region import REGION, DenseStats, RegionStats, dense_stats, tversky_index
from losses.registry import register

__all__ = ["COMPOUND", "combo_loss", "exp_log_loss", "unified_focal_loss"]

COMPOUND = REGION.without("classes", "class_weights")


class _Pixels(NamedTuple):
    """Per-element terms ``(N, K, S)``: multiclass K = 1 (one element per pixel), sigmoid modes K = channels.

    ``nll`` is -log p(true label) (0 at ignored elements; None when not asked for), ``label`` the
    class index (multiclass) or 0/1 (sigmoid, target > 0.5), ``mask`` the float validity (None
    without ignore_index) and ``count`` the number of valid elements, per image ``(N,)`` or in the batch.
    """

    nll: Tensor | None
    label: Tensor
    mask: Tensor | None
    count: Tensor | float
    num_labels: int


def _terms(
    name: str, logits: Tensor, target: Tensor, opts: Any, *, nll: bool = True, other: bool = False
) -> tuple[RegionStats, _Pixels, DenseStats]:
    """The region statistics and the pixel terms of one :func:`dense_stats` pass."""
    multiclass = opts.mode == MULTICLASS_MODE
    d = dense_stats(
        name, logits, target, opts.mode, opts.from_logits, opts.ignore_index, opts.eps,
        log_likelihood=nll and multiclass, other=other,
    )
    label = (d.target if multiclass else (d.target > 0.5).long()).view(d.target.shape[0], -1, d.target.shape[-1])
    mask = None if d.mask is None else d.mask.view(label.shape)
    loss = None
    if nll and multiclass:
        loss = -d.log_p.unsqueeze(1)
    elif nll:
        x, t = d.inputs, d.target
        if opts.from_logits:
            loss = F.binary_cross_entropy_with_logits(x, t, reduction="none")
        else:
            loss = F.binary_cross_entropy(x.clamp(opts.eps, 1.0 - opts.eps), t, reduction="none")
        loss = loss if mask is None else loss * mask
    if mask is not None:
        count = mask.sum((1, 2)) if opts.per_image else mask.sum()
    else:
        count = float(label[0].numel() if opts.per_image else label.numel())
    pixels = _Pixels(loss, label, mask, count, d.inputs.shape[1] if multiclass else 2)
    return d.pooled(opts.per_image), pixels, d


def _pixel_mean(values: Tensor, pix: _Pixels, per_image: bool) -> Tensor:
    """Mean of (already masked) element values over the valid elements: per image ``(N,)`` or in the batch."""
    total = values.sum(tuple(range(1, values.dim()))) if per_image else values.sum()
    return total / (pix.count.clamp_min(1.0) if isinstance(pix.count, Tensor) else max(pix.count, 1.0))


def _class_mean(loss: Tensor, present: Tensor) -> Tensor:
    """Mean over the class axis with absent classes contributing 0 (region-family semantics)."""
    return (loss * present.to(loss.dtype)).mean(-1)


def _finish(value: Tensor, opts: Any) -> Tensor:
    return reduce(value, opts.reduction) if opts.per_image else value


def _check_unit(name: str, **values: float) -> None:
    if not all(0.0 <= v <= 1.0 for v in values.values()):
        raise ValueError(f"{name}: {', '.join(values)} must be in [0, 1], got {', '.join(map(str, values.values()))}")


# --------------------------------------------------------------------------- functional cores


@float32_forward
def combo_loss(logits: Tensor, target: Tensor, *, alpha: float = 0.5, beta: float = 0.5, **options: Any) -> Tensor:
    """Combo loss ``alpha wCE + (1 - alpha)(1 - DSC)`` (see :class:`ComboLoss`); ``options``: :data:`COMPOUND`."""
    _check_unit("combo", alpha=alpha, beta=beta)
    opts = COMPOUND.parse("combo", options)
    multiclass = opts.mode == MULTICLASS_MODE
    stats, pix, d = _terms("combo", logits, target, opts, nll=multiclass, other=multiclass and beta < 1.0)
    dice = _class_mean(1.0 - tversky_index(stats, 0.5, 0.5, opts.smooth, opts.eps), stats.support > 0)
    if multiclass:  # beta (-ln p_true) + (1 - beta) sum_{c != true} -ln(1 - p_c); both 0 at ignored pixels
        wce = _pixel_mean(pix.nll, pix, opts.per_image) * beta
        if beta < 1.0:
            wce = wce + _pixel_mean(d.other, pix, opts.per_image) * (1.0 - beta)
    else:
        x, t = d.inputs, d.target
        if opts.from_logits:
            pos_nll, neg_nll = F.softplus(-x), F.softplus(x)  # -ln p, -ln(1 - p)
        else:
            pos_nll, neg_nll = -torch.log(x.clamp_min(opts.eps)), -torch.log1p(-x.clamp(0.0, 1.0 - opts.eps))
        wce = beta * t * pos_nll + (1.0 - beta) * (1.0 - t) * neg_nll
        wce = _pixel_mean(wce if pix.mask is None else wce * pix.mask, pix, opts.per_image)
    return _finish(alpha * wce + (1.0 - alpha) * dice, opts)


def _check_gammas(gamma_dice: float, gamma_cross: float) -> None:
    if gamma_dice <= 0 or gamma_cross <= 0:
        raise ValueError("exp_log: gamma_dice and gamma_cross must be > 0")


@float32_forward
def exp_log_loss(
    logits: Tensor, target: Tensor, *, w_dice: float = 0.8, w_cross: float = 0.2, gamma_dice: float = 0.3,
    gamma_cross: float = 0.3, class_weights: Sequence[float] | Tensor | None = None, **options: Any,
) -> Tensor:
    """Exponential logarithmic loss (see :class:`ExpLogLoss`); ``options``: :data:`COMPOUND`."""
    _check_gammas(gamma_dice, gamma_cross)
    opts = COMPOUND.parse("exp_log", options)
    stats, pix, _ = _terms("exp_log", logits, target, opts)
    dice = tversky_index(stats, 0.5, 0.5, opts.smooth, opts.eps)
    l_dice = _class_mean(safe_pow(-torch.log(dice.clamp(opts.eps, 1.0)), gamma_dice, opts.eps), stats.support > 0)
    if class_weights is not None:
        weights = torch.as_tensor(class_weights, device=pix.nll.device).to(pix.nll.dtype)[pix.label]
    else:  # label frequencies per channel k: counts (K, L), from a fixed-size scatter (no host sync)
        k, labels = pix.label.shape[1], pix.num_labels
        flat = pix.label if k == 1 else pix.label + torch.arange(k, device=pix.label.device).view(1, k, 1) * labels
        flat = flat.flatten()
        ones = pix.nll.new_ones(()).expand(flat.shape) if pix.mask is None else pix.mask.flatten()
        counts = pix.nll.new_zeros(k * labels).index_add_(0, flat, ones).view(k, labels)
        freq_w = (counts.sum(-1, keepdim=True) / counts.clamp_min(1.0)).sqrt()
        weights = freq_w.flatten()[flat].view_as(pix.nll)
    cross = weights * safe_pow(pix.nll, gamma_cross, opts.eps)
    l_cross = _pixel_mean(cross if pix.mask is None else cross * pix.mask, pix, opts.per_image)
    return _finish(w_dice * l_dice + w_cross * l_cross, opts)


def _check_unified(variant: str, weight: float, delta: float, gamma: float) -> None:
    if variant not in ("asymmetric", "symmetric"):
        raise ValueError(f"unified_focal: variant must be 'asymmetric' or 'symmetric', got {variant!r}")
    if not (0.0 <= weight <= 1.0 and 0.0 <= delta <= 1.0 and 0.0 <= gamma < 1.0):
        raise ValueError(f"unified_focal: need weight, delta in [0, 1], gamma in [0, 1); got {weight, delta, gamma}")


@float32_forward
def unified_focal_loss(
    logits: Tensor, target: Tensor, *, variant: str = "asymmetric", weight: float = 0.5, delta: float = 0.6,
    gamma: float = 0.5, **options: Any,
) -> Tensor:
    """Unified focal loss (see :class:`UnifiedFocalLoss`); ``options``: :data:`COMPOUND`."""
    _check_unified(variant, weight, delta, gamma)
    opts = COMPOUND.parse("unified_focal", options)
    stats, pix, _ = _terms("unified_focal", logits, target, opts)
    sym = variant == "symmetric"
    # --- modified focal Tversky: foreground (and background) Tversky terms; alpha on FP, beta = delta on FN
    alpha, beta = 1.0 - delta, delta
    if opts.mode == MULTICLASS_MODE:
        base = (1.0 - tversky_index(stats, alpha, beta, opts.smooth, opts.eps)).clamp_min(0.0)
        fg_ft = safe_pow(base[..., 1:], 1.0 - gamma, opts.eps)
        bg_ft = safe_pow(base[..., :1], 1.0 - gamma, opts.eps) if sym else base[..., :1]
        ft = _class_mean(torch.cat([bg_ft, fg_ft], -1), stats.support > 0)
    else:
        if pix.mask is None:  # valid elements per channel
            count = float(pix.label.shape[-1] * (1 if opts.per_image else pix.label.shape[0]))
        else:
            count = pix.mask.sum(-1) if opts.per_image else pix.mask.sum((0, 2))
        tn = count - stats.tp - stats.fp - stats.fn
        bg_stats = RegionStats(tn, stats.fn, stats.fp)  # background = 1 - p against 1 - g
        fg_base = (1.0 - tversky_index(stats, alpha, beta, opts.smooth, opts.eps)).clamp_min(0.0)
        bg_base = (1.0 - tversky_index(bg_stats, alpha, beta, opts.smooth, opts.eps)).clamp_min(0.0)
        fg_ft = safe_pow(fg_base, 1.0 - gamma, opts.eps)
        bg_ft = safe_pow(bg_base, 1.0 - gamma, opts.eps) if sym else bg_base
        present = torch.cat([bg_stats.support > 0, stats.support > 0], -1)
        ft = _class_mean(torch.cat([bg_ft, fg_ft], -1), present)
    # --- modified focal: w_label (1 - p_true)^gamma_label (-ln p_true); ignored elements have nll = 0
    is_fg = pix.label > 0
    one_minus_p = -torch.expm1(-pix.nll)  # 1 - p_true from the cross-entropy (nll >= 0, so >= 0)
    powered = safe_pow(one_minus_p, gamma, opts.eps)
    bg, fg = powered * (1.0 - delta), powered * delta if sym else delta
    focal = _pixel_mean(torch.where(is_fg, fg, bg) * pix.nll, pix, opts.per_image)
    return _finish(weight * focal + (1.0 - weight) * ft, opts)


# --------------------------------------------------------------------------- registered modules


class _CompoundLoss(OptionModule):
    """Common base of the compound modules (not registered): the :data:`COMPOUND` options."""

    name = "compound loss"
    OPTIONS = COMPOUND


@register("combo", family="compound", aliases=("combo_loss",))
class ComboLoss(_CompoundLoss):
    """Combo loss (Taghanaki et al. 2019): alpha * weighted cross-entropy + (1 - alpha) * Dice loss.

    Args:
        alpha: weight of the cross-entropy term in [0, 1].
        beta: weight of the positive (true-label) log term in [0, 1]; > 0.5 penalises false negatives.

    Shape:
        - logits: (N, C, *spatial) multiclass/multilabel; (N, 1, *spatial) or (N, *spatial) binary.
        - target: (N, *spatial) class indices (multiclass) or the shape of logits.
        - output: scalar; (N,) with per_image and reduction="none".

    Formula:
        wCE = -mean_i sum_c [beta g_ic ln p_ic + (1 - beta)(1 - g_ic) ln(1 - p_ic)]
        L   = alpha * wCE + (1 - alpha) * (1 - DSC),   DSC = mean_c D_c (soft Dice of region.dice)
        The paper writes alpha * wCE - (1 - alpha) * DSC (range [-(1-alpha), ...)); we add the
        constant (1 - alpha) so that L >= 0 and a perfect prediction gives 0; gradients are identical.
        beta > 0.5 penalises false negatives more, beta < 0.5 false positives. binary/multilabel: the
        sum runs over the one/C sigmoid channels; multiclass: one-vs-rest over the C softmax channels
        (the beta-term is torch cross_entropy, so beta = 1 is 1 x cross-entropy), ln(1 - p) clamped at eps.

    Reference:
        Taghanaki, Zheng, Zhou, Georgescu, Sharma, Xu, Comaniciu & Hamarneh, "Combo loss: Handling
        input and output imbalance in multi-organ segmentation", CMIG 75, 2019. arXiv:1805.02798

    Example:
        >>> crit = ComboLoss(mode="binary", alpha=0.5, beta=0.5)
        >>> float(crit(torch.tensor([[20.0, -20.0]]), torch.tensor([[1.0, 0.0]]))) < 1e-6
        True
    """

    name = "combo"

    def __init__(self, alpha: float = 0.5, beta: float = 0.5, **options: Any) -> None:
        super().__init__(**options)
        _check_unit(self.name, alpha=alpha, beta=beta)
        self.alpha, self.beta = float(alpha), float(beta)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return combo_loss(logits, target, alpha=self.alpha, beta=self.beta, **self.options())


@register("exp_log", family="compound", aliases=("exponential_logarithmic",))
class ExpLogLoss(_CompoundLoss):
    """Exponential logarithmic loss (Wong et al. 2018): (-ln Dice)^gamma and (-ln p)^gamma terms.

    Args:
        w_dice: weight of the Dice term (0.8 as the paper).
        w_cross: weight of the cross-entropy term (0.2).
        gamma_dice: exponent > 0 of -ln Dice (0.3).
        gamma_cross: exponent > 0 of -ln p (0.3).
        class_weights: fixed w_l instead of batch frequencies: C values (multiclass), [w_0, w_1] otherwise.

    Shape:
        - logits: (N, C, *spatial) multiclass/multilabel; (N, 1, *spatial) or (N, *spatial) binary.
        - target: (N, *spatial) class indices (multiclass) or the shape of logits.
        - output: scalar; (N,) with per_image and reduction="none".

    Formula:
        L_dice  = mean_c [g_c non-empty] (-ln max(D_c, eps)) ** gamma_dice
        L_cross = mean_x w_l(x) (-ln p_l(x)) ** gamma_cross,   w_l = (sum_k f_k / f_l) ** 0.5
        L = w_dice * L_dice + w_cross * L_cross
        D_c the soft Dice (region.dice; the paper's pseudo-count eps_p is our 2*smooth), f_k the
        number of valid elements with label k in the batch (binary/multilabel: labels 0/1 per
        channel), -ln p_l(x) torch's cross-entropy of the true label. Defaults as the paper:
        w_dice = 0.8, w_cross = 0.2, gamma_dice = gamma_cross = 0.3.

    Reference:
        Wong, Moradi, Tang & Syeda-Mahmood, "3D Segmentation with Exponential Logarithmic Loss for
        Highly Unbalanced Object Sizes", MICCAI 2018. arXiv:1809.00076

    Example:
        >>> crit = ExpLogLoss(mode="binary")
        >>> float(crit(torch.tensor([[20.0, -20.0]]), torch.tensor([[1.0, 0.0]]))) < 1e-3
        True
    """

    name = "exp_log"

    def __init__(
        self, w_dice: float = 0.8, w_cross: float = 0.2, gamma_dice: float = 0.3, gamma_cross: float = 0.3,
        class_weights: Sequence[float] | None = None, **options: Any,
    ) -> None:
        super().__init__(**options)
        _check_gammas(gamma_dice, gamma_cross)
        self.w_dice, self.w_cross = float(w_dice), float(w_cross)
        self.gamma_dice, self.gamma_cross = float(gamma_dice), float(gamma_cross)
        self.class_weights: Tensor | None
        weights = None if class_weights is None else torch.as_tensor(list(class_weights), dtype=torch.float32)
        self.register_buffer("class_weights", weights, persistent=False)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return exp_log_loss(
            logits, target, w_dice=self.w_dice, w_cross=self.w_cross, gamma_dice=self.gamma_dice,
            gamma_cross=self.gamma_cross, class_weights=self.class_weights, **self.options(),
        )


@register("unified_focal", family="compound", aliases=("unified_focal_loss",))
class UnifiedFocalLoss(_CompoundLoss):
    """Unified focal loss (Yeung et al. 2022): lambda * modified focal + (1 - lambda) * modified focal Tversky.

    Yeung's code computes mTI per image (per_image=True). -ln p is torch's cross-entropy; the focal
    sum runs over classes per pixel as in Yeung's code (MONAI's AsymmetricFocalLoss averages the two
    binary channels instead, i.e. half our mF).

    Args:
        variant: "asymmetric" (the paper's recommendation) | "symmetric".
        weight: lambda in [0, 1], the weight of the modified focal term.
        delta: class balance in [0, 1]: foreground weight in mF, FN weight in mTI (0.6).
        gamma: focal parameter in [0, 1) (0.5).

    Shape:
        - logits: (N, C, *spatial) multiclass/multilabel; (N, 1, *spatial) or (N, *spatial) binary.
        - target: (N, *spatial) class indices (multiclass) or the shape of logits.
        - output: scalar; (N,) with per_image and reduction="none".

    Formula:
        mF  = mean_x sum_c w_c (1 - p_c)^gamma_c (-ln p_c) g_c       (w_bg = 1 - delta, w_fg = delta)
        mTI_c = (tp_c + s) / max(tp_c + delta fn_c + (1 - delta) fp_c + s, eps)
        mFT = mean_c (1 - mTI_c)^(1 - gamma_c)
        L = lambda * mF + (1 - lambda) * mFT
        symmetric:  gamma_c = gamma for every class (focal suppression and Tversky enhancement everywhere);
        asymmetric: background only is suppressed in mF (foreground gamma 0) and only the foreground is
        enhanced in mFT (background exponent 1). Background = class 0 in multiclass mode; in binary /
        multilabel each channel is a background (1 - p) / foreground (p) pair. Absent classes give 0.

    Reference:
        Yeung, Sala, Schonlieb & Rundo, "Unified Focal loss: Generalising Dice and cross entropy-based
        losses to handle class imbalanced medical image segmentation", CMIG 95, 2022. arXiv:2102.04525

    Example:
        >>> crit = UnifiedFocalLoss(mode="binary")
        >>> float(crit(torch.tensor([[20.0, -20.0]]), torch.tensor([[1.0, 0.0]]))) < 1e-6
        True
    """

    name = "unified_focal"

    def __init__(
        self, variant: str = "asymmetric", weight: float = 0.5, delta: float = 0.6, gamma: float = 0.5,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        _check_unified(variant, weight, delta, gamma)
        self.variant, self.weight, self.delta, self.gamma = variant, float(weight), float(delta), float(gamma)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return unified_focal_loss(
            logits, target, variant=self.variant, weight=self.weight, delta=self.delta, gamma=self.gamma,
            **self.options(),
        )

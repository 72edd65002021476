"""Compound segmentation losses: a pixel (cross-entropy) term plus a region (Dice/Tversky) term.

Call convention and parameters are those of :mod:`losses.region` (``mode``, ``from_logits``,
``ignore_index``, ``smooth``, ``eps``, ``per_image``). The region term comes from the region
family's shared statistics kernel (:func:`losses.region.region_stats`) and the pixel term from
torch's fused ``cross_entropy`` / ``binary_cross_entropy_with_logits``; nothing is re-derived here.

Reduction: with ``per_image=True`` both terms are computed per image and ``reduction``
(mean | sum | none) acts on the ``(N,)`` per-image losses; with ``per_image=False`` (default)
the region statistics are pooled over the batch, the loss is one number and every reduction
returns that scalar.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from losses._utils import check_reduction, float32_forward, reduce
from losses.region import (
    MODES,
    MULTICLASS_MODE,
    RegionStats,
    focal_power,
    region_stats,
    tversky_index,
)
from losses.registry import register

__all__ = ["ComboLoss", "ExpLogLoss", "UnifiedFocalLoss"]


class _PixelNLL(NamedTuple):
    """Per-element negative log-likelihood of the true label, ``(N, K, S)`` each.

    multiclass: K = 1 (one element per pixel), ``label`` the class index; binary/multilabel:
    K = channels, ``label`` in {0, 1}. ``nll`` and ``valid`` are 0 at ignored elements.
    """

    nll: Tensor
    label: Tensor
    valid: Tensor
    num_labels: int


def _pixel_nll(
    logits: Tensor, target: Tensor, mode: str, from_logits: bool, ignore_index: int | None, eps: float
) -> _PixelNLL:
    """-log p(true label) per element with torch's fused losses (shapes validated by region_stats first)."""
    n = logits.shape[0]
    if mode == MULTICLASS_MODE:
        c = logits.shape[1]
        x, t = logits.reshape(n, c, -1), target.reshape(n, -1).long()
        valid = torch.ones_like(t, dtype=torch.bool) if ignore_index is None else t != ignore_index
        t = t.masked_fill(~valid, 0)
        if from_logits:
            nll = F.cross_entropy(x, t, reduction="none")
        else:
            nll = F.nll_loss(torch.log(x.clamp_min(eps)), t, reduction="none")
        v = valid.to(nll.dtype)
        return _PixelNLL((nll * v).unsqueeze(1), t.unsqueeze(1), v.unsqueeze(1), c)
    k = 1 if mode == "binary" else logits.shape[1]
    x, t = logits.reshape(n, k, -1), target.reshape(n, k, -1)
    valid = torch.ones_like(t, dtype=torch.bool) if ignore_index is None else t != ignore_index
    t = torch.where(valid, t, torch.zeros_like(t)).to(x.dtype)
    if from_logits:
        nll = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    else:
        nll = F.binary_cross_entropy(x.clamp(eps, 1.0 - eps), t, reduction="none")
    v = valid.to(nll.dtype)
    return _PixelNLL(nll * v, (t > 0.5).long(), v, 2)


class _CompoundLoss(nn.Module):
    """Shared parameters and reductions of the compound losses (not registered)."""

    name = "compound loss"

    def __init__(
        self,
        mode: str = MULTICLASS_MODE,
        from_logits: bool = True,
        ignore_index: int | None = None,
        smooth: float = 0.0,
        eps: float = 1e-7,
        per_image: bool = False,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"{self.name}: mode must be one of {MODES}, got {mode!r}")
        if smooth < 0 or eps <= 0:
            raise ValueError(f"{self.name}: need smooth >= 0 and eps > 0, got smooth={smooth}, eps={eps}")
        self.mode = mode
        self.from_logits = from_logits
        self.ignore_index = ignore_index
        self.smooth = float(smooth)
        self.eps = float(eps)
        self.per_image = per_image
        self.reduction = check_reduction(reduction)

    def stats(self, logits: Tensor, target: Tensor) -> RegionStats:
        return region_stats(logits, target, self.mode, self.from_logits, self.ignore_index, self.per_image, self.name)

    def nll(self, logits: Tensor, target: Tensor) -> _PixelNLL:
        return _pixel_nll(logits, target, self.mode, self.from_logits, self.ignore_index, self.eps)

    def element_mean(self, values: Tensor, valid: Tensor) -> Tensor:
        """Mean over valid elements: per image ``(N,)`` or over the batch (scalar)."""
        if self.per_image:
            return values.sum((1, 2)) / valid.sum((1, 2)).clamp_min(1.0)
        return values.sum() / valid.sum().clamp_min(1.0)

    @staticmethod
    def class_mean(loss: Tensor, present: Tensor) -> Tensor:
        """Mean over the class axis with absent classes contributing 0 (region-family semantics)."""
        return (loss * present.to(loss.dtype)).mean(-1)

    def finish(self, value: Tensor) -> Tensor:
        return reduce(value, self.reduction) if self.per_image else value

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, per_image={self.per_image}, reduction={self.reduction!r}"


@register("combo", family="compound", aliases=("combo_loss",))
class ComboLoss(_CompoundLoss):
    """Combo loss (Taghanaki et al. 2019): alpha * weighted cross-entropy + (1 - alpha) * Dice loss.

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

    Call:
        (logits, target) as region losses; alpha (0.5), beta (0.5), mode, from_logits, ignore_index,
        smooth, eps, per_image, reduction (acts on per-image losses when per_image, else scalar).

    Example:
        >>> crit = ComboLoss(mode="binary", alpha=0.5, beta=0.5)
        >>> float(crit(torch.tensor([[20.0, -20.0]]), torch.tensor([[1.0, 0.0]]))) < 1e-6
        True
    """

    name = "combo"

    def __init__(
        self,
        alpha: float = 0.5,
        beta: float = 0.5,
        mode: str = MULTICLASS_MODE,
        from_logits: bool = True,
        ignore_index: int | None = None,
        smooth: float = 0.0,
        eps: float = 1e-7,
        per_image: bool = False,
        reduction: str = "mean",
    ) -> None:
        super().__init__(mode, from_logits, ignore_index, smooth, eps, per_image, reduction)
        if not (0.0 <= alpha <= 1.0 and 0.0 <= beta <= 1.0):
            raise ValueError(f"{self.name}: alpha and beta must be in [0, 1], got {alpha}, {beta}")
        self.alpha = float(alpha)
        self.beta = float(beta)

    @float32_forward
    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        stats = self.stats(logits, target)  # validates shapes
        dice = self.class_mean(1.0 - tversky_index(stats, 0.5, 0.5, self.smooth, self.eps), stats.support > 0)
        pix = self.nll(logits, target)
        n = logits.shape[0]
        if self.mode == MULTICLASS_MODE:
            # beta * (-ln p_true) + (1 - beta) * sum_{c != true} -ln(1 - p_c)
            c = logits.shape[1]
            probs = logits.reshape(n, c, -1)
            probs = torch.softmax(probs, 1) if self.from_logits else probs
            neg = -torch.log1p(-probs.clamp(0.0, 1.0 - self.eps))
            neg_other = neg.sum(1, keepdim=True) - neg.gather(1, pix.label)
            wce = self.beta * pix.nll + (1.0 - self.beta) * neg_other * pix.valid
        else:
            x = logits.reshape(pix.nll.shape)
            t = target.reshape(pix.nll.shape)
            t = torch.where(pix.valid > 0, t, torch.zeros_like(t)).to(x.dtype)
            if self.from_logits:
                pos_nll, neg_nll = F.softplus(-x), F.softplus(x)  # -ln p, -ln(1 - p)
            else:
                pos_nll, neg_nll = -torch.log(x.clamp_min(self.eps)), -torch.log1p(-x.clamp(0.0, 1.0 - self.eps))
            wce = (self.beta * t * pos_nll + (1.0 - self.beta) * (1.0 - t) * neg_nll) * pix.valid
        wce = self.element_mean(wce, pix.valid)
        return self.finish(self.alpha * wce + (1.0 - self.alpha) * dice)


@register("exp_log", family="compound", aliases=("exponential_logarithmic",))
class ExpLogLoss(_CompoundLoss):
    """Exponential logarithmic loss (Wong et al. 2018): (-ln Dice)^gamma and (-ln p)^gamma terms.

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

    Call:
        (logits, target) as region losses; w_dice, w_cross, gamma_dice, gamma_cross, class_weights
        (fixed w_l instead of batch frequencies: length C for multiclass, 2 = [w_0, w_1] otherwise),
        mode, from_logits, ignore_index, smooth, eps, per_image, reduction.

    Example:
        >>> crit = ExpLogLoss(mode="binary")
        >>> float(crit(torch.tensor([[20.0, -20.0]]), torch.tensor([[1.0, 0.0]]))) < 1e-3
        True
    """

    name = "exp_log"

    def __init__(
        self,
        w_dice: float = 0.8,
        w_cross: float = 0.2,
        gamma_dice: float = 0.3,
        gamma_cross: float = 0.3,
        class_weights: Sequence[float] | None = None,
        mode: str = MULTICLASS_MODE,
        from_logits: bool = True,
        ignore_index: int | None = None,
        smooth: float = 0.0,
        eps: float = 1e-7,
        per_image: bool = False,
        reduction: str = "mean",
    ) -> None:
        super().__init__(mode, from_logits, ignore_index, smooth, eps, per_image, reduction)
        if gamma_dice <= 0 or gamma_cross <= 0:
            raise ValueError(f"{self.name}: gamma_dice and gamma_cross must be > 0")
        self.w_dice, self.w_cross = float(w_dice), float(w_cross)
        self.gamma_dice, self.gamma_cross = float(gamma_dice), float(gamma_cross)
        self.class_weights: Tensor | None
        self.register_buffer(
            "class_weights",
            None if class_weights is None else torch.as_tensor(list(class_weights), dtype=torch.float32),
            persistent=False,
        )

    @float32_forward
    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        stats = self.stats(logits, target)
        dice = tversky_index(stats, 0.5, 0.5, self.smooth, self.eps)
        l_dice = self.class_mean(focal_power(-torch.log(dice.clamp(self.eps, 1.0)), self.gamma_dice), stats.support > 0)
        pix = self.nll(logits, target)
        if self.class_weights is not None:
            weights = self.class_weights.to(pix.nll.dtype)[pix.label]
        else:  # label frequencies per channel k: counts (K, L)
            k = pix.label.shape[1]
            flat = (pix.label + torch.arange(k, device=pix.label.device).view(1, k, 1) * pix.num_labels).flatten()
            counts = torch.bincount(flat, weights=pix.valid.flatten(), minlength=k * pix.num_labels)
            counts = counts.view(k, pix.num_labels)
            freq_w = (counts.sum(-1, keepdim=True) / counts.clamp_min(1.0)).sqrt()
            weights = freq_w.flatten()[flat].view_as(pix.nll)
        l_cross = self.element_mean(weights * focal_power(pix.nll, self.gamma_cross) * pix.valid, pix.valid)
        return self.finish(self.w_dice * l_dice + self.w_cross * l_cross)


@register("unified_focal", family="compound", aliases=("unified_focal_loss",))
class UnifiedFocalLoss(_CompoundLoss):
    """Unified focal loss (Yeung et al. 2022): lambda * modified focal + (1 - lambda) * modified focal Tversky.

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

    Call:
        (logits, target) as region losses; variant ("asymmetric" | "symmetric"), weight (lambda, 0.5),
        delta (0.6), gamma (0.5) as the paper, mode, from_logits, ignore_index, smooth, eps, per_image
        (Yeung's code computes mTI per image), reduction. -ln p is torch's cross-entropy; the focal sum
        runs over classes per pixel as in Yeung's code (MONAI's AsymmetricFocalLoss averages the two
        binary channels instead, i.e. half our mF).

    Example:
        >>> crit = UnifiedFocalLoss(mode="binary")
        >>> float(crit(torch.tensor([[20.0, -20.0]]), torch.tensor([[1.0, 0.0]]))) < 1e-6
        True
    """

    name = "unified_focal"

    def __init__(
        self,
        variant: str = "asymmetric",
        weight: float = 0.5,
        delta: float = 0.6,
        gamma: float = 0.5,
        mode: str = MULTICLASS_MODE,
        from_logits: bool = True,
        ignore_index: int | None = None,
        smooth: float = 0.0,
        eps: float = 1e-7,
        per_image: bool = False,
        reduction: str = "mean",
    ) -> None:
        super().__init__(mode, from_logits, ignore_index, smooth, eps, per_image, reduction)
        if variant not in ("asymmetric", "symmetric"):
            raise ValueError(f"{self.name}: variant must be 'asymmetric' or 'symmetric', got {variant!r}")
        if not (0.0 <= weight <= 1.0 and 0.0 <= delta <= 1.0 and 0.0 <= gamma < 1.0):
            raise ValueError(f"{self.name}: need weight, delta in [0, 1], gamma in [0, 1); got {weight, delta, gamma}")
        self.variant = variant
        self.weight = float(weight)
        self.delta = float(delta)
        self.gamma = float(gamma)

    @float32_forward
    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        stats = self.stats(logits, target)
        sym = self.variant == "symmetric"
        fg_gamma = self.gamma if sym else 0.0
        # --- modified focal Tversky: foreground (and background) Tversky terms
        alpha, beta = 1.0 - self.delta, self.delta  # alpha on FP, beta (= delta) on FN
        pix = self.nll(logits, target)
        if self.mode == MULTICLASS_MODE:
            ti = tversky_index(stats, alpha, beta, self.smooth, self.eps)
            base = (1.0 - ti).clamp_min(0.0)
            fg_ft = focal_power(base[..., 1:], 1.0 - self.gamma, self.eps)
            bg_ft = focal_power(base[..., :1], 1.0 - self.gamma, self.eps) if sym else base[..., :1]
            ft = self.class_mean(torch.cat([bg_ft, fg_ft], -1), stats.support > 0)
        else:
            count = pix.valid.sum(-1) if self.per_image else pix.valid.sum((0, 2))
            tn = count - stats.tp - stats.fp - stats.fn
            bg_stats = RegionStats(tn, stats.fn, stats.fp)  # background = 1 - p against 1 - g
            fg_base = (1.0 - tversky_index(stats, alpha, beta, self.smooth, self.eps)).clamp_min(0.0)
            bg_base = (1.0 - tversky_index(bg_stats, alpha, beta, self.smooth, self.eps)).clamp_min(0.0)
            fg_ft = focal_power(fg_base, 1.0 - self.gamma, self.eps)
            bg_ft = focal_power(bg_base, 1.0 - self.gamma, self.eps) if sym else bg_base
            present = torch.cat([bg_stats.support > 0, stats.support > 0], -1)
            ft = self.class_mean(torch.cat([bg_ft, fg_ft], -1), present)
        # --- modified focal: w_label (1 - p_true)^gamma_label (-ln p_true)
        is_fg = pix.label > 0
        w = torch.where(is_fg, self.delta, 1.0 - self.delta)
        one_minus_p = (-torch.expm1(-pix.nll)).clamp_min(0.0)  # 1 - p_true from the cross-entropy
        mod = torch.where(is_fg, focal_power(one_minus_p, fg_gamma, self.eps), focal_power(one_minus_p, self.gamma))
        focal = self.element_mean(w * mod * pix.nll, pix.valid)
        return self.finish(self.weight * focal + (1.0 - self.weight) * ft)

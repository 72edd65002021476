"""Box-overlap losses: ``(pred_boxes (..., 4), target_boxes (..., 4))``; ``gwd`` takes rotated ``(..., 5)``.

Boxes are ``xyxy`` by default; ``box_format="cxcywh"`` or ``"xywh"`` converts with
``torchvision.ops.box_convert``. Every loss is element-wise over the leading dims, then reduced
(``reduction`` mean|sum|none; an optional ``weight`` in ``forward`` gives a weighted mean).

All variants share one private geometry helper, :func:`_geometry` (widths, intersection, union,
IoU, enclosing box, centre offsets), in the style of ``torchvision.ops._utils._loss_inter_union``
but without boolean-mask indexing (a clamp instead), so it is one fused pass, sync-free on GPU.

Degenerate boxes, the same for every variant (tests cover each):

* inverted corners (``x2 < x1`` or ``y2 < y1``): the width/height is clamped to 0 for areas,
  intersection and aspect terms, so the box has zero area; centres, the enclosing box and corner
  distances use the raw corners, so the distance penalties still pull such a box back.
* zero-area boxes: IoU = 0 (``0 / (union + eps)``); identical zero-area boxes also give IoU = 0,
  so the IoU term is 1 while every distance/shape penalty is 0.
* identical boxes with positive area: IoU = A / (A + eps) ~= 1, loss ~= 0 (the known minimum).
* far-apart boxes: IoU = 0, distance penalties saturate: iou / alpha_iou(iou) / inner_iou(iou) -> 1;
  GIoU, DIoU, EIoU, PIoU -> 2 (CIoU adds its aspect term); MPDIoU with the enclosing-box
  normaliser -> 3; SIoU -> 1 + (2 - exp(-gamma) - ...)/2 < 2 (1.63 on a 45-degree offset);
  focal_eiou -> ~eps^gamma * 2; gwd -> 1 (logarithmically). Values and gradients stay finite.

>>> import torch, losses
>>> crit = losses.build("ciou")
>>> float(crit(torch.tensor([[0.0, 0.0, 2.0, 2.0]]), torch.tensor([[0.0, 0.0, 2.0, 2.0]]))) < 1e-6
True
"""

from __future__ import annotations

import abc
import math
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torchvision.ops import box_convert

from losses._utils import (
    REDUCTION,
    LossInputError,
    Option,
    OptionSet,
    check_reduction,
    complete_docstring,
    float32_forward,
    reduce,
)
from losses.registry import register

__all__ = [
    "BOX_FORMATS",
    "IoU",
    "GIoU",
    "DIoU",
    "CIoU",
    "EIoU",
    "FocalEIoU",
    "SIoU",
    "MPDIoU",
    "AlphaIoU",
    "InnerIoU",
    "PIoU",
    "GWD",
    "box_overlap_loss",
]

BOX_FORMATS = ("xyxy", "cxcywh", "xywh")
_TASKS = ("detection",)
_FOUR_OVER_PI2 = 4.0 / math.pi**2


# --------------------------------------------------------------------------- geometry


class _Geometry(NamedTuple):
    """Everything the IoU variants need about a pair of xyxy boxes (all tensors of shape ``(...)``)."""

    x1: Tensor  # pred corners (raw)
    y1: Tensor
    x2: Tensor
    y2: Tensor
    x1g: Tensor  # target corners (raw)
    y1g: Tensor
    x2g: Tensor
    y2g: Tensor
    w: Tensor  # pred width / height, clamped >= 0
    h: Tensor
    wg: Tensor  # target width / height, clamped >= 0
    hg: Tensor
    inter: Tensor
    union: Tensor
    iou: Tensor
    cw: Tensor  # enclosing box width / height, clamped >= 0
    ch: Tensor
    dx: Tensor  # target centre - pred centre
    dy: Tensor

    def rho2(self) -> Tensor:
        """Squared centre distance."""
        return self.dx.square() + self.dy.square()

    def c2(self, eps: float) -> Tensor:
        """Squared diagonal of the enclosing box (+ eps)."""
        return self.cw.square() + self.ch.square() + eps


def _geometry(pred: Tensor, target: Tensor, eps: float) -> _Geometry:
    """Intersection, union, IoU, enclosing box and centre offsets of xyxy boxes ``(..., 4)``."""
    x1, y1, x2, y2 = pred.unbind(-1)
    x1g, y1g, x2g, y2g = target.unbind(-1)
    w, h = (x2 - x1).clamp_min(0), (y2 - y1).clamp_min(0)
    wg, hg = (x2g - x1g).clamp_min(0), (y2g - y1g).clamp_min(0)
    iw = (torch.minimum(x2, x2g) - torch.maximum(x1, x1g)).clamp_min(0)
    ih = (torch.minimum(y2, y2g) - torch.maximum(y1, y1g)).clamp_min(0)
    inter = iw * ih
    union = w * h + wg * hg - inter
    iou = inter / (union + eps)
    cw = (torch.maximum(x2, x2g) - torch.minimum(x1, x1g)).clamp_min(0)
    ch = (torch.maximum(y2, y2g) - torch.minimum(y1, y1g)).clamp_min(0)
    dx = 0.5 * ((x1g + x2g) - (x1 + x2))
    dy = 0.5 * ((y1g + y2g) - (y1 + y2))
    return _Geometry(x1, y1, x2, y2, x1g, y1g, x2g, y2g, w, h, wg, hg, inter, union, iou, cw, ch, dx, dy)


def _pow(x: Tensor, alpha: float, eps: float) -> Tensor:
    """``x ** alpha`` for ``x >= 0``; 0 (zero gradient) for ``x <= eps``, so the gradient is finite for any alpha."""
    return torch.where(x > eps, x.clamp_min(eps).pow(alpha), torch.zeros_like(x))


# --------------------------------------------------------------------------- variants (element-wise)


def _iou(g: _Geometry, eps: float) -> Tensor:
    return 1.0 - g.iou


def _giou_penalty(g: _Geometry, eps: float) -> Tensor:
    area_c = g.cw * g.ch
    return (area_c - g.union) / (area_c + eps)


def _giou(g: _Geometry, eps: float) -> Tensor:
    return 1.0 - g.iou + _giou_penalty(g, eps)


def _diou(g: _Geometry, eps: float) -> Tensor:
    return 1.0 - g.iou + g.rho2() / g.c2(eps)


def _aspect_v(g: _Geometry, eps: float) -> Tensor:
    return _FOUR_OVER_PI2 * (torch.atan(g.wg / (g.hg + eps)) - torch.atan(g.w / (g.h + eps))).square()


def _ciou_beta(g: _Geometry, v: Tensor, eps: float) -> Tensor:
    with torch.no_grad():
        return v / (1.0 - g.iou + v + eps)


def _ciou(g: _Geometry, eps: float) -> Tensor:
    v = _aspect_v(g, eps)
    return _diou(g, eps) + _ciou_beta(g, v, eps) * v


def _eiou(g: _Geometry, eps: float) -> Tensor:
    return (
        _diou(g, eps)
        + (g.w - g.wg).square() / (g.cw.square() + eps)
        + (g.h - g.hg).square() / (g.ch.square() + eps)
    )


def _siou(g: _Geometry, eps: float, theta: float = 4.0) -> Tensor:
    # angle cost: 1 - 2 sin^2(arcsin(sin a) - pi/4) = sin(2a) = 2 |dx| |dy| / sigma^2 (the paper's
    # switch to beta = pi/2 - a above 45 degrees leaves sin(2a) unchanged)
    angle = 2.0 * g.dx.abs() * g.dy.abs() / (g.rho2() + eps)
    gamma = 2.0 - angle
    rho_x = (g.dx / (g.cw + eps)).square()
    rho_y = (g.dy / (g.ch + eps)).square()
    distance = 2.0 - torch.exp(-gamma * rho_x) - torch.exp(-gamma * rho_y)
    omega_w = (g.w - g.wg).abs() / (torch.maximum(g.w, g.wg) + eps)
    omega_h = (g.h - g.hg).abs() / (torch.maximum(g.h, g.hg) + eps)
    shape = (-torch.expm1(-omega_w)).pow(theta) + (-torch.expm1(-omega_h)).pow(theta)
    return 1.0 - g.iou + 0.5 * (distance + shape)


def _mpdiou(g: _Geometry, eps: float, image_size: tuple[float, float] | None = None) -> Tensor:
    d1 = (g.x1 - g.x1g).square() + (g.y1 - g.y1g).square()
    d2 = (g.x2 - g.x2g).square() + (g.y2 - g.y2g).square()
    norm = g.c2(eps) if image_size is None else float(image_size[0]) ** 2 + float(image_size[1]) ** 2
    return 1.0 - g.iou + (d1 + d2) / norm


def _piou(g: _Geometry, eps: float, v2: bool = False, lam: float = 1.3) -> Tensor:
    p = 0.25 * (
        ((g.x1 - g.x1g).abs() + (g.x2 - g.x2g).abs()) / (g.wg + eps)
        + ((g.y1 - g.y1g).abs() + (g.y2 - g.y2g).abs()) / (g.hg + eps)
    )
    loss = 2.0 - g.iou - torch.exp(-p.square())
    if v2:
        x = lam * torch.exp(-p)
        loss = 3.0 * x * torch.exp(-x.square()) * loss
    return loss


_VARIANTS = {
    "iou": _iou,
    "giou": _giou,
    "diou": _diou,
    "ciou": _ciou,
    "eiou": _eiou,
    "siou": _siou,
    "mpdiou": _mpdiou,
}


def _alpha(g: _Geometry, eps: float, base: str, alpha: float) -> Tensor:
    loss = 1.0 - _pow(g.iou, alpha, eps)
    if base == "giou":
        loss = loss + _pow(_giou_penalty(g, eps), alpha, eps)
    elif base in ("diou", "ciou"):
        loss = loss + _pow(g.rho2() / g.c2(eps), alpha, eps)
    if base == "ciou":
        v = _aspect_v(g, eps)
        loss = loss + _pow(_ciou_beta(g, v, eps) * v, alpha, eps)
    return loss


def _inner_boxes(boxes: Tensor, ratio: float) -> Tensor:
    """Auxiliary boxes: same centres, width and height scaled by ``ratio``."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    cx, cy = 0.5 * (x1 + x2), 0.5 * (y1 + y2)
    hw, hh = 0.5 * ratio * (x2 - x1), 0.5 * ratio * (y2 - y1)
    return torch.stack((cx - hw, cy - hh, cx + hw, cy + hh), dim=-1)


def box_overlap_loss(pred: Tensor, target: Tensor, variant: str = "giou", eps: float = 1e-7, **kwargs) -> Tensor:
    """Functional form: element-wise loss of xyxy boxes ``(..., 4)`` for one of ``_VARIANTS``."""
    if variant not in _VARIANTS:
        raise ValueError(f"unknown box-overlap variant {variant!r}; choose from {', '.join(_VARIANTS)}")
    return _VARIANTS[variant](_geometry(pred, target, eps), eps, **kwargs)


# --------------------------------------------------------------------------- modules


# what every box loss takes and is called with, unless its docstring says otherwise (gwd: rotated boxes)
BOX_SHAPE = """    Shape:
        - pred_boxes: (N, 4) xyxy (see ``box_format``).
        - target_boxes: (N, 4).
        - weight: (N,), optional; with reduction="mean" the weighted mean sum(w l) / sum(w).
        - output: scalar; (N,) with reduction="none".
"""
BOX_ARGS = OptionSet(
    Option("box_format", "xyxy", "str", 'layout of the input boxes, "xyxy" | "cxcywh" | "xywh".'),
    REDUCTION,
    Option("eps", 1e-7, "float", "floor for divisions (> 0)."),
)


class _BoxLoss(nn.Module, abc.ABC):
    """Shared constructor, shape checks, format conversion and reduction of the box losses."""

    name = "box"
    box_dim = 4

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        complete_docstring(cls, BOX_ARGS, BOX_SHAPE)

    def __init__(self, box_format: str = "xyxy", reduction: str = "mean", eps: float = 1e-7) -> None:
        super().__init__()
        if box_format not in BOX_FORMATS:
            raise ValueError(f"{self.name}: box_format must be one of {BOX_FORMATS}, got {box_format!r}")
        if eps <= 0:
            raise ValueError(f"{self.name}: eps must be > 0, got {eps}")
        self.box_format = box_format
        self.reduction = check_reduction(reduction)
        self.eps = float(eps)

    def _check(self, pred: Tensor, target: Tensor) -> None:
        if pred.shape != target.shape or pred.dim() == 0 or pred.shape[-1] != self.box_dim:
            what = f"(N,4) boxes in box_format {self.box_format!r}" if self.box_dim == 4 else "(N,5) cx,cy,w,h,theta"
            raise LossInputError(
                f"{self.name}(pred_boxes, target_boxes): expected two tensors of the same shape {what}, "
                f"got pred {tuple(pred.shape)} and target {tuple(target.shape)}"
            )

    def _xyxy(self, boxes: Tensor) -> Tensor:
        return boxes if self.box_format == "xyxy" else box_convert(boxes, self.box_format, "xyxy")

    @abc.abstractmethod
    def elementwise(self, pred: Tensor, target: Tensor) -> Tensor:
        """Per-box loss (N,) on xyxy boxes; each registered box loss defines it."""

    @float32_forward
    def forward(self, pred: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
        self._check(pred, target)
        loss = self.elementwise(self._xyxy(pred), self._xyxy(target))
        return reduce(loss, self.reduction, weight)

    def extra_repr(self) -> str:
        return f"box_format={self.box_format!r}, reduction={self.reduction!r}, eps={self.eps}"


@register("iou", family="overlap", tasks=_TASKS)
class IoU(_BoxLoss):
    """IoU loss 1 - IoU: no gradient once boxes stop overlapping (use giou/diou/ciou then).

    Degenerate boxes: zero-area, inverted or non-overlapping boxes give 1 with zero gradient;
    identical boxes give ~0.

    Formula:
        L = 1 - |B ∩ B_gt| / |B ∪ B_gt|

    Reference:
        Yu et al., "UnitBox: An Advanced Object Detection Network", ACM MM 2016 (linear form as in mmdet).

    Example:
        >>> IoU()(torch.tensor([[0.0, 0.0, 2.0, 2.0]]), torch.tensor([[1.0, 0.0, 3.0, 2.0]]))
        tensor(0.6667)
    """

    name = "iou"

    def elementwise(self, pred: Tensor, target: Tensor) -> Tensor:
        return _iou(_geometry(pred, target, self.eps), self.eps)


@register("giou", family="overlap", tasks=_TASKS)
class GIoU(_BoxLoss):
    """Generalized IoU loss: IoU minus the share of the enclosing box the union leaves empty.

    Hand-written on the shared geometry helper instead of wrapping
    ``torchvision.ops.generalized_box_iou_loss``: equal to it on well-formed boxes (tested), faster
    fwd+bwd (no boolean-mask indexing), and correct on inverted corners, where torchvision's
    negative areas give loss 0 for the inverted box [2,2,0,0] against [0,0,2,2].
    Degenerate boxes: identical -> ~0; far apart -> towards 2; identical zero-area -> 1.

    Formula:
        L = 1 - IoU + (|C| - |B ∪ B_gt|) / |C|,   C = smallest enclosing box

    Reference:
        Rezatofighi et al., "Generalized Intersection over Union: A Metric and A Loss for Bounding Box
        Regression", CVPR 2019.

    Example:
        >>> GIoU()(torch.tensor([[0.0, 0.0, 1.0, 1.0]]), torch.tensor([[2.0, 0.0, 3.0, 1.0]]))
        tensor(1.3333)
    """

    name = "giou"

    def elementwise(self, pred: Tensor, target: Tensor) -> Tensor:
        return _giou(_geometry(pred, target, self.eps), self.eps)


@register("diou", family="overlap", tasks=_TASKS)
class DIoU(_BoxLoss):
    """Distance IoU loss: IoU loss plus the squared centre distance over the enclosing diagonal.

    Hand-written on the shared geometry helper; equal to ``torchvision.ops.distance_box_iou_loss``
    on well-formed boxes (tested), faster, and inverted boxes count as zero-area (see module doc).
    Degenerate boxes: identical -> ~0; far apart -> towards 2; identical zero-area -> 1;
    concentric boxes -> 1 - IoU.

    Formula:
        L = 1 - IoU + rho^2(b, b_gt) / c^2,   c = diagonal of the smallest enclosing box

    Reference:
        Zheng et al., "Distance-IoU Loss: Faster and Better Learning for Bounding Box Regression", AAAI 2020.

    Example:
        >>> DIoU()(torch.tensor([[0.0, 0.0, 1.0, 1.0]]), torch.tensor([[2.0, 0.0, 3.0, 1.0]]))
        tensor(1.4000)
    """

    name = "diou"

    def elementwise(self, pred: Tensor, target: Tensor) -> Tensor:
        return _diou(_geometry(pred, target, self.eps), self.eps)


@register("ciou", family="overlap", tasks=_TASKS)
class CIoU(_BoxLoss):
    """Complete IoU loss: DIoU plus an aspect-ratio consistency term weighted by a no-grad trade-off.

    Hand-written on the shared geometry helper; equal to ``torchvision.ops.complete_box_iou_loss``
    on well-formed boxes (tested) and faster. Unlike it, the aspect ratio uses ``atan(w / (h + eps))``,
    so zero-height boxes give finite values and gradients (torchvision: NaN gradient for a
    zero-height box, NaN value for a point box); point-box gradients are large (~1/eps) but finite.
    Degenerate boxes: identical -> ~0; far apart -> towards 2 + alpha*v.

    Formula:
        v = 4/pi^2 (atan(w_gt/h_gt) - atan(w/h))^2,   alpha = v / ((1 - IoU) + v)   (no gradient)
        L = 1 - IoU + rho^2(b, b_gt) / c^2 + alpha v

    Reference:
        Zheng et al., "Distance-IoU Loss: Faster and Better Learning for Bounding Box Regression", AAAI 2020.

    Example:
        >>> CIoU()(torch.tensor([[0.0, 0.0, 2.0, 2.0]]), torch.tensor([[1.0, 0.0, 3.0, 2.0]]))
        tensor(0.7436)
    """

    name = "ciou"

    def elementwise(self, pred: Tensor, target: Tensor) -> Tensor:
        return _ciou(_geometry(pred, target, self.eps), self.eps)


@register("eiou", family="overlap", tasks=_TASKS)
class EIoU(_BoxLoss):
    """Efficient IoU loss: DIoU plus separate width and height gaps over the enclosing box sides.

    Hand-written (no torchvision op). Degenerate boxes: identical -> ~0; zero-area pred on a
    box of width w_gt inside the enclosing box gives the width term (w_gt / c_w)^2.

    Formula:
        L = 1 - IoU + rho^2(b, b_gt) / c^2 + (w - w_gt)^2 / c_w^2 + (h - h_gt)^2 / c_h^2

    Reference:
        Zhang et al., "Focal and Efficient IOU Loss for Accurate Bounding Box Regression",
        Neurocomputing 506, 2022.

    Example:
        >>> EIoU()(torch.tensor([[0.0, 0.0, 2.0, 2.0]]), torch.tensor([[1.0, 0.0, 3.0, 2.0]]))
        tensor(0.7436)
    """

    name = "eiou"

    def elementwise(self, pred: Tensor, target: Tensor) -> Tensor:
        return _eiou(_geometry(pred, target, self.eps), self.eps)


@register("focal_eiou", family="overlap", tasks=_TASKS)
class FocalEIoU(_BoxLoss):
    """Focal-EIoU loss: EIoU re-weighted by IoU^gamma so high-overlap boxes dominate the gradient.

    ``detach_weight=True`` stops the gradient through the IoU^gamma factor (a common
    implementation choice); the default follows the paper's formula. IoU is clamped to eps
    before the power, so non-overlapping boxes give ~0 (weight eps^gamma) with finite gradients.

    Args:
        gamma: focusing exponent of the IoU^gamma weight (0 gives EIoU).
        detach_weight: stop the gradient through the IoU^gamma weight.

    Formula:
        L = IoU^gamma * L_EIoU,   gamma = 0.5

    Reference:
        Zhang et al., "Focal and Efficient IOU Loss for Accurate Bounding Box Regression",
        Neurocomputing 506, 2022.

    Example:
        >>> FocalEIoU()(torch.tensor([[0.0, 0.0, 2.0, 2.0]]), torch.tensor([[1.0, 0.0, 3.0, 2.0]]))
        tensor(0.4293)
    """

    name = "focal_eiou"

    def __init__(
        self,
        gamma: float = 0.5,
        detach_weight: bool = False,
        box_format: str = "xyxy",
        reduction: str = "mean",
        eps: float = 1e-7,
    ) -> None:
        super().__init__(box_format, reduction, eps)
        self.gamma = float(gamma)
        self.detach_weight = bool(detach_weight)

    def elementwise(self, pred: Tensor, target: Tensor) -> Tensor:
        g = _geometry(pred, target, self.eps)
        w = g.iou.clamp_min(self.eps).pow(self.gamma)
        return (w.detach() if self.detach_weight else w) * _eiou(g, self.eps)


@register("siou", family="overlap", tasks=_TASKS)
class SIoU(_BoxLoss):
    """SIoU loss: IoU loss plus angle-aware centre-distance cost and a shape cost.

    Hand-written. The angle cost 1 - 2 sin^2(arcsin(x) - pi/4) is computed in the equal closed
    form sin(2 alpha) = 2|dx||dy| / (dx^2 + dy^2), which avoids arcsin's infinite slope (the
    paper's switch to beta above 45 degrees does not change sin(2 alpha)). Degenerate boxes:
    identical -> ~0; concentric -> 1 - IoU + shape/2; zero-size boxes -> finite (eps-guarded).

    Args:
        theta: exponent of the shape cost (> 0; the paper uses 2-6).

    Formula:
        Lambda = sin(2 alpha),  gamma = 2 - Lambda,  rho_x = (dx / c_w)^2,  rho_y = (dy / c_h)^2
        Delta = sum_{t=x,y} (1 - exp(-gamma rho_t))
        Omega = sum_{t=w,h} (1 - exp(-omega_t))^theta,  omega_w = |w - w_gt| / max(w, w_gt)
        L = 1 - IoU + (Delta + Omega) / 2,   theta = 4

    Reference:
        Gevorgyan, "SIoU Loss: More Powerful Learning for Bounding Box Regression", arXiv:2205.12740, 2022.

    Example:
        >>> SIoU()(torch.tensor([[0.0, 0.0, 2.0, 2.0]]), torch.tensor([[1.0, 0.0, 3.0, 2.0]]))
        tensor(0.7663)
    """

    name = "siou"

    def __init__(
        self, theta: float = 4.0, box_format: str = "xyxy", reduction: str = "mean", eps: float = 1e-7
    ) -> None:
        super().__init__(box_format, reduction, eps)
        if theta <= 0:
            raise ValueError(f"siou: theta must be > 0, got {theta}")
        self.theta = float(theta)

    def elementwise(self, pred: Tensor, target: Tensor) -> Tensor:
        return _siou(_geometry(pred, target, self.eps), self.eps, self.theta)


@register("mpdiou", family="overlap", tasks=_TASKS)
class MPDIoU(_BoxLoss):
    """MPDIoU loss: IoU loss plus the squared top-left and bottom-right corner distances.

    The paper normalises by the input image: pass ``image_size=(h, w)`` for that. Without it the
    squared diagonal of the smallest enclosing box is used (a scale-free per-pair normaliser, as in
    DIoU), so the loss is defined for boxes of any coordinate range. Degenerate boxes: identical
    -> ~0; far apart -> towards 3 with the enclosing normaliser (each corner term -> 1).

    Args:
        image_size: (h, w) of the input image, the paper's normaliser; None normalises by the squared
            diagonal of the enclosing box.

    Formula:
        d1^2 = (x1 - x1_gt)^2 + (y1 - y1_gt)^2,   d2^2 = (x2 - x2_gt)^2 + (y2 - y2_gt)^2
        L = 1 - IoU + (d1^2 + d2^2) / (w_img^2 + h_img^2)   (or / c^2 of the enclosing box)

    Reference:
        Ma & Xu, "MPDIoU: A Loss for Efficient and Accurate Bounding Box Regression", arXiv:2307.07662, 2023.

    Example:
        >>> MPDIoU(image_size=(10, 10))(torch.tensor([[0.0, 0.0, 2.0, 2.0]]), torch.tensor([[1.0, 0.0, 3.0, 2.0]]))
        tensor(0.6767)
    """

    name = "mpdiou"

    def __init__(
        self,
        image_size: tuple[float, float] | None = None,
        box_format: str = "xyxy",
        reduction: str = "mean",
        eps: float = 1e-7,
    ) -> None:
        super().__init__(box_format, reduction, eps)
        if image_size is not None:
            if len(image_size) != 2 or min(float(s) for s in image_size) <= 0:
                raise ValueError(f"mpdiou: image_size must be (h, w) with positive sides, got {image_size!r}")
            image_size = (float(image_size[0]), float(image_size[1]))
        self.image_size = image_size

    def elementwise(self, pred: Tensor, target: Tensor) -> Tensor:
        return _mpdiou(_geometry(pred, target, self.eps), self.eps, self.image_size)


@register("alpha_iou", family="overlap", tasks=_TASKS)
class AlphaIoU(_BoxLoss):
    """Alpha-IoU: a power alpha applied to IoU and to each penalty of the iou/giou/diou/ciou variants.

    alpha = 1 recovers the base loss; alpha > 1 up-weights high-IoU boxes. Each powered base
    below eps counts as 0 with zero gradient (finite for alpha < 1 too). Degenerate boxes behave
    as the base.

    Args:
        base: the loss the power is applied to, "iou" | "giou" | "diou" | "ciou".
        alpha: the power (> 0; 1 gives the base loss).

    Formula:
        iou:  L = 1 - IoU^a
        giou: L = 1 - IoU^a + ((|C| - |B ∪ B_gt|) / |C|)^a
        diou: L = 1 - IoU^a + (rho^2 / c^2)^a
        ciou: L = 1 - IoU^a + (rho^2 / c^2)^a + (beta v)^a,   a = 3

    Reference:
        He et al., "Alpha-IoU: A Family of Power Intersection over Union Losses for Bounding Box
        Regression", NeurIPS 2021.

    Example:
        >>> AlphaIoU(base="iou", alpha=3.0)(torch.tensor([[0.0, 0.0, 2.0, 2.0]]), torch.tensor([[1.0, 0.0, 3.0, 2.0]]))
        tensor(0.9630)
    """

    name = "alpha_iou"
    BASES = ("iou", "giou", "diou", "ciou")

    def __init__(
        self,
        base: str = "iou",
        alpha: float = 3.0,
        box_format: str = "xyxy",
        reduction: str = "mean",
        eps: float = 1e-7,
    ) -> None:
        super().__init__(box_format, reduction, eps)
        if base not in self.BASES:
            raise ValueError(f"alpha_iou: base must be one of {self.BASES}, got {base!r}")
        if alpha <= 0:
            raise ValueError(f"alpha_iou: alpha must be > 0, got {alpha}")
        self.base, self.alpha = base, float(alpha)

    def elementwise(self, pred: Tensor, target: Tensor) -> Tensor:
        return _alpha(_geometry(pred, target, self.eps), self.eps, self.base, self.alpha)


@register("inner_iou", family="overlap", tasks=_TASKS)
class InnerIoU(_BoxLoss):
    """Inner-IoU: a base IoU loss with its IoU replaced by the IoU of auxiliary boxes scaled by ratio.

    Both boxes are scaled by ``ratio`` around their centres; ratio < 1 speeds up convergence
    for high-IoU samples, ratio > 1 for low-IoU ones (paper: 0.5-1.5). The base loss (any of
    iou, giou, diou, ciou, eiou, siou, mpdiou) is computed on the original boxes. Degenerate
    boxes behave as the base (the auxiliary boxes of a zero-area box are zero-area).

    Args:
        base: the IoU loss whose IoU is replaced, "iou" | "giou" | "diou" | "ciou" | "eiou" | "siou" | "mpdiou".
        ratio: scale of the auxiliary boxes around their centres (> 0; the paper uses 0.5-1.5).

    Formula:
        L_inner-X = L_X + IoU - IoU_inner,   IoU_inner = IoU(scale(b, ratio), scale(b_gt, ratio))

    Reference:
        Zhang, Xu & Zhang, "Inner-IoU: More Effective Intersection over Union Loss with Auxiliary
        Bounding Box", arXiv:2311.02877, 2023.

    Example:
        >>> InnerIoU(ratio=0.5)(torch.tensor([[0.0, 0.0, 2.0, 2.0]]), torch.tensor([[1.0, 0.0, 3.0, 2.0]]))
        tensor(1.)
    """

    name = "inner_iou"

    def __init__(
        self,
        base: str = "iou",
        ratio: float = 0.75,
        box_format: str = "xyxy",
        reduction: str = "mean",
        eps: float = 1e-7,
    ) -> None:
        super().__init__(box_format, reduction, eps)
        if base not in _VARIANTS:
            raise ValueError(f"inner_iou: base must be one of {tuple(_VARIANTS)}, got {base!r}")
        if ratio <= 0:
            raise ValueError(f"inner_iou: ratio must be > 0, got {ratio}")
        self.base, self.ratio = base, float(ratio)

    def elementwise(self, pred: Tensor, target: Tensor) -> Tensor:
        g = _geometry(pred, target, self.eps)
        inner = _geometry(_inner_boxes(pred, self.ratio), _inner_boxes(target, self.ratio), self.eps)
        return _VARIANTS[self.base](g, self.eps) + g.iou - inner.iou


@register("piou", family="overlap", tasks=_TASKS)
class PIoU(_BoxLoss):
    """Powerful-IoU: IoU loss plus a target-size-adaptive corner-distance penalty; v2 adds attention.

    Hand-written. The penalty P averages the four edge gaps normalised by the target width and
    height; v2 multiplies by the non-monotonic focusing u(lambda q) = 3 lambda q exp(-(lambda q)^2),
    q = exp(-P), which favours medium-quality boxes. Degenerate boxes: identical -> ~0; a
    zero-area target gives P ~ gap/eps, so the penalty saturates at 1 with zero gradient.

    Args:
        v2: PIoU v2, the loss times the non-monotonic attention u(lambda q).
        lam: lambda of the v2 attention (used only with v2=True).

    Formula:
        P = (|x1 - x1_gt| + |x2 - x2_gt|) / (4 w_gt) + (|y1 - y1_gt| + |y2 - y2_gt|) / (4 h_gt)
        L_PIoU = 1 - IoU + 1 - exp(-P^2)
        L_PIoUv2 = 3 (lambda q) exp(-(lambda q)^2) * L_PIoU,   q = exp(-P),  lambda = 1.3

    Reference:
        Liu et al., "Powerful-IoU: More straightforward and faster bounding box regression loss with a
        nesting of the penalty term and the anchor box quality", Neural Networks 170, 2024.

    Example:
        >>> PIoU()(torch.tensor([[0.0, 0.0, 2.0, 2.0]]), torch.tensor([[1.0, 0.0, 3.0, 2.0]]))
        tensor(0.7273)
    """

    name = "piou"

    def __init__(
        self,
        v2: bool = False,
        lam: float = 1.3,
        box_format: str = "xyxy",
        reduction: str = "mean",
        eps: float = 1e-7,
    ) -> None:
        super().__init__(box_format, reduction, eps)
        self.v2, self.lam = bool(v2), float(lam)

    def elementwise(self, pred: Tensor, target: Tensor) -> Tensor:
        return _piou(_geometry(pred, target, self.eps), self.eps, self.v2, self.lam)


@register("gwd", family="overlap", tasks=_TASKS)
class GWD(_BoxLoss):
    """Gaussian Wasserstein distance loss for rotated boxes (cx, cy, w, h, theta in radians).

    Each box becomes N(mu, Sigma) with mu = centre, Sigma = R diag(w^2/4, h^2/4) R^T. For 2x2
    matrices the trace term has the closed form used here (no matrix square roots):
    Tr((S1^1/2 S2 S1^1/2)^1/2) = sqrt(Tr(S1 S2) + 2 sqrt(det S1 det S2)), with
    sqrt(det S1 det S2) = w1 h1 w2 h2 / 16. ``box_format`` is not used (rotated boxes have one
    format). Unlike mmrotate's ``gwd_loss`` the transform f is applied to d^2 as in the paper and
    there is no extra scale normalisation. Degenerate boxes: identical -> 1 - 1/tau (0 for tau=1);
    zero-size boxes are point masses (d^2 = centre distance^2 + the other box's trace); far apart
    -> towards 1. Square roots are eps-clamped, so gradients stay finite.

    Args:
        tau: offset of the transform, L = 1 - 1 / (tau + f(d^2)) (>= 1).
        fun: the transform f of d^2, "log1p" | "sqrt".
        box_format: not used: rotated boxes have the one format (cx, cy, w, h, theta).
        eps: floor for divisions and square roots (> 0).

    Shape:
        - pred_boxes: (N, 5) rotated boxes cx, cy, w, h, theta (radians).
        - target_boxes: (N, 5).
        - weight: (N,), optional; with reduction="mean" the weighted mean sum(w l) / sum(w).
        - output: scalar; (N,) with reduction="none".

    Formula:
        d^2 = |mu1 - mu2|^2 + Tr(S1) + Tr(S2) - 2 Tr((S1^1/2 S2 S1^1/2)^1/2)
        L = 1 - 1 / (tau + f(d^2)),   f = log1p (default) or sqrt

    Reference:
        Yang et al., "Rethinking Rotated Object Detection with Gaussian Wasserstein Distance Loss",
        ICML 2021.

    Example:
        >>> GWD()(torch.tensor([[0.0, 0.0, 2.0, 2.0, 0.0]]), torch.tensor([[1.0, 0.0, 2.0, 2.0, 0.0]]))
        tensor(0.4094)
    """

    name = "gwd"
    box_dim = 5
    FUNS = ("log1p", "sqrt")

    def __init__(
        self,
        tau: float = 1.0,
        fun: str = "log1p",
        box_format: str = "xyxy",
        reduction: str = "mean",
        eps: float = 1e-7,
    ) -> None:
        super().__init__(box_format, reduction, eps)
        if fun not in self.FUNS:
            raise ValueError(f"gwd: fun must be one of {self.FUNS}, got {fun!r}")
        if tau < 1:
            raise ValueError(f"gwd: tau must be >= 1, got {tau}")
        self.tau, self.fun = float(tau), fun

    def _xyxy(self, boxes: Tensor) -> Tensor:
        return boxes

    def elementwise(self, pred: Tensor, target: Tensor) -> Tensor:
        d2 = gwd_distance2(pred, target, self.eps)
        f = torch.log1p(d2) if self.fun == "log1p" else d2.clamp_min(self.eps).sqrt()
        return 1.0 - 1.0 / (self.tau + f)


def _gaussian(boxes: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """(cx, cy, a, b, c, w, h) with Sigma = [[a, b], [b, c]] for rotated boxes ``(..., 5)``."""
    cx, cy, w, h, theta = boxes.unbind(-1)
    w, h = w.abs(), h.abs()
    cos, sin = torch.cos(theta), torch.sin(theta)
    sw, sh = 0.25 * w.square(), 0.25 * h.square()
    a = sw * cos.square() + sh * sin.square()
    c = sw * sin.square() + sh * cos.square()
    b = (sw - sh) * cos * sin
    return cx, cy, a, b, c, w, h


def gwd_distance2(pred: Tensor, target: Tensor, eps: float = 1e-7) -> Tensor:
    """Squared 2-Wasserstein distance between the Gaussians of rotated boxes ``(..., 5)``."""
    x1, y1, a1, b1, c1, w1, h1 = _gaussian(pred)
    x2, y2, a2, b2, c2, w2, h2 = _gaussian(target)
    centre = (x1 - x2).square() + (y1 - y2).square()
    trace = a1 + c1 + a2 + c2
    cross = a1 * a2 + 2.0 * b1 * b2 + c1 * c2 + 2.0 * (w1 * h1 * w2 * h2) / 16.0
    return (centre + trace - 2.0 * cross.clamp_min(eps).sqrt()).clamp_min(0)

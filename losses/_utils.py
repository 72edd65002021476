"""Shared helpers for every loss family: reduction, float32 upcast, one-hot, shape checks.

Every loss in the package routes through these so that reduction semantics, AMP
behaviour and error messages are the same everywhere.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

import torch
from torch import Tensor

REDUCTIONS = ("mean", "sum", "none")

F = TypeVar("F", bound=Callable)


class LossInputError(ValueError):
    """A loss received tensors of the wrong shape, dtype or value range."""


def check_reduction(reduction: str) -> str:
    """Validate ``reduction`` and return it."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return reduction


def reduce(loss: Tensor, reduction: str, weight: Tensor | None = None) -> Tensor:
    """Apply ``reduction`` to an element-wise loss.

    With ``weight`` (broadcastable to ``loss``, e.g. a validity mask), ``mean`` is the
    weighted mean ``sum(w * l) / max(sum(w), eps)``, so an all-ignored batch gives 0
    with a defined (zero) gradient instead of NaN.
    """
    if weight is not None:
        loss = loss * weight
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        if weight is None:
            return loss.mean() if loss.numel() else loss.sum()
        denom = torch.broadcast_to(weight, loss.shape).sum()
        return loss.sum() / denom.clamp_min(torch.finfo(loss.dtype).eps)
    raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def upcast(t: Tensor) -> Tensor:
    """Promote half/bfloat16 (and integer) tensors to float32; float64 stays float64."""
    if t.is_floating_point():
        return t if t.dtype in (torch.float32, torch.float64) else t.float()
    return t.float()


def float32_forward(forward: F) -> F:
    """Decorate a loss ``forward`` to run outside autocast with floating inputs in >= float32.

    Losses take logs, exponentials and ratios of small numbers; under fp16/bf16 autocast
    those overflow or underflow. Integer tensors (class indices) are passed unchanged.
    """

    @functools.wraps(forward)
    def wrapper(self, *args, **kwargs):
        args = tuple(_upcast_floating(a) for a in args)
        kwargs = {k: _upcast_floating(v) for k, v in kwargs.items()}
        device = next((a.device.type for a in args if isinstance(a, Tensor)), "cpu")
        with torch.autocast(device_type=device, enabled=False):
            return forward(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _upcast_floating(value):
    if isinstance(value, Tensor) and value.is_floating_point():
        return upcast(value)
    return value


def one_hot(target: Tensor, num_classes: int, ignore_index: int | None = None) -> tuple[Tensor, Tensor]:
    """Class-index target ``(N, *)`` -> one-hot ``(N, C, *)`` float and validity mask ``(N, 1, *)``.

    Pixels equal to ``ignore_index`` get an all-zero one-hot row and mask 0.
    """
    target = target.long()
    valid = torch.ones_like(target, dtype=torch.bool) if ignore_index is None else target != ignore_index
    safe = torch.where(valid, target, torch.zeros_like(target))
    if safe.numel() and (int(safe.min()) < 0 or int(safe.max()) >= num_classes):
        raise LossInputError(
            f"target holds class indices outside [0, {num_classes - 1}] "
            f"(min {int(safe.min())}, max {int(safe.max())}); set ignore_index for void labels"
        )
    encoded = torch.zeros((target.shape[0], num_classes, *target.shape[1:]), dtype=torch.float32, device=target.device)
    encoded.scatter_(1, safe.unsqueeze(1), 1.0)
    mask = valid.unsqueeze(1).to(encoded.dtype)
    return encoded * mask, mask


def check_same_shape(name: str, pred: Tensor, target: Tensor, what: str = "(pred, target)") -> None:
    """Raise :class:`LossInputError` naming the loss when ``pred`` and ``target`` differ in shape."""
    if pred.shape != target.shape:
        raise LossInputError(
            f"{name}{what}: expected pred and target of the same shape, "
            f"got pred {tuple(pred.shape)} and target {tuple(target.shape)}"
        )

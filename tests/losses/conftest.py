"""Checks shared by the loss test files."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn


def _check_low_precision(crit: nn.Module, x: Tensor, target: Tensor) -> None:
    """``crit`` on large bf16 scores under bf16 autocast, then on fp16 inputs: float32, finite, finite grads."""
    xb = x.to(torch.bfloat16).requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = crit(xb, target)
    assert value.dtype == torch.float32 and torch.isfinite(value)
    value.backward()
    assert torch.isfinite(xb.grad).all()
    xh = x.half().requires_grad_(True)
    value = crit(xh, target.half() if target.is_floating_point() else target)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(xh.grad).all()


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one intra-op thread avoids thread-pool sync overhead on a loaded 2-core machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def check_low_precision() -> Callable[[nn.Module, Tensor, Tensor], None]:
    """The AMP-safety check every dense loss family runs (see :func:`_check_low_precision`)."""
    return _check_low_precision

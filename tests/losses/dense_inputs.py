"""Random (logits, target) pairs in the region-loss modes and the checks shared by the dense-loss tests."""

from __future__ import annotations

import torch
from torch import Tensor

import losses


def dense_inputs(
    mode: str, shape=(2, 3, 4, 5), seed: int = 0, dtype=torch.float32, scale: float = 1.0
) -> tuple[Tensor, Tensor]:
    """binary: (N,1,*) logits, (N,*) 0/1; multiclass: (N,C,*) logits, (N,*) indices; multilabel: (N,C,*) both."""
    g = torch.Generator().manual_seed(seed)
    n, c, *sp = shape
    if mode == "binary":
        x = torch.randn(n, 1, *sp, generator=g, dtype=dtype) * scale
        t = (torch.rand(n, *sp, generator=g) > 0.5).to(dtype)
    elif mode == "multiclass":
        x = torch.randn(n, c, *sp, generator=g, dtype=dtype) * scale
        t = torch.randint(0, c, (n, *sp), generator=g)
    else:
        x = torch.randn(n, c, *sp, generator=g, dtype=dtype) * scale
        t = (torch.rand(n, c, *sp, generator=g) > 0.5).to(dtype)
    return x, t


def run_on_meta(crit, logits: Tensor, target: Tensor) -> Tensor:
    """Forward and backward of ``crit`` on ``meta`` copies of the inputs: the sync-policy check.

    A meta tensor has shapes but no values, so any host read of a value in the loss (``.item()``,
    ``int(t)``, ``bool(t)``, a data-dependent output shape) raises; passing means the forward would
    not synchronise a CUDA device either. Returns the (meta) input gradient.
    """
    x = logits.detach().to("meta").requires_grad_(True)
    crit.to("meta")(x, target.to("meta")).backward()
    return x.grad


def check_registered(name: str, family: str) -> None:
    """``name`` builds from a YAML-style dict with ``mode``, is listed in ``family`` and has a complete card."""
    crit = losses.build({"name": name, "params": {"mode": "binary"}})
    assert isinstance(crit, torch.nn.Module) and crit.mode == "binary"
    card = losses.info(name)
    assert card.family == family and card.formula and card.reference and card.summary
    assert name in losses.available(family=family)

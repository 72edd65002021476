"""Gradient Harmonizing Mechanism machinery shared by ``ghm_c`` (classification) and ``ghm_r`` (regression).

Li, Liu & Wang, "Gradient Harmonized Single-stage Detector", AAAI 2019 (arXiv:1811.05181), as mmdetection's
GHMC / GHMR: a detached gradient norm ``g`` in [0, 1] per element is binned, and each element is weighted by the
inverse density of its bin.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor, nn


def ghm_weights(
    g: Tensor, valid: Tensor | None, bins: int, acc_sum: Tensor | None, momentum: float
) -> tuple[Tensor, Tensor]:
    """GHM density weights ``tot / (GD(g) * n_bins_nonempty)`` per element, and this rank's valid count.

    Vectorised form of mmdetection's loop: bins ``[i / bins, (i + 1) / bins)`` (the last one takes
    everything from ``(bins - 1) / bins`` up, as mmdetection's widened last edge), ``num_in_bin`` counts valid
    elements, with momentum ``acc_i = m acc_i + (1 - m) num_in_bin`` for non-empty bins (``acc_sum``
    updated in place); weight ``tot / acc_i`` (``tot / num_in_bin`` without momentum) divided by
    the number of non-empty bins. Under DDP the histogram and ``tot`` are summed over ranks, so the
    gradient density is that of the global batch and every rank keeps the same ``acc_sum``; the
    returned count stays local, so ``sum(w * l) / count`` averaged by DDP is the global mean.
    """
    inner = torch.arange(1, bins, dtype=g.dtype, device=g.device) / bins
    idx = torch.bucketize(g, inner, right=True)
    ones = torch.ones_like(g) if valid is None else valid.to(g.dtype)
    counts = torch.zeros(bins, dtype=g.dtype, device=g.device).index_add_(0, idx.reshape(-1), ones.reshape(-1))
    local_tot = ones.sum().clamp_min(1.0)
    counts, tot = _sum_over_ranks(counts, ones.sum())
    tot = tot.clamp_min(1.0)
    nonempty = counts > 0
    denom = counts
    if momentum > 0:
        if acc_sum is None:
            raise ValueError("ghm: momentum > 0 needs the running histogram acc_sum")
        denom = torch.where(nonempty, momentum * acc_sum.to(g.dtype) + (1 - momentum) * counts, acc_sum.to(g.dtype))
        acc_sum.copy_(denom.to(acc_sum.dtype))
    per_bin = torch.where(nonempty, tot / denom.clamp_min(torch.finfo(g.dtype).tiny), torch.zeros_like(counts))
    per_bin = per_bin / nonempty.sum().clamp_min(1).to(g.dtype)
    return per_bin[idx] * ones, local_tot


def _sum_over_ranks(counts: Tensor, total: Tensor) -> tuple[Tensor, Tensor]:
    """All-reduce (sum) a histogram and its total when a process group with several ranks is running."""
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return counts, total
    packed = torch.cat([counts, total.reshape(1)])
    dist.all_reduce(packed)
    return packed[:-1], packed[-1]


class GHMState(nn.Module):
    """The running histogram of a GHM loss: ``acc_sum`` (a checkpointed buffer), updated in training mode only."""

    name = "ghm"

    def _init_bins(self, bins: int, momentum: float) -> None:
        if bins < 1:
            raise ValueError(f"{self.name}: bins must be >= 1, got {bins}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"{self.name}: momentum must be in [0, 1), got {momentum}")
        self.bins, self.momentum = int(bins), float(momentum)
        self.register_buffer("acc_sum", torch.zeros(bins, dtype=torch.float32))

    def running(self) -> dict[str, object]:
        """``bins``, ``momentum`` and ``acc_sum`` for the functional core: momentum 0 and no state in eval mode."""
        if self.training:
            return {"bins": self.bins, "momentum": self.momentum, "acc_sum": self.acc_sum}
        return {"bins": self.bins, "momentum": 0.0, "acc_sum": None}

"""Adaptive weighting of a composite's terms from their training history.

``balance: dwa`` (or ``{name: dwa, temperature: 2.0}``) in a ``loss:`` section turns it on for
every slot; :class:`losses.Composite` owns one :class:`DynamicWeightAverage` per slot.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor, nn


class DynamicWeightAverage(nn.Module):
    """Dynamic Weight Average (Liu, Johns & Davison, CVPR 2019): weights from each term's rate of descent.

    Formula:
        r_k(t-1) = L_k(t-1) / L_k(t-2)                  (L_k(e): mean training value of term k in epoch e)
        w_k(t)   = K exp(r_k(t-1) / T) / sum_i exp(r_i(t-1) / T),     w_k = 1 for the first two epochs
        A term whose loss falls more slowly gets more weight; T -> inf gives equal weights.

    Reference:
        Liu, Johns & Davison, "End-to-End Multi-Task Learning with Attention", CVPR 2019. arXiv:1803.10704

    Args:
        num_terms: K, the number of terms.
        temperature: T > 0 (the paper uses 2).

    The running sums, the last two epoch means and the current weights are buffers, so a resumed
    run continues exactly; each step's values are averaged over the DDP ranks before they are
    summed, so every rank holds the same sums (a mid-epoch checkpoint, written by rank 0, is the
    global state) and computes the same weights from the global epoch means.
    """

    def __init__(self, num_terms: int, temperature: float = 2.0) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"dwa: temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)
        self.register_buffer("sums", torch.zeros(num_terms, dtype=torch.float64))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("history", torch.full((2, num_terms), float("nan"), dtype=torch.float64))
        self.register_buffer("weights", torch.ones(num_terms))

    def accumulate(self, values: Tensor) -> None:
        """Add one step's unweighted term values (K,), averaged over the DDP ranks, to the running epoch sums."""
        values = values.detach().to(self.sums)
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(values)  # every rank holds the global sums: a mid-epoch checkpoint of rank 0 is exact
            values = values / dist.get_world_size()
        self.sums += values
        self.count += 1

    def end_epoch(self) -> None:
        """Close the epoch: store its mean term values and recompute the weights."""
        if self.count > 0:
            self.history.copy_(torch.stack([self.history[1], self.sums / self.count]))
            if not bool(torch.isnan(self.history).any()):
                rates = self.history[1] / self.history[0].clamp_min(1e-12)
                weights = len(rates) * torch.softmax(rates / self.temperature, dim=0)
                self.weights.copy_(weights.to(self.weights))
        self.sums.zero_()
        self.count.zero_()

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"

"""Adaptive weighting of a composite's terms, and the per-term gradients it and the attribution logs need.

``balance: dwa`` (or ``{name: dwa, temperature: 2.0}``) and ``balance: gradnorm`` (or
``{name: gradnorm, alpha: 1.5}``) in a ``loss:`` section turn them on for every slot;
:class:`losses.Composite` owns one :class:`DynamicWeightAverage` or :class:`GradNorm` per slot.
:func:`term_gradients` computes each term's gradient on a shared layer once per step; GradNorm
and the ``run.term_grad_norms`` logs (:func:`attribution`) both use it.
"""

from __future__ import annotations

from collections.abc import Sequence

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


class GradNorm(nn.Module):
    """GradNorm (Chen et al., ICML 2018): term weights trained so each term's gradient norm tracks its training rate.

    Formula (W: the task's shared layer, L_i(t): unweighted term values, K terms):
        g_i      = ||grad_W L_i||                                  (per-term gradient norms, :func:`term_gradients`)
        G_i      = w_i g_i,    r_i = (L_i(t) / L_i(0)) / mean_j (L_j(t) / L_j(0))
        L_grad   = sum_i | G_i - [mean_j G_j * r_i^alpha] |         (the bracket is a constant)
        The network is trained on sum_i w_i L_i with w detached; w is trained on L_grad (its
        gradient is sign(...) * g_i) and renormalised to sum_i w_i = K before every step.
        A term that trains more slowly than the others (r_i > 1) gets a larger gradient norm.

    Reference:
        Chen, Badrinarayanan, Lee & Rabinovich, "GradNorm: Gradient Normalization for Adaptive Loss
        Balancing in Deep Multitask Networks", ICML 2018. arXiv:1711.02257

    Args:
        num_terms: K, the number of terms.
        alpha: the restoring-force strength (>= 0; 0 asks for equal gradient norms; the paper uses 0.12-1.5).

    ``weights`` is an ``nn.Parameter`` (trained in the optimiser's ``balance`` group, weight decay 0);
    ``initial`` (L_i(0), the first training step's values) is a buffer, so a resumed run continues
    exactly. Under DDP the gradients and term values are averaged over ranks before L_grad is formed,
    so every rank computes the same L_grad and keeps the same weights.
    """

    def __init__(self, num_terms: int, alpha: float = 1.5) -> None:
        super().__init__()
        if not alpha >= 0:
            raise ValueError(f"gradnorm: alpha must be >= 0, got {alpha}")
        self.alpha = float(alpha)
        self.weights = nn.Parameter(torch.ones(num_terms))
        self.register_buffer("initial", torch.full((num_terms,), float("nan"), dtype=torch.float64))

    def current(self) -> Tensor:
        """The weights normalised to sum K, detached: what the network's loss is weighted with."""
        weights = self.weights.detach()
        return weights * (len(weights) / weights.sum())

    @torch.no_grad()
    def renormalise(self) -> None:
        """Rescale the weights in place to sum K (kept > 0); called before every training step."""
        self.weights.clamp_(min=1e-6)
        self.weights.mul_(len(self.weights) / self.weights.sum())

    def loss(self, norms: Tensor, values: Tensor) -> Tensor:
        """L_grad from the unweighted per-term gradient norms g_i (K,) and term values L_i(t) (K,), both detached.

        The first call stores ``values`` as L_i(0). Gradients flow into ``weights`` only.
        """
        values = values.detach().to(self.initial)
        self.initial.copy_(torch.where(torch.isnan(self.initial), values, self.initial))
        ratios = values / self.initial.clamp_min(1e-12)
        rates = ratios / ratios.mean().clamp_min(1e-12)
        scaled = self.weights * norms.detach().to(self.weights)
        target = scaled.mean().detach() * rates.to(scaled).pow(self.alpha)
        return (scaled - target).abs().sum()

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


def term_gradients(values: Sequence[Tensor], params: Sequence[Tensor]) -> tuple[Tensor, list[bool]]:
    """Per-term gradients with respect to ``params``: a (K, P) matrix, row i = flattened d values[i] / d params.

    The graph is kept (``retain_graph=True``) for the step's backward pass; no higher-order graph is
    built. A term that does not reach ``params`` gets a zero row; the second result says which did.
    Under DDP the rows are averaged over ranks (as DDP averages the step's gradients), so each row
    is the term's gradient on the global batch. The rows sum to the gradient of ``sum(values)``.
    """
    rows, reached = [], []
    for value in values:
        grads = (
            torch.autograd.grad(value, params, retain_graph=True, allow_unused=True)
            if value.requires_grad
            else [None] * len(params)
        )
        reached.append(any(g is not None for g in grads))
        rows.append(torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for g, p in zip(grads, params)]))
    return all_mean(torch.stack(rows)), reached


def all_mean(tensor: Tensor) -> Tensor:
    """The mean of ``tensor`` over DDP ranks (the tensor itself outside distributed runs)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        tensor = tensor.clone()
        dist.all_reduce(tensor)
        tensor /= dist.get_world_size()
    return tensor


def attribution(grads: Tensor, weights: Tensor) -> tuple[Tensor, Tensor]:
    """Gradient norm of each weighted term and its share of the total update, from unweighted rows (K, P).

    With ``v_i = weights_i * grads_i`` and the total ``v = sum_i v_i``: ``norm_i = ||v_i||`` and
    ``share_i = <v_i, v> / ||v||^2``, the fraction of the total gradient along its own direction
    that term i contributes. The shares sum to 1; a negative share is a term pulling against the update.
    """
    weighted = grads * weights.to(grads)[:, None]
    total = weighted.sum(0)
    shares = weighted @ total / total.square().sum().clamp_min(torch.finfo(grads.dtype).tiny)
    return weighted.norm(dim=1), shares

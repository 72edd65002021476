"""The finite-loss guard: every training step's slot values are checked before anything is logged or stepped.

On NaN/Inf the guard names the slot and the term that produced it, and the batch items whose
inputs were already non-finite (or says the inputs were finite, so the loss itself overflowed).
``run.on_nonfinite`` decides what happens: ``stop`` (default) raises :class:`NonFiniteLossError`
before the backward pass, so the weights and the last checkpoint stay those of the last good
step; ``skip`` drops the step (no backward, no optimiser step) with a warning and counts it in
``train/nonfinite_skipped``. Under DDP the decision is taken jointly, so every rank skips or stops
together.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from losses import Composite

POLICIES = ("stop", "skip")


class NonFiniteLossError(RuntimeError):
    """A training step produced a NaN/Inf loss and ``run.on_nonfinite`` is ``stop``."""


@dataclass
class SlotResult:
    """One evaluation of a slot: the total, its unweighted terms, and what it was called with."""

    slot: str
    total: Tensor
    terms: dict[str, Tensor]
    composite: Composite
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = field(default_factory=list)

    @classmethod
    def sum(cls, results: Iterable[SlotResult], scale: float = 1.0) -> SlotResult:
        """Add evaluations of one slot (e.g. one per image) and multiply by ``scale``."""
        results = list(results)
        first = results[0]
        total = sum(r.total for r in results) * scale
        terms = {k: sum(r.terms[k] for r in results) * scale for k in first.terms}
        calls = [c for r in results for c in r.calls]
        return cls(first.slot, total, terms, first.composite, calls)

    def loggable(self) -> dict[str, Tensor]:
        """``{slot: total}`` plus ``{slot/term: value}`` for composites of several terms."""
        values = {self.slot: self.total}
        if len(self.terms) > 1:
            values.update({f"{self.slot}/{name}": value for name, value in self.terms.items()})
        return values


def all_finite(results: Iterable[SlotResult]) -> Tensor:
    """One boolean tensor: are every total and every term finite? (No host sync here.)"""
    flags = [torch.isfinite(v).all() for r in results for v in (r.total, *r.terms.values())]
    return torch.stack(flags).all()


def describe(results: Mapping[str, SlotResult], where: str) -> str:
    """One line naming each non-finite slot/term and the batch items with non-finite inputs."""
    parts = []
    for result in results.values():
        bad_terms = {n: v for n, v in result.terms.items() if not bool(torch.isfinite(v).all())}
        if not bad_terms and bool(torch.isfinite(result.total).all()):
            continue
        if not bad_terms:  # terms finite, total not: the weighting itself overflowed
            parts.append(f"loss.{result.slot} total = {float(result.total)} (terms finite: check weights/balance)")
            continue
        for term, value in bad_terms.items():
            parts.append(f"loss.{result.slot} term {term!r} = {float(value)}" + _bad_inputs(result, term))
    return f"non-finite loss at {where}: " + "; ".join(parts)


def _bad_inputs(result: SlotResult, term: str) -> str:
    index = result.composite.names.index(term)
    wanted = result.composite.term_inputs[index] or result.composite.inputs
    found = []
    for args, named in result.calls:
        values = result.composite.term_arguments(args, named)[index]
        names = wanted if wanted and len(wanted) == len(values) else [f"#{i}" for i in range(len(values))]
        for name, value in zip(names, values):
            if isinstance(value, Tensor) and value.is_floating_point() and value.dim() > 0:
                rows = (~torch.isfinite(value.detach()).reshape(value.shape[0], -1).all(1)).nonzero().flatten()
                if rows.numel():
                    found.append(f"input {name!r} non-finite at batch items {rows.tolist()[:10]}")
    return f" ({'; '.join(found)})" if found else " (its inputs are finite: the loss itself overflowed)"

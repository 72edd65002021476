"""Verification metrics on pair similarities: k-fold accuracy (threshold chosen on the other folds) and TAR@FAR.

>>> scores = torch.tensor([0.9, 0.2, 0.8, 0.1, 0.7, 0.3])   # genuine and impostor pairs mixed in every fold
>>> same = torch.tensor([1, 0, 1, 0, 1, 0])
>>> round(float(kfold_accuracy(scores, same, folds=3)), 4)   # fold 3's threshold 0.25 (from folds 1-2) accepts 0.3
0.8333
>>> float(tar_at_far(scores, same, far=0.0))
1.0
"""

from __future__ import annotations

import torch
from torch import Tensor


def _accuracies(scores: Tensor, same: Tensor, thresholds: Tensor) -> Tensor:
    """Accuracy (T,) of ``score > threshold`` for each threshold."""
    predicted = scores.unsqueeze(0) > thresholds.unsqueeze(1)
    return (predicted == same.bool().unsqueeze(0)).float().mean(1)


def kfold_accuracy(scores: Tensor, same: Tensor, folds: int = 10) -> Tensor:
    """Mean over ``folds`` contiguous folds of the test-fold accuracy at the threshold best on the other folds.

    The LFW protocol as insightface evaluates it (``KFold(n_splits=10, shuffle=False)``): folds follow
    the pair order, so the pair list must mix genuine and impostor pairs (LFW's and the synthetic set's
    do). Candidate thresholds are midpoints between consecutive sorted scores (and both ends).
    """
    scores, same = scores.double().flatten(), same.flatten()
    n = scores.numel()
    if n < folds:
        raise ValueError(f"verification: {n} pairs cannot be split into {folds} folds")
    ordered = scores.sort().values
    thresholds = torch.cat((ordered[:1] - 1e-6, (ordered[1:] + ordered[:-1]) / 2, ordered[-1:] + 1e-6))
    fold = torch.arange(n) * folds // n
    accuracies = []
    for k in range(folds):
        train, test = fold != k, fold == k
        best = thresholds[_accuracies(scores[train], same[train], thresholds).argmax()]
        accuracies.append(_accuracies(scores[test], same[test], best.view(1))[0])
    return torch.stack(accuracies).mean()


def tar_at_far(scores: Tensor, same: Tensor, far: float = 1e-3) -> Tensor:
    """True-accept rate at the strictest threshold whose false-accept rate is <= ``far``.

    With ``n`` impostor pairs the FAR resolution is ``1/n``: for ``far < 1/n`` the threshold is the
    highest impostor score (no false accept allowed).
    """
    scores, same = scores.double().flatten(), same.flatten().bool()
    negatives = scores[~same].sort(descending=True).values
    if negatives.numel() == 0 or same.sum() == 0:
        raise ValueError("verification: TAR@FAR needs both genuine and impostor pairs")
    allowed = int(far * negatives.numel())
    threshold = negatives[min(allowed, negatives.numel() - 1)]
    return (scores[same] > threshold).double().mean()

"""Tabular metrics (torchmetrics): accuracy, F1, AUROC and log-loss for classification; RMSE, MAE and R2 for
regression. One definition for the network and the scikit-learn baselines, so their rows compare exactly.

Classification takes probabilities: ``(N,)`` of the positive class (``classes[1]``) for two classes, ``(N, C)``
otherwise; F1 is the positive class's (binary) or the macro average, AUROC the binary or macro one-vs-rest area,
log-loss the mean ``-log p(true class)`` with probabilities clipped to ``[1e-7, 1 - 1e-7]``. A margin loss (hinge,
modified Huber) trains scores, not calibrated probabilities: its log-loss reads ``sigmoid`` / ``softmax`` of the
scores and says little, its accuracy and AUROC are exact. Regression metrics are in the target's units.
All metrics reduce over DDP ranks.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torchmetrics import AUROC, Accuracy, F1Score, MeanAbsoluteError, MeanMetric, MeanSquaredError, R2Score

CLASSIFICATION_METRICS = ("accuracy", "f1", "auroc", "log_loss")
REGRESSION_METRICS = ("rmse", "mae", "r2")
EPS = 1e-7


def metric_names(problem: str) -> tuple[str, ...]:
    return CLASSIFICATION_METRICS if problem == "classification" else REGRESSION_METRICS


class TabularMetrics(nn.Module):
    """Accumulates :func:`metric_names` over batches; :meth:`compute` returns ``{name: value}`` and resets."""

    def __init__(self, problem: str, num_classes: int = 2) -> None:
        super().__init__()
        self.problem, self.num_classes = problem, num_classes
        if problem == "classification":
            kind = {"task": "binary"} if num_classes == 2 else {"task": "multiclass", "num_classes": num_classes}
            self.accuracy = Accuracy(**kind)
            self.f1 = F1Score(**kind, **({} if num_classes == 2 else {"average": "macro"}))
            self.auroc = AUROC(**kind)
            self.log_loss = MeanMetric()
        else:
            self.rmse = MeanSquaredError(squared=False)
            self.mae = MeanAbsoluteError()
            self.r2 = R2Score()

    @torch.no_grad()
    def update(self, output: Tensor, target: Tensor) -> None:
        """``output``: probabilities (classification) or values (regression); ``target``: class index or value."""
        output = output.detach().float()
        if self.problem != "classification":
            target = target.float()
            for metric in (self.rmse, self.mae, self.r2):
                metric.update(output, target)
            return
        target = target.long()
        for metric in (self.accuracy, self.f1, self.auroc):
            metric.update(output, target)
        p = output.clamp(EPS, 1.0 - EPS)
        if self.num_classes == 2:
            nll = -(target * p.log() + (1 - target) * (1 - p).log())
        else:
            nll = -p.gather(1, target.unsqueeze(1)).squeeze(1).log()
        self.log_loss.update(nll)

    def compute(self) -> dict[str, float]:
        values = {}
        for name in metric_names(self.problem):
            metric = getattr(self, name)
            values[name] = float(metric.compute()) if metric.update_called else math.nan
            metric.reset()
        return values


def score_name(problem: str) -> str:
    """The metric behind ``<stage>/score`` (the checkpoint monitor): accuracy or R2."""
    return "accuracy" if problem == "classification" else "r2"

"""Face embedding: backbone -> BN -> embedding, trained by an angular-margin ``head`` slot (+ optional ``aux``).

The ``head`` slot takes angular losses (arcface, cosface, curricularface, adaface ...), which own
the class-weight matrix; the task injects ``num_classes`` and ``embedding_size``. The optional
``aux`` slot takes metric losses (``center``, ``triplet``, ``contrastive``) on the same embeddings.
Evaluation embeds both images of each verification pair and their horizontal flips (the image's and
the flip's embeddings summed, then L2-normalised, as insightface evaluates), scores pairs by cosine
similarity and logs 10-fold accuracy (threshold chosen on 9 folds), TAR@FAR=1e-3 / 1e-4 and the
mean and standard deviation of the embedding norm.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

import losses
from tasks.base import LossTask
from tasks.face.metrics import kfold_accuracy, tar_at_far

BACKBONES = ("small_cnn", "resnet18")


def _small_cnn(width: int) -> tuple[nn.Module, int]:
    """Four 3x3 conv-BN-PReLU stages (width, 2w, 4w, 8w), max-pooled between: cheap enough for CPU recipes."""
    layers: list[nn.Module] = []
    cin = 3
    for i, cout in enumerate((width, 2 * width, 4 * width, 8 * width)):
        layers += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.PReLU(cout)]
        if i < 3:
            layers.append(nn.MaxPool2d(2))
        cin = cout
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(4), nn.Flatten()), 8 * width * 16


def _resnet18(weights: str | None) -> tuple[nn.Module, int]:
    net = torchvision.models.resnet18(weights=None)
    if weights is not None:
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise FileNotFoundError(
                f"model.backbone_weights: {weights} does not exist (weights are never downloaded)"
            ) from None
        net.load_state_dict(state)
    net.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)  # small face crops: no stride-4 stem
    net.maxpool = nn.Identity()
    net.fc = nn.Identity()
    return net, 512


class FaceEmbedder(nn.Module):
    """Backbone features -> BN -> dropout -> linear -> BN: the (unnormalised) embedding."""

    def __init__(self, backbone: str, embedding_size: int, width: int, dropout: float, weights: str | None) -> None:
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f"model.backbone: expected one of {BACKBONES}, got {backbone!r}")
        self.backbone, features = _small_cnn(width) if backbone == "small_cnn" else _resnet18(weights)
        self.neck = nn.Sequential(
            nn.BatchNorm1d(features), nn.Dropout(dropout), nn.Linear(features, embedding_size),
            nn.BatchNorm1d(embedding_size),
        )

    def forward(self, images: Tensor) -> Tensor:
        return self.neck(self.backbone(images))


class FaceTask(LossTask):
    """Embedding learning with an angular-margin head and optional metric losses; verification metrics."""

    LOSS_SLOTS = {
        "head": losses.Slot(
            ("angular",),
            default="arcface",
            inject=("num_classes", "embedding_size"),
            inputs=("embeddings", "labels"),
            doc="called with embeddings (N, embedding_size) and identity labels (N,)",
        ),
        "aux": losses.Slot(
            ("metric",),
            default=None,
            inject=("num_classes", "embedding_size"),
            inputs=("embeddings", "labels"),
            doc="metric losses on the same embeddings and labels (center, triplet, contrastive)",
        ),
    }
    MONITOR = "val/verification_acc"
    MONITOR_MODE = "max"

    def __init__(
        self,
        num_classes: int = 100,
        embedding_size: int = 512,
        backbone: str = "resnet18",
        backbone_weights: str | None = None,
        width: int = 32,
        dropout: float = 0.0,
        folds: int = 10,
        loss: Mapping[str, Any] | None = None,
        optim: Mapping[str, Any] | None = None,
    ) -> None:
        if num_classes < 2 or embedding_size < 1:
            raise ValueError(f"model: num_classes >= 2 and embedding_size >= 1, got {num_classes}, {embedding_size}")
        self.num_classes = num_classes
        self.embedding_size = embedding_size
        super().__init__(loss=loss, optim=optim)
        self.save_hyperparameters(ignore=["loss", "optim"])
        self.model = FaceEmbedder(backbone, embedding_size, width, dropout, backbone_weights)
        self.folds = folds
        self._scores: list[Tensor] = []
        self._same: list[Tensor] = []
        self._norms: list[Tensor] = []

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None and stage == "fit":
            found = datamodule.num_classes
            if found != self.num_classes:
                raise ValueError(
                    f"model.num_classes={self.num_classes}, but the training folder holds {found} identities; "
                    f"set model.num_classes: {found}"
                )

    def forward(self, images: Tensor) -> Tensor:
        return self.model(images)

    def embed(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """L2-normalised sum of the image's and its flip's embeddings, and the image embedding norms."""
        plain = self(images)
        both = plain + self(images.flip(-1))
        return F.normalize(both.float(), dim=1), plain.float().norm(dim=1)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor | None:
        images, labels = batch
        embeddings = self(images)
        results = [self.evaluate(slot, embeddings, labels) for slot in ("head", "aux") if slot in self.loss_slots]
        return self.finish_losses(results, batch_size=images.shape[0])

    def validation_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> None:
        self._pair_step(batch)

    def test_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> None:
        self._pair_step(batch)

    def _pair_step(self, batch: tuple[Tensor, Tensor, Tensor]) -> None:
        first, second, same = batch
        a, norm_a = self.embed(first)
        b, norm_b = self.embed(second)
        self._scores.append((a * b).sum(1))
        self._same.append(same)
        self._norms.append(torch.cat((norm_a, norm_b)))

    def on_validation_epoch_end(self) -> None:
        self._log_verification("val")

    def on_test_epoch_end(self) -> None:
        self._log_verification("test")

    def verification_metrics(self, scores: Tensor, same: Tensor, norms: Tensor) -> dict[str, Tensor]:
        folds = min(self.folds, scores.numel())
        return {
            "verification_acc": kfold_accuracy(scores, same, folds),
            "tar@far1e-3": tar_at_far(scores, same, 1e-3),
            "tar@far1e-4": tar_at_far(scores, same, 1e-4),
            "embedding_norm_mean": norms.mean(),
            "embedding_norm_std": norms.std() if norms.numel() > 1 else norms.new_zeros(()),
        }

    def _log_verification(self, stage: str) -> None:
        if not self._scores:
            return
        scores, same, norms = torch.cat(self._scores), torch.cat(self._same), torch.cat(self._norms)
        self._scores, self._same, self._norms = [], [], []
        if self._trainer is not None and self.trainer.world_size > 1:  # every rank scores the whole pair set
            scores, same, norms = (self.all_gather(t).flatten() for t in (scores, same, norms))
        if self._trainer is not None and self.trainer.sanity_checking:
            return
        values = self.verification_metrics(scores.cpu(), same.cpu(), norms.cpu())
        self.log_dict({f"{stage}/{k}": v.float() for k, v in values.items()}, prog_bar=False)

"""Semantic segmentation: an smp network trained with the registry's ``seg`` loss slot.

Modes (the same constants as the region losses):
- ``multiclass``: ``num_classes`` output channels, softmax, index targets (N, H, W);
- ``binary``: 1 channel, foreground = any class > 0, targets (N, 1, H, W) in {0, 1};
- ``multilabel``: ``num_classes - 1`` sigmoid channels, one per foreground class.
Void pixels (``ignore_index``) are passed to the loss and excluded from the metrics.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from torch import Tensor
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassF1Score,
    MulticlassJaccardIndex,
    MultilabelF1Score,
    MultilabelJaccardIndex,
)

import losses
from tasks.base import LossTask
from tasks.sampling import SampleKey
from tasks.segmentation.model import build_model
from tasks.segmentation.overlay import save_label_png, save_overlay

MODES = ("binary", "multiclass", "multilabel")


class MaskWriter(BasePredictionWriter):
    """Write each predicted class map to ``<run>/predictions/<split>/<image stem>.png``."""

    def __init__(self) -> None:
        super().__init__(write_interval="batch")

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx):
        dataset = trainer.predict_dataloaders.dataset
        if not hasattr(dataset, "samples") or batch_indices is None:
            return
        out_dir = Path(trainer.default_root_dir) / "predictions" / Path(dataset.split_dir).name
        for key, label in zip(batch_indices, prediction):
            save_label_png(label, out_dir / f"{dataset.samples[SampleKey.of(key).index][0].stem}.png")


class SegmentationTask(LossTask):
    """Per-pixel classification with any region/classification/compound loss."""

    LOSS_SLOTS = {
        "seg": losses.Slot(
            ("region", "classification", "compound"),
            default="dice + ce",
            inject=("mode", "ignore_index"),
            inputs=("logits", "target"),
            doc="called with logits (N, C, H, W) and the target of model.mode",
        )
    }
    MONITOR = "val/miou"
    MONITOR_MODE = "max"

    def __init__(
        self,
        arch: str = "unet",
        encoder: str = "resnet18",
        encoder_weights: str | None = None,
        norm: str = "batch",
        in_channels: int = 3,
        num_classes: int = 4,
        mode: str = "multiclass",
        ignore_index: int = 255,
        class_names: list[str] | None = None,
        overlay_every_n_epochs: int = 1,
        loss: Mapping[str, Any] | None = None,
        optim: Mapping[str, Any] | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"model.mode: expected one of {MODES}, got {mode!r}")
        if num_classes < 2:
            raise ValueError(f"model.num_classes: at least 2 (background + one class), got {num_classes}")
        self.mode = mode
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        super().__init__(loss=loss, optim=optim)
        self.save_hyperparameters(ignore=["loss", "optim"])
        out_channels = {"binary": 1, "multiclass": num_classes, "multilabel": num_classes - 1}[mode]
        self.model = build_model(arch, encoder, in_channels, out_channels, encoder_weights, norm)
        self.class_names = class_names or [f"class_{i}" for i in range(num_classes)]
        self.overlay_every_n_epochs = overlay_every_n_epochs
        self.val_metrics = self._metrics("val")
        self.test_metrics = self._metrics("test")

    def _metrics(self, prefix: str) -> MetricCollection:
        if self.mode == "multilabel":
            labels = self.num_classes - 1
            metrics = {
                "iou": MultilabelJaccardIndex(labels, average="none", ignore_index=self.ignore_index),
                "dice": MultilabelF1Score(labels, average="none", ignore_index=self.ignore_index),
            }
        else:
            classes = 2 if self.mode == "binary" else self.num_classes
            metrics = {
                "iou": MulticlassJaccardIndex(classes, average="none", ignore_index=self.ignore_index),
                "dice": MulticlassF1Score(classes, average="none", ignore_index=self.ignore_index),
            }
        return MetricCollection(metrics, prefix=f"{prefix}/")

    # ------------------------------------------------------------------ targets and predictions

    def loss_target(self, mask: Tensor) -> Tensor:
        """Index mask (N, H, W) -> the target form of the configured mode."""
        if self.mode == "multiclass":
            return mask
        void = (mask == self.ignore_index).unsqueeze(1)
        if self.mode == "binary":
            target = (mask > 0).unsqueeze(1).float()
        else:
            classes = torch.arange(1, self.num_classes, device=mask.device).view(1, -1, 1, 1)
            target = (mask.unsqueeze(1) == classes).float()
        return torch.where(void, torch.full_like(target, float(self.ignore_index)), target)

    def predict_labels(self, logits: Tensor) -> Tensor:
        """Logits -> (N, H, W) class indices (multiclass/binary) or (N, C-1, H, W) 0/1 (multilabel)."""
        if self.mode == "multiclass":
            return logits.argmax(1)
        if self.mode == "binary":
            return (logits[:, 0] > 0).long()
        return (logits > 0).long()

    def _metric_target(self, mask: Tensor) -> Tensor:
        if self.mode == "multiclass":
            return mask
        if self.mode == "binary":
            return torch.where(mask == self.ignore_index, mask, (mask > 0).long())
        return self.loss_target(mask).long()

    # ------------------------------------------------------------------ Lightning hooks

    def forward(self, images: Tensor) -> Tensor:
        return self.model(images)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        images, mask = batch
        logits = self(images)
        return self.compute_loss("seg", logits, self.loss_target(mask), batch_size=images.shape[0])

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "val", self.val_metrics)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "test", self.test_metrics)

    def predict_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        """Class maps (N, H, W); :class:`MaskWriter` saves them as PNGs."""
        return self.label_map(self.predict_labels(self(batch[0])))

    def configure_callbacks(self) -> list[L.Callback]:
        return [MaskWriter()]

    def _evaluate(self, batch: tuple[Tensor, Tensor], batch_idx: int, stage: str, metrics: MetricCollection) -> None:
        images, mask = batch
        logits = self(images)
        self.compute_loss("seg", logits, self.loss_target(mask), stage=stage, batch_size=images.shape[0])
        preds = self.predict_labels(logits)
        metrics.update(preds, self._metric_target(mask))
        if stage == "val" and batch_idx == 0 and self._should_draw_overlay():
            self._draw_overlay(images, mask, preds)

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val", self.val_metrics)

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test", self.test_metrics)

    def _log_metrics(self, stage: str, metrics: MetricCollection) -> None:
        values = metrics.compute()
        metrics.reset()
        iou, dice = values[f"{stage}/iou"], values[f"{stage}/dice"]
        names = (
            self.class_names
            if self.mode == "multiclass"
            else (["background", "foreground"] if self.mode == "binary" else self.class_names[1:])
        )
        foreground = iou if self.mode == "multilabel" else iou[1:]
        # torchmetrics already reduced across ranks; sync_dist only averages identical values
        self.log_dict(
            {f"{stage}/miou": iou.mean(), f"{stage}/miou_fg": foreground.mean(), f"{stage}/dice": dice.mean()},
            sync_dist=True,
        )
        self.log_dict({f"{stage}/iou/{name}": value for name, value in zip(names, iou)}, sync_dist=True)

    # ------------------------------------------------------------------ overlays

    def _should_draw_overlay(self) -> bool:
        return (
            self.overlay_every_n_epochs > 0
            and self.trainer.is_global_zero
            and not self.trainer.sanity_checking
            and self.current_epoch % self.overlay_every_n_epochs == 0
        )

    def label_map(self, preds: Tensor) -> Tensor:
        """Predictions as one class index per pixel; multilabel shows the highest active label."""
        if self.mode != "multilabel":
            return preds
        weights = torch.arange(1, self.num_classes, device=preds.device).view(1, -1, 1, 1)
        return (preds * weights).amax(1)

    def _draw_overlay(self, images: Tensor, mask: Tensor, preds: Tensor) -> None:
        preds = self.label_map(preds)
        if self.mode == "binary":
            mask = self._metric_target(mask)
        path = Path(self.trainer.default_root_dir) / "predictions" / f"epoch_{self.current_epoch:03d}.png"
        save_overlay(
            images, mask, preds, path, self.num_classes, self.ignore_index, title=f"epoch {self.current_epoch}"
        )

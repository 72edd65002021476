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
import torch.nn.functional as F
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
from tasks.segmentation.model import build_model
from tasks.segmentation.overlay import save_image_overlay, save_label_png, save_overlay

MODES = ("binary", "multiclass", "multilabel")


class PredictionWriter(BasePredictionWriter):
    """Write each image's class map and overlay under ``<run>/predictions/<folder>/{masks,overlays}/<stem>.png``.

    Class maps are palette PNGs of class indices at the image's own size (the format the loader
    reads masks in); overlays colour the classes over the image.
    """

    def __init__(self) -> None:
        super().__init__(write_interval="batch")

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx):
        dataset = trainer.predict_dataloaders.dataset
        out_dir = Path(trainer.default_root_dir) / "predictions" / dataset.name
        for index, labels in zip(batch["index"].tolist(), prediction):
            path = dataset.paths[index]
            save_label_png(labels, out_dir / "masks" / f"{path.stem}.png")
            save_image_overlay(path, labels, out_dir / "overlays" / f"{path.stem}.png", pl_module.num_classes)


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
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(
                f"model.class_names: {len(class_names)} names for model.num_classes={num_classes} "
                f"(one per class, background first): {list(class_names)}"
            )
        default_names = ["background", "foreground"] if (mode, num_classes) == ("binary", 2) else None
        self.class_names = list(class_names or default_names or [f"class_{i}" for i in range(num_classes)])
        #: how many class indices a mask may hold (checked by the datamodule); binary: any value > 0 is foreground
        self.mask_classes = None if mode == "binary" else num_classes
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

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> list[Tensor]:
        """One (H, W) class map per image at its size on disk; :class:`PredictionWriter` saves them.

        The batch is edge-padded to a multiple of the encoder's output stride (any image size
        works), each image's logits are cropped back to its extent and, when the datamodule
        resized it (``data.image_size``), resized to its original size before the argmax.
        """
        images = batch["image"]
        stride = getattr(self.model.encoder, "output_stride", 32)
        height, width = images.shape[-2:]
        logits = self(F.pad(images, (0, -width % stride, 0, -height % stride), mode="replicate"))
        maps = []
        for logit, (h, w), original in zip(logits, batch["size"].tolist(), batch["original"].tolist()):
            logit = logit[None, :, :h, :w]
            if [h, w] != original:
                logit = F.interpolate(logit, size=original, mode="bilinear", align_corners=False)
            maps.append(self.label_map(self.predict_labels(logit))[0])
        return maps

    def configure_callbacks(self) -> list[L.Callback]:
        return [PredictionWriter()]

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

    def metric_names(self) -> list[str]:
        """The class each per-class metric is about: binary names background and foreground from ``class_names``."""
        if self.mode == "binary":
            return [self.class_names[0], self.class_names[1] if self.num_classes == 2 else "foreground"]
        return self.class_names[1:] if self.mode == "multilabel" else self.class_names

    def _log_metrics(self, stage: str, metrics: MetricCollection) -> None:
        """``miou``/``dice`` (class means), ``iou/<class>``/``dice/<class>`` for every class, and the foreground
        means ``miou_fg``/``dice_fg`` where several classes are foreground (otherwise they repeat a per-class value).
        """
        values = metrics.compute()
        metrics.reset()
        iou, dice = values[f"{stage}/iou"], values[f"{stage}/dice"]
        logged = {f"{stage}/miou": iou.mean(), f"{stage}/dice": dice.mean()}
        if self.mode == "multiclass" and self.num_classes > 2:
            logged |= {f"{stage}/miou_fg": iou[1:].mean(), f"{stage}/dice_fg": dice[1:].mean()}
        for name, class_iou, class_dice in zip(self.metric_names(), iou, dice):
            logged |= {f"{stage}/iou/{name}": class_iou, f"{stage}/dice/{name}": class_dice}
        # torchmetrics already reduced across ranks; sync_dist only averages identical values
        self.log_dict(logged, sync_dist=True)

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

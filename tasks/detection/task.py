"""One-stage object detection (FCOS, RetinaNet) with registry ``cls`` / ``box`` / ``centerness`` slots.

The training step is torchvision's: the detector assigns anchors to ground truth, its head
(see :mod:`tasks.detection.model`) returns the matched pairs of each slot, and the task
evaluates the slots on them, normalised by the number of foreground anchors exactly as
torchvision does. Every slot loss runs with ``reduction="sum"`` for that reason (the slots fix
it; another reduction is an error). Validation
reports COCO mAP, mAP@0.5 and mAP@0.75 (``MeanAveragePrecision``, pycocotools backend) and
draws ``predictions/epoch_XXX.png`` (ground truth green, predictions red) under the run folder.

``predict`` (on ``data.predict_dir``, a folder of unlabelled images of any size, or the validation
set) writes ``predictions/<folder>/detections.json``, COCO results style (``file_name``,
``image_id``, ``category_id`` = the label 0..K-1, ``category_name``, ``bbox`` [x, y, w, h] in the
image's pixels, ``score`` >= ``predict_score_thresh``), and one overlay PNG per image in
``predictions/<folder>/overlays/``. The class names travel in the checkpoint.

With ``balance: uncertainty`` the learnable weights act on the normalised terms (the task passes
the foreground count as the slot's ``normalizer``), so the ``log sigma^2`` regulariser is not
scaled by the count.

``num_classes`` comes from the config; at ``setup`` it is checked against the datamodule's
categories, so a mismatch fails before the first step with both numbers in the message.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor
from torchmetrics.detection import MeanAveragePrecision

import losses
from tasks.base import LossTask
from tasks.detection.model import ARCHS, BOX_FAMILIES, build_detector
from tasks.detection.plot import save_predictions
from tasks.guard import SlotResult

Batch = tuple[list[Tensor], list[dict[str, Any]]]
_SUMMED = "detection heads sum each loss and divide by the number of foreground anchors, as torchvision does"


class DetectionTask(LossTask):
    """FCOS / RetinaNet whose head losses come from the loss registry."""

    LOSS_SLOTS = {
        "cls": losses.Slot(("classification",), default="focal", fixed={"reduction": "sum", "mode": "multilabel"},
                           inputs=("logits", "target"), doc=f"sigmoid logits (M, C), one-hot targets; {_SUMMED}"),
        "box": losses.Slot(("overlap", "regression"), default="giou", inject=("image_size",),
                           fixed={"reduction": "sum"}, inputs=("pred", "target"),
                           doc=f"decoded boxes (M, 4) xyxy (overlap) or deltas (regression); {_SUMMED}"),
        "centerness": losses.Slot(("classification",), default="bce", fixed={"reduction": "sum", "mode": "binary"},
                                  inputs=("logits", "target"), doc=f"logits (M, 1), soft targets (M, 1); {_SUMMED}"),
    }
    MONITOR = "val/map_50"
    MONITOR_MODE = "max"

    def __init__(
        self,
        arch: str = "fcos",
        backbone: str = "resnet18",
        num_classes: int = 3,
        min_size: int = 256,
        max_size: int = 256,
        fpn_channels: int = 256,
        weights_path: str | None = None,
        trainable_layers: int | None = None,
        score_thresh: float = 0.05,
        nms_thresh: float = 0.6,
        detections_per_img: int = 100,
        class_names: list[str] | None = None,
        plot_every_n_epochs: int = 1,
        plot_score_thresh: float = 0.3,
        predict_score_thresh: float = 0.3,
        loss: Mapping[str, Any] | None = None,
        optim: Mapping[str, Any] | None = None,
    ) -> None:
        if arch not in ARCHS:
            raise ValueError(f"model.arch: {arch!r} is not one of {ARCHS}")
        #: injected into box losses that normalise by the image (``mpdiou``): exact for square inputs
        self.image_size = (float(min_size), float(max_size))
        loss = dict(loss or {})
        if arch == "retinanet":  # no centerness branch: drop the slot so no unused loss (or weight) exists
            if loss.pop("centerness", None) is not None:
                rank_zero_warn("loss.centerness is ignored: RetinaNet has no centerness branch")
            loss["centerness"] = None
        super().__init__(loss=loss, optim=optim)
        self.save_hyperparameters(ignore=["loss", "optim"])
        self.num_classes = num_classes
        self.class_names = list(class_names) if class_names else None
        self.plot_every_n_epochs = plot_every_n_epochs
        self.plot_score_thresh = plot_score_thresh
        self.predict_score_thresh = predict_score_thresh
        self._results: list[dict[str, Any]] = []
        self.model = build_detector(arch, backbone, num_classes, min_size, max_size, fpn_channels, weights_path,
                                    trainable_layers, score_thresh, nms_thresh, detections_per_img,
                                    box_family=self._box_family(self.loss_slots["box"]))
        self._check_box_slot()
        self.val_map = MeanAveragePrecision(box_format="xyxy", iou_type="bbox", backend="pycocotools")
        self.test_map = MeanAveragePrecision(box_format="xyxy", iou_type="bbox", backend="pycocotools")

    # ------------------------------------------------------------------ losses

    @staticmethod
    def _box_family(slot: losses.Composite) -> str:
        """``overlap`` (decoded boxes) or ``regression`` (encoded deltas); mixing them in one slot is an error."""
        families = {losses.get(name).family for name in slot.loss_names}
        if len(families) != 1 or not families <= set(BOX_FAMILIES):
            raise losses.LossConfigError(
                f"loss.box: terms must all be overlap losses (decoded boxes) or all regression losses (box deltas); "
                f"got families {sorted(families)}")
        return families.pop()

    def _check_box_slot(self) -> None:
        """Call the box slot once on two (N, 4) xyxy boxes so e.g. a rotated-box loss fails now, not mid-epoch."""
        boxes = torch.tensor([[0.0, 0.0, 4.0, 4.0], [1.0, 1.0, 5.0, 6.0]])
        try:
            with torch.no_grad():
                self.loss_slots["box"](boxes, boxes.flip(0))
        except (losses.LossInputError, ValueError, RuntimeError) as err:
            raise losses.LossConfigError(f"loss.box: does not accept (N, 4) boxes / deltas: {err}") from None

    # ------------------------------------------------------------------ Lightning hooks

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        data_classes = getattr(datamodule, "class_names", None)
        if data_classes is None:
            return
        if len(data_classes) != self.num_classes:
            raise ValueError(f"model.num_classes={self.num_classes} but the data has {len(data_classes)} categories "
                             f"{list(data_classes)}; set model.num_classes: {len(data_classes)}")
        self.class_names = self.class_names or list(data_classes)
        if stage == "fit" and hasattr(datamodule, "train_set"):
            warning = small_object_warning(datamodule.train_set, self.hparams.arch, *self.image_size)
            if warning:
                rank_zero_warn(warning)

    def shared_layer(self, slot: str) -> torch.nn.Module:
        return self.model.head  # holds every slot's sub-head (per-term gradients: LossTask.shared_layer)

    def forward(self, images: list[Tensor]) -> list[dict[str, Tensor]]:
        return self.model(images)

    def slot_results(self, images: list[Tensor], targets: list[dict[str, Tensor]]) -> list[SlotResult]:
        """Evaluate every slot on the pairs the head matched (a training-mode forward), normalised as torchvision."""
        slot_inputs = self.model(images, targets)
        return [
            SlotResult.sum(
                (self.evaluate(slot, *args, normalizer=n) for args, n in zip(inputs.calls, inputs.normalizers)),
                inputs.scale,
            )
            for slot, inputs in slot_inputs.items()
        ]

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor | None:
        images, targets = batch
        results = self.slot_results(images, [_training_target(t) for t in targets])
        return self.finish_losses(results, "train", len(images))

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "val", self.val_map)

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "test", self.test_map)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["class_names"] = self.class_names  # predict on unlabelled images names the classes

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.class_names = self.class_names or checkpoint.get("class_names")

    def on_predict_epoch_start(self) -> None:
        self._results = []

    def predict_step(self, batch: Batch, batch_idx: int) -> list[dict[str, Tensor]]:
        """Detect, keep the detections above ``predict_score_thresh`` for the json, draw one overlay per image."""
        images, targets = batch
        detections = self(images)
        folder = self._predict_folder()
        for image, target, det in zip(images, targets, detections):
            name = str(target.get("file_name", target["image_id"]))
            keep = det["scores"] >= self.predict_score_thresh
            for (x0, y0, x1, y1), label, score in zip(det["boxes"][keep].tolist(), det["labels"][keep].tolist(),
                                                      det["scores"][keep].tolist()):
                self._results.append({
                    "file_name": name, "image_id": int(target["image_id"]), "category_id": int(label),
                    "category_name": self.class_names[label] if self.class_names else str(label),
                    "bbox": [round(v, 2) for v in (x0, y0, x1 - x0, y1 - y0)], "score": round(score, 4),
                })  # fmt: skip
            save_predictions([image], [target], [det], folder / "overlays" / f"{Path(name).stem}.png", self.class_names,
                             self.predict_score_thresh, max_images=1, title=name)
        return detections

    def on_predict_epoch_end(self) -> None:
        rank = f".rank{self.global_rank}" if self.trainer.world_size > 1 else ""
        path = self._predict_folder() / f"detections{rank}.json"
        path.write_text(json.dumps(self._results, indent=1))

    def _predict_folder(self) -> Path:
        name = getattr(getattr(self.trainer, "datamodule", None), "predict_name", "predict")
        return Path(self.trainer.default_root_dir) / "predictions" / name

    def _evaluate(self, batch: Batch, batch_idx: int, stage: str, metric: MeanAveragePrecision) -> None:
        images, targets = batch
        detections = self(images)
        metric.update([{k: d[k] for k in ("boxes", "scores", "labels")} for d in detections],
                      [{"boxes": t["boxes"], "labels": t["labels"], "iscrowd": t["iscrowd"].long()} for t in targets])
        if stage == "val" and batch_idx == 0 and self._should_plot():
            path = Path(self.trainer.default_root_dir) / "predictions" / f"epoch_{self.current_epoch:03d}.png"
            save_predictions(images, targets, detections, path, self.class_names, self.plot_score_thresh,
                             title=f"epoch {self.current_epoch}")

    def on_validation_epoch_end(self) -> None:
        self._log_map("val", self.val_map)

    def on_test_epoch_end(self) -> None:
        self._log_map("test", self.test_map)

    def _log_map(self, stage: str, metric: MeanAveragePrecision) -> None:
        values = metric.compute()
        metric.reset()
        keys = ("map", "map_50", "map_75", "map_small", "map_medium", "map_large", "mar_100")
        self.log_dict({f"{stage}/{k}": values[k].float() for k in keys if k in values}, prog_bar=False)

    def _should_plot(self) -> bool:
        return (self.plot_every_n_epochs > 0 and self.trainer.is_global_zero and not self.trainer.sanity_checking
                and self.current_epoch % self.plot_every_n_epochs == 0)


#: the smallest object side (pixels at the model's input) each detector places positives on: FCOS's finest
#: FPN stride (a location must fall inside the box), RetinaNet's 32 px P3 anchors at IoU >= 0.5
MIN_OBJECT_SIDE = {"fcos": 8.0, "retinanet": 20.0}


def small_object_warning(dataset: Any, arch: str, min_size: float, max_size: float, share: float = 0.25) -> str | None:
    """A warning naming ``model.min_size`` when more than ``share`` of the boxes are too small at the model's input.

    torchvision resizes each image so its shorter side is ``min_size`` (the longer at most ``max_size``);
    a box whose side (geometric mean of width and height) falls below :data:`MIN_OBJECT_SIDE` gets no
    positive location or anchor, and the detector learns nothing about it (box loss flat, mAP 0).
    """
    sizes = getattr(dataset, "sizes", None)
    if not sizes:
        return None
    sides = []
    for (_, target), (width, height) in zip(dataset.items, sizes):
        boxes = target["boxes"]
        if len(boxes):
            scale = min(min_size / min(width, height), max_size / max(width, height))
            sides.append(((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).sqrt() * scale)
    if not sides:
        return None
    sides_at_input = torch.cat(sides)
    limit = MIN_OBJECT_SIDE[arch]
    small = float((sides_at_input < limit).float().mean())
    if small <= share:
        return None
    median = float(sides_at_input.median())
    factor = math.ceil(2 * limit / max(median, 1e-6))
    return (f"{small:.0%} of the training boxes are smaller than {limit:g} px at the model's input (median side "
            f"{median:.1f} px with model.min_size={min_size:g}); {arch} places no positives on them and will not "
            f"learn them. Raise model.min_size and model.max_size about {factor}x (e.g. model.min_size="
            f"{int(min_size * factor)} model.max_size={int(max_size * factor)}).")


def _training_target(target: dict[str, Any]) -> dict[str, Tensor]:
    """Crowd / ignored / difficult objects are no positives for torchvision's matchers: drop them."""
    keep = ~target["iscrowd"]
    return {"boxes": target["boxes"][keep], "labels": target["labels"][keep]}

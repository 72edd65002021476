"""The segmentation task: modes, targets, metrics, weights loading, a few optimisation steps."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from tasks.segmentation import SegmentationDataModule, SegmentationTask
from tasks.segmentation.data import collate_images
from tasks.segmentation.model import batchnorm_to_groupnorm, build_model


def tiny_task(mode: str, loss: str = "dice", **kwargs) -> SegmentationTask:
    return SegmentationTask(
        arch="unet",
        encoder="resnet18",
        num_classes=4,
        mode=mode,
        loss={"seg": loss},
        overlay_every_n_epochs=0,
        **kwargs,
    )


@pytest.mark.parametrize(("mode", "channels"), [("multiclass", 4), ("binary", 1), ("multilabel", 3)])
def test_modes_set_output_channels_and_targets(mode, channels):
    task = tiny_task(mode)
    mask = torch.tensor([[[0, 1], [3, 255]]])
    logits = task(torch.randn(2, 3, 64, 64))
    assert logits.shape == (2, channels, 64, 64)
    target = task.loss_target(mask)
    if mode == "multiclass":
        assert torch.equal(target, mask)
    elif mode == "binary":
        assert target.tolist() == [[[[0.0, 1.0], [1.0, 255.0]]]]
    else:
        assert target.shape == (1, 3, 2, 2)
        assert target[0, :, 1, 0].tolist() == [0.0, 0.0, 1.0] and (target[0, :, 1, 1] == 255).all()


def test_loss_slot_receives_task_mode_and_ignore_index():
    task = tiny_task("binary", ignore_index=7)
    dice = task.loss_slots["seg"].terms[0]
    assert dice.mode == "binary" and dice.ignore_index == 7


@pytest.mark.parametrize("mode", ["multiclass", "binary", "multilabel"])
def test_fit_a_few_steps_in_every_mode(mode, shapes_cache, tmp_path):
    datamodule = SegmentationDataModule(
        batch_size=4, cache_dir=str(shapes_cache), shapes={"num_train": 16, "num_val": 8, "size": 32}
    )
    task = tiny_task(mode, loss="dice + jaccard")
    trainer = L.Trainer(
        max_steps=2,
        limit_val_batches=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        default_root_dir=tmp_path,
        num_sanity_val_steps=0,
        val_check_interval=2,
    )
    trainer.fit(task, datamodule=datamodule)
    metrics = trainer.callback_metrics
    assert torch.isfinite(metrics["train/loss/seg_step"])
    assert 0.0 <= float(metrics["val/miou"]) <= 1.0
    names = {"multiclass": ["class_0", "class_1", "class_2", "class_3"], "binary": ["class_0", "foreground"]}
    for name in names.get(mode, ["class_1", "class_2", "class_3"]):
        assert f"val/iou/{name}" in metrics and f"val/dice/{name}" in metrics, sorted(metrics)
    assert ("val/miou_fg" in metrics) == (mode == "multiclass")  # elsewhere it would repeat a per-class value


def test_encoder_weights_from_a_local_path(tmp_path):
    source = build_model("unet", "resnet18", 3, 2, None)
    path = tmp_path / "encoder.pt"
    torch.save(source.encoder.state_dict(), path)
    model = build_model("unet", "resnet18", 3, 2, str(path))
    torch.testing.assert_close(model.encoder.conv1.weight, source.encoder.conv1.weight)
    with pytest.raises(FileNotFoundError, match="never downloaded"):
        build_model("unet", "resnet18", 3, 2, str(tmp_path / "missing.pt"))


def test_bad_model_settings_name_the_key():
    with pytest.raises(ValueError, match="model.arch"):
        build_model("unet3000", "resnet18", 3, 2, None)
    with pytest.raises(ValueError, match="model.mode"):
        tiny_task("softmax")


def test_groupnorm_conversion_keeps_function_shape_and_removes_batchnorm():
    model = batchnorm_to_groupnorm(build_model("unet", "resnet18", 3, 2, None))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 2, 64, 64)  # GroupNorm: batch of 1 is fine


def logged_metrics(task: SegmentationTask, preds: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    logged: dict[str, float] = {}
    task.log_dict = lambda values, **kwargs: logged.update({k: float(v) for k, v in values.items()})
    task.val_metrics.update(preds, task._metric_target(mask))
    task._log_metrics("val", task.val_metrics)
    return logged


def test_binary_metrics_name_the_foreground_class_and_log_its_dice():
    task = SegmentationTask(num_classes=2, mode="binary", class_names=["background", "nucleus"], loss={"seg": "dice"})
    mask = torch.tensor([[[0, 1, 1, 255]]])
    logged = logged_metrics(task, torch.tensor([[[0, 1, 0, 1]]]), mask)
    # foreground: 1 true positive, 1 false negative -> IoU 1/2, Dice 2/3; background: IoU 1/2, Dice 2/3
    assert logged == pytest.approx(
        {"val/miou": 0.5, "val/dice": 2 / 3, "val/iou/background": 0.5, "val/dice/background": 2 / 3}
        | {"val/iou/nucleus": 0.5, "val/dice/nucleus": 2 / 3}
    )


def test_class_names_name_per_class_metrics_and_must_fit_num_classes():
    task = tiny_task("multiclass", class_names=["bg", "disc", "square", "triangle"])
    logged = logged_metrics(task, torch.tensor([[[0, 1, 2, 2]]]), torch.tensor([[[0, 1, 2, 3]]]))
    assert logged["val/iou/square"] == pytest.approx(0.5) and logged["val/dice/triangle"] == 0.0
    assert logged["val/miou_fg"] == pytest.approx((1 + 0.5 + 0) / 3)
    with pytest.raises(ValueError, match="model.class_names: 3 names for model.num_classes=4"):
        tiny_task("multiclass", class_names=["bg", "disc", "square"])


@pytest.mark.parametrize("mode", ["binary", "multilabel"])  # multiclass: tests/tasks/segmentation/test_predict.py
def test_predict_step_returns_class_maps_at_each_images_size(mode):
    task = tiny_task(mode).eval()
    items = [(torch.randn(3, 40, 52), (40, 52), 0), (torch.randn(3, 33, 20), (33, 20), 1)]  # not multiples of 32
    resized = [(torch.randn(3, 32, 32), (50, 70), 2)]  # data.image_size=32: back to its size on disk
    with torch.no_grad():
        maps = task.predict_step(collate_images(items), 0) + task.predict_step(collate_images(resized), 0)
    assert [tuple(m.shape) for m in maps] == [(40, 52), (33, 20), (50, 70)]
    assert all(m.dtype == torch.int64 and 0 <= m.min() and m.max() < 4 for m in maps)

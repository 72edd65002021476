"""The segmentation task: modes, targets, metrics, weights loading, a few optimisation steps."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from tasks.segmentation import SegmentationDataModule, SegmentationTask
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
    assert 0.0 <= float(metrics["val/miou"]) <= 1.0 and "val/miou_fg" in metrics


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

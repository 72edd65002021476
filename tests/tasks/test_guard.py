"""The finite-loss guard: a NaN on a chosen step names its slot and term; stop keeps the last good checkpoint."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from tasks.guard import NonFiniteLossError
from trainer.build import build, run_directory, validate
from trainer.config import load_config, save_config


class PoisonBatch(L.Callback):
    """Turn one sample of the batch at ``step`` into NaN."""

    def __init__(self, step: int, item: int = 1) -> None:
        self.step, self.item = step, item

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            batch[0][self.item] = float("nan")


def _fit(config_path, overrides, poison_step: int):
    cfg = load_config(config_path, ["run.checkpoint_every_n_steps=1", "model.norm=group", *overrides])
    config = validate(cfg)
    run_dir = run_directory(config["run"], config["task"])
    save_config(cfg, run_dir)
    objects = build(config, run_dir)
    objects.trainer.callbacks.append(PoisonBatch(poison_step))
    objects.trainer.fit(objects.task, datamodule=objects.datamodule)
    return objects


def test_stop_names_slot_term_and_batch_items_and_keeps_the_last_good_checkpoint(tiny_segmentation_config):
    with pytest.raises(NonFiniteLossError) as error:
        _fit(tiny_segmentation_config, ["run.name=stop"], poison_step=3)
    message = str(error.value)
    assert "epoch 0, step 3" in message and "loss.seg term 'dice' = nan" in message
    assert "input 'logits' non-finite at batch items [1]" in message
    last = tiny_segmentation_config.parent / "runs" / "stop" / "version_0" / "checkpoints" / "last.ckpt"
    state = torch.load(last, map_location="cpu", weights_only=False)
    assert state["global_step"] == 3  # written after the last good step, not overwritten by the bad one
    assert all(torch.isfinite(v).all() for v in state["state_dict"].values() if v.is_floating_point())


def test_skip_drops_the_step_and_training_continues(tiny_segmentation_config):
    objects = _fit(tiny_segmentation_config, ["run.name=skip", "run.on_nonfinite=skip"], poison_step=2)
    assert objects.task.nonfinite_skipped == 1
    assert objects.trainer.global_step == 8  # 2 epochs x 4 batches; the skipped one had no gradient to apply
    assert all(torch.isfinite(p).all() for p in objects.task.parameters())
    assert torch.isfinite(objects.trainer.callback_metrics["val/loss/seg"])


def test_policy_is_validated_with_the_config(tiny_segmentation_config):
    from trainer.config import ConfigError

    with pytest.raises(ConfigError, match="run.on_nonfinite: expected one of stop, skip"):
        validate(load_config(tiny_segmentation_config, ["run.on_nonfinite=ignore"]))

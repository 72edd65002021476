"""Killing a run mid-epoch and resuming gives the same result as never stopping."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from trainer.build import build, run_directory, validate
from trainer.config import load_config, save_config


class CrashAtStep(L.Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step == self.step:
            raise RuntimeError("simulated crash")


def fit(config_path, overrides, crash_at=None, ckpt=None, run_dir=None):
    cfg = load_config(config_path, overrides)
    config = validate(cfg)
    run_dir = run_dir or run_directory(config["run"], config["task"])
    save_config(cfg, run_dir)
    objects = build(config, run_dir)
    if crash_at is not None:
        objects.trainer.callbacks.append(CrashAtStep(crash_at))
    objects.trainer.fit(objects.task, datamodule=objects.datamodule, ckpt_path=ckpt)
    return objects


def test_resume_mid_epoch_matches_uninterrupted_run(tiny_segmentation_config):
    overrides = ["run.checkpoint_every_n_steps=1"]
    reference = fit(tiny_segmentation_config, [*overrides, "run.name=reference"])

    with pytest.raises(RuntimeError, match="simulated crash"):
        fit(tiny_segmentation_config, [*overrides, "run.name=crashed"], crash_at=6)  # epoch 1, batch 2 of 4
    run_dir = reference.run_dir.parent.parent / "crashed" / "version_0"
    last = run_dir / "checkpoints" / "last.ckpt"
    state = torch.load(last, map_location="cpu", weights_only=False)
    assert state["global_step"] in (5, 6) and state["epoch"] == 1  # saved mid-epoch

    resumed = fit(run_dir / "config.yaml", [], ckpt=str(last), run_dir=run_dir)
    assert (run_dir / "logs" / "metrics.part0.csv").is_file()  # the pre-crash log is kept for the plots
    assert (run_dir / "plots" / "loss_curves.png").is_file()

    ref_params = dict(reference.task.named_parameters())
    for name, value in resumed.task.named_parameters():
        torch.testing.assert_close(value, ref_params[name], rtol=1e-5, atol=1e-6, msg=name)
    # loss state: uncertainty log-variances were trained and the schedule epoch restored
    assert not torch.all(resumed.task.loss_slots["seg"].log_vars == 0)
    assert float(resumed.task.loss_slots["seg"].epoch) == float(reference.task.loss_slots["seg"].epoch) == 1.0
    for key in ("val/miou", "val/loss/seg", "train/loss/seg_epoch"):  # the last: the interrupted epoch's mean
        assert resumed.trainer.callback_metrics[key].item() == pytest.approx(
            reference.trainer.callback_metrics[key].item(), rel=1e-4, abs=1e-6
        )

"""Killing a run mid-epoch and resuming gives the same result as never stopping."""

from __future__ import annotations

import signal

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


class RecordBatches(L.Callback):
    """Keep (global step, sum of the batch's images) of every training step."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, float]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        images, _ = batch
        self.seen.append((trainer.global_step, float(images.double().sum())))


def fit(config_path, overrides, crash_at=None, ckpt=None, run_dir=None, callbacks=()):
    cfg = load_config(config_path, overrides)
    config = validate(cfg)
    run_dir = run_dir or run_directory(config["run"], config["task"])
    save_config(cfg, run_dir)
    objects = build(config, run_dir)
    if crash_at is not None:
        objects.trainer.callbacks.append(CrashAtStep(crash_at))
    objects.trainer.callbacks.extend(callbacks)
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


@pytest.mark.parametrize("stopped", ["mid_epoch", "epoch_end"])
def test_a_resumed_run_with_loader_workers_sees_the_batches_of_an_uninterrupted_one(tiny_segmentation_config, stopped):
    # Lightning creates the loader's iterator before the resume position is known; workers prefetch at once
    workers = ["data.num_workers=2"]
    reference = RecordBatches()
    fit(tiny_segmentation_config, [*workers, "run.name=reference"], callbacks=[reference])
    first = RecordBatches()
    if stopped == "mid_epoch":
        with pytest.raises(RuntimeError, match="simulated crash"):
            fit(tiny_segmentation_config, [*workers, "run.name=stopped", "run.checkpoint_every_n_steps=1"],
                crash_at=6, callbacks=[first])  # fmt: skip
    else:
        fit(tiny_segmentation_config, [*workers, "run.name=stopped", "trainer.max_epochs=1"], callbacks=[first])
    run_dir = tiny_segmentation_config.parent / "runs" / "stopped" / "version_0"
    last = run_dir / "checkpoints" / "last.ckpt"
    step = torch.load(last, map_location="cpu", weights_only=False)["global_step"]
    resumed = RecordBatches()
    fit(run_dir / "config.yaml", ["trainer.max_epochs=2"], ckpt=str(last), run_dir=run_dir, callbacks=[resumed])

    assert step == 4 if stopped == "epoch_end" else step in (5, 6)  # 4 steps per epoch
    assert len(reference.seen) == 8 and resumed.seen[0][0] == step
    assert first.seen[:step] == reference.seen[:step]
    assert resumed.seen == reference.seen[step:]  # epoch 1's order (not epoch 0's again), from where it stopped


def test_a_run_leaves_the_ctrl_c_handler_as_it_found_it(tiny_segmentation_config):
    fit(tiny_segmentation_config, ["trainer.max_epochs=1"])  # the handler is installed for the run's training
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with pytest.raises(RuntimeError, match="simulated crash"):
        fit(tiny_segmentation_config, ["run.name=crashed"], crash_at=2)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler

"""Callbacks the framework adds to every run: per-step seeds, mid-epoch resume position, progress bar, plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import RichProgressBar
from lightning.pytorch.utilities import rank_zero_only

from tasks.sampling import SeededSampler
from trainer.config import ConfigError
from trainer.plots import plot_loss_curves


class ResumeDataPosition(L.Callback):
    """After resuming from a mid-epoch checkpoint, skip the samples that epoch already used.

    Lightning restores the model, optimiser, loss state and loop counters; the train loader's
    :class:`~tasks.sampling.SeededSampler` is told how many samples of the epoch were consumed,
    so the remaining batches, and their augmentations, are exactly those of an uninterrupted run.
    """

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning runs no epoch-start hooks when it restarts mid-epoch, so this is the place.
        # `processed` counts batches whose step ran (a checkpoint written in on_train_batch_end
        # has not yet marked its batch `completed`; Lightning completes it on restore).
        done = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        if not trainer.fit_loop.restarting or not 0 < done < trainer.num_training_batches:
            return
        loader = trainer.train_dataloader
        sampler = getattr(loader, "sampler", None)
        if isinstance(sampler, SeededSampler) and loader.batch_size:
            sampler.skip(done * loader.batch_size)


class StepSeed(L.Callback):
    """Seed torch's RNGs from ``(seed, global step)`` before every training batch.

    Random draws inside a step (dropout, a GAN's noise, a gradient penalty's interpolation
    points) then depend only on the step, so a resumed run draws exactly what an uninterrupted
    one would have (fairseq seeds every update the same way).
    """

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, index: int) -> None:
        torch.manual_seed((self.seed * 1_000_003 + trainer.global_step) % 2**63)


class RunProgressBar(RichProgressBar):
    """Rich progress bar that shows the run folder's version (``v_num: version_3``) beside the metrics."""

    def __init__(self, version: str) -> None:
        super().__init__(leave=True)
        self.version = version

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        metrics = super().get_metrics(trainer, pl_module)
        metrics["v_num"] = self.version
        return metrics


class LossCurvePlot(L.Callback):
    """Write ``loss_curves.png`` (train/val totals and per-term curves) when fitting ends."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    @rank_zero_only
    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for logger in trainer.loggers:
            if isinstance(logger, L.pytorch.loggers.CSVLogger):
                logger.save()
                plot_loss_curves(Path(logger.log_dir), self.directory / "loss_curves.png")
                return


class MonitorCheck(L.Callback):
    """Stop with a config error naming ``run.monitor`` when the first validation does not log it.

    The first validation is Lightning's sanity check (before any training step) unless
    ``trainer.num_sanity_val_steps: 0``; without this check the checkpoint callback would fail only
    after a whole epoch, with a traceback.
    """

    def __init__(self, monitor: str) -> None:
        self.monitor = monitor
        self.checked = False

    def on_sanity_check_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._check(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._check(trainer)

    def _check(self, trainer: L.Trainer) -> None:
        logged = sorted(k for k in trainer.callback_metrics if k.startswith("val"))
        if self.checked or (trainer.sanity_checking and not logged):  # a task may log nothing on the sanity batches
            return
        self.checked = True
        if self.monitor not in trainer.callback_metrics:
            raise ConfigError(f"run.monitor: {self.monitor!r} is not logged by this task; validation logs: "
                              f"{', '.join(logged) or 'nothing'}")

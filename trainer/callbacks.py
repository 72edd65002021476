"""Callbacks the framework adds to every run: per-step seeds, mid-epoch resume position, log cadence, progress bar,
plots, the monitor check."""

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
    """After resuming, start the train loader where the interrupted run would have gone on.

    Lightning restores the model, optimiser, loss state and loop counters; the train loader's
    :class:`~tasks.sampling.SeededSampler` is given the resumed epoch and, after a mid-epoch checkpoint,
    the number of samples that epoch already used, so the remaining batches, and their augmentations,
    are exactly those of an uninterrupted run.
    """

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning runs no epoch-start hooks when it restarts mid-epoch, and sets the sampler's epoch
        # only after this hook, so this is the place. `processed` counts batches whose step ran (a
        # checkpoint written in on_train_batch_end has not yet marked its batch `completed`).
        loader = trainer.train_dataloader
        sampler = getattr(loader, "sampler", None)
        if trainer.ckpt_path is None or not isinstance(sampler, SeededSampler):
            return
        sampler.set_epoch(trainer.fit_loop.epoch_progress.current.processed)
        done = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        if 0 < done < trainer.num_training_batches and loader.batch_size:
            sampler.skip(done * loader.batch_size)
        if loader.num_workers > 0:
            # Lightning 2.6 creates the loader's iterator in `setup_data`, before this hook, and worker
            # processes prefetch indices at once: drawn from the sampler's old epoch, without the skip.
            # A new iterator draws them again (Lightning itself calls iter() again at every new epoch).
            iter(trainer.fit_loop._data_fetcher)


class ResumeEpochMetrics(L.Callback):
    """Carry the running epoch means of the training metrics across a mid-epoch checkpoint.

    Lightning restores the loops but not what ``self.log(..., on_epoch=True)`` accumulated so far in the
    epoch, so after a resume the interrupted epoch's ``train/*_epoch`` values would cover only the batches
    that came after it. The sums (and batch counts) are saved with a mid-epoch checkpoint and added back
    after the first resumed batch has created the metrics. One process only: under DDP each rank holds
    its own part, and the interrupted epoch's training means then cover the resumed batches.
    """

    KEY = "losslab_epoch_metrics"

    def __init__(self) -> None:
        self._pending: dict[str, dict[str, torch.Tensor]] = {}

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        done = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        if trainer.world_size != 1 or not trainer.training or not 0 < done < trainer.num_training_batches:
            return
        checkpoint[self.KEY] = {
            key: {name: getattr(metric, name).detach().cpu().clone() for name in ("value", "cumulated_batch_size")
                  if hasattr(metric, name)}
            for key, metric in trainer.fit_loop.epoch_loop._results.items()
            if metric.is_tensor and metric.meta.on_epoch
        }  # fmt: skip

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        self._pending = checkpoint.get(self.KEY, {}) if trainer.world_size == 1 else {}

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if not self._pending:
            return
        for key, saved in self._pending.items():
            metric = trainer.fit_loop.epoch_loop._results.get(key)
            if metric is None:
                continue
            value = saved["value"].to(metric.value)
            if metric.meta.is_mean_reduction or metric.meta.is_sum_reduction:
                metric.value = metric.value + value
                if "cumulated_batch_size" in saved and hasattr(metric, "cumulated_batch_size"):
                    metric.cumulated_batch_size = metric.cumulated_batch_size + saved["cumulated_batch_size"].to(
                        metric.cumulated_batch_size
                    )
            elif metric.meta.is_max_reduction:
                metric.value = torch.maximum(metric.value, value)
            elif metric.meta.is_min_reduction:
                metric.value = torch.minimum(metric.value, value)
        self._pending = {}


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


class LogCadence(L.Callback):
    """Log step metrics at least once per epoch: ``log_every_n_steps`` above the optimiser steps of an epoch
    (a recipe's default on a small dataset) is lowered to that number, instead of Lightning's warning every run
    and a run whose short training curve has no points."""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        batches = trainer.num_training_batches
        if batches == float("inf") or batches < 1:
            return
        steps = max(1, int(batches) // max(1, trainer.accumulate_grad_batches))
        trainer.log_every_n_steps = min(trainer.log_every_n_steps, steps)


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

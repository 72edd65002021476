"""Checkpoints that survive crashes and interruptions.

* :class:`AtomicCheckpointIO` writes every checkpoint to a temporary file beside its target, syncs
  it to disk and renames it into place, so a crash, a full disk or a kill while saving leaves the
  previous ``last.ckpt`` intact instead of a truncated one (Lightning's own transaction writes
  through the system temp folder and copies across file systems, which is not atomic).
* :class:`LastCheckpoint` writes ``last.ckpt`` after every training epoch (after its validation),
  every ``run.checkpoint_every_n_steps`` steps and when training ends. (Lightning 2.6's
  ``ModelCheckpoint(save_last=True)`` writes it only beside a top-k save, so with nothing to rank it
  wrote ``last.ckpt`` only at the very end: a run killed in epoch 9 left nothing to resume from.)
* :class:`CheckpointOnInterrupt` makes SIGTERM (``kill``, a scheduler's pre-emption or time limit)
  and Ctrl-C stop a run at the next step boundary and write ``last.ckpt`` when at least one step
  ran, so ``fit --resume`` continues exactly. Lightning turns SIGTERM into a
  :class:`~lightning.pytorch.utilities.exceptions.SIGTERMException` at the end of a step (all
  ranks together under DDP); the first Ctrl-C is routed the same way, a second one aborts at once.
  Under SLURM, Lightning's ``SLURMEnvironment`` still handles SIGUSR1 (save ``hpc_ckpt_*.ckpt``
  and requeue); ``fit --resume`` picks the newest of that and ``last.ckpt``.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Checkpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

__all__ = ["AtomicCheckpointIO", "CheckpointOnInterrupt", "LastCheckpoint"]


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` to ``<name>.tmp-<pid>`` in the target folder, fsync, then ``os.replace`` onto the target."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.name}.tmp-{os.getpid()}")
        try:
            with partial.open("wb") as handle:
                torch.save(checkpoint, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)


class LastCheckpoint(Checkpoint):
    """Write ``path`` (``checkpoints/last.ckpt``) at the end of every training epoch and every ``every_n_steps`` steps.

    The epoch-end save comes after the epoch's validation and, being a ``Checkpoint`` listed after the
    ``best`` callback, after that callback's own save, so it holds its record too.
    Every rank calls :meth:`save` (a collective under DDP); rank 0 writes the file.
    """

    def __init__(self, path: str | Path, every_n_steps: int | None = None) -> None:
        self.path = Path(path)
        self.every_n_steps = every_n_steps
        self._saved_step = -1

    def save(self, trainer: L.Trainer) -> Path:
        trainer.save_checkpoint(self.path, weights_only=False)
        self._saved_step = trainer.global_step
        return self.path

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        step = trainer.global_step  # unchanged over the batches of one accumulated step: saved once
        if self.every_n_steps and step > 0 and step % self.every_n_steps == 0 and step != self._saved_step:
            self.save(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step > 0:
            self.save(trainer)


class CheckpointOnInterrupt(L.Callback):
    """Stop at the next step boundary on SIGTERM or Ctrl-C and write the ``last`` callback's ``last.ckpt``.

    After the run, :attr:`signal` names what stopped it (``"SIGTERM"``, ``"SIGINT"`` or None) and
    :attr:`saved` is the checkpoint written (None when no training step had run).
    """

    def __init__(self, last: LastCheckpoint) -> None:
        self.last = last
        self.signal: str | None = None
        self.saved: Path | None = None
        self._trainer: L.Trainer | None = None
        self._previous_sigint: Any = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # not in on_fit_start: Lightning saves the handlers it finds after that hook and puts them back at
        # teardown, which would leave this handler installed after the run
        self._trainer = trainer
        if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread
            self._previous_sigint = signal.signal(signal.SIGINT, self._on_sigint)

    def _on_sigint(self, signum: int, frame: Any) -> None:
        trainer = self._trainer
        if trainer is None or self.signal is not None:  # a second Ctrl-C: abort now
            raise KeyboardInterrupt
        self.signal = "SIGINT"
        # the flag Lightning's SIGTERM handler sets: the loop stops at the end of the running step
        trainer._signal_connector.received_sigterm = True

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore_sigint()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._restore_sigint()
        if not isinstance(exception, (SIGTERMException, KeyboardInterrupt)):
            return
        if self.signal is None:
            self.signal = "SIGINT" if isinstance(exception, KeyboardInterrupt) else "SIGTERM"
        if trainer.global_step > 0 and isinstance(exception, SIGTERMException):  # a step boundary: a consistent state
            self.saved = self.last.save(trainer)  # every rank calls it (a collective under DDP)

    def _restore_sigint(self) -> None:
        if self._previous_sigint is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, self._previous_sigint)
            self._previous_sigint = None

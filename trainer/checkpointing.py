"""Checkpoints that survive crashes and interruptions.

* :class:`AtomicCheckpointIO` writes every checkpoint to a temporary file beside its target, syncs
  it to disk and renames it into place, so a crash, a full disk or a kill while saving leaves the
  previous ``last.ckpt`` intact instead of a truncated one (Lightning's own transaction writes
  through the system temp folder and copies across file systems, which is not atomic).
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
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

__all__ = ["AtomicCheckpointIO", "CheckpointOnInterrupt"]


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


class CheckpointOnInterrupt(L.Callback):
    """Stop at the next step boundary on SIGTERM or Ctrl-C and write the ``last`` callback's ``last.ckpt``.

    After the run, :attr:`signal` names what stopped it (``"SIGTERM"``, ``"SIGINT"`` or None) and
    :attr:`saved` is the checkpoint written (None when no training step had run).
    """

    def __init__(self, last: ModelCheckpoint) -> None:
        self.last = last
        self.signal: str | None = None
        self.saved: Path | None = None
        self._trainer: L.Trainer | None = None
        self._previous_sigint: Any = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
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
            self.saved = Path(self.last.format_checkpoint_name({}, ModelCheckpoint.CHECKPOINT_NAME_LAST))
            # the `last` callback's own record (saved inside the checkpoint), so the resumed run overwrites
            # this file instead of writing last-v1.ckpt beside it
            self.last.last_model_path = str(self.saved)
            trainer.save_checkpoint(self.saved)  # every rank calls it (a collective under DDP)

    def _restore_sigint(self) -> None:
        if self._previous_sigint is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, self._previous_sigint)
            self._previous_sigint = None

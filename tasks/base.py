"""What every task module shares: registry loss slots, per-term logging, optimiser setup.

A task subclasses :class:`LossTask`, declares ``LOSS_SLOTS`` (slot name -> loss families
that fit it) and calls :meth:`LossTask.compute_loss` in its training step. The slots are
built from the ``loss:`` config section through :func:`losses.build_slot`, so every slot is
a :class:`losses.Composite`; its parameters (uncertainty weights) and buffers (schedules,
running statistics, class centres) are part of the LightningModule and so of every
checkpoint.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import lightning as L
import torch
from torch import Tensor, nn

import losses

OPTIMIZERS = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam, "sgd": torch.optim.SGD}
SCHEDULERS = ("none", "cosine", "step")


class LossTask(L.LightningModule):
    """Base LightningModule whose losses come from registry slots."""

    #: slot name -> loss families accepted in that slot (checked before any data is read).
    LOSS_SLOTS: ClassVar[dict[str, tuple[str, ...]]] = {}
    #: slot name -> default spec used when the config leaves the slot out.
    DEFAULT_LOSSES: ClassVar[dict[str, Any]] = {}

    def __init__(self, loss: Mapping[str, Any] | None = None, optim: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        loss = dict(loss or {})
        balance = loss.pop("balance", "fixed")
        unknown = set(loss) - set(self.LOSS_SLOTS)
        if unknown:
            raise losses.LossConfigError(
                f"loss: unknown slot(s) {sorted(unknown)}; {type(self).__name__} has slots {sorted(self.LOSS_SLOTS)}"
            )
        specs = {slot: loss.get(slot, self.DEFAULT_LOSSES.get(slot)) for slot in self.LOSS_SLOTS}
        self.loss_slots = nn.ModuleDict(
            {
                slot: losses.build_slot(spec, balance=balance, defaults=self.loss_defaults(slot), where=f"loss.{slot}")
                for slot, spec in specs.items()
                if spec is not None
            }
        )
        self.optim_config = dict(optim or {})

    def loss_defaults(self, slot: str) -> dict[str, Any]:
        """Parameters injected into every loss of ``slot`` that accepts them (e.g. ``mode``)."""
        return {}

    def compute_loss(self, slot: str, *args: Any, stage: str = "train", batch_size: int | None = None) -> Tensor:
        """Evaluate a slot, log its total as ``<stage>/loss/<slot>`` and each term as ``.../<slot>/<name>``."""
        total, terms = self.loss_slots[slot].forward_terms(*args)
        values = {slot: total}
        if len(terms) > 1:
            values.update({f"{slot}/{name}": value for name, value in terms.items()})
        self.log_losses(values, stage, batch_size)
        return total

    def log_losses(self, values: Mapping[str, Tensor], stage: str, batch_size: int | None = None) -> None:
        """Log each value as ``<stage>/loss/<key>``: per step and epoch in training, per epoch (synced) otherwise."""
        on_step = stage == "train"
        for key, value in values.items():
            self.log(
                f"{stage}/loss/{key}",
                value.detach(),
                on_step=on_step,
                on_epoch=True,
                sync_dist=not on_step,
                batch_size=batch_size,
            )

    def on_train_epoch_start(self) -> None:
        for composite in self.loss_slots.values():
            composite.set_epoch(self.current_epoch)

    def configure_optimizers(self) -> Any:
        cfg = {"name": "adamw", "lr": 1e-3, "weight_decay": 1e-4, "scheduler": "cosine", **self.optim_config}
        name = cfg.pop("name")
        scheduler = cfg.pop("scheduler")
        step_size = cfg.pop("step_size", 10)
        if name not in OPTIMIZERS:
            raise ValueError(f"optim.name: {name!r} is not one of {sorted(OPTIMIZERS)}")
        if scheduler not in SCHEDULERS:
            raise ValueError(f"optim.scheduler: {scheduler!r} is not one of {SCHEDULERS}")
        optimizer = OPTIMIZERS[name](self.parameters(), **cfg)
        if scheduler == "none":
            return optimizer
        if scheduler == "cosine":
            max_epochs = max(1, self.trainer.max_epochs or 1) if self._trainer is not None else 1
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max_epochs)
        else:
            sched = torch.optim.lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=0.1)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}

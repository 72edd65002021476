"""The task contract: declared loss slots, optimisers and monitor; evaluation, guard and logging of losses.

A task subclasses :class:`LossTask` and *declares*:

- ``LOSS_SLOTS``: slot name -> :class:`losses.Slot` (accepted families, default spec, parameters
  the task injects from its attributes or fixes, the inputs it calls the slot with). The slots are
  built from the ``loss:`` config section by :func:`losses.build_slot`, so every slot is a
  :class:`losses.Composite` whose parameters (uncertainty weights, class centres) and buffers
  (schedules, running statistics) are part of every checkpoint;
- ``OPTIMIZERS``: empty for one optimiser over every parameter (automatic optimisation), or
  names such as ``("generator", "discriminator")`` with one ``optim.<name>`` section each; the
  task then implements :meth:`optimizer_parameters` and steps them with :meth:`step_optimizer`
  (Lightning manual optimisation);
- ``MONITOR`` / ``MONITOR_MODE``: the metric that picks the best checkpoint.

In a step the task calls :meth:`compute_loss` (one slot) or :meth:`evaluate` per slot and then
:meth:`finish_losses` (several slots). Both pass the finite-loss guard (:mod:`tasks.guard`) in
training and log ``<stage>/loss/<slot>`` and ``<stage>/loss/<slot>/<term>``; a step the guard
skips returns ``None`` (Lightning then skips backward and the optimiser step).

Per-term gradients on the slot's :meth:`~LossTask.shared_layer` are computed once per step where
needed (:func:`losses.balance.term_gradients`): ``balance: gradnorm`` adds GradNorm's L_grad to the
returned total, and ``run.term_grad_norms: N`` (:attr:`LossTask.term_grad_norms`) logs every N
training batches ``train/grad_norm/<slot>/<term>`` (the weighted term's gradient norm) and
``train/grad_share/<slot>/<term>`` (its share of the slot's total gradient). Every epoch the task
logs each term's effective weight, ``train/weight/<slot>/<term>`` (spec weight x schedule x
DWA/GradNorm weight or exp(-log sigma^2)).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn

import losses
from losses.balance import attribution, term_gradients
from tasks.guard import NonFiniteLossError, SlotResult, all_finite, describe
from tasks.optim import GROUP_DEFAULTS, OptimSpec, build_optimizer, build_scheduler, parameter_groups, parse_optim


class LossTask(L.LightningModule):
    """Base LightningModule whose losses come from declared registry slots."""

    #: slot name -> declaration (families, default, injected/fixed parameters, inputs).
    LOSS_SLOTS: ClassVar[dict[str, losses.Slot]] = {}
    #: names of several optimisers (manual optimisation); empty: one optimiser, automatic optimisation.
    OPTIMIZERS: ClassVar[tuple[str, ...]] = ()
    #: metric that selects the best checkpoint, and whether larger is better ("max") or smaller ("min").
    MONITOR: ClassVar[str | None] = None
    MONITOR_MODE: ClassVar[str] = "min"

    def __init__(self, loss: Mapping[str, Any] | None = None, optim: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        loss = dict(loss or {})
        balance = loss.pop("balance", "fixed")
        unknown = set(loss) - set(self.LOSS_SLOTS)
        if unknown:
            raise losses.LossConfigError(
                f"loss: unknown slot(s) {sorted(unknown)}; {type(self).__name__} has slots {sorted(self.LOSS_SLOTS)}"
            )
        self.loss_slots = nn.ModuleDict()
        for slot, declared in self.LOSS_SLOTS.items():
            spec = loss.get(slot, declared.default)
            if spec is None:
                continue
            inject = {name: getattr(self, name) for name in declared.inject}
            self.loss_slots[slot] = losses.build_slot(
                spec, declared, inject=inject, balance=balance, where=f"loss.{slot}"
            )
        self.optim_specs = parse_optim(optim, self.OPTIMIZERS)
        self.automatic_optimization = not self.OPTIMIZERS
        #: what the finite-loss guard does on NaN/Inf: "stop" or "skip" (set from `run.on_nonfinite`).
        self.on_nonfinite = "stop"
        self.nonfinite_skipped = 0
        self.term_grad_norms = None
        self._shared_params: dict[str, list[nn.Parameter]] = {}
        self._unreached: set[tuple[str, str]] = set()

    # ------------------------------------------------------------------ losses

    def evaluate(self, slot: str, *args: Any, normalizer: float | Tensor = 1.0, **inputs: Any) -> SlotResult:
        """Evaluate a slot on its inputs (positional, then named) without logging."""
        composite = self.loss_slots[slot]
        keep = self.training and torch.is_grad_enabled() and (composite.gradnorm is not None or self._attribution_due())
        total, terms = composite.forward_terms(*args, normalizer=normalizer, detach=not keep, **inputs)
        return SlotResult(slot, total, terms, composite, [(args, inputs)])

    def compute_loss(
        self, slot: str, *args: Any, stage: str = "train", batch_size: int | None = None, **inputs: Any
    ) -> Tensor | None:
        """Evaluate one slot, guard and log it; the total, or ``None`` for a training step the guard skips."""
        return self.finish_losses([self.evaluate(slot, *args, **inputs)], stage, batch_size)

    def finish_losses(
        self, results: Iterable[SlotResult], stage: str = "train", batch_size: int | None = None
    ) -> Tensor | None:
        """Guard (training only), log each slot and term, return the sum of the slot totals (or ``None``: skip)."""
        results = {r.slot: r for r in results}
        if stage == "train" and not self._passes_guard(results):
            return None
        values: dict[str, Tensor] = {}
        for result in results.values():
            values.update(result.loggable())
        self.log_losses(values, stage, batch_size)
        total = sum(r.total for r in results.values())
        if len(results) > 1:
            self._log(f"{stage}/loss", total, stage, batch_size, prog_bar=True)
        if stage == "train":
            for grad_loss in self._term_gradient_steps(results, batch_size):
                total = total + grad_loss
        return total

    def log_losses(self, values: Mapping[str, Tensor], stage: str, batch_size: int | None = None) -> None:
        """Log each value as ``<stage>/loss/<key>``: per step and epoch in training, per epoch (synced) otherwise."""
        for key, value in values.items():
            self._log(f"{stage}/loss/{key}", value, stage, batch_size)

    def _log(self, name: str, value: Tensor, stage: str, batch_size: int | None, prog_bar: bool = False) -> None:
        on_step = stage == "train"
        self.log(
            name,
            value.detach(),
            on_step=on_step,
            on_epoch=True,
            sync_dist=not on_step,
            batch_size=batch_size,
            prog_bar=prog_bar,
        )

    def _passes_guard(self, results: Mapping[str, SlotResult]) -> bool:
        finite = bool(all_finite(results.values()))
        if self._trainer is not None:  # every rank takes the same decision
            finite = self.trainer.strategy.reduce_boolean_decision(finite, all=True)
        if finite:
            return True
        where = f"epoch {self.current_epoch}, step {self.global_step}" if self._trainer is not None else "this step"
        message = describe(results, where)
        if self.on_nonfinite == "stop":
            raise NonFiniteLossError(
                f"{message}. Stopped before the update: the weights and the last checkpoint are those of the last "
                "good step (run.on_nonfinite=skip skips such steps instead)"
            )
        self.nonfinite_skipped += 1
        rank_zero_warn(f"{message}; step skipped (run.on_nonfinite=skip)")
        self.log("train/nonfinite_skipped", float(self.nonfinite_skipped), on_step=True, on_epoch=False)
        return False

    def on_train_epoch_start(self) -> None:
        for composite in self.loss_slots.values():
            composite.set_epoch(self.current_epoch)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        for composite in self.loss_slots.values():  # after the previous step's update, so a resumed run matches
            if composite.gradnorm is not None:
                composite.gradnorm.renormalise()

    # ------------------------------------------------------------------ per-term gradients and weights

    @property
    def term_grad_norms(self) -> int | None:
        """Log per-term gradient norms and shares every N training batches (``run.term_grad_norms``); None: off."""
        return self._term_grad_norms

    @term_grad_norms.setter
    def term_grad_norms(self, every: int | None) -> None:
        if every is not None and (isinstance(every, bool) or not isinstance(every, int) or every < 1):
            raise losses.LossConfigError(
                f"run.term_grad_norms: expected an integer >= 1 (log every N training batches) or null, got {every!r}"
            )
        self._term_grad_norms = every

    def shared_layer(self, slot: str) -> nn.Module:
        """The layer on which GradNorm balances and ``run.term_grad_norms`` attributes ``slot``'s terms.

        Default: the last registered module owning trainable parameters of the slot's optimiser (the
        output layer of a single-head network, where every term of a slot meets). A task whose slots
        sit on different heads returns the layer they share.
        """
        declared = self.LOSS_SLOTS.get(slot)
        optimizer = (declared.optimizer if declared else None) or (self.OPTIMIZERS[0] if self.OPTIMIZERS else "")
        trained = {id(p) for _, p in self.optimizer_parameters(optimizer)}
        layers = [m for m in self.modules() if any(id(p) in trained for p in m.parameters(recurse=False))]
        if not layers:
            raise losses.LossConfigError(f"loss.{slot}: {type(self).__name__} has no trainable layer for per-term "
                                         "gradients (balance: gradnorm, run.term_grad_norms)")
        return layers[-1]

    def _attribution_due(self) -> bool:
        every = self.term_grad_norms
        if not every or self._trainer is None:
            return False
        return self.trainer.fit_loop.epoch_loop.total_batch_idx % every == 0

    def _term_gradient_steps(self, results: Mapping[str, SlotResult], batch_size: int | None) -> list[Tensor]:
        """GradNorm's L_grad for each gradnorm slot, and the attribution logs when due (one gradient pass per slot)."""
        extra: list[Tensor] = []
        attribute = self._attribution_due()
        logs: dict[str, float] = {}
        for slot, result in results.items():
            composite = result.composite
            terms = [result.terms[name] for name in composite.names]
            if (composite.gradnorm is None and not attribute) or not any(t.requires_grad for t in terms):
                continue
            grads = self._term_gradients(slot, composite.names, terms)
            if composite.gradnorm is not None:
                grad_loss = composite.gradnorm_loss(result.terms, grads)
                self._log(f"train/gradnorm_loss/{slot}", grad_loss, "train", batch_size)
                extra.append(grad_loss)
            if attribute:
                norms, shares = attribution(grads, composite.effective_weights())
                for name, norm, share in zip(composite.names, norms.tolist(), shares.tolist()):
                    logs[f"train/grad_norm/{slot}/{name}"] = norm
                    logs[f"train/grad_share/{slot}/{name}"] = share
        if logs:  # straight to the loggers: Lightning would drop steps off its log_every_n_steps cadence
            epoch_loop = self.trainer.fit_loop.epoch_loop
            logs["epoch"] = self.current_epoch + epoch_loop.batch_idx / max(1, self.trainer.num_training_batches)
            for logger in self.loggers:
                logger.log_metrics(logs, step=self.global_step)
        return extra

    def _term_gradients(self, slot: str, names: list[str], terms: list[Tensor]) -> Tensor:
        if slot not in self._shared_params:
            self._shared_params[slot] = [p for p in self.shared_layer(slot).parameters() if p.requires_grad]
            if not self._shared_params[slot]:
                raise losses.LossConfigError(f"loss.{slot}: {type(self).__name__}.shared_layer({slot!r}) has no "
                                             "trainable parameters to take per-term gradients on")
        grads, reached = term_gradients(terms, self._shared_params[slot])
        for name, ok in zip(names, reached):
            if not ok and (slot, name) not in self._unreached:
                self._unreached.add((slot, name))
                rank_zero_warn(f"loss.{slot}: term {name!r} does not reach {type(self).__name__}.shared_layer"
                               f"({slot!r}); its gradient there counts as 0")
        return grads

    def _log_term_weights(self) -> None:
        for slot, composite in self.loss_slots.items():
            for name, weight in zip(composite.names, composite.effective_weights()):
                self.log(f"train/weight/{slot}/{name}", weight, on_step=False, on_epoch=True)

    # ------------------------------------------------------------------ optimisers

    def optimizer_parameters(self, name: str) -> Iterable[tuple[str, nn.Parameter]]:
        """Named model parameters (no loss parameters) trained by optimiser ``name``; named optimisers override it."""
        if self.OPTIMIZERS:
            raise NotImplementedError(
                f"{type(self).__name__} declares OPTIMIZERS and must say which parameters each one trains"
            )
        loss_params = {id(p) for p in self.loss_slots.parameters()}
        return [(n, p) for n, p in self.named_parameters() if id(p) not in loss_params]

    def _slots_of(self, name: str) -> dict[str, losses.Composite]:
        first = self.OPTIMIZERS[0] if self.OPTIMIZERS else ""
        return {
            slot: composite
            for slot, composite in self.loss_slots.items()
            if (self.LOSS_SLOTS[slot].optimizer or first) == name
        }

    def configure_optimizers(self) -> Any:
        max_epochs = (self.trainer.max_epochs or 1) if self._trainer is not None else 1
        optimizers, schedulers = [], []
        for name, spec in self.optim_specs.items():
            slots = self._slots_of(name)
            groups = _with_gradnorm_weights(parameter_groups(spec, self.optimizer_parameters(name), slots), spec, slots)
            optimizer = build_optimizer(spec, groups)
            optimizers.append(optimizer)
            scheduler = build_scheduler(spec, optimizer, max_epochs, name)
            if scheduler is not None:
                schedulers.append(scheduler)
        if len(optimizers) == 1 and not self.OPTIMIZERS:
            return {"optimizer": optimizers[0], "lr_scheduler": schedulers[0]} if schedulers else optimizers[0]
        return optimizers, schedulers

    def optimizer(self, name: str) -> L.pytorch.core.optimizer.LightningOptimizer:
        """The named optimiser (manual optimisation)."""
        optimizers = self.optimizers()
        optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
        return optimizers[self.OPTIMIZERS.index(name)]

    def step_optimizer(self, name: str, loss: Tensor | None) -> None:
        """Manual optimisation: zero optimiser ``name``'s gradients, backpropagate ``loss``, step it.

        Gradients the backward pass leaves on other optimisers' parameters are cleared by their own
        ``step_optimizer`` before use. ``loss=None`` (a step the finite-loss guard skipped) does nothing.
        """
        if loss is None:
            return
        optimizer = self.optimizer(name)
        optimizer.zero_grad()
        self.manual_backward(loss)
        optimizer.step()

    def on_train_epoch_end(self) -> None:
        self._log_term_weights()
        if self.automatic_optimization:
            return
        schedulers = self.lr_schedulers()
        for scheduler in schedulers if isinstance(schedulers, list) else [schedulers] if schedulers else []:
            scheduler.step()


def _with_gradnorm_weights(
    groups: list[dict[str, Any]], spec: OptimSpec, slots: Mapping[str, losses.Composite]
) -> list[dict[str, Any]]:
    """Add the slots' GradNorm weights to the ``balance`` group (made with that group's options if absent)."""
    weights = [composite.gradnorm.weights for composite in slots.values() if composite.gradnorm is not None]
    if not weights:
        return groups
    group = next((g for g in groups if g["name"] == "balance"), None)
    if group is None:
        options = {**GROUP_DEFAULTS["balance"], **spec.groups.get("balance", {})}
        group = {"params": [], "name": "balance", "lr": spec.lr * options.get("lr_mult", 1.0),
                 "weight_decay": options.get("weight_decay", spec.weight_decay)}
        groups.append(group)
    group["params"].extend(weights)
    return groups

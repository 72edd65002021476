"""Tabular classification and regression: any classification, margin or regression loss from YAML, scored beside
scikit-learn baselines fitted on the same split.

The ``target`` slot is called with ``(pred, target)``:

- binary classification with a sigmoid head: ``pred (N,)`` logits, ``target (N,)`` floats in {0, 1}, or in
  {-1, 1} when every term is a margin loss (hinge, modified Huber, ...);
- multiclass (or two classes with a softmax head): ``pred (N, C)`` logits, ``target (N,)`` class indices;
- regression: ``pred (N,)`` and the target standardised with the training split's mean and std (so ``huber``'s
  ``delta`` is in standard deviations).

Everything the loss depends on comes from the data, in :meth:`TabularTask.setup` (before any step): the problem
(a classification loss on a regression target is a config error naming ``loss.target``), ``mode`` (``binary`` or
``multiclass``) and ``num_classes``, injected into the losses that take them, and ``class_weights: balanced`` /
``pos_weight: balanced``, resolved from the *training split's* class counts (``w_c = n / (C n_c)``, sklearn's
``"balanced"``; ``pos_weight = n_neg / n_pos``). Per-class weights need one logit per class, so a two-class target
with ``class_weights`` gets a softmax head (``model.binary_head: auto``). That data schema is saved in the
hyper-parameters of every checkpoint: ``TabularTask.load_from_checkpoint`` rebuilds the same network and the same
weighted loss without the data, and a ``test`` / ``predict`` from a checkpoint uses the training-time network shape,
class weights and (through the datamodule's state) vocabularies and scalers.

Metrics (:mod:`tasks.tabular.metrics`) are logged each validation epoch (``val/accuracy``, ``val/f1``,
``val/auroc``, ``val/log_loss`` or ``val/rmse``, ``val/mae``, ``val/r2``; ``val/score`` = accuracy or R2 picks the
best checkpoint). At the end of fit (last epoch's weights) and of test one table beside logistic/ridge regression
and HistGradientBoosting (:mod:`tasks.tabular.baseline`) is printed and saved as ``tabular_metrics_<stage>.csv`` in
the run folder; ``predict`` writes ``predictions/predictions.csv``.
"""

from __future__ import annotations

import csv
import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch.accelerators import CPUAccelerator
from lightning.pytorch.utilities import rank_zero_only
from rich.console import Console
from rich.table import Table
from torch import Tensor, nn

import losses
from tasks.base import LossTask
from tasks.tabular.baseline import BASELINES, baseline_label, evaluate_baselines
from tasks.tabular.metrics import TabularMetrics, metric_names, score_name
from tasks.tabular.model import ARCHS, NORMS, NUMERIC_EMBEDDINGS, TabularNet, build_network

SLOT = losses.Slot(
    ("classification", "margin", "regression"),
    default=None,  # ce (classification) or mse (regression), chosen in setup from the data
    inject=("mode", "num_classes"),
    inputs=("pred", "target"),
    doc="called with pred (N,) or (N, C) and the target: class index, {0,1} / {-1,1} float, or standardised value",
)
BINARY_HEADS = ("auto", "sigmoid", "softmax")
DEFAULT_LOSS = {"classification": "ce", "regression": "mse"}
PROBLEM_FAMILIES = {"classification": ("classification", "margin"), "regression": ("regression",)}
BALANCED = "balanced"


@dataclass(frozen=True)
class Head:
    """What the network predicts and how the target is given to the loss."""

    mode: str | None  # "binary" | "multiclass" | None (regression)
    outputs: int
    signed: bool = False  # binary margin-only slot: targets in {-1, 1}


def plan_loss(
    spec: Any, schema: Mapping[str, Any], binary_head: str = "auto", where: str = "loss.target"
) -> tuple[list[losses.compose.TermSpec], Head]:
    """Check ``spec`` against the data's problem, choose the head, resolve ``balanced`` weights from training counts."""
    problem, target, classes = schema["problem"], schema["target"], schema["classes"]
    terms = losses.check_slot_spec(spec if spec is not None else DEFAULT_LOSS[problem], SLOT, where)
    families = [losses.get(t.name).family for t in terms]
    allowed = PROBLEM_FAMILIES[problem]
    for term, family in zip(terms, families):
        if family not in allowed:
            what = f"{len(classes)} classes" if problem == "classification" else "numeric"
            fitting = [n for fam in allowed for n in losses.available(family=fam)]
            raise losses.LossConfigError(
                f"{where}: {term.name!r} is a {family} loss, but data.target {target!r} is a {problem} target "
                f"({what}); use a {'/'.join(allowed)} loss: {', '.join(fitting)}"
            )
    if problem == "regression":
        for term in terms:
            if term.name == "quantile" and not isinstance(term.params.get("quantiles", 0.5), (int, float)):
                raise losses.LossConfigError(
                    f"{where}: quantile with a list of quantiles needs one output per level; the tabular task "
                    "predicts one value per row: give one level, e.g. params: {quantiles: 0.9}"
                )
        return terms, Head(None, 1)
    num_classes = len(classes)
    per_class = [_needs_softmax(t) for t in terms]
    if num_classes == 2 and binary_head == "sigmoid" and any(per_class):
        raise losses.LossConfigError(
            f"{where}: per-class weights (or a multiclass-only loss) need one logit per class; "
            "set model.binary_head: softmax (or auto)"
        )
    softmax = num_classes > 2 or binary_head == "softmax" or (binary_head == "auto" and any(per_class))
    head = Head("multiclass", num_classes) if softmax else Head("binary", 1, all(f == "margin" for f in families))
    return [_resolve_balanced(t, schema, head, where) for t in terms], head


def _needs_softmax(term: losses.compose.TermSpec) -> bool:
    weights = term.params.get("class_weights")
    modes = getattr(losses.get(term.name).cls, "modes", None)
    return (weights is not None and weights != "auto") or (modes is not None and "binary" not in modes)


def _resolve_balanced(
    term: losses.compose.TermSpec, schema: Mapping[str, Any], head: Head, where: str
) -> losses.compose.TermSpec:
    """``class_weights: balanced`` -> ``n / (C n_c)``; ``pos_weight: balanced`` -> ``n_neg / n_pos`` (train counts)."""
    params = dict(term.params)
    counts = [int(c) for c in schema["class_counts"]]
    if params.get("class_weights") == BALANCED:
        if min(counts) == 0:
            absent = [c for c, n in zip(schema["classes"], counts) if n == 0]
            raise losses.LossConfigError(
                f"{where}.params.class_weights: 'balanced' needs every class in the training split; {absent} absent"
            )
        params["class_weights"] = [sum(counts) / (len(counts) * n) for n in counts]
    if params.get("pos_weight") == BALANCED:
        if head.mode != "binary" or counts[1] == 0:
            raise losses.LossConfigError(
                f"{where}.params.pos_weight: 'balanced' is for a binary sigmoid head with positives in training"
            )
        params["pos_weight"] = counts[0] / counts[1]
    return dataclasses.replace(term, params=params)


class TabularTask(LossTask):
    """An MLP / ResNet over entity embeddings whose loss, head and class weights follow the data."""

    LOSS_SLOTS = {"target": SLOT}
    MONITOR = "val/score"  # accuracy (classification) or R2 (regression)
    MONITOR_MODE = "max"

    def __init__(
        self,
        arch: str = "mlp",
        hidden_size: int = 256,
        num_layers: int = 2,
        dropout: float = 0.1,
        norm: str = "batch",
        resnet_multiplier: float = 2.0,
        numeric_embedding: str = "none",
        periodic_frequencies: int = 16,
        periodic_sigma: float = 1.0,
        periodic_dim: int = 16,
        binary_head: str = "auto",
        cpu_threads: int = 1,
        schema: dict[str, Any] | None = None,
        loss: Mapping[str, Any] | None = None,
        optim: Mapping[str, Any] | None = None,
    ) -> None:
        for key, value, choices in (("arch", arch, ARCHS), ("norm", norm, NORMS),
                                    ("numeric_embedding", numeric_embedding, NUMERIC_EMBEDDINGS),
                                    ("binary_head", binary_head, BINARY_HEADS)):  # fmt: skip
            if value not in choices:
                raise ValueError(f"model.{key}: expected one of {choices}, got {value!r}")
        for key, value in (("hidden_size", hidden_size), ("periodic_frequencies", periodic_frequencies),
                           ("periodic_dim", periodic_dim)):  # fmt: skip
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"model.{key}: expected an integer >= 1, got {value!r}")
        if not isinstance(num_layers, int) or num_layers < 0:
            raise ValueError(f"model.num_layers: expected an integer >= 0, got {num_layers!r}")
        if not isinstance(cpu_threads, int) or cpu_threads < 0:
            raise ValueError(f"model.cpu_threads: expected an integer >= 0 (0: torch's default), got {cpu_threads!r}")
        if not 0 <= dropout < 1:
            raise ValueError(f"model.dropout: expected a probability in [0, 1), got {dropout!r}")
        loss = dict(loss or {})
        spec = loss.get("target")
        if spec is not None:
            losses.check_slot_spec(spec, SLOT, "loss.target")  # names, parameters and families: before any data
        # the slot is built in setup(), once the data says which mode, classes and class weights it needs
        super().__init__(loss={**loss, "target": None}, optim=optim)
        self.save_hyperparameters(ignore=["optim"])
        self.loss_spec, self.balance = spec, loss.get("balance", "fixed")
        self.schema: dict[str, Any] | None = None
        self.head: Head | None = None
        self.mode: str | None = None
        self.num_classes: int | None = None
        self.net: TabularNet | None = None
        self.metrics = nn.ModuleDict()
        self.tables: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
        self._predictions: list[tuple[Tensor, Tensor]] = []
        if schema is not None:
            self.build(schema)

    # ------------------------------------------------------------------ building from the data

    def build(self, schema: Mapping[str, Any]) -> None:
        """Size the head, build the ``target`` slot (mode, num_classes, class weights injected) and the network."""
        schema = dict(schema)
        terms, head = plan_loss(self.loss_spec, schema, self.hparams.binary_head)
        self.head = head
        self.mode = head.mode
        self.num_classes = len(schema["classes"]) if schema["problem"] == "classification" else None
        self.loss_slots["target"] = losses.build_slot(
            terms, SLOT, inject={"mode": self.mode, "num_classes": self.num_classes}, balance=self.balance,
            where="loss.target",
        )  # fmt: skip
        h = self.hparams
        self.net = build_network(
            schema, head.outputs, h.arch, h.hidden_size, h.num_layers, h.dropout, h.norm, h.resnet_multiplier,
            h.numeric_embedding, h.periodic_frequencies, h.periodic_sigma, h.periodic_dim,
        )  # fmt: skip
        classes = max(2, len(schema["classes"]))
        self.metrics = nn.ModuleDict({s: TabularMetrics(schema["problem"], classes) for s in ("val", "test")})
        self.schema = schema
        self.hparams["schema"] = schema  # in every checkpoint: load_from_checkpoint rebuilds without the data

    def setup(self, stage: str) -> None:
        datamodule = self.trainer.datamodule
        if datamodule is None or not hasattr(datamodule, "schema"):
            raise ValueError("data: the tabular task needs a TabularDataModule")
        if self.schema is None:
            self.build(datamodule.schema())
        if self.hparams.cpu_threads and isinstance(self.trainer.accelerator, CPUAccelerator):
            # rows of a few hundred features: intra-op threads cost more than they save (10x on a busy machine)
            torch.set_num_threads(self.hparams.cpu_threads)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """A checkpoint's schema wins over the current data's: same network shape, classes and class weights."""
        schema = checkpoint.get("hyper_parameters", {}).get("schema")
        if schema is not None and schema != self.schema:
            self.build(schema)

    @property
    def problem(self) -> str:
        assert self.schema is not None, "TabularTask: not built yet (setup() or a schema)"
        return self.schema["problem"]

    # ------------------------------------------------------------------ steps

    def forward(self, numeric: Tensor, categorical: Tensor) -> Tensor:
        assert self.net is not None, "TabularTask: not built yet (setup() or a schema)"
        return self.net(numeric, categorical)

    def loss_target(self, target: Tensor) -> Tensor:
        """The target as the slot expects it (see the module docstring)."""
        assert self.head is not None
        if self.head.mode is None:
            return target.float()
        if self.head.mode == "multiclass":
            return target.long()
        return target.float() * 2 - 1 if self.head.signed else target.float()

    def outputs(self, pred: Tensor) -> Tensor:
        """Probabilities (``(N,)`` positive class for two classes, else ``(N, C)``) or values in the target's units."""
        if self.problem == "regression":
            return pred.float() * self.schema["target_scale"] + self.schema["target_loc"]
        if self.head.mode == "binary":
            return torch.sigmoid(pred.float())
        probs = torch.softmax(pred.float(), dim=1)
        return probs[:, 1] if probs.shape[1] == 2 else probs

    def target_units(self, target: Tensor) -> Tensor:
        if self.problem == "regression":
            return target.float() * self.schema["target_scale"] + self.schema["target_loc"]
        return target.long()

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor | None:
        pred = self(batch["numeric"], batch["categorical"])
        return self.compute_loss("target", pred, self.loss_target(batch["target"]), batch_size=len(pred))

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def _evaluate(self, batch: dict[str, Tensor], stage: str) -> None:
        pred = self(batch["numeric"], batch["categorical"])
        self.compute_loss("target", pred, self.loss_target(batch["target"]), stage=stage, batch_size=len(pred))
        self.metrics[stage].update(self.outputs(pred), self.target_units(batch["target"]))

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        """Probabilities or values (see :meth:`outputs`); also written to ``predictions/predictions.csv``."""
        out = self.outputs(self(batch["numeric"], batch["categorical"]))
        self._predictions.append((batch["row"].cpu(), out.cpu()))
        return out

    # ------------------------------------------------------------------ epoch ends

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val")

    def on_test_epoch_end(self) -> None:
        values = self._log_metrics("test")
        self._report("test", {"test": values})

    def on_fit_end(self) -> None:
        self._report("fit", {split: self.evaluate_split(split) for split in ("val", "test")})

    def _log_metrics(self, stage: str) -> dict[str, float]:
        values = self.metrics[stage].compute()
        logged = {f"{stage}/{k}": v for k, v in values.items() if not math.isnan(v)}
        if not math.isnan(values[score_name(self.problem)]):
            logged[f"{stage}/score"] = values[score_name(self.problem)]
        # torchmetrics already reduced over ranks; every rank logs the same values
        self.log_dict({k: torch.tensor(v, dtype=torch.float32) for k, v in logged.items()}, sync_dist=True)
        return values

    @torch.no_grad()
    def evaluate_split(self, split: str) -> dict[str, float]:
        """The current weights' metrics on a whole split of the datamodule (one pass, eval mode)."""
        batch = self.trainer.datamodule.datasets[split].tensors()
        was_training = self.training
        self.eval()
        metrics = TabularMetrics(self.problem, max(2, len(self.schema["classes"])))
        for start in range(0, len(batch["row"]), 4096):
            part = slice(start, start + 4096)
            pred = self(batch["numeric"][part].to(self.device), batch["categorical"][part].to(self.device))
            metrics.update(self.outputs(pred).cpu(), self.target_units(batch["target"][part]))
        self.train(was_training)
        return metrics.compute()

    # ------------------------------------------------------------------ report and predictions

    @property
    def run_dir(self) -> Path:
        return Path(self.trainer.default_root_dir)

    def model_label(self) -> str:
        names = " + ".join(self.loss_slots["target"].names)
        return f"{self.hparams.arch} / {names}"

    @rank_zero_only
    def _report(self, stage: str, model: dict[str, dict[str, float]]) -> None:
        """Print the network's metrics beside the baselines (fitted on the same training split); save them as CSV."""
        datamodule = self.trainer.datamodule
        splits = tuple(model)
        baselines = evaluate_baselines(
            datamodule.preprocessor, datamodule.encoded, splits, datamodule.seed, self.hparams.cpu_threads or None
        )
        names = metric_names(self.problem)
        rows = []
        for split in splits:
            rows.append([split, self.model_label(), *(model[split][m] for m in names)])
            rows += [[split, baseline_label(b, self.problem), *(baselines[b][split][m] for m in names)]
                     for b in BASELINES]  # fmt: skip
        self.tables[stage] = {"model": model, **baselines}
        path = self.run_dir / f"tabular_metrics_{stage}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["split", "model", *names])
            writer.writerows(rows)
        score = score_name(self.problem)
        last = splits[-1]
        best = max(BASELINES, key=lambda b: baselines[b][last][score])
        gap = model[last][score] - baselines[best][last][score]
        title = "end of fit (last epoch)" if stage == "fit" else "test"
        table = Table(
            title=f"tabular metrics, {title}: {score} {model[last][score]:.4f} on {last}, "
            f"{gap:+.4f} vs {baseline_label(best, self.problem)}",
            caption="baselines fitted on the same training split and preprocessing"
            + ("; regression metrics in the target's units" if self.problem == "regression" else ""),
        )
        for header in ("split", "model", *names):
            table.add_column(header, justify="left" if header in ("split", "model") else "right", no_wrap=True)
        for row in rows:
            table.add_row(row[0], row[1], *("-" if math.isnan(v) else f"{v:.4f}" for v in row[2:]))
        console = Console()
        if not console.is_terminal:  # a log file: no need to wrap at 80 columns
            console = Console(width=120)
        console.print(table)
        console.print(f"saved {path}")

    def on_predict_epoch_start(self) -> None:
        self._predictions = []

    def on_predict_epoch_end(self) -> None:
        """Write ``predictions/predictions.csv`` (one file per rank under DDP): row, prediction, class probabilities."""
        if not self._predictions:
            return
        rows = torch.cat([r for r, _ in self._predictions]).numpy()
        out = torch.cat([o for _, o in self._predictions]).numpy()
        self._predictions = []
        classes = self.schema["classes"]
        if self.problem == "regression":
            header, body = ["row", "prediction"], [[int(r), float(v)] for r, v in zip(rows, out)]
        else:
            probs = np.stack([1 - out, out], axis=1) if out.ndim == 1 else out
            header = ["row", "prediction", *(f"p({c})" for c in classes)]
            body = [[int(r), classes[int(p.argmax())], *map(float, p)] for r, p in zip(rows, probs)]
        world = self.trainer.world_size
        name = "predictions.csv" if world == 1 else f"predictions.rank{self.trainer.global_rank}.csv"
        path = self.run_dir / "predictions" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows(body)

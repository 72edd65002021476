"""Face embedding: backbone -> BN -> embedding, trained by an angular-margin ``head`` slot (+ optional ``aux``).

The ``head`` slot takes angular losses (arcface, cosface, curricularface, adaface, sface ...), which own
the class-weight matrix; the task injects ``num_classes`` and ``embedding_size``. The optional
``aux`` slot takes metric losses (``center``, ``center_invariant``, ``range``, ``triplet`` ...) on the same
embeddings. Evaluation embeds both images of each verification pair and their horizontal flips (the image's and
the flip's embeddings summed, then L2-normalised, as insightface evaluates), scores pairs by cosine
similarity and logs 10-fold accuracy (threshold chosen on 9 folds), TAR@FAR=1e-3 / 1e-4 and the
mean and standard deviation of the embedding norm. Beside them it logs the baseline that makes them
meaningful: the same metrics of the network before training (``val/untrained/...``, measured once
when a fit starts from scratch; ``untrained_baseline: false`` skips it), and draws both ROC curves
(true vs false accept rate) in ``<run>/plots/roc_val.png`` each validation. ``predict`` writes each
image's evaluation embedding (flip-summed, L2-normalised) to
``<run>/predictions/<folder>/embeddings.csv`` (``path`` relative to the folder, then ``e0 ... e{D-1}``).

DDP. With more than one process the head's class-weight matrix is sharded (``shard_head``, Partial
FC as An et al. 2022): each rank keeps a block of ``num_classes / world_size`` rows, which DDP
leaves out of its gradient averaging, and the head normalises its softmax across the blocks (see
:mod:`losses.angular`). Checkpoints hold the whole matrix and the optimiser moments of the whole
matrix (gathered when saving, each rank's block cut out again when loading), so a run resumes on
any number of processes, and a sharded run's checkpoint loads in one process.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

import losses
from losses.angular import AngularHead
from tasks.base import LossTask
from tasks.face.metrics import kfold_accuracy, tar_at_far
from tasks.face.plot import plot_roc

BACKBONES = ("small_cnn", "resnet18")


def _small_cnn(width: int) -> tuple[nn.Module, int]:
    """Four 3x3 conv-BN-PReLU stages (width, 2w, 4w, 8w), max-pooled between: cheap enough for CPU recipes."""
    layers: list[nn.Module] = []
    cin = 3
    for i, cout in enumerate((width, 2 * width, 4 * width, 8 * width)):
        layers += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.PReLU(cout)]
        if i < 3:
            layers.append(nn.MaxPool2d(2))
        cin = cout
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(4), nn.Flatten()), 8 * width * 16


def _resnet18(weights: str | None) -> tuple[nn.Module, int]:
    net = torchvision.models.resnet18(weights=None)
    if weights is not None:
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise FileNotFoundError(
                f"model.backbone_weights: {weights} does not exist (weights are never downloaded)"
            ) from None
        net.load_state_dict(state)
    net.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)  # small face crops: no stride-4 stem
    net.maxpool = nn.Identity()
    net.fc = nn.Identity()
    return net, 512


class FaceEmbedder(nn.Module):
    """Backbone features -> BN -> dropout -> linear -> BN: the (unnormalised) embedding."""

    def __init__(self, backbone: str, embedding_size: int, width: int, dropout: float, weights: str | None) -> None:
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f"model.backbone: expected one of {BACKBONES}, got {backbone!r}")
        self.backbone, features = _small_cnn(width) if backbone == "small_cnn" else _resnet18(weights)
        self.neck = nn.Sequential(
            nn.BatchNorm1d(features), nn.Dropout(dropout), nn.Linear(features, embedding_size),
            nn.BatchNorm1d(embedding_size),
        )

    def forward(self, images: Tensor) -> Tensor:
        return self.neck(self.backbone(images))


class EmbeddingWriter(L.Callback):
    """Append each predicted batch's embeddings to ``<run>/predictions/<folder>/embeddings.csv`` (one per rank)."""

    def _path(self, trainer: L.Trainer) -> Path:
        name = trainer.predict_dataloaders.dataset.name
        suffix = f".rank{trainer.global_rank}" if trainer.world_size > 1 else ""
        return Path(trainer.default_root_dir) / "predictions" / name / f"embeddings{suffix}.csv"

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        path = self._path(trainer)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as f:
            csv.writer(f).writerow(["path", *(f"e{i}" for i in range(pl_module.embedding_size))])

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        dataset = trainer.predict_dataloaders.dataset
        with open(self._path(trainer), "a", newline="") as f:
            writer = csv.writer(f)
            for index, embedding in zip(batch[1].tolist(), outputs.tolist(), strict=True):
                name = dataset.paths[index].relative_to(dataset.folder).as_posix()
                writer.writerow([name, *(f"{v:.6g}" for v in embedding)])


class FaceTask(LossTask):
    """Embedding learning with an angular-margin head and optional metric losses; verification metrics."""

    LOSS_SLOTS = {
        "head": losses.Slot(
            ("angular",),
            default="arcface",
            inject=("num_classes", "embedding_size"),
            inputs=("embeddings", "labels"),
            doc="called with embeddings (N, embedding_size) and identity labels (N,)",
        ),
        "aux": losses.Slot(
            ("metric",),
            default=None,
            inject=("num_classes", "embedding_size"),
            inputs=("embeddings", "labels"),
            doc="metric losses on the same embeddings and labels (center, center_invariant, range, triplet, ...)",
        ),
    }
    MONITOR = "val/verification_acc"
    MONITOR_MODE = "max"

    def __init__(
        self,
        num_classes: int = 100,
        embedding_size: int = 512,
        backbone: str = "resnet18",
        backbone_weights: str | None = None,
        width: int = 32,
        dropout: float = 0.0,
        folds: int = 10,
        shard_head: bool = True,
        untrained_baseline: bool = True,
        loss: Mapping[str, Any] | None = None,
        optim: Mapping[str, Any] | None = None,
    ) -> None:
        if num_classes < 2 or embedding_size < 1:
            raise ValueError(f"model: num_classes >= 2 and embedding_size >= 1, got {num_classes}, {embedding_size}")
        self.num_classes = num_classes
        self.embedding_size = embedding_size
        super().__init__(loss=loss, optim=optim)
        self.save_hyperparameters(ignore=["loss", "optim"])
        self.model = FaceEmbedder(backbone, embedding_size, width, dropout, backbone_weights)
        self.folds = folds
        self.shard_head = shard_head
        self.untrained_baseline = untrained_baseline
        self._baseline: dict[str, Tensor] = {}
        self._baseline_roc: tuple[Tensor, Tensor] | None = None  # the untrained network's (scores, same)
        self._scores: list[Tensor] = []
        self._same: list[Tensor] = []
        self._norms: list[Tensor] = []

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None and stage == "fit":
            found = datamodule.num_classes
            if found != self.num_classes:
                raise ValueError(
                    f"model.num_classes={self.num_classes}, but the training folder holds {found} identities; "
                    f"set model.num_classes: {found}"
                )
        if self.shard_head and self.trainer.world_size > 1:
            self.shard_heads()

    # ------------------------------------------------------------------ sharded heads and checkpoints

    def heads(self) -> list[tuple[str, AngularHead]]:
        """(parameter-name prefix, module) of every angular head of the ``head`` slot."""
        return [(name, module) for name, module in self.named_modules() if isinstance(module, AngularHead)]

    def shard_heads(self) -> None:
        """Keep this rank's block of every head's class weights, out of DDP's averaging (called before DDP wraps)."""
        for _, head in self.heads():
            if not head.shardable:
                raise losses.LossConfigError(
                    f"loss.head: {head.name} cannot be sharded across DDP ranks (its logits need every class's "
                    "weight norm); set model.shard_head: false to replicate the class weights"
                )
            if head.shard_range is None:
                head.shard()
        ignore = [f"{name}.weight" for name, head in self.heads()]
        DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(self, ignore)

    def _optimizer_indices(self, head: AngularHead) -> dict[int, int]:
        """{optimiser number: index of the head's weight in that optimiser's state_dict}."""
        found = {}
        for k, optimizer in enumerate(self.trainer.optimizers):
            params = [p for group in optimizer.param_groups for p in group["params"]]
            for i, param in enumerate(params):
                if param is head.weight:
                    found[k] = i
        return found

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store every head's whole weight matrix and the moments of the whole matrix (gathered when sharded).

        Runs on every rank (Lightning builds the checkpoint everywhere, rank 0 writes it), as the gathers need.
        """
        record = {}
        for name, head in self.heads():
            key = f"{name}.weight"
            checkpoint["state_dict"][key] = head.full_weight()
            indices = self._optimizer_indices(head) if self._trainer is not None else {}
            for k, i in indices.items() if "optimizer_states" in checkpoint else ():  # not in weights-only files
                states = checkpoint["optimizer_states"][k]["state"]
                if i in states:  # a copy: the optimiser's live state stays this rank's block
                    states[i] = {
                        n: head.gather_rows(v) if isinstance(v, Tensor) and v.shape == head.weight.shape else v
                        for n, v in states[i].items()
                    }
            record[key] = {"rows": head.num_classes * head.sub_centers, "optimizer": indices}
        checkpoint["face_heads"] = record

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Cut this rank's block out of the whole matrices a checkpoint holds (weights and optimiser moments)."""
        record = checkpoint.get("face_heads", {})
        for name, head in self.heads():
            key = f"{name}.weight"
            if head.shard_range is None or key not in checkpoint.get("state_dict", {}):
                continue
            rows = checkpoint["state_dict"][key].shape[0]
            checkpoint["state_dict"][key] = head.local_rows(checkpoint["state_dict"][key])
            for k, i in record.get(key, {}).get("optimizer", {}).items():
                states = checkpoint.get("optimizer_states", [])
                if k < len(states) and i in states[k]["state"]:
                    states[k]["state"][i] = {
                        n: head.local_rows(v) if isinstance(v, Tensor) and v.dim() and v.shape[0] == rows else v
                        for n, v in states[k]["state"][i].items()
                    }

    def on_fit_start(self) -> None:
        """Verification metrics of the untrained network on the validation pairs (a fit from scratch only)."""
        datamodule = getattr(self.trainer, "datamodule", None)
        if not self.untrained_baseline or self.trainer.global_step > 0 or datamodule is None:
            return
        training = self.training
        self.eval()
        with torch.no_grad(), torch.random.fork_rng(devices=[]):  # the training run draws what it would without it
            for batch in datamodule.val_dataloader():
                self._pair_step(self.transfer_batch_to_device(batch, self.device, 0))
            scores, same, norms = self._pairs()
            self._baseline = self.verification_metrics(scores, same, norms)
            self._baseline_roc = (scores, same)
        self.train(training)

    def forward(self, images: Tensor) -> Tensor:
        return self.model(images)

    def embed(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """L2-normalised sum of the image's and its flip's embeddings, and the image embedding norms."""
        plain = self(images)
        both = plain + self(images.flip(-1))
        return F.normalize(both.float(), dim=1), plain.float().norm(dim=1)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor | None:
        images, labels = batch
        embeddings = self(images)
        results = [self.evaluate(slot, embeddings, labels) for slot in ("head", "aux") if slot in self.loss_slots]
        return self.finish_losses(results, batch_size=images.shape[0])

    def validation_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> None:
        self._pair_step(batch)

    def test_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> None:
        self._pair_step(batch)

    def _pair_step(self, batch: tuple[Tensor, Tensor, Tensor]) -> None:
        first, second, same = batch
        a, norm_a = self.embed(first)
        b, norm_b = self.embed(second)
        self._scores.append((a * b).sum(1))
        self._same.append(same)
        self._norms.append(torch.cat((norm_a, norm_b)))

    def predict_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        """The evaluation embeddings (N, D) of a batch of images; :class:`EmbeddingWriter` saves them."""
        return self.embed(batch[0])[0]

    def configure_callbacks(self) -> list[L.Callback]:
        return [EmbeddingWriter()]

    def on_validation_epoch_end(self) -> None:
        self._log_verification("val")

    def on_test_epoch_end(self) -> None:
        self._log_verification("test")

    def verification_metrics(self, scores: Tensor, same: Tensor, norms: Tensor) -> dict[str, Tensor]:
        folds = min(self.folds, scores.numel())
        return {
            "verification_acc": kfold_accuracy(scores, same, folds),
            "tar@far1e-3": tar_at_far(scores, same, 1e-3),
            "tar@far1e-4": tar_at_far(scores, same, 1e-4),
            "embedding_norm_mean": norms.mean(),
            "embedding_norm_std": norms.std() if norms.numel() > 1 else norms.new_zeros(()),
        }

    def _pairs(self) -> tuple[Tensor, Tensor, Tensor]:
        """Scores, same-identity flags and embedding norms of the pairs scored since the last call (all ranks')."""
        scores, same, norms = torch.cat(self._scores), torch.cat(self._same), torch.cat(self._norms)
        self._scores, self._same, self._norms = [], [], []
        if self._trainer is not None and self.trainer.world_size > 1:  # every rank scores the whole pair set
            scores, same, norms = (self.all_gather(t).flatten() for t in (scores, same, norms))
        return scores.cpu(), same.cpu(), norms.cpu()

    def _log_verification(self, stage: str) -> None:
        if not self._scores:
            return
        if self._trainer is not None and self.trainer.sanity_checking:
            self._scores, self._same, self._norms = [], [], []
            return
        scores, same, norms = self._pairs()
        values = self.verification_metrics(scores, same, norms)
        if self._trainer is not None and self.trainer.is_global_zero:
            curves = {f"{stage}, epoch {self.current_epoch}": (scores, same)}
            if self._baseline_roc is not None:
                curves["untrained"] = self._baseline_roc
            plot_roc(curves, Path(self.trainer.default_root_dir) / "plots" / f"roc_{stage}.png", "verification ROC")
        logged = {f"{stage}/{k}": v.float() for k, v in values.items()}
        if stage == "val":
            logged.update({f"val/untrained/{k}": v.float() for k, v in self._baseline.items() if "norm" not in k})
        self.log_dict(logged, prog_bar=False)

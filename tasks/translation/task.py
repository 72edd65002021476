"""Image-to-image translation on the several-optimiser contract: pix2pix (Isola et al. 2017), CycleGAN
(Zhu et al. 2017) and pix2pix-style inpainting (``model.mode``).

Slots (each a composite; every term sees the inputs it declares):

- ``generator``: called with ``(fake, target)`` (images in [-1, 1]) plus the named inputs
  ``fake_logits`` (D's patch scores of the generated images), ``fake_features`` / ``real_features``
  (D's activations, computed only when a term asks for them), ``input``, and in inpainting
  ``fake_hole`` / ``target_hole`` / ``fake_valid`` / ``target_valid`` (the images times the hole mask
  M or times 1 - M, so ``l1`` on them is Liu et al.'s ||M (I_out - I_gt)||_1 / N). Defaults: pix2pix
  ``adversarial + 100*l1`` (lambda_L1 = 100); CycleGAN ``2*adversarial`` with ``kind: lsgan`` (the
  authors' (D(G(x)) - 1)^2, twice the LSGAN paper's 1/2 form), no target; inpainting
  ``adversarial + 600*l1(hole) + 100*l1(valid)`` (pix2pix's 100 on the valid pixels, Liu et al.'s 6:1
  hole:valid ratio; the terms log as ``l1`` and ``l1_2``).
- ``discriminator``: called with ``(real_logits, fake_logits)`` plus ``discriminator``, ``real`` and
  ``fake`` (for ``gradient_penalty``). Default ``0.5*adversarial_d`` (pix2pix halves D's objective);
  CycleGAN ``adversarial_d`` with ``kind: lsgan`` (the authors' 0.5 (D(y) - 1)^2 + 0.5 D(G(x))^2).
- ``cycle`` (CycleGAN only): ``(F(G(a)), a)`` and ``(G(F(b)), b)``; default ``10*cycle_consistency``
  (lambda_cycle = 10).
- ``identity`` (CycleGAN only): ``(G(b), b)`` and ``(F(a), a)``; default ``5*identity``
  (lambda_identity 0.5 x lambda_cycle 10); ``loss.identity: null`` turns it off.

CycleGAN evaluates each slot once on both directions stacked along the batch, so every term is the
mean of the two directions where the authors' code sums them: one common factor 1/2 on both networks'
objectives, which Adam's update does not see. D learns from a history of 50 generated images per
domain (:class:`~tasks.translation.model.ImagePool`, saved in checkpoints).

Each pix2pix step updates D on the real and the detached generated pair, then G; CycleGAN updates both
generators, then both discriminators (the authors' order). Collapse is visible: ``train/d_real`` /
``train/d_fake`` (mean raw scores, per step; CycleGAN adds ``_a`` for the A-domain D) beside the slot
terms per step, and a warning when D's adversarial term stays below ``collapse_threshold`` on every
step of an epoch. Validation logs ``val/psnr``, ``val/ssim`` beside the identity mapping's
``val/psnr_input``, ``val/ssim_input`` (the hazy or masked input against the target), CycleGAN
``val/psnr_cycle`` (a -> b -> a), and a PNG grid per epoch under ``<run>/predictions/``. Predict
translates ``data.predict_dir`` into ``<run>/predictions/<folder>/<name>.png``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn

import losses
from losses.image import ssim
from tasks.base import LossTask
from tasks.datacheck import DataError
from tasks.translation.model import ImagePool, PatchDiscriminator, ResnetGenerator, UnetGenerator, init_weights

PAPER_OPTIM = {"name": "adam", "lr": 2.0e-4, "betas": [0.5, 0.999], "weight_decay": 0.0}
MODES = ("pix2pix", "cyclegan", "inpaint")
#: the datamodule modes each task mode trains on (CycleGAN also takes pairs, ignoring that they match).
DATA_MODES = {"pix2pix": ("paired",), "cyclegan": ("unpaired", "paired"), "inpaint": ("inpaint",)}
MASKED_INPUTS = ("fake_hole", "target_hole", "fake_valid", "target_valid")
GENERATOR_INPUTS = ("fake_logits", "fake_features", "real_features", "input", *MASKED_INPUTS)
#: adversarial kinds whose discriminator loss is >= 0 with 0 = D separates perfectly (the collapse check).
BOUNDED_KINDS = ("vanilla", "nonsaturating", "lsgan", "hinge")
MODE_DEFAULTS: dict[str, dict[str, Any]] = {
    "cyclegan": {
        "generator": [{"name": "adversarial", "weight": 2.0, "params": {"kind": "lsgan"}}],
        "discriminator": [{"name": "adversarial_d", "params": {"kind": "lsgan"}}],
        "cycle": "10*cycle_consistency",
        "identity": "5*identity",
    },
    "inpaint": {
        "generator": [
            {"name": "adversarial"},
            {"name": "l1", "weight": 600.0, "inputs": ["fake_hole", "target_hole"]},
            {"name": "l1", "weight": 100.0, "inputs": ["fake_valid", "target_valid"]},
        ],
    },
}


def with_paper_defaults(optim: Mapping[str, Any] | None, names: Iterable[str]) -> dict[str, Any]:
    """Adam, lr 2e-4, betas (0.5, 0.999) for every optimiser section the config leaves out or leaves partial."""
    optim = dict(optim or {})
    out = {}
    for name in names:
        section = dict(optim.pop(name, None) or {})
        if section.get("name", "adam") in ("adam", "adamw"):
            section = {**PAPER_OPTIM, **section}
        out[name] = section
    out.update(optim)  # unknown sections: parse_optim names them
    return out


def _with_mode_defaults(loss: Mapping[str, Any] | None, mode: str) -> dict[str, Any]:
    """The mode's default slot specs for the slots the config leaves out; CycleGAN slots only in CycleGAN."""
    if mode not in MODES:
        raise losses.LossConfigError(f"model.mode: expected one of {', '.join(MODES)}, got {mode!r}")
    loss = dict(loss or {})
    if mode != "cyclegan":
        for slot in ("cycle", "identity"):
            if loss.get(slot) is not None:
                raise losses.LossConfigError(f"loss.{slot}: only model.mode=cyclegan has this slot (mode is {mode!r})")
            loss[slot] = None
    for slot, spec in MODE_DEFAULTS.get(mode, {}).items():
        loss.setdefault(slot, spec)
    return loss


def psnr(pred: Tensor, target: Tensor) -> Tensor:
    """Per-image PSNR (N,) in dB of images in [0, 1]."""
    mse = (pred - target).square().flatten(1).mean(1).clamp_min(1e-10)
    return -10.0 * torch.log10(mse)


def to_unit(image: Tensor) -> Tensor:
    """[-1, 1] -> [0, 1] (clamped)."""
    return (image.clamp(-1, 1) + 1) / 2


class PredictionWriter(BasePredictionWriter):
    """Write each translated image as ``<run>/predictions/<folder>/<name>.png`` (the input's size)."""

    def __init__(self) -> None:
        super().__init__(write_interval="batch")

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx):
        from torchvision.utils import save_image

        dataset = trainer.predict_dataloaders.dataset
        out_dir = Path(trainer.default_root_dir) / "predictions" / dataset.name
        out_dir.mkdir(parents=True, exist_ok=True)
        for index, image in zip(batch["index"].tolist(), prediction):
            save_image(image.float().cpu(), out_dir / f"{dataset.paths[index].stem}.png")


class TranslationTask(LossTask):
    """pix2pix (U-Net + conditional PatchGAN), CycleGAN (two ResNet generators, two PatchGANs, image
    pools) or inpainting (pix2pix on the masked image and its mask), chosen by ``mode``."""

    LOSS_SLOTS = {
        "generator": losses.Slot(
            ("adversarial", "image", "regression"),
            default="adversarial + 100*l1",
            inject=("value_range",),
            inputs=("fake", "target"),
            extra_inputs=GENERATOR_INPUTS,
            optimizer="generator",
            doc="called with (fake, target) images in [-1, 1] and fake_logits, fake/real_features, input "
            "(inpainting: fake/target_hole, fake/target_valid) by name",
        ),
        "discriminator": losses.Slot(
            ("adversarial",),
            default="0.5*adversarial_d",
            inputs=("real_logits", "fake_logits"),
            extra_inputs=("discriminator", "real", "fake"),
            optimizer="discriminator",
            doc="called with (real_logits, fake_logits) and discriminator, real, fake by name",
        ),
        "cycle": losses.Slot(
            ("image", "regression"),
            default=None,
            inject=("value_range",),
            inputs=("reconstruction", "original"),
            optimizer="generator",
            doc="CycleGAN: called with (F(G(a)), a) and (G(F(b)), b) stacked; default 10*cycle_consistency",
        ),
        "identity": losses.Slot(
            ("image", "regression"),
            default=None,
            inject=("value_range",),
            inputs=("mapped", "original"),
            optimizer="generator",
            doc="CycleGAN: called with (G(b), b) and (F(a), a) stacked; default 5*identity",
        ),
    }
    OPTIMIZERS = ("generator", "discriminator")
    MONITOR = "val/psnr"
    MONITOR_MODE = "max"

    def __init__(
        self,
        mode: str = "pix2pix",
        in_channels: int = 3,
        out_channels: int = 3,
        num_downs: int = 6,
        ngf: int = 64,
        ndf: int = 64,
        n_layers: int = 3,
        n_blocks: int = 9,
        norm: str | None = None,
        dropout: bool = True,
        pool_size: int = 50,
        collapse_threshold: float = 1e-2,
        grid_every_n_epochs: int = 1,
        grid_images: int = 8,
        loss: Mapping[str, Any] | None = None,
        optim: Mapping[str, Any] | None = None,
    ) -> None:
        self.value_range = (-1.0, 1.0)
        super().__init__(loss=_with_mode_defaults(loss, mode), optim=with_paper_defaults(optim, self.OPTIMIZERS))
        self.save_hyperparameters(ignore=["loss", "optim"])
        self.mode = mode
        self._check_kinds()
        norm = norm or ("instance" if mode == "cyclegan" else "batch")
        if mode == "cyclegan":
            self._check_cyclegan_generator_slot()
            self.generator = ResnetGenerator(in_channels, out_channels, ngf, n_blocks)  # G: A -> B
            self.generator_ba = ResnetGenerator(out_channels, in_channels, ngf, n_blocks)  # F: B -> A
            self.discriminator = PatchDiscriminator(out_channels, ndf, n_layers, norm)  # D_B on B images
            self.discriminator_a = PatchDiscriminator(in_channels, ndf, n_layers, norm)
            self.pool_b, self.pool_a = ImagePool(pool_size), ImagePool(pool_size)
            self.MONITOR = "val/psnr_cycle"  # unpaired validation data has no target; run.monitor overrides
            self.size_multiple = 4
        else:
            g_in = in_channels + (mode == "inpaint")  # inpainting: the masked image and its mask
            self.generator = UnetGenerator(g_in, out_channels, num_downs, ngf, dropout)
            self.discriminator = PatchDiscriminator(g_in + out_channels, ndf, n_layers, norm)
            self.size_multiple = 2**num_downs
        for name in self.optimizer_modules("generator") + self.optimizer_modules("discriminator"):
            init_weights(getattr(self, name))
        self.collapse_threshold = collapse_threshold
        self.grid_every_n_epochs = grid_every_n_epochs
        self.grid_images = grid_images
        wanted = {n for inputs in self.loss_slots["generator"].term_inputs for n in (inputs or ())}
        self.needs_features = bool({"fake_features", "real_features"} & wanted)
        self._d_adversarial_max: float | None = None

    def _check_kinds(self) -> None:
        kinds = {}
        for slot, name in (("generator", "AdversarialGenerator"), ("discriminator", "AdversarialDiscriminator")):
            for term in self.loss_slots[slot].terms if slot in self.loss_slots else ():
                if type(term).__name__ == name:
                    kinds[slot] = term.kind
        if len(set(kinds.values())) > 1:
            raise losses.LossConfigError(
                f"loss: the generator's adversarial kind={kinds['generator']!r} and the discriminator's "
                f"adversarial_d kind={kinds['discriminator']!r} must be the same objective"
            )
        self.adversarial_kind = kinds.get("discriminator")

    def _check_cyclegan_generator_slot(self) -> None:
        composite = self.loss_slots["generator"]
        for name, inputs in zip(composite.names, composite.term_inputs):
            if inputs is None:
                raise losses.LossConfigError(
                    f"loss.generator: term {name!r} compares (fake, target), but CycleGAN (model.mode=cyclegan) has "
                    "no paired target; put reconstruction terms in loss.cycle or loss.identity"
                )

    def setup(self, stage: str) -> None:
        """Check that the datamodule reads the data this mode trains on (a mismatch fails before any step)."""
        datamodule = self.trainer.datamodule if self._trainer is not None else None
        data_mode = getattr(datamodule, "mode", None)
        if data_mode is not None and data_mode not in DATA_MODES[self.mode]:
            raise DataError(f"data.mode={data_mode!r} does not fit model.mode={self.mode!r}: use data.mode="
                            f"{' or '.join(DATA_MODES[self.mode])}")
        train_set = getattr(datamodule, "train_set", None) if stage == "fit" else None
        if train_set is not None and len(train_set):  # the training crops must pass through every level
            size = min(next(v for v in train_set[0].values() if isinstance(v, Tensor) and v.dim() == 3).shape[-2:])
            if size % self.size_multiple:
                raise ValueError(
                    f"data.crop: training images of {size} px must be a multiple of {self.size_multiple} px for "
                    f"model.mode={self.mode!r} (the generator halves them that often); set data.crop to a multiple "
                    f"of {self.size_multiple}" + (", or lower model.num_downs" if self.mode != "cyclegan" else "")
                )

    def optimizer_modules(self, name: str) -> list[str]:
        """The attribute names of the networks optimiser ``name`` trains."""
        if name == "generator":
            return ["generator", "generator_ba"] if self.mode == "cyclegan" else ["generator"]
        return ["discriminator", "discriminator_a"] if self.mode == "cyclegan" else ["discriminator"]

    def optimizer_parameters(self, name: str) -> Iterable[tuple[str, nn.Parameter]]:
        return [(f"{m}.{n}", p) for m in self.optimizer_modules(name) for n, p in getattr(self, m).named_parameters()]

    def generator_input(self, batch: Mapping[str, Tensor]) -> Tensor:
        """What G sees: the A image, and in inpainting the masked image with its hole mask."""
        return torch.cat([batch["A"], batch["mask"]], 1) if self.mode == "inpaint" else batch["A"]

    def forward(self, images: Tensor) -> Tensor:
        return self.generator(images)

    def conditioned(self, source: Tensor) -> Callable[[Tensor], Tensor]:
        """D as a function of the output image alone (the gradient penalty differentiates it)."""
        return lambda output: self.discriminator(torch.cat([source, output], 1))

    # ------------------------------------------------------------------ training

    def training_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> None:
        if self.mode == "cyclegan":
            self._cyclegan_step(batch)
        else:
            self._pix2pix_step(batch)

    def _pix2pix_step(self, batch: Mapping[str, Tensor]) -> None:
        source, target = self.generator_input(batch), batch["B"]
        n = source.shape[0]
        fake = self.generator(source)
        detached = fake.detach()
        real_logits = self.discriminator(torch.cat([source, target], 1))
        fake_logits = self.discriminator(torch.cat([source, detached], 1))
        d_result = self.evaluate("discriminator", real_logits, fake_logits,
                                 discriminator=self.conditioned(source), real=target, fake=detached)
        self.step_optimizer("discriminator", self.finish_losses([d_result], "train", n))
        self._log_scores({"": (real_logits, fake_logits)}, d_result, n)

        named: dict[str, Any] = {"input": source}
        if self.mode == "inpaint":
            hole = batch["mask"]
            named.update(fake_hole=fake * hole, target_hole=target * hole,
                         fake_valid=fake * (1 - hole), target_valid=target * (1 - hole))
        if self.needs_features:
            named["fake_features"], named["fake_logits"] = self.discriminator.features(torch.cat([source, fake], 1))
            with torch.no_grad():
                named["real_features"] = self.discriminator.features(torch.cat([source, target], 1))[0]
        else:
            named["fake_logits"] = self.discriminator(torch.cat([source, fake], 1))
        g_loss = self.compute_loss("generator", fake, target, batch_size=n, **named)
        self.step_optimizer("generator", g_loss)

    def _cyclegan_step(self, batch: Mapping[str, Tensor]) -> None:
        real_a, real_b = batch["A"], batch["B"]
        if real_a.shape != real_b.shape:
            raise ValueError(f"CycleGAN trains on A and B images of one size, got {tuple(real_a.shape[-2:])} and "
                             f"{tuple(real_b.shape[-2:])}; set data.crop to train on equal crops")
        n = real_a.shape[0]
        fake_b, fake_a = self.generator(real_a), self.generator_ba(real_b)
        rec_a, rec_b = self.generator_ba(fake_b), self.generator(fake_a)
        discriminators = [self.discriminator, self.discriminator_a]
        for d in discriminators:  # G's step needs no gradients on D
            d.requires_grad_(False)
        fakes = torch.cat([fake_b, fake_a])
        results = [self.evaluate("generator", fake=fakes, fake_logits=self._both_d(fakes, n),
                                 input=torch.cat([real_a, real_b]))]
        results.append(self.evaluate("cycle", torch.cat([rec_a, rec_b]), torch.cat([real_a, real_b])))
        if "identity" in self.loss_slots:
            same = torch.cat([self.generator(real_b), self.generator_ba(real_a)])
            results.append(self.evaluate("identity", same, torch.cat([real_b, real_a])))
        self.step_optimizer("generator", self.finish_losses(results, "train", n))
        for d in discriminators:
            d.requires_grad_(True)

        pooled = torch.cat([self.pool_b.query(fake_b), self.pool_a.query(fake_a)])
        reals = torch.cat([real_b, real_a])
        real_logits, fake_logits = self._both_d(reals, n), self._both_d(pooled, n)
        d_result = self.evaluate("discriminator", real_logits, fake_logits,
                                 discriminator=lambda x: self._both_d(x, n), real=reals, fake=pooled)
        self.step_optimizer("discriminator", self.finish_losses([d_result], "train", n))
        self._log_scores({"": (real_logits[:n], fake_logits[:n]), "_a": (real_logits[n:], fake_logits[n:])},
                         d_result, n)

    def _both_d(self, images: Tensor, n: int) -> Tensor:
        """D_B on the first ``n`` images (B domain), D_A on the rest, stacked."""
        return torch.cat([self.discriminator(images[:n]), self.discriminator_a(images[n:])])

    def _log_scores(self, scores: Mapping[str, tuple[Tensor, Tensor]], d_result: Any, n: int) -> None:
        """Mean raw D scores per step and epoch, and the epoch's largest D adversarial term (collapse check)."""
        for suffix, (real, fake) in scores.items():
            means = {f"train/d_real{suffix}": real.detach().mean(), f"train/d_fake{suffix}": fake.detach().mean()}
            self.log_dict(means, on_step=True, on_epoch=True, batch_size=n)
        composite = d_result.composite
        for name, term in zip(composite.names, composite.terms):
            if type(term).__name__ == "AdversarialDiscriminator":
                value = float(d_result.terms[name])
                self._d_adversarial_max = max(value, self._d_adversarial_max or value)

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        self._d_adversarial_max = None

    def on_train_epoch_end(self) -> None:
        super().on_train_epoch_end()
        self.check_collapse()

    def check_collapse(self) -> None:
        """Warn when D's adversarial term stayed below ``collapse_threshold`` on every step of the epoch."""
        worst = self._d_adversarial_max
        if worst is None or self.adversarial_kind not in BOUNDED_KINDS or worst >= self.collapse_threshold:
            return
        rank_zero_warn(
            f"epoch {self.current_epoch}: the discriminator's adversarial loss stayed below "
            f"{self.collapse_threshold:g} on every step (largest {worst:.2e}); D separates real from generated "
            "images perfectly and the generator gets no useful gradient (collapse). Lower D's lr, weight or "
            "capacity, or add a gradient penalty (model.collapse_threshold sets the bound)"
        )

    # ------------------------------------------------------------------ validation and prediction

    def validation_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "val")

    def test_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "test")

    def translate(self, batch: Mapping[str, Tensor]) -> Tensor:
        """G's output for a batch in [-1, 1]; inpainting keeps the valid pixels of the input."""
        fake = self.generator(self.generator_input(batch))
        if self.mode == "inpaint":
            fake = batch["mask"] * fake + (1 - batch["mask"]) * batch["A"]
        return fake

    def _evaluate(self, batch: Mapping[str, Tensor], batch_idx: int, stage: str) -> None:
        source, target = batch["A"], batch["B"]
        n = source.shape[0]
        fake = self.translate(batch)
        pred01, target01, source01 = to_unit(fake), to_unit(target), to_unit(source)
        metrics: dict[str, Tensor] = {}
        columns = [source01, pred01, target01]
        if self.mode == "cyclegan":
            rec01 = to_unit(self.generator_ba(fake))
            metrics[f"{stage}/psnr_cycle"] = psnr(rec01, source01).mean()
            columns = [source01, pred01, rec01, target01]
        if self.mode != "cyclegan" or bool(batch["paired"].all()):
            metrics.update({
                f"{stage}/psnr": psnr(pred01, target01).mean(),
                f"{stage}/ssim": ssim(pred01, target01).mean(),
                f"{stage}/psnr_input": psnr(source01, target01).mean(),
                f"{stage}/ssim_input": ssim(source01, target01).mean(),
                f"{stage}/l1": (fake - target).abs().mean(),
            })
        self.log_dict(metrics, on_epoch=True, sync_dist=True, batch_size=n)
        if stage == "val" and batch_idx == 0 and self._should_draw_grid():
            self._save_grid(columns)

    def on_validation_epoch_end(self) -> None:
        metrics = self.trainer.callback_metrics
        if "val/psnr" in metrics and "val/psnr_input" in metrics:
            self.log("val/psnr_gain", metrics["val/psnr"] - metrics["val/psnr_input"], sync_dist=True)

    def predict_step(self, batch: Mapping[str, Tensor], batch_idx: int) -> Tensor:
        """The translated images in [0, 1] at their input size (padded to the generator's multiple, cropped back)."""
        h, w = batch["A"].shape[-2:]
        m = self.size_multiple
        pad = (0, -w % m, 0, -h % m)
        padded = {k: F.pad(v, pad, mode="replicate") for k, v in batch.items() if k in ("A", "mask")}
        return to_unit(self.translate(padded)[..., :h, :w])

    def configure_callbacks(self) -> list[L.Callback]:
        return [PredictionWriter()]

    def _should_draw_grid(self) -> bool:
        return (
            self.grid_every_n_epochs > 0
            and self._trainer is not None
            and self.trainer.is_global_zero
            and not self.trainer.sanity_checking
            and self.current_epoch % self.grid_every_n_epochs == 0
        )

    def _save_grid(self, columns: list[Tensor]) -> None:
        """input | output | (CycleGAN: reconstruction |) target, one row per image."""
        from torchvision.utils import save_image

        k = min(self.grid_images, columns[0].shape[0])
        rows = torch.stack([c[:k] for c in columns], 1).flatten(0, 1)
        path = Path(self.trainer.default_root_dir) / "predictions" / f"epoch_{self.current_epoch:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        save_image(rows.float().cpu(), path, nrow=len(columns), padding=2, pad_value=1.0)

"""Paired image-to-image translation (pix2pix, Isola et al. 2017) on the several-optimiser contract.

Slots (each a composite; every term sees the inputs it declares):

- ``generator``: called with ``(fake, target)`` (images in [-1, 1]) plus the named inputs
  ``fake_logits`` (D's patch scores of the generated pair), ``fake_features`` / ``real_features``
  (D's activations, computed only when a term asks for them) and ``input``. Default
  ``adversarial + 100*l1`` (lambda_L1 = 100).
- ``discriminator``: called with ``(real_logits, fake_logits)`` plus ``discriminator`` (D conditioned
  on the input image), ``real`` and ``fake`` (for ``gradient_penalty``). Default ``0.5*adversarial_d``
  (the paper halves D's objective).

Image losses with a value range (``ssim``, ``ms_ssim``) get ``value_range = [-1, 1]`` injected.
Each step updates D on the real pair and the detached generated pair, then G. Logged: the slot
terms per step, ``train/d_real`` / ``train/d_fake`` (mean raw scores: collapse shows as a gap that
explodes or vanishes), and per validation epoch ``val/psnr``, ``val/ssim`` beside the identity
mapping's ``val/psnr_input``, ``val/ssim_input`` (the hazy input against the clear target) and a PNG
grid input | output | target under ``<run>/predictions/``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn

import losses
from losses.image import ssim
from tasks.base import LossTask
from tasks.translation.model import PatchDiscriminator, UnetGenerator, init_weights

PAPER_OPTIM = {"name": "adam", "lr": 2.0e-4, "betas": [0.5, 0.999], "weight_decay": 0.0}
GENERATOR_INPUTS = ("fake_logits", "fake_features", "real_features", "input")


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


def psnr(pred: Tensor, target: Tensor) -> Tensor:
    """Per-image PSNR (N,) in dB of images in [0, 1]."""
    mse = (pred - target).square().flatten(1).mean(1).clamp_min(1e-10)
    return -10.0 * torch.log10(mse)


class TranslationTask(LossTask):
    """pix2pix: U-Net generator, 70x70 PatchGAN discriminator conditioned on the input image."""

    LOSS_SLOTS = {
        "generator": losses.Slot(
            ("adversarial", "image", "regression"),
            default="adversarial + 100*l1",
            inject=("value_range",),
            inputs=("fake", "target"),
            extra_inputs=GENERATOR_INPUTS,
            optimizer="generator",
            doc="called with (fake, target) images in [-1, 1] and fake_logits, fake/real_features, input by name",
        ),
        "discriminator": losses.Slot(
            ("adversarial",),
            default="0.5*adversarial_d",
            inputs=("real_logits", "fake_logits"),
            extra_inputs=("discriminator", "real", "fake"),
            optimizer="discriminator",
            doc="called with (real_logits, fake_logits) and discriminator, real, fake by name",
        ),
    }
    OPTIMIZERS = ("generator", "discriminator")
    MONITOR = "val/psnr"
    MONITOR_MODE = "max"

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        num_downs: int = 6,
        ngf: int = 64,
        ndf: int = 64,
        n_layers: int = 3,
        dropout: bool = True,
        grid_every_n_epochs: int = 1,
        grid_images: int = 8,
        loss: Mapping[str, Any] | None = None,
        optim: Mapping[str, Any] | None = None,
    ) -> None:
        self.value_range = (-1.0, 1.0)
        super().__init__(loss=loss, optim=with_paper_defaults(optim, self.OPTIMIZERS))
        self.save_hyperparameters(ignore=["loss", "optim"])
        self._check_kinds()
        self.generator = UnetGenerator(in_channels, out_channels, num_downs, ngf, dropout)
        self.discriminator = PatchDiscriminator(in_channels + out_channels, ndf, n_layers)
        init_weights(self.generator)
        init_weights(self.discriminator)
        self.grid_every_n_epochs = grid_every_n_epochs
        self.grid_images = grid_images
        wanted = {n for inputs in self.loss_slots["generator"].term_inputs for n in (inputs or ())}
        self.needs_features = bool({"fake_features", "real_features"} & wanted)

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

    def optimizer_parameters(self, name: str) -> Iterable[tuple[str, nn.Parameter]]:
        return getattr(self, name).named_parameters()

    def forward(self, images: Tensor) -> Tensor:
        return self.generator(images)

    def conditioned(self, source: Tensor) -> Any:
        """D as a function of the output image alone (the gradient penalty differentiates it)."""
        return lambda output: self.discriminator(torch.cat([source, output], 1))

    # ------------------------------------------------------------------ training

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        source, target = batch
        n = source.shape[0]
        fake = self.generator(source)
        detached = fake.detach()
        real_logits = self.discriminator(torch.cat([source, target], 1))
        fake_logits = self.discriminator(torch.cat([source, detached], 1))
        d_loss = self.compute_loss(
            "discriminator", real_logits, fake_logits, batch_size=n,
            discriminator=self.conditioned(source), real=target, fake=detached,
        )
        self.step_optimizer("discriminator", d_loss)
        self.log_dict({"train/d_real": real_logits.detach().mean(), "train/d_fake": fake_logits.detach().mean()},
                      on_step=True, on_epoch=True, batch_size=n)

        named: dict[str, Any] = {"input": source}
        if self.needs_features:
            named["fake_features"], named["fake_logits"] = self.discriminator.features(torch.cat([source, fake], 1))
            with torch.no_grad():
                named["real_features"] = self.discriminator.features(torch.cat([source, target], 1))[0]
        else:
            named["fake_logits"] = self.discriminator(torch.cat([source, fake], 1))
        g_loss = self.compute_loss("generator", fake, target, batch_size=n, **named)
        self.step_optimizer("generator", g_loss)

    def on_train_epoch_end(self) -> None:
        super().on_train_epoch_end()
        d_loss = self.trainer.callback_metrics.get("train/loss/discriminator_epoch")
        if d_loss is not None and abs(float(d_loss)) < 1e-3:
            rank_zero_warn(
                f"epoch {self.current_epoch}: the discriminator loss averaged {float(d_loss):.2e}; D separates real "
                "from generated pairs perfectly and the generator gets no useful gradient (collapse)"
            )

    # ------------------------------------------------------------------ validation

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, batch_idx, "test")

    def predict_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self.generator(batch[0])

    def _evaluate(self, batch: tuple[Tensor, Tensor], batch_idx: int, stage: str) -> None:
        source, target = batch
        n = source.shape[0]
        fake = self.generator(source)
        pred01, target01, source01 = ((t.clamp(-1, 1) + 1) / 2 for t in (fake, target, source))
        metrics = {
            f"{stage}/psnr": psnr(pred01, target01).mean(),
            f"{stage}/ssim": ssim(pred01, target01).mean(),
            f"{stage}/psnr_input": psnr(source01, target01).mean(),
            f"{stage}/ssim_input": ssim(source01, target01).mean(),
            f"{stage}/l1": (fake - target).abs().mean(),
        }
        self.log_dict(metrics, on_epoch=True, sync_dist=True, batch_size=n)
        if stage == "val" and batch_idx == 0 and self._should_draw_grid():
            self._save_grid(source01, pred01, target01)

    def on_validation_epoch_end(self) -> None:
        metrics = self.trainer.callback_metrics
        if "val/psnr" in metrics and "val/psnr_input" in metrics:
            self.log("val/psnr_gain", metrics["val/psnr"] - metrics["val/psnr_input"], sync_dist=True)

    def _should_draw_grid(self) -> bool:
        return (
            self.grid_every_n_epochs > 0
            and self._trainer is not None
            and self.trainer.is_global_zero
            and not self.trainer.sanity_checking
            and self.current_epoch % self.grid_every_n_epochs == 0
        )

    def _save_grid(self, source: Tensor, output: Tensor, target: Tensor) -> None:
        from torchvision.utils import save_image

        k = min(self.grid_images, source.shape[0])
        rows = torch.stack([source[:k], output[:k], target[:k]], 1).flatten(0, 1)  # input | output | target
        path = Path(self.trainer.default_root_dir) / "predictions" / f"epoch_{self.current_epoch:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        save_image(rows.float().cpu(), path, nrow=3, padding=2, pad_value=1.0)

"""The task contract: declared slots, optimiser groups, several optimisers with their own slots, resume."""

from __future__ import annotations

import csv
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import losses
from losses.registry import _REGISTRY
from tasks.base import LossTask
from trainer.callbacks import StepSeed

D_INPUTS = ("discriminator", "real", "fake")


class TinyGAN(LossTask):
    """A 2-D GAN: discriminator slot = BCE + gradient penalty, generator slot = BCE + L1 on its own inputs."""

    LOSS_SLOTS = {
        "generator": losses.Slot(
            ("classification", "regression"),
            default=[{"name": "bce"}, {"name": "mae", "weight": 0.1, "inputs": ["fake", "real"]}],
            fixed={"mode": "binary"},
            inputs=("logits", "target"),
            extra_inputs=("fake", "real"),
            optimizer="generator",
        ),
        "discriminator": losses.Slot(
            ("classification", "adversarial"),
            default=[{"name": "bce"}, {"name": "gradient_penalty", "weight": 1.0}],
            fixed={"mode": "binary"},
            inputs=("logits", "target"),
            extra_inputs=D_INPUTS,
            optimizer="discriminator",
        ),
    }
    OPTIMIZERS = ("generator", "discriminator")

    def __init__(self, loss=None, optim=None) -> None:
        super().__init__(loss=loss, optim=optim)
        self.generator = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))
        self.discriminator = nn.Sequential(nn.Linear(2, 16), nn.LayerNorm(16), nn.LeakyReLU(0.2), nn.Linear(16, 1))

    def optimizer_parameters(self, name: str):
        return getattr(self, name).named_parameters()

    def training_step(self, batch, batch_idx):
        (real,) = batch
        n = real.shape[0]
        fake = self.generator(torch.randn(n, 4))
        logits = self.discriminator(torch.cat([real, fake.detach()])).squeeze(1)
        labels = torch.cat([torch.ones(n), torch.zeros(n)])
        d_loss = self.compute_loss(
            "discriminator", logits, labels, discriminator=self.discriminator, real=real, fake=fake.detach()
        )
        self.step_optimizer("discriminator", d_loss)
        g_logits = self.discriminator(fake).squeeze(1)
        g_loss = self.compute_loss("generator", g_logits, torch.ones(n), fake=fake, real=real)
        self.step_optimizer("generator", g_loss)


def _loader() -> DataLoader:
    points = torch.randn(64, 2, generator=torch.Generator().manual_seed(0)) * 0.3 + torch.tensor([2.0, -1.0])
    return DataLoader(TensorDataset(points), batch_size=16, shuffle=False)


class Interrupt(L.Callback):
    def __init__(self, at_epoch: int) -> None:
        self.at_epoch = at_epoch

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch == self.at_epoch:
            raise RuntimeError("simulated interruption")


def _trainer(root: Path, epochs: int) -> L.Trainer:
    return L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
        callbacks=[ModelCheckpoint(dirpath=root / "checkpoints", save_last=True), StepSeed(7)],
    )


OPTIM = {
    "generator": {"name": "adam", "lr": 2e-3, "betas": [0.5, 0.999]},
    "discriminator": {"name": "adam", "lr": 1e-3, "betas": [0.5, 0.999], "scheduler": "step", "step_size": 1},
}


def test_two_optimisers_and_a_gradient_penalty_train_checkpoint_and_resume_exactly(tmp_path: Path) -> None:
    torch.manual_seed(0)
    reference = TinyGAN(optim=OPTIM)
    initial = {k: v.clone() for k, v in reference.state_dict().items()}
    _trainer(tmp_path / "ref", 2).fit(reference, _loader())

    interrupted = TinyGAN(optim=OPTIM)
    interrupted.load_state_dict(initial)
    trainer = _trainer(tmp_path / "run", 2)
    trainer.callbacks.append(Interrupt(at_epoch=1))
    with pytest.raises(RuntimeError, match="simulated interruption"):
        trainer.fit(interrupted, _loader())
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    state = torch.load(last, map_location="cpu", weights_only=False)
    assert len(state["optimizer_states"]) == 2 and len(state["lr_schedulers"]) == 2

    resumed = TinyGAN(optim=OPTIM)
    trainer = _trainer(tmp_path / "run", 2)
    trainer.fit(resumed, _loader(), ckpt_path=str(last))

    for name, value in resumed.state_dict().items():
        torch.testing.assert_close(value, reference.state_dict()[name], msg=name)
    assert not torch.equal(reference.generator[0].weight, initial["generator.0.weight"])  # it trained
    assert not torch.equal(reference.discriminator[0].weight, initial["discriminator.0.weight"])
    # each optimiser has its own lr schedule; the discriminator's StepLR decayed once per epoch
    d_opt = resumed.optimizer("discriminator").optimizer
    assert d_opt.param_groups[0]["lr"] == pytest.approx(1e-3 * 0.1**2)
    metrics = trainer.callback_metrics
    for key in ("train/loss/discriminator/gradient_penalty", "train/loss/generator/mae", "train/loss/generator"):
        assert torch.isfinite(metrics[key]), key


def test_each_optimiser_gets_its_modules_and_its_slots_loss_parameters() -> None:
    task = TinyGAN(loss={"balance": "uncertainty"}, optim=OPTIM)
    g_opt, d_opt = (opt for opt in task.configure_optimizers()[0])
    g_params = {id(p) for group in g_opt.param_groups for p in group["params"]}
    d_params = {id(p) for group in d_opt.param_groups for p in group["params"]}
    assert g_params >= {id(p) for p in task.generator.parameters()} and not g_params & d_params
    assert id(task.loss_slots["generator"].log_vars) in g_params
    assert id(task.loss_slots["discriminator"].log_vars) in d_params
    assert {g["name"] for g in g_opt.param_groups} == {"model", "no_decay", "balance"}


@pytest.fixture
def owned_parameter_loss():
    @losses.register("toy_centres", family="regression")
    class ToyCentres(nn.Module):
        """Distance to a learnable centre (test helper: a loss that owns a parameter)."""

        def __init__(self) -> None:
            super().__init__()
            self.centre = nn.Parameter(torch.zeros(2, 3))

        def forward(self, pred, target):
            return ((pred - self.centre[target.long()]) ** 2).mean()

    yield
    _REGISTRY.pop("toy_centres")


class TinyRegressor(LossTask):
    LOSS_SLOTS = {"main": losses.Slot(("regression",), default="toy_centres + mse")}

    def __init__(self, loss=None, optim=None) -> None:
        super().__init__(loss=loss, optim=optim)
        self.net = nn.Sequential(nn.Linear(3, 8), nn.BatchNorm1d(8), nn.Linear(8, 3))


def _groups(task: LossTask) -> dict[str, dict]:
    optimizer = task.configure_optimizers()
    optimizer = optimizer["optimizer"] if isinstance(optimizer, dict) else optimizer
    return {g["name"]: g for g in optimizer.param_groups}


def test_loss_owned_parameters_get_their_own_group_with_configured_lr_and_weight_decay(owned_parameter_loss):
    optim = {"name": "adamw", "lr": 0.01, "weight_decay": 0.05, "groups": {"balance": {"lr_mult": 3}}}
    task = TinyRegressor(optim=optim)
    groups = _groups(task)
    assert set(groups) == {"model", "no_decay", "loss"}
    assert groups["model"]["weight_decay"] == 0.05 and groups["no_decay"]["weight_decay"] == 0.0
    assert len(groups["no_decay"]["params"]) == 4  # two biases, BatchNorm weight and bias
    assert groups["loss"]["params"] == [task.loss_slots["main"].terms[0].centre]

    spec = [{"name": "toy_centres", "optim": {"lr_mult": 10, "weight_decay": 0}}, {"name": "mse"}]
    task = TinyRegressor(loss={"main": spec, "balance": "uncertainty"}, optim=optim)
    groups = _groups(task)
    assert set(groups) == {"model", "no_decay", "balance", "loss/main/toy_centres"}
    assert groups["loss/main/toy_centres"]["lr"] == pytest.approx(0.1)
    assert groups["loss/main/toy_centres"]["weight_decay"] == 0.0
    assert groups["balance"]["lr"] == pytest.approx(0.03) and groups["balance"]["weight_decay"] == 0.0
    total = sum(len(g["params"]) for g in groups.values())
    assert total == len(list(task.parameters()))  # every parameter in exactly one group


@pytest.mark.parametrize(
    ("optim", "message"),
    [
        ({"name": "adamw", "momentum": 0.9}, r"optim.momentum: not an argument of AdamW"),
        ({"name": "adamx"}, r"optim.name: 'adamx' is not one of"),
        ({"lr": 0}, r"optim.lr: 0 would train nothing"),
        ({"groups": {"bias": {"lr_mult": 2}}}, r"optim.groups: unknown group"),
        ({"groups": {"loss": {"lr_mult": -1}}}, r"optim.groups.loss.lr_mult: expected a number >= 0"),
    ],
)
def test_optimiser_section_errors_name_the_key(optim, message):
    with pytest.raises(losses.LossConfigError, match=message):
        TinyRegressor(loss={"main": "mse"}, optim=optim)


def test_momentum_null_is_dropped_when_switching_to_adamw():
    groups = _groups(TinyRegressor(loss={"main": "mse"}, optim={"name": "adamw", "momentum": None}))
    assert "momentum" not in groups["model"]


def test_named_optimisers_need_their_own_sections():
    with pytest.raises(losses.LossConfigError, match="this task has the optimisers generator, discriminator"):
        TinyGAN(optim={"name": "adam"})


@pytest.mark.parametrize(
    ("loss", "message"),
    [
        ({"generator": {"name": "bce", "params": {"mode": "multiclass"}}}, r"fixes mode='binary'"),
        ({"generator": {"name": "mae", "inputs": ["noise"]}}, r"'noise' not provided by the generator slot"),
        ({"generator": "giou"}, r"'giou' is an overlap loss; generator slots take classification/regression"),
        ({"generator": "gradient_penalty"}, r"adversarial loss"),
        ({"critic": "bce"}, r"unknown slot"),
    ],
)
def test_slot_declarations_are_enforced_from_python(loss, message):
    with pytest.raises(losses.LossConfigError, match=message):
        TinyGAN(loss=loss, optim=OPTIM)


def test_missing_term_input_names_the_term_and_what_the_slot_got():
    task = TinyGAN(optim=OPTIM)
    with pytest.raises(losses.LossInputError, match=r"loss.generator: term 'mae' needs input\(s\) 'fake', 'real'"):
        task.evaluate("generator", torch.zeros(2), torch.ones(2))


# ---------------------------------------------------------------------------------------------- per-term gradients


class TinyLinear(LossTask):
    """A two-layer regressor whose slot has two terms (GradNorm and attribution on its output layer)."""

    LOSS_SLOTS = {"main": losses.Slot(("regression",), default="mse + 0.5*mae")}

    def __init__(self, loss=None, optim=None) -> None:
        super().__init__(loss=loss, optim=optim)
        self.body = nn.Linear(3, 8)
        self.out = nn.Linear(8, 2)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return self.compute_loss("main", self.out(torch.tanh(self.body(x))), y, batch_size=len(x))


def _regression_loader() -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 3, generator=g)
    y = torch.stack([x[:, 0] - x[:, 1], 3 * x[:, 2]], 1) + 0.1 * torch.randn(32, 2, generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=8, shuffle=False)


def test_shared_layer_defaults_to_the_last_layer_each_slot_trains() -> None:
    task = TinyLinear()
    assert task.shared_layer("main") is task.out
    gan = TinyGAN(optim=OPTIM)
    assert gan.shared_layer("generator") is gan.generator[2]
    assert gan.shared_layer("discriminator") is gan.discriminator[3]
    with pytest.raises(losses.LossConfigError, match=r"run.term_grad_norms: expected an integer >= 1"):
        task.term_grad_norms = 0


def test_gradnorm_trains_in_the_balance_group_logs_attribution_and_weights_and_resumes_exactly(tmp_path: Path):
    loss = {"balance": {"name": "gradnorm", "alpha": 1.5}}
    optim = {"name": "adam", "lr": 0.01, "scheduler": "none", "groups": {"balance": {"lr_mult": 5}}}

    def trainer(root: Path, *callbacks: L.Callback) -> L.Trainer:
        return L.Trainer(max_epochs=2, accelerator="cpu", enable_progress_bar=False, enable_model_summary=False,
                         logger=CSVLogger(root, name="logs", version=""), default_root_dir=root,
                         callbacks=[ModelCheckpoint(dirpath=root / "checkpoints", save_last=True), *callbacks])

    torch.manual_seed(0)
    reference = TinyLinear(loss=loss, optim=optim)
    reference.term_grad_norms = 2
    initial = {k: v.clone() for k, v in reference.state_dict().items()}
    groups = _groups(reference)
    assert groups["balance"]["params"] == [reference.loss_slots["main"].gradnorm.weights]
    assert groups["balance"]["lr"] == pytest.approx(0.05) and groups["balance"]["weight_decay"] == 0.0
    trainer(tmp_path / "ref").fit(reference, _regression_loader())

    gradnorm = reference.loss_slots["main"].gradnorm
    assert not torch.allclose(gradnorm.current(), torch.ones(2)) and float(gradnorm.current().sum()) == pytest.approx(2)
    assert torch.isfinite(gradnorm.initial).all()  # L_i(0) recorded at the first step

    rows = list(csv.DictReader(open(tmp_path / "ref" / "logs" / "metrics.csv")))
    attributed = [r for r in rows if r.get("train/grad_share/main/mse")]
    assert [int(r["step"]) for r in attributed] == [0, 2, 4, 6]  # every 2 of the 8 training batches
    for row in attributed:
        shares = float(row["train/grad_share/main/mse"]) + float(row["train/grad_share/main/mae"])
        assert shares == pytest.approx(1.0, abs=1e-5)
        assert float(row["train/grad_norm/main/mse"]) > 0
    weights = [r for r in rows if r.get("train/weight/main/mae")]
    assert len(weights) == 2  # one per epoch: 0.5 (spec) x the GradNorm weight
    assert float(weights[-1]["train/weight/main/mae"]) == pytest.approx(0.5 * float(gradnorm.current()[1]), rel=1e-5)

    interrupted = TinyLinear(loss=loss, optim=optim)
    interrupted.load_state_dict(initial)
    with pytest.raises(RuntimeError, match="simulated interruption"):
        trainer(tmp_path / "run", Interrupt(at_epoch=1)).fit(interrupted, _regression_loader())
    resumed = TinyLinear(loss=loss, optim=optim)
    trainer(tmp_path / "run").fit(resumed, _regression_loader(), ckpt_path=str(tmp_path / "run/checkpoints/last.ckpt"))
    for name, value in resumed.state_dict().items():
        torch.testing.assert_close(value, reference.state_dict()[name], msg=name)

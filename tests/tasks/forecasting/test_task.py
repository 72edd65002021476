"""The forecasting task: the head comes from the loss, mismatches are config errors, quantiles never cross,
a short fit on the embedded CO2 series logs the metrics beside the baselines, the recipe validates."""

from __future__ import annotations

import csv
from pathlib import Path

import lightning as L
import pytest
import torch

import losses
from tasks.forecasting import ForecastDataModule, ForecastingTask
from tasks.forecasting.model import Forecaster, HeadPlan, NBeats
from trainer.build import validate
from trainer.cli import main
from trainer.config import load_config

REPO = Path(__file__).resolve().parents[3]
RECIPE = REPO / "configs" / "forecasting" / "co2.yaml"
SMALL = {"context": 60, "horizon": 13}


def task(loss, **kwargs) -> ForecastingTask:
    return ForecastingTask(**{**SMALL, "plot_every_n_epochs": 0, **kwargs}, loss={"forecast": loss})


@pytest.mark.parametrize(
    ("loss", "kind", "width"),
    [
        ("mae", "point", 1),
        ("mae + 0.1*temporal_consistency + 0.5*mase", "point", 1),
        ("pinball", "quantile", 7),
        ({"name": "pinball", "params": {"quantiles": [0.1, 0.5, 0.9]}}, "quantile", 3),
        ("huber_quantile + 0.1*mae", "quantile", 7),
        ("gaussian_nll", "normal", 2),
        ("gaussian_nll + crps_gaussian + 0.1*mae", "normal", 2),
        ("student_t_nll", "student_t", 3),
        ({"name": "student_t_nll", "params": {"df": 4.0}}, "normal", 2),  # fixed df: loc and sigma suffice
        ("poisson_nll", "poisson", 1),
        ("negative_binomial_nll", "negative_binomial", 2),
    ],
)
def test_head_is_sized_from_the_loss(loss, kind, width):
    t = task(loss)
    assert t.plan.kind == kind and t.plan.width == width
    out = t(torch.randn(4, 60))
    assert out["pred"].shape == (4, 13)
    if kind == "quantile":
        assert out["quantiles"].shape == (4, 13, width)


def test_crps_sample_gets_reparameterised_samples():
    t = task({"name": "crps_sample", "params": {"num_samples": 8}})
    assert t.plan.kind == "normal" and t.plan.num_samples == 8
    batch = {"context": torch.randn(2, 60), "scale": torch.ones(2), "sq_scale": torch.ones(2)}
    out = t(batch["context"])
    named = t.slot_inputs(batch, out)
    assert named["samples"].shape == (2, 13, 8) and named["samples"].requires_grad


@pytest.mark.parametrize(
    ("loss", "match"),
    [
        ("pinball + gaussian_nll", "'pinball' needs a quantile head but 'gaussian_nll'"),
        ("poisson_nll + crps_gaussian", "no one distribution head"),
        ([{"name": "pinball"}, {"name": "huber_quantile", "params": {"quantiles": [0.1, 0.9]}}], "different levels"),
        ({"name": "quantile", "params": {"quantiles": [0.1, 0.9]}}, "use 'pinball'"),
    ],
)
def test_loss_head_mismatch_is_a_config_error(loss, match):
    with pytest.raises(losses.LossConfigError, match=rf"^loss.forecast: .*{match}"):
        task(loss)


def test_mismatch_stops_the_cli_with_one_line_before_training(capsys, tmp_path):
    code = main(["fit", "-c", str(RECIPE), f"run.root={tmp_path}", "loss.forecast=pinball + student_t_nll"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("config error: loss.forecast:") and "\n" not in err
    assert not list(tmp_path.glob("*/version_*/checkpoints/*"))  # nothing trained


@pytest.mark.parametrize("seed", range(3))
def test_quantile_head_never_crosses_on_random_networks(seed):
    torch.manual_seed(seed)
    plan = HeadPlan("quantile", ("quantiles",), (0.02, 0.1, 0.25, 0.5, 0.75, 0.9, 0.98))
    network = NBeats(48, 12, plan.width, hidden=32, layers=2, blocks=2)
    for p in network.parameters():
        p.data.normal_(0, 3.0)  # wild raw outputs
    context = torch.randn(64, 48) * 10 ** torch.randint(-2, 3, (64, 1)).float()
    crossing = Forecaster(network, plan, non_crossing=False)(context)["quantiles"]
    assert (crossing.diff(dim=-1) < 0).any()  # without the guarantee they do cross
    q = Forecaster(network, plan, non_crossing=True)(context)["quantiles"]
    assert torch.isfinite(q).all() and (q.diff(dim=-1) >= 0).all()


def test_bad_model_settings_name_the_key():
    with pytest.raises(ValueError, match="model.arch"):
        task("mae", arch="transformer")
    with pytest.raises(ValueError, match="model.interval"):
        task("mae", interval=80)
    with pytest.raises(ValueError, match="model.normalize"):
        task("mae", normalize="revin")


def _trainer(tmp_path: Path) -> L.Trainer:
    return L.Trainer(
        max_epochs=1,
        limit_train_batches=3,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        num_sanity_val_steps=0,
    )


@pytest.mark.parametrize(("loss", "arch"), [("mae", "dlinear"), ("pinball", "nbeats"), ("gaussian_nll", "gru")])
def test_short_fit_logs_metrics_beside_the_baselines(tmp_path, loss, arch):
    dm = ForecastDataModule(**SMALL, stride=16, eval_stride=13, batch_size=16)
    t = task(loss, arch=arch, hidden_size=16, num_layers=1, num_blocks=1, plot_every_n_epochs=1, plot_windows=2)
    trainer = _trainer(tmp_path)
    trainer.fit(t, datamodule=dm)
    metrics = trainer.callback_metrics
    for key in ("val/mae", "val/rmse", "val/smape", "val/mase", "val/crps", "val/snaive/mase", "val/naive/mase"):
        assert torch.isfinite(metrics[key]), key
    assert float(metrics["val/mase_vs_snaive"]) == pytest.approx(
        float(metrics["val/mase"]) / float(metrics["val/snaive/mase"]), rel=1e-5
    )
    assert ("val/coverage" in metrics) == (loss != "mae")
    if loss != "mae":
        assert 0.0 <= float(metrics["val/coverage"]) <= 1.0 and float(metrics["val/width"]) > 0
        assert 0.0 <= float(metrics["val/below/q0.5"]) <= 1.0  # calibration per quantile level
    table = list(csv.reader((tmp_path / "forecast_metrics_val.csv").open()))
    assert table[0] == ["forecaster", "mae", "rmse", "smape", "mase", "crps", "coverage", "width"]
    assert [row[0].split(" ")[0] for row in table[1:]] == [arch, "seasonal", "naive"]
    assert (tmp_path / "predictions" / "val_epoch_000.png").is_file()
    trainer.test(t, datamodule=dm, verbose=False)
    assert (tmp_path / "forecast_metrics_test.csv").is_file() and (tmp_path / "predictions" / "test.png").is_file()
    assert torch.isfinite(trainer.callback_metrics["test/mase"])
    predictions = torch.cat(trainer.predict(t, datamodule=dm))
    assert predictions.shape == (len(dm.datasets["test"]), 13, 3)
    rows = list(csv.reader((tmp_path / "predictions" / "forecasts.csv").open()))
    assert rows[0][:5] == ["series", "origin", "step", "time", "forecast"]
    assert len(rows) == 1 + predictions[..., 0].numel()
    if loss != "mae":  # the interval brackets the forecast
        assert (predictions[..., 1] <= predictions[..., 0]).all() and (predictions[..., 0] <= predictions[..., 2]).all()


def test_count_head_with_a_shifting_scaler_is_a_config_error(tmp_path):
    dm = ForecastDataModule(**SMALL, stride=16, scaler="standard")
    with pytest.raises(losses.LossConfigError, match="data.scaler"):
        _trainer(tmp_path).fit(task("poisson_nll"), datamodule=dm)


def test_model_and_data_windows_must_agree(tmp_path):
    dm = ForecastDataModule(context=60, horizon=26, stride=16)
    with pytest.raises(losses.LossConfigError, match=r"model.horizon: 13 differs from data.horizon: 26"):
        _trainer(tmp_path).fit(task("mae"), datamodule=dm)


@pytest.mark.parametrize("loss", ["mae", "pinball", "gaussian_nll", "crps_gaussian", "student_t_nll"])
def test_recipe_validates(loss):
    config = validate(load_config(RECIPE, [f"loss.forecast={loss}"]))
    assert config["task"] == "forecasting" and config["model"]["context"] == config["data"]["context"]
    ForecastingTask(loss=config["loss"], optim=config["optim"], **config["model"])


def test_quantile_head_crps_approaches_the_closed_form():
    from losses.forecasting import crps_gaussian
    from tasks.forecasting.metrics import crps

    levels = tuple(round(x, 6) for x in torch.linspace(0.005, 0.995, 199).tolist())
    normal = torch.distributions.Normal(torch.zeros(500), torch.ones(500))
    y = torch.randn(500, generator=torch.Generator().manual_seed(0)) * 1.3
    quantiles = torch.stack([normal.icdf(torch.tensor(level)) for level in levels], -1)
    got = crps(HeadPlan("quantile", ("quantiles",), levels), {"quantiles": quantiles, "target": y}).mean()
    assert got.item() == pytest.approx(crps_gaussian(torch.zeros(500), torch.ones(500), y).mean().item(), rel=2e-3)

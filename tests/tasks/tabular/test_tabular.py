"""The tabular task: train-only preprocessing (leakage tests), unknown / missing categories at predict time, balanced
class weights from the training split reaching the loss, checkpoint round trips with a weighted loss, short fits that
log the metrics beside the baselines, config errors naming the key, the recipes validate."""

from __future__ import annotations

import csv
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

import losses
from tasks.datacheck import DataError
from tasks.tabular import TabularDataModule, TabularTask
from tasks.tabular.data import MISSING, UNKNOWN, Preprocessor, load_embedded, resolve_columns
from tasks.tabular.model import build_network, embedding_size
from tasks.tabular.task import plan_loss
from trainer.build import validate
from trainer.cli import main
from trainer.config import load_config

REPO = Path(__file__).resolve().parents[3]
RECIPES = sorted((REPO / "configs" / "tabular").glob("*.yaml"))
SMALL = {"hidden_size": 16, "num_layers": 1}


@pytest.fixture(scope="module")
def penguins() -> pd.DataFrame:
    return load_embedded("penguins")


def write(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_csv(path, index=False)
    return path


def datamodule(path: Path | None = None, **kwargs) -> TabularDataModule:
    options = {"batch_size": 32, "summary": False}
    if path is not None:
        options.update(dataset=None, path=str(path), target="species")
    return TabularDataModule(**{**options, **kwargs})


def trainer(tmp_path: Path, epochs: int = 1, **kwargs) -> L.Trainer:
    options = dict(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                   enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path,
                   num_sanity_val_steps=0)  # fmt: skip
    return L.Trainer(**{**options, **kwargs})


# ---------------------------------------------------------------------------- preprocessing, leakage


def test_scaler_and_vocabularies_are_fitted_on_the_training_rows_only(tmp_path, penguins):
    base = datamodule(write(penguins, tmp_path / "a.csv"))
    base.setup("fit")
    rows = base.rows
    # same targets (so the same seeded split), but values only outside train: a huge mass and a new island
    leaky = penguins.copy()
    outside = np.concatenate([rows["val"], rows["test"]])
    leaky.loc[outside, "body_mass_g"] = 1e6
    leaky.loc[rows["val"], "island"] = "Atlantis"
    dm = datamodule(write(leaky, tmp_path / "b.csv"))
    dm.setup("fit")
    assert all((dm.rows[s] == rows[s]).all() for s in rows)
    pre = dm.preprocessor
    j = pre.numeric.index("body_mass_g")
    train_mass = penguins.loc[rows["train"], "body_mass_g"]
    assert pre.loc[j] == pytest.approx(train_mass.mean()) and pre.scale[j] == pytest.approx(train_mass.std(ddof=0))
    assert "Atlantis" not in pre.vocab["island"]
    assert pre.vocab["island"] == sorted(penguins.loc[rows["train"], "island"].unique())
    island = pre.categorical.index("island")
    assert (dm.encoded["val"].categorical[:, island] == UNKNOWN).all()
    assert dm.encoded["val"].unknown["island"] == len(rows["val"])
    assert (dm.encoded["train"].categorical[:, island] >= 2).all()
    # the network's embedding table is sized from the training vocabulary: unknown, missing, 3 islands
    assert dm.schema()["cardinalities"][island] == 5


def test_missing_values_get_an_indicator_and_the_training_fill(penguins):
    columns = resolve_columns(penguins, "species", None, None, None, "penguins")
    assert columns.categorical == ["island", "sex"] and "year" in columns.numeric
    train = penguins.iloc[:200]
    pre = Preprocessor.fit(train, columns, "classification", ["Adelie", "Chinstrap", "Gentoo"])
    assert pre.indicators == [c for c in columns.numeric if train[c].isna().any()]
    probe = pd.DataFrame({**{c: [np.nan, 1.0] for c in columns.numeric}, "island": ["Nowhere", None],
                          "sex": [None, "female"], "species": ["Adelie", "Gentoo"]})  # fmt: skip
    encoded = pre.transform(probe)
    j = columns.numeric.index("bill_length_mm")
    assert encoded.numeric[0, j] == pytest.approx(0.0, abs=1e-6)  # imputed with the training mean
    assert encoded.numeric[0, len(columns.numeric) + pre.indicators.index("bill_length_mm")] == 1.0
    assert encoded.categorical[0].tolist() == [UNKNOWN, MISSING] and encoded.categorical[1, 0] == MISSING
    assert encoded.target.tolist() == [0, 2]
    assert Preprocessor.from_state(pre.state()) == pre


def test_quantile_scaler_maps_training_values_to_a_standard_normal():
    frame = load_embedded("diabetes")
    columns = resolve_columns(frame, "progression", None, None, None, "diabetes")
    pre = Preprocessor.fit(frame, columns, "regression", [], scaler="quantile")
    values = pre.transform(frame).numeric[:, columns.numeric.index("bmi")]
    assert abs(values.mean()) < 0.05 and 0.9 < values.std() < 1.1


def test_split_is_stratified_and_seeded():
    dm = datamodule(seed=3)
    dm.setup("fit")
    pre = dm.preprocessor
    sizes = {s: len(r) for s, r in dm.rows.items()}
    assert sizes == {"train": 341, "val": 114, "test": 114}
    malignant = {s: float((dm.encoded[s].target == pre.classes.index("malignant")).mean()) for s in sizes}
    assert max(malignant.values()) - min(malignant.values()) < 0.02
    again = datamodule(seed=3)
    again.setup("fit")
    assert all((again.rows[s] == dm.rows[s]).all() for s in sizes)
    folds = datamodule(folds=5, fold=2)
    folds.setup("fit")
    assert len(folds.rows["test"]) in (113, 114) and not set(folds.rows["test"]) & set(folds.rows["train"])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"target": "colour"}, r"^data.target: 'colour' is not a column of p.csv; columns: \["),
        ({"numeric": ["island"]}, r"^data.numeric: column 'island' is not numeric"),
        ({"categorical": ["weight"]}, r"^data.categorical: 'weight' is not a column"),
        ({"drop": ["species"]}, r"^data.drop: 'species' is data.target"),
    ],
)
def test_bad_columns_name_the_config_key(tmp_path, penguins, kwargs, match):
    dm = datamodule(write(penguins, tmp_path / "p.csv"), **kwargs)
    with pytest.raises(ValueError, match=match):
        dm.setup("fit")


# ---------------------------------------------------------------------------- model and loss planning


def test_entity_embeddings_are_sized_from_the_cardinality():
    assert [embedding_size(c) for c in (2, 5, 99, 100, 1000)] == [1, 3, 50, 50, 50]
    schema = {"num_numeric": 3, "num_indicators": 1, "cardinalities": [5, 12]}
    for arch, extra in (("mlp", {}), ("resnet", {}), ("mlp", {"numeric_embedding": "periodic"})):
        net = build_network(schema, 4, arch, 8, 2, 0.1, "layer", **extra)
        assert net.encoder.embeddings[0].weight[0].abs().sum() == 0  # the unknown row starts at zero
        out = net(torch.randn(6, 4), torch.tensor([[0, 11]] * 6))
        assert out.shape == (6, 4)


def _schema(classes=("benign", "malignant"), counts=(214, 127)):
    return {"problem": "classification", "target": "y", "classes": list(classes), "class_counts": list(counts),
            "num_numeric": 4, "num_indicators": 0, "cardinalities": [], "target_loc": 0.0, "target_scale": 1.0}


@pytest.mark.parametrize(
    ("spec", "head", "signed"),
    [
        ("ce", ("binary", 1), False),
        ("hinge + modified_huber", ("binary", 1), True),
        ("bce + 0.5*hinge", ("binary", 1), False),
        ({"name": "weighted_ce", "params": {"class_weights": "balanced"}}, ("multiclass", 2), False),
        ("sparse_ce", ("multiclass", 2), False),
    ],
)
def test_the_head_and_mode_follow_the_data_and_the_loss(spec, head, signed):
    terms, planned = plan_loss(spec, _schema())
    assert (planned.mode, planned.outputs, planned.signed) == (*head, signed)
    _, three = plan_loss(spec, _schema(("a", "b", "c"), (5, 5, 5)))
    assert (three.mode, three.outputs, three.signed) == ("multiclass", 3, False)


def test_loss_of_the_wrong_problem_is_a_config_error():
    with pytest.raises(losses.LossConfigError, match=r"^loss.target: 'mse' is a regression loss, but data.target"):
        plan_loss("mse", _schema())
    regression = {**_schema(), "problem": "regression", "classes": [], "class_counts": []}
    with pytest.raises(losses.LossConfigError, match=r"^loss.target: 'hinge' is a margin loss, .* regression target"):
        plan_loss("hinge", regression)
    with pytest.raises(losses.LossConfigError, match="model.binary_head: softmax"):
        plan_loss({"name": "ce", "params": {"class_weights": [1.0, 2.0]}}, _schema(), binary_head="sigmoid")


def test_the_cli_stops_a_classification_loss_on_a_regression_table_with_one_line(capsys, tmp_path):
    recipe = REPO / "configs" / "tabular" / "diabetes.yaml"
    code = main(["fit", "-c", str(recipe), f"run.root={tmp_path}", "loss.target=focal", "trainer.max_epochs=1"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert err.startswith("config error: loss.target: 'focal' is a classification loss, but data.target 'progression'")


# ---------------------------------------------------------------------------- class weights and checkpoints

BALANCED = {"target": {"name": "weighted_ce", "params": {"class_weights": "balanced"}}}


def test_balanced_class_weights_come_from_the_training_split_and_reach_the_loss():
    from sklearn.utils.class_weight import compute_class_weight

    dm = datamodule()
    dm.setup("fit")
    task = TabularTask(**SMALL, loss=BALANCED, schema=dm.schema())
    y = dm.encoded["train"].target
    expected = compute_class_weight("balanced", classes=np.arange(2), y=y)
    crit = task.loss_slots["target"].terms[0]
    assert task.mode == "multiclass" and task.num_classes == 2 and crit.mode == "multiclass"
    assert crit.class_weights.tolist() == pytest.approx(expected.tolist())
    batch = dm.datasets["val"].tensors()
    pred = task(batch["numeric"], batch["categorical"])
    target = task.loss_target(batch["target"])
    total, _ = task.loss_slots["target"].forward_terms(pred, target)
    weight = torch.tensor(expected, dtype=torch.float32)
    assert float(total.detach()) == pytest.approx(float(F.cross_entropy(pred, target, weight=weight)), rel=1e-5)
    bce = TabularTask(**SMALL, loss={"target": {"name": "bce", "params": {"pos_weight": "balanced"}}},
                      schema=dm.schema())  # fmt: skip
    counts = np.bincount(y)
    assert bce.mode == "binary" and bce.loss_slots["target"].terms[0].pos_weight.item() == pytest.approx(
        counts[0] / counts[1]
    )


def test_checkpoint_round_trip_with_a_weighted_loss(tmp_path):
    dm = datamodule()
    task = TabularTask(**SMALL, loss=BALANCED)
    fit = trainer(tmp_path, limit_train_batches=2, limit_val_batches=1)
    fit.fit(task, datamodule=dm)
    ckpt = tmp_path / "weighted.ckpt"
    fit.save_checkpoint(ckpt)
    weights = task.loss_slots["target"].terms[0].class_weights.clone()
    # outside the trainer, without the data: same network, same class weights, same outputs
    loaded = TabularTask.load_from_checkpoint(ckpt)
    assert torch.equal(loaded.loss_slots["target"].terms[0].class_weights, weights)
    batch = dm.datasets["test"].tensors()
    task.eval(), loaded.eval()
    with torch.no_grad():
        inputs = batch["numeric"], batch["categorical"]
        assert torch.allclose(loaded(*inputs), task(*inputs))
    # test from the checkpoint on another split of the data (other training counts): the checkpoint's weights win
    other = datamodule(seed=5)
    fresh = TabularTask(**SMALL, loss=BALANCED)
    tester = trainer(tmp_path)
    tester.test(fresh, datamodule=other, ckpt_path=str(ckpt), verbose=False)
    assert torch.equal(fresh.loss_slots["target"].terms[0].class_weights, weights)
    assert other.preprocessor.class_counts == dm.preprocessor.class_counts
    assert torch.isfinite(tester.callback_metrics["test/accuracy"])
    assert (tmp_path / "tabular_metrics_test.csv").is_file()


def test_predict_from_a_checkpoint_uses_the_training_vocabularies(tmp_path, penguins):
    dm = datamodule(write(penguins, tmp_path / "train.csv"))
    task = TabularTask(**SMALL, norm="layer")
    fit = trainer(tmp_path, limit_train_batches=2, limit_val_batches=1)
    fit.fit(task, datamodule=dm)
    ckpt = tmp_path / "p.ckpt"
    fit.save_checkpoint(ckpt)
    # a new table whose training part has a fourth island (its own fit would widen the embedding), and rows to
    # predict with an unseen island, a missing sex and missing measurements, and no species column
    grown = penguins.copy()
    grown.loc[::3, "island"] = "Zed"
    new = pd.DataFrame({"island": ["Zed", "Biscoe", None], "bill_length_mm": [45.0, np.nan, 39.0],
                        "bill_depth_mm": [15.0, np.nan, 18.0], "flipper_length_mm": [210.0, np.nan, 190.0],
                        "body_mass_g": [5000.0, np.nan, 3600.0], "sex": ["male", None, "female"],
                        "year": [2008, 2009, 2007]})  # fmt: skip
    later = datamodule(write(grown, tmp_path / "grown.csv"), predict_path=str(write(new, tmp_path / "new.csv")))
    fresh = TabularTask(**SMALL, norm="layer")
    out = trainer(tmp_path).predict(fresh, datamodule=later, ckpt_path=str(ckpt))
    assert later.preprocessor.vocab == dm.preprocessor.vocab and "Zed" not in later.preprocessor.vocab["island"]
    codes = later.encoded["predict"].categorical
    island, sex = later.preprocessor.categorical.index("island"), later.preprocessor.categorical.index("sex")
    assert codes[:, island].tolist()[0] == UNKNOWN and codes[2, island] == MISSING and codes[1, sex] == MISSING
    probs = torch.cat(out)
    assert probs.shape == (3, 3) and torch.isfinite(probs).all()
    assert torch.allclose(probs.sum(1), torch.ones(3))
    rows = list(csv.reader((tmp_path / "predictions" / "predictions.csv").open()))
    assert rows[0] == ["row", "prediction", "p(Adelie)", "p(Chinstrap)", "p(Gentoo)"] and len(rows) == 4


# ---------------------------------------------------------------------------- short fits, recipes


@pytest.mark.parametrize(
    ("dataset", "loss", "metrics"),
    [
        ("wine", "focal", ("accuracy", "f1", "auroc", "log_loss")),
        ("breast_cancer", "hinge", ("accuracy", "f1", "auroc", "log_loss")),
        ("diabetes", {"name": "huber", "params": {"delta": 0.5}}, ("rmse", "mae", "r2")),
    ],
)
def test_short_fit_logs_metrics_beside_the_baselines(tmp_path, dataset, loss, metrics):
    dm = datamodule(dataset=dataset)
    task = TabularTask(**SMALL, arch="resnet", loss={"target": loss})
    fit = trainer(tmp_path, epochs=2, limit_train_batches=3)
    fit.fit(task, datamodule=dm)
    logged = fit.callback_metrics
    for name in (*metrics, "score", "loss/target"):
        assert torch.isfinite(logged[f"val/{name}"]), name
    table = list(csv.reader((tmp_path / "tabular_metrics_fit.csv").open()))
    assert table[0] == ["split", "model", *metrics]
    assert [(r[0], r[1].split(" ")[0]) for r in table[1:]] == [
        (s, m) for s in ("val", "test") for m in ("resnet", "logistic" if dataset != "diabetes" else "ridge", "hist")
    ]
    assert task.tables["fit"]["model"]["val"][metrics[0]] == pytest.approx(float(logged[f"val/{metrics[0]}"]), 1e-5)


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipe_validates(recipe):
    config = validate(load_config(recipe))
    assert config["task"] == "tabular"
    TabularTask(loss=config["loss"], optim=config["optim"], **config["model"])
    TabularDataModule(**config["data"])


@pytest.mark.parametrize(
    "override",
    ["loss.target=focal", "loss.target=hinge", "loss.target=modified_huber", "loss.target=bce",
     "loss.target.params.class_weights=balanced"],
)  # fmt: skip
def test_recipe_loss_overrides_validate(override):
    config = validate(load_config(REPO / "configs" / "tabular" / "breast_cancer.yaml", [override]))
    TabularTask(loss=config["loss"], **config["model"])


def test_a_corrupt_numeric_cell_names_file_row_and_column_or_is_skipped(tmp_path, penguins):
    frame = penguins.astype({"bill_length_mm": object})
    frame.loc[7, "bill_length_mm"] = "4O.1"  # a letter O typed for a zero: the column must stay numeric
    path = write(frame, tmp_path / "p.csv")
    with pytest.raises(DataError, match=r"p\.csv, row 8: column 'bill_length_mm' holds '4O\.1', not a number"):
        datamodule(path).setup("fit")
    dm = datamodule(path, skip_bad=True)
    with pytest.warns(UserWarning, match=r"skipped 1 of 344 rows of .*p\.csv with a non-numeric value"):
        dm.setup("fit")
    assert "bill_length_mm" in dm.columns.numeric
    assert sum(len(rows) for rows in dm.rows.values()) == len(penguins) - 1 - penguins["species"].isna().sum()

"""The registry: register/build/available/info and its error messages."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import losses
from losses.registry import _ALIASES, _REGISTRY, FAMILY_CALLS


@pytest.fixture
def toy_losses():
    """Two throwaway losses registered for the test and removed afterwards."""

    @losses.register("toy_abs", family="regression", aliases=("toy_l1",))
    class ToyAbs(nn.Module):
        """Mean absolute difference (test helper).

        Compile: the test helper never is,
        as these two lines say.

        Args:
            scale: factor on the loss; a description long enough to be wrapped onto a second line of the
                card, which indents it under the first.
            reduction: "mean" | "sum" | "none".

        Shape:
            - pred: (*).
            - target: the shape of ``pred``.
            - output: scalar.

        Formula:
            L = mean |p - t|

        Reference:
            Textbook.
        """

        def __init__(self, scale: float = 1.0, reduction: str = "mean") -> None:
            super().__init__()
            self.scale = scale

        def forward(self, pred, target):
            return self.scale * (pred - target).abs().mean()

    @losses.register("toy_sq", family="regression", tasks=("forecasting",))
    class ToySq(nn.Module):
        """Mean squared difference (test helper)."""

        def __init__(self, power: float) -> None:
            super().__init__()
            self.power = power

        def forward(self, pred, target):
            return (pred - target).abs().pow(self.power).mean()

    yield
    for name in ("toy_abs", "toy_sq"):
        _REGISTRY.pop(name, None)
    _ALIASES.pop("toy_l1", None)


def test_build_by_name_dict_alias_and_kwargs(toy_losses):
    pred, target = torch.tensor([1.0, 2.0]), torch.tensor([0.0, 4.0])
    assert losses.build("toy_abs")(pred, target).item() == pytest.approx(1.5)
    assert losses.build("toy_l1", scale=2.0)(pred, target).item() == pytest.approx(3.0)
    crit = losses.build({"name": "toy_sq", "params": {"power": 2}})
    assert crit(pred, target).item() == pytest.approx(2.5)


def test_available_filters_by_family_and_task(toy_losses):
    assert {"toy_abs", "toy_sq"} <= set(losses.available(family="regression"))
    assert "toy_l1" not in losses.available()  # aliases are not listed
    assert "toy_sq" in losses.available(task="forecasting")
    assert "toy_sq" not in losses.available(task="segmentation")
    assert "toy_abs" in losses.available(task="segmentation")  # no task filter = usable everywhere
    with pytest.raises(ValueError, match="unknown family"):
        losses.available(family="nope")


def test_info_reports_docstring_sections_and_signature(toy_losses):
    card = losses.info("toy_l1")
    assert card.name == "toy_abs" and card.family == "regression"
    assert card.summary == "Mean absolute difference (test helper)."
    assert card.formula == "L = mean |p - t|"
    assert card.reference == "Textbook."
    assert card.parameters == {"scale": 1.0, "reduction": "mean"}
    assert card.args["scale"].startswith("factor on the loss; a description") and card.args["scale"].endswith("first.")
    assert card.shape == {"pred": "(*).", "target": "the shape of ``pred``.", "output": "scalar."}
    assert card.call == "pred: (*).; target: the shape of ``pred``.; output: scalar."
    assert card.compile == "the test helper never is, as these two lines say."


def test_card_lists_defaults_with_descriptions_and_shapes(toy_losses):
    lines = str(losses.info("toy_abs")).splitlines()
    assert lines[:2] == ["toy_abs  [regression]  Mean absolute difference (test helper).", "  aliases:   toy_l1"]
    scale = next(i for i, line in enumerate(lines) if "scale=1.0" in line)
    assert lines[scale].startswith("  params:    scale=1.0         factor on the loss;")
    assert lines[scale + 1].startswith(" " * 31) and lines[scale + 1].strip().endswith("first.")  # wrapped
    assert "             reduction='mean'  \"mean\" | \"sum\" | \"none\"." in lines
    assert lines[lines.index("  shape:     pred    (*).") + 2] == "             output  scalar."
    assert "  compile:   the test helper never is, as these two lines say." in lines


def test_card_without_args_and_shape_falls_back_to_the_family_call(toy_losses):
    card = losses.info("toy_sq")
    assert card.args == {} and card.shape == {} and card.compile == ""
    assert card.call == FAMILY_CALLS["regression"]
    assert "  params:    power" in str(card) and f"  call:      {FAMILY_CALLS['regression']}" in str(card)


def test_unknown_name_suggests_nearest(toy_losses):
    with pytest.raises(losses.LossConfigError, match="Did you mean 'toy_abs'"):
        losses.build("toy_asb")


def test_unknown_param_names_accepted_ones(toy_losses):
    with pytest.raises(losses.LossConfigError, match=r"'scael'.*did you mean 'scale'.*Accepted: scale, reduction"):
        losses.build("toy_abs", scael=2.0)


def test_missing_required_param(toy_losses):
    with pytest.raises(losses.LossConfigError, match="needs parameter"):
        losses.build("toy_sq")


def test_defaults_are_injected_only_where_accepted(toy_losses):
    crit = losses.build("toy_abs", defaults={"scale": 3.0, "mode": "binary"})
    assert crit.scale == 3.0
    assert losses.build({"name": "toy_abs", "params": {"scale": 5.0}}, defaults={"scale": 3.0}).scale == 5.0


def test_register_rejects_duplicates_and_non_modules(toy_losses):
    with pytest.raises(ValueError, match="already registered"):
        losses.register("toy_abs", family="regression")(type("X", (nn.Module,), {}))
    with pytest.raises(TypeError):
        losses.register("toy_fn", family="regression")(lambda x: x)


def test_every_registered_loss_has_docs():
    for name in losses.available():
        card = losses.info(name)
        assert card.summary, f"{name}: missing one-line summary"
        assert card.formula, f"{name}: missing Formula: section"
        assert card.reference, f"{name}: missing Reference: section"

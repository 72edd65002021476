"""Composite losses: spec parsing, weighted sums, schedules, uncertainty weighting, state."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import losses
from losses.compose import Schedule, parse_spec
from losses.registry import _REGISTRY


@pytest.fixture(autouse=True)
def toy_losses():
    @losses.register("toy_mean", family="regression")
    class ToyMean(nn.Module):
        """Mean of pred - target (test helper)."""

        def forward(self, pred, target):
            return (pred - target).mean()

    @losses.register("toy_sqr", family="regression")
    class ToySqr(nn.Module):
        """Mean squared error (test helper)."""

        def __init__(self, scale: float = 1.0) -> None:
            super().__init__()
            self.scale = scale

        def forward(self, pred, target):
            return self.scale * ((pred - target) ** 2).mean()

    yield
    _REGISTRY.pop("toy_mean")
    _REGISTRY.pop("toy_sqr")


PRED, TARGET = torch.tensor([3.0, 1.0]), torch.tensor([1.0, 0.0])  # mean diff 1.5, mse 2.5


@pytest.mark.parametrize(
    "spec",
    [
        "toy_mean + 0.5*toy_sqr",
        " toy_mean+0.5 * toy_sqr ",
        [{"name": "toy_mean"}, {"name": "toy_sqr", "weight": 0.5}],
        ["toy_mean", "0.5*toy_sqr"],
    ],
)
def test_equivalent_specs_give_same_total(spec):
    total, terms = losses.build(spec).forward_terms(PRED, TARGET)
    assert total.item() == pytest.approx(1.5 + 0.5 * 2.5)
    assert terms["toy_mean"].item() == pytest.approx(1.5)
    assert terms["toy_sqr"].item() == pytest.approx(2.5)  # per-term values are unweighted


def test_single_name_builds_the_bare_module_and_slot_wraps_it():
    assert type(losses.build("toy_sqr")).__name__ == "ToySqr"
    slot = losses.build_slot("toy_sqr")
    assert isinstance(slot, losses.Composite)
    assert slot(PRED, TARGET).item() == pytest.approx(2.5)


def test_duplicate_terms_get_distinct_names():
    slot = losses.build_slot([{"name": "toy_sqr"}, {"name": "toy_sqr", "params": {"scale": 2.0}}])
    _, terms = slot.forward_terms(PRED, TARGET)
    assert set(terms) == {"toy_sqr", "toy_sqr_2"}
    assert terms["toy_sqr_2"].item() == pytest.approx(5.0)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("toy_mean + 0.5*", "cannot parse"),
        ("toy_maen", "Did you mean 'toy_mean'"),
        ([{"nam": "toy_mean"}], "unknown key"),
        ([{"name": "toy_mean", "weight": "heavy"}], "weight: expected a number"),
        (42, "expected a loss name"),
        ([{"name": "toy_mean", "schedule": {"warmup": 2}}], "schedule: unknown key"),
    ],
)
def test_bad_specs_raise_clear_errors(spec, message):
    with pytest.raises(losses.LossConfigError, match=message):
        losses.build_slot(spec, where="loss.seg")


def test_error_names_the_slot_and_term():
    with pytest.raises(losses.LossConfigError, match=r"loss\.seg\[1\]: loss 'toy_sqr' got unknown parameter"):
        losses.build_slot([{"name": "toy_mean"}, {"name": "toy_sqr", "params": {"scal": 1}}], where="loss.seg")


def test_schedule_linear_ramp_and_warmup():
    warm = Schedule.parse({"warmup_epochs": 4})
    assert [warm(e) for e in (0, 1, 2, 4, 10)] == [0.0, 0.25, 0.5, 1.0, 1.0]
    decay = Schedule.parse({"start": 1.0, "end": 0.2, "epochs": 2})
    assert decay(1) == pytest.approx(0.6) and decay(5) == pytest.approx(0.2)


def test_scheduled_weight_follows_epoch():
    slot = losses.build_slot([{"name": "toy_mean"}, {"name": "toy_sqr", "schedule": {"warmup_epochs": 2}}])
    assert slot(PRED, TARGET).item() == pytest.approx(1.5)
    slot.set_epoch(1)
    assert slot(PRED, TARGET).item() == pytest.approx(1.5 + 0.5 * 2.5)
    slot.set_epoch(3)
    assert slot(PRED, TARGET).item() == pytest.approx(1.5 + 2.5)


def test_uncertainty_weighting_formula_and_gradient():
    slot = losses.build_slot("toy_mean + toy_sqr", balance="uncertainty")
    with torch.no_grad():
        slot.log_vars.copy_(torch.tensor([0.5, -1.0]))
    total = slot(PRED, TARGET)
    expected = math.exp(-0.5) * 1.5 + 0.5 + math.exp(1.0) * 2.5 - 1.0
    assert total.item() == pytest.approx(expected, rel=1e-6)
    total.backward()
    # d/ds (exp(-s) L + s) = 1 - exp(-s) L
    expected_grad = torch.tensor([1 - math.exp(-0.5) * 1.5, 1 - math.exp(1.0) * 2.5])
    torch.testing.assert_close(slot.log_vars.grad, expected_grad)


def test_state_dict_round_trip_keeps_epoch_and_log_vars():
    slot = losses.build_slot("toy_mean + toy_sqr", balance="uncertainty")
    slot.set_epoch(7)
    with torch.no_grad():
        slot.log_vars.fill_(0.3)
    fresh = losses.build_slot("toy_mean + toy_sqr", balance="uncertainty")
    fresh.load_state_dict(slot.state_dict())
    assert float(fresh.epoch) == 7.0
    torch.testing.assert_close(fresh.log_vars, slot.log_vars)


def test_parse_spec_normalises_forms():
    terms = parse_spec([{"name": "toy_sqr", "params": {"scale": 2}, "weight": 0.1, "schedule": {"warmup_epochs": 1}}])
    assert terms[0].params == {"scale": 2} and terms[0].weight == 0.1 and terms[0].schedule.epochs == 1


def test_normalizer_divides_terms_before_uncertainty_weighting():
    slot = losses.build_slot("toy_mean + toy_sqr", balance="uncertainty")
    with torch.no_grad():
        slot.log_vars.copy_(torch.tensor([0.5, -1.0]))
    total, terms = slot.forward_terms(PRED, TARGET, normalizer=4.0)
    expected = math.exp(-0.5) * 1.5 / 4 + 0.5 + math.exp(1.0) * 2.5 / 4 - 1.0  # log-variances are not divided
    assert total.item() == pytest.approx(expected, rel=1e-6)
    assert terms["toy_sqr"].item() == pytest.approx(2.5 / 4)


def test_dwa_weights_follow_the_ratio_of_the_last_two_epoch_means():
    slot = losses.build_slot("toy_mean + toy_sqr", balance={"name": "dwa", "temperature": 2.0})
    slot.train()
    epoch_means = [(2.0, 4.0), (1.0, 3.0)]  # term 0 halves, term 1 falls by a quarter
    for epoch, (mean, sqr) in enumerate(epoch_means):
        slot.set_epoch(epoch)
        assert slot.dwa.weights.tolist() == [1.0, 1.0]  # equal weights for the first two epochs
        for _ in range(3):
            slot.forward_terms(torch.tensor([mean]), torch.tensor([0.0]))  # toy_mean = mean
            slot.dwa.sums[1] += sqr - mean**2  # make the second term's epoch mean exactly `sqr`
    slot.set_epoch(2)
    rates = torch.tensor([1.0 / 2.0, 3.0 / 4.0])
    expected = 2 * torch.softmax(rates / 2.0, dim=0)
    torch.testing.assert_close(slot.dwa.weights, expected)
    total, terms = slot.forward_terms(PRED, TARGET)
    assert total.item() == pytest.approx(expected[0].item() * 1.5 + expected[1].item() * 2.5, rel=1e-6)
    fresh = losses.build_slot("toy_mean + toy_sqr", balance="dwa")
    fresh.load_state_dict(slot.state_dict())  # resumed runs continue with the same weights and history
    torch.testing.assert_close(fresh.dwa.weights, slot.dwa.weights)
    torch.testing.assert_close(fresh.dwa.history, slot.dwa.history)


def test_dwa_ignores_validation_and_rejects_bad_options():
    slot = losses.build_slot("toy_mean + toy_sqr", balance="dwa")
    slot.eval()
    slot(PRED, TARGET)
    assert float(slot.dwa.count) == 0
    for bad, message in [("dwaa", "expected one of"), ({"name": "dwa", "temperature": 0}, "temperature"),
                         ({"name": "dwa", "alpha": 1}, "dwa takes temperature")]:
        with pytest.raises(losses.LossConfigError, match=message):
            losses.build_slot("toy_mean + toy_sqr", balance=bad)


def test_effective_weights_combine_spec_schedule_and_learned_weights():
    spec = [{"name": "toy_mean", "weight": 2.0}, {"name": "toy_sqr", "weight": 0.5, "schedule": {"warmup_epochs": 4}}]
    slot = losses.build_slot(spec, balance="uncertainty")
    with torch.no_grad():
        slot.log_vars.copy_(torch.tensor([math.log(2.0), 0.0]))  # sigma^2 = 2 halves the first term
    slot.set_epoch(1)
    torch.testing.assert_close(slot.effective_weights(), torch.tensor([2.0 / 2.0, 0.5 * 0.25]))
    dwa = losses.build_slot(spec, balance="dwa")
    dwa.dwa.weights.copy_(torch.tensor([1.5, 0.5]))
    torch.testing.assert_close(dwa.effective_weights(), torch.tensor([3.0, 0.0]))  # schedule still at 0
    fixed = losses.build_slot(spec)
    assert fixed.balance_weights() is None
    total, terms = fixed.forward_terms(PRED.clone().requires_grad_(True), TARGET, detach=False)
    assert terms["toy_mean"].requires_grad  # kept in the graph for per-term gradients
    assert not fixed.forward_terms(PRED.clone().requires_grad_(True), TARGET)[1]["toy_mean"].requires_grad

"""Adaptive balancing (DWA, GradNorm) on scripted loss sequences, resume, and per-term gradient attribution."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import losses
from losses.balance import DynamicWeightAverage, GradNorm, attribution, term_gradients

# ---------------------------------------------------------------------------------------------- DWA


def _dwa_epoch(dwa: DynamicWeightAverage, means: tuple[float, float], steps: int = 2) -> None:
    for _ in range(steps):
        dwa.accumulate(torch.tensor(means))
    dwa.end_epoch()


def test_dwa_weights_on_a_scripted_sequence_and_exact_resume():
    # epoch means: term 0 falls 4 -> 2 -> 1.5 -> 1.2, term 1 falls 1 -> 0.9 -> 0.5 -> 0.45
    sequence = [(4.0, 1.0), (2.0, 0.9), (1.5, 0.5), (1.2, 0.45)]
    dwa = DynamicWeightAverage(2, temperature=2.0)
    seen = []
    for means in sequence:
        _dwa_epoch(dwa, means)
        seen.append(dwa.weights.tolist())
    assert seen[0] == [1.0, 1.0]  # one epoch of history: equal weights

    def hand(previous: tuple[float, float], last: tuple[float, float]) -> list[float]:
        rates = [last[k] / previous[k] for k in range(2)]
        exps = [math.exp(r / 2.0) for r in rates]
        return [2 * e / sum(exps) for e in exps]

    assert seen[1] == pytest.approx(hand(sequence[0], sequence[1]))  # rates 0.5, 0.9: term 1 falls slower
    assert seen[1][1] > seen[1][0]
    assert seen[2] == pytest.approx(hand(sequence[1], sequence[2]))
    assert seen[3] == pytest.approx(hand(sequence[2], sequence[3]))

    # resume from a checkpoint taken mid-epoch 2 (running sums half full)
    reference = DynamicWeightAverage(2, temperature=2.0)
    for means in sequence[:2]:
        _dwa_epoch(reference, means)
    reference.accumulate(torch.tensor(sequence[2]))
    resumed = DynamicWeightAverage(2, temperature=2.0)
    resumed.load_state_dict(reference.state_dict())
    for dwa_ in (reference, resumed):
        dwa_.accumulate(torch.tensor(sequence[2]))
        dwa_.end_epoch()
        _dwa_epoch(dwa_, sequence[3])
    torch.testing.assert_close(resumed.weights, reference.weights)
    assert resumed.weights.tolist() == pytest.approx(seen[3])


# ---------------------------------------------------------------------------------------------- GradNorm


def _gradnorm_step(gradnorm: GradNorm, optimizer: torch.optim.Optimizer, norms, values) -> float:
    gradnorm.renormalise()  # what LossTask.on_train_batch_start does
    optimizer.zero_grad()
    loss = gradnorm.loss(torch.tensor(norms), torch.tensor(values))
    loss.backward()
    optimizer.step()
    return loss.item()


# scripted steps: (per-term gradient norms g_i, term values L_i(t))
STEPS = [([2.0, 0.5], [4.0, 1.0]), ([1.0, 1.0], [2.0, 0.9]), ([0.5, 2.0], [1.0, 0.8])]


def _hand_gradnorm(alpha: float, lr: float) -> tuple[list[float], list[float]]:
    """Chen et al.'s update, one term at a time: plain SGD on L_grad, then renormalise to sum K."""
    weights, initial, grad_losses = [1.0, 1.0], None, []
    for norms, values in STEPS:
        weights = [2 * w / sum(weights) for w in weights]
        initial = initial or values
        ratios = [v / v0 for v, v0 in zip(values, initial)]
        rates = [r / (sum(ratios) / 2) for r in ratios]
        scaled = [w * g for w, g in zip(weights, norms)]
        targets = [sum(scaled) / 2 * r**alpha for r in rates]
        grad_losses.append(sum(abs(s - t) for s, t in zip(scaled, targets)))
        weights = [w - lr * math.copysign(g, s - t) for w, g, s, t in zip(weights, norms, scaled, targets)]
    return [2 * w / sum(weights) for w in weights], grad_losses


def test_gradnorm_weights_match_the_hand_computed_updates():
    gradnorm = GradNorm(2, alpha=1.5)
    optimizer = torch.optim.SGD(gradnorm.parameters(), lr=0.1)
    grad_losses = [_gradnorm_step(gradnorm, optimizer, *step) for step in STEPS]
    # step 0 by hand: r = (1, 1); G = (2, 0.5), target mean 1.25; L_grad = 1.5; dL/dw = (+2, -0.5)
    # -> w = (0.8, 1.05) -> renormalised (0.8649, 1.1351)
    assert grad_losses[0] == pytest.approx(1.5)
    torch.testing.assert_close(gradnorm.initial, torch.tensor(STEPS[0][1], dtype=torch.float64))  # L_i(0)
    weights, expected_losses = _hand_gradnorm(1.5, 0.1)
    assert grad_losses == pytest.approx(expected_losses, rel=1e-6)
    assert gradnorm.current().tolist() == pytest.approx(weights, rel=1e-6)
    assert float(gradnorm.current().sum()) == pytest.approx(2.0)
    # term 1 trains more slowly (0.8 of its start vs 0.25): it ends with the larger weight
    assert weights[1] > weights[0]


def test_gradnorm_alpha_zero_equalises_the_weighted_gradient_norms():
    gradnorm = GradNorm(2, alpha=0.0)
    optimizer = torch.optim.SGD(gradnorm.parameters(), lr=0.01)
    for _ in range(300):
        _gradnorm_step(gradnorm, optimizer, [3.0, 1.0], [1.0, 1.0])
    weighted = gradnorm.current() * torch.tensor([3.0, 1.0])
    assert float(weighted[0]) == pytest.approx(float(weighted[1]), abs=0.1)  # w = (0.5, 1.5) up to sign-step jitter


def test_gradnorm_resumes_exactly_with_its_optimiser_state():
    def make():
        gradnorm = GradNorm(2, alpha=1.5)
        return gradnorm, torch.optim.SGD(gradnorm.parameters(), lr=0.1, momentum=0.9)

    reference, ref_opt = make()
    for step in STEPS:
        _gradnorm_step(reference, ref_opt, *step)
    interrupted, int_opt = make()
    _gradnorm_step(interrupted, int_opt, *STEPS[0])
    resumed, res_opt = make()
    resumed.load_state_dict(interrupted.state_dict())
    res_opt.load_state_dict(int_opt.state_dict())
    for step in STEPS[1:]:
        _gradnorm_step(resumed, res_opt, *step)
    torch.testing.assert_close(resumed.weights, reference.weights)
    torch.testing.assert_close(resumed.initial, reference.initial)


def test_gradnorm_composite_weights_the_terms_and_rejects_bad_options():
    slot = losses.build_slot("mae + 0.5*mse", balance={"name": "gradnorm", "alpha": 0.5})
    assert slot.gradnorm.alpha == 0.5
    with torch.no_grad():
        slot.gradnorm.weights.copy_(torch.tensor([3.0, 1.0]))  # normalised to (1.5, 0.5)
    pred, target = torch.tensor([2.0, 0.0]), torch.tensor([0.0, 1.0])  # mae 1.5, mse 2.5
    total, terms = slot.forward_terms(pred, target)
    assert float(total) == pytest.approx(1.5 * 1.5 + 0.5 * 0.5 * 2.5)
    torch.testing.assert_close(slot.effective_weights(), torch.tensor([1.5, 0.25]))
    for bad, message in [({"name": "gradnorm", "alpha": -1}, r"alpha: expected a number >= 0"),
                         ({"name": "gradnorm", "temperature": 2}, "gradnorm takes alpha")]:
        with pytest.raises(losses.LossConfigError, match=message):
            losses.build_slot("mae + mse", balance=bad)
    with pytest.raises(losses.LossConfigError, match="needs balance: gradnorm"):
        losses.build_slot("mae + mse").gradnorm_loss(terms, torch.zeros(2, 3))


def test_gradnorm_loss_in_a_plain_loop_trains_the_weights_only():
    layer = nn.Linear(3, 1)
    crit = losses.build_slot("mae + mse", balance="gradnorm")
    x, y = torch.randn(8, 3, generator=torch.Generator().manual_seed(0)), torch.zeros(8, 1)
    total, terms = crit.forward_terms(layer(x), y, detach=False)
    grads, reached = term_gradients(list(terms.values()), list(layer.parameters()))
    grad_loss = crit.gradnorm_loss(terms, grads)
    layer_grads = torch.autograd.grad(grad_loss, list(layer.parameters()), allow_unused=True)
    assert reached == [True, True] and all(g is None for g in layer_grads)  # L_grad does not train the network
    grad_loss.backward()
    norms = grads.norm(dim=1)  # at the first step r = 1 and the target is the mean weighted norm
    expected = torch.sign(norms - norms.mean()) * norms
    torch.testing.assert_close(crit.gradnorm.weights.grad, expected)


# ---------------------------------------------------------------------------------------------- attribution


def test_per_term_gradients_on_a_linear_model_sum_to_the_total_gradient():
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    x, y = torch.randn(5, 3), torch.randn(5, 2)
    pred = model(x)
    terms = [F.mse_loss(pred, y), (pred - y).abs().mean(), pred.sum() * 0 + 1.0]  # the last: constant in W
    unused = nn.Linear(2, 2)  # a parameter no term reaches
    params = [model.weight, model.bias, unused.weight]
    grads, reached = term_gradients(terms, params)
    assert grads.shape == (3, 6 + 2 + 4) and reached == [True, True, True]
    # MSE on a linear model by hand: dL/dW = 2/(n m) (pred - y)^T x, dL/db = 2/(n m) sum_rows(pred - y)
    residual = (pred - y).detach()
    torch.testing.assert_close(grads[0, :6], (2 / 10 * residual.T @ x).flatten())
    torch.testing.assert_close(grads[0, 6:8], 2 / 10 * residual.sum(0))
    assert not grads[:, 8:].any() and not grads[2].any()

    weights = torch.tensor([0.7, 0.3, 2.0])
    total = sum(w * t for w, t in zip(weights, terms))
    expected = torch.cat([torch.zeros(4) if g is None else g.flatten()
                          for g in torch.autograd.grad(total, params, allow_unused=True)])
    torch.testing.assert_close((weights[:, None] * grads).sum(0), expected)  # the rows add up to the total

    norms, shares = attribution(grads, weights)
    torch.testing.assert_close(norms, weights * grads.norm(dim=1))
    assert float(shares.sum()) == pytest.approx(1.0)
    torch.testing.assert_close(shares, (weights[:, None] * grads) @ expected / expected.square().sum())
    assert float(shares[2]) == 0.0


def test_a_term_off_the_shared_layer_is_reported_unreached():
    layer, other = nn.Linear(2, 1), nn.Linear(2, 1)
    x = torch.randn(4, 2)
    grads, reached = term_gradients([layer(x).mean(), other(x).mean()], list(layer.parameters()))
    assert reached == [True, False] and not grads[1].any()


def test_the_gradnorm_preset_validates_with_a_balance_mapping():
    from trainer.build import validate
    from trainer.config import load_config

    configs = Path(__file__).parents[2] / "configs"
    files = [configs / "segmentation" / "shapes.yaml", configs / "losses" / "gradnorm.yaml"]
    config = validate(load_config(files, ["run.term_grad_norms=10"]))
    assert config["loss"]["balance"] == {"name": "gradnorm", "alpha": 1.5}  # not rewritten as a loss spec
    assert config["run"]["term_grad_norms"] == 10

"""Gradient penalty: hand-computed values on linear discriminators, double-backward gradcheck, slot inputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import losses
from losses.generative import gradient_penalty


def test_wgan_gp_of_a_linear_critic_is_the_weight_norm_gap():
    w = torch.tensor([3.0, 4.0])  # ||w|| = 5 at every interpolate: (5 - 1)^2 = 16
    critic = lambda x: x @ w  # noqa: E731
    real, fake = torch.randn(6, 2), torch.randn(6, 2)
    assert float(losses.build("gradient_penalty")(critic, real, fake)) == pytest.approx(16.0)
    per_sample = losses.build("gradient_penalty", reduction="none")(critic, real, fake)
    torch.testing.assert_close(per_sample, torch.full((6,), 16.0))


def test_r1_is_half_the_squared_gradient_norm_on_reals():
    critic = lambda x: (x**2).sum(1)  # noqa: E731  grad = 2x: 1/2 * 4 ||x||^2
    real = torch.tensor([[1.0, 2.0], [0.0, 3.0]])
    value = losses.build("gradient_penalty", kind="r1", reduction="sum")(critic, real, torch.zeros_like(real))
    assert float(value.detach()) == pytest.approx(2 * (5.0 + 9.0))


def test_interpolates_lie_between_real_and_fake():
    seen = []

    def critic(x):
        seen.append(x.detach())
        return x.sum(1)

    real, fake = torch.zeros(64, 1), torch.ones(64, 1)
    gradient_penalty(critic, real, fake)
    assert 0.0 <= float(seen[0].min()) and float(seen[0].max()) <= 1.0 and seen[0].std() > 0.1


def test_penalty_trains_the_critic_double_backward_gradcheck():
    torch.manual_seed(0)
    real, fake = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    weight = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    head = torch.randn(5, dtype=torch.float64)

    def penalty(w: torch.Tensor) -> torch.Tensor:
        torch.manual_seed(1)  # the same interpolation points at every evaluation
        return gradient_penalty(lambda x: torch.tanh(x @ w.T) @ head, real, fake)

    assert torch.autograd.gradcheck(penalty, (weight,))
    r1 = lambda w: gradient_penalty(lambda x: torch.tanh(x @ w.T) @ head, real, kind="r1")  # noqa: E731
    assert torch.autograd.gradcheck(r1, (weight,))


def test_under_no_grad_it_still_evaluates_without_a_graph():
    critic = nn.Linear(2, 1)
    with torch.no_grad():
        value = losses.build("gradient_penalty")(critic, torch.randn(3, 2), torch.randn(3, 2))
    assert torch.isfinite(value) and not value.requires_grad


def test_bad_inputs_name_the_loss():
    with pytest.raises(losses.LossInputError, match="same shape"):
        gradient_penalty(lambda x: x.sum(1), torch.zeros(2, 3), torch.zeros(3, 3))
    with pytest.raises(losses.LossConfigError, match="kind"):
        losses.build("gradient_penalty", kind="r2")


def test_in_a_slot_it_receives_the_discriminator_by_name_while_other_terms_get_logits():
    slot = losses.Slot(("adversarial", "classification"), inputs=("logits", "target"),
                       extra_inputs=("discriminator", "real", "fake"))
    composite = losses.build_slot([{"name": "bce", "params": {"mode": "binary"}},
                                   {"name": "gradient_penalty", "weight": 10.0}], slot, where="loss.discriminator")
    critic = nn.Linear(2, 1)
    real, fake = torch.randn(4, 2), torch.randn(4, 2)
    logits = critic(torch.cat([real, fake])).squeeze(1)
    labels = torch.cat([torch.ones(4), torch.zeros(4)])
    total, terms = composite.forward_terms(logits, labels, discriminator=critic, real=real, fake=fake)
    torch.testing.assert_close(total, terms["bce"] + 10.0 * terms["gradient_penalty"])
    with pytest.raises(losses.LossInputError, match=r"term 'gradient_penalty' needs input\(s\) 'discriminator'"):
        composite.forward_terms(logits, labels)

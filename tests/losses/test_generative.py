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


# --------------------------------------------------------------------------- adversarial objectives

_R = torch.tensor([[1.5, -0.5], [0.2, 3.0]], dtype=torch.float64)  # D(x) raw scores
_F = torch.tensor([[-1.2, 0.3], [2.5, -2.0]], dtype=torch.float64)  # D(G(z))


_R_SIGN = torch.tensor([[0.5, 0.1], [0.2, 0.9]], dtype=torch.float64)  # in (0, 1): below every real target
_F_SIGN = torch.tensor([[0.5, 0.3], [0.8, 0.9]], dtype=torch.float64)  # and above LSGAN's fake target 0


def _sig(t):
    return torch.sigmoid(t)


# the papers' objectives as written there (probabilities D = sigmoid(score) for the log-losses)
PAPER_GENERATOR = {
    "vanilla": lambda f: torch.log(1 - _sig(f)).mean(),  # Goodfellow eq. 1, minimised by G
    "nonsaturating": lambda f: -torch.log(_sig(f)).mean(),  # Goodfellow Sec. 3
    "lsgan": lambda f: 0.5 * ((f - 1) ** 2).mean(),  # Mao eq. 2 with c = 1
    "hinge": lambda f: -f.mean(),  # Lim & Ye; Miyato eq. 17
    "wgan": lambda f: -f.mean(),  # Arjovsky Alg. 1
}
PAPER_DISCRIMINATOR = {
    "vanilla": lambda r, f: -(torch.log(_sig(r)).mean() + torch.log(1 - _sig(f)).mean()),
    "nonsaturating": lambda r, f: -(torch.log(_sig(r)).mean() + torch.log(1 - _sig(f)).mean()),
    "lsgan": lambda r, f: 0.5 * ((r - 1) ** 2).mean() + 0.5 * (f**2).mean(),  # a = 0, b = 1
    "hinge": lambda r, f: -torch.clamp(r - 1, max=0).mean() - torch.clamp(-f - 1, max=0).mean(),
    "wgan": lambda r, f: -(r.mean() - f.mean()),
}


@pytest.mark.parametrize("kind", sorted(PAPER_GENERATOR))
def test_generator_form_is_the_paper_objective(kind):
    value = losses.build("adversarial", kind=kind)(_F)
    torch.testing.assert_close(value, PAPER_GENERATOR[kind](_F))
    # the generator is pushed to raise D's score on its samples
    f = _F_SIGN.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(losses.build("adversarial", kind=kind)(f), f)
    assert bool((grad < 0).all())


@pytest.mark.parametrize("kind", sorted(PAPER_DISCRIMINATOR))
def test_discriminator_form_is_the_paper_objective(kind):
    value = losses.build("adversarial_d", kind=kind)(_R, _F)
    torch.testing.assert_close(value, PAPER_DISCRIMINATOR[kind](_R, _F))
    r, f = _R_SIGN.clone().requires_grad_(True), _F_SIGN.clone().requires_grad_(True)
    grad_r, grad_f = torch.autograd.grad(losses.build("adversarial_d", kind=kind)(r, f), (r, f))
    assert bool((grad_r < 0).all()) and bool((grad_f > 0).all())  # raise D(real), lower D(fake)


def test_vanilla_discriminator_is_bce_with_logits_and_gradchecks():
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    expected = bce(_R, torch.ones_like(_R)) + bce(_F, torch.zeros_like(_F))
    torch.testing.assert_close(losses.build("adversarial_d", kind="vanilla")(_R, _F), expected)
    for kind in PAPER_DISCRIMINATOR:
        d = losses.build("adversarial_d", kind=kind)
        g = losses.build("adversarial", kind=kind)
        assert torch.autograd.gradcheck(d, (_R.clone().requires_grad_(True), _F.clone().requires_grad_(True)))
        assert torch.autograd.gradcheck(g, (_F.clone().requires_grad_(True),))


def test_adversarial_errors_name_the_loss():
    with pytest.raises(losses.LossConfigError, match="kind"):
        losses.build("adversarial", kind="relativistic")
    with pytest.raises(losses.LossInputError, match=r"adversarial_d\(real_logits, fake_logits\)"):
        losses.build("adversarial_d")(torch.zeros(2, 1), torch.zeros(3, 1))


def test_generator_slot_feeds_logits_by_name_and_images_positionally():
    slot = losses.Slot(("adversarial", "image", "regression"), inputs=("fake", "target"),
                       extra_inputs=("fake_logits", "fake_features", "real_features"))
    composite = losses.build_slot("adversarial + 100*l1", slot, where="loss.generator")
    fake, target, logits = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8), torch.randn(2, 1, 2, 2)
    total, terms = composite.forward_terms(fake, target, fake_logits=logits)
    torch.testing.assert_close(terms["adversarial"], torch.nn.functional.softplus(-logits).mean())
    torch.testing.assert_close(total, terms["adversarial"] + 100 * (fake - target).abs().mean())


# --------------------------------------------------------------------------- feature matching


def test_feature_matching_is_the_layer_mean_of_l1_and_detaches_real():
    fake = [torch.tensor([[1.0, 3.0], [0.0, 0.0]]), torch.tensor([[2.0], [4.0]])]
    real = [torch.zeros(2, 2, requires_grad=True), torch.zeros(2, 1)]
    per_sample = losses.build("feature_matching", reduction="none")(fake, real)
    torch.testing.assert_close(per_sample.detach(), torch.tensor([(2.0 + 2.0) / 2, (0.0 + 4.0) / 2]))
    assert not per_sample.requires_grad  # the real activations are targets
    l2 = losses.build("feature_matching", distance="l2", reduction="none")(fake, real)
    torch.testing.assert_close(l2, torch.tensor([(5.0 + 4.0) / 2, 16.0 / 2]))
    leaf = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    target = [torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 2, dtype=torch.float64)]
    assert torch.autograd.gradcheck(lambda t: losses.build("feature_matching")([t, t[:, :2] * 2], target), (leaf,))
    with pytest.raises(losses.LossInputError, match="feature_matching"):
        losses.build("feature_matching")([torch.zeros(2, 3)], [torch.zeros(2, 3), torch.zeros(2, 3)])

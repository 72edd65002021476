"""Diffusion noise prediction and the VAE bound: paper formulas by hand, torch references, gradcheck, training."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Normal, kl_divergence

import losses
from losses.likelihood import gaussian_kl, min_snr_weight


def test_noise_prediction_is_l_simple_and_min_snr_caps_low_noise_steps():
    torch.manual_seed(0)
    pred, noise = torch.randn(3, 2, 4, 4), torch.randn(3, 2, 4, 4)
    plain = losses.build("noise_prediction")
    torch.testing.assert_close(plain(pred, noise), F.mse_loss(pred, noise))  # equal sizes: the element mean
    per_sample = (pred - noise).square().mean(dim=(1, 2, 3))
    alpha_bar = torch.tensor([0.99, 0.5, 0.1])  # SNR 99, 1, 1/9
    weights = torch.tensor([5.0 / 99.0, 1.0, 1.0])  # min(SNR, 5) / SNR
    torch.testing.assert_close(min_snr_weight(alpha_bar, 5.0), weights)
    weighted = losses.build("noise_prediction", weighting="min_snr", gamma=5.0, reduction="none")
    torch.testing.assert_close(weighted(pred, noise, alpha_bar), per_sample * weights)


def test_noise_prediction_errors_name_what_is_missing():
    crit = losses.build("noise_prediction", weighting="min_snr")
    with pytest.raises(losses.LossInputError, match=r"weighting='min_snr' needs alpha_bar of shape \(2,\)"):
        crit(torch.zeros(2, 3), torch.zeros(2, 3))
    with pytest.raises(losses.LossConfigError, match="weighting must be one of"):
        losses.build("noise_prediction", weighting="p2")


def test_vae_kl_equals_torch_distributions_and_the_bound_adds_the_reconstruction():
    torch.manual_seed(1)
    mu, logvar = torch.randn(4, 5), torch.randn(4, 5)
    posterior, prior = Normal(mu, (0.5 * logvar).exp()), Normal(torch.zeros(5), torch.ones(5))
    torch.testing.assert_close(gaussian_kl(mu, logvar), kl_divergence(posterior, prior).sum(1))
    recon, x = torch.randn(4, 1, 3, 3), torch.rand(4, 1, 3, 3)
    expected = {
        "mse": (recon - x).square().sum(dim=(1, 2, 3)),
        "l1": (recon - x).abs().sum(dim=(1, 2, 3)),
        "bce": F.binary_cross_entropy_with_logits(recon, x, reduction="none").sum(dim=(1, 2, 3)),
    }
    for reconstruction, rec in expected.items():
        crit = losses.build("vae", beta=4.0, reconstruction=reconstruction, reduction="none")
        torch.testing.assert_close(crit(recon, x, mu, logvar), rec + 4.0 * gaussian_kl(mu, logvar))


@pytest.mark.parametrize(("name", "params"), [("noise_prediction", {"weighting": "min_snr"}), ("vae", {"beta": 2.0})])
def test_gradcheck_float64(name, params):
    torch.manual_seed(2)
    crit = losses.build(name, **params)
    pred, target = torch.randn(3, 1, 2, 2, dtype=torch.float64, requires_grad=True), torch.rand(3, 1, 2, 2).double()
    if name == "vae":
        mu, logvar = (torch.randn(3, 2, dtype=torch.float64, requires_grad=True) for _ in range(2))
        assert torch.autograd.gradcheck(lambda p, m, v: crit(p, target, m, v), (pred, mu, logvar))
    else:
        alpha_bar = torch.tensor([0.9, 0.5, 0.2], dtype=torch.float64)
        assert torch.autograd.gradcheck(lambda p: crit(p, target, alpha_bar), (pred,))


def test_a_tiny_denoiser_learns_to_predict_the_noise():
    """DDPM training (Ho et al., Algorithm 1) on 2-pixel 'images' from two modes: the loss falls clearly."""
    torch.manual_seed(3)
    alpha_bars = torch.cumprod(1 - torch.linspace(1e-3, 0.2, 50), 0)
    net = nn.Sequential(nn.Linear(3, 64), nn.SiLU(), nn.Linear(64, 2))
    crit = losses.build("noise_prediction", weighting="min_snr")
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    values = []
    for _ in range(300):
        x0 = torch.where(torch.rand(128, 1) < 0.5, -1.0, 1.0).expand(128, 2)
        t = torch.randint(0, 50, (128,))
        noise = torch.randn(128, 2)
        a = alpha_bars[t]
        xt = a.sqrt()[:, None] * x0 + (1 - a).sqrt()[:, None] * noise
        loss = crit(net(torch.cat((xt, t[:, None] / 50.0), 1)), noise, a)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        values.append(loss.item())
    assert sum(values[-30:]) / 30 < 0.6 * sum(values[:30]) / 30


def test_a_tiny_vae_lowers_its_bound():
    torch.manual_seed(4)
    data = (torch.rand(256, 16) < torch.linspace(0.1, 0.9, 16)).float()  # Bernoulli pixels
    encoder, decoder = nn.Linear(16, 8), nn.Linear(2, 16)  # -> mu, logvar (2 + 2 of 8, rest unused)
    crit = losses.build("vae", reconstruction="bce")
    optimizer = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=2e-2)
    values = []
    for _ in range(150):
        mu, logvar = encoder(data)[:, :2], encoder(data)[:, 2:4]
        z = mu + (0.5 * logvar).exp() * torch.randn_like(mu)  # reparameterisation
        loss = crit(decoder(z), data, mu, logvar)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        values.append(loss.item())
    assert values[-1] < 0.8 * values[0]

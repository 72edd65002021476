"""Compound losses: hand-computed values, torch / MONAI cross-checks, gradcheck, reductions, degenerate inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from dense_inputs import check_registered, dense_inputs, run_on_meta

import losses
from losses import compound

NAMES = ["combo", "exp_log", "unified_focal"]
MODES = ["binary", "multiclass", "multilabel"]
VARIANTS = [
    ("combo", {}),
    ("exp_log", {}),
    ("unified_focal", {"variant": "asymmetric"}),
    ("unified_focal", {"variant": "symmetric"}),
]


def _dice(p: np.ndarray, g: np.ndarray) -> float:
    tp, fp, fn = (p * g).sum(), (p * (1 - g)).sum(), ((1 - p) * g).sum()
    return 2 * tp / (2 * tp + fp + fn)


# --------------------------------------------------------------------------- hand-computed values

P = np.array([0.9, 0.4, 0.2, 0.7, 0.6])
G = np.array([1.0, 1.0, 0.0, 0.0, 1.0])


@pytest.mark.parametrize("alpha,beta", [(0.5, 0.5), (0.3, 0.8)])
def test_combo_binary_hand(alpha, beta):
    wce = -np.mean(beta * G * np.log(P) + (1 - beta) * (1 - G) * np.log(1 - P))
    expect = alpha * wce + (1 - alpha) * (1 - _dice(P, G))
    crit = losses.build("combo", alpha=alpha, beta=beta, mode="binary", from_logits=False)
    assert crit(torch.tensor(P[None]), torch.tensor(G[None])).item() == pytest.approx(expect, abs=1e-6)
    # from logits: same value through sigmoid
    crit = losses.build("combo", alpha=alpha, beta=beta, mode="binary")
    assert crit(torch.logit(torch.tensor(P[None])), torch.tensor(G[None])).item() == pytest.approx(expect, abs=1e-6)


def test_combo_multiclass_hand_and_torch_ce():
    # 3 classes, 4 pixels (2x2), one ignored pixel
    probs = np.array([[0.7, 0.1, 0.2, 0.3], [0.2, 0.8, 0.1, 0.3], [0.1, 0.1, 0.7, 0.4]])
    target = np.array([0, 1, 2, -1])
    valid = target >= 0
    onehot = np.stack([(target == c) for c in range(3)]).astype(float)
    beta, alpha = 0.7, 0.4
    per_px = -(beta * onehot * np.log(probs) + (1 - beta) * (1 - onehot) * np.log(1 - probs)).sum(0)
    wce = per_px[valid].mean()
    dice = np.mean([1 - _dice(probs[c][valid], onehot[c][valid]) for c in range(3)])
    crit = losses.build("combo", alpha=alpha, beta=beta, from_logits=False, ignore_index=-1)
    got = crit(torch.tensor(probs).reshape(1, 3, 2, 2), torch.tensor(target).reshape(1, 2, 2))
    assert got.item() == pytest.approx(alpha * wce + (1 - alpha) * dice, abs=1e-6)
    # beta = 1: the pixel term is exactly torch's cross_entropy
    x, t = dense_inputs("multiclass", shape=(2, 4, 3, 2, 3), seed=1)  # 3D
    ce = F.cross_entropy(x, t)
    dice_loss = losses.build("dice")(x, t)
    got = losses.build("combo", alpha=0.3, beta=1.0)(x, t)
    assert got.item() == pytest.approx(0.3 * ce.item() + 0.7 * dice_loss.item(), abs=1e-5)


def test_exp_log_hand_binary():
    # labels: 3 positives, 2 negatives -> w_1 = sqrt(5/3), w_0 = sqrt(5/2)
    gd, gc = 0.3, 0.4
    nll = -np.where(G > 0, np.log(P), np.log(1 - P))
    w = np.where(G > 0, math.sqrt(5 / 3), math.sqrt(5 / 2))
    l_cross = np.mean(w * nll**gc)
    l_dice = (-math.log(_dice(P, G))) ** gd
    expect = 0.8 * l_dice + 0.2 * l_cross
    crit = losses.build("exp_log", gamma_dice=gd, gamma_cross=gc, mode="binary", from_logits=False)
    assert crit(torch.tensor(P[None]), torch.tensor(G[None])).item() == pytest.approx(expect, abs=1e-6)
    crit = losses.build(
        "exp_log",
        gamma_dice=gd,
        gamma_cross=gc,
        mode="binary",
        class_weights=[1.0, 2.0],
        w_dice=0.5,
        w_cross=0.5,
        from_logits=False,
    )
    expect = 0.5 * l_dice + 0.5 * np.mean(np.where(G > 0, 2.0, 1.0) * nll**gc)
    assert crit(torch.tensor(P[None]), torch.tensor(G[None])).item() == pytest.approx(expect, abs=1e-6)


def test_exp_log_multiclass_3d_with_ignore():
    x, t = dense_inputs("multiclass", shape=(1, 3, 2, 2, 3), seed=2)
    t[0, 0, 0, :] = 255
    probs = torch.softmax(x, 1)[0].reshape(3, -1).double().numpy()
    tf = t.reshape(-1).numpy()
    valid = tf != 255
    counts = np.array([(tf[valid] == c).sum() for c in range(3)])
    w = np.sqrt(counts.sum() / np.maximum(counts, 1))
    nll = -np.log(probs[tf[valid], np.nonzero(valid)[0]])
    l_cross = np.mean(w[tf[valid]] * nll**0.3)
    dices = [_dice(probs[c][valid], (tf[valid] == c).astype(float)) for c in range(3)]
    l_dice = np.mean([(-math.log(d)) ** 0.3 if (tf[valid] == c).any() else 0.0 for c, d in enumerate(dices)])
    got = losses.build("exp_log", ignore_index=255)(x, t)
    assert got.item() == pytest.approx(0.8 * l_dice + 0.2 * l_cross, abs=1e-5)


@pytest.mark.parametrize("variant", ["asymmetric", "symmetric"])
def test_unified_focal_hand_binary(variant):
    d, g, lam = 0.6, 0.5, 0.3
    pt = np.where(G > 0, P, 1 - P)
    fg_gamma = g if variant == "symmetric" else 0.0
    focal = np.mean(np.where(G > 0, d * (1 - pt) ** fg_gamma, (1 - d) * (1 - pt) ** g) * -np.log(pt))
    tp, fp, fn = (P * G).sum(), (P * (1 - G)).sum(), ((1 - P) * G).sum()
    tn = ((1 - P) * (1 - G)).sum()
    ti_fg = tp / (tp + d * fn + (1 - d) * fp)
    ti_bg = tn / (tn + d * fp + (1 - d) * fn)  # background: its FN are foreground FP
    bg = (1 - ti_bg) ** (1 - g) if variant == "symmetric" else 1 - ti_bg
    ft = 0.5 * (bg + (1 - ti_fg) ** (1 - g))
    crit = losses.build(
        "unified_focal", variant=variant, weight=lam, delta=d, gamma=g, mode="binary", from_logits=False
    )
    got = crit(torch.tensor(P[None]), torch.tensor(G[None]))
    assert got.item() == pytest.approx(lam * focal + (1 - lam) * ft, abs=1e-6)
    # multiclass with two softmax channels is the same problem
    probs2 = torch.tensor(np.stack([1 - P, P])[None])
    crit = losses.build("unified_focal", variant=variant, weight=lam, delta=d, gamma=g, from_logits=False)
    assert crit(probs2, torch.tensor(G[None]).long()).item() == pytest.approx(got.item(), abs=1e-6)


@pytest.mark.parametrize("delta,gamma", [(0.6, 0.5), (0.7, 0.75)])
def test_unified_focal_matches_monai_terms(delta, gamma):
    from monai.losses.unified_focal_loss import AsymmetricFocalLoss, AsymmetricFocalTverskyLoss

    g = torch.Generator().manual_seed(3)
    p = torch.rand(2, 1, 6, 7, generator=g) * 0.98 + 0.01
    t = (torch.rand(2, 1, 6, 7, generator=g) > 0.6).float()
    p2, t2 = torch.cat([1 - p, p], 1), torch.cat([1 - t, t], 1)
    kw = dict(mode="binary", from_logits=False, delta=delta, gamma=gamma, per_image=True, smooth=1e-7)
    focal = losses.build("unified_focal", weight=1.0, **kw)(p, t)
    ft = losses.build("unified_focal", weight=0.0, **kw)(p, t)
    # MONAI averages the focal term over its two binary channels (half of Yeung's per-pixel class sum)
    assert focal.item() / 2 == pytest.approx(AsymmetricFocalLoss(delta=delta, gamma=gamma)(p2, t2).item(), abs=1e-6)
    assert ft.item() == pytest.approx(AsymmetricFocalTverskyLoss(delta=delta, gamma=gamma)(p2, t2).item(), abs=1e-6)


# --------------------------------------------------------------------------- generic properties


@pytest.mark.parametrize("name,kw", VARIANTS)
@pytest.mark.parametrize("mode", MODES)
def test_gradcheck_float64(name, kw, mode):
    x, t = dense_inputs(mode, shape=(2, 3, 3, 2), seed=4, dtype=torch.float64)
    t = t.clone()
    t.view(-1)[0] = 255
    crit = losses.build(name, mode=mode, ignore_index=255, **kw)
    x.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda inp: crit(inp, t), (x,), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("name,kw", VARIANTS)
def test_reductions(name, kw):
    x, t = dense_inputs("multiclass", seed=5)
    none = losses.build(name, per_image=True, reduction="none", **kw)(x, t)
    assert none.shape == (2,)
    assert losses.build(name, per_image=True, **kw)(x, t).item() == pytest.approx(none.mean().item(), abs=1e-6)
    total = losses.build(name, per_image=True, reduction="sum", **kw)(x, t)
    assert total.item() == pytest.approx(none.sum().item(), abs=1e-6)
    batch = [losses.build(name, reduction=r, **kw)(x, t) for r in ("mean", "sum", "none")]
    assert all(b.dim() == 0 and b.item() == pytest.approx(batch[0].item()) for b in batch)


@pytest.mark.parametrize("name,kw", VARIANTS)
@pytest.mark.parametrize("mode", MODES)
def test_perfect_prediction_is_minimum(name, kw, mode):
    _, t = dense_inputs(mode, seed=6)
    if mode == "multiclass":
        x = F.one_hot(t, 3).movedim(-1, 1).float() * 200 - 100  # exp_log: (-ln p)^0.3 -> 0 only as p -> 1
    else:
        x = (t * 2 - 1).float() * 100
        x = x.unsqueeze(1) if mode == "binary" else x
    crit = losses.build(name, mode=mode, **kw)
    assert crit(x, t).item() == pytest.approx(0.0, abs=1e-5)
    xr, _ = dense_inputs(mode, seed=6)
    assert crit(xr, t).item() > 1e-2


@pytest.mark.parametrize("name,kw", VARIANTS)
@pytest.mark.parametrize("mode", MODES)
def test_empty_and_all_ignored_are_finite(name, kw, mode):
    x, t = dense_inputs(mode, seed=7)
    x.requires_grad_(True)
    crit = losses.build(name, mode=mode, ignore_index=255, **kw)
    val = crit(x, torch.zeros_like(t))
    (grad,) = torch.autograd.grad(val, x)
    assert torch.isfinite(val) and val.item() >= 0 and torch.isfinite(grad).all()
    val = crit(x, torch.full_like(t, 255))
    (grad,) = torch.autograd.grad(val, x)
    assert val.item() == 0.0 and torch.isfinite(grad).all() and grad.abs().max() == 0


@pytest.mark.parametrize("name,kw", VARIANTS)
@pytest.mark.parametrize("mode", ["binary", "multiclass"])
def test_bf16_autocast_and_fp16_large_logits(name, kw, mode, check_low_precision):
    x, t = dense_inputs(mode, seed=8, scale=1e4)
    check_low_precision(losses.build(name, mode=mode, **kw), x.float(), t)


@pytest.mark.parametrize("name", NAMES)
def test_build_info_and_yaml_dict(name):
    check_registered(name, "compound")
    composite = losses.build(f"{name} + 0.5*dice", defaults={"mode": "multiclass"})
    x, t = dense_inputs("multiclass", seed=9)
    assert torch.isfinite(composite(x, t))


def test_bad_params_and_shapes_raise():
    with pytest.raises(losses.LossConfigError):
        losses.build("unified_focal", variant="both")
    with pytest.raises(losses.LossConfigError):
        losses.build("combo", alpha=2.0)
    with pytest.raises(losses.LossInputError, match="combo"):
        losses.build("combo")(torch.randn(2, 3, 4, 4), torch.zeros(2, 3, 4, dtype=torch.long))


@pytest.mark.parametrize("name", ["combo", "exp_log", "unified_focal", "focal_tversky", "lovasz"])
def test_tiny_segmenter_trains(name):
    """A 1x1-conv segmenter fitted with the loss on a fixed batch: the loss falls by a clear margin."""
    g = torch.Generator().manual_seed(0)
    images = torch.randn(4, 3, 8, 8, generator=g)
    target = images[:, :2].argmax(1) + (images[:, 2] > 1.0).long()  # 3 classes, learnable per pixel
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 1), torch.nn.ReLU(), torch.nn.Conv2d(16, 3, 1))
    crit = losses.build(name, mode="multiclass")
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    first = crit(net(images), target).item()
    for _ in range(60):
        opt.zero_grad()
        loss = crit(net(images), target)
        loss.backward()
        opt.step()
    assert loss.item() < 0.6 * first


# --------------------------------------------------------------------------- fused pass, functional cores, sync policy


@pytest.mark.parametrize("name,kw", [("combo", {"beta": 0.3}), *VARIANTS[1:]])
@pytest.mark.parametrize("ignore", [None, 255])
@pytest.mark.parametrize("per_image", [False, True])
def test_fused_softmax_pass_equals_the_probability_path(name, kw, ignore, per_image):
    """From logits the multiclass terms come from the fused kernel, from probabilities from plain autograd."""
    x, t = dense_inputs("multiclass", shape=(2, 4, 3, 5), seed=16, dtype=torch.float64)
    if ignore is not None:
        t.view(-1)[::4] = ignore
    common = dict(ignore_index=ignore, per_image=per_image, **kw)
    fused_x, prob_x = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    fused = losses.build(name, **common)(fused_x, t)
    prob = losses.build(name, from_logits=False, **common)(torch.softmax(prob_x, 1), t)
    torch.testing.assert_close(fused, prob)
    upstream = torch.linspace(0.5, 1.5, fused.numel(), dtype=fused.dtype).view_as(fused)
    expected = torch.autograd.grad(prob, prob_x, upstream)
    torch.testing.assert_close(torch.autograd.grad(fused, fused_x, upstream), expected)


@pytest.mark.parametrize("name,kw", VARIANTS)
@pytest.mark.parametrize("mode", MODES)
def test_functional_core_equals_module(name, kw, mode):
    fn = {"combo": compound.combo_loss, "exp_log": compound.exp_log_loss, "unified_focal": compound.unified_focal_loss}
    x, t = dense_inputs(mode, seed=17)
    options = dict(mode=mode, ignore_index=255, per_image=True, reduction="none", **kw)
    torch.testing.assert_close(fn[name](x, t, **options), losses.build(name, **options)(x, t))


@pytest.mark.parametrize("name,kw", VARIANTS)
@pytest.mark.parametrize("mode", MODES)
def test_no_host_read_in_forward(name, kw, mode):
    x, t = dense_inputs(mode, seed=18)
    assert run_on_meta(losses.build(name, mode=mode, ignore_index=255, **kw), x, t).shape == x.shape

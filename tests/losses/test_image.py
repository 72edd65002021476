"""Image losses: hand-computed SSIM cases, equality with piq / kornia (test-only references), the declared
value range, MS-SSIM's fewer scales, float64 gradchecks of the analytic SSIM backward, pixel losses."""

from __future__ import annotations

import pytest
import torch

import losses
from losses.image import _MeanSSIM, _ssim_terms, gaussian_window, ms_ssim_scales


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _pair(shape=(2, 3, 32, 32), seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=g, dtype=dtype)
    return x, (x + 0.2 * torch.randn(shape, generator=g, dtype=dtype)).clamp(0, 1)


def _ssim(x, y, **params):
    return 1.0 - losses.build("ssim", reduction="none", **params)(x, y)


def test_ssim_of_constant_images_is_the_luminance_term():
    a, b = 0.2, 0.6  # no variance: SSIM = (2ab + C1) / (a^2 + b^2 + C1)
    x, y = torch.full((1, 1, 12, 12), a, dtype=torch.float64), torch.full((1, 1, 12, 12), b, dtype=torch.float64)
    c1 = 0.01**2
    expected = torch.tensor([(2 * a * b + c1) / (a * a + b * b + c1)], dtype=torch.float64)
    torch.testing.assert_close(_ssim(x, y), expected)
    assert float(losses.build("ssim")(x, x)) == 0.0


def test_ssim_equals_piq_and_kornia():
    piq = pytest.importorskip("piq")
    kornia = pytest.importorskip("kornia")
    x, y = _pair()
    ours = _ssim(x, y)
    torch.testing.assert_close(ours, piq.ssim(x, y, data_range=1.0, reduction="none", downsample=False))
    torch.testing.assert_close(ours, kornia.metrics.ssim(x, y, 11, padding="valid").flatten(1).mean(1))


def test_data_range_scales_the_constants_like_piq():
    piq = pytest.importorskip("piq")
    x, y = _pair()
    ours = _ssim(255 * x, 255 * y, value_range=(0, 255))
    torch.testing.assert_close(ours, piq.ssim(255 * x, 255 * y, data_range=255.0, reduction="none", downsample=False))
    torch.testing.assert_close(ours, _ssim(x, y))


def test_declared_tanh_range_is_the_same_ssim_and_never_above_one():
    x, y = _pair()
    tanh_x, tanh_y = 2 * x - 1, 2 * y - 1
    torch.testing.assert_close(_ssim(tanh_x, tanh_y, value_range=(-1, 1)), _ssim(x, y))
    # anti-correlated images with opposite means: every factor negative, still bounded by 1
    z = torch.randn(4, 3, 16, 16, dtype=torch.float64).tanh()
    values = _ssim(z, -z, value_range=(-1, 1))
    assert bool((values <= 1).all()) and bool((values >= -1).all())
    with pytest.raises(losses.LossInputError, match=r"value_range is \[0, 1\].*value_range: \[-1, 1\]"):
        losses.build("ssim")(tanh_x, tanh_y)


def test_ssim_analytic_backward_gradcheck_and_matches_autograd():
    x, y = _pair((1, 2, 12, 13))
    x.requires_grad_(True)
    y.requires_grad_(True)
    window = gaussian_window(11, 1.5, torch.float64)
    assert torch.autograd.gradcheck(lambda a, b: _MeanSSIM.apply(a, b, window, 1e-4, 9e-4), (x, y))
    reference = _ssim_terms(x, y, window, 1e-4, 9e-4)[0].flatten(1).mean(1)
    torch.testing.assert_close(_MeanSSIM.apply(x, y, window, 1e-4, 9e-4), reference)
    crit = losses.build("ssim", value_range=(-1, 1))
    assert torch.autograd.gradcheck(lambda a: crit(2 * a - 1, 2 * y.detach() - 1), (x,), fast_mode=True)


def test_ms_ssim_equals_piq_at_five_scales():
    piq = pytest.importorskip("piq")
    x, y = _pair((1, 3, 176, 176))
    ours = 1.0 - losses.build("ms_ssim", reduction="none")(x, y)
    torch.testing.assert_close(ours, piq.multi_scale_ssim(x, y, data_range=1.0, reduction="none"))


def test_ms_ssim_uses_fewer_scales_on_small_images():
    assert [ms_ssim_scales(s, s) for s in (11, 21, 22, 44, 88, 176, 1000)] == [1, 1, 2, 3, 4, 5, 5]
    x, y = _pair((2, 3, 16, 16))
    # one scale: relu(SSIM)^1 per channel, averaged = SSIM
    torch.testing.assert_close(losses.build("ms_ssim")(x, y), losses.build("ssim")(x, y))
    x, y = _pair((2, 1, 24, 24))  # two scales: cs_1^(w1/(w1+w2)) * ssim_2^(w2/(w1+w2))
    window = gaussian_window(11, 1.5, torch.float64)
    cs = _ssim_terms(x, y, window, 1e-4, 9e-4)[1].flatten(1).mean(1)
    coarse = _ssim_terms(*(torch.nn.functional.avg_pool2d(t, 2) for t in (x, y)), window, 1e-4, 9e-4)[0]
    w1, w2 = 0.0448, 0.2856
    expected = cs ** (w1 / (w1 + w2)) * coarse.flatten(1).mean(1) ** (w2 / (w1 + w2))
    torch.testing.assert_close(1.0 - losses.build("ms_ssim", reduction="none")(x, y), expected)
    with pytest.raises(losses.LossInputError, match="smaller than the 11-pixel window"):
        losses.build("ms_ssim")(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8))


def test_ms_ssim_gradcheck():
    x, y = _pair((1, 1, 22, 22))
    x.requires_grad_(True)
    assert torch.autograd.gradcheck(losses.build("ms_ssim"), (x, y), fast_mode=True)


def test_cycle_and_identity_are_per_image_l1():
    pred, target = torch.zeros(2, 1, 2, 2), torch.tensor([[[[1.0, 1.0], [1.0, 1.0]]], [[[0.0, 0.0], [0.0, 2.0]]]])
    for name in ("cycle_consistency", "identity"):
        torch.testing.assert_close(losses.build(name, reduction="none")(pred, target), torch.tensor([1.0, 0.5]))
        torch.testing.assert_close(losses.build(name, distance="l2", reduction="none")(pred, target),
                                   torch.tensor([1.0, 1.0]))
    x, y = _pair((2, 3, 4, 4))
    x.requires_grad_(True)
    assert torch.autograd.gradcheck(losses.build("cycle_consistency"), (x, y))


def test_total_variation_hand_value_kornia_and_gradcheck():
    x = torch.tensor([[[[0.0, 1.0, 3.0], [0.0, 0.0, 0.0], [2.0, 2.0, 2.0]]]])
    # vertical |diffs|: (0, 1, 3) then (2, 2, 2) -> 10 / 6; horizontal: (1, 2), (0, 0), (0, 0) -> 3 / 6
    assert float(losses.build("total_variation")(x)) == pytest.approx(13 / 6)
    assert float(losses.build("total_variation", distance="l2")(x)) == pytest.approx((1 + 9 + 12) / 6 + 5 / 6)
    kornia = pytest.importorskip("kornia")
    z, _ = _pair((2, 3, 8, 8))
    expected = kornia.losses.total_variation(z, reduction="sum").sum(1) / (3 * 7 * 8)  # H = W: equal counts
    torch.testing.assert_close(losses.build("total_variation", reduction="none")(z), expected)
    z.requires_grad_(True)
    assert torch.autograd.gradcheck(losses.build("total_variation"), (z,))


def test_bad_inputs_name_the_loss():
    with pytest.raises(losses.LossInputError, match=r"ssim\(pred, target\): expected images \(N, C, H, W\)"):
        losses.build("ssim")(torch.rand(3, 16, 16), torch.rand(3, 16, 16))
    with pytest.raises(losses.LossInputError, match="cycle_consistency.*same shape"):
        losses.build("cycle_consistency")(torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 5))
    with pytest.raises(losses.LossConfigError, match="value_range"):
        losses.build("ssim", value_range=[1, 0])

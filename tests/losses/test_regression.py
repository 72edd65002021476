"""Regression losses: hand-computed values, torch / torchmetrics equality, gradcheck, reductions, degenerate, AMP."""

from __future__ import annotations

import math

import pytest
import scipy.integrate
import scipy.special
import torch
import torch.nn.functional as F
import torchmetrics.functional as tmf

import losses
from losses import LossInputError
from losses.regression import _log_partition_table, general_robust, log_partition

NAMES = ["mbe", "mae", "mse", "rmse", "rmsle", "huber", "smooth_l1", "balanced_l1", "log_cosh", "quantile"]

PRED = [0.2, -0.5, 1.5, 3.0, 0.0]
TARGET = [0.0, 0.5, 1.0, 0.5, 0.0]


def _t(values, dtype=torch.float64, grad=False):
    return torch.tensor(values, dtype=dtype, requires_grad=grad)


# --------------------------------------------------------------------------- plain-python references


def _py_balanced_l1(x: float, alpha=0.5, gamma=1.5, beta=1.0) -> float:
    # mmdetection's balanced_l1_loss, written out by hand
    x = abs(x)
    b = math.e ** (gamma / alpha) - 1
    if x < beta:
        return alpha / b * (b * x + 1) * math.log(b * x / beta + 1) - alpha * x
    return gamma * x + gamma / b - alpha * beta


def _py_huber(x: float, delta: float) -> float:
    return 0.5 * x * x if abs(x) <= delta else delta * (abs(x) - 0.5 * delta)


def _py_smooth_l1(x: float, beta: float) -> float:
    return 0.5 * x * x / beta if abs(x) < beta else abs(x) - 0.5 * beta


def _py_pinball(p: float, y: float, q: float) -> float:
    e = y - p
    return q * e if e >= 0 else (q - 1) * e


def _mean(xs):
    xs = list(xs)
    return sum(xs) / len(xs)


HAND = {
    "mbe": lambda p, t: _mean(a - b for a, b in zip(p, t)),
    "mae": lambda p, t: _mean(abs(a - b) for a, b in zip(p, t)),
    "mse": lambda p, t: _mean((a - b) ** 2 for a, b in zip(p, t)),
    "rmse": lambda p, t: math.sqrt(_mean((a - b) ** 2 for a, b in zip(p, t))),
    "rmsle": lambda p, t: math.sqrt(_mean((math.log(1 + a) - math.log(1 + b)) ** 2 for a, b in zip(p, t))),
    "huber": lambda p, t: _mean(_py_huber(a - b, 1.0) for a, b in zip(p, t)),
    "smooth_l1": lambda p, t: _mean(_py_smooth_l1(a - b, 1.0) for a, b in zip(p, t)),
    "balanced_l1": lambda p, t: _mean(_py_balanced_l1(a - b) for a, b in zip(p, t)),
    "log_cosh": lambda p, t: _mean(math.log(math.cosh(a - b)) for a, b in zip(p, t)),
    "quantile": lambda p, t: _mean(_py_pinball(a, b, 0.5) for a, b in zip(p, t)),
}


@pytest.mark.parametrize("name", NAMES)
def test_hand_computed_value(name):
    got = losses.build(name)(_t(PRED), _t(TARGET))
    assert got.item() == pytest.approx(HAND[name](PRED, TARGET), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize(
    ("name", "params", "fn"),
    [
        ("huber", {"delta": 0.3}, lambda x: _py_huber(x, 0.3)),
        ("smooth_l1", {"beta": 0.3}, lambda x: _py_smooth_l1(x, 0.3)),
        ("smooth_l1", {"beta": 0.0}, abs),
        ("balanced_l1", {"alpha": 0.3, "gamma": 1.0, "beta": 2.0}, lambda x: _py_balanced_l1(x, 0.3, 1.0, 2.0)),
    ],
)
def test_hand_computed_with_params(name, params, fn):
    got = losses.build(name, **params)(_t(PRED), _t(TARGET))
    assert got.item() == pytest.approx(_mean(fn(a - b) for a, b in zip(PRED, TARGET)), rel=1e-9)


def test_balanced_l1_is_continuous_with_continuous_gradient_at_beta():
    crit = losses.build("balanced_l1", reduction="none")
    x = _t([1.0 - 1e-7, 1.0 + 1e-7], grad=True)
    y = crit(x, torch.zeros(2, dtype=torch.float64))
    assert y[0].item() == pytest.approx(y[1].item(), abs=1e-6)
    y.sum().backward()
    assert x.grad[0].item() == pytest.approx(x.grad[1].item(), abs=1e-5)  # gamma at the joint
    assert x.grad[1].item() == pytest.approx(1.5)


def test_quantile_many_quantiles_shapes_and_values():
    qs = [0.1, 0.5, 0.9]
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(2, 3, 3, generator=g, dtype=torch.float64), torch.randn(2, 3, generator=g).double()
    crit = losses.build("quantile", quantiles=qs, reduction="none")
    out = crit(pred, target)
    assert out.shape == (2, 3, 3)
    for n in range(2):
        for t in range(3):
            for k, q in enumerate(qs):
                assert out[n, t, k].item() == pytest.approx(_py_pinball(pred[n, t, k].item(), target[n, t].item(), q))
    assert losses.build("quantile", quantiles=qs)(pred, target).item() == pytest.approx(out.mean().item())
    with pytest.raises(LossInputError, match=r"quantile.*\(N,T,Q\)"):
        crit(pred, target.unsqueeze(-1))
    with pytest.raises(LossInputError, match="quantile"):
        crit(pred[..., :2], target)
    with pytest.raises(losses.LossConfigError):
        losses.build("quantile", quantiles=[0.5, 1.0])


def test_quantile_median_is_half_mae():
    p, t = _t(PRED), _t(TARGET)
    assert losses.build("quantile", quantiles=0.5)(p, t).item() == pytest.approx(0.5 * F.l1_loss(p, t).item())


# --------------------------------------------------------------------------- reference libraries


@pytest.mark.parametrize(
    ("name", "params", "reference"),
    [
        ("mae", {}, lambda p, t: F.l1_loss(p, t)),
        ("mse", {}, lambda p, t: F.mse_loss(p, t)),
        ("huber", {"delta": 0.7}, lambda p, t: F.huber_loss(p, t, delta=0.7)),
        ("smooth_l1", {"beta": 0.7}, lambda p, t: F.smooth_l1_loss(p, t, beta=0.7)),
        ("mae", {}, tmf.mean_absolute_error),
        ("mse", {}, tmf.mean_squared_error),
        ("rmse", {}, lambda p, t: tmf.mean_squared_error(p, t, squared=False)),
        ("rmsle", {}, lambda p, t: tmf.mean_squared_log_error(p, t).sqrt()),
        ("log_cosh", {}, tmf.log_cosh_error),
    ],
)
def test_matches_reference(name, params, reference):
    g = torch.Generator().manual_seed(1)
    p, t = torch.rand(64, 3, generator=g) * 4, torch.rand(64, 3, generator=g) * 4
    if name == "log_cosh":  # torchmetrics' log_cosh_error takes (N,) or (N, outputs) and averages outputs
        p, t = p[:, 0], t[:, 0]
    assert losses.build(name, **params)(p, t).item() == pytest.approx(reference(p, t).item(), rel=1e-5)


def test_huber_is_delta_times_smooth_l1():
    g = torch.Generator().manual_seed(2)
    p, t = torch.randn(50, generator=g).double() * 3, torch.randn(50, generator=g).double()
    h = losses.build("huber", delta=0.4)(p, t)
    s = losses.build("smooth_l1", beta=0.4)(p, t)
    assert h.item() == pytest.approx(0.4 * s.item(), rel=1e-12)


# --------------------------------------------------------------------------- generic properties


def _params(name):
    return {"quantile": {"quantiles": 0.3}}.get(name, {})


@pytest.mark.parametrize("name", NAMES)
def test_gradcheck_float64(name):
    g = torch.Generator().manual_seed(3)
    p = (torch.rand(4, 3, generator=g, dtype=torch.float64) * 2).requires_grad_(True)
    t = torch.rand(4, 3, generator=g, dtype=torch.float64) * 2
    crit = losses.build(name, **_params(name))
    assert torch.autograd.gradcheck(lambda x: crit(x, t), (p,))


@pytest.mark.parametrize("name", NAMES)
def test_reductions(name):
    p, t = _t([PRED, TARGET]), _t([TARGET, PRED])
    mean = losses.build(name, reduction="mean")(p, t)
    total = losses.build(name, reduction="sum")(p, t)
    none = losses.build(name, reduction="none")(p, t)
    assert mean.dim() == 0 and total.dim() == 0
    if name in ("rmse", "rmsle"):  # none: one RMSE per sample; mean: RMSE over everything
        assert none.shape == (2,)
        assert total.item() == pytest.approx(none.sum().item())
        sq = (p - t) ** 2 if name == "rmse" else (torch.log1p(p) - torch.log1p(t)) ** 2
        assert none[0].item() == pytest.approx(math.sqrt(sq[0].mean().item()))
        assert mean.item() == pytest.approx(math.sqrt(sq.mean().item()))
    else:
        assert none.shape == p.shape
        assert total.item() == pytest.approx(none.sum().item())
        assert mean.item() == pytest.approx(none.mean().item())
    with pytest.raises(losses.LossConfigError):
        losses.build(name, reduction="avg")


@pytest.mark.parametrize("name", NAMES)
def test_weight_gives_weighted_mean(name):
    p, t = _t([PRED, TARGET]), _t([TARGET, PRED])
    w = torch.tensor([[1.0], [0.0]], dtype=torch.float64)
    crit = losses.build(name, **_params(name))
    assert crit(p, t, weight=w).item() == pytest.approx(crit(p[:1], t[:1]).item(), rel=1e-9)
    zero = crit(p.clone().requires_grad_(True), t, weight=torch.zeros_like(p))
    assert torch.isfinite(zero)


@pytest.mark.parametrize("name", NAMES)
def test_perfect_prediction_is_minimum_with_finite_gradient(name):
    t = _t([[0.3, -0.2, 2.0], [1.0, 0.0, 5.0]])
    p = t.clone().requires_grad_(True)
    crit = losses.build(name, **_params(name))
    value = crit(p, t)
    assert value.item() == pytest.approx(0.0, abs=1e-6)
    value.backward()
    assert torch.isfinite(p.grad).all()
    if name not in ("mbe", "quantile"):  # mbe: gradient 1/n everywhere; pinball: a subgradient in [-q, 1-q]
        assert p.grad.abs().max().item() < 1e-5
    if name != "mbe":
        noisy = crit(t + 0.1, t)
        assert noisy.item() > value.item()


@pytest.mark.parametrize("name", NAMES)
def test_empty_input_is_finite(name):
    p = torch.zeros(0, 3, requires_grad=True)
    value = losses.build(name, **_params(name))(p, torch.zeros(0, 3))
    assert value.item() == pytest.approx(0.0, abs=1e-5)  # rmse/rmsle: sqrt(eps)
    value.backward()
    assert p.grad.shape == (0, 3)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_with_large_values_are_finite(name, dtype):
    scale = 60000.0  # near fp16's max; squared it overflows fp16 but not the float32 the loss computes in
    g = torch.Generator().manual_seed(4)
    p = (torch.rand(8, 4, generator=g) * scale).to(dtype).requires_grad_(True)
    t = (torch.rand(8, 4, generator=g) * scale).to(dtype)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = losses.build(name, **_params(name))(p, t)
    assert value.dtype == torch.float32 and torch.isfinite(value)
    value.backward()
    assert torch.isfinite(p.grad.float()).all()


def test_log_cosh_does_not_overflow_and_is_abs_minus_log2_far_out():
    x = _t([1000.0, -1000.0], grad=True)
    y = losses.build("log_cosh", reduction="none")(x, torch.zeros(2, dtype=torch.float64))
    assert y.tolist() == pytest.approx([1000.0 - math.log(2.0)] * 2)
    y.sum().backward()
    assert x.grad.tolist() == pytest.approx([1.0, -1.0])  # tanh(+-1000)


def test_rmse_gradient_at_zero_error_is_finite():
    p = torch.ones(5, requires_grad=True)
    losses.build("rmse")(p, torch.ones(5)).backward()
    assert torch.isfinite(p.grad).all()


def test_rmsle_rejects_values_at_or_below_minus_one():
    crit = losses.build("rmsle")
    with pytest.raises(LossInputError, match=r"rmsle.*> -1.*pred"):
        crit(torch.tensor([-1.0, 0.0]), torch.tensor([0.0, 0.0]))
    with pytest.raises(LossInputError, match="target"):
        crit(torch.tensor([0.0, 0.0]), torch.tensor([-2.0, 0.0]))


@pytest.mark.parametrize("name", [n for n in NAMES if n != "quantile"])
def test_shape_mismatch_names_the_loss(name):
    with pytest.raises(LossInputError, match=rf"{name}\(pred, target\).*\(4, 3\).*\(4,\)"):
        losses.build(name)(torch.zeros(4, 3), torch.zeros(4))


@pytest.mark.parametrize("name", NAMES)
def test_build_forms_and_info(name):
    by_name = losses.build(name)
    by_dict = losses.build({"name": name, "params": {"reduction": "sum"}})
    assert type(by_name) is type(by_dict) and by_dict.reduction == "sum"
    card = losses.info(name)
    assert card.family == "regression" and card.formula and card.reference and card.summary
    assert name in losses.available(family="regression")


def test_aliases_and_detection_reuse():
    assert type(losses.build("l1")) is type(losses.build("mae"))
    assert type(losses.build("l2")) is type(losses.build("mse"))
    for name in ("smooth_l1", "balanced_l1"):
        assert name in losses.available(task="detection")
    deltas = torch.randn(10, 4)
    assert torch.isfinite(losses.build("balanced_l1")(deltas, torch.zeros(10, 4)))


def test_mbe_is_signed():
    crit = losses.build("mbe")
    assert crit(torch.tensor([2.0, 2.0]), torch.zeros(2)).item() == 2.0
    assert crit(torch.zeros(2), torch.tensor([2.0, 2.0])).item() == -2.0


# --------------------------------------------------------------------------- adaptive_robust (Barron, CVPR 2019)

# Z(alpha) = int exp(-rho(x, alpha, 1)) dx in closed form: Gaussian, pseudo-Huber (a Bessel K_1 integral), Cauchy
PARTITION = {2.0: math.sqrt(2 * math.pi), 1.0: 2 * math.e * scipy.special.k1(1.0), 0.0: math.pi * math.sqrt(2)}


def _py_rho(x: float, alpha: float, c: float) -> float:
    z = (x / c) ** 2
    closed = {2.0: z / 2, 1.0: math.sqrt(z + 1) - 1, 0.0: math.log(z / 2 + 1), -2.0: 2 * z / (z + 4)}
    if alpha in closed:
        return closed[alpha]
    return abs(alpha - 2) / alpha * ((z / abs(alpha - 2) + 1) ** (alpha / 2) - 1)


def _py_log_partition(alpha: float) -> float:
    """log of 2 int_0^inf exp(-rho(x)) dx by QUADPACK, in u = log x (the Cauchy-like tails become exponential)."""
    density = lambda u: math.exp(u - _py_rho(math.exp(u), alpha, 1.0))  # noqa: E731
    pieces = [(-60.0, 0.0), (0.0, 10.0), (10.0, 80.0)]
    return math.log(2 * sum(scipy.integrate.quad(density, a, b, epsabs=1e-15, epsrel=1e-13, limit=500)[0]
                            for a, b in pieces))


@pytest.mark.parametrize("alpha", [2.0, 1.0, 0.0, -2.0])
def test_adaptive_robust_equals_the_closed_forms(alpha):
    x, c = [0.5, -1.0, 3.0, 0.0], 2.0
    crit = losses.build("adaptive_robust", alpha=alpha, scale=c, reduction="none")
    got = crit(_t(x), _t([0.0] * 4))
    log_norm = math.log(c) + math.log(PARTITION[alpha]) if alpha >= 0 else 0.0  # -2: improper, rho alone
    assert got.tolist() == pytest.approx([_py_rho(v, alpha, c) + log_norm for v in x], rel=1e-6, abs=1e-7)
    # the functional rho at and next to the removable singularities alpha = 0, 2
    assert float(general_robust(_t([3.0]), alpha, c)) == pytest.approx(_py_rho(3.0, alpha, c), rel=1e-12)
    if alpha in (0.0, 2.0):
        near = float(general_robust(_t([3.0]), alpha + 1e-7, c))
        assert near == pytest.approx(_py_rho(3.0, alpha, c), rel=1e-5)


def test_adaptive_robust_log_partition_table_matches_numerical_integration():
    table, slopes = _log_partition_table()
    for alpha, z in PARTITION.items():  # knots: the closed forms
        assert float(log_partition(_t(alpha), table, slopes)) == pytest.approx(math.log(z), abs=1e-11)
    # between knots; next to 0 and 2 (log Z's slope is infinite at 2) the interpolation is less exact
    cases = [(0.013, 1e-6, 1e-4), (0.37, 1e-8, 1e-6), (1.2345, 1e-8, 1e-6), (1.999, 1e-6, 1e-3), (2.0003, 1e-6, 1e-3),
             (3.3, 1e-8, 1e-6)]  # (alpha, value tolerance, slope tolerance)
    for alpha, tolerance, slope_tolerance in cases:
        a = _t(alpha, grad=True)
        value = log_partition(a, table, slopes)
        assert value.item() == pytest.approx(_py_log_partition(alpha), abs=tolerance)
        (slope,) = torch.autograd.grad(value, a)
        h = 1e-6 if abs(alpha - 2) < 0.01 else 1e-4
        numeric = (_py_log_partition(alpha + h) - _py_log_partition(alpha - h)) / (2 * h)
        assert float(slope) == pytest.approx(numeric, abs=slope_tolerance)


def test_adaptive_robust_gradcheck_float64():
    crit = losses.build("adaptive_robust").double()
    g = torch.Generator().manual_seed(5)
    p = (torch.randn(4, 3, generator=g, dtype=torch.float64) * 2).requires_grad_(True)
    t = torch.randn(4, 3, generator=g, dtype=torch.float64)
    alpha = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)  # latent: alpha ~ 1.15
    scale = torch.tensor(-0.2, dtype=torch.float64, requires_grad=True)

    def loss(pred, latent_alpha, latent_scale):
        params = {"latent_alpha": latent_alpha, "latent_scale": latent_scale}
        return torch.func.functional_call(crit, params, (pred, t))

    assert torch.autograd.gradcheck(loss, (p, alpha, scale))
    fixed = losses.build("adaptive_robust", alpha=-2.0, scale=0.5).double()
    assert torch.autograd.gradcheck(lambda x: fixed(x, t), (p,))


def test_adaptive_robust_trains_alpha_down_on_heavy_tails_and_up_on_gaussian_noise():
    g = torch.Generator().manual_seed(0)
    cauchy = torch.tan(math.pi * (torch.rand(4000, generator=g) - 0.5))
    gaussian = torch.randn(4000, generator=g)
    learned = {}
    for kind, residuals in (("cauchy", cauchy), ("gaussian", gaussian)):
        crit = losses.build("adaptive_robust")  # alpha starts at 1 (pseudo-Huber), scale at 1
        optimizer = torch.optim.Adam(crit.parameters(), lr=0.05)
        for _ in range(60):
            optimizer.zero_grad()
            crit(residuals, torch.zeros_like(residuals)).backward()
            optimizer.step()
        learned[kind] = float(crit.alpha().detach()), float(crit.scale().detach())
    assert learned["cauchy"][0] < 0.5  # heavy tails: towards Cauchy (alpha = 0)
    assert learned["gaussian"][0] > 1.5  # Gaussian noise: towards L2 (alpha = 2)


def test_adaptive_robust_reductions_weight_and_bad_parameters():
    crit = losses.build("adaptive_robust", reduction="none")
    p, t = _t([PRED, TARGET]), _t([TARGET, PRED])
    none = crit(p, t)
    assert none.shape == p.shape
    assert losses.build("adaptive_robust", reduction="sum")(p, t).item() == pytest.approx(none.sum().item())
    assert losses.build("adaptive_robust")(p, t).item() == pytest.approx(none.mean().item())
    w = torch.tensor([[1.0], [0.0]], dtype=torch.float64)
    assert losses.build("adaptive_robust")(p, t, weight=w).item() == pytest.approx(none[0].mean().item())
    for params, message in [({"alpha_lo": -0.5}, "0 <= alpha_lo < alpha_hi <= 4"), ({"alpha": 5.0}, "alpha must be"),
                            ({"alpha": -2.0}, "set scale"), ({"scale_init": 0.0}, "0 < scale_lo < scale_init"),
                            ({"alpha_init": 3.0}, "alpha_init must lie")]:
        with pytest.raises(losses.LossConfigError, match=message):
            losses.build("adaptive_robust", **params)

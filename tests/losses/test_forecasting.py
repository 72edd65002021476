"""Forecasting losses: hand-computed values, torch / torchmetrics / torch.distributions equality, CRPS against
numeric integration, float64 gradcheck, the MASE scale, non-crossing quantiles, declarations, AMP."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torchmetrics.functional as tmf
from scipy import integrate, stats

import losses
from losses import LossInputError
from losses.forecasting import (
    DEFAULT_QUANTILES,
    HEAD_PARAMETERS,
    crps_gaussian,
    crps_sample,
    monotone_quantiles,
    naive_scale,
    seasonal_naive,
)
from losses.regression import Quantile

NAMES = [
    "mape",
    "smape",
    "wape",
    "mase",
    "rmsse",
    "gaussian_nll",
    "student_t_nll",
    "poisson_nll",
    "negative_binomial_nll",
    "crps_gaussian",
    "crps_sample",
    "pinball",
    "huber_quantile",
    "temporal_consistency",
    "freq_mse",
]


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _inputs(name: str, dtype=torch.float64, seed: int = 0, n: int = 3, t: int = 4) -> dict[str, torch.Tensor]:
    """Named inputs for one loss (only the ones it declares are used)."""
    g = _gen(seed)
    target = torch.rand(n, t, generator=g, dtype=dtype) * 3 + 0.5
    if name in ("poisson_nll", "negative_binomial_nll"):
        target = torch.randint(0, 6, (n, t), generator=g).to(dtype)
    rate = torch.rand(n, t, generator=g, dtype=dtype) * 3 + 0.2
    return {
        "pred": torch.rand(n, t, generator=g, dtype=dtype) * 3 + 0.5,
        "target": target,
        "scale": torch.rand(n, generator=g, dtype=dtype) + 0.5,
        "sq_scale": torch.rand(n, generator=g, dtype=dtype) + 0.5,
        "loc": torch.randn(n, t, generator=g, dtype=dtype),
        "sigma": torch.rand(n, t, generator=g, dtype=dtype) + 0.3,
        "var": torch.rand(n, t, generator=g, dtype=dtype) + 0.3,
        "df": torch.rand(n, t, generator=g, dtype=dtype) * 5 + 1.5,
        "rate": rate,
        "log_rate": rate.log(),
        "alpha": torch.rand(n, t, generator=g, dtype=dtype) + 0.1,
        "quantiles": torch.randn(n, t, len(DEFAULT_QUANTILES), generator=g, dtype=dtype).sort(-1).values + 2,
        "samples": torch.randn(n, t, 16, generator=g, dtype=dtype) + 2,
    }


def _call_names(crit) -> tuple[str, ...]:
    return crit.INPUTS or ("pred", "target")


def _args(name: str, crit, **kwargs) -> tuple[torch.Tensor, ...]:
    named = _inputs(name, **kwargs)
    return tuple(named[k] for k in _call_names(crit))


# --------------------------------------------------------------------------- hand-computed values


def _py_crps_normal(mu: float, s: float, y: float) -> float:
    z = (y - mu) / s
    phi = math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    cdf = 0.5 * (1 + math.erf(z / math.sqrt(2)))
    return s * (z * (2 * cdf - 1) + 2 * phi - 1 / math.sqrt(math.pi))


HAND = [
    ("mape", {}, ([2.0, 1.0], [4.0, 0.5]), (0.5 + 1.0) / 2),
    ("smape", {}, ([2.0, 1.0], [4.0, 3.0]), (2 * 2 / 6 + 2 * 2 / 4) / 2),
    ("smape", {}, ([0.0], [0.0]), 0.0),  # both zero: 0, not NaN
    ("wape", {}, ([[2.0, 1.0], [1.0, 1.0]], [[4.0, 0.0], [2.0, 2.0]]), ((2 + 1) / 4 + 2 / 4) / 2),
    ("mase", {}, ([[1.0, 2.0], [0.0, 0.0]], [[2.0, 4.0], [1.0, 1.0]], [2.0, 0.5]), ((1 + 2) / 2 / 2 + 1 / 0.5) / 2),
    (
        "rmsse",
        {},
        ([[1.0, 3.0], [0.0, 0.0]], [[2.0, 5.0], [1.0, 1.0]], [1.0, 4.0]),
        (math.sqrt((1 + 4) / 2 / 1) + math.sqrt(1 / 4)) / 2,
    ),
    ("gaussian_nll", {}, ([1.0, 0.0], [2.0, 0.0], [4.0, 0.5]), (0.5 * (math.log(4) + 1 / 4) + 0.5 * math.log(0.5)) / 2),
    ("gaussian_nll", {"full": True}, ([1.0], [2.0], [4.0]), 0.5 * (math.log(4) + 1 / 4) + 0.5 * math.log(2 * math.pi)),
    ("student_t_nll", {}, ([0.0], [1.0], [2.0], [3.0]), -stats.t.logpdf(1.0, df=3.0, loc=0.0, scale=2.0)),
    ("student_t_nll", {"df": 4.0}, ([0.5], [-1.0], [0.7]), -stats.t.logpdf(-1.0, df=4.0, loc=0.5, scale=0.7)),
    ("poisson_nll", {}, ([math.log(2.0)], [3.0]), 2.0 - 3.0 * math.log(2.0)),
    ("poisson_nll", {"log_input": False}, ([2.0], [3.0]), 2.0 - 3.0 * math.log(2.0 + 1e-8)),
    (
        "negative_binomial_nll",
        {},
        ([2.0], [3.0], [0.5]),
        -stats.nbinom.logpmf(3, 1 / 0.5, 1 / (1 + 0.5 * 2.0)),
    ),  # scipy: n = 1/alpha, p = 1/(1 + alpha mu)
    (
        "crps_gaussian",
        {},
        ([0.3, -1.0], [1.2, -1.0], [0.8, 2.0]),
        (_py_crps_normal(0.3, 0.8, 1.2) + _py_crps_normal(-1.0, 2.0, -1.0)) / 2,
    ),
    ("crps_sample", {}, ([[0.0, 1.0, 4.0]], [2.0]), (2 + 1 + 2) / 3 - (2 * (1 + 4 + 3)) / (2 * 9)),
    ("crps_sample", {"fair": True}, ([[0.0, 1.0, 4.0]], [2.0]), (2 + 1 + 2) / 3 - (2 * (1 + 4 + 3)) / (2 * 6)),
    ("pinball", {"quantiles": [0.1, 0.5, 0.9]}, ([[0.0, 1.0, 3.0]], [2.0]), (0.1 * 2 + 0.5 * 1 + 0.1 * 1) / 3),
    (
        "huber_quantile",
        {"quantiles": [0.2, 0.8], "delta": 1.0},
        ([[0.0, 2.5]], [2.0]),
        (0.2 * (1.0 * (2 - 0.5)) + 0.2 * 0.5 * 0.25) / 2,
    ),
    ("temporal_consistency", {}, ([[0.0, 1.0, 3.0]], [[0.0, 0.0, 0.0]]), (1 + 4) / 2),
    ("temporal_consistency", {}, ([[0.0, 1.0, 3.0]], [[1.0, 2.0, 4.0]]), 0.0),  # same shape, shifted level
    ("temporal_consistency", {"match_target": False}, ([[0.0, 1.0, 3.0]], [[9.0, 9.0, 9.0]]), (1 + 4) / 2),
]


@pytest.mark.parametrize(("name", "params", "args", "expected"), HAND, ids=[f"{h[0]}-{i}" for i, h in enumerate(HAND)])
def test_hand_computed_value(name, params, args, expected):
    tensors = tuple(torch.tensor(a, dtype=torch.float64) for a in args)
    got = losses.build(name, **params)(*tensors)
    rel = 1e-7 if "quantile" in name or name == "pinball" else 1e-9  # the levels are a float32 buffer
    assert got.item() == pytest.approx(expected, rel=rel, abs=1e-12)


def test_freq_mse_against_a_hand_written_dft():
    g = _gen(1)
    p, y = torch.randn(2, 6, generator=g, dtype=torch.float64), torch.randn(2, 6, generator=g, dtype=torch.float64)
    d = (p - y).numpy()
    n = d.shape[1]
    spectrum = [
        [
            sum(
                d[i, t] * complex(math.cos(2 * math.pi * k * t / n), -math.sin(2 * math.pi * k * t / n))
                for t in range(n)
            )
            / math.sqrt(n)
            for k in range(n // 2 + 1)
        ]
        for i in range(2)
    ]
    l2 = sum(abs(c) ** 2 for row in spectrum for c in row) / (2 * (n // 2 + 1))
    l1 = sum(abs(c) for row in spectrum for c in row) / (2 * (n // 2 + 1))
    assert losses.build("freq_mse")(p, y).item() == pytest.approx(l2, rel=1e-10)
    assert losses.build("freq_mse", norm="l1")(p, y).item() == pytest.approx(l1, rel=1e-10)
    backward = losses.build("freq_mse", fft_norm="backward")(p, y).item()
    assert backward == pytest.approx(l2 * n, rel=1e-10)


# --------------------------------------------------------------------------- reference libraries


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("full", [False, True])
def test_gaussian_nll_equals_torch_value_and_gradient(reduction, full):
    named = _inputs("gaussian_nll")
    var = named["var"].clone()
    var[0, 0] = 1e-9  # below eps: clamped for the value, the gradient passes through as in torch
    ours_in = [named["loc"].clone().requires_grad_(True), var.clone().requires_grad_(True)]
    ref_in = [named["loc"].clone().requires_grad_(True), var.clone().requires_grad_(True)]
    ours = losses.build("gaussian_nll", full=full, reduction=reduction)(ours_in[0], named["target"], ours_in[1])
    ref = torch.nn.GaussianNLLLoss(full=full, reduction=reduction)(ref_in[0], named["target"], ref_in[1])
    torch.testing.assert_close(ours, ref)
    ours.sum().backward()
    ref.sum().backward()
    for a, b in zip(ours_in, ref_in):
        torch.testing.assert_close(a.grad, b.grad)
    with pytest.raises(LossInputError, match="var must be >= 0"):
        losses.build("gaussian_nll")(named["loc"], named["target"], -named["var"])


@pytest.mark.parametrize("log_input", [True, False])
@pytest.mark.parametrize("full", [False, True])
def test_poisson_nll_equals_torch(log_input, full):
    named = _inputs("poisson_nll")
    rate = named["log_rate"] if log_input else named["rate"]
    ours = losses.build("poisson_nll", log_input=log_input, full=full)(rate, named["target"])
    ref = torch.nn.PoissonNLLLoss(log_input=log_input, full=full)(rate, named["target"])
    torch.testing.assert_close(ours, ref)


def test_distribution_nlls_equal_torch_distributions():
    named = _inputs("student_t_nll")
    loc, sigma, df, y = named["loc"], named["sigma"], named["df"], named["target"]
    ref = -torch.distributions.StudentT(df, loc, sigma).log_prob(y)
    torch.testing.assert_close(losses.build("student_t_nll", reduction="none")(loc, y, sigma, df), ref)
    named = _inputs("negative_binomial_nll")
    mu, alpha, counts = named["rate"], named["alpha"], named["target"]
    nb = torch.distributions.NegativeBinomial(total_count=1 / alpha, probs=alpha * mu / (1 + alpha * mu))
    assert torch.allclose(nb.mean, mu)
    got = losses.build("negative_binomial_nll", reduction="none")(mu, counts, alpha)
    torch.testing.assert_close(got, -nb.log_prob(counts))


@pytest.mark.parametrize(
    ("name", "reference"),
    [
        ("mape", tmf.mean_absolute_percentage_error),
        ("smape", tmf.symmetric_mean_absolute_percentage_error),
        ("wape", tmf.weighted_mean_absolute_percentage_error),
    ],
)
def test_percentage_errors_equal_torchmetrics(name, reference):
    named = _inputs(name, dtype=torch.float32)
    pred, target = named["pred"], named["target"]
    target[0, 0] = 0.0  # the eps floor agrees too
    if name == "wape":  # one value per window: compare window by window
        got = losses.build(name, reduction="none")(pred, target)
        for i in range(pred.shape[0]):
            torch.testing.assert_close(got[i], reference(pred[i], target[i]))
    else:
        torch.testing.assert_close(losses.build(name)(pred, target), reference(pred, target))


@pytest.mark.parametrize(("mu", "sigma", "y"), [(0.0, 1.0, 0.0), (0.3, 0.5, 1.7), (-2.0, 3.0, 4.0), (1.0, 0.1, 0.95)])
def test_crps_gaussian_closed_form_equals_numeric_integration(mu, sigma, y):
    # CRPS(F, y) = int (F(x) - 1[x >= y])^2 dx, split at y
    below = integrate.quad(lambda x: stats.norm.cdf(x, mu, sigma) ** 2, -math.inf, y)[0]
    above = integrate.quad(lambda x: stats.norm.sf(x, mu, sigma) ** 2, y, math.inf)[0]
    t = lambda v: torch.tensor([v], dtype=torch.float64)  # noqa: E731
    assert crps_gaussian(t(mu), t(sigma), t(y)).item() == pytest.approx(below + above, rel=1e-8, abs=1e-10)


def test_crps_sample_equals_brute_force_pairs_and_approaches_the_closed_form():
    g = _gen(2)
    samples, y = torch.randn(3, 5, 7, generator=g, dtype=torch.float64), torch.randn(3, 5, generator=g).double()
    pairs = (samples.unsqueeze(-1) - samples.unsqueeze(-2)).abs().sum((-1, -2))
    spread = (samples - y.unsqueeze(-1)).abs().mean(-1)
    torch.testing.assert_close(crps_sample(samples, y), spread - pairs / (2 * 49))
    torch.testing.assert_close(crps_sample(samples, y, fair=True), spread - pairs / (2 * 42))
    draws = torch.randn(1, 20000, generator=g, dtype=torch.float64) * 1.5 + 0.4
    sampled = crps_sample(draws, torch.tensor([1.0], dtype=torch.float64), fair=True).item()
    exact = _py_crps_normal(0.4, 1.5, 1.0)
    assert sampled == pytest.approx(exact, rel=0.02)


def test_pinball_is_the_regression_quantile_loss_with_forecasting_declarations():
    crit = losses.build("pinball", quantiles=[0.1, 0.5, 0.9])
    assert isinstance(crit, Quantile) and crit.levels == pytest.approx((0.1, 0.5, 0.9))
    assert crit.INPUTS == ("quantiles", "target") and crit.OUTPUTS == ("quantiles",)
    named = _inputs("pinball")
    q = named["quantiles"][..., :3]
    reference = losses.build("quantile", quantiles=[0.1, 0.5, 0.9])
    torch.testing.assert_close(crit(q, named["target"]), reference(q, named["target"]))
    assert losses.build("pinball").levels == pytest.approx(DEFAULT_QUANTILES)
    assert losses.build("pinball", quantiles=0.5).quantiles.shape == (1,)  # always a Q dim
    for bad in ([0.9, 0.1], [0.5, 0.5], [0.0, 0.5]):
        with pytest.raises(losses.LossConfigError, match="quantiles"):
            losses.build("pinball", quantiles=bad)


def test_huber_quantile_tends_to_pinball_far_from_the_target():
    named = _inputs("huber_quantile")
    q, y = named["quantiles"], named["target"] + 100.0  # every error far beyond delta
    delta = 0.01
    hq = losses.build("huber_quantile", delta=delta)(q, y)
    pb = losses.build("pinball")(q, y)
    assert (hq / delta).item() == pytest.approx(pb.item(), rel=1e-3)


# --------------------------------------------------------------------------- gradients and reductions


@pytest.mark.parametrize("name", NAMES)
def test_gradcheck_float64(name):
    crit = losses.build(name)
    args = list(_args(name, crit))
    names = _call_names(crit)
    # differentiate with respect to every forecast input (not the target, not the scales)
    leaves = [i for i, n in enumerate(names) if n not in ("target", "scale", "sq_scale")]
    if name == "crps_sample":  # distinct samples: sort is differentiable away from ties
        args[0] = args[0] + torch.arange(args[0].shape[-1], dtype=torch.float64) * 1e-3

    def f(*xs):
        full = list(args)
        for i, x in zip(leaves, xs):
            full[i] = x
        return crit(*full)

    assert torch.autograd.gradcheck(f, tuple(args[i].clone().requires_grad_(True) for i in leaves))


@pytest.mark.parametrize("name", NAMES)
def test_reductions_agree(name):
    args = _args(name, losses.build(name))
    mean, total, none = (losses.build(name, reduction=r)(*args) for r in ("mean", "sum", "none"))
    assert mean.dim() == 0 and total.dim() == 0
    torch.testing.assert_close(none.sum(), total)
    torch.testing.assert_close(none.mean(), mean)
    per_window = name in ("wape", "rmsse")
    assert none.shape[0] == 3 and (none.dim() == 1) == per_window
    with pytest.raises(losses.LossConfigError, match="reduction"):
        losses.build(name, reduction="avg")


@pytest.mark.parametrize("name", NAMES)
def test_bf16_autocast_and_half_inputs_compute_in_float32(name):
    crit = losses.build(name)
    args = tuple(a.to(torch.bfloat16) for a in _args(name, crit, dtype=torch.float32))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = crit(*args)
    assert value.dtype == torch.float32 and torch.isfinite(value)
    torch.testing.assert_close(value, crit(*(a.float() for a in args)), rtol=1e-5, atol=1e-6)
    half = [a.half().requires_grad_(i == 0) for i, a in enumerate(args)]
    value = crit(*half)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(half[0].grad).all()


@pytest.mark.parametrize("name", NAMES)
def test_perfect_or_confident_forecast_scores_better(name):
    crit = losses.build(name)
    named = _inputs(name)
    good = dict(named, pred=named["target"], loc=named["target"], rate=named["target"].clamp_min(0.1))
    good["log_rate"] = good["rate"].log()
    good["quantiles"] = named["target"].unsqueeze(-1).expand_as(named["quantiles"]).clone()
    good["samples"] = named["target"].unsqueeze(-1).expand_as(named["samples"]).clone()
    bad = dict(
        good,
        pred=good["pred"] + 1.0,
        loc=good["loc"] + 1.0,
        rate=good["rate"] + 2.0,
        quantiles=good["quantiles"] + 1.0,
        samples=good["samples"] + 1.0,
    )
    bad["log_rate"] = bad["rate"].log()
    names = _call_names(crit)
    assert crit(*(good[k] for k in names)) < crit(*(bad[k] for k in names))


# --------------------------------------------------------------------------- the MASE scale


def test_naive_scale_and_seasonal_naive_by_hand():
    context = torch.tensor([[1.0, 2.0, 4.0, 3.0, 5.0, 9.0]])
    assert naive_scale(context, 1).item() == pytest.approx((1 + 2 + 1 + 2 + 4) / 5)
    assert naive_scale(context, 2).item() == pytest.approx((3 + 1 + 1 + 6) / 4)
    assert naive_scale(context, 2, power=2).item() == pytest.approx((9 + 1 + 1 + 36) / 4)
    assert seasonal_naive(context, 5, 2).tolist() == [[5.0, 9.0, 5.0, 9.0, 5.0]]
    assert seasonal_naive(context, 3, 1).tolist() == [[9.0, 9.0, 9.0]]  # naive: the last value
    assert seasonal_naive(context, 4, 3).tolist() == [[3.0, 5.0, 9.0, 3.0]]
    with pytest.raises(LossInputError, match="season"):
        naive_scale(context, 6)


@pytest.mark.parametrize("name", ["mase", "rmsse"])
def test_zero_scale_warns_and_is_floored_never_a_silent_zero(name):
    crit = losses.build(name, eps=1e-3)
    pred, target = torch.tensor([[1.0, 1.0], [0.0, 2.0]]), torch.tensor([[1.5, 1.0], [0.0, 1.0]])
    scale = naive_scale(torch.tensor([[3.0, 3.0, 3.0], [0.0, 1.0, 2.0]]), 1, power=1 if name == "mase" else 2)
    assert scale[0] == 0
    with pytest.warns(RuntimeWarning, match="below eps"):
        value = crit(pred, target, scale)
    # the constant window's error over eps dominates: mase 0.25 / 1e-3, rmsse sqrt(0.125 / 1e-3)
    assert torch.isfinite(value) and value.item() > (100 if name == "mase" else 5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        crit(pred, target, scale + 1.0)  # no warning on positive scales


def test_mase_divides_each_window_by_its_own_scale():
    pred, target = torch.zeros(2, 3), torch.ones(2, 3)
    out = losses.build("mase", reduction="none")(pred, target, torch.tensor([1.0, 4.0]))
    assert out.tolist() == [[1.0] * 3, [0.25] * 3]


# --------------------------------------------------------------------------- non-crossing quantiles


@pytest.mark.parametrize("seed", range(5))
def test_monotone_quantiles_never_cross_on_random_heads(seed):
    g = _gen(seed)
    raw = torch.randn(64, 12, 7, generator=g) * 10 ** torch.randint(-3, 4, (64, 12, 1), generator=g)
    raw[0, 0] = torch.tensor([1e6, -1e6, 50.0, 0.0, -50.0, 1e6, -1e6])  # extremes: no NaN, no crossing
    for median in (0, 3, 6):
        q = monotone_quantiles(raw, median)
        assert torch.isfinite(q).all()
        assert (q.diff(dim=-1) >= 0).all()
        torch.testing.assert_close(q[..., median], raw[..., median])


def test_monotone_quantiles_gradient_is_finite_and_gradcheck():
    raw = torch.randn(3, 4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: monotone_quantiles(x, 2), (raw,))


# --------------------------------------------------------------------------- declarations and catalogue


def test_declared_inputs_and_head_outputs():
    assert losses.build("gaussian_nll").INPUTS == ("loc", "target", "var")
    assert losses.build("crps_gaussian").OUTPUTS == ("loc", "sigma")
    assert losses.build("student_t_nll").OUTPUTS == ("loc", "sigma", "df")
    fixed = losses.build("student_t_nll", df=5.0)
    assert fixed.OUTPUTS == ("loc", "sigma") and fixed.INPUTS == ("loc", "target", "sigma")
    assert losses.build("poisson_nll").INPUTS == ("log_rate", "target")
    assert losses.build("poisson_nll", log_input=False).INPUTS == ("rate", "target")
    assert losses.build("crps_sample", distribution="student_t").OUTPUTS == ("loc", "sigma", "df")
    assert losses.build("mase").INPUTS == ("pred", "target", "scale") and losses.build("mase").OUTPUTS == ()
    for name in NAMES:
        assert set(losses.build(name).OUTPUTS) <= {*HEAD_PARAMETERS, "quantiles"}


def test_composite_passes_named_inputs_to_each_term():
    slot = losses.Slot(("forecasting", "regression"), inputs=("pred", "target"), extra_inputs=("scale", "loc", "var"))
    crit = losses.build_slot("mae + mase + 0.5*gaussian_nll", slot, where="loss.forecast")
    pred, target, scale = torch.zeros(2, 3), torch.ones(2, 3), torch.tensor([2.0, 0.5])
    total, terms = crit.forward_terms(pred, target, scale=scale, loc=pred, var=torch.ones(2, 3))
    assert terms["mae"].item() == 1.0 and terms["mase"].item() == pytest.approx((0.5 + 2.0) / 2)
    assert terms["gaussian_nll"].item() == pytest.approx(0.5)
    assert total.item() == pytest.approx(1.0 + 1.25 + 0.25)
    with pytest.raises(losses.LossConfigError, match="not provided"):
        losses.build_slot("crps_gaussian", slot, where="loss.forecast")  # sigma is not a slot input here


@pytest.mark.parametrize("name", NAMES)
def test_info_card(name):
    card = losses.info(name)
    assert card.family == "forecasting" and card.formula and card.reference and card.shape.get("output")
    assert name in losses.available(family="forecasting")
    assert set(card.parameters) == set(card.args)


def test_wrong_shapes_name_the_loss():
    with pytest.raises(LossInputError, match=r"mase.*\(2, 3\)"):
        losses.build("mase")(torch.zeros(2, 3), torch.zeros(2), torch.ones(2))
    with pytest.raises(LossInputError, match="crps_sample"):
        losses.build("crps_sample")(torch.zeros(2, 3), torch.zeros(2, 3))
    with pytest.raises(LossInputError, match="sigma must be > 0"):
        losses.build("crps_gaussian")(torch.zeros(2), torch.zeros(2), torch.tensor([1.0, 0.0]))

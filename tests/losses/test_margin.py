"""Margin losses: hand-computed values, sklearn / torch equality, gradcheck, reductions, label conventions,
degenerate inputs, AMP and registry wiring."""

from __future__ import annotations

import math

import pytest
import torch

import losses
from losses import LossInputError

NAMES = ["zero_one", "hinge", "squared_hinge", "smoothed_hinge", "quadratic_smoothed_hinge", "modified_huber",
         "exponential"]
DIFFERENTIABLE = [n for n in NAMES if n != "zero_one"]


def _py(name: str, m: float, gamma: float = 1.0) -> float:
    """Plain-python margin functions, written from the papers."""
    if name == "hinge":
        return max(0.0, 1 - m)
    if name == "squared_hinge":
        return max(0.0, 1 - m) ** 2
    if name == "smoothed_hinge":
        return 0.5 - m if m <= 0 else (0.5 * (1 - m) ** 2 if m < 1 else 0.0)
    if name == "quadratic_smoothed_hinge":
        return max(0.0, 1 - m) ** 2 / (2 * gamma) if m >= 1 - gamma else 1 - gamma / 2 - m
    if name == "modified_huber":
        return max(0.0, 1 - m) ** 2 if m >= -1 else -4 * m
    if name == "exponential":
        return math.exp(-m)
    raise KeyError(name)


SCORES = [2.0, -1.5, 0.3, -0.2, 0.9, -3.0]
LABELS = [1, 1, 0, 0, 1, 0]  # {0, 1}; y = 2 * label - 1


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("labels", ["01", "pm1"])
def test_hand_computed_binary(name, labels):
    y = [2 * v - 1 for v in LABELS]
    target = LABELS if labels == "01" else y
    if name == "zero_one":
        expected = sum((s > 0) != (t > 0) for s, t in zip(SCORES, y)) / len(y)
    else:
        expected = sum(_py(name, s * t) for s, t in zip(SCORES, y)) / len(y)
    got = losses.build(name)(torch.tensor(SCORES, dtype=torch.float64), torch.tensor(target, dtype=torch.float64))
    assert got.item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("gamma", [0.5, 1.0, 2.0, 3.0])
def test_quadratic_smoothed_hinge_gamma(gamma):
    y = [2 * v - 1 for v in LABELS]
    expected = sum(_py("quadratic_smoothed_hinge", s * t, gamma) for s, t in zip(SCORES, y)) / len(y)
    got = losses.build("quadratic_smoothed_hinge", gamma=gamma)(torch.tensor(SCORES, dtype=torch.float64),
                                                                torch.tensor(y, dtype=torch.float64))
    assert got.item() == pytest.approx(expected, rel=1e-12)


def test_special_cases_of_quadratic_smoothed_hinge():
    m = torch.linspace(-4, 3, 57, dtype=torch.float64)
    ones = torch.ones_like(m)
    qsh = losses.build("quadratic_smoothed_hinge", gamma=2.0, reduction="none")
    torch.testing.assert_close(4 * qsh(m, ones), losses.build("modified_huber", reduction="none")(m, ones))
    qsh1 = losses.build("quadratic_smoothed_hinge", gamma=1.0, reduction="none")
    torch.testing.assert_close(qsh1(m, ones), losses.build("smoothed_hinge", reduction="none")(m, ones))
    tiny = losses.build("quadratic_smoothed_hinge", gamma=1e-9, reduction="none")
    torch.testing.assert_close(tiny(m, ones), losses.build("hinge", reduction="none")(m, ones), atol=1e-8, rtol=0)


MC_SCORES = [[2.0, 0.5, -1.0], [0.1, 0.3, 0.2], [-1.0, 2.5, 2.4], [0.0, 0.0, 3.0]]
MC_TARGET = [0, 2, 1, 0]


@pytest.mark.parametrize("name", DIFFERENTIABLE)
def test_hand_computed_multiclass(name):
    cs = ovr = 0.0
    for row, t in zip(MC_SCORES, MC_TARGET):
        cs += _py(name, row[t] - max(v for j, v in enumerate(row) if j != t))
        ovr += sum(_py(name, (1 if j == t else -1) * v) for j, v in enumerate(row))
    x, t = torch.tensor(MC_SCORES, dtype=torch.float64), torch.tensor(MC_TARGET)
    assert losses.build(name)(x, t).item() == pytest.approx(cs / 4, rel=1e-12)
    assert losses.build(name, multiclass="one_vs_rest")(x, t).item() == pytest.approx(ovr / 4, rel=1e-12)


def test_zero_one_multiclass_and_zero_grad():
    x = torch.tensor(MC_SCORES, dtype=torch.float64, requires_grad=True)
    value = losses.build("zero_one")(x, torch.tensor(MC_TARGET))
    assert value.item() == pytest.approx(2 / 4)  # rows 1 (argmax 1 != 2) and 3 (argmax 2 != 0)
    value.backward()
    assert torch.equal(x.grad, torch.zeros_like(x))


# --------------------------------------------------------------------------- reference libraries


def test_hinge_equals_sklearn():
    metrics = pytest.importorskip("sklearn.metrics")
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(50, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 2, (50,), generator=g)
    ref = metrics.hinge_loss(labels.numpy(), scores.numpy())
    assert losses.build("hinge")(scores, labels).item() == pytest.approx(ref, rel=1e-12)
    mc = torch.randn(40, 4, generator=g, dtype=torch.float64)
    t = torch.randint(0, 4, (40,), generator=g)
    ref = metrics.hinge_loss(t.numpy(), mc.numpy(), labels=[0, 1, 2, 3])
    assert losses.build("hinge")(mc, t).item() == pytest.approx(ref, rel=1e-12)
    ref = metrics.zero_one_loss(t.numpy(), mc.argmax(1).numpy())
    assert losses.build("zero_one")(mc, t).item() == pytest.approx(ref, rel=1e-12)


def test_modified_huber_equals_sklearn_sgd():
    sgd = pytest.importorskip("sklearn.linear_model._sgd_fast")
    fn = sgd.ModifiedHuber()
    ms = [-3.0, -1.0, -0.5, 0.0, 0.7, 1.0, 2.0]
    got = losses.build("modified_huber", reduction="none")(torch.tensor(ms, dtype=torch.float64), torch.ones(7))
    assert got.tolist() == pytest.approx([fn.py_loss(m, 1.0) for m in ms], rel=1e-12)
    hinge = sgd.Hinge(1.0)
    got = losses.build("hinge", reduction="none")(torch.tensor(ms, dtype=torch.float64), torch.ones(7))
    assert got.tolist() == pytest.approx([hinge.py_loss(m, 1.0) for m in ms], rel=1e-12)


def test_crammer_singer_vs_multimargin_two_classes():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(20, 2, generator=g, dtype=torch.float64)
    t = torch.randint(0, 2, (20,), generator=g)
    ref = torch.nn.MultiMarginLoss()(x, t)  # Weston-Watkins: sum_{j != y} max(0, 1 - f_y + f_j) / C
    torch.testing.assert_close(losses.build("hinge")(x, t), 2 * ref)
    torch.testing.assert_close(losses.build("squared_hinge")(x, t), 2 * torch.nn.MultiMarginLoss(p=2)(x, t))


# --------------------------------------------------------------------------- generic properties


def _inputs(kind: str, dtype=torch.float64, scale: float = 1.0, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    if kind == "binary":
        return scale * torch.randn(6, generator=g, dtype=dtype), torch.randint(0, 2, (6,), generator=g).to(dtype)
    return scale * torch.randn(5, 3, 2, generator=g, dtype=dtype), torch.randint(0, 3, (5, 2), generator=g)


KINDS = [("binary", "crammer_singer"), ("multiclass", "crammer_singer"), ("multiclass", "one_vs_rest")]


@pytest.mark.parametrize("kind", KINDS, ids=["binary", "cs", "ovr"])
@pytest.mark.parametrize("name", DIFFERENTIABLE)
def test_gradcheck(name, kind):
    x, t = _inputs(kind[0], seed=3)
    crit = losses.build(name, multiclass=kind[1])
    assert torch.autograd.gradcheck(lambda z: crit(z, t), (x.requires_grad_(),))


@pytest.mark.parametrize("kind", KINDS, ids=["binary", "cs", "ovr"])
@pytest.mark.parametrize("name", NAMES)
def test_reductions_and_shapes(name, kind):
    x, t = _inputs(kind[0])
    none = losses.build(name, multiclass=kind[1], reduction="none")(x, t)
    assert none.shape == t.shape
    torch.testing.assert_close(losses.build(name, multiclass=kind[1], reduction="sum")(x, t), none.sum())
    torch.testing.assert_close(losses.build(name, multiclass=kind[1])(x, t), none.mean())


@pytest.mark.parametrize("name", NAMES)
def test_label_conventions_and_column_scores(name):
    x, t01 = _inputs("binary")
    crit = losses.build(name)
    torch.testing.assert_close(crit(x, t01), crit(x, 2 * t01 - 1))
    torch.testing.assert_close(crit(x.unsqueeze(1), t01), crit(x, t01))


@pytest.mark.parametrize("name", NAMES)
def test_perfect_prediction_is_minimum(name):
    t = torch.tensor([1.0, 0.0, 1.0, 0.0], dtype=torch.float64)
    x = 50.0 * (2 * t - 1)
    assert losses.build(name)(x, t).item() == pytest.approx(0.0, abs=1e-20)
    mc = torch.full((3, 4), -50.0, dtype=torch.float64)
    idx = torch.tensor([0, 3, 1])
    mc[torch.arange(3), idx] = 50.0
    assert losses.build(name)(mc, idx).item() == pytest.approx(0.0, abs=1e-20)


@pytest.mark.parametrize("name", NAMES)
def test_degenerate_empty_and_identical(name):
    x = torch.zeros(0, dtype=torch.float64, requires_grad=True)
    value = losses.build(name)(x, torch.zeros(0, dtype=torch.float64))
    value.backward()
    assert value.item() == 0.0
    # identical scores for every class (a tie): finite value and gradient
    mc = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    value = losses.build(name)(mc, torch.tensor([0, 2]))
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(mc.grad).all()


@pytest.mark.parametrize("kind", ["binary", "multiclass"])
@pytest.mark.parametrize("name", NAMES)
def test_amp_large_scores_finite(name, kind, check_low_precision):
    x, t = _inputs(kind, dtype=torch.float32, scale=1e4)
    check_low_precision(losses.build(name), x, t)


def test_exponential_overflow_guard():
    x = torch.tensor([-200.0], requires_grad=True)
    value = losses.build("exponential")(x, torch.tensor([1.0]))
    value.backward()
    assert value.item() == pytest.approx(math.exp(80.0), rel=1e-5) and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("name", NAMES)
def test_registry_build_and_info(name):  # the docstring examples run under --doctest-modules
    crit = losses.build({"name": name, "params": {"multiclass": "one_vs_rest"}})
    assert crit.multiclass == "one_vs_rest"
    card = losses.info(name)
    assert card.family == "margin" and card.formula and card.reference and card.summary


def test_bad_inputs_raise():
    with pytest.raises(LossInputError, match="hinge"):
        losses.build("hinge")(torch.randn(4, 3), torch.rand(4))
    with pytest.raises(ValueError, match="multiclass"):
        losses.build("hinge", multiclass="weston")

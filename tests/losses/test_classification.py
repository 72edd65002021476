"""Classification losses: hand-computed values, torch / torchvision / smp / MONAI equality, gradcheck,
reductions, ignore_index, degenerate inputs, AMP and registry wiring."""

from __future__ import annotations

import doctest
import math

import pytest
import torch
import torch.nn.functional as F

import losses
from losses import LossInputError

# (name, params, mode of the inputs): every registered classification loss in each mode it supports
CASES = [
    ("ce", {}, "multiclass"),
    ("ce", {"mode": "binary"}, "binary"),
    ("ce", {"mode": "multilabel", "label_smoothing": 0.1}, "multilabel"),
    ("bce", {}, "binary"),
    ("bce", {"mode": "multilabel", "pos_weight": [1.0, 2.0, 0.5]}, "multilabel"),
    ("bce", {"mode": "multiclass"}, "multiclass"),
    ("focal", {}, "multiclass"),
    ("focal", {"alpha": [0.2, 0.3, 0.5], "gamma": 1.5}, "multiclass"),
    ("focal", {"mode": "binary"}, "binary"),
    ("focal", {"mode": "multilabel", "gamma": 0.5}, "multilabel"),
    ("sparse_ce", {}, "multiclass"),
    ("label_smoothing_ce", {}, "multiclass"),
    ("label_smoothing_ce", {"mode": "multilabel"}, "multilabel"),
    ("weighted_ce", {}, "multiclass"),
    ("weighted_ce", {"class_weights": [1.0, 2.0, 0.5]}, "multiclass"),
    ("weighted_ce", {"mode": "binary"}, "binary"),
    ("balanced_ce", {}, "binary"),
    ("balanced_ce", {"mode": "multiclass"}, "multiclass"),
    ("ghm_c", {}, "multiclass"),
    ("ghm_c", {"mode": "multilabel", "bins": 5}, "multilabel"),
    ("class_balanced", {"samples_per_class": [50, 10, 2]}, "multiclass"),
    ("class_balanced", {"samples_per_class": [50, 10, 2], "base": "focal"}, "multiclass"),
    ("class_balanced", {"samples_per_class": [30, 5], "base": "sigmoid", "mode": "binary"}, "binary"),
    ("class_balanced", {"samples_per_class": [3, 9, 27], "base": "focal", "mode": "multilabel"}, "multilabel"),
    ("poly1", {}, "multiclass"),
    ("poly1", {"focal": True, "alpha": [0.2, 0.3, 0.5]}, "multiclass"),
    ("poly1", {"mode": "binary", "focal": True}, "binary"),
    ("kl_div", {}, "multiclass"),
    ("kl_div", {"mode": "multilabel", "temperature": 2.0}, "multilabel"),
]
DENSE_IN_MULTICLASS = {"bce", "balanced_ce"}  # sigmoid over the one-hot: element-wise (N, C, *) output
WEIGHTED_MEAN = {"weighted_ce"}  # mean = sum(w l) / sum(w), as F.cross_entropy(weight=...)

C = 3


def _inputs(mode: str, dtype=torch.float64, scale: float = 1.0, seed: int = 0, shape=(2, 4)):
    """Logits and a target for ``mode``: multiclass (N,C,*) + indices, binary (N,1,*) + (N,1,*), multilabel (N,C,*)."""
    g = torch.Generator().manual_seed(seed)
    n, s = shape
    if mode == "multiclass":
        return scale * torch.randn(n, C, s, generator=g, dtype=dtype), torch.randint(0, C, (n, s), generator=g)
    channels = 1 if mode == "binary" else C
    logits = scale * torch.randn(n, channels, s, generator=g, dtype=dtype)
    return logits, (torch.rand(n, channels, s, generator=g) > 0.5).to(dtype)


def _ids(case):
    name, params, mode = case
    return f"{name}-{mode}-{'-'.join(map(str, params))}"


def _build(name, params, **extra):
    return losses.build({"name": name, "params": {**params, **extra}})


# --------------------------------------------------------------------------- plain-python references


def _sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _softmax(row):
    m = max(row)
    e = [math.exp(v - m) for v in row]
    return [v / sum(e) for v in e]


X2 = [[2.0, -1.0, 0.5], [0.0, 1.0, -2.0]]  # 2 samples, 3 classes
Y2 = [0, 2]


def test_ce_hand_value():
    expected = sum(-math.log(_softmax(r)[y]) for r, y in zip(X2, Y2)) / 2
    got = losses.build("ce")(torch.tensor(X2, dtype=torch.float64), torch.tensor(Y2))
    assert got.item() == pytest.approx(expected, rel=1e-12)


def test_ce_hand_value_weights_smoothing_ignore():
    w, ls = [1.0, 2.0, 0.5], 0.3
    x = X2 + [[5.0, 5.0, 5.0]]
    y = Y2 + [-1]
    num = 0.0
    for r, t in zip(X2, Y2):
        p = _softmax(r)
        q = [(1 - ls) * (c == t) + ls / 3 for c in range(3)]  # torch: the smoothing term is also class-weighted
        num += -sum(w[c] * q[c] * math.log(p[c]) for c in range(3))
    expected = num / (w[Y2[0]] + w[Y2[1]])
    crit = losses.build("ce", class_weights=w, label_smoothing=ls, ignore_index=-1)
    got = crit(torch.tensor(x, dtype=torch.float64), torch.tensor(y))
    assert got.item() == pytest.approx(expected, rel=1e-12)


def test_bce_hand_value():
    x, y = [2.0, -1.0, 0.0], [1.0, 0.0, 1.0]
    pw = 3.0
    vals = [-(pw * t * math.log(_sig(v)) + (1 - t) * math.log(1 - _sig(v))) for v, t in zip(x, y)]
    got = losses.build("bce", pos_weight=pw)(torch.tensor(x, dtype=torch.float64), torch.tensor(y, dtype=torch.float64))
    assert got.item() == pytest.approx(sum(vals) / 3, rel=1e-12)


def test_focal_hand_value_sigmoid():
    x, y, a, gmm = [2.0, -1.0, 0.3], [1.0, 0.0, 0.0], 0.25, 2.0
    vals = []
    for v, t in zip(x, y):
        p = _sig(v)
        pt = p if t else 1 - p
        at = a if t else 1 - a
        vals.append(-at * (1 - pt) ** gmm * math.log(pt))
    crit = losses.build("focal", mode="binary")
    got = crit(torch.tensor(x, dtype=torch.float64), torch.tensor(y, dtype=torch.float64))
    assert got.item() == pytest.approx(sum(vals) / 3, rel=1e-12)


def test_focal_hand_value_softmax():
    alpha, gmm = [0.2, 0.3, 0.5], 1.5
    vals = []
    for r, t in zip(X2, Y2):
        p = _softmax(r)[t]
        vals.append(-alpha[t] * (1 - p) ** gmm * math.log(p))
    crit = losses.build("focal", alpha=alpha, gamma=gmm)
    got = crit(torch.tensor(X2, dtype=torch.float64), torch.tensor(Y2))
    assert got.item() == pytest.approx(sum(vals) / 2, rel=1e-12)


# --------------------------------------------------------------------------- reference libraries


@pytest.mark.parametrize("ls", [0.0, 0.2])
@pytest.mark.parametrize("weighted", [False, True])
def test_ce_equals_torch(ls, weighted):
    x, t = _inputs("multiclass", shape=(3, 7))
    t[0, :3] = 255
    w = [1.0, 2.0, 0.5] if weighted else None
    got = losses.build("ce", class_weights=w, label_smoothing=ls, ignore_index=255)(x, t)
    wt = None if w is None else torch.tensor(w, dtype=x.dtype)
    ref = F.cross_entropy(x, t, wt, ignore_index=255, label_smoothing=ls)
    torch.testing.assert_close(got, ref)
    probs = torch.softmax(torch.randn_like(x), 1)
    got = losses.build("ce", class_weights=w, label_smoothing=ls)(x, probs)
    ref = F.cross_entropy(x, probs, None if w is None else torch.tensor(w, dtype=x.dtype), label_smoothing=ls)
    torch.testing.assert_close(got, ref)


def test_bce_equals_torch():
    x, y = _inputs("multilabel", shape=(3, 5))
    w, pw = [1.0, 2.0, 0.5], [0.5, 1.0, 4.0]
    got = losses.build("bce", mode="multilabel", class_weights=w, pos_weight=pw)(x, y)
    view = (1, 3, 1)
    ref = F.binary_cross_entropy_with_logits(
        x, y, torch.tensor(w, dtype=x.dtype).view(view), pos_weight=torch.tensor(pw, dtype=x.dtype).view(view)
    )
    torch.testing.assert_close(got, ref)
    # multiclass mode = one-vs-rest BCE on the one-hot target
    xm, t = _inputs("multiclass")
    onehot = F.one_hot(t, C).movedim(-1, 1).to(xm.dtype)
    got = losses.build("bce", mode="multiclass")(xm, t)
    torch.testing.assert_close(got, F.binary_cross_entropy_with_logits(xm, onehot))


@pytest.mark.parametrize("alpha", [0.25, -1.0])
@pytest.mark.parametrize("gamma", [0.0, 2.0, 3.5])
def test_focal_sigmoid_equals_torchvision(alpha, gamma):
    from torchvision.ops import sigmoid_focal_loss

    x, y = _inputs("multilabel", scale=3.0, shape=(4, 6))
    y[0, 0, 0] = 0.3  # soft targets are passed through unchanged
    for reduction in ("none", "mean", "sum"):
        got = losses.build("focal", mode="multilabel", alpha=alpha, gamma=gamma, reduction=reduction)(x, y)
        torch.testing.assert_close(got, sigmoid_focal_loss(x, y, alpha, gamma, reduction))


def test_focal_equals_smp_and_monai():
    monai = pytest.importorskip("monai")
    smp = pytest.importorskip("segmentation_models_pytorch")
    x, t = _inputs("multiclass", shape=(2, 9))
    x = x.float().view(2, C, 3, 3)
    t = t.view(2, 3, 3)
    onehot = F.one_hot(t, C).movedim(-1, 1).float()
    # smp multiclass FocalLoss = one-vs-rest sigmoid focal averaged over classes = our multilabel on one-hot
    ref = smp.losses.FocalLoss("multiclass", alpha=0.25, gamma=2.0)(x, t)
    torch.testing.assert_close(losses.build("focal", mode="multilabel")(x, onehot), ref)
    ref_b = smp.losses.FocalLoss("binary", alpha=0.25, gamma=2.0)(x[:, :1], onehot[:, :1])
    torch.testing.assert_close(losses.build("focal", mode="binary")(x[:, :1], onehot[:, :1]), ref_b)
    # MONAI softmax focal averages over classes as well: ours = C x MONAI (per-class alpha = our alpha list)
    alpha = [0.2, 0.3, 0.5]
    ref = monai.losses.FocalLoss(use_softmax=True, gamma=2.0, alpha=alpha)(x, onehot)
    torch.testing.assert_close(losses.build("focal", alpha=alpha)(x, t), C * ref)
    ref = monai.losses.FocalLoss(use_softmax=True, gamma=1.0)(x, onehot)
    torch.testing.assert_close(losses.build("focal", gamma=1.0)(x, t), C * ref)
    # probability targets (one-hot) give the same as indices
    torch.testing.assert_close(losses.build("focal", gamma=1.0)(x, onehot), C * ref)


def test_focal_gamma0_is_ce():
    x, t = _inputs("multiclass")
    torch.testing.assert_close(losses.build("focal", gamma=0.0)(x, t), F.cross_entropy(x, t))


# --------------------------------------------------------------------------- generic properties


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_gradcheck(case):
    name, params, mode = case
    x, t = _inputs(mode, shape=(2, 3))
    crit = _build(name, params)
    assert torch.autograd.gradcheck(lambda z: crit(z, t), (x.requires_grad_(),))


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_reductions(case):
    name, params, mode = case
    x, t = _inputs(mode)
    none = _build(name, params, reduction="none")(x, t)
    expected_shape = t.shape if mode == "multiclass" and name not in DENSE_IN_MULTICLASS else x.shape
    assert none.shape == expected_shape
    torch.testing.assert_close(_build(name, params, reduction="sum")(x, t), none.sum())
    if name not in WEIGHTED_MEAN:
        torch.testing.assert_close(_build(name, params, reduction="mean")(x, t), none.mean())


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_ignore_index_equals_dropping(case):
    name, params, mode = case
    x, t = _inputs(mode, shape=(2, 6))
    keep = torch.ones(2, 6, dtype=torch.bool)
    keep[0, :2] = False
    keep[1, 3] = False
    pos = keep if mode == "multiclass" else keep.unsqueeze(1)
    got = _build(name, params, ignore_index=255)(x, torch.where(pos, t, torch.full_like(t, 255)))
    xs = x.movedim(1, -1)[keep]  # (K, C): the kept positions as a batch
    ts = t[keep] if mode == "multiclass" else t.movedim(1, -1)[keep]
    torch.testing.assert_close(got, _build(name, params)(xs, ts))


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_all_ignored_and_empty(case):
    name, params, mode = case
    x, t = _inputs(mode)
    x.requires_grad_()
    ignored = torch.full_like(t, 255)
    value = _build(name, params, ignore_index=255)(x, ignored)
    value.backward()
    assert value.item() == 0.0
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() == 0
    xe, te = x.detach()[:0].requires_grad_(), t[:0]
    value = _build(name, params)(xe, te)
    value.backward()
    assert torch.isfinite(value) and value.item() == 0.0


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_amp_large_logits_finite(case):
    name, params, mode = case
    x, t = _inputs(mode, dtype=torch.float32, scale=1e4)
    crit = _build(name, params)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        xb = x.clone().requires_grad_()
        value = crit(xb * 1.0, t)
    assert value.dtype == torch.float32 and torch.isfinite(value)
    value.backward()
    assert torch.isfinite(xb.grad).all()
    xh = x.half().requires_grad_()
    th = t.half() if t.is_floating_point() else t
    value = crit(xh, th)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(xh.grad).all()


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_perfect_prediction_is_minimum(case):
    name, params, mode = case
    if name == "label_smoothing_ce":
        pytest.skip("minimum is the entropy of the smoothed target: test_label_smoothing_minimum")
    params = {k: v for k, v in params.items() if k != "label_smoothing"}
    _, t = _inputs(mode)
    if mode == "multiclass":
        x = 60.0 * (2 * F.one_hot(t, C).movedim(-1, 1).double() - 1)
    else:
        x = 60.0 * (2 * t - 1)
    value = _build(name, params)(x, t)
    assert value.item() == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_registry_build_and_info(case):
    name, params, _ = case
    if name != "class_balanced":
        assert isinstance(losses.build(name), torch.nn.Module)
    assert isinstance(losses.build({"name": name, "params": params}), torch.nn.Module)
    card = losses.info(name)
    assert card.family == "classification" and card.formula and card.reference and card.summary


@pytest.mark.parametrize("name", sorted({c[0] for c in CASES} | {"ghm_r"}))
def test_docstring_example_runs(name):
    cls = losses.get(name).cls
    tests = doctest.DocTestFinder().find(cls, globs={"torch": torch, cls.__name__: cls})
    runner = doctest.DocTestRunner()
    for test in tests:
        runner.run(test)
    assert runner.summarize(verbose=False).failed == 0 and sum(len(t.examples) for t in tests) > 0


@pytest.mark.parametrize("name", ["ce", "bce", "focal"])
def test_wrong_shapes_raise(name):
    crit = losses.build(name, mode="multiclass")
    with pytest.raises(LossInputError, match=name):
        crit(torch.randn(2, 3, 4), torch.randint(0, 3, (2, 5)))
    crit = losses.build(name, mode="multilabel")
    with pytest.raises(LossInputError, match="multilabel"):
        crit(torch.randn(2, 3, 4), torch.rand(2, 1, 4))


def test_binary_accepts_squeezed_and_integer_targets():
    x = torch.randn(3, 1, 4, dtype=torch.float64)
    t = torch.randint(0, 2, (3, 4))
    for name in ("ce", "bce", "focal"):
        crit = losses.build(name, mode="binary")
        torch.testing.assert_close(crit(x, t), crit(x, t.unsqueeze(1).double()))

"""Classification losses: hand-computed values, torch / torchvision / smp / MONAI equality, gradcheck,
reductions, ignore_index, degenerate inputs, AMP and registry wiring."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from dense_inputs import run_on_meta

import losses
from losses import LossInputError
from losses import classification as cls_mod
from losses._utils import check_class_range, prepare, safe_pow, safe_pow_grad
from losses.classification import _SigmoidFocal, _SoftmaxFocalIndex, sigmoid_focal_loss

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
def test_amp_large_logits_finite(case, check_low_precision):
    name, params, mode = case
    x, t = _inputs(mode, dtype=torch.float32, scale=1e4)
    check_low_precision(_build(name, params), x, t)


# label_smoothing_ce's minimum is the entropy of the smoothed target: see its own test below.
@pytest.mark.parametrize("case", [c for c in CASES if c[0] != "label_smoothing_ce"], ids=_ids)
def test_perfect_prediction_is_minimum(case):
    name, params, mode = case
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


# --------------------------------------------------------------------------- loss-specific references


def test_sparse_ce_index_only():
    x, t = _inputs("multiclass")
    torch.testing.assert_close(losses.build("sparse_ce")(x, t), F.cross_entropy(x, t))
    with pytest.raises(LossInputError, match="sparse_ce"):
        losses.build("sparse_ce")(x, torch.softmax(x, 1))
    with pytest.raises(losses.LossConfigError, match="multiclass"):
        losses.build("sparse_ce", mode="binary")


def test_label_smoothing_ce_equals_torch_and_minimum():
    x, t = _inputs("multiclass", shape=(3, 5))
    torch.testing.assert_close(losses.build("label_smoothing_ce")(x, t), F.cross_entropy(x, t, label_smoothing=0.1))
    ls = 0.3
    q = [(1 - ls) * (c == 1) + ls / 3 for c in range(3)]
    entropy = -sum(v * math.log(v) for v in q)
    logits = torch.tensor([[math.log(v) for v in q]], dtype=torch.float64)
    crit = losses.build("label_smoothing_ce", smoothing=ls)
    assert crit(logits, torch.tensor([1])).item() == pytest.approx(entropy, rel=1e-12)  # the minimum: p = q
    assert crit(logits * 1.5, torch.tensor([1])).item() > entropy


def test_weighted_ce_auto_equals_sklearn_balanced():
    cw = pytest.importorskip("sklearn.utils.class_weight")
    x, t = _inputs("multiclass", shape=(4, 10))
    t[0, :3] = 255
    valid = t[t != 255].numpy()
    w = cw.compute_class_weight("balanced", classes=np.unique(valid), y=valid)
    full = torch.zeros(C, dtype=x.dtype)
    full[torch.from_numpy(np.unique(valid))] = torch.tensor(w, dtype=x.dtype)
    got = losses.build("weighted_ce", ignore_index=255)(x, t)
    torch.testing.assert_close(got, F.cross_entropy(x, t, full, ignore_index=255))
    fixed = losses.build("weighted_ce", class_weights=[1.0, 2.0, 0.5], ignore_index=255)(x, t)
    ref = F.cross_entropy(x, t, torch.tensor([1.0, 2.0, 0.5], dtype=x.dtype), ignore_index=255)
    torch.testing.assert_close(fixed, ref)


def test_weighted_ce_auto_binary_hand():
    x, y = [0.5, -1.0, 2.0, 0.0], [1.0, 0.0, 0.0, 0.0]  # 1 positive, 3 negatives: w+ = 4/2, w- = 4/6
    vals = []
    for v, t in zip(x, y):
        bce = -(t * math.log(_sig(v)) + (1 - t) * math.log(1 - _sig(v)))
        vals.append(bce * (2.0 if t else 4 / 6))
    crit = losses.build("weighted_ce", mode="binary")
    got = crit(torch.tensor(x, dtype=torch.float64), torch.tensor(y, dtype=torch.float64))
    assert got.item() == pytest.approx(sum(vals) / 4, rel=1e-12)


def test_balanced_ce_hand():
    x, y = [0.5, -1.0, 2.0, 0.0, 1.0], [1.0, 0.0, 0.0, 1.0, 0.0]
    beta = 3 / 5  # fraction of negatives
    vals = [-(beta * t * math.log(_sig(v)) + (1 - beta) * (1 - t) * math.log(1 - _sig(v))) for v, t in zip(x, y)]
    got = losses.build("balanced_ce")(torch.tensor(x, dtype=torch.float64), torch.tensor(y, dtype=torch.float64))
    assert got.item() == pytest.approx(sum(vals) / 5, rel=1e-12)


def _mmdet_ghm(g, loss, valid, bins, momentum, acc_sum, last_edge):
    """mmdetection's GHMC/GHMR weighting loop, transcribed in plain python."""
    edges = [i / bins for i in range(bins + 1)]
    edges[-1] += last_edge
    tot = max(sum(valid), 1.0)
    weights = [0.0] * len(g)
    n = 0
    for i in range(bins):
        inds = [k for k in range(len(g)) if edges[i] <= g[k] < edges[i + 1] and valid[k]]
        if inds:
            if momentum > 0:
                acc_sum[i] = momentum * acc_sum[i] + (1 - momentum) * len(inds)
                for k in inds:
                    weights[k] = tot / acc_sum[i]
            else:
                for k in inds:
                    weights[k] = tot / len(inds)
            n += 1
    if n:
        weights = [w / n for w in weights]
    return sum(w * v for w, v in zip(weights, loss)) / tot


@pytest.mark.parametrize("momentum", [0.0, 0.75])
def test_ghm_c_equals_mmdet_loop(momentum):
    g0 = torch.Generator().manual_seed(4)
    crit = losses.build("ghm_c", mode="multilabel", bins=6, momentum=momentum, ignore_index=-1)
    acc = [0.0] * 6
    for _ in range(2):
        x = 3 * torch.randn(4, 3, generator=g0, dtype=torch.float64)
        y = (torch.rand(4, 3, generator=g0) > 0.6).double()
        y[0, 1] = -1.0
        xs, ys = x.flatten().tolist(), y.flatten().tolist()
        valid = [1.0 if t != -1 else 0.0 for t in ys]
        g = [abs(_sig(v) - max(t, 0.0)) for v, t in zip(xs, ys)]
        bce = [-(t * math.log(_sig(v)) + (1 - t) * math.log(1 - _sig(v))) if t != -1 else 0.0 for v, t in zip(xs, ys)]
        expected = _mmdet_ghm(g, bce, valid, 6, momentum, acc, 1e-6)
        assert crit(x, y).item() == pytest.approx(expected, rel=1e-6)
    assert torch.allclose(crit.acc_sum.double(), torch.tensor(acc, dtype=torch.float64), rtol=1e-6)
    assert "acc_sum" in crit.state_dict()  # the running histogram is checkpointed
    before = crit.acc_sum.clone()
    crit.eval()
    crit(x, y)
    assert torch.equal(crit.acc_sum, before)  # evaluation does not update it


def test_ghm_c_softmax_hand():
    # multiclass: g = 1 - p_y; with bins=2 the positions split by p_y >< 0.5
    x = torch.tensor([[3.0, 0.0], [0.0, 3.0], [0.2, 0.0]], dtype=torch.float64)
    t = torch.tensor([0, 0, 1])
    ce = [-math.log(_softmax(r)[c]) for r, c in zip(x.tolist(), t.tolist())]
    g = [1 - _softmax(r)[c] for r, c in zip(x.tolist(), t.tolist())]
    expected = _mmdet_ghm(g, ce, [1.0] * 3, 2, 0.0, [0.0] * 2, 1e-6)
    assert losses.build("ghm_c", bins=2)(x, t).item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("momentum", [0.0, 0.5])
def test_ghm_r_equals_mmdet_loop(momentum):
    g0 = torch.Generator().manual_seed(5)
    mu = 0.02
    crit = losses.build("ghm_r", mu=mu, bins=10, momentum=momentum)
    assert losses.info("ghm_r").family == "regression"
    acc = [0.0] * 10
    for _ in range(2):
        p, t = 0.05 * torch.randn(12, generator=g0, dtype=torch.float64), torch.zeros(12, dtype=torch.float64)
        d = (p - t).tolist()
        asl1 = [math.sqrt(v * v + mu * mu) - mu for v in d]
        g = [abs(v) / math.sqrt(v * v + mu * mu) for v in d]
        expected = _mmdet_ghm(g, asl1, [1.0] * 12, 10, momentum, acc, 1e3)
        assert crit(p, t).item() == pytest.approx(expected, rel=1e-6)
    assert "acc_sum" in crit.state_dict()
    p = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda z: losses.build("ghm_r")(z, torch.zeros(3, 4, dtype=torch.float64)), (p,))
    with pytest.raises(LossInputError, match="ghm_r"):
        crit(torch.zeros(3), torch.zeros(4))


def test_class_balanced_hand():
    n, beta = [50, 10, 2], 0.9
    raw = [(1 - beta) / (1 - beta**k) for k in n]
    w = [3 * r / sum(raw) for r in raw]
    expected = sum(w[c] * -math.log(_softmax(r)[c]) for r, c in zip(X2, Y2)) / 2
    crit = losses.build("class_balanced", samples_per_class=n, beta=beta)
    x, y = torch.tensor(X2, dtype=torch.float64), torch.tensor(Y2)
    assert crit(x, y).item() == pytest.approx(expected, rel=1e-12)
    # sigmoid base: one-vs-rest BCE over the one-hot, summed over classes, weighted by w_y
    sig = 0.0
    for r, c in zip(X2, Y2):
        sig += w[c] * sum(-math.log(_sig(v)) if j == c else -math.log(1 - _sig(v)) for j, v in enumerate(r))
    crit = losses.build("class_balanced", samples_per_class=n, beta=beta, base="sigmoid")
    assert crit(x, y).item() == pytest.approx(sig / 2, rel=1e-12)
    # beta -> 0: uniform weights, plain CE
    crit = losses.build("class_balanced", samples_per_class=n, beta=0.0)
    torch.testing.assert_close(crit(x, y), F.cross_entropy(x, y))


def test_poly1_hand_and_reductions_to_base():
    eps = 2.0
    expected = sum(-math.log(_softmax(r)[c]) + eps * (1 - _softmax(r)[c]) for r, c in zip(X2, Y2)) / 2
    x, y = torch.tensor(X2, dtype=torch.float64), torch.tensor(Y2)
    assert losses.build("poly1", epsilon=eps)(x, y).item() == pytest.approx(expected, rel=1e-12)
    gmm = 2.0
    foc = sum(-((1 - _softmax(r)[c]) ** gmm) * math.log(_softmax(r)[c]) + eps * (1 - _softmax(r)[c]) ** (gmm + 1)
              for r, c in zip(X2, Y2)) / 2
    assert losses.build("poly1", epsilon=eps, focal=True)(x, y).item() == pytest.approx(foc, rel=1e-12)
    xm, t = _inputs("multiclass")
    torch.testing.assert_close(losses.build("poly1", epsilon=0.0)(xm, t), F.cross_entropy(xm, t))
    xb, yb = _inputs("multilabel")
    torch.testing.assert_close(
        losses.build("poly1", epsilon=0.0, focal=True, mode="multilabel")(xb, yb),
        losses.build("focal", mode="multilabel")(xb, yb),
    )
    # probability (one-hot) targets give the same as indices
    onehot = F.one_hot(t, C).movedim(-1, 1).to(xm.dtype)
    crit = losses.build("poly1", epsilon=eps)
    torch.testing.assert_close(crit(xm, onehot), crit(xm, t))


def test_kl_div_equals_torch():
    g = torch.Generator().manual_seed(6)
    x = torch.randn(5, 4, generator=g, dtype=torch.float64)
    p = torch.softmax(torch.randn(5, 4, generator=g, dtype=torch.float64), 1)
    p[0] = torch.tensor([0.0, 1.0, 0.0, 0.0], dtype=torch.float64)  # 0 log 0 = 0
    ref = F.kl_div(torch.log_softmax(x, 1), p, reduction="batchmean")
    torch.testing.assert_close(losses.build("kl_div")(x, p), ref)
    torch.testing.assert_close(losses.build("kl_div", log_target=True)(x, p.log()), ref)
    temp = 3.0
    ref_t = F.kl_div(torch.log_softmax(x / temp, 1), p, reduction="batchmean") * temp**2
    torch.testing.assert_close(losses.build("kl_div", temperature=temp)(x, p), ref_t)
    t = torch.tensor([1, 0, 3, 2, 2])
    torch.testing.assert_close(losses.build("kl_div")(x, t), F.cross_entropy(x, t))  # one-hot target: KL = CE
    q = torch.rand(5, 4, generator=g, dtype=torch.float64)
    bern = q * (q / torch.sigmoid(x)).log() + (1 - q) * ((1 - q) / (1 - torch.sigmoid(x))).log()
    torch.testing.assert_close(losses.build("kl_div", mode="multilabel")(x, q), bern.mean())
    # identical distributions: 0 with zero gradient
    xr = x.clone().requires_grad_()
    value = losses.build("kl_div")(xr, torch.softmax(x, 1))
    value.backward()
    assert value.item() == pytest.approx(0.0, abs=1e-12) and xr.grad.abs().max() < 1e-12


# --------------------------------------------------------------------------- fused kernels, helpers, sync policy


@pytest.mark.parametrize("alpha", [0.25, 0.9, 1.0, -1.0])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0, 3.5])
def test_fused_sigmoid_focal_values_and_gradients_equal_torchvision(alpha, gamma):
    from torchvision.ops import sigmoid_focal_loss as tv_focal

    g = torch.Generator().manual_seed(7)
    x = 4 * torch.randn(3, 4, 5, generator=g, dtype=torch.float64)
    y = (torch.rand(3, 4, 5, generator=g) > 0.5).double()
    y[0, 0] = torch.rand(5, generator=g, dtype=torch.float64)  # soft targets
    ours_x, ref_x = x.clone().requires_grad_(), x.clone().requires_grad_()
    ours, ref = sigmoid_focal_loss(ours_x, y, alpha, gamma), tv_focal(ref_x, y, alpha, gamma, "none")
    torch.testing.assert_close(ours, ref)
    upstream = torch.rand(x.shape, generator=g, dtype=torch.float64)  # not just ones: the full vector-Jacobian
    torch.testing.assert_close(torch.autograd.grad(ours, ours_x, upstream), torch.autograd.grad(ref, ref_x, upstream))


@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 2.0, 3.5])
@pytest.mark.parametrize("alpha", [None, 0.25])
def test_fused_focal_functions_gradcheck(gamma, alpha):
    g = torch.Generator().manual_seed(8)
    x = torch.randn(2, 3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    soft = torch.rand(2, 3, 4, generator=g, dtype=torch.float64)
    weight = torch.rand(2, 1, 4, generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda z: _SigmoidFocal.apply(z, soft, weight, alpha, gamma), (x,))
    index = torch.randint(0, 3, (2, 4), generator=g)
    mask = (torch.rand(2, 4, generator=g) > 0.3).double()
    per_position = None if alpha is None else torch.rand(2, 4, generator=g, dtype=torch.float64)
    for poly in (0.0, 0.5):
        args = (index, mask, per_position, gamma, poly)
        assert torch.autograd.gradcheck(lambda z, args=args: _SoftmaxFocalIndex.apply(z, *args), (x,))


def test_fused_sigmoid_focal_skips_the_gradient_without_autograd():
    x, y = _inputs("multilabel", dtype=torch.float32)
    with torch.no_grad():
        value = sigmoid_focal_loss(x, y)
    torch.testing.assert_close(value, sigmoid_focal_loss(x.requires_grad_(), y).detach())


@pytest.mark.parametrize("gamma", [0.0, 0.3, 1.0, 2.0, 2.5])
def test_safe_pow_and_its_derivative(gamma):
    base = torch.tensor([0.0, 1e-30, 0.25, 1.0, 3.0], dtype=torch.float64, requires_grad=True)
    value = safe_pow(base, gamma)
    expected = torch.tensor([1.0 if gamma == 0 else 0.0, 1.0 if gamma == 0 else 0.0, 0.25**gamma, 1.0, 3.0**gamma])
    torch.testing.assert_close(value, expected.double())  # 0 < gamma < 1: below the floor the power is 0
    grad = torch.autograd.grad(value.sum(), base)[0] if value.requires_grad else torch.zeros_like(base)  # gamma 0: 1
    assert torch.isfinite(grad).all()
    torch.testing.assert_close(safe_pow_grad(base.detach(), gamma), grad)


def test_prepare_is_the_one_target_preparation():
    x = torch.randn(2, 3, 4)
    index, kind = prepare("t", x, torch.tensor([[0, 1, 2, 9]] * 2), "multiclass", 9)[1:3]
    assert kind == "index" and index.tolist() == [[0, 1, 2, 0]] * 2  # ignored -> 0, masked out
    dense = prepare("t", x, torch.tensor([[0, 1, 2, 9]] * 2), "multiclass", 9, dense=True)
    assert dense.kind == "dense" and dense.target.shape == x.shape and dense.mask.shape == (2, 1, 4)
    binary = prepare("t", torch.randn(2, 1, 4), torch.tensor([[1, 0, 9, 1]] * 2), "binary", 9)
    assert binary.target.shape == (2, 1, 4) and binary.mask.sum() == 6 and binary.target.dtype == torch.float32
    with pytest.raises(LossInputError, match="mode='multiclass'.*integer"):
        prepare("t", x, torch.rand(2, 3, 4), "multiclass", probabilities=False)


def test_class_range_is_checked_eagerly_on_cpu_and_not_in_a_compiled_graph(fresh_dynamo):
    bad = torch.tensor([[0, 3]])
    for name in ("ce", "focal", "poly1", "class_balanced", "bce"):
        params = {"samples_per_class": [1.0, 2.0, 3.0]} if name == "class_balanced" else {"mode": "multiclass"}
        message = rf"{name}: target holds class indices outside \[0, 2\] \(min 0, max 3\)"
        with pytest.raises(LossInputError, match=message):
            losses.build(name, **params)(torch.randn(1, 3, 2), bad)

    def scaled(index):
        check_class_range("check", index, 2)
        return index * 2

    # compiled: no host read, hence no check and no graph break (the kernels' bounds checks remain)
    assert torch.compile(scaled, backend="eager", fullgraph=True)(bad).tolist() == [[0, 6]]


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_no_host_read_in_forward(case):
    name, params, mode = case
    x, t = _inputs(mode, dtype=torch.float32)
    assert run_on_meta(_build(name, {**params, "ignore_index": 255}), x, t).shape == x.shape


@pytest.mark.parametrize("case", [c for c in CASES if c[1].get("mode", "multiclass") == "multiclass"], ids=_ids)
def test_compiles_with_ignore_index(case, fresh_dynamo):
    name, params, mode = case
    x, t = _inputs(mode, dtype=torch.float32, shape=(2, 6))
    t[0, :2] = 255
    crit = _build(name, {**params, "ignore_index": 255})
    compiled = torch.compile(crit, backend="eager", fullgraph=True)
    xe, xc = x.clone().requires_grad_(), x.clone().requires_grad_()
    value, expected = compiled(xc, t), crit(xe, t)
    torch.testing.assert_close(value, expected)
    torch.testing.assert_close(torch.autograd.grad(value, xc), torch.autograd.grad(expected, xe))


def test_functional_cores_equal_the_modules():
    x, t = _inputs("multiclass", shape=(2, 5))
    t[0, 0] = 255
    kw = {"ignore_index": 255}
    pairs = [
        (cls_mod.cross_entropy, "ce", {"label_smoothing": 0.1}),
        (cls_mod.focal_loss, "focal", {"alpha": [0.2, 0.3, 0.5], "gamma": 1.5}),
        (cls_mod.poly1_loss, "poly1", {"epsilon": 2.0, "focal": True}),
        (cls_mod.kl_div_loss, "kl_div", {"temperature": 2.0}),
        (cls_mod.ghm_c_loss, "ghm_c", {"bins": 4}),
    ]
    for fn, name, params in pairs:
        torch.testing.assert_close(fn(x, t, **params, **kw), _build(name, {**params, **kw})(x, t))
    with pytest.raises(TypeError, match="unexpected keyword"):
        cls_mod.cross_entropy(x, t, smooth=1.0)


@pytest.fixture
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("name", ["ghm_c", "ghm_r"])
def test_ghm_running_histogram_updates_in_a_low_precision_module(name):
    # module.to(bfloat16) (e.g. Lightning "bf16-true") casts the buffer; the float32 guard must not update a copy
    crit = losses.build(name, momentum=0.5).to(torch.bfloat16).train()
    x = torch.randn(4, 3, dtype=torch.bfloat16)
    crit(x, (torch.rand(4, 3) > 0.5).to(torch.bfloat16) if name == "ghm_c" else torch.zeros_like(x))
    assert crit.acc_sum.dtype == torch.bfloat16 and crit.acc_sum.sum() > 0

"""Box-overlap losses: paper formulas by hand, torchvision equality, gradcheck, degenerate boxes, AMP, registry."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch
from torchvision.ops import complete_box_iou_loss, distance_box_iou_loss, generalized_box_iou_loss

import losses
from losses import LossInputError

EPS = 1e-7
IOU = "iou"
AXIS_ALIGNED = [IOU, "giou", "diou", "ciou", "eiou", "focal_eiou", "siou", "mpdiou", "alpha_iou", "inner_iou", "piou"]
ALL = [*AXIS_ALIGNED, "gwd"]

# (pred, target) xyxy pairs: horizontal shift, different aspect with a diagonal shift, disjoint
PAIRS = [
    ((0.0, 0.0, 2.0, 2.0), (1.0, 0.0, 3.0, 2.0)),
    ((0.0, 0.0, 4.0, 2.0), (1.0, 1.0, 3.0, 5.0)),
    ((0.0, 0.0, 1.0, 1.0), (3.0, 2.0, 5.0, 6.0)),
]


# --------------------------------------------------------------------------- plain-python paper formulas


class Py:
    """Geometry of one xyxy pair in plain floats."""

    def __init__(self, b, g):
        self.b, self.g = b, g
        x1, y1, x2, y2 = b
        X1, Y1, X2, Y2 = g
        self.w, self.h, self.wg, self.hg = x2 - x1, y2 - y1, X2 - X1, Y2 - Y1
        iw = max(0.0, min(x2, X2) - max(x1, X1))
        ih = max(0.0, min(y2, Y2) - max(y1, Y1))
        self.inter = iw * ih
        self.union = self.w * self.h + self.wg * self.hg - self.inter
        self.iou = self.inter / self.union
        self.cw = max(x2, X2) - min(x1, X1)
        self.ch = max(y2, Y2) - min(y1, Y1)
        self.c2 = self.cw**2 + self.ch**2
        self.dx = (X1 + X2) / 2 - (x1 + x2) / 2
        self.dy = (Y1 + Y2) / 2 - (y1 + y2) / 2
        self.rho2 = self.dx**2 + self.dy**2
        self.v = 4 / math.pi**2 * (math.atan(self.wg / self.hg) - math.atan(self.w / self.h)) ** 2
        self.beta = self.v / (1 - self.iou + self.v)


def py_iou(p):
    return 1 - p.iou


def py_giou(p):
    area_c = p.cw * p.ch
    return 1 - p.iou + (area_c - p.union) / area_c


def py_diou(p):
    return 1 - p.iou + p.rho2 / p.c2


def py_ciou(p):
    return py_diou(p) + p.beta * p.v


def py_eiou(p):
    return py_diou(p) + (p.w - p.wg) ** 2 / p.cw**2 + (p.h - p.hg) ** 2 / p.ch**2


def py_focal_eiou(p, gamma=0.5):
    return max(p.iou, EPS) ** gamma * py_eiou(p)


def py_siou(p, theta=4.0):
    # Gevorgyan 2022, eq. 1-10 as written (arcsin form, switch to beta above 45 degrees)
    sigma = math.sqrt(p.rho2)
    x = abs(p.dy) / sigma
    if x > math.sqrt(2) / 2:
        x = abs(p.dx) / sigma
    angle = 1 - 2 * math.sin(math.asin(x) - math.pi / 4) ** 2
    gamma = 2 - angle
    distance = sum(1 - math.exp(-gamma * r) for r in ((p.dx / p.cw) ** 2, (p.dy / p.ch) ** 2))
    om_w = abs(p.w - p.wg) / max(p.w, p.wg)
    om_h = abs(p.h - p.hg) / max(p.h, p.hg)
    shape = (1 - math.exp(-om_w)) ** theta + (1 - math.exp(-om_h)) ** theta
    return 1 - p.iou + (distance + shape) / 2


def py_mpdiou(p, image_size=None):
    (x1, y1, x2, y2), (X1, Y1, X2, Y2) = p.b, p.g
    d1 = (x1 - X1) ** 2 + (y1 - Y1) ** 2
    d2 = (x2 - X2) ** 2 + (y2 - Y2) ** 2
    norm = p.c2 if image_size is None else image_size[0] ** 2 + image_size[1] ** 2
    return 1 - p.iou + d1 / norm + d2 / norm


def py_alpha(p, base="iou", a=3.0):
    loss = 1 - p.iou**a
    if base == "giou":
        loss += ((p.cw * p.ch - p.union) / (p.cw * p.ch)) ** a
    if base in ("diou", "ciou"):
        loss += (p.rho2 / p.c2) ** a
    if base == "ciou":
        loss += (p.beta * p.v) ** a
    return loss


def _scaled(b, r):
    cx, cy, w, h = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2, b[2] - b[0], b[3] - b[1]
    return (cx - r * w / 2, cy - r * h / 2, cx + r * w / 2, cy + r * h / 2)


def py_inner(p, base="iou", ratio=0.75):
    inner = Py(_scaled(p.b, ratio), _scaled(p.g, ratio)).iou
    return PY[base](p) + p.iou - inner


def py_piou(p, v2=False, lam=1.3):
    (x1, y1, x2, y2), (X1, Y1, X2, Y2) = p.b, p.g
    P = ((abs(x1 - X1) + abs(x2 - X2)) / p.wg + (abs(y1 - Y1) + abs(y2 - Y2)) / p.hg) / 4
    loss = 1 - p.iou + 1 - math.exp(-(P**2))
    if v2:
        q = math.exp(-P)
        loss *= 3 * (lam * q) * math.exp(-((lam * q) ** 2))
    return loss


PY = {
    "iou": py_iou,
    "giou": py_giou,
    "diou": py_diou,
    "ciou": py_ciou,
    "eiou": py_eiou,
    "siou": py_siou,
    "mpdiou": py_mpdiou,
}


def np_gwd(b, g, tau=1.0, fun="log1p"):
    """Gaussian Wasserstein distance with matrix square roots (scipy), Yang et al. eq. 5-6."""

    def gauss(box):
        cx, cy, w, h, t = box
        rot = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
        return np.array([cx, cy]), rot @ np.diag([w * w / 4, h * h / 4]) @ rot.T

    m1, s1 = gauss(b)
    m2, s2 = gauss(g)
    r1 = scipy.linalg.sqrtm(s1)
    cross = np.trace(scipy.linalg.sqrtm(r1 @ s2 @ r1)).real
    d2 = float(np.sum((m1 - m2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * cross)
    f = math.log1p(d2) if fun == "log1p" else math.sqrt(d2)
    return 1 - 1 / (tau + f)


def _loss(name, b, g, **params):
    crit = losses.build(name, reduction="none", **params)
    return crit(torch.tensor([b], dtype=torch.float64), torch.tensor([g], dtype=torch.float64)).item()


# --------------------------------------------------------------------------- hand-computed values

CASES = [
    (IOU, {}, py_iou),
    ("giou", {}, py_giou),
    ("diou", {}, py_diou),
    ("ciou", {}, py_ciou),
    ("eiou", {}, py_eiou),
    ("focal_eiou", {}, py_focal_eiou),
    ("focal_eiou", {"gamma": 1.0}, lambda p: py_focal_eiou(p, 1.0)),
    ("siou", {}, py_siou),
    ("siou", {"theta": 2.0}, lambda p: py_siou(p, 2.0)),
    ("mpdiou", {}, py_mpdiou),
    ("mpdiou", {"image_size": (20, 10)}, lambda p: py_mpdiou(p, (20, 10))),
    *[("alpha_iou", {"base": b}, lambda p, b=b: py_alpha(p, b)) for b in ("iou", "giou", "diou", "ciou")],
    ("alpha_iou", {"base": "diou", "alpha": 0.5}, lambda p: py_alpha(p, "diou", 0.5)),
    *[("inner_iou", {"base": b}, lambda p, b=b: py_inner(p, b)) for b in PY],
    ("inner_iou", {"base": "giou", "ratio": 1.3}, lambda p: py_inner(p, "giou", 1.3)),
    ("piou", {}, py_piou),
    ("piou", {"v2": True}, lambda p: py_piou(p, True)),
    ("piou", {"v2": True, "lam": 2.0}, lambda p: py_piou(p, True, 2.0)),
]


@pytest.mark.parametrize(("name", "params", "fn"), CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
@pytest.mark.parametrize("pair", range(len(PAIRS)))
def test_hand_computed_value(name, params, fn, pair):
    b, g = PAIRS[pair]
    expected = fn(Py(b, g))
    assert _loss(name, b, g, **params) == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_hand_computed_first_pair_literal():
    # (0,0,2,2) vs (1,0,3,2): I = 2, U = 6, C = 3x2, rho^2 = 1, c^2 = 13, same aspect (v = 0)
    b, g = PAIRS[0]
    assert _loss(IOU, b, g) == pytest.approx(1 - 1 / 3, rel=1e-6)
    assert _loss("giou", b, g) == pytest.approx(1 - 1 / 3, rel=1e-6)  # C == U
    assert _loss("diou", b, g) == pytest.approx(2 / 3 + 1 / 13, rel=1e-6)
    assert _loss("ciou", b, g) == pytest.approx(2 / 3 + 1 / 13, rel=1e-6)
    assert _loss("mpdiou", b, g, image_size=(10, 10)) == pytest.approx(2 / 3 + 2 / 200, rel=1e-6)


@pytest.mark.parametrize(
    ("b", "g", "params"),
    [
        ((0.0, 0.0, 2.0, 2.0, 0.0), (1.0, 0.0, 2.0, 2.0, 0.0), {}),
        ((0.0, 0.0, 4.0, 1.0, 0.3), (0.5, -0.5, 3.0, 2.0, 1.2), {}),
        ((2.0, 1.0, 1.0, 3.0, -0.7), (0.0, 0.0, 2.0, 2.0, 0.4), {"fun": "sqrt", "tau": 2.0}),
        ((0.0, 0.0, 4.0, 1.0, 0.0), (0.0, 0.0, 1.0, 4.0, math.pi / 2), {}),  # the same box, rotated 90 degrees
    ],
)
def test_gwd_matches_matrix_square_root_formula(b, g, params):
    assert _loss("gwd", b, g, **params) == pytest.approx(np_gwd(b, g, **params), rel=1e-5, abs=1e-7)


def test_gwd_identical_and_rotation_symmetry():
    box = (1.0, 2.0, 4.0, 1.0, 0.3)
    assert _loss("gwd", box, box) == pytest.approx(0.0, abs=1e-3)  # sqrt(eps) floor in the cross term
    assert _loss("gwd", box, box, tau=2.0) == pytest.approx(0.5, abs=1e-3)  # 1 - 1/tau
    flipped = (1.0, 2.0, 4.0, 1.0, 0.3 + math.pi)  # a box turned by pi is the same Gaussian
    assert _loss("gwd", box, flipped) == pytest.approx(0.0, abs=1e-3)


# --------------------------------------------------------------------------- torchvision equality


def _random_boxes(n, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g, dtype=dtype) * 50
    wh = torch.rand(n, 2, generator=g, dtype=dtype) * 30 + 1
    t = torch.cat([xy, xy + wh], 1)
    p = t + torch.randn(n, 4, generator=g, dtype=dtype) * 4
    p = torch.cat([p[:, :2], torch.maximum(p[:, 2:], p[:, :2] + 0.5)], 1)  # keep pred well-formed
    return p, t


@pytest.mark.parametrize(
    ("name", "reference"),
    [("giou", generalized_box_iou_loss), ("diou", distance_box_iou_loss), ("ciou", complete_box_iou_loss)],
)
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_matches_torchvision(name, reference, reduction):
    p, t = _random_boxes(200, seed=5, dtype=torch.float32)
    p64 = p.double().requires_grad_(True)
    ours = losses.build(name, reduction=reduction)(p64, t.double())
    ref_p = p.double().requires_grad_(True)
    ref = reference(ref_p, t.double(), reduction=reduction)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)
    ours.sum().backward()
    ref.sum().backward()
    torch.testing.assert_close(p64.grad, ref_p.grad, rtol=1e-4, atol=1e-6)


def test_torchvision_degenerate_failures_we_fix():
    inverted, target = torch.tensor([[2.0, 2.0, 0.0, 0.0]]), torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    assert generalized_box_iou_loss(inverted, target).item() == 0.0  # torchvision: "perfect"
    assert losses.build("giou")(inverted, target).item() == pytest.approx(1.0)  # ours: a zero-area box, IoU 0
    flat = torch.tensor([[0.0, 0.0, 2.0, 0.0]], requires_grad=True)
    complete_box_iou_loss(flat, target).sum().backward()
    assert torch.isnan(flat.grad).all()
    flat.grad = None
    losses.build("ciou")(flat, target).backward()
    assert torch.isfinite(flat.grad).all()


# --------------------------------------------------------------------------- generic properties


def _inputs(name, n=6, seed=0, dtype=torch.float64):
    if name == "gwd":
        g = torch.Generator().manual_seed(seed)
        t = torch.cat(
            [
                torch.rand(n, 2, generator=g, dtype=dtype) * 10,
                torch.rand(n, 2, generator=g, dtype=dtype) * 5 + 1,
                torch.rand(n, 1, generator=g, dtype=dtype) * 3 - 1.5,
            ],
            1,
        )
        return t + torch.randn(n, 5, generator=g, dtype=dtype) * 0.5, t
    return _random_boxes(n, seed, dtype)


GRADCHECK = [n for n in ALL if n != "ciou"] + [("alpha_iou", {"base": b}) for b in ("giou", "diou")]


@pytest.mark.parametrize("spec", GRADCHECK, ids=str)
def test_gradcheck_float64(spec):
    name, params = spec if isinstance(spec, tuple) else (spec, {})
    p, t = _inputs(name, n=5, seed=7)
    crit = losses.build(name, **params)
    assert torch.autograd.gradcheck(lambda x: crit(x, t), (p.requires_grad_(True),))


@pytest.mark.parametrize("name", ["ciou", "alpha_iou"])
def test_ciou_gradient_treats_the_trade_off_as_constant(name):
    # CIoU's alpha (beta in Alpha-IoU) carries no gradient, so gradcheck the loss with it frozen at p0
    from losses.overlap import _aspect_v, _ciou_beta, _diou, _geometry, _pow

    p0, t = _inputs("ciou", n=5, seed=7)
    g0 = _geometry(p0, t, EPS)
    beta0 = _ciou_beta(g0, _aspect_v(g0, EPS), EPS)

    def frozen(x):
        g = _geometry(x, t, EPS)
        if name == "ciou":
            return (_diou(g, EPS) + beta0 * _aspect_v(g, EPS)).mean()
        return (1 - g.iou**3 + (g.rho2() / g.c2(EPS)) ** 3 + _pow(beta0 * _aspect_v(g, EPS), 3.0, EPS)).mean()

    assert torch.autograd.gradcheck(frozen, (p0.clone().requires_grad_(True),))
    a, b = p0.clone().requires_grad_(True), p0.clone().requires_grad_(True)
    losses.build(name, **({"base": "ciou"} if name == "alpha_iou" else {}))(a, t).backward()
    frozen(b).backward()
    torch.testing.assert_close(a.grad, b.grad)


@pytest.mark.parametrize("name", ALL)
def test_reductions_and_weight(name):
    p, t = _inputs(name, n=7, seed=8)
    none = losses.build(name, reduction="none")(p, t)
    assert none.shape == (7,)
    assert losses.build(name, reduction="sum")(p, t).item() == pytest.approx(none.sum().item())
    crit = losses.build(name)
    assert crit(p, t).item() == pytest.approx(none.mean().item())
    w = torch.tensor([1.0, 2.0, 0.0, 0.0, 0.0, 1.0, 0.0], dtype=torch.float64)
    assert crit(p, t, weight=w).item() == pytest.approx(((none * w).sum() / w.sum()).item())
    assert crit(p[:0], t[:0]).item() == 0.0  # no positives
    with pytest.raises(losses.LossConfigError):
        losses.build(name, reduction="avg")


@pytest.mark.parametrize("name", ALL)
def test_batched_leading_dims(name):
    p, t = _inputs(name, n=6, seed=9)
    flat = losses.build(name, reduction="none")(p, t)
    shaped = losses.build(name, reduction="none")(p.reshape(2, 3, -1), t.reshape(2, 3, -1))
    torch.testing.assert_close(shaped, flat.reshape(2, 3))


@pytest.mark.parametrize("name", AXIS_ALIGNED)
@pytest.mark.parametrize("fmt", ["cxcywh", "xywh"])
def test_box_formats(name, fmt):
    from torchvision.ops import box_convert

    p, t = _random_boxes(8, seed=10)
    ref = losses.build(name, reduction="none")(p, t)
    got = losses.build(name, reduction="none", box_format=fmt)(box_convert(p, "xyxy", fmt), box_convert(t, "xyxy", fmt))
    torch.testing.assert_close(got, ref)


@pytest.mark.parametrize("name", ALL)
def test_perfect_prediction_is_minimum(name):
    p, t = _inputs(name, n=6, seed=11)
    crit = losses.build(name, reduction="none")
    perfect = crit(t.clone(), t)
    # gwd: the sqrt(eps) floor of the cross term gives ~1e-3 at most
    assert perfect.abs().max().item() < (2e-3 if name == "gwd" else 1e-6)
    assert (crit(p, t) > perfect).all()


@pytest.mark.parametrize("name", ALL)
def test_wrong_shapes_name_the_loss(name):
    crit = losses.build(name)
    k = 5 if name == "gwd" else 4
    with pytest.raises(LossInputError, match=rf"{crit.name}\(pred_boxes, target_boxes\).*\(N,{k}\)"):
        crit(torch.zeros(3, 3), torch.zeros(3, 3))
    with pytest.raises(LossInputError, match=crit.name):
        crit(torch.zeros(3, k), torch.zeros(2, k))


# --------------------------------------------------------------------------- degenerate boxes

DEGENERATE = {
    "zero_width_pred": ((1.0, 0.0, 1.0, 2.0), (0.0, 0.0, 2.0, 2.0)),
    "point_pred": ((1.0, 1.0, 1.0, 1.0), (0.0, 0.0, 2.0, 2.0)),
    "zero_area_target": ((0.0, 0.0, 2.0, 2.0), (1.0, 0.0, 3.0, 0.0)),
    "inverted_pred": ((2.0, 2.0, 0.0, 0.0), (0.0, 0.0, 2.0, 2.0)),
    "inverted_both": ((3.0, 1.0, 1.0, 0.0), (2.0, 2.0, 0.0, 0.0)),
    "identical": ((0.0, 0.0, 2.0, 3.0), (0.0, 0.0, 2.0, 3.0)),
    "identical_points": ((1.0, 1.0, 1.0, 1.0), (1.0, 1.0, 1.0, 1.0)),
    "far_apart": ((0.0, 0.0, 1.0, 1.0), (1e4, 1e4, 1e4 + 1.0, 1e4 + 1.0)),
    "concentric": ((1.0, 1.0, 3.0, 3.0), (0.0, 0.0, 4.0, 4.0)),
}
GWD_DEGENERATE = {
    "zero_size_pred": ((1.0, 1.0, 0.0, 0.0, 0.3), (0.0, 0.0, 2.0, 2.0, 0.0)),
    "zero_size_both": ((1.0, 1.0, 0.0, 0.0, 0.0), (1.0, 1.0, 0.0, 0.0, 0.0)),
    "negative_size": ((0.0, 0.0, -2.0, 1.0, 0.0), (0.0, 0.0, 2.0, 1.0, 0.0)),
    "identical": ((0.0, 0.0, 2.0, 1.0, 0.5), (0.0, 0.0, 2.0, 1.0, 0.5)),
    "far_apart": ((0.0, 0.0, 1.0, 1.0, 0.0), (1e4, 1e4, 1.0, 1.0, 0.0)),
}
PARAM_GRID = {
    "alpha_iou": [{"base": b} for b in ("iou", "giou", "diou", "ciou")] + [{"base": "ciou", "alpha": 0.5}],
    "inner_iou": [{"base": b} for b in PY],
    "piou": [{}, {"v2": True}],
    "focal_eiou": [{}, {"detach_weight": True}],
    "mpdiou": [{}, {"image_size": (10, 10)}],
    "gwd": [{}, {"fun": "sqrt"}],
}


def _degenerate_cases():
    for name in ALL:
        table = GWD_DEGENERATE if name == "gwd" else DEGENERATE
        for params in PARAM_GRID.get(name, [{}]):
            for case in table:
                yield pytest.param(name, params, case, id=f"{name}-{params}-{case}")


@pytest.mark.parametrize(("name", "params", "case"), list(_degenerate_cases()))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_degenerate_boxes_finite_value_and_gradient(name, params, case, dtype):
    b, g = (GWD_DEGENERATE if name == "gwd" else DEGENERATE)[case]
    p = torch.tensor([b], dtype=dtype, requires_grad=True)
    t = torch.tensor([g], dtype=dtype, requires_grad=True)
    value = losses.build(name, **params)(p, t)
    assert torch.isfinite(value), value
    value.backward()
    assert torch.isfinite(p.grad).all() and torch.isfinite(t.grad).all(), (p.grad, t.grad)


@pytest.mark.parametrize(
    ("name", "case", "expected"),
    [
        # documented values: identical boxes ~0; identical zero-area boxes -> IoU term 1, penalties 0
        *[(n, "identical", 0.0) for n in (IOU, "giou", "diou", "ciou", "eiou", "siou", "mpdiou", "piou")],
        *[(n, "identical_points", 1.0) for n in (IOU, "giou", "diou", "ciou", "eiou", "siou", "mpdiou")],
        # inverted pred = zero-area box; giou = 1 + (C - U) / C with C = U = 4
        (IOU, "inverted_pred", 1.0),
        ("giou", "inverted_pred", 1.0),
        # diou: raw centres (1,1) vs (1,1), so no distance penalty
        ("diou", "inverted_pred", 1.0),
        # far apart: giou and diou saturate towards 2
        ("giou", "far_apart", 2.0),
        ("diou", "far_apart", 2.0 - 2e-4),  # 1 + (1e4 / (1e4 + 1))^2
        ("eiou", "far_apart", 2.0 - 2e-4),  # same sizes: no width/height term
        ("mpdiou", "far_apart", 3.0 - 4e-4),  # each corner distance^2 / c^2 -> 1
        ("piou", "far_apart", 2.0),
        ("siou", "far_apart", 2.0 - math.exp(-1.0)),  # 45 degrees: gamma = 1, rho_x = rho_y -> 1
        (IOU, "far_apart", 1.0),
        # concentric: no distance penalty, iou = 4/16
        ("diou", "concentric", 0.75),
    ],
)
def test_degenerate_documented_values(name, case, expected):
    b, g = DEGENERATE[case]
    assert _loss(name, b, g) == pytest.approx(expected, abs=1e-4)


def test_inverted_box_is_pulled_back_by_distance_terms():
    # an inverted pred has zero area, but its raw corners still enter distances, so mpdiou has a gradient
    p = torch.tensor([[2.0, 2.0, 0.0, 0.0]], requires_grad=True)
    losses.build("mpdiou")(p, torch.tensor([[0.0, 0.0, 2.0, 2.0]])).backward()
    assert p.grad.abs().sum() > 0
    # pushing x1 down / x2 up reduces the corner distances
    assert p.grad[0, 0] > 0 and p.grad[0, 2] < 0


# --------------------------------------------------------------------------- AMP / dtypes


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_with_large_coordinates(name, dtype):
    p, t = _inputs(name, n=16, seed=12, dtype=torch.float32)
    if name != "gwd":
        p, t = p * 600, t * 600  # coordinates up to ~5e4: areas overflow fp16, not the float32 we compute in
    p = p.to(dtype).requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = losses.build(name)(p, t.to(dtype))
    assert value.dtype == torch.float32 and torch.isfinite(value)
    value.backward()
    assert torch.isfinite(p.grad.float()).all()


# --------------------------------------------------------------------------- consistency between variants


@pytest.mark.parametrize("base", list(PY))
def test_inner_iou_with_ratio_one_is_the_base(base):
    p, t = _random_boxes(10, seed=13)
    inner = losses.build("inner_iou", base=base, ratio=1.0, reduction="none")(p, t)
    plain = losses.build(IOU if base == "iou" else base, reduction="none")(p, t)
    torch.testing.assert_close(inner, plain)


@pytest.mark.parametrize("base", ["iou", "giou", "diou", "ciou"])
def test_alpha_iou_with_alpha_one_is_the_base(base):
    p, t = _random_boxes(10, seed=14)
    powered = losses.build("alpha_iou", base=base, alpha=1.0, reduction="none")(p, t)
    plain = losses.build(IOU if base == "iou" else base, reduction="none")(p, t)
    torch.testing.assert_close(powered, plain)


def test_focal_eiou_gamma_zero_is_eiou_and_detach_changes_only_gradient():
    p, t = _random_boxes(10, seed=15)
    torch.testing.assert_close(losses.build("focal_eiou", gamma=0.0)(p, t), losses.build("eiou")(p, t))
    a, b = p.clone().requires_grad_(True), p.clone().requires_grad_(True)
    va = losses.build("focal_eiou")(a, t)
    vb = losses.build("focal_eiou", detach_weight=True)(b, t)
    torch.testing.assert_close(va, vb)
    va.backward()
    vb.backward()
    assert not torch.allclose(a.grad, b.grad)


# --------------------------------------------------------------------------- registry


@pytest.mark.parametrize("name", ALL)
def test_build_forms_and_info(name):
    by_dict = losses.build({"name": name, "params": {"reduction": "sum", "eps": 1e-6}})
    assert by_dict.reduction == "sum" and by_dict.eps == 1e-6
    card = losses.info(name)
    assert card.family == "overlap" and card.formula and card.reference and card.summary
    assert name in losses.available(family="overlap", task="detection")


def test_bad_params_are_config_errors():
    for name, params in [
        ("giou", {"box_format": "yxyx"}),
        ("alpha_iou", {"base": "siou"}),
        ("inner_iou", {"base": "gwd"}),
        ("gwd", {"fun": "exp"}),
        ("mpdiou", {"image_size": (0, 10)}),
        ("siou", {"thetta": 4}),
    ]:
        with pytest.raises(losses.LossConfigError, match=name):
            losses.build(name, **params)

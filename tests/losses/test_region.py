"""Region losses: hand-computed values, smp / MONAI equality, gradcheck, reductions, degenerate inputs, AMP."""

from __future__ import annotations

import inspect
import itertools
import math

import numpy as np
import pytest
import torch
from dense_inputs import check_registered, dense_inputs, run_on_meta

import losses
from losses import LossInputError, region
from losses.region import _SoftmaxStats

NAMES = [
    "dice",
    "jaccard",
    "tversky",
    "focal_tversky",
    "log_cosh_dice",
    "generalized_dice",
    "sensitivity_specificity",
    "lovasz",
]
MODES = ["binary", "multiclass", "multilabel"]


# --------------------------------------------------------------------------- numpy references


def _np_probs_onehot(probs: np.ndarray, target: np.ndarray, mode: str, ignore=None):
    """(N, C, S) probabilities, targets and validity from plain numpy (mask applied)."""
    n = probs.shape[0]
    if mode == "multiclass":
        c = probs.shape[1]
        p = probs.reshape(n, c, -1)
        t = target.reshape(n, -1)
        valid = np.ones_like(t, dtype=bool) if ignore is None else t != ignore
        g = np.stack([(t == k) & valid for k in range(c)], 1).astype(float)
        valid = np.repeat(valid[:, None], c, 1)
    else:
        c = 1 if mode == "binary" else probs.shape[1]
        p = probs.reshape(n, c, -1)
        t = target.reshape(n, c, -1).astype(float)
        valid = np.ones_like(t, dtype=bool) if ignore is None else t != ignore
        g = np.where(valid, t, 0.0)
    return np.where(valid, p, 0.0), g, valid


def _np_counts(p, g, per_image):
    axes = (2,) if per_image else (0, 2)
    tp = (p * g).sum(axes)
    fp = (p * (1 - g)).sum(axes)
    fn = ((1 - p) * g).sum(axes)
    return tp, fp, fn


def _np_tversky_loss(probs, target, mode, a, b, ignore=None, per_image=False, smooth=0.0, gamma=1.0):
    p, g, _ = _np_probs_onehot(probs, target, mode, ignore)
    tp, fp, fn = _np_counts(p, g, per_image)
    ti = (tp + smooth) / np.maximum(tp + a * fp + b * fn + smooth, 1e-7)
    present = (tp + fn) > 0
    return np.where(present, (1 - ti) ** gamma, 0.0)


def _np_jaccard_loss_of_set(errors: np.ndarray, fg: np.ndarray) -> float:
    """Berman's Delta_J for a 0/1 error vector: 1 - |G minus M| / |G union M|."""
    m = errors > 0.5
    gset = fg > 0.5
    union = (gset | m).sum()
    return 0.0 if union == 0 else 1.0 - (gset & ~m).sum() / union


def _np_lovasz_row(errors: np.ndarray, fg: np.ndarray) -> float:
    """Lovasz extension by its definition: sum_k e_(k) (Delta(top k) - Delta(top k-1))."""
    order = sorted(range(len(errors)), key=lambda i: -errors[i])
    total, prev = 0.0, 0.0
    for k in range(1, len(order) + 1):
        ind = np.zeros(len(errors))
        ind[order[:k]] = 1.0
        cur = _np_jaccard_loss_of_set(ind, fg)
        total += errors[order[k - 1]] * (cur - prev)
        prev = cur
    return total


# --------------------------------------------------------------------------- hand-computed values


def test_dice_jaccard_tversky_hand_binary():
    # probabilities p = [0.9, 0.4, 0.2, 0.7], target g = [1, 1, 0, 0]
    p = torch.tensor([[0.9, 0.4, 0.2, 0.7]])
    g = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    tp, fp, fn = 0.9 + 0.4, 0.2 + 0.7, 0.1 + 0.6
    kw = dict(mode="binary", from_logits=False)
    assert losses.build("dice", **kw)(p, g).item() == pytest.approx(1 - 2 * tp / (2 * tp + fp + fn), abs=1e-6)
    assert losses.build("jaccard", **kw)(p, g).item() == pytest.approx(1 - tp / (tp + fp + fn), abs=1e-6)
    expect_t = 1 - tp / (tp + 0.3 * fp + 0.7 * fn)
    assert losses.build("tversky", alpha=0.3, beta=0.7, **kw)(p, g).item() == pytest.approx(expect_t, abs=1e-6)
    assert losses.build("dice", log_loss=True, **kw)(p, g).item() == pytest.approx(
        -math.log(2 * tp / (2 * tp + fp + fn)), abs=1e-6
    )
    # smooth enters numerator and denominator of the smp form (tp + s) / (tp + fp/2 + fn/2 + s)
    assert losses.build("dice", smooth=1.0, **kw)(p, g).item() == pytest.approx(
        1 - (tp + 1) / (tp + fp / 2 + fn / 2 + 1), abs=1e-6
    )
    # from logits: sigmoid applied
    logits = torch.logit(p)
    assert losses.build("dice", mode="binary")(logits, g).item() == pytest.approx(
        1 - 2 * tp / (2 * tp + fp + fn), abs=1e-5
    )


def test_multiclass_hand_with_ignore_index():
    # 1 image, 3 classes, 4 pixels; pixel 3 is void (255)
    probs = torch.tensor([[[0.7, 0.1, 0.2, 0.3], [0.2, 0.8, 0.1, 0.3], [0.1, 0.1, 0.7, 0.4]]])
    target = torch.tensor([[0, 1, 0, 255]])
    # valid pixels 0..2; per class tp/fp/fn
    tp = [0.7 + 0.2, 0.8, 0.0]
    fp = [0.1, 0.2 + 0.1, 0.1 + 0.1 + 0.7]
    fn = [0.3 + 0.8, 0.2, 0.0]
    dice = [1 - 2 * tp[c] / (2 * tp[c] + fp[c] + fn[c]) for c in range(2)] + [0.0]  # class 2 absent -> 0
    crit = losses.build("dice", mode="multiclass", from_logits=False, ignore_index=255, reduction="none")
    assert crit(probs, target).tolist() == pytest.approx(dice, abs=1e-6)
    crit = losses.build("dice", mode="multiclass", from_logits=False, ignore_index=255)
    assert crit(probs, target).item() == pytest.approx(sum(dice) / 3, abs=1e-6)
    jac = [1 - tp[c] / (tp[c] + fp[c] + fn[c]) for c in range(2)]
    crit = losses.build("jaccard", mode="multiclass", from_logits=False, ignore_index=255, classes=[0, 1])
    assert crit(probs, target).item() == pytest.approx(sum(jac) / 2, abs=1e-6)
    crit = losses.build("jaccard", mode="multiclass", from_logits=False, ignore_index=255, class_weights=[1, 3, 0])
    assert crit(probs, target).item() == pytest.approx((jac[0] + 3 * jac[1]) / 4, abs=1e-6)


def test_dice_3d_hand():
    # (N=1, C=2, D=2, H=1, W=2) probabilities, class-index target (1, 2, 1, 2)
    p1 = torch.tensor([0.9, 0.2, 0.6, 0.1])  # class-1 probability per voxel
    probs = torch.stack([1 - p1, p1]).reshape(1, 2, 2, 1, 2)
    target = torch.tensor([1, 0, 1, 1]).reshape(1, 2, 1, 2)
    g1 = np.array([1, 0, 1, 1.0])
    pn = p1.numpy().astype(float)
    out = []
    for pc, gc in ((1 - pn, 1 - g1), (pn, g1)):
        tp, fp, fn = (pc * gc).sum(), (pc * (1 - gc)).sum(), ((1 - pc) * gc).sum()
        out.append(1 - 2 * tp / (2 * tp + fp + fn))
    crit = losses.build("dice", mode="multiclass", from_logits=False, reduction="none")
    assert crit(probs, target).tolist() == pytest.approx(out, abs=1e-6)
    # per_image on a 2-image 3D batch equals the per-image numpy reference
    x, t = dense_inputs("multiclass", shape=(2, 3, 2, 3, 4), seed=3)
    probs = torch.softmax(x, 1).numpy().astype(float)
    ref = _np_tversky_loss(probs, t.numpy(), "multiclass", 0.5, 0.5, per_image=True)
    got = losses.build("dice", per_image=True, reduction="none")(x, t)
    assert got.shape == (2, 3)
    np.testing.assert_allclose(got.numpy(), ref, atol=1e-5)


def test_focal_tversky_log_cosh_gdl_ss_hand():
    # two classes over 4 pixels (multiclass probabilities), all classes present
    p1 = np.array([0.9, 0.4, 0.2, 0.7])
    g1 = np.array([1.0, 1.0, 0.0, 0.0])
    probs = torch.tensor(np.stack([1 - p1, p1])[None], dtype=torch.float32)  # (1, 2, 4)
    target = torch.tensor(g1[None]).long()
    per_class = []
    for pc, gc in ((1 - p1, 1 - g1), (p1, g1)):
        per_class.append(((pc * gc).sum(), (pc * (1 - gc)).sum(), ((1 - pc) * gc).sum(), pc, gc))
    kw = dict(mode="multiclass", from_logits=False)
    ti = [tp / (tp + 0.3 * fp + 0.7 * fn) for tp, fp, fn, _, _ in per_class]
    expect = np.mean([(1 - v) ** 0.75 for v in ti])
    got = losses.build("focal_tversky", alpha=0.3, beta=0.7, gamma=0.75, **kw)(probs, target)
    assert got.item() == pytest.approx(expect, abs=1e-6)
    dl = [1 - 2 * tp / (2 * tp + fp + fn) for tp, fp, fn, _, _ in per_class]
    got = losses.build("log_cosh_dice", **kw)(probs, target)
    assert got.item() == pytest.approx(np.mean([math.log(math.cosh(v)) for v in dl]), abs=1e-6)
    w = [1 / (tp + fn) ** 2 for tp, fp, fn, _, _ in per_class]
    num = sum(wc * tp for wc, (tp, _, _, _, _) in zip(w, per_class))
    den = sum(wc * (2 * tp + fp + fn) for wc, (tp, fp, fn, _, _) in zip(w, per_class))
    assert losses.build("generalized_dice", **kw)(probs, target).item() == pytest.approx(1 - 2 * num / den, abs=1e-6)
    r = 0.05
    ss = [
        r * (((gc - pc) ** 2) * gc).sum() / gc.sum() + (1 - r) * (((gc - pc) ** 2) * (1 - gc)).sum() / (1 - gc).sum()
        for _, _, _, pc, gc in per_class
    ]
    got = losses.build("sensitivity_specificity", r=r, reduction="none", **kw)(probs, target)
    assert got.tolist() == pytest.approx(ss, abs=1e-6)
    # binary + ignore: the void pixel leaves both sums; dense path agrees with the hand value
    pb = torch.tensor([[0.9, 0.4, 0.2, 0.7, 0.5]])
    gb = torch.tensor([[1.0, 1.0, 0.0, 0.0, 9.0]])
    crit = losses.build("sensitivity_specificity", r=r, mode="binary", from_logits=False, ignore_index=9)
    assert crit(pb, gb).item() == pytest.approx(ss[1], abs=1e-6)
    # generalised Dice: an absent class takes the largest present weight (MONAI); none present -> 0
    crit = losses.build("generalized_dice", mode="multiclass", from_logits=False, reduction="none", per_image=True)
    probs3 = torch.cat([probs, torch.zeros(1, 1, 4)], 1)  # class 2 absent and never predicted
    assert crit(probs3, target).item() == pytest.approx(1 - 2 * num / den, abs=1e-6)
    assert losses.build("generalized_dice", mode="binary")(torch.randn(2, 1, 3), torch.zeros(2, 3)).item() == 0.0


def test_out_of_range_class_index_raises():
    with pytest.raises(LossInputError, match="dice"):
        losses.build("dice")(torch.randn(1, 3, 2, 2), torch.full((1, 2, 2), 255))
    with pytest.raises(LossInputError, match="lovasz"):
        losses.build("lovasz")(torch.randn(1, 3, 2, 2), torch.full((1, 2, 2), 3))


def test_lovasz_binary_errors_equal_jaccard_loss():
    # logits in {0, +-1}: hinge errors are exactly 0 or 1, so Lovasz = Jaccard loss of the error set
    g = torch.tensor([[1.0, 1.0, 0.0, 0.0, 1.0]])
    x = torch.tensor([[1.0, 0.0, -1.0, 0.0, 2.0]])  # errors [0, 1, 0, 1, 0]
    errors = np.array([0, 1, 0, 1, 0.0])
    expect = _np_jaccard_loss_of_set(errors, g.numpy()[0])  # 1 - |{0,4}| / |{0,1,3,4}| = 0.5
    assert expect == pytest.approx(0.5)
    assert losses.build("lovasz", mode="binary")(x, g).item() == pytest.approx(expect, abs=1e-6)


def test_lovasz_softmax_hand_and_3d_ignore():
    # 1 image, 2 classes, 3 pixels + 1 void; probabilities given directly
    p1 = torch.tensor([0.8, 0.3, 0.6, 0.5])
    probs = torch.stack([1 - p1, p1]).reshape(1, 2, 4)
    target = torch.tensor([[1, 0, 0, 7]])
    fg1 = np.array([1, 0, 0.0])
    e1 = np.abs(fg1 - np.array([0.8, 0.3, 0.6]))
    e0 = np.abs((1 - fg1) - np.array([0.2, 0.7, 0.4]))
    expect = [_np_lovasz_row(e0, 1 - fg1), _np_lovasz_row(e1, fg1)]
    crit = losses.build("lovasz", mode="multiclass", from_logits=False, ignore_index=7, reduction="none")
    assert crit(probs, target).tolist() == pytest.approx(expect, abs=1e-6)
    # 3D, per image, with void voxels: compare to the definition image by image
    x, t = dense_inputs("multiclass", shape=(2, 3, 2, 2, 3), seed=5)
    t[0, 0, 0] = -1
    probs = torch.softmax(x, 1)
    got = losses.build("lovasz", per_image=True, ignore_index=-1, reduction="none")(x, t)
    for n, c in itertools.product(range(2), range(3)):
        valid = (t[n] != -1).flatten().numpy()
        fg = (t[n].flatten().numpy() == c)[valid].astype(float)
        err = np.abs(fg - probs[n, c].flatten().double().numpy()[valid])
        expect = _np_lovasz_row(err, fg) if fg.sum() > 0 else 0.0
        assert got[n, c].item() == pytest.approx(expect, abs=1e-5)


# --------------------------------------------------------------------------- reference libraries


SMP_PAIRS = [("dice", "DiceLoss", {}), ("jaccard", "JaccardLoss", {}), ("tversky", "TverskyLoss", {})]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name,cls,kw", SMP_PAIRS)
@pytest.mark.parametrize("ignore", [None, 255])
@pytest.mark.parametrize("smooth", [0.0, 1.0])
def test_matches_smp_overlap(name, cls, kw, mode, ignore, smooth):
    from segmentation_models_pytorch import losses as smp_losses

    x, t = dense_inputs(mode, seed=1)
    if ignore is not None:
        t = t.clone()
        t.view(-1)[::7] = ignore
    extra = dict(alpha=0.3, beta=0.7) if name == "tversky" else {}
    ours = losses.build(name, mode=mode, ignore_index=ignore, smooth=smooth, **extra)(x, t)
    ref = getattr(smp_losses, cls)(mode, ignore_index=ignore, smooth=smooth, **extra)(x, t)
    assert ours.item() == pytest.approx(ref.item(), abs=1e-5)


@pytest.mark.parametrize("mode", ["binary", "multiclass"])
@pytest.mark.parametrize("per_image", [False, True])
@pytest.mark.parametrize("ignore", [None, 255])
@pytest.mark.parametrize("spatial", [(4, 5), (2, 3, 4)])
def test_lovasz_matches_smp(mode, per_image, ignore, spatial):
    from segmentation_models_pytorch import losses as smp_losses

    x, t = dense_inputs(mode, shape=(3, 4, *spatial), seed=2)
    if ignore is not None:
        t = t.clone()
        t.view(-1)[::5] = ignore
    ours = losses.build("lovasz", mode=mode, per_image=per_image, ignore_index=ignore)(x, t)
    ref = smp_losses.LovaszLoss(mode, per_image=per_image, ignore_index=ignore)(x, t)
    assert ours.item() == pytest.approx(ref.item(), abs=1e-5)


def test_lovasz_multilabel_is_per_channel_hinge():
    from segmentation_models_pytorch import losses as smp_losses

    x, t = dense_inputs("multilabel", seed=4)
    got = losses.build("lovasz", mode="multilabel", reduction="none")(x, t)
    ref = [smp_losses.LovaszLoss("binary")(x[:, c], t[:, c]).item() for c in range(x.shape[1])]
    assert got.tolist() == pytest.approx(ref, abs=1e-5)


@pytest.mark.parametrize("per_image", [False, True])
def test_matches_monai(per_image):
    from monai.losses import DiceLoss, GeneralizedDiceLoss, TverskyLoss

    x, t = dense_inputs("multiclass", shape=(2, 3, 6, 7), seed=6)
    t[:, 0, :3] = torch.arange(3)  # every class present in every image (MONAI does not mask absent ones)
    common = dict(softmax=True, to_onehot_y=True, batch=not per_image)
    tm = t.unsqueeze(1)
    # ours with smooth s == MONAI with smooth_nr = smooth_dr = 2 s (MONAI's numerator is 2 tp + s)
    ref = DiceLoss(smooth_nr=0.2, smooth_dr=0.2, **common)(x, tm)
    assert losses.build("dice", smooth=0.1, per_image=per_image)(x, t).item() == pytest.approx(ref.item(), abs=1e-5)
    ref = TverskyLoss(alpha=0.3, beta=0.7, smooth_nr=1e-5, smooth_dr=1e-5, **common)(x, tm)
    ours = losses.build("tversky", alpha=0.3, beta=0.7, smooth=1e-5, per_image=per_image)(x, t)
    assert ours.item() == pytest.approx(ref.item(), abs=1e-5)
    ref = GeneralizedDiceLoss(smooth_nr=1e-5, smooth_dr=1e-5, **common)(x, tm)
    assert losses.build("generalized_dice", smooth=1e-5, per_image=per_image)(x, t).item() == pytest.approx(
        ref.item(), abs=1e-5
    )


# --------------------------------------------------------------------------- generic properties


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("mode", MODES)
def test_gradcheck_float64(name, mode):
    x, t = dense_inputs(mode, shape=(2, 3, 3, 2), seed=7, dtype=torch.float64)
    if mode != "multiclass" and name != "lovasz":
        t = t.clone()
        t.view(-1)[0] = 255  # exercise ignore_index in the graph
        crit = losses.build(name, mode=mode, ignore_index=255)
    else:
        crit = losses.build(name, mode=mode)
    x.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda inp: crit(inp, t), (x,), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_reductions(name):
    x, t = dense_inputs("multiclass", seed=8)
    none = losses.build(name, reduction="none")(x, t)
    mean = losses.build(name, reduction="mean")(x, t)
    total = losses.build(name, reduction="sum")(x, t)
    assert mean.dim() == 0 and total.dim() == 0
    if name == "generalized_dice":
        assert none.shape == ()
        per_img = losses.build(name, reduction="none", per_image=True)(x, t)
        assert per_img.shape == (2,)
    else:
        assert none.shape == (3,)
        assert losses.build(name, reduction="none", per_image=True)(x, t).shape == (2, 3)
    assert total.item() == pytest.approx(none.sum().item(), abs=1e-6)
    assert mean.item() == pytest.approx(none.mean().item(), abs=1e-6)  # every class present here


def test_absent_class_in_mean_denominator():
    # dice family (smp): an absent class is 0 and still counts in the mean; lovasz (Berman): skipped
    x, t = dense_inputs("multiclass", seed=12)
    t = t.clamp(max=1)  # class 2 absent
    none = losses.build("dice", reduction="none")(x, t)
    assert none[2] == 0 and losses.build("dice")(x, t).item() == pytest.approx(none.sum().item() / 3, abs=1e-6)
    none = losses.build("lovasz", reduction="none")(x, t)
    assert none[2] == 0 and losses.build("lovasz")(x, t).item() == pytest.approx(none.sum().item() / 2, abs=1e-6)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("mode", MODES)
def test_perfect_prediction_is_minimum(name, mode):
    _, t = dense_inputs(mode, seed=9)
    if mode == "multiclass":
        x = torch.nn.functional.one_hot(t, 3).movedim(-1, 1).float() * 40 - 20
    else:
        x = (t * 2 - 1).float() * 20
        x = x.unsqueeze(1) if mode == "binary" else x
    crit = losses.build(name, mode=mode)
    assert crit(x, t).item() == pytest.approx(0.0, abs=1e-5)
    xr, _ = dense_inputs(mode, seed=9)
    assert crit(xr, t).item() > 1e-2


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("mode", MODES)
def test_empty_and_all_ignored_are_finite(name, mode):
    x, t = dense_inputs(mode, seed=10)
    x.requires_grad_(True)
    empty = torch.zeros_like(t)  # no foreground anywhere (multiclass: only class 0)
    crit = losses.build(name, mode=mode, ignore_index=255)
    val = crit(x, empty)
    (grad,) = torch.autograd.grad(val, x)
    assert torch.isfinite(val) and torch.isfinite(grad).all()
    ignored = torch.full_like(t, 255)
    val = crit(x, ignored)
    (grad,) = torch.autograd.grad(val, x)
    assert val.item() == 0.0 and torch.isfinite(grad).all() and grad.abs().max() == 0


@pytest.mark.parametrize("name", ["dice", "jaccard", "tversky", "focal_tversky", "log_cosh_dice"])
def test_empty_binary_mask_contributes_zero(name):
    # smp semantics: a class absent from the target contributes 0 (whatever is predicted)
    x = torch.randn(2, 1, 4, 4)
    assert losses.build(name, mode="binary")(x, torch.zeros(2, 4, 4)).item() == 0.0


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("mode", ["binary", "multiclass"])
def test_bf16_autocast_and_fp16_large_logits(name, mode, check_low_precision):
    x, t = dense_inputs(mode, seed=11, scale=1e4)
    check_low_precision(losses.build(name, mode=mode), x.float(), t)


@pytest.mark.parametrize("name", NAMES)
def test_build_and_info(name):
    check_registered(name, "region")


@pytest.mark.parametrize("name", NAMES)
def test_wrong_shapes_raise(name):
    crit = losses.build(name, mode="multiclass")
    with pytest.raises(LossInputError, match=name):
        crit(torch.randn(2, 3, 4, 4), torch.zeros(2, 5, 4, dtype=torch.long))
    with pytest.raises(LossInputError, match=name):
        losses.build(name, mode="multilabel")(torch.randn(2, 3, 4, 4), torch.zeros(2, 4, 4))


def test_bad_params_raise():
    with pytest.raises(losses.LossConfigError):
        losses.build("dice", mode="nope")
    with pytest.raises(losses.LossConfigError):
        losses.build("dice", mode="binary", classes=[0])


# --------------------------------------------------------------------------- the fused kernel, options, sync policy


@pytest.mark.parametrize("ignore", [False, True])
@pytest.mark.parametrize("log_likelihood,other", [(False, False), (True, False), (True, True), (False, True)])
def test_softmax_stats_kernel_values_and_gradcheck(ignore, log_likelihood, other):
    g = torch.Generator().manual_seed(13)
    x = torch.randn(2, 3, 5, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 3, (2, 5), generator=g)
    mask = (torch.rand(2, 5, generator=g) > 0.3).double() if ignore else None
    tp, sum_p, log_p, other_sum = _SoftmaxStats.apply(x, y, mask, log_likelihood, other, 1e-7)
    # the same quantities by their definitions, with autograd
    v = torch.ones(2, 5, dtype=torch.float64) if mask is None else mask
    p = torch.softmax(x, 1) * v.unsqueeze(1)
    onehot = torch.nn.functional.one_hot(y, 3).movedim(-1, 1).double()
    torch.testing.assert_close(tp, (p * onehot).sum(-1))
    torch.testing.assert_close(sum_p, p.sum(-1))
    if log_likelihood:
        torch.testing.assert_close(log_p, (torch.log_softmax(x, 1) * onehot).sum(1) * v)
    if other:
        torch.testing.assert_close(other_sum, -(torch.log(1 - p) * (1 - onehot)).sum(1))

    def weighted(z):  # every output in the graph, with non-uniform weights
        outs = _SoftmaxStats.apply(z, y, mask, log_likelihood, other, 1e-7)
        weights = [torch.linspace(0.5, 2.0, o.numel(), dtype=o.dtype).view_as(o) for o in outs if o is not None]
        return sum((o * w).sum() for o, w in zip([o for o in outs if o is not None], weights))

    assert torch.autograd.gradcheck(weighted, (x,))


def test_softmax_stats_kernel_other_term_saturated():
    # a confidently wrong class (p_c -> 1, c != y) sits in the eps clamp: value -ln(eps), zero gradient, as autograd
    x = torch.tensor([[[40.0], [0.0], [0.0]]], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([[1]])
    _, _, _, other_sum = _SoftmaxStats.apply(x, y, None, False, True, 1e-7)
    xr = x.detach().clone().requires_grad_(True)
    p = torch.softmax(xr, 1)
    ref = -torch.log1p(-p.clamp(0.0, 1 - 1e-7))[:, [0, 2]].sum(1)
    torch.testing.assert_close(other_sum, ref)
    torch.testing.assert_close(torch.autograd.grad(other_sum.sum(), x)[0], torch.autograd.grad(ref.sum(), xr)[0])


FUNCTIONAL = {
    "dice": (region.dice_loss, {"log_loss": True}),
    "jaccard": (region.jaccard_loss, {}),
    "tversky": (region.tversky_loss, {"alpha": 0.2, "beta": 0.8}),
    "focal_tversky": (region.focal_tversky_loss, {"gamma": 0.5}),
    "log_cosh_dice": (region.log_cosh_dice_loss, {}),
    "generalized_dice": (region.generalized_dice_loss, {}),
    "sensitivity_specificity": (region.sensitivity_specificity_loss, {"r": 0.3}),
    "lovasz": (region.lovasz_loss, {}),
}


@pytest.mark.parametrize("name", NAMES)
def test_functional_core_equals_module(name):
    fn, params = FUNCTIONAL[name]
    x, t = dense_inputs("multiclass", seed=14)
    t[0, 0] = 255
    options = {"ignore_index": 255, "per_image": True, "class_weights": [1.0, 2.0, 0.5]}
    torch.testing.assert_close(fn(x, t, **params, **options), losses.build(name, **params, **options)(x, t))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("mode", MODES)
def test_no_host_read_in_forward(name, mode):
    x, t = dense_inputs(mode, seed=15)
    assert run_on_meta(losses.build(name, mode=mode, ignore_index=255), x, t).shape == x.shape


def test_family_options_are_declared_once():
    entry = losses.get("tversky")
    sig = inspect.signature(entry.cls.__init__)
    own = [p.name for p in sig.parameters.values() if p.kind is p.POSITIONAL_OR_KEYWORD][1:]
    shared = [p.name for p in sig.parameters.values() if p.kind is p.KEYWORD_ONLY]
    assert own == ["alpha", "beta"] and shared == [o.name for o in region.REGION.options]
    assert list(losses.info("tversky").args) == own + shared  # Args: lines appended in signature order
    assert "smooth" not in losses.get("lovasz").parameters()  # lovasz takes the REGION options less smooth/eps
    with pytest.raises(losses.LossConfigError, match="unknown parameter"):
        losses.build("lovasz", smooth=1.0)
    with pytest.raises(TypeError, match="unexpected keyword"):  # direct construction: the options' own check
        region.LovaszLoss(smooth=1.0)
    with pytest.raises(TypeError, match="unexpected keyword"):
        region.dice_loss(*dense_inputs("multiclass"), alpha=0.5)
    with pytest.raises(ValueError, match="smooth must be >= 0"):
        region.dice_loss(*dense_inputs("multiclass"), smooth=-1.0)

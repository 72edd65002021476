"""Angular-margin heads: the papers' target logits, gradients, reference equality, AMP, state, Partial FC, DDP."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F
from pytorch_metric_learning import losses as pml

import losses
from losses.angular import AngularHead

ANGULAR = losses.available(family="angular")
C, D = 5, 4


def _head(name: str, **params) -> AngularHead:
    torch.manual_seed(0)
    return losses.build(name, num_classes=C, embedding_size=D, **params)


def _batch(n: int = 6, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return 3 * torch.randn(n, D, generator=g), torch.randint(0, C, (n,), generator=g)


def _cos(head: AngularHead, x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x, dim=1) @ F.normalize(head.weight, dim=1).T


# --------------------------------------------------------------------------- formulas


def test_cosface_target_logit_is_s_times_cos_minus_m():
    head = _head("cosface", scale=30.0, margin=0.35)
    x, y = _batch()
    logits, cos = head.logits(x, y), _cos(head, x).detach()
    expected = 30.0 * (cos - 0.35 * F.one_hot(y, C))
    torch.testing.assert_close(logits, expected)
    assert losses.get("am_softmax") is losses.get("cosface")


def test_arcface_target_logit_is_s_cos_theta_plus_m_and_the_fallback_beyond_pi():
    head = _head("arcface", scale=10.0, margin=0.5)
    head.weight.data = torch.eye(C, D)
    y = torch.tensor([0, 0, 1])
    # target angles 0.3, 1.2 (regular) and 2.9 > pi - 0.5 (fallback)
    angles = torch.tensor([0.3, 1.2, 2.9])
    x = torch.zeros(3, D)
    x[0, :2] = torch.stack((angles[0].cos(), angles[0].sin()))
    x[1, :2] = torch.stack((angles[1].cos(), angles[1].sin()))
    x[2, 1], x[2, 2] = math.cos(2.9), math.sin(2.9)  # angle 2.9 to class 1's axis
    target = head.logits(x, y).gather(1, y[:, None]).squeeze(1)
    torch.testing.assert_close(target[:2], 10.0 * torch.cos(angles[:2] + 0.5))
    assert float(target[2]) == pytest.approx(10.0 * (math.cos(2.9) - 0.5 * math.sin(0.5)), rel=1e-5)
    # the fallback keeps the logit decreasing in theta: below the value at the switch point
    assert target[2] < 10.0 * math.cos(math.pi)


def test_arcface_easy_margin_leaves_obtuse_targets_unchanged():
    head = _head("arcface", scale=1.0, margin=0.5, easy_margin=True)
    head.weight.data = torch.eye(C, D)
    x = torch.tensor([[math.cos(2.0), math.sin(2.0), 0.0, 0.0], [math.cos(0.4), math.sin(0.4), 0.0, 0.0]])
    target = head.logits(x, torch.tensor([0, 0]))[:, 0]
    torch.testing.assert_close(target, torch.tensor([math.cos(2.0), math.cos(0.9)]))


def test_sphereface_psi_is_monotonic_piecewise_cos_m_theta():
    head = _head("sphereface", margin=4)
    head.weight.data = torch.eye(C, D)
    theta = torch.linspace(0.05, 3.1, 40)
    x = torch.zeros(40, D)
    x[:, 0], x[:, 1] = 2 * theta.cos(), 2 * theta.sin()
    psi = head.logits(x, torch.zeros(40, dtype=torch.long))[:, 0] / 2  # |x| = 2
    k = torch.floor(theta * 4 / math.pi)
    torch.testing.assert_close(psi, (-1) ** k * torch.cos(4 * theta) - 2 * k, atol=1e-5, rtol=1e-5)
    assert (psi.diff() < 0).all()


def test_subcenter_cosine_is_the_max_over_sub_centres():
    head = _head("subcenter_arcface", sub_centers=3, margin=0.0, scale=1.0)
    x, y = _batch()
    cos = _cos(head, x).view(-1, C, 3).amax(2).detach()
    torch.testing.assert_close(head.logits(x, y), cos)


def test_mv_softmax_reweights_only_misclassified_negatives():
    head = _head("mv_softmax", scale=1.0, margin=0.35, mv_weight=1.2)
    x, y = _batch(8)
    cos = _cos(head, x).detach()
    target = cos.gather(1, y[:, None]) - 0.35
    hard = (cos > target) & ~F.one_hot(y, C).bool()
    expected = torch.where(hard, 1.2 * cos + 0.2, cos).scatter(1, y[:, None], target)
    assert hard.any()
    torch.testing.assert_close(head.logits(x, y), expected)


def test_curricularface_t_update_and_hard_negative_modulation():
    head = _head("curricularface", scale=1.0, margin=0.5).train()
    x, y = _batch(8)
    cos = _cos(head, x).detach()
    cos_y = cos.gather(1, y[:, None])
    head(x, y)
    torch.testing.assert_close(head.t, 0.01 * cos_y.mean())
    t = head.t.clone()
    head(x, y)  # second step: t = 0.01 mean + 0.99 t
    torch.testing.assert_close(head.t, 0.01 * cos_y.mean() + 0.99 * t)
    t = head.t.clone()
    cos_ym = torch.cos(torch.acos(cos_y) + 0.5)
    hard = cos > cos_ym
    logits = head.logits(x, y)  # eval: uses t, does not update it
    assert torch.equal(head.t, t)
    negatives = ~F.one_hot(y, C).bool()
    assert (hard & negatives).any()
    torch.testing.assert_close(logits[hard & negatives], (cos * (t + cos))[hard & negatives])
    torch.testing.assert_close(logits[~hard & negatives], cos[~hard & negatives])


def test_adaface_margin_and_norm_statistics():
    head = _head("adaface", scale=1.0, margin=0.4, h=0.333, t_alpha=0.5).train()
    x, y = _batch(8)
    norms = x.norm(dim=1)
    head(x, y)
    mean = 0.5 * norms.mean() + 0.5 * 20.0
    std = 0.5 * norms.std() + 0.5 * 100.0
    torch.testing.assert_close(head.batch_mean, mean)
    torch.testing.assert_close(head.batch_std, std)
    z = (0.333 * (norms - mean) / (std + 1e-3)).clamp(-1, 1)
    theta = torch.acos(_cos(head, x).detach().gather(1, y[:, None]).squeeze(1))
    expected = torch.cos(theta - 0.4 * z) - (0.4 + 0.4 * z)
    torch.testing.assert_close(head.logits(x, y).gather(1, y[:, None]).squeeze(1), expected)


def _sface_reference(cos: torch.Tensor, y: torch.Tensor, s: float, k: float, a: float, b: float) -> torch.Tensor:
    """SFace as the authors' code computes it (one-hot masks, no_grad sigmoid weights, batch means)."""
    one_hot = F.one_hot(y, cos.shape[1]).to(cos.dtype)
    output = s * cos
    wyi_x = (one_hot * output).sum(1)
    with torch.no_grad():
        weight_yi = 1.0 / (1.0 + torch.exp(-k * (torch.acos(wyi_x / s) - a)))
    wj = (1 - one_hot) * output
    with torch.no_grad():
        weight_j = 1.0 / (1.0 + torch.exp(k * (torch.acos(wj / s) - b)))
    return (-weight_yi * wyi_x).mean() + (weight_j * wj).sum(1).mean()


def test_sface_value_and_blocked_gradients_follow_the_paper():
    head = _head("sface", scale=64.0, k=80.0, a=0.8, b=1.23)
    head.weight.data = torch.eye(C, D)
    # target angle 0.5 (< a: hardly pulled), a negative at angle 1.0 (< b: pushed), the rest at pi/2
    x = torch.tensor([[math.cos(0.5), math.sin(0.5), 0.0, 0.0]])
    cos = F.normalize(x, dim=1) @ torch.eye(C, D).T  # (cos 0.5, cos 1.07 .., 0, 0, 0)
    r_intra = 1 / (1 + math.exp(-80 * (0.5 - 0.8)))
    theta_1 = math.acos(float(cos[0, 1]))
    r_inter = 1 / (1 + math.exp(80 * (theta_1 - 1.23)))
    r_half = 1 / (1 + math.exp(80 * (math.pi / 2 - 1.23)))
    expected = -r_intra * 64 * math.cos(0.5) + r_inter * 64 * float(cos[0, 1]) + 3 * r_half * 0.0
    assert float(head(x, torch.tensor([0])).detach()) == pytest.approx(expected, rel=1e-5, abs=1e-6)
    # the margin is the re-scaling of the gradient: d l / d cos_y = -s r_intra, d l / d cos_j = s r_inter
    cos_in = cos.clone().requires_grad_(True)
    rows = head.row_losses(head.margin_logits(cos_in, torch.tensor([0]), x, None), torch.tensor([0]))
    (grad,) = torch.autograd.grad(rows.sum(), cos_in)
    assert float(grad[0, 0]) == pytest.approx(-64 * r_intra, rel=1e-5)
    assert float(grad[0, 1]) == pytest.approx(64 * r_inter, rel=1e-5)


def test_sface_equals_the_authors_formulation():
    head = _head("sface")
    x, y = _batch(8, seed=4)
    x1, x2 = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    mine = head(x1, y)
    reference = _sface_reference(F.normalize(x2, dim=1) @ F.normalize(head.weight, dim=1).T, y, 64.0, 80.0, 0.8, 1.23)
    torch.testing.assert_close(mine, reference, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(torch.autograd.grad(mine, x1)[0], torch.autograd.grad(reference, x2)[0],
                               rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------- gradients


def _target_logit_grad(head: AngularHead, cos_y: float, y: int = 0) -> torch.Tensor:
    cos = torch.full((1, C), 0.1).index_fill(1, torch.tensor([y]), cos_y).requires_grad_(True)
    logits = head.margin_logits(cos, torch.tensor([y]), torch.ones(1, D), None)
    return torch.autograd.grad(logits[0, y], cos)[0][0, y]


def test_margin_gradients_are_as_documented():
    # CosFace: an additive constant, d logit_y / d cos_y = s
    assert _target_logit_grad(_head("cosface", scale=8.0), 0.6) == pytest.approx(8.0)
    # ArcFace: through cos(theta + m): s (cos m + cos theta sin m / sin theta)
    expected = 8.0 * (math.cos(0.5) + 0.6 * math.sin(0.5) / 0.8)
    assert _target_logit_grad(_head("arcface", scale=8.0), 0.6) == pytest.approx(expected, rel=1e-5)
    # CurricularFace hard negative: d (cos (t + cos)) / d cos = t + 2 cos (t itself: a buffer, no grad)
    head = _head("curricularface", scale=1.0).eval()
    head.t.fill_(0.3)
    cos = torch.tensor([[0.2, 0.9, 0.1, 0.1, 0.1]], requires_grad=True)
    logits = head.margin_logits(cos, torch.tensor([0]), torch.ones(1, D), None)
    assert not head.t.requires_grad
    assert torch.autograd.grad(logits[0, 1], cos)[0][0, 1] == pytest.approx(0.3 + 1.8)


def test_adaface_margin_size_has_no_gradient_so_the_loss_sees_only_directions():
    head = _head("adaface").train()
    x, y = _batch(8)
    x.requires_grad_(True)
    (grad,) = torch.autograd.grad(head(x, y), x)
    assert grad.abs().sum() > 0
    radial = (grad * x).sum(1)  # scaling x (changing its norm, hence the margin) does not change the loss
    assert (radial.abs() <= 1e-4 * grad.norm(dim=1) * x.norm(dim=1)).all()


@pytest.mark.parametrize("name", ANGULAR)
def test_gradcheck_float64(name):
    head = _head(name, scale=2.0) if "scale" in losses.get(name).parameters() else _head(name)
    head = head.double().eval()  # eval: fixed statistics, a deterministic function
    if name == "adaface":  # saturate z = +-1: the detached norm then changes nothing the finite differences see
        head.batch_mean.fill_(0.0), head.batch_std.fill_(0.01)
    if name == "sface":  # k = 0: the blocked sigmoid weights are the constant 1/2 the finite differences see too
        head.k = 0.0
    x, y = _batch()
    x = x.double().requires_grad_(True)
    weight = head.weight.detach().clone().requires_grad_(True)

    def wrapped(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(head, {"weight": w}, (x, y))

    assert torch.autograd.gradcheck(wrapped, (x, weight))


# --------------------------------------------------------------------------- reference library


def _pml_pair(name: str, reference: type, **pml_params):
    ours = _head(name, **{k: v for k, v in pml_params.items() if k not in ("margin_degrees",)})
    if "margin_degrees" in pml_params:
        pml_params["margin"] = pml_params.pop("margin_degrees")
    theirs = reference(num_classes=C, embedding_size=D, **pml_params)
    theirs.W.data = ours.weight.detach().T.clone()
    return ours, theirs


@pytest.mark.parametrize(
    ("name", "reference", "params"),
    [
        ("cosface", pml.CosFaceLoss, {"margin": 0.35, "scale": 64.0}),
        ("arcface", pml.ArcFaceLoss, {"margin": 0.5, "margin_degrees": math.degrees(0.5), "scale": 64.0}),
        ("a_softmax", pml.SphereFaceLoss, {"margin": 4, "scale": 1.0}),
        ("l_softmax", pml.LargeMarginSoftmaxLoss, {"margin": 4, "scale": 1.0}),
        (
            "subcenter_arcface",
            pml.SubCenterArcFaceLoss,
            {"margin": 0.4, "margin_degrees": math.degrees(0.4), "scale": 30.0, "sub_centers": 3},
        ),
    ],
)
def test_equals_pytorch_metric_learning(name, reference, params):
    ours, theirs = _pml_pair(name, reference, **params)
    x, y = _batch(16, seed=3)  # includes targets with theta > pi - m? only when the embedding is far off
    x1, x2 = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    mine, ref = ours(x1, y), theirs(x2, y)
    torch.testing.assert_close(mine, ref, rtol=1e-4, atol=1e-4)
    g1, g2 = torch.autograd.grad(mine, x1)[0], torch.autograd.grad(ref, x2)[0]
    torch.testing.assert_close(g1, g2, rtol=1e-3, atol=1e-4)


def test_arcface_fallback_equals_pytorch_metric_learning():
    ours, theirs = _pml_pair("arcface", pml.ArcFaceLoss, margin=0.5, margin_degrees=math.degrees(0.5), scale=4.0)
    y = torch.arange(4)
    x = -F.normalize(ours.weight.detach()[:4], dim=1) + 0.05 * torch.randn(4, D)  # nearly opposite: theta > pi - m
    assert (torch.acos(_cos(ours, x).detach().gather(1, y[:, None])) > math.pi - 0.5).all()
    torch.testing.assert_close(ours(x, y), theirs(x, y), rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- precision, state, errors


@pytest.mark.parametrize("name", ANGULAR)
def test_finite_in_bf16_and_fp16_with_large_scale(name, check_low_precision):
    params = {"scale": 128.0} if "scale" in losses.get(name).parameters() else {}
    head = _head(name, **params).train()
    x, y = _batch(8)
    x[0] = head.weight.detach()[y[0]] * 50  # a target cosine of 1: acos at its edge
    check_low_precision(head, x, y)


@pytest.mark.parametrize(("name", "buffers"), [("curricularface", ("t",)), ("adaface", ("batch_mean", "batch_std"))])
def test_running_statistics_are_in_the_state_dict_and_restore_exactly(name, buffers):
    head = _head(name).train()
    x, y = _batch(8)
    for _ in range(3):
        head(x, y)
    state = head.state_dict()
    assert {"weight", *buffers} <= set(state)
    fresh = _head(name)
    fresh.load_state_dict(state)
    for key in buffers:
        assert torch.equal(getattr(fresh, key), getattr(head, key))
    torch.testing.assert_close(fresh(x, y), head(x, y))


def test_bad_inputs_name_the_loss_and_shapes():
    head = _head("arcface")
    with pytest.raises(losses.LossInputError, match=r"arcface\(embeddings, labels\).*\(N, 4\)"):
        head(torch.randn(3, 5), torch.zeros(3, dtype=torch.long))
    with pytest.raises(losses.LossInputError, match="arcface"):
        head(torch.randn(3, D), torch.zeros(3))
    with pytest.raises(losses.LossInputError, match=r"outside \[0, 4\]"):
        head(torch.randn(2, D), torch.tensor([0, 5]))
    with pytest.raises(losses.LossConfigError, match="radians"):
        losses.build("arcface", num_classes=2, embedding_size=2, margin=28.6)


def test_the_slot_injects_the_sizes():
    slot = losses.Slot(("angular",), default="arcface", inject=("num_classes", "embedding_size"), inputs=("e", "y"))
    composite = losses.build_slot("cosface", slot, inject={"num_classes": 7, "embedding_size": 3}, where="loss.head")
    head = next(m for m in composite.modules() if isinstance(m, AngularHead))
    assert head.weight.shape == (7, 3)


# --------------------------------------------------------------------------- Partial FC


def test_partial_fc_rate_one_equals_the_full_head_and_sampling_keeps_positives():
    x, y = _batch(8)
    full = _head("arcface").train()
    same = _head("arcface", sample_rate=1.0).train()
    torch.testing.assert_close(full(x, y), same(x, y))

    torch.manual_seed(0)
    big = losses.build("cosface", num_classes=50, embedding_size=D, sample_rate=0.2).train()
    y = torch.tensor([3, 3, 17, 40, 41])  # a short batch: any size works
    index, remapped = big.sample_classes(y)
    assert index.numel() == 10 and set(y.tolist()) <= set(index.tolist())
    assert torch.equal(index[remapped], y)
    # the sampled loss is the full formula restricted to the sampled columns
    torch.manual_seed(5)
    value = big(x[:5], y)
    torch.manual_seed(5)
    index, remapped = big.sample_classes(y)
    logits = big.logits(x[:5], y)[:, index]
    torch.testing.assert_close(value, F.cross_entropy(logits, remapped))
    assert big.eval()(x[:5], y).isfinite()  # eval: the full softmax


SHARDABLE = [n for n in ANGULAR if losses.get(n).cls.shardable]


@pytest.mark.parametrize("name", SHARDABLE)
def test_the_sharded_code_path_on_one_rank_equals_the_replicated_head(name):
    # one block holding every class: the all-reduced softmax (target column + this block's others)
    # must reproduce cross-entropy over the full logits, values, gradients and statistics alike
    import copy

    head = _head(name).train()
    sharded = copy.deepcopy(head)
    sharded.shard(0, 1)
    x, y = _batch(9, seed=6)
    x1, x2 = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    a, b = head(x1, y), sharded(x2, y)
    torch.testing.assert_close(b, a)
    a.backward(), b.backward()
    torch.testing.assert_close(x2.grad, x1.grad)
    torch.testing.assert_close(sharded.weight.grad, head.weight.grad, rtol=1e-4, atol=1e-6)
    for key, value in head.state_dict().items():
        torch.testing.assert_close(sharded.state_dict()[key], value)
    sharded.reduction = head.reduction = "none"
    torch.testing.assert_close(sharded(x, y), head(x, y), rtol=1e-4, atol=1e-5)


def test_shard_blocks_and_what_cannot_be_sharded():
    assert [losses.angular.shard_bounds(7, r, 3) for r in range(3)] == [(0, 3), (3, 5), (5, 7)]
    head = _head("cosface", sample_rate=0.5).train()
    full = head.weight.detach().clone()
    head.shard(1, 2)  # classes 3, 4 of 5
    assert head.shard_range == (3, 5) and torch.equal(head.weight, full[3:5])
    assert torch.equal(head.local_rows(full), full[3:5]) and torch.equal(head.full_weight(), head.weight)
    assert head(*_batch(6)).isfinite()  # Partial FC inside the block; classes of the other block: target elsewhere
    with pytest.raises(RuntimeError, match="sharded"):
        head.logits(*_batch(2))
    with pytest.raises(losses.LossConfigError, match="cannot be sharded"):
        _head("l_softmax").shard(0, 2)
    with pytest.raises(losses.LossConfigError, match="5 classes cannot be sharded over 8"):
        _head("arcface").shard(0, 8)


# --------------------------------------------------------------------------- DDP

WORKER = textwrap.dedent(
    """
    import sys, torch, torch.distributed as dist
    import losses
    rank, store, out, batch = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    x, y = torch.load(batch)
    shard = slice(rank * 8, (rank + 1) * 8)
    state = {}
    for name in ("curricularface", "adaface"):
        torch.manual_seed(0)
        head = losses.build(name, num_classes=5, embedding_size=4).train()
        for _ in range(2):
            head(x[shard], y[shard])
        state.update({k: v for k, v in head.state_dict().items() if k != "weight"})
    # sharded heads: classes 0-2 on rank 0, 3-4 on rank 1; batches of 9 and 7 rows (a short one)
    part = slice(0, 9) if rank == 0 else slice(9, None)
    sharded = {}
    for name in ("arcface", "curricularface", "adaface", "sface", "subcenter_arcface"):
        torch.manual_seed(0)
        head = losses.build(name, num_classes=5, embedding_size=4).train()
        full = head.weight.detach().clone()
        head.shard()
        local = x[part].clone().requires_grad_(True)
        value = head(local, y[part])
        value.backward()
        sharded[name] = {"loss": value.detach(), "grad": local.grad, "weight_grad": head.gather_rows(head.weight.grad),
                         "full": torch.equal(head.full_weight(), full),
                         "state": {k: v for k, v in head.state_dict().items() if k != "weight"}}
    torch.save((state, sharded), out)
    dist.destroy_process_group()
    """
)


@pytest.mark.slow  # two subprocesses importing torch: ~10 s idle, up to a minute on a loaded machine
def test_ddp_running_statistics_and_sharded_heads_equal_one_process(tmp_path):
    x, y = _batch(16, seed=7)
    torch.save((x, y), tmp_path / "batch.pt")
    (tmp_path / "worker.py").write_text(WORKER)
    procs = [
        subprocess.Popen([sys.executable, str(tmp_path / "worker.py"), str(rank), str(tmp_path / "store"),
                          str(tmp_path / f"rank{rank}.pt"), str(tmp_path / "batch.pt")])
        for rank in range(2)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    ranks, shards = zip(*[torch.load(tmp_path / f"rank{r}.pt") for r in range(2)], strict=True)
    assert set(ranks[0]) == {"t", "batch_mean", "batch_std"}
    for key in ranks[0]:
        assert torch.equal(ranks[0][key], ranks[1][key]), key
    single = _head("curricularface").train()  # equal shards: the mean of the rank means is the global mean
    for _ in range(2):
        single(x, y)
    torch.testing.assert_close(ranks[0]["t"], single.t)
    assert not torch.equal(ranks[0]["t"], torch.zeros(()))
    _check_sharded_heads_equal_one_process(x, y, shards)


def _check_sharded_heads_equal_one_process(x: torch.Tensor, y: torch.Tensor, shards) -> None:
    """Class blocks over 2 gloo ranks, unequal batches: the loss of 1 process on the global batch on every rank,
    embedding gradients times the world size (DDP's averaging halves them), the weight gradient block by block."""
    for name, (first, second) in ((n, (shards[0][n], shards[1][n])) for n in shards[0]):
        torch.manual_seed(0)
        head = losses.build(name, num_classes=5, embedding_size=4).train()
        xg = x.clone().requires_grad_(True)
        value = head(xg, y)
        value.backward()
        torch.testing.assert_close(first["loss"], value.detach())
        torch.testing.assert_close(second["loss"], first["loss"])
        torch.testing.assert_close(torch.cat((first["grad"], second["grad"])) / 2, xg.grad, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(first["weight_grad"], head.weight.grad, rtol=1e-4, atol=1e-5)
        assert first["full"] and second["full"], name  # full_weight() gathers the blocks back
        for key, buffer in head.state_dict().items():
            if key != "weight":
                assert torch.equal(first["state"][key], second["state"][key]), (name, key)
                torch.testing.assert_close(first["state"][key], buffer)

"""Metric losses: pair/triplet formulas against brute force and pytorch-metric-learning, center loss, DDP gather."""

from __future__ import annotations

import itertools
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F
from pytorch_metric_learning import distances, miners, reducers
from pytorch_metric_learning import losses as pml
from pytorch_metric_learning import regularizers as pml_regularizers

import losses


def _batch(p: int = 3, k: int = 3, d: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A P x K batch: p identities with k samples each."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(p * k, d, generator=g), torch.arange(p).repeat_interleave(k)


def _dist(x: torch.Tensor) -> torch.Tensor:
    return torch.cdist(x, x)


# --------------------------------------------------------------------------- contrastive


def test_contrastive_is_the_mean_over_ordered_pairs_of_the_hinges():
    x, y = _batch()
    crit = losses.build("contrastive", pos_margin=0.1, neg_margin=0.8, normalize=True)
    xn = F.normalize(x, dim=1)
    d = _dist(xn)
    terms = [
        (max(float(d[i, j]) - 0.1, 0) if y[i] == y[j] else max(0.8 - float(d[i, j]), 0)) ** 2
        for i, j in itertools.permutations(range(len(y)), 2)
    ]
    assert float(crit(x, y)) == pytest.approx(sum(terms) / len(terms), rel=1e-5)


def test_contrastive_pairs_equal_pytorch_metric_learning():
    x, y = _batch(seed=1)
    ours = losses.build("contrastive", pos_margin=0.05, neg_margin=1.2, power=1.0, reduction="none")
    theirs = pml.ContrastiveLoss(pos_margin=0.05, neg_margin=1.2, reducer=reducers.DoNothingReducer())
    out = theirs(x, y)
    n = len(y)
    matrix = torch.zeros(n, n)
    for key in ("pos_loss", "neg_loss"):
        a, b = out[key]["indices"]
        matrix[a, b] = out[key]["losses"]
    torch.testing.assert_close(ours(x, y), matrix.sum(1) / (n - 1), rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- triplet


def _triplets(y: torch.Tensor):
    n = len(y)
    return [(a, p, q) for a in range(n) for p in range(n) for q in range(n) if a != p and y[a] == y[p] and y[q] != y[a]]


def test_triplet_batch_all_equals_brute_force_and_pytorch_metric_learning():
    x, y = _batch(seed=2)
    d = _dist(F.normalize(x, dim=1))
    brute = [max(float(d[a, p] - d[a, q]) + 0.3, 0.0) for a, p, q in _triplets(y)]
    value = losses.build("triplet", margin=0.3, mining="batch_all")(x, y)
    assert float(value) == pytest.approx(sum(brute) / len(brute), rel=1e-5)  # P x K: the mean over all triplets
    reference = pml.TripletMarginLoss(margin=0.3, reducer=reducers.MeanReducer())(x, y)
    torch.testing.assert_close(value, reference, rtol=1e-5, atol=1e-6)


def test_triplet_batch_hard_equals_pytorch_metric_learning_with_its_batch_hard_miner():
    x, y = _batch(p=4, k=3, seed=3)
    x1, x2 = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    ours = losses.build("triplet", margin=0.2, mining="batch_hard")(x1, y)
    distance = distances.LpDistance(normalize_embeddings=True)
    triplets = miners.BatchHardMiner(distance=distance)(x2, y)
    theirs = pml.TripletMarginLoss(margin=0.2, distance=distance, reducer=reducers.MeanReducer())(x2, y, triplets)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(torch.autograd.grad(ours, x1)[0], torch.autograd.grad(theirs, x2)[0])


def test_triplet_semi_hard_picks_the_closest_farther_negative_else_the_farthest():
    x, y = _batch(p=3, k=3, d=2, seed=4)
    crit = losses.build("triplet", margin=0.5, mining="semi_hard", normalize=False, reduction="none")
    d = _dist(x)
    expected = []
    for a in range(len(y)):
        values = []
        for p in range(len(y)):
            if p == a or y[p] != y[a]:
                continue
            negatives = [float(d[a, q]) for q in range(len(y)) if y[q] != y[a]]
            farther = [v for v in negatives if v > float(d[a, p])]
            chosen = min(farther) if farther else max(negatives)
            values.append(max(float(d[a, p]) - chosen + 0.5, 0.0))
        expected.append(sum(values) / len(values))
    torch.testing.assert_close(crit(x, y), torch.tensor(expected), rtol=1e-5, atol=1e-6)


def test_anchors_without_positive_or_negative_are_left_out_of_the_mean():
    x = torch.tensor([[0.0], [1.0], [3.0]])
    y = torch.tensor([0, 0, 1])  # anchor 2 has no positive
    for mining in ("batch_all", "batch_hard", "semi_hard"):
        crit = losses.build("triplet", margin=1.0, mining=mining, normalize=False)
        none = losses.build("triplet", margin=1.0, mining=mining, normalize=False, reduction="none")(x, y)
        assert none[2] == 0
        torch.testing.assert_close(crit(x, y), none[:2].mean())
    single = torch.tensor([1, 1, 1])  # no negatives at all: 0 with a zero gradient, not NaN
    xg = x.clone().requires_grad_(True)
    value = losses.build("triplet", mining="batch_hard")(xg, single)
    value.backward()
    assert value == 0 and torch.isfinite(xg.grad).all()


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("contrastive", {}),
        ("contrastive", {"squared": True, "power": 1.0}),
        ("triplet", {"mining": "batch_all"}),
        ("triplet", {"mining": "batch_hard"}),
        ("triplet", {"mining": "semi_hard", "squared": True}),
        ("center", {"num_classes": 3, "embedding_size": 5}),
        ("center_invariant", {"num_classes": 3, "embedding_size": 5}),
        ("margin_ranking", {"learn_beta": True}),
        ("range", {"k": 2, "margin": 30.0}),
        ("range", {"k": 3, "normalize": True, "margin": 2.0}),
    ],
)
def test_gradcheck_float64(name, params):
    x, y = _batch(seed=5)
    crit = losses.build(name, **params).double()
    assert torch.autograd.gradcheck(lambda e: crit(e, y), (x.double().requires_grad_(True),))


@pytest.mark.parametrize("name", ["contrastive", "triplet", "margin_ranking", "range"])
def test_finite_under_low_precision(name, check_low_precision):
    x, y = _batch(seed=6)
    x[1] = x[0]  # a zero distance
    check_low_precision(losses.build(name, normalize=False), 30 * x, y)


# --------------------------------------------------------------------------- center


def test_center_loss_value_and_centre_gradient_is_the_papers_update():
    crit = losses.build("center", num_classes=3, embedding_size=5)
    x, y = _batch(seed=7)
    value = crit(x, y)
    c = crit.centers.detach()
    assert float(value.detach()) == pytest.approx(float(0.5 * (x - c[y]).square().sum(1).mean()), rel=1e-6)
    (grad,) = torch.autograd.grad(value, crit.centers)
    expected = torch.zeros_like(c).index_add_(0, y, c[y] - x) / len(y)  # sum over the class's samples of c - x
    torch.testing.assert_close(grad, expected)
    assert "centers" in crit.state_dict()
    with pytest.raises(losses.LossInputError, match=r"center\(embeddings, labels\).*\(N, 5\)"):
        crit(torch.randn(2, 4), torch.tensor([0, 1]))


def test_center_terms_get_their_own_optimiser_group_with_the_terms_optim():
    from tasks.optim import parameter_groups, parse_optim

    slot = losses.Slot(("metric",), inject=("num_classes", "embedding_size"), inputs=("embeddings", "labels"))
    spec = [{"name": "center", "weight": 0.01, "optim": {"lr_mult": 10.0, "weight_decay": 0.0}}]
    composite = losses.build_slot(spec, slot, inject={"num_classes": 3, "embedding_size": 5}, where="loss.aux")
    (optim,) = parse_optim({"name": "sgd", "lr": 0.1, "weight_decay": 5e-4}, ()).values()
    groups = parameter_groups(optim, [("w", torch.nn.Parameter(torch.zeros(2, 2)))], {"aux": composite})
    centres = next(iter(composite.parameters()))
    (group,) = [g for g in groups if any(p is centres for p in g["params"])]
    assert group["params"] == [centres] and group["name"].startswith("loss/aux/")
    assert group["lr"] == pytest.approx(1.0) and group["weight_decay"] == 0.0


# --------------------------------------------------------------------------- DDP gather

WORKER = textwrap.dedent(
    """
    import sys, torch, torch.distributed as dist
    import losses
    rank, store, out, batch = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    x, y = torch.load(batch)
    shard = slice(rank * 6, (rank + 1) * 6)
    result = {}
    for name in ("contrastive", "triplet", "margin_ranking", "range"):
        local = x[shard].clone().requires_grad_(True)
        value = losses.build(name, gather=True)(local, y[shard])
        value.backward()
        result[name] = (value.detach(), local.grad)
    torch.save(result, out)
    dist.destroy_process_group()
    """
)


@pytest.mark.slow  # two subprocesses importing torch: ~10 s idle, up to a minute on a loaded machine
def test_gathered_losses_in_two_process_ddp_equal_one_process_on_the_global_batch(tmp_path):
    x, y = _batch(p=4, k=3, seed=8)
    y = y[torch.randperm(12, generator=torch.Generator().manual_seed(0))]  # identities split across ranks
    torch.save((x, y), tmp_path / "batch.pt")
    (tmp_path / "worker.py").write_text(WORKER)
    procs = [
        subprocess.Popen([sys.executable, str(tmp_path / "worker.py"), str(rank), str(tmp_path / "store"),
                          str(tmp_path / f"rank{rank}.pt"), str(tmp_path / "batch.pt")])
        for rank in range(2)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    for name in ("contrastive", "triplet", "margin_ranking", "range"):
        xg = x.clone().requires_grad_(True)
        single = losses.build(name)(xg, y)
        single.backward()
        # DDP averages the ranks' losses and gradients; the all_gather backward already summed every
        # rank's contribution into each slice, so the averaged step equals the single-process one
        torch.testing.assert_close((ranks[0][name][0] + ranks[1][name][0]) / 2, single.detach())
        grad = torch.cat([ranks[0][name][1], ranks[1][name][1]]) / 2
        torch.testing.assert_close(grad, xg.grad, rtol=1e-4, atol=1e-6)
        assert ranks[0][name][1].abs().sum() > 0 and ranks[1][name][1].abs().sum() > 0


# --------------------------------------------------------------------------- margin ranking


def test_margin_ranking_is_torchs_margin_ranking_loss_on_every_pair():
    x, y = _batch(seed=9)
    crit = losses.build("margin_ranking", margin=0.3, beta=0.9, reduction="none")
    d = _dist(F.normalize(x, dim=1))
    n = len(y)
    expected = []
    for i in range(n):
        pairs = [
            F.margin_ranking_loss(d[i, j : j + 1], torch.tensor([0.9]), torch.tensor([1.0 if y[i] != y[j] else -1.0]),
                                  margin=0.3)
            for j in range(n) if j != i
        ]
        expected.append(torch.stack(pairs).mean())
    torch.testing.assert_close(crit(x, y), torch.stack(expected), rtol=1e-5, atol=1e-6)
    # by hand for one pair: positives cost relu(alpha + D - beta), negatives relu(alpha + beta - D)
    two = losses.build("margin_ranking", margin=0.3, beta=0.9, normalize=False, reduction="none")
    pair = torch.tensor([[0.0], [1.0]])
    torch.testing.assert_close(two(pair, torch.tensor([0, 0])), torch.tensor([0.4, 0.4]))
    torch.testing.assert_close(two(pair, torch.tensor([0, 1])), torch.tensor([0.2, 0.2]))


def test_margin_ranking_pairs_equal_pytorch_metric_learning_and_beta_learns():
    x, y = _batch(seed=10)
    ours = losses.build("margin_ranking", margin=0.2, beta=1.2, reduction="none")
    # per pair, Wu et al.'s margin loss is a contrastive loss with margins beta -+ alpha
    theirs = pml.ContrastiveLoss(pos_margin=1.0, neg_margin=1.4, reducer=reducers.DoNothingReducer())(x, y)
    n = len(y)
    matrix = torch.zeros(n, n)
    for key in ("pos_loss", "neg_loss"):
        a, b = theirs[key]["indices"]
        matrix[a, b] = theirs[key]["losses"]
    torch.testing.assert_close(ours(x, y), matrix.sum(1) / (n - 1), rtol=1e-5, atol=1e-6)
    learned = losses.build("margin_ranking", learn_beta=True, nu=0.1)
    assert isinstance(learned.beta, torch.nn.Parameter)
    value = learned(x, y)
    plain = losses.build("margin_ranking")(x, y)
    assert float(value.detach()) == pytest.approx(float(plain) + 0.1 * 1.2, rel=1e-6)
    (grad,) = torch.autograd.grad(value, learned.beta)
    assert grad != 0


# --------------------------------------------------------------------------- range


def _range_by_hand(x: torch.Tensor, y: torch.Tensor, k: int, margin: float, alpha: float, beta: float) -> float:
    intra = 0.0
    centres = {}
    for c in y.unique().tolist():
        members = x[y == c]
        centres[c] = members.mean(0)
        distances = sorted((float((members[a] - members[b]).square().sum())
                            for a, b in itertools.combinations(range(len(members)), 2)), reverse=True)[:k]
        if distances:
            intra += len(distances) / sum(1 / d for d in distances)
    gap = min(float((centres[p] - centres[q]).square().sum()) for p, q in itertools.combinations(centres, 2))
    return alpha * intra + beta * max(margin - gap, 0.0)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_range_loss_is_the_harmonic_mean_of_the_k_largest_plus_the_closest_centres(k):
    g = torch.Generator().manual_seed(11)
    x = torch.randn(11, 4, generator=g)
    y = torch.tensor([0, 0, 0, 0, 1, 1, 1, 2, 2, 3, 0])  # 5, 3, 2 and 1 samples: 10, 3, 1 and 0 pairs
    crit = losses.build("range", k=k, margin=20.0, alpha=0.5, beta=2.0)
    assert float(crit(x, y)) == pytest.approx(_range_by_hand(x, y, k, 20.0, 0.5, 2.0), rel=1e-5)
    y = y[torch.randperm(11, generator=g)]  # the order of the batch does not matter
    assert float(crit(x, y)) == pytest.approx(_range_by_hand(x, y, k, 20.0, 0.5, 2.0), rel=1e-5)


def test_range_loss_degenerate_batches_are_finite():
    x = torch.randn(4, 3, requires_grad=True)
    for y in (torch.tensor([0, 0, 0, 0]), torch.tensor([0, 1, 2, 3])):  # no second class; no pair
        value = losses.build("range", margin=5.0)(x, y)
        (grad,) = torch.autograd.grad(value, x)
        assert torch.isfinite(value) and torch.isfinite(grad).all()
    same = torch.ones(3, 2).requires_grad_(True)  # zero distances: the harmonic mean is 0, gradients finite
    value = losses.build("range")(same, torch.tensor([0, 0, 1]))
    (grad,) = torch.autograd.grad(value, same)
    assert torch.isfinite(grad).all()


# --------------------------------------------------------------------------- center invariant


def test_center_invariant_adds_the_centre_norm_variance_of_pytorch_metric_learning():
    torch.manual_seed(0)
    crit = losses.build("center_invariant", num_classes=3, embedding_size=5, gamma=0.5, reduction="none")
    x, y = _batch(seed=12)
    c = crit.centers.detach()
    squared = c.square().sum(1)
    invariance = ((squared - squared.mean()) ** 2).mean() / 4
    torch.testing.assert_close(crit(x, y).detach(), 0.5 * (x - c[y]).square().sum(1) + 0.5 * invariance)
    torch.testing.assert_close(invariance, pml_regularizers.CenterInvariantRegularizer()(c))
    # at x = c_y only L_I pulls: descent shrinks the largest centre and grows the smallest
    crit.reduction = "mean"
    (grad,) = torch.autograd.grad(crit(c[y].clone(), y), crit.centers)
    radial = (grad * c).sum(1)
    assert radial[squared.argmax()] > 0 and radial[squared.argmin()] < 0

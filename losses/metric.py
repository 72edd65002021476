"""Metric-learning losses on a batch of embeddings: pairs, triplets and class centres.

Call convention shared by every loss here::

    loss(embeddings, labels)      # embeddings (N, D) float, labels (N,) integer identities

Pair and triplet losses work on the (N, M) distance matrix between the N anchors and M candidate
embeddings (the batch itself, M = N; with ``gather=True`` the global batch of every DDP rank),
vectorised with masks: no Python loop over samples. ``reduction="none"`` gives one value per
anchor (N,), the anchor's mean over its pairs / triplets; ``"mean"`` averages the anchors that have
at least one (an anchor without a positive or a negative contributes nothing).

``gather=True`` all-gathers embeddings and labels across the DDP ranks with
``torch.distributed.nn.functional.all_gather``, whose backward returns to each rank the gradient
that *every* rank's loss sends to its slice, so pairs span the global batch and, after DDP's
gradient averaging, the step equals one process on the global batch. Every rank must pass the same
batch size (use ``drop_last`` or a padded sampler). Without an initialised process group it is a no-op.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from losses._utils import (
    REDUCTION,
    LossInputError,
    Option,
    OptionSet,
    check_class_range,
    check_reduction,
    complete_docstring,
    float32_forward,
    reduce,
)
from losses.registry import register

__all__ = ["gather_batch", "pairwise_distance"]

MINING = ("batch_all", "batch_hard", "semi_hard")


def _check(name: str, embeddings: Tensor, labels: Tensor, size: int | None = None) -> Tensor:
    if (
        embeddings.dim() != 2
        or labels.shape != embeddings.shape[:1]
        or labels.is_floating_point()
        or (size is not None and embeddings.shape[1] != size)
    ):
        d = "D" if size is None else str(size)
        raise LossInputError(
            f"{name}(embeddings, labels): expected embeddings (N, {d}) and integer labels (N,); got embeddings "
            f"{tuple(embeddings.shape)} and labels {tuple(labels.shape)} {labels.dtype}"
        )
    return labels.long()


def gather_batch(embeddings: Tensor, labels: Tensor, gather: bool) -> tuple[Tensor, Tensor, int]:
    """Candidates (all ranks' embeddings and labels when gathering in a process group) and this rank's offset."""
    if not (gather and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return embeddings, labels, 0
    from torch.distributed.nn.functional import all_gather

    all_embeddings = torch.cat(all_gather(embeddings), 0)  # gradient-preserving
    all_labels = [torch.empty_like(labels) for _ in range(dist.get_world_size())]
    dist.all_gather(all_labels, labels.contiguous())
    return all_embeddings, torch.cat(all_labels), dist.get_rank() * embeddings.shape[0]


def pairwise_distance(x: Tensor, y: Tensor, squared: bool = False) -> Tensor:
    """Euclidean distances (N, M) (squared with ``squared=True``); a zero distance has a zero gradient."""
    d2 = (x.square().sum(1, keepdim=True) + y.square().sum(1) - 2.0 * x @ y.T).clamp_min(0.0)
    if squared:
        return d2
    return torch.where(d2 > 1e-12, d2.clamp_min(1e-12).sqrt(), torch.zeros_like(d2))


# what the pair/triplet losses take and are called with: added to each one's docstring unless it writes its own
PAIR_SHAPE = """    Shape:
        - embeddings: (N, D).
        - labels: (N,) integer identities.
        - output: scalar; (N,) per anchor with reduction="none".
"""
PAIR_ARGS = OptionSet(
    Option("normalize", True, "bool", "L2-normalise the embeddings first."),
    Option("squared", False, "bool", "use squared Euclidean distances."),
    REDUCTION,
)


class _PairLoss(nn.Module):
    """Shared setup of the pair/triplet losses: normalisation, gathering, distances and masks (not registered)."""

    name = "metric"

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        complete_docstring(cls, PAIR_ARGS, PAIR_SHAPE)

    def __init__(self, normalize: bool, squared: bool, gather: bool, reduction: str) -> None:
        super().__init__()
        self.normalize, self.squared, self.gather = bool(normalize), bool(squared), bool(gather)
        self.reduction = check_reduction(reduction)

    def distances(self, embeddings: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Distances (N, M), positive mask (same label, not itself) and negative mask (other label)."""
        labels = _check(self.name, embeddings, labels)
        if self.normalize:
            embeddings = F.normalize(embeddings, dim=1)
        candidates, candidate_labels, offset = gather_batch(embeddings, labels, self.gather)
        dist_ = pairwise_distance(embeddings, candidates, self.squared)
        same = labels.unsqueeze(1) == candidate_labels.unsqueeze(0)
        itself = F.one_hot(torch.arange(labels.shape[0], device=labels.device) + offset, candidates.shape[0]).bool()
        return dist_, same & ~itself, ~same

    def extra_repr(self) -> str:
        return f"normalize={self.normalize}, squared={self.squared}, gather={self.gather}, reduction={self.reduction!r}"


def _masked_mean(values: Tensor, mask: Tensor, dims: tuple[int, ...]) -> tuple[Tensor, Tensor]:
    """Mean of ``values`` over ``dims`` where ``mask`` (0 where empty) and whether any element was there."""
    mask = mask.to(values.dtype)
    count = mask.sum(dims)
    return (values * mask).sum(dims) / count.clamp_min(1.0), count > 0


@register("contrastive", family="metric")
class ContrastiveLoss(_PairLoss):
    """Contrastive loss (Hadsell, Chopra & LeCun 2006): pull same-label pairs together, push others past a margin.

    Formula:
        d_ij = |x_i - x_j|_2 (x L2-normalised with normalize=True; d^2 with squared=True)
        l_ij = [y_i = y_j] relu(d_ij - m_pos)^p + [y_i != y_j] relu(m_neg - d_ij)^p
        l_i = mean over j != i of l_ij   (reduction "mean": the mean over all ordered pairs)

    Reference:
        Hadsell, Chopra & LeCun, "Dimensionality Reduction by Learning an Invariant Mapping", CVPR 2006
        (p = 2, m_pos = 0; without the paper's factor 1/2). Per pair equals
        pytorch_metric_learning.losses.ContrastiveLoss (p = 1 there).

    Args:
        pos_margin: m_pos, distance below which positive pairs cost nothing.
        neg_margin: m_neg, distance beyond which negative pairs cost nothing.
        power: p, the exponent of the hinges.
        gather: pairs span the global batch of every DDP rank (gradient-preserving all_gather).

    Example:
        >>> crit = ContrastiveLoss(normalize=False)
        >>> x = torch.tensor([[0.0, 0.0], [0.5, 0.0], [0.0, 0.25]])
        >>> round(float(crit(x, torch.tensor([0, 0, 1]))), 4)   # 0.5^2 (pos); (1 - 0.25)^2, (1 - 0.559)^2 (neg)
        0.3357
    """

    name = "contrastive"

    def __init__(
        self,
        pos_margin: float = 0.0,
        neg_margin: float = 1.0,
        power: float = 2.0,
        normalize: bool = True,
        squared: bool = False,
        gather: bool = False,
        reduction: str = "mean",
    ) -> None:
        super().__init__(normalize, squared, gather, reduction)
        if power <= 0:
            raise ValueError(f"contrastive: power must be > 0, got {power}")
        self.pos_margin, self.neg_margin, self.power = float(pos_margin), float(neg_margin), float(power)

    @float32_forward
    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        d, positive, negative = self.distances(embeddings, labels)
        pos = F.relu(d - self.pos_margin)
        neg = F.relu(self.neg_margin - d)
        pair = torch.where(positive, pos, neg)
        pair = pair.square() if self.power == 2 else pair.pow(self.power)
        loss, valid = _masked_mean(pair, positive | negative, (1,))
        return reduce(loss, self.reduction, valid.to(loss.dtype))


@register("triplet", family="metric", aliases=("triplet_margin",))
class TripletLoss(_PairLoss):
    """Triplet loss (Schroff et al. 2015) with batch-all, batch-hard or semi-hard mining on the distance matrix.

    Formula:
        l(a, p, n) = relu(d_ap - d_an + m),  y_p = y_a (p != a),  y_n != y_a
        batch_all:  l_a = mean over all valid (p, n) of l(a, p, n)
        batch_hard: l_a = relu(max_p d_ap - min_n d_an + m)                          (Hermans et al.)
        semi_hard:  l_a = mean over p of relu(d_ap - d_an* + m), n* = argmin {d_an : d_an > d_ap}, or
                    the farthest negative when none is farther than p (FaceNet; TF-Addons' rule)
        reduction "mean": the mean over anchors with a valid triplet (for batch_all in a P x K batch,
        the mean over all triplets)

    Reference:
        Schroff, Kalenichenko & Philbin, "FaceNet: A Unified Embedding for Face Recognition and
        Clustering", CVPR 2015; Hermans, Beyer & Leibe, "In Defense of the Triplet Loss for Person
        Re-Identification", arXiv 2017. Equals pytorch_metric_learning.losses.TripletMarginLoss
        (with its BatchHardMiner for batch_hard, MeanReducer).

    Args:
        margin: m.
        mining: "batch_all" | "batch_hard" | "semi_hard".
        gather: triplets span the global batch of every DDP rank (gradient-preserving all_gather).

    Example:
        >>> crit = TripletLoss(margin=1.0, mining="batch_hard", normalize=False, reduction="none")
        >>> x = torch.tensor([[0.0], [1.0], [1.5]])
        >>> crit(x, torch.tensor([0, 0, 1]))   # relu(d_ap - d_an + 1): (1 - 1.5 + 1, 1 - 0.5 + 1, none)
        tensor([0.5000, 1.5000, 0.0000])
    """

    name = "triplet"

    def __init__(
        self,
        margin: float = 0.2,
        mining: str = "batch_all",
        normalize: bool = True,
        squared: bool = False,
        gather: bool = False,
        reduction: str = "mean",
    ) -> None:
        super().__init__(normalize, squared, gather, reduction)
        if mining not in MINING:
            raise ValueError(f"triplet: mining must be one of {MINING}, got {mining!r}")
        self.margin, self.mining = float(margin), mining

    @float32_forward
    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        d, positive, negative = self.distances(embeddings, labels)
        if self.mining == "batch_all":
            triplets = F.relu(d.unsqueeze(2) - d.unsqueeze(1) + self.margin)  # (a, p, n)
            loss, valid = _masked_mean(triplets, positive.unsqueeze(2) & negative.unsqueeze(1), (1, 2))
        elif self.mining == "batch_hard":
            hardest_pos = torch.where(positive, d, torch.zeros_like(d)).amax(1)
            hardest_neg = torch.where(negative, d, torch.full_like(d, float("inf"))).amin(1)
            valid = positive.any(1) & negative.any(1)
            loss = torch.where(valid, F.relu(hardest_pos - hardest_neg.clamp_max(1e30) + self.margin), 0.0)
        else:
            d_ap, d_an = d.unsqueeze(2), d.unsqueeze(1)  # (a, p, 1), (a, 1, n)
            outside = negative.unsqueeze(1) & (d_an > d_ap)
            closest_outside = torch.where(outside, d_an, torch.full_like(d_an, float("inf"))).amin(2)  # (a, p)
            farthest = torch.where(negative, d, torch.full_like(d, float("-inf"))).amax(1, keepdim=True)
            chosen = torch.where(outside.any(2), closest_outside, farthest.expand_as(closest_outside))
            chosen = torch.where(negative.any(1, keepdim=True), chosen, d)  # no negative: masked out below
            pair = F.relu(d - chosen + self.margin)
            loss, valid = _masked_mean(pair, positive & negative.any(1, keepdim=True), (1,))
        return reduce(loss, self.reduction, valid.to(loss.dtype))

    def extra_repr(self) -> str:
        return f"margin={self.margin}, mining={self.mining!r}, " + super().extra_repr()


@register("center", family="metric", aliases=("center_loss",))
class CenterLoss(nn.Module):
    """Center loss (Wen et al. 2016): pull each embedding towards a learnable centre of its class.

    Formula:
        l_i = 1/2 |x_i - c_{y_i}|^2;  "mean" averages over the batch
        The centres are an nn.Parameter (num_classes, embedding_size) trained by the task's optimiser in
        their own group: with SGD, d l / d c_y = c_y - x is the paper's update, its rate alpha being the
        group's learning rate (a term's ``optim: {lr_mult: ..., weight_decay: 0}``).

    Reference:
        Wen, Zhang, Li & Qiao, "A Discriminative Feature Learning Approach for Deep Face Recognition",
        ECCV 2016 (used beside a softmax/margin head, weight lambda).

    Args:
        num_classes: number of identities (injected by the task).
        embedding_size: embedding dimension D (injected by the task).
        reduction: "mean" | "sum" | "none".

    Shape:
        - embeddings: (N, embedding_size).
        - labels: (N,) class indices.
        - output: scalar; (N,) with reduction="none".

    Example:
        >>> crit = CenterLoss(num_classes=2, embedding_size=2)
        >>> _ = crit.centers.data.zero_()
        >>> float(crit(torch.tensor([[3.0, 4.0]]), torch.tensor([1])).detach())   # 1/2 * 5^2
        12.5
    """

    name = "center"

    def __init__(self, num_classes: int, embedding_size: int, reduction: str = "mean") -> None:
        super().__init__()
        if int(num_classes) < 1 or int(embedding_size) < 1:
            raise ValueError(f"center: num_classes, embedding_size must be >= 1, got {num_classes}, {embedding_size}")
        self.num_classes, self.embedding_size = int(num_classes), int(embedding_size)
        self.reduction = check_reduction(reduction)
        self.centers = nn.Parameter(torch.randn(self.num_classes, self.embedding_size))

    @float32_forward
    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        labels = _check(self.name, embeddings, labels, self.embedding_size)
        check_class_range(self.name, labels, self.num_classes)
        return reduce(0.5 * (embeddings - self.centers[labels]).square().sum(1), self.reduction)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, embedding_size={self.embedding_size}, reduction={self.reduction!r}"


@register("margin_ranking", family="metric", aliases=("margin_based",))
class MarginRankingLoss(_PairLoss):
    """Margin-based pair loss (Wu et al. 2017): rank each pair's distance against a boundary beta, with margin alpha.

    Formula:
        y_ij = -1 for same-label pairs (j != i), +1 for different-label pairs; D_ij = |x_i - x_j|_2
        l_ij = relu(alpha + y'_ij (D_ij - beta)),  y' = -y   (positives: relu(alpha + D - beta),
               negatives: relu(alpha + beta - D))
             = torch.nn.functional.margin_ranking_loss(D_ij, beta, y_ij, margin=alpha)   (D ranked above beta
               for negatives, below it for positives)
        l_i = mean over j != i of l_ij + nu beta;  "mean" averages the anchors
        With learn_beta, beta is an nn.Parameter trained with the model (nu beta keeps it from growing).

    Reference:
        Wu, Manmatha, Smola & Krahenbuhl, "Sampling Matters in Deep Embedding Learning", ICCV 2017 (the
        margin loss with a global beta; all pairs of the batch, no distance-weighted sampling). Computed by
        torch.nn.functional.margin_ranking_loss; per pair it equals pytorch_metric_learning's
        ContrastiveLoss(pos_margin=beta - alpha, neg_margin=beta + alpha).

    Args:
        margin: alpha, the margin around the boundary.
        beta: the boundary between positive and negative distances (its initial value with learn_beta).
        learn_beta: make beta a learnable parameter.
        nu: weight of the beta regulariser nu * beta.
        gather: pairs span the global batch of every DDP rank (gradient-preserving all_gather).

    Example:
        >>> crit = MarginRankingLoss(margin=0.2, beta=1.0, normalize=False, reduction="none")
        >>> x = torch.tensor([[0.0], [1.5], [0.5]])
        >>> crit(x, torch.tensor([0, 0, 1]))   # anchor 0: pos relu(.2 + 1.5 - 1) = .7, neg relu(.2 + 1 - .5) = .7
        tensor([0.7000, 0.4500, 0.4500])
    """

    name = "margin_ranking"

    def __init__(
        self,
        margin: float = 0.2,
        beta: float = 1.2,
        learn_beta: bool = False,
        nu: float = 0.0,
        normalize: bool = True,
        squared: bool = False,
        gather: bool = False,
        reduction: str = "mean",
    ) -> None:
        super().__init__(normalize, squared, gather, reduction)
        self.margin, self.nu = float(margin), float(nu)
        beta_ = torch.tensor(float(beta))
        if learn_beta:
            self.beta = nn.Parameter(beta_)
        else:
            self.register_buffer("beta", beta_)

    @float32_forward
    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        d, positive, negative = self.distances(embeddings, labels)
        y = torch.where(negative, 1.0, -1.0).to(d.dtype)
        beta = self.beta.to(d.dtype)
        pair = F.margin_ranking_loss(d, beta.expand_as(d), y, margin=self.margin, reduction="none")
        loss, valid = _masked_mean(pair, positive | negative, (1,))
        if self.nu:
            loss = loss + self.nu * beta
        return reduce(loss, self.reduction, valid.to(loss.dtype))

    def extra_repr(self) -> str:
        return f"margin={self.margin}, nu={self.nu}, " + super().extra_repr()


@register("range", family="metric", aliases=("range_loss",))
class RangeLoss(nn.Module):
    """Range loss (Zhang et al. 2017): shrink each class's largest distances, push the two closest centres apart.

    Formula:
        D_j: the k largest squared distances |x_a - x_b|^2 between two samples of one class in the batch
        L_intra = sum over classes of  k / sum_j (1 / D_j)          (the harmonic mean of the k largest)
        L_inter = relu(m - |c_Q - c_R|^2),  c: batch means of the classes, Q, R the two closest centres
        L = alpha L_intra + beta L_inter   (one value for the batch; a class with fewer than k pairs uses
        the pairs it has, a class with one sample none)

    Reference:
        Zhang, Fang, Wen, Li & Qiao, "Range Loss for Deep Face Recognition with Long-Tailed Training Data",
        ICCV 2017 (used beside a softmax head; k = 2 in the paper).

    Args:
        k: how many of the largest intra-class distances enter each class's harmonic mean.
        margin: m, the smallest squared distance wanted between the two closest class centres.
        alpha: weight of the intra-class term.
        beta: weight of the inter-class term.
        normalize: L2-normalise the embeddings first (the paper uses the raw features).
        gather: compute on the global batch of every DDP rank (gradient-preserving all_gather); every rank
            then returns the same value.

    Shape:
        - embeddings: (N, D).
        - labels: (N,) integer identities.
        - output: scalar (a batch-level loss: there is no per-sample decomposition, so no ``reduction``).

    Example:
        >>> crit = RangeLoss(k=2, margin=10.0)
        >>> x = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [3.0, 0.0], [3.0, 1.0]])
        >>> # class 0 pairs 1, 4, 5: 2 / (1/5 + 1/4) = 4.4444; class 1 one pair: 1; centres 7.1389 apart: 10 - 7.1389
        >>> round(float(crit(x, torch.tensor([0, 0, 0, 1, 1]))), 4)
        8.3056
    """

    name = "range"

    def __init__(
        self,
        k: int = 2,
        margin: float = 1.0,
        alpha: float = 1.0,
        beta: float = 1.0,
        normalize: bool = False,
        gather: bool = False,
    ) -> None:
        super().__init__()
        if int(k) != k or k < 1:
            raise ValueError(f"range: k must be an integer >= 1, got {k}")
        self.k, self.margin, self.alpha, self.beta = int(k), float(margin), float(alpha), float(beta)
        self.normalize, self.gather = bool(normalize), bool(gather)

    @float32_forward
    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        labels = _check(self.name, embeddings, labels)
        if self.normalize:
            embeddings = F.normalize(embeddings, dim=1)
        x, labels, _ = gather_batch(embeddings, labels, self.gather)
        n = x.shape[0]
        same = labels.unsqueeze(1) == labels.unsqueeze(0)
        ones = torch.ones(n, n, dtype=torch.bool, device=x.device)
        # intra: the k largest pair distances of each class; pair (a, b), a < b, belongs to row a.
        # Every one of a class's k largest is among its row's k largest, so rows first, then classes.
        k = min(self.k, n)
        pair = same & ones.triu(1)
        d = pairwise_distance(x, x, squared=True)
        row, where = torch.where(pair, d, float("-inf")).topk(k, dim=1)
        row_valid = pair.gather(1, where)
        # class of representative r (its first sample) gathers the rows of its class
        candidates = torch.where(same.unsqueeze(2) & row_valid.unsqueeze(0), row.unsqueeze(0), float("-inf"))
        top, where = candidates.flatten(1).topk(k, dim=1)  # (n, k)
        valid = (same.unsqueeze(2) & row_valid.unsqueeze(0)).flatten(1).gather(1, where)
        inverse = torch.where(valid, 1.0 / torch.where(valid, top, 1.0).clamp_min(1e-12), 0.0)
        count = valid.sum(1).to(x.dtype)
        first = ~(same & ones.tril(-1)).any(1)
        harmonic = torch.where(count > 0, count / inverse.sum(1).clamp_min(1e-12), 0.0)
        intra = torch.where(first, harmonic, 0.0).sum()
        # inter: the two closest batch centres of different classes
        centres = (same.to(x.dtype) @ x) / same.sum(1, keepdim=True).to(x.dtype)
        gap = torch.where(~same, pairwise_distance(centres, centres, squared=True), float("inf")).amin()
        inter = torch.where(torch.isfinite(gap), F.relu(self.margin - gap.clamp_max(1e30)), 0.0)
        return self.alpha * intra + self.beta * inter

    def extra_repr(self) -> str:
        return f"k={self.k}, margin={self.margin}, alpha={self.alpha}, beta={self.beta}, normalize={self.normalize}"


@register("center_invariant", family="metric", aliases=("center_invariant_loss",))
class CenterInvariantLoss(CenterLoss):
    """Center invariant loss (Wu et al. 2017): center loss plus a penalty on unequal squared centre norms.

    Formula:
        L_I = 1/C sum_j (|c_j|^2 - 1/C sum_k |c_k|^2)^2 / 4      (over all C centres)
        l_i = 1/2 |x_i - c_{y_i}|^2 + gamma L_I;  "mean" averages over the batch (L_I once), "sum" adds
        N times L_I
        The centres are an nn.Parameter (num_classes, embedding_size) trained by the task's optimiser in
        their own group, as in ``center``. Identities with many images get no larger centres than rare
        ones, so the features of both are pulled to one norm. L_I depends on the centres only, so under
        DDP the step equals one process on the global batch.

    Reference:
        Wu, Liu, Li & Fu, "Deep Face Recognition with Center Invariant Loss", ACM MM Thematic Workshops
        2017 (used beside a softmax head). L_I equals pytorch_metric_learning's CenterInvariantRegularizer
        on the centres (MeanReducer).

    Args:
        num_classes: number of identities (injected by the task).
        embedding_size: embedding dimension D (injected by the task).
        gamma: weight of the centre-invariance term L_I relative to the centre term.
        reduction: "mean" | "sum" | "none".

    Shape:
        - embeddings: (N, embedding_size).
        - labels: (N,) class indices.
        - output: scalar; (N,) with reduction="none".

    Example:
        >>> crit = CenterInvariantLoss(num_classes=2, embedding_size=1, gamma=1.0, reduction="none")
        >>> _ = crit.centers.data.copy_(torch.tensor([[1.0], [3.0]]))   # squared norms 1, 9: L_I = (16 + 16) / 2 / 4
        >>> crit(torch.tensor([[1.0], [1.0]]), torch.tensor([0, 1])).detach()   # 0 + 4, 1/2 (1 - 3)^2 + 4
        tensor([4., 6.])
    """

    name = "center_invariant"

    def __init__(self, num_classes: int, embedding_size: int, gamma: float = 1.0, reduction: str = "mean") -> None:
        super().__init__(num_classes, embedding_size, reduction)
        self.gamma = float(gamma)

    @float32_forward
    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        labels = _check(self.name, embeddings, labels, self.embedding_size)
        check_class_range(self.name, labels, self.num_classes)
        squared = self.centers.square().sum(1)
        invariance = 0.25 * (squared - squared.mean()).square().mean()
        return reduce(0.5 * (embeddings - self.centers[labels]).square().sum(1) + self.gamma * invariance,
                      self.reduction)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, " + super().extra_repr()

"""Angular-margin classification heads for embedding learning (face recognition).

Call convention shared by every loss here::

    loss(embeddings, labels)      # embeddings (N, D) float, labels (N,) class indices in [0, num_classes)

Each loss *owns its class-weight matrix* ``weight`` (``num_classes x embedding_size``, an
``nn.Parameter``; a task injects both sizes through its slot, and the task's optimiser puts the
matrix in the ``loss`` group). The forward computes the cosine between each embedding and each
class weight, applies the paper's margin to the target class (some papers also to hard
negatives), scales and takes the softmax cross-entropy.

Numerics. Under fp16/bf16 autocast every loss computes in float32 (:func:`float32_forward`): with
``s = 64`` a half-precision logit overflows and an ``acos`` near 1 has no precision. Cosines are
clamped to ``[-1 + 1e-7, 1 - 1e-7]`` so ``acos`` and ``sqrt(1 - cos^2)`` keep finite gradients.
Margins are constants; each docstring says whether the margin *transformation* of the target
cosine passes gradient (and how).

Partial FC (An et al. 2022). ``sample_rate < 1`` keeps, in training, every class present in the
batch plus uniformly drawn negatives, ``max(round(sample_rate * C), #positives)`` classes in all,
and computes the softmax over those only; ``sample_rate = 1`` is the full head.

Sharding. :meth:`AngularHead.shard` keeps only this rank's contiguous block of ``C / world_size``
classes (the face task calls it under DDP and keeps the block out of DDP's gradient averaging).
The forward then all-gathers the batch's embeddings and labels (gradient-preserving, any per-rank
batch size), samples the positives and ``sample_rate`` of the negatives *of its block*, and
normalises the softmax across blocks: the target cosine, the row maximum and the sum of
exponentials are all-reduced, so the loss (and SFace's sums) equal the replicated head on the
global batch. Every rank returns that global loss; the embeddings' gradient is the global one times
``world_size`` (DDP's averaging divides it back, as insightface's all-gather does) and the block's
gradient is the global one. ``reduction="none"`` returns this rank's rows. ``state_dict`` holds the
block; :meth:`AngularHead.full_weight` gathers the whole matrix and :meth:`AngularHead.local_rows`
cuts a rank's block out of it (the face task stores the whole matrix in checkpoints).

Statistics (CurricularFace ``t``, AdaFace's feature-norm mean and std) are buffers: saved in
``state_dict``, updated in training mode only (like BatchNorm; ``eval()`` uses the stored values)
and computed over the global batch of all DDP ranks (``all_reduce``) when ``torch.distributed`` is
initialised, so every rank holds the values one process would compute on the whole batch.
"""

from __future__ import annotations

import abc
import math

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
from losses.registry import LossConfigError, register

__all__ = ["AngularHead", "mean_across_ranks", "shard_bounds", "sum_across_ranks"]

COS_EPS = 1e-7


def sum_across_ranks(value: Tensor) -> Tensor:
    """``value`` summed over the ranks of the default process group (unchanged without one)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value


def mean_across_ranks(value: Tensor) -> Tensor:
    """``value`` averaged over the ranks of the default process group (unchanged without one)."""
    world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    return sum_across_ranks(value) / world if world > 1 else value


def _global_mean_std(values: Tensor, across_ranks: bool = True) -> tuple[Tensor, Tensor]:
    """Mean and unbiased std of ``values`` over the global batch (all DDP ranks), from one all-reduce.

    ``across_ranks=False``: ``values`` already hold the global batch (a sharded head gathered it).
    """
    x = values.double()
    stats = torch.stack((x.new_tensor(x.numel()), x.sum(), x.square().sum()))
    n, total, squares = sum_across_ranks(stats) if across_ranks else stats
    mean = total / n
    var = (squares - n * mean * mean).clamp_min(0.0) / (n - 1).clamp_min(1.0)
    return mean.to(values.dtype), var.sqrt().to(values.dtype)


def _process_group() -> tuple[int, int]:
    """(rank, world size) of the default process group; (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def shard_bounds(num_classes: int, rank: int, world_size: int) -> tuple[int, int]:
    """Class range [start, end) of ``rank``'s block: contiguous, sizes differing by at most one."""
    base, extra = divmod(num_classes, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + int(rank < extra)


def _all_reduce(value: Tensor, op: str = "sum") -> Tensor:
    """All-reduce over the ranks (identity without a group); ``sum`` is differentiable, ``max`` detaches."""
    if _process_group()[1] == 1:
        return value
    if op == "max":
        value = value.detach().clone()
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return value
    from torch.distributed.nn.functional import all_reduce

    return all_reduce(value, op=dist.ReduceOp.SUM)


def _gather_rows(embeddings: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, int]:
    """Every rank's embeddings (gradient-preserving) and labels, concatenated in rank order, and this rank's offset.

    Ranks may hold different batch sizes (a short last batch): rows are padded to the largest, gathered and cut.
    """
    rank, world = _process_group()
    if world == 1:
        return embeddings, labels, 0
    from torch.distributed.nn.functional import all_gather

    size = torch.tensor([embeddings.shape[0]], device=embeddings.device)
    sizes = [torch.empty_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    counts = [int(n) for n in sizes]
    pad = max(counts) - embeddings.shape[0]
    gathered = all_gather(F.pad(embeddings, (0, 0, 0, pad)))
    label_list = [torch.empty(max(counts), dtype=labels.dtype, device=labels.device) for _ in range(world)]
    dist.all_gather(label_list, F.pad(labels, (0, pad)))
    rows = torch.cat([g[:n] for g, n in zip(gathered, counts, strict=True)])
    return rows, torch.cat([g[:n] for g, n in zip(label_list, counts, strict=True)]), sum(counts[:rank])


def _scale_grad(value: Tensor, factor: float) -> Tensor:
    """``value`` unchanged (bit for bit) with its gradient multiplied by ``factor``."""
    if factor == 1.0:
        return value
    return value.detach() + (value - value.detach()) * factor


def _positive(name: str, what: str, value: float) -> float:
    if not value > 0:
        raise ValueError(f"{name}: {what} must be > 0, got {value}")
    return float(value)


def _arc_margin(cos: Tensor, margin: float, easy_margin: bool = False) -> Tensor:
    """cos(theta + m) where theta + m <= pi; beyond, ArcFace's fallback cos(theta) - m sin(m) (or cos if easy)."""
    sin = torch.sqrt((1.0 - cos * cos).clamp_min(COS_EPS))
    cos_m = cos * math.cos(margin) - sin * math.sin(margin)
    if easy_margin:
        return torch.where(cos > 0, cos_m, cos)
    return torch.where(cos > math.cos(math.pi - margin), cos_m, cos - math.sin(math.pi - margin) * margin)


# the parameters every head takes and what it is called with: each head's docstring gets the Args: lines and
# the Shape: section it does not write itself
HEAD_SHAPE = """    Shape:
        - embeddings: (N, embedding_size).
        - labels: (N,) class indices.
        - output: scalar; (N,) with reduction="none".
"""
HEAD_ARGS = OptionSet(
    Option("num_classes", None, "int", "number of identities (injected by the task)."),
    Option("embedding_size", None, "int", "embedding dimension D (injected by the task)."),
    Option("sample_rate", 1.0, "float", "Partial FC class sampling rate in (0, 1] (training only; 1: full softmax)."),
    REDUCTION,
)


class AngularHead(nn.Module, abc.ABC):
    """Base of the angular-margin heads (not registered): the weight matrix, cosines, Partial FC, CE.

    A subclass implements :meth:`margin_logits` (cosines of the sampled classes -> logits).
    """

    name = "angular"
    sub_centers = 1
    shardable = True

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        complete_docstring(cls, HEAD_ARGS, HEAD_SHAPE)

    def __init__(
        self, num_classes: int, embedding_size: int, sample_rate: float = 1.0, reduction: str = "mean"
    ) -> None:
        super().__init__()
        if int(num_classes) < 1 or int(embedding_size) < 1:
            raise ValueError(f"{self.name}: num_classes and embedding_size must be >= 1, got "
                             f"{num_classes} and {embedding_size}")
        if not 0.0 < sample_rate <= 1.0:
            raise ValueError(f"{self.name}: sample_rate must be in (0, 1], got {sample_rate}")
        self.num_classes = int(num_classes)
        self.embedding_size = int(embedding_size)
        self.sample_rate = float(sample_rate)
        self.reduction = check_reduction(reduction)
        self.weight = nn.Parameter(torch.empty(self.num_classes * self.sub_centers, self.embedding_size))
        nn.init.normal_(self.weight, std=0.01)
        self.shard_range: tuple[int, int] | None = None  # [start, end): the classes held here once sharded

    # ------------------------------------------------------------------ sharding

    def shard(self, rank: int | None = None, world_size: int | None = None) -> None:
        """Keep only ``rank``'s block of classes (default: the process group's rank and size); see the module doc."""
        if not self.shardable:
            raise LossConfigError(f"{self.name}: its logits need every class's weight norm; it cannot be sharded")
        if self.shard_range is not None:
            raise RuntimeError(f"{self.name}: already sharded ({self.shard_range})")
        if rank is None or world_size is None:
            rank, world_size = _process_group()
        if self.num_classes < world_size:
            raise LossConfigError(f"{self.name}: {self.num_classes} classes cannot be sharded over {world_size} ranks")
        start, end = shard_bounds(self.num_classes, rank, world_size)
        k = self.sub_centers
        self.weight = nn.Parameter(self.weight.detach()[start * k : end * k].clone())
        self.shard_range = (start, end)

    def local_rows(self, full: Tensor) -> Tensor:
        """This rank's rows of a tensor shaped like the whole weight matrix (unchanged when not sharded)."""
        if self.shard_range is None:
            return full
        start, end = self.shard_range
        return full[start * self.sub_centers : end * self.sub_centers]

    def full_weight(self) -> Tensor:
        """The whole weight matrix (detached); a collective over the ranks when sharded."""
        return self.gather_rows(self.weight.detach())

    def gather_rows(self, local: Tensor) -> Tensor:
        """A tensor shaped like this rank's block (weight, optimiser moments) gathered into the whole matrix's shape."""
        world = _process_group()[1]
        if self.shard_range is None or world == 1:
            return local
        sizes = [(end - start) * self.sub_centers for start, end in
                 (shard_bounds(self.num_classes, r, world) for r in range(world))]
        padded = F.pad(local, (0, 0) * (local.dim() - 1) + (0, max(sizes) - local.shape[0])).contiguous()
        blocks = [torch.empty_like(padded) for _ in range(world)]
        dist.all_gather(blocks, padded)
        return torch.cat([b[:n] for b, n in zip(blocks, sizes, strict=True)])

    def global_mean(self, values: Tensor) -> Tensor:
        """Mean of a per-sample statistic over the global batch (the gathered batch is global when sharded)."""
        return values.mean() if self.shard_range is not None else mean_across_ranks(values.mean())

    def global_mean_std(self, values: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and unbiased std of a per-sample statistic over the global batch."""
        return _global_mean_std(values, across_ranks=self.shard_range is None)

    # ------------------------------------------------------------------ pieces

    def check_inputs(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        if (
            embeddings.dim() != 2
            or embeddings.shape[1] != self.embedding_size
            or labels.shape != embeddings.shape[:1]
            or labels.is_floating_point()
        ):
            raise LossInputError(
                f"{self.name}(embeddings, labels): expected embeddings (N, {self.embedding_size}) and integer "
                f"labels (N,); got embeddings {tuple(embeddings.shape)} and labels {tuple(labels.shape)} "
                f"{labels.dtype}"
            )
        labels = labels.long()
        check_class_range(self.name, labels, self.num_classes)
        return labels

    def sample_classes(self, labels: Tensor, num_classes: int | None = None) -> tuple[Tensor | None, Tensor]:
        """Partial FC: sorted class indices kept this step (``None``: all) and the labels remapped into them.

        ``num_classes``: the classes to sample from (this rank's block when sharded); a label -1 (a class
        of another block) stays -1.
        """
        if self.sample_rate >= 1.0 or not self.training:
            return None, labels
        num_classes = self.num_classes if num_classes is None else num_classes
        here = labels >= 0
        positive = torch.zeros(num_classes, dtype=torch.bool, device=labels.device)
        positive[labels[here]] = True
        num_sample = max(int(round(self.sample_rate * num_classes)), int(positive.sum()), 1)
        priority = torch.rand(num_classes, device=labels.device)
        priority[positive] = 2.0  # every positive class is kept
        index = torch.topk(priority, k=num_sample).indices.sort().values
        return index, torch.where(here, torch.searchsorted(index, labels.clamp_min(0)), -1)

    def cosine(self, embeddings: Tensor, index: Tensor | None = None, weight: Tensor | None = None) -> Tensor:
        """Clamped cosines (N, C') between the embeddings and the (sampled) class weights (max over sub-centres)."""
        weight = self.weight if weight is None else weight
        if index is not None:
            weight = weight.view(-1, self.sub_centers, weight.shape[1])[index].flatten(0, 1)
        # <x/|x|, W_j>/|W_j|: the norms divide the (N, C') logits, not the (C', D) weight (less work, no copy)
        norms = torch.linalg.vector_norm(weight, dim=1).clamp_min(1e-12)
        cos = F.linear(F.normalize(embeddings, dim=1), weight) / norms
        if self.sub_centers > 1:
            cos = cos.view(cos.shape[0], -1, self.sub_centers).amax(2)
        return cos.clamp(-1.0 + COS_EPS, 1.0 - COS_EPS)

    @abc.abstractmethod
    def margin_logits(self, cos: Tensor, labels: Tensor, embeddings: Tensor, index: Tensor | None) -> Tensor:
        """Logits (N, C') with the head's margin applied to the target class, from the clamped cosines."""

    def row_losses(self, logits: Tensor, labels: Tensor) -> Tensor:
        """Per-sample losses (N,) from the margin logits: softmax cross-entropy."""
        return F.cross_entropy(logits, labels, reduction="none")

    def sharded_row_losses(self, target: Tensor, others: Tensor, keep: Tensor) -> Tensor:
        """:meth:`row_losses` from the target logit (N,) and this block's other logits (N, C') where ``keep``.

        Cross-entropy with the softmax normalised across the blocks: log(e^t + sum over every block of e^z) - t,
        shifted by the global row maximum.
        """
        others = torch.where(keep, others, float("-inf"))
        top = _all_reduce(torch.maximum(target.detach(), others.detach().amax(1)), "max")
        local = torch.where(keep, torch.exp(others - top.unsqueeze(1)), 0.0).sum(1)
        return torch.log(_all_reduce(local) + torch.exp(target - top)) + top - target

    def logits(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """The margin logits (N, C) over all classes (no sampling, statistics not updated), in float32."""
        if self.shard_range is not None:
            raise RuntimeError(f"{self.name}: logits() needs the whole weight matrix; this head is sharded")
        with torch.no_grad():
            training = self.training
            self.eval()
            try:
                labels = self.check_inputs(embeddings, labels)
                embeddings = embeddings.float()
                return self.margin_logits(self.cosine(embeddings), labels, embeddings, None)
            finally:
                self.train(training)

    @float32_forward
    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        labels = self.check_inputs(embeddings, labels)
        if self.shard_range is not None:
            return self._sharded_forward(embeddings, labels)
        index, labels = self.sample_classes(labels)
        logits = self.margin_logits(self.cosine(embeddings, index), labels, embeddings, index)
        return reduce(self.row_losses(logits, labels), self.reduction)

    def _sharded_forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """The loss of the global batch over every block, computed with this rank's block (module doc)."""
        count = embeddings.shape[0]
        embeddings, labels, offset = _gather_rows(embeddings, labels)
        start, end = self.shard_range
        local = labels - start
        index, local = self.sample_classes(torch.where((local >= 0) & (local < end - start), local, -1), end - start)
        weight = _scale_grad(self.weight, 1.0 / _process_group()[1])  # every rank's loss is the global one
        cos = self.cosine(embeddings, index, weight)
        here = local >= 0
        column = local.clamp_min(0)
        target = _all_reduce(torch.where(here, cos.gather(1, column.unsqueeze(1)).squeeze(1), 0.0))
        # column 0: the target (the same on every rank); then this block's classes, its copy of the target dropped
        logits = self.margin_logits(torch.cat((target.unsqueeze(1), cos), 1), torch.zeros_like(local), embeddings, None)
        keep = ~_target_mask(cos, column) | ~here.unsqueeze(1)
        rows = self.sharded_row_losses(logits[:, 0], logits[:, 1:], keep)
        if self.reduction == "none":
            return rows[offset : offset + count]
        return reduce(rows, self.reduction)

    def extra_repr(self) -> str:
        shard = "" if self.shard_range is None else f", shard_range={self.shard_range}"
        return (f"num_classes={self.num_classes}, embedding_size={self.embedding_size}, "
                f"reduction={self.reduction!r}{shard}")


def _target_mask(cos: Tensor, labels: Tensor) -> Tensor:
    """(N, C) bool, True at each row's label (one byte per entry: no int64 one-hot of a million classes)."""
    return torch.zeros(cos.shape, dtype=torch.bool, device=cos.device).scatter_(1, labels.unsqueeze(1), True)


def _with_target(cos: Tensor, labels: Tensor, target: Tensor) -> Tensor:
    """``cos`` with each row's target entry replaced by ``target`` (N,)."""
    return cos.scatter(1, labels.unsqueeze(1), target.unsqueeze(1).to(cos.dtype))


def _target(cos: Tensor, labels: Tensor) -> Tensor:
    return cos.gather(1, labels.unsqueeze(1)).squeeze(1)


@register("cosface", family="angular", aliases=("am_softmax", "lmcl"))
class CosFaceLoss(AngularHead):
    """CosFace / AM-Softmax (Wang et al. 2018): an additive cosine margin on the target class.

    Formula:
        cos_j = <x/|x|, W_j/|W_j|>;  logit_y = s (cos_y - m),  logit_j = s cos_j (j != y)
        l = CE(logits, y)
        The margin is an additive constant: d logit_y / d cos_y = s, as without margin (it shifts the
        logit, it does not reshape its gradient).

    Reference:
        Wang et al., "CosFace: Large Margin Cosine Loss for Deep Face Recognition", CVPR 2018;
        Wang et al., "Additive Margin Softmax for Face Verification", IEEE SPL 2018.
        Equals pytorch_metric_learning.losses.CosFaceLoss.

    Args:
        scale: s, the logit scale.
        margin: m, the cosine margin.

    Example:
        >>> crit = CosFaceLoss(num_classes=3, embedding_size=2, scale=1.0, margin=0.0)
        >>> _ = crit.weight.data.copy_(torch.eye(3, 2))
        >>> round(float(crit(torch.tensor([[1.0, 0.0]]), torch.tensor([0]))), 4)   # CE of logits (1, 0, 0)
        0.5514
    """

    name = "cosface"

    def __init__(
        self,
        num_classes: int,
        embedding_size: int,
        scale: float = 64.0,
        margin: float = 0.35,
        sample_rate: float = 1.0,
        reduction: str = "mean",
    ) -> None:
        super().__init__(num_classes, embedding_size, sample_rate, reduction)
        self.scale, self.margin = _positive(self.name, "scale", scale), float(margin)

    def margin_logits(self, cos: Tensor, labels: Tensor, embeddings: Tensor, index: Tensor | None) -> Tensor:
        return self.scale * _with_target(cos, labels, _target(cos, labels) - self.margin)


@register("arcface", family="angular", aliases=("additive_angular_margin",))
class ArcFaceLoss(AngularHead):
    """ArcFace (Deng et al. 2019): an additive angular margin, cos(theta_y + m), on the target class.

    Formula:
        logit_y = s cos(theta_y + m)                 if theta_y + m <= pi (i.e. cos theta_y > cos(pi - m))
                  s (cos theta_y - m sin m)          otherwise (fallback keeping the logit monotonic in theta)
        easy_margin: logit_y = s cos(theta_y + m) if cos theta_y > 0 else s cos theta_y
        logit_j = s cos theta_j (j != y);  l = CE(logits, y)
        cos(theta + m) = cos theta cos m - sin theta sin m, sin theta = sqrt(1 - cos^2 theta):
        the margin term carries gradient (d logit_y / d cos_y = s (cos m + cos theta sin m / sin theta)).
        ``margin`` is in RADIANS (0.5 = 28.6 degrees); pytorch-metric-learning's ArcFaceLoss takes degrees.

    Reference:
        Deng et al., "ArcFace: Additive Angular Margin Loss for Deep Face Recognition", CVPR 2019.
        Equals pytorch_metric_learning.losses.ArcFaceLoss(margin=degrees(m)).

    Args:
        scale: s, the logit scale.
        margin: m, the additive angular margin in radians.
        easy_margin: apply the margin only where cos theta_y > 0 (insightface's option) instead of the fallback.

    Example:
        >>> crit = ArcFaceLoss(num_classes=2, embedding_size=2, scale=1.0, margin=0.5)
        >>> _ = crit.weight.data.copy_(torch.eye(2))
        >>> x = torch.tensor([[0.6, 0.8]])   # cos (0.6, 0.8): logits (cos(acos(0.6) + 0.5), 0.8) = (0.1430, 0.8)
        >>> round(float(crit(x, torch.tensor([0]))), 4)
        1.0747
    """

    name = "arcface"

    def __init__(
        self,
        num_classes: int,
        embedding_size: int,
        scale: float = 64.0,
        margin: float = 0.5,
        easy_margin: bool = False,
        sample_rate: float = 1.0,
        reduction: str = "mean",
    ) -> None:
        super().__init__(num_classes, embedding_size, sample_rate, reduction)
        if not 0.0 <= margin < math.pi:
            raise ValueError(f"arcface: margin is in radians and must be in [0, pi), got {margin}")
        self.scale = _positive(self.name, "scale", scale)
        self.margin, self.easy_margin = float(margin), bool(easy_margin)

    def margin_logits(self, cos: Tensor, labels: Tensor, embeddings: Tensor, index: Tensor | None) -> Tensor:
        target = _arc_margin(_target(cos, labels), self.margin, self.easy_margin)
        return self.scale * _with_target(cos, labels, target)


@register("subcenter_arcface", family="angular")
class SubCenterArcFaceLoss(ArcFaceLoss):
    """Sub-center ArcFace (Deng et al. 2020): K sub-centres per class, cos_j = max_k cos(x, W_jk), then ArcFace.

    Formula:
        cos_j = max_k <x/|x|, W_jk/|W_jk|>  (k = 1..K);  then ArcFace's logits and fallback on cos_j.
        The margin term carries gradient as in ArcFace; the gradient reaches only the closest sub-centre.
        ``margin`` is in radians (pytorch-metric-learning: degrees).

    Reference:
        Deng et al., "Sub-center ArcFace: Boosting Face Recognition by Large-Scale Noisy Web Faces",
        ECCV 2020. Equals pytorch_metric_learning.losses.SubCenterArcFaceLoss (weight rows j*K + k).

    Args:
        scale: s, the logit scale.
        margin: m, the additive angular margin in radians.
        sub_centers: K, sub-centres per class (the weight has num_classes * K rows, class j's are j*K..j*K+K-1).
        easy_margin: apply the margin only where cos theta_y > 0 instead of the fallback.

    Example:
        >>> crit = SubCenterArcFaceLoss(num_classes=2, embedding_size=2, sub_centers=2, scale=1.0, margin=0.0)
        >>> _ = crit.weight.data.copy_(torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]]))
        >>> round(float(crit(torch.tensor([[-1.0, 0.0]]), torch.tensor([0]))), 4)   # class 0's 2nd centre: cos 1
        0.3133
    """

    name = "subcenter_arcface"

    def __init__(
        self,
        num_classes: int,
        embedding_size: int,
        scale: float = 64.0,
        margin: float = 0.5,
        sub_centers: int = 3,
        easy_margin: bool = False,
        sample_rate: float = 1.0,
        reduction: str = "mean",
    ) -> None:
        if int(sub_centers) < 1:
            raise ValueError(f"subcenter_arcface: sub_centers must be >= 1, got {sub_centers}")
        self.sub_centers = int(sub_centers)  # read by AngularHead.__init__ (plain int, set before Module init)
        super().__init__(num_classes, embedding_size, scale, margin, easy_margin, sample_rate, reduction)


@register("a_softmax", family="angular", aliases=("sphereface",))
class SphereFaceLoss(AngularHead):
    """A-Softmax / SphereFace (Liu et al. 2017): a multiplicative angular margin cos(m theta_y), weights normalised.

    Formula:
        psi(theta) = (-1)^k cos(m theta) - 2k,  theta in [k pi/m, (k+1) pi/m],  k = floor(m theta / pi)
        logit_y = |x| psi(theta_y),  logit_j = |x| cos theta_j (j != y)   (|W_j| = 1, |x| kept);  l = CE
        The margin term carries gradient through cos(m theta) (k is piecewise constant, no gradient).
        No lambda annealing (the paper blends (lambda cos + psi) / (1 + lambda) early in training).

    Reference:
        Liu et al., "SphereFace: Deep Hypersphere Embedding for Face Recognition", CVPR 2017.
        Equals pytorch_metric_learning.losses.SphereFaceLoss.

    Args:
        margin: m, the integer angular multiplier (>= 1).
        scale: an extra constant factor on every logit (1 in the paper).

    Example:
        >>> crit = SphereFaceLoss(num_classes=2, embedding_size=2, margin=1)
        >>> _ = crit.weight.data.copy_(torch.eye(2))
        >>> round(float(crit(torch.tensor([[2.0, 0.0]]), torch.tensor([0]))), 4)   # logits (2, 0)
        0.1269
    """

    name = "a_softmax"
    normalize_weights = True

    def __init__(
        self,
        num_classes: int,
        embedding_size: int,
        margin: int = 4,
        scale: float = 1.0,
        sample_rate: float = 1.0,
        reduction: str = "mean",
    ) -> None:
        super().__init__(num_classes, embedding_size, sample_rate, reduction)
        if int(margin) != margin or margin < 1:
            raise ValueError(f"{self.name}: margin must be an integer >= 1, got {margin}")
        self.margin, self.scale = int(margin), _positive(self.name, "scale", scale)

    def margin_logits(self, cos: Tensor, labels: Tensor, embeddings: Tensor, index: Tensor | None) -> Tensor:
        cos_y = _target(cos, labels)
        theta = torch.acos(cos_y)
        k = torch.floor(theta.detach() * self.margin / math.pi)
        psi = (1.0 - 2.0 * torch.remainder(k, 2.0)) * torch.cos(self.margin * theta) - 2.0 * k
        magnitude = embeddings.norm(dim=1, keepdim=True)
        if not self.normalize_weights:
            weight = self.weight if index is None else self.weight[index]
            magnitude = magnitude * weight.norm(dim=1)
        return self.scale * magnitude * _with_target(cos, labels, psi)


@register("l_softmax", family="angular", aliases=("large_margin_softmax",))
class LargeMarginSoftmaxLoss(SphereFaceLoss):
    """L-Softmax (Liu et al. 2016): the multiplicative angular margin with unnormalised weights.

    Formula:
        logit_y = |W_y| |x| psi(theta_y),  logit_j = |W_j| |x| cos theta_j;  psi as in a_softmax:
        psi(theta) = (-1)^k cos(m theta) - 2k,  k = floor(m theta / pi);  l = CE(logits, y)
        The margin term carries gradient through cos(m theta) (k has none).

    Reference:
        Liu et al., "Large-Margin Softmax Loss for Convolutional Neural Networks", ICML 2016.
        Equals pytorch_metric_learning.losses.LargeMarginSoftmaxLoss.

    Args:
        margin: m, the integer angular multiplier (>= 1).
        scale: an extra constant factor on every logit (1 in the paper).

    Example:
        >>> crit = LargeMarginSoftmaxLoss(num_classes=2, embedding_size=2, margin=1)
        >>> _ = crit.weight.data.copy_(torch.tensor([[2.0, 0.0], [0.0, 1.0]]))
        >>> round(float(crit(torch.tensor([[1.0, 0.0]]), torch.tensor([0]))), 4)   # logits (2, 0)
        0.1269
    """

    name = "l_softmax"
    normalize_weights = False
    shardable = False


@register("mv_softmax", family="angular", aliases=("mv_am_softmax", "mv_arc_softmax"))
class MVSoftmaxLoss(AngularHead):
    """MV-Softmax (Wang et al. 2020): a target margin plus emphasis of the misclassified (hard) negatives.

    Formula:
        target: f(cos_y) = cos_y - m ("am") or ArcFace's cos(theta_y + m) with its fallback ("arc")
        hard negative j (cos_j > f(cos_y)): h(cos_j) = t cos_j + t - 1;  other negatives: cos_j
        logits = s [f(cos_y), h or cos_j];  l = CE(logits, y)
        Gradient flows through f (as in CosFace/ArcFace) and through h (slope t); the hard mask has none.

    Reference:
        Wang et al., "Mis-classified Vector Guided Softmax Loss for Face Recognition", AAAI 2020
        (defaults of FaceX-Zoo's MV_Softmax head).

    Args:
        scale: s, the logit scale.
        margin: m, the target margin (cosine for "am", radians for "arc").
        mv_weight: t >= 1, the weight of the misclassified vectors (1: plain AM/Arc softmax).
        variant: "am" | "arc", the target margin.

    Example:
        >>> crit = MVSoftmaxLoss(num_classes=2, embedding_size=2, scale=1.0, margin=0.5, mv_weight=2.0)
        >>> _ = crit.weight.data.copy_(torch.eye(2))
        >>> x = torch.tensor([[0.8, 0.6]])           # cos (0.8, 0.6): target 0.3 < 0.6: hard, 2*0.6+2-1 = 2.2
        >>> round(float(crit(x, torch.tensor([0]))), 4)
        2.0394
    """

    name = "mv_softmax"

    def __init__(
        self,
        num_classes: int,
        embedding_size: int,
        scale: float = 32.0,
        margin: float = 0.35,
        mv_weight: float = 1.12,
        variant: str = "am",
        sample_rate: float = 1.0,
        reduction: str = "mean",
    ) -> None:
        super().__init__(num_classes, embedding_size, sample_rate, reduction)
        if variant not in ("am", "arc"):
            raise ValueError(f"mv_softmax: variant must be 'am' or 'arc', got {variant!r}")
        if mv_weight < 1:
            raise ValueError(f"mv_softmax: mv_weight must be >= 1, got {mv_weight}")
        self.scale = _positive(self.name, "scale", scale)
        self.margin, self.mv_weight, self.variant = float(margin), float(mv_weight), variant

    def margin_logits(self, cos: Tensor, labels: Tensor, embeddings: Tensor, index: Tensor | None) -> Tensor:
        cos_y = _target(cos, labels)
        target = cos_y - self.margin if self.variant == "am" else _arc_margin(cos_y, self.margin)
        hard = cos > target.detach().unsqueeze(1)
        negatives = torch.where(hard, self.mv_weight * cos + self.mv_weight - 1.0, cos)
        return self.scale * _with_target(negatives, labels, target)


@register("curricularface", family="angular")
class CurricularFaceLoss(AngularHead):
    """CurricularFace (Huang et al. 2020): ArcFace on the target, hard negatives re-weighted by a running t.

    Formula:
        target: f(cos_y) = cos(theta_y + m) if cos_y > cos(pi - m) else cos_y - m sin m  (ArcFace)
        hard negative j (cos_j > cos(theta_y + m)): h(cos_j) = cos_j (t + cos_j);  other negatives: cos_j
        t <- 0.01 mean_i(cos_y_i) + 0.99 t   (training only, before h; batch mean averaged over DDP ranks)
        logits = s [f(cos_y), h or cos_j];  l = CE(logits, y)
        The margin term carries gradient (as ArcFace); h carries gradient through both factors
        (d h / d cos_j = t + 2 cos_j); t is a buffer without gradient.

    Reference:
        Huang et al., "CurricularFace: Adaptive Curriculum Learning Loss for Deep Face Recognition",
        CVPR 2020 (the authors' code: t starts at 0, momentum 0.01).

    Args:
        scale: s, the logit scale.
        margin: m, the additive angular margin in radians.
        momentum: weight of the batch mean in the update of t.

    Example:
        >>> crit = CurricularFaceLoss(num_classes=2, embedding_size=2, scale=1.0, margin=0.0)
        >>> _ = crit.weight.data.copy_(torch.eye(2))
        >>> round(float(crit(torch.tensor([[1.0, 0.0]]), torch.tensor([0]))), 4), round(float(crit.t), 4)
        (0.3133, 0.01)
    """

    name = "curricularface"

    def __init__(
        self,
        num_classes: int,
        embedding_size: int,
        scale: float = 64.0,
        margin: float = 0.5,
        momentum: float = 0.01,
        sample_rate: float = 1.0,
        reduction: str = "mean",
    ) -> None:
        super().__init__(num_classes, embedding_size, sample_rate, reduction)
        self.scale, self.margin, self.momentum = _positive(self.name, "scale", scale), float(margin), float(momentum)
        self.register_buffer("t", torch.zeros(()))

    def margin_logits(self, cos: Tensor, labels: Tensor, embeddings: Tensor, index: Tensor | None) -> Tensor:
        cos_y = _target(cos, labels)
        sin_y = torch.sqrt((1.0 - cos_y * cos_y).clamp_min(COS_EPS))
        cos_ym = cos_y * math.cos(self.margin) - sin_y * math.sin(self.margin)
        target = _arc_margin(cos_y, self.margin)
        if self.training:
            with torch.no_grad():
                batch = self.global_mean(cos_y.detach())
                self.t.mul_(1.0 - self.momentum).add_(self.momentum * batch)
        hard = cos > cos_ym.detach().unsqueeze(1)
        t = self.t.detach()
        negatives = torch.where(hard, cos * (t + cos), cos)
        return self.scale * _with_target(negatives, labels, target)


@register("adaface", family="angular")
class AdaFaceLoss(AngularHead):
    """AdaFace (Kim et al. 2022): a margin adapted to image quality, proxied by the feature norm.

    Formula:
        z = clip(h (clip(|x|, 0.001, 100) - mu) / (sigma + eps), -1, 1)     (|x| detached: no gradient)
        g_angle = -m z,  g_add = m z + m
        logit_y = s (cos(clip(theta_y + g_angle, eps, pi - eps)) - g_add),  logit_j = s cos theta_j;  l = CE
        mu <- a mean(|x|) + (1 - a) mu,  sigma <- a std(|x|) + (1 - a) sigma  (a = t_alpha; training
        only, before z; batch statistics averaged over DDP ranks; start mu = 20, sigma = 100)
        The angular margin carries gradient through cos(theta + g); the margin size z has none (the
        norm is detached), so the loss depends on x only through x/|x|.

    Reference:
        Kim, Jain & Liu, "AdaFace: Quality Adaptive Margin for Face Recognition", CVPR 2022 (head.py of
        the authors' code; eps = 1e-3).

    Args:
        scale: s, the logit scale.
        margin: m, the base margin.
        h: the concentration of z (about 68% of z within [-h, h]).
        t_alpha: momentum of the norm statistics (the authors' training default 0.01).

    Shape:
        - embeddings: (N, embedding_size), not normalised: their norm is the quality proxy.
        - labels: (N,) class indices.
        - output: scalar; (N,) with reduction="none".

    Example:
        >>> crit = AdaFaceLoss(num_classes=2, embedding_size=2, scale=1.0, margin=0.0)
        >>> _ = crit.weight.data.copy_(torch.eye(2))
        >>> round(float(crit(torch.tensor([[3.0, 0.0]]), torch.tensor([0])).detach()), 4)   # m = 0: logits (1, 0)
        0.3133
    """

    name = "adaface"
    EPS = 1e-3

    def __init__(
        self,
        num_classes: int,
        embedding_size: int,
        scale: float = 64.0,
        margin: float = 0.4,
        h: float = 0.333,
        t_alpha: float = 0.01,
        sample_rate: float = 1.0,
        reduction: str = "mean",
    ) -> None:
        super().__init__(num_classes, embedding_size, sample_rate, reduction)
        self.scale = _positive(self.name, "scale", scale)
        self.margin, self.h, self.t_alpha = float(margin), float(h), float(t_alpha)
        self.register_buffer("batch_mean", torch.full((), 20.0))
        self.register_buffer("batch_std", torch.full((), 100.0))

    def margin_logits(self, cos: Tensor, labels: Tensor, embeddings: Tensor, index: Tensor | None) -> Tensor:
        norms = embeddings.detach().norm(dim=1).clamp(0.001, 100.0)
        if self.training:
            with torch.no_grad():
                mean, std = self.global_mean_std(norms)
                self.batch_mean.mul_(1.0 - self.t_alpha).add_(self.t_alpha * mean)
                self.batch_std.mul_(1.0 - self.t_alpha).add_(self.t_alpha * std)
        z = (self.h * (norms - self.batch_mean) / (self.batch_std + self.EPS)).clamp(-1.0, 1.0)
        theta = torch.acos(_target(cos, labels))
        angle = (theta - self.margin * z).clamp(self.EPS, math.pi - self.EPS)
        target = torch.cos(angle) - (self.margin + self.margin * z)
        return self.scale * _with_target(cos, labels, target)


@register("sface", family="angular")
class SFaceLoss(AngularHead):
    """SFace (Zhong et al. 2021): sigmoid-constrained hypersphere loss, re-scaled intra/inter-class cosine terms.

    Formula:
        l_i = -[r_intra(theta_y)]_b s cos theta_y + sum_{j != y} [r_inter(theta_j)]_b s cos theta_j
        r_intra(theta) = 1 / (1 + exp(-k (theta - a))),  r_inter(theta) = 1 / (1 + exp(k (theta - b)))
        [.]_b blocks the gradient: the sigmoid weights are constants in the backward, so the gradient of
        l_i w.r.t. cos theta_y is -s r_intra(theta_y) and w.r.t. cos theta_j is s r_inter(theta_j) (the
        "margin" is this re-scaling of the gradient, not a change of the logits). No softmax: targets
        stop being pulled once theta_y < a, negatives stop being pushed once theta_j > b.

    Reference:
        Zhong, Deng, Hu, Zhao, Li & Huang, "SFace: Sigmoid-Constrained Hypersphere Loss for Robust Face
        Recognition", IEEE TIP 2021 (defaults of the authors' code: s = 64, k = 80, a = 0.8, b = 1.23,
        angles in radians; the sum over the negatives, then the batch mean).

    Args:
        scale: s, the scale of both terms.
        k: the slope of the two sigmoids.
        a: the intra-class angle (radians) below which the target is no longer pulled.
        b: the inter-class angle (radians) beyond which a negative is no longer pushed.
        sample_rate: Partial FC class sampling rate in (0, 1] (training only; 1: every negative).

    Example:
        >>> crit = SFaceLoss(num_classes=2, embedding_size=2, scale=1.0, k=80.0, a=0.8, b=1.23)
        >>> _ = crit.weight.data.copy_(torch.eye(2))
        >>> x = torch.tensor([[0.0, 1.0]])   # theta_y = pi/2 > a: weight ~1, -cos = 0; theta_j = 0 < b: + cos = 1
        >>> round(float(crit(x, torch.tensor([0]))), 4)
        1.0
    """

    name = "sface"

    def __init__(
        self,
        num_classes: int,
        embedding_size: int,
        scale: float = 64.0,
        k: float = 80.0,
        a: float = 0.8,
        b: float = 1.23,
        sample_rate: float = 1.0,
        reduction: str = "mean",
    ) -> None:
        super().__init__(num_classes, embedding_size, sample_rate, reduction)
        self.scale, self.k, self.a, self.b = _positive(self.name, "scale", scale), float(k), float(a), float(b)

    def margin_logits(self, cos: Tensor, labels: Tensor, embeddings: Tensor, index: Tensor | None) -> Tensor:
        return self.scale * cos

    def _terms(self, target: Tensor, others: Tensor, keep: Tensor) -> tuple[Tensor, Tensor]:
        """The intra term (N,) and the inter terms (N, C') (0 where not ``keep``) from s cos values."""
        with torch.no_grad():
            intra = torch.sigmoid(self.k * (torch.acos(target / self.scale) - self.a))
            inter = torch.sigmoid(-self.k * (torch.acos(others / self.scale) - self.b))
        return -intra * target, torch.where(keep, inter * others, 0.0)

    def row_losses(self, logits: Tensor, labels: Tensor) -> Tensor:
        intra, inter = self._terms(_target(logits, labels), logits, ~_target_mask(logits, labels))
        return intra + inter.sum(1)

    def sharded_row_losses(self, target: Tensor, others: Tensor, keep: Tensor) -> Tensor:
        intra, inter = self._terms(target, others, keep)
        return intra + _all_reduce(inter.sum(1))

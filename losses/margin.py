"""Margin-based classification losses (SVM/boosting family) as functions of the margin m = y f(x).

Call convention shared by every loss here::

    loss(scores, target)

* binary: ``scores`` of any shape (e.g. ``(N,)``) and ``target`` of the same shape (a ``(N,)``
  target is accepted for ``(N, 1)`` scores). Labels in {-1, 1} or {0, 1} are both accepted
  without a data-dependent check: ``y = +1 where target > 0, else -1`` (so 0 and -1 are the
  negative class). The margin is ``m = y * f``.
* multiclass: ``scores (N, C, *)`` and integer class indices ``target (N, *)``, with
  ``multiclass="crammer_singer"`` (default) ``m = f_y - max_{j != y} f_j`` (one margin per
  sample; the hinge is then Crammer & Singer's, as sklearn's ``hinge_loss``) or
  ``multiclass="one_vs_rest"``: ``m_c = y_c f_c`` with ``y_c = +1 if c = y else -1``, the loss summed
  over classes.

``reduction="none"`` returns one value per sample ``(N, *)``. Every loss is a hand-written
element-wise function of ``m`` (torch has no such losses apart from ``nn.MultiMarginLoss``,
Weston-Watkins, which equals Crammer-Singer / C for C = 2 only).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from losses._utils import (
    REDUCTION,
    LossInputError,
    Option,
    OptionSet,
    check_reduction,
    complete_docstring,
    float32_forward,
    reduce,
)
from losses.registry import register

MULTICLASS = ("crammer_singer", "one_vs_rest")

__all__ = ["MULTICLASS", "margins", "margin_loss"]


def margins(name: str, scores: Tensor, target: Tensor, multiclass: str = "crammer_singer") -> tuple[Tensor, bool]:
    """Margins ``m`` and whether they are one-vs-rest per-class margins ``(N, C, *)`` (to be summed over C)."""
    if target.shape == scores.shape:
        y = torch.where(target > 0, 1.0, -1.0).to(scores.dtype)
        return y * scores, False
    if scores.dim() >= 2 and scores.shape[1] == 1 and target.shape == scores.shape[:1] + scores.shape[2:]:
        y = torch.where(target > 0, 1.0, -1.0).to(scores.dtype)
        return y * scores.squeeze(1), False
    if scores.dim() < 2 or target.is_floating_point() or target.shape != scores.shape[:1] + scores.shape[2:]:
        raise LossInputError(
            f"{name}(scores, target): expected binary scores and targets of the same shape (labels in {{-1,1}} or "
            f"{{0,1}}) or multiclass scores (N, C, *) with integer class indices (N, *); got scores "
            f"{tuple(scores.shape)} and target {tuple(target.shape)} {target.dtype}"
        )
    idx = target.long().unsqueeze(1)
    if multiclass == "one_vs_rest":
        y = torch.full_like(scores, -1.0).scatter_(1, idx, 1.0)
        return y * scores, True
    f_y = scores.gather(1, idx).squeeze(1)
    others = scores.scatter(1, idx, float("-inf")).amax(1)
    return f_y - others, False


def margin_loss(
    fn: Callable[[Tensor], Tensor], name: str, scores: Tensor, target: Tensor, multiclass: str, reduction: str
) -> Tensor:
    """Apply the margin function ``fn`` and reduce (one-vs-rest losses are summed over classes first)."""
    m, per_class = margins(name, scores, target, multiclass)
    loss = fn(m)
    if per_class:
        loss = loss.sum(1)
    return reduce(loss, reduction)


# what every margin loss takes and is called with: added to each loss's docstring unless it writes its own
MARGIN_SHAPE = """    Shape:
        - scores: binary: any shape (*), e.g. (N,), or (N, 1, *); multiclass: (N, C, *).
        - target: binary: labels in {-1, 1} or {0, 1} of the shape of ``scores`` ((N, *) for (N, 1, *)
          scores); multiclass: integer class indices (N, *).
        - output: scalar; with reduction="none" one value per sample, the shape of ``target``.
"""
MARGIN_ARGS = OptionSet(
    Option(
        "multiclass", "crammer_singer", "str",
        'how (N, C, *) scores give margins, "crammer_singer" (m = f_y - max_{j != y} f_j) |\n'
        '            "one_vs_rest" (m_c = y_c f_c, the loss summed over classes); unused for binary scores.',
    ),
    REDUCTION,
)


class _MarginLoss(nn.Module):
    """Common constructor and forward of the margin losses (not registered)."""

    name = "margin loss"

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        complete_docstring(cls, MARGIN_ARGS, MARGIN_SHAPE)

    def __init__(self, multiclass: str = "crammer_singer", reduction: str = "mean") -> None:
        super().__init__()
        if multiclass not in MULTICLASS:
            raise ValueError(f"{self.name}: multiclass must be one of {MULTICLASS}, got {multiclass!r}")
        self.multiclass = multiclass
        self.reduction = check_reduction(reduction)

    def loss(self, m: Tensor) -> Tensor:
        """phi(m) of the margin m = y f(x); the surrogate losses define it (zero_one overrides forward instead)."""
        raise NotImplementedError(f"{type(self).__name__} defines neither loss() nor its own forward()")

    @float32_forward
    def forward(self, scores: Tensor, target: Tensor) -> Tensor:
        return margin_loss(self.loss, self.name, scores, target, self.multiclass, self.reduction)

    def extra_repr(self) -> str:
        return f"multiclass={self.multiclass!r}, reduction={self.reduction!r}"


@register("zero_one", family="margin", aliases=("0-1", "zero_one_loss"))
class ZeroOneLoss(_MarginLoss):
    """0-1 loss (misclassification rate): an evaluation loss, not differentiable (its gradient is zero).

    Args:
        multiclass: accepted for the shared interface; both settings take the argmax of (N, C, *) scores.

    Formula:
        binary: l = [sign(f) != y] with sign(f) = +1 if f > 0 else -1  (f = 0 predicts the negative class)
        multiclass: l = [argmax_c f_c != y]   (both multiclass settings)
        The value carries a zero gradient (l + 0 * f) so it can sit in a composite without breaking
        backward; it never trains anything.

    Reference:
        Bartlett, Jordan & McAuliffe, "Convexity, Classification, and Risk Bounds", JASA 2006
        (the 0-1 risk the surrogates bound). Equals sklearn.metrics.zero_one_loss.

    Example:
        >>> crit = ZeroOneLoss()
        >>> float(crit(torch.tensor([2.0, -1.0, 0.5]), torch.tensor([1.0, 1.0, 0.0])))   # 2 of 3 wrong
        0.6666666865348816
    """

    name = "zero_one"

    @float32_forward
    def forward(self, scores: Tensor, target: Tensor) -> Tensor:
        if target.shape == scores.shape or (
            scores.dim() >= 2 and scores.shape[1] == 1 and target.shape == scores.shape[:1] + scores.shape[2:]
        ):
            f = scores.reshape(target.shape)
            wrong = (f.detach() > 0) != (target > 0)
            return reduce(wrong.to(scores.dtype) + 0.0 * f, self.reduction)
        margins(self.name, scores, target)  # validates the shapes
        wrong = scores.detach().argmax(1) != target
        return reduce(wrong.to(scores.dtype) + 0.0 * scores.sum(1), self.reduction)


@register("hinge", family="margin", aliases=("svm",))
class HingeLoss(_MarginLoss):
    """Hinge loss (SVM): max(0, 1 - m), multiclass Crammer-Singer or one-vs-rest.

    Equals sklearn.metrics.hinge_loss (binary and multiclass); for C = 2 Crammer-Singer is
    2 x torch.nn.MultiMarginLoss.

    Formula:
        l(m) = max(0, 1 - m),  m = y f (binary) | f_y - max_{j != y} f_j (Crammer-Singer)
        one-vs-rest: l = sum_c max(0, 1 - y_c f_c)

    Reference:
        Cortes & Vapnik, "Support-Vector Networks", Machine Learning 1995; Crammer & Singer, "On the
        Algorithmic Implementation of Multiclass Kernel-based Vector Machines", JMLR 2001.

    Example:
        >>> crit = HingeLoss()
        >>> float(crit(torch.tensor([2.0, 0.5]), torch.tensor([1.0, 1.0])))   # (0 + 0.5) / 2
        0.25
    """

    name = "hinge"

    def loss(self, m: Tensor) -> Tensor:
        return torch.relu(1 - m)


@register("squared_hinge", family="margin", aliases=("l2_svm",))
class SquaredHingeLoss(_MarginLoss):
    """Squared hinge loss (L2-SVM): max(0, 1 - m)^2.

    Formula:
        l(m) = max(0, 1 - m)^2

    Reference:
        Mangasarian & Musicant, "Lagrangian Support Vector Machines", JMLR 2001; Lee & Lin (L2-SVM);
        as tf.keras.losses.SquaredHinge.

    Example:
        >>> crit = SquaredHingeLoss()
        >>> float(crit(torch.tensor([0.5]), torch.tensor([1.0])))
        0.25
    """

    name = "squared_hinge"

    def loss(self, m: Tensor) -> Tensor:
        return torch.relu(1 - m).square()


@register("smoothed_hinge", family="margin")
class SmoothedHingeLoss(_MarginLoss):
    """Smooth hinge (Rennie & Srebro 2005): linear below 0, quadratic on (0, 1), zero above 1.

    Formula:
        l(m) = 1/2 - m          if m <= 0
               (1 - m)^2 / 2    if 0 < m < 1
               0                if m >= 1

    Reference:
        Rennie & Srebro, "Loss Functions for Preference Levels: Regression with Discrete Ordered
        Labels", IJCAI Workshop on Advances in Preference Handling, 2005.

    Example:
        >>> crit = SmoothedHingeLoss()
        >>> [float(crit(torch.tensor([v]), torch.tensor([1.0]))) for v in (-1.0, 0.5, 2.0)]
        [1.5, 0.125, 0.0]
    """

    name = "smoothed_hinge"

    def loss(self, m: Tensor) -> Tensor:
        q = torch.clamp(1 - m, 0.0, 1.0)  # the quadratic part, linear continuation below m = 0
        return 0.5 * q.square() + torch.relu(-m)


@register("quadratic_smoothed_hinge", family="margin", aliases=("quadratically_smoothed_hinge",))
class QuadraticSmoothedHingeLoss(_MarginLoss):
    """Quadratically smoothed hinge (Zhang 2004) with smoothing width gamma.

    Args:
        gamma: smoothing width (> 0): quadratic on (1 - gamma, 1); gamma -> 0 is the hinge.

    Formula:
        l(m) = max(0, 1 - m)^2 / (2 gamma)   if m >= 1 - gamma
               1 - gamma / 2 - m             otherwise
        gamma -> 0 gives the hinge; gamma = 2 gives modified_huber / 4; gamma = 1 is smoothed_hinge.

    Reference:
        Zhang, "Solving Large Scale Linear Prediction Problems Using Stochastic Gradient Descent
        Algorithms", ICML 2004.

    Example:
        >>> crit = QuadraticSmoothedHingeLoss(gamma=2.0)
        >>> float(crit(torch.tensor([0.0]), torch.tensor([1.0])))   # 1 / 4
        0.25
    """

    name = "quadratic_smoothed_hinge"

    def __init__(self, gamma: float = 1.0, multiclass: str = "crammer_singer", reduction: str = "mean") -> None:
        super().__init__(multiclass, reduction)
        if gamma <= 0:
            raise ValueError(f"{self.name}: gamma must be > 0, got {gamma}")
        self.gamma = float(gamma)

    def loss(self, m: Tensor) -> Tensor:
        q = torch.clamp(1 - m, 0.0, self.gamma)
        return q.square() / (2 * self.gamma) + torch.relu(1 - self.gamma - m)


@register("modified_huber", family="margin")
class ModifiedHuberLoss(_MarginLoss):
    """Modified Huber loss (Zhang 2004): squared hinge for m >= -1, linear -4m below.

    Formula:
        l(m) = max(0, 1 - m)^2   if m >= -1
               -4 m              otherwise

    Reference:
        Zhang, "Solving Large Scale Linear Prediction Problems Using Stochastic Gradient Descent
        Algorithms", ICML 2004; as sklearn SGDClassifier(loss="modified_huber").

    Example:
        >>> crit = ModifiedHuberLoss()
        >>> [float(crit(torch.tensor([v]), torch.tensor([1.0]))) for v in (-2.0, 0.0)]
        [8.0, 1.0]
    """

    name = "modified_huber"

    def loss(self, m: Tensor) -> Tensor:
        q = torch.clamp(1 - m, 0.0, 2.0)
        return q.square() + 4 * torch.relu(-1 - m)


@register("exponential", family="margin", aliases=("exp_loss", "adaboost"))
class ExponentialLoss(_MarginLoss):
    """Exponential loss (AdaBoost): exp(-m), with the exponent clamped at max_exponent against overflow.

    Args:
        max_exponent: clamp M of the exponent -m against float32 overflow (exp(80) ~ 5.5e34).

    Formula:
        l(m) = exp(-m), computed as exp(min(-m, M))   (M = max_exponent = 80: exp(80) ~ 5.5e34 is
        finite in float32; for m < -M the value is held at exp(M) and the gradient is 0)

    Reference:
        Freund & Schapire, "A Decision-Theoretic Generalization of On-Line Learning and an Application
        to Boosting", JCSS 1997; Friedman, Hastie & Tibshirani, "Additive Logistic Regression", AoS 2000.

    Example:
        >>> crit = ExponentialLoss()
        >>> float(crit(torch.tensor([0.0]), torch.tensor([1.0])))
        1.0
        >>> [round(float(crit(torch.tensor([2.0]), torch.tensor([y]))), 4) for y in (1.0, -1.0)]   # exp(-2), exp(2)
        [0.1353, 7.3891]
    """

    name = "exponential"

    def __init__(self, max_exponent: float = 80.0, multiclass: str = "crammer_singer", reduction: str = "mean") -> None:
        super().__init__(multiclass, reduction)
        self.max_exponent = float(max_exponent)

    def loss(self, m: Tensor) -> Tensor:
        return torch.exp(torch.clamp(-m, max=self.max_exponent))

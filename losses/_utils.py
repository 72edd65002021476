"""The one helper set of every loss family: modes, target preparation, ignore masks, the class-range
check, the safe power, reductions, the float32 guard and the family keyword options.

Every loss in the package routes through these so that shapes, reduction semantics, AMP behaviour
and error messages are the same everywhere.

Sync policy. A loss forward never reads a tensor's value on the host when that tensor lives on an
accelerator (no ``.item()``, ``int(t)``, ``bool(t)`` or data-dependent shapes), so a loss neither
stalls the GPU nor breaks a ``torch.compile`` graph. The one value check, class indices in
``[0, C)`` (:func:`check_class_range`), runs eagerly only for CPU tensors outside compilation and
raises :class:`LossInputError` there; on CUDA (or any non-CPU device) and while
``torch.compiler.is_compiling()`` it is skipped, and the gather/scatter kernels' own bounds checks
(a device-side assert on CUDA) report a bad index instead.

Family options. The keywords a family's losses share (``mode``, ``ignore_index``, ``reduction``,
the region statistics options ...) are :class:`Option` s, declared once with their default and
their ``Args:`` line. An :class:`OptionSet` parses them for the functional cores and, for a module
class, adds them to ``__init__``'s signature (what the registry and the loss card see) and appends
their ``Args:`` lines to the class docstring; the source docstring documents only the class's own
parameters.
"""

from __future__ import annotations

import collections
import functools
import inspect
import re
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, TypeVar

import torch
from torch import Tensor, nn

REDUCTIONS = ("mean", "sum", "none")
BINARY_MODE = "binary"
MULTICLASS_MODE = "multiclass"
MULTILABEL_MODE = "multilabel"
MODES = (BINARY_MODE, MULTICLASS_MODE, MULTILABEL_MODE)

F = TypeVar("F", bound=Callable)


class LossInputError(ValueError):
    """A loss received tensors of the wrong shape, dtype or value range."""


# --------------------------------------------------------------------------- reduction and precision


def check_reduction(reduction: str) -> str:
    """Validate ``reduction`` and return it."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return reduction


def reduce(loss: Tensor, reduction: str, weight: Tensor | None = None) -> Tensor:
    """Apply ``reduction`` to an element-wise loss.

    With ``weight`` (broadcastable to ``loss``, e.g. a validity mask), ``mean`` is the
    weighted mean ``sum(w * l) / max(sum(w), eps)``, so an all-ignored batch gives 0
    with a defined (zero) gradient instead of NaN.
    """
    if weight is not None:
        loss = loss * weight
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        if weight is None:
            return loss.mean() if loss.numel() else loss.sum()
        denom = torch.broadcast_to(weight, loss.shape).sum()
        return loss.sum() / denom.clamp_min(torch.finfo(loss.dtype).eps)
    raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def upcast(t: Tensor) -> Tensor:
    """Promote half/bfloat16 (and integer) tensors to float32; float64 stays float64."""
    if t.is_floating_point():
        return t if t.dtype in (torch.float32, torch.float64) else t.float()
    return t.float()


def float32_forward(fn: F | None = None, *, state: tuple[str, ...] = ()) -> F:
    """Decorate a loss (a module ``forward`` or a functional core) to run outside autocast in >= float32.

    Losses take logs, exponentials and ratios of small numbers; under fp16/bf16 autocast
    those overflow or underflow. Floating tensor arguments are upcast; integer tensors (class
    indices) and everything else pass unchanged, as do the keyword arguments named in ``state``
    (running statistics the loss updates in place, e.g. GHM's histogram: ``@float32_forward(state=...)``).
    """
    if fn is None:
        return functools.partial(float32_forward, state=state)  # type: ignore[return-value]

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        args = tuple(_upcast_floating(a) for a in args)
        kwargs = {k: v if k in state else _upcast_floating(v) for k, v in kwargs.items()}
        device = next((a.device.type for a in args if isinstance(a, Tensor)), "cpu")
        if not torch.amp.is_autocast_available(device):  # e.g. "meta": nothing to disable
            return fn(*args, **kwargs)
        with torch.autocast(device_type=device, enabled=False):
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _upcast_floating(value):
    if isinstance(value, Tensor) and value.is_floating_point():
        return upcast(value)
    return value


def safe_pow(base: Tensor, gamma: float, eps: float = 1e-7) -> Tensor:
    """``base ** gamma`` for ``base >= 0`` with a finite gradient everywhere: the package's one power helper.

    ``gamma = 0`` gives 1 (``0^0 = 1``); ``gamma >= 1`` clamps the base at 0 (rounding); for
    ``0 < gamma < 1`` the slope is infinite at 0, so bases at or below ``floor(gamma, eps)`` (where
    ``base^gamma <= eps``) give 0 with zero gradient. :func:`safe_pow_grad` is its derivative.
    """
    if gamma == 0:
        return torch.ones_like(base)
    if gamma >= 1:
        base = base.clamp_min(0.0)
        return base if gamma == 1 else base.square() if gamma == 2 else base.pow(gamma)
    floor = pow_floor(gamma, eps, base.dtype)
    return torch.where(base > floor, base.clamp_min(floor).pow(gamma), 0.0)


def safe_pow_grad(base: Tensor, gamma: float, eps: float = 1e-7) -> Tensor:
    """``d/dbase safe_pow(base, gamma, eps)``: ``gamma base^(gamma - 1)``, 0 wherever the power is floored.

    For the analytic backward of fused autograd Functions, so they share :func:`safe_pow`'s floors.
    """
    if gamma == 0:
        return torch.zeros_like(base)
    if gamma == 1:
        return (base > 0).to(base.dtype)  # as autograd's clamp_min(0): 0 at the boundary
    if gamma > 1:
        base = base.clamp_min(0.0)
        return 2.0 * base if gamma == 2 else gamma * base.pow(gamma - 1)
    floor = pow_floor(gamma, eps, base.dtype)
    return torch.where(base > floor, gamma * base.clamp_min(floor).pow(gamma - 1), 0.0)


def pow_floor(gamma: float, eps: float, dtype: torch.dtype) -> float:
    """The base below which :func:`safe_pow` gives 0 for ``0 < gamma < 1``: ``base^gamma <= eps`` there."""
    return max(eps ** (1.0 / gamma), torch.finfo(dtype).tiny * 1e4)


# --------------------------------------------------------------------------- modes and targets


def check_mode(name: str, mode: str, modes: tuple[str, ...] = MODES) -> str:
    """Validate ``mode`` (one of ``modes``) and return it."""
    if mode not in modes:
        raise ValueError(f"{name}: mode must be one of {modes}, got {mode!r}")
    return mode


class Prepared(NamedTuple):
    """Validated inputs of a dense loss (see :func:`prepare`).

    ``kind`` is ``"index"`` (multiclass class indices ``(N, *)``, long, ignored positions set to 0),
    ``"prob"`` (multiclass probabilities ``(N, C, *)``) or ``"dense"`` (sigmoid modes, or a one-hot
    multiclass target with ``dense=True``: the shape of ``logits``; ignored elements set to 0).
    ``mask`` is the float validity mask, ``None`` without ``ignore_index``: per position ``(N, *)``
    for ``"index"`` and ``"prob"``, per element (broadcastable to ``logits``) for ``"dense"``.
    """

    logits: Tensor
    target: Tensor
    kind: str
    mask: Tensor | None


def ignore_mask(target: Tensor, ignore_index: int | None) -> tuple[Tensor, Tensor | None]:
    """``target`` with positions equal to ``ignore_index`` set to 0, and the boolean validity mask.

    The one place ignore masks are built; ``(target, None)`` without ``ignore_index``.
    """
    if ignore_index is None:
        return target, None
    valid = target != ignore_index
    return target.masked_fill(~valid, 0), valid


def check_class_range(name: str, index: Tensor, num_classes: int) -> None:
    """Raise :class:`LossInputError` if a class index is outside ``[0, num_classes)``; see the sync policy.

    Eager on CPU tensors only (reading a CPU value is no device sync); skipped on other devices and
    while compiling, where the gather/scatter kernels' bounds checks fire instead.
    """
    if index.numel() == 0 or index.device.type != "cpu" or torch.compiler.is_compiling():
        return
    low, high = torch.aminmax(index)
    if low < 0 or high >= num_classes:
        raise LossInputError(
            f"{name}: target holds class indices outside [0, {num_classes - 1}] (min {int(low)}, max {int(high)}); "
            "set ignore_index for void labels"
        )


def one_hot(index: Tensor, num_classes: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """Class indices ``(N, *)`` (already valid, see :func:`prepare`) -> one-hot ``(N, C, *)`` of ``dtype``."""
    encoded = torch.zeros((index.shape[0], num_classes, *index.shape[1:]), dtype=dtype, device=index.device)
    return encoded.scatter_(1, index.unsqueeze(1), 1.0)


_EXPECTED = {
    BINARY_MODE: "logits (N, *) or (N, 1, *) and a target of the same shape (or (N, *)) in [0, 1]",
    MULTICLASS_MODE: "logits (N, C, *) and a class-index target (N, *) (integer)",
    MULTILABEL_MODE: "logits (N, C, *) and a target (N, C, *) in [0, 1]",
}


def _shape_error(name: str, mode: str, logits: Tensor, target: Tensor, probabilities: bool) -> LossInputError:
    expected = _EXPECTED[mode] + (" or probabilities (N, C, *)" if mode == MULTICLASS_MODE and probabilities else "")
    return LossInputError(
        f"{name}(logits, target) mode={mode!r}: expected {expected}; "
        f"got logits {tuple(logits.shape)} {logits.dtype} and target {tuple(target.shape)} {target.dtype}"
    )


def prepare(
    name: str,
    logits: Tensor,
    target: Tensor,
    mode: str,
    ignore_index: int | None = None,
    *,
    probabilities: bool = True,
    dense: bool = False,
) -> Prepared:
    """Validate ``(logits, target)`` for ``mode`` and return the canonical :class:`Prepared` inputs.

    The one target-preparation function of the dense losses. ``mode``:

    * ``"multiclass"``: logits ``(N, C, *)``; class indices ``(N, *)`` (an integer ``(N, 1, *)`` is
      squeezed; range-checked, see the sync policy) or, with ``probabilities``, a float ``(N, C, *)``
      target (a position is ignored when any channel equals ``ignore_index``);
    * ``"binary"``: logits ``(N, *)`` or ``(N, 1, *)``, target of the same shape (``(N, *)`` for
      ``(N, 1, *)`` logits is unsqueezed; integer 0/1 allowed);
    * ``"multilabel"``: logits and target ``(N, C, *)``.

    ``dense=True`` turns multiclass targets into the sigmoid form: a one-hot (or the probabilities)
    of the logits' shape with an element mask.
    """
    check_mode(name, mode)
    if logits.dim() < 1 or target.dim() < 1 or target.shape[0] != logits.shape[0]:
        raise _shape_error(name, mode, logits, target, probabilities)
    if mode == MULTICLASS_MODE:
        if logits.dim() < 2:
            raise _shape_error(name, mode, logits, target, probabilities)
        if target.is_floating_point():
            if not probabilities or target.shape != logits.shape:
                raise _shape_error(name, mode, logits, target, probabilities)
            target, valid = target, None
            if ignore_index is not None:
                valid = ~(target == ignore_index).any(1)
                target = target.masked_fill(~valid.unsqueeze(1), 0.0)
            mask = None if valid is None else valid.to(logits.dtype)
            if dense:
                return Prepared(logits, target.to(logits.dtype), "dense", None if mask is None else mask.unsqueeze(1))
            return Prepared(logits, target.to(logits.dtype), "prob", mask)
        if target.dim() == logits.dim() and target.shape[1] == 1 and logits.shape[1] != 1:
            target = target.squeeze(1)
        if target.shape != logits.shape[:1] + logits.shape[2:]:
            raise _shape_error(name, mode, logits, target, probabilities)
        index, valid = ignore_mask(target.long(), ignore_index)
        check_class_range(name, index, logits.shape[1])
        mask = None if valid is None else valid.to(logits.dtype)
        if dense:
            encoded = one_hot(index, logits.shape[1], logits.dtype)
            return Prepared(logits, encoded, "dense", None if mask is None else mask.unsqueeze(1))
        return Prepared(logits, index, "index", mask)
    if mode == BINARY_MODE:
        if target.shape != logits.shape:
            if logits.dim() >= 2 and logits.shape[1] == 1 and target.shape == logits.shape[:1] + logits.shape[2:]:
                target = target.unsqueeze(1)
            else:
                raise _shape_error(name, mode, logits, target, probabilities)
    elif logits.dim() < 2 or target.shape != logits.shape:
        raise _shape_error(name, mode, logits, target, probabilities)
    target, valid = ignore_mask(target, ignore_index)
    return Prepared(logits, target.to(logits.dtype), "dense", None if valid is None else valid.to(logits.dtype))


def check_same_shape(name: str, pred: Tensor, target: Tensor, what: str = "(pred, target)") -> None:
    """Raise :class:`LossInputError` naming the loss when ``pred`` and ``target`` differ in shape."""
    if pred.shape != target.shape:
        raise LossInputError(
            f"{name}{what}: expected pred and target of the same shape, "
            f"got pred {tuple(pred.shape)} and target {tuple(target.shape)}"
        )


# --------------------------------------------------------------------------- family keyword options


class Option(NamedTuple):
    """A keyword shared by a family's losses, declared once: default, annotation, ``Args:`` line and rule.

    ``check(value)`` is the constraint (``rule`` says it in words for the error message); a non-None
    ``dtype`` makes a module keep the (sequence) value as a non-persistent buffer of that dtype.
    """

    name: str
    default: Any
    annotation: str
    doc: str
    check: Callable[[Any], bool] = lambda value: True
    rule: str = ""
    dtype: torch.dtype | None = None


MODE = Option(
    "mode", MULTICLASS_MODE, "str", '"binary" | "multiclass" | "multilabel"; see the module docstring.',
    lambda v: v in MODES, f"one of {MODES}",
)
FROM_LOGITS = Option("from_logits", True, "bool", "apply softmax (multiclass) or sigmoid first; False: probabilities.")
IGNORE_INDEX = Option("ignore_index", None, "int | None", "target value left out of every term; None: no void label.")
SMOOTH = Option(
    "smooth", 0.0, "float", "added to numerator and denominator of each overlap index (>= 0).",
    lambda v: v >= 0, ">= 0",
)
EPS = Option("eps", 1e-7, "float", "floor of denominators and probabilities (> 0).", lambda v: v > 0, "> 0")
CLASSES = Option(
    "classes", None, "Sequence[int] | None", "class indices kept before the class mean; None: all.", dtype=torch.long
)
CLASS_WEIGHTS = Option(
    "class_weights", None, "Sequence[float] | None", "per-class weights of the class mean; None: equal.",
    dtype=torch.float32,
)
PER_IMAGE = Option("per_image", False, "bool", "statistics per image (N, C) instead of pooled over the batch (C,).")
REDUCTION = Option(
    "reduction", "mean", "str", '"mean" | "sum" | "none".', lambda v: v in REDUCTIONS, f"one of {REDUCTIONS}"
)

_ARG_LINE = re.compile(r"^\s+(\w+):")


def _args_block(lines: list[str]) -> tuple[int | None, int]:
    """Index of a docstring's ``Args:`` line (None: it has none) and the end of its indented entries."""
    header = next((i for i, line in enumerate(lines) if line.strip() == "Args:"), None)
    if header is None:
        return None, len(lines)
    indent = lines[header][: len(lines[header]) - len(lines[header].lstrip())] + "    "
    end = header + 1
    while end < len(lines) and lines[end].startswith(indent):
        end += 1
    return header, end


class OptionSet:
    """The keyword options of a family; ``parse`` returns them as a namedtuple (defaults filled, checked)."""

    def __init__(self, *options: Option) -> None:
        self.options = options
        self.values = collections.namedtuple("Options", [o.name for o in options])  # type: ignore[misc]

    def without(self, *names: str) -> OptionSet:
        """This set less the options called ``names`` (a family whose losses take a subset)."""
        return OptionSet(*(o for o in self.options if o.name not in names))

    def parse(self, name: str, given: Mapping[str, Any]) -> Any:
        """``given`` keywords with defaults filled in; unknown keywords raise TypeError, bad values ValueError."""
        unknown = [key for key in given if key not in self.values._fields]
        if unknown:
            raise TypeError(f"{name}: unexpected keyword argument(s) {unknown}; options: {list(self.values._fields)}")
        values = []
        for option in self.options:
            value = given.get(option.name, option.default)
            if not option.check(value):
                raise ValueError(f"{name}: {option.name} must be {option.rule}, got {value!r}")
            values.append(value)
        return self.values(*values)

    def declare(self, cls: type) -> None:
        """Give ``cls.__init__(self, <own>, **options)`` the options as keyword-only parameters in its
        signature, and append the ``Args:`` lines its docstring lacks (see the module docstring)."""
        init = cls.__dict__.get("__init__")
        if init is not None:
            own = [p for p in inspect.signature(init).parameters.values() if p.kind is not p.VAR_KEYWORD]
            taken = {p.name for p in own}
            extra = [
                inspect.Parameter(o.name, inspect.Parameter.KEYWORD_ONLY, default=o.default, annotation=o.annotation)
                for o in self.options
                if o.name not in taken
            ]
            init.__signature__ = inspect.signature(init).replace(parameters=own + extra)
        if cls.__dict__.get("__doc__"):
            cls.__doc__ = self._document(cls.__doc__, inspect.signature(cls.__init__))

    def _document(self, doc: str, signature: inspect.Signature) -> str:
        """Append ``Args:`` lines for the options in ``signature`` that ``doc`` does not document."""
        lines = doc.split("\n")
        header, end = _args_block(lines)
        if header is None:  # no own parameters: a new section before Shape: (or at the end)
            at = next((i for i, line in enumerate(lines) if line.strip() == "Shape:"), len(lines))
            indent = lines[at][: len(lines[at]) - len(lines[at].lstrip())] if at < len(lines) else "    "
            lines[at:at] = [f"{indent}Args:", ""]
            header, end = at, at + 1
        indent = lines[header][: len(lines[header]) - len(lines[header].lstrip())] + "    "
        documented = {m.group(1) for line in lines[header + 1 : end] if (m := _ARG_LINE.match(line))}
        by_name = {o.name: o for o in self.options}
        added = [
            f"{indent}{key}: {by_name[key].doc}"
            for key in signature.parameters
            if key in by_name and key not in documented
        ]
        lines[end:end] = added
        return "\n".join(lines)


def complete_docstring(cls: type, options: OptionSet, shape: str) -> None:
    """Give ``cls``'s own docstring what its family writes once: the ``Shape:`` section ``shape`` when it has
    none (placed after its ``Args:``, else before ``Example:``) and the ``Args:`` lines of ``options`` it lacks."""
    doc = cls.__dict__.get("__doc__")
    if not doc:
        return
    if "    Shape:" not in doc:
        lines = doc.split("\n")
        header, end = _args_block(lines)
        if header is None:
            at = next((i for i, line in enumerate(lines) if line.strip() == "Example:"), len(lines))
        else:
            at = end + 1  # after the blank line that ends the Args: block
        lines[at:at] = shape.rstrip("\n").split("\n") + [""]
        cls.__doc__ = "\n".join(lines)
    options.declare(cls)


class OptionModule(nn.Module):
    """Base of the loss modules with family options: ``OPTIONS`` parsed once in ``__init__``.

    Options become attributes (``self.mode`` ...), those with a ``dtype`` non-persistent buffers;
    :meth:`options` hands them back as keywords for the functional core.
    """

    name = "loss"
    OPTIONS = OptionSet()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.OPTIONS.declare(cls)

    def __init__(self, **options: Any) -> None:
        super().__init__()
        values = self.OPTIONS.parse(self.name, options)
        for option, value in zip(self.OPTIONS.options, values):
            if option.dtype is None:
                setattr(self, option.name, value)
            else:
                buffer = None if value is None else torch.as_tensor(list(value), dtype=option.dtype)
                self.register_buffer(option.name, buffer, persistent=False)

    def options(self) -> dict[str, Any]:
        """The family options as keywords (buffers included) for the functional core."""
        return {option.name: getattr(self, option.name) for option in self.OPTIONS.options}

    def extra_repr(self) -> str:
        shown = ("mode", "ignore_index", "per_image", "reduction")
        return ", ".join(f"{k}={v!r}" for k, v in self.options().items() if k in shown)

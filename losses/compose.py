"""Combining losses: weighted sums, per-term schedules and learnable (uncertainty) weights.

A loss *spec* is any of::

    "dice"                                             # a name
    "dice + 0.5*focal"                                 # shorthand weighted sum
    {"name": "dice", "params": {"mode": "binary"}}     # a dict (weight, schedule optional)
    [{"name": "dice", "weight": 1.0}, {"name": "focal", "weight": 0.5,
      "schedule": {"warmup_epochs": 2}}]               # a list -> Composite

A term mapping may also carry ``inputs`` (the named slot inputs it is called with, e.g.
``[fake, target]``) and ``optim`` (``{lr_mult, weight_decay}`` for the parameters the loss
owns, e.g. class centres, placed in their own optimiser group by the task).

:func:`build` turns a spec into an ``nn.Module``: a single loss for a single unweighted
term, otherwise a :class:`Composite`. Tasks use :func:`losses.build_slot` (:mod:`losses.slots`),
which checks the task's slot declaration and always returns a :class:`Composite`, so every slot
logs its per-term values the same way.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from losses._utils import LossInputError
from losses.balance import DynamicWeightAverage, GradNorm, all_mean
from losses.registry import LossConfigError, create, get

_TERM_KEYS = {"name", "params", "weight", "schedule", "inputs", "optim"}
_TERM_OPTIM_KEYS = {"lr_mult", "weight_decay"}
_SCHEDULE_KEYS = {"warmup_epochs", "start", "end", "epochs"}
_BALANCES = ("fixed", "uncertainty", "dwa", "gradnorm")
# balance options: name -> (lower bound, whether the bound itself is allowed); gradnorm alpha = 0: equal norms
_BALANCE_OPTIONS = {"dwa": {"temperature": (0.0, False)}, "gradnorm": {"alpha": (0.0, True)}}
_SHORTHAND_TERM = re.compile(
    r"^\s*(?:(?P<weight>[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*\*\s*)?(?P<name>[A-Za-z_][\w]*)\s*$"
)


@dataclass
class Schedule:
    """Linear ramp of a term's weight multiplier from ``start`` to ``end`` over ``epochs``.

    ``warmup_epochs: k`` is shorthand for ``start=0, end=1, epochs=k``. The multiplier at
    epoch ``e`` is ``start + (end - start) * min(1, e / epochs)``.
    """

    start: float = 1.0
    end: float = 1.0
    epochs: int = 0

    def __call__(self, epoch: float) -> float:
        if self.epochs <= 0:
            return self.end
        return self.start + (self.end - self.start) * min(1.0, max(0.0, epoch) / self.epochs)

    @classmethod
    def parse(cls, spec: Mapping[str, Any] | None, where: str = "schedule") -> Schedule | None:
        if spec is None:
            return None
        _check_mapping(spec, _SCHEDULE_KEYS, where, "{warmup_epochs: 2}")
        if "warmup_epochs" in spec:
            if set(spec) - {"warmup_epochs"}:
                raise LossConfigError(f"{where}: warmup_epochs cannot be combined with start/end/epochs")
            return cls(0.0, 1.0, _number(spec, "warmup_epochs", where, integer=True))
        return cls(
            _number(spec, "start", where, default=1.0),
            _number(spec, "end", where, default=1.0),
            _number(spec, "epochs", where, default=0, integer=True),
        )


def _number(spec: Mapping[str, Any], key: str, where: str, default: float = 0.0, integer: bool = False) -> Any:
    """``spec[key]`` as a finite number >= 0 (an int when ``integer``), else a LossConfigError naming it."""
    value = spec.get(key, default)
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or not math.isfinite(value) or value < 0:
        expected = "an integer" if integer else "a number"
        raise LossConfigError(f"{where}.{key}: expected {expected} >= 0, got {value!r}")
    return value if integer else float(value)


@dataclass
class TermSpec:
    """One normalised term of a loss spec."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    weight: float = 1.0
    schedule: Schedule | None = None
    inputs: tuple[str, ...] | None = None  # named slot inputs this term is called with (None: the slot's default)
    optim: dict[str, float] | None = None  # own optimiser group for the term's parameters: lr_mult, weight_decay


def parse_spec(spec: Any, where: str = "loss") -> list[TermSpec]:
    """Normalise any accepted spec form into a list of :class:`TermSpec` (validates names)."""
    if isinstance(spec, TermSpec):
        terms = [spec]
    elif isinstance(spec, str):
        terms = _parse_shorthand(spec, where)
    elif isinstance(spec, Mapping):
        terms = [_parse_term(spec, where)]
    elif isinstance(spec, Sequence) and spec and not isinstance(spec, (bytes, bytearray)):
        terms = [_parse_term(t, f"{where}[{i}]") for i, t in enumerate(spec)]
    else:
        raise LossConfigError(
            f"{where}: expected a loss name, 'a + 0.5*b', a {{name, params}} mapping or a list; got {spec!r}"
        )
    for i, term in enumerate(terms):
        try:
            get(term.name)
        except LossConfigError as err:
            raise LossConfigError(f"{where}: {err}") from None
        if not math.isfinite(term.weight) or term.weight < 0:
            path = where if len(terms) == 1 else f"{where}[{i}]"
            hint = " (a negative weight would maximise the loss)" if term.weight < 0 else ""
            raise LossConfigError(f"{path}.weight: expected a finite number >= 0, got {term.weight}{hint}")
    return terms


def _parse_shorthand(text: str, where: str) -> list[TermSpec]:
    terms = []
    for part in text.split("+"):
        match = _SHORTHAND_TERM.match(part)
        if not match:
            raise LossConfigError(
                f"{where}: cannot parse {part.strip()!r} in {text!r}; write terms like 'dice + 0.5*focal'"
            )
        terms.append(TermSpec(match["name"], {}, float(match["weight"] or 1.0)))
    return terms


def _parse_term(spec: Any, where: str) -> TermSpec:
    if isinstance(spec, TermSpec):
        return spec
    if isinstance(spec, str):
        terms = _parse_shorthand(spec, where)
        if len(terms) != 1:
            raise LossConfigError(f"{where}: a list item must be one loss, got {spec!r}")
        return terms[0]
    if not isinstance(spec, Mapping):
        raise LossConfigError(f"{where}: expected a mapping with 'name', got {spec!r}")
    unknown = set(spec) - _TERM_KEYS
    if unknown:
        raise LossConfigError(f"{where}: unknown key(s) {sorted(unknown)}; a term takes {sorted(_TERM_KEYS)}")
    if "name" not in spec:
        raise LossConfigError(f"{where}: missing 'name'")
    params = spec.get("params") or {}
    if not isinstance(params, Mapping):
        raise LossConfigError(f"{where}.params: expected a mapping, got {params!r}")
    try:
        weight = float(spec.get("weight", 1.0))
    except (TypeError, ValueError):
        raise LossConfigError(f"{where}.weight: expected a number, got {spec.get('weight')!r}") from None
    return TermSpec(
        str(spec["name"]),
        dict(params),
        weight,
        Schedule.parse(spec.get("schedule"), f"{where}.schedule"),
        _parse_inputs(spec.get("inputs"), f"{where}.inputs"),
        parse_group_options(spec.get("optim"), f"{where}.optim"),
    )


def _parse_inputs(value: Any, where: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, Sequence) or not names or not all(isinstance(n, str) and n for n in names):
        raise LossConfigError(f"{where}: expected a list of input names like [fake, target], got {value!r}")
    return tuple(names)


def parse_group_options(value: Any, where: str) -> dict[str, float] | None:
    """Validate an optimiser-group mapping ``{lr_mult: float >= 0, weight_decay: float >= 0}``."""
    if value is None:
        return None
    _check_mapping(value, _TERM_OPTIM_KEYS, where, "{lr_mult: 10, weight_decay: 0}")
    return {key: _number(value, key, where) for key in value}


def _check_mapping(value: Any, accepted: set[str], where: str, example: str) -> None:
    if not isinstance(value, Mapping):
        raise LossConfigError(f"{where}: expected a mapping like {example}, got {value!r}")
    unknown = set(value) - accepted
    if unknown:
        raise LossConfigError(f"{where}: unknown key(s) {sorted(unknown)}; accepted: {sorted(accepted)}")


class Composite(nn.Module):
    """Weighted sum of registry losses with per-term schedules and optional learned/adaptive weighting.

    Formula:
        fixed:        L = sum_i s_i(epoch) * w_i * L_i
        uncertainty:  L = sum_i exp(-u_i) * s_i(epoch) * w_i * L_i + u_i   (u_i = log sigma_i^2, learnable)
        dwa:          L = sum_i d_i(epoch) * s_i(epoch) * w_i * L_i       (d_i: :class:`DynamicWeightAverage`)
        gradnorm:     L = sum_i g_i * s_i(epoch) * w_i * L_i              (g_i: :class:`GradNorm`, detached here;
                      the task adds GradNorm's L_grad, which needs the shared layer's parameters)
        :meth:`effective_weights` gives each term's factor on L_i (the product above).

    Reference:
        Kendall, Gal & Cipolla, "Multi-Task Learning Using Uncertainty to Weigh Losses", CVPR 2018.
        Liu, Johns & Davison, "End-to-End Multi-Task Learning with Attention", CVPR 2019 (DWA).
        Chen et al., "GradNorm: Gradient Normalization for Adaptive Loss Balancing", ICML 2018.

    Inputs: a slot is called with positional inputs (bound, in order, to the slot's input names,
    e.g. ``pred, target``) and/or named ones (``discriminator=D, real=x, fake=y``). A term that
    declares its inputs (``inputs: [fake, target]`` in its spec, or the loss class's ``INPUTS``,
    e.g. a gradient penalty's ``(discriminator, real, fake)``) is called with those, by name; any
    other term with the positional inputs. So one composite mixes terms with different inputs and
    still yields one total and per-term logs.

    Calling the module returns the total; :meth:`forward_terms` also returns the unweighted
    per-term values (detached) keyed by term name. The current epoch is a buffer, so a resumed
    run continues its schedules where it stopped.
    """

    def __init__(
        self,
        terms: Sequence[TermSpec],
        losses: Sequence[nn.Module],
        balance: str | Mapping[str, Any] = "fixed",
        inputs: Sequence[str] = (),
        where: str = "loss",
    ) -> None:
        super().__init__()
        balance, options = parse_balance(balance)
        self.loss_names = [t.name for t in terms]  # registered names; `names` are unique per term
        self.names = _unique_names(self.loss_names)
        self.terms = nn.ModuleList(losses)
        self.weights = [t.weight for t in terms]
        self.schedules = [t.schedule for t in terms]
        self.term_inputs = [t.inputs or getattr(loss, "INPUTS", None) for t, loss in zip(terms, losses)]
        self.term_optim = [t.optim for t in terms]
        self.inputs = tuple(inputs)
        self.where = where
        self.balance = balance
        self.register_buffer("epoch", torch.zeros((), dtype=torch.float64))
        self._epoch = 0.0  # host copy of `epoch`: reading the buffer every step would sync a GPU
        if balance == "uncertainty":
            self.log_vars = nn.Parameter(torch.zeros(len(terms)))
        else:
            self.register_parameter("log_vars", None)
        self.dwa = DynamicWeightAverage(len(terms), **options) if balance == "dwa" else None
        self.gradnorm = GradNorm(len(terms), **options) if balance == "gradnorm" else None

    def set_epoch(self, epoch: float) -> None:
        """Tell the schedules which (possibly fractional) epoch training is in; a new epoch updates DWA weights."""
        if self.dwa is not None and float(epoch) > self._epoch:
            self.dwa.end_epoch()
        self._epoch = float(epoch)
        self.epoch.fill_(self._epoch)

    def _load_from_state_dict(self, state_dict: Mapping[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        if prefix + "epoch" in state_dict:
            self._epoch = float(state_dict[prefix + "epoch"])

    def term_weights(self) -> list[float]:
        """Spec weight x schedule of each term at the current epoch (DWA, GradNorm and uncertainty act on top)."""
        return [w * (s(self._epoch) if s is not None else 1.0) for w, s in zip(self.weights, self.schedules)]

    def balance_weights(self) -> Tensor | None:
        """The learned/adaptive factor of each term (K,), detached: DWA or GradNorm weights, exp(-u_i); else None."""
        if self.dwa is not None:
            return self.dwa.weights
        if self.gradnorm is not None:
            return self.gradnorm.current()
        if self.log_vars is not None:
            return torch.exp(-self.log_vars.detach())
        return None

    def gradnorm_loss(self, terms: Mapping[str, Tensor], grads: Tensor) -> Tensor:
        """GradNorm's L_grad for one training step (``balance: gradnorm``); add it to the total before backward.

        ``terms``: the step's unweighted term values from ``forward_terms(..., detach=False)``;
        ``grads``: their gradients on the shared layer, ``losses.balance.term_gradients(values, params)[0]``.
        Tasks do this for you (:class:`tasks.base.LossTask`); in a plain loop::

            total, terms = crit.forward_terms(pred, target, detach=False)
            grads, _ = term_gradients(list(terms.values()), list(model.last_layer.parameters()))
            (total + crit.gradnorm_loss(terms, grads)).backward()
        """
        if self.gradnorm is None:
            raise LossConfigError(f"{self.where}: gradnorm_loss needs balance: gradnorm, not {self.balance!r}")
        norms = grads.norm(dim=1)
        norms = torch.where(torch.isfinite(norms).all(), norms, torch.zeros_like(norms))  # overflow: no update
        values = all_mean(torch.stack([terms[name].detach().float() for name in self.names]))
        return self.gradnorm.loss(norms, values)

    def effective_weights(self) -> Tensor:
        """Each term's total factor on its unweighted value (K,): spec weight x schedule x balance weight."""
        weights = torch.tensor(self.term_weights(), device=self.epoch.device)
        learned = self.balance_weights()
        return weights if learned is None else weights * learned.to(weights)

    def term_arguments(self, args: tuple[Any, ...], named: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """The positional arguments each term is called with (see the class docstring)."""
        available = {**dict(zip(self.inputs, args)), **named}
        calls = []
        for name, wanted in zip(self.names, self.term_inputs):
            if wanted is None:
                wanted = None if args or not self.inputs else self.inputs
            if wanted is None:
                calls.append(args)
                continue
            missing = [n for n in wanted if n not in available]
            if missing:
                raise LossInputError(
                    f"{self.where}: term {name!r} needs input(s) {', '.join(map(repr, missing))}; "
                    f"the slot was called with {', '.join(map(repr, available)) or 'nothing'}"
                )
            calls.append(tuple(available[n] for n in wanted))
        return calls

    def forward_terms(
        self, *args: Any, normalizer: float | Tensor = 1.0, detach: bool = True, **named: Any
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Total and unweighted per-term values; every term is divided by ``normalizer`` first.

        ``normalizer`` is for callers that sum a loss and divide by a count (detection heads divide
        by the number of foreground anchors): the uncertainty weights then act on the normalised
        terms and the ``log sigma^2`` regulariser stays unscaled, as in Kendall et al.
        ``detach=False`` keeps the per-term values in the graph (for per-term gradients: GradNorm,
        ``run.term_grad_norms``).
        """
        calls = self.term_arguments(args, named)
        values = [loss(*call) for loss, call in zip(self.terms, calls)]
        if not (isinstance(normalizer, (int, float)) and normalizer == 1):
            values = [value / normalizer for value in values]
        if self.dwa is not None and self.training and torch.is_grad_enabled():
            self.dwa.accumulate(torch.stack([v.detach().float() for v in values]))
        total = values[0].new_zeros(())
        adaptive = self.dwa.weights if self.dwa is not None else None
        if self.gradnorm is not None:
            adaptive = self.gradnorm.current()
        for i, (value, weight) in enumerate(zip(values, self.term_weights())):
            if adaptive is not None:
                weight = weight * adaptive[i]  # a tensor: no host sync
            if self.log_vars is not None:
                total = total + torch.exp(-self.log_vars[i]) * weight * value + self.log_vars[i]
            elif not isinstance(weight, float) or weight != 0.0:
                total = total + weight * value
        return total, {n: v.detach() if detach else v for n, v in zip(self.names, values)}

    def forward(self, *args: Any, **named: Any) -> Tensor:
        return self.forward_terms(*args, **named)[0]

    def extra_repr(self) -> str:
        terms = " + ".join(f"{w:g}*{n}" for n, w in zip(self.names, self.weights))
        return f"{terms}, balance={self.balance!r}"


def parse_balance(spec: str | Mapping[str, Any], where: str = "loss.balance") -> tuple[str, dict[str, float]]:
    """``fixed`` | ``uncertainty`` | ``dwa`` | ``gradnorm`` | ``{name: dwa, temperature: T}`` |
    ``{name: gradnorm, alpha: a}`` -> (name, options)."""
    if isinstance(spec, Mapping):
        options = {k: v for k, v in spec.items() if k != "name"}
        name = spec.get("name")
    else:
        name, options = spec, {}
    if name not in _BALANCES:
        raise LossConfigError(f"{where}: expected one of {', '.join(_BALANCES)} (or {{name: dwa, temperature: 2}}, "
                              f"{{name: gradnorm, alpha: 1.5}}), got {spec!r}")
    accepted = _BALANCE_OPTIONS.get(name, {})
    unknown = [k for k in options if k not in accepted]
    if unknown:
        raise LossConfigError(f"{where}: {name} takes {', '.join(accepted) or 'no options'}; got {unknown}")
    for key, value in options.items():
        bound, inclusive = accepted[key]
        number = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
        if not number or value < bound or (value == bound and not inclusive):
            raise LossConfigError(f"{where}.{key}: expected a number {'>=' if inclusive else '>'} {bound:g}, "
                                  f"got {value!r}")
    return name, {k: float(v) for k, v in options.items()}


def _unique_names(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return out


def build_terms(terms: Sequence[TermSpec], inject: Mapping[str, Any] | None, where: str) -> list[nn.Module]:
    """Instantiate each term; ``inject`` holds task-supplied parameters (used where a loss accepts them)."""
    modules = []
    for i, term in enumerate(terms):
        try:
            modules.append(create(term.name, term.params, inject))
        except LossConfigError as err:
            path = where if len(terms) == 1 else f"{where}[{i}]"
            raise LossConfigError(f"{path}: {err}") from None
    return modules


def build(spec: Any, balance: str = "fixed", defaults: Mapping[str, Any] | None = None, **params: Any) -> nn.Module:
    """Build a loss from a name, shorthand string, dict or list (see module docstring).

    Keyword ``params`` apply to a single named loss: ``build("focal", gamma=2.0)``; ``defaults``
    are used for parameters the loss accepts and the spec leaves unset (``mode``, ``num_classes``).
    A single unweighted, unscheduled term returns the loss module itself, anything else a
    :class:`Composite`. Tasks build their slots with :func:`losses.build_slot` instead.
    """
    if params:
        if not isinstance(spec, str) or "+" in spec or "*" in spec:
            raise LossConfigError("keyword parameters are only accepted with a single loss name")
        spec = {"name": spec, "params": params}
    terms = parse_spec(spec)
    modules = build_terms(terms, defaults, "loss")
    plain = terms[0].weight == 1.0 and terms[0].schedule is None and terms[0].inputs is None
    if len(terms) == 1 and plain and balance == "fixed":
        return modules[0]
    return Composite(terms, modules, balance)

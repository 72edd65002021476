"""Task loss slots: what a slot accepts, what the task injects or fixes, and how it is called.

A task declares each slot once as a :class:`Slot`; :func:`build_slot` enforces the declaration
and :func:`check_slot_spec` checks a spec against it without building anything (what the
trainer runs before any data is read), so Python and YAML users get the same errors:

>>> import losses
>>> seg = losses.Slot(("region", "classification"), default="dice + ce", inject=("mode",))
>>> crit = losses.build_slot("dice + 0.5*focal", seg, inject={"mode": "multiclass"}, where="loss.seg")
>>> losses.build_slot("giou", seg, where="loss.seg")  # doctest: +ELLIPSIS
Traceback (most recent call last):
  ...
losses.registry.LossConfigError: loss.seg: 'giou' is an overlap loss; seg slots take region/classification losses: ...
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from losses.compose import Composite, TermSpec, build_terms, parse_spec
from losses.registry import LossConfigError, available, check_params


@dataclass(frozen=True)
class Slot:
    """Declaration of one loss slot of a task.

    Args:
        families: loss families the slot accepts (``losses.FAMILIES``).
        default: the spec used when the config leaves the slot out; ``None``: no loss unless configured.
        inject: parameters the task supplies from its own attributes of the same name (``mode``,
            ``num_classes``, ``embedding_size``), given to every loss that accepts them unless the
            user set them.
        fixed: parameters the task sets for every loss that accepts them (``reduction="sum"`` for
            detection heads); a user value that differs is an error.
        inputs: names of the tensors the task passes positionally, in order (``pred, target``); a
            plain term is called with them.
        extra_inputs: further named inputs the task passes (``discriminator``, ``real``, ``fake``)
            that a term may ask for with ``inputs:`` or that a loss declares in ``INPUTS``.
        optimizer: the task optimiser that owns the slot's loss parameters (``None``: the first).
        doc: one line saying how the slot is called; quoted in errors and the task's help.
    """

    families: tuple[str, ...]
    default: Any = None
    inject: tuple[str, ...] = ()
    fixed: Mapping[str, Any] = field(default_factory=dict)
    inputs: tuple[str, ...] = ("pred", "target")
    extra_inputs: tuple[str, ...] = ()
    optimizer: str | None = None
    doc: str = ""

    def accepts(self, family: str) -> bool:
        return family in self.families

    @property
    def all_inputs(self) -> tuple[str, ...]:
        return (*self.inputs, *self.extra_inputs)


def check_slot_spec(spec: Any, slot: Slot, where: str) -> list[TermSpec]:
    """Parse ``spec`` and check it against ``slot`` (names, parameters, families, fixed values, inputs)."""
    name = where.rpartition(".")[2] or where
    terms = parse_spec(spec, where)
    for i, term in enumerate(terms):
        path = where if len(terms) == 1 else f"{where}[{i}]"
        try:
            entry = check_params(term.name, term.params)
        except LossConfigError as err:
            raise LossConfigError(f"{path}: {err}") from None
        if not slot.accepts(entry.family):
            fitting = [n for fam in slot.families for n in available(family=fam)]
            article = "an" if entry.family[0] in "aeiou" else "a"
            raise LossConfigError(
                f"{where}: {term.name!r} is {article} {entry.family} loss; "
                f"{name} slots take {'/'.join(slot.families)} losses: {', '.join(fitting)}"
            )
        for key, value in slot.fixed.items():
            if key in term.params and term.params[key] != value:
                why = f" ({slot.doc})" if slot.doc else ""
                raise LossConfigError(
                    f"{path}.params.{key}: this slot fixes {key}={value!r}{why}; "
                    f"leave it unset, got {term.params[key]!r}"
                )
        wanted = term.inputs or getattr(entry.cls, "INPUTS", None) or ()
        unknown = [n for n in wanted if n not in slot.all_inputs]
        if unknown:
            raise LossConfigError(
                f"{path}.inputs: {', '.join(map(repr, unknown))} not provided by the {name} slot; "
                f"it provides {', '.join(slot.all_inputs)}"
            )
    return terms


def build_slot(
    spec: Any,
    slot: Slot | None = None,
    *,
    inject: Mapping[str, Any] | None = None,
    balance: str = "fixed",
    where: str = "loss",
) -> Composite:
    """Build a task slot from ``spec``: always a :class:`~losses.Composite`, even for one term.

    With a ``slot`` declaration the spec is checked against it (:func:`check_slot_spec`), the
    slot's ``fixed`` parameters and the task's ``inject`` values (keyed by ``slot.inject``) are
    passed to every loss that accepts them, and the composite binds positional inputs to the
    slot's input names.
    """
    if slot is None:
        terms = parse_spec(spec, where)
        return Composite(terms, build_terms(terms, inject, where), balance, where=where)
    terms = check_slot_spec(spec, slot, where)
    missing = [n for n in slot.inject if n not in (inject or {})]
    if missing:
        raise LossConfigError(f"{where}: the task must inject {', '.join(map(repr, missing))} (declared by the slot)")
    params = {**(inject or {}), **slot.fixed}
    return Composite(terms, build_terms(terms, params, where), balance, inputs=slot.inputs, where=where)

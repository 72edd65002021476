"""The loss registry: the only place loss names live.

>>> import losses
>>> crit = losses.build("dice", mode="binary")
>>> losses.available(family="region")[:3]
['dice', 'focal_tversky', 'generalized_dice']
>>> losses.info("giou").parameters["eps"]
1e-07

A loss is registered with :func:`register`; its docstring is the single source of what
:func:`info` reports: the one-line summary, the ``Formula:`` and ``Reference:`` sections, the
description of each constructor parameter (Google-style ``Args:``, the defaults come from the
signature), the inputs and output (``Shape:``, one ``- name: shape`` line each; a loss without
one is described by its family's :data:`FAMILY_CALLS`) and, for a loss ``torch.compile`` cannot
trace in one graph, the reason (a paragraph starting ``Compile: ...``).
"""

from __future__ import annotations

import difflib
import inspect
import re
import textwrap
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

FAMILIES = (
    "regression",
    "overlap",
    "margin",
    "classification",
    "region",
    "compound",
    "metric",
    "angular",
    "image",
    "adversarial",
    "forecasting",
)

FAMILY_CALLS = {
    "regression": "(pred, target) same shape",
    "overlap": "(pred_boxes (N,4), target_boxes (N,4)); rotated boxes (N,5)",
    "margin": "(scores (N,) or (N,C), target in {-1,1}/{0,1} or class index)",
    "classification": "(logits (N,C,...), target class index (N,...) or probabilities (N,C,...))",
    "region": "(logits (N,C,...), target (N,...) index or (N,C,...) mask)",
    "compound": "(logits (N,C,...), target (N,...) index or (N,C,...) mask)",
    "metric": "(embeddings (N,D), labels (N,))",
    "angular": "(embeddings (N,D), labels (N,))",
    "image": "(pred (N,C,H,W), target (N,C,H,W)) in [0,1]",
    "adversarial": "(logits, is_real: bool)",
    "forecasting": "(pred (N,T,Q), target (N,T))",
}


class LossConfigError(ValueError):
    """A loss specification is invalid: unknown name, wrong parameter, wrong family."""


@dataclass(frozen=True)
class LossEntry:
    """One registered loss."""

    name: str
    cls: type[nn.Module]
    family: str
    tasks: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()

    @property
    def doc_sections(self) -> dict[str, str]:
        return _parse_docstring(inspect.getdoc(self.cls) or "")

    @property
    def summary(self) -> str:
        return self.doc_sections.get("summary", "")

    def parameters(self) -> dict[str, Any]:
        """Constructor parameters and their defaults (``inspect.Parameter.empty`` if required)."""
        sig = inspect.signature(self.cls.__init__)
        return {
            p.name: p.default
            for p in list(sig.parameters.values())[1:]
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        }

    def accepts_any_kwargs(self) -> bool:
        sig = inspect.signature(self.cls.__init__)
        return any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())


@dataclass(frozen=True)
class LossInfo:
    """What :func:`info` returns; ``str(info)`` is a human-readable card.

    ``parameters`` maps each constructor parameter to its default (``inspect.Parameter.empty`` if
    required) and ``args`` to its ``Args:`` description; ``shape`` maps each input and ``output`` to
    its ``Shape:`` line; ``call`` is those lines joined (without them: the family's :data:`FAMILY_CALLS`);
    ``compile`` is the ``Compile:`` note of a loss that does not compile to one graph.
    """

    name: str
    family: str
    summary: str
    call: str
    parameters: dict[str, Any]
    formula: str
    reference: str
    aliases: tuple[str, ...] = field(default=())
    tasks: tuple[str, ...] = field(default=())
    args: dict[str, str] = field(default_factory=dict)
    shape: dict[str, str] = field(default_factory=dict)
    compile: str = ""

    def __str__(self) -> str:
        lines = [f"{self.name}  [{self.family}]  {self.summary}"]
        if self.aliases:
            lines.append(f"  aliases:   {', '.join(self.aliases)}")
        params = {k: k if v is inspect.Parameter.empty else f"{k}={v!r}" for k, v in self.parameters.items()}
        lines += _table("params", {params[k]: self.args.get(k, "") for k in params}) or ["  params:    -"]
        lines += _table("shape", self.shape) or [f"  call:      {self.call}"]
        if self.formula:
            lines.append("  formula:   " + self.formula.replace("\n", "\n             "))
        if self.reference:
            lines.append("  reference: " + self.reference.replace("\n", "\n             "))
        if self.compile:
            lines += textwrap.wrap(self.compile, 120, initial_indent="  compile:   ", subsequent_indent=" " * 13)
        return "\n".join(lines)


def _table(title: str, rows: Mapping[str, str], width: int = 120) -> list[str]:
    """Card lines ``  title:  key  description`` with the descriptions aligned and wrapped to ``width``."""
    if not rows:
        return []
    key_width = max(map(len, rows))
    lines = []
    for i, (key, text) in enumerate(rows.items()):
        head = f"  {title + ':' if i == 0 else '':<11}{key:<{key_width}}  "
        wrapped = textwrap.wrap(text, width - len(head)) or [""]
        lines.append((head + wrapped[0]).rstrip())
        lines += [" " * len(head) + more for more in wrapped[1:]]
    return lines


_REGISTRY: dict[str, LossEntry] = {}
_ALIASES: dict[str, str] = {}


def register(
    name: str,
    *,
    family: str,
    tasks: Iterable[str] = (),
    aliases: Iterable[str] = (),
) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator adding an ``nn.Module`` loss to the registry under ``name``."""
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; families: {', '.join(FAMILIES)}")
    aliases = tuple(aliases)

    def decorator(cls: type[nn.Module]) -> type[nn.Module]:
        if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
            raise TypeError(f"@register({name!r}) expects an nn.Module subclass, got {cls!r}")
        for key in (name, *aliases):
            if key in _REGISTRY or key in _ALIASES:
                raise ValueError(f"loss name {key!r} is already registered")
        _REGISTRY[name] = LossEntry(name, cls, family, tuple(tasks), aliases)
        for alias in aliases:
            _ALIASES[alias] = name
        return cls

    return decorator


def get(name: str) -> LossEntry:
    """Registry entry for ``name`` (or an alias); unknown names raise with suggestions."""
    key = _ALIASES.get(name, name)
    if key not in _REGISTRY:
        known = sorted([*_REGISTRY, *_ALIASES])
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise LossConfigError(f"unknown loss {name!r}.{hint} See `python train.py losses` for all names.")
    return _REGISTRY[key]


def available(family: str | None = None, task: str | None = None) -> list[str]:
    """Sorted canonical loss names, optionally filtered by ``family`` and/or ``task``.

    ``task`` drops losses registered for other tasks only (``register(..., tasks=...)``); untagged
    losses pass. Which families a task's slots accept is the task's declaration, not the
    registry's: filter by those families too (``python train.py losses --task NAME`` does).
    """
    if family is not None and family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; families: {', '.join(FAMILIES)}")
    return sorted(
        e.name
        for e in _REGISTRY.values()
        if (family is None or e.family == family) and (task is None or not e.tasks or task in e.tasks)
    )


def info(name: str) -> LossInfo:
    """Family, parameters (default and description), input/output shapes, formula and reference of a loss."""
    entry = get(name)
    sections = entry.doc_sections
    shape = _parse_items(sections.get("shape", ""))
    return LossInfo(
        name=entry.name,
        family=entry.family,
        summary=entry.summary,
        call="; ".join(f"{k}: {v}" for k, v in shape.items()) or FAMILY_CALLS[entry.family],
        parameters=entry.parameters(),
        formula=sections.get("formula", ""),
        reference=sections.get("reference", ""),
        aliases=entry.aliases,
        tasks=entry.tasks,
        args=_parse_items(sections.get("args", "")),
        shape=shape,
        compile=" ".join(sections.get("compile", "").split()),
    )


def create(name: str, params: Mapping[str, Any] | None = None, defaults: Mapping[str, Any] | None = None) -> nn.Module:
    """Instantiate one loss by name.

    ``params`` are the user's and must all be accepted by the loss; ``defaults`` are
    injected by a task (``num_classes``, ``mode`` ...) and used only for parameters the
    loss accepts and the user left unset.
    """
    entry = check_params(name, params)
    params = dict(params or {})
    accepted = entry.parameters()
    for key, value in (defaults or {}).items():
        if key in accepted and key not in params:
            params[key] = value
    missing = [k for k, v in accepted.items() if v is inspect.Parameter.empty and k not in params]
    if missing:
        raise LossConfigError(f"loss {entry.name!r} needs parameter(s) {', '.join(map(repr, missing))}")
    try:
        return entry.cls(**params)
    except (TypeError, ValueError) as err:
        raise LossConfigError(f"loss {entry.name!r} rejected its parameters {params}: {err}") from err


def check_params(name: str, params: Mapping[str, Any] | None) -> LossEntry:
    """Raise :class:`LossConfigError` naming the accepted parameters if ``params`` has unknown keys."""
    entry = get(name)
    accepted = entry.parameters()
    unknown = [] if entry.accepts_any_kwargs() else [k for k in (params or {}) if k not in accepted]
    if unknown:
        close = {k: difflib.get_close_matches(k, list(accepted), n=1, cutoff=0.5) for k in unknown}
        hints = "".join(f" ({k!r}: did you mean {c[0]!r}?)" for k, c in close.items() if c)
        raise LossConfigError(
            f"loss {entry.name!r} got unknown parameter(s) {', '.join(map(repr, unknown))}.{hints} "
            f"Accepted: {', '.join(accepted) or 'none'}"
        )
    return entry


_SECTION = re.compile(r"^(?:(Formula|References?|Shapes?|Examples?|Args)\s*:\s*|(Compile):\s*(.+))$")
_ITEM = re.compile(r"^(?:- )?\**(\w+)(?: \([^)]*\))?\s*:\s*(.*)$")


def _parse_docstring(doc: str) -> dict[str, str]:
    """Split a docstring into ``summary`` and its sections: formula, reference, args, shape, example, compile.

    ``Compile:`` is the one section whose text starts on its header line (``Compile: reason ...``).
    """
    lines = doc.splitlines()
    sections: dict[str, list[str]] = {}
    current = "body"
    sections["summary"] = [lines[0].strip()] if lines else [""]
    for line in lines[1:]:
        match = _SECTION.match(line)
        if match:
            current = (match.group(1) or match.group(2)).lower()
            current = current if current == "args" else current.rstrip("s")
            sections[current] = [match.group(3)] if match.group(3) else []
        else:
            sections.setdefault(current, []).append(line)
    return {k: inspect.cleandoc("\n".join(v)).strip() for k, v in sections.items() if k != "body"}


def _parse_items(section: str) -> dict[str, str]:
    """Google-style ``name: text`` (``Args:``) or ``- name: text`` (``Shape:``) items; indented lines continue one."""
    items: dict[str, list[str]] = {}
    key = None
    for line in section.splitlines():
        match = None if line[:1].isspace() else _ITEM.match(line)
        if match:
            key = match.group(1)
            items[key] = [match.group(2)]
        elif key is not None and line.strip():
            items[key].append(line.strip())
    return {k: " ".join(v).strip() for k, v in items.items()}

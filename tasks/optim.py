"""Optimisers, parameter groups and schedulers from the ``optim:`` config section.

One optimiser (the default)::

    optim: {name: adamw, lr: 1.0e-3, weight_decay: 1.0e-4, scheduler: cosine,
            groups: {no_decay: {weight_decay: 0.0}, balance: {lr_mult: 1.0}, loss: {lr_mult: 10.0}}}

A task that declares named optimisers (``OPTIMIZERS = ("generator", "discriminator")``) takes
one such section per name: ``optim: {generator: {...}, discriminator: {...}}``.

Each optimiser's parameters are split into groups, each with its own learning rate
(``lr * lr_mult``) and weight decay:

========== ============================================================ =====================
group      parameters                                                   default
========== ============================================================ =====================
model      the network's weights (tensors with two or more dimensions)  ``optim.weight_decay``
no_decay   the network's biases and normalisation weights (1-D)         weight_decay 0
balance    learnable loss weights (``balance: uncertainty`` log-vars)   weight_decay 0
loss       parameters owned by losses (margin-head classes, centres)    ``optim.weight_decay``
loss/<slot>/<term>  a term whose spec has ``optim: {lr_mult, weight_decay}``  as given
========== ============================================================ =====================

Frozen parameters (``requires_grad=False``) are left out; empty groups are dropped. Every group
carries its ``name``, so ``LearningRateMonitor`` logs ``lr-AdamW/model``, ``lr-AdamW/loss`` ...
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from losses import Composite
from losses.compose import parse_group_options
from losses.registry import LossConfigError

OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "adamw": torch.optim.AdamW,
    "adam": torch.optim.Adam,
    "sgd": torch.optim.SGD,
}
SCHEDULERS = ("none", "cosine", "step")
GROUPS = ("model", "no_decay", "balance", "loss")
GROUP_DEFAULTS: dict[str, dict[str, float]] = {"no_decay": {"weight_decay": 0.0}, "balance": {"weight_decay": 0.0}}
#: keys of an optimiser section; other keys must be arguments of the chosen torch optimiser
SECTION_KEYS = ("name", "lr", "weight_decay", "scheduler", "step_size", "groups")
DEFAULTS: dict[str, Any] = {"name": "adamw", "lr": 1e-3, "weight_decay": 1e-4, "scheduler": "cosine", "step_size": 10}


class OptimConfigError(LossConfigError):
    """An ``optim:`` section is invalid; the message names the config path."""


@dataclass
class OptimSpec:
    """One validated optimiser section."""

    name: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    scheduler: str = "cosine"
    step_size: int = 10
    groups: dict[str, dict[str, float]] = field(default_factory=dict)
    kwargs: dict[str, Any] = field(default_factory=dict)  # further torch optimiser arguments (momentum, betas ...)


def parse_section(section: Mapping[str, Any] | None, where: str = "optim") -> OptimSpec:
    """Validate one optimiser section: name, numbers, scheduler, groups, and extra torch arguments."""
    cfg = {**DEFAULTS, **{k: v for k, v in dict(section or {}).items() if v is not None}}
    name = cfg.pop("name")
    if name not in OPTIMIZERS:
        raise OptimConfigError(f"{where}.name: {name!r} is not one of {', '.join(OPTIMIZERS)}")
    for key in ("lr", "weight_decay"):
        value = cfg[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise OptimConfigError(f"{where}.{key}: expected a number >= 0, got {value!r}")
    if cfg["lr"] == 0:
        raise OptimConfigError(f"{where}.lr: 0 would train nothing; give a positive learning rate")
    if cfg["scheduler"] not in SCHEDULERS:
        raise OptimConfigError(f"{where}.scheduler: {cfg['scheduler']!r} is not one of {', '.join(SCHEDULERS)}")
    if not isinstance(cfg["step_size"], int) or isinstance(cfg["step_size"], bool) or cfg["step_size"] < 1:
        raise OptimConfigError(f"{where}.step_size: expected an integer >= 1, got {cfg['step_size']!r}")
    groups = cfg.pop("groups", None) or {}
    if not isinstance(groups, Mapping):
        raise OptimConfigError(
            f"{where}.groups: expected a mapping of {', '.join(GROUPS)} to {{lr_mult, weight_decay}}"
        )
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        raise OptimConfigError(f"{where}.groups: unknown group(s) {unknown}; groups: {', '.join(GROUPS)}")
    parsed_groups = {g: parse_group_options(v, f"{where}.groups.{g}") or {} for g, v in groups.items()}
    spec = OptimSpec(
        name,
        float(cfg.pop("lr")),
        float(cfg.pop("weight_decay")),
        cfg.pop("scheduler"),
        cfg.pop("step_size"),
        parsed_groups,
    )
    accepted = [p for p in inspect.signature(OPTIMIZERS[name].__init__).parameters if p not in ("self", "params")]
    for key, value in cfg.items():
        if key not in accepted:
            raise OptimConfigError(
                f"{where}.{key}: not an argument of {OPTIMIZERS[name].__name__} ({where}.name={name!r}); "
                f"accepted: {', '.join((*SECTION_KEYS, *(a for a in accepted if a not in SECTION_KEYS)))}"
            )
        spec.kwargs[key] = tuple(value) if isinstance(value, list) else value
    return spec


def parse_optim(optim: Mapping[str, Any] | None, names: tuple[str, ...] = ()) -> dict[str, OptimSpec]:
    """The ``optim:`` section -> one :class:`OptimSpec` per optimiser (``{"": spec}`` for a single one)."""
    optim = dict(optim or {})
    if not names:
        return {"": parse_section(optim)}
    unknown = [k for k in optim if k not in names]
    if unknown:
        raise OptimConfigError(
            f"optim.{unknown[0]}: this task has the optimisers {', '.join(names)}; "
            f"write optim: {{{names[0]}: {{name: adam, lr: ...}}, ...}}"
        )
    return {n: parse_section(optim.get(n), f"optim.{n}") for n in names}


def parameter_groups(
    spec: OptimSpec, model: Iterable[tuple[str, nn.Parameter]], slots: Mapping[str, Composite]
) -> list[dict[str, Any]]:
    """Named parameter groups (see the module docstring) for one optimiser."""
    buckets: dict[str, list[nn.Parameter]] = {g: [] for g in GROUPS}
    overrides: dict[str, dict[str, float]] = {}
    seen: set[int] = set()

    def add(group: str, param: nn.Parameter) -> None:
        if param.requires_grad and id(param) not in seen:
            seen.add(id(param))
            buckets.setdefault(group, []).append(param)

    for slot, composite in slots.items():
        if composite.log_vars is not None:
            add("balance", composite.log_vars)
        for name, term, options in zip(composite.names, composite.terms, composite.term_optim):
            group = "loss" if options is None else f"loss/{slot}/{name}"
            if options is not None:
                overrides[group] = options
            for param in term.parameters():
                add(group, param)
    for _, param in model:
        add("model" if param.ndim >= 2 else "no_decay", param)
    groups = []
    for group, params in buckets.items():
        if not params:
            continue
        options = {**GROUP_DEFAULTS.get(group, {}), **spec.groups.get(group, {}), **overrides.get(group, {})}
        groups.append(
            {
                "params": params,
                "name": group,
                "lr": spec.lr * options.get("lr_mult", 1.0),
                "weight_decay": options.get("weight_decay", spec.weight_decay),
            }
        )
    return groups


def build_optimizer(spec: OptimSpec, groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
    return OPTIMIZERS[spec.name](groups, lr=spec.lr, weight_decay=spec.weight_decay, **spec.kwargs)


def build_scheduler(spec: OptimSpec, optimizer: torch.optim.Optimizer, max_epochs: int, name: str = "") -> dict | None:
    """The epoch-wise scheduler config Lightning expects, or ``None`` for ``scheduler: none``."""
    if spec.scheduler == "none":
        return None
    if spec.scheduler == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, max_epochs))
    else:
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=spec.step_size, gamma=0.1)
    config: dict[str, Any] = {"scheduler": scheduler, "interval": "epoch"}
    if name:
        config["name"] = f"lr-{name}"
    return config

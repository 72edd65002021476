"""Load, merge and validate run configs (OmegaConf) before any data is touched.

A run is one YAML file. ``extends:`` names base files (relative to the file) merged first;
command-line ``key=value`` overrides are applied last. Loss slots are normalised to their
explicit ``{name, params}`` form before overrides, so ``loss.seg.params.gamma=2`` works on
a slot written as ``seg: focal``.
"""

from __future__ import annotations

import difflib
import inspect
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

import losses
from losses.compose import parse_balance

TOP_LEVEL_KEYS = ("task", "seed", "model", "data", "loss", "optim", "trainer", "run")
RUN_DEFAULTS = {
    "root": "runs",
    "name": None,
    "version": None,
    "checkpoint_every_n_steps": None,
    "monitor": None,
    "mode": None,
    "plot": True,
    "on_nonfinite": "stop",
    "term_grad_norms": None,  # log each loss term's gradient norm and share every N training batches
}
CONFIG_FILENAME = "config.yaml"
# lower bounds of values the framework and Lightning take (types are checked against the signatures)
LOWER_BOUNDS = {
    ("data", "batch_size"): 1,
    ("data", "num_workers"): 0,
    ("trainer", "max_epochs"): -1,
    ("trainer", "min_epochs"): 0,
    ("trainer", "max_steps"): -1,
    ("trainer", "accumulate_grad_batches"): 1,
    ("trainer", "log_every_n_steps"): 1,
    ("trainer", "check_val_every_n_epoch"): 1,
    ("trainer", "num_sanity_val_steps"): -1,
    ("trainer", "gradient_clip_val"): 0,
    ("run", "checkpoint_every_n_steps"): 1,
    ("run", "term_grad_norms"): 1,
}
# data keys naming a file or folder that must exist before anything is built
DATA_PATH_KEYS = ("root", "path", "csv", "predict_dir", "predict_path")


class ConfigError(ValueError):
    """A run config is invalid; the message names the config path and what was expected."""


def load_config(paths: str | Path | Sequence[str | Path], overrides: Iterable[str] = ()) -> DictConfig:
    """Read one or more files (each with its ``extends:`` chain, merged left to right), then
    apply dotlist ``overrides``: ``-c recipe.yaml -c configs/cluster/ddp.yaml key=value``."""
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    cfg = OmegaConf.create()
    for path in paths:
        cfg = OmegaConf.merge(cfg, _load_with_extends(Path(path), seen=()))
    for item in overrides:
        apply_override(cfg, item)
    for key, value in RUN_DEFAULTS.items():
        if OmegaConf.select(cfg, f"run.{key}", default="__missing__") == "__missing__":
            OmegaConf.update(cfg, f"run.{key}", value, force_add=True)
    return cfg


def _load_with_extends(path: Path, seen: tuple[Path, ...]) -> DictConfig:
    path = path.expanduser().resolve()
    if not path.is_file():
        where = f" (extended from {seen[-1]})" if seen else ""
        raise ConfigError(f"config file {path} not found{where}")
    if path in seen:
        raise ConfigError(f"extends: cycle {' -> '.join(map(str, (*seen, path)))}")
    try:
        cfg = OmegaConf.load(path)
    except (OmegaConfBaseException, ValueError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: cannot parse YAML: {_one_line(err)}") from None
    if not isinstance(cfg, DictConfig):
        raise ConfigError(f"{path}: a config must be a mapping at the top level")
    bases = cfg.pop("extends", None)
    cfg = normalise_loss_slots(cfg)
    if bases is None:
        return cfg
    merged = OmegaConf.create()
    for base in [bases] if isinstance(bases, str) else list(bases):
        merged = OmegaConf.merge(merged, _load_with_extends(path.parent / str(base), (*seen, path)))
    return OmegaConf.merge(merged, cfg)


def normalise_loss_slots(cfg: DictConfig) -> DictConfig:
    """Rewrite each single-name loss slot ``seg: focal`` as ``seg: {name: focal, params: {}}``."""
    loss = cfg.get("loss")
    if not isinstance(loss, DictConfig):
        return cfg
    for slot in list(loss.keys()):
        value = loss[slot]
        if slot == "balance":  # `balance: {name: gradnorm, alpha: 1.5}` is not a loss spec
            continue
        if _is_single_name(value):
            loss[slot] = _named_slot(value)
        elif isinstance(value, DictConfig) and "name" in value and "params" not in value:
            value["params"] = {}
    return cfg


def _is_single_name(value: Any) -> bool:
    return isinstance(value, str) and "+" not in value and "*" not in value


def _named_slot(name: str) -> dict[str, Any]:
    return {"name": name.strip(), "params": {}}


def apply_override(cfg: DictConfig, item: str) -> None:
    """Apply one ``key=value`` override (value parsed as YAML, replacing lists/strings whole)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r}: expected key=value, e.g. loss.seg=dice or trainer.max_epochs=5")
    key, _, raw = item.partition("=")
    key = key.strip()
    if not key:
        raise ConfigError(f"override {item!r}: empty key")
    try:  # interpolations (${data.size}) stay unresolved: they refer to the whole config, resolved later
        value = OmegaConf.to_container(OmegaConf.from_dotlist([f"value={raw}"]), resolve=False)["value"]
    except (OmegaConfBaseException, yaml.YAMLError) as err:
        raise ConfigError(f"override {item!r}: cannot parse value: {_one_line(err)}") from None
    parent_key, _, leaf = key.rpartition(".")
    parent = OmegaConf.select(cfg, parent_key) if parent_key else cfg
    if parent is not None and not isinstance(parent, DictConfig):
        raise ConfigError(f"override {item!r}: {parent_key} is {parent!r}, not a mapping")
    if key.startswith("loss.") and key.count(".") == 1 and leaf != "balance" and _is_single_name(value):
        value = _named_slot(value)
    OmegaConf.update(cfg, key, value, merge=False, force_add=True)


def to_container(cfg: DictConfig) -> dict[str, Any]:
    """Resolve interpolations and return plain Python containers."""
    try:
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    except OmegaConfBaseException as err:
        raise ConfigError(f"cannot resolve config: {_one_line(err)}") from None


def _one_line(err: Exception) -> str:
    """A parser's message on one line: YAML's problem and its position, OmegaConf's first line."""
    if isinstance(err, yaml.MarkedYAMLError) and err.problem_mark is not None:
        mark = err.problem_mark
        return f"line {mark.line + 1}, column {mark.column + 1}: {err.problem}"
    return str(err).strip().splitlines()[0]


def save_config(cfg: DictConfig, directory: Path) -> Path:
    """Write the fully resolved config to ``directory/config.yaml``; that file alone repeats the run."""
    directory.mkdir(parents=True, exist_ok=True)
    out = directory / CONFIG_FILENAME
    OmegaConf.save(OmegaConf.create(to_container(cfg)), out)
    return out


# ----------------------------------------------------------------------------- validation


def check_keys(section: Mapping[str, Any], accepted: Iterable[str], where: str) -> None:
    """Unknown keys in ``section`` -> ConfigError naming the path and the accepted keys."""
    accepted = list(accepted)
    unknown = [k for k in section if k not in accepted]
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(str(key), accepted, n=1, cutoff=0.6)
            hints.append(f"{where}.{key}" + (f" (did you mean {where}.{close[0]}?)" if close else ""))
        raise ConfigError(f"unknown config key(s): {', '.join(hints)}. Accepted under {where}: {', '.join(accepted)}")


def check_against_signature(section: Mapping[str, Any], func: Any, where: str, skip: Iterable[str] = ()) -> None:
    """Check keys and simple types of ``section`` against ``func``'s parameters and type hints."""
    params = {
        name: p
        for name, p in inspect.signature(func).parameters.items()
        if name not in ("self", *skip) and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }
    check_keys(section, params, where)
    try:
        hints = typing.get_type_hints(func)
    except Exception:  # unresolvable annotations in third-party code: keys are still checked
        hints = {}
    for key, value in section.items():
        expected = hints.get(key)
        if expected is not None and not _matches(value, expected):
            raise ConfigError(f"{where}.{key}: expected {_type_name(expected)}, got {value!r} ({type(value).__name__})")


def _matches(value: Any, expected: Any) -> bool:
    origin = typing.get_origin(expected)
    if expected is Any or expected is inspect.Parameter.empty:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(expected))
    if origin is typing.Literal:
        return value in typing.get_args(expected)
    if expected is type(None):
        return value is None
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin in (list, tuple, typing.Sequence, Iterable):
        return isinstance(value, (list, tuple))
    if origin in (dict, typing.Mapping) or expected in (dict, typing.Mapping):
        return isinstance(value, dict)
    if isinstance(expected, type):
        if expected in (list, tuple):
            return isinstance(value, (list, tuple))
        return isinstance(value, expected) or expected in (Path,) and isinstance(value, str)
    return True


def _type_name(expected: Any) -> str:
    origin = typing.get_origin(expected)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(arg) for arg in typing.get_args(expected))
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(v) for v in typing.get_args(expected))
    if expected is type(None):
        return "null"
    return getattr(expected, "__name__", None) or str(expected).replace("typing.", "")


def check_loss_section(loss: Mapping[str, Any], slots: Mapping[str, losses.Slot]) -> None:
    """Every slot exists for the task and its spec fits the slot's declaration (:func:`losses.check_slot_spec`)."""
    for slot, spec in loss.items():
        if slot == "balance":
            try:
                parse_balance(spec)
            except losses.LossConfigError as err:
                raise ConfigError(str(err)) from None
            continue
        if slot not in slots:
            raise ConfigError(f"loss.{slot}: this task has no such loss slot; slots: {', '.join(slots)}")
        try:
            losses.check_slot_spec(spec, slots[slot], f"loss.{slot}")
        except losses.LossConfigError as err:
            raise ConfigError(str(err)) from None


def check_values(config: Mapping[str, Any]) -> None:
    """Ranges (:data:`LOWER_BOUNDS`, ``run.mode``) and data paths (:data:`DATA_PATH_KEYS`) of a whole config."""
    for (section, key), low in LOWER_BOUNDS.items():
        value = (config.get(section) or {}).get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not value >= low:
            raise ConfigError(f"{section}.{key}: expected a number >= {low}, got {value!r}")
    mode = (config.get("run") or {}).get("mode")
    if mode not in (None, "min", "max"):
        raise ConfigError(f"run.mode: expected min or max (or null: the task's), got {mode!r}")
    for key in DATA_PATH_KEYS:
        value = (config.get("data") or {}).get(key)
        if isinstance(value, str) and not Path(value).expanduser().exists():
            raise ConfigError(f"data.{key}: {value} does not exist")

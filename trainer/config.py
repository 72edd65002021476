"""Load, merge and validate run configs (OmegaConf) before any data is touched.

A run is one YAML file. ``extends:`` names base files (relative to the file) merged first;
command-line ``key=value`` overrides are applied last. Loss slots are normalised to their
explicit ``{name, params}`` form before overrides, so ``loss.seg.params.gamma=2`` works on
a slot written as ``seg: focal``.
"""

from __future__ import annotations

import difflib
import inspect
import math
import os
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
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
# lower bounds of values the framework, the tasks and Lightning take, wherever the key is set (types are
# checked against the signatures); a key means the same in every task that has it
LOWER_BOUNDS = {
    ("data", "batch_size"): 1,
    ("data", "num_workers"): 0,
    ("data", "image_size"): 1,
    ("data", "num_classes"): 1,
    ("model", "num_classes"): 1,
    ("model", "in_channels"): 1,
    ("model", "out_channels"): 1,
    ("model", "embedding_size"): 1,
    ("model", "hidden_size"): 1,
    ("model", "width"): 1,
    ("model", "ngf"): 1,
    ("model", "ndf"): 1,
    ("model", "kernel_size"): 1,
    ("model", "min_size"): 1,
    ("model", "max_size"): 1,
    ("model", "detections_per_img"): 1,
    ("model", "pool_size"): 0,
    ("model", "folds"): 2,
    ("trainer", "max_epochs"): -1,
    ("trainer", "min_epochs"): 0,
    ("trainer", "max_steps"): -1,
    ("trainer", "accumulate_grad_batches"): 1,
    ("trainer", "log_every_n_steps"): 1,
    ("trainer", "check_val_every_n_epoch"): 1,
    ("trainer", "num_sanity_val_steps"): -1,
    ("trainer", "gradient_clip_val"): 0,
    ("trainer", "limit_train_batches"): 0,
    ("trainer", "limit_val_batches"): 0,
    ("trainer", "limit_test_batches"): 0,
    ("trainer", "limit_predict_batches"): 0,
    ("run", "checkpoint_every_n_steps"): 1,
    ("run", "term_grad_norms"): 1,
}
# values that must be > 0
POSITIVE = (("trainer", "val_check_interval"),)
# probabilities and fractions in [0, 1]
PROBABILITIES = (
    ("model", "dropout"),
    ("model", "score_thresh"),
    ("model", "nms_thresh"),
    ("model", "plot_score_thresh"),
    ("model", "predict_score_thresh"),
    ("data", "translate"),
)
# sections whose numbers must all be finite (loss parameters are checked by each loss)
FINITE_SECTIONS = ("model", "data", "optim", "trainer", "run")
SEED_RANGE = (0, 2**32 - 1)  # what numpy's and Lightning's seeding accept
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
        cfg = _merge(cfg, _load_with_extends(Path(path), seen=()), str(path))
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
        merged = _merge(merged, _load_with_extends(path.parent / str(base), (*seen, path)), str(path))
    return _merge(merged, cfg, str(path))


def _merge(base: DictConfig, later: DictConfig, where: str) -> DictConfig:
    """Merge ``later`` over ``base``; a loss slot in ``later`` replaces the earlier one whole (a preset's
    ``seg: {name: focal}`` over a recipe's list, or over another loss whose parameters must not carry over)."""
    earlier = base.get("loss")
    if isinstance(earlier, DictConfig) and isinstance(later.get("loss"), DictConfig):
        base = base.copy()
        for slot in later.loss:
            if slot in base.loss:
                base.loss.pop(slot)
    try:
        return OmegaConf.merge(base, later)
    except (OmegaConfBaseException, TypeError, ValueError) as err:  # a list over a mapping and the like
        raise ConfigError(f"{where}: cannot merge it over the earlier config: {_one_line(err)}") from None


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


MAX_AUTO_WORKERS = 8


def resolve_auto(config: dict[str, Any]) -> None:
    """Replace the machine-dependent ``auto`` values, ``data.num_workers`` and ``trainer.precision``, in place.

    ``data.num_workers: auto``: the CPUs this process may run on (``os.sched_getaffinity``: a SLURM or
    container limit counts) divided by the training processes of one machine (``trainer.devices``), minus
    one, at most :data:`MAX_AUTO_WORKERS`: 1 on a 2-core machine, 7 per GPU on a 32-core 4-GPU node.
    ``trainer.precision: auto``: ``bf16-mixed`` on a CUDA GPU that supports it, ``16-mixed`` on an older
    one, ``32-true`` on a CPU (mixed precision there is slower and Lightning warns).
    The saved config keeps ``auto``, so a run resumed on another machine resolves it there.
    """
    data, trainer = config.get("data") or {}, config.get("trainer") or {}
    workers = data.get("num_workers")
    if isinstance(workers, str):
        if workers != "auto":
            raise ConfigError(f"data.num_workers: expected an integer >= 0 or auto, got {workers!r}")
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        data["num_workers"] = max(0, min(MAX_AUTO_WORKERS, cpus // _processes_per_machine(trainer) - 1))
    if trainer.get("precision") == "auto":
        trainer["precision"] = _precision_for(trainer)


def _uses_cuda(trainer: Mapping[str, Any]) -> bool:
    """Whether ``trainer.accelerator`` (default auto) trains on the CUDA GPUs of this machine."""
    return trainer.get("accelerator", "auto") in ("auto", "gpu", "cuda") and torch.cuda.is_available()


def _precision_for(trainer: Mapping[str, Any]) -> str:
    if _uses_cuda(trainer):
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "32-true"


def _processes_per_machine(trainer: Mapping[str, Any]) -> int:
    """How many training processes ``trainer.devices`` starts on one machine (a count, a list of ids, or all GPUs)."""
    devices = trainer.get("devices", "auto")
    if isinstance(devices, (list, tuple)):
        return max(1, len(devices))
    if isinstance(devices, int) and not isinstance(devices, bool) and devices > 0:
        return devices
    if devices in ("auto", -1) and _uses_cuda(trainer):
        return max(1, torch.cuda.device_count())
    return 1


def check_values(config: Mapping[str, Any]) -> None:
    """Ranges (:data:`LOWER_BOUNDS`, :data:`POSITIVE`, :data:`PROBABILITIES`, finite numbers, the seed,
    ``run.mode``, ``data.scale_range``) and data paths (:data:`DATA_PATH_KEYS`) of a whole config."""
    for section in FINITE_SECTIONS:
        _check_finite(config.get(section), section)
    seed = config.get("seed")
    if _is_number(seed) and not SEED_RANGE[0] <= seed <= SEED_RANGE[1]:
        raise ConfigError(f"seed: expected an integer in [{SEED_RANGE[0]}, {SEED_RANGE[1]}], got {seed!r}")
    for (section, key), low in LOWER_BOUNDS.items():
        value = (config.get(section) or {}).get(key)
        if _is_number(value) and not value >= low:
            raise ConfigError(f"{section}.{key}: expected a number >= {low}, got {value!r}")
    for section, key in POSITIVE:
        value = (config.get(section) or {}).get(key)
        if _is_number(value) and not value > 0:
            raise ConfigError(f"{section}.{key}: expected a number > 0, got {value!r}")
    for section, key in PROBABILITIES:
        value = (config.get(section) or {}).get(key)
        if _is_number(value) and not 0 <= value <= 1:
            raise ConfigError(f"{section}.{key}: expected a value in [0, 1], got {value!r}")
    scale = (config.get("data") or {}).get("scale_range")
    pair = isinstance(scale, (list, tuple)) and len(scale) == 2 and all(map(_is_number, scale))
    if scale is not None and not (pair and 0 < scale[0] <= scale[1]):
        raise ConfigError(f"data.scale_range: expected [low, high] with 0 < low <= high, got {scale!r}")
    mode = (config.get("run") or {}).get("mode")
    if mode not in (None, "min", "max"):
        raise ConfigError(f"run.mode: expected min or max (or null: the task's), got {mode!r}")
    for key in DATA_PATH_KEYS:
        value = (config.get("data") or {}).get(key)
        if isinstance(value, str) and not Path(value).expanduser().exists():
            raise ConfigError(f"data.{key}: {value} does not exist")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_finite(value: Any, where: str) -> None:
    """Every float under ``value`` is finite (NaN or infinity in a size, a rate or a threshold is a typo)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where}: expected a finite number, got {value!r}")
    if isinstance(value, Mapping):
        for key, item in value.items():
            _check_finite(item, f"{where}.{key}")
    elif isinstance(value, (list, tuple)):
        for item in value:
            _check_finite(item, where)

"""Turn a validated config into a task, a datamodule and a ``lightning.Trainer``."""

from __future__ import annotations

import importlib
import inspect
import logging
import re
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from omegaconf import DictConfig

import losses
from tasks.guard import POLICIES
from tasks.optim import OptimSpec, build_optimizer, parse_optim
from trainer.callbacks import (
    LogCadence,
    LossCurvePlot,
    MonitorCheck,
    ResumeDataPosition,
    ResumeEpochMetrics,
    RunProgressBar,
    StepSeed,
)
from trainer.checkpointing import AtomicCheckpointIO, CheckpointOnInterrupt, LastCheckpoint
from trainer.config import (
    RUN_DEFAULTS,
    TOP_LEVEL_KEYS,
    ConfigError,
    check_against_signature,
    check_keys,
    check_loss_section,
    check_values,
    resolve_auto,
    to_container,
)

TASK_PACKAGES = {
    "segmentation": "tasks.segmentation",
    "detection": "tasks.detection",
    "face": "tasks.face",
    "translation": "tasks.translation",
    "forecasting": "tasks.forecasting",
    "tabular": "tasks.tabular",
}
# free space a run folder's disk must have before a fit starts (checkpoints, logs, plots)
MIN_FREE_MB = 200
# Trainer arguments the framework owns: the run folder, loggers and callbacks come from `run:`.
RESERVED_TRAINER_KEYS = ("default_root_dir", "logger", "callbacks", "enable_checkpointing")


@dataclass
class RunObjects:
    """Everything a subcommand needs, built from one config."""

    config: dict[str, Any]
    task: L.LightningModule
    datamodule: L.LightningDataModule
    trainer: L.Trainer
    run_dir: Path


def task_package(name: Any) -> ModuleType:
    """Import ``tasks.<name>`` (it exports ``TASK`` and ``DATAMODULE``)."""
    if name not in TASK_PACKAGES:
        raise ConfigError(f"task: expected one of {', '.join(TASK_PACKAGES)}, got {name!r}")
    try:
        return importlib.import_module(TASK_PACKAGES[name])
    except ModuleNotFoundError as err:
        if err.name and err.name.startswith(TASK_PACKAGES[name]):
            raise ConfigError(f"task: {name!r} is planned but not implemented in this version") from None
        raise


def validate(cfg: DictConfig) -> dict[str, Any]:
    """Validate a whole config without reading data; returns it as plain containers."""
    config = to_container(cfg)
    check_keys(config, TOP_LEVEL_KEYS, "config")
    if "task" not in config:
        raise ConfigError(f"task: missing; one of {', '.join(TASK_PACKAGES)}")
    package = task_package(config["task"])
    for section in ("model", "data", "loss", "optim", "trainer", "run"):
        value = config.setdefault(section, {})
        if value is None:
            config[section] = {}
        elif not isinstance(value, dict):
            raise ConfigError(f"{section}: expected a mapping, got {value!r}")
    if not isinstance(config.setdefault("seed", 0), int):
        raise ConfigError(f"seed: expected an integer, got {config['seed']!r}")
    check_against_signature(config["model"], package.TASK.__init__, "model", skip=("loss", "optim"))
    resolve_auto(config)
    check_against_signature(config["data"], package.DATAMODULE.__init__, "data")
    check_loss_section(config["loss"], package.TASK.LOSS_SLOTS)
    try:
        optimisers = parse_optim(config["optim"], package.TASK.OPTIMIZERS)
    except losses.LossConfigError as err:
        raise ConfigError(str(err)) from None
    for name, spec in optimisers.items():
        _try_optimiser(spec, f"optim.{name}" if name else "optim")
    check_keys(config["run"], RUN_DEFAULTS, "run")
    if config["run"].get("on_nonfinite", "stop") not in POLICIES:
        raise ConfigError(
            f"run.on_nonfinite: expected one of {', '.join(POLICIES)}, got {config['run']['on_nonfinite']!r}"
        )
    reserved = [k for k in config["trainer"] if k in RESERVED_TRAINER_KEYS]
    if reserved:
        raise ConfigError(f"trainer.{reserved[0]}: set by the framework from `run:`; remove it")
    check_against_signature(config["trainer"], L.Trainer.__init__, "trainer")
    check_values(config)
    return config


# words torch's optimisers use in their argument errors for keys named otherwise
_OPTIMISER_WORDS = {"beta": "betas", "epsilon": "eps", "learning rate": "lr"}


def _try_optimiser(spec: OptimSpec, where: str) -> None:
    """Build the optimiser on one dummy parameter, so torch's own argument checks (betas in [0, 1), eps >= 0 ...)
    fail before anything else is built, naming the key; momentum must also be < 1 (torch checks only >= 0)."""
    momentum = spec.kwargs.get("momentum")
    if isinstance(momentum, (int, float)) and not isinstance(momentum, bool) and not 0 <= momentum < 1:
        raise ConfigError(f"{where}.momentum: expected a number in [0, 1), got {momentum!r}")
    try:
        build_optimizer(spec, [{"params": [torch.nn.Parameter(torch.zeros(1))]}])
    except (ValueError, TypeError, RuntimeError) as err:
        message = str(err).strip().splitlines()[0]
        words = {**{key: key for key in spec.kwargs}, **_OPTIMISER_WORDS}
        key = next((key for word, key in words.items() if word in message.lower()), None)
        raise ConfigError(f"{where}.{key}: {message}" if key else f"{where} ({spec.name}): {message}") from None


def run_base(run: dict[str, Any], task: str) -> Path:
    """``<run.root>/<run.name or task>``: the folder holding a recipe's ``version_*`` runs."""
    return Path(run["root"]) / (run["name"] or task)


def run_directory(run: dict[str, Any], task: str, resume_dir: Path | None = None) -> Path:
    """``<root>/<name>/version_<k>``, a fresh version unless resuming into an existing one."""
    if resume_dir is not None:
        return resume_dir
    base = run_base(run, task)
    if run["version"] is not None:
        return base / str(run["version"])
    existing = [int(p.name.split("_")[1]) for p in base.glob("version_*") if p.name.split("_")[1].isdigit()]
    return base / f"version_{max(existing, default=-1) + 1}"


def check_run_folder(run_dir: Path, min_free_mb: int = MIN_FREE_MB) -> None:
    """Before anything is built: the run folder can be written and its disk has ``min_free_mb`` free.

    Checked on the nearest existing ancestor (nothing is created), by writing a temporary file there.
    """
    existing = next(p for p in (run_dir, *run_dir.parents) if p.exists())
    try:
        if not existing.is_dir():
            raise NotADirectoryError(f"{existing} is a file")
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        raise ConfigError(f"run.root: cannot write the run folder {run_dir} ({err})") from None
    free_mb = shutil.disk_usage(existing).free / 2**20
    if free_mb < min_free_mb:
        raise ConfigError(
            f"run.root: {existing} has {free_mb:.0f} MB free; checkpoints and logs need at least {min_free_mb} MB"
        )


class _NoCloudTip(logging.Filter):
    """Drop Lightning 2.6's "Tip: ... install litlogger" line, printed at every Trainer construction: runs here
    are offline and log to CSV and TensorBoard."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage()


def build(config: dict[str, Any], run_dir: Path, stage: str = "fit") -> RunObjects:
    """Instantiate task, datamodule and trainer for a validated ``config`` and a ``stage``."""
    # Tasks' SeededSampler + ResumeDataPosition resume mid-epoch exactly; Lightning cannot see that.
    warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before the epoch ended")
    # a resumed run keeps its logs (_keep_previous_metrics) and checkpoints: Lightning's notices say otherwise
    warnings.filterwarnings("ignore", message=r".*Previous log files in this directory will be deleted")
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
    # small data: LogCadence lowers log_every_n_steps to the steps of an epoch (after Lightning's check warned)
    warnings.filterwarnings("ignore", message=r"The number of training batches \(\d+\) is smaller than the logging")
    # Lightning 2.6's own pytree copy against torch 2.14's deprecation: every run printed it, nothing to act on
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
    lightning_info = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _NoCloudTip) for f in lightning_info.filters):
        lightning_info.addFilter(_NoCloudTip())
    package = task_package(config["task"])
    L.seed_everything(config["seed"], workers=True, verbose=False)
    datamodule = _construct("data", package.DATAMODULE, **config["data"])
    task = _construct("model", package.TASK, loss=config["loss"], optim=config["optim"], **config["model"])
    run = config["run"]
    task.on_nonfinite = run["on_nonfinite"]
    task.term_grad_norms = run["term_grad_norms"]
    monitor = run["monitor"] or task.MONITOR
    mode = run["mode"] or task.MONITOR_MODE
    # best-*.ckpt by the monitor; last.ckpt after every epoch and every n steps, so it is written even before
    # the first validation (Lightning defers a monitored checkpoint until its metric exists)
    best = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best-{epoch:03d}", monitor=monitor, mode=mode)
    last = LastCheckpoint(run_dir / "checkpoints" / "last.ckpt", every_n_steps=run["checkpoint_every_n_steps"])
    callbacks: list[L.Callback] = [
        best, last, StepSeed(config["seed"]), ResumeDataPosition(), ResumeEpochMetrics(), LogCadence(),
        LearningRateMonitor(), CheckpointOnInterrupt(last), MonitorCheck(monitor),
    ]  # fmt: skip
    if config["trainer"].get("enable_progress_bar", True):
        callbacks.append(RunProgressBar(run_dir.name))
    if run["plot"]:
        callbacks.append(LossCurvePlot(run_dir / "plots"))
    # fit logs to logs/ (kept across resumes); validate/test/predict to logs_<stage>/ beside it
    log_name = "logs" if stage == "fit" else f"logs_{stage}"
    _keep_previous_metrics(run_dir / log_name)
    loggers = [
        CSVLogger(run_dir, name=log_name, version=""),
        TensorBoardLogger(run_dir, name="tensorboard", version=stage, default_hp_metric=False),
    ]
    trainer_kwargs = {"log_every_n_steps": 10, **config["trainer"]}
    trainer_kwargs["plugins"] = [*_as_list(trainer_kwargs.get("plugins")), AtomicCheckpointIO()]
    trainer = _construct(
        "trainer", L.Trainer, default_root_dir=run_dir, logger=loggers, callbacks=callbacks, **trainer_kwargs
    )
    return RunObjects(config, task, datamodule, trainer, run_dir)


def _as_list(value: Any) -> list[Any]:
    return [] if value is None else list(value) if isinstance(value, (list, tuple)) else [value]


def _construct(section: str, factory: Any, **kwargs: Any) -> Any:
    """Call a constructor; the value errors it raises about its arguments become ConfigErrors naming ``section``.

    Tasks, datamodules and Lightning check their arguments in their constructors (``model.arch: 'unet3d' is not
    one of ...``, a missing data folder, ``Trainer(devices=0)``); those are config mistakes, reported like the rest.
    """
    try:
        return factory(**kwargs)
    except (ConfigError, losses.LossConfigError):
        raise
    except (ValueError, FileNotFoundError, NotADirectoryError, MisconfigurationException) as err:
        raise ConfigError(_name_the_key(section, str(err))) from err
    except TypeError as err:  # Lightning checks some argument types this way (`devices` ... should be an int > 0)
        if section != "trainer":
            raise
        raise ConfigError(_name_the_key(section, str(err))) from err


def _name_the_key(section: str, message: str) -> str:
    """``section.key: ...``: keep a message that names its key; Lightning's ```key``` quoting becomes the key path."""
    if message.startswith((f"{section}.", f"{section}:")):
        return message
    if section == "trainer" and trainer_argument_error(message):
        return trainer_argument_error(message)
    return f"{section}: {message}"


def trainer_argument_error(message: str) -> str | None:
    """``trainer.<key>: message`` when a Lightning error names a ``Trainer`` argument, else None.

    The argument is the first one quoted or assigned (```val_check_interval```, ```strategy='foo'```,
    ``Trainer(devices=0)``), else the first ``snake_case`` word that is one (``... for limit_train_batches``).
    """
    accepted = inspect.signature(L.Trainer.__init__).parameters
    quoted = [key for pair in re.findall(r"`(\w+)`|\b(\w+)=", message) for key in pair if key in accepted]
    named = [word for word in re.findall(r"\b([a-z]+_\w+)\b", message) if word in accepted]
    key = next(iter(quoted + named), None)
    return f"trainer.{key}: {message.strip()}" if key else None


def _keep_previous_metrics(log_dir: Path) -> None:
    """Lightning's CSVLogger overwrites ``metrics.csv`` when a run resumes into its folder;
    keep the earlier part as ``metrics.part<k>.csv`` so plots show the whole history."""
    current = log_dir / "metrics.csv"
    if current.is_file():
        parts = len(list(log_dir.glob("metrics.part*.csv")))
        current.rename(log_dir / f"metrics.part{parts}.csv")

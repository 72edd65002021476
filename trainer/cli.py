"""Command line: ``python train.py {fit,validate,test,predict,compare,losses} ...``.

    python train.py fit -c configs/segmentation/shapes.yaml loss.seg="dice + 0.5*focal"
    python train.py fit --resume runs/shapes/version_0          # continue an interrupted run
    python train.py test -c runs/shapes/version_0/config.yaml   # evaluate its best checkpoint
    python train.py losses [NAME] [--family region]             # the catalogue / one loss card
    python train.py compare -c RECIPE --slot seg --losses dice "dice + ce" --seeds 3   # a leaderboard

Config and loss errors print one message naming the config path and exit with status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import sys
import threading
import zipfile
from collections.abc import Sequence
from pathlib import Path

import lightning as L
from lightning.pytorch.utilities.exceptions import MisconfigurationException, SIGTERMException
from rich.console import Console
from rich.markup import escape
from rich.table import Table

import losses
from tasks.datacheck import DataError
from tasks.guard import NonFiniteLossError
from trainer.build import (
    TASK_PACKAGES,
    build,
    check_run_folder,
    run_base,
    run_directory,
    task_package,
    trainer_argument_error,
    validate,
)
from trainer.checkpointing import CheckpointOnInterrupt
from trainer.config import CONFIG_FILENAME, ConfigError, load_config, save_config

console = Console(soft_wrap=True)  # long paths stay on one line (copyable) when output is not a terminal
err_console = Console(stderr=True, soft_wrap=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except (ConfigError, losses.LossConfigError) as err:
        err_console.print(f"[bold red]config error:[/] {escape(str(err))}", highlight=False)
        if os.environ.get("LOSSLAB_DEBUG"):
            raise
        return 2
    except DataError as err:  # a corrupt or inconsistent data file, named before training starts
        err_console.print(f"[bold red]data error:[/] {escape(str(err))}", highlight=False)
        if os.environ.get("LOSSLAB_DEBUG"):
            raise
        return 2
    except losses.LossInputError as err:  # tensors that do not fit the loss: usually model/mode vs loss settings
        err_console.print(f"[bold red]loss input error:[/] {escape(str(err))}", highlight=False)
        err_console.print("check model.mode / num_classes against the loss; LOSSLAB_DEBUG=1 shows the traceback")
        if os.environ.get("LOSSLAB_DEBUG"):
            raise
        return 1
    except NonFiniteLossError as err:  # run.on_nonfinite=stop: the last checkpoint is the last good step
        err_console.print(f"[bold red]stopped:[/] {escape(str(err))}", highlight=False)
        err_console.print("resume with `python train.py fit --resume <run dir>` after fixing the cause")
        if os.environ.get("LOSSLAB_DEBUG"):
            raise
        return 1
    except KeyboardInterrupt:  # before a stage started (a stage reports its own interruption)
        err_console.print("interrupted")
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="train.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("fit", "validate", "test", "predict"):
        p = sub.add_parser(name, help=f"{name} a task from a YAML config")
        p.add_argument(
            "-c",
            "--config",
            action="append",
            help="YAML config; repeat to merge several (e.g. a recipe and configs/cluster/ddp.yaml)",
        )
        p.add_argument("overrides", nargs="*", help="dotlist overrides, e.g. loss.seg=dice trainer.max_epochs=3")
        if name == "fit":
            p.add_argument(
                "--resume",
                nargs="?",
                const="latest",
                default=None,
                help="resume from a run folder or checkpoint; alone: the newest run of this config",
            )
        else:
            p.add_argument("--ckpt", default=None, help="checkpoint or run folder (default: the newest run's best)")
        p.set_defaults(handler=_run_stage, stage=name)
    p = sub.add_parser("compare", help="rank several losses for one slot over seeds (a resumable leaderboard)")
    p.add_argument("-c", "--config", action="append", required=True, help="the recipe (repeat to merge several)")
    p.add_argument("--slot", required=True, help="the loss slot to vary, e.g. seg")
    p.add_argument("--losses", nargs="+", required=True, help='candidates, e.g. dice "dice + ce" focal_tversky')
    p.add_argument("--seeds", type=int, default=3, help="seeds per candidate (default 3)")
    p.add_argument("--grid", default=None, help="a grid over one loss parameter, e.g. focal.gamma=0,1,2")
    p.add_argument("--name", default=None, help="the comparison's folder under <run.root>/compare/")
    p.add_argument("--gpus", type=int, default=0, help="run cells in parallel, one per local GPU")
    p.add_argument("--slurm", action="store_true", help="write an sbatch array script (one task per cell)")
    p.add_argument("--cell", type=int, default=None, help="run only this cell (what the array tasks call)")
    p.add_argument("--report", action="store_true", help="only aggregate the finished cells")
    p.add_argument("overrides", nargs="*", help="dotlist overrides for every cell, e.g. trainer.max_epochs=3")
    p.set_defaults(handler=_compare)
    p = sub.add_parser("losses", help="list the loss catalogue or describe one loss")
    p.add_argument("name", nargs="?", help="a loss name: print its formula, parameters and reference")
    p.add_argument("--family", default=None, help=f"only this family ({', '.join(losses.FAMILIES)})")
    p.add_argument("--task", default=None, help="only losses usable by this task")
    p.set_defaults(handler=_losses)
    return parser


def _run_stage(args: argparse.Namespace) -> int:
    target = args.resume if args.stage == "fit" else args.ckpt
    if target and "=" in target and not Path(target).exists():  # `--resume key=value`: argparse took an override
        args.overrides.insert(0, target)
        target = "latest"
    config_path = args.config
    run_dir = ckpt = None
    if target not in (None, "latest"):
        run_dir, ckpt = _locate_checkpoint(Path(target), prefer_last=args.stage == "fit")
        config_path = config_path or [run_dir / CONFIG_FILENAME]
    if config_path is None:
        raise ConfigError("-c/--config is required (or give --resume/--ckpt a run folder)")
    cfg = load_config(config_path, args.overrides)
    config = validate(cfg)
    if target == "latest" or (args.stage != "fit" and ckpt is None):
        run_dir = _latest_run(config)
        run_dir, ckpt = _locate_checkpoint(run_dir, prefer_last=args.stage == "fit")
    if args.stage == "fit":
        run_dir = run_directory(config["run"], config["task"], resume_dir=run_dir)
        check_run_folder(run_dir)
    objects = build(config, run_dir, stage=args.stage)
    fresh = args.stage == "fit" and not run_dir.exists()
    if args.stage == "fit":  # only now: a config the task or Lightning rejects leaves no empty run folder
        save_config(cfg, run_dir)
    stage = getattr(objects.trainer, args.stage)
    console.print(f"[bold]{args.stage}[/] {config['task']} -> {run_dir}" + (f" (from {ckpt})" if ckpt else ""))
    before = _files(run_dir / "predictions") if args.stage == "predict" else {}
    # predict: the tasks write their outputs as they go; holding every output in memory is not needed
    kwargs = {"return_predictions": False} if args.stage == "predict" else {}
    sigint = signal.getsignal(signal.SIGINT)  # Lightning ignores Ctrl-C after catching one; undone below
    try:
        stage(objects.task, datamodule=objects.datamodule, ckpt_path=str(ckpt) if ckpt else None, **kwargs)
    except (SystemExit, KeyboardInterrupt) as err:  # SIGTERMException is a SystemExit; so is Lightning's Ctrl-C exit
        if not (isinstance(err, (SIGTERMException, KeyboardInterrupt)) or objects.trainer.interrupted):
            raise
        if fresh:
            _remove_if_untrained(run_dir)
        return _interrupted(objects.trainer, run_dir)
    except (ConfigError, DataError, ValueError, MisconfigurationException) as err:  # found when data was read
        if fresh:
            _remove_if_untrained(run_dir)
        if isinstance(err, (ConfigError, DataError)):
            raise
        if _names_a_key(str(err)):
            raise ConfigError(str(err)) from None  # a task's setup-time check of a config value
        if trainer_argument_error(str(err)):  # Lightning checks some trainer.* values only when the data is known
            raise ConfigError(trainer_argument_error(str(err))) from None
        raise
    finally:
        if sigint is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, sigint)
    if args.stage == "fit":
        _print_metrics(objects.trainer.callback_metrics, run_dir)
    elif args.stage == "predict":
        _print_written(run_dir / "predictions", before)
    return 0


def _files(folder: Path) -> dict[Path, tuple[int, int]]:
    """Every file under ``folder`` -> (modification time in ns, size): what a later call changed shows."""
    return {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in folder.rglob("*") if p.is_file()}


def _print_written(folder: Path, before: dict[Path, tuple[int, int]]) -> None:
    """List the files under ``folder`` this call wrote (new or rewritten): a count per sub-folder and extension."""
    written = [p for p, stamp in _files(folder).items() if before.get(p) != stamp] if folder.is_dir() else []
    if not written:
        console.print(f"predict [bold red]wrote no files[/] under {escape(str(folder))}")
        return
    console.print(f"predict wrote {len(written)} file{'' if len(written) == 1 else 's'} under {escape(str(folder))}:")
    groups: dict[tuple[str, str], int] = {}
    for path in written:
        key = (path.parent.relative_to(folder).as_posix(), path.suffix.lower() or "(no extension)")
        groups[key] = groups.get(key, 0) + 1
    width = max(len(sub) for sub, _ in groups) + 2
    for (sub, suffix), count in sorted(groups.items()):
        console.print(escape(f"  {sub + '/':<{width}} {count:>5} {suffix}"), highlight=False)


def _remove_if_untrained(run_dir: Path) -> None:
    """A fresh run stopped before any checkpoint: remove its folder (and the recipe's, when it was the only run)."""
    if not any(run_dir.glob("checkpoints/*.ckpt")):
        shutil.rmtree(run_dir, ignore_errors=True)
        with contextlib.suppress(OSError):
            run_dir.parent.rmdir()


def _names_a_key(message: str) -> bool:
    """Whether ``message`` starts with a config key path (``model.num_classes=0 but ...``, ``data.root: ...``)."""
    return message.split(".", 1)[0] in ("model", "data", "loss", "optim", "trainer", "run") and "." in message


def _interrupted(trainer: L.Trainer, run_dir: Path) -> int:
    """SIGTERM / Ctrl-C stopped a stage: say what was saved and how to go on; exit 128 + the signal number."""
    stopper = next((c for c in trainer.callbacks if isinstance(c, CheckpointOnInterrupt)), None)
    name = (stopper.signal if stopper else None) or "SIGINT"
    if stopper is not None and stopper.saved is not None:
        err_console.print(f"{name}: stopped at step {trainer.global_step}; saved {escape(str(stopper.saved))}")
        err_console.print(f"resume with `python train.py fit --resume {escape(str(run_dir))}`")
    elif trainer.global_step > 0:
        err_console.print(f"{name}: stopped at step {trainer.global_step} without a new checkpoint; "
                          f"`python train.py fit --resume {escape(str(run_dir))}` continues from the last one")
    else:
        err_console.print(f"{name}: stopped before the first training step; nothing to resume")
    return 128 + int(getattr(signal, name))


def _locate_checkpoint(path: Path, prefer_last: bool) -> tuple[Path, Path]:
    """A checkpoint file or a run folder -> (run folder, checkpoint)."""
    if path.is_file():
        run_dir = path.parent.parent if path.parent.name == "checkpoints" else path.parent
        return run_dir, _readable_checkpoint(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such checkpoint file or run folder")
    checkpoints = path / "checkpoints"
    if not checkpoints.is_dir():
        raise ConfigError(f"{path}: not a checkpoint file or a run folder with checkpoints/")
    # last.ckpt, or the SLURM pre-emption checkpoint Lightning writes into the run folder when that is newer
    latest = [p for p in (checkpoints / "last.ckpt", *path.glob("hpc_ckpt_*.ckpt")) if p.is_file()]
    latest.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    best = sorted(checkpoints.glob("best-*.ckpt"))
    candidates = [*latest, *best[::-1]] if prefer_last else [*best[::-1], *latest]
    for candidate in candidates:
        if candidate.is_file():
            return path, _readable_checkpoint(candidate)
    raise ConfigError(f"{checkpoints}: no checkpoint to resume from")


def _readable_checkpoint(path: Path) -> Path:
    """A torch checkpoint is a zip archive; a truncated or foreign file fails here, not after the model is built."""
    if not zipfile.is_zipfile(path):
        raise ConfigError(f"{path}: not a readable checkpoint (truncated or not written by torch.save)")
    return path


def _latest_run(config: dict) -> Path:
    base = run_base(config["run"], config["task"])
    runs = sorted(base.glob("version_*"), key=lambda p: p.stat().st_mtime)
    if not runs:
        raise ConfigError(f"no earlier run under {base} to resume from or evaluate")
    return runs[-1]


def _print_metrics(metrics: dict, run_dir: Path) -> None:
    console.print(f"run folder: {run_dir}")
    table = Table(title="metrics")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in sorted(metrics):
        if key.endswith("_step") or f"{key}_epoch" in metrics:
            continue  # the per-epoch value is shown once, without its suffix
        table.add_row(key.removesuffix("_epoch"), f"{float(metrics[key]):.4f}")
    console.print(table)
    plot = run_dir / "plots" / "loss_curves.png"
    if plot.is_file():
        console.print(f"loss curves: {plot}")


def _compare(args: argparse.Namespace) -> int:
    from trainer.compare import compare  # matplotlib/scipy only when comparing

    return compare(args)


def _losses(args: argparse.Namespace) -> int:
    if args.name:
        print(losses.info(args.name))
        return 0
    if args.family is not None and args.family not in losses.FAMILIES:
        raise ConfigError(f"--family: expected one of {', '.join(losses.FAMILIES)}, got {args.family!r}")
    families = [args.family] if args.family else list(losses.FAMILIES)
    slots = _slots_by_family(args.task) if args.task is not None else {}
    if args.task is not None:  # only what one of the task's slots accepts (the task declares the families)
        families = [family for family in families if family in slots]
        if not families:
            taken = ", ".join(sorted(slots))
            raise ConfigError(f"--family: no slot of {args.task} takes {args.family} losses; its slots take: {taken}")
    table = Table(title="loss catalogue  (python train.py losses NAME: its card)")
    for column in ("family", *(["slots"] if slots else []), "name", "summary"):
        table.add_column(column)
    for family in families:
        for name in losses.available(family=family, task=args.task):
            row = (family, *([", ".join(slots[family])] if slots else []), name, losses.get(name).summary)
            table.add_row(*row)
    console.print(table)
    return 0


def _slots_by_family(task: str) -> dict[str, list[str]]:
    """Loss family -> the slots of ``task`` that accept it, from the task's ``LOSS_SLOTS`` declaration."""
    try:
        declared = task_package(task).TASK.LOSS_SLOTS
    except ConfigError:
        raise ConfigError(f"--task: expected one of {', '.join(TASK_PACKAGES)}, got {task!r}") from None
    slots: dict[str, list[str]] = {}
    for slot, declaration in declared.items():
        for family in declaration.families:
            slots.setdefault(family, []).append(slot)
    return slots


if __name__ == "__main__":
    sys.exit(main())

"""``python train.py compare``: one recipe, several losses for one slot, several seeds -> a ranked leaderboard.

    python train.py compare -c configs/segmentation/shapes.yaml --slot seg \\
        --losses dice "dice + ce" focal_tversky --seeds 3 trainer.max_epochs=3

Every (candidate, seed) cell is an ordinary ``fit`` run under
``<run.root>/compare/<name>/<candidate>/seed_<k>/version_0``. Cells run one after another in this
process; ``--gpus N`` runs N at a time as subprocesses, one per local GPU; ``--slurm`` writes an
sbatch array script (one task per cell, ``--cell INDEX``) and ``--report`` aggregates afterwards.
A finished cell writes ``done.json`` and is skipped next time; an interrupted one (a checkpoint but
no ``done.json``) resumes from its ``last.ckpt``; a failed one is reported and the others still run.
The leaderboard (:mod:`trainer.leaderboard`) ranks the candidates by the task's monitor metric.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from trainer.build import task_package, validate
from trainer.config import ConfigError, load_config
from trainer.leaderboard import write_leaderboard

console = Console(soft_wrap=True)
DONE = "done.json"


@dataclass(frozen=True)
class Cell:
    """One run of the comparison: a loss spec for the slot and a seed."""

    label: str  # the candidate as the table shows it
    spec: str  # the dotlist value of loss.<slot>
    seed: int

    @property
    def slug(self) -> str:
        return re.sub(r"[^A-Za-z0-9.=]+", "_", self.label).strip("_") or "loss"


def plan(losses: list[str], seeds: int, grid: str | None) -> list[Cell]:
    """Candidates x grid values x seeds; ``grid`` is ``name.param=v1,v2`` and expands the candidate ``name``."""
    if seeds < 1:
        raise ConfigError(f"--seeds: expected at least 1, got {seeds}")
    candidates = [(spec, spec) for spec in losses]
    if grid:
        match = re.fullmatch(r"(\w+)\.(\w+)=(.+)", grid)
        if match is None:
            raise ConfigError(f"--grid: expected name.param=v1,v2,... (e.g. focal.gamma=0,1,2), got {grid!r}")
        name, param, values = match.group(1), match.group(2), match.group(3).split(",")
        if name not in losses:
            raise ConfigError(f"--grid: {name!r} is not one of the candidates {losses}")
        grid_cells = [(f"{name}({param}={v})", f"{{name: {name}, params: {{{param}: {v}}}}}") for v in values]
        candidates = [c for c in candidates if c[0] != name] + grid_cells
    return [Cell(label, spec, seed) for label, spec in candidates for seed in range(seeds)]


def cell_dir(root: Path, cell: Cell) -> Path:
    return root / cell.slug / f"seed_{cell.seed}"


def run_cell(args: argparse.Namespace, root: Path, cell: Cell, position: str = "") -> dict:
    """Run (or resume, or skip) one cell in this process; returns its ``done.json`` record.

    ``position`` (``"[3/8] "``) prefixes the lines that say which cell starts and how it ended.
    """
    from trainer.cli import main as cli_main  # the fit path itself (errors, resume, interruption)

    folder = cell_dir(root, cell)
    done = folder / DONE
    if done.is_file():
        return json.loads(done.read_text())
    run = folder / "version_0"
    if any(run.glob("checkpoints/*.ckpt")):
        console.print(f"{position}[bold]resume[/] {escape(cell.label)} seed {cell.seed}")
        argv = ["fit", "--resume", str(run)]
    else:
        console.print(f"{position}[bold]run[/] {escape(cell.label)} seed {cell.seed}")
        argv = ["fit", *[a for c in args.config for a in ("-c", c)], *args.overrides, f"loss.{args.slot}={cell.spec}",
                f"seed={cell.seed}", f"run.root={folder.parent}", f"run.name={folder.name}", "run.version=version_0"]
    start = time.perf_counter()
    code = cli_main(argv)
    wall = round(time.perf_counter() - start, 1)
    record = {"label": cell.label, "seed": cell.seed, "exit_code": code, "wall_s": wall}
    if code == 0:
        done.write_text(json.dumps(record))
    ended = "finished" if code == 0 else f"[bold red]failed[/] (exit {code}; the other cells go on)"
    console.print(f"{position}{escape(cell.label)} seed {cell.seed} {ended} in {wall} s")
    return record


def compare(args: argparse.Namespace) -> int:
    """The ``compare`` subcommand (see the module docstring)."""
    cfg = load_config(args.config, args.overrides)
    config = validate(cfg)
    slots = task_package(config["task"]).TASK.LOSS_SLOTS
    if args.slot not in slots:
        raise ConfigError(f"--slot: {config['task']} has the loss slots {', '.join(slots)}, not {args.slot!r}")
    cells = plan(args.losses, args.seeds, args.grid)
    for spec in {c.spec for c in cells}:  # every candidate fits the slot before anything runs
        validate(load_config(args.config, [*args.overrides, f"loss.{args.slot}={spec}"]))
    root = Path(config["run"]["root"]) / "compare" / (args.name or f"{config['task']}_{args.slot}")
    root.mkdir(parents=True, exist_ok=True)
    if args.slurm:
        return _write_slurm(args, root, len(cells))
    if args.cell is not None:
        if not 0 <= args.cell < len(cells):
            raise ConfigError(f"--cell: expected 0..{len(cells) - 1}, got {args.cell}")
        return 0 if run_cell(args, root, cells[args.cell])["exit_code"] == 0 else 1
    if not args.report:
        if args.gpus:
            _run_on_gpus(args, root, cells)
        else:
            skipped = sum((cell_dir(root, c) / DONE).is_file() for c in cells)
            if skipped:
                console.print(f"skipping {skipped} finished cell(s) of {len(cells)}")
            for number, cell in enumerate(cells, 1):
                run_cell(args, root, cell, f"[{number}/{len(cells)}] ")
    monitor = config["run"]["monitor"] or task_package(config["task"]).TASK.MONITOR
    mode = config["run"]["mode"] or task_package(config["task"]).TASK.MONITOR_MODE
    written = write_leaderboard(root, [(c, cell_dir(root, c)) for c in cells], monitor, mode, console)
    console.print("wrote " + ", ".join(str(p) for p in written))
    return 0


def _child_argv(args: argparse.Namespace) -> list[str]:
    argv = [sys.executable, str(Path(__file__).resolve().parents[1] / "train.py"), "compare",
            *[a for c in args.config for a in ("-c", c)], "--slot", args.slot, "--losses", *args.losses,
            "--seeds", str(args.seeds)]  # fmt: skip
    if args.grid:
        argv += ["--grid", args.grid]
    if args.name:
        argv += ["--name", args.name]
    return [*argv, *args.overrides]


def _run_on_gpus(args: argparse.Namespace, root: Path, cells: list[Cell]) -> None:
    """Unfinished cells as subprocesses, at most one per local GPU at a time."""
    pending = [i for i, c in enumerate(cells) if not (cell_dir(root, c) / DONE).is_file()]
    running: dict[int, subprocess.Popen] = {}
    while pending or running:
        for gpu in [g for g in range(args.gpus) if g not in running and pending]:
            env = {**os.environ, "CUDA_VISIBLE_DEVICES": str(gpu)}
            running[gpu] = subprocess.Popen([*_child_argv(args), "--cell", str(pending.pop(0))], env=env)
        for gpu, proc in list(running.items()):
            if proc.poll() is not None:
                del running[gpu]
        time.sleep(1.0)


def _write_slurm(args: argparse.Namespace, root: Path, count: int) -> int:
    script = root / "compare.sbatch"
    command = " ".join(f"'{a}'" if " " in a or "{" in a else a for a in _child_argv(args)[1:])
    script.write_text(
        "#!/bin/bash\n"
        f"#SBATCH --job-name=compare-{root.name}\n#SBATCH --array=0-{count - 1}\n#SBATCH --gpus=1\n"
        f"#SBATCH --output={root}/slurm-%A_%a.out\n"
        f"cd {Path.cwd()}\nsource .venv/bin/activate\n"
        f"python {command} --cell \"$SLURM_ARRAY_TASK_ID\"\n"
    )
    console.print(f"wrote {script}: submit with `sbatch {script}`, then aggregate with `python {command} --report`")
    return 0

"""Framework overhead: one segmentation training step through losslab vs by hand, and a composite vs its terms.

Usage::

    python benchmarks/step_overhead.py                                # CUDA if available, 30 timed steps per variant
    python benchmarks/step_overhead.py --device cpu --threads 1 --markdown
    python benchmarks/step_overhead.py --batch 2 --size 64 --steps 10 # a quick look
    python benchmarks/step_overhead.py --control --json times.json    # + A/A noise control, raw times
    python benchmarks/step_overhead.py --profile                      # + where the framework's time goes

What is measured
----------------
1. **One training step**, three variants on the same data (``--batch`` random images
   3x``--size``x``--size``, ``--classes`` classes, a few fixed batches cycled), the same U-Net/ResNet-18
   (segmentation-models-pytorch, random init from the same seed), the same loss maths (dice + ce)
   and the same optimiser (AdamW, lr 1e-3, weight decay 1e-4 on weights and 0 on biases/norms,
   epoch-wise cosine schedule: the framework's defaults):

   * ``framework``: :class:`tasks.segmentation.SegmentationTask` with its default ``seg`` slot
     (``dice + ce``), trained by a ``lightning.Trainer``, so Lightning's loop and the framework's
     per-step work (slot composite, finite-loss guard, ``self.log`` of the total and each term)
     are all included;
   * ``hand-written Lightning``: a minimal LightningModule with the same model, the registry's
     ``dice`` and ``ce`` called directly (no Composite, no logging, no guard), the same optimiser
     and the same Trainer settings;
   * ``plain PyTorch loop``: model, loss, ``zero_grad / backward / step``.

   Both Trainers run with checkpointing, progress bar, model summary, loggers and validation
   off. The variants are timed in *rounds*, interleaved A, B, C, C, B, A, ... so load from other
   processes on a shared machine hits them alike; each round is one short epoch (a fresh
   ``Trainer.fit`` for the Lightning variants) whose first step is discarded (optimiser state is
   created there), and one whole warm-up round precedes the timed ones. Two times per step:

   * **step ms**: from ``on_train_batch_start`` to ``on_train_batch_end`` (a callback) for the
     Lightning variants, around ``zero_grad ... step`` for the plain loop; median over all timed
     steps;
   * **epoch ms/step**: wall time from the end of a round's first step to the end of the round
     (Lightning: ``on_train_end``, so batch fetching, every per-step hook and the epoch-end
     logging are inside), divided by the steps; median over rounds.

   Each is also taken as process **CPU time** (``time.process_time``), which a busy shared machine
   disturbs far less than wall time. Ratios are framework / hand-written Lightning and ... / plain
   loop of those medians (step / CPU / epoch); the target is framework <= 1.03x hand-written
   Lightning. The framework / hand-written ratio is also given *paired per round* (both medians
   from the same round). ``--control`` adds a second, identical hand-written module: its ratio to
   the first is what noise alone produces on this machine (an A/A test).

2. **A 3-term composite** (``dice + ce + 0.5*focal``, built by :func:`losses.build_slot` as a task
   builds its slots) vs the sum of the same three loss modules called directly, forward+backward
   on logits of the step's shape, timed interleaved; overhead = composite / direct - 1, target
   <= 5%.

CUDA is synchronised around every timed region. ``--profile`` adds a cProfile of framework steps:
the cumulative time of the framework's own functions (``tasks/``, ``losses/compose.py``) and of
Lightning's logging per step.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime
import json
import logging
import math
import os
import pstats
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

if __package__ in (None, ""):  # run as a script: benchmarks/ must not shadow the `losses` package
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]
    sys.path.insert(0, os.path.dirname(_here))

import lightning as L  # noqa: E402
import segmentation_models_pytorch as smp  # noqa: E402
import torch  # noqa: E402
from torch import Tensor, nn  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

import losses  # noqa: E402
from benchmarks.machine import describe  # noqa: E402
from tasks.segmentation import SegmentationTask  # noqa: E402

Batch = tuple[Tensor, Tensor]
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IGNORE_INDEX = 255  # what SegmentationTask injects into its seg losses by default
FRAMEWORK = "framework (SegmentationTask)"
HAND = "hand-written Lightning"
CONTROL = "hand-written Lightning, 2nd copy (A/A control)"
PLAIN = "plain PyTorch loop"
COMPOSITE_SPEC = "dice + ce + 0.5*focal"
STEP_TARGET = 1.03
COMPOSITE_TARGET = 0.05


@dataclass
class Settings:
    """What every variant shares."""

    device: torch.device
    batch: int = 8
    size: int = 128
    classes: int = 4
    seed: int = 0
    unique_batches: int = 4


@dataclass
class RoundTimes:
    """One round of one variant, its first step dropped: per-step ms and epoch ms per step, wall and CPU."""

    step_ms: list[float]
    step_cpu_ms: list[float]
    epoch_ms: float
    epoch_cpu_ms: float


@dataclass
class Row:
    """One line of the output table; ``vs_*`` are (step, CPU, epoch) ratios of the medians."""

    label: str
    step_ms: float
    spread: str = ""
    cpu_ms: float | None = None
    epoch_ms: float | None = None
    vs_lightning: tuple[float, float, float] | None = None
    vs_plain: tuple[float, float, float] | None = None
    note: str = ""


class Clock:
    """Wall and process-CPU time, CUDA synchronised; ``since()`` gives (wall ms, CPU ms) since ``mark()``."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.wall = self.cpu = 0.0

    def mark(self) -> None:
        sync(self.device)
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def since(self) -> tuple[float, float]:
        sync(self.device)
        return (time.perf_counter() - self.wall) * 1e3, (time.process_time() - self.cpu) * 1e3


# --------------------------------------------------------------------------- shared pieces


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_batches(s: Settings) -> list[Batch]:
    """``unique_batches`` random (images, index masks) pairs on the CPU, from a fixed seed."""
    gen = torch.Generator().manual_seed(s.seed)
    return [
        (
            torch.randn(s.batch, 3, s.size, s.size, generator=gen),
            torch.randint(0, s.classes, (s.batch, s.size, s.size), generator=gen),
        )
        for _ in range(s.unique_batches)
    ]


def loader(batches: Sequence[Batch], steps: int) -> DataLoader:
    """``steps`` batches (the fixed ones, cycled) without collation: fetching costs next to nothing."""
    return DataLoader([batches[i % len(batches)] for i in range(steps)], batch_size=None)


def build_unet(s: Settings) -> nn.Module:
    """The framework's default network (U-Net/ResNet-18, random init) from ``s.seed``."""
    torch.manual_seed(s.seed)
    return smp.create_model("Unet", encoder_name="resnet18", encoder_weights=None, in_channels=3, classes=s.classes)


def direct_losses() -> tuple[nn.Module, nn.Module]:
    """The registry's dice and ce with the parameters SegmentationTask injects (mode, ignore_index)."""
    dice = losses.build("dice", mode="multiclass", ignore_index=IGNORE_INDEX)
    ce = losses.build("ce", mode="multiclass", ignore_index=IGNORE_INDEX)
    return dice, ce


def adamw_like_framework(model: nn.Module, lr: float = 1e-3, weight_decay: float = 1e-4) -> torch.optim.Optimizer:
    """AdamW with the framework's default groups: decay on weights (ndim >= 2), none on biases/norms."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)


# --------------------------------------------------------------------------- variants


class HandWritten(L.LightningModule):
    """The same step written directly: model, dice + ce, AdamW + cosine; no logging, no guard."""

    def __init__(self, s: Settings) -> None:
        super().__init__()
        self.model = build_unet(s)
        self.dice, self.ce = direct_losses()

    def forward(self, images: Tensor) -> Tensor:
        return self.model(images)

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        images, mask = batch
        logits = self(images)
        return self.dice(logits, mask) + self.ce(logits, mask)

    def configure_optimizers(self) -> Any:
        optimizer = adamw_like_framework(self.model)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, self.trainer.max_epochs or 1))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}


class StepTimer(L.Callback):
    """Times each batch (``on_train_batch_start`` -> ``on_train_batch_end``) and the epoch after its first step."""

    def __init__(self, device: torch.device) -> None:
        self.step = Clock(device)
        self.epoch = Clock(device)
        self.step_ms: list[float] = []
        self.step_cpu_ms: list[float] = []
        self.epoch_ms = self.epoch_cpu_ms = math.nan

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self.step.mark()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        wall, cpu = self.step.since()
        self.step_ms.append(wall)
        self.step_cpu_ms.append(cpu)
        if batch_idx == 0:
            self.epoch.mark()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.epoch_ms, self.epoch_cpu_ms = self.epoch.since()

    def times(self) -> RoundTimes:
        steps = max(1, len(self.step_ms) - 1)
        return RoundTimes(self.step_ms[1:], self.step_cpu_ms[1:], self.epoch_ms / steps, self.epoch_cpu_ms / steps)


def make_trainer(device: torch.device, steps: int, callbacks: list[L.Callback], root: str) -> L.Trainer:
    """The Trainer both Lightning variants run in: one epoch, no checkpoints/progress bar/summary/logger/validation."""
    return L.Trainer(
        accelerator="gpu" if device.type == "cuda" else "cpu",
        devices=1,
        max_epochs=1,
        limit_train_batches=steps,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        logger=False,
        callbacks=callbacks,
        default_root_dir=root,
    )


def lightning_round(
    module: L.LightningModule, s: Settings, batches: Sequence[Batch], steps: int, extra: Sequence[L.Callback] = ()
) -> RoundTimes:
    """One epoch of ``steps`` batches in a fresh Trainer (identical settings for both Lightning variants)."""
    timer = StepTimer(s.device)
    with tempfile.TemporaryDirectory() as root:
        make_trainer(s.device, steps, [timer, *extra], root).fit(module, train_dataloaders=loader(batches, steps))
    return timer.times()


class PlainLoop:
    """Model, loss and optimiser in a plain loop; the scheduler steps once per round (= epoch)."""

    def __init__(self, s: Settings) -> None:
        self.s = s
        self.model = build_unet(s).to(s.device).train()
        self.dice, self.ce = direct_losses()
        self.optimizer = adamw_like_framework(self.model)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=1)

    def step(self, images: Tensor, mask: Tensor) -> None:
        self.optimizer.zero_grad()
        logits = self.model(images)
        loss = self.dice(logits, mask) + self.ce(logits, mask)
        loss.backward()
        self.optimizer.step()

    def round(self, batches: Sequence[Batch], steps: int) -> RoundTimes:
        step, epoch = Clock(self.s.device), Clock(self.s.device)
        step_ms: list[float] = []
        step_cpu_ms: list[float] = []
        for i, (images, mask) in enumerate(loader(batches, steps)):
            images, mask = images.to(self.s.device), mask.to(self.s.device)
            step.mark()
            self.step(images, mask)
            wall, cpu = step.since()
            step_ms.append(wall)
            step_cpu_ms.append(cpu)
            if i == 0:
                epoch.mark()
        self.scheduler.step()
        epoch_ms, epoch_cpu_ms = epoch.since()
        n = max(1, steps - 1)
        return RoundTimes(step_ms[1:], step_cpu_ms[1:], epoch_ms / n, epoch_cpu_ms / n)


def build_variants(
    s: Settings, batches: Sequence[Batch], control: bool = False
) -> dict[str, Callable[[int], RoundTimes]]:
    """name -> ``run(steps) -> RoundTimes`` for each variant, all starting from the same weights.

    ``control`` adds a second, identical hand-written module: its ratio to the first is the noise floor.
    """
    torch.manual_seed(s.seed)
    framework = SegmentationTask(num_classes=s.classes)  # default seg slot "dice + ce", default optimiser
    framework.model.load_state_dict(build_unet(s).state_dict())  # the same weights as the others, whatever the RNG
    hand = HandWritten(s)
    plain = PlainLoop(s)
    variants = {
        FRAMEWORK: lambda n: lightning_round(framework, s, batches, n),
        HAND: lambda n: lightning_round(hand, s, batches, n),
    }
    if control:
        copy = HandWritten(s)
        variants[CONTROL] = lambda n: lightning_round(copy, s, batches, n)
    variants[PLAIN] = lambda n: plain.round(batches, n)
    return variants


def interleaved_rounds(order: list[str], rounds: int) -> Iterator[list[str]]:
    """A, B, C then C, B, A, ... so slow drifts of machine load hit every variant alike."""
    for r in range(rounds):
        yield order if r % 2 == 0 else order[::-1]


def measure_steps(
    s: Settings, steps: int, rounds: int, progress: bool, control: bool = False
) -> dict[str, list[RoundTimes]]:
    """Run one warm-up round, then ``rounds`` interleaved rounds of ``ceil(steps / rounds) + 1`` steps each."""
    batches = make_batches(s)
    variants = build_variants(s, batches, control)
    per_round = math.ceil(steps / rounds) + 1
    for run in variants.values():  # warm-up: allocator, kernels, lazy imports, first Trainer
        run(min(per_round, 3))
    results: dict[str, list[RoundTimes]] = {name: [] for name in variants}
    for r, names in enumerate(interleaved_rounds(list(variants), rounds)):
        for name in names:
            results[name].append(variants[name](per_round))
        if progress:
            print(f"  round {r + 1}/{rounds} done", file=sys.stderr, flush=True)
    return results


# --------------------------------------------------------------------------- composite vs terms


def measure_composite(s: Settings, repeat: int) -> list[tuple[float, float]]:
    """Median fwd+bwd (wall ms, CPU ms) of the 3-term slot composite and of its three modules summed directly."""
    slot = SegmentationTask.LOSS_SLOTS["seg"]  # as the task builds it: inputs (logits, target), injected mode
    inject = {"mode": "multiclass", "ignore_index": IGNORE_INDEX}
    composite = losses.build_slot(COMPOSITE_SPEC, slot, inject=inject, where="loss.seg").to(s.device)
    dice, ce, focal = composite.terms
    gen = torch.Generator().manual_seed(s.seed)
    logits = torch.randn(s.batch, s.classes, s.size, s.size, generator=gen).to(s.device).requires_grad_()
    target = torch.randint(0, s.classes, (s.batch, s.size, s.size), generator=gen).to(s.device)

    def via_composite() -> Tensor:
        return composite(logits, target)

    def direct() -> Tensor:
        return dice(logits, target) + ce(logits, target) + 0.5 * focal(logits, target)

    torch.testing.assert_close(via_composite(), direct())  # the same maths
    fns = [via_composite, direct]
    wall: list[list[float]] = [[], []]
    cpu: list[list[float]] = [[], []]
    clock = Clock(s.device)
    for i in range(repeat + 3):
        for k in (0, 1) if i % 2 == 0 else (1, 0):  # interleaved: c, d, d, c, ...
            logits.grad = None
            clock.mark()
            fns[k]().backward()
            w, c = clock.since()
            if i >= 3:  # the first rounds warm up
                wall[k].append(w)
                cpu[k].append(c)
    return [(statistics.median(wall[k]), statistics.median(cpu[k])) for k in (0, 1)]


# --------------------------------------------------------------------------- profile


class ProfileSteps(L.Callback):
    """cProfile from the second batch's start to the end of training (the first step is warm-up)."""

    def __init__(self) -> None:
        self.profiler = cProfile.Profile()
        self.steps = 0
        self.wall = 0.0

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if batch_idx == 1:
            self.wall = time.perf_counter()
            self.profiler.enable()
        self.steps += batch_idx >= 1

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.profiler.disable()
        self.wall = time.perf_counter() - self.wall


PROFILED = ("/tasks/", "/losses/compose.py", "/losses/slots.py", "logger_connector/result.py")


def profile_framework(s: Settings, steps: int, top: int = 25) -> str:
    """cProfile of framework steps: cumulative ms per step of the framework's and Lightning logging's functions.

    cProfile inflates Python-heavy code several times; read the lines against each other and against
    the profiled total, not against the timed table.
    """
    batches = make_batches(s)
    task = SegmentationTask(num_classes=s.classes)
    lightning_round(task, s, batches, 3)  # warm-up
    probe = ProfileSteps()
    lightning_round(task, s, batches, steps + 1, extra=[probe])
    n = max(1, probe.steps)
    stats = pstats.Stats(probe.profiler)
    lines = []
    for (path, line, func), (_, _, _, cumulative, _) in stats.stats.items():  # type: ignore[attr-defined]
        if any(w in path for w in PROFILED):
            short = path.split("/site-packages/")[-1].removeprefix(REPO + os.sep)
            lines.append((cumulative * 1e3 / n, f"{short}:{line}({func})"))
    lines.sort(reverse=True)
    head = f"{probe.wall * 1e3 / n:9.3f} ms/step  profiled total ({n} steps, wall, under cProfile)"
    return "\n".join([head, *(f"{ms:9.3f} ms/step  {where}" for ms, where in lines[:top])])


# --------------------------------------------------------------------------- table


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def _spread(values: list[float]) -> str:
    if len(values) < 4:
        return ""
    q = statistics.quantiles(values, n=4)
    return f"{q[0]:.1f}-{q[2]:.1f}"


def _medians(results: list[RoundTimes]) -> tuple[float, float, float]:
    """Median step wall ms, step CPU ms (over all steps) and epoch wall ms/step (over rounds)."""
    return (
        _median([t for r in results for t in r.step_ms]),
        _median([t for r in results for t in r.step_cpu_ms]),
        _median([r.epoch_ms for r in results]),
    )


def _ratio(a: tuple[float, float, float], b: tuple[float, float, float]) -> tuple[float, float, float]:
    return a[0] / b[0], a[1] / b[1], a[2] / b[2]


def step_rows(results: dict[str, list[RoundTimes]]) -> list[Row]:
    """One row per variant: medians, interquartile range of step ms, ratios (step, CPU, epoch) of the medians."""
    medians = {n: _medians(r) for n, r in results.items()}
    lightning, plain = medians[HAND], medians[PLAIN]
    rows = []
    for n in results:
        step_ms = [t for r in results[n] for t in r.step_ms]
        m = medians[n]
        rows.append(
            Row(
                n,
                m[0],
                _spread(step_ms),
                m[1],
                m[2],
                _ratio(m, lightning),
                _ratio(m, plain),
                f"{len(step_ms)} steps, {len(results[n])} rounds",
            )
        )
    return rows


HEADERS = [
    "variant",
    "step ms",
    "IQR ms",
    "CPU ms",
    "epoch ms/step",
    "vs hand-written Lightning (step / CPU / epoch)",
    "vs plain loop (step / CPU / epoch)",
    "note",
]
RIGHT = set(HEADERS[1:-1])


def _fmt(value: float | None) -> str:
    if value is None or math.isnan(value):
        return ""
    return format(value, ".1f" if value >= 10 else ".2f")


def _fmt_ratios(ratios: tuple[float, float, float] | None) -> str:
    return "" if ratios is None else " / ".join(f"{r:.3f}" for r in ratios)


def cells(row: Row) -> list[str]:
    return [
        row.label,
        _fmt(row.step_ms),
        row.spread,
        _fmt(row.cpu_ms),
        _fmt(row.epoch_ms),
        _fmt_ratios(row.vs_lightning),
        _fmt_ratios(row.vs_plain),
        row.note,
    ]


def round_ratios(results: dict[str, list[RoundTimes]], name: str) -> list[float]:
    """Per round: median step ms of ``name`` / that of the hand-written module in the same round (paired)."""
    return [_median(a.step_ms) / _median(b.step_ms) for a, b in zip(results[name], results[HAND])]


def verdicts(
    rows: list[Row], overhead: tuple[float, float] | None, results: dict[str, list[RoundTimes]] | None = None
) -> list[str]:
    """One line per target: measured values and whether they are met (judged on the wall-time medians)."""
    step, cpu, epoch = rows[0].vs_lightning or (math.nan,) * 3
    met = "met" if step <= STEP_TARGET and epoch <= STEP_TARGET else "NOT met"
    out = [
        f"framework / hand-written Lightning: step {step:.3f}x, CPU {cpu:.3f}x, epoch {epoch:.3f}x; "
        f"target <= {STEP_TARGET:.2f}x: {met}"
    ]
    for name in (FRAMEWORK, CONTROL) if results else ():
        if name in results and len(results[name]) > 1:
            paired = round_ratios(results, name)
            out.append(
                f"{name} / hand-written Lightning, step ms paired per round: median {_median(paired):.3f}x, "
                f"range {min(paired):.3f}-{max(paired):.3f}x over {len(paired)} rounds"
            )
    if overhead is not None:
        met = "met" if overhead[0] <= COMPOSITE_TARGET else "NOT met"
        out.append(
            f"composite ({COMPOSITE_SPEC}) vs its terms called directly: {overhead[0]:+.1%} wall, "
            f"{overhead[1]:+.1%} CPU; target <= {COMPOSITE_TARGET:.0%}: {met}"
        )
    return out


def print_markdown(rows: list[Row], lines: list[str]) -> None:
    print("| " + " | ".join(HEADERS) + " |")
    print("|" + "|".join("---:" if h in RIGHT else "---" for h in HEADERS) + "|")
    for row in rows:
        print("| " + " | ".join(c.replace("|", "/") for c in cells(row)) + " |")
    print()
    for line in lines:
        print(f"* {line}")


def print_rich(rows: list[Row], lines: list[str], title: str) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # plain text
        print(title)
        for row in rows:
            print("  ".join(f"{c:>14}" for c in cells(row)))
        print("\n".join(lines))
        return
    table = Table(title=title)
    for header in HEADERS:
        table.add_column(header, justify="right" if header in RIGHT else "left")
    for i, row in enumerate(rows):
        if i and row.label.startswith("composite"):
            table.add_section()
        table.add_row(*cells(row))
    console = Console(width=220)
    console.print(table)
    for line in lines:
        console.print(line)


# --------------------------------------------------------------------------- main


@dataclass
class Report:
    """What :func:`main` measured (returned for tests and callers)."""

    rows: list[Row]
    lines: list[str] = field(default_factory=list)
    profile: str = ""


def quiet() -> None:
    """Lightning's info lines and the few-workers warning are not part of the table."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*`validation_step` but have no `val_dataloader`.*")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per variant (default 30)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default: steps / 5, 2 to 10)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (1 is steadier on a busy machine)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=128, help="image side in pixels")
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--composite-repeat", type=int, default=None, help="timed composite runs (default 5x steps)")
    parser.add_argument("--control", action="store_true", help="add an identical 2nd hand-written module (noise floor)")
    parser.add_argument("--json", default=None, help="also write every step's times to this JSON file")
    parser.add_argument("--profile", action="store_true", help="also cProfile framework steps and list where time goes")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table (for benchmarks/README.md)")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device available")
    if args.steps < 1:
        parser.error("--steps: at least 1")
    if args.rounds is None:
        args.rounds = max(2, min(10, args.steps // 5))
    args.rounds = max(1, min(args.rounds, args.steps))
    return args


def main(argv: list[str] | None = None) -> Report:
    args = parse_args(argv)
    quiet()
    if args.threads:
        torch.set_num_threads(args.threads)
    s = Settings(torch.device(args.device), args.batch, args.size, args.classes)
    command = f"python benchmarks/step_overhead.py {' '.join(sys.argv[1:] if argv is None else argv)}".strip()
    machine = describe(s.device, f"Lightning {L.__version__}")
    title = f"{datetime.date.today().isoformat()} | {machine} | {command}"
    results = measure_steps(s, args.steps, args.rounds, progress=not args.markdown, control=args.control)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "command": command,
                    "machine": machine,
                    **{n: [asdict(r) for r in rs] for n, rs in results.items()},
                },
                f,
            )
    rows = step_rows(results)
    (comp_ms, comp_cpu), (direct_ms, direct_cpu) = measure_composite(s, args.composite_repeat or 5 * args.steps)
    overhead = (comp_ms / direct_ms - 1, comp_cpu / direct_cpu - 1)
    rows += [
        Row(f"composite {COMPOSITE_SPEC} (fwd+bwd)", comp_ms, cpu_ms=comp_cpu, note=f"{overhead[0]:+.1%} vs direct"),
        Row("its three terms called directly", direct_ms, cpu_ms=direct_cpu),
    ]
    report = Report(rows, verdicts(rows, overhead, results))
    if args.profile:
        report.profile = profile_framework(s, max(3, args.steps // 2))
    shape = f"batch {s.batch} of 3x{s.size}x{s.size}, {s.classes} classes, U-Net/ResNet-18"
    if args.markdown:
        print(f"{title}\n\n{shape}\n")
        print_markdown(rows, report.lines)
    else:
        print_rich(rows, report.lines, f"{title}\n{shape}")
    if report.profile:
        print("\nframework functions, cumulative time per step (cProfile):\n" + report.profile)
    return report


if __name__ == "__main__":
    main()

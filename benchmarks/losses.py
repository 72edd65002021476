"""Forward+backward time and peak memory of every registered loss, beside its reference implementation.

Usage::

    python benchmarks/losses.py                      # every family, full shapes, CUDA if available
    python benchmarks/losses.py --quick --device cpu # smaller region/classification tensors, fewer repeats
    python benchmarks/losses.py --family overlap --repeat 20 --markdown

Every loss in ``losses.available()`` gets a row. Its inputs come from :data:`CASES` (loss name ->
:class:`Case`; ``"name/variant"`` keys add further rows for the same loss) or, failing that, from
its family's default in :data:`FAMILY_DEFAULTS`; a loss of a family with neither is listed as
"no case". Adding a loss to the benchmark is one line in :data:`CASES`.

Measured per case: the median wall time of ``loss(*inputs).backward()`` over ``--repeat`` runs
after warm-up (CUDA synchronised), and peak memory above what was allocated before the call:

* CUDA: ``torch.cuda.max_memory_allocated()`` after ``reset_peak_memory_stats()``, minus
  ``memory_allocated()`` before (exact, caching allocator).
* CPU: resident-set high-water mark, ``VmHWM`` in ``/proc/self/status`` after resetting it via
  ``/proc/self/clear_refs``, minus ``VmRSS`` before (Linux only; empty elsewhere). glibc's
  ``malloc_trim(0)`` runs first so memory freed by earlier cases leaves the RSS and cannot hide this
  case's allocations. An estimate (page granularity, allocator slack), good to a few MB.

The ratio column is ours / reference; the region bar is torch's fused ``F.cross_entropy`` on the
same logits (the design allows a region loss ~2x of it).
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

if __package__ in (None, ""):  # run as a script: benchmarks/ must not shadow the `losses` package
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]
    sys.path.insert(0, os.path.dirname(_here))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import losses  # noqa: E402
from benchmarks.machine import describe  # noqa: E402

Inputs = tuple[torch.Tensor, ...]


@dataclass
class Ctx:
    """What a factory needs: device and whether to use the quick (smaller) shapes."""

    device: torch.device
    quick: bool
    seed: int = 0

    def gen(self) -> torch.Generator:
        return torch.Generator(device="cpu").manual_seed(self.seed)


@dataclass
class Case:
    """Inputs for one benchmark row and the references timed on the same inputs.

    ``make(ctx)`` returns the loss inputs; the first one is what receives gradients.
    ``refs`` are ``(label, factory)`` pairs; ``factory()`` returns a callable taking the same inputs
    (built lazily so a missing optional library only drops that reference).
    """

    make: Callable[[Ctx], Inputs]
    params: dict[str, Any] = field(default_factory=dict)
    refs: list[tuple[str, Callable[[], Callable[..., torch.Tensor]]]] = field(default_factory=list)


# --------------------------------------------------------------------------- input factories


def _dense_shape(ctx: Ctx) -> tuple[int, int, int, int]:
    return (2, 21, 128, 128) if ctx.quick else (8, 21, 256, 256)


def seg_index(ctx: Ctx) -> Inputs:
    """Logits (N, 21, H, W) and class-index target (N, H, W)."""
    n, c, h, w = _dense_shape(ctx)
    g = ctx.gen()
    logits = torch.randn(n, c, h, w, generator=g).to(ctx.device).requires_grad_(True)
    return logits, torch.randint(0, c, (n, h, w), generator=g).to(ctx.device)


def seg_multilabel(ctx: Ctx) -> Inputs:
    """Logits (N, 21, H, W) and a one-hot float target of the same shape."""
    logits, target = seg_index(ctx)
    return logits, F.one_hot(target, logits.shape[1]).movedim(-1, 1).float()


def seg_binary(ctx: Ctx) -> Inputs:
    """Logits (N, 1, H, W) and a {0, 1} float target of the same shape."""
    n, _, h, w = _dense_shape(ctx)
    g = ctx.gen()
    logits = torch.randn(n, 1, h, w, generator=g).to(ctx.device).requires_grad_(True)
    return logits, (torch.rand(n, 1, h, w, generator=g) > 0.5).float().to(ctx.device)


def regression(ctx: Ctx) -> Inputs:
    """4096 samples x 32 outputs."""
    g = ctx.gen()
    return (
        torch.randn(4096, 32, generator=g).to(ctx.device).requires_grad_(True),
        torch.randn(4096, 32, generator=g).to(ctx.device),
    )


def positive_regression(ctx: Ctx) -> Inputs:
    """4096 x 32 non-negative values (for log1p losses)."""
    g = ctx.gen()
    return (
        (torch.rand(4096, 32, generator=g) * 10).to(ctx.device).requires_grad_(True),
        (torch.rand(4096, 32, generator=g) * 10).to(ctx.device),
    )


def quantile_forecast(ctx: Ctx) -> Inputs:
    """pred (4096, 32, 3) for quantiles 0.1/0.5/0.9 vs target (4096, 32)."""
    g = ctx.gen()
    return (
        torch.randn(4096, 32, 3, generator=g).to(ctx.device).requires_grad_(True),
        torch.randn(4096, 32, generator=g).to(ctx.device),
    )


def boxes(ctx: Ctx, n: int = 100_000) -> Inputs:
    """100k xyxy box pairs: targets in a 1000 px image, predictions jittered around them."""
    g = ctx.gen()
    xy = torch.rand(n, 2, generator=g) * 900
    wh = torch.rand(n, 2, generator=g) * 100 + 4
    target = torch.cat([xy, xy + wh], 1)
    pred = target + torch.randn(n, 4, generator=g) * 8
    return pred.to(ctx.device).requires_grad_(True), target.to(ctx.device)


def rotated_boxes(ctx: Ctx, n: int = 100_000) -> Inputs:
    """100k rotated (cx, cy, w, h, theta) box pairs."""
    g = ctx.gen()
    target = torch.cat(
        [torch.rand(n, 2, generator=g) * 900, torch.rand(n, 2, generator=g) * 100 + 4,
         (torch.rand(n, 1, generator=g) - 0.5) * 3.14],
        1,
    )
    pred = target + torch.randn(n, 5, generator=g) * torch.tensor([8.0, 8.0, 4.0, 4.0, 0.1])
    return pred.to(ctx.device).requires_grad_(True), target.to(ctx.device)


def margin_binary(ctx: Ctx) -> Inputs:
    """4096 scores and targets in {-1, 1}."""
    g = ctx.gen()
    return (
        torch.randn(4096, generator=g).to(ctx.device).requires_grad_(True),
        (torch.randint(0, 2, (4096,), generator=g) * 2 - 1).float().to(ctx.device),
    )


def classification_vector(ctx: Ctx) -> Inputs:
    """4096 x 100 logits and class indices (a plain classifier head)."""
    g = ctx.gen()
    return (
        torch.randn(4096, 100, generator=g).to(ctx.device).requires_grad_(True),
        torch.randint(0, 100, (4096,), generator=g).to(ctx.device),
    )


def images(ctx: Ctx) -> Inputs:
    """Images (16, 3, 256, 256) in [0, 1] (quick: (4, 3, 128, 128)); pred receives gradients."""
    shape = (4, 3, 128, 128) if ctx.quick else (16, 3, 256, 256)
    g = ctx.gen()
    return (
        torch.rand(shape, generator=g).to(ctx.device).requires_grad_(True),
        torch.rand(shape, generator=g).to(ctx.device),
    )


def diffusion(ctx: Ctx) -> Inputs:
    """Predicted and true noise like :func:`images` (standard normal) and each sample's alpha_bar in (0, 1)."""
    pred, _ = images(ctx)
    g = ctx.gen()
    noise = torch.randn(pred.shape, generator=g).to(ctx.device)
    alpha_bar = torch.rand(pred.shape[0], generator=g).clamp(0.01, 0.99).to(ctx.device)
    return pred, noise, alpha_bar


def vae_outputs(ctx: Ctx) -> Inputs:
    """Reconstruction and input like :func:`images`, plus a 128-d posterior (mu, logvar) per sample."""
    pred, target = images(ctx)
    g = ctx.gen()
    mu, logvar = (torch.randn(pred.shape[0], 128, generator=g).to(ctx.device) for _ in range(2))
    return pred, target, mu, logvar


# --------------------------------------------------------------------------- references


def _ce() -> Callable[..., torch.Tensor]:
    return F.cross_entropy


CE_BAR = ("torch F.cross_entropy", _ce)


def _smp(cls_name: str, **kw: Any) -> Callable[[], Callable[..., torch.Tensor]]:
    def factory() -> Callable[..., torch.Tensor]:
        import segmentation_models_pytorch.losses as smp_losses

        return getattr(smp_losses, cls_name)(mode="multiclass", **kw)

    return factory


def _monai(cls_name: str, **kw: Any) -> Callable[[], Callable[..., torch.Tensor]]:
    def factory() -> Callable[..., torch.Tensor]:
        import monai.losses

        crit = getattr(monai.losses, cls_name)(softmax=True, to_onehot_y=True, **kw)
        return lambda logits, target: crit(logits, target.unsqueeze(1))

    return factory


def _tv(fn_name: str) -> Callable[[], Callable[..., torch.Tensor]]:
    def factory() -> Callable[..., torch.Tensor]:
        import torchvision.ops

        fn = getattr(torchvision.ops, fn_name)
        return lambda pred, target: fn(pred, target, reduction="mean")

    return factory


def _f(fn: Callable[..., torch.Tensor], **kw: Any) -> Callable[[], Callable[..., torch.Tensor]]:
    return lambda: (lambda pred, target: fn(pred, target, **kw))


def _piq(fn_name: str, **kw: Any) -> Callable[[], Callable[..., torch.Tensor]]:
    def factory() -> Callable[..., torch.Tensor]:
        import piq

        fn = getattr(piq, fn_name)
        return lambda pred, target: 1.0 - fn(pred, target, data_range=1.0, **kw)

    return factory


# --------------------------------------------------------------------------- the case table

CASES: dict[str, Case] = {
    # regression
    "mae": Case(regression, refs=[("torch F.l1_loss", _f(F.l1_loss))]),
    "mse": Case(regression, refs=[("torch F.mse_loss", _f(F.mse_loss))]),
    "rmse": Case(regression, refs=[("sqrt(F.mse_loss)", lambda: lambda p, t: F.mse_loss(p, t).sqrt())]),
    "rmsle": Case(positive_regression),
    "huber": Case(regression, refs=[("torch F.huber_loss", _f(F.huber_loss))]),
    "smooth_l1": Case(regression, refs=[("torch F.smooth_l1_loss", _f(F.smooth_l1_loss))]),
    "quantile": Case(quantile_forecast, params={"quantiles": [0.1, 0.5, 0.9]}),
    # box overlap
    "giou": Case(boxes, refs=[("tv generalized_box_iou_loss", _tv("generalized_box_iou_loss"))]),
    "diou": Case(boxes, refs=[("tv distance_box_iou_loss", _tv("distance_box_iou_loss"))]),
    "ciou": Case(boxes, refs=[("tv complete_box_iou_loss", _tv("complete_box_iou_loss"))]),
    "alpha_iou/ciou": Case(boxes, params={"base": "ciou"}),
    "inner_iou/ciou": Case(boxes, params={"base": "ciou"}),
    "piou/v2": Case(boxes, params={"v2": True}),
    "gwd": Case(rotated_boxes),
    # classification
    "ce": Case(seg_index, refs=[CE_BAR]),
    "bce": Case(
        seg_multilabel,
        params={"mode": "multilabel"},
        refs=[("torch F.bce_with_logits", _f(F.binary_cross_entropy_with_logits)), CE_BAR],
    ),
    "balanced_ce": Case(seg_binary, refs=[("torch F.bce_with_logits", _f(F.binary_cross_entropy_with_logits))]),
    "class_balanced": Case(seg_index, params={"samples_per_class": [100 * (k + 1) for k in range(21)]}, refs=[CE_BAR]),
    "focal": Case(seg_index, refs=[("smp FocalLoss", _smp("FocalLoss")), CE_BAR]),
    "focal/multilabel": Case(
        seg_multilabel,
        params={"mode": "multilabel"},
        refs=[("tv sigmoid_focal_loss", _tv("sigmoid_focal_loss")), CE_BAR],
    ),
    # region
    "dice": Case(seg_index, refs=[("smp DiceLoss", _smp("DiceLoss")), ("monai DiceLoss", _monai("DiceLoss")), CE_BAR]),
    "jaccard": Case(seg_index, refs=[("smp JaccardLoss", _smp("JaccardLoss")), CE_BAR]),
    "tversky": Case(
        seg_index, refs=[("smp TverskyLoss", _smp("TverskyLoss")), ("monai TverskyLoss", _monai("TverskyLoss")), CE_BAR]
    ),
    "generalized_dice": Case(seg_index, refs=[("monai GeneralizedDiceLoss", _monai("GeneralizedDiceLoss")), CE_BAR]),
    "lovasz": Case(seg_index, refs=[("smp LovaszLoss", _smp("LovaszLoss")), CE_BAR]),
    # image
    "ssim": Case(images, refs=[("piq ssim", _piq("ssim", downsample=False))]),
    "ms_ssim": Case(images, refs=[("piq multi_scale_ssim", _piq("multi_scale_ssim"))]),
    "total_variation": Case(images),
    "cycle_consistency": Case(images, refs=[("torch F.l1_loss", _f(F.l1_loss))]),
    "identity": Case(images, refs=[("torch F.l1_loss", _f(F.l1_loss))]),
    "noise_prediction": Case(diffusion, refs=[("torch F.mse_loss", lambda: (lambda p, n, a: F.mse_loss(p, n)))]),
    "noise_prediction/min_snr": Case(diffusion, params={"weighting": "min_snr"}),
    "vae": Case(vae_outputs),
    "perceptual": Case(images),  # EfficientNet-Lite0 (packaged ImageNet weights), blocks 2 and 4
    "style": Case(images),
}

# families whose call convention is uniform: any loss without its own case uses these inputs
FAMILY_DEFAULTS: dict[str, Case] = {
    "regression": Case(regression),
    "overlap": Case(boxes),
    "region": Case(seg_index, refs=[CE_BAR]),
    "compound": Case(seg_index, refs=[CE_BAR]),
    "classification": Case(seg_index, refs=[CE_BAR]),
    "margin": Case(margin_binary),
}


def cases_for(name: str, family: str) -> list[tuple[str, Case]]:
    """``(row label, case)`` pairs for a loss: its own cases, else its family default, else none."""
    own = [(key, case) for key, case in CASES.items() if key.split("/")[0] == name]
    if own:
        return own
    return [(name, FAMILY_DEFAULTS[family])] if family in FAMILY_DEFAULTS else []


# --------------------------------------------------------------------------- measurement


def _trim_malloc() -> None:
    """Return freed heap memory to the OS (glibc ``malloc_trim``) so the next RSS peak is the case's own."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _rss_mb() -> tuple[float, float] | None:
    try:
        values = {}
        with open("/proc/self/status") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    values[key] = int(rest.split()[0]) / 1024
        return values["VmRSS"], values["VmHWM"]
    except (OSError, KeyError, ValueError):
        return None


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _step(fn: Callable[..., torch.Tensor], inputs: Inputs) -> None:
    for t in inputs:
        t.grad = None
    out = fn(*inputs)
    (out if out.dim() == 0 else out.sum()).backward()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory(fn: Callable[..., torch.Tensor], inputs: Inputs) -> float | None:
    """Peak MB of one fwd+bwd above what was allocated before it (see the module docstring)."""
    device = inputs[0].device
    for t in inputs:
        t.grad = None
    if device.type == "cuda":
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        _step(fn, inputs)
        _sync(device)
        peak = (torch.cuda.max_memory_allocated(device) - base) / 2**20
    else:
        _trim_malloc()
        before = _rss_mb()
        if before is None or not _reset_hwm():
            return None
        _step(fn, inputs)
        after = _rss_mb()
        peak = None if after is None else max(0.0, after[1] - before[0])
    for t in inputs:
        t.grad = None
    return peak


def measure(
    fns: list[Callable[..., torch.Tensor]], inputs: Inputs, repeat: int, warmup: int, min_time: float = 0.0
) -> list[float]:
    """Median fwd+bwd milliseconds of each of ``fns`` on the same inputs.

    The functions are timed interleaved (ours, ref1, ref2, ours, ...), so load from other processes
    on a shared machine hits all of them alike and the ratios stay meaningful. Fast cases get more
    than ``repeat`` runs: enough to fill ``min_time`` seconds (at most 1000).
    """
    device = inputs[0].device
    start = time.perf_counter()
    for _ in range(max(1, warmup)):
        for fn in fns:
            _step(fn, inputs)
    _sync(device)
    once = (time.perf_counter() - start) / max(1, warmup)
    repeat = max(repeat, min(1000, int(min_time / max(once, 1e-6))))
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for fn, bucket in zip(fns, times):
            start = time.perf_counter()
            _step(fn, inputs)
            _sync(device)
            bucket.append((time.perf_counter() - start) * 1e3)
    for t in inputs:
        t.grad = None
    return [statistics.median(bucket) for bucket in times]


@dataclass
class Row:
    label: str
    family: str
    shape: str = ""
    ours_ms: float | None = None
    ref: str = ""
    ref_ms: float | None = None
    peak_mb: float | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        return None if self.ours_ms is None or self.ref_ms is None else self.ours_ms / self.ref_ms


def _shape(inputs: Inputs) -> str:
    return " vs ".join("x".join(map(str, t.shape)) for t in inputs)


def run_case(
    label: str, name: str, family: str, case: Case, ctx: Ctx, repeat: int, warmup: int, min_time: float
) -> list[Row]:
    try:
        crit = losses.build(name, **case.params).to(ctx.device)
        inputs = case.make(ctx)
        _step(crit, inputs)
    except Exception as err:  # a loss still being written must not stop the table
        return [Row(label, family, note=f"error: {type(err).__name__}: {str(err).splitlines()[0][:80]}")]
    refs, failed = [], []
    for ref_label, factory in case.refs:
        try:
            fn = factory()
            _step(fn, inputs)
            refs.append((ref_label, fn))
        except Exception as err:
            failed.append(f"{ref_label} failed: {type(err).__name__}: {str(err).splitlines()[0][:60]}")
    ours_ms, *ref_ms = measure([crit, *(fn for _, fn in refs)], inputs, repeat, warmup, min_time)
    rows = [Row(label, family, _shape(inputs), ours_ms, peak_mb=peak_memory(crit, inputs), note="; ".join(failed))]
    for i, ((ref_label, _), ms) in enumerate(zip(refs, ref_ms)):
        row = rows[0] if i == 0 else Row("", family, "", ours_ms)
        row.ref, row.ref_ms = ref_label, ms
        if i:
            rows.append(row)
    return rows


def collect(args: argparse.Namespace) -> list[Row]:
    device = torch.device(args.device)
    ctx = Ctx(device, args.quick)
    rows: list[Row] = []
    order = {family: i for i, family in enumerate(losses.FAMILIES)}
    names = sorted(losses.available(family=args.family), key=lambda n: (order[losses.get(n).family], n))
    if args.only:
        names = [n for n in names if n in args.only]
    for name in names:
        family = losses.get(name).family
        cases = cases_for(name, family)
        if not cases:
            rows.append(Row(name, family, note="no case"))
            continue
        for label, case in cases:
            rows.extend(run_case(label, name, family, case, ctx, args.repeat, args.warmup, args.min_time))
            if not args.markdown:
                print(f"  {label:<24} done", file=sys.stderr, flush=True)
    return rows


# --------------------------------------------------------------------------- output


def _fmt(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)


def _cells(row: Row) -> list[str]:
    ratio = row.ratio
    flag = " !" if ratio is not None and ratio > 1.2 and not row.ref.startswith("torch F.cross_entropy") else ""
    return [
        row.label,
        row.shape,
        _fmt(row.ours_ms if row.label else None, ".2f"),
        row.ref,
        _fmt(row.ref_ms, ".2f"),
        _fmt(ratio, ".2f") + flag,
        _fmt(row.peak_mb if row.label else None, ".1f"),
        row.note,
    ]


HEADERS = ["loss", "shape", "ours ms", "reference", "ref ms", "ratio", "peak MB", "note"]


def print_rich(rows: list[Row], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_lines=False)
    for header in HEADERS:
        table.add_column(header, justify="right" if header in ("ours ms", "ref ms", "ratio", "peak MB") else "left")
    family = None
    for row in rows:
        if row.family != family and family is not None:
            table.add_section()
        family = row.family
        table.add_row(*_cells(row))
    Console(width=200).print(table)


def print_markdown(rows: list[Row]) -> None:
    print("| " + " | ".join(HEADERS) + " |")
    print("|" + "|".join("---:" if h in ("ours ms", "ref ms", "ratio", "peak MB") else "---" for h in HEADERS) + "|")
    for row in rows:
        print("| " + " | ".join(c.replace("|", "/") for c in _cells(row)) + " |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--family", choices=losses.FAMILIES, default=None, help="only this family")
    parser.add_argument("--only", nargs="*", default=None, help="only these loss names")
    parser.add_argument("--repeat", type=int, default=None, help="timed runs per case (default 10, --quick 3)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default torch's; 1 is steadier on a busy machine)"
    )
    parser.add_argument("--min-time", type=float, default=1.0, help="seconds of timed runs per case at least")
    parser.add_argument(
        "--quick", action="store_true", help="region/classification 2x21x128x128 instead of 8x21x256x256"
    )
    parser.add_argument("--markdown", action="store_true", help="print a markdown table (for benchmarks/README.md)")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device available")
    if args.repeat is None:
        args.repeat = 3 if args.quick else 10
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    header = (
        f"{datetime.date.today().isoformat()} | {describe(device)} | "
        f"python benchmarks/losses.py {' '.join(sys.argv[1:] if argv is None else argv)}"
    )
    rows = collect(args)
    if args.markdown:
        print(header + "\n")
        print_markdown(rows)
    else:
        print_rich(rows, header)


if __name__ == "__main__":
    main()

"""Face head scaling: one forward+backward of an angular-margin head vs class count and Partial FC rate.

Usage::

    python benchmarks/face_head.py                                  # 10k, 100k, 1M classes x rate 1.0, 0.1 on CPU
    python benchmarks/face_head.py --classes 10000 --steps 3        # a quick look
    python benchmarks/face_head.py --device cuda --batch 128        # on a GPU
    python benchmarks/face_head.py --markdown                       # the table for benchmarks/README.md

What is measured
----------------
For each class count C and Partial FC ``sample_rate``, a fresh subprocess builds the registry's
``arcface`` head (``num_classes=C``, ``embedding_size=--dim``; its C x D float32 weight matrix is
the memory that matters) and times ``--steps`` training steps of the head alone: the loss on a
random batch of ``--batch`` embeddings (``--batch`` distinct labels, requires_grad, as a backbone
would hand them over) and ``backward()`` into the weight and the embeddings, with the weight's
gradient set to ``None`` before each step (as ``zero_grad`` does), so allocating it is part of the
step. One warm-up step is discarded. Reported per configuration:

* **step ms** / **CPU ms**: median wall and process CPU time (``time.process_time``, which other
  processes on a shared machine disturb less) per step; CUDA is synchronised around each step;
* **weight MB**: the C x D float32 matrix;
* **peak MB**: on CPU the process's peak resident memory (``ru_maxrss``) minus its resident memory
  just before the first step (the weight already counted there): what a step adds at its peak
  (gradient, normalised weight copy, logits); on CUDA ``torch.cuda.max_memory_allocated`` minus the
  memory allocated before the first step.

``sample_rate`` < 1 computes the logits and the normalised weights of the sampled classes only
(every positive of the batch plus random negatives); the weight's gradient is still a dense C x D
tensor (PyTorch's indexing backward), which the optimiser then updates as a whole. insightface's
Partial FC keeps a separate sub-matrix parameter to avoid that: it reports 1.4M identities at 4738
samples/s with Partial FC 0.1 vs 1672 samples/s data-parallel on 8 V100s, and 6.0 GB vs 32 GB per
GPU, with the matrix sharded over the 8 GPUs (here: one process, no sharding).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _rss_mb() -> float:
    """Current resident memory of this process in MB (Linux /proc)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def measure(classes: int, rate: float, dim: int, batch: int, steps: int, device: str, threads: int) -> dict:
    """Time ``steps`` forward+backward steps of an arcface head in this process (see the module doc)."""
    import torch

    sys.path.insert(0, str(ROOT))
    import losses

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    head = losses.build("arcface", num_classes=classes, embedding_size=dim, sample_rate=rate).to(device).train()
    embeddings = torch.randn(batch, dim, device=device, requires_grad=True)
    labels = torch.randperm(classes, device=device)[:batch]
    cuda = device.startswith("cuda")

    def step() -> tuple[float, float]:
        head.weight.grad, embeddings.grad = None, None
        if cuda:
            torch.cuda.synchronize()
        wall, cpu = time.perf_counter(), time.process_time()
        head(embeddings, labels).backward()
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - wall, time.process_time() - cpu

    before = torch.cuda.memory_allocated() if cuda else _rss_mb()
    step()  # warm-up (allocator, kernels)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times = [step() for _ in range(steps)]
    peak = (torch.cuda.max_memory_allocated() - before) / 2**20 if cuda else (
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before
    )
    return {
        "classes": classes,
        "sample_rate": rate,
        "step_ms": 1000 * statistics.median(t for t, _ in times),
        "cpu_ms": 1000 * statistics.median(c for _, c in times),
        "weight_mb": classes * dim * 4 / 2**20,
        "peak_mb": peak,
    }


def table(rows: list[dict], markdown: bool) -> str:
    header = ("classes", "sample_rate", "step ms", "CPU ms", "weight MB", "peak MB (step)")
    lines = [[f"{r['classes']:,}", f"{r['sample_rate']:g}", f"{r['step_ms']:.0f}", f"{r['cpu_ms']:.0f}",
              f"{r['weight_mb']:.0f}", f"{r['peak_mb']:.0f}"] for r in rows]
    if markdown:
        out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return "\n".join(out + ["| " + " | ".join(line) + " |" for line in lines])
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in [header, *lines])


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--classes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--rates", type=float, nargs="+", default=[1.0, 0.1])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--one", action="store_true", help="(internal) measure one configuration here")
    args = parser.parse_args(argv)
    if args.one:
        row = measure(args.classes[0], args.rates[0], args.dim, args.batch, args.steps, args.device, args.threads)
        print(json.dumps(row))
        return [row]
    rows = []
    for classes in args.classes:
        for rate in args.rates:
            command = [sys.executable, __file__, "--one", "--classes", str(classes), "--rates", str(rate),
                       "--dim", str(args.dim), "--batch", str(args.batch), "--steps", str(args.steps),
                       "--device", args.device, "--threads", str(args.threads)]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"measured {classes} classes, sample_rate {rate}", file=sys.stderr, flush=True)
    print(table(rows, args.markdown))
    return rows


if __name__ == "__main__":
    main()

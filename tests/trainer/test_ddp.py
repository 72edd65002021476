"""2-process CPU DDP (gloo) computes what a 1-process run computes on the same global batch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from trainer.plots import read_metrics

REPO = Path(__file__).resolve().parents[2]
# GroupNorm: batch statistics would otherwise differ between 2x2 and 1x4 samples (no SyncBN on CPU).
# Plain SGD with a small step: Adam's m/sqrt(v) turns float-rounding differences of near-zero
# gradients (all-reduce order) into lr-sized steps, which would hide real discrepancies.
COMMON = [
    "model.norm=group",
    "loss.seg=ce",
    "loss.balance=fixed",
    "trainer.max_epochs=1",
    "optim.scheduler=none",
    "optim.name=sgd",
    "optim.lr=0.01",
    "optim.weight_decay=0",
]


def run_cli(config: Path, *overrides: str) -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "train.py"), "fit", "-c", str(config), *COMMON, *overrides],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


@pytest.mark.slow
def test_ddp_two_processes_match_one_process(tiny_segmentation_config):
    runs = tiny_segmentation_config.parent / "runs"
    run_cli(tiny_segmentation_config, "run.name=single", "data.batch_size=4")
    run_cli(
        tiny_segmentation_config,
        "run.name=ddp",
        "data.batch_size=2",
        "trainer.devices=2",
        "trainer.strategy=ddp",
        "trainer.accelerator=cpu",
    )

    single = torch.load(runs / "single/version_0/checkpoints/last.ckpt", map_location="cpu", weights_only=False)
    ddp = torch.load(runs / "ddp/version_0/checkpoints/last.ckpt", map_location="cpu", weights_only=False)
    assert single["global_step"] == ddp["global_step"] == 4  # 16 samples, global batch 4
    for name, value in single["state_dict"].items():
        torch.testing.assert_close(ddp["state_dict"][name], value, rtol=1e-3, atol=1e-5, msg=name)

    single_metrics = read_metrics(runs / "single/version_0/logs")
    ddp_metrics = read_metrics(runs / "ddp/version_0/logs")
    for key in ("val/loss/seg", "val/miou", "val/dice"):
        assert [v for _, v in ddp_metrics[key]] == pytest.approx(
            [v for _, v in single_metrics[key]], rel=1e-3, abs=1e-4
        )

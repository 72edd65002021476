"""Smoke test of benchmarks/step_overhead.py: it runs end to end and reports the three variants (no timing asserted)."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "step_overhead.py"


def load_script(monkeypatch):
    spec = importlib.util.spec_from_file_location("step_overhead_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up there
    monkeypatch.setattr(sys, "path", list(sys.path))  # the script puts the repository root first
    spec.loader.exec_module(module)
    return module


def test_step_overhead_runs_and_reports_three_variants(capsys, monkeypatch):
    bench = load_script(monkeypatch)
    argv = ["--device", "cpu", "--threads", "1", "--steps", "2", "--rounds", "1", "--batch", "2", "--size", "32"]
    report = bench.main([*argv, "--composite-repeat", "2", "--markdown"])
    labels = [row.label for row in report.rows]
    assert labels[:3] == ["framework (SegmentationTask)", "hand-written Lightning", "plain PyTorch loop"]
    assert len(labels) == 5  # + the composite and its terms called directly
    for row in report.rows[:3]:
        assert row.step_ms > 0 and row.epoch_ms > 0 and not math.isnan(row.vs_lightning[0])
    assert report.rows[1].vs_lightning == (1.0, 1.0, 1.0) and report.rows[2].vs_plain == (1.0, 1.0, 1.0)
    assert len(report.lines) == 2 and "target <= 1.03x" in report.lines[0]
    out = capsys.readouterr().out
    assert "| framework (SegmentationTask) |" in out and "| plain PyTorch loop |" in out

"""``train.py compare``: cells run once, a second invocation skips them, an interrupted cell resumes, a failed
one is reported while the rest run, and the leaderboard (md, csv, curves, bars) ranks the candidates."""

from __future__ import annotations

import csv

import pytest

import trainer.cli
from trainer.cli import main as cli_main  # the real entry point (the tests patch trainer.cli.main, used per cell)
from trainer.compare import plan
from trainer.config import ConfigError

BUDGET = ["trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1"]
LOSSES = ["dice", "dice + ce", "focal_tversky"]


def _compare(config, name: str, *extra: str) -> int:
    return cli_main(["compare", "-c", str(config), "--slot", "seg", "--losses", *LOSSES, "--seeds", "2",
                             "--name", name, *extra, *BUDGET])  # fmt: skip


def _count_fits(monkeypatch, fail_when: str | None = None) -> list[list[str]]:
    """Record every fit the comparison starts (and make the ones whose argv contains ``fail_when`` fail)."""
    calls: list[list[str]] = []
    real = trainer.cli.main

    def main(argv):
        calls.append(list(argv))
        return 1 if fail_when and fail_when in " ".join(argv) else real(argv)

    monkeypatch.setattr(trainer.cli, "main", main)
    return calls


def test_plan_expands_candidates_grid_and_seeds():
    cells = plan(["dice", "focal"], 2, "focal.gamma=0,2")
    assert [(c.label, c.seed) for c in cells] == [
        ("dice", 0), ("dice", 1), ("focal(gamma=0)", 0), ("focal(gamma=0)", 1), ("focal(gamma=2)", 0),
        ("focal(gamma=2)", 1),
    ]
    assert cells[2].spec == "{name: focal, params: {gamma: 0}}" and cells[2].slug == "focal_gamma=0"
    with pytest.raises(ConfigError, match="--grid: 'tversky' is not one of the candidates"):
        plan(["dice"], 1, "tversky.alpha=0.3")


def test_compare_runs_skips_resumes_and_ranks(tmp_path, tiny_segmentation_config, monkeypatch):
    calls = _count_fits(monkeypatch)
    assert _compare(tiny_segmentation_config, "three") == 0
    assert len(calls) == 6 and all(c[0] == "fit" and "--resume" not in c for c in calls)
    root = tmp_path / "runs" / "compare" / "three"
    assert {p.name for p in root.iterdir()} >= {"leaderboard.md", "leaderboard.csv", "curves.png", "final.png",
                                                "dice", "dice_ce", "focal_tversky"}  # fmt: skip
    with open(root / "leaderboard.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(r["candidate"] for r in rows) == sorted(LOSSES) and all(r["seeds"] == "2/2" for r in rows)
    means = [float(r["val/miou_mean"]) for r in rows]
    assert means == sorted(means, reverse=True)  # ranked by the task's monitor, best first
    assert "| 1 |" in (root / "leaderboard.md").read_text()

    calls.clear()
    assert _compare(tiny_segmentation_config, "three") == 0
    assert calls == []  # every cell finished: nothing runs again

    (root / "dice" / "seed_1" / "done.json").unlink()  # as if killed after its checkpoint, before finishing
    assert _compare(tiny_segmentation_config, "three") == 0
    assert calls == [["fit", "--resume", str(root / "dice" / "seed_1" / "version_0")]]
    assert not (root / "dice" / "seed_1" / "version_1").exists()


def test_a_failed_cell_is_reported_and_the_others_run(tmp_path, tiny_segmentation_config, monkeypatch):
    calls = _count_fits(monkeypatch, fail_when="focal_tversky seed=1")
    assert _compare(tiny_segmentation_config, "one_fails") == 0
    assert len(calls) == 6
    text = (tmp_path / "runs" / "compare" / "one_fails" / "leaderboard.md").read_text()
    row = next(line for line in text.splitlines() if "| focal_tversky |" in line)
    assert row.endswith("| 1/2 | unfinished seeds [1] |")

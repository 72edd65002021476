"""The command line: fit writes a complete run folder; bad configs stop with one message."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from omegaconf import OmegaConf

from trainer.build import validate
from trainer.cli import main
from trainer.config import load_config
from trainer.plots import read_metrics

REPO = Path(__file__).resolve().parents[2]
SHAPES = REPO / "configs" / "segmentation" / "shapes.yaml"


def test_fit_writes_run_folder_and_logs_every_term(tiny_segmentation_config):
    # log_every_n_steps above the 4 steps of an epoch is lowered to them: the step curve still has points
    overrides = ["loss.seg=dice + 0.5*focal", "trainer.max_epochs=1", "trainer.log_every_n_steps=50"]
    assert main(["fit", "-c", str(tiny_segmentation_config), *overrides]) == 0
    run_dir = tiny_segmentation_config.parent / "runs" / "tiny" / "version_0"
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert (run_dir / "plots" / "loss_curves.png").is_file()
    metrics = read_metrics(run_dir / "logs")
    for key in ("train/loss/seg_epoch", "train/loss/seg/dice_epoch", "train/loss/seg/focal_epoch", "val/miou"):
        assert key in metrics, sorted(metrics)
    assert len(metrics["train/loss/seg_step"]) == 1
    # the saved config alone reproduces the run's loss and settings
    saved = validate(load_config(run_dir / "config.yaml"))
    assert saved["loss"]["seg"] == "dice + 0.5*focal"
    assert saved["trainer"]["max_epochs"] == 1
    assert saved == validate(OmegaConf.load(run_dir / "config.yaml"))


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "train.py"), *args], cwd=REPO, capture_output=True, text=True, timeout=120
    )


def test_config_mistakes_stop_with_one_message():
    # the entry point as a user runs it (tests/trainer/test_bad_invocations.py has the table, in-process)
    result = run_cli("fit", "-c", str(SHAPES), "loss.seg=dcie")
    assert result.returncode == 2
    assert "unknown loss 'dcie'. Did you mean 'dice'" in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr + result.stdout


def test_losses_command_lists_catalogue_and_describes_one():
    assert main(["losses", "--family", "region"]) == 0
    result = run_cli("losses", "dice")
    assert result.returncode == 0
    assert "formula" in result.stdout and "reference" in result.stdout and "[region]" in result.stdout


def test_losses_for_a_task_lists_only_what_its_slots_accept(capsys):
    import losses
    from tasks.segmentation import SegmentationTask

    assert main(["losses", "--task", "segmentation"]) == 0
    rows = [line.split("│") for line in capsys.readouterr().out.splitlines() if line.count("│") == 5]
    listed = {cells[3].strip() for cells in rows if cells[3].strip()}
    accepted = set()
    for name in losses.available():
        try:
            losses.check_slot_spec(name, SegmentationTask.LOSS_SLOTS["seg"], "loss.seg")
            accepted.add(name)
        except losses.LossConfigError:
            pass
    assert listed == accepted and "dice" in listed and "giou" not in listed
    assert main(["losses", "--task", "segmentaton"]) == 2
    assert main(["losses", "--task", "segmentation", "--family", "overlap"]) == 2
    assert "no slot of segmentation takes overlap losses" in " ".join(capsys.readouterr().err.split())


def test_test_and_predict_use_the_runs_checkpoint(tiny_segmentation_config):
    assert main(["fit", "-c", str(tiny_segmentation_config), "trainer.max_epochs=1"]) == 0
    run_dir = tiny_segmentation_config.parent / "runs" / "tiny" / "version_0"
    assert main(["test", "--ckpt", str(run_dir)]) == 0
    assert main(["predict", "--ckpt", str(run_dir)]) == 0
    written = sorted((run_dir / "predictions" / "val" / "masks").glob("*.png"))
    assert len(written) == 8  # one class map per validation image (no data.predict_dir), named after it
    assert (run_dir / "logs_test" / "metrics.csv").is_file()
    assert not list((run_dir / "logs").glob("metrics.part*.csv"))  # the training log is untouched


def test_resume_without_an_earlier_run_is_a_clear_error(tiny_segmentation_config, capsys):
    # `--resume key=value`: the override is not mistaken for a run folder
    assert main(["fit", "-c", str(tiny_segmentation_config), "--resume", "run.name=never_ran"]) == 2
    assert "no earlier run under" in " ".join(capsys.readouterr().err.split())


def test_loss_input_errors_during_training_end_in_one_message(monkeypatch, capsys):
    import losses
    import trainer.cli as cli

    def bad_stage(args):
        raise losses.LossInputError("dice(logits, target): expected target (N, H, W), got (N, 3, H, W)")

    monkeypatch.setattr(cli, "_run_stage", bad_stage)
    assert cli.main(["fit", "-c", str(SHAPES)]) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "loss input error: dice(logits, target): expected target" in err and "LOSSLAB_DEBUG" in err


def test_building_a_run_prints_no_cloud_logger_advert(tmp_path, tiny_segmentation_config):
    import logging

    from trainer.build import build

    class Keep(logging.Handler):
        def __init__(self) -> None:
            super().__init__(logging.INFO)
            self.messages: list[str] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.messages.append(record.getMessage())

    lightning_info, kept = logging.getLogger("lightning.pytorch.utilities.rank_zero"), Keep()
    level = lightning_info.level
    lightning_info.addHandler(kept)
    lightning_info.setLevel(logging.INFO)
    try:
        build(validate(load_config(tiny_segmentation_config)), tmp_path / "run")
    finally:
        lightning_info.removeHandler(kept)
        lightning_info.setLevel(level)
    assert any("GPU available" in m for m in kept.messages)  # Lightning's own notices still pass
    assert not any("litlogger" in m for m in kept.messages)

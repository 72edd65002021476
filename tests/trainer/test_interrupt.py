"""SIGTERM / Ctrl-C stop a run with a checkpoint that resumes exactly; checkpoints are written atomically."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch

from trainer.build import build
from trainer.checkpointing import AtomicCheckpointIO, CheckpointOnInterrupt, LastCheckpoint
from trainer.cli import main
from trainer.plots import read_metrics

REPO = Path(__file__).resolve().parents[2]

# `train.py fit` with one addition: after training step 6 (epoch 1, batch 2 of 4) the process sends SIGTERM
# to its whole process group, DataLoader workers included, as SLURM or `timeout` pre-empting the job would
SIGTERM_AT_STEP_6 = textwrap.dedent(
    """
    import os, signal, sys
    import lightning as L
    from trainer import cli
    from trainer.build import build

    class Terminate(L.Callback):
        def on_train_batch_end(self, trainer, *args):
            if trainer.global_step == 6:
                os.killpg(os.getpgrp(), signal.SIGTERM)

    def build_and_terminate(*args, **kwargs):
        objects = build(*args, **kwargs)
        objects.trainer.callbacks.append(Terminate())
        return objects

    cli.build = build_and_terminate
    sys.exit(cli.main(sys.argv[1:]))
    """
)


def _weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    return torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]


@pytest.mark.slow  # a subprocess importing torch and Lightning, plus two tiny fits in-process
def test_sigterm_saves_last_checkpoint_and_the_resumed_run_matches_an_uninterrupted_one(
    tmp_path, tiny_segmentation_config
):
    script = tmp_path / "fit_and_terminate.py"
    script.write_text(SIGTERM_AT_STEP_6)
    done = subprocess.run(  # a session of its own: the signal reaches the run and its 2 loader workers only
        [sys.executable, str(script), "fit", "-c", str(tiny_segmentation_config), "run.name=interrupted",
         "data.num_workers=2"],
        cwd=REPO, capture_output=True, text=True, timeout=300, start_new_session=True,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 128 + 15, output  # 128 + SIGTERM: a scheduler sees an interrupted job
    run_dir = tmp_path / "runs" / "interrupted" / "version_0"
    last = run_dir / "checkpoints" / "last.ckpt"
    assert "SIGTERM: stopped at step 6; saved" in output and f"fit --resume {run_dir}" in output, output
    state = torch.load(last, map_location="cpu", weights_only=False)
    assert (state["global_step"], state["epoch"]) == (6, 1)  # mid-epoch, at the step boundary
    assert not list(run_dir.glob("checkpoints/*.tmp-*"))
    assert [p.name for p in run_dir.glob("checkpoints/last*.ckpt")] == ["last.ckpt"]

    assert main(["fit", "--resume", str(run_dir)]) == 0
    assert main(["fit", "-c", str(tiny_segmentation_config), "run.name=reference", "data.num_workers=2"]) == 0
    reference = _weights(tmp_path / "runs" / "reference" / "version_0" / "checkpoints" / "last.ckpt")
    assert [p.name for p in run_dir.glob("checkpoints/last*.ckpt")] == ["last.ckpt"]  # overwritten, no last-v1
    resumed = _weights(last)
    assert reference.keys() == resumed.keys()
    for name, value in resumed.items():  # model, loss state (uncertainty log-variances) and buffers
        torch.testing.assert_close(value, reference[name], rtol=1e-5, atol=1e-6, msg=name)
    resumed_log = read_metrics(run_dir / "logs")  # the pre-interrupt part and the resumed part
    reference_log = read_metrics(tmp_path / "runs" / "reference" / "version_0" / "logs")
    for key in ("val/miou", "val/loss/seg", "train/loss/seg_epoch"):  # the final metrics of both runs
        assert [epoch for epoch, _ in resumed_log[key]] == [epoch for epoch, _ in reference_log[key]] == [0, 1]
        assert resumed_log[key][-1][1] == pytest.approx(reference_log[key][-1][1], rel=1e-4, abs=1e-6), key


class SignalAt(L.Callback):
    """Send this process ``signum`` after training step ``step`` (or in ``setup``, before any step, when None)."""

    def __init__(self, signum: int, step: int | None) -> None:
        self.signum, self.step, self.last_before = signum, step, None

    def setup(self, trainer, pl_module, stage) -> None:
        if self.step is None:
            os.kill(os.getpid(), self.signum)

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step == self.step:
            last = Path(trainer.default_root_dir) / "checkpoints" / "last.ckpt"
            self.last_before = torch.load(last, map_location="cpu", weights_only=False)["global_step"]
            os.kill(os.getpid(), self.signum)


def test_ctrl_c_writes_last_checkpoint_and_prints_the_resume_command(tmp_path, tiny_segmentation_config, monkeypatch,
                                                                     capsys):  # fmt: skip
    from trainer import cli

    signaller = SignalAt(signal.SIGINT, step=6)  # epoch 1, batch 2 of 4

    def build_and_signal(*args, **kwargs):
        objects = build(*args, **kwargs)
        objects.trainer.callbacks.append(signaller)
        return objects

    monkeypatch.setattr(cli, "build", build_and_signal)
    code = main(["fit", "-c", str(tiny_segmentation_config)])
    output = capsys.readouterr().err
    run_dir = tmp_path / "runs" / "tiny" / "version_0"
    assert code == 130, output  # 128 + SIGINT
    assert signaller.last_before == 4  # last.ckpt of the end of epoch 0 was there before the interrupt
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 6
    assert "SIGINT: stopped at step 6; saved" in output and f"python train.py fit --resume {run_dir}`" in output
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Ctrl-C works again afterwards

    signaller.step = None  # Ctrl-C while the data is set up: nothing trained, no run folder left behind
    code = main(["fit", "-c", str(tiny_segmentation_config), "run.name=early"])
    output = capsys.readouterr().err
    assert code == 130 and "stopped before the first training step; nothing to resume" in output, output
    assert not (tmp_path / "runs" / "early").exists()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_first_ctrl_c_stops_at_the_step_boundary_and_a_second_aborts():
    stopper = CheckpointOnInterrupt(LastCheckpoint("unused/last.ckpt"))
    trainer = SimpleNamespace(_signal_connector=SimpleNamespace(received_sigterm=False))
    stopper._trainer = trainer
    stopper._on_sigint(2, None)
    assert trainer._signal_connector.received_sigterm and stopper.signal == "SIGINT"
    with pytest.raises(KeyboardInterrupt):
        stopper._on_sigint(2, None)


def test_a_failed_save_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    target = tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"step": torch.tensor(1)}, target)

    def crash_mid_write(obj, handle):
        handle.write(b"PK\x03\x04 half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", crash_mid_write)
    with pytest.raises(OSError, match="No space left"):
        io.save_checkpoint({"step": torch.tensor(2)}, target)
    monkeypatch.undo()
    assert torch.load(target, weights_only=False)["step"].item() == 1
    assert [p.name for p in target.parent.iterdir()] == ["last.ckpt"]  # no partial file left behind

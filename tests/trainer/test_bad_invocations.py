"""Mistaken invocations end in one message naming the config key, exit code 2, no traceback, no run folder."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from trainer.cli import main

REPO = Path(__file__).resolve().parents[2]
SEGMENTATION = str(REPO / "configs" / "segmentation" / "shapes.yaml")
DETECTION = str(REPO / "configs" / "detection" / "shapes_fcos.yaml")
FACE = str(REPO / "configs" / "face" / "synthetic.yaml")
TRANSLATION = str(REPO / "configs" / "translation" / "dehaze.yaml")
FORECASTING = str(REPO / "configs" / "forecasting" / "co2.yaml")
TABULAR = str(REPO / "configs" / "tabular" / "penguins.yaml")

CASES = [
    # (config, overrides, text the one-line message must contain)
    (SEGMENTATION, ["loss.seg=dcie"], "loss.seg: unknown loss 'dcie'"),
    (SEGMENTATION, ["loss.seg=giou"], "loss.seg: 'giou' is an overlap loss"),
    (SEGMENTATION, ["loss.seg=dice + -1*ce"], "loss.seg: cannot parse '-1*ce'"),
    (SEGMENTATION, ["loss.seg=[{name: dice, weight: -1}]"], "loss.seg.weight: expected a finite number >= 0"),
    (SEGMENTATION, ["loss.seg=[{name: dice, schedule: {warmup_epochs: -2}}]"], "schedule.warmup_epochs"),
    (SEGMENTATION, ["loss.seg=[{name: dice, schedule: {start: x}}]"], "schedule.start: expected a number"),
    (SEGMENTATION, ["loss.seg=focal", "loss.seg.params.gama=2"], "did you mean 'gamma'"),
    (SEGMENTATION, ["loss.seg=[{name: dice, inputs: [mask]}]"], "loss.seg.inputs: 'mask' not provided"),
    (SEGMENTATION, ["loss.box=giou"], "loss.box: this task has no such loss slot"),
    (SEGMENTATION, ["loss.balance=learned"], "loss.balance"),
    (SEGMENTATION, ["optim.lr=0"], "optim.lr: 0 would train nothing"),
    (SEGMENTATION, ["optim.lr=-1"], "optim.lr: expected a number >= 0"),
    (SEGMENTATION, ["optim.name=adamx"], "optim.name: 'adamx' is not one of"),
    (SEGMENTATION, ["optim.name=adamw", "optim.momentum=0.9"], "optim.momentum: not an argument of AdamW"),
    (SEGMENTATION, ["optim.scheduler=linear"], "optim.scheduler: 'linear' is not one of"),
    (SEGMENTATION, ["optim.groups.bias.lr_mult=2"], "optim.groups: unknown group"),
    (SEGMENTATION, ["model.arch=unet3d"], "model.arch"),
    (SEGMENTATION, ["model.mode=binaryy"], "model.mode"),
    (SEGMENTATION, ["model.num_classes=1"], "model.num_classes"),
    (SEGMENTATION, ["model.num_classes=four"], "model.num_classes: expected int"),
    (SEGMENTATION, ["model.norm=layer"], "model.norm"),
    (SEGMENTATION, ["model.achr=unet"], "model.achr (did you mean model.arch?)"),
    (SEGMENTATION, ["data.batch_size=2.5"], "data.batch_size: expected int"),
    (SEGMENTATION, ["trainer.max_epoch=3"], "trainer.max_epoch (did you mean trainer.max_epochs?)"),
    (SEGMENTATION, ["trainer.logger=false"], "trainer.logger: set by the framework"),
    (SEGMENTATION, ["trainer.devices=0"], "trainer.devices"),
    (SEGMENTATION, ["trainer.accelerator=tpux"], "trainer.accelerator: You selected an invalid accelerator"),
    (SEGMENTATION, ["trainer.precision=17"], "trainer.precision: expected one of"),
    (SEGMENTATION, ["run.on_nonfinite=ignore"], "run.on_nonfinite: expected one of stop, skip"),
    (SEGMENTATION, ["run.bogus=1"], "run.bogus"),
    (SEGMENTATION, ["seed=abc"], "seed: expected an integer"),
    (SEGMENTATION, ["task=segmentaton"], "task: expected one of"),
    (SEGMENTATION, ["trainer.max_epochs"], "expected key=value"),
    (SEGMENTATION, ["model.class_names=[a, b"], "cannot parse value"),
    (SEGMENTATION, ["trainer.max_epochs=${run.nope}"], "cannot resolve config: Interpolation key 'run.nope' not found"),
    (DETECTION, ["model.arch=yolo"], "model.arch: 'yolo' is not one of"),
    (DETECTION, ["model.backbone=vgg"], "model.backbone: 'vgg' is not one of"),
    (DETECTION, ["model.fpn_channels=48"], "model.fpn_channels: must be a multiple of 32"),
    (DETECTION, ["loss.box={name: giou, params: {reduction: mean}}"], "loss.box.params.reduction: this slot fixes"),
    (DETECTION, ["loss.cls=giou"], "loss.cls: 'giou' is an overlap loss; cls slots take classification"),
    (DETECTION, ["loss.box=giou + smooth_l1"], "loss.box: terms must all be overlap losses"),
    (DETECTION, ["loss.box=gwd"], "loss.box: does not accept (N, 4) boxes"),
    (DETECTION, ["loss.centerness=dice"], "loss.centerness: 'dice' is a region loss"),
    (DETECTION, ["data.root=/nope/coco"], "data.root: /nope/coco does not exist"),
    (DETECTION, ["model.num_classes=0"], "model.num_classes"),
    (DETECTION, ["loss.cls={name: focal, params: {gamma: -1}}"], "gamma must be >= 0, got -1"),
    (SEGMENTATION, ["trainer.max_epochs=-5"], "trainer.max_epochs: expected a number >= -1, got -5"),
    (SEGMENTATION, ["run.mode=maximum"], "run.mode: expected min or max"),
    (SEGMENTATION, ["data.batch_size=0"], "data.batch_size: expected a number >= 1, got 0"),
    (SEGMENTATION, ["data.root=/nope/segdata"], "data.root: /nope/segdata does not exist"),
    (SEGMENTATION, ["model.encoder=resnet9000"], "model.encoder"),
    (SEGMENTATION, ["loss.seg={name: focal, params: {alpha: 1.5}}"], "focal: alpha must be <= 1"),
    (SEGMENTATION, ["loss.seg=[{name: dice, weight: .nan}]"], "loss.seg.weight: expected a finite number >= 0"),
    (SEGMENTATION, ["trainer.accumulate_grad_batches=0"], "trainer.accumulate_grad_batches: expected a number >= 1"),
    (SEGMENTATION, ["data.num_workers=-1"], "data.num_workers: expected a number >= 0"),
    (SEGMENTATION, ["data.num_workers=many"], "data.num_workers: expected an integer >= 0 or auto, got 'many'"),
    (SEGMENTATION, ["run.checkpoint_every_n_steps=-3"], "run.checkpoint_every_n_steps: expected a number >= 1"),
    (FACE, ["model.num_classes=1"], "num_classes >= 2"),
    (FACE, ["model.backbone=resnet999"], "model.backbone: expected one of"),
    (FACE, ["model.backbone=resnet18", "model.backbone_weights=/nope/weights.pt"], "model.backbone_weights"),
    (FACE, ["loss.head=dice"], "loss.head: 'dice' is a region loss"),
    (FACE, ["loss.head.params.scale=-1"], "arcface: scale must be > 0, got -1"),
    (FACE, ["loss.aux=focal"], "loss.aux: 'focal' is a classification loss"),
    (FACE, ["data.root=/nope/faces"], "data.root: /nope/faces does not exist"),
    (FACE, ["data.batch_size=0"], "data.batch_size: expected a number >= 1"),
    (TRANSLATION, ["model.num_downs=0"], "model.num_downs"),
    (TRANSLATION, ["loss.generator=giou"], "loss.generator: 'giou' is an overlap loss"),
    (TRANSLATION, ["optim.generator.lr=0"], "optim.generator.lr"),
    (TRANSLATION, ["optim.critic.lr=1"], "optim.critic: this task has the optimisers generator, discriminator"),
    (TRANSLATION, ["data.dehaze={num_train: 4, num_val: 2, size: 40}"], "data.crop: training images of 40 px must"),
    (TRANSLATION, ["data.root=/nope/pairs"], "data.root: /nope/pairs does not exist"),
    (TRANSLATION, ["loss.discriminator=dice"], "loss.discriminator: 'dice' is a region loss"),
    (FORECASTING, ["data.horizon=0"], "data.horizon"),
    (FORECASTING, ["data.dataset=airline"], "data.dataset"),
    (FORECASTING, ["data.csv=/nope/s.csv", "data.time_column=t", "data.target_columns=y"], "data.csv: /nope/s.csv"),
    (FORECASTING, ["model.arch=transformer"], "model.arch"),
    (FORECASTING, ["model.interval=1.5"], "model.interval"),
    (FORECASTING, ["loss.forecast=dice"], "loss.forecast: 'dice' is a region loss"),
    (FORECASTING, ["data.val_fraction=1.5"], "data.val_fraction"),
    (TABULAR, ["data.dataset=iris"], "data.dataset"),
    (TABULAR, ["data.path=/nope/table.csv", "data.target=y"], "data.path: /nope/table.csv does not exist"),
    (TABULAR, ["model.arch=transformer"], "model.arch"),
    (TABULAR, ["model.dropout=1.5"], "model.dropout"),
    (TABULAR, ["loss.target=giou"], "loss.target: 'giou' is an overlap loss"),
    (TABULAR, ["data.batch_size=0"], "data.batch_size: expected a number >= 1"),
    (TABULAR, ["model.hidden_size=0"], "model.hidden_size"),
    # sizes, probabilities and optimiser arguments torch or Lightning would reject mid-run (or take silently)
    (SEGMENTATION, ["data.image_size=0"], "data.image_size: expected a number >= 1, got 0"),
    (SEGMENTATION, ["model.in_channels=0"], "model.in_channels: expected a number >= 1, got 0"),
    (SEGMENTATION, ["optim.lr=.inf"], "optim.lr: expected a finite number, got inf"),
    (SEGMENTATION, ["optim.name=sgd", "optim.momentum=1.5"], "optim.momentum: expected a number in [0, 1), got 1.5"),
    (SEGMENTATION, ["optim.name=sgd", "optim.nesterov=true"], "optim.nesterov: Nesterov momentum requires"),
    (SEGMENTATION, ["optim.betas=[0.9, 1.5]"], "optim.betas: Invalid beta parameter at index 1: 1.5"),
    (SEGMENTATION, ["optim.eps=-1"], "optim.eps: Invalid epsilon value: -1"),
    (SEGMENTATION, ["seed=-5"], "seed: expected an integer in [0, 4294967295], got -5"),
    (SEGMENTATION, ["trainer.val_check_interval=0"], "trainer.val_check_interval: expected a number > 0, got 0"),
    (SEGMENTATION, ["trainer.devices=abc"], "trainer.devices: `devices` selected with `CPUAccelerator`"),
    (SEGMENTATION, ["trainer.strategy=foo"], "trainer.strategy: You selected an invalid strategy name"),
    (SEGMENTATION, ["trainer.limit_train_batches=1.5"], "trainer.limit_train_batches: You have passed invalid value"),
    (SEGMENTATION, ["trainer.limit_val_batches=-2"], "trainer.limit_val_batches: expected a number >= 0, got -2"),
    (SEGMENTATION, ["model.encoder_weights=/nope/enc.pth"], "model.encoder_weights: /nope/enc.pth does not exist"),
    (SEGMENTATION, ["model.class_names=[a, b]"], "model.class_names: 2 names for model.num_classes=4"),
    (SEGMENTATION, ["loss.seg=dice +"], "loss.seg: cannot parse '' in 'dice +'"),
    (DETECTION, ["model.min_size=0"], "model.min_size: expected a number >= 1, got 0"),
    (DETECTION, ["model.score_thresh=1.5"], "model.score_thresh: expected a value in [0, 1], got 1.5"),
    (DETECTION, ["model.nms_thresh=-0.1"], "model.nms_thresh: expected a value in [0, 1], got -0.1"),
    (DETECTION, ["data.scale_range=[1.5, 0.5]"], "data.scale_range: expected [low, high] with 0 < low <= high"),
    (DETECTION, ["data.translate=-1"], "data.translate: expected a value in [0, 1], got -1"),
    (DETECTION, ["model.weights_path=/nope/w.pth"], "model.weights_path: /nope/w.pth does not exist"),
    (DETECTION, ["data.format=yolo"], "data.format: expected one of"),
    (FACE, ["model.width=0"], "model.width: expected a number >= 1, got 0"),
    (FACE, ["data.image_size=0"], "data.image_size: expected a number >= 1, got 0"),
    (FACE, ["model.folds=1"], "model.folds: expected a number >= 2, got 1"),
    (FACE, ["model.dropout=1.5"], "model.dropout"),
    (TRANSLATION, ["model.ngf=0"], "model.ngf: expected a number >= 1, got 0"),
    (TRANSLATION, ["optim.generator.betas=[0.5, 1.5]"], "optim.generator.betas: Invalid beta parameter"),
    (TRANSLATION, ["model.mode=pix3pix"], "model.mode: expected one of pix2pix, cyclegan, inpaint"),
    (FORECASTING, ["model.kernel_size=0"], "model.kernel_size: expected a number >= 1, got 0"),
    (FORECASTING, ["model.dropout=.nan"], "model.dropout: expected a finite number, got nan"),
    (FORECASTING, ["loss.forecast={name: quantile, params: {quantiles: [0.1, 1.5]}}"], "quantiles must lie in (0, 1)"),
    (TABULAR, ["data.val_fraction=0"], "data.val_fraction: expected a fraction in (0, 1), got 0"),
    (TABULAR, ["data.folds=1"], "data.folds / data.fold"),
]


def _run(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.mark.parametrize(
    ("config", "overrides", "expected"), CASES, ids=[f"{Path(c[0]).parent.name}: {' '.join(c[1])}" for c in CASES]
)
def test_bad_config_is_one_message_with_exit_code_2(tmp_path, capsys, config, overrides, expected):
    code, output = _run(["fit", "-c", config, f"run.root={tmp_path}", *overrides], capsys)
    assert code == 2, output
    assert expected in output, output
    assert "Traceback" not in output
    assert not any(tmp_path.iterdir()), "a rejected config must not leave a run folder behind"


def test_malformed_yaml_and_missing_files(tmp_path, capsys):
    broken = tmp_path / "broken.yaml"
    broken.write_text("task: segmentation\nmodel: {arch: unet\n")
    for argv, expected in [
        (["fit", "-c", str(broken)], "cannot parse YAML"),
        (["fit", "-c", str(tmp_path / "missing.yaml")], "not found"),
        (["fit", "--resume", str(tmp_path / "nowhere")], "no such checkpoint file or run folder"),
        (["fit"], "-c/--config is required"),
    ]:
        code, output = _run(argv, capsys)
        assert code == 2 and expected in output and "Traceback" not in output, output


def test_truncated_checkpoint_is_refused_before_building(tmp_path, capsys):
    run = tmp_path / "version_0"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"PK\x03\x04 truncated")
    code, output = _run(["fit", "-c", SEGMENTATION, "--resume", str(run)], capsys)
    assert code == 2 and "not a readable checkpoint" in output, output


def test_a_monitor_the_task_does_not_log_stops_before_training(tmp_path, capsys, tiny_segmentation_config):
    code, output = _run(["fit", "-c", str(tiny_segmentation_config), "run.monitor=val/mIoU",
                         "trainer.num_sanity_val_steps=1"], capsys)  # fmt: skip
    assert code == 2 and "run.monitor: 'val/mIoU' is not logged by this task; validation logs:" in output, output
    assert "val/miou" in output and "Traceback" not in output
    assert not list(tmp_path.rglob("version_*"))  # no step ran: the run folder is removed


def test_an_unwritable_or_full_run_folder_is_reported_before_anything_is_built(tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    code, output = _run(["fit", "-c", SEGMENTATION, f"run.root={blocker / 'runs'}"], capsys)
    assert code == 2 and "run.root: cannot write the run folder" in output and "a_file is a file" in output, output

    monkeypatch.setattr(shutil, "disk_usage", lambda path: SimpleNamespace(total=10 * 2**30, used=0, free=5 * 2**20))
    code, output = _run(["fit", "-c", SEGMENTATION, f"run.root={tmp_path / 'runs'}"], capsys)
    assert code == 2 and "has 5 MB free; checkpoints and logs need at least" in output, output
    assert not (tmp_path / "runs").exists()

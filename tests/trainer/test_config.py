"""Config loading (extends, overrides) and validation before any data is read."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from trainer.build import validate
from trainer.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[2]
SHAPES = REPO / "configs" / "segmentation" / "shapes.yaml"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_extends_merges_base_first_and_overrides_apply_last(tmp_path):
    write(tmp_path / "base.yaml", "task: segmentation\nseed: 1\nmodel: {num_classes: 4}\ntrainer: {max_epochs: 3}\n")
    child = write(tmp_path / "child.yaml", "extends: base.yaml\ntrainer: {max_epochs: 5}\n")
    cfg = load_config(child, ["seed=7", "model.mode=binary"])
    assert cfg.seed == 7 and cfg.trainer.max_epochs == 5 and cfg.model.num_classes == 4 and cfg.model.mode == "binary"
    assert "extends" not in cfg


def test_extends_cycle_and_missing_file_are_errors(tmp_path):
    write(tmp_path / "a.yaml", "extends: b.yaml\n")
    write(tmp_path / "b.yaml", "extends: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "a.yaml")
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_loss_override_replaces_a_list_with_shorthand():
    cfg = load_config(SHAPES, ["loss.seg=dice + 0.5*focal"])
    assert cfg.loss.seg == "dice + 0.5*focal"
    validate(cfg)


def test_loss_param_override_on_a_named_slot():
    cfg = load_config(SHAPES, ["loss.seg=focal", "loss.seg.params.gamma=3"])
    assert OmegaConf.to_container(cfg.loss.seg) == {"name": "focal", "params": {"gamma": 3}}


def test_shapes_recipe_is_valid():
    config = validate(load_config(SHAPES))
    assert config["task"] == "segmentation" and config["run"]["root"] == "runs"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["modle.arch=unet"], r"config\.modle"),
        (["model.achr=unet"], r"model\.achr \(did you mean model\.arch\?\)"),
        (["model.num_classes=four"], r"model\.num_classes: expected int"),
        (["data.batch_size=2.5"], r"data\.batch_size: expected int"),
        (["trainer.max_epoch=3"], r"trainer\.max_epoch \(did you mean trainer\.max_epochs\?\)"),
        (["trainer.logger=false"], r"trainer\.logger: set by the framework"),
        (["optim.learning_rate=0.1"], r"optim\.learning_rate"),
        (["task=segmentaton"], "task: expected one of"),
        (["loss.seg=dcie"], r"loss\.seg: unknown loss 'dcie'\. Did you mean 'dice'"),
        (["loss.seg=focal", "loss.seg.params.gama=2"], r"loss\.seg: loss 'focal'.*'gama'.*did you mean 'gamma'"),
        (["loss.seg=giou"], r"loss\.seg: 'giou' is an overlap loss; seg slots take region/classification/compound"),
        (["loss.box=giou"], r"loss\.box: this task has no such loss slot"),
        (["loss.balance=learned"], r"loss\.balance"),
        (["optim.name=adamw", "optim.momentum=0.9"], r"optim\.momentum: not an argument of AdamW"),
        (["optim.groups.bias.lr_mult=2"], r"optim\.groups: unknown group"),
        (["loss.seg=[{name: dice, inputs: [mask]}]"], r"loss\.seg\.inputs: 'mask' not provided by the seg slot"),
        (["loss.seg=[{name: dice, optim: {lr: 1}}]"], r"loss\.seg\[0\]\.optim: unknown key"),
        (["run.on_nonfinite=ignore"], r"run\.on_nonfinite"),
    ],
)
def test_invalid_configs_name_the_path(overrides, message):
    with pytest.raises(ConfigError, match=message):
        validate(load_config(SHAPES, overrides))


def test_switching_optimiser_drops_a_null_momentum():
    config = validate(load_config(SHAPES, ["optim.name=adamw", "optim.momentum=null"]))
    assert config["optim"]["name"] == "adamw"


def test_bad_override_syntax():
    with pytest.raises(ConfigError, match="expected key=value"):
        load_config(SHAPES, ["trainer.max_epochs"])


def test_every_loss_preset_merges_over_the_recipe_and_a_later_slot_replaces_the_earlier_whole(tmp_path):
    for preset in sorted((REPO / "configs" / "losses").glob("*.yaml")):
        validate(load_config([SHAPES, preset]))  # a preset's single loss over the recipe's list, and the reverse
    tversky = write(tmp_path / "tversky.yaml", "loss: {seg: {name: tversky, params: {alpha: 0.7}}}\n")
    focal = write(tmp_path / "focal.yaml", "loss: {seg: focal}\n")
    assert OmegaConf.to_container(load_config([SHAPES, tversky, focal]).loss.seg) == {"name": "focal", "params": {}}
    a_list = write(tmp_path / "a_list.yaml", "model: [unet]\n")
    with pytest.raises(ConfigError, match="a_list.yaml: cannot merge it over the earlier config"):
        load_config([SHAPES, a_list])


@pytest.mark.parametrize(
    ("cpus", "trainer", "expected"),
    [
        (2, {"accelerator": "cpu", "devices": 1}, 1),  # this CI machine: one worker beside the main process
        (1, {"accelerator": "cpu", "devices": 1}, 0),
        (32, {"accelerator": "gpu", "devices": 4}, 7),  # a 4-GPU node: 8 CPUs per process
        (32, {"accelerator": "gpu", "devices": [0, 1]}, 8),  # 16 per process, capped
        (64, {"accelerator": "cpu", "devices": 1}, 8),
    ],
)
def test_num_workers_auto_shares_this_process_cpus_among_the_machine_processes(monkeypatch, cpus, trainer, expected):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(cpus)))
    cfg = load_config(SHAPES, ["data.num_workers=auto", *(f"trainer.{k}={v}" for k, v in trainer.items())])
    assert validate(cfg)["data"]["num_workers"] == expected
    assert cfg.data.num_workers == "auto"  # the saved config keeps `auto`: a resume elsewhere resolves it there


@pytest.mark.parametrize(
    ("cuda", "bf16", "accelerator", "expected"),
    [(False, False, "auto", "32-true"), (True, True, "auto", "bf16-mixed"), (True, False, "gpu", "16-mixed"),
     (True, True, "cpu", "32-true")],
)
def test_precision_auto_is_mixed_on_a_gpu_and_full_on_a_cpu(monkeypatch, cuda, bf16, accelerator, expected):
    monkeypatch.setattr("torch.cuda.is_available", lambda: cuda)
    monkeypatch.setattr("torch.cuda.is_bf16_supported", lambda *args, **kwargs: bf16)
    cfg = load_config(SHAPES, ["trainer.precision=auto", f"trainer.accelerator={accelerator}"])
    assert validate(cfg)["trainer"]["precision"] == expected

"""Detection task: registry heads equal torchvision's losses, slots swap, the task fits on CPU, configs validate."""

from __future__ import annotations

from pathlib import Path
from unittest.mock import patch

import lightning as L
import pytest
import torch

import losses
from tasks.detection import DATAMODULE, TASK
from tasks.detection.model import build_backbone, build_detector

needs_cls = pytest.mark.skipif(not {"focal", "bce"} <= set(losses.available()),
                               reason="classification losses (focal, bce) not registered yet")
CONFIGS = Path(__file__).resolve().parents[3] / "configs" / "detection"
TINY = {"min_size": 64, "max_size": 64, "fpn_channels": 64}


def _batch(seed: int = 0, n: int = 2, size: int = 64) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    g = torch.Generator().manual_seed(seed)
    images = [torch.rand(3, size, size, generator=g) for _ in range(n)]
    targets = [{"boxes": torch.tensor([[4.0, 6, 30, 40], [20, 20, 60, 50], [33, 2, 45, 14]]),
                "labels": torch.tensor([0, 2, 1])}]
    targets += [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}] * (n - 1)  # an empty image
    return images, targets


def _slot_values(task: L.LightningModule, images, targets) -> dict[str, torch.Tensor]:
    """``{slot: total, slot/term: value}`` of one training-mode forward."""
    return {k: v for result in task.slot_results(images, targets) for k, v in result.loggable().items()}


def _both_losses(task: L.LightningModule, images, targets) -> tuple[dict, dict]:
    """Our slot losses and torchvision's own compute_loss on the same forward pass."""
    torch.manual_seed(0)
    ours = _slot_values(task, images, targets)
    head = type(task.model.head)
    with patch.object(head, "compute_loss", head.__mro__[1].compute_loss):  # torchvision's own head losses
        theirs = task.model(images, targets)
    return ours, theirs


@needs_cls
def test_fcos_head_equals_torchvision_with_default_losses() -> None:
    task = TASK(arch="fcos", **TINY)  # DEFAULT_LOSSES: focal / giou / bce
    ours, theirs = _both_losses(task, *_batch())
    assert set(ours) == {"cls", "box", "centerness"}
    for mine, tv in (("cls", "classification"), ("box", "bbox_regression"), ("centerness", "bbox_ctrness")):
        assert float(theirs[tv].detach()) > 0
        torch.testing.assert_close(ours[mine], theirs[tv], rtol=1e-5, atol=1e-6)


@needs_cls
@pytest.mark.parametrize(("box", "tv_type"), [("giou", "giou"), ("ciou", "ciou"), ("smooth_l1", "smooth_l1")])
def test_retinanet_head_equals_torchvision(box: str, tv_type: str) -> None:
    task = TASK(arch="retinanet", loss={"box": box}, **TINY)
    assert "centerness" not in task.loss_slots
    assert task.model.head.box_family == losses.get(box).family
    task.model.head.regression_head._loss_type = tv_type  # torchvision's bbox_reg_loss_type switch
    ours, theirs = _both_losses(task, *_batch(n=3))
    torch.testing.assert_close(ours["cls"], theirs["classification"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ours["box"], theirs["bbox_regression"], rtol=1e-5, atol=1e-6)


@needs_cls
def test_composite_box_slot_logs_terms_and_scales() -> None:
    images, targets = _batch()
    single = TASK(arch="fcos", loss={"box": "giou"}, **TINY)
    combo = TASK(arch="fcos", loss={"box": "giou + 0.5*mpdiou"}, **TINY)
    combo.model.load_state_dict(single.model.state_dict())
    out = _slot_values(combo, images, targets)
    torch.testing.assert_close(out["box/giou"], _slot_values(single, images, targets)["box"])
    torch.testing.assert_close(out["box"], out["box/giou"] + 0.5 * out["box/mpdiou"])
    assert combo.loss_slots["box"].terms[1].image_size == (64.0, 64.0)  # injected from the input size


@needs_cls
def test_slot_validation() -> None:
    with pytest.raises(losses.LossConfigError, match="must all be overlap losses"):
        TASK(arch="fcos", loss={"box": "giou + smooth_l1"}, **TINY)
    with pytest.raises(losses.LossConfigError, match="reduction"):
        TASK(arch="fcos", loss={"box": {"name": "giou", "params": {"reduction": "mean"}}}, **TINY)
    with pytest.raises(losses.LossConfigError, match=r"does not accept \(N, 4\)"):
        TASK(arch="fcos", loss={"box": "gwd"}, **TINY)  # rotated boxes (N, 5)
    with pytest.raises(losses.LossConfigError, match="unknown loss"):
        TASK(arch="fcos", loss={"box": "gioo"}, **TINY)
    with pytest.warns(UserWarning, match="centerness is ignored"):
        TASK(arch="retinanet", loss={"centerness": "bce"}, **TINY)
    with pytest.raises(ValueError, match="model.arch"):
        TASK(arch="yolo")


def _fit(tmp_path: Path, shapes_cache: Path, **model) -> tuple[L.LightningModule, L.Trainer]:
    dm = DATAMODULE(cache_dir=str(shapes_cache), shapes={"num_train": 8, "num_val": 4, "size": 64}, batch_size=4)
    task = TASK(**TINY, **model)
    before = [p.detach().clone() for p in task.model.head.parameters()]
    trainer = L.Trainer(max_steps=1, limit_val_batches=1, num_sanity_val_steps=0, accelerator="cpu",
                        default_root_dir=tmp_path, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, val_check_interval=1)
    trainer.fit(task, dm)
    assert any(not torch.equal(a, b) for a, b in zip(before, task.model.head.parameters()))
    return task, trainer


@needs_cls
@pytest.mark.parametrize(("arch", "loss"), [
    ("fcos", {"box": "ciou"}),
    ("fcos", {"cls": {"name": "focal", "params": {"gamma": 1.5}}, "box": "mpdiou + 0.5*giou"}),
    ("retinanet", {"box": "smooth_l1"}),
])
def test_task_fits_and_validates(tmp_path: Path, shapes_cache: Path, arch: str, loss: dict) -> None:
    task, trainer = _fit(tmp_path, shapes_cache, arch=arch, loss=loss)
    metrics = trainer.callback_metrics
    assert torch.isfinite(metrics["train/loss"])
    assert "train/loss/box" in metrics and ("train/loss/centerness" in metrics) == (arch == "fcos")
    if "+" in str(loss.get("box")):
        assert "train/loss/box/mpdiou" in metrics
    assert {"val/map", "val/map_50", "val/map_75"} <= set(metrics)
    assert 0.0 <= float(metrics["val/map_50"]) <= 1.0
    assert (tmp_path / "predictions" / "epoch_000.png").stat().st_size > 1000
    task.eval()
    detections = task([torch.rand(3, 64, 64)])
    assert set(detections[0]) == {"boxes", "scores", "labels"}


@needs_cls
def test_num_classes_must_match_the_data(tmp_path: Path, shapes_cache: Path) -> None:
    with pytest.raises(ValueError, match="num_classes=5 but the data has 3"):
        _fit(tmp_path, shapes_cache, num_classes=5)


def test_backbones_and_weights_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="never downloaded"):
        build_backbone("resnet18", 64, weights_path=str(tmp_path / "missing.pth"))
    import torchvision

    path = tmp_path / "resnet18.pth"
    reference = torchvision.models.resnet18(weights=None)
    torch.save(reference.state_dict(), path)
    backbone = build_backbone("resnet18", 64, weights_path=str(path))
    torch.testing.assert_close(backbone.body.conv1.weight, reference.conv1.weight)
    assert not backbone.body.conv1.weight.requires_grad and backbone.body.layer4[0].conv1.weight.requires_grad
    assert isinstance(backbone.body.bn1, torchvision.ops.FrozenBatchNorm2d)
    model = build_detector("fcos", "mobilenet_v3_small", num_classes=2, fpn_channels=64, min_size=64, max_size=64)
    model.eval()
    with torch.no_grad():
        out = model([torch.rand(3, 64, 64)])
    assert out[0]["boxes"].shape[-1] == 4


@needs_cls
@pytest.mark.parametrize("name", ["shapes_fcos.yaml", "shapes_retinanet.yaml", "coco.yaml"])
def test_configs_validate(name: str) -> None:
    from trainer.build import validate
    from trainer.config import load_config

    config = validate(load_config(CONFIGS / name))
    assert config["task"] == "detection"
    if name.startswith("shapes"):
        task = TASK(loss=config["loss"], optim=config["optim"], **config["model"])
        assert task.model.head.box_family == "overlap"

"""Every loss that fits the ``seg`` slot trains the segmentation network (its value falls)."""

from __future__ import annotations

import pytest
import torch

from tasks.segmentation import SegmentationDataModule, SegmentationTask

SEG_LOSSES = ["focal_tversky", "unified_focal", "combo", "lovasz", "dice + 0.5*focal", "exp_log", "generalized_dice"]


@pytest.fixture(scope="module")
def batch(shapes_cache):
    datamodule = SegmentationDataModule(
        batch_size=8, cache_dir=str(shapes_cache), shapes={"num_train": 16, "num_val": 8, "size": 64}
    )
    datamodule.setup("fit")
    return next(iter(datamodule.train_dataloader()))


@pytest.mark.parametrize("mode", ["multiclass", "binary"])
@pytest.mark.parametrize("loss", SEG_LOSSES)
def test_loss_falls_when_fitting_one_batch(loss, mode, batch):
    torch.manual_seed(0)
    task = SegmentationTask(
        arch="unet", encoder="resnet18", num_classes=4, mode=mode, loss={"seg": loss}, overlay_every_n_epochs=0
    )
    optimizer = torch.optim.Adam(task.parameters(), lr=1e-3)
    images, mask = batch
    values = []
    for _ in range(12):
        total, _ = task.loss_slots["seg"].forward_terms(task(images), task.loss_target(mask))
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        values.append(total.item())
    assert all(map(lambda v: v == v, values)), values  # no NaN
    assert min(values[-3:]) < 0.9 * values[0], values

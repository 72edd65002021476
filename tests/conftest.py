"""Shared fixtures: GPU marker handling and small deterministic settings for CPU runs."""

from __future__ import annotations

import pytest
import torch


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(autouse=True)
def _few_threads() -> None:
    torch.set_num_threads(2)


TINY_SEGMENTATION = """
task: segmentation
seed: 3
model: {{arch: unet, encoder: resnet18, num_classes: 4, mode: multiclass, overlay_every_n_epochs: 0}}
data:
  batch_size: 4
  num_workers: 0
  cache_dir: {cache}
  shapes: {{num_train: 16, num_val: 8, size: 32}}
loss:
  seg: [{{name: dice}}, {{name: jaccard, weight: 0.5, schedule: {{warmup_epochs: 1}}}}]
  balance: uncertainty
optim: {{name: adamw, lr: 1.0e-3, scheduler: cosine}}
trainer: {{max_epochs: 2, accelerator: cpu, devices: 1, enable_progress_bar: false, enable_model_summary: false,
          log_every_n_steps: 1, num_sanity_val_steps: 0}}
run: {{root: {runs}, name: tiny}}
"""


@pytest.fixture(scope="session")
def shapes_cache(tmp_path_factory: pytest.TempPathFactory):
    return tmp_path_factory.mktemp("shapes_cache")


@pytest.fixture
def tiny_segmentation_config(tmp_path, shapes_cache):
    """A 2-epoch, 4-steps-per-epoch segmentation config on 32x32 shapes (fast on CPU)."""
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_SEGMENTATION.format(cache=shapes_cache, runs=tmp_path / "runs"))
    return path

"""Train a few steps on generated shapes, then predict on a folder of unlabelled images of other sizes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from tasks.datacheck import DataError
from tasks.detection.data import UnlabelledImages
from trainer.cli import main

CONFIG = """
task: detection
seed: 0
model: {{arch: fcos, min_size: 64, max_size: 64, fpn_channels: 64, score_thresh: 0.0, predict_score_thresh: 0.0,
         plot_every_n_epochs: 0}}
data: {{format: shapes, cache_dir: {cache}, shapes: {{num_train: 8, num_val: 4, size: 64}}, batch_size: 4}}
trainer: {{max_steps: 2, limit_val_batches: 1, accelerator: cpu, num_sanity_val_steps: 0, enable_progress_bar: false,
          enable_model_summary: false, log_every_n_steps: 1}}
run: {{root: {runs}, name: tiny_detection, plot: false}}
"""


def test_predict_writes_coco_results_and_overlays_for_unlabelled_images(tmp_path, shapes_cache, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text(CONFIG.format(cache=shapes_cache, runs=tmp_path / "runs"))
    assert main(["fit", "-c", str(config)]) == 0
    run = tmp_path / "runs" / "tiny_detection" / "version_0"

    folder = tmp_path / "unlabelled"
    folder.mkdir()
    sizes = {"wide.png": (96, 48), "small.jpg": (40, 40)}  # not the training size: boxes in each image's own pixels
    rng = np.random.default_rng(0)
    for name, (w, h) in sizes.items():
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(folder / name)
    capsys.readouterr()
    assert main(["predict", "--ckpt", str(run), f"data.predict_dir={folder}"]) == 0
    report = capsys.readouterr().out

    out = run / "predictions" / "unlabelled"
    results = json.loads((out / "detections.json").read_text())
    assert {r["file_name"] for r in results} == set(sizes)
    for r in results:
        assert set(r) == {"file_name", "image_id", "category_id", "category_name", "bbox", "score"}
        assert r["category_name"] in ("circle", "square", "triangle")
        x, y, w, h = r["bbox"]
        width, height = sizes[r["file_name"]]
        assert 0 <= x and 0 <= y and w >= 0 and h >= 0 and x + w <= width + 0.01 and y + h <= height + 0.01
    assert sorted(p.name for p in (out / "overlays").iterdir()) == ["small.png", "wide.png"]
    assert "predict wrote 3 files" in report, report


@pytest.mark.parametrize("content", [b"", b"not an image"])
def test_unreadable_unlabelled_images_are_named(tmp_path, content):
    (tmp_path / "bad.png").write_bytes(content)
    with pytest.raises(DataError, match=r"bad\.png"):
        UnlabelledImages(tmp_path)

"""From a folder of images and masks to predictions on unlabelled images, through the command line."""

from __future__ import annotations

import numpy as np
from PIL import Image

from tasks.segmentation.shapes import generate_shapes
from trainer.cli import main

CONFIG = """
task: segmentation
model: {{num_classes: 4, class_names: [background, disc, square, triangle], overlay_every_n_epochs: 0}}
data: {{root: {root}, batch_size: 4}}
loss: {{seg: dice + ce}}
trainer: {{max_epochs: 1, limit_train_batches: 1, limit_val_batches: 1, accelerator: cpu, num_sanity_val_steps: 0,
          enable_progress_bar: false, enable_model_summary: false, log_every_n_steps: 1}}
run: {{root: {runs}, name: folder, plot: false}}
"""


def test_train_on_a_folder_then_predict_on_unlabelled_images(shapes_cache, tmp_path, capsys):
    root = generate_shapes(shapes_cache, num_train=16, num_val=8, size=32)  # root/{train,val}/{images,masks}
    config = tmp_path / "folder.yaml"
    config.write_text(CONFIG.format(root=root, runs=tmp_path / "runs"))
    assert main(["fit", "-c", str(config)]) == 0
    run_dir = tmp_path / "runs" / "folder" / "version_0"

    unlabelled = tmp_path / "new_images"  # no masks anywhere; one image of another size and format
    unlabelled.mkdir()
    sizes = {"tile_a.png": (32, 32), "tile_b.png": (32, 32), "odd_size.jpg": (45, 37)}
    for i, (name, size) in enumerate(sizes.items()):
        Image.open(sorted((root / "val" / "images").glob("*.png"))[i]).convert("RGB").resize(size).save(
            unlabelled / name
        )
    capsys.readouterr()
    assert main(["predict", "--ckpt", str(run_dir), f"data.predict_dir={unlabelled}"]) == 0

    out = run_dir / "predictions" / "new_images"
    for name, size in sizes.items():
        stem = name.rsplit(".", 1)[0]
        labels = Image.open(out / "masks" / f"{stem}.png")
        assert labels.size == size and labels.mode == "P"  # class indices, readable as a mask again
        assert set(np.unique(np.asarray(labels)).tolist()) <= {0, 1, 2, 3}
        assert Image.open(out / "overlays" / f"{stem}.png").size == size
    report = " ".join(capsys.readouterr().out.split())
    assert f"predict wrote 6 files under {run_dir / 'predictions'}:" in report
    assert "new_images/masks/ 3 .png" in report and "new_images/overlays/ 3 .png" in report

"""Detection data: COCO and VOC loaders, the generated shapes set, box-aware augmentation, collate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tasks.detection.data import (
    CocoDetection,
    DetectionDataModule,
    VocDetection,
    build_transforms,
    collate,
)
from tasks.detection.shapes import CLASSES, generate_shapes


def _png(path: Path, width: int, height: int, value: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((height, width, 3), value, np.uint8)).save(path)


@pytest.fixture
def coco_dir(tmp_path: Path) -> Path:
    _png(tmp_path / "images" / "a.png", 40, 30)
    _png(tmp_path / "images" / "b.png", 20, 20)
    coco = {
        "images": [{"id": 11, "file_name": "a.png", "width": 40, "height": 30},
                   {"id": 5, "file_name": "b.png", "width": 20, "height": 20}],
        # non-contiguous, unsorted ids: 7 -> label 1, 3 -> label 0
        "categories": [{"id": 7, "name": "dog"}, {"id": 3, "name": "cat"}],
        "annotations": [
            {"id": 1, "image_id": 11, "category_id": 7, "bbox": [2, 3, 10, 5], "iscrowd": 0},
            {"id": 2, "image_id": 11, "category_id": 3, "bbox": [30, 20, 20, 20], "iscrowd": 1},  # crowd, clipped
            {"id": 3, "image_id": 11, "category_id": 3, "bbox": [5, 5, 0, 4], "iscrowd": 0},  # zero width: dropped
            {"id": 4, "image_id": 11, "category_id": 7, "bbox": [1, 1, 4, 4], "iscrowd": 0, "ignore": 1},
        ],
    }
    (tmp_path / "ann.json").write_text(json.dumps(coco))
    return tmp_path


def test_coco_remaps_categories_and_flags_crowd(coco_dir: Path) -> None:
    ds = CocoDetection(coco_dir / "images", coco_dir / "ann.json")
    assert ds.class_names == ("cat", "dog")  # sorted by category id
    assert len(ds) == 2
    image, target = ds[1]  # sorted by image id: 5 then 11
    assert image.shape == (3, 30, 40) and image.dtype == torch.float32 and float(image.max()) <= 1.0
    assert target["image_id"] == 11
    torch.testing.assert_close(target["boxes"], torch.tensor([[2.0, 3, 12, 8], [30, 20, 40, 30], [1, 1, 5, 5]]))
    assert target["labels"].tolist() == [1, 0, 1]
    assert target["iscrowd"].tolist() == [False, True, True]
    _, empty = ds[0]
    assert empty["boxes"].shape == (0, 4) and empty["labels"].shape == (0,) and empty["image_id"] == 5


def test_coco_errors_are_clear(coco_dir: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.json"):
        CocoDetection(coco_dir / "images", coco_dir / "missing.json")
    bad = json.loads((coco_dir / "ann.json").read_text())
    bad["annotations"][0]["category_id"] = 99
    (coco_dir / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="category_id 99"):
        CocoDetection(coco_dir / "images", coco_dir / "bad.json")


VOC_XML = """<annotation><filename>{name}.jpg</filename>
<size><width>50</width><height>40</height><depth>3</depth></size>
<object><name>dog</name><difficult>0</difficult>
  <bndbox><xmin>1</xmin><ymin>2</ymin><xmax>20</xmax><ymax>30</ymax></bndbox></object>
<object><name>cat</name><difficult>1</difficult>
  <bndbox><xmin>11</xmin><ymin>11</ymin><xmax>60</xmax><ymax>40</ymax></bndbox></object>
</annotation>"""


def test_voc_loader(tmp_path: Path) -> None:
    for name in ("000001", "000002"):
        (tmp_path / "Annotations").mkdir(exist_ok=True)
        (tmp_path / "Annotations" / f"{name}.xml").write_text(VOC_XML.format(name=name))
        _png(tmp_path / "JPEGImages" / f"{name}.jpg", 50, 40)
    (tmp_path / "ImageSets" / "Main").mkdir(parents=True)
    (tmp_path / "ImageSets" / "Main" / "val.txt").write_text("000002\n")
    ds = VocDetection(tmp_path, "val", class_names=["cat", "dog"])
    assert len(ds) == 1
    image, target = ds[0]
    assert image.shape == (3, 40, 50) and target["image_id"] == 2
    # 1-based inclusive corners -> continuous; the second box is clipped to the 50 px width
    torch.testing.assert_close(target["boxes"], torch.tensor([[0.0, 1, 20, 30], [10, 10, 50, 40]]))
    assert target["labels"].tolist() == [1, 0] and target["iscrowd"].tolist() == [False, True]
    assert len(VocDetection(tmp_path, "trainval", class_names=["cat", "dog"])) == 2  # no split file: all xml
    with pytest.raises(ValueError, match="not in data.class_names"):
        VocDetection(tmp_path, "val", class_names=["cat"])


def test_shapes_generator_is_deterministic(tmp_path: Path) -> None:
    settings = {"num_train": 24, "num_val": 4, "size": 48}
    a = generate_shapes(tmp_path / "a", seed=3, **settings)
    b = generate_shapes(tmp_path / "b", seed=3, **settings)
    c = generate_shapes(tmp_path / "c", seed=4, **settings)
    assert (a / "annotations" / "train.json").read_text() == (b / "annotations" / "train.json").read_text()
    assert (a / "train" / "0005.png").read_bytes() == (b / "train" / "0005.png").read_bytes()
    assert (a / "annotations" / "train.json").read_text() != (c / "annotations" / "train.json").read_text()
    assert generate_shapes(tmp_path / "a", seed=3, **settings) == a  # cached: reused as is

    coco = json.loads((a / "annotations" / "train.json").read_text())
    assert [c["name"] for c in coco["categories"]] == list(CLASSES)
    per_image = {img["id"]: [] for img in coco["images"]}
    for ann in coco["annotations"]:
        per_image[ann["image_id"]].append(ann["bbox"])
    counts = [len(v) for v in per_image.values()]
    assert min(counts) == 0 and max(counts) >= 3  # empty images and crowded ones

    def overlaps(boxes: list[list[float]]) -> bool:
        return any(min(p[0] + p[2], q[0] + q[2]) > max(p[0], q[0]) and min(p[1] + p[3], q[1] + q[3]) > max(p[1], q[1])
                   for i, p in enumerate(boxes) for q in boxes[i + 1:])

    assert any(overlaps(v) for v in per_image.values())
    ds = CocoDetection(a / "train", a / "annotations" / "train.json")  # read back by the ordinary COCO loader
    assert ds.class_names == CLASSES and len(ds) == 24


def _sample(boxes: list[list[float]], size: int = 64) -> tuple[torch.Tensor, dict]:
    from torchvision import tv_tensors

    image = tv_tensors.Image(torch.randint(0, 255, (3, size, size), dtype=torch.uint8))
    target = {"boxes": tv_tensors.BoundingBoxes(torch.tensor(boxes), format="XYXY", canvas_size=(size, size)),
              "labels": torch.arange(len(boxes)), "iscrowd": torch.tensor([i % 2 == 1 for i in range(len(boxes))])}
    return image, target


def test_augmentation_keeps_boxes_valid() -> None:
    transform = build_transforms(train=True, scale_range=(0.5, 1.5), translate=0.3)
    boxes = [[0.0, 0, 10, 10], [50, 50, 64, 64], [20, 10, 40, 50], [60, 1, 63, 5]]
    dropped = 0
    for seed in range(40):
        torch.manual_seed(seed)
        image, target = transform(*_sample(boxes))
        b = target["boxes"]
        assert image.dtype == torch.float32 and image.shape == (3, 64, 64)
        assert len(b) == len(target["labels"]) == len(target["iscrowd"])
        assert bool(((b[:, 2] - b[:, 0]) >= 2).all() and ((b[:, 3] - b[:, 1]) >= 2).all())
        assert bool((b >= 0).all() and (b <= 64).all())
        # crowd flags travel with their boxes (odd labels are crowd)
        assert target["iscrowd"].tolist() == [bool(label % 2) for label in target["labels"].tolist()]
        dropped += len(boxes) - len(b)
    assert dropped > 0  # some boxes leave the canvas under translate/scale and are removed


def test_flip_mirrors_boxes_exactly() -> None:
    transform = build_transforms(train=True, scale_range=(1.0, 1.0), translate=0.0, photometric=False)
    image, target = _sample([[5.0, 6, 20, 30]])
    seen = set()
    for seed in range(8):
        torch.manual_seed(seed)
        out_image, out = transform(image, target)
        box = out["boxes"][0].tolist()
        flipped = box != [5.0, 6, 20, 30]
        if flipped:
            assert box == [44.0, 6, 59, 30]
            torch.testing.assert_close(out_image, image.flip(-1).float() / 255)
        seen.add(flipped)
    assert seen == {True, False}


def test_datamodule_shapes_and_collate(tmp_path: Path) -> None:
    dm = DetectionDataModule(cache_dir=str(tmp_path), shapes={"num_train": 8, "num_val": 4, "size": 48}, batch_size=4)
    dm.prepare_data()
    dm.setup("fit")
    assert dm.num_classes == 3 and dm.class_names == CLASSES
    images, targets = next(iter(dm.train_dataloader()))
    assert isinstance(images, list) and len(images) == len(targets) == 4
    assert all(img.shape == (3, 48, 48) for img in images)
    assert {"boxes", "labels", "iscrowd", "image_id"} <= set(targets[0])
    batch = [(torch.zeros(3, 4, 4), {"boxes": torch.zeros(k, 4)}) for k in (0, 2, 5)]
    images, targets = collate(batch)
    assert [len(t["boxes"]) for t in targets] == [0, 2, 5]
    # the same seed gives the same augmented batch (the sampler seeds each sample)
    dm2 = DetectionDataModule(cache_dir=str(tmp_path), shapes={"num_train": 8, "num_val": 4, "size": 48}, batch_size=4)
    dm2.setup("fit")
    again, first = next(iter(dm2.train_dataloader())), next(iter(dm.train_dataloader()))
    torch.testing.assert_close(torch.stack(again[0]), torch.stack(first[0]))


def test_datamodule_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="data.format"):
        DetectionDataModule(format="yolo")
    with pytest.raises(ValueError, match="data.root"):
        DetectionDataModule(format="coco")

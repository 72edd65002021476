"""Detection data: COCO and VOC loaders, the generated shapes set, box-aware augmentation, collate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tasks.datacheck import DataError
from tasks.detection.data import (
    CocoDetection,
    DetectionDataModule,
    VocDetection,
    build_transforms,
    collate,
)
from tasks.detection.shapes import CLASSES, generate_shapes
from tasks.detection.task import small_object_warning


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
            {"id": 2, "image_id": 11, "category_id": 3, "bbox": [30, 20, 10.5, 10.5], "iscrowd": 1},  # crowd; clipped
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


def test_coco_file_errors_name_the_file(coco_dir: Path) -> None:
    with pytest.raises(DataError, match="missing.json does not exist"):
        CocoDetection(coco_dir / "images", coco_dir / "missing.json")
    for name, text, match in [
        ("empty.json", "", r"empty\.json is empty \(0 bytes\)"),
        ("broken.json", '{"images": [', r"broken\.json is not valid JSON"),
        ("other.json", '{"boxes": []}', "is not a COCO instances file"),
        ("nocat.json", '{"images": [], "categories": []}', "lists no categories"),
    ]:
        (coco_dir / name).write_text(text)
        with pytest.raises(DataError, match=match):
            CocoDetection(coco_dir / "images", coco_dir / name)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda c: c["annotations"][0].update(category_id=99), r"annotation 1: category_id 99 is not in categories"),
        (lambda c: c["annotations"][0].update(bbox=[30, 20, 20, 20]), r"annotation 1: box .* outside the 40x30 image"),
        (lambda c: c["annotations"][0].update(bbox=[5, 5, 0, 4]), r"annotation 1: box .* zero or negative size"),
        (lambda c: c["annotations"][0].update(bbox=[5, 5, -3, 4]), r"annotation 1: box .* zero or negative size"),
        (lambda c: c["annotations"][0].update(image_id=12), r"annotation 1: image_id 12 is not in images"),
        (lambda c: c["images"][0].update(file_name="gone.png"), r"gone\.png \(image 11 of .*\): missing"),
        (lambda c: c["images"][0].update(width=41), r"a\.png .*: image is 40x30, expected 41x30"),
    ],
)
def test_a_bad_annotation_or_image_is_named_or_skipped(coco_dir: Path, change, match) -> None:
    coco = json.loads((coco_dir / "ann.json").read_text())
    change(coco)
    (coco_dir / "bad.json").write_text(json.dumps(coco))
    with pytest.raises(DataError, match=match + ".*data.skip_bad"):
        CocoDetection(coco_dir / "images", coco_dir / "bad.json")
    with pytest.warns(UserWarning, match=r"data.skip_bad: skipped 1 of 5 images and annotations"):
        skipped = CocoDetection(coco_dir / "images", coco_dir / "bad.json", skip_bad=True)
    clean = CocoDetection(coco_dir / "images", coco_dir / "ann.json")
    boxes = sum(len(t["boxes"]) for _, t in skipped.items)
    assert boxes < sum(len(t["boxes"]) for _, t in clean.items) or len(skipped) < len(clean)


def test_an_unreadable_image_is_named(coco_dir: Path) -> None:
    (coco_dir / "images" / "b.png").write_bytes(b"")
    with pytest.raises(DataError, match=r"b\.png .*: empty file"):
        CocoDetection(coco_dir / "images", coco_dir / "ann.json")


VOC_XML = """<annotation><filename>{name}.jpg</filename>
<size><width>50</width><height>40</height><depth>3</depth></size>
<object><name>dog</name><difficult>0</difficult>
  <bndbox><xmin>1</xmin><ymin>2</ymin><xmax>20</xmax><ymax>30</ymax></bndbox></object>
<object><name>cat</name><difficult>1</difficult>
  <bndbox><xmin>11</xmin><ymin>11</ymin><xmax>50</xmax><ymax>40</ymax></bndbox></object>
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
    # 1-based inclusive corners -> continuous
    torch.testing.assert_close(target["boxes"], torch.tensor([[0.0, 1, 20, 30], [10, 10, 50, 40]]))
    assert target["labels"].tolist() == [1, 0] and target["iscrowd"].tolist() == [False, True]
    assert len(VocDetection(tmp_path, "trainval", class_names=["cat", "dog"])) == 2  # no split file: all xml
    with pytest.raises(DataError, match=r"000002\.xml: object 1: class 'cat' is not in data.class_names"):
        VocDetection(tmp_path, "val", class_names=["dog"])
    (tmp_path / "Annotations" / "000002.xml").write_text(VOC_XML.format(name="000002").replace("<xmax>50", "<xmax>60"))
    with pytest.raises(DataError, match=r"000002\.xml: object 1: box .* outside the 50x40 image"):
        VocDetection(tmp_path, "val", class_names=["cat", "dog"])
    with pytest.warns(UserWarning, match="skipped 1 of 1 VOC annotations"):
        assert len(VocDetection(tmp_path, "val", class_names=["cat", "dog"], skip_bad=True)[0][1]["boxes"]) == 1


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


def _small_object_coco(root: Path, sides: list[float], size: int = 128) -> CocoDetection:
    """One blank ``size``-px image per box side, each holding one square object of that side."""
    images, annotations = [], []
    for i, side in enumerate(sides):
        _png(root / "images" / f"{i}.png", size, size)
        images.append({"id": i, "file_name": f"{i}.png", "width": size, "height": size})
        annotations.append({"id": i, "image_id": i, "category_id": 1, "bbox": [40, 40, side, side]})
    (root / "ann.json").write_text(json.dumps({"images": images, "annotations": annotations,
                                               "categories": [{"id": 1, "name": "cell"}]}))
    return CocoDetection(root / "images", root / "ann.json")


def test_small_objects_name_the_setting_to_change(tmp_path: Path) -> None:
    dataset = _small_object_coco(tmp_path, [6.0, 7.0, 8.0, 9.0, 10.0, 12.0])  # 6-12 px objects on 128-px images
    warning = small_object_warning(dataset, "fcos", 128, 128)  # the images' native size: sides stay 6-12 px
    assert warning is not None and "33% of the training boxes are smaller than 8 px" in warning
    assert "model.min_size=256 model.max_size=256" in warning
    assert small_object_warning(dataset, "fcos", 256, 256) is None  # doubled: 12-24 px, every box has positives
    assert "smaller than 20 px" in small_object_warning(dataset, "retinanet", 256, 256)

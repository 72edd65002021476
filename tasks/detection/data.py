"""COCO-json and Pascal-VOC-xml detection datasets, box-aware augmentation, collate, the datamodule.

A sample is ``(image, target)``: ``image`` float (3, H, W) in [0, 1] (the detector normalises
and resizes), ``target`` a dict with ``boxes`` (n, 4) xyxy in pixels, ``labels`` (n,) int64 in
``0..K-1``, ``iscrowd`` (n,) bool and ``image_id``. Labels are contiguous: COCO category ids
are sorted and numbered from 0, VOC class names follow ``class_names``.

Crowd and ignored objects (COCO ``iscrowd: 1`` or ``ignore: 1``, VOC ``difficult``) stay in the
target with ``iscrowd`` set: the task drops them from the training targets (torchvision's
FCOS/RetinaNet have no ignore regions, so they must not become positives) and hands them to
``MeanAveragePrecision`` as crowd regions (detections on them are neither TP nor FP).

Annotations are checked when the dataset is built, not mid-epoch: an empty or malformed json or
xml, missing keys, an image listed but missing, empty or unreadable on disk (its header; a file
truncated inside its pixel data is named when it is read), a box outside its image by more than
:data:`BOX_TOLERANCE` pixels, a box of zero or negative size, an unknown category or an
annotation of an unlisted image is a :class:`~tasks.datacheck.DataError` naming the file and
the annotation; with ``data.skip_bad: true`` the annotation (or image) is dropped and one
warning counts them. Boxes within the tolerance are clipped to the image (COCO's float rounding).
"""

from __future__ import annotations

import abc
import json
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from tasks.datacheck import BadItems, DataError, image_problem
from tasks.detection.shapes import CLASSES as SHAPE_CLASSES
from tasks.detection.shapes import generate_shapes
from tasks.sampling import SampleKey, seeded_loader

Target = dict[str, Any]
FORMATS = ("shapes", "coco", "voc")
VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
               "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor")
DEFAULT_CACHE = Path(__file__).resolve().parents[2] / "data" / "generated" / "shapes_detection"
#: how far (pixels) a box may reach past its image before it is reported instead of clipped
BOX_TOLERANCE = 1.0
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def _empty_target(image_id: int) -> Target:
    return {"boxes": torch.zeros((0, 4)), "labels": torch.zeros(0, dtype=torch.int64),
            "iscrowd": torch.zeros(0, dtype=torch.bool), "image_id": image_id}


def box_problem(box: Sequence[float], width: float, height: float) -> str | None:
    """None for an xyxy box inside a ``width`` x ``height`` image (up to :data:`BOX_TOLERANCE`), else what is wrong."""
    x0, y0, x1, y1 = box
    if not all(np.isfinite(box)):
        return f"box {list(box)} is not finite"
    if x1 <= x0 or y1 <= y0:
        return f"box {list(box)} (xyxy) has zero or negative size"
    t = BOX_TOLERANCE
    if x0 < -t or y0 < -t or x1 > width + t or y1 > height + t:
        return f"box {list(box)} (xyxy) lies outside the {width:g}x{height:g} image"
    return None


def _make_target(boxes: list[list[float]], labels: list[int], crowd: list[bool], image_id: int,
                 width: int, height: int) -> Target:
    """xyxy boxes (checked by :func:`box_problem`) clipped to the image."""
    if not boxes:
        return _empty_target(image_id)
    xyxy = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    xyxy[:, 0::2] = xyxy[:, 0::2].clamp(0, width)
    xyxy[:, 1::2] = xyxy[:, 1::2].clamp(0, height)
    keep = (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])
    return {"boxes": xyxy[keep], "labels": torch.tensor(labels, dtype=torch.int64)[keep],
            "iscrowd": torch.tensor(crowd, dtype=torch.bool)[keep], "image_id": image_id}


class _DetectionDataset(Dataset, abc.ABC):
    """Shared ``__getitem__``: read the image, wrap as tv_tensors, apply the transform with the sample's seed."""

    class_names: tuple[str, ...]
    transform: v2.Transform | None

    def __len__(self) -> int:
        return len(self.items)

    @abc.abstractmethod
    def load(self, index: int) -> tuple[Path, Target]:
        """Image path and target of item ``index``; the COCO and VOC datasets define it."""

    def __getitem__(self, key: int | SampleKey) -> tuple[Tensor, Target]:
        index, seed = SampleKey.of(key)
        path, target = self.load(index)
        pixels = torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)
        image = tv_tensors.Image(pixels)
        target = dict(target, boxes=tv_tensors.BoundingBoxes(target["boxes"], format="XYXY",
                                                             canvas_size=tuple(pixels.shape[-2:])))
        transform = self.transform or v2.ToDtype(torch.float32, scale=True)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            image, target = transform(image, target)
        target["boxes"] = target["boxes"].as_subclass(Tensor)
        return image.as_subclass(Tensor), target


class CocoDetection(_DetectionDataset):
    """Images + a COCO ``instances`` json. Category ids are remapped to labels ``0..K-1`` in id order."""

    def __init__(self, images_dir: str | Path, annotation_file: str | Path,
                 transform: v2.Transform | None = None, skip_bad: bool = False) -> None:
        self.images_dir = Path(images_dir)
        coco = _read_coco(Path(annotation_file))
        categories = sorted(coco["categories"], key=lambda c: c["id"])
        self.category_ids = [c["id"] for c in categories]
        self.class_names = tuple(str(c["name"]) for c in categories)
        label_of = {cid: i for i, cid in enumerate(self.category_ids)}
        images = {img["id"]: img for img in coco["images"]}
        bad = BadItems(skip_bad, f"images and annotations of {annotation_file}")
        per_image: dict[int, list[dict[str, Any]]] = {i: [] for i in images}
        for ann in coco["annotations"]:
            where = f"{annotation_file}: annotation {ann.get('id')}"
            img = images.get(ann.get("image_id"))
            if img is None:
                bad.report(where, f"image_id {ann.get('image_id')!r} is not in images")
                continue
            if ann.get("category_id") not in label_of:
                bad.report(where, f"category_id {ann.get('category_id')!r} is not in categories {self.category_ids}")
                continue
            bbox = ann.get("bbox")
            if not (isinstance(bbox, list) and len(bbox) == 4):
                bad.report(where, f"bbox must be [x, y, width, height], got {bbox!r}")
                continue
            x, y, w, h = (float(v) for v in bbox)
            problem = box_problem((x, y, x + w, y + h), img["width"], img["height"])
            if problem is not None:
                bad.report(where, f"{problem} (image {img['file_name']})")
                continue
            per_image[img["id"]].append(ann)
        self.items = []
        self.sizes: list[tuple[int, int]] = []  # (width, height) of each item, for the object-size check
        for img in sorted(images.values(), key=lambda i: i["id"]):
            path = self.images_dir / img["file_name"]
            problem = image_problem(path, decode=False, size=(int(img["width"]), int(img["height"])))
            if problem is not None:
                bad.report(f"{path} (image {img['id']} of {annotation_file})", problem)
                continue
            anns = per_image[img["id"]]
            boxes = [[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)]
            labels = [label_of[a["category_id"]] for a in anns]
            crowd = [bool(a.get("iscrowd", 0)) or bool(a.get("ignore", 0)) for a in anns]
            target = _make_target(boxes, labels, crowd, int(img["id"]), int(img["width"]), int(img["height"]))
            self.items.append((path, target))
            self.sizes.append((int(img["width"]), int(img["height"])))
        bad.finish(total=len(images) + len(coco["annotations"]))
        if not self.items:
            raise DataError(f"{annotation_file}: no usable image")
        self.transform = transform

    def load(self, index: int) -> tuple[Path, Target]:
        return self.items[index]


def _read_coco(path: Path) -> dict[str, Any]:
    """A COCO instances json with its required keys, or a :class:`DataError` naming the file."""
    if not path.is_file():
        raise DataError(f"data: COCO annotation file {path} does not exist")
    if path.stat().st_size == 0:
        raise DataError(f"data: COCO annotation file {path} is empty (0 bytes)")
    try:
        coco = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"data: {path} is not valid JSON ({err})") from None
    if not isinstance(coco, dict) or not isinstance(coco.get("images"), list):
        raise DataError(f"data: {path} is not a COCO instances file (no 'images' list)")
    if not coco.get("categories"):
        raise DataError(f"data: {path} lists no categories")
    coco.setdefault("annotations", [])
    for img in coco["images"]:
        missing = [k for k in ("id", "file_name", "width", "height") if k not in img]
        if missing:
            raise DataError(f"data: {path}: image {img.get('id', img)} lacks {missing}")
    return coco


def parse_voc_xml(path: Path, class_names: Sequence[str], bad: BadItems | None = None) -> tuple[str, Target] | None:
    """One VOC annotation -> (image file name, target). ``difficult`` objects are flagged as crowd.

    VOC corners are 1-based inclusive pixel indices; they become continuous coordinates
    ``(xmin - 1, ymin - 1, xmax, ymax)``. Problems go to ``bad`` (default: raise); None when the
    whole file is skipped.
    """
    bad = bad or BadItems(False, "VOC annotations")
    try:
        root = ET.parse(path).getroot()
        size = root.find("size")
        width, height = int(size.findtext("width")), int(size.findtext("height"))
    except (ET.ParseError, AttributeError, TypeError, ValueError) as err:
        bad.report(path, f"not a VOC annotation with <size><width>/<height> ({err})")
        return None
    boxes, labels, crowd = [], [], []
    for index, obj in enumerate(root.iter("object")):
        name = obj.findtext("name", "").strip()
        if name not in class_names:
            bad.report(f"{path}: object {index}", f"class {name!r} is not in data.class_names {list(class_names)}")
            continue
        try:
            x0, y0, x1, y1 = (float(obj.find("bndbox").findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
        except (AttributeError, TypeError, ValueError):
            bad.report(f"{path}: object {index}", "no numeric <bndbox> xmin/ymin/xmax/ymax")
            continue
        problem = box_problem((x0 - 1, y0 - 1, x1, y1), width, height)
        if problem is not None:
            bad.report(f"{path}: object {index}", problem)
            continue
        boxes.append([x0 - 1, y0 - 1, x1, y1])
        labels.append(class_names.index(name))
        crowd.append(obj.findtext("difficult", "0").strip() == "1")
    image_id = int(path.stem) if path.stem.isdigit() else abs(hash(path.stem)) % (2**31)
    filename = root.findtext("filename") or f"{path.stem}.jpg"
    return filename, _make_target(boxes, labels, crowd, image_id, width, height)


class VocDetection(_DetectionDataset):
    """Pascal-VOC layout: ``Annotations/*.xml``, ``JPEGImages/``, ``ImageSets/Main/<split>.txt``.

    Without the split file every xml in ``Annotations`` is used.
    """

    def __init__(self, root: str | Path, split: str = "train", class_names: Sequence[str] = VOC_CLASSES,
                 transform: v2.Transform | None = None, skip_bad: bool = False) -> None:
        root = Path(root)
        split_file = root / "ImageSets" / "Main" / f"{split}.txt"
        if split_file.is_file():
            ids = [line.split()[0] for line in split_file.read_text().splitlines() if line.strip()]
            xmls = [root / "Annotations" / f"{i}.xml" for i in ids]
        else:
            xmls = sorted((root / "Annotations").glob("*.xml"))
        if not xmls:
            raise DataError(f"data: no VOC annotations for split {split!r} under {root}/Annotations")
        self.class_names = tuple(class_names)
        bad = BadItems(skip_bad, f"VOC annotations and images under {root}")
        self.items = []
        for xml in xmls:
            if not xml.is_file():
                bad.report(xml, f"listed in {split_file.name} but missing")
                continue
            parsed = parse_voc_xml(xml, self.class_names, bad)
            if parsed is None:
                continue
            path = root / "JPEGImages" / parsed[0]
            problem = image_problem(path, decode=False)
            if problem is not None:
                bad.report(f"{path} (of {xml.name})", problem)
                continue
            self.items.append((path, parsed[1]))
        bad.finish(total=len(xmls))
        if not self.items:
            raise DataError(f"data: no usable VOC image for split {split!r} under {root}")
        self.transform = transform

    def load(self, index: int) -> tuple[Path, Target]:
        return self.items[index]


class UnlabelledImages(Dataset):
    """Every image of a folder, without annotations (``predict``): targets carry the file name and no boxes."""

    def __init__(self, folder: str | Path, skip_bad: bool = False) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise DataError(f"data.predict_dir: {self.folder} is not a folder")
        files = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        bad = BadItems(skip_bad, f"images in {self.folder}")
        self.files = []
        for path in files:
            problem = image_problem(path, decode=False)
            if problem is None:
                self.files.append(path)
            else:
                bad.report(path, problem)
        bad.finish(total=len(files))
        if not self.files:
            raise DataError(f"data.predict_dir: no readable image in {self.folder} ({', '.join(IMAGE_SUFFIXES)})")
        self.to_float = v2.ToDtype(torch.float32, scale=True)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key: int | SampleKey) -> tuple[Tensor, Target]:
        index, _ = SampleKey.of(key)
        path = self.files[index]
        pixels = torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)
        image = self.to_float(tv_tensors.Image(pixels)).as_subclass(Tensor)
        return image, {**_empty_target(index), "file_name": path.name}


def _labels_and_crowd(inputs: tuple[Any, Target]) -> tuple[Tensor, Tensor]:
    """What :class:`v2.SanitizeBoundingBoxes` filters together with the boxes."""
    return inputs[1]["labels"], inputs[1]["iscrowd"]


def build_transforms(train: bool, flip: bool = True, scale_range: Sequence[float] = (0.75, 1.25),
                     translate: float = 0.1, photometric: bool = True) -> v2.Transform:
    """Box-aware augmentation (image and boxes move together), then float [0, 1].

    Scale jitter is a scale+translate affine on a fixed canvas (boxes stay exact: no rotation),
    followed by clamping and removal of boxes that left the image or became slivers.
    """
    steps: list[v2.Transform] = []
    if train:
        if flip:
            steps.append(v2.RandomHorizontalFlip())
        if tuple(scale_range) != (1.0, 1.0) or translate > 0:
            steps.append(v2.RandomApply([v2.RandomAffine(degrees=0.0, translate=(translate, translate),
                                                         scale=tuple(scale_range))], p=0.5))
        if photometric:
            steps.append(v2.RandomPhotometricDistort(p=0.5))
        steps += [v2.ClampBoundingBoxes(), v2.SanitizeBoundingBoxes(min_size=2.0, labels_getter=_labels_and_crowd)]
    steps.append(v2.ToDtype(torch.float32, scale=True))
    return v2.Compose(steps)


def collate(batch: Sequence[tuple[Tensor, Target]]) -> tuple[list[Tensor], list[Target]]:
    """Variable box counts (and image sizes): lists, batched later by the detector's transform."""
    images, targets = zip(*batch) if batch else ((), ())
    return list(images), list(targets)


class DetectionDataModule(L.LightningDataModule):
    """COCO-json, VOC-xml, or the embedded shapes set (``format: shapes``, generated on first use).

    Paths for ``coco`` are relative to ``root`` (absolute paths also work); ``voc`` reads
    ``root`` as a VOC year folder with ``train_split``/``val_split`` image-set names.
    After ``setup`` the datamodule knows ``class_names`` and ``num_classes``.
    """

    def __init__(
        self,
        format: str = "shapes",
        root: str | None = None,
        train_images: str = "train2017",
        train_annotations: str = "annotations/instances_train2017.json",
        val_images: str = "val2017",
        val_annotations: str = "annotations/instances_val2017.json",
        train_split: str = "train",
        val_split: str = "val",
        class_names: list[str] | None = None,
        batch_size: int = 8,
        num_workers: int = 0,
        augment: bool = True,
        flip: bool = True,
        scale_range: tuple[float, float] = (0.75, 1.25),
        translate: float = 0.1,
        photometric: bool = True,
        cache_dir: str | None = None,
        shapes: dict[str, Any] | None = None,
        seed: int = 0,
        skip_bad: bool = False,
        predict_dir: str | None = None,
    ) -> None:
        super().__init__()
        if format not in FORMATS:
            raise ValueError(f"data.format: expected one of {FORMATS}, got {format!r}")
        if format != "shapes" and root is None:
            raise ValueError(f"data.root: required for format {format!r}")
        self.format = format
        self.root = Path(root) if root is not None else None
        self.paths = {"train": (train_images, train_annotations, train_split),
                      "val": (val_images, val_annotations, val_split)}
        self.voc_classes = tuple(class_names) if class_names else VOC_CLASSES
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.augment = augment
        self.aug = {"flip": flip, "scale_range": tuple(scale_range), "translate": translate, "photometric": photometric}
        self.cache_dir = Path(cache_dir) if cache_dir is not None else DEFAULT_CACHE
        self.shapes = dict(shapes or {})
        self.seed = seed
        self.skip_bad = skip_bad
        self.predict_dir = Path(predict_dir) if predict_dir is not None else None
        self.class_names: tuple[str, ...] | None = SHAPE_CLASSES if format == "shapes" else None

    @property
    def num_classes(self) -> int | None:
        return None if self.class_names is None else len(self.class_names)

    def prepare_data(self) -> None:
        if self.format == "shapes":
            generate_shapes(self.cache_dir, **self.shapes)

    def dataset(self, stage: str, train: bool | None = None) -> _DetectionDataset:
        """The ``train`` or ``val`` dataset (augmented when ``train``; default: stage == 'train')."""
        augment = (stage == "train" and self.augment) if train is None else train
        transform = build_transforms(augment, **self.aug)
        images, annotations, split = self.paths[stage]
        if self.format == "voc":
            dataset: _DetectionDataset = VocDetection(self.root, split, self.voc_classes, transform, self.skip_bad)
        else:
            root = generate_shapes(self.cache_dir, **self.shapes) if self.format == "shapes" else self.root
            if self.format == "shapes":
                images, annotations = stage, f"annotations/{stage}.json"
            dataset = CocoDetection(root / images, root / annotations, transform, self.skip_bad)
        self.class_names = dataset.class_names
        return dataset

    def setup(self, stage: str | None = None) -> None:
        if stage in ("fit", None):
            self.train_set = self.dataset("train")
        if stage == "predict" and self.predict_dir is not None:  # unlabelled images: no annotations needed
            self.predict_set: Dataset = UnlabelledImages(self.predict_dir, self.skip_bad)
        elif stage in ("fit", "validate", "test", "predict", None):
            self.val_set = self.dataset("val")
            self.predict_set = self.val_set

    @property
    def predict_name(self) -> str:
        """The folder name predictions are written under: ``data.predict_dir``'s name, else ``val``."""
        return self.predict_dir.name if self.predict_dir is not None else "val"

    def _loader(self, dataset: Dataset, shuffle: bool) -> DataLoader:
        return seeded_loader(dataset, self.batch_size, self.num_workers, self.seed, shuffle, collate_fn=collate)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.predict_set, shuffle=False)

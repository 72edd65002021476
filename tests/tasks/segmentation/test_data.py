"""Image/mask folder loading, the generated shapes set, seeded augmentation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tasks.datacheck import DataError
from tasks.sampling import SampleKey, SeededSampler
from tasks.segmentation.data import (
    ImageFolderDataset,
    MaskFolderDataset,
    SegmentationDataModule,
    build_transforms,
    collate_images,
    read_image,
    read_mask,
)
from tasks.segmentation.shapes import CLASSES, generate_shapes


def make_folder(root, masks: dict[str, np.ndarray], mode: str = "L"):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for stem, mask in masks.items():
        Image.fromarray(np.full((*mask.shape, 3), 128, np.uint8)).save(root / "images" / f"{stem}.jpg")
        if mode == "RGB":
            colours = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0]], np.uint8)
            Image.fromarray(colours[mask]).save(root / "masks" / f"{stem}.png")
        else:
            Image.fromarray(mask.astype(np.uint8)).save(root / "masks" / f"{stem}.png")
    return root


def test_index_and_rgb_masks_read_to_class_indices(tmp_path):
    mask = np.array([[0, 1], [2, 1]])
    make_folder(tmp_path / "idx", {"a": mask})
    make_folder(tmp_path / "rgb", {"a": mask}, mode="RGB")
    np.testing.assert_array_equal(read_mask(tmp_path / "idx/masks/a.png"), mask)
    palette = [[0, 0, 0], [255, 0, 0], [0, 255, 0]]
    np.testing.assert_array_equal(read_mask(tmp_path / "rgb/masks/a.png", palette), mask)
    with pytest.raises(ValueError, match="data.palette"):
        read_mask(tmp_path / "rgb/masks/a.png")


def test_dataset_pairs_by_stem_and_reports_missing_masks(tmp_path):
    root = make_folder(tmp_path / "split", {"a": np.zeros((4, 4), int), "b": np.ones((4, 4), int)})
    dataset = MaskFolderDataset(root, build_transforms(train=False, image_size=None))
    image, mask = dataset[1]
    assert image.shape == (3, 4, 4) and image.dtype == torch.float32
    assert mask.dtype == torch.int64 and mask.unique().tolist() == [1]
    (root / "masks" / "b.png").unlink()
    with pytest.raises(DataError, match=r"b\.jpg: no mask named b\.\*"):
        MaskFolderDataset(root)
    with pytest.raises(DataError, match="no images"):
        MaskFolderDataset(tmp_path / "nothing")


def test_generated_shapes_are_deterministic_and_varied(shapes_cache):
    root = generate_shapes(shapes_cache, num_train=16, num_val=8, size=32)
    again = generate_shapes(shapes_cache, num_train=16, num_val=8, size=32)
    assert root == again
    masks = [np.asarray(Image.open(p)) for p in sorted((root / "train" / "masks").glob("*.png"))]
    present = set(np.unique(np.concatenate([m.ravel() for m in masks])).tolist())
    assert present == set(range(len(CLASSES)))
    other = generate_shapes(shapes_cache / "other", num_train=16, num_val=8, size=32)
    for a, b in zip(sorted((root / "train/images").glob("*")), sorted((other / "train/images").glob("*"))):
        np.testing.assert_array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b)))


def test_augmentation_is_a_function_of_the_sample_seed(shapes_cache):
    root = generate_shapes(shapes_cache, num_train=16, num_val=8, size=32)
    dataset = MaskFolderDataset(root / "train", build_transforms(train=True, image_size=None))
    first, second = dataset[SampleKey(3, 11)], dataset[SampleKey(3, 11)]
    torch.testing.assert_close(first[0], second[0])
    assert torch.equal(first[1], second[1])
    different = [dataset[SampleKey(3, s)][0] for s in range(12, 16)]
    assert any(not torch.allclose(first[0], d) for d in different)


def test_seeded_sampler_epochs_and_skip():
    sampler = SeededSampler(range(10), shuffle=True, seed=1)
    epoch0 = list(sampler)
    sampler.set_epoch(1)
    epoch1 = list(sampler)
    assert sorted(k.index for k in epoch0) == list(range(10)) and epoch0 != epoch1
    sampler.skip(4)
    assert list(sampler) == epoch1[4:]
    assert list(sampler) == epoch1  # skip applies once


def test_datamodule_rejects_unknown_shapes_settings():
    with pytest.raises(ValueError, match="data.shapes"):
        SegmentationDataModule(shapes={"count": 3})


# ---------------------------------------------------------------- corrupt data, checked when the data is indexed


def truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


CORRUPTIONS = {  # name -> (damage one pair of the folder, the file named, the problem named)
    "truncated image": (lambda r: truncate(r / "images/b.jpg"), "images/b.jpg", "not a readable image"),
    "empty mask": (lambda r: (r / "masks/b.png").write_bytes(b""), "masks/b.png", "empty file"),
    "mask not an image": (lambda r: (r / "masks/b.png").write_text("label,x\n"), "masks/b.png", "not a readable image"),
    "mask size differs": (
        lambda r: Image.fromarray(np.zeros((4, 5), np.uint8)).save(r / "masks/b.png"),
        "masks/b.png",
        "mask is 5x4 but its image b.jpg is 4x4",
    ),
    "mask value outside classes": (
        lambda r: Image.fromarray(np.array([[0, 1], [7, 255]], np.uint8).repeat(2, 0).repeat(2, 1)).save(
            r / "masks/b.png"
        ),
        "masks/b.png",
        r"mask values \[7\] are outside the classes 0..2",
    ),
}


@pytest.mark.parametrize("corruption", CORRUPTIONS)
def test_a_bad_pair_is_named_or_skipped_with_one_warning(corruption, tmp_path):
    damage, culprit, problem = CORRUPTIONS[corruption]
    masks = {stem: np.array([[0, 1], [2, 255]]).repeat(2, 0).repeat(2, 1) for stem in "abc"}  # 255: void, accepted
    root = make_folder(tmp_path / "split", masks)
    damage(root)
    with pytest.raises(DataError, match=problem) as error:
        MaskFolderDataset(root, num_classes=3)
    assert str(error.value).startswith(str(root / culprit)) and "data.skip_bad" in str(error.value)
    with pytest.warns(UserWarning, match="skipped 1 of 3 image/mask pairs") as caught:
        dataset = MaskFolderDataset(root, num_classes=3, skip_bad=True)
    assert len(caught) == 1
    assert [image.stem for image, _ in dataset.samples] == ["a", "c"]


def test_16_bit_images_keep_their_range_and_32_bit_images_are_named(tmp_path):
    Image.fromarray(np.array([[0, 257 * 100], [65535, 257]], np.uint16)).save(tmp_path / "a16.png")
    assert read_image(tmp_path / "a16.png")[0].tolist() == [[0, 100], [255, 1]]  # Pillow alone clips to 255
    Image.fromarray(np.zeros((2, 2), np.float32)).save(tmp_path / "b32.tif")
    with pytest.raises(DataError, match=r"b32\.tif: 32-bit image \(mode F\)"):
        ImageFolderDataset(tmp_path)


def test_datamodule_checks_mask_values_against_the_classes_when_set_up(tmp_path):
    for split in ("train", "val"):
        make_folder(tmp_path / split, {"a": np.array([[0, 3], [1, 1]])})
    SegmentationDataModule(root=str(tmp_path), num_classes=4).setup("fit")
    with pytest.raises(DataError, match=r"train/masks/a\.png: mask values \[3\]"):
        SegmentationDataModule(root=str(tmp_path), num_classes=3).setup("fit")


def test_the_task_bounds_mask_values_and_binary_mode_takes_instance_labels(tmp_path):
    from types import SimpleNamespace

    from tasks.segmentation import SegmentationTask

    for split in ("train", "val"):
        make_folder(tmp_path / split, {"a": np.array([[0, 7], [1, 2]])})  # instance ids, as StarDist masks hold
    datamodule = SegmentationDataModule(root=str(tmp_path))
    datamodule.trainer = SimpleNamespace(lightning_module=SegmentationTask(num_classes=2, mode="binary"))
    datamodule.setup("fit")  # binary: any value > 0 is foreground
    datamodule.trainer = SimpleNamespace(lightning_module=SegmentationTask(num_classes=2, mode="multiclass"))
    with pytest.raises(DataError, match=r"mask values \[2, 7\] are outside the classes 0..1 \(model.num_classes=2\)"):
        datamodule.setup("fit")


def test_predict_folder_needs_no_masks_and_names_bad_images(tmp_path):
    folder = tmp_path / "unlabelled"
    folder.mkdir()
    for stem, size in (("a", (6, 4)), ("b", (3, 5))):
        Image.fromarray(np.full((*size, 3), 90, np.uint8)).save(folder / f"{stem}.png")
    (folder / "notes.txt").write_text("not an image suffix: ignored")
    dataset = ImageFolderDataset(folder, build_transforms(train=False, image_size=None))
    assert [p.name for p in dataset.paths] == ["a.png", "b.png"] and dataset.name == "unlabelled"
    batch = collate_images([dataset[0], dataset[1]])
    assert batch["image"].shape == (2, 3, 6, 5)  # padded to the largest height and width
    assert batch["size"].tolist() == [[6, 4], [3, 5]] == batch["original"].tolist()
    assert batch["index"].tolist() == [0, 1]
    resized = ImageFolderDataset(folder, build_transforms(train=False, image_size=8))
    assert collate_images([resized[1]])["size"].tolist() == [[8, 8]] and resized[1][1] == (3, 5)

    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(folder / "a.jpg")  # a.png's output would overwrite its
    truncate(folder / "b.png")
    with pytest.raises(DataError, match=r"a\.png: same stem as a\.jpg"):
        ImageFolderDataset(folder)
    with pytest.warns(UserWarning, match="skipped 2 of 3 images"):
        assert [p.name for p in ImageFolderDataset(folder, skip_bad=True).paths] == ["a.jpg"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="data.predict_dir: no images"):
        ImageFolderDataset(tmp_path / "empty")


def test_checkpoint_preprocessing_wins_over_the_config():
    trained = SegmentationDataModule(image_size=64)
    later = SegmentationDataModule(image_size=None)
    with pytest.warns(UserWarning, match="data.image_size=None differs from the checkpoint's 64"):
        later.load_state_dict(trained.state_dict())
    assert later.image_size == 64


def test_the_readme_nuclei_script_writes_folders_the_datamodule_reads(tmp_path):
    import importlib.util

    path = Path(__file__).resolve().parents[3] / "examples" / "segmentation" / "nuclei_folders.py"
    spec = importlib.util.spec_from_file_location("nuclei_folders", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    rng = np.random.default_rng(0)
    script.write_folders(rng.integers(0, 4000, (512, 512)), rng.integers(0, 50, (512, 512)), tmp_path)
    datamodule = SegmentationDataModule(root=str(tmp_path), num_classes=2, predict_dir=str(tmp_path / "unlabelled"))
    datamodule.setup("fit")
    datamodule.setup("predict")
    assert (len(datamodule.train_set), len(datamodule.val_set), len(datamodule.predict_set)) == (12, 4, 2)

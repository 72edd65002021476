"""Image/mask folder loading, the generated shapes set, seeded augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from tasks.sampling import SampleKey, SeededSampler
from tasks.segmentation.data import MaskFolderDataset, SegmentationDataModule, build_transforms, read_mask
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
    with pytest.raises(FileNotFoundError, match="without a mask"):
        MaskFolderDataset(root)
    with pytest.raises(FileNotFoundError, match="no images"):
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

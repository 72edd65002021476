"""Semantic segmentation task: smp models, image/mask folders, mIoU/Dice, registry ``seg`` slot."""

from tasks.segmentation.data import SegmentationDataModule
from tasks.segmentation.task import SegmentationTask

TASK = SegmentationTask
DATAMODULE = SegmentationDataModule

__all__ = ["DATAMODULE", "TASK", "SegmentationDataModule", "SegmentationTask"]

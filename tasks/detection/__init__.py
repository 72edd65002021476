"""Object detection task: torchvision FCOS/RetinaNet with registry ``cls``/``box``/``centerness`` slots."""

from tasks.detection.data import DetectionDataModule
from tasks.detection.task import DetectionTask

TASK = DetectionTask
DATAMODULE = DetectionDataModule

__all__ = ["DATAMODULE", "TASK", "DetectionDataModule", "DetectionTask"]

"""Face embedding task: angular-margin ``head`` slot, optional metric ``aux`` slot, verification metrics."""

from tasks.face.data import FaceDataModule
from tasks.face.task import FaceTask

TASK = FaceTask
DATAMODULE = FaceDataModule

__all__ = ["DATAMODULE", "TASK", "FaceDataModule", "FaceTask"]

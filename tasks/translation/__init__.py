"""Image-to-image translation task: pix2pix (U-Net + PatchGAN), paired A/B folders, embedded dehazing set."""

from tasks.translation.data import TranslationDataModule
from tasks.translation.task import TranslationTask

TASK = TranslationTask
DATAMODULE = TranslationDataModule

__all__ = ["DATAMODULE", "TASK", "TranslationDataModule", "TranslationTask"]

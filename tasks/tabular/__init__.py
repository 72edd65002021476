"""Tabular task: CSV / embedded tables, MLP or ResNet over entity embeddings, any classification, margin or
regression loss in the ``target`` slot, metrics beside scikit-learn baselines."""

from tasks.tabular.data import TabularDataModule
from tasks.tabular.task import TabularTask

TASK = TabularTask
DATAMODULE = TabularDataModule

__all__ = ["DATAMODULE", "TASK", "TabularDataModule", "TabularTask"]

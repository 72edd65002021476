"""Forecasting task: windowed CSV / embedded series, DLinear / N-BEATS / GRU, a head chosen by the ``forecast`` slot."""

from tasks.forecasting.data import ForecastDataModule
from tasks.forecasting.task import ForecastingTask

TASK = ForecastingTask
DATAMODULE = ForecastDataModule

__all__ = ["DATAMODULE", "TASK", "ForecastDataModule", "ForecastingTask"]

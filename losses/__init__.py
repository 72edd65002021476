"""Loss registry and catalogue.

>>> import losses
>>> crit = losses.build("dice + 0.5*focal", defaults={"mode": "multiclass"})
>>> losses.available(family="overlap")  # doctest: +SKIP
"""

from losses import (  # noqa: F401  (populate registry)
    angular,
    classification,
    compound,
    forecasting,
    generative,
    image,
    likelihood,
    margin,
    metric,
    overlap,
    perceptual,
    region,
    regression,
)
from losses._utils import LossInputError
from losses.compose import Composite, Schedule, build, parse_spec
from losses.registry import FAMILIES, LossConfigError, available, get, info, register
from losses.slots import Slot, build_slot, check_slot_spec

__all__ = [
    "FAMILIES",
    "Composite",
    "LossConfigError",
    "LossInputError",
    "Schedule",
    "Slot",
    "available",
    "build",
    "build_slot",
    "check_slot_spec",
    "get",
    "info",
    "parse_spec",
    "register",
]

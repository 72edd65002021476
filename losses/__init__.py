"""Loss registry and catalogue.

>>> import losses
>>> crit = losses.build("dice + 0.5*focal", defaults={"mode": "multiclass"})
>>> losses.available(family="overlap")  # doctest: +SKIP
"""

from losses import classification, compound, margin, overlap, region, regression  # noqa: F401  (populate registry)
from losses._utils import LossInputError
from losses.compose import Composite, Schedule, build, build_slot, parse_spec
from losses.registry import FAMILIES, LossConfigError, available, get, info, register

__all__ = [
    "FAMILIES",
    "Composite",
    "LossConfigError",
    "LossInputError",
    "Schedule",
    "available",
    "build",
    "build_slot",
    "get",
    "info",
    "parse_spec",
    "register",
]

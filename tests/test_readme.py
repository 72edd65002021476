"""The README tells the truth about the catalogue: its count and its family lists name every registered loss."""

from __future__ import annotations

import re
from pathlib import Path

import losses

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def _catalogue() -> str:
    start = README.index("## The loss catalogue")
    return README[start : README.index("\n## ", start + 1)]


def test_catalogue_count_and_families_match_the_registry():
    count, families = map(int, re.search(r"(\d+) losses in (\d+) families", _catalogue()).groups())
    assert (count, families) == (len(losses.available()), len(losses.FAMILIES))


def test_every_registered_loss_is_listed_under_its_family():
    lines = {m.group(1): m.group(2) for m in re.finditer(r"^- \*\*(\w+)\*\*[^:]*: (.*)$", _catalogue(), re.M)}
    for family in losses.FAMILIES:
        listed = set(re.findall(r"\w+", lines.get(family, "")))
        missing = sorted(set(losses.available(family=family)) - listed)
        assert not missing, f"README's {family} line lacks {missing}"

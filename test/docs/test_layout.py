"""The README's layout and docs/architecture.md name every subpackage of the installed package, and
nothing that is not one: a new room, a moved or a removed one shows here until both are updated."""

import pkgutil
import re
from pathlib import Path

import pytest

import stark_ros

REPO = Path(__file__).resolve().parents[2]
# Generated from msg/ and srv/ by the ament_cmake build, not written here (the README names msg/ srv/).
GENERATED = {"msg", "srv"}
SUBPACKAGE = re.compile(r"stark_ros/([a-z_]+)/")


def subpackages() -> set[str]:
    return {m.name for m in pkgutil.iter_modules(stark_ros.__path__) if m.ispkg} - GENERATED


def readme_layout() -> str:
    text = (REPO / "README.md").read_text()
    section = text.split("## Layout and layers", 1)[1]
    return section.split("```", 2)[1]


def named_in(text: str) -> set[str]:
    return set(SUBPACKAGE.findall(text))


def test_the_installed_package_has_the_subpackages_of_the_source_tree():
    source = {p.parent.name for p in (REPO / "stark_ros").glob("*/__init__.py")}
    assert subpackages() == source


@pytest.mark.parametrize("doc", ["README.md layout", "docs/architecture.md"])
def test_every_subpackage_is_named_and_every_name_is_a_subpackage(doc):
    text = readme_layout() if doc.startswith("README") else (REPO / "docs" / "architecture.md").read_text()
    named = named_in(text)
    assert not subpackages() - named, f"{doc} does not name {sorted(subpackages() - named)}"
    assert not named - subpackages(), f"{doc} names {sorted(named - subpackages())}, which are no subpackages"

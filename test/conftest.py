"""Shared test fixtures: the location of ``../shared`` (with a clear message when it is missing)."""

import pytest

from stark_ros.datasets import MissingSharedDataError, shared_dir


@pytest.fixture(scope="session")
def shared():
    try:
        return shared_dir()
    except MissingSharedDataError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def stark_reference(shared):
    return shared / "stark_reference"

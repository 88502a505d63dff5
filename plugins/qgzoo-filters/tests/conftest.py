"""Fixtures: a registry with only this plugin, and reference data coarsened by operator3."""

import pytest

from qgzoo.testing.fixtures import data_cache, only_plugins, small_reference_data  # noqa: F401


@pytest.fixture(scope="session", autouse=True)
def filters_registry():
    """Only the built-in components and this plugin, whatever else is installed."""
    with only_plugins(["filters"]) as registry:
        yield registry


@pytest.fixture(scope="session")
def operator3_data(filters_registry, data_cache):
    """The small eddy reference (64 -> 16, spun up 3 years) coarsened by operator3
    (a minute or two to generate the first time, then cached)."""
    return small_reference_data({"kind": "operator3"})

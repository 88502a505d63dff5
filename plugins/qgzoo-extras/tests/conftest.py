"""Fixtures: a registry with only the plugins a test names, and small reference data."""

import pytest

from qgzoo.testing.fixtures import data_cache, only_plugins, small_reference_data  # noqa: F401


@pytest.fixture(scope="session", autouse=True)
def extras_registry():
    """Only the built-in components and this plugin, whatever else is installed."""
    with only_plugins(["extras"]) as registry:
        yield registry


@pytest.fixture(scope="session")
def small_data(data_cache):
    """``small_data(coarsener)``: the small eddy reference (64 -> 16, spun up 3 years)
    coarsened by ``coarsener`` (a dict spec); a minute or two to generate the first
    time, then read from QGZOO_CACHE."""
    return small_reference_data


@pytest.fixture(scope="session")
def operator1_data(extras_registry, small_data):
    return small_data({"kind": "operator1"})

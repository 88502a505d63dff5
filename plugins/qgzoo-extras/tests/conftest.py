"""Fixtures: a registry with only the plugins a test names, and small reference data."""

import os

import pytest

import qgzoo
from qgzoo import plugins
from qgzoo.presets import SMALL_REFERENCE
from qgzoo.spec import build_component

from qgzoo.generate import load_reference


@pytest.fixture(scope="session", autouse=True)
def extras_registry():
    """Only the built-in components and this plugin, whatever else is installed."""
    old = plugins.use_registry(plugins.load_registry(only=["extras"]))
    yield plugins.registry()
    plugins.use_registry(old)


@pytest.fixture(scope="session")
def data_cache(tmp_path_factory):
    cache = os.environ.get("QGZOO_TEST_CACHE") or str(tmp_path_factory.mktemp("cache"))
    os.environ["QGZOO_CACHE"] = cache
    return cache


def _small_data(coarsener: dict):
    return load_reference(qgzoo.ReferenceSpec(**SMALL_REFERENCE),
                          build_component("coarsener", coarsener), progress=False)


@pytest.fixture(scope="session")
def small_data(data_cache):
    """``small_data(coarsener)``: the small eddy reference (64 -> 16, spun up 3 years)
    coarsened by ``coarsener`` (a dict spec); a minute or two to generate the first
    time, then read from QGZOO_CACHE."""
    return _small_data


@pytest.fixture(scope="session")
def operator1_data(extras_registry, small_data):
    return small_data({"kind": "operator1"})

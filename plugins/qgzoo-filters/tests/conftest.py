"""Fixtures: a registry with only this plugin, and reference data coarsened by operator3."""

import os

import pytest

import qgzoo
from qgzoo import plugins
from qgzoo.presets import SMALL_REFERENCE
from qgzoo.spec import build_component

from qgzoo.generate import load_reference


@pytest.fixture(scope="session", autouse=True)
def filters_registry():
    """Only the built-in components and this plugin, whatever else is installed."""
    old = plugins.use_registry(plugins.load_registry(only=["filters"]))
    yield plugins.registry()
    plugins.use_registry(old)


@pytest.fixture(scope="session")
def data_cache(tmp_path_factory):
    cache = os.environ.get("QGZOO_TEST_CACHE") or str(tmp_path_factory.mktemp("cache"))
    os.environ["QGZOO_CACHE"] = cache
    return cache


@pytest.fixture(scope="session")
def operator3_data(filters_registry, data_cache):
    """The small eddy reference (64 -> 16, spun up 3 years) coarsened by operator3
    (a minute or two to generate the first time, then cached)."""
    return load_reference(qgzoo.ReferenceSpec(**SMALL_REFERENCE),
                          build_component("coarsener", {"kind": "operator3"}), progress=False)


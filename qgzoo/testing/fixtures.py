"""Pytest fixtures and helpers shared by qgzoo's tests and the plugins'.

Import the fixtures a conftest.py needs by name::

    from qgzoo.testing.fixtures import data_cache, small_data, small_reference  # noqa: F401

Reference stores are built once into ``$QGZOO_TEST_CACHE`` if set (kept across
sessions), else into a temporary folder, which becomes ``QGZOO_CACHE``.
"""

from __future__ import annotations

import contextlib
import os

import numpy as np
import pytest

from qgzoo.core import files, plugins
from qgzoo.core.schema import validate_component
from qgzoo.data.reference import SMALL_REFERENCE, ReferenceData, ReferenceSpec
from qgzoo.data.store import load_reference


@contextlib.contextmanager
def only_plugins(names: list[str]):
    """A registry of the built-in components and the plugins ``names`` only, while inside.

    Yields the registry; a plugin that fails to load is an AssertionError.
    """
    registry = plugins.load_registry(only=names)
    assert not registry.problems, registry.problems
    old = plugins.use_registry(registry)
    try:
        yield registry
    finally:
        plugins.use_registry(old)


def small_reference_data(coarsener: dict) -> ReferenceData:
    """The small eddy reference (64 -> 16, spun up 3 years) coarsened by ``coarsener``
    (a spec dict), read from its store in the cache (built there the first time:
    about a minute)."""
    return load_reference(ReferenceSpec(**SMALL_REFERENCE),
                          validate_component("coarsener", coarsener), progress=False)


@pytest.fixture(scope="session")
def data_cache(tmp_path_factory) -> str:
    """The cache folder of this session's reference stores (set as ``QGZOO_CACHE``): one
    folder for the whole session, whichever conftest.py imports this fixture, so that
    the suites of qgzoo and of its plugins build each store once."""
    cache = os.environ.get("QGZOO_TEST_CACHE") or str(tmp_path_factory.getbasetemp() / "cache")
    os.makedirs(cache, exist_ok=True)
    os.environ[files.ENV_CACHE] = cache
    return cache


@pytest.fixture(scope="session")
def small_reference() -> ReferenceSpec:
    """The spec of the small eddy reference."""
    return ReferenceSpec(**SMALL_REFERENCE)


@pytest.fixture(scope="session")
def small_data(data_cache) -> ReferenceData:
    """Operator1-coarsened samples of the small reference, in memory as numpy arrays."""
    stored = small_reference_data({"kind": "operator1"})
    return ReferenceData({name: np.asarray(values[:]) for name, values in stored.fields.items()},
                         stored.n_test_runs, stored.n_val_runs)

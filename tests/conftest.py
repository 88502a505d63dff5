"""Shared fixtures: a small spun-up eddy reference, generated once per session."""

import os

# The suite must not depend on which plugins happen to be installed.
os.environ["QGZOO_PLUGINS"] = ""

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import qgzoo  # noqa: E402
from qgzoo.presets import SMALL_REFERENCE  # noqa: E402
from qgzoo.generate import load_reference  # noqa: E402
from qgzoo.spec import build_component  # noqa: E402


@pytest.fixture(scope="session")
def small_reference():
    return qgzoo.ReferenceSpec(**SMALL_REFERENCE)


@pytest.fixture(scope="session")
def small_data(small_reference, tmp_path_factory):
    """Operator1-coarsened samples of the small reference (about 40 s to generate once)."""
    cache = os.environ.get("QGZOO_TEST_CACHE") or str(tmp_path_factory.mktemp("cache"))
    os.environ["QGZOO_CACHE"] = cache
    stored = load_reference(small_reference, build_component("coarsener", {"kind": "operator1"}),
                            progress=False)
    # In memory, as numpy arrays: the store itself is exercised in test_generate.py.
    return qgzoo.ReferenceData({name: np.asarray(values[:]) for name, values in stored.fields.items()},
                               stored.n_test_runs, stored.n_val_runs)

"""Fixtures: a registry of the built-ins and this plugin only, and realistic states."""

import os

import jax
import numpy as np
import pytest
from pyqg_jax.steppers import AB3Stepper, SteppedModel

import qgzoo
from qgzoo.generate import load_reference
from qgzoo import plugins, qg
from qgzoo.presets import SMALL_REFERENCE
from qgzoo.spec import build_component


@pytest.fixture(scope="session")
def physical_registry():
    registry = plugins.load_registry(only=["physical"])
    assert not registry.problems, registry.problems
    return registry


@pytest.fixture(autouse=True)
def only_this_plugin(physical_registry):
    """Every test sees the built-ins and qgzoo-physical, whatever else is installed."""
    old = plugins.use_registry(physical_registry)
    yield
    plugins.use_registry(old)


def _load_reference(spec, coarsener):
    return load_reference(spec, coarsener, progress=False)


@pytest.fixture(scope="session")
def small_data(tmp_path_factory, physical_registry):
    """The small eddy reference (64 -> 16, Operator1): about 40 s to generate, then cached."""
    cache = os.environ.get("QGZOO_TEST_CACHE") or str(tmp_path_factory.mktemp("cache"))
    os.environ["QGZOO_CACHE"] = cache
    old = plugins.use_registry(physical_registry)
    try:
        return _load_reference(qgzoo.ReferenceSpec(**SMALL_REFERENCE),
                               build_component("coarsener", {"kind": "operator1"}))
    finally:
        plugins.use_registry(old)


@pytest.fixture(scope="session")
def coarse_state(small_data):
    """(model, state): a coarsened 16 x 16 sample of a held-out run."""
    model = qg.make_model(qg.PRESETS["eddy"], 16)
    q = np.asarray(small_data.split("test").fields["q"][0, 10])
    return model, qg.state_from_q(model, jax.numpy.asarray(q))


@pytest.fixture(scope="session")
def model_state():
    """(model, state): a 32 x 32 eddy run, 2000 AB3 steps from pyqg's initial condition."""
    model = qg.make_model(qg.PRESETS["eddy"], 32)
    stepped = SteppedModel(model, AB3Stepper(dt=3600.0))
    start = stepped.initialize_stepper_state(model.create_initial_state(jax.random.key(1)))
    run = jax.jit(lambda s: jax.lax.fori_loop(0, 2000, lambda _, x: stepped.step_model(x), s))
    return model, run(start).state

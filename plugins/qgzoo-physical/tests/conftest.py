"""Fixtures: a registry of the built-ins and this plugin only, and realistic states."""

import jax
import numpy as np
import pytest
from pyqg_jax.steppers import AB3Stepper, SteppedModel

from qgzoo.physics import qg
from qgzoo.testing.fixtures import data_cache, only_plugins, small_reference_data  # noqa: F401


@pytest.fixture(autouse=True)
def only_this_plugin():
    """Every test sees the built-ins and qgzoo-physical, whatever else is installed."""
    with only_plugins(["physical"]) as registry:
        yield registry


@pytest.fixture(scope="session")
def small_data(data_cache):
    """The small eddy reference (64 -> 16, Operator1): about 40 s to generate, then cached."""
    return small_reference_data({"kind": "operator1"})


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

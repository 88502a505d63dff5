"""The rollout loss's time weights and truncated backpropagation, against the same run
written as a plain Python loop of model steps."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pydantic import ValidationError
from pyqg_jax.steppers import AB3Stepper

import qgzoo
from qgzoo.components.networks import AbstractParameterization, trainable
from qgzoo.physics import qg
from qgzoo.simulate.rollout import initial_state, parameterized_model, rollout_loss

jax.config.update("jax_enable_x64", True)

T, STEPS_PER_SAMPLE = 6, 2


def term(q, q_target):
    return jnp.mean((q - q_target) ** 2)


class Drag(AbstractParameterization):
    """A float64 closure (the CNNs compute in float32): a linear drag on q per layer,
    with a quadratic part so that the gradient depends on the state's history."""

    rate: jax.Array  # (nz,) 1/s
    quadratic: jax.Array  # (nz,) s

    def q_forcing(self, full_state, model):
        q = full_state.q
        return -self.rate[:, None, None] * q + self.quadratic[:, None, None] * q**2


@pytest.fixture(scope="module")
def case(small_data):
    lores = qg.make_model(qg.PRESETS["eddy"], 16)
    closure = Drag(jnp.array([2e-6, 1e-6]), jnp.array([0.3, 0.1]))
    params, static = eqx.partition(closure, trainable(closure))
    q_ref = jnp.asarray(small_data.fields["q"][0, :T + 1])

    def model(p):
        return parameterized_model(lores, eqx.combine(p, static), AB3Stepper(dt=3600.0))
    return model, params, q_ref


def looped(model, q_ref, weights, cut_after=()):
    """sum_t weights[t-1] term(q_t, q_ref[t]) / sum(weights), the state detached after
    the samples in ``cut_after``."""
    state, total = initial_state(model, q_ref[0]), 0.0
    for t in range(1, len(q_ref)):
        for _ in range(STEPS_PER_SAMPLE):
            state = model.step_model(state)
        total = total + weights[t - 1] * term(state.state.model_state.q, q_ref[t])
        if t in cut_after:
            state = jax.lax.stop_gradient(state)
    return total / sum(weights)


def scanned(model, q_ref, **options):
    return rollout_loss(model, q_ref, steps_per_sample=STEPS_PER_SAMPLE, chunk=2,
                        state_term=term, **options)


def test_time_decay_weighs_sample_t_by_decay_to_the_t_minus_1(case):
    model, params, q_ref = case
    m = model(params)
    for decay in (1.0, 0.5, 1.5):
        expected = looped(m, q_ref, [decay ** (t - 1) for t in range(1, T + 1)])
        assert np.isfinite(expected) and expected > 0
        np.testing.assert_allclose(scanned(m, q_ref, time_decay=decay), expected, rtol=1e-12)
    # decay < 1 shifts weight to the early samples, whose error is smaller
    assert scanned(m, q_ref, time_decay=0.5) < scanned(m, q_ref)


def flat_gradient(loss, params):
    return jax.flatten_util.ravel_pytree(jax.grad(loss)(params))[0]


def test_truncated_backpropagation_cuts_the_gradient_every_k_samples(case):
    model, params, q_ref = case
    ones = [1.0] * T
    full = flat_gradient(lambda p: scanned(model(p), q_ref), params)
    np.testing.assert_allclose(full, flat_gradient(lambda p: looped(model(p), q_ref, ones), params),
                               rtol=1e-9)
    for k, cuts in ((1, range(1, T + 1)), (2, (2, 4, 6)), (4, (4,))):
        truncated = flat_gradient(lambda p: scanned(model(p), q_ref, truncate_every=k), params)
        expected = flat_gradient(lambda p: looped(model(p), q_ref, ones, cuts), params)
        np.testing.assert_allclose(truncated, expected, rtol=1e-9, atol=1e-12 * abs(full).max())
        # the loss itself is the same; its gradient is not
        np.testing.assert_allclose(scanned(model(params), q_ref, truncate_every=k),
                                   scanned(model(params), q_ref), rtol=1e-14)
        assert np.linalg.norm(truncated - full) > 1e-3 * np.linalg.norm(full), k
    # a cut at the window's end only changes nothing
    np.testing.assert_allclose(
        flat_gradient(lambda p: scanned(model(p), q_ref, truncate_every=T), params), full,
        rtol=1e-12)


def test_the_spec_refuses_nonpositive_decay_and_negative_truncation():
    for bad in ({"time_decay": 0.0}, {"truncate_every": -1}):
        with pytest.raises(ValidationError):
            qgzoo.Experiment(training={"rollout_steps": 4, **bad})

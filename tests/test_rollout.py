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
from qgzoo.training.trainer import Setup

jax.config.update("jax_enable_x64", True)

T, STEPS_PER_SAMPLE = 4, 1


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
    return jax.flatten_util.ravel_pytree(jax.jit(jax.grad(loss))(params))[0]


def test_truncated_backpropagation_cuts_the_gradient_every_k_samples(case):
    model, params, q_ref = case
    ones = [1.0] * T
    full = flat_gradient(lambda p: scanned(model(p), q_ref), params)
    np.testing.assert_allclose(full, flat_gradient(lambda p: looped(model(p), q_ref, ones), params),
                               rtol=1e-9)
    for k, cuts in ((1, range(1, T + 1)), (3, (3,))):
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


def test_the_spec_refuses_nonpositive_decay_negative_truncation_and_long_pushforward():
    for bad in ({"time_decay": 0.0}, {"truncate_every": -1}, {"unscored_samples": 4},
                {"start_noise": -0.1}, {"curriculum_start": 2, "unscored_samples": 2}):
        with pytest.raises(ValidationError):
            qgzoo.Experiment(training={"rollout_steps": 4, **bad})


def test_pushforward_runs_the_first_samples_without_gradient_and_scores_the_rest(case):
    model, params, q_ref = case
    for unscored, decay in ((1, 1.0), (2, 0.5)):
        weights = [0.0] * unscored + [decay ** t for t in range(T - unscored)]
        np.testing.assert_allclose(
            scanned(model(params), q_ref, unscored=unscored, time_decay=decay),
            looped(model(params), q_ref, weights), rtol=1e-12)
        pushed = flat_gradient(lambda p: scanned(model(p), q_ref, unscored=unscored,
                                                 time_decay=decay), params)
        expected = flat_gradient(lambda p: looped(model(p), q_ref, weights, (unscored,)), params)
        np.testing.assert_allclose(pushed, expected, rtol=1e-9)
        # without the cut, the scored samples' gradient would reach through the first ones
        through = flat_gradient(lambda p: looped(model(p), q_ref, weights), params)
        assert np.linalg.norm(pushed - through) > 1e-3 * np.linalg.norm(through)
    with pytest.raises(ValueError, match="unscored"):
        scanned(model(params), q_ref, unscored=T)


def test_start_noise_perturbs_the_first_state_by_its_std_in_units_of_q_rms(
        small_data, small_reference):
    experiment = qgzoo.Experiment(
        reference=small_reference, network={"kind": "none"}, loss={"kind": "state_mse"},
        training={"rollout_steps": T, "start_noise": 0.1})
    setup = Setup.from_experiment(experiment, small_data.stats())
    window = jnp.asarray(small_data.fields["q"][1, :T + 1])
    key = jax.random.PRNGKey(4)
    noisy = setup.window_loss(setup.parameterization, window, None, key)
    noise = jax.random.normal(jax.random.split(key)[0], window.shape[1:], window.dtype)
    start = window[0] + 0.1 * noise * small_data.stats().std["q"][:, None, None]
    expected = rollout_loss(setup.model(setup.parameterization), window.at[0].set(start),
                            steps_per_sample=experiment.steps_per_sample,
                            chunk=experiment.training.checkpoint_chunk,
                            state_term=setup.loss.state_term)
    np.testing.assert_allclose(noisy, expected, rtol=1e-12)
    clean = rollout_loss(setup.model(setup.parameterization), window,
                         steps_per_sample=experiment.steps_per_sample,
                         chunk=experiment.training.checkpoint_chunk,
                         state_term=setup.loss.state_term)
    assert noisy > clean  # a perturbed start strays further from the reference


def pooled_term(q_pred, q_ref):
    """A window term that sees the pool: the squared difference of the pooled variances."""
    return (jnp.var(q_pred) / jnp.var(q_ref) - 1) ** 2


def test_a_window_term_scores_the_scored_states_pooled(case):
    model, params, q_ref = case
    m = model(params)
    state, states = initial_state(m, q_ref[0]), []
    for _ in range(T):
        for _ in range(STEPS_PER_SAMPLE):
            state = m.step_model(state)
        states.append(state.state.model_state.q)
    states = jnp.stack(states)
    for unscored in (0, 2):
        expected = (looped(m, q_ref, [0.0] * unscored + [1.0] * (T - unscored))
                    + pooled_term(states[unscored:], q_ref[1 + unscored:]))
        np.testing.assert_allclose(
            scanned(m, q_ref, unscored=unscored, window_term=pooled_term), expected,
            rtol=1e-12)
    # its gradient flows through the kept states
    grad = flat_gradient(lambda p: scanned(model(p), q_ref, window_term=pooled_term)
                         - scanned(model(p), q_ref), params)
    assert np.all(np.isfinite(grad)) and np.any(grad != 0)

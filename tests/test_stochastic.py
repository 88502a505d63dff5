"""Stochastic closures, ensembles of rollouts and the proper scores that train them:
the scores against their formula written out with loops, the noise against the
statistics of an AR(1) process, the ensemble rollout against its members run alone,
and training and comparison runs reproducible from their seed."""

import itertools
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pyqg_jax.steppers import AB3Stepper

import qgzoo
from qgzoo import testing
from qgzoo.components.losses import CRPSSpec, EnergyScoreSpec, StateMSESpec
from qgzoo.components.losses.crps import ensemble_crps
from qgzoo.components.losses.energy_score import ensemble_energy_score
from qgzoo.components.networks import AbstractParameterization, StochasticSpec, trainable
from qgzoo.physics import qg
from qgzoo.simulate.online import run_online
from qgzoo.simulate.rollout import initial_state, parameterized_model, rollout_loss

jax.config.update("jax_enable_x64", True)


def looped_energy_score(x, y):
    """mean_i ||x_i - y|| - sum_ij ||x_i - x_j|| / (2 M^2), ||.|| the rms, by loops."""
    m = len(x)
    norm = lambda a: np.sqrt(np.mean(np.square(a)))  # noqa: E731
    skill = sum(norm(x[i] - y) for i in range(m)) / m
    spread = sum(norm(x[i] - x[j]) for i, j in itertools.product(range(m), repeat=2))
    return skill - spread / (2 * m**2)


def looped_crps(x, y):
    """The CRPS of each point's members, by loops over points and pairs, then averaged."""
    m, values = len(x), []
    for point in np.ndindex(y.shape):
        members = [x[i][point] for i in range(m)]
        skill = sum(abs(v - y[point]) for v in members) / m
        spread = sum(abs(a - b) for a, b in itertools.product(members, repeat=2))
        values.append(skill - spread / (2 * m**2))
    return np.mean(values)


@pytest.fixture
def rng():
    return np.random.default_rng(5)


def test_scores_equal_their_formula_written_with_loops(rng):
    x, y = rng.normal(size=(4, 2, 6, 6)), rng.normal(size=(2, 6, 6))
    np.testing.assert_allclose(ensemble_energy_score(jnp.asarray(x), jnp.asarray(y)),
                               looped_energy_score(x, y), rtol=1e-12)
    np.testing.assert_allclose(ensemble_crps(jnp.asarray(x), jnp.asarray(y)), looped_crps(x, y),
                               rtol=1e-12)


def test_scores_of_known_ensembles(rng):
    y, a = rng.normal(size=(2, 6, 6)), rng.normal(size=(2, 6, 6))
    c = 3 * np.abs(a) + 1  # a shift larger than the ensemble's half-width everywhere
    rms = lambda f: np.sqrt(np.mean(f**2))  # noqa: E731
    score = {"energy": lambda x: float(ensemble_energy_score(jnp.asarray(x), jnp.asarray(y))),
             "crps": lambda x: float(ensemble_crps(jnp.asarray(x), jnp.asarray(y)))}
    for name, f in score.items():
        # members all equal to the reference: 0
        assert abs(f(np.stack([y, y, y]))) < 1e-15, name
    # equal members y + c score the distance of one: rms(c), mean |c|
    np.testing.assert_allclose(score["energy"](np.stack([y + c] * 3)), rms(c), rtol=1e-12)
    np.testing.assert_allclose(score["crps"](np.stack([y + c] * 3)), np.mean(c), rtol=1e-12)
    # two members y -+ a: skill rms(a), spread 2 rms(2a) / 8: rms(a) / 2 (mean |a| / 2)
    pair = np.stack([y - a, y + a])
    np.testing.assert_allclose(score["energy"](pair), rms(a) / 2, rtol=1e-12)
    np.testing.assert_allclose(score["crps"](pair), np.mean(np.abs(a)) / 2, rtol=1e-12)
    # the pair shifted by c: the spread stays, the skill grows, by the formula
    shifted = pair + c
    np.testing.assert_allclose(score["energy"](shifted),
                               (rms(c - a) + rms(c + a)) / 2 - rms(a) / 2, rtol=1e-12)
    # at each point |c| > |a|, so (|c - a| + |c + a|) / 2 = |c|: mean |c| - mean |a| / 2
    np.testing.assert_allclose(score["crps"](shifted),
                               np.mean(c) - np.mean(np.abs(a)) / 2, rtol=1e-12)
    assert score["energy"](shifted) > score["energy"](pair)
    assert score["crps"](shifted) > score["crps"](pair)


def test_scores_have_finite_gradients_for_equal_members(rng):
    y = jnp.asarray(rng.normal(size=(2, 4, 4)))
    same = jnp.stack([y + 1.0] * 3)
    for score in (ensemble_energy_score, ensemble_crps):
        grad = jax.grad(score)(same, y)
        assert bool(jnp.all(jnp.isfinite(grad))) and bool(jnp.any(grad != 0))


def test_a_spread_ensemble_beats_its_collapsed_mean_on_average(rng):
    """Propriety at work: members drawn like the truth score better in expectation than
    the same number of copies of the mean (what a state MSE rewards)."""
    truth, draws, mean = rng.normal(size=(400, 64)), rng.normal(size=(400, 8, 64)), 0.0
    for score in (ensemble_energy_score, ensemble_crps):
        spread = np.mean([float(score(jnp.asarray(d), jnp.asarray(t)))
                          for d, t in zip(draws, truth)])
        collapsed = np.mean([float(score(jnp.full((8, 64), mean), jnp.asarray(t)))
                             for t in truth])
        assert spread < 0.95 * collapsed, score.__name__


@pytest.fixture(scope="module")
def lores():
    return qg.make_model(qg.PRESETS["eddy"], 16)


@pytest.fixture(scope="module")
def stats(small_data):
    return small_data.stats()


def stochastic(stats, *, amplitude=0.5, correlation_steps=4.0, mean=None):
    spec = StochasticSpec(mean=mean or {"kind": "none"}, amplitude=amplitude,
                          correlation_steps=correlation_steps)
    return spec.build(stats, key=jax.random.key(0))


@pytest.mark.parametrize("correlation_steps, phi", [(4.0, np.exp(-1 / 4.0)), (0.0, 0.0)])
def test_the_noise_is_an_ar1_process_of_unit_variance_and_zero_mean(
        lores, stats, small_data, correlation_steps, phi):
    closure = stochastic(stats, correlation_steps=correlation_steps)
    assert closure.memory == pytest.approx(phi, rel=1e-15)
    q = jnp.asarray(small_data.fields["q"][0, 0])
    full = lores.get_full_state(qg.state_from_q(lores, q))
    aux = closure.init_aux(qg.state_from_q(lores, q), lores, jax.random.PRNGKey(3))

    def step(aux, _):
        forcing, aux = closure.step_forcing(full, aux, lores)
        return aux, (forcing, aux[1])
    _, (forcings, eta) = jax.lax.scan(step, aux, None, length=2000)
    eta = np.asarray(eta)  # (steps, nz, ny, nx)
    np.testing.assert_allclose(eta.mean(axis=(-2, -1)), 0, atol=1e-12)  # q is conserved
    n = 16 * 16
    # variance (1 - 1/n) after the mean's removal; 2000 steps of 512 points: +- a few %
    np.testing.assert_allclose(eta.var(axis=(0, 2, 3)), 1 - 1 / n, rtol=0.05)
    lag1 = np.mean(eta[1:] * eta[:-1]) / np.mean(eta * eta)
    np.testing.assert_allclose(lag1, phi, atol=0.03)
    # the forcing is the mean's (none: 0) plus amplitude x the forcing's rms x eta
    std = np.asarray(stats.std["q_forcing_total"])
    np.testing.assert_allclose(np.asarray(forcings), 0.5 * std[:, None, None] * eta,
                               rtol=1e-12)


class Drag(AbstractParameterization):
    rate: jax.Array

    def q_forcing(self, full_state, model):
        return -self.rate * full_state.q


def window(small_data, length=4):
    return jnp.asarray(small_data.fields["q"][0, :length])


def test_an_ensemble_rollout_is_its_members_run_alone(lores, stats, small_data):
    closure = stochastic(stats, mean=None)
    model = parameterized_model(lores, closure, AB3Stepper(dt=3600.0))
    q_ref, keys = window(small_data), jax.random.split(jax.random.PRNGKey(7), 3)
    loss = StateMSESpec(scales="all").build(stats, lores)
    run = lambda **kw: rollout_loss(model, q_ref, steps_per_sample=2, chunk=2, **kw)  # noqa
    together = run(state_term=loss.ensemble_term, keys=keys)
    alone = [run(state_term=loss.state_term, keys=k) for k in keys]
    np.testing.assert_allclose(together, np.mean(alone), rtol=1e-12)
    assert len({float(a) for a in alone}) == 3, "members with other keys ran alike"
    # the energy score of an ensemble of equal (deterministic) members is one member's
    drag = parameterized_model(lores, Drag(jnp.asarray(1e-6)), AB3Stepper(dt=3600.0))
    score = EnergyScoreSpec().build(stats, lores)
    equal = rollout_loss(drag, q_ref, steps_per_sample=2, chunk=2,
                         state_term=score.ensemble_term, keys=keys)
    one = rollout_loss(drag, q_ref, steps_per_sample=2, chunk=2, state_term=score.state_term)
    np.testing.assert_allclose(equal, one, rtol=1e-12)


def test_proper_scores_reach_the_noise_amplitude_through_the_ensemble(lores, stats, small_data):
    """Its gradient with respect to the noise amplitude is finite and non-zero through
    the ensemble rollout (the amplitude is trainable)."""
    closure = stochastic(stats, amplitude=0.3)
    params, static = eqx.partition(closure, trainable(closure))
    keys = jax.random.split(jax.random.PRNGKey(2), 4)
    for spec in (EnergyScoreSpec(), CRPSSpec()):
        loss = spec.build(stats, lores)

        def total(p):
            model = parameterized_model(lores, eqx.combine(p, static), AB3Stepper(dt=3600.0))
            return rollout_loss(model, window(small_data), steps_per_sample=2, chunk=2,
                                state_term=loss.ensemble_term, keys=keys)
        grad = jax.jit(jax.grad(total))(params)
        assert np.all(np.isfinite(grad.log_amplitude)) and np.any(grad.log_amplitude != 0)


def test_online_runs_of_a_stochastic_closure_are_reproducible(lores, stats, small_data):
    q0 = jnp.asarray(small_data.fields["q"][0, :3:2])
    run = lambda closure: run_online(lores, closure, AB3Stepper(dt=3600.0), q0,  # noqa: E731
                                     n_steps=12, snapshot_every=6, n_snapshots=1).snapshots
    first, again = run(stochastic(stats)), run(stochastic(stats))
    np.testing.assert_array_equal(first, again)
    quieter = run(stochastic(stats, amplitude=0.05))
    assert not np.allclose(first, quieter)
    assert not np.allclose(first[0], first[1])  # the runs start apart and draw apart


def test_the_conformance_kit_catches_noise_that_ignores_its_key(stats):
    class KeylessNoise(AbstractParameterization):
        def q_forcing(self, full_state, model):
            return jnp.zeros_like(full_state.q)

        def init_aux(self, model_state, model, key):
            return jnp.zeros_like(model_state.q)

        def step_forcing(self, full_state, aux, model):
            return 1e-12 * jnp.ones_like(full_state.q), aux

    class KeylessSpec(qgzoo.NetworkSpec):
        kind: Literal["keyless"] = "keyless"

        def build(self, stats, *, key, target="q_forcing_total"):
            return KeylessNoise()

    with pytest.raises(AssertionError, match="do(es)? not depend on the key"):
        testing.check_network(KeylessSpec(), registered=False, precisions=("double",))


@pytest.mark.slow
def test_training_a_stochastic_cnn_with_the_energy_score_is_seeded(small_data, small_reference):
    experiment = qgzoo.Experiment(
        reference=small_reference,
        network={"kind": "stochastic", "amplitude": 0.2, "correlation_steps": 6,
                 "mean": {"kind": "cnn", "channels": [4], "kernel_sizes": [3, 3]}},
        loss={"kind": "energy_score"}, stepper={"kind": "ab3", "dt": 3600.0},
        training={"steps": 3, "batch_size": 2, "rollout_steps": 2, "members": 3})
    first = qgzoo.train(experiment, data=small_data, progress=False)
    again = qgzoo.train(experiment, data=small_data, progress=False)
    losses = [h["loss"] for h in first.history]
    assert all(np.isfinite(losses)) and first.skipped == 0
    assert losses == [h["loss"] for h in again.history]
    start = np.log(0.2)
    assert np.all(first.parameterization.log_amplitude != start)  # the amplitude trains
    other = qgzoo.train(experiment.model_copy(update={"training": experiment.training.model_copy(
        update={"seed": 1})}), data=small_data, progress=False)
    assert [h["loss"] for h in other.history] != losses


def test_a_stochastic_closure_starts_from_a_trained_network(small_data, small_reference,
                                                            tmp_path):
    cnn = {"kind": "cnn", "channels": [4], "kernel_sizes": [3, 3]}
    offline = qgzoo.Experiment(reference=small_reference, network=cnn,
                               loss={"kind": "forcing_mse"},
                               training={"steps": 2, "batch_size": 2, "rollout_steps": 0})
    start = qgzoo.train(offline, out=tmp_path / "offline", data=small_data, progress=False)

    def wrapped(mean):
        return qgzoo.Experiment(
            reference=small_reference, network={"kind": "stochastic", "mean": mean},
            loss={"kind": "energy_score"},
            training={"steps": 0, "rollout_steps": 2, "members": 2,
                      "init_from": str(tmp_path / "offline")})
    kept = qgzoo.train(wrapped(cnn), data=small_data, progress=False).parameterization
    for mine, theirs in zip(jax.tree.leaves(eqx.filter(kept.mean, eqx.is_array)),
                            jax.tree.leaves(eqx.filter(start.parameterization, eqx.is_array)),
                            strict=True):
        np.testing.assert_array_equal(mine, theirs)
    np.testing.assert_allclose(np.exp(kept.log_amplitude), 0.1, rtol=1e-12)
    with pytest.raises(qgzoo.UserError, match="init_from: .* has network"):
        qgzoo.train(wrapped({**cnn, "channels": [8]}), data=small_data, progress=False)


def test_pyqg_jax_makes_a_stochastic_model_state_without_a_key(lores, stats):
    """pyqg-jax's own ``create_initial_state(key)`` calls ``init_aux`` with no key: the
    noise then starts from ``PRNGKey(0)``, as ``initial_state`` does by default."""
    model = parameterized_model(lores, stochastic(stats), AB3Stepper(dt=3600.0))
    state = model.create_initial_state(jax.random.key(0))
    from_q = initial_state(model, state.state.model_state.q)
    for made, default in zip(jax.tree.leaves(state.state.param_aux.value),
                             jax.tree.leaves(from_q.state.param_aux.value)):
        np.testing.assert_array_equal(made, default)

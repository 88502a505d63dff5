"""Online runs against a hand-written pyqg-jax loop; blow-ups; cost."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pyqg_jax.steppers import AB3Stepper, SteppedModel

from qgzoo.components.networks import AbstractParameterization, CNNSpec, NoClosure
from qgzoo.simulate.online import cost_ms_per_step, run_online

DT = 3600.0
N_STEPS, EVERY, N_SNAPSHOTS = 300, 30, 3


class GatedAntiDamping(AbstractParameterization):
    """S = +rate * q (anti-damping) in runs whose RMS q exceeds a gate; 0 elsewhere."""

    rate: float  # 1/s
    gate: float  # 1/s

    def q_forcing(self, full_state, model):
        rms = jnp.sqrt(jnp.mean(full_state.q**2))
        return jnp.where(rms > self.gate, self.rate * full_state.q, 0.0)


@pytest.fixture(scope="module")
def lores(small_reference):
    return small_reference.lores_model()


@pytest.fixture(scope="module")
def q0(small_data):
    """Held-out states: two as they are, one amplified three times, one NaN."""
    held_out = np.asarray(small_data.split("test").fields["q"][0])
    nan = np.full_like(held_out[0], np.nan)
    return np.stack([held_out[0], 3 * held_out[100], held_out[200], nan])


@pytest.fixture(scope="module")
def plain(lores, q0):
    return run_online(lores, NoClosure(), AB3Stepper(dt=DT), q0, n_steps=N_STEPS,
                      snapshot_every=EVERY, n_snapshots=N_SNAPSHOTS)


def _hand_written_run(lores, q):
    """q and per-layer mean u^2 + v^2 after every step of a plain scan of SteppedModel."""
    model = SteppedModel(lores, AB3Stepper(dt=DT))
    state = model.initialize_stepper_state(
        lores.create_initial_state(jax.random.key(0)).update(q=jnp.asarray(q)))

    def step(state, _):
        state = model.step_model(state)
        full = model.get_full_state(state)
        return state, (full.q, jnp.mean(full.u**2 + full.v**2, axis=(-2, -1)))

    return jax.jit(lambda s: jax.lax.scan(step, s, length=N_STEPS)[1])(state)


def _assert_close(actual, expected):
    scale = np.max(np.abs(expected))
    np.testing.assert_array_less(np.max(np.abs(actual - expected)), 1e-12 * scale)


def test_no_closure_run_matches_a_hand_written_pyqg_jax_loop(lores, q0, plain):
    assert plain.snapshots.shape == (4, N_SNAPSHOTS, 2, 16, 16)
    assert plain.ke.shape == (4, N_STEPS // EVERY, 2)
    np.testing.assert_array_equal(plain.snapshot_steps, [240, 270, 300])
    np.testing.assert_array_equal(plain.ke_steps, EVERY * np.arange(1, 11))
    np.testing.assert_array_equal(plain.blowup_step, [-1, -1, -1, 0])
    np.testing.assert_array_equal(plain.stable, [True, True, True, False])
    assert plain.wall_seconds > 0 and plain.compile_seconds > 0
    for run in range(3):
        q, ke = (np.asarray(a) for a in _hand_written_run(lores, q0[run]))
        assert np.isfinite(q).all()
        _assert_close(plain.snapshots[run], q[plain.snapshot_steps - 1])
        _assert_close(plain.ke[run], ke[plain.ke_steps - 1])


def test_a_non_finite_initial_state_blows_up_at_step_zero_without_raising(plain):
    assert plain.blowup_step[3] == 0
    assert np.isnan(plain.snapshots[3]).all() and np.isnan(plain.ke[3]).all()


@pytest.mark.parametrize("max_ke_ratio", [1e3, None])
def test_an_anti_damping_closure_blows_up_one_run_and_leaves_the_others_alone(
        lores, q0, plain, max_ke_ratio):
    gate = 2 * float(np.sqrt(np.mean(q0[0] ** 2)))
    closure = GatedAntiDamping(rate=1e-3, gate=gate)
    run = run_online(lores, closure, AB3Stepper(dt=DT), q0, n_steps=N_STEPS,
                     snapshot_every=EVERY, n_snapshots=N_SNAPSHOTS, max_ke_ratio=max_ke_ratio)
    step = run.blowup_step[1]
    assert 1 <= step <= N_STEPS
    np.testing.assert_array_equal(run.blowup_step[[0, 2, 3]], [-1, -1, 0])
    ended = run.ke_steps >= step
    assert np.isnan(run.ke[1, ended]).all() and np.isfinite(run.ke[1, ~ended]).all()
    assert np.isnan(run.snapshots[1][run.snapshot_steps >= step]).all()
    for other in (0, 2):  # the gate stayed shut: exactly the unparameterized runs
        _assert_close(run.snapshots[other], plain.snapshots[other])
        _assert_close(run.ke[other], plain.ke[other])


def test_energy_threshold_catches_a_blow_up_before_q_turns_non_finite(lores, q0):
    closure = GatedAntiDamping(rate=1e-3, gate=0.0)
    steps = [run_online(lores, closure, AB3Stepper(dt=DT), q0[:1], n_steps=N_STEPS,
                        snapshot_every=1, n_snapshots=1, max_ke_ratio=ratio).blowup_step[0]
             for ratio in (1e3, None)]
    assert 1 <= steps[0] < steps[1] <= N_STEPS


def test_a_network_costs_more_per_step_than_no_closure(lores, q0, small_data):
    stats = small_data.split("train").stats()
    cnn = CNNSpec(channels=(32, 32)).build(stats, key=jax.random.key(0))
    costs = [cost_ms_per_step(lores, closure, AB3Stepper(dt=DT), q0[0], 50, repeats=3)
             for closure in (NoClosure(), cnn)]
    assert all(math.isfinite(c) and c > 0 for c in costs)
    assert costs[1] > costs[0]


@pytest.mark.parametrize("n_steps, every, n_snapshots", [(10, 3, 1), (10, 5, 3), (0, 1, 0)])
def test_inconsistent_run_lengths_are_refused(lores, q0, n_steps, every, n_snapshots):
    with pytest.raises(ValueError):
        run_online(lores, NoClosure(), AB3Stepper(dt=DT), q0, n_steps=n_steps,
                   snapshot_every=every, n_snapshots=n_snapshots)

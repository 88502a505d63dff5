"""Ensemble Kalman inversion of the closures' constants: a known constant recovered from
the climate it makes, and the trainer's EKI runs, logs and resumes."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import qgzoo
from qgzoo.data.reference import SMALL_REFERENCE
from qgzoo.training.calibration import (
    band_masks, eki_update, ensemble_observables, misfit)
from qgzoo.training.trained import CHECKPOINT, load

jax.config.update("jax_enable_x64", True)


def test_eki_recovers_the_smagorinsky_constant_from_the_climate_it_makes(small_data):
    # observables of a run with C = 0.15; the ensemble starts around C = 0.1 and sees the
    # same initial state, so its forward map is deterministic in C
    spec = {"kind": "smagorinsky", "constant": 0.1, "trainable": ["constant"]}
    closure = qgzoo.Experiment(network=spec).network.build(None)
    lores = qgzoo.Experiment(reference=SMALL_REFERENCE).reference.lores_model()
    stepper = qgzoo.Experiment().stepper.build()
    q0 = jnp.asarray(np.asarray(small_data.fields["q"][0, 0]))
    masks = band_masks(lores, 3)
    run = dict(n_steps=240, average_from=120, average_every=6, masks=masks)

    def observables(log_factors):
        members = eqx.tree_at(lambda c: c.constant.log_factor, closure, jnp.asarray(log_factors))
        return ensemble_observables(lores, members, stepper, q0, **run)

    truth = np.log(1.5)
    y = observables(np.array([truth]))[0]
    gamma = np.full(y.shape, 1e-4)
    u = np.random.default_rng(0).normal(0.0, 0.3, size=(8, 1))
    first = None
    for step in range(4):
        g = observables(u[:, 0])
        first = misfit(g, y, gamma).mean() if first is None else first
        u = eki_update(u, g, y, gamma, np.random.default_rng(step))
    recovered = 0.1 * np.exp(u.mean())
    assert abs(recovered / 0.15 - 1) < 0.03, recovered
    assert misfit(observables(u.mean(axis=0)), y, gamma).mean() < 0.01 * first


def _experiment(steps):
    return qgzoo.Experiment(
        reference=SMALL_REFERENCE, coarsener={"kind": "operator1"},
        network={"kind": "backscatter_biharmonic", "trainable": ["smag_constant",
                                                                  "back_constant"]},
        loss={"kind": "forcing_mse"},
        training={"method": "eki", "rollout_steps": 0, "steps": steps, "checkpoint_every": 1,
                  "eki": {"members": 4, "run_days": 4, "average_days": 2, "block_days": 2,
                          "bands": 2, "prior_std": 0.2}})


def test_the_trainer_calibrates_logs_and_resumes_to_the_same_constants(small_data, tmp_path):
    whole = qgzoo.train(_experiment(2), out=tmp_path / "whole", data=small_data,
                        progress=False)
    assert [h["step"] for h in whole.history] == [0, 1]
    record = whole.history[-1]
    assert record["blown_up"] == 0 and np.isfinite(record["loss"]) and record["loss"] > 0
    assert set(record["target"]) == set(record["observables"]) == set(record["noise"])
    # the saved closure is the mean of the ensemble the last iteration made
    constants = whole.parameterization.constants()
    expected = np.array([0.08, 0.99]) * np.exp(record["next_mean"])
    np.testing.assert_allclose([constants["smag_constant"], constants["back_constant"]],
                               expected, rtol=1e-12)
    assert load(tmp_path / "whole").parameterization.constants() == constants

    qgzoo.train(_experiment(2), out=tmp_path / "parts", data=small_data, progress=False,
                stop_after=1)
    assert (tmp_path / "parts" / CHECKPOINT).exists()
    resumed = qgzoo.train(_experiment(2), out=tmp_path / "parts", data=small_data,
                          progress=False)
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in whole.history]
    assert resumed.parameterization.constants() == constants

"""Ensemble Kalman inversion: the update against the Kalman formula on linear maps, and
the observables against real-space sums and hand-made samples."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qgzoo.core.errors import UserError
from qgzoo.physics import qg
from qgzoo.training.calibration import (
    band_masks, data_observables, eki_update, misfit, observable_names, state_moments)
from qgzoo.training.experiment import Experiment

jax.config.update("jax_enable_x64", True)


def _linear_problem(rng, p, m, members):
    a = rng.normal(size=(m, p))
    truth = rng.normal(size=p)
    u = rng.normal(size=(members, p))
    return a, truth, u


def test_with_as_many_observables_as_parameters_and_no_noise_one_update_lands_on_the_truth():
    # linear G = A u with A invertible: C_ug (C_gg)^-1 = A^-1, so every member moves to A^-1 y
    a, truth, u = _linear_problem(np.random.default_rng(0), 3, 3, 10)
    new = eki_update(u, u @ a.T, a @ truth, np.full(3, 1e-24), np.random.default_rng(1))
    np.testing.assert_allclose(new, np.broadcast_to(truth, new.shape), rtol=0, atol=1e-9)


def test_the_mean_moves_by_the_kalman_gain_of_the_ensemble_covariance():
    # with noise, the mean update is C A^T (A C A^T + Gamma)^-1 (y + mean(eta) - A mean(u)),
    # C the ensemble covariance of u: written here from C, not from the ensemble's C_ug, C_gg
    rng = np.random.default_rng(2)
    a, truth, u = _linear_problem(rng, 2, 5, 12)
    gamma = rng.uniform(0.1, 0.5, size=5)
    y = a @ truth
    eta = np.random.default_rng(7).normal(size=(12, 5)) * np.sqrt(gamma)
    new = eki_update(u, u @ a.T, y, gamma, np.random.default_rng(7))
    c = np.cov(u.T, ddof=1)
    gain = c @ a.T @ np.linalg.inv(a @ c @ a.T + np.diag(gamma))
    expected = u + (gain @ (y + eta - u @ a.T).T).T
    np.testing.assert_allclose(new, expected, rtol=1e-12)


def test_iterations_on_an_overdetermined_linear_map_approach_the_truth():
    rng = np.random.default_rng(3)
    a, truth, u = _linear_problem(rng, 2, 6, 20)
    gamma = np.full(6, 1e-4)
    for step in range(8):
        u = eki_update(u, u @ a.T, a @ truth, gamma, np.random.default_rng(step))
    assert np.abs(u.mean(axis=0) - truth).max() < 0.02
    assert np.mean(misfit(u @ a.T, a @ truth, gamma)) < 10


def test_blown_up_members_sit_out_and_come_back_at_the_mean():
    a, truth, u = _linear_problem(np.random.default_rng(4), 2, 2, 6)
    g = u @ a.T
    g[[1, 4]] = np.nan
    new = eki_update(u, g, a @ truth, np.full(2, 1e-24), np.random.default_rng(0))
    np.testing.assert_allclose(new, np.broadcast_to(truth, new.shape), atol=1e-9)
    g[[0, 2, 3]] = np.nan
    with pytest.raises(UserError, match="1 of 6 members ran stably"):
        eki_update(u, g, a @ truth, np.ones(2), np.random.default_rng(0))


def test_a_single_mode_falls_in_its_band_with_the_energy_enstrophy_and_variance_by_hand():
    # psi_z = A_z cos(k x): u = 0, v = -A_z k sin(k x), so mean(u^2 + v^2) = A_z^2 k^2 / 2,
    # zeta = -k^2 psi, and q_1 = -k^2 psi_1 + F1 (psi_2 - psi_1) (q_2 likewise)
    model = qg.make_model(qg.PRESETS["eddy"], 16)
    masks = band_masks(model, 3)
    names = observable_names(2, 3)
    f1, f2 = float(model.F1), float(model.F2)
    x = np.arange(16) * float(model.L) / 16
    amplitude = np.array([1e4, 3e3])
    # |k| = 1, 2 and 4 times 2 pi / L: one in each band, edges 1, 1.72, 2.96, 5.10 (kmax)
    for n, band in ((1, 0), (2, 1), (4, 2)):
        k = 2 * np.pi * n / float(model.L)
        wave = np.broadcast_to(np.cos(k * x), (16, 16))
        a1, a2 = amplitude
        q_amplitude = np.array([-k**2 * a1 + f1 * (a2 - a1), -k**2 * a2 + f2 * (a1 - a2)])
        q = q_amplitude[:, None, None] * wave
        moments = dict(zip(names, np.asarray(state_moments(model, jnp.asarray(q), masks))))
        for z in (1, 2):
            ke = amplitude[z - 1]**2 * k**2 / 2
            for b in range(3):
                assert moments[f"KE{z}_band{b + 1}"] == pytest.approx(
                    ke if b == band else 0.0, rel=1e-9, abs=1e-12 * ke), (n, z, b)
            assert moments[f"enstrophy{z}"] == pytest.approx(amplitude[z - 1]**2 * k**4 / 2,
                                                             rel=1e-9)
            assert moments[f"q_variance{z}"] == pytest.approx(q_amplitude[z - 1]**2 / 2,
                                                              rel=1e-9)


def test_the_data_noise_is_the_spread_of_block_means_scaled_to_the_averaging_time():
    # q = a_t * pattern: every moment of sample t is a_t^2 times the pattern's, so the log
    # observables of a block are log(mean a_t^2) plus a constant
    model = qg.make_model(qg.PRESETS["eddy"], 16)
    masks = band_masks(model, 2)
    rng = np.random.default_rng(5)
    pattern = 1e-6 * rng.normal(size=(2, 16, 16))
    amplitude = rng.uniform(0.5, 2.0, size=(2, 12))
    q = amplitude[..., None, None, None] * pattern
    y, gamma = data_observables(model, q, masks, block=4, average=8)
    base = np.log(np.asarray(state_moments(model, jnp.asarray(pattern), masks)))
    np.testing.assert_allclose(y, base + np.log(np.mean(amplitude**2)), rtol=1e-10)
    blocks = np.log((amplitude**2).reshape(6, 4).mean(axis=1))
    np.testing.assert_allclose(gamma, np.full_like(y, np.var(blocks, ddof=1) * 4 / 8),
                               rtol=1e-9)
    with pytest.raises(UserError, match="fewer than 2 blocks"):
        data_observables(model, q[:1], masks, block=12, average=8)


def test_the_spec_refuses_rollouts_and_an_averaging_longer_than_the_run():
    base = {"network": {"kind": "cnn"}, "training": {"method": "eki", "rollout_steps": 0}}
    Experiment.model_validate(base)  # the loss is not used: its windows are not checked
    with pytest.raises(ValueError, match="method eki does not train on rollout windows"):
        Experiment.model_validate({**base, "training": {"method": "eki", "rollout_steps": 2}})
    with pytest.raises(ValueError, match="average_days .* must not exceed"):
        Experiment.model_validate({**base, "training": {
            "method": "eki", "rollout_steps": 0, "eki": {"run_days": 10, "average_days": 20}}})

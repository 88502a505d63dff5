"""The hybrid symbolic closure: its terms against a numpy evaluation written with full
complex FFTs, and the closed-form fit against numpy's least squares."""

import jax
import numpy as np
import pytest

from qgzoo.components.networks.symbolic import (
    ROSS2023_EDDY_TERMS, SymbolicSpec, evaluate_term, parse_term)
from qgzoo.core.errors import UserError
from qgzoo.core.fields import FIELDS
from qgzoo.data.reference import ReferenceData
from qgzoo.physics import qg
from qgzoo.training.experiment import Experiment
from qgzoo.training.trainer import Setup, fit_least_squares, train

jax.config.update("jax_enable_x64", True)

N = 32


def _band_limited_q(rng, n_samples, nz=2, n=N, band=N // 8):
    """Random q (samples, nz, n, n) with modes |k|, |l| <= band only, so that the cubic
    products in the terms stay below Nyquist (no aliasing, nothing at Nyquist)."""
    spectrum = rng.normal(size=(n_samples, nz, n, n)) + 1j * rng.normal(size=(n_samples, nz, n, n))
    wavenumber = np.abs(np.fft.fftfreq(n, 1 / n))
    spectrum[..., (wavenumber[:, None] > band) | (wavenumber[None, :] > band)] = 0
    return 1e-5 * np.real(np.fft.ifft2(spectrum))


def _numpy_term(text, q, u, v, ubg, length):
    """The term on one sample (nz, n, n), with numpy's complex FFT and its own wavenumbers."""
    n = q.shape[-1]
    k = 2 * np.pi / length * np.fft.fftfreq(n, 1 / n)
    kx, ky = k[None, :], k[:, None]
    spectral = lambda f, factor: np.real(np.fft.ifft2(factor * np.fft.fft2(f)))
    ops = {"ddx": lambda f: spectral(f, 1j * kx), "ddy": lambda f: spectral(f, 1j * ky),
           "laplacian": lambda f: spectral(f, -(kx**2 + ky**2))}
    ops["advected"] = lambda f: ops["ddx"](f * (u + ubg[:, None, None])) + ops["ddy"](f * v)
    # evaluate the text itself, innermost call first
    while "(" in text:
        name, inner = text.split("(", 1)
        return ops[name](_numpy_term(inner[:-1], q, u, v, ubg, length))
    return {"q": q, "u": u, "v": v}[text]


def test_every_term_of_ross_et_al_equals_an_independent_numpy_evaluation():
    model = qg.make_model(qg.PRESETS["eddy"], N)
    q = _band_limited_q(np.random.default_rng(0), 1)[0]
    full = model.get_full_state(qg.state_from_q(model, q))
    u, v = np.asarray(full.u), np.asarray(full.v)
    for text in ROSS2023_EDDY_TERMS:
        ours = np.asarray(evaluate_term(parse_term(text), full, model))
        expected = _numpy_term(text, q, u, v, np.asarray(model.Ubg), float(model.L))
        assert np.abs(expected).max() > 0
        np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-10 * np.abs(expected).max(),
                                   err_msg=text)


def test_terms_are_parsed_and_bad_ones_named():
    assert parse_term("laplacian( advected(q) )") == (("laplacian", "advected"), "q")
    assert parse_term("v") == ((), "v")
    with pytest.raises(ValueError, match="unknown operator 'curl'"):
        parse_term("curl(u)")
    with pytest.raises(ValueError, match="'w' is not a field"):
        parse_term("ddx(w)")
    with pytest.raises(ValueError, match="must not repeat"):
        SymbolicSpec(terms=["ddx(q)", "ddx( q )"])


def _experiment(terms, ridge=0.0):
    reference = dict(hires_nx=2 * N, lores_nx=N, n_runs=3, n_test_runs=1, n_samples=6, n_hires_snapshots=0,
                     spinup_steps=0, coarseners=[{"kind": "operator1"}])
    return Experiment.model_validate(dict(
        reference=reference, network={"kind": "symbolic", "terms": terms},
        loss={"kind": "forcing_mse"},
        training={"rollout_steps": 0, "method": "least_squares", "ridge": ridge}))


def _data(experiment, target):
    """Band-limited q in 3 runs of 6 samples and a target forcing made by ``target(q)``."""
    q = _band_limited_q(np.random.default_rng(1), 18).reshape(3, 6, 2, N, N)
    fields = {name: np.zeros_like(q) for name in FIELDS}
    fields["q"] = q
    fields["q_forcing_total"] = np.stack([[target(sample) for sample in run] for run in q])
    return ReferenceData(fields, n_test_runs=experiment.reference.n_test_runs)


def test_the_closed_form_fit_recovers_the_coefficients_of_a_target_made_of_the_terms():
    terms = ["laplacian(laplacian(q))", "laplacian(advected(q))", "ddx(v)"]
    experiment = _experiment(terms)
    model = experiment.reference.lores_model()
    coefficients = np.array([[-3e8, 2e4, 0.0], [5e7, -1e4, 1e-8]])  # (layer, term), SI units

    def target(q):
        full = model.get_full_state(qg.state_from_q(model, q))
        values = np.stack([np.asarray(evaluate_term(parse_term(t), full, model)) for t in terms])
        return np.einsum("zj,jzyx->zyx", coefficients, values)

    data = _data(experiment, target)
    trained = train(experiment, data=data, progress=False)
    closure = trained.parameterization
    recovered = (np.asarray(closure.weights) * np.asarray(closure.output_scale.std)[:, None]
                 / np.asarray(closure.feature_scale.std))
    np.testing.assert_allclose(recovered, coefficients, rtol=1e-8, atol=1e-20)
    test_q = data.split("test").fields["q"][0, 0]
    np.testing.assert_allclose(np.asarray(closure.q_forcing_at(model, test_q)), target(test_q),
                               rtol=1e-8, atol=1e-8 * np.abs(target(test_q)).max())
    [record] = trained.history
    assert record["loss"] < 1e-12 and np.allclose(record["r2"], 1.0)


def test_the_fit_of_a_noisy_target_is_numpy_least_squares_and_ridge_shrinks_it():
    terms = ["laplacian(q)", "laplacian(laplacian(q))"]
    rng = np.random.default_rng(2)
    experiment = _experiment(terms)
    model = experiment.reference.lores_model()
    data = _data(experiment, lambda q: 1e3 * q + 1e-9 * rng.normal(size=q.shape))
    train_data = data.split("train")
    setup = Setup.from_experiment(experiment, train_data.stats())
    closure, _ = fit_least_squares(setup, train_data, batch=4, progress=False)

    q = np.asarray(train_data.fields["q"]).reshape(-1, 2, N, N)
    y = np.asarray(train_data.fields["q_forcing_total"]).reshape(-1, 2, N, N)
    full = jax.vmap(lambda x: model.get_full_state(qg.state_from_q(model, x)))(q)
    features = np.stack([np.asarray(jax.vmap(lambda f: evaluate_term(parse_term(t), f, model))(
        full)) for t in terms], axis=-1)  # (samples, layer, y, x, term)
    for layer in range(2):
        a = features[:, layer].reshape(-1, len(terms))
        expected, *_ = np.linalg.lstsq(a, y[:, layer].ravel(), rcond=None)
        got = (np.asarray(closure.weights[layer]) * float(closure.output_scale.std[layer])
               / np.asarray(closure.feature_scale.std[layer]))
        np.testing.assert_allclose(got, expected, rtol=1e-7)
        np.testing.assert_allclose(np.asarray(closure.feature_scale.std[layer]),
                                   np.sqrt(np.mean(a**2, axis=0)), rtol=1e-10)

    shrunk, _ = fit_least_squares(Setup.from_experiment(_experiment(terms, ridge=10.0),
                                                        train_data.stats()),
                                  train_data, progress=False)
    assert np.all(np.linalg.norm(shrunk.weights, axis=1) < np.linalg.norm(closure.weights, axis=1))


def test_least_squares_refuses_a_network_that_is_not_linear_and_rollouts():
    experiment = _experiment(["laplacian(q)"]).model_copy(
        update={"network": Experiment.model_validate({"network": {"kind": "cnn"}}).network})
    data = _data(experiment, lambda q: q)
    with pytest.raises(UserError, match="needs a linear closure"):
        train(experiment, data=data, progress=False)
    with pytest.raises(ValueError, match="set rollout_steps to 0"):
        Experiment.model_validate({"loss": {"kind": "state_mse"},
                                   "training": {"rollout_steps": 2, "method": "least_squares"}})

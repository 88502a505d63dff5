"""The spectral loss: squared log-error of per-layer isotropic spectra."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pydantic import ValidationError
from pyqg_jax.steppers import AB3Stepper

from qgzoo.physics import qg
from qgzoo import FieldStats, NoClosure, parameterized_model, validate_component
from qgzoo.simulate.rollout import rollout_loss
from qgzoo_extras import SpectralSpec, isotropic_spectrum

PHYSICS = qg.PRESETS["eddy"]
L = PHYSICS["L"]
n = 16
QUANTITIES = ("kinetic_energy", "enstrophy", "potential_enstrophy")


@pytest.fixture(scope="module")
def lores():
    return qg.make_model(PHYSICS, n)


def red_field(seed, size=n, amplitude=(4e-6, 6e-7)):
    """A random q (2, size, size) in 1/s with a red spectrum, no Nyquist modes and a
    nonzero mean."""
    rng = np.random.default_rng(seed)
    k = np.fft.rfftfreq(size, 1 / size)[None, :]
    l = np.fft.fftfreq(size, 1 / size)[:, None]
    kappa = np.hypot(k, l)
    spectrum = np.where(kappa > 0, 1 / np.maximum(kappa, 1), 0)
    coefficients = (rng.standard_normal((2, *kappa.shape))
                    + 1j * rng.standard_normal((2, *kappa.shape))) * spectrum
    # No Nyquist row or column: derivatives there are ambiguous (the coarseners drop them too).
    coefficients[:, size // 2, :] = 0
    coefficients[:, :, size // 2] = 0
    q = np.fft.irfft2(coefficients, s=(size, size))
    q = q / q.std(axis=(-2, -1), keepdims=True) * np.array(amplitude)[:, None, None]
    return q + np.array([3e-7, -1e-7])[:, None, None]


def build(lores, **fields):
    return SpectralSpec(**fields).build(FieldStats.placeholder(), lores)


@pytest.mark.parametrize("quantity", QUANTITIES)
def test_zero_for_identical_states_positive_otherwise(lores, quantity):
    loss = build(lores, quantity=quantity)
    q, other = jnp.asarray(red_field(0)), jnp.asarray(red_field(1))
    assert float(loss.state_term(q, q)) == 0.0
    assert float(loss.state_term(q, other)) > 1e-3
    # Scaling q by a scales every spectrum by a^2: each annulus scores (2 log a)^2.
    np.testing.assert_allclose(float(loss.state_term(1.1 * q, q)), (2 * np.log(1.1)) ** 2,
                               rtol=1e-9)


@pytest.mark.parametrize("quantity", QUANTITIES)
def test_invariant_to_a_spatial_shift(lores, quantity):
    loss = build(lores, quantity=quantity, scales="all")
    q = red_field(2)
    shifted = np.roll(q, (3, -5), axis=(-2, -1))
    assert np.abs(shifted - q).max() > 1e-6
    assert float(loss.state_term(jnp.asarray(shifted), jnp.asarray(q))) < 1e-24
    assert float(loss.state_term(jnp.asarray(q[::-1]), jnp.asarray(q))) > 1e-3  # layers swapped


def test_differentiable_with_a_finite_gradient(lores):
    loss = build(lores)
    q, ref = jnp.asarray(red_field(3)), jnp.asarray(red_field(4))
    grad = jax.grad(loss.state_term)(q, ref)
    assert grad.shape == q.shape and bool(jnp.isfinite(grad).all())
    assert float(jnp.abs(grad).max()) > 0
    # The directional derivative matches a centred finite difference.
    direction = jnp.asarray(red_field(5))
    h = 1e-3
    finite = (loss.state_term(q + h * direction, ref)
              - loss.state_term(q - h * direction, ref)) / (2 * h)
    np.testing.assert_allclose(float(jnp.sum(grad * direction)), float(finite), rtol=1e-5)
    # At identical states the loss is at its minimum: a zero, finite gradient.
    at_minimum = jax.grad(loss.state_term)(ref, ref)
    assert bool(jnp.isfinite(at_minimum).all()) and float(jnp.abs(at_minimum).max()) == 0.0


def numpy_totals(q):
    """Per-layer domain means of (u^2 + v^2) / 2, zeta^2 / 2 and q^2 / 2, in numpy:
    invert q = del^2 psi + F_i (psi_other - psi_i) mode by mode (full 2-D FFT)."""
    size = q.shape[-1]
    k = 2 * np.pi / L * np.fft.fftfreq(size, 1 / size)[None, :]
    l = 2 * np.pi / L * np.fft.fftfreq(size, 1 / size)[:, None]
    k2 = k**2 + l**2
    f1 = 1 / (PHYSICS["rd"] ** 2 * (1 + PHYSICS["delta"]))
    f2 = PHYSICS["delta"] * f1
    qh = np.fft.fft2(q)
    psih = np.zeros_like(qh)
    for j, i in np.ndindex(k2.shape):
        if k2[j, i] == 0:
            continue
        matrix = np.array([[-(k2[j, i] + f1), f1], [f2, -(k2[j, i] + f2)]])
        psih[:, j, i] = np.linalg.solve(matrix, qh[:, j, i])
    u = np.fft.ifft2(-1j * l * psih).real
    v = np.fft.ifft2(1j * k * psih).real
    zeta = np.fft.ifft2(-k2 * psih).real
    return {"kinetic_energy": np.mean(u**2 + v**2, axis=(-2, -1)) / 2,
            "enstrophy": np.mean(zeta**2, axis=(-2, -1)) / 2,
            "potential_enstrophy": np.mean(q**2, axis=(-2, -1)) / 2}


@pytest.mark.parametrize("quantity", QUANTITIES)
def test_isotropic_spectrum_sums_to_the_total_parseval(lores, quantity):
    q = red_field(6)
    spectrum = np.asarray(isotropic_spectrum(lores, quantity)(jnp.asarray(q)))
    # Annuli 0 .. round(sqrt(2) n / 2) reach the corners of the spectral square.
    assert spectrum.shape == (2, 12)
    assert (spectrum >= 0).all()
    np.testing.assert_allclose(spectrum.sum(axis=-1), numpy_totals(q)[quantity], rtol=1e-12)


def test_scored_annuli(lores):
    # The resolved annuli end at 0.65 x 8 = 5.2; "all" ends at the Nyquist circle, 8.
    assert np.flatnonzero(np.asarray(build(lores).scored)).tolist() == [1, 2, 3, 4, 5]
    assert np.flatnonzero(np.asarray(build(lores, scales="all").scored)).tolist() == list(
        range(1, 9))
    with pytest.raises(ValidationError):
        SpectralSpec(quantity="palinstrophy")


def test_works_alone_and_inside_weighted(lores):
    weighted = validate_component("loss", {"kind": "weighted", "terms": [
        {"loss": {"kind": "state_mse"}},
        {"weight": 0.5, "loss": {"kind": "spectral", "quantity": "enstrophy"}}]})
    assert weighted.needs_rollout() and not weighted.needs_forcing()
    stats = FieldStats({name: jnp.asarray([4e-6, 6e-7]) for name in ("q", "u", "v",
                        "q_forcing_total", "q_subgrid_forcing")})
    combined = weighted.build(stats, lores)
    state_mse = validate_component("loss", {"kind": "state_mse"}).build(stats, lores)
    spectral = build(lores, quantity="enstrophy")
    q, ref = jnp.asarray(red_field(7)), jnp.asarray(red_field(8))
    np.testing.assert_allclose(float(combined.state_term(q, ref)),
                               float(state_mse.state_term(q, ref))
                               + 0.5 * float(spectral.state_term(q, ref)), rtol=1e-12)


def test_accumulates_inside_a_rollout(lores):
    """The rollout scores each sample with state_term inside its scan."""
    loss = build(lores)
    model = parameterized_model(lores, NoClosure(), AB3Stepper(dt=3600.0))
    q_ref = jnp.asarray(np.stack([red_field(9 + i) for i in range(5)]))

    def total(q_ref):
        return rollout_loss(model, q_ref, steps_per_sample=2, chunk=2,
                            state_term=loss.state_term)

    value, grad = jax.jit(jax.value_and_grad(total))(q_ref)
    assert float(value) > 0 and bool(jnp.isfinite(grad).all())


def test_conforms():
    from qgzoo.testing import check_component

    check_component(SpectralSpec())

"""Float64: importing qgzoo enables it, and the q -> psi inversion is exact to float64,
in closed form (no LAPACK call) and equal to pyqg-jax's own solve.

The reference inversion is written here in numpy from pyqg's definitions, not
from pyqg-jax's code: for each wavenumber (k, l) with kappa^2 = k^2 + l^2,

    [[-(kappa^2 + F1), F1], [F2, -(kappa^2 + F2)]] psi_hat = q_hat,
    F1 = 1 / (rd^2 (1 + delta)),  F2 = delta F1,

and psi_hat = 0 at kappa = 0 (the mean of psi is arbitrary).
"""

import os
import subprocess
import sys

import jax
import numpy as np
import pytest
import pyqg_jax.qg_model
from pyqg_jax.steppers import AB3Stepper, SteppedModel

import qgzoo  # noqa: F401  (switches on float64)
from qgzoo.physics import qg


def numpy_wavenumbers(n: int, length: float):
    """(k, l) of numpy's rfft2 layout for an n x n grid of side ``length`` (rad/m)."""
    k = 2 * np.pi / length * np.fft.rfftfreq(n, d=1.0 / n)
    l = 2 * np.pi / length * np.fft.fftfreq(n, d=1.0 / n)
    return k[None, :], l[:, None]


def numpy_invert(q: np.ndarray, *, rd: float, delta: float, L: float) -> np.ndarray:
    """Streamfunction psi (m^2/s) of the two-layer PV q (1/s), (2, n, n), in float64."""
    n = q.shape[-1]
    k, l = numpy_wavenumbers(n, L)
    kappa2 = k**2 + l**2
    f1 = 1.0 / (rd**2 * (1.0 + delta))
    f2 = delta * f1
    qh = np.fft.rfft2(q)
    # The 2x2 system solved by Cramer's rule; its determinant is kappa^2 (kappa^2 + F1 + F2).
    det = kappa2 * (kappa2 + f1 + f2)
    det[0, 0] = 1.0
    psi1 = (-(kappa2 + f2) * qh[0] - f1 * qh[1]) / det
    psi2 = (-f2 * qh[0] - (kappa2 + f1) * qh[1]) / det
    ph = np.stack([psi1, psi2])
    ph[:, 0, 0] = 0.0
    return np.fft.irfft2(ph, s=(n, n))


def _x64_after(code: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "JAX_ENABLE_X64"}
    env["QGZOO_PLUGINS"] = ""
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, timeout=120, check=True)
    return result.stdout.strip()


def test_importing_qgzoo_enables_float64():
    # The control shows the environment does not enable it by itself.
    assert _x64_after("import jax; print(jax.config.jax_enable_x64)") == "False"
    code = ("import qgzoo, jax, jax.numpy as jnp; "
            "print(jax.config.jax_enable_x64, jnp.zeros(1).dtype)")
    assert _x64_after(code) == "True float64"


def test_numpy_inversion_inverts_the_pv_definition():
    """The reference itself: q = lap(psi_i) + F_i (psi_j - psi_i), checked by finite differences."""
    rd, delta, L, n = 15000.0, 0.25, 1e6, 128
    x = (np.arange(n) + 0.5) * L / n
    X, Y = np.meshgrid(x, x)
    k0 = 2 * np.pi / L
    q = np.stack([1e-6 * np.cos(k0 * (3 * X + 2 * Y)), 5e-7 * np.sin(k0 * (X - 4 * Y))])
    psi = numpy_invert(q, rd=rd, delta=delta, L=L)
    dx = L / n
    lap = ((np.roll(psi, 1, -1) + np.roll(psi, -1, -1) + np.roll(psi, 1, -2)
            + np.roll(psi, -1, -2) - 4 * psi) / dx**2)
    f1 = 1 / (rd**2 * (1 + delta))
    f2 = delta * f1
    q_back = np.stack([lap[0] + f1 * (psi[1] - psi[0]), lap[1] + f2 * (psi[0] - psi[1])])
    # Second-order differences at 128 points per wavelength-ish: error ~ (k dx)^2 / 12.
    np.testing.assert_allclose(q_back, q, atol=2e-3 * np.abs(q).max())


@pytest.mark.parametrize("config", ["eddy", "jet"])
def test_inversion_matches_numpy_float64(config):
    physics = qg.PRESETS[config]
    n = 32
    model = qg.make_model(physics, n)
    rng = np.random.default_rng(7)
    # Broadband PV with realistic magnitudes (1e-6 1/s upper, 1e-7 lower) and a mean.
    q = rng.standard_normal((2, n, n)) * np.array([1e-6, 1e-7])[:, None, None] + 3e-7
    full = model.get_full_state(qg.state_from_q(model, jax.numpy.asarray(q)))
    psi = np.asarray(jax.numpy.fft.irfftn(full.ph, axes=(-2, -1), s=(n, n)))
    assert psi.dtype == np.float64
    expected = numpy_invert(q, rd=physics["rd"], delta=physics["delta"], L=physics["L"])
    scale = np.abs(expected).max(axis=(-2, -1), keepdims=True)
    np.testing.assert_array_less(np.abs(psi - expected) / scale, 1e-12)
    # The state holds the real q it was given (rfft then irfft).
    np.testing.assert_allclose(np.asarray(full.q), q, rtol=0, atol=1e-13 * np.abs(q).max())


def _run(model, q0, steps):
    stepped = SteppedModel(model, AB3Stepper(dt=3600.0))
    start = stepped.initialize_stepper_state(qg.state_from_q(model, q0))
    run = jax.jit(lambda s: jax.lax.fori_loop(0, steps, lambda _, x: stepped.step_model(x), s))
    return run, start


def test_steps_equal_pyqg_jax_without_a_lapack_call():
    """qgzoo's model steps as pyqg-jax's (which solves with jnp.linalg.solve) to rounding,
    and its compiled step calls no LAPACK routine: a batched LAPACK solve on XLA's CPU
    threads can deadlock against another (a vmapped gradient, two devices)."""
    physics, n = qg.PRESETS["eddy"], 32
    ours = qg.make_model(physics, n)
    theirs = pyqg_jax.qg_model.QGModel(nx=n, precision=qg.PRECISIONS["double"], **physics)
    q0 = ours.create_initial_state(jax.random.key(3)).q
    run_ours, start = _run(ours, q0, 200)
    run_theirs, start_theirs = _run(theirs, q0, 200)
    q_ours = np.asarray(run_ours(start).state.q)
    q_theirs = np.asarray(run_theirs(start_theirs).state.q)
    assert np.abs(q_ours - q0).max() > 0.1 * np.abs(q0).max()  # the flow has evolved
    np.testing.assert_array_less(np.abs(q_ours - q_theirs).max(), 1e-12 * np.abs(q_theirs).max())
    lapack = 'custom_call_target="lapack_'
    assert lapack not in run_ours.lower(start).compile().as_text()
    assert lapack in run_theirs.lower(start_theirs).compile().as_text()  # the control

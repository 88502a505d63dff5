"""Realistic inputs and small models for the conformance checks.

Input fields are random but realistic (``random_q``): a red spectrum with zero
mean and per-layer amplitudes near those of the eddy configuration, since a
short run from ``create_initial_state`` is still nearly zonal.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from pyqg_jax.state import Precision

from qgzoo.core.fields import FIELDS, FieldStats
from qgzoo.physics import qg
from qgzoo.simulate.rollout import initial_state

PRECISIONS = ("single", "double")
#: Per-layer rms of the fields of the small eddy reference (64 -> 16, Operator1).
REALISTIC_STD = {"q": (4e-6, 6.5e-7), "u": (2.1e-2, 4.6e-3), "v": (2.1e-2, 4.6e-3),
                 "q_forcing_total": (2.5e-12, 1.4e-13), "q_subgrid_forcing": (2.5e-12, 1.4e-13)}
Q_AMPLITUDE = REALISTIC_STD["q"]
TARGETS = ("q_forcing_total", "q_subgrid_forcing")
BATCH = 2


def real_dtype(model) -> np.dtype:
    """The real dtype of a pyqg-jax model's fields (float32 or float64)."""
    return np.dtype(np.float32 if model.precision == Precision.SINGLE else np.float64)


def random_q(model, key: jax.Array, *, amplitude=Q_AMPLITUDE) -> jax.Array:
    """A random smooth PV field (nz, ny, nx) of ``model``, in 1/s, in the model's dtype.

    Each layer has a red spectrum (mode amplitude proportional to 1/kappa, so
    the variance per wavenumber shell falls as 1/kappa), zero mean, and rms
    ``amplitude[layer]`` in 1/s.
    """
    k = 2 * np.pi / model.L * np.fft.rfftfreq(model.nx, 1.0 / model.nx)
    l = 2 * np.pi / model.W * np.fft.fftfreq(model.ny, 1.0 / model.ny)
    kappa = np.sqrt(k[None, :] ** 2 + l[:, None] ** 2)
    spectrum = np.where(kappa > 0, 1.0 / np.where(kappa > 0, kappa, 1.0), 0.0)
    amplitude = jnp.asarray(amplitude, jnp.float64)
    return _random_field(key, spectrum, amplitude, model.nz, real_dtype(model))


@eqx.filter_jit
def _random_field(key, spectrum, amplitude, nz, dtype):
    shape = (nz, *spectrum.shape)
    real_key, imag_key = jax.random.split(key)
    coefficients = (jax.random.normal(real_key, shape, jnp.float64)
                    + 1j * jax.random.normal(imag_key, shape, jnp.float64)) * spectrum
    ny = spectrum.shape[0]
    q = jnp.fft.irfftn(coefficients, axes=(-2, -1), s=(ny, 2 * (spectrum.shape[1] - 1)))
    q = q / jnp.std(q, axis=(-2, -1), keepdims=True)
    return (q * amplitude[:, None, None]).astype(dtype)


def random_batch(model, key: jax.Array, n: int, *, amplitude=Q_AMPLITUDE) -> jax.Array:
    """``n`` fields of ``random_q``: (n, nz, ny, nx)."""
    return jnp.stack([random_q(model, k, amplitude=amplitude) for k in jax.random.split(key, n)])


def realistic_stats(nz: int = 2, dtype=np.float64) -> FieldStats:
    """Per-layer rms of the eddy reference (64 -> 16 points, Operator1), rounded: what
    the trainer would fit from data (q 1/s, u and v m/s, forcings 1/s^2)."""
    values = {name: REALISTIC_STD[name] + (REALISTIC_STD[name][-1],) * (nz - 2)
              for name in FIELDS}
    return FieldStats({name: jnp.asarray(v[:nz], dtype) for name, v in values.items()})


def small_setup(config: str, hires_nx: int, lores_nx: int, precision: str):
    """The models of the checks and realistic stats in their dtype."""
    physics = qg.PRESETS[config]
    hires = qg.make_model(physics, hires_nx, precision)
    lores = qg.make_model(physics, lores_nx, precision)
    return hires, lores, realistic_stats(lores.nz, real_dtype(lores))


def run_steps(model, q, steps: int, key=None):
    """The stepper state of ``model`` after ``steps`` steps from q (nz, ny, nx); ``key``
    (a raw PRNG key) seeds a stochastic closure's noise."""
    state = initial_state(model, q, key)
    return jax.lax.fori_loop(0, steps, lambda _, s: model.step_model(s), state)

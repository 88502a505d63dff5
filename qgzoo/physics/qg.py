"""Glue to pyqg-jax's two-layer QG model: presets, states and tendencies.

Every function takes real fields of shape ``(nz, ny, nx)`` (potential
vorticity q in 1/s) and a ``pyqg_jax.qg_model.QGModel``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from pyqg_jax.qg_model import QGModel
from pyqg_jax.state import Precision, PseudoSpectralState

#: Physical parameters of the two configurations of Ross et al. (2023).
PRESETS: dict[str, dict[str, float]] = {
    "eddy": dict(beta=1.5e-11, rd=15000.0, delta=0.25, H1=500.0, U1=0.025, U2=0.0,
                 rek=5.787e-7, L=1e6, filterfac=23.6),
    "jet": dict(beta=1.0e-11, rd=15000.0, delta=0.1, H1=500.0, U1=0.025, U2=0.0,
                rek=7.0e-8, L=1e6, filterfac=23.6),
}
PRECISIONS = {"single": Precision.SINGLE, "double": Precision.DOUBLE}


def make_model(physics: dict[str, float], nx: int, precision: str = "double") -> QGModel:
    """A square ``nx`` x ``nx`` QG model with the given physical parameters."""
    return QGModel(nx=nx, precision=PRECISIONS[precision], **physics)


def state_from_q(model: QGModel, q: jax.Array) -> PseudoSpectralState:
    """The model state holding the real field ``q`` (nz, ny, nx), in 1/s, cast to the
    model's precision (a single-precision model's data may be stored in float64)."""
    # The random initial condition is discarded (and traced away under jit).
    initial = model.create_initial_state(jax.random.key(0))
    return initial.update(q=jnp.asarray(q, initial.q.dtype))


def _irfft(model, fh):
    return jnp.fft.irfftn(fh, axes=(-2, -1), s=(model.ny, model.nx))


def tendency(model: QGModel, q: jax.Array) -> jax.Array:
    """dq/dt of the model at q, in 1/s^2: advection, beta, friction (no exponential filter)."""
    return _irfft(model, model.get_full_state(state_from_q(model, q)).dqhdt)


def advection(model: QGModel, q: jax.Array) -> jax.Array:
    """The nonlinear advection -div(u q) at q, in 1/s^2, using the eddy velocities."""
    full = model.get_full_state(state_from_q(model, q))
    uqh = jnp.fft.rfftn(full.u * full.q, axes=(-2, -1))
    vqh = jnp.fft.rfftn(full.v * full.q, axes=(-2, -1))
    ik = 1j * model.kk[None, None, :]
    il = 1j * model.ll[None, :, None]
    return _irfft(model, -(ik * uqh + il * vqh))


def velocities(model: QGModel, q: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Eddy velocities (u, v) at q, in m/s (background flow excluded)."""
    full = model.get_full_state(state_from_q(model, q))
    return full.u, full.v


def kinetic_energy(model: QGModel, q: jax.Array) -> jax.Array:
    """Mean eddy kinetic energy u^2 + v^2 per layer (nz,), m^2/s^2, of q (nz, ny, nx)."""
    u, v = velocities(model, q)
    return jnp.mean(u**2 + v**2, axis=(-2, -1))

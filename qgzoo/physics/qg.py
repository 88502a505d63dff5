"""Glue to pyqg-jax's two-layer QG model: presets, states and tendencies.

Every function takes real fields of shape ``(nz, ny, nx)`` (potential
vorticity q in 1/s) and a ``QGModel`` (pyqg-jax's, or this module's, which
``make_model`` builds).
"""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pyqg_jax.qg_model
from pyqg_jax import _utils as pyqg_jax_utils
from pyqg_jax.state import Precision, PseudoSpectralState

from qgzoo.core.fields import TARGETS

#: Physical parameters of the two configurations of Ross et al. (2023).
PRESETS: dict[str, dict[str, float]] = {
    "eddy": dict(beta=1.5e-11, rd=15000.0, delta=0.25, H1=500.0, U1=0.025, U2=0.0,
                 rek=5.787e-7, L=1e6, filterfac=23.6),
    "jet": dict(beta=1.0e-11, rd=15000.0, delta=0.1, H1=500.0, U1=0.025, U2=0.0,
                rek=7.0e-8, L=1e6, filterfac=23.6),
}
PRECISIONS = {"single": Precision.SINGLE, "double": Precision.DOUBLE}


# Registered as a pytree like its parent (pyqg-jax's helper gathers the parent's fields).
@pyqg_jax_utils.register_pytree_class_attrs(children=[], static_attrs=[])
class QGModel(pyqg_jax.qg_model.QGModel):
    """pyqg-jax's two-layer model, with the streamfunction inverted in closed form.

    pyqg-jax solves the 2 x 2 system q = A psi at every wavenumber with
    ``jnp.linalg.solve``: a batched LAPACK call that XLA's CPU runtime splits
    over its intra-op threads and then waits for. Two such calls at once (a
    vmapped gradient through a rollout, two devices on one host) can take every
    thread and wait for each other forever. Here A = [[-(K2 + F1), F1], [F2,
    -(K2 + F2)]] is inverted by its adjugate, det A = K2 (K2 + F1 + F2), in
    double precision as pyqg-jax does; psi = 0 at K2 = 0.
    """

    def _apply_a_ph(self, state):
        arguments = inspect.signature(pyqg_jax.qg_model.QGModel).parameters
        double = pyqg_jax.qg_model.QGModel(
            **{name: getattr(self, name) for name in arguments} | {"precision": Precision.DOUBLE})
        k2, f1, f2 = double.wv2, double.F1, double.F2
        q1, q2 = state.qh.astype(jnp.complex128)
        det = k2 * (k2 + f1 + f2)
        inverse_det = jnp.where(k2 == 0, 0.0, 1.0 / jnp.where(k2 == 0, 1.0, det))
        ph = jnp.stack([-((k2 + f2) * q1 + f1 * q2), -(f2 * q1 + (k2 + f1) * q2)]) * inverse_det
        return ph.astype(state.qh.dtype)


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


def _ik_il(model):
    return 1j * model.kk[None, None, :], 1j * model.ll[None, :, None]


def divergence(model: QGModel, fx: jax.Array, fy: jax.Array) -> jax.Array:
    """d(fx)/dx + d(fy)/dy of a vector field (each (nz, ny, nx)), spectrally; its
    domain mean is zero."""
    ik, il = _ik_il(model)
    return _irfft(model, ik * jnp.fft.rfftn(fx, axes=(-2, -1))
                  + il * jnp.fft.rfftn(fy, axes=(-2, -1)))


def curl(model: QGModel, fu: jax.Array, fv: jax.Array) -> jax.Array:
    """d(fv)/dx - d(fu)/dy of a vector field, spectrally: what a momentum forcing
    (fu, fv) does to the relative vorticity."""
    ik, il = _ik_il(model)
    return _irfft(model, ik * jnp.fft.rfftn(fv, axes=(-2, -1))
                  - il * jnp.fft.rfftn(fu, axes=(-2, -1)))


def q_forcing_of(model: QGModel, target: str, prediction: jax.Array) -> jax.Array:
    """The q forcing (nz, ny, nx) that a prediction of ``target`` (``TARGETS``; its parts
    one after the other, (parts * nz, ny, nx)) makes: -div of a flux, curl of a momentum
    forcing, a q forcing itself."""
    parts = prediction.reshape(len(TARGETS[target]), -1, *prediction.shape[-2:])
    if target == "q_subgrid_flux":
        return -divergence(model, *parts)
    if target == "momentum_subgrid_forcing":
        return curl(model, *parts)
    return parts[0]


def advection(model: QGModel, q: jax.Array, field: jax.Array | None = None) -> jax.Array:
    """The nonlinear advection -div(u f) of ``field`` f (default q) by the eddy velocities
    of q, in f's units per second."""
    full = model.get_full_state(state_from_q(model, q))
    f = full.q if field is None else field
    return -divergence(model, full.u * f, full.v * f)


def velocities(model: QGModel, q: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Eddy velocities (u, v) at q, in m/s (background flow excluded)."""
    full = model.get_full_state(state_from_q(model, q))
    return full.u, full.v


def relative_vorticity(model: QGModel, q: jax.Array) -> jax.Array:
    """Relative vorticity zeta = laplacian(psi) at q (nz, ny, nx), 1/s, computed spectrally
    (-kappa^2 psi_hat)."""
    ph = model.get_full_state(state_from_q(model, q)).ph
    return _irfft(model, -model.wv2 * ph)


def kinetic_energy(model: QGModel, q: jax.Array) -> jax.Array:
    """Mean eddy kinetic energy u^2 + v^2 per layer (nz,), m^2/s^2, of q (nz, ny, nx)."""
    u, v = velocities(model, q)
    return jnp.mean(u**2 + v**2, axis=(-2, -1))


def resolved_kmax(lores_model: QGModel) -> float:
    """The largest wavenumber magnitude (rad/m) of the grid at which ``filtr`` is still 1.

    pyqg's exponential filter is exactly 1 where the grid-scaled wavenumber
    sqrt((k dx)^2 + (l dy)^2) <= 0.65 pi, so this is at most 0.65 pi / dx on a
    square grid; spectra are compared at isotropic wavenumbers kr <= this value.
    """
    wavenumber = np.asarray(lores_model.wv, np.float64)
    filtr = np.asarray(lores_model.filtr, np.float64)
    return float(wavenumber[filtr >= 1].max())

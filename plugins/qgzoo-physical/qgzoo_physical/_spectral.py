"""Spectral calculus on a pyqg-jax model's grid, shared by the closures.

Fields are real ``(nz, ny, nx)`` arrays; their transforms are pyqg's
unnormalised ``rfftn`` over the last two axes, with wavenumbers ``model.kk``
(x, the half axis, Nyquist included) and ``model.ll`` (y) in rad/m.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp


def to_spectral(field: jax.Array) -> jax.Array:
    """Unnormalised rfft of a real field over (y, x)."""
    return jnp.fft.rfftn(field, axes=(-2, -1))


def to_real(model, field_h: jax.Array) -> jax.Array:
    """Real field on the model's grid from its rfft coefficients."""
    return jnp.fft.irfftn(field_h, axes=(-2, -1), s=(model.ny, model.nx))


def ddx(model, field_h: jax.Array) -> jax.Array:
    """Spectral x-derivative (1/m times the field's unit)."""
    return 1j * model.kk[None, :] * field_h


def ddy(model, field_h: jax.Array) -> jax.Array:
    """Spectral y-derivative (1/m times the field's unit)."""
    return 1j * model.ll[:, None] * field_h


def laplacian(model, field_h: jax.Array) -> jax.Array:
    """Spectral Laplacian (1/m^2 times the field's unit)."""
    return -(model.kk[None, :] ** 2 + model.ll[:, None] ** 2) * field_h


@dataclasses.dataclass(frozen=True)
class VelocityGradients:
    """The four derivatives of the eddy velocity, real fields in 1/s."""

    ux: jax.Array
    uy: jax.Array
    vx: jax.Array
    vy: jax.Array


def velocity_gradients(full_state, model) -> VelocityGradients:
    """Gradients of the eddy velocity u = -dpsi/dy, v = dpsi/dx (background flow excluded)."""
    uh = -ddy(model, full_state.ph)
    vh = ddx(model, full_state.ph)
    return VelocityGradients(
        ux=to_real(model, ddx(model, uh)), uy=to_real(model, ddy(model, uh)),
        vx=to_real(model, ddx(model, vh)), vy=to_real(model, ddy(model, vh)))


def tensor_divergence(model, txx, txy, tyy) -> tuple[jax.Array, jax.Array]:
    """(du, dv) = div of the symmetric tensor [[txx, txy], [txy, tyy]], real fields.

    In the tensor's unit times 1/m (for a stress in m^2/s^2: an acceleration, m/s^2).
    """
    txx_h, txy_h, tyy_h = to_spectral(txx), to_spectral(txy), to_spectral(tyy)
    du = to_real(model, ddx(model, txx_h) + ddy(model, txy_h))
    dv = to_real(model, ddx(model, txy_h) + ddy(model, tyy_h))
    return du, dv


def curl(model, du: jax.Array, dv: jax.Array) -> jax.Array:
    """The q tendency of a velocity tendency: d(dv)/dx - d(du)/dy (1/s^2 from m/s^2).

    Formed in spectral space and brought back to a real field: pyqg's
    ``UVParameterization`` adds the same coefficients to dq/dt directly.
    """
    return to_real(model, ddx(model, to_spectral(dv)) - ddy(model, to_spectral(du)))


def smagorinsky_viscosity(model, grads: VelocityGradients, constant) -> jax.Array:
    """Eddy viscosity nu = (C dx)^2 sqrt(2 S_ij S_ij) in m^2/s, C dimensionless."""
    sxx, syy = grads.ux, grads.vy
    sxy = 0.5 * (grads.uy + grads.vx)
    strain = jnp.sqrt(2 * (sxx**2 + syy**2 + 2 * sxy**2))
    return (constant * model.dx) ** 2 * strain

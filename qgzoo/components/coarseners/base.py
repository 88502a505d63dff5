"""The coarsener protocol: from a high-resolution field to the low-resolution grid.

A coarsener maps high-resolution q to low-resolution q and gives the two
subgrid forcings, with one sign everywhere: the filtered field obeys
``d(qbar)/dt = RHS_lowres(qbar) + S``.

Spectral coarseners truncate the unnormalised FFT, apply a filter G and divide
by r^2 (r = N/n). They zero the low-resolution Nyquist row and column: after
truncation those modes are not those of a real field, derivatives there are
ambiguous, and with Operator2 (G = 0.19 at Nyquist) they made up all of the
difference between q_forcing_total and q_subgrid_forcing. With Operator1 the
filter already makes them ~1e-15. Outputs are real fields.
"""

from __future__ import annotations

import abc
import equinox as eqx
import jax
import jax.numpy as jnp
from pyqg_jax.qg_model import QGModel

from qgzoo.physics import qg


class AbstractCoarsener(eqx.Module):
    """Maps fields of ``hires`` to fields of ``lores``; q in 1/s, forcings in 1/s^2."""

    hires: eqx.AbstractVar[QGModel]
    lores: eqx.AbstractVar[QGModel]

    @abc.abstractmethod
    def coarsen(self, field: jax.Array) -> jax.Array:
        """Filter and restrict a real field (nz, N, N) to (nz, n, n)."""

    def q_forcing_total(self, q_hires: jax.Array) -> jax.Array:
        """coarsen(dq/dt hires) - dq/dt lores at coarsen(q): the whole tendency error.

        Tendencies exclude the exponential filter, which the stepper applies after
        each step (a step-based difference would be dominated by the low-res
        filter's damping of its highest wavenumbers, not by the subgrid physics).
        """
        qbar = self.coarsen(q_hires)
        return self.coarsen(qg.tendency(self.hires, q_hires)) - qg.tendency(self.lores, qbar)

    def q_subgrid_forcing(self, q_hires: jax.Array) -> jax.Array:
        """coarsen(-div(u q)) - (-div(ubar qbar)): the advective part only."""
        qbar = self.coarsen(q_hires)
        return self.coarsen(qg.advection(self.hires, q_hires)) - qg.advection(self.lores, qbar)

    def q_subgrid_flux(self, q_hires: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(coarsen(u q) - ubar qbar, coarsen(v q) - vbar qbar) in m/s^2: the subgrid flux
        F of q, so that q_subgrid_forcing = -div F (coarsening commutes with derivatives)."""
        qbar = self.coarsen(q_hires)
        u, v = qg.velocities(self.hires, q_hires)
        ubar, vbar = qg.velocities(self.lores, qbar)
        return self.coarsen(u * q_hires) - ubar * qbar, self.coarsen(v * q_hires) - vbar * qbar

    def momentum_subgrid_forcing(self, q_hires: jax.Array) -> tuple[jax.Array, jax.Array]:
        """The subgrid forcings (Su, Sv) of the eddy velocities in m/s^2, with the sign of
        q_subgrid_forcing: coarsen(-div(vel u)) - (-div(velbar ubar)), likewise for v."""
        qbar = self.coarsen(q_hires)
        hires, lores = qg.velocities(self.hires, q_hires), qg.velocities(self.lores, qbar)
        return tuple(self.coarsen(qg.advection(self.hires, q_hires, fine))
                     - qg.advection(self.lores, qbar, coarse)
                     for fine, coarse in zip(hires, lores))


class SpectralCoarsener(AbstractCoarsener):
    """Truncation in Fourier space, times a filter G(k, l) of the low-res grid."""

    @abc.abstractmethod
    def spectral_filter(self) -> jax.Array:
        """G on the low-resolution rfft grid, shape (n, n // 2 + 1), dimensionless."""

    def coarsen(self, field):
        n, big = self.lores.nx, self.hires.nx
        fh = jnp.fft.rfftn(field, axes=(-2, -1))
        kept = jnp.concatenate([fh[..., : n // 2, : n // 2 + 1],
                                fh[..., big - n // 2:, : n // 2 + 1]], axis=-2)
        ratio = big / n
        gain = self.spectral_filter().at[n // 2, :].set(0).at[:, n // 2].set(0)
        return jnp.fft.irfftn(kept * gain / ratio**2, axes=(-2, -1), s=(n, n))
